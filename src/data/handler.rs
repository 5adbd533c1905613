//! The life of one request, top to bottom: snapshot → arena → context → router →
//! request phases → balancer → upstream pool → response phases. Reads in the
//! order a request moves; each step is a named function below.

use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::rc::Rc;
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
use crate::data::tunnel;
use crate::data::worker::{SnapshotRef, WorkerLocal};
use crate::metrics::status_class;
use crate::middleware::{self, Flow};
use crate::router::RouteInput;
use crate::upstream::exchange::{acquire, exchange_h2, resend_unsent, Resend};
use crate::upstream::outlier::{self, Observed};
use crate::upstream::pool::{Conn, PooledConn};
use crate::upstream::UpstreamSpec;

/// hyper's entry point for each request on a client connection: upgrades
/// and CONNECT (two cheap checks) take the boxed path of `tunnel.rs`, the
/// rest [`proxy`]. Not an async fn: awaiting the tunnel path in here would
/// add 264 B to every request's future. `tls` is `()` on plain connections
/// (no size in the future) and the connection's shared `Rc<TlsInfo>` on TLS
/// ones.
pub(crate) fn handle<T: crate::data::connection::ConnTls>(
    local: Rc<WorkerLocal>,
    client: SocketAddr,
    tls: T,
    req: Request<Incoming>,
) -> tunnel::Dispatch<impl Future<Output = Result<Response<ProxyBody>, Infallible>>> {
    if tunnel::wanted(&req) {
        return tunnel::Dispatch::tunnel(local, client, tls, req);
    }
    tunnel::Dispatch::plain(proxy(local, client, tls, req))
}

/// The ordinary request, top to bottom.
async fn proxy<T: crate::data::connection::ConnTls>(
    local: Rc<WorkerLocal>,
    client: SocketAddr,
    tls: T,
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
    ctx.tls = tls.info();
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

pub(crate) async fn process<'a>(
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
    let index = begin_attempt(local, snap, upstream_id, spec, ctx, headers, tried)?;
    let endpoint = &spec.endpoints[index];

    forward::prepare_headers(headers, ctx, &snap.server, endpoint, local);
    let uri = forward::upstream_uri(ctx, local)?;

    let started = Instant::now();
    // The key is recomputed where needed rather than kept across awaits.
    let (mut conn, reused) = acquire(
        local,
        spec.pool_key(index, endpoint.addr),
        index,
        spec,
        snap,
        upstream_id,
    )
    .await?;
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
    // `ref mut`: the sender is used in place, so the request future holds
    // one connection handle, not two.
    let exchanged = match conn {
        Conn::Http1(ref mut sender) => {
            // Kept only for HTTP/2; not carried across this await.
            drop(again);
            let exchange = sender.try_send_request(request);
            match tokio::time::timeout(timeout, exchange).await {
                Err(_) => Err(ProxyError::ResponseTimeout),
                Ok(Ok(response)) => Ok((response, conn)),
                // A pooled connection closed before the request left (the
                // upstream timed it out meanwhile): hyper hands the request
                // back unsent, and it goes once more over a new connection.
                // Nothing was sent, so this is safe for any method. Rare,
                // hence boxed (with its timer).
                Ok(Err(e)) => {
                    let target = (spec, &***snap, upstream_id, index, endpoint.addr);
                    match resend_unsent(local, e, reused, target, timeout, sent) {
                        Ok(retry) => retry.await,
                        Err(e) => Err(e),
                    }
                }
            }
        }
        Conn::Http2(stream) => {
            Box::pin(async move {
                let target = Resend {
                    key: spec.pool_key(index, endpoint.addr),
                    index,
                    spec,
                    snap,
                    upstream_id,
                };
                exchange_h2(local, &target, stream, request, again, timeout).await
            })
            .await
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
    let key = spec.pool_key(index, endpoint.addr);
    let conn = PooledConn::new(conn, key, spec.pool, local.clone());
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

/// The start of an attempt: picks an endpoint (by the request's hash key on
/// a hashed upstream; one not in `tried` where the balancer offers one),
/// notes it in the log and the metric ids, and counts the attempt there and
/// in the upstream until the answer's body ends (the request guard counts
/// them down). Returns the endpoint's index.
pub(crate) fn begin_attempt(
    local: &WorkerLocal,
    snap: &Snapshot,
    upstream_id: usize,
    spec: &UpstreamSpec,
    ctx: &mut RequestContext<'_>,
    headers: &http::HeaderMap,
    tried: u64,
) -> Result<usize, ProxyError> {
    // The key of a hashed upstream, read in place from the request.
    let key = spec
        .hash
        .as_ref()
        .and_then(|h| h.key.hash(ctx.path, ctx.client_addr.ip(), headers));
    let index = pick_untried(local, snap, upstream_id, spec.endpoints.len(), tried, key)?;
    ctx.log.endpoint = Some(spec.endpoints[index].addr);
    ctx.ids.set_endpoint(upstream_id, index);
    if let Some(e) = snap.stats.endpoint((upstream_id, index), local.id) {
        e.requests.inc();
        e.in_flight.inc();
    }
    if let Some(u) = snap.stats.upstream(upstream_id, local.id) {
        u.in_flight.inc();
    }
    Ok(index)
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
pub(crate) fn count_failure(
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
        eprintln!("handle future {}", future_size(&super::handle::<()>));
    }

    /// The size of the future an async fn returns, without calling it.
    fn future_size<F, A, B, C, D, R>(_: &F) -> usize
    where
        F: Fn(A, B, C, D) -> R,
    {
        size_of::<R>()
    }
}
