//! Per-route request limits (`type = "request_limits"`): the request
//! target's length (414), the fields' number and bytes (431), the method
//! (405, with `Allow`) and the body's size: a `Content-Length` over the
//! limit is answered 413 before anything goes upstream, and any other body
//! is counted as it streams (`context/body.rs` `RequestBody`, through
//! `RequestContext::body_limit`), failing the exchange when it grows past
//! the limit (`proxy/error.rs` `BodyTooLarge`, 413 too).

use http::{header, HeaderValue, Method, StatusCode};

use super::refusal;
use crate::context::{BodyLimit, Flow, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;

/// What a client whose body is over `max_body` reads (at the head or while
/// the body streams).
pub(crate) const BODY_TOO_LARGE: &str =
    "413 Payload Too Large: the request body is over this route's limit\n";
const METHOD: &str = "405 Method Not Allowed: this route does not take this method\n";
const URL_TOO_LONG: &str = "414 URI Too Long: the request target is over this route's limit\n";
const HEADERS_TOO_LARGE: &str =
    "431 Request Header Fields Too Large: the request's header fields are over this route's limit\n";

/// `type = "request_limits"`: each limit is `None` when not configured (at
/// least one is, checked at load).
#[derive(Clone)]
pub(crate) struct RequestLimits {
    pub(crate) max_body: Option<u64>,
    /// The methods allowed, in the configured order; empty: any.
    pub(crate) methods: Box<[Method]>,
    /// `methods` as the `Allow` value of a 405 (interned at load).
    pub(crate) allow: Option<HeaderValue>,
    pub(crate) max_header_count: Option<usize>,
    pub(crate) max_header_bytes: Option<usize>,
    pub(crate) max_url_length: Option<usize>,
    /// Its index in the snapshot's policies (where refusals count).
    pub(crate) policy: u16,
}

impl RequestLimits {
    /// In the order the codec reads a head: the target, the fields, then
    /// the method and the body.
    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Flow {
        let refused = match self.check(ctx, req) {
            None => {
                if let Some(max) = self.max_body {
                    // Bodies without a length (chunked, HTTP/2 without
                    // content-length) are counted as they stream.
                    let policy = self.policy;
                    ctx.body_limit = Some(BodyLimit { max, policy });
                }
                return Flow::Continue;
            }
            Some(refused) => refused,
        };
        ctx.ids.set_refusal(self.policy, refused);
        ctx.log.cause = Some(refused.label());
        let mut response = match refused {
            Refusal::UrlLength => refusal(StatusCode::URI_TOO_LONG, URL_TOO_LONG),
            Refusal::HeaderCount | Refusal::HeaderBytes => refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                HEADERS_TOO_LARGE,
            ),
            Refusal::Method => refusal(StatusCode::METHOD_NOT_ALLOWED, METHOD),
            _ => refusal(StatusCode::PAYLOAD_TOO_LARGE, BODY_TOO_LARGE),
        };
        if let (Refusal::Method, Some(allow)) = (refused, &self.allow) {
            // RFC 9110 §15.5.6: a 405 lists the methods the target takes.
            response.headers_mut().insert(header::ALLOW, allow.clone());
        }
        Flow::respond(response)
    }

    fn check(&self, ctx: &RequestContext<'_>, req: &UpstreamRequest<'_>) -> Option<Refusal> {
        if let Some(max) = self.max_url_length {
            let target = ctx
                .uri
                .path_and_query()
                .map_or(ctx.path.len(), |pq| pq.as_str().len());
            if target > max {
                return Some(Refusal::UrlLength);
            }
        }
        if self.max_header_count.is_some() || self.max_header_bytes.is_some() {
            let (count, bytes) = req.headers.sent_size();
            if self.max_header_count.is_some_and(|max| count > max) {
                return Some(Refusal::HeaderCount);
            }
            if self.max_header_bytes.is_some_and(|max| bytes > max) {
                return Some(Refusal::HeaderBytes);
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(ctx.method) {
            return Some(Refusal::Method);
        }
        if let Some(max) = self.max_body {
            // The codec (or h2) has checked the value; one that does not
            // parse here is left to the framing.
            let length = req.headers.get(header::CONTENT_LENGTH);
            let length = length.and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
            if length.is_some_and(|n| n > max) {
                return Some(Refusal::BodyTooLarge);
            }
        }
        None
    }
}
