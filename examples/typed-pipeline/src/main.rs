//! `click-counts`: counts click events per type from a stream; see the library documentation.

use std::path::PathBuf;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Counts click events per event type, exactly, into STATE_DIR/counts.json.
#[derive(Debug, Parser)]
struct Args {
    /// The stream.
    #[arg(long)]
    stream: String,
    /// The AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// An endpoint override (e.g. a local Kinesis).
    #[arg(long, env = "KINESIS_ENDPOINT")]
    endpoint: Option<String>,
    /// Directory of the checkpoints, the counts and the dead letters.
    #[arg(long, default_value = ".click-counts")]
    state_dir: PathBuf,
    /// Stop once every shard is read to its tip.
    #[arg(long)]
    until_tip: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let counts = example_typed_pipeline::run(
        example_typed_pipeline::Options {
            stream: args.stream,
            region: args.region,
            endpoint: args.endpoint.filter(|e| !e.is_empty()),
            state_dir: args.state_dir,
            until_tip: args.until_tip,
        },
        cancel,
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&counts.by_type)?);
    Ok(())
}
