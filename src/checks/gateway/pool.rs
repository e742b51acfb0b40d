//! The gateway's own DB pool, from its `/metrics`: in use, max and waiting, summed over its
//! labelled series (a gateway may run several pools), with the saturation and the "waiting for
//! longer than the window" rule.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::metrics::GatewayMetrics;
use crate::checks::gateway::config::{Gateway, PoolPreset};
use crate::core::fmt;
use crate::core::outcome::{self, FailureKind, Figure, Finding, Report, Unit};
use crate::promtext::{Exposition, MetricType};

pub(super) const POOL_HINT: &str = "the gateway's DB pool is full: curl <gateway>/metrics | grep connection_pool; \
                             adjust connection pool settings (DB_POOL_SIZE, DB_POOL_TIMEOUT) or find the slow \
                             queries holding connections (runbook: High Latency)";

const IMPOSSIBLE_HINT: &str = "a bug in the gateway's metrics: curl <gateway>/metrics | grep connection_pool; \
                               report it to the gateway's owners";

/// The pool's figures, each described once: its `state` label on
/// `vigil_gateway_pool_connections`, its observation, and its key under `pool` in `/diag`.
const FIGURES: [(&str, Figure); 3] = [
    ("in_use", Figure::new("pool_in_use", Unit::Count)),
    ("max", Figure::new("pool_max", Unit::Count)),
    ("waiting", Figure::new("pool_waiting", Unit::Count)),
];
const SATURATION: Figure = Figure::new("pool_saturation", Unit::Ratio);

