//! What a table already holds, per shard: the positions carried in its snapshots' summaries.
//!
//! Each commit of a pipeline writes, for every shard in its batch, the position of the shard's last
//! item in the batch under `kc.<pipeline>.<shard>` in the snapshot summary (`<sequence>:<sub>:<index>`).
//! Reading them back from the snapshots of the table's main branch tells a worker — after a restart, a
//! lease moved to it, or a commit that may or may not have happened — which items are committed, so a
//! redelivered batch is not appended twice.

use std::collections::HashMap;

use iceberg::spec::TableMetadata;
use kinesis_connectors_core::{ItemPosition, Position, SequenceNumber, ShardId};

/// The summary key of `shard`'s position for `pipeline`.
pub(crate) fn key(pipeline: &str, shard: &str) -> String {
    format!("kc.{pipeline}.{shard}")
}

/// The summary value of a position.
pub(crate) fn encode(p: &ItemPosition) -> String {
    format!(
        "{}:{}:{}",
        p.position.sequence, p.position.sub_sequence, p.index
    )
}

/// A summary value back into a position (`None` if it is not one of ours).
pub(crate) fn decode(text: &str) -> Option<ItemPosition> {
    let mut parts = text.split(':');
    let sequence = SequenceNumber::new(parts.next()?).ok()?;
    let sub_sequence = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(ItemPosition::new(
        Position::new(sequence, sub_sequence),
        index,
    ))
}

/// The committed positions of one pipeline, kept up to date as the table's history grows.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    positions: HashMap<ShardId, ItemPosition>,
    /// The newest snapshot already read.
    read_to: Option<i64>,
}

impl Committed {
    /// The last committed item of `shard`, if any.
    pub(crate) fn get(&self, shard: &str) -> Option<&ItemPosition> {
        self.positions.get(shard)
    }

    /// Reads the snapshots newer than the last read, walking the main branch from its head.
    pub(crate) fn refresh(&mut self, pipeline: &str, metadata: &TableMetadata) {
        let prefix = format!("kc.{pipeline}.");
        let head = metadata.current_snapshot_id();
        let mut next = head;
        while let Some(id) = next {
            if Some(id) == self.read_to {
                break;
            }
            let Some(snapshot) = metadata.snapshot_by_id(id) else {
                // Expired history: what is older was checkpointed long ago.
                break;
            };
            for (k, v) in &snapshot.summary().additional_properties {
                if let (Some(shard), Some(p)) = (k.strip_prefix(&prefix), decode(v)) {
                    self.note(shard, p);
                }
            }
            next = snapshot.parent_snapshot_id();
        }
        self.read_to = head;
    }

    /// Records a position committed by this process.
    pub(crate) fn note(&mut self, shard: &str, p: ItemPosition) {
        match self.positions.get_mut(shard) {
            Some(known) if *known >= p => {}
            Some(known) => *known = p,
            None => {
                self.positions.insert(ShardId::from(shard), p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order() {
        let p = |s: &str, sub, i| {
            ItemPosition::new(
                Position::new(
                    SequenceNumber::new(s).unwrap_or_else(|e| panic!("{e}")),
                    sub,
                ),
                i,
            )
        };
        let a = p(
            "49590338271490256608559692538361571095921575989136588898",
            3,
            7,
        );
        assert_eq!(decode(&encode(&a)), Some(a.clone()));
        assert_eq!(decode("1:2"), None);
        assert_eq!(decode("x:0:0"), None);
        let mut c = Committed::default();
        c.note("shard-1", p("200", 0, 0));
        c.note("shard-1", p("100", 0, 5));
        assert_eq!(c.get("shard-1"), Some(&p("200", 0, 0)));
        c.note("shard-1", p("200", 0, 1));
        assert_eq!(c.get("shard-1"), Some(&p("200", 0, 1)));
    }
}
