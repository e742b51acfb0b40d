//! `gateway`: the api-gateway's own health endpoint, probed like an upstream, and its
//! `/metrics`, scraped and parsed (see [`crate::promtext`]) for its DB pool (in use, max,
//! waiting) and, when it exports them, its served traffic: error ratio (5xx / all) and p95
//! latency over the window, from the increase of its counters between scrapes.
//!
//! The pool and health decide pass/fail; the traffic figures only warn unless
//! `error_ratio_fail` / `latency_p95_fail` are set, because every replica sees the same
//! traffic and failing them all at once would empty the load balancer.
//!
//! Memory is bounded: one snapshot of the traffic counters per scrape within the window
//! (capped like the latency window), and a timestamp for "waiting since".

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::checks::http_probe::{self, HttpClient, ProbeRequest};
use crate::checks::latency::MAX_SAMPLES;
use crate::checks::upstream::seconds;
use crate::checks::{BuildContext, BuildError, Check, RunFuture, Scheduled};
use crate::config::{Gateway, PoolPreset};
use crate::fmt;
use crate::metrics::GatewayMetrics;
use crate::outcome::{FailureKind, Observation, Outcome, Status, Unit};
use crate::promtext::{self, Exposition, MetricType};

const POOL_HINT: &str = "the gateway's DB pool is full: curl <gateway>/metrics | grep connection_pool; \
                         adjust connection pool settings (DB_POOL_SIZE, DB_POOL_TIMEOUT) or find the slow \
                         queries holding connections (runbook: High Latency)";
const HEALTH_HINT: &str = "kubectl logs -f deployment/api-gateway -n api-gateway; kubectl describe pod <pod> \
                           (runbook: 503 Service Unavailable)";
const TRAFFIC_HINT: &str = "the gateway serves errors or slowly: kubectl logs -f deployment/api-gateway -n api-gateway; \
                            see the upstream checks and the DB pool (runbook: 503s, High Latency)";

/// The metric names that carry the pool figures.
#[derive(Debug, Clone)]
struct PoolNames {
    in_use: String,
    max: String,
    waiting: String,
}

impl PoolNames {
    fn from_config(config: &Gateway) -> PoolNames {
        let (in_use, max, waiting) = match config.pool_metrics {
            PoolPreset::Generic => (
                "connection_pool_in_use",
                "connection_pool_max",
                "connection_pool_waiting",
            ),
            PoolPreset::Hikaricp => (
                "hikaricp_connections_active",
                "hikaricp_connections_max",
                "hikaricp_connections_pending",
            ),
            PoolPreset::GoSql => (
                "go_sql_in_use_connections",
                "go_sql_max_open_connections",
                "go_sql_wait_count_total",
            ),
        };
        let pick = |explicit: &Option<String>, preset: &str| explicit.clone().unwrap_or_else(|| preset.to_owned());
        PoolNames {
            in_use: pick(&config.pool_in_use_metric, in_use),
            max: pick(&config.pool_max_metric, max),
            waiting: pick(&config.pool_waiting_metric, waiting),
        }
    }
}

/// One scrape's cumulative traffic figures.
#[derive(Debug, Clone)]
struct Traffic {
    at: Instant,
    requests: Option<(f64, f64)>,
    /// (le, cumulative count), summed over series, sorted by le.
    buckets: Option<Vec<(f64, f64)>>,
}

/// The gateway check; see the module docs.
pub struct GatewayCheck {
    client: HttpClient,
    health: Option<ProbeRequest>,
    scrape: Option<ProbeRequest>,
    config: Gateway,
    names: PoolNames,
    metrics: GatewayMetrics,
    history: VecDeque<Traffic>,
    history_cap: usize,
    /// When the pool last went from no waiters to some; `None` while nobody waits.
    waiting_since: Option<Instant>,
    /// The previous scrape's waiting counter, for a counter-typed waiting metric (go_sql).
    previous_wait_count: Option<(Instant, f64)>,
}

