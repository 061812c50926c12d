//! The lease protocol one step beside the paths the scale-out tests walk (issue 14): a worker
//! restarted in place under its own `worker_id` (embedded store and DynamoDB), a worker cut off from
//! the lease table by a route that drops everything (it must stop emitting before another worker may
//! take its shards), an unreadable lease row (its children must wait), and the byte budget of pages
//! in hand. The lease timings are the documented defaults (`failover_time` 10 s) unless a test says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::tcp_switch::TcpSwitch;
use integration_tests::{
    Connector, Landed, Ledger, Stack, Workdir, file_pipeline, poll, put_records, read_landed,
    unique, wait_until,
};
use kinesis_connectors_consumer::{
    Checkpoint, DynamoDbLeaseStore, Lease, LeaseStore, StreamClient,
};

const FAILOVER: Duration = kinesis_connectors_consumer::DEFAULT_FAILOVER_TIME;

fn ids(dir: &std::path::Path) -> HashSet<u64> {
    read_landed(dir).iter().map(|l| l.id()).collect()
}

/// A pipeline on the lease table `table` (reached at `dynamodb`) with the default failover time.
fn leased(stream: &str, table: &str, stack: &Stack, dynamodb: &str, worker: &str) -> String {
    file_pipeline(
        stream,
        &stack.kinesis,
        &format!(
            r#"buffer = {{ max_records = 50, max_age = "200ms" }}
checkpoint = {{ type = "dynamodb", table = "{table}", endpoint = "{dynamodb}", worker_id = "{worker}" }}"#
        ),
    )
}

async fn owners(store: &DynamoDbLeaseStore) -> BTreeMap<String, Option<String>> {
    store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.shard_id, l.owner))
        .collect()
}

/// Issue 14, defect 2 (embedded store): the second `run --until-tip` of a pipeline with a fixed
/// `worker_id` read nothing and never ended, because the leases recorded under that id were never
/// taken back.
#[tokio::test]
async fn a_restarted_worker_with_a_fixed_id_resumes_its_shards_from_the_embedded_store() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("same-id-file");
    client.create(&stream, 2).await.unwrap();
    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        r#"checkpoint = { type = "file", worker_id = "worker-a" }"#,
    ));
    let first = put_records(&client, &stream, 0..300, 16, &|_| false).await;
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    assert_eq!(ids(&work.path("out")).len(), first.records.len());
    let second = put_records(&client, &stream, 300..600, 16, &|_| false).await;
    // The same id again: it must take its leases back, read the new records and end.
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let landed = ids(&work.path("out"));
    assert!(
        second.records.keys().all(|id| landed.contains(id)),
        "{} of {} new records landed after the restart",
        second
            .records
            .keys()
            .filter(|id| landed.contains(id))
            .count(),
        second.records.len()
    );
}

/// Issue 14, defect 2 (DynamoDB): a worker SIGKILLed and restarted under the same `worker_id`
/// (a container restarted in place) read nothing of 1,000 new records in 40 s. It must read its shards
/// again within twice the failover time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_in_place_resumes_its_shards_within_twice_the_failover_time() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("same-id-ddb");
    client.create(&stream, 4).await.unwrap();
    let table = unique("leases-same-id");
    let work = Workdir::new();
    let config = work.config(&leased(&stream, &table, &stack, &stack.dynamodb, "pod-0"));
    let first = put_records(&client, &stream, 0..400, 16, &|_| false).await;
    let mut w = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    wait_until(Duration::from_secs(60), "the first records", || {
        ids(&work.path("out")).len() >= first.records.len()
    });
    w.kill();
    let restarted = Instant::now();
    let _w = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let second = put_records(&client, &stream, 400..1400, 16, &|_| false).await;
    let (_, took) = poll(
        3 * FAILOVER + Duration::from_secs(10),
        "the restarted worker to read the new records",
        async || {
            let landed = ids(&work.path("out"));
            second
                .records
                .keys()
                .all(|id| landed.contains(id))
                .then_some(())
        },
    )
    .await;
    let took = took.max(restarted.elapsed());
    eprintln!(
        "restarted in place under its own id: all 1,000 new records read {took:?} after the restart (failover {FAILOVER:?})"
    );
    assert!(
        took <= 2 * FAILOVER + Duration::from_secs(3),
        "read again only {took:?} after the restart"
    );
}

