//! Every metric name, help text and label vigil exports, in one place.
//!
//! Checks get the handles they update at build time; the HTTP layer renders the registry and
//! the per-check [`series`]. Readiness and per-check status gauges are derived from the state
//! right before each render, so a scrape always agrees with `/readyz` (including the stale
//! rule).

pub mod series;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::outcome::Status;
use series::{CheckSeries, SeriesSet, UpstreamSeries};

/// Handles to every metric vigil exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub build_info: IntGauge,
    pub ready: IntGauge,
    pub kubelet_last_probe_timestamp_seconds: GaugeVec,
    /// `vigil_tls_cert_expiry_timestamp_seconds{check}`: a series per check once it has seen a
    /// certificate.
    pub tls_cert_expiry_timestamp_seconds: GaugeVec,
    /// 1 when the last configuration reload (or the start) worked, 0 when it was refused.
    pub config_last_reload_successful: IntGauge,
    /// When the running configuration was loaded (at start, then by each successful reload).
    pub config_last_reload_success_timestamp_seconds: Gauge,
    /// `vigil_check_*` and `vigil_upstream_*`: one set of figures per check and per upstream,
    /// outside the registry (see [`series`] for why).
    series: Arc<SeriesSet>,
    /// The size of the last exposition, to size the next one's buffer.
    last_render_len: Arc<AtomicUsize>,
    /// What each check kind registered (see [`Group`]), so that a check rebuilt by a reload
    /// replaces its own series and a check removed by one takes them with it.
    groups: Arc<Mutex<Groups>>,
}

/// Each group's collectors, as a maker of fresh handles to them (a registry takes and gives
/// back boxes): what registers them, and what unregisters them.
type Collectors = Arc<dyn Fn() -> Vec<Box<dyn Collector>> + Send + Sync>;
type Groups = HashMap<Group, Collectors>;

/// A check kind's metrics in the registry, registered by the check when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Postgres,
    Gateway,
    JwtSecret,
    JwtGateway,
    Jwks,
    System,
    /// `[kubernetes]`: `vigil_pod_*`, `vigil_service_endpoints`, `vigil_kubernetes_api_up`.
    Kubernetes,
}

impl Group {
    /// The groups of a check named `check` (`postgres`, `jwt`, …).
    pub fn of_check(check: &str) -> &'static [Group] {
        match check {
            "postgres" => &[Group::Postgres],
            "gateway" => &[Group::Gateway],
            "jwt" => &[Group::JwtSecret, Group::JwtGateway, Group::Jwks],
            "system" => &[Group::System],
            "pod" => &[Group::Kubernetes],
            _ => &[],
        }
    }
}

/// The gateway check's figures.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub up: IntGauge,
    pub pool_saturation_ratio: Gauge,
    /// state = in_use | max | waiting.
    pub pool_connections: GaugeVec,
    /// Label-less families: registered with the check, but without a sample (so absent from
    /// `/metrics`, as SPEC wants) until the gateway first exports what they are made of.
    error_ratio: GaugeVec,
    request_duration_p95_seconds: GaugeVec,
    /// Set once each of the two optional gauges above has a sample.
    error_ratio_registered: Arc<OnceLock<()>>,
    p95_registered: Arc<OnceLock<()>>,
}

impl GatewayMetrics {
    /// `vigil_gateway_error_ratio`, registered the first time the gateway exports request
    /// counts (SPEC: only when it does).
    pub fn set_error_ratio(&self, value: f64) {
        let _ = self.error_ratio_registered.set(());
        self.error_ratio.with_label_values(&[] as &[&str]).set(value);
    }

    /// `vigil_gateway_request_duration_p95_seconds`, registered the first time the gateway
    /// exports a latency histogram.
    pub fn set_request_duration_p95(&self, value: f64) {
        let _ = self.p95_registered.set(());
        self.request_duration_p95_seconds
            .with_label_values(&[] as &[&str])
            .set(value);
    }

    /// The DB pool figures of a run that could not read them (scrape failed, metric missing):
    /// NaN, which Prometheus shows as a gap and never compares true, rather than the last value,
    /// which would keep an alert firing (or quiet) on a figure nobody measured.
    pub fn pool_unknown(&self) {
        self.pool_saturation_ratio.set(f64::NAN);
        for state in ["in_use", "max", "waiting"] {
            self.pool_connections.with_label_values(&[state]).set(f64::NAN);
        }
    }

