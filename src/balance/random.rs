//! Uniform random choice among the healthy endpoints, and the small
//! per-worker random number generator the other randomised algorithms share.

/// A splitmix64 generator: one add and three multiply-xorshift steps per
/// number. Not cryptographic (nothing here needs to be unpredictable: it only
/// spreads requests), owned by one worker, never shared.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (the worker id): workers draw different
    /// sequences.
    pub(crate) fn new(seed: usize) -> Rng {
        Rng(mix64((seed as u64).wrapping_add(0x5851_F42D_4C95_7F2D)))
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift (Lemire); the bias is
    /// below n / 2^64.
    #[inline]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The splitmix64 / murmur3 finaliser: a bijective 64-bit mix in which every
/// input bit affects every output bit.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random balancer state: the worker's generator.
#[derive(Debug, Clone)]
pub struct Random {
    pub(crate) rng: Rng,
}

impl Random {
    pub(crate) fn new(seed: usize) -> Self {
        Random {
            rng: Rng::new(seed),
        }
    }

    /// A uniformly random healthy endpoint of `len` (> 0); `None` if none is.
    #[inline]
    pub(crate) fn pick(&mut self, len: usize, healthy: impl Fn(usize) -> bool) -> Option<usize> {
        let first = self.rng.below(len);
        if healthy(first) {
            return Some(first);
        }
        uniform_healthy_except(&mut self.rng, len, first, healthy)
    }
}

/// A uniformly random endpoint among the healthy ones other than `skip`
/// (known unhealthy), by reservoir sampling in one pass: `healthy` is asked
/// once per endpoint, nothing is allocated.
pub(crate) fn uniform_healthy_except(
    rng: &mut Rng,
    len: usize,
    skip: usize,
    healthy: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut chosen = None;
    let mut seen = 0usize;
    for i in (0..len).filter(|&i| i != skip) {
        if healthy(i) {
            seen += 1;
            if rng.below(seen) == 0 {
                chosen = Some(i);
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[rng.below(5)] += 1;
        }
        // Expected 10,000 each; 5 standard deviations is about 450.
        for c in counts {
            assert!(c.abs_diff(10_000) < 450, "{counts:?}");
        }
    }

    #[test]
    fn random_skips_unhealthy_and_stays_uniform_over_the_rest() {
        let mut r = Random::new(3);
        let mut counts = [0u32; 4];
        for _ in 0..30_000 {
            counts[r.pick(4, |i| i != 2).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        for c in [counts[0], counts[1], counts[3]] {
            assert!(c.abs_diff(10_000) < 450, "{counts:?}");
        }
        assert_eq!(r.pick(4, |_| false), None);
    }
}
