//! Fuzzing the config loader (proptest; `PROPTEST_CASES` sets the cases per target, 256 by
//! default): mutated versions of every file in `conf/` and generated YAML made of weir's own
//! keys and hostile values go through the loader behind `weir -t` ([`weir::config::parse`]);
//! it never panics, and every error it reports names its YAML path (only a file that is not
//! YAML at all, or empty, gets a message without one). A few cases per run go through the
//! real `weir -t` binary, which must exit 0 or 1 (never crash) and print one
//! `path: message` line per error.
//!
//! Loading builds cache zones (their directory is created) and starts Redis stores (they
//! connect in the background), and resolves host names in server addresses. So before a
//! generated file is loaded, cache paths and state/temp dirs are pointed into one temp
//! directory, Redis URLs at a closed local port, and host names in server addresses at
//! `localhost`: nothing is written outside the temp dir and no name goes to DNS.
//!
//! The long run: `PROPTEST_CASES=1000000 cargo test --release -p weir --test fuzz_config`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use weir::Registry;

/// The files in `conf/` (the seeds), read once.
fn seeds() -> &'static Vec<String> {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("conf/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("seed"))
            .collect()
    })
}

/// Every `key:` the seeds use: the vocabulary of generated files.
fn keys() -> &'static Vec<String> {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut out: Vec<String> = Vec::new();
        for text in seeds() {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                for part in line.split(['{', ',', '-', '[']) {
                    if let Some((k, _)) = part.split_once(':') {
                        let k = k.trim();
                        if !k.is_empty()
                            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !out.iter().any(|o| o == k)
                        {
                            out.push(k.to_string());
                        }
                    }
                }
            }
        }
        out
    })
}

/// Values that are valid somewhere, and values that are invalid everywhere.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "100",
    "65536",
    "99999999999999999999",
    "1.5",
    "-0.0",
    "NaN",
    ".inf",
    "true",
    "false",
    "null",
    "~",
    "\"\"",
    "''",
    "5s",
    "0s",
    "250ms",
    "-1s",
    "10m",
    "7d",
    "999999999999d",
    "5 s",
    "1.5s",
    "s",
    "10MiB",
    "1g",
    "10k",
    "0KiB",
    "5GiB",
    "1048576",
    "-5MiB",
    "99999999999999GiB",
    "2r/s",
    "30r/m",
    "0r/s",
    "1r/h",
    "r/s",
    "10r/s ",
    "\"127.0.0.1:8080\"",
    "\"[::1]:8080\"",
    "\"127.0.0.1:99999\"",
    "\"127.0.0.1\"",
    "\":80\"",
    "\"0.0.0.0/0\"",
    "\"::/0\"",
    "\"10.0.0.0/33\"",
    "\"1.2.3.4/-1\"",
    "/",
    "/a/",
    "\"\"",
    "client_ip",
    "host",
    "uri",
    "header:X-A",
    "cookie:c",
    "header:",
    "[client_ip, host]",
    "round_robin",
    "random",
    "hash",
    "[error, timeout, http_502]",
    "[off]",
    "[bogus]",
    "\"$scheme$host$request_uri\"",
    "\"$nope\"",
    "\"${WEIR_FUZZ}\"",
    "\"${UNSET_VAR}\"",
    "\"${\"",
    "{}",
    "[]",
    "[[]]",
    "{a: 1}",
    "[1, 2]",
    "{ \"200\": 10m }",
    "{ any: 1m }",
    "combined",
    "json",
    "stdout",
    "off",
    "X-Cache-Status",
    "\"\\0\"",
    "\"\\u00e9\"",
    "\"a\\nb\"",
    "!!binary aGVsbG8=",
    "&a 1",
    "*a",
    "<<: {}",
    "\"redis://127.0.0.1:6379/0\"",
    "GET",
    "[GET, HEAD]",
    "[POST]",
];

