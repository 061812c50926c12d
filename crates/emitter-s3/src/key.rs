//! Object key templates.
//!
//! Placeholders: `{prefix}`, `{pipeline}`, `{stream}`, `{yyyy}`, `{MM}`, `{dd}`, `{HH}`, `{mm}` (the
//! first record's arrival time, UTC), `{shard}`, `{first_sequence}`, `{last_sequence}` (the object's
//! sequence range), `{batch_id}` (a hash of the object's shard ranges), `{ext}` (the format's
//! extension with the compression's, e.g. `.ndjson.gz`) and `{field:NAME}` (a JSON field of the item,
//! dotted paths allowed: one object per distinct value, for dynamic partitioning such as
//! `event_type={field:event_type}/`).
//!
//! Keys depend only on the records in the object, so a batch delivered again after a crash overwrites
//! its object instead of adding one. An object holding several shards (cross-shard batching) renders
//! `{shard}` as `multi-` and its `{batch_id}`.

use std::fmt::Write;

use chrono::{DateTime, Datelike, Timelike, Utc};
use kinesis_connectors_core::{FieldPath, Item, ItemPosition, ShardRange};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Prefix,
    Pipeline,
    Stream,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Shard,
    FirstSequence,
    LastSequence,
    BatchId,
    Ext,
    Field(FieldPath),
}

/// A parsed key template; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

/// What a key is rendered from.
#[derive(Debug)]
pub struct KeyContext<'a> {
    /// `{prefix}`.
    pub prefix: &'a str,
    /// `{pipeline}`.
    pub pipeline: &'a str,
    /// `{stream}`.
    pub stream: &'a str,
    /// The first record's arrival.
    pub time: DateTime<Utc>,
    /// The object's shard ranges.
    pub ranges: &'a [ShardRange],
    /// `{ext}`.
    pub ext: &'a str,
}

impl KeyTemplate {
    /// Parses a template; unknown placeholders and unbalanced braces are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in key template {text:?}"))?;
            let name = &after[..close];
            let part = match name {
                "prefix" => Part::Prefix,
                "pipeline" => Part::Pipeline,
                "stream" => Part::Stream,
                "yyyy" => Part::Year,
                "MM" => Part::Month,
                "dd" => Part::Day,
                "HH" => Part::Hour,
                "mm" => Part::Minute,
                "shard" => Part::Shard,
                "first_sequence" => Part::FirstSequence,
                "last_sequence" => Part::LastSequence,
                "batch_id" => Part::BatchId,
                "ext" => Part::Ext,
                n => match n.strip_prefix("field:").and_then(FieldPath::parse) {
                    Some(path) => Part::Field(path),
                    None => {
                        return Err(format!(
                            "unknown placeholder {{{n}}} in key template {text:?}"
                        ));
                    }
                },
            };
            parts.push(part);
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unbalanced '}}' in key template {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether two batches can never render the same key (each object is named by its records).
    pub fn is_unique_per_batch(&self) -> bool {
        self.parts.contains(&Part::BatchId)
            || (self.parts.contains(&Part::Shard) && self.parts.contains(&Part::FirstSequence))
    }

    /// Whether the template partitions by item fields.
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The partition of an item: the rendered values of its `{field:...}` placeholders.
    pub fn partition(&self, item: &Item) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(path) => Some(render_field(item.field(path))),
                _ => None,
            })
            .collect()
    }

    /// Renders a key for an object whose items have `partition`.
    pub fn render(&self, ctx: &KeyContext<'_>, partition: &[String]) -> String {
        let mut out = String::new();
        let mut fields = partition.iter();
        let single = ctx.ranges.len() == 1;
        for part in &self.parts {
            let _ = match part {
                Part::Text(t) => write!(out, "{t}"),
                Part::Prefix => write!(out, "{}", ctx.prefix),
                Part::Pipeline => write!(out, "{}", ctx.pipeline),
                Part::Stream => write!(out, "{}", ctx.stream),
                Part::Year => write!(out, "{:04}", ctx.time.year()),
                Part::Month => write!(out, "{:02}", ctx.time.month()),
                Part::Day => write!(out, "{:02}", ctx.time.day()),
                Part::Hour => write!(out, "{:02}", ctx.time.hour()),
                Part::Minute => write!(out, "{:02}", ctx.time.minute()),
                Part::Shard if single => write!(out, "{}", ctx.ranges[0].shard),
                Part::Shard => write!(out, "multi-{}", batch_id(ctx.ranges)),
                Part::FirstSequence => write!(
                    out,
                    "{}",
                    position_text(ctx.ranges.first().map(|r| &r.first))
                ),
                Part::LastSequence => {
                    write!(out, "{}", position_text(ctx.ranges.last().map(|r| &r.last)))
                }
                Part::BatchId => write!(out, "{}", batch_id(ctx.ranges)),
                Part::Ext => write!(out, "{}", ctx.ext),
                Part::Field(_) => write!(
                    out,
                    "{}",
                    fields.next().map(String::as_str).unwrap_or("_null")
                ),
            };
        }
        out
    }
}

/// An item's position in a key: `SEQUENCE` for the first item of a plain record, `SEQUENCE_SUB` for
/// the first item of a KPL user record, `SEQUENCE_SUB_INDEX` for a later item of a record (so the
/// batches a many-item record is split over get keys of their own).
fn position_text(p: Option<&ItemPosition>) -> String {
    match p {
        Some(p) if p.index > 0 => format!(
            "{}_{}_{}",
            p.position.sequence, p.position.sub_sequence, p.index
        ),
        Some(p) if p.position.sub_sequence == 0 => p.position.sequence.to_string(),
        Some(p) => format!("{}_{}", p.position.sequence, p.position.sub_sequence),
        None => "none".into(),
    }
}

