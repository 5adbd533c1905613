//! One exchange with an upstream endpoint, below the handler: getting a
//! connection (an idle HTTP/1.1 one from the worker's pool, a stream slot on
//! a shared HTTP/2 one, or a new one within the upstream's limits) and
//! sending again, once, a request the endpoint did not process. The handler
//! (`data/handler.rs`) keeps the inline HTTP/1.1 send; everything rare or
//! HTTP/2 here is boxed so the request future stays small.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;

use super::connect::{self, Connected, H2Body};
use super::pool::{Conn, H2Conn, H2Stream};
use super::{PoolKey, Protocol, UpstreamSpec};
use crate::config::Snapshot;
use crate::data::body::RequestBody;
use crate::data::error::ProxyError;
use crate::data::worker::WorkerLocal;

/// The exchange of a request over a new connection, boxed, or the error to
/// answer.
pub(crate) type Exchange<'a> =
    Pin<Box<dyn Future<Output = Result<(Response<Incoming>, Conn), ProxyError>> + 'a>>;

/// A pooled HTTP/1.1 connection failed: if it closed before the request
/// left (the upstream timed it out meanwhile), hyper hands the request back
/// unsent, and it goes once more over a new connection, within what is left
/// of `timeout`. Nothing was sent, so this is safe for any method. Rare,
/// hence boxed; a plain function so the request future keeps neither the
/// error nor the request across the await.
pub(crate) fn resend_unsent<'a>(
    local: &'a WorkerLocal,
    mut e: hyper::client::conn::TrySendError<Request<RequestBody>>,
    reused: bool,
    (spec, snap, upstream_id, index, addr): (
        &'a UpstreamSpec,
        &'a Snapshot,
        usize,
        usize,
        SocketAddr,
    ),
    timeout: std::time::Duration,
    sent: Instant,
) -> Result<Exchange<'a>, ProxyError> {
    let unsent = match e.take_message() {
        Some(unsent) if reused => unsent,
        _ => return Err(classify(e.error())),
    };
    let remaining = timeout.saturating_sub(sent.elapsed());
    Ok(Box::pin(async move {
        let target = Resend {
            key: spec.pool_key(index, addr),
            index,
            spec,
            snap,
            upstream_id,
        };
        let retry = resend(local, &target, Again::Plain(unsent), None);
        tokio::time::timeout(remaining, retry)
            .await
            .unwrap_or(Err(ProxyError::ResponseTimeout))
    }))
}

/// A ready connection to endpoint `index` (pool key `key`): for HTTP/1.1 the
/// newest idle one from this worker's pool, or a new one; an upstream that
/// may speak HTTP/2 takes the boxed path of [`acquire_multiplexed`].
pub(crate) async fn acquire(
    local: &WorkerLocal,
    key: PoolKey,
    index: usize,
    spec: &UpstreamSpec,
    snap: &Snapshot,
    upstream_id: usize,
) -> Result<(Conn, bool), ProxyError> {
    if spec.may_use_http2() {
        return Box::pin(acquire_multiplexed(
            local,
            key,
            index,
            spec,
            snap,
            upstream_id,
            None,
        ))
        .await;
    }
    while let Some(mut sender) = local.pool.checkout(key) {
        if sender.ready().await.is_ok() {
            return Ok((Conn::Http1(sender), true));
        }
    }
    if let Some(max) = spec.max_connections {
        let share = max.div_ceil(snap.server.workers.max(1) as u32);
        if let Some(u) = snap.stats.upstream(upstream_id, local.id) {
            if u.connections.get() >= i64::from(share) {
                // At the limit: rare, hence boxed.
                return Box::pin(wait_for_connection(
                    local,
                    key,
                    index,
                    spec,
                    snap,
                    upstream_id,
                    share,
                ))
                .await;
            }
        }
    }
    Ok((
        new_connection(local, key, index, spec, snap, upstream_id).await?,
        false,
    ))
}

/// The pool keys of the upstream's other endpoints (whose idle connections
/// may be closed to make room under `max_connections`).
fn other_keys(spec: &UpstreamSpec, key: PoolKey) -> impl Iterator<Item = PoolKey> + '_ {
    spec.endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| spec.pool_key(i, e.addr))
        .filter(move |k| *k != key)
}

