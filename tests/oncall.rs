//! On call (issue 24): `vigil fleet` over real replicas on 127.0.0.2–4 (one port), and `vigil
//! drain` / `POST` and `DELETE /drain` against a running agent: a replica out of the Service by
//! hand while every check, `/livez`, `/metrics` and `/diag` go on.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::exposition::sample;
use support::kube::FakeKube;
use support::netns::Netns;
use support::{FakeServer, Response, Vigil, free_port_on, refused_addr, run_cli, wait_until};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "oncall-diag-token-0123456789";

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `vigil <args>` with `config` (which must set `listen`).
fn cli(args: &[&str], config: &str) -> Output {
    run_cli(args, Some(config), &[])
}

/// The body of a config file of a running agent, with its `listen`.
fn config_of(vigil: &Vigil) -> String {
    std::fs::read_to_string(vigil.config_path()).expect("the agent's config file")
}

fn metric(vigil: &Vigil, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(&vigil.get("/metrics").body, name, labels)
}

/// Three replicas on 127.0.0.2–4 sharing a port, each listing the others in `[fleet] peers`;
/// the one on 127.0.0.4 has its own (local, critical) gateway check failing.
struct Three {
    replicas: Vec<Vigil>,
    port: u16,
    _gateway: FakeServer,
    refused: SocketAddr,
}

fn three() -> Three {
    let gateway = FakeServer::fixed(Response::text(200, "ok"));
    let refused = refused_addr();
    let ips: Vec<Ipv4Addr> = (2..=4).map(ip).collect();
    let port = free_port_on(&ips);
    let replicas = ips
        .iter()
        .map(|own| {
            let peers: Vec<String> = ips
                .iter()
                .filter(|p| *p != own)
                .map(|p| format!("\"{p}:{port}\""))
                .collect();
            let health = if *own == ip(4) {
                format!("http://{refused}/healthz")
            } else {
                gateway.url("/healthz")
            };
            let config = format!(
                "[defaults]\ninterval = \"500ms\"\ntimeout = \"400ms\"\nfailure_threshold = 1\n\
                 [system]\nenabled = false\n[gateway]\nhealth_url = \"{health}\"\n\
                 [fleet]\npeers = [{}]\n",
                peers.join(", ")
            );
            Vigil::builder().listen(SocketAddr::from((*own, port))).start(&config)
        })
        .collect::<Vec<_>>();
    for (i, vigil) in replicas.iter().enumerate() {
        let want = if i == 2 { 503 } else { 200 };
        vigil.wait_for_status("/readyz", want, WAIT);
    }
    Three {
        replicas,
        port,
        _gateway: gateway,
        refused,
    }
}

