//! An ephemeral PostgreSQL cluster for one test.
//!
//! [`PgServer::start`] runs `initdb` into a fresh temporary directory and starts the server with
//! `pg_ctl start -w` on a free port of 127.0.0.1, with its unix socket inside the temporary directory.
//! Every server is independent (own directory, port, socket, shared memory), so tests may run in
//! parallel threads. Dropping a [`PgServer`] stops the server (`pg_ctl stop -m immediate`), kills any
//! straggler, and removes the directory, also when the test panicked or the start failed midway.
//!
//! Binaries: `initdb` from `PATH` (symlinks resolved, so the sibling `pg_ctl`, `postgres`, `psql` of the
//! same version are used); when `initdb` is not on `PATH`, the newest `/usr/lib/postgresql/<ver>/bin`
//! (Debian's `postgresql` package). PostgreSQL refuses to run as root: when the tests run as root,
//! `initdb`, `pg_ctl` and thereby `postgres` run as the `postgres` user through
//! `setpriv --reuid=postgres --regid=postgres --init-groups --` (not `runuser`/`su`, which do not
//! forward signals), and the temporary directory (under `/tmp`, which that user can reach) is chowned
//! to it. `psql` runs as the current user over the unix socket (trust authentication).
//!
//! Authentication: `local all all trust` (so `psql` needs no password) and
//! `host all all 127.0.0.1/32 scram-sha-256` (so TCP clients, like vigil, must give the right
//! password: wrong-password tests work); the same two for replication connections, which only a
//! cluster built with [`PgBuilder::replication`] accepts. The superuser is `postgres` with password
//! [`SUPERUSER_PASSWORD`]; create more roles with [`PgServer::create_role`].
//!
//! A streaming standby of a cluster is a [`PgServer`] too, made by `pg_basebackup -R` instead of
//! `initdb` ([`PgBuilder::base_backup_of`]; `support::pg_standby` drives it).
//!
//! Every wait is a bounded poll with a deadline; every child command has a timeout.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{free_port, poll_until};

/// Password of the `postgres` superuser (over TCP; the unix socket trusts everyone).
pub const SUPERUSER_PASSWORD: &str = "vigil-test-superuser-pw";

/// How long `pg_ctl` may take to start or stop the server.
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `initdb`, `psql` and other one-shot commands may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a start is retried when the port was taken in the meantime.
const BIND_ATTEMPTS: usize = 3;

/// Options for a [`PgServer`]; from [`PgServer::builder`].
#[derive(Debug, Clone)]
pub struct PgBuilder {
    max_connections: u32,
    superuser_reserved_connections: Option<u32>,
    settings: Vec<(String, String)>,
    /// A libpq connection string: the data directory is a base backup taken over it
    /// (`pg_basebackup -R`, so the server starts as its streaming standby) instead of `initdb`.
    base_backup: Option<String>,
}

impl PgBuilder {
    /// `max_connections` (default 20).
    pub fn max_connections(mut self, n: u32) -> PgBuilder {
        self.max_connections = n;
        self
    }

    /// `superuser_reserved_connections` (PostgreSQL's default 3 when not set); must be less than
    /// `max_connections`.
    pub fn superuser_reserved_connections(mut self, n: u32) -> PgBuilder {
        self.superuser_reserved_connections = Some(n);
        self
    }

    /// Any other `postgresql.conf` setting, written verbatim as `name = value` after the harness's own
    /// (so it wins). Quote string values yourself: `.setting("log_statement", "'all'")`.
    pub fn setting(mut self, name: &str, value: &str) -> PgBuilder {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// A cluster that can be replicated: `wal_level = replica` and WAL senders (the harness's default
    /// is `wal_level = minimal`, the fastest for throw-away clusters).
    pub fn replication(self) -> PgBuilder {
        self.setting("wal_level", "replica").setting("max_wal_senders", "5")
    }

    /// Instead of `initdb`, `pg_basebackup -R -X stream` from the server that `conninfo` (a libpq
    /// connection string for a role with `REPLICATION`) reaches: the new server starts as its
    /// streaming standby. Give it the primary's settings (`max_connections` may not be lower).
    pub fn base_backup_of(mut self, conninfo: &str) -> PgBuilder {
        self.base_backup = Some(conninfo.to_string());
        self
    }

    /// Creates, configures and starts the cluster; panics with a clear message on failure.
    #[track_caller]
    pub fn start(self) -> PgServer {
        PgServer::start_with(self)
    }
}

/// A running (or deliberately stopped) ephemeral PostgreSQL server.
pub struct PgServer {
    /// `None` only after drop has removed it.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    builder: PgBuilder,
    tools: &'static Tools,
}

impl PgServer {
    /// A server with the default options (see [`PgBuilder`]).
    #[track_caller]
    pub fn start() -> PgServer {
        PgServer::builder().start()
    }

