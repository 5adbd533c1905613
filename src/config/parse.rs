//! Parsers for values serde sees only as strings or loose TOML values: durations,
//! addresses, endpoints, CIDRs, sizes, status ranges, header names and values, connect
//! targets, and friendlier wording for serde's own messages. Text in, value or
//! message out: the caller adds where in the file the value was.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::intern;
use super::snapshot::ConnectTarget;

/// Parses `"250ms"`, `"2s"`, `"1m"`, `"1h"`, or a combination like `"1m30s"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!("invalid duration {text:?}: expected a number with a unit (ms, s, m, h), e.g. \"500ms\" or \"30s\"")
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(expected());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| expected())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(expected()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses a listen address: `IP:port`.
pub(crate) fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!("invalid listen address {text:?}: expected IP:port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\"")
    })
}

/// An upstream endpoint as written: an IP address, or a name the control
/// plane resolves (the data plane never resolves names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointAddr {
    Ip(SocketAddr),
    Name(String, u16),
}

/// Parses an upstream endpoint address: `IP:port` or `host:port`.
pub(crate) fn parse_endpoint(text: &str) -> Result<EndpointAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(EndpointAddr::Ip(addr));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "invalid endpoint address {text:?}: expected IP:port or host:port, e.g. \"127.0.0.1:9000\""
        ));
    };
    match port.parse::<u16>() {
        Ok(port) if port != 0 && !host.is_empty() => Ok(EndpointAddr::Name(host.to_string(), port)),
        _ => Err(format!(
            "invalid endpoint address {text:?}: expected IP:port or host:port with a port number 1-65535"
        )),
    }
}

/// A CIDR (`10.0.0.0/8`) or a single IP (a `/32` or `/128`).
fn net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Parses a trusted-proxy entry: a CIDR (`10.0.0.0/8`) or a single IP.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    net(text).ok_or_else(|| {
        format!(
            "invalid trusted proxy {text:?}: expected an IP address or CIDR, e.g. \"10.0.0.0/8\""
        )
    })
}

/// Parses an `ip_filter` entry as [`parse_cidr`] does, more strictly: a
/// CIDR with host bits set (`10.0.0.1/8`, usually a typo for the network
/// or for a single address) and an IPv4-mapped IPv6 entry (which would
/// never match: mapped client addresses are matched as IPv4) are refused
/// with the entry to write instead.
pub(crate) fn parse_filter_net(text: &str) -> Result<IpNet, String> {
    let Some(parsed) = net(text) else {
        if let Some((addr, len)) = text.split_once('/') {
            let max = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => 0,
            };
            if max > 0 && len.parse::<u32>().is_ok_and(|len| len > max) {
                return Err(format!(
                    "invalid CIDR {text:?}: expected a prefix length from 0 to {max}"
                ));
            }
        }
        return Err(format!(
            "invalid address {text:?}: expected an IP address or CIDR, e.g. \"10.0.0.0/8\", \"::1\" or \"2001:db8::/32\""
        ));
    };
    if parsed.trunc() != parsed {
        return Err(format!(
            "CIDR {text:?} has host bits set: expected the network address {:?} (or {:?} for the one address)",
            parsed.trunc().to_string(),
            parsed.addr().to_string()
        ));
    }
    if let IpNet::V6(v6) = parsed {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            let v4 = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_err(|e| e.to_string())?;
            let v4 = match v4.prefix_len() {
                32 => v4.addr().to_string(),
                _ => v4.to_string(),
            };
            return Err(format!(
                "address {text:?} is IPv4-mapped: expected it as IPv4, {v4:?} (mapped client addresses are matched as IPv4)"
            ));
        }
    }
    Ok(parsed)
}

