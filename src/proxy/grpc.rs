//! gRPC awareness of the data plane: recognising a gRPC call, reading its
//! `grpc-timeout` as the call's deadline, and answering a call the proxy
//! itself fails in gRPC's trailers-only form. The call itself is ordinary
//! HTTP/2 to the proxy: its messages and trailers stream through
//! `context/body.rs` like any body.

use std::time::Duration;

use http::{header, HeaderName, HeaderValue, Response, Version};

use super::error::ProxyError;
use crate::context::{Headers, ProxyBody};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes the proxy answers with (grpc/doc/statuscodes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Code {
    /// Unknown error (an HTTP status with no better mapping).
    Unknown = 2,
    /// The deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// The caller is not allowed (HTTP 403).
    PermissionDenied = 7,
    /// No such method: nothing routes the call (HTTP 404).
    Unimplemented = 12,
    /// An internal error (HTTP 400 and 500 class from the proxy itself).
    Internal = 13,
    /// The service cannot be reached now; safe for the client to retry.
    Unavailable = 14,
    /// The caller did not authenticate (HTTP 401).
    Unauthenticated = 16,
}

impl Code {
    /// The ASCII decimal value sent in `grpc-status`.
    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Code::Unknown => "2",
            Code::DeadlineExceeded => "4",
            Code::PermissionDenied => "7",
            Code::Unimplemented => "12",
            Code::Internal => "13",
            Code::Unavailable => "14",
            Code::Unauthenticated => "16",
        })
    }
}

/// Whether a request is a gRPC call: HTTP/2 with a `content-type` of
/// `application/grpc`, optionally followed by `+proto`, `+json`... or by
/// parameters (gRPC over HTTP/2 spec). gRPC-Web (`application/grpc-web`,
/// usable over HTTP/1.1, trailers in the body) is not: it is proxied as
/// plain HTTP. An HTTP/1.1 request costs one comparison, an HTTP/2 one a
/// header lookup.
pub(crate) fn is_call(version: Version, headers: &Headers<'_>) -> bool {
    if version != Version::HTTP_2 {
        return false;
    }
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(is_grpc_content_type)
}

fn is_grpc_content_type(value: &[u8]) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    value.len() >= PREFIX.len()
        && value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        && matches!(value.get(PREFIX.len()), None | Some(b'+' | b';'))
}

/// Readies a call's headers for the upstream, after the hop-by-hop fields
/// went: `TE: trailers`, which gRPC servers require and which is true of the
/// proxy (it forwards trailers). `TE` is hop-by-hop, so the client's own
/// was removed with the rest; this is the one value HTTP/2 allows.
pub(crate) fn prepare(headers: &mut Headers<'_>) {
    headers.insert_owned(header::TE, HeaderValue::from_static("trailers"));
}

/// The call's deadline from its `grpc-timeout` header, if it has a valid
/// one. The value is 1 to 8 ASCII digits and a unit: `H`ours, `M`inutes,
/// `S`econds, `m`illiseconds, `u` microseconds, `n`anoseconds. An invalid
/// value is ignored: the proxy applies the route's own timeout (if any) and
/// forwards the header unchanged, leaving the verdict to the server (the
/// spec names no behaviour; tonic's server ignores it too, grpc-go's answers
/// INTERNAL).
pub(crate) fn timeout(headers: &Headers<'_>) -> Option<Duration> {
    parse_timeout(headers.get(GRPC_TIMEOUT)?)
}

fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: fits a u64 with room for the unit's factor.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The time limit on a gRPC call's response head and the error it ends with:
/// the shorter of the route's `timeout` and the call's `grpc-timeout`. A
/// deadline the client set ends as [`ProxyError::GrpcDeadline`], the
/// route's as [`ProxyError::RouteTimeout`]; both answer DEADLINE_EXCEEDED.
pub(crate) fn limit(
    route_timeout: Option<Duration>,
    headers: &Headers<'_>,
) -> Option<(Duration, ProxyError)> {
    let route = route_timeout.map(|t| (t, ProxyError::RouteTimeout));
    match (timeout(headers), route) {
        (Some(call), Some((route, _))) if route < call => Some((route, ProxyError::RouteTimeout)),
        (Some(call), _) => Some((call, ProxyError::GrpcDeadline)),
        (None, route) => route,
    }
}

/// The gRPC status for a failure of the proxy's own. Timeouts before the
/// response head are DEADLINE_EXCEEDED; everything else follows the gRPC
/// spec's HTTP-to-gRPC table for the status the proxy would have sent (so
/// 502, 503 and 504 are UNAVAILABLE: a connect that failed or timed out,
/// no endpoint, an upstream limit, a reset; the call never completed
/// upstream and the client may retry it). Limits are UNAVAILABLE rather than
/// RESOURCE_EXHAUSTED, which clients treat as a caller's quota and do not
/// retry.
pub(crate) fn code(e: ProxyError) -> Code {
    match e {
        ProxyError::RouteTimeout | ProxyError::ResponseTimeout | ProxyError::GrpcDeadline => {
            Code::DeadlineExceeded
        }
        _ => match e.status().as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502..=504 => Code::Unavailable,
            500..=599 => Code::Internal,
            _ => Code::Unknown,
        },
    }
}

/// The `grpc-message` for a failure of the proxy's own: the cause from the
/// error's plain-text body without its status-line part, e.g. `upstream
/// refused the connection`. A slice of a static string, so answering
/// allocates nothing (unless it needed encoding, which none does).
fn message(e: ProxyError) -> HeaderValue {
    let body = e.body().trim_end();
    let text = body.split_once(": ").map_or(body, |(_, text)| text);
    if text
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'%')
    {
        HeaderValue::from_static(text)
    } else {
        percent_encode(text)
    }
}

