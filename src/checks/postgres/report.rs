//! What one run of the postgres check shows: its metrics, its observations and its `/diag`
//! details, each figure described once.

use std::sync::PoisonError;

use serde_json::{Value as Json, json};

use super::budget::Budget;
use super::metrics::POSTGRES_CONNECTION_STATES;
use super::queries::{self, Stats};
use super::{Measured, PostgresCheck, tls, why};
use crate::core::fmt;
use crate::core::outcome::{Figure, Observation, Unit};

/// The agent's own pool, each figure described once: its `state` label on
/// `vigil_postgres_pool_connections`, its observation, and its key under `pool` in `/diag`.
pub(super) const POOL_FIGURES: [(&str, Figure); 3] = [
    ("in_use", Figure::new("pool_in_use", Unit::Count)),
    ("idle", Figure::new("pool_idle", Unit::Count)),
    ("waiting", Figure::new("pool_waiting", Unit::Count)),
];

pub(super) fn pool_values(pool: &deadpool_postgres::Status) -> [f64; 3] {
    [
        pool.size.saturating_sub(pool.available) as f64,
        pool.available as f64,
        pool.waiting as f64,
    ]
}

/// The server's figures, each described once: observation and metric (where it has one) take
/// the same value.
pub(super) const QUERY_DURATION: Figure = Figure::new("query_duration", Unit::Seconds);
pub(super) const CONNECTIONS_IN_USE: Figure = Figure::new("connections_in_use", Unit::Count);
pub(super) const MAX_CONNECTIONS: Figure = Figure::new("max_connections", Unit::Count);
pub(super) const SATURATION: Figure = Figure::new("saturation", Unit::Ratio);
pub(super) const LONG_QUERIES: Figure = Figure::new("long_queries", Unit::Count);
pub(super) const BUDGET_REPLICAS: Figure = Figure::new("connection_budget_replicas", Unit::Count);

impl PostgresCheck {
    pub(super) fn export(&self, m: &Measured) {
        if let Some(d) = m.query_duration {
            self.metrics.query_duration_seconds.observe(d.as_secs_f64());
        }
        self.metrics
            .up
            .set(i64::from(m.up(self.kept.is_some()) || m.answered_full()));
        for ((state, _), value) in POOL_FIGURES.iter().zip(pool_values(&m.pool)) {
            self.metrics
                .pool_connections
                .with_label_values(&[*state])
                .set(value as i64);
        }
        let Some(s) = &m.stats else {
            // Not read this run: a gap, not the last value (which would keep a saturation
            // or blocked-queries alert firing while the server is down).
            self.metrics.connection_saturation_ratio.set(f64::NAN);
            self.metrics.connections_by_application.reset();
            self.export_why(None, m.budget.as_ref());
            return;
        };
        for state in POSTGRES_CONNECTION_STATES {
            let pg_name = match *state {
                "idle_in_transaction" => "idle in transaction",
                "idle_in_transaction_aborted" => "idle in transaction (aborted)",
                "fastpath_function_call" => "fastpath function call",
                other => other,
            };
            self.metrics
                .connections
                .with_label_values(&[*state])
                .set(s.in_state(pg_name));
        }
        // Names come and go: last run's series leave with them, so at most 11 stand.
        let (top, others) = s.by_application();
        let by_application = &self.metrics.connections_by_application;
        by_application.reset();
        for (name, connections) in &top {
            by_application.with_label_values(&[name.as_str()]).set(*connections);
        }
        if others > 0 || top.len() as i64 == queries::TOP_APPLICATIONS {
            // Added, not set: an application_name that is itself "other" shares the series.
            by_application.with_label_values(&["other"]).add(others);
        }
        self.metrics.max_connections.set(s.usable());
        self.export_why(Some(s), m.budget.as_ref());
    }

    /// The "why" series: NaN (and no limit series) while the figures are unread.
    fn export_why(&self, s: Option<&Stats>, budget: Option<&Budget>) {
        let pg = &self.metrics;
        pg.connection_budget_replicas
            .set(budget.map_or(f64::NAN, |b| b.fit as f64));
        pg.connection_limit.reset();
        let Some(s) = s else {
            pg.why_unknown();
            return;
        };
        let limits = why::limits(s);
        for limit in &limits {
            pg.connection_limit
                .with_label_values(&[limit.scope.label()])
                .set(limit.limit as f64);
        }
        let saturation = why::tightest(&limits).map_or_else(|| s.saturation(), why::Limit::saturation);
        pg.connection_saturation_ratio.set(saturation);
        pg.blocked_queries.set(s.why.blocked as f64);
        pg.lock_wait_max_seconds.set(s.why.wait_max.unwrap_or(0.0));
        pg.oldest_transaction_seconds.set(why::oldest_transaction(s));
        pg.idle_in_transaction_max_seconds.set(s.why.idle_max.unwrap_or(0.0));
        pg.in_recovery.set(f64::from(u8::from(s.in_recovery)));
        pg.replication_lag_seconds
            .set(why::replication_lag(s).unwrap_or(f64::NAN));
    }

