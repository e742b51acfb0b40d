//! The `sockets` check: the pod's TCP sockets as the kernel lists them (vigil shares the pod's
//! network namespace, so these are the gateway's): connections per watched remote port and
//! state, the accept queue of each listening port, and the namespace's listen overflows. The
//! runbook's `netstat -an | grep :5432`, without a shell in the gateway's image.
//!
//! Each run reads `/proc/net/tcp`, `/proc/net/tcp6` and `/proc/net/netstat` on tokio's blocking
//! pool, one line at a time into counts whose size the configuration fixes ([`procfs`]): a pod
//! with 100k sockets costs a bounded read and no memory per socket. Only one read runs at a
//! time; a read that has not returned (a wedged kernel) makes later runs fail at once naming it,
//! as the `system` check does.
//!
//! It warns, never fails on what it counts: CLOSE_WAIT connections to a port at
//! `close_wait_warn` (the gateway leaks connections the server closed), connections to a port in
//! SYN_SENT in two runs running (the port is unreachable from the pod), and listen overflows
//! rising since the last run (the kernel dropped connections at a full accept queue: 503s that
//! no log shows).

pub(crate) mod config;
pub(crate) mod metrics;
mod procfs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use self::config::Sockets;
use self::metrics::{Figures, SocketsMetrics};
use self::procfs::{ListenCounters, Tally, TcpState};
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled};
use crate::config::{CheckSection, CheckSettings, Invalid, Scope};
use crate::core::files;
use crate::core::outcome::{FailureKind, Figure, Finding, Outcome, Report, Unit};

const CLOSE_WAIT_HINT: &str = "the gateway does not close connections the server closed (a leak in its pool or \
                               client): compare its pool's idle timeout with the server's, kubectl logs for the \
                               gateway; a restart frees them if the count keeps growing";
const SYN_SENT_HINT: &str = "the pod's connects to this port get no answer: kubectl get networkpolicy -n \
                             api-gateway, the Service's endpoints (kubectl get endpoints), the server's firewall";
const OVERFLOW_HINT: &str = "connections arrive faster than the gateway accepts them: its accept loop or workers are \
                             saturated (kubectl top pod; more replicas or workers) or its listen backlog is small \
                             (net.core.somaxconn); these are 503s no log shows";

const ESTABLISHED: Figure = Figure::new("established", Unit::Count);
const CLOSE_WAIT: Figure = Figure::new("close_wait", Unit::Count);
const SYN_SENT: Figure = Figure::new("syn_sent", Unit::Count);
const LISTEN_QUEUE: Figure = Figure::new("listen_queue", Unit::Count);
const LISTEN_OVERFLOWS: Figure = Figure::new("listen_overflows", Unit::Count);

/// Where the kernel lists the namespace's sockets.
const PROC_NET: &str = "/proc/net";

/// The `sockets` kind: `[sockets]`, not critical, local by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = Sockets;
    type Section = Sockets;
    const TABLE: &'static str = "sockets";
    const CRITICAL: bool = false;
    const SCOPE: Scope = Scope::Local;

    fn resolve(keys: Sockets, _at: &str, _settings: &CheckSettings) -> Result<Sockets, Invalid> {
        keys.validate()?;
        Ok(keys)
    }

    /// Without `ports`, the ports of `[postgres]`'s URL (the database the gateway's pool
    /// connects to), read from its section's keys.
    fn complete(section: &Sockets, all: &[CheckSection]) -> Option<Sockets> {
        if section.ports.is_some() {
            return None;
        }
        let mut ports: Vec<u16> = all
            .iter()
            .filter(|other| other.table == "postgres")
            .flat_map(|postgres| postgres.keys.remote_ports())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        Some(Sockets {
            ports: Some(ports),
            ..section.clone()
        })
    }

    fn build(
        section: &Sockets,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        let metrics = SocketsMetrics::register(cx.metrics, name).map_err(|e| BuildError::new(name, e))?;
        let check = SocketsCheck::new(section, Path::new(PROC_NET), metrics);
        Ok(Scheduled::new(name, *settings, check))
    }
}

/// Counts the pod's sockets; see the module docs.
pub(crate) struct SocketsCheck {
    close_wait_warn: u64,
    /// What does the blocking reads; locked for as long as a read runs.
    reader: Arc<tokio::sync::Mutex<Reader>>,
    metrics: SocketsMetrics,
    /// What the previous run saw: connections in SYN_SENT by watched port, and the overflow
    /// counter.
    previous: Option<Previous>,
}

#[derive(Debug, Clone, Default)]
struct Previous {
    syn_sent: Vec<(u16, u64)>,
    overflows: Option<u64>,
}

