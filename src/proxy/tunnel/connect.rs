//! Plain `CONNECT host:port` (`[connect]`): the destination is checked
//! against `allow` (a name only by name, an IP literal only by IP or
//! network), connected within `connect_timeout`, answered `200`, and the
//! connection becomes a tunnel. No route, no middleware.

use std::net::{IpAddr, SocketAddr};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpStream;

use super::{answer, run, Kind};
use crate::config::{ConnectSettings, ConnectTarget};
use crate::context::ProxyBody;
use crate::proxy::error::ProxyError;
use crate::proxy::headers;
use crate::proxy::request::Received;
use crate::upstream::{self, connect};

/// A plain `CONNECT host:port`: checked against `[connect] allow`, then TCP
/// to the destination and a tunnel. Does not go through routes, so it counts
/// into no route's figures.
pub(super) async fn connect(r: Received, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let Received {
        state,
        snapshot,
        tracked,
        ..
    } = r;
    // An HTTP/1.1 CONNECT needs its one Host like any request (RFC 9112
    // §3.2); it need not repeat the target (RFC 9110 §9.3.6).
    let hosts = req.headers().get_all(http::header::HOST);
    let host = headers::check_host(req.version(), req.uri(), hosts);
    let mut response = match (&snapshot.connect, host) {
        (_, Err(e)) => {
            tracing::debug!(target = %req.uri(), cause = e.cause(), "CONNECT refused");
            e.response()
        }
        (None, _) => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed: CONNECT is not enabled\n",
        ),
        (Some(settings), Ok(_)) => match open_connect(settings, req.uri()).await {
            Ok(stream) => {
                let client_side = hyper::upgrade::on(&mut req);
                tokio::task::spawn_local(run(
                    state.clone(),
                    client_side,
                    std::future::ready(Ok(stream)),
                    settings.idle_timeout,
                    Kind::Connect,
                ));
                Response::new(ProxyBody::empty())
            }
            Err(refused) => refused,
        },
    };
    // Counted in flight until the answer is sent, like any request.
    tracked.attach(response.body_mut());
    response
}

/// The destination of a CONNECT, if allowed, connected; else the answer.
async fn open_connect(
    settings: &ConnectSettings,
    target: &http::Uri,
) -> Result<TcpStream, Response<ProxyBody>> {
    let bad = || {
        answer(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: CONNECT needs a host:port target\n",
        )
    };
    let authority = target.authority().ok_or_else(bad)?;
    let port = authority.port_u16().ok_or_else(bad)?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = host.parse::<IpAddr>().ok();
    if !connect_allowed(&settings.allow, host, ip, port) {
        return Err(answer(
            StatusCode::FORBIDDEN,
            "403 Forbidden: CONNECT to this destination is not allowed\n",
        ));
    }
    let timeout = settings.connect_timeout;
    let result = match ip {
        Some(ip) => connect::tcp(SocketAddr::new(ip, port), timeout).await,
        // A listed name: tokio's resolver runs the look-up on its blocking
        // pool, never on the worker thread.
        None => match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Err(_) => Err(upstream::Error::ConnectTimeout),
            Ok(Err(e)) => Err(upstream::Error::of_connect(&e)),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        },
    };
    result.map_err(|e| {
        let e = ProxyError::from(e);
        tracing::debug!(target = %authority, cause = e.cause(), "CONNECT failed");
        e.response()
    })
}

/// Whether `host:port` (with `ip` if it is an IP literal) is allowed: a name
/// only by name, an IP only by an IP or network entry.
fn connect_allowed(allow: &[ConnectTarget], host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    allow.iter().any(|entry| match (entry, ip) {
        (ConnectTarget::Net(net, p), Some(ip)) => *p == port && net.contains(&ip),
        (ConnectTarget::Name(n, p), None) => *p == port && n.eq_ignore_ascii_case(name),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_destinations_are_checked_by_name_or_address() {
        let allow = [
            ConnectTarget::Name("db.internal".into(), 5432),
            ConnectTarget::Net("10.0.0.0/8".parse().unwrap(), 443),
            ConnectTarget::Net("127.0.0.1/32".parse().unwrap(), 5432),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert!(connect_allowed(&allow, "db.internal", None, 5432));
        assert!(connect_allowed(&allow, "DB.Internal.", None, 5432));
        assert!(!connect_allowed(&allow, "db.internal", None, 5433));
        assert!(connect_allowed(&allow, "10.1.2.3", ip("10.1.2.3"), 443));
        assert!(!connect_allowed(&allow, "11.1.2.3", ip("11.1.2.3"), 443));
        assert!(connect_allowed(&allow, "127.0.0.1", ip("127.0.0.1"), 5432));
        // A name is not allowed by the network its address is in.
        assert!(!connect_allowed(&allow, "localhost", None, 5432));
    }
}
