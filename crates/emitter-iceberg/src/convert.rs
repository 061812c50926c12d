//! JSON items → Arrow record batches in a table's schema.
//!
//! Each item is first checked and converted on its own into a [`Row`] of typed values, so an item that
//! does not fit the schema is refused with the column and the reason (and dead-lettered) without
//! touching the others; the accepted rows are then built into Arrow arrays column by column.
//!
//! JSON → Iceberg: `boolean` ← true/false; `int`/`long` ← whole numbers in range; `float`/`double` ←
//! numbers; `decimal(P, S)` ← a number or a string with at most S fraction digits and P digits;
//! `date` ← `"YYYY-MM-DD"`; `time` ← `"HH:MM:SS[.ffffff]"`; `timestamp`/`timestamptz` ← an RFC 3339
//! string (offsets converted to UTC; without an offset the time is taken as UTC) or a whole number of
//! milliseconds since the epoch; `string` ← a string; `uuid` ← its text form; `binary`/`fixed[N]` ←
//! base64; `struct` ← an object (fields not in the schema are ignored); `list` ← an array. A missing
//! field or `null` is null, refused for a required column.

use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Decimal128Array, FixedSizeBinaryArray, LargeBinaryArray,
    LargeListArray, LargeStringArray, ListArray, PrimitiveArray, RecordBatch, StringArray,
    StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{ArrowError, DataType, Field, Fields, SchemaRef as ArrowSchemaRef, TimeUnit};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use iceberg::spec::{NestedField, PrimitiveType, SchemaRef, Type};
use serde_json::Value;

/// One converted value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum V {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Dec(i128),
    Str(String),
    Bytes(Vec<u8>),
    Struct(Vec<V>),
    List(Vec<V>),
}

static NULL: V = V::Null;

/// One item's values, in the schema's top-level order.
pub(crate) type Row = Vec<V>;

/// Converts items into one table schema.
#[derive(Debug)]
pub(crate) struct Converter {
    schema: SchemaRef,
    arrow: ArrowSchemaRef,
}

impl Converter {
    /// A converter for `schema`; refuses types it cannot fill (maps).
    pub(crate) fn new(schema: SchemaRef) -> Result<Self, String> {
        for f in schema.as_struct().fields() {
            supported(f, &f.name)?;
        }
        let arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| format!("the table's schema has no Arrow form: {e}"))?;
        Ok(Self {
            schema,
            arrow: Arc::new(arrow),
        })
    }

    /// The Iceberg schema.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Converts one JSON item, or says which column it does not fit and why.
    pub(crate) fn row(&self, json: &[u8]) -> Result<Row, String> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| format!("the item is not JSON: {e}"))?;
        let Value::Object(map) = &value else {
            return Err("the item is not a JSON object".into());
        };
        self.schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| field_value(f, map.get(&f.name), &f.name))
            .collect()
    }

    /// Builds the rows into one record batch.
    pub(crate) fn batch(&self, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
        let columns = self
            .arrow
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let vals: Vec<&V> = rows.iter().map(|r| &r[i]).collect();
                build(f.data_type(), &vals)
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.arrow.clone(), columns)
    }
}

fn supported(field: &NestedField, path: &str) -> Result<(), String> {
    match field.field_type.as_ref() {
        Type::Primitive(_) => Ok(()),
        Type::Struct(s) => s
            .fields()
            .iter()
            .try_for_each(|f| supported(f, &format!("{path}.{}", f.name))),
        Type::List(l) => supported(&l.element_field, &format!("{path}[]")),
        Type::Map(_) => Err(format!(
            "column {path}: map columns are not supported by the Iceberg emitter"
        )),
    }
}

