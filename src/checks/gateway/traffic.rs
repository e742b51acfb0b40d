//! The gateway's served traffic over the window, from the increase of its counters between
//! scrapes (read by the preset's names, [`super::presets`]): the request rate, the shares of
//! 5xx, 4xx, 401, 403 and 429, p50/p95/p99, and the runbook's "error rate > 5%", "p95 > 2 s"
//! and 401s as warns, each naming the route (`group_by`) that contributed most.
//!
//! One history serves every figure: the steps from one scrape to the next within the window,
//! each already reduced to at most 10 routes and 128 buckets ([`Counts`]), and the last scrape.
//! Memory is bounded: at most [`MAX_STEPS`] steps, whatever the window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use super::MAX_SCRAPE_SAMPLES;
use super::counts::{
    Buckets, Counts, MAX_BUCKETS, Quantile, Ratio, Scrape, Share, Tally, TrafficFigure, Warned, describe,
};
use super::metrics::{GatewayMetrics, Series};
use super::presets::{Names, Overrides, traffic_from};
use crate::checks::gateway::config::Gateway;
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Figure, Finding, Observation, Report, Status, Unit};
use crate::promtext::Exposition;

pub(super) const TRAFFIC_HINT: &str = "the gateway serves errors or slowly: kubectl logs -f deployment/api-gateway -n api-gateway; \
                                see the upstream checks and the DB pool (runbook: 503s, High Latency)";

const UNAUTHORIZED_HINT: &str = "clients are refused: see the jwt check, kubectl logs -f deployment/auth-service -n auth-service, \
                                 kubectl get secret jwt-secret -n api-gateway (runbook: Authentication Failures)";

const THROTTLED_HINT: &str = "the gateway rate-limits its clients: find the client or route in kubectl logs -f \
                              deployment/api-gateway -n api-gateway and review its rate limits";

/// The most steps the history keeps, whatever the window: each step holds at most 10 routes
/// of at most 128 bytes and 128 buckets (about 4.6 KiB), so at most about 5 MiB of history.
pub(super) const MAX_STEPS: usize = 1024;

const ERROR_RATIO: Figure = Figure::new("error_ratio", Unit::Ratio);
const LATENCY_P95: Figure = Figure::new("latency_p95", Unit::Seconds);
const REQUEST_RATE: Figure = Figure::new("request_rate", Unit::None);

/// The `/diag` observation of each share (`response_ratio_<class>`).
fn ratio_figure(ratio: Ratio) -> Figure {
    let name = match ratio {
        Ratio::Server5xx => "response_ratio_5xx",
        Ratio::Client4xx => "response_ratio_4xx",
        Ratio::Unauthorized401 => "response_ratio_401",
        Ratio::Forbidden403 => "response_ratio_403",
        Ratio::Throttled429 => "response_ratio_429",
    };
    Figure::new(name, Unit::Ratio)
}

/// The `/diag` observation of each quantile (`request_duration_p<q>`).
fn quantile_figure(quantile: Quantile) -> Figure {
    let name = match quantile {
        Quantile::P50 => "request_duration_p50",
        Quantile::P95 => "request_duration_p95",
        Quantile::P99 => "request_duration_p99",
    };
    Figure::new(name, Unit::Seconds)
}

/// What the gateway served from one scrape to the next.
#[derive(Debug)]
struct Step {
    /// When the step's first scrape was read.
    from: Instant,
    counts: Counts,
}

/// The thresholds of the traffic figures.
struct Limits {
    error_ratio_warn: f64,
    error_ratio_fail: Option<f64>,
    unauthorized_ratio_warn: f64,
    throttled_ratio_warn: f64,
    latency_p95_warn: Duration,
    latency_p95_fail: Option<Duration>,
}

