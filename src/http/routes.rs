//! The endpoints. Each reads the state and answers; none does I/O on a dependency.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use tokio::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::value::RawValue;
use tokio::runtime::Handle;

use crate::core::fmt;
use crate::core::outcome::Status;
use crate::engine::drain::{self, Drain};
use crate::engine::state::State;
use crate::fleet::Fleet;
use crate::http::diag_token::DiagToken;
use crate::http::render::{self, DiagInput, Snapshot};
use crate::metrics::Metrics;

/// What the endpoints read.
pub struct App {
    pub state: Arc<State>,
    pub metrics: Metrics,
    pub diag_token: Arc<DiagToken>,
    /// The effective configuration with secrets redacted, rendered at start and at each reload.
    pub config: RwLock<Arc<RawValue>>,
    /// `serviceId` in `/diag`: the pod name where Kubernetes sets `HOSTNAME`.
    pub service_id: String,
    /// Where the check loops run, for `/diag`'s task count.
    pub checks_runtime: Option<Handle>,
    /// `[fleet]`: its decisions, for the `/readyz` lines of held checks and `/diag`.
    pub fleet: Option<Arc<Fleet>>,
    /// `POST` / `DELETE /drain`: this replica out of the Service by hand.
    pub drain: Arc<Drain>,
}

impl App {
    /// The fleet as `/readyz` and `/diag` show it, with the checks held in `readiness`.
    fn fleet(&self, held: &[String]) -> Option<Snapshot> {
        self.fleet.as_ref().map(|fleet| Snapshot::of(&fleet.view(), held))
    }
}

type Body = Full<Bytes>;

const TEXT: &str = "text/plain; charset=utf-8";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";
const HEALTH_JSON: &str = "application/health+json";

const INDEX: &str = "vigil: health of the api-gateway's dependencies\n\
\n\
/livez             200 while vigil's own check loops run on schedule\n\
/readyz            200 when no critical check fails (?verbose, ?exclude=NAME, /readyz/NAME)\n\
/metrics           Prometheus metrics\n\
/diag              everything vigil knows, for a person on call (?format=json)\n\
/drain             POST ?for=15m&reason=TEXT takes this replica out of the Service by hand, DELETE puts it back (loopback only)\n";

/// Answers one request from `peer`.
pub fn handle<B>(app: &App, request: &Request<B>, peer: SocketAddr) -> Response<Body> {
    let path = request.uri().path();
    let endpoint = match path {
        "/" => Endpoint::Index,
        "/livez" => Endpoint::Livez,
        "/readyz" => Endpoint::Readyz,
        "/metrics" => Endpoint::Metrics,
        "/diag" => Endpoint::Diag,
        "/drain" => return drain_endpoint(app, request, peer),
        _ => match path.strip_prefix("/readyz/") {
            Some(name) if !name.is_empty() => Endpoint::ReadyzCheck(decode_segment(name)),
            _ => return text(StatusCode::NOT_FOUND, format!("404 page not found: {path}\n")),
        },
    };
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed: use GET or HEAD\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    note_kubelet(app, request, &endpoint);

    let trusted = is_trusted(app, request, peer);
    let query = request.uri().query().unwrap_or("");
    let response = match endpoint {
        Endpoint::Index => text(StatusCode::OK, INDEX),
        Endpoint::Livez => livez(app, query),
        Endpoint::Readyz => readyz(app, query, trusted),
        Endpoint::ReadyzCheck(name) => readyz_check(app, &name, trusted),
        Endpoint::Metrics => metrics(app),
        Endpoint::Diag if !trusted => text(
            StatusCode::FORBIDDEN,
            "403 forbidden: /diag is open to loopback peers and to `Authorization: Bearer <diag token>`\n",
        ),
        Endpoint::Diag => diag(app, request, query),
    };
    if method == Method::HEAD {
        without_body(response)
    } else {
        response
    }
}

enum Endpoint<'a> {
    Index,
    Livez,
    Readyz,
    ReadyzCheck(Cow<'a, str>),
    Metrics,
    Diag,
}

impl Endpoint<'_> {
    fn label(&self) -> &'static str {
        match self {
            Endpoint::Index => "/",
            Endpoint::Livez => "/livez",
            Endpoint::Readyz | Endpoint::ReadyzCheck(_) => "/readyz",
            Endpoint::Metrics => "/metrics",
            Endpoint::Diag => "/diag",
        }
    }
}

