//! A lane: one buffer with its closed batches waiting for an emit slot, and at most one batch in
//! flight. Every shard has a lane of its own, or all shards share one (`batch_across_shards`).
//!
//! Why a batch closed matters for effectively-once delivery: a batch closed by its count or byte limit
//! re-forms from the records when they are read again; one closed by its age, a drain or memory
//! pressure does not, so its last item is stored as a boundary before it is emitted
//! ([`super::checkpoint`]). A lane resumed with stored boundaries closes its batches exactly there,
//! and until it has passed them it neither ages out nor yields to memory pressure: the records up to
//! each boundary are in the stream and arrive.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::batch::Envelope;
use crate::buffer::Buffer;
use crate::item::EmittedSize;
use crate::metrics::PipelineMetrics;
use crate::record::ItemPosition;

/// Why a batch closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CloseReason {
    /// It reached `max_records`.
    Count,
    /// It reached `max_bytes` (or the next item would have crossed it).
    Bytes,
    /// Its first item waited `max_age`.
    Age,
    /// The shard was finished, handed off, or the pipeline shut down.
    Drain,
    /// Buffers across lanes held `max_buffered_bytes`: the oldest lane flushed early.
    Pressure,
    /// A boundary stored by an earlier reader of the shard.
    AtBoundary,
}

impl CloseReason {
    /// Whether the batch's end must be stored before it is emitted (records cannot re-form it).
    pub(super) fn needs_boundary(self) -> bool {
        matches!(self, Self::Age | Self::Drain | Self::Pressure)
    }

    pub(super) fn count(self, metrics: &PipelineMetrics) {
        let counter = match self {
            Self::Count => &metrics.batches_closed_by_count,
            Self::Bytes => &metrics.batches_closed_by_bytes,
            Self::Age => &metrics.batches_closed_by_age,
            Self::Drain => &metrics.batches_closed_by_drain,
            Self::Pressure => &metrics.batches_closed_by_pressure,
            Self::AtBoundary => &metrics.batches_closed_at_boundary,
        };
        PipelineMetrics::add(counter, 1);
    }
}

/// A closed batch waiting for an emit slot.
pub(super) struct ReadyBatch<I> {
    pub(super) items: Vec<Envelope<I>>,
    pub(super) bytes: usize,
    /// Its last item, to be stored as a boundary before it is emitted.
    pub(super) boundary: Option<ItemPosition>,
}

/// A closed batch and why it closed.
pub(super) type Closed<I> = (Vec<Envelope<I>>, CloseReason);

pub(super) struct Lane<I> {
    pub(super) buffer: Box<dyn Buffer<I>>,
    pub(super) ready: VecDeque<ReadyBatch<I>>,
    pub(super) in_flight: bool,
    pub(super) scheduled: bool,
    /// Boundaries stored by an earlier reader, still ahead (a shard's own lane only).
    pub(super) boundaries: VecDeque<ItemPosition>,
    max_records: usize,
    scratch: Vec<Vec<Envelope<I>>>,
}

impl<I: EmittedSize + Send> Lane<I> {
    pub(super) fn new(buffer: Box<dyn Buffer<I>>, max_records: usize) -> Self {
        Self {
            buffer,
            ready: VecDeque::new(),
            in_flight: false,
            scheduled: false,
            boundaries: VecDeque::new(),
            max_records: max_records.max(1),
            scratch: Vec::new(),
        }
    }

    /// Adds an item at `at`, closing batches at stored boundaries and at the buffer's limits.
    pub(super) fn push(
        &mut self,
        entry: Envelope<I>,
        at: ItemPosition,
        now: Instant,
        closed: &mut Vec<Closed<I>>,
    ) {
        // A boundary whose own item is not there (filtered, or the transformer changed): close
        // before the first item past it.
        while self.boundaries.front().is_some_and(|b| *b < at) {
            self.boundaries.pop_front();
            self.close_here(CloseReason::AtBoundary, closed);
        }
        self.buffer.push(entry, now, &mut self.scratch);
        for batch in self.scratch.drain(..) {
            let reason = if batch.len() >= self.max_records {
                CloseReason::Count
            } else {
                CloseReason::Bytes
            };
            closed.push((batch, reason));
        }
        if self.boundaries.front() == Some(&at) {
            self.boundaries.pop_front();
            self.close_here(CloseReason::AtBoundary, closed);
        }
    }

    fn close_here(&mut self, reason: CloseReason, closed: &mut Vec<Closed<I>>) {
        let batch = self.buffer.take();
        if !batch.is_empty() {
            closed.push((batch, reason));
        }
    }

    /// Takes the buffered items as a batch closed for `reason`, if any.
    pub(super) fn take(&mut self, reason: CloseReason) -> Option<Closed<I>> {
        let batch = self.buffer.take();
        (!batch.is_empty()).then_some((batch, reason))
    }

    /// When the buffer must flush by age: never while a stored boundary is ahead.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.boundaries.is_empty() {
            self.buffer.deadline()
        } else {
            None
        }
    }

    /// Whether the buffer may be flushed early (for age, pressure or a drain) without breaking a
    /// batch an earlier reader emitted.
    pub(super) fn may_flush(&self) -> bool {
        self.boundaries.is_empty()
    }

    /// Whether no batch is in flight or waiting.
    pub(super) fn is_idle(&self) -> bool {
        !self.in_flight && self.ready.is_empty()
    }
}
