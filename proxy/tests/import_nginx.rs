//! `weir import nginx` end to end: the checked-in example (conf/examples/image-host) is
//! what the command writes today and `weir -t` accepts it; the load-test nginx configs
//! import without a directive left and check; the command line's errors, `-o` and
//! `--strict`; and a failover differential against the real nginx, where weir runs the
//! import of nginx's own config (an upstream with a backup, then `error_page … = @origin`
//! chains), so that both answer from the same server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::{
    check_config, free_port, import_nginx, nginx_conf_with, raw_request, status_of, weir_bin,
    Nginx, Origin, Weir,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `weir import nginx ARGS…` → (exit success, stdout, stderr).
fn import(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(weir_bin())
        .args(["import", "nginx"])
        .args(args)
        .output()
        .expect("run weir import nginx");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed certificate and key in `dir`: (cert path, key path).
fn cert(dir: &Path) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn the_example_is_what_the_command_writes_and_weir_accepts_it() {
    let example = repo().join("conf/examples/image-host");
    let conf = example.join("nginx.conf");
    let (ok, yaml, stderr) = import(&[conf.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let checked_in = std::fs::read_to_string(example.join("weir.yaml")).unwrap();
    assert!(
        yaml == checked_in,
        "conf/examples/image-host/weir.yaml is not what `weir import nginx` writes now; \
         regenerate it:\n  weir import nginx conf/examples/image-host/nginx.conf -o conf/examples/image-host/weir.yaml\n\
         --- now:\n{yaml}"
    );
    assert!(
        stderr.contains("3 not translated"),
        "the example's report changed: {stderr}"
    );
    // --strict fails on the example: it has directives weir does not translate.
    let (ok, _, stderr) = import(&["--strict", conf.to_str().unwrap()]);
    assert!(!ok, "--strict passed: {stderr}");
    assert!(
        stderr.contains("--strict: 3 directive(s) were not translated"),
        "{stderr}"
    );

    // `weir -t` accepts it, with the machine paths (certificate, cache, log) moved into a
    // temp dir.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert(dir.path());
    let d = dir.path().display().to_string();
    let yaml = yaml
        .replace("/etc/nginx/certs/img.example.com.pem", &cert)
        .replace("/etc/nginx/certs/img.example.com.key", &key)
        .replace("/var/cache/nginx/images", &format!("{d}/cache"))
        .replace("/var/log/nginx/access.log", &format!("{d}/access.log"));
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, out) = check_config(&path);
    assert!(ok && out.trim() == "ok", "weir -t: {out}");
}

#[test]
fn the_load_test_nginx_configs_import_whole_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert(dir.path());
    let d = dir.path().display().to_string();
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("loadtest/nginx")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("conf") {
            continue;
        }
        seen += 1;
        // Filled in as loadtest/bench/run.sh does.
        let conf = std::fs::read_to_string(&path)
            .unwrap()
            .replace("@USER_LINE@", "")
            .replace("@WORKERS@", "2")
            .replace("@RUN_DIR@", &d)
            .replace("@LISTEN@", "127.0.0.1:18080")
            .replace("@ORIGIN@", "127.0.0.1:19001")
            .replace("@ORIGIN2@", "127.0.0.1:19002")
            .replace("@ORIGIN3@", "127.0.0.1:19003")
            .replace("@CERT@", &cert)
            .replace("@KEY@", &key);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let sub = dir.path().join(name.trim_end_matches(".conf"));
        std::fs::create_dir_all(&sub).unwrap();
        // Every directive translated or without effect (--strict).
        let yaml = import_nginx(&conf, &sub);
        let out = sub.join("weir.yaml");
        std::fs::write(&out, &yaml).unwrap();
        let (ok, text) = check_config(&out);
        assert!(ok, "{name}: weir -t: {text}\n{yaml}");
    }
    assert_eq!(seen, 5, "loadtest/nginx/*.conf");
}

