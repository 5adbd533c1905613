//! Load balancing: the per-worker state of each upstream's balancer and the pick.
//! State is owned by one worker (no atomics, no locks); each worker balances on
//! its own, which evens out across workers. A pick only considers the endpoints
//! a health predicate accepts (the worker passes one relaxed load of each
//! candidate's health flag), so an endpoint marked down gets no traffic while
//! the others keep their fair or weighted shares.
//!
//! | algorithm | state (per worker) | reads per pick |
//! | --- | --- | --- |
//! | `round_robin` | a counter | 1 health load |
//! | `weighted` | a score per endpoint | every endpoint |
//! | `random` | a generator | 1 health load |
//! | `least_request` | a generator | 2 health + 2 in-flight loads |
//! | `peak_ewma` | a generator, an average per endpoint | 2 health + 2 in-flight loads, the clock |
//! | `ring`, `maglev` | the fallback's (the table is in the snapshot) | a lookup + 1 health load |
//!
//! Consistent hashing keeps no per-worker state: the table ([`HashTable`]) is
//! built by the control plane and shared read-only through the snapshot, so
//! every worker sends a key to the same endpoint.

mod hash;
mod least_request;
mod peak_ewma;
mod random;
mod round_robin;
pub(crate) mod set;
mod weighted;

pub use hash::{hash_bytes, HashTable, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_VIRTUAL_NODES};
pub(crate) use hash::{is_prime, HashFallback, HashKey, MAX_MAGLEV_TABLE_SIZE, MAX_RING_POINTS};
use least_request::LeastRequest;
use peak_ewma::{PeakEwma, DEFAULT_TAU};
use random::Random;
use round_robin::RoundRobin;
use weighted::SmoothWeighted;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::upstream::EndpointSpec;

/// The algorithm configured for an upstream (`balance = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceKind {
    /// `"round_robin"`: each endpoint in turn, weights ignored.
    RoundRobin,
    /// `"weighted"`: smooth weighted round robin over the endpoints' weights.
    Weighted,
    /// `"random"`: uniformly at random, weights ignored.
    Random,
    /// `"least_request"`: the fewer requests in flight (per weight) of two
    /// random endpoints.
    LeastRequest,
    /// `"peak_ewma"`: the lower latency average × (in flight + 1) of two
    /// random endpoints.
    PeakEwma,
    /// `"ring"`: consistent hashing on a ring with virtual nodes.
    Ring,
    /// `"maglev"`: consistent hashing with a Maglev lookup table.
    Maglev,
}

const ALL: [(BalanceKind, &str); 7] = [
    (BalanceKind::RoundRobin, "round_robin"),
    (BalanceKind::Weighted, "weighted"),
    (BalanceKind::Random, "random"),
    (BalanceKind::LeastRequest, "least_request"),
    (BalanceKind::PeakEwma, "peak_ewma"),
    (BalanceKind::Ring, "ring"),
    (BalanceKind::Maglev, "maglev"),
];

impl BalanceKind {
    /// Parses the `balance` value of an upstream, or says what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        ALL.iter().find(|(_, n)| *n == s).map(|(k, _)| *k).ok_or_else(|| {
            format!(
                "unknown balance algorithm {s:?}: expected one of \"round_robin\", \"weighted\", \"random\", \"least_request\", \"peak_ewma\", \"ring\", \"maglev\""
            )
        })
    }

    /// The name as configured.
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(k, _)| *k == self).map_or("?", |(_, n)| n)
    }

    /// Consistent hashing (`ring` or `maglev`): needs a `hash_key`.
    pub fn is_hash(self) -> bool {
        matches!(self, BalanceKind::Ring | BalanceKind::Maglev)
    }

    /// Whether the algorithm takes the endpoint weights into account.
    pub fn uses_weights(self) -> bool {
        !matches!(self, BalanceKind::RoundRobin | BalanceKind::Random)
    }
}

/// How an upstream's endpoints are picked, as compiled: the algorithm and,
/// for `ring` and `maglev`, the hashing. Part of the snapshot, one per
/// upstream (indexed like the upstreams).
#[derive(Debug)]
pub(crate) struct BalancePolicy {
    pub(crate) kind: BalanceKind,
    /// Consistent hashing (`ring`, `maglev`): the key and the table.
    pub(crate) hash: Option<HashPolicy>,
}