/// At `max_connections` (this worker's `share`): wait, as one of at most
/// `max_pending` (shared out), for a connection to this endpoint to be
/// checked in or for room to open a new one, until `connect_timeout`.
/// Idle connections to the upstream's other endpoints are closed to make
/// room.
async fn wait_for_connection(
    local: &WorkerLocal,
    key: PoolKey,
    index: usize,
    spec: &UpstreamSpec,
    snap: &Snapshot,
    upstream_id: usize,
    share: u32,
) -> Result<(Conn, bool), ProxyError> {
    let Some(u) = snap.stats.upstream(upstream_id, local.id) else {
        return Err(ProxyError::MaxConnections);
    };
    let pending_share = spec.max_pending.div_ceil(snap.server.workers.max(1) as u32);
    if u.pending.get() >= i64::from(pending_share) {
        u.max_pending_rejections.inc();
        return Err(ProxyError::MaxPending);
    }
    u.pending.inc();
    let deadline = tokio::time::Instant::now() + spec.connect_timeout;
    let result = loop {
        let mut reused = None;
        while let Some(mut sender) = local.pool.checkout(key) {
            if sender.ready().await.is_ok() {
                reused = Some(sender);
                break;
            }
        }
        if let Some(sender) = reused {
            break Ok((Conn::Http1(sender), true));
        }
        if u.connections.get() < i64::from(share) {
            break new_connection(local, key, index, spec, snap, upstream_id)
                .await
                .map(|c| (c, false));
        }
        // Closing an idle connection of this upstream frees room once its
        // task has ended, which wakes this wait.
        local.pool.evict_idle(other_keys(spec, key));
        if !local.wait_for_room(deadline).await {
            u.max_connections_rejections.inc();
            break Err(ProxyError::MaxConnections);
        }
    };
    u.pending.dec();
    result
}

/// A stream on an HTTP/2 connection to `key` (the open one with the fewest
/// streams in flight below the cap, other than `avoid`), or, for `auto`, an
/// idle HTTP/1.1 connection the endpoint chose; else a new connection while
/// under `http2_max_connections` (and `max_connections`); else a wait, until
/// `connect_timeout`, for a stream to end or a connection being opened to
/// be ready. Only one connection per key is opened at a time: the requests
/// that arrive meanwhile wait for it rather than open more.
async fn acquire_multiplexed(
    local: &WorkerLocal,
    key: PoolKey,
    index: usize,
    spec: &UpstreamSpec,
    snap: &Snapshot,
    upstream_id: usize,
    avoid: Option<&Rc<H2Conn>>,
) -> Result<(Conn, bool), ProxyError> {
    let deadline = tokio::time::Instant::now() + spec.connect_timeout;
    let max_streams = spec.http2.max_concurrent_streams;
    let stats = snap.stats.upstream(upstream_id, local.id);
    loop {
        if let Some(stream) = local.pool.h2_take(local, key, max_streams, avoid) {
            return Ok((Conn::Http2(stream), true));
        }
        if spec.protocol == Protocol::Auto {
            while let Some(mut sender) = local.pool.checkout(key) {
                if sender.ready().await.is_ok() {
                    return Ok((Conn::Http1(sender), true));
                }
            }
        }
        let count = local.pool.h2_count(key);
        let at_limit = match (spec.max_connections, stats) {
            (Some(max), Some(u)) => {
                let share = max.div_ceil(snap.server.workers.max(1) as u32);
                u.connections.get() >= i64::from(share)
            }
            _ => false,
        };
        let room = count.open + (count.opening as usize) < spec.http2.max_connections as usize;
        if count.opening == 0 && room && !at_limit {
            local.pool.h2_opening(key, true);
            let opening = Opening { local, key };
            let result = new_connection(local, key, index, spec, snap, upstream_id).await;
            drop(opening);
            return result.map(|c| (c, false));
        }
        if at_limit {
            local.pool.evict_idle(other_keys(spec, key));
        }
        if !local.wait_for_room(deadline).await {
            return Err(match (at_limit, stats) {
                (true, Some(u)) => {
                    u.max_connections_rejections.inc();
                    ProxyError::MaxConnections
                }
                _ => ProxyError::MaxStreams,
            });
        }
    }
}

