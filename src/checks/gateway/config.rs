//! `[gateway]`: the check named `gateway`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::presets::TrafficPreset;
use crate::config::Invalid;
use crate::config::de::{duration, opt_duration};
use crate::config::limits::{
    cert_warn, client_cert_pair, default_cert_warn, default_saturation_fail, default_saturation_warn, default_window,
    metric_name, ratio, warn_below_fail, window,
};
use crate::core::url::HttpUrl;

/// `[gateway]`: the check named `gateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Gateway {
    /// The gateway's health endpoint, asked with `GET` on every run. Default none; an
    /// `http(s)` URL without credentials; `health_url`, `metrics_url` or both are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<HttpUrl>,
    /// The gateway's Prometheus endpoint, scraped for its DB pool and served traffic. Default
    /// none; an `http(s)` URL without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<HttpUrl>,
    /// Which metric names carry the DB pool figures: `generic` (default), `hikaricp` or
    /// `go_sql`; the `pool_*_metric` keys override single names.
    #[serde(default)]
    pub pool_metrics: PoolPreset,
    /// The pool's connections in use, instead of the preset's name. Default none (the
    /// preset's); a Prometheus metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_in_use_metric: Option<String>,
    /// The pool's maximum size, instead of the preset's name. Default none; a metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_max_metric: Option<String>,
    /// The pool's waiting requests, instead of the preset's name. Default none; a metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_waiting_metric: Option<String>,
    /// Pool in use / max at which the check warns. Default 0.80; above 0, at most 1, below
    /// `pool_saturation_fail`.
    #[serde(default = "default_saturation_warn")]
    pub pool_saturation_warn: f64,
    /// Pool in use / max at which the check fails. Default 0.95; above 0, at most 1.
    #[serde(default = "default_saturation_fail")]
    pub pool_saturation_fail: f64,
    /// Which gateway's metric names carry its served traffic: `generic` (default:
    /// `http_requests_total` by `status` or `code`, `http_request_duration_seconds`), `haproxy`,
    /// `caddy`, `envoy`, `traefik`, `kong`, `nginx_ingress` or `spring` (docs/gateway-presets.md).
    #[serde(default)]
    pub traffic_metrics: TrafficPreset,
    /// The gateway's request counter (or a histogram's `_count`), instead of the preset's.
    /// Default none (the preset's; `http_requests_total` for `generic`); a metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_metric: Option<String>,
    /// The gateway's request duration histogram (its family name, without `_bucket`), instead
    /// of the preset's, in the preset's unit. Default none (`http_request_duration_seconds` for
    /// `generic`); a metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_metric: Option<String>,
    /// The request counter's label that holds the status (a code or a class), instead of the
    /// preset's. Default none; a Prometheus label name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_label: Option<String>,
    /// The request counter's label that names a route, an upstream or a service: every traffic
    /// warn names the one that contributed most. Default none; a Prometheus label name. At most
    /// 10 of its values are kept per window, the rest summed as `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// 5xx / all over `window` at which the check warns (the runbook's 5%). Default 0.05;
    /// above 0, at most 1.
    #[serde(default = "default_error_ratio_warn")]
    pub error_ratio_warn: f64,
    /// The error ratio at which the check fails readiness. Default none (it only warns);
    /// above 0, at most 1, above `error_ratio_warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio_fail: Option<f64>,
    /// 401 + 403 / all over `window` at which the check warns (the runbook's 401s); it never
    /// fails. Default 0.10; above 0, at most 1.
    #[serde(default = "default_unauthorized_ratio_warn")]
    pub unauthorized_ratio_warn: f64,
    /// 429 / all over `window` at which the check warns; it never fails. Default 0.05; above 0,
    /// at most 1.
    #[serde(default = "default_throttled_ratio_warn")]
    pub throttled_ratio_warn: f64,
    /// p95 of served requests over `window` at which the check warns (the runbook's 2 s).
    /// Default `2s`.
    #[serde(default = "default_latency_p95_warn", with = "duration")]
    pub latency_p95_warn: Duration,
    /// The p95 at which the check fails. Default none (it only warns); above
    /// `latency_p95_warn`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub latency_p95_fail: Option<Duration>,
    /// The span the traffic figures (rate, shares, quantiles) cover. Default `5m`; between the interval and 24h.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// How close the earliest `notAfter` of the certificate chain an https `health_url` or
    /// `metrics_url` presents may come before the check warns (expired fails). Default `14d`;
    /// at most 365d.
    #[serde(default = "default_cert_warn", with = "duration")]
    pub cert_warn: Duration,
    /// A PEM file of extra CA certificates for an https `health_url` or `metrics_url` (beside
    /// the built-in Mozilla roots: a gateway behind a private CA, as mutual TLS often is), read
    /// when the check is built. Default none; must hold at least one certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Our client certificate (PEM) for a gateway whose https endpoints require mutual TLS:
    /// presented when the server asks, read when the check is built and again on every run (a
    /// renewal is picked up without a restart); its expiry is judged against `cert_warn`.
    /// Default none; only with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The private key of `client_cert_file` (PEM: PKCS#8, PKCS#1 or SEC1); never printed.
    /// Default none; only with `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

