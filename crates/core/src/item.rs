//! Items: what a transformer makes of a record and what an emitter writes.
//!
//! Typed pipelines choose their own item type (anything [`EmittedSize`]). Pipelines built from
//! `connectors.toml` use the dynamic [`Item`]: the bytes of the emitted form plus whether they are JSON.
//! Keeping the JSON text rather than a parsed tree is what lets the `json` transformer and field filters
//! run at over a million records a second: validation and single-field lookups scan the text once and
//! allocate only for the value they return.

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The size in bytes of an item's emitted (serialized, uncompressed) form; buffers limit batches by it.
pub trait EmittedSize {
    /// Bytes this item adds to a batch when written.
    fn emitted_size(&self) -> usize;
}

impl EmittedSize for Bytes {
    fn emitted_size(&self) -> usize {
        self.len()
    }
}

impl EmittedSize for Vec<u8> {
    fn emitted_size(&self) -> usize {
        self.len()
    }
}

impl EmittedSize for String {
    fn emitted_size(&self) -> usize {
        self.len()
    }
}

impl EmittedSize for Value {
    /// Serializes the value to measure it; prefer [`Item`] on hot paths.
    fn emitted_size(&self) -> usize {
        serde_json::to_vec(self).map(|v| v.len()).unwrap_or(0)
    }
}

/// How the bytes of an [`Item`] are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemFormat {
    /// Opaque bytes.
    Raw,
    /// A valid JSON document (UTF-8).
    Json,
}

/// The dynamic item of configured pipelines: the emitted bytes and their format.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    data: Bytes,
    format: ItemFormat,
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format {
            ItemFormat::Json => write!(f, "Json({})", String::from_utf8_lossy(&self.data)),
            ItemFormat::Raw => write!(f, "Raw({} bytes)", self.data.len()),
        }
    }
}

impl EmittedSize for Item {
    fn emitted_size(&self) -> usize {
        self.data.len()
    }
}

impl Item {
    /// Opaque bytes, written as they are.
    pub fn raw(data: Bytes) -> Self {
        Self {
            data,
            format: ItemFormat::Raw,
        }
    }

    /// Validates `data` as one JSON document and keeps its text.
    pub fn parse_json(data: Bytes) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<IgnoredAny>(&data)?;
        Ok(Self {
            data,
            format: ItemFormat::Json,
        })
    }

    /// A JSON item serialized from a value.
    pub fn from_value(value: &Value) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings.
        let text = serde_json::to_vec(value).unwrap_or_default();
        Self {
            data: Bytes::from(text),
            format: ItemFormat::Json,
        }
    }

    /// The emitted bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Whether the bytes are a JSON document.
    pub fn format(&self) -> ItemFormat {
        self.format
    }

    /// Whether the bytes are a JSON document.
    pub fn is_json(&self) -> bool {
        self.format == ItemFormat::Json
    }

    /// Parses the whole document (JSON items), or returns the bytes as a JSON string when they are UTF-8.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self.format {
            ItemFormat::Json => serde_json::from_slice(&self.data),
            ItemFormat::Raw => match std::str::from_utf8(&self.data) {
                Ok(s) => Ok(Value::String(s.to_owned())),
                Err(_) => Err(de::Error::custom("raw item is not UTF-8")),
            },
        }
    }

    /// Looks up one field by path without parsing the rest of the document into a tree.
    /// `None` when the item is not JSON, the path is missing, or crosses a non-object.
    pub fn field(&self, path: &FieldPath) -> Option<Value> {
        if self.format != ItemFormat::Json {
            return None;
        }
        let mut de = serde_json::Deserializer::from_slice(&self.data);
        Lookup { path: &path.0 }.deserialize(&mut de).ok().flatten()
    }
}

/// A dotted path to a field of a JSON document, such as `user.id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses `a.b.c`; every segment must be non-empty.
    pub fn parse(path: &str) -> Option<Self> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return None;
        }
        Some(Self(segments))
    }

    /// The path's segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// Walks a document along a path, skipping every other value.
struct Lookup<'p> {
    path: &'p [String],
}

impl<'de> DeserializeSeed<'de> for Lookup<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.path.is_empty() {
            return Value::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lookup<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyEquals(&self.path[0]))? {
            if matches && found.is_none() {
                found = map.next_value_seed(Lookup {
                    path: &self.path[1..],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Compares a map key with a wanted name without allocating when the key has no escapes.
struct KeyEquals<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyEquals<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyEquals<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(text: &str) -> Item {
        Item::parse_json(Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    #[test]
    fn field_lookup_finds_top_level_and_nested_values() {
        let it = item(r#"{"a":1,"user":{"id":"u-7","tags":[1,2]},"s":"x\"y","z":null}"#);
        let p = |s| FieldPath::parse(s).unwrap();
        assert_eq!(it.field(&p("a")), Some(json!(1)));
        assert_eq!(it.field(&p("user.id")), Some(json!("u-7")));
        assert_eq!(it.field(&p("user.tags")), Some(json!([1, 2])));
        assert_eq!(it.field(&p("s")), Some(json!("x\"y")));
        assert_eq!(it.field(&p("z")), Some(Value::Null));
        assert_eq!(it.field(&p("missing")), None);
        assert_eq!(it.field(&p("a.b")), None);
        assert_eq!(it.field(&p("user.tags.x")), None);
    }

    #[test]
    fn escaped_keys_still_match() {
        let it = item(r#"{"k\u0065y": 5}"#);
        assert_eq!(it.field(&FieldPath::parse("key").unwrap()), Some(json!(5)));
    }

    #[test]
    fn invalid_json_is_rejected_and_paths_validated() {
        assert!(Item::parse_json(Bytes::from_static(b"{\"a\":")).is_err());
        assert!(Item::parse_json(Bytes::from_static(b"{} x")).is_err());
        assert!(FieldPath::parse("a..b").is_none());
        assert!(FieldPath::parse("").is_none());
    }

    #[test]
    fn raw_items_have_no_fields() {
        let it = Item::raw(Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(it.field(&FieldPath::parse("a").unwrap()), None);
        assert_eq!(it.emitted_size(), 7);
    }
}
