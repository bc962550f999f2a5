//! The example build end to end: `weir-example` validates the conf/ files written for it and
//! runs the `request_id` plugin on real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_weir-example");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /__echo HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn example_conf_files_are_valid_for_the_example_build() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.contains("example") && name.ends_with(".yaml")) {
            continue;
        }
        let out = Command::new(BIN)
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        checked += 1;
    }
    assert!(checked >= 1, "no conf/*example*.yaml file");
}

#[test]
fn request_id_is_added_upstream_and_returned() {
    let origin = weir_origin::Origin::start("o");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("weir-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("weir.yaml");
    std::fs::write(
        &yaml,
        format!(
            "server: {{listen: ['127.0.0.1:{port}'], threads: 1, access_log: {{path: 'off'}}}}\n\
             upstreams: {{o: {{tiers: [{{name: t, servers: ['{}']}}]}}}}\n\
             routes: [{{upstream: o, plugins: [{{request_id: {{header: X-Trace}}}}]}}]\n",
            origin.addr()
        ),
    )
    .unwrap();
    let _weir = Running(
        Command::new(BIN)
            .arg("-c")
            .arg(&yaml)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "weir-example did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let resp = get(port, "");
    let id = resp
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-trace: ")
                .map(str::to_string)
        })
        .expect("X-Trace on the response");
    assert_eq!(id.len(), 16);
    assert!(
        resp.contains(&format!("\"x-trace\":[\"{id}\"]")),
        "the upstream saw the same id: {resp}"
    );

    // A client-sent id is kept.
    let resp = get(port, "X-Trace: abc123\r\n");
    assert!(
        resp.to_ascii_lowercase().contains("x-trace: abc123"),
        "{resp}"
    );
    assert!(resp.contains("\"x-trace\":[\"abc123\"]"), "{resp}");
    let _ = std::fs::remove_dir_all(dir);
}
