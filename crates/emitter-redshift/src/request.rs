//! The SQL the emitter sends, built only from validated configuration and from names the emitter makes
//! itself (staged object URLs, the pipeline's name, a timestamp): never from record data.
//!
//! * Identifiers ([`Identifier`], [`TableName`]) are plain SQL identifiers, folded to lower case and
//!   always double-quoted.
//! * String literals ([`literal`]) refuse backslashes and control characters and double single quotes.
//! * One load is one `BatchExecuteStatement` (one transaction, at most [`MAX_BATCH_STATEMENTS`]):
//!
//! ```sql
//! LOCK "loaded_files";                                              -- one loader at a time
//! CREATE TEMP TABLE "kc_stage" (LIKE "target" INCLUDING DEFAULTS);
//! COPY "kc_stage" (cols) FROM 's3://…' IAM_ROLE '…' MANIFEST FORMAT AS JSON 'auto' GZIP …;
//! DELETE FROM "kc_stage" WHERE EXISTS (SELECT 1 FROM "loaded_files" WHERE "file" = 's3://…');
//! INSERT INTO "loaded_files" (…) SELECT 's3://…', 'pipeline', COUNT(*), '…' FROM "kc_stage" HAVING COUNT(*) > 0;
//! INSERT INTO "target" (cols) SELECT cols FROM "kc_stage";
//! DROP TABLE "kc_stage";
//! ```
//!
//! A file already in the loaded-files table empties the stage, so nothing is inserted twice, and the
//! check and the record of the load commit together with the rows.

use std::fmt;

use crate::config::{CopyFormat, CopyOptions, LoadCompression, RedshiftConfig};

/// Most SQL statements in one `BatchExecuteStatement` (a Data API limit).
pub const MAX_BATCH_STATEMENTS: usize = 40;
/// Longest SQL text of one statement (a Data API limit: 100 KB).
pub const MAX_SQL_BYTES: usize = 100_000;
/// Longest identifier (Redshift: 127 bytes).
pub const MAX_IDENTIFIER_BYTES: usize = 127;
/// The session-local table each load COPYs into first.
pub const STAGE_TABLE: &str = "kc_stage";

