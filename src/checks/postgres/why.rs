//! Why the database is slow or full, from what the one statement read ([`Stats`]): the limit
//! that is tightest (the server's, the role's, the database's), blocked queries and the root of
//! their chain, sessions idle in transaction, the oldest transaction, and primary or standby.
//!
//! Pure functions of the figures and the configuration: what they find, observe, export and show
//! in `/diag`. Query text appears only in the `/diag` details, normalized at the parse.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::queries::{Session, Stats};
use crate::core::fmt;
use crate::core::outcome::{self, FailureKind, Figure, Finding, Observation, Unit};

/// What a person runs when the server itself is full: who holds the connections.
pub(super) const SATURATION_HINT: &str = "who holds the connections: SELECT usename, application_name, client_addr, state, count(*) \
     FROM pg_stat_activity GROUP BY 1,2,3,4 ORDER BY 5 DESC; look for `idle in transaction` and for pool size × \
     replicas above max_connections; kubectl exec -it <api-gateway-pod> -- netstat -an | grep :5432";

pub(super) const STANDBY_REASON: &str =
    "connected to a standby (in recovery): the gateway's writes fail; check the failover and the Service the URL names";
const STANDBY_HINT: &str = "which server is the primary now (SELECT pg_is_in_recovery() on each; your operator's or \
     cloud console's failover status), and does the URL's host (a Service, a DNS name) point at it? \
     kubectl get endpoints <database service>";
const BLOCKED_HINT: &str = "the blocker holds its locks until its transaction ends: SELECT pid, application_name, \
     client_addr, state, now() - xact_start AS open_for, left(query, 100) FROM pg_stat_activity WHERE pid = <pid>; \
     end it at the client (the job's COMMIT or ROLLBACK) or SELECT pg_terminate_backend(<pid>); \
     the blocked queries are in /diag";
const IDLE_HINT: &str = "a client opened a transaction and stopped talking (a missing COMMIT or ROLLBACK, I/O inside \
     a transaction): it holds a pool connection, its locks, and vacuum back; fix the client named; \
     SELECT pg_terminate_backend(<pid>) ends it; idle_in_transaction_session_timeout on the role prevents it";
pub(super) const LIMIT_HINT: &str = "who holds the connections: SELECT usename, datname, application_name, \
     client_addr, state, count(*) FROM pg_stat_activity GROUP BY 1,2,3,4,5 ORDER BY 6 DESC; a role's or database's \
     own limit: SELECT rolname, rolconnlimit FROM pg_roles; SELECT datname, datconnlimit FROM pg_database; \
     ALTER ROLE … CONNECTION LIMIT n raises it";

pub(super) const BLOCKED_QUERIES: Figure = Figure::new("blocked_queries", Unit::Count);
pub(super) const LOCK_WAIT_MAX: Figure = Figure::new("lock_wait_max", Unit::Seconds);
pub(super) const OLDEST_TRANSACTION: Figure = Figure::new("oldest_transaction", Unit::Seconds);
pub(super) const IDLE_IN_TRANSACTION_MAX: Figure = Figure::new("idle_in_transaction_max", Unit::Seconds);
pub(super) const REPLICATION_LAG: Figure = Figure::new("replication_lag", Unit::Seconds);

/// Which limit a figure or a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Server,
    Role,
    Database,
}

impl Scope {
    /// The `scope` label of `vigil_postgres_connection_limit`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Scope::Server => "server",
            Scope::Role => "role",
            Scope::Database => "database",
        }
    }

    /// Which limit a SQLSTATE 53300 message is about. PostgreSQL's own English messages:
    /// `sorry, too many clients already`, `remaining connection slots are reserved …` (the
    /// server's), `too many connections for role "…"`, `too many connections for database "…"`.
    pub(super) fn of_refusal(message: &str) -> Scope {
        if message.contains("for role") {
            Scope::Role
        } else if message.contains("for database") {
            Scope::Database
        } else {
            Scope::Server
        }
    }
}

/// A connection limit that applies, and how much of it is used.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Limit {
    pub scope: Scope,
    /// The role's or the database's name.
    pub name: String,
    pub limit: i64,
    pub in_use: i64,
}

impl Limit {
    pub(super) fn saturation(&self) -> f64 {
        self.in_use as f64 / self.limit.max(1) as f64
    }

