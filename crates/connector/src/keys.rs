//! The keys a configuration type accepts, read from its `Deserialize` implementation.
//!
//! [`keys_of`] drives `T::deserialize` with a deserializer that answers nothing but records what the
//! type asks for: a struct names its fields (`deserialize_struct`), an enum its variants, a leaf its
//! kind (string, integer, ...). It walks one path at a time, starting over from the root for each key
//! (each walk ends in an error once the key is seen, so no value is ever built). Internally tagged
//! enums (`#[serde(tag = "type")]`) are probed for their tag, variants and each variant's fields through
//! the errors serde reports for an unknown variant and an unknown field (their fields are listed
//! when the variant denies unknown fields, as every configuration type here does).
//!
//! The configuration reference (`docs/configuration.md`) is checked against these keys by a test, so a
//! key added to a configuration type without documentation fails the build's tests.
//!
//! Not seen: keys of `#[serde(flatten)]` fields (they appear as an open table) and keys inside tagged
//! variants' fields below the first level.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// What a key holds, as far as its `Deserialize` implementation tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A string (also durations, paths, URLs and other types parsed from text).
    String,
    /// An integer.
    Integer,
    /// A floating-point number.
    Float,
    /// `true` or `false`.
    Bool,
    /// One of the listed names.
    Choice(Vec<&'static str>),
    /// A table of known keys (each listed as a key of its own).
    Table,
    /// A table with keys of the user's choosing (e.g. a map of headers, or a stage's options).
    OpenTable,
    /// A list; its elements' kind.
    List(Box<KeyKind>),
    /// A table picked by a tag key (e.g. `type`); the tag and the variants' fields are keys of their own.
    Tagged,
    /// Anything the type takes apart itself (several shapes, e.g. a size as a number or a string).
    Any,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::String => f.write_str("string"),
            KeyKind::Integer => f.write_str("integer"),
            KeyKind::Float => f.write_str("float"),
            KeyKind::Bool => f.write_str("bool"),
            KeyKind::Choice(v) => write!(f, "one of {}", v.join(", ")),
            KeyKind::Table | KeyKind::Tagged => f.write_str("table"),
            KeyKind::OpenTable => f.write_str("open table"),
            KeyKind::List(k) => write!(f, "list of {k}"),
            KeyKind::Any => f.write_str("any"),
        }
    }
}

/// One key: its dotted path (list elements as `[]`, e.g. `schema[].name`) and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The dotted path from the type's table.
    pub path: String,
    /// What it holds.
    pub kind: KeyKind,
}

/// Every key `T` accepts, in field order, nested tables' keys after their table's.
pub fn keys_of<T: DeserializeOwned>() -> Vec<Key> {
    let mut out = Vec::new();
    walk::<T>(&mut Vec::new(), &mut out);
    out
}

/// Probes the node at `path`, records it, and descends into its fields.
fn walk<T: DeserializeOwned>(path: &mut Vec<String>, out: &mut Vec<Key>) {
    let at = out.len();
    let kind = match probe::<T>(path, Probe::Shape) {
        Node::Struct(fields) => {
            for f in fields {
                path.push((*f).to_owned());
                walk::<T>(path, out);
                path.pop();
            }
            KeyKind::Table
        }
        Node::Leaf(kind) => kind,
        Node::Seq => {
            // The element's entry (`key[]`) gives the list's kind; its own keys (if a table) stay.
            path.push("[]".into());
            walk::<T>(path, out);
            path.pop();
            let element = out.remove(at);
            KeyKind::List(Box::new(element.kind))
        }
        Node::Tagged(tag) => {
            let variants = match probe::<T>(path, Probe::Tag(tag)) {
                Node::Leaf(KeyKind::Choice(v)) => v,
                _ => Vec::new(),
            };
            path.push(tag.to_owned());
            out.push(Key {
                path: join(path),
                kind: KeyKind::Choice(variants.clone()),
            });
            path.pop();
            let mut seen = BTreeSet::new();
            for v in variants {
                if let Node::Struct(fields) = probe::<T>(path, Probe::Variant(tag, v)) {
                    for f in fields.iter().filter(|f| **f != tag && seen.insert(**f)) {
                        path.push((*f).to_owned());
                        out.push(Key {
                            path: join(path),
                            kind: KeyKind::Any,
                        });
                        path.pop();
                    }
                }
            }
            KeyKind::Tagged
        }
    };
    if !path.is_empty() {
        out.insert(
            at,
            Key {
                path: join(path),
                kind,
            },
        );
    }
}

fn join(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if p != "[]" && !s.is_empty() {
            s.push('.');
        }
        s.push_str(p);
    }
    s
}

/// What a probe found at the end of its path.
#[derive(Clone, Debug)]
enum Node {
    Struct(&'static [&'static str]),
    Seq,
    Leaf(KeyKind),
    /// A tagged enum and its tag's key.
    Tagged(&'static str),
}

/// What to ask the node at the end of the path.
#[derive(Clone, Copy, Debug)]
enum Probe<'a> {
    /// Its shape (struct fields, list, leaf kind; for `deserialize_any`, whether it is a tagged enum).
    Shape,
    /// The variants of a tagged enum with this tag (as a [`KeyKind::Choice`]).
    Tag(&'a str),
    /// The fields of a tagged enum's variant.
    Variant(&'a str, &'static str),
}

/// A key that no configuration type has: asking for it makes a struct that denies unknown fields
/// list its fields.
const UNKNOWN: &str = "\u{0}probe";

