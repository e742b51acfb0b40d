//! One task per check, and the only place that decides when a check runs: first run at start
//! (or after its spreading delay), then every `interval` (plus up to a tenth of it as jitter,
//! so that replicas and checks do not fire in lockstep); earlier when the check rings its
//! [`Wake`] or its run asks for it ([`Rerun`]), within the limits below. Each run is cut at
//! `timeout` and a panic becomes that check's fail. Results go to the state; status changes are
//! logged here and only here.
//!
//! The limits on early runs, so that no dependency can drive a check in a tight loop:
//! - runs caused by wakes are at least [`WAKE_SPACING`] apart; a ring within that time runs when
//!   it is over, and rings meanwhile coalesce into that one run;
//! - a failing run that asks to be confirmed is re-run at once, at most `failure_threshold - 1`
//!   times in a row (the confirmation budget); a run that asks for nothing refills it;
//! - once the budget is spent, a run that asks to look again soon does so no sooner than
//!   [`EARLY_RUN_FLOOR`] after the previous run started.
//!
//! A run may also ask for a later run ([`Rerun::NotBefore`]: the dependency answered 429 or 503
//! with `Retry-After`): the loop then rests until then, at most [`MAX_WAIT_INTERVALS`]
//! intervals, wakes ignored, and tells the slot ([`CheckSlot::rest_until`]) so that the last
//! result is not stale and `/livez` counts the rest as on schedule.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::observe::{Ended, Observer, Recorded};
use super::state::{CheckSlot, CheckSpec, Run, State, Transition};
use crate::checks::{Check, Scheduled, Wake};
use crate::config::CheckSettings;
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Outcome, Rerun, Status};
use crate::metrics::Metrics;
use crate::metrics::series::CheckSeries;

/// The least time between two runs caused by wakes.
pub const WAKE_SPACING: Duration = Duration::from_secs(1);

/// The least time between the starts of two runs outside the confirmation budget.
pub const EARLY_RUN_FLOOR: Duration = Duration::from_millis(100);

/// The longest a run may put off the next one ([`Rerun::NotBefore`]), in intervals: a
/// `Retry-After: 86400` must not silence a check for a day.
pub const MAX_WAIT_INTERVALS: u32 = 10;

/// What the state needs to know of each scheduled check, in order.
pub fn specs(checks: &[Scheduled]) -> Vec<CheckSpec> {
    checks
        .iter()
        .map(|c| CheckSpec {
            name: c.name.clone(),
            settings: c.settings,
            component_type: c.check.component_type(),
        })
        .collect()
}

/// The running check loops, one per check, in the state's order.
pub struct Loops {
    runtime: Handle,
    shared: Arc<Shared>,
    running: Vec<Running>,
}

/// What every loop records into and tells.
struct Shared {
    state: Arc<State>,
    metrics: Metrics,
    observers: Vec<Arc<dyn Observer>>,
}

struct Running {
    slot: Arc<CheckSlot>,
    task: JoinHandle<()>,
}

impl Loops {
    /// Starts one loop per check on `runtime`, each recording into `state` (which must have
    /// been built from [`specs`] of the same list) and telling `observers` of its runs.
    pub fn start(
        runtime: &Handle,
        state: &Arc<State>,
        metrics: &Metrics,
        observers: Vec<Arc<dyn Observer>>,
        checks: Vec<Scheduled>,
    ) -> Loops {
        let shared = Arc::new(Shared {
            state: Arc::clone(state),
            metrics: metrics.clone(),
            observers,
        });
        let running = state
            .slots()
            .iter()
            .zip(checks)
            .map(|(slot, scheduled)| spawn_loop(runtime, &shared, Arc::clone(slot), scheduled))
            .collect();
        Loops {
            runtime: runtime.clone(),
            shared,
            running,
        }
    }

