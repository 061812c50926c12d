//! The `emitter = { type = "webhook", ... }` options and their check into [`WebhookSettings`], through
//! the stage contract of `core`: `kinesis-connector check` reports a mistake by its full key
//! (`emitter.max_items_per_request`) without sending anything.

use std::collections::BTreeMap;
use std::time::Duration;

use kinesis_connectors_core::contract::{OptionError, StageConfig, StageContext};
use kinesis_connectors_core::kit::{self, Secret};
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

/// The options, checked.
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

/// A header value marked sensitive (never printed).
fn secret_header(key: &str, value: &str) -> Result<HeaderValue, OptionError> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| OptionError::at(key, "not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl WebhookOptions {
    /// Checks the options; an error names its key inside the emitter's table.
    pub fn validate(self) -> Result<WebhookSettings, OptionError> {
        let bad = |message: String| OptionError::at("url", message);
        let url = Url::parse(self.url.trim())
            .map_err(|e| bad(format!("invalid URL {:?}: {e}", self.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad(format!("{:?}: use http or https", self.url)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // A URL ends up in logs; credentials belong in bearer_token or headers, from ${ENV}.
            return Err(bad(
                "must not hold credentials; use bearer_token or headers".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer_token {
            let value = format!("Bearer {}", token.expose());
            headers.insert(AUTHORIZATION, secret_header("bearer_token", &value)?);
        }
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OptionError::at(&key, "not a valid header name"))?;
            headers.insert(name, secret_header(&key, value.expose())?);
        }
        Ok(WebhookSettings {
            url,
            format: self.format,
            headers,
            timeout: kit::duration("timeout", self.timeout, DEFAULT_TIMEOUT)?,
            max_items_per_request: kit::count(
                "max_items_per_request",
                self.max_items_per_request,
                DEFAULT_MAX_ITEMS_PER_REQUEST,
                1..=MAX_ITEMS_PER_REQUEST_LIMIT,
            )?,
            max_request_bytes: kit::bytes(
                "max_request_bytes",
                self.max_request_bytes,
                DEFAULT_MAX_REQUEST_BYTES,
                1024..=u64::MAX,
            )?,
        })
    }
}

impl StageConfig for WebhookSettings {
    const TYPE: &'static str = "webhook";
    type Options = WebhookOptions;
    fn check(options: WebhookOptions, _: &StageContext) -> Result<Self, OptionError> {
        options.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> Result<WebhookSettings, OptionError> {
        let o: WebhookOptions =
            toml::from_str(text).map_err(|e| OptionError::at("parse", e.to_string()))?;
        o.validate()
    }

    #[test]
    fn defaults_and_errors_name_their_key() {
        let s = options("url = \"http://127.0.0.1:8080/hook\"").unwrap();
        assert_eq!(s.max_items_per_request, DEFAULT_MAX_ITEMS_PER_REQUEST);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.format, LineFormat::Data);
        assert_eq!(options("url = \"ftp://x/\"").unwrap_err().key, "url");
        assert_eq!(options("url = \"http://u:p@x/\"").unwrap_err().key, "url");
        assert_eq!(options("url = \"nope\"").unwrap_err().key, "url");
        let e = options("url = \"http://x/\"\nmax_items_per_request = 0").unwrap_err();
        assert_eq!(e.key, "max_items_per_request");
        let e = options("url = \"http://x/\"\ntimeout = \"0s\"").unwrap_err();
        assert_eq!(e.key, "timeout");
        let e = options("url = \"http://x/\"\nheaders = { \"bad name\" = \"v\" }").unwrap_err();
        assert_eq!(e.key, "headers.bad name");
        assert_eq!(
            options("url = \"http://x/\"\ncolour = 1").unwrap_err().key,
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
