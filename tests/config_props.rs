//! Property tests for the configuration loader (issue 12), on the public API only
//! (`checks::registry::load`, `Config::to_redacted_toml`, the printer of `vigil validate`): TOML built
//! from the known sections and keys with random values, and random garbage, either loads or is
//! refused naming a key or saying it is not TOML; what loads prints a configuration that loads
//! again to the same print.

use std::path::Path;

use proptest::prelude::*;
use vigil::checks::registry;
use vigil::config::{self, Sources};

const CASES: u32 = 256;

fn load(path: &Path, text: &str) -> Result<config::Config, String> {
    std::fs::write(path, text).unwrap();
    registry::load(&Sources {
        file: Some(path.to_owned()),
        ..Default::default()
    })
    .map_err(|e| e.to_string())
}

/// A TOML value: mostly plausible for the key, sometimes of the wrong kind.
fn value(plausible: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        24 => prop::sample::select(plausible).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (-2.0f64..2.0).prop_map(|f| format!("{f:?}")),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => "[ -~]{0,8}".prop_map(|s| format!("{s:?}")),
        1 => Just("[200, 204]".to_owned()),
        1 => Just("{ a = 1 }".to_owned()),
    ]
}

const DURATIONS: &[&str] = &[
    "\"50ms\"",
    "\"250ms\"",
    "\"1s\"",
    "\"2s\"",
    "\"5s\"",
    "\"1m 30s\"",
    "\"2h\"",
    "\"0s\"",
    "\"5 parsecs\"",
];
const RATIOS: &[&str] = &["0.1", "0.5", "0.8", "0.95", "1.0", "0.0", "1.5", "-0.2"];
const COUNTS: &[&str] = &["0", "1", "2", "3", "16", "17", "100", "101"];
const BOOLS: &[&str] = &["true", "false"];
const URLS: &[&str] = &[
    "\"http://gw:8080/health\"",
    "\"https://auth.example/jwks\"",
    "\"ftp://x/\"",
    "\"http://u:p@h/\"",
    "\"not a url\"",
];
const METRICS: &[&str] = &["\"http_requests_total\"", "\"pool:in_use\"", "\"9bad\"", "\"\""];
const NAMES: &[&str] = &["\"orders\"", "\"auth-svc\"", "\"a.b_c\"", "\"\"", "\"no spaces\""];

