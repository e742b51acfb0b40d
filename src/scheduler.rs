//! One task per check: first run at start, then every `interval` (plus up to a tenth of it as
//! jitter, so that replicas and checks do not fire in lockstep), each run cut at `timeout`, a
//! panic turned into that check's fail. Results go to the state; status changes are logged here
//! and only here.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::checks::{Check, FailureKind, Outcome, Scheduled};
use crate::config::show;
use crate::metrics::Metrics;
use crate::metrics::series::CheckSeries;
use crate::state::{CheckSpec, Run, State, Transition};

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

/// Starts one loop per check on `runtime`. `state` must have been built from [`specs`] of the
/// same list.
pub fn start(runtime: &Handle, state: &Arc<State>, metrics: &Metrics, checks: Vec<Scheduled>) -> Vec<JoinHandle<()>> {
    checks
        .into_iter()
        .enumerate()
        .map(|(index, scheduled)| {
            let series = metrics.register_check(&scheduled.name);
            runtime.spawn(check_loop(index, scheduled, Arc::clone(state), series))
        })
        .collect()
}

async fn check_loop(index: usize, mut scheduled: Scheduled, state: Arc<State>, series: Arc<CheckSeries>) {
    let Some(slot) = state.slots().get(index) else { return };
    let settings = scheduled.settings;
    let rerun = scheduled.check.rerun_signal();
    let mut planned = Instant::now() + scheduled.first_run_delay;
    if !scheduled.first_run_delay.is_zero() {
        slot.beat();
        tokio::time::sleep_until(planned.into()).await;
    }
    loop {
        slot.beat();
        let started = Instant::now();
        // How late this run starts against its plan: the figure the upstreams bench reads
        // (RUST_LOG=vigil::scheduler=trace); free when the level is off.
        let lag_us = u64::try_from(started.saturating_duration_since(planned).as_micros()).unwrap_or(u64::MAX);
        tracing::trace!(check = %scheduled.name, lag_us, "Run started");
        let run = run_once(scheduled.check.as_mut(), settings.timeout).await;
        let duration = started.elapsed();
        series.observe_run(run.status, duration.as_secs_f64());
        let transition = state.record(
            index,
            Run {
                outcome: run,
                finished: Instant::now(),
                finished_at: SystemTime::now(),
                duration,
            },
        );
        if let Some(transition) = transition {
            log_transition(&transition);
        }
        slot.beat();

        let next = started + settings.interval + jitter(settings.interval);
        planned = next;
        let sleep = tokio::time::sleep_until(next.into());
        match &rerun {
            Some(signal) => {
                tokio::select! {
                    () = sleep => {}
                    () = signal.notified() => tracing::debug!(check = %scheduled.name, "Running again at once: the check saw its dependency change"),
                }
            }
            None => sleep.await,
        }
    }
}

/// Runs a check once: never longer than `timeout`, never unwinding into the caller.
pub async fn run_once(check: &mut dyn Check, timeout: Duration) -> Outcome {
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
        Err(_) => Outcome::fail(FailureKind::Timeout, format!("timed out after {}", show(timeout)))
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
        crate::checks::Status::Pass => {
            tracing::info!(check = %t.check, from, to, reason = %t.reason, "Check status changed")
        }
        crate::checks::Status::Warn => {
            tracing::warn!(check = %t.check, from, to, reason = %t.reason, "Check status changed")
        }
        crate::checks::Status::Fail => {
            tracing::error!(check = %t.check, from, to, reason = %t.reason, "Check status changed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{RunFuture, Status};

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

    #[tokio::test]
    async fn a_hanging_run_is_cut_at_its_timeout() {
        let started = Instant::now();
        let outcome = run_once(&mut Hangs, Duration::from_millis(50)).await;
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(outcome.kind, Some(FailureKind::Timeout));
        assert_eq!(outcome.reason, "timed out after 50ms");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_panic_is_the_checks_fail_and_the_check_runs_again() {
        let outcome = run_once(&mut Panics, Duration::from_secs(1)).await;
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
            run_once(&mut scripted, Duration::from_secs(1)).await.kind,
            Some(FailureKind::Panic)
        );
        assert_eq!(
            run_once(&mut scripted, Duration::from_secs(1)).await.status,
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
