//! Values checked at load: every bad one named by its key, secrets never echoed.

use super::*;

#[test]
fn every_bad_value_names_its_key() {
    let cases = [
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nsaturation_warn = 1.5\n",
            "postgres.saturation_warn: must be between 0 and 1, got 1.5",
        ),
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nsaturation_warn = 0.97\n",
            "postgres.saturation_warn: must be below saturation_fail (0.95), got 0.97",
        ),
        (
            "[postgres]\n",
            "postgres.url: required: set url, url_file or the DATABASE_URL environment variable",
        ),
        (
            "[postgres]\nurl = \"mysql://root:hunter2@db/x\"\n",
            "postgres.url: must be a postgres:// or postgresql:// URL (or key=value connection string)",
        ),
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nlock_wait = \"10ms\"\n",
            "postgres.lock_wait: must be between 100ms and 1h, got 10ms",
        ),
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nidle_in_transaction_warn = \"2d\"\n",
            "postgres.idle_in_transaction_warn: must be between 1s and 1day, got 2days",
        ),
        (
            "[postgres]\nurl = \"postgres://a:hunter2@b/c?sslcert=/c.crt\"\n",
            "postgres.url: sslcert and sslkey go together: set both (the client certificate and its key) or neither",
        ),
        (
            "[pgbouncer]\n",
            "pgbouncer.url: required: set url or url_file (the admin console, database pgbouncer)",
        ),
        (
            "[pgbouncer]\nurl = \"postgres://v@pgb:6432/pgbouncer\"\nwait_warn = \"5s\"\n",
            "pgbouncer.wait_warn: must be below wait_fail (5s), got 5s",
        ),
        (
            "[pgbouncer]\nurl = \"postgres://v@pgb:6432/pgbouncer\"\ndatabases = [\"gw\", \"gw\"]\n",
            "pgbouncer.databases[1]: \"gw\" is listed twice",
        ),
        (
            "[defaults]\ninterval = \"5\"\n",
            "defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got \"5\"",
        ),
        (
            "[defaults]\ninterval = 5\n",
            "defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got 5",
        ),
        (
            "[defaults]\ntimeout = \"10s\"\n",
            "defaults.timeout: must not exceed the interval (5s), got 10s",
        ),
        (
            "[system]\nfailure_threshold = 0\n",
            "system.failure_threshold: must be between 1 and 100, got 0",
        ),
        (
            "listen = \"nowhere\"\n",
            "listen: expected an address such as 0.0.0.0:9476, got \"nowhere\"",
        ),
        (
            "colour = \"blue\"\n",
            "colour: unknown key; expected one of listen, defaults, shutdown, diag, postgres, pgbouncer, jwt, gateway, upstream, system, kubernetes, sockets, fleet",
        ),
        (
            "[gateway]\nhealth_url = \"ftp://gw/healthz\"\n",
            "gateway.health_url: must be an http:// or https:// URL, got \"ftp://gw/healthz\"",
        ),
        (
            "[gateway]\nhealth_url = \"http://gw/\"\ntraffic_metrics = \"nginx\"\n",
            "gateway.traffic_metrics: unknown variant `nginx`, expected one of `generic`, `haproxy`, `caddy`, `envoy`, `traefik`, `kong`, `nginx_ingress`, `spring`",
        ),
        (
            "[gateway]\nhealth_url = \"http://gw/\"\ngroup_by = \"route-id\"\n",
            "gateway.group_by: not a Prometheus label name: \"route-id\"",
        ),
        (
            "[gateway]\nhealth_url = \"http://gw/\"\nthrottled_ratio_warn = 5\n",
            "gateway.throttled_ratio_warn: must be between 0 and 1, got 5",
        ),
        ("[jwt]\nalgorithm = \"RS256\"\n", "jwt.jwks_url: required for RS256"),
        (
            "[jwt]\nalgorithm = \"ES256\"\njwks_url = \"http://auth/jwks\"\nvalidate_url = \"http://gw/v\"\n",
            "jwt.validate_url: needs HS256, HS384 or HS512 (vigil signs its probe tokens with the shared secret), got ES256",
        ),
        (
            "[jwt]\nalgorithm = \"none\"\nsecret_env = \"X\"\n",
            "jwt.algorithm: unknown variant `none`, expected one of `HS256`, `HS384`, `HS512`, `RS256`, `ES256`",
        ),
        (
            "[[upstream]]\nname = \"a b\"\nurl = \"http://x/\"\n",
            "upstream[0].name: must be 1 to 64 characters of letters, digits, '-', '_' and '.', got \"a b\"",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\n[[upstream]]\nname = \"a\"\nurl = \"http://y/\"\n",
            "upstream[1].name: \"a\" names another upstream too; names must be unique",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\nexpect_status = \"7xx\"\n",
            "upstream[0].expect_status: expected \"1xx\" to \"5xx\" or a list of status codes such as [200, 204], got \"7xx\"",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\nlatency_warn = \"3s\"\n",
            "upstream[0].latency_warn: must be below latency_fail (2s), got 3s",
        ),
        (
            "[diag]\ntoken_file = \"/nonexistent/vigil-token\"\n",
            "diag.token_file: cannot read /nonexistent/vigil-token: No such file or directory (os error 2)",
        ),
    ];
    for (toml, expected) in cases {
        assert_eq!(error(toml, &[]), expected, "for {toml:?}");
    }
}

