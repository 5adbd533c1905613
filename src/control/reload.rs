//! Live reload: read, compile and publish a new configuration off the workers,
//! open and close the listeners it adds and removes, and watch the file.
//! Triggered by SIGHUP (the binary), a change of the file, `POST /reload` on
//! the admin API, or [`Gateway::reload_toml`](super::Gateway::reload_toml).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::bind::{bind_reuseport, copies};
use super::{BoundListener, Control, ReloadReport};
use crate::config::names::Names;
use crate::config::{self, ConfigErrors};
use crate::worker::WorkerCommand;

/// Why a reload was refused. The running configuration stays.
#[derive(Debug)]
pub enum ReloadError {
    /// The gateway was started from text, not a file, so there is nothing to
    /// read again.
    NoFile,
    /// The file could not be read.
    Read {
        /// The file.
        path: String,
        /// The cause.
        error: std::io::Error,
    },
    /// The new configuration is invalid (the same messages as `strait check`).
    Config(ConfigErrors),
    /// A listener the new configuration adds could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::NoFile => f.write_str(
                "the gateway was not started from a configuration file: nothing to reload",
            ),
            ReloadError::Read { path, error } => {
                write!(f, "cannot read configuration file {path:?}: {error}")
            }
            ReloadError::Config(errors) => write!(f, "invalid configuration:\n{errors}"),
            ReloadError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// An upstream's name and its endpoints' addresses and weights.
type UpstreamEndpoints = (Box<str>, Vec<(SocketAddr, u32)>);

/// Why a snapshot is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A new configuration.
    Reload,
    /// The running configuration with new answers for its names.
    Dns,
}

