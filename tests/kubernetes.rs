//! `[kubernetes]` and the `pod` check against a fake API server (tests/peers/fake_kube_api.py:
//! real HTTPS, list + watch with resourceVersions, bookmarks and 410 Gone, the metrics API,
//! Events; every Pod, EndpointSlice, list and Event validated against the official schema) that
//! answers as a real cluster does (SPEC "Kubernetes", "As a real cluster behaves"): bookmarks
//! about once a minute, metrics-server's 404 until a pod is scraped twice, cuts, 429, 503, 504,
//! 410 on every watch, silent watches, Events validated as the API server validates them.
//!
//! Timing: most tests take seconds; the load measurements take 60 s each, and
//! `a_silent_watch_is_reopened_within_two_and_a_half_minutes` waits up to vigil's 2.5-minute
//! silence limit (about 150 s), which only vigil's own constant decides.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::kube::{ApiRequest, Cut, FakeKube};
use support::{FakeServer, Response, Vigil, assert_promtool_accepts, poll_until, refused_addr, run_cli, wait_until};

/// An environment value in the pod spec: vigil must never show it.
const SECRET_ENV: &str = "s3cr3t-db-password-in-env";
const WAIT: Duration = Duration::from_secs(10);
/// How long a change seen through the metrics API may take: its default `metrics_interval` (15 s)
/// and a check interval.
const METRICS_WAIT: Duration = Duration::from_secs(25);
/// A watch's next attempt after several ends in a row: client-go's backoff steps (0.8, 1.6, 3.2,
/// 6.4, 12.8 s) add up to about 25 s.
const BACKOFF_WAIT: Duration = Duration::from_secs(35);

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

/// The uid of the pod in every fixture.
const POD_UID: &str = "3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d11";

/// This pod: the gateway as its regular container, vigil as a native sidecar.
fn pod(gateway: Value, limits: Value) -> Value {
    pod_named("gw-1", gateway, limits)
}

fn pod_named(name: &str, gateway: Value, limits: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "api-gateway", "uid": POD_UID,
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
    usage_of("gw-1", cpu, memory)
}

fn usage_of(pod: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": pod, "namespace": "api-gateway"},
        "timestamp": rfc3339(Duration::from_secs(10)), "window": "15s",
        "containers": [{"name": "api-gateway", "usage": {"cpu": cpu, "memory": memory}},
                       {"name": "vigil", "usage": {"cpu": "4m", "memory": "20Mi"}}]
    })
}

/// The Service's one EndpointSlice with endpoints of these readiness.
fn slice(ready: &[bool]) -> Value {
    slice_named("api-gateway-service-x7k2p", ready)
}

