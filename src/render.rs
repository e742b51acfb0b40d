//! Turns the state into what people and machines read: the Kubernetes-style `/readyz` lines,
//! the IETF health+json `/diag` document and its text twin. Pure functions of a snapshot.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};
use serde_json::value::RawValue;

use crate::core::fmt;
use crate::core::outcome::{ComponentType, Details, Status, Value};
use crate::engine::state::{CheckView, Readiness, Transition};

/// What replaces a reason for peers that may not read it.
pub const WITHHELD: &str = "reason withheld";

/// After how long without a kubelet probe `/diag` points it out.
pub const KUBELET_QUIET: Duration = Duration::from_secs(60);

/// One `/readyz?verbose` line, e.g. `[+]upstream:orders warn: p95 1.4s over 5m exceeds 1s`.
pub fn check_line(check: &CheckView, excluded: bool, show_reasons: bool) -> String {
    let reason = |r: &str| {
        if show_reasons {
            r.to_owned()
        } else {
            WITHHELD.to_owned()
        }
    };
    match (excluded, check.status) {
        (true, _) => format!("[+]{} excluded: ok", check.name),
        (false, Some(Status::Pass)) => format!("[+]{} ok", check.name),
        (false, Some(Status::Warn)) => format!("[+]{} warn: {}", check.name, reason(&check.reason)),
        (false, Some(Status::Fail) | None) => format!("[-]{} failed: {}", check.name, reason(&check.reason)),
    }
}

/// The verbose `/readyz` body.
pub fn readyz_verbose(readiness: &Readiness, excluded: &[&str], show_reasons: bool) -> String {
    let mut out = String::with_capacity(64 * (readiness.checks.len() + 2));
    for check in &readiness.checks {
        out.push_str(&check_line(
            check,
            excluded.contains(&check.name.as_str()),
            show_reasons,
        ));
        out.push('\n');
    }
    // [fleet] one line per check whose readiness a fleet-wide failure holds.
    for check in readiness.fleet.iter().flat_map(|f| &f.checks) {
        if let Some(line) = check
            .line
            .as_ref()
            .filter(|_| check.holding && !excluded.contains(&check.check.as_str()))
        {
            let _ = writeln!(out, "[+]fleet warn: {line}");
        }
    }
    if readiness.draining {
        out.push_str("[-]shutdown failed: draining\n");
    }
    out.push_str(if readiness.ready {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    out
}

/// The `/readyz/NAME` body: `ok`, `warn: …` or `failed: …`.
pub fn single_check(check: &CheckView, show_reasons: bool) -> String {
    let reason = if show_reasons { check.reason.as_str() } else { WITHHELD };
    match check.status {
        Some(Status::Pass) => "ok\n".to_owned(),
        Some(Status::Warn) => format!("warn: {reason}\n"),
        Some(Status::Fail) | None => format!("failed: {reason}\n"),
    }
}

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
}

/// The `/diag` document in the IETF "Health Check Response Format for HTTP APIs" shape, with
/// vigil's additions under `vigil`, ready to serialize.
///
/// It is written straight from the snapshot, not built as a tree of values first: with a
/// thousand upstreams the document is a few megabytes, the tree was ten times that, and the
/// allocator kept the memory after the answer.
pub fn diag_json<'a>(input: &'a DiagInput<'a>) -> impl Serialize + 'a {
    DiagDocument(input)
}

struct DiagDocument<'a>(&'a DiagInput<'a>);

impl Serialize for DiagDocument<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let input = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("status", overall_status(input.readiness).as_str())?;
        map.serialize_entry("version", env!("CARGO_PKG_VERSION"))?;
        map.serialize_entry("serviceId", input.service_id)?;
        map.serialize_entry("description", "dependencies of the api-gateway, as measured by vigil")?;
        map.serialize_entry("checks", &Components(input.readiness))?;
        map.serialize_entry("notes", &notes(input))?;
        map.serialize_entry("vigil", &VigilPart(input))?;
        map.end()
    }
}

