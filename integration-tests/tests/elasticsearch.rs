//! The Elasticsearch / OpenSearch emitter against osmem-server (an in-memory server of the OpenSearch
//! API with real per-item `_bulk` statuses), end to end through the connector binary, and at the
//! emitter level where that is the clearer proof. Faults the server cannot give — 429s and 400s on
//! chosen items, whole-request 503s, a cluster that goes away — come from the fault proxy
//! (`integration_tests::fault_proxy`, with `opensearch::bulk_item_faults`) and the TCP switch
//! (`integration_tests::tcp_switch`), reached only through the emitter's `url`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::opensearch::{ItemFault, Search, bulk_item_faults, bulk_ops, bulk_requests};
use integration_tests::tcp_switch::TcpSwitch;
use integration_tests::{
    Connector, Ledger, Stack, Workdir, connector_bin, connector_logs, put_records, test_record,
    unique,
};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, EmitOutcome, Emitter, Envelope, FailureKind, Item, Origin};
use kinesis_connectors_emitter_elasticsearch::{
    Action, Auth, DocumentId, ElasticsearchEmitter, ElasticsearchOptions, Secret,
};
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

/// Polls an async condition every 50 ms until it holds, failing after `timeout` with `what`.
async fn eventually<F: Future<Output = bool>>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pipeline `p` reading `stream` into the `elasticsearch` emitter; `emitter` adds keys to the
/// emitter's table, `extra` lines to the pipeline's.
fn es_pipeline(
    stream: &str,
    kinesis: &str,
    url: &str,
    index: &str,
    emitter: &str,
    extra: &str,
) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "1s" }}
transformer = {{ type = "json" }}
emitter = {{ type = "elasticsearch", url = "{url}", index = "{index}"{emitter} }}
retry = {{ base_delay = "20ms", max_delay = "200ms" }}
{extra}
"#
    )
}

/// The deterministic id of a record put by `put_records`.
fn doc_id(ledger: &Ledger, id: u64) -> String {
    let (shard, seq) = &ledger.records[&id];
    format!("{shard}-{seq}-0")
}

/// The document a test record becomes.
fn expected_doc(id: u64, keys: u64) -> Value {
    serde_json::from_str(&test_record(id, &format!("k-{}", id % keys), id / keys)).unwrap()
}

/// Asserts that every record of `ids` is in `index` under its deterministic id, equal to its record.
async fn assert_all_documents(
    search: &Search,
    index: &str,
    ledger: &Ledger,
    ids: &[u64],
    keys: u64,
) {
    let docs: HashMap<String, Value> = search.all(index).await.into_iter().collect();
    assert_eq!(docs.len(), ids.len(), "documents in {index}");
    for &id in ids {
        let got = docs.get(&doc_id(ledger, id));
        assert_eq!(
            got,
            Some(&expected_doc(id, keys)),
            "document of record {id}"
        );
    }
}

/// Runs a connector to the tip on a blocking thread, so proxies in this process keep serving.
async fn run_until_tip(work: &Workdir, config: &Path, env: Vec<(&'static str, String)>) {
    let dir = work.dir.path().to_owned();
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        Connector::run_until_tip(&dir, &config, "p", &env);
    })
    .await
    .unwrap();
}

/// Doc ids per `_bulk` request the proxy saw.
fn ids_per_request(proxy: &FaultProxy) -> Vec<Vec<String>> {
    bulk_requests(&proxy.log())
        .into_iter()
        .map(|ops| ops.iter().map(|o| o.id().unwrap().to_owned()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_are_indexed_and_documents_equal_their_records() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-10k");
    client.create(&stream, 4).await.unwrap();
    let keys = 97;
    let ledger = put_records(&client, &stream, 0..10_000, keys, &|_| false).await;
    let index = unique("es-10k");

    let proxy = FaultProxy::passthrough(&stack.opensearch).await;
    let work = Workdir::new();
    let config = work.config(&es_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        &index,
        ", max_bulk_documents = 400",
        "buffer = { max_records = 1000, max_age = \"500ms\" }",
    ));
    run_until_tip(&work, &config, vec![]).await;

    assert_eq!(search.count(&index).await, 10_000);
    // Sampled documents, fetched one by one, equal their records...
    let ids: Vec<u64> = (0..10_000).collect();
    for &id in ids.choose_multiple(&mut rand::rng(), 100) {
        assert_eq!(
            search.get(&index, &doc_id(&ledger, id)).await,
            Some(expected_doc(id, keys)),
            "record {id}"
        );
    }
    // ...and so does every other one.
    assert_all_documents(&search, &index, &ledger, &ids, keys).await;
    // Requests were capped at 400 documents, and each record was sent once.
    let requests = ids_per_request(&proxy);
    assert!(requests.iter().all(|r| r.len() <= 400));
    assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 10_000);
    assert!(work.dead_letters("p").is_empty());
    work.assert_checkpointed_at_last_records("p", &ledger);
    search.delete_index(&index).await;
}

