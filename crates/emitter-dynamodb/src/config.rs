//! The emitter's TOML options (`type = "dynamodb"`) and their validation into [`DynamoDbConfig`].
//!
//! Options are checked when the configuration is loaded (`kinesis-connector check` reports every
//! mistake without touching the network); errors name the offending key.

use std::collections::BTreeMap;
use std::time::Duration;

use kinesis_connectors_core::FieldPath;
use kinesis_connectors_core::contract::OptionError;
use kinesis_connectors_core::units::{ByteSize, DurationText};
use serde::Deserialize;

/// Most items one BatchWriteItem call takes (a DynamoDB hard limit).
pub const MAX_BATCH_ITEMS: usize = 25;
/// Largest BatchWriteItem request (a DynamoDB hard limit: 16 MB).
pub const MAX_BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of DynamoDB write requests in flight at once, across all shards.
pub const DEFAULT_MAX_CONCURRENT_WRITES: usize = 4;
/// Upper bound of `max_concurrent_writes`.
pub const MAX_CONCURRENT_WRITES: usize = 256;
/// The attribute holding the record's position in ordering-safe mode when none is named.
pub const DEFAULT_SEQUENCE_ATTRIBUTE: &str = "kinesis_sequence";

/// The type of a key attribute, as DynamoDB names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum KeyType {
    /// A string (`"S"`); JSON strings, and JSON numbers as their text.
    #[serde(rename = "S", alias = "string")]
    S,
    /// A number (`"N"`); JSON numbers, and strings holding a number.
    #[serde(rename = "N", alias = "number")]
    N,
    /// Binary (`"B"`); JSON strings holding base64.
    #[serde(rename = "B", alias = "binary")]
    B,
}

impl KeyType {
    /// DynamoDB's name of the type (`S`, `N`, `B`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S => "S",
            Self::N => "N",
            Self::B => "B",
        }
    }
}

/// `partition_key` / `sort_key`: one key attribute of the table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOptions {
    /// The attribute's name in the table.
    pub attribute: String,
    /// Its type: `"S"`, `"N"` or `"B"`.
    #[serde(rename = "type")]
    pub kind: KeyType,
    /// A dotted path into the JSON document to take the value from (e.g. `order.id`); by default the
    /// attribute of the same name in the mapped item (after `drop` and `rename`).
    pub field: Option<String>,
}

/// `ttl`: an expiry attribute (epoch seconds, as DynamoDB's TTL wants it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlOptions {
    /// The TTL attribute's name.
    pub attribute: String,
    /// Time added to the base time (default `"0s"`).
    pub after: Option<DurationText>,
    /// A dotted path to the base time: epoch seconds (a number) or an RFC 3339 string. A record without
    /// it is dead-lettered (a delete written as a tombstone counts from its arrival time instead).
    /// Without `field` the base is the record's arrival time in Kinesis.
    pub field: Option<String>,
}

/// `delete_when`: which items delete their key instead of writing it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteWhenOptions {
    /// A dotted path to the field that marks a delete, e.g. `op`.
    pub field: String,
    /// Delete when the field equals this value.
    pub equals: Option<serde_json::Value>,
    /// Delete when the field equals one of these values.
    pub one_of: Option<Vec<serde_json::Value>>,
}

