//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kinesis_connectors_consumer::StreamClient;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::registry::Registry;
use crate::run::{RunOptions, run_pipeline};
use crate::streams::{self, StreamsCommand};

/// Exit code of a configuration or usage error.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code of a runtime failure.
pub const EXIT_FAILURE: i32 = 1;

/// Reads Kinesis streams into S3, DynamoDB, Redshift, Elasticsearch and files, at least once.
#[derive(Debug, Parser)]
#[command(name = "kinesis-connector", version)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Re-inject a pipeline's dead-lettered records (after fixing what made them fail).
    Replay {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The pipeline.
        #[arg(long, short)]
        pipeline: String,
        /// Into the source stream (read again like new records), or straight through the pipeline.
        #[arg(long, value_enum, default_value = "stream")]
        into: crate::replay::ReplayInto,
    },
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one pipeline of a configuration until stopped (SIGINT/SIGTERM).
    Run {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The pipeline to run.
        #[arg(long, short)]
        pipeline: String,
        /// Stop once every shard is read to its tip and everything read is delivered.
        #[arg(long)]
        until_tip: bool,
    },
    /// Validate a configuration without starting anything; exit 2 on the first mistake. Then probe each
    /// pipeline's sink (bucket exists and is writable, table exists, ...) unless `--offline`: a sink that
    /// answers with a definite error fails the check; one that cannot be reached is reported and skipped.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Do not contact any sink.
        #[arg(long)]
        offline: bool,
    },
    /// Show every shard of a pipeline's stream: state, owner, checkpoint, lag, last checkpoint time.
    Status {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The pipeline.
        #[arg(long, short)]
        pipeline: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-read part of the stream through a pipeline without moving its checkpoints.
    Replay {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The pipeline.
        #[arg(long, short)]
        pipeline: String,
        /// Where to start: an RFC 3339 time (every shard), or SHARD:SEQUENCE[,SHARD:SEQUENCE...] (those
        /// shards only).
        #[arg(long)]
        from: String,
        /// End once every shard is read to its tip.
        #[arg(long)]
        until_tip: bool,
    },
    /// Dead-lettered records.
    DeadLetter {
        /// The dead-letter command.
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Manage streams: list, exists, describe, create, put, reshard, split, merge, cost.
    Streams {
        /// The AWS region.
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
        region: String,
        /// An endpoint override (e.g. a local Kinesis emulator).
        #[arg(long, env = "KINESIS_ENDPOINT", global = true)]
        endpoint: Option<String>,
        /// The streams command.
        #[command(subcommand)]
        command: StreamsCommand,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_kinesis=warn,hyper=warn",
        )
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Parses the command line and runs it with `registry`; returns the exit code.
pub fn main_with(registry: Registry) -> i32 {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(dispatch(cli.command, registry))
}

async fn dispatch(command: Command, registry: Registry) -> i32 {
    match command {
        Command::Check { config, offline } => match Config::load(&config, &registry) {
            Ok(mut c) => {
                for (name, p) in &c.pipelines {
                    println!(
                        "ok: pipeline {name}: {} → {} ({} filters) → {}; delivery: {}",
                        p.source.stream,
                        p.transformer_type,
                        p.filters.len(),
                        p.emitter_type,
                        p.delivery
                    );
                }
                if offline {
                    return 0;
                }
                let mut code = 0;
                for (name, p) in c.pipelines.iter_mut() {
                    if let Err(message) = probe_sink(name, p).await {
                        eprintln!("error: {}: pipeline {name:?}: {message}", config.display());
                        code = EXIT_CONFIG;
                    }
                }
                code
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_CONFIG
            }
        },
        Command::Run {
            config,
            pipeline,
            until_tip,
        } => {
            let mut c = match Config::load(&config, &registry) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_CONFIG;
                }
            };
            let Some(spec) = c.pipelines.remove(&pipeline) else {
                let known: Vec<&String> = c.pipelines.keys().collect();
                eprintln!(
                    "error: {}: no pipeline {pipeline:?}; defined: {known:?}",
                    config.display()
                );
                return EXIT_CONFIG;
            };
            let bound = spec.shutdown_timeout;
            let cancel = CancellationToken::new();
            tokio::spawn(watch_signals(cancel.clone()));
            let options = RunOptions {
                until_tip,
                metrics_addr: c.metrics_addr,
                progress: false,
            };
            let run = run_pipeline(spec, options, cancel.clone());
            tokio::pin!(run);
            let result = tokio::select! {
                r = &mut run => r,
                () = bounded_shutdown(cancel.clone(), bound) => {
                    tracing::error!(pipeline = %pipeline, bound_s = bound.as_secs_f64(), "shutdown did not finish within its bound; exiting (records not checkpointed are delivered again on restart)");
                    return EXIT_FAILURE;
                }
            };
            match result {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    EXIT_FAILURE
                }
            }
        }
        Command::Status {
            config,
            pipeline,
            json,
        } => {
            let spec = match load_pipeline(&config, &registry, &pipeline) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match crate::status::shard_status(&spec)
                .await
                .and_then(|rows| crate::status::print(&rows, json))
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    EXIT_FAILURE
                }
            }
        }
        Command::Replay {
            config,
            pipeline,
            from,
            until_tip,
        } => {
            let spec = match load_pipeline(&config, &registry, &pipeline) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let from = match crate::replay::parse_from(&from) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return EXIT_CONFIG;
                }
            };
            let cancel = CancellationToken::new();
            tokio::spawn(watch_signals(cancel.clone()));
            match crate::replay::replay(spec, from, until_tip, cancel).await {
                Ok(m) => {
                    println!(
                        "replayed {} records: {} emitted, {} filtered, {} dead-lettered",
                        m.records_in, m.items_emitted, m.items_filtered, m.dead_lettered
                    );
                    0
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    EXIT_FAILURE
                }
            }
        }
        Command::DeadLetter {
            command:
                DeadLetterCommand::Replay {
                    config,
                    pipeline,
                    into,
                },
        } => {
            let spec = match load_pipeline(&config, &registry, &pipeline) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match crate::replay::replay_dead_letters(spec, into).await {
                Ok(r) => {
                    println!(
                        "{} dead-lettered records: {} put back into the stream, {} emitted through the pipeline, {} dead-lettered again",
                        r.entries, r.put, r.emitted, r.dead_lettered_again
                    );
                    0
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    EXIT_FAILURE
                }
            }
        }
        Command::Streams {
            region,
            endpoint,
            command,
        } => {
            let client =
                StreamClient::connect(&region, endpoint.as_deref().filter(|e| !e.is_empty())).await;
            match streams::run(&client, command).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    EXIT_FAILURE
                }
            }
        }
    }
}