    /// Options: `PgServer::builder().max_connections(5).start()`.
    pub fn builder() -> PgBuilder {
        PgBuilder {
            max_connections: 20,
            superuser_reserved_connections: None,
            settings: Vec::new(),
            base_backup: None,
        }
    }

    #[track_caller]
    fn start_with(builder: PgBuilder) -> PgServer {
        let tools = tools();
        let parent = if tools.as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("vigil-pg-")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| {
                panic!(
                    "PgServer: cannot create a temporary directory in {}: {e}",
                    parent.display()
                )
            });
        let root = dir.path().to_path_buf();
        // From here on, a panic drops `server`, whose Drop stops whatever was started and removes the
        // directory: a failed start never leaks a postgres process.
        let mut server = PgServer {
            dir: Some(dir),
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_path: root.join("postgres.log"),
            root,
            port: 0,
            builder,
            tools,
        };
        match server.builder.base_backup.clone() {
            Some(conninfo) => server.base_backup(&conninfo),
            None => server.init(),
        }
        for attempt in 1..=BIND_ATTEMPTS {
            server.port = free_port();
            server.write_settings();
            match server.try_start() {
                Ok(()) => return server,
                Err(e) if e.bind_conflict && attempt < BIND_ATTEMPTS => continue,
                Err(e) => panic!(
                    "PgServer: cannot start PostgreSQL on port {}: {}",
                    server.port, e.message
                ),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn init(&mut self) {
        let pwfile = self.root.join("pwfile");
        fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n")).expect("PgServer: write pwfile");
        fs::create_dir(&self.socket_dir).expect("PgServer: create socket dir");
        if self.tools.as_postgres {
            for path in [&self.root, &pwfile, &self.socket_dir] {
                chown_postgres(path);
            }
        }
        let mut initdb = self.pg_command("initdb");
        initdb
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = run_bounded(initdb, None, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("PgServer: initdb did not finish: {e}"));
        if !out.status.success() {
            panic!(
                "PgServer: initdb failed ({}):\n{}{}",
                out.status,
                lossy(&out.stdout),
                lossy(&out.stderr)
            );
        }
        let _ = fs::remove_file(&pwfile);

        fs::write(
            self.data_dir.join("pg_hba.conf"),
            "# written by tests/support/postgres.rs\n\
             # TYPE  DATABASE  USER  ADDRESS       METHOD\n\
             local   all          all                 trust\n\
             host    all          all   127.0.0.1/32  scram-sha-256\n\
             local   replication  all                 trust\n\
             host    replication  all   127.0.0.1/32  scram-sha-256\n",
        )
        .expect("PgServer: write pg_hba.conf");
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir.join("postgresql.conf"))
            .expect("PgServer: open postgresql.conf");
        conf.write_all(b"\n# test harness settings (port, sockets, limits), rewritten on every start\ninclude = 'vigil_test.conf'\n")
            .expect("PgServer: append to postgresql.conf");
    }

    /// The data directory from `pg_basebackup -R` (which writes `standby.signal` and
    /// `primary_conninfo`); `postgresql.conf`, its include of `vigil_test.conf` and `pg_hba.conf`
    /// come with the backup, and `vigil_test.conf` is rewritten with this server's port next.
    fn base_backup(&mut self, conninfo: &str) {
        fs::create_dir(&self.socket_dir).expect("PgServer: create socket dir");
        if self.tools.as_postgres {
            for path in [&self.root, &self.socket_dir] {
                chown_postgres(path);
            }
        }
        let mut backup = self.pg_command("pg_basebackup");
        backup
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-d", conninfo]);
        let out = run_bounded(backup, None, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("PgServer: pg_basebackup did not finish: {e}"));
        if !out.status.success() {
            panic!(
                "PgServer: pg_basebackup failed ({}):\n{}{}",
                out.status,
                lossy(&out.stdout),
                lossy(&out.stderr)
            );
        }
    }

    fn write_settings(&self) {
        let b = &self.builder;
        let mut conf = format!(
            "port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket}'\n\
             max_connections = {max}\n\
             shared_buffers = 16MB\n\
             fsync = off\n\
             full_page_writes = off\n\
             wal_level = minimal\n\
             max_wal_senders = 0\n\
             autovacuum = off\n\
             client_connection_check_interval = '100ms'\n\
             logging_collector = off\n\
             password_encryption = 'scram-sha-256'\n",
            port = self.port,
            socket = self.socket_dir.display(),
            max = b.max_connections,
        );
        if let Some(reserved) = b.superuser_reserved_connections {
            conf.push_str(&format!("superuser_reserved_connections = {reserved}\n"));
        }
        for (name, value) in &b.settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        let path = self.data_dir.join("vigil_test.conf");
        fs::write(&path, conf).expect("PgServer: write vigil_test.conf");
        if self.tools.as_postgres {
            chown_postgres(&path);
        }
    }

    /// `pg_ctl start -w`; distinguishes "the port was taken" so the caller can retry.
    fn try_start(&self) -> Result<(), StartError> {
        self.remove_stale_lock_files();
        let log_before = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let mut pg_ctl = self.pg_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t", &PG_CTL_TIMEOUT.as_secs().to_string(), "start"]);
        let result = run_bounded(pg_ctl, None, PG_CTL_TIMEOUT + Duration::from_secs(5));
        let new_log = || {
            let log = fs::read(&self.log_path).unwrap_or_default();
            lossy(log.get(log_before as usize..).unwrap_or_default())
        };
        match result {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => {
                let log = new_log();
                let bind_conflict = log.contains("could not bind") || log.contains("Address already in use");
                // The postmaster may still be coming up (pg_ctl's own timeout) or half-dead: make sure
                // nothing keeps running before a retry or the panic.
                self.kill_everything();
                Err(StartError {
                    bind_conflict,
                    message: format!(
                        "pg_ctl start failed ({}):\n{}{}\n--- server log ---\n{}",
                        out.status,
                        lossy(&out.stdout),
                        lossy(&out.stderr),
                        log
                    ),
                })
            }
            Err(e) => {
                self.kill_everything();
                Err(StartError {
                    bind_conflict: false,
                    message: format!("{e}\n--- server log ---\n{}", new_log()),
                })
            }
        }
    }

    /// A command for a PostgreSQL server binary, as the `postgres` user when we are root.
    fn pg_command(&self, program: &str) -> Command {
        let mut cmd = if self.tools.as_postgres {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
                .arg(self.tools.bin(program));
            cmd
        } else {
            Command::new(self.tools.bin(program))
        };
        // A directory the postgres user can enter (pg_ctl and initdb complain about an unreadable cwd).
        cmd.current_dir(&self.root);
        clean_pg_env(&mut cmd);
        cmd
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.tools.bin("psql"));
        cmd.current_dir(&self.root);
        clean_pg_env(&mut cmd);
        cmd.arg("-X")
            .args(["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db]);
        cmd
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

    /// `postgres://user:password@127.0.0.1:<port>/db` (user and password percent-encoded).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        loopback_url(self.port, user, password, db)
    }

    /// `postgres://postgres:<SUPERUSER_PASSWORD>@127.0.0.1:<port>/postgres`.
    pub fn superuser_url(&self) -> String {
        self.url("postgres", SUPERUSER_PASSWORD, "postgres")
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log file (`pg_ctl -l`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        lossy(&fs::read(&self.log_path).unwrap_or_default())
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists.
    pub fn pid(&self) -> Option<u32> {
        postmaster_pid(&self.data_dir)
    }

    // ----- SQL -----

    /// Runs `sql` (any number of statements, each in its own transaction unless you write BEGIN) as the
    /// superuser over the unix socket in database `postgres`; returns the unaligned, tuples-only output
    /// (`|`-separated columns, one row per line), trimmed. Panics with psql's stderr on failure.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// [`PgServer::psql`] in database `db`.
    #[track_caller]
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.try_psql_db(db, sql)
            .unwrap_or_else(|e| panic!("PgServer: psql failed for {sql:?}:\n{e}"))
    }

    /// [`PgServer::psql`], returning psql's stderr as the error instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_db("postgres", sql)
    }

    /// [`PgServer::psql_db`], returning psql's stderr as the error instead of panicking.
    pub fn try_psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut input = sql.to_string();
        input.push('\n');
        let out = run_bounded(self.psql_command(db), Some(input.into_bytes()), COMMAND_TIMEOUT)?;
        if out.status.success() {
            Ok(lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "psql exited with {}:\n{}{}",
                out.status,
                lossy(&out.stderr),
                lossy(&out.stdout)
            ))
        }
    }

