//! `[kubernetes]`: what vigil reads from and writes to the Kubernetes API.
//!
//! [`Cluster`] is built once at start from the section (the cluster CA read then): the API
//! client ([`client`]), the stores ([`store`]) the watches keep ([`watch`], backing off with
//! [`backoff`]: this pod by field selector, the Service's EndpointSlices by label), the Event
//! queue ([`events`]) and the metric group. The agent starts its background tasks (the watches
//! and the Event poster) on the checks' runtime beside the loops; the `pod` check
//! (`checks::pod`) reads the stores and asks the metrics API at most once per
//! `metrics_interval`. With the section absent, nothing here exists and the API is never called.
//!
//! What one replica costs the API server at steady state: one metrics GET per
//! `metrics_interval` (15 s: 4 a minute), and the two watches, each opened again when the server
//! closes it after its `timeoutSeconds` (5 to 10 minutes), all on kept-alive connections (no new
//! connection a minute); Events only on status changes, at most one write per check a minute.
//! Under a misbehaving server (410 on every watch, every watch ended at once, 5xx) each watch
//! costs at most one list and one watch per step of its backoff (`backoff`: 0.8 s doubling to
//! 30 s), the metrics API still one read per `metrics_interval`: the README states the figures.

pub(crate) mod backoff;
pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod objects;
pub(crate) mod quantity;
pub(crate) mod store;
pub(crate) mod watch;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use self::client::ApiClient;
use self::events::{Change, EventSink, EventStats, Poster};
use self::objects::{EndpointSlice, Pod};
use self::store::Store;
use self::watch::Resource;
use crate::config::Kubernetes;
use crate::core::wake::Wake;
use crate::net::tls::{ClientError, HttpClient};

/// Why `[kubernetes]` could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("kubernetes.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("kubernetes.ca_file: {0}")]
    Tls(String),
}

/// A background task of the cluster's.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Everything `[kubernetes]` sets up; see the module docs.
pub struct Cluster {
    pub config: Kubernetes,
    pub(crate) client: Arc<ApiClient>,
    /// This pod, as the watch last saw it.
    pub pod: Arc<Store<Pod>>,
    /// With `service`: its EndpointSlices.
    pub slices: Option<Arc<Store<EndpointSlice>>>,
    /// Rung by the watches on every change: the `pod` check's wake.
    pub wake: Wake,
    /// With `events = true`.
    events: Option<Events>,
}

struct Events {
    sink: EventSink,
    /// Taken by the one poster task.
    queue: Mutex<Option<mpsc::Receiver<Change>>>,
    stats: Arc<EventStats>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("api_url", &self.config.api_url.as_str())
            .field("namespace", &self.config.namespace)
            .field("pod", &self.config.pod)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Reads the cluster CA (an error names `kubernetes.ca_file`). Connects to nothing.
    pub fn build(config: &Kubernetes) -> Result<Arc<Cluster>, SetupError> {
        let tls = HttpClient::with_only_ca_file(&config.ca_file).map_err(|e| match e {
            ClientError::CaFile { path, message } => SetupError::CaFile { path, message },
            other => SetupError::Tls(other.to_string()),
        })?;
        let events = config.events.then(|| {
            let (sink, queue, stats) = events::channel();
            Events {
                sink,
                queue: Mutex::new(Some(queue)),
                stats,
            }
        });
        Ok(Arc::new(Cluster {
            client: Arc::new(ApiClient::new(&config.api_url, tls, &config.token_file)),
            pod: Arc::default(),
            slices: config.service.as_ref().map(|_| Arc::default()),
            wake: Wake::new(),
            events,
            config: config.clone(),
        }))
    }

    /// The pod's watch: by field selector, so that only this pod is ever read.
    pub fn pod_resource(&self) -> Resource {
        let namespace = &self.config.namespace;
        Resource {
            name: "pods",
            namespace: namespace.clone(),
            path: format!("/api/v1/namespaces/{namespace}/pods"),
            selector: format!("fieldSelector=metadata.name%3D{}", self.config.pod),
        }
    }

    /// The Service's EndpointSlices, by the label the EndpointSlice controller sets.
    pub fn slices_resource(&self) -> Option<Resource> {
        let namespace = &self.config.namespace;
        self.config.service.as_ref().map(|service| Resource {
            name: "endpointslices",
            namespace: namespace.clone(),
            path: format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"),
            selector: format!("labelSelector=kubernetes.io%2Fservice-name%3D{service}"),
        })
    }

    /// The metrics API's figures of this pod (what `kubectl top pod` reads).
    pub fn metrics_path(&self) -> String {
        format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods/{}",
            self.config.namespace, self.config.pod
        )
    }

    /// The watches, to run for as long as the agent does.
    pub fn watches(&self) -> Vec<Task> {
        let mut tasks: Vec<Task> = vec![Box::pin(watch::run(
            Arc::clone(&self.client),
            self.pod_resource(),
            Arc::clone(&self.pod),
            self.wake.clone(),
        ))];
        if let (Some(resource), Some(store)) = (self.slices_resource(), &self.slices) {
            tasks.push(Box::pin(watch::run(
                Arc::clone(&self.client),
                resource,
                Arc::clone(store),
                self.wake.clone(),
            )));
        }
        tasks
    }

    /// The Event poster (once; `None` with `events = false` or when already taken).
    pub fn event_poster(&self) -> Option<Task> {
        let events = self.events.as_ref()?;
        let queue = events.queue.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        let poster = Poster::new(
            Arc::clone(&self.client),
            &self.config.namespace,
            &self.config.pod,
            Arc::clone(&self.pod),
            Arc::clone(&events.stats),
        );
        Some(Box::pin(poster.run(queue)))
    }

    /// Where the scheduler offers status changes (with `events = true`).
    pub fn event_sink(&self) -> Option<EventSink> {
        self.events.as_ref().map(|e| e.sink.clone())
    }

    pub fn event_stats(&self) -> Option<&Arc<EventStats>> {
        self.events.as_ref().map(|e| &e.stats)
    }
}
