//! The prologue and epilogue of a request, written once ([`serve`]) and run
//! around the phases of each kind of request ([`Path`]: the ordinary one and
//! the upgrade): take an arena, split the request into the parts the context
//! borrows and the headers that move upstream, check and find the host (a
//! head refused for its Host is answered without the phases), build the
//! context; and, once the answer is known, run the response filter and hand
//! the response body what it counts into when it ends and the request's
//! count in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::context::body::ClientBody;
use bumpalo::Bump;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::error::ProxyError;
use super::handler::{refused, refused as refused_head, response_filter, Path, Plain};
use super::{headers, ProxyState};
use crate::config::SnapshotRef;
use crate::context::body::Tracked;
use crate::context::{ConnTls, Headers, ProxyBody, RequestContext, UpstreamRequest};
use crate::http1::HeadError;
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
/// [`UpstreamRequest`], the client's Host checked (`headers.rs`
/// `check_host`), the host from the URI's authority (HTTP/2, an
/// absolute-form target) or the Host header, whose value is held by a
/// counted handle (no copy) since the headers move on; then, in the
/// request's future, an arena from the worker's pool and the context
/// borrowing all of it. A plain function, so the request is split before
/// the future exists: the future keeps the parts, not the request they came
/// from (an async fn keeps its arguments for its whole life). A head the
/// check refuses is answered here and then, without the phases
/// ([`refuse`]): its answer is a ready future, and the request's future
/// keeps no verdict beside its state.
pub(super) fn serve<P: Path, T: ConnTls>(
    r: Received,
    tls: T,
    req: Request<Incoming>,
) -> Served<impl Future<Output = Response<ProxyBody>>> {
    let (mut parts, body) = req.into_parts();
    let taken = P::take(&mut parts);
    let map = std::mem::take(&mut parts.headers);
    let hosts = map.get_all(header::HOST);
    let (host, refused) = match headers::check_host(parts.version, &parts.uri, hosts) {
        Ok(host) => (host, None),
        // Refused, but still routed by the host it named, to count it.
        Err(e) => (map.get(header::HOST), Some(e)),
    };
    let host_header = match parts.uri.authority() {
        Some(_) => None,
        None => host.cloned(),
    };
    let upstream = UpstreamRequest {
        headers: Headers::from_map(map),
    };
    let head = Head {
        parts,
        host_header,
        upstream,
        body: Some(ClientBody::Hyper(body)),
    };
    match refused {
        None => Served::Run {
            inner: run::<P, T>(r, tls, head, taken),
        },
        Some(e) => Served::Refused {
            inner: std::future::ready(refuse(r, &tls, head, e)),
        },
    }
}

pin_project! {
    /// The future of a request the prologue took in: the phases and the
    /// epilogue, or the answer to a refused head, already known (no larger
    /// than the first, so this enum is the size of the first).
    #[project = ServedProj]
    pub(super) enum Served<F> {
        Run { #[pin] inner: F },
        Refused { inner: std::future::Ready<Response<ProxyBody>> },
    }
}

impl<F: Future<Output = Response<ProxyBody>>> Future for Served<F> {
    type Output = Response<ProxyBody>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServedProj::Run { inner } => inner.poll(cx),
            ServedProj::Refused { inner } => Pin::new(inner).poll(cx),
        }
    }
}

/// The request head as the prologue split it (hyper's: the headers are a
/// map, owned).
struct Head {
    parts: Parts,
    host_header: Option<HeaderValue>,
    upstream: UpstreamRequest<'static>,
    body: Option<ClientBody>,
}

/// The host a request names: its target's authority, else its Host.
fn host<'h>(parts: &'h Parts, host_header: &'h Option<HeaderValue>) -> Option<&'h str> {
    match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => host_header.as_ref().and_then(|v| v.to_str().ok()),
    }
}

async fn run<P: Path, T: ConnTls>(
    r: Received,
    tls: T,
    mut head: Head,
    taken: P::Taken,
) -> Response<ProxyBody> {
    let arena = r.state.arenas.take();
    let host = host(&head.parts, &head.host_header);
    let parts = &head.parts;
    let mut ctx = RequestContext::new(&arena, &r.state.tools, parts, host, r.client);
    ctx.tls = tls.info();
    let (state, snapshot) = (&r.state, &r.snapshot);
    ctx.tables = Some(snapshot);
    // Moved out (a few words): fields the phases add borrow the arena, so
    // the headers' lifetime is the arena's, not the `'static` of the head.
    let mut upstream = head.upstream;
    let body = &mut head.body;
    let phases = P::phases(state, snapshot, &mut ctx, parts, &mut upstream, body, taken);
    let (mut response, chain) = phases.await;
    response_filter(chain, &mut ctx, &mut response).await;
    epilogue(&r.state, &r.snapshot, &mut ctx, &mut response, r.tracked);
    response
}

