//! `all` and `field` filters.

use serde_json::Value;

use crate::item::{FieldPath, Item};
use crate::record::Record;
use crate::stage::Filter;

/// Keeps every item.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllFilter;

impl<I> Filter<I> for AllFilter {
    fn keep(&self, _: &I, _: &Record) -> bool {
        true
    }
}

/// What a [`FieldFilter`] tests.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldPredicate {
    /// The field equals the value (JSON equality; `1` and `1.0` differ).
    Equals(Value),
    /// The field is present (`true`) or absent (`false`); `null` counts as present.
    Exists(bool),
    /// The field equals one of the values.
    OneOf(Vec<Value>),
}

/// Keeps JSON items whose field satisfies a predicate (optionally negated). Non-JSON items have no
/// fields: they pass only `exists = false`.
#[derive(Clone, Debug)]
pub struct FieldFilter {
    path: FieldPath,
    predicate: FieldPredicate,
    negate: bool,
}

impl FieldFilter {
    /// A filter on `path` (e.g. `event.type`).
    pub fn new(path: FieldPath, predicate: FieldPredicate, negate: bool) -> Self {
        Self {
            path,
            predicate,
            negate,
        }
    }
}

impl Filter<Item> for FieldFilter {
    fn keep(&self, item: &Item, _: &Record) -> bool {
        let value = item.field(&self.path);
        let hit = match (&self.predicate, &value) {
            (FieldPredicate::Exists(want), v) => v.is_some() == *want,
            (FieldPredicate::Equals(want), Some(v)) => v == want,
            (FieldPredicate::OneOf(wants), Some(v)) => wants.contains(v),
            (_, None) => false,
        };
        hit != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;
    use bytes::Bytes;
    use serde_json::json;

    fn keep(f: &FieldFilter, doc: &str) -> bool {
        let item = Item::parse_json(Bytes::copy_from_slice(doc.as_bytes())).unwrap();
        f.keep(&item, &record("s", 1, b""))
    }

    #[test]
    fn predicates() {
        let p = FieldPath::parse("e.type").unwrap();
        let eq = FieldFilter::new(p.clone(), FieldPredicate::Equals(json!("click")), false);
        assert!(keep(&eq, r#"{"e":{"type":"click"}}"#));
        assert!(!keep(&eq, r#"{"e":{"type":"view"}}"#));
        assert!(!keep(&eq, r#"{"x":1}"#));
        let not_eq = FieldFilter::new(p.clone(), FieldPredicate::Equals(json!("click")), true);
        assert!(keep(&not_eq, r#"{"x":1}"#));
        let exists = FieldFilter::new(p.clone(), FieldPredicate::Exists(true), false);
        assert!(keep(&exists, r#"{"e":{"type":null}}"#));
        assert!(!keep(&exists, r#"{"e":{}}"#));
        let absent = FieldFilter::new(p.clone(), FieldPredicate::Exists(false), false);
        assert!(keep(&absent, r#"{"e":{}}"#));
        let one_of = FieldFilter::new(p, FieldPredicate::OneOf(vec![json!("a"), json!(2)]), false);
        assert!(keep(&one_of, r#"{"e":{"type":2}}"#));
        assert!(!keep(&one_of, r#"{"e":{"type":"2"}}"#));
    }
}