/// Builds the `gateway` check.
pub fn build(config: &Gateway, cx: &BuildContext<'_>) -> Result<Scheduled, BuildError> {
    let error = |message: String| BuildError::new("gateway", message);
    let client = cx.http_client("gateway", None)?;
    let metrics = cx.metrics.gateway().map_err(|e| error(e.to_string()))?;
    let request = |url: &Option<crate::config::HttpUrl>| url.as_ref().map(|u| ProbeRequest::get(u, []));
    let per_window = config.window.as_millis() / config.settings.interval.as_millis().max(1);
    let check = GatewayCheck {
        client,
        health: request(&config.health_url),
        scrape: request(&config.metrics_url),
        names: PoolNames::from_config(config),
        config: config.clone(),
        metrics,
        history: VecDeque::new(),
        history_cap: usize::try_from(per_window)
            .unwrap_or(MAX_SAMPLES)
            .saturating_add(2)
            .min(MAX_SAMPLES),
        waiting_since: None,
        previous_wait_count: None,
    };
    Ok(Scheduled::new("gateway", config.settings, check))
}

/// One thing the run found; the worst ones make the outcome.
struct Finding {
    status: Status,
    kind: FailureKind,
    reason: String,
    hint: &'static str,
}

impl GatewayCheck {
    async fn run_once(&mut self) -> Outcome {
        let timeout = self.config.settings.timeout;
        let deadline = http_probe::inner_deadline(timeout);
        let mut findings = Vec::new();
        let mut observations = Vec::new();
        let mut details = serde_json::Map::new();

        // The health probe and the scrape run side by side under the run's deadline: a slow
        // health endpoint must not leave the pool figures unread, nor the other way round.
        let client = &self.client;
        let ask = async |request: Option<&ProbeRequest>, limit: usize| match request {
            Some(request) => Some(client.probe(request, deadline, timeout, limit).await),
            None => None,
        };
        let probe_health = ask(self.health.as_ref(), http_probe::BODY_LIMIT);
        let scrape = ask(self.scrape.as_ref(), http_probe::SCRAPE_LIMIT);
        let (health_result, scraped) = tokio::join!(probe_health, scrape);

        let mut up = true;
        if let (Some(health), Some(result)) = (&self.health, health_result) {
            match result {
                Ok(response) => {
                    observations.push(Observation::number(
                        "status_code",
                        f64::from(response.status),
                        Unit::None,
                    ));
                    observations.push(Observation::number(
                        "latency",
                        response.phases.total.as_secs_f64(),
                        Unit::Seconds,
                    ));
                    if !(200..300).contains(&response.status) {
                        up = false;
                        findings.push(Finding {
                            status: Status::Fail,
                            kind: FailureKind::HttpStatus,
                            reason: format!("{}: status {}, expected 2xx", health.describe(), response.status),
                            hint: HEALTH_HINT,
                        });
                    }
                }
                Err(failure) => {
                    up = false;
                    findings.push(Finding {
                        status: Status::Fail,
                        kind: failure.error.kind(),
                        reason: format!("{}: {}", health.describe(), failure.error),
                        hint: HEALTH_HINT,
                    });
                }
            }
        }

        if let (Some(scrape), Some(scraped)) = (&self.scrape, scraped) {
            // Without a health endpoint the scrape is the health probe; with one, a missing
            // scrape only leaves the pool unknown.
            let severity = if self.health.is_some() {
                Status::Warn
            } else {
                Status::Fail
            };
            let parsed = match scraped {
                Ok(response) if !(200..300).contains(&response.status) => Err((
                    FailureKind::HttpStatus,
                    format!("{}: status {}, expected 2xx", scrape.describe(), response.status),
                )),
                Ok(response) if response.truncated => Err((
                    FailureKind::Protocol,
                    format!(
                        "{}: metrics larger than {} bytes",
                        scrape.describe(),
                        http_probe::SCRAPE_LIMIT
                    ),
                )),
                Ok(response) => match std::str::from_utf8(&response.body) {
                    Ok(text) => promtext::parse(text).map_err(|e| {
                        (
                            FailureKind::Protocol,
                            format!("{}: not Prometheus text: {e}", scrape.describe()),
                        )
                    }),
                    Err(_) => Err((
                        FailureKind::Protocol,
                        format!("{}: metrics are not UTF-8", scrape.describe()),
                    )),
                },
                Err(failure) => Err((
                    failure.error.kind(),
                    format!("{}: {}", scrape.describe(), failure.error),
                )),
            };
            match parsed {
                Ok(exposition) => {
                    let now = Instant::now();
                    self.pool(&exposition, now, &mut findings, &mut observations, &mut details);
                    self.traffic(&exposition, now, &mut findings, &mut observations, &mut details);
                }
                Err((kind, reason)) => {
                    self.metrics.pool_unknown();
                    self.metrics.traffic_unknown(true, true);
                    if self.health.is_none() {
                        up = false;
                    }
                    findings.push(Finding {
                        status: severity,
                        kind,
                        reason,
                        hint: HEALTH_HINT,
                    });
                }
            }
        }
        self.metrics.up.set(i64::from(up));

        let worst = findings.iter().map(|f| f.status).max().unwrap_or(Status::Pass);
        let outcome = match worst {
            Status::Pass => Outcome::pass(),
            status => {
                let top: Vec<&Finding> = findings.iter().filter(|f| f.status == status).collect();
                let reason = top.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>().join("; ");
                let kind = top.first().map_or(FailureKind::Protocol, |f| f.kind);
                let hint = top.first().map_or(HEALTH_HINT, |f| f.hint);
                let outcome = if status == Status::Fail {
                    Outcome::fail(kind, reason)
                } else {
                    Outcome::warn(kind, reason)
                };
                outcome.with_hint(hint)
            }
        };
        outcome
            .with_observations(observations)
            .with_details(serde_json::Value::Object(details))
    }

