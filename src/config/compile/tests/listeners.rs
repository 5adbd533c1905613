//! `[[listeners]]`: names by position, and address errors. Their TLS is tested in
//! `tls`.

use super::{assert_errors, compiled};

#[test]
fn listeners_are_named_by_position_unless_named() {
    let snap = compiled(&[
        "[[listeners]]",
        r#"address = "127.0.0.1:8080""#,
        "[[listeners]]",
        r#"name = "public""#,
        r#"address = "[::]:8443""#,
    ]);
    let listeners: Vec<(&str, String, bool)> = snap
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.addr.to_string(), l.tls.is_some()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("listener-1", "127.0.0.1:8080".to_string(), false),
            ("public", "[::]:8443".to_string(), false),
            ("listener-3", "127.0.0.1:18080".to_string(), false),
        ]
    );
}

#[test]
fn listener_errors() {
    assert_errors(&[(
        &[
            "[[listeners]]",
            r#"name = "a""#,
            r#"address = "127.0.0.1:8080""#,
            "[[listeners]]",
            r#"name = "a""#,
            r#"address = "127.0.0.1:8080""#,
            "[[listeners]]",
            r#"address = "localhost:80""#,
        ],
        &[
            r#"5:8: duplicate listener name "a""#,
            r#"6:11: listener address 127.0.0.1:8080 is already used by listener 1"#,
            r#"8:11: invalid listen address "localhost:80": expected IP:port, e.g. "127.0.0.1:8080" or "[::]:8080""#,
        ],
    )]);
}
