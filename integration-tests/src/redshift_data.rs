//! A **stand-in for the Amazon Redshift Data API**, for tests and the local stack: nothing installable
//! here emulates Redshift (moto's `redshift-data` runs no SQL), so this small server speaks the Data
//! API's JSON protocol (`application/x-amz-json-1.1`, `X-Amz-Target: RedshiftData.<Operation>`) and runs
//! the statements on a real PostgreSQL. Clients reach it only through their endpoint override.
//!
//! What it does:
//! * `ExecuteStatement` runs one statement (autocommit); `BatchExecuteStatement` runs its statements in
//!   one PostgreSQL transaction at `SERIALIZABLE` isolation (Redshift's default), each call in a session
//!   (connection) of its own, in the request's `Database`. Both answer at once with an id; the work runs
//!   in the background, so `DescribeStatement` shows `STARTED`, then `FINISHED` or `FAILED` (with the
//!   PostgreSQL error text and, for a batch, which sub-statement failed; the rest `ABORTED`) and
//!   `ResultRows` per sub-statement. `CancelStatement` marks a running statement `ABORTED` and cancels
//!   its query.
//! * `COPY table [(columns)] FROM 's3://bucket/key' …` is performed by the stand-in: plain (the key is a
//!   prefix, as in Redshift) or `MANIFEST` (mandatory entries must exist), `FORMAT AS JSON 'auto'` /
//!   `'auto ignorecase'` / a JSONPaths file (`$.a.b`, `$['a']`, `$.a[0]`), `CSV` with `DELIMITER` and
//!   `QUOTE`, `GZIP` and `ZSTD`, `TIMEFORMAT 'auto'` / `'epochsecs'` / `'epochmillisecs'`,
//!   `TRUNCATECOLUMNS` (characters, where Redshift counts bytes), `MAXERROR 0`, `IAM_ROLE` (accepted
//!   and ignored: the stand-in reads the objects from the local S3 with its own credentials), `REGION`,
//!   `COMPUPDATE`, `STATUPDATE`. It reads the objects, turns JSON objects into column values itself
//!   (fields matched to the lower-case column names; objects and arrays as JSON text) and loads the
//!   rows with PostgreSQL's `COPY … FROM STDIN`, inside the statement's transaction. Access keys in a
//!   COPY (`CREDENTIALS`, `ACCESS_KEY_ID`) are refused, so a test shows they are never sent.
//!
//! What it cannot show: Redshift's SQL dialect beyond what PostgreSQL shares (DISTKEY, SORTKEY, SUPER,
//! `stl_load_errors`, Redshift's exact error texts), IAM (roles, `GetClusterCredentials`, secrets), the
//! Data API's limits and throttling (use the fault proxy), cluster behaviour under load, `MAXERROR`
//! above 0, other `TIMEFORMAT`/`DATEFORMAT` strings, other COPY formats (Parquet, Avro, fixed width).
//! `GetStatementResult` is not served (read PostgreSQL directly).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls};

/// Where the stand-in's PostgreSQL is (trust authentication: no password).
#[derive(Clone, Debug)]
pub struct Postgres {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
}

impl Postgres {
    /// From `PGHOST`, `PGPORT`, `PGUSER` (as `integration-tests/local-stack` exports them).
    pub fn from_env() -> Self {
        Self {
            host: std::env::var("PGHOST").unwrap_or_else(|_| "127.0.0.1".into()),
            port: std::env::var("PGPORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(5432),
            user: std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()),
        }
    }

