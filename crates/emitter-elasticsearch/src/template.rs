//! Index name templates: `logs`, `logs-{yyyy.MM.dd}`, `events-{field:tenant}-{yyyy.MM}`.
//!
//! A placeholder is either a date pattern — the letters `yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`, `ss`
//! (Java/Joda meaning: `MM` month, `mm` minute) and the separators `.`, `-`, `_` — filled from the
//! record's arrival time (UTC) or from the `index_date_field`; or `field:PATH`, filled with the value
//! of a field of the item (a string, number or boolean). The literal text is checked against
//! Elasticsearch's index-name rules when the configuration is loaded; a rendered name that breaks them
//! (e.g. an upper-case field value) is rejected by the server for that item alone, with its reason.

use std::fmt;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use kinesis_connectors_core::{FieldPath, Item};
use serde::Deserialize;
use serde_json::Value;

/// Characters Elasticsearch and OpenSearch never accept in an index name.
const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

#[derive(Clone, Debug, PartialEq, Eq)]
enum DateToken {
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Separator(char),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Date(Vec<DateToken>),
    Field(FieldPath),
}

/// A parsed index name template; see the module documentation.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IndexTemplate {
    text: String,
    parts: Vec<Part>,
}

impl fmt::Debug for IndexTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl TryFrom<String> for IndexTemplate {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl IndexTemplate {
    /// Parses a template, checking its literal text against the index-name rules.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("{text:?}: unmatched \"}}\""));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| format!("{text:?}: unclosed \"{{\""))?;
                    let inner = &after[..end];
                    parts.push(parse_placeholder(inner).map_err(|e| format!("{text:?}: {e}"))?);
                    rest = &after[end + 1..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        for part in &parts {
            if let Part::Literal(l) = part {
                if let Some(c) = l.chars().find(|c| FORBIDDEN.contains(c)) {
                    return Err(format!(
                        "{text:?}: an index name must not contain {c:?} (nor any of \\ / * ? \" < > | , # : or a space)"
                    ));
                }
                if l.chars().any(char::is_uppercase) {
                    return Err(format!("{text:?}: an index name must be lowercase"));
                }
            }
        }
        if let Some(Part::Literal(first)) = parts.first() {
            if first.starts_with(['-', '_', '+']) {
                return Err(format!(
                    "{text:?}: an index name must not start with '-', '_' or '+'"
                ));
            }
            if parts.len() == 1 && (first == "." || first == "..") {
                return Err(format!("{text:?} is not a valid index name"));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The index name when the template has no placeholder.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(l)] => Some(l),
            _ => None,
        }
    }

