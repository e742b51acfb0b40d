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
