//! The control plane: loads and compiles configuration, binds listeners
//! (`bind.rs`), starts the workers, owns the access-log writers
//! (`log_writer.rs`), publishes snapshots (`publish.rs`), reloads them
//! (`reload.rs`: signal, file watch, admin API), resolves endpoint names
//! (`dns.rs`), runs the health checks (`health.rs`), serves the admin API
//! (`admin/`) and hands its listening sockets to a new binary on an upgrade
//! (`upgrade/`). It may lock and may be slow; the workers never wait for it.
//! Everything but the `Gateway` handle runs on one thread, `strait-control`.

pub(crate) mod admin;
mod bind;
pub(crate) mod dns;
pub(crate) mod health;
pub(crate) mod jwks;
mod limits;
pub(crate) mod log_writer;
pub(crate) mod publish;
pub(crate) mod reload;
pub(crate) mod upgrade;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::config::names::Names;
pub use crate::config::names::{Resolve, SystemResolver};
use crate::config::DetachedSinks;
use crate::config::{self, ConfigError, ConfigErrors, Snapshot};
use crate::limit::LimitTables;
use crate::metrics::Metrics;
use crate::middleware::{CustomFactory, CustomRegistry};
use crate::worker::budget::ConnectionBudget;
use crate::worker::{self, WorkerCommand};
pub use health::EndpointHealth;
use log_writer::LogWriters;
use publish::Publisher;
pub use reload::ReloadError;
use upgrade::Relaunch;
pub use upgrade::{read_pid_file, request_upgrade, Inherited, UpgradeError, UPGRADE_FD_VAR};

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
    /// The admin API listener could not be bound.
    BindAdmin {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// A worker or the control thread could not be started.
    Spawn(std::io::Error),
    /// The pid file could not be written.
    PidFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(errors) => write!(f, "invalid configuration:\n{errors}"),
            StartError::Read { path, error } => {
                write!(f, "cannot read configuration file {path:?}: {error}")
            }
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::BindAdmin { addr, error } => write!(
                f,
                "cannot listen on {addr} for the admin API: {error} (set [admin] listen, or enabled = false)"
            ),
            StartError::Spawn(error) => write!(f, "cannot start a thread: {error}"),
            StartError::PidFile { path, error } => {
                write!(f, "cannot write the pid file {}: {error}", path.display())
            }
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
    // Names are resolved, as at start: one that does not resolve is an error.
    config::compile(
        file,
        source,
        0,
        registry,
        &DetachedSinks,
        &Names::fresh(&SystemResolver),
        &LimitTables::default(),
    )
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
    admin_listen: Option<Option<SocketAddr>>,
    resolver: Option<Arc<dyn Resolve>>,
    inherited: Option<Inherited>,
    pid_file: Option<PathBuf>,
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

    /// Overrides `[admin] listen` (`None` turns the admin API off), e.g. to
    /// bind port 0 in tests.
    pub fn admin_listen(mut self, addr: Option<SocketAddr>) -> Self {
        self.admin_listen = Some(addr);
        self
    }

    /// Resolves endpoint names with `resolver` instead of the system's
    /// (`getaddrinfo`), at load and on every refresh. It runs on the control
    /// plane only, on a blocking thread.
    pub fn resolver(mut self, resolver: impl Resolve + 'static) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Runs `hook(worker_id)` on each worker thread before it serves (for
    /// thread pinning, per-thread instrumentation, tests).
    pub fn on_worker_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(hook));
        self
    }

    /// Starts on the listening sockets handed over by the process this one
    /// replaces (an upgrade) instead of binding them: a listener of the new
    /// configuration takes the old one's sockets with the same configured
    /// (or bound) address, the admin API likewise; what is new is bound,
    /// what the configuration dropped is closed. If there are fewer
    /// sockets than workers, more are bound beside them; if more, there is
    /// one worker per socket (closing one would reset the connections in
    /// its accept queue). Once started the gateway tells the old process it
    /// serves; if it cannot start, it tells it why.
    pub fn inherit(mut self, inherited: Inherited) -> Self {
        self.inherited = Some(inherited);
        self
    }

    /// Writes this process's id to `path` once the gateway serves (before
    /// an upgrade's old process is told so), and removes it on shutdown if
    /// it still names this process.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Starts from a configuration file, which reloads read again.
    pub fn start_file(self, path: &Path) -> Result<Gateway, StartError> {
        let source = read_config(path)?;
        self.start(
            &path.display().to_string(),
            &source,
            Some(path.to_path_buf()),
        )
    }

    /// Starts from configuration text; `file` names it in error messages.
    /// Such a gateway reloads only through [`Gateway::reload_toml`].
    pub fn start_toml(self, file: &str, source: &str) -> Result<Gateway, StartError> {
        self.start(file, source, None)
    }

    fn start(
        mut self,
        file: &str,
        source: &str,
        path: Option<PathBuf>,
    ) -> Result<Gateway, StartError> {
        let mut inherited = self.inherited.take();
        let started = self
            .launch(file, source, path, inherited.as_mut())
            .and_then(|gateway| {
                gateway.write_pid_file()?;
                Ok(gateway)
            });
        match (inherited, &started) {
            (Some(inherited), Ok(_)) => inherited.serving(),
            (Some(inherited), Err(e)) => inherited.refuse(&e.to_string()),
            (None, _) => {}
        }
        started
    }

    fn launch(
        self,
        file: &str,
        source: &str,
        path: Option<PathBuf>,
        mut inherited: Option<&mut Inherited>,
    ) -> Result<Gateway, StartError> {
        let writers = Arc::new(LogWriters::default());
        let resolver = self
            .resolver
            .unwrap_or_else(|| Arc::new(SystemResolver) as Arc<dyn Resolve>);
        let names = Names::fresh(&*resolver);
        let limit_tables = LimitTables::default();
        let mut snapshot = config::compile(
            file,
            source,
            1,
            &self.registry,
            &*writers,
            &names,
            &limit_tables,
        )
        .map_err(StartError::Config)?;
        if let Some(n) = self.workers {
            snapshot.server.workers = n;
        }
        if let Some(admin) = self.admin_listen {
            snapshot.admin.listen = admin;
        }
        // The same rule as the compiler's, for an address set by the builder.
        if let (Some(addr), None) = (snapshot.admin.listen, &snapshot.admin.token) {
            if !addr.ip().is_loopback() {
                return Err(StartError::Config(ConfigErrors(vec![ConfigError {
                    file: file.to_string(),
                    line: 0,
                    column: 0,
                    message: config::admin_exposed_message(addr),
                }])));
            }
        }
        let mut workers = snapshot.server.workers.max(1);
        // Bind everything before starting anything, so a busy port fails
        // cleanly; take over what an upgrade hands over.
        let mut taken: Vec<Option<Vec<std::net::TcpListener>>> = snapshot
            .listeners
            .iter()
            .map(|l| inherited.as_mut().and_then(|i| i.take_listener(l.addr)))
            .collect();
        let most = taken.iter().flatten().map(Vec::len).max().unwrap_or(0);
        if most > workers {
            tracing::warn!(
                configured = workers,
                workers = most,
                "upgrade: {most} sockets per listener were handed over, so {most} workers run, not \
                 {workers}: closing a socket would reset the connections in its accept queue \
                 (a smaller count takes effect on a restart)"
            );
            workers = most;
        }
        snapshot.server.workers = workers;
        let admin_inherited = inherited
            .as_mut()
            .and_then(|i| i.take_admin(snapshot.admin.listen));
        let admin_listener = match (admin_inherited, snapshot.admin.listen) {
            (Some(l), _) => Some(l),
            (None, Some(addr)) => Some(
                std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|error| StartError::BindAdmin { addr, error })?,
            ),
            (None, None) => None,
        };
        let admin_socket = match &admin_listener {
            Some(l) => Some(l.try_clone().map_err(StartError::Spawn)?),
            None => None,
        };
        let admin_addr = match &admin_listener {
            Some(l) => Some(l.local_addr().map_err(StartError::Spawn)?),
            None => None,
        };
        let mut per_worker: Vec<Vec<(SocketAddr, std::net::TcpListener)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        for (l, taken) in snapshot.listeners.iter().zip(taken.iter_mut()) {
            let bind_error = |error| StartError::Bind {
                addr: l.addr,
                error,
            };
            let sockets = match taken.take() {
                Some(mut sockets) => {
                    let inherited = sockets.len();
                    bind::bind_more(&mut sockets, workers).map_err(bind_error)?;
                    if sockets.len() > inherited {
                        tracing::info!(
                            listener = %l.name,
                            inherited,
                            bound = sockets.len() - inherited,
                            "upgrade: more workers than sockets handed over: bound more beside them"
                        );
                    }
                    sockets
                }
                None => bind::bind_reuseport(l.addr, workers).map_err(bind_error)?,
            };
            let actual = sockets[0].local_addr().map_err(bind_error)?;
            bound.push(BoundListener {
                name: l.name.clone(),
                spec: l.addr,
                addr: actual,
                sockets: bind::copies(&sockets).map_err(bind_error)?,
            });
            for (i, s) in sockets.into_iter().enumerate() {
                per_worker[i].push((l.addr, s));
            }
        }
        let metrics = Arc::new(Metrics::new(workers));
        let descriptors = limits::raise_descriptor_limit();
        let budget = ConnectionBudget::new(workers, descriptors.now);
        let max_connections = budget.limit(snapshot.server.max_connections);
        tracing::info!("{}", snapshot.summary());
        tracing::info!(
            before = descriptors.before,
            hard = descriptors.hard,
            max_connections,
            "descriptor limit: {}",
            descriptors.now
        );
        for l in &bound {
            tracing::info!(listener = %l.name, addr = %l.addr, "listening");
        }
        let generation = snapshot.generation;
        let publisher = Publisher::new(snapshot, workers);
        // Each worker gets its receiver now, before it starts: a stop sent
        // at any time after this is seen by every worker.
        let (shutdown, _) = watch::channel(false);
        let mut handles = Vec::new();
        let mut commands = Vec::new();
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let hook = self.on_worker_start.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            commands.push(tx);
            let shared = worker::Shared {
                snapshots: publisher.store().clone(),
                metrics: metrics.clone(),
                budget: budget.clone(),
                shutdown: shutdown.subscribe(),
            };
            handles
                .push(worker::spawn(id, shared, listeners, rx, hook).map_err(StartError::Spawn)?);
        }
        tracing::info!(workers, "workers started");
        let control = Arc::new(Control {
            publisher,
            shutdown,
            metrics,
            budget,
            registry: self.registry,
            writers: writers.clone(),
            limits: limit_tables,
            workers,
            config_path: path,
            started_at: SystemTime::now(),
            started: Instant::now(),
            state: Mutex::new(ControlState {
                loaded_at: SystemTime::now(),
                last_reload: None,
                listeners: bound,
                source: (file.to_string(), source.to_string()),
            }),
            resolver,
            dns: Mutex::default(),
            reloading: Mutex::new(()),
            generations: watch::channel(generation).0,
            worker_commands: commands,
            admin_addr,
            admin_socket: Mutex::new(admin_socket),
            relaunch: Relaunch::this_process(),
        });
        control.sync_names(&control.snapshot());
        let (stop_tx, stop_rx) = watch::channel(false);
        let control_thread =
            spawn_control(control.clone(), admin_listener, stop_rx).map_err(StartError::Spawn)?;
        if let Some(addr) = admin_addr {
            tracing::info!(%addr, "admin API listening");
        }
        Ok(Gateway {
            control: Some(control),
            workers: handles,
            control_thread: Some(control_thread),
            stop_control: stop_tx,
            writers,
            pid_file: self.pid_file,
        })
    }
}

