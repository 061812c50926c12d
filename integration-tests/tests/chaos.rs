//! The chaos suite: three workers share a stream through the lease table and write to S3 while workers
//! are SIGKILLed and restarted, the stream is resharded, S3 goes away for a while, and the S3 endpoint
//! answers some requests with 500, 503 SlowDown or 429. Records hold one to three JSON lines, each an
//! item of its own (`json_lines`), and the second killed worker comes back under its own id (a
//! container restarted in place). A ledger of every item put (unique ids) is compared with what S3
//! holds: nothing may be lost; duplicates are counted. Peak memory of the workers
//! must stay within their configured buffers plus a fixed overhead while S3 is away.
//!
//! This target runs the reduced form (2 trials, a 5 s outage); `integration-tests/chaos/run-full` runs
//! 20 trials with a 60 s outage through the same code (`KC_CHAOS_TRIALS`, `KC_CHAOS_OUTAGE_SECS`,
//! `KC_CHAOS_PRODUCE_SECS`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::tcp_switch::TcpSwitch;
use integration_tests::{Connector, Stack, Workdir, s3_objects, unique};
use kinesis_connectors_consumer::{PutEntry, StreamClient};
use rand::Rng;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The buffers configured below: 1 MiB buffered + 4 queued and 2 in-flight batches of 256 KiB + 4 pages
/// of intake of at most 500 records of ~1 KiB.
const CONFIGURED_BUFFERS: u64 = (1 << 20) + 6 * (256 << 10) + 4 * 500 * 1100;
/// Runtime, SDK clients, code: what a worker uses with empty buffers (about 25-35 MB measured), rounded up.
const FIXED_OVERHEAD: u64 = 64 << 20;

struct TrialResult {
    put: usize,
    lost: usize,
    duplicated: usize,
    kills: usize,
    resharded: bool,
    outage: Duration,
    injected_faults: u64,
    peak_rss: u64,
    elapsed: Duration,
}

