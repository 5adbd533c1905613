//! What changes between the client's request and the upstream's: the
//! client's Host checked (one, valid, agreeing with the target), hop-by-hop
//! headers removed (RFC 9110 §7.6.1), X-Forwarded-* added, Host kept or set,
//! and the request target in origin form (rewritten if a middleware asked for
//! it); and between the upstream's response head and the client's: its
//! hop-by-hop headers removed, the proxy's own HTTP version.

use std::io::Write as _;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;

use http::{HeaderMap, HeaderValue, Uri, Version};

use super::error::ProxyError;
use crate::config::ServerSettings;
use crate::context::{visible_str, Headers, RequestContext};
use crate::http1::{same_authority, split_host};
use crate::upstream::EndpointSpec;

// Statics, not consts: a field added from one borrows its name's text for
// the request's lifetime (`Headers::insert_lasting`).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static HOST: HeaderName = header::HOST;
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

/// The client's Host, checked before anything reads it: at most one field
/// line, and one on HTTP/1.1 (RFC 9112 §3.2: HTTP/1.0 may omit it; HTTP/2
/// needs `:authority` or Host, RFC 9113 §8.3.1); a valid `host[:port]`,
/// and so is the target's authority; and where the target has a scheme and
/// an authority (absolute form, HTTP/2), a Host naming the same host and
/// port (scheme-based normalization, RFC 9113 §8.3.1: case, default port).
/// A CONNECT's authority-form target has no scheme and is not compared
/// (RFC 9110 §9.3.6). Takes the Host field lines (a map's `get_all`, or
/// [`Headers::get_all`]) and returns the one there is, if any: one map
/// lookup, as a plain `get` would be, and a pass over the host's bytes.
pub(crate) fn check_host<V: AsRef<[u8]>>(
    version: Version,
    uri: &Uri,
    hosts: impl IntoIterator<Item = V>,
) -> Result<Option<V>, ProxyError> {
    let mut lines = hosts.into_iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err(ProxyError::RepeatedHost);
    }
    // The codec's reading of a `host[:port]` (`http1/request.rs`), so both
    // paths agree on what a Host is.
    let target = match uri.authority().filter(|_| uri.scheme().is_some()) {
        Some(authority) => match split_host(authority.as_str().as_bytes()) {
            Some(target) => Some(target),
            None => return Err(ProxyError::InvalidHost),
        },
        None => None,
    };
    let Some(value) = host else {
        let required = match version {
            Version::HTTP_09 | Version::HTTP_10 => false,
            Version::HTTP_2 | Version::HTTP_3 => uri.authority().is_none(),
            _ => true,
        };
        return match required {
            true => Err(ProxyError::MissingHost),
            false => Ok(None),
        };
    };
    let Some(parts) = split_host(value.as_ref()) else {
        return Err(ProxyError::InvalidHost);
    };
    if let (Some(target), Some(scheme)) = (target, uri.scheme()) {
        if !same_authority(scheme.as_str().as_bytes(), target, parts) {
            return Err(ProxyError::HostMismatch);
        }
    }
    Ok(Some(value))
}

/// Removes the request's hop-by-hop headers, including every field named by
/// `Connection`: in place in a map, as for a response head
/// ([`remove_hop_by_hop_map`]); on an HTTP/1.1 head, as removal marks.
pub(crate) fn remove_hop_by_hop(headers: &mut Headers<'_>, arena: &Bump) {
    match headers.as_map_mut() {
        Some(map) => remove_hop_by_hop_map(map, arena),
        None => remove_hop_by_hop_fields(headers, arena),
    }
}

