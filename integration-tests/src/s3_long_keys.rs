//! The local S3 takes keys as long as S3 does (1,024 bytes): a layer in front of s3s-fs.
//!
//! s3s-fs 0.14 keeps an object's metadata in files named after the base64 of its bucket and key, so a
//! key over ~150 bytes makes a file name over the 255-byte limit and every PutObject fails with
//! InternalError. This layer hands s3s-fs such a key under a short, deterministic name inside the
//! bucket (`.kc-long/` + 40 hex digits of the key's SHA-256) and records the real key beside the
//! buckets (`ROOT/.kc-long-keys/BUCKET/HEX`, a directory s3s-fs never lists as a bucket: its name is
//! not a valid bucket name). Every call that names a key translates it; ListObjects(V2) lists the
//! whole bucket from s3s-fs, maps the short names back and does prefix, delimiter, order and paging
//! itself on the real keys. Short keys pass through unchanged, so their files stay where s3s-fs puts
//! them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use s3s::dto::{
    CommonPrefix, CopySource, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, Object,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};

/// The prefix, inside a bucket, of the objects stored under a hashed name.
pub const LONG_KEY_PREFIX: &str = ".kc-long/";

/// s3s-fs behind a layer that maps long keys to short names.
pub struct LongKeys {
    inner: s3s_fs::FileSystem,
    index: PathBuf,
}

/// Base64 (unpadded) length of `n` bytes.
fn b64_len(n: usize) -> usize {
    (4 * n).div_ceil(3)
}

/// Whether s3s-fs can store `key` of `bucket` under its own name: its longest file name (the metadata
/// of a multipart upload, `.bucket-B64.object-B64.upload-UUID.metadata.json`) and every path
/// component of the key must fit in 255 bytes.
pub fn fits(bucket: &str, key: &str) -> bool {
    let metadata_name = ".bucket-".len()
        + b64_len(bucket.len())
        + ".object-".len()
        + b64_len(key.len())
        + ".upload-".len()
        + 36
        + ".metadata.json".len();
    metadata_name <= 255
        && key.split('/').all(|c| c.len() <= 255)
        && !key.starts_with(LONG_KEY_PREFIX)
}

fn hashed(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut name = String::from(LONG_KEY_PREFIX);
    for b in &digest[..20] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

impl LongKeys {
    /// Serves the directory `root` (created if missing).
    pub fn new(root: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let inner = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Self {
            inner,
            index: root.join(".kc-long-keys"),
        })
    }

    /// The name s3s-fs stores `key` under, recording the real key when it differs (before the object
    /// exists, so a listing never meets a short name it cannot map back).
    async fn store_name(&self, bucket: &str, key: &str) -> S3Result<String> {
        if fits(bucket, key) {
            return Ok(key.to_owned());
        }
        let name = hashed(key);
        let dir = self.index.join(bucket);
        let file = dir.join(&name[LONG_KEY_PREFIX.len()..]);
        if tokio::fs::metadata(&file).await.is_err() {
            let io = |e: std::io::Error| s3_error!(e, InternalError, "long-key index: {e}");
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            let tmp = dir.join(format!(
                ".tmp-{}-{}",
                &name[LONG_KEY_PREFIX.len()..],
                std::process::id()
            ));
            tokio::fs::write(&tmp, key.as_bytes()).await.map_err(io)?;
            tokio::fs::rename(&tmp, &file).await.map_err(io)?;
        }
        Ok(name)
    }

    /// The name of an existing object's key (no record needed: reading a missing object is NoSuchKey).
    fn lookup_name(bucket: &str, key: &str) -> String {
        if fits(bucket, key) {
            key.to_owned()
        } else {
            hashed(key)
        }
    }

    /// The real key of a name s3s-fs listed, or None for a hashed name with no record.
    async fn real_key(&self, bucket: &str, name: &str) -> Option<String> {
        match name.strip_prefix(LONG_KEY_PREFIX) {
            None => Some(name.to_owned()),
            Some(hex) => tokio::fs::read_to_string(self.index.join(bucket).join(hex))
                .await
                .ok(),
        }
    }

    fn map_copy_source(source: &mut CopySource) {
        if let CopySource::Bucket { bucket, key, .. } = source {
            *key = Self::lookup_name(bucket, key).into_boxed_str();
        }
    }
}