    /// `role "gateway" limit 50: 49 in use`.
    pub(super) fn describe(&self) -> String {
        match self.scope {
            Scope::Server => format!("{} of {} usable connections in use", self.in_use, self.limit),
            scope => format!(
                "{} \"{}\" limit {}: {} in use",
                scope.label(),
                self.name,
                self.limit,
                self.in_use
            ),
        }
    }
}

/// The limits that apply to the URL's role and database: the server's always; the role's and
/// the database's where set (a superuser is held to neither, as PostgreSQL does).
pub(super) fn limits(s: &Stats) -> Vec<Limit> {
    let mut limits = vec![Limit {
        scope: Scope::Server,
        name: String::new(),
        limit: s.usable(),
        in_use: s.connections_in_use,
    }];
    let why = &s.why;
    let superuser = why.role.as_ref().is_some_and(|r| r.superuser);
    if let Some(role) = why.role.as_ref().filter(|r| r.limit >= 0 && !superuser) {
        limits.push(Limit {
            scope: Scope::Role,
            name: role.name.clone(),
            limit: i64::from(role.limit),
            in_use: why.role_connections,
        });
    }
    if let Some(db) = why.database.as_ref().filter(|d| d.limit >= 0 && !superuser) {
        limits.push(Limit {
            scope: Scope::Database,
            name: db.name.clone(),
            limit: i64::from(db.limit),
            in_use: why.database_connections,
        });
    }
    limits
}

/// The limit closest to full (the smaller one on a tie).
pub(super) fn tightest(limits: &[Limit]) -> Option<&Limit> {
    limits
        .iter()
        .max_by(|a, b| a.saturation().total_cmp(&b.saturation()).then(b.limit.cmp(&a.limit)))
}

/// The saturation finding against the tightest limit. When the server itself is full, the
/// reason names the application that holds the most connections (`top`): "who took them" is
/// the first question, and the answer is often not the gateway.
pub(super) fn saturation(tightest: &Limit, warn: f64, fail: f64, top: Option<(&str, i64)>) -> Option<Finding> {
    let value = tightest.saturation();
    let (status, word, at) = outcome::crossed(value, warn, fail)?;
    let reason = match tightest.scope {
        Scope::Server => format!(
            "saturation {} of {} usable connections ({word} at {}){}",
            fmt::percent(value),
            tightest.limit,
            fmt::percent(at),
            top.filter(|(_, n)| *n > 0)
                .map_or_else(String::new, |(name, n)| match name {
                    "" => format!("; most held by clients without an application_name ({n})"),
                    name => format!("; most held by application_name \"{name}\" ({n})"),
                })
        ),
        _ => format!(
            "{} (saturation {}, {word} at {})",
            tightest.describe(),
            fmt::percent(value),
            fmt::percent(at)
        ),
    };
    let hint = match tightest.scope {
        Scope::Server => SATURATION_HINT,
        _ => LIMIT_HINT,
    };
    Some(Finding::of(status, FailureKind::Threshold, reason).with_hint(hint))
}

/// A new connection was refused with SQLSTATE 53300 for `scope`'s limit, while the kept
/// connection still reads the figures.
pub(super) fn refused(scope: Scope, s: &Stats) -> Finding {
    let limits = limits(s);
    let limit = limits.iter().find(|l| l.scope == scope);
    let reason = match (scope, limit) {
        (Scope::Server, _) | (_, None) => {
            let server = &limits[0];
            format!(
                "too many clients: {} (saturation {})",
                server.describe(),
                fmt::percent(server.saturation())
            )
        }
        (_, Some(limit)) => format!(
            "too many connections for {} \"{}\": {} (saturation {})",
            scope.label(),
            limit.name,
            limit.describe(),
            fmt::percent(limit.saturation())
        ),
    };
    let hint = match scope {
        Scope::Server => SATURATION_HINT,
        _ => LIMIT_HINT,
    };
    Finding::fail(FailureKind::TooManyClients, reason).with_hint(hint)
}

/// A span as reasons write it: `350ms`, `12s`, `5m`, `3h`.
fn span(seconds: f64) -> String {
    let d = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
    match seconds {
        s if s < 1.0 => fmt::seconds(d),
        _ => fmt::age(d),
    }
}

