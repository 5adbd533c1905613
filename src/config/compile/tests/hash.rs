//! Consistent hashing: the policies of `ring` and `maglev` upstreams, and errors.

use super::{assert_errors, balancing, compiled};
use crate::balance::{BalanceKind, HashFallback, HashKey};

#[test]
fn hash_policies() {
    let snap = compiled(&[
        "[upstreams.ring]",
        r#"endpoints = ["127.0.0.1:9000", "127.0.0.1:9001"]"#,
        r#"balance = "ring""#,
        r#"hash_key = "client_ip""#,
        "[upstreams.small_ring]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        r#"balance = "ring""#,
        r#"hash_key = "cookie:session""#,
        "virtual_nodes = 10",
        "[upstreams.maglev]",
        r#"endpoints = ["127.0.0.1:9000", "127.0.0.1:9001"]"#,
        r#"balance = "maglev""#,
        r#"hash_key = "header:X-User""#,
        r#"hash_fallback = "random""#,
        "[upstreams.small_maglev]",
        r#"endpoints = ["127.0.0.1:9000"]"#,
        r#"balance = "maglev""#,
        r#"hash_key = "path""#,
        "maglev_table_size = 251",
    ]);
    let policy = |name: &str| {
        let hash = balancing(&snap, name).hash.as_ref();
        let hash = hash.unwrap_or_else(|| panic!("{name} has no hash policy"));
        (hash.key.clone(), hash.fallback, hash.size)
    };
    let x_user = HashKey::Header(http::HeaderName::from_static("x-user"));
    assert_eq!(
        policy("ring"),
        (HashKey::ClientIp, HashFallback::RoundRobin, 160)
    );
    assert_eq!(
        policy("small_ring"),
        (
            HashKey::Cookie("session".into()),
            HashFallback::RoundRobin,
            10
        )
    );
    assert_eq!(policy("maglev"), (x_user, HashFallback::Random, 65_537));
    assert_eq!(
        policy("small_maglev"),
        (HashKey::Path, HashFallback::RoundRobin, 251)
    );
    assert_eq!(balancing(&snap, "ring").kind, BalanceKind::Ring);
    assert_eq!(balancing(&snap, "maglev").kind, BalanceKind::Maglev);
}

#[test]
fn hash_errors() {
    assert_errors(&[(
        &[
            "[upstreams.a]",
            r#"endpoints = ["127.0.0.1:9000"]"#,
            "virtual_nodes = 10",
            r#"hash_key = "path""#,
            "[upstreams.b]",
            r#"endpoints = ["127.0.0.1:9000"]"#,
            r#"balance = "ring""#,
            "[upstreams.c]",
            r#"endpoints = ["127.0.0.1:9000", "127.0.0.1:9001"]"#,
            r#"balance = "maglev""#,
            r#"hash_key = "cookie:session""#,
            "maglev_table_size = 100",
            "[upstreams.d]",
            r#"endpoints = ["127.0.0.1:9000", "127.0.0.1:9001"]"#,
            r#"balance = "maglev""#,
            r#"hash_key = "client_ip""#,
            "maglev_table_size = 11",
            "[upstreams.e]",
            r#"endpoints = [{ address = "127.0.0.1:9000", weight = 200 }]"#,
            r#"balance = "ring""#,
            r#"hash_key = "path""#,
            "virtual_nodes = 10000",
        ],
        &[
            r#"3:17: upstreams.a.virtual_nodes applies to balance = "ring" only, not "round_robin""#,
            r#"4:12: upstreams.a.hash_key applies to balance = "ring" or "maglev" only, not "round_robin""#,
            r#"7:11: upstream "b": balance = "ring" needs hash_key: expected "header:NAME", "cookie:NAME", "client_ip" or "path""#,
            r#"12:21: upstreams.c.maglev_table_size = 100 is not a prime: expected a prime such as 65537 or 251"#,
            r#"17:21: upstreams.d.maglev_table_size = 11 is too small for 2 endpoints: expected at least 10 slots per endpoint"#,
            r#"22:17: upstream "e": the ring would have 2000000 points (virtual_nodes 10000 × total weight 200): expected at most 1048576; lower virtual_nodes or the weights"#,
        ],
    )]);
}
