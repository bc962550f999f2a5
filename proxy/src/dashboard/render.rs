//! The dashboard's HTML, written on the server from the bodies of `GET /status` and
//! `GET /traffic` and the counters of `/metrics`: overview, upstreams, cache zones, limit
//! zones and the traffic charts inside `<main id="live">` (what the script swaps on every
//! refresh), then the token-gated actions (left in place across refreshes).
//!
//! Counters are written as `<data data-counter="KEY" value="N">`; the script turns two
//! successive readings of a key into the rate shown in `<output data-rate-of="KEY">` (or the
//! increase, `data-delta-of`). Without the script the page shows the numbers of its load.

use super::chart;
use super::counters::{Counters, LimitCounts};
use super::format::{bytes, count, duration, esc, percent, timestamp};
use super::Extras;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::SystemTime;

/// The whole page.
pub fn page(status: &Value, traffic: &Value, counters: &Counters, extras: &Extras) -> String {
    let now = crate::access_log::rfc3339(SystemTime::now());
    let mut html = String::with_capacity(16 * 1024);
    html += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>weir dashboard</title>\n\
             <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n\
             <link rel=\"stylesheet\" href=\"/dashboard.css\">\n\
             <script src=\"/dashboard.js\" defer></script>\n</head>\n<body>\n\
             <header class=\"top\">\n<h1>weir <span class=\"sub\">dashboard</span></h1>\n\
             <p id=\"refresh-state\" aria-live=\"polite\">Reload the page for newer numbers.</p>\n\
             </header>\n";
    let _ = writeln!(html, "<main id=\"live\" data-at=\"{}\">", esc(&now));
    html += &overview(status, &now);
    html += &upstreams(status, counters, &extras.probing);
    html += &caches(status);
    html += &limits(status, counters, &extras.limit_zones);
    html += "<section id=\"traffic\" aria-labelledby=\"h-traffic\">\n\
             <h2 id=\"h-traffic\">Traffic, last 14 UTC days</h2>\n";
    html += &chart::charts(traffic);
    html += &traffic_table(traffic);
    html += "<p class=\"source\">From <a href=\"/traffic\">/traffic</a>; kept across restarts \
             in the state file. Hover a day for its numbers.</p>\n</section>\n</main>\n";
    html += &actions(status);
    html += "<noscript><p class=\"note\">Without JavaScript this page shows the numbers of its \
             last load (reload it for newer ones); the actions need JavaScript.</p></noscript>\n\
             </body>\n</html>\n";
    html
}

/// A counter the script reads: `<data data-counter="key" value="n">shown</data>`.
fn counter(key: &str, n: u64, shown: &str) -> String {
    format!(
        "<data data-counter=\"{}\" value=\"{n}\">{}</data>",
        esc(key),
        esc(shown)
    )
}

/// Where the script writes the rate of `key` (`bytes` for bytes/s).
fn rate(key: &str, unit: &str) -> String {
    format!(
        "<output data-rate-of=\"{}\" data-unit=\"{unit}\" title=\"needs two readings\">–</output>",
        esc(key)
    )
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn map<'a>(v: &'a Value, key: &str) -> &'a Map<String, Value> {
    v[key].as_object().unwrap_or_else(|| empty_map())
}

