//! Self-tests of the harness for "why the database is slow or full" (issue 21) against the real
//! servers: PgBouncer in front of a cluster, a streaming standby, a cluster that requires client
//! certificates, and the lock, limit and secret scenarios. (The vigil tests that use them are
//! `tests/postgres_why.rs` and `tests/pgbouncer.rs`.)

mod support;

use std::time::{Duration, Instant};

use support::pg_client_cert::ClientCerts;
use support::pg_scenarios::{
    self, LockHolder, SECRET, SECRET_NUMBER, blocked_sessions, create_accounts, fill_until_refused, secret_update,
};
use support::pg_standby::Replication;
use support::pgbouncer::{PgBouncer, STATS_USER};
use support::{PgServer, poll_until, wait_until};

const PASSWORD: &str = "gw-harness-Pa55";

#[test]
fn pgbouncer_serves_pools_makes_clients_wait_and_stops() {
    let pg = PgServer::start();
    pg.create_user_db("gateway", PASSWORD);
    pg.create_user_db("reports", "reports-pw");
    let started = Instant::now();
    let mut bouncer = PgBouncer::builder(&pg)
        .database("gateway")
        .database("reports")
        .user("gateway", PASSWORD)
        .user("reports", "reports-pw")
        .start();
    eprintln!("PgBouncer started in {:?}", started.elapsed());
    assert!(bouncer.admin("SHOW VERSION").contains("PgBouncer 1."));

    // Clients reach PostgreSQL through the pool as themselves.
    let mut client = pg.session(&bouncer.url("gateway", PASSWORD, "gateway")).unwrap();
    assert_eq!(
        client.query("SELECT current_user, current_database();"),
        "gateway|gateway"
    );
    drop(client);

    // The read-only console user reads the pools (a pool exists once a client used it).
    let mut stats = pg.session(&bouncer.stats_url()).expect("the stats user on the console");
    let pools = stats.query("SHOW POOLS;");
    assert!(pools.lines().any(|l| l.starts_with("gateway|gateway|")), "{pools}");
    assert!(stats.query("SHOW DATABASES;").contains("reports"));
    drop(stats);
    let wrong = pg
        .session(&bouncer.url(STATS_USER, "wrong", "pgbouncer"))
        .err()
        .expect("a wrong console password must fail");
    assert!(wrong.contains("SASL authentication failed"), "{wrong}");

    // Two sleepers hold the pool's two server connections; a third client waits.
    let sleepers = bouncer.sleepers(&pg, "gateway", PASSWORD, "gateway", 2, 60);
    let pool = bouncer.pool("gateway");
    assert_eq!(
        (pool.sv_active, pool.cl_active, pool.pool_mode.as_str()),
        (2, 2, "transaction"),
        "{pool:?}"
    );
    let mut waiter = bouncer
        .clients(&pg, "gateway", PASSWORD, "gateway", 1, "SELECT 41;")
        .pop()
        .unwrap();
    bouncer.wait_for_waiting("gateway", 1);
    let mut pool = bouncer.pool("gateway");
    assert!(
        poll_until(Duration::from_secs(5), || {
            pool = bouncer.pool("gateway");
            pool.maxwait_seconds >= 1.0
        }),
        "maxwait does not grow: {pool:?}"
    );
    assert_eq!(
        bouncer.pool("reports").cl_waiting,
        0,
        "another database's pool is unaffected"
    );

    // The sleepers leave: the waiter is served.
    drop(sleepers);
    wait_until(Duration::from_secs(10), "the waiting client to be served", || {
        bouncer.pool("gateway").cl_waiting == 0
    });
    assert_eq!(waiter.query("SELECT 42;"), "41\n42");

    // Stopped: the port refuses; started again on the same port: serves again.
    let port = bouncer.port();
    bouncer.stop();
    assert!(!bouncer.is_listening());
    assert!(pg.session(&bouncer.url("gateway", PASSWORD, "gateway")).is_err());
    bouncer.start_again();
    assert_eq!(bouncer.port(), port);
    let mut client = pg.session(&bouncer.url("gateway", PASSWORD, "gateway")).unwrap();
    assert_eq!(client.query("SELECT 1;"), "1");
    drop(client);
    bouncer.kill();
    assert!(!bouncer.is_listening());
}

#[test]
fn a_standby_streams_lags_while_replay_is_paused_and_promotes() {
    let primary = PgServer::builder().replication().start();
    primary.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let started = Instant::now();
    let standby = primary.start_standby();
    eprintln!("standby streaming in {:?}", started.elapsed());
    assert!(standby.in_recovery());
    assert!(!primary.in_recovery());
    assert_ne!(standby.port(), primary.port());
    assert_eq!(standby.psql("SELECT x FROM t"), "1");
    assert!(
        standby
            .try_psql("INSERT INTO t VALUES (2)")
            .unwrap_err()
            .contains("read-only transaction"),
        "a standby refuses writes"
    );

    primary.psql("INSERT INTO t VALUES (2)");
    standby.wait_caught_up(&primary);
    assert_eq!(standby.psql("SELECT count(*) FROM t"), "2");
    assert_eq!(
        standby.psql("SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"),
        "t",
        "caught up: nothing received is unreplayed"
    );

    // Replay paused: WAL keeps arriving, the replayed position stays behind.
    standby.pause_replay();
    primary.psql("INSERT INTO t VALUES (3)");
    standby.wait_received_unreplayed();
    assert_eq!(standby.psql("SELECT count(*) FROM t"), "2");
    let lag: f64 = standby
        .psql("SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())")
        .parse()
        .unwrap();
    assert!(lag > 0.0, "replay lag {lag}");
    standby.resume_replay();
    standby.wait_caught_up(&primary);
    assert_eq!(standby.psql("SELECT count(*) FROM t"), "3");

    standby.promote();
    assert!(!standby.in_recovery());
    standby.psql("INSERT INTO t VALUES (4)");
    assert_eq!(standby.psql("SELECT count(*) FROM t"), "4");
}

