//! The fleet: the other replicas, asking them, and the panic decision.
//!
//! When a critical **shared** check (the same dependency for every replica: the database, the
//! JWT secret, an upstream) fails here, the check's own loop asks up to [`PEERS_ASKED`]
//! randomly chosen peers `GET /readyz/<check>` before the run is recorded ([`Fleet::consult`]),
//! so that the decision exists when the fail is reported. `200` counts as "passes there",
//! `503` as "fails there", anything else (another status, a refused connection, no answer
//! within the check's `timeout`) as unknown, not counted. The rule is [`decide`]; the decision
//! is kept here and only read by the state (no request ever waits on a peer).
//!
//! The rule for the open cases (README, "The fleet"):
//! - a panic needs at least one peer that fails too, and `fails >= panic_threshold ×
//!   answering` (this replica included in both): 2 of 5 at 0.5 is 40 % < 50 %, no panic;
//!   1 of 2 (this one failing, the only peer passing) is no panic either, since the peer shows
//!   the dependency works;
//! - a peer that answers slower than the check's timeout is unknown, not counted; no peer
//!   answering means no panic (readiness fails as without `[fleet]`);
//! - the first decision of a failure that starts now holds one run when peers answered but no
//!   panic was found (peers milliseconds behind still answer 200); the next decision stands;
//! - leaving a panic takes two decisions in a row that find none (or a pass here), so that the
//!   replicas recovering last, which see the first ones pass already, stay in the Service;
//! - a decision is made at most once per run of the check and expires after
//!   [`EXPIRES_AFTER_INTERVALS`] intervals (more while `success_threshold` keeps a recovering
//!   check failing), so an old answer never holds readiness;
//! - peers answer `/readyz/<check>` for the check itself, never for their held readiness, so
//!   one replica holding never changes another's decision: nothing oscillates.
//!
//! The peers are resolved every [`RESOLVE_EVERY`] by a task of this module (for
//! `vigil_fleet_peers` and `/diag`) and again by a consultation whose last resolution is
//! older than the check's interval.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::config::{self, CheckSettings, Scope};
use crate::core::url::HttpUrl;
use crate::net::http::ProbeRequest;
use crate::net::tls::{ClientError, HttpClient};
use prometheus::{IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, MetricsError};

/// At most this many peers are asked per run.
pub const PEERS_ASKED: usize = 16;

/// A decision holds readiness for at most this many intervals of its check.
pub const EXPIRES_AFTER_INTERVALS: u32 = 2;

/// How often the peers are resolved in the background.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(15);

/// How much of a peer's answer is read: `/readyz/NAME` is one line.
const ANSWER_LIMIT: usize = 1024;

/// The fleet could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet: HTTP client: {0}")]
    Client(#[from] ClientError),
    #[error("fleet: {0}")]
    Metrics(#[from] MetricsError),
}

/// Whether a check with these settings takes part: critical and shared.
pub fn asks(settings: &CheckSettings) -> bool {
    settings.critical && settings.scope == Scope::Shared
}

/// What one peer said about one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200`: the check passes there.
    Passes,
    /// `503`: the check fails there.
    Fails,
    /// Anything else, and why: not counted.
    Unknown(String),
}

impl Answer {
    fn shown(&self) -> String {
        match self {
            Answer::Passes => "passes".to_owned(),
            Answer::Fails => "fails".to_owned(),
            Answer::Unknown(why) => format!("unknown: {why}"),
        }
    }
}

/// The answers counted, this replica included (it fails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Replicas failing the check: this one and the peers that answered 503.
    pub fails: usize,
    /// Peers that answered 200.
    pub passes: usize,
    /// Peers asked that gave no usable answer.
    pub unknown: usize,
    /// Peers asked.
    pub asked: usize,
}

impl Tally {
    /// This replica (failing) and the peers' answers.
    pub fn of(answers: &[Answer]) -> Tally {
        let mut tally = Tally {
            fails: 1,
            asked: answers.len(),
            ..Tally::default()
        };
        for answer in answers {
            match answer {
                Answer::Passes => tally.passes += 1,
                Answer::Fails => tally.fails += 1,
                Answer::Unknown(_) => tally.unknown += 1,
            }
        }
        tally
    }

