//! A bounded randomized test of the admin API's inputs against the real binary: thousands
//! of requests with random methods, paths made of the real segments plus percent-encoded
//! junk, random query strings, random or mutated JSON bodies (wrong types, huge numbers,
//! unicode, deep nesting, truncation, oversized), chunked or not, with and without the
//! token, on keep-alive connections. Every request must get an answer below 500, and the
//! process must still answer `/healthz`, `/status` and `/metrics` at the end.
//!
//! The generator is seeded: the seed is printed, and `WEIR_ADMIN_FUZZ_SEED=<seed>` replays a
//! run (`WEIR_ADMIN_FUZZ_CASES=<n>` changes the number of cases).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{free_port, wait_listening, Origin, Weir};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "fuzz-t0ken";
/// Cases per run, unless `WEIR_ADMIN_FUZZ_CASES` says otherwise.
const CASES: usize = 18_000;
/// A run stops early (and says so) past this, to stay well under 30 s on a slow machine.
const TIME_LIMIT: Duration = Duration::from_secs(25);

/// TTLs that fit a `Duration` but not an `Instant`: refused with 400 (they once made the
/// registration panic; see `a_huge_ttl_is_refused_with_400` in admin.rs).
const OVERFLOWING_TTLS: [&str; 4] = [
    "9223372036854775807s",
    "18446744073709551615s",
    "213503982334601d",
    "5124095576030431h",
];

const SEGMENTS: [&str; 13] = [
    "healthz",
    "metrics",
    "status",
    "traffic",
    "upstreams",
    "o",
    "servers",
    "purge",
    "caches",
    "c",
    "clean",
    "reload",
    "nope",
];

const TIERS: [&str; 10] = [
    "nodes",
    "origin",
    "edge",
    "",
    "NODES",
    "nodes ",
    "ñodes",
    "🦀",
    "origin\u{0}",
    "n\\\"q",
];

const ADDRS: [&str; 22] = [
    "127.0.0.1:1",
    "127.0.0.1:65535",
    "127.0.0.1:0",
    "[::1]:80",
    "localhost:8080",
    "0.0.0.0:0",
    "127.0.0.1",
    ":80",
    "127.0.0.1:",
    "127.0.0.1:99999",
    "127.0.0.1:-1",
    "a b:80",
    "[::1]",
    "[::1:80",
    "💥:80",
    "%31.0.0.1:80",
    "no-such-host.invalid:80",
    "256.1.1.1:80",
    "127.0.0.1:80:80",
    "",
    "..:80",
    "-:80",
];

const TTLS: [&str; 30] = [
    "1s",
    "2s",
    "30s",
    "1m",
    "20m",
    "1h",
    "7d",
    "250ms",
    "0s",
    "0ms",
    "1ms",
    "",
    "s",
    "5",
    "5 s",
    " 5s",
    "5S",
    "1.5s",
    "-1s",
    "+5s",
    "١s",
    "5s\u{0}",
    "99999999999999999999s",
    "1000000000000000d",
    "18446744073709551615ms",
    "100000000000d",
    "5y",
    "0x10s",
    "1e3s",
    "5\\s",
];

const DURATIONS: [&str; 14] = [
    "0s",
    "1s",
    "1d",
    "10m",
    "2h",
    "7d",
    "250ms",
    "",
    "x",
    "-1d",
    "1.5h",
    "%30s",
    "1%00s",
    "99999999999999999999999d",
];

const URLS: [&str; 14] = [
    "http://127.0.0.1/c/x",
    "https://img.test/a?b=c",
    "/relative",
    "http://",
    "::",
    "http://[::1]:80/a",
    "ftp://x/y",
    "http://h:99999/",
    "http://h/%zz",
    "http://u:p@h/p",
    "*",
    "",
    "http://h/\u{0}",
    "HTTP://H/P",
];

const UNICODE: [char; 9] = [
    'é', 'ü', '中', '🦀', '\u{202e}', '\u{0}', '\u{feff}', '\u{7f}', '\u{ffff}',
];

