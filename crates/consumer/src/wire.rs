//! Our own `GetRecords` and `GetShardIterator` calls: the polling reader's two hot calls without the
//! SDK's orchestrator and deserialisers (`source.decoder = "own"`, the default). Every other Kinesis
//! call stays on the SDK, and the SDK path (`"sdk"`) stays as the reference the differential tests
//! compare against.
//!
//! * **Requests** are the Kinesis JSON protocol (`application/x-amz-json-1.1`, `X-Amz-Target:
//!   Kinesis_20131202.<Op>`), signed with SigV4 over the `host` header and the body, with the
//!   credentials, region and endpoint the SDK configuration resolved (the same `aws-config` chain and
//!   endpoint override). Credentials are cached until 5 minutes before they expire.
//! * **One HTTP client** (connection pool, HTTP/1.1) serves every shard of the process, with the SDK
//!   configuration's connect and attempt timeouts ([`kinesis_connectors_aws::CONNECT_TIMEOUT`],
//!   [`kinesis_connectors_aws::ATTEMPT_TIMEOUT`]).
//! * **Responses** are decoded straight into [`Record`]s, borrowing the response body: strings
//!   without escapes are not copied, every record's base64 data is decoded into one buffer per page
//!   and handed out as [`Bytes`] slices of it, and a sequence number costs one `Arc<str>`. Arrival
//!   times are parsed exactly as the SDK does (the number's text as `f64`, then epoch seconds).
//! * **Errors** are classified as the SDK path's ([`KinesisError::from_code`]): the code from the
//!   `x-amzn-ErrorType` header, else the body's `code` or `__type` (namespace and `:…` suffix
//!   stripped), the message from `message`, `Message` or `errorMessage`. A body that cannot be decoded,
//!   a network failure or a timeout is [`KinesisError::Transient`], as with the SDK.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use kinesis_connectors_aws::SdkConfig;
use kinesis_connectors_core::{Position, Record, SequenceNumber};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api::{GET_RECORDS_MAX_LIMIT, IteratorStart, RecordsPage};
use crate::error::KinesisError;

/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// The content type of the Kinesis JSON protocol.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The signing name of Kinesis.
const SIGNING_NAME: &str = "kinesis";

