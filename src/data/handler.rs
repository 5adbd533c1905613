//! The life of one request, top to bottom: snapshot → arena → context → router →
//! request phases → balancer → upstream pool → response phases. Reads in the
//! order a request moves; each step is a named function below.

use std::convert::Infallible;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::balance::BalanceKind;
use crate::config::Route;
use crate::config::Snapshot;
use crate::data::body::{BytesIn, ProxyBody, RequestBody};
use crate::data::context::{RequestContext, UpstreamRequest};
use crate::data::error::ProxyError;
use crate::data::forward;
use crate::data::grpc;
use crate::data::retry::{self, RetryPolicy};
use crate::data::worker::{SnapshotRef, WorkerLocal};
use crate::metrics::status_class;
use crate::middleware::{self, Flow};
use crate::router::RouteInput;
use crate::upstream::connect::{self, Connected, H2Body};
use crate::upstream::outlier::{self, Observed};
use crate::upstream::pool::{Conn, H2Conn, H2Stream, PooledConn};
use crate::upstream::{PoolKey, Protocol, UpstreamSpec};

/// hyper's entry point for each request on a client connection.
pub(crate) async fn handle(
    local: Rc<WorkerLocal>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let in_flight = local.request_started();
    // One atomic load; this request keeps this snapshot to the end.
    let snapshot = local.snapshot();
    let arena = local.arenas.take();
    let (mut parts, body) = req.into_parts();
    // The headers move into the upstream request; the context keeps borrowing
    // the method and URI from `parts`.
    let upstream = UpstreamRequest {
        headers: std::mem::take(&mut parts.headers),
    };
    // HTTP/2 carries the host in the URI; HTTP/1.1 in the Host header, whose
    // value we hold by a counted handle (no copy) since the headers move on.
    let host_header = match parts.uri.authority() {
        Some(_) => None,
        None => upstream.headers.get(header::HOST).cloned(),
    };
    let host = match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => host_header.as_ref().and_then(|v| v.to_str().ok()),
    };
    let mut ctx = RequestContext::new(&arena, &local, &parts, host, client);
    let mut response = process(&local, &snapshot, &mut ctx, upstream, Some(body)).await;
    let guard = in_flight.answered(
        snapshot.clone(),
        ctx.ids,
        response.status().as_u16(),
        ctx.log.start,
    );
    response.body_mut().set_request_guard(guard);
    Ok(response)
}

async fn process<'a>(
    local: &Rc<WorkerLocal>,
    snap: &'a SnapshotRef,
    ctx: &mut RequestContext<'a>,
    mut upstream: UpstreamRequest,
    mut body: Option<Incoming>,
) -> Response<ProxyBody> {
    // A gRPC call (HTTP/2 only, so HTTP/1.1 pays one comparison) has its
    // own deadline and hears the proxy's failures in gRPC form.
    let grpc = grpc::is_call(ctx.version, &upstream.headers);

    // 1. Route.
    let input = RouteInput {
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        headers: &upstream.headers,
    };
    let Some(route_id) = snap.router.find(&input, &mut ctx.params) else {
        return unrouted(snap, ctx, &upstream, grpc);
    };
    let route = &snap.routes[route_id];
    let upstream_spec = &snap.upstreams[route.upstream];
    ctx.route = Some(route);
    ctx.ids.set_route(route_id);
    ctx.log.route = &route.name;
    ctx.log.upstream = &upstream_spec.name;

    // 2. Request phases; a middleware may answer by itself. The client's
    // hop-by-hop fields go first (RFC 9110 §7.6.1): a client naming in
    // `Connection` a field that a middleware sets must not strip it upstream.
    forward::remove_hop_by_hop(&mut upstream.headers, ctx.arena());
    if grpc {
        grpc::prepare(&mut upstream.headers);
    }
    let (flow, ran) = middleware::run_request(&route.chain, ctx, &mut upstream).await;
    let mut response = match flow {
        Flow::Respond(response) => *response,
        Flow::Continue => {
            // 3. Balancer → upstream, within the route's timeout if it has one
            // (for a gRPC call, or its `grpc-timeout` if shorter).
            let limit = match grpc {
                false => route.timeout.map(|t| (t, ProxyError::RouteTimeout)),
                true => grpc::limit(route.timeout, &upstream.headers),
            };
            let exchange = forward(
                local,
                snap,
                route,
                upstream_spec,
                ctx,
                &mut upstream.headers,
                &mut body,
            );
            let result = match limit {
                None => exchange.await,
                // Boxed: only routes with a timeout pay for the timer, and
                // the others keep their future (idle memory) as small.
                Some((limit, expired)) => Box::pin(tokio::time::timeout(limit, exchange))
                    .await
                    .unwrap_or(Err(expired)),
            };
            if let Some(id) = ctx.ids.endpoint() {
                outlier::observe(&snap.stats, upstream_spec, local.id, id, observed(&result));
            }
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    count_failure(snap, local.id, route.upstream, ctx, e);
                    ctx.log.cause = Some(e.cause());
                    tracing::warn!(
                        route = ctx.log.route,
                        upstream = ctx.log.upstream,
                        endpoint = ?ctx.log.endpoint,
                        cause = e.cause(),
                        "{} {} answered {}",
                        ctx.method,
                        ctx.path,
                        e.status().as_u16()
                    );
                    match grpc {
                        false => e.response(),
                        true => e.grpc_response(),
                    }
                }
            };
            if let Some(u) = snap.stats.upstream(route.upstream, local.id) {
                u.responses[status_class(response.status().as_u16())].inc();
            }
            response
        }
    };
    ctx.log.status = response.status().as_u16();

    // 4. Response phases, innermost first.
    middleware::run_response(&route.chain, ran, ctx, &mut response).await;
    response
}

