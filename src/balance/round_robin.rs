//! Round robin: each endpoint in turn.

/// Round-robin state: the next index.
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    pub(crate) fn new(start: usize) -> Self {
        RoundRobin { next: start }
    }

    pub(crate) fn pick(&mut self, len: usize) -> usize {
        let i = self.next % len;
        self.next = i + 1;
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_all() {
        let mut rr = RoundRobin::new(1);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(3)).collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
    }
}
