//! The outcome vocabulary: what one run of a check found, in words every part of the agent
//! shares. A leaf: it imports nothing from the crate, so checks, state, metrics and rendering
//! can all depend on it without depending on each other.
//!
//! A run collects its [`Finding`]s in [`Findings`], and [`Findings::into_outcome`] is the one
//! rule that turns several findings into one status, one reason and one hint.
//!
//! Reasons, hints and text observations quote dependencies (a server's error, a pod's status
//! reason), so this is where they are made printable and bounded ([`crate::core::text`]): a
//! finding's or an outcome's reason when it is made, and the joined reason again in the
//! reducer. Every output (`/readyz`, `/diag`, `vigil check`, logs, Events) reads them from here.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::text::{NOTE_MAX, REASON_MAX, one_line};

/// The result of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Degraded: shown and alerted on, never fails readiness.
    Warn,
    Fail,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pass, Status::Warn, Status::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run did not pass, as a closed set: stable wording for logs and `/diag`, and low
/// cardinality should it ever become a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The run did not finish within its `timeout`.
    Timeout,
    /// The check's code panicked.
    Panic,
    /// No result for three intervals.
    Stale,
    /// A measured value crossed a configured threshold.
    Threshold,
    /// Connection refused.
    Refused,
    /// The name did not resolve.
    Dns,
    /// TLS handshake or certificate failure.
    Tls,
    /// Credentials rejected.
    Auth,
    /// The server refused a new client because it is full.
    TooManyClients,
    /// An unexpected HTTP status.
    HttpStatus,
    /// The dependency answered something vigil cannot use.
    Protocol,
    /// Reading a local file or kernel interface failed.
    Io,
    /// The dependency is misconfigured (weak secret, missing key, database missing, …).
    Misconfigured,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Panic => "panic",
            FailureKind::Stale => "stale",
            FailureKind::Threshold => "threshold",
            FailureKind::Refused => "refused",
            FailureKind::Dns => "dns",
            FailureKind::Tls => "tls",
            FailureKind::Auth => "auth",
            FailureKind::TooManyClients => "too_many_clients",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Protocol => "protocol",
            FailureKind::Io => "io",
            FailureKind::Misconfigured => "misconfigured",
        }
    }
}

/// The IETF health+json `componentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    Component,
    Datastore,
    System,
}

/// The unit of an observed value, as shown in `/diag` (`observedUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A fraction, 0..1 (saturation, CPU share of a limit).
    Ratio,
    Bytes,
    Seconds,
    /// A count of things (connections, keys, addresses, events).
    Count,
    /// CPU cores.
    Cores,
    /// A yes/no figure exported as 1 or 0 (the gateway accepts a valid token).
    Flag,
    /// No unit: a code (an HTTP status) or a label-like value such as a fingerprint.
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ratio => "ratio",
            Unit::Bytes => "bytes",
            Unit::Seconds => "s",
            Unit::Count => "count",
            Unit::Cores => "cores",
            Unit::Flag => "flag",
            Unit::None => "",
        }
    }
}

/// One measured value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Text(String),
}

/// A figure a check measures, described once: its name (the part after `:` in `/diag`'s
/// `component:measurement` keys, and the key of its detail) and its unit. [`Figure::of`] gives
/// the observation; the check exports the same value to its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    pub name: &'static str,
    pub unit: Unit,
}

impl Figure {
    pub const fn new(name: &'static str, unit: Unit) -> Figure {
        Figure { name, unit }
    }

    /// This figure's observation with `value`.
    pub fn of(self, value: f64) -> Observation {
        Observation::number(self.name, value, self.unit)
    }
}

/// One thing a run measured, e.g. `memory_working_set` = 1.2e8 bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The measurement name: the part after `:` in `/diag`'s `component:measurement` keys.
    pub name: &'static str,
    pub value: Value,
    pub unit: Unit,
}

impl Observation {
    pub fn number(name: &'static str, value: f64, unit: Unit) -> Self {
        Observation {
            name,
            value: Value::Number(value),
            unit,
        }
    }

    /// A text figure, made one printable line of at most [`NOTE_MAX`] bytes: such values
    /// (application names, states) come from the dependency.
    pub fn text(name: &'static str, value: impl Into<String>) -> Self {
        Observation {
            name,
            value: Value::Text(printable(value.into(), NOTE_MAX)),
            unit: Unit::None,
        }
    }
}

