//! What the `pod` check concludes from what it knows: the last view of the pod and of the
//! Service's EndpointSlices, the metrics API's answer and the API's failures. Pure: no I/O, the
//! time passed in, so that every rule is tested on fixtures.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::config::PodKeys;
use crate::config::Kubernetes;
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Figure, Finding, Observation, Report, Unit};
use crate::kube::client::shorten;
use crate::kube::objects::{ContainerSpec, ContainerStatus, EndpointSlice, Pod, PodMetrics, Terminated};
use crate::kube::quantity;
use crate::kube::store::View;

pub(crate) const READY: Figure = Figure::new("container_ready", Unit::Flag);
pub(crate) const RESTARTS: Figure = Figure::new("container_restarts", Unit::Count);
pub(crate) const CPU_USAGE: Figure = Figure::new("container_cpu_usage", Unit::Cores);
pub(crate) const CPU_LIMIT: Figure = Figure::new("container_cpu_limit", Unit::Cores);
pub(crate) const CPU_RATIO: Figure = Figure::new("container_cpu_usage_ratio", Unit::Ratio);
pub(crate) const MEMORY_USAGE: Figure = Figure::new("container_memory_usage", Unit::Bytes);
pub(crate) const MEMORY_LIMIT: Figure = Figure::new("container_memory_limit", Unit::Bytes);
pub(crate) const MEMORY_RATIO: Figure = Figure::new("container_memory_usage_ratio", Unit::Ratio);
pub(crate) const ENDPOINTS_READY: Figure = Figure::new("endpoints_ready", Unit::Count);
pub(crate) const ENDPOINTS_TOTAL: Figure = Figure::new("endpoints", Unit::Count);
pub(crate) const VIEW_AGE: Figure = Figure::new("view_age", Unit::Seconds);
pub(crate) const API_UP: Figure = Figure::new("api_up", Unit::Flag);

/// What the metrics API answered this run.
#[derive(Debug, Clone)]
pub(crate) enum Usage {
    Figures(PodMetrics),
    /// 404 for this pod: the metrics pipeline has no figures for it yet (a new pod).
    NotYet,
    Failed(Finding),
}

/// Everything one run judges.
pub(crate) struct Inputs<'a> {
    pub config: &'a Kubernetes,
    pub keys: &'a PodKeys,
    pub pod: &'a View<Pod>,
    pub slices: Option<&'a View<EndpointSlice>>,
    pub usage: &'a Usage,
    /// The Event poster's last failure.
    pub events: Option<Finding>,
    pub now: SystemTime,
}

/// The figures the run exports, beside its report.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Exported {
    pub container: Option<String>,
    pub ready: Option<bool>,
    pub restarts: Option<u32>,
    pub last_termination: Option<String>,
    pub cpu_usage: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub memory_usage: Option<f64>,
    pub memory_limit: Option<f64>,
    /// ready, serving, terminating.
    pub endpoints: Option<(u64, u64, u64)>,
    pub api_up: bool,
}

/// Adds `problem` to `problems` unless the same one is there already; `kept` names the view it
/// left old.
fn once(problems: &mut Vec<(Finding, Vec<String>)>, problem: &Finding, kept: Option<String>) {
    match problems.iter_mut().find(|(known, _)| known.reason == problem.reason) {
        Some((_, views)) => views.extend(kept),
        None => problems.push((problem.clone(), kept.into_iter().collect())),
    }
}

