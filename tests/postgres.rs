//! The `postgres` check against real, ephemeral PostgreSQL clusters (one per test): figures,
//! a killed and restarted server, saturation by real clients, a server that never answers,
//! wrong credentials, a missing database, long queries; and that the password never shows.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::{FakeServer, PgServer, Vigil, wait_until};

const PASSWORD: &str = "gw-s3cret-Pa55";

/// A `[postgres]` section for `url` with fast timing.
fn section(url: &str, extra: &str) -> String {
    format!("[postgres]\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n{extra}")
}

fn diag(vigil: &Vigil) -> Json {
    serde_json::from_str(&vigil.get("/diag?format=json").body).expect("/diag is JSON")
}

fn observed(diag: &Json, name: &str) -> Json {
    diag["checks"][format!("postgres:{name}")][0]["observedValue"].clone()
}

fn last_details(diag: &Json) -> Json {
    diag["vigil"]["checks"]["postgres"]["last_run"]["details"].clone()
}

fn metric(vigil: &Vigil, line_start: &str) -> Option<f64> {
    vigil
        .get("/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(line_start).and_then(|rest| rest.trim().parse().ok()))
}

/// Everything the agent says to the outside: responses and its log.
#[track_caller]
fn assert_secret_absent(vigil: &Vigil, secret: &str) {
    for path in [
        "/readyz?verbose",
        "/readyz/postgres",
        "/diag",
        "/diag?format=json",
        "/metrics",
    ] {
        let body = vigil.get(path).body;
        assert!(!body.contains(secret), "{path} shows the password:\n{body}");
    }
    assert!(!vigil.logs().contains(secret), "the log shows the password");
}

#[test]
fn a_running_server_passes_with_plausible_figures_and_no_password_anywhere() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let vigil = Vigil::start(&section(&url, "pool_size = 2\n"));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(
        vigil.get("/readyz?verbose").body,
        "[+]postgres ok\n[+]system ok\nreadyz check passed\n"
    );

    let d = diag(&vigil);
    assert_eq!(d["checks"]["postgres:query_duration"][0]["componentType"], "datastore");
    let q = observed(&d, "query_duration").as_f64().unwrap();
    assert!(q > 0.0 && q < 1.0, "query_duration {q}");
    assert_eq!(observed(&d, "max_connections"), 17.0, "20 - 3 superuser reserved");
    let in_use = observed(&d, "connections_in_use").as_f64().unwrap();
    assert!(
        (2.0..=4.0).contains(&in_use),
        "the agent's own two connections (+ psql): {in_use}"
    );
    let saturation = observed(&d, "saturation").as_f64().unwrap();
    assert!((saturation - in_use / 17.0).abs() < 1e-9);
    assert_eq!(observed(&d, "in_recovery"), "false");
    assert_eq!(observed(&d, "long_queries"), 0.0);
    let details = last_details(&d);
    assert_eq!(details["kept_connection"]["open"], true);
    assert!(
        details["server"]["version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    let top = details["connections"]["top_application_names"].as_array().unwrap();
    assert!(
        top.iter()
            .any(|a| a["application_name"] == "vigil" && a["connections"].as_i64() >= Some(2)),
        "{top:?}"
    );

    let text = vigil.get("/diag").body;
    assert!(
        text.lines()
            .any(|l| l.contains("top_application_names") && l.contains("vigil=")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("connections_by_state") && l.contains("idle=")),
        "{text}"
    );

    assert_eq!(metric(&vigil, "vigil_postgres_up "), Some(1.0));
    assert_eq!(metric(&vigil, "vigil_postgres_max_connections "), Some(17.0));
    assert!(metric(&vigil, "vigil_postgres_connections{state=\"idle\"} ").unwrap() >= 1.0);
    assert_eq!(
        metric(&vigil, "vigil_postgres_pool_connections{state=\"idle\"} "),
        Some(1.0)
    );
    assert!(metric(&vigil, "vigil_postgres_query_duration_seconds_count ").unwrap() >= 1.0);
    assert!(metric(&vigil, "vigil_postgres_connection_saturation_ratio ").unwrap() > 0.0);
    let vigil_conns: usize = pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vigil'")
        .parse()
        .unwrap();
    assert!(vigil_conns <= 3, "at most pool_size + 1 connections: {vigil_conns}");
    assert_secret_absent(&vigil, PASSWORD);

    support::assert_promtool_accepts(&vigil.get("/metrics").body);
}

#[test]
fn a_killed_server_is_reported_at_once_and_a_restarted_one_passes_again() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    // The default interval: detection must not wait for it.
    let vigil = Vigil::start(&format!("[postgres]\nurl = \"{url}\"\ntimeout = \"2s\"\n"));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));

    wait_until(Duration::from_secs(5), "the kept connection to be open", || {
        last_details(&diag(&vigil))["kept_connection"]["open"] == true
    });
    let killed = Instant::now();
    pg.stop_immediate();
    // Milliseconds when the machine is quiet (the kept connection's end wakes the check); the
    // deadline stays under the 5 s interval plus a margin for a loaded test machine, where one
    // run of 30 took longer than 3 s.
    wait_until(Duration::from_secs(4), "/readyz to fail after the server died", || {
        vigil.get("/readyz").status == 503
    });
    let detected = killed.elapsed();
    eprintln!("postgres stopped (-m immediate): /readyz 503 after {detected:?}");
    // The class, not one wording: a server in immediate shutdown may first answer "the database
    // system is shutting down" before its port closes ("connection refused").
    let body = vigil.get("/readyz?verbose").body;
    assert!(body.starts_with("[-]postgres failed: "), "{body}");
    assert_eq!(diag(&vigil)["vigil"]["checks"]["postgres"]["kind"], "refused", "{body}");
    assert_eq!(metric(&vigil, "vigil_postgres_up "), Some(0.0));
    let saturation = metric(&vigil, "vigil_postgres_connection_saturation_ratio ");
    assert!(
        saturation.is_some_and(f64::is_nan),
        "unknown while down, not the last value: {saturation:?}"
    );
    let d = diag(&vigil);
    let hint = d["vigil"]["checks"]["postgres"]["hint"].as_str().unwrap();
    assert!(hint.contains("netstat -an | grep :5432"), "{hint}");

    let restarted = Instant::now();
    pg.start_again();
    let accepting = Instant::now();
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    eprintln!(
        "postgres started again: /readyz 200 after {:?} ({:?} after pg_ctl start returned)",
        restarted.elapsed(),
        accepting.elapsed()
    );
    // While the port refused, the check retried every second instead of every 5 s interval.
    assert!(
        accepting.elapsed() < Duration::from_secs(3),
        "{:?}",
        accepting.elapsed()
    );
    assert_eq!(metric(&vigil, "vigil_postgres_up "), Some(1.0));
    assert!(metric(&vigil, "vigil_postgres_connection_saturation_ratio ").is_some_and(|s| s > 0.0));
    assert!(vigil.logs().contains("Kept PostgreSQL connection lost"));
}

