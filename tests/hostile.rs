//! Hostile inputs, bounded cost (issue 12), against the built binary: a slowloris peer in
//! another network namespace, a closed stderr, a closed stdout, SIGHUP, and `/diag`'s status
//! code.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::vigil::VIGIL_BIN;
use support::{FakeServer, Response, Vigil, client, free_port, poll_until, refused_addr, run_cli, wait_until};

// ----- closed stderr -----

/// Runs the agent with `stderr` as its standard error until a status change has happened (and
/// been logged), then SIGTERMs it; returns how it exited.
fn run_with_stderr(stderr: Stdio) -> ExitStatus {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let config = dir.path().join("vigil.toml");
    let toml = format!(
        "listen = \"{addr}\"\n[system]\nenabled = false\n[shutdown]\ndrain = \"300ms\"\n\
         [[upstream]]\nname = \"down\"\nurl = \"http://{}/\"\ncritical = true\n\
         interval = \"100ms\"\ntimeout = \"100ms\"\nfailure_threshold = 1\n",
        refused_addr()
    );
    fs::write(&config, toml).expect("write config");
    let mut child = Command::new(VIGIL_BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("VIGIL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("VIGIL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn vigil");
    let mut exited = None;
    let failing = poll_until(Duration::from_secs(10), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
            || client::try_request(addr, "GET", "/diag?format=json", &[], &[])
                .ok()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                .and_then(|doc| doc["vigil"]["transitions"].as_array().map(|t| !t.is_empty()))
                .unwrap_or(false)
    });
    if let Some(status) = exited {
        return status;
    }
    assert!(failing, "the upstream never changed status");
    // The status change and a few more runs have been logged, into the broken stderr.
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let mut exited = None;
    poll_until(Duration::from_secs(10), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    exited.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vigil did not exit within 10 s of SIGTERM");
    })
}

#[test]
fn a_closed_or_full_stderr_never_turns_a_log_line_into_an_abort() {
    // A pipe whose reader is gone: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let status = run_with_stderr(Stdio::from(writer));
    assert_eq!(status.code(), Some(0), "stderr a broken pipe: {status}");
    // /dev/full: every write fails with ENOSPC.
    if let Ok(full) = fs::OpenOptions::new().write(true).open("/dev/full") {
        let status = run_with_stderr(Stdio::from(full));
        assert_eq!(status.code(), Some(0), "stderr /dev/full: {status}");
    }
}

// ----- closed stdout -----

/// Runs `vigil args…` with a stdout whose reader is already gone; returns (exit code, stderr).
fn run_into_closed_stdout(args: &[&str], toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("vigil.toml");
    fs::write(&config, toml).expect("write config");
    let stderr_path = dir.path().join("stderr");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(VIGIL_BIN)
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("VIGIL_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(fs::File::create(&stderr_path).expect("stderr file")))
        .spawn()
        .expect("spawn vigil");
    let mut exited = None;
    poll_until(Duration::from_secs(20), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vigil {args:?} did not exit within 20 s");
    };
    (status.code(), fs::read_to_string(&stderr_path).unwrap_or_default())
}

#[test]
fn validate_and_check_into_a_closed_pipe_exit_quietly() {
    let server = FakeServer::fixed(Response::text(200, "ok"));
    let toml = format!(
        "[system]\nenabled = false\n[[upstream]]\nname = \"orders\"\nurl = \"{}\"\n",
        server.url("/healthz")
    );
    for (args, expected) in [
        (&["validate"][..], 0),
        (&["check"][..], 0),
        (&["check", "--output", "json"][..], 0),
    ] {
        let normal = run_cli(args, Some(&toml), &[]);
        assert_eq!(normal.status.code(), Some(expected), "vigil {args:?} into a file");
        let (code, stderr) = run_into_closed_stdout(args, &toml);
        assert_eq!(code, Some(expected), "vigil {args:?} | (closed): stderr {stderr:?}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("failed printing"),
            "vigil {args:?} | (closed): {stderr}"
        );
    }
}

// ----- SIGHUP -----

#[test]
fn sighup_is_a_reload_request_not_an_exit() {
    let mut vigil = Vigil::start("[system]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n[shutdown]\ndrain = \"200ms\"\n");
    vigil.signal("HUP");
    vigil.wait_for_log("Reload requested", Duration::from_secs(5));
    vigil.signal("HUP");
    wait_until(Duration::from_secs(5), "a second reload request logged", || {
        vigil.logs().matches("Reload requested").count() >= 2
    });
    assert!(vigil.is_running(), "SIGHUP ended vigil:\n{}", vigil.logs());
    assert_eq!(vigil.get("/livez").status, 200);
    // SIGTERM still drains and exits 0.
    vigil.signal("TERM");
    let status = vigil.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", vigil.logs());
}

// ----- /diag status code -----

#[test]
fn diag_answers_503_when_failing_and_200_when_passing_or_warning() {
    let core = FakeServer::fixed(Response::text(200, "ok"));
    let extra = FakeServer::fixed(Response::text(200, "ok"));
    let section = |name: &str, server: &FakeServer, critical: bool| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nurl = \"{}\"\ncritical = {critical}\n\
             interval = \"200ms\"\ntimeout = \"200ms\"\nfailure_threshold = 1\n",
            server.url("/healthz")
        )
    };
    let vigil = Vigil::start(&format!(
        "[system]\nenabled = false\n{}{}",
        section("core", &core, true),
        section("extra", &extra, false)
    ));
    let expect = |status: &str, code: u16| {
        let mut last = String::new();
        let reached = poll_until(Duration::from_secs(5), || {
            let doc = vigil.get("/diag?format=json").json();
            last = doc["status"].to_string();
            doc["status"] == status
        });
        assert!(reached, "/diag never reached {status}; last {last}");
        let json = vigil.request("GET", "/diag", &[("Accept", "application/health+json")]);
        assert_eq!((json.status, json.json()["status"].as_str()), (code, Some(status)));
        assert_eq!(vigil.get("/diag?format=json").status, code);
        let text = vigil.get("/diag");
        assert_eq!(text.status, code, "text /diag while {status}:\n{}", text.body);
        assert!(text.content_type().unwrap_or("").starts_with("text/plain"));
        assert_eq!(vigil.request("HEAD", "/diag", &[]).status, code);
    };
    expect("pass", 200);
    extra.set_response(Response::text(500, "down"));
    expect("warn", 200);
    core.set_response(Response::text(500, "down"));
    expect("fail", 503);
    core.set_response(Response::text(200, "ok"));
    extra.set_response(Response::text(200, "ok"));
    expect("pass", 200);
}
