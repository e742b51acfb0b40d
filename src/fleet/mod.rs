//! The fleet: the other replicas, asking them, and the panic decision.
//!
//! When a critical **shared** check (the same dependency for every replica: the database, the
//! JWT secret, an upstream) fails here, the check's own loop asks up to [`PEERS_ASKED`]
//! randomly chosen peers `GET /readyz/<check>` before the run is recorded (the fleet is an observer of the check loops, see
//! `engine::observe`; [`Fleet::consult`]),
//! so that the decision exists when the fail is reported. `200` counts as "passes there",
//! `503` as "fails there", anything else (another status, a refused connection, no answer
//! within the check's `timeout`) as unknown, not counted. The rule is [`decide`]; the decision
//! is kept here, and the state is told which checks it holds (`State::hold`), so that its one
//! readiness rule reads it and no request ever waits on a peer.
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
//! older than the check's interval, concurrently and within half the check's timeout (a name
//! whose lookup times out keeps its last addresses); the whole consultation is cut at the
//! check's timeout, so peers and their DNS never delay the check's loop or `/livez`.
//!
//! Only vigil's answers count: each carries `Vigil-Instance` ([`instance`]); an answer with this
//! process's own id is this replica itself, left out of the count and of later consultations.

mod decide;
pub(crate) mod instance;
mod metrics;
mod peers;
pub(crate) mod table;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub(crate) use self::decide::{Answer, Hold, Tally, decide, hold_line};
use self::metrics::FleetMetrics;
pub(crate) use self::peers::Resolution;
use crate::checks::facts::{Facts, ReplicasFact};
use crate::config::{self, CheckSettings, Scope};
use crate::core::outcome::Status;
use crate::engine::observe::{Ended, Look, Observer, Recorded};
use crate::engine::state::{State, Transition};
use crate::metrics::{Metrics, MetricsError};
use crate::net::attempt::inner_deadline;

/// At most this many peers are asked per run.
pub(crate) const PEERS_ASKED: usize = 16;

/// A decision holds readiness for at most this many intervals of its check.
pub(crate) const EXPIRES_AFTER_INTERVALS: u32 = 2;

/// How often the peers are resolved in the background.
pub(crate) const RESOLVE_EVERY: Duration = Duration::from_secs(15);

/// The fleet could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet: {0}")]
    Metrics(#[from] MetricsError),
}

/// Whether a check with these settings takes part: critical and shared.
pub(crate) fn asks(settings: &CheckSettings) -> bool {
    settings.critical && settings.scope == Scope::Shared
}

/// The last decision about one check.
#[derive(Debug, Clone)]
pub struct Decision {
    pub tally: Tally,
    pub hold: Hold,
    /// The counts of the last decision that found a panic: what the `/readyz` line shows.
    pub panic_tally: Tally,
    pub at: Instant,
    pub at_wall: SystemTime,
    /// After this the decision holds nothing.
    pub expires: Instant,
    /// Each peer asked and its answer.
    pub answers: Vec<(SocketAddr, Answer)>,
}

impl Decision {
    /// The `/readyz?verbose` line while it holds.
    pub fn line(&self, check: &str, threshold: f64) -> Option<String> {
        let tally = match self.hold {
            Hold::None => return None,
            Hold::Tentative => &self.tally,
            Hold::Panic | Hold::Confirming => &self.panic_tally,
        };
        Some(hold_line(self.hold, check, tally, threshold))
    }
}

