//! The emitter: counts per event type, kept exact under redelivery.
//!
//! The counts and, per shard, the position of the last record counted are written together, atomically
//! (a temporary file, fsync, rename), before a batch is acknowledged. A record at or below its shard's
//! stored position was counted already (a redelivery after a crash, or a replay from an older
//! checkpoint) and is skipped — so the counts stay exact although delivery is at least once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kinesis_connectors_core::{
    Batch, EmitError, EmitOutcome, EmittedSize, Emitter, Position, async_trait,
};
use serde::{Deserialize, Serialize};

/// A click event, the pipeline's typed item.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Click {
    /// What happened (`view`, `click`, `purchase`, ...).
    pub event_type: String,
    /// Who did it, if known.
    #[serde(default)]
    pub user: Option<String>,
}

impl EmittedSize for Click {
    fn emitted_size(&self) -> usize {
        self.event_type.len() + self.user.as_ref().map_or(0, String::len)
    }
}

/// What the state file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Events per event type.
    pub by_type: BTreeMap<String, u64>,
    /// Per shard, the position (`sequence` or `sequence/subsequence`) of the last event counted.
    pub counted_up_to: BTreeMap<String, String>,
}

impl Counts {
    /// The total of all counts.
    pub fn total(&self) -> u64 {
        self.by_type.values().sum()
    }

    /// Reads a state file (`Default` if it does not exist).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    fn store(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

fn parse_position(text: &str) -> Option<Position> {
    let (seq, sub) = text.split_once('/').unwrap_or((text, "0"));
    Some(Position::new(
        kinesis_connectors_core::SequenceNumber::new(seq).ok()?,
        sub.parse().ok()?,
    ))
}

/// Counts clicks per event type into a JSON file; see the module documentation.
pub struct CountsEmitter {
    path: PathBuf,
    state: Mutex<Counts>,
}

impl CountsEmitter {
    /// An emitter keeping its state in `path` (read now if it exists).
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let state = Mutex::new(Counts::load(&path)?);
        Ok(Self { path, state })
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Emitter<Click> for CountsEmitter {
    async fn emit(&self, batch: &Batch<Click>) -> Result<EmitOutcome, EmitError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| EmitError::permanent("state lock poisoned"))?;
        let mut next = state.clone();
        for entry in &batch.items {
            let record = entry.record();
            let shard = record.shard_id.to_string();
            let done = next
                .counted_up_to
                .get(&shard)
                .and_then(|p| parse_position(p));
            if done.is_some_and(|d| record.position <= d) {
                continue; // counted before this redelivery
            }
            *next
                .by_type
                .entry(entry.item.event_type.clone())
                .or_default() += 1;
            next.counted_up_to
                .insert(shard, record.position.to_string());
        }
        // Small file, written synchronously: a real sink would use its own async client here.
        next.store(&self.path)
            .map_err(|e| EmitError::retryable(format!("{}: {e}", self.path.display())))?;
        *state = next;
        Ok(EmitOutcome::success())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kinesis_connectors_core::testing::record;
    use kinesis_connectors_core::{Envelope, Origin};

    use super::*;

    fn batch(shard: &str, items: &[(u64, &str)]) -> Batch<Click> {
        let envelopes = items
            .iter()
            .map(|(n, t)| {
                let click = Click {
                    event_type: (*t).to_owned(),
                    user: None,
                };
                Envelope::new(click, Origin::new(record(shard, *n, b"")))
            })
            .collect();
        Batch::new(Arc::from("typed"), envelopes, 0)
    }

    #[tokio::test]
    async fn counts_are_exact_under_redelivery_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counts.json");
        let e = CountsEmitter::open(&path).unwrap();
        e.emit(&batch("a", &[(1, "view"), (2, "click"), (3, "view")]))
            .await
            .unwrap();
        e.emit(&batch("b", &[(1, "view")])).await.unwrap();
        // Redelivered (records 2..3 of shard a again) plus one new record.
        e.emit(&batch("a", &[(2, "click"), (3, "view"), (4, "purchase")]))
            .await
            .unwrap();
        let c = e.counts();
        assert_eq!(c.by_type["view"], 3);
        assert_eq!(c.by_type["click"], 1);
        assert_eq!(c.by_type["purchase"], 1);
        // A restarted process reads the state and still skips what was counted.
        let again = CountsEmitter::open(&path).unwrap();
        assert_eq!(again.counts(), c);
        again
            .emit(&batch("a", &[(1, "view"), (4, "purchase")]))
            .await
            .unwrap();
        assert_eq!(again.counts(), c);
    }

    #[test]
    fn positions_round_trip_through_their_text() {
        let p = Position::new(kinesis_connectors_core::testing::sequence(7), 3);
        assert_eq!(parse_position(&p.to_string()), Some(p));
        assert_eq!(parse_position("x"), None);
    }
}
