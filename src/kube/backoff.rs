//! How long a watch task waits before it asks the API server again: client-go's reflector
//! backoff (`wait.NewExponentialBackoffManager(800ms, 30s, 2m, 2.0, …)` in reflector.go), the
//! same that kube-runtime's watcher defaults to.
//!
//! The step starts at 0.8 s and doubles up to 30 s; each wait is the step less a random part of
//! up to half of it (so replicas that failed together do not ask again together, and no wait is
//! longer than 30 s). The step goes back to 0.8 s only after two minutes without a wait, never
//! because one request worked: a server that answers the list and then refuses every watch, or
//! ends every watch at once, keeps the waits growing. A `Retry-After` is honoured (up to
//! [`RETRY_AFTER_MAX`]) when it asks for longer than the step.

use std::time::Duration;

use tokio::time::Instant;

/// The first step.
pub(crate) const FIRST: Duration = Duration::from_millis(800);
/// The longest step.
pub(crate) const MAX: Duration = Duration::from_secs(30);
/// A step goes back to [`FIRST`] after this long without a wait.
pub(crate) const RESET_AFTER: Duration = Duration::from_secs(120);
/// The longest `Retry-After` honoured (a server's number is not trusted without a bound).
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// One watch task's backoff; see the module docs.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
    /// When the last wait was asked for.
    last: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            step: FIRST,
            last: None,
        }
    }

    /// The next wait, at least `retry_after` (bounded) when the server sent one.
    pub(crate) fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let now = Instant::now();
        if self.last.is_none_or(|at| now.duration_since(at) > RESET_AFTER) {
            self.step = FIRST;
        }
        self.last = Some(now);
        let step = self.step;
        self.step = (step * 2).min(MAX);
        let wait = step.mul_f64(1.0 - fastrand::f64() * 0.5);
        wait.max(retry_after.unwrap_or_default().min(RETRY_AFTER_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_step_doubles_to_its_cap_with_jitter_and_resets_only_after_two_quiet_minutes() {
        let mut backoff = Backoff::new();
        let mut waits = Vec::new();
        for _ in 0..9 {
            let wait = backoff.next(None);
            waits.push(wait);
            tokio::time::advance(wait).await;
        }
        assert!(waits[0] >= FIRST / 2 && waits[0] <= FIRST, "{waits:?}");
        assert!(waits[1] >= FIRST && waits[1] <= FIRST * 2, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= MAX), "{waits:?}");
        assert!(waits[8] >= MAX / 2, "{waits:?}");
        // Less than two minutes since the last wait began: no reset, whatever worked meanwhile.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(backoff.next(None) >= MAX / 2);
        tokio::time::advance(RESET_AFTER + Duration::from_secs(1)).await;
        assert!(backoff.next(None) <= FIRST, "two quiet minutes start it again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_honoured_within_its_bound() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next(Some(Duration::from_secs(5))), Duration::from_secs(5));
        assert_eq!(backoff.next(Some(Duration::from_secs(86_400))), RETRY_AFTER_MAX);
        let wait = backoff.next(Some(Duration::from_millis(1)));
        assert!(wait >= FIRST * 2, "the step when it is longer: {wait:?}");
    }
}