/// The judgement of one run.
pub(crate) fn assess(inputs: &Inputs<'_>) -> (Report, Exported) {
    let mut report = Report::new();
    let mut exported = Exported::default();
    let config = inputs.config;
    let ns = &config.namespace;
    let pod_name = &config.pod;

    // The API's failures first: they say why what follows may be old. One token refused, one
    // wrong CA, fails every request alike: each distinct problem is said once, with the views it
    // left old.
    let mut api_up = true;
    let mut api = serde_json::Map::new();
    let mut problems: Vec<(Finding, Vec<String>)> = Vec::new();
    api.insert("url".to_owned(), json!(config.api_url.as_str()));
    for (part, view) in [
        (
            "pods",
            Some((&inputs.pod.problem, &inputs.pod.retrying, inputs.pod.age)),
        ),
        (
            "endpointslices",
            inputs.slices.map(|s| (&s.problem, &s.retrying, s.age)),
        ),
    ] {
        let Some((problem, retrying, age)) = view else {
            continue;
        };
        if let Some(retrying) = retrying {
            // Retried quietly within the grace: for /diag only.
            api.insert(part.to_owned(), json!(format!("retrying: {retrying}")));
        }
        let Some(problem) = problem else {
            continue;
        };
        api_up = false;
        api.insert(part.to_owned(), json!(problem.reason));
        let kept = age.map(|age| format!("{part} as last seen {} ago", fmt::age(age)));
        once(&mut problems, problem, kept);
    }
    if let Usage::Failed(problem) = inputs.usage {
        api_up = false;
        api.insert("metrics".to_owned(), json!(problem.reason));
        once(&mut problems, problem, None);
    }
    if let Some(problem) = &inputs.events {
        api_up = false;
        api.insert("events".to_owned(), json!(problem.reason));
        once(&mut problems, problem, None);
    }
    for (problem, kept) in problems {
        let reason = match kept.is_empty() {
            true => problem.reason,
            false => format!("{}; showing {}", problem.reason, kept.join(", ")),
        };
        report.find(Finding { reason, ..problem });
    }
    exported.api_up = api_up;
    report.observe(API_UP.of(f64::from(u8::from(api_up))));
    report.detail("api", Value::Object(api));
    if let Some(age) = inputs.pod.age {
        report.observe(VIEW_AGE.of(age.as_secs_f64()));
    }

    let describe = format!("kubectl describe pod {pod_name} -n {ns}");
    let pod = inputs.pod.items.iter().find(|p| &p.metadata.name == pod_name);
    match (pod, inputs.pod.listed) {
        (Some(pod), _) => container(inputs, pod, &describe, &mut report, &mut exported),
        (None, true) => report.find(
            Finding::warn(
                FailureKind::Misconfigured,
                format!("pod {pod_name} not found in namespace {ns}"),
            )
            .with_hint("set kubernetes.pod (or POD_NAME from the downward API's metadata.name) and kubernetes.namespace to this pod's"),
        ),
        (None, false) if inputs.pod.problem.is_none() => report.find(Finding::warn(
            FailureKind::Timeout,
            format!("kubernetes API: no answer yet to the list of pod {pod_name}"),
        )),
        (None, false) => {}
    }
    report.detail(
        "pod",
        json!({
            "name": pod_name,
            "namespace": ns,
            "phase": pod.and_then(|p| p.status.phase.as_deref()).map(|p| shorten(p, 32)),
            "listed": inputs.pod.listed,
            "view_age_seconds": inputs.pod.age.map(|a| a.as_secs()),
            "lists": inputs.pod.lists,
            "watches": inputs.pod.watches,
        }),
    );

    if let (Some(service), Some(slices)) = (&config.service, inputs.slices) {
        endpoints(service, ns, slices, &mut report, &mut exported);
    }
    (report, exported)
}

/// The watched container: the configured one, else the pod's first regular container.
fn watched<'p>(config: &Kubernetes, pod: &'p Pod) -> Option<(&'p ContainerSpec, Option<&'p ContainerStatus>)> {
    let name = match &config.container {
        Some(name) => name.as_str(),
        None => pod.spec.containers.first()?.name.as_str(),
    };
    let spec = pod
        .spec
        .containers
        .iter()
        .chain(&pod.spec.init_containers)
        .find(|c| c.name == name)?;
    let status = pod
        .status
        .container_statuses
        .iter()
        .chain(&pod.status.init_container_statuses)
        .find(|s| s.name == name);
    Some((spec, status))
}