/// What a run asks of the scheduler for its next run. The scheduler decides: it owns the
/// spacing and the budget of early runs (see `scheduler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rerun {
    /// At the interval.
    #[default]
    Scheduled,
    /// The run failed right after the check saw its dependency change (a kept connection
    /// dropped): confirm at once, within the scheduler's confirmation budget, so that a real
    /// loss is reported within one `timeout` and a blip that passes on the re-run is not.
    Confirm,
    /// As `Confirm`, and once the budget is spent, look again after this long instead of the
    /// interval (the scheduler never goes below one run a second): the dependency is expected
    /// back soon and costs nothing to ask (a port that refuses).
    ConfirmThenEvery(Duration),
    /// The dependency said when to come back (an HTTP `Retry-After`): the next run starts no
    /// sooner than this long after this run ended, never sooner than the interval, and no later
    /// than `scheduler::MAX_WAIT_INTERVALS` intervals after this run started. While the check
    /// waits, its last result stands (it is not stale) and its loop counts as on schedule.
    NotBefore(Duration),
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// One line, shown after the check's name in `/readyz?verbose`. Never holds a secret.
    pub reason: String,
    /// Why it did not pass; `None` for a pass.
    pub kind: Option<FailureKind>,
    pub observations: Vec<Observation>,
    /// For warn and fail: the next thing a person should look at or do.
    pub hint: Option<String>,
    /// Check-specific structure for `/diag` (percentiles, per-pool figures, …).
    pub details: Option<Details>,
    /// When the check would like to run next.
    pub rerun: Rerun,
}

/// A run's check-specific structure for `/diag`, kept as compact JSON text: a tree of
/// `serde_json::Value`s takes several times the memory of its text (3 KiB against a few hundred
/// bytes for an upstream's), every check keeps its last run, and `/diag` only prints it.
#[derive(Debug, Clone)]
pub struct Details(Box<serde_json::value::RawValue>);

