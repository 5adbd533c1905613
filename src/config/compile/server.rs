//! Compiles `[server]`, `[admin]` and `[connect]` into their settings. Listeners
//! are left to `listeners` and `tls`, the `server.access_log` fallback to `middlewares`.

use std::time::Duration;

use super::{span, Compiler, DEFAULT_TUNNEL_IDLE_TIMEOUT};
use crate::config::parse::{parse_cidr, parse_connect_target, parse_listen_addr};
use crate::config::raw::{RawAdmin, RawConnect, RawServer};
use crate::config::snapshot::{AdminSettings, ConnectSettings, ServerSettings};

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
const DEFAULT_H2_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
const DEFAULT_H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The most `max_connections` may say (the kernel's own ceiling on
/// descriptors, `fs.nr_open`, is 1,048,576 by default).
const MAX_CONNECTIONS: i64 = 1 << 24;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_HEADERS: usize = 100;
const DEFAULT_H2_STREAMS: u32 = 256;
const MAX_WORKERS: i64 = 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Compiler<'_, '_> {
    pub(super) fn server(&mut self, raw: &RawServer) -> ServerSettings {
        let workers = self.int_in(&raw.workers, 0, 0..MAX_WORKERS + 1, "server.workers") as usize;
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            workers
        };
        let mut trusted_proxies = Vec::new();
        for entry in &raw.trusted_proxies {
            match parse_cidr(entry.get_ref()) {
                Ok(net) => trusted_proxies.push(net),
                Err(msg) => self.d.at(span(entry), msg),
            }
        }
        ServerSettings {
            workers,
            trusted_proxies,
            header_read_timeout: self.duration(
                &raw.header_read_timeout,
                DEFAULT_HEADER_READ_TIMEOUT,
                "server.header_read_timeout",
            ),
            keepalive_timeout: self.duration(
                &raw.keepalive_timeout,
                DEFAULT_KEEPALIVE_TIMEOUT,
                "server.keepalive_timeout",
            ),
            http2_idle_timeout: self.duration(
                &raw.http2_idle_timeout,
                DEFAULT_H2_IDLE_TIMEOUT,
                "server.http2_idle_timeout",
            ),
            http2_keepalive_interval: self.duration(
                &raw.http2_keepalive_interval,
                DEFAULT_H2_KEEPALIVE_INTERVAL,
                "server.http2_keepalive_interval",
            ),
            http2_keepalive_timeout: self.duration(
                &raw.http2_keepalive_timeout,
                DEFAULT_H2_KEEPALIVE_TIMEOUT,
                "server.http2_keepalive_timeout",
            ),
            max_connections: raw.max_connections.as_ref().map(|_| {
                self.int_in(
                    &raw.max_connections,
                    0,
                    1..MAX_CONNECTIONS + 1,
                    "server.max_connections",
                ) as usize
            }),
            max_connections_per_ip: self.optional_limit(
                &raw.max_connections_per_ip,
                MAX_CONNECTIONS,
                "server.max_connections_per_ip",
            ),
            max_requests_per_connection: self
                .optional_limit(
                    &raw.max_requests_per_connection,
                    i64::from(u32::MAX),
                    "server.max_requests_per_connection",
                )
                .map(|n| n as u32),
            max_header_bytes: self.int_in(
                &raw.max_header_bytes,
                DEFAULT_MAX_HEADER_BYTES as i64,
                8192..(1 << 20) + 1,
                "server.max_header_bytes",
            ) as usize,
            max_headers: self.int_in(
                &raw.max_headers,
                DEFAULT_MAX_HEADERS as i64,
                1..1001,
                "server.max_headers",
            ) as usize,
            http2_max_concurrent_streams: self.int_in(
                &raw.http2_max_concurrent_streams,
                i64::from(DEFAULT_H2_STREAMS),
                1..65536,
                "server.http2_max_concurrent_streams",
            ) as u32,
            add_forwarded_headers: raw.add_forwarded_headers.unwrap_or(true),
            preserve_host: raw.preserve_host.unwrap_or(true),
            drain_timeout: self.duration(
                &raw.drain_timeout,
                DEFAULT_DRAIN_TIMEOUT,
                "server.drain_timeout",
            ),
            watch_config: raw.watch_config.unwrap_or(true),
        }
    }

    /// A limit where 0 (the default) means none.
    fn optional_limit(
        &mut self,
        value: &Option<toml::Spanned<i64>>,
        max: i64,
        what: &str,
    ) -> Option<usize> {
        match self.int_in(value, 0, 0..max + 1, what) {
            0 => None,
            n => Some(n as usize),
        }
    }

    pub(super) fn admin(&mut self, raw: &RawAdmin) -> AdminSettings {
        let token = match &raw.token {
            Some(t) if t.get_ref().trim().is_empty() => {
                self.d.at(
                    span(t),
                    "admin.token is empty: remove it or set a secret of at least 16 characters",
                );
                None
            }
            Some(t) if t.get_ref().len() < 16 => {
                self.d.at(
                    span(t),
                    "admin.token is too short: expected at least 16 characters",
                );
                None
            }
            Some(t) => Some(t.get_ref().clone()),
            None => None,
        };
        if raw.enabled == Some(false) {
            return AdminSettings {
                listen: None,
                token,
            };
        }
        let text = raw
            .listen
            .as_ref()
            .map_or(crate::config::snapshot::DEFAULT_ADMIN_LISTEN, |l| {
                l.get_ref()
            });
        let listen = match parse_listen_addr(text) {
            Ok(addr) => Some(addr),
            Err(msg) => {
                if let Some(l) = &raw.listen {
                    self.d.at(span(l), format!("admin.listen: {msg}"));
                }
                None
            }
        };
        if let (Some(addr), None, false) = (listen, &token, raw.token.is_some()) {
            if !addr.ip().is_loopback() {
                let msg = crate::config::snapshot::admin_exposed_message(addr);
                match &raw.listen {
                    Some(l) => self.d.at(span(l), msg),
                    None => self.d.global(msg),
                }
            }
        }
        AdminSettings { listen, token }
    }

    /// `[connect]`: the allowed destinations and the tunnel's timeouts.
    pub(super) fn connect(&mut self, raw: &RawConnect) -> ConnectSettings {
        let mut allow = Vec::new();
        for entry in &raw.allow {
            match parse_connect_target(entry.get_ref()) {
                Ok(t) => allow.push(t),
                Err(msg) => self.d.at(span(entry), msg),
            }
        }
        ConnectSettings {
            allow: allow.into(),
            connect_timeout: self.duration(
                &raw.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
                "connect.connect_timeout",
            ),
            idle_timeout: self.duration(
                &raw.idle_timeout,
                DEFAULT_TUNNEL_IDLE_TIMEOUT,
                "connect.idle_timeout",
            ),
        }
    }
}
