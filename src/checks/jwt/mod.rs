//! The `jwt` check: the runbook's "Authentication Failures" (401s after a secret update, a
//! gateway that was not restarted, an auth service that is down) measured before the page.
//!
//! Each run, with a shared secret (HS256/384/512):
//! 1. reads the secret again ([`secret`]) and judges it: present, long enough, not a
//!    placeholder, no stray trailing newline;
//! 2. notices a rotation by fingerprint and keeps the previous secret, in memory only;
//! 3. signs a short-lived probe token and verifies it ([`token`]);
//! 4. with `validate_url`, asks the gateway to accept it and to refuse a forged one
//!    ([`gateway`]).
//!
//! With `jwks_url` (RS256/ES256, the OAuth case) it also fetches the auth service's key set
//! ([`jwks`]), concurrently with the gateway probe.
//!
//! The secret and every token are `Secret`s: no reason, observation, detail, metric or log
//! line built here contains them (the tests grep every output for the secret).

pub(crate) mod config;
pub mod jwks;
pub(crate) mod metrics;
mod secret;
mod token;
mod validate;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value as Json, json};

use self::metrics::JwtMetrics;
use crate::checks::cert;
use crate::checks::jwt::config::{Jwt, JwtAlgorithm};
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled};
use crate::config::{CheckSettings, Invalid, Scope};
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Figure, Finding, Observation, Outcome, Report, Status, Unit};
use crate::core::secret::Secret;
use crate::core::url::HttpUrl;
use crate::net::attempt::ProbeError;
use crate::net::attempt::ProbeResponse;
use crate::net::http::{ProbeRequest, RequestError};
use crate::net::tls::HttpClient;

use self::jwks::{Jwks, JwksReport};
use self::secret::Source;
use self::token::Probe;
use self::validate::{Tokens, ValidateProbe, ValidateReport};

const READ_HINT: &str = "kubectl get secret jwt-secret -n api-gateway; check the pod's volume mount or env \
                         (kubectl describe pod <pod> -n api-gateway)";

const SECRET_LENGTH: Figure = Figure::new("secret_length", Unit::Bytes);
const ROTATIONS: Figure = Figure::new("rotations", Unit::Count);
const ACCEPTS_VALID: Figure = Figure::new("gateway_accepts_valid_token", Unit::Flag);
const REJECTS_FORGED: Figure = Figure::new("gateway_rejects_forged_token", Unit::Flag);
const JWKS_KEYS: Figure = Figure::new("jwks_keys", Unit::Count);
const JWKS_ROTATIONS: Figure = Figure::new("jwks_rotations", Unit::Count);
const JWKS_AGE: Figure = Figure::new("jwks_age", Unit::Seconds);
const CLOCK_SKEW: Figure = Figure::new("clock_skew", Unit::Seconds);

/// A secret as loaded, with its name.
struct Loaded {
    secret: Secret<Vec<u8>>,
    /// What tells versions apart (a weak secret's fingerprint is withheld, so not that).
    digest: [u8; 32],
    fingerprint: String,
}

/// What the check remembers about the secret across runs.
#[derive(Default)]
struct Rotation {
    current: Option<Loaded>,
    /// The secret before the last rotation: kept (in memory only) to tell "the gateway still
    /// runs the old secret" from "the gateway runs some other secret".
    previous: Option<Loaded>,
    count: u64,
    last: Option<SystemTime>,
}

/// The secret part of a run, for the outcome.
struct SecretReport {
    findings: Vec<Finding>,
    length: Option<usize>,
    valid: bool,
}

