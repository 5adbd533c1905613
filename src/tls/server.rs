//! TLS termination: the rustls server configuration of a listener.
