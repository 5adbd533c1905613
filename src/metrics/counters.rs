//! What one worker counts, per route, upstream, endpoint, pool address and
//! for the process: plain structs of [`Counter`]s and [`Gauge`]s, one per
//! worker inside a `Shards`, written only by that worker.

use super::shard::{Counter, Gauge, Histogram};

/// One worker's figures for one route.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    /// Responses by status class.
    pub(crate) responses: [Counter; 5],
    /// Request body bytes received from clients.
    pub(crate) bytes_in: Counter,
    /// Response body bytes sent to clients.
    pub(crate) bytes_out: Counter,
    /// From the request head to the end of the response body.
    pub(crate) latency: Histogram,
}

/// One worker's figures for one upstream.
#[derive(Debug, Default)]
pub(crate) struct UpstreamCounters {
    /// Responses by status class (from the upstream, or the proxy's own 5xx
    /// when the upstream failed).
    pub(crate) responses: [Counter; 5],
    /// Connection attempts that failed (refused, unreachable, timed out).
    pub(crate) connect_failures: Counter,
    /// Requests that got no response head within `response_header_timeout`.
    pub(crate) timeouts: Counter,
    /// Requests in flight to the upstream (for `max_requests`).
    pub(crate) in_flight: Gauge,
    /// Requests refused with 503 because `max_requests` was reached.
    pub(crate) limit_rejections: Counter,
    /// Connections open that this upstream opened (for `max_connections`).
    pub(crate) connections: Gauge,
    /// Requests waiting for a connection (for `max_pending`).
    pub(crate) pending: Gauge,
    /// Requests refused with 503: no connection within `connect_timeout`
    /// while `max_connections` were open.
    pub(crate) max_connections_rejections: Counter,
    /// Requests refused with 503 because `max_pending` were waiting.
    pub(crate) max_pending_rejections: Counter,
    /// Retries sent (attempts after the first).
    pub(crate) retries: Counter,
    /// Retries not sent because the upstream's retry budget was spent.
    pub(crate) retry_budget_exhausted: Counter,
    /// This worker's retry budget, in milli-retries (owned by the worker).
    pub(crate) retry_tokens: Counter,
    /// When the budget was last refilled (ms, monotonic).
    pub(crate) retry_refilled_ms: Counter,
    /// Exchanges sent over a pooled connection.
    pub(crate) pool_reused: Counter,
    /// Exchanges that needed a new connection.
    pub(crate) pool_new: Counter,
    /// From sending the request to the upstream's response head.
    pub(crate) latency: Histogram,
}

/// One worker's figures for one endpoint.
#[derive(Debug, Default)]
pub(crate) struct EndpointCounters {
    /// Requests sent to the endpoint.
    pub(crate) requests: Counter,
    /// Requests that failed at the endpoint (connect failure, reset, timeout,
    /// invalid response).
    pub(crate) failures: Counter,
    /// Unix time (ms) of the last failure, 0 if none.
    pub(crate) last_failure_ms: Counter,
    /// Requests in flight at the endpoint.
    pub(crate) in_flight: Gauge,
    /// Outlier detection: 5xx responses in a row seen by this worker.
    pub(crate) consecutive_5xx: Counter,
    /// Outlier detection: failed connection attempts in a row.
    pub(crate) consecutive_connect_failures: Counter,
}

/// One worker's refusals by one policy middleware (`ip_filter`,
/// `request_limits`, `cors`, whose answered preflights count here too,
/// `basic_auth`, `api_key`, `rate_limit`, `connection_limit`), by
/// reason (indexed like [`Refusal::ALL`]).
#[derive(Debug, Default)]
pub(crate) struct PolicyCounters {
    pub(crate) refusals: [Counter; Refusal::ALL.len()],
}

