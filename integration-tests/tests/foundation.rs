//! Foundation, end to end against the local Kinesis: delivery and order, checkpoints, crash safety
//! under SIGKILL, dead letters for invalid JSON, and a shard split while the pipeline runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use integration_tests::{
    Connector, Stack, Workdir, file_pipeline, put_records, read_landed, unique, wait_until,
};
use kinesis_connectors_consumer::Checkpoint;
use rand::Rng;

fn checkpoint_seq(c: &Checkpoint) -> Option<kinesis_connectors_core::SequenceNumber> {
    c.position().map(|p| p.sequence.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_over_four_shards_are_delivered_in_shard_order_and_checkpointed() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-10k");
    client.create(&stream, 4).await.unwrap();
    let ledger = put_records(&client, &stream, 0..10_000, 97, &|_| false).await;
    assert_eq!(
        ledger.last_per_shard().len(),
        4,
        "records spread over 4 shards"
    );

    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 250, max_age = \"1s\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let landed = read_landed(&work.path("out"));
    assert_eq!(landed.len(), 10_000, "every record once");
    let ids: HashSet<u64> = landed.iter().map(|l| l.id()).collect();
    assert_eq!(ids.len(), 10_000);
    // Order per shard: within the output, each shard's sequence numbers increase.
    let mut last: HashMap<&str, &kinesis_connectors_core::SequenceNumber> = HashMap::new();
    for l in &landed {
        if let Some(prev) = last.insert(&l.shard, &l.sequence) {
            assert!(&l.sequence > prev, "shard {} out of order", l.shard);
        }
        assert_eq!(
            ledger.records[&l.id()].0,
            l.shard,
            "record landed with its shard"
        );
    }
    // Checkpoint = last sequence per shard.
    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        assert_eq!(
            checkpoint_seq(&checkpoints[&shard]).as_ref(),
            Some(&seq),
            "checkpoint of {shard}"
        );
    }
    assert!(work.dead_letters("p").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_three_random_moments_loses_nothing_and_duplicates_only_after_the_last_checkpoint()
 {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-kill");
    client.create(&stream, 4).await.unwrap();
    let total = 12_000u64;
    let ledger = put_records(&client, &stream, 0..total, 61, &|_| false).await;

    let work = Workdir::new();
    // Small pages and batches make the run last a few seconds, so kills land mid-stream.
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 40, max_age = \"200ms\" }",
    ));
    let config_text = std::fs::read_to_string(&config).unwrap().replace(
        "idle_poll_interval = \"200ms\"",
        "idle_poll_interval = \"200ms\", max_records_per_call = 150",
    );
    std::fs::write(&config, config_text).unwrap();

    let mut rng = rand::rng();
    // Checkpoints as they stood when run k started (run 0: none).
    let mut at_start: Vec<BTreeMap<String, Checkpoint>> = vec![BTreeMap::new()];
    for run in 0..3 {
        let out = format!("out-{run}");
        let mut c = Connector::start(
            work.dir.path(),
            &config,
            "p",
            &[],
            &[("OUT_DIR", out.clone())],
        );
        // A random moment while records are flowing: after a random share of the remaining records
        // landed in this run's output (or a short random time if the run is still starting).
        let target = rng.random_range(200..1_500);
        let out_dir = work.path(&out);
        wait_until(
            Duration::from_secs(60),
            "records to flow before the kill",
            || read_landed(&out_dir).len() >= target,
        );
        c.kill();
        at_start.push(work.checkpoints("p"));
        eprintln!(
            "run {run}: killed after >= {target} records; checkpoints {:?}",
            at_start
                .last()
                .unwrap()
                .values()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        );
    }
    Connector::run_until_tip(
        work.dir.path(),
        &config,
        "p",
        &[("OUT_DIR", "out-3".into())],
    );

    let mut seen: HashMap<u64, u32> = HashMap::new();
    for (run, start) in at_start.iter().enumerate() {
        let landed = read_landed(&work.path(&format!("out-{run}")));
        let mut in_run = HashSet::new();
        for l in &landed {
            assert!(
                in_run.insert(l.id()),
                "run {run}: record {} twice in one run",
                l.id()
            );
            *seen.entry(l.id()).or_default() += 1;
            // A restarted run delivers only records after the checkpoint stored when it started.
            if let Some(seq) = start.get(&l.shard).and_then(checkpoint_seq) {
                assert!(
                    l.sequence > seq,
                    "run {run} redelivered record {} at or before its checkpoint",
                    l.id()
                );
            }
        }
    }
    let missing: Vec<u64> = (0..total).filter(|id| !seen.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "lost {} records, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicates = seen.values().filter(|n| **n > 1).count();
    eprintln!("{total} records, {duplicates} delivered more than once (all after a checkpoint)");
    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        assert_eq!(checkpoint_seq(&checkpoints[&shard]).as_ref(), Some(&seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_records_are_dead_lettered_and_the_rest_flows() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-dlq");
    client.create(&stream, 2).await.unwrap();
    let bad = |id: u64| id % 100 == 7;
    let ledger = put_records(&client, &stream, 0..1_000, 13, &bad).await;

    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 100, max_age = \"500ms\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let landed = read_landed(&work.path("out"));
    assert_eq!(landed.len(), 990);
    assert!(landed.iter().all(|l| !bad(l.id())));
    let dead = work.dead_letters("p");
    assert_eq!(dead.len(), 10);
    for d in &dead {
        assert!(d.reason.starts_with("invalid JSON"), "{}", d.reason);
        let text = String::from_utf8(d.data.to_vec()).unwrap();
        let id: u64 = text.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(bad(id));
        assert_eq!(
            ledger.records[&id].1, d.sequence,
            "dead letter carries the record's sequence number"
        );
        assert_eq!(ledger.records[&id].0, d.shard);
        assert_eq!(d.pipeline, "p");
    }
    // Dead-lettered records count as delivered: checkpoints reach the last record of each shard.
    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        assert_eq!(checkpoint_seq(&checkpoints[&shard]).as_ref(), Some(&seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_while_running_reads_children_after_the_parent_ends_and_keeps_per_key_order() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-split");
    client.create(&stream, 1).await.unwrap();
    let keys = 20;
    let mut ledger = put_records(&client, &stream, 0..2_000, keys, &|_| false).await;

    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 100, max_age = \"200ms\" }",
    ));
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let out = work.path("out");
    wait_until(
        Duration::from_secs(60),
        "the pipeline to read the parent",
        || read_landed(&out).len() >= 500,
    );

    let parent = client.shards(&stream).await.unwrap().remove(0);
    client.split_in_half(&stream, &parent).await.unwrap();
    let children: Vec<String> = client
        .shards(&stream)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(&parent.shard_id))
        .map(|s| s.shard_id)
        .collect();
    assert_eq!(children.len(), 2);
    let after = put_records(&client, &stream, 2_000..4_000, keys, &|_| false).await;
    ledger.records.extend(after.records);
    assert!(
        ledger
            .records
            .range(2_000..)
            .all(|(_, (s, _))| children.contains(s)),
        "new records go to the children"
    );

    wait_until(Duration::from_secs(60), "every record to land", || {
        read_landed(&out).len() >= 4_000
    });
    c.terminate();
    assert!(
        c.wait(Duration::from_secs(30)).success(),
        "graceful shutdown"
    );

    let landed = read_landed(&out);
    let ids: HashSet<u64> = landed.iter().map(|l| l.id()).collect();
    assert_eq!(ids.len(), 4_000, "no record lost");
    // Children only after the parent's end: every parent line precedes every child line.
    let last_parent = landed
        .iter()
        .rposition(|l| l.shard == parent.shard_id)
        .unwrap();
    let first_child = landed
        .iter()
        .position(|l| children.contains(&l.shard))
        .unwrap();
    assert!(
        last_parent < first_child,
        "a child record landed before the parent was finished"
    );
    // Per-key order: each key's counter increases through the output.
    let mut per_key: HashMap<String, i64> = HashMap::new();
    for l in &landed {
        let n = l.data["n"].as_i64().unwrap();
        let prev = per_key.insert(l.partition_key.clone(), n).unwrap_or(-1);
        assert!(
            n > prev,
            "key {} out of order: {n} after {prev}",
            l.partition_key
        );
    }
    let checkpoints = work.checkpoints("p");
    assert_eq!(checkpoints[&parent.shard_id], Checkpoint::ShardEnd);
    for child in &children {
        assert!(
            checkpoints[child].position().is_some(),
            "child {child} checkpointed"
        );
    }
}

/// GetRecords throttled (every other call, 10 times, by the fault proxy): the reader backs off, retries
/// the same iterator no sooner than the poll interval, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_get_records_back_off_and_lose_nothing() {
    use integration_tests::fault_proxy::{Fault, FaultProxy};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-throttle");
    client.create(&stream, 2).await.unwrap();
    put_records(&client, &stream, 0..2_000, 7, &|_| false).await;

    let throttled = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(AtomicU32::new(0));
    let t = throttled.clone();
    let proxy = FaultProxy::start(
        &stack.kinesis,
        Arc::new(move |_, _, headers, _, _| {
            let op = headers.get("x-amz-target")?.to_str().ok()?;
            if !op.ends_with("GetRecords") {
                return None;
            }
            // Every other GetRecords call, ten times: 2,000 records in pages of 100 take at least 20 calls.
            if seen.fetch_add(1, Ordering::SeqCst).is_multiple_of(2)
                && t.load(Ordering::SeqCst) < 10
            {
                t.fetch_add(1, Ordering::SeqCst);
                return Some(Fault::aws_json(
                    "ProvisionedThroughputExceededException",
                    "Rate exceeded for shard",
                ));
            }
            None
        }),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&file_pipeline(&stream, &proxy.url, "").replace(
        "idle_poll_interval = \"200ms\"",
        "idle_poll_interval = \"200ms\", max_records_per_call = 100",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    assert_eq!(throttled.load(Ordering::SeqCst), 10, "faults were injected");
    let ids: HashSet<u64> = read_landed(&work.path("out"))
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(ids.len(), 2_000, "every record delivered");
    // After a throttle, the same iterator is retried (same body), and not sooner than 200 ms later.
    let calls = proxy.calls("GetRecords");
    let mut checked = 0;
    for (i, c) in calls.iter().enumerate().filter(|(_, c)| c.injected) {
        let retry = calls[i + 1..]
            .iter()
            .find(|n| n.body == c.body)
            .expect("throttled call retried");
        let gap = retry.at - c.at;
        assert!(gap >= Duration::from_millis(190), "retried after {gap:?}");
        checked += 1;
    }
    assert_eq!(checked, 10);
}

/// Iterators expire (1 s lifetime on a private Kinesis) while a shard idles between polls: the reader
/// gets a new iterator after the last record it read, and the next records arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_iterators_are_replaced_without_loss_or_duplicates() {
    use integration_tests::fault_proxy::FaultProxy;
    use std::sync::Arc;

    let kinesis = integration_tests::private_kinesis(ferrokinesis::store::StoreOptions {
        create_stream_ms: 0,
        update_stream_ms: 0,
        iterator_ttl_seconds: 1,
        ..Default::default()
    })
    .await;
    let proxy = FaultProxy::start(&kinesis, Arc::new(|_, _, _, _, _| None)).await;
    let client =
        kinesis_connectors_consumer::StreamClient::connect("us-east-1", Some(&kinesis)).await;
    let stream = unique("foundation-expiry");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..100, 5, &|_| false).await;

    let work = Workdir::new();
    // Polls 2.5 s apart after an empty page: longer than the iterator's life.
    let config = work.config(
        &file_pipeline(
            &stream,
            &proxy.url,
            "buffer = { max_records = 10, max_age = \"100ms\" }",
        )
        .replace(
            "idle_poll_interval = \"200ms\"",
            "idle_poll_interval = \"2500ms\"",
        ),
    );
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let out = work.path("out");
    wait_until(Duration::from_secs(30), "the first records", || {
        read_landed(&out).len() >= 100
    });
    wait_until(
        Duration::from_secs(30),
        "an expired iterator to be replaced",
        || {
            proxy.calls("GetRecords").iter().any(|s| s.status == 400)
                && proxy.calls("GetShardIterator").len() >= 2
        },
    );
    put_records(&client, &stream, 100..200, 5, &|_| false).await;
    wait_until(Duration::from_secs(30), "the later records", || {
        read_landed(&out).len() >= 200
    });
    c.terminate();
    assert!(c.wait(Duration::from_secs(30)).success());
    let landed = read_landed(&out);
    let ids: HashSet<u64> = landed.iter().map(|l| l.id()).collect();
    assert_eq!(
        (landed.len(), ids.len()),
        (200, 200),
        "each record exactly once"
    );
}

/// The README's first command: the demo puts sample data, runs every configured pipeline and prints,
/// per pipeline, put against delivered + filtered + dead-lettered — and they match.
#[test]
fn the_demo_prints_matching_counts_for_every_pipeline() {
    let _stack = Stack::from_env();
    let out = tempfile::tempdir().unwrap();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/demo");
    let output = std::process::Command::new("bash")
        .arg(demo)
        .env("KC_BIN", integration_tests::connector_bin())
        .env("KC_DEMO_OUTPUT", out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = integration_tests::demo_summary_rows(&stdout);
    let sinks: Vec<&str> = rows
        .iter()
        .map(|r| r.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        sinks,
        [
            "file", "s3", "dynamodb", "search", "redshift", "iceberg", "stdout"
        ],
        "one row per sink:\n{stdout}"
    );
    for row in rows {
        // PIPELINE SINK PUT DELIVERED FILTERED DEAD LANDED EXPECTED MATCH WHERE
        let cols: Vec<&str> = row.split_whitespace().collect();
        let n = |i: usize| cols[i].parse::<u64>().unwrap();
        assert_eq!(n(2), 10_020, "{row}");
        assert!(n(3) > 0 && n(6) > 0, "non-zero counts: {row}");
        assert_eq!(
            n(3) + n(4) + n(5),
            n(2),
            "put = delivered + filtered + dead-lettered: {row}"
        );
        assert_eq!(n(5), 20, "the invalid records are dead-lettered: {row}");
        assert_eq!(n(6), n(7), "what landed is what was expected: {row}");
        assert_eq!(cols[8], "yes", "{row}");
    }
}

/// Sixteen shards behind a slow link (every call takes 100 ms) with `max_concurrent_requests = 3`: at no
/// moment are more than three GetShardIterator / GetRecords calls in flight, and every record arrives.
/// Without the limit every shard has a call (and an HTTP connection) of its own in flight at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_stay_within_max_concurrent_requests() {
    use integration_tests::fault_proxy::FaultProxy;

    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-limit");
    client.create(&stream, 16).await.unwrap();
    put_records(&client, &stream, 0..800, 7, &|_| false).await;
    let proxy = FaultProxy::slow(&stack.kinesis, Duration::from_millis(100)).await;
    let work = Workdir::new();
    let config = work.config(&file_pipeline(&stream, &proxy.url, "").replace(
        "idle_poll_interval = \"200ms\"",
        "idle_poll_interval = \"200ms\", max_concurrent_requests = 3",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let ids: HashSet<u64> = read_landed(&work.path("out"))
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(ids.len(), 800, "every record delivered");
    let mut calls = proxy.calls("GetShardIterator");
    calls.extend(proxy.calls("GetRecords"));
    assert!(
        calls.len() >= 32,
        "each shard asked for an iterator and read"
    );
    // Most calls in flight at once: sweep the [arrived, answered] intervals.
    let mut edges: Vec<(Instant, i32)> = calls
        .iter()
        .flat_map(|c| [(c.at, 1), (c.done, -1)])
        .collect();
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    assert!(most <= 3, "{most} calls in flight at once");
    assert_eq!(most, 3, "the limit was reached (the test exercises it)");
}
