//! `raw` and `json` transformers.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;

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