/// No route: 404 (a gRPC call: UNIMPLEMENTED), logged by the server's
/// fallback access log if one is set.
fn unrouted(
    snap: &Snapshot,
    ctx: &mut RequestContext<'_>,
    req: &UpstreamRequest,
    grpc: bool,
) -> Response<ProxyBody> {
    let e = ProxyError::NoRoute;
    let (response, body_len) = match grpc {
        false => (e.response(), e.body().len()),
        true => (e.grpc_response(), 0),
    };
    ctx.log.cause = Some(e.cause());
    ctx.log.status = response.status().as_u16();
    if let Some(log) = &snap.fallback_log {
        let _ = log.on_request(ctx, req);
        log.log_unrouted(ctx, ctx.log.status, body_len as u64);
    }
    response
}

/// Sends the request upstream: checks the upstream's limits, then makes one
/// attempt, or, for a route with a retry policy and a replayable request,
/// the boxed attempts of [`forward_with_retries`]. Takes references only: an
/// async fn keeps its arguments for its whole life, and this future lives
/// inside every request's, which hyper keeps per connection (idle memory).
async fn forward<'a>(
    local: &Rc<WorkerLocal>,
    snap: &'a SnapshotRef,
    route: &'a Route,
    spec: &'a UpstreamSpec,
    ctx: &mut RequestContext<'a>,
    headers: &mut http::HeaderMap,
    body: &mut Option<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let upstream_id = route.upstream;
    if let Some(u) = snap.stats.upstream(upstream_id, local.id) {
        if let Some(max) = spec.max_requests {
            // Each worker allows its share of the limit: no shared counter.
            let share = max.div_ceil(snap.server.workers.max(1) as u32);
            if u.in_flight.get() >= i64::from(share) {
                u.limit_rejections.inc();
                return Err(ProxyError::MaxRequests);
            }
        }
        retry::deposit(u, spec.retry_budget);
    }
    if let Some(policy) = route.retry.as_deref() {
        let replayable = body.as_ref().is_some_and(|b| policy.replayable(headers, b));
        if policy.allows_method(ctx.method) && replayable {
            return Box::pin(forward_with_retries(
                local,
                snap,
                upstream_id,
                spec,
                policy,
                ctx,
                headers,
                body.take(),
            ))
            .await;
        }
    }
    let timeout = spec.response_header_timeout;
    let payload = Payload::Client(body);
    forward_upstream(
        local,
        snap,
        upstream_id,
        spec,
        ctx,
        headers,
        payload,
        0,
        timeout,
    )
    .await
}

