//! Cross-origin resource sharing (`type = "cors"`), the CORS protocol of
//! the Fetch standard: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered here, `204` when the
//! origin, method and headers are allowed and `403` without any CORS
//! header when not, and never goes upstream; an actual request from an
//! allowed origin is forwarded and its response gets
//! `Access-Control-Allow-Origin` (and `-Credentials`, `-Expose-Headers`)
//! and `Vary: Origin`. A request without `Origin` is not touched.
//!
//! Everything the answers carry is worked out at load (interned
//! `HeaderValue`s): a listed origin is echoed with its interned value, so
//! the actual-request path allocates nothing; only an origin matched by a
//! wildcard subdomain pattern is copied (into the request's arena, then
//! into a value of its own for the response).

use std::sync::Arc;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::refusal;
use crate::context::{CorsSeen, Flow, ProxyBody, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

/// What a refused preflight reads.
const FORBIDDEN: &str = "403 Forbidden: this cross-origin request is not allowed on this route\n";

/// The request-header names the Fetch standard safelists: a preflight may
/// name them without their being configured.
const SAFELISTED: [&str; 4] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

/// A `https://*.example.org[:port]` entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wildcard {
    /// `https://` (lowercase).
    pub(crate) scheme: Box<str>,
    /// `.example.org` (lowercase): the host must end with it and have at
    /// least one label before it.
    pub(crate) suffix: Box<str>,
    /// `:8443`, or empty: the origin has no port.
    pub(crate) port: Box<str>,
}

impl Wildcard {
    /// Whether `origin` (as sent, `scheme://host[:port]`) matches; ASCII
    /// case is ignored.
    pub(crate) fn matches(&self, origin: &[u8]) -> bool {
        let Some(rest) = strip_prefix_ci(origin, self.scheme.as_bytes()) else {
            return false;
        };
        let port = self.port.as_bytes();
        if rest.len() < port.len() || !rest[rest.len() - port.len()..].eq_ignore_ascii_case(port) {
            return false;
        }
        let host = &rest[..rest.len() - port.len()];
        let suffix = self.suffix.as_bytes();
        if host.len() <= suffix.len()
            || !host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        {
            return false;
        }
        // The labels before the suffix: letters, digits, '-', none empty
        // (so no port, no path, no userinfo can hide there).
        let labels = &host[..host.len() - suffix.len()];
        labels.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
    }
}

fn strip_prefix_ci<'b>(s: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// The compiled settings (shared by every route that lists the middleware).
pub(crate) struct Settings {
    /// `allow_origins = ["*"]`.
    pub(crate) any_origin: bool,
    /// The listed origins, lowercase, interned (echoed as they are).
    pub(crate) exact: Box<[HeaderValue]>,
    pub(crate) wildcards: Box<[Wildcard]>,
    pub(crate) methods: Box<[Method]>,
    /// `methods` joined, for `Access-Control-Allow-Methods`.
    pub(crate) allow_methods: HeaderValue,
    /// `allow_headers = ["*"]`.
    pub(crate) any_header: bool,
    pub(crate) headers: Box<[HeaderName]>,
    pub(crate) expose: Option<HeaderValue>,
    pub(crate) credentials: bool,
    /// `Access-Control-Max-Age`, in seconds.
    pub(crate) max_age: Option<u64>,
    pub(crate) max_age_value: Option<HeaderValue>,
    /// `allow_origins` as configured (for the admin API).
    pub(crate) origins: Box<[Box<str>]>,
    pub(crate) expose_names: Box<[HeaderName]>,
}

/// `type = "cors"`.
#[derive(Clone)]
pub(crate) struct Cors {
    pub(crate) settings: Arc<Settings>,
    /// Its index in the snapshot's policies (where refusals count).
    pub(crate) policy: u16,
}

/// Whether an origin is allowed, and how it is echoed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Refused,
    /// Any origin, without credentials: `*`.
    Any,
    /// `exact[i]`.
    Listed(u16),
    /// Echoed as the request sent it.
    Echo,
}

