//! `connectors.toml`: loading, `${ENV}` interpolation, and validation into types the runner uses.
//!
//! Every mistake is reported before anything starts, as `FILE: pipeline "NAME": key "KEY": what is
//! wrong`. Unknown keys are errors. Durations are strings (`"30s"`), sizes strings (`"5MiB"`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kinesis_connectors_consumer::reader::{
    DEFAULT_IDLE_POLL_INTERVAL, DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_FETCHED_BYTES,
    DEFAULT_POLL_INTERVAL,
};
use kinesis_connectors_consumer::{
    DEFAULT_SHARD_SYNC_INTERVAL, InitialPosition, ReaderKind, ReaderSettings, api,
};
use kinesis_connectors_core::{
    BufferLimits, DEFAULT_MAX_AGE, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUED_BATCHES, DEFAULT_MAX_RECORDS, Filter, Item,
    PipelineSettings, RetryPolicy, SequenceNumber, Transformer,
};
use serde::Deserialize;

use crate::interpolate::expand_tree;
use crate::keys::{Key, keys_of};
use crate::registry::{
    DeadLetterBuild, EmitterBuild, OptionError, Registry, StageContext, StageKind,
};
use kinesis_connectors_core::units::{ByteSize, DurationText};

/// Default directory for checkpoints and dead letters when a pipeline names no paths.
pub const DEFAULT_STATE_DIR: &str = ".kinesis-connector";
/// Default bound on a graceful shutdown (stop fetching, flush, deliver, checkpoint).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default AWS region when neither the pipeline nor `AWS_REGION` names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A configuration mistake, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: String,
    /// The pipeline, if the mistake is inside one.
    pub pipeline: Option<String>,
    /// The dotted key, if known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = &self.pipeline {
            write!(f, ": pipeline {p:?}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key {k:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    state_dir: Option<PathBuf>,
    metrics_addr: Option<String>,
    #[serde(default)]
    pipelines: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineToml {
    description: Option<String>,
    source: SourceToml,
    transformer: Option<toml::Table>,
    #[serde(default)]
    filters: Vec<toml::Table>,
    #[serde(default)]
    buffer: BufferToml,
    emitter: toml::Table,
    #[serde(default)]
    retry: RetryToml,
    #[serde(default)]
    delivery: DeliveryToml,
    dead_letter: Option<toml::Table>,
    checkpoint: Option<CheckpointToml>,
    shutdown_timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceToml {
    stream: String,
    region: Option<String>,
    endpoint: Option<String>,
    start_position: Option<toml::Value>,
    reader: Option<String>,
    consumer_name: Option<String>,
    max_records_per_call: Option<i64>,
    poll_interval: Option<DurationText>,
    idle_poll_interval: Option<DurationText>,
    shard_sync_interval: Option<DurationText>,
    max_concurrent_requests: Option<i64>,
    max_fetched_bytes: Option<ByteSize>,
    decoder: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BufferToml {
    max_records: Option<i64>,
    max_bytes: Option<ByteSize>,
    max_age: Option<DurationText>,
    batch_across_shards: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryToml {
    base_delay: Option<DurationText>,
    max_delay: Option<DurationText>,
    max_attempts: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryToml {
    max_in_flight: Option<i64>,
    max_queued_batches: Option<i64>,
    max_buffered_bytes: Option<ByteSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointToml {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
    table: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    failover_time: Option<DurationText>,
    max_leases: Option<i64>,
    worker_id: Option<String>,
}

/// Where a pipeline reads from.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// The stream.
    pub stream: String,
    /// The AWS region.
    pub region: String,
    /// An endpoint override (a local emulator), if any.
    pub endpoint: Option<String>,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// How shards are polled.
    pub reader: ReaderSettings,
    /// Polling or enhanced fan-out.
    pub reader_kind: ReaderKind,
    /// Time between shard discoveries.
    pub shard_sync_interval: Duration,
    /// Who sends and decodes the polling reader's `GetShardIterator` and `GetRecords`.
    pub decoder: SourceDecoder,
}

/// Who sends and decodes the polling reader's `GetShardIterator` and `GetRecords` calls
/// (`source.decoder`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceDecoder {
    /// Our own calls and decoder (`"own"`, the default).
    #[default]
    Own,
    /// The AWS SDK (`"sdk"`), the reference path.
    Sdk,
}

/// The environment variable naming the decoder of pipelines whose `source.decoder` is not set.
pub const DECODER_ENV: &str = "KC_SOURCE_DECODER";

/// Where a pipeline keeps its checkpoints and leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointSpec {
    /// The embedded file store (one process).
    File {
        /// The store's JSON file.
        path: PathBuf,
    },
    /// The DynamoDB lease table (several processes share the shards).
    DynamoDb {
        /// The table (created if missing).
        table: String,
        /// Its region.
        region: String,
        /// An endpoint override (a local emulator).
        endpoint: Option<String>,
    },
}

/// How this process takes part in leasing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSpec {
    /// A lease whose counter has not moved for this long is taken over.
    pub failover_time: Duration,
    /// Most unfinished shards this process holds.
    pub max_leases: Option<usize>,
    /// This process's name in the lease table (default: host, pid and a random suffix).
    pub worker_id: Option<String>,
}

/// One validated pipeline.
pub struct PipelineSpec {
    /// The pipeline's name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Where it reads.
    pub source: SourceSpec,
    /// The transformer's type name.
    pub transformer_type: String,
    /// The transformer.
    pub transformer: Arc<dyn Transformer<Item>>,
    /// The filters, in order.
    pub filters: Vec<Arc<dyn Filter<Item>>>,
    /// The emitter's type name.
    pub emitter_type: String,
    /// Builds the emitter (taken by `run`).
    pub emitter: Option<EmitterBuild>,
    /// Whether a redelivered record is held once in the sink (README, "Delivery guarantees").
    pub delivery: crate::guarantee::Delivery,
    /// The dead-letter target's type name.
    pub dead_letter_type: String,
    /// Builds the dead-letter target (taken by `run`).
    pub dead_letter: Option<DeadLetterBuild>,
    /// Batching, retries, bounds.
    pub settings: PipelineSettings,
    /// The checkpoint store.
    pub checkpoint: CheckpointSpec,
    /// Lease timing.
    pub leases: LeaseSpec,
    /// Bound on a graceful shutdown.
    pub shutdown_timeout: Duration,
}

/// A validated configuration file.
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Directory for local state.
    pub state_dir: PathBuf,
    /// Where `/metrics`, `/health` and `/ready` are served (off when `None`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The pipelines by name.
    pub pipelines: BTreeMap<String, PipelineSpec>,
}

impl Config {
    /// Loads and validates `path`, interpolating `${ENV}` from the process environment.
    pub fn load(path: &Path, registry: &Registry) -> Result<Self, ConfigError> {
        Self::load_with_env(path, registry, &|name| std::env::var(name).ok())
    }

    /// Loads and validates `path` with a given environment.
    pub fn load_with_env(
        path: &Path,
        registry: &Registry,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            pipeline: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text, registry, env).map(|mut c| {
            c.path = path.to_path_buf();
            c
        })
    }

    /// Validates configuration text; `file` names it in errors.
    pub fn parse(
        file: &str,
        text: &str,
        registry: &Registry,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let err = |pipeline: Option<&str>, key: Option<String>, message: String| ConfigError {
            file: file.to_owned(),
            pipeline: pipeline.map(str::to_owned),
            key,
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            err(
                None,
                None,
                format!("invalid TOML: {}", e.to_string().trim()),
            )
        })?;
        let mut root = toml::Value::Table(table);
        expand_tree(&mut root, "", env).map_err(|(key, msg)| {
            // key is e.g. pipelines.p.emitter.password: attribute it to its pipeline
            match key
                .strip_prefix("pipelines.")
                .and_then(|k| k.split_once('.'))
            {
                Some((p, k)) => err(Some(p), Some(k.to_owned()), msg),
                None => err(None, Some(key), msg),
            }
        })?;
        let parsed: FileToml = crate::registry::parse_options(root).map_err(|e| {
            if e.key.is_empty() {
                return err(None, None, e.message);
            }
            match e
                .key
                .strip_prefix("pipelines.")
                .and_then(|k| k.split_once('.'))
            {
                Some((p, k)) => err(Some(p), Some(k.to_owned()), e.message),
                None => err(None, Some(e.key), e.message),
            }
        })?;
        if parsed.pipelines.is_empty() {
            return Err(err(
                None,
                Some("pipelines".into()),
                "no pipelines defined; add a [pipelines.NAME] table".into(),
            ));
        }
        let state_dir = parsed
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let metrics_addr = match parsed.metrics_addr.as_deref() {
            None | Some("") => None,
            Some(a) => Some(a.parse().map_err(|_| {
                err(
                    None,
                    Some("metrics_addr".into()),
                    format!("invalid address {a:?}: expected HOST:PORT such as \"0.0.0.0:9090\""),
                )
            })?),
        };
        let mut pipelines = BTreeMap::new();
        for (name, value) in parsed.pipelines {
            let spec = validate_pipeline(&name, value, &state_dir, registry, env)
                .map_err(|(key, message)| err(Some(&name), key, message))?;
            pipelines.insert(name, spec);
        }
        Ok(Self {
            path: PathBuf::from(file),
            state_dir,
            metrics_addr,
            pipelines,
        })
    }
}

