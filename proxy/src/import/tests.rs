//! Unit tests of the directive mappings: nginx text in; the YAML (which weir's own loader
//! must accept) and the report out.

use super::*;
use serde_yaml_ng::Value;

/// Imports `http` as the body of an `http {}` block (in a temp dir); returns the YAML as
/// text and value, and the import's counts.
pub(crate) fn import_http(http: &str) -> (String, Value, Imported) {
    import_main(&format!("worker_processes 1;\nhttp {{\n{http}\n}}\n"))
}

pub(crate) fn import_main(text: &str) -> (String, Value, Imported) {
    let dir = tempfile::tempdir().unwrap();
    let text = text.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("nginx.conf"), &text).unwrap();
    let imported = import_nginx(&dir.path().join("nginx.conf")).unwrap();
    let value: Value = serde_yaml_ng::from_str(&imported.yaml).unwrap();
    // weir's own loader accepts what the import wrote.
    let loaded = crate::config::parse(
        &imported.yaml,
        &weir_plugins::Registry::builtin(),
        &|_| None,
        None,
    );
    if let Err(e) = loaded {
        panic!("weir rejects the import: {:?}\n{}", e.0, imported.yaml);
    }
    (imported.yaml.clone(), value, imported)
}

/// The report section of the YAML (everything after the document).
pub(crate) fn report(yaml: &str) -> &str {
    yaml.find("\n# NOT TRANSLATED")
        .or_else(|| yaml.find("\n# Translated with"))
        .or_else(|| yaml.find("\n# Ignored"))
        .map_or("", |i| &yaml[i..])
}

