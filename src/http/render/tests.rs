use super::text::{listed, verdict};
use super::*;
use crate::engine::state::CheckView;
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::config::CheckSettings;
use crate::core::outcome::{ComponentType, FailureKind, Observation, Outcome, Unit};
use crate::engine::state::Run;

fn readiness(ready: bool) -> Readiness {
    let check = CheckView {
        name: "postgres".to_owned(),
        settings: CheckSettings::default(),
        component_type: ComponentType::Datastore,
        status: Some(Status::Fail),
        reason: "connection refused (127.0.0.1:5432)".to_owned(),
        kind: None,
        hint: None,
        since: None,
        consecutive_failures: 2,
        consecutive_successes: 0,
        runs: 2,
        last_run: None,
    };
    Readiness {
        held: Vec::new(),
        drained: None,
        ready,
        draining: false,
        checks: vec![check],
    }
}

fn diag_notes(uptime: Duration, probes: &[(&'static str, SystemTime)], now: SystemTime) -> Vec<String> {
    let readiness = readiness(true);
    notes(&DiagInput {
        readiness: &readiness,
        transitions: &[],
        kubelet_probes: probes,
        started_at: now - uptime,
        uptime,
        alive_tasks: None,
        now,
        service_id: "test",
        config: RawValue::NULL,
        fleet: None,
    })
}

#[test]
fn lines_follow_the_kubernetes_form_and_withhold_reasons() {
    let r = readiness(false);
    assert_eq!(
        check_line(&r.checks[0], false, true),
        "[-]postgres failed: connection refused (127.0.0.1:5432)"
    );
    assert_eq!(
        check_line(&r.checks[0], false, false),
        "[-]postgres failed: reason withheld"
    );
    assert_eq!(check_line(&r.checks[0], true, true), "[+]postgres excluded: ok");
    assert_eq!(single_check(&r.checks[0], false), "failed: reason withheld\n");
}

#[test]
fn diag_points_out_a_kubelet_that_never_probes() {
    let now = SystemTime::now();
    assert!(
        diag_notes(Duration::from_secs(30), &[], now).is_empty(),
        "too early to say"
    );
    let quiet = diag_notes(Duration::from_secs(120), &[], now);
    assert_eq!(quiet.len(), 1);
    assert!(
        quiet[0].starts_with("no kubelet probe (User-Agent kube-probe/…) since start"),
        "{quiet:?}"
    );
    let recent = [("/readyz", now - Duration::from_secs(5))];
    assert!(diag_notes(Duration::from_secs(600), &recent, now).is_empty());
    let old = [("/readyz", now - Duration::from_secs(300))];
    assert_eq!(diag_notes(Duration::from_secs(600), &old, now).len(), 1);
}

/// A check whose last run finished a minute ago in `millis`, with `outcome`.
fn view(name: &str, critical: bool, status: Option<Status>, outcome: Outcome, now: SystemTime) -> CheckView {
    let failing = status != Some(Status::Pass);
    CheckView {
        name: name.to_owned(),
        settings: CheckSettings {
            critical,
            ..CheckSettings::default()
        },
        component_type: ComponentType::Component,
        status,
        reason: outcome.reason.clone(),
        kind: outcome.kind,
        hint: outcome.hint.clone(),
        since: Some(now - Duration::from_secs(185)),
        consecutive_failures: if failing { 4 } else { 0 },
        consecutive_successes: if failing { 0 } else { 37 },
        runs: 40,
        last_run: Some(Arc::new(Run {
            outcome,
            finished: tokio::time::Instant::now(),
            finished_at: now - Duration::from_secs(1),
            duration: Duration::from_micros(300),
        })),
    }
}

fn upstream_pass(name: &str, now: SystemTime) -> CheckView {
    let outcome = Outcome::pass().with_observations(vec![
        Observation::number("status_code", 200.0, Unit::None),
        Observation::number("latency", 0.012, Unit::Seconds),
    ]);
    view(name, false, Some(Status::Pass), outcome, now)
}

fn text_of(readiness: &Readiness, transitions: &[Transition], now: SystemTime) -> String {
    diag_text(&DiagInput {
        readiness,
        transitions,
        kubelet_probes: &[("/readyz", now - Duration::from_secs(3))],
        started_at: now - Duration::from_secs(600),
        uptime: Duration::from_secs(600),
        alive_tasks: None,
        now,
        service_id: "gateway-7d9f",
        config: RawValue::NULL,
        fleet: None,
    })
}

#[test]
fn the_one_failing_check_of_fifty_is_within_the_first_ten_lines() {
    let now = SystemTime::now();
    let mut checks: Vec<CheckView> = (0..50)
        .map(|i| upstream_pass(&format!("upstream:svc-{i:02}"), now))
        .collect();
    let failing = Outcome::fail(
        FailureKind::Refused,
        "GET http://10.0.0.27:8080/healthz: connection refused",
    )
    .with_hint("kubectl get endpoints svc-27");
    checks[27] = view("upstream:svc-27", true, Some(Status::Fail), failing, now);
    let readiness = Readiness {
        held: Vec::new(),
        drained: None,
        ready: false,
        draining: false,
        checks,
    };
    let text = text_of(&readiness, &[], now);
    let head: Vec<&str> = text.lines().take(10).collect();
    assert!(
        head.iter()
            .any(|l| l.contains("upstream:svc-27")
                && l.contains("GET http://10.0.0.27:8080/healthz: connection refused")),
        "{text}"
    );
    assert!(
        head.iter().any(|l| l.contains("kubectl get endpoints svc-27")),
        "{text}"
    );
    assert_eq!(
        head[0],
        format!(
            "vigil {} on gateway-7d9f: NOT READY (up 10m)",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        head[1],
        "verdict: fail: not ready: critical check failing: upstream:svc-27"
    );
    assert_eq!(head[2], "checks: 1 fail, 0 warn, 49 pass, 0 pending (50 in all)");
    // Every passing check: one line in the summary, in full further down.
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "passing:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(summary.len(), 49, "{text}");
    assert_eq!(summary[0], "  upstream:svc-00  ok  in 0.3ms");
    assert!(text.contains("\nupstream:svc-00 [PASS] (not critical) ok\n"), "{text}");
    assert!(text.contains("  latency                  12ms\n"), "{text}");
}

#[test]
fn failures_come_worst_first_in_full_with_human_figures() {
    let now = SystemTime::now();
    let system = Outcome::warn(FailureKind::Threshold, "memory 97% of its limit")
        .with_hint("raise the memory limit")
        .with_observations(vec![
            Observation::number("memory_working_set", 684_339_200.0, Unit::Bytes),
            Observation::number("memory_usage", 0.0206, Unit::Ratio),
            Observation::number("cpu_limit", 0.25, Unit::Cores),
        ]);
    let jwt = Outcome::pass().with_observations(vec![
        Observation::number("gateway_accepts_valid_token", 1.0, Unit::Flag),
        Observation::text("fingerprint", "3f2a9c1d"),
    ]);
    let postgres = Outcome::fail(FailureKind::Refused, "connection refused (127.0.0.1:5432)")
        .with_hint("is the database up? kubectl get pods -n db")
        .with_observations(vec![Observation::number("query_duration", 0.0003, Unit::Seconds)]);
    let mut flapping = upstream_pass("upstream:orders", now);
    flapping.consecutive_failures = 1;
    let readiness = Readiness {
        held: Vec::new(),
        drained: None,
        ready: false,
        draining: true,
        checks: vec![
            view("system", false, Some(Status::Warn), system, now),
            view("jwt", true, Some(Status::Pass), jwt, now),
            flapping,
            view("postgres", true, Some(Status::Fail), postgres, now),
        ],
    };
    let transitions = [Transition {
        check: "postgres".to_owned(),
        from: Some(Status::Pass),
        to: Status::Fail,
        reason: "connection refused (127.0.0.1:5432)".to_owned(),
        at: now - Duration::from_secs(185),
    }];
    let text = text_of(&readiness, &transitions, now);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "verdict: fail: not ready: critical check failing: postgres; draining: shutting down, /readyz answers 503 while connections drain"
    );
    // Two at once: both reasons on the first screen, each on its line, before either in full.
    assert_eq!(lines[4], "failing and warning (worst first):", "{text}");
    assert_eq!(
        lines[5],
        "postgres [FAIL] (critical) connection refused (127.0.0.1:5432)"
    );
    assert_eq!(lines[6], "system [WARN] (not critical) memory 97% of its limit");
    assert_eq!(lines[7], "", "{text}");
    let position = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
    };
    assert!(position("\npostgres [FAIL] (critical)") < position("\nsystem [WARN] (not critical)"));
    assert!(position("system [WARN]") < position("\npassing:\n"));
    assert!(position("\npassing:\n") < position("status changes (newest first):"));
    assert!(position("status changes") < position("kubelet probes:"));
    assert!(position("kubelet probes:") < position("passing checks in full:"));
    for fact in [
        "  hint: is the database up? kubectl get pods -n db\n",
        "  since ",
        "(3m 5s ago)",
        "  consecutive failed runs: 4 (reports fail at 2)\n",
        "  last run: fail in 0.3ms: connection refused (127.0.0.1:5432)\n",
        "  query_duration           0.3ms\n",
        "  memory_working_set       653MiB\n",
        "  memory_usage             2.1%\n",
        "  cpu_limit                0.25 cores\n",
        "  gateway_accepts_valid_token yes\n",
        "  fingerprint              3f2a9c1d\n",
        "  upstream:orders  ok  in 0.3ms  (failed 1 run(s) in a row, reports fail at 2: ok)\n",
        " postgres pass -> fail: connection refused (127.0.0.1:5432)\n",
        "  /readyz last at ",
        "note: shutting down: /readyz answers 503 while connections drain\n",
    ] {
        position(fact);
    }
    assert!(!text.contains(" bytes") && !text.contains(" ratio"), "{text}");
}

#[test]
fn the_verdict_says_why() {
    let now = SystemTime::now();
    let pass = |name: &str| upstream_pass(name, now);
    let mut pending = pass("jwt");
    pending.status = None;
    pending.last_run = None;
    let ready = Readiness {
        held: Vec::new(),
        drained: None,
        ready: true,
        draining: false,
        checks: vec![pass("a"), pass("b")],
    };
    assert_eq!(verdict(&ready), "pass: ready, every check passes");
    let degraded = Readiness {
        held: Vec::new(),
        drained: None,
        ready: true,
        draining: false,
        checks: vec![
            view("a", false, Some(Status::Fail), Outcome::fail(FailureKind::Io, "x"), now),
            view(
                "b",
                true,
                Some(Status::Warn),
                Outcome::warn(FailureKind::Threshold, "y"),
                now,
            ),
        ],
    };
    assert_eq!(
        verdict(&degraded),
        "warn: ready, degraded: non-critical check failing: a; warning: b"
    );
    let starting = Readiness {
        held: Vec::new(),
        drained: None,
        ready: false,
        draining: false,
        checks: vec![pass("a"), pending],
    };
    assert_eq!(verdict(&starting), "fail: not ready: first run not finished: jwt");
    let text = text_of(&starting, &[], now);
    assert!(text.contains("\njwt [PENDING] (not critical) "), "{text}");
    assert_eq!(listed(&["a", "b", "c", "d", "e", "f", "g"]), "a, b, c, d, e and 2 more");
}
