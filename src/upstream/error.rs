//! How an exchange with an upstream can fail, as the upstream side knows it.
//! The proxy maps each to the status, body and log cause the client gets.

use std::io;

/// Why an exchange with an endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    /// The endpoint refused the TCP connection.
    ConnectRefused,
    /// The connection (TCP, TLS and HTTP handshakes) did not complete within
    /// `connect_timeout`.
    ConnectTimeout,
    /// The connection failed for another reason (unreachable, reset, a
    /// failed HTTP handshake).
    ConnectFailed,
    /// The endpoint's TLS certificate was refused; the log line has rustls'
    /// reason.
    TlsVerify,
    /// The TLS handshake failed otherwise.
    TlsHandshake,
    /// No connection freed up within `connect_timeout` while the worker's
    /// share of `max_connections` was open.
    MaxConnections,
    /// The worker's share of `max_pending` requests was already waiting.
    MaxPending,
    /// Every HTTP/2 connection to the endpoint was full and no more could be
    /// opened within `connect_timeout`.
    MaxStreams,
    /// The endpoint closed or reset the connection before a complete
    /// response head.
    Reset,
    /// No response head within `response_header_timeout`.
    ResponseTimeout,
    /// The response head could not be parsed.
    BadResponse,
    /// The client's request body failed or stalled while it was being sent.
    ClientBody,
    /// The client's request body grew past its limit while it was being
    /// sent (the exchange is abandoned, never finished with a shorter body).
    ClientBodyTooLarge,
}

impl Error {
    /// The class of a failed TCP connect.
    pub(crate) fn of_connect(e: &io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Error::ConnectRefused,
            io::ErrorKind::TimedOut => Error::ConnectTimeout,
            _ => Error::ConnectFailed,
        }
    }

    /// The class of a client body's failure.
    pub(crate) fn of_client_body(e: &crate::context::BodyError) -> Error {
        match e {
            crate::context::BodyError::TooLarge(_) => Error::ClientBodyTooLarge,
            _ => Error::ClientBody,
        }
    }

    /// The class of a failed exchange as hyper reports it: a client body
    /// that failed is the client's doing, not the endpoint's.
    pub(crate) fn of_exchange(e: &hyper::Error) -> Error {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(body) = err.downcast_ref::<crate::context::BodyError>() {
                return Error::of_client_body(body);
            }
            source = err.source();
        }
        if e.is_parse() || e.is_parse_status() {
            Error::BadResponse
        } else if e.is_timeout() {
            Error::ResponseTimeout
        } else {
            Error::Reset
        }
    }
}