/// `/drain`: `POST` takes this replica out of the Service by hand (`?for=15m&reason=TEXT`),
/// `DELETE` puts it back. Only from loopback (a person with `kubectl exec`, `vigil drain`) and,
/// when a diag token is configured, only with it: a drain empties the Service of this replica,
/// so nothing from outside the pod may ask for it, whatever token it holds.
fn drain_endpoint<B>(app: &App, request: &Request<B>, peer: SocketAddr) -> Response<Body> {
    let method = request.method();
    if method != Method::POST && method != Method::DELETE {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed: POST /drain?for=15m&reason=TEXT takes this replica out, DELETE /drain puts it back\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
        return response;
    }
    if !peer.ip().to_canonical().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            "403 forbidden: /drain answers loopback peers only (vigil drain, from inside the pod)\n",
        );
    }
    if app.diag_token.is_set() && !has_token(app, request) {
        return text(
            StatusCode::FORBIDDEN,
            "403 forbidden: /drain needs `Authorization: Bearer <diag token>` when a diag token is configured (vigil drain sends it)\n",
        );
    }
    let by = format!("{method} /drain from {peer}");
    if method == Method::DELETE {
        return match app.drain.cancel(&by) {
            Some(ended) => text(
                StatusCode::OK,
                format!(
                    "back in the Service: the drain ({}) is cancelled; /readyz answers from the checks again\n",
                    ended.describe()
                ),
            ),
            None => text(StatusCode::OK, "not drained: nothing to cancel\n"),
        };
    }
    let query = request.uri().query().unwrap_or("");
    let lasting = match drain::duration(params(query, "for").last().as_deref()) {
        Ok(lasting) => lasting,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("400 bad request: {error}\n")),
    };
    let reason = params(query, "reason").last();
    let drained = app.drain.start(lasting, reason.as_deref(), &by);
    text(
        StatusCode::OK,
        format!(
            "drained for {}: /readyz answers 503 ({}); /livez, /metrics, /diag and every check go on; DELETE /drain or `vigil drain --cancel` ends it\n",
            fmt::duration(lasting),
            drained.describe()
        ),
    )
}

fn livez(app: &App, query: &str) -> Response<Body> {
    let stalled = app.state.stalled_loops(Instant::now());
    if stalled.is_empty() {
        let body = if has_param(query, "verbose") {
            "[+]check loops ok\nlivez check passed\n"
        } else {
            "ok\n"
        };
        return text(StatusCode::OK, body);
    }
    let mut body = String::new();
    for name in stalled {
        body.push_str(&format!("[-]loop:{name} failed: not running on schedule\n"));
    }
    body.push_str("livez check failed\n");
    text(StatusCode::SERVICE_UNAVAILABLE, body)
}

fn readyz(app: &App, query: &str, trusted: bool) -> Response<Body> {
    let excluded: Vec<Cow<'_, str>> = params(query, "exclude").collect();
    let excluded: Vec<&str> = excluded.iter().map(|c| c.as_ref()).collect();
    let now = Instant::now();
    let verbose = has_param(query, "verbose");
    if !verbose && app.state.is_ready(now, &excluded) {
        return text(StatusCode::OK, "ok\n");
    }
    let readiness = app.state.readiness(now, &excluded);
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let fleet = app.fleet(&readiness.held);
    text(
        status,
        render::readyz_verbose(&readiness, fleet.as_ref(), &excluded, trusted),
    )
}

fn readyz_check(app: &App, name: &str, trusted: bool) -> Response<Body> {
    let Some(slot) = app.state.slot(name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("404 no check named {name:?} is configured\n"),
        );
    };
    let view = slot.view(Instant::now());
    let status = if view.status == Some(Status::Fail) || view.status.is_none() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    text(status, render::single_check(&view, trusted))
}

fn metrics(app: &App) -> Response<Body> {
    let now = Instant::now();
    let (ready, statuses) = app.state.statuses(now);
    app.metrics.ready.set(i64::from(ready));
    app.metrics.drained.set(i64::from(app.state.drained(now).is_some()));
    respond(StatusCode::OK, METRICS, app.metrics.render(&statuses).into_bytes())
}

fn diag(app: &App, request: &Request<impl Sized>, query: &str) -> Response<Body> {
    let config = Arc::clone(&app.config.read().unwrap_or_else(PoisonError::into_inner));
    let readiness = app.state.readiness(Instant::now(), &[]);
    let transitions = app.state.transitions();
    let kubelet_probes = app.state.kubelet_probes();
    let fleet = app.fleet(&readiness.held);
    let input = DiagInput {
        readiness: &readiness,
        transitions: &transitions,
        kubelet_probes: &kubelet_probes,
        started_at: app.state.started_at(),
        uptime: app.state.uptime(),
        alive_tasks: Some(alive_tasks(app)),
        now: SystemTime::now(),
        service_id: &app.service_id,
        config: &config,
        fleet: fleet.as_ref(),
    };
    // The draft's status code, the same for the JSON and the text: 200 for pass and warn, 503
    // for fail (not ready, draining included).
    let status = match render::overall_status(&readiness) {
        Status::Fail => StatusCode::SERVICE_UNAVAILABLE,
        Status::Pass | Status::Warn => StatusCode::OK,
    };
    if wants_json(request, query) {
        json(status, &render::diag_json(&input), "the /diag JSON document")
    } else {
        text(status, render::diag_text(&input))
    }
}

