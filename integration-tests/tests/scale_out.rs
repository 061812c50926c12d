//! Several workers sharing one stream through the DynamoDB lease table (dynalite): balancing, failover
//! after SIGKILL, hand-off on SIGTERM, fencing, taking over a KCL application's table, KPL aggregates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{
    Connector, Ledger, Stack, Workdir, poll, put_records, read_landed, unique, wait_until,
};
use kinesis_connectors_consumer::{
    Checkpoint, DynamoDbLeaseStore, Lease, LeaseStore, StreamClient,
};

/// A pipeline reading `stream` with the lease table `table`, writing envelopes to `${OUT_DIR}`.
fn leased_pipeline(
    stream: &str,
    table: &str,
    stack: &Stack,
    failover: &str,
    extra: &str,
) -> String {
    format!(
        r#"state_dir = "${{STATE_DIR:-state}}"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "2s" }}
transformer = {{ type = "json" }}
buffer = {{ max_records = 50, max_age = "200ms" }}
emitter = {{ type = "file", dir = "${{OUT_DIR}}", prefix = "out", format = "envelope" }}
checkpoint = {{ type = "dynamodb", table = "{table}", endpoint = "{dynamodb}", failover_time = "{failover}", worker_id = "${{WORKER}}" }}
{extra}
"#,
        kinesis = stack.kinesis,
        dynamodb = stack.dynamodb
    )
}

fn worker_env(work: &Workdir, name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "OUT_DIR",
            work.path(&format!("out-{name}")).display().to_string(),
        ),
        (
            "STATE_DIR",
            work.path(&format!("state-{name}")).display().to_string(),
        ),
        ("WORKER", name.to_owned()),
    ]
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

fn counts(owners: &BTreeMap<String, Option<String>>) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for o in owners.values().flatten() {
        *c.entry(o.clone()).or_default() += 1;
    }
    c
}

