//! The chaos suite (issue 16's acceptance run): one stream is read by three pipelines at once — S3
//! with per-shard batches (`shard/`), S3 with `batch_across_shards = true` (`across/`) and Redshift
//! (staged in the same S3, loaded through the Data API stand-in) — each by three workers sharing its
//! lease table. While records arrive, each pipeline loses a worker to SIGKILL (it comes back under a
//! new id), hands a worker's leases off with SIGTERM (it comes back under its own id), the stream is
//! resharded from 4 to 8 shards, S3 is unreachable for a while, 10% of S3 writes are answered 500,
//! 503 SlowDown or 429, and a second SIGKILL per pipeline restarts the worker under its own id (a
//! container restarted in place). Records hold one to three JSON lines, each an item of its own
//! (`json_lines`) with a unique id; shards are slow enough that batches close by age.
//!
//! Per trial it reports items put, items lost and items held more than once in each sink, and the
//! batches closed per reason (summed over the workers' `/metrics`, each scraped until it stops).
//! Nothing may be lost anywhere; per-shard S3 and Redshift must hold every item once; cross-shard
//! S3 is at least once by design (README, "Delivery guarantees") and its figure is reported. Peak
//! memory of every worker must stay within its configured buffers plus a fixed overhead while S3
//! is away.
//!
//! This target runs the reduced form (2 trials, a 5 s outage); `integration-tests/chaos/run-full`
//! runs 20 trials with a 60 s outage through the same code (`KC_CHAOS_TRIALS`,
//! `KC_CHAOS_OUTAGE_SECS`, `KC_CHAOS_PRODUCE_SECS`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::fault_proxy::{Fault, FaultProxy};
use integration_tests::redshift_data::{Postgres, RedshiftDataStandIn};
use integration_tests::tcp_switch::TcpSwitch;
use integration_tests::{
    Connector, Stack, Workdir, free_port, metric_value, s3_body, s3_listing, scrape_metrics, unique,
};
use kinesis_connectors_consumer::PutEntry;
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
/// What a worker may grow by beyond its configured buffers once records flow: allocator arenas of the
/// runtime's threads, HTTP connection buffers, per-shard state and metrics. The idle part is measured in
/// every trial instead of assumed, because most of it is the binary's own code: on 2026-12-03 an idle
/// debug worker holding 4 leases had 48.8 MB resident, 42.5 MB of it file-backed pages of the 149 MB
/// debug binary and 6.3 MB anonymous; in the chaos trials the idle peak was 58.4 MB and a worker grew
/// by 9.8-11.2 MB above it.
const GROWTH_ALLOWANCE: u64 = 16 << 20;

/// The pipelines of a trial, each reading the whole stream with its own lease table.
const PIPELINES: [&str; 3] = ["shard", "across", "redshift"];
/// The `reason` labels of `kc_batches_closed_total`, in the order the table prints them.
const REASONS: [&str; 6] = ["count", "bytes", "age", "drain", "pressure", "boundary"];
const ROLE: &str = "arn:aws:iam::123456789012:role/redshift-copy";

/// One worker process of one pipeline.
struct Worker {
    pipeline: &'static str,
    name: String,
    port: u16,
    instance: usize,
    process: Connector,
}

/// The trial's workers, with what their `/metrics` said last (a killed process's counters are those
/// of its last scrape, so closes are a lower bound) and their peak memory.
struct Fleet<'a> {
    work: &'a Workdir,
    config: std::path::PathBuf,
    workers: Vec<Worker>,
    closes: HashMap<usize, (&'static str, [f64; 6])>,
    instances: usize,
    peak_rss: u64,
    kills: usize,
    hand_offs: usize,
}

