//! What every phase sees: the per-request context, borrowed from the request
//! itself and from the snapshot, with scratch in the request's arena; the
//! request's headers, one interface over a map and an HTTP/1.1 head; the
//! bodies; the phase outcome; the log record; the TLS facts of the
//! connection; and the tools a worker lends its requests. It lives in the
//! request's future and crosses every `.await`.
//!
//! Soundness comes from ownership, not `unsafe`: the request future owns the
//! request parts, the arena and the snapshot handle, and the context borrows
//! them for `'a`, a lifetime the compiler checks across the awaits of that
//! future. Nothing here imports a layer above it: the router, the
//! middlewares, the balancers and the upstream side all build on it.

pub(crate) mod arena;
pub(crate) mod body;
mod flow;
mod headers;
mod log_info;
mod tls_info;
pub(crate) mod tools;

use std::net::SocketAddr;
use std::time::Instant;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::{HeaderValue, Method, Uri, Version};

use crate::metrics::StatIds;
pub use body::{BodyError, ProxyBody};
pub use flow::Flow;
pub(crate) use headers::visible_str;
pub use headers::{Field, HeaderKey, Headers};
pub use log_info::LogInfo;
pub(crate) use tls_info::ConnTls;
pub use tls_info::TlsInfo;
use tools::WorkerTools;

/// Everything the proxy knows about one request while it is handled.
pub struct RequestContext<'a> {
    arena: &'a Bump,
    /// What the worker lends the request (slab, ids, clock, log buffers).
    pub(crate) tools: &'a WorkerTools,
    /// The request method, borrowed from the request.
    pub method: &'a Method,
    /// The request target as received, borrowed from the request.
    pub uri: &'a Uri,
    /// The client's HTTP version.
    pub version: Version,
    /// The path as received (not decoded).
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: Option<&'a str>,
    /// The host the client asked for (Host header or `:authority`), port included.
    pub host: Option<&'a str>,
    /// The client's socket address (the TCP peer).
    pub client_addr: SocketAddr,
    /// The TLS session the request came over (`None`: plain HTTP). Shared by
    /// the requests of one connection, never copied per request.
    pub tls: Option<&'a TlsInfo>,
    /// Parameters captured by the route's path pattern.
    pub params: BumpVec<'a, (&'a str, &'a str)>,
    /// The path that will be sent upstream; rewrites replace it.
    pub upstream_path: &'a str,
    /// The query that will be sent upstream.
    pub upstream_query: Option<&'a str>,
    /// The request id, once the request-id middleware has set it.
    pub request_id: Option<HeaderValue>,
    /// The per-request log record.
    pub log: LogInfo<'a>,
    /// Where the request counts in the metrics.
    pub(crate) ids: StatIds,
    vars: BumpVec<'a, (&'static str, &'a str)>,
}

/// The request that will be sent upstream. Its headers are the client's,
/// moved (not cloned) out of the incoming request, or views of its HTTP/1.1
/// head with the edits beside them; middlewares edit them.
pub struct UpstreamRequest<'a> {
    /// Headers to send upstream.
    pub headers: Headers<'a>,
}

impl<'a> RequestContext<'a> {
    pub(crate) fn new(
        arena: &'a Bump,
        tools: &'a WorkerTools,
        parts: &'a http::request::Parts,
        host: Option<&'a str>,
        client_addr: SocketAddr,
    ) -> Self {
        let path = parts.uri.path();
        let query = parts.uri.query();
        RequestContext {
            arena,
            tools,
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            path,
            query,
            host,
            client_addr,
            tls: None,
            params: BumpVec::new_in(arena),
            upstream_path: path,
            upstream_query: query,
            request_id: None,
            log: LogInfo::new(Instant::now()),
            ids: StatIds::default(),
            vars: BumpVec::new_in(arena),
        }
    }

    /// The request's arena, for per-request scratch that dies with the request.
    pub fn arena(&self) -> &'a Bump {
        self.arena
    }

    /// Copies `s` into the arena.
    pub fn alloc_str(&self, s: &str) -> &'a str {
        self.arena.alloc_str(s)
    }

    /// A parameter captured by the route's path pattern.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }

    /// Sets a per-request variable (for passing values between phases).
    pub fn set_var(&mut self, key: &'static str, value: &'a str) {
        if let Some(slot) = self.vars.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.vars.push((key, value));
        }
    }

    /// A per-request variable set by an earlier phase.
    pub fn var(&self, key: &str) -> Option<&'a str> {
        self.vars.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }

    /// The worker this request runs on (0-based).
    pub fn worker_id(&self) -> usize {
        self.tools.id
    }

    /// The name of the route that matched, once routing is done.
    pub fn route_name(&self) -> Option<&'a str> {
        Some(self.log.route).filter(|r| !r.is_empty())
    }
}
