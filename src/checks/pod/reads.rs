//! The `pod` check's reads of the metrics API (`metrics.k8s.io`, what `kubectl top` reads), and
//! what an answer means.
//!
//! - At most one read per `kubernetes.metrics_interval` (15 s by default, metrics-server's usual
//!   resolution), whatever the check's `interval`: a run in between (a short interval, a run
//!   woken by the watch) reuses the last answer. The time of a read is taken when it is sent, so
//!   a read cut by the run's timeout counts too.
//! - metrics-server answers 404 for a pod it has no figures for yet: until its pod lister knows
//!   the pod (the lister's Status names the pod alone) and until each container has been scraped
//!   twice (its Status names it `<namespace>/<pod>`: metrics-server pkg/api/pod.go, `Get`). Both
//!   are "no figures yet", never a problem: every rollout would warn otherwise. A 404 naming
//!   nothing is the API server's own: no metrics API is served (metrics-server not installed).
//! - A routine failure (the aggregator's 503 while metrics-server rolls, a timeout, a cut: see
//!   `ApiError::is_routine`) keeps the last figures and is shown only once reads have failed for
//!   longer than the grace the watches have (`kube::store::GRACE`); 401, 403 and a missing
//!   metrics API wait for a person and are shown at once.

use std::time::Duration;

use tokio::time::Instant;

use super::assess::Usage;
use crate::config::Kubernetes;
use crate::kube::Cluster;
use crate::kube::client::{self, ApiError, SMALL_LIMIT};
use crate::kube::objects::PodMetrics;
use crate::kube::store::GRACE;

/// The reads of one `pod` check; see the module docs.
#[derive(Debug)]
pub(crate) struct MetricsReads {
    interval: Duration,
    /// When the last read was sent.
    asked: Option<Instant>,
    /// What the last read came to.
    last: Option<Usage>,
    /// The last figures read, kept through routine failures within the grace.
    figures: Option<PodMetrics>,
    /// Since when reads have failed routinely.
    failing_since: Option<Instant>,
}

impl MetricsReads {
    pub(crate) fn new(interval: Duration) -> MetricsReads {
        MetricsReads {
            interval,
            asked: None,
            last: None,
            figures: None,
            failing_since: None,
        }
    }

    /// The metrics API's answer: read now if the last read is at least `metrics_interval` old,
    /// else the last answer.
    pub(crate) async fn usage(&mut self, cluster: &Cluster, deadline: Instant) -> Usage {
        if let Some(asked) = self.asked
            && asked.elapsed() < self.interval
        {
            return self.last.clone().unwrap_or(Usage::NotYet);
        }
        self.asked = Some(Instant::now());
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        let answer = client::within(
            left,
            cluster
                .client
                .get_json::<PodMetrics>(&cluster.metrics_path(), SMALL_LIMIT),
        )
        .await;
        let usage = self.judge(answer, &cluster.config, Instant::now());
        self.last = Some(usage.clone());
        usage
    }

    fn judge(&mut self, answer: Result<PodMetrics, ApiError>, config: &Kubernetes, now: Instant) -> Usage {
        let error = match answer {
            Ok(figures) => {
                self.failing_since = None;
                self.figures = Some(figures.clone());
                return Usage::Figures(figures);
            }
            Err(error) if no_figures_yet(&error, config) => {
                self.failing_since = None;
                self.figures = None;
                return Usage::NotYet;
            }
            Err(error) => error,
        };
        let mut problem = error.problem("get", "pods/metrics", &config.namespace);
        if error.code() == Some(404) {
            problem
                .reason
                .push_str(" (is metrics-server installed? kubectl top pod needs it too)");
        }
        if error.is_routine() {
            let since = *self.failing_since.get_or_insert(now);
            if now.duration_since(since) <= GRACE {
                return self.figures.clone().map_or(Usage::NotYet, Usage::Figures);
            }
        }
        Usage::Failed(problem)
    }
}

