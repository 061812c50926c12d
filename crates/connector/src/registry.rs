//! The stage registry: which `type = "..."` names exist for transformers, filters, emitters and
//! dead-letter targets, and how each is built from its TOML table.
//!
//! A stage's options are parsed (and validated) when the configuration is loaded, so `check` reports
//! every mistake without touching the network; an emitter is *built* (clients created, connections
//! opened) only when a pipeline runs. Register your own stages in a binary of your own:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kinesis_connector::registry::Registry;
//! use kinesis_connectors_core::{stages::NullEmitter, Emitter, Item};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct BlackHole {}
//!
//! let mut registry = Registry::with_builtins();
//! registry.emitter("black_hole", |_ctx, _: BlackHole| async move {
//!     Ok(Arc::new(NullEmitter) as Arc<dyn Emitter<Item>>)
//! });
//! std::process::exit(kinesis_connector::main_with(registry));
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use kinesis_connectors_core::stages::{
    AllFilter, DEFAULT_ROTATE_BYTES, FieldFilter, FieldPredicate, FileEmitter, FileEmitterOptions,
    JsonLinesTransformer, JsonTransformer, LineFormat, NullEmitter, RawTransformer, StdoutEmitter,
};
use kinesis_connectors_core::{
    DeadLetter, Emitter, FieldPath, FileDeadLetter, Filter, Item, Transformer,
};
use kinesis_connectors_emitter_elasticsearch::{ElasticsearchEmitter, ElasticsearchOptions};
use kinesis_connectors_emitter_s3::{S3Emitter, S3Options, S3Settings, S3Writer};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::keys::{Key, keys_of};

use kinesis_connectors_core::units::ByteSize;

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

/// A stage's options were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    /// The offending key inside the stage's table, if known (e.g. `dir`, `filters[0].equals`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl StageError {
    /// An error about `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

/// Parses a stage's options (its table without `type`), reporting the failing key.
pub fn parse_options<C: DeserializeOwned>(value: toml::Value) -> Result<C, StageError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The path already ends at the offending key (unknown keys included); toml adds context lines.
        let key = (path != ".").then_some(path);
        let inner = inner.lines().next().unwrap_or_default().trim().to_owned();
        StageError {
            key,
            message: inner,
        }
    })
}

/// An emitter whose options are validated, ready to be built.
pub type EmitterBuild = BoxFuture<'static, anyhow::Result<Arc<dyn Emitter<Item>>>>;
/// A dead-letter target whose options are validated, ready to be built.
pub type DeadLetterBuild = BoxFuture<'static, anyhow::Result<Arc<dyn DeadLetter>>>;

type EmitterFn =
    Arc<dyn Fn(&StageContext, toml::Value) -> Result<EmitterBuild, StageError> + Send + Sync>;
type DeadLetterFn =
    Arc<dyn Fn(&StageContext, toml::Value) -> Result<DeadLetterBuild, StageError> + Send + Sync>;
type TransformerFn = Arc<
    dyn Fn(&StageContext, toml::Value) -> Result<Arc<dyn Transformer<Item>>, StageError>
        + Send
        + Sync,
>;
type FilterFn = Arc<
    dyn Fn(&StageContext, toml::Value) -> Result<Arc<dyn Filter<Item>>, StageError> + Send + Sync,
>;

/// Lists the keys of a stage's options type (see [`crate::keys`]).
type KeysFn = fn() -> Vec<Key>;

