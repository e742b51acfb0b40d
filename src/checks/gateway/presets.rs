//! The gateways vigil knows by name (`traffic_metrics`), and the arithmetic that turns their
//! `/metrics` into requests by status and by route.
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
//!
//! Memory is bounded whatever the gateway sends: a scrape is summed into at most
//! [`MAX_TRACKED_GROUPS`] routes (the rest straight into `other`), route names are cut to
//! [`MAX_GROUP_NAME`] bytes, a histogram to [`MAX_BUCKETS`] bounds; what a window keeps is at
//! most [`MAX_GROUPS`] routes per step.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::promtext::{Exposition, Sample};

/// The most routes (upstreams, services) a step or a window names; the rest are summed as
/// `other` (SPEC: "at most 10 groups are kept").
pub(crate) const MAX_GROUPS: usize = 10;

/// The most distinct route values one scrape is summed into; samples of further values go to
/// `other`. With 100k routes in an exposition the map stays this size, and it is what ranks the
/// routes by what they served since the previous scrape.
pub(crate) const MAX_TRACKED_GROUPS: usize = 1024;

/// A route's name as kept and shown, in bytes: label values come from the gateway and end up
/// in reasons, which are one short line.
pub(crate) const MAX_GROUP_NAME: usize = 128;

/// The most distinct `le` bounds of a latency histogram (classic histograms have a few dozen;
/// Micrometer's percentile histograms about 70): past this no quantile is computed.
pub(crate) const MAX_BUCKETS: usize = 128;

/// The gateways `traffic_metrics` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TrafficPreset {
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

    /// For the configuration error that lists the valid values.
    pub(crate) const NAMES: &'static str = "generic, haproxy, caddy, envoy, traefik, kong, nginx_ingress or spring";

    /// The name as written in `traffic_metrics`.
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

    pub(crate) fn from_name(name: &str) -> Option<TrafficPreset> {
        TrafficPreset::ALL.into_iter().find(|p| p.name() == name)
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

/// What a preset's status label holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusValues {
    /// `503`: every share can be computed.
    Codes,
    /// `5xx` (or Envoy's `5`): 401, 403 and 429 cannot be told apart.
    Classes,
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
    pub(crate) status: StatusValues,
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
    /// Why 401, 403 and 429 are unavailable, when the status label holds classes.
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
    status: StatusValues::Codes,
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
    status: StatusValues::Classes,
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
    status: StatusValues::Codes,
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
    status: StatusValues::Classes,
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
    status: StatusValues::Codes,
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
    status: StatusValues::Codes,
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
    status: StatusValues::Codes,
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
    status: StatusValues::Codes,
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

    /// Every metric name the traffic reads, for the scrape's filter.
    pub(crate) fn wanted(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.requests.as_str()),
            self.buckets.as_deref(),
            self.without_status,
        ]
        .into_iter()
        .flatten()
    }

    /// The figures this gateway can never give, and why: shown as unavailable in `/diag`,
    /// absent from `/metrics`, whatever the traffic.
    pub(crate) fn cannot_give(&self) -> Vec<(Figure, &'static str)> {
        let mut figures = Vec::new();
        if let Some(why) = self.no_codes {
            figures.extend(Ratio::CODES.map(|r| (Figure::Ratio(r), why)));
        }
        if self.buckets.is_none() {
            figures.extend(Quantile::ALL.map(|q| (Figure::Quantile(q), self.no_histogram)));
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
            Buckets::TooMany => Share::Unavailable("the gateway's latency histogram has more than 128 buckets"),
            Buckets::Bounds(bounds) => match quantile(q.value(), bounds) {
                Some(seconds) => Share::Value(seconds),
                None => Share::NoRequests,
            },
        }
    }
}

/// What a status label's value says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Code(u16),
    /// 1 to 5.
    Class(u8),
    /// No status: HAProxy's `other`, Spring's `NA`, an empty or odd value.
    Unknown,
}