impl Fleet<'_> {
    fn start(&mut self, pipeline: &'static str, name: String) {
        let port = free_port();
        let env = vec![
            (
                "STATE_DIR",
                self.work
                    .path(&format!("state-{pipeline}-{name}"))
                    .display()
                    .to_string(),
            ),
            ("WORKER", name.clone()),
            ("METRICS_PORT", port.to_string()),
        ];
        let process = Connector::start(self.work.dir.path(), &self.config, pipeline, &[], &env);
        self.instances += 1;
        self.workers.push(Worker {
            pipeline,
            name,
            port,
            instance: self.instances,
            process,
        });
    }

    /// Reads every worker's `/metrics` and peak memory; a worker that exited by itself fails the
    /// trial with its log.
    async fn scrape(&mut self) {
        for w in &mut self.workers {
            assert!(
                w.process.is_running(),
                "{} worker {} exited by itself\n{}",
                w.pipeline,
                w.name,
                w.process.log_tail(40)
            );
            self.peak_rss = self.peak_rss.max(peak_rss(w.process.pid()));
            let Some(page) = scrape_metrics(w.port).await else {
                continue;
            };
            let mut counts = [0.0; 6];
            for (i, reason) in REASONS.iter().enumerate() {
                counts[i] = metric_value(
                    &page,
                    "kc_batches_closed_total",
                    &[("pipeline", w.pipeline), ("reason", reason)],
                )
                .unwrap_or(0.0);
            }
            self.closes.insert(w.instance, (w.pipeline, counts));
        }
    }

    /// Waits until every pipeline's workers hold all `shards` leases between them (each worker is up and
    /// has found the stream), then returns the highest peak RSS among them: a worker's idle footprint,
    /// taken before the first record is put.
    async fn idle_rss(&mut self, shards: f64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut held: HashMap<&str, f64> = HashMap::new();
            let mut up = 0;
            for w in &self.workers {
                if let Some(page) = scrape_metrics(w.port).await {
                    up += 1;
                    *held.entry(w.pipeline).or_default() +=
                        metric_value(&page, "kc_leases_held", &[]).unwrap_or(0.0);
                }
            }
            if up == self.workers.len() && PIPELINES.iter().all(|p| held.get(p) == Some(&shards)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "workers did not take the {shards} leases of each pipeline in 90 s: {held:?}, {up} up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.workers
            .iter()
            .map(|w| peak_rss(w.process.pid()))
            .max()
            .unwrap_or(0)
    }

    /// Scrapes every worker twice a second for `d`.
    async fn watch(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.scrape().await;
            tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
        }
    }

    fn take(&mut self, pipeline: &str) -> Worker {
        let of: Vec<usize> = (0..self.workers.len())
            .filter(|i| self.workers[*i].pipeline == pipeline)
            .collect();
        let i = of[rand::rng().random_range(0..of.len())];
        self.workers.remove(i)
    }

    /// SIGKILLs a random worker of every pipeline; each comes back under a new id or, as a container
    /// restarted in place does, under its own (it must take its own leases back).
    async fn kill_one_each(&mut self, round: usize, same_id: bool) {
        self.scrape().await;
        for pipeline in PIPELINES {
            let mut w = self.take(pipeline);
            w.process.kill();
            let name = if same_id {
                w.name
            } else {
                format!("{}-r{round}", w.name)
            };
            self.start(pipeline, name);
            self.kills += 1;
        }
    }

    /// SIGTERMs a random worker of every pipeline (it drains and hands its leases off) and starts
    /// it again under its own id once it has exited.
    async fn hand_off_one_each(&mut self) {
        self.scrape().await;
        for pipeline in PIPELINES {
            let mut w = self.take(pipeline);
            w.process.terminate();
            let status = tokio::task::block_in_place(|| w.process.wait(Duration::from_secs(60)));
            assert!(
                status.success(),
                "{pipeline} worker {} did not shut down cleanly: {status:?}\n{}",
                w.name,
                w.process.log_tail(40)
            );
            self.start(pipeline, w.name);
            self.hand_offs += 1;
        }
    }

    /// Batches closed per reason by every process of `pipeline`.
    fn closed(&self, pipeline: &str) -> [f64; 6] {
        let mut sum = [0.0; 6];
        for (p, counts) in self.closes.values() {
            if *p == pipeline {
                for (s, c) in sum.iter_mut().zip(counts) {
                    *s += c;
                }
            }
        }
        sum
    }
}

/// How each sink holds the items put: (lost, held more than once).
#[derive(Default)]
struct Held {
    lost: usize,
    twice: usize,
}

