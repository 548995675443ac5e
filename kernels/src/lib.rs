//! The organism's inner loops (docs/engine.md 4.6, 4.7): `W x` from `W`'s columns, one or two
//! vectors at a time, `y += a x`, and an agent's candidate state `(1 - eta) h + eta tanh(s + u)`,
//! with the change of `E_pair + E_reg` it would make.
//!
//! Each kernel is one body compiled three times: for the baseline x86-64 target (SSE2, two
//! lanes), with AVX2 enabled (four lanes) and with AVX-512F (eight), the widest the CPU has
//! chosen at run time. The bodies
//! are element-wise sums of products, written so that each output and each accumulator
//! sees the same IEEE operations in the same order whichever way they are compiled: no
//! fused multiply-add (Rust never contracts `a * b + c`), no reassociation, and the
//! reductions spelled out as four explicit lanes. So the builds of a kernel give the same
//! bits, and a run's digest does not depend on which the CPU has (a test compares every
//! build the CPU it runs on has).
//!
//! `tanh` is computed from a polynomial `exp`, not libm's: it vectorises (libm's `exp`
//! is one call per element), and it is plain arithmetic, the same on every platform.
//!
//! The crate's only unsafe code calls a `#[target_feature(enable = "avx2")]` or
//! `#[target_feature(enable = "avx512f")]` function after `is_x86_feature_detected!` said
//! the CPU has that feature.

#![deny(unsafe_op_in_unsafe_fn)]

/// `e^x` for `x` in `[-60, 60]` (the caller clamps): `2^k e^r` with `k = round(x / ln 2)`
/// and `|r| <= ln 2 / 2`, `e^r` by its Taylor series to degree 12 (truncation below
/// `2e-16` relative), `2^k` built from its exponent bits. Within 1e-15 of libm's `exp`
/// relatively (the tests check it), and branch-free, so it vectorises.
#[inline(always)]
fn exp_bounded(x: f64) -> f64 {
    // 1.5 * 2^52: adding it rounds to an integer, which lands in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let t = x * std::f64::consts::LOG2_E + ROUND;
    let k = t - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // k + 1023 in the exponent field: 2^k (k is within [-87, 87] here).
    let scale = f64::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(1023) << 52);
    p * scale
}

/// `tanh x` as `1 - 2 / (e^(2x) + 1)`. Beyond `|x| = 30` the result is exactly `1` or `-1`
/// in f64, so `2x` is clamped to `[-60, 60]` (`clamp` compares, which treats every finite
/// input the same in both builds).
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let y = (2.0 * x).clamp(-60.0, 60.0);
    1.0 - 2.0 / (exp_bounded(y) + 1.0)
}

#[inline(always)]
fn w_times_body(w_columns: &[f64], dim: usize, x: &[f64], out: &mut [f64]) {
    out.iter_mut().for_each(|z| *z = 0.0);
    let mut columns = w_columns.chunks_exact(4 * dim).zip(x.chunks_exact(4));
    for (block, weights) in &mut columns {
        let (c0, rest) = block.split_at(dim);
        let (c1, rest) = rest.split_at(dim);
        let (c2, c3) = rest.split_at(dim);
        for (r, z) in out.iter_mut().enumerate() {
            *z += weights[0] * c0[r] + weights[1] * c1[r] + weights[2] * c2[r] + weights[3] * c3[r];
        }
    }
    let done = dim - dim % 4;
    for (column, weight) in w_columns[done * dim..].chunks_exact(dim).zip(&x[done..]) {
        for (z, w) in out.iter_mut().zip(column) {
            *z += weight * w;
        }
    }
}

