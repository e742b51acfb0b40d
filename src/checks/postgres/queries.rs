//! The one statistics query a run sends, and what it yields.
//!
//! One round trip (a single unnamed statement, no parameters) keeps the agent's load on the server at a
//! handful of statements per run. It reads only `current_setting`, `pg_is_in_recovery` and
//! `pg_stat_activity`, which every role may read (a role without `pg_read_all_stats` /
//! `pg_monitor` sees other roles' sessions without their state, query text and even
//! `backend_type`: a hidden row with a database and a user is counted as a client connection in
//! state `unknown` (background workers have neither), and the README says to grant `pg_monitor`
//! for exact figures).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;
use tokio_postgres::{Client, Row};

/// How many long queries `/diag` lists.
pub(super) const TOP: i64 = 5;
/// How many application_names are read, shown in `/diag` and exported one series each
/// (`vigil_postgres_connections_by_application`); the rest are summed as `other`, so that the
/// series stay bounded whatever connects.
pub(super) const TOP_APPLICATIONS: i64 = 10;
/// How much of a long query's text `/diag` shows.
pub(super) const QUERY_CHARS: i64 = 100;

/// The statement, with the long-query threshold inlined as a number of seconds (a value from
/// the validated configuration, not from outside).
pub(super) fn stats_sql(long_query: Duration) -> String {
    let seconds = long_query.as_secs_f64();
    format!(
        "WITH a AS (\
           SELECT pid, coalesce(state, 'unknown') AS state, coalesce(application_name, '') AS app, \
                  now() - query_start AS running, query \
           FROM pg_stat_activity \
           WHERE backend_type = 'client backend' \
              OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL)), \
         l AS (SELECT * FROM a WHERE state NOT IN ('idle', 'unknown') AND running > make_interval(secs => {seconds})) \
         SELECT \
           current_setting('max_connections')::int4, \
           current_setting('superuser_reserved_connections')::int4, \
           coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int4, \
           pg_is_in_recovery(), \
           current_setting('server_version'), \
           pg_backend_pid(), \
           (SELECT count(*) FROM a), \
           (SELECT coalesce(json_object_agg(state, n), '{{}}') FROM (SELECT state, count(*) AS n FROM a GROUP BY 1) s)::text, \
           (SELECT coalesce(json_agg(json_build_object('application_name', app, 'connections', n) ORDER BY n DESC, app), '[]') \
              FROM (SELECT app, count(*) AS n FROM a GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_APPLICATIONS}) t)::text, \
           (SELECT count(*) FROM l), \
           (SELECT coalesce(json_agg(json_build_object('pid', pid, 'seconds', round(extract(epoch FROM running)::numeric, 1), \
                     'application_name', app, 'state', state, 'query', left(query, {QUERY_CHARS})) ORDER BY running DESC), '[]') \
              FROM (SELECT * FROM l ORDER BY running DESC LIMIT {TOP}) x)::text"
    )
}

/// What the statistics query found.
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
    pub longest_queries: Json,
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
        let json = |i: usize| -> Result<Json, tokio_postgres::Error> {
            let text: String = row.try_get(i)?;
            Ok(serde_json::from_str(&text).unwrap_or(Json::Null))
        };
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
            longest_queries: json(10)?,
        })
    }
}

/// Runs the statistics query on `client`: `query_typed` sends it unnamed, in one round trip,
/// where a prepared statement would cost a second one on every run. `None`: the server
/// returned no row (the statement always yields one; a proxy in between might not).
pub(super) async fn read_stats(client: &Client, sql: &str) -> Result<Option<Stats>, tokio_postgres::Error> {
    let rows = client.query_typed(sql, &[]).await?;
    rows.first().map(Stats::from_row).transpose()
}
