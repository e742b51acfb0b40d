//! Why the database is slow or full (SPEC "Why the database is slow or full", issue 21), against
//! real servers: a session holding a lock in an idle transaction and the sessions blocked behind
//! it, an idle transaction over the limit, secrets in query literals, a role's and a database's
//! `CONNECTION LIMIT` filled, a real streaming standby (`require_primary`, replay lag), the
//! connection budget across replicas with a fake gateway and `[fleet]` peers, and a server that
//! requires a client certificate.

mod support;

use std::time::Duration;

use serde_json::Value as Json;
use support::exposition::sample;
use support::pg_client_cert::ClientCerts;
use support::pg_scenarios::{
    LockHolder, SECRET, SECRET_NUMBER, SECRET_UPDATE_NORMALIZED, blocked_sessions, create_accounts, fill_until_refused,
    secret_update, set_database_connection_limit, set_role_connection_limit,
};
use support::pg_standby::Replication;
use support::{FakeServer, PgServer, Response, Vigil, poll_until};

const PASSWORD: &str = "gw-why-Pa55";

/// A `[postgres]` section for `url` with fast timing (and `[system]` off, so that the verbose
/// answer has only the lines a test looks at).
fn section(url: &str, extra: &str) -> String {
    format!(
        "[system]\nenabled = false\n\n[postgres]\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"1s\"\npool_size = 1\n{extra}\n"
    )
}

/// A server with role and database `gateway` (granted `pg_monitor`, as the README says, to see
/// other roles' sessions) and the `accounts` table; returns it and the role's URL.
fn gateway_server(pg: PgServer) -> (PgServer, String) {
    let url = pg.create_user_db("gateway", PASSWORD);
    pg.psql("GRANT pg_monitor TO gateway");
    create_accounts(&pg, "gateway", "gateway");
    (pg, url)
}

fn diag(vigil: &Vigil) -> Json {
    serde_json::from_str(&vigil.get("/diag?format=json").body).expect("/diag is JSON")
}

fn postgres_diag(vigil: &Vigil) -> Json {
    diag(vigil)["vigil"]["checks"]["postgres"].clone()
}

fn metrics(vigil: &Vigil) -> String {
    vigil.get("/metrics").body
}

/// Polls the `postgres` line of `/readyz?verbose` until `f` holds for it.
#[track_caller]
fn wait_for_line(vigil: &Vigil, what: &str, deadline: Duration, f: impl Fn(&str) -> bool) -> String {
    vigil.wait_for_readyz_line("postgres", what, deadline, f)
}