impl Gateway {
    pub(crate) fn validate(&self, interval: Duration) -> Result<(), Invalid> {
        cert_warn("gateway.cert_warn", self.cert_warn)?;
        client_cert_pair(
            "gateway",
            self.client_cert_file.as_deref(),
            self.client_key_file.as_deref(),
        )?;
        let https = |url: &Option<HttpUrl>| url.as_ref().is_some_and(|u| u.uri().scheme_str() == Some("https"));
        if self.client_cert_file.is_some() && !https(&self.health_url) && !https(&self.metrics_url) {
            return Err(Invalid::new(
                "gateway.client_cert_file",
                "applies only to an https:// health_url or metrics_url (a client certificate needs TLS)",
            ));
        }
        if self.health_url.is_none() && self.metrics_url.is_none() {
            return Err(Invalid::new(
                "gateway.health_url",
                "required: set health_url, metrics_url or both",
            ));
        }
        warn_below_fail(
            "gateway",
            ("pool_saturation_warn", self.pool_saturation_warn),
            ("pool_saturation_fail", self.pool_saturation_fail),
        )?;
        ratio("gateway.error_ratio_warn", self.error_ratio_warn)?;
        if let Some(fail) = self.error_ratio_fail {
            warn_below_fail(
                "gateway",
                ("error_ratio_warn", self.error_ratio_warn),
                ("error_ratio_fail", fail),
            )?;
        }
        if let Some(fail) = self.latency_p95_fail
            && fail <= self.latency_p95_warn
        {
            return Err(Invalid::new(
                "gateway.latency_p95_fail",
                format!(
                    "must exceed latency_p95_warn ({}), got {}",
                    crate::core::fmt::duration(self.latency_p95_warn),
                    crate::core::fmt::duration(fail)
                ),
            ));
        }
        for (key, name) in [
            ("gateway.pool_in_use_metric", &self.pool_in_use_metric),
            ("gateway.pool_max_metric", &self.pool_max_metric),
            ("gateway.pool_waiting_metric", &self.pool_waiting_metric),
        ] {
            if let Some(name) = name {
                metric_name(key, name)?;
            }
        }
        ratio("gateway.unauthorized_ratio_warn", self.unauthorized_ratio_warn)?;
        ratio("gateway.throttled_ratio_warn", self.throttled_ratio_warn)?;
        for (key, name) in [
            ("gateway.requests_metric", &self.requests_metric),
            ("gateway.duration_metric", &self.duration_metric),
        ] {
            if let Some(name) = name {
                metric_name(key, name)?;
            }
        }
        for (key, name) in [
            ("gateway.status_label", &self.status_label),
            ("gateway.group_by", &self.group_by),
        ] {
            if let Some(name) = name {
                label_name(key, name)?;
            }
        }
        window("gateway.window", self.window, interval)
    }
}

/// Which metric names carry the gateway's DB pool figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PoolPreset {
    /// `connection_pool_in_use` / `_max` / `_waiting`.
    #[default]
    Generic,
    /// `hikaricp_connections_active` / `_max` / `_pending`.
    Hikaricp,
    /// `go_sql_in_use_connections` / `go_sql_max_open_connections` / `go_sql_wait_count_total`.
    GoSql,
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): what `group_by` and `status_label`
/// are matched against, so anything else could never match and is refused at load.
fn label_name(key: &str, name: &str) -> Result<(), Invalid> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("not a Prometheus label name: {name:?}")))
    }
}

fn default_unauthorized_ratio_warn() -> f64 {
    0.10
}

fn default_throttled_ratio_warn() -> f64 {
    0.05
}

fn default_error_ratio_warn() -> f64 {
    0.05
}

fn default_latency_p95_warn() -> Duration {
    Duration::from_secs(2)
}