/// Percent-encodes a `grpc-message` as the spec asks: every byte outside
/// printable ASCII (0x20–0x7E), and `%` itself, becomes `%XX`.
fn percent_encode(text: &str) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    // Printable ASCII only: always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl ProxyError {
    /// A failure of the proxy's own in gRPC form: HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` and `grpc-message` in the headers and an
    /// empty body, i.e. a trailers-only response (sent as one HEADERS frame that
    /// ends the stream). gRPC clients read its status, where a bare 502 would
    /// reach them as an UNKNOWN or UNAVAILABLE with no cause. The message is
    /// the static cause from the error's body: no allocation.
    pub fn grpc_response(self) -> Response<ProxyBody> {
        let e = self;
        let mut resp = Response::new(ProxyBody::empty());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(GRPC_STATUS, code(e).header_value());
        h.insert(GRPC_MESSAGE, message(e));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc;charset=utf-8",
            "Application/GRPC",
        ] {
            assert!(is_grpc_content_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc_content_type(no.as_bytes()), "{no}");
        }
        let mut h = Headers::default();
        h.insert(
            &header::CONTENT_TYPE,
            &HeaderValue::from_static("application/grpc"),
        );
        assert!(is_call(Version::HTTP_2, &h));
        assert!(!is_call(Version::HTTP_11, &h));
        assert!(!is_call(Version::HTTP_2, &Headers::default()));
    }

    #[test]
    fn calls_go_upstream_with_te_trailers() {
        let mut h = Headers::default();
        h.append(&header::TE, &HeaderValue::from_static("gzip"));
        prepare(&mut h);
        assert_eq!(h.get_all(header::TE).collect::<Vec<_>>(), [b"trailers"]);
    }

    #[test]
    fn timeouts_parse_per_spec() {
        let ok = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("4999978u", Duration::from_micros(4_999_978)),
            ("7n", Duration::from_nanos(7)),
            ("0m", Duration::ZERO),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_timeout(text.as_bytes()), Some(want), "{text}");
        }
        for bad in [
            "",
            "S",
            "100",
            "123456789S",
            "1s",
            "1h",
            "-1S",
            "1.5S",
            " 1S",
            "1S ",
            "1x",
            "+1S",
        ] {
            assert_eq!(parse_timeout(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_shorter_deadline_wins() {
        let mut h = Headers::default();
        assert_eq!(limit(None, &h), None);
        let route = Some(Duration::from_secs(1));
        assert_eq!(
            limit(route, &h),
            Some((Duration::from_secs(1), ProxyError::RouteTimeout))
        );
        h.insert(&GRPC_TIMEOUT, &HeaderValue::from_static("200m"));
        let call = Some((Duration::from_millis(200), ProxyError::GrpcDeadline));
        assert_eq!(limit(route, &h), call);
        assert_eq!(limit(None, &h), call);
        let short = Some(Duration::from_millis(50));
        assert_eq!(
            limit(short, &h),
            Some((Duration::from_millis(50), ProxyError::RouteTimeout))
        );
        h.insert(&GRPC_TIMEOUT, &HeaderValue::from_static("soon"));
        assert_eq!(
            limit(route, &h),
            Some((Duration::from_secs(1), ProxyError::RouteTimeout))
        );
    }

    #[test]
    fn proxy_failures_map_to_grpc_codes() {
        use ProxyError::*;
        let table = [
            (NoRoute, Code::Unimplemented),
            (NoEndpoint, Code::Unavailable),
            (NoHealthyEndpoint, Code::Unavailable),
            (MaxRequests, Code::Unavailable),
            (MaxConnections, Code::Unavailable),
            (MaxPending, Code::Unavailable),
            (RouteTimeout, Code::DeadlineExceeded),
            (GrpcDeadline, Code::DeadlineExceeded),
            (ResponseTimeout, Code::DeadlineExceeded),
            (ConnectRefused, Code::Unavailable),
            (ConnectTimeout, Code::Unavailable),
            (ConnectFailed, Code::Unavailable),
            (UpstreamTlsVerify, Code::Unavailable),
            (UpstreamTlsHandshake, Code::Unavailable),
            (MaxStreams, Code::Unavailable),
            (UpstreamReset, Code::Unavailable),
            (BadResponse, Code::Unavailable),
            (ClientBody, Code::Internal),
            (BadRewrite, Code::Internal),
        ];
        for (e, want) in table {
            assert_eq!(code(e), want, "{e:?}");
        }
    }

    #[test]
    fn error_responses_are_trailers_only() {
        use http_body::Body as _;
        let resp = ProxyError::ConnectRefused.grpc_response();
        assert_eq!(resp.status(), http::StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "upstream refused the connection");
        assert!(resp.body().is_end_stream());
        let resp = ProxyError::GrpcDeadline.grpc_response();
        assert_eq!(resp.headers()["grpc-status"], "4");
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("plain text (ok)"), "plain text (ok)");
        assert_eq!(percent_encode("100% sure"), "100%25 sure");
        assert_eq!(percent_encode("a\nb"), "a%0Ab");
        assert_eq!(percent_encode("€"), "%E2%82%AC");
        // Every proxy message is printable ASCII already.
        for e in [
            ProxyError::NoRoute,
            ProxyError::MaxPending,
            ProxyError::BadRewrite,
            ProxyError::UpstreamTlsVerify,
            ProxyError::MaxStreams,
            ProxyError::GrpcDeadline,
        ] {
            let m = message(e);
            assert!(!m.as_bytes().contains(&b'%'), "{m:?}");
        }
    }
}
