//! Shared test harness: real origins on 127.0.0.1 (hyper servers on their own
//! threads), gateways started in-process from TOML, and small clients.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use strait::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type OriginBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<OriginBody>> + Send>>
        + Send
        + Sync,
>;

/// A TCP server on 127.0.0.1 on a thread of its own, with a runtime of its
/// own: a test's runtime (often a single thread) neither holds it up nor is
/// held up by it. `serve(stream, n)` is called in the accept loop for the
/// `n`th connection (from 0) and the future it returns runs on a task.
/// Dropping the server closes its listener, and soon its connections.
pub struct Server {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// On an ephemeral port, with a current-thread runtime.
    pub fn start<F, Fut>(serve: F) -> Server
    where
        F: Fn(tokio::net::TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Server::on(listener, 0, serve)
    }

    /// On `listener`, with `workers` runtime threads (0: a current-thread
    /// runtime).
    pub fn on<F, Fut>(listener: std::net::TcpListener, workers: usize, serve: F) -> Server
    where
        F: Fn(tokio::net::TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let accepted = connections.clone();
        let thread = std::thread::spawn(move || {
            let mut builder = if workers == 0 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            };
            if workers > 0 {
                builder.worker_threads(workers);
            }
            let rt = builder.enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, n));
                }
            });
            // Dropping the runtime drops the listener and every connection.
            drop(rt);
        });
        Server {
            addr,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection, and waits until they are.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Not joined: a handler that never returns must not hang the test.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A real HTTP/1.1 origin on 127.0.0.1 with its own runtime thread.
pub struct Origin {
    pub addr: SocketAddr,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
    /// TCP connections open now.
    pub open: Arc<AtomicUsize>,
    server: Server,
}

impl Origin {
    /// An origin that answers with the request it received, as JSON
    /// (`method`, `path`, `query`, `headers` {name: [values]}, `body_bytes`).
    pub fn echo() -> Origin {
        Origin::start(Arc::new(|req| Box::pin(echo(req))))
    }

    /// An origin answering with `status` and `body` (and `x-origin: name`).
    pub fn fixed(name: &'static str, status: u16, body: &'static str) -> Origin {
        Origin::start(Arc::new(move |req| {
            Box::pin(async move {
                drain(req).await;
                let mut resp = Response::new(full(body));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                resp.headers_mut().insert("x-origin", name.parse().unwrap());
                resp
            })
        }))
    }

    /// An origin answering 200 with `body`, `delay` after the request's
    /// body ended.
    pub fn slow(delay: Duration, body: &'static str) -> Origin {
        Origin::start(Arc::new(move |req| {
            Box::pin(async move {
                drain(req).await;
                tokio::time::sleep(delay).await;
                Response::new(full(body))
            })
        }))
    }

    /// An origin with a custom handler.
    pub fn start(handler: Handler) -> Origin {
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (reqs, open_now) = (requests.clone(), open.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server::on(listener, 1, move |stream, _| {
            open_now.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let reqs = reqs.clone();
            let open_now = open_now.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    reqs.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                open_now.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Origin {
            addr: server.addr,
            requests,
            open,
            server,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// A loopback address that was free a moment ago (for a process to listen
/// on).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An address where nothing listens (connection refused), for the whole
/// test process: a socket bound to it and never listening, kept open. (A
/// port merely freed could be handed to the next listener a test binds,
/// say a silent origin, and a "refused" upstream would then hang.)
pub fn dead_addr() -> SocketAddr {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    std::mem::forget(socket);
    addr
}

/// A TCP server that accepts and reads but never answers (for timeouts).
/// Returns the address; the thread lives until the test process ends.
pub fn silent_origin() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

pub fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> OriginBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Reads and discards a request body, returning its length.
pub async fn drain(req: Request<Incoming>) -> u64 {
    let mut body = req.into_body();
    let mut n = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
        }
    }
    n
}

async fn echo(req: Request<Incoming>) -> Response<OriginBody> {
    let (parts, body) = req.into_parts();
    let body_bytes = drain(Request::from_parts(
        http::request::Parts::clone(&parts),
        body,
    ))
    .await;
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<serde_json::Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        headers.insert(name.as_str().to_string(), serde_json::Value::Array(values));
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut resp = Response::new(full(serde_json::to_vec(&json).unwrap()));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// Starts a gateway from TOML with `workers` workers (listen on 127.0.0.1:0;
/// the admin API off unless the test turns it on).
#[track_caller]
pub fn gateway_with(toml: &str, workers: usize) -> TestGateway {
    watched(
        Gateway::builder()
            .workers(workers)
            .admin_listen(None)
            .start_toml("test.toml", toml)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n--- config ---\n{toml}")),
    )
}

/// How long a gateway started by a test may run before the watchdog ends
/// the test binary with a message (no test here needs a minute).
pub const GATEWAY_WATCHDOG: Duration = Duration::from_secs(240);

/// How long `shutdown` may take before the test fails.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(60);

/// A gateway under a watchdog: if it is still running [`GATEWAY_WATCHDOG`]
/// after it started, the test binary is aborted with a message naming where
/// it was started (a hung test would otherwise hold `cargo test`, and CI,
/// until its time limit); its shutdown fails the test if it takes longer
/// than [`SHUTDOWN_LIMIT`]. Derefs to the [`Gateway`].
pub struct TestGateway {
    gateway: Option<Gateway>,
    started_at: &'static std::panic::Location<'static>,
    disarm: Option<std::sync::mpsc::Sender<()>>,
}

/// Puts `gateway` under a watchdog (see [`TestGateway`]).
#[track_caller]
pub fn watched(gateway: Gateway) -> TestGateway {
    let started_at = std::panic::Location::caller();
    let (disarm, armed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            armed.recv_timeout(GATEWAY_WATCHDOG)
        {
            eprintln!(
                "watchdog: the gateway started at {started_at} is still running after {GATEWAY_WATCHDOG:?}: a test hangs; aborting the test binary"
            );
            std::process::abort();
        }
    });
    TestGateway {
        gateway: Some(gateway),
        started_at,
        disarm: Some(disarm),
    }
}

impl TestGateway {
    /// [`Gateway::shutdown`], failing the test if it does not return within
    /// [`SHUTDOWN_LIMIT`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(gateway) = self.gateway.take() else {
            return;
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            gateway.shutdown();
            let _ = done.send(());
        });
        let result = finished.recv_timeout(SHUTDOWN_LIMIT);
        drop(self.disarm.take());
        if result.is_err() && !std::thread::panicking() {
            panic!(
                "the gateway started at {} did not shut down within {SHUTDOWN_LIMIT:?}",
                self.started_at
            );
        }
    }
}

impl std::ops::Deref for TestGateway {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        self.gateway.as_ref().expect("running until shutdown")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a gateway with 2 workers.
#[track_caller]
pub fn gateway(toml: &str) -> TestGateway {
    gateway_with(toml, 2)
}

/// The TOML of a gateway with one catch-all route to `endpoints`.
pub fn simple_config(endpoints: &[SocketAddr], middlewares: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = [{}]
connect_timeout = "1s"
response_header_timeout = "2s"

[[routes]]
name = "all"
middlewares = [{middlewares}]
upstream = "backend"
"#,
        eps.join(", ")
    )
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The values the echo origin saw for `name`.
    pub fn seen(&self, name: &str) -> Vec<String> {
        self.json()["headers"][name]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> H1 {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        H1 { sender }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(request("GET", path, &[])).await
    }
}

/// A request with a Host header and extra headers.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// A POST with a Host header and `body`.
pub fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "test.local")
        .body(Full::new(body.into()))
        .unwrap()
}

/// One request on a new connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    H1::connect(addr)
        .await
        .send(request("GET", path, headers))
        .await
}

