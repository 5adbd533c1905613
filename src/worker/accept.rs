//! The accept loop of one listener on one worker: takes a connection, sets
//! `TCP_NODELAY`, and starts serving it on a task of its own, plain or TLS as
//! the current snapshot says for that listener's configured address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use super::connection;
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
/// them for new connections.
async fn accept_loop(
    local: Rc<WorkerLocal>,
    spec: SocketAddr,
    listener: TcpListener,
    stop: Rc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
            // Dropping the listener closes the socket.
            () = stop.notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(worker = local.id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let protocols = local.protocols();
        match protocols.tls_index(spec) {
            None => {
                tokio::task::spawn_local(connection::serve(local.clone(), protocols, stream, peer));
            }
            Some(index) => {
                tokio::task::spawn_local(connection::serve_tls(
                    local.clone(),
                    protocols,
                    index,
                    stream,
                    peer,
                ));
            }
        }
    }
}
