//! Where the configuration comes from: the file named by `--config` or `VIGIL_CONFIG`, and the
//! environment.

use std::path::PathBuf;

/// Where the configuration comes from. Tests build one by hand, so they never touch the real
/// environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE` or `VIGIL_CONFIG`.
    pub file: Option<PathBuf>,
    /// The process environment (only `VIGIL_*` and `DATABASE_URL` are read).
    pub env: Vec<(String, String)>,
    /// Variables vigil reads whose name or value is not UTF-8: refused by [`load`], naming them.
    /// Other non-UTF-8 variables (vigil never reads them) are left alone.
    pub not_utf8: Vec<String>,
}

impl Sources {
    /// The real environment, with `flag_file` (from `--config`) winning over `VIGIL_CONFIG`.
    pub fn from_process(flag_file: Option<PathBuf>) -> Self {
        let mut env = Vec::new();
        let mut not_utf8 = Vec::new();
        // `vars()` panics on the first variable that is not UTF-8, even one vigil never reads.
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => env.push((name, value)),
                (Ok(name), Err(_)) if is_read(&name) => not_utf8.push(name),
                (Err(name), _) if is_read(&name.to_string_lossy()) => {
                    not_utf8.push(name.to_string_lossy().into_owned());
                }
                _ => {}
            }
        }
        let file = flag_file.or_else(|| {
            env.iter()
                .find(|(k, v)| k == "VIGIL_CONFIG" && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { file, env, not_utf8 }
    }
}

/// Whether vigil reads the environment variable `name`.
fn is_read(name: &str) -> bool {
    name.starts_with("VIGIL_") || name == "DATABASE_URL" || name == POD_IP
}

/// The downward API's pod address: `[fleet]` leaves it out of the peers. Read once, at load.
pub const POD_IP: &str = "POD_IP";