/// Reads a status value: `503`, `5xx` / `5XX`, or Envoy's bare class digit `5`.
pub(crate) fn classify(value: &str) -> Status {
    match value.as_bytes() {
        [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => value.parse().map_or(Status::Unknown, Status::Code),
        [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] | [c @ b'1'..=b'5'] => Status::Class(c - b'0'),
        _ => Status::Unknown,
    }
}

/// Requests counted by status: one scrape's cumulative counts, or the increase over a step or
/// a window. Every field is a count of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Tally {
    /// Every request, those without a known status included.
    pub(crate) requests: f64,
    /// By class, 1xx to 5xx.
    pub(crate) classes: [f64; 5],
    pub(crate) unauthorized: f64,
    pub(crate) forbidden: f64,
    pub(crate) throttled: f64,
    /// Requests whose status came only as a class: while there are any, 401, 403 and 429 are
    /// not known.
    pub(crate) class_only: f64,
    /// Requests of no known status (HAProxy's `other`, Caddy 2.6's handler errors).
    pub(crate) no_status: f64,
}

impl Tally {
    fn count(&mut self, status: Status, n: f64) {
        self.requests += n;
        match status {
            Status::Code(code) => {
                self.classes[usize::from(code / 100 - 1)] += n;
                match code {
                    401 => self.unauthorized += n,
                    403 => self.forbidden += n,
                    429 => self.throttled += n,
                    _ => {}
                }
            }
            Status::Class(class) => {
                self.classes[usize::from(class - 1)] += n;
                self.class_only += n;
            }
            Status::Unknown => self.no_status += n,
        }
    }

    fn fields(&self) -> [f64; 11] {
        let [a, b, c, d, e] = self.classes;
        [
            self.requests,
            a,
            b,
            c,
            d,
            e,
            self.unauthorized,
            self.forbidden,
            self.throttled,
            self.class_only,
            self.no_status,
        ]
    }

    fn from_fields(f: [f64; 11]) -> Tally {
        Tally {
            requests: f[0],
            classes: [f[1], f[2], f[3], f[4], f[5]],
            unauthorized: f[6],
            forbidden: f[7],
            throttled: f[8],
            class_only: f[9],
            no_status: f[10],
        }
    }

    fn zip(&self, other: &Tally, f: impl Fn(f64, f64) -> f64) -> Tally {
        let (a, b) = (self.fields(), other.fields());
        Tally::from_fields(std::array::from_fn(|i| f(a[i], b[i])))
    }

    fn add(&mut self, other: &Tally) {
        *self = self.zip(other, |a, b| a + b);
    }

    /// What was counted from `before` to `self`. Fewer requests than before means the gateway
    /// restarted and counts from zero (as Prometheus' `increase`): all of `self` is new.
    fn since(&self, before: &Tally) -> Tally {
        if self.requests < before.requests {
            return *self;
        }
        self.zip(before, |now, then| (now - then).max(0.0))
    }

    /// `self` without `part`, never below zero (sums of floats, or a route that restarted on
    /// its own, must not make `other` negative).
    fn without(&self, part: &Tally) -> Tally {
        self.zip(part, |a, b| (a - b).max(0.0))
    }

    /// What ranks routes: the errors they served first, then their traffic.
    fn errors(&self) -> f64 {
        self.classes[3] + self.classes[4] + self.no_status
    }
}

/// A latency histogram's cumulative buckets in one scrape, or their increase.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Buckets {
    /// The gateway exported no buckets (or none is configured).
    #[default]
    Missing,
    /// More than [`MAX_BUCKETS`] distinct bounds: not read.
    TooMany,
    /// `(le in seconds, cumulative count)` summed over every series, sorted by `le`.
    Bounds(Vec<(f64, f64)>),
}

