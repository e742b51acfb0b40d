//! `[pgbouncer]` (SPEC "PgBouncer", issue 21) against Debian's PgBouncer in front of a real
//! cluster: clients made to wait by others running `pg_sleep` warn, then fail, naming the pool;
//! the series are per judged database; a stopped PgBouncer fails; the check is not critical; the
//! console's password is never shown.

mod support;

use std::time::Duration;

use support::exposition::{lines_of, sample};
use support::pgbouncer::{PgBouncer, STATS_USER};
use support::{PgServer, Vigil, poll_until};

const PASSWORD: &str = "gw-bouncer-Pa55";

/// `gateway` and `reports` on a real cluster, behind PgBouncer with two server connections per
/// pool, transaction pooling.
fn bounced() -> (PgServer, PgBouncer) {
    let pg = PgServer::start();
    pg.create_user_db("gateway", PASSWORD);
    pg.create_user_db("reports", "reports-pw");
    let bouncer = PgBouncer::builder(&pg)
        .database("gateway")
        .database("reports")
        .user("gateway", PASSWORD)
        .user("reports", "reports-pw")
        .pool_size(2)
        .pool_mode("transaction")
        .start();
    (pg, bouncer)
}

/// A `[pgbouncer]` section at 500ms (its timeout at most the interval, as every check's).
fn config(url: &str, extra: &str) -> String {
    format!(
        "[system]\nenabled = false\n\n[pgbouncer]\nurl = \"{url}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
         failure_threshold = 1\n{extra}\n"
    )
}

/// Polls the `pgbouncer` line of `/readyz?verbose` until `f` holds for it.
#[track_caller]
fn wait_for_line(vigil: &Vigil, what: &str, deadline: Duration, f: impl Fn(&str) -> bool) -> String {
    vigil.wait_for_readyz_line("pgbouncer", what, deadline, f)
}

fn metrics(vigil: &Vigil) -> String {
    vigil.get("/metrics").body
}

