//! Compiles the consistent-hashing policy of a `ring` or `maglev` upstream (key,
//! fallback, table size) and builds its table. Choosing the algorithm and the
//! endpoints is left to `upstreams`.

use super::{span, Compiler};
use crate::balance::{self, BalanceKind, HashFallback, HashKey, HashPolicy, HashTable};
use crate::config::raw::RawUpstream;
use crate::upstream::EndpointSpec;

impl Compiler<'_, '_> {
    /// The hashing of a `ring` or `maglev` upstream (its key, fallback and
    /// table, built here once), or `None` for the other algorithms, which
    /// refuse the hashing keys.
    pub(super) fn hash_policy(
        &mut self,
        name: &str,
        up: &RawUpstream,
        balance: BalanceKind,
        endpoints: &[EndpointSpec],
    ) -> Option<HashPolicy> {
        let what = |k: &str| format!("upstreams.{name}.{k}");
        let only_for = |key: &str, applies: &str| {
            format!(
                "{} applies to balance = {applies} only, not \"{}\"",
                what(key),
                balance.name()
            )
        };
        if balance != BalanceKind::Ring {
            if let Some(v) = &up.virtual_nodes {
                self.d.at(span(v), only_for("virtual_nodes", "\"ring\""));
            }
        }
        if balance != BalanceKind::Maglev {
            if let Some(v) = &up.maglev_table_size {
                self.d
                    .at(span(v), only_for("maglev_table_size", "\"maglev\""));
            }
        }
        if !balance.is_hash() {
            if let Some(k) = &up.hash_key {
                self.d
                    .at(span(k), only_for("hash_key", "\"ring\" or \"maglev\""));
            }
            if let Some(f) = &up.hash_fallback {
                self.d
                    .at(span(f), only_for("hash_fallback", "\"ring\" or \"maglev\""));
            }
            return None;
        }
        let key = match &up.hash_key {
            Some(k) => match HashKey::parse(k.get_ref()) {
                Ok(key) => Some(key),
                Err(msg) => {
                    self.d.at(span(k), format!("{}: {msg}", what("hash_key")));
                    None
                }
            },
            None => {
                // `balance` is set: a hashing kind is never the default.
                if let Some(b) = &up.balance {
                    self.d.at(
                        span(b),
                        format!(
                            "upstream {name:?}: balance = \"{}\" needs hash_key: expected \"header:NAME\", \"cookie:NAME\", \"client_ip\" or \"path\"",
                            balance.name()
                        ),
                    );
                }
                None
            }
        };
        let fallback = match &up.hash_fallback {
            None => HashFallback::RoundRobin,
            Some(f) => HashFallback::parse(f.get_ref()).unwrap_or_else(|msg| {
                self.d
                    .at(span(f), format!("{}: {msg}", what("hash_fallback")));
                HashFallback::RoundRobin
            }),
        };
        let (size, table) = if balance == BalanceKind::Ring {
            let vnodes = self.int_in(
                &up.virtual_nodes,
                i64::from(balance::DEFAULT_VIRTUAL_NODES),
                1..10_001,
                &what("virtual_nodes"),
            ) as u32;
            let total_weight: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
            let points = total_weight * u64::from(vnodes);
            if points > balance::MAX_RING_POINTS {
                let at = up
                    .virtual_nodes
                    .as_ref()
                    .map(span)
                    .or(up.balance.as_ref().map(span));
                let msg = format!(
                    "upstream {name:?}: the ring would have {points} points (virtual_nodes {vnodes} × total weight {total_weight}): expected at most {}; lower virtual_nodes or the weights",
                    balance::MAX_RING_POINTS
                );
                match at {
                    Some(at) => self.d.at(at, msg),
                    None => self.d.global(msg),
                }
                return None;
            }
            (vnodes, HashTable::ring(endpoints, vnodes))
        } else {
            let size = self.int_in(
                &up.maglev_table_size,
                i64::from(balance::DEFAULT_MAGLEV_TABLE_SIZE),
                7..i64::from(balance::MAX_MAGLEV_TABLE_SIZE) + 1,
                &what("maglev_table_size"),
            ) as u32;
            // The place to blame: the size if given, else `balance`.
            let at = up
                .maglev_table_size
                .as_ref()
                .map(span)
                .or(up.balance.as_ref().map(span));
            let set = up.maglev_table_size.as_ref().map(|v| *v.get_ref());
            let problem = if set.is_some_and(|n| n as u32 == size)
                && !balance::is_prime(u64::from(size))
            {
                Some(format!(
                    "{} = {size} is not a prime: expected a prime such as 65537 or 251",
                    what("maglev_table_size")
                ))
            } else if (size as usize) < endpoints.len() * 10 {
                Some(format!(
                    "{} = {size} is too small for {} endpoints: expected at least 10 slots per endpoint",
                    what("maglev_table_size"),
                    endpoints.len()
                ))
            } else {
                None
            };
            if let Some(msg) = problem {
                match at {
                    Some(at) => self.d.at(at, msg),
                    None => self.d.global(msg),
                }
                return None;
            }
            (size, HashTable::maglev(endpoints, size))
        };
        Some(HashPolicy {
            key: key?,
            fallback,
            size,
            table,
        })
    }
}
