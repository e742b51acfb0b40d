//! `upstream:<name>`: one request per run to a service the gateway forwards to; its status,
//! its latency by phase, how many addresses its name resolves to, and p50/p95/p99 over the
//! window. Answers the runbook's "503 Service Unavailable" (upstream health, endpoints) and
//! "High Latency" (response times over 2 s).
//!
//! A single timeout, refusal or unexpected status fails that run (the scheduler's
//! `failure_threshold` then decides when the check reports fail); slowness alone is judged on
//! the window's p95, so one slow answer among many fast ones does not page anyone.

pub(crate) mod config;
mod excerpt;
pub(crate) mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use self::config::{AddressMode, ExpectStatus, Upstream, UpstreamUrl, validate_names};
use self::metrics::{PHASES, UpstreamFamilies, UpstreamSeries};
use crate::checks::cert;
use crate::checks::latency::{LatencyWindow, Percentiles};
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled};
use crate::config::{CheckSettings, Invalid, Scope, Shape};
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Finding, Observation, Outcome, Report, Rerun, Status, Unit};
use crate::metrics::Metrics;
use crate::net::attempt::ProbeResponse;
use crate::net::attempt::{Phases, ProbeError, ProbeFailure};
use crate::net::grpc;
use crate::net::http::ProbeRequest;
use crate::net::tls::HttpClient;

const LATENCY_HINT: &str = "the upstream answers slowly: kubectl top pods and kubectl logs for the upstream; \
                            check its database and connection pool (runbook: High Latency)";
const DOWN_HINT: &str = "kubectl get pods and kubectl describe service for the upstream; \
                         kubectl get endpoints <service> (runbook: 503 Service Unavailable)";
const GRPC_UNIMPLEMENTED_HINT: &str = "the server does not register grpc.health.v1.Health: add the standard health \
                                       service (grpcio-health-checking, google.golang.org/grpc/health, tonic-health), \
                                       or probe the port as tcp://";
const GRPC_UNKNOWN_SERVICE_HINT: &str = "grpc_service must be a name the server's health service was given a status \
                                         for (HealthServicer.set(name, SERVING)); \"\" asks for the server as a whole";
const HTTP2_HINT: &str = "the server (or a proxy in front of it) does not offer HTTP/2: for an http(s) upstream set \
                          http_version = \"auto\" or \"1.1\"; a gRPC server must be reached over HTTP/2 end to end";
const NOT_GRPC_HINT: &str = "the port does not answer as a gRPC server: check the URL's port, and that nothing in \
                             between (an HTTP/1.1 proxy, a load balancer) turns gRPC away";
const RATE_LIMIT_HINT: &str = "the upstream asked callers to wait (Retry-After); vigil waits as asked before it asks \
                               again (at most 10 intervals): check the upstream's rate limits and who else calls it";
const CLIENT_CERT_REQUIRED_HINT: &str = "the upstream requires mutual TLS: set client_cert_file and client_key_file to \
                                         a certificate its CA trusts (a cert-manager Certificate's Secret, mounted)";
const CLIENT_CERT_REFUSED_HINT: &str = "the upstream does not trust our client certificate: is it signed by the CA the \
                                        upstream trusts, for a name it accepts, and not expired?";
const TLS_HINT: &str = "the upstream's certificate is not trusted or not valid for its name: \
                        set ca_file to the CA that signed it, or check the certificate's names and dates";

/// One upstream; see the module docs.
pub(crate) struct UpstreamCheck {
    client: HttpClient,
    target: Target,
    /// `addresses = "all"`.
    every_address: bool,
    expect: ExpectStatus,
    latency_warn: Duration,
    latency_fail: Duration,
    window_span: Duration,
    timeout: Duration,
    window: LatencyWindow,
    metrics: Arc<UpstreamSeries>,
    /// The certificate expiry's series (`check="upstream:<name>"`) and its judge.
    expiry: cert::Expiry,
    /// `addresses = "all"` over [`MAX_ADDRESSES`]: where in the sorted addresses the next run's
    /// share starts, so that every address is probed in turn.
    next_share: usize,
    /// Our client certificate (mutual TLS), read again each run, its expiry judged.
    client_cert: Option<cert::ClientCertificate>,
}

