//! The S3 writer (batches → objects; reused by the Redshift emitter for staging) and the S3 emitter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use kinesis_connectors_core::{
    Batch, EmitError, EmitOutcome, Emitter, Item, ItemFailure, ShardRange,
};
use serde::Serialize;

use crate::config::{Column, Format, S3Settings};
use crate::encode::{Encoder, ItemRejected, content_headers, extension, infer_schema};
use crate::key::{KeyContext, batch_id};
use crate::retry::emit_error;
use crate::upload::{ObjectSpec, Upload};

/// An object written for a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WrittenObject {
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Items in it.
    pub items: usize,
    /// Multipart parts (0 for a single `PutObject`).
    pub parts: usize,
}

/// What writing a batch did.
#[derive(Clone, Debug, Default)]
pub struct BatchWrite {
    /// Objects written, in order.
    pub objects: Vec<WrittenObject>,
    /// Items that do not fit the format or schema (permanent; dead-lettered by the pipeline).
    pub failures: Vec<ItemFailure>,
    /// The manifest's key, when manifests are on and something was written.
    pub manifest: Option<String>,
}

/// Writes batches as objects; see the crate documentation for keys, formats and uploads.
pub struct S3Writer {
    client: Client,
    settings: S3Settings,
    pipeline: String,
    ext: String,
    inferred: Mutex<Option<Arc<Vec<Column>>>>,
}

impl S3Writer {
    /// A writer for `pipeline` using `client`.
    pub fn new(client: Client, pipeline: &str, settings: S3Settings) -> Self {
        let o = &settings.options;
        let ext = extension(o.format, o.compression, &o.delimiter);
        Self {
            client,
            settings,
            pipeline: pipeline.to_owned(),
            ext,
            inferred: Mutex::new(None),
        }
    }

    /// Builds the S3 client from the options (region defaults to `default_region`) and a writer.
    pub async fn connect(pipeline: &str, settings: S3Settings, default_region: &str) -> Self {
        let o = &settings.options;
        let region = o.region.as_deref().unwrap_or(default_region);
        let endpoint = o.endpoint.as_deref().filter(|e| !e.is_empty());
        let sdk = kinesis_connectors_aws::sdk_config(region, endpoint).await;
        let path_style = o.force_path_style.unwrap_or(endpoint.is_some());
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            .build();
        Self::new(Client::from_conf(conf), pipeline, settings)
    }