/// Our own client of `GetRecords` and `GetShardIterator`; see the module documentation. Cheap to share
/// behind an `Arc`: one per process.
pub struct WireClient {
    http: reqwest::Client,
    url: reqwest::Url,
    host: String,
    region: String,
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for WireClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireClient")
            .field("url", &self.url.as_str())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why a [`WireClient`] could not be made from an SDK configuration.
#[derive(Debug, thiserror::Error)]
#[error("the own GetRecords decoder cannot be used: {0}")]
pub struct WireSetupError(String);

impl WireClient {
    /// A client for the region, endpoint (override, or the regional endpoint the SDK's resolver names)
    /// and credentials of `sdk`.
    pub async fn from_sdk_config(sdk: &SdkConfig) -> Result<Self, WireSetupError> {
        use aws_sdk_kinesis::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| WireSetupError("no region".into()))?;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| WireSetupError("no AWS credentials provider".into()))?;
        let mut params = Params::builder()
            .region(region.clone())
            .use_fips(sdk.use_fips().unwrap_or(false))
            .use_dual_stack(sdk.use_dual_stack().unwrap_or(false));
        if let Some(url) = sdk.endpoint_url() {
            params = params.endpoint(url);
        }
        let params = params
            .build()
            .map_err(|e| WireSetupError(format!("endpoint parameters: {e}")))?;
        let endpoint = DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| WireSetupError(format!("endpoint: {e}")))?;
        let url = reqwest::Url::parse(endpoint.url())
            .map_err(|e| WireSetupError(format!("endpoint {:?}: {e}", endpoint.url())))?;
        let http = reqwest::Client::builder()
            .connect_timeout(kinesis_connectors_aws::CONNECT_TIMEOUT)
            .timeout(kinesis_connectors_aws::ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| WireSetupError(format!("HTTP client: {e}")))?;
        Ok(Self::new(http, url, &region, provider))
    }

    /// A client at `url` in `region` with `provider`'s credentials, sending on `http`.
    pub fn new(
        http: reqwest::Client,
        url: reqwest::Url,
        region: &str,
        provider: SharedCredentialsProvider,
    ) -> Self {
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        Self {
            http,
            url,
            host,
            region: region.to_owned(),
            provider,
            cached: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh_credentials(&self) -> Option<Credentials> {
        let cached = self.cached.lock().ok()?;
        cached
            .as_ref()
            .filter(|c| {
                c.expiry()
                    .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
            })
            .cloned()
    }

    async fn credentials(&self, operation: &'static str) -> Result<Credentials, KinesisError> {
        if let Some(c) = self.fresh_credentials() {
            return Ok(c);
        }
        // One refresh at a time; whoever waited finds the fresh ones.
        let _refreshing = self.refresh.lock().await;
        if let Some(c) = self.fresh_credentials() {
            return Ok(c);
        }
        let c = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| KinesisError::Transient {
                operation,
                message: format!(
                    "AWS credentials unavailable: {}",
                    kinesis_connectors_aws::error_chain(&e)
                ),
            })?;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(c.clone());
        }
        Ok(c)
    }

    /// Sends one signed call and returns the body of a successful answer.
    async fn call(&self, operation: &'static str, body: String) -> Result<Bytes, KinesisError> {
        let transient = |message: String| KinesisError::Transient { operation, message };
        let credentials = self.credentials(operation).await?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| transient(format!("SigV4 signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            std::iter::once(("host", self.host.as_str())),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| transient(format!("SigV4: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| transient(format!("SigV4 signing failed: {e}")))?
            .into_parts();
        let mut request = self
            .http
            .post(self.url.clone())
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", target(operation));
        for (name, value) in instructions.headers() {
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| transient(format!("SigV4 header {name}: {e}")))?;
            if name == "authorization" || name == "x-amz-security-token" {
                value.set_sensitive(true);
            }
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| transient(kinesis_connectors_aws::error_chain(&e)))?;
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| transient(kinesis_connectors_aws::error_chain(&e)))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(error_answer(
                operation,
                status.as_u16(),
                error_type.as_deref(),
                &body,
            ))
        }
    }

    /// `GetShardIterator` (see [`crate::api::get_shard_iterator`] for its limits).
    pub async fn get_shard_iterator(
        &self,
        stream: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> Result<String, KinesisError> {
        const OP: &str = "GetShardIterator";
        let body = shard_iterator_request(stream, shard, start);
        let answer = self.call(OP, body).await?;
        decode_shard_iterator(&answer)
    }

    /// `GetRecords` of up to `limit` (≤ 10,000) records (see [`crate::api::get_records`] for its limits).
    pub async fn get_records(
        &self,
        iterator: &str,
        limit: i32,
        stream: &Arc<str>,
        shard: &Arc<str>,
    ) -> Result<RecordsPage, KinesisError> {
        let body = get_records_request(iterator, limit);
        let answer = self.call("GetRecords", body).await?;
        decode_get_records(&answer, stream, shard)
    }
}

fn target(operation: &str) -> String {
    format!("Kinesis_20131202.{operation}")
}

/// A JSON string literal of `s`.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The body of a `GetRecords` request.
pub fn get_records_request(iterator: &str, limit: i32) -> String {
    format!(
        r#"{{"ShardIterator":{},"Limit":{}}}"#,
        json_string(iterator),
        limit.clamp(1, GET_RECORDS_MAX_LIMIT)
    )
}

