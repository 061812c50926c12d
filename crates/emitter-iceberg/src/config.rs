//! The `emitter = { type = "iceberg", ... }` options.

use serde::Deserialize;

use crate::columns::{ColumnType, PartitionField};

/// Which catalog holds the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The JDBC-style SQL catalog (`iceberg_tables` / `iceberg_namespace_properties` in a PostgreSQL
    /// database), as PyIceberg's and the Java SQL catalogs use it.
    Sql,
    /// An Iceberg REST catalog (Polaris, Lakekeeper, Nessie, Tabular-style servers).
    Rest,
}

/// One column of a table created with `create_table = true`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnOptions {
    /// The column (and top-level JSON field) name.
    pub name: String,
    /// Its Iceberg type: `boolean`, `int`, `long`, `float`, `double`, `decimal(P, S)`, `date`, `time`,
    /// `timestamp`, `timestamptz`, `string`, `uuid`, `binary`, `fixed[N]`, `list<T>`,
    /// `struct<name: T, ...>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether every record must have it (default false: a missing field is null).
    #[serde(default)]
    pub required: bool,
}

/// The options of the Iceberg emitter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergOptions {
    /// `sql` or `rest`.
    pub catalog: CatalogKind,
    /// The catalog's address: a `postgres://user@host:port/db` URL for `sql` (the password comes
    /// from `PGPASSWORD`, never from this file), the base URL for `rest`.
    pub catalog_uri: String,
    /// The catalog's name (the `catalog_name` column of the SQL catalog; default `kinesis-connectors`).
    #[serde(default = "default_catalog_name")]
    pub catalog_name: String,
    /// Where new tables' files go, e.g. `s3://lake/warehouse` (required for `sql`).
    pub warehouse: Option<String>,
    /// The table's namespace (dot-separated for nested namespaces).
    pub namespace: String,
    /// The table's name.
    pub table: String,
    /// Region of the warehouse bucket (default: the pipeline's).
    pub region: Option<String>,
    /// S3 endpoint override (S3-compatible servers, local emulators); path-style addressing is then used.
    pub endpoint: Option<String>,
    /// Create the namespace and the table at start-up when they do not exist, from `columns` and
    /// `partition_by` (off by default: the table's schema then comes from the catalog).
    #[serde(default)]
    pub create_table: bool,
    /// The columns of a table created with `create_table = true`.
    #[serde(default)]
    pub columns: Vec<ColumnOptions>,
    /// Partition transforms of a created table, e.g. `["day(ts)", "identity(event_type)", "bucket(16, id)"]`.
    #[serde(default)]
    pub partition_by: Vec<String>,
}

fn default_catalog_name() -> String {
    "kinesis-connectors".to_owned()
}

/// Options after cross-field validation.
#[derive(Clone, Debug)]
pub struct IcebergSettings {
    /// The options as given.
    pub options: IcebergOptions,
    /// The namespace's levels.
    pub namespace: Vec<String>,
    /// The parsed columns (empty unless `create_table`).
    pub columns: Vec<(String, ColumnType, bool)>,
    /// The parsed partition transforms.
    pub partition_by: Vec<PartitionField>,
}

