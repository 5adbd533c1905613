//! One table for both representations: each scenario runs on a map and on a
//! wire head built from the same fields, and both must answer alike.

use bumpalo::Bump;
use http::header::{self, HeaderName, HeaderValue};

use super::{Field, Headers};

fn map_of(fields: &[(&str, &[u8])]) -> Headers<'static> {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        map.append(name, HeaderValue::from_bytes(value).unwrap());
    }
    Headers::from_map(map)
}

fn wire_of<'a>(fields: &[(&'a str, &'a [u8])], arena: &'a Bump) -> Headers<'a> {
    let received =
        arena.alloc_slice_fill_iter(fields.iter().map(|&(name, value)| Field { name, value }));
    Headers::wire(received, arena)
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// What the headers hold, independent of the representation's order: each
/// name (lowercase) with its values in order, names sorted; and the length.
fn held(h: &Headers<'_>) -> String {
    let mut fields: Vec<(String, String)> = h
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), text(v)))
        .collect();
    // Stable: a name's values keep their order.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let fields: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("[{}] len {}", fields.join(" "), h.len())
}

/// Runs `scenario` on a map and on a wire head of `fields`; both must give
/// `want`, then hold the same fields.
fn both(
    fields: &[(&str, &[u8])],
    want: &[&str],
    scenario: impl Fn(&mut Headers<'_>) -> Vec<String>,
) {
    let arena = Bump::new();
    let mut map = map_of(fields);
    let mut wire = wire_of(fields, &arena);
    assert!(map.as_map().is_some() && wire.as_map().is_none());
    let from_map = scenario(&mut map);
    let from_wire = scenario(&mut wire);
    assert_eq!(from_map, want, "map");
    assert_eq!(from_wire, want, "wire");
    assert_eq!(held(&map), held(&wire));
}

fn values<'h>(i: impl Iterator<Item = &'h [u8]>) -> String {
    i.map(text).collect::<Vec<_>>().join(",")
}

fn opt(v: Option<&[u8]>) -> String {
    v.map_or("-".into(), text)
}

const X_MULTI: HeaderName = HeaderName::from_static("x-multi");

const BASIC: &[(&str, &[u8])] = &[
    ("Host", b"a.test"),
    ("Content-Type", b"text/plain"),
    ("X-Multi", b"1"),
    ("x-multi", b"2"),
];

#[test]
fn lookups_ignore_case_and_take_any_key() {
    both(
        BASIC,
        &[
            "text/plain",
            "text/plain",
            "text/plain",
            "text/plain",
            "1,2",
            "1",
            "true",
            "false",
            "-",
            "",
            "4 false",
        ],
        |h| {
            vec![
                opt(h.get("content-type")),
                opt(h.get("CONTENT-TYPE")),
                opt(h.get(header::CONTENT_TYPE)),
                h.get_str(&header::CONTENT_TYPE).unwrap().to_string(),
                values(h.get_all("X-MULTI")),
                opt(h.get(&X_MULTI)),
                h.contains(&String::from("HOST")).to_string(),
                h.contains("x-nope").to_string(),
                // Not a valid name: nothing has it.
                opt(h.get("bad name")),
                values(h.get_all("x-nope")),
                format!("{} {}", h.len(), h.is_empty()),
            ]
        },
    );
}

#[test]
fn a_received_name_removed_then_appended_has_only_the_new_value() {
    both(BASIC, &["true", "-", "3", "3", "3"], |h| {
        let removed = h.remove("X-MULTI");
        let gone = opt(h.get("x-multi"));
        h.append(&X_MULTI, &HeaderValue::from_static("3"));
        vec![
            removed.to_string(),
            gone,
            opt(h.get("x-multi")),
            values(h.get_all("x-multi")),
            h.len().to_string(),
        ]
    });
}

#[test]
fn insert_replaces_received_and_added_values() {
    both(BASIC, &["1,2,3", "4", "3"], |h| {
        h.append(&X_MULTI, &HeaderValue::from_static("3"));
        let before = values(h.get_all("x-multi"));
        h.insert(&X_MULTI, &HeaderValue::from_static("4"));
        vec![before, values(h.get_all("x-multi")), h.len().to_string()]
    });
}

#[test]
fn removing_a_name_never_present_or_already_removed_changes_nothing() {
    both(BASIC, &["false", "4", "true", "false", "2"], |h| {
        let absent = h.remove("x-nope");
        let len = h.len();
        let first = h.remove(&X_MULTI);
        let again = h.remove(X_MULTI);
        vec![
            absent.to_string(),
            len.to_string(),
            first.to_string(),
            again.to_string(),
            h.len().to_string(),
        ]
    });
}

#[test]
fn every_value_comes_in_order_received_then_added() {
    let fields: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"x"), ("A", b"2"), ("c", b"y")];
    both(fields, &["1,2,3,4", "1", "x", "5"], |h| {
        let a = HeaderName::from_static("a");
        h.append(&a, &HeaderValue::from_static("3"));
        h.append_bytes(&a, b"4").unwrap();
        h.remove("c");
        vec![
            values(h.get_all("a")),
            opt(h.get("a")),
            opt(h.get("B")),
            h.len().to_string(),
        ]
    });
}

