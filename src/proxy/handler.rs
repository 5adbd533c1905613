//! The phases of one request, in the order it meets them, named as pingora
//! names them: route, request filter (hop-by-hop removal, the middlewares'
//! request phases), then upstream: peer, connect, send (`attempt.rs`, with
//! retries in `retry.rs`) and the answer or the failure path, and the
//! response filter (the middlewares' response phases, innermost first). Logging ends with the
//! response body (the access log's tail, the request's outcome). A head the
//! prologue refused gets its 400 here too, without the phases.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::context::body::ClientBody;
use http::request::Parts;
use http::Response;

use super::error::ProxyError;
use super::{attempt, grpc, headers, ProxyState};
use crate::config::{Route, Snapshot, SnapshotRef};
use crate::context::{Flow, ProxyBody, RequestContext, UpstreamRequest};
use crate::metrics::{status_class, Refusal};
use crate::middleware;
use crate::router::RouteInput;
use crate::upstream::outlier;

/// What a kind of request does between the prologue and the epilogue.
pub(super) trait Path {
    /// What it takes out of the request head before the context borrows it.
    type Taken;

    fn take(parts: &mut Parts) -> Self::Taken;

    /// The phases, from the route to the answer: the response and what the
    /// response filter runs over. The request's headers and body are lent,
    /// not moved: the future that owns them keeps them in place (every move
    /// of a future's state is a copy).
    async fn phases<'a>(
        state: &Rc<ProxyState>,
        snap: &'a SnapshotRef,
        ctx: &mut RequestContext<'a>,
        parts: &'a Parts,
        upstream: &mut UpstreamRequest<'a>,
        body: &mut Option<ClientBody>,
        taken: Self::Taken,
    ) -> (Response<ProxyBody>, Chain<'a>);
}

/// The ordinary request's phases.
pub(super) struct Plain;

impl Path for Plain {
    type Taken = ();

    #[inline]
    fn take(_: &mut Parts) {}

    fn phases<'a>(
        state: &Rc<ProxyState>,
        snap: &'a SnapshotRef,
        ctx: &mut RequestContext<'a>,
        _: &'a Parts,
        upstream: &mut UpstreamRequest<'a>,
        body: &mut Option<ClientBody>,
        (): (),
    ) -> impl Future<Output = (Response<ProxyBody>, Chain<'a>)> {
        process(state, snap, ctx, upstream, body)
    }
}

/// What the phases up to the answer leave for the response filter: the
/// route and how many of its middlewares ran (`None`: no route, no filter).
pub(super) type Chain<'a> = Option<(&'a Route, usize)>;

/// Route → request filter → upstream. Returns the response and what the
/// response filter runs over; `request.rs` runs it (then the epilogue), so
/// the response waits there rather than beside the exchange's state (this
/// future is idle memory per connection).
pub(super) async fn process<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    ctx: &mut RequestContext<'a>,
    upstream: &mut UpstreamRequest<'a>,
    body: &mut Option<ClientBody>,
) -> (Response<ProxyBody>, Chain<'a>) {
    // A gRPC call (HTTP/2 only, so HTTP/1.1 pays one comparison) has its
    // own deadline and hears the proxy's failures in gRPC form.
    let grpc = grpc::is_call(ctx.version, &upstream.headers);
    let Some(route_id) = route(snap, ctx, upstream) else {
        return (unrouted(snap, ctx, upstream, grpc), None);
    };
    let route = &snap.routes[route_id];
    let (flow, ran) = request_filter(route, ctx, upstream, grpc).await;
    let response = match flow {
        Flow::Respond(response) => *response,
        Flow::Continue => {
            // To the upstream and back, within the route's timeout if it has
            // one (for a gRPC call, or its `grpc-timeout` if shorter).
            let limit = upstream_limit(route, upstream, grpc);
            let headers = &mut upstream.headers;
            let exchange = attempt::forward(state, snap, route, ctx, headers, body);
            let result = match limit {
                None => exchange.await,
                // Boxed: only routes with a timeout pay for the timer, and
                // the others keep their future (idle memory) as small.
                Some((limit, expired)) => Box::pin(tokio::time::timeout(limit, exchange))
                    .await
                    .unwrap_or(Err(expired)),
            };
            upstream_answer(state, snap, route, ctx, result, grpc)
        }
    };
    (response, Some((route, ran)))
}

/// The route: the first match in the snapshot's table, noted in the
/// context, the log record and the metric ids.
#[inline]
pub(super) fn route<'a>(
    snap: &'a Snapshot,
    ctx: &mut RequestContext<'a>,
    upstream: &UpstreamRequest<'_>,
) -> Option<usize> {
    let input = RouteInput {
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        query: ctx.query,
        headers: &upstream.headers,
    };
    let route_id = snap.router.find(&input, &mut ctx.params)?;
    let route = &snap.routes[route_id];
    ctx.ids.set_route(route_id);
    ctx.log.route = &route.name;
    ctx.log.upstream = &snap.upstreams[route.upstream].name;
    Some(route_id)
}