/// A data-plane listener as bound.
#[derive(Debug, Clone)]
pub(crate) struct BoundListener {
    pub(crate) name: String,
    /// The address in the configuration (port 0 stays 0): its identity across
    /// reloads.
    pub(crate) spec: SocketAddr,
    /// The address actually bound.
    pub(crate) addr: SocketAddr,
    /// A copy of each worker's socket, for an upgrade to hand over (empty
    /// once the gateway stops, so that the sockets close with the workers').
    pub(crate) sockets: Arc<[std::net::TcpListener]>,
}

/// The outcome of the last reload, for the admin API.
#[derive(Debug, Clone)]
pub(crate) struct ReloadReport {
    pub(crate) at: SystemTime,
    /// `"signal"`, `"file"`, `"admin"` or `"api"`.
    pub(crate) trigger: &'static str,
    /// The generation published, or why the configuration was refused.
    pub(crate) result: Result<u64, String>,
}

/// What the control plane changes as it runs.
#[derive(Debug)]
pub(crate) struct ControlState {
    /// When the running configuration was published.
    pub(crate) loaded_at: SystemTime,
    pub(crate) last_reload: Option<ReloadReport>,
    pub(crate) listeners: Vec<BoundListener>,
    /// The file name and text of the running configuration (a DNS refresh
    /// compiles it again).
    pub(crate) source: (String, String),
}

