//! What a check kind is made of, and the one adapter that makes it a row of the registry.
//!
//! A kind is one folder under `checks/`: its section's type (`config.rs`), its metrics, its
//! build, and a unit type implementing [`CheckKind`] that says which table it reads, its defaults and
//! how its section is checked and built. [`Registered`] turns that into a [`Row`]: the loader
//! reads the kind's sections through it (`config::SectionKind`) and `build_all` builds them
//! through it, so that nothing outside the folder and the registry names the kind.

use std::any::Any;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BuildContext, BuildError, Scheduled};
use crate::config::{CheckSection, CheckSettings, EnvAlias, Invalid, Keys, Reader, Scope, SectionKind, Shape};

/// A check kind, implemented by a unit type in the kind's folder.
pub(crate) trait CheckKind: Sync + 'static {
    /// The section as written: what its table deserializes into.
    type Keys: DeserializeOwned;
    /// The section parsed and validated: what the check is built from, and what is printed
    /// (secrets redacted) by `vigil validate` and `/diag`.
    type Section: Serialize + PartialEq + Debug + Send + Sync + 'static;

    /// The table the section is read from.
    const TABLE: &'static str;
    const SHAPE: Shape = Shape::One;
    /// `critical` where the section does not say.
    const CRITICAL: bool;
    /// `scope` where the section does not say.
    const SCOPE: Scope;
    /// An environment variable that stands for one of the section's keys.
    const ENV_ALIAS: Option<&'static EnvAlias> = None;
    /// Keys whose values are secrets.
    const SECRET_KEYS: &'static [&'static str] = &[];

    /// The check's name (`/readyz` lines, metric labels).
    fn name(_section: &Self::Section) -> String {
        Self::TABLE.to_owned()
    }

    /// Whether a configured section runs.
    fn enabled(_section: &Self::Section) -> bool {
        true
    }

    /// The keys of the section at `at` (`postgres`, `upstream[2]`), parsed and validated.
    fn resolve(keys: Self::Keys, at: &str, settings: &CheckSettings) -> Result<Self::Section, Invalid>;

    /// What must hold across the kind's sections, in the file's order.
    fn validate_all(_sections: &[&Self::Section]) -> Result<(), Invalid> {
        Ok(())
    }

    /// The TCP ports of the server a check of this section connects to (see
    /// [`Keys::remote_ports`](crate::config::Keys::remote_ports)).
    fn remote_ports(_section: &Self::Section) -> Vec<u16> {
        Vec::new()
    }

    /// The section with what it takes from the others filled in, once every section is read
    /// (`[sockets] ports` defaults to `[postgres]`'s port); `None`: nothing to fill in. Read
    /// only: a section learns facts of the others' keys, never their checks.
    fn complete(_section: &Self::Section, _all: &[CheckSection]) -> Option<Self::Section> {
        None
    }

    /// The check of one section, named `name`, ready for the scheduler.
    fn build(
        section: &Self::Section,
        settings: &CheckSettings,
        name: &str,
        cx: &BuildContext<'_>,
    ) -> Result<Scheduled, BuildError>;
}

/// A row of the registry: a kind as the loader and `build_all` see it.
pub(crate) trait Row: SectionKind {
    fn build(&self, section: &CheckSection, cx: &BuildContext<'_>) -> Result<Scheduled, BuildError>;
    /// `section` completed from `all` ([`CheckKind::complete`]); `None`: as it is.
    fn complete(&self, section: &CheckSection, all: &[CheckSection]) -> Option<CheckSection>;
}

/// The row of kind `K`.
pub(crate) struct Registered<K>(PhantomData<K>);

impl<K: CheckKind> Registered<K> {
    pub(crate) const ROW: Registered<K> = Registered(PhantomData);
}

/// A section of kind `K`, behind `config::Keys`.
pub(crate) struct Typed<K: CheckKind>(pub(crate) K::Section);

impl<K: CheckKind> Debug for Typed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<K: CheckKind> Keys for Typed<K> {
    fn enabled(&self) -> bool {
        K::enabled(&self.0)
    }

    fn shown(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }

    fn same(&self, other: &dyn Keys) -> bool {
        other
            .as_any()
            .downcast_ref::<Typed<K>>()
            .is_some_and(|other| other.0 == self.0)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn remote_ports(&self) -> Vec<u16> {
        K::remote_ports(&self.0)
    }
}

impl<K: CheckKind> SectionKind for Registered<K> {
    fn table(&self) -> &'static str {
        K::TABLE
    }

    fn shape(&self) -> Shape {
        K::SHAPE
    }

    fn weight(&self) -> (bool, Scope) {
        (K::CRITICAL, K::SCOPE)
    }

    fn env_alias(&self) -> Option<&'static EnvAlias> {
        K::ENV_ALIAS
    }

    fn secret_keys(&self) -> &'static [&'static str] {
        K::SECRET_KEYS
    }

    fn parse(
        &self,
        table: toml::Table,
        at: &str,
        settings: CheckSettings,
        reader: &Reader,
    ) -> Result<CheckSection, crate::config::ConfigError> {
        let keys: K::Keys = reader.deserialize(table, at)?;
        let section = K::resolve(keys, at, &settings).map_err(|e| reader.refuse(e))?;
        Ok(CheckSection {
            table: K::TABLE,
            shape: K::SHAPE,
            name: K::name(&section),
            settings,
            keys: Arc::new(Typed::<K>(section)),
        })
    }

    fn validate_all(&self, sections: &[&CheckSection]) -> Result<(), Invalid> {
        let typed: Vec<&K::Section> = sections
            .iter()
            .filter_map(|s| s.keys::<Typed<K>>())
            .map(|t| &t.0)
            .collect();
        K::validate_all(&typed)
    }
}

impl<K: CheckKind> Row for Registered<K> {
    fn build(&self, section: &CheckSection, cx: &BuildContext<'_>) -> Result<Scheduled, BuildError> {
        let typed = section
            .keys::<Typed<K>>()
            .ok_or_else(|| BuildError::new(&section.name, format!("not a [{}] section", K::TABLE)))?;
        K::build(&typed.0, &section.settings, &section.name, cx)
    }

    fn complete(&self, section: &CheckSection, all: &[CheckSection]) -> Option<CheckSection> {
        let completed = K::complete(&section.keys::<Typed<K>>()?.0, all)?;
        Some(CheckSection {
            keys: Arc::new(Typed::<K>(completed)),
            ..section.clone()
        })
    }
}
