//! Validation helpers: the error list with file/line locations, and the parsers
//! for values that serde only sees as strings (durations, addresses, CIDRs, headers).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use ipnet::IpNet;

/// One problem found in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (or `<built-in>`, `<command line>`).
    pub file: String,
    /// 1-based line, 0 when the problem is not tied to a place.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Every error of one configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while a file is checked, turning byte spans into lines.
pub(crate) struct Diagnostics<'s> {
    file: &'s str,
    source: &'s str,
    errors: Vec<ConfigError>,
}

impl<'s> Diagnostics<'s> {
    pub(crate) fn new(file: &'s str, source: &'s str) -> Self {
        Diagnostics {
            file,
            source,
            errors: Vec::new(),
        }
    }

    /// Records an error at a byte span of the source.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// Records an error that has no place in the file.
    pub(crate) fn global(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: 0,
            column: 0,
            message: message.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(self.errors)
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

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

/// Parses a trusted-proxy entry: a CIDR (`10.0.0.0/8`) or a single IP.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "invalid trusted proxy {text:?}: expected an IP address or CIDR, e.g. \"10.0.0.0/8\""
        )
    })
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
    fn line_and_column() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
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
}
