//! The `pgbouncer` check's figures: `vigil_pgbouncer_*`, per judged database (summed over its
//! users).

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntGauge, Opts};

use crate::metrics::{Metrics, MetricsError};

/// The `state` label values of `vigil_pgbouncer_clients`.
pub(crate) const CLIENT_STATES: [&str; 2] = ["active", "waiting"];
/// The `state` label values of `vigil_pgbouncer_servers`.
pub(crate) const SERVER_STATES: [&str; 3] = ["active", "idle", "used"];

/// Registered only when `[pgbouncer]` is configured.
#[derive(Clone)]
pub(crate) struct PgbouncerMetrics {
    /// 1 when the admin console answered `SHOW POOLS` this run.
    pub up: IntGauge,
    pub clients: GaugeVec,
    pub servers: GaugeVec,
    pub max_wait_seconds: GaugeVec,
}

impl PgbouncerMetrics {
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<PgbouncerMetrics, MetricsError> {
        let pg = PgbouncerMetrics {
            up: IntGauge::new(
                "vigil_pgbouncer_up",
                "1 when PgBouncer's admin console answered SHOW POOLS at the last run, else 0.",
            )?,
            clients: GaugeVec::new(
                Opts::new(
                    "vigil_pgbouncer_clients",
                    "Client connections of a judged PgBouncer database (its users summed): active (linked to a server connection or idle) and waiting for a server connection.",
                ),
                &["database", "state"],
            )?,
            servers: GaugeVec::new(
                Opts::new(
                    "vigil_pgbouncer_servers",
                    "Server connections of a judged PgBouncer database (its users summed): active (linked to a client), idle (ready), used (to be checked before reuse).",
                ),
                &["database", "state"],
            )?,
            max_wait_seconds: GaugeVec::new(
                Opts::new(
                    "vigil_pgbouncer_max_wait_seconds",
                    "How long the oldest waiting client of a judged PgBouncer database has waited for a server connection (0: none waits).",
                ),
                &["database"],
            )?,
        };
        let handles = pg.clone();
        let collectors = move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.up.clone()),
                Box::new(handles.clients.clone()),
                Box::new(handles.servers.clone()),
                Box::new(handles.max_wait_seconds.clone()),
            ]
        };
        metrics.register_group(name, collectors)?;
        Ok(pg)
    }
}
