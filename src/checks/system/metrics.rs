//! The `system` check's container figures: `vigil_container_*`.

use prometheus::core::Collector;
use prometheus::{Gauge, IntCounter};

use crate::metrics::{Metrics, MetricsError};

/// The `system` check's container figures: registered by the check, so exported only while
/// `[system]` is enabled.
#[derive(Clone)]
pub(crate) struct SystemMetrics {
    pub cpu_usage_ratio: Gauge,
    pub memory_working_set_bytes: Gauge,
    pub memory_limit_bytes: Gauge,
    /// Counts up by the cgroup's own cumulative figure (`throttled_usec` / `throttled_time`).
    pub cpu_throttled_seconds_total: prometheus::Counter,
    pub oom_kills_total: IntCounter,
}

impl SystemMetrics {
    /// Creates and registers the `vigil_container_*` series.
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<SystemMetrics, MetricsError> {
        let system = SystemMetrics {
            cpu_usage_ratio: Gauge::new(
                "vigil_container_cpu_usage_ratio",
                "CPU used over the last interval, as a share of the container's CPU limit (of the host's cores without one).",
            )?,
            memory_working_set_bytes: Gauge::new(
                "vigil_container_memory_working_set_bytes",
                "Memory working set: usage minus inactive file cache.",
            )?,
            memory_limit_bytes: Gauge::new(
                "vigil_container_memory_limit_bytes",
                "The container's memory limit (the host's memory without one).",
            )?,
            cpu_throttled_seconds_total: prometheus::Counter::new(
                "vigil_container_cpu_throttled_seconds_total",
                "Time the container's CPU was throttled by its quota.",
            )?,
            oom_kills_total: IntCounter::new(
                "vigil_container_oom_kills_total",
                "Processes of the container killed by the OOM killer.",
            )?,
        };

        let handles = system.clone();
        let collectors = move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.cpu_usage_ratio.clone()),
                Box::new(handles.memory_working_set_bytes.clone()),
                Box::new(handles.memory_limit_bytes.clone()),
                Box::new(handles.cpu_throttled_seconds_total.clone()),
                Box::new(handles.oom_kills_total.clone()),
            ]
        };
        metrics.register_group(name, collectors)?;
        Ok(system)
    }
}
