//! Each section read from TOML and the environment: defaults, inheritance, the fleet and Kubernetes keys.

use super::*;

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
