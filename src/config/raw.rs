//! Raw configuration: the serde image of the TOML file, with source spans.
//! Unknown keys are rejected here; every semantic check is left to `compile`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) listeners: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<Spanned<String>, Spanned<RawUpstream>>,
    #[serde(default)]
    pub(crate) middlewares: BTreeMap<Spanned<String>, Spanned<RawMiddleware>>,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    /// Plain `CONNECT` tunnelling; absent: off.
    pub(crate) connect: Option<Spanned<RawConnect>>,
}

/// `[connect]`: plain `CONNECT host:port` tunnelling to listed destinations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnect {
    #[serde(default)]
    pub(crate) allow: Vec<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
}

/// `[admin]`: the admin API listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) enabled: Option<bool>,
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) token: Option<Spanned<String>>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) workers: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Spanned<String>>,
    pub(crate) header_read_timeout: Option<Spanned<String>>,
    pub(crate) keepalive_timeout: Option<Spanned<String>>,
    pub(crate) http2_idle_timeout: Option<Spanned<String>>,
    pub(crate) http2_keepalive_interval: Option<Spanned<String>>,
    pub(crate) http2_keepalive_timeout: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) max_connections_per_ip: Option<Spanned<i64>>,
    pub(crate) max_requests_per_connection: Option<Spanned<i64>>,
    pub(crate) max_header_bytes: Option<Spanned<i64>>,
    pub(crate) max_headers: Option<Spanned<i64>>,
    pub(crate) http2_max_concurrent_streams: Option<Spanned<i64>>,
    pub(crate) add_forwarded_headers: Option<bool>,
    pub(crate) preserve_host: Option<bool>,
    pub(crate) access_log: Option<Spanned<String>>,
    pub(crate) drain_timeout: Option<Spanned<String>>,
    pub(crate) watch_config: Option<bool>,
}

/// `[[listeners]]`: one bound address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) address: Spanned<String>,
    /// `[listeners.tls]`: terminate TLS on this listener.
    pub(crate) tls: Option<Spanned<RawListenerTls>>,
}

/// `[listeners.tls]`: TLS termination settings of a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerTls {
    pub(crate) min_version: Option<Spanned<String>>,
    pub(crate) alpn: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) handshake_timeout: Option<Spanned<String>>,
    pub(crate) client_ca: Option<Spanned<String>>,
    pub(crate) client_auth: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) certificates: Vec<Spanned<RawCertificate>>,
}

/// `[[listeners.tls.certificates]]`: one certificate chain and its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
    pub(crate) names: Option<Vec<Spanned<String>>>,
    pub(crate) default: Option<Spanned<bool>>,
}

/// `[[routes]]`: match → middlewares → upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Option<Spanned<String>>,
    #[serde(rename = "match", default)]
    pub(crate) matcher: Option<Spanned<RawMatch>>,
    #[serde(default)]
    pub(crate) middlewares: Vec<Spanned<String>>,
    pub(crate) upstream: Spanned<String>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) retry: Option<Spanned<RawRetry>>,
    /// Protocols a client may switch to (`Upgrade`); absent: `["websocket"]`.
    pub(crate) upgrades: Option<Vec<Spanned<String>>>,
    pub(crate) tunnel_idle_timeout: Option<Spanned<String>>,
}

/// `retry = { ... }` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<Spanned<i64>>,
    pub(crate) per_try_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) on: Vec<Spanned<String>>,
    pub(crate) non_idempotent: Option<bool>,
    pub(crate) replay_limit: Option<Spanned<i64>>,
    pub(crate) backoff_base: Option<Spanned<String>>,
    pub(crate) backoff_max: Option<Spanned<String>>,
}

/// `retry_budget = { ... }` of an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetryBudget {
    pub(crate) percent: Option<Spanned<i64>>,
    pub(crate) min_per_second: Option<Spanned<i64>>,
}

/// `match = { ... }` of a route; every condition present must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) path_prefix: Option<Spanned<String>>,
    pub(crate) path_pattern: Option<Spanned<String>>,
    pub(crate) path_regex: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) headers: Vec<Spanned<RawHeaderMatch>>,
    #[serde(default)]
    pub(crate) query: Vec<Spanned<RawHeaderMatch>>,
    #[serde(default)]
    pub(crate) cookies: Vec<Spanned<RawHeaderMatch>>,
}

