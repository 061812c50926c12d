//! The Iceberg emitter end to end: a SQL catalog on the local PostgreSQL, the warehouse in the local
//! S3 (s3s-fs), and the tables read back by PyIceberg (a third-party reader installed from PyPI by
//! `integration-tests/local-stack`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::fault_proxy::FaultProxy;
use integration_tests::tcp_switch::TcpSwitch;
use integration_tests::{
    Closes, Connector, Stack, Workdir, closes_with_slow_checkpoints, trickle_producer, unique,
    wait_until,
};
use kinesis_connectors_consumer::PutEntry;
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_iceberg::{IcebergEmitter, IcebergOptions};
use serde_json::Value;

/// The columns every test table has, and how its rows are partitioned.
const COLUMNS: &str = r#"[{ name = "id", type = "long", required = true }, { name = "kind", type = "string" }, { name = "ts", type = "timestamptz" }, { name = "price", type = "decimal(10, 2)" }, { name = "user", type = "struct<name: string, tier: int>" }, { name = "tags", type = "list<string>" }]"#;
const PARTITION_BY: &str = r#"["day(ts)", "identity(kind)"]"#;

fn catalog_uri() -> String {
    let port = std::env::var("PGPORT").expect("PGPORT: start the local stack");
    format!("postgres://postgres@127.0.0.1:{port}/dev")
}

/// The emitter's options (a TOML inline-table body) for `namespace.table` in `bucket`.
fn emitter_options(stack: &Stack, bucket: &str, namespace: &str, table: &str) -> String {
    format!(
        r#"type = "iceberg", catalog = "sql", catalog_uri = "{uri}", warehouse = "s3://{bucket}/warehouse", namespace = "{namespace}", table = "{table}", endpoint = "{s3}", create_table = true, columns = {COLUMNS}, partition_by = {PARTITION_BY}"#,
        uri = catalog_uri(),
        s3 = stack.s3
    )
}

/// Record `id` as JSON: three days, five kinds, a decimal price, a nested user and a list of tags.
fn event(id: u64) -> String {
    format!(
        r#"{{"id":{id},"kind":"k{}","ts":"2026-12-0{}T{:02}:{:02}:00Z","price":"{}.{:02}","user":{{"name":"u{id}","tier":{}}},"tags":["t{}","all"]}}"#,
        id % 5,
        1 + id % 3,
        id % 24,
        id % 60,
        id % 1000,
        id % 100,
        id % 3,
        id % 7
    )
}

/// What PyIceberg reads from `namespace.table`.
fn read_back(stack: &Stack, bucket: &str, namespace: &str, table: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/iceberg/read-table.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(catalog_uri())
        .arg(format!("s3://{bucket}/warehouse"))
        .arg(&stack.s3)
        .arg(format!("{namespace}.{table}"))
        .env(
            "PYTHONPATH",
            std::env::var("KC_ICEBERG_PYTHONPATH")
                .expect("KC_ICEBERG_PYTHONPATH: start the local stack"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyIceberg could not read the table: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(read: &Value) -> Vec<u64> {
    read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

fn pipeline(stream: &str, stack: &Stack, emitter: &str, extra: &str) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}" }}
transformer = {{ type = "json" }}
emitter = {{ {emitter} }}
{extra}
"#,
        kinesis = stack.kinesis
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_land_once_with_their_types_and_partitions() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ice-10k");
    client.create(&stream, 4).await.unwrap();
    // Record 77 has a price the column cannot hold: it goes to the dead-letter target.
    let entries: Vec<PutEntry> = (0..10_000u64)
        .map(|id| PutEntry {
            data: Bytes::from(if id == 77 {
                event(id).replace("\"price\":\"77.77\"", "\"price\":\"1.234\"")
            } else {
                event(id)
            }),
            partition_key: format!("pk-{}", id % 97),
            explicit_hash_key: None,
        })
        .collect();
    client.put_batch(&stream, entries).await.unwrap();
    let bucket = stack.bucket().await;
    let namespace = unique("ns").replace('-', "_");
    let table = "events";

    let work = Workdir::new();
    let config = work.config(&pipeline(
        &stream,
        &stack,
        &emitter_options(&stack, &bucket, &namespace, table),
        "buffer = { max_records = 1000 }",
    ));
    tokio::task::block_in_place(|| Connector::run_until_tip(work.dir.path(), &config, "p", &[]));

    let read = read_back(&stack, &bucket, &namespace, table);
    let expected: Vec<u64> = (0..10_000).filter(|id| *id != 77).collect();
    assert_eq!(
        ids(&read),
        expected,
        "the table's ids differ from the records'"
    );
    let schema = read["schema"].as_object().unwrap();
    let types: BTreeMap<&str, &str> = schema
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert_eq!(types["id"], "long");
    assert_eq!(types["ts"], "timestamptz");
    assert_eq!(types["price"], "decimal(10, 2)");
    assert!(types["user"].starts_with("struct<"), "{}", types["user"]);
    assert!(types["tags"].starts_with("list<"), "{}", types["tags"]);
    // Every value as it was put (PyIceberg's own reading of timestamps, decimals, structs, lists).
    let row = read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 1234)
        .unwrap();
    let want: Value = serde_json::from_str(&event(1234)).unwrap();
    assert_eq!(row["kind"], want["kind"]);
    assert_eq!(row["price"], want["price"]);
    assert_eq!(row["user"], want["user"]);
    assert_eq!(row["tags"], want["tags"]);
    assert_eq!(row["ts"], "2026-12-02T10:34:00+00:00");
    // Partitioned by day and kind: 3 days × 5 kinds, each file of one partition, rows summing up.
    let files = read["files"].as_array().unwrap();
    let partitions: std::collections::BTreeSet<String> =
        files.iter().map(|f| f["partition"].to_string()).collect();
    assert_eq!(partitions.len(), 15, "{partitions:?}");
    let in_files: u64 = files.iter().map(|f| f["records"].as_u64().unwrap()).sum();
    assert_eq!(in_files, 9_999);
    assert_eq!(
        read["partition_spec"],
        serde_json::json!(["day:ts_day", "identity:kind"])
    );

    let dead = work.dead_letters("p");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].reason.contains("column price"),
        "the dead letter does not name the column: {}",
        dead[0].reason
    );
}

