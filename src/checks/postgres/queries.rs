//! The one statistics statement a run sends, and what it yields.
//!
//! One round trip per run (a single statement without parameters, prepared once on the kept
//! connection) keeps the agent's load on the server at two statements per run (`SELECT 1` on the
//! pool, this one on the kept connection).
//! It reads `pg_stat_activity` once (a materialized CTE every part reads, client backends
//! filtered where read rather than copied into a second one), the settings,
//! `pg_roles` and `pg_database` for the role's and the database's own limits, the recovery
//! functions, and, only while some session waits on a lock, `pg_blocking_pids()` for at most
//! [`EDGES`] waiting sessions and (PostgreSQL 14+) `pg_locks.waitstart`. Every list has a
//! `LIMIT`; query text is cut to [`QUERY_READ`] characters at the server and replaced by its
//! normalized form ([`super::sql_text::normalize`], every literal a `?`, at most
//! [`QUERY_CHARS`] characters) as soon as it is parsed: the raw text never outlives the parse.
//!
//! Every function and view it reads is open to every role, but a role without
//! `pg_read_all_stats` / `pg_monitor` sees other roles' sessions without their state, query text,
//! wait event and even `backend_type`: a hidden row with a database and a user is counted as a
//! client connection in state `unknown` (background workers have neither), and the README says
//! to grant `pg_monitor` for exact figures.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement};

use super::sql_text;

/// How many long queries `/diag` lists.
pub(super) const TOP: i64 = 5;
/// How many application_names are read, shown in `/diag` and exported one series each
/// (`vigil_postgres_connections_by_application`); the rest are summed as `other`, so that the
/// series stay bounded whatever connects.
pub(super) const TOP_APPLICATIONS: i64 = 10;
/// How much of a query's text is read from the server: enough that its normalized form can fill
/// [`QUERY_CHARS`] after literals shrink to `?`.
const QUERY_READ: i64 = 1000;
/// How much of a query's normalized text `/diag` shows.
pub(super) const QUERY_CHARS: usize = 200;
/// How many sessions waiting on a lock are asked `pg_blocking_pids()` (the longest waits
/// first): enough to follow any chain a person could act on, bounded when hundreds wait.
const EDGES: i64 = 200;
/// How many blockers a waiting session lists.
const BLOCKERS_PER_WAIT: i64 = 16;
/// How many blocking sessions are described (pid, application_name, client_addr, …): those not
/// waiting themselves first (a chain's root), the oldest transactions first.
const HOLDERS: i64 = 50;

/// The statement for a server: PostgreSQL 14 and later say since when a lock is awaited
/// (`pg_locks.waitstart`); before, a wait is measured from the start of the waiting statement.
#[derive(Debug, Clone)]
pub(super) struct Statements {
    legacy: String,
    waitstart: String,
}

impl Statements {
    /// The thresholds are inlined as numbers of seconds (values from the validated
    /// configuration, not from outside).
    pub(super) fn new(long_query: Duration, lock_wait: Duration, idle_in_transaction: Duration) -> Statements {
        let thresholds = Thresholds {
            long_query: long_query.as_secs_f64(),
            lock_wait: lock_wait.as_secs_f64(),
            idle: idle_in_transaction.as_secs_f64(),
        };
        Statements {
            legacy: statement(&thresholds, false),
            waitstart: statement(&thresholds, true),
        }
    }

    /// The statement for a server of `version_num` (`server_version_num`; unknown before the
    /// first read: the statement every version understands).
    pub(super) fn for_version(&self, version_num: Option<i32>) -> &str {
        match version_num {
            Some(v) if v >= 140_000 => &self.waitstart,
            _ => &self.legacy,
        }
    }
}

struct Thresholds {
    long_query: f64,
    lock_wait: f64,
    idle: f64,
}

/// A session as the statement describes it (alias `s` of a row of the `a` CTE).
fn who(s: &str) -> String {
    format!(
        "json_build_object('pid', {s}.pid, 'application_name', {s}.app, 'client_addr', {s}.addr, 'state', {s}.state, \
         'backend_type', {s}.backend_type, 'transaction_seconds', extract(epoch FROM {s}.xact_age)::float8, \
         'state_seconds', extract(epoch FROM {s}.state_age)::float8, 'waiting', coalesce({s}.waiting, false), \
         'query', left({s}.query, {QUERY_READ}))"
    )
}

