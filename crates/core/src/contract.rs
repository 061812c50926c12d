//! The stage contract: how a `type = "..."` table in `connectors.toml` becomes a running stage.
//!
//! Every stage, built in or custom, goes the same way (in the spirit of Vector's `SinkConfig` and
//! Quickwit's validated configs):
//!
//! 1. its table, without `type`, is parsed into [`StageConfig::Options`] (`deny_unknown_fields`);
//! 2. [`StageConfig::check`] turns the options into the stage's checked config (`Self`) or an
//!    [`OptionError`] naming the key inside the table; this runs when the configuration is loaded, so
//!    `kinesis-connector check` reports every mistake without touching the network;
//! 3. the checked config builds the stage: [`EmitterConfig::build`] and [`DeadLetterConfig::build`]
//!    are async and run when the pipeline runs (clients, connections), [`TransformerConfig::build`] and
//!    [`FilterConfig::build`] run at load.
//!
//! The connector's registry only dispatches on the type name: registering a stage is one line
//! (`registry.emitter::<MyConfig>()`). What most emitters need beside the contract (a secret,
//! bounded options, chunking, `Retry-After`, folding verdicts into an outcome) is in [`crate::kit`].

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::dead_letter::DeadLetter;
use crate::emitter::Emitter;
use crate::item::Item;
use crate::stage::{Filter, Transformer};

/// What a stage is built with besides its own options.
#[derive(Clone, Debug)]
pub struct StageContext {
    /// The pipeline's name.
    pub pipeline: String,
    /// The directory for local state (checkpoints, dead letters) when paths are not given.
    pub state_dir: PathBuf,
    /// The AWS region of the pipeline's source, the default for sinks.
    pub region: String,
}

impl StageContext {
    /// A context for `pipeline` in `region`, with local state under the current directory (tests,
    /// stages built in code).
    pub fn new(pipeline: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            pipeline: pipeline.into(),
            state_dir: PathBuf::from("."),
            region: region.into(),
        }
    }
}

/// A wrong option of a stage: the key inside the stage's table (dotted, e.g. `staging.bucket`,
/// `columns[1]`; empty for the table as a whole) and what is wrong.
///
/// The same type for every stage: the connector prefixes the stage's place in the pipeline
/// ([`OptionError::within`]), so a user reads the full key, `emitter.max_batch_items`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct OptionError {
    /// The offending key; empty when the error is about the whole table.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl OptionError {
    /// An error about `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with its key placed under `prefix` (`emitter` + `table` = `emitter.table`;
    /// `filters[0]` + `field` = `filters[0].field`).
    pub fn within(self, prefix: &str) -> Self {
        let key = match (prefix.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.key),
        };
        Self { key, ..self }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a stage could not be built when its pipeline started.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What every stage declares: its type name, its TOML options and their check into `Self`.
pub trait StageConfig: Sized + Send + 'static {
    /// The name written as `type = "..."`.
    const TYPE: &'static str;
    /// Other names for the same stage (`opensearch` for `elasticsearch`).
    const ALIASES: &'static [&'static str] = &[];
    /// The options as written in the stage's table (without `type`).
    type Options: DeserializeOwned;
    /// Checks the options into the checked config; an error names the key inside the table.
    fn check(options: Self::Options, ctx: &StageContext) -> Result<Self, OptionError>;
}

/// A checked emitter config: builds the emitter when the pipeline runs.
pub trait EmitterConfig: StageConfig {
    /// Creates the emitter (clients, connections).
    fn build(
        self,
        ctx: StageContext,
    ) -> impl Future<Output = Result<Arc<dyn Emitter<Item>>, BuildError>> + Send;
}

/// A checked dead-letter config: builds the target when the pipeline runs.
pub trait DeadLetterConfig: StageConfig {
    /// Creates the target.
    fn build(
        self,
        ctx: StageContext,
    ) -> impl Future<Output = Result<Arc<dyn DeadLetter>, BuildError>> + Send;
}

/// A checked transformer config: builds the transformer when the configuration is loaded.
pub trait TransformerConfig: StageConfig {
    /// Creates the transformer.
    fn build(self, ctx: &StageContext) -> Arc<dyn Transformer<Item>>;
}

/// A checked filter config: builds the filter when the configuration is loaded.
pub trait FilterConfig: StageConfig {
    /// Creates the filter.
    fn build(self, ctx: &StageContext) -> Arc<dyn Filter<Item>>;
}

/// Options of stages that take none (any key is an error).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}
