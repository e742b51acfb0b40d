//! The one shared state: the latest result of every check, the hysteresis that turns raw run
//! results into reported statuses ([`hysteresis`]), and the readiness derived from them
//! ([`blocks_readiness`]). A store: it asks no one. What others decide about a check (the
//! fleet holding its readiness through a fleet-wide failure) is written here as data
//! ([`State::hold`]) and read by the one readiness rule.
//!
//! Check tasks write here; endpoints only read. Reads clone what they need under a short lock
//! and never wait on a dependency.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::CheckSettings;
use crate::core::fmt;
use crate::core::outcome::{ComponentType, FailureKind, Outcome, Status};

/// How many status changes `/diag` keeps.
pub const TRANSITIONS_KEPT: usize = 50;

/// A result older than this many intervals is reported as `fail` (stale).
pub const STALE_INTERVALS: u32 = 3;

/// What the state needs to know of a check before it first runs.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    pub settings: CheckSettings,
    pub component_type: ComponentType,
}

/// One finished run, as the check returned it (before hysteresis).
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    pub finished: Instant,
    pub finished_at: SystemTime,
    pub duration: Duration,
}

/// A change of a check's reported status.
#[derive(Debug, Clone)]
pub struct Transition {
    pub check: String,
    /// `None` for the first result after start.
    pub from: Option<Status>,
    pub to: Status,
    pub reason: String,
    pub at: SystemTime,
}

/// The status a check reports after hysteresis, and since when.
#[derive(Debug, Clone)]
struct Reported {
    status: Status,
    reason: String,
    kind: Option<FailureKind>,
    hint: Option<String>,
    since: SystemTime,
}

#[derive(Debug, Default)]
struct Record {
    /// Shared with readers: a view clones the pointer, not the observations.
    last_run: Option<Arc<Run>>,
    reported: Option<Reported>,
    counts: Counts,
    runs: u64,
    /// Until when the loop rests at the last run's request (`Rerun::NotBefore`): until then
    /// the last result stands and the loop counts as on schedule.
    resting_until: Option<Instant>,
}

/// Consecutive raw results of one kind, the last run included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub failures: u32,
    pub successes: u32,
}

/// The one hysteresis rule: after a run that ended in `raw`, the consecutive counts, and
/// whether `raw` becomes the reported status (`previous` is the reported status before it).
///
/// The first result is reported as it is. After that, a check reports `fail` only after
/// `failure_threshold` consecutive failed runs, and leaves `fail` only after
/// `success_threshold` consecutive runs that did not fail. Between pass and warn there is no
/// hysteresis: warn never fails readiness. While a check fails, each failing run is adopted so
/// that the reason follows the latest cause (refused, then auth, …); the time since which it
/// fails stays (the caller keeps `since`).
pub fn hysteresis(previous: Option<Status>, counts: Counts, raw: Status, settings: &CheckSettings) -> (Counts, bool) {
    let counts = match raw {
        Status::Fail => Counts {
            failures: counts.failures + 1,
            successes: 0,
        },
        Status::Pass | Status::Warn => Counts {
            failures: 0,
            successes: counts.successes + 1,
        },
    };
    let adopt = match previous {
        None => true,
        Some(Status::Fail) => raw == Status::Fail || counts.successes >= settings.success_threshold,
        Some(_) => raw != Status::Fail || counts.failures >= settings.failure_threshold,
    };
    (counts, adopt)
}

/// One check's slot in the state.
#[derive(Debug)]
pub struct CheckSlot {
    spec: CheckSpec,
    record: RwLock<Record>,
    /// When the check's loop last showed progress; `/livez` watches it.
    heartbeat: Mutex<Instant>,
}

/// What a reader sees of one check at one instant: hysteresis and the stale rule applied.
#[derive(Debug, Clone)]
pub struct CheckView {
    pub name: String,
    pub settings: CheckSettings,
    pub component_type: ComponentType,
    /// `None` until the first run has finished.
    pub status: Option<Status>,
    pub reason: String,
    pub kind: Option<FailureKind>,
    pub hint: Option<String>,
    pub since: Option<SystemTime>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub runs: u64,
    pub last_run: Option<Arc<Run>>,
}

impl CheckView {
    /// Whether this check, on its own, keeps the agent from being ready.
    pub fn blocks_readiness(&self) -> bool {
        blocks_readiness(self.status, self.settings.critical, false)
    }
}