    /// Makes `order` the checks from now on: the ones in `order` that are not in `started`
    /// keep their loop and slot (their state, their schedule); every other running check's
    /// loop stops (its future dropped at an await point: runs are cancel-safe); `started`
    /// begin in new slots, which for a changed check (one of the same name) go on from the old
    /// slot's reported status and counts, so that a reload never turns a passing check into
    /// "no result yet" (which fails readiness) nor a failing one into a fresh start.
    pub fn replace(&mut self, order: &[String], started: Vec<Scheduled>) {
        let mut started: Vec<Option<Scheduled>> = started.into_iter().map(Some).collect();
        let mut old = std::mem::take(&mut self.running);
        for name in order {
            let fresh = started
                .iter_mut()
                .find(|s| s.as_ref().is_some_and(|s| &s.name == name))
                .and_then(Option::take);
            let kept = match fresh {
                Some(_) => None,
                None => old
                    .iter()
                    .position(|r| r.slot.name() == name)
                    .map(|at| old.swap_remove(at)),
            };
            match (fresh, kept) {
                (Some(scheduled), _) => {
                    let spec = specs(std::slice::from_ref(&scheduled)).remove(0);
                    let slot = CheckSlot::new(spec);
                    if let Some(previous) = old.iter().find(|r| r.slot.name() == name) {
                        slot.inherit(&previous.slot);
                    }
                    let slot = Arc::new(slot);
                    self.running
                        .push(spawn_loop(&self.runtime, &self.shared, slot, scheduled));
                }
                (None, Some(running)) => self.running.push(running),
                (None, None) => tracing::error!(check = %name, "Reload: a check to keep is not running"),
            }
        }
        for gone in old {
            gone.task.abort();
        }
        self.shared
            .state
            .set_slots(self.running.iter().map(|r| Arc::clone(&r.slot)).collect());
    }

    /// Stops every loop.
    pub fn abort_all(&self) {
        for running in &self.running {
            running.task.abort();
        }
    }
}

fn spawn_loop(runtime: &Handle, shared: &Arc<Shared>, slot: Arc<CheckSlot>, scheduled: Scheduled) -> Running {
    let series = shared.metrics.register_check(&scheduled.name);
    let task = runtime.spawn(check_loop(Arc::clone(&slot), scheduled, Arc::clone(shared), series));
    Running { slot, task }
}

/// Why the loop woke for the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Planned,
    Woken,
}

/// When the next run starts: the plan of one check's loop.
#[derive(Debug)]
struct Plan {
    settings: CheckSettings,
    /// Immediate confirmation re-runs still allowed.
    confirm_left: u32,
    /// When the last run caused by a wake started.
    last_woken: Option<Instant>,
}

impl Plan {
    fn new(settings: CheckSettings) -> Plan {
        Plan {
            settings,
            confirm_left: settings.failure_threshold.saturating_sub(1),
            last_woken: None,
        }
    }

    /// When the run after one that started at `started` and ended in `status` asking for
    /// `rerun` starts, with `jitter` added to a planned interval.
    fn next(&mut self, started: Instant, (status, rerun): (Status, Rerun), jitter: Duration) -> Instant {
        let planned = started + self.settings.interval + jitter;
        let early = match rerun {
            // Not a confirmation: the budget is neither spent nor refilled.
            Rerun::NotBefore(wait) => {
                let cap = started + self.settings.interval * MAX_WAIT_INTERVALS;
                // `Retry-After: 99999999999` must not overflow the clock.
                let asked = Instant::now().checked_add(wait).unwrap_or(cap);
                return asked.min(cap).max(planned);
            }
            Rerun::Scheduled => {
                self.confirm_left = self.settings.failure_threshold.saturating_sub(1);
                return planned;
            }
            _ if status == Status::Fail && self.confirm_left > 0 => {
                self.confirm_left -= 1;
                return Instant::now();
            }
            Rerun::Confirm => return planned,
            Rerun::ConfirmThenEvery(after) => started + after.max(EARLY_RUN_FLOOR),
        };
        early.min(planned)
    }

