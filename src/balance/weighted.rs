//! Smooth weighted round robin (as in nginx): each pick adds every endpoint's
//! weight to its running score, takes the highest, and subtracts the total from
//! it. Over one cycle each endpoint is picked exactly `weight` times, spread out
//! rather than in bursts.

use crate::upstream::EndpointSpec;

/// Smooth weighted round-robin state: one running score per endpoint.
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub(crate) fn new(endpoints: &[EndpointSpec]) -> Self {
        SmoothWeighted {
            current: vec![0; endpoints.len()],
        }
    }

    pub(crate) fn pick(&mut self, endpoints: &[EndpointSpec]) -> usize {
        if self.current.len() != endpoints.len() {
            self.current = vec![0; endpoints.len()];
        }
        let mut total = 0i64;
        let mut best = 0usize;
        for (i, ep) in endpoints.iter().enumerate() {
            let w = i64::from(ep.weight);
            self.current[i] += w;
            total += w;
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        best
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
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&e)).collect();
        // The documented nginx order for weights {a:5, b:1, c:1}: a a b a c a a.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_shares_over_cycles() {
        let e = eps(&[3, 2, 1]);
        let mut b = SmoothWeighted::new(&e);
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[b.pick(&e)] += 1;
        }
        assert_eq!(counts, [300, 200, 100]);
    }
}
