//! The emitter's TOML options (`type = "redshift"`) and their validation into [`RedshiftConfig`].
//!
//! Options are checked when the configuration is loaded, so `kinesis-connector check` reports every
//! mistake (with its key) without touching the network. Identifiers (table, columns, the loaded-files
//! table) must be plain SQL identifiers; they are folded to lower case (as Redshift folds them) and
//! always written quoted. Nothing from the options reaches SQL unchecked.

use std::time::Duration;

use kinesis_connectors_core::units::{ByteSize, DurationText};
use kinesis_connectors_emitter_s3::{Compression, CsvOptions, Format, S3Options, S3Settings};
use serde::Deserialize;

use crate::request::{ColumnType, Identifier, TableName, is_safe_literal};
use kinesis_connectors_core::contract::OptionError;

/// The loaded-files table's name when none is given (in the target table's schema).
pub const DEFAULT_LOADED_FILES_TABLE: &str = "kinesis_connector_loaded_files";
/// Staged objects' key template when none is given: one object per batch, named by its shard range.
pub const DEFAULT_STAGING_KEY: &str =
    "{prefix}{pipeline}/{yyyy}/{MM}/{dd}/{shard}-{first_sequence}-{last_sequence}{ext}";
/// Staging key prefix when none is given.
pub const DEFAULT_STAGING_PREFIX: &str = "kinesis-connector/";
/// How long one load (the COPY's transaction) may run before it is cancelled and retried.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The first wait between two `DescribeStatement` calls; it doubles up to the maximum.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest wait between two `DescribeStatement` calls.
pub const DEFAULT_MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// What the staged files hold and how `COPY` reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadFormat {
    /// One JSON object per line, loaded with `FORMAT AS JSON 'auto'` (fields matched to columns by
    /// name) or with a JSONPaths file.
    #[default]
    Json,
    /// CSV rows of `columns` (written by the S3 writer's CSV format), loaded with `FORMAT AS CSV`.
    Csv,
}

/// Compression of the staged files (`COPY ... GZIP` / `ZSTD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadCompression {
    /// Plain text.
    None,
    /// gzip (the default: less to store and to read).
    #[default]
    Gzip,
    /// Zstandard.
    Zstd,
}

/// A column: a name, or a name and a type (types are needed only with `create_table`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ColumnOption {
    /// `"name"`.
    Name(String),
    /// `{ name = "id", type = "BIGINT" }`.
    Typed {
        /// The column's name.
        name: String,
        /// Its SQL type, e.g. `BIGINT`, `VARCHAR(256)`, `TIMESTAMP`.
        #[serde(rename = "type")]
        kind: String,
    },
}

/// `staging = { ... }`: where batches are written before `COPY` reads them (the S3 emitter's writer).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagingOptions {
    /// The bucket.
    pub bucket: String,
    /// Key prefix (`{prefix}` in `key`; default `kinesis-connector/`).
    pub prefix: Option<String>,
    /// Key template of the staged objects (the S3 emitter's placeholders). `{field:...}` partitions a
    /// batch into several files (manifest mode only).
    pub key: Option<String>,
    /// Prefix of the manifests (default: `{prefix}manifests/`).
    pub manifest_prefix: Option<String>,
    /// The bucket's region (default: the emitter's); also given to `COPY` as `REGION`.
    pub region: Option<String>,
    /// S3 endpoint override (local emulators, S3-compatible servers).
    pub endpoint: Option<String>,
    /// Path-style addressing (default: on with an endpoint override).
    pub force_path_style: Option<bool>,
    /// Multipart part size (5 MiB – 5 GiB).
    pub part_size: Option<ByteSize>,
    /// Storage class of staged objects.
    pub storage_class: Option<String>,
    /// Create the bucket at start-up if missing (development only).
    #[serde(default)]
    pub create_bucket: bool,
}

