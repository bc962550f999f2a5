//! Property-based fuzzing of the path normaliser ([`NormalizedPath`]) with proptest, on
//! stable Rust. The number of cases per property follows `PROPTEST_CASES` (default 256, a
//! second or two in all); a long run is `PROPTEST_CASES=1000000 cargo test -p weir-plugins
//! --test fuzz_path --release`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use proptest::prelude::*;
use weir_plugins::path::PathError;
use weir_plugins::NormalizedPath;

/// Pieces that exercise every branch of the normaliser, and any byte at all.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "/", "/", ".", "..", "a", "b", "%2e", "%2E", "%2f", "%2F", "%41", "%", "%z", "%2",
            "%00", "?", "#", "+", "%25", "%3f", "%3F", "%23", "\\", ";", "%ff",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

/// A request target: `/` and up to 40 pieces.
fn target() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..40).prop_map(|pieces| {
        let mut t = b"/".to_vec();
        pieces.iter().for_each(|p| t.extend_from_slice(p));
        t
    })
}

/// Pieces without an escape of `%`, `?` or `#` (which nginx keeps as text) or a raw byte,
/// for the comparison with the plain decode-then-resolve reference.
fn plain_target() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "/", "/", ".", "..", "a", "b", "%2e", "%2E", "%2f", "%2F", "%41", "%", "%z", "%00", "?",
        "#", "+",
    ]);
    prop::collection::vec(piece, 0..40)
        .prop_map(|pieces| format!("/{}", pieces.concat()).into_bytes())
}

/// Percent-encodes every byte but unreserved ones and `/`.
fn encode(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in path {
        if b.is_ascii_alphanumeric() || b"/._~-".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// RFC 3986-style reference: cut at the query, decode everything, then resolve segments.
fn reference(target: &[u8]) -> Option<Vec<u8>> {
    let end = target
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(target.len());
    let raw = &target[..end];
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if b == 0 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(b);
            i += 3;
        } else {
            decoded.push(raw[i]);
            i += 1;
        }
    }
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        trailing = matches!(seg, b"" | b"." | b"..");
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop()?;
            }
            s => stack.push(s),
        }
    }
    let mut out = b"/".to_vec();
    out.extend_from_slice(&stack.join(&b'/'));
    if trailing && !stack.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

proptest! {
    #[test]
    fn fuzz_normalised_paths_have_no_dot_segments_or_double_slashes(t in target()) {
        if let Ok(p) = NormalizedPath::parse(&t) {
            let p = p.as_bytes();
            prop_assert!(p.starts_with(b"/"));
            prop_assert!(!p.windows(2).any(|w| w == b"//"), "{:?}", p.escape_ascii().to_string());
            prop_assert!(!p.contains(&0));
            for seg in p.split(|&b| b == b'/') {
                prop_assert!(seg != b"." && seg != b"..", "{}", p.escape_ascii());
            }
        }
    }

    #[test]
    fn fuzz_normalising_is_idempotent(t in target()) {
        if let Ok(p) = NormalizedPath::parse(&t) {
            // Normalising the path again (percent-encoded, so a decoded `?` or `%` stays text)
            // changes nothing.
            let again = NormalizedPath::parse(&encode(p.as_bytes()));
            prop_assert_eq!(again, Ok(p));
        }
    }

    #[test]
    fn fuzz_refusals_are_consistent(t in target(), query in "[a-z%./]{0,10}") {
        let first = NormalizedPath::parse(&t);
        prop_assert_eq!(&NormalizedPath::parse(&t), &first);
        // The query is never judged: appending one changes nothing (when the path has none).
        if !t.contains(&b'?') && !t.contains(&b'#') {
            let with_query = [t.as_slice(), b"?", query.as_bytes()].concat();
            prop_assert_eq!(&NormalizedPath::parse(&with_query), &first);
        }
        // A refused path stays refused under a deeper prefix, except a climb that the extra
        // depth absorbs.
        if let Err(e) = first {
            let deeper = [b"/x/y".as_slice(), t.as_slice()].concat();
            match (e, NormalizedPath::parse(&deeper)) {
                (PathError::AboveRoot, _) => {}
                (e, got) => prop_assert_eq!(got, Err(e)),
            }
            let climbing = [b"/..".as_slice(), t.as_slice()].concat();
            prop_assert!(NormalizedPath::parse(&climbing).is_err());
        }
    }

    #[test]
    fn fuzz_matches_decode_then_resolve(t in plain_target()) {
        let got = NormalizedPath::parse(&t).ok().map(|p| p.as_bytes().to_vec());
        prop_assert_eq!(got, reference(&t), "{}", t.escape_ascii());
    }
}
