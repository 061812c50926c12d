//! Operability end to end: Prometheus metrics and health endpoints, `status`, dead-letter replay,
//! resharding under load, and `replay` that leaves the pipeline's checkpoints alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::{
    Connector, Ledger, Stack, Workdir, connector_bin, file_pipeline, free_port, put_records,
    read_landed, s3_objects, unique, wait_until,
};
use kinesis_connectors_consumer::PutEntry;
use serde_json::Value;

fn kc(work: &Workdir, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(connector_bin());
    cmd.args(args).current_dir(work.dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The value of `name{pipeline="p"}` in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(&format!("{name}{{pipeline=\"p\"}} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_exact_emitted_and_dead_lettered_counts_and_health_answers() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ops-metrics");
    client.create(&stream, 2).await.unwrap();
    put_records(&client, &stream, 0..1_000, 7, &|id| id % 100 == 3).await;
    let work = Workdir::new();
    let port = free_port();
    let config = work.config(&format!(
        "metrics_addr = \"127.0.0.1:{port}\"\n{}",
        file_pipeline(
            &stream,
            &stack.kinesis,
            "buffer = { max_records = 100, max_age = \"200ms\" }"
        )
    ));
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let out = work.path("out");
    wait_until(
        Duration::from_secs(60),
        "990 records and 10 dead letters",
        || read_landed(&out).len() == 990 && work.dead_letters("p").len() == 10,
    );
    let base = format!("http://127.0.0.1:{port}");
    let (status, page) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&page, "kc_records_read_total"),
        Some(1000.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "kc_items_emitted_total"),
        Some(990.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "kc_dead_lettered_total"),
        Some(10.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "kc_transform_failures_total"),
        Some(10.0),
        "{page}"
    );
    assert_eq!(metric(&page, "kc_leases_held"), Some(2.0), "{page}");
    // Every batch closed for one reason: their count is on the page, each reason a series.
    let closed: f64 = ["count", "bytes", "age", "drain", "pressure", "boundary"]
        .iter()
        .map(|r| {
            let series = format!("kc_batches_closed_total{{pipeline=\"p\",reason=\"{r}\"}} ");
            page.lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {series}in\n{page}"))
        })
        .sum();
    assert!(closed >= 1.0, "{page}");
    assert!(
        metric(&page, "kc_boundary_writes_total").is_some(),
        "{page}"
    );
    assert!(
        page.contains(
            "kc_emit_latency_seconds_bucket{pipeline=\"p\",emitter=\"file\",le=\"+Inf\"}"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "kc_shard_iterator_age_milliseconds{pipeline=\"p\",shard=\"shardId-000000000000\"}"
        ),
        "{page}"
    );
    assert_eq!(get(&format!("{base}/health")).await.0, 200);
    assert_eq!(
        get(&format!("{base}/ready")).await,
        (200, "ready\n".to_owned())
    );
    c.terminate();
    assert!(c.wait(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_a_known_state_lag_included() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ops-status");
    client.create(&stream, 2).await.unwrap();
    let first = put_records(&client, &stream, 0..200, 13, &|_| false).await;
    let work = Workdir::new();
    let config = work.config(&file_pipeline(&stream, &stack.kinesis, ""));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    // Split shard 1 and read it to its end: shard 1 ends, its children start out at TRIM_HORIZON.
    let shards = client.shards(&stream).await.unwrap();
    client.split_in_half(&stream, &shards[1]).await.unwrap();
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    // Ten new records on shard 0 (hash key 0), not yet read: shard 0 lags by their age.
    let low: Vec<PutEntry> = (0..10)
        .map(|i| PutEntry {
            data: format!(r#"{{"id":{}}}"#, 1000 + i).into(),
            partition_key: "low".into(),
            explicit_hash_key: Some("0".into()),
        })
        .collect();
    let put_at = Instant::now();
    client.put_batch(&stream, low).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await; // let the unread records age measurably
    let (code, stdout, stderr) = kc(
        &work,
        &[
            "status",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--pipeline",
            "p",
        ],
        &[],
    );
    let elapsed = put_at.elapsed();
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let by: BTreeMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["shard"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by.len(), 4, "{stdout}");
    let last = first.last_per_shard();
    let s0 = by["shardId-000000000000"];
    assert_eq!(s0["state"], "open");
    assert_eq!(s0["checkpoint"], last["shardId-000000000000"].as_str());
    let lag = s0["lag_ms"].as_i64().unwrap();
    // ferrokinesis stamps arrivals in whole seconds: the lag can read up to a second more than the age.
    assert!(
        lag >= 1_400 && lag <= elapsed.as_millis() as i64 + 1_200,
        "shard 0 lag {lag} ms, records put {elapsed:?} ago"
    );
    assert!(s0["last_checkpoint"].is_string());
    let s1 = by["shardId-000000000001"];
    assert_eq!(
        (
            s1["state"].as_str(),
            s1["checkpoint"].as_str(),
            s1["lag_ms"].as_i64()
        ),
        (Some("ended"), Some("SHARD_END"), Some(0))
    );
    for child in ["shardId-000000000002", "shardId-000000000003"] {
        let c = by[child];
        assert_eq!(
            (
                c["state"].as_str(),
                c["checkpoint"].as_str(),
                c["lag_ms"].as_i64()
            ),
            (Some("open"), Some("TRIM_HORIZON"), Some(0)),
            "{child}"
        );
    }
    // The table form names the same shards.
    let (code, table, _) = kc(
        &work,
        &[
            "status",
            "--config",
            config.to_str().unwrap(),
            "--pipeline",
            "p",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        table.starts_with("SHARD") && table.contains("SHARD_END"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_records_replayed_through_the_pipeline_land_in_the_sink() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ops-dlq");
    client.create(&stream, 2).await.unwrap();
    put_records(&client, &stream, 0..300, 7, &|_| false).await;
    let bucket = stack.bucket().await;
    // The sink refuses every object while `deny` is on (a permanent 403): everything is dead-lettered.
    let deny = Arc::new(AtomicBool::new(true));
    let d = deny.clone();
    let proxy = FaultProxy::start(
        &stack.s3,
        Arc::new(move |method, path, _, _, _| {
            let object_put = method == "PUT" && path.matches('/').count() >= 2 && !path.contains("write-check");
            (object_put && d.load(Ordering::SeqCst)).then(|| Fault {
                status: 403,
                content_type: "application/xml",
                body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>injected</Message></Error>".into(),
            })
        }),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms" }}
transformer = {{ type = "json" }}
buffer = {{ max_records = 100, max_age = "1h" }}
emitter = {{ type = "s3", bucket = "{bucket}", endpoint = "{proxy}", key = "{{batch_id}}{{ext}}" }}
"#,
        kinesis = stack.kinesis,
        proxy = proxy.url
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let dead = work.dead_letters("p");
    assert_eq!(dead.len(), 300);
    assert!(
        dead[0].reason.contains("AccessDenied"),
        "{}",
        dead[0].reason
    );
    assert!(s3_objects(&stack.s3().await, &bucket, "").await.is_empty());
    // The cause is fixed; the dead letters go through the pipeline into the sink.
    deny.store(false, Ordering::SeqCst);
    let (code, stdout, stderr) = kc(
        &work,
        &[
            "dead-letter",
            "replay",
            "--into",
            "pipeline",
            "--config",
            config.to_str().unwrap(),
            "--pipeline",
            "p",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("300 dead-lettered records") && stdout.contains("300 emitted"),
        "{stdout}"
    );
    let ids: HashSet<u64> = s3_objects(&stack.s3().await, &bucket, "")
        .await
        .iter()
        .flat_map(|(_, body)| {
            String::from_utf8_lossy(body)
                .lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids.len(), 300, "every dead-lettered record landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_records_replayed_into_the_stream_are_put_back() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ops-dlq-stream");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..100, 7, &|id| id < 5).await;
    let work = Workdir::new();
    let config = work.config(&file_pipeline(&stream, &stack.kinesis, ""));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    assert_eq!(work.dead_letters("p").len(), 5);
    let (code, stdout, stderr) = kc(
        &work,
        &[
            "dead-letter",
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--pipeline",
            "p",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("5 put back into the stream"), "{stdout}");
    // The next run reads them again (and, still invalid, dead-letters them again).
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    assert_eq!(work.dead_letters("p").len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_two_to_four_under_load_loses_nothing_and_status_shows_the_new_shards() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ops-reshard");
    client.create(&stream, 2).await.unwrap();
    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 100, max_age = \"200ms\" }",
    ));
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let (s, cl, st) = (stop.clone(), client.clone(), stream.clone());
    let producer = tokio::spawn(async move {
        let mut ledger = Ledger::default();
        let mut next = 0;
        while !s.load(Ordering::SeqCst) {
            ledger.records.extend(
                put_records(&cl, &st, next..next + 100, 32, &|_| false)
                    .await
                    .records,
            );
            next += 100;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ledger
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, stdout, stderr) = kc(
        &work,
        &["streams", "reshard", &stream, "--shards", "4"],
        &[("KINESIS_ENDPOINT", stack.kinesis.clone())],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("4 open shards"), "{stdout}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let ledger = producer.await.unwrap();
    let out = work.path("out");
    wait_until(Duration::from_secs(60), "every record", || {
        let ids: HashSet<u64> = read_landed(&out).iter().map(|l| l.id()).collect();
        ledger.records.keys().all(|id| ids.contains(id))
    });
    let (code, stdout, _) = kc(
        &work,
        &[
            "status",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--pipeline",
            "p",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let open: Vec<&Value> = rows.iter().filter(|r| r["state"] == "open").collect();
    assert_eq!(open.len(), 4, "the new shards: {stdout}");
    assert!(
        rows.iter().filter(|r| r["state"] == "ended").count() >= 2,
        "the old shards ended: {stdout}"
    );
    c.terminate();
    assert!(c.wait(Duration::from_secs(30)).success());
    eprintln!(
        "{} records put across the reshard, all delivered",
        ledger.records.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_until_tip_delivers_ten_thousand_records_and_leaves_the_checkpoints_alone() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ops-replay");
    client.create(&stream, 4).await.unwrap();
    put_records(&client, &stream, 0..10_000, 53, &|_| false).await;
    let work = Workdir::new();
    let config = work.config(&file_pipeline(&stream, &stack.kinesis, ""));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let checkpoints = std::fs::read(work.path("state/p.checkpoints.json")).unwrap();
    let started = Instant::now();
    let (code, stdout, stderr) = kc(
        &work,
        &[
            "replay",
            "--from",
            "2000-01-01T00:00:00Z",
            "--until-tip",
            "--config",
            config.to_str().unwrap(),
            "--pipeline",
            "p",
        ],
        &[("OUT_DIR", work.path("replayed").display().to_string())],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("replayed 10000 records: 10000 emitted"),
        "{stdout}"
    );
    assert!(
        stderr.contains("10000 records read from 4 shards"),
        "summary: {stderr}"
    );
    let ids: HashSet<u64> = read_landed(&work.path("replayed"))
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(
        std::fs::read(work.path("state/p.checkpoints.json")).unwrap(),
        checkpoints,
        "checkpoints moved"
    );
    eprintln!(
        "replay of 10,000 records ended by itself in {:?}",
        started.elapsed()
    );
}
