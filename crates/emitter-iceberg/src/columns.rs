//! Column types and partition transforms as written in `connectors.toml`, and the Iceberg schema and
//! partition spec made from them.

use iceberg::spec::{
    ListType, NestedField, PrimitiveType, Schema, StructType, Transform, Type, UnboundPartitionSpec,
};

/// A column type: `long`, `decimal(10, 2)`, `list<string>`, `struct<a: long, b: list<double>>`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// A primitive Iceberg type.
    Primitive(PrimitiveType),
    /// A list of elements (elements may be null).
    List(Box<ColumnType>),
    /// A struct of optional fields.
    Struct(Vec<(String, ColumnType)>),
}

impl ColumnType {
    /// Parses a type as written in `columns`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser { s: text, at: 0 };
        let t = p.ty()?;
        p.ws();
        if p.at != p.s.len() {
            return Err(format!("unexpected {:?} after the type", &p.s[p.at..]));
        }
        Ok(t)
    }

    /// The Iceberg type, with field ids drawn from `next_id`.
    pub(crate) fn to_iceberg(&self, next_id: &mut i32) -> Type {
        match self {
            Self::Primitive(p) => Type::Primitive(p.clone()),
            Self::List(element) => {
                *next_id += 1;
                let id = *next_id;
                let element = element.to_iceberg(next_id);
                Type::List(ListType::new(
                    NestedField::list_element(id, element, false).into(),
                ))
            }
            Self::Struct(fields) => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, t) in fields {
                    *next_id += 1;
                    let id = *next_id;
                    out.push(NestedField::optional(id, name, t.to_iceberg(next_id)).into());
                }
                Type::Struct(StructType::new(out))
            }
        }
    }
}

/// The schema of a table created from `columns`.
pub(crate) fn schema(columns: &[(String, ColumnType, bool)]) -> iceberg::Result<Schema> {
    // Top-level ids first (1..=n), so partition sources are easy to read in the metadata.
    let mut next_id = columns.len() as i32;
    let fields = columns.iter().enumerate().map(|(i, (name, t, required))| {
        NestedField::new(i as i32 + 1, name, t.to_iceberg(&mut next_id), *required).into()
    });
    Schema::builder()
        .with_fields(fields.collect::<Vec<_>>())
        .build()
}

/// The partition spec of a table created from `partition_by`.
pub(crate) fn partition_spec(
    schema: &Schema,
    fields: &[PartitionField],
) -> iceberg::Result<UnboundPartitionSpec> {
    let mut spec = UnboundPartitionSpec::builder();
    for f in fields {
        let source = schema.field_by_name(&f.column).ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("no column {:?}", f.column),
            )
        })?;
        spec = spec.add_partition_field(source.id, f.name(), f.transform)?;
    }
    Ok(spec.build())
}

/// One `partition_by` entry: a transform of a top-level column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    /// The source column.
    pub column: String,
    /// The transform.
    pub transform: Transform,
}

