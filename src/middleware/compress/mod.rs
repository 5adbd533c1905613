//! Response compression (`type = "compress"`): gzip, brotli and zstd,
//! streamed (`body.rs`), the coding chosen from the client's
//! `Accept-Encoding` with q-values and the configured preference
//! (`negotiate.rs`). Skipped, untouched, for a HEAD, a status without a
//! body or a partial one (1xx, 204, 206, 304), a response already encoded,
//! one marked `Cache-Control: no-transform`, a type not listed, a known
//! length under `min_size`. A compressed response loses its
//! `Content-Length` and `Accept-Ranges`, gets `Content-Encoding`, and a
//! strong `ETag` becomes weak; `Vary: Accept-Encoding` is added whenever
//! the answer depends on it.

mod body;
mod negotiate;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::context::{ProxyBody, RequestContext, UpstreamRequest};
pub(crate) use body::Levels;
pub(crate) use negotiate::Coding;

/// The context variable the request phase leaves the chosen coding in.
const CHOSEN: &str = "compress.coding";

/// The content types compressed by default: text, and the structured
/// text formats.
pub(crate) const DEFAULT_TYPES: [&str; 9] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
    "application/x-ndjson",
];

/// What a `compress` definition compiles to.
pub(crate) struct Settings {
    /// In the order of preference.
    pub(crate) codings: Vec<Coding>,
    pub(crate) min_size: u64,
    /// `type/subtype`, `type/*`, or `type/*+suffix`, lowercase.
    pub(crate) types: Vec<Box<str>>,
    pub(crate) levels: Levels,
    /// Compressing responses a worker keeps open at once, over every
    /// `compress` middleware; more are sent as they are.
    pub(crate) max_streams: usize,
}

/// `type = "compress"`. Cloned into every route that lists it.
#[derive(Clone)]
pub(crate) struct Compress {
    settings: std::sync::Arc<Settings>,
}

impl Compress {
    pub(crate) fn new(settings: Settings) -> Self {
        Compress {
            settings: std::sync::Arc::new(settings),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Notes the coding the client takes, if any (the response decides
    /// whether it is used).
    pub(crate) fn on_request(&self, ctx: &mut RequestContext<'_>, req: &UpstreamRequest<'_>) {
        if *ctx.method == Method::HEAD {
            return;
        }
        let fields = req.headers.get_all(header::ACCEPT_ENCODING);
        if let Some(c) = negotiate::choose(fields, &self.settings.codings) {
            ctx.set_var(CHOSEN, c.token());
        }
    }

    pub(crate) fn on_response(&self, ctx: &mut RequestContext<'_>, resp: &mut Response<ProxyBody>) {
        let s = &*self.settings;
        if *ctx.method == Method::HEAD || !self.eligible(resp.status(), resp.headers()) {
            return;
        }
        // From here the representation depends on Accept-Encoding.
        add_vary(resp.headers_mut());
        let Some(coding) = ctx.var(CHOSEN).and_then(Coding::from_token) else {
            return;
        };
        let Some(slot) = body::Slot::take(s.max_streams) else {
            // The worker is at max_streams: this one goes as it is.
            return;
        };
        let inner = std::mem::replace(resp.body_mut(), ProxyBody::empty());
        *resp.body_mut() = ProxyBody::boxed(body::Compressed::new(inner, coding, s.levels, slot));
        let h = resp.headers_mut();
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::ACCEPT_RANGES);
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        if let Some(weak) = h.get(header::ETAG).and_then(|e| weaken(e.as_bytes())) {
            h.insert(header::ETAG, weak);
        }
    }

    /// Whether this response may be compressed (a client that takes a
    /// coding aside).
    fn eligible(&self, status: StatusCode, h: &HeaderMap) -> bool {
        let s = &*self.settings;
        let no_body = status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            );
        if no_body || h.contains_key(header::CONTENT_RANGE) {
            return false;
        }
        let encoded = h
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return false;
        }
        let no_transform = h.get_all(header::CACHE_CONTROL).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
        });
        if no_transform {
            return false;
        }
        let small = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .is_some_and(|len| len < s.min_size);
        if small {
            return false;
        }
        let Some(kind) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        type_listed(&s.types, kind)
    }
}

/// Whether `content_type` (parameters ignored, any case) is one of
/// `types`.
pub(crate) fn type_listed(types: &[Box<str>], content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    types.iter().any(|t| {
        let (t_top, t_sub) = t.split_once('/').unwrap_or((t, ""));
        if t_top != top {
            return false;
        }
        match t_sub.strip_prefix("*+") {
            Some(suffix) => sub.ends_with(&format!("+{suffix}")),
            None => t_sub == "*" || t_sub == sub,
        }
    })
}

/// `Vary: Accept-Encoding`, unless `Vary` names it already or is `*`.
fn add_vary(h: &mut HeaderMap) {
    let named = h.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|n| {
            let n = n.trim_ascii();
            n == b"*" || n.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !named {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A strong `ETag` made weak (`"x"` → `W/"x"`); `None` when it is weak
/// already or malformed.
fn weaken(etag: &[u8]) -> Option<HeaderValue> {
    if etag.starts_with(b"W/") || !etag.starts_with(b"\"") {
        return None;
    }
    let mut weak = Vec::with_capacity(etag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(etag);
    HeaderValue::from_bytes(&weak).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_by_essence_wildcard_and_suffix() {
        let types: Vec<Box<str>> = DEFAULT_TYPES.iter().map(|t| (*t).into()).collect();
        for yes in [
            "text/html",
            "text/plain; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "application/problem+json",
            "application/atom+xml",
            "image/svg+xml",
        ] {
            assert!(type_listed(&types, yes), "{yes}");
        }
        for no in [
            "image/png",
            "application/octet-stream",
            "application/jsonx",
            "video/mp4",
            "",
            "text",
        ] {
            assert!(!type_listed(&types, no), "{no}");
        }
    }

    #[test]
    fn etags_become_weak_once_and_vary_is_added_once() {
        assert_eq!(weaken(b"\"abc\"").unwrap(), "W/\"abc\"");
        assert!(weaken(b"W/\"abc\"").is_none());
        assert!(weaken(b"abc").is_none());
        let mut h = HeaderMap::new();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h);
        add_vary(&mut h);
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        let mut star = HeaderMap::new();
        star.insert(header::VARY, HeaderValue::from_static("*"));
        add_vary(&mut star);
        assert_eq!(star.get_all(header::VARY).iter().count(), 1);
    }
}
