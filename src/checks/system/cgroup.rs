//! Finding this process's cgroup and reading its CPU and memory figures (cgroup v2, and v1 as on
//! many older nodes).
//!
//! Reads use blocking `std::fs` on purpose: these are kernel pseudo-files of a few hundred bytes,
//! generated from memory without touching a disk, so a read never parks the thread for long.
//! `tokio::fs` would hand each of the dozen reads to the blocking pool, costing more than the
//! reads themselves.

use crate::core::files;
use std::path::{Component, Path, PathBuf};

/// Byte limits at or above this mean "no limit", whatever the kernel's exact sentinel is (v1
/// reports `PAGE_COUNTER_MAX` rounded to a page, e.g. 9223372036854771712).
const UNLIMITED_BYTES: u64 = 1 << 60;

/// Which cgroup interface the figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V1,
    V2,
    /// No cgroup filesystem under the root: host figures only.
    None,
}

impl Version {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::None => "none",
        }
    }
}

/// The directories holding this process's cgroup files, per controller. On v2 all three are the
/// same directory; on v1 each controller has its own hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) version: Version,
    pub(super) cpu: Option<PathBuf>,
    pub(super) cpuacct: Option<PathBuf>,
    pub(super) memory: Option<PathBuf>,
}

impl Layout {
    /// Finds this process's cgroup under `root`.
    ///
    /// `self_cgroup` is the content of `/proc/self/cgroup`. With a cgroup namespace (Kubernetes)
    /// the process's own cgroup is mounted at the root and the file says `/`; without one, the
    /// file names the path below the root. A path that does not exist under `root` means the
    /// root is already our own cgroup (a container without a namespace sees only its own
    /// subtree), so the root is used.
    ///
    /// v2 is detected by `cgroup.controllers` at the root only: on a hybrid host the cgroup2
    /// tree at `unified/` carries no cpu or memory controller, so the v1 hierarchies win.
    pub(super) fn discover(root: &Path, self_cgroup: Option<&str>) -> Layout {
        if root.join("cgroup.controllers").is_file() {
            let own = self_cgroup.and_then(|text| own_path(text, |hierarchy, _| hierarchy == "0"));
            let dir = nested(root, own).unwrap_or_else(|| root.to_path_buf());
            return Layout {
                version: Version::V2,
                cpu: Some(dir.clone()),
                cpuacct: Some(dir.clone()),
                memory: Some(dir),
            };
        }
        let cpu = v1_dir(root, &["cpu", "cpu,cpuacct", "cpuacct,cpu"], "cpu", self_cgroup);
        let cpuacct = v1_dir(root, &["cpuacct", "cpu,cpuacct", "cpuacct,cpu"], "cpuacct", self_cgroup);
        let memory = v1_dir(root, &["memory"], "memory", self_cgroup);
        let version = if cpu.is_some() || cpuacct.is_some() || memory.is_some() {
            Version::V1
        } else {
            Version::None
        };
        Layout {
            version,
            cpu,
            cpuacct,
            memory,
        }
    }

    /// Reads every figure the layout offers. What cannot be read or parsed is left `None` and
    /// listed in [`Sample::unavailable`]; a missing limit file on v2 (the root cgroup has none)
    /// counts as unreadable, which the check treats like "no limit".
    pub(super) fn read(&self) -> Sample {
        let mut reader = Reader::default();
        let mut sample = match self.version {
            Version::V2 => self.read_v2(&mut reader),
            Version::V1 => self.read_v1(&mut reader),
            Version::None => Sample::default(),
        };
        sample.unavailable = reader.unavailable;
        sample
    }

    fn read_v2(&self, reader: &mut Reader) -> Sample {
        let mut sample = Sample::default();
        if let Some(dir) = &self.cpu {
            sample.cpu_limit_cores = reader.parsed(&dir.join("cpu.max"), parse_cpu_max).flatten();
            let stat = reader.text(&dir.join("cpu.stat"));
            sample.cpu_usage_ns = reader.key(&stat, &["usage_usec"]).map(micros_to_nanos);
            sample.cpu_throttled_ns = reader.key(&stat, &["throttled_usec"]).map(micros_to_nanos);
            sample.cpu_nr_throttled = reader.key(&stat, &["nr_throttled"]);
        }
        if let Some(dir) = &self.memory {
            sample.memory_current = reader.parsed(&dir.join("memory.current"), parse_u64);
            sample.memory_limit = reader.parsed(&dir.join("memory.max"), parse_memory_max).flatten();
            let stat = reader.text(&dir.join("memory.stat"));
            sample.memory_inactive_file = reader.key(&stat, &["inactive_file"]);
            let events = reader.text(&dir.join("memory.events"));
            sample.oom_kills = reader.key(&events, &["oom_kill"]);
        }
        sample
    }