/// What every address of one run answered (`addresses = "all"`).
#[derive(Default)]
struct AddressTally {
    good: Option<ProbeResponse>,
    first_failure: Option<ProbeFailure>,
    failing: Vec<String>,
    line: Vec<String>,
    /// The longest `Retry-After` of a 429 or 503 among the answers: no address is asked again
    /// before it (a probe never adds to a rate limit).
    wait: Option<Duration>,
}

/// The most addresses `addresses = "all"` probes in one run.
pub(crate) const MAX_ADDRESSES: usize = 64;

/// What a run asks, by the URL's scheme.
enum Target {
    /// `http(s)://`: one request.
    Http(ProbeRequest),
    /// `tcp://` / `tls://`: a connection, with `tls` a handshake.
    Socket {
        url: String,
        host: String,
        port: u16,
        tls: bool,
    },
    /// `grpc://` / `grpcs://`: one `grpc.health.v1.Health/Check` of `service`.
    Grpc {
        url: String,
        host: String,
        port: u16,
        tls: bool,
        service: String,
    },
}

impl Target {
    fn of(config: &Upstream) -> Target {
        match &config.url {
            UpstreamUrl::Http(url) => Target::Http(
                ProbeRequest::new(config.method.clone(), url, config.headers.iter().cloned())
                    .with_version(config.http_version.unwrap_or_default()),
            ),
            UpstreamUrl::Grpc(target) | UpstreamUrl::Grpcs(target) => Target::Grpc {
                url: target.as_str().to_owned(),
                host: target.host.clone(),
                port: target.port,
                tls: matches!(config.url, UpstreamUrl::Grpcs(_)),
                service: config.grpc_service.clone().unwrap_or_default(),
            },
            UpstreamUrl::Tcp(target) | UpstreamUrl::Tls(target) => Target::Socket {
                url: target.as_str().to_owned(),
                host: target.host.clone(),
                port: target.port,
                tls: matches!(config.url, UpstreamUrl::Tls(_)),
            },
        }
    }

    /// The host and port to resolve.
    fn host_port(&self) -> (&str, u16) {
        match self {
            Target::Http(request) => (request.host(), request.port()),
            Target::Socket { host, port, .. } | Target::Grpc { host, port, .. } => (host, *port),
        }
    }

    /// `GET http://…` or `tcp://…`: what reasons start with.
    fn describe(&self) -> String {
        match self {
            Target::Http(request) => request.describe(),
            Target::Socket { url, .. } | Target::Grpc { url, .. } => url.clone(),
        }
    }

    /// Why an answer that came is not up: `status 503`, `serving status NOT_SERVING`, …
    fn refusal(&self, response: &ProbeResponse) -> String {
        match (self, &response.grpc) {
            (Target::Grpc { service, .. }, Some(answer)) => answer.reason(service).unwrap_or_default(),
            _ => format!("status {}", response.status),
        }
    }
}

/// The `upstream` kind: `[[upstream]]`, one check `upstream:<name>` per entry; not critical,
/// shared by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = Upstream;
    type Section = Upstream;
    const TABLE: &'static str = "upstream";
    const SHAPE: Shape = Shape::List;
    const CRITICAL: bool = false;
    const SCOPE: Scope = Scope::Shared;

    fn name(section: &Upstream) -> String {
        format!("upstream:{}", section.name)
    }

    fn resolve(keys: Upstream, at: &str, settings: &CheckSettings) -> Result<Upstream, Invalid> {
        keys.validate(at, settings.interval)?;
        Ok(keys)
    }

    fn validate_all(sections: &[&Upstream]) -> Result<(), Invalid> {
        validate_names(sections)
    }

    /// Every upstream without a `ca_file` or a client certificate shares the one client.
    fn build(
        section: &Upstream,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        let client_cert = section
            .client_cert_file
            .as_deref()
            .zip(section.client_key_file.as_deref());
        let client = cx.mtls_client(name, section.ca_file.as_deref(), client_cert)?;
        let check = UpstreamCheck::new(section, settings, name, client, cx.metrics);
        Ok(Scheduled::new(name, *settings, check))
    }
}

