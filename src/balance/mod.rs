//! Load balancing: the per-worker state of each upstream's balancer and the pick.
//! State is owned by one worker (no atomics, no locks); each worker balances on
//! its own, which evens out across workers.

mod round_robin;
mod weighted;

pub(crate) use round_robin::RoundRobin;
pub(crate) use weighted::SmoothWeighted;

use crate::upstream::EndpointSpec;

/// The algorithm configured for an upstream (`balance = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BalanceKind {
    RoundRobin,
    Weighted,
}

impl BalanceKind {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "round_robin" => Ok(BalanceKind::RoundRobin),
            "weighted" => Ok(BalanceKind::Weighted),
            other => Err(format!(
                "unknown balance algorithm {other:?}: expected \"round_robin\" or \"weighted\""
            )),
        }
    }
}

/// One upstream's balancer state on one worker.
pub(crate) enum Balancer {
    RoundRobin(RoundRobin),
    Weighted(SmoothWeighted),
}

impl Balancer {
    /// Fresh state; `seed` (the worker id) staggers the workers' starting points.
    pub(crate) fn new(kind: BalanceKind, endpoints: &[EndpointSpec], seed: usize) -> Self {
        match kind {
            BalanceKind::RoundRobin => Balancer::RoundRobin(RoundRobin::new(seed)),
            BalanceKind::Weighted => Balancer::Weighted(SmoothWeighted::new(endpoints)),
        }
    }

    /// The index of the endpoint for the next request, `None` if there is none.
    pub(crate) fn pick(&mut self, endpoints: &[EndpointSpec]) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        Some(match self {
            Balancer::RoundRobin(b) => b.pick(endpoints.len()),
            Balancer::Weighted(b) => b.pick(endpoints),
        })
    }
}