    /// Replicas that answered, this one included.
    pub fn answering(&self) -> usize {
        self.fails + self.passes
    }
}

/// The panic rule: at least one peer fails too, and at least `threshold` of the answering
/// replicas (this one included) fail.
pub fn decide(tally: &Tally, threshold: f64) -> bool {
    let peers_failing = tally.fails.saturating_sub(1);
    // A hair of tolerance: 0.6 × 5 must be 3, not 3.0000000000000004.
    peers_failing >= 1 && tally.fails as f64 + 1e-9 >= threshold * tally.answering() as f64
}

/// The decisions between a panic's start and end that a person reading the log wants to see.
fn log_decision(check: &str, tally: &Tally, tentative: bool, confirming: bool, own_fault: bool) {
    let (fails, answering) = (tally.fails, tally.answering());
    if tentative {
        tracing::info!(
            check,
            fails,
            answering,
            unknown = tally.unknown,
            "Fleet: {check} fails on {fails} of {answering} replicas, below the threshold; holding one run to ask again"
        );
    } else if own_fault {
        tracing::info!(
            check,
            fails,
            answering,
            "Fleet: {check} fails on {fails} of {answering} replicas: the failure is this replica's"
        );
    }
    if confirming {
        tracing::info!(
            check,
            fails,
            answering,
            unknown = tally.unknown,
            "Fleet panic: {check} fails on {fails} of {answering} replicas now; holding one more run to confirm"
        );
    }
}

/// The `/readyz?verbose` line's text: `panic: postgres fails on 5 of 5 replicas (threshold
/// 50%), staying in the Service`.
pub fn panic_line(check: &str, tally: &Tally, threshold: f64) -> String {
    format!(
        "panic: {check} fails on {} of {} replicas (threshold {}), staying in the Service",
        tally.fails,
        tally.answering(),
        crate::core::fmt::percent(threshold)
    )
}

/// The `/readyz?verbose` line's text during a tentative hold: `pending: postgres fails on 2 of
/// 5 replicas (threshold 50%), asking again next run`.
pub fn pending_line(check: &str, tally: &Tally, threshold: f64) -> String {
    format!(
        "pending: {check} fails on {} of {} replicas (threshold {}), asking again next run",
        tally.fails,
        tally.answering(),
        crate::core::fmt::percent(threshold)
    )
}

/// The last decision about one check.
#[derive(Debug, Clone)]
pub struct Decision {
    pub tally: Tally,
    pub panic: bool,
    /// A panic kept for one more run although this decision alone would end it: leaving a
    /// panic takes two decisions in a row, so that replicas recovering a few milliseconds apart
    /// (the last ones seeing the first ones pass already) do not leave the Service meanwhile.
    pub confirming: bool,
    /// A hold for one run at the first decision of a failure that starts now (the check passed
    /// until this run) when peers answered but not enough fail: replicas detect a failure
    /// milliseconds apart, and a peer that has not confirmed its own failure yet still answers
    /// 200. The next run asks again, and its decision stands.
    pub tentative: bool,
    /// The counts of the last decision that found a panic: what the `/readyz` line shows.
    pub panic_tally: Tally,
    pub at: Instant,
    pub at_wall: SystemTime,
    /// After this the decision holds nothing.
    pub expires: Instant,
    /// Each peer asked and its answer.
    pub answers: Vec<(SocketAddr, Answer)>,
}

/// A panic that started or ended: logged here, kept by the state as a transition of `fleet`.
#[derive(Debug, Clone)]
pub struct PanicChange {
    pub check: String,
    pub started: bool,
    pub reason: String,
    pub at: SystemTime,
}

/// What the peers resolved to last.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub at: Option<SystemTime>,
    pub peers: Vec<SocketAddr>,
    /// Entries that did not resolve, and why.
    pub errors: Vec<String>,
    /// Addresses left out as this replica's own.
    pub own_left_out: usize,
}

