//! The S3 emitter end to end against the local S3 (s3s-fs): contents and order, deterministic keys
//! under SIGKILL, formats readable by third-party tools, multipart uploads, cross-shard batching, and
//! the start-up check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::fault_proxy::FaultProxy;
use integration_tests::{
    Closes, Connector, Ledger, Stack, Workdir, free_port, metric_value, put_records, s3_body,
    s3_keys, s3_objects, scrape_metrics, unique,
};

/// No `key` option: the emitter's default key template,
/// `{prefix}{pipeline}/{yyyy}/{MM}/{dd}/{HH}/{shard}-{first_sequence}-{last_sequence}{ext}` — as a user's
/// configuration would have it (the local S3 takes S3-length keys).
const DEFAULT_KEY: &str = "";

fn s3_pipeline(
    stream: &str,
    stack: &Stack,
    bucket: &str,
    emitter_extra: &str,
    pipeline_extra: &str,
) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "1s" }}
transformer = {{ type = "json" }}
emitter = {{ type = "s3", bucket = "{bucket}", endpoint = "{s3}", {emitter_extra} }}
{pipeline_extra}
"#,
        kinesis = stack.kinesis,
        s3 = stack.s3
    )
}

/// The records of each shard, in sequence order, as put.
fn per_shard(ledger: &Ledger) -> HashMap<String, Vec<u64>> {
    let mut by_shard: HashMap<String, Vec<(kinesis_connectors_core::SequenceNumber, u64)>> =
        HashMap::new();
    for (id, (shard, seq)) in &ledger.records {
        by_shard
            .entry(shard.clone())
            .or_default()
            .push((seq.clone(), *id));
    }
    by_shard
        .into_iter()
        .map(|(s, mut v)| {
            v.sort();
            (s, v.into_iter().map(|(_, id)| id).collect())
        })
        .collect()
}

fn ids_of(body: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_become_objects_holding_exactly_the_records_in_shard_order() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-10k");
    client.create(&stream, 4).await.unwrap();
    let ledger = put_records(&client, &stream, 0..10_000, 101, &|_| false).await;
    let bucket = stack.bucket().await;

    let work = Workdir::new();
    // The default key template: p/yyyy/MM/dd/HH/{shard}-{first}-{last}.ndjson.
    let config = work.config(&s3_pipeline(
        &stream,
        &stack,
        &bucket,
        "format = \"ndjson\"",
        "buffer = { max_records = 500, max_age = \"1h\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let s3 = stack.s3().await;
    let objects = s3_objects(&s3, &bucket, "p/").await;
    assert!(
        objects.len() >= 20,
        "10,000 records in batches of 500: {} objects",
        objects.len()
    );
    // Group by shard, order by first sequence.
    let mut by_shard: HashMap<String, Vec<(String, Vec<u64>)>> = HashMap::new();
    for (key, body) in &objects {
        let name = key.rsplit('/').next().unwrap();
        assert!(
            key.starts_with("p/20") && key.ends_with(".ndjson") && key.matches('/').count() == 5,
            "{key}"
        );
        let mut parts = name.trim_end_matches(".ndjson").splitn(3, '-');
        let shard = format!("{}-{}", parts.next().unwrap(), parts.next().unwrap());
        let range = parts.next().unwrap().to_owned();
        let (first, _) = range.split_once('-').unwrap();
        by_shard
            .entry(shard)
            .or_default()
            .push((format!("{:0>130}", first), ids_of(body)));
    }
    let expected = per_shard(&ledger);
    assert_eq!(by_shard.len(), expected.len());
    let mut total = 0;
    for (shard, mut objs) in by_shard {
        objs.sort();
        let landed: Vec<u64> = objs.into_iter().flat_map(|(_, ids)| ids).collect();
        total += landed.len();
        assert_eq!(
            landed, expected[&shard],
            "shard {shard}: concatenated objects differ from the records"
        );
    }
    assert_eq!(total, 10_000);
    // And the bytes are the records' own JSON text, one per line.
    let (_, first_body) = &objects[0];
    let first_line = String::from_utf8_lossy(first_body)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let id = serde_json::from_str::<serde_json::Value>(&first_line).unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        first_line,
        integration_tests::test_record(id, &format!("k-{}", id % 101), id / 101)
    );
}

/// Issue 14, defect 1: one record of 1,200 items with batches of 500 made three batches of one
/// range, so one key: 200 of 1,200 lines landed and the run said all were emitted. Each batch of a
/// record's items now has a key of its own; every item lands once, in shard order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_many_items_land_every_item_once_in_shard_order() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-multi");
    client.create(&stream, 2).await.unwrap();
    let ledger = integration_tests::put_multi_item_records(&client, &stream, 10, 1_200, 3).await;
    let bucket = stack.bucket().await;
    let work = Workdir::new();
    let config = work.config(
        &s3_pipeline(
            &stream,
            &stack,
            &bucket,
            "prefix = \"multi/\", format = \"ndjson\"",
            "buffer = { max_records = 500, max_age = \"1h\" }",
        )
        .replace("type = \"json\"", "type = \"json_lines\""),
    );
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let objects = s3_objects(&stack.s3().await, &bucket, "multi/").await;
    // 12,000 items in batches of 500 at most: 24 objects at least, each key its own.
    assert!(objects.len() >= 24, "{} objects", objects.len());
    let mut by_shard: HashMap<String, Vec<Vec<u64>>> = HashMap::new();
    for (key, body) in &objects {
        // The default key: multi/p/yyyy/MM/dd/HH/{shard}-{first_sequence}-{last_sequence}.ndjson
        let name = key.rsplit('/').next().unwrap();
        let shard: String = name.splitn(3, '-').take(2).collect::<Vec<_>>().join("-");
        let ids = ids_of(body);
        assert!(ids.len() <= 500, "{key}: {} items", ids.len());
        by_shard.entry(shard).or_default().push(ids);
    }
    let expected = per_shard(&ledger);
    let mut total = 0;
    for (shard, mut objs) in by_shard {
        objs.sort();
        let landed: Vec<u64> = objs.into_iter().flatten().collect();
        total += landed.len();
        assert_eq!(
            landed, expected[&shard],
            "shard {shard}: the objects do not hold each item once, in order"
        );
    }
    assert_eq!(total, 12_000);
}

