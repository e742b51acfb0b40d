//! The situations that make a database slow or full, made for real on a [`PgServer`]: a session
//! that holds a row lock inside a transaction and stays idle, sessions blocked behind it, roles and
//! databases with a `CONNECTION LIMIT` filled up, and a statement whose literals hold a secret.
//!
//! Every helper waits (bounded) until the server shows the situation in `pg_stat_activity`, so a
//! test that then asks vigil knows the situation is there.

use std::time::Duration;

use super::postgres::{PgServer, PgSession, ident, literal};
use super::{poll_until, wait_until};

/// How long the server may take to show a situation.
const SHOW_DEADLINE: Duration = Duration::from_secs(15);

/// A secret-looking string (a payment provider's live key) that a statement's literal holds.
pub const SECRET: &str = "sk_live_51HvigilT3stSecretKq7Zx";
/// A number that a statement's literal holds (a card-like figure nothing else produces).
pub const SECRET_NUMBER: &str = "8675309123";

/// An UPDATE whose string literal (with a doubled quote, which defeats a naive pattern) holds
/// [`SECRET`] and whose number literal is [`SECRET_NUMBER`].
pub fn secret_update(id: u32) -> String {
    format!(
        "UPDATE accounts SET note = 'customer''s key {SECRET}', balance = balance + {SECRET_NUMBER} WHERE id = {id}"
    )
}

/// [`secret_update`] as `/diag` must show it: every literal a `?`.
pub const SECRET_UPDATE_NORMALIZED: &str = "UPDATE accounts SET note = ?, balance = balance + ? WHERE id = ?";

/// `accounts (id int primary key, note text, balance numeric)` with rows 1, 2 and 3, in
/// database `db`, owned by `owner`.
#[track_caller]
pub fn create_accounts(pg: &PgServer, db: &str, owner: &str) {
    pg.psql_db(
        db,
        &format!(
            "CREATE TABLE accounts (id int PRIMARY KEY, note text NOT NULL DEFAULT '', balance numeric NOT NULL DEFAULT 0); \
             INSERT INTO accounts (id) VALUES (1), (2), (3); \
             ALTER TABLE accounts OWNER TO {}",
            ident(owner)
        ),
    );
}

/// A session that ran a statement inside a transaction and stays `idle in transaction`, holding
/// its locks: the batch job that forgot to commit.
pub struct LockHolder {
    session: PgSession,
    /// Its server process id (`pg_stat_activity.pid`).
    pub pid: u32,
}

impl LockHolder {
    /// Opens a session on `url` (a `postgres://` URL without a query string) with
    /// `application_name`, runs `BEGIN; <statement>;` and leaves it idle in the transaction.
    /// Waits until `pg_stat_activity` shows it so.
    #[track_caller]
    pub fn start(pg: &PgServer, url: &str, application_name: &str, statement: &str) -> LockHolder {
        let mut session = pg
            .session(&format!("{url}?application_name={application_name}"))
            .unwrap_or_else(|e| panic!("LockHolder: cannot connect: {e}"));
        let pid = session.backend_pid();
        session.query(&format!("BEGIN; {statement};"));
        wait_until(SHOW_DEADLINE, "the lock holder to be idle in transaction", || {
            pg.psql(&format!("SELECT state FROM pg_stat_activity WHERE pid = {pid}")) == "idle in transaction"
        });
        LockHolder { session, pid }
    }

    /// `COMMIT`: the locks go, whatever waited on them runs.
    #[track_caller]
    pub fn commit(&mut self) {
        self.session.query("COMMIT;");
    }

    /// The session itself (to run more in the transaction).
    pub fn session(&mut self) -> &mut PgSession {
        &mut self.session
    }
}

/// `n` sessions on `url` with `application_name`, each sending `statement` (which must wait on a
/// lock someone holds). Waits until all `n` wait on a lock (`wait_event_type = 'Lock'`) and returns
/// them; dropping them ends the waits.
#[track_caller]
pub fn blocked_sessions(pg: &PgServer, url: &str, application_name: &str, n: usize, statement: &str) -> Vec<PgSession> {
    let sessions: Vec<PgSession> = (0..n)
        .map(|i| {
            let mut session = pg
                .session(&format!("{url}?application_name={application_name}"))
                .unwrap_or_else(|e| panic!("blocked_sessions: session {} of {n}: {e}", i + 1));
            session.send(&format!("{statement};"));
            session
        })
        .collect();
    let mut last = String::new();
    let all_waiting = poll_until(SHOW_DEADLINE, || {
        last = waiting_on_locks(pg, application_name).to_string();
        last == n.to_string()
    });
    assert!(
        all_waiting,
        "blocked_sessions: {last} of {n} sessions wait on a lock; pg_stat_activity:\n{}",
        pg.psql("SELECT pid, application_name, state, wait_event_type, wait_event, pg_blocking_pids(pid) FROM pg_stat_activity")
    );
    sessions
}

/// Sessions of `application_name` waiting on a lock now.
#[track_caller]
pub fn waiting_on_locks(pg: &PgServer, application_name: &str) -> usize {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = {} AND wait_event_type = 'Lock'",
        literal(application_name)
    ))
    .parse()
    .expect("count(*)")
}

/// `ALTER ROLE role CONNECTION LIMIT n` (-1: none).
#[track_caller]
pub fn set_role_connection_limit(pg: &PgServer, role: &str, n: i32) {
    pg.psql(&format!("ALTER ROLE {} CONNECTION LIMIT {n}", ident(role)));
}

/// `ALTER DATABASE db CONNECTION LIMIT n` (-1: none).
#[track_caller]
pub fn set_database_connection_limit(pg: &PgServer, db: &str, n: i32) {
    pg.psql(&format!("ALTER DATABASE {} CONNECTION LIMIT {n}", ident(db)));
}

/// Client backends of `role` now (what `rolconnlimit` is checked against).
#[track_caller]
pub fn role_connections(pg: &PgServer, role: &str) -> usize {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {} AND backend_type = 'client backend'",
        literal(role)
    ))
    .parse()
    .expect("count(*)")
}

/// Client backends in database `db` now (what `datconnlimit` is checked against).
#[track_caller]
pub fn database_connections(pg: &PgServer, db: &str) -> usize {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND backend_type = 'client backend'",
        literal(db)
    ))
    .parse()
    .expect("count(*)")
}

/// Opens sessions on `url` until the server refuses one (at most `at_most`, then panics): returns
/// the sessions and the refusal (psql's message, e.g. `too many connections for role "gateway"`).
#[track_caller]
pub fn fill_until_refused(pg: &PgServer, url: &str, at_most: usize) -> (Vec<PgSession>, String) {
    let mut sessions = Vec::new();
    loop {
        match pg.session(url) {
            Ok(session) => {
                sessions.push(session);
                assert!(
                    sessions.len() <= at_most,
                    "fill_until_refused: {at_most} sessions and still accepted"
                );
            }
            Err(refusal) => return (sessions, refusal),
        }
    }
}
