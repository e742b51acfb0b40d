//! The last view of one watched resource, shared by its watch task (which writes) and the `pod`
//! check and the Event poster (which read).
//!
//! The view is current while a watch is open; when the watch ends or fails, the last objects are
//! kept and the view's age grows from that moment. A failure the watch task retries quietly (an
//! API server rolling, 429, 5xx: [`ApiError::is_routine`](super::client::ApiError::is_routine))
//! is shown as a problem only once the view has been lost for longer than [`GRACE`]; one that
//! waits for a person (401, 403, no token) is shown at once, and so is any failure before the
//! first list (there is no view to keep then). A list refreshes the objects and the age; only a
//! watch that opens ends a problem.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::objects::Object;
use crate::core::outcome::Finding;

/// How long the view may be lost to routine failures before they are shown (SPEC: "shown as a
/// problem only when the view has been lost for longer than 60 s").
pub(crate) const GRACE: Duration = Duration::from_secs(60);

/// The last known objects of one resource; see the module docs.
#[derive(Debug)]
pub struct Store<T> {
    inner: Mutex<Inner<T>>,
    /// Notified on every update.
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
    /// The last failure, until a watch opens again.
    problem: Option<Problem>,
    lists: u64,
    watches: u64,
}

#[derive(Debug, Clone)]
struct Problem {
    finding: Finding,
    /// Shown at once (it waits for a person), not after the grace.
    urgent: bool,
}

impl<T> Inner<T> {
    fn age(&self) -> Option<Duration> {
        self.confirmed.map(|at| match self.connected {
            true => Duration::ZERO,
            false => at.elapsed(),
        })
    }

    /// From when the current problem is shown (`None` without one): at once when it waits for a
    /// person or nothing was ever listed, else once the view has been lost for the grace.
    fn shown_from(&self, now: Instant) -> Option<Instant> {
        let problem = self.problem.as_ref()?;
        if problem.urgent || !self.listed {
            return Some(now);
        }
        Some(self.confirmed.map_or(now, |at| at + GRACE))
    }

    fn visible(&self) -> bool {
        let now = Instant::now();
        self.shown_from(now).is_some_and(|at| at <= now)
    }
}

/// A copy of a store for one run of the check.
#[derive(Debug, Clone)]
pub struct View<T> {
    pub items: Vec<T>,
    /// Whether a list ever worked (else `items` is empty for want of knowing).
    pub listed: bool,
    /// How old the view is: zero while a watch is open; `None` before the first list.
    pub age: Option<Duration>,
    /// The failure to show: see the module docs.
    pub problem: Option<Finding>,
    /// A failure being retried quietly (within the grace), for `/diag`.
    pub retrying: Option<String>,
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
        let visible = inner.visible();
        View {
            items: inner.items.values().cloned().collect(),
            listed: inner.listed,
            age: inner.age(),
            problem: inner.problem.as_ref().filter(|_| visible).map(|p| p.finding.clone()),
            retrying: inner
                .problem
                .as_ref()
                .filter(|_| !visible)
                .map(|p| p.finding.reason.clone()),
            lists: inner.lists,
            watches: inner.watches,
        }
    }

    /// Resolves once `ready` holds of the store (at once if it does).
    async fn until(&self, ready: impl Fn(&Inner<T>) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready(&self.inner.lock().unwrap_or_else(PoisonError::into_inner)) {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once the store has been listed or has failed: the first run of the check waits
    /// for the first list rather than report "nothing known yet".
    pub async fn settled(&self) {
        self.until(|inner| inner.listed || inner.problem.is_some()).await;
    }

    /// Resolves once an object for which `found` holds is known.
    pub(crate) async fn holds(&self, found: impl Fn(&T) -> bool) {
        self.until(|inner| inner.items.values().any(&found)).await;
    }

    /// The first object for which `read` gives something.
    pub(crate) fn find<R>(&self, read: impl Fn(&T) -> Option<R>) -> Option<R> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.items.values().find_map(read)
    }

    pub(crate) fn replace(&self, items: Vec<T>) {
        self.update(|inner| {
            inner.items = items.into_iter().map(|item| (item.meta().name.clone(), item)).collect();
            inner.listed = true;
            inner.confirmed = Some(Instant::now());
            inner.lists += 1;
        });
    }

    pub(crate) fn put(&self, item: T) {
        self.update(|inner| {
            inner.items.insert(item.meta().name.clone(), item);
            inner.confirmed = Some(Instant::now());
        });
    }

    pub(crate) fn remove(&self, name: &str) {
        self.update(|inner| {
            inner.items.remove(name);
            inner.confirmed = Some(Instant::now());
        });
    }

    /// A watch is open: the view is current; any earlier failure is over. Whether one was shown.
    pub(crate) fn connected(&self) -> bool {
        self.update(|inner| {
            let shown = inner.visible();
            inner.connected = true;
            inner.confirmed = Some(Instant::now());
            inner.watches += 1;
            inner.problem = None;
            shown
        })
    }

    /// The watch ended: the view is kept, its age growing from now.
    pub(crate) fn disconnected(&self) {
        self.update(|inner| {
            if inner.connected {
                inner.confirmed = Some(Instant::now());
            }
            inner.connected = false;
        });
    }

    /// A failure (`urgent`: shown at once). The view stays as it was, its age growing. Returns
    /// whether what is shown changed (a new problem shown now), and otherwise when the problem
    /// will be shown if nothing works before then.
    pub(crate) fn failed(&self, finding: Finding, urgent: bool) -> Failed {
        self.update(|inner| {
            if inner.connected {
                inner.confirmed = Some(Instant::now());
            }
            inner.connected = false;
            let before = match inner.visible() {
                true => inner.problem.as_ref().map(|p| p.finding.clone()),
                false => None,
            };
            let new = before.as_ref() != Some(&finding);
            inner.problem = Some(Problem { finding, urgent });
            let now = Instant::now();
            match inner.shown_from(now) {
                Some(at) if at > now => Failed::ShownAt(at),
                _ if new => Failed::Shown,
                _ => Failed::Unchanged,
            }
        })
    }
}