/// The request filter: the client's hop-by-hop fields go first (RFC 9110
/// §7.6.1: a client naming in `Connection` a field that a middleware sets
/// must not strip it upstream), a gRPC call gets `TE: trailers`, then the
/// chain's request phases run; a middleware may answer by itself. Returns
/// the decision and how many middlewares ran.
async fn request_filter(
    route: &Route,
    ctx: &mut RequestContext<'_>,
    upstream: &mut UpstreamRequest<'_>,
    grpc: bool,
) -> (Flow, usize) {
    headers::remove_hop_by_hop(&mut upstream.headers, ctx.arena());
    if grpc {
        grpc::prepare(&mut upstream.headers);
    }
    middleware::run_request(&route.chain, ctx, upstream).await
}

/// The limit on the upstream's response head: the route's `timeout`, or for
/// a gRPC call the shorter of it and the call's `grpc-timeout`, with the
/// error it ends with.
#[inline]
fn upstream_limit(
    route: &Route,
    upstream: &UpstreamRequest<'_>,
    grpc: bool,
) -> Option<(Duration, ProxyError)> {
    match grpc {
        false => route.timeout.map(|t| (t, ProxyError::RouteTimeout)),
        true => grpc::limit(route.timeout, &upstream.headers),
    }
}

/// What the upstream's answer (or failure) becomes: its outcome told to
/// outlier detection, a failure turned into its response (the failure
/// path), the status counted for the upstream.
#[inline]
fn upstream_answer(
    state: &ProxyState,
    snap: &Snapshot,
    route: &Route,
    ctx: &mut RequestContext<'_>,
    result: Result<Response<ProxyBody>, ProxyError>,
    grpc: bool,
) -> Response<ProxyBody> {
    let spec = &snap.upstreams[route.upstream];
    if let Some(id) = ctx.ids.endpoint() {
        let observed = attempt::observed(&result);
        outlier::observe(
            &snap.stats,
            &snap.endpoint_states,
            spec,
            state.tools.id,
            id,
            observed,
        );
    }
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            if let (ProxyError::BodyTooLarge, Some(limit)) = (e, ctx.body_limit) {
                // The limit's policy refused it, as if at the head.
                ctx.ids.set_refusal(limit.policy, Refusal::BodyTooLarge);
            }
            failed(snap, state.tools.id, route.upstream, ctx, e, "");
            match grpc {
                false => e.response(),
                true => e.grpc_response(),
            }
        }
    };
    if let Some(u) = snap.stats.upstream(route.upstream, state.tools.id) {
        u.responses[status_class(response.status().as_u16())].inc();
    }
    response
}

/// The response filter: the response phases of the middlewares that ran,
/// innermost first, so the chain is an onion. Errors pass through it too.
pub(super) async fn response_filter(
    chain: Chain<'_>,
    ctx: &mut RequestContext<'_>,
    response: &mut Response<ProxyBody>,
) {
    if let Some((route, ran)) = chain {
        ctx.log.status = response.status().as_u16();
        middleware::run_response(&route.chain, ran, ctx, response).await;
    }
}

/// No route: 404 (a gRPC call: UNIMPLEMENTED), logged by the server's
/// fallback access log if one is set.
fn unrouted(
    snap: &Snapshot,
    ctx: &mut RequestContext<'_>,
    req: &UpstreamRequest<'_>,
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

/// A head the prologue refused (its Host missing, repeated, invalid or
/// disagreeing with the target, `headers.rs` `check_host`): 400 with the
/// reason. None of the route's middlewares runs, but the route the head
/// names is found, so the 400 counts in its figures like its other 4xx; the
/// fallback access log (`server.access_log`), if set, logs it. At debug
/// level only: clients choose how often they send one.
pub(super) fn refused<'a>(
    snap: &'a Snapshot,
    ctx: &mut RequestContext<'a>,
    req: &UpstreamRequest<'_>,
    e: ProxyError,
) -> Response<ProxyBody> {
    route(snap, ctx, req);
    let response = e.response();
    ctx.log.cause = Some(e.cause());
    ctx.log.status = response.status().as_u16();
    tracing::debug!(
        route = ctx.log.route,
        cause = e.cause(),
        "{} {} refused: {}",
        ctx.method,
        ctx.path,
        e.body().trim_end()
    );
    if let Some(log) = &snap.fallback_log {
        let _ = log.on_request(ctx, req);
        log.log_unrouted(ctx, ctx.log.status, e.body().len() as u64);
    }
    response
}

/// The failure path of an exchange: counted against the upstream and the
/// endpoint it went to, its cause noted for the log, and one warning.
/// `what` names the kind of request in the warning (`""` or `"upgrade "`).
pub(super) fn failed(
    snap: &Snapshot,
    worker: usize,
    upstream: usize,
    ctx: &mut RequestContext<'_>,
    e: ProxyError,
    what: &str,
) {
    attempt::count_failure(snap, worker, upstream, ctx, e);
    ctx.log.cause = Some(e.cause());
    if e == ProxyError::BodyTooLarge {
        // The client's doing, and clients choose how often: not a warning.
        tracing::debug!(
            route = ctx.log.route,
            "{what}{} {} answered 413: the request body is over max_body",
            ctx.method,
            ctx.path
        );
        return;
    }
    tracing::warn!(
        route = ctx.log.route,
        upstream = ctx.log.upstream,
        endpoint = ?ctx.log.endpoint,
        cause = e.cause(),
        "{what}{} {} answered {}",
        ctx.method,
        ctx.path,
        e.status().as_u16()
    );
}
