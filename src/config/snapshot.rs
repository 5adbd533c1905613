//! The compiled, immutable configuration the data plane reads: the route table,
//! the upstreams, the middleware instances and the server settings. Built by the
//! control plane, published with one atomic swap, never changed afterwards.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::balance::BalancePolicy;
use crate::limit::{ConnTable, HoldsTables, LendTables, TablesRef};
use crate::metrics::{HoldsStats, SnapshotStats};
use crate::middleware::{AccessLog, Middleware};
use crate::router::{RouteSpec, Router};
use crate::upstream::health_state::EndpointState;
use crate::upstream::UpstreamSpec;

/// One published configuration.
pub struct Snapshot {
    /// Increases with every publish.
    pub(crate) generation: u64,
    /// Where it came from (a path, `<built-in>`, `<command line>`).
    pub(crate) source: String,
    pub(crate) server: ServerSettings,
    pub(crate) listeners: Vec<ListenerSpec>,
    pub(crate) router: Router,
    /// Indexed by the router's route ids.
    pub(crate) routes: Vec<Route>,
    /// Indexed by `Route::upstream`.
    pub(crate) upstreams: Vec<UpstreamSpec>,
    /// How each upstream's endpoints are picked, indexed like `upstreams`
    /// (the balancers' part of an upstream; `upstream/` knows nothing of it).
    pub(crate) balancing: Vec<BalancePolicy>,
    /// Logs requests that matched no route.
    pub(crate) fallback_log: Option<AccessLog>,
    /// The policy middlewares (`ip_filter`, `request_limits`, `cors`) by the index
    /// their instances count refusals under: name and type.
    pub(crate) policies: PolicyNames,
    /// The admin API listener.
    pub(crate) admin: AdminSettings,
    /// What the routes and upstreams count into (filled by the control plane).
    pub(crate) stats: SnapshotStats,
    /// Each endpoint's health and ejection state, indexed like the
    /// upstreams and their endpoints (filled by the control plane).
    pub(crate) endpoint_states: Vec<Vec<Arc<EndpointState>>>,
    /// `[connect]`: plain CONNECT tunnelling; `None`: off (405).
    pub(crate) connect: Option<ConnectSettings>,
    /// The `connection_limit` tables of the middlewares, by the index their
    /// instances give their guards (which reach them through the worker's
    /// handle of this snapshot).
    pub(crate) conn_tables: Box<[Arc<ConnTable>]>,
}

/// The policy middlewares of a snapshot, each as its name and type.
pub(crate) type PolicyNames = Vec<(Box<str>, &'static str)>;

/// A worker's counted handle to a snapshot. `Rc<Arc<_>>` on purpose:
/// requests clone the `Rc` (a plain increment on this thread); cloning the
/// `Arc` would write the snapshot's shared refcount from every worker on
/// every request.
#[allow(clippy::redundant_allocation)]
pub(crate) type SnapshotRef = Rc<Arc<Snapshot>>;

impl HoldsStats for Arc<Snapshot> {
    fn stats(&self) -> &SnapshotStats {
        &self.stats
    }
}

impl HoldsTables for Arc<Snapshot> {
    fn conn_table(&self, index: u16) -> &ConnTable {
        &self.conn_tables[usize::from(index)]
    }
}

impl LendTables for SnapshotRef {
    fn lend(&self) -> TablesRef {
        self.clone()
    }
}

impl Snapshot {
    /// A one-paragraph summary for the start-up log.
    pub fn summary(&self) -> String {
        let listeners: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{} ({})", l.addr, l.name))
            .collect();
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| format!("{} -> {}", r.name, self.upstreams[r.upstream].name))
            .collect();
        let upstreams: Vec<String> = self
            .upstreams
            .iter()
            .map(|u| {
                let eps: Vec<String> = u.endpoints.iter().map(|e| e.addr.to_string()).collect();
                format!("{} [{}]", u.name, eps.join(", "))
            })
            .collect();
        format!(
            "config {} (generation {}): listeners: {}; routes: {}; upstreams: {}; workers: {}",
            self.source,
            self.generation,
            listeners.join(", "),
            routes.join(", "),
            upstreams.join(", "),
            self.server.workers
        )
    }
}