/// Everything vigil says to the outside — both `/readyz` forms, `/diag` as text and JSON,
/// `/metrics`, its log, and `vigil check` in both outputs for the same configuration — holds
/// none of `needles`.
#[track_caller]
fn assert_never_shown(vigil: &Vigil, config: &str, needles: &[&str]) {
    let mut outputs: Vec<(String, String)> = [
        "/readyz?verbose",
        "/readyz/postgres",
        "/diag",
        "/diag?format=json",
        "/metrics",
    ]
    .iter()
    .map(|path| (path.to_string(), vigil.get(path).body))
    .collect();
    outputs.push(("the log".to_owned(), vigil.logs()));
    for args in [&["check"][..], &["check", "--output", "json"][..]] {
        let out = support::run_cli(args, Some(config), &[]);
        outputs.push((
            format!("vigil {}", args.join(" ")),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    for (what, text) in &outputs {
        for needle in needles {
            assert!(!text.contains(needle), "{what} shows {needle:?}:\n{text}");
        }
    }
}

/// Some object anywhere in `json` has every `(key, value)` of `fields`.
fn has_object_with(json: &Json, fields: &[(&str, Json)]) -> bool {
    match json {
        Json::Object(map) => {
            fields.iter().all(|(k, v)| map.get(*k) == Some(v)) || map.values().any(|v| has_object_with(v, fields))
        }
        Json::Array(items) => items.iter().any(|v| has_object_with(v, fields)),
        _ => false,
    }
}

/// A duration as vigil's reasons write it (`12s`, `5m`, `1h`, `1.5s`).
fn is_duration(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
        && token.ends_with(|c: char| c.is_ascii_alphabetic())
        && !token.contains(' ')
}

#[test]
fn a_lock_held_by_an_idle_transaction_names_the_blocker_counts_the_blocked_and_clears_after_commit() {
    let (pg, url) = gateway_server(PgServer::start());
    let config = section(
        &url,
        "lock_wait = \"1s\"\nidle_in_transaction_warn = \"10m\"\nlong_query = \"10m\"\n",
    );
    let vigil = Vigil::start(&config);
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(vigil.readyz_line("postgres"), "[+]postgres ok");

    // The batch job updated a row (its literals hold a secret and a number) and never committed;
    // three API requests wait on that row, their statements holding the same literals.
    let mut holder = LockHolder::start(&pg, &url, "batch-import", &secret_update(1));
    let blocked = blocked_sessions(&pg, &url, "api", 3, &secret_update(1));

    let line = wait_for_line(&vigil, "3 blocked queries", Duration::from_secs(10), |l| {
        l.contains("3 queries blocked up to ")
    });
    assert!(line.starts_with("[+]postgres warn: "), "blocked queries warn: {line}");
    let after = line.split("3 queries blocked up to ").nth(1).unwrap();
    let (longest, rest) = after.split_once(' ').unwrap();
    assert!(is_duration(longest), "{line}");
    let root = format!(
        "by pid {} (application_name batch-import, 127.0.0.1, idle in transaction for ",
        holder.pid
    );
    assert!(
        rest.starts_with(&root),
        "the root of the chain, named:\n{line}\nexpected {root}…"
    );
    let age = rest[root.len()..].split(')').next().unwrap();
    assert!(is_duration(age), "{line}");
    assert_eq!(
        vigil.get("/readyz").status,
        200,
        "blocked queries warn, never fail readiness"
    );

    // /diag names the blocker the same way and shows the statements with every literal a `?`.
    let d = postgres_diag(&vigil);
    assert!(
        has_object_with(
            &d,
            &[
                ("pid", Json::from(holder.pid)),
                ("application_name", Json::from("batch-import"))
            ]
        ),
        "the blocker in /diag:\n{d:#}"
    );
    let diag_json = vigil.get("/diag?format=json").body;
    assert!(
        diag_json.contains(SECRET_UPDATE_NORMALIZED),
        "the normalized statement in /diag:\n{d:#}"
    );
    let text = vigil.get("/diag").body;
    assert!(text.contains(&format!("pid {}", holder.pid)), "{text}");

    let m = metrics(&vigil);
    assert_eq!(sample(&m, "vigil_postgres_blocked_queries", &[]), Some(3.0), "{m}");
    let lock_wait = sample(&m, "vigil_postgres_lock_wait_max_seconds", &[]).expect("lock_wait_max_seconds");
    assert!(lock_wait >= 1.0, "the longest lock wait passed lock_wait: {lock_wait}");
    let oldest = sample(&m, "vigil_postgres_oldest_transaction_seconds", &[]).expect("oldest_transaction_seconds");
    assert!(
        oldest >= lock_wait,
        "the holder's transaction is older than any wait: {oldest} < {lock_wait}"
    );
    let idle = sample(&m, "vigil_postgres_idle_in_transaction_max_seconds", &[]).expect("idle_in_transaction_max");
    assert!(idle >= 1.0, "{idle}");
    support::assert_promtool_accepts(&m);
    assert_never_shown(&vigil, &config, &[SECRET, SECRET_NUMBER]);

    // COMMIT: the waits end, the warn clears, the figures drop to zero.
    holder.commit();
    wait_for_line(&vigil, "ok after COMMIT", Duration::from_secs(10), |l| {
        l == "[+]postgres ok"
    });
    let m = metrics(&vigil);
    assert_eq!(sample(&m, "vigil_postgres_blocked_queries", &[]), Some(0.0), "{m}");
    assert_eq!(
        sample(&m, "vigil_postgres_lock_wait_max_seconds", &[]),
        Some(0.0),
        "{m}"
    );
    // The transitions (warn, then recovery) are logged: still without the literals.
    assert_never_shown(&vigil, &config, &[SECRET, SECRET_NUMBER]);
    drop(blocked);
}

#[test]
fn an_idle_transaction_over_the_limit_warns_naming_the_session() {
    let (pg, url) = gateway_server(PgServer::start());
    let config = section(&url, "idle_in_transaction_warn = \"2s\"\nlock_wait = \"1s\"\n");
    let vigil = Vigil::start(&config);
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));

    let mut holder = LockHolder::start(&pg, &url, "batch-import", &secret_update(2));
    let named = format!(
        "pid {} (application_name batch-import, 127.0.0.1, idle in transaction for ",
        holder.pid
    );
    let line = wait_for_line(&vigil, "the idle transaction", Duration::from_secs(10), |l| {
        l.contains(&named)
    });
    assert!(line.starts_with("[+]postgres warn: "), "{line}");
    assert!(!line.contains("blocked"), "nobody waits on it: {line}");
    assert_eq!(vigil.get("/readyz").status, 200);
    let m = metrics(&vigil);
    let idle = sample(&m, "vigil_postgres_idle_in_transaction_max_seconds", &[]).expect("exported");
    assert!(idle >= 2.0, "{idle}");
    let oldest = sample(&m, "vigil_postgres_oldest_transaction_seconds", &[]).expect("exported");
    assert!(oldest >= idle, "{oldest} < {idle}");
    assert_eq!(sample(&m, "vigil_postgres_blocked_queries", &[]), Some(0.0));
    assert_never_shown(&vigil, &config, &[SECRET, SECRET_NUMBER]);

    holder.commit();
    wait_for_line(&vigil, "ok after COMMIT", Duration::from_secs(10), |l| {
        l == "[+]postgres ok"
    });
}

/// The long-query list of `/diag` showed query text as it came: now every literal is a `?`.
#[test]
fn a_long_querys_literals_are_replaced_in_diag_and_shown_nowhere_else() {
    let (pg, url) = gateway_server(PgServer::start());
    let config = section(&url, "long_query = \"1s\"\n");
    let vigil = Vigil::start(&config);
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let mut session = pg.session(&format!("{url}?application_name=reports")).unwrap();
    session.send(&format!(
        "SELECT pg_sleep(60), 'customer''s key {SECRET}' AS note, {SECRET_NUMBER} AS card, $tag${SECRET}$tag$ AS body;"
    ));
    wait_for_line(&vigil, "a long query", Duration::from_secs(10), |l| {
        l.contains("1 query running longer than 1s")
    });
    let d = postgres_diag(&vigil);
    assert!(
        has_object_with(
            &d,
            &[(
                "query",
                Json::from("SELECT pg_sleep(?), ? AS note, ? AS card, ? AS body;")
            )]
        ),
        "the long query, normalized:\n{d:#}"
    );
    assert_never_shown(&vigil, &config, &[SECRET, SECRET_NUMBER]);
}

/// Fills `db`'s role or database limit around vigil (pool_size 1 + its kept connection = 2).
struct LimitCase {
    /// `role "gateway"` or `database "gateway"`.
    scope_name: &'static str,
    /// The `scope` label of `vigil_postgres_connection_limit`.
    scope: &'static str,
    /// The server's 53300 message for it.
    refusal: &'static str,
}

fn a_connection_limit_is_the_tightest_and_its_53300_is_named(case: LimitCase) {
    let pg = PgServer::builder().max_connections(30).start();
    let (pg, url) = gateway_server(pg);
    match case.scope {
        "role" => set_role_connection_limit(&pg, "gateway", 10),
        _ => set_database_connection_limit(&pg, "gateway", 10),
    }
    let config = section(&url, "");
    let vigil = Vigil::start(&config);
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let m = metrics(&vigil);
    assert_eq!(
        sample(&m, "vigil_postgres_connection_limit", &[("scope", "server")]),
        Some(27.0),
        "30 - 3 superuser reserved:\n{m}"
    );
    assert_eq!(
        sample(&m, "vigil_postgres_connection_limit", &[("scope", case.scope)]),
        Some(10.0),
        "{m}"
    );
    let other = if case.scope == "role" { "database" } else { "role" };
    assert_eq!(
        sample(&m, "vigil_postgres_connection_limit", &[("scope", other)]),
        None,
        "no {other} limit is set: no series\n{m}"
    );

    // 9 of the 10 in use (vigil's 2 and 7 API sessions): 90% of the tightest limit warns, while
    // the server is at 9 of 27.
    let api = format!("{url}?application_name=api");
    let mut sessions = pg.hold_connections(&api, 7);
    let named = format!("{} limit 10: 9 in use", case.scope_name);
    let line = wait_for_line(&vigil, &named, Duration::from_secs(10), |l| l.contains(&named));
    assert!(line.starts_with("[+]postgres warn: "), "{line}");
    assert!(
        !line.contains("27"),
        "judged against the tightest limit, not the server's: {line}"
    );
    assert_eq!(
        sample(&metrics(&vigil), "vigil_postgres_connection_saturation_ratio", &[]),
        Some(0.9)
    );

    // Full: take the agent's pool connection away and fill its slot; the pool's new connection
    // gets the server's 53300 for the role (or database), told apart from "too many clients".
    sessions.extend(pg.hold_connections(&api, 1));
    let kept_pid = postgres_diag(&vigil)["last_run"]["details"]["kept_connection"]["backend_pid"]
        .as_i64()
        .expect("the kept connection's pid in /diag");
    pg.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vigil' AND pid <> {kept_pid}"
    ));
    let (more, refusal) = fill_until_refused(&pg, &api, 5);
    assert!(refusal.contains(case.refusal), "{refusal}");
    sessions.extend(more);
    let full = format!("{} limit 10: 10 in use", case.scope_name);
    let line = wait_for_line(&vigil, case.refusal, Duration::from_secs(10), |l| {
        l.contains(case.refusal) && l.contains(&full)
    });
    assert!(line.starts_with("[-]postgres failed: "), "{line}");
    assert!(!line.contains("too many clients"), "not the server's 53300: {line}");
    assert_eq!(vigil.get("/readyz").status, 503);
    assert_eq!(
        sample(&metrics(&vigil), "vigil_postgres_up", &[]),
        Some(1.0),
        "full is not down"
    );

    sessions.clear();
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
}

