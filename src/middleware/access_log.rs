//! The access log: one line per request, in combined (Apache/nginx) or JSON form.
//!
//! The line is formatted on the worker into a recycled buffer in two halves: what
//! is known when the response head leaves (before the arena is returned), and
//! what is known only when the body ends (bytes sent, total time), which the
//! response body wrapper appends. Full lines are batched per worker and written
//! by the control plane's writer thread, never by the worker.

use std::io::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{header, Response};

use super::Flow;
use crate::control::log_writer::Sink;
use crate::data::body::ProxyBody;
use crate::data::context::{RequestContext, UpstreamRequest};
use crate::data::worker::WorkerLocal;

/// Longest User-Agent or Referer copied into a log line.
const MAX_FIELD: usize = 512;

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// `ip - - [time] "METHOD path PROTO" status bytes "referer" "user-agent"`.
    Combined,
    /// One JSON object per line with every field of the log record.
    Json,
}

/// `type = "access_log"`.
#[derive(Clone)]
pub(crate) struct AccessLog {
    pub(crate) format: LogFormat,
    pub(crate) sink: Arc<Sink>,
}

impl AccessLog {
    /// Copies the fields the log needs from the client's headers before they
    /// move upstream (into the arena: no heap allocation).
    pub(crate) fn on_request(&self, ctx: &mut RequestContext<'_>, req: &UpstreamRequest) -> Flow {
        let arena = ctx.arena();
        let field = |name| {
            req.headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(|s| &*arena.alloc_str(truncate(s, MAX_FIELD)))
        };
        ctx.log.user_agent = field(header::USER_AGENT);
        ctx.log.referer = field(header::REFERER);
        Flow::Continue
    }

    /// Formats the first half of the line and hands it to the response body.
    pub(crate) fn on_response(&self, ctx: &mut RequestContext<'_>, resp: &mut Response<ProxyBody>) {
        let tail = LogTail::begin(self, ctx, resp.status().as_u16());
        resp.body_mut().set_log_tail(tail);
    }

