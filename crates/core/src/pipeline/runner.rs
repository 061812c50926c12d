//! The runner task: owns every buffer, tracker and emit job of one pipeline.
//!
//! Over ~600 lines because it is one state machine (commands in, jobs out, acknowledgements back);
//! the lane (buffer, boundaries, close reasons) and the checkpoint writer live in modules of their own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::checkpoint::{CheckpointQueue, Resume, ShardCheckpointer};
use super::deliver::{Ack, Deliverer, Owners};
use super::lane::{CloseReason, Closed, Lane, ReadyBatch};
use super::{BufferFactory, Command, FinishMode, Pipeline, PipelineSettings};
use crate::batch::{Envelope, Origin};
use crate::dead_letter::{DeadLetterEntry, FailedStage};
use crate::error::PipelineError;
use crate::item::EmittedSize;
use crate::metrics::{MetricsSnapshot, PipelineMetrics};
use crate::record::{ItemPosition, Position, Record, ShardId};
use crate::stage::{Filter, Transformer};
use crate::tracker::ShardTracker;

type Reply = oneshot::Sender<Result<Option<Position>, PipelineError>>;

struct ShardState {
    tracker: ShardTracker,
    checkpointer: Arc<dyn ShardCheckpointer>,
    finishing: Option<Reply>,
    /// The progress last handed to the checkpoint writer: progress that did not move is not written
    /// again (each write is a conditional update of a lease table row).
    queued: (Option<Position>, Option<ItemPosition>),
    /// Items of this record up to this one were delivered by an earlier reader: not again.
    skip: Option<ItemPosition>,
    /// Boundaries stored by an earlier reader, to hand to the shard's lane when it is made.
    boundaries: Vec<ItemPosition>,
    /// Finishing without delivering the buffered tail (left to the next reader).
    tail_dropped: bool,
    /// The reader said it is at the shard's tip (the last page pushed held everything there was).
    caught_up: bool,
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
    closed_scratch: Vec<Closed<I>>,
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
                && !self.dead_in_flight
            {
                return Ok(());
            }
            let accepting = !self.closing
                && self.queued_batches < self.settings.max_queued_batches.max(1)
                && self.buffered_bytes + self.dead_bytes <= self.settings.max_buffered_bytes;
            let deadline = self
                .lanes
                .iter()
                .filter(|(k, _)| self.caught_up(k))
                .filter_map(|(_, l)| l.deadline())
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
                resume,
            } => self.open(shard, checkpointer, resume),
            Command::Push {
                shard,
                records,
                caught_up,
            } => self.push(shard, records, caught_up),
            Command::Finish { shard, mode, reply } => self.finish(shard, mode, reply),
            Command::Abandon { shard } => self.abandon(shard),
            Command::Shutdown => self.begin_close(),
        }
        self.spawn_dead_letters();
    }

    /// Whether the lane's shard is caught up (the shared lane: always; its batches are at least
    /// once anyway, and its age limit bounds their latency).
    fn caught_up(&self, lane_key: &ShardId) -> bool {
        self.settings.batch_across_shards || self.shards.get(lane_key).is_some_and(|s| s.caught_up)
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

    fn open(&mut self, shard: ShardId, checkpointer: Arc<dyn ShardCheckpointer>, resume: Resume) {
        if let Some(state) = self.shards.get_mut(&shard) {
            state.checkpointer = checkpointer;
            return;
        }
        let start = self.resume_ordinals.remove(&shard).unwrap_or(0);
        self.checkpoints.open(&shard, &resume, &checkpointer);
        // Cross-shard batches are not re-formed (their composition spans shards): their lanes
        // ignore boundaries, and so they are at least once.
        let boundaries = if self.settings.batch_across_shards {
            Vec::new()
        } else {
            let partial = resume.partial.clone();
            resume
                .boundaries
                .into_iter()
                .filter(|b| partial.as_ref().is_none_or(|p| b > p))
                .collect()
        };
        self.shards.insert(
            shard,
            ShardState {
                tracker: ShardTracker::starting_at(start),
                checkpointer,
                finishing: None,
                queued: (None, None),
                skip: resume.partial,
                boundaries,
                tail_dropped: false,
                caught_up: false,
            },
        );
    }

    fn push(&mut self, shard: ShardId, records: Vec<Record>, caught_up: bool) {
        let lane_key = self.lane_key(&shard);
        let Some(state) = self.shards.get_mut(&shard) else {
            tracing::error!(pipeline = %self.name, shard = %shard, records = records.len(), "records for a shard that is not open; dropped (not checkpointed)");
            return;
        };
        let max_records = self.settings.buffer.max_records;
        let lane = self
            .lanes
            .entry(lane_key.clone())
            .or_insert_with(|| Lane::new((self.buffer_factory)(self.settings.buffer), max_records));
        if !state.boundaries.is_empty() {
            lane.boundaries.extend(state.boundaries.drain(..));
        }
        state.caught_up = caught_up;
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
            // Past the record delivered in part by an earlier reader, nothing more is skipped.
            let skip_upto = match &state.skip {
                Some(s) if s.position == position => Some(s.index),
                Some(s) if s.position < position => {
                    state.skip = None;
                    None
                }
                _ => None,
            };
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
                    last_index: None,
                };
                self.dead_bytes += entry.data.len();
                self.dead_pending.push((entry, ack));
                continue;
            }
            transformed += self.scratch.len() as u64;
            let mut kept = 0u32;
            for (index, item) in self.scratch.drain(..).enumerate() {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                if skip_upto.is_some_and(|s| index <= s) {
                    continue;
                }
                if self.filters.iter().all(|f| f.keep(&item, rec)) {
                    let at = ItemPosition::new(position.clone(), index);
                    lane.push(
                        Envelope::with_index(item, origin.clone(), index),
                        at,
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
        let closed_bytes: usize = closed.iter().map(|(b, _)| batch_bytes(b)).sum();
        let bytes_after = lane.buffer.bytes();
        self.buffered_bytes =
            (self.buffered_bytes + bytes_after + closed_bytes).saturating_sub(bytes_before);
        for batch in closed {
            self.enqueue(&lane_key, batch);
        }
        // Filtered-only records may have advanced the checkpoint already.
        self.after_progress(&shard);
        while self.buffered_bytes > self.settings.max_buffered_bytes {
            // The oldest lane, caught-up lanes first (their flush cannot cut a batch an earlier
            // reader emitted); one still reading a backlog only when no caught-up lane holds bytes.
            let oldest = self
                .lanes
                .iter()
                .filter(|(_, l)| l.may_flush())
                .filter_map(|(k, l)| {
                    l.buffer
                        .deadline()
                        .map(|d| (!self.caught_up(k), d, k.clone()))
                })
                .min();
            match oldest {
                Some((_, _, key)) => self.flush_lane(&key, CloseReason::Pressure),
                // Only lanes re-forming stored batches hold bytes: intake waits for them.
                None => break,
            }
        }
        self.publish_gauge();
    }

    /// Moves a closed batch of `lane` to its ready queue. `buffered_bytes` must already count it.
    fn enqueue(&mut self, lane_key: &ShardId, (batch, reason): Closed<I>) {
        if batch.is_empty() {
            return;
        }
        reason.count(&self.metrics);
        let bytes = batch_bytes(&batch);
        self.buffered_bytes = self.buffered_bytes.saturating_sub(bytes);
        let shared = self.settings.batch_across_shards;
        let Some(lane) = self.lanes.get_mut(lane_key) else {
            return;
        };
        let boundary = (reason.needs_boundary() && !shared)
            .then(|| batch.last().map(Envelope::item_position))
            .flatten();
        lane.ready.push_back(ReadyBatch {
            items: batch,
            bytes,
            boundary,
        });
        self.queued_batches += 1;
        if !lane.in_flight && !lane.scheduled {
            lane.scheduled = true;
            self.schedule.push_back(lane_key.clone());
        }
    }

    fn flush_lane(&mut self, lane_key: &ShardId, reason: CloseReason) {
        let Some(lane) = self.lanes.get_mut(lane_key) else {
            return;
        };
        if let Some(closed) = lane.take(reason) {
            self.enqueue(lane_key, closed);
        }
    }

    fn flush_expired(&mut self, now: Instant) {
        let expired: Vec<ShardId> = self
            .lanes
            .iter()
            .filter(|(k, l)| self.caught_up(k) && l.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.flush_lane(&key, CloseReason::Age);
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
            let Some(batch) = lane.ready.pop_front() else {
                continue;
            };
            lane.in_flight = true;
            self.queued_batches -= 1;
            self.in_flight += 1;
            let owners = self.owners(&batch.items);
            let deliverer = self.deliverer.clone();
            let checkpoints = self.checkpoints.clone();
            self.jobs.spawn(async move {
                let result = emit_job(&deliverer, &checkpoints, batch, &owners).await;
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
            if owners.iter().any(|(s, _)| s == shard) {
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
                state.tracker.ack(ack.ordinal, ack.count, ack.last_index);
                if !touched.contains(&ack.shard) {
                    touched.push(ack.shard);
                }
            }
        }
        for shard in touched {
            self.after_progress(&shard);
        }
        if let JobKind::Emit(key) = &done.kind
            && !self.settings.batch_across_shards
        {
            self.check_finish(key);
        }
        self.publish_gauge();
        Ok(())
    }

    /// Queues the shard's newest progress and completes a pending finish when drained.
    fn after_progress(&mut self, shard: &ShardId) {
        let Some(state) = self.shards.get_mut(shard) else {
            return;
        };
        let now = (state.tracker.delivered().cloned(), state.tracker.partial());
        if (now.0.is_some() || now.1.is_some()) && state.queued != now && state.tracker.aligned() {
            state.queued = now.clone();
            self.checkpoints
                .put(shard, now.0, now.1, &state.checkpointer);
        }
        self.check_finish(shard);
    }

    /// Completes a pending finish once the shard is drained (or, its tail dropped, idle).
    fn check_finish(&mut self, shard: &ShardId) {
        let Some(state) = self.shards.get(shard) else {
            return;
        };
        if state.finishing.is_none() {
            return;
        }
        let done = state.tracker.is_drained()
            || (state.tail_dropped
                && self
                    .lanes
                    .get(&self.lane_key(shard))
                    .is_none_or(Lane::is_idle));
        if done {
            self.complete_finish(shard);
        }
    }

    fn finish(&mut self, shard: ShardId, mode: FinishMode, reply: Reply) {
        let lane_key = self.lane_key(&shard);
        let Some(state) = self.shards.get_mut(&shard) else {
            let _ = reply.send(Err(PipelineError::UnknownShard(shard.to_string())));
            return;
        };
        state.finishing = Some(reply);
        let keeps_boundary = self.lanes.get(&lane_key).is_some_and(|l| !l.may_flush())
            || !state.boundaries.is_empty();
        let caught_up = state.caught_up || self.settings.batch_across_shards;
        if mode == FinishMode::HandOff && (keeps_boundary || !caught_up) {
            // Emitting the buffered items now could cut a batch short that an earlier reader
            // emitted whole (by count, or up to a stored boundary not reached yet), under another
            // identity. They are left to the next reader, which re-forms that batch (the checkpoint
            // stays before them). A caught-up shard's tail is flushed (its boundary stored).
            let Some(state) = self.shards.get_mut(&shard) else {
                return;
            };
            state.tail_dropped = true;
            if let Some(lane) = self.lanes.get_mut(&lane_key) {
                let dropped = lane.buffer.take();
                self.buffered_bytes = self.buffered_bytes.saturating_sub(batch_bytes(&dropped));
                tracing::info!(pipeline = %self.name, shard = %shard, items = dropped.len(), "shard handed off; its buffered items are left to the next reader");
            }
        } else {
            self.flush_lane(&lane_key, CloseReason::Drain);
        }
        self.check_finish(&shard);
        self.publish_gauge();
    }

    fn complete_finish(&mut self, shard: &ShardId) {
        let Some(state) = self.shards.remove(shard) else {
            return;
        };
        self.resume_ordinals
            .insert(shard.clone(), state.tracker.next_ordinal());
        if !self.settings.batch_across_shards && self.lanes.get(shard).is_none_or(Lane::is_idle) {
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
            lane.boundaries.clear();
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
            let at = e.item_position();
            lane.push(e, at, now, &mut closed);
        }
        let after = lane.buffer.bytes() + closed.iter().map(|(b, _)| batch_bytes(b)).sum::<usize>();
        self.buffered_bytes = (self.buffered_bytes + after).saturating_sub(before);
        let ready = std::mem::take(&mut lane.ready);
        self.queued_batches -= ready.len();
        for batch in ready {
            let kept: Vec<_> = batch
                .items
                .into_iter()
                .filter(|e| &e.record().shard_id != shard)
                .collect();
            let bytes = batch_bytes(&kept);
            self.buffered_bytes += bytes;
            self.enqueue(&key, (kept, CloseReason::Drain));
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
            let caught_up = self.caught_up(&key);
            match self.lanes.get_mut(&key) {
                Some(lane) if !lane.may_flush() || !caught_up => {
                    // As in a hand-off: left to the next reader, which re-forms the stored batch.
                    let dropped = lane.buffer.take();
                    self.buffered_bytes = self.buffered_bytes.saturating_sub(batch_bytes(&dropped));
                }
                Some(_) => self.flush_lane(&key, CloseReason::Drain),
                None => {}
            }
        }
    }

    fn publish_gauge(&self) {
        let held: usize = self.buffered_bytes
            + self
                .lanes
                .values()
                .flat_map(|l| l.ready.iter().map(|b| b.bytes))
                .sum::<usize>();
        self.metrics
            .buffered_bytes
            .store(held as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One emit job: store the batch's boundary when it needs one, then deliver it. A boundary the store
/// refuses (the lease was lost) leaves the batch unemitted and unacknowledged: the shard is another
/// worker's, which re-forms it.
async fn emit_job<I: Send + Sync + 'static>(
    deliverer: &Deliverer<I>,
    checkpoints: &CheckpointQueue,
    batch: ReadyBatch<I>,
    owners: &Owners,
) -> Result<Vec<Ack>, PipelineError> {
    if let Some(boundary) = batch.boundary
        && let Some(first) = batch.items.first()
    {
        let shard = first.record().shard_id.clone();
        let Some((_, to)) = owners.iter().find(|(s, _)| *s == shard) else {
            return Ok(Vec::new());
        };
        if !to.stores_resume() {
            return deliverer.deliver(batch.items, owners).await;
        }
        match checkpoints.add_boundary(&shard, boundary, to).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(pipeline = %deliverer.pipeline, shard = %shard, error = %e, "batch boundary not stored; the batch is left to the shard's next reader");
                return Ok(Vec::new());
            }
            Err(_) => return Ok(Vec::new()),
        }
    }
    deliverer.deliver(batch.items, owners).await
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
