//! The emitter's options as written in `connectors.toml` (`type = "elasticsearch"` or `"opensearch"`),
//! validated into [`ElasticsearchOptions`] when the configuration is loaded, so `kinesis-connector
//! check` reports every mistake without touching the network.
//!
//! ```toml
//! emitter = { type = "elasticsearch", url = "https://es.internal:9200", index = "logs-{yyyy.MM.dd}",
//!             auth = { type = "basic", username = "ingest", password = "${ES_PASSWORD}" },
//!             tls = { ca_file = "/etc/kc/es-ca.pem" } }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use elasticsearch::http::Url;
use kinesis_connectors_core::FieldPath;
use kinesis_connectors_core::units::{ByteSize, DurationText};
use serde::Deserialize;

use crate::error::ElasticsearchError;
use crate::template::IndexTemplate;

/// Default cap of one bulk request's body: 5 MiB, the size Elastic's tuning guide starts from.
pub const DEFAULT_MAX_BULK_BYTES: usize = 5 * 1024 * 1024;
/// Highest `max_bulk_bytes` accepted: Elasticsearch's default `http.max_content_length` (100 MiB).
/// (Amazon OpenSearch Service allows 10–100 MiB depending on the instance type.)
pub const MAX_BULK_BYTES_LIMIT: usize = 100 * 1024 * 1024;
/// Default cap of documents in one bulk request.
pub const DEFAULT_MAX_BULK_DOCUMENTS: usize = 5_000;
/// Highest `max_bulk_documents` accepted.
pub const MAX_BULK_DOCUMENTS_LIMIT: usize = 100_000;
/// Default number of bulk requests in flight at once, over all emit calls of one emitter.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 4;
/// Highest `max_concurrent_requests` accepted.
pub const MAX_CONCURRENT_REQUESTS_LIMIT: usize = 64;
/// Default time allowed for one HTTP request, connecting included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default SigV4 service name: `es` (Amazon OpenSearch Service domains; `aoss` for Serverless).
pub const DEFAULT_SIGV4_SERVICE: &str = "es";

/// A secret string (password, API key): the one of `core`, redacted in `Debug`, no `Display`.
pub use kinesis_connectors_core::kit::Secret;

/// The bulk action written for an item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create or replace the document.
    #[default]
    Index,
    /// Create the document; one that already exists (409) counts as delivered.
    Create,
    /// Merge the item into the document, creating it if missing (`doc_as_upsert`).
    Update,
    /// Delete the document (an absent one, 404, counts as delivered). The item's body is not sent.
    Delete,
}

impl Action {
    /// The action's name in the bulk API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    /// Parses an action name (as found in an `action_field`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "index" => Some(Self::Index),
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// Whether the action needs a document id (`update` and `delete` do).
    pub fn needs_id(self) -> bool {
        matches!(self, Self::Update | Self::Delete)
    }
}

/// Where a document's `_id` comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DocumentId {
    /// `{shard}-{sequence}-{subsequence}` of the item's record, and `-{index}` for the second and later
    /// items a transformer made of one record: redelivery overwrites, and the items of one record are
    /// documents of their own.
    #[default]
    Deterministic,
    /// The value of a field of the item (string or number).
    Field(FieldPath),
    /// No id: the server generates one. Not idempotent: a redelivered record is indexed twice.
    None,
}

/// How requests authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password (write `${ENV_VAR}` in the file).
        password: Secret,
    },
    /// An Elasticsearch API key (`Authorization: ApiKey ...`).
    ApiKey {
        /// The key's id; when absent, `key` is the encoded form (base64 of `id:api_key`).
        id: Option<String>,
        /// The key, or the encoded key.
        key: Secret,
    },
    /// AWS Signature Version 4 (Amazon OpenSearch Service), credentials from the standard AWS chain.
    AwsSigV4 {
        /// The domain's region; the pipeline's region when absent.
        region: Option<String>,
        /// `es` for managed domains, `aoss` for OpenSearch Serverless.
        service: String,
    },
}

impl Auth {
    /// The kind's name, as written in `type` (for logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic { .. } => "basic",
            Self::ApiKey { .. } => "api_key",
            Self::AwsSigV4 { .. } => "aws_sigv4",
        }
    }
}

