//! The DynamoDB emitter against the local DynamoDB (dynalite) and Kinesis: latest state per key from
//! interleaved shards, ordering-safe restarts after SIGKILL, `UnprocessedItems` (made by the fault
//! proxy's rewrite rule, reached only through the endpoint override), refused items isolated,
//! throttling, request limits, and the start-up check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ScalarAttributeType as T};
use bytes::Bytes;
use integration_tests::dynamodb::{
    batch_writes, client, create_table, delete_table, dynamodb_pipeline, is_op, n, s, scan,
    unprocessed_items,
};
use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use integration_tests::{Connector, Ledger, Stack, Workdir, put_records, unique, wait_until};
use kinesis_connectors_consumer::{Checkpoint, PutEntry};
use kinesis_connectors_core::testing::{record, sequence};
use kinesis_connectors_core::{
    Batch, Emitter, Envelope, FailureKind, Item, ItemPosition, Origin, Position, SequenceNumber,
};
use kinesis_connectors_emitter_dynamodb::{DynamoDbConfig, DynamoDbEmitter, encode_position};
use serde_json::{Value, json};

/// A proxy that forwards everything (its log shows what the emitter sent).
async fn pass_through(target: &str) -> FaultProxy {
    FaultProxy::start(target, Arc::new(|_, _, _, _, _| None)).await
}

async fn emitter(options: Value) -> DynamoDbEmitter {
    let config: DynamoDbConfig = serde_json::from_value(options).unwrap();
    DynamoDbEmitter::connect(config, "us-east-1").await
}

/// A batch of JSON items, each from the record `n` of `shard` (sequence numbers grow with `n`).
fn batch(items: Vec<(&str, u64, Value)>) -> Batch<Item> {
    let envelopes = items
        .into_iter()
        .map(|(shard, n, v)| {
            Envelope::new(Item::from_value(&v), Origin::new(record(shard, n, b"")))
        })
        .collect();
    Batch::new("p".into(), envelopes, 0)
}

/// Per key (`k-{id % keys}`), the id of the record with the highest sequence number.
fn last_per_key(ledger: &Ledger, keys: u64) -> HashMap<String, (u64, SequenceNumber)> {
    let mut last: HashMap<String, (u64, SequenceNumber)> = HashMap::new();
    for (id, (_, seq)) in &ledger.records {
        let e = last
            .entry(format!("k-{}", id % keys))
            .or_insert((*id, seq.clone()));
        if *seq > e.1 {
            *e = (*id, seq.clone());
        }
    }
    last
}

fn checkpoint_seq(c: &Checkpoint) -> Option<SequenceNumber> {
    c.position().map(|p| p.sequence.clone())
}

