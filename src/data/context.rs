//! The per-request context: what the data plane knows about one request, borrowed
//! from the request itself and from the snapshot, with scratch in the request's
//! arena. It lives in the request's future and crosses every `.await`.
//!
//! Soundness comes from ownership, not `unsafe`: the handler future owns the
//! request parts, the arena and the snapshot handle, and the context borrows them
//! for `'a`, a lifetime the compiler checks across the awaits of that future.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use crate::config::Route;
use crate::data::worker::WorkerLocal;
use crate::metrics::StatIds;

/// Everything the proxy knows about one request while it is handled.
pub struct RequestContext<'a> {
    arena: &'a Bump,
    pub(crate) local: &'a WorkerLocal,
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
    /// The route that matched, once routing is done.
    pub route: Option<&'a Route>,
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

/// What a TLS handshake settled, for middleware and the access log. Built once
/// per connection when its handshake ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI), lowercase.
    pub server_name: Option<Box<str>>,
    /// The protocol version: `"TLSv1.2"` or `"TLSv1.3"`.
    pub version: &'static str,
    /// The application protocol chosen by ALPN: `"h2"` or `"http/1.1"`.
    pub alpn: Option<&'static str>,
    /// The verified client certificate's subject (e.g. `CN=client, O=Example`),
    /// when the listener verifies client certificates and the client sent one.
    pub client_subject: Option<Box<str>>,
}

/// The log record of one request: filled in as the request moves on, read by the
/// access log and the error paths.
#[derive(Debug, Clone, Copy)]
pub struct LogInfo<'a> {
    /// When the request head was handed to the proxy.
    pub start: Instant,
    /// The matched route's name.
    pub route: &'a str,
    /// The upstream's name.
    pub upstream: &'a str,
    /// The endpoint the request was sent to.
    pub endpoint: Option<SocketAddr>,
    /// Whether the upstream connection came from the keep-alive pool.
    pub reused_connection: bool,
    /// Time to get an upstream connection (pool or connect).
    pub upstream_connect: Option<Duration>,
    /// Time from sending the request to the upstream's response head.
    pub upstream_header: Option<Duration>,
    /// The status sent to the client.
    pub status: u16,
    /// Why the proxy answered itself (error cause), if it did.
    pub cause: Option<&'static str>,
    /// Attempts made upstream (more than 1 when the request was retried).
    pub attempts: u8,
    /// The client's User-Agent, copied into the arena for the access log.
    pub user_agent: Option<&'a str>,
    /// The client's Referer, copied into the arena for the access log.
    pub referer: Option<&'a str>,
}

/// The request that will be sent upstream. Its headers are the client's,
/// moved (not cloned) out of the incoming request; middlewares edit them.
pub struct UpstreamRequest {
    /// Headers to send upstream.
    pub headers: HeaderMap,
}

impl<'a> RequestContext<'a> {
    pub(crate) fn new(
        arena: &'a Bump,
        local: &'a WorkerLocal,
        parts: &'a http::request::Parts,
        host: Option<&'a str>,
        client_addr: SocketAddr,
    ) -> Self {
        let path = parts.uri.path();
        let query = parts.uri.query();
        RequestContext {
            arena,
            local,
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            path,
            query,
            host,
            client_addr,
            tls: None,
            route: None,
            params: BumpVec::new_in(arena),
            upstream_path: path,
            upstream_query: query,
            request_id: None,
            log: LogInfo {
                start: Instant::now(),
                route: "",
                upstream: "",
                endpoint: None,
                reused_connection: false,
                upstream_connect: None,
                upstream_header: None,
                status: 0,
                cause: None,
                attempts: 1,
                user_agent: None,
                referer: None,
            },
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
        self.local.id
    }
}
