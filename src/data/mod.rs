//! The data plane: per-core workers that accept connections, run each request
//! through router → middleware → balancer → upstream pool, and stream the
//! response back. Nothing here locks, blocks, or touches another worker's state.

pub(crate) mod arena;
pub mod body;
pub(crate) mod connection;
pub mod context;
pub mod error;
pub(crate) mod forward;
pub(crate) mod grpc;
pub(crate) mod handler;
pub(crate) mod listener;
pub(crate) mod retry;
pub(crate) mod tunnel;
pub(crate) mod worker;
