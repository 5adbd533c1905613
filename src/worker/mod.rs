//! A worker: one OS thread with its own single-threaded tokio runtime and
//! local task set, its own listening sockets and everything in
//! [`WorkerLocal`]. It reads configuration from the published snapshot with
//! one atomic load per request and otherwise touches nothing shared. This
//! file starts a worker, runs it until the shutdown, and drains it;
//! `accept.rs` is the accept loop, `budget.rs` the process-wide connection
//! limits it admits connections against, `connection.rs` one client
//! connection, `connections.rs` the worker's registry of them and their
//! timers, `protocols.rs` their settings per generation, `local.rs` what the
//! worker owns, `in_flight.rs` the drain's count.

mod accept;
pub(crate) mod budget;
pub(crate) mod connection;
pub(crate) mod connections;
mod http1;
mod in_flight;
mod local;
mod protocols;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::config::Snapshot;
use crate::metrics::Metrics;
use crate::util::published::Published;
use budget::ConnectionBudget;
use connections::{Close, Timeouts};
use local::WorkerLocal;

/// Code run on each worker thread before it starts serving.
pub(crate) type StartHook = Arc<dyn Fn(usize) + Send + Sync>;

/// What the control plane asks of a running worker.
pub(crate) enum WorkerCommand {
    /// Accept on this socket (its listener, by configured address, was added
    /// by a reload).
    Listen(SocketAddr, std::net::TcpListener),
    /// Stop accepting on the listener with this configured address; its open
    /// connections carry on.
    Close(SocketAddr),
}

/// What a worker is started with: where snapshots are published, the
/// metrics it writes its shard of, and the shutdown signal (subscribed by
/// the control plane before the worker starts, so a stop is never missed).
pub(crate) struct Shared {
    pub(crate) snapshots: Arc<Published<Snapshot>>,
    pub(crate) metrics: Arc<Metrics>,
    /// The process-wide connection limits.
    pub(crate) budget: Arc<ConnectionBudget>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Starts worker `id` on its own thread, serving `listeners` (already bound,
/// each with its configured address) and obeying `commands`.
pub(crate) fn spawn(
    id: usize,
    shared: Shared,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
    hook: Option<StartHook>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("strait-worker-{id}"))
        .spawn(move || {
            if let Some(hook) = hook {
                hook(id);
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "cannot start the worker's runtime");
                    return;
                }
            };
            let tasks = tokio::task::LocalSet::new();
            tasks.block_on(&runtime, run(id, shared, listeners, commands));
        })
}

async fn run(
    id: usize,
    shared: Shared,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
) {
    let mut shutdown = shared.shutdown.clone();
    let local = WorkerLocal::new(
        id,
        shared.snapshots,
        shared.metrics,
        shared.budget,
        shared.shutdown,
    );
    // The accept loops by configured address, each with its stop signal.
    let mut accepting: HashMap<SocketAddr, Rc<Notify>> = HashMap::new();
    for (spec, std_listener) in listeners {
        accept::listen(&local, &mut accepting, spec, std_listener, &shutdown);
    }
    tokio::task::spawn_local(housekeeping(local.clone()));
    tokio::task::spawn_local(sweep(local.clone()));
    tokio::task::spawn_local(make_room(local.clone()));
    let pool = local.proxy.pool.clone();
    tokio::task::spawn_local(async move { pool.deadlines.run().await });
    // Until the control plane says stop.
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(command) = commands.recv() => match command {
                WorkerCommand::Listen(spec, socket) => {
                    accept::listen(&local, &mut accepting, spec, socket, &shutdown);
                }
                WorkerCommand::Close(spec) => {
                    if let Some(stop) = accepting.remove(&spec) {
                        stop.notify_one();
                    }
                }
            },
        }
    }
    // Drain: the accept loops have stopped; every connection is told to
    // close gracefully (idle ones close now, HTTP/1.1 ones with a request in
    // flight after its response, with `Connection: close`, HTTP/2 ones get a
    // GOAWAY); the worker waits for the requests in flight to end (up to the
    // drain timeout), then returns, which closes whatever is left.
    local.connections.close_all(Close::Shutdown);
    let drain_timeout = local.snapshot().server.drain_timeout;
    let drained = tokio::time::timeout(drain_timeout, async {
        // Connections that had not sent their request yet get a moment to
        // (one accepted just before the stop is answered, not reset), then
        // are closed.
        if tokio::time::timeout(HEAD_GRACE, local.connections.none_open())
            .await
            .is_err()
        {
            local.connections.close_heads();
        }
        local.connections.none_open().await;
        local.in_flight.none_left().await;
    })
    .await
    .is_ok();
    // Tunnels are not connections any more: each closed itself in order (a
    // FIN to both peers) when the shutdown started; wait, briefly, for that.
    crate::proxy::tunnel::closed(&local.proxy).await;
    if !drained {
        tracing::warn!(
            worker = id,
            in_flight = local.in_flight.get(),
            "drain timeout reached: closing the remaining connections"
        );
    }
    local.proxy.tools.logs.flush();
}

/// How long, when the worker stops, a connection that has not sent its
/// request yet may still send it.
const HEAD_GRACE: Duration = Duration::from_secs(1);

/// Closes the client connections whose timer ran out (header, keep-alive,
/// HTTP/2 idle), checking a few times per shortest timeout.
async fn sweep(local: Rc<WorkerLocal>) {
    loop {
        let timeouts = {
            let s = &local.snapshot().server;
            Timeouts {
                head: s.header_read_timeout,
                idle: s.keepalive_timeout,
                http2_idle: s.http2_idle_timeout,
            }
        };
        tokio::time::sleep(timeouts.granularity()).await;
        local.connections.sweep(Instant::now(), &timeouts);
    }
}

/// Another worker found the process full with nothing idle of its own to
/// close: close this worker's oldest idle connection, if the process is
/// still over its limit.
async fn make_room(local: Rc<WorkerLocal>) {
    loop {
        local.budget.room_wanted(local.id).await;
        let max = local.budget.limit(local.snapshot().server.max_connections);
        if local.budget.open() > max {
            local.connections.close_oldest();
        }
    }
}

/// Periodic per-worker chores: close expired idle upstream connections,
/// hand buffered log lines to the writer, summarize client errors.
async fn housekeeping(local: Rc<WorkerLocal>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        let tools = &local.proxy.tools;
        tools.clock.tick();
        tools.logs.flush();
        n += 1;
        if n % 5 == 0 {
            local.proxy.pool.sweep();
            local.client_errors.summarize(local.id, Instant::now());
        }
    }
}
