//! Tunnels: requests that turn their connection into a byte stream. An
//! `Upgrade` (WebSocket and the other protocols a route allows) goes through
//! routing and the request middlewares like any request, then over a new,
//! dedicated upstream connection; an HTTP/2 extended CONNECT (RFC 8441) for
//! `websocket` is bridged to an HTTP/1.1 upgrade; a plain `CONNECT host:port`
//! (`[connect]`, in `connect.rs`) opens TCP to an allowed destination. Once
//! both sides have switched, `copy.rs` pumps the bytes until a close, an idle
//! timeout or the shutdown. The ordinary request path is `handler.rs`; it hands a request
//! here only when [`wanted`] says so.

mod connect;
mod copy;

use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::Route;
use crate::data::body::{ProxyBody, RequestBody};
use crate::data::context::{RequestContext, UpstreamRequest};
use crate::data::error::ProxyError;
use crate::data::forward;
use crate::data::handler;
use crate::data::worker::{SnapshotRef, WorkerLocal};
use crate::metrics::status_class;
use crate::middleware::{self, Flow};
use crate::router::RouteInput;
use crate::upstream::pool::PooledConn;
use crate::upstream::{PoolSettings, UpstreamSpec};

use copy::{Copy, End};

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");

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

impl<F> Dispatch<F> {
    pub(crate) fn plain(inner: F) -> Self {
        Dispatch::Plain { inner }
    }

    /// The tunnel path of a request [`wanted`] picked.
    pub(crate) fn tunnel<T: crate::data::connection::ConnTls>(
        local: Rc<WorkerLocal>,
        client: SocketAddr,
        tls: T,
        req: Request<Incoming>,
    ) -> Self {
        let plain_connect = req.method() == Method::CONNECT
            && req.extensions().get::<hyper::ext::Protocol>().is_none();
        let inner: Pin<Box<dyn Future<Output = Response<ProxyBody>>>> = if plain_connect {
            Box::pin(connect::connect(local, req))
        } else {
            Box::pin(upgrade(local, client, tls, req))
        };
        Dispatch::Tunnel { inner }
    }
}

impl<F> Future for Dispatch<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProj::Plain { inner } => inner.poll(cx),
            DispatchProj::Tunnel { inner } => inner.as_mut().poll(cx).map(Ok),
        }
    }
}

/// What the client asks to switch to, as allowed by the route.
enum Offer {
    /// HTTP/1.1 `Upgrade`: the offered protocols the route allows, as the
    /// `Upgrade` value to send upstream.
    Upgrade(HeaderValue),
    /// HTTP/2 extended CONNECT with `:protocol = websocket`, bridged to an
    /// HTTP/1.1 WebSocket upgrade upstream.
    Websocket,
}

impl Offer {
    /// The offer of a request on `route`, or `None` if it is not one the
    /// route takes (then `Upgrade` is stripped and the request proxied).
    fn of(parts: &http::request::Parts, headers: &HeaderMap, route: &Route) -> Option<Offer> {
        if let Some(protocol) = parts.extensions.get::<hyper::ext::Protocol>() {
            let websocket = parts.method == Method::CONNECT
                && protocol.as_str().eq_ignore_ascii_case("websocket")
                && allows(&route.upgrades, "websocket");
            return websocket.then_some(Offer::Websocket);
        }
        if parts.version != Version::HTTP_11 || !has_token(headers, header::CONNECTION, "upgrade") {
            return None;
        }
        let mut kept: Vec<&str> = Vec::new();
        for value in headers.get_all(header::UPGRADE) {
            let Ok(text) = value.to_str() else { continue };
            kept.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && allows(&route.upgrades, p)),
            );
        }
        if kept.is_empty() {
            return None;
        }
        HeaderValue::from_str(&kept.join(", "))
            .ok()
            .map(Offer::Upgrade)
    }
}

/// Whether `protocol` (`name` or `name/version`) is in `allowed`; an entry
/// without a version allows every version of its name.
fn allows(allowed: &[Box<str>], protocol: &str) -> bool {
    let name = protocol.split_once('/').map_or(protocol, |(n, _)| n);
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(protocol) || a.eq_ignore_ascii_case(name))
}

/// Whether a comma-separated header lists `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|t| t.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    })
}

