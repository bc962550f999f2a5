//! Why a directive the importer did not use is left behind, or why it may be ignored: the
//! reasons shown in the report for every directive no translation consumed.

/// Directives without effect on what a client or upstream sees through weir, and why.
pub fn ignored_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "user"
        | "daemon"
        | "master_process"
        | "pid"
        | "lock_file"
        | "working_directory"
        | "worker_rlimit_nofile"
        | "worker_rlimit_core"
        | "worker_priority"
        | "worker_cpu_affinity"
        | "pcre_jit"
        | "timer_resolution"
        | "env"
        | "load_module"
        | "thread_pool"
        | "worker_aio_requests"
        | "debug_points"
        | "ssl_engine" => "process setting: weir runs as one process in the foreground",
        "events" | "worker_connections" | "use" | "multi_accept" | "accept_mutex"
        | "accept_mutex_delay" => "connection handling: weir's event loop needs no tuning",
        "error_log"
        | "limit_req_log_level"
        | "limit_conn_log_level"
        | "log_not_found"
        | "rewrite_log"
        | "open_log_file_cache"
        | "log_subrequest" => "logging detail: weir logs to stderr (RUST_LOG sets the level)",
        "proxy_temp_path"
        | "fastcgi_temp_path"
        | "uwsgi_temp_path"
        | "scgi_temp_path"
        | "proxy_max_temp_file_size"
        | "proxy_temp_file_write_size" => {
            "temp files: weir streams response bodies, it does not spool them"
        }
        "sendfile"
        | "sendfile_max_chunk"
        | "tcp_nopush"
        | "tcp_nodelay"
        | "aio"
        | "aio_write"
        | "directio"
        | "directio_alignment"
        | "output_buffers"
        | "postpone_output"
        | "read_ahead"
        | "send_lowat"
        | "open_file_cache"
        | "open_file_cache_valid"
        | "open_file_cache_min_uses"
        | "open_file_cache_errors" => "I/O tuning: no equivalent needed in weir",
        "proxy_buffering"
        | "proxy_buffers"
        | "proxy_buffer_size"
        | "proxy_busy_buffers_size"
        | "client_body_buffer_size"
        | "client_header_buffer_size"
        | "connection_pool_size"
        | "request_pool_size"
        | "proxy_headers_hash_max_size"
        | "proxy_headers_hash_bucket_size"
        | "server_names_hash_max_size"
        | "server_names_hash_bucket_size"
        | "variables_hash_max_size"
        | "variables_hash_bucket_size"
        | "types_hash_max_size"
        | "types_hash_bucket_size" => "buffer or table size: weir sizes these itself",
        "types" | "default_type" | "charset_types" | "index" => {
            "file serving: weir proxies, it serves no local files"
        }
        "keepalive_requests" | "keepalive_time" => {
            "weir keeps client and upstream connections for any number of requests"
        }
        "ssl_session_cache"
        | "ssl_session_timeout"
        | "ssl_session_tickets"
        | "ssl_prefer_server_ciphers"
        | "ssl_buffer_size"
        | "ssl_ecdh_curve"
        | "ssl_dhparam"
        | "ssl_ciphers" => "TLS tuning: weir (rustls) uses its own safe defaults",
        "proxy_http_version" => "weir speaks HTTP/1.1 to upstreams (HTTP/2 with `http2: true`)",
        "server_tokens" => "weir does not add nginx's Server header",
        "zone" => "shared memory zone: weir's upstream state is shared by its threads",
        "proxy_socket_keepalive"
        | "reset_timedout_connection"
        | "lingering_close"
        | "lingering_time"
        | "lingering_timeout"
        | "proxy_ssl_session_reuse" => "connection detail: no equivalent needed in weir",
        _ => return None,
    })
}

/// Why a directive weir has no equivalent for is left behind.
pub fn left_reason(name: &str) -> &'static str {
    match name {
        "gzip" | "gzip_types" | "gzip_comp_level" | "gzip_min_length" | "gzip_proxied"
        | "gzip_vary" | "gzip_buffers" | "gzip_disable" | "gzip_http_version" | "gzip_static"
        | "gunzip" => "weir does not compress responses (the upstream's encoding passes through)",
        "root" | "alias" | "try_files" | "autoindex" | "expires" | "etag" | "internal" => {
            "weir serves no local files and sets no Expires itself"
        }
        "rewrite" | "set" | "if" | "break" | "map" | "geo" | "split_clients" => {
            "weir has no rewrite module or computed variables"
        }
        "location" => "regular-expression locations are not translated (weir matches prefixes)",
        "auth_basic" | "auth_basic_user_file" | "auth_request" | "auth_request_set"
        | "satisfy" => "weir has no authentication plugin",
        "ssl_verify_client" | "ssl_client_certificate" | "ssl_trusted_certificate"
        | "ssl_verify_depth" | "ssl_crl" | "ssl_stapling" | "ssl_stapling_verify"
        | "ssl_ocsp" => "weir has no client certificates or OCSP stapling",
        "keepalive_timeout" => "weir keeps idle client connections 75 s (not configurable)",
        "proxy_send_timeout" => "weir's read_timeout also bounds writes to the upstream",
        "limit_rate" | "limit_rate_after" | "proxy_limit_rate" => "weir has no bandwidth limit",
        "proxy_redirect" => "weir does not rewrite Location headers from upstreams",
        "proxy_cookie_domain" | "proxy_cookie_path" | "proxy_cookie_flags" => {
            "weir does not rewrite cookies from upstreams"
        }
        "proxy_intercept_errors" | "error_page" => {
            "weir passes upstream error pages through; only the failover idiom (error_page … = @next) is translated"
        }
        "stream" | "mail" => "weir proxies HTTP only",
        "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass" => {
            "weir proxies to HTTP upstreams only"
        }
        "least_conn" | "ip_hash" => "weir balances by round robin, random or a URI/cache-key hash",
        "proxy_no_cache" => "weir has no condition to skip storing a response",
        "proxy_cache_min_uses" | "proxy_cache_background_update" | "proxy_cache_purge"
        | "proxy_cache_max_range_offset" | "proxy_ignore_headers" | "proxy_cache_lock_age" => {
            "weir's cache has no such setting"
        }
        "resolver" | "resolver_timeout" => {
            "weir resolves upstream names with the system resolver (dns_refresh)"
        }
        "log_format" => "weir writes the combined or the JSON format",
        "limit_conn_dry_run" => "weir's limit_conn has no dry run",
        "proxy_method" | "proxy_set_body" | "proxy_pass_request_body"
        | "proxy_pass_request_headers" | "proxy_store" | "proxy_store_access" => {
            "weir forwards the request as received"
        }
        "proxy_ignore_client_abort" => "weir stops the upstream request when the client leaves",
        "ssl_protocols" => "weir offers TLS 1.2 and 1.3 only",
        "http2_max_concurrent_streams" | "http2_max_field_size" | "http2_max_header_size"
        | "http2_idle_timeout" | "http2_recv_timeout" | "http2_chunk_size" => {
            "weir's HTTP/2 settings are Pingora's"
        }
        "merge_slashes" | "underscores_in_headers" | "ignore_invalid_headers" => {
            "weir normalizes paths and drops headers with `_` as nginx's defaults do"
        }
        "add_trailer" | "sub_filter" | "ssi" | "addition_types" | "add_before_body"
        | "add_after_body" | "image_filter" => "weir does not rewrite response bodies",
        _ => "weir has no equivalent for this directive",
    }
}
