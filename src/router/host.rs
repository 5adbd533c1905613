//! Host conditions: validating configured hosts at build time and normalising the received
//! host (port, case, trailing dot) at request time without allocating.

/// Longest received host (after removing the port) that can match an exact or wildcard
/// route; longer ones only reach routes without a host condition.
pub(crate) const MAX_HOST_LEN: usize = 255;

/// A validated host condition, stored lowercase so request-time comparison is bytewise.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HostMatcher {
    Any,
    Exact(Box<str>),
    /// The suffix including its leading dot: "*.example.com" is stored as ".example.com".
    Wildcard(Box<str>),
}

const EXPECTED: &str =
    r#"expected a hostname like "api.example.com", a wildcard like "*.example.com" or an IP"#;

impl HostMatcher {
    pub(crate) fn compile(host: Option<&str>) -> Result<HostMatcher, String> {
        let Some(raw) = host else {
            return Ok(HostMatcher::Any);
        };
        if raw.is_empty() {
            return Err(format!("host \"\" is empty: {EXPECTED}"));
        }
        if let Some(domain) = raw.strip_prefix("*.") {
            let domain = domain.strip_suffix('.').unwrap_or(domain);
            if domain.is_empty() {
                return Err(format!(
                    "wildcard host {raw:?} needs a domain after \"*.\", as in \"*.example.com\""
                ));
            }
            validate_name(raw, domain)?;
            return Ok(HostMatcher::Wildcard(
                format!(".{}", domain.to_ascii_lowercase()).into(),
            ));
        }
        if raw.contains('*') {
            return Err(format!(
                "host {raw:?} may only use '*' as a leading \"*.\", as in \"*.example.com\""
            ));
        }
        if let Some(inner) = raw.strip_prefix('[') {
            let ok = inner.strip_suffix(']').is_some_and(|addr| {
                addr.contains(':')
                    && addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            });
            if !ok {
                return Err(format!(
                    "host {raw:?} is not a bracketed IPv6 address like \"[::1]\" (ports are \
                     not allowed)"
                ));
            }
            return Ok(HostMatcher::Exact(raw.to_ascii_lowercase().into()));
        }
        let name = raw.strip_suffix('.').unwrap_or(raw);
        if name.is_empty() {
            return Err(format!("host {raw:?} has no name: {EXPECTED}"));
        }
        validate_name(raw, name)?;
        Ok(HostMatcher::Exact(name.to_ascii_lowercase().into()))
    }
}

fn validate_name(raw: &str, name: &str) -> Result<(), String> {
    if name.contains(':') {
        return Err(format!(
            "host {raw:?} must not include a port; IPv6 addresses need brackets, as in \"[::1]\""
        ));
    }
    if name.len() > 253 {
        return Err(format!("host {raw:?} is longer than 253 bytes"));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("host {raw:?} has an empty label: {EXPECTED}"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "host {raw:?} contains {c:?}: expected letters, digits, '-', '_' or '.' \
             (use punycode for international names)"
        ));
    }
    Ok(())
}

/// Strips the port and one trailing dot from a received host and lowercases it into `buf`.
/// Returns `None` for hosts that cannot match any host condition (empty, malformed IPv6
/// literal, longer than [`MAX_HOST_LEN`]).
pub(crate) fn normalize<'b>(host: &'b str, buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let bytes = host.as_bytes();
    let name = if bytes.first() == Some(&b'[') {
        let end = bytes.iter().position(|&b| b == b']')?;
        let (literal, after) = host.split_at(end + 1);
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        literal
    } else {
        // Bytes, not `split_once(':')`: this runs for every request.
        let end = bytes.iter().position(|&b| b == b':').unwrap_or(host.len());
        let name = &host[..end];
        name.strip_suffix('.').unwrap_or(name)
    };
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return None;
    }
    // Already lowercase (as clients send it): the name itself, not a copy.
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    // ASCII lowercasing keeps UTF-8 valid, so this never fails.
    std::str::from_utf8(out).ok()
}