/// A plain SQL identifier (`[a-z_][a-z0-9_$]*`, at most 127 bytes), folded to lower case as Redshift
/// folds identifiers; displayed double-quoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// Validates and folds `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= MAX_IDENTIFIER_BYTES
            && text
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
        if ok {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?} is not a plain SQL identifier: use letters, digits, `_` and `$`, starting with a letter or `_`, at most {MAX_IDENTIFIER_BYTES} bytes (quotes, semicolons, spaces and dots are refused)"
            ))
        }
    }

    /// The folded name, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// `table` or `schema.table`, each part an [`Identifier`]; displayed quoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    /// The schema, if named.
    pub schema: Option<Identifier>,
    /// The table.
    pub name: Identifier,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            [name] => Ok(Self {
                schema: None,
                name: Identifier::parse(name)?,
            }),
            [schema, name] => Ok(Self {
                schema: Some(Identifier::parse(schema)?),
                name: Identifier::parse(name)?,
            }),
            _ => Err(format!(
                "{text:?} is not a table name: write `table` or `schema.table`"
            )),
        }
    }

    /// A table named `name` in the same schema.
    pub fn sibling(&self, name: &str) -> Self {
        Self {
            schema: self.schema.clone(),
            name: Identifier(name.to_owned()),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// A column type for `create_table`, checked against the types Redshift and PostgreSQL share (plus
/// `SUPER`), normalised to upper case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnType(String);

const TYPE_WORDS: &[&str] = &[
    "SMALLINT",
    "INT2",
    "INTEGER",
    "INT",
    "INT4",
    "BIGINT",
    "INT8",
    "DECIMAL",
    "NUMERIC",
    "REAL",
    "FLOAT4",
    "FLOAT8",
    "FLOAT",
    "DOUBLE PRECISION",
    "BOOLEAN",
    "BOOL",
    "CHAR",
    "CHARACTER",
    "NCHAR",
    "BPCHAR",
    "VARCHAR",
    "CHARACTER VARYING",
    "NVARCHAR",
    "TEXT",
    "DATE",
    "TIME",
    "TIMETZ",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "TIMESTAMP WITHOUT TIME ZONE",
    "TIMESTAMP WITH TIME ZONE",
    "SUPER",
];

impl ColumnType {
    /// Validates a type such as `BIGINT`, `varchar(256)`, `DECIMAL(12, 2)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a supported column type (e.g. BIGINT, VARCHAR(256), DECIMAL(12,2), TIMESTAMP, BOOLEAN)"
            )
        };
        let upper = text.trim().to_ascii_uppercase();
        let (base, params) = match upper.split_once('(') {
            Some((b, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(bad)?;
                let nums: Vec<&str> = inner.split(',').map(str::trim).collect();
                if nums.len() > 2
                    || nums.iter().any(|n| {
                        n.is_empty() || n.len() > 5 || !n.bytes().all(|b| b.is_ascii_digit())
                    })
                {
                    return Err(bad());
                }
                (b.trim().to_owned(), Some(nums.join(",")))
            }
            None => (upper.clone(), None),
        };
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        if !TYPE_WORDS.contains(&base.as_str()) {
            return Err(bad());
        }
        Ok(Self(match params {
            Some(p) => format!("{base}({p})"),
            None => base,
        }))
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` can be a SQL string literal without escapes: no quote, backslash or control character.
pub fn is_safe_literal(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c == '\'' || c == '\\' || c.is_control())
}

/// A SQL string literal: single quotes doubled; backslashes and control characters refused (their
/// meaning differs between SQL dialects and settings).
pub fn literal(text: &str) -> Result<String, String> {
    if text.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(format!(
            "{text:?} cannot be a SQL literal: it holds a backslash or a control character"
        ));
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// What one load reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySource {
    /// `s3://bucket/key` of the manifest (manifest mode) or of the one staged object.
    pub url: String,
    /// Whether `url` is a manifest.
    pub manifest: bool,
}

/// The configured columns, quoted and comma-separated (`None` when none are configured).
fn column_names(config: &RedshiftConfig) -> Option<String> {
    (!config.columns.is_empty()).then(|| {
        let names: Vec<String> = config.columns.iter().map(|c| c.name.to_string()).collect();
        names.join(", ")
    })
}

/// ` (cols)` after a table name, or nothing.
fn column_list(config: &RedshiftConfig) -> String {
    column_names(config).map_or_else(String::new, |n| format!(" ({n})"))
}

/// `COPY into (cols) FROM 'url' IAM_ROLE … [MANIFEST] FORMAT … [GZIP|ZSTD] TIMEFORMAT … [TRUNCATECOLUMNS] MAXERROR n`.
pub fn copy_statement(
    config: &RedshiftConfig,
    into: &str,
    source: &CopySource,
) -> Result<String, String> {
    let c: &CopyOptions = &config.copy;
    let mut sql = format!(
        "COPY {into}{} FROM {}",
        column_list(config),
        literal(&source.url)?
    );
    match &c.iam_role {
        Some(arn) => sql.push_str(&format!(" IAM_ROLE {}", literal(arn)?)),
        None => sql.push_str(" IAM_ROLE default"),
    }
    if let Some(region) = &c.region {
        sql.push_str(&format!(" REGION {}", literal(region)?));
    }
    if source.manifest {
        sql.push_str(" MANIFEST");
    }
    match &c.format {
        CopyFormat::JsonAuto { ignore_case: false } => sql.push_str(" FORMAT AS JSON 'auto'"),
        CopyFormat::JsonAuto { ignore_case: true } => {
            sql.push_str(" FORMAT AS JSON 'auto ignorecase'")
        }
        CopyFormat::JsonPaths(p) => sql.push_str(&format!(" FORMAT AS JSON {}", literal(p)?)),
        CopyFormat::Csv { delimiter } => sql.push_str(&format!(
            " FORMAT AS CSV DELIMITER {}",
            literal(&delimiter.to_string())?
        )),
    }
    match c.compression {
        LoadCompression::None => {}
        LoadCompression::Gzip => sql.push_str(" GZIP"),
        LoadCompression::Zstd => sql.push_str(" ZSTD"),
    }
    sql.push_str(&format!(" TIMEFORMAT {}", literal(&c.timeformat)?));
    if c.truncate_columns {
        sql.push_str(" TRUNCATECOLUMNS");
    }
    sql.push_str(&format!(
        " MAXERROR {} COMPUPDATE OFF STATUPDATE OFF",
        c.max_error
    ));
    Ok(sql)
}

/// The statements of one load (see the module documentation) and where the interesting ones are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadStatements {
    /// The SQL, in order.
    pub sqls: Vec<String>,
}

/// Index of the `COPY` in [`LoadStatements::sqls`].
pub const COPY_INDEX: usize = 2;
/// Index of the insert into the loaded-files table (1 row: loaded now; 0: loaded before).
pub const RECORD_INDEX: usize = 4;
/// Index of the insert into the target table (its row count is the rows loaded).
pub const INSERT_INDEX: usize = 5;