/// What an attempt sends: the client's body as it streams in (taken from
/// the `Option` when the connection is ready), or a buffered copy.
enum Payload<'p> {
    Client(&'p mut Option<Incoming>),
    Replay(&'p Bytes),
}

/// One attempt: picks an endpoint (one not in `tried` where the balancer
/// offers one), counts the attempt there, prepares the headers for it, and
/// exchanges the request over a pooled (or new) connection, waiting up to
/// `timeout` for the response head. Returns the response head with a
/// streaming body.
#[allow(clippy::too_many_arguments)]
async fn forward_upstream<'a>(
    local: &Rc<WorkerLocal>,
    snap: &'a SnapshotRef,
    upstream_id: usize,
    spec: &'a UpstreamSpec,
    ctx: &mut RequestContext<'a>,
    headers: &mut http::HeaderMap,
    payload: Payload<'_>,
    tried: u64,
    timeout: std::time::Duration,
) -> Result<Response<ProxyBody>, ProxyError> {
    // The key of a hashed upstream, read in place from the request.
    let key = spec
        .hash
        .as_ref()
        .and_then(|h| h.key.hash(ctx.path, ctx.client_addr.ip(), headers));
    let index = pick_untried(local, snap, upstream_id, spec.endpoints.len(), tried, key)?;
    let endpoint = &spec.endpoints[index];
    ctx.log.endpoint = Some(endpoint.addr);
    ctx.ids.set_endpoint(upstream_id, index);
    if let Some(e) = snap.stats.endpoint((upstream_id, index), local.id) {
        e.requests.inc();
        // Until the response body ends (the request guard counts it down).
        e.in_flight.inc();
    }
    if let Some(u) = snap.stats.upstream(upstream_id, local.id) {
        u.in_flight.inc();
    }

    forward::prepare_headers(headers, ctx, &snap.server, endpoint, local);
    let uri = forward::upstream_uri(ctx, local)?;

    let started = Instant::now();
    let pool_key = spec.pool_key(index, endpoint.addr);
    let (conn, reused) = acquire(local, pool_key, index, spec, snap, upstream_id).await?;
    ctx.log.upstream_connect = Some(started.elapsed());
    ctx.log.reused_connection = reused;
    if let Some(u) = snap.stats.upstream(upstream_id, local.id) {
        if reused {
            u.pool_reused.inc();
        } else {
            u.pool_new.inc();
        }
    }

    // The request is built and handed to hyper in one synchronous step, so it
    // never sits in this future's state across an await: this future is
    // stored per client connection by hyper, and its size is idle memory.
    // An HTTP/2 stream the endpoint refuses can go again only with a body
    // that can be sent again: a buffered one, or none.
    let (body, again) = match payload {
        Payload::Client(body) => {
            let Some(body) = body.take() else {
                return Err(ProxyError::ClientBody);
            };
            let meter = ctx.ids.route().map(|route| BytesIn {
                snapshot: snap.clone(),
                route,
                worker: local.id,
            });
            let again = body.is_end_stream().then(Bytes::new);
            (RequestBody::new(body, spec.body_idle_timeout, meter), again)
        }
        Payload::Replay(data) => (RequestBody::replay(data.clone()), Some(data.clone())),
    };
    let mut request = Request::new(body);
    *request.method_mut() = ctx.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = std::mem::take(headers);
    let sent = Instant::now();
    let exchanged = match conn {
        Conn::Http1(mut sender) => {
            let exchange = sender.try_send_request(request);
            match tokio::time::timeout(timeout, exchange).await {
                Err(_) => Err(ProxyError::ResponseTimeout),
                Ok(Ok(response)) => Ok((response, Conn::Http1(sender))),
                // A pooled connection closed before the request left (the
                // upstream timed it out meanwhile): hyper hands the request
                // back unsent, and it goes once more over a new connection.
                // Nothing was sent, so this is safe for any method. Rare,
                // hence boxed.
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => {
                        let target = Resend {
                            key: pool_key,
                            index,
                            spec,
                            snap,
                            upstream_id,
                        };
                        let retry = Box::pin(resend(local, &target, Again::Plain(unsent), None));
                        let remaining = timeout.saturating_sub(sent.elapsed());
                        match tokio::time::timeout(remaining, retry).await {
                            Err(_) => Err(ProxyError::ResponseTimeout),
                            Ok(result) => result,
                        }
                    }
                    _ => Err(classify(e.error())),
                },
            }
        }
        Conn::Http2(stream) => {
            let target = Resend {
                key: pool_key,
                index,
                spec,
                snap,
                upstream_id,
            };
            Box::pin(exchange_h2(local, &target, stream, request, again, timeout)).await
        }
    };
    let (response, conn) = match exchanged {
        Ok(done) => done,
        Err(ProxyError::ResponseTimeout) => {
            // For peak_ewma a timeout counts as a (long) latency.
            if observes(spec) {
                local.observe(snap, upstream_id, index, timeout, sent + timeout);
            }
            return Err(ProxyError::ResponseTimeout);
        }
        Err(e) => return Err(e),
    };
    let waited = sent.elapsed();
    ctx.log.upstream_header = Some(waited);
    if observes(spec) {
        local.observe(snap, upstream_id, index, waited, sent + waited);
    }
    if let Some(u) = snap.stats.upstream(upstream_id, local.id) {
        u.latency.observe(waited);
    }

    let (mut head, incoming) = response.into_parts();
    forward::remove_hop_by_hop(&mut head.headers, ctx.arena());
    let conn = PooledConn::new(conn, pool_key, spec.pool, local.clone());
    Ok(Response::from_parts(
        head,
        ProxyBody::upstream(incoming, conn, spec.body_idle_timeout),
    ))
}