/// The other replicas and the decisions about them.
pub struct Fleet {
    config: config::Fleet,
    metrics: FleetMetrics,
    /// Told which checks are held; read by its readiness rule.
    state: Arc<State>,
    resolved: Mutex<(Option<Instant>, Resolution)>,
    /// Lookups of peer names still in flight, shared.
    lookups: peers::Lookups,
    /// Addresses that answered with this process's own `Vigil-Instance`.
    itself: Mutex<HashSet<SocketAddr>>,
    decisions: RwLock<HashMap<String, Decision>>,
    peer_requests: AtomicU64,
    consultations: AtomicU64,
    /// Where each resolution posts the replica count (the postgres check's connection budget).
    facts: Option<Arc<Facts>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The fleet as `/diag` shows it: what it was configured with, found and decided.
#[derive(Debug, Clone)]
pub struct View {
    /// `fleet.peers` as configured.
    pub peers: Vec<String>,
    pub panic_threshold: f64,
    /// Left out of the peers.
    pub own_address: Option<SocketAddr>,
    pub own_address_from: &'static str,
    /// This process's `Vigil-Instance`.
    pub instance: &'static str,
    pub resolution: Resolution,
    /// Runs that asked the peers, and requests sent, since start.
    pub consultations: u64,
    pub peer_requests: u64,
    /// The last decision about each check that asked, by name.
    pub decisions: Vec<(String, Decision)>,
}

impl Fleet {
    pub fn new(config: &config::Fleet, metrics: &Metrics, state: Arc<State>) -> Result<Fleet, FleetError> {
        Ok(Fleet {
            config: config.clone(),
            metrics: FleetMetrics::register(metrics)?,
            state,
            resolved: Mutex::new((None, Resolution::default())),
            lookups: peers::Lookups::default(),
            itself: Mutex::new(HashSet::new()),
            decisions: RwLock::new(HashMap::new()),
            peer_requests: AtomicU64::new(0),
            consultations: AtomicU64::new(0),
            facts: None,
        })
    }

    /// Posts the replica count (the peers resolved, and this replica) to `facts` after each
    /// resolution.
    pub fn posting_to(mut self, facts: Arc<Facts>) -> Fleet {
        self.facts = Some(facts);
        self
    }

    /// Exports `vigil_fleet_panic{check}` at 0 for a check that takes part.
    pub fn track(&self, check: &str, settings: &CheckSettings) {
        if asks(settings) {
            self.metrics.panic.with_label_values(&[check]).set(0);
        }
    }

    /// Whether the last decision about `check` still holds its readiness at `now`.
    pub fn holds(&self, check: &str, now: Instant) -> bool {
        read(&self.decisions)
            .get(check)
            .is_some_and(|d| d.hold.holds() && now < d.expires)
    }

    /// Asks the peers about `check`, which just failed a run here, and decides; the state is
    /// told whether the check is held. Takes at most the check's timeout. Returns the panic's
    /// start or end, if the decision changed it.
    ///
    /// `was_passing`: the check reported pass or warn until this run (a failure starting now,
    /// not one at start-up or one going on).
    pub async fn consult(&self, check: &str, settings: &CheckSettings, was_passing: bool) -> Option<Transition> {
        let (chosen, answers) = self.ask_peers(check, settings).await;
        let tally = Tally::of(&answers);
        let decided = decide(&tally, self.config.panic_threshold);
        let now = Instant::now();
        let previous = read(&self.decisions)
            .get(check)
            .filter(|d| now < d.expires)
            .map(|d| (d.hold, d.panic_tally));
        let before = previous.map_or(Hold::None, |(hold, _)| hold);
        let hold = Hold::after(before, decided, was_passing, tally.answering());
        let panic_tally = match (hold, previous) {
            (Hold::Confirming, Some((_, last))) => last,
            _ => tally,
        };
        let keep = EXPIRES_AFTER_INTERVALS.max(settings.success_threshold + 1);
        let decision = Decision {
            tally,
            hold,
            panic_tally,
            at: now,
            at_wall: SystemTime::now(),
            expires: now + keep * settings.interval,
            answers: chosen.into_iter().zip(answers).collect(),
        };
        self.state.hold(check, hold.holds().then_some(decision.expires));
        write(&self.decisions).insert(check.to_owned(), decision);
        self.metrics
            .panic
            .with_label_values(&[check])
            .set(i64::from(hold.is_panic()));
        log_decision(
            check,
            &tally,
            hold,
            before.holds() && !before.is_panic() && hold == Hold::None,
        );
        self.announce(check, &tally, before.is_panic(), hold.is_panic())
    }