/// The traffic history and its thresholds.
pub(super) struct Traffic {
    names: Names,
    group_by: Option<String>,
    /// What the preset can never give, and why (`/diag` says "unavailable").
    cannot_give: Vec<(TrafficFigure, &'static str)>,
    window: Duration,
    limits: Limits,
    /// The last scrape read, with what it lacked filled from the one before.
    last: Option<(Instant, Scrape)>,
    steps: VecDeque<Step>,
    cap: usize,
}

/// The figures of one window, each a value or why there is none.
struct Figures {
    rate: Share,
    ratios: [Share; 5],
    quantiles: [Share; 3],
}

impl Traffic {
    pub(super) fn new(config: &Gateway, interval: Duration) -> Traffic {
        let per_window = config.window.as_millis() / interval.as_millis().max(1);
        let names = Names::new(
            config.traffic_metrics,
            Overrides {
                requests_metric: config.requests_metric.as_deref(),
                duration_metric: config.duration_metric.as_deref(),
                status_label: config.status_label.as_deref(),
            },
        );
        Traffic {
            cannot_give: names.cannot_give(),
            names,
            group_by: config.group_by.clone(),
            window: config.window,
            limits: Limits {
                error_ratio_warn: config.error_ratio_warn,
                error_ratio_fail: config.error_ratio_fail,
                unauthorized_ratio_warn: config.unauthorized_ratio_warn,
                throttled_ratio_warn: config.throttled_ratio_warn,
                latency_p95_warn: config.latency_p95_warn,
                latency_p95_fail: config.latency_p95_fail,
            },
            last: None,
            steps: VecDeque::new(),
            cap: usize::try_from(per_window)
                .unwrap_or(MAX_STEPS)
                .saturating_add(1)
                .min(MAX_STEPS),
        }
    }

    /// The request counters the traffic figures read, for the scrape's filter.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.wanted()
    }

    /// The latency histogram's buckets, for the scrape's filter: kept apart, as they may be
    /// dropped (too many samples) without losing the shares or the pool.
    pub(super) fn bucket_names(&self) -> impl Iterator<Item = &str> {
        self.names.buckets().into_iter()
    }