/// The body of a `GetShardIterator` request (timestamps as epoch seconds with milliseconds, as the SDK
/// sends them).
pub fn shard_iterator_request(stream: &str, shard: &str, start: &IteratorStart) -> String {
    let (kind, extra) = match start {
        IteratorStart::TrimHorizon => ("TRIM_HORIZON", String::new()),
        IteratorStart::Latest => ("LATEST", String::new()),
        IteratorStart::AtTimestamp(t) => {
            let ms = t.timestamp_millis();
            (
                "AT_TIMESTAMP",
                format!(
                    r#","Timestamp":{}.{:03}"#,
                    ms.div_euclid(1000),
                    ms.rem_euclid(1000)
                ),
            )
        }
        IteratorStart::AtSequence(s) => (
            "AT_SEQUENCE_NUMBER",
            format!(r#","StartingSequenceNumber":{}"#, json_string(s.as_str())),
        ),
        IteratorStart::AfterSequence(s) => (
            "AFTER_SEQUENCE_NUMBER",
            format!(r#","StartingSequenceNumber":{}"#, json_string(s.as_str())),
        ),
    };
    format!(
        r#"{{"StreamName":{},"ShardId":{},"ShardIteratorType":"{kind}"{extra}}}"#,
        json_string(stream),
        json_string(shard)
    )
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(rename = "__type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message_upper: Option<Cow<'a, str>>,
    #[serde(rename = "errorMessage", borrow, default)]
    error_message: Option<Cow<'a, str>>,
}

/// The service's error code without its namespace (`ns#Code`) or `:url` suffix.
fn sanitize_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    match code.find('#') {
        Some(i) => &code[i + 1..],
        None => code,
    }
}

/// Classifies an unsuccessful answer (status, `x-amzn-ErrorType` header, body) as the SDK path does.
pub fn error_answer(
    operation: &'static str,
    status: u16,
    error_type: Option<&str>,
    body: &[u8],
) -> KinesisError {
    let parsed: Option<ErrorBody<'_>> = serde_json::from_slice(body).ok();
    let body_code = parsed
        .as_ref()
        .and_then(|b| b.code.as_deref().or(b.kind.as_deref()));
    let code = error_type.or(body_code).map(sanitize_code);
    let message = parsed.as_ref().and_then(|b| {
        b.message
            .as_deref()
            .or(b.message_upper.as_deref())
            .or(b.error_message.as_deref())
    });
    let message = match message {
        Some(m) => m.to_owned(),
        None => format!("HTTP {status} without an error message"),
    };
    KinesisError::from_code(operation, code, message)
}

#[derive(Deserialize)]
struct IteratorJson<'a> {
    #[serde(rename = "ShardIterator", borrow, default)]
    shard_iterator: Option<Cow<'a, str>>,
}

/// Decodes a `GetShardIterator` answer.
pub fn decode_shard_iterator(body: &[u8]) -> Result<String, KinesisError> {
    const OP: &str = "GetShardIterator";
    let parsed: IteratorJson<'_> = serde_json::from_slice(body).map_err(|e| malformed(OP, &e))?;
    parsed
        .shard_iterator
        .map(Cow::into_owned)
        .ok_or_else(|| KinesisError::Transient {
            operation: OP,
            message: "no iterator in the response".into(),
        })
}

#[derive(Deserialize)]
struct PageJson<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<Vec<RecordJson<'a>>>,
    #[serde(rename = "NextShardIterator", borrow, default)]
    next_shard_iterator: Option<Cow<'a, str>>,
    #[serde(rename = "MillisBehindLatest", default)]
    millis_behind_latest: Option<i64>,
    #[serde(rename = "ChildShards", borrow, default)]
    child_shards: Option<Vec<ChildJson<'a>>>,
}

#[derive(Deserialize)]
struct RecordJson<'a> {
    #[serde(rename = "SequenceNumber", borrow)]
    sequence_number: Cow<'a, str>,
    #[serde(rename = "ApproximateArrivalTimestamp", borrow, default)]
    approximate_arrival_timestamp: Option<&'a RawValue>,
    // Missing or null data and keys are empty, as the SDK makes them.
    #[serde(rename = "Data", borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(rename = "PartitionKey", borrow, default)]
    partition_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChildJson<'a> {
    #[serde(rename = "ShardId", borrow)]
    shard_id: Cow<'a, str>,
}