    /// The same for the served-traffic figures, once they exist (they are registered by their
    /// first measurement).
    pub fn traffic_unknown(&self, error_ratio: bool, p95: bool) {
        if error_ratio && self.error_ratio_registered.get().is_some() {
            self.error_ratio.with_label_values(&[] as &[&str]).set(f64::NAN);
        }
        if p95 && self.p95_registered.get().is_some() {
            self.request_duration_p95_seconds
                .with_label_values(&[] as &[&str])
                .set(f64::NAN);
        }
    }
}

/// The `system` check's container figures: registered by the check, so exported only while
/// `[system]` is enabled.
#[derive(Clone)]
pub struct SystemMetrics {
    pub cpu_usage_ratio: Gauge,
    pub memory_working_set_bytes: Gauge,
    pub memory_limit_bytes: Gauge,
    /// Counts up by the cgroup's own cumulative figure (`throttled_usec` / `throttled_time`).
    pub cpu_throttled_seconds_total: prometheus::Counter,
    pub oom_kills_total: IntCounter,
}

/// A metric definition that does not register: only possible through a programming error
/// (a duplicate or malformed name), which the unit tests catch.
#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;

        let build_info = IntGauge::with_opts(
            Opts::new("vigil_build_info", "Build of the running vigil; always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        let ready = IntGauge::new("vigil_ready", "1 when /readyz answers 200, else 0.")?;
        let kubelet_last_probe_timestamp_seconds = GaugeVec::new(
            Opts::new(
                "vigil_kubelet_last_probe_timestamp_seconds",
                "Unix time of the last request with a kube-probe User-Agent, by endpoint.",
            ),
            &["endpoint"],
        )?;
        let tls_cert_expiry_timestamp_seconds = GaugeVec::new(
            Opts::new(
                "vigil_tls_cert_expiry_timestamp_seconds",
                "Earliest notAfter (Unix time) of the certificate chain the check's server presented, read also when verification failed.",
            ),
            &["check"],
        )?;
        registry.register(Box::new(tls_cert_expiry_timestamp_seconds.clone()))?;
        let config_last_reload_successful = IntGauge::new(
            "vigil_config_last_reload_successful",
            "1 when the last configuration reload worked (or none was asked since the start), 0 when it was refused.",
        )?;
        config_last_reload_successful.set(1);
        let config_last_reload_success_timestamp_seconds = Gauge::new(
            "vigil_config_last_reload_success_timestamp_seconds",
            "Unix time the running configuration was loaded: at start, then at each successful reload.",
        )?;
        config_last_reload_success_timestamp_seconds.set(unix_now());
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        registry.register(Box::new(config_last_reload_success_timestamp_seconds.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(kubelet_last_probe_timestamp_seconds.clone()))?;

        Ok(Metrics {
            registry,
            build_info,
            ready,
            kubelet_last_probe_timestamp_seconds,
            tls_cert_expiry_timestamp_seconds,
            config_last_reload_successful,
            config_last_reload_success_timestamp_seconds,
            series: Arc::default(),
            last_render_len: Arc::default(),
            groups: Arc::default(),
        })
    }

    /// The figures of upstream `name`, created at 0 so that dashboards see the upstream before
    /// its first answer. The `vigil_upstream_*` families exist only once an upstream asked.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamSeries> {
        self.series.upstream(name)
    }

    /// Creates and registers the gateway's series (replacing those of an earlier gateway check).
    pub fn gateway(&self) -> Result<GatewayMetrics, MetricsError> {
        let metrics = GatewayMetrics {
            up: IntGauge::new(
                "vigil_gateway_up",
                "1 when the gateway's health endpoint answered as expected.",
            )?,
            pool_saturation_ratio: Gauge::new(
                "vigil_gateway_pool_saturation_ratio",
                "The gateway's DB pool connections in use / max, summed over its pools.",
            )?,
            pool_connections: GaugeVec::new(
                Opts::new(
                    "vigil_gateway_pool_connections",
                    "The gateway's DB pool connections by state, summed over its pools.",
                ),
                &["state"],
            )?,
            error_ratio: GaugeVec::new(
                Opts::new(
                    "vigil_gateway_error_ratio",
                    "Share of the gateway's served requests that answered 5xx over the window.",
                ),
                &[],
            )?,
            request_duration_p95_seconds: GaugeVec::new(
                Opts::new(
                    "vigil_gateway_request_duration_p95_seconds",
                    "p95 of the gateway's served request durations over the window.",
                ),
                &[],
            )?,
            error_ratio_registered: Arc::new(OnceLock::new()),
            p95_registered: Arc::new(OnceLock::new()),
        };
        let m = metrics.clone();
        self.register_group(Group::Gateway, move || {
            vec![
                Box::new(m.up.clone()),
                Box::new(m.pool_saturation_ratio.clone()),
                Box::new(m.pool_connections.clone()),
                Box::new(m.error_ratio.clone()),
                Box::new(m.request_duration_p95_seconds.clone()),
            ]
        })?;
        Ok(metrics)
    }

    /// Registers `group`'s series (what `collectors` makes), first removing what an earlier
    /// check of the kind registered.
    fn register_group(
        &self,
        group: Group,
        collectors: impl Fn() -> Vec<Box<dyn Collector>> + Send + Sync + 'static,
    ) -> Result<(), MetricsError> {
        self.install(group, Arc::new(collectors))
    }

    fn install(&self, group: Group, collectors: Collectors) -> Result<(), MetricsError> {
        self.retire(group);
        for collector in collectors() {
            self.registry.register(collector)?;
        }
        lock(&self.groups).insert(group, collectors);
        Ok(())
    }

    /// Removes `group`'s series from the registry: its check is gone (or about to be rebuilt).
    pub fn retire(&self, group: Group) {
        let removed = lock(&self.groups).remove(&group);
        for collector in removed.map(|make| make()).into_iter().flatten() {
            let _ = self.registry.unregister(collector);
        }
    }

    /// Handles for building checks without touching what `/metrics` shows: a registry of their
    /// own, the same per-check series. [`Metrics::adopt`] then makes them the live ones, so
    /// that a reload that fails half-way through its builds changes nothing.
    pub fn staging(&self) -> Metrics {
        Metrics {
            registry: Registry::new(),
            groups: Arc::default(),
            ..self.clone()
        }
    }

    /// Takes the groups registered on `staging` (see [`Metrics::staging`]) into the live
    /// registry, each replacing the group of the same kind.
    pub fn adopt(&self, staging: &Metrics) -> Result<(), MetricsError> {
        let groups: Vec<(Group, Collectors)> = lock(&staging.groups).drain().collect();
        for (group, collectors) in groups {
            self.install(group, collectors)?;
        }
        Ok(())
    }

    /// Removes the run figures of check `name` (and its upstream figures): its check is gone.
    pub fn retire_check(&self, name: &str) {
        self.series.remove_check(name);
        let _ = self.tls_cert_expiry_timestamp_seconds.remove_label_values(&[name]);
        if let Some(upstream) = name.strip_prefix("upstream:") {
            self.series.remove_upstream(upstream);
        }
        for group in Group::of_check(name) {
            self.retire(*group);
        }
    }

    /// The run figures of check `name`, created at 0 at start so that dashboards see every
    /// configured check before its first run ends.
    pub fn register_check(&self, name: &str) -> Arc<CheckSeries> {
        self.series.check(name)
    }

    /// The Prometheus text exposition of everything, with `statuses` (each check's reported
    /// status now, in order) as `vigil_check_status`.
    pub fn render(&self, statuses: &[(String, Option<Status>)]) -> String {
        // The last exposition's size plus a little: one allocation instead of a dozen doublings
        // of a buffer that reaches megabytes with a thousand upstreams.
        let mut out = String::with_capacity(self.last_render_len.load(Ordering::Relaxed) / 8 * 9 + 1024);
        // Encoding into a String cannot fail on I/O; an error here would be a malformed metric.
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "Rendering metrics failed");
        }
        self.series.write_text(statuses, &mut out);
        self.last_render_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// The registry, for checks that add metrics of their own kind at build time.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The `jwt` check's figures, registered only when `[jwt]` is configured, and each group only
