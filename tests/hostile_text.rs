//! Hostile text and hostile sizes from dependencies (issue 23), against the built binary: a real
//! PostgreSQL raising errors with newlines, terminal escapes and 10 MB / 100 MB messages (a
//! `RAISE EXCEPTION` in a function the statistics statement calls), and a pod whose status
//! reason forges `/readyz` lines. Every reason must stay one printable line of at most 512
//! bytes in every output (SPEC, "HTTP endpoints"), and memory must stay bounded.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::kube::FakeKube;
use support::{PgServer, Vigil, poll_until, run_cli, wait_until};

const PASSWORD: &str = "gw-hostile-Pa55";
const WAIT: Duration = Duration::from_secs(15);

/// What a hostile dependency writes: a forged `/readyz` line, a window title (OSC), a clear
/// screen (CSI), a carriage return and a tab.
const FORGERY: &str = "boom\n[+]postgres ok\n\u{1b}]0;pwned\u{7}\u{1b}[2J\r\tend";

/// Makes every statement of `role` that calls `current_setting(text)` (vigil's statistics
/// statement does) raise `message_sql` (an SQL expression), through a function earlier on the
/// role's search_path. The server does not log these errors (they would fill its log).
fn raise_in_current_setting(pg: &PgServer, db: &str, role: &str, message_sql: &str) {
    pg.psql_db(
        db,
        &format!(
            "CREATE SCHEMA IF NOT EXISTS evil;\n\
             GRANT USAGE ON SCHEMA evil TO {role};\n\
             CREATE OR REPLACE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$\n\
             BEGIN RAISE EXCEPTION '%', {message_sql}; END $f$;\n\
             ALTER ROLE {role} SET search_path = evil, pg_catalog;\n\
             ALTER ROLE {role} SET log_min_messages = panic;\n\
             ALTER ROLE {role} SET log_min_error_statement = panic;"
        ),
    );
}

fn sql_literal(text: &str) -> String {
    // chr() for the control characters, so that psql's input stays one statement per line.
    let parts: Vec<String> = text
        .chars()
        .map(|c| {
            if c.is_control() {
                format!("chr({})", c as u32)
            } else if c == '\'' {
                "''''".to_owned()
            } else {
                format!("'{c}'")
            }
        })
        .collect();
    parts.join(" || ")
}

/// Every line of `/readyz?verbose` is a check line or the summary: nothing forged.
#[track_caller]
fn assert_readyz_lines(body: &str, checks: &[&str]) {
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines.len(),
        checks.len() + 1,
        "one line per check and a summary:\n{body}"
    );
    for (line, check) in lines.iter().zip(checks) {
        assert!(
            line.starts_with(&format!("[+]{check} ")) || line.starts_with(&format!("[-]{check} ")),
            "{line:?} in\n{body}"
        );
        assert!(line.len() <= 512 + 32, "{} bytes: {line}", line.len());
    }
    assert!(lines[checks.len()].starts_with("readyz check "), "{body}");
    assert_printable(body, "/readyz?verbose");
}

/// No control character but the newline, no escape sequence.
#[track_caller]
fn assert_printable(text: &str, what: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "{what} holds control characters {bad:?}:\n{text}");
}