    /// A connection to `database` (its driver task spawned).
    pub async fn connect(&self, database: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("redshift-data-stand-in");
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// One `ExecuteStatement` / `BatchExecuteStatement` request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// `ExecuteStatement` or `BatchExecuteStatement`.
    pub operation: String,
    /// The statements.
    pub sqls: Vec<String>,
    /// The request body (every parameter as sent).
    pub body: Value,
}

#[derive(Clone, Debug)]
struct Sub {
    sql: String,
    status: &'static str,
    error: Option<String>,
    rows: i64,
    has_result_set: bool,
}

#[derive(Clone)]
struct Statement {
    status: &'static str,
    error: Option<String>,
    subs: Vec<Sub>,
    batch: bool,
    request: Value,
    created: f64,
    updated: f64,
    cancel: Option<tokio_postgres::CancelToken>,
}

struct Inner {
    postgres: Postgres,
    s3: aws_sdk_s3::Client,
    statements: Mutex<HashMap<String, Statement>>,
    received: Mutex<Vec<Received>>,
}

/// A running stand-in; see the module documentation.
#[derive(Clone)]
pub struct RedshiftDataStandIn {
    /// Its URL (the Data API endpoint override).
    pub url: String,
    inner: Arc<Inner>,
}

impl RedshiftDataStandIn {
    /// Starts on 127.0.0.1 (a free port), running SQL on `postgres` and reading COPY sources from the
    /// S3 server at `s3_endpoint` (credentials from the environment).
    pub async fn start(postgres: Postgres, s3_endpoint: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        Self::serve(listener, postgres, s3_endpoint).await
    }

    /// Serves on `listener` (in a spawned task).
    pub async fn serve(
        listener: tokio::net::TcpListener,
        postgres: Postgres,
        s3_endpoint: &str,
    ) -> Self {
        let sdk = kinesis_connectors_aws::sdk_config("us-east-1", Some(s3_endpoint)).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let inner = Arc::new(Inner {
            postgres,
            s3,
            statements: Mutex::new(HashMap::new()),
            received: Mutex::new(Vec::new()),
        });
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner }
    }

    /// Every statement request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn error(code: &str, message: &str) -> Response {
    let status = if code == "InternalServerException" {
        500
    } else {
        400
    };
    reply(status, json!({"__type": code, "message": message}))
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = to_bytes(req.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error("SerializationException", "the body is not JSON");
    };
    match target.strip_prefix("RedshiftData.") {
        Some(op @ ("ExecuteStatement" | "BatchExecuteStatement")) => execute(inner, op, body),
        Some("DescribeStatement") => describe(&inner, &body),
        Some("CancelStatement") => cancel(&inner, &body),
        Some(other) => error(
            "ValidationException",
            &format!("the Redshift Data API stand-in does not serve {other}"),
        ),
        None => error(
            "UnknownOperationException",
            &format!("unknown target {target:?}"),
        ),
    }
}

fn new_id() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn execute(inner: Arc<Inner>, op: &str, body: Value) -> Response {
    let sqls: Vec<String> = if op == "ExecuteStatement" {
        body["Sql"]
            .as_str()
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default()
    } else {
        body["Sqls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(database) = body["Database"].as_str().map(str::to_owned) else {
        return error("ValidationException", "Database is required");
    };
    let cluster = body["ClusterIdentifier"].as_str();
    let workgroup = body["WorkgroupName"].as_str();
    let auth = match (cluster, workgroup) {
        (Some(_), None) => body["DbUser"].is_string() != body["SecretArn"].is_string(),
        (None, Some(_)) => !body["DbUser"].is_string(),
        _ => false,
    };
    if !auth {
        return error(
            "ValidationException",
            "give ClusterIdentifier with exactly one of DbUser and SecretArn, or WorkgroupName (optionally with SecretArn)",
        );
    }
    if sqls.is_empty() || sqls.len() > 40 {
        return error(
            "ValidationException",
            "between 1 and 40 SQL statements are required",
        );
    }
    if sqls.iter().any(|s| s.len() > 100_000) {
        return error(
            "ValidationException",
            "a SQL statement is longer than 100,000 bytes",
        );
    }
    if body.get("Parameters").is_some() {
        return error(
            "ValidationException",
            "the stand-in does not emulate Parameters",
        );
    }
    inner
        .received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Received {
            operation: op.to_owned(),
            sqls: sqls.clone(),
            body: body.clone(),
        });
    let id = new_id();
    let t = now();
    let statement = Statement {
        status: "SUBMITTED",
        error: None,
        subs: sqls
            .iter()
            .map(|s| Sub {
                sql: s.clone(),
                status: "SUBMITTED",
                error: None,
                rows: -1,
                has_result_set: false,
            })
            .collect(),
        batch: op == "BatchExecuteStatement",
        request: body.clone(),
        created: t,
        updated: t,
        cancel: None,
    };
    inner
        .statements
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), statement);
    tokio::spawn(run(inner.clone(), id.clone(), database.clone(), sqls));
    let mut answer = json!({"Id": id, "CreatedAt": t, "Database": database});
    for k in ["ClusterIdentifier", "DbUser", "SecretArn", "WorkgroupName"] {
        if let Some(v) = body.get(k) {
            answer[k] = v.clone();
        }
    }
    reply(200, answer)
}

