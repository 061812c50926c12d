//! The [stage contract](kinesis_connectors_core::contract): `emitter = { type = "s3", ... }` and
//! `dead_letter = { type = "s3", ... }`.

use std::sync::Arc;

use kinesis_connectors_core::contract::{
    BuildError, DeadLetterConfig, EmitterConfig, OptionError, StageConfig, StageContext,
};
use kinesis_connectors_core::{DeadLetter, Emitter, Item};
use serde::Deserialize;

use crate::{S3DeadLetter, S3Emitter, S3Options, S3Settings, S3Writer};

impl StageConfig for S3Settings {
    const TYPE: &'static str = "s3";
    type Options = S3Options;
    fn check(options: S3Options, _: &StageContext) -> Result<Self, OptionError> {
        options.validate()
    }
}

impl EmitterConfig for S3Settings {
    async fn build(self, ctx: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        let writer = S3Writer::connect(&ctx.pipeline, self, &ctx.region).await;
        Ok(Arc::new(S3Emitter::new(writer)))
    }
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

impl StageConfig for S3DeadLetterOptions {
    const TYPE: &'static str = "s3";
    type Options = Self;
    fn check(options: Self, _: &StageContext) -> Result<Self, OptionError> {
        Ok(options)
    }
}

impl DeadLetterConfig for S3DeadLetterOptions {
    async fn build(self, ctx: StageContext) -> Result<Arc<dyn DeadLetter>, BuildError> {
        let region = self.region.unwrap_or(ctx.region);
        let target = S3DeadLetter::connect(
            &region,
            self.endpoint.as_deref(),
            &self.bucket,
            &self.prefix,
            &ctx.pipeline,
        )
        .await;
        Ok(Arc::new(target))
    }
}