/// Every key a configuration file accepts, by section, read from the types that parse it (see
/// [`crate::keys`]): `file` (the top level), `pipeline` (a `[pipelines.NAME]` table) and, for each stage
/// registered in `registry`, `KIND NAME` (e.g. `emitter s3`, `filter field`) with the keys of its table
/// besides `type`. The configuration reference is checked against these by a test.
pub fn reference_keys(registry: &Registry) -> Vec<(String, Vec<Key>)> {
    let mut sections = vec![
        ("file".to_owned(), keys_of::<FileToml>()),
        ("pipeline".to_owned(), keys_of::<PipelineToml>()),
    ];
    for (kind, label) in [
        (StageKind::Transformer, "transformer"),
        (StageKind::Filter, "filter"),
        (StageKind::Emitter, "emitter"),
        (StageKind::DeadLetter, "dead_letter"),
    ] {
        for name in registry.names(kind) {
            let keys = registry.option_keys(kind, name).unwrap_or_default();
            sections.push((format!("{label} {name}"), keys));
        }
    }
    sections
}

type Invalid = (Option<String>, String);

fn at(key: &str, message: impl Into<String>) -> Invalid {
    (Some(key.to_owned()), message.into())
}

fn stage_error(prefix: &str, e: OptionError) -> Invalid {
    let e = e.within(prefix);
    (Some(e.key), e.message)
}

