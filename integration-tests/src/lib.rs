//! Helpers for the end-to-end tests: the local stack's endpoints, streams with a ledger of what was
//! put, the connector binary as a child process, and readers of what landed.
//!
//! Every test runs against the servers `integration-tests/local-stack up` started; the endpoints come
//! from the variables it prints (`eval "$(integration-tests/local-stack env)"`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod dynamodb;
pub mod fault_proxy;
pub mod opensearch;
pub mod redshift_data;
pub mod s3_long_keys;
pub mod tcp_switch;
pub mod tls_front;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_connectors_consumer::{Checkpoint, FileCheckpointStore, PutEntry, StreamClient};
use kinesis_connectors_core::stages::FileEmitter;
use kinesis_connectors_core::{DeadLetterEntry, FileDeadLetter, SequenceNumber};
use serde_json::Value;

/// Endpoints of the local servers.
#[derive(Clone, Debug)]
pub struct Stack {
    /// Kinesis (ferrokinesis).
    pub kinesis: String,
    /// S3 (s3s-fs).
    pub s3: String,
    /// DynamoDB (dynalite).
    pub dynamodb: String,
    /// OpenSearch API (osmem-server).
    pub opensearch: String,
}

impl Stack {
    /// Reads the endpoints from the environment, or fails with how to start the stack.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: start the local servers with `eval \"$(integration-tests/local-stack up)\"` (or run integration-tests/run-tests)")
            })
        };
        Self {
            kinesis: var("KINESIS_ENDPOINT"),
            s3: var("S3_ENDPOINT"),
            dynamodb: var("DYNAMODB_ENDPOINT"),
            opensearch: var("OPENSEARCH_ENDPOINT"),
        }
    }

    /// An S3 client on the local S3 (path-style, the stack's credentials).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let sdk = kinesis_connectors_aws::sdk_config("us-east-1", Some(&self.s3)).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    }

    /// Creates a bucket with a unique, short name on the local S3 and returns the name. (Short because
    /// s3s-fs keeps each object's metadata in a file named from the base64 of bucket and key, so bucket
    /// plus key must stay under about 175 characters there; real S3 allows 1,024-byte keys.)
    pub async fn bucket(&self) -> String {
        let name = format!("kc{:08x}", rand::random::<u32>());
        self.s3()
            .await
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap();
        name
    }

    /// A DynamoDB client on the local DynamoDB.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(
            &kinesis_connectors_aws::sdk_config("us-east-1", Some(&self.dynamodb)).await,
        )
    }

    /// A stream client on the local Kinesis.
    pub async fn streams(&self) -> StreamClient {
        StreamClient::connect("us-east-1", Some(&self.kinesis)).await
    }
}

