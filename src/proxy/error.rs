//! Typed proxy errors: each maps to one status code, one short plain-text body
//! naming the cause, and one log cause (its gRPC form is `grpc.rs`'s). The layers below answer with errors
//! of their own (the upstream side, the balancer); they are mapped here.

use http::{Response, StatusCode};

use crate::balance::set::PickError;
use crate::context::ProxyBody;
use crate::upstream;

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matched.
    NoRoute,
    /// The route's upstream has no endpoint to send to.
    NoEndpoint,
    /// Every endpoint of the route's upstream is marked down by its health
    /// check (and the check does not fail open).
    NoHealthyEndpoint,
    /// The upstream's `max_requests` limit was reached on this worker.
    MaxRequests,
    /// No connection freed up within `connect_timeout` while the upstream's
    /// `max_connections` were open.
    MaxConnections,
    /// The upstream's `max_pending` requests were already waiting.
    MaxPending,
    /// The route's `timeout` passed before the upstream's response head.
    RouteTimeout,
    /// The endpoint refused the TCP connection.
    ConnectRefused,
    /// The TCP connection did not complete within `connect_timeout`.
    ConnectTimeout,
    /// The TCP connection failed for another reason (unreachable, reset).
    ConnectFailed,
    /// The endpoint's TLS certificate was refused (unknown issuer, not valid
    /// for the server name, expired...); the log line has the detail.
    UpstreamTlsVerify,
    /// The TLS handshake with the endpoint failed otherwise (no common
    /// protocol or cipher, our client certificate refused, connection cut).
    UpstreamTlsHandshake,
    /// Every HTTP/2 connection to the endpoint had `http2_max_concurrent_streams`
    /// streams in flight, `http2_max_connections` were open, and none freed up
    /// within `connect_timeout`.
    MaxStreams,
    /// The upstream closed or reset the connection before a complete response head.
    UpstreamReset,
    /// No response head within `response_header_timeout`.
    ResponseTimeout,
    /// The upstream's response could not be parsed.
    BadResponse,
    /// The client's request body failed or stalled while it was being forwarded.
    ClientBody,
    /// The client's request body grew past the route's `max_body`
    /// (`request_limits`) while it was being forwarded.
    BodyTooLarge,
    /// A rewrite produced a path that is not a valid request target.
    BadRewrite,
    /// A gRPC call's `grpc-timeout` passed before the upstream's response
    /// head (the client's deadline, shorter than the route's `timeout`).
    GrpcDeadline,
    /// An HTTP/1.1 request without a Host header, or an HTTP/2 one with
    /// neither `:authority` nor Host (RFC 9112 §3.2, RFC 9113 §8.3.1).
    MissingHost,
    /// A request with more than one Host field line (RFC 9112 §3.2).
    RepeatedHost,
    /// A Host (or a target's authority) that is not `host[:port]`: empty,
    /// with userinfo, a path, a space... (RFC 9110 §7.2).
    InvalidHost,
    /// A Host that names another host or port than the target's authority
    /// (an absolute-form target, HTTP/2 `:authority`).
    HostMismatch,
}

impl ProxyError {
    /// A failure to set up a connection to the endpoint (TCP or TLS): what
    /// retries (`connect_failure`) and outlier detection count as such.
    pub fn is_connect_failure(self) -> bool {
        matches!(
            self,
            ProxyError::ConnectRefused
                | ProxyError::ConnectTimeout
                | ProxyError::ConnectFailed
                | ProxyError::UpstreamTlsVerify
                | ProxyError::UpstreamTlsHandshake
        )
    }

