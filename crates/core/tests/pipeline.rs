//! Behaviour of the pipeline runner with in-process emitters: retries, dead letters, checkpoints,
//! age flushes, backpressure, shard hand-off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_connectors_core::stages::{FieldFilter, FieldPredicate, JsonTransformer};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{
    Batch, BufferLimits, CheckpointError, EmitError, EmitOutcome, Emitter, FailedStage, FieldPath,
    FileDeadLetter, Item, ItemFailure, Pipeline, PipelineSettings, Position, Record, RetryPolicy,
    ShardCheckpointer, ShardId, async_trait,
};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Remembers every checkpoint written, with the (tokio) time it was written.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<(Position, Instant)>>,
}

impl Recorder {
    fn positions(&self) -> Vec<Position> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
    fn last(&self) -> Option<Position> {
        self.positions().last().cloned()
    }
}

#[async_trait]
impl ShardCheckpointer for Recorder {
    async fn checkpoint(&self, position: &Position) -> Result<(), CheckpointError> {
        self.log
            .lock()
            .unwrap()
            .push((position.clone(), Instant::now()));
        Ok(())
    }
}

/// Fails every batch `fail_times` times (retryably), then writes it; records what it wrote and when
/// each attempt happened.
#[derive(Default)]
struct Flaky {
    fail_times: u32,
    calls: AtomicU32,
    attempts: Mutex<Vec<Instant>>,
    written: Mutex<Vec<String>>,
}

#[async_trait]
impl Emitter<Item> for Flaky {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        self.attempts.lock().unwrap().push(Instant::now());
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_times {
            return Err(EmitError::retryable("503 Slow Down"));
        }
        let mut w = self.written.lock().unwrap();
        for e in &batch.items {
            w.push(String::from_utf8(e.item.data().to_vec()).unwrap());
        }
        Ok(EmitOutcome::success())
    }
}

/// Rejects items whose `bad` field is true, permanently; writes the rest.
#[derive(Default)]
struct Picky {
    written: Mutex<Vec<String>>,
}

#[async_trait]
impl Emitter<Item> for Picky {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let bad = FieldPath::parse("bad").unwrap();
        let mut failures = Vec::new();
        for (i, e) in batch.items.iter().enumerate() {
            if e.item.field(&bad) == Some(serde_json::Value::Bool(true)) {
                failures.push(ItemFailure::permanent(
                    i,
                    "mapper_parsing_exception: field [n] is not a number",
                ));
            } else {
                self.written
                    .lock()
                    .unwrap()
                    .push(String::from_utf8(e.item.data().to_vec()).unwrap());
            }
        }
        Ok(EmitOutcome::with_failures(failures))
    }
}

fn json_records(shard: &str, from: u64, n: u64) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            record(
                shard,
                i,
                format!(
                    "{{\"i\":{i},\"kind\":\"{}\"}}",
                    if i % 2 == 0 { "even" } else { "odd" }
                )
                .as_bytes(),
            )
        })
        .collect()
}

fn settings(max_records: usize) -> PipelineSettings {
    PipelineSettings {
        buffer: BufferLimits {
            max_records,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        },
        retry: RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_attempts: None,
        },
        ..PipelineSettings::default()
    }
}

