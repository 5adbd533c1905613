//! What `rate_limit` and `connection_limit` count by: the request's key,
//! from one or more sources (the client address, a header, a cookie, the
//! route, the consumer, a claim), hashed with the table's keyed hash
//! without copying anything. The tables themselves are `limit/`'s.

use std::hash::Hasher;

use http::{header, HeaderName};
use ipnet::IpNet;

use crate::context::{RequestContext, UpstreamRequest};
use crate::limit::Seed;

/// One source of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `client_ip`: the address after `server.trusted_proxies` (never missing).
    ClientIp,
    /// `header:NAME`: the first line of the header; missing when absent or empty.
    Header(HeaderName),
    /// `cookie:NAME`: the cookie's value; missing when absent or empty.
    Cookie(Box<str>),
    /// `route`: the matched route's name (never missing).
    Route,
    /// `consumer`: `RequestContext::consumer`, set by an auth middleware.
    Consumer,
    /// `claim:NAME`: the per-request variable `claim:NAME` (a JWT
    /// middleware sets it), kept whole as the variable's name.
    Claim(Box<str>),
}

impl KeySource {
    /// As written (for /config).
    pub(crate) fn text(&self) -> String {
        match self {
            KeySource::ClientIp => "client_ip".into(),
            KeySource::Header(h) => format!("header:{h}"),
            KeySource::Cookie(c) => format!("cookie:{c}"),
            KeySource::Route => "route".into(),
            KeySource::Consumer => "consumer".into(),
            KeySource::Claim(var) => var.to_string(),
        }
    }
}

/// A key: its sources in order, and the trusted proxies that decide the
/// client address.
#[derive(Debug, Clone)]
pub(crate) struct LimitKey {
    pub(crate) sources: Box<[KeySource]>,
    pub(crate) trusted: Box<[IpNet]>,
}

impl LimitKey {
    /// The key's hash, or `None` when every source is missing (as nginx's
    /// empty key: the request is not limited). A missing source among
    /// others counts as empty, so leaving one header out does not escape
    /// a combined key.
    pub(crate) fn hash(
        &self,
        seed: &Seed,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Option<u64> {
        let mut h = seed.hasher();
        let mut any = false;
        for source in self.sources.iter() {
            // A tag and a length before each part: ("ab", "c") ≠ ("a", "bc").
            let part: Option<&[u8]> = match source {
                KeySource::ClientIp => {
                    // The family first: the two lengths differ.
                    match ctx.client_ip(&req.headers, &self.trusted) {
                        std::net::IpAddr::V4(a) => {
                            h.write_u8(4);
                            h.write(&a.octets());
                        }
                        std::net::IpAddr::V6(a) => {
                            h.write_u8(6);
                            h.write(&a.octets());
                        }
                    }
                    any = true;
                    continue;
                }
                KeySource::Header(name) => req.headers.get(name),
                KeySource::Cookie(name) => cookie(req, name),
                KeySource::Route => Some(ctx.log.route.as_bytes()),
                KeySource::Consumer => ctx.consumer.map(str::as_bytes),
                KeySource::Claim(var) => ctx.var(var).map(str::as_bytes),
            };
            let part = part.filter(|p| !p.is_empty() || matches!(source, KeySource::Route));
            match part {
                Some(p) => {
                    any = true;
                    h.write_u8(1);
                    h.write_usize(p.len());
                    h.write(p);
                }
                None => h.write_u8(0),
            }
        }
        any.then(|| h.finish())
    }
}

/// The value of cookie `name` in the request's `Cookie` lines (RFC 6265
/// §5.4: `name=value` pairs separated by `; `), the first if repeated.
fn cookie<'r>(req: &'r UpstreamRequest<'_>, name: &str) -> Option<&'r [u8]> {
    for line in req.headers.get_all(header::COOKIE) {
        for pair in line.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if &pair[..eq] == name.as_bytes() {
                let value = pair[eq + 1..].trim_ascii();
                // A quoted value is the same cookie as the bare one.
                let value = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(value);
                return Some(value);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::context::Headers;

    fn request(lines: &[&'static str]) -> UpstreamRequest<'static> {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(header::COOKIE, HeaderValue::from_static(line));
        }
        UpstreamRequest {
            headers: Headers::from_map(map),
        }
    }

    #[test]
    fn cookies_are_found_in_every_line() {
        let req = request(&["theme=dark; session=\"s1\"", "other=1;session=s2"]);
        assert_eq!(cookie(&req, "session"), Some(&b"s1"[..]));
        assert_eq!(cookie(&req, "other"), Some(&b"1"[..]));
        assert_eq!(cookie(&req, "theme"), Some(&b"dark"[..]));
        // A name is matched whole, not as a prefix or a value.
        assert_eq!(cookie(&req, "sess"), None);
        assert_eq!(cookie(&req, "dark"), None);
        assert_eq!(cookie(&request(&["flag"]), "flag"), None);
        assert_eq!(cookie(&request(&["empty="]), "empty"), Some(&b""[..]));
    }
}
