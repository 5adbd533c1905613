//! No client can lock others out: idle connections end on their timers
//! (HTTP/1.1 keep-alive apart from the header timer, HTTP/2 with a GOAWAY),
//! the process keeps to `max_connections` by closing idle connections
//! first, a partial HTTP/2 preface costs nothing while it waits, the
//! descriptor limit is raised at start, client errors are counted rather
//! than logged one by one, and a gateway stopped right after it started
//! always stops. Real sockets on 127.0.0.1; every wait bounded.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What an HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
/// HTTP/2 frame type of a GOAWAY.
const GOAWAY: u8 = 7;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n";

fn config(origin: SocketAddr, server: &str) -> String {
    format!("[server]\n{server}\n{}", simple_config(&[origin], ""))
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; its head.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + length {
                    return head;
                }
            }
            let n = s.read(&mut chunk).await.expect("read a response");
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a response within 5 s")
}

/// How long until the server closes `s` (reading and dropping what it
/// sends), at most `limit`; `None` if it is still open then.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    let wait = async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok()?;
    Some(start.elapsed())
}

/// Reads one HTTP/2 frame, acknowledging SETTINGS and PINGs as a client
/// does; its type, or `None` when the connection closed.
async fn frame(s: &mut TcpStream) -> Option<u8> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; length];
    s.read_exact(&mut payload).await.ok()?;
    let (kind, flags) = (head[3], head[4]);
    if kind == 4 && flags & 1 == 0 {
        let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
    }
    if kind == 6 && flags & 1 == 0 {
        let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
        ack.extend_from_slice(&payload);
        let _ = s.write_all(&ack).await;
    }
    Some(kind)
}

/// Reads HTTP/2 frames until a GOAWAY; the types of the frames seen. Fails
/// if the connection closes without one or nothing comes within `limit`.
async fn frames_until_goaway(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let read = async {
        let mut types = Vec::new();
        loop {
            let kind = frame(s).await.expect("a frame, not a close");
            types.push(kind);
            if kind == GOAWAY {
                return types;
            }
        }
    };
    let types = tokio::time::timeout(limit, read)
        .await
        .expect("a GOAWAY in time");
    (types, start.elapsed())
}