/// Tasks alive in the server's runtime (this one) and the checks'.
fn alive_tasks(app: &App) -> usize {
    let server = Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
    server + app.checks_runtime.as_ref().map_or(0, |h| h.metrics().num_alive_tasks())
}

fn wants_json(request: &Request<impl Sized>, query: &str) -> bool {
    match params(query, "format").last().as_deref() {
        Some("json") => return true,
        Some("text") => return false,
        _ => {}
    }
    request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") || v.contains("application/health+json"))
}

/// Loopback peers (a person with `kubectl exec`, the gateway in the same pod) and holders of
/// the diag token may read reasons and `/diag`; other peers (the node, other pods) may not.
fn is_trusted(app: &App, request: &Request<impl Sized>, peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback() || has_token(app, request)
}

/// Whether the request carries `Authorization: Bearer <diag token>`.
fn has_token(app: &App, request: &Request<impl Sized>) -> bool {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|candidate| app.diag_token.matches(candidate))
}

fn note_kubelet(app: &App, request: &Request<impl Sized>, endpoint: &Endpoint<'_>) {
    let is_kubelet = request
        .headers()
        .get(USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(b"kube-probe/"));
    if !is_kubelet {
        return;
    }
    let now = SystemTime::now();
    let label = endpoint.label();
    app.state.note_kubelet_probe(label, now);
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    app.metrics
        .kubelet_last_probe_timestamp_seconds
        .with_label_values(&[label])
        .set(seconds);
}

/// `value` as health+json; `what` names it should it fail to serialize, which answers 500 (an
/// empty 200 would read as a healthy, empty document) and is logged.
fn json(status: StatusCode, value: &impl serde::Serialize, what: &str) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(status, HEALTH_JSON, body),
        Err(error) => {
            tracing::error!(%error, "Cannot serialize {what}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("500 internal server error: cannot serialize {what}: {error}\n"),
            )
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, TEXT, body.into().into_bytes())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// HEAD: the same status and headers as GET, the length of the body it would have had, no body.
fn without_body(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let length = hyper::body::Body::size_hint(&body).exact().unwrap_or(0);
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Whether the query names `key`, with or without a value (`?verbose`, `?verbose=1`).
fn has_param(query: &str, key: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == key)
}

/// The values of `key` in the query, decoded (`%3A`, `+` as a space), in their order:
/// `?exclude=a&exclude=b`.
fn params<'a>(query: &'a str, key: &'a str) -> impl Iterator<Item = Cow<'a, str>> + 'a {
    form_urlencoded::parse(query.as_bytes()).filter_map(move |(k, v)| (k == key).then_some(v))
}

/// A percent-encoded path segment, decoded (`upstream%3Aorders`); invalid UTF-8 is replaced.
fn decode_segment(segment: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_and_repeatable() {
        let query = "verbose&exclude=upstream%3Aorders&exclude=a+b&exclude=c%2Bd&format=json";
        assert!(has_param(query, "verbose"));
        assert!(has_param("verbose=1", "verbose"));
        assert!(!has_param(query, "verbos"));
        assert!(!has_param("", "verbose"));
        let excluded: Vec<Cow<'_, str>> = params(query, "exclude").collect();
        assert_eq!(excluded, ["upstream:orders", "a b", "c+d"]);
        assert_eq!(params(query, "format").last().as_deref(), Some("json"));
        assert_eq!(params("format=%6Aso%6E", "format").last().as_deref(), Some("json"));
        assert_eq!(params("", "exclude").count(), 0);
    }

    fn body_text(response: Response<Body>) -> String {
        use futures_util::FutureExt as _;
        use http_body_util::BodyExt as _;
        let collected = response.into_body().collect().now_or_never();
        let bytes = collected.and_then(Result::ok).map(|c| c.to_bytes()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn a_document_that_cannot_be_serialized_is_a_500_naming_it() {
        struct Broken;
        impl serde::Serialize for Broken {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("broken on purpose"))
            }
        }
        let response = json(StatusCode::OK, &Broken, "the test document");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[CONTENT_TYPE], TEXT);
        let body = body_text(response);
        assert_eq!(
            body,
            "500 internal server error: cannot serialize the test document: broken on purpose\n"
        );
        assert_eq!(body.lines().count(), 1);
        let ok = json(StatusCode::OK, &serde_json::json!({"status": "pass"}), "a document");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], HEALTH_JSON);
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode_segment("upstream%3Aorders"), "upstream:orders");
        assert_eq!(decode_segment("postgres"), "postgres");
        assert_eq!(decode_segment("bad%zz"), "bad%zz");
    }
}
