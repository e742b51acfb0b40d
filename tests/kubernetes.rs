//! `[kubernetes]` and the `pod` check against a fake API server (tests/peers/fake_kube_api.py:
//! real HTTPS, list + watch with resourceVersions, bookmarks and 410 Gone, the metrics API,
//! Events; every Pod, EndpointSlice, list and Event validated against the official schema).

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::kube::FakeKube;
use support::{Vigil, assert_promtool_accepts, poll_until, run_cli, wait_until};

/// An environment value in the pod spec: vigil must never show it.
const SECRET_ENV: &str = "s3cr3t-db-password-in-env";
const WAIT: Duration = Duration::from_secs(10);

fn rfc3339(ago: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - ago).to_string()
}

fn running(restarts: u32) -> Value {
    json!({
        "name": "api-gateway", "ready": true, "restartCount": restarts, "started": true,
        "image": "registry.example/api-gateway:1.4", "imageID": "registry.example/api-gateway@sha256:0123",
        "containerID": "containerd://abc",
        "state": {"running": {"startedAt": rfc3339(Duration::from_secs(5))}}
    })
}

fn terminated(mut status: Value, reason: &str, exit_code: i32, ago: Duration) -> Value {
    status["lastState"] = json!({"terminated": {
        "reason": reason, "exitCode": exit_code, "containerID": "containerd://old",
        "startedAt": rfc3339(ago + Duration::from_secs(600)), "finishedAt": rfc3339(ago)
    }});
    status
}

/// This pod: the gateway as its regular container, vigil as a native sidecar.
fn pod(gateway: Value, limits: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw-1", "namespace": "api-gateway", "uid": "3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d11",
                     "labels": {"app": "api-gateway"}},
        "spec": {
            "containers": [{"name": "api-gateway", "image": "registry.example/api-gateway:1.4",
                            "env": [{"name": "DB_PASSWORD", "value": SECRET_ENV}],
                            "resources": {"limits": limits, "requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "initContainers": [{"name": "vigil", "image": "registry.example/vigil:0.1", "restartPolicy": "Always",
                                "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}}]
        },
        "status": {
            "phase": "Running", "podIP": "10.0.0.7",
            "containerStatuses": [gateway],
            "initContainerStatuses": [{"name": "vigil", "ready": true, "restartCount": 0, "started": true,
                                       "image": "registry.example/vigil:0.1", "imageID": "registry.example/vigil@sha256:4567",
                                       "state": {"running": {"startedAt": rfc3339(Duration::from_secs(60))}}}]
        }
    })
}

fn limits() -> Value {
    json!({"cpu": "1", "memory": "512Mi"})
}

fn usage(cpu: &str, memory: &str) -> Value {
    json!({
        "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": "gw-1", "namespace": "api-gateway"},
        "timestamp": rfc3339(Duration::from_secs(10)), "window": "15s",
        "containers": [{"name": "api-gateway", "usage": {"cpu": cpu, "memory": memory}},
                       {"name": "vigil", "usage": {"cpu": "4m", "memory": "20Mi"}}]
    })
}