impl UpstreamCheck {
    pub(crate) fn new(
        config: &Upstream,
        settings: &CheckSettings,
        name: &str,
        client: HttpClient,
        metrics: &Metrics,
    ) -> UpstreamCheck {
        let target = Target::of(config);
        let series = metrics.family::<UpstreamFamilies>().upstream(&config.name);
        if matches!(target, Target::Grpc { .. }) {
            // Exported from the start, all 0 until the first answer.
            series.update(|figures| figures.grpc_serving_status = Some([false; 4]));
        }
        UpstreamCheck {
            target,
            every_address: config.addresses == AddressMode::All,
            expiry: cert::Expiry::new(name, &metrics.tls_cert_expiry_timestamp_seconds, config.cert_warn),
            next_share: 0,
            client_cert: cert::ClientCertificate::of(
                &client,
                name,
                &metrics.tls_client_cert_expiry_timestamp_seconds,
                config.cert_warn,
            ),
            client,
            expect: config.expect_status.clone(),
            latency_warn: config.latency_warn,
            latency_fail: config.latency_fail,
            window_span: config.window,
            timeout: settings.timeout,
            window: LatencyWindow::new(config.window, settings.interval),
            metrics: series,
        }
    }

    /// Exports the expiry of the chain the server presented and judges it.
    fn certificate(&self, not_after: Option<SystemTime>) -> Option<Finding> {
        self.expiry.judge(not_after)
    }

    async fn run_once(&mut self) -> Outcome {
        let started = std::time::Instant::now();
        // Renewed client certificate files are read before the handshake that presents them.
        let ours = match &self.client_cert {
            Some(client_cert) => client_cert.refresh().await,
            None => Vec::new(),
        };
        let deadline = crate::net::attempt::inner_deadline(self.timeout).saturating_sub(started.elapsed());
        let mut report = if self.every_address {
            self.run_every_address(deadline).await
        } else {
            let result = self.probe(None, deadline).await;
            let now = Instant::now();
            match result {
                Ok(response) => self.answered(response, now),
                Err(failure) => self.failed(failure, now),
            }
        };
        report.find_all(ours);
        if let Some(client_cert) = &self.client_cert {
            report.detail("client_certificate", client_cert.describe());
        }
        report.into_outcome()
    }

    /// One probe, of the name (`at` none) or of one of its addresses.
    async fn probe(&self, at: Option<SocketAddr>, deadline: Duration) -> Result<ProbeResponse, ProbeFailure> {
        match &self.target {
            Target::Http(request) => {
                self.client
                    .probe_at(request, at, deadline, self.timeout, crate::net::http::BODY_LIMIT)
                    .await
            }
            Target::Socket { host, port, tls, .. } => {
                self.client
                    .connect_only((host, *port), at, *tls, deadline, self.timeout)
                    .await
            }
            Target::Grpc {
                host,
                port,
                tls,
                service,
                ..
            } => {
                self.client
                    .grpc_health((host, *port), at, *tls, service, deadline, self.timeout)
                    .await
            }
        }
    }