impl Details {
    /// The structure back as a tree.
    pub fn to_value(&self) -> serde_json::Value {
        // The text was written by serde_json from a Value: it parses.
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for Details {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for Details {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl Outcome {
    pub fn pass() -> Self {
        Outcome {
            status: Status::Pass,
            reason: "ok".to_owned(),
            kind: None,
            observations: Vec::new(),
            hint: None,
            details: None,
            rerun: Rerun::Scheduled,
        }
    }

    pub fn warn(kind: FailureKind, reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Warn,
            reason: printable(reason.into(), REASON_MAX),
            kind: Some(kind),
            ..Outcome::pass()
        }
    }

    pub fn fail(kind: FailureKind, reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Fail,
            reason: printable(reason.into(), REASON_MAX),
            kind: Some(kind),
            ..Outcome::pass()
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(printable(hint.into(), NOTE_MAX));
        self
    }

    /// With these observations: for outcomes made whole elsewhere (tests, the scheduler's own).
    pub fn with_observations(mut self, observations: Vec<Observation>) -> Self {
        self.observations = observations;
        self
    }

    pub fn with_rerun(mut self, rerun: Rerun) -> Self {
        self.rerun = rerun;
        self
    }
}

/// The threshold a figure crossed, where higher is worse: `fail` from `fail` on, else `warn`
/// from `warn` on. Gives the status, its word for reasons (`"warn at 80%"`) and the threshold.
pub fn crossed(value: f64, warn: f64, fail: f64) -> Option<(Status, &'static str, f64)> {
    if value >= fail {
        Some((Status::Fail, "fail", fail))
    } else if value >= warn {
        Some((Status::Warn, "warn", warn))
    } else {
        None
    }
}

/// One thing a run found wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub status: Status,
    pub kind: FailureKind,
    /// Never holds a secret or a token.
    pub reason: String,
    pub hint: Option<String>,
}

impl Finding {
    pub fn fail(kind: FailureKind, reason: impl Into<String>) -> Finding {
        Finding {
            status: Status::Fail,
            kind,
            reason: printable(reason.into(), REASON_MAX),
            hint: None,
        }
    }

    pub fn warn(kind: FailureKind, reason: impl Into<String>) -> Finding {
        Finding {
            status: Status::Warn,
            ..Finding::fail(kind, reason)
        }
    }

    /// A finding of `status`; a pass finds nothing, so it is taken as a warn.
    pub fn of(status: Status, kind: FailureKind, reason: impl Into<String>) -> Finding {
        match status {
            Status::Fail => Finding::fail(kind, reason),
            Status::Pass | Status::Warn => Finding::warn(kind, reason),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(printable(hint.into(), NOTE_MAX));
        self
    }
}

/// The findings of one run, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings(Vec<Finding>);

impl Findings {
    pub fn new() -> Findings {
        Findings::default()
    }

    pub fn push(&mut self, finding: Finding) {
        self.0.push(finding);
    }

    /// The worst status found; pass when nothing was.
    pub fn worst(&self) -> Status {
        self.0.iter().map(|f| f.status).max().unwrap_or(Status::Pass)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The one rule that turns a run's findings into its outcome:
    ///
    /// - no findings: pass;
    /// - else the worst status found decides, and only the findings of that status speak
    ///   (a failing database's slow queries would only hide why it fails; they show again, and
    ///   in `/diag` all the time, once the failure is gone);
    /// - the reason joins their distinct reasons with `; `, in the order found; the kind is the
    ///   first one's;
    /// - the hint joins their distinct hints with `; `, in the order found;
    /// - reason and hint are one printable line each, the reason at most [`REASON_MAX`] bytes
    ///   (a finding made field by field is cleaned here too).
    pub fn into_outcome(self) -> Outcome {
        let worst = self.worst();
        let mut top = self.0.into_iter().filter(|f| f.status == worst);
        let Some(first) = top.next() else {
            return Outcome::pass();
        };
        let mut reasons: Vec<String> = vec![first.reason];
        let mut hints: Vec<String> = first.hint.into_iter().collect();
        for finding in top {
            if !reasons.contains(&finding.reason) {
                reasons.push(finding.reason);
            }
            if let Some(hint) = finding.hint
                && !hints.contains(&hint)
            {
                hints.push(hint);
            }
        }
        let outcome = match worst {
            Status::Fail => Outcome::fail(first.kind, reasons.join("; ")),
            Status::Pass | Status::Warn => Outcome::warn(first.kind, reasons.join("; ")),
        };
        Outcome {
            hint: (!hints.is_empty()).then(|| printable(hints.join("; "), NOTE_MAX)),
            ..outcome
        }
    }
}

/// `text` as one printable line of at most `max` bytes, without a copy when it is one already.
fn printable(text: String, max: usize) -> String {
    match one_line(&text, max) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(clean) => clean,
    }
}

impl FromIterator<Finding> for Findings {
    fn from_iter<I: IntoIterator<Item = Finding>>(iter: I) -> Self {
        Findings(iter.into_iter().collect())
    }
}

impl Extend<Finding> for Findings {
    fn extend<I: IntoIterator<Item = Finding>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// What a run found, as it goes: its findings, its observations and its `/diag` details,
/// gathered in one place so that a check's parts each add theirs. The one way a check assembles
/// its outcome ([`Report::into_outcome`]).
#[derive(Debug, Default)]
pub struct Report {
    findings: Findings,
    observations: Vec<Observation>,
    details: serde_json::Map<String, serde_json::Value>,
    rerun: Rerun,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    pub fn find(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    pub fn find_all(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
    }

    pub fn observe(&mut self, observation: Observation) {
        self.observations.push(observation);
    }

    pub fn observe_all(&mut self, observations: impl IntoIterator<Item = Observation>) {
        self.observations.extend(observations);
    }

    pub fn detail(&mut self, key: &str, value: serde_json::Value) {
        self.details.insert(key.to_owned(), value);
    }

    /// Every key of `details` (a JSON object) as a detail.
    pub fn details(&mut self, details: serde_json::Value) {
        if let serde_json::Value::Object(map) = details {
            self.details.extend(map);
        }
    }

    /// When the check would like to run next.
    pub fn rerun(&mut self, rerun: Rerun) {
        self.rerun = rerun;
    }

    /// The worst status found so far; pass when nothing was.
    pub fn worst(&self) -> Status {
        self.findings.worst()
    }

    /// The findings so far, in the order found.
    pub fn findings(&self) -> &[Finding] {
        &self.findings.0
    }

    /// The outcome by the one rule ([`Findings::into_outcome`]), with everything observed.
    pub fn into_outcome(self) -> Outcome {
        // Serializing a Value cannot fail (its map keys are strings).
        let details = serde_json::value::to_raw_value(&serde_json::Value::Object(self.details))
            .ok()
            .map(Details);
        Outcome {
            observations: self.observations,
            details,
            rerun: self.rerun,
            ..self.findings.into_outcome()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_findings_is_a_pass() {
        let outcome = Findings::new().into_outcome();
        assert_eq!(
            (outcome.status, outcome.reason.as_str(), outcome.hint),
            (Status::Pass, "ok", None)
        );
    }

    #[test]
    fn the_worst_status_decides_and_only_its_findings_speak() {
        let findings: Findings = [
            Finding::warn(FailureKind::Threshold, "2 queries running longer than 30s").with_hint("find the queries"),
            Finding::fail(FailureKind::Refused, "health: connection refused").with_hint("see the pod"),
            Finding::warn(FailureKind::Threshold, "p95 3s").with_hint("slow"),
            Finding::fail(FailureKind::HttpStatus, "scrape: status 500").with_hint("see the pod"),
        ]
        .into_iter()
        .collect();
        assert_eq!(findings.worst(), Status::Fail);
        let outcome = findings.into_outcome();
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(
            outcome.kind,
            Some(FailureKind::Refused),
            "the first worst finding's kind"
        );
        assert_eq!(outcome.reason, "health: connection refused; scrape: status 500");
        assert_eq!(outcome.hint.as_deref(), Some("see the pod"), "one hint once");
    }

    #[test]
    fn distinct_hints_are_joined_in_the_order_found() {
        let mut findings = Findings::new();
        findings.push(Finding::warn(FailureKind::Threshold, "cpu 95%").with_hint("cpu hint"));
        findings.push(Finding::warn(FailureKind::Threshold, "memory 97%").with_hint("memory hint"));
        findings.push(Finding::warn(FailureKind::Threshold, "1 OOM kill").with_hint("memory hint"));
        findings.push(Finding::warn(FailureKind::Io, "no hint here"));
        let outcome = findings.into_outcome();
        assert_eq!(outcome.status, Status::Warn);
        assert_eq!(outcome.reason, "cpu 95%; memory 97%; 1 OOM kill; no hint here");
        assert_eq!(outcome.hint.as_deref(), Some("cpu hint; memory hint"));
    }

    #[test]
    fn dependency_text_becomes_one_printable_line_of_at_most_512_bytes() {
        let hostile = format!(
            "boom\n[+]postgres ok\n\u{1b}]0;pwned\u{7}\u{1b}[2J{}",
            "x".repeat(10_000)
        );
        let outcome = Findings::from_iter([
            Finding::fail(FailureKind::Protocol, format!("server error P0001: {hostile}")),
            // Made field by field, as a check may: the reducer cleans it too.
            Finding {
                status: Status::Fail,
                kind: FailureKind::Protocol,
                reason: "second\r\nline".to_owned(),
                hint: Some("look\nthere".to_owned()),
            },
        ])
        .into_outcome();
        assert!(outcome.reason.len() <= 512, "{}", outcome.reason.len());
        assert!(
            outcome
                .reason
                .starts_with("server error P0001: boom [+]postgres ok \u{fffd}"),
            "{}",
            outcome.reason
        );
        assert!(!outcome.reason.chars().any(char::is_control), "{:?}", outcome.reason);
        assert!(outcome.reason.ends_with('…'));
        assert_eq!(outcome.hint.as_deref(), Some("look there"));
        let direct = Outcome::warn(FailureKind::Io, "a\tb\n").with_hint("c\u{1b}[31m");
        assert_eq!(
            (direct.reason.as_str(), direct.hint.as_deref()),
            ("a b", Some("c\u{fffd}"))
        );
        let observed = Observation::text("top_application_names", "app\u{1b}[2J=3");
        assert_eq!(observed.value, Value::Text("app\u{fffd}=3".to_owned()));
    }

    #[test]
    fn the_same_reason_found_twice_is_said_once() {
        let outcome = Findings::from_iter([
            Finding::warn(FailureKind::Auth, "kubernetes API: unauthorized"),
            Finding::warn(FailureKind::Auth, "kubernetes API: unauthorized"),
            Finding::warn(FailureKind::Threshold, "cpu 95%"),
        ])
        .into_outcome();
        assert_eq!(outcome.reason, "kubernetes API: unauthorized; cpu 95%");
    }

    #[test]
    fn a_finding_of_pass_counts_as_a_warn() {
        let finding = Finding::of(Status::Pass, FailureKind::Threshold, "odd");
        assert_eq!(finding.status, Status::Warn);
    }
}
