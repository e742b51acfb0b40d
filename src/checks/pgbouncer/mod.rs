//! The `pgbouncer` check: PgBouncer's own view of its pools, from its admin console. Behind
//! PgBouncer, PostgreSQL can be healthy while clients queue for a server connection: the
//! postgres check cannot see that queue, PgBouncer's `SHOW POOLS` can.
//!
//! One connection of its own to the console (the `pgbouncer` database, simple query protocol
//! only), kept between runs and opened again when it drops; one `SHOW POOLS` per run, its rows
//! bounded ([`MAX_ROWS`]). Per database (its users summed): clients active and waiting, server
//! connections active, idle and used, and the longest wait (`maxwait`). The judged databases are
//! `databases`, else every pool but the console's own. A wait over `wait_warn` warns and over
//! `wait_fail` fails, naming the pool; an unreachable console fails. Not critical by default
//! (PgBouncer's queue is a warning sign, not a reason to leave the Service), scope shared.
//!
//! The console speaks PostgreSQL's protocol, so the URL, TLS and error classes are the postgres
//! check's ([`crate::checks::postgres`]'s `url`, `tls` and `errors` modules); nothing is called of
//! the postgres check itself.

pub(crate) mod config;
pub(crate) mod metrics;

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use tokio::time::timeout_at;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};
use tokio_postgres_rustls::MakeRustlsConnect;

use self::config::{MAX_DATABASES, Pgbouncer, PgbouncerKeys};
use self::metrics::{CLIENT_STATES, PgbouncerMetrics, SERVER_STATES};
use crate::checks::cert;
use crate::checks::postgres::connect::connect as postgres_connect;
use crate::checks::postgres::errors::{self, Target, classify};
use crate::checks::postgres::{APPLICATION_NAME, target_of, tls};
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled};
use crate::config::{CheckSettings, Invalid, Scope};
use crate::core::fmt;
use crate::core::outcome::{ComponentType, FailureKind, Figure, Finding, Outcome, Report, Status, Unit};

/// The most `SHOW POOLS` rows read in a run (PgBouncer has one per database and user); past it
/// the rest are not read and the connection is opened afresh next run.
pub(crate) const MAX_ROWS: usize = 10_000;
/// How many pools (database, user) `/diag` lists.
const DIAG_POOLS: usize = 50;
/// The console's own database: not a pool of a server.
const CONSOLE: &str = "pgbouncer";

const CONNECT_HINT: &str = "is PgBouncer running and listening where the URL says (kubectl get pods; its log)? \
     The URL must name the admin console's database (pgbouncer) and a user in its stats_users or admin_users \
     with the right password (auth_file / auth_query)";
const WAIT_HINT: &str = "clients queue for a server connection: every server connection of the pool is busy \
     (SHOW POOLS on the console: sv_active at the pool size). Find the slow queries or idle transactions holding \
     them (the postgres check's /diag), or raise default_pool_size / max_db_connections within PostgreSQL's \
     max_connections";

const CLIENTS_WAITING: Figure = Figure::new("clients_waiting", Unit::Count);
const MAX_WAIT: Figure = Figure::new("max_wait", Unit::Seconds);
const POOLS: Figure = Figure::new("pools", Unit::Count);

/// The `pgbouncer` kind: `[pgbouncer]`; not critical, shared by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = PgbouncerKeys;
    type Section = Pgbouncer;
    const TABLE: &'static str = "pgbouncer";
    const CRITICAL: bool = false;
    const SCOPE: Scope = Scope::Shared;
    const SECRET_KEYS: &'static [&'static str] = &["url"];

    fn resolve(keys: PgbouncerKeys, _at: &str, _settings: &CheckSettings) -> Result<Pgbouncer, Invalid> {
        keys.resolve()
    }

    fn build(
        section: &Pgbouncer,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        Ok(Scheduled::new(
            name,
            *settings,
            PgbouncerCheck::new(section, settings, name, cx)?,
        ))
    }
}

/// Watches PgBouncer's pools; see the module docs.
pub(crate) struct PgbouncerCheck {
    pg_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    target: Target,
    databases: Vec<String>,
    wait_warn: Duration,
    wait_fail: Duration,
    /// The configured `timeout` (reasons name it) and what a run's steps may take (90% of it).
    timeout: Duration,
    budget: Duration,
    kept: Option<Client>,
    metrics: PgbouncerMetrics,
    seen_expiry: tls::SeenExpiry,
    expiry: cert::Expiry,
}

