//! Interned header names and values from configuration.
//!
//! A configured header (say `x-env: prod`) is inserted into many requests on all
//! workers. Cloning a `HeaderValue` built from a heap `Bytes` bumps a shared
//! atomic refcount, which every worker would write per request (a shared cache
//! line). Values built from `&'static` bytes clone without touching memory, so
//! the control plane interns each distinct configured string once, for the life
//! of the process (bounded by the distinct strings ever configured).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

fn intern(s: &str) -> &'static str {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(HashSet::new()));
    // Control plane only: a poisoned lock still holds a valid set.
    let mut set = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&existing) = set.get(s) {
        return existing;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A header name whose clones cost nothing; `None` if `name` is not a valid token.
pub(crate) fn header_name(name: &str) -> Option<HeaderName> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).ok()?;
    // `from_bytes` lowercases; `from_static` needs the lowercase form.
    let lower = intern(parsed.as_str());
    Some(HeaderName::from_static(lower))
}

/// A header value whose clones cost nothing; `None` if it has forbidden bytes.
pub(crate) fn header_value(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()?;
    HeaderValue::from_maybe_shared(Bytes::from_static(intern(value).as_bytes())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_validates() {
        let a = intern("x-same");
        let b = intern("x-same");
        assert!(std::ptr::eq(a, b));
        assert_eq!(header_name("X-Env").unwrap().as_str(), "x-env");
        assert!(header_name("bad name").is_none());
        assert_eq!(header_value("prod").unwrap(), "prod");
        assert!(header_value("a\nb").is_none());
    }
}