#[test]
fn command_line_errors_output_file_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, "http {\n  server {\n    listen 80\n  }\n}\n").unwrap();
    let (ok, stdout, stderr) = import(&[conf.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("weir import: nginx.conf:4: unexpected \"}\""),
        "{stderr}"
    );

    std::fs::write(
        &conf,
        "http {\n  server {\n    listen 127.0.0.1:8080;\n    bogus on;\n  }\n}\n",
    )
    .unwrap();
    let (ok, _, stderr) = import(&[conf.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("nginx.conf:4: unknown directive \"bogus\""),
        "{stderr}"
    );

    std::fs::write(
        &conf,
        "http {\n  server {\n    listen 127.0.0.1:8080;\n    location / { proxy_pass http://127.0.0.1:9001; }\n  }\n}\n",
    )
    .unwrap();
    let out = dir.path().join("weir.yaml");
    let (ok, stdout, stderr) = import(&[
        "--strict",
        "-o",
        out.to_str().unwrap(),
        conf.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("0 not translated"), "{stderr}");
    let yaml = std::fs::read_to_string(&out).unwrap();
    assert!(yaml.contains("# nginx.conf:4 location / {\n"), "{yaml}");
    let (ok, text) = check_config(&out);
    assert!(ok, "{text}");

    std::fs::write(
        &conf,
        "http {\n  server {\n    listen 127.0.0.1:8080;\n    gzip on;\n    location / { proxy_pass http://127.0.0.1:9001; }\n  }\n}\n",
    )
    .unwrap();
    let (ok, stdout, _) = import(&[conf.to_str().unwrap()]);
    assert!(
        ok,
        "without --strict a left directive is reported, not fatal"
    );
    assert!(stdout.contains("#   nginx.conf:4 gzip on;\n"), "{stdout}");
    let (ok, _, stderr) = import(&["--strict", conf.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("--strict: 1 directive(s)"), "{stderr}");
}

/// Which origin answered `GET path`, and the status.
fn who(port: u16, path: &str) -> (u16, String) {
    let resp = raw_request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: img.test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let origin = resp
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-origin")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "-".into());
    (status_of(&resp), origin)
}

#[test]
fn failover_through_backup_and_error_page_tiers_matches_nginx() {
    // Which of edge, backup, origin, last are up, and who must answer.
    let cases: [([bool; 4], &str); 4] = [
        ([true, true, true, true], "edge"),
        ([false, true, true, true], "backup"),
        ([false, false, true, true], "origin"),
        ([false, false, false, true], "last"),
    ];
    for (up, want) in cases {
        let names = ["edge", "backup", "origin", "last"];
        let origins: Vec<Option<Origin>> = names
            .iter()
            .zip(up)
            .map(|(n, u)| u.then(|| Origin::start(n)))
            .collect();
        let addrs: Vec<String> = origins
            .iter()
            .map(|o| match o {
                Some(o) => o.addr().to_string(),
                None => format!("127.0.0.1:{}", free_port()),
            })
            .collect();
        let http = format!(
            "upstream images {{ server {}; server {} backup; }}\n\
             upstream origin {{ server {}; }}\nupstream last {{ server {}; }}",
            addrs[0], addrs[1], addrs[2], addrs[3]
        );
        let server = "recursive_error_pages on;\n\
            location @origin { proxy_pass http://origin; proxy_set_header Host $host;\n\
              error_page 502 504 = @last; }\n\
            location @last { proxy_pass http://last; proxy_set_header Host $host; }";
        let location = "proxy_pass http://images; proxy_set_header Host $host;\n\
            proxy_next_upstream error timeout;\n\
            error_page 502 504 = @origin;";
        let nginx = Nginx::start_with(&http, server, location);
        let n = who(nginx.port, "/a.jpg");
        drop(nginx);

        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = nginx_conf_with(&http, server, location, port, dir.path());
        let yaml = import_nginx(&conf, dir.path());
        let weir = Weir::start(&yaml, port);
        let w = who(weir.port, "/a.jpg");
        assert_eq!(n, (200, want.to_string()), "nginx itself, up {up:?}");
        assert_eq!(w, n, "weir differs from nginx with up {up:?}\n{yaml}");
    }
}