impl Resolution {
    /// Why there is no peer to ask, when there is none.
    pub fn problem(&self) -> Option<String> {
        if !self.peers.is_empty() {
            return None;
        }
        Some(if self.at.is_none() {
            "not resolved yet".to_owned()
        } else if !self.errors.is_empty() {
            format!("no peer to ask: {}", self.errors.join("; "))
        } else if self.own_left_out > 0 {
            "no peer to ask: the peers resolve only to this replica".to_owned()
        } else {
            "no peer to ask: the peers resolve to no address".to_owned()
        })
    }
}

/// The other replicas and the decisions about them.
pub struct Fleet {
    config: config::Fleet,
    client: HttpClient,
    metrics: FleetMetrics,
    resolved: Mutex<(Option<Instant>, Resolution)>,
    decisions: RwLock<HashMap<String, Decision>>,
    peer_requests: AtomicU64,
    consultations: AtomicU64,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    pub fn new(config: &config::Fleet, metrics: &Metrics) -> Result<Fleet, FleetError> {
        Ok(Fleet {
            config: config.clone(),
            client: HttpClient::new()?,
            metrics: FleetMetrics::register(metrics)?,
            resolved: Mutex::new((None, Resolution::default())),
            decisions: RwLock::new(HashMap::new()),
            peer_requests: AtomicU64::new(0),
            consultations: AtomicU64::new(0),
        })
    }

    /// Exports `vigil_fleet_panic{check}` at 0 for a check that takes part.
    pub fn track(&self, check: &str) {
        self.metrics.panic.with_label_values(&[check]).set(0);
    }

    /// Whether the last decision about `check` is a panic that still holds at `now`.
    pub fn holds(&self, check: &str, now: Instant) -> bool {
        read(&self.decisions)
            .get(check)
            .is_some_and(|d| d.panic && now < d.expires)
    }

    /// Asks the peers about `check`, which just failed a run here, and decides. Takes at most
    /// the check's timeout. Returns the panic's start or end, if the decision changed it.
    ///
    /// `was_passing`: the check reported pass or warn until this run (a failure starting now,
    /// not one at start-up or one going on).
    pub async fn consult(&self, check: &str, settings: &CheckSettings, was_passing: bool) -> Option<PanicChange> {
        let (chosen, answers) = self.ask_peers(check, settings).await;
        let tally = Tally::of(&answers);
        let decided = decide(&tally, self.config.panic_threshold);
        let now = Instant::now();
        let previous = read(&self.decisions)
            .get(check)
            .filter(|d| now < d.expires)
            .map(|d| (d.panic && !d.tentative, d.panic, d.confirming, d.panic_tally));
        let (panic, confirming, tentative, panic_tally) = match (decided, previous) {
            (true, _) => (true, false, false, tally),
            // Leaving a panic: one more run to confirm.
            (false, Some((true, _, false, last))) => (true, true, false, last),
            // The first decision of a failure that starts now, with peers answering: they may
            // still be confirming theirs (a peer answers 503 only once its hysteresis reports
            // fail); hold one run and ask again.
            (false, _) if was_passing && tally.answering() >= 2 => (true, false, true, tally),
            (false, _) => (false, false, false, tally),
        };
        let was = previous.is_some_and(|(real, _, _, _)| real);
        let was_held = previous.is_some_and(|(_, held, _, _)| held);
        let keep = EXPIRES_AFTER_INTERVALS.max(settings.success_threshold + 1);
        let decision = Decision {
            tally,
            panic,
            confirming,
            tentative,
            panic_tally,
            at: now,
            at_wall: SystemTime::now(),
            expires: now + keep * settings.interval,
            answers: chosen.into_iter().zip(answers).collect(),
        };
        write(&self.decisions).insert(check.to_owned(), decision);
        let real = panic && !tentative;
        self.metrics.panic.with_label_values(&[check]).set(i64::from(real));
        log_decision(check, &tally, tentative, confirming, was_held && !was && !panic);
        self.announce(check, &tally, was, real)
    }

