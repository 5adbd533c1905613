//! TLS, built on rustls with the `ring` provider: certificates are read and
//! checked by the control plane while it compiles a configuration, and the
//! resulting rustls configurations are part of the immutable snapshot. The
//! data plane only runs handshakes with them.
//!
//! - [`server`]: termination on listeners (SNI certificate choice, ALPN,
//!   client certificates).
//! - [`client`]: TLS to upstreams (verification, SNI, client certificates).

pub(crate) mod client;
pub(crate) mod server;
