//! The `postgres` check: is the database reachable, how fast does it answer, how full is it,
//! and what holds its connections.
//!
//! The agent opens two kinds of connections, both with `application_name=vigil`:
//!
//! - a small deadpool pool (`pool_size`, default 2, with wait/create/recycle timeouts): each run
//!   times `SELECT 1` on it, which also proves that the server still accepts *new* clients;
//! - one **kept** connection, opened once and re-opened when it drops. When the server is full
//!   (`too many clients`, SQLSTATE 53300) a new connection is refused but the kept one still
//!   works, so vigil reads the server's figures and says "saturated" instead of "down". Its
//!   driver task rings the check's [`Wake`] when it ends (server killed or restarted), so the
//!   scheduler runs the check at once instead of waiting out the interval.
//!
//! Hysteresis stays the scheduler's: a run that fails after a loss of the kept connection asks
//! to be confirmed ([`Rerun::Confirm`]); the scheduler grants up to `failure_threshold - 1`
//! immediate re-runs, so a dead server is reported within one `timeout` of the event, while a
//! blip that passes on the re-run never flips the status. While the port then refuses, the run
//! asks to look again every `fast_retry` so that a restarted server is seen within a second.
//!
//! Every run is cancel-safe: the kept connection is stored only once fully opened (an opened
//! connection dropped by a cut run is retired quietly), and the pool hands connections back on
//! drop.
//!
//! Why the database is slow or full (blocked queries and their root blocker, idle transactions,
//! the tightest limit, primary or standby) is read by the same statement ([`queries`]) and judged
//! in [`why`]; the connection budget across replicas ([`budget`]) also reads the facts board (the
//! gateway's pool max, the replica count), which other parts of the agent post to.

pub(crate) mod bounded;
mod budget;
pub(crate) mod config;
pub(crate) mod connect;
pub(crate) mod errors;
pub(crate) mod metrics;
mod queries;
mod report;
mod sql_text;
pub(crate) mod tls;
pub(crate) mod url;
mod why;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value as Json;
use tokio::time::timeout_at;
use tokio_postgres::Client;
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::budget::Budget;
use self::config::{Postgres, PostgresKeys};
use self::errors::{LONG_QUERY_HINT, Target, classify, classify_pool};
use self::metrics::PostgresMetrics;
use self::queries::{Statements, Stats, read_stats};
use self::tls::SslMode;
use self::url::ClientCertFiles;
use crate::checks::cert;
use crate::checks::facts::Facts;
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled, Wake};
use crate::config::{CheckSettings, EnvAlias, Invalid, Scope};
use crate::core::outcome::{ComponentType, FailureKind, Finding, Outcome, Report, Rerun, Status};
use crate::core::{fmt, text};

/// The `application_name` of every connection the agent opens, so that it can be told apart
/// in `pg_stat_activity` (and left out of a DBA's "who holds the connections").
pub(crate) const APPLICATION_NAME: &str = "vigil";

/// Watches one PostgreSQL server; see the module docs.
pub(crate) struct PostgresCheck {
    pg_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    sslmode: SslMode,
    target: Target,
    pool: Pool,
    /// What every step of a run may take together: 90% of `timeout`, so that the check reports
    /// its own, more precise timeout (connecting, waiting for the pool) before the scheduler
    /// cuts the run.
    budget: Duration,
    /// The configured `timeout`: what timeout reasons name ("timed out … after 2s", as SPEC
    /// words it), while `budget` is what the steps may really take.
    timeout: Duration,
    saturation_warn: f64,
    saturation_fail: f64,
    long_query: Duration,
    lock_wait: Duration,
    idle_in_transaction_warn: Duration,
    require_primary: bool,
    statements: Statements,
    /// `server_version_num` as the last statement read it: picks the statement for the server.
    version_num: Option<i32>,
    /// Where the connection budget's inputs are read (the gateway's pool, the replica count).
    facts: Arc<Facts>,
    client_cert: Option<ClientCertFiles>,
    metrics: PostgresMetrics,
    kept: Option<Kept>,
    /// Rung by the kept connection's driver when the connection ends.
    wake: Wake,
    /// The last loss of the kept connection, written by its driver, shown in `/diag`.
    last_loss: Arc<Mutex<Option<(SystemTime, String)>>>,
    /// The kept connection was lost and no run has passed since: a failing run asks to be
    /// confirmed, and while the port refuses, to look again every `fast_retry`.
    lost: bool,
    fast_retry: Duration,
    /// The expiry of the chain the server presented on the latest TLS connection, and its judge.
    seen_expiry: tls::SeenExpiry,
    expiry: cert::Expiry,
}