/// Issue 14, defect 1: the first item of each later batch of a many-item record reused the record's
/// id and overwrote a document (3 emitted, 1 document). Item `i > 0` of a record is now
/// `{shard}-{sequence}-{sub}-{i}`: every item is a document of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_of_a_many_item_record_is_a_document_of_its_own() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-multi");
    client.create(&stream, 2).await.unwrap();
    let (records, lines, keys) = (4, 1_200, 3);
    let ledger =
        integration_tests::put_multi_item_records(&client, &stream, records, lines, keys).await;
    let index = unique("es-multi");
    let work = Workdir::new();
    let config = work.config(
        &es_pipeline(
            &stream,
            &stack.kinesis,
            &stack.opensearch,
            &index,
            ", max_bulk_documents = 400",
            "buffer = { max_records = 500, max_age = \"1h\" }",
        )
        .replace("type = \"json\"", "type = \"json_lines\""),
    );
    run_until_tip(&work, &config, vec![]).await;
    let docs: HashMap<String, Value> = search.all(&index).await.into_iter().collect();
    assert_eq!(docs.len() as u64, records * lines, "documents in {index}");
    for (id, (shard, seq)) in &ledger.records {
        let (record, item) = (id / lines, id % lines);
        let doc_id = match item {
            0 => format!("{shard}-{seq}-0"),
            i => format!("{shard}-{seq}-0-{i}"),
        };
        let want: Value = serde_json::from_str(&test_record(
            *id,
            &format!("k-{}", record % keys),
            record / keys,
        ))
        .unwrap();
        assert_eq!(
            docs.get(&doc_id),
            Some(&want),
            "item {item} of record {record}"
        );
    }
    assert!(work.dead_letters("p").is_empty());
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_and_restarts_with_deterministic_ids_keep_the_count_at_ten_thousand() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-kill");
    client.create(&stream, 4).await.unwrap();
    let keys = 61;
    let ledger = put_records(&client, &stream, 0..10_000, keys, &|_| false).await;
    let index = unique("es-kill");

    let proxy = FaultProxy::passthrough(&stack.opensearch).await;
    let work = Workdir::new();
    // Small pages and batches make the run last a few seconds, so the kill lands mid-stream.
    let config = work.config(
        &es_pipeline(
            &stream,
            &stack.kinesis,
            &proxy.url,
            &index,
            "",
            "buffer = { max_records = 50, max_age = \"200ms\" }",
        )
        .replace(
            "idle_poll_interval = \"200ms\"",
            "idle_poll_interval = \"200ms\", max_records_per_call = 150",
        ),
    );
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let target = rand::random_range(1_000..4_000);
    eventually(
        Duration::from_secs(60),
        "documents to land before the kill",
        || {
            let s = search.clone();
            let i = index.clone();
            async move { s.count(&i).await >= target }
        },
    )
    .await;
    c.kill();
    let at_kill = search.count(&index).await;
    assert!(at_kill < 10_000, "killed mid-run ({at_kill} documents)");
    let sent_before_restart = ids_per_request(&proxy).iter().map(Vec::len).sum::<usize>();

    run_until_tip(&work, &config, vec![]).await;
    assert_eq!(search.count(&index).await, 10_000);
    let sent = ids_per_request(&proxy).iter().map(Vec::len).sum::<usize>();
    assert!(sent >= 10_000);
    eprintln!(
        "killed at {at_kill} documents ({sent_before_restart} items sent); after the restart {sent} items sent \
         for 10,000 records: {} redelivered and overwritten",
        sent.saturating_sub(10_000)
    );

    // A full replay (checkpoints removed) sends all 10,000 again: every one overwrites its document.
    std::fs::remove_file(work.path("state/p.checkpoints.json")).unwrap();
    run_until_tip(&work, &config, vec![]).await;
    let replayed = ids_per_request(&proxy).iter().map(Vec::len).sum::<usize>();
    assert!(replayed >= sent + 10_000, "the replay re-sent everything");
    assert_eq!(search.count(&index).await, 10_000, "no duplicates");
    let ids: Vec<u64> = (0..10_000).collect();
    assert_all_documents(&search, &index, &ledger, &ids, keys).await;
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_429s_on_some_items_resend_only_those_items_and_all_land() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-429");
    client.create(&stream, 2).await.unwrap();
    let keys = 13;
    let ledger = put_records(&client, &stream, 0..2_000, keys, &|_| false).await;
    let index = unique("es-429");

    // Every record id ≡ 3 (mod 25) is rejected with 429 the first time it is sent (80 items).
    let failed_once: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let f = failed_once.clone();
    let proxy = FaultProxy::start_with(
        &stack.opensearch,
        Arc::new(|_, _, _, _, _| None),
        Some(bulk_item_faults(move |op| {
            let id = op.doc()?["id"].as_u64()?;
            (id % 25 == 3 && f.lock().unwrap().insert(id)).then(ItemFault::rejected)
        })),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&es_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        &index,
        "",
        "buffer = { max_records = 500, max_age = \"300ms\" }",
    ));
    run_until_tip(&work, &config, vec![]).await;

    let injected: HashSet<String> = failed_once
        .lock()
        .unwrap()
        .iter()
        .map(|&id| doc_id(&ledger, id))
        .collect();
    assert_eq!(injected.len(), 80);
    let mut sends: HashMap<String, usize> = HashMap::new();
    let mut retry_requests = 0;
    for ids in ids_per_request(&proxy) {
        let resent: Vec<&String> = ids.iter().filter(|id| sends.contains_key(*id)).collect();
        if !resent.is_empty() {
            // A request re-sending anything re-sends only items that were rejected with 429.
            retry_requests += 1;
            assert_eq!(
                resent.len(),
                ids.len(),
                "a retry request carried first sends"
            );
            assert!(resent.iter().all(|id| injected.contains(*id)));
        }
        for id in ids {
            *sends.entry(id).or_default() += 1;
        }
    }
    assert_eq!(sends.len(), 2_000, "every record was sent");
    for (id, n) in &sends {
        let expected = if injected.contains(id) { 2 } else { 1 };
        assert_eq!(*n, expected, "sends of {id}");
    }
    assert!(retry_requests >= 1);
    // All landed, nothing dead-lettered, checkpoints at the tip.
    assert_eq!(search.count(&index).await, 2_000);
    let ids: Vec<u64> = (0..2_000).collect();
    assert_all_documents(&search, &index, &ledger, &ids, keys).await;
    assert!(work.dead_letters("p").is_empty());
    work.assert_checkpointed_at_last_records("p", &ledger);
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_400_on_one_item_is_dead_lettered_with_the_servers_reason_and_the_rest_land() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-400");
    client.create(&stream, 2).await.unwrap();
    let keys = 7;
    let ledger = put_records(&client, &stream, 0..1_000, keys, &|_| false).await;
    let index = unique("es-400");
    let reason = "failed to parse field [n] of type [long] in document with id 'x'. Preview of field's value: 'abc'";
    let proxy = FaultProxy::start_with(
        &stack.opensearch,
        Arc::new(|_, _, _, _, _| None),
        Some(bulk_item_faults(move |op| {
            (op.doc()?["id"].as_u64()? == 123).then(|| ItemFault::mapping(reason))
        })),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&es_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        &index,
        "",
        "buffer = { max_records = 200, max_age = \"300ms\" }",
    ));
    run_until_tip(&work, &config, vec![]).await;

    let dead = work.dead_letters("p");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(
        d.reason,
        format!("HTTP 400 mapper_parsing_exception: {reason}"),
        "the server's reason"
    );
    assert_eq!(
        (&d.shard, &d.sequence),
        (&ledger.records[&123].0, &ledger.records[&123].1)
    );
    let data: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(data, expected_doc(123, keys));
    // Sent once: a permanent failure is not retried.
    let sends = ids_per_request(&proxy)
        .concat()
        .into_iter()
        .filter(|id| *id == doc_id(&ledger, 123))
        .count();
    assert_eq!(sends, 1);
    assert_eq!(search.count(&index).await, 999);
    let rest: Vec<u64> = (0..1_000).filter(|&id| id != 123).collect();
    assert_all_documents(&search, &index, &ledger, &rest, keys).await;
    // The dead-lettered record counts as delivered: checkpoints reach the tip.
    work.assert_checkpointed_at_last_records("p", &ledger);
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_503s_are_retried_with_the_same_items_and_everything_lands() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-503");
    client.create(&stream, 1).await.unwrap();
    let ledger = put_records(&client, &stream, 0..600, 5, &|_| false).await;
    let index = unique("es-503");
    let failed = Arc::new(AtomicUsize::new(0));
    let f = failed.clone();
    let proxy = FaultProxy::start(
        &stack.opensearch,
        Arc::new(move |method, path, _, _, _| {
            let bulk = method == "POST" && path.starts_with("/_bulk");
            (bulk && f.fetch_add(1, Ordering::SeqCst) < 3).then(|| Fault {
                status: 503,
                content_type: "application/json",
                body: json!({"error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}, "status": 503}).to_string(),
            })
        }),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&es_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        &index,
        "",
        "buffer = { max_records = 200, max_age = \"300ms\" }",
    ));
    run_until_tip(&work, &config, vec![]).await;

    let log = proxy.log();
    let bulks: Vec<_> = log
        .iter()
        .filter(|s| s.path.starts_with("/_bulk"))
        .collect();
    assert!(bulks[..3].iter().all(|s| s.injected && s.status == 503));
    // The first batch was refused three times and sent a fourth time, unchanged.
    let first = bulk_ops(&bulks[0].body);
    for s in &bulks[1..4] {
        assert_eq!(bulk_ops(&s.body), first);
    }
    assert_eq!(search.count(&index).await, 600);
    let ids: Vec<u64> = (0..600).collect();
    assert_all_documents(&search, &index, &ledger, &ids, 5).await;
    let logs = connector_logs(work.dir.path());
    assert!(
        logs.matches("emit failed; retrying").count() >= 3
            && logs.contains("unavailable_shards_exception: primary shard is not active"),
        "retries are logged with the server's reason:\n{logs}"
    );
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_goes_away_mid_run_holds_the_stream_visibly_and_nothing_is_lost() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-down");
    client.create(&stream, 1).await.unwrap();
    let ledger = put_records(&client, &stream, 0..2_000, 5, &|_| false).await;
    let index = unique("es-down");
    // connector → switch → proxy (to see requests) → osmem-server
    let proxy = FaultProxy::passthrough(&stack.opensearch).await;
    let switch = TcpSwitch::start(&proxy.url).await;
    let work = Workdir::new();
    // 100 records per call, one call per 200 ms: reading takes about 4 s, so the cluster goes away
    // with most of the stream still to deliver.
    let config = work.config(
        &es_pipeline(
            &stream,
            &stack.kinesis,
            &switch.url,
            &index,
            "",
            "buffer = { max_records = 50, max_age = \"100ms\" }",
        )
        .replace(
            "idle_poll_interval = \"200ms\"",
            "idle_poll_interval = \"200ms\", max_records_per_call = 100",
        ),
    );
    let mut c = Connector::start(work.dir.path(), &config, "p", &["--until-tip"], &[]);
    eventually(Duration::from_secs(30), "the first bulk request", || {
        let p = proxy.clone();
        async move { !bulk_requests(&p.log()).is_empty() }
    })
    .await;
    switch.off().await;
    let off_at = Instant::now();
    let dir = work.dir.path().to_owned();
    eventually(
        Duration::from_secs(30),
        "retries of the unreachable cluster in the log",
        || {
            let logs = connector_logs(&dir);
            async move { logs.matches("emit failed; retrying").count() >= 5 }
        },
    )
    .await;
    let landed_while_off = search.count(&index).await;
    assert!(landed_while_off < 2_000, "the cluster went away mid-run");
    assert!(
        proxy.log().iter().all(|s| s.at < off_at),
        "nothing got through while the cluster was away"
    );
    assert!(
        c.is_running(),
        "the connector waits; it does not exit or skip"
    );
    let logs = connector_logs(&dir);
    let line = logs
        .lines()
        .find(|l| l.contains("emit failed; retrying"))
        .unwrap();
    assert!(
        line.contains("bulk request failed"),
        "the reason is shown: {line}"
    );

    switch.on().await;
    let status = tokio::task::spawn_blocking(move || c.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(search.count(&index).await, 2_000);
    let ids: Vec<u64> = (0..2_000).collect();
    assert_all_documents(&search, &index, &ledger, &ids, 5).await;
    let logs = connector_logs(work.dir.path());
    let stopped = logs
        .lines()
        .find(|l| l.contains("pipeline stopped"))
        .unwrap();
    assert!(
        !stopped.contains("retries=0"),
        "retries are counted: {stopped}"
    );
    assert!(work.dead_letters("p").is_empty());
    search.delete_index(&index).await;
}

// ---------------------------------------------------------------------------------------------
// Emitter-level tests: batches built by hand, sent straight to osmem-server (or a stand-in).

fn batch(docs: &[Value]) -> Batch<Item> {
    batch_of("shardId-000000000000", docs)
}

fn batch_of(shard: &str, docs: &[Value]) -> Batch<Item> {
    let items = docs
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let text = d.to_string();
            let rec = record(shard, n as u64, text.as_bytes());
            Envelope::new(
                Item::parse_json(Bytes::from(text)).unwrap(),
                Origin::new(rec),
            )
        })
        .collect();
    Batch::new(Arc::from("p"), items, 0)
}