#[test]
fn vigil_fleet_shows_every_replica_names_the_failing_one_and_exits_1() {
    let fleet = three();
    let port = fleet.port;
    let config = config_of(&fleet.replicas[0]);
    let started = Instant::now();
    let out = cli(&["fleet"], &config);
    let took = started.elapsed();
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one replica is not ready:\n{text}{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    assert!(
        text.starts_with("3 replicas: 2 ready, 1 not ready, 0 no answer"),
        "{text}"
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("REPLICA"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 4, "a header and three rows:\n{text}");
    let row = |n: u8| {
        table
            .iter()
            .find(|l| l.starts_with(&format!("127.0.0.{n}:{port}")))
            .unwrap_or_else(|| panic!("no row for 127.0.0.{n}:\n{text}"))
            .to_string()
    };
    assert!(
        row(2).starts_with(&format!("127.0.0.2:{port} *  yes")),
        "this replica, first and marked:\n{text}"
    );
    assert!(row(3).contains("  yes  "), "{text}");
    assert!(row(4).contains("  no  "), "{text}");
    let header = text.lines().find(|l| l.starts_with("REPLICA")).expect("a header");
    assert!(header.contains("READY") && header.contains("gateway"), "{header}");
    let column = header.find("gateway").unwrap();
    assert_eq!(&row(4)[column..column + 1], "-", "the failing cell:\n{text}");
    assert_eq!(&row(3)[column..column + 1], "+", "{text}");
    assert!(
        text.contains(&format!(
            "\n127.0.0.4:{port}  gateway failed: GET http://{}/healthz: connection refused\n",
            fleet.refused
        )),
        "each failing cell's reason:\n{text}"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 80 || line.contains(" failed: "), "{line:?}");
    }

    let out = cli(&["fleet", "--output", "json"], &config);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(doc["ready"], false);
    assert_eq!(
        doc["summary"],
        json!({"replicas": 3, "ready": 2, "not_ready": 1, "no_answer": 0})
    );
    let replicas = doc["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 3);
    let failing = replicas
        .iter()
        .find(|r| r["address"] == format!("127.0.0.4:{port}"))
        .expect("the failing replica");
    assert_eq!(failing["ready"], false);
    assert_eq!(failing["status_code"], 503);
    assert_eq!(failing["checks"][0]["name"], "gateway");
    assert_eq!(failing["checks"][0]["status"], "fail");
    assert!(
        failing["checks"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("connection refused")),
        "{failing}"
    );
    assert_eq!(replicas[0]["this_replica"], true);

    // Every replica ready (the failing one gone from [fleet] peers): exit 0.
    let healthy = config.replace(&format!(", \"127.0.0.4:{port}\""), "");
    assert_ne!(healthy, config);
    let out = cli(&["fleet"], &healthy);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_replica_that_does_not_answer_shows_a_question_mark_within_the_deadline() {
    let fleet = three();
    let silent = FakeServer::hanging();
    let config = config_of(&fleet.replicas[1]).replace("peers = [", &format!("peers = [\"{}\", ", silent.addr()));
    let started = Instant::now();
    let out = cli(&["fleet"], &config);
    let took = started.elapsed();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        took < Duration::from_millis(4500),
        "the silent replica is cut at 2 s: took {took:?}"
    );
    assert!(
        text.starts_with("4 replicas: 2 ready, 1 not ready, 1 no answer"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with(&silent.addr().to_string()))
        .unwrap_or_else(|| panic!("no row for the silent replica:\n{text}"));
    assert!(row.contains("  ?      ?"), "{row:?}\n{text}");
    assert!(
        text.contains(&format!("{}  no answer: timed out after 2s", silent.addr())),
        "{text}"
    );
    assert!(silent.connections() >= 1, "it was asked");

    let killed = {
        let mut replicas = fleet.replicas;
        drop(replicas.remove(2));
        replicas
    };
    let out = cli(&["fleet", "--output", "json"], &config_of(&killed[0]));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let gone = doc["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["answered"] == false)
        .expect("the stopped replica");
    assert_eq!(gone["error"], "connection refused", "{gone}");
}

/// Only vigil's own answers count in `vigil fleet` too: a proxy or a mesh sidecar answering
/// `/readyz?verbose` in vigil's words but without `Vigil-Instance` is no answer, not a replica.
#[test]
fn an_answer_without_vigil_instance_is_no_answer() {
    let fleet = three();
    let proxy = FakeServer::fixed(Response::text(
        503,
        "[-]postgres failed: no healthy upstream\nreadyz check failed\n",
    ));
    let config = config_of(&fleet.replicas[1]).replace("peers = [", &format!("peers = [\"{}\", ", proxy.addr()));
    let out = cli(&["fleet"], &config);
    let text = stdout(&out);
    assert!(
        text.starts_with("4 replicas: 2 ready, 1 not ready, 1 no answer"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}  no answer: answered 503 without Vigil-Instance: not vigil",
            proxy.addr()
        )),
        "{text}"
    );
}

/// A replica reached again through a peer address (here: `listen` on every address, and a peer
/// entry that is this same agent over another loopback address) is one replica, not two: its
/// `Vigil-Instance` says so.
#[test]
fn this_replica_reached_again_through_a_peer_address_is_listed_once() {
    let port = free_port_on(&[Ipv4Addr::UNSPECIFIED]);
    let config = format!("[system]\nenabled = false\n[fleet]\npeers = [\"{}:{port}\"]\n", ip(5));
    let vigil = Vigil::builder()
        .listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .start(&config);
    vigil.wait_for_status("/readyz", 200, WAIT);
    let out = cli(&["fleet"], &config_of(&vigil));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.starts_with("1 replica: 1 ready"), "{text}");
    assert!(!text.contains(&format!("{}:{port}", ip(5))), "listed twice:\n{text}");
}

#[test]
fn vigil_fleet_without_a_fleet_section_is_refused_naming_fleet_peers() {
    let out = cli(&["fleet"], "listen = \"127.0.0.1:9\"\n[system]\nenabled = false\n");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.starts_with("vigil: fleet.peers: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// One agent with a passing upstream run every 200 ms (and `extra` appended).
fn drainable(extra: &str) -> (Vigil, FakeServer) {
    let upstream = FakeServer::fixed(Response::text(200, "ok"));
    let vigil = Vigil::start(&format!(
        "[defaults]\ninterval = \"200ms\"\ntimeout = \"150ms\"\n[system]\nenabled = false\n\
         [[upstream]]\nname = \"orders\"\nurl = \"{}\"\ncritical = true\n{extra}",
        upstream.url("/healthz")
    ));
    vigil.wait_for_status("/readyz", 200, WAIT);
    (vigil, upstream)
}

fn runs(vigil: &Vigil) -> f64 {
    metric(
        vigil,
        "vigil_check_runs_total",
        &[("check", "upstream:orders"), ("result", "pass")],
    )
    .unwrap_or(0.0)
}

/// `HH:MM:SSZ`.
fn is_clock(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 9
        && b[8] == b'Z'
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|i| b[*i].is_ascii_digit())
}

#[test]
fn vigil_drain_takes_the_replica_out_while_everything_else_goes_on_and_cancel_puts_it_back() {
    let (vigil, _upstream) = drainable("");
    let config = config_of(&vigil);
    assert_eq!(metric(&vigil, "vigil_drained", &[]), Some(0.0));

    let out = cli(&["drain", "--for", "30s", "--reason", "forensics"], &config);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("drained for 30s: "), "{}", stdout(&out));

    let readyz = vigil.get("/readyz?verbose");
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    let line = readyz
        .body
        .lines()
        .find(|l| l.starts_with("[-]drain failed: "))
        .unwrap_or_else(|| panic!("no drain line:\n{}", readyz.body));
    let clock = line
        .strip_prefix("[-]drain failed: taken out by hand: forensics (until ")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(is_clock(clock), "until HH:MM:SSZ: {line:?}");
    assert!(readyz.body.starts_with("[+]upstream:orders ok\n"), "{}", readyz.body);
    assert_eq!(vigil.get("/readyz").status, 503);
    assert_eq!(
        vigil.get("/readyz/upstream:orders").status,
        200,
        "each check answers for itself"
    );
    assert_eq!(
        vigil.get("/livez").status,
        200,
        "the kubelet's liveness probe is unaffected"
    );
    assert_eq!(metric(&vigil, "vigil_drained", &[]), Some(1.0));
    assert_eq!(metric(&vigil, "vigil_ready", &[]), Some(0.0));
    let before = runs(&vigil);
    wait_until(WAIT, "the check to keep running while drained", || {
        runs(&vigil) >= before + 3.0
    });
    let diag = vigil.get("/diag");
    let head: Vec<&str> = diag.body.lines().take(10).collect();
    assert!(
        head.iter().any(|l| l.contains("taken out by hand: forensics")),
        "/diag says so in its first lines:\n{}",
        diag.body
    );
    let json = vigil.get("/diag?format=json").json();
    assert_eq!(json["vigil"]["drained"]["reason"], "forensics");
    let logs = vigil.logs();
    assert!(logs.contains("Taken out of the Service by hand"), "{logs}");

    let out = cli(&["drain", "--cancel"], &config);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let readyz = vigil.get("/readyz?verbose");
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    assert!(!readyz.body.contains("drain"), "{}", readyz.body);
    assert_eq!(metric(&vigil, "vigil_drained", &[]), Some(0.0));
    vigil.wait_for_log("Back in the Service: drain over: cancelled by hand", WAIT);
    let transitions = vigil.get("/diag?format=json").json()["vigil"]["transitions"].clone();
    let drains: Vec<&Value> = transitions
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["check"] == "drain")
        .collect();
    assert_eq!(drains.len(), 2, "start and end in the timeline: {transitions}");

    // A cancel with nothing to cancel is no error; a drain too long is refused naming --for.
    assert_eq!(cli(&["drain", "--cancel"], &config).status.code(), Some(0));
    let out = cli(&["drain", "--for", "25h"], &config);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("vigil: --for: at most 24h"),
        "{}",
        stderr(&out)
    );
    assert_eq!(vigil.get("/readyz").status, 200);
}