/// One header, query-parameter or cookie condition: present (no `value`) or equal to
/// `value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderMatch {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// `[upstreams.NAME]`: a set of endpoints and how to reach them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) endpoints: Vec<Spanned<RawEndpoint>>,
    pub(crate) balance: Option<Spanned<String>>,
    /// `ring` and `maglev`: what the hash is taken from.
    pub(crate) hash_key: Option<Spanned<String>>,
    /// `ring` and `maglev`: the balancer for requests without a key.
    pub(crate) hash_fallback: Option<Spanned<String>>,
    /// `ring`: points per unit of weight.
    pub(crate) virtual_nodes: Option<Spanned<i64>>,
    /// `maglev`: lookup table size (a prime).
    pub(crate) maglev_table_size: Option<Spanned<i64>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) response_header_timeout: Option<Spanned<String>>,
    pub(crate) body_idle_timeout: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
    pub(crate) max_idle_per_endpoint: Option<Spanned<i64>>,
    pub(crate) health_check: Option<Spanned<RawHealthCheck>>,
    pub(crate) max_requests: Option<Spanned<i64>>,
    pub(crate) max_connections: Option<Spanned<i64>>,
    pub(crate) max_pending: Option<Spanned<i64>>,
    pub(crate) outlier_detection: Option<Spanned<RawOutlierDetection>>,
    pub(crate) retry_budget: Option<Spanned<RawRetryBudget>>,
    /// A request whose connection could not be made goes to another
    /// endpoint (default `true`).
    pub(crate) connect_failover: Option<bool>,
    pub(crate) dns_refresh: Option<Spanned<String>>,
    pub(crate) dns_family: Option<Spanned<String>>,
    /// `"http1"`, `"h2c"`, `"h2"` or `"auto"`.
    pub(crate) protocol: Option<Spanned<String>>,
    pub(crate) http2_max_concurrent_streams: Option<Spanned<i64>>,
    pub(crate) http2_max_connections: Option<Spanned<i64>>,
    /// TLS to the endpoints: on when present (`tls = {}` for the defaults).
    pub(crate) tls: Option<Spanned<RawUpstreamTls>>,
}

/// `[upstreams.NAME.tls]`: TLS to the upstream's endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) server_name: Option<Spanned<String>>,
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) client_key: Option<Spanned<String>>,
    pub(crate) insecure_skip_verify: Option<bool>,
}

/// `[upstreams.NAME.outlier_detection]`: passive health from real traffic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlierDetection {
    pub(crate) consecutive_5xx: Option<Spanned<i64>>,
    pub(crate) consecutive_connect_failures: Option<Spanned<i64>>,
    pub(crate) base_ejection_time: Option<Spanned<String>>,
    pub(crate) max_ejection_time: Option<Spanned<String>>,
    pub(crate) max_ejection_percent: Option<Spanned<i64>>,
}

/// `[upstreams.NAME.health_check]`: an active probe of every endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    #[serde(rename = "type")]
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) host: Option<Spanned<String>>,
    /// Integers (`200`) or ranges (`"200-399"`, `"2xx"`).
    #[serde(default)]
    pub(crate) expected_statuses: Vec<Spanned<toml::Value>>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) healthy_threshold: Option<Spanned<i64>>,
    pub(crate) unhealthy_threshold: Option<Spanned<i64>>,
    pub(crate) fail_open: Option<bool>,
}

/// An endpoint: `"10.0.0.1:80"` or `{ address = "10.0.0.1:80", weight = 3 }`.
#[derive(Debug)]
pub(crate) enum RawEndpoint {
    Address(String),
    Detailed(RawEndpointDetailed),
}