/// The metric names that carry the pool figures, in [`FIGURES`] order, and the one of the
/// connections the pool holds open (in use and idle) where the preset has one.
#[derive(Debug, Clone)]
pub(super) struct PoolNames([String; 3], Option<&'static str>);

impl PoolNames {
    pub(super) fn from_config(config: &Gateway) -> PoolNames {
        let (preset, open) = match config.pool_metrics {
            PoolPreset::Generic => (
                [
                    "connection_pool_in_use",
                    "connection_pool_max",
                    "connection_pool_waiting",
                ],
                None,
            ),
            PoolPreset::Hikaricp => (
                [
                    "hikaricp_connections_active",
                    "hikaricp_connections_max",
                    "hikaricp_connections_pending",
                ],
                Some("hikaricp_connections"),
            ),
            PoolPreset::GoSql => (
                [
                    "go_sql_in_use_connections",
                    "go_sql_max_open_connections",
                    "go_sql_wait_count_total",
                ],
                Some("go_sql_open_connections"),
            ),
        };
        let explicit = [
            &config.pool_in_use_metric,
            &config.pool_max_metric,
            &config.pool_waiting_metric,
        ];
        PoolNames(
            std::array::from_fn(|i| explicit[i].clone().unwrap_or_else(|| preset[i].to_owned())),
            open,
        )
    }

    /// Every name the pool reads, for the scrape's filter.
    pub(super) fn all(&self) -> impl Iterator<Item = &str> {
        self.figures().chain(self.1)
    }

    /// The names of [`FIGURES`], in order.
    fn figures(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    fn in_use(&self) -> &str {
        &self.0[0]
    }

    fn waiting(&self) -> &str {
        &self.0[2]
    }
}

/// What the pool remembers between scrapes.
pub(super) struct Pool {
    names: PoolNames,
    warn: f64,
    fail: f64,
    window: Duration,
    /// When the pool last went from no waiters to some; `None` while nobody waits.
    waiting_since: Option<Instant>,
    /// The previous scrape's waiting counter, for a counter-typed waiting metric (go_sql).
    previous_wait_count: Option<(Instant, f64)>,
}

/// One scrape's pool figures: summed (in [`FIGURES`] order) and per labelled series.
struct Reading {
    sums: [Option<f64>; 3],
    series: BTreeMap<String, [Option<f64>; 3]>,
}

impl Pool {
    pub(super) fn new(config: &Gateway) -> Pool {
        Pool {
            names: PoolNames::from_config(config),
            warn: config.pool_saturation_warn,
            fail: config.pool_saturation_fail,
            window: config.window,
            waiting_since: None,
            previous_wait_count: None,
        }
    }

    pub(super) fn names(&self) -> &PoolNames {
        &self.names
    }

    /// Reads the pool from one scrape into `report` and the metrics. Returns the connections the
    /// pool holds open (its open-connections metric where the preset has one, else those in
    /// use) and its max, for the facts board (the postgres check's connection budget), or why
    /// they are not known.
    pub(super) fn assess(
        &mut self,
        exposition: &Exposition,
        now: Instant,
        metrics: &GatewayMetrics,
        report: &mut Report,
    ) -> Result<(f64, f64), String> {
        let mut reading = self.read(exposition);
        let Some(in_use) = reading.sums[0] else {
            let missing = format!("no {} in the gateway's metrics", self.names.in_use());
            report.detail("pool", json!({ "error": missing }));
            metrics.pool_unknown();
            return Err(missing);
        };
        if let Some(impossible) = self.impossible(&reading) {
            report.detail("pool", json!({ "error": impossible }));
            report.find(Finding::warn(FailureKind::Protocol, impossible.clone()).with_hint(IMPOSSIBLE_HINT));
            metrics.pool_unknown();
            return Err(impossible);
        }
        reading.sums[2] = self.waiting_now(exposition, reading.sums[2], now);
        let max = reading.sums[1];
        for ((state, figure), value) in FIGURES.iter().zip(reading.sums) {
            metrics
                .pool_connections
                .with_label_values(&[*state])
                .set(value.unwrap_or(f64::NAN));
            if let Some(value) = value {
                report.observe(figure.of(value));
            }
        }
        // max 0 means "unlimited" (go_sql's default): no saturation to speak of.
        let saturation = max.filter(|m| *m > 0.0).map(|m| in_use / m);
        metrics.pool_saturation_ratio.set(saturation.unwrap_or(f64::NAN));
        if let Some(saturation) = saturation {
            report.observe(SATURATION.of(saturation));
            self.judge_saturation(in_use, max.unwrap_or_default(), saturation, report);
        }
        self.judge_waiting(reading.sums[2], now, report);
        report.detail("pool", self.details(&reading, saturation, now));
        let open = self
            .names
            .1
            .map(|name| exposition.named(name).map(|s| s.value).sum::<f64>())
            .filter(|open| open.is_finite() && *open >= in_use)
            .unwrap_or(in_use);
        match max {
            Some(max) if max > 0.0 => Ok((open, max)),
            Some(_) => Err("the gateway's pool has no maximum (0: unlimited)".to_owned()),
            None => Err(format!("no {} in the gateway's metrics", self.names.0[1])),
        }
    }

    /// A figure no pool can have (NaN, infinite, negative): the gateway's bug, named, rather
    /// than a healthy-looking saturation of -25%.
    fn impossible(&self, reading: &Reading) -> Option<String> {
        let (name, value) = self
            .names
            .figures()
            .zip(reading.sums)
            .find_map(|(name, value)| value.filter(|v| !v.is_finite() || *v < 0.0).map(|v| (name, v)))?;
        Some(format!(
            "the gateway reports an impossible pool figure: {name} = {value}: pool saturation unknown"
        ))
    }

    fn read(&self, exposition: &Exposition) -> Reading {
        let mut series: BTreeMap<String, [Option<f64>; 3]> = BTreeMap::new();
        for (slot, name) in self.names.figures().enumerate() {
            for sample in exposition.named(name) {
                let entry = series.entry(sample.label_key("")).or_default();
                entry[slot] = Some(entry[slot].unwrap_or(0.0) + sample.value);
            }
        }
        let sums = std::array::from_fn(|slot| {
            series
                .values()
                .filter_map(|v| v[slot])
                .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
        });
        Reading { sums, series }
    }

    /// The waiting figure: a gauge is the number waiting now; a counter of waits
    /// (go_sql_wait_count_total) becomes waits per second since the previous scrape.
    fn waiting_now(&mut self, exposition: &Exposition, raw: Option<f64>, now: Instant) -> Option<f64> {
        let name = self.names.waiting();
        let counter = exposition.type_of(name) == Some(MetricType::Counter) || name.ends_with("_total");
        match (raw, counter) {
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
        }
    }

    fn judge_saturation(&self, in_use: f64, max: f64, saturation: f64, report: &mut Report) {
        if let Some((status, word, at)) = outcome::crossed(saturation, self.warn, self.fail) {
            let reason = format!(
                "DB pool {in_use} of {max} in use ({}, {word} at {})",
                fmt::percent(saturation),
                fmt::percent(at)
            );
            report.find(Finding::of(status, FailureKind::Threshold, reason).with_hint(POOL_HINT));
        }
    }

    /// Waiters for longer than the window warn; the time since which they wait is kept.
    fn judge_waiting(&mut self, waiting: Option<f64>, now: Instant, report: &mut Report) {
        match waiting {
            Some(w) if w > 0.0 => {
                let since = *self.waiting_since.get_or_insert(now);
                let waited = now.saturating_duration_since(since);
                if waited >= self.window {
                    let reason = format!(
                        "DB pool has had waiters for {} (now {w})",
                        fmt::duration(Duration::from_secs(waited.as_secs()))
                    );
                    report.find(Finding::warn(FailureKind::Threshold, reason).with_hint(POOL_HINT));
                }
            }
            _ => self.waiting_since = None,
        }
    }

    fn details(&self, reading: &Reading, saturation: Option<f64>, now: Instant) -> Json {
        let series: Vec<Json> = reading
            .series
            .iter()
            .map(|(labels, [in_use, max, waiting])| {
                json!({ "labels": labels, "in_use": in_use, "max": max, "waiting": waiting })
            })
            .collect();
        let mut pool = serde_json::Map::new();
        let mut names = serde_json::Map::new();
        for ((state, _), name) in FIGURES.iter().zip(self.names.all()) {
            names.insert((*state).to_owned(), json!(name));
        }
        pool.insert("metrics".to_owned(), Json::Object(names));
        for ((state, _), value) in FIGURES.iter().zip(reading.sums) {
            pool.insert((*state).to_owned(), json!(value));
        }
        pool.insert("saturation".to_owned(), json!(saturation));
        pool.insert(
            "waiting_since_seconds".to_owned(),
            json!(self.waiting_since.map(|s| now.saturating_duration_since(s).as_secs())),
        );
        pool.insert("series".to_owned(), Json::Array(series));
        Json::Object(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// What the pool posts for the connection budget after one scrape of `text`.
    fn posted(preset: &str, text: &str) -> Result<(f64, f64), String> {
        let config: Gateway = toml::from_str(&format!(
            "metrics_url = \"http://127.0.0.1:9/metrics\"\npool_metrics = \"{preset}\"\n"
        ))
        .unwrap();
        let registry = Metrics::new().unwrap();
        let metrics = GatewayMetrics::register(&registry, "gateway").unwrap();
        let exposition = crate::promtext::parse(text).unwrap();
        Pool::new(&config).assess(&exposition, Instant::now(), &metrics, &mut Report::new())
    }

    /// HikariCP keeps its whole pool open (minimumIdle = maximumPoolSize by default): its idle
    /// connections are the gateway's, not other clients', in the postgres check's budget.
    #[test]
    fn the_budget_gets_the_connections_the_pool_holds_open_where_the_metrics_say() {
        let hikari = "hikaricp_connections_active{pool=\"p\"} 1\nhikaricp_connections{pool=\"p\"} 15\n\
                      hikaricp_connections_max{pool=\"p\"} 15\nhikaricp_connections_pending{pool=\"p\"} 0\n";
        assert_eq!(posted("hikaricp", hikari), Ok((15.0, 15.0)));
        let go = "go_sql_in_use_connections 2\ngo_sql_open_connections 6\ngo_sql_max_open_connections 10\n\
                  go_sql_wait_count_total 0\n";
        assert_eq!(posted("go_sql", go), Ok((6.0, 10.0)));
        // No idle count in the generic metrics: the in-use figure stands for it.
        let generic = "connection_pool_in_use 3\nconnection_pool_max 20\nconnection_pool_waiting 0\n";
        assert_eq!(posted("generic", generic), Ok((3.0, 20.0)));
    }
}