async fn emitter(options: ElasticsearchOptions) -> ElasticsearchEmitter {
    ElasticsearchEmitter::connect(options, "us-east-1")
        .await
        .unwrap()
}

fn options(url: &str, index: &str) -> ElasticsearchOptions {
    ElasticsearchOptions::new(url, index).unwrap()
}

fn failures(outcome: &EmitOutcome) -> Vec<(usize, FailureKind, String)> {
    outcome
        .failures
        .iter()
        .map(|f| (f.index, f.kind, f.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_counts_409_as_delivered_update_merges_and_a_field_can_delete() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let index = unique("es-actions");

    // create, twice: the second time every item is a 409, which counts as delivered.
    let mut o = options(&stack.opensearch, &index);
    o.action = Action::Create;
    let e = emitter(o).await;
    let docs: Vec<Value> = (0..20).map(|i| json!({"n": i})).collect();
    assert!(e.emit(&batch(&docs)).await.unwrap().is_success());
    let again = e.emit(&batch(&docs)).await.unwrap();
    assert!(again.is_success(), "{again:?}");
    assert_eq!(search.count(&index).await, 20);

    // update with ids from a field: partial documents merge (doc_as_upsert), in batch order.
    let mut o = options(&stack.opensearch, &index);
    o.action = Action::Update;
    o.document_id = DocumentId::Field(kinesis_connectors_core::FieldPath::parse("user").unwrap());
    o.action_field = kinesis_connectors_core::FieldPath::parse("op");
    let e = emitter(o).await;
    let out = e
        .emit(&batch(&[
            json!({"user": "u1", "a": 1}),
            json!({"user": "u1", "b": 2}),
            json!({"user": "u2", "a": 3}),
            json!({"user": "u3", "op": "index", "c": 4}),
        ]))
        .await
        .unwrap();
    assert!(out.is_success(), "{out:?}");
    assert_eq!(
        search.get(&index, "u1").await,
        Some(json!({"user": "u1", "a": 1, "b": 2}))
    );
    assert_eq!(
        search.get(&index, "u3").await,
        Some(json!({"user": "u3", "op": "index", "c": 4}))
    );
    // delete when the field says so; deleting a document that is not there counts as delivered;
    // an unknown action is a permanent failure of that item alone.
    let out = e
        .emit(&batch(&[
            json!({"user": "u2", "op": "delete"}),
            json!({"user": "nobody", "op": "delete"}),
            json!({"user": "u1", "op": "replace"}),
        ]))
        .await
        .unwrap();
    let f = failures(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].0, f[0].1), (2, FailureKind::Permanent));
    assert!(f[0].2.contains("\"replace\""));
    assert_eq!(search.get(&index, "u2").await, None);
    assert_eq!(search.count(&index).await, 22);
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_names_come_from_arrival_dates_date_fields_and_field_values() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let prefix = unique("es-names");

    // testing::record arrives at 2026-01-01T00:00:00Z + n seconds.
    let e = emitter(options(
        &stack.opensearch,
        &format!("{prefix}-{{yyyy.MM.dd}}"),
    ))
    .await;
    assert!(
        e.emit(&batch(&[json!({"a": 1})]))
            .await
            .unwrap()
            .is_success()
    );

    let mut o = options(
        &stack.opensearch,
        &format!("{prefix}-{{field:tenant}}-{{yyyy.MM}}"),
    );
    o.index_date_field = kinesis_connectors_core::FieldPath::parse("ts");
    let e = emitter(o).await;
    let out = e
        .emit(&batch(&[
            json!({"tenant": "acme", "ts": "2026-03-04T05:06:07Z"}),
            json!({"tenant": "globex", "ts": 1_780_000_000_000u64}),
            json!({"tenant": "acme"}),
            json!({"tenant": "UPPER", "ts": "2026-03-04"}),
        ]))
        .await
        .unwrap();
    let f = failures(&out);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!((f[0].0, f[0].1), (2, FailureKind::Permanent));
    assert!(f[0].2.contains("index date field ts is missing"));
    // An index name the server refuses: its reason, for that item alone.
    assert_eq!((f[1].0, f[1].1), (3, FailureKind::Permanent));
    assert!(
        f[1].2.contains("invalid_index_name_exception") && f[1].2.contains("must be lowercase"),
        "{}",
        f[1].2
    );
    assert_eq!(
        search.indices(&prefix).await,
        vec![
            format!("{prefix}-2026.01.01"),
            format!("{prefix}-acme-2026.03"),
            format!("{prefix}-globex-2026.05"),
        ]
    );
    search.delete_index(&format!("{prefix}-*")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mapping_error_is_a_permanent_failure_with_the_servers_reason() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let index = unique("es-mapping");
    search
        .create_index(&index, json!({"properties": {"n": {"type": "long"}}}))
        .await;
    let e = emitter(options(&stack.opensearch, &index)).await;
    let out = e
        .emit(&batch(&[
            json!({"n": 1}),
            json!({"n": "not a number"}),
            json!({"n": 3}),
        ]))
        .await
        .unwrap();
    let f = failures(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].0, f[0].1), (1, FailureKind::Permanent));
    assert!(
        f[0].2.starts_with(
            "HTTP 400 mapper_parsing_exception: failed to parse field [n] of type [long]"
        ),
        "{}",
        f[0].2
    );
    assert_eq!(search.count(&index).await, 2);
    assert_eq!(e.metrics().items_permanent, 1);
    search.delete_index(&index).await;
}

