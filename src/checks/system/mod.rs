//! The `system` check: the container's own CPU and memory against its cgroup limits, and OOM
//! kills.
//!
//! It never fails readiness in normal operation: a busy or memory-hungry container is worth a
//! warning and an alert, not being taken out of the Service. When the cgroup cannot be read, the
//! host's figures (sysinfo, from `/proc`) stand in; only when nothing at all is readable does the
//! check fail.
//!
//! The run's few file reads (see [`cgroup`]) are blocking calls, so they run on tokio's blocking
//! pool, never on the runtime the other checks share: a read that hangs (a wedged kernel
//! interface) cannot hold anyone else up. The scheduler's cut then leaves the read running on
//! its thread; until it returns, later runs fail at once naming it instead of stacking up more
//! threads behind it. Everything after the read is synchronous, so a cut run never leaves the
//! check half-updated.

mod cgroup;
pub(crate) mod config;
pub(crate) mod metrics;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sysinfo::MemoryRefreshKind;

use self::cgroup::{Layout, Sample};
use self::metrics::SystemMetrics;
use crate::checks::system::config::System;
use crate::checks::{BuildContext, BuildError, Check, CheckKind, RunFuture, Scheduled};
use crate::config::{CheckSettings, Invalid, Scope, Shape};
use crate::core::files;
use crate::core::fmt;
use crate::core::outcome::{ComponentType, FailureKind, Finding, Observation, Outcome, Report, Unit};

// vigil's own container, never the gateway's: these hints are about vigil starving (late probes).
const CPU_HINT: &str = "vigil's own container is short of CPU, so its probes may run late: kubectl top pod <pod> \
                        --containers -n api-gateway; raise the vigil container's CPU limit (deploy/base/deployment.yaml)";
const MEMORY_HINT: &str = "vigil's own container is near its memory limit: kubectl describe pod <pod> -n api-gateway \
                           (the vigil container's Last State: OOMKilled); raise the vigil container's memory limit";

/// Where `/proc/self/cgroup` paths are meaningful: they are relative to the real cgroup mount,
/// not to a fixture tree or another root handed in through the config.
const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Watches the container's CPU, memory and OOM kills; see the module docs.
pub(crate) struct SystemCheck {
    cpu_warn: f64,
    memory_warn: f64,
    root: PathBuf,
    /// Found once: a process does not change cgroup during its life in a container.
    layout: Layout,
    /// What does the blocking reads; locked for as long as a read runs.
    reader: Arc<tokio::sync::Mutex<Reader>>,
    metrics: SystemMetrics,
    /// When the previous run read its figures, and the cgroup's CPU usage then.
    previous: Option<Previous>,
    throttled_ns: Cumulative,
    oom_kills: Cumulative,
}

#[derive(Debug, Clone, Copy)]
struct Previous {
    at: Instant,
    cpu_usage_ns: Option<u64>,
}

/// The `system` kind: `[system]`, which runs with every default when absent (`enabled =
/// false` turns it off); not critical, local by default.
pub(crate) struct Kind;

impl CheckKind for Kind {
    type Keys = System;
    type Section = System;
    const TABLE: &'static str = "system";
    const SHAPE: Shape = Shape::OnByDefault;
    const CRITICAL: bool = false;
    const SCOPE: Scope = Scope::Local;

    fn enabled(section: &System) -> bool {
        section.enabled
    }

    fn resolve(keys: System, _at: &str, _settings: &CheckSettings) -> Result<System, Invalid> {
        keys.validate()?;
        Ok(keys)
    }

    fn build(
        section: &System,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError> {
        let metrics = SystemMetrics::register(cx.metrics, name).map_err(|e| BuildError::new(name, e))?;
        Ok(Scheduled::new(name, *settings, SystemCheck::new(section, metrics)))
    }
}

impl SystemCheck {
    pub(crate) fn new(config: &System, metrics: SystemMetrics) -> SystemCheck {
        let self_cgroup = (config.cgroup_root == Path::new(DEFAULT_CGROUP_ROOT))
            .then(|| files::read_text(Path::new("/proc/self/cgroup"), files::KERNEL_CAP).ok())
            .flatten();
        SystemCheck::with_self_cgroup(config, metrics, self_cgroup.as_deref())
    }