/// One database's pools, its users summed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Pools {
    clients: [f64; 2],
    servers: [f64; 3],
    /// The longest wait of a client, in seconds.
    max_wait: f64,
    users: usize,
}

/// What one `SHOW POOLS` read.
#[derive(Debug, Default)]
struct Read {
    by_database: BTreeMap<String, Pools>,
    /// The first [`DIAG_POOLS`] rows, for `/diag`.
    rows: Vec<Json>,
    truncated: bool,
}

impl PgbouncerCheck {
    fn new(
        config: &Pgbouncer,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<PgbouncerCheck, BuildError> {
        let error = |message: String| BuildError::new(name, message);
        let parsed = &config.target;
        let (connector, seen_expiry) =
            tls::connector(parsed.sslmode, parsed.root_cert.as_deref(), parsed.client_cert.as_ref())
                .map_err(|e| error(format!("pgbouncer.url: {e}")))?;
        let budget = settings.timeout.mul_f64(0.9);
        let mut pg_config = parsed.config.clone();
        pg_config.application_name(APPLICATION_NAME).connect_timeout(budget);
        let target = target_of(&pg_config).map_err(|e| error(e.replace("postgres.url", "pgbouncer.url")))?;
        let metrics = PgbouncerMetrics::register(cx.metrics, name).map_err(|e| error(e.to_string()))?;
        Ok(PgbouncerCheck {
            pg_config,
            tls: connector,
            target,
            databases: config.databases.clone(),
            wait_warn: config.wait_warn,
            wait_fail: config.wait_fail,
            timeout: settings.timeout,
            budget,
            kept: None,
            metrics,
            seen_expiry,
            expiry: cert::Expiry::new(name, &cx.metrics.tls_cert_expiry_timestamp_seconds, config.cert_warn),
        })
    }

    async fn run(&mut self) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut report = Report::new();
        let read = self.read(deadline).await;
        let not_after = *self.seen_expiry.lock().unwrap_or_else(PoisonError::into_inner);
        report.find_all(self.expiry.judge(not_after));
        report.detail(
            "console",
            json!({"target": self.target.display, "user": self.target.user}),
        );
        match read {
            Ok(read) => self.assess(read, &mut report),
            Err(failure) => {
                self.metrics.up.set(0);
                for vec in [
                    &self.metrics.clients,
                    &self.metrics.servers,
                    &self.metrics.max_wait_seconds,
                ] {
                    vec.reset();
                }
                report.detail("error", json!(failure.reason));
                report.find(failure.with_hint(CONNECT_HINT));
            }
        }
        report.into_outcome()
    }

    /// `SHOW POOLS` on the kept connection; when that connection turns out closed (PgBouncer
    /// restarted), on a new one opened in the same run: a lost connection is not a finding,
    /// only what a new one meets is.
    async fn read(&mut self, deadline: tokio::time::Instant) -> Result<Read, Finding> {
        if self.kept.as_ref().is_some_and(Client::is_closed) {
            self.kept = None;
        }
        if let Some(client) = self.kept.take() {
            match self.show_pools(&client, deadline).await {
                Ok(read) => {
                    if !read.truncated {
                        self.kept = Some(client);
                    }
                    return Ok(read);
                }
                Err((failure, closed)) if !closed => return Err(failure),
                Err(_) => {}
            }
        }
        let client = self.connect(deadline).await?;
        let read = self
            .show_pools(&client, deadline)
            .await
            .map_err(|(failure, _)| failure)?;
        if !read.truncated {
            self.kept = Some(client);
        }
        Ok(read)
    }

