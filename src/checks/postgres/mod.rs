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
//!   driver task rings the check's rerun signal when it ends (server killed or restarted), so
//!   the scheduler runs the check at once instead of waiting out the interval.
//!
//! Hysteresis stays the scheduler's: after a loss of the kept connection, a failing run asks
//! for up to `failure_threshold - 1` immediate re-runs to confirm, so a dead server is reported
//! within one `timeout` of the event, while a blip that passes on the re-run never flips the
//! status.
//!
//! Every run is cancel-safe: the kept connection is stored only once fully opened (an opened
//! connection dropped by a cut run is retired quietly), and the pool hands connections back on
//! drop.

mod errors;
mod queries;
mod tls;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::{Value as Json, json};
use tokio::sync::Notify;
use tokio::time::timeout_at;
use tokio_postgres::Client;
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use self::errors::{LONG_QUERY_HINT, PgFailure, SATURATION_HINT, Target, classify, classify_pool};
use self::queries::{Stats, read_stats, stats_sql};
use self::tls::SslMode;
use crate::checks::{BuildError, Check, ComponentType, FailureKind, Observation, Outcome, RunFuture, Unit};
use crate::config::{Postgres, show};
use crate::metrics::{Metrics, POSTGRES_CONNECTION_STATES, PostgresMetrics};

/// The `application_name` of every connection the agent opens, so that it can be told apart
/// in `pg_stat_activity` (and left out of a DBA's "who holds the connections").
pub const APPLICATION_NAME: &str = "vigil";

/// Watches one PostgreSQL server; see the module docs.
pub struct PostgresCheck {
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
    stats_sql: String,
    metrics: PostgresMetrics,
    kept: Option<Kept>,
    events: Arc<Events>,
    /// How soon to look again while a lost server refuses connections.
    fast_retry: Duration,
}

/// The kept connection.
struct Kept {
    client: Client,
    since: SystemTime,
    /// Set when vigil drops the connection itself, so that its end does not ring the rerun.
    retired: Arc<AtomicBool>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.retired.store(true, Ordering::SeqCst);
    }
}

/// Shared between the check and the kept connection's driver task.
struct Events {
    rerun: Arc<Notify>,
    /// Immediate confirmation re-runs still allowed after the last loss of the kept connection.
    confirm_left: AtomicU32,
    failure_threshold: u32,
    /// When the driver last rang: at most one ring per second, so a server that drops every
    /// new connection at once cannot drive the check in a tight loop. A loss within that second
    /// rings when the second is over (see `ring_pending`), never not at all: a database that
    /// crashes again right after its restart is the case where the fast path matters most.
    last_ring: Mutex<Option<Instant>>,
    /// A deferred ring is scheduled.
    ring_pending: AtomicBool,
    /// The last loss of the kept connection, for `/diag`.
    last_loss: Mutex<Option<(SystemTime, String)>>,
    /// Set by a loss of the kept connection, cleared by a run that does not fail: while set and
    /// the port refuses, the check retries every `fast_retry` to see the server come back.
    lost: AtomicBool,
    /// A fast retry is scheduled.
    retry_pending: AtomicBool,
}

/// The least time between two rings of the rerun signal by lost connections.
const RING_SPACING: Duration = Duration::from_secs(1);

impl Events {
    /// Called by the kept connection's driver (inside the runtime) when the connection ends.
    fn connection_lost(self: &Arc<Self>, why: String) {
        *self.last_loss.lock().unwrap_or_else(PoisonError::into_inner) = Some((SystemTime::now(), why));
        self.lost.store(true, Ordering::SeqCst);
        self.confirm_left
            .store(self.failure_threshold.saturating_sub(1), Ordering::SeqCst);
        let mut last = self.last_ring.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = last.map_or(Duration::ZERO, |at| RING_SPACING.saturating_sub(at.elapsed()));
        if wait.is_zero() {
            *last = Some(Instant::now());
            self.rerun.notify_one();
        } else if !self.ring_pending.swap(true, Ordering::SeqCst) {
            let events = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                *events.last_ring.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                events.ring_pending.store(false, Ordering::SeqCst);
                events.rerun.notify_one();
            });
        }
    }
}

fn build_error(message: String) -> BuildError {
    BuildError {
        check: "postgres".to_owned(),
        message,
    }
}

/// Replaces the URL's password, should a parser ever echo it.
fn redact(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "<redacted>"),
        None => message.to_owned(),
    }
}