    /// The DB pool: summed over labelled series (several pools), each series kept for /diag.
    fn pool(
        &mut self,
        exposition: &Exposition,
        now: Instant,
        findings: &mut Vec<Finding>,
        observations: &mut Vec<Observation>,
        details: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        let mut series: BTreeMap<String, [Option<f64>; 3]> = BTreeMap::new();
        for (slot, name) in [&self.names.in_use, &self.names.max, &self.names.waiting]
            .into_iter()
            .enumerate()
        {
            for sample in exposition.named(name) {
                let entry = series.entry(sample.label_key("")).or_default();
                entry[slot] = Some(entry[slot].unwrap_or(0.0) + sample.value);
            }
        }
        let sum = |slot: usize| -> Option<f64> {
            series
                .values()
                .filter_map(|v| v[slot])
                .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
        };
        let (Some(in_use), max) = (sum(0), sum(1)) else {
            details.insert(
                "pool".into(),
                json!({ "error": format!("no {} in the gateway's metrics", self.names.in_use) }),
            );
            self.metrics.pool_unknown();
            return;
        };
        let waiting_raw = sum(2);
        // A counter of waits (go_sql_wait_count_total) is turned into waits per second since
        // the previous scrape; a gauge is the number waiting now.
        let counter = exposition.type_of(&self.names.waiting) == Some(MetricType::Counter)
            || self.names.waiting.ends_with("_total");
        let waiting = match (waiting_raw, counter) {
            (Some(count), true) => {
                let rate = self.previous_wait_count.map(|(at, previous)| {
                    let increase = if count >= previous { count - previous } else { count };
                    let elapsed = now.saturating_duration_since(at).as_secs_f64().max(1e-3);
                    increase / elapsed
                });
                self.previous_wait_count = Some((now, count));
                rate
            }
            (raw, _) => raw,
        };

        let gauge = |state: &str, value: Option<f64>| {
            self.metrics
                .pool_connections
                .with_label_values(&[state])
                .set(value.unwrap_or(f64::NAN));
        };
        gauge("in_use", Some(in_use));
        gauge("max", max);
        gauge("waiting", waiting);
        observations.push(Observation::number("pool_in_use", in_use, Unit::Count));
        if let Some(max) = max {
            observations.push(Observation::number("pool_max", max, Unit::Count));
        }
        if let Some(waiting) = waiting {
            observations.push(Observation::number("pool_waiting", waiting, Unit::Count));
        }

        // max 0 means "unlimited" (go_sql's default): no saturation to speak of.
        let saturation = max.filter(|m| *m > 0.0).map(|m| in_use / m);
        self.metrics.pool_saturation_ratio.set(saturation.unwrap_or(f64::NAN));
        if let Some(saturation) = saturation {
            observations.push(Observation::number("pool_saturation", saturation, Unit::Ratio));
            let (warn, fail) = (self.config.pool_saturation_warn, self.config.pool_saturation_fail);
            let status = if saturation >= fail {
                Some(Status::Fail)
            } else if saturation >= warn {
                Some(Status::Warn)
            } else {
                None
            };
            if let Some(status) = status {
                let (word, at) = if status == Status::Fail {
                    ("fail", fail)
                } else {
                    ("warn", warn)
                };
                findings.push(Finding {
                    status,
                    kind: FailureKind::Threshold,
                    reason: format!(
                        "DB pool {} of {} in use ({:.0}%, {word} at {:.0}%)",
                        in_use,
                        max.unwrap_or_default(),
                        saturation * 100.0,
                        at * 100.0
                    ),
                    hint: POOL_HINT,
                });
            }
        }

        match waiting {
            Some(w) if w > 0.0 => {
                let since = *self.waiting_since.get_or_insert(now);
                let waited = now.saturating_duration_since(since);
                if waited >= self.config.window {
                    findings.push(Finding {
                        status: Status::Warn,
                        kind: FailureKind::Threshold,
                        reason: format!(
                            "DB pool has had waiters for {} (now {w})",
                            fmt::duration(Duration::from_secs(waited.as_secs()))
                        ),
                        hint: POOL_HINT,
                    });
                }
            }
            _ => self.waiting_since = None,
        }

        let pools: Vec<serde_json::Value> = series
            .iter()
            .map(|(labels, [in_use, max, waiting])| {
                json!({ "labels": labels, "in_use": in_use, "max": max, "waiting": waiting })
            })
            .collect();
        details.insert(
            "pool".into(),
            json!({
                "metrics": { "in_use": self.names.in_use, "max": self.names.max, "waiting": self.names.waiting },
                "in_use": in_use, "max": max, "waiting": waiting, "saturation": saturation,
                "waiting_since_seconds": self.waiting_since.map(|s| now.saturating_duration_since(s).as_secs()),
                "series": pools,
            }),
        );
    }