/// The keys of each section, with plausible values.
fn keys(section: &str) -> Vec<(&'static str, &'static [&'static str])> {
    let common: Vec<(&str, &[&str])> = vec![
        ("interval", DURATIONS),
        ("timeout", DURATIONS),
        ("failure_threshold", COUNTS),
        ("success_threshold", COUNTS),
        ("critical", BOOLS),
    ];
    let own: Vec<(&str, &[&str])> = match section {
        "defaults" => return common[..4].to_vec(),
        "shutdown" => return vec![("drain", DURATIONS)],
        "diag" => return vec![("token", &["\"s3cret-token\"", "\"\"", "12345678"])],
        "postgres" => vec![
            (
                "url",
                &[
                    "\"postgres://vigil@db:5432/app\"",
                    "\"host=db user=vigil\"",
                    "\"mysql://db\"",
                ],
            ),
            ("saturation_warn", RATIOS),
            ("saturation_fail", RATIOS),
            ("long_query", DURATIONS),
            ("pool_size", COUNTS),
        ],
        "gateway" => vec![
            ("health_url", URLS),
            ("metrics_url", URLS),
            (
                "pool_metrics",
                &["\"generic\"", "\"hikaricp\"", "\"go_sql\"", "\"other\""],
            ),
            ("pool_in_use_metric", METRICS),
            ("requests_metric", METRICS),
            ("error_ratio_warn", RATIOS),
            ("error_ratio_fail", RATIOS),
            ("latency_p95_warn", DURATIONS),
            ("latency_p95_fail", DURATIONS),
            ("window", DURATIONS),
        ],
        "jwt" => vec![
            (
                "algorithm",
                &["\"HS256\"", "\"HS512\"", "\"RS256\"", "\"ES256\"", "\"none\""],
            ),
            ("secret_env", &["\"JWT_SECRET\"", "\"bad name\"", "\"\""]),
            ("secret_file", &["\"/etc/jwt/secret\""]),
            ("issuer", &["\"vigil\""]),
            ("validate_url", URLS),
            ("jwks_url", URLS),
        ],
        "system" => vec![
            ("enabled", BOOLS),
            ("cpu_warn", RATIOS),
            ("memory_warn", RATIOS),
            ("cgroup_root", &["\"/sys/fs/cgroup\""]),
        ],
        "upstream" => vec![
            ("name", NAMES),
            ("url", URLS),
            ("method", &["\"GET\"", "\"POST\"", "\"DELETE\""]),
            (
                "headers",
                &[
                    "{ Authorization = \"Bearer x\" }",
                    "{ \"bad header\" = \"x\" }",
                    "{ X = \"a\\nb\" }",
                ],
            ),
            (
                "expect_status",
                &["\"2xx\"", "\"4xx\"", "\"6xx\"", "[200, 204]", "[]", "[99]"],
            ),
            ("latency_warn", DURATIONS),
            ("latency_fail", DURATIONS),
            ("window", DURATIONS),
        ],
        _ => unreachable!(),
    };
    common.into_iter().chain(own).collect()
}

const SECTIONS: &[&str] = &[
    "defaults", "shutdown", "diag", "postgres", "gateway", "jwt", "system", "upstream",
];

fn section() -> impl Strategy<Value = String> {
    prop::sample::select(SECTIONS).prop_flat_map(|name| {
        let pairs = keys(name);
        let n = pairs.len();
        // Each key at most once (a repeated one is plain invalid TOML).
        let entries =
            prop::sample::subsequence((0..n).collect::<Vec<_>>(), 0..=n.min(6)).prop_flat_map(move |chosen| {
                chosen
                    .into_iter()
                    .map(|i| {
                        let (key, plausible) = keys(name)[i];
                        value(plausible).prop_map(move |v| format!("{key} = {v}\n")).boxed()
                    })
                    .collect::<Vec<_>>()
            });
        let unknown = prop::option::weighted(0.1, "[a-z_]{1,8}".prop_map(|k| format!("{k} = 1\n")));
        (entries, unknown).prop_map(move |(entries, unknown)| {
            let header = if name == "upstream" {
                "[[upstream]]".to_owned()
            } else {
                format!("[{name}]")
            };
            format!("{header}\n{}{}", entries.concat(), unknown.unwrap_or_default())
        })
    })
}

/// A file: `listen` or not, sections from the grammar, and now and then a garbage line.
fn document() -> impl Strategy<Value = String> {
    let listen = prop::option::of(prop::sample::select(vec![
        "listen = \"127.0.0.1:9476\"\n",
        "listen = \"0.0.0.0:8080\"\n",
        "listen = \"[::]:9476\"\n",
        "listen = \"[::1]:0\"\n",
        "listen = \"nowhere\"\n",
        "listen = 9476\n",
    ]));
    let garbage = prop_oneof![
        "[ -~]{0,20}\n",
        "\\PC{0,12}\n",
        Just("[postgres\n".to_owned()),
        Just("x = \n".to_owned()),
        Just("defaults = 3\n".to_owned()),
        Just("upstream = \"one\"\n".to_owned()),
    ];
    (
        listen,
        prop::collection::vec(section(), 0..5),
        prop::option::weighted(0.2, (garbage, any::<prop::sample::Index>())),
    )
        .prop_map(|(listen, mut sections, garbage)| {
            // One table of each name (a repeated one is plain invalid TOML), any number of
            // [[upstream]].
            let mut seen = Vec::new();
            sections.retain(|s| {
                let header = s.lines().next().unwrap_or_default().to_owned();
                header == "[[upstream]]"
                    || !seen.contains(&header) && {
                        seen.push(header);
                        true
                    }
            });
            let mut parts: Vec<String> = listen.map(str::to_owned).into_iter().chain(sections).collect();
            if let Some((line, at)) = garbage {
                parts.insert(at.index(parts.len() + 1), line);
            }
            parts.concat()
        })
}

/// A refusal names a key the text contains (`postgres.pool_size: …`, `upstream[0].name: …`)
/// or says where the text is not TOML.
fn check_refusal(path: &Path, text: &str, message: &str) -> Result<(), TestCaseError> {
    if message.starts_with(&format!("{}:", path.display())) {
        prop_assert!(message.contains(": invalid TOML: "), "{message}");
        return Ok(());
    }
    let Some((key, why)) = message.split_once(": ") else {
        return Err(TestCaseError::fail(format!("no key named: {message}")));
    };
    prop_assert!(!why.is_empty(), "{message}");
    prop_assert!(!key.is_empty() && !key.contains(char::is_whitespace), "{message}");
    let root = key.split(['.', '[']).next().unwrap();
    prop_assert!(text.contains(root), "{message} names {root}, not in\n{text}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn a_file_loads_or_is_refused_naming_a_key_and_what_loads_prints_the_same_again(text in document()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        let config = match load(&path, &text) {
            Ok(config) => config,
            Err(message) => return check_refusal(&path, &text, &message),
        };
        let printed = config.to_redacted_toml();
        // The printed postgres.url is `<redacted>`, which is not a URL: a person re-running
        // `validate` on the print puts the URL back, as this does.
        let reload = printed.replace("url = \"<redacted>\"", "url = \"postgres://vigil@db:5432/app\"");
        let again = load(&path, &reload).map_err(|e| TestCaseError::fail(format!("{e}\nprinted:\n{printed}\nfrom:\n{text}")))?;
        prop_assert_eq!(again.to_redacted_toml(), printed, "from:\n{}", text);
    }

    #[test]
    fn arbitrary_text_never_panics_the_loader(text in "\\PC{0,200}|[ -~\n]{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        if let Err(message) = load(&path, &text) {
            check_refusal(&path, &text, &message)?;
        }
    }
}

/// `vigil validate` of `[system] enabled = false` once printed no `[system]` at all, so the
/// print, loaded again, turned the system check back on (found by the property above).
#[test]
fn a_disabled_system_check_prints_as_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.toml");
    let printed = load(&path, "[system]\nenabled = false\n").unwrap().to_redacted_toml();
    let again = load(&path, &printed).unwrap();
    assert!(
        again.enabled_checks().all(|c| c.name != "system"),
        "printed:\n{printed}"
    );
}