impl PostgresCheck {
    /// Builds the check without connecting (there is no runtime yet): connections open in
    /// the first run.
    pub fn new(config: &Postgres, metrics: &Metrics) -> Result<PostgresCheck, BuildError> {
        let url = config
            .url
            .as_ref()
            .map(|u| u.expose().as_str())
            .ok_or_else(|| build_error("postgres.url: required".to_owned()))?;
        let options =
            tls::split_tls_options(url).map_err(|e| build_error(format!("postgres.url: {}", redact(&e, url))))?;
        let mut pg_config: tokio_postgres::Config = options.rest.parse().map_err(|e: tokio_postgres::Error| {
            build_error(format!(
                "postgres.url: cannot be parsed: {}",
                redact(&e.to_string(), url)
            ))
        })?;
        let connector = tls::connector(options.mode, options.root_cert.as_deref())
            .map_err(|e| build_error(format!("postgres.url: {e}")))?;
        let settings = config.settings;
        let budget = settings.timeout.mul_f64(0.9);
        pg_config
            .application_name(APPLICATION_NAME)
            .ssl_mode(options.mode.for_driver())
            .connect_timeout(budget);
        let target = target_of(&pg_config).map_err(build_error)?;

        let manager = Manager::from_config(
            pg_config.clone(),
            connector.clone(),
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
            .map_err(|e| build_error(format!("cannot build the connection pool: {e}")))?;
        let metrics = PostgresMetrics::register(metrics).map_err(|e| build_error(e.to_string()))?;

        Ok(PostgresCheck {
            pg_config,
            tls: connector,
            sslmode: options.mode,
            target,
            pool,
            budget,
            timeout: settings.timeout,
            saturation_warn: config.saturation_warn,
            saturation_fail: config.saturation_fail,
            long_query: config.long_query,
            stats_sql: stats_sql(config.long_query),
            metrics,
            kept: None,
            events: Arc::new(Events {
                rerun: Arc::new(Notify::new()),
                confirm_left: AtomicU32::new(0),
                failure_threshold: settings.failure_threshold,
                last_ring: Mutex::new(None),
                last_loss: Mutex::new(None),
                lost: AtomicBool::new(false),
                retry_pending: AtomicBool::new(false),
                ring_pending: AtomicBool::new(false),
            }),
            fast_retry: (settings.interval / 5).min(Duration::from_secs(1)),
        })
    }

    /// Opens the kept connection and spawns its driver, which rings the rerun signal when the
    /// connection ends without vigil having retired it.
    async fn connect_kept(&self, deadline: tokio::time::Instant) -> Result<Kept, PgFailure> {
        let connecting = self.pg_config.connect(self.tls.clone());
        let (client, connection) = match timeout_at(deadline, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(classify(&e, &self.target, self.timeout)),
            Err(_) => return Err(PgFailure::timeout(&self.target, "connecting to", self.timeout)),
        };
        let retired = Arc::new(AtomicBool::new(false));
        let events = Arc::clone(&self.events);
        let quiet = Arc::clone(&retired);
        tokio::spawn(async move {
            let why = match connection.await {
                Ok(()) => "closed".to_owned(),
                Err(e) => e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned()),
            };
            if !quiet.load(Ordering::SeqCst) {
                tracing::warn!(check = "postgres", reason = %why, "Kept PostgreSQL connection lost; checking again at once");
                events.connection_lost(why);
            }
        });
        Ok(Kept {
            client,
            since: SystemTime::now(),
            retired,
        })
    }

    /// One run. Opening the kept connection (when it is missing) and the pool's timed query go
    /// concurrently, so that an unreachable server costs one budget, not two; then the figures
    /// are read, exported and judged.
    async fn run_once(&mut self) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.budget;
        if self.kept.as_ref().is_some_and(|k| k.client.is_closed()) {
            self.kept = None;
        }
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
        let mut kept_error = None;
        match connected {
            Some(Ok(kept)) => self.kept = Some(kept),
            Some(Err(failure)) => kept_error = Some(failure),
            None => {}
        }

        let (query_duration, pooled, probe_error) = match probed {
            Ok((duration, client)) => (Some(duration), Some(client), None),
            Err(failure) => (None, None, Some(failure)),
        };
        if let Some(d) = query_duration {
            self.metrics.query_duration_seconds.observe(d.as_secs_f64());
        }

