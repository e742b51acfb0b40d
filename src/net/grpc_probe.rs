//! The one request a gRPC health check makes (the protocol itself is [`super::grpc`]'s), over
//! the one HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use super::attempt::{Phases, ProbeFailure, ProbeResponse, cut_at};
use super::connect::connect;
use super::grpc::{HEALTH_CHECK_PATH, encode_request, interpret};
use super::http::{BODY_LIMIT, USER_AGENT, send};
use super::tls::{Alpn, HttpClient, chose_h2, not_http2};

impl HttpClient {
    /// One `grpc.health.v1.Health/Check` of `service` at `host:port` (or at `at`, one of its
    /// addresses) over a fresh HTTP/2 connection: h2c, or with `tls` TLS offering only h2 by
    /// ALPN (a server that does not choose it fails). Phases as for HTTP; the answer in
    /// [`ProbeResponse::grpc`], its HTTP status in `status`. A response that is no health
    /// answer fails with [`ProbeError::Grpc`]. Cut at `deadline` naming `configured`; the server
    /// is told the deadline too (`grpc-timeout`).
    pub async fn grpc_health(
        &self,
        (host, port): (&str, u16),
        at: Option<SocketAddr>,
        tls: bool,
        service: &str,
        deadline: Duration,
        configured: Duration,
    ) -> Result<ProbeResponse, ProbeFailure> {
        cut_at(at, deadline, configured, async |progress, started| {
            let authority = match host.contains(':') {
                true => format!("[{host}]:{port}"),
                false => format!("{host}:{port}"),
            };
            let scheme = if tls { "https" } else { "http" };
            let outgoing = Request::builder()
                .method(Method::POST)
                .uri(format!("{scheme}://{authority}{}", HEALTH_CHECK_PATH))
                .header(http::header::USER_AGENT, USER_AGENT)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .header(
                    "grpc-timeout",
                    format!("{}m", deadline.as_millis().clamp(1, 99_999_999)),
                )
                .body(Full::new(encode_request(service)))?;
            let (tcp, addresses) = connect(host, port, progress).await?;
            let answer = if tls {
                let stream = self.handshake(host, tcp, Alpn::Http2, progress).await?;
                if !chose_h2(&stream) {
                    return Err(not_http2(&stream));
                }
                send(Box::new(stream), true, outgoing, BODY_LIMIT).await?
            } else {
                send(Box::new(tcp), true, outgoing, BODY_LIMIT).await?
            };
            progress.phases.first_byte = Some(answer.first_byte);
            let health = interpret(
                answer.status,
                &answer.headers,
                &answer.body,
                answer.truncated,
                answer.trailers.as_ref(),
                BODY_LIMIT,
            )?;
            Ok(ProbeResponse {
                status: answer.status,
                phases: Phases {
                    total: started.elapsed(),
                    ..progress.phases
                },
                addresses,
                answered: progress.answered,
                cert_not_after: progress.cert_not_after,
                body: Bytes::new(),
                truncated: answer.truncated,
                date: None,
                version: Some(answer.version),
                grpc: Some(health),
                retry_after: None,
            })
        })
        .await
    }
}
