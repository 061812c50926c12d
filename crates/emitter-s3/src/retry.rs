//! What is retryable when talking to S3: throttling (`503 SlowDown`) and 5xx are; other 4xx are not.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use kinesis_connectors_aws::{ErrorClass, classify, describe};
use kinesis_connectors_core::EmitError;

/// Converts an S3 SDK error into an emit error, classified by HTTP status and error code.
pub(crate) fn emit_error<E, R>(what: &str, bucket: &str, err: SdkError<E, R>) -> EmitError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
    SdkError<E, R>: HttpStatus,
{
    let status = err.http_status();
    let (code, message) = describe(&err);
    let text = format!(
        "S3 {what} in bucket {bucket}: {}{message}",
        code.as_deref()
            .map(|c| format!("{c}: "))
            .unwrap_or_default()
    );
    let class = match status {
        Some(429 | 503) => ErrorClass::Throttled,
        Some(s) if s >= 500 => ErrorClass::Transient,
        Some(408) => ErrorClass::Transient,
        Some(s) if s >= 400 => match classify(code.as_deref()) {
            ErrorClass::Throttled => ErrorClass::Throttled,
            _ => ErrorClass::Permanent,
        },
        _ => classify(code.as_deref()),
    };
    if class.is_retryable() {
        EmitError::retryable(text)
    } else {
        EmitError::permanent(text)
    }
}

/// The HTTP status of an SDK error's response, if one came back.
pub(crate) trait HttpStatus {
    /// The status code.
    fn http_status(&self) -> Option<u16>;
}

impl<E> HttpStatus for SdkError<E, aws_sdk_s3::config::http::HttpResponse> {
    fn http_status(&self) -> Option<u16> {
        self.raw_response().map(|r| r.status().as_u16())
    }
}