impl Cors {
    fn verdict(&self, origin: &[u8]) -> Verdict {
        let s = &*self.settings;
        if s.any_origin && !s.credentials {
            return Verdict::Any;
        }
        if let Some(i) = s.exact.iter().position(|v| v.as_bytes() == origin) {
            return Verdict::Listed(i as u16);
        }
        if s.any_origin
            || s.exact
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(origin))
            || s.wildcards.iter().any(|w| w.matches(origin))
        {
            return Verdict::Echo;
        }
        Verdict::Refused
    }

    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Flow {
        let Some(origin) = req.headers.get(header::ORIGIN) else {
            return Flow::Continue;
        };
        let verdict = self.verdict(origin);
        let preflight = *ctx.method == Method::OPTIONS
            && req.headers.contains(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return self.preflight(ctx, req, verdict);
        }
        ctx.cors = match verdict {
            Verdict::Refused => CorsSeen::Refused,
            Verdict::Any => CorsSeen::Any,
            Verdict::Listed(i) => CorsSeen::Listed(i),
            // Copied into the request's arena: the headers may leave
            // before the response comes.
            Verdict::Echo => CorsSeen::Echo(ctx.arena().alloc_slice_copy(origin)),
        };
        Flow::Continue
    }

    /// Answers a preflight: 204 with the CORS headers, or 403 without.
    fn preflight(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
        verdict: Verdict,
    ) -> Flow {
        let s = &*self.settings;
        let method = req
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .unwrap_or_default();
        let requested = req.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        let refused = if verdict == Verdict::Refused {
            Some(Refusal::CorsOrigin)
        } else if !s.methods.iter().any(|m| m.as_str().as_bytes() == method) {
            Some(Refusal::CorsMethod)
        } else if requested.is_some_and(|list| !self.headers_allowed(list)) {
            Some(Refusal::CorsHeaders)
        } else {
            None
        };
        if let Some(reason) = refused {
            ctx.ids.set_refusal(self.policy, reason);
            ctx.log.cause = Some(reason.label());
            return Flow::respond(refusal(StatusCode::FORBIDDEN, FORBIDDEN));
        }
        ctx.ids.set_refusal(self.policy, Refusal::CorsPreflight);
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        let origin = req.headers.get(header::ORIGIN).unwrap_or_default();
        if let Some(v) = self.allow_origin(verdict, origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            s.allow_methods.clone(),
        );
        if let Some(v) = requested
            .map(<[u8]>::trim_ascii)
            .filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(v) = &s.max_age_value {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if s.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        h.insert(header::VARY, PREFLIGHT_VARY.clone());
        Flow::respond(resp)
    }

    /// Whether every name of an `Access-Control-Request-Headers` list is
    /// allowed (comma-separated, optional whitespace, any case).
    fn headers_allowed(&self, list: &[u8]) -> bool {
        let s = &*self.settings;
        list.split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|name| !name.is_empty())
            .all(|name| {
                s.any_header
                    || SAFELISTED
                        .iter()
                        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
                    || s.headers
                        .iter()
                        .any(|n| n.as_str().as_bytes().eq_ignore_ascii_case(name))
            })
    }

    /// The `Access-Control-Allow-Origin` of an allowed origin.
    fn allow_origin(&self, verdict: Verdict, origin: &[u8]) -> Option<HeaderValue> {
        match verdict {
            Verdict::Refused => None,
            Verdict::Any => Some(ANY.clone()),
            Verdict::Listed(i) => self.settings.exact.get(i as usize).cloned(),
            Verdict::Echo => HeaderValue::from_bytes(origin).ok(),
        }
    }

    /// On the response to an actual request with an `Origin`: the
    /// upstream's own `Access-Control-Allow-Origin`, `-Credentials` and
    /// `-Expose-Headers` are replaced by this policy's (removed when the
    /// origin is refused), and `Vary: Origin` is added when the answer
    /// depends on the origin.
    pub(crate) fn on_response(&self, ctx: &mut RequestContext<'_>, resp: &mut Response<ProxyBody>) {
        let seen = std::mem::take(&mut ctx.cors);
        let verdict = match seen {
            CorsSeen::Nothing => return,
            CorsSeen::Refused => Verdict::Refused,
            CorsSeen::Any => Verdict::Any,
            CorsSeen::Listed(i) => Verdict::Listed(i),
            CorsSeen::Echo(_) => Verdict::Echo,
        };
        let origin = match seen {
            CorsSeen::Echo(bytes) => bytes,
            _ => &[],
        };
        let s = &*self.settings;
        let h = resp.headers_mut();
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            if h.contains_key(&name) {
                h.remove(&name);
            }
        }
        if let Some(v) = self.allow_origin(verdict, origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            if s.credentials {
                h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            if let Some(v) = &s.expose {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
        if verdict != Verdict::Any {
            add_vary_origin(h);
        }
    }
}

/// Adds `Origin` to `Vary`: a field line of its own beside the upstream's
/// (one list, RFC 9110 §5.3; no copy of theirs), unless `Vary` already
/// names it or is `*`.
fn add_vary_origin(h: &mut HeaderMap) {
    let named = h.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(b"origin"))
    });
    if !named {
        h.append(header::VARY, ORIGIN.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wildcard(scheme: &str, suffix: &str, port: &str) -> Wildcard {
        Wildcard {
            scheme: scheme.into(),
            suffix: suffix.into(),
            port: port.into(),
        }
    }

    #[test]
    fn wildcard_subdomains_match_only_below_the_domain_on_the_scheme_and_port() {
        let w = wildcard("https://", ".example.org", "");
        let cases = [
            ("https://a.example.org", true),
            ("https://a.b.example.org", true),
            ("https://A-1.Example.ORG", true),
            ("https://example.org", false),
            ("https://.example.org", false),
            ("https://a..example.org", false),
            ("http://a.example.org", false),
            ("https://a.example.org.evil.com", false),
            ("https://evilexample.org", false),
            ("https://a.example.org:443", false),
            ("https://a.example.org:8443", false),
            ("https://user@a.example.org", false),
            ("https://a/b.example.org", false),
            ("null", false),
            ("", false),
        ];
        for (origin, want) in cases {
            assert_eq!(w.matches(origin.as_bytes()), want, "{origin}");
        }
        let with_port = wildcard("https://", ".example.org", ":8443");
        assert!(with_port.matches(b"https://a.example.org:8443"));
        assert!(!with_port.matches(b"https://a.example.org"));
        assert!(!with_port.matches(b"https://a.example.org:844"));
        assert!(!with_port.matches(b"https://a.example.org:18443"));
    }

    #[test]
    fn vary_origin_is_added_once() {
        let mut h = HeaderMap::new();
        add_vary_origin(&mut h);
        add_vary_origin(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        add_vary_origin(&mut h);
        let all: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(all, ["Accept-Encoding", "Origin"]);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("accept, ORIGIN"));
        add_vary_origin(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("*"));
        add_vary_origin(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
    }
}