/// when the check measures it: a gauge that is never set would export a misleading 0 (a
/// `vigil_jwt_gateway_rejects_forged_token 0` without `validate_url` would page someone).
#[derive(Clone, Default)]
pub struct JwtMetrics {
    /// With a shared secret (HS256/384/512).
    pub secret: Option<JwtSecretMetrics>,
    /// With `validate_url` and a shared secret.
    pub gateway: Option<JwtGatewayMetrics>,
    /// With `jwks_url`: the keys in the last good set.
    pub jwks_keys: Option<IntGauge>,
}

/// The mounted secret: valid or not, which one (by fingerprint), how often it changed.
#[derive(Clone)]
pub struct JwtSecretMetrics {
    pub valid: IntGauge,
    /// One series at 1, labelled with the current fingerprint; the previous one is removed.
    pub info: IntGaugeVec,
    pub rotations_total: IntCounter,
}

/// What the gateway's `validate_url` answered to the probe tokens.
#[derive(Clone)]
pub struct JwtGatewayMetrics {
    pub accepts_valid_token: IntGauge,
    pub rejects_forged_token: IntGauge,
}

impl JwtMetrics {
    /// Registers the groups asked for in `metrics`' registry.
    pub fn register(metrics: &Metrics, secret: bool, gateway: bool, jwks: bool) -> Result<JwtMetrics, MetricsError> {
        for group in Group::of_check("jwt") {
            metrics.retire(*group);
        }
        let secret = if secret {
            let group = JwtSecretMetrics {
                valid: IntGauge::new(
                    "vigil_jwt_secret_valid",
                    "1 when the mounted JWT secret passes every hygiene rule and signs a token that verifies.",
                )?,
                info: IntGaugeVec::new(
                    Opts::new(
                        "vigil_jwt_secret_info",
                        "Always 1; labels: the algorithm and the fingerprint (first 8 hex digits of the SHA-256) of the current secret.",
                    ),
                    &["algorithm", "fingerprint"],
                )?,
                rotations_total: IntCounter::new(
                    "vigil_jwt_secret_rotations_total",
                    "Changes of the mounted JWT secret seen since the agent started.",
                )?,
            };
            let handles = group.clone();
            let collectors = move || -> Vec<Box<dyn Collector>> {
                vec![
                    Box::new(handles.valid.clone()),
                    Box::new(handles.info.clone()),
                    Box::new(handles.rotations_total.clone()),
                ]
            };
            metrics.register_group(Group::JwtSecret, collectors)?;
            Some(group)
        } else {
            None
        };
        let gateway = if gateway {
            let group = JwtGatewayMetrics {
                accepts_valid_token: IntGauge::new(
                    "vigil_jwt_gateway_accepts_valid_token",
                    "1 when the gateway accepted (2xx) a fresh token signed with the mounted secret, 0 when it rejected it.",
                )?,
                rejects_forged_token: IntGauge::new(
                    "vigil_jwt_gateway_rejects_forged_token",
                    "1 when the gateway rejected (401/403) a token signed with a random key, 0 when it accepted it.",
                )?,
            };
            let handles = group.clone();
            let collectors = move || -> Vec<Box<dyn Collector>> {
                vec![
                    Box::new(handles.accepts_valid_token.clone()),
                    Box::new(handles.rejects_forged_token.clone()),
                ]
            };
            metrics.register_group(Group::JwtGateway, collectors)?;
            Some(group)
        } else {
            None
        };
        let jwks_keys = if jwks {
            let gauge = IntGauge::new(
                "vigil_jwks_keys",
                "Keys in the last good JWKS fetched from the auth service.",
            )?;
            let handle = gauge.clone();
            metrics.register_group(Group::Jwks, move || vec![Box::new(handle.clone())])?;
            Some(gauge)
        } else {
            None
        };
        Ok(JwtMetrics {
            secret,
            gateway,
            jwks_keys,
        })
    }
}

