//! A real streaming standby of a test cluster: `pg_basebackup -R` from the primary over TCP as a
//! replication role, started on its own free port, streaming until the primary's
//! `pg_stat_replication` says so.
//!
//! ```ignore
//! let primary = PgServer::builder().replication().start();
//! let standby = primary.start_standby();      // in recovery, streaming
//! standby.pause_replay();                      // received WAL piles up unreplayed: replay lag
//! standby.promote();                           // a primary of its own
//! ```
//!
//! Both are [`PgServer`]s: stop, kill, `psql` and drop work on the standby as on any cluster.

use std::time::Duration;

use super::postgres::{PgServer, literal};
use super::{poll_until, wait_until};

/// The role the standby replicates as.
pub const REPLICATION_ROLE: &str = "replicator";
/// Its password (the standby's `primary_conninfo` holds it, as `pg_basebackup -R` writes it).
pub const REPLICATION_PASSWORD: &str = "vigil-test-replication-pw";

/// How long a standby may take to come up and stream, or to catch up.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(30);

/// Streaming replication on [`PgServer`]s.
pub trait Replication {
    /// On a primary started with [`PgBuilder::replication`](super::postgres::PgBuilder::replication):
    /// creates the replication role (once), takes a base backup with `pg_basebackup -R -X stream`,
    /// starts it as a hot standby on a free port of 127.0.0.1 (same `max_connections`), and waits
    /// until it streams. Panics with what went wrong.
    fn start_standby(&self) -> PgServer;

    /// On a primary: waits until `n` standbys are `streaming` in `pg_stat_replication`.
    fn wait_streaming(&self, n: usize);

    /// `pg_is_in_recovery()`.
    fn in_recovery(&self) -> bool;

    /// On a standby: `pg_promote()`, then waits until it is out of recovery.
    fn promote(&self);

    /// On a standby: stops replaying (it keeps receiving): `pg_wal_replay_pause()`, waited for.
    fn pause_replay(&self);

    /// On a standby: replays again (`pg_wal_replay_resume()`).
    fn resume_replay(&self);

    /// On a standby: waits until WAL has been received that is not yet replayed (after a write on
    /// the primary while replay is paused).
    fn wait_received_unreplayed(&self);

    /// On a standby: waits until it has replayed everything `primary` has written so far.
    fn wait_caught_up(&self, primary: &PgServer);
}

impl Replication for PgServer {
    #[track_caller]
    fn start_standby(&self) -> PgServer {
        let wal_level = self.psql("SHOW wal_level");
        assert!(
            wal_level == "replica" || wal_level == "logical",
            "start_standby: the primary has wal_level = {wal_level}; start it with PgServer::builder().replication()"
        );
        self.psql(&format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {role}) THEN \
                 CREATE ROLE {REPLICATION_ROLE} REPLICATION LOGIN PASSWORD {password}; \
               END IF; \
             END $$",
            role = literal(REPLICATION_ROLE),
            password = literal(REPLICATION_PASSWORD),
        ));
        let max_connections: u32 = self.psql("SHOW max_connections").parse().expect("max_connections");
        let reserved: u32 = self
            .psql("SHOW superuser_reserved_connections")
            .parse()
            .expect("superuser_reserved_connections");
        let conninfo = format!(
            "host=127.0.0.1 port={} user={REPLICATION_ROLE} password={REPLICATION_PASSWORD} connect_timeout=10",
            self.port()
        );
        let before: usize = self
            .psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .parse()
            .expect("count");
        let standby = PgServer::builder()
            .max_connections(max_connections)
            .superuser_reserved_connections(reserved)
            .replication()
            .setting("hot_standby", "on")
            .setting("cluster_name", "'vigil_test_standby'")
            .base_backup_of(&conninfo)
            .start();
        assert!(
            standby.in_recovery(),
            "start_standby: the base backup did not start in recovery (no standby.signal?)"
        );
        self.wait_streaming(before + 1);
        wait_until(REPLICATION_DEADLINE, "the standby's WAL receiver to stream", || {
            standby.psql("SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')") == "streaming"
        });
        standby
    }

    #[track_caller]
    fn wait_streaming(&self, n: usize) {
        let mut last = String::new();
        let streaming = poll_until(REPLICATION_DEADLINE, || {
            last = self.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'");
            last.parse::<usize>().is_ok_and(|count| count >= n)
        });
        assert!(
            streaming,
            "{n} standby(s) not streaming within {REPLICATION_DEADLINE:?} ({last} are); pg_stat_replication: {}\n--- primary log ---\n{}",
            self.psql("SELECT application_name, state FROM pg_stat_replication"),
            self.log()
        );
    }

    #[track_caller]
    fn in_recovery(&self) -> bool {
        self.psql("SELECT pg_is_in_recovery()") == "t"
    }

    #[track_caller]
    fn promote(&self) {
        assert_eq!(
            self.psql(&format!("SELECT pg_promote(true, {})", REPLICATION_DEADLINE.as_secs())),
            "t",
            "pg_promote did not finish"
        );
        wait_until(REPLICATION_DEADLINE, "the promoted standby to leave recovery", || {
            !self.in_recovery()
        });
    }

    #[track_caller]
    fn pause_replay(&self) {
        self.psql("SELECT pg_wal_replay_pause()");
        wait_until(REPLICATION_DEADLINE, "replay to pause", || {
            self.psql("SELECT pg_get_wal_replay_pause_state()") == "paused"
        });
    }

    #[track_caller]
    fn resume_replay(&self) {
        self.psql("SELECT pg_wal_replay_resume()");
        wait_until(REPLICATION_DEADLINE, "replay to resume", || {
            self.psql("SELECT pg_get_wal_replay_pause_state()") == "not paused"
        });
    }

    #[track_caller]
    fn wait_received_unreplayed(&self) {
        wait_until(REPLICATION_DEADLINE, "WAL received but not replayed", || {
            self.psql("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()") == "t"
        });
    }

    #[track_caller]
    fn wait_caught_up(&self, primary: &PgServer) {
        let written = primary.psql("SELECT pg_current_wal_lsn()");
        wait_until(
            REPLICATION_DEADLINE,
            "the standby to replay what the primary wrote",
            || self.psql(&format!("SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn")) == "t",
        );
    }
}