    /// `addresses = "all"`: the name resolved once, every address (at most [`MAX_ADDRESSES`]
    /// a run, the rest in turn over the next runs) probed side by side within the run; pass when
    /// all pass, warn naming the failing ones when some fail, fail when all fail. The figures
    /// are those of the slowest good answer; the count is of every address the name resolved to.
    async fn run_every_address(&mut self, deadline: Duration) -> Report {
        let started = std::time::Instant::now();
        let (host, port) = self.target.host_port();
        let resolved = tokio::time::timeout(deadline, crate::net::connect::resolve(host, port)).await;
        let mut resolved: Vec<SocketAddr> = match resolved {
            Ok(Ok(found)) if !found.is_empty() => found,
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error,
                    Err(_) => ProbeError::Timeout(fmt::duration(self.timeout)),
                    Ok(Ok(_)) => ProbeError::NoAddresses { host: host.to_owned() },
                };
                let failure = ProbeFailure {
                    error,
                    phases: Phases {
                        total: started.elapsed(),
                        ..Phases::default()
                    },
                    addresses: Some(0),
                    cert_not_after: None,
                };
                return self.failed(failure, Instant::now());
            }
        };
        let (addresses, not_probed) = self.share(&mut resolved);
        let left = deadline.saturating_sub(started.elapsed());
        let results = futures_util::future::join_all(addresses.iter().map(|a| self.probe(Some(*a), left))).await;
        let count = resolved.len();
        let tally = self.tally(&addresses, results);
        let now = Instant::now();
        let wait = tally.wait;
        let mut report = match (tally.good, tally.first_failure) {
            (Some(mut response), _) => {
                response.addresses = count;
                self.answered(response, now)
            }
            // No address answered as expected: the per-address finding below says why, once,
            // rather than after the first failure's own reason.
            (None, Some(mut failure)) => {
                failure.addresses = Some(count);
                let (mut report, _, expiry) = self.failed_parts(failure, now);
                report.find_all(expiry);
                report
            }
            (None, None) => Report::new(),
        };
        self.metrics.update(|figures| figures.addresses = count);
        if let Some(wait) = wait {
            report.rerun(Rerun::NotBefore(wait));
        }
        report.find_all(self.failing_addresses(&tally.failing, addresses.len(), &not_probed, count));
        report.observe(Observation::text("address_results", tally.line.join(", ")));
        if !not_probed.is_empty() {
            report.observe(Observation::number(
                "addresses_not_probed",
                not_probed.len() as f64,
                Unit::Count,
            ));
            let listed: Vec<String> = not_probed.iter().map(ToString::to_string).collect();
            report.detail("addresses_not_probed", serde_json::json!(listed));
        }
        report
    }

    /// This run's share of `resolved` (sorted in place): at most [`MAX_ADDRESSES`], starting
    /// where the last run's ended, and the addresses left for later runs.
    fn share(&mut self, resolved: &mut [SocketAddr]) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        if resolved.len() <= MAX_ADDRESSES {
            return (resolved.to_vec(), Vec::new());
        }
        resolved.sort();
        let start = self.next_share % resolved.len();
        self.next_share = start + MAX_ADDRESSES;
        resolved.rotate_left(start);
        let (probed, rest) = resolved.split_at(MAX_ADDRESSES);
        let shares = (probed.to_vec(), rest.to_vec());
        resolved.rotate_right(start);
        shares
    }

    /// The answers of every address: the slowest good one, the first failure, the failing
    /// addresses with why, and one `address result latency` entry each for `/diag`.
    fn tally(&self, addresses: &[SocketAddr], results: Vec<Result<ProbeResponse, ProbeFailure>>) -> AddressTally {
        let mut tally = AddressTally::default();
        for (addr, result) in addresses.iter().zip(results) {
            match result {
                Ok(response) if self.accepts(&response) => {
                    tally
                        .line
                        .push(format!("{addr} ok {}", fmt::seconds(response.phases.total)));
                    if tally
                        .good
                        .as_ref()
                        .is_none_or(|g| g.phases.total < response.phases.total)
                    {
                        tally.good = Some(response);
                    }
                }
                Ok(response) => {
                    if let (429 | 503, Some(retry_after)) = (response.status, response.retry_after) {
                        let wait = retry_after.wait(SystemTime::now());
                        tally.wait = Some(tally.wait.map_or(wait, |longest| longest.max(wait)));
                    }
                    let refusal = self.target.refusal(&response);
                    tally.failing.push(format!("{addr} ({refusal})"));
                    tally.line.push(format!("{addr} {refusal}"));
                }
                Err(failure) => {
                    tally.failing.push(format!("{addr} ({})", failure.error));
                    tally.line.push(format!("{addr} {}", failure.error));
                    tally.first_failure.get_or_insert(failure);
                }
            }
        }
        tally
    }

    /// The failing addresses among the `probed` ones, as one finding: a warn when some fail,
    /// a fail when all do. Over the cap it says how many of the `resolved` were not probed.
    fn failing_addresses(
        &self,
        failing: &[String],
        probed: usize,
        not_probed: &[SocketAddr],
        resolved: usize,
    ) -> Option<Finding> {
        if failing.is_empty() {
            return None;
        }
        let share = if not_probed.is_empty() {
            format!("{} of {probed} addresses fail: {}", failing.len(), failing.join(", "))
        } else {
            format!(
                "{} of {probed} probed addresses fail ({resolved} resolved, {} not probed this run): {}",
                failing.len(),
                not_probed.len(),
                failing.join(", ")
            )
        };
        let status = if failing.len() == probed {
            Status::Fail
        } else {
            Status::Warn
        };
        let reason = format!("{}: {share}", self.target.describe());
        Some(Finding::of(status, FailureKind::Refused, reason).with_hint(DOWN_HINT))
    }

    /// Whether an answer counts as up: any connection for tcp/tls, an expected status for
    /// HTTP, `SERVING` for gRPC.
    fn accepts(&self, response: &ProbeResponse) -> bool {
        match self.target {
            Target::Http(_) => self.expect.accepts(response.status),
            Target::Socket { .. } => true,
            Target::Grpc { .. } => response.grpc.as_ref().is_some_and(grpc::HealthAnswer::is_serving),
        }
    }

    /// The hint for an answer that is not up.
    fn refusal_hint(&self, response: &ProbeResponse) -> &'static str {
        match &response.grpc {
            Some(grpc::HealthAnswer::Error { code, .. }) if *code == grpc::Code::UNIMPLEMENTED => {
                GRPC_UNIMPLEMENTED_HINT
            }
            Some(grpc::HealthAnswer::Error { code, .. }) if *code == grpc::Code::NOT_FOUND => GRPC_UNKNOWN_SERVICE_HINT,
            Some(grpc::HealthAnswer::Status(grpc::ServingStatus::ServiceUnknown)) => GRPC_UNKNOWN_SERVICE_HINT,
            _ => DOWN_HINT,
        }
    }

    fn answered(&mut self, response: ProbeResponse, now: Instant) -> Report {
        // A tcp:// or tls:// upstream that connected (and shook hands) is up; it has no status.
        let http = matches!(self.target, Target::Http(_));
        let expected = self.accepts(&response);
        let serving = serving_flags(response.grpc.as_ref());
        self.metrics.update(|figures| {
            figures.up = expected;
            figures.status_code = response.status;
            figures.addresses = response.addresses;
            if figures.grpc_serving_status.is_some() {
                figures.grpc_serving_status = Some(serving);
            }
            figures.phases = phase_seconds(&response.phases);
            figures.request_duration.observe(response.phases.total.as_secs_f64());
        });
        self.window.record(now, response.phases.total);
        let percentiles = self.window.percentiles(now);

        let mut observations = Vec::new();
        if http {
            observations.push(Observation::number(
                "status_code",
                f64::from(response.status),
                Unit::None,
            ));
        }
        if let Some(version) = response.version.filter(|_| http) {
            observations.push(Observation::text("protocol", protocol_name(version)));
        }
        if let Some(answer) = &response.grpc {
            observations.push(Observation::text("grpc_status", answer_name(answer)));
        }
        observations.extend(phase_observations(&response.phases, Some(response.addresses)));
        observations.extend(percentile_observations(percentiles.as_ref()));
        let details = self.details(
            &response.phases,
            Some(response.addresses),
            percentiles.as_ref(),
            Some(&response),
        );

        let mut report = Report::new();
        report.observe_all(observations);
        report.details(details);
        report.find_all(self.certificate(response.cert_not_after));
        if !expected {
            let (reason, wait) = match self.target {
                Target::Http(_) => self.unexpected_status(&response),
                _ => (
                    format!("{}: {}", self.target.describe(), self.target.refusal(&response)),
                    None,
                ),
            };
            let hint = match wait {
                Some(wait) => {
                    report.rerun(Rerun::NotBefore(wait));
                    RATE_LIMIT_HINT
                }
                None => self.refusal_hint(&response),
            };
            report.find(Finding::fail(FailureKind::HttpStatus, reason).with_hint(hint));
        } else {
            let slow = percentiles.and_then(|p| {
                let (fail, warn) = (self.latency_fail, self.latency_warn);
                let (status, limit) = match p.p95 {
                    p95 if p95 > fail => (Status::Fail, fail),
                    p95 if p95 > warn => (Status::Warn, warn),
                    _ => return None,
                };
                let reason = format!(
                    "p95 {} over {} exceeds {}",
                    fmt::seconds(p.p95),
                    fmt::duration(self.window_span),
                    fmt::duration(limit)
                );
                Some(Finding::of(status, FailureKind::Threshold, reason).with_hint(LATENCY_HINT))
            });
            report.find_all(slow);
        }
        report
    }

    /// The reason for an HTTP answer whose status is not expected: the status, or for a 429
    /// or 503 with `Retry-After` the wait asked for, then what the upstream said (the start of
    /// its body, one printable line). With the wait, for the next run to keep.
    fn unexpected_status(&self, response: &ProbeResponse) -> (String, Option<Duration>) {
        let now = SystemTime::now();
        let (status, wait) = match (response.status, response.retry_after) {
            (status @ (429 | 503), Some(retry_after)) => {
                let what = if status == 429 { "rate limited" } else { "unavailable" };
                let status = format!("{what} ({status}), Retry-After {}s", retry_after.seconds(now));
                (status, Some(retry_after.wait(now)))
            }
            (status, _) => (
                format!("status {status}, expected {}", describe_expect(&self.expect)),
                None,
            ),
        };
        let reason = match excerpt::excerpt(&response.body) {
            said if said.is_empty() => format!("{}: {status}", self.target.describe()),
            said => format!("{}: {status}: {said}", self.target.describe()),
        };
        (reason, wait)
    }

    fn failed(&mut self, failure: ProbeFailure, now: Instant) -> Report {
        let (mut report, found, expiry) = self.failed_parts(failure, now);
        report.find(found);
        report.find_all(expiry);
        report
    }

    /// A failed probe's figures (exported, observed, in the details), what it found (the
    /// error, or an expired certificate) and the certificate's expiry judged.
    fn failed_parts(&mut self, failure: ProbeFailure, now: Instant) -> (Report, Finding, Option<Finding>) {
        // A timeout is the slowest answer there is: it belongs in the percentiles. Other
        // failures have no latency to speak of.
        let timed_out = matches!(failure.error, ProbeError::Timeout(_));
        self.metrics.update(|figures| {
            figures.up = false;
            figures.status_code = 0;
            if figures.grpc_serving_status.is_some() {
                figures.grpc_serving_status = Some([false; 4]);
            }
            figures.addresses = failure.addresses.unwrap_or(0);
            figures.phases = phase_seconds(&failure.phases);
            if timed_out {
                figures.request_duration.observe(failure.phases.total.as_secs_f64());
            }
        });
        if timed_out {
            self.window.record(now, failure.phases.total);
        }
        let percentiles = self.window.percentiles(now);
        let mut observations = phase_observations(&failure.phases, failure.addresses);
        observations.extend(percentile_observations(percentiles.as_ref()));
        let details = self.details(&failure.phases, failure.addresses, percentiles.as_ref(), None);
        let hint = match &failure.error {
            ProbeError::NoAddresses { host } | ProbeError::Dns { host, .. } => format!(
                "the name has no endpoints: {} (are the upstream's pods ready?)",
                endpoints_command(host)
            ),
            ProbeError::Tls(_) | ProbeError::ServerName(_) => TLS_HINT.to_owned(),
            ProbeError::ClientCertificateRequired(_) => CLIENT_CERT_REQUIRED_HINT.to_owned(),
            ProbeError::ClientCertificateRefused(_) => CLIENT_CERT_REFUSED_HINT.to_owned(),
            ProbeError::NotHttp2 { .. } => HTTP2_HINT.to_owned(),
            ProbeError::Grpc(_) => NOT_GRPC_HINT.to_owned(),
            _ => DOWN_HINT.to_owned(),
        };
        let reason = match &failure.error {
            ProbeError::NoAddresses { host } => format!("{}: {host} resolves to no addresses", self.target.describe()),
            error => format!("{}: {error}", self.target.describe()),
        };
        // The chain's expiry is read before verification decides: an expired certificate says
        // so ("certificate expired 3d ago") rather than only "handshake failed".
        let expiry = self.certificate(failure.cert_not_after);
        let mut report = Report::new();
        report.observe_all(observations);
        report.details(details);
        if let Some(not_after) = failure.cert_not_after {
            // Read before verification decided: shown also when the handshake failed.
            report.detail("cert_not_after", serde_json::json!(fmt::timestamp_seconds(not_after)));
        }
        match expiry {
            Some(expired) if expired.status == Status::Fail => {
                let found = Finding {
                    reason: format!("{}: {}", self.target.describe(), expired.reason),
                    ..expired
                };
                (report, found, None)
            }
            expiry => (
                report,
                Finding::fail(failure.error.kind(), reason).with_hint(hint),
                expiry,
            ),
        }
    }

    fn details(
        &self,
        phases: &Phases,
        addresses: Option<usize>,
        percentiles: Option<&Percentiles>,
        response: Option<&ProbeResponse>,
    ) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let mut phases_ms: serde_json::Map<String, serde_json::Value> = phase_list(phases)
            .into_iter()
            .map(|(name, d)| (name.to_owned(), json!(ms(d))))
            .collect();
        phases_ms.insert("total".to_owned(), json!(ms(Some(phases.total))));
        json!({
            "request": self.target.describe(),
            "phases_ms": phases_ms,
            "addresses": addresses,
            "address": response.and_then(|r| r.answered).map(|a| a.to_string()),
            "window": fmt::duration(self.window_span),
            "percentiles_ms": percentiles.map(|p| json!({
                "p50": ms(Some(p.p50)),
                "p95": ms(Some(p.p95)),
                "p99": ms(Some(p.p99)),
                "samples": p.count,
            })),
            "body_truncated": response.map(|r| r.truncated),
            "protocol": response.and_then(|r| r.version).map(protocol_name),
            "grpc_service": match &self.target {
                Target::Grpc { service, .. } => Some(service.as_str()),
                _ => None,
            },
            "grpc_status": response.and_then(|r| r.grpc.as_ref()).map(answer_name),
            "cert_not_after": response.and_then(|r| r.cert_not_after).map(fmt::timestamp_seconds),
            "latency_warn": fmt::duration(self.latency_warn),
            "latency_fail": fmt::duration(self.latency_fail),
        })
    }
}