pub(crate) fn plugins(v: &Value, route: usize) -> Vec<Value> {
    v["routes"][route]["plugins"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn limit_req_zone_and_limit_req_with_inheritance() {
    let (yaml, v, i) = import_http(
        "limit_req_zone $binary_remote_addr zone=ip:1m rate=10r/s;\n\
         limit_req_zone $http_x_api_key$host zone=key:10m rate=30r/m;\n\
         limit_req_status 429;\n\
         server {\n listen 127.0.0.1:8080;\n limit_req zone=ip burst=20 nodelay;\n\
           location / { proxy_pass http://127.0.0.1:9001; }\n\
           location /api/ { limit_req zone=ip burst=5 delay=2; limit_req zone=key; limit_req_dry_run on;\n\
             proxy_pass http://127.0.0.1:9001; }\n}",
    );
    assert_eq!(i.left, 0, "{yaml}");
    assert_eq!(v["limits"]["ip"]["key"], "client_ip");
    assert_eq!(v["limits"]["ip"]["rate"], "10r/s");
    assert_eq!(v["limits"]["ip"]["capacity"], 16384);
    assert_eq!(v["limits"]["key"]["key"][0], "header:X-Api-Key");
    assert_eq!(v["limits"]["key"]["key"][1], "host");
    // Longest prefix first; the server's limit_req is inherited only where the location
    // has none of its own.
    assert_eq!(v["routes"][0]["match"]["path_prefix"], "/api/");
    let api = plugins(&v, 0);
    assert_eq!(api[0]["limit_req"]["burst"], 5);
    assert_eq!(api[0]["limit_req"]["delay"], 2);
    assert_eq!(api[0]["limit_req"]["status"], 429);
    assert_eq!(api[0]["limit_req"]["dry_run"], true);
    assert_eq!(api[1]["limit_req"]["zone"], "key");
    let root = plugins(&v, 1);
    assert_eq!(root.len(), 1);
    assert_eq!(root[0]["limit_req"]["nodelay"], true);
    assert_eq!(root[0]["limit_req"]["burst"], 20);
    assert!(
        yaml.contains("# nginx.conf:8 limit_req zone=ip burst=20 nodelay;\n"),
        "{yaml}"
    );
}

#[test]
fn limit_conn_access_and_real_ip() {
    let (yaml, v, i) = import_http(
        "limit_conn_zone $binary_remote_addr zone=addr:10m;\n\
         set_real_ip_from 10.0.0.0/8;\n real_ip_header X-Forwarded-For;\n real_ip_recursive on;\n\
         server {\n listen 127.0.0.1:8080;\n\
           location / { limit_conn addr 16; limit_conn_status 429;\n\
             deny 203.0.113.9; allow 10.0.0.0/8; deny all; proxy_pass http://127.0.0.1:9001; }\n\
           location /open/ { deny all; proxy_pass http://127.0.0.1:9001; }\n\
           location /mixed/ { allow 10.0.0.5; deny 10.0.0.0/8; proxy_pass http://127.0.0.1:9001; }\n}",
    );
    let root = plugins(&v, 2);
    assert_eq!(root[0]["limit_conn"]["key"], "client_ip");
    assert_eq!(root[0]["limit_conn"]["max"], 16);
    assert_eq!(root[0]["limit_conn"]["status"], 429);
    assert_eq!(root[1]["access"]["deny"][0], "203.0.113.9");
    assert_eq!(root[1]["access"]["allow"][0], "10.0.0.0/8");
    let open = plugins(&v, 1);
    assert_eq!(open[0]["access"]["deny"][0], "0.0.0.0/0");
    assert_eq!(open[0]["access"]["deny"][1], "::/0");
    // allow before deny without `deny all`: weir's lists cannot say it.
    assert_eq!(v["routes"][0]["match"]["path_prefix"], "/mixed/");
    assert!(plugins(&v, 0).is_empty());
    assert_eq!(i.left, 2, "{yaml}");
    assert!(
        report(&yaml).contains("nginx.conf:12 allow 10.0.0.5;"),
        "{yaml}"
    );
    assert_eq!(v["server"]["trusted_proxies"][0], "10.0.0.0/8");
    assert_eq!(v["server"]["real_ip_header"], "X-Forwarded-For");
}

#[test]
fn upstream_blocks_become_tiers_and_location_settings_the_upstream() {
    let (yaml, v, i) = import_http(
        "upstream images {\n server 127.0.0.1:9001 weight=5 max_fails=3 fail_timeout=30s;\n\
           server 127.0.0.1:9002 max_fails=3 fail_timeout=30s;\n\
           server 127.0.0.1:9003 down;\n\
           server 127.0.0.1:9100 backup max_fails=3 fail_timeout=30s;\n keepalive 32;\n}\n\
         server {\n listen 127.0.0.1:8080;\n\
           location / { proxy_pass http://images; proxy_set_header Host $host;\n\
             proxy_next_upstream error timeout http_502 http_404; proxy_next_upstream_tries 3;\n\
             proxy_connect_timeout 2s; proxy_read_timeout 30s; }\n\
           location /slow/ { proxy_pass http://images; proxy_read_timeout 2m; }\n}",
    );
    assert_eq!(i.left, 0, "{yaml}");
    let up = &v["upstreams"]["images"];
    assert_eq!(up["tiers"][0]["name"], "images");
    assert_eq!(up["tiers"][0]["servers"][0]["weight"], 5);
    assert_eq!(up["tiers"][0]["servers"][1], "127.0.0.1:9002");
    assert_eq!(up["tiers"][0]["servers"].as_sequence().unwrap().len(), 2);
    assert_eq!(up["tiers"][1]["name"], "images_backup");
    assert_eq!(up["tiers"][1]["servers"][0], "127.0.0.1:9100");
    assert_eq!(up["max_fails"], 3);
    assert_eq!(up["fail_timeout"], "30s");
    assert_eq!(up["keepalive"], 32);
    assert_eq!(up["next_upstream"][3], "http_404");
    assert_eq!(up["next_upstream_tries"], 3);
    assert_eq!(up["read_timeout"], "30s");
    // Another location's settings: an upstream of its own, sending nginx's default Host
    // (the upstream's name).
    assert_eq!(v["routes"][0]["upstream"], "images_2");
    let slow = &v["upstreams"]["images_2"];
    assert_eq!(slow["read_timeout"], "2m");
    assert_eq!(slow["tiers"][0]["servers"][0]["host"], "images");
    assert!(report(&yaml).contains("`down`: left out"), "{yaml}");
}

#[test]
fn error_page_to_a_named_location_becomes_further_tiers() {
    let (yaml, v, i) = import_http(
        "upstream edge { server 127.0.0.1:9001; }\nupstream origin { server 127.0.0.1:9002; }\n\
         upstream last { server 127.0.0.1:9003; }\n\
         server {\n listen 127.0.0.1:8080;\n\
           location / { proxy_pass http://edge; proxy_set_header Host $host;\n\
             proxy_intercept_errors on; recursive_error_pages on; error_page 502 504 = @origin; }\n\
           location @origin { proxy_pass http://origin; error_page 502 = @last; }\n\
           location @last { proxy_pass http://last; }\n}",
    );
    assert_eq!(i.left, 0, "{yaml}");
    let up = &v["upstreams"]["edge"];
    let tiers: Vec<&str> = up["tiers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["edge", "origin", "last"]);
    let next: Vec<&str> = up["next_upstream"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(next, ["error", "timeout", "http_502", "http_504"]);
    // A status weir's tiers do not act on is reported.
    let (yaml, _, i) = import_http(
        "server {\n listen 127.0.0.1:8080;\n\
           location / { proxy_pass http://127.0.0.1:9001; error_page 418 = @other; }\n\
           location @other { proxy_pass http://127.0.0.1:9002; }\n}",
    );
    assert!(i.left >= 1, "{yaml}");
    assert!(
        report(&yaml).contains("nginx.conf:5 error_page 418 = @other;"),
        "{yaml}"
    );
}

#[test]
fn cache_zone_and_its_location_settings() {
    let (yaml, v, i) = import_http(
        "proxy_cache_path {dir}/cache levels=1:2 keys_zone=img:10m max_size=5g inactive=7d;\n\
         server {\n listen 127.0.0.1:8080;\n\
           location / { proxy_pass http://127.0.0.1:9001; proxy_set_header Host $host;\n\
             proxy_cache img; proxy_cache_key $scheme$host$request_uri;\n\
             proxy_cache_valid 200 301 10m; proxy_cache_valid 404 1m;\n\
             proxy_cache_use_stale error timeout updating http_503;\n\
             proxy_cache_lock on; proxy_cache_lock_timeout 3s; proxy_cache_methods GET HEAD;\n\
             proxy_cache_bypass $http_x_no_cache $cookie_nocache; proxy_cache_revalidate on;\n\
             add_header X-Cache $upstream_cache_status; }\n\
           location /nolock/ { proxy_pass http://127.0.0.1:9001; proxy_set_header Host $host;\n\
             proxy_cache img; }\n}",
    );
    let c = &v["caches"]["img"];
    assert!(c["path"].as_str().unwrap().ends_with("/cache"));
    assert_eq!(c["max_size"], "5GiB");
    assert_eq!(c["inactive"], "7d");
    assert_eq!(c["valid"]["200"], "10m");
    assert_eq!(c["valid"]["301"], "10m");
    assert_eq!(c["valid"]["404"], "1m");
    assert_eq!(c["use_stale"][3], "http_503");
    assert_eq!(c["lock_timeout"], "3s");
    assert_eq!(c["status_header"], "X-Cache");
    let root = plugins(&v, 1);
    assert_eq!(root[0]["cache"]["bypass"][0], "header:X-No-Cache");
    assert_eq!(root[0]["cache"]["bypass"][1], "cookie:nocache");
    // The second location's settings differ from the zone's first user: reported.
    assert_eq!(i.left, 1, "{yaml}");
    assert!(
        report(&yaml).contains("weir keeps cache settings per zone"),
        "{yaml}"
    );
}

#[test]
fn servers_and_locations_in_nginx_order() {
    let (yaml, v, _) = import_http(
        "server {\n listen 127.0.0.1:8080 default_server;\n server_name _;\n\
           location / { proxy_pass http://127.0.0.1:9001; }\n}\n\
         server {\n listen 127.0.0.1:8080;\n server_name *.img.example.com;\n\
           location / { proxy_pass http://127.0.0.1:9002; }\n}\n\
         server {\n listen 127.0.0.1:8080;\n server_name img.example.com .static.example.com;\n\
           location /a/ { proxy_pass http://127.0.0.1:9003; }\n\
           location ^~ /a/b/ { proxy_pass http://127.0.0.1:9003; }\n\
           location / { proxy_pass http://127.0.0.1:9003; }\n\
           location ~ \\.php$ { proxy_pass http://127.0.0.1:9004; }\n}",
    );
    let routes: Vec<String> = v["routes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{:?} {}",
                r["match"]["host"]
                    .as_sequence()
                    .map(|h| h
                        .iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .collect::<Vec<_>>())
                    .unwrap_or_default(),
                r["match"]["path_prefix"].as_str().unwrap_or("/")
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            "[\"img.example.com\", \"static.example.com\"] /a/b/",
            "[\"img.example.com\", \"static.example.com\"] /a/",
            "[\"img.example.com\", \"static.example.com\"] /",
            "[\"*.static.example.com\"] /a/b/",
            "[\"*.static.example.com\"] /a/",
            "[\"*.static.example.com\"] /",
            "[\"*.img.example.com\"] /",
            "[] /",
        ],
        "{yaml}"
    );
    assert!(
        report(&yaml).contains("regular-expression location"),
        "{yaml}"
    );
}

#[test]
fn server_settings_listeners_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), cert.key_pair.serialize_pem()).unwrap();
    let d = dir.path().display();
    let (yaml, v, i) = import_main(&format!(
        "worker_processes 3;\nworker_shutdown_timeout 20s;\n\
         http {{\n client_max_body_size 10m;\n large_client_header_buffers 4 16k;\n\
           access_log {d}/access.log combined;\n ssl_certificate {d}/c.pem;\n\
           ssl_certificate_key {d}/k.pem;\n\
           server {{\n listen 127.0.0.1:8080;\n listen 127.0.0.1:8443 ssl http2;\n\
             location / {{ proxy_pass http://127.0.0.1:9001; proxy_set_header Host $host;\n\
               add_header X-Served-By weir always; proxy_hide_header X-Powered-By;\n\
               proxy_set_header X-Env prod; proxy_set_header Cookie \"\"; }}\n}}\n}}\n"
    ));
    assert_eq!(i.left, 0, "{yaml}");
    let s = &v["server"];
    assert_eq!(s["threads"], 3);
    assert_eq!(s["grace_period"], "20s");
    assert_eq!(s["max_request_body"], "10MiB");
    assert_eq!(s["max_header_line"], "16KiB");
    assert_eq!(s["max_uri"], "16KiB");
    assert_eq!(s["max_header_bytes"], "64KiB");
    assert_eq!(s["access_log"]["format"], "combined");
    assert_eq!(s["listen"][0], "127.0.0.1:8080");
    assert_eq!(s["listen"][1]["addr"], "127.0.0.1:8443");
    assert_eq!(s["listen"][1]["http2"], true);
    assert!(s["listen"][1]["tls"]["cert"]
        .as_str()
        .unwrap()
        .ends_with("c.pem"));
    let h = &plugins(&v, 0)[0]["headers"];
    assert_eq!(h["request"]["set"]["X-Env"], "prod");
    assert_eq!(h["request"]["remove"][0], "Cookie");
    assert_eq!(h["response"]["add"]["X-Served-By"], "weir");
    assert_eq!(h["response"]["remove"][0], "X-Powered-By");
}

