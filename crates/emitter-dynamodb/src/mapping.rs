//! From a JSON document to a DynamoDB write: attribute conversion, key extraction, renames, dropped
//! fields, TTL, deletes, and the sequence attribute.
//!
//! JSON numbers are written with their exact text (DynamoDB numbers are decimal text of up to 38
//! digits): the document is walked with `serde_json`'s `RawValue`, so a 30-digit id is never rounded
//! through an `f64`. Whether a number fits DynamoDB's range is DynamoDB's call: a rejected item is
//! isolated and dead-lettered by the emitter.
//!
//! JSON → DynamoDB: `null` → `NULL`, booleans → `BOOL`, numbers → `N`, strings → `S`, arrays → `L`,
//! objects → `M`. Sets are never produced (JSON has none).

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use chrono::{DateTime, Utc};
use kinesis_connectors_core::{Item, ItemPosition, Record};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::{KeySpec, KeyType, MappingSpec, TtlBase};

/// What a write does to its key.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    /// Put the whole item.
    Put(HashMap<String, AttributeValue>),
    /// Delete the item.
    Delete,
}

/// One item's write, ready for a request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Write {
    /// The primary key's identity (two writes to one key have equal identities).
    pub(crate) identity: Vec<u8>,
    /// The key attributes.
    pub(crate) key: HashMap<String, AttributeValue>,
    /// Put or delete.
    pub(crate) op: Op,
    /// The record's position, encoded so that text order is position order ([`encode_position`]).
    pub(crate) sequence: String,
    /// Estimated bytes of the write in a request body.
    pub(crate) size: usize,
}

/// Encodes a position as text whose byte order is the position order, for the sequence attribute.
///
/// Kinesis sequence numbers are decimals of up to 129 digits (56 in practice): more than a DynamoDB
/// number holds (38 significant digits), so they are stored as strings, which DynamoDB compares byte by
/// byte. The form is `LLL:SEQUENCE:SUBSEQUENCE:ITEM` — the sequence's digit count zero-padded to 3
/// digits, the sequence (no leading zeros), the KPL sub-sequence zero-padded to 20 digits and the
/// item's index within its record zero-padded to 10 — so a longer (larger) sequence sorts after a
/// shorter one, equal lengths compare digit by digit, and of two items of one record the later one
/// wins. A 56-digit sequence takes 92 bytes, where zero-padding to 129 digits would take 162.
///
/// Values written before the item index was part of the form (`LLL:SEQUENCE:SUBSEQUENCE`) sort just
/// before every item of the same record, so a table written by an older version keeps its order.
pub fn encode_position(at: &ItemPosition) -> String {
    let seq = at.position.sequence.as_str();
    format!(
        "{:03}:{seq}:{:020}:{:010}",
        seq.len(),
        at.position.sub_sequence,
        at.index
    )
}

/// Turns items into writes according to a [`MappingSpec`].
#[derive(Clone, Debug)]
pub(crate) struct Mapper {
    spec: MappingSpec,
}

impl Mapper {
    pub(crate) fn new(spec: MappingSpec) -> Self {
        Self { spec }
    }

