//! Errors of the consumer engine.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// A failed Kinesis call, classified for retrying.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KinesisError {
    /// Throttled (`ProvisionedThroughputExceededException`, `LimitExceededException`, KMS throttling):
    /// back off and retry.
    #[error("{operation}: throttled: {message}")]
    Throttled {
        /// The API call.
        operation: &'static str,
        /// What the service said.
        message: String,
    },
    /// The shard iterator expired (older than 5 minutes); get a new one.
    #[error("{operation}: shard iterator expired")]
    ExpiredIterator {
        /// The API call.
        operation: &'static str,
    },
    /// The stream (or shard, or consumer) does not exist.
    #[error("{operation}: not found: {message}")]
    NotFound {
        /// The API call.
        operation: &'static str,
        /// What the service said.
        message: String,
    },
    /// The request will never succeed (access denied, invalid argument, KMS key unusable).
    #[error("{operation}: {code}: {message}")]
    Permanent {
        /// The API call.
        operation: &'static str,
        /// The service's error code.
        code: String,
        /// What the service said.
        message: String,
    },
    /// A passing failure: network, timeout, 5xx, a stream being updated.
    #[error("{operation}: {message}")]
    Transient {
        /// The API call.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl KinesisError {
    /// Whether the call may succeed if retried (after a new iterator, for an expired one).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Transient { .. } | Self::ExpiredIterator { .. }
        )
    }

    /// Classifies an SDK error by the service's error code.
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let (code, message) = kinesis_connectors_aws::describe(&err);
        Self::from_code(operation, code.as_deref(), message)
    }

    /// Classifies a failed call by the service's error code (`None` for failures without one:
    /// network, timeouts, unreadable answers). Both the SDK path and our own `GetRecords` decoder
    /// ([`crate::wire`]) classify through here, so they retry alike.
    pub fn from_code(operation: &'static str, code: Option<&str>, message: String) -> Self {
        use kinesis_connectors_aws::{ErrorClass, classify};
        if code == Some("ExpiredIteratorException") {
            return Self::ExpiredIterator { operation };
        }
        match classify(code) {
            ErrorClass::Throttled => Self::Throttled { operation, message },
            ErrorClass::Transient => Self::Transient { operation, message },
            ErrorClass::NotFound => Self::NotFound { operation, message },
            ErrorClass::Permanent => Self::Permanent {
                operation,
                code: code.unwrap_or_default().to_owned(),
                message,
            },
        }
    }
}

/// Why the consumer engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// A Kinesis call failed for good.
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
    /// The checkpoint store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record processor failed.
    #[error("record processor for {shard}: {message}")]
    Processor {
        /// The shard.
        shard: String,
        /// The processor's error.
        message: String,
    },
    /// Kinesis returned data the engine cannot use (e.g. a malformed sequence number).
    #[error("unexpected response: {0}")]
    Protocol(String),
}

/// A checkpoint store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the store's file failed.
    #[error("checkpoint file {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Another process holds the embedded store.
    #[error(
        "checkpoint file {path} is in use by another process (the embedded store serves one process; use the DynamoDB lease table to run several)"
    )]
    Locked {
        /// The file.
        path: String,
    },
    /// The store belongs to another stream.
    #[error("checkpoint file {path} belongs to stream {found:?}, not {expected:?}")]
    WrongStream {
        /// The file.
        path: String,
        /// The stream in the file.
        found: String,
        /// The stream configured.
        expected: String,
    },
    /// A checkpoint was refused (it would move backwards, or the shard has ended).
    #[error("checkpoint of {shard} refused: {message}")]
    Rejected {
        /// The shard.
        shard: String,
        /// Why.
        message: String,
    },
    /// The lease is held by another worker.
    #[error("lease of {shard} is held by another worker")]
    LeaseLost {
        /// The shard.
        shard: String,
    },
    /// The lease table's service failed.
    #[error("lease table {table}: {message}")]
    Service {
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
        /// Whether retrying may succeed.
        retryable: bool,
    },
    /// A store call made through a held lease did not answer within its timeout (whether it took
    /// effect is unknown; a later conditional write tells).
    #[error("lease store call {operation} did not answer within {after:?}")]
    Timeout {
        /// The call.
        operation: &'static str,
        /// Its timeout.
        after: std::time::Duration,
    },
}

impl StoreError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Service {
                retryable: true,
                ..
            } | StoreError::Io { .. }
                | StoreError::Timeout { .. }
        )
    }
}
