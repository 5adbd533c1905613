//! A worker's verified tokens: what a token's check found (its consumer,
//! its header values), remembered under the SHA-256 of the token and the
//! middleware instance, until the token's `exp` (plus the leeway) or
//! [`TTL`], whichever comes first, and only while the key set it was
//! verified with is the current one (a fetched set that changed, a key
//! rotated out, forgets it). A worker is one thread: the map is its own,
//! no lock, nothing shared. Bounded: [`ENTRIES`] per worker, all
//! instances together.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use ring::digest;
use rustc_hash::FxHashMap;

use super::keys::KeySet;

/// The longest a verified token is remembered, in seconds.
pub(crate) const TTL: u64 = 300;
/// How many verified tokens a worker remembers; when full, the expired
/// ones are dropped, and if none is, all.
pub(crate) const ENTRIES: usize = 1024;

/// What a verified token gave.
pub(super) struct Verified {
    pub(super) consumer: Option<Box<str>>,
    /// One per `claims_to_headers` entry, in order: `None` when the token
    /// has no such claim (or one that cannot be a field value).
    pub(super) headers: Vec<Option<HeaderValue>>,
    /// The `exp` claim.
    pub(super) expires: Option<u64>,
    /// `claim:NAME` and its value, for each top-level claim that is a
    /// string, number or boolean (at most `MAX_VARS`, values at most 256
    /// bytes): the per-request variables a `rate_limit` key reads.
    pub(super) vars: Vec<(Box<str>, Box<str>)>,
}

/// The key set a verification used: 0 for keys given at load (they
/// change only with the instance), a fetched set's own number otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation(u64);

static NEXT: AtomicU64 = AtomicU64::new(1);

impl Generation {
    pub(super) const LOCAL: Generation = Generation(0);

    pub(super) fn of(set: &KeySet) -> Generation {
        Generation(set.generation)
    }

    /// A number no key set had before (for a new fetched set).
    pub(crate) fn fresh() -> u64 {
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

struct Entry {
    generation: Generation,
    /// Unix seconds.
    until: u64,
    verified: Rc<Verified>,
}

/// A token's entry: its instance and the SHA-256 of the token.
pub(super) type Key = (u64, [u8; 32]);

thread_local! {
    static VERIFIED: RefCell<FxHashMap<Key, Entry>> = RefCell::new(FxHashMap::default());
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Taken once per request: a miss's `store` reuses it.
pub(super) fn key(instance: u64, token: &str) -> Key {
    let mut k = [0u8; 32];
    k.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    (instance, k)
}

/// What this worker found for `token` under `instance`, if it still holds.
pub(super) fn lookup(key: &Key, generation: Generation) -> Option<Rc<Verified>> {
    VERIFIED.with(|v| {
        let v = v.borrow();
        let e = v.get(key)?;
        (e.generation == generation && e.until > now()).then(|| e.verified.clone())
    })
}

/// Remembers what `token`'s check found, until its `exp` plus `leeway`
/// (or [`TTL`]).
pub(super) fn store(
    key: Key,
    generation: Generation,
    leeway: u64,
    verified: Verified,
) -> Rc<Verified> {
    let now = now();
    let until = verified
        .expires
        .map_or(u64::MAX, |exp| exp.saturating_add(leeway))
        .min(now + TTL);
    let verified = Rc::new(verified);
    VERIFIED.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() >= ENTRIES {
            v.retain(|_, e| e.until > now);
            if v.len() >= ENTRIES {
                v.clear();
            }
        }
        let entry = Entry {
            generation,
            until,
            verified: verified.clone(),
        };
        v.insert(key, entry);
    });
    verified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(expires: Option<u64>) -> Verified {
        Verified {
            consumer: Some("a".into()),
            headers: Vec::new(),
            expires,
            vars: Vec::new(),
        }
    }

    #[test]
    fn a_token_is_remembered_per_instance_generation_and_expiry() {
        let g = Generation(7);
        store(key(1, "t"), g, 0, verified(Some(now() + 100)));
        assert!(lookup(&key(1, "t"), g).is_some());
        assert!(lookup(&key(2, "t"), g).is_none(), "another instance");
        assert!(lookup(&key(1, "u"), g).is_none(), "another token");
        assert!(
            lookup(&key(1, "t"), Generation(8)).is_none(),
            "the keys changed"
        );
        // Expired (even within the TTL), unless the leeway covers it.
        store(key(1, "old"), g, 0, verified(Some(now() - 1)));
        assert!(lookup(&key(1, "old"), g).is_none());
        store(key(1, "old"), g, 60, verified(Some(now() - 1)));
        assert!(lookup(&key(1, "old"), g).is_some());
        for i in 0..ENTRIES * 2 {
            store(key(3, &i.to_string()), g, 0, verified(None));
        }
        assert!(VERIFIED.with(|v| v.borrow().len()) <= ENTRIES);
    }
}