/// The Service's one EndpointSlice with endpoints of these readiness.
fn slice(ready: &[bool]) -> Value {
    let endpoints: Vec<Value> = ready
        .iter()
        .enumerate()
        .map(|(i, ready)| {
            json!({"addresses": [format!("10.0.0.{}", i + 10)],
                   "conditions": {"ready": ready, "serving": ready, "terminating": !ready}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "api-gateway-service-x7k2p", "namespace": "api-gateway",
                     "labels": {"kubernetes.io/service-name": "api-gateway-service"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

/// A fake with a healthy pod and its figures.
fn healthy_fake() -> FakeKube {
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod(running(0), limits()));
    fake.set_metrics(usage("250m", "200Mi"));
    fake
}

fn pod_line(vigil: &Vigil) -> String {
    let body = vigil.get("/readyz?verbose").body;
    body.lines().find(|l| l.contains("pod ")).unwrap_or_default().to_owned()
}

#[track_caller]
fn wait_pod_line(vigil: &Vigil, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    if !poll_until(WAIT, || {
        last = pod_line(vigil);
        pred(&last)
    }) {
        panic!(
            "timed out waiting for {what}; last: {last:?}\n--- logs ---\n{}",
            vigil.logs()
        );
    }
    last
}

#[track_caller]
fn wait_metric(vigil: &Vigil, line: &str) {
    let mut metrics = String::new();
    if !poll_until(WAIT, || {
        metrics = vigil.get("/metrics").body;
        metrics.lines().any(|l| l == line)
    }) {
        panic!("timed out waiting for {line:?} in /metrics:\n{metrics}");
    }
}

#[track_caller]
fn assert_no_fake_errors(fake: &FakeKube) {
    let errors = fake.errors();
    assert!(errors.is_empty(), "the fake API refused: {errors:#?}");
}

#[test]
fn an_oom_kill_warns_within_one_watch_event_the_metrics_follow_and_an_event_is_posted() {
    let fake = healthy_fake();
    // A 60 s interval: only the watch event can bring the change within the test's wait.
    let vigil = Vigil::start(&fake.section("interval = \"60s\"\ntimeout = \"5s\"\n"));
    let first = wait_pod_line(&vigil, "the first run", |l| {
        !l.is_empty() && !l.contains("no result yet")
    });
    assert_eq!(first, "[+]pod ok", "{}", vigil.logs());
    wait_metric(&vigil, "vigil_pod_container_ready{container=\"api-gateway\"} 1");
    wait_metric(&vigil, "vigil_kubernetes_api_up 1");

    fake.set_pod(pod(
        terminated(running(1), "OOMKilled", 137, Duration::from_secs(20)),
        limits(),
    ));
    let line = wait_pod_line(&vigil, "the OOM kill", |l| l.contains("OOMKilled"));
    assert!(
        line.starts_with("[+]pod warn: container api-gateway restarted 20s ago: OOMKilled (exit code 137) at ")
            || line.starts_with("[+]pod warn: container api-gateway restarted 2"),
        "{line}"
    );
    assert!(line.ends_with("; 1 restart"), "{line}");
    assert_eq!(vigil.get("/readyz").status, 200, "a warn never fails readiness");
    wait_metric(
        &vigil,
        "vigil_pod_container_restarts_total{container=\"api-gateway\"} 1",
    );
    wait_metric(
        &vigil,
        "vigil_pod_container_last_termination_info{container=\"api-gateway\",reason=\"OOMKilled\"} 1",
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_pod_container_memory_limit_bytes{container=\"api-gateway\"} 536870912"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("container=\"vigil\""),
        "only the watched container is exported"
    );
    assert_promtool_accepts(&metrics);

    let diag = vigil.get("/diag?format=json").body;
    assert!(
        diag.contains("\"exit_code\":137") || diag.contains("\"exit_code\": 137"),
        "{diag}"
    );
    assert!(
        diag.contains("raise the api-gateway container's memory limit (512MiB"),
        "{diag}"
    );
    assert!(
        !diag.contains(SECRET_ENV),
        "nothing of the spec but names and limits is shown"
    );
    assert!(!vigil.logs().contains(SECRET_ENV));

    let mut events = Vec::new();
    assert!(
        poll_until(WAIT, || {
            events = fake.event_log();
            events
                .iter()
                .any(|e| e[2]["note"].as_str().is_some_and(|n| n.starts_with("pod warn:")))
        }),
        "no Event for the pod check's warn: {events:#?}\n{}",
        vigil.logs()
    );
    let event = &events
        .iter()
        .find(|e| e[2]["note"].as_str().is_some_and(|n| n.starts_with("pod warn:")))
        .expect("found above")[2];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "CheckWarning");
    assert_eq!(event["reportingController"], "vigil");
    assert_eq!(event["reportingInstance"], "gw-1");
    assert_eq!(event["action"], "Probe");
    assert_eq!(event["regarding"]["kind"], "Pod");
    assert_eq!(event["regarding"]["name"], "gw-1");
    assert_eq!(event["regarding"]["uid"], "3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d11");
    assert!(
        event["note"].as_str().unwrap_or_default().contains("OOMKilled"),
        "{event}"
    );
    assert_no_fake_errors(&fake);
}

#[test]
fn cpu_over_its_share_of_the_limit_warns_and_without_a_limit_there_is_no_ratio() {
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod(running(0), limits()));
    fake.set_metrics(usage("900m", "100Mi"));
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"800ms\"\n"));
    let line = wait_pod_line(&vigil, "the CPU warn", |l| l.contains("CPU"));
    assert_eq!(
        line,
        "[+]pod warn: container api-gateway CPU 0.9 cores of its 1 cores limit (90%, warn at 80%)"
    );
    wait_metric(
        &vigil,
        "vigil_pod_container_cpu_usage_cores{container=\"api-gateway\"} 0.9",
    );
    wait_metric(
        &vigil,
        "vigil_pod_container_cpu_limit_cores{container=\"api-gateway\"} 1",
    );

    fake.set_pod(pod(running(0), json!({})));
    wait_pod_line(&vigil, "a pass without limits", |l| l == "[+]pod ok");
    let mut metrics = String::new();
    assert!(
        poll_until(WAIT, || {
            metrics = vigil.get("/metrics").body;
            !metrics.contains("vigil_pod_container_cpu_limit_cores{")
        }),
        "no limit, no limit series: {metrics}"
    );
    assert!(metrics.contains("vigil_pod_container_cpu_usage_cores{container=\"api-gateway\"} 0.9"));
    let diag: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).expect("diag JSON");
    let text = diag.to_string();
    assert!(text.contains("\"cpu\":\"no limit\""), "{text}");
    assert!(
        !text.contains("container_cpu_usage_ratio"),
        "no ratio without a limit: {text}"
    );
    assert_no_fake_errors(&fake);
}

#[test]
fn endpoints_going_from_three_ready_to_one_warn_and_the_metric_follows() {
    let fake = healthy_fake();
    fake.set_slices(vec![slice(&[true, true, true])]);
    let vigil =
        Vigil::start(&fake.section("service = \"api-gateway-service\"\ninterval = \"60s\"\ntimeout = \"5s\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_metric(
        &vigil,
        "vigil_service_endpoints{condition=\"ready\",service=\"api-gateway-service\"} 3",
    );
    fake.set_slices(vec![slice(&[true, false, false])]);
    let line = wait_pod_line(&vigil, "the endpoints warn", |l| l.contains("endpoints"));
    assert_eq!(
        line,
        "[+]pod warn: service api-gateway-service: 1 of 3 endpoints ready (1 serving, 2 terminating)"
    );
    wait_metric(
        &vigil,
        "vigil_service_endpoints{condition=\"ready\",service=\"api-gateway-service\"} 1",
    );
    wait_metric(
        &vigil,
        "vigil_service_endpoints{condition=\"terminating\",service=\"api-gateway-service\"} 2",
    );
    assert_eq!(vigil.get("/readyz").status, 200);
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|(_, _, path)| path.contains("labelSelector=kubernetes.io%2Fservice-name%3Dapi-gateway-service")),
        "{requests:?}"
    );
    assert_no_fake_errors(&fake);
}