/// Whether the upstream's balancer learns from latencies (`peak_ewma`).
fn observes(spec: &UpstreamSpec) -> bool {
    spec.balance == BalanceKind::PeakEwma
}

/// The attempts of a request its route may retry: the body is read into a
/// buffer first (it was announced within `replay_limit`), then each attempt
/// goes to an endpoint not tried yet where one exists, after a jittered
/// exponential backoff, while the policy's conditions, the attempts and the
/// upstream's retry budget allow. The last attempt's outcome is the answer
/// (counted by the caller like any single attempt).
#[allow(clippy::too_many_arguments)]
async fn forward_with_retries<'a>(
    local: &Rc<WorkerLocal>,
    snap: &'a SnapshotRef,
    upstream_id: usize,
    spec: &'a UpstreamSpec,
    policy: &RetryPolicy,
    ctx: &mut RequestContext<'a>,
    headers: &mut http::HeaderMap,
    body: Option<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let body = body.ok_or(ProxyError::ClientBody)?;
    // Bounded like any body: a client that stalls for `body_idle_timeout`
    // while its (small) body is read gets 400, as it would while streaming.
    let data = tokio::time::timeout(
        spec.body_idle_timeout,
        retry::collect(body, policy.replay_limit),
    )
    .await
    .map_err(|_| ProxyError::ClientBody)?
    .map_err(|()| ProxyError::ClientBody)?;
    if let Some(r) = ctx.ids.route().and_then(|r| snap.stats.route(r, local.id)) {
        r.bytes_in.add(data.len() as u64);
    }
    let timeout = policy
        .per_try_timeout
        .map_or(spec.response_header_timeout, |t| {
            t.min(spec.response_header_timeout)
        });
    let mut tried: u64 = 0;
    let mut attempt = 1;
    loop {
        ctx.log.attempts = attempt as u8;
        let mut attempt_headers = headers.clone();
        let result = forward_upstream(
            local,
            snap,
            upstream_id,
            spec,
            ctx,
            &mut attempt_headers,
            Payload::Replay(&data),
            tried,
            timeout,
        )
        .await;
        // The endpoint this attempt went to.
        let Some(id) = ctx.ids.endpoint() else {
            return result;
        };
        let index = id.1;
        tried |= 1u64 << (index % 64);
        let retryable = match &result {
            Ok(r) => policy.on_statuses.contains(&r.status().as_u16()),
            Err(e) if e.is_connect_failure() => policy.on_connect_failure,
            Err(ProxyError::UpstreamReset) => policy.on_reset,
            Err(ProxyError::ResponseTimeout) => policy.on_timeout,
            Err(_) => false,
        };
        if !retryable || attempt >= policy.attempts {
            return result;
        }
        let Some(u) = snap.stats.upstream(upstream_id, local.id) else {
            return result;
        };
        if !retry::withdraw(
            u,
            spec.retry_budget,
            snap.server.workers,
            local.monotonic_ms(),
        ) {
            u.retry_budget_exhausted.inc();
            return result;
        }
        u.retries.inc();
        // This attempt is over: its counts end here, not with the response.
        if let Some(e) = snap.stats.endpoint(id, local.id) {
            e.in_flight.dec();
        }
        u.in_flight.dec();
        if let Err(e) = &result {
            count_failure(snap, local.id, upstream_id, ctx, *e);
        }
        outlier::observe(&snap.stats, spec, local.id, id, observed(&result));
        drop(result);
        attempt += 1;
        let random = std::collections::hash_map::RandomState::new().hash_one((
            local.id,
            attempt,
            Instant::now(),
        ));
        tokio::time::sleep(policy.backoff(attempt, random)).await;
    }
}