impl Held {
    fn of(put: &[u64], counts: &HashMap<u64, usize>) -> Self {
        Self {
            lost: put.iter().filter(|id| !counts.contains_key(id)).count(),
            twice: counts.values().filter(|c| **c > 1).count(),
        }
    }
}

struct TrialResult {
    put: usize,
    held: BTreeMap<&'static str, Held>,
    closed: BTreeMap<&'static str, [f64; 6]>,
    kills: usize,
    hand_offs: usize,
    outage: Duration,
    injected_faults: u64,
    idle_rss: u64,
    peak_rss: u64,
    elapsed: Duration,
}

/// The item ids of the JSON-lines objects under a prefix, each object read once per version (its
/// ETag): the wait for everything to land lists the bucket every few seconds, and reading thousands
/// of objects again each time made that wait minutes long.
#[derive(Default)]
struct S3Ids {
    objects: HashMap<String, (String, Vec<u64>)>,
}

impl S3Ids {
    /// Counts of every item id under `prefix` now.
    async fn counts(
        &mut self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
    ) -> HashMap<u64, usize> {
        let listed: HashMap<String, String> = s3_listing(s3, bucket, prefix, None)
            .await
            .into_iter()
            .collect();
        self.objects.retain(|k, _| listed.contains_key(k));
        for (key, version) in listed {
            if self.objects.get(&key).is_some_and(|(v, _)| *v == version) {
                continue;
            }
            let body = s3_body(s3, bucket, &key).await;
            let ids = String::from_utf8_lossy(&body)
                .lines()
                .map(|line| {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    v["id"].as_u64().unwrap()
                })
                .collect();
            self.objects.insert(key, (version, ids));
        }
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for (_, ids) in self.objects.values() {
            for id in ids {
                *counts.entry(*id).or_default() += 1;
            }
        }
        counts
    }
}

/// Counts of every item id among the rows of `table`.
async fn ids_in_table(pg: &tokio_postgres::Client, table: &str) -> HashMap<u64, usize> {
    match pg
        .query(
            &format!("SELECT id, count(*) FROM \"{table}\" GROUP BY id"),
            &[],
        )
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as usize))
            .collect(),
        // Not created yet.
        Err(_) => HashMap::new(),
    }
}

