//! The building blocks: places in the loaded files, the entries and fields of mappings, and
//! [`Diags`], which collects every diagnostic while reading typed values out of the tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DEFAULT_QUEUE, hide};
use crate::config::Diagnostic;
use crate::config::duration::{invalid_duration, parse_duration_in};
use crate::config::model::{EnvValue, SecretValue};
use crate::config::node::{Node, Pos, Value};
use crate::config::template::{rewrite_templates, unsupported_templates};

pub(super) type FileId = usize;

/// A position in one of the loaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(super) file: FileId,
    pub(super) pos: Pos,
}

/// A `key: value` pair of a mapping, with the key's name and place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'n> {
    pub(crate) name: &'n str,
    pub(crate) key: Loc,
    pub(crate) value: &'n Node,
}

impl Entry<'_> {
    pub(crate) fn value_loc(&self) -> Loc {
        Loc {
            file: self.key.file,
            pos: self.value.pos,
        }
    }
}

/// The fields of a mapping, after unknown and repeated keys have been reported.
/// Fields whose value is null are treated as absent.
#[derive(Debug, Default)]
pub(super) struct Fields<'n> {
    pub(super) entries: Vec<Entry<'n>>,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<Entry<'n>> {
        self.entries
            .iter()
            .find(|e| e.name == key && !e.value.is_null())
            .copied()
    }
}

/// Collects the diagnostics.
pub(crate) struct Diags<'f> {
    pub(super) files: &'f [PathBuf],
    pub(super) list: Vec<Diagnostic>,
    /// Where a value the loader hid ([`hide`]) is written: (file, its key, its value), so the
    /// text of a definition as written can be shown without it.
    pub(super) hidden_at: Vec<(FileId, Pos, Pos)>,
}

