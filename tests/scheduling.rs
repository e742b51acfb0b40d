//! The scheduler and the endpoints together, in process: scripted checks (the only fakes here
//! are checks; the HTTP server and client are real, on 127.0.0.1) drive hysteresis, timeouts,
//! panics, the stale rule and liveness, and the tests read what a kubelet would read.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::client::{get, request};
use support::wait_until;
use vigil::agent::{Agent, Options};
use vigil::checks::{Check, RunFuture, Scheduled};
use vigil::config::CheckSettings;
use vigil::core::outcome::{FailureKind, Outcome};
use vigil::core::wake::Wake;
use vigil::metrics::Metrics;

/// An agent on its own runtime, serving on 127.0.0.1.
struct Running {
    runtime: tokio::runtime::Runtime,
    agent: Option<Agent>,
    addr: SocketAddr,
}

impl Running {
    fn start(checks: Vec<Scheduled>) -> Running {
        Running::start_with(checks, Options::default())
    }

    fn start_with(checks: Vec<Scheduled>, options: Options) -> Running {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let agent = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            Agent::start(checks, Metrics::new().unwrap(), listener, options).unwrap()
        });
        let addr = agent.local_addr;
        Running {
            runtime,
            agent: Some(agent),
            addr,
        }
    }

    fn runs(&self, check: &str) -> u64 {
        let diag = get(self.addr, "/diag?format=json").json();
        diag["vigil"]["checks"][check]["runs"].as_u64().unwrap_or(0)
    }

    fn wait_runs(&self, check: &str, runs: u64) {
        wait_until(Duration::from_secs(5), &format!("{check} to finish run {runs}"), || {
            self.runs(check) >= runs
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            self.runtime.block_on(agent.stop());
        }
    }
}

fn settings(interval_ms: u64, timeout_ms: u64, failure_threshold: u32, success_threshold: u32) -> CheckSettings {
    CheckSettings {
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        failure_threshold,
        success_threshold,
        critical: true,
        scope: vigil::config::Scope::Local,
    }
}

/// Passes or fails as the test says, and runs again whenever the test rings it.
struct Controlled {
    failing: Arc<AtomicBool>,
    rerun: Wake,
}

impl Check for Controlled {
    fn run(&mut self) -> RunFuture<'_> {
        let failing = self.failing.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                Outcome::fail(FailureKind::Refused, "scripted failure")
            } else {
                Outcome::pass()
            }
        })
    }

    fn wake(&self) -> Option<Wake> {
        Some(self.rerun.clone())
    }
}

struct Hangs;

impl Check for Hangs {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(std::future::pending())
    }
}

struct Panics;

impl Check for Panics {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(async { panic!("scripted panic in a check") })
    }
}

struct Passes;

impl Check for Passes {
    fn run(&mut self) -> RunFuture<'_> {
        Box::pin(async { Outcome::pass() })
    }
}

/// Passes once, then never answers again.
struct HangsAfterFirst(bool);

impl Check for HangsAfterFirst {
    fn run(&mut self) -> RunFuture<'_> {
        let first = !std::mem::replace(&mut self.0, true);
        Box::pin(async move {
            if !first {
                std::future::pending::<()>().await;
            }
            Outcome::pass()
        })
    }
}

/// Blocks its worker thread (a bug no timeout can cut) on every run after the first.
struct BlocksThread(u32);

impl Check for BlocksThread {
    fn run(&mut self) -> RunFuture<'_> {
        self.0 += 1;
        let block = self.0 == 2;
        Box::pin(async move {
            if block {
                std::thread::sleep(Duration::from_millis(2500));
            }
            Outcome::pass()
        })
    }
}

