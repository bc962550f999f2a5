//! A small Chrome DevTools protocol client for the browser tests: starts Debian's headless
//! `chromium` (installed with apt when missing and running as root), attaches to its page
//! over the DevTools websocket, sends commands and keeps every event for the test to check
//! (network requests, console and CSP messages).
//!
//! A full client crate (chromiumoxide, headless_chrome) would bring thousands of generated
//! protocol types or its own browser fetcher; the test needs a dozen commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
#![allow(dead_code)]

use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// The chromium binary: on PATH, or installed with `apt-get install chromium` as root.
pub fn chromium_bin() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|name| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
    };
    if let Some(found) = find() {
        return found;
    }
    assert!(
        super::common::is_root(),
        "chromium is not installed and this test is not root: install it with \
         `apt-get install chromium` (the dashboard test needs a real browser)"
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium")
        .stdin(Stdio::null())
        .status()
        .expect("run apt-get");
    assert!(
        status.success(),
        "`apt-get install chromium` failed ({status})"
    );
    find().expect("chromium installed but not found on PATH")
}

/// The chromium process, killed when dropped (also when the start panics half-way).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless chromium with one page attached, closed on drop.
pub struct Browser {
    child: Process,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Every event received so far (`{"method", "params"}`).
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromium (its own profile, no sandbox: the tests run as root in CI) and
    /// attaches to its first page with the Page, Runtime, Network and Log domains on.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(chromium_bin())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--hide-scrollbars",
                "--mute-audio",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Process)
            .expect("spawn chromium");
        // Chromium writes its port and the browser's websocket path here once it listens.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            let text = std::fs::read_to_string(&active).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break (port.trim().to_string(), path.trim().to_string());
            }
            assert!(
                Instant::now() < deadline,
                "chromium never wrote DevToolsActivePort"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect DevTools");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools websocket");
        // Short reads from here on: waiting for an event polls the page in between.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        };
        let targets = b.browser_call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone())
            .expect("a page target");
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page", "Runtime", "Network", "Log"] {
            b.call(&format!("{domain}.enable"), json!({}));
        }
        b
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            if let Some(m) = self.read() {
                if m["id"] == id {
                    if let Some(e) = m.get("error") {
                        panic!("{method} failed: {e}");
                    }
                    return m["result"].clone();
                }
            }
        }
    }

    /// One message, or `None` after the read timeout; events are kept.
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("DevTools JSON");
                if v.get("method").is_some() {
                    self.events.push(v.clone());
                }
                Some(v)
            }
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("DevTools websocket: {e}"),
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    /// Sends a command to the page and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Reads events until one named `method` arrives after the `skip` already kept.
    pub fn wait_event(&mut self, method: &str, skip: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .events
                .iter()
                .skip(skip)
                .find(|e| e["method"] == method)
            {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no {method} event");
            self.read();
        }
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is `true` (up to `timeout`), reading events meanwhile.
    pub fn wait_true(&mut self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            self.read();
        }
    }

    /// Navigates to `url` and waits for its load event.
    pub fn open(&mut self, url: &str) {
        let skip = self.events.len();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired", skip, Duration::from_secs(30));
    }

    /// Clicks the middle of the element `selector` with the mouse, as a user would.
    pub fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            s = json!(selector)
        ));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Clicks into the field `selector`, selects what it holds and types `text` over it.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.eval(&format!(
            "document.querySelector({}).select()",
            json!(selector)
        ));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// The page as a PNG, `width` CSS pixels wide and as tall as the document.
    pub fn screenshot(&mut self, width: u32, mobile: bool) -> Vec<u8> {
        use base64::Engine;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let height = self
            .eval("document.documentElement.scrollHeight")
            .as_u64()
            .unwrap();
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .expect("screenshot base64")
    }
}

impl Drop for Browser {
    /// Asks chromium to close (so its helper processes go with it), then `Process` kills
    /// what is left.
    fn drop(&mut self) {
        let close = json!({"id": self.next_id, "method": "Browser.close"});
        if self.ws.send(Message::text(close.to_string())).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
