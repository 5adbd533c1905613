//! What a worker serves client connections with, per snapshot generation:
//! hyper's HTTP/1.1 and HTTP/2 builders made from `[server]`, and the TLS
//! listeners by configured address. Rebuilt by `local.rs` when a new
//! generation is published; read by `connection.rs` for each connection.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;

use crate::config::Snapshot;
use crate::util::exec::LocalExec;

/// The per-worker connection settings, built once per snapshot generation.
pub(crate) struct Protocols {
    pub(super) h1: http1::Builder,
    pub(super) h2: http2::Builder<LocalExec>,
    /// `server.max_requests_per_connection`.
    pub(super) max_requests: Option<u32>,
    /// How long a connection closed gracefully may take to finish.
    pub(super) drain_timeout: Duration,
    /// The TLS listeners of the snapshot, by configured address (empty when
    /// none: a plain accept then looks at nothing).
    pub(super) tls: Box<[TlsListener]>,
}

/// A TLS listener as one worker accepts on it.
pub(super) struct TlsListener {
    /// The configured address (what a reload keeps bound).
    pub(super) addr: SocketAddr,
    /// This worker's own copy of the listener's rustls configuration.
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    pub(super) handshake_timeout: Duration,
    /// The listener's name, for the log.
    pub(super) name: Box<str>,
}

impl Protocols {
    pub(crate) fn new(snapshot: &Snapshot) -> Self {
        let settings = &snapshot.server;
        let mut h1 = http1::Builder::new();
        // No header timer in hyper: it would start at every idle spell and
        // so also end idle keep-alive connections, and costs a boxed timer
        // per request. The worker's registry (`connections.rs`) runs both
        // the header and the keep-alive timers instead.
        h1.timer(TokioTimer::new())
            .header_read_timeout(None)
            // The exact head limit (431 past it); the buffer limit alone lets a
            // head that arrives whole in one read through.
            .max_header_size(settings.max_header_bytes)
            .max_buf_size(settings.max_header_bytes)
            .max_headers(settings.max_headers);
        let mut h2 = http2::Builder::new(LocalExec);
        h2.timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(settings.http2_max_concurrent_streams)
            // PINGs while the connection is quiet: a peer that is gone is
            // noticed and its connection closed.
            .keep_alive_interval(settings.http2_keepalive_interval)
            .keep_alive_timeout(settings.http2_keepalive_timeout)
            .max_header_list_size(settings.max_header_bytes as u32);
        let tls = snapshot
            .listeners
            .iter()
            .filter_map(|l| {
                let t = l.tls.as_ref()?;
                Some(TlsListener {
                    addr: l.addr,
                    acceptor: t.config.clone().into(),
                    handshake_timeout: t.handshake_timeout,
                    name: t.listener.clone(),
                })
            })
            .collect();
        Protocols {
            h1,
            h2,
            max_requests: settings.max_requests_per_connection,
            drain_timeout: settings.drain_timeout,
            tls,
        }
    }

    /// The TLS listener configured at `addr`, if that listener is one.
    pub(crate) fn tls_index(&self, addr: SocketAddr) -> Option<usize> {
        self.tls.iter().position(|t| t.addr == addr)
    }
}
