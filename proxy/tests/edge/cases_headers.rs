//! Cases: header names and sizes, Host forms, and Range forms on a cached object.

use super::client::Case;

/// Header names (underscores, NUL, invalid bytes), line and block sizes, header counts.
pub fn headers() -> Vec<Case> {
    let with = |name: &str, headers: &[&str]| Case::with_headers(name, "/h", headers);
    let many = |n: usize, size: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("X-H{i}: {}", "v".repeat(size)))
            .collect()
    };
    let mut cases = vec![
        with("a plain header is forwarded", &["X-Ok: 1"]),
        with("underscore in a name", &["X_Under: 1"]),
        with("underscore forwarded-for", &["X_Forwarded_For: 6.6.6.6"]),
        with("underscore next to a plain one", &["X_A: 1", "X-B: 2"]),
        with("header line without a colon", &["Junk"]),
        with("space before the colon", &["X-A : 1"]),
        with("obs-fold continuation", &["X-A: 1", " folded"]),
        with("@ in a name", &["X@Y: 1"]),
        with("empty name", &[": v"]),
        with("empty value", &["X-Empty:"]),
        with("UTF-8 in a value", &["X-U: caf\u{e9}"]),
        with("tab in a value", &["X-T: a\tb"]),
        with(
            "header line of 8,000 bytes",
            &[&format!("X-L: {}", "l".repeat(8000))],
        ),
        with(
            "header line of 8,300 bytes",
            &[&format!("X-L: {}", "l".repeat(8300))],
        ),
    ];
    for (name, n, size) in [
        ("20 KiB of headers (5 × 4 KiB)", 5, 4000),
        ("30 KiB of headers (10 × 3 KiB)", 10, 3000),
        ("40 KiB of headers (10 × 4 KiB)", 10, 4000),
        ("64 KiB of headers (16 × 4 KiB)", 16, 4000),
        ("98 small headers (100 with Host and Connection)", 98, 1),
        ("150 small headers", 150, 1),
    ] {
        let hs = many(n, size);
        let hs: Vec<&str> = hs.iter().map(String::as_str).collect();
        cases.push(with(name, &hs));
    }
    for (name, raw) in [
        ("NUL in a name", &b"X-A\0b: 1"[..]),
        ("NUL in a value", &b"X-A: a\0b"[..]),
        ("CR alone in a value", &b"X-A: a\rb"[..]),
        ("bare LF line ending", &b"X-A: 1\nX-B: 2"[..]),
    ] {
        let mut r = b"GET /h HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n".to_vec();
        r.extend_from_slice(raw);
        r.extend_from_slice(b"\r\n\r\n");
        cases.push(Case::raw(name, r));
    }
    cases
}

/// Host forms.
pub fn hosts() -> Vec<Case> {
    let host = |name: &str, value: &str| {
        Case::raw(
            name,
            format!("GET /host HTTP/1.1\r\nHost: {value}\r\nConnection: close\r\n\r\n"),
        )
    };
    vec![
        host("Host [../../etc]", "[../../etc]"),
        host("Host ../etc", "../etc"),
        host("Host a..b", "a..b"),
        host("Host with a slash", "a/b"),
        host("Host with a backslash", "a\\b"),
        host("Host with a space", "a b"),
        host("Host empty", ""),
        host("Host with port", "edge.test:80"),
        host("Host upper case", "EDGE.TEST"),
        host("Host with a trailing dot", "edge.test."),
        host("Host IPv6 literal", "[::1]:8080"),
        host("Host IPv4", "127.0.0.1"),
        host("Host with underscore", "x_y.test"),
        host("Host with a bad port", "edge.test:abc"),
        host("Host with userinfo", "u@edge.test"),
        Case::raw(
            "two Host headers",
            "GET /host HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        ),
        Case::raw(
            "no Host on HTTP/1.1",
            "GET /host HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
    ]
}

/// Range forms on a cached 10,000-byte object (the first case stores it).
pub fn ranges() -> Vec<Case> {
    let range = |spec: &str| {
        Case::with_headers(
            format!("Range {spec}"),
            "/cache/ranged",
            &[&format!("Range: {spec}")],
        )
    };
    let mut cases = vec![Case::get("store the object", "/cache/ranged")];
    for spec in [
        "bytes=-0",
        "bytes=0-",
        "bytes=0-0",
        "bytes=-10",
        "bytes=9999-",
        "bytes=10000-",
        "bytes=5-2",
        "bytes=0-1,5-6",
        "bytes=0-1, 0-1",
        "bytes=abc",
        "items=0-1",
        "bytes= 0-1",
        "bytes=-20000",
    ] {
        cases.push(range(spec));
    }
    cases.push(Case::with_headers(
        "Range on a cold object",
        "/cache/cold",
        &["Range: bytes=0-9"],
    ));
    let mut head = Case::raw(
        "HEAD on the cached object",
        "HEAD /cache/ranged HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n",
    );
    head.head = true;
    cases.push(head);
    cases
}