/// Issue 14, defect 3: with worker A's route to DynamoDB blackholed (connections accepted, nothing
/// forwarded), worker B took A's shards after the failover time and A kept delivering them. A must
/// stop emitting a shard before another worker may take it: once B owns a shard of A's, nothing more
/// of that shard lands in A's output. B reads every shard within twice the failover time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_the_lease_table_stops_emitting_before_its_shards_move() {
    cut_off(false).await;
}

/// The same cut, but B joins only after it: A holds every shard and its leases still look alive, so
/// B's balancer steals one at once, before A could learn of it (A's renewals go nowhere). B must not
/// read the stolen shard until A's local expiry has passed — it did at once, and both wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_stolen_from_a_cut_off_worker_is_read_only_after_its_owner_has_stopped() {
    cut_off(true).await;
}

async fn cut_off(b_joins_after_the_cut: bool) {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("blackhole");
    client.create(&stream, 4).await.unwrap();
    let table = unique("leases-blackhole");
    let work = Workdir::new();
    let route_a = TcpSwitch::start(&stack.dynamodb).await;
    let config_a = work.config(&leased(&stream, &table, &stack, &route_a.url, "worker-a"));
    let config_b = work.path("b.toml");
    std::fs::write(
        &config_b,
        leased(&stream, &table, &stack, &stack.dynamodb, "worker-b"),
    )
    .unwrap();
    let out = |w: &str| work.path(&format!("out-{w}"));
    let env = |w: &str| vec![("OUT_DIR", out(w).display().to_string())];
    let stop = Arc::new(AtomicBool::new(false));
    let produce = producer(client.clone(), stream.clone(), stop.clone());
    let mut a = Connector::start(work.dir.path(), &config_a, "p", &[], &env("a"));
    let start_b = || Connector::start(work.dir.path(), &config_b, "p", &[], &env("b"));
    let mut b = (!b_joins_after_the_cut).then(start_b);
    let store = DynamoDbLeaseStore::connect("us-east-1", Some(&stack.dynamodb), &table)
        .await
        .unwrap();
    let (theirs, _) = poll(
        3 * FAILOVER,
        "both workers holding shards (or A all four), A's output growing",
        async || {
            let o = owners(&store).await;
            let a_shards: Vec<String> = o
                .iter()
                .filter(|(_, w)| w.as_deref() == Some("worker-a"))
                .map(|(s, _)| s.clone())
                .collect();
            let b_has = o.values().any(|w| w.as_deref() == Some("worker-b"));
            let split = if b_joins_after_the_cut {
                a_shards.len() == 4
            } else {
                !a_shards.is_empty() && b_has
            };
            (o.len() == 4 && split && !read_landed(&out("a")).is_empty()).then_some(a_shards)
        },
    )
    .await;
    route_a.blackhole();
    let cut = Instant::now();
    let mut b = b.take().unwrap_or_else(start_b);
    // What B wrote of A's shards before the cut (a shard may have moved between them earlier).
    let of = |landed: &[Landed], s: &str| landed.iter().filter(|l| l.shard == s).count();
    let b_before: BTreeMap<String, usize> = {
        let landed_b = read_landed(&out("b"));
        theirs
            .iter()
            .map(|s| (s.clone(), of(&landed_b, s)))
            .collect()
    };
    // B takes each of A's shards (some by expiry, some perhaps stolen by the balancer before the
    // cut was felt); from the moment B writes one, A may no longer emit it. The two never overlap.
    let mut taken_at: BTreeMap<String, (Duration, usize)> = BTreeMap::new();
    poll(
        3 * FAILOVER,
        "worker B to write every shard of A's",
        async || {
            let landed_a = read_landed(&out("a"));
            let landed_b = read_landed(&out("b"));
            for s in &theirs {
                if !taken_at.contains_key(s) && of(&landed_b, s) > b_before[s] {
                    taken_at.insert(s.clone(), (cut.elapsed(), of(&landed_a, s)));
                }
            }
            (taken_at.len() == theirs.len()).then_some(())
        },
    )
    .await;
    // Records keep arriving for a while; A's output of the moved shards must not grow.
    tokio::time::sleep(FAILOVER / 2).await;
    let landed = read_landed(&out("a"));
    for (s, (after, at_take)) in &taken_at {
        let now = of(&landed, s);
        eprintln!(
            "{s}: written by B {after:?} after the cut; A had written {at_take} of its records then, {now} now"
        );
        assert!(
            *after <= 2 * FAILOVER,
            "{s} was read again only {after:?} after A was cut off"
        );
        assert_eq!(
            now,
            *at_take,
            "A went on emitting {s} after B began to\n{}",
            a.log_tail(20)
        );
    }
    assert!(
        a.log()
            .contains("lease not confirmed within the failover time"),
        "A stopped its shards for the lease's local expiry\n{}",
        a.log_tail(20)
    );
    if b_joins_after_the_cut {
        assert!(
            b.log().contains("stolen=true"),
            "B stole none of A's leases; the test did not walk its path\n{}",
            b.log_tail(20)
        );
    }
    // A's route comes back; everything put is delivered, by one worker or the other.
    route_a.forward();
    stop.store(true, Ordering::SeqCst);
    let ledger = produce.await.unwrap();
    wait_until(Duration::from_secs(60), "every record to land", || {
        let all: HashSet<u64> = ids(&out("a")).union(&ids(&out("b"))).copied().collect();
        ledger.records.keys().all(|id| all.contains(id))
    });
    for w in [&mut a, &mut b] {
        w.terminate();
        assert!(w.wait(Duration::from_secs(60)).success());
    }
}