    /// Up to [`PEERS_ASKED`] peers chosen at random, asked about `check` within its timeout
    /// (resolution included).
    async fn ask_peers(&self, check: &str, settings: &CheckSettings) -> (Vec<SocketAddr>, Vec<Answer>) {
        let started = Instant::now();
        let deadline = settings.timeout;
        self.consultations.fetch_add(1, Ordering::Relaxed);
        let mut chosen = self.peers(settings.interval, deadline).await;
        fastrand::shuffle(&mut chosen);
        chosen.truncate(PEERS_ASKED);
        let left = deadline.saturating_sub(started.elapsed());
        self.peer_requests.fetch_add(chosen.len() as u64, Ordering::Relaxed);
        let asked = chosen.iter().map(|addr| self.ask(*addr, check, left));
        let answers = futures_util::future::join_all(asked).await;
        (chosen, answers)
    }

    /// The start or end of a panic, logged and returned for the transition ring.
    fn announce(&self, check: &str, tally: &Tally, was: bool, real: bool) -> Option<PanicChange> {
        let threshold = self.config.panic_threshold;
        match (was, real) {
            (false, true) => {
                let reason = panic_line(check, tally, threshold);
                tracing::warn!(
                    check,
                    fails = tally.fails,
                    answering = tally.answering(),
                    unknown = tally.unknown,
                    "Fleet panic started: {reason}"
                );
                Some(self.change(check, true, reason))
            }
            (true, false) => {
                let reason = match tally.answering() {
                    1 => format!("panic over: no peer answered about {check} ({} asked)", tally.asked),
                    answering => format!(
                        "panic over: {check} fails on {} of {answering} replicas (threshold {}), the failure is this replica's",
                        tally.fails,
                        crate::core::fmt::percent(threshold)
                    ),
                };
                tracing::info!(
                    check,
                    fails = tally.fails,
                    answering = tally.answering(),
                    unknown = tally.unknown,
                    "Fleet panic ended: {reason}"
                );
                Some(self.change(check, false, reason))
            }
            _ => None,
        }
    }

    /// After a run of `check` was recorded: a check that no longer fails here leaves its panic.
    pub fn settle(&self, check: &str, fails_here: bool) -> Option<PanicChange> {
        if fails_here {
            return None;
        }
        let mut decisions = write(&self.decisions);
        let decision = decisions.get_mut(check).filter(|d| d.panic)?;
        decision.panic = false;
        let tentative = std::mem::take(&mut decision.tentative);
        drop(decisions);
        if tentative {
            return None;
        }
        self.metrics.panic.with_label_values(&[check]).set(0);
        let reason = format!("panic over: {check} passes here again");
        tracing::info!(check, "Fleet panic ended: {reason}");
        Some(self.change(check, false, reason))
    }

    fn change(&self, check: &str, started: bool, reason: String) -> PanicChange {
        PanicChange {
            check: check.to_owned(),
            started,
            reason,
            at: SystemTime::now(),
        }
    }

    /// The peers, resolved again when the last resolution is older than `fresh`.
    async fn peers(&self, fresh: Duration, deadline: Duration) -> Vec<SocketAddr> {
        {
            let resolved = lock(&self.resolved);
            if resolved.0.is_some_and(|at| at.elapsed() < fresh) {
                return resolved.1.peers.clone();
            }
        }
        self.resolve(deadline).await.peers
    }

