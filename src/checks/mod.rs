//! What a check is, what one run of it yields, and the one place where configured checks are
//! built.
//!
//! A check owns its connections and counters; the scheduler owns its timing. A check never
//! sleeps or retries: the scheduler cuts every run at the check's `timeout` (so `run` must be
//! cancel-safe: dropping its future at any await point must leave the check usable for the next
//! run) and turns a panic into a `fail`. The HTTP checks stop their own request a little inside
//! `timeout` only so that the reason can name the request; the scheduler's cut stays the rule.

pub mod gateway;
pub mod http_probe;
pub mod jwt;
pub mod latency;
pub mod postgres;
pub mod system;
pub mod upstream;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{CheckSettings, Config};
use crate::metrics::Metrics;

/// The future one run of a check returns.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One external thing vigil watches.
pub trait Check: Send + 'static {
    /// The IETF health+json `componentType` of what this check watches.
    fn component_type(&self) -> ComponentType {
        ComponentType::Component
    }

    /// Runs the check once. Called again only after the previous run finished or was cut.
    fn run(&mut self) -> RunFuture<'_>;

    /// Rung by the check itself when it learns, between runs, that its dependency changed
    /// (a kept connection dropped): the scheduler then runs it at once instead of waiting out
    /// the interval.
    fn rerun_signal(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// The result of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Degraded: shown and alerted on, never fails readiness.
    Warn,
    Fail,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pass, Status::Warn, Status::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run did not pass, as a closed set: stable wording for logs and `/diag`, and low
/// cardinality should it ever become a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The run did not finish within its `timeout`.
    Timeout,
    /// The check's code panicked.
    Panic,
    /// No result for three intervals.
    Stale,
    /// A measured value crossed a configured threshold.
    Threshold,
    /// Connection refused.
    Refused,
    /// The name did not resolve.
    Dns,
    /// TLS handshake or certificate failure.
    Tls,
    /// Credentials rejected.
    Auth,
    /// The server refused a new client because it is full.
    TooManyClients,
    /// An unexpected HTTP status.
    HttpStatus,
    /// The dependency answered something vigil cannot use.
    Protocol,
    /// Reading a local file or kernel interface failed.
    Io,
    /// The dependency is misconfigured (weak secret, missing key, database missing, …).
    Misconfigured,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Panic => "panic",
            FailureKind::Stale => "stale",
            FailureKind::Threshold => "threshold",
            FailureKind::Refused => "refused",
            FailureKind::Dns => "dns",
            FailureKind::Tls => "tls",
            FailureKind::Auth => "auth",
            FailureKind::TooManyClients => "too_many_clients",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Protocol => "protocol",
            FailureKind::Io => "io",
            FailureKind::Misconfigured => "misconfigured",
        }
    }
}

/// The IETF health+json `componentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    Component,
    Datastore,
    System,
}

/// The unit of an observed value, as shown in `/diag` (`observedUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A fraction, 0..1 (saturation, CPU share of a limit).
    Ratio,
    Bytes,
    Seconds,
    /// A count of things (connections, keys, addresses, events).
    Count,
    /// CPU cores.
    Cores,
    /// No unit: a label-like value such as a fingerprint.
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ratio => "ratio",
            Unit::Bytes => "bytes",
            Unit::Seconds => "s",
            Unit::Count => "count",
            Unit::Cores => "cores",
            Unit::None => "",
        }
    }
}

/// One measured value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Text(String),
}

/// One thing a run measured, e.g. `memory_working_set` = 1.2e8 bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The measurement name: the part after `:` in `/diag`'s `component:measurement` keys.
    pub name: &'static str,
    pub value: Value,
    pub unit: Unit,
}

impl Observation {
    pub fn number(name: &'static str, value: f64, unit: Unit) -> Self {
        Observation {
            name,
            value: Value::Number(value),
            unit,
        }
    }

    pub fn text(name: &'static str, value: impl Into<String>) -> Self {
        Observation {
            name,
            value: Value::Text(value.into()),
            unit: Unit::None,
        }
    }
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// One line, shown after the check's name in `/readyz?verbose`. Never holds a secret.
    pub reason: String,
    /// Why it did not pass; `None` for a pass.
    pub kind: Option<FailureKind>,
    pub observations: Vec<Observation>,
    /// For warn and fail: the next thing a person should look at or do.
    pub hint: Option<String>,
    /// Check-specific structure for `/diag` (percentiles, per-pool figures, …).
    pub details: Option<Details>,
}

/// A run's check-specific structure for `/diag`, kept as compact JSON text: a tree of
/// `serde_json::Value`s takes several times the memory of its text (3 KiB against a few hundred
/// bytes for an upstream's), every check keeps its last run, and `/diag` only prints it.
#[derive(Debug, Clone)]
pub struct Details(Box<serde_json::value::RawValue>);

impl Details {
    /// The structure back as a tree.
    pub fn to_value(&self) -> serde_json::Value {
        // The text was written by serde_json from a Value: it parses.
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for Details {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Outcome {
    pub fn pass() -> Self {
        Outcome {
            status: Status::Pass,
            reason: "ok".to_owned(),
            kind: None,
            observations: Vec::new(),
            hint: None,
            details: None,
        }
    }

    pub fn warn(kind: FailureKind, reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Warn,
            reason: reason.into(),
            kind: Some(kind),
            ..Outcome::pass()
        }
    }

    pub fn fail(kind: FailureKind, reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            reason: reason.into(),
            kind: Some(kind),
            ..Outcome::pass()
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_observations(mut self, observations: Vec<Observation>) -> Self {
        self.observations = observations;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        // Serializing a Value cannot fail (its map keys are strings).
        self.details = serde_json::value::to_raw_value(&details).ok().map(Details);
        self
    }
}

/// A check together with its name and timing, ready for the scheduler.
pub struct Scheduled {
    pub name: String,
    pub settings: CheckSettings,
    pub check: Box<dyn Check>,
    /// How long after start the first run waits (zero: at start). Lets many checks of one
    /// kind spread over their interval instead of firing at once.
    pub first_run_delay: Duration,
}

impl Scheduled {
    pub fn new(name: impl Into<String>, settings: CheckSettings, check: impl Check) -> Self {
        Scheduled {
            name: name.into(),
            settings,
            check: Box::new(check),
            first_run_delay: Duration::ZERO,
        }
    }

    /// Delays the first run by `delay` (see [`upstream::first_run_delay`] for the rule).
    pub fn with_first_run_delay(mut self, delay: Duration) -> Self {
        self.first_run_delay = delay;
        self
    }
}

/// A configured check that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{check}: {message}")]
pub struct BuildError {
    pub check: String,
    pub message: String,
}

/// Builds every configured check, in the order `/readyz` lists them.
///
/// Adding a check is one module plus one line here.
pub fn build_all(config: &Config, metrics: &Metrics) -> Result<Vec<Scheduled>, BuildError> {
    let mut checks = Vec::new();
    if let Some(pg) = &config.postgres {
        checks.push(Scheduled::new(
            "postgres",
            pg.settings,
            postgres::PostgresCheck::new(pg, metrics)?,
        ));
    }
    if let Some(jwt) = &config.jwt {
        checks.push(Scheduled::new("jwt", jwt.settings, jwt::JwtCheck::new(jwt, metrics)?));
    }
    checks.extend(gateway::build(config.gateway.as_ref(), metrics)?);
    checks.extend(upstream::build_all(&config.upstreams, metrics)?);
    if let Some(system) = &config.system {
        checks.push(Scheduled::new(
            "system",
            system.settings,
            system::SystemCheck::new(system, metrics),
        ));
    }
    Ok(checks)
}
