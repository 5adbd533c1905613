//! The upgrade path: an HTTP/1.1 `Upgrade` the route allows, or an HTTP/2
//! extended CONNECT for `websocket` (RFC 8441) bridged to an HTTP/1.1
//! upgrade. The request shares the ordinary path's prologue, route, request
//! filter, response filter and epilogue; its exchange goes over a dedicated
//! upstream connection (through TLS with ALPN http/1.1 when the upstream
//! has TLS) that becomes the tunnel on `101`. Any other answer is proxied as
//! a plain response.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use crate::context::body::ClientBody;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{answer, run, Kind};
use crate::config::{Route, SnapshotRef};
use crate::context::body::RequestBody;
use crate::context::{visible_str, Flow, Headers, ProxyBody, RequestContext, UpstreamRequest};
use crate::metrics::status_class;
use crate::middleware;
use crate::proxy::attempt::{self, upstream_peer};
use crate::proxy::error::ProxyError;
use crate::proxy::handler::{Chain, Path};
use crate::proxy::{handler, headers, ProxyState};
use crate::upstream::connect;

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");

/// What the client asks to switch to, as allowed by the route.
enum Offer {
    /// HTTP/1.1 `Upgrade`: the offered protocols the route allows, as the
    /// `Upgrade` value to send upstream.
    Upgrade(HeaderValue),
    /// HTTP/2 extended CONNECT with `:protocol = websocket`, bridged to an
    /// HTTP/1.1 WebSocket upgrade upstream.
    Websocket,
}

impl Offer {
    /// The offer of a request on `route`, or `None` if it is not one the
    /// route takes (then `Upgrade` is stripped and the request proxied).
    fn of(parts: &http::request::Parts, headers: &Headers<'_>, route: &Route) -> Option<Offer> {
        if let Some(protocol) = parts.extensions.get::<hyper::ext::Protocol>() {
            let websocket = parts.method == Method::CONNECT
                && protocol.as_str().eq_ignore_ascii_case("websocket")
                && allows(&route.upgrades, "websocket");
            return websocket.then_some(Offer::Websocket);
        }
        if parts.version != Version::HTTP_11 || !has_token(headers, header::CONNECTION, "upgrade") {
            return None;
        }
        let mut kept: Vec<&str> = Vec::new();
        for value in headers.get_all(header::UPGRADE) {
            let Some(text) = visible_str(value) else {
                continue;
            };
            kept.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && allows(&route.upgrades, p)),
            );
        }
        if kept.is_empty() {
            return None;
        }
        HeaderValue::from_str(&kept.join(", "))
            .ok()
            .map(Offer::Upgrade)
    }
}

/// Whether `protocol` (`name` or `name/version`) is in `allowed`; an entry
/// without a version allows every version of its name.
fn allows(allowed: &[Box<str>], protocol: &str) -> bool {
    let name = protocol.split_once('/').map_or(protocol, |(n, _)| n);
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(protocol) || a.eq_ignore_ascii_case(name))
}

/// Whether a comma-separated header lists `token` (case-insensitive).
fn has_token(headers: &Headers<'_>, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).any(|v| {
        visible_str(v).is_some_and(|t| t.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    })
}

/// The upgrade path's phases, between the shared prologue and epilogue: the
/// exchange goes over a dedicated connection that becomes the tunnel.
pub(super) struct Upgrade;

impl Path for Upgrade {
    /// The client's side of the switch.
    type Taken = Option<OnUpgrade>;

    #[inline]
    fn take(parts: &mut http::request::Parts) -> Option<OnUpgrade> {
        parts.extensions.remove::<OnUpgrade>()
    }

    fn phases<'a>(
        state: &Rc<ProxyState>,
        snap: &'a SnapshotRef,
        ctx: &mut RequestContext<'a>,
        parts: &'a http::request::Parts,
        upstream: &mut UpstreamRequest<'a>,
        body: &mut Option<ClientBody>,
        on_upgrade: Option<OnUpgrade>,
    ) -> impl std::future::Future<Output = (Response<ProxyBody>, Chain<'a>)> {
        switch(state, snap, ctx, parts, upstream, body, on_upgrade)
    }
}

