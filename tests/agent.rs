//! The `vigil` binary running as in a pod: signals and the drain, the metrics exposition
//! under promtool, logs, and `vigil check`.

mod support;

use std::time::{Duration, Instant};

use support::{Vigil, run_cli, wait_until};

/// A cgroup v2 tree as a container with a 1-core, 512 MiB limit sees it: the tests read these
/// figures, not the busy test machine's.
struct Cgroup(tempfile::TempDir);

impl Cgroup {
    const LIMIT: u64 = 512 * 1024 * 1024;
    const INACTIVE_FILE: u64 = 4 * 1024 * 1024;

    fn new() -> Cgroup {
        let cgroup = Cgroup(tempfile::tempdir().unwrap());
        for (file, content) in [
            ("cgroup.controllers", "cpu memory pids\n".to_owned()),
            ("cpu.max", "100000 100000\n".to_owned()),
            ("cpu.stat", "usage_usec 1000000\nuser_usec 800000\nsystem_usec 200000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 250000\n".to_owned()),
            ("memory.max", format!("{}\n", Cgroup::LIMIT)),
            ("memory.stat", format!("anon 90000000\nfile 8388608\ninactive_file {}\n", Cgroup::INACTIVE_FILE)),
            ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n".to_owned()),
        ] {
            std::fs::write(cgroup.0.path().join(file), content).unwrap();
        }
        cgroup.set_memory_current(100 * 1024 * 1024);
        cgroup
    }

    fn set_memory_current(&self, bytes: u64) {
        std::fs::write(self.0.path().join("memory.current"), format!("{bytes}\n")).unwrap();
    }

    /// The `[system]` section of a fast-running agent that reads this tree.
    fn config(&self) -> String {
        format!(
            "[system]\ninterval = \"200ms\"\ntimeout = \"100ms\"\ncgroup_root = \"{}\"\n",
            self.0.path().display()
        )
    }
}

#[test]
fn sigterm_fails_readyz_at_once_serves_the_rest_for_the_drain_then_exits_0() {
    let cgroup = Cgroup::new();
    let mut vigil = Vigil::start(&format!("[shutdown]\ndrain = \"1500ms\"\n{}", cgroup.config()));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));

    let signalled = Instant::now();
    vigil.signal("TERM");
    wait_until(
        Duration::from_millis(500),
        "/readyz to answer 503 right after SIGTERM",
        || vigil.get("/readyz").status == 503,
    );
    let readyz = vigil.get("/readyz");
    assert_eq!(
        readyz.body,
        "[+]system ok\n[-]shutdown failed: draining\nreadyz check failed\n"
    );
    assert_eq!(vigil.get("/livez").status, 200, "liveness holds during the drain");
    assert_eq!(vigil.get("/metrics").status, 200);
    assert!(vigil.get("/metrics").body.contains("\nvigil_ready 0\n"));

    let status = vigil.wait_exit(Duration::from_secs(5));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "logs:\n{}", vigil.logs());
    assert!(
        took >= Duration::from_millis(1500),
        "exited before the drain was over: {took:?}"
    );
    assert!(took < Duration::from_millis(4000), "the drain overran: {took:?}");
    let logs = vigil.logs();
    assert!(
        logs.contains("\"signal\":\"SIGTERM\"") && logs.contains("Draining"),
        "{logs}"
    );
}

#[test]
fn sigint_drains_too_and_a_second_signal_stops_at_once() {
    let cgroup = Cgroup::new();
    let mut vigil = Vigil::start(&format!("[shutdown]\ndrain = \"30s\"\n{}", cgroup.config()));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    vigil.signal("INT");
    vigil.wait_for_status("/readyz", 503, Duration::from_secs(2));
    let second = Instant::now();
    vigil.signal("INT");
    let status = vigil.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "a second signal must not wait out a 30s drain"
    );
}