/// Validated options of the emitter; see the module documentation for the TOML form.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "ElasticsearchToml")]
pub struct ElasticsearchOptions {
    /// The cluster's URL (`http://` or `https://`, optionally with a path prefix; no credentials).
    pub url: Url,
    /// The index each document goes to.
    pub index: IndexTemplate,
    /// Field whose date fills the index template's date pattern; the record's arrival time when absent.
    pub index_date_field: Option<FieldPath>,
    /// Where document ids come from.
    pub document_id: DocumentId,
    /// The action for items without an `action_field` value.
    pub action: Action,
    /// Field naming the action per item (`"index"`, `"create"`, `"update"`, `"delete"`).
    pub action_field: Option<FieldPath>,
    /// Most documents in one bulk request.
    pub max_bulk_documents: usize,
    /// Most bytes in one bulk request's body (a single larger document is sent alone).
    pub max_bulk_bytes: usize,
    /// Most bulk requests in flight at once, over all emit calls.
    pub max_concurrent_requests: usize,
    /// Time allowed for one HTTP request, connecting included.
    pub request_timeout: Duration,
    /// Authentication.
    pub auth: Auth,
    /// A PEM file of CA certificates trusted in addition to the public roots (self-signed clusters).
    pub tls_ca_file: Option<PathBuf>,
}

impl ElasticsearchOptions {
    /// Options with every default, for `url` and the index template `index`.
    pub fn new(url: &str, index: &str) -> Result<Self, ElasticsearchError> {
        Ok(Self {
            url: parse_url(url)?,
            index: IndexTemplate::parse(index)
                .map_err(|e| ElasticsearchError::config("index", e))?,
            index_date_field: None,
            document_id: DocumentId::Deterministic,
            action: Action::Index,
            action_field: None,
            max_bulk_documents: DEFAULT_MAX_BULK_DOCUMENTS,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            auth: Auth::None,
            tls_ca_file: None,
        })
    }