    /// Resolves every entry of `peers` (each cut at `deadline`) and keeps the result.
    pub async fn resolve(&self, deadline: Duration) -> Resolution {
        let mut found: Vec<SocketAddr> = Vec::new();
        let mut errors = Vec::new();
        for target in self.config.peers.targets() {
            match target.host.parse::<IpAddr>() {
                Ok(ip) => found.push(SocketAddr::new(ip, target.port)),
                Err(_) => {
                    let lookup = crate::net::dns::lookup(target.host.as_str(), target.port);
                    match tokio::time::timeout(deadline, lookup).await {
                        Ok(Ok(answer)) => {
                            let before = found.len();
                            found.extend(answer.addresses);
                            if found.len() == before {
                                errors.push(format!("{} resolves to no address", target.host));
                            }
                        }
                        Ok(Err(error)) => errors.push(format!("DNS lookup of {} failed: {error}", target.host)),
                        Err(_) => errors.push(format!(
                            "DNS lookup of {} timed out after {}",
                            target.host,
                            crate::core::fmt::duration(deadline)
                        )),
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        let before = found.len();
        let own = self.own_address();
        found.retain(|addr| Some(*addr) != own);
        let resolution = Resolution {
            at: Some(SystemTime::now()),
            own_left_out: before - found.len(),
            peers: found,
            errors,
        };
        self.metrics
            .peers
            .set(i64::try_from(resolution.peers.len()).unwrap_or(i64::MAX));
        *lock(&self.resolved) = (Some(Instant::now()), resolution.clone());
        resolution
    }

    /// This replica's own address as peers see it: the own IP at vigil's port.
    fn own_address(&self) -> Option<SocketAddr> {
        self.config
            .own_ip
            .map(|ip| SocketAddr::new(ip, self.config.default_port))
    }

    async fn ask(&self, peer: SocketAddr, check: &str, deadline: Duration) -> Answer {
        let path: String = percent_encoding::utf8_percent_encode(check, percent_encoding::NON_ALPHANUMERIC).collect();
        let url = match HttpUrl::parse(&format!("http://{peer}/readyz/{path}")) {
            Ok(url) => url,
            Err(error) => return Answer::Unknown(error),
        };
        let request = ProbeRequest::get(&url, []);
        match self.client.probe(&request, deadline, deadline, ANSWER_LIMIT).await {
            Ok(response) if response.status == 200 => Answer::Passes,
            Ok(response) if response.status == 503 => Answer::Fails,
            Ok(response) => Answer::Unknown(format!("answered {}", response.status)),
            Err(failure) => Answer::Unknown(failure.error.to_string()),
        }
    }

    /// What `/diag` shows; `holding` names the checks whose readiness is held now.
    pub fn snapshot(&self, holding: &[&str]) -> Snapshot {
        let resolved = lock(&self.resolved).1.clone();
        let mut checks: Vec<CheckAnswers> = read(&self.decisions)
            .iter()
            .map(|(name, d)| CheckAnswers {
                check: name.clone(),
                panic: d.panic,
                holding: holding.contains(&name.as_str()),
                line: d.panic.then(|| match d.tentative {
                    true => pending_line(name, &d.tally, self.config.panic_threshold),
                    false => panic_line(name, &d.panic_tally, self.config.panic_threshold),
                }),
                tentative: d.tentative,
                confirming: d.confirming,
                tally: d.tally,
                answering: d.tally.answering(),
                at: crate::core::fmt::timestamp(d.at_wall),
                answers: d
                    .answers
                    .iter()
                    .map(|(peer, answer)| PeerAnswer {
                        peer: peer.to_string(),
                        answer: answer.shown(),
                    })
                    .collect(),
            })
            .collect();
        checks.sort_by(|a, b| a.check.cmp(&b.check));
        Snapshot {
            peers: self.config.peers.targets().iter().map(|t| t.text.clone()).collect(),
            panic_threshold: self.config.panic_threshold,
            own_address: self.own_address().map(|a| a.to_string()),
            own_address_from: self.config.own_ip_source,
            resolved_at: resolved.at.map(crate::core::fmt::timestamp),
            known: resolved.peers.iter().map(ToString::to_string).collect(),
            resolution_errors: resolved.errors.clone(),
            problem: resolved.problem(),
            consultations: self.consultations.load(Ordering::Relaxed),
            peer_requests: self.peer_requests.load(Ordering::Relaxed),
            checks,
        }
    }
}

/// Resolves the peers now and every [`RESOLVE_EVERY`]; runs on the checks' runtime.
pub async fn keep_resolving(fleet: Arc<Fleet>) {
    loop {
        let resolution = fleet.resolve(Duration::from_secs(5)).await;
        if let Some(problem) = resolution.problem() {
            tracing::warn!(peers = ?fleet.config.peers.targets().iter().map(|t| &t.text).collect::<Vec<_>>(), "Fleet: {problem}");
        }
        tokio::time::sleep(RESOLVE_EVERY).await;
    }
}

/// The fleet as `/diag` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `fleet.peers` as configured.
    pub peers: Vec<String>,
    pub panic_threshold: f64,
    /// Left out of the peers.
    pub own_address: Option<String>,
    pub own_address_from: &'static str,
    pub resolved_at: Option<String>,
    /// The peers the last resolution found.
    pub known: Vec<String>,
    pub resolution_errors: Vec<String>,
    /// Why no peer can be asked, when none can.
    pub problem: Option<String>,
    /// Runs that asked the peers, and requests sent, since start.
    pub consultations: u64,
    pub peer_requests: u64,
    /// Per shared critical check that asked: the last answers.
    pub checks: Vec<CheckAnswers>,
}

/// The last answers about one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckAnswers {
    pub check: String,
    /// The last decision was a panic.
    pub panic: bool,
    /// A panic kept one more run to confirm its end.
    pub confirming: bool,
    /// A hold for one run at the start of a failure, asking again (see [`Decision::tentative`]).
    pub tentative: bool,
    /// Readiness is held for this check now.
    pub holding: bool,
    /// The `/readyz?verbose` text while holding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
    pub answering: usize,
    pub at: String,
    pub answers: Vec<PeerAnswer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerAnswer {
    pub peer: String,
    pub answer: String,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(fails_there: usize, passes: usize, unknown: usize) -> Tally {
        let mut answers = vec![Answer::Fails; fails_there];
        answers.extend(vec![Answer::Passes; passes]);
        answers.extend(vec![Answer::Unknown("timed out after 1s".to_owned()); unknown]);
        Tally::of(&answers)
    }

    #[test]
    fn a_fleet_wide_failure_is_a_panic_and_the_line_says_so() {
        let all = tally(4, 0, 0);
        assert!(decide(&all, 0.5));
        assert_eq!(
            panic_line("postgres", &all, 0.5),
            "panic: postgres fails on 5 of 5 replicas (threshold 50%), staying in the Service"
        );
        assert!(decide(&tally(2, 2, 0), 0.5), "3 of 5 is 60%");
    }

    #[test]
    fn two_of_five_at_half_is_this_replicas_problem() {
        assert!(!decide(&tally(1, 3, 0), 0.5), "2 of 5 is 40% < 50%");
        assert!(decide(&tally(1, 3, 0), 0.4), "at 40% it is the fleet's");
    }

    #[test]
    fn a_failure_here_alone_is_never_a_panic() {
        assert!(!decide(&tally(0, 0, 0), 0.5), "no peer answered");
        assert!(
            !decide(&tally(0, 0, 4), 0.5),
            "peers unknown (slow, refused) are not counted"
        );
        assert!(!decide(&tally(0, 1, 0), 0.5), "1 of 2, the peer passes");
        assert!(!decide(&tally(0, 0, 0), 0.01));
    }

    #[test]
    fn unknown_answers_are_left_out_of_the_share() {
        // 2 failing, 1 passing, 2 slow: 2 of 3 answering.
        let t = tally(1, 1, 2);
        assert_eq!((t.fails, t.answering(), t.unknown, t.asked), (2, 3, 2, 4));
        assert!(decide(&t, 0.5));
        assert!(!decide(&t, 0.7));
    }

    #[test]
    fn the_threshold_is_inclusive_without_float_noise() {
        assert!(decide(&tally(2, 2, 0), 0.6), "3 of 5 at 60%");
        assert!(decide(&tally(1, 1, 0), 0.5), "exactly half at 50%");
        assert!(!decide(&tally(1, 1, 0), 0.67));
        assert!(decide(&tally(4, 0, 0), 1.0), "every replica at 100%");
        assert!(!decide(&tally(3, 1, 0), 1.0));
    }

    fn fleet(peers: &[&str], own: Option<&str>) -> Fleet {
        let targets = peers
            .iter()
            .map(|p| config::PeerTarget::parse(p, 9476).unwrap())
            .collect();
        let config = config::Fleet {
            peers: config::Peers::List(targets),
            panic_threshold: 0.5,
            own_ip: own.map(|ip| ip.parse().unwrap()),
            own_ip_source: "POD_IP",
            default_port: 9476,
        };
        Fleet::new(&config, &Metrics::new().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_own_address_is_left_out_and_a_lone_replica_is_said_so() {
        let fleet = fleet(&["10.0.0.5", "10.0.0.6:9476", "10.0.0.6:9999"], Some("10.0.0.6"));
        let resolution = fleet.resolve(Duration::from_secs(1)).await;
        let peers: Vec<String> = resolution.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["10.0.0.5:9476", "10.0.0.6:9999"]);
        assert_eq!(resolution.own_left_out, 1);

        let alone = fleet_alone().resolve(Duration::from_secs(1)).await;
        assert_eq!(
            alone.problem().as_deref(),
            Some("no peer to ask: the peers resolve only to this replica")
        );
    }

    fn fleet_alone() -> Fleet {
        fleet(&["10.0.0.7"], Some("10.0.0.7"))
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_shown() {
        let fleet = fleet(&["no-such-peer.invalid"], Some("10.0.0.7"));
        let resolution = fleet.resolve(Duration::from_secs(3)).await;
        let problem = resolution.problem().unwrap();
        assert!(
            problem.starts_with("no peer to ask: DNS lookup of no-such-peer.invalid"),
            "{problem}"
        );
        assert_eq!(fleet.snapshot(&[]).problem.as_deref(), Some(problem.as_str()));
    }

    /// A peer answering every request with `status`.
    async fn peer(status: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    fn shared() -> CheckSettings {
        CheckSettings {
            critical: true,
            scope: Scope::Shared,
            ..CheckSettings::default()
        }
    }

    #[tokio::test]
    async fn a_failure_starting_now_below_the_threshold_is_held_one_run_and_decided_by_the_next() {
        let peers = [peer(503).await, peer(200).await, peer(200).await, peer(200).await];
        let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
        let fleet = fleet_of(&peers);
        assert!(
            fleet.consult("postgres", &shared(), true).await.is_none(),
            "no panic starts"
        );
        assert!(
            fleet.holds("postgres", Instant::now()),
            "2 of 5, the first decision: held one run"
        );
        let shown = fleet.snapshot(&["postgres"]);
        assert!(shown.checks[0].tentative);
        assert_eq!(
            shown.checks[0].line.as_deref(),
            Some("pending: postgres fails on 2 of 5 replicas (threshold 50%), asking again next run")
        );
        assert!(fleet.consult("postgres", &shared(), false).await.is_none());
        assert!(!fleet.holds("postgres", Instant::now()), "the second decision stands");

        // Every peer passing: held one run when the failure starts, then out.
        let passing = [peer(200).await, peer(200).await];
        let passing: Vec<&str> = passing.iter().map(String::as_str).collect();
        let own = fleet_of(&passing);
        assert!(own.consult("postgres", &shared(), true).await.is_none());
        assert!(own.holds("postgres", Instant::now()));
        assert!(own.consult("postgres", &shared(), false).await.is_none());
        assert!(!own.holds("postgres", Instant::now()));
        // A failure at start-up (no pass before) is never held, nor one no peer answers about.
        let starting = fleet_of(&passing);
        assert!(starting.consult("postgres", &shared(), false).await.is_none());
        assert!(!starting.holds("postgres", Instant::now()));
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let cut_off = fleet_of(&[&refused]);
        assert!(cut_off.consult("postgres", &shared(), true).await.is_none());
        assert!(!cut_off.holds("postgres", Instant::now()));
    }

    fn fleet_of(peers: &[&str]) -> Fleet {
        fleet(peers, Some("127.0.0.9"))
    }

    #[tokio::test]
    async fn a_new_failure_soon_after_an_old_one_is_held_one_run_again() {
        let passing = [peer(200).await];
        let passing: Vec<&str> = passing.iter().map(String::as_str).collect();
        let fleet = fleet_of(&passing);
        assert!(fleet.consult("postgres", &shared(), true).await.is_none());
        assert!(fleet.consult("postgres", &shared(), false).await.is_none());
        assert!(fleet.settle("postgres", false).is_none(), "passes here again");
        // Within the old decision's two intervals, a new failure starts: held one run again.
        assert!(fleet.consult("postgres", &shared(), true).await.is_none());
        assert!(fleet.holds("postgres", Instant::now()));
    }

    #[tokio::test]
    async fn leaving_a_panic_takes_two_decisions_in_a_row() {
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let fleet = fleet(&[&refused.to_string()], Some("127.0.0.9"));
        let settings = CheckSettings {
            critical: true,
            scope: Scope::Shared,
            ..CheckSettings::default()
        };
        let now = Instant::now();
        write(&fleet.decisions).insert(
            "postgres".to_owned(),
            Decision {
                tally: tally(4, 0, 0),
                panic: true,
                confirming: false,
                tentative: false,
                panic_tally: tally(4, 0, 0),
                at: now,
                at_wall: SystemTime::now(),
                expires: now + Duration::from_secs(10),
                answers: Vec::new(),
            },
        );
        // The peer is gone: no panic by itself, but the panic holds one more run.
        assert!(fleet.consult("postgres", &settings, false).await.is_none());
        assert!(fleet.holds("postgres", Instant::now()));
        let shown = fleet.snapshot(&["postgres"]);
        assert!(shown.checks[0].confirming);
        assert_eq!(
            shown.checks[0].line.as_deref(),
            Some("panic: postgres fails on 5 of 5 replicas (threshold 50%), staying in the Service")
        );
        let over = fleet
            .consult("postgres", &settings, false)
            .await
            .expect("the second decision ends it");
        assert_eq!(over.reason, "panic over: no peer answered about postgres (1 asked)");
        assert!(!fleet.holds("postgres", Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_decision_expires_after_two_intervals_and_a_pass_here_ends_it() {
        // Peers that answer nothing: unknown. A panic is planted to test the expiry alone.
        let fleet = fleet(&["10.0.0.5"], Some("10.0.0.6"));
        let now = Instant::now();
        write(&fleet.decisions).insert(
            "postgres".to_owned(),
            Decision {
                tally: tally(4, 0, 0),
                panic: true,
                confirming: false,
                tentative: false,
                panic_tally: tally(4, 0, 0),
                at: now,
                at_wall: SystemTime::now(),
                expires: now + 2 * Duration::from_secs(1),
                answers: Vec::new(),
            },
        );
        assert!(fleet.holds("postgres", now + Duration::from_millis(1900)));
        assert!(!fleet.holds("postgres", now + Duration::from_millis(2100)));
        assert!(
            fleet.settle("postgres", true).is_none(),
            "still failing here: nothing changes"
        );
        let over = fleet.settle("postgres", false).expect("a pass here ends the panic");
        assert!(!over.started);
        assert_eq!(over.reason, "panic over: postgres passes here again");
        assert!(!fleet.holds("postgres", now));
        assert!(fleet.settle("postgres", false).is_none(), "ended once");
    }
}
/// `[fleet]`'s figures; registered only when `[fleet]` is configured.
#[derive(Clone)]
pub struct FleetMetrics {
    /// Peers known after the last resolution, this replica left out.
    pub peers: IntGauge,
    /// 1 while this replica stays ready through a fleet-wide failure of `check`.
    pub panic: IntGaugeVec,
}

impl FleetMetrics {
    /// Creates and registers `vigil_fleet_peers` and `vigil_fleet_panic{check}`.
    pub fn register(metrics: &Metrics) -> Result<FleetMetrics, MetricsError> {
        let fleet = FleetMetrics {
            peers: IntGauge::new(
                "vigil_fleet_peers",
                "Peers known from fleet.peers at the last resolution, this replica left out.",
            )?,
            panic: IntGaugeVec::new(
                Opts::new(
                    "vigil_fleet_panic",
                    "1 while this replica stays ready through a fleet-wide failure of the shared check, else 0.",
                ),
                &["check"],
            )?,
        };
        metrics.registry().register(Box::new(fleet.peers.clone()))?;
        metrics.registry().register(Box::new(fleet.panic.clone()))?;
        Ok(fleet)
    }
}
