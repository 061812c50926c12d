//! The runner task: owns every buffer, tracker and emit job of one pipeline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::checkpoint::{CheckpointQueue, ShardCheckpointer};
use super::deliver::{Ack, Deliverer, Owners};
use super::{BufferFactory, Command, Pipeline, PipelineSettings};
use crate::batch::{Envelope, Origin};
use crate::buffer::Buffer;
use crate::dead_letter::{DeadLetterEntry, FailedStage};
use crate::error::PipelineError;
use crate::item::EmittedSize;
use crate::metrics::{MetricsSnapshot, PipelineMetrics};
use crate::record::{Position, Record, ShardId};
use crate::stage::{Filter, Transformer};
use crate::tracker::ShardTracker;

type Reply = oneshot::Sender<Result<Option<Position>, PipelineError>>;

struct ShardState {
    tracker: ShardTracker,
    checkpointer: Arc<dyn ShardCheckpointer>,
    finishing: Option<Reply>,
    /// The position last handed to the checkpoint writer: a position that did not move is not
    /// written again (each write is a conditional update of a lease table row).
    queued: Option<Position>,
}

struct Lane<I> {
    buffer: Box<dyn Buffer<I>>,
    ready: VecDeque<(Vec<Envelope<I>>, usize)>,
    in_flight: bool,
    scheduled: bool,
}

/// What a finished job was.
enum JobKind {
    /// An emit job of this lane.
    Emit(ShardId),
    /// A dead-letter job for records the transformer rejected, holding this many bytes of data.
    DeadLetter { bytes: usize },
}

struct JobDone {
    kind: JobKind,
    result: Result<Vec<Ack>, PipelineError>,
}

/// The lane key shared by all shards when batching across shards (no shard id is empty).
fn shared_lane() -> ShardId {
    Arc::from("")
}

pub(crate) struct Runner<I> {
    name: Arc<str>,
    transformer: Arc<dyn Transformer<I>>,
    filters: Vec<Arc<dyn Filter<I>>>,
    settings: PipelineSettings,
    buffer_factory: BufferFactory<I>,
    metrics: Arc<PipelineMetrics>,
    deliverer: Arc<Deliverer<I>>,
    rx: mpsc::Receiver<Command>,

    shards: HashMap<ShardId, ShardState>,
    /// Next ordinal of shards that were abandoned, so a re-opened shard never reuses one.
    resume_ordinals: HashMap<ShardId, u64>,
    lanes: HashMap<ShardId, Lane<I>>,
    schedule: VecDeque<ShardId>,
    jobs: JoinSet<JobDone>,
    in_flight: usize,
    queued_batches: usize,
    buffered_bytes: usize,
    /// Entries of records the transformer rejected, waiting for the dead-letter job.
    dead_pending: Vec<(DeadLetterEntry, Ack)>,
    /// Data bytes of `dead_pending` and of the dead-letter job in flight: they count against
    /// `max_buffered_bytes` like buffered items, so a slow dead-letter target stops intake.
    dead_bytes: usize,
    /// Whether a dead-letter job is running (one at a time).
    dead_in_flight: bool,
    checkpoints: Arc<CheckpointQueue>,
    writer: Option<JoinHandle<()>>,
    scratch: Vec<I>,
    closed_scratch: Vec<Vec<Envelope<I>>>,
    closing: bool,
}