    fn read_v1(&self, reader: &mut Reader) -> Sample {
        let mut sample = Sample::default();
        if let Some(dir) = &self.cpu {
            let quota = reader.parsed(&dir.join("cpu.cfs_quota_us"), parse_i64);
            let period = reader.parsed(&dir.join("cpu.cfs_period_us"), parse_u64);
            sample.cpu_limit_cores = quota.zip(period).and_then(|(quota, period)| v1_cores(quota, period));
            let stat = reader.text(&dir.join("cpu.stat"));
            sample.cpu_throttled_ns = reader.key(&stat, &["throttled_time"]);
            sample.cpu_nr_throttled = reader.key(&stat, &["nr_throttled"]);
        }
        if let Some(dir) = &self.cpuacct {
            sample.cpu_usage_ns = reader.parsed(&dir.join("cpuacct.usage"), parse_u64);
        }
        if let Some(dir) = &self.memory {
            sample.memory_current = reader.parsed(&dir.join("memory.usage_in_bytes"), parse_u64);
            let own_limit = reader.parsed(&dir.join("memory.limit_in_bytes"), parse_u64);
            let stat = reader.text(&dir.join("memory.stat"));
            sample.memory_inactive_file = reader.key(&stat, &["total_inactive_file", "inactive_file"]);
            // A limit set on a parent (the pod) binds too and shows up only here.
            let inherited = stat
                .text
                .as_deref()
                .and_then(|text| flat_key(text, "hierarchical_memory_limit"));
            let inherited = inherited.and_then(|raw| parse_u64(raw).ok());
            sample.memory_limit = own_limit
                .into_iter()
                .chain(inherited)
                .min()
                .filter(|&limit| limit < UNLIMITED_BYTES);
            let oom = reader.text(&dir.join("memory.oom_control"));
            sample.oom_kills = reader.key(&oom, &["oom_kill"]);
        }
        sample
    }
}

/// One reading of the cgroup's figures. Limits are `None` when there is none or it could not be
/// read; usage figures are cumulative since the cgroup was created.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sample {
    pub(super) cpu_limit_cores: Option<f64>,
    pub(super) cpu_usage_ns: Option<u64>,
    pub(super) cpu_throttled_ns: Option<u64>,
    pub(super) cpu_nr_throttled: Option<u64>,
    pub(super) memory_current: Option<u64>,
    pub(super) memory_inactive_file: Option<u64>,
    pub(super) memory_limit: Option<u64>,
    pub(super) oom_kills: Option<u64>,
    /// `path: why` for each figure that could not be read or parsed.
    pub(super) unavailable: Vec<String>,
}

impl Sample {
    /// Whether not a single usage figure could be read (limits alone say nothing about use).
    pub(super) fn has_no_usage(&self) -> bool {
        self.cpu_usage_ns.is_none()
            && self.cpu_throttled_ns.is_none()
            && self.memory_current.is_none()
            && self.oom_kills.is_none()
    }
}

/// A read file, kept with its path so that missing keys can be reported against it.
struct Text {
    path: PathBuf,
    text: Option<String>,
}

/// Reads files and remembers what failed, so one bad file costs one figure, not the run.
#[derive(Default)]
struct Reader {
    unavailable: Vec<String>,
}

impl Reader {
    fn note(&mut self, path: &Path, why: impl std::fmt::Display) {
        self.unavailable.push(format!("{}: {why}", path.display()));
    }

    fn text(&mut self, path: &Path) -> Text {
        let text = files::read_text(path, files::KERNEL_CAP)
            .map_err(|error| self.note(path, error))
            .ok();
        Text {
            path: path.to_path_buf(),
            text,
        }
    }

    fn parsed<T>(&mut self, path: &Path, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let text = self.text(path).text?;
        parse(text.trim()).map_err(|why| self.note(path, why)).ok()
    }

    /// The first of `keys` present in a flat-keyed file (`name value` per line).
    fn key(&mut self, file: &Text, keys: &[&str]) -> Option<u64> {
        let text = file.text.as_deref()?;
        let Some(raw) = keys.iter().find_map(|key| flat_key(text, key)) else {
            self.note(&file.path, format_args!("no {} line", keys.join(" or ")));
            return None;
        };
        parse_u64(raw).map_err(|why| self.note(&file.path, why)).ok()
    }
}

