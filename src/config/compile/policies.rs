//! Compiles the policy middlewares, `ip_filter`, `request_limits` and
//! `cors`: their lists and limits checked, each instance given the index its refusals
//! count under (`Snapshot::policies`). Looking them up by name and putting
//! them into chains is `middlewares`' and `routes`' part.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use crate::config::intern;
use crate::config::parse::{is_token, parse_duration, parse_filter_net, parse_size};
use crate::middleware::{Cors, CorsSettings, CorsWildcard, IpFilter, Middleware, RequestLimits};

/// The longest `max_age`: a day (Firefox's own cap; Chromium caps at 2h).
const MAX_AGE: u64 = 86_400;

/// The largest `max_body`: 1 TiB (a larger one is a typo for no limit).
const MAX_BODY: u64 = 1 << 40;
/// `max_header_count` at most: `server.max_headers`' own ceiling.
const MAX_HEADER_COUNT: i64 = 1000;
/// `max_header_bytes` and `max_url_length` at most: `server.max_header_bytes`'
/// own ceiling.
const MAX_HEAD_BYTES: i64 = 1 << 20;

/// The methods RFC 9110 and RFC 5789 define, to catch `"get"`.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// `type = "ip_filter"`.
pub(super) fn ip_filter(
    allow: &[String],
    deny: &[String],
    trusted: &[IpNet],
    policy: u16,
) -> Result<Middleware, String> {
    if allow.is_empty() && deny.is_empty() {
        return Err("ip_filter has no entries: expected at least one address or CIDR in allow or deny, e.g. deny = [\"192.0.2.0/24\"]".into());
    }
    let nets = |key: &str, list: &[String]| -> Result<Vec<IpNet>, String> {
        list.iter()
            .map(|entry| parse_filter_net(entry).map_err(|e| format!("ip_filter {key}: {e}")))
            .collect()
    };
    let allow = nets("allow", allow)?;
    let deny = nets("deny", deny)?;
    Ok(Middleware::IpFilter(IpFilter::new(
        allow, deny, trusted, policy,
    )))
}

/// The keys of `type = "request_limits"`, as written.
pub(super) struct RawLimits<'r> {
    pub(super) max_body: &'r Option<toml::Value>,
    pub(super) methods: &'r Option<Vec<String>>,
    pub(super) max_header_count: Option<i64>,
    pub(super) max_header_bytes: Option<i64>,
    pub(super) max_url_length: Option<i64>,
}

/// `type = "request_limits"`.
pub(super) fn request_limits(raw: RawLimits<'_>, policy: u16) -> Result<Middleware, String> {
    if raw.max_body.is_none()
        && raw.methods.is_none()
        && raw.max_header_count.is_none()
        && raw.max_header_bytes.is_none()
        && raw.max_url_length.is_none()
    {
        return Err("request_limits sets no limit: expected at least one of max_body, methods, max_header_count, max_header_bytes, max_url_length".into());
    }
    let max_body = match raw.max_body {
        None => None,
        Some(v) => {
            let n = parse_size(v).map_err(|e| format!("request_limits max_body: {e}"))?;
            if n == 0 || n > MAX_BODY {
                return Err(format!(
                    "request_limits max_body = {v} is out of range: expected 1 byte to 1TiB"
                ));
            }
            Some(n)
        }
    };
    let (methods, allow) = match raw.methods {
        None => (Vec::new(), None),
        Some(list) => methods(list)?,
    };
    let int = |key: &str, v: Option<i64>, max: i64| -> Result<Option<usize>, String> {
        match v {
            None => Ok(None),
            Some(n) if (1..=max).contains(&n) => Ok(Some(n as usize)),
            Some(n) => Err(format!(
                "request_limits {key} = {n} is out of range: expected 1 to {max}"
            )),
        }
    };
    Ok(Middleware::RequestLimits(RequestLimits {
        max_body,
        methods: methods.into(),
        allow,
        max_header_count: int("max_header_count", raw.max_header_count, MAX_HEADER_COUNT)?,
        max_header_bytes: int("max_header_bytes", raw.max_header_bytes, MAX_HEAD_BYTES)?,
        max_url_length: int("max_url_length", raw.max_url_length, MAX_HEAD_BYTES)?,
        policy,
    }))
}

