//! What a DynamoDB error means for the items of the request that got it.
//!
//! | error | verdict |
//! |---|---|
//! | throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`), 5xx, timeouts, connection errors, `TransactionConflictException` | retry the request's items (the pipeline's retry policy backs off) |
//! | `ResourceNotFoundException` (the table is gone or still being created) | retry, naming the table: nothing is dead-lettered because of a table that may come back |
//! | `ValidationException`, `SerializationException`, `ItemCollectionSizeLimitExceededException` | an item of the request is refused: split the request to find it, dead-letter it alone |
//! | `ConditionalCheckFailedException` (ordering-safe writes) | a newer record's write is in place: the item counts as delivered |
//! | anything else permanent (access denied, bad credentials) | every item of the request fails permanently |
//!
//! `UnprocessedItems` of a successful BatchWriteItem are retried the same way as throttling: they are
//! reported to the pipeline as retryable item failures, and the pipeline's one retry policy
//! (exponential, capped, full jitter, `max_attempts`) re-sends them, dead-lettering them if it gives up.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use kinesis_connectors_aws::{ErrorClass, classify, describe};

/// How the items of a failed request are to be treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again later.
    Retry(String),
    /// An item of the request was refused: split the request to find which.
    InvalidItem(String),
    /// The write's condition failed: a newer record's write is in place.
    ConditionFailed,
    /// Will not pass for any item.
    Permanent(String),
}

/// Whether an error code is DynamoDB refusing an item of the request (rather than the request).
pub(crate) fn refuses_item(code: &str) -> bool {
    matches!(
        code,
        "ValidationException"
            | "SerializationException"
            | "ItemCollectionSizeLimitExceededException"
    )
}

/// The verdict for an error code and message (`code` is `None` for network failures and timeouts).
pub(crate) fn verdict_for(code: Option<&str>, message: &str, table: &str) -> Verdict {
    let text = match code {
        Some(c) => format!("{c}: {message}"),
        None => message.to_owned(),
    };
    match code {
        Some("ConditionalCheckFailedException") => Verdict::ConditionFailed,
        Some(c) if refuses_item(c) => Verdict::InvalidItem(text),
        Some("TransactionConflictException") => Verdict::Retry(text),
        _ => match classify(code) {
            ErrorClass::Throttled | ErrorClass::Transient => Verdict::Retry(text),
            ErrorClass::NotFound => Verdict::Retry(format!(
                "DynamoDB table {table:?} not found (deleted, or not active yet): {text}"
            )),
            ErrorClass::Permanent => Verdict::Permanent(text),
        },
    }
}

/// The verdict for an SDK error.
pub(crate) fn verdict<E, R>(err: &SdkError<E, R>, table: &str) -> Verdict
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let (code, message) = describe(err);
    if matches!(err, SdkError::ConstructionFailure(_)) {
        // The request could not even be built: sending it again changes nothing.
        return Verdict::Permanent(format!("request not built: {message}"));
    }
    verdict_for(code.as_deref(), &message, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let v = |c: Option<&str>| verdict_for(c, "m", "t");
        assert!(matches!(
            v(Some("ProvisionedThroughputExceededException")),
            Verdict::Retry(_)
        ));
        assert!(matches!(v(Some("ThrottlingException")), Verdict::Retry(_)));
        assert!(matches!(v(Some("InternalServerError")), Verdict::Retry(_)));
        assert!(matches!(
            v(Some("TransactionConflictException")),
            Verdict::Retry(_)
        ));
        assert!(matches!(v(None), Verdict::Retry(_)));
        match v(Some("ResourceNotFoundException")) {
            Verdict::Retry(m) => assert!(m.contains("table \"t\""), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            v(Some("ValidationException")),
            Verdict::InvalidItem("ValidationException: m".into())
        );
        assert!(matches!(
            v(Some("ItemCollectionSizeLimitExceededException")),
            Verdict::InvalidItem(_)
        ));
        assert_eq!(
            v(Some("ConditionalCheckFailedException")),
            Verdict::ConditionFailed
        );
        assert!(matches!(
            v(Some("AccessDeniedException")),
            Verdict::Permanent(_)
        ));
    }
}