/// An HTTP/2 client connection to `addr` (prior knowledge); the connection
/// itself runs on a task of the test's runtime.
pub async fn h2_connect<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake");
    tokio::spawn(conn);
    sender
}

/// Writes raw bytes and reads until the server closes or 2 s pass.
pub async fn raw(addr: SocketAddr, data: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(data).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts a gateway from TOML with the admin API on 127.0.0.1:0.
#[track_caller]
pub fn gateway_with_admin(toml: &str, workers: usize) -> TestGateway {
    watched(
        Gateway::builder()
            .workers(workers)
            .admin_listen(Some("127.0.0.1:0".parse().unwrap()))
            .start_toml("test.toml", toml)
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n--- config ---\n{toml}")),
    )
}

/// One sample from the admin API's `/metrics`, written as exposed
/// (`strait_tunnels_active`, `strait_tunnels_total{kind="upgrade"}`).
pub async fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let reply = get(admin, "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == sample).then(|| value.parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{text}"))
}

/// The sum of the samples of `name` (as `metric`, but without labels)
/// whose labels include every one of `labels`, from the admin API of `gw`:
/// a counter over every upstream, endpoint or route. 0 when none match.
pub async fn metric_sum(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    let admin = gw.admin_addr().expect("the admin API is on");
    let reply = get(admin, "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    reply
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (metric, _) = head.split_once('{').unwrap_or((head, ""));
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| head.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// Polls `metric` until it equals `want` or `limit` passes; returns the last value.
pub async fn metric_becomes(admin: SocketAddr, sample: &str, want: f64, limit: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let v = metric(admin, sample).await;
        if v == want || tokio::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP server that echoes every connection's bytes and closes its side
/// after the client's FIN. Runs on the test's runtime.
pub async fn tcp_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A directory of its own for one test's files (configurations, PEM, logs),
/// removed on drop. Named by tag, process and a counter: the tests of one
/// binary run in parallel, and several binaries at once.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "strait-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The path of `name` in it (nothing is created). Written into TOML as
    /// `{:?}`, which quotes and escapes it as a basic string.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` in it (replacing it); the file's path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Captures the log of every gateway in this test binary, INFO and up, in
/// memory: one global subscriber, installed by the first call (before the
/// gateway whose lines a test wants to read starts).
pub fn capture_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log lines containing `text`.
pub fn logged(text: &str) -> Vec<String> {
    String::from_utf8_lossy(&capture_logs().lock().unwrap())
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_string)
        .collect()
}

/// A gateway in front of `origin` with two routes, both logged as JSON to
/// `log`: `/open` through nothing else, and every other path through the
/// middleware named `guard`, defined (with any others) by `defs`, the TOML
/// of `[middlewares.NAME]` tables.
pub fn guarded_config(origin: SocketAddr, defs: &str, guard: &str, log: &Path) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{origin}"]
connect_timeout = "1s"
response_header_timeout = "5s"

{defs}

[middlewares.log]
type = "access_log"
format = "json"
output = {log:?}

[[routes]]
name = "open"
match = {{ path_prefix = "/open" }}
middlewares = ["log"]
upstream = "backend"

[[routes]]
name = "closed"
middlewares = ["log", "{guard}"]
upstream = "backend"
"#
    )
}

/// The lines of a JSON access log, parsed.
pub fn json_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The JSON access log line of the request to `path`.
pub fn log_line<'l>(lines: &'l [serde_json::Value], path: &str) -> &'l serde_json::Value {
    lines
        .iter()
        .find(|l| l["path"] == path)
        .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"))
}