#[test]
fn saturation_by_real_clients_warns_then_fails_while_the_server_stays_up() {
    let pg = PgServer::builder().max_connections(20).start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let app = pg.create_user_db("app", "app-pw");
    let vigil = Vigil::start(&section(
        &url,
        "pool_size = 1\nsaturation_warn = 0.5\nsaturation_fail = 0.9\n",
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));

    // 17 usable: the agent holds 2, 7 more is 9/17 = 53%.
    let mut sessions = pg.hold_connections(&format!("{app}?application_name=orders"), 7);
    let mut body = String::new();
    let warned = support::poll_until(Duration::from_secs(5), || {
        body = vigil.get("/readyz?verbose").body;
        body.contains("[+]postgres warn: saturation 53% of 17 usable connections (warn at 50%)")
    });
    assert!(
        warned,
        "no saturation warning:\n{body}\n{:#}",
        last_details(&diag(&vigil))
    );
    assert!(
        body.contains("usable connections (warn at 50%); most held by application_name \"orders\" (7)"),
        "who holds them is named:\n{body}"
    );
    assert_eq!(vigil.get("/readyz").status, 200, "warn never fails readiness");

    // Fill every usable slot, then take the agent's pool connection away: its pool must open a new
    // one, the server refuses it (53300), and the kept connection still reads the figures.
    sessions.extend(pg.hold_connections(&format!("{app}?application_name=orders"), 8));
    let kept_pid = last_details(&diag(&vigil))["kept_connection"]["backend_pid"]
        .as_i64()
        .unwrap();
    pg.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vigil' AND pid <> {kept_pid}"
    ));
    while let Ok(session) = pg.session(&format!("{app}?application_name=orders")) {
        sessions.push(session);
        assert!(sessions.len() < 20, "the server should be full by now");
    }
    // Polled for the line itself, not for the first 503: on a loaded machine one late run may
    // first read as stale (3 intervals of 1 s without a result) before the next one reports.
    let mut body = String::new();
    let full = support::poll_until(Duration::from_secs(10), || {
        body = vigil.get("/readyz?verbose").body;
        body.contains("[-]postgres failed: too many clients: 17 of 17 usable connections in use (saturation 100%)")
    });
    assert!(full, "{body}");
    assert_eq!(vigil.get("/readyz").status, 503);
    assert_eq!(metric(&vigil, "vigil_postgres_up "), Some(1.0), "full is not down");
    assert_eq!(metric(&vigil, "vigil_postgres_connection_saturation_ratio "), Some(1.0));
    let d = diag(&vigil);
    assert_eq!(d["vigil"]["checks"]["postgres"]["kind"], "too_many_clients");
    assert!(
        d["vigil"]["checks"]["postgres"]["hint"]
            .as_str()
            .unwrap()
            .contains("FROM pg_stat_activity GROUP BY")
    );
    let top = &last_details(&d)["connections"]["top_application_names"][0];
    assert_eq!(
        (top["application_name"].as_str(), top["connections"].as_i64()),
        (Some("orders"), Some(16))
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_postgres_connections_by_application{application_name=\"orders\"} 16"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_postgres_connections_by_application{application_name=\"vigil\"} 1"),
        "the agent's own kept connection (its pool's was taken away):\n{metrics}"
    );

    // Clients leave: back to pass.
    sessions.clear();
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
}