/// One change to a seed's text.
#[derive(Debug, Clone)]
enum Edit {
    /// Delete a line.
    DeleteLine(Index),
    /// Copy a line after itself.
    DuplicateLine(Index),
    /// Swap two lines.
    SwapLines(Index, Index),
    /// Replace the value after a line's first `: `.
    ReplaceValue(Index, Index),
    /// Indent a line two more spaces, or two fewer.
    Indent(Index, bool),
    /// Insert `key: value` as a new line with the indentation of an existing line.
    InsertPair(Index, Index, Index),
    /// Insert raw bytes at a position.
    InsertText(Index, String),
    /// Cut the text at a position.
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<Index>;
    prop_oneof![
        2 => i().prop_map(Edit::DeleteLine),
        1 => i().prop_map(Edit::DuplicateLine),
        1 => (i(), i()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        4 => (i(), i()).prop_map(|(a, b)| Edit::ReplaceValue(a, b)),
        1 => (i(), any::<bool>()).prop_map(|(a, b)| Edit::Indent(a, b)),
        3 => (i(), i(), i()).prop_map(|(a, b, c)| Edit::InsertPair(a, b, c)),
        1 => (i(), "[ -~\t\n\\x00\\x7f\u{e9}]{1,8}").prop_map(|(a, s)| Edit::InsertText(a, s)),
        1 => i().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match e {
        Edit::DeleteLine(a) => {
            lines.remove(a.index(n));
        }
        Edit::DuplicateLine(a) => {
            let l = lines[a.index(n)].clone();
            lines.insert(a.index(n), l);
        }
        Edit::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
        Edit::ReplaceValue(a, v) => {
            let l = &mut lines[a.index(n)];
            if let Some(at) = l.find(": ") {
                let value = VALUES[v.index(VALUES.len())];
                *l = format!("{}: {value}", &l[..at]);
            }
        }
        Edit::Indent(a, more) => {
            let l = &mut lines[a.index(n)];
            if *more {
                l.insert_str(0, "  ");
            } else if l.starts_with("  ") {
                l.replace_range(..2, "");
            }
        }
        Edit::InsertPair(a, k, v) => {
            let at = a.index(n);
            let indent: String = lines[at].chars().take_while(|c| *c == ' ').collect();
            let key = &keys()[k.index(keys().len())];
            let value = VALUES[v.index(VALUES.len())];
            lines.insert(at, format!("{indent}{key}: {value}"));
        }
        Edit::InsertText(a, s) => {
            let joined = lines.join("\n");
            let at = floor_char(&joined, a.index(joined.len() + 1));
            return format!("{}{s}{}", &joined[..at], &joined[at..]);
        }
        Edit::Truncate(a) => {
            let joined = lines.join("\n");
            let at = floor_char(&joined, a.index(joined.len() + 1));
            return joined[..at].to_string();
        }
    }
    lines.join("\n")
}

fn floor_char(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A mutated seed.
fn mutated() -> impl Strategy<Value = String> {
    (any::<Index>(), prop::collection::vec(edit(), 1..8)).prop_map(|(seed, edits)| {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        text
    })
}

/// A generated YAML tree of weir's keys and [`VALUES`].
fn generated() -> impl Strategy<Value = String> {
    let leaf = (any::<Index>()).prop_map(|v| VALUES[v.index(VALUES.len())].to_string());
    let tree = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((any::<Index>(), inner.clone()), 0..6).prop_map(|pairs| {
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {v}", keys()[k.index(keys().len())]))
                    .collect();
                format!("{{{}}}", body.join(", "))
            }),
            prop::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(", "))),
        ]
    });
    let section = prop::sample::select(vec![
        "server",
        "admin",
        "limits",
        "upstreams",
        "caches",
        "routes",
        "bogus",
    ]);
    prop::collection::vec((section, tree), 0..7).prop_map(|sections| {
        sections
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    })
}

// ---------------------------------------------------------------------------------------
// Keeping a load's side effects inside the temp dir
// ---------------------------------------------------------------------------------------

/// Runs `check` on the cases of `strategy` with one temp directory (removed at the end)
/// that every cache zone, state dir and temp dir of the loaded files points to.
fn run<S: Strategy<Value = String>>(
    strategy: S,
    config: ProptestConfig,
    check: fn(&str, &Path) -> Result<(), TestCaseError>,
) {
    let sandbox = tempfile::tempdir().expect("temp dir");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        source_file: Some(file!()),
        ..config
    });
    let result = runner.run(&strategy, |text| check(&text, sandbox.path()));
    drop(sandbox);
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn get_mut<'a>(m: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    m.as_mapping_mut()?.get_mut(key)
}

fn each_entry(section: Option<&mut Value>, mut f: impl FnMut(&mut Mapping)) {
    if let Some(Value::Mapping(map)) = section {
        for (_, v) in map.iter_mut() {
            if let Value::Mapping(entry) = v {
                f(entry);
            }
        }
    }
}