fn overview(status: &Value, now: &str) -> String {
    let card =
        |label: &str, value: String| format!("<div><dt>{label}</dt><dd>{value}</dd></div>\n");
    let total = |key: &str, shown: String| counter(key, n(status, key), &shown);
    let mut s = String::from(
        "<section id=\"overview\" aria-labelledby=\"h-overview\">\n\
         <h2 id=\"h-overview\">Overview</h2>\n<dl class=\"cards\">\n",
    );
    s += &card("Version", esc(status["version"].as_str().unwrap_or("?")));
    s += &card(
        "Uptime",
        format!(
            "<span id=\"uptime\">{}</span>",
            duration(n(status, "uptime_s"))
        ),
    );
    s += &card("Requests/s", rate("requests", ""));
    s += &card("To clients/s", rate("bytes_to_clients", "bytes"));
    s += &card("From upstreams/s", rate("bytes_from_upstreams", "bytes"));
    s += &card("Requests", total("requests", count(n(status, "requests"))));
    s += &card(
        "To clients",
        total("bytes_to_clients", bytes(n(status, "bytes_to_clients"))),
    );
    s += &card(
        "From upstreams",
        total(
            "bytes_from_upstreams",
            bytes(n(status, "bytes_from_upstreams")),
        ),
    );
    let _ = writeln!(
        s,
        "</dl>\n<p class=\"source\">Totals since start from <a href=\"/status\">/status</a>, \
         as of <time id=\"as-of\" datetime=\"{now}\">{}</time>; a rate is the difference of \
         two successive readings over the time between them.</p>\n</section>",
        esc(&timestamp(now))
    );
    s
}

/// The state a server is shown in: `up`, `down`, or `probing` (down, and the latest health
/// checks succeed: it comes back after `rise` of them).
fn state_of(server: &Value, probing: bool) -> &'static str {
    match server["state"].as_str() {
        Some("up") => "up",
        _ if probing => "probing",
        _ => "down",
    }
}

/// `(upstream, addr)` pairs of the servers being probed back up.
type Probing = BTreeSet<(String, String)>;

fn upstreams(status: &Value, counters: &Counters, probing: &Probing) -> String {
    let mut s = String::from(
        "<section id=\"upstreams\" aria-labelledby=\"h-upstreams\">\n\
         <h2 id=\"h-upstreams\">Upstreams</h2>\n",
    );
    let all = map(status, "upstreams");
    if all.is_empty() {
        s += "<p class=\"empty\">No upstreams configured.</p>\n";
    }
    for (name, servers) in all {
        let _ = write!(
            s,
            "<h3>{n} <a class=\"api\" href=\"/upstreams/{n}\">/upstreams/{n}</a></h3>\n\
             <table class=\"servers\" data-upstream=\"{n}\">\n<thead><tr><th scope=\"col\">Tier</th>\
             <th scope=\"col\">Server</th><th scope=\"col\">State</th><th scope=\"col\">Since</th><th scope=\"col\">Why</th><th scope=\"col\">Registration</th>\
             <th scope=\"col\">Failed attempts</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead>\n<tbody>\n",
            n = esc(name)
        );
        let servers = servers.as_array().map_or(&[][..], |a| a.as_slice());
        if servers.is_empty() {
            s +=
                "<tr><td colspan=\"8\">No servers (a tier may wait for registrations).</td></tr>\n";
        }
        for server in servers {
            s += &server_row(name, server, counters, probing);
        }
        s += "</tbody>\n</table>\n";
    }
    s += "<p class=\"source\">Servers in tier order from <a href=\"/status\">/status</a> \
          (as <code>/upstreams/{name}</code>); failed attempts since start from \
          <a href=\"/metrics\">/metrics</a> <code>weir_upstream_failures_total</code>, with \
          the increase since the previous refresh.</p>\n</section>\n";
    s
}