#[test]
fn a_server_that_never_answers_fails_as_timeout_while_readyz_answers_at_once() {
    let hanging = FakeServer::hanging();
    let url = format!("postgres://gateway:{PASSWORD}@{}/gw", hanging.addr());
    let vigil = Vigil::start(&section(&url, ""));
    wait_until(Duration::from_secs(5), "the first run to time out", || {
        vigil
            .get("/readyz?verbose")
            .body
            .contains("[-]postgres failed: timed out")
    });
    let started = Instant::now();
    let readyz = vigil.get("/readyz?verbose");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "/readyz waited on the database"
    );
    assert_eq!(readyz.status, 503);
    assert!(
        readyz
            .body
            .contains(&format!("timed out connecting to {} after 1s", hanging.addr())),
        "{}",
        readyz.body
    );
    assert_eq!(diag(&vigil)["vigil"]["checks"]["postgres"]["kind"], "timeout");
    assert_eq!(metric(&vigil, "vigil_postgres_up "), Some(0.0));
    assert_secret_absent(&vigil, PASSWORD);
}

#[test]
fn a_wrong_password_is_an_auth_failure_that_never_shows_the_password() {
    let pg = PgServer::start();
    pg.create_user_db("gateway", PASSWORD);
    let wrong = "wr0ng-Pa55word-xyz";
    let vigil = Vigil::start(&section(&pg.url("gateway", wrong, "gateway"), ""));
    vigil.wait_for_status("/readyz", 503, Duration::from_secs(10));
    wait_until(Duration::from_secs(5), "an auth reason", || {
        vigil
            .get("/readyz?verbose")
            .body
            .contains("[-]postgres failed: authentication failed for user \"gateway\"")
    });
    assert_eq!(diag(&vigil)["vigil"]["checks"]["postgres"]["kind"], "auth");
    assert_secret_absent(&vigil, wrong);
    assert_secret_absent(&vigil, PASSWORD);
}

