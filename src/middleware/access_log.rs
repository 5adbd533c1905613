//! The access log: one line per request, in combined (Apache/nginx) or JSON form.
//!
//! The line is formatted on the worker into a recycled buffer in two halves: what
//! is known when the response head leaves (before the arena is returned), written
//! here, and what is known only when the body ends (bytes sent, total time),
//! which the response body appends (`log/tail.rs`). Full lines are batched in the
//! worker's log buffers (lent through the context) and written by the control
//! plane's writer thread, never by the worker.

use std::io::Write as _;
use std::sync::Arc;

use http::{header, Response};

use crate::context::{Flow, ProxyBody, RequestContext, UpstreamRequest};
use crate::log::{LogFormat, LogTail, Sink};
use crate::util::time::{clf_time, iso_time};

/// Longest User-Agent or Referer copied into a log line.
const MAX_FIELD: usize = 512;

/// `type = "access_log"`.
#[derive(Clone)]
pub(crate) struct AccessLog {
    pub(crate) format: LogFormat,
    pub(crate) sink: Arc<Sink>,
}

impl AccessLog {
    /// Copies the fields the log needs from the client's headers before they
    /// move upstream (into the arena: no heap allocation).
    pub(crate) fn on_request(
        &self,
        ctx: &mut RequestContext<'_>,
        req: &UpstreamRequest<'_>,
    ) -> Flow {
        let arena = ctx.arena();
        let field = |name| {
            req.headers
                .get_str(name)
                .map(|s| &*arena.alloc_str(truncate(s, MAX_FIELD)))
        };
        ctx.log.user_agent = field(header::USER_AGENT);
        ctx.log.referer = field(header::REFERER);
        Flow::Continue
    }

    /// Formats the first half of the line and hands it to the response body.
    pub(crate) fn on_response(&self, ctx: &mut RequestContext<'_>, resp: &mut Response<ProxyBody>) {
        let tail = begin(self, ctx, resp.status().as_u16());
        resp.body_mut().set_log_tail(tail);
    }

    /// Logs a request that ended without a route (404), in one go.
    pub(crate) fn log_unrouted(&self, ctx: &RequestContext<'_>, status: u16, body_len: u64) {
        let tail = begin(self, ctx, status);
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

/// The first half of the line, handed to the response body to finish.
fn begin(log: &AccessLog, ctx: &RequestContext<'_>, status: u16) -> LogTail {
    let logs = &ctx.tools.logs;
    let mut buf = logs.take_line();
    let split = match log.format {
        LogFormat::Combined => write_combined(&mut buf, ctx, status),
        LogFormat::Json => write_json(&mut buf, ctx, status),
    };
    let sink = logs.register(&log.sink);
    LogTail::new(buf, split, log.format, ctx.log.start, sink, logs.clone())
}

fn write_combined(buf: &mut Vec<u8>, ctx: &RequestContext<'_>, status: u16) -> usize {
    let _ = write!(buf, "{} - ", ctx.client_addr.ip());
    // Apache's %u: the authenticated user, `-` when there is none.
    match ctx.consumer {
        Some(user) if !user.is_empty() => write_escaped(buf, user),
        _ => buf.push(b'-'),
    }
    buf.extend_from_slice(b" [");
    // Apache's %t: the time the request was received.
    clf_time(buf, ctx.tools.clock.wall_clock_at(ctx.log.start));
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
    iso_time(buf, ctx.tools.clock.wall_clock_at(ctx.log.start));
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
    buf.extend_from_slice(b",\"consumer\":");
    json_opt(buf, ctx.consumer);
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

#[cfg(test)]
mod tests {
    use super::*;

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
