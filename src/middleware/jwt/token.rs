//! A request's token: where it is found and taken out of the request,
//! its header read (the algorithm and key id, `alg: none` told apart from
//! garbage), its signature and registered claims checked by
//! `jsonwebtoken` with each refusal given its reason, and the claims'
//! values made into a consumer name and header values.

use http::{header, HeaderValue};
use jsonwebtoken::{errors::ErrorKind, Algorithm};

use super::keys::{algorithm, Key};
use super::Sources;
use crate::context::{RequestContext, UpstreamRequest};
use crate::metrics::Refusal;
use crate::middleware::api_key::{query_key, without};

/// The longest token read (longer is malformed): bounds the copy, the
/// hash and the JSON parse.
pub(crate) const MAX_TOKEN: usize = 8192;
/// The longest consumer name or header value taken from a claim.
const MAX_CLAIM_VALUE: usize = 1024;

pub(super) type Claims = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum From {
    Header,
    Cookie,
    Query,
}

/// A token found in the request, for as long as the request.
pub(super) struct Found<'a> {
    pub(super) token: &'a str,
    pub(super) from: From,
}

/// The token, from the first source that has one: `Authorization:
/// Bearer` (the scheme in any case), then the cookie, then the query
/// parameter. A token too long, or not ASCII, is still found: it is then
/// refused as malformed.
pub(super) fn find<'a>(
    ctx: &RequestContext<'a>,
    req: &UpstreamRequest<'_>,
    sources: &Sources,
) -> Option<Found<'a>> {
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(|t| ctx.alloc_str(t));
    if sources.header {
        if let Some(value) = req.headers.get(header::AUTHORIZATION) {
            let bearer = value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ");
            let token = bearer.then(|| value[7..].trim_ascii());
            if let Some(token) = token.filter(|t| !t.is_empty()).and_then(text) {
                return Some(Found {
                    token,
                    from: From::Header,
                });
            }
        }
    }
    if let Some(name) = sources.cookie.as_deref() {
        let value = req.headers.cookie(name).filter(|v| !v.is_empty());
        if let Some(token) = value.and_then(text) {
            return Some(Found {
                token,
                from: From::Cookie,
            });
        }
    }
    if let Some(name) = sources.query.as_deref() {
        if let Some(token) = query_key(ctx, name).and_then(|v| std::str::from_utf8(v).ok()) {
            return Some(Found {
                token,
                from: From::Query,
            });
        }
    }
    None
}

/// Takes the token out of what goes upstream: the `Authorization` field,
/// the cookie (the other cookies kept, in order) or the query parameter.
pub(super) fn remove<'a>(
    ctx: &mut RequestContext<'a>,
    req: &mut UpstreamRequest<'_>,
    found: &Found<'a>,
    sources: &Sources,
) {
    match found.from {
        From::Header => {
            req.headers.remove(header::AUTHORIZATION);
        }
        From::Query => {
            let name = sources.query.as_deref().unwrap_or_default();
            let arena = ctx.arena();
            ctx.upstream_query = ctx.upstream_query.and_then(|q| without(arena, q, name));
        }
        From::Cookie => {
            let name = sources.cookie.as_deref().unwrap_or_default();
            let mut kept = bumpalo::collections::Vec::new_in(ctx.arena());
            for value in req.headers.get_all(header::COOKIE) {
                for pair in value.split(|&b| b == b';') {
                    let pair = pair.trim_ascii();
                    let is_token = pair
                        .strip_prefix(name.as_bytes())
                        .is_some_and(|rest| rest.first() == Some(&b'='));
                    if pair.is_empty() || is_token {
                        continue;
                    }
                    if !kept.is_empty() {
                        kept.extend_from_slice(b"; ");
                    }
                    kept.extend_from_slice(pair);
                }
            }
            let kept = kept.into_bump_slice();
            if kept.is_empty() || req.headers.insert_bytes(&header::COOKIE, kept).is_err() {
                req.headers.remove(header::COOKIE);
            }
        }
    }
}

/// What the header says.
pub(super) struct Head {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
}

/// The token's header: its algorithm, one of the supported ones (`none`,
/// or any other, is `JwtAlgorithm`), and its key id.
pub(super) fn header(token: &str) -> Result<Head, Refusal> {
    if token.len() > MAX_TOKEN || token.split('.').count() != 3 {
        return Err(Refusal::JwtMalformed);
    }
    match jsonwebtoken::decode_header(token) {
        Ok(h) => Ok(Head {
            alg: h.alg,
            kid: h.kid,
        }),
        Err(_) => Err(unsupported_alg(token).unwrap_or(Refusal::JwtMalformed)),
    }
}