    /// The write for `item` made from `record`, or why it cannot be written (a permanent failure).
    /// Maps `item`, the item `index` of `record`.
    pub(crate) fn map(&self, item: &Item, record: &Record, index: u32) -> Result<Write, String> {
        if !item.is_json() {
            return Err(
                "the item is not JSON: the dynamodb emitter writes JSON objects (use the json transformer)"
                    .to_owned(),
            );
        }
        let Fields(fields) = serde_json::from_slice(item.data())
            .map_err(|e| format!("the item is not a JSON object: {e}"))?;
        let spec = &self.spec;

        let delete = match &spec.delete_when {
            Some(d) => match lookup(&fields, d.field.segments())? {
                Some(raw) => {
                    let v: serde_json::Value =
                        serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                    d.values.contains(&v)
                }
                None => false,
            },
            None => false,
        };

        // The mapped item: dropped fields removed, renamed fields under their new names.
        let mapped: Vec<(&str, &RawValue)> = fields
            .iter()
            .filter(|(name, _)| !spec.drop.iter().any(|d| d == name))
            .map(|(name, raw)| {
                let name = spec.rename.get(name).map_or(name.as_str(), String::as_str);
                (name, *raw)
            })
            .collect();

        let mut key = HashMap::with_capacity(2);
        let mut identity = Vec::with_capacity(64);
        for k in spec.keys() {
            let raw = match &k.field {
                Some(path) => lookup(&fields, path.segments())?,
                None => mapped
                    .iter()
                    .rev()
                    .find(|(name, _)| *name == k.attribute)
                    .map(|(_, raw)| *raw),
            }
            .filter(|raw| raw.get() != "null")
            .ok_or_else(|| missing_key(k))?;
            let value = key_value(k, raw)?;
            push_identity(&mut identity, &value);
            key.insert(k.attribute.clone(), value);
        }

        let sequence = encode_position(&ItemPosition::new(record.position.clone(), index));
        let op = if delete && spec.tombstone_attribute.is_none() {
            Op::Delete
        } else {
            let mut attrs: HashMap<String, AttributeValue> = HashMap::new();
            if let Some(t) = spec.tombstone_attribute.as_ref().filter(|_| delete) {
                attrs.insert(t.clone(), AttributeValue::Bool(true));
            } else {
                attrs.reserve(mapped.len() + 2);
                for (name, raw) in &mapped {
                    attrs.insert((*name).to_owned(), convert(raw)?);
                }
            }
            for (name, value) in &key {
                attrs.insert(name.clone(), value.clone());
            }
            if let Some(ttl) = &spec.ttl {
                let arrival = || record.approximate_arrival.unwrap_or_else(Utc::now);
                let base = match &ttl.base {
                    TtlBase::Arrival => arrival(),
                    TtlBase::Field(path) => match lookup(&fields, path.segments())? {
                        Some(raw) => {
                            ttl_base(raw).map_err(|e| format!("TTL base field {path}: {e}"))?
                        }
                        // A delete record often carries only the key: its tombstone counts from
                        // the arrival time.
                        None if delete => arrival(),
                        None => {
                            return Err(format!(
                                "missing TTL base field {path} (epoch seconds or RFC 3339)"
                            ));
                        }
                    },
                };
                let at = base.timestamp().saturating_add(ttl.after.as_secs() as i64);
                attrs.insert(ttl.attribute.clone(), AttributeValue::N(at.to_string()));
            }
            if let Some(s) = &spec.sequence_attribute {
                attrs.insert(s.clone(), AttributeValue::S(sequence.clone()));
            }
            Op::Put(attrs)
        };
        let size = match &op {
            Op::Put(attrs) => map_size(attrs) + 32,
            Op::Delete => map_size(&key) + 32,
        };
        Ok(Write {
            identity,
            key,
            op,
            sequence,
            size,
        })
    }
}

fn missing_key(k: &KeySpec) -> String {
    match &k.field {
        Some(path) => format!(
            "missing key attribute {:?} (from field {path})",
            k.attribute
        ),
        None => format!("missing key attribute {:?}", k.attribute),
    }
}

/// The top-level fields of a JSON object, each with its unparsed value, in document order.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'a>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(k) = map.next_key::<String>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Finds a dotted path in a document's fields; `Ok(None)` when absent or crossing a non-object.
fn lookup<'a>(
    fields: &[(String, &'a RawValue)],
    path: &[String],
) -> Result<Option<&'a RawValue>, String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let Some(raw) = fields
        .iter()
        .rev()
        .find(|(n, _)| n == first)
        .map(|(_, r)| *r)
    else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(Some(raw));
    }
    if !raw.get().starts_with('{') {
        return Ok(None);
    }
    let Fields(inner) = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    lookup(&inner, rest)
}

/// Converts a JSON value to an attribute value; see the module documentation.
pub(crate) fn convert(raw: &RawValue) -> Result<AttributeValue, String> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'{') => {
            let Fields(fields) = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let mut m = HashMap::with_capacity(fields.len());
            for (k, v) in fields {
                m.insert(k, convert(v)?);
            }
            AttributeValue::M(m)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            AttributeValue::L(items.into_iter().map(convert).collect::<Result<_, _>>()?)
        }
        Some(b'"') => AttributeValue::S(serde_json::from_str(text).map_err(|e| e.to_string())?),
        Some(b't') => AttributeValue::Bool(true),
        Some(b'f') => AttributeValue::Bool(false),
        Some(b'n') => AttributeValue::Null(true),
        _ => AttributeValue::N(text.to_owned()),
    })
}

