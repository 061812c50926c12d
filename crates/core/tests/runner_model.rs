//! A model-based test of the pipeline runner: random fan-out (0 to 3× `max_records` items per
//! record), random buffer limits, random per-item retryable and permanent failures, whole-batch
//! failures, transformer rejects, and random lease loss (the shard taken by another worker, or its
//! lease expired here) followed by the lease coming back and the records since the last checkpoint
//! being read again.
//!
//! What must hold, whatever happens:
//! * no checkpoint passes an item that was neither acknowledged by the emitter nor dead-lettered;
//! * the emitter never has two batches of one shard in flight;
//! * no emit of a shard's items starts while its lease is expired here;
//! * a batch identity (its shard ranges of item positions) always names the same items: two batches
//!   with different items never share an identity, within a run or across a redelivery;
//! * at the end every item was delivered or dead-lettered, and each shard is checkpointed at its last
//!   record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{
    Batch, BufferLimits, CheckpointError, DeadLetter, DeadLetterEntry, DeadLetterError, EmitError,
    EmitOutcome, EmittedSize, Emitter, Fence, FilterFn, ItemFailure, ItemPosition, Pipeline,
    PipelineSettings, Position, Record, Resume, RetryPolicy, ShardCheckpointer, ShardId,
    ShardProgress, TransformError, TransformFn, async_trait,
};
use proptest::prelude::*;
use tokio::time::Instant;

/// An item: which record of which shard it comes from, its index, and its emitted size.
#[derive(Clone, Debug)]
struct It {
    shard: &'static str,
    rec: u64,
    index: u32,
    size: usize,
}

impl EmittedSize for It {
    fn emitted_size(&self) -> usize {
        self.size
    }
}