fn container(inputs: &Inputs<'_>, pod: &Pod, describe: &str, report: &mut Report, exported: &mut Exported) {
    let config = inputs.config;
    let (ns, pod_name) = (&config.namespace, &config.pod);
    let Some((spec, status)) = watched(config, pod) else {
        let names: Vec<&str> = pod.spec.containers.iter().map(|c| c.name.as_str()).collect();
        let wanted = config.container.as_deref().unwrap_or("(the first container)");
        report.find(
            Finding::warn(
                FailureKind::Misconfigured,
                format!(
                    "container {wanted} not in pod {pod_name} (its containers: {})",
                    shorten(&names.join(", "), 200)
                ),
            )
            .with_hint("set kubernetes.container to the gateway container's name"),
        );
        return;
    };
    let name = spec.name.as_str();
    exported.container = Some(name.to_owned());
    let logs = format!("kubectl logs {pod_name} -c {name} --previous -n {ns}");
    let cpu_limit = limit(spec.resources.limits.cpu.as_deref());
    let memory_limit = limit(spec.resources.limits.memory.as_deref());
    exported.cpu_limit = cpu_limit;
    exported.memory_limit = memory_limit;

    let mut detail = serde_json::Map::new();
    detail.insert("name".to_owned(), json!(name));
    detail.insert(
        "limits".to_owned(),
        json!({
            "cpu": spec.resources.limits.cpu.as_deref().map_or("no limit".to_owned(), |c| shorten(c, 32)),
            "memory": spec.resources.limits.memory.as_deref().map_or("no limit".to_owned(), |m| shorten(m, 32)),
        }),
    );

    if let Some(status) = status {
        exported.ready = Some(status.ready);
        exported.restarts = Some(status.restart_count);
        report.observe(READY.of(f64::from(u8::from(status.ready))));
        report.observe(RESTARTS.of(f64::from(status.restart_count)));
        detail.insert("ready".to_owned(), json!(status.ready));
        detail.insert("restarts".to_owned(), json!(status.restart_count));
        detail.insert("state".to_owned(), json!(state_text(status)));
        if let Some(waiting) = status.state.waiting.as_ref().and_then(|w| w.reason.as_deref()) {
            let waiting = shorten(waiting, 64);
            let hint =
                if waiting.contains("ImagePull") || waiting == "ErrImageNeverPull" || waiting == "InvalidImageName" {
                    format!("{describe} (its Events: the image name, tag or the registry's credentials)")
                } else {
                    format!("{logs}; {describe}")
                };
            report.observe(Observation::text("container_waiting", waiting.clone()));
            report.find(
                Finding::warn(
                    FailureKind::Misconfigured,
                    format!("container {name} waiting: {waiting}"),
                )
                .with_hint(hint),
            );
        }
        if let Some(last) = &status.last_state.terminated {
            exported.last_termination = Some(shorten(last.reason.as_deref().unwrap_or("Unknown"), 64));
            detail.insert("last_termination".to_owned(), termination_json(last));
            restart(inputs, name, status, last, memory_limit, (&logs, describe), report);
        }
    } else {
        detail.insert("state".to_owned(), json!("no status yet"));
    }

    match inputs.usage {
        Usage::Figures(metrics) => {
            let usage = metrics.containers.iter().find(|c| c.name == name);
            let cpu = usage
                .and_then(|u| u.usage.cpu.as_deref())
                .and_then(|q| quantity::parse(q).ok());
            let memory = usage
                .and_then(|u| u.usage.memory.as_deref())
                .and_then(|q| quantity::parse(q).ok());
            exported.cpu_usage = cpu;
            exported.memory_usage = memory;
            let mut usage_detail = json!({
                "cpu_cores": cpu,
                "memory_bytes": memory,
                "timestamp": metrics.timestamp.as_deref().map(|t| shorten(t, 40)),
                "window": metrics.window.as_deref().map(|w| shorten(w, 16)),
            });
            let cpu_hint = format!(
                "the gateway is short of CPU: kubectl top pod {pod_name} --containers -n {ns}; scale out (kubectl scale deployment <the gateway's deployment> --replicas=… -n {ns}) or raise its CPU limit"
            );
            let memory_hint = format!(
                "the gateway is near its memory limit (an OOM kill comes next): kubectl top pod {pod_name} --containers -n {ns}; raise the {name} container's memory limit or find what grows"
            );
            let mut judge = |value: Option<f64>,
                             limit: Option<f64>,
                             figures: (Figure, Figure, Figure),
                             warn: f64,
                             key: &str,
                             hint: String| {
                let (usage_figure, limit_figure, ratio_figure) = figures;
                if let Some(value) = value {
                    report.observe(usage_figure.of(value));
                }
                match limit {
                    Some(limit) => report.observe(limit_figure.of(limit)),
                    None => report.observe(Observation::text(limit_figure.name, "no limit")),
                }
                let (Some(value), Some(limit)) = (value, limit.filter(|l| *l > 0.0)) else {
                    return;
                };
                let ratio = value / limit;
                report.observe(ratio_figure.of(ratio));
                usage_detail[key] = json!(ratio);
                if ratio >= warn {
                    let (used, of) = match usage_figure.unit {
                        Unit::Cores => (fmt::figure(value, Unit::Cores), fmt::figure(limit, Unit::Cores)),
                        _ => (fmt::bytes(value as u64), fmt::bytes(limit as u64)),
                    };
                    let what = if usage_figure.unit == Unit::Cores {
                        "CPU"
                    } else {
                        "memory"
                    };
                    report.find(
                        Finding::warn(
                            FailureKind::Threshold,
                            format!(
                                "container {name} {what} {used} of its {of} limit ({}, warn at {})",
                                fmt::percent(ratio),
                                fmt::percent(warn)
                            ),
                        )
                        .with_hint(hint),
                    );
                }
            };
            judge(
                cpu,
                cpu_limit,
                (CPU_USAGE, CPU_LIMIT, CPU_RATIO),
                inputs.keys.cpu_warn,
                "cpu_ratio",
                cpu_hint,
            );
            judge(
                memory,
                memory_limit,
                (MEMORY_USAGE, MEMORY_LIMIT, MEMORY_RATIO),
                inputs.keys.memory_warn,
                "memory_ratio",
                memory_hint,
            );
            detail.insert("usage".to_owned(), usage_detail);
        }
        Usage::NotYet => {
            detail.insert(
                "usage".to_owned(),
                json!("no figures yet from the metrics API for this pod"),
            );
        }
        Usage::Failed(problem) => {
            detail.insert("usage".to_owned(), json!(problem.reason));
        }
    }
    report.detail("container", Value::Object(detail));
}

