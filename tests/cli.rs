//! The command line as an operator meets it: `validate`, `check`, and every way a bad
//! configuration is refused (exit 2, one line naming the key, no backtrace).

mod support;

use std::process::Output;

use support::run_cli;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Exit 2 and exactly one line on stderr that names the key.
#[track_caller]
fn assert_refused(output: &Output, expected_line: &str) {
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(output));
    let err = stderr(output);
    assert_eq!(err.lines().count(), 1, "one line, got:\n{err}");
    assert_eq!(err.trim_end(), expected_line);
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn bad_values_in_the_file_name_their_key() {
    let cases = [
        (
            "[postgres]\nurl = \"postgres://gw:pw@127.0.0.1/gw\"\nsaturation_warn = 1.5\n",
            "vigil: postgres.saturation_warn: must be between 0 and 1, got 1.5",
        ),
        (
            "[defaults]\ninterval = \"fast\"\n",
            "vigil: defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got \"fast\"",
        ),
        (
            "[system]\ncpu_warm = 0.5\n",
            "vigil: system.cpu_warm: unknown key; expected one of enabled, cpu_warn, memory_warn, cgroup_root",
        ),
        (
            "[shutdown]\ndrain = \"1h\"\n",
            "vigil: shutdown.drain: must be at most 10m, got 1h",
        ),
        (
            "[[upstream]]\nname = \"orders\"\nurl = \"orders.svc\"\n",
            "vigil: upstream[0].url: must be an http://, https://, grpc://, grpcs://, tcp:// or tls:// URL, got \"orders.svc\"",
        ),
        (
            "[jwt]\nalgorithm = \"HS256\"\n",
            "vigil: jwt.secret_file: required for HS256: set secret_file or secret_env",
        ),
    ];
    for (toml, expected) in cases {
        assert_refused(&run_cli(&["validate"], Some(toml), &[]), expected);
        assert_refused(&run_cli(&["run"], Some(toml), &[]), expected);
    }
}