type Key = (&'static str, u64, u32);
/// A batch's identity: its shard ranges of item positions.
type Identity = Vec<(String, ItemPosition, ItemPosition)>;

const SHARDS: [&str; 3] = ["s0", "s1", "s2"];

/// Deterministic per-case choices.
fn mix(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for v in [a, b, c] {
        h ^= v
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    h ^ (h >> 33)
}

/// How the case's records and failures are made.
#[derive(Clone, Debug)]
struct World {
    seed: u64,
    max_records: usize,
    /// Percent of item attempts that fail retryably, and permanently.
    retry_pct: u64,
    perm_pct: u64,
    /// Percent of emit calls that fail as a whole (retryably).
    whole_pct: u64,
}

impl World {
    fn items_of(&self, shard: usize, rec: u64) -> u32 {
        (mix(self.seed, shard as u64, rec, 1) % (3 * self.max_records as u64 + 1)) as u32
    }
    fn transform_fails(&self, shard: usize, rec: u64) -> bool {
        mix(self.seed, shard as u64, rec, 2).is_multiple_of(23)
    }
    fn filtered(&self, rec: u64, index: u32) -> bool {
        mix(self.seed, rec, u64::from(index), 3).is_multiple_of(9)
    }
    fn size(&self, rec: u64, index: u32) -> usize {
        1 + (mix(self.seed, rec, u64::from(index), 4) % 40) as usize
    }
}

fn shard_index(shard: &str) -> usize {
    SHARDS.iter().position(|s| *s == shard).unwrap()
}

fn rec_of(position: &Position) -> u64 {
    // testing::sequence(n) ends with n zero-padded to 22 digits.
    let s = position.sequence.as_str();
    s[s.len() - 22..].parse().unwrap()
}

/// What the model saw; every check that fails is recorded here.
#[derive(Default)]
struct Model {
    delivered: HashSet<Key>,
    dead: HashSet<Key>,
    in_flight: HashMap<&'static str, usize>,
    fenced: HashSet<&'static str>,
    identities: HashMap<Identity, Vec<Key>>,
    checkpoints: BTreeMap<&'static str, u64>,
    /// What each shard's store holds (the last accepted save).
    stored: HashMap<&'static str, ShardProgress>,
    /// The identities each item was written under (effectively once: one).
    written_under: HashMap<Key, HashSet<Identity>>,
    violations: Vec<String>,
    emit_calls: u64,
}

struct Shared {
    world: World,
    model: Mutex<Model>,
}

impl Shared {
    fn expected(&self, shard: &'static str, rec: u64) -> Vec<Key> {
        let s = shard_index(shard);
        if self.world.transform_fails(s, rec) {
            return vec![(shard, rec, u32::MAX)];
        }
        (0..self.world.items_of(s, rec))
            .filter(|i| !self.world.filtered(rec, *i))
            .map(|i| (shard, rec, i))
            .collect()
    }
}

struct ModelEmitter(Arc<Shared>);

/// Counts a shard's batch as in flight until dropped (an emit given up at its fence is dropped).
struct InFlight(Arc<Shared>, Vec<&'static str>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.0.model.lock().unwrap();
        for s in &self.1 {
            *m.in_flight.entry(s).or_default() -= 1;
        }
    }
}

#[async_trait]
impl Emitter<It> for ModelEmitter {
    async fn emit(&self, batch: &Batch<It>) -> Result<EmitOutcome, EmitError> {
        let shared = &self.0;
        let shards: Vec<&'static str> = {
            let mut v: Vec<&'static str> = batch.items.iter().map(|e| e.item.shard).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let call = {
            let mut m = shared.model.lock().unwrap();
            m.emit_calls += 1;
            for s in &shards {
                let n = m.in_flight.entry(s).or_default();
                *n += 1;
                if *n > 1 {
                    let v = format!("two batches of shard {s} in flight");
                    m.violations.push(v);
                }
                if m.fenced.contains(s) {
                    let v = format!("an emit of shard {s} started while its lease was expired");
                    m.violations.push(v);
                }
            }
            if batch.context.attempt == 0 {
                let id: Identity = batch
                    .context
                    .shards
                    .iter()
                    .map(|r| (r.shard.to_string(), r.first.clone(), r.last.clone()))
                    .collect();
                let mut items: Vec<Key> = batch
                    .items
                    .iter()
                    .map(|e| (e.item.shard, e.item.rec, e.item.index))
                    .collect();
                items.sort_unstable();
                match m.identities.get(&id) {
                    Some(seen) if *seen != items => {
                        let v = format!("identity {id:?} named two different batches");
                        m.violations.push(v);
                    }
                    Some(_) => {}
                    None => {
                        m.identities.insert(id, items);
                    }
                }
            }
            m.emit_calls
        };
        let _guard = InFlight(shared.clone(), shards);
        // Let other jobs, pushes and lease changes interleave with this emit.
        tokio::time::sleep(Duration::from_millis(
            mix(shared.world.seed, call, 0, 5) % 7,
        ))
        .await;
        let w = &shared.world;
        if mix(w.seed, call, 0, 6) % 100 < w.whole_pct {
            return Err(EmitError::retryable("503 whole batch"));
        }
        let mut failures = Vec::new();
        let mut m = shared.model.lock().unwrap();
        let identity: Identity = batch
            .context
            .shards
            .iter()
            .map(|r| (r.shard.to_string(), r.first.clone(), r.last.clone()))
            .collect();
        for (i, e) in batch.items.iter().enumerate() {
            let roll = mix(w.seed, e.item.rec * 1000 + u64::from(e.item.index), call, 7) % 100;
            if roll < w.retry_pct {
                failures.push(ItemFailure::retryable(i, "throttled"));
            } else if roll < w.retry_pct + w.perm_pct {
                failures.push(ItemFailure::permanent(i, "refused"));
            } else {
                let k = (e.item.shard, e.item.rec, e.item.index);
                m.delivered.insert(k);
                m.written_under
                    .entry(k)
                    .or_default()
                    .insert(identity.clone());
            }
        }
        Ok(EmitOutcome::with_failures(failures))
    }
}

struct ModelDeadLetter(Arc<Shared>);

