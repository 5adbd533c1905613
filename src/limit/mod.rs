//! The process-wide limit tables of `rate_limit` (`rate.rs`: a GCRA
//! theoretical arrival time per key) and `connection_limit` (`conns.rs`: a
//! count of requests in flight per key), and the control plane's registry
//! that keeps a table across reloads (`registry.rs`). The one reasoned
//! exception to "share nothing" (docs/architecture.md, "Limits shared by
//! the workers"): a fixed array of `AtomicU64` slots, shared by every
//! worker through an `Arc`, updated with one compare-and-swap per request.
//! Which key a request has, and what a refusal looks like, is left to the
//! middlewares.

mod conns;
mod rate;
mod registry;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicU64;

pub use conns::{Acquired, ConnTable};
pub(crate) use conns::{ConnGuard, HoldsTables, LendTables, TablesRef};
pub(crate) use rate::MAX_HORIZON_US;
pub use rate::{RateTable, Verdict};
pub(crate) use registry::LimitTables;

/// Slots per set: a key may live in any of the 4 slots of its set (32
/// bytes, aligned, so within one cache line).
const WAYS: usize = 4;

/// The most keys a table holds (`max_keys` at most): 8 bytes a key, so at
/// most 128 MiB.
pub(crate) const MAX_KEYS: u64 = 1 << 24;

/// One set of slots, aligned so that it never straddles two cache lines.
#[repr(align(32))]
#[derive(Default)]
struct Set([AtomicU64; WAYS]);

/// Sets for at least `max_keys` slots (at least one set).
fn sets(max_keys: usize) -> Box<[Set]> {
    let n = max_keys.div_ceil(WAYS).max(1);
    (0..n).map(|_| Set::default()).collect()
}

/// The set a key's hash falls in (the high bits, by multiply-shift: no
/// power of two needed); its fingerprint is taken from the low bits.
fn set_of(hash: u64, sets: usize) -> usize {
    ((u128::from(hash) * sets as u128) >> 64) as usize
}

/// The keyed hash of a table: SipHash with a random key per table, so that
/// a client cannot choose keys that fall in a victim's set or share its
/// fingerprint.
pub struct Seed(RandomState);

impl Seed {
    fn new() -> Self {
        Seed(RandomState::new())
    }

    /// A hasher to feed a request's key into.
    pub fn hasher(&self) -> impl Hasher {
        self.0.build_hasher()
    }
}
