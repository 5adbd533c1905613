//! TLS to upstreams: the rustls client configuration of an upstream.