    /// [`SystemCheck::new`] with the content of `/proc/self/cgroup` given, so that fixture
    /// trees resolve the same on every machine.
    fn with_self_cgroup(config: &System, metrics: SystemMetrics, self_cgroup: Option<&str>) -> SystemCheck {
        let (host, host_cores) = host_probe();
        let layout = Layout::discover(&config.cgroup_root, self_cgroup);
        SystemCheck {
            cpu_warn: config.cpu_warn,
            memory_warn: config.memory_warn,
            root: config.cgroup_root.clone(),
            reader: Arc::new(tokio::sync::Mutex::new(Reader {
                layout: layout.clone(),
                host,
                cores: host_cores,
            })),
            layout,
            metrics,
            previous: None,
            throttled_ns: Cumulative::default(),
            oom_kills: Cumulative::default(),
        }
    }

    /// One run: the reads on the blocking pool, then the assessment.
    async fn run(&mut self) -> Outcome {
        let Ok(reader) = Arc::clone(&self.reader).try_lock_owned() else {
            return Outcome::fail(
                FailureKind::Io,
                format!(
                    "an earlier read under {} has not returned: the kernel interface hangs",
                    self.root.display()
                ),
            )
            .with_hint("see the node's kernel log (dmesg) and vigil's log; vigil's other checks are not affected");
        };
        match tokio::task::spawn_blocking(move || Reader::read(reader)).await {
            Ok((sample, host)) => self.assess(Instant::now(), &sample, &host),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Outcome::fail(FailureKind::Io, format!("the read was cancelled: {error}")),
        }
    }

    /// One run on this thread, with the clock passed in so that tests control the interval
    /// CPU use is measured over.
    #[cfg(test)]
    fn run_at(&mut self, now: Instant) -> Outcome {
        let read = match self.reader.try_lock() {
            Ok(reader) => Reader::read(reader),
            Err(_) => return Outcome::fail(FailureKind::Io, "a read is in progress"),
        };
        self.assess(now, &read.0, &read.1)
    }

    /// Turns one reading into figures, metrics and the outcome; remembers what the next run
    /// measures against.
    fn assess(&mut self, now: Instant, sample: &Sample, host: &Host) -> Outcome {
        let mut report = Report::new();
        if sample.has_no_usage() && host.memory_total.is_none() {
            report.find(Finding::fail(
                FailureKind::Io,
                format!(
                    "cannot read any CPU or memory figure: nothing usable under {} nor in /proc/meminfo",
                    self.root.display()
                ),
            ));
            report.details(self.details(sample, None, None, None));
            return report.into_outcome();
        }
        let first_run = self.previous.is_none();
        let cpu = cpu_figures(sample, host, self.previous, now);
        let memory = memory_figures(sample, host);
        let oom_since_last_run = self.follow_counters(sample);
        self.previous = Some(Previous {
            at: now,
            cpu_usage_ns: sample.cpu_usage_ns,
        });
        self.export(&cpu, memory.as_ref());

        if let Some(ratio) = cpu.ratio.filter(|&ratio| ratio >= self.cpu_warn) {
            report.find(Finding::warn(FailureKind::Threshold, cpu.describe(ratio, self.cpu_warn)).with_hint(CPU_HINT));
        }
        if let Some(memory) = memory
            .as_ref()
            .filter(|m| m.ratio().is_some_and(|ratio| ratio >= self.memory_warn))
        {
            report
                .find(Finding::warn(FailureKind::Threshold, memory.describe(self.memory_warn)).with_hint(MEMORY_HINT));
        }
        if let Some(kills) = oom_since_last_run.filter(|&kills| kills > 0) {
            report.find(Finding::warn(FailureKind::Threshold, describe_oom(kills)).with_hint(MEMORY_HINT));
        }
        let observations = observations(&cpu, memory.as_ref(), sample);
        let mut details = self.details(sample, Some(&cpu), memory.as_ref(), oom_since_last_run);
        if cpu.ratio.is_none() {
            details["cpu_usage_note"] = json!(if first_run {
                "first run: CPU use is measured from the next run on"
            } else {
                "CPU use is unavailable this run"
            });
        }
        report.observe_all(observations);
        report.details(details);
        report.into_outcome()
    }

    /// Feeds the cumulative cgroup figures into the Prometheus counters and returns the OOM
    /// kills since the previous run (`None` on the first run: there is no "since").
    fn follow_counters(&mut self, sample: &Sample) -> Option<u64> {
        if let Some(throttled) = sample.cpu_throttled_ns {
            let growth = self.throttled_ns.advance(throttled).unwrap_or(throttled);
            self.metrics.cpu_throttled_seconds_total.inc_by(growth as f64 / 1e9);
        }
        let kills = sample.oom_kills?;
        let since_last_run = self.oom_kills.advance(kills);
        self.metrics.oom_kills_total.inc_by(since_last_run.unwrap_or(kills));
        since_last_run
    }