#[test]
fn a_roles_connection_limit_is_the_tightest_and_its_53300_is_named() {
    a_connection_limit_is_the_tightest_and_its_53300_is_named(LimitCase {
        scope_name: "role \"gateway\"",
        scope: "role",
        refusal: "too many connections for role \"gateway\"",
    });
}

#[test]
fn a_databases_connection_limit_is_the_tightest_and_its_53300_is_named() {
    a_connection_limit_is_the_tightest_and_its_53300_is_named(LimitCase {
        scope_name: "database \"gateway\"",
        scope: "database",
        refusal: "too many connections for database \"gateway\"",
    });
}

const STANDBY_REASON: &str =
    "connected to a standby (in recovery): the gateway's writes fail; check the failover and the Service the URL names";

/// A primary with `gateway` and its streaming standby (the role and grant replicated).
fn primary_and_standby() -> (PgServer, PgServer) {
    let (primary, _) = gateway_server(PgServer::builder().replication().start());
    let standby = primary.start_standby();
    (primary, standby)
}

#[test]
fn a_standby_fails_under_require_primary_and_passes_once_promoted() {
    let (primary, standby) = primary_and_standby();
    let on_standby = Vigil::start(&section(
        &standby.url("gateway", PASSWORD, "gateway"),
        "require_primary = true\n",
    ));
    let on_primary = Vigil::start(&section(
        &primary.url("gateway", PASSWORD, "gateway"),
        "require_primary = true\n",
    ));

    let line = wait_for_line(&on_standby, "the standby reason", Duration::from_secs(10), |l| {
        l.contains(STANDBY_REASON)
    });
    assert_eq!(line, format!("[-]postgres failed: {STANDBY_REASON}"));
    assert_eq!(on_standby.get("/readyz").status, 503);
    assert_eq!(
        sample(&metrics(&on_standby), "vigil_postgres_in_recovery", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics(&on_standby), "vigil_postgres_up", &[]),
        Some(1.0),
        "reachable"
    );

    on_primary.wait_for_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(on_primary.readyz_line("postgres"), "[+]postgres ok");
    let m = metrics(&on_primary);
    assert_eq!(sample(&m, "vigil_postgres_in_recovery", &[]), Some(0.0));
    let lag = sample(&m, "vigil_postgres_replication_lag_seconds", &[]);
    assert!(lag.is_none_or(f64::is_nan), "no replay lag on a primary: {lag:?}");

    // Failover: the standby is promoted, and the same URL now reaches a primary.
    standby.promote();
    on_standby.wait_for_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(on_standby.readyz_line("postgres"), "[+]postgres ok");
    assert_eq!(
        sample(&metrics(&on_standby), "vigil_postgres_in_recovery", &[]),
        Some(0.0)
    );
}

