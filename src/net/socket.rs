//! `tcp://` and `tls://` upstreams: a connection (and a TLS handshake, whose certificate is read)
//! per run, then closed. Nothing is sent.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::attempt::{Phases, ProbeFailure, ProbeResponse, cut_at};
use super::connect::connect;
use super::tls::{Alpn, HttpClient};

impl HttpClient {
    /// A `tcp://` or `tls://` upstream: a connection (and with `tls` a handshake), then closed.
    /// Phases as for HTTP (no first byte); cut at `deadline` naming `configured`.
    pub async fn connect_only(
        &self,
        (host, port): (&str, u16),
        at: Option<SocketAddr>,
        tls: bool,
        deadline: Duration,
        configured: Duration,
    ) -> Result<ProbeResponse, ProbeFailure> {
        cut_at(at, deadline, configured, async |progress, started| {
            let (tcp, addresses) = connect(host, port, progress).await?;
            if tls {
                drop(self.handshake(host, tcp, Alpn::None, progress).await?);
            }
            Ok(ProbeResponse {
                status: 0,
                phases: Phases {
                    total: started.elapsed(),
                    ..progress.phases
                },
                addresses,
                answered: progress.answered,
                cert_not_after: progress.cert_not_after,
                body: Bytes::new(),
                truncated: false,
                date: None,
                version: None,
                grpc: None,
                retry_after: None,
            })
        })
        .await
    }
}