impl Buckets {
    fn since(&self, before: &Buckets) -> Buckets {
        let (Buckets::Bounds(now), Buckets::Bounds(then)) = (self, before) else {
            return self.clone();
        };
        let find = |le: f64| {
            then.binary_search_by(|(b, _)| b.total_cmp(&le))
                .ok()
                .map(|at| then[at].1)
        };
        // A bucket that went down means a restart: everything counted now is new.
        let reset = now.iter().any(|&(le, c)| find(le).is_some_and(|before| c < before));
        Buckets::Bounds(
            now.iter()
                .map(|&(le, c)| (le, if reset { c } else { c - find(le).unwrap_or(0.0) }))
                .collect(),
        )
    }

    fn add(&mut self, other: &Buckets) {
        match (&mut *self, other) {
            (_, Buckets::Missing) | (Buckets::TooMany, _) => {}
            (Buckets::Missing, _) | (_, Buckets::TooMany) => *self = other.clone(),
            (Buckets::Bounds(sum), Buckets::Bounds(more)) => {
                if !more.iter().all(|&(le, c)| add_bound(sum, le, c)) {
                    *self = Buckets::TooMany;
                }
            }
        }
    }
}

/// Adds `count` to the bucket `le` of sorted `bounds`; false when that needs a bound past
/// [`MAX_BUCKETS`]. Binary search: a scrape's buckets cost O(samples × log bounds).
fn add_bound(bounds: &mut Vec<(f64, f64)>, le: f64, count: f64) -> bool {
    match bounds.binary_search_by(|(b, _)| b.total_cmp(&le)) {
        Ok(at) => bounds[at].1 += count,
        Err(_) if bounds.len() >= MAX_BUCKETS => return false,
        Err(at) => bounds.insert(at, (le, count)),
    }
    true
}

/// One scrape summed: the requests in total and per route, and the latency buckets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrape {
    pub(crate) total: Tally,
    /// At most [`MAX_TRACKED_GROUPS`] routes; empty without `group_by`.
    groups: HashMap<String, Tally>,
    /// Requests of routes past the cap: in `total`, in no group.
    untracked: Tally,
    pub(crate) buckets: Buckets,
}