fn shard(s: &str) -> ShardId {
    Arc::from(s)
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_and_hold_the_checkpoint_until_success() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Flaky {
        fail_times: 4,
        ..Flaky::default()
    });
    let dlq = Arc::new(FileDeadLetter::new(dir.path().join("dead.jsonl")));
    let p =
        Pipeline::new("p", Arc::new(JsonTransformer), emitter.clone(), dlq).settings(settings(10));
    let (h, running) = p.start();
    let cp = Arc::new(Recorder::default());
    h.open_shard(shard("s1"), cp.clone()).await.unwrap();
    h.push(shard("s1"), json_records("s1", 0, 10))
        .await
        .unwrap();
    let last = h.finish_shard(shard("s1")).await.unwrap();

    let attempts = emitter.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 5, "4 failures then a success");
    // Each wait is within the full-jitter ceiling 100ms * 2^n (capped at 2s); together they are not zero.
    let policy = settings(10).retry;
    for (n, pair) in attempts.windows(2).enumerate() {
        assert!(pair[1] - pair[0] <= policy.ceiling(n as u32) + Duration::from_millis(1));
    }
    assert!(attempts[4] > attempts[0], "retries waited");
    // Nothing was checkpointed before the successful attempt; then exactly the last record.
    let log = cp.log.lock().unwrap().clone();
    assert!(!log.is_empty());
    assert!(log.iter().all(|(_, t)| *t >= attempts[4]));
    assert_eq!(cp.last(), Some(record("s1", 9, b"").position));
    assert_eq!(last, Some(record("s1", 9, b"").position));
    assert_eq!(emitter.written.lock().unwrap().len(), 10);
    h.shutdown().await.unwrap();
    let m = running.wait().await.unwrap();
    assert_eq!(m.retries, 4);
    assert_eq!(m.items_emitted, 10);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_dead_letter_the_batch_and_then_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Flaky {
        fail_times: u32::MAX,
        ..Flaky::default()
    });
    let dlq_path = dir.path().join("dead.jsonl");
    let mut s = settings(5);
    s.retry.max_attempts = Some(3);
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(&dlq_path)),
    )
    .settings(s);
    let (h, running) = p.start();
    let cp = Arc::new(Recorder::default());
    h.open_shard(shard("s1"), cp.clone()).await.unwrap();
    h.push(shard("s1"), json_records("s1", 0, 5)).await.unwrap();
    h.finish_shard(shard("s1")).await.unwrap();
    assert_eq!(emitter.attempts.lock().unwrap().len(), 3);
    let dead = FileDeadLetter::read_all(&dlq_path).unwrap();
    assert_eq!(dead.len(), 5);
    assert!(
        dead[0]
            .reason
            .starts_with("retries exhausted after 3 attempts: 503 Slow Down"),
        "{}",
        dead[0].reason
    );
    assert_eq!(cp.last(), Some(record("s1", 4, b"").position));
    h.shutdown().await.unwrap();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn permanent_item_failures_and_invalid_json_are_dead_lettered_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let dlq_path = dir.path().join("dead.jsonl");
    let emitter = Arc::new(Picky::default());
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(&dlq_path)),
    )
    .settings(settings(4));
    let (h, running) = p.start();
    let cp = Arc::new(Recorder::default());
    h.open_shard(shard("s1"), cp.clone()).await.unwrap();
    let mut records = json_records("s1", 0, 10);
    records[3] = record("s1", 3, br#"{"i":3,"bad":true}"#);
    records[6] = record("s1", 6, b"{not json");
    h.push(shard("s1"), records).await.unwrap();
    h.finish_shard(shard("s1")).await.unwrap();

    let dead = FileDeadLetter::read_all(&dlq_path).unwrap();
    let mut by_seq: Vec<_> = dead
        .iter()
        .map(|e| (e.position(), e.stage, e.reason.clone()))
        .collect();
    by_seq.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(by_seq.len(), 2);
    assert_eq!(by_seq[0].0, record("s1", 3, b"").position);
    assert_eq!(by_seq[0].1, FailedStage::Emit);
    assert!(by_seq[0].2.contains("mapper_parsing_exception"));
    assert_eq!(by_seq[1].0, record("s1", 6, b"").position);
    assert_eq!(by_seq[1].1, FailedStage::Transform);
    assert!(by_seq[1].2.starts_with("invalid JSON"));
    assert_eq!(
        dead.iter()
            .find(|e| e.stage == FailedStage::Transform)
            .unwrap()
            .data
            .as_ref(),
        b"{not json"
    );
    assert_eq!(emitter.written.lock().unwrap().len(), 8);
    // Dead-lettered records count as delivered: the checkpoint reaches the last record.
    assert_eq!(cp.last(), Some(record("s1", 9, b"").position));
    h.shutdown().await.unwrap();
    let m = running.wait().await.unwrap();
    assert_eq!(
        (m.dead_lettered, m.transform_failures, m.items_emitted),
        (2, 1, 8)
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_buffer_flushes_at_its_age_limit_with_no_new_record() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Flaky::default());
    let mut s = settings(1000);
    s.buffer.max_age = Duration::from_secs(30);
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .settings(s);
    let (h, _running) = p.start();
    let cp = Arc::new(Recorder::default());
    h.open_shard(shard("s1"), cp.clone()).await.unwrap();
    let t0 = Instant::now();
    h.push(shard("s1"), json_records("s1", 0, 3)).await.unwrap();
    // Let the runner take the records, then advance to just before the limit: nothing emitted yet.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(emitter.attempts.lock().unwrap().is_empty());
    // Past the limit the timer fires by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = emitter.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 1);
    let waited = attempts[0] - t0;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    assert_eq!(emitter.written.lock().unwrap().len(), 3);
}