fn update(inner: &Inner, id: &str, f: impl FnOnce(&mut Statement)) {
    if let Some(s) = inner
        .statements
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(id)
    {
        f(s);
        s.updated = now();
    }
}

fn is_aborted(inner: &Inner, id: &str) -> bool {
    inner
        .statements
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .is_some_and(|s| s.status == "ABORTED")
}

/// The text a failed statement reports: PostgreSQL's message, detail and context, like Redshift's
/// `ERROR: …` texts.
fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("ERROR: {}", db.message());
            if let Some(d) = db.detail() {
                text.push_str(&format!(" DETAIL: {d}"));
            }
            if let Some(w) = db.where_() {
                text.push_str(&format!(" CONTEXT: {w}"));
            }
            text
        }
        None => format!("ERROR: {}", kinesis_connectors_aws::error_chain(e)),
    }
}

async fn run(inner: Arc<Inner>, id: String, database: String, sqls: Vec<String>) {
    update(&inner, &id, |s| s.status = "STARTED");
    let client = match inner.postgres.connect(&database).await {
        Ok(c) => c,
        Err(e) => {
            let text = pg_error_text(&e);
            update(&inner, &id, |s| {
                s.status = "FAILED";
                s.error = Some(text.clone());
                if let Some(first) = s.subs.first_mut() {
                    first.status = "FAILED";
                    first.error = Some(text);
                }
            });
            return;
        }
    };
    update(&inner, &id, |s| s.cancel = Some(client.cancel_token()));
    let batch = sqls.len() > 1
        || inner
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .is_some_and(|s| s.batch);
    if batch
        && let Err(e) = client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
    {
        let text = pg_error_text(&e);
        update(&inner, &id, |s| {
            s.status = "FAILED";
            s.error = Some(text);
        });
        return;
    }
    for (i, sql) in sqls.iter().enumerate() {
        if is_aborted(&inner, &id) {
            return;
        }
        update(&inner, &id, |s| s.subs[i].status = "STARTED");
        let result = match copy::parse(sql) {
            Some(Ok(c)) => copy::perform(&inner.s3, &client, &c).await,
            Some(Err(e)) => Err(e),
            None => run_sql(&client, sql).await,
        };
        match result {
            Ok((rows, has_result_set)) => update(&inner, &id, |s| {
                s.subs[i].status = "FINISHED";
                s.subs[i].rows = rows;
                s.subs[i].has_result_set = has_result_set;
            }),
            Err(text) => {
                if batch {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                update(&inner, &id, |s| {
                    if s.status == "ABORTED" {
                        return;
                    }
                    s.status = "FAILED";
                    s.error = Some(text.clone());
                    s.subs[i].status = "FAILED";
                    s.subs[i].error = Some(text);
                    for later in &mut s.subs[i + 1..] {
                        later.status = "ABORTED";
                    }
                });
                return;
            }
        }
    }
    if batch && let Err(e) = client.batch_execute("COMMIT").await {
        let text = pg_error_text(&e);
        update(&inner, &id, |s| {
            s.status = "FAILED";
            s.error = Some(text);
        });
        return;
    }
    update(&inner, &id, |s| {
        if s.status != "ABORTED" {
            s.status = "FINISHED";
        }
    });
}

/// Runs one statement that is not a `COPY … FROM 's3://…'`: rows affected (or returned), and whether
/// it returns rows.
async fn run_sql(client: &Client, sql: &str) -> Result<(i64, bool), String> {
    let head = sql.trim_start().to_ascii_uppercase();
    let returns_rows = head.starts_with("SELECT") || head.starts_with("WITH");
    if returns_rows {
        let rows = client
            .query(sql, &[])
            .await
            .map_err(|e| pg_error_text(&e))?;
        return Ok((rows.len() as i64, true));
    }
    let n = client
        .execute(sql, &[])
        .await
        .map_err(|e| pg_error_text(&e))?;
    Ok((n as i64, false))
}

fn describe(inner: &Inner, body: &Value) -> Response {
    let id = body["Id"].as_str().unwrap_or_default();
    let (base, sub) = match id.rsplit_once(':') {
        Some((b, n)) => (b, n.parse::<usize>().ok()),
        None => (id, None),
    };
    let Some(s) = inner
        .statements
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(base)
        .cloned()
    else {
        return error(
            "ResourceNotFoundException",
            &format!("statement {id} not found"),
        );
    };
    let duration = ((s.updated - s.created) * 1e9) as i64;
    let sub_json = |n: usize, x: &Sub| {
        let mut v = json!({
            "Id": format!("{base}:{n}"),
            "Status": x.status,
            "QueryString": x.sql,
            "ResultRows": x.rows,
            "ResultSize": 0,
            "HasResultSet": x.has_result_set,
            "CreatedAt": s.created,
            "UpdatedAt": s.updated,
            "Duration": duration,
            "RedshiftQueryId": 0,
        });
        if let Some(e) = &x.error {
            v["Error"] = json!(e);
        }
        v
    };
    if let Some(n) = sub {
        return match s.subs.get(n.wrapping_sub(1)) {
            Some(x) if s.batch => {
                let mut v = sub_json(n, x);
                v["Id"] = json!(id);
                reply(200, v)
            }
            _ => error(
                "ResourceNotFoundException",
                &format!("statement {id} not found"),
            ),
        };
    }
    let mut v = json!({
        "Id": base,
        "Status": s.status,
        "CreatedAt": s.created,
        "UpdatedAt": s.updated,
        "Duration": duration,
        "RedshiftPid": 0,
        "RedshiftQueryId": 0,
        "ResultSize": 0,
        "Database": s.request["Database"],
    });
    for k in ["ClusterIdentifier", "DbUser", "SecretArn", "WorkgroupName"] {
        if let Some(x) = s.request.get(k) {
            v[k] = x.clone();
        }
    }
    if let Some(e) = &s.error {
        v["Error"] = json!(e);
    }
    if s.batch {
        v["SubStatements"] = Value::Array(
            s.subs
                .iter()
                .enumerate()
                .map(|(i, x)| sub_json(i + 1, x))
                .collect(),
        );
        v["ResultRows"] = json!(-1);
        v["HasResultSet"] = json!(false);
    } else if let Some(x) = s.subs.first() {
        v["QueryString"] = json!(x.sql);
        v["ResultRows"] = json!(x.rows);
        v["HasResultSet"] = json!(x.has_result_set);
    }
    reply(200, v)
}

fn cancel(inner: &Inner, body: &Value) -> Response {
    let id = body["Id"].as_str().unwrap_or_default().to_owned();
    let token = {
        let mut map = inner.statements.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = map.get_mut(&id) else {
            return error(
                "ResourceNotFoundException",
                &format!("statement {id} not found"),
            );
        };
        if matches!(s.status, "FINISHED" | "FAILED" | "ABORTED") {
            return error(
                "ValidationException",
                &format!(
                    "could not cancel a query that is already in {} state",
                    s.status
                ),
            );
        }
        s.status = "ABORTED";
        s.cancel.clone()
    };
    if let Some(t) = token {
        tokio::spawn(async move {
            let _ = t.cancel_query(NoTls).await;
        });
    }
    reply(200, json!({"Status": true}))
}

mod copy;