fn validate_pipeline(
    name: &str,
    value: toml::Value,
    state_dir: &Path,
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PipelineSpec, Invalid> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            None,
            format!("invalid pipeline name {name:?}: use letters, digits, '-' and '_'"),
        ));
    }
    let p: PipelineToml = crate::registry::parse_options(value)
        .map_err(|e| ((!e.key.is_empty()).then_some(e.key), e.message))?;
    let source = validate_source(p.source, name, env)?;
    let ctx = StageContext {
        pipeline: name.to_owned(),
        state_dir: state_dir.to_path_buf(),
        region: source.region.clone(),
    };

    let transformer_table = p.transformer.unwrap_or_else(|| {
        let mut t = toml::Table::new();
        t.insert("type".into(), toml::Value::String("raw".into()));
        t
    });
    let transformer_type = transformer_table
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let transformer = registry
        .build_transformer(&ctx, transformer_table)
        .map_err(|e| stage_error("transformer", e))?;
    let filters = p
        .filters
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            registry
                .build_filter(&ctx, t)
                .map_err(|e| stage_error(&format!("filters[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let delivery = crate::guarantee::delivery(
        p.emitter
            .get("type")
            .and_then(toml::Value::as_str)
            .unwrap_or_default(),
        &p.emitter,
        p.buffer.batch_across_shards.unwrap_or(false),
    );
    let (emitter_type, emitter) = registry
        .prepare_emitter(&ctx, p.emitter)
        .map_err(|e| stage_error("emitter", e))?;
    let dead_letter_table = p.dead_letter.unwrap_or_else(|| {
        let mut t = toml::Table::new();
        t.insert("type".into(), toml::Value::String("file".into()));
        let path = state_dir.join(format!("{name}.dead-letter.jsonl"));
        t.insert(
            "path".into(),
            toml::Value::String(path.display().to_string()),
        );
        t
    });
    let (dead_letter_type, dead_letter) = registry
        .prepare_dead_letter(&ctx, dead_letter_table)
        .map_err(|e| stage_error("dead_letter", e))?;

    let b = p.buffer;
    let max_records = positive(
        b.max_records,
        DEFAULT_MAX_RECORDS as i64,
        "buffer.max_records",
    )? as usize;
    let max_bytes = b.max_bytes.map_or(DEFAULT_MAX_BYTES as u64, |s| s.0);
    if max_bytes == 0 {
        return Err(at("buffer.max_bytes", "must be at least 1 byte"));
    }
    let max_age = b.max_age.map_or(DEFAULT_MAX_AGE, |d| d.0);
    if max_age.is_zero() {
        return Err(at("buffer.max_age", "must be longer than 0s"));
    }
    let retry = validate_retry(p.retry)?;
    let d = p.delivery;
    let max_buffered_bytes = d
        .max_buffered_bytes
        .map_or(DEFAULT_MAX_BUFFERED_BYTES as u64, |s| s.0);
    if max_buffered_bytes < max_bytes {
        return Err(at(
            "delivery.max_buffered_bytes",
            format!("must be at least buffer.max_bytes ({max_bytes} bytes)"),
        ));
    }
    let settings = PipelineSettings {
        buffer: BufferLimits {
            max_records,
            max_bytes: max_bytes as usize,
            max_age,
        },
        retry,
        max_in_flight: positive(
            d.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT as i64,
            "delivery.max_in_flight",
        )? as usize,
        max_queued_batches: positive(
            d.max_queued_batches,
            DEFAULT_MAX_QUEUED_BATCHES as i64,
            "delivery.max_queued_batches",
        )? as usize,
        max_buffered_bytes: max_buffered_bytes as usize,
        batch_across_shards: b.batch_across_shards.unwrap_or(false),
        ..PipelineSettings::default()
    };
    let (checkpoint, leases) = validate_checkpoint(p.checkpoint, name, state_dir, &source.region)?;
    let shutdown_timeout = p.shutdown_timeout.map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0);
    if shutdown_timeout.is_zero() {
        return Err(at("shutdown_timeout", "must be longer than 0s"));
    }
    Ok(PipelineSpec {
        name: name.to_owned(),
        description: p.description,
        source,
        transformer_type,
        transformer,
        filters,
        emitter_type,
        emitter: Some(emitter),
        delivery,
        dead_letter_type,
        dead_letter: Some(dead_letter),
        settings,
        checkpoint,
        leases,
        shutdown_timeout,
    })
}

