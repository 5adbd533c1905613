//! The control plane: loads and compiles configuration, binds listeners, starts
//! the workers, owns the access-log writers, and publishes snapshots. It may
//! lock and may be slow; the workers never wait for it.

pub mod demo_origin;
pub(crate) mod log_writer;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{self, ConfigErrors, Snapshot};
use crate::data::listener;
use crate::data::worker::{self, Shared};
use crate::middleware::{CustomFactory, CustomRegistry};
use log_writer::{DetachedSinks, LogWriters};

/// Why a gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid; every problem is listed.
    Config(ConfigErrors),
    /// The configuration file could not be read.
    Read {
        /// The file.
        path: String,
        /// The cause.
        error: std::io::Error,
    },
    /// A listener could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// A worker thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(errors) => write!(f, "invalid configuration:\n{errors}"),
            StartError::Read { path, error } => {
                write!(f, "cannot read configuration file {path:?}: {error}")
            }
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Spawn(error) => write!(f, "cannot start a worker thread: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Validates a configuration without starting anything (`strait check`).
pub fn check(
    file: &str,
    source: &str,
    registry: &CustomRegistry,
) -> Result<Snapshot, ConfigErrors> {
    config::compile(file, source, 0, registry, &DetachedSinks)
}

/// Reads a file for `check` or `start`.
pub fn read_config(path: &Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|error| StartError::Read {
        path: path.display().to_string(),
        error,
    })
}

/// Sets up a [`Gateway`].
#[derive(Default)]
pub struct GatewayBuilder {
    registry: CustomRegistry,
    workers: Option<usize>,
    on_worker_start: Option<worker::StartHook>,
}

impl GatewayBuilder {
    /// Registers a custom middleware type under `name`.
    pub fn custom(mut self, name: impl Into<String>, factory: impl CustomFactory) -> Self {
        self.registry.register(name, factory);
        self
    }

    /// Overrides `server.workers`; 0 means one per core, as in the file.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(if n == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            n
        });
        self
    }

    /// Runs `hook(worker_id)` on each worker thread before it serves (for
    /// thread pinning, per-thread instrumentation, tests).
    pub fn on_worker_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(hook));
        self
    }

    /// Starts from a configuration file.
    pub fn start_file(self, path: &Path) -> Result<Gateway, StartError> {
        let source = read_config(path)?;
        self.start_toml(&path.display().to_string(), &source)
    }

    /// Starts from configuration text; `file` names it in error messages.
    pub fn start_toml(self, file: &str, source: &str) -> Result<Gateway, StartError> {
        let writers = Arc::new(LogWriters::default());
        let mut snapshot = config::compile(file, source, 1, &self.registry, &*writers)
            .map_err(StartError::Config)?;
        if let Some(n) = self.workers {
            snapshot.server.workers = n;
        }
        let workers = snapshot.server.workers.max(1);
        // Bind everything before starting anything, so a busy port fails cleanly.
        let mut per_worker: Vec<Vec<std::net::TcpListener>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        for l in &snapshot.listeners {
            let sockets =
                listener::bind_reuseport(l.addr, workers).map_err(|error| StartError::Bind {
                    addr: l.addr,
                    error,
                })?;
            let actual = sockets[0].local_addr().map_err(|error| StartError::Bind {
                addr: l.addr,
                error,
            })?;
            bound.push((l.name.clone(), actual));
            for (i, s) in sockets.into_iter().enumerate() {
                per_worker[i].push(s);
            }
        }
        tracing::info!("{}", snapshot.summary());
        for (name, addr) in &bound {
            tracing::info!(listener = %name, %addr, "listening");
        }
        let shared = Arc::new(Shared::new(snapshot));
        let mut handles = Vec::new();
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let hook = self.on_worker_start.clone();
            handles.push(
                worker::spawn(id, shared.clone(), listeners, hook).map_err(StartError::Spawn)?,
            );
        }
        tracing::info!(workers, "workers started");
        Ok(Gateway {
            shared: Some(shared),
            workers: handles,
            listeners: bound,
            writers,
            registry: self.registry,
        })
    }
}

/// A running gateway: its workers, listeners and control state.
pub struct Gateway {
    shared: Option<Arc<Shared>>,
    workers: Vec<JoinHandle<()>>,
    listeners: Vec<(String, SocketAddr)>,
    writers: Arc<LogWriters>,
    registry: CustomRegistry,
}

impl Gateway {
    /// A builder with no custom middleware and the file's worker count.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The bound address of each listener (port 0 resolved), in file order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, a)| *a).collect()
    }

    /// The bound address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    /// The number of workers running.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Compiles `source` and publishes it (routes, upstreams, middlewares; the
    /// listeners stay as they are). An invalid configuration changes nothing.
    pub fn reload_toml(&self, file: &str, source: &str) -> Result<u64, ConfigErrors> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        // The generation is assigned when it is published.
        let mut snapshot = config::compile(file, source, 0, &self.registry, &*self.writers)?;
        snapshot.server.workers = self.workers.len();
        Ok(shared.publish(snapshot))
    }

    /// Stops accepting, stops the workers, flushes the access logs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let _ = shared.shutdown.send(true);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        drop(shared);
        self.writers.join();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
