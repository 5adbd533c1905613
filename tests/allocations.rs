//! The zero-copy law, measured: heap allocations per proxied request on a
//! worker thread (HTTP/1.1 keep-alive, default chain, and with a `cors`
//! middleware answering a listed origin), and the same figure for a
//! bare hyper proxy doing the same exchange with no router, context, arena or
//! middleware. A counting global allocator counts only on threads that opted
//! in (the gateway's worker, the bare proxy's thread), so the test's client and
//! origin are not counted.
#![allow(unsafe_code)] // A global allocator can only be written with `unsafe impl`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};

struct Counting;

static COUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call to the system allocator unchanged; it only
// bumps a counter (no allocation inside the allocator).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNT_HERE.with(Cell::get) {
            COUNTED.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNT_HERE.with(Cell::get) {
            COUNTED.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const WARMUP: u64 = 300;
const MEASURED: u64 = 2000;

/// Allocations per request on the counted threads for `MEASURED` sequential
/// keep-alive requests to `addr`, after a warm-up.
async fn allocations_per_request(addr: SocketAddr) -> f64 {
    allocations_per_request_with(addr, &[]).await
}

/// [`allocations_per_request`] with these request headers.
async fn allocations_per_request_with(addr: SocketAddr, headers: &[(&str, &str)]) -> f64 {
    allocations_per_request_at(addr, "/bench", headers).await
}

/// [`allocations_per_request_with`] to this request target.
async fn allocations_per_request_at(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> f64 {
    let mut client = H1::connect(addr).await;
    for _ in 0..WARMUP {
        let r = client.send(request("GET", target, headers)).await;
        assert_eq!(r.status, 200);
    }
    let before = COUNTED.load(Ordering::SeqCst);
    for _ in 0..MEASURED {
        let r = client.send(request("GET", target, headers)).await;
        assert_eq!(r.status, 200);
    }
    let after = COUNTED.load(Ordering::SeqCst);
    (after - before) as f64 / MEASURED as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_per_proxied_request() {
    let origin = Origin::fixed("o", 200, "hello from the origin, a small body");

    // Strait, one worker, the default chain of `strait proxy` (request id), no access log.
    let gw = strait::Gateway::builder()
        .admin_listen(None)
        .workers(1)
        .on_worker_start(|_| COUNT_HERE.with(|c| c.set(true)))
        .start_toml(
            "alloc.toml",
            &simple_config(&[origin.addr], r#""request_id""#),
        )
        .unwrap();
    let strait_per_request = allocations_per_request(gw.addr()).await;
    gw.shutdown();

    // The same with a `cors` middleware and a listed `Origin` (the CORS
    // headers and `Vary: Origin` added from interned values): nothing more.
    let cors = format!(
        "[middlewares.c]\ntype = \"cors\"\nallow_origins = [\"https://app.example.com\"]\nexpose_headers = [\"x-origin\"]\n{}",
        simple_config(&[origin.addr], r#""request_id", "c""#)
    );
    let gw = strait::Gateway::builder()
        .admin_listen(None)
        .workers(1)
        .on_worker_start(|_| COUNT_HERE.with(|c| c.set(true)))
        .start_toml("alloc_cors.toml", &cors)
        .unwrap();
    let cors_per_request =
        allocations_per_request_with(gw.addr(), &[("origin", "https://app.example.com")]).await;
    gw.shutdown();

    // The same routed by a path regex with a capture, a query and a cookie
    // condition (scanned in place, the regex searched with the worker's own
    // cache, its capture in stack slots): nothing more.
    let conditions = format!(
        "{}\n[[routes]]\nname = \"canary\"\nmatch = {{ path_regex = \"/b(?P<rest>[a-z]+)\", query = [{{ name = \"version\", value = \"2\" }}], cookies = [{{ name = \"canary\", value = \"1\" }}] }}\nmiddlewares = [\"request_id\"]\nupstream = \"backend\"\n",
        simple_config(&[origin.addr], r#""request_id""#)
    );
    let gw = strait::Gateway::builder()
        .admin_listen(None)
        .workers(1)
        .on_worker_start(|_| COUNT_HERE.with(|c| c.set(true)))
        .start_toml("alloc_conditions.toml", &conditions)
        .unwrap();
    let conditions_per_request = allocations_per_request_at(
        gw.addr(),
        "/bench?a=1&version=%32",
        &[("cookie", "session=abc; canary=1")],
    )
    .await;
    gw.shutdown();

    // The bare hyper proxy: the same server builder settings and the same
    // upstream exchange, nothing else.
    let bare = start_bare_proxy(origin.addr);
    let bare_per_request = allocations_per_request(bare).await;

    println!("allocations per request: strait {strait_per_request:.3}, with cors {cors_per_request:.3}, routed by regex, query and cookie {conditions_per_request:.3}, bare hyper proxy {bare_per_request:.3}");
    assert!(
        cors_per_request <= strait_per_request + 0.05,
        "cors {cors_per_request:.3} vs plain {strait_per_request:.3} allocations per request"
    );
    assert!(
        conditions_per_request <= strait_per_request + 0.05,
        "regex, query and cookie conditions {conditions_per_request:.3} vs plain {strait_per_request:.3} allocations per request"
    );

    // Measured on the development machine (2 cores, 2026-12-02): strait
    // 1.046, bare hyper 8.000 per request (strait was 7.006 on hyper's
    // client and server, 5.046 with the first HTTP/1.1 path of our own).
    // Plain HTTP/1.1 is Strait's own on both sides (src/worker/http1.rs,
    // src/upstream/wire.rs): the request head is frozen out of the
    // connection's buffer and read as views, the upstream head written from
    // them, the response header values are slices of the upstream's head,
    // and what would be allocated per request is recycled by the worker
    // (src/upstream/pool.rs): read buffers, the response's header map
    // (emptied once its head is written) and its header names (a bounded
    // table, so the origin's custom `x-origin` costs no allocation). What is
    // left: the request's future, boxed so that an idle connection does not
    // keep its kilobytes (1.9 KiB per idle keep-alive connection instead of
    // 8.7), and the amortised arena and slab chunks. Issue 12's bound is 2.
    assert!(
        strait_per_request <= 2.0,
        "strait allocates {strait_per_request:.2} per request"
    );
    // The context, arena, router, request-id and X-Forwarded-* work add no
    // allocation of their own: the slab chunk behind generated header values is
    // the only amortised one (one 16 KiB chunk per ~200 requests).
    assert!(
        strait_per_request <= bare_per_request + 0.05,
        "strait {strait_per_request:.3} vs bare hyper {bare_per_request:.3} allocations per request"
    );
}

/// A minimal hyper reverse proxy on its own current-thread runtime, with one
/// keep-alive upstream pool, counted like a Strait worker.
fn start_bare_proxy(origin: SocketAddr) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        COUNT_HERE.with(|c| c.set(true));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let pool: Pool = Rc::new(RefCell::new(Vec::new()));
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let pool = pool.clone();
                tokio::task::spawn_local(async move {
                    let service =
                        hyper::service::service_fn(move |req| forward(pool.clone(), origin, req));
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(30));
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

type Pool = Rc<RefCell<Vec<SendRequest<Incoming>>>>;

async fn forward(
    pool: Pool,
    origin: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Returning>, hyper::Error> {
    let pooled = pool.borrow_mut().pop();
    let mut sender = match pooled {
        Some(s) => s,
        None => {
            let stream = tokio::net::TcpStream::connect(origin).await.unwrap();
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::task::spawn_local(conn);
            s
        }
    };
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Returning {
            body,
            sender: Some(sender),
            pool,
        },
    ))
}

/// Returns the connection to the pool when the response body ends.
struct Returning {
    body: Incoming,
    sender: Option<SendRequest<Incoming>>,
    pool: Pool,
}

impl Returning {
    fn release(&mut self) {
        if let Some(s) = self.sender.take() {
            self.pool.borrow_mut().push(s);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