impl CheckSlot {
    pub fn new(spec: CheckSpec) -> Self {
        CheckSlot {
            spec,
            record: RwLock::new(Record::default()),
            heartbeat: Mutex::new(Instant::now()),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    /// Takes over `previous`'s results (reported status, counts, last run), for a check rebuilt
    /// by a reload: its hysteresis goes on, and it is not "no result yet" until its first run.
    pub fn inherit(&self, previous: &CheckSlot) {
        let record = previous.record.read().unwrap_or_else(PoisonError::into_inner);
        *self.record.write().unwrap_or_else(PoisonError::into_inner) = Record {
            last_run: record.last_run.clone(),
            reported: record.reported.clone(),
            counts: record.counts,
            runs: record.runs,
            resting_until: record.resting_until,
        };
    }

    /// Notes that the check's loop is alive.
    pub fn beat(&self) {
        *lock(&self.heartbeat) = Instant::now();
    }

    /// Whether the loop has shown progress recently enough: a run is cut at its timeout and the
    /// next starts one interval (plus a little jitter) after the previous, so twice that is late.
    /// A rest the last run asked for ([`CheckSlot::rest_until`]) is on schedule too.
    pub fn loop_on_schedule(&self, now: Instant) -> bool {
        let allowed = 2 * (self.spec.settings.interval + self.spec.settings.timeout) + Duration::from_secs(1);
        let beat = *lock(&self.heartbeat);
        let rest = self.record.read().unwrap_or_else(PoisonError::into_inner).resting_until;
        now.saturating_duration_since(rest.map_or(beat, |rest| rest.max(beat))) <= allowed
    }

    /// The loop rests until `until`, as the last run asked (a `Retry-After`): the last result
    /// stands until then (the stale rule counts from the end of the rest) and `/livez` counts
    /// the rest as on schedule. The scheduler calls it; nothing else decides a rest.
    pub fn rest_until(&self, until: Instant) {
        self.record
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .resting_until = Some(until);
    }

    /// Records a finished run, applies [`hysteresis`], and returns the status change if any.
    pub fn record(&self, run: Run) -> Option<Transition> {
        let mut record = self.record.write().unwrap_or_else(PoisonError::into_inner);
        let raw = run.outcome.status;
        let previous = record.reported.as_ref().map(|r| r.status);
        let (counts, adopt) = hysteresis(previous, record.counts, raw, &self.spec.settings);
        record.runs += 1;
        record.counts = counts;
        let transition = if adopt {
            let since = match &record.reported {
                Some(r) if r.status == raw => r.since,
                _ => run.finished_at,
            };
            record.reported = Some(Reported {
                status: raw,
                reason: run.outcome.reason.clone(),
                kind: run.outcome.kind,
                hint: run.outcome.hint.clone(),
                since,
            });
            (previous != Some(raw)).then(|| Transition {
                check: self.spec.name.clone(),
                from: previous,
                to: raw,
                reason: run.outcome.reason.clone(),
                at: run.finished_at,
            })
        } else {
            None
        };
        record.last_run = Some(Arc::new(run));
        transition
    }

    /// Whether recording a run that ended in `raw` would leave the check reporting fail: the
    /// rule of [`hysteresis`], read ahead (the fleet asks its peers only then).
    pub fn would_report_fail(&self, raw: Status) -> bool {
        let record = self.record.read().unwrap_or_else(PoisonError::into_inner);
        let previous = record.reported.as_ref().map(|r| r.status);
        let (_, adopt) = hysteresis(previous, record.counts, raw, &self.spec.settings);
        raw == Status::Fail && (adopt || previous == Some(Status::Fail))
    }

    /// The check as a reader sees it at `now`.
    pub fn view(&self, now: Instant) -> CheckView {
        let record = self.record.read().unwrap_or_else(PoisonError::into_inner);
        let mut view = CheckView {
            name: self.spec.name.clone(),
            settings: self.spec.settings,
            component_type: self.spec.component_type,
            status: None,
            reason: "no result yet: first run in progress".to_owned(),
            kind: None,
            hint: None,
            since: None,
            consecutive_failures: record.counts.failures,
            consecutive_successes: record.counts.successes,
            runs: record.runs,
            last_run: record.last_run.clone(),
        };
        if let Some(reported) = &record.reported {
            view.status = Some(reported.status);
            view.reason.clone_from(&reported.reason);
            view.kind = reported.kind;
            view.hint.clone_from(&reported.hint);
            view.since = Some(reported.since);
        }
        if let Some(age) = self.stale_age(&record, now) {
            view.status = Some(Status::Fail);
            view.reason = format!("stale: no result for {}", fmt::duration(round_to_millis(age)));
            view.kind = Some(FailureKind::Stale);
            view.hint = Some("the check's loop has stopped reporting; see vigil's log and /livez".to_owned());
        }
        view
    }

    /// The status readers see at `now` (`None`: no result yet), without building a view: the
    /// hot path of a plain `/readyz`.
    pub fn status(&self, now: Instant) -> Option<Status> {
        let record = self.record.read().unwrap_or_else(PoisonError::into_inner);
        let reported = record.reported.as_ref()?.status;
        Some(if self.stale_age(&record, now).is_some() {
            Status::Fail
        } else {
            reported
        })
    }

    /// How old the last result is, when it is older than [`STALE_INTERVALS`] intervals, counted
    /// from the end of a rest the last run asked for when there is one.
    fn stale_age(&self, record: &Record, now: Instant) -> Option<Duration> {
        let finished = record.last_run.as_ref()?.finished;
        let counted_from = record.resting_until.map_or(finished, |rest| rest.max(finished));
        let late = now.saturating_duration_since(counted_from) > STALE_INTERVALS * self.spec.settings.interval;
        late.then(|| now.saturating_duration_since(finished))
    }
}

/// The whole agent's state.
#[derive(Debug)]
pub struct State {
    /// In the order `/readyz` lists them. Replaced whole by a reload (kept checks keep their
    /// slot); readers take the list, not the lock, for as long as they need it.
    checks: RwLock<Arc<[Arc<CheckSlot>]>>,
    started: Instant,
    started_at: SystemTime,
    draining: AtomicBool,
    transitions: Mutex<VecDeque<Transition>>,
    kubelet_probes: Mutex<Vec<(&'static str, SystemTime)>>,
    /// Checks whose failure does not fail readiness until the given instant: the fleet's
    /// decisions during a fleet-wide failure of a shared check (see `fleet`).
    holds: RwLock<HashMap<String, Instant>>,
    /// Taken out by hand (`vigil drain`, see `engine::drain`): not ready until its deadline,
    /// whatever the checks say and whatever the fleet holds.
    drained: RwLock<Option<Drained>>,
}

/// This replica taken out of the Service by hand (`vigil drain`, `POST /drain`): `/readyz`
/// answers 503 until `until`, everything else serves as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The operator's words, bounded and printable.
    pub reason: String,
    pub since: SystemTime,
    /// The deadline: readiness reads it, so that a drain never outlives it by a moment.
    pub until: Instant,
    pub until_wall: SystemTime,
}

impl Drained {
    /// `taken out by hand: forensics (until 14:32:05Z)`: the `/readyz` line's reason, the log's
    /// and the Event's.
    pub fn describe(&self) -> String {
        let clock = fmt::timestamp_seconds(self.until_wall);
        let time_of_day = clock.split_once('T').map_or(clock.as_str(), |(_, t)| t);
        format!("taken out by hand: {} (until {time_of_day})", self.reason)
    }
}

/// The readiness answer, with the view it was derived from.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub ready: bool,
    pub draining: bool,
    pub checks: Vec<CheckView>,
    /// The failing checks whose readiness is held now (the fleet's panic).
    pub held: Vec<String>,
    /// Taken out by hand now.
    pub drained: Option<Drained>,
}

impl State {
    pub fn new(specs: impl IntoIterator<Item = CheckSpec>) -> Self {
        State {
            checks: RwLock::new(specs.into_iter().map(|spec| Arc::new(CheckSlot::new(spec))).collect()),
            started: Instant::now(),
            started_at: SystemTime::now(),
            draining: AtomicBool::new(false),
            transitions: Mutex::new(VecDeque::with_capacity(TRANSITIONS_KEPT)),
            kubelet_probes: Mutex::new(Vec::new()),
            holds: RwLock::new(HashMap::new()),
            drained: RwLock::new(None),
        }
    }