#[tokio::test]
async fn idle_http2_connections_get_a_goaway_within_their_timeout() {
    let origin = Origin::fixed("o", 200, "ok");
    let gw = gateway_with_admin(&config(origin.addr, "http2_idle_timeout = \"400ms\""), 1);
    // A preface and SETTINGS, then nothing.
    let mut silent = TcpStream::connect(gw.addr()).await.unwrap();
    silent.write_all(PREFACE).await.unwrap();
    silent.write_all(SETTINGS).await.unwrap();
    let (_, after) = frames_until_goaway(&mut silent, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(300),
        "GOAWAY too early: {after:?}"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "closed after its GOAWAY"
    );

    // One answered request, then nothing: the timer starts when the stream ends.
    let mut one = TcpStream::connect(gw.addr()).await.unwrap();
    one.write_all(PREFACE).await.unwrap();
    one.write_all(SETTINGS).await.unwrap();
    // HEADERS, END_STREAM | END_HEADERS, stream 1: GET http://test.local/
    // (static-table :method GET, :scheme http, :path /; :authority literal).
    let mut block = vec![0x82, 0x86, 0x84, 0x41, 10];
    block.extend_from_slice(b"test.local");
    let mut headers = vec![0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1];
    headers.extend_from_slice(&block);
    one.write_all(&headers).await.unwrap();
    let (types, after) = frames_until_goaway(&mut one, Duration::from_secs(5)).await;
    assert!(
        types.contains(&1),
        "the response's HEADERS came first: {types:?}"
    );
    assert!(
        after >= Duration::from_millis(300),
        "GOAWAY too early: {after:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while frame(&mut one).await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "closed after its GOAWAY");
    let closed = metric_becomes(
        gw.admin_addr().unwrap(),
        "strait_client_connections_closed_total{reason=\"http2_idle\"}",
        2.0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(closed, 2.0);
    gw.shutdown();
}

#[tokio::test]
async fn keep_alive_idle_has_its_own_timer_apart_from_the_header_timer() {
    let origin = Origin::fixed("o", 200, "ok");
    let gw = gateway_with_admin(
        &config(
            origin.addr,
            "header_read_timeout = \"400ms\"\nkeepalive_timeout = \"1500ms\"",
        ),
        1,
    );
    let admin = gw.admin_addr().unwrap();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(GET).await.unwrap();
    read_response(&mut s).await;
    // Idle for twice the header timeout: still open, and it serves.
    tokio::time::sleep(Duration::from_millis(900)).await;
    s.write_all(GET).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    // Then idle until the keep-alive timer closes it.
    let closed = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("closed by the keep-alive timer");
    assert!(
        closed >= Duration::from_millis(1200),
        "closed after {closed:?}, before keepalive_timeout"
    );
    assert_eq!(
        metric(
            admin,
            "strait_client_connections_closed_total{reason=\"idle\"}"
        )
        .await,
        1.0
    );

    // A head started after an idle spell is under the header timer from its
    // first byte.
    let mut slow = TcpStream::connect(gw.addr()).await.unwrap();
    slow.write_all(GET).await.unwrap();
    read_response(&mut slow).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    slow.write_all(b"GET / HT").await.unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("closed by the header timer");
    assert!(
        closed >= Duration::from_millis(300) && closed < Duration::from_millis(1200),
        "a partial head closed after {closed:?} (header_read_timeout 400ms)"
    );
    // And a new connection that never sends a whole head, from its accept.
    let mut silent = TcpStream::connect(gw.addr()).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("closed by the header timer");
    assert!(closed < Duration::from_millis(1200), "{closed:?}");
    assert_eq!(
        metric(
            admin,
            "strait_client_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await,
        2.0
    );
    gw.shutdown();
}

#[tokio::test]
async fn a_connection_ends_gracefully_after_its_last_allowed_request() {
    let origin = Origin::fixed("o", 200, "ok");
    let gw = gateway_with(&config(origin.addr, "max_requests_per_connection = 3"), 1);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    for i in 1..=3 {
        s.write_all(GET).await.unwrap();
        let head = read_response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(
            head.contains("connection: close"),
            i == 3,
            "request {i}: {head}"
        );
    }
    assert!(closed_within(&mut s, Duration::from_secs(3))
        .await
        .is_some());
    gw.shutdown();
}

/// Opens `n` keep-alive connections that each had one request answered.
async fn idle_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(GET).await.unwrap();
        read_response(&mut s).await;
        idle.push(s);
    }
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_process_closes_its_oldest_idle_connections_for_new_clients() {
    let origin = Origin::fixed("o", 200, "ok");
    // Two workers: a new connection may land on the one with nothing idle.
    let gw = gateway_with_admin(&config(origin.addr, "max_connections = 40"), 2);
    let admin = gw.admin_addr().unwrap();
    assert_eq!(metric(admin, "strait_client_connections_limit").await, 40.0);
    // A flood of idle keep-alive connections, and of connections that said
    // nothing, up to the limit (the admin API is not counted).
    let mut flood = idle_clients(gw.addr(), 20).await;
    for _ in 0..20 {
        flood.push(TcpStream::connect(gw.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A normal client keeps being served, each time on a new connection it
    // then keeps open: each one needs room.
    let mut kept = Vec::new();
    for i in 0..30 {
        let served = async {
            let mut client = H1::connect(gw.addr()).await;
            let reply = client.get("/").await;
            (client, reply)
        };
        let (client, reply) = tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .unwrap_or_else(|_| panic!("request {i} while full was not served"));
        assert_eq!(reply.status, 200, "request {i}");
        kept.push(client);
    }
    let room = metric(
        admin,
        "strait_client_connections_closed_total{reason=\"room\"}",
    )
    .await;
    assert!(room >= 30.0, "closed for room: {room}");
    assert_eq!(
        metric(
            admin,
            "strait_client_connections_refused_total{reason=\"max_connections\"}"
        )
        .await,
        0.0
    );
    // The oldest went first: the first idle ones are closed.
    let first = flood.first_mut().unwrap();
    assert!(closed_within(first, Duration::from_secs(1)).await.is_some());
    gw.shutdown();
}

#[tokio::test]
async fn a_process_full_of_busy_connections_refuses_new_ones() {
    let origin = Origin::slow(Duration::from_millis(1500), "slow");
    let gw = gateway_with_admin(&config(origin.addr, "max_connections = 3"), 1);
    let admin = gw.admin_addr().unwrap();
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(GET).await.unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Nothing idle to close: the fourth waits briefly, then is closed.
    let mut extra = TcpStream::connect(gw.addr()).await.unwrap();
    let _ = extra.write_all(GET).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), extra.read_to_end(&mut out)).await;
    assert!(
        out.is_empty(),
        "refused without an answer: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        metric(
            admin,
            "strait_client_connections_refused_total{reason=\"max_connections\"}"
        )
        .await,
        1.0
    );
    // The busy ones are answered.
    for s in &mut busy {
        assert!(read_response(s).await.starts_with("http/1.1 200"));
    }
    gw.shutdown();
}

#[tokio::test]
async fn one_address_is_held_to_its_connection_limit() {
    let origin = Origin::fixed("o", 200, "ok");
    let gw = gateway_with_admin(&config(origin.addr, "max_connections_per_ip = 3"), 2);
    let admin = gw.admin_addr().unwrap();
    let mut three = idle_clients(gw.addr(), 3).await;
    let mut fourth = TcpStream::connect(gw.addr()).await.unwrap();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2))
            .await
            .is_some(),
        "the fourth connection from 127.0.0.1 is closed"
    );
    assert_eq!(
        metric(
            admin,
            "strait_client_connections_refused_total{reason=\"max_connections_per_ip\"}"
        )
        .await,
        1.0
    );
    // One goes: there is room for one again.
    drop(three.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = idle_clients(gw.addr(), 1).await;
    assert_eq!(again.len(), 1);
    gw.shutdown();
}