/// The reads of one run.
struct Reader {
    root: PathBuf,
    ports: Vec<u16>,
    listen_ports: Vec<u16>,
}

/// What one read found.
struct Reading {
    tally: Tally,
    /// `/proc/net/netstat`'s counters, or why they cannot be read.
    counters: Result<ListenCounters, String>,
}

impl Reader {
    /// Both TCP tables line by line (an absent `tcp6`, IPv6 off, is no error), then the
    /// counters. An unreadable IPv4 table is the run's failure.
    fn read(&self) -> Result<Reading, String> {
        let mut tally = Tally::new(&self.ports, &self.listen_ports);
        for (table, required) in [("tcp", true), ("tcp6", false)] {
            let path = self.root.join(table);
            let stream = match files::stream(&path, files::TABLE_CAP) {
                Ok(stream) => stream,
                Err(files::FileError::Io(e)) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            tally
                .read_table(stream)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        }
        let netstat = self.root.join("netstat");
        let counters = files::read(&netstat, files::KERNEL_CAP)
            .map_err(|e| format!("cannot read {}: {e}", netstat.display()))
            .and_then(|text| procfs::listen_counters(&text).map_err(|e| e.to_string()));
        Ok(Reading { tally, counters })
    }
}

impl SocketsCheck {
    fn new(config: &Sockets, root: &Path, metrics: SocketsMetrics) -> SocketsCheck {
        SocketsCheck {
            close_wait_warn: config.close_wait_warn,
            reader: Arc::new(tokio::sync::Mutex::new(Reader {
                root: root.to_owned(),
                ports: config.watched().to_vec(),
                listen_ports: config.listen_ports.clone(),
            })),
            metrics,
            previous: None,
        }
    }

    /// One run: the reads on the blocking pool, then the assessment.
    async fn run_once(&mut self) -> Outcome {
        let Ok(reader) = Arc::clone(&self.reader).try_lock_owned() else {
            return Outcome::fail(
                FailureKind::Io,
                "an earlier read of /proc/net has not returned: the kernel interface hangs",
            )
            .with_hint("see the node's kernel log (dmesg) and vigil's log; vigil's other checks are not affected");
        };
        match tokio::task::spawn_blocking(move || reader.read()).await {
            Ok(Ok(reading)) => self.assess(&reading),
            Ok(Err(error)) => {
                let mut figures = self.metrics.get();
                figures.connections.clear();
                figures.listen_queue.clear();
                self.metrics.set(figures);
                Outcome::fail(FailureKind::Io, error)
                    .with_hint("vigil reads the pod's sockets from /proc/net: is /proc mounted in vigil's container?")
            }
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Outcome::fail(FailureKind::Io, format!("the read was cancelled: {error}")),
        }
    }

    /// Turns one reading into figures, metrics and the outcome; remembers what the next run
    /// compares with. Synchronous: a run cut at its timeout never leaves it half-done.
    fn assess(&mut self, reading: &Reading) -> Outcome {
        let tally = &reading.tally;
        let counters = reading.counters.as_ref().ok();
        let overflows = counters.and_then(|c| c.overflows);
        let previous = self.previous.take().unwrap_or_default();
        let mut report = Report::new();

        for (port, states) in tally.watched() {
            let close_wait = states.get(TcpState::CloseWait);
            if close_wait >= self.close_wait_warn {
                report.find(
                    Finding::warn(
                        FailureKind::Threshold,
                        format!(
                            "{close_wait} {} connections to port {port} (warn at {}): the gateway does not close connections the server closed",
                            TcpState::CloseWait.netstat_name(),
                            self.close_wait_warn
                        ),
                    )
                    .with_hint(CLOSE_WAIT_HINT),
                );
            }
            let syn_sent = states.get(TcpState::SynSent);
            let before = previous
                .syn_sent
                .iter()
                .find(|(p, _)| *p == port)
                .map_or(0, |(_, n)| *n);
            let stuck = syn_sent.min(before);
            if stuck > 0 {
                let plural = if stuck == 1 { "" } else { "s" };
                report.find(
                    Finding::warn(
                        FailureKind::Timeout,
                        format!(
                            "{stuck} connection{plural} to port {port} stuck in {} over two runs: port {port} is unreachable from the pod",
                            TcpState::SynSent.netstat_name()
                        ),
                    )
                    .with_hint(SYN_SENT_HINT),
                );
            }
        }
        if let (Some(before), Some(now)) = (previous.overflows, overflows)
            && now > before
        {
            let waiting: Vec<String> = tally
                .listeners()
                .filter(|(_, l)| l.listeners > 0 && l.accept_queue > 0)
                .map(|(port, l)| format!("port {port}: {} waiting to be accepted", l.accept_queue))
                .collect();
            let waiting = match waiting.is_empty() {
                true => String::new(),
                false => format!("; {}", waiting.join(", ")),
            };
            report.find(
                Finding::warn(
                    FailureKind::Threshold,
                    format!(
                        "listen overflows rising: {} connections dropped at a full accept queue since the last run{waiting}",
                        now - before
                    ),
                )
                .with_hint(OVERFLOW_HINT),
            );
        }

        let figures = Figures {
            connections: tally.watched().map(|(port, states)| (port, *states)).collect(),
            listen_queue: tally
                .listeners()
                .filter(|(_, l)| l.listeners > 0)
                .map(|(port, l)| (port, l.accept_queue))
                .collect(),
            // A counter never goes back: a value that fell (it cannot, in one namespace) is
            // not exported.
            overflows: match (self.metrics.get().overflows, overflows) {
                (Some(exported), Some(now)) => Some(exported.max(now)),
                (exported, now) => now.or(exported),
            },
        };
        self.observe(&figures, &mut report);
        self.detail(reading, &mut report);
        self.metrics.set(figures);
        self.previous = Some(Previous {
            syn_sent: tally
                .watched()
                .map(|(port, states)| (port, states.get(TcpState::SynSent)))
                .collect(),
            // A failed netstat read keeps the last value to compare with.
            overflows: overflows.or(previous.overflows),
        });
        report.into_outcome()
    }

