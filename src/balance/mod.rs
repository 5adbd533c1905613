//! Load balancing: the per-worker state of each upstream's balancer and the pick.
//! State is owned by one worker (no atomics, no locks); each worker balances on
//! its own, which evens out across workers. A pick only considers the endpoints
//! a health predicate accepts (the worker passes one relaxed load of each
//! candidate's health flag), so an endpoint marked down gets no traffic while
//! the others keep their fair or weighted shares.

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

    /// The index of the endpoint for the next request among those for which
    /// `healthy(index)` holds; `None` if there is none. Round robin takes the
    /// next healthy endpoint in its rotation; smooth weighted runs over the
    /// healthy endpoints only. No allocation, no lock; `healthy` is called at
    /// most once per endpoint.
    #[inline]
    pub fn pick(
        &mut self,
        endpoints: &[EndpointSpec],
        healthy: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        match self {
            Balancer::RoundRobin(b) => b.pick(endpoints.len(), healthy),
            Balancer::Weighted(b) => b.pick(endpoints, healthy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Vec<EndpointSpec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| EndpointSpec::new(([127, 0, 0, 1], 9000 + i as u16).into(), w))
            .collect()
    }

    fn counts(b: &mut Balancer, e: &[EndpointSpec], down: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; e.len()];
        for _ in 0..n {
            c[b.pick(e, |i| !down.contains(&i)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn both_algorithms_skip_unhealthy_and_stay_even_or_weighted() {
        let e = eps(&[3, 2, 1, 4]);
        for seed in 0..4 {
            let mut rr = Balancer::new(BalanceKind::RoundRobin, &e, seed);
            assert_eq!(counts(&mut rr, &e, &[], 400), [100; 4]);
            assert_eq!(counts(&mut rr, &e, &[1], 300), [100, 0, 100, 100]);
            assert_eq!(counts(&mut rr, &e, &[0, 3], 300), [0, 150, 150, 0]);
            assert_eq!(counts(&mut rr, &e, &[], 400), [100; 4]);
        }
        let mut w = Balancer::new(BalanceKind::Weighted, &e, 0);
        assert_eq!(counts(&mut w, &e, &[], 1000), [300, 200, 100, 400]);
        // Weight 4 goes down: the others keep 3:2:1. The scores left by the
        // previous phase shift a cycle by at most one pick per endpoint.
        let c = counts(&mut w, &e, &[3], 600);
        assert_eq!(c[3], 0);
        for (got, want) in c.iter().zip([300, 200, 100]) {
            assert!(got.abs_diff(want) <= 1, "{c:?}");
        }
        let c = counts(&mut w, &e, &[0, 1], 500);
        assert_eq!(c[..2], [0, 0]);
        assert!(c[2].abs_diff(100) <= 1 && c[3].abs_diff(400) <= 1, "{c:?}");
        // Back up: the full shares again.
        let c = counts(&mut w, &e, &[], 1000);
        for (got, want) in c.iter().zip([300, 200, 100, 400]) {
            assert!(got.abs_diff(want) <= 2, "{c:?}");
        }
    }

    #[test]
    fn none_healthy_is_none_and_empty_is_none() {
        let e = eps(&[1, 1]);
        for kind in [BalanceKind::RoundRobin, BalanceKind::Weighted] {
            let mut b = Balancer::new(kind, &e, 0);
            assert_eq!(b.pick(&e, |_| false), None);
            assert!(b.pick(&e, |_| true).is_some());
            assert_eq!(b.pick(&[], |_| true), None);
        }
    }

    #[test]
    fn the_predicate_is_asked_at_most_once_per_endpoint() {
        use std::cell::Cell;
        let e = eps(&[1, 2, 3, 4, 5]);
        for kind in [BalanceKind::RoundRobin, BalanceKind::Weighted] {
            let mut b = Balancer::new(kind, &e, 0);
            for _ in 0..20 {
                let asked = Cell::new(0);
                let _ = b.pick(&e, |i| {
                    asked.set(asked.get() + 1);
                    i == 4
                });
                assert!(asked.get() <= e.len());
            }
        }
        // Round robin with everything up looks at one endpoint only.
        let mut rr = Balancer::new(BalanceKind::RoundRobin, &e, 3);
        let asked = Cell::new(0);
        let _ = rr.pick(&e, |_| {
            asked.set(asked.get() + 1);
            true
        });
        assert_eq!(asked.get(), 1);
    }
}