fn statement(t: &Thresholds, waitstart: bool) -> String {
    let Thresholds {
        long_query,
        lock_wait,
        idle,
    } = t;
    // Only while someone waits on a lock is pg_locks read (a one-time filter: the scan is skipped
    // otherwise).
    let since = match waitstart {
        true => {
            "SELECT pid, min(waitstart) AS since FROM pg_locks \
                 WHERE NOT granted AND waitstart IS NOT NULL AND EXISTS (SELECT 1 FROM a WHERE waiting) GROUP BY pid"
        }
        false => "SELECT NULL::int4 AS pid, NULL::timestamptz AS since WHERE false",
    };
    let (o, x, h, b) = (who("o"), who("x"), who("h"), who("b"));
    format!(
        "WITH a AS (\
           SELECT pid, backend_type, \
                  (backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL)) AS client, \
                  coalesce(state, 'unknown') AS state, coalesce(application_name, '') AS app, usename, datname, \
                  host(client_addr) AS addr, now() - xact_start AS xact_age, now() - state_change AS state_age, \
                  now() - query_start AS running, wait_event_type = 'Lock' AS waiting, query \
           FROM pg_stat_activity), \
         l AS (SELECT * FROM a WHERE client AND state NOT IN ('idle', 'unknown') AND running > make_interval(secs => {long_query})), \
         k AS ({since}), \
         w AS (SELECT c.pid, coalesce(now() - k.since, c.running) AS waited FROM a c LEFT JOIN k USING (pid) \
               WHERE c.client AND c.waiting), \
         e AS (SELECT pid, waited, (pg_blocking_pids(pid))[1:{BLOCKERS_PER_WAIT}] AS blockers \
               FROM (SELECT pid, waited FROM w ORDER BY waited DESC LIMIT {EDGES}) t), \
         i AS (SELECT * FROM a WHERE client AND state IN ('idle in transaction', 'idle in transaction (aborted)')) \
         SELECT \
           current_setting('max_connections')::int4, \
           current_setting('superuser_reserved_connections')::int4, \
           coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int4, \
           pg_is_in_recovery(), \
           current_setting('server_version'), \
           pg_backend_pid(), \
           (SELECT count(*) FROM a WHERE client), \
           (SELECT coalesce(json_object_agg(state, n), '{{}}') FROM (SELECT state, count(*) AS n FROM a WHERE client GROUP BY 1) s)::text, \
           (SELECT coalesce(json_agg(json_build_object('application_name', app, 'connections', n) ORDER BY n DESC, app), '[]') \
              FROM (SELECT app, count(*) AS n FROM a WHERE client GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_APPLICATIONS}) t)::text, \
           (SELECT count(*) FROM l), \
           (SELECT coalesce(json_agg(json_build_object('pid', pid, 'seconds', round(extract(epoch FROM running)::numeric, 1), \
                     'application_name', app, 'state', state, 'query', left(query, {QUERY_READ})) ORDER BY running DESC), '[]') \
              FROM (SELECT * FROM l ORDER BY running DESC LIMIT {TOP}) x)::text, \
           json_build_object( \
             'version_num', current_setting('server_version_num')::int4, \
             'replay_lag', CASE WHEN pg_is_in_recovery() THEN \
                 CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                      ELSE extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))::float8 END END, \
             'replayed_since_start', pg_last_xact_replay_timestamp() IS NOT NULL, \
             'role', (SELECT json_build_object('name', rolname, 'limit', rolconnlimit, 'superuser', rolsuper) \
                        FROM pg_roles WHERE rolname = session_user), \
             'role_connections', (SELECT count(*) FROM a WHERE client AND usename = session_user), \
             'database', (SELECT json_build_object('name', datname, 'limit', datconnlimit) \
                            FROM pg_database WHERE datname = current_database()), \
             'database_connections', (SELECT count(*) FROM a WHERE client AND datname = current_database()), \
             'vigil_connections', (SELECT count(*) FROM a WHERE client AND app = 'vigil'), \
             'oldest', (SELECT {o} FROM a o WHERE client AND xact_age IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_age DESC LIMIT 1), \
             'idle_count', (SELECT count(*) FROM i WHERE state_age > make_interval(secs => {idle})), \
             'idle_max', (SELECT extract(epoch FROM max(state_age))::float8 FROM i), \
             'idle_sessions', (SELECT json_agg({x} ORDER BY x.state_age DESC) \
                 FROM (SELECT * FROM i WHERE state_age > make_interval(secs => {idle}) ORDER BY state_age DESC LIMIT {TOP}) x), \
             'waiting', (SELECT count(*) FROM w), \
             'blocked', (SELECT count(*) FROM w WHERE waited > make_interval(secs => {lock_wait})), \
             'wait_max', (SELECT extract(epoch FROM max(waited))::float8 FROM w), \
             'edges', (SELECT json_agg(json_build_object('pid', pid, 'seconds', extract(epoch FROM waited)::float8, 'blockers', blockers)) FROM e), \
             'holders', (SELECT json_agg({h}) FROM (SELECT * FROM a WHERE pid IN (SELECT unnest(blockers) FROM e) \
                            ORDER BY coalesce(waiting, false), xact_age DESC NULLS LAST LIMIT {HOLDERS}) h), \
             'blocked_sessions', (SELECT json_agg(json_build_object('session', {b}, 'waited_seconds', extract(epoch FROM b.waited)::float8, \
                                                   'blocked_by', b.blockers) ORDER BY b.waited DESC) \
                 FROM (SELECT c.*, e.waited, e.blockers FROM e JOIN a c USING (pid) \
                       WHERE c.client AND e.waited > make_interval(secs => {lock_wait}) ORDER BY e.waited DESC LIMIT {TOP}) b) \
           )::text"
    )
}

