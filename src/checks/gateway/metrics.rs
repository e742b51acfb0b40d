//! The `gateway` check's figures: `vigil_gateway_*`.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntGauge, Opts};

use crate::metrics::{Metrics, MetricsError};
use std::sync::OnceLock;

/// The gateway check's figures.
#[derive(Clone)]
pub(crate) struct GatewayMetrics {
    pub up: IntGauge,
    pub pool_saturation_ratio: Gauge,
    /// state = in_use | max | waiting.
    pub pool_connections: GaugeVec,
    /// Label-less families: registered with the check, but without a sample (so absent from
    /// `/metrics`, as SPEC wants) until the gateway first exports what they are made of.
    error_ratio: GaugeVec,
    request_duration_p95_seconds: GaugeVec,
    /// Set once each of the two optional gauges above has a sample.
    error_ratio_registered: Arc<OnceLock<()>>,
    p95_registered: Arc<OnceLock<()>>,
}

impl GatewayMetrics {
    /// `vigil_gateway_error_ratio`, registered the first time the gateway exports request
    /// counts (SPEC: only when it does).
    pub(crate) fn set_error_ratio(&self, value: f64) {
        let _ = self.error_ratio_registered.set(());
        self.error_ratio.with_label_values(&[] as &[&str]).set(value);
    }

    /// `vigil_gateway_request_duration_p95_seconds`, registered the first time the gateway
    /// exports a latency histogram.
    pub(crate) fn set_request_duration_p95(&self, value: f64) {
        let _ = self.p95_registered.set(());
        self.request_duration_p95_seconds
            .with_label_values(&[] as &[&str])
            .set(value);
    }

    /// The DB pool figures of a run that could not read them (scrape failed, metric missing):
    /// NaN, which Prometheus shows as a gap and never compares true, rather than the last value,
    /// which would keep an alert firing (or quiet) on a figure nobody measured.
    pub(crate) fn pool_unknown(&self) {
        self.pool_saturation_ratio.set(f64::NAN);
        for state in ["in_use", "max", "waiting"] {
            self.pool_connections.with_label_values(&[state]).set(f64::NAN);
        }
    }

    /// The same for the served-traffic figures, once they exist (they are registered by their
    /// first measurement).
    pub(crate) fn traffic_unknown(&self, error_ratio: bool, p95: bool) {
        if error_ratio && self.error_ratio_registered.get().is_some() {
            self.error_ratio.with_label_values(&[] as &[&str]).set(f64::NAN);
        }
        if p95 && self.p95_registered.get().is_some() {
            self.request_duration_p95_seconds
                .with_label_values(&[] as &[&str])
                .set(f64::NAN);
        }
    }
}

impl GatewayMetrics {
    /// Creates and registers the gateway's series under check `name`.
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<GatewayMetrics, MetricsError> {
        let gateway = GatewayMetrics {
            up: IntGauge::new(
                "vigil_gateway_up",
                "1 when the gateway's health endpoint answered as expected.",
            )?,
            pool_saturation_ratio: Gauge::new(
                "vigil_gateway_pool_saturation_ratio",
                "The gateway's DB pool connections in use / max, summed over its pools.",
            )?,
            pool_connections: GaugeVec::new(
                Opts::new(
                    "vigil_gateway_pool_connections",
                    "The gateway's DB pool connections by state, summed over its pools.",
                ),
                &["state"],
            )?,
            error_ratio: GaugeVec::new(
                Opts::new(
                    "vigil_gateway_error_ratio",
                    "Share of the gateway's served requests that answered 5xx over the window.",
                ),
                &[],
            )?,
            request_duration_p95_seconds: GaugeVec::new(
                Opts::new(
                    "vigil_gateway_request_duration_p95_seconds",
                    "p95 of the gateway's served request durations over the window.",
                ),
                &[],
            )?,
            error_ratio_registered: Arc::new(OnceLock::new()),
            p95_registered: Arc::new(OnceLock::new()),
        };
        let m = gateway.clone();
        metrics.register_group(name, move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(m.up.clone()),
                Box::new(m.pool_saturation_ratio.clone()),
                Box::new(m.pool_connections.clone()),
                Box::new(m.error_ratio.clone()),
                Box::new(m.request_duration_p95_seconds.clone()),
            ]
        })?;
        Ok(gateway)
    }
}
