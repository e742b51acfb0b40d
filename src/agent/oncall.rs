//! The on-call commands, for `main` to print: `vigil fleet` (every replica's checks in one
//! table, `fleet::table`) and `vigil drain` (this replica out of the Service by hand, asked of the
//! agent on `listen` through `POST` / `DELETE /drain`, `engine::drain`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use crate::config::Config;
use crate::core::url::HttpUrl;
use crate::core::{fmt, text};
use crate::engine::drain;
use crate::fleet::table::{self, TableError};
use crate::net::http::ProbeRequest;
use crate::net::tls::HttpClient;

/// What a command prints and how it exits.
#[derive(Debug)]
pub struct Printed {
    /// For stdout.
    pub report: String,
    /// `true`: exit 0; `false`: exit 1 (a replica not ready; a drain refused).
    pub success: bool,
}

/// A command that could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum OncallError {
    /// A usage or configuration error (exit 2), naming the key or flag.
    #[error("{0}")]
    Usage(String),
    /// Nothing to report (exit 1): the agent did not answer, no HTTP client.
    #[error("{0}")]
    Failed(String),
}

/// `vigil fleet`: the table (`json`: the JSON document), success when every replica is ready.
pub async fn fleet(config: &Config, json: bool) -> Result<Printed, OncallError> {
    let report = match table::gather(config).await {
        Ok(report) => report,
        Err(error @ TableError::NoFleet) => return Err(OncallError::Usage(error.to_string())),
    };
    let text = if json {
        let mut document = serde_json::to_string_pretty(&report.json())
            .map_err(|e| OncallError::Failed(format!("cannot serialize the fleet report: {e}")))?;
        document.push('\n');
        document
    } else {
        report.text(table::WIDTH)
    };
    Ok(Printed {
        report: text,
        success: report.all_ready(),
    })
}

/// What `vigil drain` asks for.
#[derive(Debug, Clone)]
pub enum DrainRequest {
    /// `--for` as written (default 15m) and `--reason`.
    Start {
        lasting: Option<String>,
        reason: Option<String>,
    },
    /// `--cancel`.
    Cancel,
}

/// How long `vigil drain` waits for the agent's answer (it reads only its state).
const AGENT_ANSWERS_WITHIN: Duration = Duration::from_secs(5);

/// `vigil drain`: asks the agent on `listen`; success when it took the request.
pub async fn drain(config: &Config, request: DrainRequest) -> Result<Printed, OncallError> {
    let target = table::own_target(config);
    let (method, path) = match &request {
        DrainRequest::Start { lasting, reason } => {
            let lasting = drain::duration(lasting.as_deref()).map_err(|e| OncallError::Usage(format!("--{e}")))?;
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("for", &fmt::duration(lasting));
            if let Some(reason) = reason {
                query.append_pair("reason", reason);
            }
            (Method::POST, format!("/drain?{}", query.finish()))
        }
        DrainRequest::Cancel => (Method::DELETE, "/drain".to_owned()),
    };
    let url = HttpUrl::parse(&format!("http://{target}{path}")).map_err(OncallError::Failed)?;
    let authorization: Option<(HeaderName, HeaderValue)> = config.diag.token.as_ref().and_then(|token| {
        HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .ok()
            .map(|value| (http::header::AUTHORIZATION, value))
    });
    let client = HttpClient::new().map_err(|e| OncallError::Failed(format!("cannot set up the HTTP client: {e}")))?;
    let mut request = ProbeRequest::new(method, &url, authorization);
    if !target.ip().is_loopback() {
        // `listen` is one address of the pod's: `/drain` answers loopback peers only, so the
        // request leaves from loopback (still inside the pod) to reach it.
        request = request.sent_from(match target {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let response = client
        .probe(&request, AGENT_ANSWERS_WITHIN, AGENT_ANSWERS_WITHIN, 4096)
        .await
        .map_err(|failure| {
            OncallError::Failed(format!(
                "the agent on {target} (listen) did not answer: {}; is `vigil run` running with this configuration?",
                failure.error
            ))
        })?;
    let said = text::one_line_bytes(&response.body, 1024);
    Ok(Printed {
        report: format!("{said}\n"),
        success: response.status == 200,
    })
}