    /// The gateway's served traffic over the window, from the increase of its counters.
    fn traffic(
        &mut self,
        exposition: &Exposition,
        now: Instant,
        findings: &mut Vec<Finding>,
        observations: &mut Vec<Observation>,
        details: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        let requests = {
            let mut total = None;
            let mut errors = 0.0;
            for sample in exposition.named(&self.config.requests_metric) {
                total = Some(total.unwrap_or(0.0) + sample.value);
                let status = sample.label("status").or_else(|| sample.label("code")).unwrap_or("");
                if status.starts_with('5') {
                    errors += sample.value;
                }
            }
            total.map(|t| (t, errors))
        };
        let bucket_name = format!("{}_bucket", self.config.duration_metric);
        let buckets = {
            let mut by_le: Vec<(f64, f64)> = Vec::new();
            for sample in exposition.named(&bucket_name) {
                let Some(le) = sample.label("le").and_then(|l| match l {
                    "+Inf" => Some(f64::INFINITY),
                    l => l.parse::<f64>().ok(),
                }) else {
                    continue;
                };
                match by_le.iter_mut().find(|(b, _)| *b == le) {
                    Some(entry) => entry.1 += sample.value,
                    None => by_le.push((le, sample.value)),
                }
            }
            by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!by_le.is_empty()).then_some(by_le)
        };
        if requests.is_none() && buckets.is_none() {
            self.metrics.traffic_unknown(true, true);
            return;
        }
        self.history.push_back(Traffic {
            at: now,
            requests,
            buckets,
        });
        while self.history.len() > self.history_cap
            || self
                .history
                .front()
                .is_some_and(|t| now.saturating_duration_since(t.at) > self.config.window)
        {
            self.history.pop_front();
        }

