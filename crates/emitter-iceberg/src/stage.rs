//! The [stage contract](kinesis_connectors_core::contract): `emitter = { type = "iceberg", ... }`.

use std::sync::Arc;

use kinesis_connectors_core::contract::{
    BuildError, EmitterConfig, OptionError, StageConfig, StageContext,
};
use kinesis_connectors_core::{Emitter, Item};

use crate::{IcebergEmitter, IcebergOptions, IcebergSettings};

impl StageConfig for IcebergSettings {
    const TYPE: &'static str = "iceberg";
    type Options = IcebergOptions;
    fn check(options: IcebergOptions, _: &StageContext) -> Result<Self, OptionError> {
        options
            .validate()
            .map_err(|(key, message)| OptionError::at(key, message))
    }
}

impl EmitterConfig for IcebergSettings {
    async fn build(self, ctx: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        let emitter = IcebergEmitter::connect(&ctx.pipeline, self, &ctx.region).await?;
        Ok(Arc::new(emitter))
    }
}
