//! The gateways vigil knows by name (`traffic_metrics`): which of their metrics carry the
//! served traffic, and how one scrape of them is summed by status and by route ([`traffic_from`];
//! the arithmetic on what it gives is in [`super::counts`]).
//!
//! Each gateway exports its served traffic its own way: HAProxy counts status classes at three
//! levels, Caddy 2.6 puts the code only on its duration histogram, Envoy tags classes as a bare
//! digit and times in milliseconds, Spring Cloud Gateway names the status in words and has
//! buckets only when asked. A [`Preset`] writes down one gateway's way, with the version and
//! the file it was read from, so that a user names the gateway instead of reverse-engineering
//! its exposition (docs/gateway-presets.md has the same table for people).
//!
//! The counting is data-driven where it can be: a status value is read as a code (`503`) or a
//! class (`5xx`, Envoy's `5`) whatever the preset, so an overridden `requests_metric` or
//! `status_label` needs no further setting, and a figure the data cannot give (401 when some
//! responses came only as a class) is unavailable, never 0.

use serde::{Deserialize, Serialize};

use super::counts::{
    Buckets, Counts, Quantile, Ratio, Scrape, Share, Status, TrafficFigure, add_bound, classify, counter_value,
    parse_le, quantile,
};
use crate::promtext::{Exposition, Sample};

/// The gateways `traffic_metrics` names, written in snake case (`nginx_ingress`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TrafficPreset {
    #[default]
    Generic,
    Haproxy,
    Caddy,
    Envoy,
    Traefik,
    Kong,
    NginxIngress,
    Spring,
}

impl TrafficPreset {
    #[cfg(test)]
    pub(crate) const ALL: [TrafficPreset; 8] = [
        TrafficPreset::Generic,
        TrafficPreset::Haproxy,
        TrafficPreset::Caddy,
        TrafficPreset::Envoy,
        TrafficPreset::Traefik,
        TrafficPreset::Kong,
        TrafficPreset::NginxIngress,
        TrafficPreset::Spring,
    ];

    /// The name as written in `traffic_metrics` (and by serde).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TrafficPreset::Generic => "generic",
            TrafficPreset::Haproxy => "haproxy",
            TrafficPreset::Caddy => "caddy",
            TrafficPreset::Envoy => "envoy",
            TrafficPreset::Traefik => "traefik",
            TrafficPreset::Kong => "kong",
            TrafficPreset::NginxIngress => "nginx_ingress",
            TrafficPreset::Spring => "spring",
        }
    }

    pub(crate) fn preset(self) -> &'static Preset {
        match self {
            TrafficPreset::Generic => &GENERIC,
            TrafficPreset::Haproxy => &HAPROXY,
            TrafficPreset::Caddy => &CADDY,
            TrafficPreset::Envoy => &ENVOY,
            TrafficPreset::Traefik => &TRAEFIK,
            TrafficPreset::Kong => &KONG,
            TrafficPreset::NginxIngress => &NGINX_INGRESS,
            TrafficPreset::Spring => &SPRING,
        }
    }
}

/// The unit of a histogram's `le` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BucketUnit {
    Seconds,
    Milliseconds,
}

impl BucketUnit {
    fn to_seconds(self, value: f64) -> f64 {
        match self {
            BucketUnit::Seconds => value,
            BucketUnit::Milliseconds => value / 1000.0,
        }
    }
}