/// How a round of [`held_once_across_restarts`] ends.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL at a random moment (mid-batch, mid-emit, between emit and checkpoint).
    Kill,
    /// SIGTERM: the buffers drain (batches close for the drain), then a restart.
    Term,
    /// SIGKILL while a second worker runs: the killed worker's leases move to it mid-batch (after
    /// the failover time), and the restarted one steals its share back (leases move again).
    Move,
    /// SIGKILL at a random moment while batches close by memory pressure (`max_buffered_bytes`).
    Pressure,
}

/// Issue 16: a quiet shard at the tip closes its batches by age (or, on SIGTERM, by the drain; or,
/// when the shards' buffers together reach `max_buffered_bytes`, by memory pressure) — closes the
/// records alone cannot reproduce, so a restart used to re-form them differently and write items a
/// second time under other keys (RELIABILITY.md, the chaos figures of 2026-11-25). The boundary of
/// each such batch is stored before it is emitted: after every kill or restart each item is in
/// exactly one object. Each round waits until the worker's `/metrics` counts closes of the kind
/// under test, so the test cannot pass on batches that closed otherwise.
async fn held_once_across_restarts(stop: Stop) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-once");
    client.create(&stream, 2).await.unwrap();
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;
    let closes = match stop {
        Stop::Pressure => Closes::Pressure,
        _ => Closes::Age,
    };
    let (_slow_table, lines) =
        integration_tests::closes_with_slow_checkpoints(&stack, "${WORKER}", closes).await;
    let work = Workdir::new();
    let config = work.config(&format!(
        "metrics_addr = \"127.0.0.1:${{METRICS_PORT}}\"\n{}",
        s3_pipeline(
            &stream,
            &stack,
            &bucket,
            "prefix = \"once/\", format = \"ndjson\"",
            &lines,
        )
    ));
    let halt = Arc::new(AtomicBool::new(false));
    let producer =
        integration_tests::trickle_producer(client.clone(), stream.clone(), halt.clone());
    // Listing only (an object being written may be listed before it can be read); s3s-fs may
    // answer a listing that races a write with InternalError, and the poll asks again.
    let count = async || {
        let l = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("once/")
            .send()
            .await;
        l.ok().map(|l| l.contents().len())
    };
    let port = free_port();
    let worker = |name: &str, port: u16| {
        vec![
            ("WORKER", name.to_owned()),
            ("METRICS_PORT", port.to_string()),
        ]
    };
    let other_port = free_port();
    let mut other = matches!(stop, Stop::Move)
        .then(|| Connector::start(work.dir.path(), &config, "p", &[], &worker("b", other_port)));
    let closed_by = async |port: u16| {
        let page = scrape_metrics(port).await?;
        metric_value(
            &page,
            "kc_batches_closed_total",
            &[("reason", closes.reason())],
        )
    };
    let mut closed_by_reason = 0.0;
    for round in 0..4 {
        let mut c = Connector::start(work.dir.path(), &config, "p", &[], &worker("w", port));
        // With two workers either may hold the quiet shards this round (the restarted one may not have
        // stolen a lease back yet): count both, the long-lived one's closes since the round began.
        let other_before = match other {
            Some(_) => closed_by(other_port).await.unwrap_or(0.0),
            None => 0.0,
        };
        let closed = async || {
            let mine = closed_by(port).await.unwrap_or(0.0);
            let theirs = match other {
                Some(_) => closed_by(other_port).await.unwrap_or(0.0) - other_before,
                None => 0.0,
            };
            Some(mine + theirs).filter(|n| *n > 0.0)
        };
        let (before, _) =
            integration_tests::poll(Duration::from_secs(10), "a listing", count).await;
        // With two workers writing, a round waits for more objects (more kills mid-batch).
        let per_round = if matches!(stop, Stop::Move) { 5 } else { 2 };
        let target = before + per_round + round % 2;
        integration_tests::poll(
            Duration::from_secs(60),
            "objects closed by age",
            async || count().await.filter(|n| *n >= target),
        )
        .await;
        let (n, _) = integration_tests::poll(
            Duration::from_secs(30),
            &format!("batches closed by {}", closes.reason()),
            closed,
        )
        .await;
        closed_by_reason += n;
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 700)).await;
        match stop {
            Stop::Kill | Stop::Move | Stop::Pressure => c.kill(),
            Stop::Term => {
                c.terminate();
                assert!(
                    c.wait(Duration::from_secs(60)).success(),
                    "{}",
                    c.log_tail(20)
                );
            }
        }
    }
    halt.store(true, Ordering::SeqCst);
    let ledger = producer.await.unwrap();
    if let Some(mut b) = other.take() {
        assert!(
            b.log().contains("lease taken"),
            "the second worker never took a lease\n{}",
            b.log_tail(20)
        );
        b.terminate();
        assert!(
            b.wait(Duration::from_secs(60)).success(),
            "{}",
            b.log_tail(20)
        );
    }
    Connector::run_until_tip(work.dir.path(), &config, "p", &worker("w", port));
    let objects = s3_objects(&s3, &bucket, "once/").await;
    let mut held: HashMap<u64, Vec<&str>> = HashMap::new();
    for (key, body) in &objects {
        let ids = ids_of(body);
        assert!(
            ids.len() < 1000,
            "{key}: a batch closed by count; the test wants age closes"
        );
        for id in ids {
            held.entry(id).or_default().push(key);
        }
    }
    let lost: Vec<u64> = ledger
        .records
        .keys()
        .filter(|id| !held.contains_key(id))
        .copied()
        .collect();
    let twice: Vec<(&u64, &Vec<&str>)> = held.iter().filter(|(_, k)| k.len() > 1).collect();
    eprintln!(
        "{stop:?}: {} records, {} objects, {closed_by_reason} closed by {} before the kills, {} lost, {} held twice",
        ledger.records.len(),
        objects.len(),
        closes.reason(),
        lost.len(),
        twice.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        twice.is_empty(),
        "{} items held twice, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    assert!(objects.len() >= 8, "{} objects", objects.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_closed_by_age_are_held_once_across_sigkills() {
    held_once_across_restarts(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_closed_by_a_sigterm_drain_are_held_once_after_the_restart() {
    held_once_across_restarts(Stop::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_leases_moved_between_workers_mid_batch_are_held_once() {
    held_once_across_restarts(Stop::Move).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_closed_by_memory_pressure_are_held_once_across_sigkills() {
    held_once_across_restarts(Stop::Pressure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_leave_the_same_object_keys_as_an_uninterrupted_run() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-kill");
    client.create(&stream, 2).await.unwrap();
    put_records(&client, &stream, 0..6_000, 31, &|_| false).await;
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;
    // Slow enough to be killed mid-stream: pages of 100 records every 200 ms per shard.
    let pipeline = |prefix: &str| {
        s3_pipeline(
            &stream,
            &stack,
            &bucket,
            &format!("prefix = \"{prefix}\""),
            "buffer = { max_records = 150, max_age = \"1h\" }",
        )
        .replace(
            "idle_poll_interval = \"200ms\"",
            "idle_poll_interval = \"200ms\", max_records_per_call = 100",
        )
    };

    let clean = Workdir::new();
    let config = clean.config(&pipeline("clean/"));
    Connector::run_until_tip(clean.dir.path(), &config, "p", &[]);
    let clean_keys: Vec<String> = s3_objects(&s3, &bucket, "clean/")
        .await
        .into_iter()
        .map(|(k, _)| k["clean/".len()..].to_owned())
        .collect();

    let work = Workdir::new();
    let config = work.config(&pipeline("killed/"));
    for _ in 0..2 {
        let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
        let before = s3_objects(&s3, &bucket, "killed/").await.len();
        let target = before + 3 + (rand::random::<u32>() % 5) as usize;
        let mut n = before;
        for _ in 0..600 {
            n = s3_objects(&s3, &bucket, "killed/").await.len();
            if n >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(n >= target, "objects did not appear");
        c.kill();
    }
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let killed_keys: Vec<String> = s3_objects(&s3, &bucket, "killed/")
        .await
        .into_iter()
        .map(|(k, _)| k["killed/".len()..].to_owned())
        .collect();
    assert_eq!(killed_keys, clean_keys, "a crash added or changed objects");
    assert!(clean_keys.len() >= 40);
}

fn python_reads_parquet(path: &std::path::Path) -> (u64, Vec<String>) {
    let script = "import sys, pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1])\nprint(t.num_rows)\nprint(','.join(t.column_names))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .env(
            "PYTHONPATH",
            std::env::var("KC_PYTHONPATH").unwrap_or_default(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let rows = lines.next().unwrap().trim().parse().unwrap();
    let cols = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    (rows, cols)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_zstd_and_parquet_objects_are_read_by_standard_tools() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-formats");
    client.create(&stream, 2).await.unwrap();
    // Two records do not fit the Parquet schema (a string where the schema says int64).
    put_records(&client, &stream, 0..1_000, 17, &|_| false).await;
    let odd = vec![
        kinesis_connectors_consumer::PutEntry {
            data: bytes::Bytes::from_static(br#"{"id":"x1","key":"k","n":1}"#),
            partition_key: "odd".into(),
            explicit_hash_key: None,
        },
        kinesis_connectors_consumer::PutEntry {
            data: bytes::Bytes::from_static(br#"{"id":"x2","key":"k","n":2}"#),
            partition_key: "odd".into(),
            explicit_hash_key: None,
        },
    ];
    client.put_batch(&stream, odd).await.unwrap();
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();

    let cases = [
        ("gz", "compression = \"gzip\", prefix = \"gz/\""),
        ("zst", "compression = \"zstd\", prefix = \"zst/\""),
        (
            "parquet",
            "format = \"parquet\", compression = \"zstd\", prefix = \"parquet/\", schema = [{ name = \"id\", type = \"int64\" }, { name = \"key\", type = \"string\" }, { name = \"n\", type = \"int64\" }, { name = \"pad\", type = \"string\" }]",
        ),
    ];
    for (name, options) in cases {
        let work = Workdir::new();
        let config = work.config(&s3_pipeline(
            &stream,
            &stack,
            &bucket,
            options,
            "buffer = { max_records = 300, max_age = \"1h\" }",
        ));
        Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
        let objects = s3_objects(&s3, &bucket, &format!("{name}/")).await;
        assert!(!objects.is_empty(), "{name}: no objects");
        let mut rows = 0u64;
        for (i, (key, body)) in objects.iter().enumerate() {
            let path = dir.path().join(format!("{name}-{i}"));
            std::fs::write(&path, body).unwrap();
            match name {
                "gz" => {
                    assert!(key.ends_with(".ndjson.gz"), "{key}");
                    let t = std::process::Command::new("gzip")
                        .arg("-t")
                        .arg(&path)
                        .status()
                        .unwrap();
                    assert!(t.success(), "gzip -t failed on {key}");
                    let out = std::process::Command::new("gzip")
                        .arg("-dc")
                        .arg(&path)
                        .output()
                        .unwrap();
                    rows += String::from_utf8(out.stdout).unwrap().lines().count() as u64;
                }
                "zst" => {
                    assert!(key.ends_with(".ndjson.zst"), "{key}");
                    let out = std::process::Command::new("zstd")
                        .arg("-dc")
                        .arg(&path)
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "zstd -dc failed on {key}");
                    rows += String::from_utf8(out.stdout).unwrap().lines().count() as u64;
                }
                _ => {
                    assert!(key.ends_with(".parquet"), "{key}");
                    let (n, cols) = python_reads_parquet(&path);
                    assert_eq!(cols, ["id", "key", "n", "pad"]);
                    rows += n;
                }
            }
        }
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(&objects[0].0)
            .send()
            .await
            .unwrap();
        match name {
            "gz" => assert_eq!(head.content_encoding(), Some("gzip")),
            "zst" => assert_eq!(head.content_encoding(), Some("zstd")),
            _ => assert_eq!(head.content_type(), Some("application/vnd.apache.parquet")),
        }
        if name == "parquet" {
            assert_eq!(
                rows, 1_000,
                "parquet rows (the two unfit records are dead-lettered)"
            );
            let dead = work.dead_letters("p");
            assert_eq!(dead.len(), 2);
            assert!(
                dead[0]
                    .reason
                    .contains("\"id\": expected an int64, got a string"),
                "{}",
                dead[0].reason
            );
        } else {
            assert_eq!(rows, 1_002, "{name} rows");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_part_size_is_uploaded_in_parts() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-multipart");
    client.create(&stream, 1).await.unwrap();
    // ~12 MiB of 1 KiB records.
    let entries: Vec<_> = (0..12_000u64)
        .map(|i| kinesis_connectors_consumer::PutEntry {
            data: bytes::Bytes::from(format!(r#"{{"id":{i},"pad":"{}"}}"#, "y".repeat(1_000))),
            partition_key: format!("k{i}"),
            explicit_hash_key: None,
        })
        .collect();
    client.put_batch(&stream, entries).await.unwrap();
    let bucket = stack.bucket().await;
    let proxy = FaultProxy::start(&stack.s3, Arc::new(|_, _, _, _, _| None)).await;

    let work = Workdir::new();
    // The default key template here too (s3s-fs alone named multipart state after the whole key).
    let text = s3_pipeline(
        &stream,
        &stack,
        &bucket,
        "part_size = \"5MiB\"",
        "buffer = { max_records = 100000, max_bytes = \"64MiB\", max_age = \"1h\" }",
    )
    .replace(
        &format!("endpoint = \"{}\", ", stack.s3),
        &format!("endpoint = \"{}\", ", proxy.url),
    );
    let config = work.config(&text);
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let log = proxy.log();
    let parts: Vec<_> = log
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains("partNumber="))
        .collect();
    let completes = log
        .iter()
        .filter(|s| s.method == "POST" && s.path.contains("uploadId="))
        .count();
    assert!(
        parts.len() >= 3,
        "12 MiB in 5 MiB parts: {} UploadPart calls",
        parts.len()
    );
    assert!(
        parts.iter().all(|p| p.body.len() <= 6 * 1024 * 1024),
        "a part larger than the part size was sent"
    );
    assert_eq!(completes, 1, "one CompleteMultipartUpload");
    let objects = s3_objects(&stack.s3().await, &bucket, "").await;
    assert_eq!(objects.len(), 1);
    let ids = ids_of(&objects[0].1);
    assert_eq!(ids, (0..12_000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_batching_over_sixteen_quiet_shards_writes_far_fewer_objects() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-cross");
    client.create(&stream, 16).await.unwrap();
    let ledger = put_records(&client, &stream, 0..800, 400, &|_| false).await;
    assert_eq!(ledger.last_per_shard().len(), 16, "every shard has records");
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;

    let mut counts = BTreeMap::new();
    for (prefix, across) in [("per-shard/", false), ("across/", true)] {
        let work = Workdir::new();
        let config = work.config(&s3_pipeline(
            &stream,
            &stack,
            &bucket,
            &format!("prefix = \"{prefix}\""),
            &format!(
                "buffer = {{ max_records = 400, max_age = \"1h\", batch_across_shards = {across} }}"
            ),
        ));
        Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
        let objects = s3_objects(&s3, &bucket, prefix).await;
        let ids: HashSet<u64> = objects.iter().flat_map(|(_, b)| ids_of(b)).collect();
        assert_eq!(ids.len(), 800, "{prefix}: every record once");
        assert_eq!(
            objects.iter().map(|(_, b)| ids_of(b).len()).sum::<usize>(),
            800,
            "{prefix}: no duplicates"
        );
        // Every shard is checkpointed at its last record.
        let cps = work.checkpoints("p");
        for (shard, seq) in ledger.last_per_shard() {
            assert_eq!(
                cps[&shard].position().map(|p| p.sequence.clone()),
                Some(seq)
            );
        }
        counts.insert(prefix, objects.len());
    }
    eprintln!("objects: {counts:?}");
    assert!(counts["per-shard/"] >= 16);
    assert!(
        counts["across/"] * 4 <= counts["per-shard/"],
        "cross-shard batching did not reduce objects: {counts:?}"
    );
}

#[test]
fn check_and_run_name_the_pipeline_and_bucket_when_the_bucket_is_missing() {
    let stack = Stack::from_env();
    let work = Workdir::new();
    let config = work.config(&s3_pipeline(
        "any-stream",
        &stack,
        "no-such-bucket-kc",
        "",
        "",
    ));
    let out = std::process::Command::new(integration_tests::connector_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pipeline \"p\"")
            && stderr.contains("bucket no-such-bucket-kc does not exist"),
        "{stderr}"
    );
    let out = std::process::Command::new(integration_tests::connector_bin())
        .args(["run", "--pipeline", "p", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pipeline \"p\"") && stderr.contains("no-such-bucket-kc"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_and_server_errors_are_retried_and_the_objects_land() {
    use integration_tests::fault_proxy::Fault;
    use std::sync::atomic::{AtomicU32, Ordering};

    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-503");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..1_000, 7, &|_| false).await;
    let bucket = stack.bucket().await;
    let faults = Arc::new(AtomicU32::new(0));
    let f = faults.clone();
    // The first two object PUTs get 503 SlowDown, the third a 500.
    let proxy = FaultProxy::start(
        &stack.s3,
        Arc::new(move |method, path, _, _, _| {
            let object_put = method == "PUT" && path.matches('/').count() >= 2 && !path.contains("write-check");
            if !object_put {
                return None;
            }
            let n = f.fetch_add(1, Ordering::SeqCst);
            let (status, code) = match n {
                0 | 1 => (503, "SlowDown"),
                2 => (500, "InternalError"),
                _ => return None,
            };
            Some(Fault {
                status,
                content_type: "application/xml",
                body: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"),
            })
        }),
    )
    .await;
    let work = Workdir::new();
    let text = s3_pipeline(&stream, &stack, &bucket, DEFAULT_KEY, "buffer = { max_records = 500, max_age = \"1h\" }\nretry = { base_delay = \"50ms\", max_delay = \"200ms\" }")
        .replace(&format!("endpoint = \"{}\", ", stack.s3), &format!("endpoint = \"{}\", ", proxy.url));
    let config = work.config(&text);
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let puts: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|s| {
            s.method == "PUT" && s.path.matches('/').count() >= 2 && !s.path.contains("write-check")
        })
        .collect();
    assert_eq!(faults.load(Ordering::SeqCst) as usize, puts.len());
    assert!(
        puts.iter().take(3).all(|p| p.injected),
        "the first three PUTs failed"
    );
    // The failed PUT was retried with the same key (the same object), then two objects landed.
    assert_eq!(puts[3].path, puts[0].path, "the retry wrote the same key");
    let objects = s3_objects(&stack.s3().await, &bucket, "").await;
    assert_eq!(objects.len(), 2);
    let ids: HashSet<u64> = objects.iter().flat_map(|(_, b)| ids_of(b)).collect();
    assert_eq!(ids.len(), 1_000);
    assert!(
        work.dead_letters("p").is_empty(),
        "retryable errors are not dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_s3_is_down_waits_for_it_then_delivers_everything() {
    use integration_tests::tcp_switch::TcpSwitch;

    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-down-at-start");
    client.create(&stream, 2).await.unwrap();
    let ledger = put_records(&client, &stream, 0..500, 5, &|_| false).await;
    let bucket = stack.bucket().await;
    // connector → switch (off: connection refused) → S3
    let switch = TcpSwitch::start(&stack.s3).await;
    switch.off().await;
    let work = Workdir::new();
    let text = s3_pipeline(
        &stream,
        &stack,
        &bucket,
        DEFAULT_KEY,
        "retry = { base_delay = \"50ms\", max_delay = \"300ms\" }",
    )
    .replace(
        &format!("endpoint = \"{}\", ", stack.s3),
        &format!("endpoint = \"{}\", ", switch.url),
    );
    let config = work.config(&text);
    let mut c = Connector::start(work.dir.path(), &config, "p", &["--until-tip"], &[]);
    integration_tests::wait_until(
        Duration::from_secs(30),
        "three retried start-up checks in the log",
        || c.log().matches("sink not ready, retrying").count() >= 3,
    );
    assert!(c.is_running(), "a sink that is down does not end the start");
    assert!(
        s3_objects(&stack.s3().await, &bucket, "").await.is_empty(),
        "nothing is written while S3 is away"
    );
    switch.on().await;
    let status = c.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", c.log_tail(30));
    let ids: Vec<u64> = s3_objects(&stack.s3().await, &bucket, "")
        .await
        .iter()
        .flat_map(|(_, b)| ids_of(b))
        .collect();
    let unique_ids: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        unique_ids.len(),
        ledger.records.len(),
        "every record landed"
    );
    assert_eq!(ids.len(), unique_ids.len(), "and once");
    work.assert_checkpointed_at_last_records("p", &ledger);
}

#[test]
fn a_worker_stopped_while_s3_is_down_at_start_exits_cleanly() {
    let stack = Stack::from_env();
    let work = Workdir::new();
    // Nothing listens on port 9: every start-up check is refused.
    let text = s3_pipeline("any-stream", &stack, "any-bucket", "", "").replace(
        &format!("endpoint = \"{}\", ", stack.s3),
        "endpoint = \"http://127.0.0.1:9\", ",
    );
    let config = work.config(&text);
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    integration_tests::wait_until(Duration::from_secs(30), "a retried start-up check", || {
        c.log().contains("sink not ready, retrying")
    });
    c.terminate();
    let status = c.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", c.log_tail(30));
    assert!(c.log().contains("stopped before the sink was ready"));
}

/// S3 takes keys up to 1,024 bytes, and so must the local S3 (s3s-fs alone failed every PutObject of a
/// key over ~150 bytes with InternalError): a 1,000-byte key is written, read, listed — by prefix,
/// with a delimiter, in byte order among short keys, one per page — copied, uploaded in parts and
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_s3_writes_and_lists_a_1000_byte_key() {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

    let stack = Stack::from_env();
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;
    // Path segments of 99 bytes plus '/', then one 200-byte segment: 1,000 bytes.
    let long = format!(
        "a/{}{}",
        format!("{}/", "x".repeat(99)).repeat(8),
        "y".repeat(198)
    );
    assert_eq!(long.len(), 1_000);
    let flat = format!("a/{}", "z".repeat(998)); // one 998-byte segment (over the 255-byte file-name limit)
    let keys = [
        "a/0-short".to_owned(),
        long.clone(),
        flat.clone(),
        "b/short".to_owned(),
    ];
    for k in &keys {
        s3.put_object()
            .bucket(&bucket)
            .key(k)
            .body(ByteStream::from(k.clone().into_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject of a {}-byte key: {e:?}", k.len()));
    }
    assert_eq!(s3_body(&s3, &bucket, &long).await, long.as_bytes());
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&flat)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(1_000));

    // Listing: every key by prefix, in byte order.
    let listed = s3_keys(&s3, &bucket, "a/", None).await;
    let mut expected = vec![keys[0].clone(), long.clone(), flat.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    // One key per page: the continuation token carries over the long keys too.
    let paged = s3_keys(&s3, &bucket, "", Some(1)).await;
    let mut all = keys.to_vec();
    all.sort();
    assert_eq!(paged, all);
    // A delimiter folds the long key into its common prefix.
    let out = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("a/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let objects: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(objects, [keys[0].as_str(), flat.as_str()]);
    assert_eq!(prefixes, [format!("a/{}/", "x".repeat(99))]);

    // Copy to another long key, a multipart upload to a long key, then delete.
    let copy = format!("{long}-copy");
    s3.copy_object()
        .bucket(&bucket)
        .key(&copy)
        .copy_source(format!("{bucket}/{long}"))
        .send()
        .await
        .unwrap();
    assert_eq!(s3_body(&s3, &bucket, &copy).await, long.as_bytes());
    let parts_key = format!("m/{}", "p".repeat(1_000));
    let up = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&parts_key)
        .send()
        .await
        .unwrap();
    assert_eq!(up.key(), Some(parts_key.as_str()));
    let upload_id = up.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket(&bucket)
        .key(&parts_key)
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"in parts"))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key(&parts_key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(s3_body(&s3, &bucket, &parts_key).await, b"in parts");
    for k in [&long, &copy, &parts_key] {
        s3.delete_object()
            .bucket(&bucket)
            .key(k)
            .send()
            .await
            .unwrap();
    }
    let left = s3_keys(&s3, &bucket, "", None).await;
    assert_eq!(left, [keys[0].clone(), flat.clone(), keys[3].clone()]);
}

/// Issue 16: a Parquet schema inferred from the first batch used to live in the process only, so a
/// process after a restart (or another worker) inferred its own from whatever batch it wrote first,
/// and a redelivered batch could be rewritten under its key with other columns. The inferred schema
/// is kept in the bucket: a second run whose records have other fields still writes the first run's
/// columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inferred_parquet_schema_outlives_the_process_that_inferred_it() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("s3-schema");
    client.create(&stream, 1).await.unwrap();
    let bucket = stack.bucket().await;
    let s3 = stack.s3().await;
    let put = async |shape: &dyn Fn(u64) -> String, ids: std::ops::Range<u64>| {
        let entries = ids
            .map(|i| kinesis_connectors_consumer::PutEntry::new(bytes::Bytes::from(shape(i)), "k"))
            .collect();
        client.put_batch(&stream, entries).await.unwrap();
    };
    let work = Workdir::new();
    let config = work.config(&s3_pipeline(
        &stream,
        &stack,
        &bucket,
        "format = \"parquet\", prefix = \"inferred/\"",
        "buffer = { max_records = 50, max_age = \"1h\" }",
    ));
    put(&|i| format!(r#"{{"id":{i},"a":"first"}}"#), 0..100).await;
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    put(&|i| format!(r#"{{"id":{i},"b":{i}}}"#), 100..200).await;
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let objects = s3_objects(&s3, &bucket, "inferred/").await;
    let (schema, parquet): (Vec<_>, Vec<_>) = objects
        .iter()
        .partition(|(k, _)| k.ends_with("/_kc_parquet_schema.json"));
    let keys: Vec<&String> = objects.iter().map(|(k, _)| k).collect();
    assert_eq!(schema.len(), 1, "{keys:?}");
    assert_eq!(parquet.len(), 4, "{keys:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut rows = 0;
    for (i, (key, body)) in parquet.iter().enumerate() {
        let path = dir.path().join(format!("{i}.parquet"));
        std::fs::write(&path, body).unwrap();
        let (n, cols) = python_reads_parquet(&path);
        assert_eq!(
            cols,
            ["a", "id"],
            "{key}: columns of the second run's own first batch"
        );
        rows += n;
    }
    assert_eq!(rows, 200);
}