fn malformed(operation: &'static str, e: &dyn std::fmt::Display) -> KinesisError {
    KinesisError::Transient {
        operation,
        message: format!("malformed response: {e}"),
    }
}

/// An arrival time as the SDK reads it: the number's text as `f64` epoch seconds (`null` is none).
fn arrival(raw: Option<&RawValue>) -> Result<Option<chrono::DateTime<chrono::Utc>>, KinesisError> {
    const OP: &str = "GetRecords";
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    let secs: f64 = text
        .parse()
        .map_err(|_| malformed(OP, &format!("ApproximateArrivalTimestamp {text:?}")))?;
    if !secs.is_finite() {
        return Err(malformed(OP, &"ApproximateArrivalTimestamp not finite"));
    }
    Ok(crate::api::to_chrono(
        aws_smithy_types::DateTime::from_secs_f64(secs),
    ))
}

/// Decodes a `GetRecords` answer into records of `shard` of `stream`; see the module documentation.
pub fn decode_get_records(
    body: &[u8],
    stream: &Arc<str>,
    shard: &Arc<str>,
) -> Result<RecordsPage, KinesisError> {
    const OP: &str = "GetRecords";
    let page: PageJson<'_> = serde_json::from_slice(body).map_err(|e| malformed(OP, &e))?;
    let raw = page.records.unwrap_or_default();
    // Every record's data decoded into one buffer, handed out as slices of it.
    let capacity: usize = raw
        .iter()
        .map(|r| r.data.as_deref().map_or(0, str::len) / 4 * 3)
        .sum();
    let mut data = Vec::with_capacity(capacity);
    let mut ends = Vec::with_capacity(raw.len());
    for r in &raw {
        base64_simd::STANDARD
            .decode_append(r.data.as_deref().unwrap_or_default(), &mut data)
            .map_err(|e| malformed(OP, &format!("Data of {}: {e}", r.sequence_number)))?;
        ends.push(data.len());
    }
    let data = Bytes::from(data);
    let mut records = Vec::with_capacity(raw.len());
    let mut start = 0;
    for (r, end) in raw.iter().zip(ends) {
        let sequence =
            SequenceNumber::new(&*r.sequence_number).map_err(|e| KinesisError::Transient {
                operation: OP,
                message: e.to_string(),
            })?;
        records.push(Record {
            data: data.slice(start..end),
            partition_key: Arc::from(r.partition_key.as_deref().unwrap_or_default()),
            position: Position::new(sequence, 0),
            approximate_arrival: arrival(r.approximate_arrival_timestamp)?,
            shard_id: shard.clone(),
            stream: stream.clone(),
        });
        start = end;
    }
    Ok(RecordsPage {
        records,
        next_iterator: page.next_shard_iterator.map(Cow::into_owned),
        millis_behind_latest: page.millis_behind_latest,
        child_shards: page
            .child_shards
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.shard_id.into_owned())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Arc<str>, Arc<str>) {
        (Arc::from("s"), Arc::from("shardId-000000000000"))
    }

    #[test]
    fn a_page_decodes_into_slices_of_one_buffer() {
        let (stream, shard) = ids();
        let body = br#"{"Records":[
            {"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ApproximateArrivalTimestamp":1764753600.123,"Data":"aGVsbG8=","PartitionKey":"k\u00e9","EncryptionType":"NONE"},
            {"SequenceNumber":"49590338271490256608559692538361571095921575989136588899","Data":"","PartitionKey":"k2"},
            {"SequenceNumber":"49590338271490256608559692538361571095921575989136588900","ApproximateArrivalTimestamp":null,"Data":"AP8=","PartitionKey":"k3"}
        ],"NextShardIterator":"AAA\/B","MillisBehindLatest":7,"ChildShards":[{"ShardId":"shardId-000000000001","ParentShards":["x"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"1"}}]}"#;
        let page = decode_get_records(body, &stream, &shard).unwrap();
        assert_eq!(page.records.len(), 3);
        assert_eq!(&page.records[0].data[..], b"hello");
        assert_eq!(&*page.records[0].partition_key, "ké");
        assert!(page.records[1].data.is_empty());
        assert_eq!(&page.records[2].data[..], [0u8, 255]);
        assert_eq!(page.records[2].approximate_arrival, None);
        // As the SDK reads it: through f64 (so .123 is 0.12299990654 s).
        let t = page.records[0].approximate_arrival.unwrap();
        assert_eq!(
            Some(t),
            crate::api::to_chrono(aws_smithy_types::DateTime::from_secs_f64(1_764_753_600.123))
        );
        assert_eq!(t.timestamp(), 1_764_753_600);
        // One buffer: the slices are adjacent.
        assert_eq!(
            page.records[0].data.as_ptr().wrapping_add(5),
            page.records[2].data.as_ptr()
        );
        assert_eq!(page.next_iterator.as_deref(), Some("AAA/B"));
        assert_eq!(page.millis_behind_latest, Some(7));
        assert_eq!(page.child_shards, vec!["shardId-000000000001".to_owned()]);
    }

    #[test]
    fn malformed_answers_are_transient() {
        let (stream, shard) = ids();
        for body in [
            &b"{"[..],
            br#"{"Records":[{"SequenceNumber":"1","Data":"!!!","PartitionKey":"k"}]}"#,
            br#"{"Records":[{"SequenceNumber":"01","Data":"","PartitionKey":"k"}]}"#,
            br#"{"Records":[{"SequenceNumber":"1","ApproximateArrivalTimestamp":"x","Data":"","PartitionKey":"k"}]}"#,
        ] {
            let e = decode_get_records(body, &stream, &shard).unwrap_err();
            assert!(
                matches!(e, KinesisError::Transient { .. }),
                "{e:?} for {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn errors_are_classified_like_the_sdk_path() {
        let e = error_answer(
            "GetRecords",
            400,
            None,
            br#"{"__type":"com.amazonaws.kinesis#ExpiredIteratorException","message":"old"}"#,
        );
        assert!(matches!(e, KinesisError::ExpiredIterator { .. }), "{e:?}");
        let e = error_answer(
            "GetRecords",
            400,
            Some("ProvisionedThroughputExceededException:http://internal"),
            br#"{"Message":"slow down"}"#,
        );
        assert!(
            matches!(&e, KinesisError::Throttled { message, .. } if message == "slow down"),
            "{e:?}"
        );
        let e = error_answer(
            "GetRecords",
            400,
            None,
            br#"{"__type":"AccessDeniedException","message":"no"}"#,
        );
        assert!(
            matches!(&e, KinesisError::Permanent { code, .. } if code == "AccessDeniedException"),
            "{e:?}"
        );
        let e = error_answer(
            "GetRecords",
            400,
            None,
            br#"{"__type":"ResourceNotFoundException","message":"gone"}"#,
        );
        assert!(matches!(e, KinesisError::NotFound { .. }), "{e:?}");
        let e = error_answer("GetRecords", 503, None, b"<html>busy</html>");
        assert!(matches!(e, KinesisError::Transient { .. }), "{e:?}");
    }

    #[test]
    fn requests_are_json() {
        let b = shard_iterator_request(
            "st\"x",
            "shardId-1",
            &IteratorStart::AtTimestamp(chrono::DateTime::from_timestamp_millis(1_500).unwrap()),
        );
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["StreamName"], "st\"x");
        assert_eq!(v["ShardIteratorType"], "AT_TIMESTAMP");
        assert_eq!(v["Timestamp"].as_f64(), Some(1.5));
        let v: serde_json::Value =
            serde_json::from_str(&get_records_request("it", 20_000)).unwrap();
        assert_eq!(v["Limit"], 10_000);
    }
}