/// `pid 4242 (application_name batch-import, 10.1.2.3, idle in transaction for 5m)`.
pub(super) fn name(session: &Session) -> String {
    let who = match session.backend_type.as_deref() {
        Some(kind) if kind != "client backend" => kind.to_owned(),
        _ if session.application_name.is_empty() => "no application_name".to_owned(),
        _ => format!("application_name {}", shorten(&session.application_name, 64)),
    };
    let from = session.client_addr.as_deref().unwrap_or("local socket");
    let age = session
        .transaction_seconds
        .or(session.state_seconds)
        .map(|s| format!(" for {}", span(s)))
        .unwrap_or_default();
    format!("pid {} ({who}, {from}, {}{age})", session.pid, session.state)
}

fn shorten(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The root of the blocked queries' chains: a blocker that does not wait on a lock itself,
/// holding up the most blocked queries (waiting longer than `lock_wait`), directly or through
/// others; on a tie the older transaction. `None` when no chain ends in a known session (a
/// deadlock the server is about to break, or a chain beyond what was read).
pub(super) fn root(s: &Stats, lock_wait: Duration) -> Option<(i32, usize)> {
    let why = &s.why;
    let edges = why.edges.as_deref().unwrap_or_default();
    let holders = why.holders.as_deref().unwrap_or_default();
    let waits_on: BTreeMap<i32, &[i32]> = edges
        .iter()
        .map(|e| (e.pid, e.blockers.as_deref().unwrap_or_default()))
        .collect();
    let waiting = |pid: i32| waits_on.contains_key(&pid) || holders.iter().any(|h| h.pid == pid && h.waiting);
    let mut held: BTreeMap<i32, usize> = BTreeMap::new();
    for blocked in edges.iter().filter(|e| e.seconds > lock_wait.as_secs_f64()) {
        // Every session this one waits on, directly or through others; bounded by the edges read.
        let mut seen = BTreeSet::from([blocked.pid]);
        let mut queue = VecDeque::from([blocked.pid]);
        let mut roots = BTreeSet::new();
        while let Some(pid) = queue.pop_front() {
            for &by in waits_on.get(&pid).copied().unwrap_or_default() {
                if !seen.insert(by) {
                    continue;
                }
                match waiting(by) {
                    true => queue.push_back(by),
                    false => {
                        roots.insert(by);
                    }
                }
            }
        }
        for root in roots {
            *held.entry(root).or_default() += 1;
        }
    }
    let age = |pid: i32| {
        holders
            .iter()
            .find(|h| h.pid == pid)
            .and_then(|h| h.transaction_seconds)
            .unwrap_or(0.0)
    };
    held.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(age(a.0).total_cmp(&age(b.0))).then(b.0.cmp(&a.0)))
}

/// What the run finds about locks, transactions and recovery (the limits are judged with the
/// saturation, see [`saturation`]).
pub(super) fn findings(s: &Stats, lock_wait: Duration, idle_warn: Duration, require_primary: bool) -> Vec<Finding> {
    let why = &s.why;
    let mut findings = Vec::new();
    if require_primary && s.in_recovery {
        findings.push(Finding::fail(FailureKind::Misconfigured, STANDBY_REASON).with_hint(STANDBY_HINT));
    }
    if why.blocked > 0 {
        let longest = span(why.wait_max.unwrap_or_default());
        let counted = match why.blocked {
            1 => format!("1 query blocked for {longest}"),
            n => format!("{n} queries blocked up to {longest}"),
        };
        let by = match root(s, lock_wait) {
            Some((pid, _)) => match why.holders.iter().flatten().find(|h| h.pid == pid) {
                Some(holder) => format!(" by {}", name(holder)),
                None => format!(" by pid {pid}"),
            },
            None => {
                " (no blocker could be named: a deadlock the server breaks, or a chain beyond what was read)".to_owned()
            }
        };
        findings.push(Finding::warn(FailureKind::Threshold, format!("{counted}{by}")).with_hint(BLOCKED_HINT));
    }
    if why.idle_count > 0 {
        let longest = why.idle_sessions.iter().flatten().next();
        let threshold = fmt::duration(idle_warn);
        let reason = match (why.idle_count, longest) {
            (1, Some(session)) => format!(
                "1 session idle in transaction longer than {threshold}: {}",
                name(session)
            ),
            (n, Some(session)) => format!(
                "{n} sessions idle in transaction longer than {threshold}, the longest {}",
                name(session)
            ),
            (n, None) => format!("{n} sessions idle in transaction longer than {threshold}"),
        };
        findings.push(Finding::warn(FailureKind::Threshold, reason).with_hint(IDLE_HINT));
    }
    findings
}

