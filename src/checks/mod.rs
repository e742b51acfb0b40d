//! What a check is, what it is given to build itself, and the one place where configured checks
//! are built.
//!
//! A check owns its connections and counters; the scheduler owns its timing. A check never
//! sleeps, spawns to schedule itself, or retries: a run says what it would like next
//! ([`Rerun`]) and may ring its [`Wake`] between runs; the scheduler decides when. The scheduler
//! cuts every run at the check's `timeout` (so `run` must be cancel-safe: dropping its future
//! at any await point must leave the check usable for the next run) and turns a panic into a
//! `fail`. The HTTP checks stop their own request a little inside `timeout` only so that the
//! reason can name the request; the scheduler's cut stays the rule.

pub mod cert;
pub mod gateway;
pub mod grpc;
pub mod http2;
pub mod http_probe;
pub mod jwt;
pub mod latency;
pub mod pod;
pub mod postgres;
#[allow(dead_code)]
mod sockets;
pub mod system;
pub mod upstream;

use std::cell::OnceCell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{CheckSettings, Config};
use crate::kubernetes::Cluster;
use crate::metrics::Metrics;
use crate::outcome::{ComponentType, Outcome};
use http_probe::HttpClient;

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

    /// The handle the check rings when it learns, between runs, that its dependency changed
    /// (a kept connection dropped), so that the scheduler runs it early.
    fn wake(&self) -> Option<Wake> {
        None
    }
}

/// Rung by a check between runs: "my dependency changed, look again". Rings coalesce; the
/// scheduler spaces the runs they cause (see `scheduler`).
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    pub fn ring(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next ring (or at once for a ring since the last wait).
    pub async fn rung(&self) {
        self.0.notified().await;
    }
}

/// What every check is given to build itself: built once, shared by all.
pub struct BuildContext<'a> {
    pub metrics: &'a Metrics,
    /// The one HTTP client (its rustls configuration: built-in roots, crypto provider), built
    /// when a check first asks for it: a configuration without HTTP parses no roots.
    http: OnceCell<HttpClient>,
}

impl<'a> BuildContext<'a> {
    pub fn new(metrics: &'a Metrics) -> BuildContext<'a> {
        BuildContext {
            metrics,
            http: OnceCell::new(),
        }
    }

    /// The shared client, or one that also trusts the CAs of `ca_file`.
    pub fn http_client(&self, check: &str, ca_file: Option<&Path>) -> Result<HttpClient, BuildError> {
        let built = match ca_file {
            Some(path) => HttpClient::with_ca_file(path),
            None => match self.http.get() {
                Some(shared) => return Ok(shared.clone()),
                None => HttpClient::new().inspect(|client| {
                    let _ = self.http.set(client.clone());
                }),
            },
        };
        built.map_err(|e| BuildError::new(check, e))
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

impl BuildError {
    pub fn new(check: impl Into<String>, message: impl std::fmt::Display) -> BuildError {
        BuildError {
            check: check.into(),
            message: message.to_string(),
        }
    }
}

/// Builds every configured check, in the order `/readyz` lists them. `cluster` is what
/// `[kubernetes]` set up at start (`Cluster::build`), for the `pod` check.
///
/// Adding a check is one module plus one line here.
pub fn build_all(
    config: &Config,
    metrics: &Metrics,
    cluster: Option<&Arc<Cluster>>,
) -> Result<Vec<Scheduled>, BuildError> {
    let cx = BuildContext::new(metrics);
    let mut checks = Vec::new();
    checks.extend(config.postgres.as_ref().map(|c| postgres::build(c, &cx)).transpose()?);
    checks.extend(config.jwt.as_ref().map(|c| jwt::build(c, &cx)).transpose()?);
    checks.extend(config.gateway.as_ref().map(|c| gateway::build(c, &cx)).transpose()?);
    checks.extend(upstream::build_all(&config.upstreams, &cx)?);
    checks.extend(config.system.as_ref().map(|c| system::build(c, &cx)).transpose()?);
    if config.kubernetes.is_some() {
        let cluster = cluster.ok_or_else(|| BuildError::new(pod::NAME, "[kubernetes] was not set up at start"))?;
        checks.push(pod::build(cluster, &cx)?);
    }
    Ok(checks)
}
