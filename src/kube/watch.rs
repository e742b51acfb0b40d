//! List, then watch: how vigil keeps its view of its own pod and of its Service's
//! EndpointSlices current without polling.
//!
//! One background task per resource ([`run`]): it lists (the view is replaced whole), then
//! watches from the list's `resourceVersion` with `allowWatchBookmarks` and a `timeoutSeconds`
//! of 5 to 10 minutes (chosen at random for each watch, so that the server closes it now and
//! then and replicas do not reconnect in step). Each event updates the [`Store`] and rings the
//! `pod` check's wake, so that a change (an OOM kill) is reported within one event, not one
//! interval. A watch the server ends is opened again from the last version seen (bookmarks move
//! it on); `410 Gone` (as an HTTP status or as an `ERROR` event with code 410: the version was
//! compacted away) lists again. Failures back off exponentially from 1 s to 30 s with jitter,
//! and the store keeps the last view, with the time it was last confirmed, for the check to show
//! with its age.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{self, ApiClient, ApiError, LIST_LIMIT};
use super::objects::{List, Object, ObjectMeta, Status};
use crate::core::outcome::Finding;
use crate::core::wake::Wake;

/// How long a list, or the opening of a watch, may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The `timeoutSeconds` of a watch is chosen between these (client-go does the same).
pub(crate) const WATCH_SECONDS: std::ops::RangeInclusive<u64> = 300..=600;
/// A watch silent for its `timeoutSeconds` plus this long is taken as dead (a half-open
/// connection the server will never close).
const IDLE_MARGIN: Duration = Duration::from_secs(30);
/// The first and the longest wait after a failure.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What one task lists and watches: a collection in the namespace, narrowed by a selector.
#[derive(Debug, Clone)]
pub struct Resource {
    /// As RBAC names it, for reasons: `pods`, `endpointslices`.
    pub name: &'static str,
    pub namespace: String,
    /// `/api/v1/namespaces/<ns>/pods`.
    pub path: String,
    /// `fieldSelector=metadata.name%3D<pod>`, already encoded.
    pub selector: String,
}

impl Resource {
    fn list_path(&self) -> String {
        format!("{}?{}", self.path, self.selector)
    }

    fn watch_path(&self, version: &str, seconds: u64) -> String {
        let version: String =
            percent_encoding::utf8_percent_encode(version, percent_encoding::NON_ALPHANUMERIC).collect();
        format!(
            "{}?{}&watch=true&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds={seconds}",
            self.path, self.selector
        )
    }
}

/// The last known objects of one resource, shared by the watch task (which writes) and the
/// `pod` check (which reads).
#[derive(Debug)]
pub struct Store<T> {
    inner: Mutex<Inner<T>>,
    /// Notified when the store first settles (listed or failed) and on every change after.
    changed: Notify,
}

#[derive(Debug)]
struct Inner<T> {
    items: BTreeMap<String, T>,
    listed: bool,
    /// A watch is open: the view is current.
    connected: bool,
    /// When the view was last known to be current.
    confirmed: Option<Instant>,
    /// The last failure, until a list or watch works again.
    problem: Option<Finding>,
    lists: u64,
    watches: u64,
}

/// A copy of a store for one run of the check.
#[derive(Debug, Clone)]
pub struct View<T> {
    pub items: Vec<T>,
    /// Whether a list ever worked (else `items` is empty for want of knowing).
    pub listed: bool,
    /// How old the view is: zero while a watch is open; `None` before the first list.
    pub age: Option<Duration>,
    pub problem: Option<Finding>,
    pub lists: u64,
    pub watches: u64,
}

impl<T: Object> Default for Store<T> {
    fn default() -> Self {
        Store {
            inner: Mutex::new(Inner {
                items: BTreeMap::new(),
                listed: false,
                connected: false,
                confirmed: None,
                problem: None,
                lists: 0,
                watches: 0,
            }),
            changed: Notify::new(),
        }
    }
}

impl<T: Object> Store<T> {
    fn update<R>(&self, f: impl FnOnce(&mut Inner<T>) -> R) -> R {
        let result = f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_waiters();
        result
    }