impl Control {
    /// Reads the configuration file again and publishes it.
    pub(crate) fn reload_file(&self, trigger: &'static str) -> Result<u64, ReloadError> {
        let result = match &self.config_path {
            None => Err(ReloadError::NoFile),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(source) => {
                    return self.reload_source(&path.display().to_string(), &source, trigger)
                }
                Err(error) => Err(ReloadError::Read {
                    path: path.display().to_string(),
                    error,
                }),
            },
        };
        self.report(trigger, &result);
        result
    }

    /// Compiles `source` and publishes it; an invalid configuration changes
    /// nothing and is reported in the log, the last-reload state and the
    /// `reloads_failed` metric.
    pub(crate) fn reload_source(
        &self,
        file: &str,
        source: &str,
        trigger: &'static str,
    ) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.apply(file, source);
        self.report(trigger, &result);
        result
    }

    fn apply(&self, file: &str, source: &str) -> Result<u64, ReloadError> {
        // Names are resolved again; one that fails keeps its last good answer.
        let names = Names::reload(&*self.resolver, self.known_names());
        let snapshot = config::compile(
            file,
            source,
            0,
            &self.registry,
            &*self.writers,
            &names,
            &self.limits,
        )
        .map_err(ReloadError::Config)?;
        self.install(snapshot, file, source, Cause::Reload)
    }

    /// Publishes the running configuration again with the last good answer of
    /// every name, if that changes an upstream's endpoints (a DNS refresh).
    /// Returns the generation published, if any.
    pub(crate) fn publish_names(&self) -> Option<u64> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let (file, source) = self.state().source.clone();
        let names = Names::known(&*self.resolver, self.known_names());
        let snapshot = match config::compile(
            &file,
            &source,
            0,
            &self.registry,
            &*self.writers,
            &names,
            &self.limits,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "cannot apply new DNS answers, the running configuration stays: {e}"
                );
                return None;
            }
        };
        let current = self.snapshot();
        let endpoints = |s: &config::Snapshot| -> Vec<UpstreamEndpoints> {
            s.upstreams
                .iter()
                .map(|u| {
                    let eps = u.endpoints.iter().map(|e| (e.addr, e.weight)).collect();
                    (u.name.clone(), eps)
                })
                .collect()
        };
        let (before, after) = (endpoints(&current), endpoints(&snapshot));
        if before == after {
            return None;
        }
        for (name, eps) in &after {
            if !before.iter().any(|b| b.0 == *name && b.1 == *eps) {
                let addrs: Vec<String> = eps.iter().map(|e| e.0.to_string()).collect();
                tracing::info!(
                    upstream = %name,
                    endpoints = %addrs.join(", "),
                    "DNS changed the upstream's endpoints"
                );
            }
        }
        drop(current);
        self.install(snapshot, &file, &source, Cause::Dns).ok()
    }

    /// Binds and closes listeners, then publishes `snapshot`, compiled from
    /// `source`.
    fn install(
        &self,
        mut snapshot: config::Snapshot,
        file: &str,
        source: &str,
        cause: Cause,
    ) -> Result<u64, ReloadError> {
        snapshot.server.workers = self.workers;
        let current = self.snapshot();
        if snapshot.admin != current.admin {
            tracing::warn!("[admin] changes take effect at the next restart");
        }
        // Keep the admin settings that are actually in force.
        snapshot.admin = current.admin.clone();

        // Listeners: keep those whose address is unchanged (never re-bound),
        // bind the new ones before publishing anything, close the removed ones.
        let old: Vec<BoundListener> = self.state().listeners.clone();
        let mut next = Vec::new();
        let mut opened = Vec::new();
        for l in &snapshot.listeners {
            match old.iter().find(|o| o.spec == l.addr) {
                Some(o) => next.push(BoundListener {
                    name: l.name.clone(),
                    ..o.clone()
                }),
                None => {
                    let sockets = bind_reuseport(l.addr, self.workers).map_err(|error| {
                        ReloadError::Bind {
                            addr: l.addr,
                            error,
                        }
                    })?;
                    let addr = sockets[0].local_addr().map_err(|error| ReloadError::Bind {
                        addr: l.addr,
                        error,
                    })?;
                    next.push(BoundListener {
                        name: l.name.clone(),
                        spec: l.addr,
                        addr,
                        sockets: copies(&sockets)
                            .map_err(|error| ReloadError::Bind { addr, error })?,
                    });
                    opened.push((l.addr, sockets));
                }
            }
        }
        let closed: Vec<&BoundListener> = old
            .iter()
            .filter(|o| !snapshot.listeners.iter().any(|l| l.addr == o.spec))
            .collect();

        let summary = snapshot.summary();
        let generation = self.publisher.publish(snapshot);
        self.sync_names(&self.snapshot());

        for (spec, sockets) in opened {
            for (tx, socket) in self.worker_commands.iter().zip(sockets) {
                let _ = tx.send(WorkerCommand::Listen(spec, socket));
            }
        }
        for l in &closed {
            tracing::info!(listener = %l.name, addr = %l.addr, "listener closed");
            for tx in &self.worker_commands {
                let _ = tx.send(WorkerCommand::Close(l.spec));
            }
        }
        for l in &next {
            if !old.iter().any(|o| o.spec == l.spec) {
                tracing::info!(listener = %l.name, addr = %l.addr, "listening");
            }
        }
        {
            let mut state = self.state();
            state.listeners = next;
            state.source = (file.to_string(), source.to_string());
            if cause == Cause::Reload {
                state.loaded_at = SystemTime::now();
            }
        }
        self.generations.send_replace(generation);
        let summary = summary.replacen("generation 0", &format!("generation {generation}"), 1);
        match cause {
            Cause::Reload => tracing::info!("reloaded: {summary}"),
            Cause::Dns => tracing::info!("published new DNS answers: {summary}"),
        }
        Ok(generation)
    }

    fn report(&self, trigger: &'static str, result: &Result<u64, ReloadError>) {
        self.metrics.reloaded(result.is_ok());
        // Recorded before the error is logged: whoever reads the log line
        // finds the outcome in `/status` too.
        self.state().last_reload = Some(ReloadReport {
            at: SystemTime::now(),
            trigger,
            result: match result {
                Ok(g) => Ok(*g),
                Err(e) => Err(e.to_string()),
            },
        });
        if let Err(e) = result {
            tracing::error!(
                trigger,
                "reload refused, the running configuration stays: {e}"
            );
        }
    }
}

/// How often the configuration file's metadata is looked at.
const WATCH_POLL: Duration = Duration::from_millis(250);
/// How long the file must stay unchanged before it is read: editors write in
/// bursts (truncate, write, rename), and a half-written file is not reloaded.
const WATCH_SETTLE: Duration = Duration::from_millis(300);

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Watches the configuration file and reloads when its content changes. It
/// polls the file's metadata (a `stat` every 250 ms), which also sees an
/// editor's save-by-rename and a file replaced through a symlink (Kubernetes
/// ConfigMaps), then waits for the writes to settle and compares the content
/// with what was loaded last, so a touch alone reloads nothing.
pub(crate) async fn watch_file(control: Arc<Control>, path: PathBuf) {
    let mut seen = stamp(&path);
    let mut loaded = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(WATCH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        // Changed: wait until it stops changing.
        let mut last = now;
        loop {
            tokio::time::sleep(WATCH_SETTLE).await;
            let again = stamp(&path);
            if again == last {
                break;
            }
            last = again;
        }
        seen = last;
        let Ok(content) = std::fs::read(&path) else {
            // Removed or unreadable (mid-rename): wait for the next version.
            continue;
        };
        if loaded.as_deref() == Some(&content[..]) {
            continue;
        }
        loaded = Some(content);
        tracing::info!(file = %path.display(), "configuration file changed: reloading");
        let c = control.clone();
        // Compiling may take a while on a big file; keep the control thread's
        // other tasks (admin API, health checks) running meanwhile.
        let _ = tokio::task::spawn_blocking(move || c.reload_file("file")).await;
    }
}
