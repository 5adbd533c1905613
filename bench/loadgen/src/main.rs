//! strait-loadgen: an open-loop HTTP/1.1 load generator at a fixed request
//! rate, for bench/run.sh's latency phase (bench/README.md).
//!
//! Request j of the run is scheduled at `start + j / rate` and goes over
//! keep-alive connection `j % conns`, so the requests are spread evenly over
//! time and over the connections. Its latency is measured from that scheduled
//! time, not from when it was written: when a slow response holds a
//! connection past the next request's slot, that request's wait counts too
//! (the correction for coordinated omission, as in wrk2). Each latency is
//! kept (no histogram buckets), sorted at the end, and read off exactly.
//!
//! Output: a readable summary, then one JSON line (the last line) for
//! bench/benchtool.py.

mod response;
mod timer;

use response::{parse_head, Error};
use std::net::SocketAddr;
use std::time::Duration;
use timer::{now_ns, Timer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "usage: strait-loadgen --addr HOST:PORT [--rate 5000] [--duration 30s] \
[--warmup 2s] [--conns 50] [--path /] [--body-len N] [--timeout 2s]";

/// Read buffer per connection; a response head must fit in it.
const BUF_SIZE: usize = 64 * 1024;

struct Args {
    addr: SocketAddr,
    rate: u64,
    duration_ns: u64,
    warmup_ns: u64,
    conns: u64,
    path: String,
    /// expected body length; any other is an error
    body_len: Option<u64>,
    timeout_ns: u64,
}

fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000_000.0)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e9)
    } else {
        (s, 1e9)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration '{s}' (e.g. 30s, 500ms)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration '{s}'"));
    }
    Ok((v * mult) as u64)
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut args = Args {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        rate: 5000,
        duration_ns: 30_000_000_000,
        warmup_ns: 2_000_000_000,
        conns: 50,
        path: "/".into(),
        body_len: None,
        timeout_ns: 2_000_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: '{v}' is not a number"))
        };
        match flag.as_str() {
            "--addr" => {
                addr = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--addr: bad address '{value}'"))?,
                )
            }
            "--rate" => args.rate = num(&value)?,
            "--duration" => args.duration_ns = parse_duration_ns(&value)?,
            "--warmup" => args.warmup_ns = parse_duration_ns(&value)?,
            "--conns" => args.conns = num(&value)?,
            "--path" => args.path = value,
            "--body-len" => args.body_len = Some(num(&value)?),
            "--timeout" => args.timeout_ns = parse_duration_ns(&value)?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    args.addr = addr.ok_or_else(|| format!("--addr is required\n{USAGE}"))?;
    if args.rate == 0 || args.conns == 0 || args.duration_ns == 0 || args.timeout_ns == 0 {
        return Err("--rate, --conns, --duration and --timeout must be above 0".into());
    }
    if !args.path.starts_with('/') || args.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "--path must start with / and hold no spaces or controls: '{}'",
            args.path
        ));
    }
    Ok(args)
}

/// The schedule: request j at `start + j * 1e9 / rate`, without drift.
#[derive(Clone, Copy)]
struct Schedule {
    start: u64,
    rate: u64,
    /// requests scheduled before this index are the warm-up, not recorded
    first_measured: u64,
    /// every request scheduled before the end of the run
    total: u64,
    /// after this, requests still unsent are counted as unsent, not sent
    give_up: u64,
}

impl Schedule {
    fn at(&self, j: u64) -> u64 {
        self.start + (u128::from(j) * 1_000_000_000 / u128::from(self.rate)) as u64
    }
}

/// What one connection saw.
#[derive(Default)]
struct Stats {
    /// latency of each successful measured request, ns from its scheduled time
    latencies: Vec<u64>,
    /// how late the request was written when the connection was free at its
    /// scheduled time: the generator's own timing error, not the server's
    wake_lag: Vec<u64>,
    errors: u64,
    warmup_errors: u64,
    /// measured requests not sent by `give_up` (the server fell too far behind)
    unsent: u64,
    connects: u64,
    first_error: Option<Error>,
    /// time of the last measured response
    last_done: u64,
}

struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::Io(e.kind()))?;
    stream.set_nodelay(true).map_err(|e| Error::Io(e.kind()))?;
    Ok(stream)
}