#[test]
fn numeric_looking_secrets_from_the_environment_stay_strings() {
    let config = load_str("", &[("VIGIL_DIAG__TOKEN", "12345678901234567890")]).unwrap();
    assert_eq!(config.diag.token.unwrap().expose(), "12345678901234567890");
}

#[test]
fn urls_with_credentials_are_refused_without_echoing_them() {
    let message = error(
        "[gateway]\nhealth_url = \"http://admin:hunter2@gw:8080/healthz\"\n",
        &[],
    );
    assert!(
        message.starts_with("gateway.health_url: must not carry credentials"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn errors_never_show_the_database_password() {
    let message = error("[postgres]\nurl = \"mysql://root:hunter2@db/x\"\n", &[]);
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn methods_and_headers_are_parsed_at_load_and_named_when_bad() {
    let upstream = |extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\n{extra}\n");
    let cases = [
        (
            "method = \"DELETE\"",
            "upstream[0].method: must be one of GET, HEAD, POST, PUT, OPTIONS, got \"DELETE\"",
        ),
        (
            "method = \"get\"",
            "upstream[0].method: must be one of GET, HEAD, POST, PUT, OPTIONS, got \"get\"",
        ),
        (
            "headers = { \"bad header\" = \"x\" }",
            "upstream[0].headers: not a valid header name: \"bad header\"",
        ),
        (
            "headers = { X-Token = \"line\\nbreak-secret\" }",
            "upstream[0].headers.X-Token: not a valid header value",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(error(&upstream(extra), &[]), expected, "for {extra:?}");
    }
    let config = load_str(&upstream("method = \"POST\"\nheaders = { X-Api-Key = \"k\" }"), &[]).unwrap();
    let shown = view(&config);
    let only = &shown.upstreams[0];
    assert_eq!(only.method, Method::POST);
    assert_eq!(only.headers[0].0, http::header::HeaderName::from_static("x-api-key"));
    assert_eq!(only.headers[0].1, "k");
    assert_eq!(
        view(&load_str(&upstream(""), &[]).unwrap()).upstreams[0].method,
        Method::GET
    );
}

#[test]
fn the_postgres_url_is_parsed_at_load_and_named_when_bad() {
    assert_eq!(
        error("[postgres]\nurl = \"postgres://u:hunter2@h/db?sslmode=bogus\"\n", &[]),
        "postgres.url: sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"bogus\""
    );
    let message = error("[postgres]\nurl = \"postgres://u:hunter2@h:notaport/db\"\n", &[]);
    assert!(message.starts_with("postgres.url: cannot be parsed: "), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(
        error("", &[("DATABASE_URL", "postgres://u:hunter2@h/db?sslmode=nope")]),
        "postgres.url (from DATABASE_URL): sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"nope\""
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    std::fs::write(&file, "postgres://gw:hunter2@db/gw?sslmode=require\n").unwrap();
    let config = load_str(&format!("[postgres]\nurl_file = {file:?}\n"), &[]).unwrap();
    let postgres = view(&config).postgres.unwrap();
    assert_eq!(postgres.target.sslmode, SslMode::Require);
    assert_eq!(postgres.target.config.get_hosts().len(), 1);
    std::fs::write(&file, "mysql://root:hunter2@db/x\n").unwrap();
    assert_eq!(
        error(&format!("[postgres]\nurl_file = {file:?}\n"), &[]),
        "postgres.url_file: must be a postgres:// or postgresql:// URL (or key=value connection string)"
    );
}

#[test]
fn grpc_and_http_version_keys_belong_to_their_kinds() {
    let entry = |url: &str, extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"{url}\"\n{extra}\n");
    let config = load_str(
        &entry("grpcs://orders:9000", "grpc_service = \"orders.v1.Orders\""),
        &[],
    )
    .unwrap();
    assert!(
        matches!(view(&config).upstreams[0].url, UpstreamUrl::Grpcs(ref t) if t.host == "orders" && t.port == 9000)
    );
    assert_eq!(
        view(&config).upstreams[0].grpc_service.as_deref(),
        Some("orders.v1.Orders")
    );
    let config = load_str(&entry("https://a/", "http_version = \"2\""), &[]).unwrap();
    assert_eq!(view(&config).upstreams[0].http_version, Some(HttpVersion::Http2));
    assert_eq!(
        view(&load_str(&entry("http://a/", ""), &[]).unwrap()).upstreams[0].http_version,
        None
    );
    for (toml, expected) in [
        (
            entry("grpc://orders", ""),
            "upstream[0].url: must name a port, such as grpc://orders:6379",
        ),
        (
            entry("grpc://orders:9000", "http_version = \"2\""),
            "upstream[0].http_version: applies only to http:// and https:// upstreams, not to grpc://orders:9000",
        ),
        (
            entry("https://a/", "grpc_service = \"\""),
            "upstream[0].grpc_service: applies only to grpc:// and grpcs:// upstreams, not to https://a/",
        ),
        (
            entry("grpc://orders:9000", "grpc_service = \"a\\nb\""),
            "upstream[0].grpc_service: must be at most 200 characters without control characters, such as \"orders.v1.Orders\"",
        ),
    ] {
        assert_eq!(error(&toml, &[]), expected, "for {toml:?}");
    }
    assert!(error(&entry("http://a/", "http_version = \"3\""), &[]).starts_with("upstream[0].http_version: "));
}

#[test]
fn sockets_watch_the_postgres_ports_unless_told_and_a_reload_sees_them_change() {
    let ports = |toml: &str| -> Option<Vec<u16>> {
        let config = load_str(toml, &[]).unwrap();
        sections::<sockets::Kind>(&config).pop().unwrap().keys.ports
    };
    assert_eq!(ports("[sockets]\n"), Some(vec![]), "no [postgres]: no port");
    assert_eq!(
        ports("[postgres]\nurl = \"postgres://u@db/gw\"\n[sockets]\n"),
        Some(vec![5432]),
        "libpq's default port"
    );
    assert_eq!(
        ports("[postgres]\nurl = \"host=a,b port=6432,6433 dbname=gw\"\n[sockets]\n"),
        Some(vec![6432, 6433])
    );
    assert_eq!(
        ports("[postgres]\nurl = \"host=/run/postgresql dbname=gw\"\n[sockets]\n"),
        Some(vec![]),
        "a Unix socket has no port"
    );
    assert_eq!(
        ports("[postgres]\nurl = \"postgres://u@db:6432/gw\"\n[sockets]\nports = [6379]\n"),
        Some(vec![6379]),
        "ports as written win"
    );
    let before = load_str("[postgres]\nurl = \"postgres://u@db:5432/gw\"\n[sockets]\n", &[]).unwrap();
    let after = load_str("[postgres]\nurl = \"postgres://u@db:6432/gw\"\n[sockets]\n", &[]).unwrap();
    assert_ne!(
        before.check("sockets"),
        after.check("sockets"),
        "a reload rebuilds a [sockets] whose default port changed"
    );
    let error = error("[sockets]\nports = [0]\n", &[]);
    assert!(error.starts_with("sockets.ports: "), "{error}");
}
