//! The memory law (constitution, law 4): bodies stream with backpressure in
//! both directions. The proxy runs as a separate `strait proxy` process with one
//! worker, so its resident memory (VmRSS in /proc/PID/status) can be measured
//! while 256 MiB move through it.
mod common;
use common::*;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

const MIB: u64 = 1024 * 1024;
/// The body size the issue asks for.
const TOTAL: u64 = 256 * MIB;
const CHUNK: usize = 64 * 1024;
/// The most the proxy's resident memory may grow while a body streams.
const RSS_LIMIT: u64 = 32 * MIB;
/// Hang guard of one transfer (not a speed check).
const TRANSFER_LIMIT: Duration = Duration::from_secs(50);

// ---------------------------------------------------------------- the proxy

/// A `strait proxy` child process; killed when dropped, also on panic.
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
}

impl ProxyProcess {
    /// Starts `strait proxy --listen ADDR --to ORIGIN --workers 1` and waits
    /// until it accepts connections.
    fn start(origin: SocketAddr) -> ProxyProcess {
        let addr = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args([
                "proxy",
                "--listen",
                &addr.to_string(),
                "--to",
                &origin.to_string(),
                "--workers",
                "1",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the strait binary");
        let mut proxy = ProxyProcess { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("strait proxy exited before accepting connections: {status}");
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "strait proxy did not accept connections on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    fn rss(&self) -> u64 {
        status_field(self.pid(), "VmRSS:").expect("VmRSS in /proc/PID/status")
    }

    /// Resets the kernel's peak-RSS mark (VmHWM); false if not allowed.
    fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// The kernel's peak resident memory (VmHWM), in bytes.
    fn peak(&self) -> u64 {
        status_field(self.pid(), "VmHWM:").expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of /proc/PID/status, in bytes.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every 20 ms on a thread and keeps the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let (s, p, n) = (stop.clone(), peak.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: stops when told, when the process is gone, or after 2 min.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match status_field(pid, "VmRSS:") {
                    Some(rss) => {
                        p.fetch_max(rss, Ordering::Relaxed);
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    None => return,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            stop,
            peak,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns (peak RSS, number of samples).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.peak.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Memory figures of one transfer, checked against the limit.
struct Memory {
    baseline: u64,
    sampled_peak: u64,
    samples: u64,
    kernel_peak: Option<u64>,
}

impl Memory {
    fn growth(&self) -> u64 {
        self.sampled_peak
            .max(self.kernel_peak.unwrap_or(0))
            .saturating_sub(self.baseline)
    }

    fn check(&self, what: &str) {
        let mib = |b: u64| b as f64 / MIB as f64;
        eprintln!(
            "{what}: proxy RSS baseline {:.1} MiB, sampled peak {:.1} MiB ({} samples), kernel peak {}, growth {:.1} MiB",
            mib(self.baseline),
            mib(self.sampled_peak),
            self.samples,
            self.kernel_peak
                .map_or("n/a".to_string(), |p| format!("{:.1} MiB", mib(p))),
            mib(self.growth()),
        );
        assert!(self.samples > 0, "{what}: no RSS sample was taken");
        assert!(
            self.growth() < RSS_LIMIT,
            "{what}: the proxy's resident memory grew by {:.1} MiB (limit {} MiB)",
            mib(self.growth()),
            RSS_LIMIT / MIB
        );
    }
}

/// Starts measuring: baseline now, peak from here on.
fn measure(proxy: &ProxyProcess) -> (u64, bool, RssSampler) {
    let baseline = proxy.rss();
    let reset = proxy.reset_peak();
    (baseline, reset, RssSampler::start(proxy.pid()))
}

fn finish(proxy: &ProxyProcess, (baseline, reset, sampler): (u64, bool, RssSampler)) -> Memory {
    let (sampled_peak, samples) = sampler.finish();
    Memory {
        baseline,
        sampled_peak,
        samples,
        kernel_peak: reset.then(|| proxy.peak()),
    }
}

// ---------------------------------------------------------------- bodies

/// A body of `chunks` copies of one 64 KiB chunk, generated on demand (never
/// held whole), counting the bytes it has produced.
struct Generated {
    chunk: Bytes,
    left: u64,
    produced: Arc<AtomicU64>,
    /// Content-Length known up front (exact size hint), or chunked.
    sized: bool,
}

impl Generated {
    fn new(total: u64, produced: Arc<AtomicU64>, sized: bool) -> Generated {
        assert_eq!(total % CHUNK as u64, 0);
        Generated {
            chunk: Bytes::from(vec![b's'; CHUNK]),
            left: total / CHUNK as u64,
            produced,
            sized,
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.produced.fetch_add(CHUNK as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        let left = self.left * CHUNK as u64;
        if self.sized {
            SizeHint::with_exact(left)
        } else {
            let mut hint = SizeHint::new();
            hint.set_lower(0);
            hint
        }
    }
}

/// An origin that answers every request with a generated body of `TOTAL`
/// bytes (Content-Length; chunked for `/download-chunked`), counting what it
/// produced.
fn download_origin() -> (Origin, Arc<AtomicU64>) {
    let produced = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    let origin = Origin::start(Arc::new(move |req: Request<Incoming>| {
        let p = p.clone();
        Box::pin(async move {
            if req.uri().path() == "/warmup" {
                return Response::new(full("warm"));
            }
            let sized = req.uri().path() != "/download-chunked";
            drain(req).await;
            Response::new(Generated::new(TOTAL, p, sized).boxed())
        })
    }));
    (origin, produced)
}

/// An origin that counts the request body and answers with the count.
fn upload_origin() -> Origin {
    Origin::start(Arc::new(|req| {
        Box::pin(async move {
            let n = drain(req).await;
            Response::new(full(n.to_string()))
        })
    }))
}

// ---------------------------------------------------------------- client

type ClientBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<ClientBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn req(method: &str, path: &str, body: ClientBody) -> Request<ClientBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "stream.test")
        .body(body)
        .unwrap()
}

fn no_body() -> ClientBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// One small request, so the worker's per-connection state exists before the
/// baseline is taken.
async fn warm_up(addr: SocketAddr) {
    let mut sender = connect(addr).await;
    let resp = sender
        .send_request(req("GET", "/warmup", no_body()))
        .await
        .unwrap();
    let status = resp.status();
    resp.into_body().collect().await.unwrap();
    assert!(status.is_success(), "warm-up answered {status}");
}

/// Starts the proxy in front of `origin` and warms it up.
async fn warm_proxy(origin: SocketAddr) -> ProxyProcess {
    let proxy = ProxyProcess::start(origin);
    warm_up(proxy.addr).await;
    proxy
}

/// Reads a response body to its end and returns its length; `each` sees every
/// data frame, `failed` is the panic message of a frame error.
async fn body_len(mut body: Incoming, failed: &str, mut each: impl FnMut(&Bytes)) -> u64 {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.expect(failed).data_ref() {
            each(data);
            n += data.len() as u64;
        }
    }
    n
}

/// How much of the 256 MiB body a slow client may make the origin produce: far
/// below the body, what socket buffers and hyper's buffers along the way can
/// hold.
const PRODUCED_LIMIT: u64 = 64 * MIB;

/// Reads `body` of a download like a slow client, for about 2 s: one frame,
/// then a 50 ms pause, 40 times. Then checks the proxy's memory (measured since
/// `measuring`) and that the origin was held back: it `produced` less than
/// `PRODUCED_LIMIT`. `client` names the reader in messages.
async fn read_slowly_held_back(
    client: &str,
    body: &mut Incoming,
    proxy: &ProxyProcess,
    measuring: (u64, bool, RssSampler),
    produced: &AtomicU64,
) {
    let started = Instant::now();
    let mut read = 0u64;
    for _ in 0..40 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("no frame in time")
            .expect("body ended early")
            .expect("body failed");
        if let Some(data) = frame.data_ref() {
            read += data.len() as u64;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let produced_while_slow = produced.load(Ordering::Relaxed);
    let memory = finish(proxy, measuring);
    eprintln!(
        "slow {client}: read {:.2} MiB in {:?}; the origin produced {:.1} MiB",
        read as f64 / MIB as f64,
        started.elapsed(),
        produced_while_slow as f64 / MIB as f64
    );
    memory.check(&format!("slow {client}"));
    assert!(
        produced_while_slow < PRODUCED_LIMIT,
        "the origin produced {:.1} MiB while the {client} read {:.2} MiB: no backpressure",
        produced_while_slow as f64 / MIB as f64,
        read as f64 / MIB as f64
    );
}

/// Waits 500 ms after the slow `client` stopped reading (`event`) and returns
/// how many bytes the origin has produced by then.
async fn produced_500ms_later(client: &str, event: &str, produced: &AtomicU64) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = produced.load(Ordering::Relaxed);
    eprintln!(
        "slow {client}: the origin produced {:.1} MiB by 500 ms after {event}",
        after as f64 / MIB as f64
    );
    after
}

/// A download of `TOTAL` bytes from `download_origin` through a warmed-up proxy:
/// `fetch` gets the proxy's address and returns the body length it read, within
/// `TRANSFER_LIMIT`. Checks the bytes received and produced, and the proxy's
/// memory; `what` names the transfer in messages.
async fn check_download<F, Fut>(what: &str, fetch: F)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = u64>,
{
    let (origin, produced) = download_origin();
    let proxy = warm_proxy(origin.addr).await;

    let measuring = measure(&proxy);
    let started = Instant::now();
    let received = tokio::time::timeout(TRANSFER_LIMIT, fetch(proxy.addr))
        .await
        .unwrap_or_else(|_| panic!("256 MiB {what} did not finish in time"));
    let elapsed = started.elapsed();
    let memory = finish(&proxy, measuring);
    eprintln!("{what}: {received} bytes in {elapsed:?}");
    assert_eq!(received, TOTAL, "bytes received");
    assert_eq!(produced.load(Ordering::Relaxed), TOTAL, "bytes produced");
    memory.check(&format!("{what} 256 MiB"));
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_256_mib_streams_in_bounded_memory() {
    check_download("download", |addr| async move {
        let mut sender = connect(addr).await;
        let resp = sender
            .send_request(req("GET", "/download", no_body()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-length"],
            TOTAL.to_string().as_str(),
            "the length is forwarded, not turned into chunks"
        );
        body_len(resp.into_body(), "download body failed", |data| {
            assert!(data.first() == Some(&b's') && data.last() == Some(&b's'));
        })
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_256_mib_streams_in_bounded_memory() {
    let origin = upload_origin();
    let proxy = warm_proxy(origin.addr).await;

    let measuring = measure(&proxy);
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let answer = tokio::time::timeout(TRANSFER_LIMIT, async {
        let mut sender = connect(proxy.addr).await;
        // Chunked: no length up front, the proxy cannot size anything by it.
        let body = Generated::new(TOTAL, sent.clone(), false).boxed();
        let resp = sender
            .send_request(req("POST", "/upload", body))
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .expect("256 MiB upload did not finish in time");
    let elapsed = started.elapsed();
    let memory = finish(&proxy, measuring);
    eprintln!(
        "upload: {} bytes in {elapsed:?}",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1, TOTAL.to_string(), "bytes the origin received");
    memory.check("upload 256 MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_applies_backpressure_to_the_origin() {
    let (origin, produced) = download_origin();
    let proxy = warm_proxy(origin.addr).await;

    let measuring = measure(&proxy);
    let mut sender = connect(proxy.addr).await;
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(req("GET", "/download", no_body())),
    )
    .await
    .expect("no response head in time")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    read_slowly_held_back("client", &mut body, &proxy, measuring, &produced).await;

    // The client goes away: the proxy must not go on pulling the body.
    drop(body);
    drop(sender);
    let after = produced_500ms_later("client", "the client left", &produced).await;
    assert!(
        after < PRODUCED_LIMIT,
        "the origin produced {:.1} MiB after the client left",
        after as f64 / MIB as f64
    );
    // And the worker keeps serving.
    tokio::time::timeout(Duration::from_secs(10), warm_up(proxy.addr))
        .await
        .expect("the proxy did not answer after the slow client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_origin_applies_backpressure_to_the_client() {
    // The origin reads the upload slowly (one frame, then 50 ms, for ~2 s).
    let finished_reading = Arc::new(AtomicBool::new(false));
    let origin_read = Arc::new(AtomicU64::new(0));
    let (done, read) = (finished_reading.clone(), origin_read.clone());
    let origin = Origin::start(Arc::new(move |req: Request<Incoming>| {
        let (done, read) = (done.clone(), read.clone());
        Box::pin(async move {
            if req.uri().path() == "/warmup" {
                return Response::new(full("warm"));
            }
            let mut body = req.into_body();
            for _ in 0..40 {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(d) = frame.data_ref() {
                            read.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                    }
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done.store(true, Ordering::SeqCst);
            Response::new(full("enough"))
        })
    }));
    let proxy = warm_proxy(origin.addr).await;
    /// Far below the 256 MiB body: what socket buffers and hyper's buffers
    /// along the way can hold.
    const SENT_LIMIT: u64 = 64 * MIB;

    let measuring = measure(&proxy);
    let sent = Arc::new(AtomicU64::new(0));
    let mut sender = connect(proxy.addr).await;
    let body = Generated::new(TOTAL, sent.clone(), true).boxed();
    let upload = tokio::spawn(sender.send_request(req("POST", "/upload", body)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !finished_reading.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the origin did not finish its slow reads"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent_while_slow = sent.load(Ordering::Relaxed);
    let memory = finish(&proxy, measuring);
    eprintln!(
        "slow origin: the origin read {:.1} MiB; the client produced {:.1} MiB",
        origin_read.load(Ordering::Relaxed) as f64 / MIB as f64,
        sent_while_slow as f64 / MIB as f64
    );
    memory.check("slow origin");
    assert!(
        sent_while_slow < SENT_LIMIT,
        "the client could send {:.1} MiB while the origin read {:.1} MiB: no backpressure",
        sent_while_slow as f64 / MIB as f64,
        origin_read.load(Ordering::Relaxed) as f64 / MIB as f64
    );
    upload.abort();
    // The worker keeps serving.
    tokio::time::timeout(Duration::from_secs(10), warm_up(proxy.addr))
        .await
        .expect("the proxy did not answer after the slow origin");
}

// ---------------------------------------------------------------- HTTP/2 clients

fn h2_req(path: &str) -> Request<ClientBody> {
    Request::builder()
        .uri(format!("http://stream.test{path}"))
        .version(http::Version::HTTP_2)
        .body(no_body())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_download_of_256_mib_streams_in_bounded_memory() {
    check_download("h2 download", |addr| async move {
        let mut h2 = h2_connect(addr).await;
        let resp = h2.send_request(h2_req("/download")).await.unwrap();
        assert_eq!(resp.status(), 200);
        body_len(resp.into_body(), "h2 download body failed", |_| {}).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_h2_client_applies_backpressure_to_the_origin() {
    let (origin, produced) = download_origin();
    let proxy = warm_proxy(origin.addr).await;

    let measuring = measure(&proxy);
    let mut h2 = h2_connect(proxy.addr).await;
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        h2.send_request(h2_req("/download")),
    )
    .await
    .expect("no h2 response head in time")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    read_slowly_held_back("h2 client", &mut body, &proxy, measuring, &produced).await;
    // The client resets the stream; the same connection still works.
    drop(body);
    let after = produced_500ms_later("h2 client", "the stream was reset", &produced).await;
    assert!(
        after < PRODUCED_LIMIT,
        "the origin produced {after} bytes after the reset"
    );
    let resp = tokio::time::timeout(Duration::from_secs(10), h2.send_request(h2_req("/warmup")))
        .await
        .expect("no answer on the h2 connection after a reset stream")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "warm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_download_of_256_mib_streams_in_bounded_memory() {
    check_download("chunked download", |addr| async move {
        let mut sender = connect(addr).await;
        let resp = sender
            .send_request(req("GET", "/download-chunked", no_body()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        assert!(!resp.headers().contains_key("content-length"));
        body_len(resp.into_body(), "download body failed", |_| {}).await
    })
    .await;
}
