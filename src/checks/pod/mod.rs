//! The `pod` check (with `[kubernetes]`): the runbook's `kubectl top pods`, `kubectl describe
//! pod` and `kubectl get endpoints`, already answered for the gateway container.
//!
//! The pod and the Service's EndpointSlices come from the watches of `kube::watch`, which ring
//! this check's wake on every change (so a restart is reported within one event, not one
//! interval); a run reads their last view and the metrics API's answer, read at most once per
//! `metrics_interval` ([`reads`]). What it concludes is [`assess`]'s. API failures are warns,
//! never fails: an API server outage must not empty the Service.

pub(crate) mod assess;
pub(crate) mod config;
pub(crate) mod metrics;
pub(crate) mod reads;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use self::assess::{Exported, Inputs};
use self::config::PodKeys;
use self::metrics::{ENDPOINT_CONDITIONS, KubernetesMetrics};
use self::reads::MetricsReads;
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled, Wake};
use crate::config::{CheckSettings, Invalid, Scope};
use crate::core::outcome::Outcome;
use crate::kube::Cluster;
use crate::net::attempt::inner_deadline;

/// Reads the cluster's views and the metrics API; see the module docs.
pub(crate) struct PodCheck {
    cluster: Arc<Cluster>,
    keys: PodKeys,
    metrics: KubernetesMetrics,
    timeout: Duration,
    /// The metrics API's reads.
    reads: MetricsReads,
    /// The restart count last exported and for which container (the counter rises by the
    /// difference).
    restarts: Option<(String, u32)>,
    /// The last termination reason exported, whose series is replaced by a new one.
    termination: Option<(String, String)>,
}

/// The `pod` kind: with `[kubernetes]`, the check named `pod` (its thresholds and timing are
/// the keys of the table that are not the cluster's); not critical, local by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = PodKeys;
    type Section = PodKeys;
    const TABLE: &'static str = "kubernetes";
    const CRITICAL: bool = false;
    const SCOPE: Scope = Scope::Local;

    fn name(_section: &PodKeys) -> String {
        "pod".to_owned()
    }

    fn resolve(keys: PodKeys, _at: &str, _settings: &CheckSettings) -> Result<PodKeys, Invalid> {
        keys.validate()?;
        Ok(keys)
    }

    fn build(
        section: &PodKeys,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        let cluster = cx
            .cluster
            .ok_or_else(|| BuildError::new(name, "[kubernetes] was not set up at start"))?;
        Ok(Scheduled::new(
            name,
            *settings,
            PodCheck {
                cluster: Arc::clone(cluster),
                keys: section.clone(),
                metrics: KubernetesMetrics::register(cx.metrics, name).map_err(|e| BuildError::new(name, e))?,
                timeout: settings.timeout,
                reads: MetricsReads::new(cluster.config.metrics_interval),
                restarts: None,
                termination: None,
            },
        ))
    }
}

impl Check for PodCheck {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(self.run_once())
    }

    fn wake(&self) -> Option<Wake> {
        Some(self.cluster.wake.clone())
    }
}

impl PodCheck {
    async fn run_once(&mut self) -> Outcome {
        let deadline = Instant::now() + inner_deadline(self.timeout);
        // The first run waits (within its timeout) for the watch's first list.
        let _ = tokio::time::timeout_at(deadline, self.cluster.pod.settled()).await;
        let usage = self.reads.usage(&self.cluster, deadline).await;
        let pod = self.cluster.pod.view();
        let slices = self.cluster.slices.as_ref().map(|s| s.view());
        let (report, exported) = assess::assess(&Inputs {
            config: &self.cluster.config,
            keys: &self.keys,
            pod: &pod,
            slices: slices.as_ref(),
            usage: &usage,
            events: self.cluster.event_stats().and_then(|s| s.problem()),
            now: SystemTime::now(),
        });
        self.export(&exported);
        let mut report = report;
        if let Some(stats) = self.cluster.event_stats() {
            report.detail("events", stats.to_json());
        }
        report.into_outcome()
    }

    fn export(&mut self, exported: &Exported) {
        let metrics = &self.metrics;
        metrics.api_up.set(i64::from(exported.api_up));
        if let Some(container) = &exported.container {
            let label = [container.as_str()];
            if let Some(ready) = exported.ready {
                metrics.container_ready.with_label_values(&label).set(i64::from(ready));
            }
            if let Some(count) = exported.restarts {
                let counter = metrics.container_restarts_total.with_label_values(&label);
                let (rise, highest) = match &self.restarts {
                    Some((seen, before)) if seen == container => (count.saturating_sub(*before), count.max(*before)),
                    _ => (count, count),
                };
                counter.inc_by(u64::from(rise));
                self.restarts = Some((container.clone(), highest));
            }
            if let Some(reason) = &exported.last_termination {
                let now = (container.clone(), reason.clone());
                if let Some((c, r)) = self.termination.as_ref().filter(|t| **t != now) {
                    let _ = metrics.container_last_termination_info.remove_label_values(&[c, r]);
                }
                metrics
                    .container_last_termination_info
                    .with_label_values(&[container, reason])
                    .set(1);
                self.termination = Some(now);
            }
            for (gauge, value) in [
                (&metrics.container_cpu_usage_cores, exported.cpu_usage),
                (&metrics.container_cpu_limit_cores, exported.cpu_limit),
                (&metrics.container_memory_usage_bytes, exported.memory_usage),
                (&metrics.container_memory_limit_bytes, exported.memory_limit),
            ] {
                match value {
                    Some(value) => gauge.with_label_values(&label).set(value),
                    None => {
                        let _ = gauge.remove_label_values(&label);
                    }
                }
            }
        }
        if let (Some(service), Some((ready, serving, terminating))) = (&self.cluster.config.service, exported.endpoints)
        {
            for (condition, count) in ENDPOINT_CONDITIONS.iter().zip([ready, serving, terminating]) {
                metrics
                    .service_endpoints
                    .with_label_values(&[service.as_str(), condition])
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }
}
