//! `GET /`: a small human-readable status page (no script), made from the same
//! figures as `/status` and `/upstreams`.

use std::fmt::Write;

use serde_json::Value;

/// The page, from the `/status` and `/upstreams` documents.
pub(super) fn render(status: &Value, upstreams: &Value) -> String {
    let mut h = String::with_capacity(4096);
    let s = |key: &str| text(&status[key]);
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Strait {version}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}th{{background:#f3f3f3}}\
         .up{{color:#070}}.down{{color:#b00;font-weight:bold}}code{{background:#f3f3f3;padding:0 .2em}}</style>\
         </head><body>\n<h1>Strait {version}</h1>\n<table>\n",
        version = esc(&s("version")),
    );
    for (label, value) in [
        (
            "Uptime",
            format!("{} s (since {})", s("uptime_seconds"), s("started_at")),
        ),
        (
            "Configuration",
            format!(
                "generation {} from <code>{}</code>, loaded {}",
                esc(&s("generation")),
                esc(&s("source")),
                esc(&s("loaded_at"))
            ),
        ),
        ("Workers", esc(&s("workers"))),
        (
            "Reloads",
            format!(
                "{} published, {} refused",
                text(&status["reloads"]["ok"]),
                text(&status["reloads"]["failed"])
            ),
        ),
        ("Last reload", last_reload(&status["last_reload"])),
    ] {
        let _ = writeln!(h, "<tr><th>{label}</th><td>{value}</td></tr>");
    }
    h.push_str("</table>\n<h2>Listeners</h2>\n<table>\n<tr><th>name</th><th>address</th></tr>\n");
    for l in status["listeners"].as_array().into_iter().flatten() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&text(&l["name"])),
            esc(&text(&l["address"]))
        );
    }
    h.push_str("</table>\n<h2>Upstreams</h2>\n");
    for u in upstreams["upstreams"].as_array().into_iter().flatten() {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<p>{}, health check {}; {} of {} endpoints healthy</p>\n<table>\n\
             <tr><th>endpoint</th><th>weight</th><th>health</th><th>in flight</th><th>requests</th>\
             <th>failures</th><th>last failure</th><th>pool idle / active</th></tr>",
            esc(&text(&u["name"])),
            esc(&text(&u["balance"])),
            if u["health_check"] == Value::Bool(true) {
                "on"
            } else {
                "off"
            },
            text(&u["totals"]["healthy"]),
            text(&u["totals"]["endpoints"]),
        );
        for e in u["endpoints"].as_array().into_iter().flatten() {
            let health = if e["healthy"] == Value::Bool(true) {
                "<span class=\"up\">healthy</span>"
            } else {
                "<span class=\"down\">unhealthy</span>"
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{health}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(&text(&e["address"])),
                text(&e["weight"]),
                text(&e["in_flight"]),
                text(&e["requests"]),
                text(&e["failures"]),
                esc(&text(&e["last_failure"])),
                text(&e["pool"]["idle"]),
                text(&e["pool"]["active"]),
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str(
        "<p>JSON: <a href=\"/status\">/status</a> · <a href=\"/config\">/config</a> · \
         <a href=\"/upstreams\">/upstreams</a> · Prometheus: <a href=\"/metrics\">/metrics</a> · \
         reload: <code>curl -X POST …/reload</code></p>\n</body></html>\n",
    );
    h
}

fn last_reload(r: &Value) -> String {
    if r.is_null() {
        return "none since start".into();
    }
    let when = format!("{} ({})", esc(&text(&r["at"])), esc(&text(&r["trigger"])));
    if r["ok"] == Value::Bool(true) {
        format!(
            "{when}: <span class=\"up\">published generation {}</span>",
            text(&r["generation"])
        )
    } else {
        format!(
            "{when}: <span class=\"down\">refused</span><pre>{}</pre>",
            esc(&text(&r["error"]))
        )
    }
}

/// A JSON value as plain text: strings unquoted, null as "-".
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_and_shows_unhealthy_endpoints() {
        let status = json!({
            "version": "0.1.0", "uptime_seconds": 5, "started_at": "t0", "generation": 2,
            "source": "<x>.toml", "loaded_at": "t1", "workers": 2,
            "reloads": { "ok": 1, "failed": 1 },
            "last_reload": { "at": "t2", "trigger": "admin", "ok": false, "error": "a.toml:1:1: bad <value>" },
            "listeners": [{ "name": "main", "address": "127.0.0.1:8080" }],
        });
        let upstreams = json!({ "upstreams": [{
            "name": "api", "balance": "round_robin", "health_check": true,
            "totals": { "healthy": 0, "endpoints": 1 },
            "endpoints": [{ "address": "10.0.0.1:80", "weight": 1, "healthy": false,
                "in_flight": 0, "requests": 3, "failures": 3, "last_failure": null,
                "pool": { "idle": 0, "active": 0 } }],
        }]});
        let page = render(&status, &upstreams);
        assert!(page.contains("<code>&lt;x&gt;.toml</code>"), "{page}");
        assert!(page.contains("bad &lt;value&gt;"));
        assert!(!page.contains("<value>"));
        assert!(page.contains("unhealthy"));
        assert!(page.contains("10.0.0.1:80"));
        assert!(page.contains("0 of 1 endpoints healthy"));
    }
}
