//! Fuzzing the admin API's request parsing (proptest; `PROPTEST_CASES` sets the cases per
//! target): the JSON bodies of `POST /upstreams/{name}/servers` and `POST /purge`, the
//! durations of `ttl` and `?older_than=`, the `{addr}` path segment's percent-decoding, the
//! bearer token check and the purge URL. None of them may panic on any input; each accepts
//! exactly the documented shapes. `tests/admin_fuzz.rs` sends random requests over HTTP to a
//! running weir; this is the same parsing taken apart, at a million cases a minute.
//!
//! The long run: `PROPTEST_CASES=1000000 cargo test --release -p weir --lib fuzz_admin`.

use super::{authorized, parse_duration, parse_json, percent_decode, Purge, Registration};
use http::StatusCode;
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::time::Duration;

/// A JSON value of any type, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object body as written by a client: field names from the two bodies' own and a few
/// others, any values, fields possibly repeated (kept as text, since a JSON map could not).
fn object_body() -> impl Strategy<Value = (String, Vec<(String, Value)>)> {
    let name = prop_oneof![
        4 => prop::sample::select(vec!["tier", "addr", "ttl", "tls", "zone", "key", "url"])
            .prop_map(String::from),
        1 => "[a-zA-Z_]{1,6}",
    ];
    let value = prop_oneof![
        3 => "[ -~]{0,20}".prop_map(Value::String),
        1 => json_value(),
    ];
    prop::collection::vec((name, value), 0..6).prop_map(|fields| {
        let text: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}: {v}", Value::String(k.clone())))
            .collect();
        (format!("{{{}}}", text.join(", ")), fields)
    })
}

/// The fields as a map, or `None` when a name repeats (serde refuses duplicate fields).
fn unique(fields: &[(String, Value)]) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in fields {
        if m.insert(k.clone(), v.clone()).is_some() {
            return None;
        }
    }
    Some(m)
}

/// What the contract accepts for a registration: `tier`, `addr`, `ttl` strings, `tls`
/// absent or a boolean, nothing else.
fn valid_registration(m: &Map<String, Value>) -> bool {
    let allowed = ["tier", "addr", "ttl", "tls"];
    m.keys().all(|k| allowed.contains(&k.as_str()))
        && ["tier", "addr", "ttl"]
            .iter()
            .all(|k| m.get(*k).is_some_and(Value::is_string))
        && m.get("tls").is_none_or(Value::is_boolean)
}

/// What the contract accepts for a purge: a `zone` string, `key` and `url` absent, null or
/// strings (which of them is given is checked after parsing), nothing else.
fn valid_purge(m: &Map<String, Value>) -> bool {
    let allowed = ["zone", "key", "url"];
    m.keys().all(|k| allowed.contains(&k.as_str()))
        && m.get("zone").is_some_and(Value::is_string)
        && ["key", "url"]
            .iter()
            .all(|k| m.get(*k).is_none_or(|v| v.is_null() || v.is_string()))
}

fn header_with(value: &[u8]) -> Option<pingora::http::RequestHeader> {
    let mut req = pingora::http::RequestHeader::build("POST", b"/reload", None).ok()?;
    let value = http::HeaderValue::from_bytes(value).ok()?;
    req.insert_header(http::header::AUTHORIZATION, value).ok()?;
    Some(req)
}

