//! The gateway's served traffic over the window, from the increase of its counters between
//! scrapes: the error ratio (5xx / all) and the p95 latency of its request histogram, the
//! runbook's "error rate > 5%" and "p95 > 2 s".
//!
//! Memory is bounded: one snapshot of the counters per scrape within the window, capped like
//! the latency window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::json;

use super::metrics::GatewayMetrics;
use crate::checks::gateway::config::Gateway;
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Figure, Finding, Report, Status, Unit};
use crate::promtext::Exposition;

pub(super) const TRAFFIC_HINT: &str = "the gateway serves errors or slowly: kubectl logs -f deployment/api-gateway -n api-gateway; \
                                see the upstream checks and the DB pool (runbook: 503s, High Latency)";

/// The most distinct `le` bounds a latency histogram may have (classic histograms have a few
/// dozen): past this the p95 is not computed, so that a hostile exposition cannot make the
/// increases quadratic or the history large.
pub(super) const MAX_BUCKETS: usize = 128;

/// The most scrapes the history keeps, whatever the window: with [`MAX_BUCKETS`], at most
/// 2 MiB of history.
pub(super) const MAX_SNAPSHOTS: usize = 1024;

const ERROR_RATIO: Figure = Figure::new("error_ratio", Unit::Ratio);
const LATENCY_P95: Figure = Figure::new("latency_p95", Unit::Seconds);

/// One scrape's cumulative traffic figures.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    /// (all requests, 5xx), summed over series.
    requests: Option<(f64, f64)>,
    /// (le, cumulative count), summed over series, sorted by le.
    buckets: Option<Vec<(f64, f64)>>,
}

/// The traffic history and its thresholds.
pub(super) struct Traffic {
    requests_metric: String,
    bucket_metric: String,
    window: Duration,
    error_ratio_warn: f64,
    error_ratio_fail: Option<f64>,
    latency_p95_warn: Duration,
    latency_p95_fail: Option<Duration>,
    history: VecDeque<Snapshot>,
    cap: usize,
}

impl Traffic {
    pub(super) fn new(config: &Gateway, interval: std::time::Duration) -> Traffic {
        let per_window = config.window.as_millis() / interval.as_millis().max(1);
        Traffic {
            requests_metric: config.requests_metric.clone(),
            bucket_metric: format!("{}_bucket", config.duration_metric),
            window: config.window,
            error_ratio_warn: config.error_ratio_warn,
            error_ratio_fail: config.error_ratio_fail,
            latency_p95_warn: config.latency_p95_warn,
            latency_p95_fail: config.latency_p95_fail,
            history: VecDeque::new(),
            cap: usize::try_from(per_window)
                .unwrap_or(MAX_SNAPSHOTS)
                .saturating_add(2)
                .min(MAX_SNAPSHOTS),
        }
    }

    /// Every name the traffic figures read, for the scrape's filter.
    pub(super) fn names(&self) -> [&str; 2] {
        [&self.requests_metric, &self.bucket_metric]
    }

    /// Adds one scrape to the history and judges the window into `report` and the metrics.
    pub(super) fn assess(
        &mut self,
        exposition: &Exposition,
        now: Instant,
        metrics: &GatewayMetrics,
        report: &mut Report,
    ) {
        let requests = self.requests(exposition);
        let buckets = match self.buckets(exposition) {
            Ok(buckets) => buckets,
            Err(count) => {
                let reason = format!(
                    "the gateway's {} has more than {MAX_BUCKETS} buckets (stopped at bucket {count}): its p95 is not computed",
                    self.bucket_metric
                );
                report.find(Finding::warn(FailureKind::Protocol, reason).with_hint(TRAFFIC_HINT));
                None
            }
        };
        if requests.is_none() && buckets.is_none() {
            metrics.traffic_unknown(true, true);
            return;
        }
        self.history.push_back(Snapshot {
            at: now,
            requests,
            buckets,
        });
        while self.history.len() > self.cap
            || self
                .history
                .front()
                .is_some_and(|t| now.saturating_duration_since(t.at) > self.window)
        {
            self.history.pop_front();
        }

        let mut details = serde_json::Map::new();
        let ratio = increase_requests(&self.history).filter(|(total, _)| *total > 0.0);
        if let Some((total, errors)) = ratio {
            let ratio = errors / total;
            metrics.set_error_ratio(ratio);
            report.observe(ERROR_RATIO.of(ratio));
            details.insert("requests".into(), json!(total));
            details.insert("errors_5xx".into(), json!(errors));
            self.judge_error_ratio(ratio, report);
        }
        let p95 = increase_buckets(&self.history).and_then(|b| quantile(0.95, &b));
        if let Some(p95) = p95 {
            metrics.set_request_duration_p95(p95);
            report.observe(LATENCY_P95.of(p95));
            details.insert("p95_seconds".into(), json!(p95));
            self.judge_p95(p95, report);
        }
        metrics.traffic_unknown(ratio.is_none(), p95.is_none());
        details.insert("scrapes_in_window".into(), json!(self.history.len()));
        report.detail("traffic", serde_json::Value::Object(details));
    }

