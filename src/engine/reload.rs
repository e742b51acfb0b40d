//! Configuration reload: what changed between two configurations, check by check, and when the
//! file changed.
//!
//! A reload keeps every check whose section is the same (its loop, schedule, hysteresis,
//! latency window and transitions go on), stops the checks whose section is gone, and builds
//! the changed and added ones afresh. What only a restart can change (`listen`, `[diag]`) is
//! named in the plan so that it can be logged. The agent applies the plan
//! (`Agent::reload`); this module decides nothing about timing.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Config;

/// What a reload does.
#[derive(Debug)]
pub struct Plan {
    /// Every check of the new configuration, in order.
    pub order: Vec<String>,
    /// The new configuration with only the changed and added checks' sections: what to build.
    pub to_build: Config,
    /// Checks kept as they run.
    pub kept: Vec<String>,
    /// Checks built afresh because their section changed.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    /// Checks no longer configured.
    pub removed: Vec<String>,
    /// Settings that differ but take effect only after a restart, by key (`listen`, `diag`).
    pub needs_restart: Vec<&'static str>,
}

/// The table whose change needs a restart: the sections read from it (the `pod` check's) stay
/// as they run with it.
const RESTART_TABLE: &str = "kubernetes";

impl Plan {
    /// From the running configuration to `new`.
    pub fn new(old: &Config, new: &Config) -> Plan {
        let mut needs_restart = Vec::new();
        if old.listen != new.listen {
            needs_restart.push("listen");
        }
        if old.diag != new.diag {
            needs_restart.push("diag");
        }
        if old.fleet != new.fleet {
            needs_restart.push("fleet");
        }
        let of_table = |config: &Config| -> Vec<_> {
            config
                .checks
                .iter()
                .filter(|c| c.table == RESTART_TABLE)
                .cloned()
                .collect()
        };
        if old.kubernetes != new.kubernetes || of_table(old) != of_table(new) {
            needs_restart.push("kubernetes");
        }
        let new = &in_effect(old, new.clone());
        let before: Vec<_> = old.enabled_checks().collect();
        let after: Vec<_> = new.enabled_checks().collect();
        let find = |name: &str| before.iter().find(|c| c.name == name);
        let (mut kept, mut changed, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for section in &after {
            match find(&section.name) {
                Some(old) if old == section => kept.push(section.name.clone()),
                Some(_) => changed.push(section.name.clone()),
                None => added.push(section.name.clone()),
            }
        }
        let removed = before
            .iter()
            .filter(|old| !after.iter().any(|c| c.name == old.name))
            .map(|old| old.name.clone())
            .collect();
        let mut to_build = new.clone();
        to_build.checks.retain(|c| !kept.contains(&c.name));
        Plan {
            order: after.iter().map(|c| c.name.clone()).collect(),
            to_build,
            kept,
            changed,
            added,
            removed,
            needs_restart,
        }
    }
}

/// The configuration in effect after a reload from `old` to `new`: `new`, but for what only a
/// restart changes (`listen`, `[diag]`, `[fleet]`, `[kubernetes]` and the sections read from
/// it), which stays as it runs, so that `/diag` shows what is in effect and the next reload
/// still names the pending change.
pub fn in_effect(old: &Config, new: Config) -> Config {
    let mut checks: Vec<_> = new.checks.into_iter().filter(|c| c.table != RESTART_TABLE).collect();
    for kept in old.checks.iter().filter(|c| c.table == RESTART_TABLE) {
        // In the registry's order: the restart table's checks come last, as they are read.
        checks.push(kept.clone());
    }
    Config {
        listen: old.listen,
        diag: old.diag.clone(),
        fleet: old.fleet.clone(),
        kubernetes: old.kubernetes.clone(),
        checks,
        ..new
    }
}

/// Whether the configuration file at `path` reads blank (nothing but whitespace). A file being
/// rewritten in place is blank for a moment, and a blank file is a valid configuration (every
/// check removed): a reload refuses it while the running configuration came from a file that was
/// not blank. A file with only a comment is not blank: the way to empty the configuration on
/// purpose.
pub fn is_blank(path: &Path) -> bool {
    crate::core::files::read_text(path, crate::core::files::CONFIG_CAP).is_ok_and(|text| text.trim().is_empty())
}

/// What identifies one version of a file: a ConfigMap update swaps the `..data` symlink, so the
/// path then leads to another inode; an editor's save changes the size or the time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    device: u64,
    len: u64,
    modified: Option<SystemTime>,
}

/// Watches the configuration file by looking at it (a `stat` through its links) when asked:
/// no inotify, one system call per look.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    last: Option<Stamp>,
}

impl FileWatch {
    pub fn new(path: &Path) -> FileWatch {
        FileWatch {
            path: path.to_owned(),
            last: stamp(path),
        }
    }