/// A refused head, from the prologue to the epilogue in one synchronous
/// step: the context as for any request, then `handler.rs` `refused`
/// answers 400 (no phase runs, so no response filter either).
fn refuse<T: ConnTls>(r: Received, tls: &T, head: Head, e: ProxyError) -> Response<ProxyBody> {
    let arena = r.state.arenas.take();
    let host = host(&head.parts, &head.host_header);
    let mut ctx = RequestContext::new(&arena, &r.state.tools, &head.parts, host, r.client);
    ctx.tls = tls.info();
    let mut response = refused(&r.snapshot, &mut ctx, &head.upstream, e);
    epilogue(&r.state, &r.snapshot, &mut ctx, &mut response, r.tracked);
    response
}

/// The epilogue: the answer is known; unless the request matched no route,
/// it counts into its route's figures when its body ends, and its count in
/// flight (and its `connection_limit` counts) ride in the body too (both set after the last await of the
/// request, so they add nothing to the future).
#[inline(always)]
fn epilogue(
    state: &ProxyState,
    snapshot: &SnapshotRef,
    ctx: &mut RequestContext<'_>,
    response: &mut Response<ProxyBody>,
    tracked: Tracked,
) {
    // Requests in flight at a `connection_limit` end with the body.
    if ctx.held.is_some() {
        response.body_mut().set_held(ctx.held.take());
    }
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

/// A request read by the server side of our own (`worker/http1.rs`): its
/// parts (method, target, version; no header map), its fields as views of
/// the received head in the worker's arena, and its body. Everything it
/// borrows lives in the worker's connection loop for the request's life.
pub(crate) struct WireRequest<'a> {
    pub(crate) arena: &'a Bump,
    pub(crate) parts: &'a Parts,
    /// The fields, as the phases see and edit them.
    pub(crate) upstream: UpstreamRequest<'a>,
    /// The codec's Host verdict (`http1::RequestHead::host`): the one Host
    /// value, checked, or why the head is refused (here, after routing).
    pub(crate) host: Result<Option<&'a str>, HeadError>,
    /// Taken by the exchange that forwards it.
    pub(crate) body: Option<ClientBody>,
}

/// The proxy's refusal for the codec's Host verdict: the same 400s, bodies
/// and log causes as `headers.rs` `check_host` gives hyper's requests.
fn host_refusal(e: HeadError) -> ProxyError {
    match e {
        HeadError::MissingHost => ProxyError::MissingHost,
        HeadError::RepeatedHost => ProxyError::RepeatedHost,
        HeadError::HostMismatch => ProxyError::HostMismatch,
        _ => ProxyError::InvalidHost,
    }
}

/// An ordinary request of our own HTTP/1.1 path, top to bottom: the same
/// prologue (Host checked), phases and epilogue as hyper's requests, over
/// the head's byte views instead of a header map.
///
/// The request is lent, not moved: it stays in the connection loop's
/// future, once, and this one keeps a reference (each level an argument is
/// moved through is a copy, and an async fn keeps its arguments' slots for
/// its whole life).
pub(crate) async fn serve_wire<'a, T: ConnTls>(
    (state, snapshot): (&'a Rc<ProxyState>, &'a SnapshotRef),
    tracked: Tracked,
    client: SocketAddr,
    tls: &'a T,
    request: &mut WireRequest<'a>,
) -> Response<ProxyBody> {
    let (arena, parts) = (request.arena, request.parts);
    let (host, refused) = match request.host {
        Ok(host) => (host, None),
        Err(e) => {
            // Routed on the first Host line, if any, then refused.
            let first = request.upstream.headers.get(header::HOST);
            let first = first.and_then(|h| std::str::from_utf8(h).ok());
            (first.map(|h| &*arena.alloc_str(h)), Some(host_refusal(e)))
        }
    };
    let host = match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => host,
    };
    let mut ctx = RequestContext::new(arena, &state.tools, parts, host, client);
    ctx.tls = tls.info();
    ctx.tables = Some(snapshot);
    if let Some(e) = refused {
        let mut response = refused_head(snapshot, &mut ctx, &request.upstream, e);
        epilogue(state, snapshot, &mut ctx, &mut response, tracked);
        return response;
    }
    let (upstream, body) = (&mut request.upstream, &mut request.body);
    let phases = Plain::phases(state, snapshot, &mut ctx, parts, upstream, body, ());
    let (mut response, chain) = phases.await;
    response_filter(chain, &mut ctx, &mut response).await;
    epilogue(state, snapshot, &mut ctx, &mut response, tracked);
    response
}