#[test]
fn a_drain_ends_by_itself_at_its_deadline_and_a_restart_forgets_it() {
    let (vigil, _upstream) = drainable("");
    let config = config_of(&vigil);
    let out = cli(&["drain", "--for", "2s", "--reason", "short"], &config);
    let asked = Instant::now();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(vigil.get("/readyz").status, 503);
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "not before its deadline: {:?}",
        asked.elapsed()
    );
    vigil.wait_for_log("drain over: its time is up", WAIT);
    assert_eq!(metric(&vigil, "vigil_drained", &[]), Some(0.0));

    // Out for 10 minutes, then the process restarts (same address, same configuration).
    let out = cli(&["drain", "--for", "10m", "--reason", "kept"], &config);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(vigil.get("/readyz").status, 503);
    let addr = vigil.addr();
    let body = config
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .to_owned();
    drop(vigil);
    let again = Vigil::builder().listen(addr).start(&body);
    let readyz = again.wait_for_status("/readyz", 200, WAIT);
    assert!(!readyz.body.contains("drain"), "a restart forgets the drain");
}

#[test]
fn drain_is_post_and_delete_only_and_other_paths_still_refuse_post() {
    let (vigil, _upstream) = drainable("");
    let get = vigil.get("/drain");
    assert_eq!(get.status, 405, "{}", get.body);
    assert_eq!(get.header("allow"), Some("POST, DELETE"));
    for path in ["/readyz", "/livez", "/metrics", "/diag", "/"] {
        let post = vigil.request("POST", path, &[]);
        assert_eq!(post.status, 405, "POST {path}: {}", post.body);
        assert_eq!(post.header("allow"), Some("GET, HEAD"), "POST {path}");
    }
    let bad = vigil.request("POST", "/drain?for=forever", &[]);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("for: expected a duration"), "{}", bad.body);
    assert_eq!(vigil.request("POST", "/drain?for=25h", &[]).status, 400);
    assert_eq!(vigil.get("/readyz").status, 200, "nothing refused drained anything");

    // The reason is the operator's words, made one printable bounded line.
    let long = "x".repeat(1000);
    let post = vigil.request("POST", &format!("/drain?for=1m&reason=%1B%5B2Jwiped%0Aline{long}"), &[]);
    assert_eq!(post.status, 200, "{}", post.body);
    let readyz = vigil.get("/readyz?verbose").body;
    let line = readyz
        .lines()
        .find(|l| l.starts_with("[-]drain failed: "))
        .expect("the drain line");
    assert!(line.contains("taken out by hand: \u{fffd}wiped line"), "{line:?}");
    assert!(!line.contains('\u{1b}'));
    assert!(line.len() < 300, "bounded: {} bytes", line.len());
    let delete = vigil.request("DELETE", "/drain", &[]);
    assert_eq!(delete.status, 200, "{}", delete.body);
    assert_eq!(vigil.get("/readyz").status, 200);
}

