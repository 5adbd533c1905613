//! Sending a request upstream: the upstream's limits, then one attempt (or,
//! for a route with a retry policy, the boxed attempts of
//! [`forward_with_retries`], by the rules of `retry.rs`), each attempt in four
//! steps: upstream peer
//! (the balancer's pick, counted), connect (a pooled or new connection),
//! send (the request handed to it, the response head awaited) and observe
//! (latency to the balancer and the histogram, the connection lent to the
//! response body).
//!
//! Every function here takes references only: an async fn keeps its
//! arguments for its whole life, and this future lives inside every
//! request's, which hyper keeps allocated per connection (idle memory).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::context::body::ClientBody;
use bumpalo::Bump;
use bytes::Bytes;
use http::Response;
use http_body::Body as _;

use super::error::ProxyError;
use super::{headers, retry, ProxyState};
use crate::balance::set::PickView;
use crate::config::{RetryPolicy, Route, Snapshot, SnapshotRef};
use crate::context::body::{BytesIn, RequestBody};
use crate::context::{Headers, ProxyBody, RequestContext};
use crate::http1::conn::{Home, WireBody};
use crate::upstream::exchange::{self, Exchanged, Target};
use crate::upstream::outlier::{self, Observed};

/// Sends the request upstream: checks the upstream's `max_requests`, then
/// makes one attempt, or, for a route with a retry policy and a replayable
/// request, the boxed attempts of [`forward_with_retries`].
pub(super) async fn forward<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    route: &'a Route,
    ctx: &mut RequestContext<'a>,
    headers: &mut Headers<'a>,
    body: &mut Option<ClientBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let target = target(snap, route.upstream, ctx.arena());
    let spec = target.spec;
    if let Some(u) = snap.stats.upstream(target.id, state.tools.id) {
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
                state,
                snap,
                &target,
                policy,
                ctx,
                headers,
                body.take(),
            ))
            .await;
        }
    }
    let timeout = spec.response_header_timeout;
    let result = attempt(
        state,
        snap,
        &target,
        ctx,
        headers,
        Payload::Client(body),
        0,
        timeout,
    )
    .await;
    // Failover: the connection could not be made, so nothing was sent (the
    // body is still the client's, untaken) and another endpoint may take
    // the request as it came, whatever its method. Boxed: the rare path,
    // kept out of every request's future (only the error crosses into it).
    let failover = spec.connect_failover && spec.endpoints.len() > 1 && body.is_some();
    // The error is taken out first, so that the result (a response's
    // size) is not kept across the await below.
    let e = {
        let result = result;
        match result {
            Err(e) if failover && e.is_connect_failure() => e,
            other => return other,
        }
    };
    // Boxed in a statement of its own, so that the unboxed future is not a
    // temporary of the statement that awaits.
    let rest = Box::pin(fail_over(
        state, snap, &target, ctx, headers, body, e, timeout,
    ));
    rest.await
}

/// The attempts after `first`, whose connection failed: each to an
/// endpoint not tried yet, while there is one and the retry budget allows.
#[allow(clippy::too_many_arguments)]
async fn fail_over<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    target: &Target<'a>,
    ctx: &mut RequestContext<'a>,
    headers: &mut Headers<'a>,
    body: &mut Option<ClientBody>,
    first: ProxyError,
    timeout: Duration,
) -> Result<Response<ProxyBody>, ProxyError> {
    let spec = target.spec;
    let mut result = Err(first);
    let mut tried: u64 = 0;
    let mut n = 1;
    loop {
        let failed_to_connect = matches!(&result, Err(e) if e.is_connect_failure());
        if !failed_to_connect || body.is_none() {
            return result;
        }
        let Some(id) = ctx.ids.endpoint() else {
            return result;
        };
        tried |= 1u64 << (id.1 % 64);
        let untried = (0..spec.endpoints.len()).any(|i| tried & (1u64 << (i % 64)) == 0);
        if !untried || n >= spec.endpoints.len() || !retry_allowed(state, snap, target) {
            return result;
        }
        end_attempt(state, snap, target, ctx, id, &result);
        n += 1;
        ctx.log.attempts = n as u8;
        result = attempt(
            state,
            snap,
            target,
            ctx,
            headers,
            Payload::Client(body),
            tried,
            timeout,
        )
        .await;
    }
}

