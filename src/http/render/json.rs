//! `/diag` as JSON: the IETF "Health Check Response Format for HTTP APIs" shape, with vigil's
//! additions under `vigil`.

use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};

use super::{DiagInput, notes, overall_status};
use crate::core::fmt;
use crate::core::outcome::{ComponentType, Details, Status, Value};
use std::time::SystemTime;

use crate::engine::state::{CheckView, Readiness, Transition};

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

/// A drain by hand in force, as `/diag` shows it.
#[derive(Serialize)]
struct DrainedEntry<'a> {
    reason: &'a str,
    since: String,
    until: String,
}

impl<'a> DrainedEntry<'a> {
    fn new(drained: &'a crate::engine::state::Drained) -> Self {
        DrainedEntry {
            reason: &drained.reason,
            since: fmt::timestamp(drained.since),
            until: fmt::timestamp(drained.until_wall),
        }
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
        map.serialize_entry("drained", &input.readiness.drained.as_ref().map(DrainedEntry::new))?;
        map.serialize_entry("started", &fmt::timestamp(input.started_at))?;
        map.serialize_entry("uptime_seconds", &input.uptime.as_secs())?;
        if let Some(tasks) = input.alive_tasks {
            map.serialize_entry("runtime", &RuntimeFigures { alive_tasks: tasks })?;
        }
        map.serialize_entry("checks", &CheckDetails(input))?;
        if let Some(fleet) = input.fleet {
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