#[async_trait]
impl DeadLetter for ModelDeadLetter {
    async fn write(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut m = self.0.model.lock().unwrap();
        for e in entries {
            let shard = SHARDS[shard_index(&e.shard)];
            m.dead
                .insert((shard, rec_of(&e.position()), e.item.unwrap_or(u32::MAX)));
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "model".into()
    }
}

/// One lease generation's checkpointer: checks every checkpoint against what was delivered.
struct ModelCheckpointer {
    shared: Arc<Shared>,
    shard: &'static str,
    /// Some: the lease store bounds delivery (a fence far ahead until `expired`).
    leased: bool,
    expired: AtomicBool,
    /// The lease moved on: the store refuses this generation's checkpoints (it still may not pass an
    /// undelivered item).
    revoked: AtomicBool,
}

#[async_trait]
impl ShardCheckpointer for ModelCheckpointer {
    async fn checkpoint(&self, position: &Position) -> Result<(), CheckpointError> {
        self.save(&ShardProgress {
            delivered: Some(position.clone()),
            resume: Resume::default(),
        })
        .await
    }

    async fn save(&self, progress: &ShardProgress) -> Result<(), CheckpointError> {
        // Stores are slow: a lease lost meanwhile leaves batches written but not checkpointed (what
        // a crash between emit and checkpoint leaves).
        let rec = progress.delivered.as_ref().map_or(0, rec_of);
        let lag = mix(
            self.shared.world.seed,
            rec,
            progress.resume.boundaries.len() as u64,
            8,
        ) % 6;
        tokio::time::sleep(Duration::from_millis(lag)).await;
        let mut missing = Vec::new();
        {
            let m = self.shared.model.lock().unwrap();
            let covered = |k: &Key| m.delivered.contains(k) || m.dead.contains(k);
            for r in 1..=rec {
                missing.extend(
                    self.shared
                        .expected(self.shard, r)
                        .into_iter()
                        .filter(|k| !covered(k)),
                );
            }
            if let Some(p) = &progress.resume.partial {
                let r = rec_of(&p.position);
                missing.extend(
                    self.shared
                        .expected(self.shard, r)
                        .into_iter()
                        .filter(|k| k.2 <= p.index && !covered(k)),
                );
            }
        }
        // A lease store refuses writes through a lease lost or expired here.
        let revoked = self.revoked.load(Ordering::SeqCst) || self.expired.load(Ordering::SeqCst);
        let mut m = self.shared.model.lock().unwrap();
        if !missing.is_empty() {
            let v = format!(
                "checkpoint of {} at record {rec} ({:?}) passes undelivered items {:?}",
                self.shard,
                progress.resume.partial,
                &missing[..missing.len().min(5)]
            );
            m.violations.push(v);
        }
        if revoked {
            return Err(CheckpointError::LeaseLost("taken".into()));
        }
        let last = m.checkpoints.entry(self.shard).or_insert(0);
        *last = (*last).max(rec);
        // No delivered position: the store keeps the checkpoint it has (a new reader's first save).
        let stored = m.stored.entry(self.shard).or_default();
        if progress.delivered.is_some() {
            stored.delivered = progress.delivered.clone();
        }
        stored.resume = progress.resume.clone();
        Ok(())
    }

    fn stores_resume(&self) -> bool {
        true
    }

    fn fence(&self) -> Option<Fence> {
        if !self.leased {
            return None;
        }
        let now = Instant::now();
        if self.expired.load(Ordering::SeqCst) {
            return Some(Fence {
                start_by: now,
                stop_by: now,
            });
        }
        Some(Fence {
            start_by: now + Duration::from_secs(3600),
            stop_by: now + Duration::from_secs(3600),
        })
    }
}

/// What the test does next.
#[derive(Clone, Debug)]
enum Op {
    /// Push the next `n` records of a shard.
    Push(usize, u64),
    /// The shard's lease is lost — taken by another worker, or (`expired`) not confirmed in time —
    /// then comes back; the records since its last checkpoint are read again.
    LoseAndRegain { shard: usize, expired: bool },
    /// The shard is handed off (shutdown, a released lease) and read again by its next reader, as
    /// its store says.
    HandOff(usize),
    /// Let time pass (buffers close by age meanwhile).
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 1u64..12).prop_map(|(s, n)| Op::Push(s, n)),
        1 => (0usize..3, any::<bool>()).prop_map(|(shard, expired)| Op::LoseAndRegain { shard, expired }),
        1 => (0usize..3).prop_map(Op::HandOff),
        2 => (0u64..30).prop_map(Op::Wait),
    ]
}

