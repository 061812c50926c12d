//! The Redshift emitter end to end: batches staged in the local S3 (s3s-fs) and loaded with COPY
//! through the Redshift Data API stand-in (`integration_tests::redshift_data`), which runs the SQL on
//! the local PostgreSQL and performs `COPY … FROM 's3://…'` itself. The emitter reaches the stand-in
//! only through its `endpoint` override.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::redshift_data::{Postgres, RedshiftDataStandIn};
use integration_tests::{
    Closes, Connector, Stack, Workdir, connector_bin, free_port, metric_value, put_records,
    s3_objects, scrape_metrics, test_record, unique,
};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_redshift::{RedshiftEmitter, RedshiftOptions};

const ROLE: &str = "arn:aws:iam::123456789012:role/redshift-copy";
/// The test records' columns (`integration_tests::test_record`).
const COLUMNS: &str = r#"[{ name = "id", type = "BIGINT" }, { name = "key", type = "VARCHAR(32)" }, { name = "n", type = "BIGINT" }, { name = "pad", type = "VARCHAR(200)" }]"#;

async fn stand_in(stack: &Stack) -> RedshiftDataStandIn {
    RedshiftDataStandIn::start(Postgres::from_env(), &stack.s3).await
}

/// A table name no other test uses (identifier-safe).
fn table_name() -> String {
    unique("rs").replace('-', "_")
}

async fn pg() -> tokio_postgres::Client {
    Postgres::from_env().connect("postgres").await.unwrap()
}

/// The emitter's options (as a TOML table body) for `table` (and its own loaded-files table
/// `{table}_loaded`) on the stand-in at `endpoint`, staging with the default key template
/// (`{prefix}{pipeline}/{yyyy}/{MM}/{dd}/{shard}-{first_sequence}-{last_sequence}{ext}`).
fn emitter_options(
    stack: &Stack,
    endpoint: &str,
    bucket: &str,
    table: &str,
    extra: &str,
) -> String {
    format!(
        r#"type = "redshift", cluster_identifier = "local", database = "postgres", db_user = "postgres", endpoint = "{endpoint}", table = "{table}", loaded_files_table = "{table}_loaded", iam_role = "{ROLE}", poll_interval = "10ms", max_poll_interval = "100ms", staging = {{ bucket = "{bucket}", endpoint = "{s3}", prefix = "s/" }}{extra}"#,
        s3 = stack.s3
    )
}

fn pipeline(stream: &str, stack: &Stack, emitter: &str, extra: &str) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "1s" }}
transformer = {{ type = "json" }}
emitter = {{ {emitter} }}
retry = {{ base_delay = "10ms", max_delay = "200ms" }}
{extra}
"#,
        kinesis = stack.kinesis
    )
}

/// A working directory with a pipeline from `stream` into `table` (the test records' columns, created
/// by the emitter) through the Data API at `endpoint`, in batches of `max_records`.
fn records_pipeline(
    stack: &Stack,
    endpoint: &str,
    bucket: &str,
    table: &str,
    stream: &str,
    max_records: usize,
) -> (Workdir, std::path::PathBuf) {
    let emitter = emitter_options(
        stack,
        endpoint,
        bucket,
        table,
        &format!(", columns = {COLUMNS}, create_table = true"),
    );
    let work = Workdir::new();
    let config = work.config(&pipeline(
        stream,
        stack,
        &emitter,
        &format!("buffer = {{ max_records = {max_records}, max_age = \"1h\" }}"),
    ));
    (work, config)
}

/// Runs the connector until the stream's tip is delivered.
fn run_to_tip(work: &Workdir, config: &std::path::Path) {
    tokio::task::block_in_place(|| Connector::run_until_tip(work.dir.path(), config, "p", &[]));
}