/// Route → offer → request phases → the exchange → response phases.
async fn switch<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    ctx: &mut RequestContext<'a>,
    parts: &http::request::Parts,
    upstream: &mut UpstreamRequest<'a>,
    body: &mut Option<ClientBody>,
    on_upgrade: Option<OnUpgrade>,
) -> (Response<ProxyBody>, Chain<'a>) {
    let route_id = handler::route(snap, ctx, upstream);
    let offer = route_id.and_then(|id| Offer::of(parts, &upstream.headers, &snap.routes[id]));
    let (Some(route_id), Some(offer)) = (route_id, offer) else {
        if parts.method == Method::CONNECT && route_id.is_some() {
            // An extended CONNECT cannot be proxied as a plain request.
            let status = StatusCode::METHOD_NOT_ALLOWED;
            let body = "405 Method Not Allowed: this protocol is not allowed on this route\n";
            return (answer(status, body), None);
        }
        // Not an upgrade this route takes: the ordinary path, which strips
        // `Upgrade` with the other hop-by-hop fields.
        return handler::process(state, snap, ctx, upstream, body).await;
    };
    let route = &snap.routes[route_id];
    let (protocols, bridge) = match offer {
        Offer::Upgrade(protocols) => (protocols, false),
        Offer::Websocket => (HeaderValue::from_static("websocket"), true),
    };
    headers::remove_hop_by_hop_for_upgrade(&mut upstream.headers, ctx.arena(), protocols);
    let (flow, ran) = middleware::run_request(&route.chain, ctx, upstream).await;
    let response = match flow {
        Flow::Respond(response) => *response,
        Flow::Continue => {
            let headers = &mut upstream.headers;
            let result = exchange(state, snap, route, ctx, headers, body, bridge, on_upgrade).await;
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    handler::failed(snap, state.tools.id, route.upstream, ctx, e, "upgrade ");
                    e.response()
                }
            };
            if let Some(u) = snap.stats.upstream(route.upstream, state.tools.id) {
                u.responses[status_class(response.status().as_u16())].inc();
            }
            response
        }
    };
    (response, Some((route, ran)))
}

