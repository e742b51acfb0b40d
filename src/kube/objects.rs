//! The parts of Kubernetes objects vigil reads, as typed structs: everything else an object
//! holds is skipped while it is parsed, never kept. From a pod's spec only the containers' names
//! and their `resources.limits` of `cpu` and `memory` are read: environment values and
//! commands can hold secrets, and nothing vigil does needs them.
//!
//! Field names and shapes follow the API reference (core/v1 Pod, discovery.k8s.io/v1
//! EndpointSlice, meta/v1 Status and WatchEvent, metrics.k8s.io/v1beta1 PodMetrics).

use serde::{Deserialize, Deserializer};

/// `null` where the API may send it for a list (an EndpointSlice's `endpoints`), as empty.
fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `metadata`: what identifies an object and its version.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// A list's `metadata`: the version to watch from, and where the next page starts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListMeta {
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Set while more pages remain (`limit` was given).
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

/// `PodList`, `EndpointSliceList`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct List<T> {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
}

/// meta/v1 `Status`: what the API says with an error (and in a watch's `ERROR` event).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct Status {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<StatusDetails>,
}

/// `Status.details`: which object an error is about.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct StatusDetails {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// How long the client should wait before asking again (429, 504 "too large resource
    /// version").
    #[serde(default, rename = "retryAfterSeconds")]
    pub retry_after_seconds: Option<u64>,
}

impl Status {
    pub(crate) fn retry_after_seconds(&self) -> Option<u64> {
        self.details.as_ref()?.retry_after_seconds.filter(|s| *s > 0)
    }
}

/// core/v1 `Pod`, as far as vigil reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

/// `spec`: the containers' names and limits only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<ContainerSpec>,
    /// Native sidecars (vigil itself, `restartPolicy: Always`) and init containers.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub init_containers: Vec<ContainerSpec>,
}

/// One container of the spec: its name and limits, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ContainerSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub resources: Resources,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub limits: Limits,
}

/// `resources.limits`: the quantities of `cpu` and `memory` (other resources are skipped).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    /// The regular containers' (the gateway's).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    /// Init containers' and native sidecars' (vigil's own).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(default)]
    pub last_state: ContainerState,
}

/// One of waiting, running, terminated (the API sets at most one).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ContainerState {
    #[serde(default)]
    pub waiting: Option<Waiting>,
    #[serde(default)]
    pub running: Option<Running>,
    #[serde(default)]
    pub terminated: Option<Terminated>,
}

/// Why the container is not running: the reason only (`CrashLoopBackOff`); the message is
/// free text and skipped.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Waiting {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    #[serde(default)]
    pub started_at: Option<String>,
}

/// How the container ended (`OOMKilled`, exit code 137).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// discovery.k8s.io/v1 `EndpointSlice`: its endpoints' conditions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Endpoint {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: Conditions,
}

/// An endpoint's conditions, as the API defines their absence: `ready` unset means ready,
/// `serving` unset means as `ready`, `terminating` unset means not terminating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Conditions {
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub serving: Option<bool>,
    #[serde(default)]
    pub terminating: Option<bool>,
}

impl Conditions {
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or_else(|| self.is_ready())
    }

    pub fn is_terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

/// metrics.k8s.io/v1beta1 `PodMetrics` (k8s.io/metrics' types): what `kubectl top` reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct PodMetrics {
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ContainerMetrics {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub usage: Usage,
}

/// `usage`: CPU in cores (`12345n`) and memory working set in bytes (`1024Ki`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
}

/// An object kept from a list or a watch, found by name.
pub trait Object: for<'de> Deserialize<'de> + Clone + Send + Sync + 'static {
    fn meta(&self) -> &ObjectMeta;
}

impl Object for Pod {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl Object for EndpointSlice {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_limits_and_statuses_are_kept_from_a_pod() {
        let pod: Pod = serde_json::from_str(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"gw-1","uid":"u1","resourceVersion":"7","labels":{"a":"b"}},
            "spec":{"containers":[{"name":"api-gateway","image":"gw:1","env":[{"name":"DB_PASSWORD","value":"s3cr3t"}],
              "resources":{"limits":{"cpu":"1","memory":"512Mi","nvidia.com/gpu":"1"},"requests":{"cpu":"500m"}}}],
              "initContainers":[{"name":"vigil","restartPolicy":"Always"}]},
            "status":{"phase":"Running","containerStatuses":[{"name":"api-gateway","ready":false,"restartCount":3,"image":"gw:1","imageID":"",
              "state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off 5m0s"}},
              "lastState":{"terminated":{"reason":"OOMKilled","exitCode":137,"finishedAt":"2026-12-01T10:00:00Z"}}}],
              "initContainerStatuses":[{"name":"vigil","ready":true,"restartCount":0,"state":{"running":{"startedAt":"2026-12-01T09:00:00Z"}}}]}}"#,
        )
        .unwrap();
        assert_eq!(pod.spec.containers[0].resources.limits.memory.as_deref(), Some("512Mi"));
        assert_eq!(pod.spec.init_containers[0].name, "vigil");
        let status = &pod.status.container_statuses[0];
        assert_eq!((status.restart_count, status.ready), (3, false));
        assert_eq!(status.last_state.terminated.as_ref().unwrap().exit_code, 137);
        assert_eq!(pod.status.init_container_statuses[0].name, "vigil");
        assert!(!format!("{pod:?}").contains("s3cr3t"), "no environment value is kept");
    }

    #[test]
    fn endpoint_conditions_default_as_the_api_says() {
        let slice: EndpointSlice = serde_json::from_str(
            r#"{"metadata":{"name":"s"},"endpoints":[{"addresses":["10.0.0.1"],"conditions":{}},
               {"addresses":["10.0.0.2"],"conditions":{"ready":false,"terminating":true}},
               {"addresses":["10.0.0.3"],"conditions":{"ready":false,"serving":true,"terminating":true}}]}"#,
        )
        .unwrap();
        let c: Vec<(bool, bool, bool)> = slice
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.conditions.is_ready(),
                    e.conditions.is_serving(),
                    e.conditions.is_terminating(),
                )
            })
            .collect();
        assert_eq!(c, [(true, true, false), (false, false, true), (false, true, true)]);
        let empty: EndpointSlice = serde_json::from_str(r#"{"metadata":{"name":"s"},"endpoints":null}"#).unwrap();
        assert!(empty.endpoints.is_empty());
    }
}
