//! The `strait` command: parses the command line and starts the gateway from the
//! library. Everything else lives in the library.

#![forbid(unsafe_code)]

mod demo_origin;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strait::{CustomRegistry, Gateway, StartError};

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
}

fn main() -> ExitCode {
    // Log lines go through a writer thread: a worker that logs (an upstream
    // failure, say) never blocks on stderr. Lines beyond its queue are dropped.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(cli.config),
        Some(Command::Proxy {
            listen,
            to,
            access_log,
            admin,
        }) => {
            let source = proxy_config(listen, &to, access_log, admin);
            run(cli.workers, Source::Text("<command line>", &source))
        }
        None => match cli.config {
            Some(path) => run(cli.workers, Source::File(&path)),
            None => run_default(cli.workers),
        },
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

fn run_default(workers: Option<usize>) -> ExitCode {
    let origin = match demo_origin::start(([127, 0, 0, 1], 0).into()) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("cannot start the demo origin: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%origin, "demo origin started (answers with the request it received, as JSON)");
    let source = strait::DEFAULT_CONFIG.replace("{DEMO_ORIGIN}", &origin.to_string());
    run(workers, Source::Text("<built-in>", &source))
}

/// Where the configuration comes from: a file (which SIGHUP and the file
/// watch read again) or text made up here.
enum Source<'a> {
    File(&'a Path),
    Text(&'a str, &'a str),
}

fn run(workers: Option<usize>, source: Source<'_>) -> ExitCode {
    let mut builder = Gateway::builder();
    if let Some(n) = workers {
        builder = builder.workers(n);
    }
    let started = match source {
        Source::File(path) => builder.start_file(path),
        Source::Text(name, text) => builder.start_toml(name, text),
    };
    let gateway = match started {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    serve_signals(gateway);
    ExitCode::SUCCESS
}

/// SIGHUP reloads the configuration file. SIGINT or SIGTERM: stop accepting,
/// let requests in flight finish (up to `server.drain_timeout`), then return;
/// a second signal exits at once.
fn serve_signals(gateway: Gateway) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        // Without a runtime we cannot wait for signals; park forever instead.
        loop {
            std::thread::park();
        }
    };
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            std::future::pending::<()>().await;
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The outcome is logged and counted by the control plane.
                    // This runtime only waits for signals: blocking it while
                    // the file compiles holds up nothing else.
                    let _ = gateway.reload();
                }
            }
        }
        tracing::info!("shutting down: draining connections (a second signal exits at once)");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            gateway.shutdown();
            let _ = done_tx.send(());
        });
        tokio::select! {
            _ = done_rx => tracing::info!("drained; exiting"),
            _ = int.recv() => std::process::exit(1),
            _ = term.recv() => std::process::exit(1),
        }
    });
}

fn fail(e: &StartError) -> ExitCode {
    eprintln!("strait: {e}");
    ExitCode::FAILURE
}