/// While the server's certificate is near its expiry, how old the kept connection may grow
/// before it is opened afresh to see whether the certificate was renewed (an expired one is
/// looked at again every run): the chain is only shown at a handshake.
const CERT_RECHECK: Duration = Duration::from_secs(300);

/// The kept connection.
struct Kept {
    client: Client,
    since: SystemTime,
    /// The statement for this server (its version, as reported at the connection) and how it
    /// is sent.
    sql: String,
    plan: queries::Plan,
    /// Set when vigil drops the connection itself, so that its end does not ring the wake.
    retired: Arc<AtomicBool>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.retired.store(true, Ordering::SeqCst);
    }
}

/// What one run measured, before it is exported and judged.
struct Measured {
    query_duration: Option<Duration>,
    stats: Option<Stats>,
    pool: deadpool_postgres::Status,
    /// Opening the kept connection failed (this run needed one).
    kept_error: Option<Finding>,
    /// Taking a pooled connection or `SELECT 1` on it failed.
    probe_error: Option<Finding>,
    /// A new connection was refused with SQLSTATE 53300: for which limit.
    refused_by: Option<why::Scope>,
    /// The connection budget across replicas (with the server's figures), and its account.
    budget: Option<Budget>,
    budget_details: Option<Json>,
    /// Why the server's figures could not be read, when they could not.
    stats_error: Option<Finding>,
}

impl Measured {
    /// Something answered: the kept connection, or the pool's query.
    fn up(&self, kept_open: bool) -> bool {
        kept_open || self.query_duration.is_some()
    }

    /// The server said "too many clients": it is up, only full.
    fn answered_full(&self) -> bool {
        [&self.kept_error, &self.probe_error]
            .iter()
            .any(|f| f.as_ref().is_some_and(|f| f.kind == FailureKind::TooManyClients))
    }
}

/// The `postgres` kind: `[postgres]`, or `DATABASE_URL` alone; critical and shared by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = PostgresKeys;
    type Section = Postgres;
    const TABLE: &'static str = "postgres";
    const CRITICAL: bool = true;
    const SCOPE: Scope = Scope::Shared;
    const ENV_ALIAS: Option<&'static EnvAlias> = Some(&EnvAlias {
        var: "DATABASE_URL",
        key: "url",
        unless: &["url", "url_file"],
    });
    const SECRET_KEYS: &'static [&'static str] = &["url"];

    fn resolve(keys: PostgresKeys, _at: &str, _settings: &CheckSettings) -> Result<Postgres, Invalid> {
        keys.resolve()
    }

    /// The URL's ports over TCP (libpq's default 5432 when it names none); none when it names
    /// only Unix sockets.
    fn remote_ports(section: &Postgres) -> Vec<u16> {
        let config = &section.target.config;
        let tcp = config
            .get_hosts()
            .iter()
            .any(|host| matches!(host, tokio_postgres::config::Host::Tcp(_)));
        if !tcp {
            return Vec::new();
        }
        let mut ports = match config.get_ports() {
            [] => vec![5432],
            ports => ports.to_vec(),
        };
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    fn build(
        section: &Postgres,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        Ok(Scheduled::new(
            name,
            *settings,
            PostgresCheck::new(section, settings, name, cx)?,
        ))
    }
}

