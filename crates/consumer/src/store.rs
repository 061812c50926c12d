//! The embedded lease store: one JSON file per pipeline, for a single process.
//!
//! The file is written atomically (temporary file, `fsync`, rename, directory `fsync`) and locked with
//! `flock` so a second process on the same file is refused. The one process owns every lease; renewals
//! are free and nothing expires. To share a stream between processes use the DynamoDB lease table.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::StoreError;
use crate::lease::{Lease, LeaseStore};
use crate::position::Checkpoint;
use kinesis_connectors_core::Resume;

/// A lease as the file keeps it (the shard id is the map key).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FileLease {
    #[serde(flatten)]
    checkpoint: Checkpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default)]
    counter: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    children: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash_range: Option<(String, String)>,
    #[serde(default)]
    owner_switches: u64,
    updated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Resume::is_empty")]
    resume: Resume,
}

impl FileLease {
    fn into_lease(self, shard_id: String) -> Lease {
        Lease {
            shard_id,
            owner: self.owner,
            counter: self.counter,
            checkpoint: self.checkpoint,
            owner_switches: self.owner_switches,
            parents: self.parents,
            children: self.children,
            hash_range: self.hash_range,
            updated_at: self.updated_at,
            unreadable: None,
            resume: self.resume,
        }
    }

    fn from_lease(l: &Lease) -> Self {
        Self {
            checkpoint: l.checkpoint.clone(),
            owner: l.owner.clone(),
            counter: l.counter,
            parents: l.parents.clone(),
            children: l.children.clone(),
            hash_range: l.hash_range.clone(),
            owner_switches: l.owner_switches,
            updated_at: l.updated_at,
            resume: l.resume.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FileContents {
    version: u32,
    stream: String,
    shards: BTreeMap<String, FileLease>,
}

/// The embedded store; see the module documentation.
pub struct FileCheckpointStore {
    path: PathBuf,
    stream: String,
    state: Mutex<BTreeMap<String, FileLease>>,
    _lock: std::fs::File,
}

impl std::fmt::Debug for FileCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCheckpointStore")
            .field("path", &self.path)
            .finish()
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl FileCheckpointStore {
    /// Opens (or creates) the store at `path` for `stream`, taking an exclusive lock on `path.lock`.
    pub fn open(path: impl Into<PathBuf>, stream: &str) -> Result<Self, StoreError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_error(&path, e))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(&path))
            .map_err(|e| io_error(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
        }
        let shards = match Self::read(&path)? {
            Some(c) if c.stream != stream => {
                return Err(StoreError::WrongStream {
                    path: path.display().to_string(),
                    found: c.stream,
                    expected: stream.to_owned(),
                });
            }
            Some(c) => c.shards,
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
    pub fn read_file(path: &Path) -> Result<Option<BTreeMap<String, Lease>>, StoreError> {
        Ok(Self::read(path)?.map(|c| {
            c.shards
                .into_iter()
                .map(|(k, v)| (k.clone(), v.into_lease(k)))
                .collect()
        }))
    }

    fn read(path: &Path) -> Result<Option<FileContents>, StoreError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| io_error(path, format!("not a checkpoint file: {e}")))
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn persist(&self, shards: &BTreeMap<String, FileLease>) -> Result<(), StoreError> {
        let contents = FileContents {
            version: 1,
            stream: self.stream.clone(),
            shards: shards.clone(),
        };
        let text = serde_json::to_vec_pretty(&contents).map_err(|e| io_error(&self.path, e))?;
        let target = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&target, &text))
            .await
            .map_err(|e| io_error(&self.path, e))?
            .map_err(|e| io_error(&self.path, e))
    }

    /// Applies `change` to a copy of the state, persists it, then installs it.
    async fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, FileLease>) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let (out, dirty) = change(&mut next)?;
        if dirty {
            self.persist(&next).await?;
            *state = next;
        }
        Ok(out)
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
impl LeaseStore for FileCheckpointStore {
    async fn list(&self) -> Result<Vec<Lease>, StoreError> {
        let state = self.state.lock().await;
        Ok(state
            .iter()
            .map(|(k, v)| v.clone().into_lease(k.clone()))
            .collect())
    }

    async fn create(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.update(|s| {
            if s.contains_key(&lease.shard_id) {
                return Ok((false, false));
            }
            let mut l = FileLease::from_lease(lease);
            l.updated_at = Some(Utc::now());
            s.insert(lease.shard_id.clone(), l);
            Ok((true, true))
        })
        .await
    }

