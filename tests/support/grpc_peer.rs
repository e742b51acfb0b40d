//! The real gRPC health server of the tests, nobody here wrote: Python's grpcio with
//! grpcio-health-checking's `HealthServicer` (`tests/peers/grpc_health.py`), on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the Python server has to start (importing grpcio takes a few hundred ms).
const PEER_START: Duration = Duration::from_secs(20);

/// The grpcio health server, started for one test; killed on drop (it also exits when its
/// stdin closes).
pub struct GrpcPeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub port: u16,
}

impl GrpcPeer {
    /// `args`: `--no-health`, `--cert F --key F`, `--client-ca F` (see the script).
    pub fn start(args: &[&str]) -> GrpcPeer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/grpc_health.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 tests/peers/grpc_health.py (grpcio and grpcio-health-checking: .ci/deps.sh)");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = child.stdout.take().expect("peer stdout");
        let (send, lines) = mpsc::channel();
        // Read on a thread, so that every wait below has a deadline.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        let mut peer = GrpcPeer {
            child,
            stdin,
            lines,
            port: 0,
        };
        let ready = peer.next_line(PEER_START);
        peer.port = ready
            .strip_prefix("READY ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the gRPC peer said {ready:?} instead of READY <port>"));
        peer
    }

    #[track_caller]
    fn next_line(&self, deadline: Duration) -> String {
        self.lines
            .recv_timeout(deadline)
            .unwrap_or_else(|e| panic!("no line from the gRPC peer within {deadline:?}: {e}"))
    }

    /// Sets `service`'s serving status and waits until the server has taken it.
    pub fn set(&mut self, service: &str, status: &str) {
        writeln!(self.stdin, "set {service} {status}").expect("write to the gRPC peer");
        self.stdin.flush().expect("flush to the gRPC peer");
        assert_eq!(self.next_line(Duration::from_secs(5)), "OK");
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for GrpcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
