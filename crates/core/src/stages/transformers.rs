//! `raw`, `json` and `json_lines` transformers.

use crate::item::Item;
use crate::record::Record;
use crate::stage::{TransformError, Transformer};

/// Passes the record's bytes through unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawTransformer;

impl Transformer<Item> for RawTransformer {
    fn transform(&self, record: &Record, out: &mut Vec<Item>) -> Result<(), TransformError> {
        out.push(Item::raw(record.data.clone()));
        Ok(())
    }
}

/// Validates the record as one JSON document; invalid JSON is a per-record error (dead letter).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonTransformer;

impl Transformer<Item> for JsonTransformer {
    fn transform(&self, record: &Record, out: &mut Vec<Item>) -> Result<(), TransformError> {
        let item = Item::parse_json(record.data.clone())
            .map_err(|e| TransformError::new(format_args!("invalid JSON: {e}")))?;
        out.push(item);
        Ok(())
    }
}

/// Splits the record into lines (`\n`, with an optional `\r` before it) and makes one JSON item of
/// each non-empty line: a producer that packs many events into one record (newline-delimited JSON)
/// gets one item per event. A line that is not JSON fails the whole record (it is dead-lettered with
/// the line's number), so no event of it is delivered alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLinesTransformer;

impl Transformer<Item> for JsonLinesTransformer {
    fn transform(&self, record: &Record, out: &mut Vec<Item>) -> Result<(), TransformError> {
        let start = out.len();
        let data = &record.data;
        let mut at = 0usize;
        for (n, line) in data.split(|b| *b == b'\n').enumerate() {
            let end = at + line.len();
            let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
            if !trimmed.iter().all(u8::is_ascii_whitespace) {
                match Item::parse_json(data.slice(at..at + trimmed.len())) {
                    Ok(item) => out.push(item),
                    Err(e) => {
                        out.truncate(start);
                        return Err(TransformError::new(format_args!(
                            "line {}: invalid JSON: {e}",
                            n + 1
                        )));
                    }
                }
            }
            at = end + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;

    #[test]
    fn json_lines_makes_one_item_per_line() {
        let mut out = Vec::new();
        JsonLinesTransformer
            .transform(
                &record("s", 1, b"{\"a\":1}\r\n\n{\"a\":2}\n  \n[3]"),
                &mut out,
            )
            .unwrap();
        let items: Vec<&[u8]> = out.iter().map(|i| i.data().as_ref()).collect();
        assert_eq!(items, vec![&b"{\"a\":1}"[..], b"{\"a\":2}", b"[3]"]);
        let err = JsonLinesTransformer
            .transform(&record("s", 2, b"{}\n{oops\n{}"), &mut out)
            .unwrap_err();
        assert!(
            err.reason.starts_with("line 2: invalid JSON"),
            "{}",
            err.reason
        );
        assert_eq!(out.len(), 3, "nothing of the failed record is kept");
    }

    #[test]
    fn json_accepts_documents_and_rejects_garbage() {
        let mut out = Vec::new();
        JsonTransformer
            .transform(&record("s", 1, br#"{"a":1}"#), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        let err = JsonTransformer
            .transform(&record("s", 2, b"{oops"), &mut out)
            .unwrap_err();
        assert!(
            err.reason.starts_with("invalid JSON: key must be a string"),
            "{}",
            err.reason
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn raw_passes_bytes_through() {
        let mut out = Vec::new();
        RawTransformer
            .transform(&record("s", 1, b"\x00\x01"), &mut out)
            .unwrap();
        assert_eq!(out[0].data().as_ref(), b"\x00\x01");
    }
}