fn count(fake: &FakeKube, pred: impl Fn(&str) -> bool) -> usize {
    fake.requests().iter().filter(|(_, _, path)| pred(path)).count()
}

fn is_pod_list(path: &str) -> bool {
    path.starts_with("/api/v1/namespaces/api-gateway/pods?") && !path.contains("watch=true")
}

fn is_pod_watch(path: &str) -> bool {
    path.starts_with("/api/v1/namespaces/api-gateway/pods?") && path.contains("watch=true")
}

#[test]
fn a_cut_watch_410_gone_a_rotated_token_403_and_an_outage_are_survived_with_the_last_view_kept() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\nrestart_window = \"1m\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    let restarts = |n: u32| format!("vigil_pod_container_restarts_total{{container=\"api-gateway\"}} {n}");
    // An old restart each time: seen in the counter, outside the window (no warn).
    let restart = |n: u32| {
        fake.set_pod(pod(
            terminated(running(n), "Error", 1, Duration::from_secs(300)),
            limits(),
        ))
    };

    // The stream cut: watched again from the last version; the next change arrives.
    let watches = count(&fake, is_pod_watch);
    fake.control("/cut", json!({}));
    wait_until(WAIT, "a new watch after the cut", || {
        count(&fake, is_pod_watch) > watches
    });
    restart(1);
    wait_metric(&vigil, &restarts(1));

    // 410 Gone, as an ERROR event and as an HTTP status: listed again.
    for how in ["event", "http"] {
        let lists = count(&fake, is_pod_list);
        fake.control("/gone", json!({ "how": how }));
        wait_until(WAIT, "a new list after 410 Gone", || count(&fake, is_pod_list) > lists);
    }
    restart(2);
    wait_metric(&vigil, &restarts(2));

    // A bookmark moves the version on without a change.
    fake.control("/bookmark", json!({}));

    // The projected token rotates: the file changes, the API accepts only the new one.
    std::fs::write(fake.token_file(), "token-2\n").expect("rotate the token");
    fake.set_token("token-2");
    fake.control("/cut", json!({}));
    restart(3);
    wait_metric(&vigil, &restarts(3));
    wait_pod_line(&vigil, "a pass with the new token", |l| l == "[+]pod ok");

    // RBAC refuses the metrics API: a warn naming the missing permission.
    fake.forbid("metrics", true);
    let line = wait_pod_line(&vigil, "the 403 warn", |l| l.contains("forbidden"));
    assert_eq!(
        line,
        "[+]pod warn: kubernetes API: forbidden: cannot get pods/metrics in namespace api-gateway; grant it with deploy/base/rbac.yaml"
    );
    wait_metric(&vigil, "vigil_kubernetes_api_up 0");
    assert_eq!(vigil.get("/readyz").status, 200);
    fake.forbid("metrics", false);
    wait_pod_line(&vigil, "the pass after the 403", |l| l == "[+]pod ok");

    // The API goes away: warns, readiness holds, the last view of the pod is kept.
    fake.control("/down", json!({}));
    let line = wait_pod_line(&vigil, "the outage warn", |l| l.contains("cannot reach"));
    assert!(line.starts_with("[+]pod warn: kubernetes API: "), "{line}");
    assert!(
        line.contains("kubernetes API: cannot reach https://127.0.0.1:"),
        "{line}"
    );
    wait_pod_line(&vigil, "the kept view's age", |l| {
        l.contains("showing pods as last seen")
    });
    assert_eq!(vigil.get("/readyz").status, 200);
    let diag = vigil.get("/diag?format=json").body;
    assert!(
        diag.contains("\"restarts\":3") || diag.contains("\"restarts\": 3"),
        "{diag}"
    );
    wait_metric(&vigil, &restarts(3));
    wait_metric(&vigil, "vigil_pod_container_ready{container=\"api-gateway\"} 1");

    // Back: watched again from the last version seen (a list only after 410), changes arrive.
    let asked = count(&fake, |p| is_pod_list(p) || is_pod_watch(p));
    fake.control("/up", json!({}));
    wait_until(Duration::from_secs(40), "a watch after the outage", || {
        count(&fake, |p| is_pod_list(p) || is_pod_watch(p)) > asked
    });
    restart(4);
    wait_metric(&vigil, &restarts(4));
    wait_pod_line(&vigil, "the pass after the outage", |l| l == "[+]pod ok");
    wait_metric(&vigil, "vigil_kubernetes_api_up 1");
    assert_no_fake_errors(&fake);
    assert!(
        !vigil.logs().contains("token-1") && !vigil.logs().contains("token-2"),
        "no token in the log"
    );
}

