//! The `strait` command: parses the command line and starts the gateway from the
//! library. Everything else lives in the library.

#![forbid(unsafe_code)]

mod demo_origin;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use strait::{CustomRegistry, Gateway, StartError};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The binary's allocator; the library leaves the choice to whoever embeds it.
/// jemalloc built with `background_thread:true` (Cargo feature
/// `background_threads`): its thread returns freed pages to the system after
/// jemalloc's 10 s decay even when no worker allocates, so memory comes back
/// after a connection flood (docs/architecture.md, "Allocator").
/// `_RJEM_MALLOC_CONF` overrides its settings at run time.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A thread-per-core, zero-copy reverse proxy and API gateway.
#[derive(Parser)]
#[command(name = "strait", version, about)]
struct Cli {
    /// Run this configuration file (default: the built-in demo configuration).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Number of workers (default: from the configuration, or one per core).
    #[arg(long, global = true)]
    workers: Option<usize>,
    /// Write Strait's own diagnostics to this file (appended to, reopened on
    /// SIGUSR1) instead of stderr.
    #[arg(long, global = true, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Write the process id here once serving (an upgrade's new process
    /// writes its own); `strait upgrade` reads it.
    #[arg(long, global = true)]
    pid_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and list every error; exit 1 if invalid.
    Check,
    /// Run a one-route proxy without a configuration file.
    Proxy {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream endpoint (repeat for several; round robin).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Write a combined-format access log to stdout.
        #[arg(long)]
        access_log: bool,
        /// Serve the admin API on this address (default: no admin API).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Zero-downtime upgrade: make the running gateway (--pid PID, or the one
    /// --pid-file names) start the binary now on disk and hand it its
    /// sockets (SIGUSR2); with --pid-file, wait for the outcome.
    Upgrade {
        /// The running gateway's process id.
        #[arg(long)]
        pid: Option<u32>,
    },
}

/// Strait's diagnostics filter unless `RUST_LOG` replaces it. h2 and rustls
/// log a WARN for each misbehaving connection (h2: a Rapid Reset client that
/// hits the pending-accept reset limit; rustls: a TLS 1.2 renegotiation
/// attempt, a stray warning alert). Clients choose the rate of those lines,
/// so by default only these crates' errors pass; Strait logs such a
/// connection's end itself, at debug (`worker/connection.rs`). Their logging
/// stays compiled in (rustls' `logging` feature), so
/// `RUST_LOG=info,rustls=debug` still explains a failing handshake.
const DEFAULT_FILTER: &str = "info,h2=error,rustls=error";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let pid_file = cli.pid_file.as_deref();
    let diagnostics = match Diagnostics::start(cli.log_file.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("strait: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Check) => check(cli.config),
        Some(Command::Upgrade { pid }) => match strait::request_upgrade(pid, pid_file) {
            Ok(Some(new)) => {
                println!("upgraded: process {new} serves");
                ExitCode::SUCCESS
            }
            Ok(None) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("strait upgrade: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Proxy {
            listen,
            to,
            access_log,
            admin,
        }) => {
            let source = proxy_config(listen, &to, access_log, admin);
            run(
                cli.workers,
                pid_file,
                Source::Text("<command line>", &source),
                &diagnostics,
            )
        }
        None => match &cli.config {
            Some(path) => run(cli.workers, pid_file, Source::File(path), &diagnostics),
            None => run_default(cli.workers, pid_file, &diagnostics),
        },
    }
}

/// Where Strait's own diagnostics go: stderr, or the `--log-file`, which
/// SIGUSR1 reopens. Lines go through tracing-appender's writer thread, so
/// a worker that logs (an upstream failure, say) never blocks on the file or
/// the terminal; lines beyond its queue are dropped.
struct Diagnostics {
    file: Option<Arc<LogFile>>,
    /// Flushes the queued lines when `main` returns.
    _flush_on_exit: tracing_appender::non_blocking::WorkerGuard,
}

impl Diagnostics {
    fn start(log_file: Option<&Path>) -> Result<Diagnostics, String> {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
        let file = match log_file {
            Some(path) => Some(Arc::new(LogFile::open(path).map_err(|e| {
                format!("cannot open the log file {}: {e}", path.display())
            })?)),
            None => None,
        };
        let (writer, guard) = match &file {
            Some(f) => tracing_appender::non_blocking(LogFileWriter(f.clone())),
            None => tracing_appender::non_blocking(std::io::stderr()),
        };
        let fmt = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_env_filter(filter);
        // No colour codes in a file; on stderr, colour unless NO_COLOR is set.
        match file {
            Some(_) => fmt.with_ansi(false).init(),
            None => fmt.init(),
        }
        Ok(Diagnostics {
            file,
            _flush_on_exit: guard,
        })
    }