fn field_value(field: &NestedField, v: Option<&Value>, path: &str) -> Result<V, String> {
    let v = match v {
        None | Some(Value::Null) if field.required => {
            return Err(format!(
                "column {path}: required, but the item has no value"
            ));
        }
        None | Some(Value::Null) => return Ok(V::Null),
        Some(v) => v,
    };
    match field.field_type.as_ref() {
        Type::Primitive(p) => primitive(p, v).map_err(|m| format!("column {path}: {m}")),
        Type::Struct(s) => {
            let Value::Object(map) = v else {
                return Err(format!(
                    "column {path}: expected an object, got {}",
                    kind(v)
                ));
            };
            s.fields()
                .iter()
                .map(|f| field_value(f, map.get(&f.name), &format!("{path}.{}", f.name)))
                .collect::<Result<_, _>>()
                .map(V::Struct)
        }
        Type::List(l) => {
            let Value::Array(items) = v else {
                return Err(format!("column {path}: expected an array, got {}", kind(v)));
            };
            items
                .iter()
                .enumerate()
                .map(|(i, e)| field_value(&l.element_field, Some(e), &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()
                .map(V::List)
        }
        Type::Map(_) => Err(format!("column {path}: map columns are not supported")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn primitive(p: &PrimitiveType, v: &Value) -> Result<V, String> {
    let expected = |what: &str| Err(format!("expected {what}, got {}", kind(v)));
    match p {
        PrimitiveType::Boolean => match v {
            Value::Bool(b) => Ok(V::Bool(*b)),
            _ => expected("a boolean"),
        },
        PrimitiveType::Int => match v.as_i64() {
            Some(n) => i32::try_from(n)
                .map(V::I32)
                .map_err(|_| format!("{n} is out of the int range")),
            None if v.is_number() => Err(format!("{v} is not a whole number in the int range")),
            None => expected("a whole number"),
        },
        PrimitiveType::Long => match v.as_i64() {
            Some(n) => Ok(V::I64(n)),
            None if v.is_number() => Err(format!("{v} is not a whole number in the long range")),
            None => expected("a whole number"),
        },
        PrimitiveType::Float => match v.as_f64() {
            Some(x) => Ok(V::F32(x as f32)),
            None => expected("a number"),
        },
        PrimitiveType::Double => match v.as_f64() {
            Some(x) => Ok(V::F64(x)),
            None => expected("a number"),
        },
        PrimitiveType::Decimal { precision, scale } => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return expected("a number or a decimal string"),
            };
            decimal(&text, *precision, *scale).map(V::Dec)
        }
        PrimitiveType::Date => match v {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| {
                    V::I32(
                        (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days()
                            as i32,
                    )
                })
                .map_err(|e| format!("{s:?} is not a YYYY-MM-DD date: {e}")),
            _ => expected("a YYYY-MM-DD string"),
        },
        PrimitiveType::Time => match v {
            Value::String(s) => NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                .map(|t| {
                    V::I64(
                        i64::from(t.num_seconds_from_midnight()) * 1_000_000
                            + i64::from(t.nanosecond() / 1_000),
                    )
                })
                .map_err(|e| format!("{s:?} is not an HH:MM:SS time: {e}")),
            _ => expected("an HH:MM:SS string"),
        },
        PrimitiveType::Timestamp | PrimitiveType::Timestamptz => timestamp(v, false).map(V::I64),
        PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs => timestamp(v, true).map(V::I64),
        PrimitiveType::String => match v {
            Value::String(s) => Ok(V::Str(s.clone())),
            _ => expected("a string"),
        },
        PrimitiveType::Uuid => match v {
            Value::String(s) => uuid(s)
                .map(|b| V::Bytes(b.to_vec()))
                .ok_or_else(|| format!("{s:?} is not a UUID")),
            _ => expected("a UUID string"),
        },
        PrimitiveType::Binary | PrimitiveType::Fixed(_) => {
            let Value::String(s) = v else {
                return expected("a base64 string");
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("not base64: {e}"))?;
            if let PrimitiveType::Fixed(n) = p
                && bytes.len() as u64 != *n
            {
                return Err(format!(
                    "{} bytes, the column holds exactly {n}",
                    bytes.len()
                ));
            }
            Ok(V::Bytes(bytes))
        }
    }
}

/// Microseconds (or nanoseconds) since the epoch from RFC 3339 text or epoch milliseconds.
fn timestamp(v: &Value, nanos: bool) -> Result<i64, String> {
    let out_of_range = || "the timestamp is out of range".to_owned();
    match v {
        Value::Number(n) => {
            let millis = n.as_i64().ok_or_else(|| {
                format!("{n} is not a whole number of milliseconds since the epoch")
            })?;
            millis
                .checked_mul(if nanos { 1_000_000 } else { 1_000 })
                .ok_or_else(out_of_range)
        }
        Value::String(s) => {
            let utc = match DateTime::parse_from_rfc3339(s) {
                Ok(t) => t.naive_utc(),
                Err(_) => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
                    .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp: {e}"))?,
            };
            let t = utc.and_utc();
            if nanos {
                t.timestamp_nanos_opt().ok_or_else(out_of_range)
            } else {
                Ok(t.timestamp_micros())
            }
        }
        _ => Err(format!(
            "expected an RFC 3339 string or epoch milliseconds, got {}",
            kind(v)
        )),
    }
}

/// A decimal's unscaled value, refusing digits the column cannot hold (no silent rounding).
fn decimal(text: &str, precision: u32, scale: u32) -> Result<i128, String> {
    let bad = || format!("{text:?} is not a decimal");
    let (negative, digits) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim().strip_prefix('+').unwrap_or(text.trim())),
    };
    if digits.contains(['e', 'E']) {
        return Err(format!(
            "{text:?}: exponent notation is not taken for decimals"
        ));
    }
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() as u32 > scale {
        return Err(format!(
            "{text:?} has more than {scale} digits after the point"
        ));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() as u32 + scale > precision {
        return Err(format!(
            "{text:?} does not fit decimal({precision}, {scale})"
        ));
    }
    let mut unscaled: i128 = 0;
    let padded = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(scale as usize);
    for b in whole.bytes().chain(padded) {
        unscaled = unscaled * 10 + i128::from(b - b'0');
    }
    Ok(if negative { -unscaled } else { unscaled })
}

fn uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

fn bytes_of<'a>(v: &&'a V) -> Option<&'a [u8]> {
    match v {
        V::Bytes(b) => Some(b.as_slice()),
        _ => None,
    }
}