/// An emitter that blocks until released: the sink is down.
struct Stuck {
    release: Notify,
    calls: AtomicU32,
}

#[async_trait]
impl Emitter<Item> for Stuck {
    async fn emit(&self, _: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.release.notified().await;
        Ok(EmitOutcome::success())
    }
}

#[tokio::test]
async fn a_stuck_sink_stops_intake_within_the_configured_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Stuck {
        release: Notify::new(),
        calls: AtomicU32::new(0),
    });
    let s = PipelineSettings {
        max_in_flight: 2,
        max_queued_batches: 3,
        intake_capacity: 2,
        ..settings(10)
    };
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .settings(s);
    let (h, _running) = p.start();
    let shards: Vec<ShardId> = (0..4).map(|i| shard(&format!("s{i}"))).collect();
    for s in &shards {
        h.open_shard(s.clone(), Arc::new(Recorder::default()))
            .await
            .unwrap();
    }
    // Push batches of 10 records round-robin until a push blocks.
    let mut accepted = 0u64;
    for n in 0..1000u64 {
        let s = shards[(n % 4) as usize].clone();
        let push = h.push(s.clone(), json_records(&s, n * 10, 10));
        match tokio::time::timeout(Duration::from_millis(200), push).await {
            Ok(r) => {
                r.unwrap();
                accepted += 1;
            }
            Err(_) => break,
        }
    }
    // 2 in flight + 3 queued + the batch that filled the queue + 2 in the intake queue (+1 being sent).
    assert!(
        accepted <= 10,
        "intake did not stop: {accepted} batches accepted"
    );
    assert!(accepted >= 5, "stopped too early: {accepted}");
    assert_eq!(
        emitter.calls.load(Ordering::SeqCst),
        2,
        "only max_in_flight emits started"
    );
}

