//! `[fleet]`'s figures: `vigil_fleet_peers` and `vigil_fleet_panic{check}`.

use prometheus::{IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, MetricsError};

/// `[fleet]`'s figures; registered only when `[fleet]` is configured.
#[derive(Clone)]
pub(super) struct FleetMetrics {
    /// Peers known after the last resolution, this replica left out.
    pub peers: IntGauge,
    /// 1 while this replica stays ready through a fleet-wide failure of `check`.
    pub panic: IntGaugeVec,
}

impl FleetMetrics {
    /// Creates and registers `vigil_fleet_peers` and `vigil_fleet_panic{check}`.
    pub(super) fn register(metrics: &Metrics) -> Result<FleetMetrics, MetricsError> {
        let fleet = FleetMetrics {
            peers: IntGauge::new(
                "vigil_fleet_peers",
                "Peers known from fleet.peers at the last resolution, this replica left out.",
            )?,
            panic: IntGaugeVec::new(
                Opts::new(
                    "vigil_fleet_panic",
                    "1 while this replica stays ready through a fleet-wide failure of the shared check, else 0.",
                ),
                &["check"],
            )?,
        };
        metrics.registry().register(Box::new(fleet.peers.clone()))?;
        metrics.registry().register(Box::new(fleet.panic.clone()))?;
        Ok(fleet)
    }
}