    /// Opens the `--log-file` again at its path (a rotation moved it away);
    /// the path, or `None` when diagnostics go to stderr.
    fn reopen(&self) -> std::io::Result<Option<&Path>> {
        match &self.file {
            Some(f) => f.reopen().map(|()| Some(f.path.as_path())),
            None => Ok(None),
        }
    }
}

/// The `--log-file`, appended to. Written by tracing-appender's thread,
/// swapped by the signal thread on SIGUSR1; no worker ever takes the lock.
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        })
    }

    /// Opens the path again; on failure the old file stays in use.
    fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What tracing-appender's thread writes through.
struct LogFileWriter(Arc<LogFile>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut file = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut file = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        file.flush()
    }
}

fn check(config: Option<PathBuf>) -> ExitCode {
    let Some(path) = config else {
        eprintln!("strait check: expected --config FILE");
        return ExitCode::from(2);
    };
    let source = match strait::read_config(&path) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match strait::check(&path.display().to_string(), &source, &CustomRegistry::new()) {
        Ok(snapshot) => {
            println!("{}: ok ({})", path.display(), snapshot.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

/// The TOML of `strait proxy`: one listener, one catch-all route, the default
/// chain (request id), access log only on request.
fn proxy_config(
    listen: SocketAddr,
    to: &[String],
    access_log: bool,
    admin: Option<SocketAddr>,
) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let endpoints: Vec<String> = to.iter().map(|t| quote(t)).collect();
    let chain = if access_log {
        "[\"access_log\", \"request_id\"]"
    } else {
        "[\"request_id\"]"
    };
    let admin = match admin {
        Some(addr) => format!("[admin]\nlisten = {}\n\n", quote(&addr.to_string())),
        None => "[admin]\nenabled = false\n\n".to_string(),
    };
    format!(
        "{admin}[[listeners]]\naddress = {}\n\n[upstreams.backend]\nendpoints = [{}]\n\n[[routes]]\nname = \"proxy\"\nmiddlewares = {chain}\nupstream = \"backend\"\n",
        quote(&listen.to_string()),
        endpoints.join(", ")
    )
}

fn run_default(
    workers: Option<usize>,
    pid_file: Option<&Path>,
    diagnostics: &Diagnostics,
) -> ExitCode {
    let origin = match demo_origin::start(([127, 0, 0, 1], 0).into()) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("cannot start the demo origin: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%origin, "demo origin started (answers with the request it received, as JSON)");
    let source = strait::DEFAULT_CONFIG.replace("{DEMO_ORIGIN}", &origin.to_string());
    run(
        workers,
        pid_file,
        Source::Text("<built-in>", &source),
        diagnostics,
    )
}

/// Where the configuration comes from: a file (which SIGHUP and the file
/// watch read again) or text made up here.
enum Source<'a> {
    File(&'a Path),
    Text(&'a str, &'a str),
}

fn run(
    workers: Option<usize>,
    pid_file: Option<&Path>,
    source: Source<'_>,
    diagnostics: &Diagnostics,
) -> ExitCode {
    // Before the gateway starts: from here on no signal Strait handles takes
    // its default action (for SIGUSR1, SIGUSR2 and SIGQUIT, killing the
    // process); one that comes during the start waits for the loop below.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strait: cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = Gateway::builder();
    if let Some(n) = workers {
        builder = builder.workers(n);
    }
    if let Some(path) = pid_file {
        builder = builder.pid_file(path);
    }
    // Started by an upgrade (STRAIT_UPGRADE_FD): take the old process's sockets.
    match strait::Inherited::from_env() {
        Ok(Some(inherited)) => builder = builder.inherit(inherited),
        Ok(None) => {}
        Err(e) => {
            eprintln!("strait: upgrade refused: {e}");
            return ExitCode::FAILURE;
        }
    }
    let started = match source {
        Source::File(path) => builder.start_file(path),
        Source::Text(name, text) => builder.start_toml(name, text),
    };
    let gateway = match started {
        Ok(g) => g,
        Err(e) => {
            if diagnostics.file.is_some() {
                tracing::error!("{e}");
            }
            return fail(&e);
        }
    };
    serve_signals(signals, gateway, diagnostics);
    ExitCode::SUCCESS
}

/// The signals Strait handles, waited for on a runtime of their own (the
/// main thread's: it does nothing else). SIGPIPE is ignored by Rust's
/// runtime; SIGCHLD and SIGWINCH are ignored by default; any other signal
/// keeps its default action.
struct Signals {
    rt: tokio::runtime::Runtime,
    int: Signal,
    term: Signal,
    quit: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (int, term, quit, hup, usr1, usr2) = {
            // `signal` registers with the runtime it is called in.
            let _in_runtime = rt.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::quit())?,
                signal(SignalKind::hangup())?,
                signal(SignalKind::user_defined1())?,
                signal(SignalKind::user_defined2())?,
            )
        };
        Ok(Signals {
            rt,
            int,
            term,
            quit,
            hup,
            usr1,
            usr2,
        })
    }
}

/// SIGHUP reloads the configuration file; SIGUSR1 reopens the log files;
/// SIGUSR2 upgrades (the binary on disk takes the sockets over, then this
/// process drains; if the new one fails, this one serves on). SIGINT, SIGTERM or SIGQUIT: stop
/// accepting, let requests in flight finish (up to `server.drain_timeout`),
/// then return; a second one exits at once.
fn serve_signals(signals: Signals, gateway: Gateway, diagnostics: &Diagnostics) {
    let Signals {
        rt,
        mut int,
        mut term,
        mut quit,
        mut hup,
        mut usr1,
        mut usr2,
    } = signals;
    rt.block_on(async {
        let stop = loop {
            tokio::select! {
                _ = int.recv() => break "SIGINT",
                _ = term.recv() => break "SIGTERM",
                _ = quit.recv() => break "SIGQUIT",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and counted by the control plane.
                    // This runtime only waits for signals: blocking it while
                    // the file compiles holds up nothing else.
                    let _ = gateway.reload();
                }
                _ = usr1.recv() => reopen_logs(&gateway, diagnostics),
                _ = usr2.recv() => {
                    tracing::info!("SIGUSR2: upgrading to the binary on disk");
                    // Blocks this signal loop until the new process serves or
                    // fails (at most 30 s); other signals wait their turn.
                    match gateway.upgrade() {
                        Ok(_) => break "SIGUSR2 (upgraded)",
                        Err(e) => tracing::error!("upgrade failed, this process serves on: {e}"),
                    }
                }
            }
        };
        tracing::info!(
            "{stop}: shutting down: draining connections (a second SIGINT, SIGTERM or SIGQUIT exits at once)"
        );
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            gateway.shutdown();
            let _ = done_tx.send(());
        });
        loop {
            tokio::select! {
                _ = &mut done_rx => {
                    tracing::info!("drained; exiting");
                    break;
                }
                _ = int.recv() => std::process::exit(1),
                _ = term.recv() => std::process::exit(1),
                _ = quit.recv() => std::process::exit(1),
                _ = hup.recv() => tracing::info!("SIGHUP: ignored while draining"),
                _ = usr1.recv() => tracing::info!("SIGUSR1: ignored while draining"),
                _ = usr2.recv() => tracing::info!("SIGUSR2: ignored while draining"),
            }
        }
    });
}

/// SIGUSR1: the access-log files and the `--log-file` are opened again at
/// their paths, as `logrotate`'s `postrotate` expects.
fn reopen_logs(gateway: &Gateway, diagnostics: &Diagnostics) {
    let access_logs = gateway.reopen_logs();
    match diagnostics.reopen() {
        Ok(log_file) => tracing::info!(
            access_logs,
            log_file = %log_file.map_or("none (stderr)".into(), |p| p.display().to_string()),
            "SIGUSR1: log files reopened"
        ),
        Err(e) => tracing::error!(
            access_logs,
            error = %e,
            "SIGUSR1: access logs reopened; cannot reopen the log file, still writing to the one open before"
        ),
    }
}

fn fail(e: &StartError) -> ExitCode {
    eprintln!("strait: {e}");
    ExitCode::FAILURE
}
