//! The check against kernel tables written here: what warns, when, and what is exported.

use std::path::Path;

use super::*;
use crate::core::outcome::Status;
use crate::metrics::Metrics;

const POSTGRES: u16 = 5432;
const GATEWAY: u16 = 8080;

/// One line of `/proc/net/tcp` (127.0.0.1 both ends) as the kernel prints it.
fn line(slot: usize, local: u16, remote: u16, state: u8, rx_queue: u32) -> String {
    format!(
        "{slot:4}: 0100007F:{local:04X} 0100007F:{remote:04X} {state:02X} 00000000:{rx_queue:08X} 00:00000000 00000000  1000        0 {} 1 0000000000000000 20 4 30 10 -1\n",
        40_000 + slot
    )
}

/// The kernel's states by code.
const ESTABLISHED: u8 = 0x01;
const SYN_SENT: u8 = 0x02;
const CLOSE_WAIT: u8 = 0x08;
const LISTEN: u8 = 0x0A;

/// Writes a namespace's tables under `root`: `(state, count)` connections to postgres, a
/// gateway listener with `queue` waiting, and `overflows` in netstat (`None`: no netstat).
fn write(root: &Path, to_postgres: &[(u8, usize)], queue: Option<u32>, overflows: Option<u64>) {
    let mut table = String::from(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
    );
    let mut slot = 0;
    for (state, count) in to_postgres {
        for _ in 0..*count {
            table.push_str(&line(slot, 50_000 + slot as u16, POSTGRES, *state, 0));
            slot += 1;
        }
    }
    if let Some(queue) = queue {
        table.push_str(&line(slot, GATEWAY, 0, LISTEN, queue));
    }
    std::fs::write(root.join("tcp"), table).unwrap();
    match overflows {
        Some(n) => std::fs::write(
            root.join("netstat"),
            format!(
                "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 {n} {n}\nIpExt: InNoRoutes\nIpExt: 0\n"
            ),
        )
        .unwrap(),
        None => {
            let _ = std::fs::remove_file(root.join("netstat"));
        }
    }
}

fn check(root: &Path, close_wait_warn: u64) -> (SocketsCheck, Metrics) {
    let metrics = Metrics::new().unwrap();
    let config = Sockets {
        ports: Some(vec![POSTGRES]),
        listen_ports: vec![GATEWAY, 9090],
        close_wait_warn,
    };
    let series = SocketsMetrics::register(&metrics, "sockets").unwrap();
    (SocketsCheck::new(&config, root, series), metrics)
}

#[tokio::test]
async fn close_wait_warns_at_the_threshold_naming_count_and_port() {
    let root = tempfile::tempdir().unwrap();
    let (mut check, _) = check(root.path(), 3);
    write(root.path(), &[(ESTABLISHED, 4), (CLOSE_WAIT, 2)], Some(0), Some(7));
    assert_eq!(check.run_once().await.status, Status::Pass, "below the threshold");
    write(root.path(), &[(ESTABLISHED, 3), (CLOSE_WAIT, 3)], Some(0), Some(7));
    let outcome = check.run_once().await;
    assert_eq!(outcome.status, Status::Warn);
    assert!(
        outcome
            .reason
            .starts_with("3 CLOSE_WAIT connections to port 5432 (warn at 3)"),
        "{}",
        outcome.reason
    );
    let figure = |name: &str| {
        outcome
            .observations
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.value.clone())
    };
    assert_eq!(figure("close_wait"), Some(crate::core::outcome::Value::Number(3.0)));
}