/// Whether a 404 is metrics-server's "no figures for this pod yet" (see the module docs).
fn no_figures_yet(error: &ApiError, config: &Kubernetes) -> bool {
    let ApiError::Status { code: 404, status, .. } = error else {
        return false;
    };
    let Some(details) = &status.details else {
        return false;
    };
    let qualified = format!("{}/{}", config.namespace, config.pod);
    let named = details.name.as_deref();
    (named == Some(config.pod.as_str()) || named == Some(qualified.as_str()))
        && details.kind.as_deref().is_none_or(|kind| kind == "pods")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::url::HttpUrl;
    use crate::kube::objects::{Status, StatusDetails};

    fn config() -> Kubernetes {
        Kubernetes {
            api_url: HttpUrl::parse("https://10.96.0.1:443").unwrap(),
            token_file: "/t".into(),
            ca_file: "/c".into(),
            namespace: "api-gateway".to_owned(),
            pod: "gw-1".to_owned(),
            container: None,
            service: None,
            metrics_interval: Duration::from_secs(15),
            events: true,
        }
    }

    fn status(code: u16, name: Option<&str>, group: Option<&str>) -> ApiError {
        ApiError::Status {
            code,
            status: Box::new(Status {
                code: Some(code),
                details: Some(StatusDetails {
                    name: name.map(str::to_owned),
                    group: group.map(str::to_owned),
                    kind: name.map(|_| "pods".to_owned()),
                    retry_after_seconds: None,
                }),
                ..Status::default()
            }),
            retry_after: None,
        }
    }

    fn figures() -> PodMetrics {
        PodMetrics {
            timestamp: Some("2026-12-01T12:00:00Z".to_owned()),
            ..PodMetrics::default()
        }
    }

    #[test]
    fn metrics_servers_404_for_a_pod_is_no_figures_yet_and_one_naming_nothing_is_a_problem() {
        let mut reads = MetricsReads::new(Duration::from_secs(15));
        let now = Instant::now();
        for (name, group) in [(Some("api-gateway/gw-1"), Some("metrics.k8s.io")), (Some("gw-1"), None)] {
            let usage = reads.judge(Err(status(404, name, group)), &config(), now);
            assert!(matches!(usage, Usage::NotYet), "{name:?}: {usage:?}");
        }
        let other = reads.judge(Err(status(404, Some("other/gw-1"), None)), &config(), now);
        assert!(matches!(other, Usage::Failed(_)), "{other:?}");
        match reads.judge(Err(status(404, None, None)), &config(), now) {
            Usage::Failed(problem) => assert!(
                problem
                    .reason
                    .ends_with("(is metrics-server installed? kubectl top pod needs it too)"),
                "{}",
                problem.reason
            ),
            usage => panic!("{usage:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn routine_failures_keep_the_last_figures_for_the_grace_and_a_403_shows_at_once() {
        let mut reads = MetricsReads::new(Duration::from_secs(15));
        let start = Instant::now();
        assert!(matches!(
            reads.judge(Ok(figures()), &config(), start),
            Usage::Figures(_)
        ));
        let kept = reads.judge(Err(status(503, None, None)), &config(), start + Duration::from_secs(15));
        assert!(
            matches!(kept, Usage::Figures(f) if f == figures()),
            "the last figures are kept"
        );
        let still = reads.judge(Err(status(503, None, None)), &config(), start + Duration::from_secs(75));
        assert!(
            matches!(still, Usage::Figures(_)),
            "60 s of failures: still within the grace"
        );
        let shown = reads.judge(Err(status(503, None, None)), &config(), start + Duration::from_secs(90));
        assert!(matches!(shown, Usage::Failed(_)), "{shown:?}");

        let mut reads = MetricsReads::new(Duration::from_secs(15));
        reads.judge(Ok(figures()), &config(), start);
        match reads.judge(Err(status(403, None, None)), &config(), start) {
            Usage::Failed(problem) => assert!(problem.reason.contains("forbidden"), "{}", problem.reason),
            usage => panic!("{usage:?}"),
        }
    }
}