/// A batch of `ids` from `shard`, record `n` at sequence `n`.
fn batch(shard: &str, ids: std::ops::Range<u64>) -> Batch<Item> {
    let items = ids
        .map(|id| {
            let data = event(id);
            Envelope::new(
                Item::parse_json(Bytes::from(data.clone())).unwrap(),
                Origin::new(record(shard, id, data.as_bytes())),
            )
        })
        .collect();
    Batch::new("p".into(), items, 0)
}

async fn connect(stack: &Stack, bucket: &str, namespace: &str) -> IcebergEmitter {
    connect_with(&emitter_options(stack, bucket, namespace, "events")).await
}

/// An emitter on `options` (an inline-table body as in `connectors.toml`).
async fn connect_with(options: &str) -> IcebergEmitter {
    let text = format!("e = {{ {options} }}");
    let mut table: toml::Table = text.parse().unwrap();
    let mut options = table.remove("e").unwrap();
    options.as_table_mut().unwrap().remove("type");
    let options: IcebergOptions = options.try_into().unwrap();
    IcebergEmitter::connect("p", options.validate().unwrap(), "us-east-1")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_redelivered_after_its_commit_is_not_appended_again() {
    let stack = Stack::from_env();
    let bucket = stack.bucket().await;
    let namespace = unique("ns").replace('-', "_");
    let first = connect(&stack, &bucket, &namespace).await;
    let outcome = first.emit(&batch("shard-0", 0..100)).await.unwrap();
    assert!(outcome.is_success(), "{outcome:?}");

    // The crash between commit and checkpoint: the same batch again, from this emitter and from a
    // new one (a restarted worker, or the worker the lease moved to), then a batch that overlaps it.
    assert!(
        first
            .emit(&batch("shard-0", 0..100))
            .await
            .unwrap()
            .is_success()
    );
    let second = connect(&stack, &bucket, &namespace).await;
    assert!(
        second
            .emit(&batch("shard-0", 0..100))
            .await
            .unwrap()
            .is_success()
    );
    assert!(
        second
            .emit(&batch("shard-0", 50..150))
            .await
            .unwrap()
            .is_success()
    );
    // Another shard with the same sequence numbers is not mistaken for the first.
    assert!(
        second
            .emit(&batch("shard-1", 1000..1010))
            .await
            .unwrap()
            .is_success()
    );

    let read = read_back(&stack, &bucket, &namespace, "events");
    let mut want: Vec<u64> = (0..150).chain(1000..1010).collect();
    want.sort();
    assert_eq!(ids(&read), want, "rows held twice or missing");
    assert_eq!(read["snapshots"], 3, "an append of nothing was committed");

    // A refused item is refused again on its redelivery (it must reach the dead-letter target even
    // when its batch's commit happened before the crash).
    let mut bad = batch("shard-2", 0..3);
    bad.items[1] = Envelope::new(
        Item::parse_json(Bytes::from_static(br#"{"id": 1, "ts": "never"}"#)).unwrap(),
        Origin::new(record("shard-2", 1, b"x")),
    );
    for _ in 0..2 {
        let outcome = second.emit(&bad).await.unwrap();
        assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
        assert_eq!(outcome.failures[0].index, 1);
        assert!(
            outcome.failures[0].reason.contains("column ts"),
            "{outcome:?}"
        );
    }
}

/// Three workers on one lease table commit to one table while workers are SIGKILLed — with
/// checkpoints through a slow (400 ms) link, so kills land between writing files and committing and
/// between committing and checkpointing — and restarted under their own id or a new one: every
/// record is one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_killed_and_restarted_commit_each_record_once() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ice-kill");
    client.create(&stream, 4).await.unwrap();
    let bucket = stack.bucket().await;
    let namespace = unique("ns").replace('-', "_");
    let (_link, lines) = closes_with_slow_checkpoints(&stack, "${WORKER}", Closes::Age).await;
    let work = Workdir::new();
    let config = work.config(&format!(
        "state_dir = \"${{STATE_DIR}}\"\n[pipelines.p]\nsource = {{ stream = \"{stream}\", endpoint = \"{kinesis}\", idle_poll_interval = \"200ms\", shard_sync_interval = \"1s\" }}\ntransformer = {{ type = \"json\" }}\nemitter = {{ {emitter} }}\nretry = {{ base_delay = \"10ms\", max_delay = \"200ms\" }}\n{lines}\n",
        kinesis = stack.kinesis,
        emitter = emitter_options(&stack, &bucket, &namespace, "events"),
    ));
    let start = |name: &str| {
        let env = vec![
            (
                "STATE_DIR",
                work.path(&format!("state-{name}")).display().to_string(),
            ),
            ("WORKER", name.to_owned()),
        ];
        Connector::start(work.dir.path(), &config, "p", &[], &env)
    };
    let mut workers: Vec<(String, Connector)> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| (n.to_string(), start(n)))
        .collect();

    let halt = Arc::new(AtomicBool::new(false));
    let producer = trickle_producer(client.clone(), stream.clone(), halt.clone());
    // Six kills, about 3 s apart: three restarts under the same id, three under a new id.
    for round in 0..6usize {
        tokio::time::sleep(Duration::from_millis(2_500 + 300 * round as u64)).await;
        let victim = round % workers.len();
        let (name, mut worker) = workers.remove(victim);
        worker.kill();
        let name = if round % 2 == 0 {
            name
        } else {
            format!("{name}-r{round}")
        };
        workers.push((name.clone(), start(&name)));
    }
    halt.store(true, Ordering::SeqCst);
    let ledger = producer.await.unwrap();
    let put: Vec<u64> = ledger.records.keys().copied().collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    let landed = loop {
        let read = tokio::task::block_in_place(|| read_back(&stack, &bucket, &namespace, "events"));
        let landed = ids(&read);
        let unique_ids: std::collections::BTreeSet<u64> = landed.iter().copied().collect();
        if put.iter().all(|id| unique_ids.contains(id)) || Instant::now() > deadline {
            break landed;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for (_, w) in &workers {
        w.terminate();
    }
    for (name, w) in &mut workers {
        let status = tokio::task::block_in_place(|| w.wait(Duration::from_secs(60)));
        assert!(
            status.success(),
            "worker {name}: {status:?}\n{}",
            w.log_tail(30)
        );
    }
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for id in &landed {
        *counts.entry(*id).or_default() += 1;
    }
    let lost = put.iter().filter(|id| !counts.contains_key(id)).count();
    let twice = counts.values().filter(|c| **c > 1).count();
    eprintln!(
        "{} records put, {} rows, {lost} lost, {twice} held twice",
        put.len(),
        landed.len()
    );
    assert_eq!(lost, 0, "records missing from the table");
    assert_eq!(twice, 0, "records committed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpartitioned_table_takes_each_batch_as_one_file() {
    let stack = Stack::from_env();
    let bucket = stack.bucket().await;
    let namespace = unique("ns").replace('-', "_");
    let options = emitter_options(&stack, &bucket, &namespace, "events")
        .replace(&format!(", partition_by = {PARTITION_BY}"), "");
    let emitter = connect_with(&options).await;
    for _ in 0..2 {
        assert!(
            emitter
                .emit(&batch("shard-0", 0..500))
                .await
                .unwrap()
                .is_success()
        );
    }
    let read = read_back(&stack, &bucket, &namespace, "events");
    assert_eq!(ids(&read), (0..500).collect::<Vec<u64>>());
    assert_eq!(read["partition_spec"], serde_json::json!([]));
    assert_eq!(
        read["files"].as_array().unwrap().len(),
        1,
        "{}",
        read["files"]
    );
}

/// Where a targeted SIGKILL lands in a batch's way into the table.
#[derive(Clone, Copy, Debug)]
enum Window {
    /// The batch's data files are in the warehouse; its commit never reaches the catalog.
    FilesWritten,
    /// The commit is in the table; its checkpoint never reaches the lease table.
    Committed,
}

/// One worker, its catalog (PostgreSQL) and its lease table (DynamoDB) each behind a switch, S3 behind
/// a proxy that watches the data-file PUTs. At the first data file the proxy blackholes the catalog
/// (so the commit hangs) or the lease table (so the commit goes through and the checkpoint hangs); the
/// worker is SIGKILLed once the window is reached, and a worker started under the same id with both
/// links back delivers the rest: every record is one row.
async fn killed_in(window: Window) {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("ice-window");
    client.create(&stream, 2).await.unwrap();
    let entries: Vec<PutEntry> = (0..600u64)
        .map(|id| PutEntry {
            data: Bytes::from(event(id)),
            partition_key: format!("pk-{}", id % 31),
            explicit_hash_key: None,
        })
        .collect();
    client.put_batch(&stream, entries).await.unwrap();
    let bucket = stack.bucket().await;
    let namespace = unique("ns").replace('-', "_");
    let pg_port = std::env::var("PGPORT").expect("PGPORT: start the local stack");
    let catalog = Arc::new(TcpSwitch::start(&format!("http://127.0.0.1:{pg_port}")).await);
    let leases = Arc::new(TcpSwitch::start(&stack.dynamodb).await);
    let (c, l) = (catalog.clone(), leases.clone());
    // Once: the restarted worker's files and commits go through.
    let armed = Arc::new(AtomicBool::new(true));
    let s3 = FaultProxy::start(
        &stack.s3,
        Arc::new(move |method, path, _, _, _| {
            if method == "PUT" && path.contains(".parquet") && armed.swap(false, Ordering::SeqCst) {
                match window {
                    Window::FilesWritten => c.blackhole(),
                    Window::Committed => l.blackhole(),
                }
            }
            None
        }),
    )
    .await;
    let switch_port = catalog.url.rsplit(':').next().unwrap().to_owned();
    let options = emitter_options(&stack, &bucket, &namespace, "events")
        .replace(
            &catalog_uri(),
            &format!("postgres://postgres@127.0.0.1:{switch_port}/dev"),
        )
        .replace(
            &format!("endpoint = \"{}\"", stack.s3),
            &format!("endpoint = \"{}\"", s3.url),
        );
    let work = Workdir::new();
    let config = work.config(&pipeline(
        &stream,
        &stack,
        &options,
        &format!(
            "buffer = {{ max_records = 100 }}\ncheckpoint = {{ type = \"dynamodb\", table = \"{}\", endpoint = \"{}\", worker_id = \"w\" }}",
            unique("ice-window-leases"),
            leases.url
        ),
    ));
    let mut worker = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let files_done = || {
        s3.log()
            .iter()
            .any(|s| s.method == "PUT" && s.path.contains(".parquet") && s.status == 200)
    };
    match window {
        Window::FilesWritten => {
            tokio::task::block_in_place(|| {
                wait_until(Duration::from_secs(60), "a data file written", files_done)
            });
        }
        Window::Committed => {
            tokio::task::block_in_place(|| {
                wait_until(Duration::from_secs(60), "a data file written", files_done);
                wait_until(Duration::from_secs(60), "a commit in the table", || {
                    !ids(&read_back(&stack, &bucket, &namespace, "events")).is_empty()
                })
            });
        }
    }
    worker.kill();
    let at_kill = ids(&tokio::task::block_in_place(|| {
        read_back(&stack, &bucket, &namespace, "events")
    }));
    catalog.forward();
    leases.forward();
    let restart_log = tokio::task::block_in_place(|| {
        let mut again = Connector::start(work.dir.path(), &config, "p", &["--until-tip"], &[]);
        let status = again.wait(Duration::from_secs(120));
        assert!(status.success(), "{status:?}\n{}", again.log_tail(30));
        again.log()
    });

    let read = read_back(&stack, &bucket, &namespace, "events");
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for id in ids(&read) {
        *counts.entry(id).or_default() += 1;
    }
    let lost: Vec<u64> = (0..600).filter(|id| !counts.contains_key(id)).collect();
    let twice: Vec<u64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    eprintln!(
        "{window:?}: {} rows at the kill, {} after the restart, {} lost, {} twice",
        at_kill.len(),
        counts.values().sum::<usize>(),
        lost.len(),
        twice.len()
    );
    assert!(lost.is_empty(), "{window:?}: lost {lost:?}");
    assert!(twice.is_empty(), "{window:?}: held twice {twice:?}");
    match window {
        // The kill really fell between files and commit: the table held nothing, and the files the
        // killed worker wrote are orphans (in the warehouse, in no snapshot).
        Window::FilesWritten => {
            assert!(at_kill.is_empty(), "a commit was made before the kill");
            let parquet = s3_keys_with(&stack, &bucket, ".parquet").await;
            let referenced = read["files"].as_array().unwrap().len();
            assert!(
                parquet > referenced,
                "no orphan data file: {parquet} files, {referenced} in the table"
            );
        }
        // The kill fell between commit and checkpoint: rows were in the table, and the restarted worker
        // read a shard again from its start (no checkpoint had been written).
        Window::Committed => {
            assert!(!at_kill.is_empty());
            assert!(
                restart_log.contains("from=TRIM_HORIZON"),
                "the restarted worker did not re-read a shard from its start:\n{restart_log}"
            );
        }
    }
}

/// How many objects of `bucket` have `needle` in their key.
async fn s3_keys_with(stack: &Stack, bucket: &str, needle: &str) -> usize {
    let s3 = stack.s3().await;
    integration_tests::s3_keys(&s3, bucket, "warehouse/", None)
        .await
        .iter()
        .filter(|key| key.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_writing_files_and_committing_leaves_orphans_and_no_row_twice() {
    killed_in(Window::FilesWritten).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_committing_and_checkpointing_appends_nothing_again() {
    killed_in(Window::Committed).await;
}

/// `check`: mistakes in the options exit 2 naming the key before anything is reached; a table that
/// is missing (and not to be created) fails the sink probe naming the table; a table that is there
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_key_of_a_bad_option_and_probes_the_table() {
    let stack = Stack::from_env();
    let bucket = stack.bucket().await;
    let namespace = unique("ns").replace('-', "_");
    let check = |emitter: &str| {
        let work = Workdir::new();
        let config = work.config(&format!(
            "[pipelines.p]\nsource = {{ stream = \"s\", endpoint = \"{}\" }}\ntransformer = {{ type = \"json\" }}\nemitter = {{ {emitter} }}\n",
            stack.kinesis
        ));
        let out = Command::new(integration_tests::connector_bin())
            .args(["check", "--config"])
            .arg(&config)
            .current_dir(work.dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let good = emitter_options(&stack, &bucket, &namespace, "events");
    for (options, expected) in [
        (
            good.replace("postgres://postgres@", "postgres://postgres:hunter2@"),
            "key \"emitter.catalog_uri\": the URL holds a password",
        ),
        (
            good.replace("\"day(ts)\"", "\"week(ts)\""),
            "key \"emitter.partition_by[0]\"",
        ),
        (
            good.replace("\"decimal(10, 2)\"", "\"money\""),
            "key \"emitter.columns[3].type\"",
        ),
        (
            good.replace(&format!("s3://{bucket}/warehouse"), "/tmp/warehouse"),
            "key \"emitter.warehouse\"",
        ),
    ] {
        let (code, out) = check(&options);
        assert_eq!(code, 2, "{options}\n{out}");
        assert!(
            out.contains("pipeline \"p\"") && out.contains(expected),
            "{options}\n{out}"
        );
        assert!(!out.contains("hunter2"), "the password was printed:\n{out}");
    }
    // Not created by `check` (create_table = false) and not there: the probe names the table.
    let missing = format!(
        r#"type = "iceberg", catalog = "sql", catalog_uri = "{}", warehouse = "s3://{bucket}/warehouse", namespace = "{namespace}", table = "nowhere", endpoint = "{}""#,
        catalog_uri(),
        stack.s3
    );
    let (code, out) = check(&missing);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("nowhere"),
        "the missing table is not named:\n{out}"
    );
    // With create_table the table is made at start-up; the probe then finds it.
    let (code, out) = check(&good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("iceberg sink reachable"), "{out}");
}
