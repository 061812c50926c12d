//! The crate's one error type: what can go wrong while validating options or building the emitter.
//! (Failures while emitting are reported as [`kinesis_connectors_core::EmitError`] and item failures.)

use kinesis_connectors_core::contract::OptionError;

/// Options rejected, or the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    /// An option is invalid (its key names it inside the emitter's table).
    #[error("{0}")]
    Config(#[from] OptionError),
    /// The CA file could not be read or holds no PEM certificate.
    #[error("tls.ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The HTTP transport could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Transport(String),
    /// SigV4 auth was asked for but the standard AWS chain has no credentials provider.
    #[error("auth aws_sigv4: no AWS credentials provider found in the standard chain")]
    NoCredentials,
}

impl ElasticsearchError {
    pub(crate) fn config(key: &'static str, message: impl Into<String>) -> Self {
        Self::Config(OptionError::at(key, message))
    }
}

impl From<ElasticsearchError> for OptionError {
    fn from(e: ElasticsearchError) -> Self {
        match e {
            ElasticsearchError::Config(e) => e,
            other => OptionError::at("", other.to_string()),
        }
    }
}
