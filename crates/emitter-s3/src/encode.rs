//! Encoding items into object bytes, incrementally, so a large object can be uploaded part by part.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use flate2::write::GzEncoder;
use kinesis_connectors_core::Item;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCodec, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::config::{Column, ColumnType, Compression, CsvOptions, DEFAULT_ROW_GROUP_ROWS, Format};

/// File extension of a format and compression (e.g. `.ndjson.gz`).
pub fn extension(format: Format, compression: Compression, delimiter: &str) -> String {
    let base = match format {
        Format::Ndjson => ".ndjson",
        Format::Raw if delimiter == "\n" => ".txt",
        Format::Raw => ".bin",
        Format::Parquet => return ".parquet".into(),
        Format::Csv => ".csv",
    };
    let comp = match compression {
        Compression::None | Compression::Snappy => "",
        Compression::Gzip => ".gz",
        Compression::Zstd => ".zst",
    };
    format!("{base}{comp}")
}

/// `Content-Type` and `Content-Encoding` of a format and compression.
pub fn content_headers(
    format: Format,
    compression: Compression,
) -> (&'static str, Option<&'static str>) {
    let ty = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Raw => "application/octet-stream",
        Format::Parquet => "application/vnd.apache.parquet",
        Format::Csv => "text/csv",
    };
    let enc = match (format, compression) {
        (Format::Parquet, _) | (_, Compression::None | Compression::Snappy) => None,
        (_, Compression::Gzip) => Some("gzip"),
        (_, Compression::Zstd) => Some("zstd"),
    };
    (ty, enc)
}

enum Sink {
    Plain(Vec<u8>),
    Gzip(GzEncoder<Vec<u8>>),
    Zstd(zstd::Encoder<'static, Vec<u8>>),
}

impl Sink {
    fn new(compression: Compression) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::None | Compression::Snappy => Sink::Plain(Vec::new()),
            Compression::Gzip => {
                Sink::Gzip(GzEncoder::new(Vec::new(), flate2::Compression::default()))
            }
            Compression::Zstd => Sink::Zstd(zstd::Encoder::new(Vec::new(), 3)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Gzip(g) => g.write_all(bytes),
            Sink::Zstd(z) => z.write_all(bytes),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Sink::Plain(v) => v,
            Sink::Gzip(g) => g.get_mut(),
            Sink::Zstd(z) => z.get_mut(),
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Sink::Plain(v) => Ok(v),
            Sink::Gzip(g) => g.finish(),
            Sink::Zstd(z) => z.finish(),
        }
    }
}

/// Encodes items one by one; encoded bytes can be taken whenever enough have accumulated.
pub enum Encoder {
    /// NDJSON or raw lines, possibly compressed.
    Lines {
        /// Items must be JSON (NDJSON).
        json: bool,
        /// Written after each item.
        delimiter: Vec<u8>,
        /// The (compressing) output.
        sink: Box<SinkBox>,
    },
    /// Parquet row groups.
    Parquet(Box<ParquetEncoder>),
    /// CSV rows of the named fields (see [`CsvOptions`]), possibly compressed.
    Csv {
        /// The top-level fields written, in order.
        columns: Vec<String>,
        /// The field delimiter (one ASCII byte).
        delimiter: u8,
        /// The (compressing) output.
        sink: Box<SinkBox>,
    },
}

/// Opaque holder of the line sink.
pub struct SinkBox(Sink);

impl Encoder {
    /// A CSV encoder (see [`CsvOptions`]).
    pub fn csv(options: &CsvOptions, compression: Compression) -> std::io::Result<Self> {
        let delimiter = u8::try_from(options.delimiter)
            .map_err(|_| std::io::Error::other("the CSV delimiter must be one ASCII character"))?;
        Ok(Encoder::Csv {
            columns: options.columns.clone(),
            delimiter,
            sink: Box::new(SinkBox(Sink::new(compression)?)),
        })
    }

    /// An encoder for `format`; `schema` is required for Parquet (use [`Encoder::csv`] for CSV).
    pub fn new(
        format: Format,
        compression: Compression,
        delimiter: &str,
        schema: Option<&[Column]>,
    ) -> std::io::Result<Self> {
        match format {
            Format::Ndjson | Format::Raw => Ok(Encoder::Lines {
                json: format == Format::Ndjson,
                delimiter: if format == Format::Ndjson {
                    b"\n".to_vec()
                } else {
                    delimiter.as_bytes().to_vec()
                },
                sink: Box::new(SinkBox(Sink::new(compression)?)),
            }),
            Format::Parquet => {
                let schema =
                    schema.ok_or_else(|| std::io::Error::other("parquet needs a schema"))?;
                Ok(Encoder::Parquet(Box::new(ParquetEncoder::new(
                    schema,
                    compression,
                )?)))
            }
            Format::Csv => Err(std::io::Error::other(
                "csv needs its columns: use Encoder::csv",
            )),
        }
    }