#[test]
fn with_a_diag_token_configured_drain_needs_it_even_from_loopback() {
    let (vigil, _upstream) = drainable(&format!("[diag]\ntoken = \"{TOKEN}\"\n"));
    let refused = vigil.request("POST", "/drain?for=1m", &[]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let wrong = vigil.request("POST", "/drain?for=1m", &[("Authorization", "Bearer not-the-token")]);
    assert_eq!(wrong.status, 403);
    assert_eq!(vigil.request("DELETE", "/drain", &[]).status, 403);
    assert_eq!(vigil.get("/readyz").status, 200);
    let bearer = format!("Bearer {TOKEN}");
    let taken = vigil.request("POST", "/drain?for=1m&reason=with+token", &[("Authorization", &bearer)]);
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(vigil.get("/readyz").status, 503);
    // vigil drain reads the token as the agent does and sends it.
    let out = cli(&["drain", "--cancel"], &config_of(&vigil));
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(vigil.get("/readyz").status, 200);
    assert!(!vigil.logs().contains(TOKEN), "the token is never logged");
}

/// A minimal valid pod for the fake API, so that Events get its uid.
fn pod() -> Value {
    let started = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60)).to_string();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw-1", "namespace": "api-gateway", "uid": "3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d11"},
        "spec": {"containers": [{"name": "api-gateway", "image": "registry.example/api-gateway:1.4"}]},
        "status": {
            "phase": "Running", "podIP": "10.0.0.7",
            "containerStatuses": [{
                "name": "api-gateway", "ready": true, "restartCount": 0, "started": true,
                "image": "registry.example/api-gateway:1.4", "imageID": "registry.example/api-gateway@sha256:0123",
                "containerID": "containerd://abc", "state": {"running": {"startedAt": started}}
            }]
        }
    })
}

