//! `type = "jwt"` over real sockets, with tokens signed in the test by
//! each algorithm family (RSA PKCS#1 and PSS from a fixture key, ECDSA
//! P-256 and Ed25519 made by ring, HMAC): the right token reaches the
//! origin with its consumer and claim headers and without itself; every
//! wrong one (expired, not yet valid, wrong issuer or audience, bad
//! signature, `alg: none`, malformed, unknown key, missing claim) gets
//! 401 with its RFC 6750 challenge and its reason in the access log and
//! `/metrics`; tokens from a cookie or the query; a JWKS served by a test
//! origin, fetched, rotated (a new `kid` picked up, the old one dropped),
//! kept across a reload, and not fetched more than its cooldown allows.
//! Load errors are in `tests/config_errors.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use http::StatusCode;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{json, Value};

/// Hang guard of each test (not a speed check).
const LIMIT: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://idp.test";
const SECRET: &str = "a-test-secret-of-forty-bytes-or-so-long!";

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test hung")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and the JWK of its public half.
struct Signer {
    alg: Algorithm,
    kid: Option<String>,
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        encode(&header, claims, &self.key).unwrap()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture RSA key; its JWK without `alg` (any RSA algorithm) or
/// with the fixture's own `alg: RS256`.
fn rsa(alg: Algorithm, kid: &str, pinned: bool) -> Signer {
    let mut jwk: Value = serde_json::from_slice(&fixture("rsa_public.jwk.json")).unwrap();
    jwk["kid"] = json!(kid);
    if !pinned {
        jwk.as_object_mut().unwrap().remove("alg");
    }
    Signer {
        alg,
        kid: Some(kid.into()),
        key: EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap(),
        jwk,
    }
}

fn ec(kid: &str) -> Signer {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    Signer {
        alg: Algorithm::ES256,
        kid: Some(kid.into()),
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    }
}

fn ed(kid: &str) -> Signer {
    let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Signer {
        alg: Algorithm::EdDSA,
        kid: Some(kid.into()),
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                    "x": b64(pair.public_key().as_ref())}),
    }
}

fn hmac() -> Signer {
    Signer {
        alg: Algorithm::HS256,
        kid: None,
        key: EncodingKey::from_secret(SECRET.as_bytes()),
        jwk: Value::Null,
    }
}

fn jwks(signers: &[&Signer]) -> String {
    let keys: Vec<&Value> = signers.iter().map(|s| &s.jwk).collect();
    json!({ "keys": keys }).to_string()
}

/// Claims that pass: issuer, audience, an hour to go.
fn good(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": ["other", "api"], "sub": sub, "exp": now() + 3600,
           "iat": now(), "scope": ["read", "write"], "tenant": 7})
}

/// The gateway of these tests: the `jwt` middleware `tokens` with `keys`
/// and `extra`, its issuer, audience and claim headers.
fn config(origin: SocketAddr, keys: &str, extra: &str, log: &Path) -> String {
    let def = format!(
        "[middlewares.tokens]\ntype = \"jwt\"\n{keys}\nissuer = \"{ISSUER}\"\naudiences = [\"api\"]\nclaims_to_headers = {{ sub = \"x-user\", scope = \"x-scope\", tenant = \"x-tenant\" }}\n{extra}"
    );
    guarded_config(origin, &def, "tokens", log)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn every_algorithm_family_verifies_and_names_its_consumer() {
    let origin = Origin::echo();
    let dir = TempDir::new("jwt-families");
    let (rs, ps, es, eddsa, hs) = (
        rsa(Algorithm::RS256, "rsa-1", false),
        rsa(Algorithm::PS256, "rsa-1", false),
        ec("ec-1"),
        ed("ed-1"),
        hmac(),
    );
    let file = dir.write("jwks.json", &jwks(&[&rs, &es, &eddsa]));
    let keys = format!("jwks_file = {file:?}\nsecret = {SECRET:?}");
    let log = dir.path("access.log");
    let gw = gateway_with_admin(&config(origin.addr, &keys, "", &log), 2);
    let mut client = H1::connect(gw.addr()).await;
    for (i, signer) in [&rs, &ps, &es, &eddsa, &hs].into_iter().enumerate() {
        let sub = format!("user-{i}");
        let token = signer.sign(&good(&sub));
        let path = format!("/ok/{i}");
        let r =
            within(client.send(request("GET", &path, &[("authorization", &bearer(&token))]))).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}: {}", signer.alg, r.text());
        assert_eq!(r.seen("x-user"), [sub.as_str()]);
        assert_eq!(r.seen("x-scope"), ["read,write"]);
        assert_eq!(r.seen("x-tenant"), ["7"]);
        assert!(
            r.seen("authorization").is_empty(),
            "the token went upstream"
        );
    }
    // A client's own claim headers never pass; the scheme is any case.
    let token = es.sign(&good("eve"));
    let forged = [
        ("authorization", format!("bEaReR {token}")),
        ("x-user", "root".into()),
        ("x-tenant", "1".into()),
    ];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let r = within(client.send(request("GET", "/forged", &forged))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.seen("x-user"), ["eve"]);
    assert_eq!(r.seen("x-tenant"), ["7"]);
    // The same token again: remembered by the worker, same answer.
    let r = within(client.send(request(
        "GET",
        "/again",
        &[("authorization", &bearer(&token))],
    )))
    .await;
    assert_eq!(r.seen("x-user"), ["eve"]);
    assert_eq!(origin.requests(), 7);
    let shown = within(get(gw.admin_addr().unwrap(), "/config", &[])).await;
    let tokens = &shown.json()["middlewares"]["tokens"];
    assert_eq!(tokens["secret"], "[redacted]");
    assert_eq!(tokens["keys"], 4);
    assert_eq!(tokens["issuer"], json!([ISSUER]));
    assert!(!shown.text().contains(SECRET), "the secret in /config");
    gw.shutdown();
    let lines = json_log(&log);
    assert_eq!(log_line(&lines, "/ok/2")["consumer"], "user-2");
}

