//! Uploading one object: a single `PutObject` when it fits one part, otherwise a multipart upload fed
//! part by part while encoding, so memory per object in flight stays near the part size.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use kinesis_connectors_core::EmitError;

use crate::retry::emit_error;

/// Where and how an object is written.
#[derive(Clone, Debug)]
pub(crate) struct ObjectSpec<'a> {
    /// The bucket.
    pub(crate) bucket: &'a str,
    /// The key.
    pub(crate) key: &'a str,
    /// `Content-Type`.
    pub(crate) content_type: &'a str,
    /// `Content-Encoding`, if compressed.
    pub(crate) content_encoding: Option<&'a str>,
    /// Storage class, if not the bucket's default.
    pub(crate) storage_class: Option<&'a str>,
}

/// An object being uploaded.
pub(crate) struct Upload<'a> {
    client: &'a Client,
    spec: ObjectSpec<'a>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    size: u64,
}

impl<'a> Upload<'a> {
    /// Starts nothing yet: a small object becomes one `PutObject` at [`finish`](Self::finish).
    pub(crate) fn new(client: &'a Client, spec: ObjectSpec<'a>) -> Self {
        Self {
            client,
            spec,
            upload_id: None,
            parts: Vec::new(),
            size: 0,
        }
    }

    /// Parts uploaded so far.
    pub(crate) fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Uploads `bytes` as the next part (starting the multipart upload on the first).
    pub(crate) async fn part(&mut self, bytes: Vec<u8>) -> Result<(), EmitError> {
        let s = &self.spec;
        if self.upload_id.is_none() {
            let mut req = self
                .client
                .create_multipart_upload()
                .bucket(s.bucket)
                .key(s.key)
                .content_type(s.content_type)
                .set_content_encoding(s.content_encoding.map(str::to_owned));
            if let Some(class) = s.storage_class {
                req = req.storage_class(StorageClass::from(class));
            }
            let out = req
                .send()
                .await
                .map_err(|e| emit_error("CreateMultipartUpload", s.bucket, e))?;
            self.upload_id = Some(out.upload_id.unwrap_or_default());
        }
        let number = self.parts.len() as i32 + 1;
        let len = bytes.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(s.bucket)
            .key(s.key)
            .upload_id(self.upload_id.as_deref().unwrap_or_default())
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| emit_error("UploadPart", s.bucket, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32(out.checksum_crc32)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
                .build(),
        );
        self.size += len;
        Ok(())
    }

    /// Uploads the last bytes and completes the object; returns its size.
    pub(crate) async fn finish(mut self, last: Vec<u8>) -> Result<u64, EmitError> {
        let s = self.spec.clone();
        if self.upload_id.is_none() {
            let len = last.len() as u64;
            let mut req = self
                .client
                .put_object()
                .bucket(s.bucket)
                .key(s.key)
                .content_type(s.content_type)
                .set_content_encoding(s.content_encoding.map(str::to_owned))
                .body(ByteStream::from(last));
            if let Some(class) = s.storage_class {
                req = req.storage_class(StorageClass::from(class));
            }
            req.send()
                .await
                .map_err(|e| emit_error("PutObject", s.bucket, e))?;
            return Ok(len);
        }
        if !last.is_empty() {
            self.part(last).await?;
        }
        let parts = std::mem::take(&mut self.parts);
        self.client
            .complete_multipart_upload()
            .bucket(s.bucket)
            .key(s.key)
            .upload_id(self.upload_id.as_deref().unwrap_or_default())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| emit_error("CompleteMultipartUpload", s.bucket, e))?;
        Ok(self.size)
    }

    /// Abandons a multipart upload after a failure, so no parts linger (best effort).
    pub(crate) async fn abort(self) {
        if let Some(id) = &self.upload_id {
            let r = self
                .client
                .abort_multipart_upload()
                .bucket(self.spec.bucket)
                .key(self.spec.key)
                .upload_id(id)
                .send()
                .await;
            if let Err(e) = r {
                tracing::warn!(bucket = self.spec.bucket, key = self.spec.key, error = %e, "abort of a failed multipart upload failed; a lifecycle rule for incomplete uploads cleans it up");
            }
        }
    }
}
