//! Reading fields out of a JSON payload with errors that name the field's path.

use serde_json::Value;

use crate::ParseError;

static NULL: Value = Value::Null;

/// A value inside a payload, with its path from the root (`pull_request.head.sha`).
#[derive(Clone)]
pub(crate) struct At<'a> {
    pub(crate) value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    pub(crate) fn root(value: &'a Value) -> At<'a> {
        At {
            value,
            path: String::new(),
        }
    }

    /// The child `key` (null when absent or when this is not an object).
    pub(crate) fn get(&self, key: &str) -> At<'a> {
        At {
            value: self.value.get(key).unwrap_or(&NULL),
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
        }
    }

    /// The `i`th element of a list (null when out of range).
    pub(crate) fn get_index(&self, i: usize) -> At<'a> {
        At {
            value: self.value.get(i).unwrap_or(&NULL),
            path: format!("{}[{i}]", self.path),
        }
    }

    pub(crate) fn path(&self) -> String {
        self.path.clone()
    }

    fn problem(&self, expected: &str) -> ParseError {
        let found = match self.value {
            Value::Null => "missing or null".to_owned(),
            Value::Bool(_) => "a boolean".to_owned(),
            Value::Number(_) => "a number".to_owned(),
            Value::String(_) => "a string".to_owned(),
            Value::Array(_) => "a list".to_owned(),
            Value::Object(_) => "an object".to_owned(),
        };
        ParseError::Field {
            path: self.path(),
            problem: format!("{found}, expected {expected}"),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        self.value.is_null()
    }

    pub(crate) fn str(&self) -> Result<&'a str, ParseError> {
        self.value.as_str().ok_or_else(|| self.problem("a string"))
    }

    pub(crate) fn opt_str(&self) -> Option<&'a str> {
        self.value.as_str()
    }

    pub(crate) fn u64(&self) -> Result<u64, ParseError> {
        self.value
            .as_u64()
            .ok_or_else(|| self.problem("a non-negative integer"))
    }

    pub(crate) fn opt_bool(&self) -> Option<bool> {
        self.value.as_bool()
    }

    /// The elements of a list; empty when absent or null.
    pub(crate) fn list(&self) -> Result<&'a [Value], ParseError> {
        match self.value {
            Value::Null => Ok(&[]),
            Value::Array(a) => Ok(a),
            _ => Err(self.problem("a list")),
        }
    }

    /// Strings of a list of strings; empty when absent or null.
    pub(crate) fn strings(&self) -> Result<Vec<&'a str>, ParseError> {
        self.list()?
            .iter()
            .map(|v| v.as_str().ok_or_else(|| self.problem("a list of strings")))
            .collect()
    }
}

/// Parses a body as JSON, reporting the line and column of a syntax error.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::NotJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_field() {
        let v: Value = serde_json::json!({"a": {"b": 3}});
        let root = At::root(&v);
        let a = root.get("a");
        let err = a.get("b").str().unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `a.b` is a number, expected a string"
        );
        let err = a.get("c").u64().unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `a.c` is missing or null, expected a non-negative integer"
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = parse_body(b"[1,\n 2 x]").unwrap_err();
        match err {
            ParseError::NotJson { line, column, .. } => assert_eq!((line, column), (2, 4)),
            other => panic!("{other:?}"),
        }
    }
}