    /// `CREATE ROLE name LOGIN PASSWORD 'password'` (a non-superuser that can connect over TCP).
    #[track_caller]
    pub fn create_role(&self, name: &str, password: &str) {
        self.psql(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident(name),
            literal(password)
        ));
    }

    /// `CREATE DATABASE name OWNER owner`.
    #[track_caller]
    pub fn create_database(&self, name: &str, owner: &str) {
        self.psql(&format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner)));
    }

    /// A role `name` with `password` owning a database `name`; returns its TCP URL.
    #[track_caller]
    pub fn create_user_db(&self, name: &str, password: &str) -> String {
        self.create_role(name, password);
        self.create_database(name, name);
        self.url(name, password, name)
    }

    /// Number of client backends connected now, not counting the psql that asks.
    #[track_caller]
    pub fn client_connections(&self) -> usize {
        let n: usize = self
            .psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
            .parse()
            .expect("PgServer: count(*) is a number");
        n.saturating_sub(1)
    }

    /// Opens a long-lived connection: a `psql` process connected to `url` (a `postgres://` URL; add
    /// `?application_name=x` to name it), kept open until the session is dropped. Returns psql's error
    /// (e.g. `too many clients already`, `password authentication failed`) when it cannot connect.
    pub fn session(&self, url: &str) -> Result<PgSession, String> {
        PgSession::open(self.tools.bin("psql"), &self.root, url)
    }

    /// Opens `n` sessions to `url` (e.g. to saturate `max_connections`); panics if one fails.
    #[track_caller]
    pub fn hold_connections(&self, url: &str, n: usize) -> Vec<PgSession> {
        (0..n)
            .map(|i| {
                self.session(url)
                    .unwrap_or_else(|e| panic!("PgServer: session {} of {n} failed: {e}", i + 1))
            })
            .collect()
    }

    // ----- state and faults -----

    /// A postmaster runs for this data directory: the pid in `postmaster.pid` is a live process (not
    /// a zombie: unlike `pg_ctl status`, this is right just after [`PgServer::kill`]).
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(alive)
    }

    /// Something accepts TCP connections on the port (says nothing about PostgreSQL being ready).
    pub fn is_listening(&self) -> bool {
        TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_ok()
    }

    /// The server accepts new connections (`pg_isready` over TCP exits 0; without `pg_isready`, a TCP
    /// connect plus `psql select 1` over the socket).
    pub fn is_accepting(&self) -> bool {
        match self.tools.find("pg_isready") {
            Some(pg_isready) => {
                let mut cmd = Command::new(pg_isready);
                clean_pg_env(&mut cmd);
                cmd.args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-t",
                    "2",
                    "-U",
                    "postgres",
                ]);
                run_bounded(cmd, None, Duration::from_secs(5))
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            }
            None => self.is_listening() && self.try_psql("SELECT 1").is_ok(),
        }
    }

    /// `pg_ctl stop -m fast`: disconnects clients, then shuts down cleanly. Panics on failure.
    #[track_caller]
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// `pg_ctl stop -m immediate`: no shutdown checkpoint, crash recovery on the next start.
    #[track_caller]
    pub fn stop_immediate(&self) {
        self.pg_ctl_stop("immediate");
    }

    #[track_caller]
    fn pg_ctl_stop(&self, mode: &str) {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-t", &PG_CTL_TIMEOUT.as_secs().to_string(), "stop"]);
        let out = run_bounded(cmd, None, PG_CTL_TIMEOUT + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("PgServer: pg_ctl stop -m {mode}: {e}"));
        if !out.status.success() {
            panic!(
                "PgServer: pg_ctl stop -m {mode} failed ({}):\n{}{}",
                out.status,
                lossy(&out.stdout),
                lossy(&out.stderr)
            );
        }
    }

    /// SIGKILLs the postmaster (a crash), then waits (up to 10 s) until the port refuses connections
    /// and the orphaned backends have exited, so that [`PgServer::start_again`] can run.
    #[track_caller]
    pub fn kill(&self) {
        let pid = self
            .pid()
            .filter(|&p| alive(p))
            .expect("PgServer::kill: no running postmaster");
        let children = children_of(pid);
        send_signal(pid, "KILL");
        super::wait_until(
            Duration::from_secs(10),
            "the killed postmaster's port to refuse connections",
            || !self.is_listening(),
        );
        super::wait_until(
            Duration::from_secs(10),
            "the killed postmaster and its backends to exit",
            || !alive(pid) && children.iter().all(|&c| !alive(c)),
        );
    }

    /// Starts the server again on the same port and data directory after [`stop`](PgServer::stop),
    /// [`stop_immediate`](PgServer::stop_immediate) or [`kill`](PgServer::kill) (stale lock files are
    /// removed). Retries a few times if the port is briefly taken; panics on failure.
    #[track_caller]
    pub fn start_again(&self) {
        for attempt in 1..=BIND_ATTEMPTS {
            match self.try_start() {
                Ok(()) => return,
                Err(e) if e.bind_conflict && attempt < BIND_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "PgServer: cannot start PostgreSQL again on port {}: {}",
                    self.port, e.message
                ),
            }
        }
    }

    /// Stops the server (fast) if it runs, then [`start_again`](PgServer::start_again).
    #[track_caller]
    pub fn restart(&self) {
        if self.is_running() {
            self.stop();
        }
        self.start_again();
    }

    /// Removes `postmaster.pid` and the socket lock file when the pid in them is no longer running
    /// (after a SIGKILL, an unreaped zombie postmaster would otherwise look alive to PostgreSQL).
    fn remove_stale_lock_files(&self) {
        let lock_files = [
            self.data_dir.join("postmaster.pid"),
            self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port)),
        ];
        for lock in lock_files {
            if let Some(pid) = first_line_pid(&lock)
                && !alive(pid)
            {
                let _ = fs::remove_file(&lock);
                if lock.ends_with(format!(".s.PGSQL.{}.lock", self.port)) {
                    let _ = fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{}", self.port)));
                }
            }
        }
    }

    /// SIGKILLs every process of this cluster: the postmaster of `postmaster.pid`, anything whose
    /// command line names the data directory (postmaster, pg_ctl), and their children. Never panics.
    fn kill_everything(&self) {
        let mut pids: Vec<u32> = Vec::new();
        if let Some(pid) = self.pid() {
            pids.push(pid);
        }
        let needle = self.data_dir.to_string_lossy().into_owned();
        pids.extend(processes_with_cmdline(&needle));
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|&p| alive(p) && p != std::process::id());
        let mut all = pids.clone();
        for &p in &pids {
            all.extend(children_of(p));
        }
        if all.is_empty() {
            return;
        }
        for &p in &all {
            send_signal(p, "KILL");
        }
        poll_until(Duration::from_secs(10), || all.iter().all(|&p| !alive(p)));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Must not panic: this also runs while a failed test unwinds.
        if self.is_running() {
            let mut cmd = self.pg_command("pg_ctl");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", "10", "stop"]);
            let _ = run_bounded(cmd, None, Duration::from_secs(15));
        }
        self.kill_everything();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