#[tokio::test]
async fn cross_shard_batches_checkpoint_each_shard_and_abandoned_shards_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Flaky::default());
    let s = PipelineSettings {
        batch_across_shards: true,
        ..settings(6)
    };
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .filter(Arc::new(FieldFilter::new(
        FieldPath::parse("kind").unwrap(),
        FieldPredicate::Equals("even".into()),
        false,
    )))
    .settings(s);
    let (h, running) = p.start();
    let (a, b, c) = (
        Arc::new(Recorder::default()),
        Arc::new(Recorder::default()),
        Arc::new(Recorder::default()),
    );
    h.open_shard(shard("a"), a.clone()).await.unwrap();
    h.open_shard(shard("b"), b.clone()).await.unwrap();
    h.open_shard(shard("c"), c.clone()).await.unwrap();
    // a: 0..8 (4 kept), b: 0..4 (2 kept) → one batch of 6 across a and b.
    h.push(shard("a"), json_records("a", 0, 8)).await.unwrap();
    h.push(shard("c"), json_records("c", 0, 1)).await.unwrap();
    h.abandon_shard(shard("c")).await.unwrap();
    h.push(shard("b"), json_records("b", 0, 4)).await.unwrap();
    assert_eq!(
        h.finish_shard(shard("a")).await.unwrap(),
        Some(record("a", 7, b"").position)
    );
    assert_eq!(
        h.finish_shard(shard("b")).await.unwrap(),
        Some(record("b", 3, b"").position)
    );
    h.shutdown().await.unwrap();
    let m = running.wait().await.unwrap();
    assert_eq!(
        emitter.attempts.lock().unwrap().len(),
        1,
        "one batch held both shards"
    );
    assert_eq!(m.items_emitted, 6);
    assert_eq!(m.items_filtered, 6);
    assert!(
        c.positions().is_empty(),
        "an abandoned shard is never checkpointed"
    );
    let written = emitter.written.lock().unwrap().clone();
    assert!(written.iter().all(|w| w.contains("even")));
}