proptest! {
    /// Any bytes as a body: parsed or refused with 400 `invalid JSON body`, never a panic.
    #[test]
    fn fuzz_admin_json_arbitrary_bodies(body in prop::collection::vec(any::<u8>(), 0..300)) {
        for result in [
            parse_json::<Registration>(&body).map(drop),
            parse_json::<Purge>(&body).map(drop),
        ] {
            if let Err(f) = result {
                prop_assert_eq!(f.0, StatusCode::BAD_REQUEST);
                prop_assert!(f.1.starts_with("invalid JSON body: "), "{}", f.1);
            }
        }
    }

    /// Objects with the right and wrong fields, types and repeats: accepted exactly when
    /// the contract says so.
    #[test]
    fn fuzz_admin_json_object_shapes((text, fields) in object_body()) {
        let fields = unique(&fields);
        let registration = parse_json::<Registration>(text.as_bytes());
        let want = fields.as_ref().is_some_and(valid_registration);
        prop_assert_eq!(registration.is_ok(), want, "registration {}", text);
        if let (Ok(r), Some(m)) = (&registration, &fields) {
            prop_assert_eq!(Some(r.tier.as_str()), m.get("tier").and_then(Value::as_str));
            prop_assert_eq!(r.tls, m.get("tls").and_then(Value::as_bool).unwrap_or(false));
        }
        let purge = parse_json::<Purge>(text.as_bytes());
        let want = fields.as_ref().is_some_and(valid_purge);
        prop_assert_eq!(purge.is_ok(), want, "purge {}", text);
    }

    /// Any text as `ttl` or `older_than`: a duration or a 400 naming the field, never a
    /// panic; `N` plus a unit is exactly N of that unit.
    #[test]
    fn fuzz_admin_durations(text in "\\PC{0,12}", n in 0u64..1_000_000, unit in 0usize..5) {
        if let Err(f) = parse_duration(&text, "ttl") {
            prop_assert_eq!(f.0, StatusCode::BAD_REQUEST);
            prop_assert!(f.1.starts_with("ttl: "), "{}", f.1);
        }
        let (suffix, ms) = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
        let d = parse_duration(&format!("{n}{suffix}"), "older_than");
        prop_assert_eq!(d.ok(), Some(Duration::from_millis(n * ms)));
    }

    /// The `{addr}` segment of `DELETE …/servers/{addr}`: any text decodes without a panic,
    /// and every byte written as `%XX` comes back.
    #[test]
    fn fuzz_admin_percent_decode(text in "\\PC{0,40}", bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = percent_decode(&text);
        let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        prop_assert_eq!(percent_decode(&encoded), bytes);
    }

    /// The bearer check never panics and accepts only `Bearer <token>` (any case, spaces
    /// around): a value without the token is refused.
    #[test]
    fn fuzz_admin_bearer_token(
        value in prop::collection::vec(any::<u8>(), 0..60),
        token in "[!-~]{1,20}",
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Bearer:", ""]),
    ) {
        if let Some(req) = header_with(&value) {
            let ok = authorized(&req, &token);
            let text = String::from_utf8_lossy(&value);
            prop_assert!(!ok || text.trim().ends_with(token.as_str()), "{:?} accepted for {}", text, token);
        }
        let req = header_with(format!("{scheme} {token}").as_bytes()).expect("printable");
        prop_assert_eq!(authorized(&req, &token), scheme.eq_ignore_ascii_case("bearer"));
        let other = format!("{token}x");
        prop_assert!(!authorized(&req, &other));
    }
}

/// `POST /purge {"url": …}` with any text: not found, or a 400 message; never a panic. The
/// zone lives in a temp dir removed at the end (a zone itself lives for the process).
#[test]
fn fuzz_admin_purge_url() {
    let dir = tempfile::Builder::new()
        .prefix("weir-admin-fuzz-")
        .tempdir()
        .expect("temp dir");
    let value = serde_yaml_ng::Value::Mapping(
        [("path".into(), dir.path().display().to_string().into())]
            .into_iter()
            .collect(),
    );
    let zone = weir_plugins::cache::zone::build("fuzz", &value, "caches.fuzz").expect("zone");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let urls = prop_oneof![
        "\\PC{0,40}",
        "(http|https|ftp|HTTP)://[a-z.:@\\[\\]0-9%-]{0,20}(/[ -~]{0,20})?",
    ];
    let mut runner = proptest::test_runner::TestRunner::default();
    let result = runner.run(&urls, |url| {
        match rt.block_on(zone.purge_url(&url)) {
            Ok(found) => prop_assert!(!found, "{} purged from an empty zone", url),
            Err(e) => prop_assert!(!e.is_empty()),
        }
        Ok(())
    });
    drop(dir);
    if let Err(e) = result {
        panic!("{e}");
    }
}