impl<I: EmittedSize + Send + Sync + 'static> Runner<I> {
    pub(crate) fn new(p: Pipeline<I>, rx: mpsc::Receiver<Command>) -> Self {
        let checkpoints = Arc::new(CheckpointQueue::default());
        let writer = tokio::spawn(
            checkpoints
                .clone()
                .run(p.metrics.clone(), p.settings.retry.clone()),
        );
        let deliverer = Arc::new(Deliverer {
            pipeline: p.name.clone(),
            emitter: p.emitter,
            dead_letter: p.dead_letter,
            retry: p.settings.retry.clone(),
            metrics: p.metrics.clone(),
        });
        Self {
            name: p.name,
            transformer: p.transformer,
            filters: p.filters,
            settings: p.settings,
            buffer_factory: p.buffer_factory,
            metrics: p.metrics,
            deliverer,
            rx,
            shards: HashMap::new(),
            resume_ordinals: HashMap::new(),
            lanes: HashMap::new(),
            schedule: VecDeque::new(),
            jobs: JoinSet::new(),
            in_flight: 0,
            queued_batches: 0,
            buffered_bytes: 0,
            dead_pending: Vec::new(),
            dead_bytes: 0,
            dead_in_flight: false,
            checkpoints,
            writer: Some(writer),
            scratch: Vec::new(),
            closed_scratch: Vec::new(),
            closing: false,
        }
    }

    pub(crate) async fn run(mut self) -> Result<MetricsSnapshot, PipelineError> {
        let result = self.run_loop().await;
        self.checkpoints.close();
        if result.is_ok() {
            if let Some(writer) = self.writer.take() {
                let _ = writer.await;
            }
            if let Err(e) = self.deliverer.emitter.close().await {
                tracing::warn!(pipeline = %self.name, error = %e, "emitter close failed");
            }
        } else if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        result.map(|()| self.metrics.snapshot())
    }

    async fn run_loop(&mut self) -> Result<(), PipelineError> {
        loop {
            self.dispatch();
            if self.closing
                && self.jobs.is_empty()
                && self.queued_batches == 0
                && self.dead_pending.is_empty()
            {
                return Ok(());
            }
            let accepting = !self.closing
                && self.queued_batches < self.settings.max_queued_batches.max(1)
                && self.buffered_bytes + self.dead_bytes <= self.settings.max_buffered_bytes;
            let deadline = self
                .lanes
                .values()
                .filter_map(|l| l.buffer.deadline())
                .min();
            tokio::select! {
                biased;
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    match done {
                        Ok(done) => self.on_done(done)?,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => return Err(PipelineError::Closed),
                    }
                }
                cmd = self.rx.recv(), if accepting => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => self.begin_close(),
                },
                () = sleep_until(deadline), if deadline.is_some() => self.flush_expired(Instant::now()),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Open {
                shard,
                checkpointer,
            } => self.open(shard, checkpointer),
            Command::Push { shard, records } => self.push(shard, records),
            Command::Finish { shard, reply } => self.finish(shard, reply),
            Command::Abandon { shard } => self.abandon(shard),
            Command::Shutdown => self.begin_close(),
        }
        self.spawn_dead_letters();
    }

    /// Whether a lane still serves an open shard (the shared lane always does).
    fn lane_in_use(&self, key: &ShardId) -> bool {
        self.settings.batch_across_shards || self.shards.contains_key(key)
    }

    fn lane_key(&self, shard: &ShardId) -> ShardId {
        if self.settings.batch_across_shards {
            shared_lane()
        } else {
            shard.clone()
        }
    }

    fn open(&mut self, shard: ShardId, checkpointer: Arc<dyn ShardCheckpointer>) {
        if let Some(state) = self.shards.get_mut(&shard) {
            state.checkpointer = checkpointer;
            return;
        }
        let start = self.resume_ordinals.remove(&shard).unwrap_or(0);
        self.shards.insert(
            shard,
            ShardState {
                tracker: ShardTracker::starting_at(start),
                checkpointer,
                finishing: None,
                queued: None,
            },
        );
    }

    fn push(&mut self, shard: ShardId, records: Vec<Record>) {
        let lane_key = self.lane_key(&shard);
        let Some(state) = self.shards.get_mut(&shard) else {
            tracing::error!(pipeline = %self.name, shard = %shard, records = records.len(), "records for a shard that is not open; dropped (not checkpointed)");
            return;
        };
        let lane = self.lanes.entry(lane_key.clone()).or_insert_with(|| Lane {
            buffer: (self.buffer_factory)(self.settings.buffer),
            ready: VecDeque::new(),
            in_flight: false,
            scheduled: false,
        });
        let now = Instant::now();
        let bytes_before = lane.buffer.bytes();
        let n_records = records.len() as u64;
        let mut transformed = 0u64;
        let mut filtered = 0u64;
        let closed = &mut self.closed_scratch;
        for record in records {
            let ordinal = state.tracker.next_ordinal();
            let origin = Origin::tracked(record, ordinal);
            let rec = origin.record();
            let position = rec.position.clone();
            self.scratch.clear();
            if let Err(e) = self.transformer.transform(rec, &mut self.scratch) {
                self.scratch.clear();
                state.tracker.track(position, 1);
                PipelineMetrics::add(&self.metrics.transform_failures, 1);
                let entry = DeadLetterEntry::new(&self.name, rec, FailedStage::Transform, e.reason);
                let ack = Ack {
                    shard: shard.clone(),
                    ordinal,
                    count: 1,
                    last_index: 0,
                };
                self.dead_bytes += entry.data.len();
                self.dead_pending.push((entry, ack));
                continue;
            }
            transformed += self.scratch.len() as u64;
            let mut kept = 0u32;
            for (index, item) in self.scratch.drain(..).enumerate() {
                if self.filters.iter().all(|f| f.keep(&item, rec)) {
                    let index = u32::try_from(index).unwrap_or(u32::MAX);
                    lane.buffer.push(
                        Envelope::with_index(item, origin.clone(), index),
                        now,
                        closed,
                    );
                    kept += 1;
                } else {
                    filtered += 1;
                }
            }
            state.tracker.track(position, kept);
        }
        PipelineMetrics::add(&self.metrics.records_in, n_records);
        PipelineMetrics::add(&self.metrics.items_transformed, transformed);
        PipelineMetrics::add(&self.metrics.items_filtered, filtered);
        let closed: Vec<_> = self.closed_scratch.drain(..).collect();
        let closed_bytes: usize = closed.iter().map(|b| batch_bytes(b)).sum();
        let bytes_after = lane.buffer.bytes();
        self.buffered_bytes =
            (self.buffered_bytes + bytes_after + closed_bytes).saturating_sub(bytes_before);
        for batch in closed {
            self.enqueue(&lane_key, batch);
        }
        // Filtered-only records may have advanced the checkpoint already.
        self.after_progress(&shard);
        while self.buffered_bytes > self.settings.max_buffered_bytes {
            let oldest = self
                .lanes
                .iter()
                .filter_map(|(k, l)| l.buffer.deadline().map(|d| (d, k.clone())))
                .min();
            match oldest {
                Some((_, key)) => self.flush_lane(&key),
                None => break,
            }
        }
        self.publish_gauge();
    }

    /// Moves a closed batch of `lane` to its ready queue. `buffered_bytes` must already count it.
    fn enqueue(&mut self, lane_key: &ShardId, batch: Vec<Envelope<I>>) {
        if batch.is_empty() {
            return;
        }
        let bytes = batch_bytes(&batch);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
        let Some(lane) = self.lanes.get_mut(lane_key) else {
            return;
        };
        lane.ready.push_back((batch, bytes));
        self.queued_batches += 1;
        if !lane.in_flight && !lane.scheduled {
            lane.scheduled = true;
            self.schedule.push_back(lane_key.clone());
        }
    }

    fn flush_lane(&mut self, lane_key: &ShardId) {
        let Some(lane) = self.lanes.get_mut(lane_key) else {
            return;
        };
        let batch = lane.buffer.take();
        self.enqueue(lane_key, batch);
    }

    fn flush_expired(&mut self, now: Instant) {
        let expired: Vec<ShardId> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.buffer.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.flush_lane(&key);
        }
        self.publish_gauge();
    }

    /// Starts emit jobs while slots are free: one per lane at a time, lanes in turn.
    fn dispatch(&mut self) {
        while self.in_flight < self.settings.max_in_flight.max(1) {
            let Some(key) = self.schedule.pop_front() else {
                return;
            };
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            lane.scheduled = false;
            if lane.in_flight {
                continue;
            }
            let Some((batch, _)) = lane.ready.pop_front() else {
                continue;
            };
            lane.in_flight = true;
            self.queued_batches -= 1;
            self.in_flight += 1;
            let owners = self.owners(&batch);
            let deliverer = self.deliverer.clone();
            self.jobs.spawn(async move {
                let result = deliverer.deliver(batch, &owners).await;
                JobDone {
                    kind: JobKind::Emit(key),
                    result,
                }
            });
        }
    }

    /// The checkpointers of the shards in `batch` (which say how long each may still be delivered).
    fn owners(&self, batch: &[Envelope<I>]) -> Owners {
        let mut owners: Owners = Vec::new();
        for e in batch {
            let shard = &e.record().shard_id;
            if owners.last().is_some_and(|(s, _)| s == shard)
                || owners.iter().any(|(s, _)| s == shard)
            {
                continue;
            }
            if let Some(state) = self.shards.get(shard) {
                owners.push((shard.clone(), state.checkpointer.clone()));
            }
        }
        owners
    }

    /// Starts the dead-letter job for pending entries unless one is running.
    fn spawn_dead_letters(&mut self) {
        if self.dead_in_flight || self.dead_pending.is_empty() {
            return;
        }
        let (entries, acks): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.dead_pending).into_iter().unzip();
        let bytes = entries.iter().map(|e| e.data.len()).sum();
        self.dead_in_flight = true;
        let deliverer = self.deliverer.clone();
        self.jobs.spawn(async move {
            let result = deliverer.dead_letter(&entries).await.map(|()| acks);
            JobDone {
                kind: JobKind::DeadLetter { bytes },
                result,
            }
        });
    }

    fn on_done(&mut self, done: JobDone) -> Result<(), PipelineError> {
        let acks = done.result?;
        match &done.kind {
            JobKind::Emit(key) => {
                self.in_flight -= 1;
                let open = self.lane_in_use(key);
                if let Some(lane) = self.lanes.get_mut(key) {
                    lane.in_flight = false;
                    if !lane.ready.is_empty() && !lane.scheduled {
                        lane.scheduled = true;
                        self.schedule.push_back(key.clone());
                    } else if !open && lane.ready.is_empty() && lane.buffer.is_empty() {
                        // The lane of an abandoned shard, kept only until its last job ended.
                        self.lanes.remove(key);
                    }
                }
            }
            JobKind::DeadLetter { bytes } => {
                self.dead_in_flight = false;
                self.dead_bytes = self.dead_bytes.saturating_sub(*bytes);
                self.spawn_dead_letters();
            }
        }
        let mut touched: Vec<ShardId> = Vec::new();
        for ack in acks {
            if let Some(state) = self.shards.get_mut(&ack.shard) {
                state.tracker.ack(ack.ordinal, ack.count);
                if touched.last() != Some(&ack.shard) {
                    touched.push(ack.shard);
                }
            }
        }
        touched.dedup();
        for shard in touched {
            self.after_progress(&shard);
        }
        self.publish_gauge();
        Ok(())
    }

    /// Queues the shard's newest delivered position and completes a pending finish when drained.
    fn after_progress(&mut self, shard: &ShardId) {
        let Some(state) = self.shards.get_mut(shard) else {
            return;
        };
        if let Some(pos) = state.tracker.delivered()
            && state.queued.as_ref() != Some(pos)
        {
            state.queued = Some(pos.clone());
            self.checkpoints
                .put(shard.clone(), pos.clone(), state.checkpointer.clone());
        }
        if state.finishing.is_some() && state.tracker.is_drained() {
            self.complete_finish(shard);
        }
    }

    fn finish(&mut self, shard: ShardId, reply: Reply) {
        let lane_key = self.lane_key(&shard);
        let Some(state) = self.shards.get_mut(&shard) else {
            let _ = reply.send(Err(PipelineError::UnknownShard(shard.to_string())));
            return;
        };
        state.finishing = Some(reply);
        self.flush_lane(&lane_key);
        if self
            .shards
            .get(&shard)
            .is_some_and(|s| s.tracker.is_drained())
        {
            self.complete_finish(&shard);
        }
        self.publish_gauge();
    }

    fn complete_finish(&mut self, shard: &ShardId) {
        let Some(state) = self.shards.remove(shard) else {
            return;
        };
        self.resume_ordinals
            .insert(shard.clone(), state.tracker.next_ordinal());
        if !self.settings.batch_across_shards {
            self.lanes.remove(shard);
        }
        if let Some(reply) = state.finishing {
            self.checkpoints
                .barrier(shard.clone(), state.tracker.delivered().cloned(), reply);
        }
    }

    fn abandon(&mut self, shard: ShardId) {
        let Some(state) = self.shards.remove(&shard) else {
            return;
        };
        self.resume_ordinals
            .insert(shard.clone(), state.tracker.next_ordinal());
        self.checkpoints.forget(&shard);
        if let Some(reply) = state.finishing {
            let _ = reply.send(Err(PipelineError::LeaseLost {
                shard: shard.to_string(),
                message: "shard abandoned while finishing".into(),
            }));
        }
        if self.settings.batch_across_shards {
            self.drop_from_shared_lane(&shard);
        } else if let Some(lane) = self.lanes.get_mut(&shard) {
            self.buffered_bytes = self.buffered_bytes.saturating_sub(lane.buffer.bytes());
            drop(lane.buffer.take());
            self.queued_batches -= lane.ready.len();
            lane.ready.clear();
            // A batch already in flight completes; its acknowledgements are ignored (the tracker is
            // gone, and a re-opened shard's ordinals continue past them). The lane stays until then,
            // so a re-opened shard cannot have a second batch in flight beside it.
            if !lane.in_flight {
                self.lanes.remove(&shard);
            }
        }
        tracing::info!(pipeline = %self.name, shard = %shard, "shard abandoned; its buffered records are dropped");
        self.publish_gauge();
    }

    /// Removes one shard's items from the shared lane's buffer and ready batches.
    fn drop_from_shared_lane(&mut self, shard: &ShardId) {
        let key = shared_lane();
        let Some(lane) = self.lanes.get_mut(&key) else {
            return;
        };
        let buffered = lane.buffer.take();
        let before = batch_bytes(&buffered);
        let mut closed = Vec::new();
        let now = Instant::now();
        for e in buffered
            .into_iter()
            .filter(|e| &e.record().shard_id != shard)
        {
            lane.buffer.push(e, now, &mut closed);
        }
        let after = lane.buffer.bytes() + closed.iter().map(|b| batch_bytes(b)).sum::<usize>();
        self.buffered_bytes = (self.buffered_bytes + after).saturating_sub(before);
        let ready = std::mem::take(&mut lane.ready);
        self.queued_batches -= ready.len();
        for (batch, _) in ready {
            let kept: Vec<_> = batch
                .into_iter()
                .filter(|e| &e.record().shard_id != shard)
                .collect();
            let bytes = batch_bytes(&kept);
            self.buffered_bytes += bytes;
            self.enqueue(&key, kept);
        }
        for batch in closed {
            self.enqueue(&key, batch);
        }
    }

    fn begin_close(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        let keys: Vec<ShardId> = self.lanes.keys().cloned().collect();
        for key in keys {
            self.flush_lane(&key);
        }
    }

    fn publish_gauge(&self) {
        let held: usize = self.buffered_bytes
            + self
                .lanes
                .values()
                .flat_map(|l| l.ready.iter().map(|(_, b)| *b))
                .sum::<usize>();
        self.metrics
            .buffered_bytes
            .store(held as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

fn batch_bytes<I: EmittedSize>(batch: &[Envelope<I>]) -> usize {
    batch.iter().map(|e| e.item.emitted_size()).sum()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
