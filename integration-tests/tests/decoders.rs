//! The two `GetRecords` decoders side by side (`source.decoder = "sdk"`, the reference, and `"own"`):
//! both are fed the same answers and must hand out identical records, positions, iterators, child
//! shards and errors.
//!
//! * **Pages ferrokinesis produces** (binary and UTF-8 data, partition keys that need JSON escapes,
//!   1 MiB records, KPL aggregates, a 10,000-record page, a split parent read to its end with its
//!   ChildShards) are captured once through a passthrough [`FaultProxy`] and then served again, byte
//!   for byte, by a replaying stand-in (a [`FaultProxy`] rule keyed by the request's shard iterator)
//!   to the SDK path and to ours.
//! * **Answers ferrokinesis cannot give** (throttling, expired iterators, missing resources, access
//!   denied, 5xx, escaped and odd but valid bodies, malformed bodies) are canned in the same stand-in.
//! * `GetShardIterator` is compared on the live server: for every start kind, the iterator each
//!   decoder gets must read the same page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::{Stack, unique};
use kinesis_connectors_consumer::api::{self, IteratorStart, RecordsPage};
use kinesis_connectors_consumer::kpl::{self, UserRecord};
use kinesis_connectors_consumer::{KinesisError, PutEntry, StreamClient, WireClient};
use kinesis_connectors_core::{Record, SequenceNumber};

/// Everything of a record both decoders must agree on.
type RecordView = (
    Bytes,
    String,
    String,
    u64,
    Option<chrono::DateTime<chrono::Utc>>,
    String,
    String,
);

fn record_view(r: &Record) -> RecordView {
    (
        r.data.clone(),
        r.partition_key.to_string(),
        r.position.sequence.as_str().to_owned(),
        r.position.sub_sequence,
        r.approximate_arrival,
        r.shard_id.to_string(),
        r.stream.to_string(),
    )
}

/// A KPL user record: data, partition key, explicit hash key.
type UserView = (Bytes, String, Option<u128>);

/// A page, or an error, as both decoders must give it. A transient error's message is compared only
/// when the service wrote one (otherwise each path describes the failure in its own words).
#[derive(Debug, PartialEq)]
enum Outcome {
    Page {
        records: Vec<RecordView>,
        /// KPL user records of each record (data, key, explicit hash key), `None` for plain ones.
        users: Vec<Option<Vec<UserView>>>,
        next_iterator: Option<String>,
        millis_behind_latest: Option<i64>,
        child_shards: Vec<String>,
    },
    Error {
        class: &'static str,
        code: String,
        message: Option<String>,
    },
}

fn outcome(result: Result<RecordsPage, KinesisError>, service_message: bool) -> Outcome {
    match result {
        Ok(p) => Outcome::Page {
            users: p
                .records
                .iter()
                .map(|r| {
                    kpl::deaggregate(&r.data).ok().map(|us| {
                        us.into_iter()
                            .map(|u| (u.data, u.partition_key.to_string(), u.explicit_hash_key))
                            .collect()
                    })
                })
                .collect(),
            records: p.records.iter().map(record_view).collect(),
            next_iterator: p.next_iterator,
            millis_behind_latest: p.millis_behind_latest,
            child_shards: p.child_shards,
        },
        Err(e) => {
            let (class, code, message) = match e {
                KinesisError::Throttled { message, .. } => {
                    ("throttled", String::new(), Some(message))
                }
                KinesisError::ExpiredIterator { .. } => ("expired", String::new(), None),
                KinesisError::NotFound { message, .. } => {
                    ("not found", String::new(), Some(message))
                }
                KinesisError::Permanent { code, message, .. } => ("permanent", code, Some(message)),
                KinesisError::Transient { message, .. } => (
                    "transient",
                    String::new(),
                    service_message.then_some(message),
                ),
            };
            Outcome::Error {
                class,
                code,
                message,
            }
        }
    }
}

/// The replaying stand-in: answers `GetRecords` by the request's shard iterator.
struct Replay {
    proxy: FaultProxy,
    answers: Arc<Mutex<HashMap<String, Fault>>>,
    sdk: aws_sdk_kinesis::Client,
    own: WireClient,
}