        // Figures from the kept connection first (it works when the server is full), else from
        // the pool's.
        let mut stats = None;
        if let Some(kept) = &self.kept {
            let read = read(&kept.client, &self.stats_sql, deadline, &self.target, self.timeout).await;
            // A kept connection that stopped answering (a silent network partition leaves it
            // "open" for hours) is retired, so that the next run opens a fresh one.
            if read.as_ref().is_err_and(|f| f.kind == FailureKind::Timeout) {
                self.kept = None;
            }
            stats = Some(read);
        }
        if !matches!(stats, Some(Ok(_)))
            && let Some(client) = &pooled
        {
            stats = Some(read(client, &self.stats_sql, deadline, &self.target, self.timeout).await);
        }
        drop(pooled);

        let up = self.kept.is_some() || query_duration.is_some();
        // A server that answers "too many clients" is up, only full.
        let answered_full = [&kept_error, &probe_error]
            .iter()
            .any(|f| f.as_ref().is_some_and(|f| f.kind == FailureKind::TooManyClients));
        self.metrics.up.set(i64::from(up || answered_full));
        let pool_status = self.pool.status();
        let pool_in_use = pool_status.size.saturating_sub(pool_status.available);
        self.metrics
            .pool_connections
            .with_label_values(&["in_use"])
            .set(pool_in_use as i64);
        self.metrics
            .pool_connections
            .with_label_values(&["idle"])
            .set(pool_status.available as i64);
        self.metrics
            .pool_connections
            .with_label_values(&["waiting"])
            .set(pool_status.waiting as i64);

        let stats = match stats {
            Some(Ok(stats)) => {
                self.export(&stats);
                Some(stats)
            }
            Some(Err(_)) | None => {
                // Not read this run: a gap, not the last value (which would keep a saturation
                // alert firing while the server is down).
                self.metrics.connection_saturation_ratio.set(f64::NAN);
                None
            }
        };

        let mut observations = Vec::new();
        if let Some(d) = query_duration {
            observations.push(Observation::number("query_duration", d.as_secs_f64(), Unit::Seconds));
        }
        if let Some(s) = &stats {
            observations.extend([
                Observation::number("connections_in_use", s.connections_in_use as f64, Unit::Count),
                Observation::number("max_connections", s.usable() as f64, Unit::Count),
                Observation::number("saturation", s.saturation(), Unit::Ratio),
                Observation::number("long_queries", s.long_queries as f64, Unit::Count),
                Observation::text("in_recovery", s.in_recovery.to_string()),
                Observation::text("connections_by_state", s.by_state_line()),
                Observation::text("top_application_names", s.top_applications_line()),
            ]);
        }
        observations.extend([
            Observation::number("pool_in_use", pool_in_use as f64, Unit::Count),
            Observation::number("pool_idle", pool_status.available as f64, Unit::Count),
            Observation::number("pool_waiting", pool_status.waiting as f64, Unit::Count),
        ]);
        let details = self.details(stats.as_ref(), &pool_status, probe_error.as_ref(), kept_error.as_ref());