/// The upgrade path: like `handler::handle` (snapshot, arena, context,
/// route, request phases, response phases, in-flight count), with the
/// exchange done over a dedicated connection that becomes the tunnel.
async fn upgrade<T: crate::data::connection::ConnTls>(
    local: Rc<WorkerLocal>,
    client: SocketAddr,
    tls: T,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let in_flight = local.request_started();
    let snapshot = local.snapshot();
    let arena = local.arenas.take();
    let (mut parts, body) = req.into_parts();
    let on_upgrade = parts.extensions.remove::<OnUpgrade>();
    let upstream = UpstreamRequest {
        headers: std::mem::take(&mut parts.headers),
    };
    let host_header = match parts.uri.authority() {
        Some(_) => None,
        None => upstream.headers.get(header::HOST).cloned(),
    };
    let host = match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => host_header.as_ref().and_then(|v| v.to_str().ok()),
    };
    let mut ctx = RequestContext::new(&arena, &local, &parts, host, client);
    ctx.tls = tls.info();
    let mut response = switch(
        &local, &snapshot, &mut ctx, &parts, upstream, body, on_upgrade,
    )
    .await;
    let guard = in_flight.answered(
        snapshot.clone(),
        ctx.ids,
        response.status().as_u16(),
        ctx.log.start,
    );
    response.body_mut().set_request_guard(guard);
    response
}

/// Route → offer → request phases → the exchange → response phases.
async fn switch<'a>(
    local: &Rc<WorkerLocal>,
    snap: &'a SnapshotRef,
    ctx: &mut RequestContext<'a>,
    parts: &http::request::Parts,
    mut upstream: UpstreamRequest,
    body: Incoming,
    on_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let input = RouteInput {
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        headers: &upstream.headers,
    };
    let route_id = snap.router.find(&input, &mut ctx.params);
    let offer = route_id.and_then(|id| Offer::of(parts, &upstream.headers, &snap.routes[id]));
    let (Some(route_id), Some(offer)) = (route_id, offer) else {
        if parts.method == Method::CONNECT && route_id.is_some() {
            // An extended CONNECT cannot be proxied as a plain request.
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: this protocol is not allowed on this route\n",
            );
        }
        // Not an upgrade this route takes: the ordinary path, which strips
        // `Upgrade` with the other hop-by-hop fields.
        return handler::process(local, snap, ctx, upstream, Some(body)).await;
    };
    let route = &snap.routes[route_id];
    let spec = &snap.upstreams[route.upstream];
    ctx.route = Some(route);
    ctx.ids.set_route(route_id);
    ctx.log.route = &route.name;
    ctx.log.upstream = &spec.name;

    let bridge = match offer {
        Offer::Upgrade(protocols) => {
            forward::remove_hop_by_hop_for_upgrade(&mut upstream.headers, ctx.arena(), protocols);
            false
        }
        Offer::Websocket => {
            forward::remove_hop_by_hop_for_upgrade(
                &mut upstream.headers,
                ctx.arena(),
                HeaderValue::from_static("websocket"),
            );
            true
        }
    };
    let (flow, ran) = middleware::run_request(&route.chain, ctx, &mut upstream).await;
    let mut response = match flow {
        Flow::Respond(response) => *response,
        Flow::Continue => {
            let result = exchange(
                local,
                snap,
                route,
                spec,
                ctx,
                &mut upstream.headers,
                body,
                bridge,
                on_upgrade,
            )
            .await;
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    failed(snap, local.id, route.upstream, ctx, e);
                    e.response()
                }
            };
            if let Some(u) = snap.stats.upstream(route.upstream, local.id) {
                u.responses[status_class(response.status().as_u16())].inc();
            }
            response
        }
    };
    ctx.log.status = response.status().as_u16();
    middleware::run_response(&route.chain, ran, ctx, &mut response).await;
    response
}

