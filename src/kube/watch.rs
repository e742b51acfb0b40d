//! List, then watch: how vigil keeps its view of its own pod and of its Service's
//! EndpointSlices current without polling.
//!
//! One background task per resource ([`run`]), a small state machine in the shape of client-go's
//! reflector (reflector.go: `ListAndWatch`, `watch`) and kube-runtime's watcher (`watcher.rs`):
//! - **Empty** (at start, and after `410 Gone`): list, page by page (`limit=500`, `continue`
//!   followed; all pages together within [`LIST_LIMIT`]); the view is replaced whole and the
//!   state becomes Known at the list's `resourceVersion`, and a watch follows at once;
//! - **Known**: watch from the version (`allowWatchBookmarks`, a `timeoutSeconds` of 5 to 10
//!   minutes chosen at random, as client-go does, so replicas do not reconnect in step). Each
//!   event updates the [`Store`] and rings the `pod` check's wake (a change shows within one
//!   event, not one interval); a bookmark moves the version on. A stream that delivers nothing,
//!   not even a bookmark, for [`SILENCE_LIMIT`] is dead (a real server sends a bookmark about
//!   once a minute: apiserver cacher.go, `defaultBookmarkFrequency`) and is dropped. `410 Gone`,
//!   as an HTTP status or as an `ERROR` event in a 200 stream (the watch cache's way), goes back
//!   to Empty; anything else stays Known.
//!
//! Every edge but the one from a list to its watch waits a step of the [`Backoff`] first: a
//! failure, a 410, and also a watch the server ended (after its `timeoutSeconds` the step is back
//! at 0.8 s; a server that ends every watch early or answers every watch with 410 keeps it
//! growing, and a successful list does not reset it). So a misbehaving server gets at most one
//! list and one watch per step, the steps reaching 30 s within a minute.
//!
//! Failures are recorded in the store, which keeps the last view and decides when they are
//! shown (`store`: routine ones only after the view has been lost for a minute).

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::client::{self, ApiClient, ApiError, LIST_LIMIT};
use super::objects::{List, Object, ObjectMeta, Status};
use super::store::{Failed, Store};
use crate::core::wake::Wake;

/// How long one list page, or the opening of a watch, may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The `timeoutSeconds` of a watch is chosen between these (client-go: 5 minutes times [1, 2)).
pub(crate) const WATCH_SECONDS: std::ops::RangeInclusive<u64> = 300..=600;
/// A watch that delivers nothing, not even a bookmark, for this long is dead.
pub(crate) const SILENCE_LIMIT: Duration = Duration::from_secs(150);
/// Items asked per list page (client-go's pager: 500).
pub(crate) const PAGE_SIZE: u32 = 500;
/// How long the end of a stream is waited for after an `ERROR` event.
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// The most pages one list may take (a server that sends `continue` forever is not followed
/// forever).
pub(crate) const MAX_PAGES: usize = 64;

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
    fn list_path(&self, next: Option<&str>) -> String {
        let mut path = format!("{}?{}&limit={PAGE_SIZE}", self.path, self.selector);
        if let Some(token) = next {
            path.push_str("&continue=");
            path.extend(utf8_percent_encode(token, NON_ALPHANUMERIC));
        }
        path
    }

    fn watch_path(&self, version: &str, seconds: u64) -> String {
        let version: String = utf8_percent_encode(version, NON_ALPHANUMERIC).collect();
        format!(
            "{}?{}&watch=true&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds={seconds}",
            self.path, self.selector
        )
    }
}

/// Where the task stands; see the module docs.
#[derive(Debug)]
enum State {
    /// Nothing to watch from: list.
    Empty,
    /// Listed or watched up to this version: watch from it.
    Known(String),
}

/// How one watch ended.
#[derive(Debug)]
enum Ended {
    /// The server ended the stream.
    Closed,
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
    let mut state = State::Empty;
    loop {
        let (retry_after, shown_at) = match &mut state {
            State::Empty => match list::<T>(&client, &resource).await {
                Ok((items, version)) => {
                    store.replace(items);
                    wake.ring();
                    state = State::Known(version);
                    continue;
                }
                Err(error) => (error.retry_after(), fail(&store, &wake, &resource, "list", &error)),
            },
            State::Known(version) => {
                let ended = watch(&client, &resource, version, &store, &wake).await;
                store.disconnected();
                match ended {
                    Ended::Closed => (None, None),
                    Ended::Gone => {
                        tracing::debug!(
                            resource = resource.name,
                            "Watch: resourceVersion too old (410 Gone), listing again"
                        );
                        state = State::Empty;
                        (None, None)
                    }
                    Ended::Failed(error) => {
                        if error.is_too_large_resource_version() {
                            state = State::Empty;
                        }
                        (error.retry_after(), fail(&store, &wake, &resource, "watch", &error))
                    }
                }
            }
        };
        pause(backoff.next(retry_after), shown_at, &store, &resource, &wake).await;
    }
}

