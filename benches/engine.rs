//! Criterion benchmarks of the engine's per-task decisions: the OCPS valve, the surprise
//! router, the governor's admission, one organism update (the energy-driven choice of agent
//! and its shadow), the energy with its gradient, and a memory-fabric lookup.
//! Run: `cargo bench --bench engine`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use seedcore_engine::config::{GovernorConfig, MemoryConfig, OrganismConfig, RouterConfig, ValveConfig};
use seedcore_engine::governor::{AdmitRequest, Governor};
use seedcore_engine::memory::MemoryFabric;
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

fn energy(c: &mut Criterion) {
    let mut organism = Organism::new(OrganismConfig::default());
    for n in 0..1_000u64 {
        let kind = Kind::ALL[(n % 7) as usize];
        organism.update(kind, &features(kind, 0.2, 5, 800, 200, n));
    }
    c.bench_function("energy_terms_and_gradient_d128", |b| b.iter(|| black_box(organism.energy(black_box(0.4)))));
}

fn memory(c: &mut Criterion) {
    // A fabric in steady state: 4,096 distinct chat answers stored 1 ms apart, then lookups
    // of recent signatures (hits in Mw, M2.5 and Mlt) and of never-stored ones.
    let mut fabric = MemoryFabric::new(MemoryConfig::default());
    for s in 0..4_096u64 {
        fabric.store(s, Kind::Chat, 100, s);
    }
    let mut n = 0u64;
    c.bench_function("memory_lookup_three_tiers", |b| {
        b.iter(|| {
            n += 1;
            let signature = 4_096 - (n * 7919) % 2_900;
            let now = 4_096 + n % 2;
            black_box(fabric.lookup(signature, Kind::Chat, now))
        })
    });
}

criterion_group!(benches, valve, router, governor, organism, energy, memory);
criterion_main!(benches);