fn server_row(upstream: &str, server: &Value, counters: &Counters, probing: &Probing) -> String {
    let addr = server["addr"].as_str().unwrap_or("");
    let state = state_of(
        server,
        probing.contains(&(upstream.to_string(), addr.to_string())),
    );
    let since = server["last_change"].as_str().map_or("–".into(), |t| {
        format!(
            "<time datetime=\"{}\">{}</time>",
            esc(t),
            esc(&timestamp(t))
        )
    });
    let registered = server["registered"].as_bool().unwrap_or(false);
    let registration = match server["expires_in_s"].as_u64() {
        Some(left) if registered => format!("{} left", duration(left)),
        _ => "configured".to_string(),
    };
    let key = format!("fail:{upstream}:{addr}");
    let failures = match counters.failures_of(upstream, addr) {
        Some(reasons) => {
            let total: u64 = reasons.values().sum();
            let why: Vec<String> = reasons
                .iter()
                .map(|(r, n)| format!("{} ×{}", esc(r), count(*n)))
                .collect();
            format!(
                "{} <span class=\"why\">({})</span> <output data-delta-of=\"{}\"></output>",
                counter(&key, total, &count(total)),
                why.join(", "),
                esc(&key)
            )
        }
        None => format!(
            "{} <output data-delta-of=\"{}\"></output>",
            counter(&key, 0, "0"),
            esc(&key)
        ),
    };
    let remove = if registered {
        format!(
            "<button type=\"button\" class=\"remove needs-js\" data-upstream=\"{}\" \
             data-addr=\"{}\">Remove</button>",
            esc(upstream),
            esc(addr)
        )
    } else {
        String::new()
    };
    format!(
        "<tr data-server=\"{a}\" data-state=\"{state}\" data-registered=\"{registered}\">\
         <td data-label=\"Tier\">{tier}</td><td data-label=\"Server\"><code>{a}</code></td>\
         <td data-label=\"State\"><span class=\"state {state}\">{state}</span></td>\
         <td data-label=\"Since\">{since}</td><td data-label=\"Why\" class=\"reason\">{why}</td>\
         <td data-label=\"Registration\">{registration}</td>\
         <td data-label=\"Failed attempts\">{failures}</td><td class=\"act\">{remove}</td></tr>\n",
        a = esc(addr),
        tier = esc(server["tier"].as_str().unwrap_or("")),
        why = esc(server["reason"].as_str().unwrap_or("–")),
    )
}

/// `used of max` with a meter, or `off` when `max` is 0.
fn usage(used: u64, max: u64) -> String {
    if max == 0 {
        return "off".into();
    }
    format!(
        "{} of {} <meter min=\"0\" max=\"{max}\" value=\"{}\">{}</meter>",
        bytes(used),
        bytes(max),
        used.min(max),
        percent(used as f64 / max as f64)
    )
}

fn caches(status: &Value) -> String {
    let mut s = String::from(
        "<section id=\"caches\" aria-labelledby=\"h-caches\">\n\
         <h2 id=\"h-caches\">Cache zones</h2>\n",
    );
    let zones = map(status, "caches");
    if zones.is_empty() {
        s += "<p class=\"empty\">No cache zones configured.</p>\n";
    } else {
        s += "<table class=\"caches\">\n<thead><tr><th scope=\"col\">Zone</th><th scope=\"col\">Objects</th><th scope=\"col\">Disk</th>\
              <th scope=\"col\">Hit ratio</th><th scope=\"col\">Origin bytes saved</th><th scope=\"col\">Memory tier</th></tr></thead>\n<tbody>\n";
        for (name, z) in zones {
            let ratio = z["hit_ratio"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                s,
                "<tr data-zone=\"{zone}\"><th scope=\"row\" data-label=\"Zone\">{zone}</th>\
                 <td data-label=\"Objects\" class=\"objects\">{objects}</td>\
                 <td data-label=\"Disk\" class=\"disk\">{disk}</td>\
                 <td data-label=\"Hit ratio\" class=\"ratio\">{ratio}</td>\
                 <td data-label=\"Origin bytes saved\" class=\"saved\">{saved}</td>\
                 <td data-label=\"Memory tier\" class=\"memory\">{memory}</td></tr>",
                zone = esc(name),
                objects = counter(
                    &format!("objects:{name}"),
                    n(z, "objects"),
                    &count(n(z, "objects"))
                ),
                disk = usage(n(z, "bytes"), n(z, "max_size")),
                ratio = percent(ratio),
                saved = counter(
                    &format!("saved:{name}"),
                    n(z, "origin_bytes_saved"),
                    &bytes(n(z, "origin_bytes_saved"))
                ),
                memory = usage(n(z, "memory_bytes"), n(z, "memory_max")),
            );
        }
        s += "</tbody>\n</table>\n";
    }
    s += "<p class=\"source\">From <a href=\"/status\">/status</a>: the hit ratio is of the \
          requests the zone answered since start; origin bytes saved are body bytes served \
          from the cache.</p>\n</section>\n";
    s
}