/// The control plane's state, shared by the gateway handle, the admin API,
/// the health checker and the file watcher.
pub(crate) struct Control {
    /// Publishes snapshots to the workers.
    pub(crate) publisher: Publisher,
    /// Turns the workers' shutdown signal on.
    shutdown: watch::Sender<bool>,
    pub(crate) metrics: Arc<Metrics>,
    /// The process-wide client connection count and limit.
    pub(crate) budget: Arc<ConnectionBudget>,
    registry: CustomRegistry,
    writers: Arc<LogWriters>,
    /// The `rate_limit` and `connection_limit` tables, found again by each
    /// compile so that a reload keeps them (`limit/registry.rs`).
    limits: LimitTables,
    pub(crate) workers: usize,
    /// The file reloads read, if started from one.
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) started_at: SystemTime,
    pub(crate) started: Instant,
    pub(crate) state: Mutex<ControlState>,
    /// One reload (or DNS publish) at a time.
    reloading: Mutex<()>,
    /// Resolves endpoint names (control plane only).
    pub(crate) resolver: Arc<dyn Resolve>,
    /// What is known of each endpoint name beyond the snapshot.
    pub(crate) dns: Mutex<dns::NameTable>,
    /// The generation published last; the health checker follows it.
    pub(crate) generations: watch::Sender<u64>,
    worker_commands: Vec<mpsc::UnboundedSender<WorkerCommand>>,
    /// Where the admin API listens, if on.
    pub(crate) admin_addr: Option<SocketAddr>,
    /// A copy of the admin API's socket, for an upgrade to hand over.
    admin_socket: Mutex<Option<std::net::TcpListener>>,
    /// How to start the binary now on disk, for an upgrade.
    relaunch: Relaunch,
}

