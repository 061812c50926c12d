//! Helpers of the side-by-side benchmark (`integration-tests/bench/peers`):
//!
//! * `kinesis-bench fill --endpoint URL --stream S --shards N --records R` — creates the stream and puts
//!   `R` JSON records of about 250 bytes (unique `id`, 100,000 partition keys spread over the shards).
//! * `kinesis-bench drain --endpoint URL --stream S` — the floor: a bare `GetRecords` loop per shard, all
//!   shards at once, with the connector's reader pacing (a call at most every 200 ms, 10,000 records per
//!   call, 1 s after an empty page) until every shard returns an empty page at its tip. Records are
//!   counted and discarded; prints `{"records": N, "calls": C}`. `--decoder sdk` (the default) calls
//!   through the AWS SDK, `--decoder own` through our own decoder (`WireClient`, what
//!   `source.decoder = "own"` uses).
//! * `kinesis-bench delete --endpoint URL --stream S` — deletes the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use kinesis_connectors_consumer::{PutEntry, StreamClient};

/// Records per `GetRecords` call: the API's limit, as the connector's reader asks.
const MAX_RECORDS: i32 = 10_000;
/// Least time between two calls of one shard (5 calls/s), as the connector's reader.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Wait after an empty page that is still behind the tip, as the connector's reader.
const IDLE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Size of each record's JSON text.
const RECORD_BYTES: usize = 250;
/// Records handed to one `put_batch` (it splits them into `PutRecords` calls of 500).
const FILL_CHUNK: u64 = 10_000;
/// `put_batch` calls in flight while filling.
const FILL_CONCURRENCY: usize = 4;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a stream and put the benchmark's records into it.
    Fill {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        stream: String,
        #[arg(long, default_value_t = 8)]
        shards: i32,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
    },
    /// Read every shard from TRIM_HORIZON to its tip, discarding the records.
    Drain {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        stream: String,
        /// `sdk` or `own`.
        #[arg(long, default_value = "sdk")]
        decoder: String,
    },
    /// Delete a stream.
    Delete {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        stream: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Fill {
            endpoint,
            stream,
            shards,
            records,
        } => fill(&endpoint, &stream, shards, records).await,
        Cmd::Drain {
            endpoint,
            stream,
            decoder,
        } => match decoder.as_str() {
            "sdk" => drain(&endpoint, &stream).await,
            "own" => drain_own(&endpoint, &stream).await,
            other => anyhow::bail!("unknown decoder {other:?}; one of: sdk, own"),
        },
        Cmd::Delete { endpoint, stream } => {
            let sdk = kinesis_connectors_aws::sdk_config("us-east-1", Some(&endpoint)).await;
            Client::new(&sdk)
                .delete_stream()
                .stream_name(&stream)
                .send()
                .await?;
            Ok(())
        }
    }
}

/// The JSON text of record `id`: a click event of exactly [`RECORD_BYTES`] bytes.
fn record(id: u64) -> String {
    let user = id % 100_000;
    let kinds = ["page_view", "click", "add_to_cart", "purchase"];
    let kind = kinds[(id % 4) as usize];
    let secs = id % 86_400;
    let mut text = format!(
        r#"{{"id":{id},"event_type":"{kind}","user_id":"u-{user:06}","session":"{session:016x}","ts":"2026-11-25T{h:02}:{m:02}:{s:02}.{ms:03}Z","page":"/products/{page}","amount":{cents}.{c:02},"pad":""#,
        session = id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        h = secs / 3600,
        m = secs / 60 % 60,
        s = secs % 60,
        ms = id % 1000,
        page = id % 5_000,
        cents = id % 500,
        c = id % 100,
    );
    let pad = RECORD_BYTES.saturating_sub(text.len() + 2);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    text
}