/// What the statistics statement found.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Stats {
    pub max_connections: i32,
    pub superuser_reserved_connections: i32,
    /// `reserved_connections` (PostgreSQL 16+; 0 before).
    pub reserved_connections: i32,
    pub in_recovery: bool,
    pub server_version: String,
    /// The backend pid of the connection the statistics were read on.
    pub backend_pid: i32,
    /// Client backends, the agent's own included.
    pub connections_in_use: i64,
    pub by_state: Json,
    pub top_applications: Json,
    pub long_queries: i64,
    /// The longest queries, their text normalized.
    pub longest_queries: Json,
    /// Why the database is slow or full: locks, transactions, limits, recovery.
    pub why: Why,
}

/// The part of the statement that says why the database is slow or full (issue 21), as the
/// server built it (JSON), every query text normalized once parsed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Why {
    pub version_num: Option<i32>,
    /// On a standby: seconds since the last replayed transaction while received WAL waits
    /// unreplayed; 0 when everything received is replayed. A standby that has replayed no
    /// transaction since it started counts from its start: a lower bound.
    pub replay_lag: Option<f64>,
    /// Whether the standby has replayed a transaction since it started.
    pub replayed_since_start: bool,
    /// The role the URL names (`session_user`).
    pub role: Option<RoleRow>,
    pub role_connections: i64,
    /// The database the URL names.
    pub database: Option<DatabaseRow>,
    pub database_connections: i64,
    /// Client backends with `application_name = vigil` (every replica's agent).
    pub vigil_connections: i64,
    /// The oldest open transaction but the agent's own.
    pub oldest: Option<Session>,
    /// Sessions idle in transaction longer than `idle_in_transaction_warn`, and the longest idle
    /// time of all idle-in-transaction sessions.
    pub idle_count: i64,
    pub idle_max: Option<f64>,
    pub idle_sessions: Option<Vec<Session>>,
    /// Client backends waiting on a lock; those waiting longer than `lock_wait`; the longest wait.
    pub waiting: i64,
    pub blocked: i64,
    pub wait_max: Option<f64>,
    /// Who waits on whom, for the longest waits.
    pub edges: Option<Vec<Edge>>,
    /// The sessions the waiting ones wait on.
    pub holders: Option<Vec<Session>>,
    /// The longest blocked queries, for `/diag`.
    pub blocked_sessions: Option<Vec<Blocked>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RoleRow {
    pub name: String,
    /// `rolconnlimit`; -1 for none.
    pub limit: i32,
    /// Superusers are not held to the role's and the database's limits.
    pub superuser: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct DatabaseRow {
    pub name: String,
    /// `datconnlimit`; -1 for none.
    pub limit: i32,
}

/// A session of `pg_stat_activity`, as `/diag` names it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Session {
    pub pid: i32,
    pub application_name: String,
    /// `null` for a Unix socket (or hidden from the agent's role).
    pub client_addr: Option<String>,
    pub state: String,
    pub backend_type: Option<String>,
    /// How long its transaction has been open; `null` outside a transaction.
    pub transaction_seconds: Option<f64>,
    /// How long it has been in its state.
    pub state_seconds: Option<f64>,
    /// Whether it waits on a lock itself.
    pub waiting: bool,
    /// Its query, normalized (every literal a `?`, at most [`QUERY_CHARS`] characters).
    pub query: Option<String>,
}