impl PartitionField {
    /// Parses `identity(c)`, `year(c)`, `month(c)`, `day(c)`, `hour(c)`, `bucket(N, c)`, `truncate(W, c)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, rest) = text
            .split_once('(')
            .ok_or("expected transform(column), e.g. day(ts)")?;
        let args = rest
            .strip_suffix(')')
            .ok_or("missing the closing parenthesis")?;
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let one = |args: &[&str]| match args {
            [c] if !c.is_empty() => Ok(c.to_string()),
            _ => Err(format!("{name}(column) takes one column")),
        };
        let two = |args: &[&str]| match args {
            [n, c] if !c.is_empty() => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| (n, c.to_string()))
                .ok_or_else(|| format!("{name}(N, column) takes a positive whole number first")),
            _ => Err(format!("{name}(N, column) takes a number and a column")),
        };
        let (transform, column) = match name.trim() {
            "identity" => (Transform::Identity, one(&args)?),
            "year" => (Transform::Year, one(&args)?),
            "month" => (Transform::Month, one(&args)?),
            "day" => (Transform::Day, one(&args)?),
            "hour" => (Transform::Hour, one(&args)?),
            "bucket" => {
                let (n, c) = two(&args)?;
                (Transform::Bucket(n), c)
            }
            "truncate" => {
                let (n, c) = two(&args)?;
                (Transform::Truncate(n), c)
            }
            other => {
                return Err(format!(
                    "unknown transform {other:?} (identity, year, month, day, hour, bucket, truncate)"
                ));
            }
        };
        Ok(Self { column, transform })
    }

    /// The partition field's name, as Spark and PyIceberg name them (`ts_day`, `id_bucket`).
    pub fn name(&self) -> String {
        let suffix = match self.transform {
            Transform::Identity => return self.column.clone(),
            Transform::Year => "year",
            Transform::Month => "month",
            Transform::Day => "day",
            Transform::Hour => "hour",
            Transform::Bucket(_) => "bucket",
            Transform::Truncate(_) => "trunc",
            _ => "part",
        };
        format!("{}_{suffix}", self.column)
    }

    /// Whether the transform applies to a column of type `source`.
    pub fn check_source(&self, source: &ColumnType) -> Result<(), String> {
        let ColumnType::Primitive(p) = source else {
            return Err("only a primitive column can be partitioned on".into());
        };
        let ok = Type::Primitive(p.clone());
        match self.transform.result_type(&ok) {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "{:?} does not apply to a {p} column",
                self.transform
            )),
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s[self.at..].starts_with(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn word(&mut self) -> &str {
        self.ws();
        let start = self.at;
        while self.s[self.at..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            self.at += 1;
        }
        &self.s[start..self.at]
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.s[self.at..].starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?} at offset {}", self.at))
        }
    }

    fn number(&mut self) -> Result<u32, String> {
        let w = self.word().to_owned();
        w.parse()
            .map_err(|_| format!("expected a number, got {w:?}"))
    }

    fn ty(&mut self) -> Result<ColumnType, String> {
        let word = self.word().to_ascii_lowercase();
        let p = match word.as_str() {
            "boolean" => PrimitiveType::Boolean,
            "int" => PrimitiveType::Int,
            "long" => PrimitiveType::Long,
            "float" => PrimitiveType::Float,
            "double" => PrimitiveType::Double,
            "date" => PrimitiveType::Date,
            "time" => PrimitiveType::Time,
            "timestamp" => PrimitiveType::Timestamp,
            "timestamptz" => PrimitiveType::Timestamptz,
            "string" => PrimitiveType::String,
            "uuid" => PrimitiveType::Uuid,
            "binary" => PrimitiveType::Binary,
            "decimal" => {
                self.expect('(')?;
                let precision = self.number()?;
                self.expect(',')?;
                let scale = self.number()?;
                self.expect(')')?;
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(format!(
                        "decimal({precision}, {scale}): precision 1 to 38, scale at most the precision"
                    ));
                }
                PrimitiveType::Decimal { precision, scale }
            }
            "fixed" => {
                self.expect('[')?;
                let n = self.number()?;
                self.expect(']')?;
                PrimitiveType::Fixed(u64::from(n))
            }
            "list" => {
                self.expect('<')?;
                let element = self.ty()?;
                self.expect('>')?;
                return Ok(ColumnType::List(Box::new(element)));
            }
            "struct" => {
                self.expect('<')?;
                let mut fields = Vec::new();
                loop {
                    let name = self.word().to_owned();
                    if name.is_empty() {
                        return Err(format!("expected a field name at offset {}", self.at));
                    }
                    self.expect(':')?;
                    fields.push((name, self.ty()?));
                    if !self.eat(',') {
                        break;
                    }
                }
                self.expect('>')?;
                return Ok(ColumnType::Struct(fields));
            }
            "" => return Err("expected a type".into()),
            other => {
                return Err(format!(
                    "unknown type {other:?} (boolean, int, long, float, double, decimal(P, S), date, time, timestamp, timestamptz, string, uuid, binary, fixed[N], list<T>, struct<name: T, ...>)"
                ));
            }
        };
        Ok(ColumnType::Primitive(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_types_parse() {
        let t = ColumnType::parse("struct<a: long, tags: list<string>, price: decimal(10, 2)>")
            .unwrap_or_else(|e| panic!("{e}"));
        let ColumnType::Struct(fields) = t else {
            panic!("not a struct")
        };
        assert_eq!(fields.len(), 3);
        assert!(ColumnType::parse("list<>").is_err());
        assert!(ColumnType::parse("decimal(40, 2)").is_err());
        assert!(ColumnType::parse("long long").is_err());
    }

    #[test]
    fn partition_fields_parse() {
        let f = PartitionField::parse("bucket(16, id)").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.transform, Transform::Bucket(16));
        assert_eq!(f.name(), "id_bucket");
        assert!(PartitionField::parse("day ts").is_err());
        assert!(PartitionField::parse("bucket(0, id)").is_err());
        assert!(PartitionField::parse("week(ts)").is_err());
    }
}