/// CPU time (user + system) of the threads `tids` of this process.
fn cpu_of(tids: &[String]) -> Duration {
    let ticks: u64 = tids
        .iter()
        .filter_map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
            // Fields after the command name's closing parenthesis: utime and
            // stime are the 14th and 15th of the whole line.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            Some(fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?)
        })
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// 500 connections that each sent the first byte of the HTTP/2 preface: the
/// workers wait for more bytes without looking again, so over 3 s they use
/// next to no CPU. The bound, 5 % of a core (150 ms), is far above what
/// waiting costs (an accept and one peek per connection, a few ms in all)
/// and far below what re-peeking every few milliseconds cost (about 13 % of
/// a core for 500 such connections, and 53 % for 2,000).
#[tokio::test]
async fn partial_prefaces_cost_almost_no_cpu() {
    let origin = Origin::fixed("o", 200, "ok");
    // The worker's thread id, to measure it alone (other tests' gateways
    // run in this process too).
    let tids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = tids.clone();
    let gw = watched(
        strait::Gateway::builder()
            .workers(1)
            .admin_listen(None)
            .on_worker_start(move |_| {
                let me = std::fs::read_link("/proc/thread-self").unwrap();
                let tid = me.file_name().unwrap().to_string_lossy().into_owned();
                seen.lock().unwrap().push(tid);
            })
            .start_toml("test.toml", &config(origin.addr, ""))
            .unwrap(),
    );
    let mut flood = Vec::new();
    for _ in 0..500 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"P").await.unwrap();
        flood.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tids = tids.lock().unwrap().clone();
    assert_eq!(tids.len(), 1);
    let before = cpu_of(&tids);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_of(&tids).saturating_sub(before);
    eprintln!("500 partial prefaces for 3 s: {used:?} of worker CPU");
    assert!(used < Duration::from_millis(150), "{used:?} over 3 s");
    // 200 more that send `P` and close: the part of a preface left behind
    // a close is not waited on either (the closed state stays readable).
    for _ in 0..200 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"P").await.unwrap();
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_of(&tids);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_of(&tids).saturating_sub(before);
    eprintln!("200 prefaces cut by a close, the next 2 s: {used:?} of worker CPU");
    assert!(used < Duration::from_millis(100), "{used:?} over 2 s");
    // Still serving, and the rest of a preface is still understood.
    assert_eq!(get(gw.addr(), "/", &[]).await.status, 200);
    let s = &mut flood[0];
    s.write_all(&PREFACE[1..]).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head))
        .await
        .expect("a frame")
        .expect("the server's SETTINGS");
    assert_eq!(head[3], 4, "a SETTINGS frame");
    gw.shutdown();
}