        let mut traffic = serde_json::Map::new();
        let mut measured = (false, false);
        if let Some((total, errors)) = increase_requests(&self.history)
            && total > 0.0
        {
            measured.0 = true;
            let ratio = errors / total;
            self.metrics.set_error_ratio(ratio);
            observations.push(Observation::number("error_ratio", ratio, Unit::Ratio));
            traffic.insert("requests".into(), json!(total));
            traffic.insert("errors_5xx".into(), json!(errors));
            let fail = self.config.error_ratio_fail.is_some_and(|f| ratio >= f);
            if fail || ratio > self.config.error_ratio_warn {
                findings.push(Finding {
                    status: if fail { Status::Fail } else { Status::Warn },
                    kind: FailureKind::Threshold,
                    reason: format!(
                        "gateway error ratio {:.1}% over {} exceeds {:.1}%",
                        ratio * 100.0,
                        fmt::duration(self.config.window),
                        self.config
                            .error_ratio_fail
                            .filter(|_| fail)
                            .unwrap_or(self.config.error_ratio_warn)
                            * 100.0
                    ),
                    hint: TRAFFIC_HINT,
                });
            }
        }
        if let Some(p95) = increase_buckets(&self.history).and_then(|b| quantile(0.95, &b)) {
            measured.1 = true;
            self.metrics.set_request_duration_p95(p95);
            observations.push(Observation::number("latency_p95", p95, Unit::Seconds));
            traffic.insert("p95_seconds".into(), json!(p95));
            // `le` bounds come from the gateway: an absurd one must not panic the conversion.
            let p95 = Duration::try_from_secs_f64(p95.max(0.0)).unwrap_or(Duration::MAX);
            let fail = self.config.latency_p95_fail.is_some_and(|f| p95 > f);
            if fail || p95 > self.config.latency_p95_warn {
                let limit = self
                    .config
                    .latency_p95_fail
                    .filter(|_| fail)
                    .unwrap_or(self.config.latency_p95_warn);
                findings.push(Finding {
                    status: if fail { Status::Fail } else { Status::Warn },
                    kind: FailureKind::Threshold,
                    reason: format!(
                        "gateway p95 {} over {} exceeds {}",
                        seconds(p95),
                        fmt::duration(self.config.window),
                        fmt::duration(limit)
                    ),
                    hint: TRAFFIC_HINT,
                });
            }
        }
        self.metrics.traffic_unknown(!measured.0, !measured.1);
        traffic.insert("scrapes_in_window".into(), json!(self.history.len()));
        details.insert("traffic".into(), serde_json::Value::Object(traffic));
    }
}

impl Check for GatewayCheck {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(self.run_once())
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

fn increase_requests(history: &VecDeque<Traffic>) -> Option<(f64, f64)> {
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

fn increase_buckets(history: &VecDeque<Traffic>) -> Option<Vec<(f64, f64)>> {
    let mut scrapes = history.iter().filter_map(|t| t.buckets.as_ref());
    let mut previous = scrapes.next()?;
    let mut sum: Option<Vec<(f64, f64)>> = None;
    for current in scrapes {
        let reset = current
            .iter()
            .any(|(le, c)| previous.iter().find(|(p, _)| p == le).is_some_and(|(_, pc)| c < pc));
        let acc = sum.get_or_insert_with(|| current.iter().map(|(le, _)| (*le, 0.0)).collect());
        for (le, count) in current {
            let before = if reset {
                0.0
            } else {
                previous.iter().find(|(p, _)| p == le).map_or(0.0, |(_, c)| *c)
            };
            if let Some(entry) = acc.iter_mut().find(|(b, _)| b == le) {
                entry.1 += count - before;
            }
        }
        previous = current;
    }
    sum
}

/// `histogram_quantile`: linear interpolation inside the bucket holding the rank; the highest
/// finite bound when the rank falls in `+Inf`.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().map(|(_, c)| *c)?;
    if total <= 0.0 {
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

    fn traffic(requests: (f64, f64), buckets: &[(f64, f64)]) -> Traffic {
        Traffic {
            at: Instant::now(),
            requests: Some(requests),
            buckets: Some(buckets.to_vec()),
        }
    }

    #[test]
    fn increases_survive_a_counter_reset() {
        let history: VecDeque<Traffic> = [
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
    }
}