/// The `postgres` check's figures; registered only when `[postgres]` is configured, so that
/// `vigil_postgres_up` is absent (not 0) where there is no database to watch.
#[derive(Clone)]
pub struct PostgresMetrics {
    /// 1 when the server answered this run (on the kept connection or the pool), even when full.
    pub up: IntGauge,
    pub query_duration_seconds: Histogram,
    /// Client backends by state: active, idle, idle_in_transaction, … (the agent's own included).
    pub connections: IntGaugeVec,
    /// Client backends by application_name: the top 10, the rest as `other`.
    pub connections_by_application: IntGaugeVec,
    /// Usable connections: max_connections minus the reserved ones.
    pub max_connections: IntGauge,
    pub connection_saturation_ratio: Gauge,
    /// The agent's own pool: in_use, idle, waiting.
    pub pool_connections: IntGaugeVec,
}

/// `vigil_postgres_connections{state}` label values, in PostgreSQL's order; `unknown` counts
/// sessions whose state the agent's role may not see.
pub const POSTGRES_CONNECTION_STATES: &[&str] = &[
    "active",
    "idle",
    "idle_in_transaction",
    "idle_in_transaction_aborted",
    "fastpath_function_call",
    "disabled",
    "unknown",
];

impl SystemMetrics {
    /// Creates and registers the `vigil_container_*` series.
    pub fn register(metrics: &Metrics) -> Result<SystemMetrics, MetricsError> {
        let system = SystemMetrics {
            cpu_usage_ratio: Gauge::new(
                "vigil_container_cpu_usage_ratio",
                "CPU used over the last interval, as a share of the container's CPU limit (of the host's cores without one).",
            )?,
            memory_working_set_bytes: Gauge::new(
                "vigil_container_memory_working_set_bytes",
                "Memory working set: usage minus inactive file cache.",
            )?,
            memory_limit_bytes: Gauge::new(
                "vigil_container_memory_limit_bytes",
                "The container's memory limit (the host's memory without one).",
            )?,
            cpu_throttled_seconds_total: prometheus::Counter::new(
                "vigil_container_cpu_throttled_seconds_total",
                "Time the container's CPU was throttled by its quota.",
            )?,
            oom_kills_total: IntCounter::new(
                "vigil_container_oom_kills_total",
                "Processes of the container killed by the OOM killer.",
            )?,
        };

        let handles = system.clone();
        let collectors = move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.cpu_usage_ratio.clone()),
                Box::new(handles.memory_working_set_bytes.clone()),
                Box::new(handles.memory_limit_bytes.clone()),
                Box::new(handles.cpu_throttled_seconds_total.clone()),
                Box::new(handles.oom_kills_total.clone()),
            ]
        };
        metrics.register_group(Group::System, collectors)?;
        Ok(system)
    }
}

