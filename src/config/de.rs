//! Serde helpers for the value types every section uses: durations written as `250ms`, `5s`,
//! `2m`; an HTTP method; a table of headers whose values are secrets; and secrets, refused
//! without quoting them.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::core::secret::Secret;

/// What a secret of the wrong type is refused with: serde's own message quotes the value
/// (`invalid type: integer `12345678``).
pub(crate) const SECRET_NOT_A_STRING: &str = "must be a string (the value is not shown: it is a secret)";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer)
            .map(Secret::new)
            .map_err(|_| de::Error::custom(SECRET_NOT_A_STRING))
    }
}

/// Serde for durations written as `250ms`, `5s`, `2m`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::core::fmt::duration(*value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Other(toml::Value),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => parse(&text).map_err(de::Error::custom),
            Raw::Other(value) => Err(de::Error::custom(format!(
                "expected a duration such as \"250ms\", \"5s\" or \"2m\", got {value}"
            ))),
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|_| format!("expected a duration such as \"250ms\", \"5s\" or \"2m\", got {text:?}"))
    }
}

/// Serde for optional durations.
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::duration::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(deserializer).map(Some)
    }
}

/// Serde for an upstream's `method`: one of the methods a health endpoint answers.
pub(crate) mod method {
    use http::Method;
    use serde::{Deserialize, Deserializer, Serializer, de};

    const ALLOWED: [Method; 5] = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::OPTIONS];

    pub(crate) fn serialize<S: Serializer>(value: &Method, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Method, D::Error> {
        let text = String::deserialize(deserializer)?;
        ALLOWED
            .into_iter()
            .find(|method| method.as_str() == text)
            .ok_or_else(|| de::Error::custom(format!("must be one of GET, HEAD, POST, PUT, OPTIONS, got {text:?}")))
    }
}

/// Serde for an upstream's `headers`: a table of header name to value, read into the
/// [`http`] types in the file's order, every value marked sensitive; printed with every value
/// `<redacted>`. No message quotes a value.
pub(crate) mod headers {
    use std::fmt;

    use http::{HeaderName, HeaderValue};
    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::core::secret::Secret;

    pub(crate) fn serialize<S: Serializer>(
        headers: &[(HeaderName, HeaderValue)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(headers.len()))?;
        for (name, _) in headers {
            map.serialize_entry(name.as_str(), &Secret::new(()))?;
        }
        map.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, D::Error> {
        deserializer.deserialize_map(Headers)
    }

    struct Headers;

    impl<'de> Visitor<'de> for Headers {
        type Value = Vec<(HeaderName, HeaderValue)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of header names to values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut headers = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| de::Error::custom(format!("not a valid header name: {name:?}")))?;
                let SensitiveValue(value) = map.next_value()?;
                headers.push((header, value));
            }
            Ok(headers)
        }
    }

    /// A header value, refused without being quoted.
    struct SensitiveValue(HeaderValue);

    impl<'de> Deserialize<'de> for SensitiveValue {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer).map_err(|_| de::Error::custom(super::SECRET_NOT_A_STRING))?;
            let mut value = HeaderValue::from_str(&text).map_err(|_| de::Error::custom("not a valid header value"))?;
            value.set_sensitive(true);
            Ok(SensitiveValue(value))
        }
    }
}