/// An endpoint index not in `tried` (a bit per index, modulo 64), where the
/// balancer offers one within a round of picks; else its next pick.
fn pick_untried(
    local: &WorkerLocal,
    snap: &Snapshot,
    upstream_id: usize,
    endpoints: usize,
    tried: u64,
    key: Option<u64>,
) -> Result<usize, ProxyError> {
    let mut index = local.pick(snap, upstream_id, key)?;
    if tried == 0 {
        return Ok(index);
    }
    for _ in 1..endpoints {
        if tried & (1u64 << (index % 64)) == 0 {
            break;
        }
        // A retry: the next candidate in the balancer's own order (a hashed
        // upstream gives the same endpoint for the same key, so its retry
        // falls back to no key, which picks by the upstream's fallback).
        index = local.pick(snap, upstream_id, None)?;
    }
    Ok(index)
}

/// What an attempt's outcome tells outlier detection about its endpoint.
fn observed(result: &Result<Response<ProxyBody>, ProxyError>) -> Observed {
    match result {
        Ok(r) if r.status().is_server_error() => Observed::ServerError,
        Ok(_) => Observed::Success,
        Err(e) if e.is_connect_failure() => Observed::ConnectFailure,
        Err(
            ProxyError::UpstreamReset
            | ProxyError::ResponseTimeout
            | ProxyError::BadResponse
            | ProxyError::RouteTimeout,
        ) => Observed::ServerError,
        // Not the endpoint's doing (client body, limits, no endpoint).
        Err(_) => Observed::Success,
    }
}

/// Counts a failed exchange against the upstream and the endpoint it went to.
fn count_failure(
    snap: &Snapshot,
    worker: usize,
    upstream: usize,
    ctx: &RequestContext<'_>,
    e: ProxyError,
) {
    let at_endpoint = match e {
        e if e.is_connect_failure() => {
            if let Some(u) = snap.stats.upstream(upstream, worker) {
                u.connect_failures.inc();
            }
            true
        }
        ProxyError::ResponseTimeout | ProxyError::RouteTimeout => {
            if let Some(u) = snap.stats.upstream(upstream, worker) {
                u.timeouts.inc();
            }
            true
        }
        ProxyError::UpstreamReset | ProxyError::BadResponse => true,
        _ => false,
    };
    if at_endpoint {
        if let Some(e) = ctx
            .ids
            .endpoint()
            .and_then(|id| snap.stats.endpoint(id, worker))
        {
            e.failed();
        }
    }
}

/// A ready connection to endpoint `index` (pool key `key`): for HTTP/1.1 the
/// newest idle one from this worker's pool, or a new one; an upstream that
/// may speak HTTP/2 takes the boxed path of [`acquire_multiplexed`].
async fn acquire(
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
struct Resend<'a> {
    key: PoolKey,
    index: usize,
    spec: &'a UpstreamSpec,
    snap: &'a Snapshot,
    upstream_id: usize,
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
async fn exchange_h2(
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
/// connection, idle or not. An HTTP/2 connection is listed in the pool and
/// its first stream taken.
async fn new_connection(
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
    match Box::pin(connect::connect(&target, open)).await? {
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
#[cfg(test)]
mod size_probe {
    #[test]
    fn sizes() {
        use std::mem::size_of;
        eprintln!("Parts {}", size_of::<http::request::Parts>());
        eprintln!("HeaderMap {}", size_of::<http::HeaderMap>());
        eprintln!("ReqBody {}", size_of::<crate::data::body::RequestBody>());
        eprintln!(
            "Request<ReqBody> {}",
            size_of::<http::Request<crate::data::body::RequestBody>>()
        );
        eprintln!("Sleep {}", size_of::<tokio::time::Sleep>());
        eprintln!(
            "Ctx {}",
            size_of::<crate::data::context::RequestContext<'static>>()
        );
        eprintln!(
            "Response<ProxyBody> {}",
            size_of::<http::Response<crate::data::body::ProxyBody>>()
        );
        eprintln!(
            "Response<Incoming> {}",
            size_of::<http::Response<hyper::body::Incoming>>()
        );
        eprintln!("Incoming {}", size_of::<hyper::body::Incoming>());
        eprintln!("ProxyBody {}", size_of::<crate::data::body::ProxyBody>());
        eprintln!("LogTail {}", size_of::<crate::middleware::LogTail>());
        eprintln!(
            "PooledConn {}",
            size_of::<crate::upstream::pool::PooledConn>()
        );
        eprintln!("handle future {}", future_size(&super::handle));
    }

    /// The size of the future an async fn returns, without calling it.
    fn future_size<F, A, B, C, R>(_: &F) -> usize
    where
        F: Fn(A, B, C) -> R,
    {
        size_of::<R>()
    }
}