impl Control {
    /// The running snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.publisher.current()
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the control thread: admin API, health checks, DNS refresh, file watch.
fn spawn_control(
    control: Arc<Control>,
    admin: Option<std::net::TcpListener>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("strait-control".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some(listener) = admin {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            tokio::spawn(admin::serve(control.clone(), l));
                        }
                        Err(e) => tracing::error!(error = %e, "cannot serve the admin API"),
                    }
                }
                tokio::spawn(health::run(control.clone()));
                tokio::spawn(jwks::run(control.clone()));
                tokio::spawn(health::watch_returns(control.clone()));
                tokio::spawn(dns::run(control.clone()));
                if control.snapshot().server.watch_config {
                    if let Some(path) = control.config_path.clone() {
                        tokio::spawn(reload::watch_file(control.clone(), path));
                    }
                }
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            });
            // Dropping the runtime cancels the control tasks.
        })
}

/// A running gateway: its workers, listeners and control plane.
pub struct Gateway {
    control: Option<Arc<Control>>,
    workers: Vec<JoinHandle<()>>,
    control_thread: Option<JoinHandle<()>>,
    stop_control: watch::Sender<bool>,
    writers: Arc<LogWriters>,
    pid_file: Option<PathBuf>,
}

impl Gateway {
    /// A builder with no custom middleware and the file's worker count.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    fn control(&self) -> &Control {
        self.control
            .as_ref()
            .expect("the control state lives until shutdown, which consumes the gateway")
    }

    /// The bound address of each listener (port 0 resolved), in file order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.control()
            .state()
            .listeners
            .iter()
            .map(|l| l.addr)
            .collect()
    }

    /// The bound address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.control().state().listeners[0].addr
    }

    /// Where the admin API listens, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.control().admin_addr
    }

    /// The number of workers running.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The generation of the running configuration.
    pub fn generation(&self) -> u64 {
        self.control().snapshot().generation
    }

    /// Compiles `source` and publishes it: routes, upstreams, middlewares and
    /// listeners (added ones opened, removed ones closed, unchanged ones kept).
    /// An invalid configuration changes nothing.
    pub fn reload_toml(&self, file: &str, source: &str) -> Result<u64, ReloadError> {
        self.control().reload_source(file, source, "api")
    }

    /// Reads the configuration file again and publishes it (what SIGHUP does).
    pub fn reload(&self) -> Result<u64, ReloadError> {
        self.control().reload_file("signal")
    }

    /// Reopens every access-log file at its configured path (what SIGUSR1
    /// does, after a log rotation moved the files away) and returns how many
    /// files that is. Each writer thread reopens its file before its next
    /// write; workers are not involved. A file that cannot be opened again
    /// is logged and the old one kept.
    pub fn reopen_logs(&self) -> usize {
        self.writers.reopen()
    }

    /// Zero-downtime upgrade: starts the binary this process was started
    /// from (the file now at that path, with the same arguments) and hands
    /// it every listening socket; returns its process id once it serves.
    /// The caller then shuts this gateway down ([`Gateway::shutdown`]: stop
    /// accepting, drain, exit). On an error (it could not start, refused,
    /// crashed, or did not serve within 30 s) the new process is gone and
    /// this gateway serves on; with a pid file, this process writes its own
    /// id there again, so that `strait upgrade` learns the outcome at once.
    pub fn upgrade(&self) -> Result<u32, UpgradeError> {
        let result = self.control().upgrade();
        if result.is_err() {
            if let Err(e) = self.write_pid_file() {
                tracing::warn!("{e}");
            }
        }
        result
    }

    fn write_pid_file(&self) -> Result<(), StartError> {
        match &self.pid_file {
            Some(path) => upgrade::write_pid_file(path, std::process::id()).map_err(|error| {
                StartError::PidFile {
                    path: path.clone(),
                    error,
                }
            }),
            None => Ok(()),
        }
    }

    /// Stops accepting, drains the workers, flushes the access logs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(control) = self.control.take() else {
            return;
        };
        // The control plane's copies of the sockets go first: each closes
        // as soon as its worker stops accepting (a new connection is then
        // refused, not queued until the process exits).
        for l in control.state().listeners.iter_mut() {
            l.sockets = Arc::new([]);
        }
        control
            .admin_socket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(path) = &self.pid_file {
            if upgrade::read_pid_file(path).ok() == Some(std::process::id()) {
                let _ = std::fs::remove_file(path);
            }
        }
        let _ = self.stop_control.send(true);
        if let Some(t) = self.control_thread.take() {
            let _ = t.join();
        }
        control.shutdown.send_replace(true);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        drop(control);
        self.writers.join();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