/// What each statement of a load does, for error messages.
pub fn load_step(index: usize) -> &'static str {
    match index {
        0 => "LOCK of the loaded-files table",
        1 => "CREATE TEMP TABLE (the load's stage)",
        COPY_INDEX => "COPY",
        3 => "the loaded-files check",
        RECORD_INDEX => "INSERT into the loaded-files table",
        INSERT_INDEX => "INSERT into the target table",
        _ => "DROP of the load's stage",
    }
}

/// The statements that load `source` for `pipeline` (`items` staged; `now` recorded as load time).
pub fn load_statements(
    config: &RedshiftConfig,
    source: &CopySource,
    pipeline: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<LoadStatements, String> {
    let loaded = &config.loaded_files_table;
    let target = &config.table;
    let stage = Identifier(STAGE_TABLE.to_owned()).to_string();
    let file = literal(&source.url)?;
    let cols = column_names(config).unwrap_or_else(|| "*".to_owned());
    let sqls = vec![
        format!("LOCK {loaded}"),
        format!("CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS)"),
        copy_statement(config, &stage, source)?,
        format!(
            "DELETE FROM {stage} WHERE EXISTS (SELECT 1 FROM {loaded} WHERE \"file\" = {file})"
        ),
        format!(
            "INSERT INTO {loaded} (\"file\", \"pipeline\", \"rows_loaded\", \"loaded_at\") SELECT {file}, {}, COUNT(*), {} FROM {stage} HAVING COUNT(*) > 0",
            literal(pipeline)?,
            literal(&now.format("%Y-%m-%d %H:%M:%S%.6f").to_string())?
        ),
        format!(
            "INSERT INTO {target}{} SELECT {cols} FROM {stage}",
            column_list(config)
        ),
        format!("DROP TABLE {stage}"),
    ];
    debug_assert!(sqls.len() <= MAX_BATCH_STATEMENTS);
    if let Some(s) = sqls.iter().find(|s| s.len() > MAX_SQL_BYTES) {
        return Err(format!(
            "a statement of {} bytes exceeds the Data API's {MAX_SQL_BYTES}",
            s.len()
        ));
    }
    Ok(LoadStatements { sqls })
}

/// `CREATE TABLE IF NOT EXISTS` of the loaded-files table.
pub fn create_loaded_files_table(config: &RedshiftConfig) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"file\" VARCHAR(1024) NOT NULL, \"pipeline\" VARCHAR(512) NOT NULL, \"rows_loaded\" BIGINT NOT NULL, \"loaded_at\" TIMESTAMP NOT NULL)",
        config.loaded_files_table
    )
}

