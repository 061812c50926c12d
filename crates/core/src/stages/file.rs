//! The `file` emitter: newline-delimited files in a directory, rotated by size.
//!
//! A batch is acknowledged only after its lines are written and `fsync`ed. Files are named
//! `{prefix}-{n:06}.{ext}`; on start the emitter continues after the highest existing number, so a
//! restart never overwrites earlier output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lines::LineFormat;
use crate::batch::Batch;
use crate::emitter::{EmitError, EmitOutcome, Emitter};
use crate::item::Item;

/// Default size at which a file is closed and the next one started (100 MiB).
pub const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;

/// Settings of the [`FileEmitter`].
#[derive(Clone, Debug)]
pub struct FileEmitterOptions {
    /// Directory of the output files (created if missing).
    pub dir: PathBuf,
    /// File name prefix (the pipeline's name by default).
    pub prefix: String,
    /// Size at which the next file is started.
    pub rotate_bytes: u64,
    /// Line format.
    pub format: LineFormat,
    /// Whether to `fsync` each batch before acknowledging it (on by default: that is what makes the
    /// acknowledgement durable).
    pub fsync: bool,
}

struct Current {
    number: u64,
    file: Option<std::fs::File>,
    written: u64,
}

/// Appends batches to rotating newline-delimited files.
pub struct FileEmitter {
    options: FileEmitterOptions,
    current: Arc<Mutex<Current>>,
}

impl FileEmitter {
    /// An emitter writing under `options.dir`.
    pub fn new(options: FileEmitterOptions) -> Self {
        let number = highest_existing(&options.dir, &options.prefix).map_or(0, |n| n + 1);
        Self {
            options,
            current: Arc::new(Mutex::new(Current {
                number,
                file: None,
                written: 0,
            })),
        }
    }

    /// The files written so far under `dir` with `prefix`, in order.
    pub fn files(dir: &Path, prefix: &str) -> std::io::Result<Vec<PathBuf>> {
        let mut numbered: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if let Some(n) = file_number(&path, prefix) {
                numbered.push((n, path));
            }
        }
        numbered.sort();
        Ok(numbered.into_iter().map(|(_, p)| p).collect())
    }
}

fn file_number(path: &Path, prefix: &str) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let digits = rest.split('.').next()?;
    (digits.len() == 6).then(|| digits.parse().ok()).flatten()
}

fn highest_existing(dir: &Path, prefix: &str) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| file_number(&e.path(), prefix))
        .max()
}

#[async_trait]
impl Emitter<Item> for FileEmitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let text = self.options.format.render(batch);
        let options = self.options.clone();
        let current = self.current.clone();
        tokio::task::spawn_blocking(move || write(&options, &current, &text))
            .await
            .map_err(|e| EmitError::retryable(e.to_string()))?
            .map_err(|e| {
                EmitError::retryable(format!("file {}: {e}", options_dir(&self.options)))
            })?;
        Ok(EmitOutcome::success())
    }

    async fn check(&self) -> Result<(), EmitError> {
        std::fs::create_dir_all(&self.options.dir).map_err(|e| {
            EmitError::permanent(format!("cannot create {}: {e}", options_dir(&self.options)))
        })?;
        let probe = self
            .options
            .dir
            .join(format!(".{}-write-check", self.options.prefix));
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                EmitError::permanent(format!(
                    "{} is not writable: {e}",
                    options_dir(&self.options)
                ))
            })
    }

    async fn close(&self) -> Result<(), EmitError> {
        let mut cur = self
            .current
            .lock()
            .map_err(|_| EmitError::permanent("poisoned lock"))?;
        if let Some(f) = cur.file.take() {
            f.sync_all()
                .map_err(|e| EmitError::retryable(e.to_string()))?;
        }
        Ok(())
    }
}

fn options_dir(o: &FileEmitterOptions) -> String {
    o.dir.display().to_string()
}

fn write(
    options: &FileEmitterOptions,
    current: &Mutex<Current>,
    text: &[u8],
) -> std::io::Result<()> {
    let mut cur = current
        .lock()
        .map_err(|_| std::io::Error::other("poisoned lock"))?;
    if cur.file.is_some() && cur.written >= options.rotate_bytes {
        if let Some(f) = cur.file.take() {
            f.sync_all()?;
        }
        cur.number += 1;
        cur.written = 0;
    }
    if cur.file.is_none() {
        std::fs::create_dir_all(&options.dir)?;
        let ext = match options.format {
            LineFormat::Data | LineFormat::Envelope => "ndjson",
        };
        let path = options
            .dir
            .join(format!("{}-{:06}.{ext}", options.prefix, cur.number));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        cur.written = f.metadata()?.len();
        cur.file = Some(f);
    }
    let f = cur
        .file
        .as_mut()
        .ok_or_else(|| std::io::Error::other("file not open"))?;
    f.write_all(text)?;
    if options.fsync {
        f.sync_data()?;
    }
    cur.written += text.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Envelope, Origin};
    use crate::testing::record;
    use bytes::Bytes;

    fn batch(n: u64) -> Batch<Item> {
        let items = (0..n)
            .map(|i| {
                let data = format!("{{\"i\":{i}}}");
                Envelope::new(
                    Item::parse_json(Bytes::from(data)).unwrap(),
                    Origin::new(record("s", i, b"")),
                )
            })
            .collect();
        Batch::new("p".into(), items, 0)
    }

    #[tokio::test]
    async fn rotates_by_size_and_continues_numbering_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let options = FileEmitterOptions {
            dir: dir.path().to_path_buf(),
            prefix: "p".into(),
            rotate_bytes: 20,
            format: LineFormat::Data,
            fsync: true,
        };
        let e = FileEmitter::new(options.clone());
        e.check().await.unwrap();
        e.emit(&batch(3)).await.unwrap();
        e.emit(&batch(1)).await.unwrap();
        e.close().await.unwrap();
        let e2 = FileEmitter::new(options);
        e2.emit(&batch(1)).await.unwrap();
        let files = FileEmitter::files(dir.path(), "p").unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["p-000000.ndjson", "p-000001.ndjson", "p-000002.ndjson"]
        );
        assert_eq!(
            std::fs::read_to_string(&files[0]).unwrap(),
            "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n"
        );
    }
}