fn validate_checkpoint(
    c: Option<CheckpointToml>,
    name: &str,
    state_dir: &Path,
    region: &str,
) -> Result<(CheckpointSpec, LeaseSpec), Invalid> {
    let default_path = || state_dir.join(format!("{name}.checkpoints.json"));
    let Some(c) = c else {
        let leases = LeaseSpec {
            failover_time: kinesis_connectors_consumer::DEFAULT_FAILOVER_TIME,
            max_leases: None,
            worker_id: None,
        };
        return Ok((
            CheckpointSpec::File {
                path: default_path(),
            },
            leases,
        ));
    };
    let failover_time = c
        .failover_time
        .map_or(kinesis_connectors_consumer::DEFAULT_FAILOVER_TIME, |d| d.0);
    if failover_time < Duration::from_millis(500) {
        return Err(at("checkpoint.failover_time", "must be at least 500ms"));
    }
    let max_leases = match c.max_leases {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            return Err(at(
                "checkpoint.max_leases",
                format!("must be at least 1, got {n}"),
            ));
        }
    };
    let leases = LeaseSpec {
        failover_time,
        max_leases,
        worker_id: c.worker_id.filter(|w| !w.is_empty()),
    };
    let spec = match c.kind.as_str() {
        "file" => {
            for (key, set) in [
                ("table", c.table.is_some()),
                ("region", c.region.is_some()),
                ("endpoint", c.endpoint.is_some()),
            ] {
                if set {
                    return Err(at(
                        &format!("checkpoint.{key}"),
                        "only for type = \"dynamodb\"",
                    ));
                }
            }
            CheckpointSpec::File {
                path: c.path.unwrap_or_else(default_path),
            }
        }
        "dynamodb" => {
            if c.path.is_some() {
                return Err(at("checkpoint.path", "only for type = \"file\""));
            }
            let table = c
                .table
                .ok_or_else(|| at("checkpoint.table", "required for type = \"dynamodb\""))?;
            let valid = (3..=255).contains(&table.len())
                && table
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
            if !valid {
                return Err(at(
                    "checkpoint.table",
                    format!("invalid table name {table:?}: 3-255 letters, digits, '_', '-', '.'"),
                ));
            }
            let endpoint = match c.endpoint {
                Some(e) if e.is_empty() => None,
                Some(e) if e.starts_with("http://") || e.starts_with("https://") => Some(e),
                Some(e) => {
                    return Err(at(
                        "checkpoint.endpoint",
                        format!("invalid endpoint {e:?}: expected an http:// or https:// URL"),
                    ));
                }
                None => None,
            };
            CheckpointSpec::DynamoDb {
                table,
                region: c.region.unwrap_or_else(|| region.to_owned()),
                endpoint,
            }
        }
        other => {
            return Err(at(
                "checkpoint.type",
                format!("unknown checkpoint store {other:?}; one of: file, dynamodb"),
            ));
        }
    };
    Ok((spec, leases))
}

