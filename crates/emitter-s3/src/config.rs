//! The `emitter = { type = "s3", ... }` options.

use kinesis_connectors_core::contract::OptionError;
use kinesis_connectors_core::units::ByteSize;
use serde::{Deserialize, Serialize};

use crate::key::KeyTemplate;

/// Default object key: date path from the first record's arrival, then shard and sequence range.
pub const DEFAULT_KEY: &str =
    "{prefix}{pipeline}/{yyyy}/{MM}/{dd}/{HH}/{shard}-{first_sequence}-{last_sequence}{ext}";
/// Default part size of multipart uploads (and the size above which an object is uploaded in parts).
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Smallest part S3 accepts (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Rows per Parquet row group.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 64 * 1024;

/// How items are written into an object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON document per line (items must be JSON).
    #[default]
    Ndjson,
    /// The items' bytes, each followed by `delimiter`.
    Raw,
    /// Apache Parquet (items must be JSON objects); schema given or inferred from the first batch.
    Parquet,
    /// CSV rows (RFC 4180; items must be JSON objects), the fields named in `csv.columns` in order: the
    /// delimited text a Redshift `COPY ... CSV` loads.
    Csv,
}

/// `csv = { columns = [...], delimiter = "," }`: how `format = "csv"` writes rows.
///
/// Each row holds the named top-level fields of a JSON object, in order. Strings are always quoted
/// (`"` doubled inside); numbers and booleans are written as their JSON text; arrays and objects as
/// their JSON text, quoted; a missing or `null` field is an empty, unquoted field (what `COPY ... CSV`
/// reads as NULL in PostgreSQL, and in Redshift for non-character columns).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// The top-level JSON fields written as columns, in order.
    pub columns: Vec<String>,
    /// The field delimiter: one ASCII character other than `"`, CR or LF (default `,`).
    #[serde(default = "default_csv_delimiter")]
    pub delimiter: char,
}

fn default_csv_delimiter() -> char {
    ','
}

/// Compression of the object (for Parquet: the column codec).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip (`.gz`, `Content-Encoding: gzip`).
    Gzip,
    /// Zstandard (`.zst`, `Content-Encoding: zstd`).
    Zstd,
    /// Snappy (Parquet only).
    Snappy,
}

/// A Parquet column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text; accepts JSON strings.
    String,
    /// 64-bit integer; accepts JSON integers.
    Int64,
    /// 64-bit float; accepts JSON numbers.
    Float64,
    /// Boolean; accepts JSON booleans.
    Boolean,
    /// Milliseconds since the epoch, UTC; accepts RFC 3339 strings and integer milliseconds.
    Timestamp,
    /// Any JSON value, stored as its JSON text.
    Json,
}

/// One column of a configured Parquet schema.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The top-level JSON field (and column name).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

/// The options of the S3 emitter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Key prefix (e.g. `archive/`), available to the key template as `{prefix}`.
    #[serde(default)]
    pub prefix: String,
    /// Object key template; see [`KeyTemplate`].
    #[serde(default = "default_key")]
    pub key: String,
    /// Region of the bucket (default: the pipeline's).
    pub region: Option<String>,
    /// Endpoint override (S3-compatible servers, local emulators); path-style addressing is then used.
    pub endpoint: Option<String>,
    /// Force path-style addressing (default: on with an endpoint override).
    pub force_path_style: Option<bool>,
    /// `ndjson`, `raw` or `parquet`.
    #[serde(default)]
    pub format: Format,
    /// Delimiter after each item with `format = "raw"` (default a newline).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// `none`, `gzip`, `zstd` (Parquet: `none`, `snappy`, `gzip`, `zstd`).
    #[serde(default)]
    pub compression: Compression,
    /// Parquet schema; inferred from the first batch when absent.
    pub schema: Option<Vec<Column>>,
    /// The columns and delimiter of `format = "csv"` (required with it).
    pub csv: Option<CsvOptions>,
    /// Multipart part size (5 MiB – 5 GiB); objects larger than one part are uploaded in parts,
    /// streaming, so memory per object in flight stays near this size.
    pub part_size: Option<ByteSize>,
    /// Write a Redshift manifest (JSON listing the batch's objects) under this prefix for each batch.
    pub manifest_prefix: Option<String>,
    /// Storage class (e.g. `STANDARD_IA`); default the bucket's.
    pub storage_class: Option<String>,
    /// Create the bucket at start-up if it does not exist (for development and demos; off by default).
    #[serde(default)]
    pub create_bucket: bool,
}

fn default_key() -> String {
    DEFAULT_KEY.to_owned()
}

fn default_delimiter() -> String {
    "\n".to_owned()
}

/// Options after cross-field validation.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// The options as given.
    pub options: S3Options,
    /// The parsed key template.
    pub key: KeyTemplate,
    /// The part size in bytes.
    pub part_size: usize,
}