/// Parses a size: bytes as a TOML integer, or a string of a number and a
/// unit: `B`, binary `KiB` `MiB` `GiB`, decimal `k` (or `K`, `kB`, `KB`),
/// `M` (`MB`) and `G` (`GB`). No spaces, no fractions.
pub(crate) fn parse_size(v: &toml::Value) -> Result<u64, String> {
    let text = match v {
        toml::Value::Integer(n) => {
            return u64::try_from(*n)
                .map_err(|_| format!("invalid size {n}: expected a non-negative number of bytes"))
        }
        toml::Value::String(s) => s.as_str(),
        other => {
            return Err(format!(
                "invalid size {other}: expected a number of bytes or a string such as \"10MiB\""
            ))
        }
    };
    let bad = || {
        format!("invalid size {text:?}: expected a number and a unit (B, KiB, MiB, GiB, or decimal k, KB, M, MB, G, GB), e.g. \"10MiB\"")
    };
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = text[..digits].parse().map_err(|_| bad())?;
    let unit: u64 = match &text[digits..] {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// `200`, `"200-399"` or `"2xx"` as an inclusive range of statuses.
pub(crate) fn parse_status_range(v: &toml::Value) -> Result<(u16, u16), String> {
    let valid = |n: i64| (100..=599).contains(&n);
    match v {
        toml::Value::Integer(n) if valid(*n) => Ok((*n as u16, *n as u16)),
        toml::Value::String(s) => {
            let bad = || format!("invalid status {s:?}: expected a status like 200, a range like \"200-399\", or a class like \"2xx\"");
            let t = s.trim();
            if let Some(class) = t.strip_suffix("xx") {
                let c: i64 = class.parse().map_err(|_| bad())?;
                if !(1..=5).contains(&c) {
                    return Err(bad());
                }
                return Ok(((c * 100) as u16, (c * 100 + 99) as u16));
            }
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let a: i64 = a.trim().parse().map_err(|_| bad())?;
            let b: i64 = b.trim().parse().map_err(|_| bad())?;
            if valid(a) && valid(b) && a <= b {
                Ok((a as u16, b as u16))
            } else {
                Err(bad())
            }
        }
        other => Err(format!(
            "invalid status {other}: expected a status from 100 to 599, a range like \"200-399\", or a class like \"2xx\""
        )),
    }
}

pub(crate) fn header_pairs(
    map: &BTreeMap<String, String>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    map.iter()
        .map(|(k, val)| {
            let name = intern::header_name(k)
                .ok_or_else(|| format!("invalid header name {k:?}: expected a token such as \"x-env\""))?;
            let value = intern::header_value(val)
                .ok_or_else(|| format!("invalid value for header {k:?}: {val:?} has characters not allowed in a header value"))?;
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn header_names(list: &[String]) -> Result<Vec<http::HeaderName>, String> {
    list.iter()
        .map(|k| {
            intern::header_name(k).ok_or_else(|| {
                format!("invalid header name {k:?}: expected a token such as \"x-debug\"")
            })
        })
        .collect()
}

/// An HTTP token (RFC 9110 §5.6.2).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `[connect] allow` entry: `host:port`, `IP:port` (`[v6]:port`) or
/// `CIDR:port`.
pub(crate) fn parse_connect_target(text: &str) -> Result<ConnectTarget, String> {
    let bad = || {
        format!("connect.allow: invalid entry {text:?}: expected host:port, IP:port or CIDR:port with a port 1-65535, e.g. \"db.internal:5432\" or \"10.0.0.0/8:443\"")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(bad()),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(net) = host.parse::<ipnet::IpNet>() {
        return Ok(ConnectTarget::Net(net.trunc(), port));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ConnectTarget::Net(ip.into(), port));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(bad());
    }
    Ok(ConnectTarget::Name(name.to_ascii_lowercase().into(), port))
}

/// Serde's type names mean little to an operator: say "an integer", not "i64".
pub(crate) fn humanize(message: &str) -> String {
    message
        .trim_end()
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected a boolean", "expected true or false")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "10", "s", "5 s", "2x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn addresses_and_cidrs() {
        assert!(parse_listen_addr("127.0.0.1:80").is_ok());
        assert!(parse_listen_addr("localhost:80").is_err());
        assert_eq!(
            parse_endpoint("127.0.0.1:9000"),
            Ok(EndpointAddr::Ip("127.0.0.1:9000".parse().unwrap()))
        );
        assert_eq!(
            parse_endpoint("api.internal:8080"),
            Ok(EndpointAddr::Name("api.internal".into(), 8080))
        );
        assert!(parse_endpoint("127.0.0.1").is_err());
        assert!(parse_endpoint("host:notaport").is_err());
        assert!(parse_endpoint("host:0").is_err());
        assert!(parse_endpoint(":80").is_err());
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("::1").is_ok());
        assert!(parse_cidr("10.0.0.0/99").is_err());
    }

    #[test]
    fn filter_entries() {
        let net = |s: &str| parse_filter_net(s).map(|n| n.to_string());
        assert_eq!(net("10.0.0.0/8"), Ok("10.0.0.0/8".into()));
        assert_eq!(net("::1"), Ok("::1/128".into()));
        assert_eq!(net("2001:db8::/32"), Ok("2001:db8::/32".into()));
        assert_eq!(
            net("10.0.0.0/33"),
            Err(r#"invalid CIDR "10.0.0.0/33": expected a prefix length from 0 to 32"#.into())
        );
        assert_eq!(
            net("10.0.0.1/8"),
            Err(r#"CIDR "10.0.0.1/8" has host bits set: expected the network address "10.0.0.0/8" (or "10.0.0.1" for the one address)"#.into())
        );
        assert_eq!(
            net("::ffff:10.1.2.3"),
            Err(r#"address "::ffff:10.1.2.3" is IPv4-mapped: expected it as IPv4, "10.1.2.3" (mapped client addresses are matched as IPv4)"#.into())
        );
        assert!(net("::ffff:0:0/96").is_err());
        assert!(net("localhost").is_err());
        assert!(net("2001:db8::/129").is_err());
    }

    #[test]
    fn sizes() {
        let size = |s: &str| parse_size(&toml::Value::String(s.into()));
        assert_eq!(size("10MiB"), Ok(10 << 20));
        assert_eq!(size("512B"), Ok(512));
        assert_eq!(size("1k"), Ok(1000));
        assert_eq!(size("2KB"), Ok(2000));
        assert_eq!(size("3KiB"), Ok(3072));
        assert_eq!(size("1M"), Ok(1_000_000));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("42"), Ok(42));
        assert_eq!(parse_size(&toml::Value::Integer(7)), Ok(7));
        assert!(parse_size(&toml::Value::Integer(-1)).is_err());
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "10 MiB",
            "10mib",
            "10XB",
            "99999999999999GiB",
        ] {
            assert!(size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn status_ranges() {
        let status = |v: toml::Value| parse_status_range(&v);
        assert_eq!(status(200.into()), Ok((200, 200)));
        assert_eq!(status("2xx".into()), Ok((200, 299)));
        assert_eq!(status(" 300 - 304 ".into()), Ok((300, 304)));
        assert_eq!(status("5xx".into()), Ok((500, 599)));
        for bad in ["0xx", "6xx", "99", "300-200", "2xx-3xx", "abc"] {
            assert!(status(bad.into()).is_err(), "{bad:?} should be refused");
        }
        assert!(status(600.into()).is_err());
        assert!(status(true.into()).is_err());
    }

    #[test]
    fn connect_targets_and_tokens() {
        assert_eq!(
            parse_connect_target("Db.Example.:5432"),
            Ok(ConnectTarget::Name("db.example".into(), 5432))
        );
        assert_eq!(
            parse_connect_target("10.9.8.7/8:443"),
            Ok(ConnectTarget::Net("10.0.0.0/8".parse().unwrap(), 443))
        );
        assert_eq!(
            parse_connect_target("[2001:db8::1]:22"),
            Ok(ConnectTarget::Net("2001:db8::1/128".parse().unwrap(), 22))
        );
        for bad in ["db:0", "db", ":80", "-db-:80", "a..b:80", "db:65536"] {
            assert!(
                parse_connect_target(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(is_token("websocket") && is_token("h2c") && is_token("x-a.b~c"));
        assert!(!is_token("") && !is_token("web socket") && !is_token("a/b"));
    }

    #[test]
    fn serde_messages_in_an_operators_words() {
        assert_eq!(
            humanize("invalid type: string \"x\", expected i64\n"),
            "invalid type: string \"x\", expected an integer"
        );
        assert_eq!(humanize("expected u64"), "expected a non-negative integer");
        assert_eq!(humanize("expected a boolean"), "expected true or false");
    }
}