fn positive(v: Option<i64>, default: i64, key: &str) -> Result<i64, Invalid> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(n),
        Some(n) => Err(at(key, format!("must be at least 1, got {n}"))),
    }
}

fn validate_retry(r: RetryToml) -> Result<RetryPolicy, Invalid> {
    let default = RetryPolicy::default();
    let base_delay = r.base_delay.map_or(default.base_delay, |d| d.0);
    let max_delay = r.max_delay.map_or(default.max_delay, |d| d.0);
    if base_delay.is_zero() {
        return Err(at("retry.base_delay", "must be longer than 0s"));
    }
    if max_delay < base_delay {
        return Err(at(
            "retry.max_delay",
            "must not be shorter than retry.base_delay",
        ));
    }
    let max_attempts = match r.max_attempts {
        None => None,
        Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(at(
                "retry.max_attempts",
                format!("must be at least 1 (omit it to retry without limit), got {n}"),
            ));
        }
    };
    Ok(RetryPolicy {
        base_delay,
        max_delay,
        max_attempts,
    })
}

fn validate_source(
    s: SourceToml,
    pipeline: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SourceSpec, Invalid> {
    let stream_ok = !s.stream.is_empty()
        && s.stream.len() <= 128
        && s.stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !stream_ok {
        return Err(at(
            "source.stream",
            format!(
                "invalid stream name {:?}: 1-128 letters, digits, '_', '.', '-'",
                s.stream
            ),
        ));
    }
    let region = s
        .region
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(at("source.region", format!("invalid region {region:?}")));
    }
    let endpoint = match s.endpoint {
        Some(e) if e.is_empty() => None,
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => Some(e),
        Some(e) => {
            return Err(at(
                "source.endpoint",
                format!("invalid endpoint {e:?}: expected an http:// or https:// URL"),
            ));
        }
        None => None,
    };
    let initial_position = match s.start_position {
        None => InitialPosition::TrimHorizon,
        Some(v) => start_position(v)?,
    };
    let reader_kind = match s.reader.as_deref() {
        None | Some("polling") => {
            if s.consumer_name.is_some() {
                return Err(at("source.consumer_name", "only for reader = \"fan_out\""));
            }
            ReaderKind::Polling
        }
        Some("fan_out") => {
            let name = s.consumer_name.unwrap_or_else(|| pipeline.to_owned());
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(at(
                    "source.consumer_name",
                    format!("invalid consumer name {name:?}: 1-128 letters, digits, '_', '.', '-'"),
                ));
            }
            ReaderKind::FanOut {
                consumer_name: name,
            }
        }
        Some(other) => {
            return Err(at(
                "source.reader",
                format!("unknown reader {other:?}; one of: polling, fan_out"),
            ));
        }
    };
    let max_records = match s.max_records_per_call {
        None => api::GET_RECORDS_MAX_LIMIT,
        Some(n) if (1..=i64::from(api::GET_RECORDS_MAX_LIMIT)).contains(&n) => n as i32,
        Some(n) => {
            return Err(at(
                "source.max_records_per_call",
                format!("must be 1..=10000 (the GetRecords limit), got {n}"),
            ));
        }
    };
    let min_interval = Duration::from_secs(1) / api::GET_RECORDS_PER_SHARD_PER_SECOND;
    let poll_interval = s.poll_interval.map_or(DEFAULT_POLL_INTERVAL, |d| d.0);
    if poll_interval < min_interval {
        return Err(at(
            "source.poll_interval",
            format!(
                "must be at least {min_interval:?}: Kinesis allows 5 GetRecords calls per shard per second"
            ),
        ));
    }
    let idle_poll_interval = s
        .idle_poll_interval
        .map_or(DEFAULT_IDLE_POLL_INTERVAL.max(poll_interval), |d| d.0);
    if idle_poll_interval < poll_interval {
        return Err(at(
            "source.idle_poll_interval",
            "must not be shorter than source.poll_interval",
        ));
    }
    let shard_sync_interval = s
        .shard_sync_interval
        .map_or(DEFAULT_SHARD_SYNC_INTERVAL, |d| d.0);
    if shard_sync_interval < Duration::from_secs(1) {
        return Err(at("source.shard_sync_interval", "must be at least 1s"));
    }
    let max_concurrent_requests = match s.max_concurrent_requests {
        None => DEFAULT_MAX_CONCURRENT_REQUESTS,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            return Err(at(
                "source.max_concurrent_requests",
                format!("must be 1..=10000, got {n}"),
            ));
        }
    };
    let max_fetched_bytes = s
        .max_fetched_bytes
        .map_or(DEFAULT_MAX_FETCHED_BYTES, |b| b.0 as usize);
    if max_fetched_bytes < 1024 * 1024 {
        return Err(at(
            "source.max_fetched_bytes",
            "must be at least 1MiB (a GetRecords page may hold up to 10 MiB; a smaller budget only waits for the whole of it)",
        ));
    }
    // The file's key wins; the environment variable only changes the default.
    let (decoder, from) = match s.decoder {
        Some(_) if matches!(reader_kind, ReaderKind::FanOut { .. }) => {
            return Err(at(
                "source.decoder",
                "only for reader = \"polling\" (enhanced fan-out reads through the SDK)",
            ));
        }
        Some(d) => (Some(d), ""),
        None => (env(DECODER_ENV), " (from $KC_SOURCE_DECODER)"),
    };
    let decoder = match decoder.as_deref() {
        None | Some("" | "own") => SourceDecoder::Own,
        Some("sdk") => SourceDecoder::Sdk,
        Some(other) => {
            return Err(at(
                "source.decoder",
                format!("unknown decoder {other:?}{from}; one of: own, sdk"),
            ));
        }
    };
    Ok(SourceSpec {
        stream: s.stream,
        region,
        endpoint,
        initial_position,
        reader: ReaderSettings {
            max_records,
            poll_interval,
            idle_poll_interval,
            max_concurrent_requests,
            max_fetched_bytes,
            ..ReaderSettings::default()
        },
        shard_sync_interval,
        reader_kind,
        decoder,
    })
}

