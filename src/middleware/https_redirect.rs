//! The HTTP → HTTPS redirect: answers a plain-HTTP request with a redirect to
//! the same host, path and query over HTTPS. A request that already came over
//! TLS passes through untouched, so one route can serve both listeners.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::context::Flow;
use crate::context::{ProxyBody, RequestContext};

/// `type = "https_redirect"`.
#[derive(Clone)]
pub(crate) struct HttpsRedirect {
    /// `:PORT` as written into the Location (empty for 443).
    port_suffix: Box<str>,
    pub(crate) port: u16,
    pub(crate) status: StatusCode,
}

impl HttpsRedirect {
    /// `status` is one of 301, 302, 307, 308 (checked at load).
    pub(crate) fn new(port: u16, status: u16) -> Self {
        HttpsRedirect {
            port,
            port_suffix: if port == 443 {
                "".into()
            } else {
                format!(":{port}").into()
            },
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
        }
    }

    pub(crate) fn on_request(&self, ctx: &mut RequestContext<'_>) -> Flow {
        if ctx.tls.is_some() {
            return Flow::Continue;
        }
        let Some(host) = ctx.host.map(strip_port).filter(|h| is_host(h)) else {
            ctx.log.cause = Some("https_redirect_bad_host");
            let body = "400 Bad Request: a redirect to HTTPS needs the request's host\n";
            return Flow::respond(plain(StatusCode::BAD_REQUEST, body, None));
        };
        let (q, query) = match ctx.query {
            Some(q) => ("?", q),
            None => ("", ""),
        };
        // Carved out of the worker's slab: no allocation per redirect.
        let location = ctx.tools.slab.value(&[
            b"https://",
            host.as_bytes(),
            self.port_suffix.as_bytes(),
            ctx.path.as_bytes(),
            q.as_bytes(),
            query.as_bytes(),
        ]);
        Flow::respond(plain(self.status, "", Some(location)))
    }
}

fn plain(
    status: StatusCode,
    body: &'static str,
    location: Option<HeaderValue>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(location) = location {
        h.insert(header::LOCATION, location);
    }
    if !body.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

/// The host without its port: `example.com:80` → `example.com`,
/// `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

/// A host name or address that can stand in a URL as it is (no userinfo,
/// path or other characters a client could slip into the Location).
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert!(is_host("[::1]"));
        assert!(!is_host("evil.com/x"));
        assert!(!is_host("a@b"));
        assert!(!is_host(""));
    }
}