/// Counts an HTTP/2 connection being opened until the attempt ends, however
/// it ends (a route timeout may drop it), and wakes the requests waiting
/// for it.
struct Opening<'a> {
    local: &'a WorkerLocal,
    key: PoolKey,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.local.pool.h2_opening(self.key, false);
        self.local.room_freed();
    }
}

/// What a request sent again needs to find a connection.
pub(crate) struct Resend<'a> {
    pub(crate) key: PoolKey,
    pub(crate) index: usize,
    pub(crate) spec: &'a UpstreamSpec,
    pub(crate) snap: &'a Snapshot,
    pub(crate) upstream_id: usize,
}

/// A request to send again: as built, or as handed back by an HTTP/2
/// connection (its body pinned in a box).
enum Again {
    Plain(Request<RequestBody>),
    Pinned(Request<H2Body>),
}

/// Sends again, once, a request the endpoint did not process: handed back
/// unsent by a stale pooled connection, or refused on an HTTP/2 connection
/// (GOAWAY, REFUSED_STREAM). It goes over a new connection (HTTP/1.1), or
/// over another HTTP/2 connection than `avoid`, opened if need be. (A request
/// handed back by HTTP/2 whose body streams from the client cannot go over
/// HTTP/1.1: with `auto`, when the new connection is HTTP/1.1, it fails.)
async fn resend(
    local: &WorkerLocal,
    target: &Resend<'_>,
    request: Again,
    avoid: Option<&Rc<H2Conn>>,
) -> Result<(Response<Incoming>, Conn), ProxyError> {
    let Resend {
        key,
        index,
        spec,
        snap,
        upstream_id,
    } = *target;
    let conn = if spec.may_use_http2() {
        acquire_multiplexed(local, key, index, spec, snap, upstream_id, avoid)
            .await?
            .0
    } else {
        new_connection(local, key, index, spec, snap, upstream_id).await?
    };
    match (conn, request) {
        (Conn::Http1(mut sender), Again::Plain(mut request)) => {
            connect::http1_target(&mut request);
            let response = sender
                .try_send_request(request)
                .await
                .map_err(|e| classify(e.error()))?;
            Ok((response, Conn::Http1(sender)))
        }
        (Conn::Http1(_), Again::Pinned(_)) => Err(ProxyError::UpstreamReset),
        (Conn::Http2(stream), request) => {
            let mut request = match request {
                Again::Plain(request) => request.map(Box::pin),
                Again::Pinned(request) => request,
            };
            connect::http2_target(&mut request, spec.tls.is_some());
            let response = stream
                .conn
                .send(request)
                .await
                .map_err(|e| classify(e.error()))?;
            Ok((response, Conn::Http2(stream)))
        }
    }
}

/// One exchange over an HTTP/2 stream, waiting up to `timeout` for the
/// response head. A request the endpoint did not process (handed back
/// unsent, refused stream, above a GOAWAY's last stream) goes again once on
/// another connection, if its body (`again`) can be sent again.
pub(crate) async fn exchange_h2(
    local: &WorkerLocal,
    target: &Resend<'_>,
    stream: H2Stream,
    request: Request<RequestBody>,
    again: Option<Bytes>,
    timeout: std::time::Duration,
) -> Result<(Response<Incoming>, Conn), ProxyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut request = request.map(Box::pin);
    connect::http2_target(&mut request, target.spec.tls.is_some());
    // A copy of the head, to rebuild the request if its stream is refused
    // (hyper does not hand back a request once its stream opened).
    let head = again.map(|body| {
        (
            request.method().clone(),
            request.uri().clone(),
            request.headers().clone(),
            body,
        )
    });
    let mut failed = match tokio::time::timeout_at(deadline, stream.conn.send(request)).await {
        Err(_) => return Err(ProxyError::ResponseTimeout),
        Ok(Ok(response)) => return Ok((response, Conn::Http2(stream))),
        Ok(Err(e)) => e,
    };
    let request = match (failed.take_message(), head) {
        (Some(unsent), _) => Again::Pinned(unsent),
        (None, Some((method, uri, headers, body))) if unprocessed(failed.error()) => {
            let mut request = Request::new(RequestBody::replay(body));
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            *request.headers_mut() = headers;
            Again::Plain(request)
        }
        _ => return Err(classify(failed.error())),
    };
    tracing::debug!(
        upstream = %target.spec.name,
        endpoint = %target.key.0,
        error = %failed.error(),
        "HTTP/2 request not processed by the upstream: sending it again"
    );
    let avoid = stream.conn.clone();
    drop(stream);
    match tokio::time::timeout_at(deadline, resend(local, target, request, Some(&avoid))).await {
        Err(_) => Err(ProxyError::ResponseTimeout),
        Ok(result) => result,
    }
}

