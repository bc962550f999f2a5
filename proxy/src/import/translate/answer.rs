//! nginx's `return` → weir's `return` target: `return 301 URL;`, `return URL;` (302),
//! `return 403;`, `return 200 "text";`, `return 444;`. What weir's `return` cannot say
//! (other statuses, a variable weir does not have) is reported, never guessed.

use super::{Scope, Tx};
use crate::fixed_response::REDIRECTS;
use crate::import::parser::Directive;
use crate::import::yaml::Node;
use crate::import::SyntaxError;
use weir_plugins::cache::key::KeyTemplate;

/// The `return:` node for `r` (in effect at `scope`, in a location whose exact path is
/// `exact`, if any); `None` when it was reported as not translated.
pub fn translate(
    tx: &mut Tx,
    scope: &Scope,
    r: &Directive,
    exact: Option<&str>,
) -> Result<Option<Node>, SyntaxError> {
    tx.take(r);
    let (code, text) = match r.args.as_slice() {
        [one] => match one.parse::<u16>() {
            Ok(code) => (code, None),
            Err(_) if starts_like_url(one) => (302, Some(one.as_str())),
            Err(_) => return Err(Tx::invalid(r, format!("invalid return code \"{one}\""))),
        },
        [code, text] => match code.parse::<u16>() {
            Ok(c) if c <= 999 => (c, Some(text.as_str())),
            _ => return Err(Tx::invalid(r, format!("invalid return code \"{code}\""))),
        },
        _ => return Err(Tx::invalid(r, "invalid number of arguments")),
    };
    if code > 999 {
        return Err(Tx::invalid(r, format!("invalid return code \"{code}\"")));
    }
    if let Some(t) = text {
        if let Err(why) = check_variables(t) {
            tx.report.left(r, why);
            return Ok(None);
        }
    }
    let mut node = Node::map();
    node.set("status", Node::int(code));
    if REDIRECTS.contains(&code) {
        let Some(url) = text else {
            tx.report.left(
                r,
                "a redirect without a URL: weir's `return` needs a location",
            );
            return Ok(None);
        };
        if url.starts_with('/') {
            relative_location_notes(tx, scope, r);
        }
        node.set("location", Node::str(url));
        return Ok(Some(node));
    }
    // 444 closes the connection: nginx ignores a text.
    if code == 444 {
        return Ok(Some(node));
    }
    let answers = (200..300).contains(&code) || (400..600).contains(&code);
    if !answers {
        tx.report.left(
            r,
            format!("`{code}`: weir's `return` answers 301, 302, 303, 307, 308 or a 2xx, 4xx or 5xx status"),
        );
        return Ok(None);
    }
    // nginx sends no body with a 204 whatever the text.
    if let Some(body) = text.filter(|_| code != 204) {
        node.set("body", Node::str(body));
        if let Some(content_type) = content_type(tx, scope, r, exact) {
            node.set("content_type", Node::str(content_type));
        }
    }
    Ok(Some(node))
}

/// nginx takes a single argument as a URL (302) when it starts like one.
fn starts_like_url(a: &str) -> bool {
    a.starts_with("http://") || a.starts_with("https://") || a.starts_with("$scheme")
}

/// The text's variables must be weir's; `${…}` in weir's YAML is the environment.
fn check_variables(text: &str) -> Result<(), String> {
    if text.contains("${") {
        return Err(
            "`${…}`: weir reads `${NAME}` as an environment variable at load time; write `$name`"
                .into(),
        );
    }
    if text.is_empty() {
        return Ok(());
    }
    KeyTemplate::parse(text).map(|_| ())
}

/// nginx makes a relative location absolute (`absolute_redirect`), with the listener's port
/// (`port_in_redirect`) and the request's host (`server_name_in_redirect off`); weir does
/// the same with the defaults and nothing else.
fn relative_location_notes(tx: &mut Tx, scope: &Scope, r: &Directive) {
    for (name, default, why) in [
        (
            "absolute_redirect",
            "on",
            "nginx sends this location as written (`absolute_redirect off`); weir makes it absolute with the request's host and the listener's port",
        ),
        (
            "port_in_redirect",
            "on",
            "nginx leaves out the port (`port_in_redirect off`); weir adds the listener's port unless it is 80 or 443",
        ),
        (
            "server_name_in_redirect",
            "off",
            "nginx names the server's first server_name (`server_name_in_redirect on`); weir names the request's host",
        ),
    ] {
        if let Some(d) = scope.one(name) {
            tx.take(d);
            if d.args.first().map(String::as_str) != Some(default) {
                tx.report.note(r, why);
            }
        }
    }
}