/// Why a policy middleware refused a request: one counter each, and the
/// `reason` label of `strait_middleware_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `ip_filter`: the client address is in `deny` (403).
    Denied,
    /// `ip_filter`: `allow` is set and the client address is not in it (403).
    NotAllowed,
    /// `request_limits`: the body is over `max_body` (413).
    BodyTooLarge,
    /// `request_limits`: the method is not in `methods` (405).
    Method,
    /// `request_limits`: more fields than `max_header_count` (431).
    HeaderCount,
    /// `request_limits`: more field bytes than `max_header_bytes` (431).
    HeaderBytes,
    /// `request_limits`: a request target over `max_url_length` (414).
    UrlLength,
    /// `cors`: a preflight from an origin not in `allow_origins` (403).
    CorsOrigin,
    /// `cors`: a preflight for a method not in `allow_methods` (403).
    CorsMethod,
    /// `cors`: a preflight for a header not in `allow_headers` (403).
    CorsHeaders,
    /// `cors`: not a refusal: a preflight answered `204`, counted in its
    /// own family (`strait_cors_preflights_total`).
    CorsPreflight,
    /// `basic_auth`, `api_key`: no credentials (401).
    CredentialsMissing,
    /// `basic_auth`: an `Authorization` that is not well-formed Basic
    /// credentials (401).
    CredentialsMalformed,
    /// `basic_auth`: a user not in the htpasswd file (401).
    UnknownUser,
    /// `basic_auth`: the password does not match (401).
    BadPassword,
    /// `basic_auth`: `max_verifications` password checks already running
    /// (503).
    VerifierBusy,
    /// `api_key`: a key that matches no consumer's (401).
    UnknownKey,
    /// `jwt`: no token in any configured place (401).
    JwtMissing,
    /// `jwt`: not three base64url parts of JSON, or too long (401).
    JwtMalformed,
    /// `jwt`: an algorithm not accepted (`none` above all), or one no key
    /// of that `kid` verifies (401).
    JwtAlgorithm,
    /// `jwt`: a `kid` no key has (401; a fetched set is refreshed early).
    JwtUnknownKid,
    /// `jwt`: the signature does not verify (401).
    JwtSignature,
    /// `jwt`: past its `exp`, beyond the leeway (401).
    JwtExpired,
    /// `jwt`: before its `nbf`, beyond the leeway (401).
    JwtNotYetValid,
    /// `jwt`: no `iss`, or one not in `issuer` (401).
    JwtIssuer,
    /// `jwt`: no `aud`, or none in `audiences` (401).
    JwtAudience,
    /// `jwt`: a required claim missing (401).
    JwtClaim,
    /// `forward_auth`: the auth service answered other than `2xx` (its
    /// answer goes to the client).
    AuthDenied,
    /// `forward_auth`: no usable answer in time (503).
    AuthUnavailable,
    /// `forward_auth` with `fail_open`: no usable answer, and the request
    /// was let through (not a refusal; counted so that it shows).
    AuthFailedOpen,
    /// `rate_limit`: the key is over its rate and burst (429, or the
    /// configured status).
    Rate,
    /// `connection_limit`: the key has `max` requests in flight (429, or
    /// the configured status).
    Connections,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 32] = [
        Refusal::Denied,
        Refusal::NotAllowed,
        Refusal::BodyTooLarge,
        Refusal::Method,
        Refusal::HeaderCount,
        Refusal::HeaderBytes,
        Refusal::UrlLength,
        Refusal::CorsOrigin,
        Refusal::CorsMethod,
        Refusal::CorsHeaders,
        Refusal::CorsPreflight,
        Refusal::CredentialsMissing,
        Refusal::CredentialsMalformed,
        Refusal::UnknownUser,
        Refusal::BadPassword,
        Refusal::VerifierBusy,
        Refusal::UnknownKey,
        Refusal::JwtMissing,
        Refusal::JwtMalformed,
        Refusal::JwtAlgorithm,
        Refusal::JwtUnknownKid,
        Refusal::JwtSignature,
        Refusal::JwtExpired,
        Refusal::JwtNotYetValid,
        Refusal::JwtIssuer,
        Refusal::JwtAudience,
        Refusal::JwtClaim,
        Refusal::AuthDenied,
        Refusal::AuthUnavailable,
        Refusal::AuthFailedOpen,
        Refusal::Rate,
        Refusal::Connections,
    ];

    /// The metric label, and the access log's cause.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Denied => "ip_denied",
            Refusal::NotAllowed => "ip_not_allowed",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::Method => "method_not_allowed",
            Refusal::HeaderCount => "too_many_headers",
            Refusal::HeaderBytes => "headers_too_large",
            Refusal::UrlLength => "url_too_long",
            Refusal::CorsOrigin => "cors_origin_not_allowed",
            Refusal::CorsMethod => "cors_method_not_allowed",
            Refusal::CorsHeaders => "cors_header_not_allowed",
            Refusal::CorsPreflight => "cors_preflight",
            Refusal::CredentialsMissing => "credentials_missing",
            Refusal::CredentialsMalformed => "credentials_malformed",
            Refusal::UnknownUser => "unknown_user",
            Refusal::BadPassword => "bad_password",
            Refusal::VerifierBusy => "verifier_busy",
            Refusal::UnknownKey => "unknown_key",
            Refusal::JwtMissing => "jwt_missing",
            Refusal::JwtMalformed => "jwt_malformed",
            Refusal::JwtAlgorithm => "jwt_algorithm",
            Refusal::JwtUnknownKid => "jwt_unknown_kid",
            Refusal::JwtSignature => "jwt_signature",
            Refusal::JwtExpired => "jwt_expired",
            Refusal::JwtNotYetValid => "jwt_not_yet_valid",
            Refusal::JwtIssuer => "jwt_issuer",
            Refusal::JwtAudience => "jwt_audience",
            Refusal::JwtClaim => "jwt_claim",
            Refusal::AuthDenied => "forward_auth_denied",
            Refusal::AuthUnavailable => "forward_auth_unavailable",
            Refusal::AuthFailedOpen => "forward_auth_failed_open",
            Refusal::Rate => "rate_limited",
            Refusal::Connections => "too_many_in_flight",
        }
    }
}

