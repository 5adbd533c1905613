//! A value published by one side and read by many: an `ArcSwap` with a
//! generation counter beside it. Readers compare the generation they hold
//! with one atomic load of a line that is written only on publish, and load
//! the value itself (touching its shared refcount) only when it changed.
//! Who publishes, and when, is the publisher's business.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The current value and its generation.
pub(crate) struct Published<T> {
    value: ArcSwap<T>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    pub(crate) fn new(value: T, generation: u64) -> Self {
        Published {
            value: ArcSwap::from_pointee(value),
            generation: AtomicU64::new(generation),
        }
    }

    /// Stores `value` as `generation` with one atomic swap, then bumps the
    /// generation, so a reader that sees the new generation finds the new
    /// value. Generations must only grow: the caller serialises publishers.
    pub(crate) fn store(&self, value: T, generation: u64) {
        self.value.store(Arc::new(value));
        self.generation.store(generation, Ordering::Release);
    }

    /// The generation of the last store.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current value.
    pub(crate) fn load(&self) -> Arc<T> {
        self.value.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_sees_the_generation_sees_the_value() {
        let p = Published::new("one", 1);
        assert_eq!((p.generation(), *p.load()), (1, "one"));
        p.store("two", 2);
        assert_eq!((p.generation(), *p.load()), (2, "two"));
    }
}
