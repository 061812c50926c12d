//! `kinesis-connector streams ...`: the stream client at the command line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use kinesis_connectors_consumer::{PutEntry, StreamClient};
use rand::Rng;

use crate::sample::SampleGenerator;

/// Entries sent per `put_batch` call while streaming input (bounds memory).
const PUT_CHUNK: usize = 5_000;

/// Stream administration commands.
#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// List the streams of the account and region.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if the stream exists, 1 if not.
    Exists {
        /// The stream.
        stream: String,
    },
    /// Show a stream: status, shards (open leaf shards marked), hash-key ranges.
    Describe {
        /// The stream.
        stream: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a stream and wait until it is ACTIVE.
    Create {
        /// The stream.
        stream: String,
        /// Number of shards.
        #[arg(long, default_value_t = 1)]
        shards: i32,
    },
    /// Put records: lines of a file or of stdin, or generated sample events.
    Put {
        /// The stream.
        stream: String,
        /// Read one record per line from this file (`-` for stdin).
        #[arg(long, conflicts_with = "sample")]
        file: Option<PathBuf>,
        /// Put N generated JSON events (~250 bytes each, unique `id`).
        #[arg(long)]
        sample: Option<u64>,
        /// First `id` of generated events.
        #[arg(long, default_value_t = 0, requires = "sample")]
        sample_start: u64,
        /// Seed of generated events.
        #[arg(long, default_value_t = 1, requires = "sample")]
        seed: u64,
        /// Take the partition key from this JSON field (default: random, or `user` for sample events).
        #[arg(long)]
        partition_key_field: Option<String>,
    },
}

/// Runs a streams command; returns the process exit code.
pub async fn run(client: &StreamClient, cmd: StreamsCommand) -> anyhow::Result<i32> {
    match cmd {
        StreamsCommand::List { json } => {
            let names = client.list_streams().await?;
            if json {
                println!("{}", serde_json::to_string(&names)?);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        StreamsCommand::Exists { stream } => {
            let exists = client.exists(&stream).await?;
            println!("{}", if exists { "yes" } else { "no" });
            return Ok(if exists { 0 } else { 1 });
        }
        StreamsCommand::Describe { stream, json } => {
            let d = client.describe(&stream).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let open = d.leaf_shards().len();
                println!(
                    "stream {} ({}), retention {}h, {} shards ({} open)",
                    d.name,
                    d.status,
                    d.retention_hours,
                    d.shards.len(),
                    open
                );
                println!(
                    "{:<24} {:<7} {:<45} {:>7}  HASH KEY RANGE",
                    "SHARD", "STATE", "PARENTS", "KEYS"
                );
                for s in &d.shards {
                    let parents: Vec<&str> = s.parents().collect();
                    println!(
                        "{:<24} {:<7} {:<45} {:>6.2}%  {}..{}",
                        s.shard_id,
                        if s.is_open() { "open" } else { "closed" },
                        if parents.is_empty() {
                            "-".to_owned()
                        } else {
                            parents.join(",")
                        },
                        s.hash_range_fraction() * 100.0,
                        s.starting_hash_key,
                        s.ending_hash_key
                    );
                }
            }
        }
        StreamsCommand::Create { stream, shards } => {
            client.create(&stream, shards).await?;
            println!("created {stream} with {shards} shards");
        }
        StreamsCommand::Put {
            stream,
            file,
            sample,
            sample_start,
            seed,
            partition_key_field,
        } => {
            let put = match (sample, file) {
                (Some(n), _) => {
                    let field = partition_key_field.unwrap_or_else(|| "user".into());
                    let mut generator = SampleGenerator::new(seed, sample_start, 500);
                    let lines = (0..n).map(move |_| Ok(generator.next_event().0));
                    put_lines(client, &stream, lines, Some(&field)).await?
                }
                (None, Some(path)) if path.as_os_str() != "-" => {
                    let f = std::fs::File::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    let lines = std::io::BufReader::new(f).lines();
                    put_lines(client, &stream, lines, partition_key_field.as_deref()).await?
                }
                (None, _) => {
                    let lines = std::io::stdin().lock().lines().collect::<Vec<_>>();
                    put_lines(
                        client,
                        &stream,
                        lines.into_iter(),
                        partition_key_field.as_deref(),
                    )
                    .await?
                }
            };
            let _ = writeln!(std::io::stderr(), "put {put} records into {stream}");
        }
    }
    Ok(0)
}

fn partition_key(line: &str, field: Option<&str>) -> String {
    let from_field = field.and_then(|f| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        match v.get(f)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.chars().take(256).collect()),
            serde_json::Value::Null => None,
            other => Some(other.to_string().chars().take(256).collect()),
        }
    });
    from_field.unwrap_or_else(|| format!("{:032x}", rand::rng().random::<u128>()))
}

async fn put_lines(
    client: &StreamClient,
    stream: &str,
    lines: impl Iterator<Item = std::io::Result<String>>,
    field: Option<&str>,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let mut chunk = Vec::with_capacity(PUT_CHUNK);
    for line in lines {
        let line = line.context("reading input")?;
        if line.is_empty() {
            continue;
        }
        let key = partition_key(&line, field);
        chunk.push(PutEntry {
            data: Bytes::from(line),
            partition_key: key,
            explicit_hash_key: None,
        });
        if chunk.len() == PUT_CHUNK {
            total += client
                .put_batch(stream, std::mem::take(&mut chunk))
                .await?
                .len() as u64;
        }
    }
    if !chunk.is_empty() {
        total += client.put_batch(stream, chunk).await?.len() as u64;
    }
    Ok(total)
}