/// The options of `type = "redshift"` as written in `connectors.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftOptions {
    /// A provisioned cluster's identifier (or use `workgroup_name` for Serverless).
    pub cluster_identifier: Option<String>,
    /// A Redshift Serverless workgroup.
    pub workgroup_name: Option<String>,
    /// The database.
    pub database: String,
    /// Cluster only: the database user (temporary credentials via `redshift:GetClusterCredentials`).
    pub db_user: Option<String>,
    /// A Secrets Manager secret holding the database credentials (cluster or Serverless).
    pub secret_arn: Option<String>,
    /// Region of the Data API (default: the pipeline's).
    pub region: Option<String>,
    /// Redshift Data API endpoint override; empty means AWS.
    pub endpoint: Option<String>,
    /// The target table: `table` or `schema.table`.
    pub table: String,
    /// Columns loaded, in order (`COPY`'s column list). Required for `format = "csv"`; with JSON the
    /// default is every column, matched by name.
    #[serde(default)]
    pub columns: Vec<ColumnOption>,
    /// Create the target table at start-up if missing, from typed `columns` (development only).
    #[serde(default)]
    pub create_table: bool,
    /// The loaded-files table (default `kinesis_connector_loaded_files` in the table's schema).
    pub loaded_files_table: Option<String>,
    /// Create the loaded-files table at start-up if missing (default true).
    #[serde(default = "yes")]
    pub create_loaded_files_table: bool,
    /// The IAM role Redshift assumes to read the staged files: an ARN, or `default` (the cluster's
    /// default role). Access keys are never used.
    pub iam_role: String,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: LoadFormat,
    /// JSON only: an `s3://` JSONPaths file instead of `'auto'`.
    pub jsonpaths: Option<String>,
    /// JSON only: match field names to columns ignoring case (`'auto ignorecase'`).
    #[serde(default)]
    pub json_ignore_case: bool,
    /// CSV only: the field delimiter (default `,`).
    pub delimiter: Option<char>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: LoadCompression,
    /// `TIMEFORMAT` (default `auto`): `auto`, `epochsecs`, `epochmillisecs` or a format string.
    pub timeformat: Option<String>,
    /// `TRUNCATECOLUMNS`: cut strings longer than their column instead of failing.
    #[serde(default)]
    pub truncate_columns: bool,
    /// `MAXERROR` (default 0: any bad row fails the load and the batch goes to the dead letter).
    pub max_error: Option<u32>,
    /// Load each batch through a manifest (default true): exact file lists, several files per COPY.
    #[serde(default = "yes")]
    pub manifest: bool,
    /// How long a load may run before it is cancelled and retried (default 15m).
    pub statement_timeout: Option<DurationText>,
    /// First wait between `DescribeStatement` calls (default 100ms); doubles up to `max_poll_interval`.
    pub poll_interval: Option<DurationText>,
    /// Longest wait between `DescribeStatement` calls (default 5s).
    pub max_poll_interval: Option<DurationText>,
    /// Where batches are staged.
    pub staging: StagingOptions,
}

fn yes() -> bool {
    true
}

/// Where the Data API runs statements, and as whom.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// A provisioned cluster.
    Cluster {
        /// Its identifier.
        cluster_identifier: String,
        /// The database user (temporary credentials), if no secret.
        db_user: Option<String>,
        /// The secret, if no database user.
        secret_arn: Option<String>,
    },
    /// A Serverless workgroup (the caller's IAM identity, or a secret).
    Serverless {
        /// The workgroup.
        workgroup_name: String,
        /// The secret, if any.
        secret_arn: Option<String>,
    },
}

impl std::fmt::Debug for Target {
    // The secret's ARN is not a secret, but it names where one lives: shown only as present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cluster {
                cluster_identifier,
                db_user,
                secret_arn,
            } => f
                .debug_struct("Cluster")
                .field("cluster_identifier", cluster_identifier)
                .field("db_user", db_user)
                .field("secret_arn", &secret_arn.as_ref().map(|_| "<set>"))
                .finish(),
            Target::Serverless {
                workgroup_name,
                secret_arn,
            } => f
                .debug_struct("Serverless")
                .field("workgroup_name", workgroup_name)
                .field("secret_arn", &secret_arn.as_ref().map(|_| "<set>"))
                .finish(),
        }
    }
}

/// A target column, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Its name.
    pub name: Identifier,
    /// Its type, when given.
    pub kind: Option<ColumnType>,
}

/// How `COPY` reads the staged files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    /// `JSON 'auto'` (or `'auto ignorecase'`).
    JsonAuto {
        /// Match field names ignoring case.
        ignore_case: bool,
    },
    /// `JSON 's3://…'`: a JSONPaths file.
    JsonPaths(String),
    /// `CSV DELIMITER 'c'`.
    Csv {
        /// The delimiter.
        delimiter: char,
    },
}

