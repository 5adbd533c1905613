//! Smooth weighted round robin (as in nginx): each pick adds every endpoint's
//! weight to its running score, takes the highest, and subtracts the total from
//! it. Over one cycle each endpoint is picked exactly `weight` times, spread out
//! rather than in bursts. Unhealthy endpoints take no part: their weight is
//! left out of the total and their score is reset, so the healthy ones share
//! the traffic by their weights.

use crate::upstream::EndpointSpec;

/// Smooth weighted round-robin state: one running score per endpoint.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    pub(crate) current: Vec<i64>,
}

impl SmoothWeighted {
    pub(crate) fn new(endpoints: &[EndpointSpec]) -> Self {
        SmoothWeighted {
            current: vec![0; endpoints.len()],
        }
    }

    /// The next endpoint among those for which `healthy` holds; `None` if
    /// there is none.
    #[inline]
    pub(crate) fn pick(
        &mut self,
        endpoints: &[EndpointSpec],
        healthy: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.current.len() != endpoints.len() {
            self.current = vec![0; endpoints.len()];
        }
        let mut total = 0i64;
        // (index, score) of the highest score so far; the first one wins ties.
        let mut best: Option<(usize, i64)> = None;
        for ((i, ep), score) in endpoints.iter().enumerate().zip(self.current.iter_mut()) {
            if !healthy(i) {
                *score = 0;
                continue;
            }
            let w = i64::from(ep.weight);
            *score += w;
            total += w;
            if best.map_or(true, |(_, s)| *score > s) {
                best = Some((i, *score));
            }
        }
        let (best, _) = best?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn eps(weights: &[u32]) -> Vec<EndpointSpec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| EndpointSpec {
                addr: ([127, 0, 0, 1], 9000 + i as u16).into(),
                weight,
                host_value: HeaderValue::from_static("x"),
            })
            .collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let e = eps(&[5, 1, 1]);
        let mut b = SmoothWeighted::new(&e);
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&e, |_| true).unwrap()).collect();
        // The documented nginx order for weights {a:5, b:1, c:1}: a a b a c a a.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_shares_over_cycles() {
        let e = eps(&[3, 2, 1]);
        let mut b = SmoothWeighted::new(&e);
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[b.pick(&e, |_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 200, 100]);
    }

    #[test]
    fn exact_shares_over_the_healthy_ones() {
        let e = eps(&[3, 2, 1, 5]);
        let mut b = SmoothWeighted::new(&e);
        let mut counts = [0; 4];
        for _ in 0..600 {
            counts[b.pick(&e, |i| i != 3).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 200, 100, 0]);
        // The same smooth order as if endpoint 3 were not configured.
        let mut b = SmoothWeighted::new(&e);
        let picks: Vec<usize> = (0..6).map(|_| b.pick(&e, |i| i != 3).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 2, 1, 0]);
    }
}