/// `Some(JwtAlgorithm)` when the header is well-formed JSON whose `alg`
/// is a string this gateway does not verify (`none` above all).
fn unsupported_alg(token: &str) -> Option<Refusal> {
    use base64::Engine;
    let first = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .ok()?;
    let head: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let alg = head.get("alg")?.as_str()?;
    algorithm(alg).is_none().then_some(Refusal::JwtAlgorithm)
}

/// The signature under `key` and the registered claims.
pub(super) fn check(
    token: &str,
    key: &Key,
    validation: &jsonwebtoken::Validation,
) -> Result<Claims, Refusal> {
    match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::ExpiredSignature => Refusal::JwtExpired,
            ErrorKind::ImmatureSignature => Refusal::JwtNotYetValid,
            ErrorKind::InvalidIssuer => Refusal::JwtIssuer,
            ErrorKind::InvalidAudience => Refusal::JwtAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => Refusal::JwtIssuer,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => Refusal::JwtAudience,
            ErrorKind::MissingRequiredClaim(_) => Refusal::JwtClaim,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Refusal::JwtAlgorithm,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => Refusal::JwtMalformed,
            _ => Refusal::JwtSignature,
        }),
    }
}

/// A claim as a consumer name: a string or a number, printable, bounded.
pub(super) fn consumer_value(v: &serde_json::Value) -> Option<Box<str>> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let printable = !text.is_empty() && !text.chars().any(char::is_control);
    (printable && text.len() <= MAX_CLAIM_VALUE).then(|| text.into())
}

/// A claim as a header value: a string, a number or a boolean as written;
/// an array of those joined with `,` (a list of scopes, of roles); an
/// object or a value that cannot be a field value (a line break) gives no
/// header.
pub(super) fn header_value(v: &serde_json::Value) -> Option<HeaderValue> {
    fn scalar(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    let text = match v {
        serde_json::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
            parts?.join(",")
        }
        other => scalar(other)?,
    };
    if text.len() > MAX_CLAIM_VALUE {
        return None;
    }
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn headers_are_read_and_unsupported_algorithms_told_from_garbage() {
        let tok = |head: &str| format!("{}.{}.sig", b64(head), b64("{}"));
        let h = header(&tok(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#)).unwrap();
        assert_eq!(h.alg, Algorithm::ES256);
        assert_eq!(h.kid.as_deref(), Some("k1"));
        for alg in [r#"{"alg":"none"}"#, r#"{"alg":"None"}"#, r#"{"alg":"HS1"}"#] {
            assert_eq!(
                header(&tok(alg)).err(),
                Some(Refusal::JwtAlgorithm),
                "{alg}"
            );
        }
        for bad in [
            tok("{"),
            tok(r#"{"alg":5}"#),
            tok(r#"{"typ":"JWT"}"#),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            "%%%.e30.x".to_string(),
            format!("{}.e30.x", "A".repeat(MAX_TOKEN)),
        ] {
            assert_eq!(header(&bad).err(), Some(Refusal::JwtMalformed), "{bad}");
        }
    }

    #[test]
    fn claims_become_consumers_and_header_values_when_they_can() {
        assert_eq!(consumer_value(&json!("alice")).as_deref(), Some("alice"));
        assert_eq!(consumer_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(consumer_value(&json!("")), None);
        assert_eq!(consumer_value(&json!("a\nb")), None);
        assert_eq!(consumer_value(&json!(["a"])), None);
        let hv = |v| header_value(&v).map(|h| h.to_str().unwrap().to_string());
        assert_eq!(hv(json!("x")).as_deref(), Some("x"));
        assert_eq!(hv(json!(true)).as_deref(), Some("true"));
        assert_eq!(hv(json!(["read", "write"])).as_deref(), Some("read,write"));
        assert_eq!(hv(json!({"a": 1})), None);
        assert_eq!(hv(json!(["a", {"b": 1}])), None);
        assert_eq!(hv(json!("evil\r\nx-admin: 1")), None);
        assert_eq!(hv(json!("a".repeat(MAX_CLAIM_VALUE + 1))), None);
    }
}
