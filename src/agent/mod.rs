//! A running agent: the check loops and the HTTP server over one shared state. `vigil run`
//! and the in-process tests start it the same way.
//!
//! The check loops run on a runtime of their own, so that a check that blocks its thread (a
//! bug no timeout can cut) stalls other checks, which `/livez` then reports, but never the
//! endpoints that report it.

mod checks_thread;
pub mod oncall;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::checks_thread::ChecksThread;
use crate::checks::{self, BuildError, Facts, Scheduled};
use crate::config::{self, Config};
use crate::core::secret::Secret;
use crate::engine::drain::{self, Drain};
use crate::engine::observe::{Events, Observer};
use crate::engine::reload::{self, Plan};
use crate::engine::scheduler::{self, Loops};
use crate::engine::state::State;
use crate::fleet::{self, Fleet, FleetError};
use crate::http::diag_token::{self, DiagToken};
use crate::http::{self, App};
use crate::kube::Cluster;
use crate::metrics::{Metrics, MetricsError};

/// Why a new configuration was not applied; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot show the configuration in /diag: {0}")]
    Show(#[from] serde_json::Error),
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// What the endpoints show beyond the checks.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub diag_token: Option<Secret<String>>,
    /// Where `diag_token` was read from; read again while vigil runs.
    pub diag_token_file: Option<PathBuf>,
    /// The effective configuration, secrets redacted, for `/diag`: JSON text, since a tree of
    /// values would cost several times as much memory for a page that is rarely asked for.
    pub config: Box<RawValue>,
    pub service_id: String,
    /// `[fleet]`: the peers asked while a critical shared check fails.
    pub fleet: Option<config::Fleet>,
    /// `[kubernetes]`: its watches and Event poster run beside the loops.
    pub kubernetes: Option<Arc<Cluster>>,
    /// The board the checks were built with (`checks::build_all`): the fleet posts the replica
    /// count to it, and checks built by a reload use it too.
    pub facts: Arc<Facts>,
}

/// The check loops and the server, running.
pub struct Agent {
    pub state: Arc<State>,
    pub local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    loops: Loops,
    /// The agent's own background tasks (the diag token's re-reads, `[kubernetes]`'s watches and
    /// Event poster).
    background: Vec<JoinHandle<()>>,
    metrics: Metrics,
    app: Arc<App>,
    /// `[kubernetes]`, for the `pod` check (it needs a restart to change).
    kubernetes: Option<Arc<Cluster>>,
    /// `[fleet]` (it needs a restart to change).
    fleet: Option<Arc<Fleet>>,
    facts: Arc<Facts>,
    /// Where the check loops run; dropped last, after the loops and tasks are aborted.
    _checks_thread: ChecksThread,
}

impl Agent {
    /// Starts every check's loop and serves on `listener`. Must be called inside a Tokio runtime
    /// (the server's); the checks get a runtime of their own.
    pub fn start(
        checks: Vec<Scheduled>,
        metrics: Metrics,
        listener: TcpListener,
        options: Options,
    ) -> Result<Agent, StartError> {
        let local_addr = listener.local_addr()?;
        let checks_thread = ChecksThread::start()?;
        let checks_runtime = checks_thread.handle();
        let state = Arc::new(State::new(scheduler::specs(&checks)));
        let fleet = match &options.fleet {
            Some(config) => Some(Arc::new(
                Fleet::new(config, &metrics, Arc::clone(&state))?.posting_to(Arc::clone(&options.facts)),
            )),
            None => None,
        };
        let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
        if let Some(fleet) = &fleet {
            for scheduled in &checks {
                fleet.track(&scheduled.name, &scheduled.settings);
            }
            observers.push(Arc::clone(fleet) as Arc<dyn Observer>);
        }
        let event_sink = options.kubernetes.as_ref().and_then(|k| k.event_sink());
        if let Some(sink) = &event_sink {
            observers.push(Arc::new(Events(sink.clone())));
        }
        let drain = Arc::new(Drain::new(Arc::clone(&state), event_sink));
        let loops = Loops::start(checks_runtime, &state, &metrics, observers, checks);
        let diag_token = Arc::new(DiagToken::new(options.diag_token, options.diag_token_file));
        let mut background = Vec::new();
        if let Some(fleet) = &fleet {
            background.push(checks_runtime.spawn(fleet::keep_resolving(Arc::clone(fleet))));
        }
        if let Some(cluster) = &options.kubernetes {
            for task in cluster.watches().into_iter().chain(cluster.event_poster()) {
                background.push(checks_runtime.spawn(task));
            }
        }
        background.push(checks_runtime.spawn(drain::keep_ending(Arc::clone(&drain))));
        if diag_token.file().is_some() {
            background.push(checks_runtime.spawn(diag_token::keep_reloading(Arc::clone(&diag_token))));
        }
        let app = Arc::new(App {
            state: Arc::clone(&state),
            metrics: metrics.clone(),
            diag_token: Arc::clone(&diag_token),
            config: RwLock::new(Arc::from(options.config)),
            service_id: options.service_id,
            checks_runtime: Some(checks_runtime.clone()),
            fleet: fleet.clone(),
            drain,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, Arc::clone(&app), async {
            let _ = stopped.await;
        }));
        Ok(Agent {
            state,
            local_addr,
            stop,
            server,
            loops,
            background,
            metrics,
            app,
            kubernetes: options.kubernetes,
            fleet,
            facts: options.facts,
            _checks_thread: checks_thread,
        })
    }

    /// Applies a new configuration in place of `old` (see [`reload`](crate::engine::reload) for what
    /// is kept). The checks to build are built against staging metrics, so that a configuration
    /// with a check that cannot be built (a CA file gone) is refused whole, before anything
    /// running or shown is touched; only then do their metrics and loops replace the old ones.
    pub fn reload(&mut self, old: &Config, new: &Config) -> Result<Plan, ReloadError> {
        let plan = Plan::new(old, new);
        let staging = self.metrics.staging();
        let built = checks::build_all(&plan.to_build, &staging, self.kubernetes.as_ref(), &self.facts)?;
        let shown = serde_json::value::to_raw_value(&reload::in_effect(old, new.clone()).shown())?;
        self.metrics.adopt(&staging)?;
        if let Some(fleet) = &self.fleet {
            for scheduled in &built {
                fleet.track(&scheduled.name, &scheduled.settings);
            }
        }
        self.loops.replace(&plan.order, built);
        for name in &plan.removed {
            self.metrics.retire_check(name);
        }
        *self.app.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::from(shown);
        Ok(plan)
    }

    /// `/readyz` answers 503 from now on; everything else keeps serving.
    pub fn start_draining(&self) {
        self.state.start_draining();
    }

    /// Stops serving (open connections get a short grace) and stops the check loops.
    pub async fn stop(mut self) {
        let (stop, _) = oneshot::channel();
        let _ = std::mem::replace(&mut self.stop, stop).send(());
        let _ = (&mut self.server).await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.loops.abort_all();
        for task in &self.background {
            task.abort();
        }
    }
}
