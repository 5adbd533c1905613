//! The request-id middleware: keeps a well-formed incoming id (when trusted) or
//! generates a new one, sends it upstream, and echoes it in the response.

use http::{HeaderName, HeaderValue, Response};

use crate::context::Flow;
use crate::context::{Headers, ProxyBody, RequestContext, UpstreamRequest};

/// Longest incoming id kept; longer ones are replaced (they would bloat logs).
const MAX_INCOMING_LEN: usize = 128;

/// `type = "request_id"`.
#[derive(Clone)]
pub(crate) struct RequestId {
    pub(crate) header: HeaderName,
    /// Echo the id in the response.
    pub(crate) response: bool,
    /// Keep an id the client sent instead of generating one.
    pub(crate) trust_incoming: bool,
}

impl RequestId {
    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &mut UpstreamRequest<'_>,
    ) -> Flow {
        let incoming = match self.trust_incoming {
            true => self.incoming(ctx, &req.headers),
            false => None,
        };
        let id = match incoming {
            Some(id) => {
                // A repeated header would give the upstream several ids while
                // the response and the log carry one: keep only that one.
                if req.headers.get_all(&self.header).nth(1).is_some() {
                    req.headers.insert(&self.header, &id);
                }
                id
            }
            None => {
                let id = ctx.tools.slab.request_id();
                req.headers.insert(&self.header, &id);
                id
            }
        };
        ctx.request_id = Some(id);
        Flow::Continue
    }

    /// The client's id, if plain: from a map, a counted handle to its
    /// bytes; from an HTTP/1.1 head, copied into the worker's slab (the id
    /// outlives the head's buffer, in the response and the log).
    fn incoming(&self, ctx: &RequestContext<'_>, headers: &Headers<'_>) -> Option<HeaderValue> {
        match headers.as_map() {
            Some(map) => map
                .get(&self.header)
                .filter(|v| is_acceptable(v.as_bytes()))
                .cloned(),
            None => headers
                .get(&self.header)
                .filter(|v| is_acceptable(v))
                .map(|v| ctx.tools.slab.value(&[v])),
        }
    }

    pub(crate) fn on_response(&self, ctx: &mut RequestContext<'_>, resp: &mut Response<ProxyBody>) {
        if self.response {
            if let Some(id) = &ctx.request_id {
                resp.headers_mut().insert(self.header.clone(), id.clone());
            }
        }
    }
}

/// An incoming id is kept only if it is short and plain (letters, digits, `-_.:`).
fn is_acceptable(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_INCOMING_LEN
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::is_acceptable;

    #[test]
    fn incoming_ids_are_filtered() {
        assert!(is_acceptable(b"0f3a-12:ab.c_d"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable(b"quote\""));
        assert!(!is_acceptable(&[b'a'; 129]));
    }
}