#[tokio::test]
async fn client_errors_are_counted_and_summarized_not_logged_one_by_one() {
    capture_logs();
    let origin = Origin::fixed("o", 200, "ok");
    let gw = gateway_with_admin(&config(origin.addr, ""), 1);
    let admin = gw.admin_addr().unwrap();
    for _ in 0..50 {
        let answer = raw(
            gw.addr(),
            b"GET / HTTP/1.1\r\nHost: a\r\nbad header line\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let counted = metric_becomes(
        admin,
        "strait_client_connection_errors_total{kind=\"bad_request\"}",
        50.0,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(counted, 50.0);
    // The housekeeping tick writes the summary within a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let summaries = logged("client connection(s) ended with an error");
    assert!(summaries.len() <= 1, "{summaries:#?}");
    gw.shutdown();
}

/// The stop is never lost, however early it comes.
#[test]
fn a_gateway_stopped_right_after_start_stops_every_time() {
    let origin: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let toml = config(origin, "drain_timeout = \"5s\"");
    let start = Instant::now();
    for _ in 0..200 {
        gateway_with(&toml, 2).shutdown();
    }
    eprintln!("200 starts and stops: {:?}", start.elapsed());
}

/// The soft and hard "Max open files" of process `pid`.
fn open_files_limit(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Started under a soft limit of 256 (systemd's default is 1,024), the
/// binary raises it to the hard limit and says so.
#[test]
fn the_descriptor_limit_is_raised_to_the_hard_limit_at_start() {
    let dir = TempDir::new("fd-limit");
    let listen = free_addr();
    let file = dir.write(
        "strait.toml",
        &format!(
            "[admin]\nenabled = false\n\n[[listeners]]\naddress = \"{listen}\"\n\n[upstreams.b]\nendpoints = [\"127.0.0.1:9\"]\n\n[[routes]]\nname = \"all\"\nupstream = \"b\"\n"
        ),
    );
    let log = dir.path("stderr.log");
    let plain = |text: String| {
        // Without the colour codes, if the log has them.
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" --config \"$1\" 2>\"$2\"")
        .arg(env!("CARGO_BIN_EXE_strait"))
        .arg(&file)
        .arg(&log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = plain(std::fs::read_to_string(&log).unwrap_or_default());
        if text.contains("listening") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let limits = open_files_limit(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("listening"),
        "the gateway did not start:\n{text}"
    );
    let (soft, hard) = limits.expect("the limits of the process");
    assert!(
        hard > 256,
        "the hard limit here is {hard}: the test needs more than 256"
    );
    assert_eq!(soft, hard, "soft limit {soft}, hard {hard}");
    let line = text
        .lines()
        .find(|l| l.contains("descriptor limit"))
        .unwrap_or_else(|| panic!("no descriptor-limit line:\n{text}"));
    assert!(
        line.contains(&format!("descriptor limit: {hard}")),
        "{line}"
    );
    assert!(line.contains("before=256"), "{line}");
    assert!(
        line.contains(&format!("max_connections={}", (hard - 100) / 2)),
        "{line}"
    );
}