    /// (all, 5xx) of the requests counter, summed over its series.
    fn requests(&self, exposition: &Exposition) -> Option<(f64, f64)> {
        let mut total = None;
        let mut errors = 0.0;
        for sample in exposition.named(&self.requests_metric) {
            total = Some(total.unwrap_or(0.0) + sample.value);
            let status = sample.label("status").or_else(|| sample.label("code")).unwrap_or("");
            if status.starts_with('5') {
                errors += sample.value;
            }
        }
        total.map(|t| (t, errors))
    }

    /// The latency histogram's buckets, summed over series by `le`, sorted by `le`; `Err` with
    /// the count when there are more than [`MAX_BUCKETS`] distinct bounds.
    fn buckets(&self, exposition: &Exposition) -> Result<Option<Vec<(f64, f64)>>, usize> {
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        for sample in exposition.named(&self.bucket_metric) {
            let Some(le) = sample.label("le").and_then(|l| match l {
                "+Inf" => Some(f64::INFINITY),
                l => l.parse::<f64>().ok().filter(|le| !le.is_nan()),
            }) else {
                continue;
            };
            match by_le.binary_search_by(|(b, _)| b.total_cmp(&le)) {
                Ok(at) => by_le[at].1 += sample.value,
                Err(_) if by_le.len() == MAX_BUCKETS => return Err(by_le.len() + 1),
                Err(at) => by_le.insert(at, (le, sample.value)),
            }
        }
        Ok((!by_le.is_empty()).then_some(by_le))
    }

    fn judge_error_ratio(&self, ratio: f64, report: &mut Report) {
        let fail = self.error_ratio_fail.is_some_and(|f| ratio >= f);
        if !fail && ratio <= self.error_ratio_warn {
            return;
        }
        let limit = self.error_ratio_fail.filter(|_| fail).unwrap_or(self.error_ratio_warn);
        let reason = format!(
            "gateway error ratio {:.1}% over {} exceeds {:.1}%",
            ratio * 100.0,
            fmt::duration(self.window),
            limit * 100.0
        );
        let status = if fail { Status::Fail } else { Status::Warn };
        report.find(Finding::of(status, FailureKind::Threshold, reason).with_hint(TRAFFIC_HINT));
    }

    fn judge_p95(&self, p95: f64, report: &mut Report) {
        // `le` bounds come from the gateway: an absurd one must not panic the conversion.
        let p95 = Duration::try_from_secs_f64(p95.max(0.0)).unwrap_or(Duration::MAX);
        let fail = self.latency_p95_fail.is_some_and(|f| p95 > f);
        if !fail && p95 <= self.latency_p95_warn {
            return;
        }
        let limit = self.latency_p95_fail.filter(|_| fail).unwrap_or(self.latency_p95_warn);
        let reason = format!(
            "gateway p95 {} over {} exceeds {}",
            fmt::seconds(p95),
            fmt::duration(self.window),
            fmt::duration(limit)
        );
        let status = if fail { Status::Fail } else { Status::Warn };
        report.find(Finding::of(status, FailureKind::Threshold, reason).with_hint(TRAFFIC_HINT));
    }
}