fn str_of<'a>(v: &&'a V) -> Option<&'a str> {
    match v {
        V::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

fn prim<T: arrow_array::ArrowPrimitiveType>(
    vals: &[&V],
    get: impl Fn(&V) -> Option<T::Native>,
) -> PrimitiveArray<T> {
    vals.iter().map(|v| get(v)).collect()
}

fn build(dt: &DataType, vals: &[&V]) -> Result<ArrayRef, ArrowError> {
    let i32_of = |v: &V| match v {
        V::I32(x) => Some(*x),
        _ => None,
    };
    let i64_of = |v: &V| match v {
        V::I64(x) => Some(*x),
        _ => None,
    };
    Ok(match dt {
        DataType::Boolean => Arc::new(
            vals.iter()
                .map(|v| match v {
                    V::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        DataType::Int32 => Arc::new(prim::<Int32Type>(vals, i32_of)),
        DataType::Date32 => Arc::new(prim::<Date32Type>(vals, i32_of)),
        DataType::Int64 => Arc::new(prim::<Int64Type>(vals, i64_of)),
        DataType::Time64(TimeUnit::Microsecond) => {
            Arc::new(prim::<Time64MicrosecondType>(vals, i64_of))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            Arc::new(prim::<TimestampMicrosecondType>(vals, i64_of).with_timezone_opt(tz.clone()))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            Arc::new(prim::<TimestampNanosecondType>(vals, i64_of).with_timezone_opt(tz.clone()))
        }
        DataType::Float32 => Arc::new(prim::<Float32Type>(vals, |v| match v {
            V::F32(x) => Some(*x),
            _ => None,
        })),
        DataType::Float64 => Arc::new(prim::<Float64Type>(vals, |v| match v {
            V::F64(x) => Some(*x),
            _ => None,
        })),
        DataType::Decimal128(p, s) => Arc::new(
            vals.iter()
                .map(|v| match v {
                    V::Dec(x) => Some(*x),
                    _ => None,
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(*p, *s)?,
        ),
        DataType::Utf8 => Arc::new(vals.iter().map(str_of).collect::<StringArray>()),
        DataType::LargeUtf8 => Arc::new(vals.iter().map(str_of).collect::<LargeStringArray>()),
        DataType::Binary => Arc::new(vals.iter().map(bytes_of).collect::<BinaryArray>()),
        DataType::LargeBinary => Arc::new(vals.iter().map(bytes_of).collect::<LargeBinaryArray>()),
        DataType::FixedSizeBinary(n) => Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(vals.iter().map(bytes_of), *n)?,
        ),
        DataType::Struct(fields) => Arc::new(struct_array(fields, vals)?),
        DataType::List(field) => {
            let (lengths, values, nulls) = flatten(field, vals)?;
            Arc::new(ListArray::try_new(
                field.clone(),
                OffsetBuffer::from_lengths(lengths),
                values,
                nulls,
            )?)
        }
        DataType::LargeList(field) => {
            let (lengths, values, nulls) = flatten(field, vals)?;
            Arc::new(LargeListArray::try_new(
                field.clone(),
                OffsetBuffer::from_lengths(lengths),
                values,
                nulls,
            )?)
        }
        other => {
            return Err(ArrowError::NotYetImplemented(format!(
                "the Iceberg emitter does not write {other} columns"
            )));
        }
    })
}

fn nulls_of(vals: &[&V]) -> Option<NullBuffer> {
    if vals.iter().any(|v| matches!(v, V::Null)) {
        Some(vals.iter().map(|v| !matches!(v, V::Null)).collect())
    } else {
        None
    }
}

fn struct_array(fields: &Fields, vals: &[&V]) -> Result<StructArray, ArrowError> {
    let children = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let child: Vec<&V> = vals
                .iter()
                .map(|v| match v {
                    V::Struct(xs) => &xs[i],
                    _ => &NULL,
                })
                .collect();
            build(f.data_type(), &child)
        })
        .collect::<Result<Vec<_>, _>>()?;
    StructArray::try_new(fields.clone(), children, nulls_of(vals))
}

type Flattened = (Vec<usize>, ArrayRef, Option<NullBuffer>);

fn flatten(field: &Arc<Field>, vals: &[&V]) -> Result<Flattened, ArrowError> {
    let mut lengths = Vec::with_capacity(vals.len());
    let mut elements: Vec<&V> = Vec::new();
    for v in vals {
        match v {
            V::List(xs) => {
                lengths.push(xs.len());
                elements.extend(xs.iter());
            }
            _ => lengths.push(0),
        }
    }
    let values = build(field.data_type(), &elements)?;
    Ok((lengths, values, nulls_of(vals)))
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{ListType, Schema, StructType};

    use super::*;

    fn converter() -> Converter {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
                NestedField::optional(
                    3,
                    "price",
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: 10,
                        scale: 2,
                    }),
                )
                .into(),
                NestedField::optional(
                    4,
                    "tags",
                    Type::List(ListType::new(
                        NestedField::list_element(6, Type::Primitive(PrimitiveType::String), false)
                            .into(),
                    )),
                )
                .into(),
                NestedField::optional(
                    5,
                    "user",
                    Type::Struct(StructType::new(vec![
                        NestedField::optional(7, "name", Type::Primitive(PrimitiveType::String))
                            .into(),
                    ])),
                )
                .into(),
            ])
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        Converter::new(Arc::new(schema)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rows_fill_nested_columns_and_bad_items_name_the_column() {
        let c = converter();
        let good = [
            r#"{"id": 1, "ts": "2026-12-03T10:00:00+01:00", "price": "12.30", "tags": ["a", null], "user": {"name": "x"}}"#,
            r#"{"id": 2, "ts": 1764756000000, "price": 7}"#,
        ];
        let rows: Vec<Row> = good
            .iter()
            .map(|j| c.row(j.as_bytes()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(rows[0][1], V::I64(1_796_288_400_000_000));
        assert_eq!(rows[0][2], V::Dec(1230));
        assert_eq!(rows[1][1], V::I64(1_764_756_000_000_000));
        let batch = c.batch(&rows).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 5);
        for (json, column) in [
            (r#"{"ts": 1}"#, "column id"),
            (r#"{"id": "1"}"#, "column id"),
            (r#"{"id": 1, "price": "1.234"}"#, "column price"),
            (r#"{"id": 1, "tags": [1]}"#, "column tags[0]"),
            (r#"{"id": 1, "user": {"name": 5}}"#, "column user.name"),
            (r#"{"id": 1, "ts": "yesterday"}"#, "column ts"),
            (r#"[1]"#, "not a JSON object"),
        ] {
            let reason = c.row(json.as_bytes()).err().unwrap_or_default();
            assert!(reason.contains(column), "{json}: {reason}");
        }
    }

    #[test]
    fn decimals_refuse_digits_they_cannot_hold() {
        assert_eq!(decimal("-0.5", 3, 2), Ok(-50));
        assert_eq!(decimal("123.4500", 5, 2), Ok(12345));
        assert!(decimal("1234.5", 5, 2).is_err());
        assert!(decimal("1e3", 5, 2).is_err());
        assert!(decimal(".", 5, 2).is_err());
    }
}
