//! The `emitter = { type = "webhook", ... }` options and their validation into [`WebhookSettings`].
//!
//! Options are checked when the configuration is loaded, so `kinesis-connector check` reports a
//! mistake (with its key) without sending anything.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kinesis_connectors_core::stages::LineFormat;
use kinesis_connectors_core::units::{ByteSize, DurationText};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// Default time allowed for one POST, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most items in one POST.
pub const DEFAULT_MAX_ITEMS_PER_REQUEST: usize = 500;
/// Highest `max_items_per_request` accepted.
pub const MAX_ITEMS_PER_REQUEST_LIMIT: usize = 100_000;
/// Default most body bytes in one POST (a single larger item is sent alone).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// A secret string (a token, an API-key header): redacted in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The options as written in `connectors.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookOptions {
    /// Where batches are POSTed (`http://` or `https://`).
    pub url: String,
    /// `data`: each item's JSON document; `envelope`: the record's metadata with the item.
    #[serde(default)]
    pub format: LineFormat,
    /// Sent as `Authorization: Bearer TOKEN`; write it as `${ENV_VAR}`.
    pub bearer_token: Option<Secret>,
    /// Extra request headers (values redacted in logs, so API keys may go here as `${ENV_VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Time allowed for one POST, connecting included (default `"10s"`).
    pub timeout: Option<DurationText>,
    /// Most items in one POST (default 500).
    pub max_items_per_request: Option<i64>,
    /// Most body bytes in one POST (default `"1MiB"`); a single larger item is sent alone.
    pub max_request_bytes: Option<ByteSize>,
}

/// The options, validated.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Where batches go.
    pub url: Url,
    /// How each item is written.
    pub format: LineFormat,
    /// Headers of every request (authorization included); values are marked sensitive.
    pub headers: HeaderMap,
    /// Time allowed for one POST.
    pub timeout: Duration,
    /// Most items in one POST.
    pub max_items_per_request: usize,
    /// Most body bytes in one POST.
    pub max_request_bytes: usize,
}

impl WebhookSettings {
    /// Settings with every default for `url`.
    pub fn new(url: &str) -> Result<Self, (String, String)> {
        WebhookOptions {
            url: url.to_owned(),
            format: LineFormat::default(),
            bearer_token: None,
            headers: BTreeMap::new(),
            timeout: None,
            max_items_per_request: None,
            max_request_bytes: None,
        }
        .validate()
    }
}

impl WebhookOptions {
    /// Checks the options; an error names its key (relative to the emitter table) and what is wrong.
    pub fn validate(self) -> Result<WebhookSettings, (String, String)> {
        let bad = |key: &str, message: String| (key.to_owned(), message);
        let url = Url::parse(self.url.trim())
            .map_err(|e| bad("url", format!("invalid URL {:?}: {e}", self.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("url", format!("{:?}: use http or https", self.url)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // A URL ends up in logs; credentials belong in bearer_token or headers, from ${ENV}.
            return Err(bad(
                "url",
                "must not hold credentials; use bearer_token or headers".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| bad("bearer_token", "not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(&key, "not a valid header name".into()))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| bad(&key, "not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            return Err(bad("timeout", "must be longer than 0s".into()));
        }
        let max_items_per_request = match self.max_items_per_request {
            None => DEFAULT_MAX_ITEMS_PER_REQUEST,
            Some(n) if (1..=MAX_ITEMS_PER_REQUEST_LIMIT as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(bad(
                    "max_items_per_request",
                    format!("must be between 1 and {MAX_ITEMS_PER_REQUEST_LIMIT}, got {n}"),
                ));
            }
        };
        let max_request_bytes = self
            .max_request_bytes
            .map_or(DEFAULT_MAX_REQUEST_BYTES, |b| b.0);
        if max_request_bytes < 1024 {
            return Err(bad("max_request_bytes", "must be at least 1KiB".into()));
        }
        Ok(WebhookSettings {
            url,
            format: self.format,
            headers,
            timeout,
            max_items_per_request,
            max_request_bytes: usize::try_from(max_request_bytes).unwrap_or(usize::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> Result<WebhookSettings, (String, String)> {
        let o: WebhookOptions =
            toml::from_str(text).map_err(|e| ("parse".into(), e.to_string()))?;
        o.validate()
    }

    #[test]
    fn defaults_and_errors_name_their_key() {
        let s = options("url = \"http://127.0.0.1:8080/hook\"").unwrap();
        assert_eq!(s.max_items_per_request, DEFAULT_MAX_ITEMS_PER_REQUEST);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.format, LineFormat::Data);
        assert_eq!(options("url = \"ftp://x/\"").unwrap_err().0, "url");
        assert_eq!(options("url = \"http://u:p@x/\"").unwrap_err().0, "url");
        assert_eq!(options("url = \"nope\"").unwrap_err().0, "url");
        let e = options("url = \"http://x/\"\nmax_items_per_request = 0").unwrap_err();
        assert_eq!(e.0, "max_items_per_request");
        let e = options("url = \"http://x/\"\ntimeout = \"0s\"").unwrap_err();
        assert_eq!(e.0, "timeout");
        let e = options("url = \"http://x/\"\nheaders = { \"bad name\" = \"v\" }").unwrap_err();
        assert_eq!(e.0, "headers.bad name");
        assert_eq!(
            options("url = \"http://x/\"\ncolour = 1").unwrap_err().0,
            "parse"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let text = "url = \"http://x/\"\nbearer_token = \"tok-123\"\nheaders = { X-Api-Key = \"key-456\" }";
        let o: WebhookOptions = toml::from_str(text).unwrap();
        let debug = format!("{o:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("key-456"),
            "{debug}"
        );
        let s = o.validate().unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("key-456"),
            "{debug}"
        );
        assert_eq!(s.headers["authorization"], "Bearer tok-123");
        assert_eq!(s.headers["x-api-key"], "key-456");
    }
}