/// The value of `key` in a flat-keyed file such as `cpu.stat` or `memory.stat`.
fn flat_key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, value) = line.trim().split_once(char::is_whitespace)?;
        (name == key).then(|| value.trim())
    })
}

fn parse_u64(raw: &str) -> Result<u64, String> {
    raw.parse().map_err(|_| format!("not a number: {raw:?}"))
}

fn parse_i64(raw: &str) -> Result<i64, String> {
    raw.parse().map_err(|_| format!("not a number: {raw:?}"))
}

/// `cpu.max`: `max 100000` (no limit) or `<quota> <period>` in microseconds.
fn parse_cpu_max(raw: &str) -> Result<Option<f64>, String> {
    let mut fields = raw.split_whitespace();
    let (Some(quota), Some(period)) = (fields.next(), fields.next()) else {
        return Err(format!("expected \"<quota> <period>\", found {raw:?}"));
    };
    if quota == "max" {
        return Ok(None);
    }
    match (quota.parse::<u64>(), period.parse::<u64>()) {
        (Ok(quota), Ok(period)) if period > 0 => Ok(Some(quota as f64 / period as f64)),
        _ => Err(format!("expected \"<quota> <period>\", found {raw:?}")),
    }
}

/// `memory.max`: `max` or a byte count.
fn parse_memory_max(raw: &str) -> Result<Option<u64>, String> {
    if raw == "max" {
        return Ok(None);
    }
    parse_u64(raw).map(|bytes| Some(bytes).filter(|&bytes| bytes < UNLIMITED_BYTES))
}

/// v1 CFS quota: `-1` (or any negative value) means no limit.
fn v1_cores(quota_us: i64, period_us: u64) -> Option<f64> {
    (quota_us > 0 && period_us > 0).then(|| quota_us as f64 / period_us as f64)
}

fn micros_to_nanos(micros: u64) -> u64 {
    micros.saturating_mul(1_000)
}

/// The mount of a v1 controller (the first candidate directory that exists) and, below it, this
/// process's cgroup when `/proc/self/cgroup` names one that exists.
fn v1_dir(root: &Path, mounts: &[&str], controller: &str, self_cgroup: Option<&str>) -> Option<PathBuf> {
    let mount = mounts.iter().map(|name| root.join(name)).find(|dir| dir.is_dir())?;
    let own = self_cgroup.and_then(|text| {
        own_path(text, |hierarchy, controllers| {
            hierarchy != "0" && controllers.contains(&controller)
        })
    });
    Some(nested(&mount, own).unwrap_or(mount))
}

/// The cgroup path of the first `/proc/self/cgroup` line (`id:controllers:path`) that `wanted`
/// accepts, given the hierarchy id and the controller list.
fn own_path(text: &str, wanted: impl Fn(&str, &[&str]) -> bool) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (hierarchy, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let controllers: Vec<&str> = controllers.split(',').filter(|name| !name.is_empty()).collect();
        wanted(hierarchy, &controllers).then_some(path)
    })
}

