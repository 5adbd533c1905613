//! Strait: a thread-per-core, zero-copy reverse proxy and API gateway.
//!
//! The crate is split by plane. The control plane (`config`, `control`) parses,
//! validates and compiles configuration into an immutable [`Snapshot`] and runs
//! the workers. The data plane (`data`, `router`, `middleware`, `balance`,
//! `upstream`) serves requests without locks, one worker per core.
//! See docs/architecture.md for the life of a request.

#![forbid(unsafe_code)]

pub mod balance;
pub mod config;
pub mod control;
pub mod data;
pub(crate) mod metrics;
pub mod middleware;
pub mod router;
pub(crate) mod tls;
pub mod upstream;

pub use config::{ConfigError, ConfigErrors, Snapshot, DEFAULT_CONFIG};
pub use control::{check, Gateway, GatewayBuilder, Resolve, StartError, SystemResolver};
pub use data::body::{BodyError, ProxyBody};
pub use data::context::{LogInfo, RequestContext, TlsInfo, UpstreamRequest};
pub use data::error::ProxyError;
pub use middleware::{Custom, CustomFactory, CustomRegistry, Flow, PhaseFuture};
