//! The proxy: what happens to one request, from the head hyper parsed to the
//! response it returns. `handle` is the entry; an ordinary request runs the
//! phases of `handler.rs` in order (route → request filter → upstream peer →
//! connect → send → response filter), with one attempt or several
//! (`attempt.rs`, `retry.rs`); upgrades and CONNECT take the boxed path of
//! `tunnel/`. `request.rs` is the prologue and epilogue both paths share,
//! `headers.rs` what changes between the client's request and the
//! upstream's, `grpc.rs` what is particular to gRPC calls, `error.rs` how a
//! failure becomes a response.
//!
//! The proxy reads the snapshot it is handed and the per-worker state of the
//! layers below (the arena pool, the worker's tools, its balancers, its
//! upstream pool) and imports nothing from the worker or the control plane.

mod attempt;
pub(crate) mod error;
mod grpc;
mod handler;
mod headers;
pub(crate) mod request;
pub(crate) mod retry;
pub(crate) mod tunnel;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::watch;

use crate::balance::set::BalancerSet;
use crate::config::SnapshotRef;
use crate::context::arena::ArenaPool;
use crate::context::body::Tracked;
use crate::context::tools::WorkerTools;
use crate::context::{ConnTls, ProxyBody};
use crate::metrics::{Metrics, WorkerCounters};
use crate::upstream::pool::UpstreamPool;

/// What one worker's proxy keeps between requests. Each field is the state
/// of the layer that owns it, lent to the phase that uses it; none has
/// behaviour of the proxy's own.
pub(crate) struct ProxyState {
    /// Per-request arenas, reset and reused.
    pub(crate) arenas: ArenaPool,
    /// The slab, request ids, clock and log buffers every phase may use
    /// (through the request's context).
    pub(crate) tools: WorkerTools,
    /// This worker's balancer state for each upstream.
    pub(crate) balancers: BalancerSet,
    /// This worker's upstream connections.
    pub(crate) pool: Rc<UpstreamPool>,
    /// Where this worker's process-wide counters live (tunnels count there).
    pub(crate) metrics: Arc<Metrics>,
    /// Turns `true` when the gateway shuts down (tunnels close on it).
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl ProxyState {
    /// This worker's process-wide counters.
    pub(crate) fn counters(&self) -> Option<&WorkerCounters> {
        self.metrics.worker.get(self.tools.id)
    }
}

/// hyper's entry point for each request on a client connection, with the
/// snapshot the worker read for it and its count in flight: upgrades and
/// CONNECT (two cheap checks) take the boxed path of `tunnel/`, the rest the
/// ordinary path of `request.rs`. Not an async fn: awaiting the tunnel path in here would
/// add its state to every request's future. `tls` is `()` on plain
/// connections (no size in the future) and the connection's shared
/// `Rc<TlsInfo>` on TLS ones.
pub(crate) fn handle<T: ConnTls>(
    state: Rc<ProxyState>,
    snapshot: SnapshotRef,
    tracked: Tracked,
    client: SocketAddr,
    tls: T,
    req: Request<Incoming>,
) -> Dispatch<impl Future<Output = Response<ProxyBody>>> {
    let r = request::Received {
        state,
        snapshot,
        tracked,
        client,
    };
    if tunnel::wanted(&req) {
        return Dispatch::Tunnel {
            inner: tunnel::start(r, tls, req),
        };
    }
    Dispatch::Plain {
        inner: request::serve::<handler::Plain, T>(r, tls, req),
    }
}

/// The entry for a request read by the server side of our own
/// (`worker/http1.rs`): always the ordinary path (the worker hands
/// upgrades and CONNECT to hyper's connection, which runs `handle`).
pub(crate) use request::serve_wire as handle_wire;

pin_project! {
    /// The future of one request: the ordinary path inline, or the tunnel
    /// path boxed, so that its state never adds to the ordinary future
    /// (which hyper keeps allocated per connection).
    #[project = DispatchProj]
    pub(crate) enum Dispatch<F> {
        Plain { #[pin] inner: F },
        Tunnel { inner: Pin<Box<dyn Future<Output = Response<ProxyBody>>>> },
    }
}

impl<F> Future for Dispatch<F>
where
    F: Future<Output = Response<ProxyBody>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProj::Plain { inner } => inner.poll(cx).map(Ok),
            DispatchProj::Tunnel { inner } => inner.as_mut().poll(cx).map(Ok),
        }
    }
}