/// A stand-in bulk endpoint that answers after `delay`, counts requests in flight, refuses bodies
/// above `max_body` with 413, and acknowledges every item otherwise.
struct SlowBulk {
    url: String,
    peak: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn slow_bulk(delay: Duration, max_body: usize) -> SlowBulk {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let (f, p, b) = (in_flight.clone(), peak.clone(), bodies.clone());
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let (f, p, b) = (f.clone(), p.clone(), b.clone());
        async move {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            f.fetch_sub(1, Ordering::SeqCst);
            if body.len() > max_body {
                return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, String::new());
            }
            let items: Vec<Value> = bulk_ops(&body)
                .iter()
                .map(|op| json!({ op.action.clone(): {"status": 201} }))
                .collect();
            b.lock().unwrap().push(body);
            (
                axum::http::StatusCode::OK,
                json!({"errors": false, "items": items}).to_string(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    SlowBulk { url, peak, bodies }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_split_into_capped_requests_sent_concurrently_within_the_bound() {
    let server = slow_bulk(Duration::from_millis(50), usize::MAX).await;
    let mut o = options(&server.url, "i");
    o.max_bulk_documents = 500;
    o.max_bulk_bytes = 16 * 1024;
    o.max_concurrent_requests = 3;
    let e = emitter(o).await;
    let docs: Vec<Value> = (0..3_000)
        .map(|i| json!({"n": i, "pad": "x".repeat(40)}))
        .collect();
    let b = batch(&docs);
    // Two shards' batches at once share the emitter's bound.
    let b2 = batch_of("shardId-000000000001", &docs);
    let (r1, r2) = tokio::join!(e.emit(&b), e.emit(&b2));
    assert!(r1.unwrap().is_success() && r2.unwrap().is_success());

    let bodies = server.bodies.lock().unwrap().clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for body in &bodies {
        assert!(body.len() <= 16 * 1024, "a request of {} bytes", body.len());
        let ops = bulk_ops(body);
        assert!(ops.len() <= 500);
        for op in ops {
            *seen.entry(op.id().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 6_000);
    assert!(seen.values().all(|n| *n == 1));
    assert!(
        bodies.len() >= 6_000 * 60 / (16 * 1024),
        "{} requests",
        bodies.len()
    );
    assert_eq!(
        server.peak.load(Ordering::SeqCst),
        3,
        "requests in flight at once"
    );
    assert_eq!(e.metrics().bulk_requests as usize, bodies.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_cluster_finds_too_large_is_split_until_it_fits() {
    let server = slow_bulk(Duration::ZERO, 6 * 1024).await;
    let mut o = options(&server.url, "i");
    o.max_bulk_bytes = 64 * 1024;
    let e = emitter(o).await;
    let docs: Vec<Value> = (0..400)
        .map(|i| json!({"n": i, "pad": "y".repeat(60)}))
        .collect();
    let out = e.emit(&batch(&docs)).await.unwrap();
    assert!(out.is_success(), "{out:?}");
    let ids: Vec<String> = server
        .bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| bulk_ops(b).into_iter().map(|o| o.id().unwrap().to_owned()))
        .collect();
    assert_eq!(ids.len(), 400, "every item accepted once");
    assert!(e.metrics().splits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_fails_the_emit_call_retryably() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = emitter(options(&format!("http://127.0.0.1:{port}"), "i")).await;
    let err = e.emit(&batch(&[json!({"a": 1})])).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.message.contains("bulk request failed"),
        "{}",
        err.message
    );
    let err = e.check().await.unwrap_err();
    assert!(err.message.contains("cannot reach"), "{}", err.message);
    assert_eq!(e.metrics().request_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_api_keys_are_sent_and_the_password_never_appears_in_logs() {
    use base64::Engine;
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-auth");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..50, 3, &|_| false).await;
    let index = unique("es-auth");
    let proxy = FaultProxy::passthrough(&stack.opensearch).await;
    let work = Workdir::new();
    let password = format!("pw-{}", rand::random::<u64>());
    let config = work.config(&es_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        &index,
        ", auth = { type = \"basic\", username = \"ingest\", password = \"${ES_TEST_PASSWORD}\" }",
        "",
    ));
    run_until_tip(
        &work,
        &config,
        vec![
            ("ES_TEST_PASSWORD", password.clone()),
            ("RUST_LOG", "debug".into()),
        ],
    )
    .await;
    assert_eq!(search.count(&index).await, 50);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ingest:{password}"))
    );
    let log = proxy.log();
    assert!(!log.is_empty());
    for s in &log {
        assert_eq!(
            s.headers["authorization"],
            expected.as_str(),
            "{} {}",
            s.method,
            s.path
        );
    }
    let logs = connector_logs(work.dir.path());
    assert!(logs.contains("search cluster reachable"), "{logs}");
    assert!(
        !logs.contains(&password),
        "the password is in the connector's debug log"
    );
    assert!(
        !logs.contains(&expected[6..]),
        "the encoded credentials are in the log"
    );

    // API keys: id and key, or the encoded form.
    for (auth, header) in [
        (
            Auth::ApiKey {
                id: Some("key-id".into()),
                key: Secret::new("key-secret"),
            },
            format!(
                "ApiKey {}",
                base64::engine::general_purpose::STANDARD.encode("key-id:key-secret")
            ),
        ),
        (
            Auth::ApiKey {
                id: None,
                key: Secret::new("ZW5jb2RlZA=="),
            },
            "ApiKey ZW5jb2RlZA==".to_owned(),
        ),
    ] {
        let mut o = options(&proxy.url, &index);
        o.auth = auth;
        let e = emitter(o).await;
        assert!(!format!("{e:?}").contains("key-secret"));
        assert!(
            e.emit(&batch(&[json!({"k": 1})]))
                .await
                .unwrap()
                .is_success()
        );
        assert_eq!(
            proxy.log().last().unwrap().headers["authorization"],
            header.as_str()
        );
    }
    search.delete_index(&index).await;
}

/// Recomputes the SigV4 signature of a request as the proxy received it (method, path and query,
/// `host`, body, `x-amz-date`) with the credentials the connector was given: equal means the emitter
/// signed exactly what went over the wire. (This is the check AWS makes; it cannot be run against
/// AWS here.)
fn verify_sigv4(s: &integration_tests::fault_proxy::Seen, key: &str, secret: &str, region: &str) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    let header = |n: &str| s.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    let date = header("x-amz-date").expect("x-amz-date");
    let time = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let identity = aws_credential_types::Credentials::new(key, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("es")
        .time(std::time::SystemTime::from(time))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let host = header("host").unwrap();
    let url = format!("http://{host}{}", s.path);
    let signable = SignableRequest::new(
        s.method.as_str(),
        url,
        std::iter::once(("host", host.as_str())),
        SignableBody::Bytes(&s.body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let expected: BTreeMap<&str, &str> = instructions.headers().collect();
    assert_eq!(
        header("authorization").as_deref(),
        Some(expected["authorization"]),
        "{} {}",
        s.method,
        s.path
    );
    assert_eq!(
        header("x-amz-content-sha256").as_deref(),
        Some(expected["x-amz-content-sha256"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signatures_match_the_requests_as_received() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let client = stack.streams().await;
    let stream = unique("es-sigv4");
    client.create(&stream, 1).await.unwrap();
    put_records(&client, &stream, 0..300, 3, &|_| false).await;
    let index = unique("es-sigv4");
    let proxy = FaultProxy::passthrough(&stack.opensearch).await;
    let work = Workdir::new();
    let config = work.config(&es_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        &index,
        ", auth = { type = \"aws_sigv4\", region = \"eu-west-1\" }",
        "buffer = { max_records = 100 }",
    ));
    let (key, secret) = ("AKIASIGV4TEST", "sigv4-test-secret");
    run_until_tip(
        &work,
        &config,
        vec![
            ("AWS_ACCESS_KEY_ID", key.into()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
        ],
    )
    .await;
    assert_eq!(search.count(&index).await, 300);
    let log = proxy.log();
    assert!(
        log.iter().any(|s| s.path == "/"),
        "the start-up check is signed too"
    );
    assert!(
        log.iter()
            .filter(|s| s.path.starts_with("/_bulk?filter_path="))
            .count()
            >= 3
    );
    for s in &log {
        verify_sigv4(s, key, secret, "eu-west-1");
    }
    assert!(!connector_logs(work.dir.path()).contains(secret));
    search.delete_index(&index).await;
}

#[test]
fn check_accepts_both_type_names_and_rejects_malformed_options_naming_the_key() {
    let check = |emitter: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connectors.toml");
        std::fs::write(
            &path,
            format!("[pipelines.p]\nsource = {{ stream = \"s\" }}\ntransformer = {{ type = \"json\" }}\nemitter = {emitter}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(connector_bin())
            .args(["check", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env_remove("ES_UNSET_PASSWORD")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for ty in ["elasticsearch", "opensearch"] {
        let (code, err) = check(&format!(
            "{{ type = \"{ty}\", url = \"http://127.0.0.1:1\", index = \"logs-{{yyyy.MM.dd}}\", document_id = \"field\", document_id_field = \"id\", action_field = \"op\" }}"
        ));
        assert_eq!(code, 0, "{ty}: {err}");
    }
    for (emitter, expected) in [
        (
            "{ type = \"elasticsearch\", url = \"http://h\", index = \"Logs\" }",
            "must be lowercase",
        ),
        (
            "{ type = \"elasticsearch\", url = \"h:9200\", index = \"i\" }",
            "key \"emitter.url\": \"h:9200\": the scheme must be http or https",
        ),
        (
            "{ type = \"elasticsearch\", url = \"http://h\", index = \"i\", document_id = \"field\" }",
            "key \"emitter.document_id_field\": required",
        ),
        (
            "{ type = \"elasticsearch\", url = \"http://h\", index = \"i\", max_bulk_bytes = \"1GiB\" }",
            "max_bulk_bytes",
        ),
        (
            "{ type = \"elasticsearch\", url = \"http://h\", index = \"i\", bulk = 5 }",
            "key \"emitter.bulk\"",
        ),
        (
            "{ type = \"elasticsearch\", url = \"http://h\", index = \"i\", auth = { type = \"basic\", username = \"u\", password = \"${ES_UNSET_PASSWORD}\" } }",
            "ES_UNSET_PASSWORD is not set",
        ),
    ] {
        let (code, err) = check(emitter);
        assert_eq!(code, 2, "{emitter}: {err}");
        assert!(
            err.contains("pipeline \"p\"") && err.contains(expected),
            "{emitter}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_custom_ca_file_works_and_without_it_the_certificate_is_refused() {
    use integration_tests::tls_front::TlsFront;
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let front = TlsFront::start(&stack.opensearch).await;
    let index = unique("es-tls");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &front.ca_pem).unwrap();

    let mut o = options(&front.url, &index);
    o.tls_ca_file = Some(ca_file);
    let e = emitter(o).await;
    e.check().await.unwrap();
    assert!(
        e.emit(&batch(&[json!({"over": "tls"})]))
            .await
            .unwrap()
            .is_success()
    );
    assert_eq!(search.count(&index).await, 1);

    // The same server without the CA: the certificate is not trusted.
    let e = emitter(options(&front.url, &index)).await;
    let err = e.check().await.unwrap_err();
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
    let err = e.emit(&batch(&[json!({"over": "tls"})])).await.unwrap_err();
    assert!(err.is_retryable());

    // A CA file that holds no certificate is refused when the emitter is built.
    std::fs::write(dir.path().join("empty.pem"), "nothing here").unwrap();
    let mut o = options(&front.url, &index);
    o.tls_ca_file = Some(dir.path().join("empty.pem"));
    let err = ElasticsearchEmitter::connect(o, "us-east-1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tls.ca_file"), "{err}");
    search.delete_index(&index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_one_document_keep_their_order_when_an_earlier_one_fails() {
    let stack = Stack::from_env();
    let search = Search::new(&stack.opensearch);
    let index = unique("es-order");
    // The first write of document "a" is refused with 429 once.
    let refused = Arc::new(AtomicUsize::new(0));
    let r = refused.clone();
    let proxy = FaultProxy::start_with(
        &stack.opensearch,
        Arc::new(|_, _, _, _, _| None),
        Some(bulk_item_faults(move |op| {
            (op.doc()?["v"] == 1 && r.fetch_add(1, Ordering::SeqCst) == 0).then(ItemFault::rejected)
        })),
    )
    .await;
    let mut o = options(&proxy.url, &index);
    o.document_id = DocumentId::Field(kinesis_connectors_core::FieldPath::parse("doc").unwrap());
    o.max_bulk_documents = 1;
    let e = emitter(o).await;
    let docs = [
        json!({"doc": "a", "v": 1}),
        json!({"doc": "b", "v": 1}),
        json!({"doc": "a", "v": 2}),
    ];
    let out = e.emit(&batch(&docs)).await.unwrap();
    let f = failures(&out);
    // The refused write and the later write of the same document are retried, in that order; "b" is
    // delivered.
    assert_eq!(
        f.iter().map(|(i, k, _)| (*i, *k)).collect::<Vec<_>>(),
        vec![(0, FailureKind::Retryable), (2, FailureKind::Retryable)],
        "{f:?}"
    );
    assert!(f[1].2.contains("earlier write of the same document"));
    // Three requests (one document each), one after the other.
    let log: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|s| s.path.starts_with("/_bulk"))
        .collect();
    assert_eq!(log.len(), 3);
    assert!(
        log.windows(2).all(|w| w[1].at >= w[0].done),
        "sent one after the other"
    );
    // What the runner does next: a batch of the failed items, in order; the last write wins.
    let retry = Batch::new(
        Arc::from("p"),
        batch(&docs)
            .items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, e)| e)
            .collect(),
        1,
    );
    assert!(e.emit(&retry).await.unwrap().is_success());
    assert_eq!(
        search.get(&index, "a").await,
        Some(json!({"doc": "a", "v": 2}))
    );
    search.delete_index(&index).await;
}
