//! The 14-day traffic charts as hand-drawn SVG: one column per UTC day of `/traffic`, today
//! at the right edge; bytes to clients against bytes from upstreams (the gap is what the
//! cache saved), requests against cache hits. Each day's `<title>` is its tooltip, so the
//! values show on hover with or without JavaScript.
//!
//! Two bar charts do not earn a charting library (tens of KiB of script, a second way to
//! draw, a dependency to keep current); these are a few rectangles with `viewBox` scaling.

use super::format::{bytes, count, esc, percent};
use serde_json::Value;
use std::fmt::Write;

/// Columns drawn (the days `/traffic` keeps).
const SLOTS: usize = 14;
/// The plot's size in SVG units (scaled to the page's width; 15 more on either side for
/// the first and last day's label).
const WIDTH: f64 = 700.0;
const HEIGHT: f64 = 170.0;
/// Room for the day labels below the bars, and above the tallest bar.
const BOTTOM: f64 = 24.0;
const TOP: f64 = 6.0;

/// One day of `/traffic`.
struct Day<'a> {
    date: &'a str,
    requests: u64,
    to_clients: u64,
    from_upstreams: u64,
    hits: u64,
}

fn days(traffic: &Value) -> Vec<Day<'_>> {
    let list = traffic["days"].as_array().map_or(&[][..], |a| a.as_slice());
    let n = |d: &Value, k: &str| d[k].as_u64().unwrap_or(0);
    let all: Vec<Day<'_>> = list
        .iter()
        .map(|d| Day {
            date: d["date"].as_str().unwrap_or(""),
            requests: n(d, "requests"),
            to_clients: n(d, "bytes_to_clients"),
            from_upstreams: n(d, "bytes_from_upstreams"),
            hits: n(d, "cache_hits"),
        })
        .collect();
    let skip = all.len().saturating_sub(SLOTS);
    all.into_iter().skip(skip).collect()
}

/// A chart's pair of series: the wide bar and the narrow bar drawn over it.
struct Series {
    id: &'static str,
    label: &'static str,
    wide: (&'static str, fn(&Day<'_>) -> u64),
    narrow: (&'static str, fn(&Day<'_>) -> u64),
    scale: fn(u64) -> String,
    tip: fn(&Day<'_>) -> String,
}

fn bytes_tip(d: &Day<'_>) -> String {
    format!(
        "{}: {} to clients, {} from upstreams, {} served without the upstream",
        d.date,
        bytes(d.to_clients),
        bytes(d.from_upstreams),
        bytes(d.to_clients.saturating_sub(d.from_upstreams))
    )
}

fn requests_tip(d: &Day<'_>) -> String {
    let ratio = if d.requests == 0 {
        0.0
    } else {
        d.hits as f64 / d.requests as f64
    };
    format!(
        "{}: {} requests, {} cache hits ({})",
        d.date,
        count(d.requests),
        count(d.hits),
        percent(ratio)
    )
}

/// Both charts with their legends, from the body of `GET /traffic`.
pub fn charts(traffic: &Value) -> String {
    let days = days(traffic);
    if days.is_empty() {
        return "<p class=\"empty\">No traffic counted yet.</p>\n".into();
    }
    let bytes_chart = Series {
        id: "chart-bytes",
        label: "Bytes per UTC day",
        wide: ("to-clients", |d| d.to_clients),
        narrow: ("from-upstreams", |d| d.from_upstreams),
        scale: bytes,
        tip: bytes_tip,
    };
    let requests_chart = Series {
        id: "chart-requests",
        label: "Requests per UTC day",
        wide: ("requests", |d| d.requests),
        narrow: ("hits", |d| d.hits),
        scale: count,
        tip: requests_tip,
    };
    let mut out = String::new();
    out += &chart(&days, &bytes_chart);
    out += "<p class=\"legend\"><span class=\"swatch to-clients\"></span>to clients \
            <span class=\"swatch from-upstreams\"></span>from upstreams \
            (the difference was served from the cache)</p>\n";
    out += &chart(&days, &requests_chart);
    out += "<p class=\"legend\"><span class=\"swatch requests\"></span>requests \
            <span class=\"swatch hits\"></span>cache hits</p>\n";
    out
}