/// Sums one scrape by status and, with `group_by`, by the value of that label (a sample
/// without it counts under the route `""`). Linear in the samples kept by the parse; the map of
/// routes holds at most [`MAX_TRACKED_GROUPS`] whatever the exposition.
pub(crate) fn traffic_from(exposition: &Exposition, names: &Names, group_by: Option<&str>) -> Scrape {
    let mut scrape = Scrape::default();
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
    if let Some(bucket) = &names.buckets {
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

impl Scrape {
    /// The tally of one route, created while there is room; past [`MAX_TRACKED_GROUPS`] the
    /// requests go to `untracked`.
    fn tally_for(&mut self, raw: &str) -> &mut Tally {
        let name = group_name(raw);
        if !self.groups.contains_key(name.as_ref()) && self.groups.len() >= MAX_TRACKED_GROUPS {
            return &mut self.untracked;
        }
        self.groups.entry(name.into_owned()).or_default()
    }

    fn saturated(&self) -> bool {
        self.groups.len() >= MAX_TRACKED_GROUPS || self.untracked.requests > 0.0
    }

    /// What the gateway served from `before` to this scrape: the total, the [`MAX_GROUPS`]
    /// routes with the most errors (then the most requests), and the rest as `other`. A route
    /// absent from `before` started from zero (gateways create series on first use), unless
    /// `before` had run out of room for routes: then its count is not known and it stays in
    /// `other`.
    pub(crate) fn since(&self, before: &Scrape) -> Counts {
        let total = self.total.since(&before.total);
        let restarted = self.total.requests < before.total.requests;
        let groups = self.groups.iter().filter_map(|(name, now)| {
            let increase = match before.groups.get(name) {
                _ if restarted => *now,
                Some(then) => now.since(then),
                None if before.saturated() => return None,
                None => *now,
            };
            Some((name.as_str(), increase))
        });
        Counts::ranked(total, groups, self.buckets.since(&before.buckets))
    }
}

/// Requests over a step or a window: the total, at most [`MAX_GROUPS`] routes by name (most
/// errors first), the rest summed as `other`, and the latency buckets' increase.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) total: Tally,
    pub(crate) groups: Vec<(String, Tally)>,
    pub(crate) other: Tally,
    pub(crate) buckets: Buckets,
}

impl Counts {
    /// Keeps the [`MAX_GROUPS`] routes that matter most; `other` gets the rest, and whatever
    /// of `total` no kept route accounts for.
    fn ranked<'a>(total: Tally, groups: impl Iterator<Item = (&'a str, Tally)>, buckets: Buckets) -> Counts {
        let mut all: Vec<(&str, Tally)> = groups.collect();
        all.sort_by(|(an, a), (bn, b)| {
            b.errors()
                .total_cmp(&a.errors())
                .then(b.requests.total_cmp(&a.requests))
                .then(an.cmp(bn))
        });
        all.truncate(MAX_GROUPS);
        let mut kept = Tally::default();
        for (_, tally) in &all {
            kept.add(tally);
        }
        Counts {
            total,
            other: total.without(&kept),
            groups: all.into_iter().map(|(n, t)| (n.to_owned(), t)).collect(),
            buckets,
        }
    }

    /// The sum of several steps (a window). A route kept in some steps and not in others
    /// counts by name only where it was kept: the steps rank by what each served, so a
    /// route that fails now is named from the step it starts failing.
    pub(crate) fn merge<'a>(steps: impl IntoIterator<Item = &'a Counts>) -> Counts {
        let mut total = Tally::default();
        let mut buckets = Buckets::Missing;
        let mut by_name: HashMap<&str, Tally> = HashMap::new();
        for step in steps {
            total.add(&step.total);
            buckets.add(&step.buckets);
            for (name, tally) in &step.groups {
                by_name.entry(name.as_str()).or_default().add(tally);
            }
        }
        Counts::ranked(total, by_name.into_iter(), buckets)
    }

    /// The route with the most of `warned` and its part of them; none without routes or
    /// without any such request.
    pub(crate) fn top(&self, warned: Warned) -> Option<(&str, f64)> {
        let all = warned.count(&self.total);
        if all <= 0.0 {
            return None;
        }
        self.groups
            .iter()
            .map(|(name, tally)| (name.as_str(), warned.count(tally)))
            .filter(|(_, n)| *n > 0.0)
            .max_by(|(an, a), (bn, b)| a.total_cmp(b).then(bn.cmp(an)))
            .map(|(name, n)| (name, n / all))
    }
}

/// The shares SPEC names (`vigil_gateway_response_ratio{class}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ratio {
    Server5xx,
    Client4xx,
    Unauthorized401,
    Forbidden403,
    Throttled429,
}

impl Ratio {
    pub(crate) const ALL: [Ratio; 5] = [
        Ratio::Server5xx,
        Ratio::Client4xx,
        Ratio::Unauthorized401,
        Ratio::Forbidden403,
        Ratio::Throttled429,
    ];
    const CODES: [Ratio; 3] = [Ratio::Unauthorized401, Ratio::Forbidden403, Ratio::Throttled429];

    /// The `class` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Ratio::Server5xx => "5xx",
            Ratio::Client4xx => "4xx",
            Ratio::Unauthorized401 => "401",
            Ratio::Forbidden403 => "403",
            Ratio::Throttled429 => "429",
        }
    }

    fn needs_codes(self) -> bool {
        Ratio::CODES.contains(&self)
    }

    fn count(self, tally: &Tally) -> f64 {
        match self {
            Ratio::Server5xx => tally.classes[4],
            Ratio::Client4xx => tally.classes[3],
            Ratio::Unauthorized401 => tally.unauthorized,
            Ratio::Forbidden403 => tally.forbidden,
            Ratio::Throttled429 => tally.throttled,
        }
    }
}

/// The quantiles SPEC names (`vigil_gateway_request_duration_quantile_seconds{quantile}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantile {
    P50,
    P95,
    P99,
}

impl Quantile {
    pub(crate) const ALL: [Quantile; 3] = [Quantile::P50, Quantile::P95, Quantile::P99];

