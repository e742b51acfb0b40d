//! The whole configuration, every kind's section included, as `vigil` loads it.
use std::path::Path;
use std::time::Duration;

use http::Method;

use super::load;
use crate::checks::gateway::config::Gateway;
use crate::checks::jwt::config::Jwt;
use crate::checks::kind::{CheckKind, Typed};
use crate::checks::pod::config::PodKeys;
use crate::checks::postgres::config::Postgres;
use crate::checks::postgres::url::{PostgresTarget, SslMode};
use crate::checks::system::config::System;
use crate::checks::upstream::config::{Upstream, UpstreamUrl};
use crate::checks::{gateway, jwt, pgbouncer, pod, postgres, sockets, system, upstream};
use crate::config::*;
use crate::net::http::HttpVersion;

fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("vigil.toml");
    std::fs::write(&file, toml).expect("written");
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    load(&Sources {
        file: Some(file),
        env,
        not_utf8: Vec::new(),
    })
}

/// A section with its common keys, read as the fields of its own type.
#[derive(Debug)]
struct Sec<T> {
    settings: CheckSettings,
    keys: T,
}

impl<T> std::ops::Deref for Sec<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.keys
    }
}

/// `[kubernetes]` as one table again: the cluster's keys and the `pod` check's.
struct Kube {
    settings: CheckSettings,
    cluster: Kubernetes,
    keys: PodKeys,
}

impl std::ops::Deref for Kube {
    type Target = Kubernetes;
    fn deref(&self) -> &Kubernetes {
        &self.cluster
    }
}

/// The configuration by section, as the tests read it.
struct View {
    postgres: Option<Sec<Postgres>>,
    gateway: Option<Sec<Gateway>>,
    jwt: Option<Sec<Jwt>>,
    system: Option<Sec<System>>,
    upstreams: Vec<Sec<Upstream>>,
    kubernetes: Option<Kube>,
}

fn sections<K: CheckKind>(config: &Config) -> Vec<Sec<K::Section>>
where
    K::Section: Clone,
{
    config
        .enabled_checks()
        .filter(|c| c.table == K::TABLE)
        .filter_map(|c| {
            Some(Sec {
                settings: c.settings,
                keys: c.keys::<Typed<K>>()?.0.clone(),
            })
        })
        .collect()
}

fn view(config: &Config) -> View {
    View {
        postgres: sections::<postgres::Kind>(config).pop(),
        gateway: sections::<gateway::Kind>(config).pop(),
        jwt: sections::<jwt::Kind>(config).pop(),
        system: sections::<system::Kind>(config).pop(),
        upstreams: sections::<upstream::Kind>(config),
        kubernetes: config.kubernetes.clone().and_then(|cluster| {
            let pod = sections::<pod::Kind>(config).pop()?;
            Some(Kube {
                settings: pod.settings,
                cluster,
                keys: pod.keys,
            })
        }),
    }
}

