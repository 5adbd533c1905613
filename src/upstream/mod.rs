//! The upstream side of an exchange: the compiled upstreams and endpoints
//! (`spec`), the per-worker pool of HTTP/1.1 keep-alive and multiplexed
//! HTTP/2 connections (`pool`), opening a connection, TCP then TLS then the
//! HTTP handshake, the one connector health probes use too (`connect`), one
//! exchange, HTTP/1.1 and HTTP/2, with the resend of what the endpoint did
//! not process (`exchange`), the endpoints' health and ejection state
//! (`health_state`) and passive health (`outlier`). It takes what
//! it needs as arguments (its pool, the target, the upstream's statistics)
//! and answers with its own [`Error`], which the proxy maps to a response.

pub(crate) mod connect;
mod error;
pub(crate) mod exchange;
pub(crate) mod health_state;
pub(crate) mod outlier;
pub(crate) mod pool;
pub(crate) mod spec;
pub(crate) mod wire;

pub(crate) use error::Error;
pub use spec::EndpointSpec;
pub(crate) use spec::*;