/// A restart (or OOM kill) within `restart_window` warns, naming how it ended and when.
fn restart(
    inputs: &Inputs<'_>,
    name: &str,
    status: &ContainerStatus,
    last: &Terminated,
    memory_limit: Option<f64>,
    (logs, describe): (&str, &str),
    report: &mut Report,
) {
    let Some(finished) = last
        .finished_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    else {
        return;
    };
    let ago = inputs.now.duration_since(finished).unwrap_or(Duration::ZERO);
    if ago > inputs.keys.restart_window {
        return;
    }
    let reason = shorten(last.reason.as_deref().unwrap_or("Unknown"), 64);
    let restarts = match status.restart_count {
        1 => "1 restart".to_owned(),
        n => format!("{n} restarts"),
    };
    let text = format!(
        "container {name} restarted {} ago: {reason} (exit code {}) at {}; {restarts}",
        fmt::age(ago),
        last.exit_code,
        fmt::timestamp_seconds(finished)
    );
    let hint = if reason == "OOMKilled" {
        let limit = memory_limit.map_or_else(|| "set one".to_owned(), |l| fmt::bytes(l as u64));
        format!(
            "the gateway ran out of memory: raise the {name} container's memory limit ({limit}; deploy/base/deployment.yaml) or find what grew: {describe}; {logs}"
        )
    } else {
        format!("{logs}; {describe}")
    };
    report.find(Finding::warn(FailureKind::Threshold, text).with_hint(hint));
}

fn limit(text: Option<&str>) -> Option<f64> {
    text.and_then(|q| quantity::parse(q).ok())
}

fn state_text(status: &ContainerStatus) -> String {
    let state = &status.state;
    if let Some(waiting) = &state.waiting {
        format!(
            "waiting: {}",
            shorten(waiting.reason.as_deref().unwrap_or("unknown"), 64)
        )
    } else if let Some(terminated) = &state.terminated {
        format!(
            "terminated: {}",
            shorten(terminated.reason.as_deref().unwrap_or("unknown"), 64)
        )
    } else if state.running.is_some() {
        "running".to_owned()
    } else {
        "unknown".to_owned()
    }
}

fn termination_json(last: &Terminated) -> Value {
    json!({
        "reason": last.reason.as_deref().map(|r| shorten(r, 64)),
        "exit_code": last.exit_code,
        "finished_at": last.finished_at.as_deref().map(|t| shorten(t, 40)),
    })
}