fn limits(status: &Value, counters: &Counters, zones: &[String]) -> String {
    let mut s = String::from(
        "<section id=\"limits\" aria-labelledby=\"h-limits\">\n\
         <h2 id=\"h-limits\">Limit zones</h2>\n",
    );
    if zones.is_empty() {
        s += "<p class=\"empty\">No limit zones configured.</p>\n";
    } else {
        s += "<table class=\"limits\">\n<thead><tr><th scope=\"col\">Zone</th><th scope=\"col\">Passed/s</th>\
              <th scope=\"col\">Delayed/s</th><th scope=\"col\">Rejected/s</th><th scope=\"col\">Since start</th><th scope=\"col\">Store</th></tr>\
              </thead>\n<tbody>\n";
        let stores = map(status, "limits");
        for zone in zones {
            let c = counters.limits.get(zone).copied().unwrap_or_default();
            let key = |what: &str| format!("limit:{zone}:{what}");
            let LimitCounts {
                passed,
                delayed,
                rejected,
                dry_run_rejected,
            } = c;
            let dry = if dry_run_rejected > 0 {
                format!(", {} would be rejected (dry run)", count(dry_run_rejected))
            } else {
                String::new()
            };
            let store = match stores.get(zone) {
                Some(st) if st["fallback"].as_bool() == Some(true) => format!(
                    "<span class=\"state down\">fallback</span> Redis <code>{}</code> \
                     unreachable or slow: deciding on local state",
                    esc(st["store"].as_str().unwrap_or(""))
                ),
                Some(st) => format!(
                    "<span class=\"state up\">shared</span> Redis <code>{}</code>",
                    esc(st["store"].as_str().unwrap_or(""))
                ),
                None => "local".to_string(),
            };
            let _ = writeln!(
                s,
                "<tr data-zone=\"{z}\"><th scope=\"row\" data-label=\"Zone\">{z}</th>\
                 <td data-label=\"Passed/s\">{rp}</td><td data-label=\"Delayed/s\">{rd}</td>\
                 <td data-label=\"Rejected/s\">{rr}</td>\
                 <td data-label=\"Since start\">{cp} passed, {cd} delayed, {cr} rejected{dry}</td>\
                 <td data-label=\"Store\">{store}</td></tr>",
                z = esc(zone),
                rp = rate(&key("passed"), ""),
                rd = rate(&key("delayed"), ""),
                rr = rate(&key("rejected"), ""),
                cp = counter(&key("passed"), passed, &count(passed)),
                cd = counter(&key("delayed"), delayed, &count(delayed)),
                cr = counter(&key("rejected"), rejected, &count(rejected)),
            );
        }
        s += "</tbody>\n</table>\n";
    }
    s += "<p class=\"source\">Decisions from <a href=\"/metrics\">/metrics</a> \
          <code>weir_limit_req_total</code>; the store state from <a href=\"/status\">/status</a> \
          (<code>weir_limit_store_fallback</code>).</p>\n</section>\n";
    s
}

