//! The `vigil` command: parse the command line, load the configuration, and run the agent, a
//! one-shot check, or a validation. `anyhow` lives here only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use vigil::Cluster;
use vigil::agent::oncall::{self, DrainRequest, OncallError, Printed};
use vigil::agent::{Agent, Options};
use vigil::checks::{self, Facts, Scheduled};
use vigil::config::{Config, Sources};
use vigil::engine::reload::FileWatch;
use vigil::engine::scheduler;
use vigil::engine::state::{Run, State};
use vigil::http::render::{self, DiagInput};
use vigil::logging::{self, LogFormat};
use vigil::metrics::Metrics;

/// Health-probe sidecar for API gateways on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None)]
#[deny(missing_docs)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The TOML configuration file (else VIGIL_CONFIG; else built-in defaults and environment).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
#[deny(missing_docs)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Run every configured check once, print the results, exit 0 if ready and 1 if not.
    Check {
        /// `text`: the /readyz?verbose lines; `json`: the /diag document.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Validate the configuration and print it, every secret redacted.
    Validate,
    /// Every replica's checks in one table ([fleet] peers and this one); exit 0 when every
    /// replica is ready, 1 when one is not.
    Fleet {
        /// `text`: the table and the reasons; `json`: the same as one document.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Take this replica out of the Service by hand, keeping it alive (/readyz 503 until the
    /// drain ends); exit 0 done, 1 refused.
    Drain {
        /// How long, at most 24h; it ends by itself then.
        #[arg(
            long = "for",
            value_name = "DURATION",
            default_value = "15m",
            conflicts_with = "cancel"
        )]
        lasting: String,
        /// Why, for the /readyz line, the log and the Event.
        #[arg(long, value_name = "TEXT", conflicts_with = "cancel")]
        reason: Option<String>,
        /// Put this replica back in the Service now.
        #[arg(long)]
        cancel: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Exit status for usage and configuration errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let log_format = LogFormat::from_env_value(std::env::var("VIGIL_LOG_FORMAT").ok().as_deref());
    logging::init(log_format, std::env::var("RUST_LOG").ok().as_deref());

    let sources = Sources::from_process(cli.config);
    // The file's first look comes before it is read, so that a change during start-up is a
    // change to reload.
    let watch = sources.file.as_deref().map(FileWatch::new);
    let config = match checks::registry::load(&sources) {
        Ok(config) => config,
        Err(error) => return config_error(&error),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => match build(&config) {
            // The same build as `run` (CA files read and parsed, TLS connectors made; nothing
            // connects), so that what validate accepts, run starts.
            Ok(Ok(_)) => match print_report(&config.to_redacted_toml()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    logging::to_stderr(format_args!("{error:#}"));
                    ExitCode::FAILURE
                }
            },
            Ok(Err(error)) => config_error(&error),
            Err(error) => {
                logging::to_stderr(format_args!("{error:#}"));
                ExitCode::FAILURE
            }
        },
        Command::Check { output } => with_runtime(|| check_once(config, output)),
        Command::Fleet { output } => {
            with_runtime(|| async move { oncall_ended(oncall::fleet(&config, matches!(output, Output::Json)).await) })
        }
        Command::Drain {
            lasting,
            reason,
            cancel,
        } => with_runtime(|| async move {
            let request = if cancel {
                DrainRequest::Cancel
            } else {
                DrainRequest::Start {
                    lasting: Some(lasting),
                    reason,
                }
            };
            oncall_ended(oncall::drain(&config, request).await)
        }),
        Command::Run => with_runtime(|| run(sources, watch, config)),
    }
}

/// Writes a command's report to stdout. A reader that has gone away (`vigil validate | head`)
/// is not an error: the rest of the report was not wanted, and the command's exit status stands.
fn print_report(report: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(report.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("cannot write the report to stdout"))
        }
        _ => Ok(()),
    }
}

fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    logging::to_stderr(error);
    ExitCode::from(EXIT_CONFIG)
}

/// What a command that needs the runtime ends with.
enum Ended {
    Ok(ExitCode),
    /// A configuration that loads but cannot be set up (a CA file gone): exit 2 as for any
    /// configuration error.
    Config(String),
}

