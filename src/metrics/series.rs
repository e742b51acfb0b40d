//! The per-check run figures (`vigil_check_*`), kept compact and written straight to text, and
//! the families a check kind keeps the same way ([`TextFamily`], such as `vigil_upstream_*`).
//!
//! With the `prometheus` crate's labelled vectors every child series carries its own copy of
//! the metric's descriptor (name, help, label names) and its own label pairs: at 1,000
//! upstreams that was about 7 KiB per upstream for 13 series, and every scrape built 44,000
//! protobuf messages only to print them. Here a check's figures are a few plain numbers under
//! one lock (taken once per run and once per scrape), and a scrape writes them out directly in
//! the same text format and order of labels as the crate's encoder.

use std::any::Any;
use std::sync::{Arc, Mutex};

use super::text::{DurationHistogram, family, find_or_add, histogram, lock, sample};
use crate::core::outcome::Status;

/// One check's run figures: `vigil_check_runs_total` and `vigil_check_duration_seconds`.
#[derive(Debug)]
pub struct CheckSeries {
    name: Box<str>,
    figures: Mutex<CheckFigures>,
}

#[derive(Debug, Default, Clone)]
struct CheckFigures {
    /// By [`Status::ALL`] order.
    runs: [u64; 3],
    duration: DurationHistogram,
}

impl CheckSeries {
    fn new(name: &str) -> CheckSeries {
        CheckSeries {
            name: name.into(),
            figures: Mutex::default(),
        }
    }

    /// Records one finished run.
    pub fn observe_run(&self, status: Status, seconds: f64) {
        let mut figures = lock(&self.figures);
        figures.runs[status_index(status)] += 1;
        figures.duration.observe(seconds);
    }
}

/// Families a check kind keeps outside the registry and writes itself (one object for all the
/// checks of the kind, so that each family is written once with every check's series).
pub trait TextFamily: Send + Sync + Any {
    /// Appends the families to `out`; none without series.
    fn write_text(&self, out: &mut String);
    /// Forgets check `name`'s series: it is no longer configured.
    fn retire(&self, check: &str);
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// Every check's run figures, in the order they were added (the configuration's).
#[derive(Debug, Default)]
pub(crate) struct SeriesSet {
    checks: Mutex<Vec<Arc<CheckSeries>>>,
}

impl SeriesSet {
    /// The series of check `name`, created at 0 on the first call so that dashboards see
    /// every configured check before its first run ends.
    pub(crate) fn check(&self, name: &str) -> Arc<CheckSeries> {
        find_or_add(&self.checks, name, |s| &s.name, CheckSeries::new)
    }

    /// Forgets check `name`'s figures: it is no longer configured.
    pub(crate) fn remove_check(&self, name: &str) {
        lock(&self.checks).retain(|s| &*s.name != name);
    }

    /// Appends the families to `out` in the text exposition format. `statuses` are the checks'
    /// reported statuses right now (from the state, so that a scrape agrees with `/readyz`).
    /// A family without series is left out, as the crate's registry does.
    pub(crate) fn write_text(&self, statuses: &[(String, Option<Status>)], out: &mut String) {
        if !statuses.is_empty() {
            family(out, "vigil_check_status", CHECK_STATUS_HELP, "gauge");
            for (check, reported) in statuses {
                for status in Status::ALL {
                    let value = u8::from(*reported == Some(status));
                    sample(
                        out,
                        "vigil_check_status",
                        &[("check", check), ("status", status.as_str())],
                        value,
                    );
                }
            }
        }
        let checks = lock(&self.checks);
        // One copy per check, so that its runs and its duration count agree.
        let figures: Vec<(&str, CheckFigures)> = checks.iter().map(|s| (&*s.name, lock(&s.figures).clone())).collect();
        if !figures.is_empty() {
            family(out, "vigil_check_duration_seconds", CHECK_DURATION_HELP, "histogram");
            for (name, f) in &figures {
                histogram(out, "vigil_check_duration_seconds", ("check", name), &f.duration);
            }
            family(out, "vigil_check_runs_total", CHECK_RUNS_HELP, "counter");
            for (name, f) in &figures {
                for (status, count) in Status::ALL.iter().zip(f.runs) {
                    sample(
                        out,
                        "vigil_check_runs_total",
                        &[("check", name), ("result", status.as_str())],
                        count,
                    );
                }
            }
        }
    }
}

const CHECK_STATUS_HELP: &str = "1 for the status the check reports now, 0 for the others.";
const CHECK_DURATION_HELP: &str = "Duration of check runs, including runs cut at their timeout.";
const CHECK_RUNS_HELP: &str = "Check runs by raw result.";

fn status_index(status: Status) -> usize {
    match status {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_inf() {
        let set = SeriesSet::default();
        let series = set.check("db");
        series.observe_run(Status::Pass, 0.003);
        series.observe_run(Status::Fail, 20.0);
        let mut out = String::new();
        set.write_text(&[], &mut out);
        assert!(
            out.contains("vigil_check_duration_seconds_bucket{check=\"db\",le=\"0.0025\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("vigil_check_duration_seconds_bucket{check=\"db\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("vigil_check_duration_seconds_bucket{check=\"db\",le=\"10\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("vigil_check_duration_seconds_bucket{check=\"db\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("vigil_check_duration_seconds_count{check=\"db\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("vigil_check_runs_total{check=\"db\",result=\"fail\"} 1\n"),
            "{out}"
        );
        assert!(
            !out.contains("vigil_upstream"),
            "no upstream families without upstreams: {out}"
        );
    }
}