const START_HELP: &str = "use \"trim_horizon\", \"latest\", { at_timestamp = \"2026-01-01T00:00:00Z\" }, { at_sequence = { SHARD = \"SEQ\" } } or { after_sequence = { SHARD = \"SEQ\" } }";

fn start_position(v: toml::Value) -> Result<InitialPosition, Invalid> {
    let key = "source.start_position";
    match v {
        toml::Value::String(s) => match s.as_str() {
            "trim_horizon" => Ok(InitialPosition::TrimHorizon),
            "latest" => Ok(InitialPosition::Latest),
            other => Err(at(
                key,
                format!("unknown start position {other:?}; {START_HELP}"),
            )),
        },
        toml::Value::Table(t) if t.len() == 1 => {
            let (k, v) = t.into_iter().next().ok_or_else(|| at(key, START_HELP))?;
            let sub = format!("{key}.{k}");
            match k.as_str() {
                "at_timestamp" => {
                    let text = match v {
                        toml::Value::String(s) => s,
                        toml::Value::Datetime(d) => d.to_string(),
                        _ => {
                            return Err(at(
                                &sub,
                                "expected an RFC 3339 time such as \"2026-01-01T00:00:00Z\"",
                            ));
                        }
                    };
                    DateTime::parse_from_rfc3339(&text)
                        .map(|t| InitialPosition::AtTimestamp(t.with_timezone(&Utc)))
                        .map_err(|e| at(&sub, format!("invalid time {text:?}: {e}")))
                }
                "at_sequence" | "after_sequence" => {
                    let toml::Value::Table(map) = v else {
                        return Err(at(&sub, "expected a table of shard id = sequence number"));
                    };
                    let mut out = BTreeMap::new();
                    for (shard, seq) in map {
                        let text = seq.as_str().ok_or_else(|| {
                            at(
                                &format!("{sub}.{shard}"),
                                "expected a sequence number string",
                            )
                        })?;
                        let seq = SequenceNumber::new(text)
                            .map_err(|e| at(&format!("{sub}.{shard}"), e.to_string()))?;
                        out.insert(shard, seq);
                    }
                    Ok(if k == "at_sequence" {
                        InitialPosition::AtSequence(out)
                    } else {
                        InitialPosition::AfterSequence(out)
                    })
                }
                other => Err(at(
                    &format!("{key}.{other}"),
                    format!("unknown start position; {START_HELP}"),
                )),
            }
        }
        _ => Err(at(key, START_HELP)),
    }
}
