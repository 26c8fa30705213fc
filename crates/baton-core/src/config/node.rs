//! A generic YAML tree in which every node, key and item carries its source position.
//!
//! The loader parses each file into this tree first and validates the tree by hand, so one bad
//! entry never hides the errors of the others, and every error points at the node it concerns.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line/column position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML value with the position where it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Spanned<Value> = Spanned::deserialize(d)?;
        Ok(Node {
            pos: Pos {
                line: usize::try_from(s.referenced.line()).unwrap_or(1).max(1),
                col: usize::try_from(s.referenced.column()).unwrap_or(1).max(1),
            },
            value: s.value,
        })
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Value::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            out.push((k, v));
        }
        Ok(Value::Map(out))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl Node {
    /// "a string", "a list", … for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A scalar as text (strings as is; numbers and booleans in their canonical spelling).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// Parses one YAML document. `Ok(None)` for an empty document.
///
/// # Errors
/// A syntax error, as its position and message.
pub fn parse(text: &str) -> Result<Option<Node>, (Pos, String)> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        // Repeated keys reach the visitor; the validator reports them with both positions.
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        // YAML 1.2: `yes`/`no`/`on`/`off` stay strings (boolean fields accept them explicitly),
        // so a script line like `- on` is kept as written.
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options::<Option<Node>>(text, options).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos {
                line: usize::try_from(l.line()).unwrap_or(1).max(1),
                col: usize::try_from(l.column()).unwrap_or(1).max(1),
            })
            .unwrap_or(Pos { line: 1, col: 1 });
        let mut message = e.without_snippet().to_string();
        // The position is reported separately.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        (pos, format!("YAML syntax error: {message}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_values() {
        let Ok(Some(n)) = parse("a: 1\nb:\n  - x\n  - {c: true, d: ~}\ne: on\n") else {
            panic!("parse failed");
        };
        let Value::Map(entries) = &n.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].1.value, Value::Int(1));
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].pos.line, 4);
        assert_eq!(entries[2].1.value, Value::Str("on".into()));
    }

    #[test]
    fn empty_and_errors() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("# only a comment\n"), Ok(None));
        let Err((pos, msg)) = parse("a: [1, 2\n") else {
            panic!("should fail")
        };
        assert_eq!(pos, Pos { line: 1, col: 4 });
        assert!(msg.starts_with("YAML syntax error: "), "{msg}");
        assert!(!msg.contains("at line"), "{msg}");
    }

    #[test]
    fn duplicate_keys_pass_through() {
        let Ok(Some(n)) = parse("a: 1\na: 2\n") else {
            panic!("parse failed")
        };
        let Value::Map(entries) = &n.value else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
    }
}
