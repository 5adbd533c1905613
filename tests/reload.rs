//! `Gateway::reload_toml`, the library's reload (the binary's triggers come
//! with the control-plane issue): a valid file is published at once, an invalid
//! one changes nothing, and an upstream kept across reloads keeps its pooled
//! connections.

mod common;

use common::*;

fn config(origin: std::net::SocketAddr, path: &str) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[upstreams.a]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nmatch = {{ path_prefix = \"{path}\" }}\nupstream = \"a\"\n"
    )
}

#[tokio::test]
async fn reload_publishes_routes_refuses_bad_files_and_keeps_pools() {
    let origin = Origin::fixed("a", 200, "a");
    let gw = gateway_with(&config(origin.addr, "/old"), 1);
    let mut client = H1::connect(gw.addr()).await;
    assert_eq!(client.get("/old/x").await.status, 200);
    assert_eq!(client.get("/new/x").await.status, 404);
    let connections = origin.connections();

    // Alternate two route sets; the upstream stays.
    for round in 0..20 {
        let (live, gone) = if round % 2 == 0 {
            ("/new", "/old")
        } else {
            ("/old", "/new")
        };
        let generation = gw
            .reload_toml("reload.toml", &config(origin.addr, live))
            .unwrap();
        assert_eq!(generation, round + 2);
        assert_eq!(
            client.get(&format!("{live}/x")).await.status,
            200,
            "round {round}"
        );
        assert_eq!(
            client.get(&format!("{gone}/x")).await.status,
            404,
            "round {round}"
        );
    }
    assert_eq!(
        origin.connections(),
        connections,
        "reloads reconnected to an unchanged upstream"
    );

    // An invalid file: a precise error, and the running routes stay.
    let errors = gw
        .reload_toml("bad.toml", "[[routes]]\nupstream = \"nowhere\"\n")
        .unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("bad.toml:2:12: route \"route-1\": unknown upstream \"nowhere\""),
        "{errors}"
    );
    assert_eq!(client.get("/old/x").await.status, 200);
}