/// The options of `type = "dynamodb"` as written in `connectors.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoDbOptions {
    /// The table (it must exist unless `create_table`).
    pub table: String,
    /// AWS region; the pipeline's region by default.
    pub region: Option<String>,
    /// Endpoint override (a local emulator, a VPC endpoint); empty means AWS.
    pub endpoint: Option<String>,
    /// The partition (hash) key.
    pub partition_key: KeyOptions,
    /// The sort (range) key, if the table has one.
    pub sort_key: Option<KeyOptions>,
    /// Top-level fields written under another attribute name: `{ field = "attribute" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Top-level fields not written.
    #[serde(default)]
    pub drop: Vec<String>,
    /// An expiry attribute.
    pub ttl: Option<TtlOptions>,
    /// Deletes: items matching this delete their key.
    pub delete_when: Option<DeleteWhenOptions>,
    /// Store the record's position (sequence and sub-sequence) in this attribute. Required in
    /// ordering-safe mode, where it defaults to `kinesis_sequence`.
    pub sequence_attribute: Option<String>,
    /// Conditional writes that never replace an item written from a newer record (see the crate docs).
    #[serde(default)]
    pub ordering_safe: bool,
    /// In ordering-safe mode, write deletes as tombstones (the key, the sequence attribute and this
    /// attribute set to `true`) so a redelivered older record cannot bring a deleted item back.
    pub tombstone_attribute: Option<String>,
    /// DynamoDB write requests in flight at once across all shards (default 4, at most 256).
    pub max_concurrent_writes: Option<i64>,
    /// Items per BatchWriteItem call (default and maximum 25).
    pub max_batch_items: Option<i64>,
    /// Bytes per BatchWriteItem call (default and maximum 16 MiB).
    pub max_batch_bytes: Option<ByteSize>,
    /// Create the table (on-demand billing, the configured keys) at start-up if it does not exist —
    /// for development and demos; off by default.
    #[serde(default)]
    pub create_table: bool,
}

/// A key attribute, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The attribute's name.
    pub attribute: String,
    /// Its type.
    pub kind: KeyType,
    /// Where the value comes from: a path into the document, or (`None`) the mapped attribute.
    pub field: Option<FieldPath>,
}

/// Where the TTL's base time comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtlBase {
    /// The record's arrival time in Kinesis (the processing time if unknown).
    Arrival,
    /// A field of the document: epoch seconds or RFC 3339.
    Field(FieldPath),
}

/// The TTL attribute, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlSpec {
    /// The attribute's name.
    pub attribute: String,
    /// The base time.
    pub base: TtlBase,
    /// Added to the base.
    pub after: Duration,
}

/// The delete rule, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteSpec {
    /// The marking field.
    pub field: FieldPath,
    /// Values that mean "delete".
    pub values: Vec<serde_json::Value>,
}

/// How a JSON document becomes a DynamoDB item.
#[derive(Clone, Debug, PartialEq)]
pub struct MappingSpec {
    /// The partition key.
    pub partition_key: KeySpec,
    /// The sort key, if any.
    pub sort_key: Option<KeySpec>,
    /// Field → attribute renames (top level).
    pub rename: BTreeMap<String, String>,
    /// Fields not written (top level, by their name in the document).
    pub drop: Vec<String>,
    /// The TTL attribute.
    pub ttl: Option<TtlSpec>,
    /// The delete rule.
    pub delete_when: Option<DeleteSpec>,
    /// The attribute holding the record's position.
    pub sequence_attribute: Option<String>,
    /// Deletes written as tombstones carrying this attribute.
    pub tombstone_attribute: Option<String>,
}

impl MappingSpec {
    /// The key attributes, partition key first.
    pub fn keys(&self) -> impl Iterator<Item = &KeySpec> {
        std::iter::once(&self.partition_key).chain(self.sort_key.as_ref())
    }
}

/// The validated options of the DynamoDB emitter.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamoDbConfig {
    /// The table.
    pub table: String,
    /// AWS region (`None`: the pipeline's).
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Item mapping.
    pub mapping: MappingSpec,
    /// Conditional writes by sequence.
    pub ordering_safe: bool,
    /// Requests in flight at once.
    pub max_concurrent_writes: usize,
    /// Items per BatchWriteItem.
    pub max_batch_items: usize,
    /// Bytes per BatchWriteItem.
    pub max_batch_bytes: usize,
    /// Create the table at start-up if missing.
    pub create_table: bool,
}

