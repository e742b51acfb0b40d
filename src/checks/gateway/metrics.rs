//! The `gateway` check's figures: `vigil_gateway_*`.

use std::any::Any;
use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntGauge, Opts};

use super::counts::{Quantile, Ratio, Share};
use crate::metrics::series::TextFamily;
use crate::metrics::text::{family, lock, sample};
use crate::metrics::{Metrics, MetricsError};

const QUANTILE_NAME: &str = "vigil_gateway_request_duration_quantile_seconds";
const QUANTILE_HELP: &str = "Quantiles of the gateway's served request durations over the window.";

/// `vigil_gateway_request_duration_quantile_seconds{quantile}`, written by hand: a `quantile`
/// label belongs to a summary (promtool refuses it on a gauge), and the crate's summaries always
/// carry a `_sum` and a `_count`, which vigil does not know of the gateway's requests. So this is
/// a summary of its quantiles only, which the text format allows.
#[derive(Debug, Default)]
pub(crate) struct QuantileFamily {
    /// By check name.
    checks: Mutex<Vec<(Box<str>, Quantiles)>>,
}

/// In [`Quantile::ALL`] order; none for a quantile without a series.
type Quantiles = [Option<f64>; 3];

impl QuantileFamily {
    fn update(&self, check: &str, change: impl FnOnce(&mut Quantiles)) {
        let mut checks = lock(&self.checks);
        match checks.iter_mut().find(|(name, _)| &**name == check) {
            Some((_, values)) => change(values),
            None => {
                let mut values = [None; 3];
                change(&mut values);
                checks.push((check.into(), values));
            }
        }
    }
}

impl TextFamily for QuantileFamily {
    fn write_text(&self, out: &mut String) {
        let checks = lock(&self.checks);
        if checks.iter().all(|(_, values)| values.iter().all(Option::is_none)) {
            return;
        }
        family(out, QUANTILE_NAME, QUANTILE_HELP, "summary");
        for (_, values) in checks.iter() {
            for (quantile, value) in Quantile::ALL.into_iter().zip(values) {
                if let Some(value) = value {
                    sample(out, QUANTILE_NAME, &[("quantile", quantile.label())], value);
                }
            }
        }
    }

    fn retire(&self, check: &str) {
        lock(&self.checks).retain(|(name, _)| &**name != check);
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// One of the served-traffic series, each of which exists only once measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Series {
    /// `vigil_gateway_error_ratio`.
    ErrorRatio,
    /// `vigil_gateway_request_duration_p95_seconds`.
    P95,
    /// `vigil_gateway_request_rate`.
    Rate,
    /// `vigil_gateway_response_ratio{class}`.
    Ratio(Ratio),
    /// `vigil_gateway_request_duration_quantile_seconds{quantile}`.
    Quantile(Quantile),
}

impl Series {
    /// Its bit in [`GatewayMetrics::shown`].
    fn bit(self) -> u16 {
        let index = match self {
            Series::ErrorRatio => 0,
            Series::P95 => 1,
            Series::Rate => 2,
            Series::Ratio(r) => 3 + Ratio::ALL.iter().position(|x| *x == r).unwrap_or(0),
            // Kept in their own family.
            Series::Quantile(_) => return 0,
        };
        1 << index
    }
}

/// The gateway check's figures.
#[derive(Clone)]
pub(crate) struct GatewayMetrics {
    pub up: IntGauge,
    pub pool_saturation_ratio: Gauge,
    /// state = in_use | max | waiting.
    pub pool_connections: GaugeVec,
    /// The served-traffic families: registered with the check, but without a sample (so absent
    /// from `/metrics`, as SPEC wants) until the gateway first exports what they are made of,
    /// and without one again for a figure the gateway cannot give.
    error_ratio: GaugeVec,
    request_duration_p95_seconds: GaugeVec,
    request_rate: GaugeVec,
    /// class = 5xx | 4xx | 401 | 403 | 429.
    response_ratio: GaugeVec,
    /// quantile = 0.5 | 0.95 | 0.99, under this check's name.
    quantiles: Arc<QuantileFamily>,
    check: Arc<str>,
    /// Which traffic series have a sample ([`Series::bit`]): only those turn NaN when unknown.
    shown: u16,
}

impl GatewayMetrics {
    /// Shows what a run knows of one traffic series: a value; NaN for a figure not measured
    /// this run once it exists (a gap in Prometheus, never a stale value that keeps an alert
    /// firing); no sample at all for a figure the gateway cannot give (SPEC: absent, not 0).
    pub(crate) fn show(&mut self, series: Series, reading: Share) {
        let (family, label) = match series {
            Series::ErrorRatio => (&self.error_ratio, None),
            Series::P95 => (&self.request_duration_p95_seconds, None),
            Series::Rate => (&self.request_rate, None),
            Series::Ratio(r) => (&self.response_ratio, Some(r.label())),
            Series::Quantile(q) => {
                let at = Quantile::ALL.iter().position(|x| *x == q).unwrap_or(0);
                self.quantiles.update(&self.check, |values| {
                    values[at] = match reading {
                        Share::Value(value) => Some(value),
                        Share::NoRequests => values[at].map(|_| f64::NAN),
                        Share::Unavailable(_) => None,
                    }
                });
                return;
            }
        };
        let labels: &[&str] = match &label {
            Some(label) => std::slice::from_ref(label),
            None => &[],
        };
        let bit = series.bit();
        match reading {
            Share::Value(value) => {
                family.with_label_values(labels).set(value);
                self.shown |= bit;
            }
            Share::NoRequests if self.shown & bit != 0 => family.with_label_values(labels).set(f64::NAN),
            Share::NoRequests => {}
            Share::Unavailable(_) => {
                if self.shown & bit != 0 {
                    // The series exists (shown & bit): removing it cannot fail.
                    let _ = family.remove_label_values(labels);
                    self.shown &= !bit;
                }
            }
        }
    }