    /// Checks the rules between options (also applied to options built in code by the emitter).
    pub fn validate(&self) -> Result<(), ElasticsearchError> {
        if self.document_id == DocumentId::None && self.action.needs_id() {
            return Err(ElasticsearchError::config(
                "action",
                format!(
                    "{:?} needs a document id; set document_id = \"deterministic\" or \"field\"",
                    self.action.name()
                ),
            ));
        }
        if !(1..=MAX_BULK_DOCUMENTS_LIMIT).contains(&self.max_bulk_documents) {
            return Err(ElasticsearchError::config(
                "max_bulk_documents",
                format!("must be between 1 and {MAX_BULK_DOCUMENTS_LIMIT}"),
            ));
        }
        if !(1024..=MAX_BULK_BYTES_LIMIT).contains(&self.max_bulk_bytes) {
            return Err(ElasticsearchError::config(
                "max_bulk_bytes",
                "must be between 1KiB and 100MiB",
            ));
        }
        if !(1..=MAX_CONCURRENT_REQUESTS_LIMIT).contains(&self.max_concurrent_requests) {
            return Err(ElasticsearchError::config(
                "max_concurrent_requests",
                format!("must be between 1 and {MAX_CONCURRENT_REQUESTS_LIMIT}"),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ElasticsearchError::config(
                "request_timeout",
                "must be more than 0",
            ));
        }
        if self.index_date_field.is_some() && !self.index.uses_date() {
            return Err(ElasticsearchError::config(
                "index_date_field",
                "the index template has no date pattern (e.g. \"logs-{yyyy.MM.dd}\")",
            ));
        }
        Ok(())
    }
}

fn parse_url(text: &str) -> Result<Url, ElasticsearchError> {
    let url = Url::parse(text.trim()).map_err(|e| {
        ElasticsearchError::config(
            "url",
            format!("invalid URL {text:?} ({e}); write e.g. \"https://search.example.com:9200\""),
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ElasticsearchError::config(
            "url",
            format!("{text:?}: the scheme must be http or https"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs; they belong in `auth` with `${ENV}` interpolation.
        return Err(ElasticsearchError::config(
            "url",
            "must not hold credentials; use auth = { type = \"basic\", ... }",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ElasticsearchError::config(
            "url",
            format!("{text:?}: no query or fragment allowed"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ElasticsearchError::config(
            "url",
            format!("{text:?}: no host"),
        ));
    }
    Ok(url)
}

fn field(key: &'static str, path: &str) -> Result<FieldPath, ElasticsearchError> {
    FieldPath::parse(path).ok_or_else(|| {
        ElasticsearchError::config(
            key,
            format!("invalid field path {path:?}: segments must not be empty"),
        )
    })
}

/// The TOML table as written (checked into [`ElasticsearchOptions`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchToml {
    url: String,
    index: String,
    index_date_field: Option<String>,
    #[serde(default)]
    document_id: DocumentIdKind,
    document_id_field: Option<String>,
    #[serde(default)]
    action: Action,
    action_field: Option<String>,
    max_bulk_documents: Option<i64>,
    max_bulk_bytes: Option<ByteSize>,
    max_concurrent_requests: Option<i64>,
    request_timeout: Option<DurationText>,
    #[serde(default)]
    auth: AuthToml,
    tls: Option<TlsToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DocumentIdKind {
    #[default]
    Deterministic,
    Field,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum AuthToml {
    #[default]
    None,
    Basic {
        username: String,
        password: Secret,
    },
    ApiKey {
        id: Option<String>,
        key: Secret,
    },
    #[serde(rename = "aws_sigv4")]
    AwsSigV4 {
        region: Option<String>,
        service: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsToml {
    ca_file: PathBuf,
}

fn count(key: &'static str, v: Option<i64>, default: usize) -> Result<usize, ElasticsearchError> {
    match v {
        None => Ok(default),
        Some(n) => {
            usize::try_from(n).map_err(|_| ElasticsearchError::config(key, "must not be negative"))
        }
    }
}

impl TryFrom<ElasticsearchToml> for ElasticsearchOptions {
    type Error = ElasticsearchError;

    fn try_from(t: ElasticsearchToml) -> Result<Self, Self::Error> {
        let mut o = Self::new(&t.url, &t.index)?;
        o.index_date_field = t
            .index_date_field
            .as_deref()
            .map(|p| field("index_date_field", p))
            .transpose()?;
        o.document_id = match (t.document_id, t.document_id_field) {
            (DocumentIdKind::Field, Some(p)) => DocumentId::Field(field("document_id_field", &p)?),
            (DocumentIdKind::Field, None) => {
                return Err(ElasticsearchError::config(
                    "document_id_field",
                    "required when document_id = \"field\"",
                ));
            }
            (_, Some(_)) => {
                return Err(ElasticsearchError::config(
                    "document_id_field",
                    "only allowed with document_id = \"field\"",
                ));
            }
            (DocumentIdKind::Deterministic, None) => DocumentId::Deterministic,
            (DocumentIdKind::None, None) => DocumentId::None,
        };
        o.action = t.action;
        o.action_field = t
            .action_field
            .as_deref()
            .map(|p| field("action_field", p))
            .transpose()?;
        if o.action_field.is_some() && o.document_id == DocumentId::None {
            return Err(ElasticsearchError::config(
                "action_field",
                "per-item actions (update, delete) need document ids; set document_id",
            ));
        }
        o.max_bulk_documents = count(
            "max_bulk_documents",
            t.max_bulk_documents,
            DEFAULT_MAX_BULK_DOCUMENTS,
        )?;
        o.max_bulk_bytes = match t.max_bulk_bytes {
            None => DEFAULT_MAX_BULK_BYTES,
            Some(ByteSize(b)) => usize::try_from(b).unwrap_or(usize::MAX),
        };
        o.max_concurrent_requests = count(
            "max_concurrent_requests",
            t.max_concurrent_requests,
            DEFAULT_MAX_CONCURRENT_REQUESTS,
        )?;
        o.request_timeout = t.request_timeout.map_or(DEFAULT_REQUEST_TIMEOUT, |d| d.0);
        o.auth = match t.auth {
            AuthToml::None => Auth::None,
            AuthToml::Basic { username, password } => {
                if username.is_empty() {
                    return Err(ElasticsearchError::config(
                        "auth.username",
                        "must not be empty",
                    ));
                }
                Auth::Basic { username, password }
            }
            AuthToml::ApiKey { id, key } => {
                if key.expose().is_empty() {
                    return Err(ElasticsearchError::config("auth.key", "must not be empty"));
                }
                Auth::ApiKey { id, key }
            }
            AuthToml::AwsSigV4 { region, service } => {
                if region.as_deref().is_some_and(|r| {
                    r.is_empty()
                        || !r
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                }) {
                    return Err(ElasticsearchError::config(
                        "auth.region",
                        "must be an AWS region such as \"eu-west-1\"",
                    ));
                }
                let service = service.unwrap_or_else(|| DEFAULT_SIGV4_SERVICE.to_owned());
                if service.is_empty() {
                    return Err(ElasticsearchError::config(
                        "auth.service",
                        "must be \"es\" (managed domains) or \"aoss\" (Serverless)",
                    ));
                }
                Auth::AwsSigV4 { region, service }
            }
        };
        o.tls_ca_file = t.tls.map(|t| t.ca_file);
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ElasticsearchOptions, String> {
        let value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        ElasticsearchOptions::deserialize(value).map_err(|e| e.to_string())
    }

    const BASE: &str = "url = \"http://127.0.0.1:9200\"\nindex = \"logs\"\n";

    #[test]
    fn defaults() {
        let o = parse(BASE).unwrap();
        assert_eq!(o.document_id, DocumentId::Deterministic);
        assert_eq!(o.action, Action::Index);
        assert_eq!(o.max_bulk_bytes, 5 * 1024 * 1024);
        assert_eq!(o.max_concurrent_requests, DEFAULT_MAX_CONCURRENT_REQUESTS);
        assert_eq!(o.auth, Auth::None);
    }

    #[test]
    fn every_option() {
        let o = parse(
            r#"url = "https://search.example.com/es"
index = "logs-{yyyy.MM.dd}"
index_date_field = "event.ts"
document_id = "field"
document_id_field = "order.id"
action = "update"
action_field = "op"
max_bulk_documents = 100
max_bulk_bytes = "10MiB"
max_concurrent_requests = 2
request_timeout = "5s"
auth = { type = "aws_sigv4", region = "eu-west-1", service = "aoss" }
tls = { ca_file = "/etc/ca.pem" }
"#,
        )
        .unwrap();
        assert_eq!(
            o.document_id,
            DocumentId::Field(FieldPath::parse("order.id").unwrap())
        );
        assert_eq!(o.action, Action::Update);
        assert_eq!(o.max_bulk_bytes, 10 << 20);
        assert_eq!(o.request_timeout, Duration::from_secs(5));
        assert_eq!(
            o.auth,
            Auth::AwsSigV4 {
                region: Some("eu-west-1".into()),
                service: "aoss".into()
            }
        );
        assert_eq!(o.tls_ca_file, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases: &[(&str, &str)] = &[
            ("bogus = 1", "unknown field `bogus`"),
            ("document_id = \"field\"", "document_id_field: required"),
            (
                "document_id_field = \"x\"",
                "document_id_field: only allowed",
            ),
            (
                "document_id = \"none\"\naction = \"delete\"",
                "action: \"delete\" needs",
            ),
            (
                "document_id = \"none\"\naction_field = \"op\"",
                "action_field:",
            ),
            ("action = \"upsert\"", "unknown variant `upsert`"),
            (
                "max_bulk_bytes = \"200MiB\"",
                "max_bulk_bytes: must be between",
            ),
            (
                "max_bulk_documents = 0",
                "max_bulk_documents: must be between",
            ),
            (
                "max_concurrent_requests = -1",
                "max_concurrent_requests: must not be negative",
            ),
            (
                "index_date_field = \"ts\"",
                "index_date_field: the index template has no date",
            ),
            (
                "auth = { type = \"basic\", username = \"u\" }",
                "missing field `password`",
            ),
            (
                "auth = { type = \"basic\", username = \"u\", password = \"p\", x = 1 }",
                "unknown field `x`",
            ),
            (
                "auth = { type = \"kerberos\" }",
                "unknown variant `kerberos`",
            ),
            (
                "auth = { type = \"aws_sigv4\", region = \"EU West\" }",
                "auth.region",
            ),
            ("tls = { ca = \"x\" }", "unknown field `ca`"),
        ];
        for (extra, expected) in cases {
            let err = parse(&format!("{BASE}{extra}\n")).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        for (url, expected) in [
            ("localhost:9200", "url:"),
            ("ftp://h/", "scheme must be http or https"),
            ("https://u:p@h/", "must not hold credentials"),
            ("https://h/?x=1", "no query"),
        ] {
            let err = parse(&format!("url = \"{url}\"\nindex = \"i\"\n")).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
        let err = parse("url = \"http://h\"\nindex = \"Logs\"\n").unwrap_err();
        assert!(err.contains("index:") && err.contains("lowercase"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let o = parse(&format!(
            "{BASE}auth = {{ type = \"basic\", username = \"ingest\", password = \"hunter2-secret\" }}\n"
        ))
        .unwrap();
        let text = format!("{o:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("ingest") && text.contains("<redacted>"));
        let o = parse(&format!(
            "{BASE}auth = {{ type = \"api_key\", key = \"c2VjcmV0LWtleQ==\" }}\n"
        ))
        .unwrap();
        assert!(!format!("{o:?}").contains("c2VjcmV0LWtleQ=="));
    }
}