/// One gateway's way of exporting its served traffic.
#[derive(Debug)]
pub(crate) struct Preset {
    /// The counter (or a histogram's `_count`) summed for the requests.
    pub(crate) requests: &'static str,
    /// The label of `requests` that holds the status.
    pub(crate) status_label: &'static str,
    /// Read when `status_label` is missing on a sample (the generic preset accepts `code`).
    pub(crate) status_fallback: Option<&'static str>,
    /// The latency histogram's family name (its `_bucket` series are read); none when the
    /// gateway has none.
    pub(crate) duration: Option<&'static str>,
    pub(crate) unit: BucketUnit,
    /// The label a user would put in `group_by` to see routes, upstreams or services.
    pub(crate) route_label: Option<&'static str>,
    /// A counter of requests the gateway counts without any status (Caddy 2.6's handler
    /// errors): they are requests, of no known class.
    pub(crate) without_status: Option<&'static str>,
    /// Series that are the gateway talking to vigil, not traffic (Envoy's admin listener
    /// counts every scrape): a label and its values to leave out.
    pub(crate) exclude: Option<(&'static str, &'static [&'static str])>,
    /// Why 401, 403 and 429 are unavailable: set exactly when the status label holds classes
    /// (`5xx`, Envoy's `5`) rather than codes.
    pub(crate) no_codes: Option<&'static str>,
    /// Why p50/p95/p99 are unavailable: always (no histogram), or when the buckets are missing.
    pub(crate) no_histogram: &'static str,
    /// The version and the source the names were checked against.
    pub(crate) checked_against: &'static str,
}

const NO_BUCKETS: &str = "the gateway exports no buckets of its request duration histogram";

static GENERIC: Preset = Preset {
    requests: "http_requests_total",
    status_label: "status",
    status_fallback: Some("code"),
    duration: Some("http_request_duration_seconds"),
    unit: BucketUnit::Seconds,
    route_label: None,
    without_status: None,
    exclude: None,
    no_codes: None,
    no_histogram: NO_BUCKETS,
    checked_against: "the Prometheus naming conventions (client_golang's promhttp examples)",
};

static HAPROXY: Preset = Preset {
    // Classes at frontend, backend and server level: one level only, the frontends, which
    // also count what HAProxy answered itself (a deny's 403/429, a 503 with no server left).
    requests: "haproxy_frontend_http_responses_total",
    status_label: "code",
    status_fallback: None,
    duration: None,
    unit: BucketUnit::Seconds,
    route_label: Some("proxy"),
    without_status: None,
    exclude: None,
    no_codes: Some("HAProxy exports status classes (2xx, 4xx, 5xx), not codes"),
    no_histogram: "HAProxy 2.6 exports no latency histogram (only *_time_average_seconds averages)",
    checked_against: "HAProxy 2.6.12, addons/promex/service-prometheus.c (USE_PROMEX), and a real run",
};

static CADDY: Preset = Preset {
    // caddy_http_requests_total has no code: 2.6 puts it only on the duration histogram, and
    // observes that only for requests without a handler error.
    requests: "caddy_http_request_duration_seconds_count",
    status_label: "code",
    status_fallback: None,
    duration: Some("caddy_http_request_duration_seconds"),
    unit: BucketUnit::Seconds,
    route_label: Some("server"),
    without_status: Some("caddy_http_request_errors_total"),
    exclude: None,
    no_codes: None,
    no_histogram: NO_BUCKETS,
    checked_against: "Caddy 2.6.2, modules/caddyhttp/metrics.go at v2.6.2, and a real run",
};

static ENVOY: Preset = Preset {
    // The HTTP connection manager's counters: every response Envoy sent downstream, its own
    // local replies (no route, rate limited, no healthy upstream) included.
    requests: "envoy_http_downstream_rq_xx",
    status_label: "envoy_response_code_class",
    status_fallback: None,
    duration: Some("envoy_http_downstream_rq_time"),
    unit: BucketUnit::Milliseconds,
    route_label: Some("envoy_http_conn_manager_prefix"),
    without_status: None,
    exclude: Some(("envoy_http_conn_manager_prefix", &["admin"])),
    no_codes: Some("Envoy's downstream counters carry status classes (envoy_response_code_class), not codes"),
    no_histogram: NO_BUCKETS,
    checked_against: "Envoy 1.37, source/server/admin/prometheus_stats.cc, source/common/config/well_known_names.cc, \
                      docs http_conn_man/stats.rst",
};

static TRAEFIK: Preset = Preset {
    requests: "traefik_entrypoint_requests_total",
    status_label: "code",
    status_fallback: None,
    duration: Some("traefik_entrypoint_request_duration_seconds"),
    unit: BucketUnit::Seconds,
    route_label: Some("entrypoint"),
    without_status: None,
    exclude: None,
    no_codes: None,
    no_histogram: NO_BUCKETS,
    checked_against: "Traefik 3.7, pkg/observability/metrics/prometheus.go",
};

static KONG: Preset = Preset {
    requests: "kong_http_requests_total",
    status_label: "code",
    status_fallback: None,
    duration: Some("kong_request_latency_ms"),
    unit: BucketUnit::Milliseconds,
    route_label: Some("route"),
    without_status: None,
    exclude: None,
    no_codes: None,
    no_histogram: "Kong exports request_latency_ms only with the prometheus plugin's latency_metrics on",
    checked_against: "Kong 3.0 to 3.9, kong/plugins/prometheus/exporter.lua",
};

static NGINX_INGRESS: Preset = Preset {
    requests: "nginx_ingress_controller_requests",
    status_label: "status",
    status_fallback: None,
    duration: Some("nginx_ingress_controller_request_duration_seconds"),
    unit: BucketUnit::Seconds,
    route_label: Some("ingress"),
    without_status: None,
    exclude: None,
    no_codes: None,
    no_histogram: NO_BUCKETS,
    checked_against: "ingress-nginx controller-v1.15.0, internal/ingress/metric/collectors/socket.go",
};

static SPRING: Preset = Preset {
    // `status` holds the status's name (SERVICE_UNAVAILABLE); `httpStatusCode` the code.
    requests: "spring_cloud_gateway_requests_seconds_count",
    status_label: "httpStatusCode",
    status_fallback: None,
    duration: Some("spring_cloud_gateway_requests_seconds"),
    unit: BucketUnit::Seconds,
    route_label: Some("routeId"),
    without_status: None,
    exclude: None,
    no_codes: None,
    no_histogram: "Micrometer publishes the buckets only with \
                   management.metrics.distribution.percentiles-histogram.spring.cloud.gateway.requests=true",
    checked_against: "Spring Cloud Gateway 5.0.3 (tags unchanged since 3.0), GatewayHttpTagsProvider.java; \
                      Micrometer 1.x PrometheusNamingConvention.java",
};

/// The configuration keys that override a preset's names (`requests_metric`,
/// `duration_metric`, `status_label`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides<'a> {
    pub(crate) requests_metric: Option<&'a str>,
    pub(crate) duration_metric: Option<&'a str>,
    pub(crate) status_label: Option<&'a str>,
}

/// A preset with its overrides applied: the names one scrape is read by.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) preset: TrafficPreset,
    requests: String,
    status_label: String,
    status_fallback: Option<&'static str>,
    /// `<duration>_bucket`.
    buckets: Option<String>,
    unit: BucketUnit,
    without_status: Option<&'static str>,
    exclude: Option<(&'static str, &'static [&'static str])>,
    no_codes: Option<&'static str>,
    no_histogram: &'static str,
}

impl Names {
    /// The preset's names, each override winning. An overridden counter or status label may
    /// hold codes where the preset's held classes, so the "no codes" rule is then left to the
    /// data; the preset's bucket unit stays (an overridden Envoy or Kong histogram is still in
    /// milliseconds).
    pub(crate) fn new(preset: TrafficPreset, overrides: Overrides<'_>) -> Names {
        let p = preset.preset();
        let requests_overridden = overrides.requests_metric.is_some();
        let status_overridden = overrides.status_label.is_some();
        let duration = overrides.duration_metric.or(p.duration);
        Names {
            preset,
            requests: overrides.requests_metric.unwrap_or(p.requests).to_owned(),
            status_label: overrides.status_label.unwrap_or(p.status_label).to_owned(),
            status_fallback: p.status_fallback.filter(|_| !status_overridden),
            buckets: duration.map(|d| format!("{d}_bucket")),
            unit: p.unit,
            without_status: p.without_status.filter(|_| !requests_overridden),
            exclude: p.exclude,
            no_codes: p.no_codes.filter(|_| !requests_overridden && !status_overridden),
            no_histogram: if overrides.duration_metric.is_some() {
                NO_BUCKETS
            } else {
                p.no_histogram
            },
        }
    }

    /// The counter (or `_count`) whose samples are the requests.
    pub(crate) fn requests(&self) -> &str {
        &self.requests
    }

    /// The label read for the status.
    pub(crate) fn status_label(&self) -> &str {
        &self.status_label
    }

    /// The latency histogram's `_bucket` series, when there is one to read.
    pub(crate) fn buckets(&self) -> Option<&str> {
        self.buckets.as_deref()
    }

    /// The request counters the traffic reads, for the scrape's filter (the buckets are
    /// [`Names::buckets`], kept apart: they may be dropped).
    pub(crate) fn wanted(&self) -> impl Iterator<Item = &str> {
        [Some(self.requests.as_str()), self.without_status]
            .into_iter()
            .flatten()
    }

    /// The figures this gateway can never give, and why: shown as unavailable in `/diag`,
    /// absent from `/metrics`, whatever the traffic.
    pub(crate) fn cannot_give(&self) -> Vec<(TrafficFigure, &'static str)> {
        let mut figures = Vec::new();
        if let Some(why) = self.no_codes {
            figures.extend(Ratio::CODES.map(|r| (TrafficFigure::Ratio(r), why)));
        }
        if self.buckets.is_none() {
            figures.extend(Quantile::ALL.map(|q| (TrafficFigure::Quantile(q), self.no_histogram)));
        }
        figures
    }

    /// A share over `counts`, or why there is none.
    pub(crate) fn share(&self, counts: &Counts, ratio: Ratio) -> Share {
        if ratio.needs_codes() {
            if let Some(why) = self.no_codes {
                return Share::Unavailable(why);
            }
            if counts.total.class_only > 0.0 {
                return Share::Unavailable(
                    "the gateway reported some responses only by their class (4xx), not their code",
                );
            }
        }
        if counts.total.requests <= 0.0 {
            return Share::NoRequests;
        }
        Share::Value(ratio.count(&counts.total) / counts.total.requests)
    }

    /// A quantile of the request duration over `counts`, in seconds, or why there is none.
    pub(crate) fn quantile(&self, counts: &Counts, q: Quantile) -> Share {
        if self.buckets.is_none() {
            return Share::Unavailable(self.no_histogram);
        }
        match &counts.buckets {
            Buckets::Missing => Share::Unavailable(self.no_histogram),
            Buckets::TooMany => Share::Unavailable(
                "the gateway's latency histogram is larger than vigil reads (more than 128 bounds or 10000 samples)",
            ),
            Buckets::Bounds(bounds) => match quantile(q.value(), bounds) {
                Some(seconds) => Share::Value(seconds),
                None => Share::NoRequests,
            },
        }
    }
}

/// Sums one scrape by status and, with `group_by`, by the value of that label (a sample
/// without it counts under the route `""`). Linear in the samples kept by the parse; the map of
/// routes holds at most [`MAX_TRACKED_GROUPS`] whatever the exposition.
pub(crate) fn traffic_from(exposition: &Exposition, names: &Names, group_by: Option<&str>) -> Scrape {
    let mut scrape = Scrape {
        seen: exposition.named(&names.requests).next().is_some(),
        ..Scrape::default()
    };
    let excluded = |sample: &Sample| {
        names
            .exclude
            .is_some_and(|(label, values)| sample.label(label).is_some_and(|v| values.contains(&v)))
    };
    let counted = exposition
        .named(&names.requests)
        .map(|sample| (sample, names.status(sample)))
        .chain(
            names
                .without_status
                .into_iter()
                .flat_map(|name| exposition.named(name))
                .map(|sample| (sample, Status::Unknown)),
        );
    for (sample, status) in counted {
        let Some(n) = counter_value(sample.value) else { continue };
        if excluded(sample) {
            continue;
        }
        scrape.total.count(status, n);
        if let Some(label) = group_by {
            scrape.tally_for(sample.label(label).unwrap_or("")).count(status, n);
        }
    }
    if exposition.optional_dropped && names.buckets.is_some() {
        scrape.buckets = Buckets::TooMany;
    } else if let Some(bucket) = &names.buckets {
        let mut bounds = Vec::new();
        scrape.buckets = Buckets::Missing;
        for sample in exposition.named(bucket) {
            let (Some(n), Some(le)) = (counter_value(sample.value), sample.label("le").and_then(parse_le)) else {
                continue;
            };
            if excluded(sample) {
                continue;
            }
            if !add_bound(&mut bounds, names.unit.to_seconds(le), n) {
                scrape.buckets = Buckets::TooMany;
                break;
            }
        }
        if scrape.buckets != Buckets::TooMany && !bounds.is_empty() {
            scrape.buckets = Buckets::Bounds(bounds);
        }
    }
    scrape
}

impl Names {
    fn status(&self, sample: &Sample) -> Status {
        sample
            .label(&self.status_label)
            .or_else(|| self.status_fallback.and_then(|l| sample.label(l)))
            .map_or(Status::Unknown, classify)
    }
}

#[cfg(test)]
mod tests {
    use super::super::counts::{MAX_GROUP_NAME, MAX_GROUPS, MAX_TRACKED_GROUPS, Tally, Warned, describe};
    use super::*;
    use crate::promtext::{self, Keep};

    fn fixture(preset: &str, which: &str) -> &'static str {
        match (preset, which) {
            ("haproxy", "before") => include_str!("../../../tests/fixtures/gateways/haproxy.before.prom"),
            ("haproxy", "after") => include_str!("../../../tests/fixtures/gateways/haproxy.after.prom"),
            ("caddy", "before") => include_str!("../../../tests/fixtures/gateways/caddy.before.prom"),
            ("caddy", "after") => include_str!("../../../tests/fixtures/gateways/caddy.after.prom"),
            ("envoy", "before") => include_str!("../../../tests/fixtures/gateways/envoy.before.prom"),
            ("envoy", "after") => include_str!("../../../tests/fixtures/gateways/envoy.after.prom"),
            ("traefik", "before") => include_str!("../../../tests/fixtures/gateways/traefik.before.prom"),
            ("traefik", "after") => include_str!("../../../tests/fixtures/gateways/traefik.after.prom"),
            ("kong", "before") => include_str!("../../../tests/fixtures/gateways/kong.before.prom"),
            ("kong", "after") => include_str!("../../../tests/fixtures/gateways/kong.after.prom"),
            ("nginx_ingress", "before") => include_str!("../../../tests/fixtures/gateways/nginx_ingress.before.prom"),
            ("nginx_ingress", "after") => include_str!("../../../tests/fixtures/gateways/nginx_ingress.after.prom"),
            ("spring", "before") => include_str!("../../../tests/fixtures/gateways/spring.before.prom"),
            ("spring", "after") => include_str!("../../../tests/fixtures/gateways/spring.after.prom"),
            other => panic!("no fixture {other:?}"),
        }
    }

    /// Parses like the check does: only the wanted names, at most 10 000 samples.
    fn scrape(text: &str, names: &Names, group_by: Option<&str>) -> Scrape {
        let wanted: Vec<&str> = names.wanted().collect();
        let buckets: Vec<&str> = names.buckets().into_iter().collect();
        let keep = Keep {
            names: &wanted,
            max_samples: 10_000,
            optional: &buckets,
        };
        let exposition = promtext::parse_only(text, keep).expect("the fixture parses");
        traffic_from(&exposition, names, group_by)
    }

    /// The step from a fixture's first scrape to its second.
    fn step(preset: TrafficPreset, overrides: Overrides<'_>, group_by: Option<&str>) -> (Names, Counts) {
        let names = Names::new(preset, overrides);
        let before = scrape(fixture(preset.name(), "before"), &names, group_by);
        let after = scrape(fixture(preset.name(), "after"), &names, group_by);
        let counts = after.since(&before);
        (names, counts)
    }

    #[track_caller]
    fn close(actual: Share, expected: f64) {
        match actual {
            Share::Value(v) => assert!(
                (v - expected).abs() <= 1e-9_f64.max(expected.abs() * 1e-6),
                "{v} is not {expected}"
            ),
            other => panic!("{other:?} is not {expected}"),
        }
    }

    #[track_caller]
    fn shares(names: &Names, counts: &Counts, expected: [Option<f64>; 5]) {
        for (ratio, want) in Ratio::ALL.into_iter().zip(expected) {
            match want {
                Some(want) => close(names.share(counts, ratio), want),
                None => assert!(
                    matches!(names.share(counts, ratio), Share::Unavailable(_)),
                    "{ratio:?}: {:?}",
                    names.share(counts, ratio)
                ),
            }
        }
    }

    #[track_caller]
    fn quantiles(names: &Names, counts: &Counts, expected: Option<[f64; 3]>) {
        for (i, q) in Quantile::ALL.into_iter().enumerate() {
            match expected {
                Some(want) => close(names.quantile(counts, q), want[i]),
                None => assert!(
                    matches!(names.quantile(counts, q), Share::Unavailable(_)),
                    "{q:?}: {:?}",
                    names.quantile(counts, q)
                ),
            }
        }
    }

    fn top(counts: &Counts, warned: Warned) -> Option<(String, f64)> {
        counts.top(warned).map(|(n, p)| (n.to_owned(), p))
    }

    #[test]
    fn presets_have_their_names_and_parse_back() {
        for preset in TrafficPreset::ALL {
            let written = serde_json::to_value(preset).unwrap();
            assert_eq!(written, serde_json::json!(preset.name()));
            assert_eq!(serde_json::from_value::<TrafficPreset>(written).unwrap(), preset);
        }
        let error = serde_json::from_value::<TrafficPreset>(serde_json::json!("nginx")).unwrap_err();
        assert!(
            error.to_string().contains("nginx_ingress"),
            "the valid names are listed: {error}"
        );
    }

    #[test]
    fn statuses_are_codes_classes_or_unknown() {
        assert_eq!(classify("503"), Status::Code(503));
        assert_eq!(classify("200"), Status::Code(200));
        assert_eq!(classify("5xx"), Status::Class(5));
        assert_eq!(classify("4XX"), Status::Class(4));
        assert_eq!(classify("2"), Status::Class(2), "Envoy's envoy_response_code_class");
        for odd in [
            "other", "", "NA", "CUSTOM", "600", "099", "0", "6xx", "5000", "OK", "20",
        ] {
            assert_eq!(classify(odd), Status::Unknown, "{odd:?}");
        }
    }

    /// HAProxy: the frontends only (backends and servers count the same requests again), the
    /// exporter's own frontend included (it answered the previous scrape), classes only, no
    /// histogram.
    #[test]
    fn haproxy_counts_its_frontends_in_classes() {
        let (names, counts) = step(TrafficPreset::Haproxy, Overrides::default(), Some("proxy"));
        assert_eq!(counts.total.requests, 201.0);
        shares(
            &names,
            &counts,
            [Some(20.0 / 201.0), Some(40.0 / 201.0), None, None, None],
        );
        quantiles(&names, &counts, None);
        assert_eq!(top(&counts, Warned::Errors5xx), Some(("public".to_owned(), 1.0)));
        let never: Vec<TrafficFigure> = names.cannot_give().into_iter().map(|(f, _)| f).collect();
        assert_eq!(never.len(), 6, "401, 403, 429 and the three quantiles: {never:?}");
        assert!(never.contains(&TrafficFigure::Ratio(Ratio::Throttled429)));
        assert!(never.contains(&TrafficFigure::Quantile(Quantile::P99)));
    }

    /// The backend level through `requests_metric`: the backends are the routes, and HAProxy's
    /// own 429s (denied at the frontend) are not among their requests.
    #[test]
    fn haproxy_backends_name_the_route() {
        let overrides = Overrides {
            requests_metric: Some("haproxy_backend_http_responses_total"),
            ..Overrides::default()
        };
        let (names, counts) = step(TrafficPreset::Haproxy, overrides, Some("proxy"));
        assert_eq!(counts.total.requests, 188.0);
        close(names.share(&counts, Ratio::Server5xx), 20.0 / 188.0);
        let share = names.share(&counts, Ratio::Unauthorized401);
        assert!(
            matches!(share, Share::Unavailable(_)),
            "classes, so no 401 even with an override: {share:?}"
        );
        assert_eq!(top(&counts, Warned::Errors5xx), Some(("orders".to_owned(), 0.75)));
        assert_eq!(counts.groups.len(), 2);
    }

    /// Caddy 2.6: codes from the duration histogram's `_count`, plus the handler errors that
    /// 2.6 counts without a code (10 of 210), which are requests of no known class.
    #[test]
    fn caddy_reads_codes_from_its_histogram_count_and_counts_handler_errors() {
        let (names, counts) = step(TrafficPreset::Caddy, Overrides::default(), Some("server"));
        assert_eq!(counts.total.requests, 210.0);
        assert_eq!(counts.total.no_status, 10.0);
        let n = 210.0;
        shares(
            &names,
            &counts,
            [
                Some(20.0 / n),
                Some(40.0 / n),
                Some(16.0 / n),
                Some(4.0 / n),
                Some(12.0 / n),
            ],
        );
        // 119 of 200 under 5ms: p50 = 0.005 * 100/119.
        quantiles(&names, &counts, Some([0.005 * 100.0 / 119.0, 0.175, 0.375]));
        assert_eq!(counts.groups, vec![("srv0".to_owned(), counts.total)]);
        assert!(names.cannot_give().is_empty());
    }

    /// Envoy: classes as a bare digit, milliseconds, and the admin listener (vigil's own
    /// scrapes) left out of both the requests and the histogram.
    #[test]
    fn envoy_counts_downstream_classes_without_its_admin_listener() {
        let (names, counts) = step(TrafficPreset::Envoy, Overrides::default(), None);
        assert_eq!(counts.total.requests, 200.0);
        assert_eq!(counts.total.class_only, 200.0);
        shares(&names, &counts, [Some(0.10), Some(0.20), None, None, None]);
        quantiles(&names, &counts, Some([0.0555555555555556, 0.19375, 0.375]));
        assert_eq!(names.cannot_give().len(), 3, "401, 403, 429");
    }

    /// The cluster level through the overrides: codes, so 401/403/429 are known; routes by
    /// cluster; still milliseconds.
    #[test]
    fn envoy_clusters_through_overrides_give_codes_and_routes() {
        let overrides = Overrides {
            requests_metric: Some("envoy_cluster_upstream_rq"),
            duration_metric: Some("envoy_cluster_upstream_rq_time"),
            status_label: Some("envoy_response_code"),
        };
        let (names, counts) = step(TrafficPreset::Envoy, overrides, Some("envoy_cluster_name"));
        let n = 188.0;
        shares(
            &names,
            &counts,
            [Some(20.0 / n), Some(28.0 / n), Some(16.0 / n), Some(4.0 / n), Some(0.0)],
        );
        quantiles(&names, &counts, Some([0.0372222222222222, 0.0948837209302326, 0.1936]));
        assert_eq!(top(&counts, Warned::Errors5xx), Some(("orders".to_owned(), 0.75)));
        assert_eq!(top(&counts, Warned::Unauthorized), Some(("users".to_owned(), 1.0)));
        assert_eq!(top(&counts, Warned::Throttled), None, "no 429 at all");
    }

    /// The four presets whose fixtures serve the same 200 requests: 5xx 10% (75% of them on
    /// one route), 4xx 20%, 401 8%, 403 2%, 429 6% (all on one route).
    #[test]
    fn traefik_kong_nginx_ingress_and_spring_give_every_share() {
        let cases = [
            (TrafficPreset::Traefik, "entrypoint", "websecure", "websecure"),
            (TrafficPreset::Kong, "route", "orders-route", "search-route"),
            (TrafficPreset::NginxIngress, "ingress", "orders", "search"),
            (TrafficPreset::Spring, "routeId", "orders", "search"),
        ];
        for (preset, label, errors_on, throttled_on) in cases {
            let (names, counts) = step(preset, Overrides::default(), Some(label));
            assert_eq!(counts.total.requests, 200.0, "{preset:?}");
            shares(
                &names,
                &counts,
                [Some(0.10), Some(0.20), Some(0.08), Some(0.02), Some(0.06)],
            );
            assert_eq!(
                top(&counts, Warned::Errors5xx),
                Some((errors_on.to_owned(), 0.75)),
                "{preset:?}"
            );
            assert_eq!(
                top(&counts, Warned::Throttled),
                Some((throttled_on.to_owned(), 1.0)),
                "{preset:?}"
            );
            assert_eq!(preset.preset().route_label, Some(label));
        }
    }

    #[test]
    fn quantiles_are_in_seconds_whatever_the_gateway_writes() {
        let (names, counts) = step(TrafficPreset::Traefik, Overrides::default(), None);
        quantiles(&names, &counts, Some([0.1 * 100.0 / 120.0, 0.8625, 3.1]));
        let (names, counts) = step(TrafficPreset::Kong, Overrides::default(), None);
        quantiles(
            &names,
            &counts,
            Some([0.05 + 0.03 * 10.0 / 70.0, 0.1 + 0.15 * 2.0 / 9.0, 0.3]),
        );
        let (names, counts) = step(TrafficPreset::NginxIngress, Overrides::default(), None);
        quantiles(
            &names,
            &counts,
            Some([0.053125, 0.1 + 0.15 * 30.0 / 31.0, 0.5 + 0.5 / 3.0]),
        );
        // Spring without percentiles-histogram: no buckets, so no quantile, and why.
        let (names, counts) = step(TrafficPreset::Spring, Overrides::default(), None);
        assert_eq!(counts.buckets, Buckets::Missing);
        match names.quantile(&counts, Quantile::P95) {
            Share::Unavailable(why) => assert!(why.contains("percentiles-histogram"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// SPEC's form, and the contributor part only when there is one.
    #[test]
    fn reasons_name_the_top_contributor() {
        let (_, counts) = step(TrafficPreset::Kong, Overrides::default(), Some("route"));
        let share = Warned::Errors5xx.count(&counts.total) / counts.total.requests;
        assert_eq!(
            describe(
                Warned::Errors5xx,
                share,
                "5m",
                Some("route"),
                counts.top(Warned::Errors5xx)
            ),
            "5xx 10.0% of requests over 5m (route orders-route: 75% of them)"
        );
        assert_eq!(
            describe(
                Warned::Unauthorized,
                0.1,
                "1m",
                Some("route"),
                counts.top(Warned::Unauthorized)
            ),
            "401/403 10.0% of requests over 1m (route users-route: 100% of them)"
        );
        assert_eq!(
            describe(Warned::Throttled, 0.061, "5m", None, None),
            "429 6.1% of requests over 5m"
        );
        assert_eq!(
            describe(Warned::Errors5xx, 0.2, "5m", Some("route"), Some(("", 1.0))),
            "5xx 20.0% of requests over 5m (route (none): 100% of them)"
        );
    }

    fn exposition(lines: impl IntoIterator<Item = String>) -> Exposition {
        let text: String = lines.into_iter().map(|l| l + "\n").collect();
        promtext::parse(&text).expect("test exposition parses")
    }

    /// 100 000 routes: the scrape keeps 1024 of them, a step names 10, and the totals still
    /// hold every request.
    #[test]
    fn a_hundred_thousand_routes_stay_bounded() {
        let names = Names::new(TrafficPreset::Kong, Overrides::default());
        let text = |errors: u32| {
            exposition((0..100_000).map(move |i| {
                let code = if i == 99_999 { 500 } else { 200 };
                let n = if i == 99_999 { errors } else { 1 };
                format!("kong_http_requests_total{{route=\"r{i}\",code=\"{code}\"}} {n}")
            }))
        };
        let before = traffic_from(&text(0), &names, Some("route"));
        let after = traffic_from(&text(50), &names, Some("route"));
        assert_eq!(after.groups.len(), MAX_TRACKED_GROUPS);
        assert_eq!(after.total.requests, 99_999.0 + 50.0);
        let counts = after.since(&before);
        assert_eq!(counts.total.requests, 50.0);
        assert_eq!(counts.total.classes[4], 50.0);
        assert!(counts.groups.len() <= MAX_GROUPS);
        // The failing route came past the cap: its errors are in `other`, not lost.
        assert_eq!(counts.other.classes[4], 50.0);
        assert_eq!(counts.top(Warned::Errors5xx), None);
    }

    #[test]
    fn a_step_ranks_routes_by_what_they_served_and_sums_the_rest_as_other() {
        let names = Names::new(TrafficPreset::Generic, Overrides::default());
        let scrape = |fails: u32| {
            let lines = (0..15).map(|i| format!("http_requests_total{{route=\"r{i:02}\",status=\"200\"}} {}", 100 + i));
            let failing = [format!("http_requests_total{{route=\"r07\",status=\"503\"}} {fails}")];
            traffic_from(&exposition(lines.chain(failing)), &names, Some("route"))
        };
        // r07's 503s start after the first scrape; every route also served nothing new.
        let counts = scrape(30).since(&scrape(0));
        assert_eq!(counts.total.requests, 30.0);
        assert_eq!(counts.groups.len(), MAX_GROUPS);
        assert_eq!(counts.groups[0].0, "r07", "the route with errors first");
        assert_eq!(counts.top(Warned::Errors5xx), Some(("r07", 1.0)));
        assert_eq!(counts.other, Tally::default());

        // Over a window, steps add up; the route is still named.
        let window = Counts::merge([&counts, &scrape(45).since(&scrape(30)), &scrape(45).since(&scrape(45))]);
        assert_eq!(window.total.classes[4], 45.0);
        assert_eq!(window.top(Warned::Errors5xx), Some(("r07", 1.0)));
    }

    #[test]
    fn a_restart_counts_from_zero() {
        let names = Names::new(TrafficPreset::Generic, Overrides::default());
        let scrape = |ok: u32, bad: u32, le: [u32; 2]| {
            traffic_from(
                &exposition([
                    format!("http_requests_total{{route=\"a\",status=\"200\"}} {ok}"),
                    format!("http_requests_total{{route=\"a\",status=\"500\"}} {bad}"),
                    format!("http_request_duration_seconds_bucket{{le=\"0.1\"}} {}", le[0]),
                    format!("http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}", le[1]),
                ]),
                &names,
                Some("route"),
            )
        };
        let counts = scrape(5, 1, [4, 6]).since(&scrape(900, 100, [800, 1000]));
        assert_eq!(counts.total.requests, 6.0);
        assert_eq!(counts.total.classes[4], 1.0);
        assert_eq!(counts.groups[0].1.requests, 6.0);
        assert_eq!(counts.buckets, Buckets::Bounds(vec![(0.1, 4.0), (f64::INFINITY, 6.0)]));
    }

    #[test]
    fn hostile_values_count_nothing_and_names_are_cut() {
        let names = Names::new(TrafficPreset::Generic, Overrides::default());
        let long = "x".repeat(10_000);
        let scrape = traffic_from(
            &exposition([
                "http_requests_total{status=\"200\",route=\"a\"} NaN".to_owned(),
                "http_requests_total{status=\"200\",route=\"a\"} -5".to_owned(),
                "http_requests_total{status=\"200\",route=\"a\"} +Inf".to_owned(),
                format!("http_requests_total{{status=\"500\",route=\"{long}\"}} 3"),
                "http_requests_total{status=\"500\",route=\"b\\nc\"} 2".to_owned(),
                "http_request_duration_seconds_bucket{le=\"NaN\"} 1".to_owned(),
            ]),
            &names,
            Some("route"),
        );
        assert_eq!(scrape.total.requests, 5.0);
        assert_eq!(scrape.buckets, Buckets::Missing, "a NaN bound is no bucket");
        let mut kept: Vec<&String> = scrape.groups.keys().collect();
        kept.sort();
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|n| n.len() <= MAX_GROUP_NAME + '…'.len_utf8()));
        assert!(kept.iter().any(|n| n.as_str() == "b c"));
    }

    #[test]
    fn more_than_128_bounds_are_not_read() {
        let names = Names::new(TrafficPreset::Generic, Overrides::default());
        let lines = (0..200).map(|i| format!("http_request_duration_seconds_bucket{{le=\"{i}\"}} {i}"));
        let scrape = traffic_from(&exposition(lines), &names, None);
        assert_eq!(scrape.buckets, Buckets::TooMany);
        let counts = scrape.since(&Scrape::default());
        assert!(matches!(names.quantile(&counts, Quantile::P50), Share::Unavailable(_)));
    }

    #[test]
    fn the_generic_preset_reads_status_or_code_and_an_override_reads_only_its_label() {
        let text = exposition([
            "http_requests_total{code=\"503\"} 4".to_owned(),
            "http_requests_total{status=\"200\"} 6".to_owned(),
        ]);
        let generic = Names::new(TrafficPreset::Generic, Overrides::default());
        let scrape = traffic_from(&text, &generic, None);
        assert_eq!((scrape.total.requests, scrape.total.classes[4]), (10.0, 4.0));
        let only_status = Names::new(
            TrafficPreset::Generic,
            Overrides {
                status_label: Some("status"),
                ..Overrides::default()
            },
        );
        let scrape = traffic_from(&text, &only_status, None);
        assert_eq!((scrape.total.requests, scrape.total.no_status), (10.0, 4.0));
    }

    #[test]
    fn the_scrape_filter_asks_for_every_name_read() {
        let caddy = Names::new(TrafficPreset::Caddy, Overrides::default());
        assert_eq!(
            caddy.wanted().collect::<Vec<_>>(),
            [
                "caddy_http_request_duration_seconds_count",
                "caddy_http_request_errors_total"
            ]
        );
        assert_eq!(caddy.buckets(), Some("caddy_http_request_duration_seconds_bucket"));
        let haproxy = Names::new(TrafficPreset::Haproxy, Overrides::default());
        assert_eq!(
            haproxy.wanted().collect::<Vec<_>>(),
            ["haproxy_frontend_http_responses_total"]
        );
    }

    #[test]
    fn no_requests_is_no_share_not_zero() {
        let names = Names::new(TrafficPreset::Kong, Overrides::default());
        let counts = Counts::default();
        assert_eq!(names.share(&counts, Ratio::Server5xx), Share::NoRequests);
        assert!(matches!(names.quantile(&counts, Quantile::P50), Share::Unavailable(_)));
    }
}
