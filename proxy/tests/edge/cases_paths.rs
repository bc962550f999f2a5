//! Cases: how a path is spelled (route `private` must not be dodged), the request-target
//! forms, methods and protocol versions.

use super::client::Case;

/// Route rules against every spelling of a path: the seven dodges of `private`
/// (nginx: 403), their neighbours (each encoding of `.` and `/`, dot segments in every
/// position, `//`, invalid escapes), and paths that must stay on `main` or the cache route.
pub fn paths() -> Vec<Case> {
    let get = |target: &str| Case::get(format!("GET {target}"), target);
    let mut cases: Vec<Case> = [
        // The route itself, and the dodges.
        "/private/secret",
        "/public/../private/secret",
        "/public/%2e%2e/private/secret",
        "/public/..%2fprivate/secret",
        "//private/secret",
        "/./private/secret",
        "/%70rivate/secret",
        "/private%2fsecret",
        // Other encodings of `.` and `/`.
        "/public/%2E%2E/private/secret",
        "/public/.%2e/private/secret",
        "/public/%2e./private/secret",
        "/public/..%2Fprivate/secret",
        "/public%2f..%2fprivate/secret",
        "/public/%2e%2e%2fprivate/secret",
        "/%2E/private/secret",
        "/%2fprivate/secret",
        "/%2Fprivate%2Fsecret",
        "/%2e/%2e/private/secret",
        "/private/%73ecret",
        "/%50rivate/secret",
        // Dot segments and `//` in every position.
        "/private/./secret",
        "/private//secret",
        "///private///secret",
        "/private/x/../secret",
        "/private/secret/.",
        "/private/secret/..",
        "/private/..",
        "/private/../public",
        "/a/./b/./c",
        "/a/b/..",
        "/a/b/../",
        "/.",
        "//",
        "/...",
        "/a/.../b",
        "/cache/../private/secret",
        // Above the root.
        "/../private/secret",
        "/..",
        "/a/../../b",
        "/%2e%2e/private/secret",
        "/.%2e/",
        "/a/%2e%2e/%2e%2e/b",
        "/a/..%2f..%2fb",
        // Backslashes and other look-alikes are not separators or dots.
        "/public/..%5cprivate/secret",
        "/public/..%5Cprivate/secret",
        "/public\\..\\private\\secret",
        "/public/..;/private/secret",
        "/public/%252e%252e/private/secret",
        "/public/%c0%ae%c0%ae/private/secret",
        "/public/%e2%80%a4%e2%80%a4/private/secret",
        // Invalid escapes.
        "/%u002e%u002e/private/secret",
        "/public/%zz",
        "/public/%2",
        "/public/%",
        "/public/%00",
        "/public/%0a",
        // Case, the prefix's own edges, query and fragment.
        "/Private/secret",
        "/PRIVATE/secret",
        "/private",
        "/private/",
        "/privatefoo",
        "/private/secret?x=/../",
        "/public/secret?/../private/",
        "/public?a=%2e%2e%2fprivate",
        "/private/secret#frag",
        "/public#/../private/secret",
    ]
    .iter()
    .map(|t| get(t))
    .collect();
    // The limited route (1 request a minute): the first passes, every other spelling of
    // the same route must count against the same zone.
    for target in [
        "/limited/a",
        "/limited/../limited/b",
        "/%6cimited/c",
        "//limited/d",
        "/x/../limited/e",
        "/limited/./f",
    ] {
        cases.push(Case::get(format!("GET {target} (limited)"), target));
    }
    // The cache route: a HIT must need the same object; a dodge reaches the cache route
    // under another key (the raw `$request_uri`).
    for target in [
        "/cache/p1",
        "/cache/p1",
        "/cache/./p1",
        "/x/../cache/p1",
        "/cache//p1",
        "/%63ache/p1",
        "/cache/p1?",
        "/cache/p1",
    ] {
        cases.push(Case::get(
            format!("GET {target} (cache, #{})", cases.len()),
            target,
        ));
    }
    cases
}