/// Watches the JWT secret, the gateway's verification of it and the auth service's JWKS.
pub(crate) struct JwtCheck {
    algorithm: JwtAlgorithm,
    source: Option<Source>,
    issuer: Option<String>,
    audience: Option<String>,
    gateway: Option<ValidateProbe>,
    jwks: Option<Jwks>,
    /// What the network probes may spend: most of the run's timeout, so that a hanging peer
    /// reads as "GET <url>: timed out after …" from this check rather than the scheduler's bare
    /// timeout.
    budget: Duration,
    rotation: Rotation,
    metrics: JwtMetrics,
    /// The earliest certificate expiry the run's https requests were shown, and its judge.
    seen: Arc<cert::Earliest>,
    expiry: cert::Expiry,
    /// Our client certificate (mutual TLS), read again each run, its expiry judged.
    client_cert: Option<cert::ClientCertificate>,
}

/// The `jwt` kind: `[jwt]`, critical and shared by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = Jwt;
    type Section = Jwt;
    const TABLE: &'static str = "jwt";
    const CRITICAL: bool = true;
    const SCOPE: Scope = Scope::Shared;

    fn resolve(keys: Jwt, _at: &str, _settings: &CheckSettings) -> Result<Jwt, Invalid> {
        keys.validate()?;
        Ok(keys)
    }

    fn build(
        section: &Jwt,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        Ok(Scheduled::new(
            name,
            *settings,
            JwtCheck::new(section, settings, name, cx)?,
        ))
    }
}

