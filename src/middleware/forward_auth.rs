//! External authorisation (`type = "forward_auth"`: nginx `auth_request`,
//! Traefik ForwardAuth, Envoy `ext_authz` over HTTP): before a request
//! goes upstream, a subrequest with its method, URI, host, client address
//! and chosen headers (no body) asks an auth service. A `2xx` lets the
//! request through, with chosen headers of the answer copied onto it;
//! any other answer goes back to the client as it is; no answer within
//! the timeout, or no connection, is a `503` (or, `fail_open`, passes).
//! Each worker keeps its own keep-alive connections to the service
//! (`IDLE` per instance, for `IDLE_TIMEOUT`): nothing shared, no lock.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use rustc_hash::FxHashMap;

use super::consumer::refuse;
use crate::context::{Flow, ProxyBody, RequestContext, UpstreamRequest};
use crate::metrics::Refusal;
use crate::upstream::connect::{self, Transport};

const UNAVAILABLE: &str = "503 Service Unavailable: the authorisation service did not answer\n";
/// The largest answer body passed back to the client (a larger refusal
/// is cut to an empty body with its status and headers).
pub(crate) const MAX_ANSWER_BODY: usize = 64 * 1024;
/// Idle connections a worker keeps per instance.
pub(crate) const IDLE: usize = 16;
/// How long an idle connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Request headers that are never copied into the subrequest (they are
/// the connection's, or the subrequest's own).
const NOT_COPIED: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
    "expect",
];

/// What a `forward_auth` definition compiles to.
pub(crate) struct Settings {
    /// As configured (for the admin API).
    pub(crate) url: Box<str>,
    pub(crate) addr: SocketAddr,
    /// `Host` of the subrequest.
    pub(crate) authority: HeaderValue,
    /// The request target of the subrequest (the URL's path and query).
    pub(crate) target: Box<str>,
    pub(crate) tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    pub(crate) timeout: Duration,
    /// Request headers copied into the subrequest; `None`: all of them.
    pub(crate) request_headers: Option<Vec<HeaderName>>,
    /// Headers of a `2xx` answer copied onto the request sent upstream.
    pub(crate) response_headers: Vec<HeaderName>,
    /// The answer's header that names the consumer.
    pub(crate) consumer_header: Option<HeaderName>,
    pub(crate) fail_open: bool,
    pub(crate) trusted: Box<[IpNet]>,
}

/// `type = "forward_auth"`. Cloned into every route that lists it.
#[derive(Clone)]
pub(crate) struct ForwardAuth {
    settings: Arc<Settings>,
    policy: u16,
    /// Tells this instance's pooled connections from another's.
    instance: u64,
}

type Sender = SendRequest<Empty<Bytes>>;

thread_local! {
    /// This worker's idle connections to each instance's service.
    static IDLE_CONNS: RefCell<FxHashMap<u64, Vec<(Sender, Instant)>>> =
        RefCell::new(FxHashMap::default());
}

/// What the service said.
enum Answer {
    Allowed(Response<Bytes>),
    Refused(Response<Bytes>),
}

