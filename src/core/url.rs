//! `HttpUrl`: an http(s) URL as written and as requests are made with, parsed once at load.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// An absolute `http` or `https` URL naming a host and no credentials, parsed at load: the
/// text as written (for reasons and `/diag`) and the [`http::Uri`] requests are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written in the configuration.
    text: String,
    /// The same, parsed: what requests are made with.
    uri: http::Uri,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text.parse().map_err(|e| format!("not a URL ({e}): {text:?}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(format!("must be an http:// or https:// URL, got {text:?}")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("must name a host, got {text:?}"));
        }
        // A URL is shown in reasons, /diag and logs: credentials in it would be too. Not echoed.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("must not carry credentials (user:password@): they would show in reasons and /diag (upstreams take them in `headers`)".to_owned());
        }
        Ok(HttpUrl {
            text: text.to_owned(),
            uri,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HttpUrl::parse(&text).map_err(de::Error::custom)
    }
}
