//! The [stage contract](kinesis_connectors_core::contract): `emitter = { type = "dynamodb", ... }`.

use std::sync::Arc;

use kinesis_connectors_core::contract::{
    BuildError, EmitterConfig, OptionError, StageConfig, StageContext,
};
use kinesis_connectors_core::{Emitter, Item};

use crate::{DynamoDbConfig, DynamoDbEmitter, DynamoDbOptions};

impl StageConfig for DynamoDbConfig {
    const TYPE: &'static str = "dynamodb";
    type Options = DynamoDbOptions;
    fn check(options: DynamoDbOptions, _: &StageContext) -> Result<Self, OptionError> {
        options.validate()
    }
}

impl EmitterConfig for DynamoDbConfig {
    async fn build(self, ctx: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        Ok(Arc::new(DynamoDbEmitter::connect(self, &ctx.region).await))
    }
}