/// One request and its response. Ok(keep_alive) on a response with the
/// expected status and body length.
async fn exchange(conn: &mut Conn, request: &[u8], body_len: Option<u64>) -> Result<bool, Error> {
    let io = |e: std::io::Error| Error::Io(e.kind());
    conn.stream.write_all(request).await.map_err(io)?;
    let mut filled = 0;
    let head = loop {
        let n = conn
            .stream
            .read(&mut conn.buf[filled..])
            .await
            .map_err(io)?;
        if n == 0 {
            return Err(Error::Closed);
        }
        filled += n;
        if let Some(head) = parse_head(&conn.buf[..filled], BUF_SIZE)? {
            break head;
        }
    };
    let have = (filled - head.len) as u64;
    if have > head.content_length {
        return Err(Error::ExtraBytes);
    }
    let mut remaining = head.content_length - have;
    while remaining > 0 {
        let n = conn.stream.read(&mut conn.buf[..]).await.map_err(io)? as u64;
        if n == 0 {
            return Err(Error::Closed);
        }
        if n > remaining {
            return Err(Error::ExtraBytes);
        }
        remaining -= n;
    }
    if head.status != 200 {
        return Err(Error::Status(head.status));
    }
    if body_len.is_some_and(|want| want != head.content_length) {
        return Err(Error::BodyLength(head.content_length));
    }
    Ok(head.keep_alive)
}

/// Connection `index`: requests index, index + conns, index + 2 conns, ...
async fn run_conn(
    index: u64,
    mut conn: Option<Conn>,
    args: std::sync::Arc<Args>,
    sched: Schedule,
    request: std::sync::Arc<[u8]>,
) -> Stats {
    let mut stats = Stats {
        latencies: Vec::with_capacity((sched.total / args.conns + 1) as usize),
        wake_lag: Vec::with_capacity((sched.total / args.conns + 1) as usize),
        ..Stats::default()
    };
    let timer = Timer::new().expect("timerfd_create");
    let timeout = Duration::from_nanos(args.timeout_ns);
    let mut j = index;
    while j < sched.total {
        let due = sched.at(j);
        let measured = j >= sched.first_measured;
        let before = now_ns();
        if before >= sched.give_up {
            // the rest of this connection's schedule was never sent
            let left = (sched.total - j).div_ceil(args.conns);
            let warm = sched.first_measured.saturating_sub(j).div_ceil(args.conns);
            stats.unsent += left - warm.min(left);
            break;
        }
        timer.sleep_until(due).await.expect("timerfd");
        if measured && before < due {
            stats.wake_lag.push(now_ns().saturating_sub(due));
        }
        let result = match conn.take() {
            Some(c) => Ok(c),
            None => {
                stats.connects += 1;
                match tokio::time::timeout(timeout, connect(args.addr)).await {
                    Ok(Ok(stream)) => Ok(Conn {
                        stream,
                        buf: vec![0; BUF_SIZE].into(),
                    }),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Timeout),
                }
            }
        };
        let result = match result {
            Ok(mut c) => {
                match tokio::time::timeout(timeout, exchange(&mut c, &request, args.body_len)).await
                {
                    Ok(Ok(keep_alive)) => {
                        if keep_alive {
                            conn = Some(c);
                        }
                        Ok(())
                    }
                    Ok(Err(e @ (Error::Status(_) | Error::BodyLength(_)))) => {
                        conn = Some(c); // framed correctly: the connection is still good
                        Err(e)
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Timeout),
                }
            }
            Err(e) => Err(e),
        };
        let done = now_ns();
        match result {
            Ok(()) if measured => {
                stats.latencies.push(done - due);
                stats.last_done = done;
            }
            Ok(()) => {}
            Err(e) => {
                if measured {
                    stats.errors += 1;
                    stats.last_done = done;
                } else {
                    stats.warmup_errors += 1;
                }
                stats.first_error.get_or_insert(e);
            }
        }
        j += args.conns;
    }
    stats
}

/// Nearest-rank percentile of sorted values, in integers so that p99.9 of
/// 1,000 values is the 999th (`per_mille`: 500 = p50, 999 = p99.9).
fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (per_mille * n).div_ceil(1000);
    sorted[rank.clamp(1, n) as usize - 1]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("strait-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run(args));
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let request: std::sync::Arc<[u8]> = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strait-loadgen\r\n\r\n",
        args.path, args.addr
    )
    .into_bytes()
    .into();
    // every connection is open before the clock starts: connecting is not
    // part of the first requests' latency
    let mut conns = Vec::with_capacity(args.conns as usize);
    for _ in 0..args.conns {
        match connect(args.addr).await {
            Ok(stream) => conns.push(Some(Conn {
                stream,
                buf: vec![0; BUF_SIZE].into(),
            })),
            Err(e) => {
                eprintln!("strait-loadgen: cannot connect to {}: {e}", args.addr);
                return 1;
            }
        }
    }
    let start = now_ns() + 10_000_000;
    let first_measured = u128::from(args.warmup_ns) * u128::from(args.rate) / 1_000_000_000;
    let total =
        u128::from(args.warmup_ns + args.duration_ns) * u128::from(args.rate) / 1_000_000_000;
    let sched = Schedule {
        start,
        rate: args.rate,
        first_measured: first_measured as u64,
        total: total as u64,
        give_up: start + args.warmup_ns + args.duration_ns + args.timeout_ns,
    };
    let measured_start = sched.at(sched.first_measured);
    let args = std::sync::Arc::new(args);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(run_conn(i as u64, c, args.clone(), sched, request.clone())))
        .collect();
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await.expect("connection task");
        all.latencies.extend_from_slice(&s.latencies);
        all.wake_lag.extend_from_slice(&s.wake_lag);
        all.errors += s.errors;
        all.warmup_errors += s.warmup_errors;
        all.unsent += s.unsent;
        all.connects += s.connects;
        all.last_done = all.last_done.max(s.last_done);
        if all.first_error.is_none() {
            all.first_error = s.first_error;
        }
    }
    report(&args, &sched, measured_start, all)
}

