//! The accept loop of one listener on one worker: takes a connection,
//! admits it against the process's connection limits, sets `TCP_NODELAY`,
//! and starts serving it on a task of its own, plain or TLS as the current
//! snapshot says for that listener's configured address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use nix::libc::{EMFILE, ENFILE};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::connection::{self, OpenConnection};
use super::local::WorkerLocal;

/// Starts accepting on `socket`, the listener configured at `spec`.
pub(super) fn listen(
    local: &Rc<WorkerLocal>,
    accepting: &mut HashMap<SocketAddr, Rc<Notify>>,
    spec: SocketAddr,
    socket: std::net::TcpListener,
    shutdown: &watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = local.id, error = %e, "cannot register a listener");
            return;
        }
    };
    let stop = Rc::new(Notify::new());
    if let Some(previous) = accepting.insert(spec, stop.clone()) {
        previous.notify_one();
    }
    tokio::task::spawn_local(accept_loop(
        local.clone(),
        spec,
        listener,
        stop,
        shutdown.clone(),
    ));
}

/// Accepts on the listener configured at `spec`. Whether a connection is TLS
/// (and with which certificates) is looked up in the current snapshot for
/// each connection, so a reload that keeps the address bound still changes
/// them for new connections. Each connection is admitted against the
/// process's limits first (`budget.rs`).
async fn accept_loop(
    local: Rc<WorkerLocal>,
    spec: SocketAddr,
    listener: TcpListener,
    stop: Rc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut errors = AcceptErrors::default();
    loop {
        // Stopping first: once the shutdown is sent, this loop accepts no
        // connection more, so the drain (`run`'s `none_open`) counts every
        // connection this worker will ever have. Left to `select!`'s random
        // order, an accept ready at the same time could win, register a
        // connection after the drain found none open, and the worker's
        // end would close it unanswered (the successor's socket queue is
        // where it belonged).
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            // Dropping the listener closes the socket.
            () = stop.notified() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                errors.failed(&local, &e);
                // Out of descriptors: the oldest idle connection gives one
                // back. Then back off instead of spinning.
                if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) {
                    local.connections.close_oldest();
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(open) = admit(&local, peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let protocols = local.protocols();
        match protocols.tls_index(spec) {
            None => {
                tokio::task::spawn_local(connection::serve(
                    local.clone(),
                    protocols,
                    stream,
                    peer,
                    open,
                ));
            }
            Some(index) => {
                tokio::task::spawn_local(connection::serve_tls(
                    local.clone(),
                    protocols,
                    index,
                    stream,
                    peer,
                    open,
                ));
            }
        }
    }
}

/// Admits a connection from `peer` against `max_connections` and
/// `max_connections_per_ip`; `None`: refused (counted; the caller drops the
/// socket, which closes it). Over the process limit, the worker's oldest
/// idle connection is closed to make room; without one, the other workers
/// are asked and the connection waits for room on its own task.
fn admit(local: &Rc<WorkerLocal>, peer: SocketAddr) -> Option<OpenConnection> {
    let snapshot = local.snapshot();
    let settings = &snapshot.server;
    let max = local.budget.limit(settings.max_connections);
    let ticket = match local
        .budget
        .admit(peer.ip(), settings.max_connections_per_ip)
    {
        Ok(ticket) => ticket,
        Err(reason) => {
            if let Some(c) = local.counters() {
                c.connections_refused[reason.index()].inc();
            }
            tracing::debug!(client = %peer, reason = reason.label(), "connection refused");
            return None;
        }
    };
    let mut wait_for_room = None;
    if ticket.over(max) && !local.connections.close_oldest() {
        local.budget.ask_for_room(local.id);
        wait_for_room = Some(max);
    }
    Some(OpenConnection::new(local, ticket, wait_for_room))
}

/// How long the accept loop pauses after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Failed `accept` calls, logged at most once a second with the count of
/// those not logged; every one is counted in the metrics.
#[derive(Default)]
struct AcceptErrors {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, local: &WorkerLocal, e: &std::io::Error) {
        if let Some(c) = local.counters() {
            c.accept_errors.inc();
        }
        let now = Instant::now();
        if self
            .last_line
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            worker = local.id,
            error = %e,
            "accept failed ({} more since the last line; counted in strait_accept_errors_total)",
            self.unlogged
        );
        self.last_line = Some(now);
        self.unlogged = 0;
    }
}