#[test]
fn hysteresis_counts_failures_and_successes() {
    let failing = Arc::new(AtomicBool::new(false));
    let rerun = Wake::new();
    let check = Controlled {
        failing: Arc::clone(&failing),
        rerun: rerun.clone(),
    };
    // A long interval: runs happen only when the test rings, so the counts are exact.
    let agent = Running::start(vec![Scheduled::new("flaky", settings(60_000, 60_000, 3, 2), check)]);
    agent.wait_runs("flaky", 1);
    assert_eq!(get(agent.addr, "/readyz").status, 200);

    failing.store(true, Ordering::SeqCst);
    for run in 2..=3 {
        rerun.ring();
        agent.wait_runs("flaky", run);
        let readyz = get(agent.addr, "/readyz?verbose");
        assert_eq!(
            readyz.status,
            200,
            "only {} of 3 failures so far:\n{}",
            run - 1,
            readyz.body
        );
        let diag = get(agent.addr, "/diag?format=json").json();
        assert_eq!(diag["vigil"]["checks"]["flaky"]["consecutive_failures"], run - 1);
        assert_eq!(diag["vigil"]["checks"]["flaky"]["last_run"]["status"], "fail");
    }
    rerun.ring();
    agent.wait_runs("flaky", 4);
    let readyz = get(agent.addr, "/readyz");
    assert_eq!(readyz.status, 503);
    assert_eq!(readyz.body, "[-]flaky failed: scripted failure\nreadyz check failed\n");

    failing.store(false, Ordering::SeqCst);
    rerun.ring();
    agent.wait_runs("flaky", 5);
    assert_eq!(
        get(agent.addr, "/readyz").status,
        503,
        "one pass of the two needed to recover"
    );
    rerun.ring();
    agent.wait_runs("flaky", 6);
    assert_eq!(get(agent.addr, "/readyz").status, 200);

    let diag = get(agent.addr, "/diag?format=json").json();
    let transitions: Vec<(String, String)> = diag["vigil"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or("none").to_owned(),
                t["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [("fail", "pass"), ("pass", "fail"), ("none", "pass")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(transitions, expected, "newest first, one entry per change");
}

#[test]
fn a_hanging_check_is_cut_at_its_timeout_while_readyz_answers_at_once() {
    let agent = Running::start(vec![
        Scheduled::new("hangs", settings(1000, 400, 1, 1), Hangs),
        Scheduled::new("fine", settings(1000, 400, 1, 1), Passes),
    ]);
    let started = Instant::now();
    let first = get(agent.addr, "/readyz?verbose");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "/readyz waited on a check: {:?}",
        started.elapsed()
    );
    assert_eq!(
        first.status, 503,
        "not ready before every check's first result:\n{}",
        first.body
    );
    assert!(first.body.contains("[-]hangs failed: no result yet"), "{}", first.body);

    wait_until(Duration::from_secs(3), "the hanging run to be cut", || {
        get(agent.addr, "/readyz/hangs").body == "failed: timed out after 400ms\n"
    });
    let cut_at = started.elapsed();
    assert!(
        cut_at >= Duration::from_millis(400),
        "cut before its timeout: {cut_at:?}"
    );
    for _ in 0..20 {
        let asked = Instant::now();
        assert_eq!(get(agent.addr, "/readyz").status, 503);
        assert!(
            asked.elapsed() < Duration::from_millis(250),
            "/readyz slow while a check hangs"
        );
    }
    assert_eq!(
        get(agent.addr, "/livez").status,
        200,
        "a hanging dependency is not vigil's death"
    );
}

#[test]
fn a_panicking_check_fails_alone_and_keeps_running() {
    let agent = Running::start(vec![
        Scheduled::new("boom", settings(150, 100, 1, 1), Panics),
        Scheduled::new("fine", settings(150, 100, 1, 1), Passes),
    ]);
    agent.wait_runs("boom", 3);
    let readyz = get(agent.addr, "/readyz?verbose");
    assert_eq!(readyz.status, 503);
    assert!(
        readyz
            .body
            .contains("[-]boom failed: check panicked: scripted panic in a check\n"),
        "{}",
        readyz.body
    );
    assert!(readyz.body.contains("[+]fine ok\n"), "{}", readyz.body);
    assert_eq!(get(agent.addr, "/readyz/fine").status, 200);
    assert_eq!(get(agent.addr, "/livez").status, 200);
    assert_eq!(get(agent.addr, "/readyz?exclude=boom").status, 200);
}

#[test]
fn a_check_that_stops_reporting_turns_stale() {
    // The second run hangs for longer than three intervals: the old pass must not stay on display.
    let agent = Running::start(vec![Scheduled::new(
        "quiet",
        settings(200, 5000, 1, 1),
        HangsAfterFirst(false),
    )]);
    agent.wait_runs("quiet", 1);
    wait_until(Duration::from_secs(3), "the result to turn stale", || {
        get(agent.addr, "/readyz").status == 503
    });
    let body = get(agent.addr, "/readyz/quiet").body;
    assert!(body.starts_with("failed: stale: no result for "), "{body}");
    let diag = get(agent.addr, "/diag?format=json").json();
    assert_eq!(diag["vigil"]["checks"]["quiet"]["kind"], "stale");
}

#[test]
fn livez_fails_while_a_check_loop_is_stuck_and_recovers() {
    let agent = Running::start(vec![Scheduled::new("stuck", settings(100, 100, 1, 1), BlocksThread(0))]);
    agent.wait_runs("stuck", 1);
    wait_until(Duration::from_secs(5), "/livez to notice the stuck loop", || {
        get(agent.addr, "/livez").status == 503
    });
    let livez = get(agent.addr, "/livez");
    assert!(
        livez.body.contains("[-]loop:stuck failed: not running on schedule"),
        "{}",
        livez.body
    );
    wait_until(Duration::from_secs(5), "/livez to recover", || {
        get(agent.addr, "/livez").status == 200
    });
}

#[test]
fn verbose_exclude_and_per_check_paths() {
    let failing = Arc::new(AtomicBool::new(true));
    let check = Controlled {
        failing,
        rerun: Wake::new(),
    };
    let mut optional = settings(60_000, 60_000, 1, 1);
    optional.critical = false;
    let agent = Running::start(vec![
        Scheduled::new("fine", settings(60_000, 60_000, 1, 1), Passes),
        Scheduled::new("upstream:orders", optional, check),
    ]);
    agent.wait_runs("upstream:orders", 1);
    agent.wait_runs("fine", 1);

    let plain = get(agent.addr, "/readyz");
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (200, "ok\n"),
        "a non-critical fail keeps readiness"
    );
    let verbose = get(agent.addr, "/readyz?verbose");
    assert_eq!(
        verbose.body,
        "[+]fine ok\n[-]upstream:orders failed: scripted failure\nreadyz check passed\n"
    );
    let diag = get(agent.addr, "/diag?format=json").json();
    assert_eq!(diag["status"], "warn", "ready, but a non-critical check fails");
    assert_eq!(diag["checks"]["upstream:orders:status"][0]["status"], "fail");
    assert_eq!(
        diag["checks"]["upstream:orders:status"][0]["output"],
        "scripted failure"
    );
    let excluded = get(agent.addr, "/readyz?verbose&exclude=upstream%3Aorders");
    assert_eq!(
        excluded.body,
        "[+]fine ok\n[+]upstream:orders excluded: ok\nreadyz check passed\n"
    );
    assert_eq!(get(agent.addr, "/readyz/fine").body, "ok\n");
    let one = get(agent.addr, "/readyz/upstream:orders");
    assert_eq!((one.status, one.body.as_str()), (503, "failed: scripted failure\n"));
    assert_eq!(get(agent.addr, "/readyz/upstream%3Aorders").status, 503);
    assert_eq!(get(agent.addr, "/readyz/nope").status, 404);
}

