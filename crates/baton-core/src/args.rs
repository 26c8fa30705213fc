//! Trigger arguments: which names and values a run may be given, decided before anything is
//! recorded.
//!
//! Arguments become environment variables of the job. A name must not be one that bash, the
//! dynamic loader or common programs read as configuration (`BASH_ENV`, `LD_PRELOAD`, `PATH`,
//! `PERL5OPT`, …), so names start with a lower-case letter or `_`. A value can hold any bytes an
//! environment variable can, which excludes NUL, and is bounded so that a trigger cannot make a
//! job that can never start (the kernel refuses an environment past a few MiB).

use std::collections::BTreeMap;

use crate::config::ArgDef;

/// The largest environment entry of one argument, `name=value` and its terminating NUL, in
/// bytes: 128 KiB, the Linux kernel's limit on one environment string (`MAX_ARG_STRLEN`). A
/// value may so be `MAX_ENTRY_BYTES - name.len() - 2` bytes long.
pub const MAX_ENTRY_BYTES: usize = 128 * 1024;
/// The largest sum of all argument values of one trigger, in bytes (1 MiB).
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// Lower-case names that programs read as configuration.
const READ_BY_PROGRAMS: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
    "_",
];

/// Why a trigger's arguments are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error(
        "an argument has an empty name; every argument needs a name that starts with a lower-case letter or _"
    )]
    EmptyName,
    #[error("invalid argument {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error(
        "argument {name:?} contains a NUL byte (at byte {at}); values become environment variables, which cannot hold NUL"
    )]
    NulInValue { name: String, at: usize },
    #[error(
        "argument {name:?} is {len} bytes long; this value may be at most {max} bytes, as the environment entry `{name}=value` may be at most 128 KiB ({MAX_ENTRY_BYTES} bytes with its NUL): pass large data as a file or an artifact instead"
    )]
    ValueTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error(
        "the argument values add up to {total} bytes; all values of one trigger may be at most {MAX_TOTAL_BYTES} bytes (1 MiB) together"
    )]
    TooLarge { total: usize },
    #[error("unknown argument {name:?}: {target} declares only {known}")]
    Unknown {
        name: String,
        target: String,
        known: String,
    },
    #[error("argument {name:?} of {target} is required: give it a value")]
    Missing { name: String, target: String },
    #[error("argument {name:?} of {target} must be one of {choices}, not {value:?}")]
    NotAChoice {
        name: String,
        target: String,
        value: String,
        choices: String,
    },
}