/// One worker's connection pool figures for one address (shared by every
/// upstream that lists it, like the pool itself).
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    /// Idle keep-alive connections.
    pub(crate) idle: Gauge,
    /// Connections carrying an exchange.
    pub(crate) active: Gauge,
}

impl EndpointCounters {
    /// Records a failed exchange.
    pub(crate) fn failed(&self) {
        self.failures.inc();
        self.last_failure_ms.set(crate::util::time::unix_ms());
    }
}

/// One worker's process-wide figures.
#[derive(Debug, Default)]
pub(crate) struct WorkerCounters {
    /// Client connections open.
    pub(crate) connections_active: Gauge,
    /// Client connections accepted.
    pub(crate) connections_total: Counter,
    /// Client connections refused at accept, by reason (indexed like
    /// `worker::budget::Refused::ALL`).
    pub(crate) connections_refused: [Counter; 2],
    /// Client connections the worker closed, by reason (indexed like
    /// `worker::connections::Close::ALL`).
    pub(crate) connections_closed: [Counter; 6],
    /// Client connections that ended with an error, by kind (indexed like
    /// `worker::connection::ClientError::ALL`).
    pub(crate) connection_errors: [Counter; 5],
    /// `accept` calls that failed (descriptors exhausted and the like).
    pub(crate) accept_errors: Counter,
    /// TLS handshakes completed on client connections.
    pub(crate) tls_handshakes: Counter,
    /// TLS handshakes that failed, by reason (indexed like
    /// `HandshakeFailure::ALL`).
    pub(crate) tls_handshake_failures: [Counter; 7],
    /// Tunnels open (upgraded connections and CONNECT tunnels).
    pub(crate) tunnels_active: Gauge,
    /// Tunnels opened by an `Upgrade` (or an HTTP/2 extended CONNECT).
    pub(crate) tunnels_upgrade: Counter,
    /// Tunnels opened by a plain `CONNECT`.
    pub(crate) tunnels_connect: Counter,
    /// Tunnels closed because no byte moved for their idle timeout.
    pub(crate) tunnels_idle_closed: Counter,
    /// Bytes carried by tunnels from the client to the upstream.
    pub(crate) tunnel_bytes_up: Counter,
    /// Bytes carried by tunnels from the upstream to the client.
    pub(crate) tunnel_bytes_down: Counter,
}
