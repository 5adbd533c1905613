//! API keys (`type = "api_key"`): the key a client sends in a header or a
//! query parameter is hashed (SHA-256) and looked up among the consumers'
//! key hashes (read by the control plane at load, `config/compile/auth.rs`;
//! the keys themselves are never stored). One hash and one map lookup per
//! request, on the loop: no key is ever compared byte by byte.

use http::{HeaderName, HeaderValue, StatusCode};
use ring::digest;
use rustc_hash::FxHashMap;
use std::sync::Arc;

use super::consumer::{admit, refuse};
use crate::context::{Flow, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

const UNAUTHORIZED: &str = "401 Unauthorized: this route needs a valid API key\n";

/// What an `api_key` definition compiles to.
pub(crate) struct Settings {
    /// SHA-256 of each key, to its consumer's name.
    pub(crate) keys: FxHashMap<[u8; 32], Arc<str>>,
    /// The keys file's path, as configured (for the admin API).
    pub(crate) keys_file: Option<Box<str>>,
    /// Read first, when set.
    pub(crate) header: Option<HeaderName>,
    /// Read when the header is not set or not sent.
    pub(crate) query: Option<Box<str>>,
    pub(crate) realm: Box<str>,
    pub(crate) consumer_header: Option<HeaderName>,
    pub(crate) forward_credentials: bool,
    /// `ApiKey realm="…"` (interned at load).
    pub(crate) challenge: HeaderValue,
}

/// `type = "api_key"`. Cloned into every route that lists it.
#[derive(Clone)]
pub(crate) struct ApiKey {
    settings: Arc<Settings>,
    /// Its index in the snapshot's policies (where refusals count).
    policy: u16,
}

impl ApiKey {
    pub(crate) fn new(settings: Settings, policy: u16) -> Self {
        ApiKey {
            settings: Arc::new(settings),
            policy,
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn on_request<'a>(
        &self,
        ctx: &mut RequestContext<'a>,
        req: &mut UpstreamRequest<'_>,
    ) -> Flow {
        let s = &*self.settings;
        let from_header = s.header.as_ref().and_then(|h| req.headers.get(h));
        let hash = match from_header.filter(|k| !k.is_empty()) {
            Some(key) => digest::digest(&digest::SHA256, key),
            None => match s.query.as_deref().and_then(|q| query_key(ctx, q)) {
                Some(key) => digest::digest(&digest::SHA256, key),
                None => return self.refused(ctx, Refusal::CredentialsMissing),
            },
        };
        let Some(consumer) = s.keys.get(hash.as_ref()) else {
            return self.refused(ctx, Refusal::UnknownKey);
        };
        if !s.forward_credentials {
            if let Some(h) = &s.header {
                req.headers.remove(h);
            }
            if let Some(name) = s.query.as_deref() {
                let arena = ctx.arena();
                ctx.upstream_query = ctx.upstream_query.and_then(|q| without(arena, q, name));
            }
        }
        let consumer = ctx.alloc_str(consumer);
        admit(ctx, req, consumer, s.consumer_header.as_ref());
        Flow::Continue
    }

    fn refused(&self, ctx: &mut RequestContext<'_>, reason: Refusal) -> Flow {
        let status = StatusCode::UNAUTHORIZED;
        let mut flow = refuse(ctx, self.policy, reason, status, UNAUTHORIZED);
        if let Flow::Respond(resp) = &mut flow {
            let challenge = self.settings.challenge.clone();
            resp.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        flow
    }
}

/// The first non-empty value of the query parameter `name`,
/// percent-decoded (into the arena when it has escapes; `+` is kept as
/// it is).
pub(super) fn query_key<'a>(ctx: &RequestContext<'a>, name: &str) -> Option<&'a [u8]> {
    let query = ctx.query?;
    let value = query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name && !v.is_empty()).then_some(v)
    })?;
    if !value.contains('%') {
        return Some(value.as_bytes());
    }
    let out = ctx.arena().alloc_slice_fill_copy(value.len(), 0u8);
    let len = percent_decode(value.as_bytes(), out);
    Some(&out[..len])
}

/// Decodes `%XX` escapes of `src` into `out` (as long as `src`); a `%`
/// not followed by two hex digits is kept as it is. Returns the length.
fn percent_decode(src: &[u8], out: &mut [u8]) -> usize {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let (mut i, mut n) = (0, 0);
    while i < src.len() {
        let escaped = match (src[i], src.get(i + 1), src.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out[n] = b;
                i += 3;
            }
            None => {
                out[n] = src[i];
                i += 1;
            }
        }
        n += 1;
    }
    n
}

/// `query` without its `name=` parameters (copied into the arena; `None`
/// when nothing is left).
pub(super) fn without<'a>(arena: &'a bumpalo::Bump, query: &'a str, name: &str) -> Option<&'a str> {
    let is_key = |pair: &str| pair.split_once('=').map_or(pair, |(n, _)| n) == name;
    if !query.split('&').any(is_key) {
        return Some(query);
    }
    let mut kept = bumpalo::collections::String::with_capacity_in(query.len(), arena);
    for pair in query.split('&').filter(|p| !is_key(p)) {
        if !kept.is_empty() {
            kept.push('&');
        }
        kept.push_str(pair);
    }
    (!kept.is_empty()).then(|| kept.into_bump_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(s: &str) -> Vec<u8> {
        let mut out = vec![0; s.len()];
        let n = percent_decode(s.as_bytes(), &mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn query_values_are_percent_decoded_and_stray_percents_kept() {
        assert_eq!(decoded("abc"), b"abc");
        assert_eq!(decoded("a%2Bb%2fc"), b"a+b/c");
        assert_eq!(decoded("100%"), b"100%");
        assert_eq!(decoded("%zz%4"), b"%zz%4");
        assert_eq!(decoded("a+b"), b"a+b");
        assert_eq!(decoded("%ff"), [0xff]);
    }

    #[test]
    fn the_key_parameter_is_stripped_and_the_rest_kept_in_order() {
        let arena = bumpalo::Bump::new();
        let strip = |q: &'static str| without(&arena, q, "api_key");
        assert_eq!(strip("a=1&api_key=s&b=2"), Some("a=1&b=2"));
        assert_eq!(strip("api_key=s"), None);
        assert_eq!(strip("api_key=s&api_key=t&x"), Some("x"));
        assert_eq!(
            strip("api_keys=s&xapi_key=t"),
            Some("api_keys=s&xapi_key=t")
        );
        assert_eq!(strip("api_key&b=2"), Some("b=2"));
    }
}