        let outcome = match (up, stats, probe_error) {
            (false, _, probe_error) => kept_error.or(probe_error).map_or_else(
                || Outcome::fail(FailureKind::Protocol, "no answer from the server"),
                PgFailure::into_outcome,
            ),
            (true, Some(s), Some(failure)) if failure.kind == FailureKind::TooManyClients => Outcome::fail(
                FailureKind::TooManyClients,
                format!(
                    "too many clients: {} of {} usable connections in use (saturation {}%)",
                    s.connections_in_use,
                    s.usable(),
                    percent(s.saturation())
                ),
            )
            .with_hint(SATURATION_HINT),
            (true, _, Some(failure)) => failure.into_outcome(),
            (true, None, None) => Outcome::warn(
                FailureKind::Protocol,
                "SELECT 1 works but the server's figures (pg_stat_activity, settings) cannot be read",
            )
            .with_hint("see vigil's log and the server's log; the agent's role needs only to connect"),
            (true, Some(s), None) => self.assess(&s),
        };
        outcome.with_observations(observations).with_details(details)
    }

    /// Pass, warn or fail from the figures of a server that answered.
    fn assess(&self, s: &Stats) -> Outcome {
        let saturation = s.saturation();
        let mut findings = Vec::new();
        let mut status = crate::checks::Status::Pass;
        if saturation >= self.saturation_fail {
            status = crate::checks::Status::Fail;
            findings.push(format!(
                "saturation {}% of {} usable connections (fail at {}%)",
                percent(saturation),
                s.usable(),
                percent(self.saturation_fail)
            ));
        } else if saturation >= self.saturation_warn {
            status = crate::checks::Status::Warn;
            findings.push(format!(
                "saturation {}% of {} usable connections (warn at {}%)",
                percent(saturation),
                s.usable(),
                percent(self.saturation_warn)
            ));
        }
        if s.long_queries > 0 {
            if status == crate::checks::Status::Pass {
                status = crate::checks::Status::Warn;
            }
            let longest = s
                .longest_queries
                .get(0)
                .map(|q| format!(" (longest {}s, pid {})", q["seconds"], q["pid"]))
                .unwrap_or_default();
            findings.push(format!(
                "{} {} running longer than {}{longest}",
                s.long_queries,
                if s.long_queries == 1 { "query" } else { "queries" },
                show(self.long_query)
            ));
        }
        let reason = findings.join("; ");
        let saturated = saturation >= self.saturation_warn;
        let hint = if saturated { SATURATION_HINT } else { LONG_QUERY_HINT };
        match status {
            crate::checks::Status::Pass => Outcome::pass(),
            crate::checks::Status::Warn => Outcome::warn(FailureKind::Threshold, reason).with_hint(hint),
            crate::checks::Status::Fail => Outcome::fail(FailureKind::Threshold, reason).with_hint(hint),
        }
    }

    fn export(&self, s: &Stats) {
        for state in POSTGRES_CONNECTION_STATES {
            let pg_name = match *state {
                "idle_in_transaction" => "idle in transaction",
                "idle_in_transaction_aborted" => "idle in transaction (aborted)",
                "fastpath_function_call" => "fastpath function call",
                other => other,
            };
            self.metrics
                .connections
                .with_label_values(&[*state])
                .set(s.in_state(pg_name));
        }
        self.metrics.max_connections.set(s.usable());
        self.metrics.connection_saturation_ratio.set(s.saturation());
    }

    fn details(
        &self,
        stats: Option<&Stats>,
        pool: &deadpool_postgres::Status,
        probe_error: Option<&PgFailure>,
        kept_error: Option<&PgFailure>,
    ) -> Json {
        let last_loss = self
            .events
            .last_loss
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|(at, why)| json!({"at": humantime::format_rfc3339_seconds(at).to_string(), "reason": why}));
        let mut details = json!({
            "target": self.target.display,
            "user": self.target.user,
            "database": self.target.dbname,
            "sslmode": self.sslmode.as_str(),
            "kept_connection": {
                "open": self.kept.is_some(),
                "since": self.kept.as_ref().map(|k| humantime::format_rfc3339_seconds(k.since).to_string()),
                "error": kept_error.map(|f| f.reason.clone()),
                "last_loss": last_loss,
            },
            "pool": {
                "max_size": pool.max_size,
                "size": pool.size,
                "in_use": pool.size.saturating_sub(pool.available),
                "idle": pool.available,
                "waiting": pool.waiting,
                "error": probe_error.map(|f| f.reason.clone()),
            },
            "long_query_threshold": show(self.long_query),
        });
        if let (Some(s), Json::Object(map)) = (stats, &mut details) {
            map.insert(
                "server".to_owned(),
                json!({
                    "version": s.server_version,
                    "in_recovery": s.in_recovery,
                    "max_connections": s.max_connections,
                    "superuser_reserved_connections": s.superuser_reserved_connections,
                    "reserved_connections": s.reserved_connections,
                    "usable_connections": s.usable(),
                }),
            );
            map.insert(
                "connections".to_owned(),
                json!({
                    "in_use": s.connections_in_use,
                    "saturation": s.saturation(),
                    "note": "client backends of every role, vigil's own included (its pool plus one kept connection, application_name=vigil)",
                    "by_state": s.by_state,
                    "top_application_names": s.top_applications,
                }),
            );
            map.insert(
                "long_queries".to_owned(),
                json!({"count": s.long_queries, "longest": s.longest_queries}),
            );
            if let Some(kept) = map.get_mut("kept_connection").and_then(Json::as_object_mut)
                && self.kept.is_some()
            {
                kept.insert("backend_pid".to_owned(), json!(s.backend_pid));
            }
        }
        details
    }

    /// After a failing run that follows a loss of the kept connection, asks for an immediate
    /// re-run until `failure_threshold` runs have confirmed it; any other result ends that.
    ///
    /// Then, while the port refuses connections (nothing listens, or the server is starting),
    /// asks for a run every `fast_retry` (at most 1 s), so that a restarted server is seen within
    /// a second rather than an interval. Only for `refused`: a refused connection costs the
    /// server nothing, while retrying faster against a server that times out would add load to
    /// a struggling one.
    fn after(&self, outcome: &Outcome) {
        let events = &self.events;
        if outcome.status != crate::checks::Status::Fail {
            events.confirm_left.store(0, Ordering::SeqCst);
            events.lost.store(false, Ordering::SeqCst);
            return;
        }
        let left = events.confirm_left.load(Ordering::SeqCst);
        if left > 0 {
            events.confirm_left.store(left - 1, Ordering::SeqCst);
            events.rerun.notify_one();
            return;
        }
        if outcome.kind == Some(FailureKind::Refused)
            && events.lost.load(Ordering::SeqCst)
            && !events.retry_pending.swap(true, Ordering::SeqCst)
        {
            let events = Arc::clone(events);
            let delay = self.fast_retry;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                events.retry_pending.store(false, Ordering::SeqCst);
                events.rerun.notify_one();
            });
        }
    }
}