/// Whether the upstream's retry budget lets one more attempt go (counted
/// as a retry when it does, as a refusal when it does not).
fn retry_allowed(state: &ProxyState, snap: &Snapshot, target: &Target<'_>) -> bool {
    let Some(u) = snap.stats.upstream(target.id, state.tools.id) else {
        return false;
    };
    let now_ms = state.tools.clock.monotonic_ms();
    if !retry::withdraw(u, target.spec.retry_budget, snap.server.workers, now_ms) {
        u.retry_budget_exhausted.inc();
        return false;
    }
    u.retries.inc();
    true
}

/// An attempt that another follows: its in-flight counts end here (not
/// with the response), its failure is counted, and outlier detection hears
/// what it showed.
fn end_attempt(
    state: &ProxyState,
    snap: &Snapshot,
    target: &Target<'_>,
    ctx: &RequestContext<'_>,
    id: (usize, usize),
    result: &Result<Response<ProxyBody>, ProxyError>,
) {
    let worker = state.tools.id;
    if let Some(e) = snap.stats.endpoint(id, worker) {
        e.in_flight.dec();
    }
    if let Some(u) = snap.stats.upstream(target.id, worker) {
        u.in_flight.dec();
    }
    if let Err(e) = result {
        count_failure(snap, worker, target.id, ctx, *e);
    }
    outlier::observe(
        &snap.stats,
        &snap.endpoint_states,
        target.spec,
        worker,
        id,
        observed(result),
    );
}

/// Upstream `id` of the snapshot as the exchange sees it: its spec, its
/// statistics, the worker count its limits are shared out over; the
/// request's arena for the response head's field list.
#[inline]
pub(super) fn target<'a>(snap: &'a Snapshot, id: usize, arena: &'a Bump) -> Target<'a> {
    Target {
        arena,
        spec: &snap.upstreams[id],
        id,
        stats: snap.stats.upstreams.get(id),
        workers: snap.server.workers,
        max_head: snap.server.max_header_bytes,
    }
}

/// The attempts of a request its route may retry: the body is read into a
/// buffer first (it was announced within `replay_limit`), then each attempt
/// goes to an endpoint not tried yet where one exists, after a jittered
/// exponential backoff, while the policy's conditions, the attempts and the
/// upstream's retry budget allow. The last attempt's outcome is the answer
/// (counted by the caller like any single attempt).
async fn forward_with_retries<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    target: &Target<'a>,
    policy: &RetryPolicy,
    ctx: &mut RequestContext<'a>,
    headers: &mut Headers<'a>,
    body: Option<ClientBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let worker = state.tools.id;
    let spec = target.spec;
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
    if let Some(r) = ctx.ids.route().and_then(|r| snap.stats.route(r, worker)) {
        r.bytes_in.add(data.len() as u64);
    }
    let timeout = policy
        .per_try_timeout
        .map_or(spec.response_header_timeout, |t| {
            t.min(spec.response_header_timeout)
        });
    let mut tried: u64 = 0;
    let mut n = 1;
    loop {
        ctx.log.attempts = n as u8;
        let mut attempt_headers = headers.clone();
        let payload = Payload::Replay(&data);
        let result = attempt(
            state,
            snap,
            target,
            ctx,
            &mut attempt_headers,
            payload,
            tried,
            timeout,
        )
        .await;
        // The endpoint this attempt went to.
        let Some(id) = ctx.ids.endpoint() else {
            return result;
        };
        tried |= 1u64 << (id.1 % 64);
        if !policy.retries(&result) || n >= policy.attempts {
            return result;
        }
        if !retry_allowed(state, snap, target) {
            return result;
        }
        end_attempt(state, snap, target, ctx, id, &result);
        drop(result);
        n += 1;
        let random = RandomState::new().hash_one((worker, n, Instant::now()));
        tokio::time::sleep(policy.backoff(n, random)).await;
    }
}

