//! The connector pipeline as a record processor: every shard feeds one shared [`PipelineHandle`].

use std::sync::Arc;

use async_trait::async_trait;
use kinesis_connectors_core::{PipelineHandle, Resume, ShardId};

use crate::processor::{
    Checkpointer, InitializationInput, ProcessRecordsInput, ProcessorError, ShardRecordProcessor,
    ShardRecordProcessorFactory, ShutdownReason,
};

/// Makes processors that push each shard's records into one running pipeline.
#[derive(Clone)]
pub struct PipelineProcessorFactory {
    handle: PipelineHandle,
}

impl PipelineProcessorFactory {
    /// Processors feeding `handle`.
    pub fn new(handle: PipelineHandle) -> Self {
        Self { handle }
    }
}

impl ShardRecordProcessorFactory for PipelineProcessorFactory {
    fn create_processor(&self) -> Box<dyn ShardRecordProcessor> {
        Box::new(PipelineProcessor {
            handle: self.handle.clone(),
            shard: None,
            resume: Resume::default(),
            opened: false,
        })
    }
}

struct PipelineProcessor {
    handle: PipelineHandle,
    shard: Option<ShardId>,
    resume: Resume,
    opened: bool,
}

impl PipelineProcessor {
    fn shard(&self) -> Result<ShardId, ProcessorError> {
        self.shard
            .clone()
            .ok_or_else(|| "processor used before initialize".into())
    }
}

#[async_trait]
impl ShardRecordProcessor for PipelineProcessor {
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
        self.shard = Some(input.shard_id);
        self.resume = input.resume;
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let shard = self.shard()?;
        if !self.opened {
            self.handle
                .open_shard_at(
                    shard.clone(),
                    Arc::new(checkpointer.clone()),
                    std::mem::take(&mut self.resume),
                )
                .await?;
            self.opened = true;
        }
        self.handle
            .push_page(shard, input.records, input.at_tip)
            .await?;
        Ok(())
    }

    async fn shutdown(
        &mut self,
        reason: ShutdownReason,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let shard = self.shard()?;
        match reason {
            ShutdownReason::LeaseLost => {
                if self.opened {
                    self.handle.abandon_shard(shard).await?;
                }
            }
            ShutdownReason::Requested => {
                if self.opened {
                    self.handle.hand_off_shard(shard).await?;
                }
            }
            ShutdownReason::ShardEnd => {
                if self.opened {
                    self.handle.finish_shard(shard).await?;
                }
                checkpointer.checkpoint_shard_end().await?;
            }
        }
        self.opened = false;
        Ok(())
    }
}
