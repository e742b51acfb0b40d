//! `gateway`: the api-gateway's own health endpoint, probed like an upstream, and its
//! `/metrics`, scraped and parsed (see [`crate::promtext`]) for its DB pool ([`pool`]) and,
//! when it exports them, its served traffic ([`traffic`], by the gateway's own names:
//! [`presets`]).
//!
//! The pool and health decide pass/fail; the traffic figures only warn unless
//! `error_ratio_fail` / `latency_p95_fail` are set, because every replica sees the same
//! traffic and failing them all at once would empty the load balancer.

pub(crate) mod config;
mod counts;
pub(crate) mod metrics;
mod pool;
mod presets;
mod traffic;

use std::sync::Arc;
use std::time::Instant;

use self::config::Gateway;
use self::metrics::GatewayMetrics;
use self::pool::Pool;
use self::traffic::Traffic;
use crate::checks::cert;
use crate::checks::facts::{Facts, PoolFact};
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled};
use crate::config::{CheckSettings, Invalid, Scope};
use crate::core::outcome::{FailureKind, Figure, Finding, Outcome, Report, Status, Unit};
use crate::core::url::HttpUrl;
use crate::net::attempt::ProbeFailure;
use crate::net::attempt::ProbeResponse;
use crate::net::http::ProbeRequest;
use crate::net::tls::HttpClient;
use crate::promtext::{self, Exposition, Keep};

const HEALTH_HINT: &str = "kubectl logs -f deployment/api-gateway -n api-gateway; kubectl describe pod <pod> \
                           (runbook: 503 Service Unavailable)";

/// The most samples a scrape keeps of the metrics the check reads (pool and requests; the
/// latency buckets have as many again of their own); a gateway exporting more of them is read
/// as a protocol warning, not parsed into unbounded memory. Past it, the buckets alone only
/// leave p50/p95/p99 uncomputed. Other metrics are checked line by line and dropped.
pub(crate) const MAX_SCRAPE_SAMPLES: usize = 10_000;

const STATUS_CODE: Figure = Figure::new("status_code", Unit::None);
const LATENCY: Figure = Figure::new("latency", Unit::Seconds);

/// The gateway check; see the module docs.
pub(crate) struct GatewayCheck {
    client: HttpClient,
    health: Option<ProbeRequest>,
    scrape: Option<ProbeRequest>,
    timeout: std::time::Duration,
    metrics: GatewayMetrics,
    pool: Pool,
    traffic: Traffic,
    /// The metric names the pool and the traffic read, and (apart) the traffic's latency
    /// buckets, which may be dropped: all a scrape keeps.
    wanted: Arc<(Vec<String>, Vec<String>)>,
    expiry: cert::Expiry,
    /// Where each scrape posts the pool's max and in use (the postgres check's connection
    /// budget), true for three intervals.
    facts: Arc<Facts>,
    interval: std::time::Duration,
    /// Our client certificate (mutual TLS), read again each run, its expiry judged.
    client_cert: Option<cert::ClientCertificate>,
}

/// The `gateway` kind: `[gateway]`, critical and local by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = Gateway;
    type Section = Gateway;
    const TABLE: &'static str = "gateway";
    const CRITICAL: bool = true;
    const SCOPE: Scope = Scope::Local;

    fn resolve(keys: Gateway, _at: &str, settings: &CheckSettings) -> Result<Gateway, Invalid> {
        keys.validate(settings.interval)?;
        Ok(keys)
    }

    fn build(
        section: &Gateway,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        build(section, settings, name, cx)
    }
}

/// Builds the `gateway` check.
fn build(
    config: &Gateway,
    settings: &CheckSettings,
    name: &str,
    cx: &BuildContext<'_>,
) -> Result<Scheduled, BuildError> {
    let client_cert = config
        .client_cert_file
        .as_deref()
        .zip(config.client_key_file.as_deref());
    let client = cx.mtls_client(name, config.ca_file.as_deref(), client_cert)?;
    let metrics = GatewayMetrics::register(cx.metrics, name).map_err(|e| BuildError::new(name, e))?;
    let request = |url: &Option<HttpUrl>| url.as_ref().map(|u| ProbeRequest::get(u, []));
    let (pool, traffic) = (Pool::new(config), Traffic::new(config, settings.interval));
    let wanted = Arc::new((
        pool.names().all().chain(traffic.names()).map(str::to_owned).collect(),
        traffic.bucket_names().map(str::to_owned).collect(),
    ));
    let check = GatewayCheck {
        client_cert: cert::ClientCertificate::of(
            &client,
            name,
            &cx.metrics.tls_client_cert_expiry_timestamp_seconds,
            config.cert_warn,
        ),
        client,
        health: request(&config.health_url),
        scrape: request(&config.metrics_url),
        timeout: settings.timeout,
        metrics,
        pool,
        traffic,
        wanted,
        expiry: cert::Expiry::new(name, &cx.metrics.tls_cert_expiry_timestamp_seconds, config.cert_warn),
        facts: Arc::clone(&cx.facts),
        interval: settings.interval,
    };
    Ok(Scheduled::new(name, *settings, check))
}

