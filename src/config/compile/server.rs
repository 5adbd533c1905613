//! Compiles `[server]`, `[admin]` and `[connect]` into their settings. Listeners
//! are left to `listeners` and `tls`, the `server.access_log` fallback to `middlewares`.

use std::time::Duration;

use super::{span, Compiler, DEFAULT_TUNNEL_IDLE_TIMEOUT};
use crate::config::parse::{parse_cidr, parse_connect_target, parse_listen_addr};
use crate::config::raw::{RawAdmin, RawConnect, RawServer};
use crate::config::snapshot::{AdminSettings, ConnectSettings, ServerSettings};

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
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