    /// The totals over the watched ports as observations (a figure has one name; the per-port
    /// counts are in `/metrics` and `/diag`).
    fn observe(&self, figures: &Figures, report: &mut Report) {
        let total = |state: TcpState| -> f64 {
            figures
                .connections
                .iter()
                .map(|(_, states)| states.get(state))
                .sum::<u64>() as f64
        };
        if !figures.connections.is_empty() {
            report.observe(ESTABLISHED.of(total(TcpState::Established)));
            report.observe(CLOSE_WAIT.of(total(TcpState::CloseWait)));
            report.observe(SYN_SENT.of(total(TcpState::SynSent)));
        }
        if !figures.listen_queue.is_empty() {
            report.observe(LISTEN_QUEUE.of(figures.listen_queue.iter().map(|(_, n)| *n).sum::<u64>() as f64));
        }
        if let Some(overflows) = figures.overflows {
            report.observe(LISTEN_OVERFLOWS.of(overflows as f64));
        }
    }

    /// `/diag`: every watched port by state (non-zero states), the listeners, the counters, and
    /// what the read could not use.
    fn detail(&self, reading: &Reading, report: &mut Report) {
        let tally = &reading.tally;
        let ports: serde_json::Map<String, serde_json::Value> = tally
            .watched()
            .map(|(port, states)| {
                let mut shown: serde_json::Map<String, serde_json::Value> = states
                    .iter()
                    .filter(|(state, n)| *n > 0 && *state != TcpState::Listen)
                    .map(|(state, n)| (state.label().to_owned(), json!(n)))
                    .collect();
                shown.insert("total".to_owned(), json!(states.total()));
                (port.to_string(), serde_json::Value::Object(shown))
            })
            .collect();
        let listening: serde_json::Map<String, serde_json::Value> = tally
            .listeners()
            .map(|(port, l)| {
                let shown = match l.listeners {
                    0 => json!("nothing listens"),
                    n => json!({"listeners": n, "accept_queue": l.accept_queue}),
                };
                (port.to_string(), shown)
            })
            .collect();
        let all: serde_json::Map<String, serde_json::Value> = tally
            .all()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(state, n)| (state.label().to_owned(), json!(n)))
            .collect();
        report.detail("connections", serde_json::Value::Object(ports));
        report.detail("listening", serde_json::Value::Object(listening));
        report.detail("all_sockets", serde_json::Value::Object(all));
        match &reading.counters {
            Ok(counters) => {
                report.detail("listen_overflows", json!(counters.overflows));
                report.detail("listen_drops", json!(counters.drops));
            }
            Err(error) => report.detail("listen_counters_error", json!(error)),
        }
        report.detail("close_wait_warn", json!(self.close_wait_warn));
        if tally.malformed() > 0 {
            report.detail(
                "malformed_lines",
                json!({
                    "count": tally.malformed(),
                    "first": tally.first_malformed().map(|why| why.to_string()),
                }),
            );
        }
        if tally.truncated() {
            report.detail(
                "truncated",
                json!(format!(
                    "a table had more than {} lines: the counts are a lower bound",
                    procfs::MAX_LINES
                )),
            );
        }
    }
}

impl Check for SocketsCheck {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(self.run_once())
    }
}

#[cfg(test)]
mod tests;