/// (id, key, n, pad) of every row, by id.
async fn rows(pg: &tokio_postgres::Client, table: &str) -> Vec<(i64, String, i64, String)> {
    pg.query(
        &format!("SELECT id, key, n, pad FROM \"{table}\" ORDER BY id"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// The file (manifest or object URL) of every load submitted through the proxy, in order; the start-up
/// check's statements are not loads.
fn copied_files(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .calls("BatchExecuteStatement")
        .iter()
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let copy = body["Sqls"][2].as_str().filter(|s| s.starts_with("COPY"))?;
            Some(copy.split('\'').nth(1).unwrap().to_owned())
        })
        .collect()
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

/// The row a test record becomes.
fn expected_row(id: u64, keys: u64) -> (i64, String, i64, String) {
    (
        id as i64,
        format!("k-{}", id % keys),
        (id / keys) as i64,
        "x".repeat(120),
    )
}

/// Issue 14, defect 1: the batches a many-item record was split over had one range, so one staged
/// name, and the loaded-files check skipped all but the first as "already loaded". Each batch now
/// has a name of its own: every item is one row, and each load is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_of_a_many_item_record_becomes_one_row() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let client = stack.streams().await;
    let stream = unique("rs-multi");
    client.create(&stream, 2).await.unwrap();
    let (records, lines, keys) = (5, 1_200, 3);
    integration_tests::put_multi_item_records(&client, &stream, records, lines, keys).await;
    let bucket = stack.bucket().await;
    let table = table_name();
    let (work, config) = records_pipeline(&stack, &rs.url, &bucket, &table, &stream, 500);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("type = \"json\"", "type = \"json_lines\"");
    std::fs::write(&config, text).unwrap();
    run_to_tip(&work, &config);
    let pg = pg().await;
    let landed = rows(&pg, &table).await;
    let expected: Vec<_> = (0..records * lines)
        .map(|id| {
            let r = id / lines;
            (
                id as i64,
                format!("k-{}", r % keys),
                (r / keys) as i64,
                "x".repeat(120),
            )
        })
        .collect();
    assert_eq!(landed.len(), expected.len());
    assert!(landed == expected, "the table's rows differ from the items");
    let loads = count(&pg, &format!("SELECT count(*) FROM \"{table}_loaded\"")).await;
    assert!(loads >= 12, "6,000 items in batches of 500: {loads} loads");
    assert!(work.dead_letters("p").is_empty());
}

/// Issue 16: batches closed by age on a quiet shard, SIGKILLed at random moments while checkpoints go
/// through a slow link (so a kill often lands between a COPY and its checkpoint). Each such batch's
/// boundary is stored before it is loaded, so the next run re-forms it identically and the
/// loaded-files table skips it: every record is one row. (Without the stored boundaries, a batch
/// re-formed differently has another staged name and is loaded again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_closed_by_age_are_loaded_once_across_sigkills() {
    loaded_once_across_sigkills(Closes::Age).await;
}

/// As [`batches_closed_by_age_are_loaded_once_across_sigkills`], with batches closed early because
/// the shards' buffers together reached `delivery.max_buffered_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_closed_by_memory_pressure_are_loaded_once_across_sigkills() {
    loaded_once_across_sigkills(Closes::Pressure).await;
}