struct StartError {
    bind_conflict: bool,
    message: String,
}

/// A long-lived client connection: a `psql` process reading SQL from a pipe.
///
/// While idle, the backend is `idle` in `pg_stat_activity`; [`PgSession::send`]`("BEGIN; SELECT 1;")`
/// leaves it `idle in transaction`; `send("SELECT pg_sleep(60);")` makes it an `active` long query.
/// Dropping the session kills psql, which closes the connection.
pub struct PgSession {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    marker: u64,
}

impl PgSession {
    fn open(psql: PathBuf, cwd: &Path, url: &str) -> Result<PgSession, String> {
        let mut cmd = Command::new(psql);
        cmd.current_dir(cwd);
        clean_pg_env(&mut cmd);
        cmd.args(["-X", "-q", "-A", "-t", "-d", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run psql: {e}"))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let mut stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(&mut stdout);
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut reader, &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                if tx.send(line.trim_end_matches('\n').to_string()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut child_stderr = child.stderr.take().expect("piped stderr");
        let stderr_sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = child_stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                stderr_sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut session = PgSession {
            child,
            stdin,
            lines,
            stderr,
            marker: 0,
        };
        // psql reads stdin only once connected: an echoed marker proves the connection is up.
        match session.query_with_timeout("", Duration::from_secs(15)) {
            Ok(_) => Ok(session),
            Err(e) => Err(e),
        }
    }

    /// Sends SQL (or a psql meta-command) without waiting for its result. End statements with `;`.
    #[track_caller]
    pub fn send(&mut self, sql: &str) {
        let stdin = self.stdin.as_mut().expect("PgSession: stdin is open");
        stdin
            .write_all(format!("{sql}\n").as_bytes())
            .expect("PgSession: write to psql");
        stdin.flush().expect("PgSession: flush psql stdin");
    }

    /// Runs SQL and returns its output (unaligned, tuples only), waiting up to 30 s.
    #[track_caller]
    pub fn query(&mut self, sql: &str) -> String {
        self.query_with_timeout(sql, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("PgSession: {e}"))
    }

    fn query_with_timeout(&mut self, sql: &str, timeout: Duration) -> Result<String, String> {
        self.marker += 1;
        let marker = format!("__vigil_test_marker_{}__", self.marker);
        let Some(stdin) = self.stdin.as_mut() else {
            return Err("stdin closed".into());
        };
        let input = if sql.is_empty() {
            format!("\\echo {marker}\n")
        } else {
            format!("{sql}\n\\echo {marker}\n")
        };
        if stdin.write_all(input.as_bytes()).and_then(|_| stdin.flush()).is_err() {
            return Err(self.failure("psql exited"));
        }
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == marker => return Ok(out.join("\n")),
                Ok(line) => out.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no answer from psql within {timeout:?}")));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.failure("psql exited")),
            }
        }
    }

    fn failure(&mut self, what: &str) -> String {
        // Give psql a moment to write its error and exit.
        poll_until(Duration::from_secs(2), || matches!(self.child.try_wait(), Ok(Some(_))));
        std::thread::sleep(Duration::from_millis(20));
        format!("{what}: {}", self.stderr().trim())
    }

    /// What psql wrote to stderr so far (errors of statements sent with [`PgSession::send`]).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The server process id of this connection (`pg_backend_pid()`).
    #[track_caller]
    pub fn backend_pid(&mut self) -> u32 {
        self.query("SELECT pg_backend_pid();")
            .trim()
            .parse()
            .expect("PgSession: pg_backend_pid is a number")
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- binaries -----

struct Tools {
    bin_dir: PathBuf,
    as_postgres: bool,
}

impl Tools {
    /// `bin_dir/<name>` when it exists there, else `<name>` (looked up on PATH when run).
    fn bin(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        if path.exists() { path } else { PathBuf::from(name) }
    }

    fn find(&self, name: &str) -> Option<PathBuf> {
        let path = self.bin_dir.join(name);
        if path.exists() { Some(path) } else { which(name) }
    }
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let bin_dir = match which("initdb") {
            Some(initdb) => {
                let real = fs::canonicalize(&initdb).unwrap_or(initdb);
                real.parent().map(Path::to_path_buf).unwrap_or_default()
            }
            None => newest_debian_bin_dir().unwrap_or_else(|| {
                panic!(
                    "PgServer: PostgreSQL server binaries not found: no `initdb` on PATH and no \
                     /usr/lib/postgresql/<version>/bin/initdb (install Debian's `postgresql` package)"
                )
            }),
        };
        let as_postgres = running_as_root();
        if as_postgres && uid_of("postgres").is_none() {
            panic!("PgServer: running as root, but there is no `postgres` user to run the server as");
        }
        if as_postgres && which("setpriv").is_none() {
            panic!("PgServer: running as root needs `setpriv` (util-linux) to run PostgreSQL as `postgres`");
        }
        Tools { bin_dir, as_postgres }
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            is_executable(&bin.join("initdb")).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Uid: real effective saved fs
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
        })
}

fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    out.status
        .success()
        .then(|| lossy(&out.stdout).trim().parse().ok())
        .flatten()
}

