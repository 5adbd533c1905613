//! `type = "basic_auth"` and `type = "api_key"` over real sockets: htpasswd
//! lines made in the test (bcrypt `$2y$`/`$2b$`, SHA-256- and
//! SHA-512-crypt) and SHA-256 key hashes; the right credentials reach the
//! origin (without them, and with the consumer's own header), every wrong
//! one gets 401 with its challenge and its reason in the access log and
//! `/metrics`; the files re-read on reload; slow hashes checked off the
//! worker's loop and bounded; `/config` without a secret. Load errors are
//! in `tests/config_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

/// A request that must be refused: its path, its headers, its reason.
type Refused<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn sha256_hex(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// An htpasswd file of three users, one per accepted family: `alice`
/// (bcrypt, as `htpasswd -B` writes it, `$2y$`), `bob` (SHA-512-crypt) and
/// `carol` (SHA-256-crypt).
fn htpasswd_text() -> String {
    let alice = bcrypt::hash_with_result("wonderland", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    assert!(alice.starts_with("$2y$04$"), "{alice}");
    let bob =
        sha_crypt::sha512_simple("builder", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
    let carol =
        sha_crypt::sha256_simple("singer", &sha_crypt::Sha256Params::new(5000).unwrap()).unwrap();
    format!("# made by the test\nalice:{alice}\n\nbob:{bob}\ncarol:{carol}\n")
}

/// The gateway of these tests: the middleware `auth` defined by `def`.
fn config(origin: SocketAddr, def: &str, log: &Path) -> String {
    guarded_config(origin, &format!("[middlewares.auth]\n{def}"), "auth", log)
}

#[tokio::test]
async fn basic_auth_admits_each_hash_family_and_refuses_the_rest_with_reasons() {
    let origin = Origin::echo();
    let dir = TempDir::new("basic-auth");
    let htpasswd = dir.write("htpasswd", &htpasswd_text());
    let log = dir.path("access.log");
    let def = format!(
        "type = \"basic_auth\"\nrealm = \"admin area\"\nhtpasswd = {htpasswd:?}\nconsumer_header = \"x-user\""
    );
    let gw = gateway_with_admin(&config(origin.addr, &def, &log), 2);
    let mut client = H1::connect(gw.addr()).await;
    for (n, (user, password)) in [
        ("alice", "wonderland"),
        ("bob", "builder"),
        ("carol", "singer"),
    ]
    .into_iter()
    .enumerate()
    {
        let auth = basic(user, password);
        let path = format!("/ok/{n}");
        let r = within(client.send(request("GET", &path, &[("authorization", &auth)]))).await;
        assert_eq!(r.status, StatusCode::OK, "{user}: {}", r.text());
        // The consumer's header is the proxy's, and the credentials stay here.
        assert_eq!(r.seen("x-user"), [user]);
        assert!(r.seen("authorization").is_empty(), "credentials forwarded");
    }
    // A client cannot name itself: its own x-user is replaced.
    let forged = [
        ("authorization", basic("alice", "wonderland")),
        ("x-user", "root".to_string()),
    ];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let r = within(client.send(request("GET", "/ok/forged", &forged))).await;
    assert_eq!(r.seen("x-user"), ["alice"]);
    assert_eq!(origin.requests(), 4);

    let bob_wrong = basic("bob", "wonderland");
    let nobody = basic("mallory", "x");
    let refused: &[Refused] = &[
        ("/no/missing", &[], "credentials_missing"),
        (
            "/no/bearer",
            &[("authorization", "Bearer abc")],
            "credentials_malformed",
        ),
        (
            "/no/garbage",
            &[("authorization", "Basic !!!")],
            "credentials_malformed",
        ),
        (
            "/no/password",
            &[("authorization", &bob_wrong)],
            "bad_password",
        ),
        ("/no/user", &[("authorization", &nobody)], "unknown_user"),
    ];
    for (path, headers, _) in refused {
        // Each on the same keep-alive connection: a 401 keeps it.
        let r = within(client.send(request("GET", path, headers))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            r.headers["www-authenticate"],
            r#"Basic realm="admin area", charset="UTF-8""#
        );
        assert_eq!(
            r.text(),
            "401 Unauthorized: this route needs a valid user name and password\n"
        );
    }
    assert_eq!(origin.requests(), 4, "a refused request went upstream");
    // The route without the middleware needs nothing.
    let r = within(client.get("/open")).await;
    assert_eq!(r.status, StatusCode::OK);

    let admin = gw.admin_addr().unwrap();
    for (_, _, reason) in refused {
        let sample = format!(
            r#"strait_middleware_refusals_total{{middleware="auth",type="basic_auth",reason="{reason}"}}"#
        );
        let want = refused.iter().filter(|(_, _, r)| r == reason).count() as f64;
        assert_eq!(
            within(metric_becomes(admin, &sample, want, LIMIT)).await,
            want
        );
    }
    let shown = within(get(admin, "/config", &[])).await;
    assert_eq!(
        shown.json()["middlewares"]["auth"],
        serde_json::json!({
            "type": "basic_auth",
            "realm": "admin area",
            "htpasswd": htpasswd.to_str().unwrap(),
            "users": 3,
            "consumer_header": "x-user",
            "forward_credentials": false,
            "max_verifications": 16,
        })
    );
    assert!(!shown.text().contains("$2y$"), "a hash in /config");
    gw.shutdown();

    let lines = json_log(&log);
    for (path, _, reason) in refused {
        let l = log_line(&lines, path);
        assert_eq!(l["status"], 401, "{l}");
        assert_eq!(l["cause"], *reason, "{l}");
        assert!(l["consumer"].is_null(), "{l}");
    }
    assert_eq!(log_line(&lines, "/ok/1")["consumer"], "bob");
    assert!(log_line(&lines, "/ok/1")["cause"].is_null());
}

#[tokio::test]
async fn basic_auth_can_forward_the_credentials() {
    let origin = Origin::echo();
    let dir = TempDir::new("basic-forward");
    let htpasswd = dir.write("htpasswd", &htpasswd_text());
    let def = format!("type = \"basic_auth\"\nhtpasswd = {htpasswd:?}\nforward_credentials = true");
    let gw = gateway(&config(origin.addr, &def, &dir.path("log")));
    let auth = basic("carol", "singer");
    let r = within(get(gw.addr(), "/", &[("authorization", &auth)])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.seen("authorization"), [auth.as_str()]);
    // The default realm.
    let r = within(get(gw.addr(), "/", &[])).await;
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Basic realm="restricted", charset="UTF-8""#
    );
}

#[tokio::test]
async fn the_htpasswd_file_is_read_again_on_reload() {
    let origin = Origin::echo();
    let dir = TempDir::new("basic-reload");
    let htpasswd = dir.write("htpasswd", &htpasswd_text());
    let def = format!("type = \"basic_auth\"\nhtpasswd = {htpasswd:?}");
    let toml = config(origin.addr, &def, &dir.path("log"));
    let gw = gateway(&toml);
    let mut client = H1::connect(gw.addr()).await;
    let alice = basic("alice", "wonderland");
    let dave = basic("dave", "newcomer");
    let as_ = |auth: &str| request("GET", "/", &[("authorization", auth)]);
    assert_eq!(within(client.send(as_(&alice))).await.status, 200);
    assert_eq!(within(client.send(as_(&dave))).await.status, 401);
    // alice leaves, dave arrives: the same configuration, reloaded.
    let dave_hash = bcrypt::hash("newcomer", 4).unwrap();
    std::fs::write(&htpasswd, format!("dave:{dave_hash}\n")).unwrap();
    gw.reload_toml("test.toml", &toml).expect("reload");
    assert_eq!(within(client.send(as_(&dave))).await.status, 200);
    // alice's verified credential was remembered by the old instance only.
    assert_eq!(within(client.send(as_(&alice))).await.status, 401);
    // A file that became unusable fails the reload; the old one serves on.
    std::fs::write(&htpasswd, "dave:hunter2\n").unwrap();
    let err = gw.reload_toml("test.toml", &toml).unwrap_err().to_string();
    assert!(err.contains("not a supported hash (plain text"), "{err}");
    assert!(!err.contains("hunter2"), "a password quoted back: {err}");
    assert_eq!(within(client.send(as_(&dave))).await.status, 200);
}

#[tokio::test]
async fn slow_hashes_are_checked_off_the_loop_and_bounded() {
    let origin = Origin::echo();
    let dir = TempDir::new("basic-slow");
    // Cost 13: a fraction of a second to seconds per check, optimised.
    let slow = bcrypt::hash("patience", 13).unwrap();
    let htpasswd = dir.write("htpasswd", &format!("slow:{slow}\n"));
    let def = format!("type = \"basic_auth\"\nhtpasswd = {htpasswd:?}\nmax_verifications = 1");
    // One worker: were a check on its loop, /open would wait for it.
    let gw = gateway_with(&config(origin.addr, &def, &dir.path("log")), 1);
    let addr = gw.addr();
    let checked = Arc::new(AtomicBool::new(false));
    let mut checks = Vec::new();
    for password in ["patience", "wrong1", "wrong2", "wrong3"] {
        let checked = checked.clone();
        let auth = basic("slow", password);
        checks.push(tokio::spawn(async move {
            let r = get(addr, "/", &[("authorization", &auth)]).await;
            if r.status != StatusCode::SERVICE_UNAVAILABLE {
                checked.store(true, Ordering::SeqCst);
            }
            r
        }));
    }
    // Until a check has ended, the worker still serves other requests.
    let mut served_during_a_check = false;
    for _ in 0..20 {
        let r = within(get(addr, "/open", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        if !checked.load(Ordering::SeqCst) {
            served_during_a_check = true;
            break;
        }
    }
    assert!(
        served_during_a_check,
        "no request served while a hash was checked"
    );
    let mut statuses = Vec::new();
    for check in checks {
        let r = within(check).await.unwrap();
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.headers["retry-after"], "1");
        }
        statuses.push(r.status.as_u16());
    }
    // One check at a time: the others, sent while it ran, were turned away.
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    assert!((1..=3).contains(&busy), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 401, 503].contains(s)),
        "{statuses:?}"
    );
    // A remembered credential needs no check, busy or not.
    if statuses[0] == 200 {
        let r = within(get(
            addr,
            "/",
            &[("authorization", &basic("slow", "patience"))],
        ))
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn api_keys_from_a_header_or_the_query_name_their_consumer() {
    let origin = Origin::echo();
    let dir = TempDir::new("api-key");
    let keys = dir.write(
        "keys",
        &format!(
            "# consumer and sha256 of the key\nalice sha256:{}\nbob   sha256:{}\n",
            sha256_hex("alice-secret"),
            sha256_hex("bob-secret").to_uppercase()
        ),
    );
    let log = dir.path("access.log");
    let def = format!(
        "type = \"api_key\"\nkeys_file = {keys:?}\nkeys = {{ carol = \"sha256:{}\" }}\nheader = \"x-api-key\"\nquery = \"api_key\"\nconsumer_header = \"x-consumer\"",
        sha256_hex("carol/secret+1")
    );
    let gw = gateway_with_admin(&config(origin.addr, &def, &log), 2);
    let mut client = H1::connect(gw.addr()).await;
    let r = within(client.send(request("GET", "/h", &[("x-api-key", "alice-secret")]))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.seen("x-consumer"), ["alice"]);
    assert!(r.seen("x-api-key").is_empty(), "the key went upstream");
    // From the query: the key's parameter is taken out, the rest kept.
    let r = within(client.get("/q?a=1&api_key=bob-secret&b=2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["query"], "a=1&b=2");
    assert_eq!(r.seen("x-consumer"), ["bob"]);
    // Percent-encoded in the query, inline in the configuration.
    let r = within(client.get("/q2?api_key=carol%2Fsecret%2B1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.seen("x-consumer"), ["carol"]);
    assert_eq!(origin.requests(), 3);

    let refused: &[Refused] = &[
        ("/none", &[], "credentials_missing"),
        ("/empty", &[("x-api-key", "")], "credentials_missing"),
        ("/wrong", &[("x-api-key", "alice-secreT")], "unknown_key"),
        // The hash itself is not a key.
        (
            "/hash",
            &[(
                "x-api-key",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            )],
            "unknown_key",
        ),
        ("/q3?api_key=nope", &[], "unknown_key"),
    ];
    for (path, headers, _) in refused {
        let r = within(client.send(request("GET", path, headers))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers["www-authenticate"], r#"ApiKey realm="api""#);
        assert_eq!(
            r.text(),
            "401 Unauthorized: this route needs a valid API key\n"
        );
    }
    assert_eq!(origin.requests(), 3, "a refused request went upstream");
    let admin = gw.admin_addr().unwrap();
    let missing = r#"strait_middleware_refusals_total{middleware="auth",type="api_key",reason="credentials_missing"}"#;
    let unknown = r#"strait_middleware_refusals_total{middleware="auth",type="api_key",reason="unknown_key"}"#;
    assert_eq!(
        within(metric_becomes(admin, missing, 2.0, LIMIT)).await,
        2.0
    );
    assert_eq!(
        within(metric_becomes(admin, unknown, 3.0, LIMIT)).await,
        3.0
    );
    let shown = within(get(admin, "/config", &[])).await;
    assert_eq!(
        shown.json()["middlewares"]["auth"],
        serde_json::json!({
            "type": "api_key",
            "keys_file": keys.to_str().unwrap(),
            "keys": 3,
            "header": "x-api-key",
            "query": "api_key",
            "realm": "api",
            "consumer_header": "x-consumer",
            "forward_credentials": false,
        })
    );
    assert!(
        !shown.text().contains(&sha256_hex("alice-secret")),
        "a hash in /config"
    );
    gw.shutdown();
    let lines = json_log(&log);
    assert_eq!(log_line(&lines, "/h")["consumer"], "alice");
    assert_eq!(log_line(&lines, "/wrong")["cause"], "unknown_key");
    assert_eq!(log_line(&lines, "/none")["cause"], "credentials_missing");
}

#[tokio::test]
async fn an_api_key_can_be_forwarded_and_the_header_is_the_default() {
    let origin = Origin::echo();
    let dir = TempDir::new("api-key-forward");
    let def = format!(
        "type = \"api_key\"\nkeys = {{ svc = \"sha256:{}\" }}\nforward_credentials = true\nrealm = \"partners\"",
        sha256_hex("k1")
    );
    let gw = gateway(&config(origin.addr, &def, &dir.path("log")));
    let r = within(get(gw.addr(), "/", &[("x-api-key", "k1")])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.seen("x-api-key"), ["k1"]);
    // No query parameter unless configured: a key there is not read.
    let r = within(get(gw.addr(), "/?api_key=k1", &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], r#"ApiKey realm="partners""#);
}