const METHODS: [&str; 12] = [
    "GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "TRACE", "FOO", "get", "M-SEARCH",
    "PURGE",
];

/// `addr` as a path segment: `:` and everything outside the unreserved characters
/// percent-encoded.
fn encode_segment(addr: &str) -> String {
    addr.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Gen {
    rng: fastrand::Rng,
    /// Addresses registered so far (from the answers), for DELETE to find.
    registered: Vec<String>,
}

impl Gen {
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.usize(..xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    fn percent_encode(&self, bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("%{b:02X}")).collect()
    }

    /// A path segment of junk: unreserved characters, sub-delimiters, percent-encoded
    /// bytes and UTF-8, broken percent sequences, real segment names.
    fn junk_segment(&mut self) -> String {
        let mut s = String::new();
        if self.chance(0.02) {
            return "a".repeat(self.rng.usize(500..4000));
        }
        for _ in 0..self.rng.usize(0..10) {
            match self.rng.u8(0..100) {
                0..=44 => s.push(*self.pick(&['A', 'z', '0', '9', '-', '.', '_', '~', 'x', 'Q'])),
                45..=59 => s += &format!("%{:02X}", self.rng.u8(..)),
                60..=69 => s.push(*self.pick(&[
                    '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@',
                ])),
                70..=79 => {
                    let c = *self.pick(&UNICODE);
                    let mut buf = [0u8; 4];
                    s += &self.percent_encode(c.encode_utf8(&mut buf).as_bytes());
                }
                80..=84 => s += *self.pick(&["%", "%G1", "%4", "%%", "%2", "%u0041"]),
                _ => s += *self.pick(&SEGMENTS),
            }
        }
        s
    }

    /// A real segment, sometimes disguised (percent-encoded letter, upper case).
    fn disguise(&mut self, seg: &str) -> String {
        match self.rng.u8(0..10) {
            0 if !seg.is_empty() => {
                let i = self.rng.usize(..seg.len());
                if seg.is_char_boundary(i) && seg.is_char_boundary(i + 1) {
                    format!(
                        "{}{}{}",
                        &seg[..i],
                        self.percent_encode(&seg.as_bytes()[i..=i]),
                        &seg[i + 1..]
                    )
                } else {
                    seg.to_string()
                }
            }
            1 => seg.to_ascii_uppercase(),
            _ => seg.to_string(),
        }
    }

    fn addr(&mut self) -> String {
        if self.chance(0.5) {
            format!("127.0.0.1:{}", self.rng.u16(1..))
        } else {
            (*self.pick(&ADDRS)).to_string()
        }
    }

    fn ttl(&mut self) -> String {
        match self.rng.u8(0..100) {
            0..=4 => (*self.pick(&OVERFLOWING_TTLS)).to_string(),
            5..=40 => format!(
                "{}{}",
                self.rng.u64(1..100_000),
                self.pick(&["s", "m", "h", "d", "ms"])
            ),
            _ => (*self.pick(&TTLS)).to_string(),
        }
    }

    /// A method and a target: one of the real endpoints, then mutated.
    fn target(&mut self) -> (String, String) {
        let (method, mut segs, mut query): (&str, Vec<String>, Option<String>) =
            match self.rng.u8(0..13) {
                0 => ("GET", vec!["healthz".into()], None),
                1 => ("GET", vec!["metrics".into()], None),
                2 => ("GET", vec!["status".into()], None),
                3 => ("GET", vec!["traffic".into()], None),
                4 => (
                    "GET",
                    vec!["upstreams".into(), (*self.pick(&["o", "nope", ""])).into()],
                    None,
                ),
                5..=6 => (
                    "POST",
                    vec!["upstreams".into(), "o".into(), "servers".into()],
                    None,
                ),
                7 => {
                    let addr = if !self.registered.is_empty() && self.chance(0.6) {
                        self.pick(&self.registered.clone()).clone()
                    } else {
                        self.addr()
                    };
                    let enc = if self.chance(0.7) {
                        encode_segment(&addr)
                    } else {
                        self.percent_encode(addr.as_bytes())
                    };
                    (
                        "DELETE",
                        vec!["upstreams".into(), "o".into(), "servers".into(), enc],
                        None,
                    )
                }
                8..=9 => ("POST", vec!["purge".into()], None),
                10..=11 => {
                    let d = self.pick(&DURATIONS).to_string();
                    (
                        "POST",
                        vec![
                            "caches".into(),
                            (*self.pick(&["c", "nope", "C"])).into(),
                            "clean".into(),
                        ],
                        Some(format!("older_than={d}")),
                    )
                }
                _ => ("POST", vec!["reload".into()], None),
            };
        let mut segs: Vec<String> = segs.drain(..).map(|s| self.disguise(&s)).collect();
        for _ in 0..self.rng.usize(0..3) {
            if !self.chance(0.25) {
                continue;
            }
            let at = self.rng.usize(0..=segs.len());
            match self.rng.u8(0..5) {
                0 if !segs.is_empty() => {
                    let i = self.rng.usize(..segs.len());
                    segs[i] = self.junk_segment();
                }
                1 => segs.insert(at, self.junk_segment()),
                2 if !segs.is_empty() => {
                    segs.remove(self.rng.usize(..segs.len()));
                }
                3 => segs.insert(at, (*self.pick(&["", ".", "..", "%2e%2e", "%2F"])).into()),
                _ => segs.insert(at, (*self.pick(&SEGMENTS)).into()),
            }
        }
        let mut path = format!("/{}", segs.join("/"));
        match self.rng.u8(0..20) {
            0 => path.push('/'),
            1 => path.insert(0, '/'),
            2 => path = path.replace('/', "//"),
            _ => {}
        }
        if self.chance(0.3) {
            let mut pairs = Vec::new();
            if let Some(q) = query.take() {
                pairs.push(q);
            }
            for _ in 0..self.rng.usize(0..4) {
                let key = match self.rng.u8(0..4) {
                    0 => "older_than".to_string(),
                    1 => String::new(),
                    _ => self.junk_segment(),
                };
                let value = if self.chance(0.5) {
                    self.pick(&DURATIONS).to_string()
                } else {
                    self.junk_segment()
                };
                pairs.push(if self.chance(0.1) {
                    key
                } else {
                    format!("{key}={value}")
                });
            }
            query = Some(pairs.join("&"));
        }
        if let Some(q) = query {
            path = format!("{path}?{q}");
        }
        let method = if self.chance(0.85) {
            method.to_string()
        } else if self.chance(0.9) {
            (*self.pick(&METHODS)).to_string()
        } else {
            (0..self.rng.usize(1..10))
                .map(|_| self.rng.uppercase())
                .collect()
        };
        (method, path)
    }

    /// A JSON string literal of `s` (escaped), sometimes with raw or broken escapes.
    fn string(&mut self, s: &str) -> String {
        match self.rng.u8(0..30) {
            0 => format!("\"{s}"),
            1 => "\"\\ud800\"".to_string(),
            2 => format!("\"{s}\\u0000\""),
            3 => format!("\"{s}\\x41\""),
            _ => serde_json::to_string(s).unwrap(),
        }
    }

    fn number(&mut self) -> String {
        (*self.pick(&[
            "0",
            "-1",
            "1.5",
            "1e400",
            "-1e400",
            "123456789012345678901234567890",
            "18446744073709551616",
            "-9223372036854775809",
            "1.7976931348623157e309",
            "-0",
            "0x10",
            "NaN",
            "Infinity",
            "01",
        ]))
        .to_string()
    }

    /// Any JSON value (sometimes not quite JSON), nested at most `depth` more levels.
    fn value(&mut self, depth: u32) -> String {
        match self.rng.u8(0..12) {
            0..=2 => {
                let s: String = (0..self.rng.usize(0..12))
                    .map(|_| {
                        if self.chance(0.3) {
                            *self.pick(&UNICODE)
                        } else {
                            self.rng.alphanumeric()
                        }
                    })
                    .collect();
                self.string(&s)
            }
            3..=4 => self.number(),
            5 => (*self.pick(&["true", "false", "null", "True", "nul"])).to_string(),
            6..=7 if depth > 0 => {
                let items: Vec<String> = (0..self.rng.usize(0..4))
                    .map(|_| self.value(depth - 1))
                    .collect();
                format!("[{}]", items.join(","))
            }
            8..=9 if depth > 0 => {
                let items: Vec<String> = (0..self.rng.usize(0..4))
                    .map(|_| {
                        let k = self
                            .pick(&["tier", "addr", "ttl", "tls", "zone", "key", "url", "x", ""]);
                        format!(
                            "{}:{}",
                            serde_json::to_string(k).unwrap(),
                            self.value(depth - 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            10 => {
                let d = self.rng.usize(1..3000);
                let (open, close) = if self.chance(0.5) {
                    ("[", "]")
                } else {
                    ("{\"a\":", "}")
                };
                format!("{}1{}", open.repeat(d), close.repeat(d))
            }
            _ => serde_json::to_string(&self.addr()).unwrap(),
        }
    }

    /// `{k: v, …}` from `fields`, each value sometimes replaced by a wrong one, fields
    /// dropped, duplicated or added; sometimes truncated or trailed by junk.
    fn object(&mut self, mut fields: Vec<(String, String)>) -> String {
        for f in &mut fields {
            if self.chance(0.12) {
                f.1 = self.value(3);
            }
        }
        if !fields.is_empty() && self.chance(0.1) {
            fields.remove(self.rng.usize(..fields.len()));
        }
        if !fields.is_empty() && self.chance(0.05) {
            let dup = fields[self.rng.usize(..fields.len())].clone();
            fields.push(dup);
        }
        if self.chance(0.08) {
            let key = (*self.pick(&["extra", "TIER", "tier ", "zone", "key", "url", "ttl", "🦀"]))
                .to_string();
            let v = self.value(2);
            fields.push((key, v));
        }
        self.rng.shuffle(&mut fields);
        let sep = *self.pick(&[",", ", ", " ,\n", ","]);
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
            .collect();
        let mut s = format!("{{{}}}", body.join(sep));
        match self.rng.u8(0..40) {
            0..=2 if !s.is_empty() => {
                let mut cut = self.rng.usize(..s.len());
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            3 => s.push_str(&self.value(1)),
            4 => s = format!("[{s}]"),
            5 => s = format!("  \n{s}\n  "),
            _ => {}
        }
        s
    }

    fn registration(&mut self) -> String {
        let mut fields = vec![
            ("tier".to_string(), {
                let t = if self.chance(0.5) {
                    "nodes"
                } else {
                    *self.pick(&TIERS)
                };
                self.string(t)
            }),
            ("addr".to_string(), {
                let a = self.addr();
                self.string(&a)
            }),
            ("ttl".to_string(), {
                let t = self.ttl();
                self.string(&t)
            }),
        ];
        if self.chance(0.3) {
            fields.push((
                "tls".to_string(),
                (*self.pick(&["true", "false"])).to_string(),
            ));
        }
        self.object(fields)
    }

    fn purge(&mut self) -> String {
        let zone = (*self.pick(&["c", "nope", "", "C"])).to_string();
        let mut fields = vec![("zone".to_string(), self.string(&zone))];
        match self.rng.u8(0..5) {
            0 | 1 => {
                let key = if self.chance(0.5) {
                    format!("http127.0.0.1/c/{}", self.rng.u8(0..5))
                } else {
                    self.junk_segment()
                };
                fields.push(("key".into(), self.string(&key)));
            }
            2 | 3 => {
                let url = if self.chance(0.5) {
                    format!("http://127.0.0.1/c/{}", self.rng.u8(0..5))
                } else {
                    (*self.pick(&URLS)).to_string()
                };
                fields.push(("url".into(), self.string(&url)));
            }
            _ => {
                fields.push(("key".into(), self.string("k")));
                fields.push(("url".into(), self.string("http://h/")));
            }
        }
        self.object(fields)
    }

    /// The body for `method path`: usually the endpoint's own shape, mutated.
    fn body(&mut self, method: &str, path: &str) -> Option<Vec<u8>> {
        let roll = self.rng.u8(0..100);
        if roll < 3 {
            // Over 64 KiB.
            let n = self.rng.usize(65_537..200_000);
            return Some(if self.chance(0.5) {
                format!("{{\"zone\":\"c\",\"key\":\"{}\"}}", "x".repeat(n)).into_bytes()
            } else {
                vec![b'['; n]
            });
        }
        if roll < 7 {
            let mut bytes = vec![0u8; self.rng.usize(0..300)];
            self.rng.fill(&mut bytes);
            return Some(bytes);
        }
        let wants = method != "GET" && method != "HEAD";
        if !wants && roll < 85 {
            return None;
        }
        if wants && roll < 12 {
            return None;
        }
        let body = if path.contains("servers") && roll < 80 {
            self.registration()
        } else if path.contains("purge") && roll < 80 {
            self.purge()
        } else {
            match self.rng.u8(0..3) {
                0 => self.registration(),
                1 => self.purge(),
                _ => self.value(4),
            }
        };
        Some(body.into_bytes())
    }

    fn authorization(&mut self) -> Option<String> {
        match self.rng.u8(0..100) {
            0..=49 => Some(format!("Bearer {TOKEN}")),
            50..=57 => Some(format!("bearer {TOKEN}")),
            58..=59 => Some(format!("BEARER   {TOKEN}  ")),
            60..=74 => None,
            75..=79 => Some(format!("Bearer {TOKEN}x")),
            80..=82 => Some(format!("Basic {TOKEN}")),
            83..=84 => Some("Bearer".to_string()),
            85..=86 => Some(TOKEN.to_string()),
            _ => Some(
                (0..self.rng.usize(0..40))
                    .map(|_| self.rng.char(' '..='~'))
                    .collect::<String>(),
            ),
        }
    }
}

/// One generated request.
struct Case {
    method: String,
    path: String,
    raw: Vec<u8>,
}

impl Case {
    fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let cut: String = text.chars().take(1500).collect();
        format!("{cut:?}{}", if text.len() > 1500 { " …" } else { "" })
    }
}

fn build(g: &mut Gen) -> Case {
    let (method, path) = g.target();
    let auth = g.authorization();
    let body = g.body(&method, &path);
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    if let Some(a) = &auth {
        raw.extend_from_slice(format!("Authorization: {a}\r\n").as_bytes());
    }
    if g.chance(0.1) {
        raw.extend_from_slice(b"Connection: close\r\n");
    }
    if body.is_some() && g.chance(0.5) {
        let ct = *g.pick(&[
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
        ]);
        raw.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    match &body {
        Some(b) if g.chance(0.15) => {
            raw.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = &b[..];
            while !rest.is_empty() {
                let n = g.rng.usize(1..=rest.len().min(9000));
                raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                raw.extend_from_slice(&rest[..n]);
                raw.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            raw.extend_from_slice(b"0\r\n\r\n");
        }
        Some(b) => {
            raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
            raw.extend_from_slice(b);
        }
        None => raw.extend_from_slice(b"\r\n"),
    }
    Case { method, path, raw }
}

/// A keep-alive HTTP/1.1 client that reconnects when the server closed.
struct Client {
    port: u16,
    conn: Option<TcpStream>,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Client {
    fn connect(&self) -> Result<TcpStream, String> {
        let s =
            TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Ok(s)
    }

    /// Sends `raw` and reads one response. A reused connection the server had closed is
    /// retried once on a new one.
    fn exchange(&mut self, raw: &[u8], head: bool) -> Result<Answer, String> {
        let reused = self.conn.is_some();
        match self.try_exchange(raw, head) {
            Err((e, false)) if reused => {
                self.conn = None;
                self.try_exchange(raw, head)
                    .map_err(|(e2, _)| format!("{e}; again on a new connection: {e2}"))
            }
            r => r.map_err(|(e, _)| e),
        }
    }

    /// The error says whether any response byte was read.
    fn try_exchange(&mut self, raw: &[u8], head: bool) -> Result<Answer, (String, bool)> {
        let mut s = match self.conn.take() {
            Some(s) => s,
            None => self.connect().map_err(|e| (e, false))?,
        };
        if let Err(e) = s.write_all(raw) {
            // The server may answer early (401, 413) and close before reading it all.
            if !matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) {
                return Err((format!("write: {e}"), false));
            }
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut chunk) {
                Ok(0) => {
                    return Err((
                        format!("closed after {} byte(s) of a response", buf.len()),
                        !buf.is_empty(),
                    ))
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err((format!("read: {e}"), !buf.is_empty())),
            }
        };
        let text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| (format!("bad status line {status_line:?}"), true))?;
        let mut length = None;
        let mut close = status_line.starts_with("HTTP/1.0");
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "connection" && v == "close" {
                close = true;
            }
        }
        let body_len = if head || status == 204 || status == 304 {
            Some(0)
        } else {
            length
        };
        let start = head_end + 4;
        loop {
            if let Some(len) = body_len {
                if buf.len() >= start + len {
                    if buf.len() > start + len {
                        return Err((
                            format!("{} byte(s) after the response", buf.len() - start - len),
                            true,
                        ));
                    }
                    break;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) if body_len.is_none() => {
                    close = true;
                    break;
                }
                Ok(0) => return Err(("closed mid-body".into(), true)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err((format!("read body: {e}"), true)),
            }
        }
        if !close {
            self.conn = Some(s);
        }
        Ok(Answer {
            status,
            body: buf[start..].to_vec(),
        })
    }
}

fn seed() -> u64 {
    match std::env::var("WEIR_ADMIN_FUZZ_SEED") {
        Ok(s) => s.trim().parse().expect("WEIR_ADMIN_FUZZ_SEED: a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn cases() -> usize {
    std::env::var("WEIR_ADMIN_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CASES)
}

/// At most 200 characters of `s`.
fn short(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    if cut.len() < s.len() {
        cut + " …"
    } else {
        cut
    }
}

/// What a run of cases saw.
#[derive(Default)]
struct Stats {
    run: usize,
    statuses: BTreeMap<u16, usize>,
    failures: Vec<String>,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.run += other.run;
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.failures.extend(other.failures);
    }
}

/// Runs `wanted` cases generated from `seed` against the admin API on `admin` (fewer when
/// `deadline` passes or 20 failures were seen).
fn fuzz(seed: u64, admin: u16, wanted: usize, deadline: Instant) -> Stats {
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(seed),
        registered: Vec::new(),
    };
    let mut client = Client {
        port: admin,
        conn: None,
    };
    let mut st = Stats::default();
    while st.run < wanted {
        if Instant::now() > deadline {
            eprintln!(
                "admin fuzz: seed {seed}: time limit reached after {} of {wanted} cases",
                st.run
            );
            break;
        }
        let case = build(&mut g);
        st.run += 1;
        let run = st.run;
        match client.exchange(&case.raw, case.method == "HEAD") {
            Ok(a) => {
                *st.statuses.entry(a.status).or_default() += 1;
                if a.status == 200 && case.method == "POST" && case.path.contains("servers") {
                    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                    if let Some(addr) = v["addr"].as_str() {
                        if g.registered.len() < 64 {
                            g.registered.push(addr.to_string());
                        }
                    }
                }
                if a.status >= 500 || a.status < 100 {
                    st.failures.push(format!(
                        "seed {seed} case {run}: {} {} → {} {:?}\n  request: {}",
                        case.method,
                        short(&case.path),
                        a.status,
                        String::from_utf8_lossy(&a.body),
                        case.describe()
                    ));
                }
            }
            Err(e) => {
                client.conn = None;
                st.failures.push(format!(
                    "seed {seed} case {run}: {} {} → no answer: {e}\n  request: {}",
                    case.method,
                    short(&case.path),
                    case.describe()
                ));
            }
        }
        if st.failures.len() >= 20 {
            break;
        }
    }
    st
}

/// Runs the fuzz: every request is answered, never with a 5xx, and weir never panics.
fn run() {
    let seed = seed();
    eprintln!("admin fuzz: seed {seed} (replay with WEIR_ADMIN_FUZZ_SEED={seed})");
    let origin = Origin::start("o");
    let cache = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n  access_log: {{ path: 'off' }}\n\
         admin: {{ listen: \"127.0.0.1:{admin}\", token: \"{TOKEN}\" }}\n\
         caches:\n  c: {{ path: {}, valid: {{ \"200\": 10m }} }}\n\
         upstreams:\n  o:\n    tiers:\n      - {{ name: nodes, servers: [] }}\n      - {{ name: origin, servers: [\"{}\"] }}\n\
         routes:\n  - {{ name: all, upstream: o, plugins: [{{ cache: {{ zone: c }} }}] }}\n",
        cache.path().display(),
        origin.addr()
    );
    let weir = Weir::start(&yaml, port);
    wait_listening(("127.0.0.1", admin));
    // A few cached objects for purge and clean to find.
    for i in 0..5 {
        let r = common::raw_request(
            port,
            format!("GET /c/{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(common::status_of(&r), 200, "{r}");
    }

    // Phase 1: one client, every case reproducible from the seed. Phase 2: the same kind of
    // cases from four clients at once (registrations, purges and reloads racing).
    let wanted = cases();
    let started = Instant::now();
    let deadline = started + TIME_LIMIT;
    let mut stats = fuzz(seed, admin, wanted * 2 / 3, deadline);
    let phase1 = stats.run;
    let per_thread = (wanted - wanted * 2 / 3) / 4;
    let threads: Vec<_> = (1..=4u64)
        .map(|i| {
            let seed = seed.wrapping_add(i);
            std::thread::spawn(move || fuzz(seed, admin, per_thread, deadline))
        })
        .collect();
    for t in threads {
        stats.add(t.join().expect("a fuzz thread"));
    }
    let Stats {
        run,
        statuses,
        failures,
    } = stats;
    let elapsed = started.elapsed();
    eprintln!(
        "admin fuzz: seed {seed}: {run} cases ({phase1} sequential, {} from 4 concurrent \
         clients with seeds {seed}+1..=4) in {:.1}s; statuses {statuses:?}; failures: {}",
        run - phase1,
        elapsed.as_secs_f64(),
        failures.len()
    );

    // Still serving.
    let mut fresh = Client {
        port: admin,
        conn: None,
    };
    let health = fresh
        .exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", false)
        .expect("/healthz answers after the fuzz");
    assert_eq!(
        (health.status, String::from_utf8_lossy(&health.body).trim()),
        (200, "ok")
    );
    let status = fresh
        .exchange(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n", false)
        .expect("/status answers");
    assert_eq!(status.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&status.body).expect("/status is JSON");
    assert!(v["upstreams"]["o"].is_array(), "{v}");
    let metrics = fresh
        .exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false)
        .expect("/metrics answers");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    assert!(scrape.samples.iter().any(|s| s.metric == "weir_build_info"));
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let log = weir.stderr();
    assert!(!log.contains("panicked at"), "weir panicked:\n{log}");

    assert!(run >= 2000, "only {run} cases ran in {elapsed:?}");
    // Every part of the API was reached with the token.
    for s in [200, 204, 400, 401, 404, 405, 413] {
        assert!(
            statuses.get(&s).is_some_and(|n| *n > 0),
            "no {s} in {statuses:?}"
        );
    }
}

#[test]
fn admin_inputs_every_request_is_answered() {
    run();
}
