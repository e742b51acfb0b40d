//! Turns the state into what people and machines read: the Kubernetes-style `/readyz` lines,
//! the IETF health+json `/diag` document and its text twin. Pure functions of a snapshot.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};
use serde_json::value::RawValue;

use crate::fmt;
use crate::outcome::{ComponentType, Details, Status, Value};
use crate::state::{CheckView, Readiness, Transition};

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
            let time = check.last_run.as_ref().map(|r| rfc3339(r.finished_at));
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
        map.serialize_entry("started", &rfc3339(input.started_at))?;
        map.serialize_entry("uptime_seconds", &input.uptime.as_secs())?;
        if let Some(tasks) = input.alive_tasks {
            map.serialize_entry("runtime", &RuntimeFigures { alive_tasks: tasks })?;
        }
        map.serialize_entry("checks", &CheckDetails(input))?;
        let transitions: Vec<TransitionEntry<'_>> = input.transitions.iter().rev().map(TransitionEntry::new).collect();
        map.serialize_entry("transitions", &transitions)?;
        let probes: Vec<(&str, String)> = input
            .kubelet_probes
            .iter()
            .map(|(endpoint, at)| (*endpoint, rfc3339(*at)))
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
            since: check.since.map(rfc3339),
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
                time: rfc3339(run.finished_at),
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
            time: rfc3339(t.at),
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
        let since = last_probe.map_or_else(|| "since start".to_owned(), |at| format!("since {}", rfc3339(at)));
        notes.push(format!(
            "no kubelet probe (User-Agent kube-probe/…) {since}: check that the Deployment's readiness and liveness probes point at vigil's port"
        ));
    }
    notes
}

/// The `/diag` text report for a terminal.
pub fn diag_text(input: &DiagInput<'_>) -> String {
    let readiness = input.readiness;
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "vigil {} on {}: {} (up {})",
        env!("CARGO_PKG_VERSION"),
        input.service_id,
        if readiness.ready { "READY" } else { "NOT READY" },
        fmt::duration(Duration::from_secs(input.uptime.as_secs())),
    );
    for note in notes(input) {
        let _ = writeln!(out, "note: {note}");
    }
    for check in &readiness.checks {
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
        if let Some(since) = check.since {
            let age = input
                .now
                .duration_since(since)
                .map(|d| fmt::duration(Duration::from_secs(d.as_secs())))
                .unwrap_or_default();
            let _ = writeln!(out, "  since {} ({age} ago)", rfc3339(since));
        }
        if check.consecutive_failures > 0 {
            let _ = writeln!(
                out,
                "  consecutive failed runs: {} (reports fail at {})",
                check.consecutive_failures, check.settings.failure_threshold
            );
        }
        if let Some(hint) = &check.hint {
            let _ = writeln!(out, "  hint: {hint}");
        }
        if let Some(run) = &check.last_run {
            let _ = writeln!(
                out,
                "  last run: {} in {:.1}ms: {}",
                run.outcome.status,
                run.duration.as_secs_f64() * 1000.0,
                run.outcome.reason
            );
            for o in &run.outcome.observations {
                let value = match &o.value {
                    Value::Number(n) => format_number(*n),
                    Value::Text(t) => t.clone(),
                };
                let _ = writeln!(out, "  {:<24} {value} {}", o.name, o.unit.as_str());
            }
        }
    }
    let _ = writeln!(out, "\nstatus changes (newest first):");
    if input.transitions.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for t in input.transitions.iter().rev() {
        let from = t.from.map_or("none", Status::as_str);
        let _ = writeln!(out, "  {} {} {from} -> {}: {}", rfc3339(t.at), t.check, t.to, t.reason);
    }
    let _ = writeln!(out, "\nkubelet probes:");
    if input.kubelet_probes.is_empty() {
        let _ = writeln!(out, "  none seen");
    }
    for (endpoint, at) in input.kubelet_probes {
        let _ = writeln!(out, "  {endpoint} last at {}", rfc3339(*at));
    }
    out
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n:.4}")
    }
}

/// `2026-11-23T20:24:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckSettings;
    use crate::outcome::ComponentType;

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
}
