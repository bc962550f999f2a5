//! Test harness: the real `weir` binary on a free port, in a temp dir of its own, killed on
//! drop; helpers for raw HTTP and config files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use weir_origin::Origin;

/// A port nobody listens on right now, below Linux's ephemeral range (32768–60999): a port
/// from that range can be taken as the local port of any outgoing connection between this
/// call and the server's bind, which made parallel tests flaky.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread processes apart (pid), and calls within one apart (a counter).
    let base = std::process::id().wrapping_mul(7919);
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base.wrapping_add(n.wrapping_mul(104_729)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port()
}

/// A running weir process.
pub struct Weir {
    child: Child,
    /// Its first listener's port.
    pub port: u16,
    /// Its temp dir (config, logs).
    pub dir: tempfile::TempDir,
}

/// The path of the weir binary under test.
pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// One upstream `o` pointing at `origin`, one catch-all route, listening on `port`.
pub fn simple_config(
    port: u16,
    origin: SocketAddr,
    extra_server: &str,
    upstream_extra: &str,
    plugins: &str,
) -> String {
    format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 5s\n{extra_server}\
         upstreams:\n  o:\n    tiers: [{{name: origin, servers: [\"{origin}\"]}}]\n{upstream_extra}\
         routes:\n  - name: all\n    upstream: o\n    plugins: [{plugins}]\n"
    )
}

impl Weir {
    /// Starts weir with `yaml` (its first `listen` must be `127.0.0.1:{port}`) and waits until
    /// `port` accepts connections.
    pub fn start(yaml: &str, port: u16) -> Weir {
        Weir::start_with_env(yaml, port, &[])
    }

    /// As [`Weir::start`], with extra environment variables.
    pub fn start_with_env(yaml: &str, port: u16, env: &[(&str, &str)]) -> Weir {
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = with_state_dir(yaml, &dir.path().join("state"));
        std::fs::write(dir.path().join("weir.yaml"), yaml).unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(weir_bin());
        cmd.arg("-c")
            .arg(dir.path().join("weir.yaml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn weir");
        let mut weir = Weir { child, port, dir };
        weir.wait_ready();
        weir
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weir exited early ({status}); stderr:\n{}", self.stderr());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "weir did not listen on {} in time; stderr:\n{}",
            self.port,
            self.stderr()
        );
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file path (rewrite it, then [`Weir::signal`] `HUP`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("weir.yaml")
    }

    /// Everything weir wrote to stderr (its log) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Everything weir wrote to stdout (the access log by default) so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits until stderr contains `needle` (up to 10 s); true when it did.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gives a test config its own `server.state_dir` (unless it names one), so parallel weirs
/// never share the default /var/lib/weir state file.
pub fn with_state_dir(yaml: &str, dir: &Path) -> String {
    if yaml.contains("state_dir") {
        return yaml.to_string();
    }
    let dir = dir.display();
    if yaml.contains("server:\n") {
        yaml.replacen("server:\n", &format!("server:\n  state_dir: {dir}\n"), 1)
    } else {
        yaml.replacen("server: {", &format!("server: {{state_dir: {dir}, "), 1)
    }
}

/// Sends `raw` bytes on a new connection and returns everything read until the server
/// closes or 5 s pass.
pub fn raw_request(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // A complete response with Content-Length: stop early.
                if let Some(text) = complete_response(&out) {
                    return text;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn complete_response(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    let head_end = text.find("\r\n\r\n")?;
    let len = text[..head_end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })?
        .parse::<usize>()
        .ok()?;
    (buf.len() >= head_end + 4 + len).then(|| text.into_owned())
}

/// The status code of a raw HTTP response.
pub fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An async client that does not follow redirects and has no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Runs `weir -t -c path` and returns (exit success, stdout).
pub fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(weir_bin())
        .arg("-t")
        .arg("-c")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits (up to 10 s) until `addr` accepts connections: weir's other listeners may come up
/// a moment after the first one.
pub fn wait_listening(addr: (&str, u16)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr:?} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when the tests run as root (they may then install what they need with apt).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The nginx binary for the differential tests: found on PATH or in /usr/sbin, or
/// installed with `apt-get install nginx-light` when running as root.
pub fn nginx_bin() -> &'static PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(found) = find_nginx() {
            return found;
        }
        assert!(
            is_root(),
            "nginx is not installed and this test is not root: install it with \
             `apt-get install nginx-light` (the differential tests need the real nginx)"
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light")
            .stdin(Stdio::null())
            .status()
            .expect("run apt-get");
        assert!(
            status.success(),
            "`apt-get install nginx-light` failed ({status}): the differential tests need the \
             real nginx"
        );
        find_nginx().expect("nginx-light installed but no nginx binary found")
    })
}

fn find_nginx() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nginx"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
}

/// The nginx.conf [`Nginx::start`] runs: `http` (zones, caches …) in its `http {}` block and
/// one server on `port` whose only `location /` holds `location`; `{dir}` in either is
/// replaced by `dir`, where nginx keeps its pid, logs and temp files.
pub fn nginx_conf(http: &str, location: &str, port: u16, dir: &Path) -> String {
    nginx_conf_with(http, "", location, port, dir)
}

/// [`nginx_conf`] with `server` (named locations …) in the server block, before `location /`.
pub fn nginx_conf_with(http: &str, server: &str, location: &str, port: u16, dir: &Path) -> String {
    let d = dir.display().to_string();
    let user = if is_root() { "user root;\n" } else { "" };
    let (http, location) = (http.replace("{dir}", &d), location.replace("{dir}", &d));
    let server = server.replace("{dir}", &d);
    format!(
        "{user}daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           {http}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             {server}\n\
             location / {{\n\
               {location}\n\
             }}\n\
           }}\n\
         }}\n"
    )
}

/// Whether the differential tests run weir on the YAML `weir import nginx` makes of the
/// very nginx.conf nginx runs (the default), or on their hand-written YAML
/// (`WEIR_DIFF_CONFIG=handwritten`).
pub fn use_imported_config() -> bool {
    std::env::var("WEIR_DIFF_CONFIG").map_or(true, |v| v != "handwritten")
}

/// Runs `weir import nginx --strict` on `conf` (written to `dir/nginx.conf`) and returns the
/// YAML; panics with weir's report when the import fails or leaves a directive behind.
pub fn import_nginx(conf: &str, dir: &Path) -> String {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(weir_bin())
        .args(["import", "nginx", "--strict"])
        .arg(&path)
        .output()
        .expect("run weir import nginx");
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weir import nginx --strict failed:\n{}\n{yaml}\nnginx.conf:\n{conf}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml
}

/// A real nginx (one process, `master_process off`, everything under its own temp dir) on
/// a free port, killed on drop.
pub struct Nginx {
    child: Child,
    /// Its listener's port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx whose `http {}` block holds `http` (zones, caches …) and one server on
    /// a free port whose only `location /` holds `location`. `{dir}` in either is replaced
    /// by nginx's temp dir.
    pub fn start(http: &str, location: &str) -> Nginx {
        Nginx::start_with(http, "", location)
    }

    /// As [`Nginx::start`], with `server` (named locations …) in the server block.
    pub fn start_with(http: &str, server: &str, location: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = nginx_conf_with(http, server, location, port, dir.path());
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_ready();
        nginx
    }

    /// What nginx wrote to stderr and its error log.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited early ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "nginx did not listen on {} in time:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
