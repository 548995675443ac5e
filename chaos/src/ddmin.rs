//! Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing
//! Input", 2002): the `ddmin` algorithm over a list, with every tested subset remembered so
//! that no subset is run twice.

use std::collections::BTreeMap;

/// Reduces `items` to a 1-minimal sublist for which `fails` still holds: removing any one
/// element of the result makes it pass. `fails(items)` must hold on entry. The sublists
/// keep the order of `items`. Returns the sublist and how many times `fails` was called.
pub fn ddmin<T: Clone>(items: &[T], mut fails: impl FnMut(&[T]) -> bool) -> (Vec<T>, u32) {
    let mut seen: BTreeMap<Vec<usize>, bool> = BTreeMap::new();
    let mut calls = 0;
    let mut test = |indices: &[usize]| -> bool {
        *seen.entry(indices.to_vec()).or_insert_with(|| {
            calls += 1;
            let subset: Vec<T> = indices.iter().map(|&i| items[i].clone()).collect();
            fails(&subset)
        })
    };
    let mut current: Vec<usize> = (0..items.len()).collect();
    let mut n = 2;
    while current.len() >= 2 {
        let chunks = split(&current, n);
        let mut reduced = false;
        // Reduce to a subset.
        for chunk in &chunks {
            if test(chunk) {
                current = chunk.clone();
                n = 2;
                reduced = true;
                break;
            }
        }
        // Reduce to a complement (with two chunks, the complements are the chunks).
        if !reduced && n > 2 {
            for i in 0..chunks.len() {
                let complement: Vec<usize> =
                    chunks.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, c)| c.iter().copied()).collect();
                if test(&complement) {
                    current = complement;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= current.len() {
                break;
            }
            n = (2 * n).min(current.len());
        }
    }
    (current.iter().map(|&i| items[i].clone()).collect(), calls)
}

/// Splits `items` into `n` chunks of nearly equal length, in order.
fn split(items: &[usize], n: usize) -> Vec<Vec<usize>> {
    let n = n.min(items.len()).max(1);
    let mut chunks = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let end = start + (items.len() - start) / (n - i);
        chunks.push(items[start..end].to_vec());
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_a_planted_pair_among_twenty() {
        let items: Vec<u32> = (0..22).collect();
        let (found, calls) = ddmin(&items, |s| s.contains(&4) && s.contains(&17));
        assert_eq!(found, vec![4, 17]);
        assert!(calls <= 40, "{calls} calls");
    }

    #[test]
    fn a_single_culprit_is_found_in_logarithmic_calls() {
        let items: Vec<u32> = (0..64).collect();
        let (found, calls) = ddmin(&items, |s| s.contains(&37));
        assert_eq!(found, vec![37]);
        assert!(calls <= 16, "{calls} calls");
    }

    proptest! {
        /// Whatever set of culprits must all be present, ddmin returns exactly it.
        #[test]
        fn returns_exactly_the_culprits(len in 1usize..40, picks in proptest::collection::btree_set(0usize..40, 1..4)) {
            let culprits: Vec<usize> = picks.into_iter().filter(|p| *p < len).collect();
            prop_assume!(!culprits.is_empty());
            let items: Vec<usize> = (0..len).collect();
            let (found, _) = ddmin(&items, |s| culprits.iter().all(|c| s.contains(c)));
            prop_assert_eq!(found, culprits);
        }

        /// The result is 1-minimal: dropping any element passes.
        #[test]
        fn the_result_is_one_minimal(len in 1usize..30, threshold in 1usize..6) {
            // Fails when at least `threshold` even numbers are present.
            let items: Vec<usize> = (0..len).collect();
            let fails = |s: &[usize]| s.iter().filter(|x| *x % 2 == 0).count() >= threshold;
            prop_assume!(fails(&items));
            let (found, _) = ddmin(&items, fails);
            prop_assert!(fails(&found));
            for i in 0..found.len() {
                let mut less = found.clone();
                less.remove(i);
                prop_assert!(!fails(&less));
            }
        }
    }
}