/// Request-target forms, methods and versions.
pub fn targets_methods_versions() -> Vec<Case> {
    let line = |name: &str, request_line: &str| {
        Case::raw(
            name,
            format!("{request_line}\r\nHost: edge.test\r\nConnection: close\r\n\r\n"),
        )
    };
    let mut cases = vec![
        // Not origin-form (the bug 3).
        line("relative ../etc/passwd", "GET ../etc/passwd HTTP/1.1"),
        line("relative ..", "GET .. HTTP/1.1"),
        line("encoded climb", "GET /a/..%2f..%2f..%2fetc/passwd HTTP/1.1"),
        line("userinfo-like @evil.test/x", "GET @evil.test/x HTTP/1.1"),
        line("relative h/rel", "GET h/rel HTTP/1.1"),
        line("empty target", "GET  HTTP/1.1"),
        line("asterisk on GET", "GET * HTTP/1.1"),
        line("asterisk on OPTIONS", "OPTIONS * HTTP/1.1"),
        line("OPTIONS /", "OPTIONS / HTTP/1.1"),
        // Absolute-form.
        line("absolute-form", "GET http://edge.test/abs HTTP/1.1"),
        line(
            "absolute-form to private",
            "GET http://edge.test/private/secret HTTP/1.1",
        ),
        line(
            "absolute-form dodge",
            "GET http://edge.test/a/../private/secret HTTP/1.1",
        ),
        line("absolute-form climb", "GET http://edge.test/../x HTTP/1.1"),
        line(
            "absolute-form other host",
            "GET http://other.test/x HTTP/1.1",
        ),
        line("absolute-form https", "GET https://edge.test/x HTTP/1.1"),
        line("absolute-form no path", "GET http://edge.test HTTP/1.1"),
        line(
            "absolute-form upper-case scheme",
            "GET HTTP://EDGE.TEST/x HTTP/1.1",
        ),
        line(
            "absolute-form with port",
            "GET http://edge.test:80/x HTTP/1.1",
        ),
        line(
            "absolute-form with userinfo",
            "GET http://u@edge.test/x HTTP/1.1",
        ),
        // Methods.
        line("TRACE", "TRACE / HTTP/1.1"),
        line("TRACE on private", "TRACE /private/secret HTTP/1.1"),
        line("lower-case get", "get / HTTP/1.1"),
        line("mixed-case Get", "Get / HTTP/1.1"),
        line("unknown method FOO", "FOO / HTTP/1.1"),
        line("PROPFIND", "PROPFIND / HTTP/1.1"),
        line("DELETE", "DELETE / HTTP/1.1"),
        line("method with a digit", "G3T / HTTP/1.1"),
        line("method with underscore", "MY_METHOD / HTTP/1.1"),
        line(
            "long method (100 letters)",
            &format!("{} / HTTP/1.1", "A".repeat(100)),
        ),
        line("CONNECT", "CONNECT edge.test:443 HTTP/1.1"),
        // Versions.
        Case::raw("HTTP/1.0 without Host", "GET /v10 HTTP/1.0\r\n\r\n"),
        line("HTTP/0.9 in the request line", "GET / HTTP/0.9"),
        Case::raw("HTTP/0.9 simple request", "GET /\r\n"),
        line("HTTP/1.2", "GET / HTTP/1.2"),
        line("HTTP/2.0 over HTTP/1", "GET / HTTP/2.0"),
        line("HTTP/3.0", "GET / HTTP/3.0"),
        line("lower-case http/1.1", "GET / http/1.1"),
        line("junk version HTTP/x.y", "GET / HTTP/x.y"),
        line("version HTTP/1.1x", "GET / HTTP/1.1x"),
        line("version HTTP/11", "GET / HTTP/11"),
        line("extra token after the version", "GET / HTTP/1.1 extra"),
        line("two spaces before the target", "GET  /two HTTP/1.1"),
        // Bytes in the target.
        line("space in the target", "GET /a b HTTP/1.1"),
        line("tab in the target", "GET /a\tb HTTP/1.1"),
        line("UTF-8 in the target", "GET /caf\u{e9} HTTP/1.1"),
        line("quote and angle brackets", "GET /a\"<b> HTTP/1.1"),
        line(
            "URI of 7,000 bytes",
            &format!("GET /{} HTTP/1.1", "u".repeat(7000)),
        ),
        line(
            "URI of 9,000 bytes",
            &format!("GET /{} HTTP/1.1", "u".repeat(9000)),
        ),
    ];
    cases.push(Case::raw(
        "NUL in the request line",
        &b"GET /a\0b HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"[..],
    ));
    cases.push(Case::raw(
        "DEL byte in the target",
        &b"GET /a\x7fb HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"[..],
    ));
    cases.push(Case::raw(
        "empty line before the request",
        "\r\nGET /lead HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n",
    ));
    let mut head = Case::raw(
        "HEAD",
        "HEAD /h HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n",
    );
    head.head = true;
    cases.push(head);
    cases
}