// Hand-written rather than `untagged` so that a typo inside the table form is
// reported as such ("unknown field `wieght`") instead of "did not match any variant".
impl<'de> Deserialize<'de> for RawEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawEndpoint;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address string like \"127.0.0.1:9000\" or a table { address = ..., weight = ... }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawEndpoint, E> {
                Ok(RawEndpoint::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawEndpoint, A::Error> {
                RawEndpointDetailed::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawEndpoint::Detailed)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The table form of an endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpointDetailed {
    pub(crate) address: String,
    pub(crate) weight: Option<i64>,
}

/// `[middlewares.NAME]`: a named, configured middleware instance.
// Read once per load and dropped after the compile: the size of its
// largest variant (`jwt`) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawMiddleware {
    RequestId {
        header: Option<String>,
        #[serde(default)]
        response: Option<bool>,
        #[serde(default)]
        trust_incoming: Option<bool>,
    },
    Headers {
        #[serde(default)]
        request_set: BTreeMap<String, String>,
        #[serde(default)]
        request_append: BTreeMap<String, String>,
        #[serde(default)]
        request_remove: Vec<String>,
        #[serde(default)]
        response_set: BTreeMap<String, String>,
        #[serde(default)]
        response_append: BTreeMap<String, String>,
        #[serde(default)]
        response_remove: Vec<String>,
    },
    StripPrefix {
        prefix: String,
    },
    Rewrite {
        path: String,
    },
    AccessLog {
        format: Option<String>,
        output: Option<String>,
    },
    HttpsRedirect {
        port: Option<i64>,
        status: Option<i64>,
    },
    IpFilter {
        #[serde(default)]
        allow: Vec<String>,
        #[serde(default)]
        deny: Vec<String>,
    },
    RequestLimits {
        /// A size: bytes as an integer, or a string with a unit.
        max_body: Option<toml::Value>,
        methods: Option<Vec<String>>,
        max_header_count: Option<i64>,
        max_header_bytes: Option<i64>,
        max_url_length: Option<i64>,
    },
    Cors {
        #[serde(default)]
        allow_origins: Vec<String>,
        allow_methods: Option<Vec<String>>,
        #[serde(default)]
        allow_headers: Vec<String>,
        #[serde(default)]
        expose_headers: Vec<String>,
        allow_credentials: Option<bool>,
        max_age: Option<String>,
    },
    BasicAuth {
        realm: Option<String>,
        htpasswd: Option<String>,
        consumer_header: Option<String>,
        forward_credentials: Option<bool>,
        max_verifications: Option<i64>,
    },
    ApiKey {
        keys_file: Option<String>,
        keys: Option<BTreeMap<String, String>>,
        header: Option<String>,
        query: Option<String>,
        realm: Option<String>,
        consumer_header: Option<String>,
        forward_credentials: Option<bool>,
    },
    Jwt {
        jwks_file: Option<String>,
        jwks_url: Option<String>,
        jwks_refresh: Option<String>,
        jwks_cooldown: Option<String>,
        jwks_ca_file: Option<String>,
        public_keys: Option<Vec<String>>,
        secret: Option<String>,
        secret_file: Option<String>,
        algorithms: Option<Vec<String>>,
        issuer: Option<OneOrMany>,
        audiences: Option<Vec<String>>,
        leeway: Option<String>,
        require_exp: Option<bool>,
        required_claims: Option<Vec<String>>,
        token_header: Option<bool>,
        token_cookie: Option<String>,
        token_query: Option<String>,
        consumer_claim: Option<String>,
        claims_to_headers: Option<BTreeMap<String, String>>,
        forward_credentials: Option<bool>,
        realm: Option<String>,
    },
    Compress {
        encodings: Option<Vec<String>>,
        /// A size: bytes as an integer, or a string with a unit.
        min_size: Option<toml::Value>,
        types: Option<Vec<String>>,
        gzip_level: Option<i64>,
        brotli_level: Option<i64>,
        zstd_level: Option<i64>,
        max_streams: Option<i64>,
    },
    ForwardAuth {
        url: Option<String>,
        timeout: Option<String>,
        request_headers: Option<Vec<String>>,
        response_headers: Option<Vec<String>>,
        consumer_header: Option<String>,
        fail_open: Option<bool>,
        ca_file: Option<String>,
    },
    RateLimit {
        /// `"COUNT/UNIT"`: `"100/s"`, `"600/m"`, `"10/h"`.
        rate: Option<String>,
        burst: Option<i64>,
        /// How many requests of a burst pass at once (absent: all of them).
        delay: Option<i64>,
        /// One key source, or a list of them combined.
        key: Option<toml::Value>,
        max_keys: Option<i64>,
        status: Option<i64>,
    },
    ConnectionLimit {
        max: Option<i64>,
        /// One key source, or a list of them combined.
        key: Option<toml::Value>,
        max_keys: Option<i64>,
        status: Option<i64>,
    },
    Custom {
        name: String,
        #[serde(default)]
        settings: toml::Table,
    },
}

/// A string, or a list of strings (`issuer = "https://idp.example"` or
/// `issuer = ["https://a.example", "https://b.example"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}
