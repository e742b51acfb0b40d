//! The upstreams' figures: `vigil_upstream_*`, one set of plain numbers per upstream, written
//! straight to text (see `metrics::series` for why), in one family per figure for all the
//! upstreams.

use std::any::Any;
use std::sync::{Arc, Mutex};

use crate::metrics::series::TextFamily;
use crate::metrics::text::{DurationHistogram, family, find_or_add, histogram, lock, sample};
use crate::net::grpc::GRPC_SERVING_STATUSES;

/// One upstream's figures: `vigil_upstream_up`, `_status_code`, `_phase_duration_seconds` and
/// `_request_duration_seconds`.
#[derive(Debug)]
pub(crate) struct UpstreamSeries {
    name: Box<str>,
    figures: Mutex<UpstreamFigures>,
}

/// What an upstream run sets; see [`UpstreamSeries::update`].
#[derive(Debug, Clone, Default)]
pub(crate) struct UpstreamFigures {
    pub up: bool,
    /// 0: no answer.
    pub status_code: u16,
    /// The last run's phases in [`PHASES`] order; 0 for a phase that did not happen.
    pub phases: [f64; 4],
    pub request_duration: DurationHistogram,
    /// Addresses the name resolved to at the last run (0: not resolved).
    pub addresses: usize,
    /// gRPC upstreams only (`None` for the others): which of [`GRPC_SERVING_STATUSES`] the last
    /// answer set (all false: a gRPC error or no answer).
    pub grpc_serving_status: Option<[bool; 4]>,
}

/// The `phase` label values of `vigil_upstream_phase_duration_seconds`, in order.
pub(crate) const PHASES: [&str; 4] = ["dns", "connect", "tls", "first_byte"];

impl UpstreamSeries {
    fn new(name: &str) -> UpstreamSeries {
        UpstreamSeries {
            name: name.into(),
            figures: Mutex::default(),
        }
    }

    /// Changes the figures under the lock; a scrape sees all of one run's changes or none.
    pub(crate) fn update(&self, change: impl FnOnce(&mut UpstreamFigures)) {
        change(&mut lock(&self.figures));
    }

    /// A copy of the current figures.
    pub(crate) fn figures(&self) -> UpstreamFigures {
        lock(&self.figures).clone()
    }
}

/// Every upstream's series, in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct UpstreamFamilies {
    upstreams: Mutex<Vec<Arc<UpstreamSeries>>>,
}

impl UpstreamFamilies {
    /// The series of upstream `name` (the `upstream` label), created at 0 on the first call.
    pub(crate) fn upstream(&self, name: &str) -> Arc<UpstreamSeries> {
        find_or_add(&self.upstreams, name, |s| &s.name, UpstreamSeries::new)
    }
}

impl TextFamily for UpstreamFamilies {
    fn write_text(&self, out: &mut String) {
        self.write_upstreams(out);
    }

    fn retire(&self, check: &str) {
        if let Some(name) = check.strip_prefix("upstream:") {
            lock(&self.upstreams).retain(|s| &*s.name != name);
        }
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl UpstreamFamilies {
    /// The `vigil_upstream_*` families.
    fn write_upstreams(&self, out: &mut String) {
        let upstreams = lock(&self.upstreams);
        if upstreams.is_empty() {
            return;
        }
        // One copy per upstream, so that each family below reads one consistent run.
        let figures: Vec<(&str, UpstreamFigures)> = upstreams.iter().map(|s| (&*s.name, s.figures())).collect();
        family(
            out,
            "vigil_upstream_phase_duration_seconds",
            UPSTREAM_PHASE_HELP,
            "gauge",
        );
        for (name, f) in &figures {
            for (phase, seconds) in PHASES.iter().zip(f.phases) {
                sample(
                    out,
                    "vigil_upstream_phase_duration_seconds",
                    &[("phase", phase), ("upstream", name)],
                    seconds,
                );
            }
        }
        family(
            out,
            "vigil_upstream_request_duration_seconds",
            UPSTREAM_DURATION_HELP,
            "histogram",
        );
        for (name, f) in &figures {
            histogram(
                out,
                "vigil_upstream_request_duration_seconds",
                ("upstream", name),
                &f.request_duration,
            );
        }
        family(out, "vigil_upstream_status_code", UPSTREAM_STATUS_HELP, "gauge");
        for (name, f) in &figures {
            sample(out, "vigil_upstream_status_code", &[("upstream", name)], f.status_code);
        }
        family(out, "vigil_upstream_up", UPSTREAM_UP_HELP, "gauge");
        for (name, f) in &figures {
            sample(out, "vigil_upstream_up", &[("upstream", name)], u8::from(f.up));
        }
        family(out, "vigil_upstream_addresses", UPSTREAM_ADDRESSES_HELP, "gauge");
        for (name, f) in &figures {
            sample(out, "vigil_upstream_addresses", &[("upstream", name)], f.addresses);
        }
        let grpc: Vec<(&str, [bool; 4])> = figures
            .iter()
            .filter_map(|(name, f)| f.grpc_serving_status.map(|flags| (*name, flags)))
            .collect();
        if !grpc.is_empty() {
            family(out, "vigil_upstream_grpc_serving_status", UPSTREAM_GRPC_HELP, "gauge");
            for (name, flags) in &grpc {
                for (status, set) in GRPC_SERVING_STATUSES.iter().zip(flags) {
                    sample(
                        out,
                        "vigil_upstream_grpc_serving_status",
                        &[("status", status), ("upstream", name)],
                        u8::from(*set),
                    );
                }
            }
        }
    }
}

const UPSTREAM_ADDRESSES_HELP: &str = "Addresses the upstream's name resolved to at the last run (0: not resolved).";
const UPSTREAM_GRPC_HELP: &str =
    "1 for the serving status of the last gRPC health answer, 0 for the others (all 0: a gRPC error or no answer).";
const UPSTREAM_UP_HELP: &str = "1 when the last request to the upstream got an expected status.";
const UPSTREAM_DURATION_HELP: &str = "Total duration of upstream requests (DNS to the end of the capped body).";
const UPSTREAM_PHASE_HELP: &str = "Duration of each phase of the last upstream request.";
const UPSTREAM_STATUS_HELP: &str = "HTTP status of the last upstream answer (0: none).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let set = UpstreamFamilies::default();
        set.upstream("a\"b\\c\nd").update(|f| f.up = true);
        let mut out = String::new();
        set.write_text(&mut out);
        assert!(
            out.contains("vigil_upstream_up{upstream=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn a_name_asked_twice_is_one_series() {
        let set = UpstreamFamilies::default();
        set.upstream("x").update(|f| f.status_code = 204);
        assert_eq!(set.upstream("x").figures().status_code, 204);
        let mut out = String::new();
        set.write_text(&mut out);
        assert_eq!(out.matches("vigil_upstream_status_code{").count(), 1, "{out}");
    }
}