impl Check for PostgresCheck {
    fn component_type(&self) -> ComponentType {
        ComponentType::Datastore
    }

    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(async move {
            let outcome = self.run_once().await;
            self.after(&outcome);
            outcome
        })
    }

    fn rerun_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.events.rerun))
    }
}

/// Takes a connection from the pool and times `SELECT 1` on it.
async fn probe(
    pool: &Pool,
    target: &Target,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(Duration, deadpool_postgres::Object), PgFailure> {
    let client = match timeout_at(deadline, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(classify_pool(&e, target, timeout)),
        Err(_) => return Err(PgFailure::timeout(target, "connecting to", timeout)),
    };
    let started = Instant::now();
    match timeout_at(deadline, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok((started.elapsed(), client)),
        Ok(Err(e)) => Err(classify(&e, target, timeout)),
        Err(_) => Err(PgFailure::timeout(target, "waiting for SELECT 1 on", timeout)),
    }
}

async fn read(
    client: &Client,
    sql: &str,
    deadline: tokio::time::Instant,
    target: &Target,
    timeout: Duration,
) -> Result<Stats, PgFailure> {
    match timeout_at(deadline, read_stats(client, sql)).await {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(e)) => {
            let failure = classify(&e, target, timeout);
            tracing::debug!(check = "postgres", reason = %failure.reason, "Reading the server's figures failed");
            Err(failure)
        }
        Err(_) => Err(PgFailure::timeout(target, "reading figures from", timeout)),
    }
}

fn percent(ratio: f64) -> i64 {
    (ratio * 100.0).round() as i64
}

fn target_of(config: &tokio_postgres::Config) -> Result<Target, String> {
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

    fn events(failure_threshold: u32) -> Events {
        Events {
            rerun: Arc::new(Notify::new()),
            confirm_left: AtomicU32::new(0),
            failure_threshold,
            last_ring: Mutex::new(None),
            last_loss: Mutex::new(None),
            lost: AtomicBool::new(false),
            retry_pending: AtomicBool::new(false),
            ring_pending: AtomicBool::new(false),
        }
    }

    #[tokio::test]
    async fn a_second_loss_within_a_second_rings_when_the_second_is_over() {
        let e = Arc::new(events(3));
        e.connection_lost("terminating connection due to administrator command".to_owned());
        assert_eq!(e.confirm_left.load(Ordering::SeqCst), 2, "threshold - 1 confirmations");
        tokio::time::timeout(Duration::from_millis(100), e.rerun.notified())
            .await
            .expect("the first loss rings at once");

        e.confirm_left.store(0, Ordering::SeqCst);
        let second = Instant::now();
        e.connection_lost("closed".to_owned());
        e.connection_lost("closed again".to_owned());
        assert_eq!(
            e.confirm_left.load(Ordering::SeqCst),
            2,
            "the second loss counts at once"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(500), e.rerun.notified())
                .await
                .is_err(),
            "but no second ring within the second"
        );
        tokio::time::timeout(Duration::from_secs(3), e.rerun.notified())
            .await
            .expect("it rings once the second is over");
        assert!(second.elapsed() >= Duration::from_millis(900));
        assert!(
            tokio::time::timeout(Duration::from_millis(1200), e.rerun.notified())
                .await
                .is_err(),
            "two losses in the second ring once"
        );
        let loss = e.last_loss.lock().unwrap().clone().unwrap();
        assert_eq!(loss.1, "closed again", "every loss is recorded for /diag");
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("bad postgres://u:s3cret@h/db s3cret", "postgres://u:s3cret@h/db"),
            "bad postgres://u:<redacted>@h/db <redacted>"
        );
        assert_eq!(redact("fine", "postgres://u@h/db"), "fine");
    }

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
