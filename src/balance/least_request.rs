//! Least request by the power of two random choices (as Envoy's
//! `LEAST_REQUEST`): draw two different endpoints at random and send to the
//! one with fewer requests in flight, relative to its weight. Two loads per
//! pick whatever the number of endpoints, and no herd: a lightly loaded
//! endpoint is not flooded by every worker at once, as a strict minimum would.

use super::random::Rng;
use crate::upstream::EndpointSpec;

/// Least-request state: the worker's generator. The loads are the worker's
/// own in-flight gauges, read through the `in_flight` function of a pick.
#[derive(Debug, Clone)]
pub struct LeastRequest {
    pub(crate) rng: Rng,
}

impl LeastRequest {
    pub(crate) fn new(seed: usize) -> Self {
        LeastRequest {
            rng: Rng::new(seed),
        }
    }

    /// The less loaded of two random healthy endpoints. When neither draw is
    /// healthy, the least loaded healthy endpoint of all (one pass).
    #[inline]
    pub(crate) fn pick(
        &mut self,
        endpoints: &[EndpointSpec],
        healthy: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let cost = |i: usize| (in_flight(i), endpoints[i].weight);
        p2c(&mut self.rng, endpoints.len(), healthy, cost, |a, b| {
            less_loaded(a, b)
        })
    }
}

/// `a` (in flight, weight) is strictly less loaded than `b`: `(in_flight + 1)
/// / weight` compared by cross-multiplication (no division, no float).
#[inline]
fn less_loaded(a: (u64, u32), b: (u64, u32)) -> bool {
    u128::from(a.0 + 1) * u128::from(b.1) < u128::from(b.0 + 1) * u128::from(a.1)
}

/// The power of two choices over `len` (> 0) endpoints: two different random
/// candidates, the healthy one or the cheaper of the two (`better(a, b)`
/// says `a`'s cost beats `b`'s). If both are unhealthy, the cheapest healthy
/// endpoint of a pass starting at a random place; `healthy` is asked at most
/// once per endpoint.
#[inline]
pub(crate) fn p2c<C: Copy>(
    rng: &mut Rng,
    len: usize,
    healthy: impl Fn(usize) -> bool,
    cost: impl Fn(usize) -> C,
    better: impl Fn(C, C) -> bool,
) -> Option<usize> {
    if len == 1 {
        return healthy(0).then_some(0);
    }
    let a = rng.below(len);
    let mut b = rng.below(len - 1);
    if b >= a {
        b += 1;
    }
    match (healthy(a), healthy(b)) {
        (true, true) => Some(if better(cost(b), cost(a)) { b } else { a }),
        (true, false) => Some(a),
        (false, true) => Some(b),
        (false, false) => {
            let start = rng.below(len);
            let mut best: Option<(usize, C)> = None;
            for i in (start..len).chain(0..start) {
                if i == a || i == b || !healthy(i) {
                    continue;
                }
                let c = cost(i);
                if best.as_ref().map_or(true, |&(_, bc)| better(c, bc)) {
                    best = Some((i, c));
                }
            }
            best.map(|(i, _)| i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::eps;
    use std::cell::RefCell;

    #[test]
    fn picks_the_less_loaded_of_two() {
        // Two endpoints: both are always the two choices.
        let e = eps(&[1, 1]);
        let mut lr = LeastRequest::new(0);
        for _ in 0..100 {
            assert_eq!(lr.pick(&e, |_| true, |i| [5, 2][i]), Some(1));
            assert_eq!(lr.pick(&e, |_| true, |i| [0, 9][i]), Some(0));
        }
    }

    #[test]
    fn weights_divide_the_load() {
        // Weight 3 with 2 in flight costs 1; weight 1 with 1 in flight costs 2.
        let e = eps(&[3, 1]);
        let mut lr = LeastRequest::new(0);
        assert_eq!(lr.pick(&e, |_| true, |i| [2, 1][i]), Some(0));
    }

    #[test]
    fn simulated_requests_keep_loads_even_and_skip_unhealthy() {
        // Each pick adds one in flight; every 4th pick one request ends on
        // the most loaded endpoint. The spread stays within a few requests.
        let e = eps(&[1; 8]);
        let load = RefCell::new(vec![0u64; 8]);
        let mut lr = LeastRequest::new(1);
        for n in 0..4000 {
            let i = lr
                .pick(&e, |i| i != 5, |i| load.borrow()[i])
                .expect("healthy endpoints left");
            assert_ne!(i, 5);
            load.borrow_mut()[i] += 1;
            if n % 4 == 3 {
                let mut l = load.borrow_mut();
                for x in l.iter_mut() {
                    *x = x.saturating_sub(1);
                }
            }
        }
        let l = load.borrow();
        let live: Vec<u64> = (0..8).filter(|&i| i != 5).map(|i| l[i]).collect();
        let (min, max) = (live.iter().min().unwrap(), live.iter().max().unwrap());
        assert!(max - min <= 3, "{l:?}");
        assert_eq!(lr.pick(&e, |_| false, |_| 0), None);
    }
}