/// Checks a trigger's arguments against the `args:` its target (named `target` in messages)
/// declares, and fills in the defaults of those not given. A target that declares none takes
/// any arguments; one that declares some takes only those, each from its `choices` when it
/// has them, and every `required` one.
pub fn apply_declared(
    target: &str,
    declared: &[ArgDef],
    args: &mut BTreeMap<String, String>,
) -> Result<(), ArgError> {
    if declared.is_empty() {
        return Ok(());
    }
    if let Some(name) = args
        .keys()
        .find(|n| !declared.iter().any(|d| &d.name == *n))
    {
        return Err(ArgError::Unknown {
            name: name.clone(),
            target: target.to_owned(),
            known: declared
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    for d in declared {
        match args.get(&d.name) {
            Some(value) if !d.choices.is_empty() && !d.choices.contains(value) => {
                return Err(ArgError::NotAChoice {
                    name: d.name.clone(),
                    target: target.to_owned(),
                    value: value.clone(),
                    choices: d.choices.join(", "),
                });
            }
            Some(_) => {}
            None => match &d.default {
                Some(v) => {
                    args.insert(d.name.clone(), v.clone());
                }
                None if d.required => {
                    return Err(ArgError::Missing {
                        name: d.name.clone(),
                        target: target.to_owned(),
                    });
                }
                None => {}
            },
        }
    }
    Ok(())
}

/// Why an argument name is refused, if it is (an empty name is [`ArgError::EmptyName`]).
fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_lowercase() || first == '_') {
        return Some(
            "argument names start with a lower-case letter or _ (upper-case names such as PATH or BASH_ENV belong to the environment programs read)",
        );
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(
            "argument names are letters, digits and _ (they become environment variables)",
        );
    }
    if READ_BY_PROGRAMS.contains(&name) {
        return Some("this name is read by programs as configuration; pick another");
    }
    None
}

/// The longest value argument `name` may have: its environment entry `name=value` plus NUL
/// must fit in [`MAX_ENTRY_BYTES`].
pub fn max_value_len(name: &str) -> usize {
    MAX_ENTRY_BYTES.saturating_sub(name.len() + 2)
}

/// Checks one trigger's arguments: names, NUL bytes, the size of each value and of all values.
/// The first problem found (in name order) is returned.
pub fn check(args: &BTreeMap<String, String>) -> Result<(), ArgError> {
    let mut total: usize = 0;
    for (name, value) in args {
        if name.is_empty() {
            return Err(ArgError::EmptyName);
        }
        if let Some(why) = name_problem(name) {
            return Err(ArgError::BadName {
                name: name.clone(),
                why,
            });
        }
        if let Some(at) = value.bytes().position(|b| b == 0) {
            return Err(ArgError::NulInValue {
                name: name.clone(),
                at,
            });
        }
        let max = max_value_len(name);
        if value.len() > max {
            return Err(ArgError::ValueTooLong {
                name: name.clone(),
                len: value.len(),
                max,
            });
        }
        total = total.saturating_add(value.len());
    }
    if total > MAX_TOTAL_BYTES {
        return Err(ArgError::TooLarge { total });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<ArgDef> {
        vec![
            ArgDef {
                name: "version".into(),
                required: true,
                ..Default::default()
            },
            ArgDef {
                name: "env".into(),
                default: Some("staging".into()),
                choices: vec!["staging".into(), "prod".into()],
                ..Default::default()
            },
            ArgDef {
                name: "note".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn declared_arguments_get_their_defaults_and_only_their_choices() {
        let mut a = args(&[("version", "1.2".into())]);
        assert_eq!(apply_declared("deploy", &declared(), &mut a), Ok(()));
        assert_eq!(a.get("env").map(String::as_str), Some("staging"));
        assert!(!a.contains_key("note"), "no default: stays absent");
        let mut a = args(&[("version", "1".into()), ("env", "dev".into())]);
        let e = apply_declared("deploy", &declared(), &mut a).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"env\" of deploy must be one of staging, prod, not \"dev\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_missing_declared_arguments_are_refused() {
        let mut a = args(&[("version", "1".into()), ("verison", "2".into())]);
        let e = apply_declared("deploy", &declared(), &mut a).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown argument \"verison\": deploy declares only version, env, note"
        );
        let e = apply_declared("deploy", &declared(), &mut BTreeMap::new()).unwrap_err();
        assert_eq!(
            e,
            ArgError::Missing {
                name: "version".into(),
                target: "deploy".into()
            }
        );
        // A target that declares nothing takes anything.
        let mut a = args(&[("anything", "x".into())]);
        assert_eq!(apply_declared("t", &[], &mut a), Ok(()));
    }

    fn args(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn plain_arguments_pass() {
        assert_eq!(check(&BTreeMap::new()), Ok(()));
        assert_eq!(
            check(&args(&[
                ("who", "world".into()),
                ("_x1", String::new()),
                ("max", "v".repeat(max_value_len("max"))),
            ])),
            Ok(())
        );
    }

    #[test]
    fn empty_name_is_refused() {
        let e = check(&args(&[("", "v".into())])).unwrap_err();
        assert_eq!(e, ArgError::EmptyName);
        assert!(e.to_string().contains("empty name"), "{e}");
    }

    #[test]
    fn names_programs_read_are_refused() {
        for name in [
            "PATH",
            "BASH_ENV",
            "1x",
            "a-b",
            "a b",
            "http_proxy",
            "_",
            "é",
        ] {
            assert!(
                matches!(
                    check(&args(&[(name, "v".into())])),
                    Err(ArgError::BadName { .. })
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn nul_byte_is_refused_with_its_place() {
        let e = check(&args(&[("who", "ab\0c".into())])).unwrap_err();
        assert_eq!(
            e,
            ArgError::NulInValue {
                name: "who".into(),
                at: 2
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("\"who\"") && msg.contains("NUL"), "{msg}");
    }

    #[test]
    fn value_whose_entry_passes_128_kib_is_refused() {
        // `big=` + value + NUL: 131072 bytes fit, one more does not.
        assert_eq!(max_value_len("big"), 131067);
        let e = check(&args(&[("big", "v".repeat(131068))])).unwrap_err();
        assert_eq!(
            e,
            ArgError::ValueTooLong {
                name: "big".into(),
                len: 131068,
                max: 131067,
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("\"big\"") && msg.contains("131067 bytes") && msg.contains("128 KiB"),
            "{msg}"
        );
        assert_eq!(check(&args(&[("big", "v".repeat(131067))])), Ok(()));
    }

    #[test]
    fn values_over_1_mib_together_are_refused() {
        // Nine values of 120 KiB each: each is fine, together they pass 1 MiB.
        let pairs: Vec<(String, String)> = (0..9)
            .map(|i| (format!("a{i}"), "v".repeat(120 * 1024)))
            .collect();
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        let e = check(&map).unwrap_err();
        assert_eq!(
            e,
            ArgError::TooLarge {
                total: 9 * 120 * 1024
            }
        );
        assert!(e.to_string().contains("1 MiB"), "{e}");
        // Exactly 1 MiB is allowed.
        let mut exact: BTreeMap<String, String> = (0..8)
            .map(|i| (format!("a{i}"), "v".repeat(128 * 1024 - 8)))
            .collect();
        exact.insert("b".into(), "v".repeat(64));
        assert_eq!(
            exact.values().map(String::len).sum::<usize>(),
            MAX_TOTAL_BYTES
        );
        assert_eq!(check(&exact), Ok(()));
        exact.insert("c".into(), "v".into());
        assert!(matches!(check(&exact), Err(ArgError::TooLarge { .. })));
    }
}