fn chown_postgres(path: &Path) {
    let out = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("PgServer: cannot run chown: {e}"));
    if !out.status.success() {
        panic!(
            "PgServer: chown postgres {} failed: {}",
            path.display(),
            lossy(&out.stderr)
        );
    }
}

// ----- for the other support modules (PgBouncer, standbys, client certificates) -----

/// The PostgreSQL client or server binary `name` (`psql`, `pg_basebackup`, …) of the version the
/// harness uses.
pub(super) fn pg_bin(name: &str) -> PathBuf {
    tools().bin(name)
}

/// Whether the harness runs servers as the `postgres` user (the tests run as root).
pub(super) fn runs_as_postgres() -> bool {
    tools().as_postgres
}

/// `program` as the `postgres` user when the tests run as root (through `setpriv`, which execs it:
/// the child's pid is the program's), else as it is; with a clean libpq environment.
pub(super) fn server_command(program: &Path) -> Command {
    let mut cmd = if runs_as_postgres() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    };
    clean_pg_env(&mut cmd);
    cmd
}

/// Makes `path` the `postgres` user's when the harness runs servers as that user.
pub(super) fn give_to_postgres(path: &Path) {
    if runs_as_postgres() {
        chown_postgres(path);
    }
}

/// `psql -X -q -A -t -v ON_ERROR_STOP=1 -d <conninfo> -c <sql>` as the current user, bounded in
/// time; psql's stderr as the error.
pub(super) fn psql_conninfo(conninfo: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    clean_pg_env(&mut cmd);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        sql,
    ]);
    let out = run_bounded(cmd, None, COMMAND_TIMEOUT)?;
    if out.status.success() {
        Ok(lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("psql exited with {}:\n{}", out.status, lossy(&out.stderr)))
    }
}

