//! Upstream names (control plane). An endpoint written as `host:port` is
//! resolved when the configuration is compiled and then every `dns_refresh`
//! on the control thread, never by a worker. A name stands for every address
//! it resolves to (of the upstream's `dns_family`), each an endpoint with the
//! name's weight.
//!
//! When a refresh changes the addresses of a name, the running configuration
//! is compiled again from its stored text, with the last good answer of every
//! name instead of new look-ups, and published if an upstream's endpoints
//! differ (under the reload lock, so it never races a reload). Statistics and
//! health of the addresses that stay carry over (`Metrics::attach`), and so do
//! the workers' warm connections to them (the pools are keyed by address).
//! A failed look-up, or an answer with no usable address, keeps the last good
//! addresses: it is counted, shown by the admin API and logged once per
//! streak of failures (and once when the name resolves again).
//!
//! The system resolver (`getaddrinfo` through `std`) does not report TTLs, so
//! names are refreshed at the configured interval, whatever their TTL.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinHandle;

use super::Control;
use crate::config::Snapshot;
use crate::upstream::{DnsSpec, Family};

/// Resolves a host name to socket addresses. Called only by the control
/// plane, on a blocking thread; may block and may be slow.
pub trait Resolve: Send + Sync {
    /// Every address `host` resolves to, with `port`.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`: `/etc/hosts`,
/// `/etc/resolv.conf`, nsswitch). It gives no TTL.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        (host, port).to_socket_addrs().map(Iterator::collect)
    }
}

impl<F> Resolve for F
where
    F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync,
{
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self(host, port)
    }
}

/// One name of one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NameKey {
    pub(crate) upstream: Box<str>,
    pub(crate) host: Box<str>,
    pub(crate) port: u16,
}

/// How the compiler gets the addresses of the names it meets.
pub(crate) struct Names<'a> {
    resolver: &'a dyn Resolve,
    /// The last good answer of each name.
    known: HashMap<NameKey, Box<[SocketAddr]>>,
    /// Use `known` without asking the resolver (a DNS refresh recompiling);
    /// otherwise ask, and fall back to `known` when the name fails (a reload).
    prefer_known: bool,
}

impl<'a> Names<'a> {
    /// Resolves every name (start, `strait check`).
    pub(crate) fn fresh(resolver: &'a dyn Resolve) -> Self {
        Names {
            resolver,
            known: HashMap::new(),
            prefer_known: false,
        }
    }

    /// Resolves every name, keeping `known` answers for names that fail (a reload).
    pub(crate) fn reload(
        resolver: &'a dyn Resolve,
        known: HashMap<NameKey, Box<[SocketAddr]>>,
    ) -> Self {
        Names {
            resolver,
            known,
            prefer_known: false,
        }
    }

    /// The `known` answers; only names not among them are resolved (a refresh).
    pub(crate) fn known(
        resolver: &'a dyn Resolve,
        known: HashMap<NameKey, Box<[SocketAddr]>>,
    ) -> Self {
        Names {
            resolver,
            known,
            prefer_known: true,
        }
    }

    /// The addresses of `host:port` for `upstream`, or why there are none.
    pub(crate) fn lookup(
        &self,
        upstream: &str,
        host: &str,
        port: u16,
        family: Family,
    ) -> Result<Vec<SocketAddr>, String> {
        let key = NameKey {
            upstream: upstream.into(),
            host: host.into(),
            port,
        };
        let known = self.known.get(&key);
        if let (true, Some(addrs)) = (self.prefer_known, known) {
            return Ok(addrs.to_vec());
        }
        match resolve(self.resolver, host, port, family) {
            Ok(addrs) => Ok(addrs),
            Err(e) => match known {
                Some(addrs) => {
                    tracing::warn!(
                        upstream,
                        host = %format_args!("{host}:{port}"),
                        error = %e,
                        "keeping the last good addresses of an endpoint name"
                    );
                    Ok(addrs.to_vec())
                }
                None => Err(e),
            },
        }
    }
}