/// The `COPY` options, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// Format.
    pub format: CopyFormat,
    /// Compression.
    pub compression: LoadCompression,
    /// `TIMEFORMAT`.
    pub timeformat: String,
    /// `TRUNCATECOLUMNS`.
    pub truncate_columns: bool,
    /// `MAXERROR`.
    pub max_error: u32,
    /// `IAM_ROLE`: `None` for `default`.
    pub iam_role: Option<String>,
    /// `REGION` of the staging bucket, when given.
    pub region: Option<String>,
}

/// The validated options of the Redshift emitter.
#[derive(Clone, Debug)]
pub struct RedshiftConfig {
    /// Where statements run.
    pub target: Target,
    /// The database.
    pub database: String,
    /// Data API region (`None`: the pipeline's).
    pub region: Option<String>,
    /// Data API endpoint override.
    pub endpoint: Option<String>,
    /// The target table.
    pub table: TableName,
    /// The loaded columns (empty: all, JSON only).
    pub columns: Vec<ColumnSpec>,
    /// Create the target table at start-up.
    pub create_table: bool,
    /// The loaded-files table.
    pub loaded_files_table: TableName,
    /// Create the loaded-files table at start-up.
    pub create_loaded_files_table: bool,
    /// `COPY` options.
    pub copy: CopyOptions,
    /// Manifest mode.
    pub manifest: bool,
    /// Load timeout.
    pub statement_timeout: Duration,
    /// First poll wait.
    pub poll_interval: Duration,
    /// Longest poll wait.
    pub max_poll_interval: Duration,
    /// The S3 writer's settings for staging.
    pub staging: S3Settings,
}

fn err(key: &str, message: impl Into<String>) -> OptionError {
    OptionError {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn non_empty(key: &str, value: Option<String>) -> Result<Option<String>, OptionError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(err(key, "must not be empty")),
        other => Ok(other),
    }
}

/// `arn:aws[-partition]:iam::ACCOUNT:role/NAME`, or `default`.
fn iam_role(text: &str) -> Result<Option<String>, OptionError> {
    if text.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    let valid = text
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .is_some_and(|(partition, rest)| {
            partition.starts_with("aws")
                && rest.split_once(":role/").is_some_and(|(account, name)| {
                    account.len() == 12
                        && account.bytes().all(|b| b.is_ascii_digit())
                        && !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
                })
        });
    if valid {
        Ok(Some(text.to_owned()))
    } else {
        Err(err(
            "iam_role",
            format!(
                "{text:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME) or \"default\""
            ),
        ))
    }
}

fn duration(
    key: &str,
    value: Option<DurationText>,
    default: Duration,
) -> Result<Duration, OptionError> {
    let d = value.map_or(default, |d| d.0);
    if d.is_zero() {
        return Err(err(key, "must be longer than zero"));
    }
    Ok(d)
}