/// The key and the test record's counter `n` of a PutItem body or a BatchWriteItem put request.
fn key_and_n(item: &Value) -> (String, i64) {
    (
        item["key"]["S"].as_str().unwrap().to_owned(),
        item["n"]["N"].as_str().unwrap().parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_over_a_thousand_keys_leave_each_key_at_its_last_record() {
    let stack = Stack::from_env();
    let kinesis = stack.streams().await;
    let ddb = client(&stack.dynamodb).await;
    let (stream, table) = (unique("ddb-10k"), unique("ddb-10k"));
    kinesis.create(&stream, 4).await.unwrap();
    create_table(&ddb, &table, ("key", T::S), None).await;
    // Ids 0..10000 with key k-(id % 1000): each key's ten versions interleaved with the other keys'.
    let ledger = put_records(&kinesis, &stream, 0..10_000, 1_000, &|_| false).await;
    assert_eq!(ledger.last_per_shard().len(), 4, "records over 4 shards");
    let expected = last_per_key(&ledger, 1_000);

    let proxy = pass_through(&stack.dynamodb).await;
    let work = Workdir::new();
    let config = work.config(&dynamodb_pipeline(
        &stream,
        &stack.kinesis,
        &format!(
            r#"table = "{table}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}, sequence_attribute = "seq", max_concurrent_writes = 8"#,
            proxy.url
        ),
        "buffer = { max_records = 500, max_age = \"1s\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let items = scan(&ddb, &table).await;
    assert_eq!(items.len(), 1_000, "exactly one item per key");
    for item in &items {
        let key = s(item, "key");
        let (id, seq) = &expected[key];
        assert_eq!(
            n(item, "id") as u64,
            *id,
            "key {key} is not at its last record"
        );
        assert_eq!(
            s(item, "seq"),
            encode_position(&ItemPosition::new(Position::new(seq.clone(), 0), 0))
        );
    }
    assert!(work.dead_letters("p").is_empty());
    work.assert_checkpointed_at_last_records("p", &ledger);
    // What was sent: at most 25 writes per request, never a key twice in one request, and older
    // versions inside a batch were skipped (fewer writes than records).
    let mut writes = 0;
    for seen in proxy.log().iter().filter(|s| is_op(s, "BatchWriteItem")) {
        let w = batch_writes(&seen.body);
        assert!(
            !w.is_empty() && w.len() <= 25,
            "{} writes in one request",
            w.len()
        );
        let keys: HashSet<String> = w
            .iter()
            .map(|w| key_and_n(&w["PutRequest"]["Item"]).0)
            .collect();
        assert_eq!(keys.len(), w.len(), "a key twice in one request");
        writes += w.len();
    }
    eprintln!("10,000 records → {writes} writes");
    assert!((1_000..10_000).contains(&writes), "{writes} writes");
    delete_table(&ddb, &table).await;
}

/// Issue 14, defect 1: the ordering-safe position of DynamoDB was the record's, so all items of one
/// record had one position and the conditional write (`seq < :seq`) refused every later batch of that
/// record's items for the same key. The position now orders items within a record: each key ends at the last item of its
/// last record, whichever batches the record's 1,200 items were split over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_ends_at_the_last_item_of_its_last_many_item_record() {
    let stack = Stack::from_env();
    let kinesis = stack.streams().await;
    let ddb = client(&stack.dynamodb).await;
    let (stream, table) = (unique("ddb-multi"), unique("ddb-multi"));
    kinesis.create(&stream, 2).await.unwrap();
    create_table(&ddb, &table, ("key", T::S), None).await;
    let (records, lines, keys) = (6, 1_200, 3);
    let ledger =
        integration_tests::put_multi_item_records(&kinesis, &stream, records, lines, keys).await;
    // Per key, the record put last (highest sequence number): its last item must win.
    let mut last: HashMap<String, (SequenceNumber, u64)> = HashMap::new();
    for r in 0..records {
        let (_, seq) = &ledger.records[&(r * lines)];
        let e = last
            .entry(format!("k-{}", r % keys))
            .or_insert((seq.clone(), r));
        if seq > &e.0 {
            *e = (seq.clone(), r);
        }
    }
    let work = Workdir::new();
    let config = work.config(
        &dynamodb_pipeline(
            &stream,
            &stack.kinesis,
            &format!(
                r#"table = "{table}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}, sequence_attribute = "seq", ordering_safe = true"#,
                stack.dynamodb
            ),
            "buffer = { max_records = 500, max_age = \"1h\" }",
        )
        .replace("type = \"json\"", "type = \"json_lines\""),
    );
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let items = scan(&ddb, &table).await;
    assert_eq!(items.len() as u64, keys, "one item per key");
    for item in &items {
        let key = s(item, "key");
        let (seq, r) = &last[key];
        assert_eq!(
            n(item, "id") as u64,
            r * lines + lines - 1,
            "key {key} is not at the last item of its last record"
        );
        assert_eq!(
            s(item, "seq"),
            encode_position(&ItemPosition::new(
                Position::new(seq.clone(), 0),
                (lines - 1) as u32
            ))
        );
    }
    assert!(work.dead_letters("p").is_empty());
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_in_ordering_safe_mode_never_regress_an_item() {
    let stack = Stack::from_env();
    let kinesis = stack.streams().await;
    let ddb = client(&stack.dynamodb).await;
    let (stream, table) = (unique("ddb-kill"), unique("ddb-kill"));
    kinesis.create(&stream, 2).await.unwrap();
    create_table(&ddb, &table, ("key", T::S), None).await;
    let (total, keys) = (3_000u64, 100u64);
    // The record's counter n = id / keys grows with each key's versions.
    let ledger = put_records(&kinesis, &stream, 0..total, keys, &|_| false).await;
    let expected = last_per_key(&ledger, keys);

    let proxy = pass_through(&stack.dynamodb).await;
    let work = Workdir::new();
    let text = dynamodb_pipeline(
        &stream,
        &stack.kinesis,
        &format!(
            r#"table = "{table}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}, ordering_safe = true, max_concurrent_writes = 2"#,
            proxy.url
        ),
        "buffer = { max_records = 40, max_age = \"200ms\" }",
    )
    .replace(
        "idle_poll_interval = \"200ms\"",
        "idle_poll_interval = \"200ms\", max_records_per_call = 100",
    );
    let config = work.config(&text);

    // Run 1, killed while writing.
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    wait_until(Duration::from_secs(60), "writes before the kill", || {
        proxy.calls("PutItem").len() >= 600
    });
    c.kill();
    // Requests arriving from now on are the restart's (writes of run 1 still in flight at the proxy
    // may land after the scan below: that only makes the snapshot older, never newer).
    let killed_at = std::time::Instant::now();
    let at_kill: HashMap<String, i64> = scan(&ddb, &table)
        .await
        .iter()
        .map(|i| (s(i, "key").to_owned(), n(i, "n")))
        .collect();
    let final_n = (total / keys - 1) as i64;
    assert!(
        at_kill.len() < keys as usize || at_kill.values().any(|v| *v < final_n),
        "the kill came after the end"
    );

    // Run 2 resumes from the checkpoints: every write it gets through is newer than the table was.
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let mut refused = 0;
    for seen in proxy
        .log()
        .iter()
        .filter(|s| s.at > killed_at && is_op(s, "PutItem"))
    {
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        assert!(
            body["ConditionExpression"].is_string(),
            "ordering-safe writes are conditional"
        );
        let (key, v) = key_and_n(&body["Item"]);
        match seen.status {
            200 => {
                if let Some(before) = at_kill.get(&key) {
                    assert!(v > *before, "key {key} regressed from {before} to {v}");
                }
            }
            400 => refused += 1, // ConditionalCheckFailed: a newer version is stored
            other => panic!("PutItem answered {other}"),
        }
    }
    eprintln!(
        "at the kill {} keys stored; the restart re-sent {refused} writes that the table refused as older",
        at_kill.len()
    );
    let check_final = |items: &[HashMap<String, AttributeValue>]| {
        assert_eq!(items.len(), keys as usize);
        for item in items {
            let key = s(item, "key");
            assert_eq!(n(item, "id") as u64, expected[key].0, "key {key}");
            assert_eq!(
                s(item, "kinesis_sequence"),
                encode_position(&ItemPosition::new(
                    Position::new(expected[key].1.clone(), 0),
                    0
                ))
            );
        }
    };
    let final_items = scan(&ddb, &table).await;
    check_final(&final_items);
    assert!(work.dead_letters("p").is_empty());

    // Run 3 with the checkpoints lost (a worker starting over from TRIM_HORIZON): every record is
    // redelivered, oldest first; plain writes would walk each key back through all its versions,
    // conditional ones are all refused.
    std::fs::remove_file(work.path("state/p.checkpoints.json")).unwrap();
    let mark = proxy.log().len();
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    let replay: Vec<_> = proxy.log()[mark..]
        .iter()
        .filter(|s| is_op(s, "PutItem"))
        .cloned()
        .collect();
    assert!(replay.len() >= keys as usize, "the replay wrote");
    assert!(
        replay.iter().all(|s| s.status == 400),
        "a replayed older record replaced a newer one"
    );
    assert_eq!(scan(&ddb, &table).await.len(), keys as usize);
    check_final(&scan(&ddb, &table).await);
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprocessed_items_are_resent_until_they_land_or_the_retry_policy_gives_up() {
    let stack = Stack::from_env();
    let kinesis = stack.streams().await;
    let ddb = client(&stack.dynamodb).await;
    let (stream, table) = (unique("ddb-unprocessed"), unique("ddb-unprocessed"));
    kinesis.create(&stream, 2).await.unwrap();
    create_table(&ddb, &table, ("key", T::S), None).await;
    let total = 600u64;
    let ledger = put_records(&kinesis, &stream, 0..total, total, &|_| false).await;

    // Keys k-N with N % 3 == 0 come back unprocessed the first time they are sent; k-13 every time.
    let dropped: Arc<Mutex<HashSet<String>>> = Arc::default();
    let d = dropped.clone();
    let rewrite = unprocessed_items(move |w| {
        let key = w["PutRequest"]["Item"]["key"]["S"]
            .as_str()
            .unwrap()
            .to_owned();
        let id: u64 = key[2..].parse().unwrap();
        id == 13 || (id.is_multiple_of(3) && d.lock().unwrap().insert(key))
    });
    let proxy = FaultProxy::start_with(
        &stack.dynamodb,
        Arc::new(|_, _, _, _, _| None),
        Some(rewrite),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&dynamodb_pipeline(
        &stream,
        &stack.kinesis,
        &format!(
            r#"table = "{table}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}"#,
            proxy.url
        ),
        "buffer = { max_records = 100, max_age = \"500ms\" }\nretry = { base_delay = \"20ms\", max_delay = \"200ms\", max_attempts = 4 }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let stored: HashSet<String> = scan(&ddb, &table)
        .await
        .iter()
        .map(|i| s(i, "key").to_owned())
        .collect();
    assert_eq!(stored.len(), total as usize - 1);
    assert!(!stored.contains("k-13"));
    // Each once-dropped key was sent exactly twice (dropped, then re-sent and landed).
    let mut sends: HashMap<String, usize> = HashMap::new();
    let requests: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|s| is_op(s, "BatchWriteItem"))
        .collect();
    for seen in &requests {
        for w in batch_writes(&seen.body) {
            *sends
                .entry(key_and_n(&w["PutRequest"]["Item"]).0)
                .or_default() += 1;
        }
    }
    let dropped = dropped.lock().unwrap().clone();
    assert_eq!(dropped.len(), 200);
    for key in &dropped {
        assert_eq!(sends[key], 2, "{key} sent {} times", sends[key]);
        assert!(stored.contains(key), "{key} did not land");
    }
    assert_eq!(sends["k-13"], 4, "k-13 is tried max_attempts times");
    assert!(requests.iter().any(|s| s.rewritten));
    // ... then dead-lettered, and the checkpoints still reach the end of every shard.
    let dead = work.dead_letters("p");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].partition_key, "k-13");
    assert!(
        dead[0]
            .reason
            .contains("retries exhausted after 4 attempts")
            && dead[0].reason.contains("UnprocessedItems"),
        "{}",
        dead[0].reason
    );
    work.assert_checkpointed_at_last_records("p", &ledger);
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_with_an_invalid_attribute_is_dead_lettered_alone_while_its_batch_lands() {
    let stack = Stack::from_env();
    let kinesis = stack.streams().await;
    let ddb = client(&stack.dynamodb).await;
    let (stream, table) = (unique("ddb-invalid"), unique("ddb-invalid"));
    kinesis.create(&stream, 1).await.unwrap();
    create_table(&ddb, &table, ("key", T::S), None).await;
    // 100 records in one batch: record 37 holds a 42-digit number (DynamoDB numbers have at most 38
    // significant digits), record 55 has no key.
    let entries: Vec<PutEntry> = (0..100u64)
        .map(|id| {
            let doc = match id {
                37 => format!(r#"{{"key":"k-{id}","id":{id},"big":{}}}"#, "7".repeat(42)),
                55 => format!(r#"{{"id":{id}}}"#),
                _ => format!(r#"{{"key":"k-{id}","id":{id},"big":{}}}"#, "7".repeat(38)),
            };
            PutEntry::new(Bytes::from(doc), format!("k-{id}"))
        })
        .collect();
    let results = kinesis.put_batch(&stream, entries).await.unwrap();

    let proxy = pass_through(&stack.dynamodb).await;
    let work = Workdir::new();
    let config = work.config(&dynamodb_pipeline(
        &stream,
        &stack.kinesis,
        &format!(
            r#"table = "{table}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}"#,
            proxy.url
        ),
        "buffer = { max_records = 100, max_age = \"2s\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let items = scan(&ddb, &table).await;
    assert_eq!(items.len(), 98);
    assert!(
        items
            .iter()
            .all(|i| *i["big"].as_n().unwrap() == "7".repeat(38))
    );
    let mut dead = work.dead_letters("p");
    dead.sort_by(|a, b| a.sequence.cmp(&b.sequence));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].sequence.as_str(), results[37].sequence_number);
    assert!(
        dead[0].reason.contains("ValidationException"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[1].sequence.as_str(), results[55].sequence_number);
    assert!(
        dead[1].reason.contains("missing key attribute \"key\""),
        "{}",
        dead[1].reason
    );
    // The refused request was split until record 37 stood alone; no write was sent after a success
    // other than to find it.
    let requests: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|s| is_op(s, "BatchWriteItem"))
        .collect();
    let alone = requests.iter().any(|s| {
        let w = batch_writes(&s.body);
        w.len() == 1 && w[0]["PutRequest"]["Item"]["key"]["S"] == "k-37" && s.status == 400
    });
    assert!(alone, "record 37 was isolated");
    assert!(requests.len() <= 4 + 2 * 5, "{} requests", requests.len());
    let last = results.last().unwrap().sequence_number.clone();
    let checkpoints = work.checkpoints("p");
    assert_eq!(
        checkpoints
            .values()
            .next()
            .and_then(checkpoint_seq)
            .unwrap()
            .as_str(),
        last
    );
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_batch_writes_are_retried_and_land() {
    let stack = Stack::from_env();
    let kinesis = stack.streams().await;
    let ddb = client(&stack.dynamodb).await;
    let (stream, table) = (unique("ddb-throttle"), unique("ddb-throttle"));
    kinesis.create(&stream, 1).await.unwrap();
    create_table(&ddb, &table, ("key", T::S), None).await;
    put_records(&kinesis, &stream, 0..300, 300, &|_| false).await;

    let throttled = Arc::new(Mutex::new(0));
    let t = throttled.clone();
    let rule: Rule = Arc::new(move |_, _, headers, _, _| {
        let op = headers.get("x-amz-target")?.to_str().ok()?;
        let mut t = t.lock().unwrap();
        (op.ends_with(".BatchWriteItem") && *t < 3).then(|| {
            *t += 1;
            Fault::aws_json(
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded",
            )
        })
    });
    let proxy = FaultProxy::start(&stack.dynamodb, rule).await;
    let work = Workdir::new();
    let config = work.config(&dynamodb_pipeline(
        &stream,
        &stack.kinesis,
        &format!(
            r#"table = "{table}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}"#,
            proxy.url
        ),
        "buffer = { max_records = 300, max_age = \"1s\" }\nretry = { base_delay = \"20ms\", max_delay = \"100ms\", max_attempts = 10 }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);
    assert_eq!(scan(&ddb, &table).await.len(), 300);
    assert!(work.dead_letters("p").is_empty());
    let log = proxy.calls("BatchWriteItem");
    assert_eq!(log.iter().filter(|s| s.injected).count(), 3);
    assert!(log.iter().filter(|s| !s.injected).all(|s| s.status == 200));
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_a_batch_the_newest_record_of_each_key_wins_and_deletes_apply() {
    let stack = Stack::from_env();
    let ddb = client(&stack.dynamodb).await;
    let table = unique("ddb-newest");
    create_table(&ddb, &table, ("id", T::S), Some(("line", T::N))).await;
    ddb.put_item()
        .table_name(&table)
        .item("id", AttributeValue::S("b".into()))
        .item("line", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let e = emitter(json!({
        "table": table, "endpoint": stack.dynamodb,
        "partition_key": { "attribute": "id", "type": "S" },
        "sort_key": { "attribute": "line", "type": "N" },
        "rename": { "qty": "quantity" }, "drop": ["debug"],
        "ttl": { "attribute": "expires", "after": "1h" },
        "delete_when": { "field": "op", "equals": "delete" },
        "sequence_attribute": "seq",
    }))
    .await;
    e.check().await.unwrap();
    let b = batch(vec![
        (
            "shardId-0",
            1,
            json!({"id": "a", "line": 1, "v": 1, "qty": 5, "debug": "x"}),
        ),
        ("shardId-0", 2, json!({"id": "a", "line": 1, "v": 2})),
        ("shardId-0", 3, json!({"id": "a", "line": 1.0, "v": 3})), // the same key: 1.0 == 1
        ("shardId-0", 4, json!({"id": "b", "line": 1, "v": 1})),
        ("shardId-1", 9, json!({"id": "a", "line": 1, "v": 9})), // another shard, newest
        (
            "shardId-0",
            6,
            json!({"id": "b", "line": 1, "op": "delete"}),
        ),
        (
            "shardId-0",
            7,
            json!({"id": "c", "line": 2, "qty": 7, "debug": "y"}),
        ),
        ("shardId-0", 8, json!({"line": 3})),
    ]);
    let outcome = e.emit(&b).await.unwrap();
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].index, 7);
    assert_eq!(outcome.failures[0].kind, FailureKind::Permanent);
    assert!(
        outcome.failures[0]
            .reason
            .contains("missing key attribute \"id\"")
    );

    let items = scan(&ddb, &table).await;
    let by_id: HashMap<&str, &HashMap<String, AttributeValue>> =
        items.iter().map(|i| (s(i, "id"), i)).collect();
    assert_eq!(by_id.len(), 2, "b deleted: {items:?}");
    assert_eq!(n(by_id["a"], "v"), 9);
    assert_eq!(
        s(by_id["a"], "seq"),
        encode_position(&ItemPosition::new(Position::new(sequence(9), 0), 0))
    );
    let c = by_id["c"];
    assert_eq!(n(c, "quantity"), 7);
    assert!(!c.contains_key("qty") && !c.contains_key("debug"));
    // record 7 arrived at 2026-01-01T00:00:07Z
    assert_eq!(n(c, "expires"), 1_767_225_607 + 3_600);
    let m = e.metrics();
    assert_eq!((m.requests, m.items_written, m.items_superseded), (1, 3, 4));
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_newest_record_is_dead_lettered_alone_and_the_next_newest_lands() {
    let stack = Stack::from_env();
    let ddb = client(&stack.dynamodb).await;
    let table = unique("ddb-refused");
    create_table(&ddb, &table, ("key", T::S), None).await;
    let proxy = pass_through(&stack.dynamodb).await;
    let e = emitter(json!({
        "table": table, "endpoint": proxy.url,
        "partition_key": { "attribute": "key", "type": "S" },
    }))
    .await;
    let mut items: Vec<(&str, u64, Value)> = (0..28)
        .map(|k| ("shardId-0", k, json!({"key": format!("k-{k}"), "v": 1})))
        .collect();
    items.push(("shardId-0", 40, json!({"key": "k-5", "v": 2, "big": 1e300})));
    let b = batch(items);
    let outcome = e.emit(&b).await.unwrap();
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failures[0].index, 28);
    assert_eq!(outcome.failures[0].kind, FailureKind::Permanent);
    assert!(
        outcome.failures[0].reason.contains("ValidationException"),
        "{}",
        outcome.failures[0].reason
    );
    let items = scan(&ddb, &table).await;
    assert_eq!(items.len(), 28);
    let k5 = items.iter().find(|i| s(i, "key") == "k-5").unwrap();
    assert_eq!(n(k5, "v"), 1, "the next-newest record of k-5 landed");
    let m = e.metrics();
    assert_eq!(m.items_refused, 1);
    assert!(m.splits >= 1);
    // Round 1: 25 + 3 writes, the refused request split down to k-5 alone; round 2: k-5's older record.
    let last = proxy
        .calls("BatchWriteItem")
        .last()
        .map(|s| batch_writes(&s.body))
        .unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["PutRequest"]["Item"]["v"]["N"], "1");
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_safe_writes_refuse_older_records_that_plain_writes_let_through() {
    let stack = Stack::from_env();
    let ddb = client(&stack.dynamodb).await;
    let (plain_table, safe_table) = (unique("ddb-plain"), unique("ddb-safe"));
    for t in [&plain_table, &safe_table] {
        create_table(&ddb, t, ("key", T::S), None).await;
    }
    let options = |table: &str, safe: bool| {
        json!({
            "table": table, "endpoint": stack.dynamodb,
            "partition_key": { "attribute": "key", "type": "S" },
            "sequence_attribute": "seq", "ordering_safe": safe,
            "delete_when": { "field": "op", "equals": "delete" },
        })
    };
    let newer = batch(vec![("shardId-0", 10, json!({"key": "a", "v": 10}))]);
    let older = batch(vec![("shardId-0", 5, json!({"key": "a", "v": 5}))]);
    let stored = |table: String| {
        let ddb = ddb.clone();
        async move { scan(&ddb, &table).await.first().map(|i| n(i, "v")) }
    };

    // Plain writes: a redelivered older record walks the item back.
    let plain = emitter(options(&plain_table, false)).await;
    assert!(plain.emit(&newer).await.unwrap().is_success());
    assert!(plain.emit(&older).await.unwrap().is_success());
    assert_eq!(stored(plain_table.clone()).await, Some(5));

    // Ordering-safe: the older record is acknowledged (a newer one is stored) but not written.
    let safe = emitter(options(&safe_table, true)).await;
    assert!(safe.emit(&newer).await.unwrap().is_success());
    assert!(safe.emit(&older).await.unwrap().is_success());
    assert_eq!(stored(safe_table.clone()).await, Some(10));
    assert_eq!(safe.metrics().items_already_newer, 1);
    // A newer delete applies; a delete older than the stored item does not.
    let old_delete = batch(vec![("shardId-0", 7, json!({"key": "a", "op": "delete"}))]);
    assert!(safe.emit(&old_delete).await.unwrap().is_success());
    assert_eq!(stored(safe_table.clone()).await, Some(10));
    let delete = batch(vec![("shardId-0", 20, json!({"key": "a", "op": "delete"}))]);
    assert!(safe.emit(&delete).await.unwrap().is_success());
    assert_eq!(stored(safe_table.clone()).await, None);

    // With tombstones, a delete is remembered: an older record redelivered after it stays out.
    let mut o = options(&safe_table, true);
    o["tombstone_attribute"] = json!("deleted");
    let tomb = emitter(o).await;
    assert!(tomb.emit(&newer).await.unwrap().is_success());
    assert!(tomb.emit(&delete).await.unwrap().is_success());
    assert!(tomb.emit(&older).await.unwrap().is_success());
    let items = scan(&ddb, &safe_table).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["deleted"], AttributeValue::Bool(true));
    assert!(!items[0].contains_key("v"));
    for t in [&plain_table, &safe_table] {
        delete_table(&ddb, t).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_within_25_items_and_the_byte_limit() {
    let stack = Stack::from_env();
    let ddb = client(&stack.dynamodb).await;
    let table = unique("ddb-limits");
    create_table(&ddb, &table, ("key", T::S), None).await;
    let proxy = pass_through(&stack.dynamodb).await;
    let e = emitter(json!({
        "table": table, "endpoint": proxy.url,
        "partition_key": { "attribute": "key", "type": "S" },
        "max_batch_bytes": "1MiB", "max_concurrent_writes": 3,
    }))
    .await;
    let small = batch(
        (0..60)
            .map(|k| ("shardId-0", k, json!({"key": format!("s-{k}")})))
            .collect(),
    );
    assert!(e.emit(&small).await.unwrap().is_success());
    let mut counts: Vec<usize> = proxy
        .calls("BatchWriteItem")
        .iter()
        .map(|s| batch_writes(&s.body).len())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![10, 25, 25]);

    let pad = "x".repeat(100_000);
    let large = batch(
        (0..30)
            .map(|k| {
                (
                    "shardId-0",
                    100 + k,
                    json!({"key": format!("l-{k}"), "pad": pad}),
                )
            })
            .collect(),
    );
    let mark = proxy.log().len();
    assert!(e.emit(&large).await.unwrap().is_success());
    let sizes: Vec<usize> = proxy.log()[mark..].iter().map(|s| s.body.len()).collect();
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(sizes.iter().all(|b| *b <= 1 << 20), "{sizes:?}");
    assert_eq!(scan(&ddb, &table).await.len(), 90);
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_check_names_a_missing_table_and_a_mismatched_key() {
    let stack = Stack::from_env();
    let ddb = client(&stack.dynamodb).await;
    let missing = unique("ddb-missing");
    let e = emitter(json!({
        "table": missing, "endpoint": stack.dynamodb,
        "partition_key": { "attribute": "key", "type": "S" },
    }))
    .await;
    let err = e.check().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("{missing:?}")) && err.contains("does not exist"),
        "{err}"
    );

    let table = unique("ddb-schema");
    create_table(&ddb, &table, ("id", T::N), None).await;
    let e = emitter(json!({
        "table": table, "endpoint": stack.dynamodb,
        "partition_key": { "attribute": "id", "type": "S" },
    }))
    .await;
    let err = e.check().await.unwrap_err().to_string();
    assert!(
        err.contains("has key id (N)") && err.contains("says id (S)"),
        "{err}"
    );

    // The binary refuses to start, naming the table.
    let kinesis = stack.streams().await;
    let stream = unique("ddb-check");
    kinesis.create(&stream, 1).await.unwrap();
    let work = Workdir::new();
    let config = work.config(&dynamodb_pipeline(
        &stream,
        &stack.kinesis,
        &format!(
            r#"table = "{missing}", endpoint = "{}", partition_key = {{ attribute = "key", type = "S" }}"#,
            stack.dynamodb
        ),
        "",
    ));
    let mut c = Connector::start(work.dir.path(), &config, "p", &["--until-tip"], &[]);
    assert!(!c.wait(Duration::from_secs(60)).success());
    let logs: String = std::fs::read_dir(work.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("connector-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        logs.contains(&missing) && logs.contains("does not exist"),
        "{logs}"
    );
    delete_table(&ddb, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_never_exceed_max_concurrent_writes_across_shards() {
    let stack = Stack::from_env();
    let ddb = client(&stack.dynamodb).await;
    let table = unique("ddb-in-flight");
    create_table(&ddb, &table, ("key", T::S), None).await;
    // The proxy counts requests between their arrival and the target's answer.
    let (now, peak) = (Arc::new(Mutex::new(0usize)), Arc::new(Mutex::new(0usize)));
    let (n2, p2) = (now.clone(), peak.clone());
    let count: integration_tests::fault_proxy::Rewrite = Arc::new(move |_, _, _, body, _| {
        let mut n = n2.lock().unwrap();
        *n += 1;
        let mut p = p2.lock().unwrap();
        *p = (*p).max(*n);
        let n3 = n2.clone();
        Some(integration_tests::fault_proxy::Rewritten {
            forward: Some(body.clone()),
            respond: Box::new(move |status, r| {
                *n3.lock().unwrap() -= 1;
                (status, r)
            }),
        })
    });
    let proxy =
        FaultProxy::start_with(&stack.dynamodb, Arc::new(|_, _, _, _, _| None), Some(count)).await;
    let shard_batch = |shard: &'static str| {
        batch(
            (0..200)
                .map(|k| (shard, k, json!({"key": format!("{shard}-{k}")})))
                .collect(),
        )
    };
    let (b1, b2) = (shard_batch("shardId-1"), shard_batch("shardId-2"));
    for (safe, limit) in [(false, 3usize), (true, 4)] {
        *peak.lock().unwrap() = 0;
        let e = emitter(json!({
            "table": table, "endpoint": proxy.url,
            "partition_key": { "attribute": "key", "type": "S" },
            "max_concurrent_writes": limit, "ordering_safe": safe,
        }))
        .await;
        // Two shards' batches at once (8 BatchWriteItem requests each, or 200 PutItem calls each).
        let (r1, r2) = tokio::join!(e.emit(&b1), e.emit(&b2));
        assert!(r1.unwrap().is_success() && r2.unwrap().is_success());
        let p = *peak.lock().unwrap();
        eprintln!("ordering_safe = {safe}: at most {p} requests in flight (limit {limit})");
        assert!(p <= limit, "{p} requests in flight, limit {limit}");
        assert!(p >= 2, "writes were not parallel");
    }
    assert_eq!(scan(&ddb, &table).await.len(), 400);
    delete_table(&ddb, &table).await;
}