    /// Takes this replica out by hand until `drained.until`, or (`None`) puts it back; returns
    /// the drain it replaces, its deadline passed or not.
    pub fn set_drained(&self, drained: Option<Drained>) -> Option<Drained> {
        let mut slot = self.drained.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, drained)
    }

    /// The drain as set, its deadline passed or not (`engine::drain` ends it).
    pub fn drained_raw(&self) -> Option<Drained> {
        self.drained.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts this replica back if the drain is still `expected` (not one started since); returns
    /// whether it was.
    pub fn take_drained_if(&self, expected: &Drained) -> bool {
        let mut slot = self.drained.write().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref() == Some(expected) {
            *slot = None;
            return true;
        }
        false
    }

    /// The drain in force at `now`, if any (one past its deadline is over, even before
    /// `engine::drain` has noticed).
    pub fn drained(&self, now: Instant) -> Option<Drained> {
        self.drained
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|d| now < d.until)
            .cloned()
    }

    /// Holds `check`'s readiness until `until` (a failure there then does not fail `/readyz`),
    /// or no longer with `None`.
    pub fn hold(&self, check: &str, until: Option<Instant>) {
        let mut holds = self.holds.write().unwrap_or_else(PoisonError::into_inner);
        match until {
            Some(until) => {
                holds.insert(check.to_owned(), until);
            }
            None => {
                holds.remove(check);
            }
        }
    }