/// The increase of a counter from one scrape to the next: a drop means the process restarted
/// and counts from zero again, so the new value is the increase (as Prometheus' `increase`).
fn step(previous: f64, current: f64) -> f64 {
    if current >= previous {
        current - previous
    } else {
        current
    }
}

fn increase_requests(history: &VecDeque<Snapshot>) -> Option<(f64, f64)> {
    let mut pairs = history.iter().filter_map(|t| t.requests);
    let mut previous = pairs.next()?;
    let mut sum = None;
    for current in pairs {
        let (total, errors) = sum.unwrap_or((0.0, 0.0));
        sum = Some((
            total + step(previous.0, current.0),
            errors + step(previous.1, current.1),
        ));
        previous = current;
    }
    sum
}

/// The increase of each bucket over the history. Buckets are sorted by `le`, so each bound is
/// found by binary search: O(scrapes × buckets × log buckets).
fn increase_buckets(history: &VecDeque<Snapshot>) -> Option<Vec<(f64, f64)>> {
    let find = |buckets: &[(f64, f64)], le: f64| {
        buckets
            .binary_search_by(|(b, _)| b.total_cmp(&le))
            .ok()
            .map(|at| buckets[at].1)
    };
    let mut scrapes = history.iter().filter_map(|t| t.buckets.as_deref());
    let mut previous = scrapes.next()?;
    let mut sum: Option<Vec<(f64, f64)>> = None;
    for current in scrapes {
        let reset = current
            .iter()
            .any(|&(le, c)| find(previous, le).is_some_and(|pc| c < pc));
        let acc = sum.get_or_insert_with(|| current.iter().map(|(le, _)| (*le, 0.0)).collect());
        for &(le, count) in current {
            let before = if reset { 0.0 } else { find(previous, le).unwrap_or(0.0) };
            if let Ok(at) = acc.binary_search_by(|(b, _)| b.total_cmp(&le)) {
                acc[at].1 += count - before;
            }
        }
        previous = current;
    }
    sum
}

/// `histogram_quantile`: linear interpolation inside the bucket holding the rank; the highest
/// finite bound when the rank falls in `+Inf`; none without a finite bound (as Prometheus' NaN:
/// a lone `+Inf` bucket says nothing of the latency).
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().map(|(_, c)| *c)?;
    if total <= 0.0 || buckets.iter().all(|(le, _)| le.is_infinite()) {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(previous.0);
            }
            let in_bucket = count - previous.1;
            let fraction = if in_bucket > 0.0 {
                (rank - previous.1) / in_bucket
            } else {
                1.0
            };
            return Some(previous.0 + (le - previous.0) * fraction);
        }
        previous = (le, count);
    }
    Some(previous.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(requests: (f64, f64), buckets: &[(f64, f64)]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            requests: Some(requests),
            buckets: Some(buckets.to_vec()),
        }
    }

    #[test]
    fn increases_survive_a_counter_reset() {
        let history: VecDeque<Snapshot> = [
            traffic((100.0, 1.0), &[(0.1, 50.0), (f64::INFINITY, 100.0)]),
            traffic((200.0, 11.0), &[(0.1, 100.0), (f64::INFINITY, 200.0)]),
            // restart: counts from zero
            traffic((50.0, 5.0), &[(0.1, 20.0), (f64::INFINITY, 50.0)]),
        ]
        .into();
        assert_eq!(increase_requests(&history), Some((150.0, 15.0)));
        assert_eq!(
            increase_buckets(&history),
            Some(vec![(0.1, 70.0), (f64::INFINITY, 150.0)])
        );
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets = [(0.5, 50.0), (1.0, 90.0), (2.0, 100.0), (f64::INFINITY, 100.0)];
        let p95 = quantile(0.95, &buckets).unwrap();
        assert!((p95 - 1.5).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 10.0)]), Some(1.0));
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.95, &[(f64::INFINITY, 10.0)]),
            None,
            "a lone +Inf is no latency"
        );
    }
}
