//! `cache: {inputs: [GLOB, …], env: [NAME, …], key: TEXT, max_age: 30d}` on a task or a
//! pipeline task: what makes two jobs' inputs the same (docs/cache.md).

use super::diags::{Diags, Fields};
use crate::config::duration::SECONDS_UP;
use crate::config::model::{CacheDef, RetentionDef};

const CACHE_KEYS: &[&str] = &["inputs", "env", "key", "max_age"];

pub(super) fn build_cache(d: &mut Diags<'_>, f: &Fields<'_>, what: &str) -> Option<CacheDef> {
    let e = f.get("cache")?;
    let what = format!("\"cache\" of {what}");
    let cf = d.fields(e.key.file, e.value, &what, CACHE_KEYS)?;
    let mut inputs = Vec::new();
    for (glob, loc) in d.string_list(cf.get("inputs")).unwrap_or_default() {
        if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
            d.err(
                loc,
                format!(
                    "cache.inputs glob {glob:?} must be relative to the job's checkout, \
                     without \"..\""
                ),
            );
        } else if let Err(err) = globset::Glob::new(&glob) {
            d.err(loc, format!("invalid cache.inputs glob {glob:?}: {err}"));
        } else {
            inputs.push(glob);
        }
    }
    let mut env = Vec::new();
    for (name, loc) in d.string_list(cf.get("env")).unwrap_or_default() {
        let ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if ok {
            env.push(name);
        } else {
            d.err(
                loc,
                format!(
                    "cache.env {name:?} is not an environment variable name (letters, digits, _)"
                ),
            );
        }
    }
    Some(CacheDef {
        inputs,
        env,
        key: d.string(cf.get("key")).unwrap_or_default(),
        max_age: d.duration(cf.get("max_age"), SECONDS_UP),
        forced: false,
    })
}

const RETENTION_KEYS: &[&str] = &["keep_last", "max_age", "keep_failed"];

/// `retention: {keep_last: N, max_age: 30d, keep_failed: N}` on a task or in `server:`.
pub(super) fn build_retention(
    d: &mut Diags<'_>,
    f: &Fields<'_>,
    what: &str,
) -> Option<RetentionDef> {
    let e = f.get("retention")?;
    let what = format!("\"retention\" of {what}");
    let rf = d.fields(e.key.file, e.value, &what, RETENTION_KEYS)?;
    Some(RetentionDef {
        keep_last: d.uint(rf.get("keep_last"), 1),
        max_age: d.duration(rf.get("max_age"), SECONDS_UP),
        keep_failed: d.uint(rf.get("keep_failed"), 0),
    })
}
