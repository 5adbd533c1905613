//! What changes between the client's request and the upstream's: hop-by-hop
//! headers removed (RFC 9110 §7.6.1), X-Forwarded-* added, Host kept or set, and
//! the request target in origin form (rewritten if a middleware asked for it).

use std::io::Write as _;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri};

use super::error::ProxyError;
use crate::config::ServerSettings;
use crate::context::RequestContext;
use crate::upstream::EndpointSpec;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    PROXY_CONNECTION,
    KEEP_ALIVE,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every field named by `Connection`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, arena: &Bump) {
    // Most messages carry none of them, or only `Connection`: one pass over the
    // names (cheap comparisons) instead of a hashed removal per listed name.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if let header::Entry::Occupied(entry) = headers.entry(header::CONNECTION) {
        // The named fields are collected first: the map is borrowed by the drain.
        let (_, values) = entry.remove_entry_mult();
        let mut listed: BumpVec<'_, HeaderValue> = BumpVec::new_in(arena);
        listed.extend(values);
        for value in &listed {
            let Ok(text) = value.to_str() else { continue };
            for name in text.split(',') {
                let name = name.trim();
                if !name.is_empty() {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The hop-by-hop removal for a message that switches protocols (an
/// `Upgrade` request the route allows, or the 101 that answers it): every
/// hop-by-hop field goes as for any message, then `Connection: upgrade` and
/// `Upgrade: upgrade` are set, since the next hop must see the switch too.
pub(crate) fn remove_hop_by_hop_for_upgrade(
    headers: &mut HeaderMap,
    arena: &Bump,
    upgrade: HeaderValue,
) {
    remove_hop_by_hop(headers, arena);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Readies the client's headers for the upstream.
pub(crate) fn prepare_headers(
    headers: &mut HeaderMap,
    ctx: &RequestContext<'_>,
    server: &ServerSettings,
    endpoint: &EndpointSpec,
) {
    // Hop-by-hop fields were removed before the middleware chain ran (see
    // `handler::request_filter`), so the fields middlewares added stay.
    //
    // Host becomes the host the route was chosen by: a target's authority wins
    // over a Host header (RFC 9112 §3.2.2), and HTTP/2 clients send only
    // `:authority` while HTTP/1.1 needs Host.
    if ctx.uri.authority().is_some() || !headers.contains_key(header::HOST) {
        if let Some(host) = ctx.host {
            headers.insert(header::HOST, ctx.tools.slab.value(&[host.as_bytes()]));
        }
    }
    if server.add_forwarded_headers {
        add_forwarded(headers, ctx, server);
    }
    if !server.preserve_host {
        headers.insert(header::HOST, endpoint.host_value.clone());
    }
}

/// X-Forwarded-For/-Proto/-Host. From a trusted proxy the incoming values are
/// kept (and the peer appended to X-Forwarded-For); from anyone else they are
/// replaced, so a client cannot forge them.
fn add_forwarded(headers: &mut HeaderMap, ctx: &RequestContext<'_>, server: &ServerSettings) {
    let slab = &ctx.tools.slab;
    let peer = ctx.client_addr.ip();
    let trusted = server.trusted_proxies.iter().any(|net| net.contains(&peer));
    let mut ip = [0u8; 48];
    let ip_len = format_ip(peer, &mut ip);
    let ip = &ip[..ip_len];

    let xff = if trusted && headers.contains_key(&X_FORWARDED_FOR) {
        // Several field lines are one comma-separated list (RFC 9110 §5.3).
        let mut parts: BumpVec<'_, &[u8]> = BumpVec::new_in(ctx.arena());
        for prior in headers.get_all(&X_FORWARDED_FOR) {
            parts.extend_from_slice(&[prior.as_bytes(), b", "]);
        }
        parts.push(ip);
        slab.value(&parts)
    } else {
        slab.value(&[ip])
    };
    // `insert` also drops any extra X-Forwarded-For lines a client sent.
    headers.insert(X_FORWARDED_FOR, xff);
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if ctx.tls.is_some() { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match headers.get(header::HOST) {
            Some(host) => {
                let host = host.clone();
                headers.insert(X_FORWARDED_HOST, host);
            }
            None => match ctx.host {
                Some(host) => {
                    headers.insert(X_FORWARDED_HOST, slab.value(&[host.as_bytes()]));
                }
                None => {
                    headers.remove(X_FORWARDED_HOST);
                }
            },
        }
    }
}

/// Writes `ip` as text into `out` and returns the length. IPv4 by hand: this
/// runs for every request, and `Display` costs about a thousand instructions.
fn format_ip(ip: std::net::IpAddr, out: &mut [u8; 48]) -> usize {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    out[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    out[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                out[n] = b'0' + octet % 10;
                n += 1;
            }
            n
        }
        std::net::IpAddr::V6(_) => {
            let mut cursor = &mut out[..];
            let _ = write!(cursor, "{ip}");
            48 - cursor.len()
        }
    }
}

/// The upstream request target in origin form (`/path?query`).
pub(crate) fn upstream_uri(ctx: &RequestContext<'_>) -> Result<Uri, ProxyError> {
    let unchanged = std::ptr::eq(ctx.upstream_path, ctx.path) && ctx.upstream_query == ctx.query;
    if unchanged {
        if ctx.uri.scheme().is_none() && ctx.uri.authority().is_none() {
            return Ok(ctx.uri.clone());
        }
        if let Some(pq) = ctx.uri.path_and_query() {
            return Ok(Uri::from(pq.clone()));
        }
    }
    let bytes = match ctx.upstream_query {
        Some(q) => ctx
            .tools
            .slab
            .bytes(&[ctx.upstream_path.as_bytes(), b"?", q.as_bytes()]),
        None => ctx.tools.slab.bytes(&[ctx.upstream_path.as_bytes()]),
    };
    PathAndQuery::from_maybe_shared(bytes)
        .map(Uri::from)
        .map_err(|_| ProxyError::BadRewrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_format_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.0.100.9",
            "::1",
            "2001:db8::1",
        ] {
            let parsed: std::net::IpAddr = ip.parse().unwrap();
            let mut out = [0u8; 48];
            let n = format_ip(parsed, &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), parsed.to_string());
        }
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_go() {
        let arena = Bump::new();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret , x-other"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("x-third"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("x-third", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, &arena);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade_only() {
        let arena = Bump::new();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket, h2c"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("sec-websocket-key", HeaderValue::from_static("k"));
        remove_hop_by_hop_for_upgrade(&mut h, &arena, HeaderValue::from_static("websocket"));
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert!(h.contains_key("sec-websocket-key"));
    }
}