    /// Adds one scrape to the history and judges the window into `report` and the metrics.
    pub(super) fn assess(
        &mut self,
        exposition: &Exposition,
        now: Instant,
        metrics: &mut GatewayMetrics,
        report: &mut Report,
    ) {
        let scrape = traffic_from(exposition, &self.names, self.group_by.as_deref());
        if scrape.buckets == Buckets::TooMany {
            let histogram = self.names.buckets().unwrap_or_default();
            let reason = match exposition.optional_dropped {
                true => format!(
                    "the gateway's {histogram} has more than {MAX_SCRAPE_SAMPLES} samples: its p50/p95/p99 are not computed"
                ),
                false => format!(
                    "the gateway's {histogram} has more than {MAX_BUCKETS} buckets: its p50/p95/p99 are not computed"
                ),
            };
            report.find(Finding::warn(FailureKind::Protocol, reason).with_hint(TRAFFIC_HINT));
        }
        self.observe_unavailable(report);
        self.last = Some(match self.last.take() {
            Some((at, before)) => {
                self.steps.push_back(Step {
                    from: at,
                    counts: scrape.since(&before),
                });
                (now, scrape.keeping_buckets_of(before))
            }
            None => (now, scrape),
        });
        while self.steps.len() > self.cap
            || self
                .steps
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.from) > self.window)
        {
            self.steps.pop_front();
        }

        let window = Counts::merge(self.steps.iter().map(|s| &s.counts));
        let figures = self.figures(&window, now);
        self.show(&figures, metrics, report);
        self.judge(&figures, &window, report);
        report.detail("traffic", self.details(&window, &figures, now));
    }

    /// The figures a window gives. Before the gateway has served anything (it creates its series
    /// on first use) nothing is known yet: only what it can never give is unavailable.
    fn figures(&self, window: &Counts, now: Instant) -> Figures {
        let span = self.span(now).as_secs_f64();
        let rate = if window.seen && span > 0.0 {
            Share::Value(window.total.requests / span)
        } else {
            Share::NoRequests
        };
        let ratios = Ratio::ALL.map(|r| self.names.share(window, r));
        let quantiles = Quantile::ALL.map(|q| match self.names.quantile(window, q) {
            Share::Unavailable(_)
                if !window.seen && window.buckets == Buckets::Missing && self.names.buckets().is_some() =>
            {
                Share::NoRequests
            }
            share => share,
        });
        Figures {
            rate,
            ratios,
            quantiles,
        }
    }

    /// The time the window's steps cover: from the first scrape of the oldest step to now.
    fn span(&self, now: Instant) -> Duration {
        self.steps
            .front()
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.from))
    }

    /// The figures as observations and metrics. Unavailable figures are observed as such once a
    /// run ([`Traffic::observe_unavailable`]), whatever the scrape held.
    fn show(&self, figures: &Figures, metrics: &mut GatewayMetrics, report: &mut Report) {
        let mut observe = |figure: Figure, series: Series, share: Share| {
            metrics.show(series, share);
            match share {
                Share::Value(value) => report.observe(figure.of(value)),
                Share::Unavailable(_) if !self.unavailable_observed(series) => {
                    report.observe(Observation::text(figure.name, "unavailable"));
                }
                _ => {}
            }
        };
        observe(REQUEST_RATE, Series::Rate, figures.rate);
        for (ratio, share) in Ratio::ALL.into_iter().zip(figures.ratios) {
            observe(ratio_figure(ratio), Series::Ratio(ratio), share);
        }
        for (quantile, share) in Quantile::ALL.into_iter().zip(figures.quantiles) {
            observe(quantile_figure(quantile), Series::Quantile(quantile), share);
        }
        // The figures SPEC had before the presets, under their names.
        let five = figures.ratios[0];
        observe(ERROR_RATIO, Series::ErrorRatio, five);
        let p95 = figures.quantiles[1];
        observe(LATENCY_P95, Series::P95, p95);
    }

    /// Whether an unavailable `series` needs no "unavailable" observation of its own: it is
    /// among what the preset can never give (observed already), or not one of SPEC's traffic
    /// figures.
    fn unavailable_observed(&self, series: Series) -> bool {
        let figure = match series {
            Series::Ratio(r) => TrafficFigure::Ratio(r),
            Series::Quantile(q) => TrafficFigure::Quantile(q),
            // error_ratio and latency_p95 are not among SPEC's traffic figures: no "unavailable".
            Series::ErrorRatio | Series::P95 | Series::Rate => return true,
        };
        self.cannot_give.iter().any(|(f, _)| *f == figure)
    }

    /// What the gateway can never give, as "unavailable" in `/diag`.
    fn observe_unavailable(&self, report: &mut Report) {
        for (figure, _) in &self.cannot_give {
            let name = match *figure {
                TrafficFigure::Ratio(r) => ratio_figure(r).name,
                TrafficFigure::Quantile(q) => quantile_figure(q).name,
            };
            report.observe(Observation::text(name, "unavailable"));
        }
    }

    /// The warns (and the configured fails) of the window's figures.
    fn judge(&self, figures: &Figures, window: &Counts, report: &mut Report) {
        let over = fmt::duration(self.window);
        let [five, _, unauthorized, forbidden, throttled] = figures.ratios;
        if let Share::Value(ratio) = five {
            self.judge_error_ratio(ratio, window, &over, report);
        }
        if let (Share::Value(a), Share::Value(b)) = (unauthorized, forbidden) {
            let limit = self.limits.unauthorized_ratio_warn;
            self.judge_share(Warned::Unauthorized, a + b, limit, window, &over, report);
        }
        if let Share::Value(ratio) = throttled {
            let limit = self.limits.throttled_ratio_warn;
            self.judge_share(Warned::Throttled, ratio, limit, window, &over, report);
        }
        if let Share::Value(p95) = figures.quantiles[1] {
            self.judge_p95(p95, &over, report);
        }
    }

    /// The share of `warned` in SPEC's words, naming the route that contributed most.
    fn describe(&self, warned: Warned, share: f64, window: &Counts, over: &str) -> String {
        describe(warned, share, over, self.group_by.as_deref(), window.top(warned))
    }

    fn judge_error_ratio(&self, ratio: f64, window: &Counts, over: &str, report: &mut Report) {
        let fail = self.limits.error_ratio_fail.is_some_and(|f| ratio >= f);
        if !fail && ratio <= self.limits.error_ratio_warn {
            return;
        }
        let limit = self
            .limits
            .error_ratio_fail
            .filter(|_| fail)
            .unwrap_or(self.limits.error_ratio_warn);
        // The threshold form vigil always had, then SPEC's share with its top contributor.
        let reason = format!(
            "gateway error ratio {:.1}% over {over} exceeds {:.1}%: {}",
            ratio * 100.0,
            limit * 100.0,
            self.describe(Warned::Errors5xx, ratio, window, over)
        );
        let status = if fail { Status::Fail } else { Status::Warn };
        report.find(Finding::of(status, FailureKind::Threshold, reason).with_hint(TRAFFIC_HINT));
    }

    /// 401/403 and 429: warn only (every replica sees the same clients).
    fn judge_share(&self, warned: Warned, ratio: f64, limit: f64, window: &Counts, over: &str, report: &mut Report) {
        if ratio <= limit {
            return;
        }
        let hint = match warned {
            Warned::Throttled => THROTTLED_HINT,
            Warned::Unauthorized | Warned::Errors5xx => UNAUTHORIZED_HINT,
        };
        let reason = self.describe(warned, ratio, window, over);
        report.find(Finding::warn(FailureKind::Threshold, reason).with_hint(hint));
    }

    fn judge_p95(&self, p95: f64, over: &str, report: &mut Report) {
        // `le` bounds come from the gateway: an absurd one must not panic the conversion.
        let p95 = Duration::try_from_secs_f64(p95.max(0.0)).unwrap_or(Duration::MAX);
        let fail = self.limits.latency_p95_fail.is_some_and(|f| p95 > f);
        if !fail && p95 <= self.limits.latency_p95_warn {
            return;
        }
        let limit = self
            .limits
            .latency_p95_fail
            .filter(|_| fail)
            .unwrap_or(self.limits.latency_p95_warn);
        let reason = format!(
            "gateway p95 {} over {over} exceeds {}",
            fmt::seconds(p95),
            fmt::duration(limit)
        );
        let status = if fail { Status::Fail } else { Status::Warn };
        report.find(Finding::of(status, FailureKind::Threshold, reason).with_hint(TRAFFIC_HINT));
    }

    /// `/diag`'s `traffic`: the names read, the window's counts (by route with `group_by`), every
    /// figure with why it is missing.
    fn details(&self, window: &Counts, figures: &Figures, now: Instant) -> Json {
        let preset = self.names.preset;
        let figure = |share: Share| match share {
            Share::Value(value) => json!(value),
            Share::NoRequests => Json::Null,
            Share::Unavailable(why) => json!({ "unavailable": why }),
        };
        let mut shares = Map::new();
        for (ratio, share) in Ratio::ALL.into_iter().zip(figures.ratios) {
            shares.insert(ratio.label().to_owned(), figure(share));
        }
        let mut quantiles = Map::new();
        for (quantile, share) in Quantile::ALL.into_iter().zip(figures.quantiles) {
            quantiles.insert(quantile.label().to_owned(), figure(share));
        }
        let groups: Vec<Json> = window
            .groups
            .iter()
            .map(|(name, tally)| {
                let mut group = tally_json(tally);
                group.insert("name".to_owned(), json!(name));
                Json::Object(group)
            })
            .collect();
        let mut details = Map::new();
        details.insert("preset".into(), json!(preset.name()));
        details.insert("checked_against".into(), json!(preset.preset().checked_against));
        details.insert("requests_metric".into(), json!(self.names.requests()));
        details.insert("status_label".into(), json!(self.names.status_label()));
        details.insert("buckets_metric".into(), json!(self.names.buckets()));
        details.insert("group_by".into(), json!(self.group_by));
        if self.group_by.is_none() {
            details.insert("route_label".into(), json!(preset.preset().route_label));
        }
        if !window.seen {
            let error = format!(
                "no {} in the gateway's metrics: nothing served yet, or not this gateway's name \
                 (traffic_metrics, requests_metric)",
                self.names.requests()
            );
            details.insert("error".into(), json!(error));
        }
        details.insert("requests".into(), json!(window.total.requests));
        details.insert("errors_5xx".into(), json!(window.total.classes[4]));
        details.insert("request_rate".into(), figure(figures.rate));
        details.insert("shares".into(), Json::Object(shares));
        details.insert("quantiles_seconds".into(), Json::Object(quantiles));
        if let Share::Value(p95) = figures.quantiles[1] {
            details.insert("p95_seconds".into(), json!(p95));
        }
        if self.group_by.is_some() {
            details.insert("groups".into(), Json::Array(groups));
            details.insert("other".into(), Json::Object(tally_json(&window.other)));
        }
        details.insert("scrapes_in_window".into(), json!(self.steps.len() + 1));
        details.insert("span_seconds".into(), json!(self.span(now).as_secs_f64()));
        Json::Object(details)
    }
}