/// The server's runtime is the main thread (the checks get a thread of their own): the endpoints
/// only read state, so one thread answers them; a multi-threaded runtime would wake a second
/// worker on every request and keep `libm` loaded for its scheduler (bench/README.md).
fn with_runtime<F: Future<Output = anyhow::Result<Ended>>>(command: impl FnOnce() -> F) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .thread_name("vigil")
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(command()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot start the async runtime")),
    };
    match result {
        Ok(Ended::Ok(code)) => code,
        Ok(Ended::Config(error)) => config_error(&error),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "vigil stopped");
            logging::to_stderr(format_args!("{error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// How an on-call command ends: its report printed, exit 0 or 1; 2 for a usage error.
fn oncall_ended(result: Result<Printed, OncallError>) -> anyhow::Result<Ended> {
    match result {
        Ok(printed) => {
            print_report(&printed.report)?;
            Ok(Ended::Ok(if printed.success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }))
        }
        Err(OncallError::Usage(error)) => Ok(Ended::Config(error)),
        Err(OncallError::Failed(error)) => {
            logging::to_stderr(&error);
            Ok(Ended::Ok(ExitCode::FAILURE))
        }
    }
}

/// One malloc arena for the whole process instead of one per thread that ever allocated
/// (glibc's default, up to 8 per core): the agent's threads mostly wait, and each extra arena
/// keeps its own free chunks and a first heap of its own. Called before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable, and no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// What `build` makes: the metrics, the checks, what `[kubernetes]` set up, and the facts board
/// the checks share.
type Built = (Metrics, Vec<Scheduled>, Option<Arc<Cluster>>, Arc<Facts>);

fn build(config: &Config) -> anyhow::Result<Result<Built, String>> {
    let metrics = Metrics::new().context("cannot set up metrics")?;
    let cluster = match config.kubernetes.as_ref().map(Cluster::build).transpose() {
        Ok(cluster) => cluster,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let facts = Arc::new(Facts::new(cluster.as_ref()));
    Ok(checks::build_all(config, &metrics, cluster.as_ref(), &facts)
        .map(|checks| (metrics, checks, cluster, facts))
        .map_err(|e| e.to_string()))
}

async fn run(sources: Sources, mut watch: Option<FileWatch>, mut config: Config) -> anyhow::Result<Ended> {
    // Listen for signals before anything else, so that none arriving during start-up is lost
    // (and a SIGHUP then never takes the default action, an exit without a drain).
    let mut signals = Signals::new().context("cannot listen for SIGTERM/SIGINT/SIGHUP")?;
    let (metrics, checks, kubernetes, facts) = match build(&config)? {
        Ok(built) => built,
        Err(error) => return Ok(Ended::Config(error)),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (set `listen` to a free address)", config.listen))?;

    let names: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
    let options = Options {
        diag_token: config.diag.token.clone(),
        diag_token_file: config.diag.token_file.clone(),
        config: serde_json::value::to_raw_value(&config.shown()).unwrap_or_default(),
        service_id: std::env::var("HOSTNAME").unwrap_or_else(|_| "vigil".to_owned()),
        fleet: config.fleet.clone(),
        kubernetes,
        facts,
    };
    let mut agent = Agent::start(checks, metrics.clone(), listener, options).context("cannot start serving")?;
    tracing::info!(listen = %agent.local_addr, checks = %logging::json(&names), version = env!("CARGO_PKG_VERSION"), "Serving");

    // The configuration file is looked at every few seconds: a ConfigMap update reaches the
    // pod's volume within the kubelet's sync period anyway, and a look is one stat.
    let mut looks = tokio::time::interval(CONFIG_LOOK_EVERY);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running_blank = sources.file.as_deref().is_some_and(vigil::engine::reload::is_blank);
    let which = loop {
        let cause = tokio::select! {
            event = signals.next() => match event {
                Event::Stop(which) => break which,
                Event::Reload => "SIGHUP",
            },
            _ = looks.tick() => match watch.as_mut().is_some_and(FileWatch::changed) {
                true => "the configuration file changed",
                false => continue,
            },
        };
        reload(&sources, &mut config, &mut running_blank, &mut agent, &metrics, cause);
    };
    agent.start_draining();
    let drain = config.shutdown.drain;
    tracing::info!(signal = which, drain = %vigil::core::fmt::duration(drain), "Draining: /readyz answers 503 from now on");
    let second = async {
        loop {
            if let Event::Stop(which) = signals.next().await {
                return which;
            }
            tracing::info!(
                signal = "SIGHUP",
                "Draining: the configuration is not reloaded any more"
            );
        }
    };
    tokio::select! {
        () = tokio::time::sleep(drain) => {}
        which = second => tracing::info!(signal = which, "Second signal: stopping without waiting out the drain"),
    }
    agent.stop().await;
    tracing::info!("Stopped");
    Ok(Ended::Ok(ExitCode::SUCCESS))
}

/// How often the configuration file is looked at for a change.
const CONFIG_LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Loads the configuration again and applies it; an invalid one is refused with the same one
/// line as at start-up, and the running one stays. So is a blank file while the running
/// configuration came from one that was not (`running_blank`): a file caught while it is
/// rewritten in place.
fn reload(
    sources: &Sources,
    config: &mut Config,
    running_blank: &mut bool,
    agent: &mut Agent,
    metrics: &Metrics,
    cause: &'static str,
) {
    let blank = sources.file.as_deref().is_some_and(vigil::engine::reload::is_blank);
    if blank && !*running_blank {
        tracing::warn!(
            cause,
            file = %sources.file.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Configuration reload refused: the file is empty while the running configuration is not \
             (caught while it is being rewritten?); the running configuration stays. To remove every \
             check on purpose, leave a comment in the file"
        );
        metrics.config_last_reload_successful.set(0);
        return;
    }
    let applied = checks::registry::load(sources)
        .map_err(|error| error.to_string())
        .and_then(|new| {
            agent
                .reload(config, &new)
                .map(|plan| (plan, new))
                .map_err(|e| e.to_string())
        });
    match applied {
        Ok((plan, new)) => {
            for key in &plan.needs_restart {
                tracing::warn!(
                    key,
                    "Configuration reloaded, but a change of this key needs a restart to take effect"
                );
            }
            tracing::info!(
                cause,
                kept = %logging::json(&plan.kept),
                changed = %logging::json(&plan.changed),
                added = %logging::json(&plan.added),
                removed = %logging::json(&plan.removed),
                "Configuration reloaded"
            );
            *config = vigil::engine::reload::in_effect(config, new);
            *running_blank = blank;
            metrics.config_last_reload_successful.set(1);
            metrics
                .config_last_reload_success_timestamp_seconds
                .set(vigil::metrics::unix_now());
        }
        Err(error) => {
            tracing::error!(cause, error = %format!("vigil: {error}"), "Configuration reload refused; the running configuration stays");
            metrics.config_last_reload_successful.set(0);
        }
    }
}

async fn check_once(config: Config, output: Output) -> anyhow::Result<Ended> {
    let (_metrics, mut checks, kubernetes, _facts) = match build(&config)? {
        Ok(built) => built,
        Err(error) => return Ok(Ended::Config(error)),
    };
    // The pod check reads what the watches list; no Events are posted for a one-shot check.
    let watches: Vec<_> = kubernetes
        .iter()
        .flat_map(|cluster| cluster.watches())
        .map(tokio::spawn)
        .collect();
    let state = State::new(scheduler::specs(&checks));
    let runs = checks.iter_mut().map(|scheduled| async move {
        let started = Instant::now();
        let outcome = scheduler::run_guarded(scheduled.check.as_mut(), scheduled.settings.timeout).await;
        Run {
            outcome,
            finished: Instant::now(),
            finished_at: SystemTime::now(),
            duration: started.elapsed(),
        }
    });
    for (slot, run) in state.slots().iter().zip(futures_util::future::join_all(runs).await) {
        state.record(slot, run);
    }
    for watch in watches {
        watch.abort();
    }

    let readiness = state.readiness(Instant::now(), &[]);
    match output {
        Output::Text => print_report(&render::readyz_verbose(&readiness, None, &[], true))?,
        Output::Json => {
            let transitions = state.transitions();
            let input = DiagInput {
                readiness: &readiness,
                transitions: &transitions,
                kubelet_probes: &[],
                started_at: state.started_at(),
                uptime: state.uptime(),
                alive_tasks: None,
                now: SystemTime::now(),
                service_id: "vigil check",
                config: &serde_json::value::to_raw_value(&config.shown()).unwrap_or_default(),
                fleet: None,
            };
            let mut document = serde_json::to_string_pretty(&render::diag_json(&input))
                .context("cannot serialize the /diag document")?;
            document.push('\n');
            print_report(&document)?;
        }
    }
    Ok(Ended::Ok(if readiness.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }))
}

/// SIGTERM (the kubelet stopping the pod) and SIGINT (Ctrl-C) stop; SIGHUP asks for a reload.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal: SIGTERM or SIGINT stop, SIGHUP asks for a reload.
    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Stop("SIGTERM"),
            _ = self.int.recv() => Event::Stop("SIGINT"),
            _ = self.hup.recv() => Event::Reload,
        }
    }
}

/// What a signal asks for.
enum Event {
    Stop(&'static str),
    Reload,
}