/// A key attribute's value from its JSON value, checked against the key's type.
fn key_value(k: &KeySpec, raw: &RawValue) -> Result<AttributeValue, String> {
    let text = raw.get();
    let is_string = text.starts_with('"');
    let is_number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let string =
        || -> Result<String, String> { serde_json::from_str(text).map_err(|e| e.to_string()) };
    let wrong = |what: &str| {
        format!(
            "key attribute {:?} must be {what}, got {}",
            k.attribute,
            truncate(text, 64)
        )
    };
    let value = match k.kind {
        KeyType::S if is_string => AttributeValue::S(string()?),
        KeyType::S if is_number => AttributeValue::S(text.to_owned()),
        KeyType::S => return Err(wrong("a string (S)")),
        KeyType::N if is_number => AttributeValue::N(text.to_owned()),
        KeyType::N if is_string => {
            let s = string()?;
            if canonical_number(&s).is_none() {
                return Err(wrong("a number (N)"));
            }
            AttributeValue::N(s)
        }
        KeyType::N => return Err(wrong("a number (N)")),
        KeyType::B if is_string => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string()?)
                .map_err(|_| wrong("base64 text (B)"))?;
            AttributeValue::B(Blob::new(bytes))
        }
        KeyType::B => return Err(wrong("base64 text (B)")),
    };
    let empty = match &value {
        AttributeValue::S(s) => s.is_empty(),
        AttributeValue::B(b) => b.as_ref().is_empty(),
        _ => false,
    };
    if empty {
        return Err(format!(
            "key attribute {:?} is empty (DynamoDB rejects empty keys)",
            k.attribute
        ));
    }
    Ok(value)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Appends one key value to a key identity: type, length, canonical bytes.
fn push_identity(out: &mut Vec<u8>, value: &AttributeValue) {
    let (tag, bytes): (u8, std::borrow::Cow<'_, [u8]>) = match value {
        AttributeValue::S(s) => (b'S', s.as_bytes().into()),
        AttributeValue::N(n) => (
            b'N',
            canonical_number(n)
                .unwrap_or_else(|| n.clone())
                .into_bytes()
                .into(),
        ),
        AttributeValue::B(b) => (b'B', b.as_ref().into()),
        other => (b'?', format!("{other:?}").into_bytes().into()),
    };
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(&bytes);
}

/// The identity of a primary key given as attributes (from a request DynamoDB returned), in the
/// order of `keys`; `None` if an attribute is missing.
pub(crate) fn identity_of<'a>(
    keys: impl Iterator<Item = &'a KeySpec>,
    attrs: &HashMap<String, AttributeValue>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    for k in keys {
        push_identity(&mut out, attrs.get(&k.attribute)?);
    }
    Some(out)
}

/// A number's canonical text (`-0.123e4` style: sign, significant digits, exponent), so that `1`,
/// `1.0` and `10e-1` — one DynamoDB number — have one identity. `None` if `text` is not a number.
pub(crate) fn canonical_number(text: &str) -> Option<String> {
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i64>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: String = int.chars().chain(frac.chars()).collect();
    let leading = digits.bytes().take_while(|b| *b == b'0').count();
    let significant = digits[leading..].trim_end_matches('0');
    if significant.is_empty() {
        return Some("0".to_owned());
    }
    // value = 0.SIGNIFICANT × 10^exp
    let exp = exponent
        .checked_add(int.len() as i64)?
        .checked_sub(leading as i64)?;
    Some(format!(
        "{}0.{significant}e{exp}",
        if negative { "-" } else { "" }
    ))
}

/// The TTL base time from a field: epoch seconds (a number) or RFC 3339 text.
fn ttl_base(raw: &RawValue) -> Result<DateTime<Utc>, String> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
        return DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{s:?} is not RFC 3339 ({e})"));
    }
    let secs: f64 = text.parse().map_err(|_| {
        format!(
            "{} is neither epoch seconds nor RFC 3339 text",
            truncate(text, 64)
        )
    })?;
    if !secs.is_finite() || secs.abs() > 1e14 {
        return Err(format!("{text} is out of range for epoch seconds"));
    }
    DateTime::from_timestamp(secs.floor() as i64, 0)
        .ok_or_else(|| format!("{text} is out of range for epoch seconds"))
}