fn error(toml: &str, env: &[(&str, &str)]) -> String {
    load_str(toml, env)
        .expect_err("configuration must be refused")
        .to_string()
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_quoting_it() {
    for toml in [
        "[diag]\ntoken = 12345678\n",
        "[postgres]\nurl = 31337\n",
        "[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\nheaders = { Authorization = 42424242 }\n",
    ] {
        let message = error(toml, &[]);
        assert!(
            message.contains("must be a string (the value is not shown"),
            "{message}"
        );
        for value in ["12345678", "31337", "42424242"] {
            assert!(!message.contains(value), "{message}");
        }
    }
}

#[test]
fn kubernetes_takes_its_defaults_from_the_pod_and_names_bad_keys() {
    let in_pod = [
        ("KUBERNETES_SERVICE_HOST", "fd00::1"),
        ("KUBERNETES_SERVICE_PORT", "6443"),
        ("POD_NAMESPACE", "api-gateway"),
        ("HOSTNAME", "gw-7d9f8-x2x4q"),
    ];
    let config = load_str("[kubernetes]\nservice = \"api-gateway-service\"\n", &in_pod).unwrap();
    let k = view(&config).kubernetes.unwrap();
    assert_eq!(k.api_url.as_str(), "https://[fd00::1]:6443", "IPv6 bracketed");
    assert_eq!(
        (k.namespace.as_str(), k.pod.as_str()),
        ("api-gateway", "gw-7d9f8-x2x4q")
    );
    assert_eq!(k.token_file, Path::new(SERVICE_ACCOUNT_TOKEN));
    assert_eq!((k.keys.cpu_warn, k.keys.memory_warn, k.events), (0.8, 0.9, true));
    assert_eq!(k.keys.restart_window, Duration::from_secs(900));
    assert_eq!(
        k.metrics_interval,
        Duration::from_secs(15),
        "metrics-server's resolution"
    );
    assert_eq!((k.settings.critical, k.settings.scope), (false, Scope::Local));
    let again = load_str(&config.to_redacted_toml(), &[]).unwrap();
    assert_eq!(
        again, config,
        "the printed configuration loads again, outside the pod too"
    );

    let with_name = load_str(
        "[kubernetes]\n",
        &[
            ("POD_NAME", "gw-1"),
            ("HOSTNAME", "h"),
            ("POD_NAMESPACE", "n"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ],
    )
    .unwrap();
    let k = view(&with_name).kubernetes.unwrap();
    assert_eq!((k.pod.as_str(), k.api_url.as_str()), ("gw-1", "https://10.96.0.1:443"));

    let (dir, token) = crate::core::files::temp_file("token", "t");
    std::fs::write(dir.path().join("namespace"), "from-file\n").unwrap();
    let from_file = load_str(
        &format!(
            "[kubernetes]\napi_url = \"https://k8s.local\"\npod = \"p\"\ntoken_file = {:?}\n",
            token.display().to_string()
        ),
        &[],
    )
    .unwrap();
    assert_eq!(view(&from_file).kubernetes.unwrap().namespace, "from-file");

    for (toml, env, expected) in [
        (
            "[kubernetes]\npod = \"p\"\nnamespace = \"n\"\n",
            &[][..],
            "kubernetes.api_url: required outside a pod",
        ),
        (
            "[kubernetes]\napi_url = \"http://k8s\"\npod = \"p\"\nnamespace = \"n\"\n",
            &[][..],
            "kubernetes.api_url: must be an https:// URL",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s/api\"\npod = \"p\"\nnamespace = \"n\"\n",
            &[][..],
            "kubernetes.api_url: must name the server only",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\nnamespace = \"n\"\n",
            &[][..],
            "kubernetes.pod: required",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\ntoken_file = \"/nonexistent/token\"\n",
            &[][..],
            "kubernetes.namespace: required",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"Bad_NS\"\n",
            &[][..],
            "kubernetes.namespace: must be a DNS label",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nservice = \"a/b\"\n",
            &[][..],
            "kubernetes.service: must be a DNS label",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\ncpu_warn = 1.5\n",
            &[][..],
            "kubernetes.cpu_warn: must be between 0 and 1, got 1.5",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nrestart_window = \"10s\"\n",
            &[][..],
            "kubernetes.restart_window: must be between 1m and 24h, got 10s",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nmetrics_interval = \"1s\"\n",
            &[][..],
            "kubernetes.metrics_interval: must be between 5s and 1h",
        ),
        (
            "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nwatch = true\n",
            &[][..],
            "kubernetes.watch: unknown key",
        ),
        (
            "[kubernetes]\n",
            &[
                ("POD_NAMESPACE", "n"),
                ("POD_NAME", "UPPER"),
                ("KUBERNETES_SERVICE_HOST", "h"),
            ][..],
            "kubernetes.pod: must be a DNS subdomain",
        ),
    ] {
        let message = error(toml, env);
        assert!(message.starts_with(expected), "{toml}: {message}");
    }
}

#[test]
fn scope_defaults_per_section_and_can_be_set() {
    let config = load_str(
        "[postgres]\nurl = \"postgres://u@db/gw\"\n[gateway]\nhealth_url = \"http://127.0.0.1:8080/\"\n\
         [jwt]\nsecret_env = \"S\"\nscope = \"local\"\n[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(view(&config).postgres.as_ref().unwrap().settings.scope, Scope::Shared);
    assert_eq!(view(&config).gateway.as_ref().unwrap().settings.scope, Scope::Local);
    assert_eq!(
        view(&config).jwt.as_ref().unwrap().settings.scope,
        Scope::Local,
        "set per section"
    );
    assert_eq!(view(&config).upstreams[0].settings.scope, Scope::Shared);
    assert_eq!(view(&config).system.as_ref().unwrap().settings.scope, Scope::Local);
    let shown = config.to_redacted_toml();
    assert!(shown.contains("scope = \"shared\""), "{shown}");
    assert_eq!(
        error("[system]\nscope = \"global\"\n", &[]),
        "system.scope: unknown variant `global`, expected `shared` or `local`"
    );
}

#[test]
fn fleet_peers_are_a_name_or_a_list_and_the_own_address_is_pod_ip_else_listen() {
    let named = load_str(
        "[fleet]\npeers = \"api-gateway-peers.gw.svc\"\n",
        &[("POD_IP", "10.0.0.7")],
    )
    .unwrap();
    let fleet = named.fleet.as_ref().unwrap();
    assert_eq!(fleet.panic_threshold, 0.5);
    assert_eq!(fleet.peers.targets()[0].host, "api-gateway-peers.gw.svc");
    assert_eq!(fleet.peers.targets()[0].port, 9476, "vigil's listen port");
    assert_eq!(
        (fleet.own_ip, fleet.own_ip_source),
        (Some("10.0.0.7".parse().unwrap()), "POD_IP")
    );
    assert!(
        named
            .to_redacted_toml()
            .contains("[fleet]\npeers = \"api-gateway-peers.gw.svc\"")
    );
    assert_eq!(
        load_str(&named.to_redacted_toml(), &[("POD_IP", "10.0.0.7")]).unwrap(),
        named
    );

    let listed = load_str(
        "listen = \"127.0.0.2:7000\"\n[fleet]\npeers = [\"127.0.0.3:7000\", \"[::1]:7001\", \"peer-4\"]\npanic_threshold = 0.75\n",
        &[],
    )
    .unwrap();
    let fleet = listed.fleet.unwrap();
    let targets: Vec<(&str, u16)> = fleet
        .peers
        .targets()
        .iter()
        .map(|t| (t.host.as_str(), t.port))
        .collect();
    assert_eq!(targets, [("127.0.0.3", 7000), ("::1", 7001), ("peer-4", 7000)]);
    assert_eq!(
        (fleet.own_ip, fleet.own_ip_source),
        (Some("127.0.0.2".parse().unwrap()), "listen")
    );
    let unspecified = load_str("[fleet]\npeers = \"p\"\n", &[]).unwrap().fleet.unwrap();
    assert_eq!(unspecified.own_ip, None, "0.0.0.0 is no address of this replica");

    for (toml, env, expected) in [
        ("[fleet]\n", &[][..], "fleet: missing field `peers`"),
        (
            "[fleet]\npeers = []\n",
            &[],
            "fleet.peers: must list 1 to 256 peers, got 0",
        ),
        (
            "[fleet]\npeers = [\"a:0\"]\n",
            &[],
            "fleet.peers[0]: expected host:port with a port from 1 to 65535, got \"a:0\"",
        ),
        (
            "[fleet]\npeers = \"a b\"\n",
            &[],
            "fleet.peers: expected an IP address or a DNS name, got \"a b\"",
        ),
        (
            "[fleet]\npeers = \"p\"\npanic_threshold = 0\n",
            &[],
            "fleet.panic_threshold: must be between 0 and 1, got 0",
        ),
        (
            "[fleet]\npeers = \"p\"\npanic_threshold = 1.5\n",
            &[],
            "fleet.panic_threshold: must be between 0 and 1, got 1.5",
        ),
        (
            "[fleet]\npeers = \"p\"\n",
            &[("POD_IP", "pod-1")],
            "POD_IP: must be this pod's IP address (the downward API's status.podIP), got \"pod-1\"",
        ),
        (
            "[fleet]\npeers = \"p\"\n",
            &[("VIGIL_FLEET__PANIC_THRESHOLD", "2")],
            "fleet.panic_threshold (from VIGIL_FLEET__PANIC_THRESHOLD): must be between 0 and 1, got 2",
        ),
    ] {
        assert_eq!(error(toml, env), expected);
    }
}

#[test]
fn defaults_alone_run_the_system_check() {
    let config = load_str("", &[]).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:9476");
    let system = view(&config).system.expect("system runs by default");
    assert_eq!(system.settings.interval, Duration::from_secs(5));
    assert!(!system.settings.critical);
    assert!(view(&config).postgres.is_none() && view(&config).upstreams.is_empty());
}

#[test]
fn sections_inherit_defaults_and_override_them() {
    let config = load_str(
        "[defaults]\ninterval = \"10s\"\nfailure_threshold = 3\n[system]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         [postgres]\nurl = \"postgres://u:pw@localhost/db\"\n",
        &[],
    )
    .unwrap();
    let system = view(&config).system.unwrap().settings;
    assert_eq!(
        (system.interval, system.timeout, system.failure_threshold),
        (Duration::from_secs(1), Duration::from_millis(500), 3)
    );
    let postgres = view(&config).postgres.unwrap().settings;
    assert_eq!(postgres.interval, Duration::from_secs(10));
    assert!(postgres.critical, "postgres is critical by default");
}

#[test]
fn environment_wins_over_the_file_and_is_named_in_errors() {
    let config = load_str("[system]\ncpu_warn = 0.5\n", &[("VIGIL_SYSTEM__CPU_WARN", "0.7")]).unwrap();
    assert_eq!(view(&config).system.unwrap().cpu_warn, 0.7);
    assert_eq!(
        error("", &[("VIGIL_SYSTEM__CPU_WARN", "1.5")]),
        "system.cpu_warn (from VIGIL_SYSTEM__CPU_WARN): must be between 0 and 1, got 1.5"
    );
    assert_eq!(
        error("", &[("VIGIL_SYSTEM__CPU_WARNING", "0.5")]),
        "system.cpu_warning (from VIGIL_SYSTEM__CPU_WARNING): unknown key; expected one of enabled, cpu_warn, memory_warn, cgroup_root"
    );
}

#[test]
fn database_url_configures_postgres_alone() {
    let config = load_str("", &[("DATABASE_URL", "postgres://gw:pw@127.0.0.1/gw")]).unwrap();
    let postgres = view(&config).postgres.expect("DATABASE_URL configures postgres");
    assert_eq!(
        postgres.target,
        PostgresTarget::parse("postgres://gw:pw@127.0.0.1/gw").unwrap()
    );
    assert_eq!(postgres.target.config.get_password(), Some(&b"pw"[..]));
    let explicit = load_str(
        "[postgres]\nurl = \"postgres://a@b/c\"\n",
        &[("DATABASE_URL", "postgres://x@y/z")],
    )
    .unwrap();
    assert_eq!(view(&explicit).postgres.unwrap().target.config.get_dbname(), Some("c"));
}

#[test]
fn pgbouncer_is_not_critical_shared_and_prints_its_url_redacted() {
    let config = load_str(
        "[pgbouncer]\nurl = \"postgres://vigil:s3cret-pgb@pgb:6432/pgbouncer\"\ndatabases = [\"gateway\"]\n",
        &[],
    )
    .unwrap();
    let section = config
        .enabled_checks()
        .find(|c| c.table == "pgbouncer")
        .expect("the pgbouncer check");
    assert_eq!(section.name, "pgbouncer");
    assert_eq!(
        (section.settings.critical, section.settings.scope),
        (false, Scope::Shared)
    );
    let keys = &section.keys::<Typed<pgbouncer::Kind>>().unwrap().0;
    assert_eq!(
        (keys.wait_warn, keys.wait_fail, keys.databases.as_slice()),
        (
            Duration::from_secs(1),
            Duration::from_secs(5),
            &["gateway".to_owned()][..]
        )
    );
    let shown = config.to_redacted_toml();
    assert!(!shown.contains("s3cret-pgb"), "{shown}");
    assert!(shown.contains("[pgbouncer]"), "{shown}");
}

#[test]
fn every_bad_value_names_its_key() {
    let cases = [
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nsaturation_warn = 1.5\n",
            "postgres.saturation_warn: must be between 0 and 1, got 1.5",
        ),
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nsaturation_warn = 0.97\n",
            "postgres.saturation_warn: must be below saturation_fail (0.95), got 0.97",
        ),
        (
            "[postgres]\n",
            "postgres.url: required: set url, url_file or the DATABASE_URL environment variable",
        ),
        (
            "[postgres]\nurl = \"mysql://root:hunter2@db/x\"\n",
            "postgres.url: must be a postgres:// or postgresql:// URL (or key=value connection string)",
        ),
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nlock_wait = \"10ms\"\n",
            "postgres.lock_wait: must be between 100ms and 1h, got 10ms",
        ),
        (
            "[postgres]\nurl = \"postgres://a@b/c\"\nidle_in_transaction_warn = \"2d\"\n",
            "postgres.idle_in_transaction_warn: must be between 1s and 1day, got 2days",
        ),
        (
            "[postgres]\nurl = \"postgres://a:hunter2@b/c?sslcert=/c.crt\"\n",
            "postgres.url: sslcert and sslkey go together: set both (the client certificate and its key) or neither",
        ),
        (
            "[pgbouncer]\n",
            "pgbouncer.url: required: set url or url_file (the admin console, database pgbouncer)",
        ),
        (
            "[pgbouncer]\nurl = \"postgres://v@pgb:6432/pgbouncer\"\nwait_warn = \"5s\"\n",
            "pgbouncer.wait_warn: must be below wait_fail (5s), got 5s",
        ),
        (
            "[pgbouncer]\nurl = \"postgres://v@pgb:6432/pgbouncer\"\ndatabases = [\"gw\", \"gw\"]\n",
            "pgbouncer.databases[1]: \"gw\" is listed twice",
        ),
        (
            "[defaults]\ninterval = \"5\"\n",
            "defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got \"5\"",
        ),
        (
            "[defaults]\ninterval = 5\n",
            "defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got 5",
        ),
        (
            "[defaults]\ntimeout = \"10s\"\n",
            "defaults.timeout: must not exceed the interval (5s), got 10s",
        ),
        (
            "[system]\nfailure_threshold = 0\n",
            "system.failure_threshold: must be between 1 and 100, got 0",
        ),
        (
            "listen = \"nowhere\"\n",
            "listen: expected an address such as 0.0.0.0:9476, got \"nowhere\"",
        ),
        (
            "colour = \"blue\"\n",
            "colour: unknown key; expected one of listen, defaults, shutdown, diag, postgres, pgbouncer, jwt, gateway, upstream, system, kubernetes, sockets, fleet",
        ),
        (
            "[gateway]\nhealth_url = \"ftp://gw/healthz\"\n",
            "gateway.health_url: must be an http:// or https:// URL, got \"ftp://gw/healthz\"",
        ),
        (
            "[gateway]\nhealth_url = \"http://gw/\"\ntraffic_metrics = \"nginx\"\n",
            "gateway.traffic_metrics: unknown variant `nginx`, expected one of `generic`, `haproxy`, `caddy`, `envoy`, `traefik`, `kong`, `nginx_ingress`, `spring`",
        ),
        (
            "[gateway]\nhealth_url = \"http://gw/\"\ngroup_by = \"route-id\"\n",
            "gateway.group_by: not a Prometheus label name: \"route-id\"",
        ),
        (
            "[gateway]\nhealth_url = \"http://gw/\"\nthrottled_ratio_warn = 5\n",
            "gateway.throttled_ratio_warn: must be between 0 and 1, got 5",
        ),
        ("[jwt]\nalgorithm = \"RS256\"\n", "jwt.jwks_url: required for RS256"),
        (
            "[jwt]\nalgorithm = \"ES256\"\njwks_url = \"http://auth/jwks\"\nvalidate_url = \"http://gw/v\"\n",
            "jwt.validate_url: needs HS256, HS384 or HS512 (vigil signs its probe tokens with the shared secret), got ES256",
        ),
        (
            "[jwt]\nalgorithm = \"none\"\nsecret_env = \"X\"\n",
            "jwt.algorithm: unknown variant `none`, expected one of `HS256`, `HS384`, `HS512`, `RS256`, `ES256`",
        ),
        (
            "[[upstream]]\nname = \"a b\"\nurl = \"http://x/\"\n",
            "upstream[0].name: must be 1 to 64 characters of letters, digits, '-', '_' and '.', got \"a b\"",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\n[[upstream]]\nname = \"a\"\nurl = \"http://y/\"\n",
            "upstream[1].name: \"a\" names another upstream too; names must be unique",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\nexpect_status = \"7xx\"\n",
            "upstream[0].expect_status: expected \"1xx\" to \"5xx\" or a list of status codes such as [200, 204], got \"7xx\"",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\nlatency_warn = \"3s\"\n",
            "upstream[0].latency_warn: must be below latency_fail (2s), got 3s",
        ),
        (
            "[diag]\ntoken_file = \"/nonexistent/vigil-token\"\n",
            "diag.token_file: cannot read /nonexistent/vigil-token: No such file or directory (os error 2)",
        ),
    ];
    for (toml, expected) in cases {
        assert_eq!(error(toml, &[]), expected, "for {toml:?}");
    }
}

