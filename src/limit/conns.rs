//! The `connection_limit` table: per key, the requests in flight, packed
//! with a 32-bit fingerprint of the key into one `AtomicU64`; taken with
//! one compare-and-swap when a request enters, given back by a drop guard
//! (one atomic subtraction) when it ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{set_of, sets, Seed, Set, WAYS};

const COUNT_MASK: u64 = u32::MAX as u64;

/// A bounded table of in-flight counts, shared by every worker.
pub struct ConnTable {
    sets: Box<[Set]>,
    seed: Seed,
}

/// What [`ConnTable::acquire`] gave.
pub enum Acquired {
    /// Counted: the guard gives the count back when dropped.
    Held(ConnGuard),
    /// The key has `max` requests in flight.
    Full,
    /// The key's set is full of other keys' requests in flight: the
    /// request passes uncounted (fails open, documented).
    Untracked,
}

impl ConnTable {
    /// A table of at least `max_keys` slots, all free.
    pub fn new(max_keys: usize) -> Self {
        ConnTable {
            sets: sets(max_keys),
            seed: Seed::new(),
        }
    }

    /// The table's keyed hash, which a key's bytes go through.
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// Slots in the table (`max_keys` rounded up to whole sets).
    pub(crate) fn slots(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Counts a request of the key whose hash is `hash`, unless it has
    /// `max` in flight. A key with requests in flight is in one slot of its
    /// set; a slot whose count is 0 is free, whatever key it last held.
    pub fn acquire(self: &Arc<Self>, hash: u64, max: u32) -> Acquired {
        let index = set_of(hash, self.sets.len());
        let set = &self.sets[index].0;
        // The low half: the set was picked by the high bits, so keys of
        // one set share those, and a fingerprint taken from them would
        // tell few of them apart.
        let fp = match hash & COUNT_MASK {
            0 => 1,
            fp => fp,
        };
        loop {
            let mut found = None;
            let mut free = None;
            for (i, slot) in set.iter().enumerate() {
                let v = slot.load(Ordering::Acquire);
                let count = v & COUNT_MASK;
                if count > 0 && v >> 32 == fp {
                    found = Some((i, v));
                    break;
                }
                if count == 0 && free.is_none() {
                    free = Some((i, v));
                }
            }
            let (i, old, new) = match (found, free) {
                (Some((_, v)), _) if v & COUNT_MASK >= u64::from(max) => return Acquired::Full,
                (Some((i, v)), _) => (i, v, v + 1),
                (None, Some((i, v))) => (i, v, fp << 32 | 1),
                (None, None) => return Acquired::Untracked,
            };
            if set[i]
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::Held(ConnGuard {
                    table: self.clone(),
                    slot: (index * WAYS + i) as u32,
                    next: None,
                });
            }
        }
    }

    /// Requests in flight in the whole table (a scan, for /metrics).
    pub(crate) fn in_flight(&self) -> u64 {
        self.sets
            .iter()
            .flat_map(|s| s.0.iter())
            .map(|slot| slot.load(Ordering::Relaxed) & COUNT_MASK)
            .sum()
    }

    /// Keys with a request in flight (a scan, for /metrics).
    pub(crate) fn live_keys(&self) -> usize {
        self.sets
            .iter()
            .flat_map(|s| s.0.iter())
            .filter(|slot| slot.load(Ordering::Relaxed) & COUNT_MASK > 0)
            .count()
    }
}

/// One request's count at one `connection_limit` table, given back when
/// dropped: the request's context holds it, then its response body, so it
/// ends when the body is done or dropped (client gone, error, panic).
/// Guards of several `connection_limit` middlewares on one route are
/// chained (`next`: boxed, the second and later only).
pub struct ConnGuard {
    table: Arc<ConnTable>,
    slot: u32,
    next: Option<Box<ConnGuard>>,
}

impl ConnGuard {
    /// Chains `earlier` (a guard already held) after this one.
    pub(crate) fn chain(mut self, earlier: Option<ConnGuard>) -> ConnGuard {
        self.next = earlier.map(Box::new);
        self
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let slot = self.slot as usize;
        // A slot with a count is never taken by another key, so its count
        // is ours to lower (it stays in the slot's low bits).
        self.table.sets[slot / WAYS].0[slot % WAYS].fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;

    fn hash(table: &ConnTable, key: u64) -> u64 {
        let mut h = table.seed().hasher();
        h.write_u64(key);
        h.finish()
    }

    #[test]
    fn max_in_flight_then_given_back() {
        let t = Arc::new(ConnTable::new(100));
        let (a, b) = (hash(&t, 1), hash(&t, 2));
        let mut held = Vec::new();
        for _ in 0..3 {
            match t.acquire(a, 3) {
                Acquired::Held(g) => held.push(g),
                _ => panic!("refused under the limit"),
            }
        }
        assert!(matches!(t.acquire(a, 3), Acquired::Full));
        assert!(matches!(t.acquire(b, 3), Acquired::Held(_)));
        assert_eq!(t.in_flight(), 3, "b's guard was dropped at once");
        held.pop();
        assert!(matches!(t.acquire(a, 3), Acquired::Held(_)));
        // A chain gives every count back.
        let chained = held.pop().unwrap().chain(held.pop());
        assert_eq!(t.in_flight(), 2);
        drop(chained);
        assert_eq!((t.in_flight(), t.live_keys()), (0, 0));
    }

    #[test]
    fn the_table_stays_within_its_bound_under_100000_keys() {
        let t = Arc::new(ConnTable::new(1000));
        let mut held = Vec::new();
        let mut untracked = 0;
        for key in 0..100_000u64 {
            match t.acquire(hash(&t, key), 1) {
                Acquired::Held(g) => held.push(g),
                Acquired::Untracked => untracked += 1,
                Acquired::Full => panic!("a new key is never full"),
            }
        }
        assert_eq!(t.slots(), 1000);
        assert_eq!(held.len(), 1000, "every slot taken");
        assert_eq!(untracked, 99_000);
        drop(held);
        assert_eq!(t.in_flight(), 0);
        // Free slots are taken again by new keys.
        assert!(matches!(t.acquire(hash(&t, 100_001), 1), Acquired::Held(_)));
    }
}