#[inline(always)]
fn w_times2_body(w_columns: &[f64], dim: usize, (x, y): (&[f64], &[f64]), (out_x, out_y): (&mut [f64], &mut [f64])) {
    out_x.iter_mut().for_each(|z| *z = 0.0);
    out_y.iter_mut().for_each(|z| *z = 0.0);
    let mut columns = w_columns.chunks_exact(4 * dim).zip(x.chunks_exact(4).zip(y.chunks_exact(4)));
    for (block, (a, b)) in &mut columns {
        let (c0, rest) = block.split_at(dim);
        let (c1, rest) = rest.split_at(dim);
        let (c2, c3) = rest.split_at(dim);
        for (r, (zx, zy)) in out_x.iter_mut().zip(out_y.iter_mut()).enumerate() {
            let (w0, w1, w2, w3) = (c0[r], c1[r], c2[r], c3[r]);
            *zx += a[0] * w0 + a[1] * w1 + a[2] * w2 + a[3] * w3;
            *zy += b[0] * w0 + b[1] * w1 + b[2] * w2 + b[3] * w3;
        }
    }
    let done = dim - dim % 4;
    for (column, (a, b)) in w_columns[done * dim..].chunks_exact(dim).zip(x[done..].iter().zip(&y[done..])) {
        for ((zx, zy), w) in out_x.iter_mut().zip(out_y.iter_mut()).zip(column) {
            *zx += a * w;
            *zy += b * w;
        }
    }
}

#[inline(always)]
fn axpy_body(a: f64, x: &[f64], y: &mut [f64]) {
    for (acc, x) in y.iter_mut().zip(x) {
        *acc += a * x;
    }
}

#[inline(always)]
fn candidate_body(eta: f64, old: &[f64], s: &[f64], u: &[f64], out: &mut [f64]) {
    for ((z, old), (sum, u)) in out.iter_mut().zip(old).zip(s.iter().zip(u)) {
        *z = (1.0 - eta) * old + eta * tanh(sum + u);
    }
}

/// The candidate into `out`, then `(-<out - old, c>, |out|^2 - |old|^2)` over four lanes
/// (element `k` in lane `k % 4`, the lanes added in order at the end).
#[inline(always)]
fn weigh_body(eta: f64, (old, s, u, c): (&[f64], &[f64], &[f64], &[f64]), out: &mut [f64]) -> (f64, f64) {
    candidate_body(eta, old, s, u, out);
    let (mut pair, mut reg) = ([0.0; 4], [0.0; 4]);
    let lanes = out.chunks_exact(4).zip(old.chunks_exact(4)).zip(c.chunks_exact(4));
    for ((new, old), c) in lanes {
        for k in 0..4 {
            pair[k] -= (new[k] - old[k]) * c[k];
            reg[k] += new[k] * new[k] - old[k] * old[k];
        }
    }
    let done = out.len() - out.len() % 4;
    for (k, ((new, old), c)) in out[done..].iter().zip(&old[done..]).zip(&c[done..]).enumerate() {
        pair[k] -= (new - old) * c;
        reg[k] += new * new - old * old;
    }
    ((pair[0] + pair[1]) + (pair[2] + pair[3]), (reg[0] + reg[1]) + (reg[2] + reg[3]))
}

/// Declares a kernel's AVX2 and AVX-512 builds and its dispatcher, which takes the widest
/// the CPU has.
macro_rules! dispatched {
    ($(#[$meta:meta])* pub fn $name:ident / $avx2:ident / $avx512:ident / $at:ident = $body:ident ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2($($arg: $ty),*) $(-> $ret)? {
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn $avx512($($arg: $ty),*) $(-> $ret)? {
            $body($($arg),*)
        }

        $(#[$meta])*
        #[inline]
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            $at(Level::widest(), $($arg),*).expect("the CPU has its widest build")
        }

        /// The build of `level`, if the CPU has it (the dispatcher takes the widest; tests
        /// compare them all).
        #[inline(always)]
        #[allow(unused_parens, reason = "`(T)` for a kernel returning `T`, `()` for one returning nothing")]
        fn $at(level: Level, $($arg: $ty),*) -> Option<($($ret)?)> {
            if level > Level::widest() {
                return None;
            }
            match level {
                Level::Baseline => Some($body($($arg),*)),
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => {
                    // SAFETY: the CPU has AVX2 (`widest` said so), the only feature the
                    // function enables.
                    Some(unsafe { $avx2($($arg),*) })
                }
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => {
                    // SAFETY: the CPU has AVX-512F (`widest` said so), the only feature the
                    // function enables (with those it implies, which the CPU has with it).
                    Some(unsafe { $avx512($($arg),*) })
                }
                #[cfg(not(target_arch = "x86_64"))]
                _ => None,
            }
        }
    };
}

/// The builds of a kernel, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code, reason = "only x86-64 has the wider builds"))]
enum Level {
    Baseline,
    Avx2,
    Avx512,
}

impl Level {
    /// The widest build the CPU has.
    #[inline(always)]
    fn widest() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }
}