/// The figures, as observations (the same values as the metrics).
pub(super) fn observations(s: &Stats, limits: &[Limit]) -> Vec<Observation> {
    let why = &s.why;
    let mut observations = vec![
        BLOCKED_QUERIES.of(why.blocked as f64),
        LOCK_WAIT_MAX.of(why.wait_max.unwrap_or(0.0)),
        OLDEST_TRANSACTION.of(oldest_transaction(s)),
        IDLE_IN_TRANSACTION_MAX.of(why.idle_max.unwrap_or(0.0)),
    ];
    if let Some(lag) = replication_lag(s) {
        observations.push(REPLICATION_LAG.of(lag));
    }
    if let Some(tightest) = tightest(limits) {
        observations.push(Observation::text("tightest_limit", tightest.describe()));
    }
    observations
}

pub(super) fn oldest_transaction(s: &Stats) -> f64 {
    s.why.oldest.as_ref().and_then(|o| o.transaction_seconds).unwrap_or(0.0)
}

/// On a standby, its replay lag (0 when it has replayed everything it received); `None` on a
/// primary, or a standby that has replayed no transaction yet.
pub(super) fn replication_lag(s: &Stats) -> Option<f64> {
    s.in_recovery.then_some(s.why.replay_lag).flatten().map(|l| l.max(0.0))
}

