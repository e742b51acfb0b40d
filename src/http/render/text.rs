//! `/diag` as text, for a person paged at night.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::fleet::fleet_block;
use super::{DiagInput, notes, overall_status};
use crate::core::fmt;
use crate::core::outcome::{Status, Value};
use crate::engine::state::{CheckView, Readiness};

/// The `/diag` text report for a terminal, for a person paged at night: the verdict first, then
/// every check that fails or warns (worst first: one line each when there are several, then each
/// in full), then one line per passing check, then
/// the notes, the timeline, the kubelet probes and the passing checks in full. Figures read in
/// the units `kubectl top` prints (`0.3ms`, `653MiB`, `2.1%`); the JSON keeps raw values.
pub fn diag_text(input: &DiagInput<'_>) -> String {
    let readiness = input.readiness;
    let mut out = String::with_capacity(4096 + 160 * readiness.checks.len());
    let _ = writeln!(
        out,
        "vigil {} on {}: {} (up {})",
        env!("CARGO_PKG_VERSION"),
        input.service_id,
        if readiness.ready { "READY" } else { "NOT READY" },
        fmt::duration(Duration::from_secs(input.uptime.as_secs())),
    );
    let _ = writeln!(out, "verdict: {}", verdict(readiness));
    let _ = writeln!(out, "checks: {}", tally(readiness));

    let mut attention: Vec<&CheckView> = readiness
        .checks
        .iter()
        .filter(|c| c.status != Some(Status::Pass))
        .collect();
    attention.sort_by_key(|c| severity(c));
    let passing: Vec<&CheckView> = readiness
        .checks
        .iter()
        .filter(|c| c.status == Some(Status::Pass))
        .collect();

    if !attention.is_empty() {
        let _ = writeln!(out, "\nfailing and warning (worst first):");
        // Several at once: each one's reason on a line of its own first, so that all of them
        // are on the first screen (the first ten lines) before any is shown in full.
        if attention.len() > 1 {
            for check in &attention {
                let _ = writeln!(out, "{}", headline(check));
            }
        }
        for check in &attention {
            check_block(&mut out, check, input.now, true);
        }
    }
    if !passing.is_empty() {
        let _ = writeln!(out, "\npassing:");
        let width = passing.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &passing {
            let _ = writeln!(out, "  {:<width$}  {}", check.name, passing_summary(check));
        }
    }

    if let Some(fleet) = input.fleet {
        fleet_block(&mut out, fleet);
    }
    let notes = notes(input);
    if !notes.is_empty() {
        let _ = writeln!(out);
        for note in notes {
            let _ = writeln!(out, "note: {note}");
        }
    }
    let _ = writeln!(out, "\nstatus changes (newest first):");
    if input.transitions.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for t in input.transitions.iter().rev() {
        let from = t.from.map_or("none", Status::as_str);
        let _ = writeln!(
            out,
            "  {} {} {from} -> {}: {}",
            fmt::timestamp(t.at),
            t.check,
            t.to,
            t.reason
        );
    }
    let _ = writeln!(out, "\nkubelet probes:");
    if input.kubelet_probes.is_empty() {
        let _ = writeln!(out, "  none seen");
    }
    for (endpoint, at) in input.kubelet_probes {
        let _ = writeln!(out, "  {endpoint} last at {}", fmt::timestamp(*at));
    }
    if !passing.is_empty() {
        let _ = writeln!(out, "\npassing checks in full:");
        for check in &passing {
            check_block(&mut out, check, input.now, false);
        }
    }
    out
}