fn traffic_table(traffic: &Value) -> String {
    let days = traffic["days"].as_array().map_or(&[][..], |a| a.as_slice());
    if days.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<details id=\"traffic-numbers\"><summary>The numbers</summary>\n<table class=\"days\">\n<thead><tr>\
         <th scope=\"col\">UTC day</th><th scope=\"col\">Requests</th><th scope=\"col\">Cache hits</th><th scope=\"col\">To clients</th>\
         <th scope=\"col\">From upstreams</th></tr></thead>\n<tbody>\n",
    );
    for d in days.iter().rev() {
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\" data-label=\"UTC day\">{}</th><td data-label=\"Requests\">{}</td>\
             <td data-label=\"Cache hits\">{}</td><td data-label=\"To clients\">{}</td>\
             <td data-label=\"From upstreams\">{}</td></tr>",
            esc(d["date"].as_str().unwrap_or("")),
            count(n(d, "requests")),
            count(n(d, "cache_hits")),
            bytes(n(d, "bytes_to_clients")),
            bytes(n(d, "bytes_from_upstreams")),
        );
    }
    s += "</tbody>\n</table>\n</details>\n";
    s
}

/// The token form and the actions (outside `#live`: a refresh leaves what is typed alone).
fn actions(status: &Value) -> String {
    let options = |key: &str| -> String {
        map(status, key)
            .keys()
            .map(|k| format!("<option>{}</option>", esc(k)))
            .collect()
    };
    let mut tiers: Vec<String> = map(status, "upstreams")
        .values()
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|s| s["tier"].as_str().map(str::to_string))
        .collect();
    tiers.sort();
    tiers.dedup();
    let tier_options: String = tiers
        .iter()
        .map(|t| format!("<option value=\"{}\"></option>", esc(t)))
        .collect();
    format!(
        include_str!("../../assets/dashboard/actions.html"),
        zones = options("caches"),
        upstreams = options("upstreams"),
        tiers = tier_options,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_servers_caches_and_escapes() {
        let status = json!({
            "version": "0.1.0", "uptime_s": 65, "requests": 1234,
            "bytes_to_clients": 2048, "bytes_from_upstreams": 1024,
            "caches": {"img": {"objects": 3, "bytes": 512, "hit_ratio": 0.5,
                "origin_bytes_saved": 100, "memory_bytes": 0, "max_size": 1024, "memory_max": 0}},
            "upstreams": {"o": [
                {"addr": "127.0.0.1:1", "tier": "edge", "state": "down", "registered": false,
                 "expires_in_s": null, "last_change": "2026-12-05T04:00:00Z",
                 "reason": "2 failed checks (<refused>)"},
                {"addr": "127.0.0.1:2", "tier": "edge", "state": "up", "registered": true,
                 "expires_in_s": 1190, "last_change": "2026-12-05T04:00:00Z",
                 "reason": "registered"}]},
            "limits": {},
        });
        let extras = Extras {
            limit_zones: vec!["per_ip".into()],
            probing: BTreeSet::new(),
        };
        let html = page(&status, &json!({"days": []}), &Counters::default(), &extras);
        assert!(html.contains("data-state=\"down\""));
        let probing = Extras {
            probing: [("o".to_string(), "127.0.0.1:1".to_string())].into(),
            ..Extras::default()
        };
        let html2 = page(
            &status,
            &json!({"days": []}),
            &Counters::default(),
            &probing,
        );
        assert!(html2.contains("data-server=\"127.0.0.1:1\" data-state=\"probing\""));
        assert!(html.contains("2 failed checks (&lt;refused&gt;)"));
        assert!(html.contains("19m 50s left"));
        assert!(html.contains("data-counter=\"requests\" value=\"1234\">1,234<"));
        assert!(html.contains("512 B of 1.0 KiB"));
        assert!(html.contains("<tr data-zone=\"per_ip\">"));
        assert!(html
            .contains("class=\"remove needs-js\" data-upstream=\"o\" data-addr=\"127.0.0.1:2\""));
        assert!(!html.contains("style="), "no inline style (CSP)");
        assert!(!html.contains("<script>"), "no inline script (CSP)");
    }

    #[test]
    fn probing_is_a_down_server_passing_checks() {
        assert_eq!(state_of(&json!({"state": "up"}), true), "up");
        assert_eq!(state_of(&json!({"state": "down"}), true), "probing");
        assert_eq!(state_of(&json!({"state": "down"}), false), "down");
    }
}