/// A waiting session and the sessions it waits on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Edge {
    pub pid: i32,
    pub seconds: f64,
    pub blockers: Option<Vec<i32>>,
}

/// A query blocked longer than `lock_wait`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Blocked {
    pub session: Session,
    pub waited_seconds: f64,
    pub blocked_by: Option<Vec<i32>>,
}

impl Why {
    /// Every query text replaced by its normalized form.
    fn normalize(&mut self) {
        let sessions = self
            .oldest
            .iter_mut()
            .chain(self.idle_sessions.iter_mut().flatten())
            .chain(self.holders.iter_mut().flatten())
            .chain(self.blocked_sessions.iter_mut().flatten().map(|b| &mut b.session));
        for session in sessions {
            session.query = session.query.take().map(|q| sql_text::normalize(&q, QUERY_CHARS));
        }
    }
}

impl Stats {
    /// Connections ordinary roles can use.
    pub(super) fn usable(&self) -> i64 {
        i64::from(self.max_connections - self.superuser_reserved_connections - self.reserved_connections).max(1)
    }

    pub(super) fn saturation(&self) -> f64 {
        self.connections_in_use as f64 / self.usable() as f64
    }

    /// Count of client backends in a state as PostgreSQL names it.
    pub(super) fn in_state(&self, state: &str) -> i64 {
        self.by_state.get(state).and_then(Json::as_i64).unwrap_or(0)
    }