#[test]
fn a_standby_passes_without_require_primary_and_shows_its_replay_lag() {
    let (primary, standby) = primary_and_standby();
    let vigil = Vigil::start(&section(&standby.url("gateway", PASSWORD, "gateway"), ""));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(
        vigil.readyz_line("postgres"),
        "[+]postgres ok",
        "a standby passes, shown"
    );
    let d = diag(&vigil);
    assert_eq!(d["checks"]["postgres:in_recovery"][0]["observedValue"], "true", "{d:#}");
    let m = metrics(&vigil);
    assert_eq!(sample(&m, "vigil_postgres_in_recovery", &[]), Some(1.0), "{m}");

    // Everything received is replayed: lag 0.
    standby.wait_caught_up(&primary);
    let mut lag = None;
    assert!(
        poll_until(Duration::from_secs(5), || {
            lag = sample(&metrics(&vigil), "vigil_postgres_replication_lag_seconds", &[]);
            lag == Some(0.0)
        }),
        "replay lag {lag:?} on a caught-up standby"
    );

    // Replay paused while the primary writes: received WAL waits unreplayed, the lag shows and
    // grows; the standby still passes.
    standby.pause_replay();
    primary.psql_db("gateway", "UPDATE accounts SET balance = balance + 1 WHERE id = 1");
    standby.wait_received_unreplayed();
    let mut first = 0.0;
    assert!(
        poll_until(Duration::from_secs(5), || {
            first = sample(&metrics(&vigil), "vigil_postgres_replication_lag_seconds", &[]).unwrap_or(0.0);
            first > 0.0
        }),
        "no replay lag while replay is paused:\n{}",
        metrics(&vigil)
    );
    assert!(
        poll_until(Duration::from_secs(5), || {
            sample(&metrics(&vigil), "vigil_postgres_replication_lag_seconds", &[]).unwrap_or(0.0) >= first + 1.0
        }),
        "the lag does not grow while replay stays paused"
    );
    assert_eq!(vigil.get("/readyz").status, 200);
    let details = postgres_diag(&vigil).to_string();
    assert!(details.contains("lag"), "/diag shows the replay lag: {details}");

    standby.resume_replay();
    standby.wait_caught_up(&primary);
    assert!(
        poll_until(Duration::from_secs(5), || {
            sample(&metrics(&vigil), "vigil_postgres_replication_lag_seconds", &[]) == Some(0.0)
        }),
        "the lag is back to 0 once replayed"
    );
}