/// `CREATE TABLE IF NOT EXISTS` of the target table from typed columns (`create_table`).
pub fn create_target_table(config: &RedshiftConfig) -> String {
    let cols: Vec<String> = config
        .columns
        .iter()
        .map(|c| match &c.kind {
            Some(k) => format!("{} {k}", c.name),
            None => format!("{} VARCHAR(65535)", c.name),
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        config.table,
        cols.join(", ")
    )
}

/// The start-up check's statements: create what is configured to be created, then read nothing from
/// the target (with the configured columns) and from the loaded-files table, so a missing table, column
/// or privilege fails the check.
pub fn check_statements(config: &RedshiftConfig) -> Vec<String> {
    let mut sqls = Vec::new();
    if config.create_table {
        sqls.push(create_target_table(config));
    }
    if config.create_loaded_files_table {
        sqls.push(create_loaded_files_table(config));
    }
    let cols = column_names(config).unwrap_or_else(|| "1".to_owned());
    sqls.push(format!("SELECT {cols} FROM {} WHERE 1 = 0", config.table));
    sqls.push(format!(
        "SELECT \"file\", \"pipeline\", \"rows_loaded\", \"loaded_at\" FROM {} WHERE 1 = 0",
        config.loaded_files_table
    ));
    sqls
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::RedshiftOptions;

    fn config(extra: &str) -> RedshiftConfig {
        let base = r#"
cluster_identifier = "c"
database = "dev"
db_user = "u"
table = "Analytics.Clicks"
iam_role = "arn:aws:iam::123456789012:role/copy"
staging = { bucket = "stage" }"#;
        let text = crate::config::tests::with(base, extra);
        toml::from_str::<RedshiftOptions>(&text)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn identifiers_are_folded_and_quoted() {
        assert_eq!(
            Identifier::parse("Clicks_2$").unwrap().to_string(),
            "\"clicks_2$\""
        );
        for bad in ["a\"b", "a;b", "a b", "", "9a", "a-b", "é"] {
            assert!(Identifier::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Identifier::parse(&"a".repeat(128)).is_err());
        assert_eq!(TableName::parse("s.t").unwrap().to_string(), "\"s\".\"t\"");
        assert!(TableName::parse("a.b.c").is_err());
    }

    #[test]
    fn literals_and_types() {
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert!(literal("a\\b").is_err());
        assert!(literal("a\nb").is_err());
        assert_eq!(
            ColumnType::parse("varchar (20)").unwrap().to_string(),
            "VARCHAR(20)"
        );
        assert_eq!(
            ColumnType::parse("decimal(12, 2)").unwrap().to_string(),
            "DECIMAL(12,2)"
        );
        assert_eq!(
            ColumnType::parse("double  precision").unwrap().to_string(),
            "DOUBLE PRECISION"
        );
        for bad in [
            "INT; DROP TABLE x",
            "VARCHAR(1) DEFAULT 'x'",
            "BLOB",
            "INT(",
            "INT(a)",
        ] {
            assert!(ColumnType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn copy_statements_carry_the_options() {
        let src = CopySource {
            url: "s3://stage/m/p/abc.manifest".into(),
            manifest: true,
        };
        let c = config(
            "columns = [\"id\", \"Name\"]\ntruncate_columns = true\nmax_error = 3\ntimeformat = \"epochmillisecs\"",
        );
        assert_eq!(
            copy_statement(&c, "\"kc_stage\"", &src).unwrap(),
            "COPY \"kc_stage\" (\"id\", \"name\") FROM 's3://stage/m/p/abc.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' MANIFEST FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'epochmillisecs' TRUNCATECOLUMNS MAXERROR 3 COMPUPDATE OFF STATUPDATE OFF"
        );
        let c = config(
            "format = \"csv\"\ncolumns = [\"a\"]\ndelimiter = \"|\"\ncompression = \"zstd\"\niam_role = \"default\"\nstaging = { bucket = \"stage\", region = \"eu-west-1\" }",
        );
        let plain = CopySource {
            url: "s3://stage/x.csv.zst".into(),
            manifest: false,
        };
        assert_eq!(
            copy_statement(&c, "\"t\"", &plain).unwrap(),
            "COPY \"t\" (\"a\") FROM 's3://stage/x.csv.zst' IAM_ROLE default REGION 'eu-west-1' FORMAT AS CSV DELIMITER '|' ZSTD TIMEFORMAT 'auto' MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF"
        );
        let c = config("jsonpaths = \"s3://stage/paths.json\"\ncompression = \"none\"");
        assert!(
            copy_statement(&c, "\"t\"", &plain)
                .unwrap()
                .contains(" FORMAT AS JSON 's3://stage/paths.json' TIMEFORMAT")
        );
        // No access keys, ever.
        assert!(
            !copy_statement(&c, "\"t\"", &plain)
                .unwrap()
                .contains("CREDENTIALS")
        );
    }

    #[test]
    fn a_load_is_one_transaction_that_records_its_file() {
        let c = config("");
        let src = CopySource {
            url: "s3://stage/m/p/abc.manifest".into(),
            manifest: true,
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let load = load_statements(&c, &src, "pipe'1", now).unwrap();
        assert_eq!(load.sqls.len(), 7);
        assert_eq!(
            load.sqls[0],
            "LOCK \"analytics\".\"kinesis_connector_loaded_files\""
        );
        assert!(
            load.sqls[COPY_INDEX]
                .starts_with("COPY \"kc_stage\" FROM 's3://stage/m/p/abc.manifest'")
        );
        assert_eq!(
            load.sqls[RECORD_INDEX],
            "INSERT INTO \"analytics\".\"kinesis_connector_loaded_files\" (\"file\", \"pipeline\", \"rows_loaded\", \"loaded_at\") SELECT 's3://stage/m/p/abc.manifest', 'pipe''1', COUNT(*), '2026-11-25 12:00:00.000000' FROM \"kc_stage\" HAVING COUNT(*) > 0"
        );
        assert_eq!(
            load.sqls[INSERT_INDEX],
            "INSERT INTO \"analytics\".\"clicks\" SELECT * FROM \"kc_stage\""
        );
        assert_eq!(load_step(COPY_INDEX), "COPY");
        let checks = check_statements(&c);
        assert_eq!(checks.len(), 3);
        assert!(checks[1].starts_with("SELECT 1 FROM \"analytics\".\"clicks\" WHERE 1 = 0"));
    }
}
