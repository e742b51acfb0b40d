//! Kubernetes Events for status changes of the checks (events.k8s.io/v1), on this pod, so that
//! `kubectl describe pod` tells the incident's story beside the kubelet's own events.
//!
//! The scheduler offers every change ([`EventSink::offer`]: a `try_send` on a bounded queue; a
//! full queue drops the change and counts it), so posting never delays a check. One task
//! ([`Poster::run`]) writes them, each request cut at [`WRITE_TIMEOUT`]:
//! - fail and warn are `Warning` Events (`CheckFailed`, `CheckWarning`), a recovery to pass is a
//!   `Normal` one (`CheckRecovered`); the first result after start is an Event only when it is
//!   not a pass; the note reads `postgres failed: connection refused`, cut to the API's 1 KiB;
//! - a check writes at most once a minute ([`PER_CHECK`]): a change within the minute waits
//!   for its end (a later change of the same check replaces it; repeats of the same one are
//!   counted), so a flapping check makes one write a minute, not one a run;
//! - a change the same as one already posted (same type, reason and note) is added to that
//!   Event's `series` (a merge PATCH of `count` and `lastObservedTime`) instead of a new Event,
//!   for as long as the Event lives: the API server deletes an Event `--event-ttl` (1 h) after
//!   its last write, each write starting the hour again (pkg/registry/core/event/storage,
//!   `TTLFunc`), so a series written at least hourly is patched for as long as it goes on;
//! - every Event names the pod by its `uid` as well (`kubectl describe pod` lists only the Events
//!   whose `regarding.uid` is the pod's): a change that comes before the pod's watch has listed
//!   it waits, in the same one-per-check slot, until the uid is known;
//! - `reportingInstance` is the pod's name cut to the API's 128 bytes (`ValidateEventCreate`),
//!   so that a long pod name does not make every Event a 422;
//! - a write that fails for a routine reason (an API server rolling, 429, 5xx) is tried again at
//!   the end of the check's minute, and shown as a problem of the `pod` check only once writes
//!   have failed for longer than a minute; one refused for good (403, 422) is shown at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::Method;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{self, ApiClient, ApiError};
use super::objects::Pod;
use super::store::{GRACE, Store};
use crate::core::outcome::Finding;
use crate::core::outcome::Status;

/// Changes waiting to be written; past this, changes are dropped (and counted).
pub(crate) const QUEUE: usize = 64;
/// The least time between two writes (a new Event or a series update) for one check.
pub(crate) const PER_CHECK: Duration = Duration::from_secs(60);
/// The API's limit on `note`, in bytes.
pub(crate) const NOTE_LIMIT: usize = 1024;
/// The API's limit on `reportingInstance`, in bytes.
pub(crate) const INSTANCE_LIMIT: usize = 128;
/// How long one write may take.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after its last write an Event is still patched: the API server deletes it
/// `--event-ttl` (1 h by default) after its last write; five minutes are left for clocks and
/// queues. A patch that finds it gone (404) makes a new Event.
const EVENT_KEPT: Duration = Duration::from_secs(55 * 60);
/// Events remembered per check for series updates.
const REMEMBERED: usize = 16;

/// `reportingController`.
pub(crate) const CONTROLLER: &str = "vigil";
/// `action`: what vigil was doing when it saw the change.
pub(crate) const ACTION: &str = "Probe";

/// A status change of a check, as the scheduler logged it.
#[derive(Debug, Clone)]
pub struct Change {
    pub check: String,
    pub from: Option<Status>,
    pub to: Status,
    pub reason: String,
    pub at: SystemTime,
}

/// What the Events did, for `/diag` and the `pod` check.
#[derive(Debug, Default)]
pub struct EventStats {
    pub created: AtomicU64,
    pub updated: AtomicU64,
    pub failed: AtomicU64,
    /// Offered while the queue was full.
    pub dropped: AtomicU64,
    /// Waiting changes replaced by a later one of the same check within its minute.
    pub folded: AtomicU64,
    /// The last write's failure, until a write works again.
    problem: Mutex<Option<Finding>>,
}

impl EventStats {
    pub fn problem(&self) -> Option<Finding> {
        self.problem.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_problem(&self, problem: Option<Finding>) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }

    /// The counts, for `/diag`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "created": self.created.load(Ordering::Relaxed),
            "series_updates": self.updated.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "folded": self.folded.load(Ordering::Relaxed),
        })
    }
}

/// Where the scheduler offers changes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    queue: mpsc::Sender<Change>,
    stats: Arc<EventStats>,
}