/// Four SIGKILLs at random moments while batches close as `closes` says (each round waits until
/// the worker's `/metrics` counts such closes), then a run to the tip: every record is one row.
async fn loaded_once_across_sigkills(closes: Closes) {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let client = stack.streams().await;
    let stream = unique("rs-once");
    client.create(&stream, 2).await.unwrap();
    let bucket = stack.bucket().await;
    let table = table_name();
    let (_slow_table, lines) =
        integration_tests::closes_with_slow_checkpoints(&stack, "w", closes).await;
    let port = free_port();
    let emitter = emitter_options(
        &stack,
        &rs.url,
        &bucket,
        &table,
        &format!(", columns = {COLUMNS}, create_table = true"),
    );
    let work = Workdir::new();
    let config = work.config(&format!(
        "metrics_addr = \"127.0.0.1:{port}\"\n{}",
        pipeline(&stream, &stack, &emitter, &lines)
    ));
    let halt = Arc::new(AtomicBool::new(false));
    let producer =
        integration_tests::trickle_producer(client.clone(), stream.clone(), halt.clone());
    let pg = pg().await;
    let loads = async || {
        pg.query_one(&format!("SELECT count(*) FROM \"{table}_loaded\""), &[])
            .await
            .ok()
            .map(|r| r.get::<_, i64>(0))
    };
    let mut closed_by_reason = 0.0;
    for round in 0..4 {
        let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
        let before = loads().await.unwrap_or(0);
        integration_tests::poll(
            Duration::from_secs(60),
            "loads of batches closed by age",
            async || loads().await.filter(|n| *n >= before + 2 + round % 2),
        )
        .await;
        let (n, _) = integration_tests::poll(
            Duration::from_secs(30),
            &format!("batches closed by {}", closes.reason()),
            async || {
                let page = scrape_metrics(port).await?;
                metric_value(
                    &page,
                    "kc_batches_closed_total",
                    &[("reason", closes.reason())],
                )
                .filter(|n| *n > 0.0)
            },
        )
        .await;
        closed_by_reason += n;
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 700)).await;
        c.kill();
    }
    halt.store(true, Ordering::SeqCst);
    let ledger = producer.await.unwrap();
    run_to_tip(&work, &config);
    let twice = count(
        &pg,
        &format!(
            "SELECT count(*) FROM (SELECT id FROM \"{table}\" GROUP BY id HAVING count(*) > 1) t"
        ),
    )
    .await;
    let landed = rows(&pg, &table).await;
    let ids: std::collections::BTreeSet<i64> = landed.iter().map(|r| r.0).collect();
    let lost = ledger
        .records
        .keys()
        .filter(|id| !ids.contains(&(**id as i64)))
        .count();
    eprintln!(
        "{closes:?}: {} records, {} rows, {} loads, {closed_by_reason} closed by {} before the kills, {lost} lost, {twice} held twice",
        ledger.records.len(),
        landed.len(),
        loads().await.unwrap_or(0),
        closes.reason()
    );
    assert_eq!(lost, 0);
    assert_eq!(twice, 0, "records loaded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_become_rows_equal_to_the_records() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let client = stack.streams().await;
    let stream = unique("rs-10k");
    client.create(&stream, 4).await.unwrap();
    put_records(&client, &stream, 0..10_000, 101, &|_| false).await;
    let bucket = stack.bucket().await;
    let table = table_name();

    let work = Workdir::new();
    let emitter = emitter_options(
        &stack,
        &rs.url,
        &bucket,
        &table,
        &format!(", columns = {COLUMNS}, create_table = true"),
    );
    let config = work.config(&pipeline(
        &stream,
        &stack,
        &emitter,
        "buffer = { max_records = 1000, max_age = \"1h\" }",
    ));
    tokio::task::block_in_place(|| Connector::run_until_tip(work.dir.path(), &config, "p", &[]));

    let pg = pg().await;
    let landed = rows(&pg, &table).await;
    let expected: Vec<_> = (0..10_000).map(|id| expected_row(id, 101)).collect();
    assert_eq!(landed.len(), 10_000);
    assert!(
        landed == expected,
        "the table's rows differ from the records"
    );
    assert!(work.dead_letters("p").is_empty());

    // One load per batch, each recorded once with its row count, through a manifest with gzip'd JSON.
    let loaded = pg
        .query(
            &format!("SELECT file, rows_loaded FROM \"{table}_loaded\" ORDER BY file"),
            &[],
        )
        .await
        .unwrap();
    let ours: Vec<(String, i64)> = loaded
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    assert!(
        ours.iter()
            .all(|(f, _)| f.starts_with(&format!("s3://{bucket}/s/manifests/p/")))
    );
    assert!(ours.len() >= 10, "{} loads", ours.len());
    assert_eq!(ours.iter().map(|(_, n)| n).sum::<i64>(), 10_000);
    assert!(ours.iter().all(|(f, _)| f.ends_with(".manifest")));
    let copies: Vec<String> = rs
        .received()
        .iter()
        .filter(|r| r.operation == "BatchExecuteStatement")
        .flat_map(|r| r.sqls.clone())
        .filter(|s| s.starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), ours.len());
    for c in &copies {
        assert!(c.contains(" MANIFEST FORMAT AS JSON 'auto' GZIP"), "{c}");
        assert!(c.contains(&format!("IAM_ROLE '{ROLE}'")), "{c}");
        assert!(!c.to_ascii_uppercase().contains("ACCESS_KEY"), "{c}");
    }
    let staged = s3_objects(&stack.s3().await, &bucket, "s/").await;
    assert!(staged.iter().any(|(k, _)| k.ends_with(".ndjson.gz")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_copy_and_checkpoint_loads_no_row_twice_and_loses_none() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    // DescribeStatement answers "STARTED" while frozen: loads commit in PostgreSQL, but the connector
    // never learns it, so it cannot checkpoint them.
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    let frozen_answers = Arc::new(AtomicUsize::new(0));
    let answered = frozen_answers.clone();
    let proxy = FaultProxy::start(
        &rs.url,
        Arc::new(move |_, _, headers, body, _| {
            let describe = headers
                .get("x-amz-target")
                .is_some_and(|t| t.as_bytes().ends_with(b"DescribeStatement"));
            if !(describe && f.load(Ordering::SeqCst)) {
                return None;
            }
            let id = serde_json::from_slice::<serde_json::Value>(body).unwrap()["Id"].clone();
            answered.fetch_add(1, Ordering::SeqCst);
            Some(Fault {
                status: 200,
                content_type: "application/x-amz-json-1.1",
                body: serde_json::json!({"Id": id, "Status": "STARTED"}).to_string(),
            })
        }),
    )
    .await;
    let client = stack.streams().await;
    let stream = unique("rs-kill");
    client.create(&stream, 2).await.unwrap();
    put_records(&client, &stream, 0..6_000, 37, &|_| false).await;
    let bucket = stack.bucket().await;
    let table = table_name();
    let loaded_table = format!("{table}_loaded");
    let emitter = emitter_options(
        &stack,
        &proxy.url,
        &bucket,
        &table,
        &format!(", columns = {COLUMNS}, create_table = true"),
    );
    let work = Workdir::new();
    // Pages of 100 records every 200 ms per shard: slow enough to be caught mid-stream.
    let config = work.config(
        &pipeline(
            &stream,
            &stack,
            &emitter,
            "buffer = { max_records = 300, max_age = \"1h\" }",
        )
        .replace(
            "idle_poll_interval = \"200ms\"",
            "idle_poll_interval = \"200ms\", max_records_per_call = 100",
        ),
    );
    let pg = pg().await;
    let loads = format!("SELECT COUNT(*) FROM \"{loaded_table}\"");

    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let mut before = 0;
    for _ in 0..600 {
        before = pg
            .query_opt(&loads, &[])
            .await
            .ok()
            .flatten()
            .map_or(0, |r| r.get::<_, i64>(0));
        if before >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(before >= 3, "loads did not start");
    frozen.store(true, Ordering::SeqCst);
    // Wait for a load that committed but was never acknowledged: one committed after the freeze, or
    // (when the loads in flight at the freeze had already committed) every submitted load committed
    // while the connector was told "STARTED" about at least one of them.
    let at_freeze = count(&pg, &loads).await;
    let mut unacknowledged = false;
    for _ in 0..600 {
        let now = count(&pg, &loads).await;
        let submitted = copied_files(&proxy).len() as i64;
        unacknowledged =
            now > at_freeze || (frozen_answers.load(Ordering::SeqCst) > 0 && now >= submitted);
        if unacknowledged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        unacknowledged,
        "no load committed unacknowledged while frozen"
    );
    c.kill();
    frozen.store(false, Ordering::SeqCst);

    tokio::task::block_in_place(|| Connector::run_until_tip(work.dir.path(), &config, "p", &[]));

    let landed = rows(&pg, &table).await;
    let expected: Vec<_> = (0..6_000).map(|id| expected_row(id, 37)).collect();
    assert_eq!(landed.len(), 6_000, "rows loaded twice or missing");
    assert!(
        landed == expected,
        "the table's rows differ from the records"
    );
    // The loads that committed unacknowledged were submitted again after the restart and skipped: the
    // same manifest appears in two loads, once in the loaded-files table.
    let mut submitted: BTreeMap<String, usize> = BTreeMap::new();
    for url in copied_files(&proxy) {
        *submitted.entry(url).or_default() += 1;
    }
    assert!(
        submitted.values().any(|&n| n >= 2),
        "no batch was redelivered after the kill: {submitted:?}"
    );
    let files = count(
        &pg,
        &format!("SELECT COUNT(DISTINCT file) - COUNT(*) FROM \"{loaded_table}\""),
    )
    .await;
    assert_eq!(files, 0, "a file recorded twice");
    assert_eq!(
        count(
            &pg,
            &format!("SELECT SUM(rows_loaded)::bigint FROM \"{loaded_table}\"")
        )
        .await,
        6_000
    );
    assert!(work.dead_letters("p").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_sends_its_batch_to_the_dead_letter_with_the_copy_error_and_the_pipeline_goes_on()
{
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let client = stack.streams().await;
    let stream = unique("rs-bad");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..400, 7, &|_| false).await;
    // Record 400: "n" is text where the column is BIGINT.
    client
        .put_batch(
            &stream,
            vec![kinesis_connectors_consumer::PutEntry {
                data: Bytes::from_static(br#"{"id":400,"key":"k-1","n":"not-a-number","pad":"x"}"#),
                partition_key: "k-1".into(),
                explicit_hash_key: None,
            }],
        )
        .await
        .unwrap();
    put_records(&client, &stream, 401..800, 7, &|_| false).await;
    let bucket = stack.bucket().await;
    let table = table_name();
    let (work, config) = records_pipeline(&stack, &rs.url, &bucket, &table, &stream, 100);
    run_to_tip(&work, &config);

    // The batch holding record 400 (records 400..500) is dead-lettered with PostgreSQL's COPY error;
    // every other record is loaded, those after the bad batch included.
    let dead = work.dead_letters("p");
    let dead_ids: Vec<u64> = dead
        .iter()
        .map(|d| {
            serde_json::from_slice::<serde_json::Value>(&d.data).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(dead_ids, (400..500).collect::<Vec<_>>());
    let reason = &dead[0].reason;
    assert!(
        reason.contains("Redshift COPY failed")
            && reason.contains("invalid input syntax for type bigint: \"not-a-number\""),
        "{reason}"
    );
    // The staged data stays in S3 for inspection, named in the reason.
    let manifest = reason
        .split_once("manifest ")
        .unwrap()
        .1
        .split(' ')
        .next()
        .unwrap();
    let key = manifest.strip_prefix(&format!("s3://{bucket}/")).unwrap();
    let staged = s3_objects(&stack.s3().await, &bucket, "s/").await;
    let body = &staged
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| {
            panic!(
                "manifest {key} gone; reason: {reason}; staged: {:?}",
                staged.iter().map(|o| &o.0).collect::<Vec<_>>()
            )
        })
        .1;
    let listed: serde_json::Value = serde_json::from_slice(body).unwrap();
    let file = listed["entries"][0]["url"].as_str().unwrap();
    assert!(
        staged.iter().any(|(k, _)| file.ends_with(k.as_str())),
        "{file} gone"
    );

    let pg = pg().await;
    let landed: Vec<i64> = rows(&pg, &table).await.into_iter().map(|r| r.0).collect();
    let expected: Vec<i64> = (0..400).chain(500..800).collect();
    assert_eq!(landed, expected);
}

/// An emitter built from emitter options (see [`emitter_options`]).
async fn direct_emitter(options: &str) -> RedshiftEmitter {
    let text = options.replace("type = \"redshift\", ", "");
    let table: toml::Table = toml::from_str(&format!("x = {{ {text} }}")).unwrap();
    let options: RedshiftOptions = table["x"].clone().try_into().unwrap();
    RedshiftEmitter::connect("p", options.validate().unwrap(), "us-east-1").await
}

fn batch(shard: &str, docs: &[String], first: u64) -> Batch<Item> {
    let items = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Envelope::new(
                Item::parse_json(Bytes::from(d.clone())).unwrap(),
                Origin::new(record(shard, first + i as u64, d.as_bytes())),
            )
        })
        .collect();
    Batch::new("p".into(), items, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_is_skipped_by_the_loaded_files_table() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let bucket = stack.bucket().await;
    let table = table_name();
    let e = direct_emitter(&emitter_options(
        &stack,
        &rs.url,
        &bucket,
        &table,
        &format!(", columns = {COLUMNS}, create_table = true"),
    ))
    .await;
    e.check().await.unwrap();
    let docs: Vec<String> = (0..50).map(|i| test_record(i, "k", i)).collect();
    let b = batch("shardId-000000000000", &docs, 0);
    assert!(e.emit(&b).await.unwrap().is_success());
    // The same batch again (a redelivery after a crash before the checkpoint): acknowledged, not loaded.
    assert!(e.emit(&b).await.unwrap().is_success());
    let m = e.metrics();
    assert_eq!((m.loads, m.loads_skipped, m.rows_loaded), (1, 1, 50));
    let pg = pg().await;
    assert_eq!(
        count(&pg, &format!("SELECT COUNT(*) FROM \"{table}\"")).await,
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_plain_copies_serverless_and_multi_file_manifests_load_what_was_sent() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let bucket = stack.bucket().await;
    let pg = pg().await;

    // CSV with a '|' delimiter, zstd, one plain COPY per batch (no manifest), on a Serverless workgroup.
    let table = table_name();
    let options = emitter_options(
        &stack,
        &rs.url,
        &bucket,
        &table,
        r#", columns = [{ name = "id", type = "BIGINT" }, { name = "name", type = "VARCHAR(8)" }, { name = "tags", type = "VARCHAR(100)" }, { name = "ok", type = "BOOLEAN" }], create_table = true, format = "csv", delimiter = "|", compression = "zstd", manifest = false, truncate_columns = true"#,
    )
    .replace("cluster_identifier = \"local\", ", "workgroup_name = \"wg\", ")
    .replace("db_user = \"postgres\", ", "");
    let e = direct_emitter(&options).await;
    e.check().await.unwrap();
    let docs = vec![
        r#"{"id":1,"name":"a|b \"q\"","tags":["x","y"],"ok":true}"#.to_owned(),
        r#"{"id":2,"name":"much too long for eight","ok":false,"extra":1}"#.to_owned(),
        r#"{"id":3,"name":null,"tags":{"k":1}}"#.to_owned(),
    ];
    assert!(
        e.emit(&batch("shardId-000000000001", &docs, 10))
            .await
            .unwrap()
            .is_success()
    );
    type Row = (i64, Option<String>, Option<String>, Option<bool>);
    let got: Vec<Row> = pg
        .query(
            &format!("SELECT id, name, tags, ok FROM \"{table}\" ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("a|b \"q\"".into()),
                Some("[\"x\",\"y\"]".into()),
                Some(true)
            ),
            (2, Some("much too".into()), None, Some(false)),
            (3, None, Some("{\"k\":1}".into()), None),
        ]
    );
    let last = rs.received().last().unwrap().clone();
    assert_eq!(last.body["WorkgroupName"], "wg");
    assert!(last.body.get("DbUser").is_none() && last.body.get("ClusterIdentifier").is_none());
    let copy = last.sqls[2].clone();
    assert!(copy.contains(".csv.zst' IAM_ROLE"), "{copy}");
    assert!(
        copy.contains("FORMAT AS CSV DELIMITER '|' ZSTD") && !copy.contains("MANIFEST"),
        "{copy}"
    );

    // JSON with {field:...} partitions: several staged files, one manifest, one COPY; epoch times.
    let table = table_name();
    pg.batch_execute(&format!(
        "CREATE TABLE \"{table}\" (id BIGINT, kind VARCHAR(10), at TIMESTAMP)"
    ))
    .await
    .unwrap();
    let options = emitter_options(
        &stack,
        &rs.url,
        &bucket,
        &table,
        r#", columns = ["id", "kind", "at"], timeformat = "epochmillisecs", compression = "none""#,
    )
    .replace(
        "prefix = \"s/\" }",
        "prefix = \"s/\", key = \"{prefix}{pipeline}/{yyyy}/{MM}/{dd}/{field:kind}/{shard}-{first_sequence}-{last_sequence}{ext}\" }",
    );
    let e = direct_emitter(&options).await;
    e.check().await.unwrap();
    let docs: Vec<String> = (0..9)
        .map(|i| {
            format!(
                r#"{{"id":{i},"kind":"k{}","at":{}}}"#,
                i % 3,
                1_767_225_600_000u64 + i * 1000
            )
        })
        .collect();
    let before = rs.received().len();
    assert!(
        e.emit(&batch("shardId-000000000002", &docs, 100))
            .await
            .unwrap()
            .is_success()
    );
    let loads: Vec<_> = rs.received()[before..].to_vec();
    assert_eq!(loads.len(), 1, "one load for the batch");
    let manifest_url = loads[0].sqls[2].split('\'').nth(1).unwrap().to_owned();
    let key = manifest_url
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap();
    let staged = s3_objects(&stack.s3().await, &bucket, "s/").await;
    let manifest: serde_json::Value =
        serde_json::from_slice(&staged.iter().find(|(k, _)| k == key).unwrap().1).unwrap();
    assert_eq!(
        manifest["entries"].as_array().unwrap().len(),
        3,
        "{manifest}"
    );
    let got: Vec<(i64, String, String)> = pg
        .query(
            &format!(
                "SELECT id, kind, to_char(at, 'YYYY-MM-DD HH24:MI:SS') FROM \"{table}\" ORDER BY id"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got.len(), 9);
    assert_eq!(
        got[4],
        (4, "k1".to_owned(), "2026-01-01 00:00:04".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_statements_are_retried_and_land_once() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    // The first two BatchExecuteStatement calls of loads are refused as throttled.
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = refused.clone();
    let proxy = FaultProxy::start(
        &rs.url,
        Arc::new(move |_, _, headers, body, _| {
            let batch = headers
                .get("x-amz-target")
                .is_some_and(|t| t.as_bytes().ends_with(b"BatchExecuteStatement"));
            let load = String::from_utf8_lossy(body).contains("COPY");
            (batch && load && r.fetch_add(1, Ordering::SeqCst) < 2).then(|| {
                Fault::aws_json(
                    "ActiveStatementsExceededException",
                    "Active statements exceeded the allowed quota (500).",
                )
            })
        }),
    )
    .await;
    let bucket = stack.bucket().await;
    let table = table_name();
    let client = stack.streams().await;
    let stream = unique("rs-throttle");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..300, 5, &|_| false).await;
    let (work, config) = records_pipeline(&stack, &proxy.url, &bucket, &table, &stream, 100);
    run_to_tip(&work, &config);
    assert!(refused.load(Ordering::SeqCst) >= 3);
    let pg = pg().await;
    let landed: Vec<i64> = rows(&pg, &table).await.into_iter().map(|r| r.0).collect();
    assert_eq!(landed, (0..300).collect::<Vec<_>>());
    assert!(work.dead_letters("p").is_empty());
}

#[test]
fn check_rejects_table_names_with_quotes_or_semicolons_and_a_missing_table() {
    let work = Workdir::new();
    for (table, key) in [
        ("clicks\\\"; DROP TABLE users; --", "table"),
        ("clicks;", "table"),
        ("public.o'neil", "table"),
    ] {
        let config = work.config(&format!(
            r#"[pipelines.p]
source = {{ stream = "s" }}
emitter = {{ type = "redshift", cluster_identifier = "c", database = "dev", db_user = "u", table = "{table}", iam_role = "{ROLE}", staging = {{ bucket = "stage" }} }}
"#
        ));
        let out = std::process::Command::new(connector_bin())
            .args(["check", "--offline", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{table}: {stderr}");
        assert!(
            stderr.contains(&format!("key \"emitter.{key}\""))
                && stderr.contains("not a plain SQL identifier"),
            "{table}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_the_stand_in_names_a_missing_table() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let bucket = stack.bucket().await;
    let work = Workdir::new();
    let emitter = emitter_options(&stack, &rs.url, &bucket, "no_such_table_here", "");
    let config = work.config(&pipeline("s", &stack, &emitter, ""));
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(connector_bin())
            .args(["check", "--config"])
            .arg(&config)
            .current_dir(work.dir.path())
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("relation \"no_such_table_here\" does not exist"),
        "{stderr}"
    );
}

/// Found by the chaos suite (2026-12-02): three workers of one pipeline started at once, each
/// creating the table (`create_table = true`); PostgreSQL (like Redshift) lets one of two concurrent
/// `CREATE TABLE IF NOT EXISTS` fail, and the worker that lost the race exited "not ready" although
/// the table then existed. Workers that start together must all become ready: here, six `check`s at
/// once per fresh table, for three tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_creating_the_table_at_once_all_start() {
    let stack = Stack::from_env();
    let rs = stand_in(&stack).await;
    let bucket = stack.bucket().await;
    let work = Workdir::new();
    for _ in 0..3 {
        let table = table_name();
        let emitter = emitter_options(
            &stack,
            &rs.url,
            &bucket,
            &table,
            &format!(", columns = {COLUMNS}, create_table = true"),
        );
        let config = work.config(&pipeline("s", &stack, &emitter, ""));
        let checks: Vec<_> = (0..6)
            .map(|_| {
                std::process::Command::new(connector_bin())
                    .args(["check", "--config"])
                    .arg(&config)
                    .current_dir(work.dir.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in checks {
            let out = tokio::task::block_in_place(|| c.wait_with_output().unwrap());
            assert!(
                out.status.success(),
                "{table}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
