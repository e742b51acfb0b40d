//! Debian's PgBouncer (1.18) in front of a test cluster.
//!
//! [`PgBouncer::builder`]`(&pg).database("gateway").user("gateway", pw).start()` writes a
//! `pgbouncer.ini` and an `auth_file` into a fresh temporary directory and runs `pgbouncer` in the
//! foreground on a free port of 127.0.0.1 (no unix socket), as the `postgres` user when the tests
//! run as root (PgBouncer refuses root; `setpriv` execs it, so the child's pid is PgBouncer's and
//! signals reach it). It waits (bounded) until the admin console answers `SHOW VERSION`.
//!
//! - Clients authenticate with SCRAM against the `auth_file` (plain-text passwords there, so that
//!   PgBouncer can log in to PostgreSQL as the same user with SCRAM too).
//! - The admin console is the `pgbouncer` database, simple query protocol only: [`ADMIN_USER`] is in
//!   `admin_users`, [`STATS_USER`] (the least a monitor needs: every `SHOW` but `SHOW FDS`) in
//!   `stats_users`.
//! - `pool_mode` (default `transaction`) and `default_pool_size` (default 2: two clients running
//!   `pg_sleep` make a third one wait, `cl_waiting` in `SHOW POOLS`).
//! - Faults: [`PgBouncer::stop`] (SIGTERM: immediate shutdown), [`PgBouncer::kill`] (SIGKILL),
//!   [`PgBouncer::start_again`] on the same port. Dropping it kills the process and removes the
//!   directory.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{
    PgServer, PgSession, clean_pg_env, give_to_postgres, loopback_url, pg_bin, process_alive, run_command,
    server_command,
};
use super::{free_port, poll_until};

/// The admin console's admin (`admin_users`).
pub const ADMIN_USER: &str = "pgb_admin";
pub const ADMIN_PASSWORD: &str = "pgb-admin-test-pw";
/// A read-only console user (`stats_users`): what vigil should use.
pub const STATS_USER: &str = "vigil";
pub const STATS_PASSWORD: &str = "pgb-stats-test-pw";

/// How long PgBouncer may take to answer after a start, or to exit after a signal.
const START_DEADLINE: Duration = Duration::from_secs(15);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const BIND_ATTEMPTS: usize = 3;

/// Options for a [`PgBouncer`]; from [`PgBouncer::builder`].
#[derive(Debug, Clone)]
pub struct PgBouncerBuilder {
    server_port: u16,
    databases: Vec<(String, String)>,
    users: Vec<(String, String)>,
    pool_mode: String,
    pool_size: u32,
    settings: Vec<(String, String)>,
}

impl PgBouncerBuilder {
    /// A pool named `name` for the server's database of the same name.
    pub fn database(self, name: &str) -> PgBouncerBuilder {
        self.database_for(name, name)
    }

    /// A pool named `name` for the server's database `dbname`.
    pub fn database_for(mut self, name: &str, dbname: &str) -> PgBouncerBuilder {
        self.databases.push((name.to_string(), dbname.to_string()));
        self
    }

