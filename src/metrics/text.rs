//! The Prometheus text exposition, written by hand for the series kept outside the registry:
//! a family's header, a sample, a histogram, label values escaped as the format asks. The
//! crate's encoder writes the registry; these write the rest in the same text and label order.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::DURATION_BUCKETS;

/// Counts of observations per [`DURATION_BUCKETS`] bucket (not cumulative), plus their count
/// and sum.
#[derive(Debug, Clone, Default)]
pub(crate) struct DurationHistogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl DurationHistogram {
    pub(crate) fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = DURATION_BUCKETS.iter().position(|upper| seconds <= *upper) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

pub(crate) fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    // Help texts are constants without backslashes or newlines: nothing to escape.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line. Values print as the crate's encoder prints them (`f64`'s `Display`, so
/// `1` rather than `1.0`); integers are exact.
pub(crate) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    write_labels(out, labels, None);
    let _ = writeln!(out, " {value}");
}

pub(crate) fn histogram(out: &mut String, name: &str, label: (&str, &str), h: &DurationHistogram) {
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
pub(crate) fn find_or_add<T>(
    list: &Mutex<Vec<Arc<T>>>,
    name: &str,
    name_of: fn(&T) -> &str,
    new: fn(&str) -> T,
) -> Arc<T> {
    let mut list = lock(list);
    if let Some(series) = list.iter().find(|s| name_of(s) == name) {
        return Arc::clone(series);
    }
    let series = Arc::new(new(name));
    list.push(Arc::clone(&series));
    series
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The figures stay consistent whatever panicked while holding the lock: plain numbers.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
