//! An example of a custom [`Transformer`]: Apache HTTP Server access-log lines (Common or Combined
//! Log Format) parsed into JSON documents.
//!
//! ```text
//! 203.0.113.9 - alice [10/Oct/2026:13:55:36 -0700] "GET /shop?id=7 HTTP/1.1" 200 2326 "https://example.com/" "Mozilla/5.0"
//! ```
//! becomes
//! ```json
//! {"remote_host":"203.0.113.9","ident":null,"user":"alice","time":"2026-10-10T20:55:36Z",
//!  "method":"GET","path":"/shop?id=7","protocol":"HTTP/1.1","request":"GET /shop?id=7 HTTP/1.1",
//!  "status":200,"bytes":2326,"referer":"https://example.com/","user_agent":"Mozilla/5.0"}
//! ```
//!
//! A `-` becomes `null`; `time` is RFC 3339 in UTC; `referer` and `user_agent` are present only in the
//! Combined format. A record may hold several lines (one item each). A line that is not an access-log
//! line fails the record, which then goes to the dead letter with the reason — never silently dropped.
//!
//! The binary (`src/main.rs`) registers it as `transformer = { type = "apache_access_log" }`.
#![warn(missing_docs, unreachable_pub)]

mod parse;

use kinesis_connectors_core::contract::{
    OptionError, StageConfig, StageContext, TransformerConfig,
};
use kinesis_connectors_core::{Item, Record, TransformError, Transformer};
use serde::Deserialize;

pub use parse::{AccessLogLine, ParseError, parse_line};

/// The transformer's options (`transformer = { type = "apache_access_log", ... }`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApacheLogOptions {
    /// Skip blank lines instead of failing the record (default `true`).
    pub skip_blank_lines: Option<bool>,
}

/// Parses access-log lines into JSON items; see the crate documentation.
#[derive(Clone, Debug)]
pub struct ApacheLogTransformer {
    skip_blank_lines: bool,
}

impl ApacheLogTransformer {
    /// A transformer with `options`.
    pub fn new(options: ApacheLogOptions) -> Self {
        Self {
            skip_blank_lines: options.skip_blank_lines.unwrap_or(true),
        }
    }
}

impl Default for ApacheLogTransformer {
    fn default() -> Self {
        Self::new(ApacheLogOptions::default())
    }
}

/// Registers the transformer as `type = "apache_access_log"` (what the binary does).
#[cfg(feature = "cli")]
pub fn register(registry: &mut kinesis_connector::Registry) {
    registry.transformer::<ApacheLogTransformer>();
}

impl StageConfig for ApacheLogTransformer {
    const TYPE: &'static str = "apache_access_log";
    type Options = ApacheLogOptions;
    fn check(options: ApacheLogOptions, _: &StageContext) -> Result<Self, OptionError> {
        Ok(Self::new(options))
    }
}

impl TransformerConfig for ApacheLogTransformer {
    fn build(self, _: &StageContext) -> std::sync::Arc<dyn Transformer<Item>> {
        std::sync::Arc::new(self)
    }
}

impl Transformer<Item> for ApacheLogTransformer {
    fn transform(&self, record: &Record, out: &mut Vec<Item>) -> Result<(), TransformError> {
        let text = std::str::from_utf8(&record.data)
            .map_err(|e| TransformError::new(format!("not UTF-8: {e}")))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() && self.skip_blank_lines {
                continue;
            }
            let parsed = parse_line(line)
                .map_err(|e| TransformError::new(format!("line {}: {e}", n + 1)))?;
            out.push(Item::from_value(&parsed.to_json()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kinesis_connectors_core::testing::record;

    use super::*;

    #[test]
    fn each_line_becomes_one_json_item() {
        let data = "1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 5\n\n\
                    5.6.7.8 - bob [01/Jan/2026:00:00:01 +0100] \"POST /api HTTP/2.0\" 201 -\n";
        let mut out = Vec::new();
        ApacheLogTransformer::default()
            .transform(&record("s", 1, data.as_bytes()), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2, "blank lines skipped");
        let second = out[1].to_value().unwrap();
        assert_eq!(second["user"], "bob");
        assert_eq!(second["time"], "2025-12-31T23:00:01Z");
        assert_eq!(second["bytes"], serde_json::Value::Null);
        assert!(out.iter().all(Item::is_json));
    }

    #[test]
    fn a_bad_line_fails_the_record_with_its_line_number() {
        let data =
            "1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 5\nnot a log line\n";
        let mut out = Vec::new();
        let e = ApacheLogTransformer::default()
            .transform(&record("s", 1, data.as_bytes()), &mut out)
            .unwrap_err();
        assert!(e.reason.starts_with("line 2:"), "{}", e.reason);
        let strict = ApacheLogTransformer::new(ApacheLogOptions {
            skip_blank_lines: Some(false),
        });
        assert!(strict.transform(&record("s", 1, b"\n"), &mut out).is_err());
        assert!(
            ApacheLogTransformer::default()
                .transform(&record("s", 1, b"\xff"), &mut out)
                .is_err()
        );
    }

    /// The binary's registration, as `check` sees it: the type is known and its options are validated.
    #[cfg(feature = "cli")]
    #[test]
    fn registered_it_validates_with_the_connector_configuration() {
        use kinesis_connector::config::Config;
        let mut registry = kinesis_connector::Registry::with_builtins();
        register(&mut registry);
        let text = |options: &str| {
            format!(
                "[pipelines.p]\nsource = {{ stream = \"logs\" }}\ntransformer = {{ type = \"apache_access_log\"{options} }}\nemitter = {{ type = \"null\" }}\n"
            )
        };
        let ok = Config::parse("t.toml", &text(""), &registry, &|_| None).unwrap();
        assert_eq!(ok.pipelines["p"].transformer_type, "apache_access_log");
        assert!(
            Config::parse(
                "t.toml",
                &text(", skip_blank_lines = false"),
                &registry,
                &|_| None
            )
            .is_ok()
        );
        let e = Config::parse("t.toml", &text(", colour = 1"), &registry, &|_| None)
            .err()
            .unwrap();
        assert_eq!(e.key.as_deref(), Some("transformer.colour"));
    }
}
