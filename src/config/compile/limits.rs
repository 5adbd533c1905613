//! Compiles the limit middlewares, `rate_limit` (the rate, burst, delay,
//! key and table size checked) and `connection_limit` (the maximum, key and
//! table size), each given its process-wide table from the control plane's
//! registry (`limit/registry.rs`), found again by the definition's identity
//! so that a reload that leaves it alone keeps every client's limit. The
//! tables themselves are `limit/`'s; the requests' keys `middleware/limit_key.rs`'.

use std::sync::Arc;

use http::StatusCode;
use ipnet::IpNet;

use crate::config::intern;
use crate::config::parse::is_token;
use crate::limit::{ConnTable, LimitTables, RateTable, MAX_HORIZON_US, MAX_KEYS};
use crate::middleware::{
    ConnSettings, ConnectionLimit, KeySource, LimitKey, Middleware, Per, RateLimit, RateSettings,
};

/// `max_keys` unless configured: 64 Ki keys, 512 KiB of table.
const DEFAULT_MAX_KEYS: i64 = 65_536;
/// The fastest rate: one request a microsecond (the tables' unit).
const MAX_PER_SECOND: u64 = 1_000_000;
/// `connection_limit` `max` at most (the count's bits are 32).
const MAX_IN_FLIGHT: i64 = 1_000_000;

/// The keys of `type = "rate_limit"`, as written.
pub(super) struct RawRate<'r> {
    pub(super) rate: &'r Option<String>,
    pub(super) burst: Option<i64>,
    pub(super) delay: Option<i64>,
    pub(super) key: &'r Option<toml::Value>,
    pub(super) max_keys: Option<i64>,
    pub(super) status: Option<i64>,
}

/// `type = "rate_limit"` named `name`.
pub(super) fn rate_limit(
    name: &str,
    raw: RawRate<'_>,
    trusted: &[IpNet],
    tables: &LimitTables,
    policy: u16,
) -> Result<Middleware, String> {
    let text = raw.rate.as_deref().ok_or(
        "rate_limit needs rate: expected COUNT/UNIT with a unit of s, m or h, e.g. rate = \"100/s\"",
    )?;
    let (count, per) = parse_rate(text)?;
    // T = 1 / rate, to the nearest microsecond.
    let period_us = per.seconds() * 1_000_000;
    let interval_us = (period_us + count / 2) / count;
    let burst = match raw.burst.unwrap_or(0) {
        n if n < 0 => {
            return Err(format!(
                "rate_limit burst = {n} is out of range: expected 0 or more (the requests allowed above the rate at once)"
            ))
        }
        n => n as u64,
    };
    let horizon = burst
        .checked_add(1)
        .and_then(|b| b.checked_mul(interval_us))
        .filter(|&h| h <= MAX_HORIZON_US);
    if horizon.is_none() {
        return Err(format!(
            "rate_limit burst = {burst} is out of range for rate = {text:?}: a burst must refill within 30 days"
        ));
    }
    let delay = match raw.delay {
        None => burst,
        Some(n) if (0..=burst as i64).contains(&n) => n as u64,
        Some(n) => {
            return Err(format!(
                "rate_limit delay = {n} is out of range: expected 0 to burst = {burst} (how many requests of a burst pass at once)"
            ))
        }
    };
    let key = limit_key("rate_limit", raw.key, trusted)?;
    let max_keys = max_keys("rate_limit", raw.max_keys)?;
    let status = status("rate_limit", raw.status)?;
    let quoted_name = sf_string(name)?;
    let policy_value =
        intern::header_value(&format!("{quoted_name};q={count};w={}", per.seconds())).ok_or_else(
            || format!("rate_limit name {name:?} cannot be sent in RateLimit-Policy"),
        )?;
    let tolerance_us = burst * interval_us;
    // The settings that give a slot its meaning: a table is kept while
    // they stay, and a changed one starts afresh.
    let identity = format!(
        "{name}\n{interval_us}\n{tolerance_us}\n{}\n{max_keys}",
        key_text(&key)
    );
    let table = tables.rate(identity, || {
        RateTable::new(max_keys as usize, interval_us, tolerance_us)
    });
    Ok(Middleware::RateLimit(RateLimit {
        settings: Arc::new(RateSettings {
            table,
            key,
            count,
            per,
            burst,
            delay,
            delay_us: delay * interval_us,
            max_keys,
            status,
            policy_value,
            quoted_name: quoted_name.into(),
        }),
        policy,
    }))
}