impl EventSink {
    /// Queues `change` without waiting; a full queue drops it.
    pub fn offer(&self, change: Change) {
        if self.queue.try_send(change).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The queue's two ends and the shared counts.
pub(crate) fn channel() -> (EventSink, mpsc::Receiver<Change>, Arc<EventStats>) {
    let (queue, receiver) = mpsc::channel(QUEUE);
    let stats = Arc::new(EventStats::default());
    let sink = EventSink {
        queue,
        stats: Arc::clone(&stats),
    };
    (sink, receiver, stats)
}

/// What makes two Events the same: type, reason, note.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    reason: &'static str,
    note: String,
}

/// The Event a change becomes, if any.
fn key_of(change: &Change) -> Option<Key> {
    let (kind, reason, note) = match (change.from, change.to) {
        (_, Status::Fail) => (
            "Warning",
            "CheckFailed",
            format!("{} failed: {}", change.check, change.reason),
        ),
        (_, Status::Warn) => (
            "Warning",
            "CheckWarning",
            format!("{} warn: {}", change.check, change.reason),
        ),
        (Some(from @ (Status::Fail | Status::Warn)), Status::Pass) => (
            "Normal",
            "CheckRecovered",
            format!(
                "{} recovered (was {})",
                change.check,
                if from == Status::Fail { "failed" } else { "warn" }
            ),
        ),
        (_, Status::Pass) => return None,
    };
    Some(Key {
        kind,
        reason,
        note: bounded_note(note),
    })
}

/// `note` cut to [`NOTE_LIMIT`] bytes at a character boundary, an ellipsis saying so.
fn bounded_note(note: String) -> String {
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut cut = cut_bytes(&note, NOTE_LIMIT - '…'.len_utf8()).to_owned();
    cut.push('…');
    cut
}

/// The longest start of `text` of at most `limit` bytes that ends at a character boundary.
fn cut_bytes(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An Event written, for series updates.
#[derive(Debug)]
struct Written {
    key: Key,
    name: String,
    count: u32,
    /// Its last write (the create or the last series update): the server's TTL runs from there.
    written: Instant,
}

impl Written {
    fn alive(&self) -> bool {
        self.written.elapsed() < EVENT_KEPT
    }
}

#[derive(Debug, Default)]
struct CheckEvents {
    last_write: Option<Instant>,
    written: VecDeque<Written>,
    /// A change waiting for the end of the check's minute: its key, how often it happened, last when.
    pending: Option<(Key, u32, SystemTime)>,
}

impl CheckEvents {
    /// When the waiting change may be written (`now` if the check never wrote).
    fn due(&self, now: Instant) -> Option<Instant> {
        self.pending.as_ref()?;
        Some(self.last_write.map_or(now, |at| at + PER_CHECK))
    }
}

/// Writes the Events; see the module docs.
pub(crate) struct Poster {
    client: Arc<ApiClient>,
    namespace: String,
    pod: String,
    /// The watched pod, for its uid.
    pod_view: Arc<Store<Pod>>,
    stats: Arc<EventStats>,
    checks: HashMap<String, CheckEvents>,
    /// Since when writes have failed routinely (an API server rolling, 429, 5xx).
    failing_since: Option<Instant>,
}

impl Poster {
    pub(crate) fn new(
        client: Arc<ApiClient>,
        namespace: &str,
        pod: &str,
        pod_view: Arc<Store<Pod>>,
        stats: Arc<EventStats>,
    ) -> Poster {
        Poster {
            client,
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            pod_view,
            stats,
            checks: HashMap::new(),
            failing_since: None,
        }
    }

    /// Takes changes from `queue` until it closes.
    pub(crate) async fn run(mut self, mut queue: mpsc::Receiver<Change>) {
        loop {
            let known = self.uid().is_some();
            let due = match known {
                true => {
                    let now = Instant::now();
                    self.checks.values().filter_map(|c| c.due(now)).min()
                }
                false => None,
            };
            let waiting = !known && self.checks.values().any(|c| c.pending.is_some());
            let pod = Arc::clone(&self.pod_view);
            tokio::select! {
                change = queue.recv() => match change {
                    Some(change) => self.take(change).await,
                    None => return,
                },
                () = sleep_until(due), if due.is_some() => self.flush_due().await,
                () = pod.holds(|pod| pod.metadata.uid.is_some()), if waiting => {}
            }
        }
    }

    /// The pod's uid, once its watch has listed it.
    fn uid(&self) -> Option<String> {
        self.pod_view
            .find(|pod| pod.metadata.uid.clone().filter(|_| pod.metadata.name == self.pod))
    }

    async fn take(&mut self, change: Change) {
        let Some(key) = key_of(&change) else {
            return;
        };
        let known = self.uid().is_some();
        let entry = self.checks.entry(change.check.clone()).or_default();
        let now = Instant::now();
        let may_write = entry.last_write.is_none_or(|at| now >= at + PER_CHECK) && entry.pending.is_none();
        if may_write && known {
            self.write(&change.check, key, 1, change.at).await;
            return;
        }
        entry.pending = match entry.pending.take() {
            Some((waiting, count, _)) if waiting == key => Some((key, count + 1, change.at)),
            Some(_) => {
                self.stats.folded.fetch_add(1, Ordering::Relaxed);
                Some((key, 1, change.at))
            }
            None => Some((key, 1, change.at)),
        };
    }

    async fn flush_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, events)| events.due(now).is_some_and(|at| at <= now))
            .map(|(check, _)| check.clone())
            .collect();
        for check in due {
            if let Some((key, count, at)) = self.checks.get_mut(&check).and_then(|e| e.pending.take()) {
                self.write(&check, key, count, at).await;
            }
        }
    }

    /// One write for `check`: a series update of the same Event if one is known, else a new one.
    async fn write(&mut self, check: &str, key: Key, count: u32, at: SystemTime) {
        let key_again = key.clone();
        let entry = self.checks.entry(check.to_owned()).or_default();
        entry.last_write = Some(Instant::now());
        let known = entry.written.iter().position(|w| w.key == key && w.alive());
        let result = match known {
            Some(at_index) => {
                let (name, total) = {
                    let written = &entry.written[at_index];
                    (written.name.clone(), written.count + count)
                };
                match self.update(&name, total, at).await {
                    Ok(()) => {
                        if let Some(written) = self.entry(check).written.get_mut(at_index) {
                            written.count = total;
                            written.written = Instant::now();
                        }
                        self.stats.updated.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    // Gone (expired, deleted): a new Event instead.
                    Err(error) if error.code() == Some(404) => {
                        self.entry(check).written.remove(at_index);
                        self.create(check, key, count, at).await
                    }
                    Err(error) => Err(("patch", error)),
                }
            }
            None => self.create(check, key, count, at).await,
        };
        let (verb, error) = match result {
            Ok(()) => {
                self.failing_since = None;
                self.stats.set_problem(None);
                return;
            }
            Err(failed) => failed,
        };
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let problem = error.problem(verb, "events", &self.namespace);
        if error.is_routine() {
            // Written again at the end of the check's minute (unless a later change replaces it),
            // and shown only once writes have failed for longer than the watches' grace.
            let entry = self.entry(check);
            if entry.pending.is_none() {
                entry.pending = Some((key_again, count, at));
            }
            let since = *self.failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() <= GRACE {
                tracing::debug!(check, reason = %problem.reason, "Posting a Kubernetes Event failed; retrying within the minute");
                return;
            }
        }
        tracing::warn!(check, reason = %problem.reason, "Posting a Kubernetes Event failed");
        self.stats.set_problem(Some(problem));
    }

    fn entry(&mut self, check: &str) -> &mut CheckEvents {
        self.checks.entry(check.to_owned()).or_default()
    }

    async fn create(
        &mut self,
        check: &str,
        key: Key,
        count: u32,
        at: SystemTime,
    ) -> Result<(), (&'static str, ApiError)> {
        let name = event_name(&self.pod, at);
        // Only ever called once the uid is known (`run` waits for it); an empty one would be
        // refused by nobody but hidden from `kubectl describe pod`.
        let uid = self.uid().unwrap_or_default();
        let regarding =
            json!({"apiVersion": "v1", "kind": "Pod", "namespace": self.namespace, "name": self.pod, "uid": uid});
        let mut event = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.namespace},
            "eventTime": micro_time(at),
            "type": key.kind,
            "reason": key.reason,
            "note": key.note,
            "action": ACTION,
            "reportingController": CONTROLLER,
            "reportingInstance": cut_bytes(&self.pod, INSTANCE_LIMIT),
            "regarding": regarding,
        });
        if count > 1 {
            event["series"] = json!({"count": count, "lastObservedTime": micro_time(at)});
        }
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events", self.namespace);
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let created = client::within(
            WRITE_TIMEOUT,
            self.client.send_json(Method::POST, &path, "application/json", body),
        )
        .await;
        match created {
            Ok(_) => {}
            // The name is this change's own (its time): a 409 means an earlier try whose answer
            // was lost (a timeout, a cut) did create it.
            Err(error) if error.code() == Some(409) => {}
            Err(error) => return Err(("create", error)),
        }
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        let written = &mut self.entry(check).written;
        if written.len() == REMEMBERED {
            written.pop_front();
        }
        written.push_back(Written {
            key,
            name,
            count,
            written: Instant::now(),
        });
        Ok(())
    }

    async fn update(&self, name: &str, count: u32, at: SystemTime) -> Result<(), ApiError> {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events/{name}", self.namespace);
        let patch = json!({"series": {"count": count, "lastObservedTime": micro_time(at)}});
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        client::within(
            WRITE_TIMEOUT,
            self.client
                .send_json(Method::PATCH, &path, "application/merge-patch+json", body),
        )
        .await
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `metav1.MicroTime`: RFC 3339 with microseconds.
fn micro_time(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// `<pod>.<hex nanoseconds>`, as client-go names Events, within the 253 characters of a name.
fn event_name(pod: &str, at: SystemTime) -> String {
    let nanos = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let suffix = format!(".{nanos:x}");
    let room = 253 - suffix.len();
    let stem: String = pod.chars().take(room).collect();
    format!("{}{suffix}", stem.trim_end_matches(['.', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(from: Option<Status>, to: Status, reason: &str) -> Change {
        Change {
            check: "postgres".to_owned(),
            from,
            to,
            reason: reason.to_owned(),
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn changes_become_warning_or_normal_events_and_a_first_pass_none() {
        let failed = key_of(&change(Some(Status::Pass), Status::Fail, "connection refused")).unwrap();
        assert_eq!(
            (failed.kind, failed.reason, failed.note.as_str()),
            ("Warning", "CheckFailed", "postgres failed: connection refused")
        );
        let warned = key_of(&change(None, Status::Warn, "slow")).unwrap();
        assert_eq!((warned.kind, warned.reason), ("Warning", "CheckWarning"));
        let recovered = key_of(&change(Some(Status::Fail), Status::Pass, "ok")).unwrap();
        assert_eq!(
            (recovered.kind, recovered.reason, recovered.note.as_str()),
            ("Normal", "CheckRecovered", "postgres recovered (was failed)")
        );
        assert!(key_of(&change(None, Status::Pass, "ok")).is_none());
    }

    #[test]
    fn notes_fit_the_api_limit() {
        let long = key_of(&change(None, Status::Fail, &"é".repeat(2000))).unwrap();
        assert!(long.note.len() <= NOTE_LIMIT, "{}", long.note.len());
        assert!(long.note.ends_with('…'));
    }

    #[test]
    fn a_long_pod_name_is_cut_to_the_instance_limit_at_a_character_boundary() {
        let name = format!("api-gateway-{}", "x".repeat(150));
        assert_eq!(cut_bytes(&name, INSTANCE_LIMIT).len(), INSTANCE_LIMIT);
        assert!(name.starts_with(cut_bytes(&name, INSTANCE_LIMIT)));
        let wide = "é".repeat(100);
        let cut = cut_bytes(&wide, INSTANCE_LIMIT);
        assert_eq!(cut.len(), 128);
        assert_eq!(cut_bytes(&wide, 127).len(), 126, "never inside a character");
        assert_eq!(cut_bytes("gw-1", INSTANCE_LIMIT), "gw-1");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_written_within_the_hour_lives_on_from_its_last_write() {
        let mut written = Written {
            key: key_of(&change(None, Status::Fail, "x")).unwrap(),
            name: "gw-1.1".to_owned(),
            count: 1,
            written: Instant::now(),
        };
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(50 * 60)).await;
            assert!(written.alive(), "written 50 minutes ago");
            // A series update: the server's TTL starts again.
            written.written = Instant::now();
            written.count += 1;
        }
        tokio::time::advance(EVENT_KEPT).await;
        assert!(!written.alive(), "not written for 55 minutes: about to expire");
    }

    #[test]
    fn event_names_are_valid_names() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(event_name("gw-1", at), "gw-1.18fae27693b40000");
        assert!(event_name(&"a".repeat(253), at).len() <= 253);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (sink, _receiver, stats) = channel();
        for _ in 0..QUEUE + 5 {
            sink.offer(change(None, Status::Fail, "x"));
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 5);
    }
}