/// The typed API: a pipeline of your own item type, with closures for stages.
#[tokio::test]
async fn a_typed_pipeline_carries_its_own_item_type() {
    use kinesis_connectors_core::{EmittedSize, FilterFn, TransformError, TransformFn};

    #[derive(Debug, serde::Deserialize)]
    struct Click {
        i: u64,
        kind: String,
    }
    impl EmittedSize for Click {
        fn emitted_size(&self) -> usize {
            16 + self.kind.len()
        }
    }
    #[derive(Default)]
    struct Sum {
        total: Mutex<u64>,
        batches: AtomicU32,
    }
    #[async_trait]
    impl Emitter<Click> for Sum {
        async fn emit(&self, batch: &Batch<Click>) -> Result<EmitOutcome, EmitError> {
            *self.total.lock().unwrap() += batch.items.iter().map(|e| e.item.i).sum::<u64>();
            self.batches.fetch_add(1, Ordering::SeqCst);
            Ok(EmitOutcome::success())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let sum = Arc::new(Sum::default());
    let transform = TransformFn(|r: &Record, out: &mut Vec<Click>| {
        out.push(serde_json::from_slice(&r.data).map_err(TransformError::new)?);
        Ok(())
    });
    let p = Pipeline::new(
        "typed",
        Arc::new(transform),
        sum.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .filter(Arc::new(FilterFn(|c: &Click, _: &Record| c.kind == "even")))
    .settings(settings(5));
    let (h, running) = p.start();
    let cp = Arc::new(Recorder::default());
    h.open_shard(shard("s1"), cp.clone()).await.unwrap();
    h.push(shard("s1"), json_records("s1", 0, 20))
        .await
        .unwrap();
    h.finish_shard(shard("s1")).await.unwrap();
    h.shutdown().await.unwrap();
    running.wait().await.unwrap();
    assert_eq!(
        *sum.total.lock().unwrap(),
        (0..20).filter(|i| i % 2 == 0).sum::<u64>()
    );
    assert_eq!(
        sum.batches.load(Ordering::SeqCst),
        2,
        "10 even items in batches of 5"
    );
    assert_eq!(cp.last(), Some(record("s1", 19, b"").position));
}

/// A dead-letter target that never answers.
struct StuckDeadLetter;

#[async_trait]
impl kinesis_connectors_core::DeadLetter for StuckDeadLetter {
    async fn write(
        &self,
        _: &[kinesis_connectors_core::DeadLetterEntry],
    ) -> Result<(), kinesis_connectors_core::DeadLetterError> {
        std::future::pending().await
    }
    fn describe(&self) -> String {
        "stuck".into()
    }
}

/// Issue 14, defect 5: records the transformer rejects queued dead-letter jobs that no limit
/// counted, so with a slow dead-letter target memory grew at the read rate. Their bytes now count
/// against `max_buffered_bytes`, and intake stops.
#[tokio::test]
async fn a_stuck_dead_letter_target_stops_intake_within_max_buffered_bytes() {
    let emitter = Arc::new(Flaky::default());
    let s = PipelineSettings {
        max_buffered_bytes: 64 * 1024,
        intake_capacity: 2,
        ..settings(10)
    };
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter,
        Arc::new(StuckDeadLetter),
    )
    .settings(s);
    let (h, _running) = p.start();
    let s0 = shard("s0");
    h.open_shard(s0.clone(), Arc::new(Recorder::default()))
        .await
        .unwrap();
    // Pages of 10 invalid records of 1 KiB each, until a push blocks.
    let bad = vec![b'x'; 1024];
    let mut accepted = 0u64;
    for n in 0..10_000u64 {
        let records: Vec<Record> = (0..10).map(|i| record("s0", n * 10 + i, &bad)).collect();
        match tokio::time::timeout(Duration::from_millis(200), h.push(s0.clone(), records)).await {
            Ok(r) => {
                r.unwrap();
                accepted += 1;
            }
            Err(_) => break,
        }
    }
    // 64 KiB of dead letters is ~6 pages, plus the intake queue's 2 and the one being sent.
    assert!(
        accepted <= 12,
        "intake did not stop: {accepted} pages of rejects accepted"
    );
}

/// An emitter that reports a failure of an item the batch does not have.
struct Confused {
    calls: AtomicU32,
}

#[async_trait]
impl Emitter<Item> for Confused {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(EmitOutcome::with_failures(vec![ItemFailure::permanent(
            batch.len() + 3,
            "no such item",
        )]))
    }
}

/// Issue 14, defect 6: an `ItemFailure` index outside the batch counted as success (every item
/// acknowledged and checkpointed). The outcome is malformed: the batch is retried as a whole and,
/// when retries run out, dead-lettered; it is never checkpointed as written.
#[tokio::test(start_paused = true)]
async fn an_item_failure_outside_the_batch_is_a_malformed_outcome_not_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Confused {
        calls: AtomicU32::new(0),
    });
    let mut s = settings(5);
    s.retry.max_attempts = Some(3);
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .settings(s);
    let (h, running) = p.start();
    let rec = Arc::new(Recorder::default());
    h.open_shard(shard("s0"), rec.clone()).await.unwrap();
    h.push(shard("s0"), json_records("s0", 0, 5)).await.unwrap();
    h.finish_shard(shard("s0")).await.unwrap();
    h.shutdown().await.unwrap();
    let m = running.wait().await.unwrap();
    assert_eq!(
        emitter.calls.load(Ordering::SeqCst),
        3,
        "retried as a whole"
    );
    assert_eq!(m.items_emitted, 0, "nothing counts as written");
    assert_eq!(m.dead_lettered, 5);
    let entries = FileDeadLetter::read_all(&dir.path().join("d")).unwrap();
    assert!(
        entries[0].reason.contains("malformed"),
        "{}",
        entries[0].reason
    );
}

/// Counts checkpoint writes.
#[derive(Default)]
struct CountingCheckpointer {
    writes: Mutex<Vec<Position>>,
}

#[async_trait]
impl ShardCheckpointer for CountingCheckpointer {
    async fn checkpoint(&self, position: &Position) -> Result<(), CheckpointError> {
        self.writes.lock().unwrap().push(position.clone());
        Ok(())
    }
}