    /// Whether `check`'s readiness is held at `now`.
    fn held(&self, check: &str, now: Instant) -> bool {
        self.holds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(check)
            .is_some_and(|until| now < *until)
    }

    /// Keeps a change that is not a check's own status change (the fleet's panic starting or
    /// ending) in the transition ring.
    pub fn note(&self, transition: Transition) {
        let mut ring = lock(&self.transitions);
        if ring.len() == TRANSITIONS_KEPT {
            ring.pop_front();
        }
        ring.push_back(transition);
    }

    /// The checks now, in order.
    pub fn slots(&self) -> Arc<[Arc<CheckSlot>]> {
        Arc::clone(&self.checks.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn slot(&self, name: &str) -> Option<Arc<CheckSlot>> {
        self.slots().iter().find(|c| c.name() == name).cloned()
    }

    /// The checks from now on (a reload): kept ones are the same slots, with their state.
    pub fn set_slots(&self, slots: Vec<Arc<CheckSlot>>) {
        *self.checks.write().unwrap_or_else(PoisonError::into_inner) = slots.into();
    }

    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records a run of the check of `slot` and keeps its status change, if any.
    pub fn record(&self, slot: &CheckSlot, run: Run) -> Option<Transition> {
        let transition = slot.record(run)?;
        self.note(transition.clone());
        Some(transition)
    }

    /// The last status changes, oldest first.
    pub fn transitions(&self) -> Vec<Transition> {
        lock(&self.transitions).iter().cloned().collect()
    }

    /// From now on `/readyz` answers 503 with `[-]shutdown failed: draining`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The readiness rule over every check but `excluded`, from one reading of `statuses`
    /// (each check's status at `now`, in order): the one place it is applied.
    fn ready_with(
        &self,
        slots: &[Arc<CheckSlot>],
        statuses: &[Option<Status>],
        now: Instant,
        excluded: &[&str],
    ) -> bool {
        !self.is_draining()
            && self.drained(now).is_none()
            && !slots.iter().zip(statuses).any(|(slot, status)| {
                !excluded.contains(&slot.name())
                    && blocks_readiness(*status, slot.spec.settings.critical, self.held(slot.name(), now))
            })
    }

    /// Whether `/readyz` answers 200, without building views.
    pub fn is_ready(&self, now: Instant, excluded: &[&str]) -> bool {
        let slots = self.slots();
        let statuses: Vec<Option<Status>> = slots.iter().map(|c| c.status(now)).collect();
        self.ready_with(&slots, &statuses, now, excluded)
    }

    /// Each check's status and readiness from one reading, without building views: what
    /// `/metrics` shows, so that `vigil_ready` and `vigil_check_status` never disagree.
    pub fn statuses(&self, now: Instant) -> (bool, Vec<(String, Option<Status>)>) {
        let slots = self.slots();
        let statuses: Vec<Option<Status>> = slots.iter().map(|c| c.status(now)).collect();
        let ready = self.ready_with(&slots, &statuses, now, &[]);
        let named = slots.iter().map(|c| c.name().to_owned()).zip(statuses).collect();
        (ready, named)
    }

    /// Readiness over every check except `excluded`, with each check's view.
    pub fn readiness(&self, now: Instant, excluded: &[&str]) -> Readiness {
        let slots = self.slots();
        let checks: Vec<CheckView> = slots.iter().map(|c| c.view(now)).collect();
        let statuses: Vec<Option<Status>> = checks.iter().map(|c| c.status).collect();
        let held = checks
            .iter()
            .filter(|c| c.status == Some(Status::Fail) && self.held(&c.name, now))
            .map(|c| c.name.clone())
            .collect();
        Readiness {
            ready: self.ready_with(&slots, &statuses, now, excluded),
            draining: self.is_draining(),
            checks,
            held,
            drained: self.drained(now),
        }
    }

    /// The checks whose loops have stopped making progress.
    pub fn stalled_loops(&self, now: Instant) -> Vec<String> {
        self.slots()
            .iter()
            .filter(|c| !c.loop_on_schedule(now))
            .map(|c| c.name().to_owned())
            .collect()
    }

    /// Notes a request from the kubelet's prober.
    pub fn note_kubelet_probe(&self, endpoint: &'static str, at: SystemTime) {
        let mut probes = lock(&self.kubelet_probes);
        match probes.iter_mut().find(|(e, _)| *e == endpoint) {
            Some(entry) => entry.1 = at,
            None => probes.push((endpoint, at)),
        }
    }

    /// When the kubelet last probed each endpoint.
    pub fn kubelet_probes(&self) -> Vec<(&'static str, SystemTime)> {
        lock(&self.kubelet_probes).clone()
    }
}

/// The readiness rule: no result yet, or a critical check failing, unless its readiness is held
/// (`held`: a critical shared check in a fleet-wide failure, see `fleet`).
pub fn blocks_readiness(status: Option<Status>, critical: bool, held: bool) -> bool {
    match status {
        None => true,
        Some(Status::Fail) => critical && !held,
        Some(_) => false,
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (plain values
/// replaced whole) is still consistent, so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(failure_threshold: u32, success_threshold: u32) -> CheckSettings {
        CheckSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            failure_threshold,
            success_threshold,
            critical: true,
            scope: crate::config::Scope::Shared,
        }
    }

    fn state(failure_threshold: u32, success_threshold: u32) -> State {
        State::new([CheckSpec {
            name: "dep".to_owned(),
            settings: settings(failure_threshold, success_threshold),
            component_type: ComponentType::Component,
        }])
    }

    fn run(status: Status, reason: &str) -> Run {
        let outcome = match status {
            Status::Pass => Outcome::pass(),
            Status::Warn => Outcome::warn(FailureKind::Threshold, reason),
            Status::Fail => Outcome::fail(FailureKind::Refused, reason),
        };
        Run {
            outcome,
            finished: Instant::now(),
            finished_at: SystemTime::now(),
            duration: Duration::from_millis(3),
        }
    }

    fn reported(state: &State) -> Option<Status> {
        state.slots()[0].view(Instant::now()).status
    }

    #[test]
    fn not_ready_until_the_first_run() {
        let state = state(2, 1);
        assert!(!state.readiness(Instant::now(), &[]).ready);
        assert_eq!(reported(&state), None);
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        assert!(state.readiness(Instant::now(), &[]).ready);
    }

    #[test]
    fn fail_is_reported_only_after_failure_threshold_runs() {
        let state = state(3, 1);
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        assert!(state.record(&state.slots()[0], run(Status::Fail, "refused")).is_none());
        assert!(state.record(&state.slots()[0], run(Status::Fail, "refused")).is_none());
        assert_eq!(reported(&state), Some(Status::Pass));
        assert_eq!(state.slots()[0].view(Instant::now()).consecutive_failures, 2);
        let change = state
            .record(&state.slots()[0], run(Status::Fail, "refused"))
            .expect("third failure reports fail");
        assert_eq!(
            (change.from, change.to, change.reason.as_str()),
            (Some(Status::Pass), Status::Fail, "refused")
        );
        assert!(!state.readiness(Instant::now(), &[]).ready);
    }

    #[test]
    fn a_pass_between_failures_resets_the_count() {
        let state = state(2, 1);
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        state.record(&state.slots()[0], run(Status::Fail, "refused"));
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        state.record(&state.slots()[0], run(Status::Fail, "refused"));
        assert_eq!(reported(&state), Some(Status::Pass));
    }

    #[test]
    fn a_failing_check_shows_the_latest_cause_since_the_first_failure() {
        let state = state(1, 1);
        state.record(&state.slots()[0], run(Status::Fail, "connection refused"));
        let since = state.slots()[0].view(Instant::now()).since;
        assert!(
            state
                .record(&state.slots()[0], run(Status::Fail, "authentication failed"))
                .is_none()
        );
        let view = state.slots()[0].view(Instant::now());
        assert_eq!(view.reason, "authentication failed");
        assert_eq!(view.since, since);
    }

    #[test]
    fn recovery_needs_success_threshold_runs() {
        let state = state(1, 2);
        state.record(&state.slots()[0], run(Status::Fail, "refused"));
        assert_eq!(reported(&state), Some(Status::Fail));
        assert!(state.record(&state.slots()[0], run(Status::Pass, "ok")).is_none());
        assert_eq!(reported(&state), Some(Status::Fail));
        let change = state
            .record(&state.slots()[0], run(Status::Pass, "ok"))
            .expect("second pass recovers");
        assert_eq!((change.from, change.to), (Some(Status::Fail), Status::Pass));
    }

    #[test]
    fn warn_never_fails_readiness_and_changes_at_once() {
        let state = state(2, 2);
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        let change = state
            .record(&state.slots()[0], run(Status::Warn, "slow"))
            .expect("pass to warn is immediate");
        assert_eq!(change.to, Status::Warn);
        assert!(state.readiness(Instant::now(), &[]).ready);
    }

    #[test]
    fn the_first_result_is_a_transition_and_repeats_are_not() {
        let state = state(1, 1);
        let first = state
            .record(&state.slots()[0], run(Status::Pass, "ok"))
            .expect("first result is logged");
        assert_eq!(first.from, None);
        assert!(state.record(&state.slots()[0], run(Status::Pass, "ok")).is_none());
        assert_eq!(state.transitions().len(), 1);
    }

    #[test]
    fn the_transition_ring_keeps_the_last_fifty() {
        let state = state(1, 1);
        for i in 0..(TRANSITIONS_KEPT + 10) {
            let status = if i % 2 == 0 { Status::Pass } else { Status::Fail };
            state.record(&state.slots()[0], run(status, &format!("run {i}")));
        }
        let kept = state.transitions();
        assert_eq!(kept.len(), TRANSITIONS_KEPT);
        assert_eq!(kept.last().map(|t| t.reason.as_str()), Some("run 59"));
    }

    #[test]
    fn a_result_older_than_three_intervals_is_stale() {
        let state = state(1, 1);
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        let later = Instant::now() + Duration::from_millis(3100);
        let view = state.slots()[0].view(later);
        assert_eq!(view.status, Some(Status::Fail));
        assert_eq!(view.kind, Some(FailureKind::Stale));
        assert!(view.reason.starts_with("stale: no result for 3s"), "{}", view.reason);
        assert!(!state.readiness(later, &[]).ready);
        assert!(!state.is_ready(later, &[]));
        assert!(state.readiness(Instant::now(), &[]).ready, "fresh result is not stale");
        assert!(state.is_ready(Instant::now(), &[]));
    }

    #[test]
    fn a_failure_is_known_to_be_reported_before_it_is_recorded() {
        let state = state(2, 1);
        let slot = &state.slots()[0];
        assert!(
            slot.would_report_fail(Status::Fail),
            "the first result is reported as it is"
        );
        state.record(&state.slots()[0], run(Status::Pass, "ok"));
        assert!(!slot.would_report_fail(Status::Fail), "one failure of two");
        assert!(!slot.would_report_fail(Status::Pass));
        state.record(&state.slots()[0], run(Status::Fail, "refused"));
        assert!(slot.would_report_fail(Status::Fail), "the second one reports fail");
        state.record(&state.slots()[0], run(Status::Fail, "refused"));
        assert!(slot.would_report_fail(Status::Fail), "still failing");
    }

    #[test]
    fn excluded_and_non_critical_failures_keep_readiness() {
        let state = state(1, 1);
        state.record(&state.slots()[0], run(Status::Fail, "refused"));
        assert!(!state.readiness(Instant::now(), &[]).ready);
        assert!(!state.is_ready(Instant::now(), &[]));
        assert!(state.readiness(Instant::now(), &["dep"]).ready);
        assert!(state.is_ready(Instant::now(), &["dep"]));
        state.start_draining();
        let draining = state.readiness(Instant::now(), &["dep"]);
        assert!(!draining.ready && draining.draining);
    }
}