impl S3Options {
    /// Checks the options; errors name the key (relative to the emitter table).
    pub fn validate(self) -> Result<S3Settings, OptionError> {
        let bad = |k: &str, m: String| Err(OptionError::at(k, m));
        if !valid_bucket(&self.bucket) {
            return bad("bucket", format!("invalid bucket name {:?}", self.bucket));
        }
        let key = KeyTemplate::parse(&self.key).map_err(|m| OptionError::at("key", m))?;
        if !key.is_unique_per_batch() {
            return bad(
                "key",
                "the key template must contain {shard} and {first_sequence} (or {batch_id}) so every batch gets its own object".into(),
            );
        }
        if let Some(e) = &self.endpoint
            && !(e.is_empty() || e.starts_with("http://") || e.starts_with("https://"))
        {
            return bad(
                "endpoint",
                format!("invalid endpoint {e:?}: expected an http:// or https:// URL"),
            );
        }
        match (self.format, self.compression) {
            (Format::Parquet, _) => {}
            (_, Compression::Snappy) => {
                return bad(
                    "compression",
                    "snappy is only for format = \"parquet\"".into(),
                );
            }
            _ => {}
        }
        if self.schema.is_some() && self.format != Format::Parquet {
            return bad(
                "schema",
                "a schema is only used with format = \"parquet\"".into(),
            );
        }
        match (&self.csv, self.format) {
            (None, Format::Csv) => {
                return bad(
                    "csv",
                    "format = \"csv\" needs csv = { columns = [...] }".into(),
                );
            }
            (Some(_), f) if f != Format::Csv => {
                return bad(
                    "csv",
                    "csv options are only used with format = \"csv\"".into(),
                );
            }
            (Some(c), _) => {
                if c.columns.is_empty() {
                    return bad("csv.columns", "list at least one column".into());
                }
                if !c.delimiter.is_ascii() || matches!(c.delimiter, '"' | '\r' | '\n') {
                    return bad(
                        "csv.delimiter",
                        format!(
                            "{:?} cannot delimit CSV fields: use one ASCII character other than a quote or a line break",
                            c.delimiter
                        ),
                    );
                }
            }
            (None, _) => {}
        }
        if let Some(cols) = &self.schema {
            if cols.is_empty() {
                return bad("schema", "list at least one column".into());
            }
            let mut seen = std::collections::HashSet::new();
            for c in cols {
                if !seen.insert(&c.name) {
                    return bad("schema", format!("column {:?} appears twice", c.name));
                }
            }
        }
        let part_size = self.part_size.map_or(DEFAULT_PART_SIZE, |p| p.0);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return bad(
                "part_size",
                "must be between 5MiB and 5GiB (S3's part size limits)".into(),
            );
        }
        Ok(S3Settings {
            options: self,
            key,
            part_size: part_size as usize,
        })
    }
}

/// S3 bucket naming rules (3–63 lower-case letters, digits, dots, hyphens; starts and ends alphanumeric).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: &str) -> Result<S3Settings, OptionError> {
        let text = format!("bucket = \"my-bucket\"\n{extra}");
        let o: S3Options =
            toml::from_str(&text).map_err(|e| OptionError::at("parse", e.to_string()))?;
        o.validate()
    }

    #[test]
    fn validation_names_the_key() {
        assert!(options("").is_ok());
        assert_eq!(
            options("key = \"{pipeline}/x{ext}\"").unwrap_err().key,
            "key"
        );
        assert_eq!(options("key = \"{nope}\"").unwrap_err().key, "key");
        assert_eq!(
            options("part_size = \"1MiB\"").unwrap_err().key,
            "part_size"
        );
        assert_eq!(
            options("compression = \"snappy\"").unwrap_err().key,
            "compression"
        );
        assert_eq!(
            options("schema = [{ name = \"a\", type = \"int64\" }]")
                .unwrap_err()
                .key,
            "schema"
        );
        assert!(
            options("format = \"parquet\"\nschema = [{ name = \"a\", type = \"int64\" }]").is_ok()
        );
        assert_eq!(options("format = \"csv\"").unwrap_err().key, "csv");
        assert_eq!(
            options("csv = { columns = [\"a\"] }").unwrap_err().key,
            "csv"
        );
        assert_eq!(
            options("format = \"csv\"\ncsv = { columns = [] }")
                .unwrap_err()
                .key,
            "csv.columns"
        );
        assert_eq!(
            options("format = \"csv\"\ncsv = { columns = [\"a\"], delimiter = \"\\\"\" }")
                .unwrap_err()
                .key,
            "csv.delimiter"
        );
        assert!(
            options("format = \"csv\"\ncsv = { columns = [\"a\"], delimiter = \"|\" }").is_ok()
        );
        let bad_bucket: S3Options = toml::from_str("bucket = \"Bad_Bucket\"").unwrap();
        assert_eq!(bad_bucket.validate().unwrap_err().key, "bucket");
    }
}