fn chart(days: &[Day<'_>], s: &Series) -> String {
    let max = days
        .iter()
        .map(|d| (s.wide.1)(d).max((s.narrow.1)(d)))
        .max();
    let max = max.unwrap_or(0).max(1);
    let slot = WIDTH / SLOTS as f64;
    let plot = HEIGHT - TOP - BOTTOM;
    let height = |v: u64| (v as f64 / max as f64 * plot).max(if v > 0 { 1.0 } else { 0.0 });
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart\" id=\"{id}\"><figcaption>{label} \
         <span class=\"scale\">(dashed line: {top})</span></figcaption>\n\
         <svg viewBox=\"-15 0 {vw} {HEIGHT}\" role=\"img\" aria-label=\"{label}\">\n\
         <line class=\"grid\" x1=\"0\" y1=\"{TOP}\" x2=\"{WIDTH}\" y2=\"{TOP}\"/>\n\
         <line class=\"axis\" x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\"/>\n",
        id = s.id,
        label = s.label,
        top = esc(&(s.scale)(max)),
        vw = WIDTH + 30.0,
        base = HEIGHT - BOTTOM,
    );
    // Right-aligned: the newest day (today) in the last column.
    let first = SLOTS - days.len();
    for (i, d) in days.iter().enumerate() {
        let x = (first + i) as f64 * slot;
        let (wide, narrow) = ((s.wide.1)(d), (s.narrow.1)(d));
        let (hw, hn) = (height(wide), height(narrow));
        let base = HEIGHT - BOTTOM;
        let _ = write!(
            svg,
            "<g class=\"day\" data-date=\"{date}\"><title>{tip}</title>\
             <rect class=\"hit\" x=\"{x:.1}\" y=\"0\" width=\"{slot:.1}\" height=\"{base}\"/>\
             <rect class=\"bar {wc}\" data-value=\"{wide}\" x=\"{wx:.1}\" y=\"{wy:.1}\" width=\"{ww:.1}\" height=\"{hw:.1}\"/>\
             <rect class=\"bar {nc}\" data-value=\"{narrow}\" x=\"{nx:.1}\" y=\"{ny:.1}\" width=\"{nw:.1}\" height=\"{hn:.1}\"/>",
            date = esc(d.date),
            tip = esc(&(s.tip)(d)),
            wc = s.wide.0,
            nc = s.narrow.0,
            wx = x + slot * 0.15,
            wy = base - hw,
            ww = slot * 0.7,
            nx = x + slot * 0.3,
            ny = base - hn,
            nw = slot * 0.4,
        );
        // Every other day is labelled, counted back from today (always labelled).
        if (days.len() - 1 - i).is_multiple_of(2) {
            let _ = write!(
                svg,
                "<text class=\"date\" x=\"{cx:.1}\" y=\"{ty}\">{label}</text>",
                cx = x + slot / 2.0,
                ty = HEIGHT - 5.0,
                label = esc(d.date.get(5..).unwrap_or(d.date)),
            );
        }
        svg += "</g>\n";
    }
    svg += "</svg></figure>\n";
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_column_per_day_today_last() {
        let t = json!({"days": [
            {"date": "2026-12-04", "requests": 10, "bytes_to_clients": 1000,
             "bytes_from_upstreams": 250, "cache_hits": 6},
            {"date": "2026-12-05", "requests": 20, "bytes_to_clients": 2000,
             "bytes_from_upstreams": 2000, "cache_hits": 0},
        ]});
        let svg = charts(&t);
        assert_eq!(svg.matches("<g class=\"day\"").count(), 4);
        assert!(svg.contains("2026-12-04: 1000 B to clients, 250 B from upstreams, 750 B served"));
        assert!(svg.contains("2026-12-04: 10 requests, 6 cache hits (60.0%)"));
        // The largest value fills the plot; today sits in the last column.
        assert!(svg.contains("data-value=\"2000\" x=\"657.5\" y=\"6.0\""));
        assert!(charts(&json!({"days": []})).contains("No traffic"));
    }
}