    /// Every traffic series that exists, NaN: a run that could not read the traffic.
    pub(crate) fn traffic_unknown(&mut self) {
        let all = [Series::ErrorRatio, Series::P95, Series::Rate]
            .into_iter()
            .chain(Ratio::ALL.map(Series::Ratio))
            .chain(Quantile::ALL.map(Series::Quantile));
        for series in all {
            self.show(series, Share::NoRequests);
        }
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
}

impl GatewayMetrics {
    /// Creates and registers the gateway's series under check `name`.
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<GatewayMetrics, MetricsError> {
        let gauge = |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
        let gateway = GatewayMetrics {
            up: IntGauge::new(
                "vigil_gateway_up",
                "1 when the gateway's health endpoint answered as expected.",
            )?,
            pool_saturation_ratio: Gauge::new(
                "vigil_gateway_pool_saturation_ratio",
                "The gateway's DB pool connections in use / max, summed over its pools.",
            )?,
            pool_connections: gauge(
                "vigil_gateway_pool_connections",
                "The gateway's DB pool connections by state, summed over its pools.",
                &["state"],
            )?,
            error_ratio: gauge(
                "vigil_gateway_error_ratio",
                "Share of the gateway's served requests that answered 5xx over the window.",
                &[],
            )?,
            request_duration_p95_seconds: gauge(
                "vigil_gateway_request_duration_p95_seconds",
                "p95 of the gateway's served request durations over the window.",
                &[],
            )?,
            request_rate: gauge(
                "vigil_gateway_request_rate",
                "Requests per second the gateway served over the window.",
                &[],
            )?,
            response_ratio: gauge(
                "vigil_gateway_response_ratio",
                "Share of the gateway's served requests over the window by status class or code.",
                &["class"],
            )?,
            quantiles: metrics.family::<QuantileFamily>(),
            check: name.into(),
            shown: 0,
        };
        let m = gateway.clone();
        metrics.register_group(name, move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(m.up.clone()),
                Box::new(m.pool_saturation_ratio.clone()),
                Box::new(m.pool_connections.clone()),
                Box::new(m.error_ratio.clone()),
                Box::new(m.request_duration_p95_seconds.clone()),
                Box::new(m.request_rate.clone()),
                Box::new(m.response_ratio.clone()),
            ]
        })?;
        Ok(gateway)
    }
}
