//! Shared AWS plumbing: how every client of kinesis-connectors is configured, and how AWS errors are
//! classified for retrying.
//!
//! * [`sdk_config`]: region, optional endpoint override (local emulators, VPC endpoints), the standard
//!   credential chain, bounded timeouts, and **no SDK retries**: callers retry with the project's one
//!   retry policy, so every retry is logged and counted.
//! * [`classify`]: an error code → [`ErrorClass`].
#![warn(missing_docs, unreachable_pub)]

use std::time::Duration;

pub use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one attempt of one call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Loads the SDK configuration for `region`, at `endpoint` if given; see the crate documentation.
pub async fn sdk_config(region: &str, endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(url) = endpoint.filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// How an AWS error should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling: back off and retry.
    Throttled,
    /// A passing failure (network, timeout, 5xx): retry.
    Transient,
    /// The resource does not exist.
    NotFound,
    /// The request will never succeed as it is (access denied, validation).
    Permanent,
}

impl ErrorClass {
    /// Whether retrying may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient)
    }
}

/// Classifies an AWS error code (`None` for errors without one: network failures, timeouts).
pub fn classify(code: Option<&str>) -> ErrorClass {
    match code {
        Some(
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TransactionInProgressException",
        ) => ErrorClass::Throttled,
        Some("ResourceNotFoundException" | "NoSuchBucket" | "NoSuchKey" | "NotFound") => {
            ErrorClass::NotFound
        }
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "InvalidArgumentException"
            | "ValidationException"
            | "SerializationException"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSNotFoundException"
            | "KMSOptInRequired"
            | "KMSInvalidStateException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "MissingAuthenticationTokenException"
            | "InvalidRequest"
            | "InvalidBucketName"
            | "EntityTooLarge"
            | "ItemCollectionSizeLimitExceededException"
            | "ConditionalCheckFailedException",
        ) => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// The error's code and message, plus every `source()` when the service gave no message (dispatch
/// failures hide the useful part deep in the chain).
pub fn describe<E, R>(err: &SdkError<E, R>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = match err.message() {
        Some(m) => m.to_owned(),
        None => error_chain(err),
    };
    (code, message)
}

/// Every `source()` of an error, joined with `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(
            classify(Some("ProvisionedThroughputExceededException")),
            ErrorClass::Throttled
        );
        assert_eq!(classify(Some("SlowDown")), ErrorClass::Throttled);
        assert_eq!(classify(Some("AccessDenied")), ErrorClass::Permanent);
        assert_eq!(classify(Some("InternalFailure")), ErrorClass::Transient);
        assert_eq!(classify(None), ErrorClass::Transient);
        assert!(ErrorClass::Throttled.is_retryable() && !ErrorClass::NotFound.is_retryable());
    }
}