#[test]
fn waiting_clients_warn_then_fail_naming_the_pool_and_a_stopped_pgbouncer_fails() {
    let (pg, mut bouncer) = bounced();
    // The other pool has a client too, so that SHOW POOLS lists it: it is not judged.
    let mut reports = pg.session(&bouncer.url("reports", "reports-pw", "reports")).unwrap();
    assert_eq!(reports.query("SELECT 1;"), "1");
    let vigil = Vigil::start(&config(
        &bouncer.stats_url(),
        "databases = [\"gateway\"]\nwait_warn = \"1s\"\nwait_fail = \"3s\"\n",
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    wait_for_line(&vigil, "ok", Duration::from_secs(10), |l| l == "[+]pgbouncer ok");
    let m = metrics(&vigil);
    assert_eq!(sample(&m, "vigil_pgbouncer_up", &[]), Some(1.0), "{m}");
    for line in lines_of(&m, "vigil_pgbouncer_clients")
        .into_iter()
        .chain(lines_of(&m, "vigil_pgbouncer_servers"))
        .chain(lines_of(&m, "vigil_pgbouncer_max_wait_seconds"))
    {
        assert!(
            line.contains("database=\"gateway\""),
            "series for the judged pools only: {line}"
        );
    }

    // Two clients hold both server connections with pg_sleep; a third waits for one.
    let sleepers = bouncer.sleepers(&pg, "gateway", PASSWORD, "gateway", 2, 60);
    let _waiter = bouncer.clients(&pg, "gateway", PASSWORD, "gateway", 1, "SELECT 1;");
    bouncer.wait_for_waiting("gateway", 1);

    let line = wait_for_line(&vigil, "a waiting client's warning", Duration::from_secs(6), |l| {
        l.starts_with("[+]pgbouncer warn: ")
    });
    assert!(
        line.contains("gateway") && line.contains("wait"),
        "names the pool: {line}"
    );
    assert!(!line.contains("reports"), "{line}");
    let m = metrics(&vigil);
    let gateway = |name: &str, state: Option<&str>| {
        let mut labels = vec![("database", "gateway")];
        labels.extend(state.map(|s| ("state", s)));
        sample(&m, name, &labels)
    };
    assert_eq!(gateway("vigil_pgbouncer_clients", Some("waiting")), Some(1.0), "{m}");
    assert_eq!(gateway("vigil_pgbouncer_clients", Some("active")), Some(2.0), "{m}");
    assert_eq!(gateway("vigil_pgbouncer_servers", Some("active")), Some(2.0), "{m}");
    assert!(gateway("vigil_pgbouncer_servers", Some("idle")).is_some(), "{m}");
    assert!(gateway("vigil_pgbouncer_servers", Some("used")).is_some(), "{m}");
    let waited = gateway("vigil_pgbouncer_max_wait_seconds", None).expect("max_wait_seconds");
    assert!((1.0..10.0).contains(&waited), "{waited}");
    assert_eq!(
        sample(
            &m,
            "vigil_pgbouncer_clients",
            &[("database", "reports"), ("state", "active")]
        ),
        None,
        "reports is not judged"
    );
    support::assert_promtool_accepts(&m);

    // Past wait_fail: fails, naming the pool; not critical by default, so the replica stays ready.
    let line = wait_for_line(&vigil, "a waiting client's failure", Duration::from_secs(8), |l| {
        l.starts_with("[-]pgbouncer failed: ")
    });
    assert!(line.contains("gateway"), "names the pool: {line}");
    let readyz = vigil.get("/readyz?verbose");
    assert_eq!(
        readyz.status, 200,
        "pgbouncer is not critical by default: {}",
        readyz.body
    );

    // The sleepers leave, the waiter is served: ok again.
    drop(sleepers);
    wait_for_line(&vigil, "ok once served", Duration::from_secs(10), |l| {
        l == "[+]pgbouncer ok"
    });
    assert_eq!(
        sample(
            &metrics(&vigil),
            "vigil_pgbouncer_clients",
            &[("database", "gateway"), ("state", "waiting")]
        ),
        Some(0.0)
    );

    // PgBouncer stopped: unreachable fails; the agent and its other endpoints carry on.
    bouncer.stop();
    let line = wait_for_line(&vigil, "the stopped PgBouncer", Duration::from_secs(5), |l| {
        l.starts_with("[-]pgbouncer failed: ")
    });
    assert!(line.contains("refused"), "{line}");
    assert_eq!(sample(&metrics(&vigil), "vigil_pgbouncer_up", &[]), Some(0.0));
    assert_eq!(vigil.get("/readyz").status, 200);
    assert_eq!(vigil.get("/livez").status, 200);

    bouncer.start_again();
    wait_for_line(&vigil, "ok once started again", Duration::from_secs(10), |l| {
        l == "[+]pgbouncer ok"
    });
    assert_eq!(sample(&metrics(&vigil), "vigil_pgbouncer_up", &[]), Some(1.0));
}

/// Without `databases`, every pool of a server is judged (the console's own is not a pool of a
/// server).
#[test]
fn every_pool_is_judged_by_default() {
    let (pg, bouncer) = bounced();
    let vigil = Vigil::start(&config(
        &bouncer.stats_url(),
        "wait_warn = \"1s\"\nwait_fail = \"30s\"\n",
    ));
    let _gateway = bouncer.clients(&pg, "gateway", PASSWORD, "gateway", 1, "SELECT 1;");
    let sleepers = bouncer.sleepers(&pg, "reports", "reports-pw", "reports", 2, 60);
    let _waiter = bouncer.clients(&pg, "reports", "reports-pw", "reports", 1, "SELECT 1;");
    bouncer.wait_for_waiting("reports", 1);
    let line = wait_for_line(&vigil, "the reports pool's warning", Duration::from_secs(6), |l| {
        l.starts_with("[+]pgbouncer warn: ")
    });
    assert!(line.contains("reports"), "{line}");
    let m = metrics(&vigil);
    for database in ["gateway", "reports"] {
        assert!(
            sample(
                &m,
                "vigil_pgbouncer_clients",
                &[("database", database), ("state", "waiting")]
            )
            .is_some(),
            "{database}:\n{m}"
        );
    }
    assert!(
        !m.contains("database=\"pgbouncer\""),
        "the admin console is not a pool of a server:\n{m}"
    );
    drop(sleepers);
}

#[test]
fn a_wrong_console_password_fails_without_showing_it() {
    let (_pg, bouncer) = bounced();
    let wrong = "Wr0ng-console-pw-77";
    let config = config(&bouncer.url(STATS_USER, wrong, "pgbouncer"), "");
    let vigil = Vigil::start(&config);
    let line = wait_for_line(&vigil, "an authentication failure", Duration::from_secs(6), |l| {
        l.starts_with("[-]pgbouncer failed: ") && l.contains("authentication")
    });
    assert!(line.contains(STATS_USER), "names the user: {line}");
    assert_eq!(sample(&metrics(&vigil), "vigil_pgbouncer_up", &[]), Some(0.0));
    for path in ["/readyz?verbose", "/diag", "/diag?format=json", "/metrics"] {
        let body = vigil.get(path).body;
        assert!(!body.contains(wrong), "{path} shows the password");
    }
    assert!(!vigil.logs().contains(wrong), "the log shows the password");
    let validate = support::run_cli(&["validate"], Some(&config), &[]);
    let printed = String::from_utf8_lossy(&validate.stdout);
    assert_eq!(validate.status.code(), Some(0), "{printed}");
    assert!(!printed.contains(wrong), "validate prints the password:\n{printed}");
}

/// The gateway's own `DATABASE_URL` often names PgBouncer: the postgres check through it, in
/// transaction pooling (each transaction may get another server connection, so a statement
/// prepared on one is unknown on the next), keeps reading the server's figures run after run.
#[test]
fn the_postgres_check_through_pgbouncer_in_transaction_pooling_keeps_reading_its_figures() {
    let (pg, bouncer) = bounced();
    pg.psql("GRANT pg_monitor TO gateway");
    // Other clients keep the pool's two server connections changing hands.
    let _busy = bouncer.clients(&pg, "gateway", PASSWORD, "gateway", 2, "SELECT 1;");
    let vigil = Vigil::start(&format!(
        "[system]\nenabled = false\n\n[postgres]\nurl = \"{}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\npool_size = 1\n",
        bouncer.url("gateway", PASSWORD, "gateway")
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let runs = |result: &str| {
        sample(
            &metrics(&vigil),
            "vigil_check_runs_total",
            &[("check", "postgres"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    let all = || runs("pass") + runs("warn") + runs("fail");
    // Counted from a passing run on: connecting through PgBouncer on a loaded machine may time
    // out at start, which is not what this test is about.
    let (all0, pass0) = (all(), runs("pass"));
    assert!(
        poll_until(Duration::from_secs(15), || all() >= all0 + 10.0),
        "{}",
        metrics(&vigil)
    );
    let (all1, pass1) = (all(), runs("pass"));
    assert!(
        pass1 - pass0 >= all1 - all0 - 1.0,
        "at most one run of {} did not pass:\n{}\n{}",
        all1 - all0,
        metrics(&vigil),
        vigil.logs()
    );
    assert!(
        !vigil.logs().contains("cannot be read"),
        "the figures were read on every run:\n{}",
        vigil.logs()
    );
    let diag: serde_json::Value = serde_json::from_str(&vigil.get("/diag?format=json").body).unwrap();
    assert!(
        diag["checks"]["postgres:connections_in_use"][0]["observedValue"]
            .as_f64()
            .is_some_and(|n| n >= 1.0),
        "the server's figures are read through PgBouncer:\n{diag:#}"
    );
    let m = metrics(&vigil);
    assert_eq!(sample(&m, "vigil_postgres_blocked_queries", &[]), Some(0.0), "{m}");
}
