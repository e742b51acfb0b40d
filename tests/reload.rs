//! Configuration reload against the real binary: SIGHUP and a changed file (a ConfigMap's
//! `..data` swap) take a new configuration at once; an unchanged check keeps its state; an
//! invalid configuration is refused and the running one stays; `listen` needs a restart.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{FakeServer, Response, Vigil, poll_until};

fn upstreams(server: &FakeServer, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "[[upstream]]\nname = \"{name}\"\nurl = \"{}\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\n",
                server.url(&format!("/{name}"))
            )
        })
        .collect()
}

/// The file as the harness wrote it, with its `listen` line, and `body` after it.
fn rewrite(vigil: &Vigil, path: &Path, body: &str) {
    let text = fs::read_to_string(vigil.config_path()).unwrap();
    let listen = text.lines().next().unwrap();
    fs::write(path, format!("{listen}\n{body}")).unwrap();
}

fn diag(vigil: &Vigil) -> Value {
    vigil.get("/diag?format=json").json()
}

fn runs(vigil: &Vigil, check: &str) -> u64 {
    diag(vigil)["vigil"]["checks"][check]["runs"].as_u64().unwrap_or(0)
}

fn metric(vigil: &Vigil, name: &str) -> Option<f64> {
    vigil
        .get("/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

#[track_caller]
fn wait_for_verbose(vigil: &Vigil, what: &str, f: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    if !poll_until(Duration::from_secs(10), || {
        last = vigil.get("/readyz?verbose").body;
        f(&last)
    }) {
        panic!("{what}: /readyz?verbose is\n{last}\nlogs:\n{}", vigil.logs());
    }
    last
}

#[test]
fn sighup_applies_a_new_configuration_and_unchanged_checks_keep_their_state() {
    let server = FakeServer::start(|_| Response::text(200, "ok"));
    let vigil = Vigil::start(&format!(
        "{}{}",
        "[system]\ninterval = \"200ms\"\ntimeout = \"100ms\"\n",
        upstreams(&server, &["a", "b"])
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    assert!(poll_until(Duration::from_secs(5), || runs(&vigil, "upstream:a") >= 3));
    let before = runs(&vigil, "upstream:a");
    let loaded_at = metric(&vigil, "vigil_config_last_reload_success_timestamp_seconds ").unwrap();
    assert!(vigil.get("/metrics").body.contains("vigil_container_"));

    // a unchanged, b removed, c added, system turned off.
    rewrite(
        &vigil,
        vigil.config_path(),
        &format!("[system]\nenabled = false\n{}", upstreams(&server, &["a", "c"])),
    );
    vigil.signal("HUP");
    let body = wait_for_verbose(&vigil, "the new configuration", |b| b.contains("[+]upstream:c ok"));
    assert!(!body.contains("upstream:b") && !body.contains("system"), "{body}");
    assert!(body.contains("[+]upstream:a ok"), "{body}");
    assert!(
        runs(&vigil, "upstream:a") >= before,
        "a's runs go on: its state was kept"
    );
    let d = diag(&vigil);
    let firsts = d["vigil"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["check"] == "upstream:a" && t["from"].is_null())
        .count();
    assert_eq!(firsts, 1, "a kept its history: no second first result\n{d:#}");
    assert!(
        d["vigil"]["config"]["upstream"].as_array().unwrap().len() == 2,
        "/diag shows the new configuration"
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        !metrics.contains("vigil_container_"),
        "the removed check's series are gone:\n{metrics}"
    );
    assert!(!metrics.contains("upstream=\"b\""), "{metrics}");
    assert_eq!(metric(&vigil, "vigil_config_last_reload_successful "), Some(1.0));
    assert!(metric(&vigil, "vigil_config_last_reload_success_timestamp_seconds ").unwrap() >= loaded_at);
    vigil.wait_for_log("Configuration reloaded", Duration::from_secs(2));
    let line = vigil
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "Configuration reloaded")
        .unwrap();
    assert_eq!(line["kept"], serde_json::json!(["upstream:a"]));
    assert_eq!(line["removed"], serde_json::json!(["upstream:b", "system"]));
}

#[test]
fn an_invalid_configuration_is_refused_and_the_running_one_stays() {
    let server = FakeServer::start(|_| Response::text(200, "ok"));
    let vigil = Vigil::start(&format!("[system]\nenabled = false\n{}", upstreams(&server, &["a"])));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    rewrite(
        &vigil,
        vigil.config_path(),
        "[system]\nenabled = false\n[[upstream]]\nname = \"a\"\nurl = \"ftp://nope\"\n",
    );
    vigil.signal("HUP");
    vigil.wait_for_log("Configuration reload refused", Duration::from_secs(5));
    let line = vigil
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "Configuration reload refused; the running configuration stays")
        .unwrap();
    let error = line["error"].as_str().unwrap();
    assert!(
        error.starts_with("vigil: upstream[0].url: "),
        "the one line of start-up: {error}"
    );
    assert_eq!(metric(&vigil, "vigil_config_last_reload_successful "), Some(0.0));
    assert_eq!(vigil.get("/readyz").status, 200);
    assert!(vigil.get("/readyz?verbose").body.contains("[+]upstream:a ok"));
    // A CA file that cannot be read refuses the whole configuration too.
    rewrite(
        &vigil,
        vigil.config_path(),
        &format!("{}ca_file = \"/nonexistent/ca.pem\"\n", upstreams(&server, &["a"])),
    );
    vigil.signal("HUP");
    assert!(poll_until(Duration::from_secs(5), || {
        vigil.logs().matches("Configuration reload refused").count() >= 2
    }));
    assert!(vigil.get("/readyz?verbose").body.contains("[+]upstream:a ok"));
    assert!(!vigil.get("/readyz?verbose").body.contains("system"));
}

/// A ConfigMap volume: the file is a link through `..data`, which the kubelet swaps for a new
/// directory. No signal: the change of the file is enough.
#[test]
fn a_configmap_swap_is_picked_up_without_a_signal() {
    let server = FakeServer::start(|_| Response::text(200, "ok"));
    let vigil = Vigil::start(&format!("[system]\nenabled = false\n{}", upstreams(&server, &["a"])));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    let dir = vigil.dir();
    let first = dir.join("..2026_12_01_a");
    fs::create_dir(&first).unwrap();
    fs::copy(vigil.config_path(), first.join("vigil.toml")).unwrap();
    std::os::unix::fs::symlink(&first, dir.join("..data")).unwrap();
    let original = fs::read_to_string(vigil.config_path()).unwrap();
    fs::remove_file(vigil.config_path()).unwrap();
    std::os::unix::fs::symlink("..data/vigil.toml", vigil.config_path()).unwrap();

    let second = dir.join("..2026_12_01_b");
    fs::create_dir(&second).unwrap();
    let listen = original.lines().next().unwrap();
    fs::write(
        second.join("vigil.toml"),
        format!(
            "{listen}\n[system]\nenabled = false\n{}",
            upstreams(&server, &["a", "new"])
        ),
    )
    .unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&second, &tmp).unwrap();
    fs::rename(&tmp, dir.join("..data")).unwrap();
    wait_for_verbose(&vigil, "the swapped ConfigMap", |b| b.contains("[+]upstream:new ok"));
}

#[test]
fn a_new_listen_address_is_logged_as_needing_a_restart() {
    let server = FakeServer::start(|_| Response::text(200, "ok"));
    let vigil = Vigil::start(&format!("[system]\nenabled = false\n{}", upstreams(&server, &["a"])));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    fs::write(
        vigil.config_path(),
        format!(
            "listen = \"127.0.0.1:1\"\n[system]\nenabled = false\n{}",
            upstreams(&server, &["a"])
        ),
    )
    .unwrap();
    vigil.signal("HUP");
    vigil.wait_for_log("needs a restart", Duration::from_secs(5));
    assert_eq!(vigil.get("/livez").status, 200, "still serving on the old address");
    let shown = diag(&vigil)["vigil"]["config"]["listen"].as_str().unwrap().to_owned();
    assert_eq!(shown, vigil.addr().to_string(), "/diag shows the address in effect");
    vigil.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(5), || vigil
            .logs()
            .matches("needs a restart")
            .count()
            >= 2),
        "a second reload says it again:\n{}",
        vigil.logs()
    );
}