    /// The top application_names with their connections, and what the others hold together.
    pub(super) fn by_application(&self) -> (Vec<(String, i64)>, i64) {
        let top: Vec<(String, i64)> = self
            .top_applications
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|a| {
                        let name = a["application_name"].as_str().unwrap_or_default().to_owned();
                        (name, a["connections"].as_i64().unwrap_or(0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let listed: i64 = top.iter().map(|(_, n)| n).sum();
        (top, (self.connections_in_use - listed).max(0))
    }

    /// `name=count, …` of a JSON list of `{application_name, connections}`, for the text `/diag`.
    pub(super) fn top_applications_line(&self) -> String {
        let Some(list) = self.top_applications.as_array() else {
            return String::new();
        };
        list.iter()
            .map(|a| {
                let name = a["application_name"].as_str().unwrap_or_default();
                let name = if name.is_empty() { "(none)" } else { name };
                format!("{name}={}", a["connections"])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `state=count, …`, busiest first, for the text `/diag`.
    pub(super) fn by_state_line(&self) -> String {
        let Some(map) = self.by_state.as_object() else {
            return String::new();
        };
        let mut pairs: Vec<(&String, i64)> = map.iter().map(|(k, v)| (k, v.as_i64().unwrap_or(0))).collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn from_row(row: &Row) -> Result<Stats, tokio_postgres::Error> {
        let text = |i: usize| -> Result<String, tokio_postgres::Error> { row.try_get(i) };
        let json = |i: usize| -> Result<Json, tokio_postgres::Error> {
            Ok(serde_json::from_str(&text(i)?).unwrap_or(Json::Null))
        };
        let mut longest_queries = json(10)?;
        for query in longest_queries
            .as_array_mut()
            .into_iter()
            .flatten()
            .filter_map(|q| q.get_mut("query"))
        {
            *query = Json::from(query.as_str().map(|q| sql_text::normalize(q, QUERY_CHARS)));
        }
        let mut why: Why = serde_json::from_str(&text(11)?).unwrap_or_else(|error| {
            tracing::debug!(check = "postgres", %error, "The statement's diagnosis does not parse");
            Why::default()
        });
        why.normalize();
        Ok(Stats {
            max_connections: row.try_get(0)?,
            superuser_reserved_connections: row.try_get(1)?,
            reserved_connections: row.try_get(2)?,
            in_recovery: row.try_get(3)?,
            server_version: row.try_get(4)?,
            backend_pid: row.try_get(5)?,
            connections_in_use: row.try_get(6)?,
            by_state: json(7)?,
            top_applications: json(8)?,
            long_queries: row.try_get(9)?,
            longest_queries,
            why,
        })
    }
}

/// How the kept connection sends the statistics statement.
#[derive(Debug, Default)]
pub(super) enum Plan {
    /// Not prepared yet.
    #[default]
    Untried,
    /// Prepared on this connection: executed in one round trip, planned once.
    Prepared(Statement),
    /// Sent unnamed each time: a named statement does not survive here (PgBouncer in
    /// transaction pooling between vigil and the server hands each transaction another server
    /// connection).
    Unnamed,
}

/// Whether a failure says named statements do not survive on this connection.
fn no_named_statements(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT)
}

/// Runs the statistics statement on `client`. With `plan` (the kept connection), it is prepared
/// once per connection and then executed in one round trip per run: the statement is large
/// enough that planning it costs the server several times what executing it does, and a prepared
/// statement without parameters keeps its plan. Without (a pooled connection, when the kept one
/// cannot be had), or where named statements do not survive, `query_typed` sends it unnamed, in
/// one round trip, planned each time. `None`: the server returned no row (the statement always
/// yields one; a proxy in between might not).
pub(super) async fn read_stats(
    client: &Client,
    sql: &str,
    plan: Option<&mut Plan>,
) -> Result<Option<Stats>, tokio_postgres::Error> {
    let rows = match plan {
        None | Some(Plan::Unnamed) => client.query_typed(sql, &[]).await?,
        Some(plan) => {
            let prepared = match plan {
                Plan::Prepared(statement) => Ok(statement.clone()),
                _ => client.prepare(sql).await,
            };
            let executed = match prepared {
                Ok(statement) => {
                    *plan = Plan::Prepared(statement.clone());
                    client.query(&statement, &[]).await
                }
                Err(error) => Err(error),
            };
            match executed {
                Ok(rows) => rows,
                Err(error) if no_named_statements(&error) => {
                    *plan = Plan::Unnamed;
                    client.query_typed(sql, &[]).await?
                }
                Err(error) => return Err(error),
            }
        }
    };
    rows.first().map(Stats::from_row).transpose()
}

/// `server_version_num` from the `server_version` a server reports at connection (`15.4 (Debian
/// …)`, `9.6.24`), to pick the statement before the first one is sent.
pub(super) fn version_num(server_version: &str) -> Option<i32> {
    let mut parts = server_version
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|p| p.parse::<i32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    Some(if major >= 10 {
        major * 10_000 + minor
    } else {
        major * 10_000 + minor * 100
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_a_server_reports_picks_the_statement() {
        assert_eq!(version_num("15.4 (Debian 15.4-1.pgdg120+1)"), Some(150_004));
        assert_eq!(version_num("14.0"), Some(140_000));
        assert_eq!(version_num("9.6.24"), Some(90_600));
        assert_eq!(version_num("16beta1"), Some(160_000));
        assert_eq!(version_num("unknown"), None);
        let s = Statements::new(Duration::from_secs(30), Duration::from_secs(5), Duration::from_secs(60));
        assert!(s.for_version(Some(150_004)).contains("waitstart"));
        assert!(!s.for_version(Some(130_000)).contains("waitstart"));
        assert!(!s.for_version(None).contains("waitstart"));
    }
}
