//! Compiles `type = "forward_auth"`: the auth service's URL (its host
//! resolved here, at load and on every reload), the subrequest's target
//! and `Host`, its TLS client configuration, the headers copied each way.

use std::net::ToSocketAddrs;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use ipnet::IpNet;

use crate::config::intern;
use crate::config::parse::parse_duration;
use crate::config::raw::RawMiddleware;
use crate::middleware::{ForwardAuth, ForwardAuthSettings, Middleware};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The request headers copied without `request_headers`: the credentials.
const DEFAULT_REQUEST_HEADERS: [&str; 2] = ["authorization", "cookie"];
/// Names a response header may not be copied onto: the proxy's own.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// `type = "forward_auth"`.
pub(super) fn compile(
    raw: &RawMiddleware,
    trusted: &[IpNet],
    policy: u16,
) -> Result<Middleware, String> {
    let RawMiddleware::ForwardAuth {
        url,
        timeout,
        request_headers,
        response_headers,
        consumer_header,
        fail_open,
        ca_file,
    } = raw
    else {
        return Err("not a forward_auth middleware".into());
    };
    let url = url.as_deref().filter(|u| !u.is_empty()).ok_or(
        "forward_auth needs url: expected the auth service's URL, e.g. url = \"http://127.0.0.1:9001/auth\"",
    )?;
    let bad = |why: &str| {
        format!("forward_auth url {url:?} is invalid: {why}; expected e.g. \"http://127.0.0.1:9001/auth\"")
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("it has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("forward_auth url {url:?}: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("forward_auth url {url:?}: {host} has no address"))?;
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let authority =
        HeaderValue::from_str(authority).map_err(|_| bad("its host cannot be a Host header"))?;
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let tls = if https {
        let config = super::tls::https_client(ca_file.as_deref(), "forward_auth ca_file")?;
        let name = crate::tls::client::server_name(bare)
            .map_err(|e| format!("forward_auth url {url:?}: {e}"))?;
        Some((config, name))
    } else {
        if ca_file.is_some() {
            return Err("forward_auth ca_file needs an https url".into());
        }
        None
    };
    let timeout = match timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => parse_duration(t).map_err(|e| format!("forward_auth timeout: {e}"))?,
    };
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        return Err(format!(
            "forward_auth timeout {timeout:?} is out of range: expected more than 0 and at most 60s"
        ));
    }
    let request_headers = match request_headers.as_deref() {
        Some([all]) if all == "*" => None,
        Some(list) => Some(names(
            "request_headers",
            list.iter().map(String::as_str),
            &[],
        )?),
        None => Some(names(
            "request_headers",
            DEFAULT_REQUEST_HEADERS.into_iter(),
            &[],
        )?),
    };
    let response_headers = names(
        "response_headers",
        response_headers.iter().flatten().map(String::as_str),
        &RESERVED,
    )?;
    let consumer_header = consumer_header
        .as_deref()
        .map(|h| names("consumer_header", std::iter::once(h), &[]))
        .transpose()?
        .and_then(|mut v| v.pop());
    Ok(Middleware::ForwardAuth(ForwardAuth::new(
        ForwardAuthSettings {
            url: url.into(),
            addr,
            authority,
            target: target.into(),
            tls,
            timeout,
            request_headers,
            response_headers,
            consumer_header,
            fail_open: fail_open.unwrap_or(false),
            trusted: trusted.into(),
        },
        policy,
    )))
}

/// Header names, each valid, none twice, none `reserved`.
fn names<'n>(
    key: &str,
    list: impl Iterator<Item = &'n str>,
    reserved: &[&str],
) -> Result<Vec<HeaderName>, String> {
    let mut out: Vec<HeaderName> = Vec::new();
    for name in list {
        let h = intern::header_name(name).ok_or_else(|| {
            format!("forward_auth {key}: invalid header name {name:?}: expected a token such as \"x-user\"")
        })?;
        if reserved.contains(&h.as_str()) {
            return Err(format!(
                "forward_auth {key}: {name:?} is refused: the proxy sets that header itself"
            ));
        }
        if out.contains(&h) {
            return Err(format!("forward_auth {key}: {name:?} is listed twice"));
        }
        out.push(h);
    }
    Ok(out)
}