impl DynamoDbConfig {
    /// A configuration for `table` keyed by a string partition key `attribute`, with defaults elsewhere.
    pub fn new(table: impl Into<String>, partition_key: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            region: None,
            endpoint: None,
            mapping: MappingSpec {
                partition_key: KeySpec {
                    attribute: partition_key.into(),
                    kind: KeyType::S,
                    field: None,
                },
                sort_key: None,
                rename: BTreeMap::new(),
                drop: Vec::new(),
                ttl: None,
                delete_when: None,
                sequence_attribute: None,
                tombstone_attribute: None,
            },
            ordering_safe: false,
            max_concurrent_writes: DEFAULT_MAX_CONCURRENT_WRITES,
            max_batch_items: MAX_BATCH_ITEMS,
            max_batch_bytes: MAX_BATCH_BYTES as usize,
            create_table: false,
        }
    }
}

fn err(key: &str, message: impl Into<String>) -> OptionError {
    OptionError {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn path(key: &str, text: &str) -> Result<FieldPath, OptionError> {
    FieldPath::parse(text).ok_or_else(|| {
        err(
            key,
            format!("invalid field path {text:?}: segments must not be empty"),
        )
    })
}

fn name(key: &str, text: &str) -> Result<String, OptionError> {
    if text.is_empty() {
        return Err(err(key, "an attribute name must not be empty"));
    }
    if text.len() > 255 {
        return Err(err(
            key,
            "an attribute name is at most 255 bytes (DynamoDB limit)",
        ));
    }
    Ok(text.to_owned())
}

fn key_spec(key: &str, o: KeyOptions) -> Result<KeySpec, OptionError> {
    Ok(KeySpec {
        attribute: name(&format!("{key}.attribute"), &o.attribute)?,
        kind: o.kind,
        field: o
            .field
            .as_deref()
            .map(|f| path(&format!("{key}.field"), f))
            .transpose()?,
    })
}

fn bounded(
    key: &str,
    value: Option<i64>,
    default: usize,
    max: usize,
) -> Result<usize, OptionError> {
    match value {
        None => Ok(default),
        Some(v) if v >= 1 && (v as u64) <= max as u64 => Ok(v as usize),
        Some(v) => Err(err(key, format!("{v} is out of range 1..={max}"))),
    }
}

impl DynamoDbOptions {
    /// Checks the options and every rule between them.
    pub fn validate(self) -> Result<DynamoDbConfig, OptionError> {
        if self.table.len() < 3 || self.table.len() > 255 {
            return Err(err("table", "a table name is 3 to 255 characters long"));
        }
        let partition_key = key_spec("partition_key", self.partition_key)?;
        let sort_key = self.sort_key.map(|k| key_spec("sort_key", k)).transpose()?;
        if sort_key
            .as_ref()
            .is_some_and(|s| s.attribute == partition_key.attribute)
        {
            return Err(err(
                "sort_key.attribute",
                "the sort key must differ from the partition key",
            ));
        }
        let key_names: Vec<&str> = std::iter::once(&partition_key)
            .chain(sort_key.as_ref())
            .map(|k| k.attribute.as_str())
            .collect();
        for (from, to) in &self.rename {
            name(&format!("rename.{from}"), to)?;
        }
        for k in std::iter::once(&partition_key).chain(sort_key.as_ref()) {
            // A key taken from the mapped item must not be dropped, or every item would lack it.
            if k.field.is_none() {
                let source = self
                    .rename
                    .iter()
                    .find(|(_, to)| **to == k.attribute)
                    .map_or(k.attribute.as_str(), |(from, _)| from.as_str());
                if self.drop.iter().any(|d| d == source) {
                    return Err(err(
                        "drop",
                        format!(
                            "drops {source:?}, the source of key attribute {:?}; give the key a `field` or keep it",
                            k.attribute
                        ),
                    ));
                }
            }
        }
        let ttl = match self.ttl {
            None => None,
            Some(t) => {
                let attribute = name("ttl.attribute", &t.attribute)?;
                if key_names.contains(&attribute.as_str()) {
                    return Err(err("ttl.attribute", "must not be a key attribute"));
                }
                let after = t.after.map_or(Duration::ZERO, |d| d.0);
                let base = match t.field {
                    Some(f) => TtlBase::Field(path("ttl.field", &f)?),
                    None if after.is_zero() => {
                        return Err(err(
                            "ttl.after",
                            "without `field` the TTL counts from the arrival time: give a positive `after` such as \"30d\"",
                        ));
                    }
                    None => TtlBase::Arrival,
                };
                Some(TtlSpec {
                    attribute,
                    base,
                    after,
                })
            }
        };
        let delete_when = match self.delete_when {
            None => None,
            Some(d) => {
                let field = path("delete_when.field", &d.field)?;
                let values = match (d.equals, d.one_of) {
                    (Some(v), None) => vec![v],
                    (None, Some(vs)) if !vs.is_empty() => vs,
                    (None, Some(_)) => {
                        return Err(err("delete_when.one_of", "must list at least one value"));
                    }
                    _ => {
                        return Err(err(
                            "delete_when",
                            "takes exactly one of `equals` and `one_of`",
                        ));
                    }
                };
                Some(DeleteSpec { field, values })
            }
        };
        let sequence_attribute = match (self.sequence_attribute, self.ordering_safe) {
            (Some(s), _) => Some(name("sequence_attribute", &s)?),
            (None, true) => Some(DEFAULT_SEQUENCE_ATTRIBUTE.to_owned()),
            (None, false) => None,
        };
        if let Some(s) = &sequence_attribute {
            if key_names.contains(&s.as_str()) {
                return Err(err("sequence_attribute", "must not be a key attribute"));
            }
            if ttl.as_ref().is_some_and(|t| &t.attribute == s) {
                return Err(err(
                    "sequence_attribute",
                    "must differ from the TTL attribute",
                ));
            }
        }
        let tombstone_attribute = match self.tombstone_attribute {
            None => None,
            Some(_) if !self.ordering_safe => {
                return Err(err(
                    "tombstone_attribute",
                    "tombstones only make sense with `ordering_safe = true`",
                ));
            }
            Some(_) if delete_when.is_none() => {
                return Err(err(
                    "tombstone_attribute",
                    "tombstones replace deletes: configure `delete_when` too",
                ));
            }
            Some(t) => {
                let t = name("tombstone_attribute", &t)?;
                if key_names.contains(&t.as_str()) || sequence_attribute.as_ref() == Some(&t) {
                    return Err(err(
                        "tombstone_attribute",
                        "must differ from the key and sequence attributes",
                    ));
                }
                Some(t)
            }
        };
        let max_batch_bytes = match self.max_batch_bytes {
            None => MAX_BATCH_BYTES,
            Some(ByteSize(b)) if (1024..=MAX_BATCH_BYTES).contains(&b) => b,
            Some(ByteSize(b)) => {
                return Err(err(
                    "max_batch_bytes",
                    format!("{b} bytes is out of range 1KiB..=16MiB (the BatchWriteItem limit)"),
                ));
            }
        };
        Ok(DynamoDbConfig {
            table: self.table,
            region: self.region.filter(|r| !r.is_empty()),
            endpoint: self.endpoint.filter(|e| !e.is_empty()),
            mapping: MappingSpec {
                partition_key,
                sort_key,
                rename: self.rename,
                drop: self.drop,
                ttl,
                delete_when,
                sequence_attribute,
                tombstone_attribute,
            },
            ordering_safe: self.ordering_safe,
            create_table: self.create_table,
            max_concurrent_writes: bounded(
                "max_concurrent_writes",
                self.max_concurrent_writes,
                DEFAULT_MAX_CONCURRENT_WRITES,
                MAX_CONCURRENT_WRITES,
            )?,
            max_batch_items: bounded(
                "max_batch_items",
                self.max_batch_items,
                MAX_BATCH_ITEMS,
                MAX_BATCH_ITEMS,
            )?,
            max_batch_bytes: max_batch_bytes as usize,
        })
    }
}

impl TryFrom<DynamoDbOptions> for DynamoDbConfig {
    type Error = OptionError;

    fn try_from(o: DynamoDbOptions) -> Result<Self, OptionError> {
        o.validate()
    }
}

impl<'de> Deserialize<'de> for DynamoDbConfig {
    /// Parses [`DynamoDbOptions`] and validates them; errors name the key.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DynamoDbOptions::deserialize(d)?
            .validate()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<DynamoDbConfig, String> {
        let v: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        DynamoDbConfig::deserialize(v).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_configuration_validates() {
        let c = parse(
            r#"
            table = "orders"
            endpoint = ""
            partition_key = { attribute = "id", type = "S" }
            sort_key = { attribute = "line", type = "N", field = "line.no" }
            rename = { userId = "user_id" }
            drop = ["debug"]
            ttl = { attribute = "expires", after = "7d" }
            delete_when = { field = "op", one_of = ["delete", "remove"] }
            ordering_safe = true
            tombstone_attribute = "deleted"
            max_concurrent_writes = 16
            max_batch_bytes = "4MiB"
            "#,
        )
        .unwrap();
        assert_eq!(c.endpoint, None);
        assert_eq!(c.max_concurrent_writes, 16);
        assert_eq!(c.max_batch_items, 25);
        assert_eq!(c.max_batch_bytes, 4 << 20);
        assert_eq!(
            c.mapping.sequence_attribute.as_deref(),
            Some(DEFAULT_SEQUENCE_ATTRIBUTE)
        );
        let sk = c.mapping.sort_key.unwrap();
        assert_eq!(sk.kind, KeyType::N);
        assert_eq!(sk.field.unwrap().segments(), ["line", "no"]);
        let ttl = c.mapping.ttl.unwrap();
        assert_eq!(ttl.base, TtlBase::Arrival);
        assert_eq!(ttl.after, Duration::from_secs(7 * 86_400));
        assert_eq!(c.mapping.delete_when.unwrap().values.len(), 2);
    }

    #[test]
    fn mistakes_are_reported_with_their_key() {
        let base = r#"table = "orders"
            partition_key = { attribute = "id", type = "S" }
            "#;
        let cases = [
            ("max_batch_items = 26", "max_batch_items", "1..=25"),
            (
                "max_concurrent_writes = 0",
                "max_concurrent_writes",
                "out of range",
            ),
            ("max_batch_bytes = \"17MiB\"", "max_batch_bytes", "16MiB"),
            ("drop = [\"id\"]", "drop", "source of key attribute"),
            ("ttl = { attribute = \"t\" }", "ttl.after", "positive"),
            (
                "ttl = { attribute = \"id\", after = \"1d\" }",
                "ttl.attribute",
                "key",
            ),
            (
                "tombstone_attribute = \"gone\"",
                "tombstone_attribute",
                "ordering_safe",
            ),
            ("sequence_attribute = \"id\"", "sequence_attribute", "key"),
            (
                "delete_when = { field = \"op\" }",
                "delete_when",
                "exactly one",
            ),
            (
                "delete_when = { field = \"a..b\", equals = 1 }",
                "delete_when.field",
                "invalid field path",
            ),
            (
                "sort_key = { attribute = \"id\", type = \"S\" }",
                "sort_key.attribute",
                "differ",
            ),
        ];
        for (extra, key, words) in cases {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.starts_with(&format!("{key}: ")), "{extra}: {e}");
            assert!(e.contains(words), "{extra}: {e}");
        }
        let e = parse("table = \"orders\"\npartition_key = { attribute = \"id\", type = \"X\" }")
            .unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let e = parse(&format!("{base}colour = 1")).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_renamed_key_source_may_not_be_dropped_but_others_may() {
        let ok = parse(
            r#"table = "orders"
            partition_key = { attribute = "id", type = "S" }
            rename = { orderId = "id" }
            drop = ["id"]"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let e = parse(
            r#"table = "orders"
            partition_key = { attribute = "id", type = "S" }
            rename = { orderId = "id" }
            drop = ["orderId"]"#,
        )
        .unwrap_err();
        assert!(e.contains("orderId"), "{e}");
    }
}
