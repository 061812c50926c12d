//! The [stage contract](kinesis_connectors_core::contract): `emitter = { type = "redshift", ... }`.

use std::sync::Arc;

use kinesis_connectors_core::contract::{
    BuildError, EmitterConfig, OptionError, StageConfig, StageContext,
};
use kinesis_connectors_core::{Emitter, Item};

use crate::{RedshiftConfig, RedshiftEmitter, RedshiftOptions};

impl StageConfig for RedshiftConfig {
    const TYPE: &'static str = "redshift";
    type Options = RedshiftOptions;
    fn check(options: RedshiftOptions, _: &StageContext) -> Result<Self, OptionError> {
        options.validate()
    }
}

impl EmitterConfig for RedshiftConfig {
    async fn build(self, ctx: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        let emitter = RedshiftEmitter::connect(&ctx.pipeline, self, &ctx.region).await;
        Ok(Arc::new(emitter))
    }
}