/// `suffix` carries its leading dot, so the bare domain never matches and at least one
/// label must precede it.
pub(crate) fn wildcard_matches(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len() && host.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(host: &str) -> Option<String> {
        let mut buf = [0; MAX_HOST_LEN];
        normalize(host, &mut buf).map(str::to_owned)
    }

    #[test]
    fn normalize_strips_port_case_and_trailing_dot() {
        let cases = [
            ("example.com", Some("example.com")),
            ("Example.COM", Some("example.com")),
            ("example.com:8080", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("EXAMPLE.com.:443", Some("example.com")),
            ("[::1]", Some("[::1]")),
            ("[::1]:8080", Some("[::1]")),
            ("[FE80::1]:80", Some("[fe80::1]")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("[::1", None),
            ("[::1]x", None),
            ("", None),
            (":80", None),
            (".", None),
        ];
        for (host, want) in cases {
            assert_eq!(norm(host).as_deref(), want, "host {host:?}");
        }
    }

    #[test]
    fn normalize_rejects_overlong_hosts() {
        let max = "a".repeat(MAX_HOST_LEN);
        assert_eq!(norm(&max).as_deref(), Some(max.as_str()));
        assert_eq!(norm(&format!("{max}:80")).as_deref(), Some(max.as_str()));
        assert_eq!(norm(&"a".repeat(MAX_HOST_LEN + 1)), None);
    }

    #[test]
    fn wildcard_needs_a_subdomain() {
        assert!(wildcard_matches("a.example.com", ".example.com"));
        assert!(wildcard_matches("a.b.example.com", ".example.com"));
        assert!(!wildcard_matches("example.com", ".example.com"));
        assert!(!wildcard_matches("badexample.com", ".example.com"));
    }

    #[test]
    fn compile_normalises_valid_hosts() {
        let exact = |s: &str| Ok(HostMatcher::Exact(s.into()));
        assert_eq!(HostMatcher::compile(None), Ok(HostMatcher::Any));
        assert_eq!(
            HostMatcher::compile(Some("API.Example.com")),
            exact("api.example.com")
        );
        assert_eq!(
            HostMatcher::compile(Some("example.com.")),
            exact("example.com")
        );
        assert_eq!(HostMatcher::compile(Some("[::1]")), exact("[::1]"));
        assert_eq!(HostMatcher::compile(Some("10.0.0.1")), exact("10.0.0.1"));
        assert_eq!(
            HostMatcher::compile(Some("*.Example.com")),
            Ok(HostMatcher::Wildcard(".example.com".into()))
        );
    }

    #[test]
    fn compile_rejects_bad_hosts_with_messages() {
        let cases = [
            ("", format!("host \"\" is empty: {EXPECTED}")),
            (
                "*.",
                r#"wildcard host "*." needs a domain after "*.", as in "*.example.com""#.into(),
            ),
            (
                "*",
                r#"host "*" may only use '*' as a leading "*.", as in "*.example.com""#.into(),
            ),
            (
                "api.*.com",
                r#"host "api.*.com" may only use '*' as a leading "*.", as in "*.example.com""#
                    .into(),
            ),
            (
                "*.*.example.com",
                r#"host "*.*.example.com" contains '*': expected letters, digits, '-', '_' or '.' (use punycode for international names)"#.into(),
            ),
            (
                "example.com:8080",
                r#"host "example.com:8080" must not include a port; IPv6 addresses need brackets, as in "[::1]""#.into(),
            ),
            (
                "[::1]:8080",
                r#"host "[::1]:8080" is not a bracketed IPv6 address like "[::1]" (ports are not allowed)"#.into(),
            ),
            ("a..b", format!("host \"a..b\" has an empty label: {EXPECTED}")),
            (".", format!("host \".\" has no name: {EXPECTED}")),
            (
                "ex ample.com",
                r#"host "ex ample.com" contains ' ': expected letters, digits, '-', '_' or '.' (use punycode for international names)"#.into(),
            ),
        ];
        for (host, want) in cases {
            assert_eq!(HostMatcher::compile(Some(host)), Err(want), "host {host:?}");
        }
        let long = format!("{}.com", "a".repeat(250));
        assert_eq!(
            HostMatcher::compile(Some(&long)),
            Err(format!("host {long:?} is longer than 253 bytes"))
        );
    }
}
