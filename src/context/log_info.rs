//! The per-request log record: filled in as the request moves through the
//! phases, read by the access log and the error paths.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The log record of one request.
#[derive(Debug, Clone, Copy)]
pub struct LogInfo<'a> {
    /// When the request head was handed to the proxy.
    pub start: Instant,
    /// The matched route's name (empty until routed).
    pub route: &'a str,
    /// The upstream's name (empty until routed).
    pub upstream: &'a str,
    /// The endpoint the request was sent to.
    pub endpoint: Option<SocketAddr>,
    /// Whether the upstream connection came from the keep-alive pool.
    pub reused_connection: bool,
    /// Time to get an upstream connection (pool or connect).
    pub upstream_connect: Option<Duration>,
    /// Time from sending the request to the upstream's response head.
    pub upstream_header: Option<Duration>,
    /// The status sent to the client.
    pub status: u16,
    /// Why the proxy answered itself (error cause), if it did.
    pub cause: Option<&'static str>,
    /// Attempts made upstream (more than 1 when the request was retried).
    pub attempts: u8,
    /// The client's User-Agent, copied into the arena for the access log.
    pub user_agent: Option<&'a str>,
    /// The client's Referer, copied into the arena for the access log.
    pub referer: Option<&'a str>,
}

impl LogInfo<'_> {
    /// An empty record for a request whose head arrived at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        LogInfo {
            start,
            route: "",
            upstream: "",
            endpoint: None,
            reused_connection: false,
            upstream_connect: None,
            upstream_header: None,
            status: 0,
            cause: None,
            attempts: 1,
            user_agent: None,
            referer: None,
        }
    }
}
