//! Those who watch the checks' runs besides the state: the fleet (which asks the peers before a
//! failing run of a critical shared check is recorded, and holds its readiness through a
//! fleet-wide failure) and the Kubernetes Events. The scheduler tells them; they never run a
//! check, and nothing they do delays one beyond its timeout.

use std::future::Future;
use std::pin::Pin;

use crate::config::CheckSettings;
use crate::core::outcome::Status;
use crate::engine::state::Transition;
use crate::kube::events::{Change, EventSink};

/// A run that has ended and is about to be recorded.
#[derive(Debug)]
pub struct Ended<'a> {
    pub check: &'a str,
    pub settings: &'a CheckSettings,
    pub raw: Status,
    /// Recorded, the run leaves the check reporting fail.
    pub reports_fail: bool,
    /// The check reported pass or warn until this run.
    pub was_passing: bool,
}

/// A run that has been recorded.
#[derive(Debug)]
pub struct Recorded<'a> {
    pub check: &'a str,
    pub settings: &'a CheckSettings,
    /// The check reports fail now.
    pub failing: bool,
    /// The change of its reported status, if the run made one.
    pub transition: Option<&'a Transition>,
}

/// What an observer's look before a run is recorded returns.
pub(crate) type Look<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One who watches the checks' runs.
pub trait Observer: Send + Sync {
    /// Before `ended` is recorded, from the check's own loop. Must end within the check's
    /// timeout: the loop waits for it (so that what it decides is there with the result).
    fn before_record<'a>(&'a self, _ended: &'a Ended<'a>) -> Look<'a> {
        Box::pin(async {})
    }

    /// After the run is recorded. Must not block.
    fn after_record(&self, _recorded: &Recorded<'_>) {}
}

/// `[kubernetes] events`: each status change offered to the Event poster's bounded queue.
pub(crate) struct Events(pub EventSink);

impl Observer for Events {
    fn after_record(&self, recorded: &Recorded<'_>) {
        if let Some(t) = recorded.transition {
            self.0.offer(Change {
                check: t.check.clone(),
                from: t.from,
                to: t.to,
                reason: t.reason.clone(),
                at: t.at,
            });
        }
    }
}
