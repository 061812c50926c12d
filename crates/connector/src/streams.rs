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
    /// Change the number of open shards (UpdateShardCount, uniform scaling; at most double or half per
    /// call) and wait until the stream is ACTIVE.
    Reshard {
        /// The stream.
        stream: String,
        /// The target number of open shards.
        #[arg(long)]
        shards: i32,
    },
    /// Split a shard in two (at the middle of its hash-key range unless `--at` is given).
    Split {
        /// The stream.
        stream: String,
        /// The shard to split.
        shard: String,
        /// The first hash key of the new upper shard.
        #[arg(long)]
        at: Option<String>,
    },
    /// Merge two adjacent shards.
    Merge {
        /// The stream.
        stream: String,
        /// One shard.
        shard: String,
        /// The shard adjacent to it.
        adjacent: String,
    },
    /// Estimate the stream's monthly cost: shard-hours of the open shards and PUT payload units
    /// (25 KB each) of the given traffic.
    Cost {
        /// The stream.
        stream: String,
        /// Records put per second.
        #[arg(long, default_value_t = 0.0)]
        records_per_second: f64,
        /// Average record size in bytes.
        #[arg(long, default_value_t = 1024)]
        average_record_bytes: u64,
        /// Price of a shard-hour (USD).
        #[arg(long, default_value_t = SHARD_HOUR_PRICE)]
        shard_hour_price: f64,
        /// Price of a million PUT payload units (USD).
        #[arg(long, default_value_t = PUT_UNITS_PRICE)]
        put_units_price: f64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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

/// Default price of a shard-hour (USD), from the project's seed; override with `--shard-hour-price`.
pub const SHARD_HOUR_PRICE: f64 = 0.015;
/// Default price of a million PUT payload units (USD); override with `--put-units-price`.
pub const PUT_UNITS_PRICE: f64 = 0.028;
/// Hours in the average month (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Bytes in one PUT payload unit.
pub const PUT_UNIT_BYTES: u64 = 25 * 1024;

/// A monthly cost estimate.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct CostEstimate {
    /// Open shards billed.
    pub open_shards: usize,
    /// Shard-hours in a month.
    pub shard_hours: f64,
    /// Their cost.
    pub shard_cost: f64,
    /// PUT payload units in a month.
    pub put_units: f64,
    /// Their cost.
    pub put_cost: f64,
    /// Both.
    pub total: f64,
}

/// The monthly cost of `open_shards` shards receiving `records_per_second` records of `bytes` bytes.
pub fn estimate_cost(
    open_shards: usize,
    records_per_second: f64,
    bytes: u64,
    shard_hour_price: f64,
    put_units_price: f64,
) -> CostEstimate {
    let shard_hours = open_shards as f64 * HOURS_PER_MONTH;
    let units_per_record = bytes.div_ceil(PUT_UNIT_BYTES).max(1) as f64;
    let put_units = records_per_second * HOURS_PER_MONTH * 3600.0 * units_per_record;
    let shard_cost = shard_hours * shard_hour_price;
    let put_cost = put_units / 1e6 * put_units_price;
    CostEstimate {
        open_shards,
        shard_hours,
        shard_cost,
        put_units,
        put_cost,
        total: shard_cost + put_cost,
    }
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
        StreamsCommand::Reshard { stream, shards } => {
            client.reshard(&stream, shards).await?;
            let open = client.leaf_shards(&stream).await?.len();
            println!("resharded {stream}: {open} open shards");
        }
        StreamsCommand::Split { stream, shard, at } => {
            let info = client
                .shards(&stream)
                .await?
                .into_iter()
                .find(|s| s.shard_id == shard)
                .with_context(|| format!("no shard {shard} in {stream}"))?;
            match at {
                Some(key) => client.split_at(&stream, &shard, &key).await?,
                None => client.split_in_half(&stream, &info).await?,
            }
            println!("split {shard} of {stream}");
        }
        StreamsCommand::Merge {
            stream,
            shard,
            adjacent,
        } => {
            client.merge(&stream, &shard, &adjacent).await?;
            println!("merged {shard} and {adjacent} of {stream}");
        }
        StreamsCommand::Cost {
            stream,
            records_per_second,
            average_record_bytes,
            shard_hour_price,
            put_units_price,
            json,
        } => {
            let open = client.leaf_shards(&stream).await?.len();
            let c = estimate_cost(
                open,
                records_per_second,
                average_record_bytes,
                shard_hour_price,
                put_units_price,
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("stream {stream}: monthly estimate ({HOURS_PER_MONTH} h)");
                println!(
                    "  {} open shards × {:.0} h × ${shard_hour_price}/shard-hour = ${:.2}",
                    c.open_shards, HOURS_PER_MONTH, c.shard_cost
                );
                println!(
                    "  {records_per_second} records/s of {average_record_bytes} B = {:.0} PUT payload units × ${put_units_price}/million = ${:.2}",
                    c.put_units, c.put_cost
                );
                println!("  total ${:.2} per month", c.total);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_of_shard_hours_and_put_units() {
        let c = estimate_cost(4, 1000.0, 1024, SHARD_HOUR_PRICE, PUT_UNITS_PRICE);
        assert!((c.shard_cost - 4.0 * 730.0 * 0.015).abs() < 1e-9);
        // 1,000 records/s of 1 KiB: one unit each, 2,628,000,000 units a month.
        assert!((c.put_units - 2_628_000_000.0).abs() < 1.0);
        assert!((c.put_cost - 2628.0 * 0.028).abs() < 1e-6);
        // 30 KiB records take two units each.
        assert!(
            (estimate_cost(1, 1.0, 30 * 1024, 0.0, 1.0).put_units - 2.0 * 2_628_000.0).abs() < 1.0
        );
    }
}