/// Resolves `host:port` and keeps the addresses of `family`; an answer with
/// none is an error.
pub(crate) fn resolve(
    resolver: &dyn Resolve,
    host: &str,
    port: u16,
    family: Family,
) -> Result<Vec<SocketAddr>, String> {
    let answer = resolver
        .resolve(host, port)
        .map_err(|e| format!("cannot resolve endpoint host {host:?}: {e}"))?;
    let addrs = family.select(answer);
    if addrs.is_empty() {
        return Err(match family {
            Family::Any => format!("endpoint host {host:?} resolved to no address"),
            Family::Ipv4 => format!(
                "endpoint host {host:?} resolved to no IPv4 address (dns_family = \"ipv4\")"
            ),
            Family::Ipv6 => format!(
                "endpoint host {host:?} resolved to no IPv6 address (dns_family = \"ipv6\")"
            ),
        });
    }
    Ok(addrs)
}

/// What the control plane knows of one name beyond the snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameState {
    /// The last good answer (what a refresh recompiles with).
    pub(crate) addrs: Box<[SocketAddr]>,
    /// Why the last look-up failed; `None` once it succeeds again.
    pub(crate) last_error: Option<String>,
    /// The last successful look-up (at load, or a refresh).
    pub(crate) last_refresh: Option<SystemTime>,
    /// Periodic look-ups made.
    pub(crate) refreshes: u64,
    /// Periodic look-ups that failed or found no usable address.
    pub(crate) failures: u64,
}

/// Every name of the running configuration.
pub(crate) type NameTable = HashMap<NameKey, NameState>;

impl Control {
    fn names(&self) -> std::sync::MutexGuard<'_, NameTable> {
        self.dns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last good answer of every name, for a compile.
    pub(crate) fn known_names(&self) -> HashMap<NameKey, Box<[SocketAddr]>> {
        self.names()
            .iter()
            .map(|(k, s)| (k.clone(), s.addrs.clone()))
            .collect()
    }

    /// A copy of the name table, for the admin API.
    pub(crate) fn name_table(&self) -> NameTable {
        self.names().clone()
    }

    /// Makes the name table follow a published snapshot: its names, with the
    /// addresses they were compiled with; the counters of kept names stay.
    pub(crate) fn sync_names(&self, snap: &Snapshot) {
        let mut table = self.names();
        let mut next = NameTable::new();
        for up in &snap.upstreams {
            for n in up.names.iter() {
                let key = NameKey {
                    upstream: up.name.clone(),
                    host: n.host.clone(),
                    port: n.port,
                };
                let mut state = table.remove(&key).unwrap_or_else(|| NameState {
                    last_refresh: Some(SystemTime::now()),
                    ..NameState::default()
                });
                state.addrs = n.addrs.clone();
                next.insert(key, state);
            }
        }
        *table = next;
    }

    /// Records a periodic look-up of `key`. True when its addresses differ
    /// from those the running snapshot has for it.
    fn answer(&self, key: &NameKey, result: Result<Vec<SocketAddr>, String>) -> bool {
        let snap = self.snapshot();
        let published = snap
            .upstreams
            .iter()
            .find(|u| u.name == key.upstream)
            .and_then(|u| {
                u.names
                    .iter()
                    .find(|n| n.host == key.host && n.port == key.port)
            })
            .map(|n| &n.addrs);
        let mut table = self.names();
        // A reload removed the name meanwhile: nothing to record.
        let (Some(published), Some(state)) = (published, table.get_mut(key)) else {
            return false;
        };
        let host = format!("{}:{}", key.host, key.port);
        state.refreshes += 1;
        match result {
            Ok(addrs) => {
                if let Some(error) = state.last_error.take() {
                    tracing::info!(
                        upstream = %key.upstream,
                        host,
                        previous_error = %error,
                        "endpoint name resolves again"
                    );
                }
                state.last_refresh = Some(SystemTime::now());
                state.addrs = addrs.into();
                state.addrs != *published
            }
            Err(error) => {
                state.failures += 1;
                if state.last_error.is_none() {
                    tracing::warn!(
                        upstream = %key.upstream,
                        host,
                        %error,
                        addresses = ?published,
                        "endpoint name does not resolve: keeping its last good addresses"
                    );
                }
                state.last_error = Some(error);
                false
            }
        }
    }
}

