//! Config loading: `strait::check` (TOML parse → validate → compile, the work of
//! every reload) on a config of 20 routes, 5 upstreams and 6 middlewares.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

/// A mid-sized gateway. `workers` is set so the bench does not time a
/// `available_parallelism` call; every address is on 127.0.0.1 so nothing resolves.
const SOURCE: &str = r#"
[server]
workers = 2
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
header_read_timeout = "10s"
max_header_bytes = 65536
access_log = "json_log"

[[listeners]]
name = "public"
address = "127.0.0.1:8080"

[[listeners]]
name = "internal"
address = "127.0.0.1:8081"

[upstreams.users]
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
connect_timeout = "2s"

[upstreams.orders]
balance = "weighted"
endpoints = [
  { address = "127.0.0.1:9011", weight = 5 },
  { address = "127.0.0.1:9012", weight = 1 },
  { address = "127.0.0.1:9013", weight = 1 },
]
response_header_timeout = "30s"

[upstreams.static]
endpoints = ["127.0.0.1:9021", "127.0.0.1:9022"]
idle_timeout = "90s"
max_idle_per_endpoint = 32

[upstreams.auth]
balance = "round_robin"
endpoints = ["127.0.0.1:9031"]
body_idle_timeout = "1m30s"

[upstreams.web]
endpoints = ["127.0.0.1:9041", "127.0.0.1:9042", "127.0.0.1:9043", "127.0.0.1:9044"]

[middlewares.json_log]
type = "access_log"
format = "json"
output = "stdout"

[middlewares.rid]
type = "request_id"
header = "x-correlation-id"
trust_incoming = false

[middlewares.security_headers]
type = "headers"
request_remove = ["x-internal-token"]
response_set = { "x-frame-options" = "DENY", "x-content-type-options" = "nosniff" }
response_remove = ["server"]

[middlewares.env_header]
type = "headers"
request_set = { "x-env" = "bench" }
request_append = { "via" = "strait" }

[middlewares.strip_api]
type = "strip_prefix"
prefix = "/api"

[middlewares.user_v2]
type = "rewrite"
path = "/v2/users/{id}"

[[routes]]
name = "health"
match = { path = "/healthz" }
upstream = "web"

[[routes]]
name = "user-by-id"
match = { host = "api.example.com", path_pattern = "/users/{id}" }
middlewares = ["json_log", "rid", "user_v2"]
upstream = "users"

[[routes]]
name = "user-posts"
match = { host = "api.example.com", path_pattern = "/users/{id}/posts/{post}" }
middlewares = ["json_log", "rid"]
upstream = "users"

[[routes]]
name = "users-write"
match = { host = "api.example.com", path_prefix = "/users", methods = ["POST", "PUT", "DELETE"] }
middlewares = ["json_log", "rid", "security_headers"]
upstream = "users"

[[routes]]
name = "users-v2-canary"
match = { host = "api.example.com", path_prefix = "/users", headers = [{ name = "x-canary" }] }
middlewares = ["json_log", "rid"]
upstream = "users"

[[routes]]
name = "orders"
match = { host = "api.example.com", path_prefix = "/orders" }
middlewares = ["json_log", "rid", "env_header"]
upstream = "orders"

[[routes]]
name = "order-items"
match = { host = "api.example.com", path_pattern = "/orders/{id}/items/{*rest}" }
middlewares = ["json_log", "rid"]
upstream = "orders"

[[routes]]
name = "orders-tenant"
match = { host = "api.example.com", path_prefix = "/orders", headers = [{ name = "x-tenant", value = "acme" }] }
middlewares = ["json_log"]
upstream = "orders"

[[routes]]
name = "api-strip"
match = { host = "www.example.com", path_prefix = "/api" }
middlewares = ["json_log", "strip_api", "rid"]
upstream = "users"

[[routes]]
name = "www-static"
match = { host = "www.example.com", path_prefix = "/static", methods = ["GET", "HEAD"] }
middlewares = ["security_headers"]
upstream = "static"

[[routes]]
name = "www"
match = { host = "www.example.com" }
middlewares = ["json_log", "security_headers", "rid"]
upstream = "web"

[[routes]]
name = "login"
match = { host = "auth.example.com", path = "/login", methods = ["GET", "POST"] }
middlewares = ["json_log", "rid", "security_headers"]
upstream = "auth"

[[routes]]
name = "oauth"
match = { host = "auth.example.com", path_pattern = "/oauth/{provider}/callback" }
middlewares = ["json_log", "rid"]
upstream = "auth"

[[routes]]
name = "auth-rest"
match = { host = "auth.example.com", path_prefix = "/" }
middlewares = ["json_log"]
upstream = "auth"

[[routes]]
name = "cdn"
match = { host = "cdn.example.com", path_prefix = "/assets" }
upstream = "static"

[[routes]]
name = "tenant-dashboards"
match = { host = "*.apps.example.com", path_pattern = "/{team}/dashboard" }
middlewares = ["json_log", "rid", "env_header"]
upstream = "web"

[[routes]]
name = "tenant-api"
match = { host = "*.apps.example.com", path_prefix = "/api" }
middlewares = ["json_log", "strip_api", "rid"]
upstream = "users"

[[routes]]
name = "subdomains"
match = { host = "*.example.com" }
middlewares = ["json_log", "security_headers"]
upstream = "web"

[[routes]]
name = "well-known"
match = { path_pattern = "/.well-known/{*rest}" }
upstream = "static"

[[routes]]
name = "fallback"
middlewares = ["json_log", "request_id"]
upstream = "web"
"#;

fn bench_check(c: &mut Criterion) {
    let registry = strait::CustomRegistry::new();
    let snapshot = strait::check("bench.toml", SOURCE, &registry)
        .unwrap_or_else(|e| panic!("bench config must be valid:\n{e}"));
    drop(snapshot);
    c.bench_function("config_check_20_routes", |b| {
        b.iter(|| strait::check("bench.toml", black_box(SOURCE), &registry).is_ok())
    });
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
