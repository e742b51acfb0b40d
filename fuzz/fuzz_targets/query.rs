//! The router on arbitrary paths and query strings (`verbose`, `exclude`, `format`, escapes
//! valid or not): no panic, and a known status for each endpoint.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vigil::config::{CheckSettings, Scope};
use vigil::http::diag_token::DiagToken;
use vigil::http::routes::{self, App};
use vigil::metrics::Metrics;
use vigil::core::outcome::ComponentType;
use vigil::engine::drain::Drain;
use vigil::engine::state::{CheckSpec, State};

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let settings = CheckSettings {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            failure_threshold: 1,
            success_threshold: 1,
            critical: true,
            scope: Scope::Shared,
        };
        let specs = ["postgres", "upstream:orders", "a b", "ünï"].map(|name| CheckSpec {
            name: name.to_owned(),
            settings,
            component_type: ComponentType::Component,
        });
        let state = Arc::new(State::new(specs));
        App {
            drain: Arc::new(Drain::new(Arc::clone(&state), None)),
            state,
            metrics: Metrics::new().unwrap(),
            diag_token: Arc::new(DiagToken::new(None, None)),
            config: RwLock::new(Arc::from(serde_json::value::RawValue::NULL.to_owned())),
            service_id: "fuzz".to_owned(),
            checks_runtime: None,
            fleet: None,
        }
    })
}

const PATHS: [&str; 6] = ["/readyz", "/livez", "/diag", "/readyz/", "/", "/metrics"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let path = PATHS[usize::from(selector) % PATHS.len()];
    // `/readyz/` takes the text as a check name, the others as a query.
    let uri = match path {
        "/readyz/" => format!("/readyz/{rest}"),
        _ => format!("{path}?{rest}"),
    };
    let Ok(request) = http::Request::builder()
        .method(if selector & 0x80 == 0 { "GET" } else { "HEAD" })
        .uri(uri.as_str())
        .body(())
    else {
        return;
    };
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let status = routes::handle(app(), &request, peer).status().as_u16();
    assert!([200, 404, 503].contains(&status), "{uri}: {status}");
});
