//! The state node: the organism (SPEC 4.6) and the working cache Mw (SPEC 4.3).
//!
//! The organism is rebuilt from its seed on every start; by the contraction property a
//! restarted state node forgets its lost history geometrically.

use super::NodeContext;
use crate::memory::WorkingCache;
use crate::organism::{Bounds, Organism, Promotion};
use crate::probe::{ppm, ContractionSignal, LTotSignal, MaskSignal, NodeSignal, Signal};
use crate::rpc::{Complete, Completed, Found, Lookup, Promote, Promoted};
use madsim::net::Endpoint;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct StateCore {
    organism: Organism,
    cache: WorkingCache,
}

fn l_tot_signal(bounds: Bounds, cause: &str) -> Signal {
    Signal::LTot(LTotSignal {
        a_inf_ppm: ppm(bounds.a_inf),
        cause: cause.into(),
        l_tot_ppm: ppm(bounds.l_tot),
        w2_bound_ppm: ppm(bounds.w2_bound),
        w2_estimate_ppm: ppm(bounds.w2_estimate),
    })
}

/// Reports a promotion: GraphMask's action, if any, and the new bound.
fn emit_promotion(context: &NodeContext, promotion: &Promotion, cause: &str) {
    if let Some(mask) = &promotion.mask {
        context.emit(Signal::Mask(MaskSignal {
            edges_masked: mask.edges_masked,
            l_tot_ppm: ppm(promotion.after.l_tot),
            rows: mask.rows,
            w_scale_ppm: ppm(mask.w_scale),
        }));
    }
    context.emit(l_tot_signal(promotion.after, cause));
}

/// Starts the state node on `endpoint`.
pub async fn start_state(endpoint: Endpoint, context: NodeContext) {
    let organism = Organism::new(context.config.organism.clone());
    context.emit(Signal::Node(NodeSignal { event: "started".into(), role: "state".into() }));
    context.emit(l_tot_signal(organism.bounds(), "init"));
    let core = Arc::new(Mutex::new(StateCore { organism, cache: WorkingCache::new(context.config.memory.clone()) }));
    let latency = Duration::from_millis(context.config.memory.mw_latency_ms);
    let lookup_core = core.clone();
    endpoint.add_rpc_handler(move |request: Lookup| {
        let core = lookup_core.clone();
        async move {
            madsim::time::sleep(latency).await;
            let mut core = core.lock().expect("state lock is never poisoned");
            core.cache
                .lookup(request.signature, request.kind, request.now_ms)
                .map(|hit| Found { age_ms: hit.age_ms, tokens_out: hit.tokens_out })
        }
    });
    let promote_core = core.clone();
    let promote_context = context.clone();
    endpoint.add_rpc_handler(move |request: Promote| {
        let core = promote_core.clone();
        let context = promote_context.clone();
        async move {
            let mut core = core.lock().expect("state lock is never poisoned");
            let promotion = core.organism.promote_external(request.norm_ppm as f64 / 1e6);
            emit_promotion(&context, &promotion, "external_promotion");
            Promoted { l_tot_ppm: ppm(promotion.after.l_tot), masked: promotion.mask.is_some() }
        }
    });
    endpoint.add_rpc_handler(move |request: Complete| {
        let core = core.clone();
        let context = context.clone();
        async move {
            let mut core = core.lock().expect("state lock is never poisoned");
            if request.store {
                core.cache.insert(request.signature, request.kind, request.tokens_out, request.now_ms);
            }
            let report = core.organism.update(request.kind, &request.features);
            if let Some(promotion) = &report.promotion {
                emit_promotion(&context, promotion, "promotion");
            }
            if let Some(c) = report.contraction {
                context.emit(Signal::Contraction(ContractionSignal {
                    bound_ppm: (c.bound * 1e6).ceil().min(i64::MAX as f64) as i64,
                    ok: c.ok,
                    ratio_ppm: (c.ratio * 1e6).floor().min(i64::MAX as f64) as i64,
                    sweep: c.sweep,
                }));
            }
            Completed { state_change: report.state_change, l_tot: core.organism.bounds().l_tot }
        }
    });
}