    /// The `quantile` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Quantile::P50 => "0.5",
            Quantile::P95 => "0.95",
            Quantile::P99 => "0.99",
        }
    }

    fn value(self) -> f64 {
        match self {
            Quantile::P50 => 0.5,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
        }
    }
}

/// A figure of the gateway's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Figure {
    Ratio(Ratio),
    Quantile(Quantile),
}

/// A share or a quantile, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Share {
    Value(f64),
    /// No request over the window: nothing to divide by.
    NoRequests,
    /// The gateway cannot give it (shown as "unavailable", never as 0).
    Unavailable(&'static str),
}

/// What a warn is about, and how its reason names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Warned {
    /// `error_ratio_warn`.
    Errors5xx,
    /// `unauthorized_ratio_warn`: 401 and 403 together.
    Unauthorized,
    /// `throttled_ratio_warn`.
    Throttled,
}

impl Warned {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Warned::Errors5xx => "5xx",
            Warned::Unauthorized => "401/403",
            Warned::Throttled => "429",
        }
    }

    pub(crate) fn count(self, tally: &Tally) -> f64 {
        match self {
            Warned::Errors5xx => tally.classes[4],
            Warned::Unauthorized => tally.unauthorized + tally.forbidden,
            Warned::Throttled => tally.throttled,
        }
    }
}

/// `5xx 8.1% of requests over 5m (route /orders: 92% of them)`: the SPEC's form, the
/// contributor part only with `group_by` and a route that had some.
pub(crate) fn describe(
    warned: Warned,
    share: f64,
    window: &str,
    group_by: Option<&str>,
    top: Option<(&str, f64)>,
) -> String {
    let mut reason = format!("{} {:.1}% of requests over {window}", warned.label(), share * 100.0);
    if let (Some(label), Some((name, part))) = (group_by, top) {
        let name = if name.is_empty() { "(none)" } else { name };
        reason.push_str(&format!(" ({label} {name}: {:.0}% of them)", part * 100.0));
    }
    reason
}

/// `histogram_quantile`: linear interpolation inside the bucket holding the rank; the highest
/// finite bound when the rank falls in `+Inf`; none without requests or without a finite bound.
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

/// A counter's value as a count: a negative, NaN or infinite value (a broken or hostile
/// exposition) counts nothing rather than poisoning every sum.
fn counter_value(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0).then_some(value)
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        text => text.parse::<f64>().ok().filter(|le| le.is_finite()),
    }
}

/// A route's name as kept: control characters replaced, at most [`MAX_GROUP_NAME`] bytes (cut on
/// a character boundary, with `…`). Borrowed when nothing needs changing, the usual case.
fn group_name(raw: &str) -> Cow<'_, str> {
    if raw.len() <= MAX_GROUP_NAME && !raw.chars().any(char::is_control) {
        return Cow::Borrowed(raw);
    }
    let mut name = String::with_capacity(MAX_GROUP_NAME + 3);
    for c in raw.chars() {
        if name.len() + c.len_utf8() > MAX_GROUP_NAME {
            name.push('…');
            break;
        }
        name.push(if c.is_control() { ' ' } else { c });
    }
    Cow::Owned(name)
}

#[cfg(test)]
mod tests {
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
        let keep = Keep {
            names: &wanted,
            max_samples: 10_000,
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
            assert_eq!(TrafficPreset::from_name(preset.name()), Some(preset));
            assert!(TrafficPreset::NAMES.contains(preset.name()));
        }
        assert_eq!(TrafficPreset::from_name("nginx"), None);
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
        let never: Vec<Figure> = names.cannot_give().into_iter().map(|(f, _)| f).collect();
        assert_eq!(never.len(), 6, "401, 403, 429 and the three quantiles: {never:?}");
        assert!(never.contains(&Figure::Ratio(Ratio::Throttled429)));
        assert!(never.contains(&Figure::Quantile(Quantile::P99)));
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
                "caddy_http_request_duration_seconds_bucket",
                "caddy_http_request_errors_total"
            ]
        );
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