#[async_trait::async_trait]
impl S3 for LongKeys {
    async fn create_bucket(
        &self,
        req: S3Request<s3s::dto::CreateBucketInput>,
    ) -> S3Result<S3Response<s3s::dto::CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<s3s::dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteBucketOutput>> {
        self.inner.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<s3s::dto::HeadBucketInput>,
    ) -> S3Result<S3Response<s3s::dto::HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<s3s::dto::ListBucketsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<s3s::dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<s3s::dto::GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<s3s::dto::PutObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::PutObjectOutput>> {
        req.input.key = self.store_name(&req.input.bucket, &req.input.key).await?;
        self.inner.put_object(req).await
    }

    async fn get_object(
        &self,
        mut req: S3Request<s3s::dto::GetObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::GetObjectOutput>> {
        req.input.key = Self::lookup_name(&req.input.bucket, &req.input.key);
        self.inner.get_object(req).await
    }

    async fn head_object(
        &self,
        mut req: S3Request<s3s::dto::HeadObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::HeadObjectOutput>> {
        req.input.key = Self::lookup_name(&req.input.bucket, &req.input.key);
        self.inner.head_object(req).await
    }

    async fn delete_object(
        &self,
        mut req: S3Request<s3s::dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteObjectOutput>> {
        req.input.key = Self::lookup_name(&req.input.bucket, &req.input.key);
        self.inner.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        mut req: S3Request<s3s::dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let mut back = BTreeMap::new();
        for o in &mut req.input.delete.objects {
            let name = Self::lookup_name(&bucket, &o.key);
            if name != o.key {
                back.insert(name.clone(), o.key.clone());
                o.key = name;
            }
        }
        let mut resp = self.inner.delete_objects(req).await?;
        let restore = |k: &mut Option<String>| {
            if let Some(real) = k.as_ref().and_then(|k| back.get(k)) {
                *k = Some(real.clone());
            }
        };
        for d in resp.output.deleted.iter_mut().flatten() {
            restore(&mut d.key);
        }
        for e in resp.output.errors.iter_mut().flatten() {
            restore(&mut e.key);
        }
        Ok(resp)
    }

    async fn copy_object(
        &self,
        mut req: S3Request<s3s::dto::CopyObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::CopyObjectOutput>> {
        Self::map_copy_source(&mut req.input.copy_source);
        req.input.key = self.store_name(&req.input.bucket, &req.input.key).await?;
        self.inner.copy_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        mut req: S3Request<s3s::dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CreateMultipartUploadOutput>> {
        let key = req.input.key.clone();
        req.input.key = self.store_name(&req.input.bucket, &key).await?;
        let mut resp = self.inner.create_multipart_upload(req).await?;
        resp.output.key = Some(key);
        Ok(resp)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<s3s::dto::UploadPartInput>,
    ) -> S3Result<S3Response<s3s::dto::UploadPartOutput>> {
        req.input.key = Self::lookup_name(&req.input.bucket, &req.input.key);
        self.inner.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        mut req: S3Request<s3s::dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<s3s::dto::UploadPartCopyOutput>> {
        Self::map_copy_source(&mut req.input.copy_source);
        req.input.key = Self::lookup_name(&req.input.bucket, &req.input.key);
        self.inner.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        mut req: S3Request<s3s::dto::ListPartsInput>,
    ) -> S3Result<S3Response<s3s::dto::ListPartsOutput>> {
        let key = req.input.key.clone();
        req.input.key = Self::lookup_name(&req.input.bucket, &key);
        let mut resp = self.inner.list_parts(req).await?;
        resp.output.key = Some(key);
        Ok(resp)
    }

    async fn complete_multipart_upload(
        &self,
        mut req: S3Request<s3s::dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CompleteMultipartUploadOutput>> {
        let key = req.input.key.clone();
        req.input.key = Self::lookup_name(&req.input.bucket, &key);
        let mut resp = self.inner.complete_multipart_upload(req).await?;
        resp.output.key = Some(key);
        Ok(resp)
    }

    async fn abort_multipart_upload(
        &self,
        mut req: S3Request<s3s::dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::AbortMultipartUploadOutput>> {
        req.input.key = Self::lookup_name(&req.input.bucket, &req.input.key);
        self.inner.abort_multipart_upload(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let v2 = self.list_objects_v2(req.map_input(Into::into)).await?;
        Ok(v2.map_output(|v2| ListObjectsOutput {
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter: v2.delimiter,
            encoding_type: v2.encoding_type,
            name: v2.name,
            prefix: v2.prefix,
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            next_marker: v2.next_continuation_token,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input.clone();
        let bucket = input.bucket.clone();
        // Everything s3s-fs holds in the bucket, under the names it stores.
        let all = req.map_input(|i| ListObjectsV2Input {
            bucket: i.bucket,
            max_keys: Some(i32::MAX),
            ..Default::default()
        });
        let stored = self
            .inner
            .list_objects_v2(all)
            .await?
            .output
            .contents
            .unwrap_or_default();

        let prefix = input.prefix.as_deref().unwrap_or("");
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        // Objects and common prefixes, by the real key: a BTreeMap orders them as S3 does (bytes).
        // (None: a common prefix.)
        let mut entries: BTreeMap<String, Option<Object>> = BTreeMap::new();
        for mut o in stored {
            let Some(name) = o.key.take() else { continue };
            let Some(key) = self.real_key(&bucket, &name).await else {
                continue;
            };
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            if let Some(cut) = delimiter.and_then(|d| rest.find(d).map(|at| at + d.len())) {
                entries.insert(format!("{prefix}{}", &rest[..cut]), None);
            } else {
                o.key = Some(key.clone());
                entries.insert(key, Some(o));
            }
        }

        let marker = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(ct), Some(sa)) => Some(ct.max(sa)),
            (ct, sa) => ct.or(sa),
        };
        let max_keys = usize::try_from(input.max_keys.unwrap_or(1000).max(0)).unwrap_or(1000);
        let mut after = entries
            .into_iter()
            .filter(|(k, _)| marker.is_none_or(|m| k.as_str() > m))
            .peekable();
        let (mut contents, mut common_prefixes, mut last) = (Vec::new(), Vec::new(), None);
        while contents.len() + common_prefixes.len() < max_keys {
            let Some((key, entry)) = after.next() else {
                break;
            };
            match entry {
                Some(o) => contents.push(o),
                None => common_prefixes.push(CommonPrefix {
                    prefix: Some(key.clone()),
                }),
            }
            last = Some(key);
        }
        let is_truncated = max_keys > 0 && after.peek().is_some();
        let key_count = i32::try_from(contents.len() + common_prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(key_count),
            max_keys: input.max_keys.or(Some(1000)),
            is_truncated: Some(is_truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            continuation_token: input.continuation_token,
            next_continuation_token: if is_truncated { last } else { None },
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_pass_and_long_keys_are_hashed() {
        assert!(fits("kc-demo", "clicks/a.json"));
        assert!(!fits("kc-demo", &"k".repeat(200)));
        assert!(!fits("b", &format!("{}/x", "c".repeat(256))));
        assert!(!fits("b", ".kc-long/abc"));
        let h = hashed(&"k".repeat(1000));
        assert_eq!(h.len(), LONG_KEY_PREFIX.len() + 40);
        // The hashed name itself fits s3s-fs's file names for the longest bucket name.
        let longest =
            ".bucket-".len() + b64_len(63) + ".object-".len() + b64_len(h.len()) + 8 + 36 + 14;
        assert!(longest <= 255, "{longest}");
    }
}