impl Stack {
    /// The polling reader's decoder for tests that build a `Worker` themselves: what
    /// `$KC_SOURCE_DECODER` names (`own`, the binary's default, when unset; `sdk`), on the local
    /// Kinesis, so a suite runs on either decoder as the binary's tests do.
    pub async fn decoder(&self) -> kinesis_connectors_consumer::Decoder {
        use kinesis_connectors_consumer::{Decoder, api};
        match std::env::var("KC_SOURCE_DECODER").as_deref() {
            Ok("sdk") => Decoder::Sdk,
            Ok("" | "own") | Err(_) => {
                let (_, wire) = api::clients("us-east-1", Some(&self.kinesis)).await;
                Decoder::Own(std::sync::Arc::new(wire.unwrap()))
            }
            Ok(other) => panic!("KC_SOURCE_DECODER={other:?}: expected own or sdk"),
        }
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{:04x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        rand::random::<u16>()
    )
}

/// What was put: record id → (shard, sequence number).
#[derive(Default, Debug, Clone)]
pub struct Ledger {
    /// Where each id landed.
    pub records: BTreeMap<u64, (String, SequenceNumber)>,
}

impl Ledger {
    /// The highest sequence number put to each shard.
    pub fn last_per_shard(&self) -> HashMap<String, SequenceNumber> {
        let mut last: HashMap<String, SequenceNumber> = HashMap::new();
        for (shard, seq) in self.records.values() {
            let e = last.entry(shard.clone()).or_insert_with(|| seq.clone());
            if seq > e {
                *e = seq.clone();
            }
        }
        last
    }
}

/// A JSON test record: `{"id": n, "key": "...", "n": per-key counter, "pad": "..."}`.
pub fn test_record(id: u64, key: &str, per_key: u64) -> String {
    format!(
        r#"{{"id":{id},"key":"{key}","n":{per_key},"pad":"{}"}}"#,
        "x".repeat(120)
    )
}

/// Puts records `ids` with keys `k-{id % keys}` and returns the ledger. `bad` ids are put as invalid
/// JSON instead.
pub async fn put_records(
    client: &StreamClient,
    stream: &str,
    ids: std::ops::Range<u64>,
    keys: u64,
    bad: &(dyn Fn(u64) -> bool + Sync),
) -> Ledger {
    let entries: Vec<PutEntry> = ids
        .clone()
        .map(|id| {
            let key = format!("k-{}", id % keys);
            let text = if bad(id) {
                format!("not json {{ id {id}")
            } else {
                test_record(id, &key, id / keys)
            };
            PutEntry {
                data: Bytes::from(text),
                partition_key: key,
                explicit_hash_key: None,
            }
        })
        .collect();
    let results = client.put_batch(stream, entries).await.unwrap();
    let mut ledger = Ledger::default();
    for (id, r) in ids.zip(results) {
        ledger.records.insert(
            id,
            (r.shard_id, SequenceNumber::new(r.sequence_number).unwrap()),
        );
    }
    ledger
}

/// Puts `per_put` test records (keys `k-{id % 64}`, ids counting from 0) every `every` until `stop`
/// is set; the ledger holds everything put.
pub fn steady_producer(
    client: StreamClient,
    stream: String,
    per_put: u64,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Ledger> {
    tokio::spawn(async move {
        let mut ledger = Ledger::default();
        let mut next = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let l = put_records(&client, &stream, next..next + per_put, 64, &|_| false).await;
            ledger.records.extend(l.records);
            next += per_put;
            tokio::time::sleep(every).await;
        }
        ledger
    })
}

/// What makes a held-once test's batches close in a way the records alone cannot reproduce (issue 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closes {
    /// By age: `max_records` is never reached on a trickled shard, `max_age` is 700 ms.
    Age,
    /// By memory pressure: `delivery.max_buffered_bytes` (3 KiB) is reached by the shards' buffers
    /// together before any one reaches `buffer.max_bytes` (the same 3 KiB) or its age (1 h), so the
    /// oldest lane is flushed early.
    Pressure,
}

impl Closes {
    /// The pipeline's `buffer` (and `delivery`) lines.
    pub fn buffer_lines(self) -> &'static str {
        match self {
            Self::Age => "buffer = { max_records = 1000, max_age = \"700ms\" }",
            Self::Pressure => {
                "buffer = { max_records = 1000, max_bytes = \"3KiB\", max_age = \"1h\" }\ndelivery = { max_buffered_bytes = \"3KiB\" }"
            }
        }
    }

    /// The `reason` label of `kc_batches_closed_total` these closes count under.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Pressure => "pressure",
        }
    }
}

/// What a held-once test needs (issue 16): a `buffer` that closes as `closes` says, and checkpoints
/// through a slow (400 ms) link to a DynamoDB lease table, so a kill lands between an emit and its
/// checkpoint often (with the file store the window is a few ms and a test would not tell). Returns
/// the link (keep it alive) and the pipeline's `buffer`, `delivery` and `checkpoint` lines for
/// `worker_id`; feed the stream with [`trickle_producer`].
pub async fn closes_with_slow_checkpoints(
    stack: &Stack,
    worker_id: &str,
    closes: Closes,
) -> (fault_proxy::FaultProxy, String) {
    let link = fault_proxy::FaultProxy::slow(&stack.dynamodb, Duration::from_millis(400)).await;
    let lines = format!(
        "{}\ncheckpoint = {{ type = \"dynamodb\", table = \"{}\", endpoint = \"{}\", worker_id = \"{worker_id}\", failover_time = \"3s\" }}",
        closes.buffer_lines(),
        unique("once-leases"),
        link.url
    );
    (link, lines)
}

/// A local port nothing listens on (for `metrics_addr`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `/metrics` page of a worker whose `metrics_addr` is `127.0.0.1:{port}`, if it answers.
pub async fn scrape_metrics(port: u16) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?;
    r.text().await.ok()
}