/// The keys of `type = "connection_limit"`, as written.
pub(super) struct RawConns<'r> {
    pub(super) max: Option<i64>,
    pub(super) key: &'r Option<toml::Value>,
    pub(super) max_keys: Option<i64>,
    pub(super) status: Option<i64>,
}

/// `type = "connection_limit"` named `name`; its table is added to
/// `snapshot_tables`, where its guards find it.
pub(super) fn connection_limit(
    name: &str,
    raw: RawConns<'_>,
    trusted: &[IpNet],
    tables: &LimitTables,
    snapshot_tables: &mut Vec<Arc<ConnTable>>,
    policy: u16,
) -> Result<Middleware, String> {
    let max = match raw.max {
        None => return Err("connection_limit needs max: expected the most requests in flight per key, e.g. max = 10".into()),
        Some(n) if (1..=MAX_IN_FLIGHT).contains(&n) => n as u32,
        Some(n) => {
            return Err(format!(
                "connection_limit max = {n} is out of range: expected 1 to {MAX_IN_FLIGHT}"
            ))
        }
    };
    let key = limit_key("connection_limit", raw.key, trusted)?;
    let max_keys = max_keys("connection_limit", raw.max_keys)?;
    let status = status("connection_limit", raw.status)?;
    // `max` is not part of it: the counts in flight stay true whatever it is.
    let identity = format!("{name}\n{}\n{max_keys}", key_text(&key));
    let table = tables.conns(identity, || ConnTable::new(max_keys as usize));
    // At most one per definition, so never near the bound.
    let index = u16::try_from(snapshot_tables.len()).unwrap_or(u16::MAX);
    snapshot_tables.push(table.clone());
    Ok(Middleware::ConnectionLimit(ConnectionLimit {
        settings: Arc::new(ConnSettings {
            table,
            index,
            key,
            max,
            max_keys,
            status,
        }),
        policy,
    }))
}

/// `"COUNT/UNIT"`, COUNT a positive integer, UNIT `s`, `m` or `h`.
fn parse_rate(text: &str) -> Result<(u64, Per), String> {
    let invalid = || {
        format!("rate_limit rate {text:?} is invalid: expected COUNT/UNIT with a unit of s, m or h, e.g. \"100/s\"")
    };
    let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
    let count = count.trim();
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let per = match unit.trim() {
        "s" | "sec" | "second" => Per::Second,
        "m" | "min" | "minute" => Per::Minute,
        "h" | "hour" => Per::Hour,
        other => {
            return Err(format!(
                "rate_limit rate {text:?} has an unknown unit {other:?}: expected s, m or h, e.g. \"100/s\""
            ))
        }
    };
    let count: u64 = count.parse().map_err(|_| invalid())?;
    if count == 0 {
        return Err(format!(
            "rate_limit rate {text:?} is out of range: expected at least 1 request per {}",
            per.suffix()
        ));
    }
    if count > MAX_PER_SECOND * per.seconds() {
        return Err(format!(
            "rate_limit rate {text:?} is out of range: expected at most {MAX_PER_SECOND}/s"
        ));
    }
    Ok((count, per))
}

