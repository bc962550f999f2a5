//! The edge suite's parts: the recording origin, the raw client, the crafted cases, and
//! the description of an outcome that is compared between nginx and weir.

pub mod cases_framing;
pub mod cases_headers;
pub mod cases_paths;
pub mod client;
pub mod origin;

use client::{End, Outcome, Response};
use origin::Seen;

/// Headers whose presence or value depends on how each proxy frames and pools its upstream
/// connection, not on what the client sent: left out of the comparison.
const FRAMING_HEADERS: &[&str] = &["connection", "content-length", "transfer-encoding"];

/// The outcome as one comparable line: the responses (status, and for successes the body's
/// length and checksum, `Content-Range`, `X-Cache-Status`, chunked framing), how the
/// connection ended, and every request the origin received.
pub fn describe(o: &Outcome) -> String {
    let responses: Vec<String> = o.responses.iter().map(response).collect();
    let end = end(o);
    let origin: Vec<String> = o.origin.iter().map(seen).collect();
    format!(
        "[{}] {end}; origin: [{}]",
        responses.join(", "),
        origin.join(" | ")
    )
}

/// The statuses and the end only, e.g. `400 closed`: what DELIBERATE pins on each side.
pub fn short(o: &Outcome) -> String {
    let mut parts: Vec<String> = o.responses.iter().map(|r| status(r.status)).collect();
    parts.push(end(o).to_string());
    parts.push(format!("origin×{}", o.origin.len()));
    parts.join(" ")
}

/// How the connection ended. A last response that says `Connection: close` counts as
/// closed even while the server still drains what the client sent (nginx's lingering close
/// keeps reading for a while after an error).
fn end(o: &Outcome) -> &'static str {
    let announced = o
        .responses
        .last()
        .and_then(|r| r.header("connection"))
        .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    match o.end {
        End::Closed => "closed",
        End::Open if announced => "closed",
        End::Open => "open",
        End::Timeout => "timeout",
    }
}

/// 400 and 431 are one class: SPEC §9 allows either for an oversized header.
fn status(s: u16) -> String {
    match s {
        431 => "400".into(),
        0 => "no-status-line".into(),
        s => s.to_string(),
    }
}

fn response(r: &Response) -> String {
    let mut s = status(r.status);
    if (200..300).contains(&r.status) {
        let multipart = r
            .header("content-type")
            .is_some_and(|t| t.starts_with("multipart/byteranges"));
        if multipart {
            s.push_str(" multipart");
        } else {
            s.push_str(&format!(" {}B#{}", r.body.len(), checksum(&r.body)));
        }
        if let Some(cr) = r.header("content-range") {
            s.push_str(&format!(" range {cr}"));
        }
        if r.chunked {
            s.push_str(" chunked");
        }
    }
    if let Some(c) = r.header("x-cache-status") {
        s.push_str(&format!(" {c}"));
    }
    s
}

fn seen(r: &Seen) -> String {
    // Sorted: the order a proxy forwards headers in is not compared.
    let mut headers: Vec<String> = r
        .headers
        .iter()
        .filter(|(k, _)| !FRAMING_HEADERS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={}", short_value(v)))
        .collect();
    headers.sort();
    format!(
        "{} {{{}}} body {}B#{}",
        short_value(&r.line),
        headers.join(" "),
        r.body.len(),
        checksum(&r.body)
    )
}

/// Long values shown by length and checksum.
fn short_value(v: &str) -> String {
    if v.len() <= 80 {
        v.to_string()
    } else {
        format!("{}…({}B#{})", &v[..40], v.len(), checksum(v.as_bytes()))
    }
}

fn checksum(b: &[u8]) -> String {
    format!("{:08x}", weir_origin::fnv1a(b) as u32)
}