/// Removes hop-by-hop headers from a map, including every field named by
/// `Connection`.
pub(crate) fn remove_hop_by_hop_map(headers: &mut HeaderMap, arena: &Bump) {
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
            for name in connection_names(text) {
                headers.remove(name);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The same removal through [`Headers`] (an HTTP/1.1 head): one pass over
/// the names, then the named fields copied into the arena, since the
/// removals need the headers.
fn remove_hop_by_hop_fields(headers: &mut Headers<'_>, arena: &Bump) {
    let mut present = 0u8;
    for (name, _) in headers.iter() {
        if let Some(i) = HOP_BY_HOP
            .iter()
            .position(|h| name.eq_ignore_ascii_case(h.as_str()))
        {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let mut listed: BumpVec<'_, &str> = BumpVec::new_in(arena);
        for value in headers.get_all(header::CONNECTION) {
            let Some(text) = visible_str(value) else {
                continue;
            };
            listed.extend(connection_names(text).map(|name| &*arena.alloc_str(name)));
        }
        headers.remove(header::CONNECTION);
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The field names a `Connection` value lists.
fn connection_names(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// The hop-by-hop removal for a request that switches protocols (an
/// `Upgrade` the route allows): every hop-by-hop field goes as for any
/// request, then `Connection: upgrade` and `Upgrade: upgrade` are set, since
/// the next hop must see the switch too.
pub(crate) fn remove_hop_by_hop_for_upgrade(
    headers: &mut Headers<'_>,
    arena: &Bump,
    upgrade: HeaderValue,
) {
    remove_hop_by_hop(headers, arena);
    headers.insert_owned(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert_owned(header::UPGRADE, upgrade);
}

/// The same for the `101` that answers it (a response head: a map).
pub(crate) fn remove_hop_by_hop_for_upgrade_map(
    headers: &mut HeaderMap,
    arena: &Bump,
    upgrade: HeaderValue,
) {
    remove_hop_by_hop_map(headers, arena);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Readies the client's headers for the upstream.
pub(crate) fn prepare_headers<'a>(
    headers: &mut Headers<'a>,
    ctx: &RequestContext<'a>,
    server: &ServerSettings,
    endpoint: &EndpointSpec,
) {
    // Hop-by-hop fields were removed before the middleware chain ran (see
    // `handler::request_filter`), so the fields middlewares added stay.
    //
    // Host becomes the host the route was chosen by: a target's authority wins
    // over a Host header (RFC 9112 §3.2.2), and HTTP/2 clients send only
    // `:authority` while HTTP/1.1 needs Host. A client that named no host
    // (HTTP/1.0 may not) leaves nothing to preserve: the upstream gets the
    // endpoint's authority, as nginx sends `$proxy_host`.
    let mut unnamed = false;
    if ctx.uri.authority().is_some() || !headers.contains(header::HOST) {
        match ctx.host {
            Some(host) => headers.insert_lasting(&HOST, host.as_bytes()),
            None => unnamed = true,
        }
    }
    if server.add_forwarded_headers {
        add_forwarded(headers, ctx, server);
    }
    if !server.preserve_host || unnamed {
        let host = ctx.arena().alloc_slice_copy(endpoint.host_value.as_bytes());
        headers.insert_lasting(&HOST, host);
    }
}

/// Readies the upstream's response head for the client: its hop-by-hop
/// fields go, and it takes the proxy's HTTP version, whatever the
/// upstream's was. hyper writes the status line and chooses the framing
/// (keep-alive, chunked or Content-Length) from that version: an HTTP/1.0
/// origin's head left as it came would make an HTTP/1.1 client's answer
/// `HTTP/1.0` and close its connection. (hyper still answers an HTTP/1.0
/// client in HTTP/1.0; an HTTP/2 client's version is its connection's.)
pub(crate) fn response_head(head: &mut http::response::Parts, arena: &Bump) {
    remove_hop_by_hop_map(&mut head.headers, arena);
    head.version = Version::HTTP_11;
}

/// X-Forwarded-For/-Proto/-Host. From a trusted proxy the incoming values are
/// kept (and the peer appended to X-Forwarded-For); from anyone else they are
/// replaced, so a client cannot forge them.
fn add_forwarded<'a>(headers: &mut Headers<'a>, ctx: &RequestContext<'a>, server: &ServerSettings) {
    let arena = ctx.arena();
    let peer = ctx.client_addr.ip();
    let trusted = server.trusted_proxies.iter().any(|net| net.contains(&peer));
    let mut ip = [0u8; 48];
    let ip_len = format_ip(peer, &mut ip);
    let ip = &ip[..ip_len];

    // The values are written into the request's arena and the fields point
    // at them: nothing goes through a `HeaderValue`.
    let xff: &[u8] = if trusted && headers.contains(&X_FORWARDED_FOR) {
        // Several field lines are one comma-separated list (RFC 9110 §5.3).
        let mut list: BumpVec<'_, u8> = BumpVec::new_in(arena);
        for prior in headers.get_all(&X_FORWARDED_FOR) {
            list.extend_from_slice(prior);
            list.extend_from_slice(b", ");
        }
        list.extend_from_slice(ip);
        list.into_bump_slice()
    } else {
        arena.alloc_slice_copy(ip)
    };
    // `insert` also drops any extra X-Forwarded-For lines a client sent.
    headers.insert_lasting(&X_FORWARDED_FOR, xff);
    if !(trusted && headers.contains(&X_FORWARDED_PROTO)) {
        let proto: &'static [u8] = if ctx.tls.is_some() { b"https" } else { b"http" };
        headers.insert_lasting(&X_FORWARDED_PROTO, proto);
    }
    if !(trusted && headers.contains(&X_FORWARDED_HOST)) {
        let host = headers.get_lasting(header::HOST, arena);
        let host = host.or_else(|| ctx.host.map(str::as_bytes));
        match host {
            Some(host) => headers.insert_lasting(&X_FORWARDED_HOST, host),
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
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
    fn hosts_are_split_or_refused() {
        let split = |s: &str| {
            split_host(s.as_bytes()).map(|h| {
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                (text(h.host), h.port.map(text))
            })
        };
        let some = |h: &str, p: Option<&str>| Some((h.to_string(), p.map(str::to_string)));
        assert_eq!(split("a.test"), some("a.test", None));
        assert_eq!(split("a.test:8080"), some("a.test", Some("8080")));
        assert_eq!(split("a.test:"), some("a.test", None));
        assert_eq!(split("10.0.0.1:80"), some("10.0.0.1", Some("80")));
        assert_eq!(split("[::1]"), some("[::1]", None));
        assert_eq!(
            split("[2001:db8::1]:443"),
            some("[2001:db8::1]", Some("443"))
        );
        for bad in [
            "", ":80", "a b", "a/b", "user@a", "a:b", "a:80:90", "[::1", "[]", "[::1]x", "a\t",
            "a?", "a#", "é.test",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }

    /// The same fields as a map and as an HTTP/1.1 head's (names as given).
    fn as_both<'a>(fields: &[(&'a str, &'a str)], arena: &'a Bump) -> [Headers<'a>; 2] {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        let received = arena.alloc_slice_fill_iter(fields.iter().map(|&(name, value)| {
            let value = value.as_bytes();
            crate::context::Field { name, value }
        }));
        [Headers::from_map(map), Headers::wire(received, arena)]
    }

    #[test]
    fn the_host_is_checked_against_the_version_and_the_target() {
        let check = |version, uri: &str, hosts: &[&str]| {
            let arena = Bump::new();
            let fields: Vec<(&str, &str)> = hosts.iter().map(|&h| ("Host", h)).collect();
            let uri: Uri = uri.parse().unwrap();
            let [map, wire] = as_both(&fields, &arena);
            let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8(v.to_vec()).unwrap());
            let from_map = check_host(version, &uri, map.as_map().unwrap().get_all(header::HOST));
            let from_map = from_map.map(|v| text(v.map(HeaderValue::as_bytes)));
            let from_wire = check_host(version, &uri, wire.get_all(header::HOST)).map(text);
            assert_eq!(from_map, from_wire, "{uri} {hosts:?}");
            from_map
        };
        use ProxyError::*;
        use Version as V;
        let ok = |h: &str| Ok(Some(h.to_string()));
        assert_eq!(check(V::HTTP_11, "/", &["a"]), ok("a"));
        assert_eq!(check(V::HTTP_11, "/", &[]), Err(MissingHost));
        assert_eq!(check(V::HTTP_10, "/", &[]), Ok(None));
        assert_eq!(check(V::HTTP_10, "/", &["a", "a"]), Err(RepeatedHost));
        assert_eq!(check(V::HTTP_11, "/", &["a b"]), Err(InvalidHost));
        assert_eq!(check(V::HTTP_11, "http://a/", &[]), Err(MissingHost));
        assert_eq!(check(V::HTTP_11, "http://a/", &["A:80"]), ok("A:80"));
        assert_eq!(
            check(V::HTTP_11, "http://a/", &["a:443"]),
            Err(HostMismatch)
        );
        assert_eq!(check(V::HTTP_11, "https://a/", &["a:443"]), ok("a:443"));
        assert_eq!(check(V::HTTP_11, "http://a:81/", &["a:81"]), ok("a:81"));
        assert_eq!(check(V::HTTP_11, "http://u@a/", &["a"]), Err(InvalidHost));
        assert_eq!(check(V::HTTP_2, "http://a/", &[]), Ok(None));
        assert_eq!(check(V::HTTP_2, "/", &[]), Err(MissingHost));
        assert_eq!(check(V::HTTP_2, "http://a/", &["b"]), Err(HostMismatch));
        // A CONNECT's authority-form target is not a Host to agree with.
        assert_eq!(check(V::HTTP_11, "a:443", &["a"]), ok("a"));
        assert_eq!(check(V::HTTP_11, "a:443", &[]), Err(MissingHost));
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_go() {
        let fields = [
            ("Connection", "keep-alive, X-Secret , x-other"),
            ("connection", "x-third"),
            ("X-Secret", "1"),
            ("x-other", "1"),
            ("x-third", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("X-Kept", "1"),
        ];
        let arena = Bump::new();
        let [mut map, mut wire] = as_both(&fields, &arena);
        remove_hop_by_hop(&mut map, &arena);
        remove_hop_by_hop(&mut wire, &arena);
        assert_eq!(map.iter().collect::<Vec<_>>(), [("x-kept", &b"1"[..])]);
        // An HTTP/1.1 head keeps the client's spelling of what is left.
        assert_eq!(wire.iter().collect::<Vec<_>>(), [("X-Kept", &b"1"[..])]);
    }

    #[test]
    fn a_head_without_hop_by_hop_fields_is_left_alone() {
        let fields = [("Host", "a"), ("X-Connection", "x-a"), ("x-a", "1")];
        let arena = Bump::new();
        for mut h in as_both(&fields, &arena) {
            remove_hop_by_hop(&mut h, &arena);
            assert_eq!(h.len(), 3, "{h:?}");
        }
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade_only() {
        let fields = [
            ("Connection", "Upgrade, x-secret"),
            ("x-secret", "1"),
            ("Upgrade", "websocket, h2c"),
            ("keep-alive", "timeout=5"),
            ("Sec-WebSocket-Key", "k"),
        ];
        let arena = Bump::new();
        for mut h in as_both(&fields, &arena) {
            let websocket = HeaderValue::from_static("websocket");
            remove_hop_by_hop_for_upgrade(&mut h, &arena, websocket);
            let h = h.into_map();
            assert_eq!(h.len(), 3, "{h:?}");
            assert_eq!(h[header::CONNECTION], "upgrade");
            assert_eq!(h[header::UPGRADE], "websocket");
            assert!(h.contains_key("sec-websocket-key"));
        }
        // The 101 that answers it, a response head.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade, x-a"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop_for_upgrade_map(&mut h, &arena, HeaderValue::from_static("websocket"));
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }
}