/// `[server]` as compiled.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) workers: usize,
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// How long a connection may take to send a whole request head (from
    /// its first byte, or from the accept for the first request).
    pub(crate) header_read_timeout: Duration,
    /// How long an HTTP/1.1 connection may sit idle between requests.
    pub(crate) keepalive_timeout: Duration,
    /// How long an HTTP/2 connection may have no stream open before a GOAWAY.
    pub(crate) http2_idle_timeout: Duration,
    /// How often an HTTP/2 connection is sent a PING while it is quiet.
    pub(crate) http2_keepalive_interval: Duration,
    /// How long the answer to that PING may take before the connection closes.
    pub(crate) http2_keepalive_timeout: Duration,
    /// Client connections the process keeps open at most; `None`: derived
    /// from the descriptor limit at start.
    pub(crate) max_connections: Option<usize>,
    /// Client connections one IP address may have open; `None`: no limit.
    pub(crate) max_connections_per_ip: Option<usize>,
    /// Requests served on one connection before it is closed gracefully;
    /// `None`: no limit.
    pub(crate) max_requests_per_connection: Option<u32>,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) http2_max_concurrent_streams: u32,
    pub(crate) add_forwarded_headers: bool,
    pub(crate) preserve_host: bool,
    /// How long a shutdown waits for connections to finish.
    pub(crate) drain_timeout: Duration,
    /// Reload when the configuration file changes.
    pub(crate) watch_config: bool,
}

/// `[admin]` as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminSettings {
    /// `None` when `enabled = false`.
    pub(crate) listen: Option<SocketAddr>,
    /// Required as `Authorization: Bearer TOKEN` when set.
    pub(crate) token: Option<String>,
}

/// Where the admin API listens unless `[admin] listen` says otherwise.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// Why an admin API on `addr` without a token is refused.
pub(crate) fn admin_exposed_message(addr: SocketAddr) -> String {
    format!(
        "admin.listen = \"{addr}\" is not a loopback address and admin.token is not set: anyone who can reach it could reload the configuration; set admin.token, or listen on 127.0.0.1"
    )
}

/// A listener as compiled.
#[derive(Debug, Clone)]
pub(crate) struct ListenerSpec {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    /// `[listeners.tls]`: certificates and settings of a TLS listener
    /// (`None`: plain HTTP). Workers look it up by `addr` for each new
    /// connection, so a reload replaces certificates without re-binding.
    pub(crate) tls: Option<std::sync::Arc<crate::tls::server::ServerTls>>,
}

/// A route as compiled: its chain and its upstream.
pub(crate) struct Route {
    pub(crate) name: Box<str>,
    pub(crate) chain: Box<[Middleware]>,
    pub(crate) upstream: usize,
    /// Total time allowed from the request head to the upstream's response
    /// head (`timeout = ...`), on top of the upstream's own timeouts.
    pub(crate) timeout: Option<std::time::Duration>,
    /// When and how to try another endpoint.
    pub(crate) retry: Option<Box<RetryPolicy>>,
    /// The match conditions as configured (for the admin API; the router has
    /// its own compiled form).
    pub(crate) matcher: RouteSpec,
    /// The names in `middlewares = [...]`, one per element of `chain`.
    pub(crate) middleware_names: Box<[Box<str>]>,
    /// Protocols a client may switch to with `Upgrade` (lowercase tokens,
    /// `name` or `name/version`); empty: upgrades off, `Upgrade` is stripped.
    pub(crate) upgrades: Box<[Box<str>]>,
    /// A tunnel with no bytes either way for this long is closed.
    pub(crate) tunnel_idle_timeout: Duration,
}

/// `[connect]` as compiled.
#[derive(Debug, Clone)]
pub(crate) struct ConnectSettings {
    /// Destinations a `CONNECT` may reach; anything else is refused (403).
    pub(crate) allow: Box<[ConnectTarget]>,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// One `[connect] allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectTarget {
    /// `host:port`: the name (lowercase, no trailing dot), as the client
    /// writes it; resolved when a client asks for it.
    Name(Box<str>, u16),
    /// `IP:port` or `CIDR:port`: an IP literal the client asks for must be
    /// in the network.
    Net(IpNet, u16),
}

/// A route's `retry = { ... }` as compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first one included (2 to 10).
    pub(crate) attempts: u32,
    /// Time allowed for each attempt's response head.
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) on_connect_failure: bool,
    pub(crate) on_reset: bool,
    pub(crate) on_timeout: bool,
    /// Response statuses retried (e.g. 502, 503, 504).
    pub(crate) on_statuses: Vec<u16>,
    /// Retry methods that are not idempotent (POST, PATCH) too.
    pub(crate) non_idempotent: bool,
    /// Largest request body (bytes) kept for replay.
    pub(crate) replay_limit: u64,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
}

pub(crate) const DEFAULT_ATTEMPTS: u32 = 2;
pub(crate) const DEFAULT_REPLAY_LIMIT: u64 = 64 * 1024;
pub(crate) const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// The retry conditions `on = [...]` accepts besides status codes.
pub(crate) const CONDITIONS: [&str; 3] = ["connect_failure", "reset", "timeout"];