fn slice_named(name: &str, ready: &[bool]) -> Value {
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
        "metadata": {"name": name, "namespace": "api-gateway",
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
    wait_pod_line_within(vigil, WAIT, what, pred)
}

#[track_caller]
fn wait_pod_line_within(vigil: &Vigil, deadline: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    if !poll_until(deadline, || {
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
    wait_metric_within(vigil, WAIT, line);
}

#[track_caller]
fn wait_metric_within(vigil: &Vigil, deadline: Duration, line: &str) {
    let mut metrics = String::new();
    if !poll_until(deadline, || {
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
    assert_eq!(event["regarding"]["uid"], POD_UID);
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
    // Each end of a watch is a step of client-go's backoff (0.8 s doubling), never reset by a
    // request that works: by now a step is up to 3.2 s, and the rotation below adds two more
    // (the cut, then the old token's 401): up to 19 s before the next watch, by design.
    wait_metric_within(&vigil, BACKOFF_WAIT, &restarts(2));

    // A bookmark moves the version on without a change.
    fake.control("/bookmark", json!({}));

    // The projected token rotates: the file changes, the API accepts only the new one.
    std::fs::write(fake.token_file(), "token-2\n").expect("rotate the token");
    fake.set_token("token-2");
    fake.control("/cut", json!({}));
    restart(3);
    wait_metric_within(&vigil, BACKOFF_WAIT, &restarts(3));
    wait_pod_line(&vigil, "a pass with the new token", |l| l == "[+]pod ok");

    // RBAC refuses the metrics API: a warn naming the missing permission (at the next read of
    // the metrics API: at most one per metrics_interval, 15 s by default).
    fake.forbid("metrics", true);
    let line = wait_pod_line_within(&vigil, METRICS_WAIT, "the 403 warn", |l| l.contains("forbidden"));
    assert_eq!(
        line,
        "[+]pod warn: kubernetes API: forbidden: cannot get pods/metrics in namespace api-gateway; grant it with deploy/base/rbac.yaml"
    );
    wait_metric(&vigil, "vigil_kubernetes_api_up 0");
    assert_eq!(vigil.get("/readyz").status, 200);
    fake.forbid("metrics", false);
    wait_pod_line_within(&vigil, METRICS_WAIT, "the pass after the 403", |l| l == "[+]pod ok");

    // The API goes away: the view is kept and, for its first 60 s, no problem is shown (SPEC:
    // "shown as a problem only when the view has been lost for longer than 60 s"); then a warn,
    // readiness holds, the last view of the pod is kept and its age shown.
    fake.control("/down", json!({}));
    let down = std::time::Instant::now();
    let mut early = Vec::new();
    while down.elapsed() < Duration::from_secs(55) {
        let line = pod_line(&vigil);
        if line != "[+]pod ok" {
            early.push(format!("{:?}: {line}", down.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        early.is_empty(),
        "a problem shown within the first 60 s of an outage: {early:#?}"
    );
    let line = wait_pod_line_within(&vigil, Duration::from_secs(30), "the outage warn", |l| {
        l.contains("cannot reach")
    });
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

/// Requests of `log` that arrived in `[from, to)` (unix times).
fn between(log: &[ApiRequest], from: f64, to: f64) -> Vec<ApiRequest> {
    log.iter().filter(|r| r.at >= from && r.at < to).cloned().collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Watches the fake for `window` from now: the requests and the TCP connections accepted then.
fn measure(fake: &FakeKube, window: Duration) -> (Vec<ApiRequest>, usize) {
    let from = unix_now();
    std::thread::sleep(window);
    let to = unix_now();
    let requests = between(&fake.request_log(), from, to);
    let connections = fake.connections().iter().filter(|t| **t >= from && **t < to).count();
    (requests, connections)
}

/// The README's bound: at most `60 / interval + 2` requests a minute at steady state (the
/// metrics API once per run, each of the two watches opened again at most once a minute), no
/// list, no polling; and connections kept alive and reused (SPEC: "connections to the API
/// server are kept alive and reused"), a finished watch's connection included.
#[test]
fn steady_state_requests_stay_within_the_documented_bound_on_connections_kept_alive() {
    let fake = healthy_fake();
    fake.set_slices(vec![slice(&[true, true, true])]);
    let vigil = Vigil::start(&fake.section(
        "service = \"api-gateway-service\"\ninterval = \"5s\"\ntimeout = \"2s\"\nmetrics_interval = \"5s\"\n",
    ));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "both watches open", || {
        count(&fake, |p| p.contains("watch=true")) >= 2
    });
    // The server ends both watches (as at their timeoutSeconds): they are opened again, on the
    // connections kept alive.
    fake.cut(Cut::Clean);
    wait_until(WAIT, "both watches open again", || {
        count(&fake, |p| p.contains("watch=true")) >= 4
    });
    let (mut during, connections) = measure(&fake, Duration::from_secs(60));
    let all_connections = fake.connections().len();
    // Events come with status changes only (the system check of the machine the test runs on may
    // change); they are bounded apart, at one write per check a minute.
    let events = during.iter().filter(|r| r.is_event()).count();
    during.retain(|r| !r.is_event());
    let metrics = during.iter().filter(|r| r.is_metrics()).count();
    let lists = during.iter().filter(|r| r.is_list()).count();
    eprintln!(
        "steady state, 60 s at interval 5s: {} requests ({metrics} metrics, {lists} lists), {events} Event writes, \
         {connections} TCP connections accepted ({all_connections} since start)",
        during.len()
    );
    assert!(during.len() <= 60 / 5 + 2, "{during:#?}");
    assert!(metrics >= 10, "the metrics API is read once per run: {during:#?}");
    assert_eq!(lists, 0, "no polling: {during:#?}");
    assert!(
        connections <= 2,
        "{connections} TCP connections for {} requests in 60 s: connections are kept alive and reused",
        during.len()
    );
    assert!(
        all_connections <= 5,
        "{all_connections} TCP connections since start (two watches, the metrics API, the Events, one spare), \
         watches opened again after their end included"
    );
    assert_eq!(pod_line(&vigil), "[+]pod ok");
    assert_no_fake_errors(&fake);
}

/// SPEC: "the metrics API is read at most once per `metrics_interval` (default 15s,
/// metrics-server's usual resolution)", whatever the check's interval: at a 1 s interval, 4 reads
/// a minute (5 with the window's edges), not 60.
#[test]
fn the_metrics_api_is_read_at_most_once_per_metrics_interval_at_a_one_second_interval() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    let (during, connections) = measure(&fake, Duration::from_secs(60));
    let metrics = during.iter().filter(|r| r.is_metrics()).count();
    let events = during.iter().filter(|r| r.is_event()).count();
    eprintln!(
        "steady state, 60 s at interval 1s: {} requests ({metrics} metrics, {events} Event writes), \
         {connections} TCP connections accepted",
        during.len()
    );
    assert!(
        (3..=5).contains(&metrics),
        "{metrics} reads of the metrics API in 60 s at the default metrics_interval of 15s: {during:#?}"
    );
    assert_eq!(pod_line(&vigil), "[+]pod ok");
    assert_no_fake_errors(&fake);
}

/// SPEC: never more than one new Event per check per minute. A check flapping between warn and
/// pass every run writes once; the changes in between wait for the minute's end. (The flapping
/// comes through the EndpointSlices' watch, which wakes the check at once; the metrics API is
/// read at most once per metrics_interval.)
#[test]
fn a_flapping_check_writes_one_event_within_its_minute() {
    let fake = healthy_fake();
    fake.set_slices(vec![slice(&[true, true, true])]);
    let vigil =
        Vigil::start(&fake.section("service = \"api-gateway-service\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    for round in 0..3 {
        fake.set_slices(vec![slice(&[true, false, false])]);
        wait_pod_line(&vigil, &format!("warn {round}"), |l| l.contains("endpoints"));
        fake.set_slices(vec![slice(&[true, true, true])]);
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

/// An Event create that landed but whose answer was lost (the API server's timeout filter
/// answered 504) is tried again at the end of the check's minute under the same name: the 409
/// AlreadyExists it then gets means the Event is there. Before, the 409 was shown at once as a
/// problem of the pod check (`vigil_kubernetes_api_up` 0), which queued an Event of its own.
#[test]
fn an_event_whose_answer_was_lost_is_not_a_problem_when_its_retry_finds_it_there() {
    let fake = healthy_fake();
    fake.set_slices(vec![slice(&[true, true, true])]);
    let vigil =
        Vigil::start(&fake.section("service = \"api-gateway-service\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    fake.lose_event_answers(1);
    fake.set_slices(vec![slice(&[true, false, false])]);
    wait_pod_line(&vigil, "the warn", |l| l.contains("endpoints"));
    let event_posts = || {
        fake.requests()
            .iter()
            .filter(|(_, method, path)| method == "POST" && path.contains("/events"))
            .count()
    };
    wait_until(WAIT, "the first create", || event_posts() >= 1);
    // The retry comes at the end of the check's minute.
    wait_until(Duration::from_secs(90), "the create tried again", || event_posts() >= 2);
    // Two runs at 1 s after the retry's answer.
    let runs_after = {
        let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).unwrap_or_default();
        doc["vigil"]["checks"]["pod"]["runs"].as_u64().unwrap_or(0)
    };
    wait_until(WAIT, "two more pod runs", || {
        let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).unwrap_or_default();
        doc["vigil"]["checks"]["pod"]["runs"].as_u64().unwrap_or(0) >= runs_after + 2
    });
    let line = pod_line(&vigil);
    assert!(
        !line.contains("events"),
        "the retried create shown as a problem: {line}"
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.lines().any(|l| l == "vigil_kubernetes_api_up 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("api_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let warnings: Vec<Value> = events_about(&fake, "pod ");
    assert_eq!(warnings.len(), 1, "one Event, stored once: {warnings:#?}");
    assert_no_fake_errors(&fake);
}

// ------------------------------------------------------------------------------------------
// As a real cluster behaves (issue 20; issue 23, point 6). These need the client side of
// issue 20: see the report on the branch for what each needs from vigil.
// ------------------------------------------------------------------------------------------

/// Samples vigil every 250 ms until `done` (panics naming `what` past `deadline`): from the
/// check's first result on, every pod line must read `[+]pod ok` and `vigil_kubernetes_api_up`
/// must never be 0. Returns what differed, with when.
#[track_caller]
fn quiet_until(vigil: &Vigil, deadline: Duration, what: &str, mut done: impl FnMut() -> bool) -> Vec<String> {
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        let line = pod_line(vigil);
        let ran = !line.is_empty() && !line.contains("no result yet");
        if ran && line != "[+]pod ok" {
            seen.push(format!("{:.1?}: {line}", start.elapsed()));
        }
        // The gauge is read once the check has run (before, it reads 0 for want of a run).
        if ran
            && vigil
                .get("/metrics")
                .body
                .lines()
                .any(|l| l == "vigil_kubernetes_api_up 0")
        {
            seen.push(format!("{:.1?}: vigil_kubernetes_api_up 0", start.elapsed()));
        }
        if done() {
            return seen;
        }
        if start.elapsed() > deadline {
            panic!(
                "timed out after {deadline:?} waiting for {what}; seen: {seen:#?}\n--- logs ---\n{}",
                vigil.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Events written whose note starts with `prefix`: `[method, name, event]`.
fn events_about(fake: &FakeKube, prefix: &str) -> Vec<Value> {
    fake.event_log()
        .into_iter()
        .filter(|e| e[2]["note"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

/// Issue 20, 1. At a rollout the new pod has no figures in metrics-server until each of its
/// containers has been scraped twice (15 to 30 s at its default resolution), and its 404 then
/// names the pod `<namespace>/<pod>` (metrics-server pkg/api/pod.go, Get); a moment before, its
/// pod lister may not know the pod at all (`pods "<pod>" not found`). Neither is a problem: no
/// warn, no Event, `vigil_kubernetes_api_up` stays 1, and the figures follow.
#[test]
fn a_rollout_without_figures_yet_neither_warns_nor_posts_an_event() {
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod(running(0), limits()));
    fake.set_metrics(usage("250m", "200Mi"));
    // The 20 s, scaled down: unknown to metrics-server for 2 s, not scraped twice for 12 s.
    fake.metrics_delay(2.0, 12.0, 0);
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    let problems = quiet_until(&vigil, Duration::from_secs(40), "the figures after the rollout", || {
        vigil
            .get("/metrics")
            .body
            .contains("vigil_pod_container_cpu_usage_cores{container=\"api-gateway\"} 0.25")
    });
    assert!(
        problems.is_empty(),
        "metrics-server's 404 for a pod not scraped yet shown as a problem: {problems:#?}\n--- logs ---\n{}",
        vigil.logs()
    );
    let not_found = fake
        .request_log()
        .iter()
        .filter(|r| r.is_metrics() && r.status == Some(404))
        .count();
    assert!(not_found >= 1, "the metrics API was read while it answered 404");
    let events = events_about(&fake, "pod ");
    assert!(events.is_empty(), "Events at a rollout: {events:#?}");
    assert_no_fake_errors(&fake);
}

/// Issue 20, 2. A watch that delivers nothing, not even a bookmark, for 2.5 minutes is dead (a
/// healthy one gets a bookmark about once a minute: apiserver cacher.go,
/// defaultBookmarkFrequency; 5 s here) and is opened again; the change it missed arrives.
/// Waits up to vigil's own 2.5-minute limit (about 150 s).
#[test]
fn a_silent_watch_is_reopened_within_two_and_a_half_minutes() {
    let fake = healthy_fake();
    fake.set_bookmark_period(5.0);
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\nrestart_window = \"1m\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    let watches = count(&fake, is_pod_watch);
    fake.silence(false);
    let silent = std::time::Instant::now();
    // A change the dead stream does not deliver.
    fake.set_pod(pod(
        terminated(running(1), "Error", 1, Duration::from_secs(300)),
        limits(),
    ));
    let mut last = 0;
    if !poll_until(Duration::from_secs(150 + 15), || {
        last = count(&fake, is_pod_watch);
        last > watches
    }) {
        panic!(
            "no new watch of the pod {:?} after it went silent ({last} watches in all)\n--- logs ---\n{}",
            silent.elapsed(),
            vigil.logs()
        );
    }
    eprintln!("the silent watch was opened again after {:?}", silent.elapsed());
    wait_metric(
        &vigil,
        "vigil_pod_container_restarts_total{container=\"api-gateway\"} 1",
    );
    assert_no_fake_errors(&fake);
}

/// Counts of what `during` asked: (lists, watches).
fn lists_and_watches(during: &[ApiRequest]) -> (usize, usize) {
    (
        during.iter().filter(|r| r.is_list()).count(),
        during.iter().filter(|r| r.is_watch()).count(),
    )
}

/// client-go's backoff (0.8 s doubling to 30 s, jitter) allows about 6 lists in 20 s and 8 in a
/// minute; these bounds leave room for a jitter that shortens waits to half.
const LISTS_IN_20S: usize = 8;
const RESTARTS_IN_60S: usize = 12;

/// Issue 20, 7 and issue 23, 6. A server that answers every watch with 410 Gone as an `ERROR`
/// event inside a 200 stream (the watch cache's way: cacher.go Watch -> newErrWatcher) is not
/// asked in a tight list-and-watch loop: the lists after 410 back off (a successful list does not
/// reset that), and the requests of a minute stay within the README's bound (`60 / interval + 2`,
/// 62 at 1 s; the issue measured 1,360).
#[test]
fn a_410_on_every_watch_as_an_error_event_backs_off_and_stays_within_the_documented_load() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    fake.gone_every(Some("event"));
    let from = unix_now();
    let (during, connections) = measure(&fake, Duration::from_secs(60));
    let (lists_20, _) = lists_and_watches(&between(&during, from, from + 20.0));
    let (lists, watches) = lists_and_watches(&during);
    let requests = during.iter().filter(|r| !r.is_event()).count();
    eprintln!(
        "410 on every watch (ERROR event), 60 s: {requests} requests ({lists} lists, {lists_20} in the first 20 s; \
         {watches} watches), {connections} TCP connections"
    );
    assert!(lists_20 <= LISTS_IN_20S, "{lists_20} lists in 20 s");
    assert!(
        lists <= RESTARTS_IN_60S && watches <= RESTARTS_IN_60S,
        "{lists} lists and {watches} watches in 60 s"
    );
    assert!(requests <= 60 + 2, "{requests} requests in 60 s");
    assert_no_fake_errors(&fake);
}

/// Issue 20, 7. The same with 410 as an HTTP status: the lists of 20 s stay few.
#[test]
fn a_410_on_every_watch_as_an_http_status_backs_off_the_lists() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    fake.gone_every(Some("http"));
    let (during, _) = measure(&fake, Duration::from_secs(20));
    let (lists, watches) = lists_and_watches(&during);
    eprintln!("410 on every watch (HTTP status), 20 s: {lists} lists, {watches} watches");
    assert!(lists <= LISTS_IN_20S, "{lists} lists in 20 s");
    assert_no_fake_errors(&fake);
}

/// Issue 23, 6. A server that ends every watch right after one bookmark (the issue measured
/// 227 watches in 10 s) is asked with backoff: the watches of a minute stay few, nothing is
/// listed again (the bookmark's version is good), and the requests stay within the README's bound.
#[test]
fn a_server_closing_every_watch_after_one_bookmark_is_not_asked_in_a_tight_loop() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    fake.close_after_bookmark(true);
    let (during, connections) = measure(&fake, Duration::from_secs(60));
    let (lists, watches) = lists_and_watches(&during);
    let requests = during.iter().filter(|r| !r.is_event()).count();
    eprintln!(
        "every watch closed after one bookmark, 60 s: {requests} requests ({lists} lists, {watches} watches), \
         {connections} TCP connections"
    );
    assert!(watches <= RESTARTS_IN_60S, "{watches} watches in 60 s");
    assert_eq!(lists, 0, "a bookmark's version is watched from, not listed again");
    assert!(requests <= 60 + 2, "{requests} requests in 60 s");
    assert_no_fake_errors(&fake);
}

/// Whether, in the log, a pods request answered `code` was followed by `then` pods watches
/// answered 200.
fn answered_then_watched(fake: &FakeKube, code: u16, then: usize) -> bool {
    let log = fake.request_log();
    let pods = |r: &&ApiRequest| r.path.starts_with("/api/v1/namespaces/api-gateway/pods?");
    let Some(at) = log.iter().filter(pods).position(|r| r.status == Some(code)) else {
        return false;
    };
    log.iter()
        .filter(pods)
        .skip(at + 1)
        .filter(|r| r.is_watch() && r.status == Some(200))
        .count()
        >= then
}

/// Issue 20, 3. An API server rolling cuts the stream (EOF mid-stream, or inside an event) and
/// its successor may answer 429 (Retry-After, a plain-text body: apiserver filters/maxinflight.go
/// tooManyRequests), 503, or 504 "too large resource version" while its cache catches up: each
/// is retried with backoff, routine, and shown as no problem (no warn, no Event,
/// `vigil_kubernetes_api_up` stays 1); the changes after it arrive.
#[test]
fn a_cut_a_429_a_503_and_a_504_are_retried_without_a_warn_or_an_event() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\nrestart_window = \"1m\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_metric(&vigil, "vigil_kubernetes_api_up 1");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    let restart = |n: u32| {
        fake.set_pod(pod(
            terminated(running(n), "Error", 1, Duration::from_secs(300)),
            limits(),
        ))
    };
    let restarts = |n: u32| format!("vigil_pod_container_restarts_total{{container=\"api-gateway\"}} {n}");

    // One cut, one 429.
    fake.fail_next("pods", 429, 1);
    fake.cut(Cut::Abrupt);
    let mut problems = quiet_until(
        &vigil,
        Duration::from_secs(20),
        "a watch after the cut and the 429",
        || answered_then_watched(&fake, 429, 1),
    );
    restart(1);
    problems.extend(quiet_until(&vigil, WAIT, "the change after the 429", || {
        vigil.get("/metrics").body.contains(&restarts(1))
    }));

    // A cut inside an event, then a 503, then a 504 too large resource version (an ERROR event
    // on the watch, as the watch cache sends it).
    fake.fail_next("pods", 503, 1);
    fake.fault(json!({"resource": "pods", "code": 504, "count": 1, "verb": "watch"}));
    fake.cut(Cut::Partial);
    problems.extend(quiet_until(
        &vigil,
        Duration::from_secs(30),
        "a watch after the 503 and the 504",
        || answered_then_watched(&fake, 503, 2),
    ));
    restart(2);
    problems.extend(quiet_until(&vigil, WAIT, "the change after the 504", || {
        vigil.get("/metrics").body.contains(&restarts(2))
    }));
    assert!(
        problems.is_empty(),
        "routine watch errors shown as a problem: {problems:#?}\n--- logs ---\n{}",
        vigil.logs()
    );
    let events = events_about(&fake, "pod ");
    assert!(events.is_empty(), "Events for routine watch errors: {events:#?}");
    assert_no_fake_errors(&fake);
}

/// A lagging API server answers every watch from the version vigil knows with 504 "Too large
/// resource version" (an ERROR event in the stream, the watch cache's way): vigil lists again, as
/// client-go's reflector does, and the view follows the pod. Before, it watched from the same
/// version forever and the pod's changes never showed.
#[test]
fn watches_behind_a_lagging_server_list_again_and_the_view_follows() {
    let fake = healthy_fake();
    let vigil = Vigil::start(&fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the first run", |l| l == "[+]pod ok");
    wait_until(WAIT, "the watch open", || count(&fake, is_pod_watch) >= 1);
    fake.fault(json!({"resource": "pods", "code": 504, "count": 10_000, "verb": "watch"}));
    let watches = count(&fake, is_pod_watch);
    fake.cut(Cut::Clean);
    wait_until(Duration::from_secs(20), "a watch answered 504", || {
        count(&fake, is_pod_watch) > watches
    });
    let lists = count(&fake, is_pod_list);
    // Only a list can show this change now: every watch ends at once.
    fake.set_pod(pod(
        terminated(running(1), "Error", 1, Duration::from_secs(300)),
        limits(),
    ));
    wait_metric_within(
        &vigil,
        Duration::from_secs(45),
        "vigil_pod_container_restarts_total{container=\"api-gateway\"} 1",
    );
    assert!(count(&fake, is_pod_list) > lists, "listed again");
    assert_no_fake_errors(&fake);
}

/// Issue 20, 5. A pod name longer than 128 characters: `reportingInstance` is cut to 128 bytes
/// (pkg/apis/core/validation/events.go, ReportingInstanceLengthLimit), so the Events are
/// accepted instead of answered 422.
#[test]
fn a_pod_name_of_150_characters_gets_its_events_accepted() {
    let name = format!("api-gateway-{}", "x".repeat(150 - 12));
    assert_eq!(name.len(), 150);
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod_named(&name, running(0), limits()));
    fake.set_metrics(usage_of(&name, "900m", "100Mi"));
    let vigil = Vigil::start(&fake.section_for_pod(&name, "interval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_pod_line(&vigil, "the CPU warn", |l| l.contains("CPU"));
    let mut events = Vec::new();
    assert!(
        poll_until(WAIT, || {
            events = events_about(&fake, "pod warn:");
            !events.is_empty()
        }),
        "no Event accepted for the pod check's warn; refused: {:#?}\n--- logs ---\n{}",
        fake.errors(),
        vigil.logs()
    );
    let event = &events[0][2];
    let instance = event["reportingInstance"].as_str().unwrap_or_default();
    assert!(
        !instance.is_empty() && instance.len() <= 128 && name.starts_with(instance),
        "reportingInstance {instance:?}"
    );
    assert_eq!(event["regarding"]["name"], name.as_str());
    assert_eq!(event["regarding"]["uid"], POD_UID);
    assert_no_fake_errors(&fake);
}

/// Issue 20, 4. `kubectl describe pod` shows only the Events whose `regarding.uid` is the pod's:
/// a status change before the pod list has succeeded (here the list refused for a while, a
/// failing upstream changing at once) waits for the uid instead of being posted without it.
#[test]
fn events_carry_the_pod_uid_even_when_the_first_change_comes_before_the_pod_list() {
    let fake = healthy_fake();
    fake.forbid("pods", true);
    let config = format!(
        "[system]\nenabled = false\n\n[[upstream]]\nname = \"orders\"\nurl = \"http://{}/\"\ninterval = \"1s\"\n\
         timeout = \"500ms\"\nfailure_threshold = 1\n\n{}",
        refused_addr(),
        fake.section("interval = \"1s\"\ntimeout = \"900ms\"\n")
    );
    let vigil = Vigil::start(&config);
    wait_until(WAIT, "the upstream failed", || {
        vigil.get("/readyz?verbose").body.contains("upstream:orders failed")
    });
    wait_until(WAIT, "two lists of the pod refused", || {
        fake.request_log()
            .iter()
            .filter(|r| r.is_list() && r.status == Some(403))
            .count()
            >= 2
    });
    fake.forbid("pods", false);
    let mut events = Vec::new();
    assert!(
        poll_until(Duration::from_secs(45), || {
            events = events_about(&fake, "upstream:orders failed");
            !events.is_empty()
        }),
        "no Event for the upstream's failure: {:#?}\n--- logs ---\n{}",
        fake.event_log(),
        vigil.logs()
    );
    for event in fake.event_log() {
        assert_eq!(event[2]["regarding"]["uid"], POD_UID, "{event:#}");
    }
    assert_no_fake_errors(&fake);
}

/// The `limit` of a list request, if it has one.
fn limit_of(path: &str) -> Option<u64> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("limit="))
        .and_then(|n| n.parse().ok())
}

/// Issue 20, 7. Lists are paginated (`limit=500`, `continue`): a server that gives fewer items
/// a page than asked (here 2 of 5 EndpointSlices) is followed to the last page.
#[test]
fn lists_are_paginated_and_every_page_is_read() {
    let fake = healthy_fake();
    fake.set_page_cap(Some(2));
    fake.set_slices(
        (0..5)
            .map(|i| {
                let mut slice = slice_named(&format!("api-gateway-service-p{i}"), &[true]);
                slice["endpoints"][0]["addresses"] = json!([format!("10.0.1.{i}")]);
                slice
            })
            .collect(),
    );
    let vigil =
        Vigil::start(&fake.section("service = \"api-gateway-service\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n"));
    wait_metric(
        &vigil,
        "vigil_service_endpoints{condition=\"ready\",service=\"api-gateway-service\"} 5",
    );
    let lists: Vec<ApiRequest> = fake.request_log().into_iter().filter(|r| r.is_list()).collect();
    for list in &lists {
        assert!(
            limit_of(&list.path).is_some_and(|l| (1..=500).contains(&l)),
            "a list without a limit of at most 500: {}",
            list.path
        );
    }
    assert!(
        lists.iter().any(|r| r.path.contains("continue=")),
        "no page asked with continue: {lists:#?}"
    );
    assert_no_fake_errors(&fake);
}

/// Issue 20, 6. The API server resets an Event's TTL (1 h) on every write
/// (pkg/registry/core/event/storage/storage.go, TTLFunc), so a series can be patched for as
/// long as it keeps being written: a check failing the same way again and again (an upstream
/// flapping between a 500 and a 200) patches one Event's series beyond 55 minutes instead of
/// starting a new Event each hour. Real time, about 65 minutes: vigil's 55 minutes are its own
/// clock (a scaled clock needs libfaketime on vigil, see the branch's report).
#[test]
#[ignore = "runs 65 minutes of real time; run with --ignored"]
fn a_long_failure_keeps_patching_the_same_events_series_beyond_55_minutes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let fake = healthy_fake();
    let failing = Arc::new(AtomicBool::new(true));
    let answer = Arc::clone(&failing);
    let upstream = FakeServer::start(move |_| {
        if answer.load(Ordering::Relaxed) {
            Response::text(500, "down")
        } else {
            Response::text(200, "ok")
        }
    });
    let config = format!(
        "[system]\nenabled = false\n\n[[upstream]]\nname = \"orders\"\nurl = \"{}\"\ninterval = \"1s\"\n\
         timeout = \"500ms\"\nfailure_threshold = 1\n\n{}",
        upstream.url("/"),
        fake.section("interval = \"5s\"\ntimeout = \"2s\"\n")
    );
    let vigil = Vigil::start(&config);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(65 * 60) {
        std::thread::sleep(Duration::from_secs(20));
        failing.fetch_xor(true, Ordering::Relaxed);
    }
    let failed = events_about(&fake, "upstream:orders failed");
    let created: Vec<&Value> = failed.iter().filter(|e| e[0] == "POST").collect();
    assert_eq!(
        created.len(),
        1,
        "one Event for the same failure: {failed:#?}\n{}",
        vigil.logs()
    );
    let name = created[0][1].clone();
    let observed = |e: &Value| {
        e[2]["series"]["lastObservedTime"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    };
    let first = humantime::parse_rfc3339(created[0][2]["eventTime"].as_str().unwrap_or_default())
        .expect("the Event's eventTime");
    let late = failed
        .iter()
        .filter(|e| e[0] == "PATCH" && e[1] == name)
        .filter_map(observed)
        .filter(|t| t.duration_since(first).is_ok_and(|d| d > Duration::from_secs(56 * 60)))
        .count();
    assert!(late >= 1, "no series update after 56 minutes: {failed:#?}");
    assert_no_fake_errors(&fake);
}
