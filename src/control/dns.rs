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
//! health of the addresses that stay carry over (`control/publish.rs`, as for
//! any publish), and so do
//! the workers' warm connections to them (the pools are keyed by address).
//! A failed look-up, or an answer with no usable address, keeps the last good
//! addresses: it is counted, shown by the admin API and logged once per
//! streak of failures (and once when the name resolves again).
//!
//! The system resolver (`getaddrinfo` through `std`) does not report TTLs, so
//! names are refreshed at the configured interval, whatever their TTL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinHandle;

use super::Control;
use crate::config::names::{resolve, NameKey};
use crate::config::Snapshot;
use crate::upstream::DnsSpec;

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
        let host = key.endpoint();
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
