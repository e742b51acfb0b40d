//! The configuration loader on arbitrary files: no panic; a refusal names a key or says the
//! file is not TOML; what loads prints (`vigil validate`) a configuration that loads again to
//! the same print.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil::checks::registry;
use vigil::config::{self, Sources};

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("vigil-fuzz-config-{}.toml", std::process::id())))
}

fn load(text: &[u8]) -> Result<config::Config, String> {
    std::fs::write(path(), text).unwrap();
    registry::load(&Sources {
        file: Some(path().clone()),
        ..Default::default()
    })
    .map_err(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let config = match load(data) {
        Ok(config) => config,
        Err(message) => {
            let shown = path().display().to_string();
            if let Some(rest) = message.strip_prefix(&shown) {
                assert!(
                    rest.contains(": invalid TOML: ") || rest.contains("cannot read"),
                    "{message}"
                );
            } else {
                let (key, why) = message.split_once(": ").expect("an error names its key");
                assert!(!key.is_empty() && !why.is_empty(), "{message}");
            }
            return;
        }
    };
    let printed = config.to_redacted_toml();
    let reload = printed.replace("url = \"<redacted>\"", "url = \"postgres://vigil@db:5432/app\"");
    let again = load(reload.as_bytes()).unwrap_or_else(|e| panic!("{e}\nprinted:\n{printed}"));
    assert_eq!(again.to_redacted_toml(), printed);
});
