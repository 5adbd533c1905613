//! Query-parameter and cookie conditions: checked at build time, matched against the
//! raw query and the `Cookie` fields by scanning them in place (no allocation, no
//! decoded copy).
//!
//! Query: split on `&`, each part `name=value` at its first `=` (no `=`: an empty
//! value); names and values compare percent-decoded (`%41` is `A`, a `%` not followed by
//! two hex digits stands for itself, `+` is a `+`), byte for byte. Cookies: every
//! `Cookie` field (one in HTTP/1.1, possibly several in HTTP/2), split on `;`, each part
//! trimmed of spaces and tabs and split at its first `=`; names and values compare as
//! sent (no decoding; quotes are part of a value).

use http::header::COOKIE;

use super::PairCond;
use crate::context::Headers;

/// A validated query or cookie condition.
#[derive(Debug)]
pub(crate) enum PairMatcher {
    Present(Box<str>),
    Equals(Box<str>, Box<str>),
}

impl PairMatcher {
    pub(crate) fn query(cond: &PairCond) -> Result<PairMatcher, String> {
        if cond.name().is_empty() {
            return Err("empty query parameter name: expected a name like \"version\"".into());
        }
        Ok(PairMatcher::from(cond))
    }

    pub(crate) fn cookie(cond: &PairCond) -> Result<PairMatcher, String> {
        let name = cond.name();
        if !is_token(name) {
            return Err(format!(
                "invalid cookie name {name:?}: expected a token such as \"canary\""
            ));
        }
        if let PairCond::Equals(_, value) = cond {
            let never = if value.contains(';') {
                Some("contains ';'")
            } else if value.bytes().any(|b| b.is_ascii_control()) {
                Some("contains a control character")
            } else if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
                Some("starts or ends with whitespace")
            } else {
                None
            };
            if let Some(why) = never {
                return Err(format!(
                    "value {value:?} of cookie {name:?} can never match: it {why}"
                ));
            }
        }
        Ok(PairMatcher::from(cond))
    }

    fn from(cond: &PairCond) -> PairMatcher {
        match cond {
            PairCond::Present(n) => PairMatcher::Present(n.as_str().into()),
            PairCond::Equals(n, v) => PairMatcher::Equals(n.as_str().into(), v.as_str().into()),
        }
    }

    fn name(&self) -> &[u8] {
        match self {
            PairMatcher::Present(n) | PairMatcher::Equals(n, _) => n.as_bytes(),
        }
    }

    fn value_holds(&self, value: &[u8], decode: bool) -> bool {
        match self {
            PairMatcher::Present(_) => true,
            PairMatcher::Equals(_, want) if decode => decoded_eq(value, want.as_bytes()),
            PairMatcher::Equals(_, want) => value == want.as_bytes(),
        }
    }

    /// Holds when some parameter of the raw query (without `?`) satisfies it.
    pub(crate) fn query_holds(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        query.as_bytes().split(|&b| b == b'&').any(|part| {
            let (name, value) = split_pair(part);
            decoded_eq(name, self.name()) && self.value_holds(value, true)
        })
    }

    /// Holds when some cookie of some `Cookie` field satisfies it.
    pub(crate) fn cookie_holds(&self, headers: &Headers<'_>) -> bool {
        headers.get_all(&COOKIE).any(|field| {
            field.split(|&b| b == b';').any(|part| {
                let (name, value) = split_pair(part);
                trim_ows(name) == self.name() && self.value_holds(trim_ows(value), false)
            })
        })
    }
}

impl PairCond {
    fn name(&self) -> &str {
        match self {
            PairCond::Present(n) | PairCond::Equals(n, _) => n,
        }
    }
}

/// An RFC 9110 token, which RFC 6265 makes a cookie name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `name=value` at the first `=`; without one, the whole part is the name.
fn split_pair(part: &[u8]) -> (&[u8], &[u8]) {
    match part.iter().position(|&b| b == b'=') {
        Some(i) => (&part[..i], &part[i + 1..]),
        None => (part, &[]),
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `raw`, percent-decoded, equals `want`; decoded on the fly, without a copy.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let (byte, width) = match (raw[i], raw.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => match (hex(hi), hex(lo)) {
                (Some(hi), Some(lo)) => (hi << 4 | lo, 3),
                _ => (b'%', 1),
            },
            (b, _) => (b, 1),
        };
        if want.get(j) != Some(&byte) {
            return false;
        }
        i += width;
        j += 1;
    }
    j == want.len()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_compares_in_place() {
        let cases: [(&str, &str, bool); 12] = [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("ab", "abc", false),
            ("abc", "ab", false),
            ("%41b", "Ab", true),
            ("%4a%4A", "JJ", true),
            ("a%20b", "a b", true),
            ("a+b", "a b", false),
            ("a+b", "a+b", true),
            ("%zz", "%zz", true),
            ("%4", "%4", true),
            ("100%", "100%", true),
        ];
        for (raw, want, eq) in cases {
            assert_eq!(
                decoded_eq(raw.as_bytes(), want.as_bytes()),
                eq,
                "{raw:?} vs {want:?}"
            );
        }
        assert!(decoded_eq(b"%FF", &[0xff]));
        assert!(decoded_eq(b"", b""));
    }

    #[test]
    fn ows_trimming() {
        assert_eq!(trim_ows(b" \ta b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(split_pair(b"a==b"), (&b"a"[..], &b"=b"[..]));
        assert_eq!(split_pair(b"flag"), (&b"flag"[..], &b""[..]));
    }

    #[test]
    fn bad_conditions_are_rejected() {
        let q = |c: PairCond| PairMatcher::query(&c).map(|_| ()).unwrap_err();
        let c = |c: PairCond| PairMatcher::cookie(&c).map(|_| ()).unwrap_err();
        assert_eq!(
            q(PairCond::Present(String::new())),
            r#"empty query parameter name: expected a name like "version""#
        );
        assert_eq!(
            c(PairCond::Present(String::new())),
            r#"invalid cookie name "": expected a token such as "canary""#
        );
        assert_eq!(
            c(PairCond::Present("a b".into())),
            r#"invalid cookie name "a b": expected a token such as "canary""#
        );
        assert_eq!(
            c(PairCond::Equals("a".into(), "x;y".into())),
            r#"value "x;y" of cookie "a" can never match: it contains ';'"#
        );
        assert_eq!(
            c(PairCond::Equals("a".into(), " x".into())),
            r#"value " x" of cookie "a" can never match: it starts or ends with whitespace"#
        );
        assert_eq!(
            c(PairCond::Equals("a".into(), "x\ny".into())),
            r#"value "x\ny" of cookie "a" can never match: it contains a control character"#
        );
    }
}