#[test]
fn metrics_pass_promtool_and_name_what_the_spec_names() {
    let cgroup = Cgroup::new();
    let vigil = Vigil::start(&cgroup.config());
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    vigil.request("GET", "/readyz", &[("User-Agent", "kube-probe/1.31")]);
    let metrics = vigil.get("/metrics");
    assert_eq!(metrics.content_type(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let body = metrics.body;
    for name in [
        "vigil_build_info{version=\"",
        "vigil_ready 1",
        "vigil_check_status{check=\"system\",status=\"pass\"} 1",
        "vigil_check_status{check=\"system\",status=\"fail\"} 0",
        "vigil_check_duration_seconds_bucket{check=\"system\",le=\"10\"}",
        "vigil_check_runs_total{check=\"system\",result=\"pass\"}",
        "vigil_kubelet_last_probe_timestamp_seconds{endpoint=\"/readyz\"}",
        "vigil_container_cpu_usage_ratio",
        "vigil_container_memory_working_set_bytes",
        "vigil_container_memory_limit_bytes",
        "vigil_container_cpu_throttled_seconds_total",
        "vigil_container_oom_kills_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }

    support::assert_promtool_accepts(&body);
}

#[test]
fn container_figures_are_exported_only_while_the_system_check_is_enabled() {
    let vigil = Vigil::start("[system]\nenabled = false\n");
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    let body = vigil.get("/metrics").body;
    assert!(body.contains("vigil_ready 1"), "{body}");
    assert!(
        !body.contains("vigil_container_"),
        "no zeros for a check that does not run:\n{body}"
    );
}

#[test]
fn status_changes_are_logged_once_as_json_lines() {
    let cgroup = Cgroup::new();
    let vigil = Vigil::start(&cgroup.config());
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    // Several runs later, the first status is still logged exactly once.
    wait_until(Duration::from_secs(5), "a few runs", || {
        vigil.get("/diag?format=json").json()["vigil"]["checks"]["system"]["runs"].as_u64() >= Some(4)
    });
    let logs = vigil.logs();
    let changes: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .filter(|event| event["message"] == "Check status changed")
        .collect();
    assert_eq!(changes.len(), 1, "{logs}");
    assert_eq!(changes[0]["check"], "system");
    assert_eq!(changes[0]["from"], "none");
    assert_eq!(changes[0]["to"], "pass");

    // The Serving line lists the checks as a JSON array, not as the string of its Debug text.
    let serving: Vec<serde_json::Value> = vigil
        .log_lines()
        .into_iter()
        .filter(|event| event["message"] == "Serving")
        .collect();
    assert_eq!(serving.len(), 1, "{logs}");
    assert_eq!(serving[0]["checks"], serde_json::json!(["system"]), "{logs}");
    assert_eq!(serving[0]["level"], "INFO");
    assert!(serving[0]["listen"].as_str().is_some_and(|l| l.contains(':')), "{logs}");
}

#[test]
fn text_logs_on_request() {
    let cgroup = Cgroup::new();
    let vigil = Vigil::builder().env("VIGIL_LOG_FORMAT", "text").start(&cgroup.config());
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    wait_until(Duration::from_secs(2), "the Serving line", || {
        vigil.logs().contains("Serving")
    });
    let logs = vigil.logs();
    assert!(!logs.trim_start().starts_with('{'), "{logs}");
    assert!(logs.contains("INFO"), "{logs}");
}

#[test]
fn diag_speaks_health_json_and_text() {
    let cgroup = Cgroup::new();
    let vigil = Vigil::start(&cgroup.config());
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    let json = vigil.request("GET", "/diag", &[("Accept", "application/health+json")]);
    assert_eq!(json.content_type(), Some("application/health+json"));
    let doc = json.json();
    assert_eq!(doc["status"], "pass");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    let entry = &doc["checks"]["system:memory_working_set"][0];
    assert_eq!(entry["componentType"], "system");
    assert_eq!(entry["observedUnit"], "bytes");
    assert!(entry["observedValue"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(doc["vigil"]["checks"]["system"]["critical"], false);
    assert_eq!(doc["vigil"]["config"]["system"]["interval"], "200ms");
    // The check loop, the server and this request's connection at least: a soak compares it
    // over hours to find a leak.
    let tasks = doc["vigil"]["runtime"]["alive_tasks"].as_u64().unwrap();
    assert!((3..100).contains(&tasks), "{doc}");

    let text = vigil.get("/diag");
    assert!(text.content_type().unwrap().starts_with("text/plain"));
    assert!(
        text.body.contains("READY") && text.body.contains("system [PASS]"),
        "{}",
        text.body
    );
    assert!(text.body.contains("status changes (newest first):"), "{}", text.body);
    // The verdict leads; the passing check has its one line before its figures in full.
    assert_eq!(
        text.body.lines().nth(1),
        Some("verdict: pass: ready, every check passes"),
        "{}",
        text.body
    );
    assert!(text.body.contains("\npassing:\n  system  ok  in "), "{}", text.body);
    assert!(
        text.body
            .lines()
            .any(|l| l.starts_with("  memory_working_set") && l.ends_with("MiB")),
        "{}",
        text.body
    );
}

#[test]
fn check_runs_every_check_once_and_exits_by_readiness() {
    let cgroup = Cgroup::new();
    let output = run_cli(&["check"], Some(&cgroup.config()), &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "[+]system ok\nreadyz check passed\n"
    );

    let output = run_cli(&["check", "--output", "json"], Some(&cgroup.config()), &[]);
    assert_eq!(output.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("check --output json prints JSON");
    assert_eq!(doc["status"], "pass");
    assert!(
        doc["checks"]["system:memory_limit"][0]["observedValue"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{doc}"
    );
}

#[test]
fn the_system_check_reads_the_containers_cgroup_and_warns_near_the_memory_limit() {
    let cgroup = Cgroup::new();
    let vigil = Vigil::start(&cgroup.config());
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    let working_set = 100 * 1024 * 1024 - Cgroup::INACTIVE_FILE;
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains(&format!("\nvigil_container_memory_limit_bytes {}\n", Cgroup::LIMIT)),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("\nvigil_container_memory_working_set_bytes {working_set}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nvigil_container_cpu_throttled_seconds_total 0.25\n"),
        "{metrics}"
    );
    let doc = vigil.get("/diag?format=json").json();
    assert_eq!(doc["checks"]["system:cpu_limit"][0]["observedValue"], 1.0);
    assert_eq!(
        doc["vigil"]["checks"]["system"]["last_run"]["details"]["cgroup_version"],
        "v2"
    );

    // 95% of the limit: a warning with its reason and hint, and still ready (system is not critical).
    cgroup.set_memory_current(Cgroup::LIMIT / 100 * 95 + Cgroup::INACTIVE_FILE);
    wait_until(Duration::from_secs(5), "the memory warning", || {
        vigil
            .get("/readyz?verbose")
            .body
            .contains("[+]system warn: memory working set")
    });
    let readyz = vigil.get("/readyz?verbose");
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    assert!(readyz.body.contains("(warn at 90%)"), "{}", readyz.body);
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_check_status{check=\"system\",status=\"warn\"} 1"),
        "{metrics}"
    );
    let doc = vigil.get("/diag?format=json").json();
    assert_eq!(doc["status"], "warn");
    assert!(
        doc["vigil"]["checks"]["system"]["hint"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{doc}"
    );
}

/// A rotated Kubernetes Secret holding the diag token takes effect without a restart.
#[test]
fn a_rewritten_diag_token_file_is_read_again() {
    let cgroup = Cgroup::new();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("diag-token");
    std::fs::write(&token, "first-diag-token\n").unwrap();
    let config = format!(
        "{}\n[diag]\ntoken_file = {:?}\n",
        cgroup.config(),
        token.display().to_string()
    );
    let vigil = Vigil::start(&config);
    vigil.wait_for_status("/livez", 200, Duration::from_secs(5));

    // As the kubelet does: a new file moved into place.
    let fresh = dir.path().join("diag-token.new");
    std::fs::write(&fresh, "second-diag-token\n").unwrap();
    std::fs::rename(&fresh, &token).unwrap();
    vigil.wait_for_log("Diag token reloaded", Duration::from_secs(15));

    std::fs::remove_file(&token).unwrap();
    vigil.wait_for_log(
        "Cannot reload the diag token; the previous one stays in use",
        Duration::from_secs(15),
    );
    let logs = vigil.logs();
    assert!(
        !logs.contains("first-diag-token") && !logs.contains("second-diag-token"),
        "{logs}"
    );
}