impl PostgresMetrics {
    /// Creates and registers the postgres series (every label value at 0).
    pub fn register(metrics: &Metrics) -> Result<PostgresMetrics, MetricsError> {
        let pg = PostgresMetrics {
            up: IntGauge::new(
                "vigil_postgres_up",
                "1 when PostgreSQL answered the last run (also when it refuses new clients), else 0.",
            )?,
            query_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vigil_postgres_query_duration_seconds",
                    "Duration of the trivial query (SELECT 1) on a connection of the agent's pool.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
            )?,
            connections: IntGaugeVec::new(
                Opts::new(
                    "vigil_postgres_connections",
                    "Client connections to the server by state, the agent's own included.",
                ),
                &["state"],
            )?,
            connections_by_application: IntGaugeVec::new(
                Opts::new(
                    "vigil_postgres_connections_by_application",
                    "Client connections by application_name: the 10 with the most, the others summed as \"other\" (\"\" for none set).",
                ),
                &["application_name"],
            )?,
            max_connections: IntGauge::new(
                "vigil_postgres_max_connections",
                "Usable connections: max_connections minus superuser_reserved_connections and reserved_connections.",
            )?,
            connection_saturation_ratio: Gauge::new(
                "vigil_postgres_connection_saturation_ratio",
                "Client connections in use / usable connections.",
            )?,
            pool_connections: IntGaugeVec::new(
                Opts::new(
                    "vigil_postgres_pool_connections",
                    "The agent's own connection pool by state (in_use, idle, waiting); one kept connection is beside it.",
                ),
                &["state"],
            )?,
        };
        for state in POSTGRES_CONNECTION_STATES {
            pg.connections.with_label_values(&[*state]);
        }
        for state in ["in_use", "idle", "waiting"] {
            pg.pool_connections.with_label_values(&[state]);
        }
        let handles = pg.clone();
        let collectors = move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.up.clone()),
                Box::new(handles.query_duration_seconds.clone()),
                Box::new(handles.connections.clone()),
                Box::new(handles.connections_by_application.clone()),
                Box::new(handles.max_connections.clone()),
                Box::new(handles.connection_saturation_ratio.clone()),
                Box::new(handles.pool_connections.clone()),
            ]
        };
        metrics.register_group(Group::Postgres, collectors)?;
        Ok(pg)
    }
}

/// A poisoned lock only means another thread panicked while holding it; the map is whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now as Unix seconds, for timestamp gauges.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `[kubernetes]`'s figures (the `pod` check): registered only while `[kubernetes]` is
/// configured. Each `vigil_pod_container_*` series is labelled with the watched container only
/// (nothing else of the pod spec is shown); a figure that is not known has no series.
#[derive(Clone)]
pub struct KubernetesMetrics {
    pub api_up: IntGauge,
    pub container_ready: IntGaugeVec,
    /// Counts up by the kubelet's restart count (its rises since vigil started, plus the count
    /// at the first look).
    pub container_restarts_total: IntCounterVec,
    pub container_last_termination_info: IntGaugeVec,
    pub container_cpu_usage_cores: GaugeVec,
    pub container_cpu_limit_cores: GaugeVec,
    pub container_memory_usage_bytes: GaugeVec,
    pub container_memory_limit_bytes: GaugeVec,
    pub service_endpoints: IntGaugeVec,
}