/// `/diag`'s view: the limits, the blocked queries and their root, the transactions, recovery.
pub(super) fn details(s: &Stats, limits: &[Limit], lock_wait: Duration, idle_warn: Duration) -> Json {
    let why = &s.why;
    let root = root(s, lock_wait).map(|(pid, blocking)| {
        let holder = why.holders.iter().flatten().find(|h| h.pid == pid);
        json!({"pid": pid, "blocking": blocking, "session": holder})
    });
    let shown: Vec<Json> = limits
        .iter()
        .map(|l| {
            json!({"scope": l.scope.label(), "name": (!l.name.is_empty()).then_some(&l.name), "limit": l.limit,
                   "in_use": l.in_use, "saturation": l.saturation()})
        })
        .collect();
    json!({
        "limits": {
            "applying": shown,
            "tightest": tightest(limits).map(|l| l.scope.label()),
            "role": why.role,
            "database": why.database,
        },
        "locks": {
            "lock_wait": fmt::duration(lock_wait),
            "waiting": why.waiting,
            "blocked": why.blocked,
            "longest_wait_seconds": why.wait_max.unwrap_or(0.0),
            "root_blocker": root,
            "blocked_queries": why.blocked_sessions,
            "blockers": why.holders,
        },
        "transactions": {
            "oldest": why.oldest,
            "idle_in_transaction_warn": fmt::duration(idle_warn),
            "idle_in_transaction_over": why.idle_count,
            "idle_in_transaction_longest_seconds": why.idle_max.unwrap_or(0.0),
            "idle_in_transaction": why.idle_sessions,
        },
        "recovery": {
            "in_recovery": s.in_recovery,
            "replay_lag_seconds": replication_lag(s),
            "note": match (s.in_recovery, s.why.replayed_since_start) {
                (false, _) => "a primary: no replay lag",
                (true, true) => "replay lag: seconds since the last replayed transaction while received WAL waits unreplayed; 0 when everything received is replayed",
                (true, false) => "replay lag: no transaction replayed since the standby started, so counted from its start (at least this far behind) while received WAL waits unreplayed; 0 when everything received is replayed",
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::queries::{Edge, RoleRow, Why};
    use super::*;

    #[test]
    fn a_full_server_names_the_application_holding_the_most_connections() {
        let server = Limit {
            scope: Scope::Server,
            name: String::new(),
            limit: 47,
            in_use: 47,
        };
        assert_eq!(
            saturation(&server, 0.8, 0.95, Some(("report-runner", 40)))
                .unwrap()
                .reason,
            "saturation 100% of 47 usable connections (fail at 95%); most held by application_name \"report-runner\" (40)"
        );
        assert_eq!(
            saturation(&server, 0.8, 0.95, Some(("", 30))).unwrap().reason,
            "saturation 100% of 47 usable connections (fail at 95%); most held by clients without an application_name (30)"
        );
        assert_eq!(
            saturation(&server, 0.8, 0.95, None).unwrap().reason,
            "saturation 100% of 47 usable connections (fail at 95%)"
        );
    }

    fn stats(why: Why) -> Stats {
        Stats {
            max_connections: 100,
            superuser_reserved_connections: 3,
            reserved_connections: 0,
            in_recovery: false,
            server_version: "16".to_owned(),
            backend_pid: 1,
            connections_in_use: 20,
            by_state: Json::Null,
            top_applications: Json::Null,
            long_queries: 0,
            longest_queries: Json::Null,
            why,
        }
    }

    fn session(pid: i32, app: &str, state: &str, waiting: bool, xact: f64) -> Session {
        Session {
            pid,
            application_name: app.to_owned(),
            client_addr: Some("10.1.2.3".to_owned()),
            state: state.to_owned(),
            backend_type: Some("client backend".to_owned()),
            transaction_seconds: Some(xact),
            state_seconds: Some(xact),
            waiting,
            query: None,
        }
    }

    fn edge(pid: i32, seconds: f64, blockers: &[i32]) -> Edge {
        Edge {
            pid,
            seconds,
            blockers: Some(blockers.to_vec()),
        }
    }

    #[test]
    fn the_root_is_the_non_waiting_blocker_holding_up_the_most() {
        // 10 holds 1; 1 holds 2 and 3 (a row's lock queue); 20 holds 4 alone.
        let why = Why {
            blocked: 4,
            waiting: 4,
            wait_max: Some(12.4),
            edges: Some(vec![
                edge(1, 12.4, &[10]),
                edge(2, 11.0, &[1, 10]),
                edge(3, 10.0, &[1]),
                edge(4, 9.0, &[20]),
            ]),
            holders: Some(vec![
                session(10, "batch-import", "idle in transaction", false, 300.0),
                session(1, "api", "active", true, 12.5),
                session(20, "cron", "active", false, 900.0),
            ]),
            ..Why::default()
        };
        let s = stats(why);
        assert_eq!(root(&s, Duration::from_secs(5)), Some((10, 3)));
        let found = findings(&s, Duration::from_secs(5), Duration::from_secs(60), false);
        assert_eq!(
            found[0].reason,
            "4 queries blocked up to 12s by pid 10 (application_name batch-import, 10.1.2.3, idle in transaction for 5m)"
        );
        // Only the waits past lock_wait count: at 10.5s, 1 and 2 are blocked, both held by 10.
        assert_eq!(root(&s, Duration::from_millis(10_500)), Some((10, 2)));
        // A cycle (a deadlock) has no root.
        let cycle = Why {
            blocked: 2,
            edges: Some(vec![edge(1, 3.0, &[2]), edge(2, 3.0, &[1])]),
            ..Why::default()
        };
        assert_eq!(root(&stats(cycle), Duration::from_secs(1)), None);
    }

    #[test]
    fn the_tightest_limit_is_judged_and_named() {
        let why = Why {
            role: Some(RoleRow {
                name: "gateway".to_owned(),
                limit: 10,
                superuser: false,
            }),
            role_connections: 9,
            ..Why::default()
        };
        let s = stats(why);
        let limits = limits(&s);
        assert_eq!(limits.len(), 2, "{limits:?}");
        let tight = tightest(&limits).unwrap();
        assert_eq!(tight.scope, Scope::Role);
        assert_eq!(
            saturation(tight, 0.8, 0.95, Some(("batch", 3))).unwrap().reason,
            "role \"gateway\" limit 10: 9 in use (saturation 90%, warn at 80%)"
        );
        assert_eq!(
            refused(Scope::Role, &s).reason,
            "too many connections for role \"gateway\": role \"gateway\" limit 10: 9 in use (saturation 90%)"
        );
        assert_eq!(
            Scope::of_refusal("too many connections for database \"gw\""),
            Scope::Database
        );
        assert_eq!(Scope::of_refusal("sorry, too many clients already"), Scope::Server);
        // A superuser is held to neither.
        let mut s = s;
        s.why.role.as_mut().unwrap().superuser = true;
        assert_eq!(super::limits(&s).len(), 1);
    }

    #[test]
    fn a_standby_fails_only_under_require_primary() {
        let mut s = stats(Why::default());
        s.in_recovery = true;
        assert!(findings(&s, Duration::from_secs(5), Duration::from_secs(60), false).is_empty());
        let found = findings(&s, Duration::from_secs(5), Duration::from_secs(60), true);
        assert_eq!(found[0].reason, STANDBY_REASON);
        assert_eq!(replication_lag(&s), None, "no transaction replayed yet");
        s.why.replay_lag = Some(0.0);
        assert_eq!(replication_lag(&s), Some(0.0));
    }
}