async fn fill(endpoint: &str, stream: &str, shards: i32, records: u64) -> anyhow::Result<()> {
    let client = Arc::new(StreamClient::connect("us-east-1", Some(endpoint)).await);
    client
        .create(stream, shards)
        .await
        .with_context(|| format!("creating {stream}"))?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..FILL_CONCURRENCY {
        let (client, next, stream) = (client.clone(), next.clone(), stream.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(FILL_CHUNK, Ordering::SeqCst);
                if from >= records {
                    return anyhow::Ok(());
                }
                let entries: Vec<PutEntry> = (from..(from + FILL_CHUNK).min(records))
                    .map(|id| {
                        PutEntry::new(Bytes::from(record(id)), format!("u-{:06}", id % 100_000))
                    })
                    .collect();
                client.put_batch(&stream, entries).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "filled {stream}: {records} records of {RECORD_BYTES} bytes over {shards} shards in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn drain(endpoint: &str, stream: &str) -> anyhow::Result<()> {
    let client =
        Client::new(&kinesis_connectors_aws::sdk_config("us-east-1", Some(endpoint)).await);
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await?
        .shards
        .unwrap_or_default();
    let records = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for shard in shards {
        let (client, stream) = (client.clone(), stream.to_owned());
        let (records, calls) = (records.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard.shard_id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator;
            let mut next_call = tokio::time::Instant::now();
            while let Some(it) = iterator {
                tokio::time::sleep_until(next_call).await;
                let called_at = tokio::time::Instant::now();
                let page = client
                    .get_records()
                    .shard_iterator(it)
                    .limit(MAX_RECORDS)
                    .send()
                    .await?;
                calls.fetch_add(1, Ordering::Relaxed);
                let n = page.records.len();
                records.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 && page.millis_behind_latest.unwrap_or(0) == 0 {
                    break;
                }
                iterator = page.next_shard_iterator;
                next_call = called_at
                    + if n == 0 {
                        IDLE_POLL_INTERVAL
                    } else {
                        POLL_INTERVAL
                    };
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        r#"{{"records": {}, "calls": {}}}"#,
        records.load(Ordering::SeqCst),
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}

/// [`drain`] on our own decoder: the same loop, pacing and output.
async fn drain_own(endpoint: &str, stream: &str) -> anyhow::Result<()> {
    use kinesis_connectors_consumer::api::{self, IteratorStart};
    let (client, wire) = api::clients("us-east-1", Some(endpoint)).await;
    let wire = Arc::new(wire?);
    let shards = api::list_shards(&client, stream).await?;
    let records = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let stream_id: Arc<str> = Arc::from(stream);
    let mut tasks = Vec::new();
    for shard in shards {
        let (wire, stream_id) = (wire.clone(), stream_id.clone());
        let (records, calls) = (records.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let shard_id: Arc<str> = Arc::from(shard.shard_id.as_str());
            let mut iterator = Some(
                wire.get_shard_iterator(&stream_id, &shard_id, &IteratorStart::TrimHorizon)
                    .await?,
            );
            let mut next_call = tokio::time::Instant::now();
            while let Some(it) = iterator {
                tokio::time::sleep_until(next_call).await;
                let called_at = tokio::time::Instant::now();
                let page = wire
                    .get_records(&it, MAX_RECORDS, &stream_id, &shard_id)
                    .await?;
                calls.fetch_add(1, Ordering::Relaxed);
                let n = page.records.len();
                records.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 && page.millis_behind_latest.unwrap_or(0) == 0 {
                    break;
                }
                iterator = page.next_iterator;
                next_call = called_at
                    + if n == 0 {
                        IDLE_POLL_INTERVAL
                    } else {
                        POLL_INTERVAL
                    };
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        r#"{{"records": {}, "calls": {}}}"#,
        records.load(Ordering::SeqCst),
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_of_the_stated_size() {
        for id in [0, 7, 99_999, 999_999, u64::from(u32::MAX)] {
            let text = record(id);
            assert_eq!(text.len(), RECORD_BYTES, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["id"], id);
        }
    }
}