/// Over a Unix socket the default `sslmode=prefer` failed with "invalid configuration" (it worked
/// with `disable`): prefer means "no TLS" on a socket, as libpq has it.
#[test]
fn a_unix_socket_works_with_the_default_sslmode() {
    let pg = PgServer::start();
    pg.create_user_db("gateway", PASSWORD);
    let url = format!(
        "postgres://gateway:{PASSWORD}@/gateway?host={}&port={}",
        pg.socket_dir().display(),
        pg.port()
    );
    let vigil = Vigil::start(&section(&url, ""));
    let ready = vigil.wait_for_status("/readyz?verbose", 200, Duration::from_secs(10));
    assert!(ready.body.contains("[+]postgres ok"), "{}", ready.body);
    assert_eq!(last_details(&diag(&vigil))["sslmode"], "prefer");
    assert_secret_absent(&vigil, PASSWORD);
    let output = support::run_cli(
        &["validate"],
        Some(&section(&format!("{url}&sslmode=require"), "")),
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over a Unix socket"), "{stderr}");
}

#[test]
fn a_missing_database_is_named() {
    let pg = PgServer::start();
    pg.create_user_db("gateway", PASSWORD);
    let vigil = Vigil::start(&section(&pg.url("gateway", PASSWORD, "nosuchdb"), ""));
    wait_until(Duration::from_secs(10), "a missing-database reason", || {
        vigil
            .get("/readyz?verbose")
            .body
            .contains("[-]postgres failed: database \"nosuchdb\" does not exist")
    });
    assert_eq!(diag(&vigil)["vigil"]["checks"]["postgres"]["kind"], "misconfigured");
}

#[test]
fn a_long_query_is_counted_and_warns() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    // Another role's query state and text are visible to members of pg_monitor only (the README
    // says to grant it).
    pg.psql("GRANT pg_monitor TO gateway");
    let reports = pg.create_user_db("reports", "reports-pw");
    let vigil = Vigil::start(&section(&url, "long_query = \"1s\"\n"));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let mut session = pg.session(&format!("{reports}?application_name=reports")).unwrap();
    session.send("SELECT pg_sleep(60);");
    wait_until(Duration::from_secs(6), "a long-query warning", || {
        vigil
            .get("/readyz?verbose")
            .body
            .contains("[+]postgres warn: 1 query running longer than 1s")
    });
    let d = diag(&vigil);
    assert_eq!(observed(&d, "long_queries"), 1.0);
    let longest = &last_details(&d)["long_queries"]["longest"][0];
    assert_eq!(longest["application_name"], "reports");
    assert_eq!(longest["state"], "active");
    // Query text in /diag has every literal replaced (issue 21): the 60 is a `?`.
    assert_eq!(longest["query"], "SELECT pg_sleep(?);");
}

#[test]
fn without_a_postgres_section_there_is_no_postgres_metric_and_a_bad_url_exits_2_without_the_password() {
    let mut vigil = Vigil::builder().spawn(&section("postgres://gw:Hidden-pw-77@127.0.0.1:notaport/db", ""));
    let status = vigil.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", vigil.logs());
    assert!(vigil.logs().contains("postgres"), "{}", vigil.logs());
    assert!(!vigil.logs().contains("Hidden-pw-77"), "{}", vigil.logs());

    let vigil = Vigil::start("[system]\ninterval = \"1s\"\ntimeout = \"1s\"\n");
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    assert!(!vigil.get("/metrics").body.contains("vigil_postgres_"));
}

