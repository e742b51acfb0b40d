//! The loader: the file, the environment over it (`VIGIL_<SECTION>__<KEY>`, and the aliases the
//! kinds declare, such as `DATABASE_URL`), then each section handed to whoever reads it: the
//! agent's own sections here, each check kind's through its row ([`SectionKind`]). It carries,
//! through resolution, which keys the environment set, so that every error names them too.

use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::error::ConfigError;
use super::fleet::FleetKeys;
use super::kubernetes::{CLUSTER_KEYS, KubernetesEnv, KubernetesKeys};
use super::reader::Reader;
use super::section::{CheckSection, SectionKind, Shape};
use super::service::{DEFAULT_LISTEN, Diag, Shutdown};
use super::settings::{COMMON_KEYS, CheckSettings, CommonKeys, Defaults, Scope};
use super::sources::{POD_IP, Sources};
use super::{Config, Kinds};

/// The agent's own keys whose values are secrets (the kinds name theirs).
const SECRET_KEYS: [&str; 1] = ["diag.token"];

/// The agent's own top-level keys and tables, before and after the check kinds' tables in the
/// list an unknown key is answered with.
const OWN_KEYS_BEFORE: [&str; 4] = ["listen", "defaults", "shutdown", "diag"];
const OWN_KEYS_AFTER: [&str; 2] = ["kubernetes", "fleet"];