/// A route's counts as `/diag` shows them.
fn tally_json(tally: &Tally) -> Map<String, Json> {
    let mut map = Map::new();
    map.insert("requests".into(), json!(tally.requests));
    for (label, count) in ["1xx", "2xx", "3xx", "4xx", "5xx"].into_iter().zip(tally.classes) {
        map.insert(label.into(), json!(count));
    }
    map.insert("401".into(), json!(tally.unauthorized));
    map.insert("403".into(), json!(tally.forbidden));
    map.insert("429".into(), json!(tally.throttled));
    map.insert("no_status".into(), json!(tally.no_status));
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::outcome::{Outcome, Value};
    use crate::metrics::Metrics;

    /// A traffic history for `[gateway]` with `keys`, its metrics, and the registry they show in.
    fn traffic(keys: &str) -> (Traffic, GatewayMetrics, Metrics) {
        let config: Gateway = toml::from_str(&format!(
            "metrics_url = \"http://127.0.0.1:9/metrics\"\nwindow = \"1m\"\n{keys}"
        ))
        .unwrap();
        let registry = Metrics::new().unwrap();
        let metrics = GatewayMetrics::register(&registry, "gateway").unwrap();
        (Traffic::new(&config, Duration::from_secs(1)), metrics, registry)
    }

    fn run(traffic: &mut Traffic, metrics: &mut GatewayMetrics, at: Instant, text: &str) -> Outcome {
        let exposition = crate::promtext::parse(text).unwrap();
        let mut report = Report::new();
        traffic.assess(&exposition, at, metrics, &mut report);
        report.into_outcome()
    }

    fn observed(outcome: &Outcome, name: &str) -> Vec<Value> {
        outcome
            .observations
            .iter()
            .filter(|o| o.name == name)
            .map(|o| o.value.clone())
            .collect()
    }

    fn sample(registry: &Metrics, series: &str) -> Option<String> {
        registry
            .render(&[])
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    /// `requests` per route and status, cumulative.
    fn kong(counts: &[(&str, u16, u32)]) -> String {
        counts
            .iter()
            .map(|(route, code, n)| format!("kong_http_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}\n"))
            .collect()
    }

    #[test]
    fn one_history_gives_rate_shares_quantiles_and_warns_naming_the_route() {
        let (mut t, mut m, registry) = traffic("traffic_metrics = \"kong\"\ngroup_by = \"route\"");
        let t0 = Instant::now();
        let first = run(&mut t, &mut m, t0, &kong(&[("orders", 200, 10)]));
        assert_eq!(first.status, Status::Pass, "one scrape is no window: {}", first.reason);
        assert!(
            sample(&registry, "vigil_gateway_request_rate").is_none(),
            "nothing measured yet"
        );

        // Then 100 requests in 2 s: orders 20 × 500 and 60 × 200, users 12 × 401, search 8 × 429.
        let second = kong(&[
            ("orders", 200, 70),
            ("orders", 500, 20),
            ("users", 401, 12),
            ("search", 429, 8),
        ]);
        let histogram =
            "kong_request_latency_ms_bucket{le=\"100\"} 50\nkong_request_latency_ms_bucket{le=\"+Inf\"} 100\n";
        let outcome = run(&mut t, &mut m, t0 + Duration::from_secs(2), &(second + histogram));
        assert_eq!(observed(&outcome, "request_rate"), [Value::Number(50.0)]);
        assert_eq!(observed(&outcome, "response_ratio_5xx"), [Value::Number(0.2)]);
        assert_eq!(observed(&outcome, "error_ratio"), [Value::Number(0.2)]);
        assert_eq!(observed(&outcome, "response_ratio_4xx"), [Value::Number(0.2)]);
        assert_eq!(observed(&outcome, "response_ratio_401"), [Value::Number(0.12)]);
        assert_eq!(observed(&outcome, "response_ratio_403"), [Value::Number(0.0)]);
        assert_eq!(observed(&outcome, "response_ratio_429"), [Value::Number(0.08)]);
        // The buckets appeared with this scrape: they count from zero, in milliseconds.
        assert_eq!(observed(&outcome, "request_duration_p50"), [Value::Number(0.1)]);
        assert_eq!(outcome.status, Status::Warn);
        assert_eq!(
            outcome.reason,
            "gateway error ratio 20.0% over 1m exceeds 5.0%: 5xx 20.0% of requests over 1m \
             (route orders: 100% of them); 401/403 12.0% of requests over 1m (route users: 100% of them); \
             429 8.0% of requests over 1m (route search: 100% of them)"
        );
        assert_eq!(
            sample(&registry, "vigil_gateway_response_ratio{class=\"401\"}").as_deref(),
            Some("0.12")
        );
        assert_eq!(sample(&registry, "vigil_gateway_request_rate").as_deref(), Some("50"));
        let p50 = "vigil_gateway_request_duration_quantile_seconds{quantile=\"0.5\"}";
        assert_eq!(sample(&registry, p50).as_deref(), Some("0.1"));
        assert!(
            registry
                .render(&[])
                .contains("# TYPE vigil_gateway_request_duration_quantile_seconds summary\n"),
            "a quantile label belongs to a summary"
        );

        // Nothing served for a minute: the old steps leave the window, no share is left to give
        // (NaN, not 0 and not the last value), the rate is a true 0, and nothing warns.
        let same = kong(&[
            ("orders", 200, 70),
            ("orders", 500, 20),
            ("users", 401, 12),
            ("search", 429, 8),
        ]) + histogram;
        run(&mut t, &mut m, t0 + Duration::from_secs(50), &same);
        let idle = run(&mut t, &mut m, t0 + Duration::from_secs(70), &same);
        assert_eq!(idle.status, Status::Pass, "{}", idle.reason);
        assert_eq!(observed(&idle, "request_rate"), [Value::Number(0.0)]);
        assert!(observed(&idle, "response_ratio_5xx").is_empty());
        assert_eq!(
            sample(&registry, "vigil_gateway_response_ratio{class=\"5xx\"}").as_deref(),
            Some("NaN")
        );
        assert_eq!(sample(&registry, "vigil_gateway_error_ratio").as_deref(), Some("NaN"));
        assert_eq!(sample(&registry, "vigil_gateway_request_rate").as_deref(), Some("0"));
        assert_eq!(sample(&registry, p50).as_deref(), Some("NaN"));
    }

    #[test]
    fn what_the_gateway_cannot_give_is_unavailable_once_and_never_a_series() {
        let (mut t, mut m, registry) = traffic("traffic_metrics = \"haproxy\"");
        let text = |ok: u32, errors: u32| {
            format!(
                "haproxy_frontend_http_responses_total{{proxy=\"public\",code=\"2xx\"}} {ok}\n\
                 haproxy_frontend_http_responses_total{{proxy=\"public\",code=\"5xx\"}} {errors}\n"
            )
        };
        let t0 = Instant::now();
        for (i, outcome) in [
            run(&mut t, &mut m, t0, &text(0, 0)),
            run(&mut t, &mut m, t0 + Duration::from_secs(1), &text(90, 10)),
        ]
        .iter()
        .enumerate()
        {
            for name in [
                "response_ratio_401",
                "response_ratio_403",
                "response_ratio_429",
                "request_duration_p50",
                "request_duration_p95",
                "request_duration_p99",
            ] {
                assert_eq!(
                    observed(outcome, name),
                    [Value::Text("unavailable".into())],
                    "run {i}: {name}"
                );
            }
            assert!(observed(outcome, "latency_p95").is_empty(), "the old name says nothing");
        }
        let text = registry.render(&[]);
        assert!(
            text.contains("vigil_gateway_response_ratio{class=\"5xx\"} 0.1"),
            "{text}"
        );
        assert!(
            !text.contains("class=\"401\"") && !text.contains("vigil_gateway_request_duration_quantile"),
            "{text}"
        );
    }

    /// A status that comes only as a class makes the codes unknown for the window: the series
    /// that existed goes away rather than showing a wrong 0.
    #[test]
    fn codes_turning_into_classes_remove_their_series() {
        let (mut t, mut m, registry) = traffic("");
        let t0 = Instant::now();
        let line = |status: &str, n: u32| format!("http_requests_total{{status=\"{status}\"}} {n}\n");
        run(&mut t, &mut m, t0, &line("401", 0));
        run(&mut t, &mut m, t0 + Duration::from_secs(1), &line("401", 5));
        assert_eq!(
            sample(&registry, "vigil_gateway_response_ratio{class=\"401\"}").as_deref(),
            Some("1")
        );
        let outcome = run(
            &mut t,
            &mut m,
            t0 + Duration::from_secs(2),
            &(line("401", 5) + &line("4xx", 5)),
        );
        assert_eq!(
            observed(&outcome, "response_ratio_401"),
            [Value::Text("unavailable".into())]
        );
        assert!(sample(&registry, "vigil_gateway_response_ratio{class=\"401\"}").is_none());
        assert_eq!(
            sample(&registry, "vigil_gateway_response_ratio{class=\"4xx\"}").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn only_the_error_ratio_and_the_p95_can_fail() {
        let (mut t, mut m, _registry) = traffic(
            "error_ratio_fail = 0.5\nunauthorized_ratio_warn = 0.2\nthrottled_ratio_warn = 0.2\nlatency_p95_fail = \"3s\"",
        );
        let t0 = Instant::now();
        let text = |n: u32| {
            format!(
                "http_requests_total{{status=\"500\"}} {}\nhttp_requests_total{{status=\"401\"}} {n}\n\
                 http_requests_total{{status=\"429\"}} {n}\nhttp_request_duration_seconds_bucket{{le=\"5\"}} {n}\n",
                n * 2
            )
        };
        run(&mut t, &mut m, t0, &text(0));
        let outcome = run(&mut t, &mut m, t0 + Duration::from_secs(1), &text(10));
        assert_eq!(outcome.status, Status::Fail);
        assert!(
            outcome
                .reason
                .starts_with("gateway error ratio 50.0% over 1m exceeds 50.0%: 5xx 50.0%"),
            "{}",
            outcome.reason
        );
        assert!(
            outcome.reason.contains("gateway p95 4.75s over 1m exceeds 3s"),
            "{}",
            outcome.reason
        );
        assert!(
            !outcome.reason.contains("401/403"),
            "warns do not speak beside a fail: {}",
            outcome.reason
        );
    }

    /// 20 000 routes in one scrape: what the history keeps is 10 routes per step.
    #[test]
    fn twenty_thousand_routes_keep_ten_per_step() {
        let (mut t, mut m, _registry) = traffic("group_by = \"route\"");
        let t0 = Instant::now();
        let text = |n: u32| -> String {
            (0..20_000)
                .map(|i| format!("http_requests_total{{route=\"r{i}\",status=\"200\"}} {n}\n"))
                .collect()
        };
        run(&mut t, &mut m, t0, &text(1));
        let outcome = run(&mut t, &mut m, t0 + Duration::from_secs(1), &text(2));
        assert_eq!(observed(&outcome, "request_rate"), [Value::Number(20_000.0)]);
        assert!(t.steps.iter().all(|s| s.counts.groups.len() <= 10));
        let last = t.last.as_ref().map(|(_, s)| s.groups.len());
        assert_eq!(last, Some(super::super::counts::MAX_TRACKED_GROUPS));
    }
}