/// The draft's `checks`: one `component:measurement` key per observation of each check's last
/// run (`component:status` when it has none), each an array of one object.
struct Components<'a>(&'a Readiness);

/// One object of the draft's `checks`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Component<'a> {
    component_type: ComponentType,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'a str>,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
}

impl Serialize for Components<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for check in &self.0.checks {
            let time = check.last_run.as_ref().map(|r| fmt::timestamp(r.finished_at));
            let component = Component {
                component_type: check.component_type,
                observed_value: None,
                observed_unit: None,
                status: check.status.map_or("fail", Status::as_str),
                time: time.as_deref(),
                output: (check.status != Some(Status::Pass)).then_some(check.reason.as_str()),
            };
            let observations = check
                .last_run
                .as_ref()
                .map(|r| r.outcome.observations.as_slice())
                .unwrap_or_default();
            if observations.is_empty() {
                map.serialize_entry(&format!("{}:status", check.name), &[&component])?;
            }
            for observation in observations {
                let unit = observation.unit.as_str();
                let entry = Component {
                    observed_value: Some(&observation.value),
                    observed_unit: (!unit.is_empty()).then_some(unit),
                    ..component
                };
                map.serialize_entry(&format!("{}:{}", check.name, observation.name), &[&entry])?;
            }
        }
        map.end()
    }
}

/// vigil's additions: readiness, each check's detail, the timeline, the configuration.
struct VigilPart<'a>(&'a DiagInput<'a>);

impl Serialize for VigilPart<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let input = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("ready", &input.readiness.ready)?;
        map.serialize_entry("draining", &input.readiness.draining)?;
        map.serialize_entry("started", &fmt::timestamp(input.started_at))?;
        map.serialize_entry("uptime_seconds", &input.uptime.as_secs())?;
        if let Some(tasks) = input.alive_tasks {
            map.serialize_entry("runtime", &RuntimeFigures { alive_tasks: tasks })?;
        }
        map.serialize_entry("checks", &CheckDetails(input))?;
        if let Some(fleet) = &input.readiness.fleet {
            map.serialize_entry("fleet", fleet)?;
        }
        let transitions: Vec<TransitionEntry<'_>> = input.transitions.iter().rev().map(TransitionEntry::new).collect();
        map.serialize_entry("transitions", &transitions)?;
        let probes: Vec<(&str, String)> = input
            .kubelet_probes
            .iter()
            .map(|(endpoint, at)| (*endpoint, fmt::timestamp(*at)))
            .collect();
        map.serialize_entry("kubelet_probes", &InOrder(&probes))?;
        map.serialize_entry("config", input.config)?;
        map.end()
    }
}

/// Pairs as a JSON object, in their order.
struct InOrder<'a, K, V>(&'a [(K, V)]);

impl<K: Serialize, V: Serialize> Serialize for InOrder<'_, K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Every check's state, keyed by name.
struct CheckDetails<'a>(&'a DiagInput<'a>);

impl Serialize for CheckDetails<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let now = self.0.now;
        serializer.collect_map(
            self.0
                .readiness
                .checks
                .iter()
                .map(|check| (&check.name, CheckDetail::new(check, now))),
        )
    }
}

#[derive(Serialize)]
struct CheckDetail<'a> {
    status: &'a str,
    reason: &'a str,
    kind: Option<&'a str>,
    hint: Option<&'a str>,
    critical: bool,
    scope: &'static str,
    since: Option<String>,
    for_seconds: Option<u64>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    runs: u64,
    interval: String,
    timeout: String,
    last_run: Option<LastRun<'a>>,
}