#[test]
fn vigil_check_with_database_url_alone_sslmode_require_without_server_tls_and_an_unknown_host() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let out = support::run_cli(&["check"], None, &[("DATABASE_URL", &url)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[+]postgres ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The test server has ssl = off: sslmode=require must fail as TLS, not pass in plain text.
    let out = support::run_cli(&["check"], None, &[("DATABASE_URL", &format!("{url}?sslmode=require"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[-]postgres failed: TLS handshake failed with 127.0.0.1:"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD) && !String::from_utf8_lossy(&out.stderr).contains(PASSWORD));

    // A name that does not resolve (RFC 2606 reserves .invalid).
    let out = support::run_cli(
        &["check"],
        None,
        &[("DATABASE_URL", "postgres://gw:pw-x@no-such-host.invalid:5432/gw")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[-]postgres failed: DNS lookup of no-such-host.invalid failed"),
        "{stdout}"
    );
}

/// Turns TLS on in a running cluster with a certificate for 127.0.0.1 signed by a throw-away CA,
/// and returns the CA's PEM file.
fn enable_server_tls(pg: &PgServer, dir: &std::path::Path) -> std::path::PathBuf {
    let ca_file = install_server_certificate(pg, dir, None);
    pg.psql("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
    pg.psql("ALTER SYSTEM SET ssl_key_file = 'server.key'");
    pg.psql("ALTER SYSTEM SET ssl = on");
    pg.psql("SELECT pg_reload_conf()");
    wait_until(Duration::from_secs(5), "the server to turn TLS on", || {
        pg.psql("SHOW ssl") == "on"
    });
    ca_file
}

/// Writes a new server certificate (for 127.0.0.1, signed by a new throw-away CA, its
/// `notAfter` `valid_for` seconds from now when given) into the data directory and returns the
/// CA's PEM file; the server reads it at its next configuration reload.
fn install_server_certificate(pg: &PgServer, dir: &std::path::Path, valid_for: Option<i64>) -> std::path::PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let issued = support::tls::Issued::valid_for(valid_for);
    let data = pg.data_dir();
    let owner = std::fs::metadata(data).unwrap();
    for (name, pem) in [("server.crt", &issued.cert_pem), ("server.key", &issued.key_pem)] {
        let path = data.join(name);
        std::fs::write(&path, pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &issued.ca_pem).unwrap();
    ca_file
}

/// The server's certificate expiry is read on every TLS connection vigil makes (also when
/// verification fails): expired fails naming it, the metric is exported, and once the server has
/// a renewed certificate the check sees it without a restart (the kept connection is opened
/// afresh while the certificate it saw is expired).
#[test]
fn postgres_certificate_expiry_fails_when_expired_and_clears_after_renewal() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    enable_server_tls(&pg, dir.path());
    let ca_file = install_server_certificate(&pg, dir.path(), Some(-86_400));
    pg.psql("SELECT pg_reload_conf()");

    // verify-full: the handshake fails, and the reason still says when the certificate expired.
    let out = support::run_cli(
        &["check"],
        None,
        &[(
            "DATABASE_URL",
            &format!("{url}?sslmode=verify-full&sslrootcert={}", ca_file.display()),
        )],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("certificate expired 1d ago (notAfter "), "{stdout}");

    // require (not verified): connected, and failing on the expiry alone.
    let vigil = Vigil::start(&section(&format!("{url}?sslmode=require"), ""));
    let mut verbose = String::new();
    let failed = support::poll_until(Duration::from_secs(10), || {
        verbose = vigil.get("/readyz?verbose").body;
        verbose.contains("[-]postgres failed: certificate expired 1d ago (notAfter ")
    });
    assert!(failed, "{verbose}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = metric(&vigil, "vigil_tls_cert_expiry_timestamp_seconds{check=\"postgres\"}").expect("exported");
    assert!(expiry < now - 80_000.0, "{expiry} vs {now}");

    // Renewed for 3 days: the next runs see it on a fresh connection; near expiry warns only.
    install_server_certificate(&pg, dir.path(), Some(3 * 86_400 + 3600));
    pg.psql("SELECT pg_reload_conf()");
    let warned = support::poll_until(Duration::from_secs(10), || {
        verbose = vigil.get("/readyz?verbose").body;
        verbose.contains("[+]postgres warn: certificate expires in 3d (notAfter ")
    });
    assert!(warned, "{verbose}");
    assert_eq!(vigil.get("/readyz").status, 200, "a warn keeps the replica ready");
}

#[test]
fn tls_per_sslmode_against_a_server_with_tls() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = enable_server_tls(&pg, dir.path());
    let check = |url: &str| {
        let out = support::run_cli(&["check"], None, &[("DATABASE_URL", url)]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!stdout.contains(PASSWORD) && !String::from_utf8_lossy(&out.stderr).contains(PASSWORD));
        (out.status.code(), stdout)
    };

    // require: encrypted, certificate not verified (libpq's meaning without a root certificate).
    let (code, out) = check(&format!("{url}?sslmode=require"));
    assert_eq!((code, out.contains("[+]postgres ok")), (Some(0), true), "{out}");

    // verify-full with the CA that signed the server's certificate: verified, passes.
    let (code, out) = check(&format!("{url}?sslmode=verify-full&sslrootcert={}", ca_file.display()));
    assert_eq!((code, out.contains("[+]postgres ok")), (Some(0), true), "{out}");

    // verify-full against the public roots: the throw-away CA is unknown, and the reason says TLS.
    let (code, out) = check(&format!("{url}?sslmode=verify-full"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("[-]postgres failed: TLS handshake failed"), "{out}");

    // The connections vigil made really were encrypted: the server saw TLS sessions from it.
    let vigil = Vigil::start(&section(&format!("{url}?sslmode=require"), ""));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let encrypted = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'vigil' AND s.ssl",
    );
    assert_ne!(encrypted, "0", "vigil's connections are not encrypted");
}

/// postgres_exporter's most asked-for breakdown, bounded: the ten application_names with the most
/// connections get a series each, the others are summed as `other`.
#[test]
fn connections_by_application_are_the_top_ten_and_other() {
    let pg = PgServer::builder().max_connections(40).start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let app = pg.create_user_db("app", "app-pw");
    let mut sessions = Vec::new();
    // Twelve names with two connections each (and vigil's own): ties are ordered by name, so
    // app00 … app09 are the ten, and app10, app11 and vigil are "other".
    for i in 0..12 {
        sessions.extend(pg.hold_connections(&format!("{app}?application_name=app{i:02}"), 2));
    }
    let vigil = Vigil::start(&section(&url, ""));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let mut metrics = String::new();
    let seen = support::poll_until(Duration::from_secs(5), || {
        metrics = vigil.get("/metrics").body;
        metrics.contains("vigil_postgres_connections_by_application{application_name=\"other\"}")
    });
    assert!(seen, "{metrics}");
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vigil_postgres_connections_by_application{"))
        .collect();
    assert_eq!(series.len(), 11, "ten names and other: {series:#?}");
    let other: f64 = series
        .iter()
        .find(|l| l.contains("\"other\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(series.iter().any(|l| l.contains("\"app09\"} 2")), "{series:#?}");
    assert!(!series.iter().any(|l| l.contains("\"app10\"")), "{series:#?}");
    assert!(other >= 4.0, "app10 and app11 (and vigil's own) are other: {series:#?}");
    drop(sessions);
}
