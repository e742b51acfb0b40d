//! The metrics every part of the agent shares: the registry, the agent's own series, and the
//! means for a check kind to add its own (a group of collectors under the check's name, or a
//! [`TextFamily`](series::TextFamily) written straight to text). The names of a kind's series
//! live in its folder (`checks/<kind>/metrics.rs`).
//!
//! Readiness and per-check status gauges are derived from the state right before each render,
//! so a scrape always agrees with `/readyz` (including the stale rule).

pub(crate) mod series;
pub(crate) mod text;

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntGauge, Opts, Registry, TextEncoder};

use crate::core::outcome::Status;
use series::{CheckSeries, SeriesSet, TextFamily};

/// Handles to the agent's own metrics, and where the checks add theirs.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub build_info: IntGauge,
    pub ready: IntGauge,
    /// `vigil_drained`: 1 while taken out by hand (`vigil drain`); set from the state right
    /// before each render, like `ready`, so that it drops at the drain's deadline exactly.
    pub drained: IntGauge,
    pub kubelet_last_probe_timestamp_seconds: GaugeVec,
    /// `vigil_tls_cert_expiry_timestamp_seconds{check}`: a series per check once it has seen a
    /// certificate.
    pub tls_cert_expiry_timestamp_seconds: GaugeVec,
    /// `vigil_tls_client_cert_expiry_timestamp_seconds{check}`: our own client certificate's
    /// `notAfter`, a series per check that presents one (mutual TLS).
    pub tls_client_cert_expiry_timestamp_seconds: GaugeVec,
    /// 1 when the last configuration reload (or the start) worked, 0 when it was refused.
    pub config_last_reload_successful: IntGauge,
    /// When the running configuration was loaded (at start, then by each successful reload).
    pub config_last_reload_success_timestamp_seconds: Gauge,
    /// `vigil_check_*`: one set of figures per check, outside the registry (see [`series`]).
    series: Arc<SeriesSet>,
    /// The families check kinds write themselves, one per kind (by its type).
    families: Arc<Mutex<Families>>,
    /// The size of the last exposition, to size the next one's buffer.
    last_render_len: Arc<AtomicUsize>,
    /// What each check registered, by the check's name, so that a check rebuilt by a reload
    /// replaces its own series and a check removed by one takes them with it.
    groups: Arc<Mutex<Groups>>,
}

/// A group's collectors, as a maker of fresh handles to them (a registry takes and gives back
/// boxes): what registers them, and what unregisters them.
type Collectors = Arc<dyn Fn() -> Vec<Box<dyn Collector>> + Send + Sync>;
type Groups = HashMap<String, Vec<Collectors>>;
/// The families of each kind that keeps some, by the kind's type.
type Families = Vec<(TypeId, Arc<dyn TextFamily>)>;

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
        let drained = IntGauge::new(
            "vigil_drained",
            "1 while this replica is taken out of the Service by hand (vigil drain), else 0.",
        )?;
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
        let tls_client_cert_expiry_timestamp_seconds = GaugeVec::new(
            Opts::new(
                "vigil_tls_client_cert_expiry_timestamp_seconds",
                "notAfter (Unix time) of the client certificate the check presents for mutual TLS (client_cert_file), as last read.",
            ),
            &["check"],
        )?;
        registry.register(Box::new(tls_client_cert_expiry_timestamp_seconds.clone()))?;
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
        registry.register(Box::new(drained.clone()))?;
        registry.register(Box::new(kubelet_last_probe_timestamp_seconds.clone()))?;

        Ok(Metrics {
            registry,
            build_info,
            ready,
            drained,
            kubelet_last_probe_timestamp_seconds,
            tls_cert_expiry_timestamp_seconds,
            tls_client_cert_expiry_timestamp_seconds,
            config_last_reload_successful,
            config_last_reload_success_timestamp_seconds,
            series: Arc::default(),
            last_render_len: Arc::default(),
            groups: Arc::default(),
            families: Arc::default(),
        })
    }

    /// Registers a group of `check`'s series (what `collectors` makes). A check registers
    /// each of its groups when it is built; [`Metrics::retire_check`] takes them all away.
    pub fn register_group(
        &self,
        check: &str,
        collectors: impl Fn() -> Vec<Box<dyn Collector>> + Send + Sync + 'static,
    ) -> Result<(), MetricsError> {
        let collectors: Collectors = Arc::new(collectors);
        for collector in collectors() {
            self.registry.register(collector)?;
        }
        lock(&self.groups).entry(check.to_owned()).or_default().push(collectors);
        Ok(())
    }

    /// Removes `check`'s groups from the registry: the check is gone (or about to be rebuilt).
    fn retire_groups(&self, check: &str) {
        let removed = lock(&self.groups).remove(check);
        for collector in removed.into_iter().flatten().flat_map(|make| make()) {
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
    /// registry, each check's replacing what the check registered before.
    pub fn adopt(&self, staging: &Metrics) -> Result<(), MetricsError> {
        let groups: Vec<(String, Vec<Collectors>)> = lock(&staging.groups).drain().collect();
        for (check, collectors) in groups {
            self.retire_groups(&check);
            for make in &collectors {
                for collector in make() {
                    self.registry.register(collector)?;
                }
            }
            lock(&self.groups).insert(check, collectors);
        }
        Ok(())
    }

    /// Removes everything of check `name`: its run figures, its groups, its series in the
    /// kinds' families, its certificate expiries. The check is gone.
    pub fn retire_check(&self, name: &str) {
        self.series.remove_check(name);
        let _ = self.tls_cert_expiry_timestamp_seconds.remove_label_values(&[name]);
        let _ = self
            .tls_client_cert_expiry_timestamp_seconds
            .remove_label_values(&[name]);
        for (_, family) in lock(&self.families).iter() {
            family.retire(name);
        }
        self.retire_groups(name);
    }

    /// The run figures of check `name`, created at 0 at start so that dashboards see every
    /// configured check before its first run ends.
    pub fn register_check(&self, name: &str) -> Arc<CheckSeries> {
        self.series.check(name)
    }

    /// The families of kind `T`, made on first use: one object for all the kind's checks.
    pub fn family<T: TextFamily + Default>(&self) -> Arc<T> {
        let mut families = lock(&self.families);
        let found = families
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, family)| Arc::clone(family).as_any().downcast::<T>().ok());
        if let Some(family) = found {
            return family;
        }
        let family = Arc::new(T::default());
        families.push((TypeId::of::<T>(), Arc::clone(&family) as Arc<dyn TextFamily>));
        family
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
        for (_, family) in lock(&self.families).iter() {
            family.write_text(&mut out);
        }
        self.last_render_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// The registry, for parts that add metrics of their own (the fleet).
    pub fn registry(&self) -> &Registry {
        &self.registry
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

/// Buckets for durations of checks and requests: fine below 100 ms, reaching 10 s with 2 s
/// (the runbook's latency threshold) as a boundary.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];