/// How long `check` waits for a sink to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a pipeline's emitter and runs its start-up check. `Err` for a definite failure; a sink that
/// cannot be reached is reported on stderr and passes.
async fn probe_sink(name: &str, p: &mut crate::config::PipelineSpec) -> Result<(), String> {
    let Some(build) = p.emitter.take() else {
        return Ok(());
    };
    let emitter = build
        .await
        .map_err(|e| format!("emitter {:?} cannot be built: {e:#}", p.emitter_type))?;
    match tokio::time::timeout(PROBE_TIMEOUT, emitter.check()).await {
        Ok(Ok(())) => {
            println!("ok: pipeline {name}: {} sink reachable", p.emitter_type);
            Ok(())
        }
        Ok(Err(e)) if !e.is_retryable() => {
            Err(format!("emitter {:?} is not ready: {e}", p.emitter_type))
        }
        Ok(Err(e)) => {
            eprintln!(
                "warning: pipeline {name}: {} sink not reachable, not checked: {e}",
                p.emitter_type
            );
            Ok(())
        }
        Err(_) => {
            eprintln!(
                "warning: pipeline {name}: {} sink did not answer within {PROBE_TIMEOUT:?}, not checked",
                p.emitter_type
            );
            Ok(())
        }
    }
}

/// Loads the configuration and takes one pipeline out of it; `Err` is the exit code (message printed).
fn load_pipeline(
    config: &std::path::Path,
    registry: &Registry,
    pipeline: &str,
) -> Result<crate::config::PipelineSpec, i32> {
    let mut c = Config::load(config, registry).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_CONFIG
    })?;
    let known: Vec<String> = c.pipelines.keys().cloned().collect();
    c.pipelines.remove(pipeline).ok_or_else(|| {
        eprintln!(
            "error: {}: no pipeline {pipeline:?}; defined: {known:?}",
            config.display()
        );
        EXIT_CONFIG
    })
}

async fn bounded_shutdown(cancel: CancellationToken, bound: Duration) {
    cancel.cancelled().await;
    tokio::time::sleep(bound).await;
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn watch_signals(cancel: CancellationToken) {
    let mut count = 0;
    loop {
        wait_for_signal().await;
        count += 1;
        if count == 1 {
            tracing::info!(
                "shutdown requested: stopping fetching, delivering what was read, checkpointing"
            );
            cancel.cancel();
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