/// The type nginx sends a `return` text with: by the extension of an exact location's path
/// (`types`), else `default_type` (nginx's own default: `text/plain`, weir's too, so `None`).
fn content_type(tx: &mut Tx, scope: &Scope, r: &Directive, exact: Option<&str>) -> Option<String> {
    let types = scope.one("types");
    if let (Some(types), Some(path)) = (types, exact) {
        let ext = path
            .rsplit('/')
            .next()
            .and_then(|file| file.rsplit_once('.'))
            .map(|(_, ext)| ext.to_ascii_lowercase());
        if let Some(ext) = ext {
            let found = types
                .children()
                .iter()
                .find(|t| t.args.iter().any(|a| a.eq_ignore_ascii_case(&ext)));
            if let Some(t) = found {
                // `types` stays in the report's ignored list: weir serves no files by it.
                return Some(t.name.clone()).filter(|ct| ct != "text/plain");
            }
        }
    } else if types.is_some() && exact.is_none() {
        tx.report.note(
            r,
            "nginx picks the type by the requested path's extension (`types`); weir sends `default_type`",
        );
    }
    let default_type = scope.one("default_type")?;
    tx.take(default_type);
    default_type
        .args
        .first()
        .filter(|ct| *ct != "text/plain")
        .cloned()
}

#[cfg(test)]
mod tests {
    use crate::import::tests::{import_http, import_main, plugins, report};

    #[test]
    fn location_returns_become_return_routes() {
        let (yaml, v, i) = import_http(
            "default_type application/json;\n\
             server {\n listen 127.0.0.1:8080;\n\
               location / { proxy_pass http://127.0.0.1:9001; }\n\
               location = /health { return 200 '{\"ok\":true}'; }\n\
               location /old/ { limit_req zone=z; deny all; add_header X-Moved yes;\n\
                 return 301 /new$uri$is_args$args; }\n\
               location /away/ { return https://other.example.com$request_uri; }\n\
               location /gone/ { return 410; }\n\
               location /empty/ { return 204 \"ignored\"; }\n\
               location /both/ { proxy_pass http://127.0.0.1:9002; proxy_cache_valid 1m; return 403; }\n}\n\
             limit_req_zone $binary_remote_addr zone=z:1m rate=1r/s;",
        );
        assert_eq!(i.left, 0, "{yaml}");
        let routes = v["routes"].as_sequence().unwrap();
        let by_path = |p: &str| {
            routes
                .iter()
                .find(|r| r["match"]["path"] == p || r["match"]["path_prefix"] == p)
                .unwrap_or_else(|| panic!("no route for {p}:\n{yaml}"))
        };
        let health = &by_path("/health")["return"];
        assert_eq!(health["status"], 200);
        assert_eq!(health["body"], "{\"ok\":true}");
        assert_eq!(health["content_type"], "application/json");
        let old = by_path("/old/");
        assert_eq!(old["return"]["status"], 301);
        assert_eq!(old["return"]["location"], "/new$uri$is_args$args");
        assert!(old["upstream"].is_null(), "{yaml}");
        // nginx's return runs before limit_req and deny; add_header without `always`
        // applies to the 301.
        let p = &old["plugins"];
        assert_eq!(p.as_sequence().unwrap().len(), 1, "{yaml}");
        assert_eq!(p[0]["headers"]["always"], false);
        assert_eq!(p[0]["headers"]["response"]["add"]["X-Moved"], "yes");
        let r = report(&yaml);
        assert!(
            r.contains("nginx.conf:8 limit_req zone=z;\n#       nginx's `return` answers before"),
            "{r}"
        );
        assert_eq!(by_path("/away/")["return"]["status"], 302);
        assert_eq!(
            by_path("/away/")["return"]["location"],
            "https://other.example.com$request_uri"
        );
        assert_eq!(by_path("/gone/")["return"]["status"], 410);
        assert!(by_path("/gone/")["return"]["body"].is_null());
        assert!(by_path("/empty/")["return"]["body"].is_null(), "{yaml}");
        // `return` wins over proxy_pass in one location, as in nginx.
        assert_eq!(by_path("/both/")["return"]["status"], 403);
        assert!(
            r.contains(
                "proxy_cache_valid 1m;\n#       nginx's `return` answers instead of proxying"
            ),
            "{r}"
        );
        // The proxying route keeps its place: last, as the shortest prefix.
        assert_eq!(routes.last().unwrap()["upstream"], "127.0.0.1:9001");
    }