#[test]
fn removals_past_64_and_128_fields_are_kept() {
    let names: Vec<String> = (0..150).map(|i| format!("x-{i}")).collect();
    let fields: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
    both(
        &fields,
        &[
            "true true true",
            "147",
            "false false false",
            "true true true",
            "v",
            "147",
        ],
        |h| {
            let removed = [h.remove("x-3"), h.remove("x-70"), h.remove("X-140")];
            let present = ["x-3", "x-70", "x-140"].map(|n| h.contains(n));
            let kept = ["x-2", "x-71", "x-149"].map(|n| h.contains(n));
            let show = |b: [bool; 3]| b.map(|b| b.to_string()).join(" ");
            vec![
                show(removed),
                h.len().to_string(),
                show(present),
                show(kept),
                opt(h.get("x-149")),
                h.iter().count().to_string(),
            ]
        },
    );
}

#[test]
fn made_up_values_are_refused_as_header_values_refuse_them() {
    both(
        BASIC,
        &[
            "err",
            "err",
            "err",
            "text/plain",
            "ok",
            "tab\tok",
            "ok",
            "-",
            "true",
        ],
        |h| {
            let ct = header::CONTENT_TYPE;
            let obs = HeaderName::from_static("x-obs");
            let res = |r: Result<(), _>| if r.is_ok() { "ok" } else { "err" }.to_string();
            vec![
                res(h.append_bytes(&ct, b"a\r\nb")),
                res(h.insert_bytes(&ct, b"del\x7f")),
                res(h.insert_bytes(&ct, b"nul\0")),
                // A refused insert removed nothing.
                opt(h.get(&ct)),
                res(h.insert_bytes(&ct, b"tab\tok")),
                h.get_str(&ct).unwrap().to_string(),
                // obs-text is a valid value, but not text.
                res(h.append_bytes(&obs, b"caf\xc3\xa9")),
                h.get_str(&obs).map_or("-".into(), str::to_string),
                (h.get(&obs) == Some(b"caf\xc3\xa9")).to_string(),
            ]
        },
    );
}

#[test]
fn text_is_visible_ascii_only() {
    let fields: &[(&str, &[u8])] = &[("a", b"plain"), ("b", b"caf\xc3\xa9"), ("c", b"")];
    both(fields, &["plain", "-", ""], |h| {
        ["a", "b", "c"]
            .map(|n| h.get_str(n).map_or("-".into(), str::to_string))
            .to_vec()
    });
}

#[test]
fn no_field_at_all_and_every_field_removed_are_empty() {
    both(&[], &["true", "-"], |h| {
        vec![h.is_empty().to_string(), opt(h.get("host"))]
    });
    both(BASIC, &["true 0"], |h| {
        for name in ["host", "content-type", "x-multi"] {
            h.remove(name);
        }
        vec![format!("{} {}", h.is_empty(), h.len())]
    });
}

#[test]
fn a_wire_head_becomes_the_same_map() {
    both(BASIC, &["a.test", "1,2,3"], |h| {
        h.remove("content-type");
        h.append(&X_MULTI, &HeaderValue::from_static("3"));
        let map = h.to_map();
        let again = h.clone().into_map();
        assert_eq!(map, again);
        assert_eq!(map.len(), 4);
        vec![
            map[header::HOST].to_str().unwrap().to_string(),
            values(map.get_all("x-multi").iter().map(HeaderValue::as_bytes)),
        ]
    });
}

#[test]
fn a_clone_is_edited_apart_from_its_original() {
    both(BASIC, &["1,2", "-", "4", "3"], |h| {
        let mut copy = h.clone();
        copy.remove("x-multi");
        copy.append(&header::ACCEPT, &HeaderValue::from_static("*/*"));
        vec![
            values(h.get_all("x-multi")),
            opt(h.get("accept")),
            h.len().to_string(),
            copy.len().to_string(),
        ]
    });
}

#[test]
fn an_http1_head_is_written_in_order_with_the_clients_case() {
    let arena = Bump::new();
    let mut wire = wire_of(BASIC, &arena);
    wire.remove("x-multi");
    wire.append(&X_MULTI, &HeaderValue::from_static("3"));
    wire.insert(
        &header::CONTENT_TYPE,
        &HeaderValue::from_static("text/html"),
    );
    let mut out = Vec::new();
    wire.write_http1(&mut out);
    assert_eq!(
        text(&out),
        "Host: a.test\r\nx-multi: 3\r\ncontent-type: text/html\r\n"
    );

    // A map writes its own order and lowercase names.
    let mut map = map_of(BASIC);
    map.remove("content-type");
    let mut out = b"GET / HTTP/1.1\r\n".to_vec();
    map.write_http1(&mut out);
    assert_eq!(
        text(&out),
        "GET / HTTP/1.1\r\nhost: a.test\r\nx-multi: 1\r\nx-multi: 2\r\n"
    );

    let mut out = Vec::new();
    Headers::default().write_http1(&mut out);
    assert!(out.is_empty());
}

#[test]
fn headers_take_no_more_room_than_the_map_they_replace() {
    // The headers sit in every request's future (idle memory per connection).
    let (headers, map) = (size_of::<Headers<'_>>(), size_of::<http::HeaderMap>());
    assert!(headers <= map, "Headers {headers} B, HeaderMap {map} B");
}