    fn export(&self, cpu: &Cpu, memory: Option<&Memory>) {
        if let Some(ratio) = cpu.ratio {
            self.metrics.cpu_usage_ratio.set(ratio);
        }
        if let Some(memory) = memory {
            self.metrics.memory_working_set_bytes.set(memory.working_set as f64);
            if let Some(limit) = memory.limit {
                self.metrics.memory_limit_bytes.set(limit as f64);
            }
        }
    }

    fn details(
        &self,
        sample: &Sample,
        cpu: Option<&Cpu>,
        memory: Option<&Memory>,
        oom_since_last_run: Option<u64>,
    ) -> serde_json::Value {
        let path = |dir: &Option<PathBuf>| dir.as_ref().map(|dir| dir.display().to_string());
        json!({
            "cgroup_version": self.layout.version.as_str(),
            "cgroup_paths": {
                "cpu": path(&self.layout.cpu),
                "cpuacct": path(&self.layout.cpuacct),
                "memory": path(&self.layout.memory),
            },
            "cpu_limited": cpu.is_some_and(|cpu| cpu.limited),
            "memory_limited": memory.is_some_and(|memory| memory.limited),
            "cpu_source": cpu.map(|cpu| cpu.source.as_str()),
            "memory_source": memory.map(|memory| memory.source.as_str()),
            "nr_throttled": sample.cpu_nr_throttled,
            "oom_kills_since_last_run": oom_since_last_run,
            "unavailable": sample.unavailable,
        })
    }
}

impl Check for SystemCheck {
    fn component_type(&self) -> ComponentType {
        ComponentType::System
    }

    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(SystemCheck::run(self))
    }
}

/// The blocking side of a run: the cgroup files and the host's figures.
struct Reader {
    layout: Layout,
    /// `None` where sysinfo cannot run; then the host figures are missing too.
    host: Option<sysinfo::System>,
    cores: f64,
}

impl Reader {
    fn read(mut reader: impl std::ops::DerefMut<Target = Reader>) -> (Sample, Host) {
        let sample = reader.layout.read();
        let host = reader.host_figures(sample.cpu_usage_ns.is_none());
        (sample, host)
    }

    /// Refreshes only what this run needs: RAM always (one read of `/proc/meminfo`), CPU times
    /// only when the cgroup's own usage is unreadable.
    fn host_figures(&mut self, want_cpu: bool) -> Host {
        let cores = self.cores;
        let Some(system) = self.host.as_mut() else {
            return Host {
                cores,
                ..Host::default()
            };
        };
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let memory_total = Some(system.total_memory()).filter(|&total| total > 0);
        let cpu_ratio = want_cpu.then(|| {
            system.refresh_cpu_usage();
            f64::from(system.global_cpu_usage()) / 100.0
        });
        Host {
            cores,
            memory_total,
            memory_used: memory_total.map(|_| system.used_memory()),
            cpu_ratio,
        }
    }
}