/// The allowed methods and their `Allow` value. Methods are case-sensitive
/// tokens (RFC 9110 §9.1): `"get"` is another method than `GET`, and
/// almost surely a mistake, so a standard method in the wrong case is
/// refused with the right spelling.
fn methods(list: &[String]) -> Result<(Vec<Method>, Option<http::HeaderValue>), String> {
    if list.is_empty() {
        return Err("request_limits methods is empty: expected at least one method, e.g. [\"GET\", \"HEAD\"]".into());
    }
    let mut methods: Vec<Method> = Vec::with_capacity(list.len());
    for m in list {
        let upper = m.to_ascii_uppercase();
        if *m != upper && STANDARD_METHODS.contains(&upper.as_str()) {
            return Err(format!(
                "request_limits method {m:?} is invalid: methods are case-sensitive; did you mean {upper:?}?"
            ));
        }
        let method = is_token(m)
            .then(|| Method::from_bytes(m.as_bytes()).ok())
            .flatten()
            .ok_or_else(|| {
                format!("request_limits method {m:?} is invalid: expected a token such as \"GET\"")
            })?;
        if methods.contains(&method) {
            return Err(format!("request_limits method {m:?} is listed twice"));
        }
        methods.push(method);
    }
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let allow = intern::header_value(&names.join(", "));
    Ok((methods, allow))
}

/// The keys of `type = "cors"`, as written.
pub(super) struct RawCors<'r> {
    pub(super) allow_origins: &'r [String],
    pub(super) allow_methods: &'r Option<Vec<String>>,
    pub(super) allow_headers: &'r [String],
    pub(super) expose_headers: &'r [String],
    pub(super) allow_credentials: bool,
    pub(super) max_age: &'r Option<String>,
}

/// One `allow_origins` entry, checked.
#[derive(Debug, PartialEq)]
enum OriginEntry {
    Any,
    /// Lowercase.
    Exact(String),
    Wildcard(CorsWildcard),
}

/// `type = "cors"`.
pub(super) fn cors(raw: RawCors<'_>, policy: u16) -> Result<Middleware, String> {
    if raw.allow_origins.is_empty() {
        return Err("cors allow_origins is empty: expected at least one origin such as \"https://app.example.com\", or [\"*\"] for any".into());
    }
    let mut any_origin = false;
    let mut exact: Vec<HeaderValue> = Vec::new();
    let mut wildcards = Vec::new();
    for entry in raw.allow_origins {
        match parse_origin(entry)? {
            OriginEntry::Any => any_origin = true,
            OriginEntry::Exact(o) => {
                let v = intern::header_value(&o).ok_or_else(|| invalid_origin(entry, ""))?;
                if !exact.contains(&v) {
                    exact.push(v);
                }
            }
            OriginEntry::Wildcard(w) => wildcards.push(w),
        }
    }
    if exact.len() > usize::from(u16::MAX) {
        return Err("cors allow_origins has too many entries: expected at most 65535".into());
    }
    let methods = match raw.allow_methods {
        None => vec![Method::GET, Method::HEAD, Method::POST],
        Some(list) => cors_methods(list)?,
    };
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    let allow_methods = intern::header_value(&names.join(", "))
        .ok_or("cors allow_methods cannot be sent as a header value")?;
    let any_header = raw.allow_headers.iter().any(|h| h == "*");
    let headers = header_list("allow_headers", raw.allow_headers)?;
    let expose_names = header_list("expose_headers", raw.expose_headers)?;
    if raw.allow_credentials && any_origin {
        return Err("cors allow_credentials = true with allow_origins = [\"*\"] is refused: the Fetch standard forbids \"*\" with credentials; list the origins instead".into());
    }
    if raw.allow_credentials && any_header {
        return Err("cors allow_credentials = true with allow_headers = [\"*\"] is refused: the Fetch standard forbids \"*\" with credentials; list the headers instead".into());
    }
    let expose = if expose_names.is_empty() {
        None
    } else {
        let list: Vec<&str> = expose_names.iter().map(HeaderName::as_str).collect();
        intern::header_value(&list.join(", "))
    };
    let max_age = match raw.max_age {
        None => None,
        Some(text) => {
            let d = parse_duration(text).map_err(|e| format!("cors max_age: {e}"))?;
            if d.as_secs() > MAX_AGE {
                return Err(format!(
                    "cors max_age = {text:?} is out of range: expected at most 24h"
                ));
            }
            Some(d.as_secs())
        }
    };
    let settings = CorsSettings {
        any_origin,
        exact: exact.into(),
        wildcards: wildcards.into(),
        methods: methods.into(),
        allow_methods,
        any_header,
        headers: headers.into(),
        expose,
        credentials: raw.allow_credentials,
        max_age,
        max_age_value: max_age.map(HeaderValue::from),
        origins: raw
            .allow_origins
            .iter()
            .map(|o| o.as_str().into())
            .collect(),
        expose_names: expose_names.into(),
    };
    Ok(Middleware::Cors(Cors {
        settings: Arc::new(settings),
        policy,
    }))
}