/// Issue 14, defect 6: an unreadable lease row was skipped silently, so its shard's children were
/// read before it ended (breaking per-key order across a reshard). The row now holds its children
/// back, with an error in the log, until it is mended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lease_row_holds_its_children_back_until_it_is_mended() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("unreadable");
    client.create(&stream, 1).await.unwrap();
    let shard = client.shards(&stream).await.unwrap().remove(0);
    let parent = shard.shard_id.clone();
    let before = put_records(&client, &stream, 0..100, 8, &|_| false).await;
    // A split (the local Kinesis names no parents for the children of UpdateShardCount).
    client.split_in_half(&stream, &shard).await.unwrap();
    let after = put_records(&client, &stream, 100..200, 8, &|_| false).await;
    let table = unique("leases-unreadable");
    let store = DynamoDbLeaseStore::connect("us-east-1", Some(&stack.dynamodb), &table)
        .await
        .unwrap();
    store
        .create(&Lease::new(
            parent.clone(),
            Checkpoint::TrimHorizon,
            vec![],
            None,
        ))
        .await
        .unwrap();
    let ddb = stack.dynamodb().await;
    let set_checkpoint = |value: &'static str| {
        ddb.update_item()
            .table_name(&table)
            .key("leaseKey", AttributeValue::S(parent.clone()))
            .update_expression("SET #c = :v")
            .expression_attribute_names("#c", "checkpoint")
            .expression_attribute_values(":v", AttributeValue::S(value.into()))
            .send()
    };
    set_checkpoint("not-a-sequence-number").await.unwrap();
    let work = Workdir::new();
    let config = work.config(&leased(&stream, &table, &stack, &stack.dynamodb, "w"));
    let mut w = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    wait_until(
        Duration::from_secs(30),
        "the unreadable row to be reported",
        || w.log().contains("lease row unreadable"),
    );
    // The children's leases exist by now (they were listed); give the worker a few scans to prove
    // it does not read them.
    poll(
        Duration::from_secs(30),
        "the children's leases",
        async || (store.list().await.ok()?.len() >= 3).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let landed = ids(&work.path("out"));
    assert!(
        after.records.keys().all(|id| !landed.contains(id)),
        "a child was read while its parent's row is unreadable"
    );
    set_checkpoint("TRIM_HORIZON").await.unwrap();
    wait_until(
        Duration::from_secs(60),
        "every record once the row is mended",
        || {
            let landed = ids(&work.path("out"));
            before
                .records
                .keys()
                .chain(after.records.keys())
                .all(|id| landed.contains(id))
        },
    );
    // Per key, the parent's records come before the children's.
    let mut last_seen: BTreeMap<String, u64> = BTreeMap::new();
    for l in read_landed(&work.path("out")) {
        let n = l.data["n"].as_u64().unwrap();
        if let Some(prev) = last_seen.insert(l.partition_key.clone(), n) {
            assert!(
                n > prev,
                "key {} out of order: {n} after {prev}",
                l.partition_key
            );
        }
    }
    w.terminate();
    assert!(w.wait(Duration::from_secs(60)).success());
}