async fn trial(stack: &Stack, produce_for: Duration, outage: Duration) -> TrialResult {
    let started = Instant::now();
    let client = stack.streams().await;
    let stream = unique("chaos");
    client.create(&stream, 4).await.unwrap();
    let bucket = stack.bucket().await;
    let table = unique("chaos").replace('-', "_");
    let redshift = RedshiftDataStandIn::start(Postgres::from_env(), &stack.s3).await;
    // emitters → switch (outage: connection refused) → proxy (500 / 503 SlowDown / 429 on 10% of
    // object PUTs, the Redshift emitter's staged files included) → S3
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
    eprintln!("trial work dir: {}", work.dir.path().display());
    // The S3 emitters use the default key template (`{prefix}{pipeline}/…/{shard}-{first}-{last}`).
    let common = |pipeline: &str, max_age: &str| {
        format!(
            r#"[pipelines.{pipeline}]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", max_records_per_call = 500, shard_sync_interval = "2s" }}
transformer = {{ type = "json_lines" }}
delivery = {{ max_in_flight = 2, max_queued_batches = 4, max_buffered_bytes = "1MiB" }}
retry = {{ base_delay = "50ms", max_delay = "1s" }}
checkpoint = {{ type = "dynamodb", table = "{table}-{pipeline}", endpoint = "{dynamodb}", failover_time = "2s", worker_id = "${{WORKER}}" }}
buffer = {{ max_records = 200, max_bytes = "256KiB", max_age = "{max_age}"{across} }}
"#,
            kinesis = stack.kinesis,
            dynamodb = stack.dynamodb,
            across = if pipeline == "across" {
                ", batch_across_shards = true"
            } else {
                ""
            },
        )
    };
    let config = work.config(&format!(
        r#"state_dir = "${{STATE_DIR}}"
metrics_addr = "127.0.0.1:${{METRICS_PORT}}"
{shard}emitter = {{ type = "s3", bucket = "{bucket}", endpoint = "{s3}" }}

{across}emitter = {{ type = "s3", bucket = "{bucket}", endpoint = "{s3}" }}

{rs}emitter = {{ type = "redshift", cluster_identifier = "local", database = "postgres", db_user = "postgres", endpoint = "{rs_url}", table = "{table}", loaded_files_table = "{table}_loaded", iam_role = "{ROLE}", poll_interval = "10ms", max_poll_interval = "100ms", staging = {{ bucket = "{bucket}", endpoint = "{s3}", prefix = "staged/" }}, columns = [{{ name = "id", type = "BIGINT" }}, {{ name = "pad", type = "VARCHAR(1000)" }}], create_table = true }}
"#,
        shard = common("shard", "300ms"),
        across = common("across", "300ms"),
        // Loads are slower than object writes: fewer, larger batches, still closed by age.
        rs = common("redshift", "1s"),
        s3 = switch.url,
        rs_url = redshift.url,
    ));
    let mut fleet = Fleet {
        work: &work,
        config,
        workers: Vec::new(),
        closes: HashMap::new(),
        instances: 0,
        peak_rss: 0,
        kills: 0,
        hand_offs: 0,
    };
    for pipeline in PIPELINES {
        for i in 1..=3 {
            fleet.start(pipeline, format!("w{i}"));
        }
    }
    let idle_rss = fleet.idle_rss(4.0).await;

    // The producer: ~1 KiB records of 1 to 3 JSON lines (items, each with a unique id), 100 records
    // every 100 ms, for `produce_for`: 125-250 records a second per shard, so most batches close by age.
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
    let step = produce_for / 7;
    fleet.watch(step).await;
    fleet.kill_one_each(1, false).await;
    fleet.watch(step).await;
    client.reshard(&stream, 8).await.unwrap();
    fleet.watch(step).await;
    fleet.hand_off_one_each().await;
    fleet.watch(step).await;
    switch.off().await;
    fleet.watch(outage).await;
    switch.on().await;
    fleet.watch(step).await;
    fleet.kill_one_each(2, true).await;
    fleet.watch(step).await;
    stop.store(true, Ordering::SeqCst);
    let put = producer.await.unwrap();

    // Wait for everything to land in every sink, then stop the workers gracefully.
    let s3 = stack.s3().await;
    let pg = Postgres::from_env().connect("postgres").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut shard_ids, mut across_ids) = (S3Ids::default(), S3Ids::default());
    let counts = loop {
        let counts: BTreeMap<&str, HashMap<u64, usize>> = BTreeMap::from([
            ("shard", shard_ids.counts(&s3, &bucket, "shard/").await),
            ("across", across_ids.counts(&s3, &bucket, "across/").await),
            ("redshift", ids_in_table(&pg, &table).await),
        ]);
        let landed = counts
            .values()
            .all(|c| put.iter().all(|id| c.contains_key(id)));
        if landed || Instant::now() > deadline {
            break counts;
        }
        fleet.watch(Duration::from_secs(2)).await;
    };
    for (p, c) in &counts {
        let missing: Vec<u64> = put
            .iter()
            .copied()
            .filter(|id| !c.contains_key(id))
            .collect();
        if let (Some(first), Some(last)) = (missing.iter().min(), missing.iter().max()) {
            eprintln!(
                "{p}: {} items missing after the wait, ids {first}..={last}, work dir {}",
                missing.len(),
                work.dir.path().display()
            );
        }
    }
    fleet.scrape().await;
    for w in &fleet.workers {
        w.process.terminate();
    }
    for w in &mut fleet.workers {
        let status = tokio::task::block_in_place(|| w.process.wait(Duration::from_secs(60)));
        assert!(
            status.success(),
            "{} worker {} did not shut down cleanly: {status:?}\n{}",
            w.pipeline,
            w.name,
            w.process.log_tail(40)
        );
    }
    for entry in std::fs::read_dir(work.dir.path()).unwrap().flatten() {
        for pipeline in PIPELINES {
            let dead = entry.path().join(format!("{pipeline}.dead-letter.jsonl"));
            assert!(
                !dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty(),
                "retryable failures were dead-lettered: {}",
                dead.display()
            );
        }
    }
    TrialResult {
        put: put.len(),
        held: PIPELINES
            .iter()
            .map(|p| (*p, Held::of(&put, &counts[p])))
            .collect(),
        closed: PIPELINES.iter().map(|p| (*p, fleet.closed(p))).collect(),
        kills: fleet.kills,
        hand_offs: fleet.hand_offs,
        outage,
        injected_faults: faults.load(Ordering::SeqCst),
        idle_rss,
        peak_rss: fleet.peak_rss,
        elapsed: started.elapsed(),
    }
}

