//! The configuration printed back (`vigil validate`): secrets redacted, and it loads again to the same.

use super::*;

#[test]
fn redacted_toml_hides_every_secret_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "diag-token-value\n").unwrap();
    let config = load_str(
        &format!(
            "[diag]\ntoken_file = {token:?}\n[postgres]\nurl = \"postgres://gw:db-password@h/db\"\n\
             [[upstream]]\nname = \"orders\"\nurl = \"http://o/healthz\"\nheaders = {{ Authorization = \"Bearer upstream-token\" }}\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(config.diag.token.as_ref().unwrap().expose(), "diag-token-value");
    let shown = config.to_redacted_toml();
    for secret in ["diag-token-value", "db-password", "upstream-token"] {
        assert!(!shown.contains(secret), "{secret} leaked into:\n{shown}");
    }
    assert!(shown.contains("<redacted>"));
    assert!(shown.contains("interval = \"5s\""), "{shown}");
    let reparsed: toml::Table = shown.parse().expect("validate output is TOML");
    assert!(reparsed.contains_key("upstream"));
}

/// A configuration that sets every key of every section (a value besides the default
/// where there is one).
const EVERY_SECTION: &str = r#"listen = "127.0.0.1:9999"
[defaults]
interval = "10s"
timeout = "3s"
failure_threshold = 3
success_threshold = 2
[shutdown]
drain = "30s"
[diag]
token = "diag-secret"
[postgres]
url = "postgres://gw:db-secret@db.example:6432/gateway?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3"
saturation_warn = 0.7
saturation_fail = 0.9
long_query = "1m 30s"
pool_size = 4
critical = false
[gateway]
health_url = "http://127.0.0.1:8080/healthz"
metrics_url = "http://127.0.0.1:8080/metrics"
pool_metrics = "hikaricp"
pool_in_use_metric = "my_pool_in_use"
pool_max_metric = "my_pool_max"
pool_waiting_metric = "my_pool_waiting"
pool_saturation_warn = 0.6
pool_saturation_fail = 0.7
traffic_metrics = "kong"
requests_metric = "requests_total"
duration_metric = "request_seconds"
status_label = "status_code"
group_by = "route"
error_ratio_warn = 0.02
error_ratio_fail = 0.1
unauthorized_ratio_warn = 0.2
throttled_ratio_warn = 0.01
latency_p95_warn = "500ms"
latency_p95_fail = "1s"
window = "10m"
[jwt]
algorithm = "HS384"
secret_env = "JWT_SECRET"
issuer = "api-gateway"
audience = "api"
validate_url = "http://127.0.0.1:8080/api/validate"
interval = "30s"
[system]
cpu_warn = 0.5
memory_warn = 0.6
cgroup_root = "/tmp/cgroup"
success_threshold = 3
[[upstream]]
name = "orders"
url = "https://orders.shop.svc:8443/healthz"
method = "HEAD"
headers = { Authorization = "Bearer upstream-secret", X-Tenant = "tenant-7" }
expect_status = [200, 204]
latency_warn = "250ms"
latency_fail = "750ms"
window = "1h"
ca_file = "/etc/ca.pem"
critical = true
[[upstream]]
name = "users"
url = "http://users/healthz"
expect_status = "3xx"
[sockets]
listen_ports = [8080]
close_wait_warn = 20
"#;

#[test]
fn the_printed_configuration_loads_again_to_the_same_one() {
    let original = load_str(EVERY_SECTION, &[]).unwrap();
    let shown = original.to_redacted_toml();
    for secret in ["diag-secret", "db-secret", "upstream-secret", "tenant-7"] {
        assert!(!shown.contains(secret), "{secret} leaked into:\n{shown}");
    }
    // The secrets put back where the printed form says `<redacted>`.
    let pg_url =
        "postgres://gw:db-secret@db.example:6432/gateway?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3";
    let restored = shown
        .replace("token = \"<redacted>\"", "token = \"diag-secret\"")
        .replace("url = \"<redacted>\"", &format!("url = \"{pg_url}\""))
        .replace(
            "authorization = \"<redacted>\"",
            "authorization = \"Bearer upstream-secret\"",
        )
        .replace("x-tenant = \"<redacted>\"", "x-tenant = \"tenant-7\"");
    assert!(!restored.contains("<redacted>"), "{restored}");
    let reloaded = load_str(&restored, &[]).expect("the printed configuration loads");
    assert_eq!(reloaded, original);
    assert_eq!(reloaded.to_redacted_toml(), shown);

    // Every section is there, parsed.
    let shown = view(&original);
    let postgres = shown.postgres.as_ref().unwrap();
    assert_eq!(postgres.target.sslmode, SslMode::VerifyFull);
    assert_eq!(postgres.target.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert!(!postgres.settings.critical);
    let orders = &shown.upstreams[0];
    assert_eq!(orders.method, Method::HEAD);
    let names: Vec<&str> = orders.headers.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["authorization", "x-tenant"]);
    assert!(orders.headers.iter().all(|(_, value)| value.is_sensitive()));
    assert!(!format!("{orders:?}").contains("upstream-secret"));
    assert!(view(&original).gateway.is_some() && view(&original).jwt.is_some() && view(&original).system.is_some());
    let sockets = sections::<sockets::Kind>(&original).pop().unwrap();
    assert_eq!(
        sockets.ports.as_deref(),
        Some(&[6432][..]),
        "[postgres]'s port, printed"
    );
    assert_eq!(
        (sockets.listen_ports.as_slice(), sockets.close_wait_warn),
        (&[8080][..], 20)
    );

    // A URL from a file prints as the file, and loads again as it is.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    std::fs::write(&file, "postgres://gw:db-secret@db/gw\n").unwrap();
    let from_file = load_str(&format!("[postgres]\nurl_file = {file:?}\n"), &[]).unwrap();
    let shown = from_file.to_redacted_toml();
    assert!(!shown.contains("db-secret") && !shown.contains("url = "), "{shown}");
    assert_eq!(load_str(&shown, &[]).unwrap(), from_file);

    // A system check turned off stays off.
    let off = load_str("[system]\nenabled = false\n", &[]).unwrap();
    assert!(view(&off).system.is_none());
    assert_eq!(load_str(&off.to_redacted_toml(), &[]).unwrap(), off);
    // The defaults alone.
    let defaults = load_str("", &[]).unwrap();
    assert_eq!(load_str(&defaults.to_redacted_toml(), &[]).unwrap(), defaults);
}