/// Every `reason` in `/diag`'s JSON (checks, transitions) is one printable line of at most 512
/// bytes.
#[track_caller]
fn assert_json_reasons(doc: &Value) {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("reason" | "output" | "hint", Value::String(text)) => found.push(text.clone()),
                        _ => walk(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut reasons = Vec::new();
    walk(doc, &mut reasons);
    assert!(!reasons.is_empty());
    for reason in reasons {
        assert!(reason.len() <= 1024, "{} bytes: {reason}", reason.len());
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }
}

#[test]
fn a_postgresql_error_with_newlines_and_escapes_is_one_printable_line_everywhere() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    raise_in_current_setting(&pg, "gateway", "gateway", &sql_literal(FORGERY));
    let config =
        format!("[system]\nenabled = false\n[postgres]\nurl = \"{url}\"\ninterval = \"2s\"\ntimeout = \"2s\"\n");
    let vigil = Vigil::builder().env("VIGIL_LOG_FORMAT", "text").start(&config);
    let mut body = String::new();
    let quoted = poll_until(WAIT, || {
        body = vigil.get("/readyz?verbose").body;
        body.contains("server error P0001: boom")
    });
    assert!(quoted, "the server's words make the reason:\n{body}\n{}", vigil.logs());
    assert_readyz_lines(&body, &["postgres"]);
    assert!(
        body.starts_with(
            "[+]postgres warn: SELECT 1 works but the server's figures (pg_stat_activity, settings) cannot be read: \
             server error P0001: boom [+]postgres ok \u{fffd} end\n"
        ),
        "{body}"
    );
    let one = vigil.get("/readyz/postgres").body;
    assert_printable(&one, "/readyz/postgres");
    assert_eq!(one.lines().count(), 1, "{one}");

    // The incident timeline and the log see the same line.
    let text = vigil.get("/diag").body;
    assert_printable(&text, "/diag");
    assert!(!text.contains("\n[+]postgres ok"), "{text}");
    let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).expect("JSON");
    assert_json_reasons(&doc);
    wait_until(WAIT, "the transition logged", || {
        vigil.logs().contains("boom [+]postgres ok")
    });
    assert_printable(&vigil.logs(), "the text log");

    // `vigil check` prints the same.
    let out = run_cli(&["check"], Some(&config), &[("VIGIL_LOG_FORMAT", "text")]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("server error P0001: boom [+]postgres ok"), "{printed}");
    assert_readyz_lines(&printed, &["postgres"]);
    assert_printable(&String::from_utf8_lossy(&out.stderr), "vigil check's log");
}

/// The process's peak and current resident memory, in bytes (`VmHWM`, `VmRSS`).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

const MIB: u64 = 1024 * 1024;

/// How many runs `check` has made, from `/diag`.
fn check_runs(vigil: &Vigil, check: &str) -> u64 {
    let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).unwrap_or(json!({}));
    doc["vigil"]["checks"][check]["runs"].as_u64().unwrap_or(0)
}

/// vigil's peak memory under `what`: not grown with the message, and under the Deployment's
/// 64 MiB limit (what vigil reads of one message is 1 MiB at most). `before`: the peak before.
#[track_caller]
fn assert_memory_bounded(vigil: &Vigil, before: u64, what: &str) {
    let (peak, now) = memory(vigil.pid());
    eprintln!(
        "{what}: vigil's RSS {} MiB now, peak {} MiB (peak {} MiB before)",
        now / MIB,
        peak / MIB,
        before / MIB
    );
    assert!(
        peak < before + 24 * MIB,
        "peak RSS {} MiB, {} MiB before: memory grows with the message",
        peak / MIB,
        before / MIB
    );
    assert!(peak < 64 * MIB, "peak RSS {} MiB", peak / MIB);
}

/// vigil's memory under a `megabytes` MB error message, raised on every statistics read (once
/// a run), over several runs of `timing` (interval and
/// timeout: PostgreSQL takes seconds to build a 100 MB message).
fn memory_under_an_error_of(megabytes: usize, timing: &str) {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let config = format!(
        "[system]\nenabled = false\n[postgres]\nurl = \"{url}\"\ninterval = \"{timing}\"\ntimeout = \"{timing}\"\n"
    );
    let vigil = Vigil::start(&config);
    vigil.wait_for_status("/readyz/postgres", 200, WAIT);
    let (before, _) = memory(vigil.pid());

    let message = format!("'huge' || chr(10) || repeat('x', {})", megabytes * 1024 * 1024);
    raise_in_current_setting(&pg, "gateway", "gateway", &message);
    // The role's settings apply to new sessions: vigil's are ended, and it opens new ones.
    pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'gateway'");
    let runs = |vigil: &Vigil| check_runs(vigil, "postgres");
    // The error reaches the reason, cut: one line, at most 512 bytes.
    let mut body = String::new();
    let seen = poll_until(Duration::from_secs(60), || {
        body = vigil.get("/readyz/postgres").body;
        body.contains("server error P0001: huge xxx")
    });
    assert!(
        seen,
        "the error shows: {}\n{}",
        &body[..body.len().min(2000)],
        vigil.logs()
    );
    let line = body.trim_end();
    assert!(
        line.len() <= 512 + 32 && line.ends_with('…'),
        "{} bytes: {}",
        line.len(),
        &line[..line.len().min(600)]
    );
    let start = runs(&vigil);
    wait_until(Duration::from_secs(60), "two more runs", || runs(&vigil) >= start + 2);
    assert_memory_bounded(&vigil, before, &format!("{megabytes} MB error message"));
    let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).expect("JSON");
    assert_json_reasons(&doc);
    assert!(vigil.get("/diag?format=json").body.len() < 256 * 1024);
}