/// sysinfo and the host's core count. The first CPU refresh also fills the CPU list and gives
/// sysinfo the baseline it measures host CPU use from.
fn host_probe() -> (Option<sysinfo::System>, f64) {
    let mut host = sysinfo::System::new().ok();
    let counted = host.as_mut().map_or(0, |system| {
        system.refresh_cpu_usage();
        system.cpus().len()
    });
    // `available_parallelism` already divides by a CPU quota, so it is only a last resort.
    let cores = if counted > 0 {
        counted
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    (host, cores as f64)
}

/// What the host offers in place of cgroup figures.
#[derive(Debug, Clone, Copy, Default)]
struct Host {
    cores: f64,
    memory_total: Option<u64>,
    memory_used: Option<u64>,
    /// The host's CPU use since the previous refresh, over all its cores.
    cpu_ratio: Option<f64>,
}

/// Where a figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Cgroup,
    Host,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Cgroup => "cgroup",
            Source::Host => "host",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Cpu {
    /// Share of `cores` used since the previous run; `None` on the first run.
    ratio: Option<f64>,
    /// The limit, or the host's cores without one.
    cores: f64,
    limited: bool,
    source: Source,
}

impl Cpu {
    fn describe(&self, ratio: f64, warn: f64) -> String {
        let of = if self.limited {
            format!("its {}-core limit", round2(self.cores))
        } else {
            format!("the host's {} cores", round2(self.cores))
        };
        format!(
            "CPU at {} of {of} (warn at {})",
            fmt::percent(ratio),
            fmt::percent(warn)
        )
    }
}

/// A limit at or above the host's cores cannot bind, so it is measured like no limit.
fn cpu_figures(sample: &Sample, host: &Host, previous: Option<Previous>, now: Instant) -> Cpu {
    let limit = sample
        .cpu_limit_cores
        .filter(|&cores| cores > 0.0 && cores < host.cores);
    let cores = limit.unwrap_or(host.cores);
    let Some(previous) = previous else {
        return Cpu {
            ratio: None,
            cores,
            limited: limit.is_some(),
            source: source_of(sample.cpu_usage_ns),
        };
    };
    match (sample.cpu_usage_ns, previous.cpu_usage_ns) {
        (Some(used), Some(before)) => Cpu {
            ratio: used
                .checked_sub(before)
                .and_then(|delta| cpu_ratio(delta, now.duration_since(previous.at), cores)),
            cores,
            limited: limit.is_some(),
            source: Source::Cgroup,
        },
        (Some(_), None) => Cpu {
            ratio: None,
            cores,
            limited: limit.is_some(),
            source: Source::Cgroup,
        },
        // Without the cgroup's usage the host's is all there is, and that is a share of the
        // host's cores whatever the limit.
        (None, _) => Cpu {
            ratio: host.cpu_ratio,
            cores: host.cores,
            limited: false,
            source: Source::Host,
        },
    }
}

fn source_of<T>(cgroup_figure: Option<T>) -> Source {
    if cgroup_figure.is_some() {
        Source::Cgroup
    } else {
        Source::Host
    }
}

/// CPU time used over wall time, as a share of `cores`. `None` when no time passed.
fn cpu_ratio(used_ns: u64, elapsed: Duration, cores: f64) -> Option<f64> {
    let capacity = elapsed.as_secs_f64() * cores;
    (capacity > 0.0).then(|| used_ns as f64 / 1e9 / capacity)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Memory {
    working_set: u64,
    /// The limit, or the host's memory without one; `None` only when neither is known.
    limit: Option<u64>,
    limited: bool,
    source: Source,
}

impl Memory {
    fn ratio(&self) -> Option<f64> {
        self.limit
            .filter(|&limit| limit > 0)
            .map(|limit| self.working_set as f64 / limit as f64)
    }

    fn describe(&self, warn: f64) -> String {
        let limit = self.limit.map_or_else(String::new, fmt::bytes);
        let of = if self.limited {
            format!("the {limit} limit")
        } else {
            format!("the host's {limit}")
        };
        let ratio = self.ratio().unwrap_or_default();
        format!(
            "memory working set {} is {} of {of} (warn at {})",
            fmt::bytes(self.working_set),
            fmt::percent(ratio),
            fmt::percent(warn)
        )
    }
}

/// The working set is what the kernel will not reclaim before OOM-killing: usage minus the
/// inactive page cache, as kubelet computes it. A limit above the host's memory cannot bind.
fn memory_figures(sample: &Sample, host: &Host) -> Option<Memory> {
    let (working_set, source) = match sample.memory_current {
        Some(current) => (
            current.saturating_sub(sample.memory_inactive_file.unwrap_or(0)),
            Source::Cgroup,
        ),
        None => (host.memory_used?, Source::Host),
    };
    let limit = sample
        .memory_limit
        .filter(|&limit| host.memory_total.is_none_or(|total| limit <= total));
    Some(Memory {
        working_set,
        limit: limit.or(host.memory_total),
        limited: limit.is_some(),
        source,
    })
}

/// The last value of a cumulative cgroup figure, for turning it into counter increments.
#[derive(Debug, Default)]
struct Cumulative {
    last: Option<u64>,
}

impl Cumulative {
    /// The growth since the previous value; `None` the first time. A figure that went down
    /// means the cgroup was recreated, so all of the new figure is growth.
    fn advance(&mut self, now: u64) -> Option<u64> {
        let growth = self.last.map(|last| if now >= last { now - last } else { now });
        self.last = Some(now);
        growth
    }
}

fn describe_oom(kills: u64) -> String {
    let plural = if kills == 1 { "" } else { "s" };
    format!("{kills} OOM kill{plural} since last run")
}

fn observations(cpu: &Cpu, memory: Option<&Memory>, sample: &Sample) -> Vec<Observation> {
    let mut list = Vec::with_capacity(7);
    if let Some(ratio) = cpu.ratio {
        list.push(Observation::number("cpu_usage", ratio, Unit::Ratio));
    }
    list.push(Observation::number("cpu_limit", cpu.cores, Unit::Cores));
    if let Some(throttled) = sample.cpu_throttled_ns {
        list.push(Observation::number(
            "cpu_throttled",
            throttled as f64 / 1e9,
            Unit::Seconds,
        ));
    }
    if let Some(memory) = memory {
        list.push(Observation::number(
            "memory_working_set",
            memory.working_set as f64,
            Unit::Bytes,
        ));
        if let Some(limit) = memory.limit {
            list.push(Observation::number("memory_limit", limit as f64, Unit::Bytes));
        }
        if let Some(ratio) = memory.ratio() {
            list.push(Observation::number("memory_usage", ratio, Unit::Ratio));
        }
    }
    if let Some(kills) = sample.oom_kills {
        list.push(Observation::number("oom_kills", kills as f64, Unit::Count));
    }
    list
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    use crate::core::outcome::{Status, Value};
    use crate::metrics::Metrics;

    const MIB: u64 = 1024 * 1024;
    const SECOND: Duration = Duration::from_secs(1);

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, content) in files {
            write(&root, path, content);
        }
        root
    }

    fn write(root: &tempfile::TempDir, path: &str, content: &str) {
        let path = root.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn config(root: &Path) -> System {
        System {
            enabled: true,
            cpu_warn: 0.8,
            memory_warn: 0.9,
            cgroup_root: root.to_path_buf(),
        }
    }

    fn check(root: &tempfile::TempDir) -> (SystemCheck, SystemMetrics) {
        let metrics = SystemMetrics::register(&Metrics::new().unwrap(), "system").unwrap();
        let check = SystemCheck::with_self_cgroup(&config(root.path()), metrics.clone(), Some("0::/\n"));
        (check, metrics)
    }

    /// A v2 container with 0.5 cores and 512MiB.
    fn v2_limited(usage_usec: u64, current: u64, inactive_file: u64, oom_kill: u64) -> tempfile::TempDir {
        let root = tree(&[
            ("cgroup.controllers", "cpu memory pids\n"),
            ("cpu.max", "50000 100000\n"),
        ]);
        write(&root, "memory.max", &format!("{}\n", 512 * MIB));
        set_v2_usage(&root, usage_usec, current, inactive_file, oom_kill);
        root
    }

    fn set_v2_usage(root: &tempfile::TempDir, usage_usec: u64, current: u64, inactive_file: u64, oom_kill: u64) {
        write(
            root,
            "cpu.stat",
            &format!("usage_usec {usage_usec}\nnr_periods 40\nnr_throttled 3\nthrottled_usec 1234567\n"),
        );
        write(root, "memory.current", &format!("{current}\n"));
        write(
            root,
            "memory.stat",
            &format!("anon 1000\nactive_file 10\ninactive_file {inactive_file}\n"),
        );
        write(
            root,
            "memory.events",
            &format!("low 0\nhigh 0\nmax 0\noom 0\noom_kill {oom_kill}\n"),
        );
    }

    fn observed(outcome: &Outcome, name: &str) -> Option<f64> {
        outcome
            .observations
            .iter()
            .find(|observation| observation.name == name)
            .map(|observation| match observation.value {
                Value::Number(value) => value,
                Value::Text(_) => panic!("{name} is not a number"),
            })
    }

    fn host_total_memory() -> f64 {
        let mut system = sysinfo::System::new().unwrap();
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        system.total_memory() as f64
    }

    #[test]
    fn cpu_ratio_is_cpu_time_over_wall_time_times_cores() {
        assert_eq!(cpu_ratio(450_000_000, SECOND, 0.5), Some(0.9));
        assert_eq!(cpu_ratio(3_000_000_000, 2 * SECOND, 2.0), Some(0.75));
        assert_eq!(cpu_ratio(1, Duration::ZERO, 2.0), None);
    }

    #[test]
    fn cumulative_figures_grow_counters_by_their_delta_and_survive_a_reset() {
        let mut figure = Cumulative::default();
        assert_eq!(
            figure.advance(5),
            None,
            "the first value has no delta; the counter takes all of it"
        );
        assert_eq!(figure.advance(8), Some(3));
        assert_eq!(figure.advance(8), Some(0));
        assert_eq!(figure.advance(2), Some(2), "a figure that went down was reset");
    }

    #[test]
    fn sizes_and_shares_read_like_limits() {
        assert_eq!(fmt::bytes(450 * MIB), "450MiB");
        assert_eq!(fmt::bytes(3 * 1024 * MIB / 2), "1.5GiB");
        assert_eq!(fmt::percent(0.925), "92%");
        assert_eq!(round2(1.0 / 3.0), 0.33);
    }

    #[test]
    fn v2_first_run_reports_no_cpu_use_then_measures_it_against_the_limit() {
        let root = v2_limited(1_000_000, 100 * MIB, 0, 0);
        let (mut check, metrics) = check(&root);
        let start = Instant::now();

        let first = check.run_at(start);
        assert_eq!(first.status, Status::Pass, "{first:?}");
        assert_eq!(observed(&first, "cpu_usage"), None);
        assert_eq!(observed(&first, "cpu_limit"), Some(0.5));
        let details = first.details.as_ref().unwrap().to_value();
        assert!(details["cpu_usage_note"].as_str().unwrap().starts_with("first run"));
        assert_eq!(details["cgroup_version"], "v2");
        assert_eq!(details["cpu_limited"], true);
        assert_eq!(details["memory_limited"], true);

        set_v2_usage(&root, 1_300_000, 100 * MIB, 0, 0);
        let calm = check.run_at(start + SECOND);
        assert_eq!(calm.status, Status::Pass, "{calm:?}");
        assert_eq!(calm.reason, "ok");
        assert!((observed(&calm, "cpu_usage").unwrap() - 0.6).abs() < 1e-9);
        assert!((metrics.cpu_usage_ratio.get() - 0.6).abs() < 1e-9);

        set_v2_usage(&root, 1_750_000, 100 * MIB, 0, 0);
        let busy = check.run_at(start + 2 * SECOND);
        assert_eq!(busy.status, Status::Warn);
        assert_eq!(busy.kind, Some(FailureKind::Threshold));
        assert_eq!(busy.reason, "CPU at 90% of its 0.5-core limit (warn at 80%)");
        assert_eq!(busy.hint.as_deref(), Some(CPU_HINT));
        assert!((metrics.cpu_usage_ratio.get() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn v2_memory_working_set_is_current_minus_inactive_file_against_the_limit() {
        let root = v2_limited(0, 500 * MIB, 200 * MIB, 0);
        let (mut check, metrics) = check(&root);

        let roomy = check.run_at(Instant::now());
        assert_eq!(roomy.status, Status::Pass, "{roomy:?}");
        assert_eq!(observed(&roomy, "memory_working_set"), Some((300 * MIB) as f64));
        assert_eq!(observed(&roomy, "memory_limit"), Some((512 * MIB) as f64));
        assert_eq!(observed(&roomy, "memory_usage"), Some(300.0 / 512.0));
        assert_eq!(metrics.memory_working_set_bytes.get(), (300 * MIB) as f64);
        assert_eq!(metrics.memory_limit_bytes.get(), (512 * MIB) as f64);

        set_v2_usage(&root, 0, 500 * MIB, 20 * MIB, 0);
        let full = check.run_at(Instant::now());
        assert_eq!(full.status, Status::Warn);
        assert_eq!(
            full.reason,
            "memory working set 480MiB is 94% of the 512MiB limit (warn at 90%)"
        );
        assert_eq!(full.hint.as_deref(), Some(MEMORY_HINT));
    }

    #[test]
    fn v2_an_oom_kill_since_the_last_run_warns_once_and_counts_the_delta() {
        let root = v2_limited(0, 100 * MIB, 0, 2);
        let (mut check, metrics) = check(&root);
        let start = Instant::now();

        let first = check.run_at(start);
        assert_eq!(
            first.status,
            Status::Pass,
            "kills before vigil started are counted, not warned about"
        );
        assert_eq!(metrics.oom_kills_total.get(), 2);

        set_v2_usage(&root, 0, 100 * MIB, 0, 3);
        let killed = check.run_at(start + SECOND);
        assert_eq!(killed.status, Status::Warn);
        assert_eq!(killed.reason, "1 OOM kill since last run");
        assert_eq!(killed.hint.as_deref(), Some(MEMORY_HINT));
        assert_eq!(observed(&killed, "oom_kills"), Some(3.0));
        assert_eq!(metrics.oom_kills_total.get(), 3);

        let quiet = check.run_at(start + 2 * SECOND);
        assert_eq!(quiet.status, Status::Pass);
        assert_eq!(metrics.oom_kills_total.get(), 3);
    }

    #[test]
    fn v2_throttled_time_feeds_the_counter_in_seconds() {
        let root = v2_limited(0, 100 * MIB, 0, 0);
        let (mut check, metrics) = check(&root);
        let outcome = check.run_at(Instant::now());
        assert_eq!(observed(&outcome, "cpu_throttled"), Some(1.234567));
        assert!((metrics.cpu_throttled_seconds_total.get() - 1.234567).abs() < 1e-9);
        assert_eq!(outcome.details.unwrap().to_value()["nr_throttled"], 3);

        write(
            &root,
            "cpu.stat",
            "usage_usec 0\nnr_throttled 4\nthrottled_usec 2000000\n",
        );
        check.run_at(Instant::now());
        assert!((metrics.cpu_throttled_seconds_total.get() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn warnings_on_cpu_and_memory_name_both_with_both_hints() {
        let root = v2_limited(0, 500 * MIB, 0, 0);
        let (mut check, _metrics) = check(&root);
        let start = Instant::now();
        check.run_at(start);
        set_v2_usage(&root, 500_000, 500 * MIB, 0, 1);
        let outcome = check.run_at(start + SECOND);
        assert_eq!(outcome.status, Status::Warn);
        assert_eq!(
            outcome.reason,
            "CPU at 100% of its 0.5-core limit (warn at 80%); \
             memory working set 500MiB is 98% of the 512MiB limit (warn at 90%); 1 OOM kill since last run"
        );
        assert_eq!(outcome.hint, Some(format!("{CPU_HINT}; {MEMORY_HINT}")));
    }

    #[test]
    fn v2_without_limits_measures_against_the_host() {
        let root = tree(&[
            ("cgroup.controllers", "cpu memory\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.stat", "usage_usec 1000\nnr_throttled 0\nthrottled_usec 0\n"),
            ("memory.max", "max\n"),
            ("memory.current", "104857600\n"),
            ("memory.stat", "inactive_file 0\n"),
            ("memory.events", "oom_kill 0\n"),
        ]);
        let (mut check, metrics) = check(&root);
        let start = Instant::now();
        check.run_at(start);
        write(
            &root,
            "cpu.stat",
            "usage_usec 501000\nnr_throttled 0\nthrottled_usec 0\n",
        );
        let outcome = check.run_at(start + SECOND);

        let host_cores = check.reader.try_lock().unwrap().cores;
        let host_memory = host_total_memory();
        assert_eq!(observed(&outcome, "cpu_limit"), Some(host_cores));
        assert!((observed(&outcome, "cpu_usage").unwrap() - 0.5 / host_cores).abs() < 1e-9);
        assert_eq!(observed(&outcome, "memory_limit"), Some(host_memory));
        assert_eq!(metrics.memory_limit_bytes.get(), host_memory);
        assert_eq!(
            observed(&outcome, "memory_usage"),
            Some(100.0 * MIB as f64 / host_memory)
        );
        let details = outcome.details.unwrap().to_value();
        assert_eq!(details["cpu_limited"], false);
        assert_eq!(details["memory_limited"], false);
        assert_eq!(details["unavailable"], json!([]), "no limit is not a missing figure");
    }

    #[test]
    fn host_fallback_names_the_host_in_its_reasons() {
        let cpu = Cpu {
            ratio: Some(0.92),
            cores: 2.0,
            limited: false,
            source: Source::Host,
        };
        assert_eq!(
            cpu.describe(0.92, 0.8),
            "CPU at 92% of the host's 2 cores (warn at 80%)"
        );
        let memory = Memory {
            working_set: 950 * MIB,
            limit: Some(1024 * MIB),
            limited: false,
            source: Source::Host,
        };
        assert_eq!(
            memory.describe(0.9),
            "memory working set 950MiB is 93% of the host's 1.0GiB (warn at 90%)"
        );
    }

    #[test]
    fn v1_tree_with_limits() {
        let root = tree(&[
            ("cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "50000\n"),
            ("cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us", "100000\n"),
            (
                "cpu,cpuacct/kubepods/pod1/cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 2500000000\n",
            ),
            ("cpu,cpuacct/kubepods/pod1/cpuacct.usage", "1000000000\n"),
            ("cpuacct", ""),
            (
                "memory/kubepods/pod1/memory.usage_in_bytes",
                &format!("{}\n", 400 * MIB),
            ),
            (
                "memory/kubepods/pod1/memory.limit_in_bytes",
                &format!("{}\n", 512 * MIB),
            ),
            (
                "memory/kubepods/pod1/memory.stat",
                &format!(
                    "inactive_file 1\ntotal_inactive_file {}\nhierarchical_memory_limit {}\n",
                    100 * MIB,
                    512 * MIB
                ),
            ),
            (
                "memory/kubepods/pod1/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            ),
        ]);
        fs::remove_file(root.path().join("cpuacct")).unwrap();
        let metrics = SystemMetrics::register(&Metrics::new().unwrap(), "system").unwrap();
        let self_cgroup = "4:memory:/kubepods/pod1\n2:cpu,cpuacct:/kubepods/pod1\n1:name=systemd:/kubepods/pod1\n";
        let mut check = SystemCheck::with_self_cgroup(&config(root.path()), metrics.clone(), Some(self_cgroup));
        let start = Instant::now();

        let first = check.run_at(start);
        assert_eq!(first.status, Status::Pass, "{first:?}");
        assert_eq!(observed(&first, "cpu_limit"), Some(0.5));
        assert_eq!(observed(&first, "memory_working_set"), Some((300 * MIB) as f64));
        assert_eq!(observed(&first, "memory_limit"), Some((512 * MIB) as f64));
        assert_eq!(observed(&first, "oom_kills"), Some(1.0));
        assert_eq!(metrics.cpu_throttled_seconds_total.get(), 2.5);
        assert_eq!(metrics.oom_kills_total.get(), 1);
        let details = first.details.unwrap().to_value();
        assert_eq!(details["cgroup_version"], "v1");
        assert_eq!(
            details["cgroup_paths"]["memory"],
            root.path().join("memory/kubepods/pod1").display().to_string()
        );
        assert_eq!(details["cpu_limited"], true);

        write(&root, "cpu,cpuacct/kubepods/pod1/cpuacct.usage", "1425000000\n");
        let busy = check.run_at(start + SECOND);
        assert_eq!(busy.reason, "CPU at 85% of its 0.5-core limit (warn at 80%)");
    }

    #[test]
    fn v1_unlimited_sentinels_fall_back_to_the_host() {
        let root = tree(&[
            ("cpu/cpu.cfs_quota_us", "-1\n"),
            ("cpu/cpu.cfs_period_us", "100000\n"),
            ("cpuacct/cpuacct.usage", "5\n"),
            ("memory/memory.usage_in_bytes", "1000\n"),
            ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory/memory.stat", "total_inactive_file 0\n"),
        ]);
        let (mut check, _metrics) = check(&root);
        let outcome = check.run_at(Instant::now());
        assert_ne!(outcome.status, Status::Fail);
        assert_eq!(
            observed(&outcome, "cpu_limit"),
            Some(check.reader.try_lock().unwrap().cores)
        );
        assert_eq!(observed(&outcome, "memory_limit"), Some(host_total_memory()));
        let details = outcome.details.unwrap().to_value();
        assert_eq!(
            (details["cpu_limited"].clone(), details["memory_limited"].clone()),
            (json!(false), json!(false))
        );
    }

    #[test]
    fn without_a_cgroup_the_host_figures_stand_in() {
        let root = tree(&[]);
        let (mut check, metrics) = check(&root);
        let outcome = check.run_at(Instant::now());
        assert_ne!(outcome.status, Status::Fail, "{outcome:?}");
        let details = outcome.details.as_ref().unwrap().to_value();
        assert_eq!(details["cgroup_version"], "none");
        assert_eq!(details["memory_source"], "host");
        assert!(observed(&outcome, "memory_working_set").unwrap() > 0.0);
        assert_eq!(metrics.memory_limit_bytes.get(), host_total_memory());
    }

    #[test]
    fn nothing_readable_at_all_fails_naming_the_root() {
        let root = tree(&[]);
        let (mut check, _metrics) = check(&root);
        let outcome = check.assess(
            Instant::now(),
            &Sample::default(),
            &Host {
                cores: 2.0,
                ..Host::default()
            },
        );
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(outcome.kind, Some(FailureKind::Io));
        assert!(
            outcome.reason.contains(&root.path().display().to_string()),
            "{}",
            outcome.reason
        );
    }

    #[test]
    fn a_limit_the_host_cannot_reach_counts_as_none() {
        let host = Host {
            cores: 2.0,
            memory_total: Some(1000),
            memory_used: Some(10),
            cpu_ratio: None,
        };
        let sample = Sample {
            cpu_limit_cores: Some(8.0),
            memory_current: Some(10),
            memory_limit: Some(5000),
            ..Sample::default()
        };
        assert_eq!(cpu_figures(&sample, &host, None, Instant::now()).cores, 2.0);
        let memory = memory_figures(&sample, &host).unwrap();
        assert_eq!((memory.limit, memory.limited), (Some(1000), false));
    }

    #[tokio::test]
    async fn this_machines_cgroup_passes_or_warns_with_real_figures() {
        let metrics = SystemMetrics::register(&Metrics::new().unwrap(), "system").unwrap();
        let mut check = SystemCheck::new(&config(Path::new(DEFAULT_CGROUP_ROOT)), metrics.clone());
        assert_eq!(check.component_type(), ComponentType::System);
        for _ in 0..2 {
            let outcome = check.run().await;
            assert_ne!(outcome.status, Status::Fail, "{outcome:?}");
            assert!(observed(&outcome, "memory_working_set").unwrap() > 0.0, "{outcome:?}");
            assert!(observed(&outcome, "memory_limit").unwrap() > 0.0, "{outcome:?}");
            assert!(observed(&outcome, "cpu_limit").unwrap() > 0.0, "{outcome:?}");
        }
        assert!(metrics.memory_working_set_bytes.get() > 0.0);
        assert!(metrics.memory_limit_bytes.get() > 0.0);
    }
}