/// `a / b / c` of one figure per pipeline.
fn per_pipeline(f: impl Fn(&'static str) -> String) -> String {
    PIPELINES
        .iter()
        .map(|p| f(p))
        .collect::<Vec<_>>()
        .join(" / ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_trials_lose_nothing_and_hold_per_shard_batches_once() {
    let stack = Stack::from_env();
    let trials = env_u64("KC_CHAOS_TRIALS", 2) as usize;
    let outage = Duration::from_secs(env_u64("KC_CHAOS_OUTAGE_SECS", 5));
    let produce_for = Duration::from_secs(env_u64("KC_CHAOS_PRODUCE_SECS", 12))
        .max(outage + Duration::from_secs(6));
    println!(
        "Per sink: S3 per-shard / S3 across shards / Redshift. Closed: all workers of all three pipelines."
    );
    println!(
        "| trial | items put | lost | held twice | closed by count / bytes / age / drain / pressure / at a stored boundary | age-closed per sink | SIGKILLs / SIGTERM hand-offs | reshard 4→8 | S3 outage | injected 500/503/429 | idle worker RSS | peak worker RSS | bound | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut results = BTreeMap::new();
    for t in 1..=trials {
        let r = trial(&stack, produce_for, outage).await;
        let bound = r.idle_rss + CONFIGURED_BUFFERS + GROWTH_ALLOWANCE;
        let all: Vec<String> = (0..REASONS.len())
            .map(|i| {
                let n: f64 = r.closed.values().map(|c| c[i]).sum();
                format!("{n}")
            })
            .collect();
        println!(
            "| {t} | {} | {} | {} | {} | {} | {} / {} | yes | {} s | {} | {:.1} MB | {:.1} MB | {:.1} MB | {:.0} s |",
            r.put,
            per_pipeline(|p| r.held[p].lost.to_string()),
            per_pipeline(|p| r.held[p].twice.to_string()),
            all.join(" / "),
            per_pipeline(|p| r.closed[p][2].to_string()),
            r.kills,
            r.hand_offs,
            r.outage.as_secs(),
            r.injected_faults,
            r.idle_rss as f64 / 1e6,
            r.peak_rss as f64 / 1e6,
            bound as f64 / 1e6,
            r.elapsed.as_secs_f64()
        );
        // Stop at the first trial that loses anything: its work dir (KC_KEEP_WORKDIRS=1) is the evidence.
        for (p, held) in &r.held {
            assert_eq!(held.lost, 0, "trial {t}: {p} lost {} items", held.lost);
        }
        results.insert(t, r);
    }
    for (t, r) in &results {
        for (p, held) in &r.held {
            assert_eq!(held.lost, 0, "trial {t}: {p} lost {} items", held.lost);
            assert!(
                r.closed[p][2] > 0.0,
                "trial {t}: no {p} batch closed by age; the trial does not test what it should"
            );
        }
        for p in ["shard", "redshift"] {
            assert_eq!(
                r.held[p].twice, 0,
                "trial {t}: {p} holds {} items more than once",
                r.held[p].twice
            );
        }
        assert!(r.injected_faults > 0, "trial {t}: no fault was injected");
        let bound = r.idle_rss + CONFIGURED_BUFFERS + GROWTH_ALLOWANCE;
        assert!(
            r.peak_rss <= bound,
            "trial {t}: peak RSS {} over the bound {bound} (idle {})",
            r.peak_rss,
            r.idle_rss
        );
    }
}