/// Picks an endpoint, opens a dedicated connection to it, sends the upgrade
/// and, on `101`, answers the client with the switch and starts the tunnel.
/// Any other answer is proxied as a plain response.
#[allow(clippy::too_many_arguments)]
async fn exchange<'a>(
    local: &Rc<WorkerLocal>,
    snap: &'a SnapshotRef,
    route: &'a Route,
    spec: &'a UpstreamSpec,
    ctx: &mut RequestContext<'a>,
    headers: &mut HeaderMap,
    body: Incoming,
    bridge: bool,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Counted like any exchange, until the answer's body ends; the tunnel
    // itself is not a request.
    let index = handler::begin_attempt(local, snap, route.upstream, spec, ctx, headers, 0)?;
    let endpoint = &spec.endpoints[index];
    forward::prepare_headers(headers, ctx, &snap.server, endpoint, local);
    let uri = forward::upstream_uri(ctx, local)?;
    if bridge {
        // RFC 8441 §5: the HTTP/1.1 side needs the key HTTP/2 does without.
        headers.insert(SEC_WEBSOCKET_KEY, websocket_key(local));
        headers
            .entry(SEC_WEBSOCKET_VERSION)
            .or_insert(HeaderValue::from_static("13"));
    }

    let started = Instant::now();
    let stream = open_stream(spec, index).await?;
    ctx.log.upstream_connect = Some(started.elapsed());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::ConnectFailed)?;
    let addr = endpoint.addr;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upgrade connection ended with an error");
        }
    });
    let mut request = Request::new(RequestBody::new(body, spec.body_idle_timeout, None));
    *request.method_mut() = if bridge {
        Method::GET
    } else {
        ctx.method.clone()
    };
    *request.uri_mut() = uri;
    *request.headers_mut() = std::mem::take(headers);
    let sent = Instant::now();
    let mut response = match tokio::time::timeout(
        spec.response_header_timeout,
        sender.send_request(request),
    )
    .await
    {
        Err(_) => return Err(ProxyError::ResponseTimeout),
        Ok(Err(e)) if e.is_parse() || e.is_parse_status() => return Err(ProxyError::BadResponse),
        Ok(Err(_)) => return Err(ProxyError::UpstreamReset),
        Ok(Ok(response)) => response,
    };
    ctx.log.upstream_header = Some(sent.elapsed());

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused: an ordinary answer, its body streamed under the body idle
        // timeout; the connection closes after it (no idle slot: never pooled).
        let (mut head, incoming) = response.into_parts();
        forward::remove_hop_by_hop(&mut head.headers, ctx.arena());
        let never_pooled = PoolSettings {
            max_idle_per_endpoint: 0,
            ..spec.pool
        };
        let conn = PooledConn::new(
            crate::upstream::pool::Conn::Http1(sender),
            spec.pool_key(index, endpoint.addr),
            never_pooled,
            local.clone(),
        );
        let body = ProxyBody::upstream(incoming, conn, spec.body_idle_timeout);
        return Ok(Response::from_parts(head, body));
    }
    let Some(client_side) = on_upgrade else {
        // hyper always offers the upgrade of a request it parsed as one.
        return Err(ProxyError::BadResponse);
    };
    let upstream_side = hyper::upgrade::on(&mut response);
    let (mut head, _) = response.into_parts();
    if bridge {
        // The HTTP/2 client is told 200 (RFC 8441 §5), without the fields
        // of the HTTP/1.1 handshake.
        forward::remove_hop_by_hop(&mut head.headers, ctx.arena());
        head.headers.remove(SEC_WEBSOCKET_ACCEPT);
        head.status = StatusCode::OK;
        head.version = Version::HTTP_2;
    } else {
        let protocol = head
            .headers
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("websocket"));
        forward::remove_hop_by_hop_for_upgrade(&mut head.headers, ctx.arena(), protocol);
    }
    head.headers.remove(header::CONTENT_LENGTH);
    let upstream = async move {
        upstream_side
            .await
            .map(TokioIo::new)
            .map_err(io::Error::other)
    };
    tokio::task::spawn_local(run(
        local.clone(),
        client_side,
        upstream,
        route.tunnel_idle_timeout,
        Kind::Upgrade,
    ));
    Ok(Response::from_parts(head, ProxyBody::empty()))
}

/// The stream an upgrade goes over: plain or TLS, as the upstream says.
pub(crate) type UpstreamStream = Box<dyn crate::upstream::connect::StreamIo>;

/// Opens a byte stream to endpoint `index` of `spec` within its connect
/// timeout, through TLS (offering only http/1.1 by ALPN) when the upstream
/// has TLS.
pub(crate) async fn open_stream(
    spec: &UpstreamSpec,
    index: usize,
) -> Result<UpstreamStream, ProxyError> {
    let endpoint = &spec.endpoints[index];
    let tls = spec.tls.as_deref().and_then(|t| {
        t.server_names
            .get(index)
            .map(|name| (&t.http1_config, name))
    });
    crate::upstream::connect::stream(endpoint.addr, tls, spec.connect_timeout).await
}

