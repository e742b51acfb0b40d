//! Turns the state into what people and machines read: the Kubernetes-style `/readyz` lines
//! ([`readyz`]), the IETF health+json `/diag` document ([`json`]) and its text twin ([`text`]).
//! Pure functions of a snapshot.

mod fleet;
mod json;
mod readyz;
mod text;

use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

pub use self::fleet::Snapshot;
pub use self::json::diag_json;
pub use self::readyz::{check_line, readyz_verbose, single_check};
pub use self::text::diag_text;
use crate::core::fmt;
use crate::core::outcome::Status;
use crate::engine::state::{Readiness, Transition};

/// What replaces a reason for peers that may not read it.
pub const WITHHELD: &str = "reason withheld";

/// After how long without a kubelet probe `/diag` points it out.
pub const KUBELET_QUIET: Duration = Duration::from_secs(60);

/// The overall health+json status: `fail` when not ready; else `warn` when any check warns or a
/// non-critical check fails; else `pass`.
pub fn overall_status(readiness: &Readiness) -> Status {
    if !readiness.ready {
        return Status::Fail;
    }
    let degraded = readiness
        .checks
        .iter()
        .any(|c| matches!(c.status, Some(Status::Warn | Status::Fail)));
    if degraded { Status::Warn } else { Status::Pass }
}

/// Everything `/diag` shows, gathered by the caller from the state.
pub struct DiagInput<'a> {
    pub readiness: &'a Readiness,
    pub transitions: &'a [Transition],
    pub kubelet_probes: &'a [(&'static str, SystemTime)],
    pub started_at: SystemTime,
    pub uptime: Duration,
    /// Tasks alive in vigil's runtimes (`None` outside the agent): flat over time, or something leaks.
    pub alive_tasks: Option<usize>,
    pub now: SystemTime,
    pub service_id: &'a str,
    /// The effective configuration, secrets already redacted.
    pub config: &'a RawValue,
    /// With `[fleet]`: the peers and their last answers.
    pub fleet: Option<&'a Snapshot>,
}

/// Remarks for a person that no single check makes.
fn notes(input: &DiagInput<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    if input.readiness.draining {
        notes.push("shutting down: /readyz answers 503 while connections drain".to_owned());
    }
    if let Some(drained) = &input.readiness.drained {
        notes.push(format!(
            "{}: /readyz answers 503, everything else serves and every check keeps running; `vigil drain --cancel` puts it back",
            drained.describe()
        ));
    }
    let last_probe = input.kubelet_probes.iter().map(|(_, at)| *at).max();
    let quiet = match last_probe {
        Some(at) => input.now.duration_since(at).is_ok_and(|d| d > KUBELET_QUIET),
        None => input.uptime > KUBELET_QUIET,
    };
    if quiet {
        let since = last_probe.map_or_else(
            || "since start".to_owned(),
            |at| format!("since {}", fmt::timestamp(at)),
        );
        notes.push(format!(
            "no kubelet probe (User-Agent kube-probe/…) {since}: check that the Deployment's readiness and liveness probes point at vigil's port"
        ));
    }
    notes
}

#[cfg(test)]
mod tests;