/// Named stage constructors; see the module documentation.
#[derive(Clone, Default)]
pub struct Registry {
    transformers: BTreeMap<String, TransformerFn>,
    filters: BTreeMap<String, FilterFn>,
    emitters: BTreeMap<String, EmitterFn>,
    dead_letters: BTreeMap<String, DeadLetterFn>,
    option_keys: BTreeMap<(StageKind, String), KeysFn>,
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
        r.transformer("raw", |_, _: NoOptions| {
            Ok(Arc::new(RawTransformer) as Arc<dyn Transformer<Item>>)
        });
        r.transformer("json", |_, _: NoOptions| {
            Ok(Arc::new(JsonTransformer) as Arc<dyn Transformer<Item>>)
        });
        r.transformer("json_lines", |_, _: NoOptions| {
            Ok(Arc::new(JsonLinesTransformer) as Arc<dyn Transformer<Item>>)
        });
        r.filter("all", |_, _: NoOptions| {
            Ok(Arc::new(AllFilter) as Arc<dyn Filter<Item>>)
        });
        r.filter("field", |_, o: FieldFilterOptions| o.build());
        r.emitter("stdout", |_, o: StdoutOptions| async move {
            Ok(Arc::new(StdoutEmitter::new(o.format)) as Arc<dyn Emitter<Item>>)
        });
        r.emitter("null", |_, _: NoOptions| async move {
            Ok(Arc::new(NullEmitter) as Arc<dyn Emitter<Item>>)
        });
        r.emitter("file", |ctx, o: FileOptions| async move {
            Ok(Arc::new(FileEmitter::new(FileEmitterOptions {
                dir: o.dir,
                prefix: o.prefix.unwrap_or(ctx.pipeline),
                rotate_bytes: o.rotate_bytes.map_or(DEFAULT_ROTATE_BYTES, |b| b.0),
                format: o.format,
                fsync: o.fsync,
            })) as Arc<dyn Emitter<Item>>)
        });
        r.emitter_validated(
            "s3",
            |_, o: S3Options| {
                o.validate()
                    .map_err(|(key, message)| StageError::at(key, message))
            },
            |ctx, settings: S3Settings| async move {
                let writer = S3Writer::connect(&ctx.pipeline, settings, &ctx.region).await;
                Ok(Arc::new(S3Emitter::new(writer)) as Arc<dyn Emitter<Item>>)
            },
        );
        r.emitter(
            "dynamodb",
            |ctx, o: kinesis_connectors_emitter_dynamodb::DynamoDbConfig| async move {
                Ok(Arc::new(
                    kinesis_connectors_emitter_dynamodb::DynamoDbEmitter::connect(o, &ctx.region)
                        .await,
                ) as Arc<dyn Emitter<Item>>)
            },
        );
        // One emitter, two names: Elasticsearch and OpenSearch share the bulk API it speaks.
        for name in ["elasticsearch", "opensearch"] {
            r.emitter(name, |ctx, o: ElasticsearchOptions| async move {
                Ok(
                    Arc::new(ElasticsearchEmitter::connect(o, &ctx.region).await?)
                        as Arc<dyn Emitter<Item>>,
                )
            });
        }
        r.emitter_validated(
            "redshift",
            |_, o: kinesis_connectors_emitter_redshift::RedshiftOptions| {
                o.validate().map_err(|e| StageError::at(e.key, e.message))
            },
            |ctx, config| async move {
                Ok(Arc::new(
                    kinesis_connectors_emitter_redshift::RedshiftEmitter::connect(
                        &ctx.pipeline,
                        config,
                        &ctx.region,
                    )
                    .await,
                ) as Arc<dyn Emitter<Item>>)
            },
        );
        r.emitter_validated(
            "iceberg",
            |_, o: kinesis_connectors_emitter_iceberg::IcebergOptions| {
                o.validate()
                    .map_err(|(key, message)| StageError::at(key, message))
            },
            |ctx, settings| async move {
                let emitter = kinesis_connectors_emitter_iceberg::IcebergEmitter::connect(
                    &ctx.pipeline,
                    settings,
                    &ctx.region,
                )
                .await?;
                Ok(Arc::new(emitter) as Arc<dyn Emitter<Item>>)
            },
        );
        r.dead_letter("file", |_, o: FileDeadLetterOptions| async move {
            Ok(Arc::new(FileDeadLetter::new(o.path)) as Arc<dyn DeadLetter>)
        });
        r.dead_letter("s3", |ctx, o: S3DeadLetterOptions| async move {
            let region = o.region.unwrap_or(ctx.region);
            let target = kinesis_connectors_emitter_s3::S3DeadLetter::connect(
                &region,
                o.endpoint.as_deref(),
                &o.bucket,
                &o.prefix,
                &ctx.pipeline,
            )
            .await;
            Ok(Arc::new(target) as Arc<dyn DeadLetter>)
        });
        r.dead_letter("kinesis", |ctx, o: KinesisDeadLetterOptions| async move {
            let region = o.region.unwrap_or(ctx.region);
            let client = kinesis_connectors_consumer::StreamClient::connect(
                &region,
                o.endpoint.as_deref().filter(|e| !e.is_empty()),
            )
            .await;
            Ok(
                Arc::new(kinesis_connectors_consumer::KinesisDeadLetter::new(
                    client, o.stream,
                )) as Arc<dyn DeadLetter>,
            )
        });
        r
    }

    /// Registers a transformer type; `build` runs when the configuration is loaded.
    pub fn transformer<C, F>(&mut self, name: &str, build: F) -> &mut Self
    where
        C: DeserializeOwned,
        F: Fn(&StageContext, C) -> Result<Arc<dyn Transformer<Item>>, StageError>
            + Send
            + Sync
            + 'static,
    {
        self.transformers.insert(
            name.to_owned(),
            Arc::new(move |ctx, v| build(ctx, parse_options(v)?)),
        );
        self.option_keys
            .insert((StageKind::Transformer, name.to_owned()), keys_of::<C>);
        self
    }

    /// Registers a filter type; `build` runs when the configuration is loaded.
    pub fn filter<C, F>(&mut self, name: &str, build: F) -> &mut Self
    where
        C: DeserializeOwned,
        F: Fn(&StageContext, C) -> Result<Arc<dyn Filter<Item>>, StageError>
            + Send
            + Sync
            + 'static,
    {
        self.filters.insert(
            name.to_owned(),
            Arc::new(move |ctx, v| build(ctx, parse_options(v)?)),
        );
        self.option_keys
            .insert((StageKind::Filter, name.to_owned()), keys_of::<C>);
        self
    }

    /// Registers an emitter type. Options (`C`) are parsed when the configuration is loaded; the future
    /// that builds the emitter runs only when the pipeline runs.
    pub fn emitter<C, F, Fut>(&mut self, name: &str, build: F) -> &mut Self
    where
        C: DeserializeOwned + Send + 'static,
        F: Fn(StageContext, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Arc<dyn Emitter<Item>>>> + Send + 'static,
    {
        self.emitter_validated(name, |_, options: C| Ok(options), build)
    }

    /// Registers an emitter type whose options need checks beyond their shape: `validate` runs when the
    /// configuration is loaded (so `check` reports its errors, with their keys), `build` when the
    /// pipeline runs.
    pub fn emitter_validated<C, V, Val, F, Fut>(
        &mut self,
        name: &str,
        validate: Val,
        build: F,
    ) -> &mut Self
    where
        C: DeserializeOwned,
        V: Send + 'static,
        Val: Fn(&StageContext, C) -> Result<V, StageError> + Send + Sync + 'static,
        F: Fn(StageContext, V) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Arc<dyn Emitter<Item>>>> + Send + 'static,
    {
        self.emitters.insert(
            name.to_owned(),
            Arc::new(move |ctx, v| {
                let options = validate(ctx, parse_options(v)?)?;
                Ok(Box::pin(build(ctx.clone(), options)) as EmitterBuild)
            }),
        );
        self.option_keys
            .insert((StageKind::Emitter, name.to_owned()), keys_of::<C>);
        self
    }

    /// Registers a dead-letter target type (parsed at load, built at run, like emitters).
    pub fn dead_letter<C, F, Fut>(&mut self, name: &str, build: F) -> &mut Self
    where
        C: DeserializeOwned,
        F: Fn(StageContext, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Arc<dyn DeadLetter>>> + Send + 'static,
    {
        self.dead_letters.insert(
            name.to_owned(),
            Arc::new(move |ctx, v| {
                let options: C = parse_options(v)?;
                Ok(Box::pin(build(ctx.clone(), options)) as DeadLetterBuild)
            }),
        );
        self.option_keys
            .insert((StageKind::DeadLetter, name.to_owned()), keys_of::<C>);
        self
    }

    /// The registered type names of a kind.
    pub fn names(&self, kind: StageKind) -> Vec<&str> {
        match kind {
            StageKind::Transformer => self.transformers.keys().map(String::as_str).collect(),
            StageKind::Filter => self.filters.keys().map(String::as_str).collect(),
            StageKind::Emitter => self.emitters.keys().map(String::as_str).collect(),
            StageKind::DeadLetter => self.dead_letters.keys().map(String::as_str).collect(),
        }
    }

    /// The keys of a registered stage's options (besides `type`), read from its options type; `None`
    /// for a name not registered.
    pub fn option_keys(&self, kind: StageKind, name: &str) -> Option<Vec<Key>> {
        self.option_keys
            .get(&(kind, name.to_owned()))
            .map(|keys| keys())
    }

    /// Splits `type` off a stage table; errors name the `type` key.
    fn split_type(
        &self,
        kind: StageKind,
        table: toml::Table,
    ) -> Result<(String, toml::Value), StageError> {
        let mut table = table;
        let ty = match table.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(StageError::at("type", "must be a string")),
            None => {
                return Err(StageError::at(
                    "type",
                    format!("missing; one of: {}", self.names(kind).join(", ")),
                ));
            }
        };
        if !self.names(kind).contains(&ty.as_str()) {
            return Err(StageError::at(
                "type",
                format!(
                    "unknown type {ty:?}; one of: {}",
                    self.names(kind).join(", ")
                ),
            ));
        }
        Ok((ty, toml::Value::Table(table)))
    }

    /// Builds a transformer from its table.
    pub fn build_transformer(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<Arc<dyn Transformer<Item>>, StageError> {
        let (ty, options) = self.split_type(StageKind::Transformer, table)?;
        self.transformers[&ty](ctx, options)
    }

    /// Builds a filter from its table.
    pub fn build_filter(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<Arc<dyn Filter<Item>>, StageError> {
        let (ty, options) = self.split_type(StageKind::Filter, table)?;
        self.filters[&ty](ctx, options)
    }

    /// Validates an emitter's table; returns its type and the future that builds it.
    pub fn prepare_emitter(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<(String, EmitterBuild), StageError> {
        let (ty, options) = self.split_type(StageKind::Emitter, table)?;
        let build = self.emitters[&ty](ctx, options)?;
        Ok((ty, build))
    }

    /// Validates a dead-letter target's table; returns its type and the future that builds it.
    pub fn prepare_dead_letter(
        &self,
        ctx: &StageContext,
        table: toml::Table,
    ) -> Result<(String, DeadLetterBuild), StageError> {
        let (ty, options) = self.split_type(StageKind::DeadLetter, table)?;
        let build = self.dead_letters[&ty](ctx, options)?;
        Ok((ty, build))
    }
}

/// Options of stages that take none (any key is an error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// `type = "field"`: keep items whose JSON field matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFilterOptions {
    /// Dotted path of the field, e.g. `event.type`.
    pub field: String,
    /// Keep items whose field equals this value.
    pub equals: Option<toml::Value>,
    /// Keep items whose field is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
    /// Keep items whose field equals one of these values.
    pub one_of: Option<Vec<toml::Value>>,
    /// Invert the test.
    #[serde(default)]
    pub negate: bool,
}

fn to_json(v: &toml::Value) -> Result<serde_json::Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

impl FieldFilterOptions {
    fn build(self) -> Result<Arc<dyn Filter<Item>>, StageError> {
        let path = FieldPath::parse(&self.field).ok_or_else(|| {
            StageError::at(
                "field",
                format!(
                    "invalid field path {:?}: segments must not be empty",
                    self.field
                ),
            )
        })?;
        let predicate = match (self.equals, self.exists, self.one_of) {
            (Some(v), None, None) => {
                FieldPredicate::Equals(to_json(&v).map_err(|e| StageError::at("equals", e))?)
            }
            (None, Some(b), None) => FieldPredicate::Exists(b),
            (None, None, Some(vs)) if !vs.is_empty() => FieldPredicate::OneOf(
                vs.iter()
                    .map(to_json)
                    .collect::<Result<_, _>>()
                    .map_err(|e| StageError::at("one_of", e))?,
            ),
            (None, None, Some(_)) => {
                return Err(StageError::at("one_of", "must list at least one value"));
            }
            _ => {
                return Err(StageError::at(
                    "field",
                    "a field filter takes exactly one of `equals`, `exists`, `one_of`",
                ));
            }
        };
        Ok(Arc::new(FieldFilter::new(path, predicate, self.negate)))
    }
}

/// `type = "stdout"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutOptions {
    /// `data` (the item) or `envelope` (JSON with the record's metadata).
    #[serde(default)]
    pub format: LineFormat,
}

/// `type = "file"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    /// Directory of the output files.
    pub dir: PathBuf,
    /// File name prefix; the pipeline's name by default.
    pub prefix: Option<String>,
    /// Size at which the next file starts (default 100 MiB).
    pub rotate_bytes: Option<ByteSize>,
    /// `data` or `envelope`.
    #[serde(default)]
    pub format: LineFormat,
    /// `fsync` each batch before acknowledging it (default true).
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// Dead-letter `type = "s3"`: one NDJSON object per write under `{prefix}{pipeline}/yyyy/MM/dd/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3DeadLetterOptions {
    /// The bucket.
    pub bucket: String,
    /// Key prefix (default `dead-letter/`).
    #[serde(default = "dead_letter_prefix")]
    pub prefix: String,
    /// The bucket's region (default: the pipeline's).
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
}

fn dead_letter_prefix() -> String {
    "dead-letter/".into()
}

/// Dead-letter `type = "kinesis"`: entries (JSON, data in base64) put to another stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisDeadLetterOptions {
    /// The dead-letter stream.
    pub stream: String,
    /// Its region (default: the pipeline's).
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
}

/// Dead-letter `type = "file"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDeadLetterOptions {
    /// The JSON-lines file.
    pub path: PathBuf,
}
