//! HTTP/1.1 of our own, under the data plane: the message codec (heads and
//! chunked bodies, strict as RFC 9112 says), the stream an upstream
//! connection runs over, and the connection and response body the
//! exchange uses. Nothing here imports the layers above.

pub(crate) mod conn;
pub(crate) mod interim;
pub(crate) mod server;
pub(crate) mod stream;