    /// The status sent to the client.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint
            | ProxyError::NoHealthyEndpoint
            | ProxyError::MaxRequests
            | ProxyError::MaxConnections
            | ProxyError::MaxPending
            | ProxyError::MaxStreams => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RouteTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ConnectRefused
            | ProxyError::ConnectFailed
            | ProxyError::UpstreamTlsVerify
            | ProxyError::UpstreamTlsHandshake
            | ProxyError::UpstreamReset
            | ProxyError::BadResponse => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody
            | ProxyError::MissingHost
            | ProxyError::RepeatedHost
            | ProxyError::InvalidHost
            | ProxyError::HostMismatch => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRewrite => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::GrpcDeadline => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The machine-readable cause written to the log.
    pub fn cause(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoEndpoint => "no_endpoint",
            ProxyError::NoHealthyEndpoint => "no_healthy_endpoint",
            ProxyError::MaxRequests => "upstream_max_requests",
            ProxyError::MaxConnections => "upstream_max_connections",
            ProxyError::MaxPending => "upstream_max_pending",
            ProxyError::RouteTimeout => "route_timeout",
            ProxyError::ConnectRefused => "upstream_connect_refused",
            ProxyError::ConnectTimeout => "upstream_connect_timeout",
            ProxyError::ConnectFailed => "upstream_connect_failed",
            ProxyError::UpstreamTlsVerify => "upstream_tls_verify_failed",
            ProxyError::UpstreamTlsHandshake => "upstream_tls_handshake_failed",
            ProxyError::MaxStreams => "upstream_http2_streams_full",
            ProxyError::UpstreamReset => "upstream_reset",
            ProxyError::ResponseTimeout => "upstream_response_timeout",
            ProxyError::BadResponse => "upstream_bad_response",
            ProxyError::ClientBody => "client_body_error",
            ProxyError::BodyTooLarge => "body_too_large",
            ProxyError::BadRewrite => "bad_rewrite",
            ProxyError::GrpcDeadline => "grpc_deadline_exceeded",
            ProxyError::MissingHost => "missing_host",
            ProxyError::RepeatedHost => "repeated_host",
            ProxyError::InvalidHost => "invalid_host",
            ProxyError::HostMismatch => "host_mismatch",
        }
    }

    /// The body sent to the client: status line text and the cause.
    pub fn body(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "404 Not Found: no route matches this request\n",
            ProxyError::NoEndpoint => "503 Service Unavailable: no upstream endpoint available\n",
            ProxyError::NoHealthyEndpoint => {
                "503 Service Unavailable: no healthy upstream endpoint\n"
            }
            ProxyError::MaxRequests => {
                "503 Service Unavailable: upstream max_requests limit reached\n"
            }
            ProxyError::MaxConnections => {
                "503 Service Unavailable: upstream max_connections limit reached\n"
            }
            ProxyError::MaxPending => {
                "503 Service Unavailable: upstream max_pending limit reached\n"
            }
            ProxyError::RouteTimeout => "504 Gateway Timeout: route timeout reached\n",
            ProxyError::ConnectRefused => "502 Bad Gateway: upstream refused the connection\n",
            ProxyError::ConnectTimeout => "504 Gateway Timeout: upstream connect timed out\n",
            ProxyError::ConnectFailed => "502 Bad Gateway: upstream connection failed\n",
            ProxyError::UpstreamTlsVerify => {
                "502 Bad Gateway: upstream TLS certificate verification failed\n"
            }
            ProxyError::UpstreamTlsHandshake => "502 Bad Gateway: upstream TLS handshake failed\n",
            ProxyError::MaxStreams => {
                "503 Service Unavailable: upstream HTTP/2 connections are full (http2_max_connections x http2_max_concurrent_streams)\n"
            }
            ProxyError::UpstreamReset => {
                "502 Bad Gateway: upstream closed the connection before responding\n"
            }
            ProxyError::ResponseTimeout => "504 Gateway Timeout: upstream response timed out\n",
            ProxyError::BadResponse => "502 Bad Gateway: upstream sent an invalid response\n",
            ProxyError::ClientBody => "400 Bad Request: request body could not be read\n",
            ProxyError::BodyTooLarge => crate::middleware::BODY_TOO_LARGE,
            ProxyError::BadRewrite => "500 Internal Server Error: rewritten path is invalid\n",
            ProxyError::GrpcDeadline => {
                "504 Gateway Timeout: grpc-timeout reached before the upstream responded\n"
            }
            ProxyError::MissingHost => "400 Bad Request: the request has no Host header\n",
            ProxyError::RepeatedHost => {
                "400 Bad Request: the request has more than one Host header\n"
            }
            ProxyError::InvalidHost => {
                "400 Bad Request: the request's host is not a valid host[:port]\n"
            }
            ProxyError::HostMismatch => {
                "400 Bad Request: the Host header disagrees with the request target\n"
            }
        }
    }

    /// The response for this error (no allocation: the body is static).
    pub fn response(self) -> Response<ProxyBody> {
        plain_text(self.status(), self.body())
    }
}

impl From<upstream::Error> for ProxyError {
    fn from(e: upstream::Error) -> Self {
        use upstream::Error as U;
        match e {
            U::ConnectRefused => ProxyError::ConnectRefused,
            U::ConnectTimeout => ProxyError::ConnectTimeout,
            U::ConnectFailed => ProxyError::ConnectFailed,
            U::TlsVerify => ProxyError::UpstreamTlsVerify,
            U::TlsHandshake => ProxyError::UpstreamTlsHandshake,
            U::MaxConnections => ProxyError::MaxConnections,
            U::MaxPending => ProxyError::MaxPending,
            U::MaxStreams => ProxyError::MaxStreams,
            U::Reset => ProxyError::UpstreamReset,
            U::ResponseTimeout => ProxyError::ResponseTimeout,
            U::BadResponse => ProxyError::BadResponse,
            U::ClientBody => ProxyError::ClientBody,
            U::ClientBodyTooLarge => ProxyError::BodyTooLarge,
        }
    }
}

impl From<PickError> for ProxyError {
    fn from(e: PickError) -> Self {
        match e {
            PickError::NoEndpoint => ProxyError::NoEndpoint,
            PickError::NoHealthyEndpoint => ProxyError::NoHealthyEndpoint,
        }
    }
}

pub(crate) use crate::context::plain_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_start_with_their_status() {
        use ProxyError::*;
        for e in [
            NoRoute,
            NoEndpoint,
            NoHealthyEndpoint,
            MaxRequests,
            MaxConnections,
            MaxPending,
            RouteTimeout,
            ConnectRefused,
            ConnectTimeout,
            ConnectFailed,
            UpstreamTlsVerify,
            UpstreamTlsHandshake,
            MaxStreams,
            UpstreamReset,
            ResponseTimeout,
            BadResponse,
            ClientBody,
            BodyTooLarge,
            BadRewrite,
            GrpcDeadline,
            MissingHost,
            RepeatedHost,
            InvalidHost,
            HostMismatch,
        ] {
            assert!(e.body().starts_with(e.status().as_str()), "{e:?}");
            assert!(e.body().ends_with('\n'));
        }
    }
}