/// How a `ring` or `maglev` upstream hashes: built once by the control
/// plane, read by every worker.
#[derive(Debug)]
pub(crate) struct HashPolicy {
    pub(crate) key: HashKey,
    /// What picks for requests without a key.
    pub(crate) fallback: HashFallback,
    /// Virtual nodes per weight unit (ring) or table size (maglev).
    pub(crate) size: u32,
    pub(crate) table: HashTable,
}

impl BalancePolicy {
    /// The algorithm of the worker's own state: a hashed upstream's is its
    /// fallback's (requests without a key).
    fn state_kind(&self) -> BalanceKind {
        self.hash.as_ref().map_or(self.kind, |h| h.fallback.kind())
    }

    /// Whether the balancer learns from latencies (`peak_ewma`), so the
    /// exchange should report them.
    pub(crate) fn observes(&self) -> bool {
        self.kind == BalanceKind::PeakEwma
    }
}

/// One upstream's balancer state on one worker. For `ring` and `maglev` it
/// is the state of the fallback used for requests without a key (the table
/// itself is in the snapshot).
#[derive(Debug, Clone)]
pub enum Balancer {
    /// State of [`BalanceKind::RoundRobin`].
    RoundRobin(RoundRobin),
    /// State of [`BalanceKind::Weighted`].
    Weighted(SmoothWeighted),
    /// State of [`BalanceKind::Random`].
    Random(Random),
    /// State of [`BalanceKind::LeastRequest`].
    LeastRequest(LeastRequest),
    /// State of [`BalanceKind::PeakEwma`].
    PeakEwma(PeakEwma),
}

impl Balancer {
    /// Fresh state; `seed` (the worker id) staggers the workers' starting
    /// points and random sequences. `Ring` and `Maglev` get round-robin state
    /// (pass the fallback's kind instead to get random).
    pub fn new(kind: BalanceKind, endpoints: &[EndpointSpec], seed: usize) -> Self {
        match kind {
            BalanceKind::RoundRobin | BalanceKind::Ring | BalanceKind::Maglev => {
                Balancer::RoundRobin(RoundRobin::new(seed))
            }
            BalanceKind::Weighted => Balancer::Weighted(SmoothWeighted::new(endpoints)),
            BalanceKind::Random => Balancer::Random(Random::new(seed)),
            BalanceKind::LeastRequest => Balancer::LeastRequest(LeastRequest::new(seed)),
            BalanceKind::PeakEwma => {
                Balancer::PeakEwma(PeakEwma::new(endpoints.len(), seed, DEFAULT_TAU))
            }
        }
    }

    /// The index of the endpoint for the next request among those for which
    /// `healthy(index)` holds; `None` if there is none. `in_flight(index)` is
    /// the number of requests this worker has in flight at the endpoint
    /// (read by `least_request` and `peak_ewma` only, for two endpoints).
    /// Round robin takes the next healthy endpoint in its rotation; smooth
    /// weighted runs over the healthy endpoints only; random draws among the
    /// healthy ones. No allocation, no lock; `healthy` is called at most once
    /// per endpoint.
    #[inline]
    pub fn pick(
        &mut self,
        endpoints: &[EndpointSpec],
        healthy: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        match self {
            Balancer::RoundRobin(b) => b.pick(endpoints.len(), healthy),
            Balancer::Weighted(b) => b.pick(endpoints, healthy),
            Balancer::Random(b) => b.pick(endpoints.len(), healthy),
            Balancer::LeastRequest(b) => b.pick(endpoints, healthy, in_flight),
            Balancer::PeakEwma(b) => b.pick(endpoints, healthy, in_flight),
        }
    }

    /// A latency observed at endpoint `index` (time to the response head).
    /// Only `peak_ewma` keeps it; for the others this does nothing.
    #[inline]
    pub fn observe(&mut self, index: usize, rtt: Duration, now: Instant) {
        if let Balancer::PeakEwma(b) = self {
            b.observe(index, rtt, now);
        }
    }

