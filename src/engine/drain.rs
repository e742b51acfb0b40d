//! A replica taken out of the Service by hand (`vigil drain`, `POST /drain`): `/readyz` answers
//! 503 while `/livez`, `/metrics`, `/diag` and every check go on, so that a misbehaving pod can
//! be kept for forensics instead of deleted (the runbook's "restart unhealthy pods" destroys the
//! evidence).
//!
//! The drain is data in the state ([`State::set_drained`]), read by the one readiness rule, so
//! the fleet rule never holds it and `/readyz/<check>` keeps answering for each check (a drained
//! replica never changes its peers' decisions). It is bounded ([`MAX_FOR`]), ends by itself at
//! its deadline ([`keep_ending`]), by `DELETE /drain`, or at a restart (it is kept nowhere
//! else). Its start and end are logged once, kept in the status-change ring as changes of
//! `drain`, and, with `[kubernetes] events`, offered to the Event queue like a check's change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::core::outcome::Status;
use crate::core::{fmt, text};
use crate::engine::state::{Drained, State, Transition};
use crate::kube::events::{Change, EventSink};

/// `--for` / `?for=` when not given.
pub const DEFAULT_FOR: Duration = Duration::from_secs(15 * 60);

/// The longest drain: a replica forgotten out of the Service comes back by itself within a day.
pub const MAX_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The most of an operator's reason kept, in bytes (it goes into `/readyz`, logs and Events).
pub const REASON_MAX: usize = 200;

/// The reason when none is given.
pub const NO_REASON: &str = "no reason given";

/// The name the drain goes by in the status-change ring, the log and Events.
pub const NAME: &str = "drain";

/// A drain that was not started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DrainError {
    #[error("for: must be more than 0s, got {0}")]
    TooShort(String),
    #[error("for: at most 24h (a drain ends by itself within a day), got {0}")]
    TooLong(String),
    #[error("for: {0}")]
    Unreadable(String),
}

/// How long a drain lasts, from `--for` or `?for=` (`None`: [`DEFAULT_FOR`]).
pub fn duration(text: Option<&str>) -> Result<Duration, DrainError> {
    let Some(text) = text else {
        return Ok(DEFAULT_FOR);
    };
    let shown = crate::core::text::one_line(text, 40).into_owned();
    let parsed = humantime::parse_duration(text.trim()).map_err(|_| {
        DrainError::Unreadable(format!(
            "expected a duration such as \"30s\", \"15m\" or \"2h\", got {shown:?}"
        ))
    })?;
    if parsed.is_zero() {
        return Err(DrainError::TooShort(shown));
    }
    if parsed > MAX_FOR {
        return Err(DrainError::TooLong(shown));
    }
    Ok(parsed)
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `vigil drain --cancel`, `DELETE /drain`.
    Cancelled,
    /// Its deadline passed.
    Expired,
}

/// Starts, replaces and ends drains; see the module docs.
pub struct Drain {
    state: Arc<State>,
    events: Option<EventSink>,
    /// Rung when a drain starts or ends, so that [`keep_ending`] waits for the right deadline.
    changed: Notify,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain").finish_non_exhaustive()
    }
}

impl Drain {
    /// `events`: `[kubernetes] events`' queue, where starts and ends are offered.
    pub fn new(state: Arc<State>, events: Option<EventSink>) -> Drain {
        Drain {
            state,
            events,
            changed: Notify::new(),
        }
    }

    /// Takes this replica out for `lasting` (at most [`MAX_FOR`]) with the operator's `reason`
    /// (made one printable line of at most [`REASON_MAX`] bytes); a drain in force is replaced.
    /// `by` names who asked, for the log.
    pub fn start(&self, lasting: Duration, reason: Option<&str>, by: &str) -> Drained {
        let lasting = lasting.min(MAX_FOR);
        let reason = reason
            .map(|r| text::one_line(r, REASON_MAX).into_owned())
            .filter(|r| !r.is_empty());
        let now = SystemTime::now();
        let started = Instant::now();
        let drained = Drained {
            reason: reason.unwrap_or_else(|| NO_REASON.to_owned()),
            since: now,
            until: started + lasting,
            until_wall: now + lasting,
        };
        let replaced = match self.state.set_drained(Some(drained.clone())) {
            Some(old) if old.until <= started => {
                self.ended(&old, Ended::Expired, "its deadline");
                None
            }
            other => other,
        };
        self.changed.notify_one();
        let line = drained.describe();
        tracing::warn!(
            reason = %drained.reason,
            until = %fmt::timestamp_seconds(drained.until_wall),
            lasting = %fmt::duration(lasting),
            by,
            replaced = replaced.is_some(),
            "Taken out of the Service by hand: /readyz answers 503 until the drain ends ({line}); every check keeps running"
        );
        self.tell(
            replaced.as_ref().map_or(Status::Pass, |_| Status::Fail),
            Status::Fail,
            line,
            now,
        );
        drained
    }

    /// Ends the drain in force, if any; returns it.
    pub fn cancel(&self, by: &str) -> Option<Drained> {
        let now = Instant::now();
        let ended = self.state.set_drained(None)?;
        self.changed.notify_one();
        if ended.until <= now {
            // Over already; the deadline's task had not noticed yet.
            self.ended(&ended, Ended::Expired, "its deadline");
            return None;
        }
        self.ended(&ended, Ended::Cancelled, by);
        Some(ended)
    }