    /// A client user PgBouncer accepts (and logs in to PostgreSQL as, with the same password).
    pub fn user(mut self, name: &str, password: &str) -> PgBouncerBuilder {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// `session`, `transaction` (default) or `statement`.
    pub fn pool_mode(mut self, mode: &str) -> PgBouncerBuilder {
        self.pool_mode = mode.to_string();
        self
    }

    /// `default_pool_size`: server connections per (database, user) pool (default 2).
    pub fn pool_size(mut self, n: u32) -> PgBouncerBuilder {
        self.pool_size = n;
        self
    }

    /// Any other `[pgbouncer]` setting, written after the harness's own.
    pub fn setting(mut self, name: &str, value: &str) -> PgBouncerBuilder {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Writes the configuration and starts PgBouncer; panics with its log on failure.
    #[track_caller]
    pub fn start(self) -> PgBouncer {
        let dir = tempfile::Builder::new()
            .prefix("vigil-pgbouncer-")
            .tempdir_in("/tmp")
            .expect("PgBouncer: create a temporary directory");
        let root = dir.path().to_path_buf();
        give_to_postgres(&root);
        let mut bouncer = PgBouncer {
            ini: root.join("pgbouncer.ini"),
            log_path: root.join("pgbouncer.log"),
            auth_file: root.join("userlist.txt"),
            root,
            dir: Some(dir),
            port: 0,
            builder: self,
            child: None,
        };
        bouncer.write_auth_file();
        for attempt in 1..=BIND_ATTEMPTS {
            bouncer.port = free_port();
            bouncer.write_ini();
            match bouncer.spawn() {
                Ok(()) => return bouncer,
                Err(e) if e.bind_conflict && attempt < BIND_ATTEMPTS => continue,
                Err(e) => panic!("PgBouncer: cannot start on port {}: {}", bouncer.port, e.message),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }
}

/// A running (or deliberately stopped) PgBouncer.
pub struct PgBouncer {
    /// `None` only after drop has removed it.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    ini: PathBuf,
    log_path: PathBuf,
    auth_file: PathBuf,
    port: u16,
    builder: PgBouncerBuilder,
    child: Option<Child>,
}

/// One row of `SHOW POOLS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pool {
    pub database: String,
    pub user: String,
    pub cl_active: u64,
    pub cl_waiting: u64,
    pub sv_active: u64,
    pub sv_idle: u64,
    pub sv_used: u64,
    /// `maxwait` + `maxwait_us`: how long the oldest waiting client has waited.
    pub maxwait_seconds: f64,
    pub pool_mode: String,
}

impl PgBouncer {
    /// Options: `PgBouncer::builder(&pg).database("gateway").user("gateway", pw).start()`.
    pub fn builder(server: &PgServer) -> PgBouncerBuilder {
        PgBouncerBuilder {
            server_port: server.port(),
            databases: Vec::new(),
            users: Vec::new(),
            pool_mode: "transaction".to_string(),
            pool_size: 2,
            settings: Vec::new(),
        }
    }

    fn write_auth_file(&self) {
        let mut users = self.builder.users.clone();
        users.push((ADMIN_USER.to_string(), ADMIN_PASSWORD.to_string()));
        users.push((STATS_USER.to_string(), STATS_PASSWORD.to_string()));
        let text: String = users
            .iter()
            .map(|(name, password)| {
                format!(
                    "\"{}\" \"{}\"\n",
                    name.replace('"', "\"\""),
                    password.replace('"', "\"\"")
                )
            })
            .collect();
        fs::write(&self.auth_file, text).expect("PgBouncer: write the auth_file");
        fs::set_permissions(&self.auth_file, fs::Permissions::from_mode(0o600)).expect("PgBouncer: chmod auth_file");
        give_to_postgres(&self.auth_file);
    }

    fn write_ini(&self) {
        let b = &self.builder;
        let mut ini = String::from("; written by tests/support/pgbouncer.rs\n[databases]\n");
        for (name, dbname) in &b.databases {
            ini.push_str(&format!(
                "{name} = host=127.0.0.1 port={} dbname={dbname}\n",
                b.server_port
            ));
        }
        ini.push_str(&format!(
            "\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {auth_file}\n\
             admin_users = {ADMIN_USER}\n\
             stats_users = {STATS_USER}\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 200\n\
             server_login_retry = 1\n\
             server_connect_timeout = 5\n\
             log_connections = 1\n\
             log_disconnections = 1\n",
            port = self.port,
            auth_file = self.auth_file.display(),
            pool_mode = b.pool_mode,
            pool_size = b.pool_size,
        ));
        for (name, value) in &b.settings {
            ini.push_str(&format!("{name} = {value}\n"));
        }
        fs::write(&self.ini, ini).expect("PgBouncer: write pgbouncer.ini");
        give_to_postgres(&self.ini);
    }

    /// Runs PgBouncer and waits until its console answers; tells "the port was taken" apart.
    fn spawn(&mut self) -> Result<(), StartError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("PgBouncer: open the log");
        let log_before = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = server_command(&pgbouncer_bin());
        cmd.arg(&self.ini)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("PgBouncer: log handle")))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().map_err(|e| StartError {
            bind_conflict: false,
            message: format!("cannot run pgbouncer (install Debian's pgbouncer package): {e}"),
        })?;
        self.child = Some(child);
        let started = Instant::now();
        let mut last_error = String::new();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = fs::read(&self.log_path).unwrap_or_default();
                let new = String::from_utf8_lossy(log.get(log_before as usize..).unwrap_or_default()).into_owned();
                return Err(StartError {
                    bind_conflict: new.contains("Address already in use"),
                    message: format!("pgbouncer exited with {status}\n--- pgbouncer log ---\n{new}"),
                });
            }
            if self.is_listening() {
                match self.try_admin("SHOW VERSION") {
                    Ok(_) => return Ok(()),
                    Err(e) => last_error = e,
                }
            }
            if started.elapsed() > START_DEADLINE {
                self.kill_child();
                return Err(StartError {
                    bind_conflict: false,
                    message: format!(
                        "the admin console did not answer within {START_DEADLINE:?}: {last_error}\n--- pgbouncer log ---\n{}",
                        self.log()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // ----- accessors -----

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `postgres://user:password@127.0.0.1:<port>/db` (a pool, or `pgbouncer` for the console).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        loopback_url(self.port, user, password, db)
    }

    /// The admin console as [`ADMIN_USER`].
    pub fn admin_url(&self) -> String {
        self.url(ADMIN_USER, ADMIN_PASSWORD, "pgbouncer")
    }

    /// The admin console as the read-only [`STATS_USER`].
    pub fn stats_url(&self) -> String {
        self.url(STATS_USER, STATS_PASSWORD, "pgbouncer")
    }

    /// PgBouncer's log (its stderr) so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The configuration file.
    pub fn ini_path(&self) -> &Path {
        &self.ini
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    // ----- the admin console -----

    /// Runs `sql` on the admin console (simple query protocol, as psql sends it) as
    /// [`ADMIN_USER`]; returns the rows, `|`-separated, one per line. Panics on failure.
    #[track_caller]
    pub fn admin(&self, sql: &str) -> String {
        self.try_admin(sql)
            .unwrap_or_else(|e| panic!("PgBouncer: {sql:?} on the admin console failed: {e}"))
    }

    /// [`PgBouncer::admin`], returning psql's error instead of panicking.
    pub fn try_admin(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(pg_bin("psql"));
        clean_pg_env(&mut cmd);
        cmd.args(["-X", "-q", "-A", "-F", "|", "-P", "footer=off", "-d"])
            .arg(self.admin_url())
            .arg("-c")
            .arg(sql);
        let out = run_command(cmd, Duration::from_secs(10))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "psql exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `SHOW POOLS`, every row.
    #[track_caller]
    pub fn pools(&self) -> Vec<Pool> {
        let text = self.admin("SHOW POOLS");
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
        lines
            .map(|line| {
                let row: BTreeMap<&str, &str> = header.iter().copied().zip(line.split('|')).collect();
                let number = |name: &str| row.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                Pool {
                    database: row.get("database").unwrap_or(&"").to_string(),
                    user: row.get("user").unwrap_or(&"").to_string(),
                    cl_active: number("cl_active"),
                    cl_waiting: number("cl_waiting"),
                    sv_active: number("sv_active"),
                    sv_idle: number("sv_idle"),
                    sv_used: number("sv_used"),
                    maxwait_seconds: number("maxwait") as f64 + number("maxwait_us") as f64 / 1e6,
                    pool_mode: row.get("pool_mode").unwrap_or(&"").to_string(),
                }
            })
            .collect()
    }

    /// The pools of `database`, summed over their users (`maxwait`: the longest).
    #[track_caller]
    pub fn pool(&self, database: &str) -> Pool {
        self.pools().into_iter().filter(|p| p.database == database).fold(
            Pool {
                database: database.to_string(),
                ..Pool::default()
            },
            |sum, p| Pool {
                cl_active: sum.cl_active + p.cl_active,
                cl_waiting: sum.cl_waiting + p.cl_waiting,
                sv_active: sum.sv_active + p.sv_active,
                sv_idle: sum.sv_idle + p.sv_idle,
                sv_used: sum.sv_used + p.sv_used,
                maxwait_seconds: sum.maxwait_seconds.max(p.maxwait_seconds),
                user: p.user,
                pool_mode: p.pool_mode,
                ..sum
            },
        )
    }

    /// Opens `n` client sessions on pool `db` as `user` that each run `SELECT pg_sleep(seconds)`
    /// (each holding one of the pool's server connections for that long), and waits until the pool
    /// shows them active on a server.
    #[track_caller]
    pub fn sleepers(
        &self,
        server: &PgServer,
        user: &str,
        password: &str,
        db: &str,
        n: usize,
        seconds: u32,
    ) -> Vec<PgSession> {
        let before = self.pool(db).sv_active;
        let sessions = self.clients(server, user, password, db, n, &format!("SELECT pg_sleep({seconds});"));
        let mut last = Pool::default();
        let shown = poll_until(START_DEADLINE, || {
            last = self.pool(db);
            last.sv_active >= before + n as u64
        });
        assert!(shown, "PgBouncer: {n} sleepers not active on pool {db}: {last:?}");
        sessions
    }

    /// Opens `n` client sessions on pool `db` that each send `sql` without waiting for it.
    #[track_caller]
    pub fn clients(
        &self,
        server: &PgServer,
        user: &str,
        password: &str,
        db: &str,
        n: usize,
        sql: &str,
    ) -> Vec<PgSession> {
        (0..n)
            .map(|i| {
                let mut session = server
                    .session(&format!(
                        "{}?application_name=pgbouncer-client",
                        self.url(user, password, db)
                    ))
                    .unwrap_or_else(|e| panic!("PgBouncer: client {} of {n} on {db}: {e}", i + 1));
                session.send(sql);
                session
            })
            .collect()
    }

    /// Waits until pool `db` has `n` clients waiting for a server connection.
    #[track_caller]
    pub fn wait_for_waiting(&self, db: &str, n: u64) {
        let mut last = Pool::default();
        let waiting = poll_until(START_DEADLINE, || {
            last = self.pool(db);
            last.cl_waiting == n
        });
        assert!(waiting, "PgBouncer: pool {db} never had {n} waiting clients: {last:?}");
    }

    // ----- state and faults -----

    /// The process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Something accepts TCP connections on the port.
    pub fn is_listening(&self) -> bool {
        TcpStream::connect_timeout(&self.addr(), Duration::from_millis(300)).is_ok()
    }

    /// SIGTERM (PgBouncer's immediate shutdown: every client disconnected), then waits until the
    /// process has exited and the port refuses.
    #[track_caller]
    pub fn stop(&mut self) {
        let pid = self.pid().expect("PgBouncer::stop: not running");
        signal(pid, "TERM");
        let exited = poll_until(STOP_DEADLINE, || !self.is_running());
        assert!(exited, "PgBouncer did not exit within {STOP_DEADLINE:?} of SIGTERM");
        self.child = None;
        assert!(
            poll_until(STOP_DEADLINE, || !self.is_listening()),
            "the port still accepts after PgBouncer exited"
        );
    }

    /// SIGKILL (a crash), then waits until the port refuses.
    #[track_caller]
    pub fn kill(&mut self) {
        assert!(self.kill_child(), "PgBouncer::kill: not running");
        assert!(
            poll_until(STOP_DEADLINE, || !self.is_listening()),
            "the port still accepts after PgBouncer was killed"
        );
    }

    /// Starts PgBouncer again on the same port with the same configuration.
    #[track_caller]
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "PgBouncer::start_again: still running");
        for attempt in 1..=BIND_ATTEMPTS {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if e.bind_conflict && attempt < BIND_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("PgBouncer: cannot start again on port {}: {}", self.port, e.message),
            }
        }
    }

    /// SIGKILLs and reaps the process if it runs; whether it did. Never panics.
    fn kill_child(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let running = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let _ = child.wait();
        let pid = child.id();
        poll_until(STOP_DEADLINE, || !process_alive(pid));
        running
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Must not panic: this also runs while a failed test unwinds.
        self.kill_child();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl std::fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish()
    }
}

struct StartError {
    bind_conflict: bool,
    message: String,
}

fn pgbouncer_bin() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("pgbouncer"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"))
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