/// Records a failure; logs and rings the check when it is shown now. Returns when it will be
/// shown if it is retried quietly for now.
fn fail<T: Object>(
    store: &Store<T>,
    wake: &Wake,
    resource: &Resource,
    verb: &str,
    error: &ApiError,
) -> Option<Instant> {
    let problem = error.problem(verb, resource.name, &resource.namespace);
    match store.failed(problem.clone(), !error.is_routine()) {
        Failed::Shown => {
            tracing::warn!(resource = resource.name, verb, reason = %problem.reason, "Kubernetes API request failed; keeping the last view");
            wake.ring();
            None
        }
        Failed::Unchanged => None,
        Failed::ShownAt(at) => {
            tracing::debug!(resource = resource.name, verb, reason = %problem.reason, "Kubernetes API request failed; retrying");
            Some(at)
        }
    }
}

/// Waits `wait` before the next request; if a failure retried quietly becomes one to show
/// meanwhile, rings the check then.
async fn pause<T: Object>(
    wait: Duration,
    shown_at: Option<Instant>,
    store: &Store<T>,
    resource: &Resource,
    wake: &Wake,
) {
    let until = Instant::now() + wait;
    if let Some(at) = shown_at.filter(|at| *at < until) {
        tokio::time::sleep_until(at).await;
        if let Some(problem) = store.view().problem {
            tracing::warn!(resource = resource.name, reason = %problem.reason, "Kubernetes API: the view has been lost for a minute; keeping the last one");
            wake.ring();
        }
    }
    tokio::time::sleep_until(until).await;
}

/// Every page of the list: its items and the version to watch from.
async fn list<T: Object>(client: &ApiClient, resource: &Resource) -> Result<(Vec<T>, String), ApiError> {
    let mut items = Vec::new();
    let mut version = None;
    let mut left = LIST_LIMIT;
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let path = resource.list_path(next.as_deref());
        let (page, size) = client::within(REQUEST_TIMEOUT, client.get_json_sized::<List<T>>(&path, left))
            .await
            .map_err(|error| match error {
                ApiError::TooLarge(_) => ApiError::TooLarge(LIST_LIMIT),
                other => other,
            })?;
        left = left.saturating_sub(size);
        items.extend(page.items);
        // Every page is read at the first page's revision (apiserver etcd3 store.go, GetList).
        version = version.or(page.metadata.resource_version);
        match page.metadata.continue_token.filter(|token| !token.is_empty()) {
            Some(token) => next = Some(token),
            None => return Ok((items, version.unwrap_or_default())),
        }
    }
    Err(ApiError::TooManyPages(MAX_PAGES))
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
    loop {
        let line = match tokio::time::timeout(SILENCE_LIMIT, lines.next_line()).await {
            Err(_) => return Ended::Failed(ApiError::Silent(crate::core::fmt::duration(SILENCE_LIMIT))),
            Ok(Err(error)) => return Ended::Failed(error),
            Ok(Ok(None)) => return Ended::Closed,
            Ok(Ok(Some(line))) => line,
        };
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
                drain(&mut lines).await;
                return match status.code {
                    Some(410) => Ended::Gone,
                    code => Ended::Failed(ApiError::Status {
                        code: code.unwrap_or(500),
                        retry_after: status.retry_after_seconds().map(Duration::from_secs),
                        status: Box::new(status),
                    }),
                };
            }
            _ => {}
        }
    }
}

/// Reads a stream to its end for a moment: the server ends a watch right after an `ERROR` event
/// (the watch cache's error watcher closes), and a stream read to its end gives its connection
/// back for the next request instead of a new TCP and TLS handshake.
async fn drain(lines: &mut client::Lines) {
    let _ = tokio::time::timeout(DRAIN_WAIT, async { while let Ok(Some(_)) = lines.next_line().await {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Resource {
        Resource {
            name: "pods",
            namespace: "gw".to_owned(),
            path: "/api/v1/namespaces/gw/pods".to_owned(),
            selector: "fieldSelector=metadata.name%3Dgw-1".to_owned(),
        }
    }

    #[test]
    fn watch_paths_carry_the_selector_version_and_bookmarks() {
        assert_eq!(
            pods().watch_path("123", 300),
            "/api/v1/namespaces/gw/pods?fieldSelector=metadata.name%3Dgw-1&watch=true&resourceVersion=123&allowWatchBookmarks=true&timeoutSeconds=300"
        );
    }

    #[test]
    fn list_paths_are_paginated_and_carry_the_continue_token_encoded() {
        assert_eq!(
            pods().list_path(None),
            "/api/v1/namespaces/gw/pods?fieldSelector=metadata.name%3Dgw-1&limit=500"
        );
        assert_eq!(
            pods().list_path(Some("eyJ2Ijoi+/=")),
            "/api/v1/namespaces/gw/pods?fieldSelector=metadata.name%3Dgw-1&limit=500&continue=eyJ2Ijoi%2B%2F%3D"
        );
    }
}