#[test]
fn environment_overrides_are_validated_and_named() {
    let output = run_cli(&["validate"], None, &[("VIGIL_SYSTEM__MEMORY_WARN", "2")]);
    assert_refused(
        &output,
        "vigil: system.memory_warn (from VIGIL_SYSTEM__MEMORY_WARN): must be between 0 and 1, got 2",
    );
    let output = run_cli(
        &["validate"],
        None,
        &[("VIGIL_DEFAULTS__INTERVAL", "10s"), ("VIGIL_SYSTEM__CPU_WARN", "0.5")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(shown.contains("cpu_warn = 0.5"), "{shown}");
    assert!(shown.contains("interval = \"10s\""), "{shown}");
}

#[test]
fn unreadable_or_malformed_files_are_refused() {
    let output = run_cli(&["validate", "--config", "/nonexistent/vigil.toml"], None, &[]);
    assert_refused(
        &output,
        "vigil: /nonexistent/vigil.toml: cannot read the configuration file: No such file or directory (os error 2)",
    );
    let output = run_cli(&["validate"], Some("[system\ncpu_warn = 0.5\n"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains(":1:") && err.contains("invalid TOML"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let output = run_cli(&["frobnicate"], None, &[]);
    assert_eq!(output.status.code(), Some(2));
    let output = run_cli(&["check", "--output", "yaml"], None, &[]);
    assert_eq!(output.status.code(), Some(2));
    let output = run_cli(&["--version"], None, &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with("vigil "), "{}", stdout(&output));
}

#[test]
fn validate_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("diag-token");
    std::fs::write(&token, "diag-token-9f8e7d\n").unwrap();
    let toml = format!(
        "[diag]\ntoken_file = \"{}\"\n\
         [[upstream]]\nname = \"orders\"\nurl = \"http://127.0.0.1:1/healthz\"\nheaders = {{ Authorization = \"Bearer upstream-secret-42\" }}\n",
        token.display()
    );
    let output = run_cli(
        &["validate"],
        Some(&toml),
        &[("DATABASE_URL", "postgres://gateway:db-pass-1234@127.0.0.1:5432/gateway")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let shown = stdout(&output);
    for secret in ["diag-token-9f8e7d", "db-pass-1234", "upstream-secret-42"] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        assert!(!stderr(&output).contains(secret));
    }
    assert!(shown.contains("url = \"<redacted>\""), "{shown}");
    assert!(shown.contains("token = \"<redacted>\""), "{shown}");
    // The defaults that apply are spelled out, so an operator sees what will run.
    assert!(
        shown.contains("[postgres]") && shown.contains("saturation_warn = 0.8"),
        "{shown}"
    );
    assert!(
        shown.contains("[system]") && shown.contains("cgroup_root = \"/sys/fs/cgroup\""),
        "{shown}"
    );
    assert!(
        shown.contains("critical = true"),
        "postgres is critical by default:\n{shown}"
    );
}

#[test]
fn the_example_deployment_configuration_is_valid() {
    // As it is (only `listen` moved to a free port): the README offers it for trying vigil out.
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/vigil.toml")).unwrap();
    let toml: String = toml
        .lines()
        .filter(|l| !l.starts_with("listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    let output = run_cli(&["validate"], Some(&toml), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A FIFO given as `--config` hung start-up (and SIGTERM with it), `/dev/zero` read until the
/// allocation failed: every file vigil reads goes through one reader that refuses what is not a
/// regular file, and `validate` refuses what `run` would.
#[test]
fn special_files_are_refused_at_once_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.to_str().unwrap().to_owned();
    let dir_path = dir.path().to_str().unwrap().to_owned();
    for (path, what) in [
        (fifo.as_str(), "FIFO"),
        ("/dev/zero", "device"),
        (dir_path.as_str(), "directory"),
    ] {
        let output = run_cli(&["validate", "--config", path], None, &[]);
        assert_refused(
            &output,
            &format!(
                "vigil: {path}: cannot read the configuration file: not a regular file (a {what}): point it at a file"
            ),
        );
    }
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let not_pem = not_pem.to_str().unwrap().to_owned();
    let missing = format!("{dir_path}/missing.pem");
    let upstream = |ca: &str| {
        format!(
            "[system]\nenabled = false\n[[upstream]]\nname = \"orders\"\nurl = \"https://127.0.0.1:1/\"\nca_file = \"{ca}\"\n"
        )
    };
    for (ca, expected) in [
        (
            fifo.as_str(),
            "not a regular file (a FIFO): point it at a file".to_owned(),
        ),
        (
            dir_path.as_str(),
            "not a regular file (a directory): point it at a file".to_owned(),
        ),
        (not_pem.as_str(), "holds no PEM certificate".to_owned()),
        (missing.as_str(), "No such file or directory (os error 2)".to_owned()),
    ] {
        for command in ["validate", "run"] {
            let output = run_cli(&[command], Some(&upstream(ca)), &[]);
            assert_refused(&output, &format!("vigil: upstream:orders: ca_file {ca}: {expected}"));
        }
    }
    let postgres = format!(
        "[system]\nenabled = false\n[postgres]\nurl = \"postgres://gw@127.0.0.1:1/gw?sslmode=verify-full&sslrootcert={fifo}\"\n"
    );
    for command in ["validate", "run"] {
        let output = run_cli(&[command], Some(&postgres), &[]);
        assert_eq!(output.status.code(), Some(2), "{command}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("not a regular file (a FIFO)"),
            "{}",
            stderr(&output)
        );
    }
}

/// Any environment variable that is not UTF-8 panicked the agent (exit 101), even one it never
/// reads. One it does not read is ignored; one it reads is refused, named.
#[test]
fn environment_variables_that_are_not_utf8_do_not_panic() {
    use std::os::unix::ffi::OsStrExt;
    let run = |name: &str| {
        let mut command = std::process::Command::new(support::vigil::VIGIL_BIN);
        command
            .arg("validate")
            .env_remove("VIGIL_CONFIG")
            .env(name, std::ffi::OsStr::from_bytes(b"caf\xe9"))
            .env("VIGIL_SYSTEM__ENABLED", "false");
        command.output().unwrap()
    };
    let ignored = run("SOME_OTHER_TOOL_SETTING");
    assert_eq!(ignored.status.code(), Some(0), "{}", stderr(&ignored));
    let refused = run("VIGIL_DEFAULTS__INTERVAL");
    assert_refused(
        &refused,
        "vigil: VIGIL_DEFAULTS__INTERVAL: the environment variable is not UTF-8 text",
    );
}

/// `validate` accepted what `run` refused: an unknown `sslmode`, a missing `sslrootcert`. One
/// validation path for every command now: each refuses them with the same one line.
#[test]
fn validate_refuses_what_run_refuses_in_the_postgres_url() {
    let section = |query: &str| {
        format!("[system]\nenabled = false\n[postgres]\nurl = \"postgres://gw:pw@127.0.0.1:1/gw?{query}\"\n")
    };
    let cases = [
        (
            "sslmode=sometimes",
            "vigil: postgres.url: sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"sometimes\"",
        ),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "vigil: postgres: postgres.url: sslrootcert /nonexistent/ca.pem: No such file or directory (os error 2)",
        ),
    ];
    for (query, expected) in cases {
        for command in ["validate", "run", "check"] {
            let output = run_cli(&[command], Some(&section(query)), &[]);
            assert_refused(&output, expected);
        }
    }
}