/// Issue 14, defect 6: the runner handed the shard's position to the checkpoint writer after every
/// push, moved or not (the DynamoDB store wrote one conditional update per push). Only moves are
/// written now.
#[tokio::test]
async fn a_position_that_did_not_move_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    // Only odd records pass: the even record 0 is delivered (filtered) at once, the odd ones wait in
    // the buffer, so the delivered position stays at record 0 while they are pushed.
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        Arc::new(Flaky::default()),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .filter(Arc::new(FieldFilter::new(
        FieldPath::parse("kind").unwrap(),
        FieldPredicate::Equals("odd".into()),
        false,
    )))
    .settings(settings(1000));
    let (h, running) = p.start();
    let c = Arc::new(CountingCheckpointer::default());
    h.open_shard(shard("s0"), c.clone()).await.unwrap();
    h.push(shard("s0"), json_records("s0", 0, 1)).await.unwrap();
    for n in 0..50 {
        h.push(shard("s0"), json_records("s0", 2 * n + 1, 1))
            .await
            .unwrap();
        // Let the runner and the checkpoint writer run between pushes (one thread: they run now).
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
    }
    h.finish_shard(shard("s0")).await.unwrap();
    h.shutdown().await.unwrap();
    running.wait().await.unwrap();
    let writes = c.writes.lock().unwrap().clone();
    let mut distinct = writes.clone();
    distinct.dedup();
    assert_eq!(
        writes, distinct,
        "a position was written again though it did not move"
    );
    assert_eq!(writes.len(), 2, "{writes:?}");
}

/// Records the identity (shard ranges) of every batch written.
#[derive(Default)]
struct Identities {
    written: Mutex<Vec<Vec<kinesis_connectors_core::ShardRange>>>,
}

#[async_trait]
impl Emitter<Item> for Identities {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        self.written
            .lock()
            .unwrap()
            .push(batch.context.shards.clone());
        Ok(EmitOutcome::success())
    }
}

/// A store whose lease was taken: nothing this reader delivered gets checkpointed (as when the
/// process dies before its checkpoint lands).
struct NeverStores;

#[async_trait]
impl ShardCheckpointer for NeverStores {
    async fn checkpoint(&self, _: &Position) -> Result<(), CheckpointError> {
        Err(CheckpointError::LeaseLost("taken".into()))
    }
    fn stores_resume(&self) -> bool {
        true
    }
}

/// Issue 16: after a failover the new reader re-reads records an earlier reader already wrote in a
/// batch closed by its count. While it is still behind the tip its buffer must not flush by age (a
/// slow re-read would cut that batch short under another identity); caught up, it re-forms the batch
/// whole, under the same identity, so the sink's object replaces itself.
#[tokio::test(start_paused = true)]
async fn behind_the_tip_a_buffer_does_not_age_out_so_a_re_read_batch_keeps_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let emitter = Arc::new(Identities::default());
    let mut s = settings(10);
    s.buffer.max_age = Duration::from_millis(100);
    let p = Pipeline::new(
        "p",
        Arc::new(JsonTransformer),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("d"))),
    )
    .settings(s);
    let (h, running) = p.start();
    // The first reader writes a batch of 10 by count; its checkpoint never lands.
    h.open_shard(shard("s0"), Arc::new(NeverStores))
        .await
        .unwrap();
    h.push_page(shard("s0"), json_records("s0", 0, 10), true)
        .await
        .unwrap();
    while emitter.written.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    h.abandon_shard(shard("s0")).await.unwrap();
    // The next reader re-reads from the last checkpoint, slowly, behind the tip.
    let rec = Arc::new(Recorder::default());
    h.open_shard(shard("s0"), rec.clone()).await.unwrap();
    h.push_page(shard("s0"), json_records("s0", 0, 5), false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        emitter.written.lock().unwrap().len(),
        1,
        "a buffer behind the tip flushed by age"
    );
    h.push_page(shard("s0"), json_records("s0", 5, 5), true)
        .await
        .unwrap();
    h.finish_shard(shard("s0")).await.unwrap();
    h.shutdown().await.unwrap();
    running.wait().await.unwrap();
    let written = emitter.written.lock().unwrap().clone();
    assert_eq!(written.len(), 2);
    assert_eq!(
        written[0], written[1],
        "the re-read batch has the first one's identity"
    );
}