async fn run_case(
    world: World,
    max_bytes: usize,
    max_age_ms: u64,
    across: bool,
    ops: Vec<Op>,
) -> Vec<String> {
    let shared = Arc::new(Shared {
        world: world.clone(),
        model: Mutex::new(Model::default()),
    });
    let w = world.clone();
    let transformer = TransformFn(move |r: &Record, out: &mut Vec<It>| {
        let shard = SHARDS[shard_index(&r.shard_id)];
        let rec = rec_of(&r.position);
        let s = shard_index(shard);
        if w.transform_fails(s, rec) {
            return Err(TransformError::new("bad record"));
        }
        for index in 0..w.items_of(s, rec) {
            out.push(It {
                shard,
                rec,
                index,
                size: w.size(rec, index),
            });
        }
        Ok(())
    });
    let w = world.clone();
    let filter = FilterFn(move |i: &It, _: &Record| !w.filtered(i.rec, i.index));
    let settings = PipelineSettings {
        buffer: BufferLimits {
            max_records: world.max_records,
            max_bytes,
            max_age: Duration::from_millis(max_age_ms),
        },
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_attempts: Some(4),
        },
        max_in_flight: 3,
        max_queued_batches: 4,
        max_buffered_bytes: 64 * 1024,
        intake_capacity: 2,
        batch_across_shards: across,
    };
    let pipeline = Pipeline::new(
        "model",
        Arc::new(transformer),
        Arc::new(ModelEmitter(shared.clone())),
        Arc::new(ModelDeadLetter(shared.clone())),
    )
    .filter(Arc::new(filter))
    .settings(settings);
    let (handle, running) = pipeline.start();
    let mut cursor = [1u64; 3];
    // One past the newest record put to each shard so far.
    let mut high_water = [1u64; 3];
    let mut opened: [Option<Arc<ModelCheckpointer>>; 3] = [None, None, None];
    let open = |s: usize| {
        Arc::new(ModelCheckpointer {
            shared: shared.clone(),
            shard: SHARDS[s],
            leased: (world.seed + s as u64).is_multiple_of(2),
            expired: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
        })
    };
    for op in ops {
        match op {
            Op::Push(s, n) => {
                if opened[s].is_none() {
                    let c = open(s);
                    handle
                        .open_shard(ShardId::from(SHARDS[s]), c.clone())
                        .await
                        .unwrap();
                    opened[s] = Some(c);
                }
                let records: Vec<Record> = (cursor[s]..cursor[s] + n)
                    .map(|r| record(SHARDS[s], r, b""))
                    .collect();
                cursor[s] += n;
                // Reading the newest records: the reader is at the tip (the stream grows as pushed).
                let at_tip = cursor[s] >= high_water[s];
                high_water[s] = high_water[s].max(cursor[s]);
                handle
                    .push_page(ShardId::from(SHARDS[s]), records, at_tip)
                    .await
                    .unwrap();
            }
            Op::LoseAndRegain { shard: s, expired } => {
                // An embedded store (no fence) has one process: its leases are never lost.
                if opened[s].as_ref().is_none_or(|c| !c.leased) {
                    continue;
                }
                let Some(c) = opened[s].take() else { continue };
                c.revoked.store(true, Ordering::SeqCst);
                // By the time another reader reads the shard, this one's fence has passed: the lease
                // was taken after it expired here, or stolen, and a thief waits out the victim's fence
                // before reading. `expired`: it ran out here first, and the worker only drops the shard
                // a moment later: nothing of the shard may be emitted meanwhile.
                if c.leased {
                    c.expired.store(true, Ordering::SeqCst);
                    if expired {
                        shared.model.lock().unwrap().fenced.insert(SHARDS[s]);
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
                handle
                    .abandon_shard(ShardId::from(SHARDS[s]))
                    .await
                    .unwrap();
                // The worker takes the lease back and reads on from the last checkpoint.
                tokio::time::sleep(Duration::from_millis(2)).await;
                // It reads again after its store's checkpoint, resuming as the store says.
                let (from, resume) = {
                    let mut m = shared.model.lock().unwrap();
                    m.fenced.remove(SHARDS[s]);
                    let stored = m.stored.get(SHARDS[s]).cloned().unwrap_or_default();
                    (
                        stored.delivered.as_ref().map_or(1, |p| rec_of(p) + 1),
                        stored.resume,
                    )
                };
                cursor[s] = from;
                let c = open(s);
                handle
                    .open_shard_at(ShardId::from(SHARDS[s]), c.clone(), resume)
                    .await
                    .unwrap();
                opened[s] = Some(c);
            }
            Op::HandOff(s) => {
                if opened[s].take().is_none() {
                    continue;
                }
                handle
                    .hand_off_shard(ShardId::from(SHARDS[s]))
                    .await
                    .unwrap();
                let (from, resume) = {
                    let m = shared.model.lock().unwrap();
                    let stored = m.stored.get(SHARDS[s]).cloned().unwrap_or_default();
                    (
                        stored.delivered.as_ref().map_or(1, |p| rec_of(p) + 1),
                        stored.resume,
                    )
                };
                cursor[s] = from;
                let c = open(s);
                handle
                    .open_shard_at(ShardId::from(SHARDS[s]), c.clone(), resume)
                    .await
                    .unwrap();
                opened[s] = Some(c);
            }
            Op::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
    // The end: each shard is read to its tip (what an earlier reader read too), then finished.
    for (s, c) in opened.iter().enumerate() {
        if c.is_none() {
            continue;
        }
        let records: Vec<Record> = (cursor[s]..high_water[s])
            .map(|r| record(SHARDS[s], r, b""))
            .collect();
        cursor[s] = high_water[s];
        handle
            .push_page(ShardId::from(SHARDS[s]), records, true)
            .await
            .unwrap();
        handle.finish_shard(ShardId::from(SHARDS[s])).await.unwrap();
    }
    handle.shutdown().await.unwrap();
    running.wait().await.unwrap();
    let m = shared.model.lock().unwrap();
    let mut violations = m.violations.clone();
    for (s, c) in opened.iter().enumerate() {
        if c.is_none() {
            continue;
        }
        let last = cursor[s] - 1;
        for r in 1..=last {
            for k in shared.expected(SHARDS[s], r) {
                if !m.delivered.contains(&k) && !m.dead.contains(&k) {
                    violations.push(format!("{k:?} never delivered nor dead-lettered"));
                }
            }
        }
        let at = m.checkpoints.get(SHARDS[s]).copied().unwrap_or(0);
        if last > 0 && at != last {
            violations.push(format!(
                "shard {} checkpointed at {at}, not at its last record {last}",
                SHARDS[s]
            ));
        }
    }
    // Effectively once: with no partial retries (a retried batch is the whole batch again) and
    // per-shard batches, an item written twice was written under one identity, so it replaced itself.
    if world.retry_pct == 0 && !across {
        for (k, ids) in &m.written_under {
            if ids.len() > 1 {
                violations.push(format!(
                    "{k:?} written under {} identities: {ids:?}",
                    ids.len()
                ));
            }
        }
    }
    violations.truncate(5);
    violations
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_runner_keeps_its_invariants_under_random_fan_out_failures_and_lease_moves(
        seed in any::<u64>(),
        max_records in 1usize..12,
        max_bytes in 20usize..400,
        max_age_ms in prop_oneof![Just(3_600_000u64), 1u64..40],
        retry_pct in prop_oneof![Just(0u64), 0u64..25],
        perm_pct in 0u64..8,
        whole_pct in 0u64..15,
        across in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let world = World { seed, max_records, retry_pct, perm_pct, whole_pct };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let violations = rt.block_on(run_case(world, max_bytes, max_age_ms, across, ops));
        prop_assert!(violations.is_empty(), "{:#?}", violations);
    }
}