impl IcebergOptions {
    /// Checks the options; errors name the key (relative to the emitter table).
    pub fn validate(self) -> Result<IcebergSettings, (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_owned(), m));
        match self.catalog {
            CatalogKind::Sql => {
                if !self.catalog_uri.starts_with("postgres://")
                    && !self.catalog_uri.starts_with("postgresql://")
                {
                    return bad(
                        "catalog_uri",
                        format!(
                            "expected a postgres://user@host:port/database URL, got {:?}",
                            redact_uri(&self.catalog_uri)
                        ),
                    );
                }
                if self.warehouse.is_none() {
                    return bad(
                        "warehouse",
                        "required with catalog = \"sql\" (e.g. \"s3://bucket/warehouse\")".into(),
                    );
                }
            }
            CatalogKind::Rest => {
                if !self.catalog_uri.starts_with("http://")
                    && !self.catalog_uri.starts_with("https://")
                {
                    return bad(
                        "catalog_uri",
                        format!(
                            "expected an http:// or https:// URL, got {:?}",
                            redact_uri(&self.catalog_uri)
                        ),
                    );
                }
            }
        }
        if uri_has_password(&self.catalog_uri) {
            return bad(
                "catalog_uri",
                "the URL holds a password: connectors.toml holds no secret; give it in the PGPASSWORD environment variable".into(),
            );
        }
        if let Some(w) = &self.warehouse
            && !w.starts_with("s3://")
        {
            return bad(
                "warehouse",
                format!("expected an s3://bucket/path location, got {w:?}"),
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
        let namespace: Vec<String> = self.namespace.split('.').map(str::to_owned).collect();
        if namespace.iter().any(|n| n.is_empty()) {
            return bad(
                "namespace",
                format!("{:?} has an empty level", self.namespace),
            );
        }
        if self.table.is_empty() || self.table.contains('.') {
            return bad(
                "table",
                format!(
                    "{:?}: expected a table name without dots (the namespace goes in `namespace`)",
                    self.table
                ),
            );
        }
        let mut columns = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            let kind = ColumnType::parse(&c.kind)
                .map_err(|m| (format!("columns[{i}].type"), format!("{:?}: {m}", c.kind)))?;
            if c.name.is_empty() {
                return bad(&format!("columns[{i}].name"), "empty column name".into());
            }
            if columns.iter().any(|(n, _, _)| n == &c.name) {
                return bad(
                    &format!("columns[{i}].name"),
                    format!("column {:?} is listed twice", c.name),
                );
            }
            columns.push((c.name.clone(), kind, c.required));
        }
        if self.create_table && columns.is_empty() {
            return bad(
                "columns",
                "create_table = true needs the table's columns".into(),
            );
        }
        if !self.create_table && (!columns.is_empty() || !self.partition_by.is_empty()) {
            return bad(
                if columns.is_empty() {
                    "partition_by"
                } else {
                    "columns"
                },
                "only used with create_table = true (an existing table's schema and partitions come from the catalog)".into(),
            );
        }
        let mut partition_by = Vec::with_capacity(self.partition_by.len());
        for (i, p) in self.partition_by.iter().enumerate() {
            let field = PartitionField::parse(p)
                .map_err(|m| (format!("partition_by[{i}]"), format!("{p:?}: {m}")))?;
            let Some((_, kind, _)) = columns.iter().find(|(n, _, _)| n == &field.column) else {
                return bad(
                    &format!("partition_by[{i}]"),
                    format!("{p:?}: no column {:?} in `columns`", field.column),
                );
            };
            if let Err(m) = field.check_source(kind) {
                return bad(&format!("partition_by[{i}]"), format!("{p:?}: {m}"));
            }
            partition_by.push(field);
        }
        Ok(IcebergSettings {
            options: self,
            namespace,
            columns,
            partition_by,
        })
    }
}

fn uri_has_password(uri: &str) -> bool {
    let Some((_, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The URI with any password replaced, for messages.
pub(crate) fn redact_uri(uri: &str) -> String {
    if !uri_has_password(uri) {
        return uri.to_owned();
    }
    let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{scheme}://{user}:***@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: &str) -> Result<IcebergSettings, (String, String)> {
        let text = format!(
            "catalog = \"sql\"\ncatalog_uri = \"postgres://kc@localhost:5432/kc\"\nwarehouse = \"s3://lake/wh\"\nnamespace = \"analytics\"\ntable = \"events\"\n{extra}"
        );
        toml::from_str::<IcebergOptions>(&text)
            .map_err(|e| ("<toml>".to_owned(), e.to_string()))?
            .validate()
    }

    #[test]
    fn a_password_in_the_catalog_uri_is_refused_and_not_repeated() {
        let text = "catalog = \"sql\"\ncatalog_uri = \"postgres://kc:hunter2@localhost/kc\"\nwarehouse = \"s3://lake/wh\"\nnamespace = \"a\"\ntable = \"t\"";
        let (key, message) = toml::from_str::<IcebergOptions>(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .validate()
            .err()
            .unwrap_or_else(|| panic!("accepted a password"));
        assert_eq!(key, "catalog_uri");
        assert!(!message.contains("hunter2"), "{message}");
        assert_eq!(
            redact_uri("postgres://kc:hunter2@localhost:5/kc"),
            "postgres://kc:***@localhost:5/kc"
        );
    }

    #[test]
    fn columns_and_partitions_are_checked_with_their_index() {
        let ok = options(
            "create_table = true\ncolumns = [{ name = \"ts\", type = \"timestamptz\" }, { name = \"kind\", type = \"string\" }]\npartition_by = [\"day(ts)\", \"identity(kind)\"]",
        )
        .unwrap_or_else(|(k, m)| panic!("{k}: {m}"));
        assert_eq!(ok.partition_by.len(), 2);
        let cases = [
            (
                "create_table = true\ncolumns = [{ name = \"ts\", type = \"timestamp_tz\" }]",
                "columns[0].type",
            ),
            (
                "create_table = true\ncolumns = [{ name = \"ts\", type = \"string\" }]\npartition_by = [\"day(ts)\"]",
                "partition_by[0]",
            ),
            (
                "create_table = true\ncolumns = [{ name = \"ts\", type = \"long\" }]\npartition_by = [\"day(nope)\"]",
                "partition_by[0]",
            ),
            ("create_table = true", "columns"),
            ("columns = [{ name = \"a\", type = \"long\" }]", "columns"),
        ];
        for (extra, want) in cases {
            match options(extra) {
                Ok(_) => panic!("accepted {extra}"),
                Err((key, _)) => assert_eq!(key, want, "{extra}"),
            }
        }
    }
}
