//! The dashboard: `GET /` on the admin listener answers one HTML page that shows the numbers
//! of `/status`, `/upstreams/{name}`, `/traffic` and the limit and failure counters of
//! `/metrics`, rendered on the server (the page reads without JavaScript), plus its script,
//! stylesheet and icon, embedded in the binary at build time.
//!
//! The page loads nothing from anywhere but the admin listener, and its headers say so: a
//! strict `Content-Security-Policy` (scripts, styles, images and fetches from the same
//! origin only, no inline script or style, no framing), `X-Frame-Options: DENY` and
//! `Cache-Control: no-store`. The script refreshes the page in place by fetching `/` again
//! and swapping the rendered sections, so the markup has one author (this module).

mod chart;
mod counters;
mod format;
mod render;

use http::header::{self, HeaderName};
use prometheus::proto::MetricFamily;
use serde_json::Value;
use std::collections::BTreeSet;

pub use counters::Counters;

/// The page's script (refresh, rates, token and actions).
const SCRIPT: &str = include_str!("../../assets/dashboard/dashboard.js");
/// The page's stylesheet.
const STYLE: &str = include_str!("../../assets/dashboard/dashboard.css");
/// The page's icon.
const ICON: &str = include_str!("../../assets/dashboard/favicon.svg");

/// What the page may load: its own script, stylesheet and icon, and fetches to the admin
/// listener. Nothing inline, no frames, no forms to elsewhere, no `<base>`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The headers every dashboard response carries besides `Content-Type` (the admin API adds
/// `Cache-Control: no-store` to all its answers).
pub const HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The content type of the page.
pub const PAGE_TYPE: &str = "text/html; charset=utf-8";

/// An embedded asset by its path segment (`dashboard.js` …): its content type and bytes.
pub fn asset(segment: &str) -> Option<(&'static str, &'static [u8])> {
    let (content_type, body) = match segment {
        "dashboard.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "dashboard.css" => ("text/css; charset=utf-8", STYLE),
        "favicon.svg" => ("image/svg+xml", ICON),
        _ => return None,
    };
    Some((content_type, body.as_bytes()))
}

/// What the page shows that the JSON bodies do not carry.
#[derive(Debug, Default)]
pub struct Extras {
    /// Every limit zone, by name (a zone with no traffic yet has no counters).
    pub limit_zones: Vec<String>,
    /// `(upstream, server addr)` of the servers down by the health check whose latest
    /// checks succeeded (up again after `rise` of them): shown as `probing`.
    pub probing: BTreeSet<(String, String)>,
}

/// The dashboard page: `status` and `traffic` are the bodies of `GET /status` and
/// `GET /traffic`; `metrics` is what `GET /metrics` encodes.
pub fn page(status: &Value, traffic: &Value, metrics: &[MetricFamily], extras: &Extras) -> String {
    let counters = Counters::from_families(metrics);
    render::page(status, traffic, &counters, extras)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_the_policy_strict() {
        let total = SCRIPT.len() + STYLE.len() + ICON.len();
        assert!(total < 100 * 1024, "assets are {total} bytes");
        assert_eq!(
            asset("dashboard.js").map(|a| a.0),
            Some("text/javascript; charset=utf-8")
        );
        assert!(asset("nothing.js").is_none());
        assert!(asset("status").is_none());
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
        for (name, value) in &HEADERS {
            assert!(http::HeaderValue::from_str(value).is_ok(), "{name}");
        }
    }
}