impl PostgresCheck {
    /// Builds the check without connecting (there is no runtime yet): connections open in
    /// the first run.
    pub(crate) fn new(
        config: &Postgres,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<PostgresCheck, BuildError> {
        let metrics = cx.metrics;
        let error = |message: String| BuildError::new("postgres", message);
        let parsed = &config.target;
        let (connector, seen_expiry) =
            tls::connector(parsed.sslmode, parsed.root_cert.as_deref(), parsed.client_cert.as_ref())
                .map_err(|e| error(format!("postgres.url: {e}")))?;
        let budget = settings.timeout.mul_f64(0.9);
        let mut pg_config = parsed.config.clone();
        pg_config.application_name(APPLICATION_NAME).connect_timeout(budget);
        let target = target_of(&pg_config).map_err(error)?;

        // The pool opens its connections as the kept one is opened: bounded (see `bounded`).
        let manager = Manager::from_connect(
            pg_config.clone(),
            connect::PoolConnect { tls: connector.clone() },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(budget))
            .create_timeout(Some(budget))
            .recycle_timeout(Some(budget))
            .build()
            .map_err(|e| error(format!("cannot build the connection pool: {e}")))?;
        let expiry = cert::Expiry::new("postgres", &metrics.tls_cert_expiry_timestamp_seconds, config.cert_warn);
        let metrics = PostgresMetrics::register(metrics, name).map_err(|e| error(e.to_string()))?;

        Ok(PostgresCheck {
            pg_config,
            tls: connector,
            sslmode: parsed.sslmode,
            target,
            pool,
            budget,
            timeout: settings.timeout,
            saturation_warn: config.saturation_warn,
            saturation_fail: config.saturation_fail,
            long_query: config.long_query,
            lock_wait: config.lock_wait,
            idle_in_transaction_warn: config.idle_in_transaction_warn,
            require_primary: config.require_primary,
            statements: Statements::new(config.long_query, config.lock_wait, config.idle_in_transaction_warn),
            version_num: None,
            facts: Arc::clone(&cx.facts),
            client_cert: parsed.client_cert.clone(),
            metrics,
            kept: None,
            wake: Wake::new(),
            last_loss: Arc::default(),
            lost: false,
            fast_retry: (settings.interval / 5).min(Duration::from_secs(1)),
            seen_expiry,
            expiry,
        })
    }

    /// Opens the kept connection and spawns its driver (tokio-postgres needs one per
    /// connection), which rings the wake when the connection ends without vigil having retired
    /// it.
    async fn connect_kept(&self, deadline: tokio::time::Instant) -> Result<Kept, (Finding, Option<why::Scope>)> {
        let connecting = connect::connect(&self.pg_config, &self.tls);
        let (client, connection) = match timeout_at(deadline, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err((classify(&e, &self.target, self.timeout), errors::refusal(&e))),
            Err(_) => return Err((errors::timeout(&self.target, "connecting to", self.timeout), None)),
        };
        // The version the server reported at start-up picks the statement (a server of unknown
        // version gets the one every version understands).
        let version_num = connection
            .parameter("server_version")
            .and_then(queries::version_num)
            .or(self.version_num);
        let retired = Arc::new(AtomicBool::new(false));
        let quiet = Arc::clone(&retired);
        let wake = self.wake.clone();
        let last_loss = Arc::clone(&self.last_loss);
        tokio::spawn(async move {
            // The server's words: one printable line, bounded, before the log and /diag see them.
            let why = match connection.await {
                Ok(()) => "closed".to_owned(),
                Err(e) => match e.as_db_error() {
                    Some(db) => text::one_line(db.message(), text::REASON_MAX).into_owned(),
                    None => text::one_line(&e.to_string(), text::REASON_MAX).into_owned(),
                },
            };
            if !quiet.load(Ordering::SeqCst) {
                tracing::warn!(check = "postgres", reason = %why, "Kept PostgreSQL connection lost; checking again at once");
                *last_loss.lock().unwrap_or_else(PoisonError::into_inner) = Some((SystemTime::now(), why));
                wake.ring();
            }
        });
        Ok(Kept {
            client,
            since: SystemTime::now(),
            sql: self.statements.for_version(version_num).to_owned(),
            plan: queries::Plan::default(),
            retired,
        })
    }

    /// One run: measure, export, judge, and say what the scheduler should do next.
    async fn run(&mut self) -> Outcome {
        if self.kept.as_ref().is_some_and(|k| k.client.is_closed()) {
            // Closed without vigil retiring it: the server went away (the driver rang).
            self.kept = None;
            self.lost = true;
        }
        self.recheck_certificate();
        let measured = self.measure().await;
        self.export(&measured);
        let details = self.details(&measured);
        let observations = self.observations(&measured);
        let mut report = Report::new();
        report.find_all(self.judge(measured));
        report.find_all(self.expiry.judge(self.last_expiry()));
        report.observe_all(observations);
        report.details(details);
        let worst = report.worst();
        let refused =
            report.findings().iter().find(|f| f.status == worst).map(|f| f.kind) == Some(FailureKind::Refused);
        report.rerun(match worst {
            Status::Fail if self.lost && refused => Rerun::ConfirmThenEvery(self.fast_retry),
            Status::Fail if self.lost => Rerun::Confirm,
            _ => Rerun::Scheduled,
        });
        if worst != Status::Fail {
            self.lost = false;
        }
        report.into_outcome()
    }

    fn last_expiry(&self) -> Option<SystemTime> {
        *self.seen_expiry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Retires the kept connection when the certificate it was shown is expired, or near its
    /// expiry and seen more than [`CERT_RECHECK`] ago, so that this run's fresh handshake tells
    /// whether the server has a renewed one (a server reloads its certificate without dropping
    /// the connections it has).
    fn recheck_certificate(&mut self) {
        let Some(not_after) = self.last_expiry() else { return };
        if !self.expiry.is_near(not_after) {
            return;
        }
        let expired = not_after <= SystemTime::now();
        let old = self
            .kept
            .as_ref()
            .is_some_and(|k| k.since.elapsed().unwrap_or_default() >= CERT_RECHECK);
        if expired || old {
            self.kept = None;
        }
    }

    /// Opening the kept connection (when it is missing) and the pool's timed query go
    /// concurrently, so that an unreachable server costs one budget, not two; then the
    /// server's figures are read from the kept connection (it works when the server is full),
    /// else from the pool's.
    async fn measure(&mut self) -> Measured {
        let deadline = tokio::time::Instant::now() + self.budget;
        let need_kept = self.kept.is_none();
        let pool = self.pool.clone();
        let (connected, probed) = {
            let this = &*self;
            let connect = async move {
                match need_kept {
                    true => Some(this.connect_kept(deadline).await),
                    false => None,
                }
            };
            tokio::join!(connect, probe(&pool, &this.target, deadline, this.timeout))
        };
        let (kept_error, kept_refused) = match connected {
            Some(Ok(kept)) => {
                self.kept = Some(kept);
                (None, None)
            }
            Some(Err((failure, refused))) => (Some(failure), refused),
            None => (None, None),
        };
        let (query_duration, pooled, probe_error, probe_refused) = match probed {
            Ok((duration, client)) => (Some(duration), Some(client), None, None),
            Err((failure, refused)) => (None, None, Some(failure), refused),
        };

        let mut stats = None;
        let mut stats_error = None;
        // Whether the server itself refused the statement on the kept connection (a
        // statement_timeout, an error): then it is not sent again on a pooled one, which would
        // double the heaviest query of the run on a database that is struggling.
        let mut refused_by_server = false;
        if let Some(kept) = &mut self.kept {
            let plan = Some(&mut kept.plan);
            let read = read(&kept.client, &kept.sql, plan, deadline, &self.target, self.timeout).await;
            // A kept connection that stopped answering (a silent network partition leaves it
            // "open" for hours) is retired, so that the next run opens a fresh one.
            if read.as_ref().is_err_and(|f| f.kind == FailureKind::Timeout) {
                self.kept = None;
            }
            let connection_lost = self.kept.as_ref().is_none_or(|k| k.client.is_closed());
            match read {
                Ok(read) => stats = Some(read),
                Err(failure) => {
                    // A session ended by the server (terminated, shut down) reads as Refused and
                    // may not be seen closed yet: the pool's connection is asked then.
                    refused_by_server = !connection_lost && failure.kind != FailureKind::Refused;
                    stats_error = Some(failure);
                }
            }
        }
        if stats.is_none()
            && !refused_by_server
            && let Some(client) = &pooled
        {
            let sql = self.statements.for_version(self.version_num);
            match read(client, sql, None, deadline, &self.target, self.timeout).await {
                Ok(read) => stats = Some(read),
                Err(failure) => stats_error = Some(failure),
            }
        }
        drop(pooled);
        if let Some(s) = &stats {
            self.version_num = s.why.version_num;
        }
        let (budget, budget_details) = match &stats {
            Some(s) => {
                let (budget, shown) = budget::assess(s, &self.facts);
                (budget, Some(shown))
            }
            None => (None, None),
        };
        Measured {
            query_duration,
            stats,
            pool: self.pool.status(),
            kept_error,
            probe_error,
            refused_by: probe_refused.or(kept_refused),
            budget,
            budget_details,
            stats_error,
        }
    }

    /// What the run's measurements find wrong (nothing: pass).
    fn judge(&self, m: Measured) -> Vec<Finding> {
        let up = m.up(self.kept.is_some());
        let found = match (up, &m.stats, m.probe_error) {
            (false, _, probe_error) => m
                .kept_error
                .or(probe_error)
                .unwrap_or_else(|| Finding::fail(FailureKind::Protocol, "no answer from the server")),
            (true, Some(s), Some(failure)) if failure.kind == FailureKind::TooManyClients => {
                let mut findings = vec![why::refused(m.refused_by.unwrap_or(why::Scope::Server), s)];
                findings.extend(
                    self.assess(s, m.budget.as_ref())
                        .into_iter()
                        .filter(|f| f.status != Status::Fail),
                );
                return findings;
            }
            (true, _, Some(failure)) => failure,
            (true, None, None) => Finding::warn(
                FailureKind::Protocol,
                match m.stats_error {
                    Some(why) => format!(
                        "SELECT 1 works but the server's figures (pg_stat_activity, settings) cannot be read: {}",
                        why.reason
                    ),
                    None => {
                        "SELECT 1 works but the server's figures (pg_stat_activity, settings) cannot be read".to_owned()
                    }
                },
            )
            .with_hint("see vigil's log and the server's log; the agent's role needs only to connect"),
            (true, Some(s), None) => return self.assess(s, m.budget.as_ref()),
        };
        vec![found]
    }

    /// The findings of a server that answered: primary or standby, the tightest limit's
    /// saturation, long queries, blocked queries, idle transactions, the budget.
    fn assess(&self, s: &Stats, budget: Option<&Budget>) -> Vec<Finding> {
        let mut findings = Vec::new();
        let limits = why::limits(s);
        if let Some(tightest) = why::tightest(&limits) {
            let (top, _) = s.by_application();
            let top = top.first().map(|(name, n)| (name.as_str(), *n));
            findings.extend(why::saturation(
                tightest,
                self.saturation_warn,
                self.saturation_fail,
                top,
            ));
        }
        if s.long_queries > 0 {
            let longest = s
                .longest_queries
                .get(0)
                .map(|q| format!(" (longest {}s, pid {})", q["seconds"], q["pid"]))
                .unwrap_or_default();
            findings.push(
                Finding::warn(
                    FailureKind::Threshold,
                    format!(
                        "{} {} running longer than {}{longest}",
                        s.long_queries,
                        if s.long_queries == 1 { "query" } else { "queries" },
                        fmt::duration(self.long_query)
                    ),
                )
                .with_hint(LONG_QUERY_HINT),
            );
        }
        findings.extend(why::findings(
            s,
            self.lock_wait,
            self.idle_in_transaction_warn,
            self.require_primary,
        ));
        findings.extend(budget.and_then(Budget::finding));
        findings
    }
}

impl Check for PostgresCheck {
    fn component_type(&self) -> ComponentType {
        ComponentType::Datastore
    }

    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(PostgresCheck::run(self))
    }

    fn wake(&self) -> Option<Wake> {
        Some(self.wake.clone())
    }
}

/// Takes a connection from the pool and times `SELECT 1` on it.
/// A refusal with SQLSTATE 53300 also says for which limit.
async fn probe(
    pool: &Pool,
    target: &Target,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(Duration, deadpool_postgres::Object), (Finding, Option<why::Scope>)> {
    let client = match timeout_at(deadline, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err((classify_pool(&e, target, timeout), errors::pool_refusal(&e))),
        Err(_) => return Err((errors::timeout(target, "connecting to", timeout), None)),
    };
    let started = Instant::now();
    match timeout_at(deadline, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok((started.elapsed(), client)),
        Ok(Err(e)) => Err((classify(&e, target, timeout), errors::refusal(&e))),
        Err(_) => Err((errors::timeout(target, "waiting for SELECT 1 on", timeout), None)),
    }
}

async fn read(
    client: &Client,
    sql: &str,
    plan: Option<&mut queries::Plan>,
    deadline: tokio::time::Instant,
    target: &Target,
    timeout: Duration,
) -> Result<Stats, Finding> {
    match timeout_at(deadline, read_stats(client, sql, plan)).await {
        Ok(Ok(Some(stats))) => Ok(stats),
        Ok(Ok(None)) => Err(errors::protocol(target, "the statistics statement returned no row")),
        Ok(Err(e)) => {
            let failure = classify(&e, target, timeout);
            tracing::debug!(check = "postgres", reason = %failure.reason, "Reading the server's figures failed");
            Err(failure)
        }
        Err(_) => Err(errors::timeout(target, "reading figures from", timeout)),
    }
}

pub(crate) fn target_of(config: &tokio_postgres::Config) -> Result<Target, String> {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (display, dns_name) = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            let is_name = host.parse::<std::net::IpAddr>().is_err();
            (format!("{host}:{port}"), is_name.then(|| host.clone()))
        }
        #[cfg(unix)]
        Some(Host::Unix(dir)) => (format!("{}/.s.PGSQL.{port}", dir.display()), None),
        None => return Err("postgres.url: names no host".to_owned()),
    };
    let user = config.get_user().unwrap_or_default().to_owned();
    let dbname = config.get_dbname().map_or_else(|| user.clone(), str::to_owned);
    Ok(Target {
        display,
        dns_name,
        user,
        dbname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_host_port_user_and_database() {
        let config: tokio_postgres::Config = "postgres://gw:pw@db.example:6432/gateway".parse().unwrap();
        let t = target_of(&config).unwrap();
        assert_eq!(t.display, "db.example:6432");
        assert_eq!(t.dns_name.as_deref(), Some("db.example"));
        assert_eq!((t.user.as_str(), t.dbname.as_str()), ("gw", "gateway"));
        let config: tokio_postgres::Config = "postgres://gw@127.0.0.1/".parse().unwrap();
        let t = target_of(&config).unwrap();
        assert_eq!(
            (t.display.as_str(), t.dns_name, t.dbname.as_str()),
            ("127.0.0.1:5432", None, "gw")
        );
    }
}
