//! The [stage contract](kinesis_connectors_core::contract): `emitter = { type = "elasticsearch", ... }`
//! (alias `opensearch`: both speak the same bulk API).

use std::sync::Arc;

use kinesis_connectors_core::contract::{
    BuildError, EmitterConfig, OptionError, StageConfig, StageContext,
};
use kinesis_connectors_core::{Emitter, Item};

use crate::config::ElasticsearchToml;
use crate::{ElasticsearchEmitter, ElasticsearchOptions};

impl StageConfig for ElasticsearchOptions {
    const TYPE: &'static str = "elasticsearch";
    const ALIASES: &'static [&'static str] = &["opensearch"];
    type Options = ElasticsearchToml;
    fn check(options: ElasticsearchToml, _: &StageContext) -> Result<Self, OptionError> {
        Ok(Self::try_from(options)?)
    }
}

impl EmitterConfig for ElasticsearchOptions {
    async fn build(self, ctx: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        Ok(Arc::new(
            ElasticsearchEmitter::connect(self, &ctx.region).await?,
        ))
    }
}
