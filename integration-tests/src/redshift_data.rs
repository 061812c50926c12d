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
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
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

/// `COPY … FROM 's3://…'`: parsing and performing it.
mod copy {
    use super::*;

    /// A parsed `COPY`.
    #[derive(Debug, Default)]
    pub(super) struct Copy {
        table: String,
        columns: Vec<String>,
        url: String,
        manifest: bool,
        format: Format,
        gzip: bool,
        zstd: bool,
        timeformat: Option<String>,
        truncate: bool,
    }

    #[derive(Debug, Default)]
    enum Format {
        #[default]
        Pipe,
        JsonAuto {
            ignore_case: bool,
        },
        JsonPaths(String),
        Csv {
            delimiter: u8,
            quote: u8,
        },
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
        Word(String),
        Quoted(String),
        Literal(String),
        Punct(char),
    }

    fn tokens(sql: &str) -> Result<Vec<Token>, String> {
        let mut out = Vec::new();
        let chars: Vec<char> = sql.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '\'' || c == '"' {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated quote".into()),
                        Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                            text.push(c);
                            i += 2;
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            text.push(x);
                            i += 1;
                        }
                    }
                }
                out.push(if c == '\'' {
                    Token::Literal(text)
                } else {
                    Token::Quoted(text)
                });
            } else if c.is_alphanumeric() || c == '_' || c == '$' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            } else {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
        Ok(out)
    }

    fn ident(t: &Token) -> Option<String> {
        match t {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }

    fn quote_ident(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// `None` when `sql` is not a `COPY … FROM 's3://…'` (PostgreSQL runs it as it is).
    pub(super) fn parse(sql: &str) -> Option<Result<Copy, String>> {
        let toks = tokens(sql).ok()?;
        let is_word = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.eq_ignore_ascii_case(w));
        if !is_word(toks.first(), "COPY") {
            return None;
        }
        let from = toks.iter().position(|t| is_word(Some(t), "FROM"))?;
        match toks.get(from + 1) {
            Some(Token::Literal(u)) if u.starts_with("s3://") => {}
            _ => return None,
        }
        Some(parse_copy(&toks, from))
    }

    fn parse_copy(toks: &[Token], from: usize) -> Result<Copy, String> {
        let mut c = Copy::default();
        let mut i = 1;
        let mut parts = vec![ident(&toks[i]).ok_or("COPY: expected a table name")?];
        i += 1;
        while toks.get(i) == Some(&Token::Punct('.')) {
            parts.push(
                toks.get(i + 1)
                    .and_then(ident)
                    .ok_or("COPY: expected a table name after '.'")?,
            );
            i += 2;
        }
        c.table = parts
            .iter()
            .map(|p| quote_ident(p))
            .collect::<Vec<_>>()
            .join(".");
        if toks.get(i) == Some(&Token::Punct('(')) {
            i += 1;
            while toks.get(i) != Some(&Token::Punct(')')) {
                match toks.get(i) {
                    Some(Token::Punct(',')) => {}
                    Some(t) => c.columns.push(ident(t).ok_or("COPY: bad column list")?),
                    None => return Err("COPY: unclosed column list".into()),
                }
                i += 1;
            }
            i += 1;
        }
        if i != from {
            return Err("COPY: unexpected text before FROM".into());
        }
        let Some(Token::Literal(url)) = toks.get(from + 1) else {
            return Err("COPY: expected FROM 's3://…'".into());
        };
        c.url = url.clone();
        i = from + 2;
        let word = |i: usize| match toks.get(i) {
            Some(Token::Word(w)) => Some(w.to_ascii_uppercase()),
            _ => None,
        };
        let skip_as = |i: usize| {
            if word(i).as_deref() == Some("AS") {
                i + 1
            } else {
                i
            }
        };
        let literal = |i: usize| match toks.get(i) {
            Some(Token::Literal(l)) => Ok(l.clone()),
            _ => Err(format!(
                "COPY: expected a quoted value after {:?}",
                toks.get(i - 1)
            )),
        };
        let one_byte = |s: &str, what: &str| match s.as_bytes() {
            [b] => Ok(*b),
            _ => Err(format!("COPY: {what} must be one character")),
        };
        while i < toks.len() {
            let Some(w) = word(i) else {
                if toks[i] == Token::Punct(';') {
                    i += 1;
                    continue;
                }
                return Err(format!("COPY: unexpected {:?}", toks[i]));
            };
            i += 1;
            match w.as_str() {
                "IAM_ROLE" => {
                    if word(i).as_deref() != Some("DEFAULT") {
                        literal(i)?;
                    }
                    i += 1;
                }
                "CREDENTIALS" | "ACCESS_KEY_ID" | "SECRET_ACCESS_KEY" | "SESSION_TOKEN"
                | "WITH" => {
                    return Err(
                        "ERROR: the stand-in refuses access keys in COPY: authorize with IAM_ROLE"
                            .into(),
                    );
                }
                "REGION" => {
                    i = skip_as(i);
                    literal(i)?;
                    i += 1;
                }
                "MANIFEST" => c.manifest = true,
                "FORMAT" => {
                    i = skip_as(i);
                }
                "JSON" => {
                    i = skip_as(i);
                    let arg = literal(i)?;
                    i += 1;
                    c.format = match arg.to_ascii_lowercase().as_str() {
                        "auto" => Format::JsonAuto { ignore_case: false },
                        "auto ignorecase" => Format::JsonAuto { ignore_case: true },
                        _ if arg.starts_with("s3://") => Format::JsonPaths(arg),
                        other => {
                            return Err(format!("ERROR: JSON {other:?} is not emulated"));
                        }
                    };
                }
                "CSV" => {
                    let mut quote = b'"';
                    if word(i).as_deref() == Some("QUOTE") {
                        i = skip_as(i + 1);
                        quote = one_byte(&literal(i)?, "QUOTE")?;
                        i += 1;
                    }
                    let delimiter = match c.format {
                        Format::Csv { delimiter, .. } => delimiter,
                        _ => b',',
                    };
                    c.format = Format::Csv { delimiter, quote };
                }
                "DELIMITER" => {
                    i = skip_as(i);
                    let d = one_byte(&literal(i)?, "DELIMITER")?;
                    i += 1;
                    match &mut c.format {
                        Format::Csv { delimiter, .. } => *delimiter = d,
                        _ => {
                            c.format = Format::Csv {
                                delimiter: d,
                                quote: b'"',
                            }
                        }
                    }
                }
                "GZIP" => c.gzip = true,
                "ZSTD" => c.zstd = true,
                "TIMEFORMAT" => {
                    i = skip_as(i);
                    c.timeformat = Some(literal(i)?);
                    i += 1;
                }
                "TRUNCATECOLUMNS" => c.truncate = true,
                "MAXERROR" => {
                    i = skip_as(i);
                    match word(i).as_deref() {
                        Some("0") => {}
                        _ => {
                            return Err("ERROR: the stand-in emulates MAXERROR 0 only".into());
                        }
                    }
                    i += 1;
                }
                "COMPUPDATE" | "STATUPDATE" => i += 1,
                other => return Err(format!("ERROR: COPY option {other} is not emulated")),
            }
        }
        if matches!(c.format, Format::Pipe) {
            return Err("ERROR: the stand-in emulates JSON and CSV loads only".into());
        }
        if let Some(t) = &c.timeformat
            && !matches!(
                t.to_ascii_lowercase().as_str(),
                "auto" | "epochsecs" | "epochmillisecs"
            )
        {
            return Err(format!("ERROR: TIMEFORMAT {t:?} is not emulated"));
        }
        Ok(c)
    }

    fn split_url(url: &str) -> Result<(String, String), String> {
        url.strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .map(|(b, k)| (b.to_owned(), k.to_owned()))
            .ok_or_else(|| format!("ERROR: invalid S3 URL {url:?}"))
    }

    async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Bytes, String> {
        let out = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "ERROR: S3ServiceException: s3://{bucket}/{key}: {}",
                    kinesis_connectors_aws::error_chain(&e)
                )
            })?;
        out.body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| format!("ERROR: reading s3://{bucket}/{key}: {e}"))
    }

    /// The files a COPY reads, as (bucket, key).
    async fn files(s3: &aws_sdk_s3::Client, c: &Copy) -> Result<Vec<(String, String)>, String> {
        let (bucket, key) = split_url(&c.url)?;
        if c.manifest {
            let body = get(s3, &bucket, &key).await?;
            let m: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("ERROR: Manifest file is not in correct json format: {e}"))?;
            let entries = m["entries"]
                .as_array()
                .ok_or("ERROR: Manifest file has no \"entries\"")?;
            let mut out = Vec::new();
            for e in entries {
                let url = e["url"]
                    .as_str()
                    .ok_or("ERROR: a manifest entry has no url")?;
                let (b, k) = split_url(url)?;
                let exists = s3.head_object().bucket(&b).key(&k).send().await.is_ok();
                if !exists {
                    if e["mandatory"].as_bool() == Some(true) {
                        return Err(format!(
                            "ERROR: Manifest file entry {url} is mandatory but not found"
                        ));
                    }
                    continue;
                }
                out.push((b, k));
            }
            return Ok(out);
        }
        // Plain: the key is a prefix.
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&key)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "ERROR: S3ServiceException: {}",
                        kinesis_connectors_aws::error_chain(&e)
                    )
                })?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(|k| (bucket.clone(), k.to_owned()))),
            );
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        if out.is_empty() {
            return Err(format!(
                "ERROR: The specified S3 prefix '{key}' does not exist"
            ));
        }
        Ok(out)
    }

    fn decompress(c: &Copy, body: Bytes, key: &str) -> Result<String, String> {
        let bytes = if c.gzip {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("ERROR: gzip decompression of {key} failed: {e}"))?;
            out
        } else if c.zstd {
            zstd::decode_all(&body[..])
                .map_err(|e| format!("ERROR: zstd decompression of {key} failed: {e}"))?
        } else {
            body.to_vec()
        };
        String::from_utf8(bytes).map_err(|_| format!("ERROR: {key} is not valid UTF-8"))
    }

    /// A target column: name, PostgreSQL type name, and character length limit.
    struct Column {
        name: String,
        ty: String,
        max_chars: Option<usize>,
    }

    async fn columns(client: &Client, c: &Copy) -> Result<Vec<Column>, String> {
        let rows = client
            .query(
                "SELECT a.attname::text, t.typname::text, a.atttypmod FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&c.table],
            )
            .await
            .map_err(|e| pg_error_text(&e))?;
        let all: Vec<Column> = rows
            .iter()
            .map(|r| {
                let ty: String = r.get(1);
                let m: i32 = r.get(2);
                let max_chars = (matches!(ty.as_str(), "varchar" | "bpchar") && m > 4)
                    .then(|| (m - 4) as usize);
                Column {
                    name: r.get(0),
                    ty,
                    max_chars,
                }
            })
            .collect();
        if c.columns.is_empty() {
            return Ok(all);
        }
        let mut by_name: HashMap<String, Column> =
            all.into_iter().map(|col| (col.name.clone(), col)).collect();
        c.columns
            .iter()
            .map(|n| {
                by_name.remove(n).ok_or_else(|| {
                    format!(
                        "ERROR: column \"{n}\" of relation {} does not exist",
                        c.table
                    )
                })
            })
            .collect()
    }

    /// A JSONPath of the subset Redshift's JSONPaths files use.
    fn json_path(path: &str) -> Result<Vec<PathStep>, String> {
        let bad = || format!("ERROR: invalid JSONPath expression {path:?}");
        let rest = path.strip_prefix('$').ok_or_else(bad)?;
        let mut steps = Vec::new();
        let chars: Vec<char> = rest.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    i = start;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    if i == start {
                        return Err(bad());
                    }
                    steps.push(PathStep::Key(chars[start..i].iter().collect()));
                }
                '[' => {
                    let close = chars[i..].iter().position(|&c| c == ']').ok_or_else(bad)? + i;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    if let Some(k) = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    {
                        steps.push(PathStep::Key(k.to_owned()));
                    } else {
                        steps.push(PathStep::Index(inner.parse().map_err(|_| bad())?));
                    }
                    i = close + 1;
                }
                _ => return Err(bad()),
            }
        }
        Ok(steps)
    }

    enum PathStep {
        Key(String),
        Index(usize),
    }

    fn follow<'a>(v: &'a Value, steps: &[PathStep]) -> Option<&'a Value> {
        steps.iter().try_fold(v, |v, s| match s {
            PathStep::Key(k) => v.get(k.as_str()),
            PathStep::Index(n) => v.get(*n),
        })
    }

    /// A JSON value as a column's text (`None`: NULL).
    fn cell(v: Option<&Value>, col: &Column, timeformat: Option<&str>) -> Option<String> {
        let v = v?;
        let is_time = matches!(col.ty.as_str(), "timestamp" | "timestamptz");
        match (v, timeformat.map(str::to_ascii_lowercase).as_deref()) {
            (Value::Null, _) => None,
            (Value::Number(n), Some(f @ ("epochsecs" | "epochmillisecs"))) if is_time => {
                let x = n.as_f64()?;
                let micros = if f == "epochsecs" { x * 1e6 } else { x * 1e3 };
                chrono::DateTime::from_timestamp_micros(micros as i64)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
            }
            (Value::String(s), _) => Some(s.clone()),
            (Value::Number(n), _) => Some(n.to_string()),
            (Value::Bool(b), _) => Some(b.to_string()),
            (other, _) => Some(other.to_string()),
        }
    }

    /// Rows (one `Option<String>` per column) of one file.
    fn rows(
        c: &Copy,
        text: &str,
        cols: &[Column],
        paths: Option<&[Vec<PathStep>]>,
        key: &str,
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        let timeformat = c.timeformat.as_deref();
        match &c.format {
            Format::JsonAuto { ignore_case } => {
                let mut out = Vec::new();
                for (n, doc) in serde_json::Deserializer::from_str(text)
                    .into_iter::<Value>()
                    .enumerate()
                {
                    let doc = doc.map_err(|e| {
                        format!("ERROR: Invalid JSON in {key}, object {}: {e}", n + 1)
                    })?;
                    let Value::Object(map) = &doc else {
                        return Err(format!(
                            "ERROR: {key}, object {}: a JSON 'auto' load needs objects",
                            n + 1
                        ));
                    };
                    out.push(
                        cols.iter()
                            .map(|col| {
                                let v = if *ignore_case {
                                    map.iter()
                                        .find(|(k, _)| k.eq_ignore_ascii_case(&col.name))
                                        .map(|(_, v)| v)
                                } else {
                                    map.get(&col.name)
                                };
                                cell(v, col, timeformat)
                            })
                            .collect(),
                    );
                }
                Ok(out)
            }
            Format::JsonPaths(_) => {
                let paths = paths.unwrap_or_default();
                let mut out = Vec::new();
                for (n, doc) in serde_json::Deserializer::from_str(text)
                    .into_iter::<Value>()
                    .enumerate()
                {
                    let doc = doc.map_err(|e| {
                        format!("ERROR: Invalid JSON in {key}, object {}: {e}", n + 1)
                    })?;
                    out.push(
                        cols.iter()
                            .zip(paths)
                            .map(|(col, p)| cell(follow(&doc, p), col, timeformat))
                            .collect(),
                    );
                }
                Ok(out)
            }
            Format::Csv { delimiter, quote } => csv_rows(text, *delimiter, *quote, cols.len(), key),
            Format::Pipe => Err("ERROR: not emulated".into()),
        }
    }

    /// Parses CSV (quoted fields may hold delimiters, quotes doubled and line breaks; an unquoted empty
    /// field is NULL).
    fn csv_rows(
        text: &str,
        delimiter: u8,
        quote: u8,
        width: usize,
        key: &str,
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        let b = text.as_bytes();
        let mut rows = Vec::new();
        let mut row: Vec<Option<String>> = Vec::new();
        let mut i = 0;
        let mut line = 1;
        while i < b.len() {
            // One field.
            let value = if b[i] == quote {
                let mut v = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => {
                            return Err(format!(
                                "ERROR: {key}, line {line}: unterminated quoted field"
                            ));
                        }
                        Some(&x) if x == quote && b.get(i + 1) == Some(&quote) => {
                            v.push(quote);
                            i += 2;
                        }
                        Some(&x) if x == quote => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            if x == b'\n' {
                                line += 1;
                            }
                            v.push(x);
                            i += 1;
                        }
                    }
                }
                Some(String::from_utf8_lossy(&v).into_owned())
            } else {
                let start = i;
                while i < b.len() && b[i] != delimiter && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                let raw = &text[start..i];
                (!raw.is_empty()).then(|| raw.to_owned())
            };
            row.push(value);
            match b.get(i) {
                Some(&d) if d == delimiter => i += 1,
                Some(b'\r') | Some(b'\n') | None => {
                    if b.get(i) == Some(&b'\r') {
                        i += 1;
                    }
                    if b.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    if row.len() != width {
                        return Err(format!(
                            "ERROR: {key}, line {line}: {} fields where the COPY loads {width} columns (Delimiter not found / Extra column(s) found)",
                            row.len()
                        ));
                    }
                    rows.push(std::mem::take(&mut row));
                    line += 1;
                }
                Some(_) => {
                    return Err(format!(
                        "ERROR: {key}, line {line}: text after a closing quote"
                    ));
                }
            }
        }
        Ok(rows)
    }

    /// PostgreSQL CSV of rows (NULL: unquoted empty; every value quoted).
    fn pg_csv(rows: &[Vec<Option<String>>], cols: &[Column], truncate: bool, out: &mut Vec<u8>) {
        for row in rows {
            for (i, (v, col)) in row.iter().zip(cols).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if let Some(v) = v {
                    let v: &str = match (truncate, col.max_chars) {
                        (true, Some(max)) => match v.char_indices().nth(max) {
                            Some((at, _)) => &v[..at],
                            None => v,
                        },
                        _ => v,
                    };
                    out.push(b'"');
                    for byte in v.bytes() {
                        if byte == b'"' {
                            out.push(b'"');
                        }
                        out.push(byte);
                    }
                    out.push(b'"');
                }
            }
            out.push(b'\n');
        }
    }

    /// Performs the COPY on `client` (in its transaction): rows loaded.
    pub(super) async fn perform(
        s3: &aws_sdk_s3::Client,
        client: &Client,
        c: &Copy,
    ) -> Result<(i64, bool), String> {
        use futures::SinkExt;

        let cols = columns(client, c).await?;
        let paths: Option<Vec<Vec<PathStep>>> = match &c.format {
            Format::JsonPaths(url) => {
                let (b, k) = split_url(url)?;
                let body = get(s3, &b, &k).await?;
                let doc: Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("ERROR: Invalid JSONPaths file {url}: {e}"))?;
                let list = doc["jsonpaths"]
                    .as_array()
                    .ok_or_else(|| format!("ERROR: {url} has no \"jsonpaths\" array"))?;
                if list.len() != cols.len() {
                    return Err(format!(
                        "ERROR: Number of jsonpaths and the number of columns should match. JSONPath size: {}, Number of columns in table or column list: {}",
                        list.len(),
                        cols.len()
                    ));
                }
                Some(
                    list.iter()
                        .map(|p| json_path(p.as_str().unwrap_or_default()))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => None,
        };
        let mut data = Vec::new();
        for (bucket, key) in files(s3, c).await? {
            let text = decompress(c, get(s3, &bucket, &key).await?, &key)?;
            let rows = rows(
                c,
                &text,
                &cols,
                paths.as_deref(),
                &format!("s3://{bucket}/{key}"),
            )?;
            pg_csv(&rows, &cols, c.truncate, &mut data);
        }
        let names: Vec<String> = cols.iter().map(|col| quote_ident(&col.name)).collect();
        let stmt = format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            c.table,
            names.join(", ")
        );
        let sink = client.copy_in(&stmt).await.map_err(|e| pg_error_text(&e))?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(data))
            .await
            .map_err(|e| pg_error_text(&e))?;
        let n = sink.finish().await.map_err(|e| pg_error_text(&e))?;
        Ok((n as i64, false))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn copies_are_recognised_and_parsed() {
            assert!(parse("SELECT 1").is_none());
            assert!(parse("COPY t FROM STDIN").is_none());
            let c = parse("COPY \"s\".\"T\" (\"a\", b) FROM 's3://bk/x/y.manifest' IAM_ROLE 'arn:aws:iam::1:role/r' MANIFEST FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto' TRUNCATECOLUMNS MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF")
                .unwrap()
                .unwrap();
            assert_eq!(c.table, "\"s\".\"T\"");
            assert_eq!(c.columns, ["a", "b"]);
            assert!(c.manifest && c.gzip && c.truncate);
            let c =
                parse("COPY t FROM 's3://b/k' IAM_ROLE default FORMAT AS CSV DELIMITER '|' ZSTD")
                    .unwrap()
                    .unwrap();
            assert!(matches!(
                c.format,
                Format::Csv {
                    delimiter: b'|',
                    quote: b'"'
                }
            ));
            let refused = parse("COPY t FROM 's3://b/k' CREDENTIALS 'aws_access_key_id=A;aws_secret_access_key=B' JSON 'auto'")
                .unwrap()
                .unwrap_err();
            assert!(refused.contains("access keys"), "{refused}");
            assert!(
                parse("COPY t FROM 's3://b/k' JSON 'auto' MAXERROR 5")
                    .unwrap()
                    .is_err()
            );
        }

        #[test]
        fn csv_and_json_paths() {
            let rows =
                csv_rows("1,\"a,\"\"b\"\"\",\n2,\"x\ny\",\"\"\n", b',', b'"', 3, "k").unwrap();
            assert_eq!(
                rows,
                vec![
                    vec![Some("1".into()), Some("a,\"b\"".into()), None],
                    vec![Some("2".into()), Some("x\ny".into()), Some(String::new())],
                ]
            );
            assert!(csv_rows("1,2\n", b',', b'"', 3, "k").is_err());
            let doc = json!({"a": {"b": [10, {"c": "x"}]}, "d e": 1});
            assert_eq!(
                follow(&doc, &json_path("$.a.b[0]").unwrap()),
                Some(&json!(10))
            );
            assert_eq!(
                follow(&doc, &json_path("$['a']['b'][1].c").unwrap()),
                Some(&json!("x"))
            );
            assert_eq!(
                follow(&doc, &json_path("$['d e']").unwrap()),
                Some(&json!(1))
            );
            assert!(json_path("a.b").is_err());
        }
    }
}