impl JwtCheck {
    /// Builds the check; no I/O (the first run reads the secret).
    pub(crate) fn new(
        config: &Jwt,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<JwtCheck, BuildError> {
        let error = |message: String| BuildError::new("jwt", message);
        let shared = matches!(
            config.algorithm,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        );
        let source = match (&config.secret_file, &config.secret_env) {
            (Some(path), _) if shared => Some(Source::File(path.clone())),
            (None, Some(name)) if shared => Some(Source::Env(name.clone())),
            _ => None,
        };
        // One client (one rustls configuration) for both probes, built only when there is a URL
        // to probe: a check that only watches the secret parses no roots.
        let seen = Arc::new(cert::Earliest::default());
        let client = match (&config.validate_url, &config.jwks_url) {
            (None, None) => None,
            _ => {
                let client_cert = config
                    .client_cert_file
                    .as_deref()
                    .zip(config.client_key_file.as_deref());
                Some(cx.mtls_client("jwt", config.ca_file.as_deref(), client_cert)?)
            }
        };
        let client_cert = client.as_ref().and_then(|client| {
            cert::ClientCertificate::of(
                client,
                "jwt",
                &cx.metrics.tls_client_cert_expiry_timestamp_seconds,
                config.cert_warn,
            )
        });
        // The gateway probe signs with the shared secret; with RS256/ES256 vigil holds no
        // private key, so there is nothing it could sign (the README says so).
        let gateway = match (&config.validate_url, &client) {
            (Some(url), Some(client)) if source.is_some() => Some(
                ValidateProbe::new(url.clone(), client.clone(), Arc::clone(&seen))
                    .map_err(|e| error(format!("validate_url: {e}")))?,
            ),
            _ => None,
        };
        let jwks = match (&config.jwks_url, client) {
            (Some(url), Some(client)) => Some(
                Jwks::new(
                    url.clone(),
                    config.algorithm,
                    settings.interval,
                    client,
                    Arc::clone(&seen),
                )
                .map_err(|e| error(format!("jwks_url: {e}")))?,
            ),
            _ => None,
        };
        let metrics = JwtMetrics::register(cx.metrics, name, source.is_some(), gateway.is_some(), jwks.is_some())
            .map_err(|e| error(e.to_string()))?;
        Ok(JwtCheck {
            algorithm: config.algorithm,
            source,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            gateway,
            jwks,
            budget: settings.timeout.mul_f64(0.9),
            rotation: Rotation::default(),
            metrics,
            seen,
            expiry: cert::Expiry::new("jwt", &cx.metrics.tls_cert_expiry_timestamp_seconds, config.cert_warn),
            client_cert,
        })
    }

    async fn run(&mut self) -> Outcome {
        let mut report = Report::new();
        report.detail("algorithm", json!(format!("{:?}", self.algorithm)));
        // Renewed client certificate files are read before the handshakes that present them.
        if let Some(client_cert) = &self.client_cert {
            report.find_all(client_cert.refresh().await);
            report.detail("client_certificate", client_cert.describe());
        }
        // The secret, its self-test and the tokens for the gateway: all synchronous, so a cut
        // at the timeout never leaves the rotation state half-updated.
        let tokens = match self.source.clone() {
            Some(source) => self.report_secret(&source, &mut report),
            None => None,
        };
        let budget = self.budget;
        let gateway_run = async {
            match (&self.gateway, &tokens) {
                (Some(gateway), Some(tokens)) => Some(gateway.probe(tokens, budget).await),
                _ => None,
            }
        };
        let jwks_run = async {
            match self.jwks.as_mut() {
                Some(jwks) => Some(jwks.run(budget).await),
                None => None,
            }
        };
        let (gateway_report, jwks_report) = tokio::join!(gateway_run, jwks_run);
        report.find_all(self.expiry.judge(self.seen.take()));
        match gateway_report {
            Some(gateway) => self.report_gateway(gateway, &mut report),
            None if self.gateway.is_some() => {
                report.detail("gateway", json!("not probed: no usable secret this run"));
            }
            None => {}
        }
        if let Some(jwks) = jwks_report {
            self.report_jwks(jwks, &mut report);
        }
        let listed: Vec<Json> = report
            .findings()
            .iter()
            .map(|f| json!({"status": f.status, "reason": f.reason}))
            .collect();
        report.detail("findings", Json::Array(listed));
        report.into_outcome()
    }

    /// The secret's part of a run; the gateway tokens when the secret is usable.
    fn report_secret(&mut self, source: &Source, report: &mut Report) -> Option<Tokens> {
        let (secret, tokens) = self.secret_run(source);
        for finding in secret.findings {
            report.find(finding);
        }
        report.detail("secret_source", json!(source.describe()));
        if let Some(length) = secret.length {
            report.observe(SECRET_LENGTH.of(length as f64));
        }
        if let Some(metrics) = &self.metrics.secret {
            metrics.valid.set(i64::from(secret.valid));
        }
        report.detail("secret_valid", json!(secret.valid));
        if let Some(current) = &self.rotation.current {
            report.observe(Observation::text("fingerprint", current.fingerprint.clone()));
            report.detail("fingerprint", json!(current.fingerprint));
        }
        if let Some(previous) = &self.rotation.previous {
            report.detail("previous_fingerprint", json!(previous.fingerprint));
        }
        report.observe(ROTATIONS.of(self.rotation.count as f64));
        report.detail("rotations", json!(self.rotation.count));
        if let Some(last) = self.rotation.last {
            let at = fmt::timestamp_seconds(last);
            report.observe(Observation::text("last_rotation", at.clone()));
            report.detail("last_rotation", json!(at));
        }
        tokens
    }

    /// The end-to-end probe's part: each verdict is a metric and an observation.
    fn report_gateway(&self, gateway: ValidateReport, report: &mut Report) {
        for finding in gateway.findings {
            report.find(finding);
        }
        let verdicts = [
            (
                ACCEPTS_VALID,
                gateway.accepts_valid,
                self.metrics.gateway.as_ref().map(|m| &m.accepts_valid_token),
            ),
            (
                REJECTS_FORGED,
                gateway.rejects_forged,
                self.metrics.gateway.as_ref().map(|m| &m.rejects_forged_token),
            ),
        ];
        for (figure, verdict, gauge) in verdicts {
            let Some(verdict) = verdict else { continue };
            if let Some(gauge) = gauge {
                gauge.set(i64::from(verdict));
            }
            report.observe(figure.of(f64::from(u8::from(verdict))));
        }
        report.detail("gateway", gateway.details);
    }

    /// The JWKS part: key count, age of the set, clock skew.
    fn report_jwks(&self, jwks: JwksReport, report: &mut Report) {
        for finding in jwks.findings {
            report.find(finding);
        }
        if let (Some(_), Some(counter)) = (&jwks.rotation, &self.metrics.jwks_rotations_total) {
            counter.inc();
        }
        if let Some(counter) = &self.metrics.jwks_rotations_total {
            report.observe(JWKS_ROTATIONS.of(counter.get() as f64));
        }
        if let Some(keys) = jwks.keys {
            if let Some(gauge) = &self.metrics.jwks_keys {
                gauge.set(i64::try_from(keys).unwrap_or(i64::MAX));
            }
            report.observe(JWKS_KEYS.of(keys as f64));
        }
        if let Some(age) = jwks.age {
            report.observe(JWKS_AGE.of(age.as_secs_f64()));
        }
        if let Some(skew) = jwks.skew_secs {
            report.observe(CLOCK_SKEW.of(skew));
        }
        report.detail("jwks", jwks.details);
    }

    /// Reads and judges the secret, follows rotations, self-tests, and signs the gateway
    /// tokens (valid, forged, previous) when the secret is usable.
    fn secret_run(&mut self, source: &Source) -> (SecretReport, Option<Tokens>) {
        let secret = match source.read() {
            Ok(secret) => secret,
            Err(error) => {
                let report = SecretReport {
                    findings: vec![Finding::fail(FailureKind::Io, error.to_string()).with_hint(READ_HINT)],
                    length: None,
                    valid: false,
                };
                return (report, None);
            }
        };
        let length = secret.expose().len();
        let mut findings = secret::assess(&secret, self.algorithm);
        // An empty file (a mount being swapped, a mistake) is no version of the secret: following
        // it would count two rotations for A -> "" -> A and lose the previous secret.
        if length > 0 {
            self.follow(secret);
        }
        let current = match &self.rotation.current {
            Some(current) if length > 0 => current,
            _ => {
                let report = SecretReport {
                    findings,
                    length: Some(length),
                    valid: false,
                };
                return (report, None);
            }
        };

        let signed = Probe::new(self.algorithm, self.issuer.as_deref(), self.audience.as_deref()).and_then(|probe| {
            let valid = probe.sign(&current.secret)?;
            probe.verify(&valid, &current.secret)?;
            let forged = probe.forge()?;
            let previous = match &self.rotation.previous {
                Some(previous) => Some(probe.sign(&previous.secret)?),
                None => None,
            };
            let raw = current.secret.expose();
            let trimmed = match raw.trim_ascii() {
                trimmed if trimmed.len() == raw.len() || trimmed.is_empty() => None,
                trimmed => Some(probe.sign(&Secret::new(trimmed.to_vec()))?),
            };
            Ok(Tokens {
                valid,
                forged,
                previous,
                trimmed,
            })
        });
        let tokens = match signed {
            Ok(tokens) => Some(tokens),
            Err(error) => {
                findings.push(Finding::fail(
                    FailureKind::Misconfigured,
                    format!("a token signed with the mounted secret does not verify: {error}"),
                ));
                None
            }
        };
        let valid = tokens.is_some() && findings.iter().all(|f| f.status != Status::Fail);
        (
            SecretReport {
                findings,
                length: Some(length),
                valid,
            },
            tokens,
        )
    }

    /// Notes a change of fingerprint as a rotation and moves the info series to the new one.
    fn follow(&mut self, secret: Secret<Vec<u8>>) {
        let digest = secret::digest(&secret);
        let fingerprint = secret::fingerprint(&secret, self.algorithm);
        let algorithm = format!("{:?}", self.algorithm);
        let changed_from = match &self.rotation.current {
            Some(current) if current.digest == digest => return,
            Some(current) => Some(current.fingerprint.clone()),
            None => None,
        };
        if let Some(metrics) = &self.metrics.secret {
            if let Some(old) = &changed_from {
                let _ = metrics.info.remove_label_values(&[&algorithm, old]);
                metrics.rotations_total.inc();
            }
            metrics.info.with_label_values(&[&algorithm, &fingerprint]).set(1);
        }
        if let Some(old) = &changed_from {
            tracing::info!(check = "jwt", from = %old, to = %fingerprint, "JWT secret rotated");
            self.rotation.count += 1;
            self.rotation.last = Some(SystemTime::now());
        }
        let loaded = Loaded {
            secret,
            digest,
            fingerprint,
        };
        self.rotation.previous = match self.rotation.current.replace(loaded) {
            Some(old) if changed_from.is_some() => Some(old),
            _ => self.rotation.previous.take(),
        };
    }
}

impl Check for JwtCheck {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(JwtCheck::run(self))
    }
}