    /// Whether the file is another version than at the last look. A file that cannot be read
    /// now is no change (the reload would only fail; the next look sees it back).
    pub fn changed(&mut self) -> bool {
        match stamp(&self.path) {
            Some(now) if self.last.as_ref() != Some(&now) => {
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        device: meta.dev(),
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::registry::load;
    use crate::config::Sources;

    fn config(toml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.toml");
        std::fs::write(&file, toml).unwrap();
        load(&Sources {
            file: Some(file),
            ..Default::default()
        })
        .unwrap()
    }

    const UPSTREAMS: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n\
                             [[upstream]]\nname = \"b\"\nurl = \"http://127.0.0.1:2/\"\n";

    #[test]
    fn a_file_of_whitespace_is_blank_and_one_with_a_comment_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, "").unwrap();
        assert!(is_blank(&path));
        std::fs::write(&path, " \n\t\n").unwrap();
        assert!(is_blank(&path));
        std::fs::write(&path, "# no checks on purpose\n").unwrap();
        assert!(!is_blank(&path));
        assert!(!is_blank(&dir.path().join("missing")), "a missing file is no blank one");
    }

    #[test]
    fn unchanged_checks_are_kept_and_only_the_rest_is_built() {
        let old = config(&format!("[system]\nenabled = true\n{UPSTREAMS}"));
        let new = config(
            "[system]\nenabled = false\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n\
             [[upstream]]\nname = \"b\"\nurl = \"http://127.0.0.1:2/\"\ntimeout = \"1s\"\n\
             [[upstream]]\nname = \"c\"\nurl = \"http://127.0.0.1:3/\"\n",
        );
        let plan = Plan::new(&old, &new);
        assert_eq!(plan.order, ["upstream:a", "upstream:b", "upstream:c"]);
        assert_eq!(plan.kept, ["upstream:a"]);
        assert_eq!(plan.changed, ["upstream:b"]);
        assert_eq!(plan.added, ["upstream:c"]);
        assert_eq!(plan.removed, ["system"]);
        let built: Vec<&str> = plan.to_build.enabled_checks().map(|c| c.name.as_str()).collect();
        assert_eq!(built, ["upstream:b", "upstream:c"]);
        assert!(plan.needs_restart.is_empty());
    }

    #[test]
    fn a_changed_default_changes_every_check_that_inherits_it() {
        let old = config(UPSTREAMS);
        let new = config(&format!("[defaults]\ninterval = \"10s\"\n{UPSTREAMS}"));
        let plan = Plan::new(&old, &new);
        assert!(plan.kept.is_empty(), "{plan:?}");
        assert_eq!(plan.changed, ["upstream:a", "upstream:b", "system"]);
    }

    #[test]
    fn listen_and_diag_need_a_restart() {
        let old = config("");
        let new = config("listen = \"127.0.0.1:9999\"\n");
        assert_eq!(Plan::new(&old, &new).needs_restart, ["listen"]);
    }

    #[test]
    fn kubernetes_needs_a_restart_and_its_pod_check_is_kept_as_it_runs() {
        const KUBE: &str = "[kubernetes]\napi_url = \"https://127.0.0.1:6443\"\nnamespace = \"gw\"\npod = \"gw-1\"\n";
        let old = config(KUBE);
        let new = config(&format!("{KUBE}cpu_warn = 0.5\n"));
        let plan = Plan::new(&old, &new);
        assert_eq!(plan.needs_restart, ["kubernetes"]);
        assert!(plan.kept.iter().any(|k| k == "pod"), "{plan:?}");
        assert!(
            plan.to_build.check("pod").is_none(),
            "nothing of [kubernetes] is rebuilt"
        );
        assert_eq!(in_effect(&old, new).kubernetes, old.kubernetes);
        let added = Plan::new(&config(""), &old);
        assert_eq!(added.needs_restart, ["kubernetes"]);
        assert!(added.added.is_empty(), "{added:?}");
    }

    #[test]
    fn a_swapped_configmap_is_a_change_and_a_look_without_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("..2026_1");
        let second = dir.path().join("..2026_2");
        std::fs::create_dir(&first).unwrap();
        std::fs::create_dir(&second).unwrap();
        std::fs::write(first.join("vigil.toml"), "a").unwrap();
        std::fs::write(second.join("vigil.toml"), "a").unwrap();
        std::os::unix::fs::symlink(&first, dir.path().join("..data")).unwrap();
        let path = dir.path().join("vigil.toml");
        std::os::unix::fs::symlink("..data/vigil.toml", &path).unwrap();
        let mut watch = FileWatch::new(&path);
        assert!(!watch.changed());
        // The kubelet's swap: a new ..data link renamed over the old one.
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&second, &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
        assert!(watch.changed(), "same size and content, another inode");
        assert!(!watch.changed());
    }
}