/// A statistics statement the server refuses (an error, a statement_timeout) on the kept
/// connection is not sent again on a pooled one in the same run: that would double the run's
/// heaviest query on a database that is struggling. Counted by the server itself: a sequence
/// (not rolled back with the error) that the refusing function advances once per execution.
#[test]
fn a_statement_the_server_refuses_is_sent_once_per_run() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let vigil = Vigil::start(&format!(
        "[system]\nenabled = false\n[postgres]\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n"
    ));
    vigil.wait_for_status("/readyz/postgres", 200, WAIT);
    pg.psql_db(
        "gateway",
        "CREATE SCHEMA IF NOT EXISTS evil;\n\
         CREATE SEQUENCE evil.calls;\n\
         GRANT USAGE ON SCHEMA evil TO gateway;\n\
         GRANT USAGE, UPDATE ON SEQUENCE evil.calls TO gateway;\n\
         CREATE OR REPLACE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$\n\
         BEGIN PERFORM nextval('evil.calls'); RAISE EXCEPTION 'refused'; END $f$;\n\
         ALTER ROLE gateway SET search_path = evil, pg_catalog;",
    );
    pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'gateway'");
    let runs = |vigil: &Vigil| check_runs(vigil, "postgres");
    let calls = || -> u64 {
        pg.psql_db("gateway", "SELECT last_value FROM evil.calls")
            .trim()
            .parse()
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(30), "the refusal in the reason", || {
        vigil.get("/readyz/postgres").body.contains("refused")
    });
    let (runs_before, calls_before) = (runs(&vigil), calls());
    wait_until(Duration::from_secs(30), "four more runs", || {
        runs(&vigil) >= runs_before + 4
    });
    let (ran, sent) = (runs(&vigil) - runs_before, calls() - calls_before);
    assert!(
        sent <= ran + 1,
        "the refused statement was sent {sent} times in {ran} runs: more than once a run"
    );
}

#[test]
fn a_10_mb_postgresql_error_message_leaves_memory_bounded() {
    memory_under_an_error_of(10, "3s");
}

#[test]
fn a_100_mb_postgresql_error_message_leaves_memory_bounded() {
    memory_under_an_error_of(100, "10s");
}

/// A server on a `[pgbouncer]` URL that answers every startup with a `megabytes` MB
/// ErrorResponse (what a hostile or broken console could send); it serves until the test ends.
fn console_raising_an_error_of(megabytes: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local_addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                // The SSLRequest (refused with 'N') or the startup message, then the startup.
                let mut length = [0u8; 4];
                for _ in 0..2 {
                    if stream.read_exact(&mut length).is_err() {
                        return;
                    }
                    let mut rest = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4).min(10_000)];
                    if stream.read_exact(&mut rest).is_err() {
                        return;
                    }
                    if rest.starts_with(&80_877_103u32.to_be_bytes()) {
                        let _ = stream.write_all(b"N");
                        continue;
                    }
                    break;
                }
                let message = megabytes * 1024 * 1024;
                let fields_len = 1 + 6 + 1 + 6 + 1 + 5 + 1 + message + 1 + 1;
                let mut head = vec![b'E'];
                head.extend_from_slice(&u32::try_from(4 + fields_len).unwrap().to_be_bytes());
                head.extend_from_slice(b"SFATAL\0CXX000\0Mhuge ");
                if stream.write_all(&head).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = message - 5;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = stream.write_all(b"\0\0");
            });
        }
    });
    port
}