/// `vigil_service_endpoints{condition}` label values.
pub const ENDPOINT_CONDITIONS: [&str; 3] = ["ready", "serving", "terminating"];

impl KubernetesMetrics {
    /// Creates and registers the group.
    pub fn register(metrics: &Metrics) -> Result<KubernetesMetrics, MetricsError> {
        let container = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["container"]);
        let k = KubernetesMetrics {
            api_up: IntGauge::new(
                "vigil_kubernetes_api_up",
                "1 when the last request or watch of every part vigil asks the Kubernetes API for (its pod, the Service's EndpointSlices, the metrics API, Events) worked, else 0.",
            )?,
            container_ready: IntGaugeVec::new(
                Opts::new(
                    "vigil_pod_container_ready",
                    "1 when the watched container of this pod is ready (its status in the pod).",
                ),
                &["container"],
            )?,
            container_restarts_total: IntCounterVec::new(
                Opts::new(
                    "vigil_pod_container_restarts_total",
                    "The kubelet's restart count of the watched container.",
                ),
                &["container"],
            )?,
            container_last_termination_info: IntGaugeVec::new(
                Opts::new(
                    "vigil_pod_container_last_termination_info",
                    "Always 1; the reason of the watched container's last termination (OOMKilled, Error, Completed, ...).",
                ),
                &["container", "reason"],
            )?,
            container_cpu_usage_cores: container(
                "vigil_pod_container_cpu_usage_cores",
                "CPU the watched container uses, in cores, from the metrics API (as kubectl top reads it).",
            )?,
            container_cpu_limit_cores: container(
                "vigil_pod_container_cpu_limit_cores",
                "The watched container's CPU limit in cores; no series without a limit.",
            )?,
            container_memory_usage_bytes: container(
                "vigil_pod_container_memory_usage_bytes",
                "Memory working set of the watched container, from the metrics API.",
            )?,
            container_memory_limit_bytes: container(
                "vigil_pod_container_memory_limit_bytes",
                "The watched container's memory limit; no series without a limit.",
            )?,
            service_endpoints: IntGaugeVec::new(
                Opts::new(
                    "vigil_service_endpoints",
                    "Endpoints of the watched Service by condition, from its EndpointSlices.",
                ),
                &["service", "condition"],
            )?,
        };
        let handles = k.clone();
        metrics.register_group(Group::Kubernetes, move || -> Vec<Box<dyn Collector>> {
            vec![
                Box::new(handles.api_up.clone()),
                Box::new(handles.container_ready.clone()),
                Box::new(handles.container_restarts_total.clone()),
                Box::new(handles.container_last_termination_info.clone()),
                Box::new(handles.container_cpu_usage_cores.clone()),
                Box::new(handles.container_cpu_limit_cores.clone()),
                Box::new(handles.container_memory_usage_bytes.clone()),
                Box::new(handles.container_memory_limit_bytes.clone()),
                Box::new(handles.service_endpoints.clone()),
            ]
        })?;
        Ok(k)
    }
}

/// `[fleet]`'s figures; registered only when `[fleet]` is configured.
#[derive(Clone)]
pub struct FleetMetrics {
    /// Peers known after the last resolution, this replica left out.
    pub peers: IntGauge,
    /// 1 while this replica stays ready through a fleet-wide failure of `check`.
    pub panic: IntGaugeVec,
}

impl FleetMetrics {
    /// Creates and registers `vigil_fleet_peers` and `vigil_fleet_panic{check}`.
    pub fn register(metrics: &Metrics) -> Result<FleetMetrics, MetricsError> {
        let fleet = FleetMetrics {
            peers: IntGauge::new(
                "vigil_fleet_peers",
                "Peers known from fleet.peers at the last resolution, this replica left out.",
            )?,
            panic: IntGaugeVec::new(
                Opts::new(
                    "vigil_fleet_panic",
                    "1 while this replica stays ready through a fleet-wide failure of the shared check, else 0.",
                ),
                &["check"],
            )?,
        };
        metrics.registry.register(Box::new(fleet.peers.clone()))?;
        metrics.registry.register(Box::new(fleet.panic.clone()))?;
        Ok(fleet)
    }
}

/// Buckets for durations of checks and requests: fine below 100 ms, reaching 10 s with 2 s
/// (the runbook's latency threshold) as a boundary.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];