impl Replay {
    async fn start(stack: &Stack) -> Self {
        let answers: Arc<Mutex<HashMap<String, Fault>>> = Arc::default();
        let a = answers.clone();
        let proxy = FaultProxy::start(
            &stack.kinesis,
            Arc::new(move |_, _, headers, body, _| {
                let op = headers.get("x-amz-target")?.to_str().ok()?;
                if !op.ends_with("GetRecords") {
                    return None;
                }
                let request: serde_json::Value = serde_json::from_slice(body).ok()?;
                let iterator = request["ShardIterator"].as_str()?;
                Some(a.lock().unwrap().get(iterator).cloned().unwrap_or_else(|| {
                    Fault::aws_json(
                        "InternalFailure",
                        "the replay has no answer for this iterator",
                    )
                }))
            }),
        )
        .await;
        let (sdk, own) = api::clients("us-east-1", Some(&proxy.url)).await;
        Self {
            proxy,
            answers,
            sdk,
            own: own.unwrap(),
        }
    }

    fn answer(&self, iterator: &str, fault: Fault) {
        self.answers
            .lock()
            .unwrap()
            .insert(iterator.to_owned(), fault);
    }

    /// Both decoders' outcomes for `iterator`, and how many requests that took.
    async fn both(&self, iterator: &str, service_message: bool) -> (Outcome, Outcome) {
        let (stream, shard): (Arc<str>, Arc<str>) =
            (Arc::from("st"), Arc::from("shardId-000000000000"));
        let before = self.proxy.calls("GetRecords").len();
        let sdk = api::get_records(&self.sdk, iterator, 10_000, &stream, &shard).await;
        let own = self
            .own
            .get_records(iterator, 10_000, &stream, &shard)
            .await;
        assert_eq!(
            self.proxy.calls("GetRecords").len(),
            before + 2,
            "each decoder made one call"
        );
        (outcome(sdk, service_message), outcome(own, service_message))
    }
}

/// Reads `shard` from TRIM_HORIZON to its end or tip through a passthrough proxy and returns each
/// `GetRecords` call's iterator and the exact answer.
async fn capture(stack: &Stack, stream: &str, shard: &str, limit: i32) -> Vec<(String, Fault)> {
    let proxy = FaultProxy::passthrough(&stack.kinesis).await;
    let (_, own) = api::clients("us-east-1", Some(&proxy.url)).await;
    let own = own.unwrap();
    let (stream_id, shard_id): (Arc<str>, Arc<str>) = (Arc::from(stream), Arc::from(shard));
    let mut iterator = Some(
        own.get_shard_iterator(stream, shard, &IteratorStart::TrimHorizon)
            .await
            .unwrap(),
    );
    while let Some(it) = iterator {
        let page = own
            .get_records(&it, limit, &stream_id, &shard_id)
            .await
            .unwrap();
        if page.records.is_empty() && page.millis_behind_latest.unwrap_or(0) == 0 {
            break;
        }
        iterator = page.next_iterator;
    }
    proxy
        .calls("GetRecords")
        .into_iter()
        .map(|c| {
            let request: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
            let fault = Fault {
                status: c.status,
                content_type: "application/x-amz-json-1.1",
                body: String::from_utf8(c.response.to_vec()).unwrap(),
            };
            (request["ShardIterator"].as_str().unwrap().to_owned(), fault)
        })
        .collect()
}

/// Replays every captured answer to both decoders; returns the pages compared.
async fn replay_and_compare(replay: &Replay, captured: Vec<(String, Fault)>) -> Vec<Outcome> {
    let mut pages = Vec::new();
    for (iterator, fault) in captured {
        assert_eq!(fault.status, 200, "captured an error: {}", fault.body);
        replay.answer(&iterator, fault);
        let (sdk, own) = replay.both(&iterator, true).await;
        assert_eq!(sdk, own, "the decoders disagree on the page of {iterator}");
        pages.push(own);
    }
    pages
}

fn records_of(pages: &[Outcome]) -> Vec<&RecordView> {
    pages
        .iter()
        .flat_map(|p| match p {
            Outcome::Page { records, .. } => records.iter().collect::<Vec<_>>(),
            Outcome::Error { .. } => Vec::new(),
        })
        .collect()
}

