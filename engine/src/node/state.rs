//! The state node: the organism (docs/engine.md 4.6) and the memory fabric (docs/engine.md 4.3).
//!
//! The organism is rebuilt from its seed on every start; by the contraction property a
//! restarted state node forgets its lost history geometrically.

use super::NodeContext;
use crate::memory::{Flashbulb, MemoryFabric, Tier25Lookup};
use crate::organism::{Bounds, Organism, Promotion};
use crate::peers::Server;
use crate::probe::{
    ppm, ContractionSignal, EnergySignal, FlashbulbCause, FlashbulbSignal, LTotSignal, MaskSignal, NodeEvent,
    NodeSignal, OrganismCause, PromotionRefusedSignal, Role, Signal,
};
use crate::rpc::{
    Complete, CompleteBatch, Completed, Found, Looked, Lookup, Promote, Promoted, Proposal, StateQuery, StateSnapshot,
    Tier25Answer, Tier25Retrieve, Tier25Store, Validate, Validated,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct StateCore {
    organism: Organism,
    memory: MemoryFabric,
}

impl StateCore {
    /// The energy's memory pressure.
    fn memory_pressure(&self) -> f64 {
        self.memory.pressure()
    }

    fn snapshot(&self) -> StateSnapshot {
        let config = self.organism.config();
        let bounds = self.organism.bounds();
        let (updates, agent_updates) = self.organism.updates();
        StateSnapshot {
            agents: config.agents,
            organs: config.organs,
            dim: config.dim,
            updates,
            agent_updates: agent_updates.to_vec(),
            l_tot: bounds.l_tot,
            l_max: config.l_max,
            a_inf: bounds.a_inf,
            w2_bound: bounds.w2_bound,
            w2_estimate: bounds.w2_estimate,
            energy: self.organism.energy(self.memory_pressure()),
            tiers: self.memory.fill(),
            max_freshness_ms: self.memory.config().max_freshness_ms,
            flashbulbs: self.memory.flashbulbs().len(),
        }
    }

    fn validate(&self, proposal: &Proposal) -> Validated {
        let l_max = self.organism.config().l_max;
        let before = self.organism.bounds().l_tot;
        match *proposal {
            Proposal::Promotion { w_norm } => {
                let (trial, proposed) = self.organism.trial_promotion(w_norm);
                let mask = trial.mask.clone();
                Validated {
                    allowed: mask.is_none() && !trial.refused,
                    l_tot_before: before,
                    l_tot_proposed: proposed,
                    l_tot_after: trial.after.l_tot,
                    l_max,
                    edges_masked: mask.as_ref().map_or(0, |m| m.edges_masked),
                    w_scale: mask.as_ref().map_or(1.0, |m| m.w_scale),
                }
            }
            Proposal::Edge { from, to, weight } => {
                let proposed = self.organism.trial_edge(from, to, weight);
                let allowed = proposed < l_max;
                Validated {
                    allowed,
                    l_tot_before: before,
                    l_tot_proposed: proposed,
                    l_tot_after: if allowed { proposed } else { before },
                    l_max,
                    edges_masked: 0,
                    w_scale: 1.0,
                }
            }
        }
    }
}

fn l_tot_signal(bounds: Bounds, cause: OrganismCause) -> Signal {
    Signal::LTot(LTotSignal {
        a_inf_ppm: ppm(bounds.a_inf),
        cause,
        l_tot_ppm: ppm(bounds.l_tot),
        w2_bound_ppm: ppm(bounds.w2_bound),
        w2_estimate_ppm: ppm(bounds.w2_estimate),
    })
}

/// The energy now, as a signal.
fn energy_signal(core: &StateCore, cause: OrganismCause) -> Signal {
    let e = core.organism.energy(core.memory_pressure());
    Signal::Energy(EnergySignal {
        cause,
        ent_ppm: ppm(e.ent),
        gradient_norm_ppm: ppm(e.gradient_norm),
        mem_ppm: ppm(e.mem),
        pair_ppm: ppm(e.pair),
        reg_ppm: ppm(e.reg),
        total_ppm: ppm(e.total),
        updates: core.organism.updates().0,
    })
}

/// Reports a promotion: refused for raising the energy, or GraphMask's action, if any, the
/// new bound and the energy after it.
fn emit_promotion(context: &NodeContext, core: &StateCore, promotion: &Promotion, cause: OrganismCause) {
    if promotion.refused {
        let energy = core.organism.energy(core.memory_pressure()).total;
        context.emit(Signal::PromotionRefused(PromotionRefusedSignal {
            cause,
            delta_e_ppm: ppm(promotion.delta_e),
            energy_ppm: ppm(energy),
        }));
        return;
    }
    if let Some(mask) = &promotion.mask {
        context.emit(Signal::Mask(MaskSignal {
            edges_masked: mask.edges_masked,
            l_tot_ppm: ppm(promotion.after.l_tot),
            rows: mask.rows,
            w_scale_ppm: ppm(mask.w_scale),
        }));
    }
    context.emit(l_tot_signal(promotion.after, cause));
    context.emit(energy_signal(core, cause));
}

/// Starts the state node on `server`.
pub async fn start_state(server: Server, context: NodeContext) {
    let organism = Organism::new(context.config.organism.clone());
    context.emit(Signal::Node(NodeSignal { event: NodeEvent::Started, role: Role::State }));
    context.emit(l_tot_signal(organism.bounds(), OrganismCause::Init));
    let core = StateCore { organism, memory: MemoryFabric::new(context.config.memory.clone()) };
    context.emit(energy_signal(&core, OrganismCause::Init));
    let core = Arc::new(Mutex::new(core));
    register_queries(&server, &core);
    let lookup_core = core.clone();
    let lookup_context = context.clone();
    server.add(move |request: Lookup| {
        // The pending completions first, then the fabric answers as of the request; the
        // answer leaves after the latency of every tier it asked.
        let mut core = lookup_core.lock().expect("state lock is never poisoned");
        let completed = apply_all(&mut core, &lookup_context, &request.pending);
        let looked = core.memory.lookup(request.signature, request.kind, request.now_ms);
        async move {
            madsim::time::sleep(Duration::from_millis(looked.latency_ms)).await;
            let found = looked.served.map(|s| Found { age_ms: s.age_ms, tier: s.tier, tokens_out: s.tokens_out });
            Looked { found, completed }
        }
    });
    let promote_core = core.clone();
    let promote_context = context.clone();
    server.add(move |request: Promote| {
        let core = promote_core.clone();
        let context = promote_context.clone();
        async move {
            let mut core = core.lock().expect("state lock is never poisoned");
            let promotion = core.organism.promote_external(request.norm_ppm as f64 / 1e6);
            emit_promotion(&context, &core, &promotion, OrganismCause::ExternalPromotion);
            Promoted { l_tot_ppm: ppm(promotion.after.l_tot), masked: promotion.mask.is_some() && !promotion.refused }
        }
    });
    server.add(move |CompleteBatch(batch)| {
        let completed = apply_all(&mut core.lock().expect("state lock is never poisoned"), &context, &batch);
        async move { completed }
    });
}

/// Completions in order; what the last one did, if any.
fn apply_all(core: &mut StateCore, context: &NodeContext, batch: &[Complete]) -> Option<Completed> {
    batch.iter().map(|request| apply(core, context, request)).last()
}

/// One completion: the memory fabric's store, a flashbulb, the organism's update.
fn apply(core: &mut StateCore, context: &NodeContext, request: &Complete) -> Completed {
    if request.store {
        core.memory.store(request.signature, request.kind, request.tokens_out, request.now_ms);
    }
    if request.salient {
        let event = Flashbulb {
            task_id: request.task_id,
            kind: request.kind,
            at_ms: request.now_ms,
            cause: FlashbulbCause::Breach,
        };
        core.memory.remember(event);
        context.emit(Signal::Flashbulb(FlashbulbSignal {
            cause: FlashbulbCause::Breach,
            held: core.memory.flashbulbs().len() as u64,
            task_id: request.task_id,
        }));
    }
    let report = core.organism.update(request.kind, &request.features);
    if let Some(promotion) = &report.promotion {
        emit_promotion(context, core, promotion, OrganismCause::Promotion);
    }
    if report.energy_due {
        context.emit(energy_signal(core, OrganismCause::Sample));
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

/// The read-only and trial requests of the gateway: snapshot, GraphMask validation, M2.5.
fn register_queries(server: &Server, core: &Arc<Mutex<StateCore>>) {
    let lock = |core: &Arc<Mutex<StateCore>>| core.lock().expect("state lock is never poisoned").snapshot();
    let snapshot_core = core.clone();
    server.add(move |_: StateQuery| {
        let snapshot = lock(&snapshot_core);
        async move { snapshot }
    });
    let validate_core = core.clone();
    server.add(move |Validate(proposal)| {
        let verdict = validate_core.lock().expect("state lock is never poisoned").validate(&proposal);
        async move { verdict }
    });
    let store_core = core.clone();
    server.add(move |request: Tier25Store| {
        let mut core = store_core.lock().expect("state lock is never poisoned");
        core.memory.store_m25(request.signature, request.kind, request.tokens_out, request.now_ms);
        let held = core.memory.fill()[1].entries;
        async move { held }
    });
    let retrieve_core = core.clone();
    server.add(move |request: Tier25Retrieve| {
        let found = retrieve_core
            .lock()
            .expect("state lock is never poisoned")
            .memory
            .retrieve_m25(request.signature, request.now_ms);
        let answer = match found {
            Tier25Lookup::Hit { kind, tokens_out, age_ms } => Tier25Answer::Hit { kind, tokens_out, age_ms },
            Tier25Lookup::Stale { age_ms } => Tier25Answer::Stale { age_ms },
            Tier25Lookup::Miss => Tier25Answer::Miss,
        };
        async move { answer }
    });
}
