//! Tunnels: requests that turn their connection into a byte stream. An
//! `Upgrade` (WebSocket and the other protocols a route allows, `upgrade.rs`)
//! goes through routing and the request middlewares like any request, then
//! over a new, dedicated upstream connection; an HTTP/2 extended CONNECT
//! (RFC 8441) for `websocket` is bridged to an HTTP/1.1 upgrade; a plain
//! `CONNECT host:port` (`[connect]`, `connect.rs`) opens TCP to an allowed
//! destination. Once both sides have switched, [`run`] is the tunnel's life
//! and `copy.rs` pumps the bytes until a close, an idle timeout or the
//! shutdown. The ordinary request path hands a request here only when
//! [`wanted`] says so.

mod connect;
mod copy;
mod upgrade;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::request::{serve, Received};
use super::ProxyState;
use crate::context::{ConnTls, ProxyBody};
use copy::{Copy, End};

/// How long a closing tunnel (idle timeout, shutdown) waits for its peers to
/// close after it sent them a FIN.
pub(crate) const CLOSE_BOUND: Duration = Duration::from_secs(1);

/// Whether a request may be a tunnel: a `CONNECT`, or an HTTP/1.1 request
/// with an `Upgrade` header, for which hyper has put an `OnUpgrade` in the
/// extensions (HTTP/2 has no `Upgrade`; its extended CONNECT is a CONNECT).
/// Two cheap checks, no header lookup: an ordinary request's extensions are
/// empty. Everything else stays on the ordinary path.
#[inline]
pub(crate) fn wanted(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT || req.extensions().get::<OnUpgrade>().is_some()
}

/// The tunnel path of a request [`wanted`] picked, boxed: a plain CONNECT,
/// or an upgrade (HTTP/1.1 `Upgrade`, HTTP/2 extended CONNECT).
pub(super) fn start<T: ConnTls>(
    r: Received,
    tls: T,
    req: Request<Incoming>,
) -> Pin<Box<dyn Future<Output = Response<ProxyBody>>>> {
    let plain_connect =
        req.method() == Method::CONNECT && req.extensions().get::<hyper::ext::Protocol>().is_none();
    if plain_connect {
        Box::pin(connect::connect(r, req))
    } else {
        Box::pin(serve::<upgrade::Upgrade, T>(r, tls, req))
    }
}

/// A plain-text answer of the tunnel path.
fn answer(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    super::error::plain_text(status, body)
}

/// What opened a tunnel (its metrics label).
#[derive(Clone, Copy)]
enum Kind {
    Upgrade,
    Connect,
}

/// Counts a tunnel as open in the worker's metrics while it lives; the
/// shutdown waits (bounded) for this count to reach zero.
struct Open(Rc<ProxyState>);

impl Open {
    fn new(state: Rc<ProxyState>, kind: Kind) -> Open {
        if let Some(c) = state.counters() {
            c.tunnels_active.inc();
            match kind {
                Kind::Upgrade => c.tunnels_upgrade.inc(),
                Kind::Connect => c.tunnels_connect.inc(),
            }
        }
        Open(state)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(c) = self.0.counters() {
            c.tunnels_active.dec();
        }
    }
}

/// The life of a tunnel, on its own task: wait for both sides to switch,
/// copy until the end, and close in order on idle timeout or shutdown. A
/// reload does not touch it: it holds no snapshot, only its idle timeout.
async fn run<U, F>(
    state: Rc<ProxyState>,
    client: OnUpgrade,
    upstream: F,
    idle: Duration,
    kind: Kind,
) where
    U: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = io::Result<U>>,
{
    let open = Open::new(state, kind);
    let mut shutdown = open.0.shutdown.clone();
    let stopping = async move {
        if shutdown.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(stopping);
    // Both sides switch right after the answer is written; bounded anyway.
    let sides = tokio::time::timeout(idle, async { tokio::join!(client, upstream) });
    let (client, mut upstream) = tokio::select! {
        sides = sides => match sides {
            Ok((Ok(client), Ok(upstream))) => (TokioIo::new(client), upstream),
            Ok((client, upstream)) => {
                tracing::debug!(client = ?client.err(), upstream = ?upstream.err(), "tunnel did not start");
                return;
            }
            Err(_) => return,
        },
        () = &mut stopping => return,
    };
    let mut client = client;
    let counters = open.0.clone();
    let end = {
        let moved = move |up: u64, down: u64| {
            if let Some(c) = counters.counters() {
                c.tunnel_bytes_up.add(up);
                c.tunnel_bytes_down.add(down);
            }
        };
        let copy = Copy::new(&mut client, &mut upstream, idle, moved);
        tokio::select! {
            end = copy => Some(end),
            () = &mut stopping => None,
        }
    };
    match end {
        Some(End::Done) => {}
        Some(End::Failed(e)) => tracing::debug!(error = %e, "tunnel ended with an error"),
        Some(End::Idle) => {
            if let Some(c) = open.0.counters() {
                c.tunnels_idle_closed.inc();
            }
            copy::close(&mut client, &mut upstream, CLOSE_BOUND).await;
        }
        // Shutdown: an orderly close of both ends, then the worker goes.
        None => copy::close(&mut client, &mut upstream, CLOSE_BOUND).await,
    }
    drop(open);
}

/// Waits until this worker's tunnels have closed (they close themselves
/// when the shutdown starts), at most a little longer than [`CLOSE_BOUND`].
pub(crate) async fn closed(state: &ProxyState) {
    let deadline = Instant::now() + CLOSE_BOUND + Duration::from_millis(250);
    while state.counters().is_some_and(|c| c.tunnels_active.get() > 0) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
