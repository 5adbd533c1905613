//! Round robin: each endpoint in turn, skipping the unhealthy ones.

/// Round-robin state: the next index.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    pub(crate) fn new(start: usize) -> Self {
        RoundRobin { next: start }
    }

    /// The first endpoint from the rotation's position on for which
    /// `healthy` holds (each healthy endpoint once per turn); `None` if there
    /// is none. `len` must not be 0.
    #[inline]
    pub(crate) fn pick(&mut self, len: usize, healthy: impl Fn(usize) -> bool) -> Option<usize> {
        let mut i = self.next % len;
        for _ in 0..len {
            if healthy(i) {
                self.next = i + 1;
                return Some(i);
            }
            i += 1;
            if i == len {
                i = 0;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_all() {
        let mut rr = RoundRobin::new(1);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(3, |_| true).unwrap()).collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn skips_unhealthy_in_rotation_order() {
        let mut rr = RoundRobin::new(0);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(4, |i| i != 1).unwrap()).collect();
        assert_eq!(picks, [0, 2, 3, 0, 2, 3]);
        // Endpoint 1 returns: it gets its turn in the rotation again.
        let picks: Vec<usize> = (0..4).map(|_| rr.pick(4, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 3]);
        assert_eq!(rr.pick(4, |_| false), None);
    }
}
