//! User middleware written in Rust: the `Custom` trait, the factory that builds
//! an instance from its `settings` table, and the registry the config compiler
//! looks names up in.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Response;

use crate::context::Flow;
use crate::context::{ProxyBody, RequestContext, UpstreamRequest};

/// The future a custom phase returns. It runs on the worker's own thread, so it
/// need not be `Send`.
pub type PhaseFuture<'f, T> = Pin<Box<dyn Future<Output = T> + 'f>>;

/// A middleware of the user's own, configured with `type = "custom"`.
///
/// Instances are shared by all workers (hence `Send + Sync`) and must keep any
/// per-request state in the context (its arena and variables), not in `self`.
/// Each phase costs one boxed future; the built-ins avoid even that.
///
/// The request's headers are [`Headers`](crate::Headers): the same calls
/// whether the client spoke HTTP/2 (a map) or HTTP/1.1 (views of the bytes
/// it sent, edits kept beside them), so a middleware is written once:
///
/// ```
/// use http::{HeaderName, HeaderValue};
/// use strait::{Custom, Flow, PhaseFuture, RequestContext, UpstreamRequest};
///
/// struct Tenant;
///
/// impl Custom for Tenant {
///     fn on_request<'f>(
///         &'f self,
///         _ctx: &'f mut RequestContext<'_>,
///         req: &'f mut UpstreamRequest<'_>,
///     ) -> PhaseFuture<'f, Flow> {
///         if !req.headers.contains("x-tenant") {
///             let name = HeaderName::from_static("x-tenant");
///             req.headers.insert(&name, &HeaderValue::from_static("public"));
///         }
///         Box::pin(async { Flow::Continue })
///     }
/// }
/// ```
pub trait Custom: Send + Sync + 'static {
    /// The request phase: change `req`, or return [`Flow::Respond`] to answer.
    fn on_request<'f>(
        &'f self,
        ctx: &'f mut RequestContext<'_>,
        req: &'f mut UpstreamRequest<'_>,
    ) -> PhaseFuture<'f, Flow> {
        let _ = (ctx, req);
        Box::pin(async { Flow::Continue })
    }

    /// The response phase: change the response head or replace its body.
    fn on_response<'f>(
        &'f self,
        ctx: &'f mut RequestContext<'_>,
        resp: &'f mut Response<ProxyBody>,
    ) -> PhaseFuture<'f, ()> {
        let _ = (ctx, resp);
        Box::pin(async {})
    }
}

/// Builds a [`Custom`] middleware from the `settings` table of its definition.
pub trait CustomFactory: Send + Sync + 'static {
    /// Returns the instance, or a message saying which setting is wrong.
    fn build(&self, settings: &toml::Table) -> Result<Arc<dyn Custom>, String>;
}

impl<F> CustomFactory for F
where
    F: Fn(&toml::Table) -> Result<Arc<dyn Custom>, String> + Send + Sync + 'static,
{
    fn build(&self, settings: &toml::Table) -> Result<Arc<dyn Custom>, String> {
        self(settings)
    }
}

/// The custom middleware types a gateway knows, by the `name` used in config.
#[derive(Clone, Default)]
pub struct CustomRegistry {
    factories: HashMap<String, Arc<dyn CustomFactory>>,
}

impl CustomRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `name` usable as `type = "custom", name = "..."`.
    pub fn register(&mut self, name: impl Into<String>, factory: impl CustomFactory) {
        self.factories.insert(name.into(), Arc::new(factory));
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn CustomFactory>> {
        self.factories.get(name)
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