    /// Up to [`PEERS_ASKED`] peers chosen at random, asked about `check` within its timeout,
    /// resolution included (at most half of it). An address that answers with this process's
    /// own id is remembered and left out from then on.
    async fn ask_peers(&self, check: &str, settings: &CheckSettings) -> (Vec<SocketAddr>, Vec<Answer>) {
        let started = Instant::now();
        let timeout = settings.timeout;
        self.consultations.fetch_add(1, Ordering::Relaxed);
        let consultation = async {
            let mut chosen = self.peers(settings.interval, timeout / 2).await;
            fastrand::shuffle(&mut chosen);
            chosen.truncate(PEERS_ASKED);
            // Each request ends a little before the whole: a peer that never answers must not
            // race the outer cut, which would throw away every answer already in.
            let left = inner_deadline(timeout.saturating_sub(started.elapsed()));
            self.peer_requests.fetch_add(chosen.len() as u64, Ordering::Relaxed);
            let asked = chosen.iter().map(|addr| peers::ask(*addr, check, left, timeout));
            let answered = futures_util::future::join_all(asked).await;
            once_per_replica(chosen, answered)
        };
        // Every part is cut on its own; this is the promise that the whole never outlasts the
        // check's timeout.
        let (chosen, answers) = tokio::time::timeout(timeout, consultation).await.unwrap_or_default();
        self.learn_itself(&chosen, &answers);
        (chosen, answers)
    }

    /// Remembers the addresses that answered with this process's own id, and leaves them out
    /// of the peers known.
    fn learn_itself(&self, chosen: &[SocketAddr], answers: &[Answer]) {
        let found: HashSet<SocketAddr> = chosen
            .iter()
            .zip(answers)
            .filter(|(_, answer)| **answer == Answer::Itself)
            .map(|(addr, _)| *addr)
            .collect();
        if found.is_empty() {
            return;
        }
        tracing::info!(
            addresses = ?found,
            "Fleet: these peer addresses answered with this replica's own Vigil-Instance; leaving them out"
        );
        lock(&self.itself).extend(&found);
        let mut resolved = lock(&self.resolved);
        resolved.1.leave_out(&found);
        self.metrics
            .peers
            .set(i64::try_from(resolved.1.peers.len()).unwrap_or(i64::MAX));
    }

    /// The start or end of a panic, logged and returned for the transition ring.
    fn announce(&self, check: &str, tally: &Tally, was: bool, now: bool) -> Option<Transition> {
        let threshold = self.config.panic_threshold;
        match (was, now) {
            (false, true) => {
                let reason = hold_line(Hold::Panic, check, tally, threshold);
                tracing::warn!(
                    check,
                    fails = tally.fails,
                    answering = tally.answering(),
                    unknown = tally.unknown,
                    "Fleet panic started: {reason}"
                );
                Some(change(true, reason))
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
                Some(change(false, reason))
            }
            _ => None,
        }
    }

    /// After a run of `check` was recorded: a check that no longer fails here leaves its hold.
    pub fn settle(&self, check: &str, fails_here: bool) -> Option<Transition> {
        if fails_here {
            return None;
        }
        let mut decisions = write(&self.decisions);
        let decision = decisions.get_mut(check).filter(|d| d.hold.holds())?;
        let was = std::mem::replace(&mut decision.hold, Hold::None);
        drop(decisions);
        self.state.hold(check, None);
        if !was.is_panic() {
            return None;
        }
        self.metrics.panic.with_label_values(&[check]).set(0);
        let reason = format!("panic over: {check} passes here again");
        tracing::info!(check, "Fleet panic ended: {reason}");
        Some(change(false, reason))
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

    /// Resolves the peers (concurrently, within `deadline`) and keeps the result.
    pub async fn resolve(&self, deadline: Duration) -> Resolution {
        let previous = lock(&self.resolved).1.clone();
        let itself = lock(&self.itself).clone();
        let resolution = peers::resolve(&self.config, deadline, &self.lookups, &previous, &itself).await;
        self.metrics
            .peers
            .set(i64::try_from(resolution.peers.len()).unwrap_or(i64::MAX));
        *lock(&self.resolved) = (Some(Instant::now()), resolution.clone());
        if let Some(facts) = &self.facts {
            // A partial resolution (one name of several failing) would undercount: said, not posted.
            match resolution.errors.is_empty() {
                true => facts.post_replicas(
                    ReplicasFact {
                        count: resolution.peers.len() as u64 + 1,
                        from: format!("fleet.peers: {} peers and this replica", resolution.peers.len()),
                    },
                    3 * RESOLVE_EVERY,
                ),
                false => facts.replicas_unknown(format!(
                    "the fleet's peers did not all resolve: {}",
                    resolution.errors.join("; ")
                )),
            }
        }
        resolution
    }

    /// What `/diag` shows.
    pub fn view(&self) -> View {
        let mut decisions: Vec<(String, Decision)> = read(&self.decisions)
            .iter()
            .map(|(name, d)| (name.clone(), d.clone()))
            .collect();
        decisions.sort_by(|a, b| a.0.cmp(&b.0));
        View {
            peers: self.config.peers.targets().iter().map(|t| t.text.clone()).collect(),
            panic_threshold: self.config.panic_threshold,
            own_address: peers::own_address(&self.config),
            own_address_from: self.config.own_ip_source,
            instance: instance::id(),
            resolution: lock(&self.resolved).1.clone(),
            consultations: self.consultations.load(Ordering::Relaxed),
            peer_requests: self.peer_requests.load(Ordering::Relaxed),
            decisions,
        }
    }
}

/// The fleet watches the critical shared checks' runs: a failing run that will report fail
/// asks the peers before it is recorded (at most the check's timeout), so that the decision is
/// there with the fail; a check that no longer fails leaves its panic.
impl Observer for Fleet {
    fn before_record<'a>(&'a self, ended: &'a Ended<'a>) -> Look<'a> {
        Box::pin(async move {
            if !asks(ended.settings) || !ended.reports_fail {
                return;
            }
            if let Some(change) = self.consult(ended.check, ended.settings, ended.was_passing).await {
                self.state.note(change);
            }
        })
    }

