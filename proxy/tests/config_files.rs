//! `weir -t` on real files: every example in conf/ is valid, and every invalid fixture gives
//! exactly the error lines stored next to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::check_config;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_conf_example_is_valid() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let files = yaml_files(&conf);
    assert!(
        files.iter().any(|f| f.ends_with("weir.yaml")),
        "conf/weir.yaml is missing"
    );
    for f in files {
        // Files for the example build are checked by the example crate's tests.
        if f.file_name().unwrap().to_string_lossy().contains("example") {
            continue;
        }
        let (ok, out) = check_config(&f);
        assert!(ok, "{} is invalid:\n{out}", f.display());
        assert_eq!(out, "ok\n");
    }
}

#[test]
fn invalid_fixtures_report_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let files = yaml_files(&dir);
    assert!(files.len() >= 5);
    for f in files {
        let expected = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", f.display()));
        let (ok, out) = check_config(&f);
        assert!(!ok, "{} should be invalid", f.display());
        assert_eq!(out, expected, "errors of {}", f.display());
    }
}

#[test]
fn several_errors_are_reported_at_once() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid/many-errors.yaml");
    let (_, out) = check_config(&f);
    assert!(out.lines().count() >= 5, "{out}");
}

#[test]
fn variables_are_interpolated() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("env.yaml");
    std::fs::write(
        &f,
        "server: {listen: ['127.0.0.1:${WEIR_T_PORT}']}\n\
         upstreams: {o: {tiers: [{name: a, servers: ['127.0.0.1:1']}]}}\n\
         routes: [{upstream: o}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::weir_bin())
        .args(["-t", "-c"])
        .arg(&f)
        .env("WEIR_T_PORT", "8080")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, out) = check_config(Path::new("/nonexistent/weir.yaml"));
    assert!(!ok);
    assert!(
        out.starts_with("cannot read /nonexistent/weir.yaml:"),
        "{out}"
    );
}

#[test]
fn an_unresolvable_upstream_name_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dns.yaml");
    std::fs::write(
        &f,
        "server: {listen: ['127.0.0.1:8080']}\n\
         upstreams: {o: {tiers: [{name: a, servers: ['localhost:9001', 'no-such-host.invalid:80']}]}}\n\
         routes: [{upstream: o}]\n",
    )
    .unwrap();
    let (ok, out) = check_config(&f);
    assert!(!ok);
    assert!(
        out.starts_with("upstreams.o.tiers[0].servers[1]: cannot resolve `no-such-host.invalid`: "),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "localhost resolves: {out}");
}