    async fn connect(&self, deadline: tokio::time::Instant) -> Result<Client, Finding> {
        // The postgres check's connect: the one resolver, and every message bounded in bytes.
        let connecting = postgres_connect(&self.pg_config, &self.tls);
        let (client, connection) = match timeout_at(deadline, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(classify(&e, &self.target, self.timeout)),
            Err(_) => return Err(errors::timeout(&self.target, "connecting to", self.timeout)),
        };
        // tokio-postgres needs a driver per connection; it ends when the client is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(check = "pgbouncer", %error, "PgBouncer console connection ended");
            }
        });
        Ok(client)
    }

    /// The pools, summed per database. The error says whether the connection was found closed.
    async fn show_pools(&self, client: &Client, deadline: tokio::time::Instant) -> Result<Read, (Finding, bool)> {
        let asked = async {
            let stream = client.simple_query_raw("SHOW POOLS").await?;
            let mut stream = std::pin::pin!(stream);
            let mut read = Read::default();
            let mut rows = 0;
            while let Some(message) = stream.next().await {
                if let SimpleQueryMessage::Row(row) = message? {
                    rows += 1;
                    if rows > MAX_ROWS {
                        read.truncated = true;
                        break;
                    }
                    add(&mut read, &row);
                }
            }
            Ok::<Read, tokio_postgres::Error>(read)
        };
        match timeout_at(deadline, asked).await {
            Ok(Ok(read)) => Ok(read),
            Ok(Err(e)) => Err((classify(&e, &self.target, self.timeout), e.is_closed())),
            Err(_) => Err((
                errors::timeout(&self.target, "waiting for SHOW POOLS on", self.timeout),
                false,
            )),
        }
    }

    /// Exports and judges the judged databases.
    fn assess(&self, read: Read, report: &mut Report) {
        self.metrics.up.set(1);
        let judged: Vec<(String, Pools)> = match self.databases.is_empty() {
            true => worst_pools(&read.by_database),
            // A listed database no client has used yet has no pool: nobody waits there.
            false => self
                .databases
                .iter()
                .map(|name| (name.clone(), read.by_database.get(name).cloned().unwrap_or_default()))
                .collect(),
        };
        for vec in [
            &self.metrics.clients,
            &self.metrics.servers,
            &self.metrics.max_wait_seconds,
        ] {
            vec.reset();
        }
        let mut shown = serde_json::Map::new();
        for (name, pools) in &judged {
            for (state, value) in CLIENT_STATES.iter().zip(pools.clients) {
                self.metrics
                    .clients
                    .with_label_values(&[name.as_str(), state])
                    .set(value);
            }
            for (state, value) in SERVER_STATES.iter().zip(pools.servers) {
                self.metrics
                    .servers
                    .with_label_values(&[name.as_str(), state])
                    .set(value);
            }
            self.metrics
                .max_wait_seconds
                .with_label_values(&[name])
                .set(pools.max_wait);
            shown.insert(
                name.clone(),
                json!({"clients_active": pools.clients[0], "clients_waiting": pools.clients[1],
                       "servers_active": pools.servers[0], "servers_idle": pools.servers[1],
                       "servers_used": pools.servers[2], "max_wait_seconds": pools.max_wait,
                       "users": pools.users, "in_show_pools": read.by_database.contains_key(name)}),
            );
            if let Some(finding) = judge(name, pools, self.wait_warn, self.wait_fail) {
                report.find(finding);
            }
        }
        let waiting: f64 = judged.iter().map(|(_, p)| p.clients[1]).sum();
        let max_wait = judged.iter().map(|(_, p)| p.max_wait).fold(0.0, f64::max);
        report.observe(CLIENTS_WAITING.of(waiting));
        report.observe(MAX_WAIT.of(max_wait));
        report.observe(POOLS.of(judged.len() as f64));
        report.detail("judged", Json::Object(shown));
        report.detail(
            "judging",
            json!({"databases": if self.databases.is_empty() { json!("every pool but the console's") } else { json!(self.databases) },
                   "wait_warn": fmt::duration(self.wait_warn), "wait_fail": fmt::duration(self.wait_fail)}),
        );
        report.detail("show_pools", json!({"rows": read.rows, "truncated": read.truncated}));
        if read.truncated {
            report.find(
                Finding::warn(
                    FailureKind::Protocol,
                    format!("SHOW POOLS has more than {MAX_ROWS} rows: the rest were not read"),
                )
                .with_hint("list the pools that matter in pgbouncer.databases"),
            );
        }
    }
}

/// Every pool but the console's, or past [`MAX_DATABASES`] of them the ones that wait the
/// longest (then have the most clients waiting): the quiet ones are left out, never one that
/// queues. In name order.
fn worst_pools(by_database: &BTreeMap<String, Pools>) -> Vec<(String, Pools)> {
    let mut pools: Vec<(&String, &Pools)> = by_database
        .iter()
        .filter(|(name, _)| name.as_str() != CONSOLE)
        .collect();
    if pools.len() > MAX_DATABASES {
        pools.sort_by(|(a_name, a), (b_name, b)| {
            b.max_wait
                .total_cmp(&a.max_wait)
                .then(b.clients[1].total_cmp(&a.clients[1]))
                .then(a_name.cmp(b_name))
        });
        pools.truncate(MAX_DATABASES);
        pools.sort_by_key(|(name, _)| *name);
    }
    pools.into_iter().map(|(name, p)| (name.clone(), p.clone())).collect()
}