/// Ready or not, and why: `fail: not ready: critical check failing: postgres`.
pub(super) fn verdict(readiness: &Readiness) -> String {
    let names = |wanted: fn(&CheckView) -> bool| {
        let matching: Vec<&str> = readiness
            .checks
            .iter()
            .filter(|c| wanted(c))
            .map(|c| c.name.as_str())
            .collect();
        listed(&matching)
    };
    let status = overall_status(readiness);
    let mut why = Vec::new();
    if !readiness.ready {
        let failing = names(|c| c.status == Some(Status::Fail) && c.settings.critical);
        if !failing.is_empty() {
            why.push(format!("critical check failing: {failing}"));
        }
        let pending = names(|c| c.status.is_none());
        if !pending.is_empty() {
            why.push(format!("first run not finished: {pending}"));
        }
        if let Some(drained) = &readiness.drained {
            why.push(drained.describe());
        }
        if readiness.draining {
            why.push("draining: shutting down, /readyz answers 503 while connections drain".to_owned());
        }
        if why.is_empty() {
            return format!("{status}: not ready");
        }
        return format!("{status}: not ready: {}", why.join("; "));
    }
    let held: Vec<&str> = readiness.held.iter().map(String::as_str).collect();
    if !held.is_empty() {
        why.push(format!(
            "fleet panic: {} fails on most replicas, readiness held",
            listed(&held)
        ));
    }
    let failing: Vec<&str> = readiness
        .checks
        .iter()
        .filter(|c| c.status == Some(Status::Fail) && !held.contains(&c.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    if !failing.is_empty() {
        why.push(format!("non-critical check failing: {}", listed(&failing)));
    }
    let warning = names(|c| c.status == Some(Status::Warn));
    if !warning.is_empty() {
        why.push(format!("warning: {warning}"));
    }
    if why.is_empty() {
        format!("{status}: ready, every check passes")
    } else {
        format!("{status}: ready, degraded: {}", why.join("; "))
    }
}

/// At most five names, then how many more: `a, b, c, d, e and 7 more`.
pub(super) fn listed(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!("{} and {} more", names[..SHOWN].join(", "), names.len() - SHOWN)
}

/// `1 fail, 0 warn, 48 pass, 1 pending (50 in all)`.
fn tally(readiness: &Readiness) -> String {
    let count = |status: Option<Status>| readiness.checks.iter().filter(|c| c.status == status).count();
    format!(
        "{} fail, {} warn, {} pass, {} pending ({} in all)",
        count(Some(Status::Fail)),
        count(Some(Status::Warn)),
        count(Some(Status::Pass)),
        count(None),
        readiness.checks.len()
    )
}

/// Worst first: what keeps the agent from being ready, then the rest that fails, then warnings.
fn severity(check: &CheckView) -> u8 {
    match (check.status, check.settings.critical) {
        (Some(Status::Fail), true) => 0,
        (None, _) => 1,
        (Some(Status::Fail), false) => 2,
        (Some(Status::Warn), true) => 3,
        (Some(Status::Warn), false) => 4,
        (Some(Status::Pass), _) => 5,
    }
}

/// The one line of a passing check: `ok  in 0.4ms`, and a failed run below the threshold.
fn passing_summary(check: &CheckView) -> String {
    let mut line = "ok".to_owned();
    if let Some(run) = &check.last_run {
        let _ = write!(line, "  in {}", fmt::seconds(run.duration));
        if check.consecutive_failures > 0 {
            let _ = write!(
                line,
                "  (failed {} run(s) in a row, reports fail at {}: {})",
                check.consecutive_failures, check.settings.failure_threshold, run.outcome.reason
            );
        }
    }
    line
}

/// A check in full: status, reason, hint, since when, failed runs, the last run and its figures.
/// `name [STATUS] (critical) reason`: a check in one line.
fn headline(check: &CheckView) -> String {
    let status = check.status.map_or("PENDING", |s| match s {
        Status::Pass => "PASS",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
    });
    let critical = if check.settings.critical {
        "critical"
    } else {
        "not critical"
    };
    format!("{} [{status}] ({critical}) {}", check.name, check.reason)
}

fn check_block(out: &mut String, check: &CheckView, now: SystemTime, attention: bool) {
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", headline(check));
    let _ = writeln!(out, "  scope: {}", check.settings.scope.as_str());
    if let Some(hint) = &check.hint {
        let _ = writeln!(out, "  hint: {hint}");
    }
    if let Some(since) = check.since {
        let age = now
            .duration_since(since)
            .map(|d| fmt::duration(Duration::from_secs(d.as_secs())))
            .unwrap_or_default();
        let _ = writeln!(out, "  since {} ({age} ago)", fmt::timestamp(since));
    }
    if attention || check.consecutive_failures > 0 {
        let _ = writeln!(
            out,
            "  consecutive failed runs: {} (reports fail at {})",
            check.consecutive_failures, check.settings.failure_threshold
        );
    }
    if let Some(run) = &check.last_run {
        let _ = writeln!(
            out,
            "  last run: {} in {}: {}",
            run.outcome.status,
            fmt::seconds(run.duration),
            run.outcome.reason
        );
        for o in &run.outcome.observations {
            let value = match &o.value {
                Value::Number(n) => fmt::figure(*n, o.unit),
                Value::Text(t) => t.clone(),
            };
            let _ = writeln!(out, "  {:<24} {value}", o.name);
        }
    }
}