#[test]
fn a_server_requiring_client_certificates_takes_only_the_right_one() {
    let pg = PgServer::start();
    pg.create_user_db("gateway", PASSWORD);
    let certs = ClientCerts::require(&pg, "gateway");

    for target in [certs.url("gateway"), certs.conninfo("gateway")] {
        let mut session = pg.session(&target).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(
            session.query("SELECT current_user, ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid();"),
            "gateway|t|/CN=gateway"
        );
    }

    // No client certificate: refused, whatever the password.
    let no_cert = format!(
        "host=127.0.0.1 port={} user=gateway password={PASSWORD} dbname=gateway sslmode=verify-full sslrootcert={}",
        pg.port(),
        certs.ca_file.display()
    );
    let refused = pg
        .session(&no_cert)
        .err()
        .expect("no client certificate must be refused");
    assert!(
        refused.contains("connection requires a valid client certificate"),
        "{refused}"
    );
    // A certificate of the right CA for someone else.
    let (cert, key) = certs.issue("someone-else", "other");
    let other = format!("{no_cert} sslcert={} sslkey={}", cert.display(), key.display());
    let refused = pg
        .session(&other)
        .err()
        .expect("another user's certificate must be refused");
    assert!(
        refused.contains("certificate authentication failed for user \"gateway\""),
        "{refused}"
    );
    // Plain text: no pg_hba.conf line.
    let plain = pg
        .session(&format!("{}?sslmode=disable", pg.url("gateway", PASSWORD, "gateway")))
        .err()
        .expect("plain text must be refused");
    assert!(plain.contains("no pg_hba.conf entry"), "{plain}");
    // The harness's own psql (unix socket) still works.
    assert_eq!(pg.psql("SELECT 1"), "1");
}

#[test]
fn a_lock_holder_blocks_sessions_until_it_commits_and_shows_its_secret_to_the_server() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    create_accounts(&pg, "gateway", "gateway");

    let mut holder = LockHolder::start(&pg, &url, "batch-import", &secret_update(1));
    let blocked = blocked_sessions(
        &pg,
        &url,
        "api",
        3,
        "UPDATE accounts SET balance = balance + 1 WHERE id = 1",
    );
    // The chain: the first waiter waits on the holder, the others (on the row's tuple lock) on it
    // or the holder; the holder itself waits on nothing.
    let blockers = pg.psql(
        "SELECT string_agg(array_to_string(pg_blocking_pids(pid), ','), ';') FROM pg_stat_activity WHERE application_name = 'api'",
    );
    assert!(blockers.contains(&holder.pid.to_string()), "{blockers}");
    assert_eq!(
        pg.psql(&format!(
            "SELECT cardinality(pg_blocking_pids({pid})) || ',' || host(client_addr) || ',' || application_name FROM pg_stat_activity WHERE pid = {pid}",
            pid = holder.pid
        )),
        "0,127.0.0.1,batch-import"
    );
    // The server shows the literals to anyone with pg_read_all_stats: vigil must not pass them on.
    let text = pg.psql(&format!(
        "SELECT query FROM pg_stat_activity WHERE pid = {}",
        holder.pid
    ));
    assert!(text.contains(SECRET) && text.contains(SECRET_NUMBER), "{text}");

    holder.commit();
    wait_until(Duration::from_secs(10), "the blocked sessions to go on", || {
        pg_scenarios::waiting_on_locks(&pg, "api") == 0
    });
    assert_eq!(
        pg.psql_db("gateway", "SELECT balance FROM accounts WHERE id = 1"),
        format!("{}", 8_675_309_123u64 + 3)
    );
    drop(blocked);
}

#[test]
fn role_and_database_connection_limits_refuse_with_their_own_messages() {
    let pg = PgServer::builder().max_connections(30).start();
    let limited = pg.create_user_db("limited", "limited-pw");
    pg_scenarios::set_role_connection_limit(&pg, "limited", 3);
    let (sessions, refusal) = fill_until_refused(&pg, &limited, 10);
    assert_eq!(sessions.len(), 3);
    assert!(
        refusal.contains("too many connections for role \"limited\""),
        "{refusal}"
    );
    assert_eq!(pg_scenarios::role_connections(&pg, "limited"), 3);
    drop(sessions);

    let small = pg.create_user_db("small", "small-pw");
    pg_scenarios::set_database_connection_limit(&pg, "small", 2);
    let (sessions, refusal) = fill_until_refused(&pg, &small, 10);
    assert_eq!(sessions.len(), 2);
    assert!(
        refusal.contains("too many connections for database \"small\""),
        "{refusal}"
    );
    assert_eq!(pg_scenarios::database_connections(&pg, "small"), 2);
}