fn probe<T: DeserializeOwned>(path: &[String], probe: Probe<'_>) -> Node {
    let found = RefCell::new(None);
    let result = T::deserialize(Walker {
        path,
        probe,
        found: &found,
    });
    match (found.into_inner(), result, probe) {
        (Some(node), _, _) => node,
        (None, Err(WalkError::UnknownField(fields)), Probe::Variant(..)) => Node::Struct(fields),
        (None, _, Probe::Variant(..)) => Node::Struct(&[]),
        (None, _, _) => Node::Leaf(KeyKind::Any),
    }
}

/// The error of a walk; records what serde says about unknown variants and fields.
#[derive(Debug)]
enum WalkError {
    Stop,
    MissingField(&'static str),
    UnknownVariant(&'static [&'static str]),
    UnknownField(&'static [&'static str]),
    Other,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for WalkError {}

impl de::Error for WalkError {
    fn custom<M: fmt::Display>(_: M) -> Self {
        WalkError::Other
    }
    fn missing_field(field: &'static str) -> Self {
        WalkError::MissingField(field)
    }
    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        WalkError::UnknownVariant(expected)
    }
    fn unknown_field(_: &str, expected: &'static [&'static str]) -> Self {
        WalkError::UnknownField(expected)
    }
}

struct Walker<'a> {
    path: &'a [String],
    probe: Probe<'a>,
    found: &'a RefCell<Option<Node>>,
}

impl Walker<'_> {
    fn found<V>(&self, node: Node) -> Result<V, WalkError> {
        if self.path.is_empty() {
            *self.found.borrow_mut() = Some(node);
        }
        Err(WalkError::Stop)
    }

    fn leaf<V>(&self, kind: KeyKind) -> Result<V, WalkError> {
        self.found(Node::Leaf(kind))
    }
}

macro_rules! leaves {
    ($($method:ident => $kind:expr),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, WalkError> {
            self.leaf($kind)
        })*
    };
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = WalkError;

    leaves! {
        deserialize_bool => KeyKind::Bool,
        deserialize_i8 => KeyKind::Integer,
        deserialize_i16 => KeyKind::Integer,
        deserialize_i32 => KeyKind::Integer,
        deserialize_i64 => KeyKind::Integer,
        deserialize_i128 => KeyKind::Integer,
        deserialize_u8 => KeyKind::Integer,
        deserialize_u16 => KeyKind::Integer,
        deserialize_u32 => KeyKind::Integer,
        deserialize_u64 => KeyKind::Integer,
        deserialize_u128 => KeyKind::Integer,
        deserialize_f32 => KeyKind::Float,
        deserialize_f64 => KeyKind::Float,
        deserialize_char => KeyKind::String,
        deserialize_str => KeyKind::String,
        deserialize_string => KeyKind::String,
        deserialize_bytes => KeyKind::Any,
        deserialize_byte_buf => KeyKind::Any,
        deserialize_unit => KeyKind::Any,
        deserialize_identifier => KeyKind::String,
        deserialize_ignored_any => KeyKind::Any,
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        if !self.path.is_empty() {
            // Cannot descend through a type that takes its input apart itself.
            return Err(WalkError::Stop);
        }
        match self.probe {
            Probe::Shape => {
                // A tagged enum asks for its tag first: an empty table makes it name the tag.
                match visitor.visit_map(Entries(Vec::new())) {
                    Err(WalkError::MissingField(tag)) => self.found(Node::Tagged(tag)),
                    _ => self.leaf(KeyKind::Any),
                }
            }
            Probe::Tag(tag) => match visitor.visit_map(Entries(vec![(tag, UNKNOWN)])) {
                Err(WalkError::UnknownVariant(variants)) => {
                    self.leaf(KeyKind::Choice(variants.to_vec()))
                }
                _ => self.leaf(KeyKind::Any),
            },
            // The tag's visitor only collects the table; the variant is read from it after this
            // returns, and its unknown-field error (the variant's fields) ends the walk: see `probe`.
            Probe::Variant(tag, variant) => {
                visitor.visit_map(Entries(vec![(tag, variant), (UNKNOWN, "")]))
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, WalkError> {
        self.leaf(KeyKind::Any)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.path.split_first() {
            None => self.found(Node::Seq),
            Some((first, rest)) if first == "[]" => visitor.visit_seq(One(Some(Walker {
                path: rest,
                probe: self.probe,
                found: self.found,
            }))),
            Some(_) => Err(WalkError::Stop),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, WalkError> {
        self.leaf(KeyKind::Any)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, WalkError> {
        self.leaf(KeyKind::Any)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, WalkError> {
        self.leaf(KeyKind::OpenTable)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        match self.path.split_first() {
            None => self.found(Node::Struct(fields)),
            Some((first, rest)) => visitor.visit_map(Descend {
                key: Some(first),
                value: Some(Walker {
                    path: rest,
                    probe: self.probe,
                    found: self.found,
                }),
            }),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, WalkError> {
        self.leaf(KeyKind::Choice(variants.to_vec()))
    }
}

/// A table with the given string entries.
struct Entries<'a>(Vec<(&'a str, &'a str)>);

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = WalkError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        match self.0.first() {
            Some((k, _)) => seed.deserialize((*k).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, WalkError> {
        let (_, v) = self.0.remove(0);
        seed.deserialize(de::value::StrDeserializer::<WalkError>::new(v))
    }
}

/// A table with one key whose value is walked further.
struct Descend<'a, 'w> {
    key: Option<&'a str>,
    value: Option<Walker<'w>>,
}

impl<'de> MapAccess<'de> for Descend<'_, '_> {
    type Error = WalkError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        match self.key.take() {
            Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, WalkError> {
        match self.value.take() {
            Some(w) => seed.deserialize(w),
            None => Err(WalkError::Stop),
        }
    }
}

/// A list with one element that is walked further.
struct One<'w>(Option<Walker<'w>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = WalkError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        match self.0.take() {
            Some(w) => seed.deserialize(w).map(Some),
            None => Ok(None),
        }
    }
}