#[test]
fn a_drain_and_its_end_are_events_on_the_pod_with_kubernetes() {
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod());
    let (vigil, _upstream) = drainable(&fake.section(""));
    let config = config_of(&vigil);
    assert_eq!(
        cli(&["drain", "--for", "1m", "--reason", "forensics"], &config)
            .status
            .code(),
        Some(0)
    );
    let note = |e: &Value, start: &str| e[2]["note"].as_str().is_some_and(|n| n.starts_with(start));
    let mut events = Vec::new();
    wait_until(WAIT, "the drain's Event", || {
        events = fake.event_log();
        events
            .iter()
            .any(|e| note(e, "drain failed: taken out by hand: forensics (until "))
    });
    let event = &events.iter().find(|e| note(e, "drain failed: ")).expect("found above")[2];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reportingController"], "vigil");
    assert_eq!(event["regarding"]["uid"], "3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d11");
    let errors = fake.errors();
    assert!(errors.is_empty(), "the fake API refused: {errors:#?}");
}

/// `curl -X method url` from inside the namespace: the status code.
fn curl(netns: &Netns, method: &str, url: &str, headers: &[&str]) -> u16 {
    let mut command = netns.command("curl");
    command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", "-X", method]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("curl in the namespace");
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0)
}

/// An agent listening on `ip` with the diag token and one passing upstream (kept alive by the
/// returned server).
fn agent_with_token_on(ip: IpAddr) -> (FakeServer, Vigil) {
    let upstream = FakeServer::fixed(Response::text(200, "ok"));
    let vigil = Vigil::builder().listen_ip(ip).start(&format!(
        "[system]\nenabled = false\n[diag]\ntoken = \"{TOKEN}\"\n\
         [[upstream]]\nname = \"orders\"\nurl = \"{}\"\n",
        upstream.url("/healthz")
    ));
    (upstream, vigil)
}

#[test]
fn post_drain_from_another_network_namespace_is_refused_even_with_the_token() {
    let netns = match Netns::create("oncall").and_then(|netns| netns.with_veth(202)) {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("SKIPPED: a network namespace is needed for a peer from outside the pod: {why}");
            return;
        }
    };
    let (_upstream, vigil) = agent_with_token_on(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    vigil.wait_for_status("/readyz", 200, WAIT);
    let base = format!("http://{}:{}", netns.host_ip(), vigil.port());
    assert_eq!(
        curl(&netns, "GET", &format!("{base}/livez"), &[]),
        200,
        "the namespace reaches the agent"
    );
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(curl(&netns, "POST", &format!("{base}/drain?for=1m"), &[]), 403);
    assert_eq!(
        curl(&netns, "POST", &format!("{base}/drain?for=1m"), &[&bearer]),
        403,
        "loopback only, whatever token a remote peer holds"
    );
    assert_eq!(curl(&netns, "DELETE", &format!("{base}/drain"), &[&bearer]), 403);
    assert_eq!(curl(&netns, "POST", &format!("{base}/readyz"), &[&bearer]), 405);
    assert_eq!(vigil.get("/readyz").status, 200, "still in the Service");
    assert_eq!(metric(&vigil, "vigil_drained", &[]), Some(0.0));
}

/// `listen` set to one address of the pod (not a wildcard, not loopback): `vigil drain` still
/// reaches `/drain`, which answers loopback peers only, by speaking from loopback. The address is
/// the host side of a veth this test makes (root only).
#[test]
fn vigil_drain_reaches_an_agent_listening_on_one_non_loopback_address() {
    let netns = match Netns::create("drainat").and_then(|netns| netns.with_veth(203)) {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("SKIPPED: a network namespace is needed for a non-loopback address of our own: {why}");
            return;
        }
    };
    let (_upstream, vigil) = agent_with_token_on(IpAddr::V4(netns.host_ip()));
    assert_eq!(vigil.addr().ip(), IpAddr::V4(netns.host_ip()));
    vigil.wait_for_status("/readyz", 200, WAIT);
    let config = config_of(&vigil);
    let out = cli(&["drain", "--for", "1m", "--reason", "forensics"], &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "vigil drain against {}: {}{}",
        vigil.addr(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(vigil.get("/readyz").status, 503, "out of the Service");
    assert_eq!(metric(&vigil, "vigil_drained", &[]), Some(1.0));
    assert_eq!(cli(&["drain", "--cancel"], &config).status.code(), Some(0));
    vigil.wait_for_status("/readyz", 200, WAIT);
}
