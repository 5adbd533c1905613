//! The control plane's registry of limit tables: a table is found again by
//! its identity (the middleware's name and the settings that give its
//! slots their meaning), so that a reload, or a DNS refresh that compiles
//! the configuration again, keeps every client's limit. Only the compiler
//! locks it; the workers never see it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::{ConnTable, RateTable};

/// The tables in use, by identity. Weak: a table no snapshot holds any
/// more is freed, and a later configuration with its identity starts
/// afresh.
#[derive(Default)]
pub(crate) struct LimitTables {
    rate: Mutex<HashMap<String, Weak<RateTable>>>,
    conns: Mutex<HashMap<String, Weak<ConnTable>>>,
}

impl LimitTables {
    /// The rate table of `identity`, or a new one from `make`.
    pub(crate) fn rate(
        &self,
        identity: String,
        make: impl FnOnce() -> RateTable,
    ) -> Arc<RateTable> {
        shared(&self.rate, identity, make)
    }

    /// The connection table of `identity`, or a new one from `make`.
    pub(crate) fn conns(
        &self,
        identity: String,
        make: impl FnOnce() -> ConnTable,
    ) -> Arc<ConnTable> {
        shared(&self.conns, identity, make)
    }
}

fn shared<T>(
    map: &Mutex<HashMap<String, Weak<T>>>,
    identity: String,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, t| t.strong_count() > 0);
    if let Some(table) = map.get(&identity).and_then(Weak::upgrade) {
        return table;
    }
    let table = Arc::new(make());
    map.insert(identity, Arc::downgrade(&table));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_identity_one_table_while_held() {
        let r = LimitTables::default();
        let a = r.rate("a|1".into(), || RateTable::new(4, 1, 0));
        let same = r.rate("a|1".into(), || RateTable::new(4, 1, 0));
        assert!(Arc::ptr_eq(&a, &same));
        let other = r.rate("a|2".into(), || RateTable::new(4, 1, 0));
        assert!(!Arc::ptr_eq(&a, &other));
        let before = Arc::as_ptr(&a);
        drop((a, same));
        let again = r.rate("a|1".into(), || RateTable::new(8, 1, 0));
        assert_eq!(
            again.slots(),
            8,
            "a new table once the old one is gone ({before:?})"
        );
    }
}