#[test]
fn draining_fails_readyz_at_once_and_keeps_the_rest() {
    let agent = Running::start(vec![Scheduled::new("fine", settings(60_000, 60_000, 1, 1), Passes)]);
    agent.wait_runs("fine", 1);
    agent.agent.as_ref().unwrap().start_draining();
    let readyz = get(agent.addr, "/readyz");
    assert_eq!(readyz.status, 503);
    assert_eq!(
        readyz.body,
        "[+]fine ok\n[-]shutdown failed: draining\nreadyz check failed\n"
    );
    assert_eq!(get(agent.addr, "/livez").status, 200);
    assert_eq!(get(agent.addr, "/metrics").status, 200);
    assert!(get(agent.addr, "/metrics").body.contains("\nvigil_ready 0\n"));
}

/// The same router, asked as if from another pod: no network traffic leaves loopback.
#[test]
fn reasons_and_diag_are_withheld_from_other_peers_without_the_token() {
    use vigil::core::secret::Secret;
    use vigil::http::diag_token::DiagToken;
    use vigil::http::routes;

    let agent = Running::start_with(
        vec![Scheduled::new("dep", settings(60_000, 60_000, 1, 1), Panics)],
        Options {
            diag_token: Some(Secret::new("s3cret-diag-token".to_owned())),
            ..Options::default()
        },
    );
    agent.wait_runs("dep", 1);
    let state = Arc::clone(&agent.agent.as_ref().unwrap().state);
    let app = routes::App {
        drain: Arc::new(vigil::engine::drain::Drain::new(Arc::clone(&state), None)),
        state,
        metrics: Metrics::new().unwrap(),
        diag_token: Arc::new(DiagToken::new(Some(Secret::new("s3cret-diag-token".to_owned())), None)),
        config: std::sync::RwLock::new(std::sync::Arc::from(serde_json::value::RawValue::NULL.to_owned())),
        service_id: "test".to_owned(),
        checks_runtime: None,
        fleet: None,
    };
    let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let ask = |path: &str, token: Option<&str>| {
        let mut builder = http::Request::get(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let response = routes::handle(&app, &builder.body(()).unwrap(), remote);
        let status = response.status().as_u16();
        let body = futures_body(response);
        (status, body)
    };
    assert_eq!(
        ask("/readyz?verbose", None),
        (503, "[-]dep failed: reason withheld\nreadyz check failed\n".to_owned())
    );
    assert_eq!(ask("/readyz/dep", None), (503, "failed: reason withheld\n".to_owned()));
    assert_eq!(ask("/diag", None).0, 403);
    assert_eq!(ask("/diag", Some("wrong-token")).0, 403);
    let (status, body) = ask("/readyz?verbose", Some("s3cret-diag-token"));
    assert_eq!((status, body.contains("check panicked")), (503, true), "{body}");
    // The token opens /diag; its status code follows the draft: 503 while a critical check fails.
    assert_eq!(ask("/diag", Some("s3cret-diag-token")).0, 503);
    // Over real loopback the reasons show.
    assert!(get(agent.addr, "/readyz?verbose").body.contains("check panicked"));
    // And the token itself is never shown.
    let diag = request(agent.addr, "GET", "/diag?format=json", &[]).body;
    assert!(!diag.contains("s3cret-diag-token"));
}

fn futures_body(response: http::Response<http_body_util::Full<bytes::Bytes>>) -> String {
    use http_body_util::BodyExt;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let bytes = runtime.block_on(response.into_body().collect()).unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn http_method_and_path_errors() {
    let agent = Running::start(vec![Scheduled::new("fine", settings(60_000, 60_000, 1, 1), Passes)]);
    agent.wait_runs("fine", 1);
    let post = request(agent.addr, "POST", "/readyz", &[]);
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(request(agent.addr, "DELETE", "/metrics", &[]).status, 405);
    assert_eq!(get(agent.addr, "/nope").status, 404);
    assert_eq!(request(agent.addr, "POST", "/nope", &[]).status, 404);
    let head = request(agent.addr, "HEAD", "/readyz?verbose", &[]);
    let full = get(agent.addr, "/readyz?verbose");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(request(agent.addr, "HEAD", "/nope", &[]).status, 404);
    let index = get(agent.addr, "/");
    assert!(index.body.contains("/readyz") && index.body.contains("/diag"));
}

#[test]
fn kubelet_probes_are_tracked() {
    let agent = Running::start(vec![Scheduled::new("fine", settings(60_000, 60_000, 1, 1), Passes)]);
    agent.wait_runs("fine", 1);
    let metrics = get(agent.addr, "/metrics").body;
    assert!(
        !metrics.contains("vigil_kubelet_last_probe_timestamp_seconds{"),
        "no probe yet"
    );
    request(agent.addr, "GET", "/readyz", &[("User-Agent", "kube-probe/1.30")]);
    request(agent.addr, "GET", "/livez", &[("User-Agent", "kube-probe/1.30")]);
    let metrics = get(agent.addr, "/metrics").body;
    assert!(
        metrics.contains("vigil_kubelet_last_probe_timestamp_seconds{endpoint=\"/readyz\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_kubelet_last_probe_timestamp_seconds{endpoint=\"/livez\"} 1"),
        "{metrics}"
    );
    let diag = get(agent.addr, "/diag?format=json").json();
    assert!(diag["vigil"]["kubelet_probes"]["/readyz"].is_string(), "{diag}");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use std::io::{Read, Write};

    let agent = Running::start(vec![Scheduled::new("fine", settings(60_000, 60_000, 1, 1), Passes)]);
    let mut slow = std::net::TcpStream::connect(agent.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: vigil\r\n").unwrap();
    let started = Instant::now();
    // Meanwhile everyone else is served.
    assert_eq!(get(agent.addr, "/livez").status, 200);
    let mut buf = [0u8; 512];
    let read = slow.read(&mut buf);
    let waited = started.elapsed();
    let answered = String::from_utf8_lossy(&buf[..*read.as_ref().unwrap_or(&0)]).into_owned();
    assert!(!answered.contains("200 OK"), "served an unfinished request: {answered}");
    assert!(waited >= Duration::from_secs(4), "closed too early: {waited:?}");
    assert!(
        waited < Duration::from_secs(10),
        "the header-read timeout did not fire: {waited:?}"
    );
}
