//! The stage registry: which `type = "..."` names exist for transformers, filters, emitters and
//! dead-letter targets. It is the mechanism only: what a stage is (its options, their check, how it
//! is built) is declared by the stage itself, through the
//! [stage contract](kinesis_connectors_core::contract) in `core`.
//!
//! A stage's options are parsed and checked when the configuration is loaded, so `check` reports
//! every mistake (naming the full key, e.g. `emitter.max_batch_items`) without touching the network;
//! an emitter or dead-letter target is *built* (clients created, connections opened) only when a
//! pipeline runs. Register your own stages in a binary of your own, one line each:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kinesis_connector::registry::Registry;
//! use kinesis_connectors_core::contract::{
//!     BuildError, EmitterConfig, NoOptions, OptionError, StageConfig, StageContext,
//! };
//! use kinesis_connectors_core::{stages::NullEmitter, Emitter, Item};
//!
//! struct BlackHole;
//!
//! impl StageConfig for BlackHole {
//!     const TYPE: &'static str = "black_hole";
//!     type Options = NoOptions;
//!     fn check(_: NoOptions, _: &StageContext) -> Result<Self, OptionError> {
//!         Ok(BlackHole)
//!     }
//! }
//!
//! impl EmitterConfig for BlackHole {
//!     async fn build(self, _: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
//!         Ok(Arc::new(NullEmitter))
//!     }
//! }
//!
//! let mut registry = Registry::with_builtins();
//! registry.emitter::<BlackHole>();
//! std::process::exit(kinesis_connector::main_with(registry));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use kinesis_connectors_consumer::KinesisDeadLetterOptions;
use kinesis_connectors_core::contract::{
    DeadLetterConfig, EmitterConfig, FilterConfig, StageConfig, TransformerConfig,
};
pub use kinesis_connectors_core::contract::{OptionError, StageContext};
use kinesis_connectors_core::stages::FileEmitterOptions;
use kinesis_connectors_core::stages::{
    AllFilter, FieldFilter, FileDeadLetterOptions, JsonLinesTransformer, JsonTransformer,
    NullEmitter, RawTransformer, StdoutOptions,
};
use kinesis_connectors_core::{DeadLetter, Emitter, Filter, Item, Transformer};
use kinesis_connectors_emitter_dynamodb::DynamoDbConfig;
use kinesis_connectors_emitter_elasticsearch::ElasticsearchOptions;
use kinesis_connectors_emitter_iceberg::IcebergSettings;
use kinesis_connectors_emitter_redshift::RedshiftConfig;
use kinesis_connectors_emitter_s3::{S3DeadLetterOptions, S3Settings};
use serde::de::DeserializeOwned;

use crate::keys::{Key, keys_of};

/// Parses a stage's options (its table without `type`); the error names the failing key (empty when
/// the table as a whole is wrong, e.g. a missing field).
pub fn parse_options<C: DeserializeOwned>(value: toml::Value) -> Result<C, OptionError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The path already ends at the offending key (unknown keys included); toml adds context lines.
        let key = if path == "." { String::new() } else { path };
        let message = inner.lines().next().unwrap_or_default().trim().to_owned();
        OptionError { key, message }
    })
}

/// An emitter whose options are checked, ready to be built.
pub type EmitterBuild = BoxFuture<'static, anyhow::Result<Arc<dyn Emitter<Item>>>>;
/// A dead-letter target whose options are checked, ready to be built.
pub type DeadLetterBuild = BoxFuture<'static, anyhow::Result<Arc<dyn DeadLetter>>>;

/// One registered type: parse and check its table into `T`, and list its option keys.
struct Entry<T> {
    check: fn(&StageContext, toml::Value) -> Result<T, OptionError>,
    keys: fn() -> Vec<Key>,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Self {
            check: self.check,
            keys: self.keys,
        }
    }
}