/// Puts records in the background until stopped; returns the ledger.
fn producer(
    client: StreamClient,
    stream: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Ledger> {
    integration_tests::steady_producer(client, stream, 100, Duration::from_millis(100), stop)
}

/// Issue 14, defect 6: pages read by shards whose pipeline is full were held outside every byte
/// limit, so memory grew with the number of shards held. With a budget of `max_fetched_bytes`, the
/// pages handed on while the pipeline does not take them stay within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_waiting_for_a_full_pipeline_stay_within_the_fetched_bytes_budget() {
    use async_trait::async_trait;
    use kinesis_connectors_consumer::{
        Checkpointer, FileCheckpointStore, InitializationInput, ProcessRecordsInput,
        ProcessorError, ShardRecordProcessor, ShardRecordProcessorFactory, ShutdownReason, Worker,
        WorkerSettings,
    };
    use tokio_util::sync::CancellationToken;

    /// A processor whose pipeline never takes a page: it counts the page and waits forever.
    struct Full(Arc<AtomicUsize>);
    #[async_trait]
    impl ShardRecordProcessor for Full {
        async fn initialize(&mut self, _: InitializationInput) -> Result<(), ProcessorError> {
            Ok(())
        }
        async fn process_records(
            &mut self,
            _: ProcessRecordsInput,
            _: &Checkpointer,
        ) -> Result<(), ProcessorError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn shutdown(
            &mut self,
            _: ShutdownReason,
            _: &Checkpointer,
        ) -> Result<(), ProcessorError> {
            Ok(())
        }
    }
    struct Factory(Arc<AtomicUsize>);
    impl ShardRecordProcessorFactory for Factory {
        fn create_processor(&self) -> Box<dyn ShardRecordProcessor> {
            Box::new(Full(self.0.clone()))
        }
    }

    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("budget");
    let shards = 12;
    client.create(&stream, shards).await.unwrap();
    // ~1 MiB pages: 100 records of ~10 KiB per call, on every shard.
    let big = "y".repeat(10 * 1024);
    let entries: Vec<kinesis_connectors_consumer::PutEntry> = (0..shards as u64 * 120)
        .map(|i| {
            kinesis_connectors_consumer::PutEntry::new(
                format!("{{\"i\":{i},\"p\":\"{big}\"}}"),
                format!("k{i}"),
            )
        })
        .collect();
    // In calls of ~1.2 MB: the local Kinesis limits a request's body (base64 included) to 5 MiB.
    for chunk in entries.chunks(100) {
        client.put_batch(&stream, chunk.to_vec()).await.unwrap();
    }
    let work = Workdir::new();
    let store = Arc::new(FileCheckpointStore::open(work.path("leases.json"), &stream).unwrap());
    let handed_on = Arc::new(AtomicUsize::new(0));
    let mut settings = WorkerSettings::new(&stream);
    settings.reader.max_records = 100;
    settings.reader.max_fetched_bytes = 3 * 1024 * 1024;
    settings.reader.decoder = stack.decoder().await;
    let worker = Worker::new(
        client.sdk().clone(),
        settings,
        store,
        Arc::new(Factory(handed_on.clone())),
    );
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        async move { worker.run(cancel).await }
    });
    // Give every shard time to read (each would have handed on a page by now without the budget).
    poll(Duration::from_secs(30), "the first pages", async || {
        (handed_on.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = handed_on.load(Ordering::SeqCst);
    eprintln!(
        "{n} pages of ~1.2 MiB handed on to a full pipeline by {shards} shards, budget 3 MiB"
    );
    assert!(n <= 3, "{n} pages held, over the 3 MiB budget");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}

/// Found by the chaos suite (2026-12-02): a worker draining on SIGTERM closes its buffered batches
/// and stores each one's boundary before emitting it. When another worker took the lease just then,
/// the boundary write is refused and the batch is left to the shard's next reader — but the drain
/// kept waiting for that batch to be delivered: the worker hung until `shutdown_timeout` (30 s) and
/// exited 1. A lease lost while a shard finishes must end the wait: the shard is abandoned to its
/// new owner and the worker exits cleanly, long before the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_during_a_sigterm_drain_ends_the_drain_instead_of_hanging_it() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("drain-lost");
    client.create(&stream, 2).await.unwrap();
    put_records(&client, &stream, 0..500, 17, &|_| false).await;
    let table = unique("leases-drain");
    let port = integration_tests::free_port();
    let work = Workdir::new();
    // Everything read stays buffered (no count or age close) until the drain closes it.
    let config = work.config(&format!(
        "metrics_addr = \"127.0.0.1:{port}\"\n{}",
        file_pipeline(
            &stream,
            &stack.kinesis,
            &format!(
                r#"buffer = {{ max_records = 10000, max_age = "1h" }}
checkpoint = {{ type = "dynamodb", table = "{table}", endpoint = "{}", worker_id = "worker-a" }}"#,
                stack.dynamodb
            ),
        )
    ));
    let mut a = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    poll(
        Duration::from_secs(60),
        "A holding every record read",
        async || {
            let page = integration_tests::scrape_metrics(port).await?;
            let read = integration_tests::metric_value(&page, "kc_records_read_total", &[])?;
            (read >= 500.0).then_some(())
        },
    )
    .await;
    // Another worker takes both leases (as a balancer's steal does), and A is told to stop.
    let store = DynamoDbLeaseStore::connect("us-east-1", Some(&stack.dynamodb), &table)
        .await
        .unwrap();
    for lease in store.list().await.unwrap() {
        assert_eq!(lease.owner.as_deref(), Some("worker-a"));
        store
            .take(&lease.shard_id, lease.counter, "thief")
            .await
            .unwrap()
            .expect("the lease is taken");
    }
    let stolen = Instant::now();
    a.terminate();
    let status = tokio::task::block_in_place(|| a.wait(Duration::from_secs(60)));
    let took = stolen.elapsed();
    assert!(
        status.success() && took < Duration::from_secs(15),
        "A exited {status:?} {took:?} after its leases were taken\n{}",
        a.log_tail(20)
    );
    assert!(
        !a.log().contains("shutdown did not finish"),
        "{}",
        a.log_tail(20)
    );
}

/// Found by the chaos suite (2026-12-02): an emit is given up when its shard's lease runs out here,
/// but the deadline was fixed when the emit started (the last renewal plus the failover time), so
/// every emit slower than the failover time was given up and retried for ever, although the lease
/// was renewed all along — the shard never moved on, and a SIGTERM drain hung until its bound.
/// The deadline now moves with each renewal: emits of 3 s (S3 behind a 3 s link) with a 2 s
/// failover time complete, and every record lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_slower_than_the_failover_time_completes_while_the_lease_is_renewed() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("slow-emit");
    client.create(&stream, 1).await.unwrap();
    let ledger = put_records(&client, &stream, 0..200, 7, &|_| false).await;
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;
    let slow_s3 =
        integration_tests::fault_proxy::FaultProxy::slow(&stack.s3, Duration::from_secs(3)).await;
    let work = Workdir::new();
    let config = work.config(&format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms" }}
transformer = {{ type = "json" }}
buffer = {{ max_records = 100 }}
emitter = {{ type = "s3", bucket = "{bucket}", endpoint = "{s3}", format = "ndjson" }}
checkpoint = {{ type = "dynamodb", table = "{table}", endpoint = "{dynamodb}", worker_id = "w", failover_time = "2s" }}
"#,
        kinesis = stack.kinesis,
        s3 = slow_s3.url,
        dynamodb = stack.dynamodb,
        table = unique("leases-slow-emit"),
    ));
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let (objects, _) = poll(Duration::from_secs(45), "both batches in S3", async || {
        let objects = integration_tests::s3_objects(&s3, &bucket, "").await;
        (objects.len() >= 2).then_some(objects)
    })
    .await;
    c.terminate();
    assert!(
        tokio::task::block_in_place(|| c.wait(Duration::from_secs(40))).success(),
        "{}",
        c.log_tail(20)
    );
    let held: HashSet<u64> = objects
        .iter()
        .flat_map(|(_, body)| {
            String::from_utf8_lossy(body)
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(held.len(), ledger.records.len());
    assert!(
        !c.log().contains("lease ran out here; given up"),
        "{}",
        c.log_tail(20)
    );
}