/// `host:port` with a name in place of `host` becomes `localhost:port`.
fn no_dns(addr: &mut Value) {
    let Value::String(s) = addr else { return };
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return;
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            *s = format!("localhost:{port}");
        }
    }
}

/// The text to load: `text` itself, or when it would touch anything outside the sandbox,
/// the same document with those values pointed into it.
fn sandboxed(text: &str, sandbox: &Path) -> String {
    let Ok(mut root) = serde_yaml_ng::from_str::<Value>(text) else {
        return text.to_string();
    };
    let before = root.clone();
    let dir = sandbox.display().to_string();
    let path = Value::String(format!("{dir}/cache"));
    each_entry(get_mut(&mut root, "caches"), |zone| {
        if zone.contains_key("path") {
            zone.insert("path".into(), path.clone());
        }
    });
    if let Some(Value::Mapping(server)) = get_mut(&mut root, "server") {
        for key in ["state_dir", "temp_dir"] {
            if server.contains_key(key) {
                server.insert(key.into(), Value::String(format!("{dir}/{key}")));
            }
        }
    }
    each_entry(get_mut(&mut root, "limits"), |zone| {
        if zone.contains_key("store") {
            zone.insert("store".into(), "redis://127.0.0.1:1/0".into());
        }
    });
    each_entry(get_mut(&mut root, "upstreams"), |u| {
        let Some(Value::Sequence(tiers)) = u.get_mut("tiers") else {
            return;
        };
        for tier in tiers {
            let Some(Value::Sequence(servers)) = get_mut(tier, "servers") else {
                continue;
            };
            for s in servers {
                match s {
                    Value::String(_) => no_dns(s),
                    Value::Mapping(m) => {
                        if let Some(a) = m.get_mut("addr") {
                            no_dns(a);
                        }
                    }
                    _ => {}
                }
            }
        }
    });
    if root == before {
        text.to_string()
    } else {
        serde_yaml_ng::to_string(&root).unwrap_or_default()
    }
}

/// Errors that are about the whole file, so have no path.
fn whole_file(message: &str) -> bool {
    message.starts_with("invalid YAML")
        || message.starts_with("the file is empty")
        || message.starts_with("the file must be a mapping")
}

fn env(name: &str) -> Option<String> {
    (name == "WEIR_FUZZ").then(|| "fuzz".to_string())
}

/// Loads `text` as `weir -t` does; every error must carry a path.
fn check(text: &str, sandbox: &Path) -> Result<(), TestCaseError> {
    let text = sandboxed(text, sandbox);
    let registry = Registry::builtin();
    if let Err(errors) = weir::config::parse(&text, &registry, &env, None) {
        prop_assert!(!errors.0.is_empty(), "an error without errors");
        for e in &errors.0 {
            prop_assert!(
                !e.path.is_empty() || whole_file(&e.message),
                "an error without a YAML path: {e}\n--- file:\n{text}"
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_config_mutated_seeds() {
    run(mutated(), ProptestConfig::default(), check);
}

#[test]
fn fuzz_config_generated_files() {
    run(generated(), ProptestConfig::default(), check);
}

/// The real `weir -t`: exit 0 with `ok`, or exit 1 with one `path: message` line per error;
/// never a crash. Each case starts a process: a tenth of the cases of the other targets.
#[test]
fn fuzz_config_check_binary() {
    let config = ProptestConfig {
        cases: (ProptestConfig::default().cases / 10).max(8),
        ..ProptestConfig::default()
    };
    run(prop_oneof![mutated(), generated()], config, check_binary);
}

fn check_binary(text: &str, sandbox: &Path) -> Result<(), TestCaseError> {
    let file = sandbox.join("weir.yaml");
    std::fs::write(&file, sandboxed(text, sandbox)).expect("write");
    let out = std::process::Command::new(common::weir_bin())
        .arg("-t")
        .arg("-c")
        .arg(&file)
        .env("WEIR_FUZZ", "fuzz")
        .output()
        .expect("run weir -t");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => prop_assert_eq!(stdout.trim(), "ok"),
        Some(1) => {
            prop_assert!(!stdout.trim().is_empty(), "exit 1 without errors: {stderr}");
            prop_assert!(stderr.contains("error(s)"), "{stderr}");
        }
        other => prop_assert!(
            false,
            "weir -t exited {other:?}:\n{stderr}\n--- file:\n{text}"
        ),
    }
    Ok(())
}
