//! What a client connection's TLS handshake settled, as requests see it.

/// What a TLS handshake settled, for middleware and the access log. Built once
/// per connection when its handshake ends, and shared by the requests of
/// that connection (never copied per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI), lowercase.
    pub server_name: Option<Box<str>>,
    /// The protocol version: `"TLSv1.2"` or `"TLSv1.3"`.
    pub version: &'static str,
    /// The application protocol chosen by ALPN: `"h2"` or `"http/1.1"`.
    pub alpn: Option<&'static str>,
    /// The verified client certificate's subject (e.g. `CN=client, O=Example`),
    /// when the listener verifies client certificates and the client sent one.
    pub client_subject: Option<Box<str>>,
}

/// What the requests of a connection know of its TLS session: nothing (and
/// no bytes) on a plain connection, the shared handshake result on TLS. The
/// request path is generic over it, so plain connections carry nothing of
/// TLS in their futures.
pub(crate) trait ConnTls: Clone + 'static {
    fn info(&self) -> Option<&TlsInfo>;
}

impl ConnTls for () {
    #[inline]
    fn info(&self) -> Option<&TlsInfo> {
        None
    }
}

impl ConnTls for std::rc::Rc<TlsInfo> {
    #[inline]
    fn info(&self) -> Option<&TlsInfo> {
        Some(self)
    }
}