/// Puts records in the background until stopped; returns the ledger.
fn producer(
    client: StreamClient,
    stream: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Ledger> {
    tokio::spawn(async move {
        let mut ledger = Ledger::default();
        let mut next = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let l = put_records(&client, &stream, next..next + 200, 64, &|_| false).await;
            ledger.records.extend(l.records);
            next += 200;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ledger
    })
}

fn landed_ids(work: &Workdir, names: &[&str]) -> HashSet<u64> {
    names
        .iter()
        .flat_map(|n| read_landed(&work.path(&format!("out-{n}"))))
        .map(|l| l.id())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_eight_shards_fail_over_after_a_kill_and_rebalance_to_a_fourth() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("scale-8");
    client.create(&stream, 8).await.unwrap();
    let table = unique("leases-8");
    let failover = Duration::from_secs(2);
    let work = Workdir::new();
    let config = work.config(&leased_pipeline(&stream, &table, &stack, "2s", ""));
    let stop = Arc::new(AtomicBool::new(false));
    let produce = producer(client.clone(), stream.clone(), stop.clone());

    let started = Instant::now();
    let mut workers: BTreeMap<&str, Connector> = BTreeMap::new();
    for name in ["w1", "w2", "w3"] {
        workers.insert(
            name,
            Connector::start(work.dir.path(), &config, "p", &[], &worker_env(&work, name)),
        );
    }
    let store = DynamoDbLeaseStore::connect("us-east-1", Some(&stack.dynamodb), &table)
        .await
        .unwrap();
    let (_, _) = poll(Duration::from_secs(30), "8 leases", async || {
        (store.list().await.ok()?.len() == 8).then_some(())
    })
    .await;
    let (balanced, _) = poll(
        Duration::from_secs(30),
        "every shard owned, at most 3 each",
        async || {
            let o = owners(&store).await;
            let c = counts(&o);
            (o.values().all(Option::is_some) && c.len() == 3 && c.values().all(|n| *n <= 3))
                .then_some(c)
        },
    )
    .await;
    let took = started.elapsed();
    eprintln!("3 workers: balanced {balanced:?} {took:?} after start (failover {failover:?})");
    assert!(
        took <= 2 * failover + Duration::from_secs(1),
        "balancing took {took:?}"
    );

    // SIGKILL the busiest worker; its shards are owned again within 2x the failover time.
    let (victim, _) = balanced.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim = victim.clone();
    let theirs: Vec<String> = owners(&store)
        .await
        .into_iter()
        .filter(|(_, o)| o.as_deref() == Some(&victim))
        .map(|(s, _)| s)
        .collect();
    workers.get_mut(victim.as_str()).unwrap().kill();
    let killed_at = Instant::now();
    let (_, recovered) = poll(
        Duration::from_secs(30),
        "the killed worker's shards to be taken over",
        async || {
            let o = owners(&store).await;
            theirs
                .iter()
                .all(|s| o[s].as_deref().is_some_and(|w| w != victim))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "killed {victim} holding {theirs:?}; taken over after {recovered:?} (2x failover = {:?})",
        2 * failover
    );
    assert!(recovered <= 2 * failover, "failover took {recovered:?}");
    // ... and read again: records put after the kill to those shards land.
    let before = landed_ids(&work, &["w1", "w2", "w3"]).len();
    wait_until(Duration::from_secs(30), "records after the kill", || {
        landed_ids(&work, &["w1", "w2", "w3"]).len() > before + 400
    });
    let _ = killed_at;

    // A fourth worker steals toward an even share (2 live + 1 new: 3 each at most, at least 2 for it).
    workers.insert(
        "w4",
        Connector::start(work.dir.path(), &config, "p", &[], &worker_env(&work, "w4")),
    );
    let (after, stole) = poll(
        Duration::from_secs(30),
        "the fourth worker to steal its share",
        async || {
            let c = counts(&owners(&store).await);
            (c.get("w4").copied().unwrap_or(0) >= 2
                && c.values().all(|n| *n <= 3)
                && !c.contains_key(victim.as_str()))
            .then_some(c)
        },
    )
    .await;
    eprintln!("fourth worker: {after:?} after {stole:?}");

    stop.store(true, Ordering::SeqCst);
    let ledger = produce.await.unwrap();
    let names = ["w1", "w2", "w3", "w4"];
    wait_until(Duration::from_secs(60), "every record to land", || {
        let ids = landed_ids(&work, &names);
        ledger.records.keys().all(|id| ids.contains(id))
    });
    for (_, w) in workers.iter_mut() {
        if w.is_running() {
            w.terminate();
            assert!(w.wait(Duration::from_secs(30)).success());
        }
    }
    let ids = landed_ids(&work, &names);
    let lost: Vec<u64> = ledger
        .records
        .keys()
        .filter(|id| !ids.contains(id))
        .copied()
        .collect();
    assert!(lost.is_empty(), "lost {} records", lost.len());
    eprintln!(
        "ledger: {} records put, all delivered",
        ledger.records.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_leases_to_the_other_worker_in_under_two_seconds() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("scale-handoff");
    client.create(&stream, 4).await.unwrap();
    let ledger = put_records(&client, &stream, 0..1_000, 16, &|_| false).await;
    let table = unique("leases-handoff");
    let work = Workdir::new();
    // A failover time far above 2 s: only the hand-off can explain a fast takeover.
    let config = work.config(&leased_pipeline(&stream, &table, &stack, "10s", ""));
    let mut a = Connector::start(work.dir.path(), &config, "p", &[], &worker_env(&work, "a"));
    let store = DynamoDbLeaseStore::connect("us-east-1", Some(&stack.dynamodb), &table)
        .await
        .unwrap();
    poll(
        Duration::from_secs(30),
        "a to own the 4 leases",
        async || (counts(&owners(&store).await).get("a") == Some(&4)).then_some(()),
    )
    .await;
    let mut b = Connector::start(work.dir.path(), &config, "p", &[], &worker_env(&work, "b"));
    poll(Duration::from_secs(60), "a 2/2 split", async || {
        let c = counts(&owners(&store).await);
        (c.get("a") == Some(&2) && c.get("b") == Some(&2)).then_some(())
    })
    .await;
    a.terminate();
    let (_, took) = poll(
        Duration::from_secs(10),
        "b to own every lease",
        async || (counts(&owners(&store).await).get("b") == Some(&4)).then_some(()),
    )
    .await;
    eprintln!(
        "SIGTERM hand-off: b owns all 4 leases {took:?} after a was asked to stop (failover 10s)"
    );
    assert!(took < Duration::from_secs(2), "hand-off took {took:?}");
    assert!(a.wait(Duration::from_secs(30)).success());
    wait_until(Duration::from_secs(30), "every record", || {
        let ids = landed_ids(&work, &["a", "b"]);
        ledger.records.keys().all(|id| ids.contains(id))
    });
    b.terminate();
    assert!(b.wait(Duration::from_secs(30)).success());
}

#[tokio::test]
async fn two_workers_racing_for_one_lease_exactly_one_wins_and_the_loser_is_fenced() {
    let stack = Stack::from_env();
    let table = unique("leases-race");
    let store = Arc::new(
        DynamoDbLeaseStore::connect("us-east-1", Some(&stack.dynamodb), &table)
            .await
            .unwrap(),
    );
    assert!(
        store
            .create(&Lease::new(
                "shardId-000000000000",
                Checkpoint::TrimHorizon,
                vec![],
                None
            ))
            .await
            .unwrap()
    );
    let seen = store.list().await.unwrap().remove(0).counter;
    // Both saw the same counter and race to take the lease.
    let (a, b) = tokio::join!(
        store.take("shardId-000000000000", seen, "a"),
        store.take("shardId-000000000000", seen, "b")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.is_some() ^ b.is_some(),
        "exactly one wins: a={a:?} b={b:?}"
    );
    let (winner, loser, counter) = if let Some(c) = a {
        ("a", "b", c)
    } else {
        ("b", "a", b.unwrap())
    };
    let pos = Checkpoint::Sequence {
        position: kinesis_connectors_core::Position::new(
            kinesis_connectors_core::testing::sequence(5),
            0,
        ),
    };
    // The loser's checkpoint is refused, whatever counter it tries.
    for c in [seen, counter] {
        assert_eq!(
            store
                .checkpoint("shardId-000000000000", c, loser, &pos)
                .await
                .unwrap(),
            None
        );
    }
    // The winner checkpoints; a stale handle of the winner (old counter) is refused too.
    let next = store
        .checkpoint("shardId-000000000000", counter, winner, &pos)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .checkpoint("shardId-000000000000", counter, winner, &pos)
            .await
            .unwrap(),
        None
    );
    let lease = store.list().await.unwrap().remove(0);
    assert_eq!(
        (lease.owner.as_deref(), lease.counter, lease.checkpoint),
        (Some(winner), next, pos)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kcl_lease_table_is_taken_over_and_resumed_from_its_checkpoints() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("kcl-takeover");
    client.create(&stream, 2).await.unwrap();
    let ledger = put_records(&client, &stream, 0..400, 10, &|_| false).await;
    // What a KCL 2.x application left behind: its checkpoint after each shard's 100th record, held by a
    // worker that is gone (its counter never moves again).
    let mut per_shard: HashMap<String, Vec<(kinesis_connectors_core::SequenceNumber, u64)>> =
        HashMap::new();
    for (id, (shard, seq)) in &ledger.records {
        per_shard
            .entry(shard.clone())
            .or_default()
            .push((seq.clone(), *id));
    }
    let table = unique("kcl-app");
    let ddb = stack.dynamodb().await;
    DynamoDbLeaseStore::open(ddb.clone(), &table).await.unwrap();
    let mut expected = HashSet::new();
    for (shard, mut records) in per_shard {
        records.sort();
        let (checkpoint, _) = records[99].clone();
        expected.extend(records[100..].iter().map(|(_, id)| *id));
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: u64| AttributeValue::N(v.to_string());
        ddb.put_item()
            .table_name(&table)
            .item("leaseKey", s(&shard))
            .item("leaseOwner", s("kcl-worker-7f3a"))
            .item("leaseCounter", n(42))
            .item("checkpoint", s(checkpoint.as_str()))
            .item("checkpointSubSequenceNumber", n(0))
            .item("ownerSwitchesSinceCheckpoint", n(0))
            .item("startingHashKey", s("0"))
            .item("endingHashKey", s("1"))
            .send()
            .await
            .unwrap();
    }
    let work = Workdir::new();
    let config = work.config(&leased_pipeline(&stream, &table, &stack, "1s", ""));
    Connector::run_until_tip(
        work.dir.path(),
        &config,
        "p",
        &worker_env(&work, "successor"),
    );
    let landed: Vec<u64> = read_landed(&work.path("out-successor"))
        .iter()
        .map(|l| l.id())
        .collect();
    let got: HashSet<u64> = landed.iter().copied().collect();
    assert_eq!(
        got, expected,
        "exactly the records after the KCL checkpoints"
    );
    assert_eq!(landed.len(), expected.len(), "no duplicates");
    let store = DynamoDbLeaseStore::open(ddb, &table).await.unwrap();
    for lease in store.list().await.unwrap() {
        assert_eq!(lease.owner, None, "released on exit");
        assert_eq!(
            lease.checkpoint.position().map(|p| p.sequence.clone()),
            ledger.last_per_shard().get(&lease.shard_id).cloned()
        );
    }
}

/// A user record as the third-party encoder listed it.
#[derive(serde::Deserialize, Clone, Debug)]
struct UserRecord {
    partition_key: String,
    data: String,
}

#[derive(serde::Deserialize)]
struct Aggregate {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data_b64: String,
    user_records: Vec<UserRecord>,
}

/// One envelope line of a raw (non-JSON) pipeline.
struct RawLanded {
    sequence: kinesis_connectors_core::SequenceNumber,
    sub_sequence: u64,
    partition_key: String,
    data: Vec<u8>,
}

fn read_raw(dir: &std::path::Path) -> Vec<RawLanded> {
    use base64::Engine;
    let Ok(files) = kinesis_connectors_core::stages::FileEmitter::files(dir, "out") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            out.push(RawLanded {
                sequence: kinesis_connectors_core::SequenceNumber::new(
                    v["sequence"].as_str().unwrap(),
                )
                .unwrap(),
                sub_sequence: v["sub_sequence"].as_u64().unwrap(),
                partition_key: v["partition_key"].as_str().unwrap().to_owned(),
                data: base64::engine::general_purpose::STANDARD
                    .decode(v["data_base64"].as_str().unwrap())
                    .unwrap(),
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_from_a_third_party_encoder_deaggregate_and_survive_sigkill_mid_aggregate() {
    use base64::Engine;
    let stack = Stack::from_env();
    // 2,000 user records in aggregates of 37, made by aws-kinesis-agg (PyPI).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kpl/make_aggregates.py");
    let out = std::process::Command::new("python3")
        .args([script, "2000", "37"])
        .env(
            "PYTHONPATH",
            std::env::var("KC_PYTHONPATH").unwrap_or_default(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws-kinesis-agg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let aggregates: Vec<Aggregate> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(aggregates.len(), 55);

    let client = stack.streams().await;
    let stream = unique("kpl");
    client.create(&stream, 1).await.unwrap();
    let mut entries: Vec<kinesis_connectors_consumer::PutEntry> = aggregates
        .iter()
        .map(|a| kinesis_connectors_consumer::PutEntry {
            data: base64::engine::general_purpose::STANDARD
                .decode(&a.data_b64)
                .unwrap()
                .into(),
            partition_key: a.partition_key.clone(),
            explicit_hash_key: a.explicit_hash_key.clone(),
        })
        .collect();
    // One aggregate with a broken MD5 trailer: delivered as one plain record, bytes unchanged.
    let mut corrupt = entries[0].data.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    entries.push(kinesis_connectors_consumer::PutEntry::new(
        corrupt.clone(),
        "corrupt",
    ));
    client.put_batch(&stream, entries).await.unwrap();

    let work = Workdir::new();
    // Batches of 7 user records, pages of 2 aggregates: checkpoints fall inside aggregates, and the run
    // lasts long enough to be killed mid-way.
    let config = work.config(&format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", max_records_per_call = 2 }}
transformer = {{ type = "raw" }}
buffer = {{ max_records = 7, max_age = "100ms" }}
emitter = {{ type = "file", dir = "${{OUT_DIR}}", prefix = "out", format = "envelope" }}
"#,
        kinesis = stack.kinesis
    ));
    let mut at_start: Vec<BTreeMap<String, Checkpoint>> = vec![BTreeMap::new()];
    for run in 0..2 {
        let dir = work.path(&format!("out-{run}"));
        let mut c = Connector::start(
            work.dir.path(),
            &config,
            "p",
            &[],
            &[("OUT_DIR", dir.display().to_string())],
        );
        let target = 150 + (rand::random::<u32>() % 500) as usize;
        wait_until(Duration::from_secs(60), "user records to land", || {
            read_raw(&dir).len() >= target
        });
        c.kill();
        let cps = work.checkpoints("p");
        eprintln!(
            "run {run}: killed at checkpoint {:?}",
            cps.values().map(|c| c.to_string()).collect::<Vec<_>>()
        );
        at_start.push(cps);
    }
    Connector::run_until_tip(
        work.dir.path(),
        &config,
        "p",
        &[("OUT_DIR", work.path("out-2").display().to_string())],
    );

    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut plain = 0;
    let mut mid_aggregate_restart = false;
    for (run, start) in at_start.iter().enumerate() {
        let start_pos = start.values().next().and_then(|c| c.position().cloned());
        if start_pos.as_ref().is_some_and(|p| p.sub_sequence > 0) {
            mid_aggregate_restart = true;
        }
        for l in read_raw(&work.path(&format!("out-{run}"))) {
            if let Some(p) = &start_pos {
                assert!(
                    (l.sequence.clone(), l.sub_sequence) > (p.sequence.clone(), p.sub_sequence),
                    "run {run} redelivered a user record at or before its checkpoint"
                );
            }
            if l.partition_key == "corrupt" {
                assert_eq!(
                    l.data, corrupt,
                    "the corrupt aggregate arrives as one plain record"
                );
                assert_eq!(l.sub_sequence, 0);
                plain += 1;
                continue;
            }
            *seen
                .entry((l.partition_key, String::from_utf8(l.data).unwrap()))
                .or_default() += 1;
        }
    }
    let expected: Vec<(String, String)> = aggregates
        .iter()
        .flat_map(|a| {
            a.user_records
                .iter()
                .map(|u| (u.partition_key.clone(), u.data.clone()))
        })
        .collect();
    let missing: Vec<_> = expected.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} user records lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(seen.len(), 2000, "nothing but the user records");
    assert!(plain >= 1);
    eprintln!("restarted inside an aggregate: {mid_aggregate_restart}");
}

/// Enhanced fan-out on a private Kinesis whose subscriptions last 1 s: the reader registers its
/// consumer, subscribes per shard, subscribes again after each session ends, and delivers every record
/// exactly once, in shard order, then resumes from its checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_fan_out_resubscribes_without_loss_or_duplicates() {
    let kinesis = integration_tests::private_kinesis(ferrokinesis::store::StoreOptions {
        create_stream_ms: 0,
        update_stream_ms: 0,
        subscribe_to_shard_session_ms: 1_000,
        ..Default::default()
    })
    .await;
    let client = StreamClient::connect("us-east-1", Some(&kinesis)).await;
    let stream = unique("fanout");
    client.create(&stream, 2).await.unwrap();
    let mut ledger = put_records(&client, &stream, 0..500, 9, &|_| false).await;
    let work = Workdir::new();
    let config = work.config(&format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", reader = "fan_out", consumer_name = "kc-test" }}
transformer = {{ type = "json" }}
buffer = {{ max_records = 50, max_age = "100ms" }}
emitter = {{ type = "file", dir = "out", prefix = "out", format = "envelope" }}
"#
    ));
    let out = work.path("out");
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    wait_until(Duration::from_secs(30), "the first records", || {
        read_landed(&out).len() >= 500
    });
    // Outlive two subscription sessions, putting records across them.
    for round in 0..3u64 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let more = put_records(
            &client,
            &stream,
            500 + round * 200..700 + round * 200,
            9,
            &|_| false,
        )
        .await;
        ledger.records.extend(more.records);
    }
    wait_until(Duration::from_secs(30), "every record", || {
        read_landed(&out).len() >= 1_100
    });
    c.terminate();
    assert!(c.wait(Duration::from_secs(30)).success());
    let landed = read_landed(&out);
    let ids: HashSet<u64> = landed.iter().map(|l| l.id()).collect();
    assert_eq!(
        (landed.len(), ids.len()),
        (1_100, 1_100),
        "each record exactly once"
    );
    let mut last: HashMap<&str, &kinesis_connectors_core::SequenceNumber> = HashMap::new();
    for l in &landed {
        if let Some(prev) = last.insert(&l.shard, &l.sequence) {
            assert!(&l.sequence > prev, "out of order on {}", l.shard);
        }
    }
    // A second run resumes from the checkpoints: only new records.
    put_records(&client, &stream, 2_000..2_100, 9, &|_| false).await;
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    wait_until(Duration::from_secs(30), "the new records", || {
        read_landed(&out).len() >= 1_200
    });
    c.terminate();
    assert!(c.wait(Duration::from_secs(30)).success());
    let landed = read_landed(&out);
    assert_eq!(
        landed.len(),
        1_200,
        "nothing redelivered after a clean restart"
    );
    let _ = ledger;
}

/// Another worker takes a shard's lease between its last page and its SHARD_END checkpoint (what the
/// chaos suite hit after a reshard): the refused checkpoint drops the shard, the worker goes on, takes
/// the shard back and reads it again from its last checkpoint — the records are redelivered, none
/// is lost, and the shard ends checkpointed at SHARD_END.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_just_before_the_shard_end_checkpoint_drops_the_shard_and_the_worker_goes_on()
{
    use async_trait::async_trait;
    use kinesis_connectors_consumer::{
        Checkpointer, FileCheckpointStore, InitializationInput, ProcessRecordsInput,
        ProcessorError, ShardRecordProcessor, ShardRecordProcessorFactory, ShutdownReason, Worker,
        WorkerSettings,
    };
    use std::sync::Mutex;
    use tokio_util::sync::CancellationToken;

    const PARENT: &str = "shardId-000000000000";

    struct Shared {
        store: Arc<FileCheckpointStore>,
        stolen: AtomicBool,
        read: Mutex<Vec<(String, u64)>>,
    }
    struct Processor {
        shared: Arc<Shared>,
        shard: String,
    }
    #[async_trait]
    impl ShardRecordProcessor for Processor {
        async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError> {
            self.shard = input.shard_id.to_string();
            Ok(())
        }
        async fn process_records(
            &mut self,
            input: ProcessRecordsInput,
            _: &Checkpointer,
        ) -> Result<(), ProcessorError> {
            let mut read = self.shared.read.lock().unwrap();
            for r in input.records {
                let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
                read.push((self.shard.clone(), v["id"].as_u64().unwrap()));
            }
            Ok(())
        }
        async fn shutdown(
            &mut self,
            reason: ShutdownReason,
            checkpointer: &Checkpointer,
        ) -> Result<(), ProcessorError> {
            if reason != ShutdownReason::ShardEnd {
                return Ok(());
            }
            if self.shard == PARENT && !self.shared.stolen.swap(true, Ordering::SeqCst) {
                // Another worker takes the lease now.
                let lease = self
                    .shared
                    .store
                    .list()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|l| l.shard_id == PARENT)
                    .unwrap();
                let taken = self
                    .shared
                    .store
                    .take(PARENT, lease.counter, "another-worker")
                    .await
                    .unwrap();
                assert!(taken.is_some());
            }
            checkpointer
                .checkpoint_shard_end()
                .await
                .map_err(Into::into)
        }
    }
    struct Factory(Arc<Shared>);
    impl ShardRecordProcessorFactory for Factory {
        fn create_processor(&self) -> Box<dyn ShardRecordProcessor> {
            Box::new(Processor {
                shared: self.0.clone(),
                shard: String::new(),
            })
        }
    }

    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("lost-at-end");
    client.create(&stream, 1).await.unwrap();
    let ledger = put_records(&client, &stream, 0..50, 5, &|_| false).await;
    client.reshard(&stream, 2).await.unwrap();
    let work = Workdir::new();
    let store = Arc::new(FileCheckpointStore::open(work.path("leases.json"), &stream).unwrap());
    let shared = Arc::new(Shared {
        store: store.clone(),
        stolen: AtomicBool::new(false),
        read: Mutex::new(Vec::new()),
    });
    let mut settings = WorkerSettings::new(&stream);
    settings.until_tip = true;
    settings.shard_sync_interval = Duration::from_secs(1);
    settings.reader.idle_poll_interval = Duration::from_millis(200);
    settings.reader.decoder = stack.decoder().await;
    let worker = Worker::new(
        client.sdk().clone(),
        settings,
        store.clone(),
        Arc::new(Factory(shared.clone())),
    );
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        worker.run(CancellationToken::new()),
    )
    .await
    .expect("the worker read everything within 60 s");
    assert!(outcome.is_ok(), "the worker went on: {outcome:?}");
    assert!(shared.stolen.load(Ordering::SeqCst), "the lease was taken");
    let read = shared.read.lock().unwrap().clone();
    let parent: Vec<u64> = read
        .iter()
        .filter(|(s, _)| s == PARENT)
        .map(|(_, id)| *id)
        .collect();
    let ids: HashSet<u64> = read.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), ledger.records.len(), "nothing lost");
    assert_eq!(
        parent.len(),
        2 * ledger.records.len(),
        "the parent's records were read again after the lease came back"
    );
    let end = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.shard_id == PARENT)
        .map(|l| l.checkpoint);
    assert!(
        end.is_none() || end.is_some_and(|c| c.is_shard_end()),
        "the parent ended at SHARD_END (or was deleted once its children started)"
    );
}