dispatched! {
    /// `out = W x`, from `W`'s columns (the transpose, row-major): a sum of columns, four
    /// per pass.
    pub fn w_times / w_times_avx2 / w_times_avx512 / w_times_at = w_times_body(w_columns: &[f64], dim: usize, x: &[f64], out: &mut [f64]);
}

dispatched! {
    /// `W x` and `W y` in one pass over `W`'s columns, each output computed exactly as
    /// `w_times` computes it.
    pub fn w_times2 / w_times2_avx2 / w_times2_avx512 / w_times2_at = w_times2_body(w_columns: &[f64], dim: usize, xy: (&[f64], &[f64]), out: (&mut [f64], &mut [f64]));
}

dispatched! {
    /// `y += a x`, element-wise (over the shorter of the two).
    pub fn axpy / axpy_avx2 / axpy_avx512 / axpy_at = axpy_body(a: f64, x: &[f64], y: &mut [f64]);
}

dispatched! {
    /// `out = (1 - eta) old + eta tanh(s + u)`, element-wise.
    pub fn candidate / candidate_avx2 / candidate_avx512 / candidate_at = candidate_body(eta: f64, old: &[f64], s: &[f64], u: &[f64], out: &mut [f64]);
}

dispatched! {
    /// The candidate `(1 - eta) old + eta tanh(s + u)` into `out`, and what it changes:
    /// `(-<out - old, c>, |out|^2 - |old|^2)`. With `c` the agent's pair sums, the first is
    /// the change of `E_pair` and the second that of `||H||_F^2`.
    pub fn weigh / weigh_avx2 / weigh_avx512 / weigh_at = weigh_body(eta: f64, rows: (&[f64], &[f64], &[f64], &[f64]), out: &mut [f64]) -> (f64, f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exp_is_libms_within_1e_15_relative_on_its_range() {
        let mut worst: f64 = 0.0;
        for i in 0..=1_200_000 {
            let x = -60.0 + 120.0 * f64::from(i) / 1_200_000.0;
            worst = worst.max(((exp_bounded(x) - x.exp()) / x.exp()).abs());
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
    }

    #[test]
    fn tanh_is_libms_within_1e_15_and_saturates_exactly() {
        let mut worst: f64 = 0.0;
        for i in 0..=400_000 {
            let x = -40.0 + 80.0 * f64::from(i) / 400_000.0;
            worst = worst.max((tanh(x) - x.tanh()).abs());
        }
        assert!(worst < 1e-15, "worst absolute error {worst:e}");
        for x in [30.0, 100.0, 1e300, f64::MAX, f64::INFINITY] {
            assert_eq!(tanh(x), 1.0, "tanh({x})");
            assert_eq!(tanh(-x), -1.0, "tanh(-{x})");
        }
        assert_eq!(tanh(0.0), 0.0);
    }

    fn vector(n: usize) -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::vec(-3.0..3.0f64, n)
    }

    proptest! {
        /// Every build of each kernel the CPU has (baseline, AVX2, AVX-512) gives the
        /// baseline's bits, and so does the dispatcher (on a CPU without the wider builds
        /// there is only the baseline to compare with itself).
        #[test]
        fn every_build_gives_the_same_bits(dim in 2usize..40, seed in any::<u64>()) {
            let draw = |k: u64, n: usize| -> Vec<f64> {
                (0..n as u64).map(|i| {
                    let z = (seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(i).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    ((z >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 8.0
                }).collect()
            };
            let (w, x, y, old, s, u, c) = (draw(1, dim * dim), draw(2, dim), draw(3, dim), draw(4, dim), draw(5, dim), draw(6, dim), draw(7, dim));
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let zero = || vec![0.0; dim];
            // The baseline's results, and the pair product is each single product.
            let (mut px, mut py, mut single) = (zero(), zero(), zero());
            w_times2_body(&w, dim, (&x, &y), (&mut px, &mut py));
            w_times_body(&w, dim, &y, &mut single);
            prop_assert_eq!(bits(&py), bits(&single));
            w_times_body(&w, dim, &x, &mut single);
            prop_assert_eq!(bits(&px), bits(&single));
            let mut cand = zero();
            let sums = weigh_body(0.5, (&old, &s, &u, &c), &mut cand);
            let mut plain = zero();
            candidate_body(0.5, &old, &s, &u, &mut plain);
            prop_assert_eq!(bits(&cand), bits(&plain));
            let mut acc = c.clone();
            axpy_body(0.37, &s, &mut acc);
            let mut tested = 0;
            for level in [Level::Baseline, Level::Avx2, Level::Avx512] {
                let (mut a, mut b, mut d) = (zero(), zero(), zero());
                if w_times_at(level, &w, dim, &x, &mut a).is_none() {
                    continue;
                }
                tested += 1;
                prop_assert_eq!(bits(&a), bits(&px), "w_times {:?}", level);
                w_times2_at(level, &w, dim, (&x, &y), (&mut a, &mut b));
                prop_assert_eq!((bits(&a), bits(&b)), (bits(&px), bits(&py)), "w_times2 {:?}", level);
                let got = weigh_at(level, 0.5, (&old, &s, &u, &c), &mut d).expect("the level exists");
                prop_assert_eq!(bits(&d), bits(&cand), "weigh {:?}", level);
                prop_assert_eq!((got.0.to_bits(), got.1.to_bits()), (sums.0.to_bits(), sums.1.to_bits()), "weigh {:?}", level);
                candidate_at(level, 0.5, &old, &s, &u, &mut d);
                prop_assert_eq!(bits(&d), bits(&cand), "candidate {:?}", level);
                let mut mine = c.clone();
                axpy_at(level, 0.37, &s, &mut mine);
                prop_assert_eq!(bits(&mine), bits(&acc), "axpy {:?}", level);
            }
            prop_assert!(tested >= 1);
            // The dispatcher takes one of them.
            let (mut a, mut b) = (zero(), zero());
            w_times2(&w, dim, (&x, &y), (&mut a, &mut b));
            prop_assert_eq!((bits(&a), bits(&b)), (bits(&px), bits(&py)));
            prop_assert_eq!(weigh(0.5, (&old, &s, &u, &c), &mut a).0.to_bits(), sums.0.to_bits());
        }

        /// `weigh`'s sums are the plain ones, up to rounding.
        #[test]
        fn weigh_sums_are_the_inner_products(old in vector(13), s in vector(13), u in vector(13), c in vector(13)) {
            let mut out = vec![0.0; 13];
            let (pair, reg) = weigh(0.5, (&old, &s, &u, &c), &mut out);
            let plain_pair: f64 = -out.iter().zip(&old).zip(&c).map(|((n, o), c)| (n - o) * c).sum::<f64>();
            let plain_reg: f64 = out.iter().map(|x| x * x).sum::<f64>() - old.iter().map(|x| x * x).sum::<f64>();
            prop_assert!((pair - plain_pair).abs() < 1e-12);
            prop_assert!((reg - plain_reg).abs() < 1e-12);
            for (((z, o), s), u) in out.iter().zip(&old).zip(&s).zip(&u) {
                prop_assert!((z - (0.5 * o + 0.5 * (s + u).tanh())).abs() < 1e-15);
            }
        }
    }
}
