//! Property tests for the query strings of the endpoints (issue 12), through the public router
//! `vigil::http::routes::handle`: no query panics it, and `?exclude=NAME` values, however
//! unusual the name, percent-encoded as a client would, reach the readiness verdict intact.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use vigil::config::CheckSettings;
use vigil::core::outcome::ComponentType;
use vigil::engine::state::{CheckSpec, State};
use vigil::http::diag_token::DiagToken;
use vigil::http::routes::{self, App};
use vigil::metrics::Metrics;

const CASES: u32 = 256;

/// Checks that never ran: each critical one fails readiness unless excluded.
fn app(names: &[String]) -> App {
    let settings = CheckSettings {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(1),
        failure_threshold: 1,
        success_threshold: 1,
        critical: true,
        scope: vigil::config::Scope::Local,
    };
    let specs = names.iter().map(|name| CheckSpec {
        name: name.clone(),
        settings,
        component_type: ComponentType::Component,
    });
    let state = Arc::new(State::new(specs));
    App {
        drain: Arc::new(vigil::engine::drain::Drain::new(Arc::clone(&state), None)),
        state,
        metrics: Metrics::new().unwrap(),
        diag_token: Arc::new(DiagToken::new(None, None)),
        config: std::sync::RwLock::new(std::sync::Arc::from(serde_json::value::RawValue::NULL.to_owned())),
        service_id: "props".to_owned(),
        checks_runtime: None,
        fleet: None,
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn ask(app: &App, uri: &str) -> (u16, String) {
    use futures_util::FutureExt as _;
    use http_body_util::BodyExt as _;
    let request = http::Request::get(uri).body(()).unwrap();
    let response = routes::handle(app, &request, loopback());
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .now_or_never()
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Check names as the router may be asked for them: any printable Unicode, the characters a
/// query string gives meaning to weighted in.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            1 => prop::sample::select(vec!['&', '=', '+', '%', ' ', '?', '#', ';', '/', ':']),
            4 => any::<char>().prop_filter("printable", |c| !c.is_control()),
        ],
        1..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A query string of URI-legal text, with escapes valid and not (`%zz`, `%FF` alone).
fn hostile_query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[A-Za-z0-9._~!$'()*+,;=:@/?-]{1,6}",
            2 => prop::sample::select(vec!["&", "=", "verbose", "exclude=", "format=", "json", "text", "%"]).prop_map(str::to_owned),
            2 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
            1 => "%[0-9a-zA-Z]{0,2}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn excluded_names_round_trip_through_the_query(
        names in prop::collection::btree_set(name(), 1..5),
        chosen in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        unknown in prop::collection::vec(name(), 0..2),
        noise in prop::sample::select(vec!["", "format=json&", "exclude=&", "other=1&"]),
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let excluded: Vec<&String> = chosen.iter().map(|i| &names[i.index(names.len())]).collect();
        let app = app(&names);
        let mut query = format!("verbose&{noise}");
        let pairs: Vec<String> = excluded
            .iter()
            .map(|name| name.as_str())
            .chain(unknown.iter().map(String::as_str))
            .map(|name| format!("exclude={}", encode(name)))
            .collect();
        query.push_str(&pairs.join("&"));
        let (status, body) = ask(&app, &format!("/readyz?{query}"));

        let mut want = String::new();
        for name in &names {
            if excluded.contains(&name) || unknown.contains(name) {
                want.push_str(&format!("[+]{name} excluded: ok\n"));
            }
        }
        let got: String = body
            .lines()
            .filter(|line| line.ends_with(" excluded: ok"))
            .map(|line| format!("{line}\n"))
            .collect();
        prop_assert_eq!(&got, &want, "query {}", query);
        let all_excluded = names.iter().all(|n| excluded.contains(&n) || unknown.contains(n));
        prop_assert_eq!(status, if all_excluded { 200 } else { 503 }, "{}", body);
        let verdict = if all_excluded { "readyz check passed" } else { "readyz check failed" };
        prop_assert_eq!(body.lines().last(), Some(verdict));
        prop_assert_eq!(body.lines().count(), names.len() + 1, "one line per check and the verdict: {}", body);
    }

    #[test]
    fn no_query_panics_an_endpoint(
        query in hostile_query(),
        path in prop::sample::select(vec!["/", "/livez", "/readyz", "/metrics", "/diag", "/readyz/a", "/nowhere"]),
    ) {
        let app = app(&["a".to_owned(), "b c".to_owned()]);
        let uri = format!("{path}?{query}");
        prop_assume!(uri.parse::<http::Uri>().is_ok());
        let (status, body) = ask(&app, &uri);
        let expected: &[u16] = match path {
            "/" | "/metrics" => &[200],
            // Not ready (no check has run): the health+json draft's status code for fail.
            "/diag" => &[503],
            "/nowhere" => &[404],
            // Never-run critical checks fail readiness; /livez may see loops not yet beating.
            _ => &[200, 503],
        };
        prop_assert!(expected.contains(&status), "{uri}: {status}\n{body}");
    }
}
