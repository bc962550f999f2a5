//! The `routes:` list: what to match, where to send it, and the plugin chain.

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
    #[serde(default)]
    plugins: Vec<Value>,
    request_buffering: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchWire {
    host: Option<OneOrMany>,
    path_prefix: Option<String>,
    path: Option<String>,
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

    let (hosts, path_prefix, exact_path) = match wire.matcher {
        None => (Vec::new(), None, None),
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
            (hosts, m.path_prefix, m.path)
        }
    };

    let target = match (&wire.upstream, &wire.redirect) {
        (Some(_), Some(_)) => {
            errors.push(path, "use either `upstream` or `redirect`, not both");
            None
        }
        (None, None) => {
            errors.push(path, "needs `upstream` (proxy) or `redirect`");
            None
        }
        (None, Some(r)) => match refs.upstreams.get(r) {
            None => {
                errors.push(
                    join(path, "redirect"),
                    format!("no upstream `{r}` under upstreams"),
                );
                None
            }
            Some(built) => built.clone().map(Target::Redirect),
        },
        (Some(u), None) => match refs.upstreams.get(u) {
            None => {
                errors.push(
                    join(path, "upstream"),
                    format!("no upstream `{u}` under upstreams"),
                );
                None
            }
            Some(built) => built.clone().map(Target::Upstream),
        },
    };

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
    if cache.is_some() && matches!(target, Some(Target::Redirect(_))) {
        errors.push(
            &plugins_path,
            "`cache` has nothing to store on a `redirect` route",
        );
    }

    match target {
        Some(target) if errors.is_empty() => Ok(Route {
            name: Arc::from(name),
            hosts,
            path_prefix,
            path: exact_path,
            target,
            plugins,
            request_buffering: wire.request_buffering.unwrap_or(true),
            cache,
            metrics: RouteMetrics::default(),
        }),
        _ => Err(errors),
    }
}