#[test]
fn what_does_not_translate_is_listed_with_file_and_line() {
    let (yaml, _, i) = import_http(
        "gzip on;\n\
         server {\n listen 127.0.0.1:8080;\n\
           location = /health { return 399; }\n\
           location / { rewrite ^/old/(.*)$ /new/$1 break; proxy_pass http://127.0.0.1:9001;\n\
             proxy_set_header Host $host; proxy_set_header X-Id $request_id; }\n\
           location /files/ { root /var/www; }\n}",
    );
    let r = report(&yaml);
    for want in [
        "nginx.conf:3 gzip on;",
        "nginx.conf:6 return 399;",
        "nginx.conf:7 rewrite ^/old/(.*)$ /new/$1 break;",
        "nginx.conf:8 proxy_set_header X-Id $request_id;",
        "nginx.conf:9 location /files/ {",
        "nginx.conf:9 root /var/www;",
    ] {
        assert!(r.contains(want), "{want} missing from\n{r}");
    }
    assert_eq!(i.left, 6, "{r}");
}

#[test]
fn nginx_syntax_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.conf");
    for (text, want) in [
        ("http {\n server {\n  listen 80\n }\n}\n", "nginx.conf:4: unexpected \"}\""),
        ("http {\n limit_req_zone $binary_remote_addr zone=z:1m;\n}\n", "nginx.conf:2: no rate in \"limit_req_zone\" directive"),
        ("http {\n server {\n  location / { proxy_pass ftp://x; }\n }\n}\n", "nginx.conf:3: invalid URL prefix in \"ftp://x\" in \"proxy_pass\" directive"),
        ("http {\n server {\n  listen 80;\n  proxy_cache nowhere;\n  location / { proxy_pass http://127.0.0.1:1; }\n }\n}\n", "nginx.conf:4: unknown cache zone \"nowhere\" in \"proxy_cache\" directive"),
    ] {
        std::fs::write(&path, text).unwrap();
        let e = import_nginx(&path).err().unwrap().to_string();
        assert_eq!(e, want.replace("nginx.conf", &path.display().to_string()).replace(&format!("{}:", path.display()), "nginx.conf:"), "{text}");
    }
}