impl RedshiftOptions {
    /// Checks the options and the rules between them; errors name the key.
    pub fn validate(self) -> Result<RedshiftConfig, OptionError> {
        let secret_arn = non_empty("secret_arn", self.secret_arn)?;
        let db_user = non_empty("db_user", self.db_user)?;
        if let Some(s) = &secret_arn
            && !s.starts_with("arn:")
        {
            return Err(err(
                "secret_arn",
                "must be the secret's ARN (arn:aws:secretsmanager:…)",
            ));
        }
        let target = match (
            non_empty("cluster_identifier", self.cluster_identifier)?,
            non_empty("workgroup_name", self.workgroup_name)?,
        ) {
            (Some(cluster_identifier), None) => {
                if db_user.is_some() == secret_arn.is_some() {
                    return Err(err(
                        "db_user",
                        "a cluster needs exactly one of `db_user` (temporary credentials) and `secret_arn`",
                    ));
                }
                Target::Cluster {
                    cluster_identifier,
                    db_user,
                    secret_arn,
                }
            }
            (None, Some(workgroup_name)) => {
                if db_user.is_some() {
                    return Err(err(
                        "db_user",
                        "Serverless takes no `db_user`: it uses the caller's IAM identity or `secret_arn`",
                    ));
                }
                Target::Serverless {
                    workgroup_name,
                    secret_arn,
                }
            }
            _ => {
                return Err(err(
                    "cluster_identifier",
                    "give exactly one of `cluster_identifier` (provisioned) and `workgroup_name` (Serverless)",
                ));
            }
        };
        if self.database.trim().is_empty() {
            return Err(err("database", "must not be empty"));
        }
        let endpoint = self.endpoint.filter(|e| !e.is_empty());
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(err(
                "endpoint",
                format!("invalid endpoint {e:?}: expected an http:// or https:// URL"),
            ));
        }
        let table = TableName::parse(&self.table).map_err(|m| err("table", m))?;
        let loaded_files_table = match &self.loaded_files_table {
            Some(t) => TableName::parse(t).map_err(|m| err("loaded_files_table", m))?,
            None => table.sibling(DEFAULT_LOADED_FILES_TABLE),
        };
        if loaded_files_table == table {
            return Err(err("loaded_files_table", "must differ from `table`"));
        }
        let mut columns = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            let key = format!("columns[{i}]");
            let (name, kind) = match c {
                ColumnOption::Name(n) => (n, None),
                ColumnOption::Typed { name, kind } => (name, Some(kind)),
            };
            let name = Identifier::parse(name).map_err(|m| err(&key, m))?;
            if columns.iter().any(|c: &ColumnSpec| c.name == name) {
                return Err(err(&key, format!("column {name} appears twice")));
            }
            let kind = kind
                .map(|k| ColumnType::parse(k).map_err(|m| err(&format!("{key}.type"), m)))
                .transpose()?;
            columns.push(ColumnSpec { name, kind });
        }
        if self.create_table && (columns.is_empty() || columns.iter().any(|c| c.kind.is_none())) {
            return Err(err(
                "create_table",
                "needs `columns` with a type each, e.g. { name = \"id\", type = \"BIGINT\" }",
            ));
        }
        let format = match self.format {
            LoadFormat::Json => {
                if self.delimiter.is_some() {
                    return Err(err("delimiter", "only used with format = \"csv\""));
                }
                match self.jsonpaths {
                    Some(p) => {
                        if self.json_ignore_case {
                            return Err(err(
                                "json_ignore_case",
                                "does not apply to a JSONPaths file",
                            ));
                        }
                        if !p.starts_with("s3://") || !is_safe_literal(&p) {
                            return Err(err(
                                "jsonpaths",
                                format!(
                                    "{p:?} must be an s3:// URL without quotes, backslashes or control characters"
                                ),
                            ));
                        }
                        CopyFormat::JsonPaths(p)
                    }
                    None => CopyFormat::JsonAuto {
                        ignore_case: self.json_ignore_case,
                    },
                }
            }
            LoadFormat::Csv => {
                if self.jsonpaths.is_some() || self.json_ignore_case {
                    return Err(err(
                        "jsonpaths",
                        "JSON options do not apply to format = \"csv\"",
                    ));
                }
                if columns.is_empty() {
                    return Err(err(
                        "columns",
                        "format = \"csv\" needs the columns, in order",
                    ));
                }
                let delimiter = self.delimiter.unwrap_or(',');
                if !delimiter.is_ascii()
                    || delimiter.is_ascii_control()
                    || matches!(delimiter, '"' | '\'' | '\\')
                {
                    return Err(err(
                        "delimiter",
                        format!(
                            "{delimiter:?}: use one printable ASCII character other than quotes and backslash"
                        ),
                    ));
                }
                CopyFormat::Csv { delimiter }
            }
        };
        let timeformat = self.timeformat.unwrap_or_else(|| "auto".to_owned());
        if timeformat.is_empty() || !is_safe_literal(&timeformat) {
            return Err(err(
                "timeformat",
                "must be non-empty, without quotes, backslashes or control characters",
            ));
        }
        let staging_region = self.staging.region.clone();
        if let Some(r) = &staging_region
            && !(r.len() <= 32
                && !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(err("staging.region", format!("invalid region {r:?}")));
        }
        let copy = CopyOptions {
            format,
            compression: self.compression,
            timeformat,
            truncate_columns: self.truncate_columns,
            max_error: self.max_error.unwrap_or(0),
            iam_role: iam_role(&self.iam_role)?,
            region: staging_region,
        };
        let staging = staging_settings(self.staging, &copy, &columns, self.manifest)?;
        let poll_interval = duration("poll_interval", self.poll_interval, DEFAULT_POLL_INTERVAL)?;
        let max_poll_interval = duration(
            "max_poll_interval",
            self.max_poll_interval,
            DEFAULT_MAX_POLL_INTERVAL,
        )?;
        if max_poll_interval < poll_interval {
            return Err(err(
                "max_poll_interval",
                "must not be shorter than `poll_interval`",
            ));
        }
        Ok(RedshiftConfig {
            target,
            database: self.database,
            region: self.region,
            endpoint,
            table,
            columns,
            create_table: self.create_table,
            loaded_files_table,
            create_loaded_files_table: self.create_loaded_files_table,
            copy,
            manifest: self.manifest,
            statement_timeout: duration(
                "statement_timeout",
                self.statement_timeout,
                DEFAULT_STATEMENT_TIMEOUT,
            )?,
            poll_interval,
            max_poll_interval,
            staging,
        })
    }
}