impl<'a> CheckDetail<'a> {
    fn new(check: &'a CheckView, now: SystemTime) -> Self {
        CheckDetail {
            status: check.status.map_or("pending", Status::as_str),
            reason: &check.reason,
            kind: check.kind.map(|k| k.as_str()),
            hint: check.hint.as_deref(),
            critical: check.settings.critical,
            scope: check.settings.scope.as_str(),
            since: check.since.map(fmt::timestamp),
            for_seconds: check
                .since
                .and_then(|s| now.duration_since(s).ok())
                .map(|d| d.as_secs()),
            consecutive_failures: check.consecutive_failures,
            consecutive_successes: check.consecutive_successes,
            runs: check.runs,
            interval: fmt::duration(check.settings.interval),
            timeout: fmt::duration(check.settings.timeout),
            last_run: check.last_run.as_deref().map(|run| LastRun {
                status: run.outcome.status.as_str(),
                reason: &run.outcome.reason,
                kind: run.outcome.kind.map(|k| k.as_str()),
                time: fmt::timestamp(run.finished_at),
                duration_seconds: run.duration.as_secs_f64(),
                details: run.outcome.details.as_ref(),
            }),
        }
    }
}

#[derive(Serialize)]
struct RuntimeFigures {
    alive_tasks: usize,
}

#[derive(Serialize)]
struct LastRun<'a> {
    status: &'a str,
    reason: &'a str,
    kind: Option<&'a str>,
    time: String,
    duration_seconds: f64,
    details: Option<&'a Details>,
}

#[derive(Serialize)]
struct TransitionEntry<'a> {
    time: String,
    check: &'a str,
    from: Option<&'a str>,
    to: &'a str,
    reason: &'a str,
}

impl<'a> TransitionEntry<'a> {
    fn new(t: &'a Transition) -> Self {
        TransitionEntry {
            time: fmt::timestamp(t.at),
            check: &t.check,
            from: t.from.map(Status::as_str),
            to: t.to.as_str(),
            reason: &t.reason,
        }
    }
}