    pub fn view(&self) -> View<T> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        View {
            items: inner.items.values().cloned().collect(),
            listed: inner.listed,
            age: inner.confirmed.map(|at| match inner.connected {
                true => Duration::ZERO,
                false => at.elapsed(),
            }),
            problem: inner.problem.clone(),
            lists: inner.lists,
            watches: inner.watches,
        }
    }

    /// Resolves once the store has been listed or has failed (at once if it has): the first
    /// run of the check waits for the first list rather than report "nothing known yet".
    pub async fn settled(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
                if inner.listed || inner.problem.is_some() {
                    return;
                }
            }
            notified.await;
        }
    }

    fn replace(&self, items: Vec<T>) {
        self.update(|inner| {
            inner.items = items.into_iter().map(|item| (item.meta().name.clone(), item)).collect();
            inner.listed = true;
            inner.confirmed = Some(Instant::now());
            inner.problem = None;
            inner.lists += 1;
        });
    }

    fn put(&self, item: T) {
        self.update(|inner| {
            inner.items.insert(item.meta().name.clone(), item);
            inner.confirmed = Some(Instant::now());
        });
    }

    fn remove(&self, name: &str) {
        self.update(|inner| {
            inner.items.remove(name);
            inner.confirmed = Some(Instant::now());
        });
    }

    /// A watch is open: the view is current; any earlier failure is over. Whether one was.
    fn connected(&self) -> bool {
        self.update(|inner| {
            inner.connected = true;
            inner.confirmed = Some(Instant::now());
            inner.watches += 1;
            inner.problem.take().is_some()
        })
    }

    fn disconnected(&self) {
        self.update(|inner| {
            if inner.connected {
                inner.confirmed = Some(Instant::now());
            }
            inner.connected = false;
        });
    }

    /// A failure: the view stays as it was, its age growing. Whether it is a new failure.
    fn failed(&self, problem: Finding) -> bool {
        self.update(|inner| {
            if inner.connected {
                inner.confirmed = Some(Instant::now());
            }
            inner.connected = false;
            let new = inner.problem.as_ref() != Some(&problem);
            inner.problem = Some(problem);
            new
        })
    }
}

/// Exponential backoff with jitter: each wait is between half and all of the current step.
#[derive(Debug)]
struct Backoff {
    step: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { step: BACKOFF_FIRST }
    }

    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(BACKOFF_MAX);
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    fn reset(&mut self) {
        self.step = BACKOFF_FIRST;
    }
}

/// How one watch ended.
enum Ended {
    /// The server closed it (its `timeoutSeconds`), after `events` events.
    Closed {
        events: u64,
    },
    /// The version to watch from is gone: list again.
    Gone,
    Failed(ApiError),
}

/// One line of a watch stream.
#[derive(Deserialize)]
struct WatchLine {
    #[serde(rename = "type")]
    kind: String,
    object: Box<RawValue>,
}

