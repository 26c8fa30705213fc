//! `args: {NAME: {description, default, choices, required}}` on a task or a pipeline: the
//! arguments a trigger may give, with their defaults and allowed values.

use super::diags::{Diags, Entry, Fields, Loc};
use crate::config::model::ArgDef;
use crate::config::node::Value;

const ARG_KEYS: &[&str] = &["description", "default", "choices", "required"];

/// A scalar as the argument value it stands for (`1.0`, `true`, `"x"`); `None` for lists,
/// mappings and null.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar_of(d: &mut Diags<'_>, e: Entry<'_>) -> Option<String> {
    let v = scalar(&e.value.value);
    if v.is_none() {
        d.type_err(e, "a string, number or boolean");
    }
    v
}

pub(super) fn build_args(d: &mut Diags<'_>, f: &Fields<'_>, what: &str) -> Vec<ArgDef> {
    let Some(e) = f.get("args") else {
        return Vec::new();
    };
    let what = format!("\"args\" of {what}");
    let entries = d.entries(e.key.file, e.value, &what);
    let entries = d.unique(entries, |name, first| {
        format!("argument {name:?} is already declared at {first}")
    });
    // In the order written.
    let mut entries: Vec<Entry<'_>> = entries.into_values().collect();
    entries.sort_by_key(|e| e.key.pos);
    entries
        .into_iter()
        .filter_map(|a| build_arg(d, a, &what))
        .collect()
}

fn build_arg(d: &mut Diags<'_>, a: Entry<'_>, what: &str) -> Option<ArgDef> {
    let mut probe = std::collections::BTreeMap::new();
    probe.insert(a.name.to_owned(), String::new());
    if let Err(err) = crate::args::check(&probe) {
        d.err(a.key, format!("in {what}: {err}"));
        return None;
    }
    let arg_what = format!("argument {:?}", a.name);
    let f = d.fields(a.key.file, a.value, &arg_what, ARG_KEYS)?;
    let default = f.get("default").and_then(|e| scalar_of(d, e));
    let mut choices: Vec<(String, Loc)> = Vec::new();
    if let Some(c) = f.get("choices") {
        match &c.value.value {
            Value::Seq(items) => {
                for item in items {
                    let loc = Loc {
                        file: c.key.file,
                        pos: item.pos,
                    };
                    match scalar(&item.value) {
                        Some(v) if choices.iter().any(|(x, _)| *x == v) => {
                            d.err(loc, format!("choice {v:?} is listed twice"));
                        }
                        Some(v) => choices.push((v, loc)),
                        None => d.err(
                            loc,
                            format!(
                                "expected a string, number or boolean in \"choices\", found {}",
                                item.kind()
                            ),
                        ),
                    }
                }
                if items.is_empty() {
                    d.err(c.value_loc(), "\"choices\" must not be empty");
                }
            }
            _ => d.type_err(c, "a list of values"),
        }
    }
    let required = d.boolean(f.get("required")).unwrap_or(false);
    if let (Some(v), Some(e)) = (&default, f.get("default")) {
        if required {
            d.err(
                e.key,
                format!(
                    "argument {:?} is required and has a default; a default is used when no value is given, so drop one of them",
                    a.name
                ),
            );
        }
        if !choices.is_empty() && !choices.iter().any(|(c, _)| c == v) {
            d.err(
                e.value_loc(),
                format!(
                    "default {v:?} of argument {:?} is not one of its choices ({})",
                    a.name,
                    choices
                        .iter()
                        .map(|(c, _)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    Some(ArgDef {
        name: a.name.to_owned(),
        description: d.string(f.get("description")).unwrap_or_default(),
        default,
        choices: choices.into_iter().map(|(c, _)| c).collect(),
        required,
    })
}

/// A task with `period`, `schedule` or `triggered_by` (whose runs get no arguments) cannot
/// require an argument.
pub(super) fn check_timed_args(d: &mut Diags<'_>, f: &Fields<'_>, name: &str, args: &[ArgDef]) {
    let timed = ["period", "schedule", "triggered_by"]
        .into_iter()
        .find(|k| f.get(k).is_some());
    if let (Some(timed), Some(arg)) = (timed, args.iter().find(|a| a.required))
        && let Some(e) = f.get("args")
    {
        d.err(
            e.key,
            format!(
                "task {name:?} has \"{timed}\", whose runs get no arguments, but argument {:?} is required; give it a default instead",
                arg.name
            ),
        );
    }
}