/// [`run_bounded`] for the other support modules.
pub(super) fn run_command(cmd: Command, timeout: Duration) -> Result<Output, String> {
    run_bounded(cmd, None, timeout)
}

/// [`alive`] for the other support modules.
pub(super) fn process_alive(pid: u32) -> bool {
    alive(pid)
}

/// Keeps the parent's libpq environment (PGHOST, PGPASSWORD, …) from steering the harness.
pub(super) fn clean_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("PG") {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env("LC_ALL", "C").env("PGCONNECT_TIMEOUT", "10");
}

// ----- processes -----

/// Runs `cmd` to completion with piped output, killing it after `timeout`.
fn run_bounded(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Result<Output, String> {
    let program = format!("{:?}", cmd.get_program());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    // A grandchild that inherited the pipes must not make us wait forever.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The process exists and is not a zombie (a killed postmaster may stay unreaped).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

fn proc_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Direct and indirect children of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = proc_pids()
        .into_iter()
        .filter_map(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

fn processes_with_cmdline(needle: &str) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|&p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    first_line_pid(&data_dir.join("postmaster.pid"))
}

fn first_line_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

// ----- small helpers -----

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `postgres://user:password@127.0.0.1:<port>/db`, user, password and database percent-encoded.
pub(super) fn loopback_url(port: u16, user: &str, password: &str, db: &str) -> String {
    format!(
        "postgres://{}:{}@127.0.0.1:{port}/{}",
        encode(user),
        encode(password),
        encode(db)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A quoted SQL identifier.
pub(super) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A quoted SQL string literal.
pub(super) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