/// A fake gateway whose `/metrics` exports a DB pool with `max` and `in_use`.
fn fake_gateway(in_use: u32, max: u32) -> FakeServer {
    let pool = format!(
        "# TYPE connection_pool_in_use gauge\nconnection_pool_in_use {in_use}\n\
         # TYPE connection_pool_max gauge\nconnection_pool_max {max}\n\
         # TYPE connection_pool_waiting gauge\nconnection_pool_waiting 0\n"
    );
    FakeServer::start(move |request| match request.path.as_str() {
        "/healthz" => Response::text(200, "ok"),
        "/metrics" => Response::prometheus(pool.clone()),
        _ => Response::new(404),
    })
}

/// `n` replicas that answer as vigil does (`Vigil-Instance`), each check passing.
fn fake_peers(n: usize) -> Vec<FakeServer> {
    (0..n)
        .map(|i| FakeServer::fixed(Response::text(200, "ok").with_header("Vigil-Instance", format!("fake-peer-{i}"))))
        .collect()
}

fn gateway_section(gateway: &FakeServer) -> String {
    format!(
        "[gateway]\nhealth_url = \"{}\"\nmetrics_url = \"{}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
        gateway.url("/healthz"),
        gateway.url("/metrics")
    )
}

fn fleet_section(peers: &[FakeServer]) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{}\"", p.addr())).collect();
    format!("[fleet]\npeers = [{}]\n", list.join(", "))
}