    /// Logs a request that ended without a route (404), in one go.
    pub(crate) fn log_unrouted(&self, ctx: &RequestContext<'_>, status: u16, body_len: u64) {
        let tail = LogTail::begin(self, ctx, status);
        tail.finish(body_len, true);
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The owned half-line carried by the response body until it ends.
pub(crate) struct LogTail {
    buf: Vec<u8>,
    /// Where the end-of-body fields go.
    split: usize,
    format: LogFormat,
    start: Instant,
    /// The worker-local key of the sink (see `WorkerLocal::register_sink`).
    sink: usize,
    local: Rc<WorkerLocal>,
}

impl LogTail {
    fn begin(log: &AccessLog, ctx: &RequestContext<'_>, status: u16) -> LogTail {
        let local = ctx.local.rc();
        let mut buf = local.take_log_buf();
        let split = match log.format {
            LogFormat::Combined => write_combined(&mut buf, ctx, status),
            LogFormat::Json => write_json(&mut buf, ctx, status),
        };
        LogTail {
            buf,
            split,
            format: log.format,
            start: ctx.log.start,
            sink: local.register_sink(&log.sink),
            local,
        }
    }

    /// Completes the line with what only the end of the body knows, and queues it.
    pub(crate) fn finish(mut self, bytes_sent: u64, completed: bool) {
        let elapsed = self.start.elapsed();
        let suffix = self.buf.split_off(self.split);
        match self.format {
            LogFormat::Combined => {
                let _ = write!(self.buf, "{bytes_sent}");
                self.buf.extend_from_slice(&suffix);
            }
            LogFormat::Json => {
                self.buf.extend_from_slice(&suffix);
                let _ = write!(
                    self.buf,
                    "\"bytes_sent\":{bytes_sent},\"completed\":{completed},\"duration_ms\":{:.3}}}",
                    elapsed.as_secs_f64() * 1000.0
                );
            }
        }
        self.buf.push(b'\n');
        let buf = std::mem::take(&mut self.buf);
        self.local.write_log(self.sink, buf);
    }
}

fn write_combined(buf: &mut Vec<u8>, ctx: &RequestContext<'_>, status: u16) -> usize {
    let _ = write!(buf, "{} - - [", ctx.client_addr.ip());
    // Apache's %t: the time the request was received.
    clf_time(buf, ctx.local.wall_clock_at(ctx.log.start));
    let _ = write!(buf, "] \"{} ", ctx.method);
    write_target(buf, ctx);
    let _ = write!(buf, " {:?}\" {status} ", ctx.version);
    let split = buf.len();
    buf.extend_from_slice(b" \"");
    write_escaped(buf, ctx.log.referer.unwrap_or("-"));
    buf.extend_from_slice(b"\" \"");
    write_escaped(buf, ctx.log.user_agent.unwrap_or("-"));
    buf.push(b'"');
    split
}

/// Writes `s` for a quoted combined-log field: `"`, `\\` and control bytes
/// become `\xHH`, as nginx does.
fn write_escaped(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f {
            let _ = write!(buf, "\\x{b:02X}");
        } else {
            buf.push(b);
        }
    }
}

fn write_target(buf: &mut Vec<u8>, ctx: &RequestContext<'_>) {
    buf.extend_from_slice(ctx.path.as_bytes());
    if let Some(q) = ctx.query {
        buf.push(b'?');
        buf.extend_from_slice(q.as_bytes());
    }
}

fn write_json(buf: &mut Vec<u8>, ctx: &RequestContext<'_>, status: u16) -> usize {
    buf.extend_from_slice(b"{\"time\":\"");
    iso_time(buf, ctx.local.wall_clock_at(ctx.log.start));
    let _ = write!(buf, "\",\"client\":\"{}\",\"method\":", ctx.client_addr);
    json_str(buf, ctx.method.as_str());
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, ctx.path);
    buf.extend_from_slice(b",\"query\":");
    json_opt(buf, ctx.query);
    let _ = write!(buf, ",\"protocol\":\"{:?}\",\"host\":", ctx.version);
    json_opt(buf, ctx.host);
    let _ = write!(buf, ",\"status\":{status},\"route\":");
    // A request that matched no route has neither: null, not "".
    json_opt(buf, Some(ctx.log.route).filter(|r| !r.is_empty()));
    buf.extend_from_slice(b",\"upstream\":");
    json_opt(buf, Some(ctx.log.upstream).filter(|u| !u.is_empty()));
    match ctx.log.endpoint {
        Some(ep) => {
            let _ = write!(buf, ",\"endpoint\":\"{ep}\"");
        }
        None => buf.extend_from_slice(b",\"endpoint\":null"),
    }
    let _ = write!(
        buf,
        ",\"reused_connection\":{},\"request_id\":",
        ctx.log.reused_connection
    );
    json_opt(buf, ctx.request_id.as_ref().and_then(|v| v.to_str().ok()));
    buf.extend_from_slice(b",\"user_agent\":");
    json_opt(buf, ctx.log.user_agent);
    buf.extend_from_slice(b",\"referer\":");
    json_opt(buf, ctx.log.referer);
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    match ms(ctx.log.upstream_connect) {
        Some(v) => {
            let _ = write!(buf, ",\"upstream_connect_ms\":{v:.3}");
        }
        None => buf.extend_from_slice(b",\"upstream_connect_ms\":null"),
    }
    match ms(ctx.log.upstream_header) {
        Some(v) => {
            let _ = write!(buf, ",\"upstream_header_ms\":{v:.3}");
        }
        None => buf.extend_from_slice(b",\"upstream_header_ms\":null"),
    }
    buf.extend_from_slice(b",\"cause\":");
    json_opt(buf, ctx.log.cause);
    let _ = write!(buf, ",\"attempts\":{}", ctx.log.attempts);
    // TLS: both null on a plain connection.
    buf.extend_from_slice(b",\"tls_version\":");
    json_opt(buf, ctx.tls.map(|t| t.version));
    buf.extend_from_slice(b",\"tls_client_subject\":");
    json_opt(buf, ctx.tls.and_then(|t| t.client_subject.as_deref()));
    buf.push(b',');
    buf.len()
}

fn json_opt(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => json_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        mo,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis(),
    )
}

/// `10/Oct/2000:13:55:36 +0000` (UTC).
pub(crate) fn clf_time(out: &mut Vec<u8>, t: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = split_time(t);
    let _ = write!(
        out,
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    );
}

/// `2000-10-10T13:55:36.123Z`.
pub(crate) fn iso_time(out: &mut Vec<u8>, t: SystemTime) {
    let (y, mo, d, h, mi, s, ms) = split_time(t);
    let _ = write!(out, "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_format() {
        let t = UNIX_EPOCH + Duration::from_millis(971_186_136_123);
        let mut s = Vec::new();
        clf_time(&mut s, t);
        assert_eq!(s, b"10/Oct/2000:13:55:36 +0000");
        s.clear();
        iso_time(&mut s, t);
        assert_eq!(s, b"2000-10-10T13:55:36.123Z");
        s.clear();
        iso_time(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day
        assert_eq!(s, b"2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn combined_fields_escape_quotes() {
        let mut b = Vec::new();
        write_escaped(&mut b, "a\"b\\c\n");
        assert_eq!(b, b"a\\x22b\\x5Cc\\x0A");
    }

    #[test]
    fn json_escapes() {
        let mut b = Vec::new();
        json_str(&mut b, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(b).unwrap(), r#""a\"b\\c\nd\u0001é""#);
    }
}
