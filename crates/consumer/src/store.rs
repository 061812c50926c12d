//! Checkpoint stores: where each shard's progress survives restarts.
//!
//! [`CheckpointStore`] is what the worker needs; the embedded [`FileCheckpointStore`] (the default) keeps
//! one JSON file per pipeline, written atomically (temporary file, `fsync`, rename, directory `fsync`) and
//! locked against a second process. The DynamoDB lease table implements the same trait to scale out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::StoreError;
use crate::position::Checkpoint;

/// What the store knows of one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Where reading resumes.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// The shard's parents, as known when the entry was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// When the checkpoint last changed.
    pub updated_at: DateTime<Utc>,
    /// The worker holding the shard, for stores with leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Persistent per-shard checkpoints of one pipeline.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Every shard entry.
    async fn load(&self) -> Result<BTreeMap<String, ShardState>, StoreError>;

    /// Creates the entry of a newly discovered shard unless one exists.
    async fn create(
        &self,
        shard: &str,
        checkpoint: Checkpoint,
        parents: Vec<String>,
    ) -> Result<(), StoreError>;

    /// Moves a shard's checkpoint forward. A checkpoint that does not move forward (see
    /// [`Checkpoint::may_replace`]) is ignored when equal and refused when older.
    async fn checkpoint(&self, shard: &str, checkpoint: Checkpoint) -> Result<(), StoreError>;

    /// Where the store lives, for logs and `status`.
    fn describe(&self) -> String;
}

#[derive(Debug, Serialize, Deserialize)]
struct FileContents {
    version: u32,
    stream: String,
    shards: BTreeMap<String, ShardState>,
}

/// The embedded store: one JSON file per pipeline; see the module documentation.
pub struct FileCheckpointStore {
    path: PathBuf,
    stream: String,
    state: Mutex<BTreeMap<String, ShardState>>,
    _lock: std::fs::File,
}

impl std::fmt::Debug for FileCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCheckpointStore")
            .field("path", &self.path)
            .finish()
    }
}

impl FileCheckpointStore {
    /// Opens (or creates) the store at `path` for `stream`, taking an exclusive lock on `path.lock`.
    pub fn open(path: impl Into<PathBuf>, stream: &str) -> Result<Self, StoreError> {
        let path = path.into();
        let io = |e: std::io::Error| StoreError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock_path = lock_path(&path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let shards = match Self::read(&path)? {
            Some(contents) if contents.stream != stream => {
                return Err(StoreError::WrongStream {
                    path: path.display().to_string(),
                    found: contents.stream,
                    expected: stream.to_owned(),
                });
            }
            Some(contents) => contents.shards,
            None => BTreeMap::new(),
        };
        Ok(Self {
            path,
            stream: stream.to_owned(),
            state: Mutex::new(shards),
            _lock: lock,
        })
    }

    /// Reads a store file without locking it (for `status` and tests); `None` if it does not exist.
    pub fn read_file(path: &Path) -> Result<Option<BTreeMap<String, ShardState>>, StoreError> {
        Ok(Self::read(path)?.map(|c| c.shards))
    }

    fn read(path: &Path) -> Result<Option<FileContents>, StoreError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                message: format!("not a checkpoint file: {e}"),
            })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn persist(&self, shards: &BTreeMap<String, ShardState>) -> Result<(), StoreError> {
        let contents = FileContents {
            version: 1,
            stream: self.stream.clone(),
            shards: shards.clone(),
        };
        let path = self.path.clone();
        let text = serde_json::to_vec_pretty(&contents).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&target, &text))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|message| StoreError::Io {
                path: path.display().to_string(),
                message,
            })
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file, never a torn one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self) -> Result<BTreeMap<String, ShardState>, StoreError> {
        Ok(self.state.lock().await.clone())
    }

    async fn create(
        &self,
        shard: &str,
        checkpoint: Checkpoint,
        parents: Vec<String>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if state.contains_key(shard) {
            return Ok(());
        }
        let mut next = state.clone();
        next.insert(
            shard.to_owned(),
            ShardState {
                checkpoint,
                parents,
                updated_at: Utc::now(),
                owner: None,
            },
        );
        self.persist(&next).await?;
        *state = next;
        Ok(())
    }

    async fn checkpoint(&self, shard: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(current) = state.get(shard) {
            if current.checkpoint == checkpoint {
                return Ok(());
            }
            if !checkpoint.may_replace(&current.checkpoint) {
                return Err(StoreError::Rejected {
                    shard: shard.to_owned(),
                    message: format!(
                        "{checkpoint} does not follow the stored {}",
                        current.checkpoint
                    ),
                });
            }
        }
        let mut next = state.clone();
        let entry = next.entry(shard.to_owned()).or_insert_with(|| ShardState {
            checkpoint: checkpoint.clone(),
            parents: Vec::new(),
            updated_at: Utc::now(),
            owner: None,
        });
        entry.checkpoint = checkpoint;
        entry.updated_at = Utc::now();
        self.persist(&next).await?;
        *state = next;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

/// Lets an `Arc` of a store be used where a store is expected.
#[async_trait]
impl<S: CheckpointStore + ?Sized> CheckpointStore for Arc<S> {
    async fn load(&self) -> Result<BTreeMap<String, ShardState>, StoreError> {
        (**self).load().await
    }
    async fn create(
        &self,
        shard: &str,
        checkpoint: Checkpoint,
        parents: Vec<String>,
    ) -> Result<(), StoreError> {
        (**self).create(shard, checkpoint, parents).await
    }
    async fn checkpoint(&self, shard: &str, checkpoint: Checkpoint) -> Result<(), StoreError> {
        (**self).checkpoint(shard, checkpoint).await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_connectors_core::{Position, SequenceNumber};

    fn seq(n: u64) -> Checkpoint {
        Checkpoint::Sequence {
            position: Position::new(SequenceNumber::new(n.to_string()).unwrap(), 0),
        }
    }

    #[tokio::test]
    async fn checkpoints_survive_reopening_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.checkpoints.json");
        {
            let store = FileCheckpointStore::open(&path, "s").unwrap();
            store
                .create("a", Checkpoint::TrimHorizon, vec![])
                .await
                .unwrap();
            store
                .create("b", Checkpoint::TrimHorizon, vec!["a".into()])
                .await
                .unwrap();
            store.checkpoint("a", seq(10)).await.unwrap();
            store.checkpoint("a", seq(10)).await.unwrap();
            assert!(matches!(
                store.checkpoint("a", seq(9)).await,
                Err(StoreError::Rejected { .. })
            ));
            store.checkpoint("a", Checkpoint::ShardEnd).await.unwrap();
            // create does not overwrite
            store
                .create("a", Checkpoint::TrimHorizon, vec![])
                .await
                .unwrap();
            // a second process is refused while the first holds the store
            assert!(matches!(
                FileCheckpointStore::open(&path, "s"),
                Err(StoreError::Locked { .. })
            ));
        }
        let store = FileCheckpointStore::open(&path, "s").unwrap();
        let all = store.load().await.unwrap();
        assert_eq!(all["a"].checkpoint, Checkpoint::ShardEnd);
        assert_eq!(all["b"].parents, vec!["a".to_string()]);
        assert!(FileCheckpointStore::open(dir.path().join("q.json"), "s").is_ok());
        drop(store);
        assert!(matches!(
            FileCheckpointStore::open(&path, "other"),
            Err(StoreError::WrongStream { .. })
        ));
    }
}