/// A wait over the thresholds, naming the pool.
fn judge(name: &str, pools: &Pools, wait_warn: Duration, wait_fail: Duration) -> Option<Finding> {
    let waited = Duration::try_from_secs_f64(pools.max_wait.max(0.0)).unwrap_or(Duration::MAX);
    let (status, word, at) = match waited {
        w if w >= wait_fail => (Status::Fail, "fail", wait_fail),
        w if w >= wait_warn => (Status::Warn, "warn", wait_warn),
        _ => return None,
    };
    let waiting = pools.clients[1];
    let clients = if waiting == 1.0 { "client" } else { "clients" };
    let reason = format!(
        "pool {name}: {waiting} {clients} waiting for a server connection, the longest for {} ({word} at {})",
        fmt::seconds(waited),
        fmt::duration(at)
    );
    Some(Finding::of(status, FailureKind::Threshold, reason).with_hint(WAIT_HINT))
}

/// Adds one `SHOW POOLS` row to its database's sums (columns by name: they moved between
/// PgBouncer versions).
fn add(read: &mut Read, row: &SimpleQueryRow) {
    let text = |column: &str| row.try_get(column).ok().flatten();
    let number = |column: &str| text(column).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let Some(database) = text("database") else { return };
    let pools = read.by_database.entry(database.to_owned()).or_default();
    pools.users += 1;
    for (slot, column) in ["cl_active", "cl_waiting"].iter().enumerate() {
        pools.clients[slot] += number(column);
    }
    for (slot, column) in ["sv_active", "sv_idle", "sv_used"].iter().enumerate() {
        pools.servers[slot] += number(column);
    }
    let waited = number("maxwait") + number("maxwait_us") / 1e6;
    pools.max_wait = pools.max_wait.max(waited);
    if read.rows.len() < DIAG_POOLS {
        read.rows.push(json!({
            "database": database, "user": text("user"), "pool_mode": text("pool_mode"),
            "cl_active": number("cl_active"), "cl_waiting": number("cl_waiting"),
            "sv_active": number("sv_active"), "sv_idle": number("sv_idle"), "sv_used": number("sv_used"),
            "maxwait_seconds": waited,
        }));
    }
}

impl Check for PgbouncerCheck {
    fn component_type(&self) -> ComponentType {
        ComponentType::Datastore
    }

    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(PgbouncerCheck::run(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_series_cap_the_pools_that_queue_are_the_ones_judged() {
        let mut by_database: BTreeMap<String, Pools> =
            (0..150).map(|i| (format!("db{i:03}"), Pools::default())).collect();
        by_database.insert(CONSOLE.to_owned(), Pools::default());
        by_database.insert(
            "zzz".to_owned(),
            Pools {
                clients: [1.0, 3.0],
                max_wait: 4.0,
                ..Pools::default()
            },
        );
        let judged = worst_pools(&by_database);
        assert_eq!(judged.len(), MAX_DATABASES);
        assert!(
            judged.iter().any(|(name, _)| name == "zzz"),
            "the queueing pool sorts last by name"
        );
        assert!(judged.iter().all(|(name, _)| name != CONSOLE));
        assert!(judged.windows(2).all(|w| w[0].0 < w[1].0), "in name order");
    }

    #[test]
    fn a_wait_warns_then_fails_naming_the_pool() {
        let (warn, fail) = (Duration::from_secs(1), Duration::from_secs(3));
        let pools = |waited: f64, waiting: f64| Pools {
            clients: [2.0, waiting],
            max_wait: waited,
            ..Pools::default()
        };
        assert_eq!(judge("gateway", &pools(0.5, 1.0), warn, fail), None);
        let warned = judge("gateway", &pools(1.25, 1.0), warn, fail).unwrap();
        assert_eq!(warned.status, Status::Warn);
        assert_eq!(
            warned.reason,
            "pool gateway: 1 client waiting for a server connection, the longest for 1.25s (warn at 1s)"
        );
        let failed = judge("reports", &pools(3.5, 4.0), warn, fail).unwrap();
        assert_eq!(failed.status, Status::Fail);
        assert!(
            failed.reason.starts_with("pool reports: 4 clients waiting"),
            "{}",
            failed.reason
        );
        // maxwait is the console's text: "inf" and 1e20 parse, and fail rather than panic.
        for absurd in [f64::INFINITY, 1e20] {
            let failed = judge("gateway", &pools(absurd, 1.0), warn, fail).unwrap();
            assert_eq!(failed.status, Status::Fail, "{}", failed.reason);
        }
    }
}