    async fn take(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.update(|s| match s.get_mut(shard) {
            Some(l) if l.counter == expected => {
                l.counter += 1;
                if l.owner.as_deref() != Some(owner) {
                    l.owner_switches += 1;
                }
                l.owner = Some(owner.to_owned());
                Ok((Some(l.counter), true))
            }
            _ => Ok((None, false)),
        })
        .await
    }

    async fn renew(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
    ) -> Result<Option<u64>, StoreError> {
        // One process owns the file: nothing to renew against; confirm the lease is still ours.
        let state = self.state.lock().await;
        Ok(state
            .get(shard)
            .filter(|l| l.counter == expected && l.owner.as_deref() == Some(owner))
            .map(|l| l.counter))
    }

    async fn release(&self, shard: &str, expected: u64, owner: &str) -> Result<bool, StoreError> {
        self.update(|s| match s.get_mut(shard) {
            Some(l) if l.counter == expected && l.owner.as_deref() == Some(owner) => {
                l.owner = None;
                l.counter += 1;
                Ok((true, true))
            }
            _ => Ok((false, false)),
        })
        .await
    }

    async fn save(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
        resume: &Resume,
    ) -> Result<Option<u64>, StoreError> {
        self.update(|s| match s.get_mut(shard) {
            Some(l) if l.counter == expected && l.owner.as_deref() == Some(owner) => {
                // The checkpoint to write, if it moved (`None` keeps the stored one).
                let moved = checkpoint.filter(|c| **c != l.checkpoint);
                if moved.is_none() && l.resume == *resume {
                    return Ok((Some(l.counter), false));
                }
                if let Some(c) = moved {
                    if !c.may_replace(&l.checkpoint) {
                        return Err(StoreError::Rejected {
                            shard: shard.to_owned(),
                            message: format!("{c} does not follow the stored {}", l.checkpoint),
                        });
                    }
                    l.checkpoint = c.clone();
                    l.owner_switches = 0;
                    l.updated_at = Some(Utc::now());
                }
                l.resume = resume.clone();
                Ok((Some(l.counter), true))
            }
            _ => Ok((None, false)),
        })
        .await
    }

    async fn set_children(&self, shard: &str, children: &[String]) -> Result<(), StoreError> {
        self.update(|s| match s.get_mut(shard) {
            Some(l) if l.children != children => {
                l.children = children.to_vec();
                Ok(((), true))
            }
            _ => Ok(((), false)),
        })
        .await
    }

    async fn delete_ended(&self, shard: &str) -> Result<(), StoreError> {
        self.update(|s| {
            let ended = s.get(shard).is_some_and(|l| l.checkpoint.is_shard_end());
            if ended {
                s.remove(shard);
            }
            Ok(((), ended))
        })
        .await
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
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
    async fn leases_survive_reopening_and_checkpoints_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.checkpoints.json");
        {
            let store = FileCheckpointStore::open(&path, "s").unwrap();
            assert!(
                store
                    .create(&Lease::new("a", Checkpoint::TrimHorizon, vec![], None))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .create(&Lease::new(
                        "b",
                        Checkpoint::TrimHorizon,
                        vec!["a".into()],
                        None
                    ))
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .create(&Lease::new("a", Checkpoint::ShardEnd, vec![], None))
                    .await
                    .unwrap()
            );
            let c = store.take("a", 0, "me").await.unwrap().unwrap();
            assert_eq!(
                store.take("a", 0, "other").await.unwrap(),
                None,
                "stale counter"
            );
            let c = store
                .checkpoint("a", c, "me", &seq(10))
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(
                store.checkpoint("a", c, "me", &seq(9)).await,
                Err(StoreError::Rejected { .. })
            ));
            assert_eq!(
                store.checkpoint("a", c, "other", &seq(11)).await.unwrap(),
                None,
                "not the owner"
            );
            store
                .checkpoint("a", c, "me", &Checkpoint::ShardEnd)
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(
                FileCheckpointStore::open(&path, "s"),
                Err(StoreError::Locked { .. })
            ));
        }
        let store = FileCheckpointStore::open(&path, "s").unwrap();
        let all: BTreeMap<String, Lease> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.shard_id.clone(), l))
            .collect();
        assert_eq!(all["a"].checkpoint, Checkpoint::ShardEnd);
        assert_eq!(all["a"].owner.as_deref(), Some("me"));
        assert_eq!(all["b"].parents, vec!["a".to_string()]);
        store.delete_ended("a").await.unwrap();
        store.delete_ended("b").await.unwrap();
        assert_eq!(
            store.list().await.unwrap().len(),
            1,
            "only the ended lease is deleted"
        );
        drop(store);
        assert!(matches!(
            FileCheckpointStore::open(&path, "other"),
            Err(StoreError::WrongStream { .. })
        ));
    }
}
