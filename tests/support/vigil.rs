//! Runs the built `vigil` binary (`CARGO_BIN_EXE_vigil`).
//!
//! [`Vigil::start`] writes the test's TOML to a temporary config file with
//! `listen = "127.0.0.1:<free port>"` prepended, spawns `vigil run --config FILE` with JSON logs at
//! info level captured into files, and waits until `GET /livez` answers. [`run_cli`] runs one-shot
//! commands (`vigil validate`, `vigil check`, `--version`). The parent's `VIGIL_*`, `DATABASE_URL` and
//! `RUST_LOG` never leak into the child: a test sets exactly the environment it means.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::client::{self, HttpResponse};
use super::{free_port, poll_until};

/// The binary under test.
pub const VIGIL_BIN: &str = env!("CARGO_BIN_EXE_vigil");

/// How long [`Vigil::start`] waits for `/livez` to answer.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// How long [`run_cli`] lets a one-shot command run before killing it.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// Options for a [`Vigil`]; from [`Vigil::builder`].
#[derive(Debug, Clone)]
pub struct VigilBuilder {
    env: Vec<(String, String)>,
    args: Vec<String>,
    listen_ip: Option<IpAddr>,
    listen: Option<SocketAddr>,
}

impl VigilBuilder {
    /// Sets an environment variable for the agent (wins over the harness's own
    /// `VIGIL_LOG_FORMAT=json`, `RUST_LOG=info`).
    pub fn env(mut self, key: &str, value: &str) -> VigilBuilder {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Listens on exactly `addr` (e.g. `127.0.0.3:<port>`, for several replicas on one port)
    /// instead of 127.0.0.1 and a free port; no retry with another port.
    pub fn listen(mut self, addr: SocketAddr) -> VigilBuilder {
        self.listen = Some(addr);
        self
    }

    /// Appends a command-line argument after `run --config FILE`.
    pub fn arg(mut self, arg: &str) -> VigilBuilder {
        self.args.push(arg.to_string());
        self
    }

    /// Appends command-line arguments after `run --config FILE`.
    pub fn args(mut self, args: &[&str]) -> VigilBuilder {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Listens on `ip` (e.g. `0.0.0.0`, for peers from another network namespace) instead of
    /// 127.0.0.1; [`Vigil::addr`] stays `127.0.0.1:<port>`, which a wildcard address also serves.
    pub fn listen_ip(mut self, ip: IpAddr) -> VigilBuilder {
        self.listen_ip = Some(ip);
        self
    }

    /// Spawns the agent and waits (up to [`START_DEADLINE`]) until `GET /livez` gets any HTTP answer;
    /// panics with the agent's logs if it exits or does not answer. Retries with another port when
    /// the free port was taken in the meantime.
    #[track_caller]
    pub fn start(self, config_toml: &str) -> Vigil {
        for attempt in 1..=3 {
            let mut vigil = self.spawn(config_toml);
            match vigil.wait_for_livez() {
                Ok(()) => return vigil,
                Err(exited) => {
                    let logs = vigil.logs();
                    if exited
                        && self.listen.is_none()
                        && logs.to_ascii_lowercase().contains("address already in use")
                        && attempt < 3
                    {
                        continue;
                    }
                    panic!(
                        "vigil did not come up on {} within {START_DEADLINE:?} ({}).\n--- config ---\n{}\n--- logs ---\n{}",
                        vigil.addr,
                        match vigil.child.try_wait() {
                            Ok(Some(status)) => format!("exited with {status}"),
                            _ => "still running".to_string(),
                        },
                        fs::read_to_string(&vigil.config_path).unwrap_or_default(),
                        logs
                    );
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Spawns the agent without waiting for it to answer (for tests of startup failures: combine
    /// with [`Vigil::wait_exit`] and [`Vigil::logs`]).
    #[track_caller]
    pub fn spawn(&self, config_toml: &str) -> Vigil {
        let dir = tempfile::Builder::new()
            .prefix("vigil-test-")
            .tempdir()
            .expect("Vigil: create temp dir");
        // Clients reach an agent on a wildcard address over 127.0.0.1, on any other at that address.
        let (listen, addr) = match self.listen {
            Some(listen) => (listen, listen),
            None => {
                let port = free_port();
                let ip = self.listen_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
                let reach = if ip.is_unspecified() {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    ip
                };
                (SocketAddr::new(ip, port), SocketAddr::new(reach, port))
            }
        };
        let config_path = dir.path().join("vigil.toml");
        fs::write(&config_path, format!("listen = \"{listen}\"\n{config_toml}")).expect("Vigil: write config");
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = fs::File::create(&stdout_path).expect("Vigil: create stdout.log");
        let stderr = fs::File::create(&stderr_path).expect("Vigil: create stderr.log");

        let mut cmd = Command::new(VIGIL_BIN);
        clean_env(&mut cmd);
        cmd.env("VIGIL_LOG_FORMAT", "json").env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(&self.args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("Vigil: cannot spawn {VIGIL_BIN}: {e}"));
        Vigil {
            child,
            addr,
            config_path,
            stdout_path,
            stderr_path,
            dir,
        }
    }
}

/// A running `vigil run` process; killed on drop if still running.
pub struct Vigil {
    child: Child,
    addr: SocketAddr,
    config_path: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Vigil {
    /// Starts the agent with `config_toml` (which must not set `listen`); see [`VigilBuilder::start`].
    #[track_caller]
    pub fn start(config_toml: &str) -> Vigil {
        Vigil::builder().start(config_toml)
    }

    /// Options: `Vigil::builder().env("JWT_SECRET", "…").start(toml)`.
    pub fn builder() -> VigilBuilder {
        VigilBuilder {
            env: Vec::new(),
            args: Vec::new(),
            listen_ip: None,
            listen: None,
        }
    }

    /// `Err(true)` when the process exited, `Err(false)` on timeout.
    fn wait_for_livez(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if client::try_request(self.addr, "GET", "/livez", &[], &[]).is_ok() {
                // Answered by this agent, not by another process on the same port: it still runs.
                return match self.child.try_wait() {
                    Ok(Some(_)) => Err(true),
                    _ => Ok(()),
                };
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return Err(true);
            }
            if Instant::now() >= deadline {
                return Err(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where to connect: `127.0.0.1:<port>` (or the builder's `listen`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the agent was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The agent's temporary directory (config and log files; a handy place for test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    // ----- HTTP -----

    /// `GET path`; panics (with the agent's logs) when the request fails.
    #[track_caller]
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[])
    }

    /// One request; panics (with the agent's logs) when it fails.
    #[track_caller]
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.try_request(method, path, headers).unwrap_or_else(|e| {
            panic!(
                "{method} {} failed: {e}\n--- vigil logs ---\n{}",
                self.url(path),
                self.logs()
            )
        })
    }

    /// One request, returning the error instead of panicking (e.g. to see that the port is closed).
    pub fn try_request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> io::Result<HttpResponse> {
        client::try_request(self.addr, method, path, headers, &[])
    }

    /// Polls `GET path` until it answers `status`; panics with the last answer and the logs at the
    /// deadline.
    #[track_caller]
    pub fn wait_for_status(&self, path: &str, status: u16, deadline: Duration) -> HttpResponse {
        let mut last: Option<io::Result<HttpResponse>> = None;
        let ok = poll_until(deadline, || {
            let answer = self.try_request("GET", path, &[]);
            let done = matches!(&answer, Ok(r) if r.status == status);
            last = Some(answer);
            done
        });
        match last {
            Some(Ok(answer)) if ok => answer,
            other => panic!(
                "timed out after {deadline:?} waiting for GET {path} to answer {status}; last answer: {}\n--- vigil logs ---\n{}",
                match other {
                    Some(Ok(r)) => format!("{} {:?}", r.status, r.body),
                    Some(Err(e)) => format!("error: {e}"),
                    None => "none".to_string(),
                },
                self.logs()
            ),
        }
    }

    /// The `/readyz?verbose` line of `check` (`[+]check …` or `[-]check …`; `upstream:<name>` for an
    /// upstream), or `""` when there is none.
    pub fn readyz_line(&self, check: &str) -> String {
        let verbose = self.get("/readyz?verbose").body;
        let prefix = format!("{check} ");
        verbose
            .lines()
            .find(|l| l.get(3..).is_some_and(|rest| rest.starts_with(&prefix)))
            .unwrap_or("")
            .to_owned()
    }

    /// Polls [`Vigil::readyz_line`] until `done` holds for it, and returns it; panics naming `what`,
    /// with the last line, `/readyz?verbose`, `/diag` and the logs at the deadline.
    #[track_caller]
    pub fn wait_for_readyz_line(
        &self,
        check: &str,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        if poll_until(deadline, || {
            last = self.readyz_line(check);
            done(&last)
        }) {
            return last;
        }
        panic!(
            "timed out after {deadline:?} waiting for {what} in the {check} line; last: {last:?}\n\
             --- /readyz?verbose ---\n{}\n--- /diag ---\n{}\n--- logs ---\n{}",
            self.get("/readyz?verbose").body,
            self.get("/diag").body,
            self.logs()
        );
    }

    // ----- logs -----

    /// stdout followed by stderr, as written so far.
    pub fn logs(&self) -> String {
        let mut logs = self.stdout();
        logs.push_str(&self.stderr());
        logs
    }

    /// stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Every log line (stdout and stderr) that parses as a JSON object.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// Waits until the logs contain `needle`; panics with the logs at the deadline.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) {
        if !poll_until(deadline, || self.logs().contains(needle)) {
            panic!(
                "timed out after {deadline:?} waiting for {needle:?} in the logs:\n{}",
                self.logs()
            );
        }
    }

    // ----- process -----

    /// Sends a signal by name (`"TERM"`, `"SIGTERM"`, `"INT"`, `"HUP"`, `"KILL"`…) with `kill -s`.
    #[track_caller]
    pub fn signal(&self, sig: &str) {
        let name = sig.trim_start_matches("SIG");
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -s {name} {} failed: {status}", self.pid());
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits for the process to exit; panics with the logs at the deadline.
    #[track_caller]
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        poll_until(deadline, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.unwrap_or_else(|| {
            panic!(
                "vigil (pid {}) did not exit within {deadline:?}\n--- logs ---\n{}",
                self.pid(),
                self.logs()
            )
        })
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Vigil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vigil")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .finish()
    }
}

/// Runs `vigil <args…>` once (e.g. `&["validate"]`, `&["check", "--output", "json"]`) and returns its
/// output. With `config_toml`, writes it (as is: no `listen` is added) to a temporary file and appends
/// `--config FILE`. `env` is the child's extra environment; the parent's `VIGIL_*`, `DATABASE_URL` and
/// `RUST_LOG` are not inherited. Panics if the command runs longer than [`CLI_DEADLINE`].
#[track_caller]
pub fn run_cli(args: &[&str], config_toml: Option<&str>, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::Builder::new()
        .prefix("vigil-cli-")
        .tempdir()
        .expect("run_cli: create temp dir");
    let mut cmd = Command::new(VIGIL_BIN);
    clean_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    if let Some(toml) = config_toml {
        let path = dir.path().join("vigil.toml");
        fs::write(&path, toml).expect("run_cli: write config");
        cmd.arg("--config").arg(path);
    }
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    cmd.current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            fs::File::create(&stdout_path).expect("run_cli: create stdout file"),
        ))
        .stderr(Stdio::from(
            fs::File::create(&stderr_path).expect("run_cli: create stderr file"),
        ));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run_cli: cannot spawn {VIGIL_BIN}: {e}"));
    let mut status = None;
    poll_until(CLI_DEADLINE, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "vigil {args:?} did not exit within {CLI_DEADLINE:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&fs::read(&stdout_path).unwrap_or_default()),
            String::from_utf8_lossy(&fs::read(&stderr_path).unwrap_or_default())
        );
    };
    Output {
        status,
        stdout: fs::read(&stdout_path).unwrap_or_default(),
        stderr: fs::read(&stderr_path).unwrap_or_default(),
    }
}

/// Removes the parent's configuration variables so that only what a test sets reaches the agent.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("VIGIL_") || key == "DATABASE_URL" || key == "RUST_LOG" {
            cmd.env_remove(key.as_ref());
        }
    }
}