impl GatewayCheck {
    async fn run(&mut self) -> Outcome {
        let started = std::time::Instant::now();
        // Renewed client certificate files are read before the handshakes that present them.
        let ours = match &self.client_cert {
            Some(client_cert) => client_cert.refresh().await,
            None => Vec::new(),
        };
        let deadline = crate::net::attempt::inner_deadline(self.timeout).saturating_sub(started.elapsed());
        let timeout = self.timeout;
        // The health probe and the scrape run side by side under the run's deadline: a slow
        // health endpoint must not leave the pool figures unread, nor the other way round.
        let client = &self.client;
        let ask = async |request: Option<&ProbeRequest>, limit: usize| match request {
            Some(request) => Some(client.probe(request, deadline, timeout, limit).await),
            None => None,
        };
        let (health, scraped) = tokio::join!(
            ask(self.health.as_ref(), crate::net::http::BODY_LIMIT),
            ask(self.scrape.as_ref(), crate::net::http::SCRAPE_LIMIT)
        );
        let mut report = Report::new();
        // The earliest expiry of the chains either endpoint presented (https), read also when
        // verification failed.
        let not_after = [health.as_ref(), scraped.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|result| match result {
                Ok(response) => response.cert_not_after,
                Err(failure) => failure.cert_not_after,
            })
            .min();
        report.find_all(self.expiry.judge(not_after));
        report.find_all(ours);
        if let Some(client_cert) = &self.client_cert {
            report.detail("client_certificate", client_cert.describe());
        }
        let healthy = health.map(|result| self.judge_health(result, &mut report));
        let scraped = match scraped {
            Some(result) => Some(self.read_scrape(result, &mut report).await),
            None => None,
        };
        // Without a health endpoint the scrape is the health probe.
        let up = healthy.or(scraped).unwrap_or(true);
        self.metrics.up.set(i64::from(up));
        report.into_outcome()
    }

    /// The health probe's answer; whether the gateway is up by it.
    fn judge_health(&self, result: Result<ProbeResponse, ProbeFailure>, report: &mut Report) -> bool {
        let Some(health) = &self.health else { return true };
        let failure = match result {
            Ok(response) => {
                report.observe(STATUS_CODE.of(f64::from(response.status)));
                report.observe(LATENCY.of(response.phases.total.as_secs_f64()));
                if (200..300).contains(&response.status) {
                    return true;
                }
                Finding::fail(
                    FailureKind::HttpStatus,
                    format!("{}: status {}, expected 2xx", health.describe(), response.status),
                )
            }
            Err(failure) => Finding::fail(
                failure.error.kind(),
                format!("{}: {}", health.describe(), failure.error),
            ),
        };
        report.find(failure.with_hint(HEALTH_HINT));
        false
    }

    /// The scrape, parsed and read for the pool and the traffic; whether it worked.
    async fn read_scrape(&mut self, result: Result<ProbeResponse, ProbeFailure>, report: &mut Report) -> bool {
        match self.parse(result).await {
            Ok(exposition) => {
                let now = Instant::now();
                match self.pool.assess(&exposition, now, &self.metrics, report) {
                    Ok((open, max)) => self.facts.post_pool(
                        PoolFact {
                            max,
                            open,
                            from: "the gateway check's scrape of the gateway's pool metrics".to_owned(),
                        },
                        3 * self.interval,
                    ),
                    Err(why) => self.facts.pool_unknown(why),
                }
                self.traffic.assess(&exposition, now, &mut self.metrics, report);
                true
            }
            Err((kind, reason)) => {
                self.facts
                    .pool_unknown(format!("the gateway's metrics could not be read: {reason}"));
                self.metrics.pool_unknown();
                self.metrics.traffic_unknown();
                // With a health endpoint, a missing scrape only leaves the pool unknown.
                let severity = if self.health.is_some() {
                    Status::Warn
                } else {
                    Status::Fail
                };
                report.find(Finding::of(severity, kind, reason).with_hint(HEALTH_HINT));
                false
            }
        }
    }

    /// The scrape's body as an exposition of the wanted metrics. The parse runs on the blocking
    /// pool: it is linear in the body (at most [`crate::net::http::SCRAPE_LIMIT`]) but long enough that
    /// it must not hold up the runtime the other checks and `/livez` share.
    async fn parse(&self, result: Result<ProbeResponse, ProbeFailure>) -> Result<Exposition, (FailureKind, String)> {
        let what = self.scrape.as_ref().map(ProbeRequest::describe).unwrap_or_default();
        let response = result.map_err(|failure| (failure.error.kind(), format!("{what}: {}", failure.error)))?;
        if !(200..300).contains(&response.status) {
            return Err((
                FailureKind::HttpStatus,
                format!("{what}: status {}, expected 2xx", response.status),
            ));
        }
        if response.truncated {
            return Err((
                FailureKind::Protocol,
                format!("{what}: metrics larger than {} bytes", crate::net::http::SCRAPE_LIMIT),
            ));
        }
        let wanted = Arc::clone(&self.wanted);
        let parsed = tokio::task::spawn_blocking(move || {
            let text = std::str::from_utf8(&response.body).map_err(|_| "metrics are not UTF-8".to_owned())?;
            let names: Vec<&str> = wanted.0.iter().map(String::as_str).collect();
            let optional: Vec<&str> = wanted.1.iter().map(String::as_str).collect();
            let keep = Keep {
                names: &names,
                max_samples: MAX_SCRAPE_SAMPLES,
                optional: &optional,
            };
            promtext::parse_only(text, keep).map_err(|e| match e.too_many {
                true => format!("more than {MAX_SCRAPE_SAMPLES} samples of the pool and traffic metrics: not read"),
                false => format!("not Prometheus text: {e}"),
            })
        })
        .await;
        match parsed {
            Ok(parsed) => parsed.map_err(|reason| (FailureKind::Protocol, format!("{what}: {reason}"))),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err((FailureKind::Protocol, format!("{what}: parsing was cancelled: {error}"))),
        }
    }
}

impl Check for GatewayCheck {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(GatewayCheck::run(self))
    }
}
