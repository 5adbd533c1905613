//! The prologue and epilogue of a request, written once ([`serve`]) and run
//! around the phases of each kind of request ([`Path`]: the ordinary one and
//! the upgrade): take an arena, split the request into the parts the context
//! borrows and the headers that move upstream, find the host, build the
//! context; and, once the answer is known, run the response filter and hand
//! the response body what it counts into when it ends and the request's
//! count in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;

use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::handler::{response_filter, Path};
use super::ProxyState;
use crate::config::SnapshotRef;
use crate::context::body::Tracked;
use crate::context::{ConnTls, ProxyBody, RequestContext, UpstreamRequest};
use crate::metrics::RequestOutcome;

/// What the worker hands the proxy with each request: its per-worker state,
/// the snapshot the request keeps to the end, the request's count in flight
/// and the client's address.
pub(super) struct Received {
    pub(super) state: Rc<ProxyState>,
    pub(super) snapshot: SnapshotRef,
    pub(super) tracked: Tracked,
    pub(super) client: SocketAddr,
}

/// A request, top to bottom: prologue, the phases of `P`, epilogue.
///
/// The prologue: the client's headers moved (not copied) into the
/// [`UpstreamRequest`], the host from the URI's authority (HTTP/2, an
/// absolute-form target) or the Host header, whose value is held by a
/// counted handle (no copy) since the headers move on; then, in the
/// request's future, an arena from the worker's pool and the context
/// borrowing all of it. A plain function, so the request is split before
/// the future exists: the future keeps the parts, not the request they came
/// from (an async fn keeps its arguments for its whole life).
pub(super) fn serve<P: Path, T: ConnTls>(
    r: Received,
    tls: T,
    req: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> {
    let (mut parts, body) = req.into_parts();
    let taken = P::take(&mut parts);
    let upstream = UpstreamRequest {
        headers: std::mem::take(&mut parts.headers),
    };
    let host_header = match parts.uri.authority() {
        Some(_) => None,
        None => upstream.headers.get(header::HOST).cloned(),
    };
    let head = Head {
        parts,
        host_header,
        upstream,
        body: Some(body),
    };
    run::<P, T>(r, tls, head, taken)
}

/// The request head as the prologue split it.
struct Head {
    parts: Parts,
    host_header: Option<HeaderValue>,
    upstream: UpstreamRequest,
    body: Option<Incoming>,
}

async fn run<P: Path, T: ConnTls>(
    r: Received,
    tls: T,
    mut head: Head,
    taken: P::Taken,
) -> Response<ProxyBody> {
    let arena = r.state.arenas.take();
    let host = match head.parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => head.host_header.as_ref().and_then(|v| v.to_str().ok()),
    };
    let parts = &head.parts;
    let mut ctx = RequestContext::new(&arena, &r.state.tools, parts, host, r.client);
    ctx.tls = tls.info();
    let (state, snapshot) = (&r.state, &r.snapshot);
    let (upstream, body) = (&mut head.upstream, &mut head.body);
    let phases = P::phases(state, snapshot, &mut ctx, parts, upstream, body, taken);
    let (mut response, chain) = phases.await;
    response_filter(chain, &mut ctx, &mut response).await;
    epilogue(&r.state, &r.snapshot, &ctx, &mut response, r.tracked);
    response
}

/// The epilogue: the answer is known; unless the request matched no route,
/// it counts into its route's figures when its body ends, and its count in
/// flight rides in the body too (both set after the last await of the
/// request, so they add nothing to the future).
#[inline(always)]
fn epilogue(
    state: &ProxyState,
    snapshot: &SnapshotRef,
    ctx: &RequestContext<'_>,
    response: &mut Response<ProxyBody>,
    tracked: Tracked,
) {
    if ctx.ids.route().is_some() {
        let outcome = RequestOutcome {
            stats: snapshot.clone(),
            worker: state.tools.id,
            ids: ctx.ids,
            status: response.status().as_u16(),
            started: ctx.log.start,
        };
        response.body_mut().set_outcome(outcome);
    }
    tracked.attach(response.body_mut());
}
