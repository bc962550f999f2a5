//! The dashboard (`GET /` on the admin listener) in a real headless Chromium, against the
//! real binary with real traffic: cache HITs, a server the health checks took down, a
//! registered server, a rejected request and 13 earlier days of traffic in the state file.
//! Checks the rendered DOM (server states, cache and limit numbers, chart bars, rates), a
//! purge and a removal driven through the page with the token typed in, that the page
//! loads nothing from anywhere but the admin listener (the browser's request log, CSP
//! violation events and console), that it fits a phone's width, and writes screenshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod cdp;
mod common;

use cdp::Browser;
use common::{free_port, raw_request, status_of, wait_listening, Origin, Weir};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "dash-t0ken";

/// `YYYY-MM-DD` of a day number since 1970-01-01 (the civil calendar).
fn date_of(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// One GET through a listener; the raw response.
fn get(port: u16, path: &str, host: &str) -> String {
    raw_request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The JSON body of an admin GET.
fn admin_json(admin: u16, path: &str) -> Value {
    let r = get(admin, path, "127.0.0.1");
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {r}"))
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The weir under test: an edge origin, a dead edge server, a backup tier for registered
/// servers only, a cache zone and a one-request-a-minute limit zone.
struct Setup {
    weir: Weir,
    admin: u16,
    origin: Origin,
    spare: Origin,
    dead: String,
    _dead_socket: socket2::Socket,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    /// The 13 seeded days (date, requests).
    seeded: Vec<(String, u64)>,
}

fn start() -> Setup {
    let (origin, spare) = (Origin::start("edge-a"), Origin::start("spare"));
    let dead_socket = {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        s.bind(&any.into()).unwrap();
        s
    };
    let dead = format!(
        "127.0.0.1:{}",
        dead_socket
            .local_addr()
            .unwrap()
            .as_socket()
            .unwrap()
            .port()
    );
    let (state, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let today = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    const MIB: u64 = 1024 * 1024;
    let seeded: Vec<(String, u64)> = (1..=13)
        .map(|ago| (date_of(today - ago), 1000 + 150 * (ago as u64 % 5)))
        .rev()
        .collect();
    let days: Vec<Value> = seeded
        .iter()
        .enumerate()
        .map(|(i, (date, requests))| {
            json!({"date": date, "requests": requests,
                   "bytes_to_clients": (40 + 5 * i as u64) * MIB,
                   "bytes_from_upstreams": (12 + (i as u64 % 4) * 3) * MIB,
                   "cache_hits": requests * 7 / 10})
        })
        .collect();
    std::fs::write(
        state.path().join("state.json"),
        json!({"traffic": days, "registrations": {}}).to_string(),
    )
    .unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n  state_dir: {state}\n\
         admin: {{ listen: \"127.0.0.1:{admin}\", token: \"{TOKEN}\" }}\n\
         limits:\n  strict: {{ key: client_ip, rate: 1r/m }}\n\
         caches:\n  img: {{ path: {cache}, max_size: 64MiB, valid: {{ \"200\": 10m }} }}\n\
         upstreams:\n  img:\n    tiers:\n\
         \x20     - {{ name: edge, servers: [\"{a}\", \"{dead}\"] }}\n\
         \x20     - {{ name: backup, servers: [] }}\n\
         \x20   health_check: {{ path: /, interval: 200ms, timeout: 1s, rise: 1, fall: 1 }}\n\
         routes:\n\
         \x20 - {{ name: limited, match: {{ path_prefix: /limited/ }}, upstream: img, plugins: [{{ limit_req: {{ zone: strict }} }}] }}\n\
         \x20 - {{ name: images, upstream: img, plugins: [{{ cache: {{ zone: img }} }}] }}\n",
        state = state.path().display(),
        cache = cache.path().display(),
        a = origin.addr(),
    );
    let weir = Weir::start(&yaml, port);
    wait_listening(("127.0.0.1", admin));
    Setup {
        weir,
        admin,
        origin,
        spare,
        dead,
        _dead_socket: dead_socket,
        _dirs: (state, cache),
        seeded,
    }
}

/// A MISS then a HIT of a 20 KiB object, a request passed and one rejected by `strict`, the
/// dead server down, the spare origin registered in `backup`.
fn make_traffic(s: &Setup) {
    let port = s.weir.port;
    let miss = get(port, "/a.jpg?size=20k", "img.test");
    let hit = get(port, "/a.jpg?size=20k", "img.test");
    assert_eq!(header(&miss, "x-cache-status"), Some("MISS"), "{miss}");
    assert_eq!(header(&hit, "x-cache-status"), Some("HIT"), "{hit}");
    assert_eq!(status_of(&get(port, "/limited/x", "img.test")), 200);
    assert_eq!(status_of(&get(port, "/limited/x", "img.test")), 503);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let servers = admin_json(s.admin, "/upstreams/img");
        let dead = servers
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["addr"] == s.dead.as_str());
        if dead.is_some_and(|d| d["state"] == "down") {
            break;
        }
        assert!(Instant::now() < deadline, "{} never went down", s.dead);
        std::thread::sleep(Duration::from_millis(50));
    }
    let body =
        json!({"tier": "backup", "addr": s.spare.addr().to_string(), "ttl": "20m"}).to_string();
    let r = raw_request(
        s.admin,
        format!(
            "POST /upstreams/img/servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&r), 200, "{r}");
}

#[test]
fn the_dashboard_shows_the_numbers_and_purges_through_the_page() {
    let s = start();
    make_traffic(&s);
    let origin = format!("http://127.0.0.1:{}", s.admin);

    // Without a browser: the first view is rendered on the server, with the headers.
    let plain = get(s.admin, "/", "127.0.0.1");
    assert_eq!(status_of(&plain), 200, "{plain}");
    let csp = header(&plain, "content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&plain, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&plain, "cache-control"), Some("no-store"));
    assert!(
        plain.contains(&format!("data-server=\"{}\" data-state=\"down\"", s.dead)),
        "{plain}"
    );
    // Kept for the HTML validator (scripts/lint-dashboard.sh).
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let html = &plain[plain.find("\r\n\r\n").unwrap() + 4..];
    std::fs::write(dir.join("dashboard.html"), html).unwrap();
    for asset in ["/dashboard.js", "/dashboard.css", "/favicon.svg"] {
        let r = get(s.admin, asset, "127.0.0.1");
        assert_eq!(status_of(&r), 200, "{asset}");
        assert!(header(&r, "content-security-policy").is_some(), "{asset}");
    }

    let mut b = Browser::start();
    // Records CSP violations from the page's first moment.
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.__csp = []; document.addEventListener('securitypolicyviolation', \
                          (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"}),
    );
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    b.open(&format!("{origin}/?refresh=1"));
    // Two refreshes in place: rates need two readings.
    b.wait_true(
        "document.querySelector('output[data-rate-of=\"requests\"]').textContent.endsWith('/s')",
        Duration::from_secs(15),
    );

    // Servers: tier order, states, the reason the health check gave, the registration.
    let rows = b.eval(
        "Array.from(document.querySelectorAll('#upstreams tr[data-server]')).map((r) => ({
           addr: r.dataset.server, state: r.dataset.state, registered: r.dataset.registered,
           tier: r.cells[0].textContent, why: r.querySelector('.reason').textContent,
           ttl: r.cells[5].textContent }))",
    );
    let rows = rows.as_array().unwrap();
    let addrs: Vec<&str> = rows.iter().map(|r| r["addr"].as_str().unwrap()).collect();
    let spare = s.spare.addr().to_string();
    assert_eq!(
        addrs,
        [s.origin.addr().to_string(), s.dead.clone(), spare.clone()],
        "{rows:?}"
    );
    assert_eq!(rows[0]["state"], "up", "{rows:?}");
    assert_eq!(rows[1]["state"], "down", "{rows:?}");
    assert!(
        rows[1]["why"].as_str().unwrap().contains("failed check"),
        "{rows:?}"
    );
    assert_eq!(
        (rows[2]["tier"].as_str(), rows[2]["registered"].as_str()),
        (Some("backup"), Some("true"))
    );
    assert!(
        rows[2]["ttl"].as_str().unwrap().ends_with(" left"),
        "{rows:?}"
    );

    // The cache zone: one object, one HIT of two, the HIT's 20 KiB saved; the limit zone.
    let cache = b.eval(
        "(() => { const r = document.querySelector('#caches tr[data-zone=\"img\"]');
           return { objects: r.querySelector('[data-counter=\"objects:img\"]').value,
                    ratio: r.querySelector('.ratio').textContent,
                    saved: r.querySelector('[data-counter=\"saved:img\"]').value,
                    disk: r.querySelector('.disk').textContent }; })()",
    );
    assert_eq!(cache["objects"], "1", "{cache}");
    assert_eq!(cache["ratio"], "50.0%", "{cache}");
    assert_eq!(cache["saved"], "20480", "{cache}");
    assert!(
        cache["disk"].as_str().unwrap().contains("of 64 MiB"),
        "{cache}"
    );
    let limit = b.eval(
        "['passed', 'rejected'].map((r) => document.querySelector(`[data-counter=\"limit:strict:${r}\"]`).value)",
    );
    assert_eq!(limit, json!(["1", "1"]));

    // The chart: 14 days, today last; every bar is what /traffic says.
    let traffic = admin_json(s.admin, "/traffic");
    let days = traffic["days"].as_array().unwrap();
    assert_eq!(days.len(), 14, "{traffic}");
    let bars = b.eval(
        "Array.from(document.querySelectorAll('#chart-requests g.day')).map((g) =>
           [g.dataset.date, Number(g.querySelector('rect.requests').dataset.value),
            Number(g.querySelector('rect.hits').dataset.value),
            g.querySelector('title').textContent])",
    );
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), 14, "{bars:?}");
    for (bar, day) in bars.iter().zip(days) {
        assert_eq!(bar[0], day["date"], "{bar:?}");
        assert_eq!(bar[1], day["requests"], "{bar:?}");
        assert_eq!(bar[2], day["cache_hits"], "{bar:?}");
    }
    assert_eq!(bars[0][0].as_str(), Some(s.seeded[0].0.as_str()));
    assert_eq!(
        bars[13][1], 4,
        "today: MISS, HIT, passed, rejected: {bars:?}"
    );
    assert!(
        bars[0][3].as_str().unwrap().contains("requests"),
        "hover text: {bars:?}"
    );
    let tallest = b.eval(
        "Math.max(...Array.from(document.querySelectorAll('#chart-bytes rect.to-clients'))
           .map((r) => Number(r.getAttribute('height'))))",
    );
    assert!(
        tallest.as_f64().unwrap() > 100.0,
        "the largest day fills the plot: {tallest}"
    );

    // "The numbers" opened by the reader stay open across a refresh in place.
    b.click("#traffic-numbers summary");
    let refreshed = b.eval("document.getElementById('refresh-state').textContent");
    b.wait_true(
        &format!("document.getElementById('refresh-state').textContent !== {refreshed}"),
        Duration::from_secs(5),
    );
    assert_eq!(
        b.eval("document.getElementById('traffic-numbers').open"),
        true
    );
    let rows = b.eval("document.querySelectorAll('#traffic-numbers tbody tr').length");
    assert_eq!(rows, 14);

    // Purge through the page: without a token the API's refusal is shown in its words.
    let url = "http://img.test/a.jpg?size=20k";
    b.type_into("#purge-target", url);
    b.click("#purge-form button[type=submit]");
    b.wait_true(
        "document.getElementById('result').textContent.includes('→ 401')",
        Duration::from_secs(5),
    );
    let said = b.eval("document.getElementById('result').textContent");
    assert_eq!(said, "POST /purge → 401: missing or wrong bearer token");
    b.type_into("#token", TOKEN);
    b.click("#token-form button[type=submit]");
    let kept = b.eval(&format!(
        "[sessionStorage.getItem('weir.admin.token'), localStorage.length, document.cookie, \
          document.getElementById('token').value, location.href.includes({t})]",
        t = json!(TOKEN)
    ));
    assert_eq!(kept, json!([TOKEN, 0, "", "", false]));
    b.click("#purge-form button[type=submit]");
    b.wait_true(
        "document.getElementById('result').textContent.includes('→ 200')",
        Duration::from_secs(5),
    );
    assert_eq!(
        b.eval("document.getElementById('result').textContent"),
        "POST /purge → 200: {\"purged\":1}"
    );
    b.click("#purge-form button[type=submit]");
    b.wait_true(
        "document.getElementById('result').textContent === 'POST /purge → 404: not in the cache'",
        Duration::from_secs(5),
    );
    // Gone from the cache: the next request goes to the origin again.
    let again = get(s.weir.port, "/a.jpg?size=20k", "img.test");
    assert_eq!(header(&again, "x-cache-status"), Some("MISS"), "{again}");

    // Screenshots: the desktop view, then a phone's width (nothing wider than the screen).
    b.wait_true(
        "document.querySelector('[data-counter=\"objects:img\"]').value === '1'",
        Duration::from_secs(5),
    );
    let png = b.screenshot(1280, false);
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    let phone = b.screenshot(390, true);
    std::fs::write(dir.join("dashboard-phone.png"), &phone).unwrap();
    let overflow = b.eval("document.documentElement.scrollWidth");
    assert!(
        overflow.as_u64().unwrap() <= 390,
        "wider than a phone: {overflow}"
    );
    eprintln!("screenshots in {}", dir.display());
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );

    // Remove the registered server with its button; its row goes on the next refresh.
    b.click(&format!("button.remove[data-addr=\"{spare}\"]"));
    b.wait_true(
        &format!("!document.querySelector('tr[data-server=\"{spare}\"]')"),
        Duration::from_secs(5),
    );
    assert!(b
        .eval("document.getElementById('result').textContent")
        .as_str()
        .unwrap()
        .starts_with("DELETE /upstreams/img/servers/"));
    assert!(admin_json(s.admin, "/upstreams/img")
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["addr"] != spare.as_str()));

    // Register it again with the form, then reload: a good file, then a broken one (the
    // API's 422 lines are shown as they are).
    b.type_into("#register-tier", "backup");
    b.type_into("#register-addr", &spare);
    b.type_into("#register-ttl", "5m");
    b.click("#register-form button[type=submit]");
    b.wait_true(
        &format!(
            "!!document.querySelector('tr[data-server=\"{spare}\"][data-registered=\"true\"]')"
        ),
        Duration::from_secs(5),
    );
    let said = b.eval("document.getElementById('result').textContent");
    assert!(
        said.as_str()
            .unwrap()
            .starts_with("POST /upstreams/img/servers → 200: {"),
        "{said}"
    );
    b.click("#reload-form button[type=submit]");
    b.wait_true(
        "document.getElementById('result').textContent === 'POST /reload → 200: {\"ok\":true}'",
        Duration::from_secs(10),
    );
    let yaml = std::fs::read_to_string(s.weir.config_path()).unwrap();
    std::fs::write(
        s.weir.config_path(),
        yaml.replace("rate: 1r/m", "rate: fast"),
    )
    .unwrap();
    b.click("#reload-form button[type=submit]");
    b.wait_true(
        "document.getElementById('result').textContent.startsWith('POST /reload → 422: limits.strict.rate')",
        Duration::from_secs(10),
    );

    // Nothing left the admin listener; the token only ever went in a header.
    b.eval("new Promise((done) => setTimeout(done, 200))");
    let requests: Vec<&Value> = b
        .events
        .iter()
        .filter(|e| e["method"] == "Network.requestWillBeSent")
        .map(|e| &e["params"]["request"])
        .collect();
    let urls: Vec<&str> = requests
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    for u in ["/?refresh=1", "/dashboard.js", "/dashboard.css", "/purge"] {
        assert!(
            urls.contains(&format!("{origin}{u}").as_str()),
            "{u} not requested: {urls:?}"
        );
    }
    for u in &urls {
        assert!(
            u.starts_with(&format!("{origin}/")),
            "a request left the admin listener: {u}"
        );
        assert!(!u.contains(TOKEN), "the token in a URL: {u}");
    }
    let bearer = requests
        .iter()
        .filter(|r| r["method"] == "POST")
        .filter_map(|r| r["headers"]["Authorization"].as_str())
        .collect::<Vec<_>>();
    assert!(
        bearer.contains(&format!("Bearer {TOKEN}").as_str()),
        "{bearer:?}"
    );
    assert_eq!(b.eval("window.__csp"), json!([]), "CSP violations");
    let problems: Vec<&Value> = b
        .events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Log.entryAdded"
                    && (e["params"]["entry"]["source"] == "security"
                        || e["params"]["entry"]["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("Content Security Policy"))))
                || (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
        })
        .collect();
    assert!(problems.is_empty(), "{problems:?}");

    // The policy is enforced, and its violations would have been seen: an image from
    // elsewhere is refused.
    b.eval(
        "new Promise((done) => { const i = new Image(); i.onerror = done; \
         i.src = 'http://192.0.2.1/x.png'; document.body.append(i); })",
    );
    let csp = b.eval("window.__csp");
    assert_eq!(csp, json!(["img-src http://192.0.2.1/x.png"]), "{csp}");
}
