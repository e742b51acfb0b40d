//! The per-check and per-upstream series, kept compact and written straight to text.
//!
//! With the `prometheus` crate's labelled vectors every child series carries its own copy of
//! the metric's descriptor (name, help, label names) and its own label pairs: at 1,000
//! upstreams that was about 7 KiB per upstream for 13 series, and every scrape built 44,000
//! protobuf messages only to print them. Here a check's figures are a few plain numbers under
//! one lock (taken once per run and once per scrape), and a scrape writes them out directly in
//! the same text format and order of labels as the crate's encoder.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::outcome::Status;

use super::DURATION_BUCKETS;

/// Counts of observations per [`DURATION_BUCKETS`] bucket (not cumulative), plus their count
/// and sum.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl DurationHistogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = DURATION_BUCKETS.iter().position(|upper| seconds <= *upper) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

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

/// One upstream's figures: `vigil_upstream_up`, `_status_code`, `_phase_duration_seconds` and
/// `_request_duration_seconds`.
#[derive(Debug)]
pub struct UpstreamSeries {
    name: Box<str>,
    figures: Mutex<UpstreamFigures>,
}

/// What an upstream run sets; see [`UpstreamSeries::update`].
#[derive(Debug, Clone, Default)]
pub struct UpstreamFigures {
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

/// The `status` label values of `vigil_upstream_grpc_serving_status`: the names of
/// `grpc.health.v1.HealthCheckResponse.ServingStatus`, in the order of their numbers.
pub const GRPC_SERVING_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// The `phase` label values of `vigil_upstream_phase_duration_seconds`, in order.
pub const PHASES: [&str; 4] = ["dns", "connect", "tls", "first_byte"];

impl UpstreamSeries {
    fn new(name: &str) -> UpstreamSeries {
        UpstreamSeries {
            name: name.into(),
            figures: Mutex::default(),
        }
    }

    /// Changes the figures under the lock; a scrape sees all of one run's changes or none.
    pub fn update(&self, change: impl FnOnce(&mut UpstreamFigures)) {
        change(&mut lock(&self.figures));
    }

    /// A copy of the current figures.
    pub fn figures(&self) -> UpstreamFigures {
        lock(&self.figures).clone()
    }
}

/// Every check's and upstream's series, in the order they were added (the configuration's).
#[derive(Debug, Default)]
pub struct SeriesSet {
    checks: Mutex<Vec<Arc<CheckSeries>>>,
    upstreams: Mutex<Vec<Arc<UpstreamSeries>>>,
}

impl SeriesSet {
    /// The series of check `name`, created at 0 on the first call so that dashboards see
    /// every configured check before its first run ends.
    pub fn check(&self, name: &str) -> Arc<CheckSeries> {
        find_or_add(&self.checks, name, |s| &s.name, CheckSeries::new)
    }

    /// The series of upstream `name` (the `upstream` label), created at 0 on the first call.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamSeries> {
        find_or_add(&self.upstreams, name, |s| &s.name, UpstreamSeries::new)
    }

    /// Forgets check `name`'s figures: it is no longer configured.
    pub fn remove_check(&self, name: &str) {
        lock(&self.checks).retain(|s| &*s.name != name);
    }

    /// Forgets upstream `name`'s figures.
    pub fn remove_upstream(&self, name: &str) {
        lock(&self.upstreams).retain(|s| &*s.name != name);
    }

    /// Appends the families to `out` in the text exposition format. `statuses` are the checks'
    /// reported statuses right now (from the state, so that a scrape agrees with `/readyz`).
    /// A family without series is left out, as the crate's registry does.
    pub fn write_text(&self, statuses: &[(String, Option<Status>)], out: &mut String) {
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
        drop(figures);
        drop(checks);
        self.write_upstreams(out);
    }

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

const CHECK_STATUS_HELP: &str = "1 for the status the check reports now, 0 for the others.";
const CHECK_DURATION_HELP: &str = "Duration of check runs, including runs cut at their timeout.";
const CHECK_RUNS_HELP: &str = "Check runs by raw result.";
const UPSTREAM_ADDRESSES_HELP: &str = "Addresses the upstream's name resolved to at the last run (0: not resolved).";
const UPSTREAM_GRPC_HELP: &str =
    "1 for the serving status of the last gRPC health answer, 0 for the others (all 0: a gRPC error or no answer).";
const UPSTREAM_UP_HELP: &str = "1 when the last request to the upstream got an expected status.";
const UPSTREAM_DURATION_HELP: &str = "Total duration of upstream requests (DNS to the end of the capped body).";
const UPSTREAM_PHASE_HELP: &str = "Duration of each phase of the last upstream request.";
const UPSTREAM_STATUS_HELP: &str = "HTTP status of the last upstream answer (0: none).";

fn status_index(status: Status) -> usize {
    match status {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    // Help texts are constants without backslashes or newlines: nothing to escape.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line. Values print as the crate's encoder prints them (`f64`'s `Display`, so
/// `1` rather than `1.0`); integers are exact.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    write_labels(out, labels, None);
    let _ = writeln!(out, " {value}");
}

fn histogram(out: &mut String, name: &str, label: (&str, &str), h: &DurationHistogram) {
    let mut cumulative = 0;
    for (upper, count) in DURATION_BUCKETS.iter().zip(h.buckets) {
        cumulative += count;
        out.push_str(name);
        out.push_str("_bucket");
        write_labels(out, &[label], Some(&upper.to_string()));
        let _ = writeln!(out, " {cumulative}");
    }
    out.push_str(name);
    out.push_str("_bucket");
    write_labels(out, &[label], Some("+Inf"));
    let _ = writeln!(out, " {}", h.count);
    out.push_str(name);
    out.push_str("_sum");
    write_labels(out, &[label], None);
    let _ = writeln!(out, " {}", h.sum);
    out.push_str(name);
    out.push_str("_count");
    write_labels(out, &[label], None);
    let _ = writeln!(out, " {}", h.count);
}

/// `{a="x",b="y"}` with values escaped as the text format asks (`\\`, `\"`, `\n`); `le` last.
fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    let mut separator = '{';
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        out.push(separator);
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        separator = ',';
    }
    out.push('}');
}

/// The series named `name` in `list`, added by `new` if it is not there yet.
fn find_or_add<T>(list: &Mutex<Vec<Arc<T>>>, name: &str, name_of: fn(&T) -> &str, new: fn(&str) -> T) -> Arc<T> {
    let mut list = lock(list);
    if let Some(series) = list.iter().find(|s| name_of(s) == name) {
        return Arc::clone(series);
    }
    let series = Arc::new(new(name));
    list.push(Arc::clone(&series));
    series
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The figures stay consistent whatever panicked while holding the lock: plain numbers.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

    #[test]
    fn label_values_are_escaped() {
        let set = SeriesSet::default();
        set.upstream("a\"b\\c\nd").update(|f| f.up = true);
        let mut out = String::new();
        set.write_text(&[], &mut out);
        assert!(
            out.contains("vigil_upstream_up{upstream=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn a_name_asked_twice_is_one_series() {
        let set = SeriesSet::default();
        set.upstream("x").update(|f| f.status_code = 204);
        assert_eq!(set.upstream("x").figures().status_code, 204);
        let mut out = String::new();
        set.write_text(&[], &mut out);
        assert_eq!(out.matches("vigil_upstream_status_code{").count(), 1, "{out}");
    }
}