/// What an attempt sends: the client's body as it streams in (taken from
/// the `Option` when the connection is ready), or a buffered copy.
pub(super) enum Payload<'p> {
    Client(&'p mut Option<ClientBody>),
    Replay(&'p Bytes),
}

/// One attempt: the upstream peer (one not in `tried` where the balancer
/// offers one), the headers prepared for it, a connection, the request
/// sent, the response head awaited up to `timeout`, what it showed
/// observed. Returns the response head with a streaming body.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    target: &Target<'a>,
    ctx: &mut RequestContext<'a>,
    headers: &mut Headers<'a>,
    payload: Payload<'_>,
    tried: u64,
    timeout: Duration,
) -> Result<Response<ProxyBody>, ProxyError> {
    let index = upstream_peer(state, snap, target, ctx, headers, tried)?;
    let spec = target.spec;
    let endpoint = &spec.endpoints[index];
    let uri = headers::upstream_uri(ctx)?;

    // Connect: a pooled connection, or a new one (and when that began: an
    // idle HTTP/1.1 connection is taken at once, without a clock reading).
    // Before the headers are prepared for the endpoint, so that a request
    // whose connection failed goes to another one as it came.
    let (conn, reused, started) = exchange::acquire(&state.pool, target, index).await?;
    headers::prepare_headers(headers, ctx, &snap.server, endpoint);
    // The exchange's clock starts here: what follows until the head is
    // written is synchronous.
    let sent = Instant::now();
    ctx.log.upstream_connect = Some(started.map_or(Duration::ZERO, |t| sent - t));
    ctx.log.reused_connection = reused;
    if let Some(u) = snap.stats.upstream(target.id, state.tools.id) {
        if reused {
            u.pool_reused.inc();
        } else {
            u.pool_new.inc();
        }
    }

    // Send. The request is built and handed over in one synchronous step, so
    // it never sits in this future's state across an await. An HTTP/2 stream
    // the endpoint refuses can go again only with a body that can be sent
    // again: a buffered one, or none.
    let mut overrun = None;
    let (body, again) = match payload {
        Payload::Client(body) => {
            let Some(body) = body.take() else {
                return Err(ProxyError::ClientBody);
            };
            let meter = ctx.ids.route().map(|route| BytesIn {
                stats: snap.clone(),
                route,
                worker: state.tools.id,
            });
            let again = body.is_end_stream().then(Bytes::new);
            let mut body = RequestBody::new(body, spec.body_idle_timeout, meter);
            if let Some(limit) = ctx.body_limit {
                overrun = Some(body.limited(limit.max));
            }
            (body, again)
        }
        Payload::Replay(data) => (RequestBody::replay(data.clone()), Some(data.clone())),
    };
    // The headers move on as they are: an HTTP/1.1 upstream's head is
    // written from them (a wire head's fields copied once, from the
    // client's bytes), an HTTP/2 one takes them as a map.
    let request = exchange::Outgoing {
        method: ctx.method.clone(),
        uri,
        headers: std::mem::take(headers),
        body,
    };
    let observes = snap.balancing[target.id].observes();
    let exchanged = exchange::send(
        &state.pool,
        target,
        index,
        conn,
        request,
        again,
        timeout,
        (reused, sent),
    )
    .await;

    // Observe.
    let exchanged = match exchanged {
        Ok(done) => done,
        Err(_) if overrun.is_some_and(|o| o.happened()) => {
            // Whatever the connection says (an HTTP/2 stream reset), the
            // exchange failed because the body went over its limit.
            return Err(ProxyError::BodyTooLarge);
        }
        Err(e) => {
            if e == crate::upstream::Error::ResponseTimeout && observes {
                // For peak_ewma a timeout counts as a (long) latency.
                let balancers = &state.balancers;
                balancers.observe(snap.generation, target.id, index, timeout, sent + timeout);
            }
            return Err(e.into());
        }
    };
    let waited = sent.elapsed();
    ctx.log.upstream_header = Some(waited);
    if observes {
        let balancers = &state.balancers;
        balancers.observe(snap.generation, target.id, index, waited, sent + waited);
    }
    if let Some(u) = snap.stats.upstream(target.id, state.tools.id) {
        u.latency.observe(waited);
    }
    let key = target.key(index);
    Ok(match exchanged {
        Exchanged::Http1 { answer, conn } => {
            let mut head = answer.head;
            // Its hop-by-hop fields were left out as it was read
            // (`upstream/wire.rs`); the proxy's version, as `response_head`.
            head.version = http::Version::HTTP_11;
            let id = state.pool.lend_wire(key, spec.pool);
            let home: Rc<dyn Home> = state.pool.clone();
            let body = WireBody::new(conn, answer.framing, answer.keep_alive, (home, id));
            Response::from_parts(head, ProxyBody::wire(body, spec.body_idle_timeout))
        }
        Exchanged::Http2 { response, stream } => {
            let (mut head, incoming) = response.into_parts();
            headers::response_head(&mut head, ctx.arena());
            let lease = state.pool.lend(stream, key, spec.pool);
            Response::from_parts(
                head,
                ProxyBody::upstream(incoming, Some(lease), spec.body_idle_timeout),
            )
        }
    })
}

