//! `docs/configuration.md` against the configuration types: every key the code accepts has a row,
//! every row is a key the code accepts, and the documented type agrees with what the type parses.
//!
//! The keys come from `config::reference_keys`, which reads them from the `Deserialize`
//! implementations (the top level, a pipeline, and every stage registered in the built-in registry),
//! so a key or a stage added without documentation fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use kinesis_connector::Registry;
use kinesis_connector::config::reference_keys;
use kinesis_connector::keys::{Key, KeyKind};

const REFERENCE: &str = include_str!("../../../docs/configuration.md");
const REFERENCE_PATH: &str = "docs/configuration.md";

/// One documented key.
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    key: String,
    ty: String,
    default: String,
    meaning: String,
}

/// Splits a table row into cells (a `\|` inside a cell is not a separator).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The words in backticks of a cell, without surrounding quotes.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

/// Documented rows by section, from `<!-- keys: SECTION, SECTION -->` markers and the table after each.
fn documented(text: &str) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("<!-- keys:") {
            current = rest
                .trim_end_matches("-->")
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect();
            for s in &current {
                assert!(
                    out.insert(s.clone(), Vec::new()).is_none(),
                    "{REFERENCE_PATH}:{}: section {s:?} marked twice",
                    i + 1
                );
            }
            in_table = true;
            continue;
        }
        if !t.starts_with('|') {
            if !t.is_empty() {
                in_table = false;
            }
            continue;
        }
        if !in_table {
            continue;
        }
        let c = cells(t);
        if c[0] == "key" || c[0].starts_with("---") {
            continue;
        }
        assert_eq!(
            c.len(),
            4,
            "{REFERENCE_PATH}:{}: a row has 4 cells: key, type, default, meaning",
            i + 1
        );
        let key = code_spans(&c[0]).into_iter().next().unwrap_or_default();
        for s in &current {
            out.get_mut(s).unwrap().push(Row {
                line: i + 1,
                key: key.clone(),
                ty: c[1].clone(),
                default: c[2].clone(),
                meaning: c[3].clone(),
            });
        }
    }
    out
}

/// Why a documented type does not fit the key's kind, if it does not.
fn type_mismatch(kind: &KeyKind, ty: &str) -> Option<String> {
    let starts = |w: &str| ty.starts_with(w);
    let ok = match kind {
        KeyKind::Integer => starts("integer"),
        KeyKind::Float => starts("float") || starts("number"),
        KeyKind::Bool => starts("bool"),
        KeyKind::Table | KeyKind::Tagged | KeyKind::OpenTable => starts("table"),
        KeyKind::List(_) => starts("list of"),
        KeyKind::String => ["string", "duration", "path", "url", "secret", "one of"]
            .iter()
            .any(|w| starts(w)),
        KeyKind::Choice(values) => {
            let listed = code_spans(ty);
            let missing: Vec<_> = values
                .iter()
                .filter(|v| !listed.iter().any(|l| l == *v))
                .collect();
            if !starts("one of") || !missing.is_empty() {
                return Some(format!(
                    "the type must read `one of` and list every value in backticks; missing: {missing:?}"
                ));
            }
            true
        }
        KeyKind::Any => true,
    };
    (!ok).then(|| format!("documented as {ty:?} but the code parses {kind}"))
}

/// Every mismatch between the code's keys and the reference.
fn problems(sections: &[(String, Vec<Key>)], docs: &BTreeMap<String, Vec<Row>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (section, keys) in sections {
        let Some(rows) = docs.get(section) else {
            problems.push(format!(
                "section {section:?} is not documented: add `<!-- keys: {section} -->` and a table of its keys ({})",
                keys.iter()
                    .map(|k| format!("{} {}", k.path, k.kind))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            continue;
        };
        let by_key: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
        for k in keys {
            match by_key.get(k.path.as_str()) {
                None => problems.push(format!(
                    "[{section}] key `{}` ({}) has no row",
                    k.path, k.kind
                )),
                Some(row) => {
                    if let Some(why) = type_mismatch(&k.kind, &row.ty) {
                        problems.push(format!(
                            "{REFERENCE_PATH}:{}: [{section}] `{}`: {why}",
                            row.line, k.path
                        ));
                    }
                    if row.default.is_empty() || row.meaning.is_empty() {
                        problems.push(format!(
                            "{REFERENCE_PATH}:{}: [{section}] `{}`: default and meaning must not be empty",
                            row.line, k.path
                        ));
                    }
                }
            }
        }
        let known: BTreeSet<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        for r in rows {
            if !known.contains(r.key.as_str()) {
                problems.push(format!(
                    "{REFERENCE_PATH}:{}: [{section}] `{}` is documented but the code has no such key",
                    r.line, r.key
                ));
            }
        }
    }
    let names: BTreeSet<&str> = sections.iter().map(|(s, _)| s.as_str()).collect();
    for s in docs.keys() {
        if !names.contains(s.as_str()) {
            problems.push(format!(
                "{REFERENCE_PATH}: section {s:?} is documented but no such stage is registered"
            ));
        }
    }
    problems
}

#[test]
fn every_configuration_key_is_documented_and_every_documented_key_exists() {
    let sections = reference_keys(&Registry::with_builtins());
    let docs = documented(REFERENCE);
    let problems = problems(&sections, &docs);
    assert!(
        problems.is_empty(),
        "{REFERENCE_PATH} and the configuration types disagree:\n  {}",
        problems.join("\n  ")
    );
    // The walk itself found the nested keys (a walk that found nothing would pass trivially).
    let pipeline = &sections.iter().find(|(s, _)| s == "pipeline").unwrap().1;
    for k in [
        "source.stream",
        "buffer.max_records",
        "checkpoint.failover_time",
    ] {
        assert!(pipeline.iter().any(|p| p.path == k), "{k} not found");
    }
}

/// The check itself: an undocumented key, a key documented but gone, a wrong type and a missing
/// choice value are each reported.
#[test]
fn the_check_reports_undocumented_missing_and_mistyped_keys() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Options {
        url: String,
        retries: Option<i64>,
        mode: Mode,
        tags: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Safe,
    }
    let keys = kinesis_connector::keys::keys_of::<Options>();
    let sections = vec![("emitter x".to_owned(), keys)];
    let docs = documented(
        "<!-- keys: emitter x -->
| key | type | default | meaning |
|---|---|---|---|
| `url` | integer | — | where |
| `mode` | one of `fast` | `\"fast\"` | how |
| `tags` | list of string | none | labels |
| `gone` | string | none | removed long ago |
",
    );
    let p = problems(&sections, &docs).join("\n");
    assert!(p.contains("`retries` (integer) has no row"), "{p}");
    assert!(
        p.contains("`gone` is documented but the code has no such key"),
        "{p}"
    );
    assert!(p.contains("`url`: documented as \"integer\""), "{p}");
    assert!(p.contains("`mode`") && p.contains("\"safe\""), "{p}");
    assert!(!p.contains("`tags`"), "{p}");
    let none = problems(&sections, &BTreeMap::new()).join("\n");
    assert!(
        none.contains("section \"emitter x\" is not documented"),
        "{none}"
    );
}
