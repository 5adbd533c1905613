//! The `connection_limit` table: per key, the requests in flight, packed
//! with a 32-bit fingerprint of the key into one `AtomicU64`; taken with
//! one compare-and-swap when a request enters, given back by a drop guard
//! (one atomic subtraction) when it ends. The guard reaches its table
//! through the worker's own handle of the snapshot ([`HoldsTables`]), so
//! holding it writes no shared reference count.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::{set_of, sets, Seed, Set, WAYS};

const COUNT_MASK: u64 = u32::MAX as u64;

/// A bounded table of in-flight counts, shared by every worker.
pub struct ConnTable {
    sets: Box<[Set]>,
    seed: Seed,
}

/// What [`ConnTable::acquire`] gave.
pub enum Acquired {
    /// Counted in this slot: [`ConnTable::release`] (through a
    /// [`ConnGuard`]) gives the count back.
    Held(u32),
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
    pub fn acquire(&self, hash: u64, max: u32) -> Acquired {
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
                return Acquired::Held((index * WAYS + i) as u32);
            }
        }
    }

    /// Gives back the count [`ConnTable::acquire`] took in `slot`.
    pub fn release(&self, slot: u32) {
        let slot = slot as usize;
        // A slot with a count is never taken by another key, so its count
        // is ours to lower (it stays in the slot's low bits).
        self.sets[slot / WAYS].0[slot % WAYS].fetch_sub(1, Ordering::AcqRel);
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

/// What holds the `connection_limit` tables of a snapshot, by index: the
/// snapshot itself (implemented where it is defined), so that a guard can
/// reach its table without this layer knowing what a snapshot is.
pub(crate) trait HoldsTables {
    fn conn_table(&self, index: u16) -> &ConnTable;
}

/// A worker's handle to the tables of the snapshot a request runs on: the
/// worker's own `Rc` of the snapshot, cloned with a plain increment on this
/// thread (an `Arc` of the table would write one shared reference count
/// from every worker on every request, whatever its key).
pub(crate) type TablesRef = Rc<dyn HoldsTables>;

/// What lends a request its [`TablesRef`] when it takes a count: the
/// worker's handle of the snapshot, borrowed by the request's context.
pub(crate) trait LendTables {
    fn lend(&self) -> TablesRef;
}

/// One request's count at one `connection_limit` table, given back when
/// dropped: the request's context holds it, then its response body, so it
/// ends when the body is done or dropped (client gone, error, panic).
/// Guards of several `connection_limit` middlewares on one route are
/// chained (`next`: boxed, the second and later only).
pub(crate) struct ConnGuard {
    tables: TablesRef,
    /// The table's index in the snapshot, and the slot counted in.
    table: u16,
    slot: u32,
    next: Option<Box<ConnGuard>>,
}

impl ConnGuard {
    /// The count taken in `slot` of table `table` of `tables`.
    pub(crate) fn new(tables: TablesRef, table: u16, slot: u32) -> Self {
        ConnGuard {
            tables,
            table,
            slot,
            next: None,
        }
    }

    /// Chains `earlier` (a guard already held) after this one.
    pub(crate) fn chain(mut self, earlier: Option<ConnGuard>) -> ConnGuard {
        self.next = earlier.map(Box::new);
        self
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.tables.conn_table(self.table).release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;

    /// A snapshot of one table.
    struct One(ConnTable);

    impl HoldsTables for One {
        fn conn_table(&self, _: u16) -> &ConnTable {
            &self.0
        }
    }

    fn hash(table: &ConnTable, key: u64) -> u64 {
        let mut h = table.seed().hasher();
        h.write_u64(key);
        h.finish()
    }

    /// Takes a count of `key`, held by a guard.
    fn take(tables: &Rc<One>, key: u64, max: u32) -> Result<ConnGuard, Acquired> {
        let t = &tables.0;
        match t.acquire(hash(t, key), max) {
            Acquired::Held(slot) => Ok(ConnGuard::new(tables.clone(), 0, slot)),
            other => Err(other),
        }
    }

    #[test]
    fn max_in_flight_then_given_back() {
        let tables = Rc::new(One(ConnTable::new(100)));
        let t = &tables.0;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(take(&tables, 1, 3).ok().expect("refused under the limit"));
        }
        assert!(matches!(take(&tables, 1, 3), Err(Acquired::Full)));
        assert!(take(&tables, 2, 3).is_ok());
        assert_eq!(t.in_flight(), 3, "2's guard was dropped at once");
        held.pop();
        assert!(take(&tables, 1, 3).is_ok());
        // A chain gives every count back.
        let chained = held.pop().unwrap().chain(held.pop());
        assert_eq!(t.in_flight(), 2);
        drop(chained);
        assert_eq!((t.in_flight(), t.live_keys()), (0, 0));
    }

    #[test]
    fn the_table_stays_within_its_bound_under_100000_keys() {
        let tables = Rc::new(One(ConnTable::new(1000)));
        let t = &tables.0;
        let mut held = Vec::new();
        let mut untracked = 0;
        for key in 0..100_000u64 {
            match take(&tables, key, 1) {
                Ok(g) => held.push(g),
                Err(Acquired::Untracked) => untracked += 1,
                Err(_) => panic!("a new key is never full"),
            }
        }
        assert_eq!(t.slots(), 1000);
        assert_eq!(held.len(), 1000, "every slot taken");
        assert_eq!(untracked, 99_000);
        drop(held);
        assert_eq!(t.in_flight(), 0);
        // Free slots are taken again by new keys.
        assert!(take(&tables, 100_001, 1).is_ok());
    }
}