#[test]
fn a_missing_token_is_a_warn_naming_the_file_and_a_bad_ca_file_refuses_the_configuration() {
    let fake = healthy_fake();
    std::fs::remove_file(fake.token_file()).expect("remove the token");
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    let line = wait_pod_line(&vigil, "the token warn", |l| l.contains("token"));
    assert!(
        line.starts_with("[+]pod warn: kubernetes API: cannot read the service account token: ")
            && line.contains(&fake.token_file().display().to_string()),
        "{line}"
    );
    assert_eq!(vigil.get("/readyz").status, 200);

    let bad = format!(
        "[kubernetes]\napi_url = \"{}\"\nca_file = \"{}/missing.crt\"\nnamespace = \"api-gateway\"\npod = \"gw-1\"\n",
        fake.api_url(),
        fake.dir().display()
    );
    let before = count(&fake, |_| true);
    let output = run_cli(&["validate"], Some(&bad), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kubernetes.ca_file"), "{stderr}");
    assert_eq!(count(&fake, |_| true), before, "validate never calls the API");
}

/// The README's bound: at most `60 / interval + 2` requests a minute at steady state (the
/// metrics API once per run, each of the two watches opened again at most once a minute), no
/// list, no polling.
#[test]
fn steady_state_requests_stay_within_the_documented_bound() {
    let fake = healthy_fake();
    fake.set_slices(vec![slice(&[true, true, true])]);
    let vigil = Vigil::start(&fake.section("service = \"api-gateway-service\"\ninterval = \"5s\"\ntimeout = \"2s\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "both watches open", || {
        count(&fake, |p| p.contains("watch=true")) >= 2
    });
    let start = fake.requests().len();
    std::thread::sleep(Duration::from_secs(60));
    let mut during: Vec<(f64, String, String)> = fake.requests().split_off(start);
    // Events come with status changes only (the system check of the machine the test runs on may
    // change); they are bounded apart, at one write per check a minute.
    let events = during
        .iter()
        .filter(|(_, _, p)| p.contains("/apis/events.k8s.io/"))
        .count();
    during.retain(|(_, _, p)| !p.contains("/apis/events.k8s.io/"));
    let metrics = during
        .iter()
        .filter(|(_, _, p)| p.contains("/apis/metrics.k8s.io/"))
        .count();
    let lists = during
        .iter()
        .filter(|(_, _, p)| !p.contains("watch=true") && !p.contains("/apis/metrics.k8s.io/"))
        .count();
    eprintln!(
        "steady state, 60 s: {} requests ({metrics} metrics, {lists} lists), {events} Event writes",
        during.len()
    );
    assert!(during.len() <= 60 / 5 + 2, "{during:#?}");
    assert!(metrics >= 10, "the metrics API is read once per run: {during:#?}");
    assert_eq!(lists, 0, "no polling: {during:#?}");
    assert_eq!(pod_line(&vigil), "[+]pod ok");
    assert_no_fake_errors(&fake);
}

/// SPEC: never more than one new Event per check per minute. A check flapping between warn and
/// pass every run writes once; the changes in between wait for the minute's end.
#[test]
fn a_flapping_check_writes_one_event_within_its_minute() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    for round in 0..3 {
        fake.set_metrics(usage("900m", "100Mi"));
        wait_pod_line(&vigil, &format!("warn {round}"), |l| l.contains("CPU"));
        fake.set_metrics(usage("100m", "100Mi"));
        wait_pod_line(&vigil, &format!("pass {round}"), |l| l == "[+]pod ok");
    }
    let pod_events: Vec<Value> = fake
        .event_log()
        .into_iter()
        .filter(|e| e[2]["note"].as_str().is_some_and(|n| n.starts_with("pod ")))
        .collect();
    assert_eq!(pod_events.len(), 1, "{pod_events:#?}");
    assert_eq!(pod_events[0][0], "POST");
    assert_eq!(pod_events[0][2]["reason"], "CheckWarning");
    assert_no_fake_errors(&fake);
}