/// A changed check is built afresh but goes on from its reported status: a reload never turns a
/// passing critical check into "no result yet", which would take the pod out of the Service.
#[test]
fn a_changed_critical_check_keeps_the_pod_ready_through_the_reload() {
    let server = FakeServer::start(|_| Response::text(200, "ok"));
    let critical = |timeout: &str| {
        format!(
            "[system]\nenabled = false\n[[upstream]]\nname = \"a\"\nurl = \"{}\"\ncritical = true\ninterval = \"2s\"\ntimeout = \"{timeout}\"\n",
            server.url("/a")
        )
    };
    let vigil = Vigil::start(&critical("500ms"));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    rewrite(&vigil, vigil.config_path(), &critical("600ms"));
    vigil.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let readyz = vigil.get("/readyz?verbose");
        assert_eq!(readyz.status, 200, "through the reload:\n{}", readyz.body);
    }
    let line = vigil
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "Configuration reloaded")
        .expect("reloaded");
    assert_eq!(line["changed"], serde_json::json!(["upstream:a"]));
}

/// A file caught empty while it is rewritten in place is refused (issue 23: every check was
/// removed and added again, eight 503s "no result yet"); one with only a comment empties the
/// configuration on purpose.
#[test]
fn an_empty_file_is_refused_while_the_running_configuration_is_not_empty() {
    let server = FakeServer::start(|_| Response::text(200, "ok"));
    let vigil = Vigil::start(&format!(
        "[system]\nenabled = false\n{}",
        upstreams(&server, &["a", "b"])
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(5));
    let before = runs(&vigil, "upstream:a");
    let written = fs::read_to_string(vigil.config_path()).unwrap();
    let listen = written.lines().next().unwrap().to_owned();

    fs::write(vigil.config_path(), "").unwrap();
    vigil.signal("HUP");
    vigil.wait_for_log(
        "Configuration reload refused: the file is empty",
        Duration::from_secs(5),
    );
    assert_eq!(metric(&vigil, "vigil_config_last_reload_successful "), Some(0.0));
    let body = vigil.get("/readyz?verbose").body;
    assert_eq!(body, "[+]upstream:a ok\n[+]upstream:b ok\nreadyz check passed\n");
    assert!(
        poll_until(Duration::from_secs(5), || runs(&vigil, "upstream:a") > before + 2),
        "the running checks go on"
    );

    // A comment: an empty configuration on purpose.
    fs::write(
        vigil.config_path(),
        format!("{listen}\n# no checks\n[system]\nenabled = false\n"),
    )
    .unwrap();
    vigil.signal("HUP");
    wait_for_verbose(&vigil, "the checks removed", |body| !body.contains("upstream"));
    assert_eq!(metric(&vigil, "vigil_config_last_reload_successful "), Some(1.0));
}