/// One refresh task: the names of one upstream and how they are refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Task {
    spec: DnsSpec,
    names: Vec<(Box<str>, u16)>,
}

/// A running refresh task; dropping it stops the task.
struct Running {
    task: Task,
    handle: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Refreshes the names of the running snapshot, following reloads: one task
/// per upstream with names, kept while its names and settings stay (a
/// publish caused by a refresh changes only addresses, so it keeps them).
pub(crate) async fn run(control: Arc<Control>) {
    let mut generations = control.generations.subscribe();
    let mut running: HashMap<Box<str>, Running> = HashMap::new();
    loop {
        generations.borrow_and_update();
        let snap = control.snapshot();
        let mut next = HashMap::new();
        for up in &snap.upstreams {
            if up.names.is_empty() {
                continue;
            }
            let task = Task {
                spec: up.dns,
                names: up.names.iter().map(|n| (n.host.clone(), n.port)).collect(),
            };
            let r = match running.remove(&up.name) {
                Some(r) if r.task == task => r,
                _ => Running {
                    handle: tokio::spawn(refresh(control.clone(), up.name.clone(), task.clone())),
                    task,
                },
            };
            next.insert(up.name.clone(), r);
        }
        running = next;
        drop(snap);
        if generations.changed().await.is_err() {
            return;
        }
    }
}

/// Every `refresh`, resolves the names of `upstream` (each on a blocking
/// thread) and publishes when an answer changed the addresses.
async fn refresh(control: Arc<Control>, upstream: Box<str>, task: Task) {
    let period = task.spec.refresh;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut changed = false;
        for (host, port) in &task.names {
            let resolver = control.resolver.clone();
            let (h, p, family) = (host.clone(), *port, task.spec.family);
            let result = tokio::task::spawn_blocking(move || resolve(&*resolver, &h, p, family))
                .await
                .unwrap_or_else(|e| Err(format!("the resolver failed: {e}")));
            let key = NameKey {
                upstream: upstream.clone(),
                host: host.clone(),
                port: *port,
            };
            changed |= control.answer(&key, result);
        }
        if changed {
            let c = control.clone();
            let _ = tokio::task::spawn_blocking(move || c.publish_names()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_select_sorted_and_deduplicated() {
        let answer = vec![
            addr("[::1]:80"),
            addr("10.0.0.2:80"),
            addr("10.0.0.1:80"),
            addr("10.0.0.2:80"),
        ];
        assert_eq!(
            Family::Any.select(answer.clone()),
            vec![addr("10.0.0.1:80"), addr("10.0.0.2:80"), addr("[::1]:80")]
        );
        assert_eq!(
            Family::Ipv4.select(answer.clone()),
            vec![addr("10.0.0.1:80"), addr("10.0.0.2:80")]
        );
        assert_eq!(Family::Ipv6.select(answer), vec![addr("[::1]:80")]);
    }

    #[test]
    fn a_reload_keeps_the_last_good_answer_of_a_failing_name_and_a_refresh_does_not_ask() {
        let failing =
            |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Err(io::Error::other("SERVFAIL")) };
        let key = NameKey {
            upstream: "u".into(),
            host: "h".into(),
            port: 80,
        };
        let known = HashMap::from([(key, vec![addr("10.0.0.1:80")].into_boxed_slice())]);
        let names = Names::reload(&failing, known.clone());
        assert_eq!(
            names.lookup("u", "h", 80, Family::Any),
            Ok(vec![addr("10.0.0.1:80")])
        );
        // Another upstream's name is not known: the failure is an error.
        assert_eq!(
            names.lookup("v", "h", 80, Family::Any),
            Err("cannot resolve endpoint host \"h\": SERVFAIL".into())
        );
        let answering = |_: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([10, 0, 0, 9], port))])
        };
        let names = Names::known(&answering, known);
        assert_eq!(
            names.lookup("u", "h", 80, Family::Any),
            Ok(vec![addr("10.0.0.1:80")])
        );
        assert_eq!(
            Names::fresh(&answering).lookup("u", "h", 80, Family::Ipv6),
            Err("endpoint host \"h\" resolved to no IPv6 address (dns_family = \"ipv6\")".into())
        );
    }
}
