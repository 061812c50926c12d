//! The two synchronous stages: [`Transformer`] (record → items) and [`Filter`] (keep or drop an item).

use std::fmt;

use crate::record::Record;

/// Why a transformer could not turn a record into items. The record goes to the dead-letter target with
/// this reason; it is never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransformError {
    /// A short human-readable reason, written to the dead-letter entry.
    pub reason: String,
}

impl TransformError {
    /// An error with the given reason.
    pub fn new(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

/// Turns one record into zero or more items (Java's `ITransformer` and `ICollectionTransformer` in one).
///
/// Items are appended to `out`; on error whatever was appended for this record is discarded and the record
/// is dead-lettered whole.
pub trait Transformer<I>: Send + Sync {
    /// Appends the items made from `record` to `out`.
    fn transform(&self, record: &Record, out: &mut Vec<I>) -> Result<(), TransformError>;
}

/// Keeps or drops an item. Dropped items count as delivered for checkpointing.
pub trait Filter<I>: Send + Sync {
    /// Whether `item` (made from `record`) goes on to the buffer.
    fn keep(&self, item: &I, record: &Record) -> bool;
}

/// A [`Transformer`] from a closure.
pub struct TransformFn<F>(pub F);

impl<I, F> Transformer<I> for TransformFn<F>
where
    F: Fn(&Record, &mut Vec<I>) -> Result<(), TransformError> + Send + Sync,
{
    fn transform(&self, record: &Record, out: &mut Vec<I>) -> Result<(), TransformError> {
        (self.0)(record, out)
    }
}

/// A [`Filter`] from a closure.
pub struct FilterFn<F>(pub F);

impl<I, F> Filter<I> for FilterFn<F>
where
    F: Fn(&I, &Record) -> bool + Send + Sync,
{
    fn keep(&self, item: &I, record: &Record) -> bool {
        (self.0)(item, record)
    }
}
