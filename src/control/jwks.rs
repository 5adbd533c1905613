//! The JWKS of every `jwt` middleware with a `jwks_url`: fetched by the
//! control plane (the workers never fetch; they read the last good set
//! with one atomic load), at start, every `jwks_refresh`, and early, at
//! most once per `jwks_cooldown`, when a worker meets a `kid` the set does
//! not have (a key rotated in). A failed fetch keeps the last good set
//! and is retried sooner; a reload hands the fetched set to the new
//! snapshot's middleware of the same URL before it is published, so
//! tokens keep verifying across it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use super::Control;
use crate::config::Snapshot;
use crate::middleware::jwt::{parse_jwks, RemoteKeys};
use crate::middleware::Middleware;
use crate::upstream::connect::{self, Transport};

/// The largest JWKS document read.
pub(crate) const MAX_DOCUMENT: usize = 1 << 20;
/// A fetch's limit, from the name lookup to the last byte.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("strait/", env!("CARGO_PKG_VERSION"), " jwks");

/// The remote key sets a snapshot's routes use (each once).
fn remote_keys(snap: &Snapshot) -> Vec<Arc<RemoteKeys>> {
    let mut out: Vec<Arc<RemoteKeys>> = Vec::new();
    for route in &snap.routes {
        for m in route.chain.iter() {
            if let Middleware::Jwt(j) = m {
                if let Some(r) = &j.settings().remote {
                    if !out.iter().any(|o| Arc::ptr_eq(o, r)) {
                        out.push(r.clone());
                    }
                }
            }
        }
    }
    out
}

/// Before `next` is published: each of its remote sets still empty takes
/// the keys `current` fetched from the same URL, so a reload never leaves
/// a route without keys while the new set is fetched.
pub(crate) fn adopt(current: &Snapshot, next: &Snapshot) {
    let old = remote_keys(current);
    for new in remote_keys(next) {
        if !new.keys.load().keys.is_empty() {
            continue;
        }
        if let Some(o) = old.iter().find(|o| o.url == new.url) {
            new.keys.store(o.keys.load_full());
        }
    }
}

/// A fetch task, stopped when dropped.
struct Fetcher(tokio::task::JoinHandle<()>);

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the fetchers of the current snapshot, following reloads.
pub(crate) async fn run(control: Arc<Control>) {
    let mut generations = control.generations.subscribe();
    let mut tasks: HashMap<usize, (Arc<RemoteKeys>, Fetcher)> = HashMap::new();
    loop {
        generations.borrow_and_update();
        let mut next = HashMap::new();
        for keys in remote_keys(&control.snapshot()) {
            let id = Arc::as_ptr(&keys) as usize;
            let task = match tasks.remove(&id) {
                Some(t) => t,
                None => (keys.clone(), Fetcher(tokio::spawn(watch(keys)))),
            };
            next.insert(id, task);
        }
        // What is left is no longer used: dropping stops it.
        tasks = next;
        if generations.changed().await.is_err() {
            return;
        }
    }
}

/// Fetches one set, then again every `refresh`, early on a worker's ask.
async fn watch(keys: Arc<RemoteKeys>) {
    let mut last_fetch: Option<Instant> = None;
    let mut last_body: Option<Bytes> = None;
    let mut failures: u32 = 0;
    let mut wait = if keys.keys.load().keys.is_empty() {
        Duration::ZERO
    } else {
        keys.refresh
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = keys.notify.notified() => {
                if let Some(at) = last_fetch {
                    let since = at.elapsed();
                    if since < keys.cooldown {
                        tokio::time::sleep(keys.cooldown - since).await;
                    }
                }
            }
        }
        keys.take_wanted();
        last_fetch = Some(Instant::now());
        let fetched = match tokio::time::timeout(FETCH_TIMEOUT, fetch(&keys)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        let result = fetched.and_then(|body| {
            if last_body.as_ref() == Some(&body) {
                return Ok(None);
            }
            let (set, skipped) = parse_jwks(&body, &keys.allowed, false)
                .map_err(|why| format!("the document {why}"))?;
            Ok(Some((body, set, skipped)))
        });
        match result {
            Ok(None) => {
                failures = 0;
                wait = keys.refresh;
            }
            Ok(Some((body, set, skipped))) => {
                for why in &skipped {
                    tracing::warn!(url = %keys.url, "JWKS key left out: {why}");
                }
                tracing::info!(url = %keys.url, kids = ?set.kids(), "JWKS fetched");
                keys.keys.store(Arc::new(set));
                last_body = Some(body);
                failures = 0;
                wait = keys.refresh;
            }
            Err(why) => {
                failures = failures.saturating_add(1);
                // Sooner than the refresh: 1 s, 2 s, 4 s ... up to it.
                let backoff = Duration::from_secs(1u64 << failures.min(16).saturating_sub(1));
                wait = backoff.min(keys.refresh);
                tracing::warn!(
                    url = %keys.url,
                    retry_in = ?wait,
                    "JWKS fetch failed, the last good keys stay: {why}"
                );
            }
        }
    }
}

/// GET the set's URL; the body of a `200`, at most [`MAX_DOCUMENT`].
async fn fetch(keys: &RemoteKeys) -> Result<Bytes, String> {
    let uri: Uri = keys.url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let name;
    let tls = match (&keys.tls, https) {
        (Some(config), true) => {
            name = ServerName::try_from(bare.to_string())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            Some((config, &name))
        }
        _ => None,
    };
    let transport = connect::open(addr, tls).await.map_err(|e| match e {
        connect::OpenError::Tcp(io) => format!("cannot connect to {addr}: {io}"),
        connect::OpenError::Tls(io) => format!("TLS handshake with {addr} failed: {io}"),
    })?;
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json, application/jwk-set+json")
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONNECTION, HeaderValue::from_static("close"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    match transport {
        Transport::Plain(tcp) => exchange(tcp, request).await,
        Transport::Tls(tls) => exchange(tls, request).await,
    }
}

async fn exchange<IO>(io: IO, request: Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let connection = Fetcher(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT)
        .collect()
        .await
        .map_err(|e| format!("reading the body failed (at most {MAX_DOCUMENT} bytes): {e}"))?
        .to_bytes();
    drop(connection);
    Ok(body)
}
