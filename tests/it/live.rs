//! The live build runs the same engine code over gRPC on loopback: every role in one
//! process, tasks submitted through the engine's client, outcomes back, and a ledger on
//! disk that verifies. Bounded: 24 tasks with a fast simulated backend.

use seedcore_engine::client::Client;
use seedcore_engine::config::{EngineConfig, PathModel};
use seedcore_engine::ledger::verify_dir;
use seedcore_engine::probe::NullProbe;
use seedcore_engine::serve::start_all_in_one;
use seedcore_engine::{Authority, Kind, Outcome, Task};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

fn task(task_id: u64) -> Task {
    Task {
        task_id,
        at_ms: task_id * 10,
        kind: Kind::ALL[(task_id % 4) as usize],
        domain: "guest".into(),
        drift: 0.1,
        priority: 5,
        authority: Authority::High,
        needs_planning: task_id % 6 == 5,
        tokens_in: 300,
        tokens_out: 80,
        signature: task_id % 5,
    }
}

#[test]
fn serve_on_loopback_answers_tasks_and_keeps_a_verified_ledger() {
    let data = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::default();
    config.ledger.dir = data.path().join("ledger").display().to_string();
    config.ledger.cycle_receipts = 10;
    config.ledger.segment_receipts = 10;
    config.ledger.key_seed = Some([9; 32]);
    config.backend.deep = PathModel::flat(40.0, 2.25);
    let key = ed25519_dalek_key(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let addresses =
            start_all_in_one(Arc::new(config.clone()), host, 0, Arc::new(NullProbe), &None).await.unwrap().addresses;
        assert!(addresses.coordinator.is_loopback());
        let client = Arc::new(Client::connect(addresses.coordinator.clone(), &None));
        let handles: Vec<_> = (0..24)
            .map(|id| {
                let client = client.clone();
                tokio::spawn(async move { client.submit(task(id), Duration::from_secs(10)).await })
            })
            .collect();
        let mut deep = 0;
        for handle in handles {
            match handle.await.unwrap().expect("every task is answered") {
                Outcome::Completed { path, .. } => deep += usize::from(path == seedcore_engine::Path::Deep),
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(deep, 4, "needs_planning tasks run deep");
        // Resubmitting returns the recorded outcome instead of running the task again.
        let again = client.submit(task(3), Duration::from_secs(10)).await.unwrap();
        assert!(matches!(again, Outcome::Completed { .. }));
        let verified = verify_dir(&config.ledger.dir, &key, |_| {}).await.unwrap();
        assert_eq!(verified.receipts, 24);
        assert_eq!(verified.cycles, 2);
        assert_eq!(verified.segments, 3, "segments of 10 receipts: 10, 10 and the open one");
    });
}

fn ed25519_dalek_key(config: &EngineConfig) -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&config.ledger.key_seed.expect("the test sets a key")).verifying_key()
}