async fn trial(stack: &Stack, n: usize, produce_for: Duration, outage: Duration) -> TrialResult {
    let started = Instant::now();
    let client = stack.streams().await;
    let stream = unique("chaos");
    client.create(&stream, 4).await.unwrap();
    let table = unique("chaos-leases");
    let bucket = stack.bucket().await;
    // emitter → switch (outage: connection refused) → proxy (500 / 503 SlowDown / 429 on 10% of PUTs) → S3
    let faults = Arc::new(AtomicU64::new(0));
    let f = faults.clone();
    let proxy = FaultProxy::start(
        &stack.s3,
        Arc::new(move |method, path, _, _, _| {
            let object_put = method == "PUT" && path.matches('/').count() >= 2 && !path.contains("write-check");
            if !object_put || rand::rng().random_range(0..10) != 0 {
                return None;
            }
            let (status, code) = match f.fetch_add(1, Ordering::SeqCst) % 3 {
                0 => (500, "InternalError"),
                1 => (503, "SlowDown"),
                _ => (429, "TooManyRequests"),
            };
            Some(Fault {
                status,
                content_type: "application/xml",
                body: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>chaos</Message></Error>"),
            })
        }),
    )
    .await;
    let switch = TcpSwitch::start(&proxy.url).await;
    let work = Workdir::new();
    let config = work.config(&format!(
        r#"state_dir = "${{STATE_DIR}}"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", max_records_per_call = 500, shard_sync_interval = "2s" }}
transformer = {{ type = "json_lines" }}
buffer = {{ max_records = 200, max_bytes = "256KiB", max_age = "300ms" }}
delivery = {{ max_in_flight = 2, max_queued_batches = 4, max_buffered_bytes = "1MiB" }}
retry = {{ base_delay = "50ms", max_delay = "1s" }}
emitter = {{ type = "s3", bucket = "{bucket}", endpoint = "{s3}", key = "{{batch_id}}{{ext}}" }}
checkpoint = {{ type = "dynamodb", table = "{table}", endpoint = "{dynamodb}", failover_time = "2s", worker_id = "${{WORKER}}" }}
"#,
        kinesis = stack.kinesis,
        s3 = switch.url,
        dynamodb = stack.dynamodb,
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
    let mut workers: Vec<(String, Connector)> = (1..=3)
        .map(|i| (format!("w{i}"), start(&format!("w{i}"))))
        .collect();

    // The producer: ~1 KiB records of 1 to 3 JSON lines (items, each with a unique id), 100 records
    // every 100 ms, for `produce_for`.
    let stop = Arc::new(AtomicBool::new(false));
    let (s, c, st) = (stop.clone(), client.clone(), stream.clone());
    let producer = tokio::spawn(async move {
        let mut next = 0u64;
        let mut put: Vec<u64> = Vec::new();
        let mut record = 0u64;
        while !s.load(Ordering::SeqCst) {
            let mut entries: Vec<PutEntry> = Vec::with_capacity(100);
            for _ in 0..100 {
                let lines = 1 + record % 3;
                let text: Vec<String> = (next..next + lines)
                    .map(|id| {
                        format!(
                            r#"{{"id":{id},"pad":"{}"}}"#,
                            "z".repeat(1000 / lines as usize)
                        )
                    })
                    .collect();
                entries.push(PutEntry::new(
                    Bytes::from(text.join("\n")),
                    format!("k{}", record % 97),
                ));
                put.extend(next..next + lines);
                next += lines;
                record += 1;
            }
            c.put_batch(&st, entries).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        put
    });

    // The chaos, at fixed fractions of the production time.
    let step = produce_for / 6;
    let mut kills = 0;
    let mut peak = 0u64;
    let mut rng = rand::rng();
    // A killed worker comes back under a new id (round 1) or, as a container restarted in place
    // does, under its own (round 2): it must take its own leases back.
    let kill_one = |workers: &mut Vec<(String, Connector)>,
                    round: usize,
                    peak: &mut u64,
                    rng: &mut rand::rngs::ThreadRng| {
        let i = rng.random_range(0..workers.len());
        let (name, mut w) = workers.remove(i);
        *peak = (*peak).max(peak_rss(w.pid()));
        w.kill();
        let next = if round == 2 {
            name
        } else {
            format!("{name}-r{round}")
        };
        workers.push((next.clone(), start(&next)));
    };
    tokio::time::sleep(step).await;
    kill_one(&mut workers, 1, &mut peak, &mut rng);
    kills += 1;
    tokio::time::sleep(step).await;
    client.reshard(&stream, 8).await.unwrap();
    tokio::time::sleep(step).await;
    switch.off().await;
    let outage_started = Instant::now();
    while outage_started.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for (_, w) in &workers {
            peak = peak.max(peak_rss(w.pid()));
        }
    }
    switch.on().await;
    tokio::time::sleep(step).await;
    kill_one(&mut workers, 2, &mut peak, &mut rng);
    kills += 1;
    tokio::time::sleep(step).await;
    stop.store(true, Ordering::SeqCst);
    let put = producer.await.unwrap();

    // Wait for everything to land, then stop the workers gracefully.
    let s3 = stack.s3().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let counts = loop {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for (_, body) in s3_objects(&s3, &bucket, "").await {
            for line in String::from_utf8_lossy(&body).lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                *counts.entry(v["id"].as_u64().unwrap()).or_default() += 1;
            }
        }
        if put.iter().all(|id| counts.contains_key(id)) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (name, w) in &mut workers {
        peak = peak.max(peak_rss(w.pid()));
        w.terminate();
        let status = w.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "worker {name} did not shut down cleanly: {status:?}\n{}",
            w.log_tail(40)
        );
    }
    for entry in std::fs::read_dir(work.dir.path()).unwrap().flatten() {
        let dead = entry.path().join("p.dead-letter.jsonl");
        assert!(
            !dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty(),
            "retryable failures were dead-lettered"
        );
    }
    let _ = n;
    TrialResult {
        put: put.len(),
        lost: put.iter().filter(|id| !counts.contains_key(id)).count(),
        duplicated: counts.values().filter(|c| **c > 1).count(),
        kills,
        resharded: true,
        outage,
        injected_faults: faults.load(Ordering::SeqCst),
        peak_rss: peak,
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_trials_lose_nothing() {
    let stack = Stack::from_env();
    let trials = env_u64("KC_CHAOS_TRIALS", 2) as usize;
    let outage = Duration::from_secs(env_u64("KC_CHAOS_OUTAGE_SECS", 5));
    let produce_for = Duration::from_secs(env_u64("KC_CHAOS_PRODUCE_SECS", 12))
        .max(outage + Duration::from_secs(6));
    let bound = CONFIGURED_BUFFERS + FIXED_OVERHEAD;
    println!(
        "| trial | items put | lost | duplicated | SIGKILLs (2nd in place) | reshard 4→8 | S3 outage | injected 500/503/429 | peak worker RSS | bound | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut results = BTreeMap::new();
    for t in 1..=trials {
        let r = trial(&stack, t, produce_for, outage).await;
        println!(
            "| {t} | {} | {} | {} | {} | {} | {} s | {} | {:.1} MB | {:.1} MB | {:.0} s |",
            r.put,
            r.lost,
            r.duplicated,
            r.kills,
            if r.resharded { "yes" } else { "no" },
            r.outage.as_secs(),
            r.injected_faults,
            r.peak_rss as f64 / 1e6,
            bound as f64 / 1e6,
            r.elapsed.as_secs_f64()
        );
        results.insert(t, r);
    }
    for (t, r) in &results {
        assert_eq!(r.lost, 0, "trial {t} lost {} records", r.lost);
        assert!(r.injected_faults > 0, "trial {t}: no fault was injected");
        assert!(
            r.peak_rss <= bound,
            "trial {t}: peak RSS {} over the bound {bound}",
            r.peak_rss
        );
    }
    let _ = StreamClient::new;
}
