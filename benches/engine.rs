//! Criterion benchmarks of the engine's per-task decisions: the OCPS valve, the surprise
//! router, the governor's admission, and one organism update (with its shadow).
//! Run: `cargo bench --bench engine`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use seedcore_engine::config::{GovernorConfig, OrganismConfig, RouterConfig, ValveConfig};
use seedcore_engine::governor::{AdmitRequest, Governor};
use seedcore_engine::organism::{features, Organism};
use seedcore_engine::router::{Router, RouterInputs};
use seedcore_engine::valve::Valve;
use seedcore_engine::{Kind, Path};

fn drifts() -> Vec<f64> {
    (0..1024).map(|i| ((i * 7919) % 1000) as f64 / 2500.0).collect()
}

fn valve(c: &mut Criterion) {
    let drifts = drifts();
    let mut valve = Valve::new(ValveConfig::default());
    let mut i = 0;
    c.bench_function("valve_observe", |b| {
        b.iter(|| {
            i = (i + 1) % drifts.len();
            black_box(valve.observe(black_box(drifts[i])))
        })
    });
}

fn router(c: &mut Criterion) {
    let drifts = drifts();
    let mut valve = Valve::new(ValveConfig::default());
    let mut router = Router::new(RouterConfig::default());
    let mut i = 0;
    c.bench_function("valve_and_router_decision", |b| {
        b.iter(|| {
            i = (i + 1) % drifts.len();
            let step = valve.observe(drifts[i]);
            let inputs = RouterInputs {
                cache_miss: 0.9,
                valve: step.s / 2.5,
                drift: drifts[i],
                state_change: 0.5,
                uncertainty: 0.1,
                pressure: 0.3,
            };
            let decision = router.decide(step.breached, i % 100 == 0, black_box(&inputs));
            router.commit(decision.path);
            black_box(decision)
        })
    });
}

fn governor(c: &mut Criterion) {
    let mut governor =
        Governor::new(GovernorConfig { daily_budget_micro_usd: u64::MAX / 4, ..GovernorConfig::default() });
    let mut task_id = 0;
    c.bench_function("governor_admit_and_settle", |b| {
        b.iter(|| {
            task_id += 1;
            let request = AdmitRequest {
                task_id,
                day: 0,
                kind: Kind::Chat,
                path: Path::Fast,
                soft: false,
                tokens_in: 900,
                tokens_out: 200,
                max_tokens: 4096,
            };
            let plan = governor.admit(request).expect("admitted");
            black_box(governor.settle(task_id, plan.path, plan.tokens_in, 200, plan.max_tokens_out))
        })
    });
}

fn organism(c: &mut Criterion) {
    let mut organism = Organism::new(OrganismConfig::default());
    let mut n = 0u64;
    c.bench_function("organism_update_d128_with_shadow", |b| {
        b.iter(|| {
            n += 1;
            let kind = Kind::ALL[(n % 7) as usize];
            black_box(organism.update(kind, &features(kind, 0.2, 5, 800, 200, n)))
        })
    });
}

criterion_group!(benches, valve, router, governor, organism);
criterion_main!(benches);
