//! The `sockets` check's figures: `vigil_pod_tcp_connections{port,state}`,
//! `vigil_pod_tcp_listen_queue{port}`, `vigil_pod_tcp_listen_overflows_total`.
//!
//! Labelled by port and state only: never an address (one series per client would be
//! unbounded). Written from the last reading by a collector of its own, so that a figure that is
//! not known has no series: a listen port nothing listens on has no queue, and the overflow
//! counter appears only once the kernel's value was read (a counter exported at 0 before its
//! first read would jump to the kernel's total, which `increase()` takes for a burst of drops
//! every time vigil restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::procfs::{ByState, TcpState};
use crate::metrics::{Metrics, MetricsError};

const CONNECTIONS: &str = "vigil_pod_tcp_connections";
const LISTEN_QUEUE: &str = "vigil_pod_tcp_listen_queue";
const OVERFLOWS: &str = "vigil_pod_tcp_listen_overflows_total";

/// What the last reading exported.
#[derive(Debug, Default, Clone)]
pub(crate) struct Figures {
    /// Each watched remote port with its connections by state.
    pub connections: Vec<(u16, ByState)>,
    /// Each watched listening port that has a listener, with its accept queue.
    pub listen_queue: Vec<(u16, u64)>,
    /// The namespace's `ListenOverflows`, once read.
    pub overflows: Option<u64>,
}

/// The check's series; cheap to clone.
#[derive(Clone)]
pub(crate) struct SocketsMetrics {
    figures: Arc<Mutex<Figures>>,
    descs: Arc<[Desc; 3]>,
}

impl SocketsMetrics {
    /// Creates and registers the group.
    pub(crate) fn register(metrics: &Metrics, name: &str) -> Result<SocketsMetrics, MetricsError> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
        };
        let descs = [
            desc(
                CONNECTIONS,
                "The pod's TCP connections to each watched remote port, by state (from /proc/net/tcp and tcp6).",
                &["port", "state"],
            )?,
            desc(
                LISTEN_QUEUE,
                "Connections the kernel completed that the gateway has not accepted yet, by watched listening port.",
                &["port"],
            )?,
            desc(
                OVERFLOWS,
                "The pod network namespace's ListenOverflows: connections dropped because an accept queue was full.",
                &[],
            )?,
        ];
        let sockets = SocketsMetrics {
            figures: Arc::default(),
            descs: Arc::new(descs),
        };
        let handle = sockets.clone();
        metrics.register_group(name, move || vec![Box::new(handle.clone())])?;
        Ok(sockets)
    }

    /// Replaces what is exported.
    pub(crate) fn set(&self, figures: Figures) {
        *self.figures.lock().unwrap_or_else(PoisonError::into_inner) = figures;
    }

    /// What is exported now.
    pub(crate) fn get(&self) -> Figures {
        self.figures.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Collector for SocketsMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let figures = self.get();
        let [connections, queue, overflows] = &*self.descs;
        let mut out = Vec::with_capacity(3);
        let by_state = figures.connections.iter().flat_map(|(port, states)| {
            states
                .iter()
                // A listener is not a connection: never counted under a remote port.
                .filter(|(state, _)| *state != TcpState::Listen)
                .map(move |(state, n)| gauge(&[("port", &port.to_string()), ("state", state.label())], n))
        });
        push(&mut out, connections, MetricType::GAUGE, by_state.collect());
        let queues = figures
            .listen_queue
            .iter()
            .map(|(port, n)| gauge(&[("port", &port.to_string())], *n))
            .collect();
        push(&mut out, queue, MetricType::GAUGE, queues);
        if let Some(total) = figures.overflows {
            let mut counter = Counter::default();
            counter.set_value(total as f64);
            let mut metric = Metric::default();
            metric.set_counter(counter);
            push(&mut out, overflows, MetricType::COUNTER, vec![metric]);
        }
        out
    }
}

fn gauge(labels: &[(&str, &str)], value: u64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    let mut metric = Metric::from_gauge(gauge);
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect(),
    );
    metric
}

/// Adds a family with `metrics`; a family without series is left out, as the registry's own are.
fn push(out: &mut Vec<MetricFamily>, desc: &Desc, kind: MetricType, metrics: Vec<Metric>) {
    if metrics.is_empty() {
        return;
    }
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    out.push(family);
}
