//! What is retryable when loading through the Redshift Data API.
//!
//! | what happens | verdict |
//! |---|---|
//! | Data API throttling (`ThrottlingException`, `ActiveStatementsExceededException`, `ActiveSessionsExceededException`), 5xx (`InternalServerException`, `ExecuteStatementException`, `BatchExecuteStatementException`, `DatabaseConnectionException`), timeouts, network errors | the batch is retried by the pipeline's retry policy |
//! | a statement `ABORTED`, or not finished within `statement_timeout` (then cancelled) | retried |
//! | SQL that failed for a passing reason: serialization conflicts, deadlocks, dropped connections, a missing relation (a table being recreated) | retried |
//! | SQL that failed otherwise — a bad row in `COPY` (type error, too long, ...), permission denied | permanent: the batch's records go to the dead letter with Redshift's error text; the staged file stays in S3 |
//! | `ValidationException`, access denied on the Data API, bad credentials | permanent |
//!
//! A retry loads the same staged file again (same batch, same key); if the failed attempt had in fact
//! committed, the loaded-files table skips it.

use aws_sdk_redshiftdata::error::{ProvideErrorMetadata, SdkError};
use kinesis_connectors_aws::{ErrorClass, classify, describe};
use kinesis_connectors_core::EmitError;

/// Converts a Data API SDK error into an emit error (and its class), naming the call.
pub(crate) fn api_error<E, R>(call: &str, err: SdkError<E, R>) -> (EmitError, ErrorClass)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let (code, message) = describe(&err);
    let text = format!(
        "Redshift Data API {call}: {}{message}",
        code.as_deref()
            .map(|c| format!("{c}: "))
            .unwrap_or_default()
    );
    let class = if matches!(err, SdkError::ConstructionFailure(_)) {
        ErrorClass::Permanent
    } else {
        class_of(code.as_deref())
    };
    let e = if class.is_retryable() {
        EmitError::retryable(text)
    } else {
        EmitError::permanent(text)
    };
    (e, class)
}

/// The class of a Data API error code.
pub(crate) fn class_of(code: Option<&str>) -> ErrorClass {
    match code {
        Some("ActiveStatementsExceededException" | "ActiveSessionsExceededException") => {
            ErrorClass::Throttled
        }
        Some(
            "InternalServerException"
            | "ExecuteStatementException"
            | "BatchExecuteStatementException"
            | "DatabaseConnectionException"
            | "QueryTimeoutException",
        ) => ErrorClass::Transient,
        other => classify(other),
    }
}

/// Whether a SQL error text (Redshift's, or the stand-in's PostgreSQL's) is a passing condition.
pub(crate) fn is_transient_sql_error(message: &str) -> bool {
    const PASSING: &[&str] = &[
        "serializable isolation violation",
        "could not serialize access",
        "deadlock detected",
        "terminating connection",
        "server closed the connection",
        "connection reset",
        "connection refused",
        "could not connect",
        "the database system is",
        "lock timeout",
        "canceling statement due to lock timeout",
        "does not exist",
        "please retry",
        "try again",
        "cluster is not available",
        "cluster is currently",
        "resize in progress",
    ];
    let m = message.to_ascii_lowercase();
    PASSING.iter().any(|p| m.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(
            class_of(Some("ActiveStatementsExceededException")),
            ErrorClass::Throttled
        );
        assert_eq!(class_of(Some("ThrottlingException")), ErrorClass::Throttled);
        assert_eq!(
            class_of(Some("BatchExecuteStatementException")),
            ErrorClass::Transient
        );
        assert_eq!(class_of(Some("ValidationException")), ErrorClass::Permanent);
        assert_eq!(class_of(None), ErrorClass::Transient);
        assert!(is_transient_sql_error(
            "ERROR: 1023 DETAIL: Serializable isolation violation on table - 100"
        ));
        assert!(is_transient_sql_error(
            "relation \"public.clicks\" does not exist"
        ));
        assert!(!is_transient_sql_error(
            "invalid input syntax for type integer: \"abc\""
        ));
        assert!(!is_transient_sql_error(
            "Load into table 'kc_stage' failed. Check 'stl_load_errors' system table for details."
        ));
        assert!(!is_transient_sql_error(
            "permission denied for relation clicks"
        ));
    }
}
