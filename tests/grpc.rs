//! `grpc://` and `grpcs://` upstreams against a real gRPC health server nobody here wrote:
//! Python's grpcio with grpcio-health-checking's `HealthServicer` (`tests/peers/grpc_health.py`),
//! on 127.0.0.1. SERVING passes; switched to NOT_SERVING it fails naming the status; a service
//! it does not know and a server without the health service fail naming the gRPC code; grpcs
//! with a certificate made here is verified and its expiry read; `addresses = "all"` probes each
//! address. Asserted on what a user sees: `/readyz?verbose`, `/diag`, `/metrics`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::grpc_peer::GrpcPeer;
use support::tls::Issued;
use support::{Vigil, poll_until};

/// One `[[upstream]]` named `name` at `url` with `extra` keys.
fn upstream(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\nfailure_threshold = 1\n{extra}\n"
    )
}

fn config(upstreams: &[String]) -> String {
    format!("[system]\nenabled = false\n\n{}", upstreams.join("\n"))
}

#[track_caller]
fn wait_for_line(vigil: &Vigil, line: &str) -> String {
    let mut last = String::new();
    if !poll_until(Duration::from_secs(8), || {
        last = vigil.get("/readyz?verbose").body;
        last.contains(line)
    }) {
        panic!("no line {line:?} in /readyz?verbose:\n{last}\nlogs:\n{}", vigil.logs());
    }
    last
}

#[track_caller]
fn wait_for_metric(vigil: &Vigil, sample: &str) {
    let mut last = String::new();
    if !poll_until(Duration::from_secs(8), || {
        last = vigil.get("/metrics").body;
        last.lines().any(|l| l == sample)
    }) {
        panic!("no sample {sample:?} in /metrics:\n{last}");
    }
}

fn details(vigil: &Vigil, check: &str) -> Value {
    let diag: Value = vigil.get("/diag?format=json").json();
    diag["vigil"]["checks"][check]["last_run"]["details"].clone()
}

#[test]
fn serving_passes_not_serving_and_an_unknown_service_fail_naming_why() {
    let mut peer = GrpcPeer::start(&[]);
    peer.set("orders.v1.Orders", "SERVING");
    let url = peer.url("grpc");
    let vigil = Vigil::start(&config(&[
        upstream("server", &url, ""),
        upstream("orders", &url, "grpc_service = \"orders.v1.Orders\""),
        upstream("ghost", &url, "grpc_service = \"ghost.v1.Ghost\""),
    ]));
    wait_for_line(&vigil, "[+]upstream:orders ok");
    wait_for_line(&vigil, "[+]upstream:server ok");
    wait_for_line(
        &vigil,
        &format!("[-]upstream:ghost failed: {url}: NOT_FOUND: the server does not know the service \"ghost.v1.Ghost\""),
    );
    wait_for_metric(
        &vigil,
        "vigil_upstream_grpc_serving_status{status=\"SERVING\",upstream=\"orders\"} 1",
    );
    let metrics = vigil.get("/metrics").body;
    for sample in [
        "vigil_upstream_grpc_serving_status{status=\"NOT_SERVING\",upstream=\"orders\"} 0",
        "vigil_upstream_grpc_serving_status{status=\"SERVING\",upstream=\"ghost\"} 0",
        "vigil_upstream_up{upstream=\"orders\"} 1",
        "vigil_upstream_up{upstream=\"ghost\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "{sample} missing from:\n{metrics}"
        );
    }
    let orders = details(&vigil, "upstream:orders");
    assert_eq!(orders["grpc_status"], "SERVING", "{orders}");
    assert_eq!(orders["grpc_service"], "orders.v1.Orders");
    assert_eq!(orders["protocol"], "HTTP/2");
    for phase in ["connect", "first_byte", "total"] {
        assert!(
            orders["phases_ms"][phase].as_f64().is_some(),
            "{phase} not timed: {orders}"
        );
    }
    assert!(orders["phases_ms"]["tls"].is_null(), "h2c has no TLS phase");
    let text = vigil.get("/diag").body;
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("grpc_status") && l.ends_with("NOT_FOUND")),
        "{text}"
    );
    assert!(
        text.contains("grpc_service must be a name the server's health service"),
        "the hint: {text}"
    );

    peer.set("orders.v1.Orders", "NOT_SERVING");
    wait_for_line(
        &vigil,
        &format!("[-]upstream:orders failed: {url}: serving status NOT_SERVING for service \"orders.v1.Orders\""),
    );
    wait_for_metric(
        &vigil,
        "vigil_upstream_grpc_serving_status{status=\"NOT_SERVING\",upstream=\"orders\"} 1",
    );
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_upstream_grpc_serving_status{status=\"SERVING\",upstream=\"orders\"} 0\n")
    );

    peer.set("-", "NOT_SERVING");
    wait_for_line(
        &vigil,
        &format!("[-]upstream:server failed: {url}: serving status NOT_SERVING\n"),
    );
    peer.set("orders.v1.Orders", "SERVING");
    wait_for_line(&vigil, "[+]upstream:orders ok");
}