impl ForwardAuth {
    pub(crate) fn new(settings: Settings, policy: u16) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ForwardAuth {
            settings: Arc::new(settings),
            policy,
            instance: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) async fn on_request<'a>(
        &self,
        ctx: &mut RequestContext<'a>,
        req: &mut UpstreamRequest<'_>,
    ) -> Flow {
        let s = &*self.settings;
        let client = ctx.client_ip(&req.headers, &s.trusted);
        let sub = match self.subrequest(ctx, req, client) {
            Ok(sub) => sub,
            Err(_) => return self.unavailable(ctx),
        };
        let asked = tokio::time::timeout(s.timeout, self.ask(sub)).await;
        match asked {
            Ok(Ok(Answer::Allowed(answer))) => {
                for name in &s.response_headers {
                    // The answer's, never the client's own.
                    req.headers.remove(name);
                    for value in answer.headers().get_all(name) {
                        req.headers.append(name, value);
                    }
                }
                if let Some(name) = &s.consumer_header {
                    let value = answer.headers().get(name).and_then(|v| v.to_str().ok());
                    if let Some(consumer) = value.filter(|v| !v.is_empty()) {
                        ctx.consumer = Some(ctx.alloc_str(consumer));
                    }
                }
                Flow::Continue
            }
            Ok(Ok(Answer::Refused(answer))) => {
                ctx.ids.set_refusal(self.policy, Refusal::AuthDenied);
                ctx.log.cause = Some(Refusal::AuthDenied.label());
                let (mut parts, body) = answer.into_parts();
                for name in [header::CONNECTION, header::TRANSFER_ENCODING] {
                    parts.headers.remove(name);
                }
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                Flow::respond(Response::from_parts(parts, ProxyBody::full(body)))
            }
            // No answer (a timeout, no connection, a broken answer).
            _ if s.fail_open => {
                // Through, but with none of the headers the upstream takes
                // from the service: the client's own would pass otherwise.
                for name in &s.response_headers {
                    req.headers.remove(name);
                }
                ctx.ids.set_refusal(self.policy, Refusal::AuthFailedOpen);
                ctx.log.cause = Some(Refusal::AuthFailedOpen.label());
                Flow::Continue
            }
            _ => self.unavailable(ctx),
        }
    }

    fn unavailable(&self, ctx: &mut RequestContext<'_>) -> Flow {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        refuse(
            ctx,
            self.policy,
            Refusal::AuthUnavailable,
            status,
            UNAVAILABLE,
        )
    }

    /// The subrequest: the service's target and host, the original
    /// method, URI, host, scheme and client address, the chosen headers.
    fn subrequest(
        &self,
        ctx: &RequestContext<'_>,
        req: &UpstreamRequest<'_>,
        client: IpAddr,
    ) -> Result<Request<Empty<Bytes>>, http::Error> {
        let s = &*self.settings;
        let mut sub = Request::builder()
            .method(ctx.method.clone())
            .uri(&*s.target)
            .body(Empty::new())?;
        let h = sub.headers_mut();
        for (name, value) in req.headers.iter() {
            let wanted = match &s.request_headers {
                None => !NOT_COPIED.contains(&name) && !name.starts_with("x-forwarded-"),
                Some(list) => list.iter().any(|n| n.as_str().eq_ignore_ascii_case(name)),
            };
            if !wanted {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                h.append(n, v);
            }
        }
        h.insert(header::HOST, s.authority.clone());
        h.insert(
            X_FORWARDED_METHOD.clone(),
            HeaderValue::from_str(ctx.method.as_str()).map_err(http::Error::from)?,
        );
        // The path and query as received: the request target's own bytes
        // when it is in origin form, else joined in the arena.
        let uri = match ctx.query {
            Some(q) => bumpalo::format!(in ctx.arena(), "{}?{}", ctx.path, q).into_bump_str(),
            None => ctx.path,
        };
        h.insert(
            X_FORWARDED_URI.clone(),
            HeaderValue::from_str(uri).map_err(http::Error::from)?,
        );
        if let Some(host) = ctx.host {
            h.insert(
                X_FORWARDED_HOST.clone(),
                HeaderValue::from_str(host).map_err(http::Error::from)?,
            );
        }
        let proto = if ctx.tls.is_some() { "https" } else { "http" };
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        h.insert(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_str(&client.to_string()).map_err(http::Error::from)?,
        );
        Ok(sub)
    }

    /// Sends the subrequest over a pooled connection (or a new one) and
    /// reads the answer; the connection goes back to the pool after it.
    async fn ask(&self, sub: Request<Empty<Bytes>>) -> Result<Answer, ()> {
        let mut sender = match self.pooled() {
            Some(s) => s,
            None => self.connect().await?,
        };
        let response = sender.send_request(sub).await.map_err(|_| ())?;
        let (parts, body) = response.into_parts();
        let allowed = parts.status.is_success();
        // An allowed answer's body is not needed; a refusal's goes to the
        // client, bounded.
        let body = match Limited::new(body, MAX_ANSWER_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(()),
        };
        self.put_back(sender);
        let answer = Response::from_parts(parts, if allowed { Bytes::new() } else { body });
        Ok(if allowed {
            Answer::Allowed(answer)
        } else {
            Answer::Refused(answer)
        })
    }

    fn pooled(&self) -> Option<Sender> {
        IDLE_CONNS.with(|idle| {
            let mut idle = idle.borrow_mut();
            let conns = idle.get_mut(&self.instance)?;
            while let Some((sender, since)) = conns.pop() {
                if since.elapsed() < IDLE_TIMEOUT && sender.is_ready() {
                    return Some(sender);
                }
            }
            None
        })
    }

    fn put_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        IDLE_CONNS.with(|idle| {
            let mut idle = idle.borrow_mut();
            let conns = idle.entry(self.instance).or_default();
            conns.retain(|(s, since)| since.elapsed() < IDLE_TIMEOUT && !s.is_closed());
            if conns.len() < IDLE {
                conns.push((sender, Instant::now()));
            }
        });
    }

    async fn connect(&self) -> Result<Sender, ()> {
        let s = &*self.settings;
        let tls = s.tls.as_ref().map(|(config, name)| (config, name));
        let transport = connect::open(s.addr, tls).await.map_err(|_| ())?;
        match transport {
            Transport::Plain(tcp) => handshake(tcp).await,
            Transport::Tls(tls) => handshake(tls).await,
        }
    }
}

async fn handshake<IO>(io: IO) -> Result<Sender, ()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|_| ())?;
    // Ends when the connection closes (its sender dropped from the pool,
    // or the service closed it).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