#[tokio::test]
async fn syn_sent_warns_only_when_seen_in_two_runs_running() {
    let root = tempfile::tempdir().unwrap();
    let (mut check, _) = check(root.path(), 50);
    write(root.path(), &[(SYN_SENT, 2)], None, Some(0));
    assert_eq!(check.run_once().await.status, Status::Pass, "one sight is not stuck");
    let outcome = check.run_once().await;
    assert_eq!(outcome.status, Status::Warn);
    assert_eq!(
        outcome.reason,
        "2 connections to port 5432 stuck in SYN_SENT over two runs: port 5432 is unreachable from the pod"
    );
    write(root.path(), &[(ESTABLISHED, 1)], None, Some(0));
    assert_eq!(check.run_once().await.status, Status::Pass);
    write(root.path(), &[(SYN_SENT, 1)], None, Some(0));
    assert_eq!(check.run_once().await.status, Status::Pass, "a new connect, seen once");
}

#[tokio::test]
async fn overflows_warn_while_they_rise_and_the_counter_appears_once_read() {
    let root = tempfile::tempdir().unwrap();
    let (mut check, metrics) = check(root.path(), 50);
    assert!(
        !metrics.render(&[]).contains("vigil_pod_tcp_listen_overflows_total"),
        "no counter before the kernel's value is known"
    );
    write(root.path(), &[(ESTABLISHED, 1)], Some(0), Some(761));
    assert_eq!(
        check.run_once().await.status,
        Status::Pass,
        "the first value is no rise"
    );
    let exposition = metrics.render(&[]);
    assert!(
        exposition.contains("# TYPE vigil_pod_tcp_listen_overflows_total counter"),
        "{exposition}"
    );
    assert!(
        exposition.contains("vigil_pod_tcp_listen_overflows_total 761"),
        "{exposition}"
    );
    assert!(
        exposition.contains("vigil_pod_tcp_listen_queue{port=\"8080\"} 0"),
        "{exposition}"
    );
    assert!(
        !exposition.contains("port=\"9090\""),
        "nothing listens on 9090: no series\n{exposition}"
    );
    assert!(exposition.contains("vigil_pod_tcp_connections{port=\"5432\",state=\"established\"} 1"));
    assert!(exposition.contains("vigil_pod_tcp_connections{port=\"5432\",state=\"close_wait\"} 0"));
    assert!(!exposition.contains("state=\"listen\""), "{exposition}");

    write(root.path(), &[(ESTABLISHED, 1)], Some(2), Some(766));
    let outcome = check.run_once().await;
    assert_eq!(outcome.status, Status::Warn);
    assert_eq!(
        outcome.reason,
        "listen overflows rising: 5 connections dropped at a full accept queue since the last run; port 8080: 2 waiting to be accepted"
    );
    assert!(metrics.render(&[]).contains("vigil_pod_tcp_listen_overflows_total 766"));
    assert_eq!(check.run_once().await.status, Status::Pass, "no longer rising");

    // netstat unreadable for a run: no warning, the counter stays, and the next rise is
    // measured from the last value read.
    write(root.path(), &[(ESTABLISHED, 1)], Some(0), None);
    assert_eq!(check.run_once().await.status, Status::Pass);
    assert!(metrics.render(&[]).contains("vigil_pod_tcp_listen_overflows_total 766"));
    write(root.path(), &[(ESTABLISHED, 1)], Some(0), Some(767));
    assert_eq!(check.run_once().await.status, Status::Warn);
}

#[tokio::test]
async fn an_absent_tcp6_is_no_error_and_an_absent_tcp_fails() {
    let root = tempfile::tempdir().unwrap();
    let (mut check, metrics) = check(root.path(), 50);
    write(root.path(), &[(ESTABLISHED, 2)], None, Some(0));
    assert_eq!(check.run_once().await.status, Status::Pass);
    std::fs::write(
        root.path().join("tcp6"),
        "  sl  local_address                         remote_address                        st\n",
    )
    .unwrap();
    assert_eq!(check.run_once().await.status, Status::Pass);
    std::fs::remove_file(root.path().join("tcp")).unwrap();
    let outcome = check.run_once().await;
    assert_eq!(outcome.status, Status::Fail);
    assert!(outcome.reason.starts_with("cannot read "), "{}", outcome.reason);
    assert!(
        !metrics.render(&[]).contains("vigil_pod_tcp_connections"),
        "unknown counts are not shown as the last ones"
    );
}