#[test]
fn a_server_without_the_health_service_reads_unimplemented() {
    let peer = GrpcPeer::start(&["--no-health"]);
    let url = peer.url("grpc");
    let vigil = Vigil::start(&config(&[upstream("bare", &url, "")]));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:bare failed: {url}: UNIMPLEMENTED: the server has no health service"),
    );
    assert!(
        vigil.get("/diag").body.contains("register grpc.health.v1.Health"),
        "the hint"
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_upstream_grpc_serving_status{status=\"UNKNOWN\",upstream=\"bare\"} 0\n"),
        "an error is no serving status: {metrics}"
    );
}

#[test]
fn grpcs_verifies_the_certificate_and_reads_its_expiry() {
    let issued = Issued::valid_for(Some(3 * 86_400 + 3600));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca) = (
        write("cert.pem", &issued.cert_pem),
        write("key.pem", &issued.key_pem),
        write("ca.pem", &issued.ca_pem),
    );
    let peer = GrpcPeer::start(&["--cert", &cert, "--key", &key]);
    let url = peer.url("grpcs");
    let vigil = Vigil::start(&config(&[upstream(
        "secure",
        &url,
        &format!("ca_file = \"{ca}\"\ncert_warn = \"14d\""),
    )]));
    wait_for_line(&vigil, "[+]upstream:secure warn: certificate expires in 3d (notAfter ");
    let secure = details(&vigil, "upstream:secure");
    assert!(
        secure["phases_ms"]["tls"].as_f64().is_some_and(|ms| ms > 0.0),
        "{secure}"
    );
    assert_eq!(secure["grpc_status"], "SERVING");
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_tls_cert_expiry_timestamp_seconds{check=\"upstream:secure\"} "),
        "the expiry is exported"
    );
    drop(vigil);

    // Without the CA the chain is not trusted; h2c against the TLS port is no gRPC answer.
    let vigil = Vigil::start(&config(&[
        upstream("secure", &url, ""),
        upstream("plain", &peer.url("grpc"), ""),
    ]));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:secure failed: {url}: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
    );
    wait_for_line(&vigil, &format!("[-]upstream:plain failed: {}: ", peer.url("grpc")));
}

/// A name with two addresses, the server on one: each probed, the failing one named.
#[test]
fn every_address_of_a_grpc_upstream_is_probed_with_all() {
    let peer = GrpcPeer::start(&[]);
    let Some(hosts) = support::hosts::HostsEntry::add(&["127.0.0.2", "127.0.0.1"]) else {
        eprintln!("skipped: /etc/hosts is not writable here (the test needs root)");
        return;
    };
    let url = format!("grpc://{}:{}", hosts.name, peer.port);
    let vigil = Vigil::start(&config(&[upstream("spread", &url, "addresses = \"all\"")]));
    wait_for_line(
        &vigil,
        &format!(
            "[+]upstream:spread warn: {url}: 1 of 2 addresses fail: 127.0.0.2:{} (connection refused)",
            peer.port
        ),
    );
    wait_for_metric(&vigil, "vigil_upstream_addresses{upstream=\"spread\"} 2");
}

#[test]
fn grpc_service_belongs_to_grpc_upstreams_only() {
    let output = support::run_cli(
        &["validate"],
        Some("[[upstream]]\nname = \"w\"\nurl = \"http://127.0.0.1/\"\ngrpc_service = \"x\"\n"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "upstream[0].grpc_service: applies only to grpc:// and grpcs:// upstreams, not to http://127.0.0.1/"
        ),
        "{stderr}"
    );
    let output = support::run_cli(
        &["validate"],
        Some("[[upstream]]\nname = \"g\"\nurl = \"grpcs://orders:9000\"\ngrpc_service = \"orders.v1.Orders\"\n"),
        &[],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