    /// When a run caused by a wake may start.
    fn woken_at(&mut self, now: Instant) -> Instant {
        let at = self.last_woken.map_or(now, |last| now.max(last + WAKE_SPACING));
        self.last_woken = Some(at);
        at
    }
}

async fn check_loop(slot: Arc<CheckSlot>, mut scheduled: Scheduled, shared: Arc<Shared>, series: Arc<CheckSeries>) {
    let slot = &*slot;
    let wake = scheduled.check.wake();
    let mut plan = Plan::new(scheduled.settings);
    let mut planned = Instant::now() + scheduled.first_run_delay;
    if !scheduled.first_run_delay.is_zero() {
        slot.beat();
        tokio::time::sleep_until(planned).await;
    }
    loop {
        let started = Instant::now();
        // How late this run starts against its plan: the figure the upstreams bench reads
        // (RUST_LOG=vigil::scheduler=trace); free when the level is off.
        let lag_us = u64::try_from(started.saturating_duration_since(planned).as_micros()).unwrap_or(u64::MAX);
        tracing::trace!(check = %scheduled.name, lag_us, "Run started");
        let ended = run_and_record(&mut scheduled, &shared, slot, &series).await;
        planned = plan.next(started, ended, jitter(scheduled.settings.interval));
        if let Rerun::NotBefore(_) = ended.1 {
            // The dependency asked for quiet: no wake shortens the rest.
            slot.rest_until(planned);
            wait(planned, None).await;
            continue;
        }
        if wait(planned, wake.as_ref()).await == Cause::Woken {
            tracing::debug!(check = %scheduled.name, "Running again early: the check saw its dependency change");
            planned = plan.woken_at(Instant::now());
            slot.beat();
            // Rings until then are this same run.
            while wait(planned, wake.as_ref()).await == Cause::Woken {}
        }
    }
}

/// One guarded run, recorded in the state and the check's series, the observers told before
/// and after; returns the raw status and what the run asked for next.
async fn run_and_record(
    scheduled: &mut Scheduled,
    shared: &Shared,
    slot: &CheckSlot,
    series: &CheckSeries,
) -> (Status, Rerun) {
    slot.beat();
    let started = Instant::now();
    let outcome = run_guarded(scheduled.check.as_mut(), scheduled.settings.timeout).await;
    let duration = started.elapsed();
    series.observe_run(outcome.status, duration.as_secs_f64());
    let run = Run {
        outcome,
        finished: Instant::now(),
        finished_at: SystemTime::now(),
        duration,
    };
    let raw = run.outcome.status;
    let ended = Ended {
        check: &scheduled.name,
        settings: &scheduled.settings,
        raw,
        reports_fail: slot.would_report_fail(raw),
        was_passing: matches!(slot.status(Instant::now()), Some(Status::Pass | Status::Warn)),
    };
    for observer in &shared.observers {
        slot.beat();
        observer.before_record(&ended).await;
    }
    let rerun = run.outcome.rerun;
    let transition = shared.state.record(slot, run);
    if let Some(transition) = &transition {
        log_transition(transition);
    }
    let recorded = Recorded {
        check: &scheduled.name,
        settings: &scheduled.settings,
        failing: slot.status(Instant::now()) == Some(Status::Fail),
        transition: transition.as_ref(),
    };
    for observer in &shared.observers {
        observer.after_record(&recorded);
    }
    slot.beat();
    (raw, rerun)
}

/// Sleeps until `until`, or until the check rings its wake.
async fn wait(until: Instant, wake: Option<&Wake>) -> Cause {
    let sleep = tokio::time::sleep_until(until);
    match wake {
        Some(wake) => tokio::select! {
            () = sleep => Cause::Planned,
            () = wake.rung() => Cause::Woken,
        },
        None => {
            sleep.await;
            Cause::Planned
        }
    }
}

