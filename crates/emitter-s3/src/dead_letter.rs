//! S3 as a dead-letter target: each write is one NDJSON object of entries under
//! `{prefix}{pipeline}/{yyyy}/{MM}/{dd}/`, durable once `PutObject` succeeded.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use kinesis_connectors_core::{DeadLetter, DeadLetterEntry, DeadLetterError};

/// The dead-letter target `type = "s3"`.
pub struct S3DeadLetter {
    client: Client,
    bucket: String,
    prefix: String,
    pipeline: String,
}

impl S3DeadLetter {
    /// A target writing under `s3://bucket/{prefix}{pipeline}/`.
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        pipeline: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
            pipeline: pipeline.into(),
        }
    }

    /// Connects like the S3 emitter does (path-style with an endpoint override).
    pub async fn connect(
        region: &str,
        endpoint: Option<&str>,
        bucket: &str,
        prefix: &str,
        pipeline: &str,
    ) -> Self {
        let endpoint = endpoint.filter(|e| !e.is_empty());
        let sdk = kinesis_connectors_aws::sdk_config(region, endpoint).await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(endpoint.is_some())
            .build();
        Self::new(Client::from_conf(conf), bucket, prefix, pipeline)
    }

    fn error(&self, e: impl std::fmt::Display) -> DeadLetterError {
        DeadLetterError {
            target: self.describe(),
            message: e.to_string(),
        }
    }

    fn root(&self) -> String {
        format!("{}{}/", self.prefix, self.pipeline)
    }
}

#[async_trait]
impl DeadLetter for S3DeadLetter {
    async fn write(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut body = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut body, e).map_err(|e| self.error(e))?;
            body.push(b'\n');
        }
        let now = Utc::now();
        let key = format!(
            "{}{}/{}-{}-{}.jsonl",
            self.root(),
            now.format("%Y/%m/%d"),
            first.shard,
            first.sequence,
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error(kinesis_connectors_aws::describe(&e).1))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.root())
    }

    async fn read_all(&self) -> Result<Vec<DeadLetterEntry>, DeadLetterError> {
        let mut entries = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.root())
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.error(kinesis_connectors_aws::describe(&e).1))?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                let body = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| self.error(kinesis_connectors_aws::describe(&e).1))?
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.error(e))?
                    .into_bytes();
                for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    entries.push(
                        serde_json::from_slice(line)
                            .map_err(|e| self.error(format!("{key}: {e}")))?,
                    );
                }
            }
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(entries),
            }
        }
    }
}
