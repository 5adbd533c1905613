//! Smoke test of the harness: a request through the default chain.
mod common;
use common::*;

#[tokio::test]
async fn proxies_with_forwarded_headers_and_request_id() {
    let origin = Origin::echo();
    let gw = gateway(&simple_config(&[origin.addr], r#""request_id""#));
    let r = get(gw.addr(), "/anything?x=1", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/anything");
    assert_eq!(r.seen("x-forwarded-for"), ["127.0.0.1"]);
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(r.seen("x-request-id"), [id]);
    assert_eq!(id.len(), 32);
}