#[test]
fn the_budget_warns_when_the_replicas_pools_at_full_load_exceed_the_usable_connections() {
    let pg = PgServer::builder().max_connections(100).start();
    let (pg, url) = gateway_server(pg);
    let app = pg.create_user_db("app", "app-pw");
    // Four replicas' pools with 5 connections open each (this one's and three peers'), and 25
    // connections of other clients.
    let _pools = pg.hold_connections(&format!("{app}?application_name=api-gateway"), 20);
    let reports = pg.hold_connections(&format!("{app}?application_name=reports"), 25);
    let gateway = fake_gateway(5, 20);
    let peers = fake_peers(3);
    let config = format!(
        "{}\n{}\n{}",
        section(&url, ""),
        gateway_section(&gateway),
        fleet_section(&peers)
    );
    let vigil = Vigil::start(&config);

    let reason = "4 replicas x pool max 20 + 25 other connections = 105 > 97 usable: \
                  at full load the database refuses clients; at most 3 replicas fit";
    let line = wait_for_line(&vigil, "the budget warning", Duration::from_secs(10), |l| {
        l.contains(reason)
    });
    assert!(line.starts_with("[+]postgres warn: "), "{line}");
    assert_eq!(vigil.get("/readyz").status, 200, "the budget warns only");
    let m = metrics(&vigil);
    assert_eq!(sample(&m, "vigil_fleet_peers", &[]), Some(3.0), "{m}");
    assert_eq!(
        sample(&m, "vigil_postgres_connection_budget_replicas", &[]),
        Some(3.0),
        "{m}"
    );

    // The other clients leave: 4 x 20 = 80 fit in 97, and 4 is the most that do.
    drop(reports);
    wait_for_line(&vigil, "ok once the others left", Duration::from_secs(10), |l| {
        l == "[+]postgres ok"
    });
    assert_eq!(
        sample(&metrics(&vigil), "vigil_postgres_connection_budget_replicas", &[]),
        Some(4.0)
    );
}

#[test]
fn the_budget_says_which_input_is_missing_instead_of_guessing() {
    let pg = PgServer::builder().max_connections(100).start();
    let (pg, url) = gateway_server(pg);
    let app = pg.create_user_db("app", "app-pw");
    // Enough other clients that 4 replicas would not fit: without the inputs, nothing is guessed.
    let _others = pg.hold_connections(&format!("{app}?application_name=reports"), 60);
    let gateway = fake_gateway(5, 20);
    let peers = fake_peers(3);

    for (config, missing) in [
        (
            format!("{}\n{}", section(&url, ""), gateway_section(&gateway)),
            "replica",
        ),
        (format!("{}\n{}", section(&url, ""), fleet_section(&peers)), "pool"),
    ] {
        let vigil = Vigil::start(&config);
        vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
        wait_for_line(&vigil, "a finished run", Duration::from_secs(10), |l| {
            l.starts_with("[+]postgres")
        });
        let line = vigil.readyz_line("postgres");
        assert!(
            !line.contains("replicas x pool max"),
            "no budget without its inputs: {line}"
        );
        let budget = sample(&metrics(&vigil), "vigil_postgres_connection_budget_replicas", &[]);
        assert!(
            budget.is_none_or(f64::is_nan),
            "no budget figure without its inputs: {budget:?}"
        );
        let said = postgres_diag(&vigil).to_string().to_lowercase();
        assert!(
            said.contains("missing") && said.contains(missing),
            "/diag says the {missing} input is missing:\n{said}"
        );
    }
}

#[test]
fn a_server_that_requires_a_client_certificate_is_probed_with_sslcert_and_sslkey() {
    let (pg, _) = gateway_server(PgServer::start());
    let certs = ClientCerts::require(&pg, "gateway");

    let vigil = Vigil::start(&section(&certs.url("gateway"), ""));
    let ready = vigil.wait_for_status("/readyz?verbose", 200, Duration::from_secs(10));
    assert!(ready.body.contains("[+]postgres ok"), "{}", ready.body);
    assert_eq!(
        pg.psql(
            "SELECT count(*) > 0 AND bool_and(s.ssl AND s.client_dn = '/CN=gateway') \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'vigil'"
        ),
        "t",
        "vigil's connections present the client certificate"
    );

    // The key=value form, through DATABASE_URL.
    let out = support::run_cli(&["check"], None, &[("DATABASE_URL", &certs.conninfo("gateway"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[+]postgres ok"), "{stdout}");

    // Without the certificate the server refuses, and the reason says so.
    let without = format!(
        "postgres://gateway@127.0.0.1:{}/gateway?sslmode=verify-full&sslrootcert={}",
        pg.port(),
        certs.ca_file.display()
    );
    let out = support::run_cli(&["check"], None, &[("DATABASE_URL", &without)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[-]postgres failed: ") && stdout.contains("certificate"),
        "{stdout}"
    );
}
