//! Where a shard is read from: the configured initial position and the stored checkpoint.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use kinesis_connectors_core::{Position, SequenceNumber};
use serde::{Deserialize, Serialize};

/// Where to start a shard that has no checkpoint yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitialPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records put after the consumer first starts. Persisted as the start time, so a restart
    /// before the first checkpoint does not skip what arrived in between.
    Latest,
    /// Records that arrived at or after this time.
    AtTimestamp(DateTime<Utc>),
    /// At these sequence numbers, per shard; shards not listed start at the trim horizon.
    AtSequence(BTreeMap<String, SequenceNumber>),
    /// After these sequence numbers, per shard; shards not listed start at the trim horizon.
    AfterSequence(BTreeMap<String, SequenceNumber>),
}

/// What the store holds for a shard: where reading resumes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "checkpoint", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Checkpoint {
    /// Not started; read from the oldest record.
    TrimHorizon,
    /// Not started; read from the newest record (only for stores shared with KCL applications).
    Latest,
    /// Not started; read records that arrived at or after `timestamp`.
    AtTimestamp {
        /// The time.
        timestamp: DateTime<Utc>,
    },
    /// Not started; read from this sequence number, inclusive.
    AtSequence {
        /// The sequence number.
        sequence: SequenceNumber,
    },
    /// Everything up to and including `position` is delivered; resume after it.
    Sequence {
        /// The last delivered position.
        #[serde(flatten)]
        position: Position,
    },
    /// The shard was read to its end and everything in it delivered; its children may start.
    ShardEnd,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::TrimHorizon => f.write_str("TRIM_HORIZON"),
            Checkpoint::Latest => f.write_str("LATEST"),
            Checkpoint::AtTimestamp { timestamp } => {
                write!(f, "AT_TIMESTAMP {}", timestamp.to_rfc3339())
            }
            Checkpoint::AtSequence { sequence } => write!(f, "AT_SEQUENCE {sequence}"),
            Checkpoint::Sequence { position } => write!(f, "{position}"),
            Checkpoint::ShardEnd => f.write_str("SHARD_END"),
        }
    }
}

impl Checkpoint {
    /// The delivered position, if records were delivered.
    pub fn position(&self) -> Option<&Position> {
        match self {
            Checkpoint::Sequence { position } => Some(position),
            _ => None,
        }
    }

    /// Whether the shard has ended and been fully delivered.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }

    /// Whether `self` may replace `stored`: positions only move forward, and nothing follows SHARD_END.
    pub fn may_replace(&self, stored: &Checkpoint) -> bool {
        match (stored, self) {
            (Checkpoint::ShardEnd, _) => false,
            (Checkpoint::Sequence { position: old }, Checkpoint::Sequence { position: new }) => {
                new > old
            }
            (Checkpoint::Sequence { .. }, Checkpoint::ShardEnd) => true,
            (Checkpoint::Sequence { .. }, _) => false,
            _ => true,
        }
    }

    /// The initial checkpoint of a shard from the configured position, for a shard first seen now.
    pub fn initial(initial: &InitialPosition, shard: &str, started_at: DateTime<Utc>) -> Self {
        match initial {
            InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
            InitialPosition::Latest => Checkpoint::AtTimestamp {
                timestamp: started_at,
            },
            InitialPosition::AtTimestamp(t) => Checkpoint::AtTimestamp { timestamp: *t },
            InitialPosition::AtSequence(map) => match map.get(shard) {
                Some(s) => Checkpoint::AtSequence {
                    sequence: s.clone(),
                },
                None => Checkpoint::TrimHorizon,
            },
            InitialPosition::AfterSequence(map) => match map.get(shard) {
                Some(s) => Checkpoint::Sequence {
                    position: Position::new(s.clone(), 0),
                },
                None => Checkpoint::TrimHorizon,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u64) -> Checkpoint {
        Checkpoint::Sequence {
            position: Position::new(SequenceNumber::new(n.to_string()).unwrap(), 0),
        }
    }

    #[test]
    fn checkpoints_only_move_forward() {
        assert!(seq(5).may_replace(&Checkpoint::TrimHorizon));
        assert!(seq(6).may_replace(&seq(5)));
        assert!(!seq(5).may_replace(&seq(5)));
        assert!(!seq(4).may_replace(&seq(5)));
        assert!(Checkpoint::ShardEnd.may_replace(&seq(5)));
        assert!(!seq(9).may_replace(&Checkpoint::ShardEnd));
        assert!(!Checkpoint::TrimHorizon.may_replace(&seq(5)));
    }

    #[test]
    fn serialized_form_is_readable() {
        let text = serde_json::to_string(&seq(42)).unwrap();
        assert_eq!(
            text,
            r#"{"checkpoint":"SEQUENCE","sequence":"42","sub_sequence":0}"#
        );
        assert_eq!(serde_json::from_str::<Checkpoint>(&text).unwrap(), seq(42));
        let end = serde_json::to_string(&Checkpoint::ShardEnd).unwrap();
        assert_eq!(end, r#"{"checkpoint":"SHARD_END"}"#);
    }
}