async fn one_shard(client: &StreamClient, prefix: &str) -> (String, String) {
    let stream = unique(prefix);
    client.create(&stream, 1).await.unwrap();
    let shard = client.shards(&stream).await.unwrap()[0].shard_id.clone();
    (stream, shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_every_kind_decode_identically() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let replay = Replay::start(&stack).await;

    // Binary, UTF-8 and empty data; keys that need JSON escapes; 1 MiB records; KPL aggregates.
    let (stream, shard) = one_shard(&client, "decoders-mixed").await;
    let mut entries = Vec::new();
    for i in 0..200u32 {
        let data: Vec<u8> = (0..(i * 7 % 300)).map(|_| rand::random::<u8>()).collect();
        entries.push(PutEntry::new(Bytes::from(data), format!("bin-{i}")));
    }
    for (i, text) in [
        "héllo wörld",
        "日本語のテキスト",
        "emoji 🚀🚀",
        "\"quoted\" \\ back\\slash",
        "\u{7f}\t\n",
    ]
    .iter()
    .enumerate()
    {
        entries.push(PutEntry::new(
            Bytes::from(text.to_string()),
            format!("ké\"y\\{i}/\u{1}"),
        ));
    }
    let empty = client
        .put(&stream, Bytes::new(), "empty")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    client
        .put_batch(&stream, std::mem::take(&mut entries))
        .await
        .unwrap();
    let mut put = 205;
    // One 1 MiB record per call (ferrokinesis refuses larger request bodies).
    for i in 0..3 {
        let key = format!("big-{i}");
        let data: Vec<u8> = (0..(1024 * 1024 - key.len()))
            .map(|j| (j % 251) as u8)
            .collect();
        client.put(&stream, Bytes::from(data), &key).await.unwrap();
        put += 1;
    }
    for a in 0..3u128 {
        let users: Vec<UserRecord> = (0..50u128)
            .map(|i| UserRecord {
                partition_key: format!("kpl-{a}-{i}").into(),
                explicit_hash_key: (i % 2 == 0).then_some(i * 1_000 + a),
                data: Bytes::from(format!("user record {a}/{i}")),
            })
            .collect();
        entries.push(PutEntry::new(kpl::aggregate(&users), format!("agg-{a}")));
    }
    put += entries.len();
    client.put_batch(&stream, entries).await.unwrap();
    let pages = replay_and_compare(&replay, capture(&stack, &stream, &shard, 10_000).await).await;
    let records = records_of(&pages);
    let expected = put + usize::from(empty.is_ok());
    assert_eq!(
        records.len(),
        expected,
        "every record read (empty data put: {empty:?})"
    );
    assert!(
        records.iter().any(|r| r.0.len() == 1024 * 1024 - 5),
        "1 MiB records"
    );
    assert!(
        records
            .iter()
            .any(|r| r.1.contains('"') && r.1.contains('\\')),
        "escaped keys"
    );
    assert!(records.iter().all(|r| r.4.is_some()), "arrival times");
    let aggregates = pages
        .iter()
        .map(|p| match p {
            Outcome::Page { users, .. } => users.iter().flatten().count(),
            Outcome::Error { .. } => 0,
        })
        .sum::<usize>();
    assert_eq!(aggregates, 3, "KPL aggregates");

    // A full page of 10,000 records.
    let (stream, shard) = one_shard(&client, "decoders-full").await;
    let entries = (0..10_000)
        .map(|i| {
            PutEntry::new(
                Bytes::from(format!("{{\"n\":{i}}}")),
                format!("k{}", i % 97),
            )
        })
        .collect();
    client.put_batch(&stream, entries).await.unwrap();
    let pages = replay_and_compare(&replay, capture(&stack, &stream, &shard, 10_000).await).await;
    assert!(
        pages
            .iter()
            .any(|p| matches!(p, Outcome::Page { records, .. } if records.len() == 10_000)),
        "a 10,000-record page"
    );

    // A split parent read to its end: no next iterator, its children named.
    let (stream, parent) = one_shard(&client, "decoders-split").await;
    let before = (0..20)
        .map(|i| PutEntry::new(Bytes::from(format!("before {i}")), format!("k{i}")))
        .collect();
    client.put_batch(&stream, before).await.unwrap();
    let info = client.shards(&stream).await.unwrap().remove(0);
    client.split_in_half(&stream, &info).await.unwrap();
    let captured = capture(&stack, &stream, &parent, 10_000).await;
    let (_, end) = captured.last().cloned().unwrap();
    let pages = replay_and_compare(&replay, captured).await;
    assert!(
        matches!(
            pages.last(),
            Some(Outcome::Page {
                next_iterator: None,
                ..
            })
        ),
        "the parent's end: {:?}",
        pages.last()
    );
    assert_eq!(records_of(&pages).len(), 20);
    // ferrokinesis names no ChildShards in GetRecords: the parent's real last page, with the
    // children Kinesis would name there added.
    let mut end_page: serde_json::Value = serde_json::from_str(&end.body).unwrap();
    let children: Vec<serde_json::Value> = client
        .shards(&stream)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(parent.as_str()))
        .map(|s| {
            serde_json::json!({
                "ShardId": s.shard_id,
                "ParentShards": [parent],
                "HashKeyRange": {"StartingHashKey": s.starting_hash_key, "EndingHashKey": s.ending_hash_key},
            })
        })
        .collect();
    assert_eq!(children.len(), 2);
    end_page["ChildShards"] = serde_json::Value::Array(children);
    let pages = replay_and_compare(
        &replay,
        vec![(
            "split-parent-end".to_owned(),
            Fault {
                body: end_page.to_string(),
                ..end
            },
        )],
    )
    .await;
    match &pages[0] {
        Outcome::Page {
            next_iterator,
            child_shards,
            ..
        } => {
            assert_eq!(*next_iterator, None, "the parent's end");
            assert_eq!(child_shards.len(), 2, "both children: {child_shards:?}");
        }
        other @ Outcome::Error { .. } => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_odd_answers_decode_identically() {
    let stack = Stack::from_env();
    let replay = Replay::start(&stack).await;
    let json = |status: u16, body: &str| Fault {
        status,
        content_type: "application/x-amz-json-1.1",
        body: body.to_owned(),
    };
    let seq = "49590338271490256608559692538361571095921575989136588898";
    // (name, answer, whether the service wrote a message, the class both must give)
    let cases: Vec<(&str, Fault, bool, &str)> = vec![
        (
            "throttled",
            Fault::aws_json(
                "ProvisionedThroughputExceededException",
                "Rate exceeded for shard",
            ),
            true,
            "throttled",
        ),
        (
            "KMS throttled",
            Fault::aws_json("KMSThrottlingException", "KMS rate exceeded"),
            true,
            "throttled",
        ),
        (
            "expired iterator",
            Fault::aws_json("ExpiredIteratorException", "Iterator expired"),
            true,
            "expired",
        ),
        (
            "expired iterator, namespaced",
            json(
                400,
                r#"{"__type":"com.amazonaws.kinesis.v20131202#ExpiredIteratorException","message":"old"}"#,
            ),
            true,
            "expired",
        ),
        (
            "not found",
            Fault::aws_json("ResourceNotFoundException", "Stream x not found"),
            true,
            "not found",
        ),
        (
            "access denied",
            Fault::aws_json("AccessDeniedException", "not allowed"),
            true,
            "permanent",
        ),
        (
            "internal failure",
            json(500, r#"{"__type":"InternalFailure","Message":"try again"}"#),
            true,
            "transient",
        ),
        (
            "503 without a body",
            Fault {
                status: 503,
                content_type: "text/html",
                body: "<html>Service Unavailable</html>".into(),
            },
            false,
            "transient",
        ),
        (
            "truncated JSON",
            json(200, r#"{"Records":[{"SequenceNumber":"#),
            false,
            "transient",
        ),
        ("not JSON", json(200, "<html>ok</html>"), false, "transient"),
        (
            "bad base64",
            json(
                200,
                &format!(
                    r#"{{"Records":[{{"SequenceNumber":"{seq}","Data":"@@@","PartitionKey":"k"}}],"NextShardIterator":"n","MillisBehindLatest":0}}"#
                ),
            ),
            false,
            "transient",
        ),
        (
            "bad sequence number",
            json(
                200,
                r#"{"Records":[{"SequenceNumber":"007","Data":"","PartitionKey":"k"}],"NextShardIterator":"n","MillisBehindLatest":0}"#,
            ),
            false,
            "transient",
        ),
        (
            "records not a list",
            json(200, r#"{"Records":{},"NextShardIterator":"n"}"#),
            false,
            "transient",
        ),
        (
            "escapes everywhere, odd numbers, nulls and unknown fields",
            json(
                200,
                &format!(
                    r#"{{"Records":[
                    {{"SequenceNumber":"\u0034{rest}","ApproximateArrivalTimestamp":1764753600,"Data":"\/w==","PartitionKey":"k\u00e9\ud83d\ude80\"\\","EncryptionType":"KMS"}},
                    {{"SequenceNumber":"{seq}","ApproximateArrivalTimestamp":1.7647536001234E9,"Data":"","PartitionKey":"k"}},
                    {{"SequenceNumber":"{seq}","ApproximateArrivalTimestamp":null,"Data":null,"PartitionKey":"k","Extra":{{"a":[1,2,{{}}]}}}}
                ],"NextShardIterator":"AAAA\/BBBB+==","MillisBehindLatest":12345,"ChildShards":null,"Unknown":true}}"#,
                    rest = &seq[1..]
                ),
            ),
            true,
            "page",
        ),
        (
            "a record without a partition key or data",
            json(
                200,
                &format!(r#"{{"Records":[{{"SequenceNumber":"{seq}"}}],"NextShardIterator":"n"}}"#),
            ),
            true,
            "page",
        ),
        (
            "an empty page at a shard's end",
            json(
                200,
                r#"{"Records":[],"MillisBehindLatest":0,"ChildShards":[{"ShardId":"shardId-000000000001","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"1"}},{"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"2","EndingHashKey":"3"}}]}"#,
            ),
            true,
            "page",
        ),
        (
            "no records at all",
            json(200, r#"{"NextShardIterator":"n"}"#),
            true,
            "page",
        ),
    ];
    for (i, (name, fault, service_message, class)) in cases.into_iter().enumerate() {
        let iterator = format!("canned-{i}");
        replay.answer(&iterator, fault);
        let (sdk, own) = replay.both(&iterator, service_message).await;
        assert_eq!(sdk, own, "{name}: the decoders disagree");
        let got = match &own {
            Outcome::Page { .. } => "page",
            Outcome::Error { class, .. } => class,
        };
        assert_eq!(got, class, "{name}: {own:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_iterators_of_every_start_read_the_same_records() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let (sdk, own) = api::clients("us-east-1", Some(&stack.kinesis)).await;
    let own = own.unwrap();
    let (stream, shard) = one_shard(&client, "decoders-iterators").await;
    let entries = (0..30)
        .map(|i| PutEntry::new(Bytes::from(format!("r{i}")), format!("k{i}")))
        .collect();
    let put = client.put_batch(&stream, entries).await.unwrap();
    let (stream_id, shard_id): (Arc<str>, Arc<str>) =
        (Arc::from(stream.as_str()), Arc::from(shard.as_str()));
    let middle = SequenceNumber::new(put[10].sequence_number.clone()).unwrap();
    let first = api::get_records(
        &sdk,
        &api::get_shard_iterator(&sdk, &stream, &shard, &IteratorStart::TrimHorizon)
            .await
            .unwrap(),
        10_000,
        &stream_id,
        &shard_id,
    )
    .await
    .unwrap();
    let arrival = first.records[0].approximate_arrival.unwrap();
    let starts = [
        IteratorStart::TrimHorizon,
        IteratorStart::Latest,
        IteratorStart::AtTimestamp(arrival),
        IteratorStart::AtTimestamp(arrival - chrono::Duration::hours(1)),
        IteratorStart::AtTimestamp(arrival + chrono::Duration::milliseconds(1)),
        IteratorStart::AtSequence(middle.clone()),
        IteratorStart::AfterSequence(middle),
    ];
    for start in starts {
        let by_sdk = api::get_shard_iterator(&sdk, &stream, &shard, &start)
            .await
            .unwrap();
        let by_own = own
            .get_shard_iterator(&stream, &shard, &start)
            .await
            .unwrap();
        let read = |it: String| {
            let (sdk, stream_id, shard_id) = (&sdk, &stream_id, &shard_id);
            async move {
                api::get_records(sdk, &it, 10_000, stream_id, shard_id)
                    .await
                    .unwrap()
                    .records
                    .iter()
                    .map(record_view)
                    .collect::<Vec<_>>()
            }
        };
        let (a, b) = (read(by_sdk).await, read(by_own).await);
        assert_eq!(a, b, "{start:?}: the iterators read different records");
        match start {
            IteratorStart::TrimHorizon => assert_eq!(b.len(), 30),
            IteratorStart::AtSequence(_) => assert_eq!(b.len(), 20),
            IteratorStart::AfterSequence(_) => assert_eq!(b.len(), 19),
            _ => {}
        }
    }
    // A stream that does not exist: not found on both paths.
    let missing = unique("decoders-missing");
    let a = api::get_shard_iterator(&sdk, &missing, &shard, &IteratorStart::TrimHorizon).await;
    let b = own
        .get_shard_iterator(&missing, &shard, &IteratorStart::TrimHorizon)
        .await;
    assert!(matches!(a, Err(KinesisError::NotFound { .. })), "{a:?}");
    assert!(matches!(b, Err(KinesisError::NotFound { .. })), "{b:?}");
}