    /// Ends the drain whose deadline has passed (not one started since).
    fn expire(&self) {
        let now = Instant::now();
        let Some(current) = self.state.drained_raw() else {
            return;
        };
        if now < current.until {
            return;
        }
        // Only the drain that was seen: one started in between stays.
        if self.state.take_drained_if(&current) {
            self.ended(&current, Ended::Expired, "its deadline");
        }
    }

    fn ended(&self, drained: &Drained, how: Ended, by: &str) {
        let reason = match how {
            Ended::Cancelled => "drain over: cancelled by hand".to_owned(),
            Ended::Expired => format!(
                "drain over: its time is up ({})",
                fmt::timestamp_seconds(drained.until_wall)
            ),
        };
        tracing::info!(
            reason = %drained.reason,
            by,
            "Back in the Service: {reason}; /readyz answers from the checks again"
        );
        self.tell(Status::Fail, Status::Pass, reason, SystemTime::now());
    }

    /// Keeps the change in the status-change ring and offers it as an Event.
    fn tell(&self, from: Status, to: Status, reason: String, at: SystemTime) {
        self.state.note(Transition {
            check: NAME.to_owned(),
            from: Some(from),
            to,
            reason: reason.clone(),
            at,
        });
        if let Some(events) = &self.events {
            events.offer(Change {
                check: NAME.to_owned(),
                from: Some(from),
                to,
                reason,
                at,
            });
        }
    }
}

/// Ends each drain at its deadline, for as long as the agent runs. Readiness reads the deadline
/// itself, so a late wake-up here only delays the log line and the Event, never the 200.
pub async fn keep_ending(drain: Arc<Drain>) {
    loop {
        match drain.state.drained_raw() {
            Some(current) => {
                tokio::select! {
                    () = tokio::time::sleep_until(current.until) => drain.expire(),
                    () = drain.changed.notified() => {}
                }
            }
            None => drain.changed.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<State> {
        Arc::new(State::new([]))
    }

    #[test]
    fn durations_are_bounded_and_read_as_in_the_configuration() {
        assert_eq!(duration(None), Ok(DEFAULT_FOR));
        assert_eq!(duration(Some("30s")), Ok(Duration::from_secs(30)));
        assert_eq!(duration(Some("24h")), Ok(MAX_FOR));
        assert_eq!(
            duration(Some("25h")).unwrap_err().to_string(),
            "for: at most 24h (a drain ends by itself within a day), got 25h"
        );
        assert!(matches!(duration(Some("0s")), Err(DrainError::TooShort(_))));
        assert!(
            duration(Some("soon"))
                .unwrap_err()
                .to_string()
                .starts_with("for: expected a duration")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_fails_readiness_until_its_deadline_and_ends_by_itself() {
        let state = state();
        let drain = Arc::new(Drain::new(Arc::clone(&state), None));
        assert!(state.is_ready(Instant::now(), &[]));
        let task = tokio::spawn(keep_ending(Arc::clone(&drain)));
        let started = drain.start(Duration::from_secs(30), Some("forensics\u{1b}[2J"), "test");
        assert_eq!(started.reason, "forensics\u{fffd}");
        assert!(
            started
                .describe()
                .starts_with("taken out by hand: forensics\u{fffd} (until ")
        );
        assert!(!state.is_ready(Instant::now(), &[]));
        let readiness = state.readiness(Instant::now(), &[]);
        assert!(!readiness.ready);
        assert_eq!(readiness.drained.as_ref(), Some(&started));

        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(!state.is_ready(Instant::now(), &[]));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(state.is_ready(Instant::now(), &[]), "over at its deadline");
        tokio::task::yield_now().await;
        let changes = state.transitions();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!((changes[0].check.as_str(), changes[0].to), (NAME, Status::Fail));
        assert_eq!(changes[1].to, Status::Pass);
        assert!(
            changes[1].reason.starts_with("drain over: its time is up"),
            "{changes:?}"
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_ends_it_and_a_replacement_keeps_its_own_deadline() {
        let state = state();
        let drain = Arc::new(Drain::new(Arc::clone(&state), None));
        let task = tokio::spawn(keep_ending(Arc::clone(&drain)));
        drain.start(Duration::from_secs(10), None, "test");
        tokio::task::yield_now().await;
        let replacement = drain.start(Duration::from_secs(60), Some("longer"), "test");
        assert_eq!(
            drain.start(Duration::from_secs(60), Some("  "), "test").reason,
            NO_REASON
        );
        drain.start(Duration::from_secs(60), Some("longer"), "test");
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(
            state.drained(Instant::now()).is_some(),
            "the first deadline does not end the replacement"
        );
        assert_eq!(
            state.drained(Instant::now()).map(|d| d.reason),
            Some(replacement.reason)
        );
        assert!(drain.cancel("test").is_some());
        assert!(state.is_ready(Instant::now(), &[]));
        assert!(drain.cancel("test").is_none(), "nothing left to cancel");
        let last = state.transitions().pop().unwrap();
        assert_eq!(
            (last.to, last.reason.as_str()),
            (Status::Pass, "drain over: cancelled by hand")
        );
        task.abort();
    }
}