impl Diags<'_> {
    /// The file a place is in.
    pub(crate) fn file(&self, loc: Loc) -> &Path {
        &self.files[loc.file]
    }

    pub(crate) fn err(&mut self, loc: Loc, message: impl Into<String>) {
        self.list.push(Diagnostic {
            file: self.files[loc.file].clone(),
            line: loc.pos.line,
            col: loc.pos.col,
            message: message.into(),
        });
    }

    pub(super) fn place(&self, loc: Loc) -> String {
        format!(
            "{}:{}:{}",
            self.files[loc.file].display(),
            loc.pos.line,
            loc.pos.col
        )
    }

    /// The entries of a mapping (null = empty). Keys must be scalars.
    pub(super) fn entries<'n>(
        &mut self,
        file: FileId,
        node: &'n Node,
        what: &str,
    ) -> Vec<Entry<'n>> {
        let loc = Loc {
            file,
            pos: node.pos,
        };
        match &node.value {
            Value::Null => Vec::new(),
            Value::Map(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let key = Loc { file, pos: k.pos };
                    match &k.value {
                        Value::Str(name) => out.push(Entry {
                            name,
                            key,
                            value: v,
                        }),
                        _ => self.err(
                            key,
                            format!("expected a string key in {what}, found {}", k.kind()),
                        ),
                    }
                }
                out
            }
            _ => {
                self.err(
                    loc,
                    format!("expected a mapping for {what}, found {}", node.kind()),
                );
                Vec::new()
            }
        }
    }

    /// `entries`, keeping the first of repeated names; `dup(name, first_place)` is the message
    /// for a repeat.
    pub(super) fn unique<'n>(
        &mut self,
        entries: Vec<Entry<'n>>,
        dup: impl Fn(&str, &str) -> String,
    ) -> BTreeMap<&'n str, Entry<'n>> {
        let mut out: BTreeMap<&'n str, Entry<'n>> = BTreeMap::new();
        for e in entries {
            if let Some(first) = out.get(e.name) {
                let msg = dup(e.name, &self.place(first.key));
                self.err(e.key, msg);
            } else {
                out.insert(e.name, e);
            }
        }
        out
    }

    /// The fields of the mapping `node` (null = no fields), reporting unknown and repeated keys.
    /// `None` when `node` is not a mapping (reported).
    pub(super) fn fields<'n>(
        &mut self,
        file: FileId,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        if !matches!(node.value, Value::Null | Value::Map(_)) {
            self.err(
                Loc {
                    file,
                    pos: node.pos,
                },
                format!("expected a mapping for {what}, found {}", node.kind()),
            );
            return None;
        }
        let mut fields = Fields::default();
        for e in self.entries(file, node, what) {
            if !allowed.contains(&e.name) {
                self.err(
                    e.key,
                    match did_you_mean(e.name, allowed.iter().copied()) {
                        hint if hint.is_empty() => format!(
                            "unknown key {:?} in {what}; expected one of: {}",
                            e.name,
                            allowed.join(", ")
                        ),
                        hint => format!("unknown key {:?} in {what}{hint}", e.name),
                    },
                );
            } else if let Some(first) = fields.entries.iter().find(|f| f.name == e.name) {
                let msg = format!(
                    "duplicate key {:?} in {what}, first defined at {}",
                    e.name,
                    self.place(first.key)
                );
                self.err(e.key, msg);
            } else {
                fields.entries.push(e);
            }
        }
        Some(fields)
    }

    pub(super) fn type_err(&mut self, e: Entry<'_>, expected: &str) {
        self.err(
            e.value_loc(),
            format!(
                "expected {expected} for {:?}, found {}",
                e.name,
                e.value.kind()
            ),
        );
    }

    pub(super) fn string(&mut self, e: Option<Entry<'_>>) -> Option<String> {
        let e = e?;
        match &e.value.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.type_err(e, "a string");
                None
            }
        }
    }

    /// A string that must not be empty.
    pub(super) fn nonempty_string(&mut self, e: Option<Entry<'_>>) -> Option<String> {
        let s = self.string(e)?;
        if s.trim().is_empty() {
            let e = e.expect("string() returned Some");
            self.err(e.value_loc(), format!("{:?} must not be empty", e.name));
            return None;
        }
        Some(s)
    }

    pub(super) fn boolean(&mut self, e: Option<Entry<'_>>) -> Option<bool> {
        let e = e?;
        match &e.value.value {
            Value::Bool(b) => Some(*b),
            // YAML 1.1 spellings, as py4CI (PyYAML) reads them.
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "on" => Some(true),
                "no" | "off" => Some(false),
                _ => {
                    self.type_err(e, "a boolean");
                    None
                }
            },
            _ => {
                self.type_err(e, "a boolean");
                None
            }
        }
    }

    pub(super) fn integer(&mut self, e: Option<Entry<'_>>) -> Option<i128> {
        let e = e?;
        match &e.value.value {
            Value::Int(i) => Some(*i),
            _ => {
                self.type_err(e, "an integer");
                None
            }
        }
    }

    /// An integer in `min..=u32::MAX`.
    pub(super) fn uint(&mut self, e: Option<Entry<'_>>, min: u32) -> Option<u32> {
        let entry = e?;
        let i = self.integer(e)?;
        if i < i128::from(min) {
            self.err(
                entry.value_loc(),
                format!("{:?} must be >= {min}, found {i}", entry.name),
            );
            None
        } else if let Ok(v) = u32::try_from(i) {
            Some(v)
        } else {
            self.err(
                entry.value_loc(),
                format!("{:?} is too large: {i}", entry.name),
            );
            None
        }
    }

    /// A duration in one of `units` (a bare integer is seconds). An error names the key and
    /// lists the units it takes: `start_delay: invalid duration "-1s": expected a positive
    /// number followed by ms, s, m, h, d or w`.
    pub(super) fn duration(&mut self, e: Option<Entry<'_>>, units: &[&str]) -> Option<Duration> {
        let e = e?;
        let parsed = match &e.value.value {
            Value::Int(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| invalid_duration(&i.to_string(), units)),
            Value::Str(s) => parse_duration_in(s, units),
            _ => {
                self.type_err(e, "a duration");
                return None;
            }
        };
        match parsed {
            Ok(d) => Some(d),
            Err(msg) => {
                self.err(e.value_loc(), format!("{}: {msg}", e.name));
                None
            }
        }
    }

    /// A list of strings, each with its place. `None` when absent or not a list.
    pub(crate) fn string_list(&mut self, e: Option<Entry<'_>>) -> Option<Vec<(String, Loc)>> {
        let e = e?;
        let file = e.key.file;
        match &e.value.value {
            Value::Seq(items) => Some(
                items
                    .iter()
                    .filter_map(|item| {
                        let loc = Loc {
                            file,
                            pos: item.pos,
                        };
                        match &item.value {
                            Value::Str(s) => Some((s.clone(), loc)),
                            _ => {
                                self.err(
                                    loc,
                                    format!(
                                        "expected a string in {:?}, found {}",
                                        e.name,
                                        item.kind()
                                    ),
                                );
                                None
                            }
                        }
                    })
                    .collect(),
            ),
            _ => {
                self.type_err(e, "a list of strings");
                None
            }
        }
    }

    pub(super) fn plain_list(&mut self, e: Option<Entry<'_>>) -> Vec<String> {
        self.string_list(e)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// `queues:` — default `[default]` at `owner`; an empty list is an error.
    pub(super) fn queues(&mut self, e: Option<Entry<'_>>, owner: Loc) -> Vec<(String, Loc)> {
        match (e, self.string_list(e)) {
            (Some(entry), Some(list)) if list.is_empty() => {
                self.err(entry.value_loc(), "\"queues\" must not be empty");
                list
            }
            (_, Some(list)) => list,
            (_, None) => vec![(DEFAULT_QUEUE.to_owned(), owner)],
        }
    }

    /// A map of scalar values; null values become empty strings.
    pub(super) fn string_map(
        &mut self,
        e: Option<Entry<'_>>,
        what: &str,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(e) = e else { return out };
        let what = format!("\"{}\" of {what}", e.name);
        let entries = self.entries(e.key.file, e.value, &what);
        for item in self
            .unique(entries, |name, first| {
                format!("duplicate key {name:?} in {what}, first defined at {first}")
            })
            .into_values()
        {
            match (&item.value.value, item.value.scalar_text()) {
                (Value::Null, _) => {
                    out.insert(item.name.to_owned(), String::new());
                }
                (_, Some(text)) => {
                    out.insert(item.name.to_owned(), text);
                }
                (_, None) => self.err(
                    item.value_loc(),
                    format!(
                        "expected a string for {:?} in {what}, found {}",
                        item.name,
                        item.value.kind()
                    ),
                ),
            }
        }
        out
    }

    /// An `env:` map whose secret-looking entries ([`is_secret_name`], non-empty) are kept
    /// as references `<scope>.env.<KEY>` with their values in `hidden`.
    pub(super) fn env_map(
        &mut self,
        e: Option<Entry<'_>>,
        what: &str,
        scope: &str,
        hidden: &mut BTreeMap<String, SecretValue>,
    ) -> BTreeMap<String, EnvValue> {
        let map: BTreeMap<String, EnvValue> = self
            .string_map(e, what)
            .into_iter()
            .map(|(k, v)| {
                let v = hide(hidden, format!("{scope}.env.{k}"), &k, v);
                (k, v)
            })
            .collect();
        if let Some(Entry {
            key,
            value: Node {
                value: Value::Map(pairs),
                ..
            },
            ..
        }) = e
        {
            for (k, v) in pairs {
                if let Value::Str(name) = &k.value
                    && matches!(map.get(name), Some(EnvValue::Secret { .. }))
                {
                    self.hidden_at.push((key.file, k.pos, v.pos));
                }
            }
        }
        map
    }

    /// A prunner script: a list of lines or a single string; lines joined with `\n`, templates
    /// checked and rewritten.
    pub(super) fn script(&mut self, e: Option<Entry<'_>>) -> String {
        let Some(e) = e else {
            return String::new();
        };
        let file = e.key.file;
        let lines: Vec<(String, Loc)> = match &e.value.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| {
                    let loc = Loc {
                        file,
                        pos: item.pos,
                    };
                    match item.scalar_text() {
                        Some(text) => Some((text, loc)),
                        None => {
                            self.err(
                                loc,
                                format!("expected a string in \"script\", found {}", item.kind()),
                            );
                            None
                        }
                    }
                })
                .collect(),
            Value::Str(s) => vec![(s.clone(), e.value_loc())],
            _ => {
                self.type_err(e, "a list of strings");
                Vec::new()
            }
        };
        for (text, loc) in &lines {
            for t in unsupported_templates(text) {
                self.err(
                    *loc,
                    format!(
                        "unsupported template {t:?}: only {{{{ .name }}}} references are supported"
                    ),
                );
            }
        }
        let joined = lines
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>()
            .join("\n");
        rewrite_templates(&joined)
    }
}

/// The edit distance between `a` and `b` (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `; did you mean "x"?` when one of `known` is close to `name` (as rustc and cargo suggest),
/// else nothing.
pub(crate) fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let limit = (name.chars().count() / 3).max(1);
    known
        .map(|k| (distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| format!("; did you mean {k:?}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod suggest_tests {
    use super::did_you_mean;

    #[test]
    fn close_names_are_suggested_and_far_ones_not() {
        let keys = ["depends_on", "script", "allow_failure"];
        assert_eq!(
            did_you_mean("depend_on", keys.iter().copied()),
            "; did you mean \"depends_on\"?"
        );
        assert_eq!(
            did_you_mean("scirpt", keys.iter().copied()),
            "; did you mean \"script\"?"
        );
        assert_eq!(did_you_mean("image_name", keys.iter().copied()), "");
    }
}
