//! The `postgres` check's figures: `vigil_postgres_*`.

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, MetricsError};

/// The `postgres` check's figures; registered only when `[postgres]` is configured, so that
/// `vigil_postgres_up` is absent (not 0) where there is no database to watch.
#[derive(Clone)]
pub(crate) struct PostgresMetrics {
    /// 1 when the server answered this run (on the kept connection or the pool), even when full.
    pub up: IntGauge,
    pub query_duration_seconds: Histogram,
    /// Client backends by state: active, idle, idle_in_transaction, … (the agent's own included).
    pub connections: IntGaugeVec,
    /// Client backends by application_name: the top 10, the rest as `other`.
    pub connections_by_application: IntGaugeVec,
    /// Usable connections: max_connections minus the reserved ones.
    pub max_connections: IntGauge,
    pub connection_saturation_ratio: Gauge,
    /// The agent's own pool: in_use, idle, waiting.
    pub pool_connections: IntGaugeVec,
    /// Queries waiting on a lock longer than `lock_wait`.
    pub blocked_queries: Gauge,
    /// The longest current lock wait (0 when nobody waits).
    pub lock_wait_max_seconds: Gauge,
    /// The oldest open transaction but the agent's own (0 when none).
    pub oldest_transaction_seconds: Gauge,
    /// The longest a session has been idle inside a transaction (0 when none).
    pub idle_in_transaction_max_seconds: Gauge,
    /// 1 on a standby.
    pub in_recovery: Gauge,
    /// On a standby, its replay lag; NaN on a primary.
    pub replication_lag_seconds: Gauge,
    /// The usable limits that apply, by scope (server, role, database): a scope without a limit
    /// has no series.
    pub connection_limit: GaugeVec,
    /// The most replicas whose pools fit; NaN while an input is missing.
    pub connection_budget_replicas: Gauge,
}

/// `vigil_postgres_connections{state}` label values, in PostgreSQL's order; `unknown` counts
/// sessions whose state the agent's role may not see.
pub(crate) const POSTGRES_CONNECTION_STATES: &[&str] = &[
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "fastpath_function_call",
    "disabled",
    "unknown",
];

impl PostgresMetrics {
    /// Creates and registers the postgres series (every label value at 0).
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<PostgresMetrics, MetricsError> {
        let pg = PostgresMetrics {
            up: IntGauge::new(
                "vigil_postgres_up",
                "1 when PostgreSQL answered the last run (also when it refuses new clients), else 0.",
            )?,
            query_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vigil_postgres_query_duration_seconds",
                    "Duration of the trivial query (SELECT 1) on a connection of the agent's pool.",
                )
                .buckets(crate::metrics::DURATION_BUCKETS.to_vec()),
            )?,
            connections: IntGaugeVec::new(
                Opts::new(
                    "vigil_postgres_connections",
                    "Client connections to the server by state, the agent's own included.",
                ),
                &["state"],
            )?,
            connections_by_application: IntGaugeVec::new(
                Opts::new(
                    "vigil_postgres_connections_by_application",
                    "Client connections by application_name: the 10 with the most, the others summed as \"other\" (\"\" for none set).",
                ),
                &["application_name"],
            )?,
            max_connections: IntGauge::new(
                "vigil_postgres_max_connections",
                "Usable connections: max_connections minus superuser_reserved_connections and reserved_connections.",
            )?,
            connection_saturation_ratio: Gauge::new(
                "vigil_postgres_connection_saturation_ratio",
                "Client connections in use / usable connections.",
            )?,
            pool_connections: IntGaugeVec::new(
                Opts::new(
                    "vigil_postgres_pool_connections",
                    "The agent's own connection pool by state (in_use, idle, waiting); one kept connection is beside it.",
                ),
                &["state"],
            )?,
            blocked_queries: Gauge::new(
                "vigil_postgres_blocked_queries",
                "Queries waiting on a lock longer than postgres.lock_wait; NaN while unread.",
            )?,
            lock_wait_max_seconds: Gauge::new(
                "vigil_postgres_lock_wait_max_seconds",
                "The longest current lock wait of a client session (0: none waits); NaN while unread.",
            )?,
            oldest_transaction_seconds: Gauge::new(
                "vigil_postgres_oldest_transaction_seconds",
                "Age of the oldest open transaction of a client session, the agent's own left out; NaN while unread.",
            )?,
            idle_in_transaction_max_seconds: Gauge::new(
                "vigil_postgres_idle_in_transaction_max_seconds",
                "The longest time a session has been idle inside a transaction (0: none); NaN while unread.",
            )?,
            in_recovery: Gauge::new(
                "vigil_postgres_in_recovery",
                "1 when the server is in recovery (a standby), 0 on a primary; NaN while unread.",
            )?,
            replication_lag_seconds: Gauge::new(
                "vigil_postgres_replication_lag_seconds",
                "On a standby, seconds since the last replayed transaction while received WAL waits unreplayed (0: caught up); NaN on a primary.",
            )?,
            connection_limit: GaugeVec::new(
                Opts::new(
                    "vigil_postgres_connection_limit",
                    "The usable connection limits that apply to the URL's role and database: server (max_connections minus the reserved), role (rolconnlimit), database (datconnlimit); only those set.",
                ),
                &["scope"],
            )?,
            connection_budget_replicas: Gauge::new(
                "vigil_postgres_connection_budget_replicas",
                "The most gateway replicas whose DB pools (at their max) fit in the usable connections beside the other clients; NaN while the pool max or the replica count is unknown.",
            )?,
        };
        pg.why_unknown();
        pg.connection_budget_replicas.set(f64::NAN);
        for state in POSTGRES_CONNECTION_STATES {
            pg.connections.with_label_values(&[*state]);
        }
        for state in ["in_use", "idle", "waiting"] {
            pg.pool_connections.with_label_values(&[state]);
        }
        let handles = pg.clone();
        let collectors = move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.up.clone()),
                Box::new(handles.query_duration_seconds.clone()),
                Box::new(handles.connections.clone()),
                Box::new(handles.connections_by_application.clone()),
                Box::new(handles.max_connections.clone()),
                Box::new(handles.connection_saturation_ratio.clone()),
                Box::new(handles.pool_connections.clone()),
                Box::new(handles.blocked_queries.clone()),
                Box::new(handles.lock_wait_max_seconds.clone()),
                Box::new(handles.oldest_transaction_seconds.clone()),
                Box::new(handles.idle_in_transaction_max_seconds.clone()),
                Box::new(handles.in_recovery.clone()),
                Box::new(handles.replication_lag_seconds.clone()),
                Box::new(handles.connection_limit.clone()),
                Box::new(handles.connection_budget_replicas.clone()),
            ]
        };
        metrics.register_group(name, collectors)?;
        Ok(pg)
    }

    /// The "why" gauges read from the statistics statement, NaN: unknown until a run reads them
    /// and again while the database cannot be read (a stale figure would mislead).
    pub(super) fn why_unknown(&self) {
        for gauge in [
            &self.blocked_queries,
            &self.lock_wait_max_seconds,
            &self.oldest_transaction_seconds,
            &self.idle_in_transaction_max_seconds,
            &self.in_recovery,
            &self.replication_lag_seconds,
        ] {
            gauge.set(f64::NAN);
        }
    }
}
