//! The record as it comes off a Kinesis shard, and the positions used to checkpoint it.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A shard id such as `shardId-000000000003`; cheap to clone.
pub type ShardId = Arc<str>;

/// A Kinesis sequence number.
///
/// Kinesis sequence numbers are decimal strings of up to 129 digits (in practice 56), larger than any
/// machine integer. They compare numerically: a shorter number (no leading zeros) is smaller; at equal
/// length the digits compare lexicographically.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

/// A sequence number that is not a decimal string without leading zeros.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid sequence number {0:?}: expected decimal digits without leading zeros")]
pub struct InvalidSequenceNumber(pub String);

impl SequenceNumber {
    /// Parses and validates a sequence number.
    pub fn new(s: impl Into<Arc<str>>) -> Result<Self, InvalidSequenceNumber> {
        let s: Arc<str> = s.into();
        let valid = !s.is_empty()
            && s.len() <= 130
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 1 || !s.starts_with('0'));
        if valid {
            Ok(Self(s))
        } else {
            Err(InvalidSequenceNumber(s.to_string()))
        }
    }

    /// The decimal text of the sequence number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SequenceNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SequenceNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SequenceNumber::new(s).map_err(serde::de::Error::custom)
    }
}

/// A position inside a shard: a sequence number and, for records de-aggregated from a KPL aggregate, the
/// index of the sub-record (0 for plain records). Positions order first by sequence, then by sub-sequence.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The Kinesis sequence number of the (possibly aggregated) record.
    pub sequence: SequenceNumber,
    /// The sub-record index within a KPL aggregate; 0 for plain records.
    #[serde(default)]
    pub sub_sequence: u64,
}

impl Position {
    /// A position from its parts.
    pub fn new(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self {
            sequence,
            sub_sequence,
        }
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sub_sequence == 0 {
            write!(f, "{}", self.sequence)
        } else {
            write!(f, "{}/{}", self.sequence, self.sub_sequence)
        }
    }
}

/// An item's place in its shard: the position of the record it was made from, and its index among the
/// items the transformer made of that record (0 for the first or only item). Items order by record
/// position, then index, so the items of one record that a batch boundary splits still have distinct,
/// ordered identities.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemPosition {
    /// The position of the record the item was made from.
    pub position: Position,
    /// The item's index among the items its record made (before filtering).
    #[serde(default)]
    pub index: u32,
}

impl ItemPosition {
    /// The item `index` of the record at `position`.
    pub fn new(position: Position, index: u32) -> Self {
        Self { position, index }
    }

    /// The record's sequence number.
    pub fn sequence(&self) -> &SequenceNumber {
        &self.position.sequence
    }
}

impl fmt::Debug for ItemPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ItemPosition {
    /// `SEQUENCE[/SUB][#INDEX]`: the record's position, then the item index when it is not 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.index == 0 {
            write!(f, "{}", self.position)
        } else {
            write!(f, "{}#{}", self.position, self.index)
        }
    }
}

/// One data record read from a shard.
#[derive(Clone, Debug)]
pub struct Record {
    /// The payload, as put by the producer (after KPL de-aggregation, one user record).
    pub data: Bytes,
    /// The partition key the producer chose.
    pub partition_key: Arc<str>,
    /// Where the record sits in its shard.
    pub position: Position,
    /// When Kinesis accepted the record, if known.
    pub approximate_arrival: Option<DateTime<Utc>>,
    /// The shard the record was read from.
    pub shard_id: ShardId,
    /// The stream the record was read from.
    pub stream: Arc<str>,
}

impl Record {
    /// The record's sequence number.
    pub fn sequence_number(&self) -> &SequenceNumber {
        &self.position.sequence
    }

    /// The record's KPL sub-sequence number (0 for plain records).
    pub fn sub_sequence_number(&self) -> u64 {
        self.position.sub_sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::new(s).unwrap()
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert!(seq("9") < seq("10"));
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("4959033827149025660855969253836157109592157598913658889")
        );
        assert!(seq("123") < seq("124"));
        assert_eq!(seq("0").cmp(&seq("0")), Ordering::Equal);
    }

    #[test]
    fn invalid_sequence_numbers_are_rejected() {
        for bad in ["", "01", "12a", "-1", " 1"] {
            assert!(SequenceNumber::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn item_positions_order_by_record_then_index() {
        let a = ItemPosition::new(Position::new(seq("100"), 0), 7);
        let b = ItemPosition::new(Position::new(seq("100"), 1), 0);
        let c = ItemPosition::new(Position::new(seq("100"), 1), 2);
        assert!(a < b && b < c);
        assert_eq!(c.to_string(), "100/1#2");
        assert_eq!(b.to_string(), "100/1");
    }

    #[test]
    fn positions_order_by_sub_sequence_within_a_sequence() {
        let a = Position::new(seq("100"), 3);
        let b = Position::new(seq("100"), 4);
        let c = Position::new(seq("101"), 0);
        assert!(a < b && b < c);
    }
}