fn report(args: &Args, sched: &Schedule, measured_start: u64, mut all: Stats) -> i32 {
    all.latencies.sort_unstable();
    all.wake_lag.sort_unstable();
    let lat = &all.latencies;
    let ok = lat.len() as u64;
    let scheduled = sched.total - sched.first_measured;
    // completions over the time from the first measured slot to the last
    // response: below the target when the server could not keep up
    let span = all.last_done.saturating_sub(measured_start).max(1);
    let achieved = ok as f64 * 1e9 / span as f64;
    let mean = if ok > 0 {
        lat.iter().sum::<u64>() as f64 / ok as f64
    } else {
        0.0
    };
    let p = |q| us(percentile(lat, q));
    let lag = |q| us(percentile(&all.wake_lag, q));
    println!(
        "{} req/s target over {} connections to {} for {:.1}s (after {:.1}s warm-up)",
        args.rate,
        args.conns,
        args.addr,
        args.duration_ns as f64 / 1e9,
        args.warmup_ns as f64 / 1e9
    );
    println!(
        "requests: {scheduled} scheduled, {ok} ok, {} errors, {} unsent; achieved {achieved:.1} req/s",
        all.errors, all.unsent
    );
    println!(
        "latency from the scheduled send time (µs): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        p(500),
        p(900),
        p(990),
        p(999),
        us(lat.last().copied().unwrap_or(0)),
        mean / 1000.0
    );
    println!(
        "generator's own wake-up lag (µs, requests whose connection was free): p50 {:.1}  p99 {:.1}  max {:.1}",
        lag(500),
        lag(990),
        us(all.wake_lag.last().copied().unwrap_or(0))
    );
    println!(
        "connects during the run: {}; warm-up errors: {}{}",
        all.connects,
        all.warmup_errors,
        all.first_error
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    println!(
        "{{\"target_rate\":{},\"conns\":{},\"duration_s\":{},\"scheduled\":{scheduled},\"ok\":{ok},\
\"errors\":{},\"unsent\":{},\"achieved_rate\":{achieved:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\
\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"mean_us\":{:.1},\"lag_p99_us\":{:.1},\
\"lag_max_us\":{:.1},\"connects\":{}}}",
        args.rate,
        args.conns,
        args.duration_ns as f64 / 1e9,
        all.errors,
        all.unsent,
        p(500),
        p(900),
        p(990),
        p(999),
        us(lat.last().copied().unwrap_or(0)),
        mean / 1000.0,
        lag(990),
        us(all.wake_lag.last().copied().unwrap_or(0)),
        all.connects
    );
    if ok == 0 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 500), 500);
        assert_eq!(percentile(&v, 990), 990);
        assert_eq!(percentile(&v, 999), 999);
        assert_eq!(percentile(&v, 1000), 1000);
        assert_eq!(percentile(&v, 0), 1);
        assert_eq!(percentile(&[7], 999), 7);
        assert_eq!(percentile(&[], 500), 0);
    }

    #[test]
    fn the_schedule_spreads_requests_evenly_without_drift() {
        let s = Schedule {
            start: 1000,
            rate: 3,
            first_measured: 0,
            total: 9,
            give_up: 0,
        };
        assert_eq!(s.at(0), 1000);
        assert_eq!(s.at(1), 1000 + 333_333_333);
        assert_eq!(s.at(3), 1000 + 1_000_000_000);
        assert_eq!(s.at(3_000_000), 1000 + 1_000_000_000_000_000);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("2"), Ok(2_000_000_000));
        assert!(parse_duration_ns("-1s").is_err());
        assert!(parse_duration_ns("soon").is_err());
        assert!(parse_duration_ns("infs").is_err());
    }
}