/// Loads and validates the configuration, reading the check sections through `kinds` (the
/// registry's rows, in the order the checks are listed).
pub fn load(sources: &Sources, kinds: Kinds) -> Result<Config, ConfigError> {
    if let Some(name) = sources.not_utf8.first() {
        return Err(ConfigError::Invalid {
            key: name.clone(),
            message: "the environment variable is not UTF-8 text".to_owned(),
        });
    }
    let mut root = match &sources.file {
        Some(path) => read_toml(path)?,
        None => toml::Table::new(),
    };
    let mut loader = Loader::default();
    loader.overlay_env(&mut root, &sources.env, kinds)?;
    loader.resolve(root, kinds)
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let shown = path.display().to_string();
    let text =
        crate::core::files::read_text(path, crate::core::files::CONFIG_CAP).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| line_column(&text, span.start));
        ConfigError::Syntax {
            path: shown,
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads the file's tables into the types the agent uses, naming the key (and the environment
/// variable that set it) in every refusal. What a section's keys mean and what they may be is
/// the section type's (its fields and its `validate`).
#[derive(Default)]
struct Loader {
    /// Reads the tables, naming keys.
    reader: Reader,
    /// `$POD_IP`, for `[fleet]`'s own address.
    pod_ip: Option<String>,
    /// What `[kubernetes]` takes its defaults from.
    kubernetes_env: KubernetesEnv,
}

impl Loader {
    /// Applies `VIGIL_<SECTION>__<KEY>`, `VIGIL_LISTEN` and the kinds' aliases over the file.
    fn overlay_env(
        &mut self,
        root: &mut toml::Table,
        env: &[(String, String)],
        kinds: Kinds,
    ) -> Result<(), ConfigError> {
        let mut vars: Vec<&(String, String)> = env.iter().collect();
        vars.sort();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix("VIGIL_") else {
                continue;
            };
            let path: Vec<String> = if rest == "LISTEN" {
                vec!["listen".to_owned()]
            } else if let Some((section, key)) = rest.split_once("__") {
                if section.is_empty() || key.is_empty() || key.contains("__") {
                    return Err(ConfigError::Invalid {
                        key: name.clone(),
                        message: "expected VIGIL_<SECTION>__<KEY>, such as VIGIL_POSTGRES__SATURATION_WARN".to_owned(),
                    });
                }
                vec![section.to_ascii_lowercase(), key.to_ascii_lowercase()]
            } else {
                // VIGIL_CONFIG, VIGIL_LOG_FORMAT: read elsewhere, not configuration keys.
                continue;
            };
            let dotted = path.join(".");
            let (table, key) = match path.as_slice() {
                [key] => (&mut *root, key),
                [section, key] => {
                    let entry = root
                        .entry(section.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    match entry {
                        toml::Value::Table(table) => (table, key),
                        _ => {
                            return Err(ConfigError::Invalid {
                                key: name.clone(),
                                message: format!("{section} is not a section that environment variables can set"),
                            });
                        }
                    }
                }
                _ => continue,
            };
            let secret = SECRET_KEYS.contains(&dotted.as_str())
                || kinds
                    .iter()
                    .any(|kind| path[0] == kind.table() && kind.secret_keys().contains(&key.as_str()));
            let value = match secret {
                true => toml::Value::String(raw.clone()),
                false => env_value(raw),
            };
            table.insert(key.clone(), value);
            self.reader.env_origin.insert(dotted, name.clone());
        }

        self.pod_ip = env.iter().find(|(k, _)| k == POD_IP).map(|(_, v)| v.clone());
        self.kubernetes_env = KubernetesEnv::read(env);
        for (kind, alias) in kinds.iter().filter_map(|k| Some((k, k.env_alias()?))) {
            let Some((_, value)) = env.iter().find(|(k, v)| k == alias.var && !v.is_empty()) else {
                continue;
            };
            let entry = root
                .entry(kind.table())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            // An explicit setting wins: a sidecar sharing the gateway's environment must not
            // have it replaced behind its back.
            if let toml::Value::Table(table) = entry
                && !alias.unless.iter().any(|key| table.contains_key(*key))
            {
                table.insert(alias.key.to_owned(), toml::Value::String(value.clone()));
                self.reader
                    .env_origin
                    .insert(format!("{}.{}", kind.table(), alias.key), alias.var.to_owned());
            }
        }
        Ok(())
    }

    /// `listen`, the default when absent.
    fn listen(&self, value: Option<toml::Value>) -> Result<SocketAddr, ConfigError> {
        match value {
            None => DEFAULT_LISTEN.parse().map_err(|e| self.reader.invalid("listen", e)),
            Some(toml::Value::String(text)) => text.parse().map_err(|_| {
                self.reader.invalid(
                    "listen",
                    format!("expected an address such as 0.0.0.0:9476, got {text:?}"),
                )
            }),
            Some(other) => Err(self.reader.invalid(
                "listen",
                format!("expected a string such as \"0.0.0.0:9476\", got {other}"),
            )),
        }
    }

    fn resolve(&mut self, mut root: toml::Table, kinds: Kinds) -> Result<Config, ConfigError> {
        let listen = self.listen(root.remove("listen"))?;
        let defaults: Defaults = self.table_or_default(&mut root, "defaults")?;
        defaults.validate().map_err(|e| self.reader.refuse(e))?;
        let shutdown: Shutdown = self.table_or_default(&mut root, "shutdown")?;
        shutdown.validate().map_err(|e| self.reader.refuse(e))?;
        let mut diag: Diag = self.table_or_default(&mut root, "diag")?;
        diag.resolve().map_err(|e| self.reader.refuse(e))?;
        let fleet = match root.remove("fleet") {
            None => None,
            Some(toml::Value::Table(table)) => {
                let keys: FleetKeys = self.reader.deserialize(table, "fleet")?;
                Some(
                    keys.resolve(listen, self.pod_ip.as_deref())
                        .map_err(|e| self.reader.refuse(e))?,
                )
            }
            Some(_) => return Err(self.reader.invalid("fleet", "expected a table, such as [fleet]")),
        };
        let kubernetes = self.cluster(&mut root)?;

        let mut checks = Vec::new();
        for kind in kinds {
            let first = checks.len();
            self.sections(&mut root, *kind, &defaults, &mut checks)?;
            let of_kind: Vec<&CheckSection> = checks[first..].iter().collect();
            kind.validate_all(&of_kind).map_err(|e| self.reader.refuse(e))?;
        }

        if let Some(key) = root.keys().next() {
            let mut expected: Vec<&str> = OWN_KEYS_BEFORE.to_vec();
            for kind in kinds {
                if !expected.contains(&kind.table()) {
                    expected.push(kind.table());
                }
            }
            for own in OWN_KEYS_AFTER {
                if !expected.contains(&own) {
                    expected.push(own);
                }
            }
            return Err(self
                .reader
                .invalid(key, format!("unknown key; expected one of {}", expected.join(", "))));
        }
        Ok(Config {
            listen,
            defaults,
            shutdown,
            diag,
            checks,
            fleet,
            kubernetes,
        })
    }

    /// `[kubernetes]`'s cluster keys, taken out of the table; what is left is the `pod` check's.
    fn cluster(&mut self, root: &mut toml::Table) -> Result<Option<super::Kubernetes>, ConfigError> {
        let table = match root.get_mut("kubernetes") {
            None => return Ok(None),
            Some(toml::Value::Table(table)) => table,
            Some(_) => {
                return Err(self
                    .reader
                    .invalid("kubernetes", "expected a table, such as [kubernetes]"));
            }
        };
        let mut cluster = toml::Table::new();
        for key in CLUSTER_KEYS {
            if let Some(value) = table.remove(key) {
                cluster.insert(key.to_owned(), value);
            }
        }
        self.reader.also_expected.insert("kubernetes".to_owned(), &CLUSTER_KEYS);
        let keys: KubernetesKeys = self.reader.deserialize(cluster, "kubernetes")?;
        let kubernetes = keys.resolve(&self.kubernetes_env).map_err(|e| self.reader.refuse(e))?;
        Ok(Some(kubernetes))
    }

    /// Every section of `kind` in `root`, in the file's order.
    fn sections(
        &self,
        root: &mut toml::Table,
        kind: &dyn SectionKind,
        defaults: &Defaults,
        out: &mut Vec<CheckSection>,
    ) -> Result<(), ConfigError> {
        let name = kind.table();
        match (kind.shape(), root.remove(name)) {
            (Shape::One, None) => Ok(()),
            (Shape::OnByDefault, None) => {
                out.push(self.section(kind, toml::Table::new(), name, defaults)?);
                Ok(())
            }
            (Shape::One | Shape::OnByDefault, Some(toml::Value::Table(table))) => {
                out.push(self.section(kind, table, name, defaults)?);
                Ok(())
            }
            (Shape::One | Shape::OnByDefault, Some(_)) => {
                Err(self.reader.invalid(name, format!("expected a table, such as [{name}]")))
            }
            (Shape::List, None) => Ok(()),
            (Shape::List, Some(toml::Value::Array(entries))) => {
                for (index, entry) in entries.into_iter().enumerate() {
                    let at = format!("{name}[{index}]");
                    let toml::Value::Table(table) = entry else {
                        return Err(self
                            .reader
                            .invalid(&at, format!("expected a table, such as [[{name}]]")));
                    };
                    out.push(self.section(kind, table, &at, defaults)?);
                }
                Ok(())
            }
            (Shape::List, Some(_)) => Err(self
                .reader
                .invalid(name, format!("expected a list of tables, such as [[{name}]]"))),
        }
    }

    /// One check section: its common keys inherit from `[defaults]`, the rest is the kind's.
    fn section(
        &self,
        kind: &dyn SectionKind,
        mut table: toml::Table,
        at: &str,
        defaults: &Defaults,
    ) -> Result<CheckSection, ConfigError> {
        let mut common = toml::Table::new();
        for key in COMMON_KEYS {
            if let Some(value) = table.remove(key) {
                common.insert(key.to_owned(), value);
            }
        }
        let common: CommonKeys = self.reader.deserialize(common, at)?;
        let (critical, scope): (bool, Scope) = kind.weight();
        let settings = CheckSettings {
            interval: common.interval.unwrap_or(defaults.interval),
            timeout: common.timeout.unwrap_or(defaults.timeout),
            failure_threshold: common.failure_threshold.unwrap_or(defaults.failure_threshold),
            success_threshold: common.success_threshold.unwrap_or(defaults.success_threshold),
            critical: common.critical.unwrap_or(critical),
            scope: common.scope.unwrap_or(scope),
        };
        settings.validate(at).map_err(|e| self.reader.refuse(e))?;
        kind.parse(table, at, settings, &self.reader)
    }

    fn table_or_default<T: DeserializeOwned + Default>(
        &self,
        root: &mut toml::Table,
        key: &str,
    ) -> Result<T, ConfigError> {
        match root.remove(key) {
            None => Ok(T::default()),
            Some(toml::Value::Table(table)) => self.reader.deserialize(table, key),
            Some(_) => Err(self.reader.invalid(key, format!("expected a table, such as [{key}]"))),
        }
    }
}

/// An environment value as TOML would read it (`0.7`, `true`, `[200, 204]`), else a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_give_line_and_column() {
        let (_dir, path) = crate::core::files::temp_file("vigil.toml", "listen = \"0.0.0.0:9476\"\n[system\n");
        let message = read_toml(&path).unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}:2:", path.display())), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