/// `mount` joined with a cgroup path, if that is a real directory strictly below `mount`: `..`
/// parts (seen from outside our namespace) or the bare `/` leave the mount as it is.
fn nested(mount: &Path, cgroup_path: Option<&str>) -> Option<PathBuf> {
    let relative = Path::new(cgroup_path?.trim().trim_start_matches('/'));
    let plain = relative.components().all(|part| matches!(part, Component::Normal(_)));
    let dir = mount.join(relative);
    (plain && relative.components().next().is_some() && dir.is_dir()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = root.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        root
    }

    #[test]
    fn cpu_max_reads_quota_over_period_and_max_as_no_limit() {
        assert_eq!(parse_cpu_max("200000 100000"), Ok(Some(2.0)));
        assert_eq!(parse_cpu_max("50000 100000"), Ok(Some(0.5)));
        assert_eq!(parse_cpu_max("max 100000"), Ok(None));
        assert!(parse_cpu_max("max").is_err());
        assert!(parse_cpu_max("1000 0").is_err());
    }

    #[test]
    fn memory_max_and_v1_quota_sentinels_mean_no_limit() {
        assert_eq!(parse_memory_max("max"), Ok(None));
        assert_eq!(parse_memory_max("536870912"), Ok(Some(536_870_912)));
        assert_eq!(parse_memory_max("9223372036854771712"), Ok(None));
        assert_eq!(v1_cores(-1, 100_000), None);
        assert_eq!(v1_cores(150_000, 100_000), Some(1.5));
    }

    #[test]
    fn flat_key_finds_exact_names_only() {
        let stat = "total_inactive_file 7\ninactive_file 5\n";
        assert_eq!(flat_key(stat, "inactive_file"), Some("5"));
        assert_eq!(flat_key(stat, "total_inactive_file"), Some("7"));
        assert_eq!(flat_key(stat, "active_file"), None);
    }

    #[test]
    fn v2_uses_the_path_from_proc_self_cgroup_when_it_exists_under_the_root() {
        let root = tree(&[
            ("cgroup.controllers", "cpu memory"),
            ("kubepods/pod1/ctr/cpu.max", "max 100000"),
        ]);
        let own = Layout::discover(root.path(), Some("0::/kubepods/pod1/ctr\n"));
        assert_eq!(own.version, Version::V2);
        assert_eq!(own.memory, Some(root.path().join("kubepods/pod1/ctr")));

        let namespaced = Layout::discover(root.path(), Some("0::/\n"));
        assert_eq!(namespaced.cpu, Some(root.path().to_path_buf()));
        let elsewhere = Layout::discover(root.path(), Some("0::/system.slice/other.service\n"));
        assert_eq!(elsewhere.cpu, Some(root.path().to_path_buf()));
        let outside = Layout::discover(root.path(), Some("0::/../../kubepods\n"));
        assert_eq!(outside.cpu, Some(root.path().to_path_buf()));
    }

    #[test]
    fn v1_resolves_each_controller_and_accepts_a_joint_cpu_mount() {
        let root = tree(&[
            ("cpu,cpuacct/docker/abc/cpu.stat", ""),
            ("memory/docker/abc/memory.stat", ""),
            ("unified/cgroup.controllers", ""),
        ]);
        let self_cgroup = "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        let layout = Layout::discover(root.path(), Some(self_cgroup));
        assert_eq!(
            layout.version,
            Version::V1,
            "a hybrid host's empty cgroup2 tree must not win"
        );
        assert_eq!(layout.cpu, Some(root.path().join("cpu,cpuacct/docker/abc")));
        assert_eq!(layout.cpuacct, Some(root.path().join("cpu,cpuacct/docker/abc")));
        assert_eq!(layout.memory, Some(root.path().join("memory/docker/abc")));

        let mount_only = Layout::discover(root.path(), Some("12:memory:/gone\n"));
        assert_eq!(mount_only.memory, Some(root.path().join("memory")));
    }

    #[test]
    fn no_cgroup_filesystem_is_version_none() {
        let root = tree(&[]);
        let layout = Layout::discover(root.path(), None);
        assert_eq!(
            layout,
            Layout {
                version: Version::None,
                cpu: None,
                cpuacct: None,
                memory: None
            }
        );
        assert!(layout.read().has_no_usage());
    }

    #[test]
    fn a_malformed_or_missing_figure_is_listed_and_the_rest_still_read() {
        let root = tree(&[
            ("cgroup.controllers", ""),
            ("cpu.max", "lots"),
            ("cpu.stat", "usage_usec 10\n"),
            ("memory.current", "100\n"),
            ("memory.stat", "inactive_file many\n"),
        ]);
        let sample = Layout::discover(root.path(), None).read();
        assert_eq!(sample.cpu_limit_cores, None);
        assert_eq!(sample.cpu_usage_ns, Some(10_000));
        assert_eq!(sample.memory_current, Some(100));
        assert_eq!(sample.memory_inactive_file, None);
        let listed = sample.unavailable.join("\n");
        for part in [
            "cpu.max: expected",
            "cpu.stat: no throttled_usec line",
            "memory.stat: not a number",
            "memory.max: ",
        ] {
            assert!(listed.contains(part), "{part:?} missing from {listed}");
        }
    }

    #[test]
    fn v1_takes_the_lower_of_the_own_and_inherited_memory_limit() {
        let root = tree(&[
            ("memory/memory.usage_in_bytes", "300\n"),
            ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
            (
                "memory/memory.stat",
                "total_inactive_file 100\nhierarchical_memory_limit 1000\n",
            ),
            (
                "memory/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
            ),
        ]);
        let sample = Layout::discover(root.path(), None).read();
        assert_eq!(sample.memory_limit, Some(1000));
        assert_eq!(sample.memory_inactive_file, Some(100));
        assert_eq!(sample.oom_kills, Some(4));
    }
}
