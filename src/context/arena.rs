//! The worker's pool of per-request bump arenas: taken when a request starts,
//! reset (not freed) when it ends, dropped instead of kept when a request made
//! one grow past the retention limit.

use std::cell::RefCell;
use std::ops::Deref;

use bumpalo::Bump;

/// First chunk of a new arena: enough for a typical request's scratch.
const INITIAL_CAPACITY: usize = 4 * 1024;
/// An arena that grew past this is freed rather than pooled.
const MAX_RETAINED: usize = 64 * 1024;
/// Arenas kept idle per worker (more only while that many requests are in flight).
const MAX_POOLED: usize = 1024;

/// One worker's arenas. Single-threaded: `RefCell`, never a lock.
#[derive(Default)]
pub(crate) struct ArenaPool {
    free: RefCell<Vec<Bump>>,
}

impl ArenaPool {
    /// An arena for one request; it returns itself to the pool when dropped.
    pub(crate) fn take(&self) -> PooledArena<'_> {
        let bump = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Bump::with_capacity(INITIAL_CAPACITY));
        PooledArena {
            bump: Some(bump),
            pool: self,
        }
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.free.borrow().len()
    }
}

/// An arena on loan from the pool.
pub(crate) struct PooledArena<'p> {
    bump: Option<Bump>,
    pool: &'p ArenaPool,
}

impl Deref for PooledArena<'_> {
    type Target = Bump;
    fn deref(&self) -> &Bump {
        // Only `drop` takes it out.
        self.bump.as_ref().expect("arena present until drop")
    }
}

impl Drop for PooledArena<'_> {
    fn drop(&mut self) {
        let Some(mut bump) = self.bump.take() else {
            return;
        };
        if bump.allocated_bytes() > MAX_RETAINED {
            return;
        }
        bump.reset();
        let mut free = self.pool.free.borrow_mut();
        if free.len() < MAX_POOLED {
            free.push(bump);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_recycled_and_reset() {
        let pool = ArenaPool::default();
        let first = {
            let a = pool.take();
            let s = a.alloc_str("hello");
            s.as_ptr() as usize
        };
        assert_eq!(pool.idle(), 1);
        let a = pool.take();
        assert_eq!(pool.idle(), 0);
        // A reset arena hands out the same memory again.
        assert_eq!(a.alloc_str("hello").as_ptr() as usize, first);
    }

    #[test]
    fn oversized_arenas_are_dropped() {
        let pool = ArenaPool::default();
        {
            let a = pool.take();
            a.alloc_slice_fill_copy(MAX_RETAINED * 2, 0u8);
        }
        assert_eq!(pool.idle(), 0);
    }
}
