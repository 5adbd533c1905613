//! What a request phase decides: go on, or answer here.

use http::Response;

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