    /// The S3 client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.settings.options.bucket
    }

    /// The settings.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// Where an inferred Parquet schema is kept: beside the pipeline's objects, under a name that
    /// Hive-style readers (Athena, Spark, PyArrow datasets) skip.
    pub fn schema_key(&self) -> String {
        format!(
            "{}{}/_kc_parquet_schema.json",
            self.settings.options.prefix, self.pipeline
        )
    }

    /// The Parquet schema of `batch`: the configured one, or the one inferred for this pipeline.
    ///
    /// An inferred schema is stored in the bucket ([`S3Writer::schema_key`]) when it is first
    /// inferred, with `If-None-Match: *` so the first writer wins, and read back before use: every
    /// process of the pipeline, and a process after a restart re-writing a redelivered batch, writes
    /// with the schema of the first batch ever written, not of its own first batch (issue 16: an
    /// object rewritten under its key keeps its columns).
    async fn schema_for(&self, batch: &Batch<Item>) -> Result<Option<Arc<Vec<Column>>>, EmitError> {
        let o = &self.settings.options;
        if o.format != Format::Parquet {
            return Ok(None);
        }
        if let Some(cols) = &o.schema {
            return Ok(Some(Arc::new(cols.clone())));
        }
        if let Some(s) = self
            .inferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(Some(s));
        }
        let key = self.schema_key();
        let cols = match self.stored_schema(&key).await? {
            Some(cols) => cols,
            None => {
                let cols = infer_schema(batch.items.iter().map(|e| &e.item));
                let body =
                    serde_json::to_vec(&cols).map_err(|e| EmitError::permanent(e.to_string()))?;
                let put = self
                    .client
                    .put_object()
                    .bucket(&o.bucket)
                    .key(&key)
                    .content_type("application/json")
                    .if_none_match("*")
                    .body(ByteStream::from(body))
                    .send()
                    .await;
                match put {
                    Ok(_) => {}
                    // Another process stored one first: read it below.
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {}
                    Err(e) => return Err(emit_error("PutObject", &o.bucket, e)),
                }
                self.stored_schema(&key).await?.unwrap_or(cols)
            }
        };
        tracing::info!(pipeline = %self.pipeline, key = %key, columns = ?cols.iter().map(|c| (&c.name, c.kind)).collect::<Vec<_>>(), "Parquet schema of the pipeline (inferred from its first batch, kept in the bucket)");
        let cols = Arc::new(cols);
        let mut inferred = self.inferred.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(inferred.get_or_insert(cols).clone()))
    }

    /// The inferred schema stored at `key`, if there is one.
    async fn stored_schema(&self, key: &str) -> Result<Option<Vec<Column>>, EmitError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.settings.options.bucket)
            .key(key)
            .send()
            .await;
        let out = match got {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) => return Err(emit_error("GetObject", &self.settings.options.bucket, e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| EmitError::retryable(format!("reading {key}: {e}")))?
            .into_bytes();
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            EmitError::permanent(format!(
                "s3://{}/{key} is not a Parquet schema this emitter wrote ({e}); remove it or set `schema`",
                self.settings.options.bucket
            ))
        })
    }

    /// Items grouped by their `{field:...}` partition, groups in order of first appearance.
    fn groups(&self, batch: &Batch<Item>) -> Vec<(Vec<String>, Vec<usize>)> {
        if !self.settings.key.has_fields() {
            return vec![(Vec::new(), (0..batch.len()).collect())];
        }
        let mut index: HashMap<Vec<String>, usize> = HashMap::new();
        let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
        for (i, e) in batch.items.iter().enumerate() {
            let p = self.settings.key.partition(&e.item);
            let g = *index.entry(p.clone()).or_insert_with(|| {
                groups.push((p, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        groups
    }

    /// Writes `batch`: one object per partition (one in all without `{field:...}`), then the manifest.
    pub async fn write_batch(&self, batch: &Batch<Item>) -> Result<BatchWrite, EmitError> {
        let o = &self.settings.options;
        let schema = self.schema_for(batch).await?;
        let (content_type, content_encoding) = content_headers(o.format, o.compression);
        let mut result = BatchWrite::default();
        for (partition, indices) in self.groups(batch) {
            let ranges = ShardRange::collect(indices.iter().map(|&i| &batch.items[i]));
            let time = batch.items[indices[0]]
                .record()
                .approximate_arrival
                .unwrap_or_else(Utc::now);
            let key = self.settings.key.render(
                &KeyContext {
                    prefix: &o.prefix,
                    pipeline: &self.pipeline,
                    stream: &batch.context.stream,
                    time,
                    ranges: &ranges,
                    ext: &self.ext,
                },
                &partition,
            );
            let encoder = match &o.csv {
                Some(csv) if o.format == Format::Csv => Encoder::csv(csv, o.compression),
                _ => Encoder::new(
                    o.format,
                    o.compression,
                    &o.delimiter,
                    schema.as_deref().map(Vec::as_slice),
                ),
            };
            let mut encoder =
                encoder.map_err(|e| EmitError::permanent(format!("cannot encode: {e}")))?;
            let mut upload = Upload::new(
                &self.client,
                ObjectSpec {
                    bucket: &o.bucket,
                    key: &key,
                    content_type,
                    content_encoding,
                    storage_class: o.storage_class.as_deref(),
                },
            );
            let mut items = 0usize;
            for &i in &indices {
                match encoder.push(&batch.items[i].item) {
                    Ok(()) => items += 1,
                    Err(ItemRejected::Unfit(reason)) => result.failures.push(
                        ItemFailure::permanent(i, format!("does not fit {:?}: {reason}", o.format)),
                    ),
                    Err(ItemRejected::Io(e)) => {
                        upload.abort().await;
                        return Err(EmitError::retryable(format!("encoding failed: {e}")));
                    }
                }
                if let Some(part) = encoder.take_if_at_least(self.settings.part_size)
                    && let Err(e) = upload.part(part).await
                {
                    upload.abort().await;
                    return Err(e);
                }
            }
            if items == 0 {
                upload.abort().await;
                continue;
            }
            let last = encoder
                .finish()
                .map_err(|e| EmitError::retryable(format!("encoding failed: {e}")))?;
            let parts = upload.parts() + usize::from(upload.parts() > 0 && !last.is_empty());
            let bytes = upload.finish(last).await?;
            tracing::debug!(pipeline = %self.pipeline, bucket = %o.bucket, key = %key, bytes, items, parts, "object written");
            result.objects.push(WrittenObject {
                key,
                bytes,
                items,
                parts,
            });
        }
        if let (Some(prefix), false) = (&o.manifest_prefix, result.objects.is_empty()) {
            let key = format!(
                "{prefix}{}/{}.manifest",
                self.pipeline,
                batch_id(&batch.context.shards)
            );
            let manifest = Manifest {
                entries: result
                    .objects
                    .iter()
                    .map(|obj| ManifestEntry {
                        url: format!("s3://{}/{}", o.bucket, obj.key),
                        mandatory: true,
                        meta: ManifestMeta {
                            content_length: obj.bytes,
                        },
                    })
                    .collect(),
            };
            let body =
                serde_json::to_vec(&manifest).map_err(|e| EmitError::permanent(e.to_string()))?;
            self.client
                .put_object()
                .bucket(&o.bucket)
                .key(&key)
                .content_type("application/json")
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| emit_error("PutObject (manifest)", &o.bucket, e))?;
            result.manifest = Some(key);
        }
        Ok(result)
    }

    /// Start-up check: the bucket exists (or is created, with `create_bucket`) and a probe object can be
    /// written and deleted.
    pub async fn check(&self) -> Result<(), EmitError> {
        let o = &self.settings.options;
        if o.create_bucket {
            let exists = self
                .client
                .head_bucket()
                .bucket(&o.bucket)
                .send()
                .await
                .is_ok();
            if !exists {
                self.client
                    .create_bucket()
                    .bucket(&o.bucket)
                    .send()
                    .await
                    .map_err(|e| emit_error("CreateBucket", &o.bucket, e))?;
                tracing::info!(bucket = %o.bucket, "bucket created");
            }
        }
        self.client
            .head_bucket()
            .bucket(&o.bucket)
            .send()
            .await
            .map_err(|e| {
                let status = crate::retry::HttpStatus::http_status(&e);
                match status {
                    Some(404) => {
                        EmitError::permanent(format!("bucket {} does not exist", o.bucket))
                    }
                    Some(403) => {
                        EmitError::permanent(format!("access to bucket {} denied", o.bucket))
                    }
                    _ => emit_error("HeadBucket", &o.bucket, e),
                }
            })?;
        let probe = format!("{}.kinesis-connector-write-check", o.prefix);
        self.client
            .put_object()
            .bucket(&o.bucket)
            .key(&probe)
            .body(ByteStream::from_static(b"ok"))
            .send()
            .await
            .map_err(|e| emit_error("PutObject (write check)", &o.bucket, e))?;
        self.client
            .delete_object()
            .bucket(&o.bucket)
            .key(&probe)
            .send()
            .await
            .map_err(|e| emit_error("DeleteObject (write check)", &o.bucket, e))?;
        Ok(())
    }
}

/// A Redshift `COPY ... MANIFEST` file.
#[derive(Debug, Serialize)]
struct Manifest {
    entries: Vec<ManifestEntry>,
}

#[derive(Debug, Serialize)]
struct ManifestEntry {
    url: String,
    mandatory: bool,
    meta: ManifestMeta,
}

#[derive(Debug, Serialize)]
struct ManifestMeta {
    content_length: u64,
}

/// The `s3` emitter: each batch becomes one object (one per partition with `{field:...}` keys).
pub struct S3Emitter {
    writer: S3Writer,
}

impl S3Emitter {
    /// An emitter writing with `writer`.
    pub fn new(writer: S3Writer) -> Self {
        Self { writer }
    }

    /// The writer.
    pub fn writer(&self) -> &S3Writer {
        &self.writer
    }
}

#[async_trait]
impl Emitter<Item> for S3Emitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let written = self.writer.write_batch(batch).await?;
        Ok(EmitOutcome::with_failures(written.failures))
    }

    async fn check(&self) -> Result<(), EmitError> {
        self.writer.check().await
    }
}