/// `GET url`, asking for JSON (what a JWKS is; harmless to a validate endpoint). Built once per
/// check; the gateway adds its token per run.
fn get_request(url: &HttpUrl) -> Result<ProbeRequest, RequestError> {
    let accept = http::HeaderValue::from_static("application/json, */*");
    Ok(ProbeRequest::get(url, [(http::header::ACCEPT, accept)]))
}

/// One request over a fresh connection (the upstream check's rule: the first address the name
/// resolves to), reading at most `body_limit` bytes, cut at `deadline`. A timeout names the
/// deadline in whole milliseconds: `360ms`, not the `359ms 996us 274ns` left of a budget.
/// The expiry of the chain the server presented is noted in `seen`, also when the request failed.
async fn get(
    client: &HttpClient,
    request: &ProbeRequest,
    deadline: Duration,
    body_limit: usize,
    seen: &cert::Earliest,
) -> Result<ProbeResponse, ProbeError> {
    let millis = u64::try_from(deadline.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    let answer = client
        .probe(request, deadline, Duration::from_millis(millis), body_limit)
        .await;
    match answer {
        Ok(response) => {
            seen.note(response.cert_not_after);
            Ok(response)
        }
        Err(failure) => {
            seen.note(failure.cert_not_after);
            Err(failure.error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dir: &std::path::Path) -> JwtCheck {
        let toml = format!(
            "[jwt]\nsecret_file = \"{}\"\nissuer = \"api-gateway\"\naudience = \"api\"\n",
            dir.join("secret").display()
        );
        let file = dir.join("vigil.toml");
        std::fs::write(&file, toml).unwrap();
        let sources = crate::config::Sources {
            file: Some(file),
            ..Default::default()
        };
        let config = crate::checks::registry::load(&sources).unwrap();
        let metrics = crate::metrics::Metrics::new().unwrap();
        let section = config.check("jwt").unwrap();
        let jwt = section.keys::<crate::checks::kind::Typed<Kind>>().unwrap();
        JwtCheck::new(&jwt.0, &section.settings, "jwt", &BuildContext::new(&metrics, None)).unwrap()
    }

    #[tokio::test]
    async fn rotations_are_counted_and_the_previous_secret_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut check = check(dir.path());
        std::fs::write(dir.path().join("secret"), "q8Vw2LmZ3xT9rK4pN7sB1yD6fH0jC5gA").unwrap();
        assert_eq!(check.run().await.status, Status::Pass);
        let first = check.rotation.current.as_ref().unwrap().fingerprint.clone();
        assert_eq!(check.run().await.status, Status::Pass);
        assert_eq!(check.rotation.count, 0);

        std::fs::write(dir.path().join("secret"), "Z1x2C3v4B5n6M7a8S9d0F1g2H3j4K5l6").unwrap();
        let outcome = check.run().await;
        assert_eq!(outcome.status, Status::Pass);
        assert_eq!(check.rotation.count, 1);
        assert_eq!(check.rotation.previous.as_ref().unwrap().fingerprint, first);
        assert!(outcome.observations.iter().any(|o| o.name == "last_rotation"));
    }

    #[tokio::test]
    async fn a_missing_file_fails_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = check(dir.path()).run().await;
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(
            outcome.reason,
            format!(
                "secret file {}: No such file or directory",
                dir.path().join("secret").display()
            )
        );
        assert_eq!(outcome.kind, Some(FailureKind::Io));
    }
}