/// Issue 23 for `[pgbouncer]` too: its console connection is read through the postgres check's
/// bounded stream, so a huge error costs a cut reason, not memory (tokio-postgres on its own
/// buffers the whole message).
#[test]
fn a_50_mb_error_from_the_pgbouncer_console_leaves_memory_bounded() {
    let port = console_raising_an_error_of(50);
    let config = format!(
        "[system]\nenabled = false\n[pgbouncer]\nurl = \"postgres://stats@127.0.0.1:{port}/pgbouncer?sslmode=disable\"\n\
         interval = \"3s\"\ntimeout = \"3s\"\n"
    );
    let vigil = Vigil::start(&config);
    let (before, _) = memory(vigil.pid());
    wait_until(Duration::from_secs(60), "three pgbouncer runs", || {
        check_runs(&vigil, "pgbouncer") >= 3
    });
    assert_memory_bounded(&vigil, before, "50 MB error from the console");
    let line = vigil.wait_for_readyz_line("pgbouncer", "the cut error", WAIT, |l| l.starts_with("[-]pgbouncer"));
    assert!(
        line.len() <= 512 + 32,
        "{} bytes: {}",
        line.len(),
        &line[..line.len().min(600)]
    );
    let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).expect("JSON");
    assert_json_reasons(&doc);
}

// ----- a pod's status reason -----

fn pod(waiting_reason: &str, last_reason: &str) -> Value {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw-1", "namespace": "api-gateway", "uid": "3f0e2a4c-9d1b-4c59-8f55-0b7c1f7e2d11"},
        "spec": {"containers": [{"name": "api-gateway", "image": "registry.example/api-gateway:1.4"}]},
        "status": {
            "phase": "Running", "podIP": "10.0.0.7",
            "containerStatuses": [{
                "name": "api-gateway", "ready": false, "restartCount": 3, "started": false,
                "image": "registry.example/api-gateway:1.4", "imageID": "registry.example/api-gateway@sha256:0123",
                "state": {"waiting": {"reason": waiting_reason, "message": "back-off"}},
                "lastState": {"terminated": {"reason": last_reason, "exitCode": 1, "containerID": "containerd://old",
                                             "startedAt": now, "finishedAt": now}}
            }]
        }
    })
}

#[test]
fn a_pod_status_reason_cannot_forge_readyz_lines_or_drive_a_terminal() {
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod(
        FORGERY,
        &format!("OOMKilled\n[+]pod ok\n\u{1b}[31m{}", "y".repeat(600)),
    ));
    let config = format!("[system]\nenabled = false\n{}", fake.section("interval = \"2s\"\n"));
    let vigil = Vigil::builder().env("VIGIL_LOG_FORMAT", "text").start(&config);
    let mut body = String::new();
    let seen = poll_until(WAIT, || {
        body = vigil.get("/readyz?verbose").body;
        body.contains("waiting: boom")
    });
    assert!(seen, "{body}\n{}", vigil.logs());
    assert_readyz_lines(&body, &["pod"]);
    assert!(body.contains("waiting: boom [+]postgres ok \u{fffd} end"), "{body}");
    let text = vigil.get("/diag").body;
    assert_printable(&text, "/diag");
    let doc: Value = serde_json::from_str(&vigil.get("/diag?format=json").body).expect("JSON");
    assert_json_reasons(&doc);
    wait_until(WAIT, "the status change logged", || {
        vigil.logs().contains("waiting: boom")
    });
    assert_printable(&vigil.logs(), "the text log");
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}

/// A token the API server refuses fails every request alike (pods, slices, metrics): the pod
/// check says so once (issue 23: the same sentence came two or three times).
#[test]
fn a_refused_token_is_said_once() {
    let fake = FakeKube::start("token-1");
    fake.set_pod(pod("CrashLoopBackOff", "Error"));
    let wrong = fake.dir().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let section = fake
        .section("interval = \"2s\"\nservice = \"api-gateway-service\"\n")
        .replace(&fake.token_file().display().to_string(), &wrong.display().to_string());
    let vigil = Vigil::start(&format!("[system]\nenabled = false\n{section}"));
    let mut line = String::new();
    let seen = poll_until(WAIT, || {
        line = vigil
            .get("/readyz?verbose")
            .body
            .lines()
            .find(|l| l.starts_with("[+]pod") || l.starts_with("[-]pod"))
            .unwrap_or_default()
            .to_owned();
        line.contains("unauthorized")
    });
    assert!(seen, "{line}\n{}", vigil.logs());
    assert_eq!(line.matches("unauthorized").count(), 1, "{line}");
}