    fn after_record(&self, recorded: &Recorded<'_>) {
        if !asks(recorded.settings) {
            return;
        }
        if let Some(change) = self.settle(recorded.check, recorded.failing) {
            self.state.note(change);
        }
    }
}

/// A panic's start or end as a change of `fleet` in the transition ring.
fn change(started: bool, reason: String) -> Transition {
    let (from, to) = match started {
        true => (Status::Pass, Status::Warn),
        false => (Status::Warn, Status::Pass),
    };
    Transition {
        check: "fleet".to_owned(),
        from: Some(from),
        to,
        reason,
        at: SystemTime::now(),
    }
}

/// The decisions between a panic's start and end that a person reading the log wants to see.
fn log_decision(check: &str, tally: &Tally, hold: Hold, own_fault: bool) {
    let (fails, answering) = (tally.fails, tally.answering());
    match hold {
        Hold::Tentative => tracing::info!(
            check,
            fails,
            answering,
            unknown = tally.unknown,
            "Fleet: {check} fails on {fails} of {answering} replicas, below the threshold; holding one run to ask again"
        ),
        Hold::Confirming => tracing::info!(
            check,
            fails,
            answering,
            unknown = tally.unknown,
            "Fleet panic: {check} fails on {fails} of {answering} replicas now; holding one more run to confirm"
        ),
        Hold::None if own_fault => tracing::info!(
            check,
            fails,
            answering,
            "Fleet: {check} fails on {fails} of {answering} replicas: the failure is this replica's"
        ),
        Hold::None | Hold::Panic => {}
    }
}