/// The S3 writer's settings for staging: the format and compression `COPY` reads.
fn staging_settings(
    s: StagingOptions,
    copy: &CopyOptions,
    columns: &[ColumnSpec],
    manifest: bool,
) -> Result<S3Settings, OptionError> {
    let prefix = s
        .prefix
        .unwrap_or_else(|| DEFAULT_STAGING_PREFIX.to_owned());
    let key = s.key.unwrap_or_else(|| DEFAULT_STAGING_KEY.to_owned());
    // Staged keys reach SQL (`FROM 's3://…'`) in plain mode and name the manifest: keep them literal-safe.
    for (k, v) in [
        ("staging.prefix", &prefix),
        ("staging.key", &key),
        ("staging.bucket", &s.bucket),
    ] {
        if !is_safe_literal(v) {
            return Err(err(
                k,
                "must not contain quotes, backslashes or control characters",
            ));
        }
    }
    if !manifest && key.contains("{field:") {
        return Err(err(
            "staging.key",
            "{field:...} (several files per batch, named from record data) needs manifest = true",
        ));
    }
    let manifest_prefix = s
        .manifest_prefix
        .unwrap_or_else(|| format!("{prefix}manifests/"));
    if !is_safe_literal(&manifest_prefix) {
        return Err(err(
            "staging.manifest_prefix",
            "must not contain quotes, backslashes or control characters",
        ));
    }
    let (format, csv) = match &copy.format {
        CopyFormat::Csv { delimiter } => (
            Format::Csv,
            Some(CsvOptions {
                columns: columns.iter().map(|c| c.name.as_str().to_owned()).collect(),
                delimiter: *delimiter,
            }),
        ),
        _ => (Format::Ndjson, None),
    };
    let options = S3Options {
        bucket: s.bucket,
        prefix,
        key,
        region: s.region,
        endpoint: s.endpoint,
        force_path_style: s.force_path_style,
        format,
        delimiter: "\n".to_owned(),
        compression: match copy.compression {
            LoadCompression::None => Compression::None,
            LoadCompression::Gzip => Compression::Gzip,
            LoadCompression::Zstd => Compression::Zstd,
        },
        schema: None,
        csv,
        part_size: s.part_size,
        manifest_prefix: manifest.then_some(manifest_prefix),
        storage_class: s.storage_class,
        create_bucket: s.create_bucket,
    };
    options.validate().map_err(|e| e.within("staging"))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const BASE: &str = r#"
cluster_identifier = "analytics"
database = "dev"
db_user = "loader"
table = "public.clicks"
iam_role = "arn:aws:iam::123456789012:role/redshift-copy"
staging = { bucket = "stage-bucket" }
"#;

    /// `BASE` with the keys of `extra` replaced (TOML refuses a key twice).
    pub(crate) fn with(base: &str, extra: &str) -> String {
        let keys: Vec<&str> = extra
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
            .collect();
        let kept: Vec<&str> = base
            .lines()
            .filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k} = "))))
            .collect();
        format!("{}\n{extra}", kept.join("\n"))
    }

    fn options(extra: &str) -> Result<RedshiftConfig, OptionError> {
        let text = with(BASE, extra);
        let o: RedshiftOptions = toml::from_str(&text).map_err(|e| err("parse", e.to_string()))?;
        o.validate()
    }

    fn key_of(extra: &str) -> String {
        options(extra).unwrap_err().key
    }

    #[test]
    fn a_minimal_configuration_takes_the_defaults() {
        let c = options("").unwrap();
        assert_eq!(c.table.to_string(), "\"public\".\"clicks\"");
        assert_eq!(
            c.loaded_files_table.to_string(),
            "\"public\".\"kinesis_connector_loaded_files\""
        );
        assert!(c.manifest);
        assert_eq!(c.copy.max_error, 0);
        assert_eq!(c.copy.timeformat, "auto");
        assert_eq!(c.copy.compression, LoadCompression::Gzip);
        assert_eq!(c.copy.format, CopyFormat::JsonAuto { ignore_case: false });
        assert_eq!(c.staging.options.format, Format::Ndjson);
        assert_eq!(c.staging.options.compression, Compression::Gzip);
        assert_eq!(
            c.staging.options.manifest_prefix.as_deref(),
            Some("kinesis-connector/manifests/")
        );
    }

    #[test]
    fn identifiers_with_quotes_or_semicolons_are_rejected() {
        for bad in [
            "table = \"clicks\\\"; DROP TABLE users; --\"",
            "table = \"a;b\"",
            "table = \"o'neil\"",
            "table = \"a.b.c\"",
            "table = \"\"",
            "table = \"1abc\"",
        ] {
            let text = BASE.replace("table = \"public.clicks\"", bad);
            let o: RedshiftOptions = toml::from_str(&text).unwrap();
            assert_eq!(o.validate().unwrap_err().key, "table", "{bad}");
        }
        assert_eq!(key_of("columns = [\"id\", \"x;y\"]"), "columns[1]");
        assert_eq!(key_of("columns = [\"id\", \"ID\"]"), "columns[1]");
        assert_eq!(
            key_of("loaded_files_table = \"x\\\"y\""),
            "loaded_files_table"
        );
        assert_eq!(
            key_of("columns = [{ name = \"id\", type = \"INT; DROP TABLE x\" }]"),
            "columns[0].type"
        );
    }

    #[test]
    fn targets_need_exactly_one_way_in() {
        let no_user = BASE.replace("db_user = \"loader\"", "");
        let o: RedshiftOptions = toml::from_str(&no_user).unwrap();
        assert_eq!(o.validate().unwrap_err().key, "db_user");
        assert_eq!(
            key_of("secret_arn = \"arn:aws:secretsmanager:us-east-1:1:secret:x\""),
            "db_user"
        );
        assert_eq!(key_of("workgroup_name = \"wg\""), "cluster_identifier");
        let serverless = BASE
            .replace(
                "cluster_identifier = \"analytics\"",
                "workgroup_name = \"wg\"",
            )
            .replace("db_user = \"loader\"", "");
        let o: RedshiftOptions = toml::from_str(&serverless).unwrap();
        assert!(matches!(
            o.validate().unwrap().target,
            Target::Serverless { .. }
        ));
    }

    #[test]
    fn copy_options_are_checked() {
        assert_eq!(key_of("iam_role = \"AKIAEXAMPLE\""), "iam_role");
        assert!(
            options("iam_role = \"default\"")
                .unwrap()
                .copy
                .iam_role
                .is_none()
        );
        assert_eq!(key_of("format = \"csv\""), "columns");
        assert_eq!(
            key_of("format = \"csv\"\ncolumns = [\"a\"]\ndelimiter = \"'\""),
            "delimiter"
        );
        assert_eq!(key_of("delimiter = \"|\""), "delimiter");
        assert_eq!(key_of("jsonpaths = \"http://x\""), "jsonpaths");
        assert_eq!(key_of("timeformat = \"YYYY'\""), "timeformat");
        assert_eq!(
            key_of("create_table = true\ncolumns = [\"id\"]"),
            "create_table"
        );
        assert_eq!(
            key_of(
                "manifest = false\nstaging = { bucket = \"stage-bucket\", key = \"{field:a}/{batch_id}{ext}\" }"
            ),
            "staging.key"
        );
        assert_eq!(
            key_of("staging = { bucket = \"Bad_Bucket\" }"),
            "staging.bucket"
        );
        assert_eq!(
            key_of("staging = { bucket = \"b-ok\", prefix = \"it's/\" }"),
            "staging.prefix"
        );
        assert_eq!(
            key_of("poll_interval = \"10s\"\nmax_poll_interval = \"1s\""),
            "max_poll_interval"
        );
        let csv = options("format = \"csv\"\ncolumns = [\"id\", { name = \"Name\", type = \"varchar(20)\" }]\ndelimiter = \"|\"\ncompression = \"none\"").unwrap();
        assert_eq!(csv.copy.format, CopyFormat::Csv { delimiter: '|' });
        let o = &csv.staging.options;
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.csv.as_ref().unwrap().columns, ["id", "name"]);
    }
}
