//! Load balancing: the per-worker state of each upstream's balancer and the pick.
//! State is owned by one worker (no atomics, no locks); each worker balances on
//! its own, which evens out across workers.

mod round_robin;
mod weighted;

pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

use crate::upstream::EndpointSpec;

/// The algorithm configured for an upstream (`balance = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceKind {
    /// `"round_robin"`: each endpoint in turn, weights ignored.
    RoundRobin,
    /// `"weighted"`: smooth weighted round robin over the endpoints' weights.
    Weighted,
}

impl BalanceKind {
    /// Parses the `balance` value of an upstream, or says what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
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
pub enum Balancer {
    /// State of [`BalanceKind::RoundRobin`].
    RoundRobin(RoundRobin),
    /// State of [`BalanceKind::Weighted`].
    Weighted(SmoothWeighted),
}

impl Balancer {
    /// Fresh state; `seed` (the worker id) staggers the workers' starting points.
    pub fn new(kind: BalanceKind, endpoints: &[EndpointSpec], seed: usize) -> Self {
        match kind {
            BalanceKind::RoundRobin => Balancer::RoundRobin(RoundRobin::new(seed)),
            BalanceKind::Weighted => Balancer::Weighted(SmoothWeighted::new(endpoints)),
        }
    }

    /// The index of the endpoint for the next request, `None` if there is none.
    pub fn pick(&mut self, endpoints: &[EndpointSpec]) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        Some(match self {
            Balancer::RoundRobin(b) => b.pick(endpoints.len()),
            Balancer::Weighted(b) => b.pick(endpoints),
        })
    }
}
