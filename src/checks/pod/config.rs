//! The `pod` check's section: the keys of `[kubernetes]` that are not the cluster's (those are
//! `config::Kubernetes`): its thresholds, and the common keys (its timing and weight).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Invalid;
use crate::config::de::duration;
use crate::config::limits::{default_cpu_warn, default_memory_warn, ratio};

/// The `pod` check's thresholds, in `[kubernetes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PodKeys {
    /// The container's CPU use / its CPU limit that warns. Default 0.80 (the runbook's 80 %);
    /// above 0, at most 1.
    #[serde(default = "default_cpu_warn")]
    pub cpu_warn: f64,
    /// The container's memory working set / its memory limit that warns. Default 0.90; above
    /// 0, at most 1.
    #[serde(default = "default_memory_warn")]
    pub memory_warn: f64,
    /// A restart or OOM kill of the container this recent warns. Default `15m`; 1m to 24h.
    #[serde(default = "default_restart_window", with = "duration")]
    pub restart_window: Duration,
}

impl PodKeys {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        ratio("kubernetes.cpu_warn", self.cpu_warn)?;
        ratio("kubernetes.memory_warn", self.memory_warn)?;
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.restart_window) {
            return Err(Invalid::new(
                "kubernetes.restart_window",
                format!(
                    "must be between 1m and 24h, got {}",
                    crate::core::fmt::duration(self.restart_window)
                ),
            ));
        }
        Ok(())
    }
}

fn default_restart_window() -> Duration {
    Duration::from_secs(15 * 60)
}