/// The Service's endpoints by condition; fewer than half ready warns.
fn endpoints(service: &str, ns: &str, slices: &View<EndpointSlice>, report: &mut Report, exported: &mut Exported) {
    if !slices.listed {
        return;
    }
    // An endpoint can sit in two slices while the controller moves it: count each address once.
    let mut seen = std::collections::BTreeSet::new();
    let (mut total, mut ready, mut serving, mut terminating) = (0u64, 0u64, 0u64, 0u64);
    for endpoint in slices.items.iter().flat_map(|s| &s.endpoints) {
        if let Some(first) = endpoint.addresses.first()
            && !seen.insert(first.clone())
        {
            continue;
        }
        total += 1;
        ready += u64::from(endpoint.conditions.is_ready());
        serving += u64::from(endpoint.conditions.is_serving());
        terminating += u64::from(endpoint.conditions.is_terminating());
    }
    exported.endpoints = Some((ready, serving, terminating));
    report.observe(ENDPOINTS_READY.of(ready as f64));
    report.observe(ENDPOINTS_TOTAL.of(total as f64));
    report.detail(
        "endpoints",
        json!({
            "service": service,
            "total": total,
            "ready": ready,
            "serving": serving,
            "terminating": terminating,
            "slices": slices.items.len(),
        }),
    );
    let hint = format!(
        "kubectl get endpointslices -l kubernetes.io/service-name={service} -n {ns}; kubectl get pods -n {ns} (which replicas are not ready, and kubectl describe pod for why)"
    );
    if total == 0 {
        report
            .find(Finding::warn(FailureKind::Threshold, format!("service {service} has no endpoints")).with_hint(hint));
    } else if ready * 2 < total {
        report.find(
            Finding::warn(
                FailureKind::Threshold,
                format!("service {service}: {ready} of {total} endpoints ready ({serving} serving, {terminating} terminating)"),
            )
            .with_hint(hint),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::outcome::Status;
    use crate::core::url::HttpUrl;

    fn keys() -> PodKeys {
        PodKeys {
            cpu_warn: 0.8,
            memory_warn: 0.9,
            restart_window: Duration::from_secs(900),
        }
    }

    fn config() -> Kubernetes {
        Kubernetes {
            api_url: HttpUrl::parse("https://10.96.0.1:443").unwrap(),
            token_file: "/t".into(),
            ca_file: "/c".into(),
            namespace: "api-gateway".to_owned(),
            pod: "gw-1".to_owned(),
            container: None,
            service: Some("api-gateway-service".to_owned()),
            metrics_interval: Duration::from_secs(15),
            events: true,
        }
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-12-01T12:00:00Z").unwrap()
    }

    fn pod(limits: &str, status: &str) -> View<Pod> {
        let pod: Pod = serde_json::from_str(&format!(
            r#"{{"metadata":{{"name":"gw-1"}},"spec":{{"containers":[{{"name":"api-gateway","resources":{{"limits":{limits}}}}},{{"name":"other"}}],
            "initContainers":[{{"name":"vigil"}}]}},
            "status":{{"containerStatuses":[{status}],"initContainerStatuses":[{{"name":"vigil","ready":true,"restartCount":0,"state":{{"running":{{}}}}}}]}}}}"#
        ))
        .unwrap();
        View {
            items: vec![pod],
            listed: true,
            age: Some(Duration::ZERO),
            problem: None,
            retrying: None,
            lists: 1,
            watches: 1,
        }
    }

    const RUNNING: &str = r#"{"name":"api-gateway","ready":true,"restartCount":0,"state":{"running":{}}}"#;

    fn usage(cpu: &str, memory: &str) -> Usage {
        Usage::Figures(
            serde_json::from_str(&format!(
                r#"{{"containers":[{{"name":"api-gateway","usage":{{"cpu":"{cpu}","memory":"{memory}"}}}},{{"name":"vigil","usage":{{"cpu":"999","memory":"1"}}}}]}}"#
            ))
            .unwrap(),
        )
    }

    fn slices(conditions: &[(bool, bool, bool)]) -> View<EndpointSlice> {
        let endpoints: Vec<Value> = conditions
            .iter()
            .enumerate()
            .map(|(i, (r, s, t))| json!({"addresses": [format!("10.0.0.{i}")], "conditions": {"ready": r, "serving": s, "terminating": t}}))
            .collect();
        View {
            items: vec![serde_json::from_value(json!({"metadata": {"name": "s1"}, "endpoints": endpoints})).unwrap()],
            listed: true,
            age: Some(Duration::ZERO),
            problem: None,
            retrying: None,
            lists: 1,
            watches: 1,
        }
    }

    fn run(
        pod: &View<Pod>,
        slices: Option<&View<EndpointSlice>>,
        usage: &Usage,
    ) -> (crate::core::outcome::Outcome, Exported) {
        let config = config();
        let (report, exported) = assess(&Inputs {
            config: &config,
            keys: &keys(),
            pod,
            slices,
            usage,
            events: None,
            now: now(),
        });
        (report.into_outcome(), exported)
    }

    #[test]
    fn a_running_container_within_its_limits_passes_and_exports_its_figures() {
        let up = slices(&[(true, true, false); 3]);
        let (outcome, exported) = run(
            &pod(r#"{"cpu":"1","memory":"512Mi"}"#, RUNNING),
            Some(&up),
            &usage("250m", "128Mi"),
        );
        assert_eq!(outcome.status, Status::Pass, "{}", outcome.reason);
        assert_eq!(
            exported.container.as_deref(),
            Some("api-gateway"),
            "the first regular container"
        );
        assert_eq!((exported.cpu_usage, exported.cpu_limit), (Some(0.25), Some(1.0)));
        assert_eq!(exported.memory_limit, Some(536_870_912.0));
        assert_eq!(exported.endpoints, Some((3, 3, 0)));
        assert!(exported.api_up);
        let ratio = outcome
            .observations
            .iter()
            .find(|o| o.name == "container_cpu_usage_ratio")
            .unwrap();
        assert_eq!(ratio.value, crate::core::outcome::Value::Number(0.25));
    }

    #[test]
    fn an_oom_kill_within_the_window_warns_with_the_memory_hint() {
        let status = r#"{"name":"api-gateway","ready":true,"restartCount":2,"state":{"running":{}},
            "lastState":{"terminated":{"reason":"OOMKilled","exitCode":137,"finishedAt":"2026-12-01T11:57:00Z"}}}"#;
        let (outcome, exported) = run(&pod(r#"{"memory":"512Mi"}"#, status), None, &Usage::NotYet);
        assert_eq!(outcome.status, Status::Warn);
        assert_eq!(
            outcome.reason,
            "container api-gateway restarted 3m ago: OOMKilled (exit code 137) at 2026-12-01T11:57:00Z; 2 restarts"
        );
        let hint = outcome.hint.unwrap();
        assert!(
            hint.contains("raise the api-gateway container's memory limit (512MiB"),
            "{hint}"
        );
        assert!(
            hint.contains("kubectl logs gw-1 -c api-gateway --previous -n api-gateway"),
            "{hint}"
        );
        assert_eq!(exported.last_termination.as_deref(), Some("OOMKilled"));
        assert_eq!(exported.restarts, Some(2));
    }

    #[test]
    fn an_old_restart_and_a_waiting_reason() {
        let old = r#"{"name":"api-gateway","ready":true,"restartCount":1,"state":{"running":{}},
            "lastState":{"terminated":{"reason":"Error","exitCode":1,"finishedAt":"2026-12-01T10:00:00Z"}}}"#;
        let (outcome, _) = run(&pod("{}", old), None, &Usage::NotYet);
        assert_eq!(
            outcome.status,
            Status::Pass,
            "two hours ago is outside 15m: {}",
            outcome.reason
        );
        let waiting = r#"{"name":"api-gateway","ready":false,"restartCount":5,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}"#;
        let (outcome, exported) = run(&pod("{}", waiting), None, &Usage::NotYet);
        assert_eq!(outcome.reason, "container api-gateway waiting: CrashLoopBackOff");
        assert!(outcome.hint.unwrap().contains("--previous"));
        assert_eq!(exported.ready, Some(false));
    }

    #[test]
    fn cpu_over_its_share_of_the_limit_warns_and_no_limit_gives_no_ratio() {
        let (outcome, _) = run(
            &pod(r#"{"cpu":"500m","memory":"1Gi"}"#, RUNNING),
            None,
            &usage("450m", "100Mi"),
        );
        assert_eq!(outcome.status, Status::Warn);
        assert_eq!(
            outcome.reason,
            "container api-gateway CPU 0.45 cores of its 0.5 cores limit (90%, warn at 80%)"
        );
        assert!(
            outcome
                .hint
                .unwrap()
                .contains("kubectl top pod gw-1 --containers -n api-gateway")
        );

        let (outcome, exported) = run(&pod("{}", RUNNING), None, &usage("3", "2Gi"));
        assert_eq!(outcome.status, Status::Pass);
        assert_eq!(exported.cpu_limit, None);
        assert!(outcome.observations.iter().all(|o| !o.name.ends_with("_ratio")));
        let shown = outcome
            .observations
            .iter()
            .find(|o| o.name == "container_cpu_limit")
            .unwrap();
        assert_eq!(shown.value, crate::core::outcome::Value::Text("no limit".to_owned()));
    }

    #[test]
    fn fewer_than_half_of_the_endpoints_ready_warns() {
        let two_of_three = slices(&[(true, true, false), (true, true, false), (false, false, true)]);
        let (outcome, _) = run(&pod("{}", RUNNING), Some(&two_of_three), &Usage::NotYet);
        assert_eq!(outcome.status, Status::Pass);
        let one_of_three = slices(&[(true, true, false), (false, true, true), (false, false, true)]);
        let (outcome, exported) = run(&pod("{}", RUNNING), Some(&one_of_three), &Usage::NotYet);
        assert_eq!(
            outcome.reason,
            "service api-gateway-service: 1 of 3 endpoints ready (2 serving, 2 terminating)"
        );
        assert_eq!(exported.endpoints, Some((1, 2, 2)));
    }

    #[test]
    fn api_failures_warn_and_keep_the_last_view_with_its_age() {
        let mut stale = pod("{}", RUNNING);
        stale.age = Some(Duration::from_secs(150));
        stale.problem = Some(
            Finding::warn(
                FailureKind::Refused,
                "kubernetes API: cannot reach https://10.96.0.1:443: connection refused",
            )
            .with_hint("h"),
        );
        let (outcome, exported) = run(&stale, None, &Usage::NotYet);
        assert_eq!(outcome.status, Status::Warn);
        assert_eq!(
            outcome.reason,
            "kubernetes API: cannot reach https://10.96.0.1:443: connection refused; showing pods as last seen 2m ago"
        );
        assert!(!exported.api_up);
        assert_eq!(exported.ready, Some(true), "the last view still speaks");
    }

    #[test]
    fn one_api_problem_on_every_request_is_said_once() {
        let refused = Finding::warn(
            FailureKind::Auth,
            "kubernetes API: unauthorized: the service account token was refused",
        )
        .with_hint("h");
        let mut stale = pod("{}", RUNNING);
        stale.age = Some(Duration::from_secs(150));
        stale.problem = Some(refused.clone());
        let mut old_slices = slices(&[(true, true, false)]);
        old_slices.age = Some(Duration::from_secs(150));
        old_slices.problem = Some(refused.clone());
        let (outcome, _) = run(&stale, Some(&old_slices), &Usage::Failed(refused.clone()));
        assert_eq!(
            outcome.reason,
            "kubernetes API: unauthorized: the service account token was refused; showing pods as last seen 2m ago, endpointslices as last seen 2m ago"
        );
    }

    #[test]
    fn a_configured_container_may_be_the_native_sidecar_and_a_missing_one_is_named() {
        let mut config = config();
        config.container = Some("vigil".to_owned());
        let view = pod("{}", RUNNING);
        let (report, exported) = assess(&Inputs {
            config: &config,
            keys: &keys(),
            pod: &view,
            slices: None,
            usage: &Usage::NotYet,
            events: None,
            now: now(),
        });
        assert_eq!(report.findings().len(), 0);
        assert_eq!(
            (exported.container.as_deref(), exported.ready),
            (Some("vigil"), Some(true))
        );
        config.container = Some("nope".to_owned());
        let (report, _) = assess(&Inputs {
            config: &config,
            keys: &keys(),
            pod: &view,
            slices: None,
            usage: &Usage::NotYet,
            events: None,
            now: now(),
        });
        assert_eq!(
            report.findings()[0].reason,
            "container nope not in pod gw-1 (its containers: api-gateway, other)"
        );
    }
}
