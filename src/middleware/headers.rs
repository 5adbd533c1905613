//! The headers middleware: set, append and remove header fields on the request
//! sent upstream and on the response sent to the client.

use http::{HeaderMap, HeaderName, HeaderValue, Response};

use crate::context::Headers;

use crate::context::Flow;
use crate::context::{ProxyBody, UpstreamRequest};

/// One side's edits, applied in the order remove → set → append.
#[derive(Default, Clone)]
pub(crate) struct HeaderEdits {
    pub(crate) remove: Vec<HeaderName>,
    pub(crate) set: Vec<(HeaderName, HeaderValue)>,
    pub(crate) append: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// On the request sent upstream.
    fn apply(&self, headers: &mut Headers<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name, value);
        }
        for (name, value) in &self.append {
            headers.append(name, value);
        }
    }

    /// On the response head sent to the client.
    fn apply_map(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.append {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// `type = "headers"`.
#[derive(Clone)]
pub(crate) struct HeaderOps {
    pub(crate) request: HeaderEdits,
    pub(crate) response: HeaderEdits,
}

impl HeaderOps {
    pub(crate) fn on_request(&self, req: &mut UpstreamRequest<'_>) -> Flow {
        self.request.apply(&mut req.headers);
        Flow::Continue
    }

    pub(crate) fn on_response(&self, resp: &mut Response<ProxyBody>) {
        self.response.apply_map(resp.headers_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_append() {
        let edits = HeaderEdits {
            remove: vec![HeaderName::from_static("x-drop")],
            set: vec![(
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("prod"),
            )],
            append: vec![(
                HeaderName::from_static("x-tag"),
                HeaderValue::from_static("b"),
            )],
        };
        let mut h = HeaderMap::new();
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("x-env", HeaderValue::from_static("dev"));
        h.insert("x-tag", HeaderValue::from_static("a"));
        let mut request = Headers::from_map(h.clone());
        edits.apply_map(&mut h);
        assert!(h.get("x-drop").is_none());
        assert_eq!(h["x-env"], "prod");
        let tags: Vec<_> = h.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        // The request side, through `Headers`, makes the same edits.
        edits.apply(&mut request);
        assert_eq!(request.into_map(), h);
    }
}