#[tokio::test]
async fn every_wrong_token_is_refused_with_its_reason() {
    let origin = Origin::echo();
    let dir = TempDir::new("jwt-refusals");
    let es = ec("ec-1");
    let pinned = rsa(Algorithm::PS256, "rsa-pinned", true);
    let file = dir.write("jwks.json", &jwks(&[&es, &pinned]));
    let log = dir.path("access.log");
    let keys = format!("jwks_file = {file:?}");
    let gw = gateway_with_admin(
        &config(origin.addr, &keys, r#"required_claims = ["tenant"]"#, &log),
        2,
    );
    let with = |c: &dyn Fn(&mut Value)| {
        let mut claims = good("mallory");
        c(&mut claims);
        es.sign(&claims)
    };
    let impostor = ec("ec-1").sign(&good("mallory"));
    let unknown = ec("ec-9").sign(&good("mallory"));
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good("mallory").to_string().as_bytes())
    );
    let hs_with_public_key = {
        // The RSA JWK's modulus taken as an HMAC secret: never accepted.
        let n = pinned.jwk["n"].as_str().unwrap().to_string();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-pinned".into());
        encode(
            &h,
            &good("mallory"),
            &EncodingKey::from_secret(n.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        ("/missing", None, "jwt_missing", ""),
        ("/basic", Some("Basic YTpi".into()), "jwt_missing", ""),
        (
            "/garbage",
            Some(bearer("abc")),
            "jwt_malformed",
            "the token is not a well-formed JWT",
        ),
        (
            "/none",
            Some(bearer(&unsigned)),
            "jwt_algorithm",
            "the token's algorithm is not accepted",
        ),
        (
            "/confused",
            Some(bearer(&hs_with_public_key)),
            "jwt_algorithm",
            "the token's algorithm is not accepted",
        ),
        (
            "/pinned",
            Some(bearer(
                &rsa(Algorithm::RS256, "rsa-pinned", true).sign(&good("m")),
            )),
            "",
            "",
        ),
        (
            "/not-its-alg",
            Some(bearer(
                &rsa(Algorithm::RS512, "rsa-pinned", true).sign(&good("m")),
            )),
            "jwt_algorithm",
            "the token's algorithm is not accepted",
        ),
        (
            "/forged",
            Some(bearer(&impostor)),
            "jwt_signature",
            "the token's signature is not valid",
        ),
        (
            "/kid",
            Some(bearer(&unknown)),
            "jwt_unknown_kid",
            "the token's key is not known",
        ),
        (
            "/expired",
            Some(bearer(&with(&|c| c["exp"] = json!(now() - 3600)))),
            "jwt_expired",
            "the token has expired",
        ),
        (
            "/no-exp",
            Some(bearer(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }))),
            "jwt_claim",
            "the token lacks a required claim",
        ),
        (
            "/early",
            Some(bearer(&with(&|c| c["nbf"] = json!(now() + 3600)))),
            "jwt_not_yet_valid",
            "the token is not valid yet",
        ),
        (
            "/issuer",
            Some(bearer(&with(&|c| c["iss"] = json!("https://evil.test")))),
            "jwt_issuer",
            "the token's issuer is not accepted",
        ),
        (
            "/no-issuer",
            Some(bearer(&with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }))),
            "jwt_issuer",
            "the token's issuer is not accepted",
        ),
        (
            "/audience",
            Some(bearer(&with(&|c| c["aud"] = json!("billing")))),
            "jwt_audience",
            "the token's audience is not accepted",
        ),
        (
            "/tenant",
            Some(bearer(&with(&|c| {
                c.as_object_mut().unwrap().remove("tenant");
            }))),
            "jwt_claim",
            "the token lacks a required claim",
        ),
    ];
    let mut client = H1::connect(gw.addr()).await;
    for (path, auth, reason, description) in &cases {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = within(client.send(request("GET", path, &headers))).await;
        if reason.is_empty() {
            // The pinned RS256 key takes its own algorithm.
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            continue;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        if description.is_empty() {
            assert_eq!(challenge, r#"Bearer realm="api""#, "{path}");
        } else {
            assert_eq!(
                challenge,
                format!(
                    r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
                ),
                "{path}"
            );
        }
        assert_eq!(
            r.text(),
            "401 Unauthorized: this route needs a valid bearer token\n"
        );
    }
    assert_eq!(origin.requests(), 1, "a refused request went upstream");
    let admin = gw.admin_addr().unwrap();
    let expired =
        r#"strait_middleware_refusals_total{middleware="tokens",type="jwt",reason="jwt_expired"}"#;
    assert_eq!(
        within(metric_becomes(admin, expired, 1.0, LIMIT)).await,
        1.0
    );
    let claim =
        r#"strait_middleware_refusals_total{middleware="tokens",type="jwt",reason="jwt_claim"}"#;
    assert_eq!(within(metric_becomes(admin, claim, 2.0, LIMIT)).await, 2.0);
    gw.shutdown();
    let lines = json_log(&log);
    for (path, _, reason, _) in &cases {
        if !reason.is_empty() {
            assert_eq!(log_line(&lines, path)["cause"], *reason, "{path}");
        }
    }
}

#[tokio::test]
async fn a_token_may_come_from_a_cookie_or_the_query_and_is_taken_out() {
    let origin = Origin::echo();
    let dir = TempDir::new("jwt-sources");
    let hs = hmac();
    let keys = format!("secret = {SECRET:?}");
    let extra = "token_cookie = \"session\"\ntoken_query = \"access_token\"";
    let gw = gateway(&config(origin.addr, &keys, extra, &dir.path("log")));
    let token = hs.sign(&good("carol"));
    let cookie = format!("a=1; session={token}; b=2");
    let r = within(get(gw.addr(), "/c", &[("cookie", &cookie)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.seen("x-user"), ["carol"]);
    assert_eq!(r.seen("cookie"), ["a=1; b=2"]);
    let r = within(get(
        gw.addr(),
        &format!("/q?x=1&access_token={token}&y=2"),
        &[],
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["query"], "x=1&y=2");
    // The header comes first: a bad one is not saved by a good cookie.
    let r = within(get(
        gw.addr(),
        "/both",
        &[("authorization", "Bearer x.y.z"), ("cookie", &cookie)],
    ))
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Kept when asked to.
    drop(gw);
    let gw = gateway(&config(
        origin.addr,
        &keys,
        "token_cookie = \"session\"\nforward_credentials = true",
        &dir.path("log2"),
    ));
    let r = within(get(gw.addr(), "/kept", &[("cookie", &cookie)])).await;
    assert_eq!(r.seen("cookie"), [cookie.as_str()]);
}

/// A JWKS origin whose document the test changes; counts its fetches.
fn jwks_origin(doc: Arc<Mutex<String>>) -> Origin {
    Origin::start(Arc::new(move |req| {
        let doc = doc.clone();
        Box::pin(async move {
            drain(req).await;
            let body = doc.lock().unwrap().clone();
            let mut resp = http::Response::new(full(body));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        })
    }))
}

/// Sends `token` until the answer is `want` (the fetch is asynchronous).
async fn until_status(addr: SocketAddr, token: &str, want: StatusCode) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(addr, "/", &[("authorization", &bearer(token))]).await;
        if r.status == want || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_jwks_url_is_fetched_rotated_and_kept_across_a_reload() {
    let origin = Origin::echo();
    let dir = TempDir::new("jwt-remote");
    let (k1, k2) = (ec("k1"), ed("k2"));
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let idp = jwks_origin(doc.clone());
    let keys = format!(
        "jwks_url = \"http://{}/.well-known/jwks.json\"\njwks_refresh = \"1h\"\njwks_cooldown = \"1s\"",
        idp.addr
    );
    let toml = config(origin.addr, &keys, "", &dir.path("log"));
    let gw = gateway_with_admin(&toml, 2);
    let t1 = k1.sign(&good("first"));
    let r = within(until_status(gw.addr(), &t1, StatusCode::OK)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the set was never fetched: {}",
        r.text()
    );
    assert_eq!(r.seen("x-user"), ["first"]);
    let fetched = idp.requests();
    // Rotation: k2 in, k1 out. A k2 token asks for an early fetch.
    *doc.lock().unwrap() = jwks(&[&k2]);
    let t2 = k2.sign(&good("second"));
    let r = within(until_status(gw.addr(), &t2, StatusCode::OK)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the new kid was not picked up: {}",
        r.text()
    );
    assert!(idp.requests() > fetched);
    let r = within(get(gw.addr(), "/", &[("authorization", &bearer(&t1))])).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a dropped key still verifies"
    );
    // Unknown kids in a burst: fetches stay within the cooldown.
    let before = idp.requests();
    let stranger = ec("nobody").sign(&good("x"));
    let started = Instant::now();
    for _ in 0..30 {
        let r = within(get(
            gw.addr(),
            "/",
            &[("authorization", &bearer(&stranger))],
        ))
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let allowed = 2 + started.elapsed().as_secs() as usize;
    assert!(
        idp.requests() - before <= allowed,
        "{} fetches",
        idp.requests() - before
    );
    // A reload: the fetched keys serve at once, no gap while it fetches.
    *doc.lock().unwrap() = "this is not a JWKS".into();
    gw.reload_toml("test.toml", &toml).expect("reload");
    let r = within(get(gw.addr(), "/", &[("authorization", &bearer(&t2))])).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "keys lost across the reload: {}",
        r.text()
    );
    let shown = within(get(gw.admin_addr().unwrap(), "/config", &[])).await;
    assert_eq!(
        shown.json()["middlewares"]["tokens"]["jwks_url"]["kids"],
        json!(["k2"])
    );
}

#[tokio::test]
async fn a_pem_public_key_verifies_tokens_without_a_kid() {
    let origin = Origin::echo();
    let dir = TempDir::new("jwt-pem");
    let pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/rsa_public.pem");
    let keys = format!(
        "public_keys = [{:?}]\nalgorithms = [\"RS384\", \"PS512\"]",
        pem.to_str().unwrap()
    );
    let gw = gateway(&config(origin.addr, &keys, "", &dir.path("log")));
    for (alg, want) in [
        (Algorithm::RS384, StatusCode::OK),
        (Algorithm::PS512, StatusCode::OK),
        // A key of the family, but an algorithm not listed.
        (Algorithm::RS256, StatusCode::UNAUTHORIZED),
    ] {
        let mut signer = rsa(alg, "unused", false);
        signer.kid = None;
        let token = signer.sign(&good("pem-user"));
        let r = within(get(gw.addr(), "/", &[("authorization", &bearer(&token))])).await;
        assert_eq!(r.status, want, "{alg:?}: {}", r.text());
        if want == StatusCode::OK {
            assert_eq!(r.seen("x-user"), ["pem-user"]);
        }
    }
}

#[tokio::test]
async fn a_rate_limit_can_count_by_a_claim() {
    let origin = Origin::echo();
    let hs = hmac();
    let toml = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[upstreams.backend]
endpoints = ["{}"]

[middlewares.tokens]
type = "jwt"
secret = {SECRET:?}
issuer = "{ISSUER}"
audiences = ["api"]

[middlewares.per_tenant]
type = "rate_limit"
rate = "1/h"
key = "claim:tenant"

[[routes]]
middlewares = ["tokens", "per_tenant"]
upstream = "backend"
"#,
        origin.addr
    );
    let gw = gateway_with(&toml, 2);
    let tenant = |t: u64, sub: &str| {
        let mut c = good(sub);
        c["tenant"] = json!(t);
        hs.sign(&c)
    };
    let mut client = H1::connect(gw.addr()).await;
    let send = |token: String| request("GET", "/", &[("authorization", &bearer(&token))]);
    // Two users of tenant 7 share its one request an hour; tenant 8 has its own.
    assert_eq!(
        within(client.send(send(tenant(7, "a")))).await.status,
        StatusCode::OK
    );
    let r = within(client.send(send(tenant(7, "b")))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(
        within(client.send(send(tenant(8, "a")))).await.status,
        StatusCode::OK
    );
}