    pub(super) fn observations(&self, m: &Measured) -> Vec<Observation> {
        let mut observations = Vec::new();
        if let Some(d) = m.query_duration {
            observations.push(QUERY_DURATION.of(d.as_secs_f64()));
        }
        if let Some(s) = &m.stats {
            let limits = why::limits(s);
            let saturation = why::tightest(&limits).map_or_else(|| s.saturation(), why::Limit::saturation);
            observations.extend([
                CONNECTIONS_IN_USE.of(s.connections_in_use as f64),
                MAX_CONNECTIONS.of(s.usable() as f64),
                SATURATION.of(saturation),
                LONG_QUERIES.of(s.long_queries as f64),
                Observation::text("in_recovery", s.in_recovery.to_string()),
                Observation::text("connections_by_state", s.by_state_line()),
                Observation::text("top_application_names", s.top_applications_line()),
            ]);
            observations.extend(why::observations(s, &limits));
        }
        if let Some(b) = &m.budget {
            observations.push(BUDGET_REPLICAS.of(b.fit as f64));
        }
        observations.extend(
            POOL_FIGURES
                .iter()
                .zip(pool_values(&m.pool))
                .map(|((_, figure), value)| figure.of(value)),
        );
        observations
    }

    pub(super) fn details(&self, m: &Measured) -> Json {
        let last_loss = self
            .last_loss
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|(at, why)| json!({"at": fmt::timestamp_seconds(at), "reason": why}));
        let mut pool = serde_json::Map::new();
        pool.insert("max_size".to_owned(), json!(m.pool.max_size));
        pool.insert("size".to_owned(), json!(m.pool.size));
        for ((state, _), value) in POOL_FIGURES.iter().zip(pool_values(&m.pool)) {
            pool.insert((*state).to_owned(), json!(value as u64));
        }
        pool.insert("error".to_owned(), json!(m.probe_error.as_ref().map(|f| &f.reason)));
        let mut details = json!({
            "target": self.target.display,
            "user": self.target.user,
            "database": self.target.dbname,
            "sslmode": self.sslmode.as_str(),
            "kept_connection": {
                "open": self.kept.is_some(),
                "since": self.kept.as_ref().map(|k| fmt::timestamp_seconds(k.since)),
                "error": m.kept_error.as_ref().map(|f| &f.reason),
                "last_loss": last_loss,
            },
            "pool": pool,
            "long_query_threshold": fmt::duration(self.long_query),
            "require_primary": self.require_primary,
            "client_certificate": self.client_cert.as_ref().map(|files| json!({
                "sslcert": files.cert.display().to_string(),
                "sslkey": files.key.display().to_string(),
                "not_after": tls::client_cert_not_after(files).map(fmt::timestamp_seconds),
            })),
        });
        if let (Some(s), Json::Object(map)) = (&m.stats, &mut details) {
            map.insert("server".to_owned(), server_details(s));
            map.insert(
                "connections".to_owned(),
                json!({
                    "in_use": s.connections_in_use,
                    "saturation": s.saturation(),
                    "note": "client backends of every role, vigil's own included (its pool plus one kept connection, application_name=vigil)",
                    "by_state": s.by_state,
                    "top_application_names": s.top_applications,
                }),
            );
            map.insert(
                "long_queries".to_owned(),
                json!({"count": s.long_queries, "longest": s.longest_queries}),
            );
            let limits = why::limits(s);
            if let Json::Object(why) = why::details(s, &limits, self.lock_wait, self.idle_in_transaction_warn) {
                map.extend(why);
            }
            map.insert("budget".to_owned(), m.budget_details.clone().unwrap_or(Json::Null));
            if let Some(kept) = map.get_mut("kept_connection").and_then(Json::as_object_mut)
                && self.kept.is_some()
            {
                kept.insert("backend_pid".to_owned(), json!(s.backend_pid));
            }
        }
        details
    }
}

fn server_details(s: &Stats) -> Json {
    json!({
        "version": s.server_version,
        "in_recovery": s.in_recovery,
        "max_connections": s.max_connections,
        "superuser_reserved_connections": s.superuser_reserved_connections,
        "reserved_connections": s.reserved_connections,
        "usable_connections": s.usable(),
    })
}