/// A `BOOKMARK` event's object: only its version counts.
#[derive(Deserialize)]
struct Bookmark {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// Lists and watches `resource` into `store` for as long as the task runs; see the module docs.
pub(crate) async fn run<T: Object>(client: Arc<ApiClient>, resource: Resource, store: Arc<Store<T>>, wake: Wake) {
    let mut backoff = Backoff::new();
    loop {
        let listed = client::within(
            REQUEST_TIMEOUT,
            client.get_json::<List<T>>(&resource.list_path(), LIST_LIMIT),
        )
        .await;
        let mut version = match listed {
            Ok(list) => {
                store.replace(list.items);
                wake.ring();
                backoff.reset();
                list.metadata.resource_version.unwrap_or_default()
            }
            Err(error) => {
                fail(&store, &wake, &resource, "list", &error);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        loop {
            let started = Instant::now();
            match watch(&client, &resource, &mut version, &store, &wake).await {
                Ended::Closed { events } => {
                    store.disconnected();
                    // A server that ends every watch at once must not be asked in a tight loop.
                    if events == 0 && started.elapsed() < BACKOFF_FIRST {
                        tokio::time::sleep(backoff.next()).await;
                    } else {
                        backoff.reset();
                    }
                }
                Ended::Gone => {
                    store.disconnected();
                    tracing::debug!(
                        resource = resource.name,
                        "Watch: resourceVersion too old (410 Gone), listing again"
                    );
                    break;
                }
                Ended::Failed(error) => {
                    fail(&store, &wake, &resource, "watch", &error);
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }
}

fn fail<T: Object>(store: &Store<T>, wake: &Wake, resource: &Resource, verb: &str, error: &ApiError) {
    let problem = error.problem(verb, resource.name, &resource.namespace);
    if store.failed(problem.clone()) {
        tracing::warn!(resource = resource.name, verb, reason = %problem.reason, "Kubernetes API request failed; keeping the last view");
        wake.ring();
    }
}

async fn watch<T: Object>(
    client: &ApiClient,
    resource: &Resource,
    version: &mut String,
    store: &Store<T>,
    wake: &Wake,
) -> Ended {
    let seconds = fastrand::u64(WATCH_SECONDS);
    let opened = client::within(REQUEST_TIMEOUT, client.stream(&resource.watch_path(version, seconds))).await;
    let mut lines = match opened {
        Ok(lines) => lines,
        Err(error) if error.code() == Some(410) => return Ended::Gone,
        Err(error) => return Ended::Failed(error),
    };
    if store.connected() {
        tracing::info!(resource = resource.name, "Kubernetes API answers again");
        wake.ring();
    }
    let idle = Duration::from_secs(seconds) + IDLE_MARGIN;
    let mut events = 0;
    loop {
        let line = match tokio::time::timeout(idle, lines.next_line()).await {
            Err(_) => return Ended::Failed(ApiError::Timeout(crate::core::fmt::duration(idle))),
            Ok(Err(error)) => return Ended::Failed(error),
            Ok(Ok(None)) => return Ended::Closed { events },
            Ok(Ok(Some(line))) => line,
        };
        events += 1;
        let event: WatchLine = match serde_json::from_slice(&line) {
            Ok(event) => event,
            Err(error) => return Ended::Failed(ApiError::Json(error.to_string())),
        };
        let object = event.object.get();
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" | "DELETED" => {
                let item: T = match serde_json::from_str(object) {
                    Ok(item) => item,
                    Err(error) => return Ended::Failed(ApiError::Json(error.to_string())),
                };
                if let Some(seen) = &item.meta().resource_version {
                    version.clone_from(seen);
                }
                match event.kind.as_str() {
                    "DELETED" => store.remove(&item.meta().name),
                    _ => store.put(item),
                }
                wake.ring();
            }
            "BOOKMARK" => {
                if let Ok(Bookmark {
                    metadata:
                        ObjectMeta {
                            resource_version: Some(seen),
                            ..
                        },
                }) = serde_json::from_str(object)
                {
                    *version = seen;
                }
            }
            "ERROR" => {
                let status: Status = serde_json::from_str(object).unwrap_or_default();
                return match status.code {
                    Some(410) => Ended::Gone,
                    code => Ended::Failed(ApiError::Status {
                        code: code.unwrap_or(500),
                        status: Box::new(status),
                    }),
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::objects::Pod;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        assert!(waits[0] >= BACKOFF_FIRST / 2 && waits[0] <= BACKOFF_FIRST, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX), "{waits:?}");
        assert!(waits[7] >= BACKOFF_MAX / 2, "{waits:?}");
        backoff.reset();
        assert!(backoff.next() <= BACKOFF_FIRST);
    }

    #[test]
    fn watch_paths_carry_the_selector_version_and_bookmarks() {
        let resource = Resource {
            name: "pods",
            namespace: "gw".to_owned(),
            path: "/api/v1/namespaces/gw/pods".to_owned(),
            selector: "fieldSelector=metadata.name%3Dgw-1".to_owned(),
        };
        assert_eq!(
            resource.watch_path("123", 300),
            "/api/v1/namespaces/gw/pods?fieldSelector=metadata.name%3Dgw-1&watch=true&resourceVersion=123&allowWatchBookmarks=true&timeoutSeconds=300"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_keeps_the_view_and_its_age_grows() {
        let store: Store<Pod> = Store::default();
        let mut pod = Pod::default();
        pod.metadata.name = "gw-1".to_owned();
        store.replace(vec![pod]);
        store.connected();
        assert_eq!(store.view().age, Some(Duration::ZERO));
        let problem = ApiError::Timeout("10s".to_owned()).problem("watch", "pods", "gw");
        assert!(store.failed(problem.clone()));
        assert!(!store.failed(problem), "the same failure again is not new");
        tokio::time::advance(Duration::from_secs(90)).await;
        let view = store.view();
        assert_eq!(view.items.len(), 1, "the last view is kept");
        assert_eq!(view.age, Some(Duration::from_secs(90)));
        assert!(view.problem.is_some());
        assert!(store.connected(), "a watch that opens ends the failure");
        assert!(store.view().problem.is_none());
    }
}