    #[test]
    fn what_return_cannot_say_is_reported() {
        let (yaml, v, i) = import_http(
            "server {\n listen 127.0.0.1:8080;\n\
               location / { proxy_pass http://127.0.0.1:9001; }\n\
               location /a/ { return 444; }\n\
               location /b/ { return 301 https://$hostname$request_uri; }\n\
               location /c/ { return 302 https://${host}/; }\n\
               location /d/ { return 399; }\n\
               location /e/ { return 301; }\n}",
        );
        let r = report(&yaml);
        for want in [
            "nginx.conf:7 return 301 https://$hostname$request_uri;\n#       unknown variable `$hostname`",
            "nginx.conf:8 return 302 \"https://${host}/\";\n#       `${…}`",
            "nginx.conf:9 return 399;\n#       `399`: weir's `return` answers",
            "nginx.conf:10 return 301;\n#       a redirect without a URL",
        ] {
            assert!(r.contains(want), "{want} missing from\n{r}");
        }
        assert_eq!(i.left, 4, "{r}");
        // `return 444` is weir's too.
        let routes = v["routes"].as_sequence().unwrap();
        assert_eq!(routes.len(), 2, "{yaml}");
        assert_eq!(routes[0]["match"]["path_prefix"], "/a/");
        assert_eq!(routes[0]["return"]["status"], 444);
    }

    #[test]
    fn an_if_on_the_scheme_with_a_return_becomes_a_route_for_that_scheme() {
        let (yaml, v, i) = import_http(
            "server {\n listen 127.0.0.1:8080;\n server_name a.test;\n\
               if ($scheme = \"http\") { return 301 https://$host$request_uri; }\n\
               if ($scheme != https) { add_header X 1; return 302 /y; }\n\
               if ($host = b.test) { return 403; }\n\
               location /x/ { proxy_pass http://127.0.0.1:9001; }\n}",
        );
        let routes = v["routes"].as_sequence().unwrap();
        assert_eq!(routes[0]["match"]["scheme"], "http", "{yaml}");
        assert_eq!(routes[0]["match"]["host"][0], "a.test");
        assert!(routes[0]["match"]["path_prefix"].is_null());
        assert_eq!(routes[0]["return"]["status"], 301);
        assert_eq!(routes[1]["match"]["path_prefix"], "/x/", "{yaml}");
        // Only `if ($scheme …) { return …; }` is translated; the others are reported.
        let r = report(&yaml);
        assert!(r.contains("nginx.conf:7 if ($scheme != https) {"), "{r}");
        assert!(r.contains("nginx.conf:8 if ($host = b.test) {"), "{r}");
        assert_eq!(i.left, 2, "{r}");
    }

    #[test]
    fn relative_locations_note_nginx_settings_weir_does_not_have() {
        let (yaml, _, i) = import_http(
            "absolute_redirect off;\nport_in_redirect off;\n\
             server {\n listen 127.0.0.1:8080;\n location / { return 301 /x; }\n}",
        );
        assert_eq!(i.left, 0, "{yaml}");
        let r = report(&yaml);
        assert!(r.contains("`absolute_redirect off`"), "{r}");
        assert!(r.contains("`port_in_redirect off`"), "{r}");
    }

    #[test]
    fn the_http_to_https_server_becomes_a_return_route_for_http_only() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), cert.key_pair.serialize_pem()).unwrap();
        let d = dir.path().display();
        let (yaml, v, i) = import_main(&format!(
            "http {{\n\
               server {{\n listen 127.0.0.1:8080 default_server;\n return 301 https://$host$request_uri;\n\
                 location /never/ {{ proxy_pass http://127.0.0.1:9009; }}\n}}\n\
               server {{\n listen 127.0.0.1:8080;\n server_name img.example.com;\n\
                 return 301 https://img.example.com$request_uri;\n}}\n\
               server {{\n listen 127.0.0.1:8443 ssl;\n server_name img.example.com;\n\
                 ssl_certificate {d}/c.pem;\n ssl_certificate_key {d}/k.pem;\n\
                 location / {{ proxy_pass http://127.0.0.1:9001; add_header X-Frame-Options DENY; }}\n}}\n}}\n"
        ));
        assert_eq!(i.left, 0, "{yaml}");
        let routes: Vec<String> = v["routes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["match"]["host"][0].as_str().unwrap_or("*"),
                    r["match"]["scheme"].as_str().unwrap_or("any"),
                    r["upstream"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| r["return"]["location"].as_str().unwrap().to_string())
                )
            })
            .collect();
        assert_eq!(
            routes,
            [
                "img.example.com http https://img.example.com$request_uri",
                "img.example.com https 127.0.0.1:9001",
                "* http https://$host$request_uri",
                "* https 127.0.0.1:9001",
            ],
            "{yaml}"
        );
        assert!(
            report(&yaml).contains("location /never/ {\n#       never reached"),
            "{yaml}"
        );
        let p = plugins(&v, 1);
        assert_eq!(p[0]["headers"]["always"], false, "{yaml}");
    }
}