/// Bytes `text` takes as a JSON string, quotes included.
fn json_string_size(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Bytes an attribute value takes in a request body (`{"S":"..."}` and so on).
pub(crate) fn value_size(v: &AttributeValue) -> usize {
    const WRAP: usize = 7; // {"X":...}
    match v {
        AttributeValue::S(s) => WRAP + json_string_size(s),
        AttributeValue::N(n) => WRAP + n.len() + 2,
        AttributeValue::B(b) => WRAP + 2 + b.as_ref().len().div_ceil(3) * 4,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => WRAP + 8,
        AttributeValue::L(items) => {
            WRAP + 2 + items.iter().map(|i| value_size(i) + 1).sum::<usize>()
        }
        AttributeValue::M(m) => WRAP + map_size(m),
        AttributeValue::Ss(ss) => {
            WRAP + 2 + ss.iter().map(|s| json_string_size(s) + 1).sum::<usize>()
        }
        AttributeValue::Ns(ns) => WRAP + 2 + ns.iter().map(|n| n.len() + 3).sum::<usize>(),
        AttributeValue::Bs(bs) => {
            WRAP + 2
                + bs.iter()
                    .map(|b| b.as_ref().len().div_ceil(3) * 4 + 3)
                    .sum::<usize>()
        }
        _ => WRAP + 16,
    }
}

/// Bytes an attribute map takes in a request body.
pub(crate) fn map_size(m: &HashMap<String, AttributeValue>) -> usize {
    2 + m
        .iter()
        .map(|(k, v)| json_string_size(k) + 2 + value_size(v))
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{DeleteSpec, DynamoDbConfig, TtlSpec};
    use bytes::Bytes;
    use kinesis_connectors_core::testing::{record, sequence};
    use kinesis_connectors_core::{FieldPath, Position};
    use std::time::Duration;

    fn item(text: &str) -> Item {
        Item::parse_json(Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    fn spec() -> MappingSpec {
        DynamoDbConfig::new("t", "id").mapping
    }

    fn map(spec: &MappingSpec, text: &str) -> Result<Write, String> {
        Mapper::new(spec.clone()).map(&item(text), &record("shardId-0", 7, b""), 0)
    }

    fn put(w: &Write) -> &HashMap<String, AttributeValue> {
        match &w.op {
            Op::Put(m) => m,
            Op::Delete => panic!("a delete"),
        }
    }

    #[test]
    fn json_types_map_to_attribute_types_and_numbers_keep_their_text() {
        let w = map(
            &spec(),
            r#"{"id":"a","n":123456789012345678901234567890,"f":1.50,"b":true,"z":null,
                "l":[1,"x",{"k":false}],"m":{"s":"t\"q"},"e":""}"#,
        )
        .unwrap();
        let m = put(&w);
        assert_eq!(m["id"], AttributeValue::S("a".into()));
        assert_eq!(
            m["n"],
            AttributeValue::N("123456789012345678901234567890".into())
        );
        assert_eq!(m["f"], AttributeValue::N("1.50".into()));
        assert_eq!(m["b"], AttributeValue::Bool(true));
        assert_eq!(m["z"], AttributeValue::Null(true));
        assert_eq!(
            m["l"],
            AttributeValue::L(vec![
                AttributeValue::N("1".into()),
                AttributeValue::S("x".into()),
                AttributeValue::M(HashMap::from([("k".into(), AttributeValue::Bool(false))])),
            ])
        );
        assert_eq!(
            m["m"],
            AttributeValue::M(HashMap::from([(
                "s".into(),
                AttributeValue::S("t\"q".into())
            )]))
        );
        assert_eq!(m["e"], AttributeValue::S(String::new()));
        assert_eq!(w.key.len(), 1);
    }

    #[test]
    fn renames_drops_and_nested_key_fields() {
        let mut s = spec();
        s.partition_key.attribute = "pk".into();
        s.partition_key.field = Some(FieldPath::parse("order.id").unwrap());
        s.sort_key = Some(KeySpec {
            attribute: "line".into(),
            kind: KeyType::N,
            field: None,
        });
        s.rename.insert("lineNo".into(), "line".into());
        s.drop.push("debug".into());
        let w = map(
            &s,
            r#"{"order":{"id":"o-1"},"lineNo":"42","debug":"x","keep":1}"#,
        )
        .unwrap();
        let m = put(&w);
        assert_eq!(m["pk"], AttributeValue::S("o-1".into()));
        assert_eq!(m["line"], AttributeValue::N("42".into()));
        assert!(!m.contains_key("debug") && !m.contains_key("lineNo"));
        assert!(m.contains_key("order") && m.contains_key("keep"));
        assert_eq!(w.key.len(), 2);
    }

    #[test]
    fn missing_null_empty_or_mistyped_keys_are_refused() {
        let s = spec();
        for (doc, words) in [
            (r#"{"x":1}"#, "missing key attribute \"id\""),
            (r#"{"id":null}"#, "missing key attribute"),
            (r#"{"id":""}"#, "empty"),
            (r#"{"id":[1]}"#, "must be a string"),
            (r#"[1,2]"#, "not a JSON object"),
        ] {
            let e = map(&s, doc).unwrap_err();
            assert!(e.contains(words), "{doc}: {e}");
        }
        let raw = Item::raw(Bytes::from_static(b"{\"id\":\"a\"}"));
        let e = Mapper::new(s)
            .map(&raw, &record("s", 1, b""), 0)
            .unwrap_err();
        assert!(e.contains("not JSON"), "{e}");

        let mut n = spec();
        n.partition_key.kind = KeyType::N;
        assert!(
            map(&n, r#"{"id":"12x"}"#)
                .unwrap_err()
                .contains("must be a number")
        );
        assert_eq!(
            put(&map(&n, r#"{"id":7}"#).unwrap())["id"],
            AttributeValue::N("7".into())
        );
        let mut b = spec();
        b.partition_key.kind = KeyType::B;
        assert!(
            map(&b, r#"{"id":"not base64!"}"#)
                .unwrap_err()
                .contains("base64")
        );
        assert_eq!(
            map(&b, r#"{"id":"AAE="}"#).unwrap().key["id"],
            AttributeValue::B(Blob::new(vec![0u8, 1]))
        );
    }

    #[test]
    fn equal_numbers_share_one_identity_and_types_do_not_mix() {
        let mut n = spec();
        n.partition_key.kind = KeyType::N;
        let ids: Vec<Vec<u8>> = [
            r#"{"id":1}"#,
            r#"{"id":1.0}"#,
            r#"{"id":"10e-1"}"#,
            r#"{"id":0.1e1}"#,
        ]
        .iter()
        .map(|d| map(&n, d).unwrap().identity)
        .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(ids[0], map(&n, r#"{"id":2}"#).unwrap().identity);
        assert_ne!(ids[0], map(&spec(), r#"{"id":"1"}"#).unwrap().identity);
        assert_eq!(
            canonical_number("-0012.3400e2").as_deref(),
            Some("-0.1234e4")
        );
        assert_eq!(canonical_number("0.000").as_deref(), Some("0"));
        assert_eq!(canonical_number("0.05").as_deref(), Some("0.5e-1"));
        assert_eq!(canonical_number("1e"), None);
        assert_eq!(canonical_number("."), None);
        assert_eq!(canonical_number("abc"), None);
    }

    #[test]
    fn deletes_tombstones_ttl_and_sequence() {
        let mut s = spec();
        s.delete_when = Some(DeleteSpec {
            field: FieldPath::parse("op").unwrap(),
            values: vec![serde_json::json!("delete")],
        });
        s.sequence_attribute = Some("seq".into());
        s.ttl = Some(TtlSpec {
            attribute: "exp".into(),
            base: TtlBase::Arrival,
            after: Duration::from_secs(100),
        });
        let d = map(&s, r#"{"id":"a","op":"delete","x":1}"#).unwrap();
        assert_eq!(d.op, Op::Delete);
        assert_eq!(d.key["id"], AttributeValue::S("a".into()));
        let p = map(&s, r#"{"id":"a","op":"upsert"}"#).unwrap();
        let m = put(&p);
        // record 7 arrived at 2026-01-01T00:00:07Z
        assert_eq!(
            m["exp"],
            AttributeValue::N((1_767_225_607 + 100).to_string())
        );
        assert_eq!(
            m["seq"],
            AttributeValue::S(encode_position(&ItemPosition::new(
                Position::new(sequence(7), 0),
                0
            )))
        );

        s.tombstone_attribute = Some("deleted".into());
        let t = map(&s, r#"{"id":"a","op":"delete","x":1}"#).unwrap();
        let m = put(&t);
        assert_eq!(m["deleted"], AttributeValue::Bool(true));
        assert!(m.contains_key("seq") && m.contains_key("exp") && !m.contains_key("x"));
        s.ttl = Some(TtlSpec {
            attribute: "exp".into(),
            base: TtlBase::Field(FieldPath::parse("at").unwrap()),
            after: Duration::from_secs(100),
        });
        let t = map(&s, r#"{"id":"a","op":"delete"}"#).unwrap();
        assert_eq!(
            put(&t)["exp"],
            AttributeValue::N((1_767_225_607 + 100).to_string())
        );

        s.ttl = Some(TtlSpec {
            attribute: "exp".into(),
            base: TtlBase::Field(FieldPath::parse("at").unwrap()),
            after: Duration::from_secs(10),
        });
        let e = put(&map(&s, r#"{"id":"a","at":1000.7}"#).unwrap())["exp"].clone();
        assert_eq!(e, AttributeValue::N("1010".into()));
        let e = put(&map(&s, r#"{"id":"a","at":"1970-01-01T00:16:40Z"}"#).unwrap())["exp"].clone();
        assert_eq!(e, AttributeValue::N("1010".into()));
        assert!(
            map(&s, r#"{"id":"a"}"#)
                .unwrap_err()
                .contains("missing TTL")
        );
        assert!(
            map(&s, r#"{"id":"a","at":"yesterday"}"#)
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn encoded_positions_sort_like_positions() {
        let p = |seq: &str, sub: u64| {
            Position::new(
                kinesis_connectors_core::SequenceNumber::new(seq).unwrap(),
                sub,
            )
        };
        let mut positions = vec![
            p("9", 0),
            p("10", 0),
            p("10", 3),
            p("99", 0),
            p("100", 0),
            p(&"9".repeat(56), 0),
            p(&format!("1{}", "0".repeat(56)), 0),
            p(&format!("1{}", "0".repeat(128)), u64::MAX),
            p("0", 0),
        ];
        positions.sort();
        let items: Vec<ItemPosition> = positions
            .iter()
            .flat_map(|p| [0, 1, 10, u32::MAX].map(|i| ItemPosition::new(p.clone(), i)))
            .collect();
        let encoded: Vec<String> = items.iter().map(encode_position).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        assert_eq!(
            encode_position(&ItemPosition::new(p("42", 1), 3)),
            "002:42:00000000000000000001:0000000003"
        );
        // A value written before the item index was part of the form sorts before every item of its
        // record and after every earlier record.
        let old = "002:42:00000000000000000001";
        assert!(old < encode_position(&ItemPosition::new(p("42", 1), 0)).as_str());
        assert!(old > encode_position(&ItemPosition::new(p("42", 0), u32::MAX)).as_str());
    }

    #[test]
    fn sizes_match_the_serialized_request_within_a_few_bytes() {
        let w = map(
            &spec(),
            r#"{"id":"a","s":"x\ny","n":12.5,"l":[true,null],"m":{"k":"v"}}"#,
        )
        .unwrap();
        let m = put(&w);
        // The SDK's JSON form of the item, written by hand.
        let wire = r#"{"id":{"S":"a"},"s":{"S":"x\ny"},"n":{"N":"12.5"},"l":{"L":[{"BOOL":true},{"NULL":true}]},"m":{"M":{"k":{"S":"v"}}}}"#;
        let estimate = map_size(m);
        assert!(estimate >= wire.len(), "{estimate} < {}", wire.len());
        assert!(estimate <= wire.len() + 40, "{estimate} vs {}", wire.len());
    }
}