#[test]
fn numeric_looking_secrets_from_the_environment_stay_strings() {
    let config = load_str("", &[("VIGIL_DIAG__TOKEN", "12345678901234567890")]).unwrap();
    assert_eq!(config.diag.token.unwrap().expose(), "12345678901234567890");
}

#[test]
fn urls_with_credentials_are_refused_without_echoing_them() {
    let message = error(
        "[gateway]\nhealth_url = \"http://admin:hunter2@gw:8080/healthz\"\n",
        &[],
    );
    assert!(
        message.starts_with("gateway.health_url: must not carry credentials"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn errors_never_show_the_database_password() {
    let message = error("[postgres]\nurl = \"mysql://root:hunter2@db/x\"\n", &[]);
    assert!(!message.contains("hunter2"), "{message}");
}

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

#[test]
fn methods_and_headers_are_parsed_at_load_and_named_when_bad() {
    let upstream = |extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\n{extra}\n");
    let cases = [
        (
            "method = \"DELETE\"",
            "upstream[0].method: must be one of GET, HEAD, POST, PUT, OPTIONS, got \"DELETE\"",
        ),
        (
            "method = \"get\"",
            "upstream[0].method: must be one of GET, HEAD, POST, PUT, OPTIONS, got \"get\"",
        ),
        (
            "headers = { \"bad header\" = \"x\" }",
            "upstream[0].headers: not a valid header name: \"bad header\"",
        ),
        (
            "headers = { X-Token = \"line\\nbreak-secret\" }",
            "upstream[0].headers.X-Token: not a valid header value",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(error(&upstream(extra), &[]), expected, "for {extra:?}");
    }
    let config = load_str(&upstream("method = \"POST\"\nheaders = { X-Api-Key = \"k\" }"), &[]).unwrap();
    let shown = view(&config);
    let only = &shown.upstreams[0];
    assert_eq!(only.method, Method::POST);
    assert_eq!(only.headers[0].0, http::header::HeaderName::from_static("x-api-key"));
    assert_eq!(only.headers[0].1, "k");
    assert_eq!(
        view(&load_str(&upstream(""), &[]).unwrap()).upstreams[0].method,
        Method::GET
    );
}

#[test]
fn the_postgres_url_is_parsed_at_load_and_named_when_bad() {
    assert_eq!(
        error("[postgres]\nurl = \"postgres://u:hunter2@h/db?sslmode=bogus\"\n", &[]),
        "postgres.url: sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"bogus\""
    );
    let message = error("[postgres]\nurl = \"postgres://u:hunter2@h:notaport/db\"\n", &[]);
    assert!(message.starts_with("postgres.url: cannot be parsed: "), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(
        error("", &[("DATABASE_URL", "postgres://u:hunter2@h/db?sslmode=nope")]),
        "postgres.url (from DATABASE_URL): sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"nope\""
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    std::fs::write(&file, "postgres://gw:hunter2@db/gw?sslmode=require\n").unwrap();
    let config = load_str(&format!("[postgres]\nurl_file = {file:?}\n"), &[]).unwrap();
    let postgres = view(&config).postgres.unwrap();
    assert_eq!(postgres.target.sslmode, SslMode::Require);
    assert_eq!(postgres.target.config.get_hosts().len(), 1);
    std::fs::write(&file, "mysql://root:hunter2@db/x\n").unwrap();
    assert_eq!(
        error(&format!("[postgres]\nurl_file = {file:?}\n"), &[]),
        "postgres.url_file: must be a postgres:// or postgresql:// URL (or key=value connection string)"
    );
}

#[test]
fn grpc_and_http_version_keys_belong_to_their_kinds() {
    let entry = |url: &str, extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"{url}\"\n{extra}\n");
    let config = load_str(
        &entry("grpcs://orders:9000", "grpc_service = \"orders.v1.Orders\""),
        &[],
    )
    .unwrap();
    assert!(
        matches!(view(&config).upstreams[0].url, UpstreamUrl::Grpcs(ref t) if t.host == "orders" && t.port == 9000)
    );
    assert_eq!(
        view(&config).upstreams[0].grpc_service.as_deref(),
        Some("orders.v1.Orders")
    );
    let config = load_str(&entry("https://a/", "http_version = \"2\""), &[]).unwrap();
    assert_eq!(view(&config).upstreams[0].http_version, Some(HttpVersion::Http2));
    assert_eq!(
        view(&load_str(&entry("http://a/", ""), &[]).unwrap()).upstreams[0].http_version,
        None
    );
    for (toml, expected) in [
        (
            entry("grpc://orders", ""),
            "upstream[0].url: must name a port, such as grpc://orders:6379",
        ),
        (
            entry("grpc://orders:9000", "http_version = \"2\""),
            "upstream[0].http_version: applies only to http:// and https:// upstreams, not to grpc://orders:9000",
        ),
        (
            entry("https://a/", "grpc_service = \"\""),
            "upstream[0].grpc_service: applies only to grpc:// and grpcs:// upstreams, not to https://a/",
        ),
        (
            entry("grpc://orders:9000", "grpc_service = \"a\\nb\""),
            "upstream[0].grpc_service: must be at most 200 characters without control characters, such as \"orders.v1.Orders\"",
        ),
    ] {
        assert_eq!(error(&toml, &[]), expected, "for {toml:?}");
    }
    assert!(error(&entry("http://a/", "http_version = \"3\""), &[]).starts_with("upstream[0].http_version: "));
}

#[test]
fn sockets_watch_the_postgres_ports_unless_told_and_a_reload_sees_them_change() {
    let ports = |toml: &str| -> Option<Vec<u16>> {
        let config = load_str(toml, &[]).unwrap();
        sections::<sockets::Kind>(&config).pop().unwrap().keys.ports
    };
    assert_eq!(ports("[sockets]\n"), Some(vec![]), "no [postgres]: no port");
    assert_eq!(
        ports("[postgres]\nurl = \"postgres://u@db/gw\"\n[sockets]\n"),
        Some(vec![5432]),
        "libpq's default port"
    );
    assert_eq!(
        ports("[postgres]\nurl = \"host=a,b port=6432,6433 dbname=gw\"\n[sockets]\n"),
        Some(vec![6432, 6433])
    );
    assert_eq!(
        ports("[postgres]\nurl = \"host=/run/postgresql dbname=gw\"\n[sockets]\n"),
        Some(vec![]),
        "a Unix socket has no port"
    );
    assert_eq!(
        ports("[postgres]\nurl = \"postgres://u@db:6432/gw\"\n[sockets]\nports = [6379]\n"),
        Some(vec![6379]),
        "ports as written win"
    );
    let before = load_str("[postgres]\nurl = \"postgres://u@db:5432/gw\"\n[sockets]\n", &[]).unwrap();
    let after = load_str("[postgres]\nurl = \"postgres://u@db:6432/gw\"\n[sockets]\n", &[]).unwrap();
    assert_ne!(
        before.check("sockets"),
        after.check("sockets"),
        "a reload rebuilds a [sockets] whose default port changed"
    );
    let error = error("[sockets]\nports = [0]\n", &[]);
    assert!(error.starts_with("sockets.ports: "), "{error}");
}