/// Resolves the peers now and every [`RESOLVE_EVERY`]; runs on the checks' runtime.
pub(crate) async fn keep_resolving(fleet: Arc<Fleet>) {
    loop {
        let resolution = fleet.resolve(Duration::from_secs(5)).await;
        if let Some(problem) = resolution.problem() {
            tracing::warn!(peers = ?fleet.config.peers.targets().iter().map(|t| &t.text).collect::<Vec<_>>(), "Fleet: {problem}");
        }
        tokio::time::sleep(RESOLVE_EVERY).await;
    }
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

/// The answers with each replica once: a second address answering with a `Vigil-Instance`
/// already heard (a dual-stack name gives every pod an IPv4 and an IPv6 address) is left out,
/// so that no replica's answer counts twice.
fn once_per_replica(
    chosen: Vec<SocketAddr>,
    answered: Vec<(Answer, Option<Vec<u8>>)>,
) -> (Vec<SocketAddr>, Vec<Answer>) {
    let mut heard = HashSet::new();
    chosen
        .into_iter()
        .zip(answered)
        // This replica's own answers all stay: each of their addresses is to be learned.
        .filter(|(_, (answer, instance))| {
            *answer == Answer::Itself || instance.as_ref().is_none_or(|id| heard.insert(id.clone()))
        })
        .map(|(addr, (answer, _))| (addr, answer))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_answering_at_two_addresses_counts_once() {
        let addr = |n: u8| SocketAddr::from(([127, 0, 0, n], 9476));
        let id = |text: &str| Some(text.as_bytes().to_vec());
        let (chosen, answers) = once_per_replica(
            vec![addr(2), addr(3), addr(4), addr(5), addr(6), addr(7)],
            vec![
                (Answer::Fails, id("a")),
                (Answer::Fails, id("a")),
                (Answer::Passes, id("b")),
                (Answer::Unknown("timed out".to_owned()), None),
                (Answer::Itself, id("self")),
                (Answer::Itself, id("self")),
            ],
        );
        assert_eq!(chosen, [addr(2), addr(4), addr(5), addr(6), addr(7)]);
        assert_eq!(
            answers,
            [
                Answer::Fails,
                Answer::Passes,
                Answer::Unknown("timed out".to_owned()),
                Answer::Itself,
                Answer::Itself
            ]
        );
    }

    fn tally(fails_there: usize, passes: usize, unknown: usize) -> Tally {
        let mut answers = vec![Answer::Fails; fails_there];
        answers.extend(vec![Answer::Passes; passes]);
        answers.extend(vec![Answer::Unknown("timed out after 1s".to_owned()); unknown]);
        Tally::of(&answers)
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
        Fleet::new(&config, &Metrics::new().unwrap(), Arc::new(State::new([]))).unwrap()
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
        assert_eq!(fleet.view().resolution.problem().as_deref(), Some(problem.as_str()));
    }

    /// A vigil peer answering every request with `status`, under an instance id of its own.
    async fn peer(status: u16) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0xaa);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        answering(status, format!("vigil-instance: {id:016x}\r\n")).await
    }

    /// A peer answering every request with `status` and these header lines.
    async fn answering(status: u16, headers: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0; 1024];
                let _ = stream.read(&mut request).await;
                let answer = format!("HTTP/1.1 {status} X\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n");
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
        let shown = fleet.view();
        assert_eq!(shown.decisions[0].1.hold, Hold::Tentative);
        assert_eq!(
            shown.decisions[0].1.line("postgres", 0.5).as_deref(),
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

    #[tokio::test]
    async fn a_503_without_vigil_instance_is_unknown_and_an_answer_from_itself_is_left_out() {
        let sidecar = answering(503, String::new()).await;
        let itself = answering(503, format!("vigil-instance: {}\r\n", instance::id())).await;
        let passing = peer(200).await;
        let fleet = fleet_of(&[&sidecar, &itself, &passing]);
        assert!(fleet.consult("postgres", &shared(), false).await.is_none());
        let shown = fleet.view();
        let decision = &shown.decisions[0].1;
        assert_eq!(
            (
                decision.tally.fails,
                decision.tally.passes,
                decision.tally.unknown,
                decision.tally.asked
            ),
            (1, 1, 1, 2),
            "{:?}",
            decision.answers
        );
        assert!(!fleet.holds("postgres", Instant::now()));
        assert_eq!(shown.resolution.peers.len(), 2, "itself left out from now on");
        assert_eq!(shown.resolution.own_left_out, 1);
        let again = fleet.resolve(Duration::from_secs(1)).await;
        assert_eq!(again.peers.len(), 2, "and in later resolutions");
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
                hold: Hold::Panic,
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
        let shown = fleet.view();
        assert_eq!(shown.decisions[0].1.hold, Hold::Confirming);
        assert_eq!(
            shown.decisions[0].1.line("postgres", 0.5).as_deref(),
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
                hold: Hold::Panic,
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
        assert_eq!(over.to, Status::Pass);
        assert_eq!(over.reason, "panic over: postgres passes here again");
        assert!(!fleet.holds("postgres", now));
        assert!(fleet.settle("postgres", false).is_none(), "ended once");
    }
}