    /// Takes over what `old` (the same upstream's state for the previous
    /// snapshot, whose endpoints were at `old_addrs`) learnt, when both are
    /// the same algorithm: the rotation position, the generator, and, per
    /// endpoint address still configured, the smooth-weighted score and the
    /// latency average. Endpoints that are new start fresh; a changed weight
    /// keeps the endpoint's state and applies from the next pick.
    pub fn carry_over(
        &mut self,
        old: &Balancer,
        old_addrs: &[SocketAddr],
        endpoints: &[EndpointSpec],
    ) {
        fn remap<T: Copy>(
            old: &[T],
            old_addrs: &[SocketAddr],
            endpoints: &[EndpointSpec],
            new: &mut [T],
        ) {
            for (slot, e) in new.iter_mut().zip(endpoints) {
                if let Some(j) = old_addrs.iter().position(|a| *a == e.addr) {
                    if let Some(v) = old.get(j) {
                        *slot = *v;
                    }
                }
            }
        }
        match (self, old) {
            (Balancer::RoundRobin(n), Balancer::RoundRobin(o)) => *n = o.clone(),
            (Balancer::Random(n), Balancer::Random(o)) => *n = o.clone(),
            (Balancer::LeastRequest(n), Balancer::LeastRequest(o)) => *n = o.clone(),
            (Balancer::Weighted(n), Balancer::Weighted(o)) => {
                n.current.resize(endpoints.len(), 0);
                remap(&o.current, old_addrs, endpoints, &mut n.current);
            }
            (Balancer::PeakEwma(n), Balancer::PeakEwma(o)) => {
                n.rng = o.rng.clone();
                n.ewma.truncate(endpoints.len());
                remap(&o.ewma, old_addrs, endpoints, &mut n.ewma);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoints on 127.0.0.1:9000, :9001, … with these weights.
    pub(crate) fn eps(weights: &[u32]) -> Vec<EndpointSpec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| EndpointSpec::new(([127, 0, 0, 1], 9000 + i as u16).into(), w))
            .collect()
    }

    fn counts(b: &mut Balancer, e: &[EndpointSpec], down: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; e.len()];
        for _ in 0..n {
            c[b.pick(e, |i| !down.contains(&i), |_| 0).unwrap()] += 1;
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
        for (kind, _) in ALL {
            let mut b = Balancer::new(kind, &e, 0);
            assert_eq!(b.pick(&e, |_| false, |_| 0), None);
            assert!(b.pick(&e, |_| true, |_| 0).is_some());
            assert_eq!(b.pick(&[], |_| true, |_| 0), None);
        }
    }

    #[test]
    fn the_predicate_is_asked_at_most_once_per_endpoint() {
        use std::cell::Cell;
        let e = eps(&[1, 2, 3, 4, 5]);
        for (kind, _) in ALL {
            let mut b = Balancer::new(kind, &e, 0);
            for _ in 0..20 {
                let asked = Cell::new(0);
                let _ = b.pick(
                    &e,
                    |i| {
                        asked.set(asked.get() + 1);
                        i == 4
                    },
                    |_| 0,
                );
                assert!(asked.get() <= e.len());
            }
        }
        // Round robin with everything up looks at one endpoint only.
        let mut rr = Balancer::new(BalanceKind::RoundRobin, &e, 3);
        let asked = Cell::new(0);
        let _ = rr.pick(
            &e,
            |_| {
                asked.set(asked.get() + 1);
                true
            },
            |_| 0,
        );
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for (kind, name) in ALL {
            assert_eq!(BalanceKind::parse(name), Ok(kind));
            assert_eq!(kind.name(), name);
        }
        assert!(BalanceKind::parse("least_conn")
            .unwrap_err()
            .contains("expected one of"));
    }

    #[test]
    fn carry_over_keeps_state_by_address() {
        let e = eps(&[1, 1, 1]);
        let addrs: Vec<SocketAddr> = e.iter().map(|x| x.addr).collect();
        let mut old = Balancer::new(BalanceKind::PeakEwma, &e, 0);
        let now = Instant::now();
        old.observe(1, Duration::from_millis(40), now);
        // The new list drops endpoint 0, keeps 1 (now first), adds one.
        let mut e2 = vec![e[1].clone(), e[2].clone()];
        e2.push(EndpointSpec::new(([127, 0, 0, 1], 9100).into(), 1));
        let mut new = Balancer::new(BalanceKind::PeakEwma, &e2, 0);
        new.carry_over(&old, &addrs, &e2);
        let Balancer::PeakEwma(p) = &new else {
            unreachable!()
        };
        assert_eq!(p.ewma.len(), 3);
        // The 40 ms endpoint is avoided in favour of the unmeasured ones.
        for _ in 0..20 {
            assert_ne!(new.pick(&e2, |_| true, |_| 0), Some(0));
        }
        // Round robin keeps its position.
        let mut rr = Balancer::new(BalanceKind::RoundRobin, &e, 0);
        rr.pick(&e, |_| true, |_| 0);
        let mut rr2 = Balancer::new(BalanceKind::RoundRobin, &e2, 0);
        rr2.carry_over(&rr, &addrs, &e2);
        assert_eq!(rr2.pick(&e2, |_| true, |_| 0), Some(1));
    }
}