/// What [`Store::failed`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// A new problem is shown.
    Shown,
    /// What is shown did not change.
    Unchanged,
    /// Retried quietly; shown from then on if nothing works before.
    ShownAt(Instant),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::outcome::FailureKind;
    use crate::kube::objects::Pod;

    fn listed_and_watched() -> Store<Pod> {
        let store: Store<Pod> = Store::default();
        let mut pod = Pod::default();
        pod.metadata.name = "gw-1".to_owned();
        store.replace(vec![pod]);
        store.connected();
        store
    }

    fn cut() -> Finding {
        Finding::warn(
            FailureKind::Protocol,
            "kubernetes API: watch pods: the connection failed",
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_routine_failure_is_shown_only_once_the_view_has_been_lost_for_the_grace() {
        let store = listed_and_watched();
        assert_eq!(store.view().age, Some(Duration::ZERO));
        let at = match store.failed(cut(), false) {
            Failed::ShownAt(at) => at,
            other => panic!("{other:?}"),
        };
        assert_eq!(at, Instant::now() + GRACE);
        tokio::time::advance(Duration::from_secs(30)).await;
        let view = store.view();
        assert!(view.problem.is_none(), "within the grace");
        assert_eq!(view.retrying.as_deref(), Some(cut().reason.as_str()));
        assert_eq!(
            store.failed(cut(), false),
            Failed::ShownAt(at),
            "the grace runs from the loss"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        let view = store.view();
        assert_eq!(view.items.len(), 1, "the last view is kept");
        assert_eq!(view.age, Some(Duration::from_secs(61)));
        assert_eq!(view.problem, Some(cut()));
        assert!(store.connected(), "a watch that opens ends the shown failure");
        assert!(store.view().problem.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_waiting_for_a_person_or_before_the_first_list_is_shown_at_once() {
        let store = listed_and_watched();
        let forbidden = Finding::warn(FailureKind::Auth, "kubernetes API: forbidden");
        assert_eq!(store.failed(forbidden.clone(), true), Failed::Shown);
        assert_eq!(store.view().problem, Some(forbidden.clone()));
        assert_eq!(store.failed(forbidden, true), Failed::Unchanged);

        let fresh: Store<Pod> = Store::default();
        assert_eq!(fresh.failed(cut(), false), Failed::Shown, "no view to keep");
        assert_eq!(fresh.view().problem, Some(cut()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_refreshes_the_view_but_only_a_watch_ends_the_problem() {
        let store = listed_and_watched();
        store.failed(cut(), false);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(store.view().problem.is_some());
        store.replace(Vec::new());
        let view = store.view();
        assert_eq!(view.age, Some(Duration::ZERO));
        assert!(view.problem.is_none(), "the view is fresh again: within the grace");
        assert!(view.retrying.is_some(), "still being retried");
    }
}
