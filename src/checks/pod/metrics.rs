//! The `pod` check's figures (`[kubernetes]`): `vigil_pod_*`, `vigil_service_endpoints`, `vigil_kubernetes_api_up`.

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, MetricsError};

/// `[kubernetes]`'s figures (the `pod` check): registered only while `[kubernetes]` is
/// configured. Each `vigil_pod_container_*` series is labelled with the watched container only
/// (nothing else of the pod spec is shown); a figure that is not known has no series.
#[derive(Clone)]
pub(crate) struct KubernetesMetrics {
    pub api_up: IntGauge,
    pub container_ready: IntGaugeVec,
    /// Counts up by the kubelet's restart count (its rises since vigil started, plus the count
    /// at the first look).
    pub container_restarts_total: IntCounterVec,
    pub container_last_termination_info: IntGaugeVec,
    pub container_cpu_usage_cores: GaugeVec,
    pub container_cpu_limit_cores: GaugeVec,
    pub container_memory_usage_bytes: GaugeVec,
    pub container_memory_limit_bytes: GaugeVec,
    pub service_endpoints: IntGaugeVec,
}

/// `vigil_service_endpoints{condition}` label values.
pub(crate) const ENDPOINT_CONDITIONS: [&str; 3] = ["ready", "serving", "terminating"];

impl KubernetesMetrics {
    /// Creates and registers the group.
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<KubernetesMetrics, MetricsError> {
        let container = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["container"]);
        let k = KubernetesMetrics {
            api_up: IntGauge::new(
                "vigil_kubernetes_api_up",
                "1 when the last request or watch of every part vigil asks the Kubernetes API for (its pod, the Service's EndpointSlices, the metrics API, Events) worked, else 0.",
            )?,
            container_ready: IntGaugeVec::new(
                Opts::new(
                    "vigil_pod_container_ready",
                    "1 when the watched container of this pod is ready (its status in the pod).",
                ),
                &["container"],
            )?,
            container_restarts_total: IntCounterVec::new(
                Opts::new(
                    "vigil_pod_container_restarts_total",
                    "The kubelet's restart count of the watched container.",
                ),
                &["container"],
            )?,
            container_last_termination_info: IntGaugeVec::new(
                Opts::new(
                    "vigil_pod_container_last_termination_info",
                    "Always 1; the reason of the watched container's last termination (OOMKilled, Error, Completed, ...).",
                ),
                &["container", "reason"],
            )?,
            container_cpu_usage_cores: container(
                "vigil_pod_container_cpu_usage_cores",
                "CPU the watched container uses, in cores, from the metrics API (as kubectl top reads it).",
            )?,
            container_cpu_limit_cores: container(
                "vigil_pod_container_cpu_limit_cores",
                "The watched container's CPU limit in cores; no series without a limit.",
            )?,
            container_memory_usage_bytes: container(
                "vigil_pod_container_memory_usage_bytes",
                "Memory working set of the watched container, from the metrics API.",
            )?,
            container_memory_limit_bytes: container(
                "vigil_pod_container_memory_limit_bytes",
                "The watched container's memory limit; no series without a limit.",
            )?,
            service_endpoints: IntGaugeVec::new(
                Opts::new(
                    "vigil_service_endpoints",
                    "Endpoints of the watched Service by condition, from its EndpointSlices.",
                ),
                &["service", "condition"],
            )?,
        };
        let handles = k.clone();
        metrics.register_group(name, move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.api_up.clone()),
                Box::new(handles.container_ready.clone()),
                Box::new(handles.container_restarts_total.clone()),
                Box::new(handles.container_last_termination_info.clone()),
                Box::new(handles.container_cpu_usage_cores.clone()),
                Box::new(handles.container_cpu_limit_cores.clone()),
                Box::new(handles.container_memory_usage_bytes.clone()),
                Box::new(handles.container_memory_limit_bytes.clone()),
                Box::new(handles.service_endpoints.clone()),
            ]
        })?;
        Ok(k)
    }
}