    /// Adds an item. `Err` means the item cannot be written in this format (a permanent failure of that
    /// item; nothing of it was written).
    pub fn push(&mut self, item: &Item) -> Result<(), ItemRejected> {
        match self {
            Encoder::Lines {
                json,
                delimiter,
                sink,
            } => {
                if *json {
                    if !item.is_json() {
                        return Err(ItemRejected::Unfit(
                            "not a JSON document; use format = \"raw\" for other data".into(),
                        ));
                    }
                    let data = item.data();
                    if data.contains(&b'\n') {
                        // Pretty-printed JSON: one line per document, so re-serialize compactly.
                        let v = item
                            .to_value()
                            .map_err(|e| ItemRejected::Unfit(e.to_string()))?;
                        let compact = serde_json::to_vec(&v)
                            .map_err(|e| ItemRejected::Unfit(e.to_string()))?;
                        sink.0.write_all(&compact).map_err(ItemRejected::Io)?;
                    } else {
                        sink.0.write_all(data).map_err(ItemRejected::Io)?;
                    }
                } else {
                    sink.0.write_all(item.data()).map_err(ItemRejected::Io)?;
                }
                sink.0.write_all(delimiter).map_err(ItemRejected::Io)
            }
            Encoder::Parquet(p) => p.push(item),
            Encoder::Csv {
                columns,
                delimiter,
                sink,
            } => {
                let row = csv_row(item, columns, *delimiter)?;
                sink.0.write_all(&row).map_err(ItemRejected::Io)
            }
        }
    }

    /// Takes the bytes encoded so far if there are at least `min` of them.
    pub fn take_if_at_least(&mut self, min: usize) -> Option<Vec<u8>> {
        let out = match self {
            Encoder::Lines { sink, .. } | Encoder::Csv { sink, .. } => sink.0.output(),
            Encoder::Parquet(p) => return p.take_if_at_least(min),
        };
        (out.len() >= min).then(|| std::mem::take(out))
    }

    /// Ends the object; returns the remaining bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Lines { sink, .. } | Encoder::Csv { sink, .. } => sink.0.finish(),
            Encoder::Parquet(p) => p.finish(),
        }
    }
}

/// Appends `text` as a quoted CSV field (`"` doubled inside), as PostgreSQL and Redshift read it.
pub fn csv_quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for b in text.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// One CSV row (with its line break) of the `columns` of a JSON object; see [`CsvOptions`].
fn csv_row(item: &Item, columns: &[String], delimiter: u8) -> Result<Vec<u8>, ItemRejected> {
    let value = item
        .to_value()
        .map_err(|e| ItemRejected::Unfit(format!("not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ItemRejected::Unfit(
            "not a JSON object; CSV rows are made of an object's fields".into(),
        ));
    };
    let mut row = Vec::with_capacity(item.data().len() + columns.len() * 2);
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            row.push(delimiter);
        }
        match map.get(c) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => csv_quoted(&mut row, s),
            Some(Value::Number(n)) => row.extend_from_slice(n.to_string().as_bytes()),
            Some(Value::Bool(b)) => row.extend_from_slice(if *b { b"true" } else { b"false" }),
            Some(other) => csv_quoted(&mut row, &other.to_string()),
        }
    }
    row.push(b'\n');
    Ok(row)
}

/// Why an item was not encoded.
#[derive(Debug)]
pub enum ItemRejected {
    /// The item does not fit the format or schema (permanent).
    Unfit(String),
    /// Writing failed.
    Io(std::io::Error),
}

/// A `Write` whose bytes can be drained while a writer owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum ColumnBuilder {
    String(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
}

/// One converted cell.
enum Cell {
    Null,
    String(String),
    Int64(i64),
    Float64(f64),
    Boolean(bool),
}

/// Writes JSON objects as Parquet rows (row groups of [`DEFAULT_ROW_GROUP_ROWS`]).
pub struct ParquetEncoder {
    columns: Vec<Column>,
    schema: Arc<Schema>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    out: Shared,
    writer: ArrowWriter<Shared>,
}

fn data_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    }
}