/// The value of the sample `name` whose labels include every one of `labels`, in a Prometheus text
/// page (label order does not matter).
pub fn metric_value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            let (set, _) = rest.split_once(' ').unwrap_or((rest, ""));
            (set.is_empty() || set.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A producer slow enough that every shard's batches close by age: 7 records every 150 ms, until
/// `halt` is set.
pub fn trickle_producer(
    client: StreamClient,
    stream: String,
    halt: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Ledger> {
    steady_producer(client, stream, 7, Duration::from_millis(150), halt)
}

/// The rows of the demo's summary table (`PIPELINE SINK PUT DELIVERED FILTERED DEAD LANDED EXPECTED
/// MATCH WHERE`): the lines after its header, up to the first blank one.
pub fn demo_summary_rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("PIPELINE"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// Puts `records` records of `lines` JSON lines each (for the `json_lines` transformer: one item per
/// line), keys `k-{record % keys}`. Item `i` of record `r` is the test record of id `r * lines + i`;
/// the ledger maps each item id to its record's shard and sequence number.
pub async fn put_multi_item_records(
    client: &StreamClient,
    stream: &str,
    records: u64,
    lines: u64,
    keys: u64,
) -> Ledger {
    let mut ledger = Ledger::default();
    // A few records per call: each is up to a few hundred KB, a call takes at most 5 MiB.
    for chunk in (0..records).collect::<Vec<_>>().chunks(8) {
        let entries: Vec<PutEntry> = chunk
            .iter()
            .map(|r| {
                let key = format!("k-{}", r % keys);
                let text: Vec<String> = (0..lines)
                    .map(|i| test_record(r * lines + i, &key, r / keys))
                    .collect();
                PutEntry {
                    data: Bytes::from(text.join("\n")),
                    partition_key: key,
                    explicit_hash_key: None,
                }
            })
            .collect();
        let results = client.put_batch(stream, entries).await.unwrap();
        for (r, put) in chunk.iter().zip(results) {
            let seq = SequenceNumber::new(put.sequence_number).unwrap();
            for i in 0..lines {
                ledger
                    .records
                    .insert(r * lines + i, (put.shard_id.clone(), seq.clone()));
            }
        }
    }
    ledger
}

/// A working directory with a configuration for one pipeline.
pub struct Workdir {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Workdir {
    /// A new empty working directory; with `KC_KEEP_WORKDIRS=1` it is left behind (its logs, state
    /// and configuration) for a look after a failure, and its path printed.
    pub fn new() -> Self {
        let keep = std::env::var_os("KC_KEEP_WORKDIRS").is_some_and(|v| v == "1");
        let dir = tempfile::Builder::new()
            .prefix("kc-work-")
            .disable_cleanup(keep)
            .tempdir()
            .unwrap();
        if keep {
            eprintln!("work directory kept: {}", dir.path().display());
        }
        Self { dir }
    }

    /// A path inside it.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `connectors.toml` and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.path("connectors.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The checkpoints of pipeline `p` (in `state/`), shard → checkpoint.
    pub fn checkpoints(&self, p: &str) -> BTreeMap<String, Checkpoint> {
        FileCheckpointStore::read_file(&self.path(&format!("state/{p}.checkpoints.json")))
            .unwrap()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.checkpoint))
            .collect()
    }

    /// Asserts that pipeline `p` checkpointed every shard of `ledger` at the last record put to it.
    pub fn assert_checkpointed_at_last_records(&self, p: &str, ledger: &Ledger) {
        let checkpoints = self.checkpoints(p);
        for (shard, seq) in ledger.last_per_shard() {
            let at = checkpoints
                .get(&shard)
                .and_then(|c| c.position())
                .map(|c| c.sequence.clone());
            assert_eq!(at, Some(seq), "checkpoint of {shard}");
        }
    }

    /// The dead-letter entries of pipeline `p`.
    pub fn dead_letters(&self, p: &str) -> Vec<DeadLetterEntry> {
        FileDeadLetter::read_all(&self.path(&format!("state/{p}.dead-letter.jsonl"))).unwrap()
    }
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

/// The connector binary under test (`kc-under-test`, which cargo builds before this package's tests,
/// next to the `deps/` directory the test binary runs from).
pub fn connector_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(format!("kc-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with cargo build -p integration-tests",
        bin.display()
    );
    bin
}

/// The logs of every connector started in `dir` (see [`Connector::start`]), one after the other.
pub fn connector_logs(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(LOG_PREFIX)
        {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

/// How [`Connector::start`] names its log files in the working directory.
const LOG_PREFIX: &str = "connector-";

/// A running `kinesis-connector run`.
pub struct Connector {
    child: Child,
    log: Option<PathBuf>,
}

impl Connector {
    /// Starts `run --config CONFIG --pipeline P EXTRA...` in `dir`, with `env` added.
    pub fn start(
        dir: &Path,
        config: &Path,
        pipeline: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        Self::start_bin(&connector_bin(), dir, config, pipeline, extra, env)
    }

    /// Like [`Connector::start`] with another binary built on `main_with` (e.g. one that registers
    /// custom stages).
    pub fn start_bin(
        bin: &Path,
        dir: &Path,
        config: &Path,
        pipeline: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--config"])
            .arg(config)
            .args(["--pipeline", pipeline])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Quiet by default (logs go to a file in the working directory); KC_TEST_LOGS=1 shows them.
        let log = std::env::var_os("KC_TEST_LOGS").is_none().then(|| {
            static RUN: AtomicU32 = AtomicU32::new(0);
            let log = dir.join(format!(
                "{LOG_PREFIX}{}.log",
                RUN.fetch_add(1, Ordering::SeqCst)
            ));
            cmd.stderr(std::fs::File::create(&log).unwrap());
            log
        });
        Self {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// Its log so far (empty when `KC_TEST_LOGS` sent it to the terminal).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs to completion (`--until-tip` runs end by themselves) and asserts success.
    pub fn run_until_tip(dir: &Path, config: &Path, pipeline: &str, env: &[(&str, String)]) {
        Self::run_bin_until_tip(&connector_bin(), dir, config, pipeline, env);
    }

    /// [`Connector::run_until_tip`] with another binary built on `main_with`.
    pub fn run_bin_until_tip(
        bin: &Path,
        dir: &Path,
        config: &Path,
        pipeline: &str,
        env: &[(&str, String)],
    ) {
        let mut c = Self::start_bin(bin, dir, config, pipeline, &["--until-tip"], env);
        let status = c.wait(Duration::from_secs(120));
        assert!(
            status.success(),
            "connector failed: {status:?}\n{}",
            c.log_tail(30)
        );
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "connector did not exit within {timeout:?}\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// One line of the file emitter's `envelope` format.
#[derive(Clone, Debug)]
pub struct Landed {
    /// The shard.
    pub shard: String,
    /// The sequence number.
    pub sequence: SequenceNumber,
    /// The partition key.
    pub partition_key: String,
    /// The JSON document.
    pub data: Value,
}

impl Landed {
    /// The test record's id.
    pub fn id(&self) -> u64 {
        self.data["id"].as_u64().unwrap()
    }
}

/// Every envelope line written under `dir` (files in order, lines in order). Tolerates a torn last
/// line (a process killed mid-write never acknowledged it).
pub fn read_landed(dir: &Path) -> Vec<Landed> {
    let Ok(files) = FileEmitter::files(dir, "out") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            out.push(Landed {
                shard: v["shard"].as_str().unwrap().to_owned(),
                sequence: SequenceNumber::new(v["sequence"].as_str().unwrap()).unwrap(),
                partition_key: v["partition_key"].as_str().unwrap().to_owned(),
                data: v["data"].clone(),
            });
        }
    }
    out
}

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test; returns its `http://` URL.
pub async fn serve_local(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Serves an extra in-process Kinesis (ferrokinesis) on a free port, for tests that need other server
/// settings than the shared stack's (e.g. a short iterator lifetime). Returns its URL.
pub async fn private_kinesis(options: ferrokinesis::store::StoreOptions) -> String {
    let (app, _store) = ferrokinesis::create_app(options);
    serve_local(app).await
}

/// Every key under `prefix` in `bucket`, in the order the server lists them, over all pages; with
/// `page`, pages of at most that many keys (each page is checked to hold no more).
pub async fn s3_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    page: Option<i32>,
) -> Vec<String> {
    s3_listing(client, bucket, prefix, page)
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// [`s3_keys`] with each object's version (`ETag/size`: either alone may be missing or equal).
pub async fn s3_listing(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    page: Option<i32>,
) -> Vec<(String, String)> {
    let mut objects = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_max_keys(page)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        if let Some(page) = page {
            assert!(
                out.contents().len() <= page as usize,
                "a page over {page} keys"
            );
        }
        objects.extend(out.contents().iter().filter_map(|o| {
            let version = format!(
                "{}/{}",
                o.e_tag().unwrap_or_default(),
                o.size().unwrap_or_default()
            );
            Some((o.key()?.to_owned(), version))
        }));
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    objects
}

/// The body of the object `key` in `bucket`.
pub async fn s3_body(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// Every object under `prefix` in `bucket`: (key, body), keys in lexicographic order (all pages).
pub async fn s3_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut keys = s3_keys(client, bucket, prefix, None).await;
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let body = s3_body(client, bucket, &k).await;
        out.push((k, body));
    }
    out
}

/// Polls the async `f` every 50 ms until it gives a value (asserting it does within `timeout`);
/// returns the value and the time it took.
pub async fn poll<T>(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `condition` every 50 ms until it holds, failing after `timeout` with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A file-emitter pipeline named `p` reading `stream`, writing envelopes to `out/` with prefix `out`,
/// state in `state/`. `extra` is appended inside the pipeline table (TOML lines).
pub fn file_pipeline(stream: &str, kinesis: &str, extra: &str) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "1s" }}
transformer = {{ type = "json" }}
emitter = {{ type = "file", dir = "${{OUT_DIR:-out}}", prefix = "out", format = "envelope" }}
{extra}
"#
    )
}