/// A TCP connection to `addr` within `timeout`, Nagle off.
pub(super) async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ProxyError::ConnectTimeout),
        Ok(Err(e)) => return Err(connect_error(&e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

pub(super) fn connect_error(e: &io::Error) -> ProxyError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProxyError::ConnectRefused,
        io::ErrorKind::TimedOut => ProxyError::ConnectTimeout,
        _ => ProxyError::ConnectFailed,
    }
}

/// Counts a failed upgrade exchange like `handler` counts a failed request,
/// and notes its cause for the log.
fn failed(
    snap: &SnapshotRef,
    worker: usize,
    upstream: usize,
    ctx: &mut RequestContext<'_>,
    e: ProxyError,
) {
    ctx.log.cause = Some(e.cause());
    handler::count_failure(snap, worker, upstream, ctx, e);
    tracing::warn!(
        route = ctx.log.route,
        upstream = ctx.log.upstream,
        endpoint = ?ctx.log.endpoint,
        cause = e.cause(),
        "upgrade {} answered {}",
        ctx.path,
        e.status().as_u16()
    );
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
fn websocket_key(local: &WorkerLocal) -> HeaderValue {
    let state = std::collections::hash_map::RandomState::new();
    let now = Instant::now();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&state.hash_one((local.id, now, 1u8)).to_le_bytes());
    bytes[8..].copy_from_slice(&state.hash_one((local.id, now, 2u8)).to_le_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(base64(&bytes)))
        .unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// A plain-text answer of the tunnel path.
pub(super) fn answer(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    crate::data::error::plain_text(status, body)
}

/// What opened a tunnel (its metrics label).
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Upgrade,
    Connect,
}

/// Counts a tunnel as open in the worker's metrics while it lives; the
/// shutdown waits (bounded) for this count to reach zero.
struct Open(Rc<WorkerLocal>);

impl Open {
    fn new(local: Rc<WorkerLocal>, kind: Kind) -> Open {
        if let Some(c) = local.counters() {
            c.tunnels_active.inc();
            match kind {
                Kind::Upgrade => c.tunnels_upgrade.inc(),
                Kind::Connect => c.tunnels_connect.inc(),
            }
        }
        Open(local)
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
pub(super) async fn run<U, F>(
    local: Rc<WorkerLocal>,
    client: OnUpgrade,
    upstream: F,
    idle: Duration,
    kind: Kind,
) where
    U: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = io::Result<U>>,
{
    let open = Open::new(local, kind);
    let mut shutdown = open.0.shutdown_signal();
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
pub(crate) async fn closed(local: &WorkerLocal) {
    let deadline = Instant::now() + CLOSE_BOUND + Duration::from_millis(250);
    while local.counters().is_some_and(|c| c.tunnels_active.get() > 0) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("the sample nonce", "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded.as_bytes(), "{plain:?}");
        }
    }

    #[test]
    fn protocols_match_by_name_or_name_and_version() {
        let allowed: Vec<Box<str>> = vec!["websocket".into(), "foo/2".into()];
        assert!(allows(&allowed, "WebSocket"));
        assert!(allows(&allowed, "websocket/13"));
        assert!(allows(&allowed, "foo/2"));
        assert!(!allows(&allowed, "foo/1"));
        assert!(!allows(&allowed, "foo"));
        assert!(!allows(&allowed, "h2c"));
        assert!(!allows(&[], "websocket"));
    }

    /// The idle-memory cost of `.with_upgrades()` on an HTTP/1.1 server
    /// connection (printed; see docs/architecture.md).
    #[test]
    fn upgradeable_connection_size() {
        type Io = TokioIo<TcpStream>;
        struct Svc;
        impl hyper::service::Service<Request<Incoming>> for Svc {
            type Response = Response<ProxyBody>;
            type Error = io::Error;
            type Future = std::future::Ready<Result<Response<ProxyBody>, io::Error>>;
            fn call(&self, _: Request<Incoming>) -> Self::Future {
                std::future::ready(Ok(Response::new(ProxyBody::empty())))
            }
        }
        let plain = std::mem::size_of::<hyper::server::conn::http1::Connection<Io, Svc>>();
        let upgradeable =
            std::mem::size_of::<hyper::server::conn::http1::UpgradeableConnection<Io, Svc>>();
        eprintln!("http1 Connection {plain} B, with_upgrades {upgradeable} B");
        assert!(upgradeable <= plain + 16, "{plain} -> {upgradeable}");
    }
}
