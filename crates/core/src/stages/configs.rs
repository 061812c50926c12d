//! The [`contract`](crate::contract) of the built-in stages that need no AWS service: their type
//! names, options and checks.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::file::{DEFAULT_ROTATE_BYTES, FileEmitter, FileEmitterOptions};
use super::filters::{AllFilter, FieldFilter, FieldPredicate};
use super::lines::{LineFormat, NullEmitter, StdoutEmitter};
use super::transformers::{JsonLinesTransformer, JsonTransformer, RawTransformer};
use crate::contract::{
    BuildError, DeadLetterConfig, EmitterConfig, FilterConfig, NoOptions, OptionError, StageConfig,
    StageContext, TransformerConfig,
};
use crate::dead_letter::{DeadLetter, FileDeadLetter};
use crate::emitter::Emitter;
use crate::item::{FieldPath, Item};
use crate::stage::{Filter, Transformer};
use crate::units::ByteSize;

/// Implements the contract for a stage that takes no options and is its own config.
macro_rules! no_options {
    ($ty:ident, $name:literal, $config:ident, $stage:ident) => {
        impl StageConfig for $ty {
            const TYPE: &'static str = $name;
            type Options = NoOptions;
            fn check(_: NoOptions, _: &StageContext) -> Result<Self, OptionError> {
                Ok($ty)
            }
        }
        impl $config for $ty {
            fn build(self, _: &StageContext) -> Arc<dyn $stage<Item>> {
                Arc::new(self)
            }
        }
    };
}

no_options!(RawTransformer, "raw", TransformerConfig, Transformer);
no_options!(JsonTransformer, "json", TransformerConfig, Transformer);
no_options!(
    JsonLinesTransformer,
    "json_lines",
    TransformerConfig,
    Transformer
);
no_options!(AllFilter, "all", FilterConfig, Filter);

impl StageConfig for NullEmitter {
    const TYPE: &'static str = "null";
    type Options = NoOptions;
    fn check(_: NoOptions, _: &StageContext) -> Result<Self, OptionError> {
        Ok(NullEmitter)
    }
}

impl EmitterConfig for NullEmitter {
    async fn build(self, _: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        Ok(Arc::new(self))
    }
}

/// `filters = [{ type = "field", ... }]`: keep items whose JSON field matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFilterOptions {
    /// Dotted path of the field, e.g. `event.type`.
    pub field: String,
    /// Keep items whose field equals this value.
    pub equals: Option<Value>,
    /// Keep items whose field is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
    /// Keep items whose field equals one of these values.
    pub one_of: Option<Vec<Value>>,
    /// Invert the test.
    #[serde(default)]
    pub negate: bool,
}

impl StageConfig for FieldFilter {
    const TYPE: &'static str = "field";
    type Options = FieldFilterOptions;
    fn check(o: FieldFilterOptions, _: &StageContext) -> Result<Self, OptionError> {
        let path = FieldPath::parse(&o.field).ok_or_else(|| {
            OptionError::at(
                "field",
                format!(
                    "invalid field path {:?}: segments must not be empty",
                    o.field
                ),
            )
        })?;
        let predicate = match (o.equals, o.exists, o.one_of) {
            (Some(v), None, None) => FieldPredicate::Equals(v),
            (None, Some(b), None) => FieldPredicate::Exists(b),
            (None, None, Some(vs)) if !vs.is_empty() => FieldPredicate::OneOf(vs),
            (None, None, Some(_)) => {
                return Err(OptionError::at("one_of", "must list at least one value"));
            }
            _ => {
                return Err(OptionError::at(
                    "field",
                    "a field filter takes exactly one of `equals`, `exists`, `one_of`",
                ));
            }
        };
        Ok(FieldFilter::new(path, predicate, o.negate))
    }
}

impl FilterConfig for FieldFilter {
    fn build(self, _: &StageContext) -> Arc<dyn Filter<Item>> {
        Arc::new(self)
    }
}

/// `emitter = { type = "stdout" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutOptions {
    /// `data` (the item) or `envelope` (JSON with the record's metadata).
    #[serde(default)]
    pub format: LineFormat,
}

impl StageConfig for StdoutOptions {
    const TYPE: &'static str = "stdout";
    type Options = Self;
    fn check(o: Self, _: &StageContext) -> Result<Self, OptionError> {
        Ok(o)
    }
}

impl EmitterConfig for StdoutOptions {
    async fn build(self, _: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        Ok(Arc::new(StdoutEmitter::new(self.format)))
    }
}

/// `emitter = { type = "file", ... }`.
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

impl StageConfig for FileEmitterOptions {
    const TYPE: &'static str = "file";
    type Options = FileOptions;
    fn check(o: FileOptions, ctx: &StageContext) -> Result<Self, OptionError> {
        Ok(FileEmitterOptions {
            dir: o.dir,
            prefix: o.prefix.unwrap_or_else(|| ctx.pipeline.clone()),
            rotate_bytes: o.rotate_bytes.map_or(DEFAULT_ROTATE_BYTES, |b| b.0),
            format: o.format,
            fsync: o.fsync,
        })
    }
}

impl EmitterConfig for FileEmitterOptions {
    async fn build(self, _: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        Ok(Arc::new(FileEmitter::new(self)))
    }
}

/// `dead_letter = { type = "file", path = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDeadLetterOptions {
    /// The JSON-lines file.
    pub path: PathBuf,
}

impl StageConfig for FileDeadLetterOptions {
    const TYPE: &'static str = "file";
    type Options = Self;
    fn check(o: Self, _: &StageContext) -> Result<Self, OptionError> {
        Ok(o)
    }
}

impl DeadLetterConfig for FileDeadLetterOptions {
    async fn build(self, _: StageContext) -> Result<Arc<dyn DeadLetter>, BuildError> {
        Ok(Arc::new(FileDeadLetter::new(self.path)))
    }
}
