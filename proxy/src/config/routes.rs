//! The `routes:` list: what to match, where to send it, and the plugin chain.

use crate::fixed_response::{FixedResponse, CLOSE, REDIRECTS};
use crate::metrics::RouteMetrics;
use crate::router::{HostPattern, Route, Target};
use crate::upstream::Upstream;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_plugins::cache::CachePlugin;
use weir_plugins::config::{from_value, index, join};
use weir_plugins::{BuildContext, ConfigErrors, Registry};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteWire {
    name: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<MatchWire>,
    upstream: Option<String>,
    redirect: Option<String>,
    #[serde(rename = "return")]
    answer: Option<ReturnWire>,
    #[serde(default)]
    plugins: Vec<Value>,
    request_buffering: Option<bool>,
}

/// `return: {status, location}` or `return: {status, body, content_type}` (nginx `return`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnWire {
    status: u16,
    location: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchWire {
    host: Option<OneOrMany>,
    path_prefix: Option<String>,
    path: Option<String>,
    scheme: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// What routes may refer to.
pub struct RouteRefs<'a> {
    /// Built upstreams by name (a failed upstream is present as `None` so routes naming it
    /// report no second error).
    pub upstreams: &'a BTreeMap<String, Option<Arc<Upstream>>>,
    /// Zones for plugins.
    pub plugins: &'a BuildContext,
    /// Plugin factories.
    pub registry: &'a Registry,
}

/// Builds `routes[i]` found at `path`.
pub fn build(i: usize, value: &Value, path: &str, refs: &RouteRefs) -> Result<Route, ConfigErrors> {
    let wire: RouteWire = from_value(value, path)?;
    let mut errors = ConfigErrors::default();
    let name = wire.name.unwrap_or_else(|| format!("route{i}"));

    let (hosts, path_prefix, exact_path, tls) = match wire.matcher {
        None => (Vec::new(), None, None, None),
        Some(m) => {
            let match_path = join(path, "match");
            let host_list = match m.host {
                None => Vec::new(),
                Some(OneOrMany::One(h)) => vec![(join(&match_path, "host"), h)],
                Some(OneOrMany::Many(v)) => v
                    .into_iter()
                    .enumerate()
                    .map(|(j, h)| (index(&join(&match_path, "host"), j), h))
                    .collect(),
            };
            let hosts = host_list
                .into_iter()
                .filter_map(|(p, h)| HostPattern::parse(&h).map_err(|e| errors.push(p, e)).ok())
                .collect();
            if let Some(p) = &m.path_prefix {
                if !p.starts_with('/') {
                    errors.push(join(&match_path, "path_prefix"), "must start with /");
                }
            }
            if let Some(p) = &m.path {
                if !p.starts_with('/') {
                    errors.push(join(&match_path, "path"), "must start with /");
                } else if m.path_prefix.is_some() {
                    errors.push(
                        &match_path,
                        "use either `path` (exact) or `path_prefix`, not both",
                    );
                }
            }
            let tls = match m.scheme.as_deref() {
                None => None,
                Some("http") => Some(false),
                Some("https") => Some(true),
                Some(other) => {
                    errors.push(
                        join(&match_path, "scheme"),
                        format!("`{other}`: expected http or https"),
                    );
                    None
                }
            };
            (hosts, m.path_prefix, m.path, tls)
        }
    };

    let upstream_target = |key: &str, name: &String, make: fn(Arc<Upstream>) -> Target| match refs
        .upstreams
        .get(name)
    {
        None => Err((
            join(path, key),
            format!("no upstream `{name}` under upstreams"),
        )),
        Some(built) => Ok(built.clone().map(make)),
    };
    let target = match (&wire.upstream, &wire.redirect, &wire.answer) {
        (Some(u), None, None) => upstream_target("upstream", u, Target::Upstream),
        (None, Some(r), None) => upstream_target("redirect", r, Target::Redirect),
        (None, None, Some(a)) => build_return(a, &join(path, "return")).map(Some),
        (None, None, None) => Err((
            path.to_string(),
            "needs `upstream` (proxy), `redirect` or `return`".to_string(),
        )),
        _ => Err((
            path.to_string(),
            "use one of `upstream`, `redirect` and `return`, not several".to_string(),
        )),
    };
    let target = target.unwrap_or_else(|(at, why)| {
        errors.push(at, why);
        None
    });

    let plugins_path = join(path, "plugins");
    let plugins: Vec<_> = wire
        .plugins
        .iter()
        .enumerate()
        .filter_map(|(j, v)| {
            errors.take(
                refs.registry
                    .build(v, &index(&plugins_path, j), refs.plugins),
            )
        })
        .collect();

    // The chain's `cache` plugin is looked up here, once, so the request path never searches
    // the chain for it.
    let caches: Vec<&CachePlugin> = plugins
        .iter()
        .filter_map(|p| p.as_any()?.downcast_ref::<CachePlugin>())
        .collect();
    if caches.len() > 1 {
        errors.push(&plugins_path, "a route can have one `cache` plugin");
    }
    let cache = caches.first().map(|c| (*c).clone());
    match &target {
        Some(Target::Redirect(_)) if cache.is_some() => errors.push(
            &plugins_path,
            "`cache` has nothing to store on a `redirect` route",
        ),
        Some(Target::Return(_)) if cache.is_some() => errors.push(
            &plugins_path,
            "`cache` has nothing to store on a `return` route",
        ),
        _ => {}
    }

    match target {
        Some(target) if errors.is_empty() => Ok(Route {
            name: Arc::from(name),
            hosts,
            path_prefix,
            path: exact_path,
            tls,
            target,
            plugins,
            request_buffering: wire.request_buffering.unwrap_or(true),
            cache,
            metrics: RouteMetrics::default(),
        }),
        _ => Err(errors),
    }
}

/// The first body key a `return` sets (`body`, else `content_type`), if any.
fn body_key(wire: &ReturnWire) -> Option<&'static str> {
    if wire.body.is_some() {
        Some("body")
    } else if wire.content_type.is_some() {
        Some("content_type")
    } else {
        None
    }
}

/// Validates `return` found at `path`.
fn build_return(wire: &ReturnWire, path: &str) -> Result<Target, (String, String)> {
    let status = wire.status;
    let field = |name: &str, why: String| (join(path, name), why);
    if REDIRECTS.contains(&status) {
        let Some(location) = &wire.location else {
            return Err((path.to_string(), format!("a {status} needs `location`")));
        };
        if let Some(key) = body_key(wire) {
            return Err(field(
                key,
                format!("a {status} answers with a `location`, not a body"),
            ));
        }
        return FixedResponse::redirect(status, location)
            .map(|r| Target::Return(Arc::new(r)))
            .map_err(|e| field("location", e));
    }
    if !(200..300).contains(&status) && !(400..600).contains(&status) {
        return Err(field(
            "status",
            format!("`{status}`: expected 301, 302, 303, 307 or 308 (with `location`), or a 2xx, 4xx or 5xx status"),
        ));
    }
    if let (CLOSE, Some(key)) = (status, body_key(wire)) {
        return Err(field(
            key,
            "a 444 closes the connection without an answer".to_string(),
        ));
    }
    if wire.location.is_some() {
        return Err(field(
            "location",
            "only a redirect (301, 302, 303, 307, 308) has a location".to_string(),
        ));
    }
    if status == 204 && wire.body.is_some() {
        return Err(field("body", "a 204 has no body".to_string()));
    }
    FixedResponse::status(status, wire.body.as_deref(), wire.content_type.as_deref())
        .map(|r| Target::Return(Arc::new(r)))
        .map_err(|(key, why)| field(key, why))
}
