//! The prologue and epilogue of a request, written once and shared by the
//! ordinary path and the upgrade path: take an arena, split the request into
//! the parts the context borrows and the headers that move upstream, find
//! the host, build the context; and, once the answer is known, hand the
//! response body what it counts into when it ends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use http::request::Parts;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::{handler, ProxyState};
use crate::config::SnapshotRef;
use crate::context::arena::PooledArena;
use crate::context::{ConnTls, ProxyBody, RequestContext, UpstreamRequest};
use crate::metrics::RequestOutcome;

/// The ordinary request, top to bottom: prologue, the phases, epilogue.
pub(super) async fn proxy<T: ConnTls>(
    state: Rc<ProxyState>,
    snapshot: SnapshotRef,
    client: SocketAddr,
    tls: T,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (owned, upstream, body) = Owned::accept(&state, req);
    let mut ctx = owned.context(&state, client, tls.info());
    let mut response = handler::process(&state, &snapshot, &mut ctx, upstream, Some(body)).await;
    epilogue(&state, &snapshot, &ctx, &mut response);
    Ok(response)
}

/// What a request's future owns for its context to borrow: the arena, the
/// request head's parts (method, URI, extensions) and the Host header's
/// value. The headers themselves move on, into the [`UpstreamRequest`].
pub(super) struct Owned<'s> {
    arena: PooledArena<'s>,
    pub(super) parts: Parts,
    /// HTTP/1.1 carries the host in the Host header, whose value is held by a
    /// counted handle (no copy) since the headers move on; HTTP/2 (and an
    /// absolute-form target) carries it in the URI.
    host_header: Option<HeaderValue>,
}

impl<'s> Owned<'s> {
    /// The prologue: an arena from the worker's pool, and the request split
    /// into what stays (parts), what moves upstream (headers) and the body.
    pub(super) fn accept(
        state: &'s ProxyState,
        req: Request<Incoming>,
    ) -> (Self, UpstreamRequest, Incoming) {
        let arena = state.arenas.take();
        let (mut parts, body) = req.into_parts();
        let upstream = UpstreamRequest {
            headers: std::mem::take(&mut parts.headers),
        };
        let host_header = match parts.uri.authority() {
            Some(_) => None,
            None => upstream.headers.get(header::HOST).cloned(),
        };
        let owned = Owned {
            arena,
            parts,
            host_header,
        };
        (owned, upstream, body)
    }

    /// The request's context, borrowing from `self` for the life of the
    /// request's future.
    pub(super) fn context<'a>(
        &'a self,
        state: &'a ProxyState,
        client: SocketAddr,
        tls: Option<&'a crate::context::TlsInfo>,
    ) -> RequestContext<'a> {
        let host = match self.parts.uri.authority() {
            Some(authority) => Some(authority.as_str()),
            None => self.host_header.as_ref().and_then(|v| v.to_str().ok()),
        };
        let mut ctx = RequestContext::new(&self.arena, &state.tools, &self.parts, host, client);
        ctx.tls = tls;
        ctx
    }
}

/// The epilogue: the answer is known; unless the request matched no route,
/// it counts into its route's figures when its body ends (built after the
/// last await of the request, so its size never adds to the future's).
pub(super) fn epilogue(
    state: &ProxyState,
    snapshot: &SnapshotRef,
    ctx: &RequestContext<'_>,
    response: &mut Response<ProxyBody>,
) {
    if ctx.ids.route().is_none() {
        return;
    }
    let outcome = RequestOutcome {
        stats: snapshot.clone(),
        worker: state.tools.id,
        ids: ctx.ids,
        status: response.status().as_u16(),
        started: ctx.log.start,
    };
    response.body_mut().set_outcome(outcome);
}