/// Picks an endpoint, opens a dedicated connection to it, sends the upgrade
/// and, on `101`, answers the client with the switch and starts the tunnel.
/// Any other answer is proxied as a plain response.
#[allow(clippy::too_many_arguments)]
async fn exchange<'a>(
    state: &Rc<ProxyState>,
    snap: &'a SnapshotRef,
    route: &'a Route,
    ctx: &mut RequestContext<'a>,
    headers: &mut Headers<'a>,
    body: &mut Option<ClientBody>,
    bridge: bool,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let target = attempt::target(snap, route.upstream, ctx.arena());
    let spec = target.spec;
    // Counted like any exchange, until the answer's body ends; the tunnel
    // itself is not a request.
    let index = upstream_peer(state, snap, &target, ctx, headers, 0)?;
    let endpoint = &spec.endpoints[index];
    headers::prepare_headers(headers, ctx, &snap.server, endpoint);
    let uri = headers::upstream_uri(ctx)?;
    if bridge {
        // RFC 8441 §5: the HTTP/1.1 side needs the key HTTP/2 does without.
        headers.insert_owned(SEC_WEBSOCKET_KEY, websocket_key(state.tools.id));
        if !headers.contains(&SEC_WEBSOCKET_VERSION) {
            headers.append_owned(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
    }

    let started = Instant::now();
    // Through TLS, offering only http/1.1 by ALPN, when the upstream has TLS.
    let tls = spec
        .tls
        .as_deref()
        .and_then(|t| Some((&t.http1_config, t.server_names.get(index)?)));
    let stream = connect::stream(endpoint.addr, tls, spec.connect_timeout).await?;
    ctx.log.upstream_connect = Some(started.elapsed());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::ConnectFailed)?;
    let addr = endpoint.addr;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upgrade connection ended with an error");
        }
    });
    let body = body.take().ok_or(ProxyError::ClientBody)?;
    let mut request = Request::new(RequestBody::new(body, spec.body_idle_timeout, None));
    *request.method_mut() = if bridge {
        Method::GET
    } else {
        ctx.method.clone()
    };
    *request.uri_mut() = uri;
    // A map moves over as it is; an HTTP/1.1 head is built into one here.
    *request.headers_mut() = std::mem::take(headers).into_map();
    let sent = Instant::now();
    let timeout = spec.response_header_timeout;
    let mut response = match tokio::time::timeout(timeout, sender.send_request(request)).await {
        Err(_) => return Err(ProxyError::ResponseTimeout),
        Ok(Err(e)) if e.is_parse() || e.is_parse_status() => return Err(ProxyError::BadResponse),
        Ok(Err(_)) => return Err(ProxyError::UpstreamReset),
        Ok(Ok(response)) => response,
    };
    ctx.log.upstream_header = Some(sent.elapsed());

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused: an ordinary answer, its body streamed under the body idle
        // timeout; the connection closes after it (no idle slot: never pooled).
        let (mut head, incoming) = response.into_parts();
        headers::response_head(&mut head, ctx.arena());
        // The sender goes: hyper's connection task ends after this body.
        drop(sender);
        let body = ProxyBody::upstream(incoming, None, spec.body_idle_timeout);
        return Ok(Response::from_parts(head, body));
    }
    let Some(client_side) = on_upgrade else {
        // hyper always offers the upgrade of a request it parsed as one.
        return Err(ProxyError::BadResponse);
    };
    let upstream_side = hyper::upgrade::on(&mut response);
    let (mut head, _) = response.into_parts();
    if bridge {
        // The HTTP/2 client is told 200 (RFC 8441 §5), without the fields
        // of the HTTP/1.1 handshake.
        headers::remove_hop_by_hop_map(&mut head.headers, ctx.arena());
        head.headers.remove(SEC_WEBSOCKET_ACCEPT);
        head.status = StatusCode::OK;
        head.version = Version::HTTP_2;
    } else {
        let protocol = head
            .headers
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("websocket"));
        headers::remove_hop_by_hop_for_upgrade_map(&mut head.headers, ctx.arena(), protocol);
    }
    head.headers.remove(header::CONTENT_LENGTH);
    let upstream = async move {
        upstream_side
            .await
            .map(TokioIo::new)
            .map_err(io::Error::other)
    };
    tokio::task::spawn_local(run(
        state.clone(),
        client_side,
        upstream,
        route.tunnel_idle_timeout,
        Kind::Upgrade,
    ));
    Ok(Response::from_parts(head, ProxyBody::empty()))
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
fn websocket_key(worker: usize) -> HeaderValue {
    let random = RandomState::new();
    let now = Instant::now();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random.hash_one((worker, now, 1u8)).to_le_bytes());
    bytes[8..].copy_from_slice(&random.hash_one((worker, now, 2u8)).to_le_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(base64(&bytes)))
        .unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("the sample nonce", "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded.as_bytes(), "{plain:?}");
        }
    }

    #[test]
    fn protocols_match_by_name_or_name_and_version() {
        let allowed: Vec<Box<str>> = vec!["websocket".into(), "foo/2".into()];
        assert!(allows(&allowed, "WebSocket"));
        assert!(allows(&allowed, "websocket/13"));
        assert!(allows(&allowed, "foo/2"));
        assert!(!allows(&allowed, "foo/1"));
        assert!(!allows(&allowed, "foo"));
        assert!(!allows(&allowed, "h2c"));
        assert!(!allows(&[], "websocket"));
    }
}