/// Parses and checks a table as stage `S` and hands the checked config to `finish`.
fn checked<S: StageConfig>(ctx: &StageContext, value: toml::Value) -> Result<S, OptionError> {
    S::check(parse_options(value)?, ctx)
}

fn transformer_entry<S: TransformerConfig>(
    ctx: &StageContext,
    v: toml::Value,
) -> Result<Arc<dyn Transformer<Item>>, OptionError> {
    Ok(checked::<S>(ctx, v)?.build(ctx))
}

fn filter_entry<S: FilterConfig>(
    ctx: &StageContext,
    v: toml::Value,
) -> Result<Arc<dyn Filter<Item>>, OptionError> {
    Ok(checked::<S>(ctx, v)?.build(ctx))
}

fn emitter_entry<S: EmitterConfig>(
    ctx: &StageContext,
    v: toml::Value,
) -> Result<EmitterBuild, OptionError> {
    let config = checked::<S>(ctx, v)?;
    let ctx = ctx.clone();
    Ok(Box::pin(async move {
        config.build(ctx).await.map_err(anyhow::Error::from_boxed)
    }))
}

fn dead_letter_entry<S: DeadLetterConfig>(
    ctx: &StageContext,
    v: toml::Value,
) -> Result<DeadLetterBuild, OptionError> {
    let config = checked::<S>(ctx, v)?;
    let ctx = ctx.clone();
    Ok(Box::pin(async move {
        config.build(ctx).await.map_err(anyhow::Error::from_boxed)
    }))
}

/// Named stage types; see the module documentation.
#[derive(Clone, Default)]
pub struct Registry {
    transformers: BTreeMap<String, Entry<Arc<dyn Transformer<Item>>>>,
    filters: BTreeMap<String, Entry<Arc<dyn Filter<Item>>>>,
    emitters: BTreeMap<String, Entry<EmitterBuild>>,
    dead_letters: BTreeMap<String, Entry<DeadLetterBuild>>,
}

/// The four kinds of registered stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageKind {
    /// `transformer`
    Transformer,
    /// `filters`
    Filter,
    /// `emitter`
    Emitter,
    /// `dead_letter`
    DeadLetter,
}

/// Inserts `entry` under the stage's type name and its aliases.
fn insert<S: StageConfig, T>(map: &mut BTreeMap<String, Entry<T>>, entry: Entry<T>) {
    for name in std::iter::once(S::TYPE).chain(S::ALIASES.iter().copied()) {
        map.insert(name.to_owned(), entry.clone());
    }
}

