//! The `vigil` command: parse the command line, load the configuration, and run the agent, a
//! one-shot check, or a validation. `anyhow` lives here only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use tokio::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use vigil::agent::{Agent, Options};
use vigil::checks::{self, Scheduled};
use vigil::config::{self, Config, Sources};
use vigil::logging::{self, LogFormat};
use vigil::metrics::Metrics;
use vigil::render::{self, DiagInput};
use vigil::scheduler;
use vigil::state::{Run, State};

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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Exit status for usage and configuration errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = LogFormat::from_env_value(std::env::var("VIGIL_LOG_FORMAT").ok().as_deref());
    logging::init(log_format, std::env::var("RUST_LOG").ok().as_deref());

    let config = match config::load(&Sources::from_process(cli.config)) {
        Ok(config) => config,
        Err(error) => return config_error(&error),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => match build(&config) {
            // The same build as `run` (CA files read and parsed, TLS connectors made; nothing
            // connects), so that what validate accepts, run starts.
            Ok(Ok(_)) => {
                print!("{}", config.to_redacted_toml());
                ExitCode::SUCCESS
            }
            Ok(Err(error)) => config_error(&error),
            Err(error) => {
                eprintln!("vigil: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { output } => with_runtime(|| check_once(config, output)),
        Command::Run => with_runtime(|| run(config)),
    }
}

fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("vigil: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// What a command that needs the runtime ends with.
enum Ended {
    Ok(ExitCode),
    Config(checks::BuildError),
}

fn with_runtime<F: Future<Output = anyhow::Result<Ended>>>(command: impl FnOnce() -> F) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
            eprintln!("vigil: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(config: &Config) -> anyhow::Result<Result<(Metrics, Vec<Scheduled>), checks::BuildError>> {
    let metrics = Metrics::new().context("cannot set up metrics")?;
    Ok(checks::build_all(config, &metrics).map(|checks| (metrics, checks)))
}

async fn run(config: Config) -> anyhow::Result<Ended> {
    // Listen for signals before anything else, so that none arriving during start-up is lost.
    let mut signals = Signals::new().context("cannot listen for SIGTERM/SIGINT")?;
    let (metrics, checks) = match build(&config)? {
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
        config: serde_json::value::to_raw_value(&config).unwrap_or_default(),
        service_id: std::env::var("HOSTNAME").unwrap_or_else(|_| "vigil".to_owned()),
        fleet: match &config.fleet {
            Some(fleet) => Some(std::sync::Arc::new(
                vigil::fleet::Fleet::new(fleet, &metrics).context("cannot set up [fleet]")?,
            )),
            None => None,
        },
    };
    let agent = Agent::start(checks, metrics, listener, options).context("cannot start serving")?;
    tracing::info!(listen = %agent.local_addr, checks = %logging::json(&names), version = env!("CARGO_PKG_VERSION"), "Serving");

    let which = signals.next().await;
    agent.start_draining();
    let drain = config.shutdown.drain;
    tracing::info!(signal = which, drain = %vigil::fmt::duration(drain), "Draining: /readyz answers 503 from now on");
    tokio::select! {
        () = tokio::time::sleep(drain) => {}
        which = signals.next() => tracing::info!(signal = which, "Second signal: stopping without waiting out the drain"),
    }
    agent.stop().await;
    tracing::info!("Stopped");
    Ok(Ended::Ok(ExitCode::SUCCESS))
}

async fn check_once(config: Config, output: Output) -> anyhow::Result<Ended> {
    let (_metrics, mut checks) = match build(&config)? {
        Ok(built) => built,
        Err(error) => return Ok(Ended::Config(error)),
    };
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
    for (index, run) in futures_util::future::join_all(runs).await.into_iter().enumerate() {
        state.record(index, run);
    }

    let readiness = state.readiness(Instant::now(), &[]);
    match output {
        Output::Text => print!("{}", render::readyz_verbose(&readiness, &[], true)),
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
                config: &serde_json::value::to_raw_value(&config).unwrap_or_default(),
            };
            println!("{}", serde_json::to_string_pretty(&render::diag_json(&input))?);
        }
    }
    Ok(Ended::Ok(if readiness.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }))
}

/// SIGTERM (the kubelet stopping the pod) and SIGINT (Ctrl-C).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
