//! The crate's one error type: an option rejected while the configuration is loaded. (Failures while
//! emitting are reported as [`kinesis_connectors_core::EmitError`].)

/// A rejected option: the key (dotted, inside the emitter's table) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The offending key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}