/// Whether an HTTP/2 error says the endpoint did not process the request:
/// its stream was refused (REFUSED_STREAM), or it was above the last stream
/// of a graceful GOAWAY (RFC 9113 §8.7). A GOAWAY with an error code is not
/// trusted: h2 reports it to every stream the connection loses.
fn unprocessed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            let reason = h2.reason();
            return h2.is_remote()
                && ((h2.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM))
                    || (h2.is_go_away() && reason == Some(h2::Reason::NO_ERROR)));
        }
        source = err.source();
    }
    false
}

/// Opens a new upstream connection (TCP, TLS, HTTP handshake). Boxed on
/// purpose: connecting is rare next to reusing a pooled connection, and its
/// state (socket connect, timer, handshakes) would otherwise be inlined into
/// every request's future, which hyper keeps allocated per client
/// connection, idle or not.
async fn new_connection(
    local: &WorkerLocal,
    key: PoolKey,
    index: usize,
    spec: &UpstreamSpec,
    snap: &Snapshot,
    upstream_id: usize,
) -> Result<Conn, ProxyError> {
    Box::pin(open_connection(local, key, index, spec, snap, upstream_id)).await
}

/// The body of [`new_connection`]. An HTTP/2 connection is listed in the
/// pool and its first stream taken.
async fn open_connection(
    local: &WorkerLocal,
    key: PoolKey,
    index: usize,
    spec: &UpstreamSpec,
    snap: &Snapshot,
    upstream_id: usize,
) -> Result<Conn, ProxyError> {
    let open = OpenUpstreamConnection::new(local, snap, upstream_id);
    let tls = spec
        .tls
        .as_deref()
        .and_then(|t| Some((&t.config, t.server_names.get(index)?)));
    let target = connect::Target {
        addr: key.0,
        protocol: spec.protocol,
        tls,
        http2: spec.http2,
        timeout: spec.connect_timeout,
    };
    match connect::connect(&target, open).await? {
        Connected::Http1(sender) => Ok(Conn::Http1(sender)),
        Connected::Http2(sender) => Ok(Conn::Http2(
            local.pool.h2_add(local, key, sender, spec.pool),
        )),
    }
}

/// Counts a connection an upstream opened, for `max_connections`, until the
/// connection's task ends (it closed); then wakes requests waiting for room.
struct OpenUpstreamConnection {
    local: Rc<WorkerLocal>,
    stats: Option<Arc<crate::metrics::UpstreamStats>>,
}

impl OpenUpstreamConnection {
    fn new(local: &WorkerLocal, snap: &Snapshot, upstream_id: usize) -> Self {
        // An `Arc` clone per new connection (not per request).
        let stats = snap.stats.upstreams.get(upstream_id).cloned();
        if let Some(c) = stats.as_ref().and_then(|s| s.shards.get(local.id)) {
            c.connections.inc();
        }
        OpenUpstreamConnection {
            local: local.rc(),
            stats,
        }
    }
}

impl Drop for OpenUpstreamConnection {
    fn drop(&mut self) {
        if let Some(c) = self
            .stats
            .as_ref()
            .and_then(|s| s.shards.get(self.local.id))
        {
            c.connections.dec();
        }
        self.local.room_freed();
    }
}

/// Maps a hyper client error to the cause the client is told.
fn classify(e: &hyper::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<crate::data::body::BodyError>().is_some() {
            return ProxyError::ClientBody;
        }
        source = err.source();
    }
    if e.is_parse() || e.is_parse_status() {
        ProxyError::BadResponse
    } else if e.is_timeout() {
        ProxyError::ResponseTimeout
    } else {
        ProxyError::UpstreamReset
    }
}
