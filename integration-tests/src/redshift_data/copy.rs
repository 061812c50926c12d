//! `COPY … FROM 's3://…'` in the stand-in: parsing the statement, reading the staged objects from S3,
//! turning them into rows, and loading the rows with PostgreSQL's `COPY … FROM STDIN`.
use std::collections::HashMap;
use std::io::Read;

use bytes::Bytes;
use serde_json::Value;
use tokio_postgres::Client;

use super::pg_error_text;

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

/// The text of a field quoted with `quote` starting at `b[start]` (the opening quote), a doubled quote
/// standing for one; and the index after the closing quote. `None` if it is not closed.
fn quoted(b: &[u8], start: usize, quote: u8) -> Option<(Vec<u8>, usize)> {
    let mut text = Vec::new();
    let mut i = start + 1;
    loop {
        match *b.get(i)? {
            q if q == quote && b.get(i + 1) == Some(&quote) => {
                text.push(quote);
                i += 2;
            }
            q if q == quote => return Some((text, i + 1)),
            x => {
                text.push(x);
                i += 1;
            }
        }
    }
}

fn tokens(sql: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let b = sql.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let (text, next) = quoted(b, i, c).ok_or("unterminated quote")?;
            let text = String::from_utf8_lossy(&text).into_owned();
            out.push(if c == b'\'' {
                Token::Literal(text)
            } else {
                Token::Quoted(text)
            });
            i = next;
        } else if word(c) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            out.push(Token::Word(
                String::from_utf8_lossy(&b[start..i]).into_owned(),
            ));
        } else {
            out.push(Token::Punct(char::from(c)));
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
    let is_word =
        |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.eq_ignore_ascii_case(w));
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
            "CREDENTIALS" | "ACCESS_KEY_ID" | "SECRET_ACCESS_KEY" | "SESSION_TOKEN" | "WITH" => {
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
            let max_chars =
                (matches!(ty.as_str(), "varchar" | "bpchar") && m > 4).then(|| (m - 4) as usize);
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
        Format::JsonAuto { ignore_case } => json_docs(text, key, |n, doc| {
            let Value::Object(map) = doc else {
                return Err(format!(
                    "ERROR: {key}, object {n}: a JSON 'auto' load needs objects"
                ));
            };
            Ok(cols
                .iter()
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
                .collect())
        }),
        Format::JsonPaths(_) => {
            let paths = paths.unwrap_or_default();
            json_docs(text, key, |_, doc| {
                Ok(cols
                    .iter()
                    .zip(paths)
                    .map(|(col, p)| cell(follow(&doc, p), col, timeformat))
                    .collect())
            })
        }
        Format::Csv { delimiter, quote } => csv_rows(text, *delimiter, *quote, cols.len(), key),
        Format::Pipe => Err("ERROR: not emulated".into()),
    }
}

/// One row per JSON document of `text` (documents one after the other, any whitespace between).
fn json_docs(
    text: &str,
    key: &str,
    mut row: impl FnMut(usize, Value) -> Result<Vec<Option<String>>, String>,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut out = Vec::new();
    for (n, doc) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let doc =
            doc.map_err(|e| format!("ERROR: Invalid JSON in {key}, object {}: {e}", n + 1))?;
        out.push(row(n + 1, doc)?);
    }
    Ok(out)
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
            let (v, next) = quoted(b, i, quote)
                .ok_or_else(|| format!("ERROR: {key}, line {line}: unterminated quoted field"))?;
            line += v.iter().filter(|&&x| x == b'\n').count();
            i = next;
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
                kinesis_connectors_emitter_s3::encode::csv_quoted(out, v);
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
    use serde_json::json;

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
        let c = parse("COPY t FROM 's3://b/k' IAM_ROLE default FORMAT AS CSV DELIMITER '|' ZSTD")
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
        let rows = csv_rows("1,\"a,\"\"b\"\"\",\n2,\"x\ny\",\"\"\n", b',', b'"', 3, "k").unwrap();
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
