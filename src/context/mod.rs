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

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use ipnet::IpNet;

use crate::limit::{ConnGuard, LendTables};
use crate::metrics::StatIds;
pub use body::{BodyError, ProxyBody};
pub(crate) use flow::plain_text;
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
    /// The authenticated identity (the *consumer*), once a middleware that
    /// authenticates the request has named it (`basic_auth`: the user;
    /// `api_key`: the key's consumer; or a `Custom` one). The access log
    /// writes it: combined's user field, JSON's `consumer`.
    pub consumer: Option<&'a str>,
    /// The per-request log record.
    pub log: LogInfo<'a>,
    /// Where the request counts in the metrics.
    pub(crate) ids: StatIds,
    /// The most body bytes the upstream may be sent, set by a
    /// `request_limits` middleware; `None` (every other route): the body
    /// is not counted.
    pub(crate) body_limit: Option<BodyLimit>,
    /// What a `cors` middleware found on the request, for its response
    /// phase (`Nothing` on every other route).
    pub(crate) cors: CorsSeen<'a>,
    /// The request's counts at `connection_limit` tables, given back when
    /// dropped: handed to the response body by the epilogue, so they end
    /// with the body (`None` on every other route).
    pub(crate) held: Option<ConnGuard>,
    /// The worker's handle of the request's snapshot, lent to the guards
    /// of `held` (set by the prologue; `None` only where no middleware runs).
    pub(crate) tables: Option<&'a dyn LendTables>,
    /// The client's address after `server.trusted_proxies`, once asked for
    /// ([`RequestContext::client_ip`]).
    client_ip: Option<IpAddr>,
    vars: BumpVec<'a, (&'a str, &'a str)>,
}

/// A request body's limit, and the policy middleware that set it (its
/// index in the snapshot's policies, for the refusal's counter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit {
    pub(crate) max: u64,
    pub(crate) policy: u16,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A `cors` middleware's verdict on the request's `Origin`, left for its
/// response phase: nothing to do (no `Origin`, no such middleware, or a
/// preflight answered already), refused, any origin (`*`), the listed
/// origin of that index, or an origin echoed as sent (bytes of the head,
/// or of the arena).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum CorsSeen<'a> {
    #[default]
    Nothing,
    Refused,
    Any,
    Listed(u16),
    Echo(&'a [u8]),
}

/// The walk of [`RequestContext::client_ip`] from `peer` leftwards over
/// the X-Forwarded-For lines (the last line first, each read from its end).
fn forwarded_client(peer: IpAddr, headers: &Headers<'_>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hop = peer;
    // Lines are few (bounded by the head's limits); walking them backwards
    // by index spares a buffer.
    let lines = headers.get_all(&X_FORWARDED_FOR).count();
    for i in (0..lines).rev() {
        let Some(line) = headers.get_all(&X_FORWARDED_FOR).nth(i) else {
            break;
        };
        for entry in line.rsplit(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                // An empty list element (RFC 9110 §5.6.1): skipped.
                continue;
            }
            let Some(ip) = forwarded_entry(entry) else {
                return hop;
            };
            if !is_trusted(&ip) {
                return ip;
            }
            hop = ip;
        }
    }
    hop
}

/// One X-Forwarded-For entry: an address, or an address with a port
/// (`10.1.2.3:5000`, `[::1]:5000`) or in brackets, as some proxies write.
fn forwarded_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<IpAddr>().ok()
        })?;
    Some(ip.to_canonical())
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
            consumer: None,
            log: LogInfo::new(Instant::now()),
            ids: StatIds::default(),
            body_limit: None,
            cors: CorsSeen::Nothing,
            held: None,
            tables: None,
            client_ip: None,
            vars: BumpVec::new_in(arena),
        }
    }

    /// The client's address as the gateway believes it: the TCP peer, or,
    /// when the peer is in `trusted` (`server.trusted_proxies`), the
    /// address its `X-Forwarded-For` names. The list is read from the
    /// right (the nearest hop) and trusted proxies are skipped: the first
    /// address not in `trusted` is the client (nginx's `real_ip_recursive
    /// on`); when every entry is trusted, the leftmost is; an entry that is
    /// not an address ends the walk at the last trusted hop before it. An
    /// IPv4-mapped IPv6 address is the IPv4 address. Worked out on first
    /// use and kept (no allocation); every caller passes the snapshot's
    /// one list.
    pub(crate) fn client_ip(&mut self, headers: &Headers<'_>, trusted: &[IpNet]) -> IpAddr {
        if let Some(ip) = self.client_ip {
            return ip;
        }
        let ip = forwarded_client(self.client_addr.ip().to_canonical(), headers, trusted);
        self.client_ip = Some(ip);
        ip
    }

    /// Keeps `guard` (a `connection_limit` count) for the rest of the
    /// request, with those already held.
    pub(crate) fn hold(&mut self, guard: ConnGuard) {
        self.held = Some(guard.chain(self.held.take()));
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
    pub fn set_var(&mut self, key: &'a str, value: &'a str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
        let mut map = http::HeaderMap::new();
        for line in xff {
            map.append(&X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        let headers = Headers::from_map(map);
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let peer: IpAddr = peer.parse().unwrap();
        forwarded_client(peer.to_canonical(), &headers, &trusted)
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxies = ["10.0.0.0/8"];
        // An untrusted peer's header is ignored.
        assert_eq!(
            client("192.0.2.1", &["203.0.113.7"], &proxies),
            ip("192.0.2.1")
        );
        // A trusted peer: the nearest untrusted entry.
        let chain = ["198.51.100.1, 203.0.113.7, 10.0.0.5"];
        assert_eq!(client("10.0.0.2", &chain, &proxies), ip("203.0.113.7"));
        // Several lines are one list, the last line nearest.
        let lines = ["198.51.100.1", "203.0.113.7:4711, 10.0.0.5"];
        assert_eq!(client("10.0.0.2", &lines, &proxies), ip("203.0.113.7"));
        // All trusted: the leftmost; no header: the peer.
        assert_eq!(
            client("10.0.0.2", &["10.1.1.1, 10.0.0.5"], &proxies),
            ip("10.1.1.1")
        );
        assert_eq!(client("10.0.0.2", &[], &proxies), ip("10.0.0.2"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client("10.0.0.2", &["203.0.113.7, junk"], &proxies),
            ip("10.0.0.2")
        );
        // Mapped addresses are IPv4, brackets and empty elements are fine.
        assert_eq!(
            client("::ffff:10.0.0.2", &["[2001:db8::1], ,"], &proxies),
            ip("2001:db8::1")
        );
        assert_eq!(
            client("::ffff:10.0.0.2", &["::ffff:192.0.2.9"], &proxies),
            ip("192.0.2.9")
        );
    }
}
