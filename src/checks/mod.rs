//! What a check is, what it is given to build itself, and the registry of check kinds.
//!
//! A check owns its connections and counters; the scheduler owns its timing. A check never
//! sleeps, spawns to schedule itself, or retries: a run says what it would like next
//! ([`Rerun`](crate::core::outcome::Rerun)) and may ring its [`Wake`] between runs; the
//! scheduler decides when. The scheduler cuts every run at the check's `timeout` (so `run` must
//! be cancel-safe: dropping its future at any await point must leave the check usable for the
//! next run) and turns a panic into a `fail`. The HTTP checks stop their own request a little
//! inside `timeout` only so that the reason can name the request; the scheduler's cut stays the
//! rule.
//!
//! Each kind is one folder, listed once in [`registry`]: the loader reads its section, `/metrics`
//! its series and [`build_all`] its checks through that row.

pub(crate) mod cert;
pub(crate) mod facts;
pub(crate) mod gateway;
pub(crate) mod jwt;
pub(crate) mod kind;
pub(crate) mod latency;
pub(crate) mod pgbouncer;
pub(crate) mod pod;
pub(crate) mod postgres;
pub mod registry;
pub(crate) mod sockets;
pub(crate) mod system;
pub(crate) mod upstream;

use std::cell::OnceCell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The facts board (one per agent, kept across reloads), for main and the agent.
pub use self::facts::Facts;
/// The JWKS parser, for the property tests and the fuzzer.
pub use self::jwt::jwks;
use crate::config::{CheckSection, CheckSettings, Config};
use crate::core::outcome::{ComponentType, Outcome};
pub use crate::core::wake::Wake;
use crate::kube::Cluster;
use crate::metrics::Metrics;
use crate::net::client_cert::ClientIdentity;
use crate::net::tls::HttpClient;
pub(crate) use kind::CheckKind;

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

/// What every check is given to build itself: built once, shared by all.
pub struct BuildContext<'a> {
    pub metrics: &'a Metrics,
    /// What `[kubernetes]` set up at start, for the `pod` check.
    pub cluster: Option<&'a Arc<Cluster>>,
    /// Figures one part measures and another needs (the gateway's pool max, the replica count):
    /// one board per agent, see [`facts`].
    pub facts: Arc<Facts>,
    /// The one HTTP client (its rustls configuration: built-in roots, crypto provider), built
    /// when a check first asks for it: a configuration without HTTP parses no roots.
    http: OnceCell<HttpClient>,
}

impl<'a> BuildContext<'a> {
    pub fn new(metrics: &'a Metrics, cluster: Option<&'a Arc<Cluster>>) -> BuildContext<'a> {
        BuildContext {
            metrics,
            cluster,
            facts: Arc::new(Facts::new(cluster)),
            http: OnceCell::new(),
        }
    }

    /// The same, posting to and reading from the agent's board.
    pub fn with_facts(mut self, facts: &Arc<Facts>) -> BuildContext<'a> {
        self.facts = Arc::clone(facts);
        self
    }

    /// [`BuildContext::http_client`], presenting the client certificate of `client_cert`
    /// (`client_cert_file`, `client_key_file`) to servers that ask for one: a client of its own,
    /// which reads the files now (a pair that does not load is refused here, naming the file)
    /// and again each run.
    pub(crate) fn mtls_client(
        &self,
        check: &str,
        ca_file: Option<&Path>,
        client_cert: Option<(&Path, &Path)>,
    ) -> Result<HttpClient, BuildError> {
        let client = self.http_client(check, ca_file)?;
        match client_cert {
            None => Ok(client),
            Some((cert, key)) => {
                let identity = ClientIdentity::load(cert, key).map_err(|e| BuildError::new(check, e))?;
                Ok(client.with_identity(Arc::new(identity)))
            }
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

    /// Delays the first run by `delay` (see [`first_run_delay`] for the rule).
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

/// Builds every configured check that runs, in the order `/readyz` lists them, each through its
/// kind's row, and spreads the first runs of a kind with many checks (see
/// [`first_run_delay`]). `cluster` is what `[kubernetes]` set up at start (`Cluster::build`);
/// `facts` the agent's board (`Facts::new(cluster)`, kept across reloads).
pub fn build_all(
    config: &Config,
    metrics: &Metrics,
    cluster: Option<&Arc<Cluster>>,
    facts: &Arc<Facts>,
) -> Result<Vec<Scheduled>, BuildError> {
    let cx = BuildContext::new(metrics, cluster).with_facts(facts);
    let sections: Vec<&CheckSection> = config.enabled_checks().collect();
    sections
        .iter()
        .map(|section| {
            let row = registry::row(section.table)
                .ok_or_else(|| BuildError::new(&section.name, "no check kind reads this section"))?;
            let of_kind: Vec<&&CheckSection> = sections.iter().filter(|s| s.table == section.table).collect();
            let index = of_kind.iter().position(|s| s.name == section.name).unwrap_or(0);
            let delay = first_run_delay(index, of_kind.len(), section.settings.interval);
            Ok(row.build(section, &cx)?.with_first_run_delay(delay))
        })
        .collect()
}

/// Beyond this many checks of one kind, their first runs are spread over the first interval.
pub const SPREAD_ABOVE: usize = 32;

/// The longest the first runs are spread over: a pod is not ready before every check has a
/// result, so spreading over a long interval (5m) would hold a rollout back that long.
pub const SPREAD_AT_MOST: Duration = Duration::from_secs(2);

/// Up to [`SPREAD_ABOVE`] checks of a kind all run at start (a small configuration is ready at
/// once); beyond that, check `i` of `n` first runs at `span * i / n`, where `span` is the
/// interval but at most [`SPREAD_AT_MOST`], so hundreds of them do not fire in the same
/// millisecond and every one has run within two seconds.
pub fn first_run_delay(index: usize, count: usize, interval: Duration) -> Duration {
    if count <= SPREAD_ABOVE {
        return Duration::ZERO;
    }
    let (index, count) = (
        u32::try_from(index).unwrap_or(u32::MAX),
        u32::try_from(count).unwrap_or(u32::MAX),
    );
    interval.min(SPREAD_AT_MOST) / count * index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_spread_only_beyond_a_few_dozen() {
        let interval = Duration::from_secs(1);
        assert_eq!(first_run_delay(5, 10, interval), Duration::ZERO);
        assert_eq!(first_run_delay(0, 1000, interval), Duration::ZERO);
        assert_eq!(first_run_delay(500, 1000, interval), Duration::from_millis(500));
        assert!(first_run_delay(999, 1000, interval) < interval);
        let long = Duration::from_secs(300);
        assert!(
            first_run_delay(999, 1000, long) < SPREAD_AT_MOST,
            "a 5m interval must not hold readiness back 5m"
        );
    }
}
