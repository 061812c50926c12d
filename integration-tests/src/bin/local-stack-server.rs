//! Serves the Rust local servers of the test stack from one binary that shares the workspace's build:
//!
//! * `local-stack-server kinesis --port P` — ferrokinesis (Kinesis API, JSON protocol), on 127.0.0.1
//!   only (the ferrokinesis binary itself binds 0.0.0.0), streams created and resharded without delay.
//! * `local-stack-server s3 --port P --root DIR` — s3s-fs (S3 API over a directory), path-style, with
//!   access key `AKIAX` / secret `x` (the stack exports matching credentials), behind
//!   [`integration_tests::s3_long_keys`] so that keys up to 1,024 bytes work as on S3.
//!
//! * `local-stack-server redshift-data --port P --s3 URL` — the Redshift Data API stand-in
//!   ([`integration_tests::redshift_data`]): Data API JSON protocol, statements run on the PostgreSQL
//!   named by `PGHOST`/`PGPORT`/`PGUSER`, `COPY … FROM 's3://…'` read from the S3 server at URL.
//!
//! Each runs as its own process so a test can stop one server (an outage) and leave the others.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    server: Server,
}

#[derive(Subcommand)]
enum Server {
    /// ferrokinesis on 127.0.0.1:PORT.
    Kinesis {
        #[arg(long)]
        port: u16,
        /// Most open shards across all streams.
        #[arg(long, default_value_t = 20_000)]
        shard_limit: u32,
    },
    /// s3s-fs on 127.0.0.1:PORT serving ROOT.
    S3 {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        root: PathBuf,
        #[arg(long, default_value = "AKIAX")]
        access_key: String,
        #[arg(long, default_value = "x")]
        secret_key: String,
    },
    /// The Redshift Data API stand-in on 127.0.0.1:PORT.
    RedshiftData {
        #[arg(long)]
        port: u16,
        /// The S3 endpoint COPY reads from.
        #[arg(long)]
        s3: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().server {
        Server::Kinesis { port, shard_limit } => kinesis(port, shard_limit).await,
        Server::S3 {
            port,
            root,
            access_key,
            secret_key,
        } => s3(port, root, access_key, secret_key).await,
        Server::RedshiftData { port, s3 } => redshift_data(port, &s3).await,
    }
}

async fn kinesis(port: u16, shard_limit: u32) -> anyhow::Result<()> {
    let options = ferrokinesis::store::StoreOptions {
        create_stream_ms: 0,
        delete_stream_ms: 0,
        update_stream_ms: 0,
        shard_limit,
        ..Default::default()
    };
    let (app, _store) = ferrokinesis::create_app(options);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    eprintln!(
        "kinesis (ferrokinesis) listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

async fn s3(
    port: u16,
    root: PathBuf,
    access_key: String,
    secret_key: String,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;

    std::fs::create_dir_all(&root)?;
    // s3s-fs behind our layer that takes keys up to S3's 1,024 bytes (s3s-fs alone fails over ~150).
    let fs = integration_tests::s3_long_keys::LongKeys::new(&root)?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    eprintln!(
        "s3 (s3s-fs) listening on http://{} serving {}",
        listener.local_addr()?,
        root.display()
    );
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn redshift_data(port: u16, s3: &str) -> anyhow::Result<()> {
    let postgres = integration_tests::redshift_data::Postgres::from_env();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    eprintln!(
        "redshift-data (stand-in) listening on http://{}, SQL on postgres {}:{}, COPY from {s3}",
        listener.local_addr()?,
        postgres.host,
        postgres.port
    );
    integration_tests::redshift_data::RedshiftDataStandIn::serve(listener, postgres, s3).await;
    std::future::pending::<()>().await;
    Ok(())
}
