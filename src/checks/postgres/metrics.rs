//! The `postgres` check's figures: `vigil_postgres_*`.

use prometheus::core::Collector;
use prometheus::{Gauge, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts};

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
        };
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
            ]
        };
        metrics.register_group(name, collectors)?;
        Ok(pg)
    }
}