/// The upstream peer: picks an endpoint (by the request's hash key on a
/// hashed upstream; one not in `tried` where the balancer offers one),
/// notes it in the log and the metric ids, and counts the attempt there and
/// in the upstream until the answer's body ends (the request's outcome
/// counts them down). Returns the endpoint's index.
#[inline]
pub(super) fn upstream_peer(
    state: &ProxyState,
    snap: &Snapshot,
    target: &Target<'_>,
    ctx: &mut RequestContext<'_>,
    headers: &Headers<'_>,
    tried: u64,
) -> Result<usize, ProxyError> {
    let spec = target.spec;
    // The key of a hashed upstream, read in place from the request.
    let key = snap.balancing[target.id]
        .hash
        .as_ref()
        .and_then(|h| h.key.hash(ctx.path, ctx.client_addr.ip(), headers));
    let view = PickView {
        generation: snap.generation,
        upstreams: &snap.upstreams,
        policies: &snap.balancing,
        states: &snap.endpoint_states,
        stats: &snap.stats,
        worker: state.tools.id,
        now_ms: state.tools.clock.now_ms(),
    };
    let index = pick_untried(state, &view, target.id, spec.endpoints.len(), tried, key)?;
    ctx.log.endpoint = Some(spec.endpoints[index].addr);
    ctx.ids.set_endpoint(target.id, index);
    if let Some(e) = snap.stats.endpoint((target.id, index), state.tools.id) {
        e.requests.inc();
        e.in_flight.inc();
    }
    if let Some(u) = snap.stats.upstream(target.id, state.tools.id) {
        u.in_flight.inc();
    }
    Ok(index)
}

/// An endpoint index not in `tried` (a bit per index, modulo 64), where the
/// balancer offers one within a round of picks; else its next pick.
fn pick_untried(
    state: &ProxyState,
    view: &PickView<'_>,
    upstream: usize,
    endpoints: usize,
    tried: u64,
    key: Option<u64>,
) -> Result<usize, ProxyError> {
    let mut index = state.balancers.pick(view, upstream, key)?;
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
        index = state.balancers.pick(view, upstream, None)?;
    }
    Ok(index)
}

/// What an attempt's outcome tells outlier detection about its endpoint.
pub(super) fn observed(result: &Result<Response<ProxyBody>, ProxyError>) -> Observed {
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
pub(super) fn count_failure(
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