/// A field value as a key segment: strings as they are, other values as JSON, missing or null as
/// `_null`; characters unsafe in keys (`/`, control characters) become `_`.
fn render_field(v: Option<serde_json::Value>) -> String {
    let text = match v {
        None | Some(serde_json::Value::Null) => return "_null".into(),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    let clean: String = text
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    if clean.is_empty() {
        "_empty".into()
    } else {
        clean
    }
}

/// A stable 64-bit FNV-1a hash of the ranges, in hex (stable across processes and versions).
pub fn batch_id(ranges: &[ShardRange]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let feed_at = |feed: &mut dyn FnMut(&[u8]), p: &ItemPosition| {
        feed(p.position.sequence.as_str().as_bytes());
        feed(&p.position.sub_sequence.to_le_bytes());
        // Fed only when set, so the ids of batches of single-item records stay what they were.
        if p.index > 0 {
            feed(b"#");
            feed(&p.index.to_le_bytes());
        }
    };
    for r in ranges {
        feed(r.shard.as_bytes());
        feed(b"|");
        feed_at(&mut feed, &r.first);
        feed(b"|");
        feed_at(&mut feed, &r.last);
        feed(b";");
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::TimeZone;
    use kinesis_connectors_core::Position;
    use kinesis_connectors_core::testing::sequence;

    fn range(shard: &str, a: u64, b: u64) -> ShardRange {
        ShardRange {
            shard: shard.into(),
            first: ItemPosition::new(Position::new(sequence(a), 0), 0),
            last: ItemPosition::new(Position::new(sequence(b), 0), 0),
            items: 1,
        }
    }

    #[test]
    fn batches_of_one_many_item_record_get_keys_of_their_own() {
        let t = KeyTemplate::parse(crate::config::DEFAULT_KEY).unwrap();
        let at = |i| ItemPosition::new(Position::new(sequence(5), 0), i);
        let chunk = |a, b| ShardRange {
            shard: "shardId-000000000001".into(),
            first: at(a),
            last: at(b),
            items: (b - a + 1) as usize,
        };
        let chunks = [chunk(0, 499), chunk(500, 999), chunk(1000, 1199)];
        let key = |r: &ShardRange| {
            t.render(
                &KeyContext {
                    prefix: "",
                    pipeline: "p",
                    stream: "s",
                    time: Utc.with_ymd_and_hms(2026, 3, 7, 4, 5, 6).unwrap(),
                    ranges: std::slice::from_ref(r),
                    ext: ".ndjson",
                },
                &[],
            )
        };
        let keys: std::collections::HashSet<String> = chunks.iter().map(key).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(
            key(&chunks[1]).ends_with(&format!("-{s}_0_500-{s}_0_999.ndjson", s = sequence(5)))
        );
        let ids: std::collections::HashSet<String> = chunks
            .iter()
            .map(|r| batch_id(std::slice::from_ref(r)))
            .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn default_key_renders_date_path_and_range() {
        let t = KeyTemplate::parse(crate::config::DEFAULT_KEY).unwrap();
        assert!(t.is_unique_per_batch());
        let ranges = [range("shardId-000000000001", 5, 9)];
        let ctx = KeyContext {
            prefix: "archive/",
            pipeline: "clicks",
            stream: "s",
            time: Utc.with_ymd_and_hms(2026, 3, 7, 4, 5, 6).unwrap(),
            ranges: &ranges,
            ext: ".ndjson.gz",
        };
        assert_eq!(
            t.render(&ctx, &[]),
            format!(
                "archive/clicks/2026/03/07/04/shardId-000000000001-{}-{}.ndjson.gz",
                sequence(5),
                sequence(9)
            )
        );
        let multi = [range("a", 1, 2), range("b", 3, 4)];
        let ctx = KeyContext {
            ranges: &multi,
            ..ctx
        };
        let key = t.render(&ctx, &[]);
        assert!(
            key.contains(&format!("multi-{}", batch_id(&multi))),
            "{key}"
        );
        assert_ne!(
            batch_id(&multi),
            batch_id(&[range("a", 1, 2), range("b", 3, 5)])
        );
    }

    #[test]
    fn fields_partition_items() {
        let t = KeyTemplate::parse("{pipeline}/type={field:e.type}/{shard}-{first_sequence}{ext}")
            .unwrap();
        let item = |s: &str| Item::parse_json(Bytes::copy_from_slice(s.as_bytes())).unwrap();
        assert_eq!(t.partition(&item(r#"{"e":{"type":"a/b"}}"#)), vec!["a_b"]);
        assert_eq!(t.partition(&item(r#"{"e":{"type":3}}"#)), vec!["3"]);
        assert_eq!(t.partition(&item(r#"{"e":{}}"#)), vec!["_null"]);
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(KeyTemplate::parse("{shard").is_err());
        assert!(KeyTemplate::parse("{what}").is_err());
        assert!(KeyTemplate::parse("a}b").is_err());
        assert!(KeyTemplate::parse("{field:}").is_err());
        assert!(
            !KeyTemplate::parse("{pipeline}/{first_sequence}")
                .unwrap()
                .is_unique_per_batch()
        );
    }
}