#[test]
fn servers_sharing_names_across_listeners() {
    // The usual pair: a port-80 server that redirects, the TLS server that serves. The
    // redirect is reported; the serving server keeps its names and routes.
    let (yaml, v, i) = import_http(
        "server {\n listen 127.0.0.1:8080;\n server_name img.example.com;\n\
           return 301 https://$host$request_uri;\n}\n\
         server {\n listen 127.0.0.1:8081;\n server_name img.example.com;\n\
           location / { proxy_pass http://127.0.0.1:9001; }\n}\n\
         server {\n listen 127.0.0.1:8082;\n server_name img.example.com;\n\
           location / { proxy_pass http://127.0.0.1:9002; }\n}",
    );
    assert_eq!(v["server"]["listen"].as_sequence().unwrap().len(), 3);
    assert_eq!(v["routes"][0]["match"]["host"][0], "img.example.com");
    assert_eq!(v["routes"][0]["upstream"], "127.0.0.1:9001");
    let r = report(&yaml);
    assert!(r.contains("nginx.conf:6 return 301"), "{r}");
    assert!(
        r.contains("nginx.conf:15 server_name img.example.com;")
            && r.contains("also a name of the server at nginx.conf:10"),
        "{r}"
    );
    assert_eq!(i.left, 2, "{r}");
}

#[test]
fn exact_locations_become_exact_path_routes_first() {
    let (yaml, v, i) = import_http(
        "server {\n listen 127.0.0.1:8080;\n\
           location / { proxy_pass http://127.0.0.1:9001; }\n\
           location /healthz/ { proxy_pass http://127.0.0.1:9002; }\n\
           location = /healthz { proxy_pass http://127.0.0.1:9003; }\n}",
    );
    assert_eq!(i.left, 0, "{yaml}");
    assert_eq!(v["routes"][0]["match"]["path"], "/healthz", "{yaml}");
    assert_eq!(v["routes"][0]["upstream"], "127.0.0.1:9003");
    assert_eq!(v["routes"][1]["match"]["path_prefix"], "/healthz/");
    assert!(v["routes"][2]["match"].is_null(), "{yaml}");
}