/// `key`: one source, or a list of sources combined (default `client_ip`).
fn limit_key(kind: &str, raw: &Option<toml::Value>, trusted: &[IpNet]) -> Result<LimitKey, String> {
    let entries: Vec<&str> = match raw {
        None => vec!["client_ip"],
        Some(toml::Value::String(s)) => vec![s.as_str()],
        Some(toml::Value::Array(list)) => {
            if list.is_empty() {
                return Err(format!("{kind} key is empty: expected a source such as \"client_ip\", or a list of them"));
            }
            list.iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        format!("{kind} key entry {v} is invalid: expected a string such as \"client_ip\" or \"header:x-api-key\"")
                    })
                })
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(format!(
                "{kind} key = {other} is invalid: expected a string such as \"client_ip\", or a list of them"
            ))
        }
    };
    let mut sources = Vec::with_capacity(entries.len());
    for entry in entries {
        let source = key_source(kind, entry)?;
        if sources.contains(&source) {
            return Err(format!("{kind} key {entry:?} is listed twice"));
        }
        sources.push(source);
    }
    Ok(LimitKey {
        sources: sources.into(),
        trusted: trusted.into(),
    })
}

fn key_source(kind: &str, entry: &str) -> Result<KeySource, String> {
    let invalid = |why: &str| {
        format!("{kind} key {entry:?} is invalid: expected client_ip, route, consumer, header:NAME, cookie:NAME or claim:NAME{why}")
    };
    Ok(match entry.split_once(':') {
        None => match entry {
            "client_ip" => KeySource::ClientIp,
            "route" => KeySource::Route,
            "consumer" => KeySource::Consumer,
            _ => return Err(invalid("")),
        },
        Some(("header", name)) => KeySource::Header(
            intern::header_name(name).ok_or_else(|| invalid(" (not a header name)"))?,
        ),
        Some(("cookie", name)) if is_token(name) => KeySource::Cookie(name.into()),
        Some(("cookie", _)) => return Err(invalid(" (not a cookie name)")),
        Some(("claim", name)) if !name.is_empty() => KeySource::Claim(entry.into()),
        Some(_) => return Err(invalid("")),
    })
}

/// The key as written, one line per source (for a table's identity).
fn key_text(key: &LimitKey) -> String {
    let parts: Vec<String> = key.sources.iter().map(KeySource::text).collect();
    parts.join(",")
}

fn max_keys(kind: &str, raw: Option<i64>) -> Result<u64, String> {
    match raw.unwrap_or(DEFAULT_MAX_KEYS) {
        n if (1..=MAX_KEYS as i64).contains(&n) => Ok(n as u64),
        n => Err(format!(
            "{kind} max_keys = {n} is out of range: expected 1 to {MAX_KEYS} (8 bytes a key)"
        )),
    }
}

fn status(kind: &str, raw: Option<i64>) -> Result<StatusCode, String> {
    match raw {
        None | Some(429) => Ok(StatusCode::TOO_MANY_REQUESTS),
        Some(503) => Ok(StatusCode::SERVICE_UNAVAILABLE),
        Some(n) => Err(format!(
            "{kind} status = {n} is invalid: expected 429 or 503"
        )),
    }
}

/// `name` as a structured-field string (RFC 8941 §3.3.3): quoted, `\` and
/// `"` escaped; printable ASCII only.
fn sf_string(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                return Err(format!(
                    "rate_limit name {name:?} cannot be sent in the RateLimit fields: expected printable ASCII"
                ))
            }
        }
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_parsed() {
        assert_eq!(parse_rate("100/s"), Ok((100, Per::Second)));
        assert_eq!(parse_rate("600/m"), Ok((600, Per::Minute)));
        assert_eq!(parse_rate("10/h"), Ok((10, Per::Hour)));
        for bad in ["abc", "0/s", "100/x", "/s", "-1/s", "1.5/s", "2000000/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(sf_string("per_client").unwrap(), "\"per_client\"");
        assert_eq!(sf_string("a\"b").unwrap(), "\"a\\\"b\"");
        assert!(sf_string("é").is_err());
    }
}