impl Registry {
    /// A registry with no stages.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with the built-in stages: transformers `raw`, `json`, `json_lines`; filters `all`, `field`;
    /// emitters `stdout`, `file`, `null`, `s3`, `dynamodb`, `elasticsearch` (alias `opensearch`),
    /// `redshift`, `iceberg`; dead-letter targets `file`, `s3`, `kinesis`.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        r.transformer::<RawTransformer>()
            .transformer::<JsonTransformer>()
            .transformer::<JsonLinesTransformer>();
        r.filter::<AllFilter>().filter::<FieldFilter>();
        r.emitter::<StdoutOptions>()
            .emitter::<NullEmitter>()
            .emitter::<FileEmitterOptions>()
            .emitter::<S3Settings>()
            .emitter::<DynamoDbConfig>()
            .emitter::<ElasticsearchOptions>()
            .emitter::<RedshiftConfig>()
            .emitter::<IcebergSettings>();
        r.dead_letter::<FileDeadLetterOptions>()
            .dead_letter::<S3DeadLetterOptions>()
            .dead_letter::<KinesisDeadLetterOptions>();
        r
    }

    /// Registers a transformer type (built when the configuration is loaded).
    pub fn transformer<S: TransformerConfig>(&mut self) -> &mut Self {
        let entry = Entry {
            check: transformer_entry::<S>,
            keys: keys_of::<S::Options>,
        };
        insert::<S, _>(&mut self.transformers, entry);
        self
    }

    /// Registers a filter type (built when the configuration is loaded).
    pub fn filter<S: FilterConfig>(&mut self) -> &mut Self {
        let entry = Entry {
            check: filter_entry::<S>,
            keys: keys_of::<S::Options>,
        };
        insert::<S, _>(&mut self.filters, entry);
        self
    }

    /// Registers an emitter type: options checked when the configuration is loaded, the emitter built
    /// when the pipeline runs.
    pub fn emitter<S: EmitterConfig>(&mut self) -> &mut Self {
        let entry = Entry {
            check: emitter_entry::<S>,
            keys: keys_of::<S::Options>,
        };
        insert::<S, _>(&mut self.emitters, entry);
        self
    }

    /// Registers a dead-letter target type (checked at load, built at run, like emitters).
    pub fn dead_letter<S: DeadLetterConfig>(&mut self) -> &mut Self {
        let entry = Entry {
            check: dead_letter_entry::<S>,
            keys: keys_of::<S::Options>,
        };
        insert::<S, _>(&mut self.dead_letters, entry);
        self
    }

    /// The registered type names of a kind.
    pub fn names(&self, kind: StageKind) -> Vec<&str> {
        fn keys<T>(m: &BTreeMap<String, T>) -> Vec<&str> {
            m.keys().map(String::as_str).collect()
        }
        match kind {
            StageKind::Transformer => keys(&self.transformers),
            StageKind::Filter => keys(&self.filters),
            StageKind::Emitter => keys(&self.emitters),
            StageKind::DeadLetter => keys(&self.dead_letters),
        }
    }

    /// The keys of a registered stage's options (besides `type`), read from its options type; `None`
    /// for a name not registered.
    pub fn option_keys(&self, kind: StageKind, name: &str) -> Option<Vec<Key>> {
        let keys = match kind {
            StageKind::Transformer => self.transformers.get(name).map(|e| e.keys),
            StageKind::Filter => self.filters.get(name).map(|e| e.keys),
            StageKind::Emitter => self.emitters.get(name).map(|e| e.keys),
            StageKind::DeadLetter => self.dead_letters.get(name).map(|e| e.keys),
        };
        keys.map(|keys| keys())
    }

    /// Splits `type` off a stage table and checks the rest with the registered type; errors name the
    /// key inside the table (`type` included).
    fn check<T>(
        &self,
        kind: StageKind,
        map: &BTreeMap<String, Entry<T>>,
        ctx: &StageContext,
        mut table: toml::Table,
    ) -> Result<(String, T), OptionError> {
        let names = || self.names(kind).join(", ");
        let ty = match table.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(OptionError::at("type", "must be a string")),
            None => {
                return Err(OptionError::at(
                    "type",
                    format!("missing; one of: {}", names()),
                ));
            }
        };
        let Some(entry) = map.get(&ty) else {
            return Err(OptionError::at(
                "type",
                format!("unknown type {ty:?}; one of: {}", names()),
            ));
        };
        let built = (entry.check)(ctx, toml::Value::Table(table))?;
        Ok((ty, built))
    }

    /// Builds a transformer from its table.
    pub fn build_transformer(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<Arc<dyn Transformer<Item>>, OptionError> {
        let kind = StageKind::Transformer;
        Ok(self.check(kind, &self.transformers, ctx, table)?.1)
    }

    /// Builds a filter from its table.
    pub fn build_filter(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<Arc<dyn Filter<Item>>, OptionError> {
        Ok(self.check(StageKind::Filter, &self.filters, ctx, table)?.1)
    }

    /// Checks an emitter's table; returns its type and the future that builds it.
    pub fn prepare_emitter(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<(String, EmitterBuild), OptionError> {
        self.check(StageKind::Emitter, &self.emitters, ctx, table)
    }

    /// Checks a dead-letter target's table; returns its type and the future that builds it.
    pub fn prepare_dead_letter(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<(String, DeadLetterBuild), OptionError> {
        self.check(StageKind::DeadLetter, &self.dead_letters, ctx, table)
    }
}
