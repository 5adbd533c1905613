//! Compiles the policy middlewares, `ip_filter` and `request_limits`: their
//! lists and limits checked, each instance given the index its refusals
//! count under (`Snapshot::policies`). Looking them up by name and putting
//! them into chains is `middlewares`' and `routes`' part.

use http::Method;
use ipnet::IpNet;

use crate::config::intern;
use crate::config::parse::{is_token, parse_filter_net, parse_size};
use crate::middleware::{IpFilter, Middleware, RequestLimits};

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