fn invalid_origin(entry: &str, why: &str) -> String {
    format!("cors origin {entry:?} is invalid: expected scheme://host[:port], e.g. \"https://app.example.com\"{why}")
}

/// An `allow_origins` entry: `*`, `null`, `scheme://host[:port]`, or
/// `scheme://*.domain[:port]`; lowercased.
fn parse_origin(entry: &str) -> Result<OriginEntry, String> {
    match entry {
        "*" => return Ok(OriginEntry::Any),
        "null" => return Ok(OriginEntry::Exact("null".into())),
        _ => {}
    }
    let lower = entry.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(invalid_origin(entry, " (it has no scheme)"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(invalid_origin(entry, " (it has no scheme)"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(invalid_origin(
            entry,
            " (an origin has no path, not even \"/\")",
        ));
    }
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(invalid_origin(entry, " (the port must be 1 to 65535)"));
        }
    }
    let (wild, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    if name.contains('*') {
        return Err(invalid_origin(
            entry,
            " (a wildcard is only allowed as the whole first label, as in \"https://*.example.com\")",
        ));
    }
    let bracketed = !wild && name.starts_with('[') && name.ends_with(']') && name.len() > 2;
    let host_ok = bracketed
        || (!name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if !host_ok {
        return Err(invalid_origin(entry, ""));
    }
    if wild {
        return Ok(OriginEntry::Wildcard(CorsWildcard {
            scheme: format!("{scheme}://").into(),
            suffix: format!(".{name}").into(),
            port: port.map_or(String::new(), |p| format!(":{p}")).into(),
        }));
    }
    Ok(OriginEntry::Exact(lower))
}

/// `allow_methods`: tokens, case-sensitive (a standard method in the
/// wrong case is refused with its spelling).
fn cors_methods(list: &[String]) -> Result<Vec<Method>, String> {
    if list.is_empty() {
        return Err(
            "cors allow_methods is empty: expected at least one method, e.g. [\"GET\", \"POST\"]"
                .into(),
        );
    }
    let mut methods: Vec<Method> = Vec::with_capacity(list.len());
    for m in list {
        let upper = m.to_ascii_uppercase();
        if *m != upper && STANDARD_METHODS.contains(&upper.as_str()) {
            return Err(format!(
                "cors allow_methods entry {m:?} is invalid: methods are case-sensitive; did you mean {upper:?}?"
            ));
        }
        let method = is_token(m)
            .then(|| Method::from_bytes(m.as_bytes()).ok())
            .flatten()
            .ok_or_else(|| {
                format!(
                    "cors allow_methods entry {m:?} is invalid: expected a token such as \"GET\""
                )
            })?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

/// `allow_headers` or `expose_headers`: header names, interned (`*` is
/// kept out of `allow_headers`' list: it means any).
fn header_list(key: &str, list: &[String]) -> Result<Vec<HeaderName>, String> {
    let mut out: Vec<HeaderName> = Vec::with_capacity(list.len());
    for name in list {
        if key == "allow_headers" && name == "*" {
            continue;
        }
        let parsed = intern::header_name(name).ok_or_else(|| {
            format!("cors {key} entry {name:?} is invalid: expected a header name such as \"content-type\"")
        })?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod cors_tests {
    use super::*;

    fn wildcard(scheme: &str, suffix: &str, port: &str) -> OriginEntry {
        OriginEntry::Wildcard(CorsWildcard {
            scheme: scheme.into(),
            suffix: suffix.into(),
            port: port.into(),
        })
    }

    #[test]
    fn origins_are_checked_and_lowercased() {
        let ok = [
            ("*", OriginEntry::Any),
            ("null", OriginEntry::Exact("null".into())),
            (
                "HTTPS://App.Example.com",
                OriginEntry::Exact("https://app.example.com".into()),
            ),
            (
                "http://127.0.0.1:8080",
                OriginEntry::Exact("http://127.0.0.1:8080".into()),
            ),
            (
                "http://[::1]:3000",
                OriginEntry::Exact("http://[::1]:3000".into()),
            ),
            (
                "https://*.example.org",
                wildcard("https://", ".example.org", ""),
            ),
            (
                "https://*.example.org:8443",
                wildcard("https://", ".example.org", ":8443"),
            ),
        ];
        for (entry, want) in ok {
            assert_eq!(parse_origin(entry), Ok(want), "{entry}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://",
            "https://a.example.com:0",
            "https://a.example.com:99999",
            "https://a.example.com:",
            "https://a.*.example.com",
            "https://*",
            "https://*.",
            "https://user@a.example.com",
            "://a.example.com",
            "1http://a.example.com",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad} should be refused");
        }
    }
}