/// Remarks for a person that no single check makes.
fn notes(input: &DiagInput<'_>) -> Vec<String> {
    let mut notes = Vec::new();
    if input.readiness.draining {
        notes.push("shutting down: /readyz answers 503 while connections drain".to_owned());
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

/// The `/diag` text report for a terminal, for a person paged at night: the verdict first, then
/// every check that fails or warns (worst first) in full, then one line per passing check, then
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

    if let Some(fleet) = &readiness.fleet {
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
fn verdict(readiness: &Readiness) -> String {
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
        if readiness.draining {
            why.push("draining: shutting down, /readyz answers 503 while connections drain".to_owned());
        }
        if why.is_empty() {
            return format!("{status}: not ready");
        }
        return format!("{status}: not ready: {}", why.join("; "));
    }
    let held: Vec<&str> = readiness
        .fleet
        .iter()
        .flat_map(|f| &f.checks)
        .filter(|c| c.holding)
        .map(|c| c.check.as_str())
        .collect();
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
fn listed(names: &[&str]) -> String {
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

/// `[fleet]`: the peers, why none can be asked, and per shared check what they answered last.
fn fleet_block(out: &mut String, fleet: &crate::fleet::Snapshot) {
    let _ = writeln!(
        out,
        "\nfleet: peers {} ({} known, this replica {} left out), panic threshold {}",
        fleet.peers.join(", "),
        fleet.known.len(),
        fleet.own_address.as_deref().unwrap_or("unknown (set POD_IP):"),
        fmt::percent(fleet.panic_threshold)
    );
    if let Some(at) = &fleet.resolved_at {
        let _ = writeln!(out, "  resolved at {at}: {}", listed_all(&fleet.known));
    }
    for error in &fleet.resolution_errors {
        let _ = writeln!(out, "  resolution: {error}");
    }
    if let Some(problem) = &fleet.problem {
        let _ = writeln!(out, "  {problem}");
    }
    let _ = writeln!(
        out,
        "  {} consultation(s), {} peer request(s) since start",
        fleet.consultations, fleet.peer_requests
    );
    for check in &fleet.checks {
        let state = match (check.holding, check.panic) {
            (true, _) => "PANIC, readiness held",
            (false, true) => "panic (not holding now)",
            (false, false) => "no panic",
        };
        let _ = writeln!(
            out,
            "  {} at {}: {state}: fails on {} of {} answering replicas, {} passing, {} unknown ({} peers asked)",
            check.check,
            check.at,
            check.tally.fails,
            check.answering,
            check.tally.passes,
            check.tally.unknown,
            check.tally.asked
        );
        for answer in &check.answers {
            let _ = writeln!(out, "    {} {}", answer.peer, answer.answer);
        }
    }
}

fn listed_all(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A check in full: status, reason, hint, since when, failed runs, the last run and its figures.
fn check_block(out: &mut String, check: &CheckView, now: SystemTime, attention: bool) {
    let _ = writeln!(out);
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
    let _ = writeln!(out, "{} [{status}] ({critical}) {}", check.name, check.reason);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::config::CheckSettings;
    use crate::core::outcome::{ComponentType, FailureKind, Observation, Outcome, Unit};
    use crate::engine::state::Run;

    fn readiness(ready: bool) -> Readiness {
        let check = CheckView {
            name: "postgres".to_owned(),
            settings: CheckSettings::default(),
            component_type: ComponentType::Datastore,
            status: Some(Status::Fail),
            reason: "connection refused (127.0.0.1:5432)".to_owned(),
            kind: None,
            hint: None,
            since: None,
            consecutive_failures: 2,
            consecutive_successes: 0,
            runs: 2,
            last_run: None,
        };
        Readiness {
            fleet: None,
            ready,
            draining: false,
            checks: vec![check],
        }
    }

    fn diag_notes(uptime: Duration, probes: &[(&'static str, SystemTime)], now: SystemTime) -> Vec<String> {
        let readiness = readiness(true);
        notes(&DiagInput {
            readiness: &readiness,
            transitions: &[],
            kubelet_probes: probes,
            started_at: now - uptime,
            uptime,
            alive_tasks: None,
            now,
            service_id: "test",
            config: RawValue::NULL,
        })
    }

    #[test]
    fn lines_follow_the_kubernetes_form_and_withhold_reasons() {
        let r = readiness(false);
        assert_eq!(
            check_line(&r.checks[0], false, true),
            "[-]postgres failed: connection refused (127.0.0.1:5432)"
        );
        assert_eq!(
            check_line(&r.checks[0], false, false),
            "[-]postgres failed: reason withheld"
        );
        assert_eq!(check_line(&r.checks[0], true, true), "[+]postgres excluded: ok");
        assert_eq!(single_check(&r.checks[0], false), "failed: reason withheld\n");
    }

    #[test]
    fn diag_points_out_a_kubelet_that_never_probes() {
        let now = SystemTime::now();
        assert!(
            diag_notes(Duration::from_secs(30), &[], now).is_empty(),
            "too early to say"
        );
        let quiet = diag_notes(Duration::from_secs(120), &[], now);
        assert_eq!(quiet.len(), 1);
        assert!(
            quiet[0].starts_with("no kubelet probe (User-Agent kube-probe/…) since start"),
            "{quiet:?}"
        );
        let recent = [("/readyz", now - Duration::from_secs(5))];
        assert!(diag_notes(Duration::from_secs(600), &recent, now).is_empty());
        let old = [("/readyz", now - Duration::from_secs(300))];
        assert_eq!(diag_notes(Duration::from_secs(600), &old, now).len(), 1);
    }

    /// A check whose last run finished a minute ago in `millis`, with `outcome`.
    fn view(name: &str, critical: bool, status: Option<Status>, outcome: Outcome, now: SystemTime) -> CheckView {
        let failing = status != Some(Status::Pass);
        CheckView {
            name: name.to_owned(),
            settings: CheckSettings {
                critical,
                ..CheckSettings::default()
            },
            component_type: ComponentType::Component,
            status,
            reason: outcome.reason.clone(),
            kind: outcome.kind,
            hint: outcome.hint.clone(),
            since: Some(now - Duration::from_secs(185)),
            consecutive_failures: if failing { 4 } else { 0 },
            consecutive_successes: if failing { 0 } else { 37 },
            runs: 40,
            last_run: Some(Arc::new(Run {
                outcome,
                finished: tokio::time::Instant::now(),
                finished_at: now - Duration::from_secs(1),
                duration: Duration::from_micros(300),
            })),
        }
    }

    fn upstream_pass(name: &str, now: SystemTime) -> CheckView {
        let outcome = Outcome::pass().with_observations(vec![
            Observation::number("status_code", 200.0, Unit::None),
            Observation::number("latency", 0.012, Unit::Seconds),
        ]);
        view(name, false, Some(Status::Pass), outcome, now)
    }

    fn text_of(readiness: &Readiness, transitions: &[Transition], now: SystemTime) -> String {
        diag_text(&DiagInput {
            readiness,
            transitions,
            kubelet_probes: &[("/readyz", now - Duration::from_secs(3))],
            started_at: now - Duration::from_secs(600),
            uptime: Duration::from_secs(600),
            alive_tasks: None,
            now,
            service_id: "gateway-7d9f",
            config: RawValue::NULL,
        })
    }

    #[test]
    fn the_one_failing_check_of_fifty_is_within_the_first_ten_lines() {
        let now = SystemTime::now();
        let mut checks: Vec<CheckView> = (0..50)
            .map(|i| upstream_pass(&format!("upstream:svc-{i:02}"), now))
            .collect();
        let failing = Outcome::fail(
            FailureKind::Refused,
            "GET http://10.0.0.27:8080/healthz: connection refused",
        )
        .with_hint("kubectl get endpoints svc-27");
        checks[27] = view("upstream:svc-27", true, Some(Status::Fail), failing, now);
        let readiness = Readiness {
            fleet: None,
            ready: false,
            draining: false,
            checks,
        };
        let text = text_of(&readiness, &[], now);
        let head: Vec<&str> = text.lines().take(10).collect();
        assert!(
            head.iter().any(|l| l.contains("upstream:svc-27")
                && l.contains("GET http://10.0.0.27:8080/healthz: connection refused")),
            "{text}"
        );
        assert!(
            head.iter().any(|l| l.contains("kubectl get endpoints svc-27")),
            "{text}"
        );
        assert_eq!(
            head[0],
            format!(
                "vigil {} on gateway-7d9f: NOT READY (up 10m)",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            head[1],
            "verdict: fail: not ready: critical check failing: upstream:svc-27"
        );
        assert_eq!(head[2], "checks: 1 fail, 0 warn, 49 pass, 0 pending (50 in all)");
        // Every passing check: one line in the summary, in full further down.
        let summary: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "passing:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(summary.len(), 49, "{text}");
        assert_eq!(summary[0], "  upstream:svc-00  ok  in 0.3ms");
        assert!(text.contains("\nupstream:svc-00 [PASS] (not critical) ok\n"), "{text}");
        assert!(text.contains("  latency                  12ms\n"), "{text}");
    }

    #[test]
    fn failures_come_worst_first_in_full_with_human_figures() {
        let now = SystemTime::now();
        let system = Outcome::warn(FailureKind::Threshold, "memory 97% of its limit")
            .with_hint("raise the memory limit")
            .with_observations(vec![
                Observation::number("memory_working_set", 684_339_200.0, Unit::Bytes),
                Observation::number("memory_usage", 0.0206, Unit::Ratio),
                Observation::number("cpu_limit", 0.25, Unit::Cores),
            ]);
        let jwt = Outcome::pass().with_observations(vec![
            Observation::number("gateway_accepts_valid_token", 1.0, Unit::Flag),
            Observation::text("fingerprint", "3f2a9c1d"),
        ]);
        let postgres = Outcome::fail(FailureKind::Refused, "connection refused (127.0.0.1:5432)")
            .with_hint("is the database up? kubectl get pods -n db")
            .with_observations(vec![Observation::number("query_duration", 0.0003, Unit::Seconds)]);
        let mut flapping = upstream_pass("upstream:orders", now);
        flapping.consecutive_failures = 1;
        let readiness = Readiness {
            fleet: None,
            ready: false,
            draining: true,
            checks: vec![
                view("system", false, Some(Status::Warn), system, now),
                view("jwt", true, Some(Status::Pass), jwt, now),
                flapping,
                view("postgres", true, Some(Status::Fail), postgres, now),
            ],
        };
        let transitions = [Transition {
            check: "postgres".to_owned(),
            from: Some(Status::Pass),
            to: Status::Fail,
            reason: "connection refused (127.0.0.1:5432)".to_owned(),
            at: now - Duration::from_secs(185),
        }];
        let text = text_of(&readiness, &transitions, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "verdict: fail: not ready: critical check failing: postgres; draining: shutting down, /readyz answers 503 while connections drain"
        );
        let position = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
        };
        assert!(position("postgres [FAIL] (critical)") < position("system [WARN] (not critical)"));
        assert!(position("system [WARN]") < position("\npassing:\n"));
        assert!(position("\npassing:\n") < position("status changes (newest first):"));
        assert!(position("status changes") < position("kubelet probes:"));
        assert!(position("kubelet probes:") < position("passing checks in full:"));
        for fact in [
            "  hint: is the database up? kubectl get pods -n db\n",
            "  since ",
            "(3m 5s ago)",
            "  consecutive failed runs: 4 (reports fail at 2)\n",
            "  last run: fail in 0.3ms: connection refused (127.0.0.1:5432)\n",
            "  query_duration           0.3ms\n",
            "  memory_working_set       653MiB\n",
            "  memory_usage             2.1%\n",
            "  cpu_limit                0.25 cores\n",
            "  gateway_accepts_valid_token yes\n",
            "  fingerprint              3f2a9c1d\n",
            "  upstream:orders  ok  in 0.3ms  (failed 1 run(s) in a row, reports fail at 2: ok)\n",
            " postgres pass -> fail: connection refused (127.0.0.1:5432)\n",
            "  /readyz last at ",
            "note: shutting down: /readyz answers 503 while connections drain\n",
        ] {
            position(fact);
        }
        assert!(!text.contains(" bytes") && !text.contains(" ratio"), "{text}");
    }

    #[test]
    fn the_verdict_says_why() {
        let now = SystemTime::now();
        let pass = |name: &str| upstream_pass(name, now);
        let mut pending = pass("jwt");
        pending.status = None;
        pending.last_run = None;
        let ready = Readiness {
            fleet: None,
            ready: true,
            draining: false,
            checks: vec![pass("a"), pass("b")],
        };
        assert_eq!(verdict(&ready), "pass: ready, every check passes");
        let degraded = Readiness {
            fleet: None,
            ready: true,
            draining: false,
            checks: vec![
                view("a", false, Some(Status::Fail), Outcome::fail(FailureKind::Io, "x"), now),
                view(
                    "b",
                    true,
                    Some(Status::Warn),
                    Outcome::warn(FailureKind::Threshold, "y"),
                    now,
                ),
            ],
        };
        assert_eq!(
            verdict(&degraded),
            "warn: ready, degraded: non-critical check failing: a; warning: b"
        );
        let starting = Readiness {
            fleet: None,
            ready: false,
            draining: false,
            checks: vec![pass("a"), pending],
        };
        assert_eq!(verdict(&starting), "fail: not ready: first run not finished: jwt");
        let text = text_of(&starting, &[], now);
        assert!(text.contains("\njwt [PENDING] (not critical) "), "{text}");
        assert_eq!(listed(&["a", "b", "c", "d", "e", "f", "g"]), "a, b, c, d, e and 2 more");
    }
}