impl Check for UpstreamCheck {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(self.run_once())
    }
}

/// The phases, each described once by its name: the `phase` label of
/// `vigil_upstream_phase_duration_seconds` (in [`PHASES`] order), its observation and
/// its key under `phases_ms` in `/diag`. `None`: the phase did not happen.
fn phase_list(phases: &Phases) -> [(&'static str, Option<Duration>); 4] {
    let [dns, connect, tls, first_byte] = PHASES;
    [
        (dns, phases.dns),
        (connect, phases.connect),
        (tls, phases.tls),
        (first_byte, phases.first_byte),
    ]
}

/// The phases as the metric shows them: 0 for a phase that did not happen.
fn phase_seconds(phases: &Phases) -> [f64; 4] {
    phase_list(phases).map(|(_, d)| d.map_or(0.0, |d| d.as_secs_f64()))
}

fn phase_observations(phases: &Phases, addresses: Option<usize>) -> Vec<Observation> {
    let mut out = vec![Observation::number(
        "latency",
        phases.total.as_secs_f64(),
        Unit::Seconds,
    )];
    for (name, value) in phase_list(phases) {
        if let Some(value) = value {
            out.push(Observation::number(name, value.as_secs_f64(), Unit::Seconds));
        }
    }
    if let Some(addresses) = addresses {
        #[allow(clippy::cast_precision_loss)]
        out.push(Observation::number("addresses", addresses as f64, Unit::Count));
    }
    out
}

fn percentile_observations(percentiles: Option<&Percentiles>) -> Vec<Observation> {
    percentiles.map_or_else(Vec::new, |p| {
        vec![
            Observation::number("p50", p.p50.as_secs_f64(), Unit::Seconds),
            Observation::number("p95", p.p95.as_secs_f64(), Unit::Seconds),
            Observation::number("p99", p.p99.as_secs_f64(), Unit::Seconds),
        ]
    })
}

/// `HTTP/1.1` or `HTTP/2`: the protocol an answer came in, as `/diag` shows it.
fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// `SERVING`, `NOT_SERVING`, … or the gRPC error's code name (`UNIMPLEMENTED`).
fn answer_name(answer: &grpc::HealthAnswer) -> String {
    match answer {
        grpc::HealthAnswer::Status(status) => status.name(),
        grpc::HealthAnswer::Error { code, .. } => code.name(),
    }
}

/// `vigil_upstream_grpc_serving_status` by its `status` labels: the last serving
/// status set, none for a gRPC error or no answer.
fn serving_flags(answer: Option<&grpc::HealthAnswer>) -> [bool; 4] {
    let mut flags = [false; 4];
    if let Some(grpc::HealthAnswer::Status(status)) = answer
        && let Some(index) = status.index()
    {
        flags[index] = true;
    }
    flags
}

/// `kubectl get endpoints orders -n shop` for `orders.shop.svc.cluster.local`; the first
/// label alone for other names.
fn endpoints_command(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [service, namespace, "svc", ..] => format!("kubectl get endpoints {service} -n {namespace}"),
        [service, ..] => format!("kubectl get endpoints {service}"),
        [] => "kubectl get endpoints".to_owned(),
    }
}

fn describe_expect(expect: &ExpectStatus) -> String {
    match expect {
        ExpectStatus::Class(class) => format!("{class}xx"),
        ExpectStatus::List(list) => list.iter().map(u16::to_string).collect::<Vec<_>>().join(" or "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_hint_names_service_and_namespace() {
        assert_eq!(
            endpoints_command("orders.shop.svc.cluster.local"),
            "kubectl get endpoints orders -n shop"
        );
        assert_eq!(endpoints_command("ghost.invalid"), "kubectl get endpoints ghost");
    }
}
