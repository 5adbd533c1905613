//! What a request phase decides: go on, or answer here.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::ProxyBody;

/// What a request phase decided.
pub enum Flow {
    /// Go on to the next middleware, then the upstream.
    Continue,
    /// Stop here and answer with this response; the upstream is not called.
    /// Boxed: an early answer is the rare path, and an inline response would
    /// add its size to every request's future, which hyper keeps allocated per
    /// client connection (idle memory). Build it with [`Flow::respond`].
    Respond(Box<Response<ProxyBody>>),
}

impl Flow {
    /// Stop the chain and answer with `response`.
    pub fn respond(response: Response<ProxyBody>) -> Flow {
        Flow::Respond(Box::new(response))
    }
}

/// A short plain-text answer with a static body (no allocation for the
/// body): the proxy's own errors and the policies' refusals.
pub(crate) fn plain_text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}