    /// Whether the template holds a date pattern.
    pub fn uses_date(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Date(_)))
    }

    /// Writes the index name for `item` into `out` (cleared first). `date` is called only when the
    /// template holds a date pattern. Errors say why the item has no index name (a missing field).
    pub(crate) fn render(
        &self,
        out: &mut String,
        item: &Item,
        date: impl FnOnce() -> Result<DateTime<Utc>, String>,
    ) -> Result<(), String> {
        out.clear();
        let mut date = Some(date);
        let mut when: Option<DateTime<Utc>> = None;
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Field(path) => match item.field(path) {
                    Some(Value::String(s)) => out.push_str(&s),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                        let _ = write!(out, "{v}");
                    }
                    Some(Value::Null) | None => {
                        return Err(format!("index template field {path} is missing"));
                    }
                    Some(_) => {
                        return Err(format!(
                            "index template field {path} is not a string, number or boolean"
                        ));
                    }
                },
                Part::Date(tokens) => {
                    let t = match (when, date.take()) {
                        (Some(t), _) => t,
                        (None, Some(f)) => f()?,
                        (None, None) => return Err("no date for the index template".into()),
                    };
                    when = Some(t);
                    for token in tokens {
                        // Writing to a String cannot fail.
                        let _ = match token {
                            DateToken::Year4 => write!(out, "{:04}", t.year()),
                            DateToken::Year2 => write!(out, "{:02}", t.year().rem_euclid(100)),
                            DateToken::Month => write!(out, "{:02}", t.month()),
                            DateToken::Day => write!(out, "{:02}", t.day()),
                            DateToken::Hour => write!(out, "{:02}", t.hour()),
                            DateToken::Minute => write!(out, "{:02}", t.minute()),
                            DateToken::Second => write!(out, "{:02}", t.second()),
                            DateToken::Separator(c) => write!(out, "{c}"),
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

fn parse_placeholder(inner: &str) -> Result<Part, String> {
    if let Some(path) = inner.strip_prefix("field:") {
        return FieldPath::parse(path.trim())
            .map(Part::Field)
            .ok_or_else(|| format!("invalid field path {path:?} in {{{inner}}}"));
    }
    let mut tokens = Vec::new();
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let token = match (c, run) {
            ('y', 4) => DateToken::Year4,
            ('y', 2) => DateToken::Year2,
            ('M', 2) => DateToken::Month,
            ('d', 2) => DateToken::Day,
            ('H', 2) => DateToken::Hour,
            ('m', 2) => DateToken::Minute,
            ('s', 2) => DateToken::Second,
            ('.' | '-' | '_', _) => {
                i += 1;
                tokens.push(DateToken::Separator(c));
                continue;
            }
            _ => {
                return Err(format!(
                    "unknown placeholder {{{inner}}}: write a date pattern of yyyy, yy, MM, dd, HH, mm, ss \
                     and . - _ (e.g. {{yyyy.MM.dd}}), or {{field:PATH}}"
                ));
            }
        };
        tokens.push(token);
        i += run;
    }
    if !tokens.iter().any(|t| !matches!(t, DateToken::Separator(_))) {
        return Err(format!("empty placeholder {{{inner}}}"));
    }
    Ok(Part::Date(tokens))
}

/// Reads a date from a field value: RFC 3339 text (`2026-11-25T10:00:00Z`), a date and time without a
/// zone (taken as UTC), a date (`2026-11-25`), or epoch milliseconds (a number) — the forms of
/// Elasticsearch's default `strict_date_optional_time||epoch_millis`.
pub(crate) fn parse_date(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc));
            }
            for format in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                    return Ok(Utc.from_utc_datetime(&t));
                }
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Ok(Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)));
            }
            Err(format!(
                "{s:?} is not a date (RFC 3339, yyyy-MM-dd or epoch milliseconds)"
            ))
        }
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .ok_or_else(|| format!("{n} is out of range for epoch milliseconds")),
        other => Err(format!(
            "{other} is not a date (RFC 3339, yyyy-MM-dd or epoch milliseconds)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn item(text: &str) -> Item {
        Item::parse_json(Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn render(t: &str, it: &Item, when: &str) -> Result<String, String> {
        let mut out = String::new();
        let w = at(when);
        IndexTemplate::parse(t)?.render(&mut out, it, || Ok(w))?;
        Ok(out)
    }

    #[test]
    fn fixed_dates_and_fields() {
        let it = item(r#"{"tenant":"acme","n":7,"deep":{"k":"v"}}"#);
        assert_eq!(IndexTemplate::parse("logs").unwrap().fixed(), Some("logs"));
        assert_eq!(render("logs", &it, "2026-11-25T10:11:12Z").unwrap(), "logs");
        assert_eq!(
            render("logs-{yyyy.MM.dd}", &it, "2026-01-05T23:59:59Z").unwrap(),
            "logs-2026.01.05"
        );
        assert_eq!(
            render("logs-{yy-MM-dd_HH.mm.ss}", &it, "2026-01-05T03:04:05+01:00").unwrap(),
            "logs-26-01-05_02.04.05",
            "UTC"
        );
        assert_eq!(
            render(
                "ev-{field:tenant}-{field:n}-{yyyy.MM}",
                &it,
                "2026-03-01T00:00:00Z"
            )
            .unwrap(),
            "ev-acme-7-2026.03"
        );
        assert_eq!(
            render("ev-{field:deep.k}", &it, "2026-03-01T00:00:00Z").unwrap(),
            "ev-v"
        );
        assert!(
            render("ev-{field:missing}", &it, "2026-03-01T00:00:00Z")
                .unwrap_err()
                .contains("missing")
        );
        assert!(
            render("ev-{field:deep}", &it, "2026-03-01T00:00:00Z")
                .unwrap_err()
                .contains("not a string")
        );
    }

    #[test]
    fn the_date_is_asked_for_only_when_used() {
        let t = IndexTemplate::parse("ev-{field:tenant}").unwrap();
        let mut out = String::new();
        t.render(&mut out, &item(r#"{"tenant":"a"}"#), || {
            Err("not asked".into())
        })
        .unwrap();
        assert_eq!(out, "ev-a");
    }

    #[test]
    fn invalid_templates_are_rejected() {
        for (t, why) in [
            ("", "empty"),
            ("Logs", "lowercase"),
            ("a b", "must not contain"),
            ("a*", "must not contain"),
            ("-x", "must not start"),
            ("logs-{yyyy.MM.dd", "unclosed"),
            ("logs-}", "unmatched"),
            ("logs-{YYYY}", "unknown placeholder"),
            ("logs-{yyy}", "unknown placeholder"),
            ("logs-{..}", "empty placeholder"),
            ("logs-{field:a..b}", "invalid field path"),
            ("..", "not a valid"),
        ] {
            let err = IndexTemplate::parse(t).unwrap_err();
            assert!(err.contains(why), "{t}: {err}");
        }
    }

    #[test]
    fn dates_from_fields() {
        let ok = |v: Value, expect: &str| assert_eq!(parse_date(&v).unwrap(), at(expect), "{v}");
        ok(Value::from("2026-11-25T10:00:00Z"), "2026-11-25T10:00:00Z");
        ok(
            Value::from("2026-11-25T12:00:00+02:00"),
            "2026-11-25T10:00:00Z",
        );
        ok(
            Value::from("2026-11-25T10:00:00.123"),
            "2026-11-25T10:00:00.123Z",
        );
        ok(Value::from("2026-11-25 10:00:00"), "2026-11-25T10:00:00Z");
        ok(Value::from("2026-11-25"), "2026-11-25T00:00:00Z");
        ok(Value::from(1_764_064_800_000i64), "2025-11-25T10:00:00Z");
        assert!(parse_date(&Value::from("yesterday")).is_err());
        assert!(parse_date(&Value::Bool(true)).is_err());
    }
}