/// Runs a check once: never longer than `timeout`, never unwinding into the caller.
pub async fn run_guarded(check: &mut dyn Check, timeout: Duration) -> Outcome {
    // A check may panic while building its future as well as while it runs.
    let run = match std::panic::catch_unwind(AssertUnwindSafe(move || {
        let check = check;
        check.run()
    })) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind(),
        Err(panic) => return panicked(&*panic),
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => panicked(&*panic),
        Err(_) => Outcome::fail(FailureKind::Timeout, format!("timed out after {}", fmt::duration(timeout)))
            .with_hint("the dependency did not answer in time: see /diag for its last figures and raise `timeout` only if it is known to be slow"),
    }
}

fn panicked(panic: &(dyn Any + Send)) -> Outcome {
    Outcome::fail(FailureKind::Panic, format!("check panicked: {}", panic_message(panic)))
        .with_hint("a bug in vigil: report it with this reason and vigil's log; the check keeps running")
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

fn jitter(interval: Duration) -> Duration {
    let tenth = u64::try_from(interval.as_millis() / 10).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=tenth))
}

fn log_transition(t: &Transition) {
    let from = t.from.map_or("none", |s| s.as_str());
    let to = t.to.as_str();
    match t.to {
        Status::Pass => {
            tracing::info!(check = %t.check, from, to, reason = %t.reason, "Check status changed")
        }
        Status::Warn => {
            tracing::warn!(check = %t.check, from, to, reason = %t.reason, "Check status changed")
        }
        Status::Fail => {
            tracing::error!(check = %t.check, from, to, reason = %t.reason, "Check status changed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::RunFuture;

    struct Scripted(fn(u32) -> Outcome, u32);

    impl Check for Scripted {
        fn run(&mut self) -> RunFuture<'_> {
            self.1 += 1;
            let outcome = (self.0)(self.1);
            Box::pin(async move { outcome })
        }
    }

    struct Hangs;

    impl Check for Hangs {
        fn run(&mut self) -> RunFuture<'_> {
            Box::pin(std::future::pending())
        }
    }

    struct Panics;

    impl Check for Panics {
        fn run(&mut self) -> RunFuture<'_> {
            Box::pin(async { panic!("index out of bounds in a check") })
        }
    }

    /// A check that notes when each run started (paused time) and answers from a script.
    struct Recorder {
        starts: Arc<std::sync::Mutex<Vec<Instant>>>,
        script: fn(usize) -> Outcome,
        wake: Option<Wake>,
    }

    impl Check for Recorder {
        fn run(&mut self) -> RunFuture<'_> {
            let mut starts = self.starts.lock().unwrap();
            starts.push(Instant::now());
            let outcome = (self.script)(starts.len());
            Box::pin(async move { outcome })
        }

        fn wake(&self) -> Option<Wake> {
            self.wake.clone()
        }
    }

    fn settings(interval: Duration, failure_threshold: u32) -> CheckSettings {
        CheckSettings {
            interval,
            timeout: Duration::from_secs(1),
            failure_threshold,
            success_threshold: 1,
            critical: true,
            scope: crate::config::Scope::Local,
        }
    }

    /// Starts one loop over `script`; returns the run starts (as offsets from now) and the wake.
    fn start_loop(
        settings: CheckSettings,
        script: fn(usize) -> Outcome,
    ) -> (Instant, Arc<std::sync::Mutex<Vec<Instant>>>, Wake) {
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let wake = Wake::new();
        let check = Recorder {
            starts: Arc::clone(&starts),
            script,
            wake: Some(wake.clone()),
        };
        let scheduled = Scheduled::new("dep", settings, check);
        let state = Arc::new(State::new(specs(std::slice::from_ref(&scheduled))));
        let metrics = Metrics::new().unwrap();
        let series = metrics.register_check("dep");
        let t0 = Instant::now();
        let slot = Arc::clone(&state.slots()[0]);
        tokio::spawn(check_loop(slot, scheduled, shared(state, metrics), series));
        (t0, starts, wake)
    }

    fn shared(state: Arc<State>, metrics: Metrics) -> Arc<Shared> {
        Arc::new(Shared {
            state,
            metrics,
            observers: Vec::new(),
        })
    }

    fn offsets(t0: Instant, starts: &std::sync::Mutex<Vec<Instant>>) -> Vec<Duration> {
        starts.lock().unwrap().iter().map(|s| s.duration_since(t0)).collect()
    }

    fn refused() -> Outcome {
        Outcome::fail(FailureKind::Refused, "connection refused")
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_run_at_once_then_at_most_once_a_second_and_coalesce() {
        let (t0, starts, wake) = start_loop(settings(Duration::from_secs(60), 1), |_| Outcome::pass());
        tokio::time::sleep(Duration::from_millis(10)).await;
        wake.ring();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Two more rings within the second: one run, when the second is over.
        wake.ring();
        tokio::time::sleep(Duration::from_millis(100)).await;
        wake.ring();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let runs = offsets(t0, &starts);
        assert_eq!(
            runs.len(),
            3,
            "first run, the first wake, the coalesced wakes: {runs:?}"
        );
        assert_eq!(runs[1], Duration::from_millis(10), "the first wake runs at once");
        assert_eq!(
            runs[2],
            Duration::from_millis(1010),
            "one second after the previous woken run"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_asking_for_confirmation_gets_threshold_minus_one_immediate_runs() {
        let (t0, starts, _wake) = start_loop(settings(Duration::from_secs(10), 3), |n| {
            if n == 1 {
                Outcome::pass()
            } else {
                refused().with_rerun(Rerun::Confirm)
            }
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        let runs = offsets(t0, &starts);
        assert!(runs.len() >= 4, "{runs:?}");
        assert!(
            runs[1] >= Duration::from_secs(10) && runs[1] <= Duration::from_secs(11),
            "{runs:?}"
        );
        assert_eq!(runs[2], runs[1], "first confirmation at once");
        assert_eq!(runs[3], runs[1], "second confirmation at once");
        assert!(
            runs[4] >= runs[1] + Duration::from_secs(10),
            "then the interval: {runs:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_budget_a_run_may_look_again_at_its_own_pace_but_not_below_the_floor() {
        let (t0, starts, _wake) = start_loop(settings(Duration::from_secs(10), 2), |n| match n {
            1..=4 => refused().with_rerun(Rerun::ConfirmThenEvery(Duration::from_millis(200))),
            5 => refused().with_rerun(Rerun::ConfirmThenEvery(Duration::ZERO)),
            _ => Outcome::pass(),
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let runs = offsets(t0, &starts);
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(
            &runs[..6],
            &[ms(0), ms(0), ms(200), ms(400), ms(600), ms(700)],
            "{runs:?}"
        );
        assert_eq!(runs.len(), 6, "a pass returns to the interval: {runs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_refills_the_confirmation_budget() {
        let (t0, starts, _wake) = start_loop(settings(Duration::from_secs(10), 2), |n| match n {
            1 | 3 => refused().with_rerun(Rerun::Confirm),
            _ => Outcome::pass(),
        });
        tokio::time::sleep(Duration::from_secs(15)).await;
        let runs = offsets(t0, &starts);
        assert_eq!(runs[1], Duration::ZERO, "the first failure is confirmed: {runs:?}");
        assert_eq!(runs[3], runs[2], "and so is the next one after a pass: {runs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_asked_for_is_kept_within_ten_intervals_wakes_ignored_and_the_result_stands() {
        let (t0, starts, wake) = start_loop(settings(Duration::from_millis(500), 1), |n| match n {
            1 => refused().with_rerun(Rerun::NotBefore(Duration::from_secs(3))),
            2 => refused().with_rerun(Rerun::NotBefore(Duration::from_secs(30))),
            3 => refused().with_rerun(Rerun::NotBefore(Duration::from_millis(10))),
            _ => Outcome::pass(),
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        wake.ring();
        tokio::time::sleep(Duration::from_millis(9_000)).await;
        let runs = offsets(t0, &starts);
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(runs[1], ms(3_000), "the wait asked for, the wake ignored: {runs:?}");
        assert_eq!(runs[2], ms(8_000), "30s cut at ten intervals: {runs:?}");
        assert!(
            runs[3] >= ms(8_500) && runs[3] <= ms(8_550),
            "never sooner than the interval: {runs:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn while_it_rests_the_last_result_is_not_stale_and_the_loop_on_schedule() {
        let scheduled = Scheduled::new(
            "dep",
            settings(Duration::from_millis(100), 1),
            Recorder {
                starts: Arc::default(),
                script: |n| match n {
                    1 => refused().with_rerun(Rerun::NotBefore(Duration::from_secs(1))),
                    _ => Outcome::pass(),
                },
                wake: None,
            },
        );
        let state = Arc::new(State::new(specs(std::slice::from_ref(&scheduled))));
        let metrics = Metrics::new().unwrap();
        let series = metrics.register_check("dep");
        let slot = Arc::clone(&state.slots()[0]);
        tokio::spawn(check_loop(Arc::clone(&slot), scheduled, shared(state, metrics), series));
        tokio::time::sleep(Duration::from_millis(950)).await;
        let view = slot.view(Instant::now());
        assert_eq!(view.reason, "connection refused", "not stale after 9 intervals of rest");
        assert!(slot.loop_on_schedule(Instant::now()));
        // Three intervals after the rest, with no run since, the stale rule holds again.
        let later = Instant::now() + Duration::from_millis(400);
        assert!(
            slot.view(later).reason.starts_with("stale: "),
            "{}",
            slot.view(later).reason
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_run_delay_is_waited_out_and_runs_then_follow_the_interval() {
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let check = Recorder {
            starts: Arc::clone(&starts),
            script: |_| Outcome::pass(),
            wake: None,
        };
        let scheduled = Scheduled::new("dep", settings(Duration::from_secs(5), 1), check)
            .with_first_run_delay(Duration::from_millis(700));
        let state = Arc::new(State::new(specs(std::slice::from_ref(&scheduled))));
        let metrics = Metrics::new().unwrap();
        let series = metrics.register_check("dep");
        let t0 = Instant::now();
        let slot = Arc::clone(&state.slots()[0]);
        tokio::spawn(check_loop(slot, scheduled, shared(state, metrics), series));
        tokio::time::sleep(Duration::from_secs(12)).await;
        let runs = offsets(t0, &starts);
        assert_eq!(runs[0], Duration::from_millis(700));
        for pair in runs.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(5) && gap <= Duration::from_millis(5500),
                "{runs:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_run_is_cut_at_its_timeout() {
        let started = Instant::now();
        let outcome = run_guarded(&mut Hangs, Duration::from_millis(50)).await;
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(outcome.kind, Some(FailureKind::Timeout));
        assert_eq!(outcome.reason, "timed out after 50ms");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_panic_is_the_checks_fail_and_the_check_runs_again() {
        let outcome = run_guarded(&mut Panics, Duration::from_secs(1)).await;
        assert_eq!(outcome.kind, Some(FailureKind::Panic));
        assert_eq!(outcome.reason, "check panicked: index out of bounds in a check");
        let mut scripted = Scripted(
            |n| {
                if n == 1 {
                    panic!("first run {n}")
                } else {
                    Outcome::pass()
                }
            },
            0,
        );
        assert_eq!(
            run_guarded(&mut scripted, Duration::from_secs(1)).await.kind,
            Some(FailureKind::Panic)
        );
        assert_eq!(
            run_guarded(&mut scripted, Duration::from_secs(1)).await.status,
            Status::Pass
        );
    }

    #[test]
    fn jitter_stays_within_a_tenth_of_the_interval() {
        for _ in 0..1000 {
            assert!(jitter(Duration::from_secs(5)) <= Duration::from_millis(500));
        }
    }
}