impl ParquetEncoder {
    fn new(columns: &[Column], compression: Compression) -> std::io::Result<Self> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(&c.name, data_type(c.kind), true))
                .collect::<Vec<_>>(),
        ));
        let codec = match compression {
            Compression::None => ParquetCodec::UNCOMPRESSED,
            Compression::Snappy => ParquetCodec::SNAPPY,
            Compression::Gzip => ParquetCodec::GZIP(GzipLevel::default()),
            Compression::Zstd => ParquetCodec::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder().set_compression(codec).build();
        let out = Shared::default();
        let writer = ArrowWriter::try_new(out.clone(), schema.clone(), Some(props))
            .map_err(std::io::Error::other)?;
        let mut this = Self {
            columns: columns.to_vec(),
            schema,
            builders: Vec::new(),
            rows: 0,
            out,
            writer,
        };
        this.builders = this.new_builders();
        Ok(this)
    }

    fn new_builders(&self) -> Vec<ColumnBuilder> {
        self.columns
            .iter()
            .map(|c| match c.kind {
                ColumnType::String | ColumnType::Json => {
                    ColumnBuilder::String(StringBuilder::new())
                }
                ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
                ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
                ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
                ColumnType::Timestamp => ColumnBuilder::Timestamp(
                    TimestampMillisecondBuilder::new().with_timezone("UTC"),
                ),
            })
            .collect()
    }

    fn push(&mut self, item: &Item) -> Result<(), ItemRejected> {
        let value = item
            .to_value()
            .map_err(|e| ItemRejected::Unfit(format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ItemRejected::Unfit(
                "not a JSON object; Parquet rows are objects".into(),
            ));
        };
        let mut row = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            row.push(
                convert(map.get(&c.name), c.kind)
                    .map_err(|m| ItemRejected::Unfit(format!("field {:?}: {m}", c.name)))?,
            );
        }
        for (b, cell) in self.builders.iter_mut().zip(row) {
            match (b, cell) {
                (ColumnBuilder::String(b), Cell::String(s)) => b.append_value(s),
                (ColumnBuilder::String(b), _) => b.append_null(),
                (ColumnBuilder::Int64(b), Cell::Int64(v)) => b.append_value(v),
                (ColumnBuilder::Int64(b), _) => b.append_null(),
                (ColumnBuilder::Float64(b), Cell::Float64(v)) => b.append_value(v),
                (ColumnBuilder::Float64(b), _) => b.append_null(),
                (ColumnBuilder::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
                (ColumnBuilder::Boolean(b), _) => b.append_null(),
                (ColumnBuilder::Timestamp(b), Cell::Int64(v)) => b.append_value(v),
                (ColumnBuilder::Timestamp(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
        if self.rows >= DEFAULT_ROW_GROUP_ROWS {
            self.write_row_group().map_err(ItemRejected::Io)?;
        }
        Ok(())
    }

    fn write_row_group(&mut self) -> std::io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let fresh = self.new_builders();
        let builders = std::mem::replace(&mut self.builders, fresh);
        let arrays: Vec<ArrayRef> = builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    ColumnBuilder::String(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Boolean(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch =
            RecordBatch::try_new(self.schema.clone(), arrays).map_err(std::io::Error::other)?;
        self.writer.write(&batch).map_err(std::io::Error::other)?;
        self.writer.flush().map_err(std::io::Error::other)?;
        self.rows = 0;
        Ok(())
    }

    fn take_if_at_least(&mut self, min: usize) -> Option<Vec<u8>> {
        let mut buf = self.out.0.lock().ok()?;
        (buf.len() >= min).then(|| std::mem::take(&mut *buf))
    }

    fn finish(mut self) -> std::io::Result<Vec<u8>> {
        self.write_row_group()?;
        self.writer.close().map_err(std::io::Error::other)?;
        let mut buf = self
            .out
            .0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        Ok(std::mem::take(&mut *buf))
    }
}

fn convert(v: Option<&Value>, kind: ColumnType) -> Result<Cell, String> {
    let v = match v {
        None | Some(Value::Null) => return Ok(Cell::Null),
        Some(v) => v,
    };
    match (kind, v) {
        (ColumnType::Json, v) => Ok(Cell::String(v.to_string())),
        (ColumnType::String, Value::String(s)) => Ok(Cell::String(s.clone())),
        (ColumnType::Int64, Value::Number(n)) => n
            .as_i64()
            .map(Cell::Int64)
            .ok_or_else(|| format!("expected an int64, got {n}")),
        (ColumnType::Float64, Value::Number(n)) => n
            .as_f64()
            .map(Cell::Float64)
            .ok_or_else(|| format!("expected a float64, got {n}")),
        (ColumnType::Boolean, Value::Bool(b)) => Ok(Cell::Boolean(*b)),
        (ColumnType::Timestamp, Value::Number(n)) => n
            .as_i64()
            .map(Cell::Int64)
            .ok_or_else(|| format!("expected epoch milliseconds, got {n}")),
        (ColumnType::Timestamp, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Cell::Int64(t.timestamp_millis()))
            .map_err(|e| format!("expected an RFC 3339 time, got {s:?} ({e})")),
        (kind, v) => Err(format!(
            "expected {}, got {}",
            type_name(kind),
            json_kind(v)
        )),
    }
}

fn type_name(k: ColumnType) -> &'static str {
    match k {
        ColumnType::String => "a string",
        ColumnType::Int64 => "an int64",
        ColumnType::Float64 => "a float64",
        ColumnType::Boolean => "a boolean",
        ColumnType::Timestamp => "a timestamp",
        ColumnType::Json => "JSON",
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Infers a Parquet schema from JSON objects: per top-level field (in key order within documents, fields
/// first seen later after them),
/// int64 if every value is an integer, float64 if numbers, boolean, string, else json.
pub fn infer_schema<'a>(items: impl Iterator<Item = &'a Item>) -> Vec<Column> {
    #[derive(Default, Clone, Copy)]
    struct Seen {
        int: bool,
        float: bool,
        boolean: bool,
        string: bool,
        other: bool,
    }
    let mut order: Vec<String> = Vec::new();
    let mut seen: std::collections::HashMap<String, Seen> = std::collections::HashMap::new();
    for item in items {
        let Ok(Value::Object(map)) = item.to_value() else {
            continue;
        };
        for (k, v) in map {
            let s = seen.entry(k.clone()).or_insert_with(|| {
                order.push(k.clone());
                Seen::default()
            });
            match v {
                Value::Null => {}
                Value::Number(n) if n.is_i64() => s.int = true,
                Value::Number(_) => s.float = true,
                Value::Bool(_) => s.boolean = true,
                Value::String(_) => s.string = true,
                _ => s.other = true,
            }
        }
    }
    order
        .into_iter()
        .map(|name| {
            let s = seen[&name];
            let kind = match (s.int, s.float, s.boolean, s.string, s.other) {
                (true, false, false, false, false) => ColumnType::Int64,
                (_, true, false, false, false) => ColumnType::Float64,
                (false, false, true, false, false) => ColumnType::Boolean,
                (false, false, false, true, false) => ColumnType::String,
                (false, false, false, false, false) => ColumnType::String,
                _ => ColumnType::Json,
            };
            Column { name, kind }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Read;

    fn item(s: &str) -> Item {
        Item::parse_json(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn ndjson_gzip_round_trips_and_compacts_pretty_json() {
        let mut e = Encoder::new(Format::Ndjson, Compression::Gzip, "\n", None).unwrap();
        e.push(&item("{\"a\":1}")).unwrap();
        e.push(&item("{\n  \"b\": 2\n}")).unwrap();
        assert!(matches!(
            e.push(&Item::raw(Bytes::from_static(b"x"))),
            Err(ItemRejected::Unfit(_))
        ));
        let bytes = e.finish().unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn csv_rows_quote_strings_and_leave_nulls_empty() {
        let options = CsvOptions {
            columns: vec![
                "id".into(),
                "name".into(),
                "ok".into(),
                "tags".into(),
                "gone".into(),
            ],
            delimiter: '|',
        };
        let mut e = Encoder::csv(&options, Compression::None).unwrap();
        e.push(&item(
            r#"{"id":1,"name":"a \"b\"|c","ok":true,"tags":[1,"x"],"extra":0}"#,
        ))
        .unwrap();
        e.push(&item(r#"{"id":2.5,"name":"line\nbreak","ok":null}"#))
            .unwrap();
        assert!(matches!(e.push(&item("[1]")), Err(ItemRejected::Unfit(_))));
        assert!(matches!(
            e.push(&Item::raw(Bytes::from_static(b"x"))),
            Err(ItemRejected::Unfit(_))
        ));
        let text = String::from_utf8(e.finish().unwrap()).unwrap();
        assert_eq!(
            text,
            "1|\"a \"\"b\"\"|c\"|true|\"[1,\"\"x\"\"]\"|\n2.5|\"line\nbreak\"|||\n"
        );
        assert_eq!(extension(Format::Csv, Compression::Gzip, "\n"), ".csv.gz");
    }

    #[test]
    fn inference_and_unfit_rows() {
        let items = [
            item(r#"{"id":1,"name":"a","x":1.5,"ok":true,"tags":[1]}"#),
            item(r#"{"id":2,"x":2,"name":null}"#),
        ];
        let cols = infer_schema(items.iter());
        let kinds: Vec<_> = cols.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("id", ColumnType::Int64),
                ("name", ColumnType::String),
                ("ok", ColumnType::Boolean),
                ("tags", ColumnType::Json),
                ("x", ColumnType::Float64)
            ]
        );
        let mut e = Encoder::new(Format::Parquet, Compression::Zstd, "", Some(&cols)).unwrap();
        e.push(&items[0]).unwrap();
        e.push(&items[1]).unwrap();
        let err = e.push(&item(r#"{"id":"three"}"#)).unwrap_err();
        assert!(
            matches!(err, ItemRejected::Unfit(m) if m.contains("\"id\": expected an int64, got a string"))
        );
        let bytes = e.finish().unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let reader =
            parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
    }
}
