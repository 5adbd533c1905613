//! The per-route middleware chain: the closed set of built-in middlewares, the
//! `Custom` trait for user code, and the runner that walks the chain like an onion
//! (request phases in order, response phases in reverse).
//!
//! Built-ins are enum variants whose phases are plain (inlined) async fns, so a
//! chain of built-ins adds no heap allocation per request; only `Custom`
//! middlewares pay for a boxed future.

mod access_log;
mod api_key;
mod basic_auth;
pub(crate) mod compress;
mod connection_limit;
mod consumer;
mod cors;
mod custom;
mod forward_auth;
mod headers;
mod https_redirect;
mod ip_filter;
pub(crate) mod jwt;
mod limit_key;
mod rate_limit;
mod request_id;
mod request_limits;
mod rewrite;

use http::Response;

pub(crate) use crate::log::LogFormat;
pub(crate) use access_log::AccessLog;
pub(crate) use api_key::{ApiKey, Settings as ApiKeySettings};
pub(crate) use basic_auth::{BasicAuth, PasswordHash, Settings as BasicAuthSettings};
pub(crate) use compress::Compress;
pub(crate) use connection_limit::{ConnSettings, ConnectionLimit};
pub(crate) use cors::{Cors, Settings as CorsSettings, Wildcard as CorsWildcard};
pub use custom::{Custom, CustomFactory, CustomRegistry, PhaseFuture};
pub(crate) use forward_auth::{ForwardAuth, Settings as ForwardAuthSettings};
pub(crate) use headers::HeaderOps;
pub(crate) use https_redirect::HttpsRedirect;
pub(crate) use ip_filter::IpFilter;
pub(crate) use limit_key::{KeySource, LimitKey};
pub(crate) use rate_limit::{Per, RateLimit, RateSettings};
pub(crate) use request_id::RequestId;
pub(crate) use request_limits::{RequestLimits, BODY_TOO_LARGE};
pub(crate) use rewrite::{Rewrite, StripPrefix};

use crate::context::{Flow, ProxyBody, RequestContext, UpstreamRequest};

/// One configured middleware instance of a route's chain.
#[derive(Clone)]
pub(crate) enum Middleware {
    RequestId(RequestId),
    Headers(HeaderOps),
    StripPrefix(StripPrefix),
    Rewrite(Rewrite),
    AccessLog(AccessLog),
    HttpsRedirect(HttpsRedirect),
    IpFilter(IpFilter),
    RequestLimits(RequestLimits),
    Cors(Cors),
    BasicAuth(BasicAuth),
    ApiKey(ApiKey),
    Jwt(jwt::Jwt),
    ForwardAuth(ForwardAuth),
    Compress(Compress),
    RateLimit(RateLimit),
    ConnectionLimit(ConnectionLimit),
    Custom(std::sync::Arc<dyn Custom>),
}

impl Middleware {
    /// The request phase: may change the outgoing request or answer directly.
    pub(crate) async fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &mut UpstreamRequest<'_>,
    ) -> Flow {
        match self {
            Middleware::RequestId(m) => m.on_request(ctx, req),
            Middleware::Headers(m) => m.on_request(req),
            Middleware::StripPrefix(m) => m.on_request(ctx),
            Middleware::Rewrite(m) => m.on_request(ctx),
            Middleware::AccessLog(m) => m.on_request(ctx, req),
            Middleware::HttpsRedirect(m) => m.on_request(ctx),
            Middleware::IpFilter(m) => m.on_request(ctx, req),
            Middleware::RequestLimits(m) => m.on_request(ctx, req),
            Middleware::Cors(m) => m.on_request(ctx, req),
            // Boxed, as the custom ones: a password check's future (and a
            // subrequest's, below) is large, and inline it would grow every
            // request's future; only routes with them pay for the box.
            Middleware::BasicAuth(m) => Box::pin(m.on_request(ctx, req)).await,
            Middleware::ApiKey(m) => m.on_request(ctx, req),
            Middleware::Jwt(m) => m.on_request(ctx, req),
            Middleware::ForwardAuth(m) => Box::pin(m.on_request(ctx, req)).await,
            Middleware::Compress(m) => {
                m.on_request(ctx, req);
                Flow::Continue
            }
            Middleware::RateLimit(m) => match m.on_request(ctx, req) {
                rate_limit::Decided::Flow(flow) => flow,
                rate_limit::Decided::WaitUntil(at) => {
                    // Boxed: the timer entry is large, and only a delayed
                    // request of a `delay` rate limit should pay for it
                    // (an inline one would grow every request's future).
                    Box::pin(tokio::time::sleep_until(at.into())).await;
                    Flow::Continue
                }
            },
            Middleware::ConnectionLimit(m) => m.on_request(ctx, req),
            Middleware::Custom(m) => m.on_request(ctx, req).await,
        }
    }

    /// The response phase: may change the response head (or wrap its body).
    pub(crate) async fn on_response(
        &self,
        ctx: &mut RequestContext<'_>,
        resp: &mut Response<ProxyBody>,
    ) {
        match self {
            Middleware::RequestId(m) => m.on_response(ctx, resp),
            Middleware::Headers(m) => m.on_response(resp),
            Middleware::StripPrefix(_)
            | Middleware::Rewrite(_)
            | Middleware::HttpsRedirect(_)
            | Middleware::IpFilter(_)
            | Middleware::RequestLimits(_)
            | Middleware::BasicAuth(_)
            | Middleware::ApiKey(_)
            | Middleware::Jwt(_)
            | Middleware::ForwardAuth(_)
            | Middleware::RateLimit(_)
            | Middleware::ConnectionLimit(_) => {}
            Middleware::AccessLog(m) => m.on_response(ctx, resp),
            Middleware::Cors(m) => m.on_response(ctx, resp),
            Middleware::Compress(m) => m.on_response(ctx, resp),
            Middleware::Custom(m) => m.on_response(ctx, resp).await,
        }
    }

    /// The rewrite template of this middleware, if it is a rewrite (checked
    /// against the route's captured parameters at load).
    pub(crate) fn rewrite_params(&self) -> Option<impl Iterator<Item = &str>> {
        match self {
            Middleware::Rewrite(r) => Some(r.param_names()),
            _ => None,
        }
    }
}

/// A policy's refusal: a short plain-text answer with a static body.
use crate::context::plain_text as refusal;

/// Runs the request phases in order. Returns the decision and how many
/// middlewares ran, so that only those see the response phase.
pub(crate) async fn run_request(
    chain: &[Middleware],
    ctx: &mut RequestContext<'_>,
    req: &mut UpstreamRequest<'_>,
) -> (Flow, usize) {
    for (i, m) in chain.iter().enumerate() {
        if let Flow::Respond(resp) = m.on_request(ctx, req).await {
            return (Flow::Respond(resp), i + 1);
        }
    }
    (Flow::Continue, chain.len())
}

/// Runs the response phases of the first `ran` middlewares, innermost first.
pub(crate) async fn run_response(
    chain: &[Middleware],
    ran: usize,
    ctx: &mut RequestContext<'_>,
    resp: &mut Response<ProxyBody>,
) {
    for m in chain[..ran.min(chain.len())].iter().rev() {
        m.on_response(ctx, resp).await;
    }
}
