//! The container keys of a task or pipeline task: `image`, `build`, `resources`, `network`.

use std::path::Path;

use super::diags::{Diags, Fields};
use crate::config::model::{ContainerDef, NetworkMode};
use crate::config::node::Value;

const RESOURCES_KEYS: &[&str] = &["cpus", "memory"];

/// `image`, `build`, `resources` and `network` of a task or pipeline task (`what`).
pub(super) fn build_container(
    d: &mut Diags<'_>,
    f: &Fields<'_>,
    what: &str,
) -> Option<ContainerDef> {
    let image_entry = f.get("image");
    let build_entry = f.get("build");
    let image = d.string(image_entry);
    if let (Some(i), Some(e)) = (&image, image_entry)
        && (i.trim().is_empty() || i.chars().any(char::is_whitespace))
    {
        d.err(
            e.value_loc(),
            format!("invalid image name {i:?}: expected NAME[:TAG] without spaces"),
        );
    }
    let build = match (build_entry, d.string(build_entry)) {
        (Some(e), Some(p)) => {
            if p.trim().is_empty() {
                d.err(e.value_loc(), "\"build\" must name a Dockerfile");
                None
            } else {
                // Relative to the directory of the file that says it (no I/O here: the file is
                // read when a job needs the image).
                let base = d.files[e.key.file]
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                Some(base.join(p))
            }
        }
        _ => None,
    };
    if let (Some(_), Some(b)) = (image_entry, build_entry) {
        d.err(
            b.key,
            format!("{what} has both \"image\" and \"build\"; use one: \"build\" makes the image"),
        );
    }
    let (cpus, memory_bytes) = build_resources(d, f);
    let network = match (f.get("network"), d.string(f.get("network")).as_deref()) {
        (_, None | Some("bridge")) => NetworkMode::Bridge,
        (_, Some("none")) => NetworkMode::None,
        (Some(e), Some(other)) => {
            d.err(
                e.value_loc(),
                format!("unknown network {other:?}; expected none or bridge"),
            );
            NetworkMode::Bridge
        }
        (None, Some(_)) => NetworkMode::Bridge,
    };
    if image_entry.is_none() && build_entry.is_none() {
        for key in ["resources", "network"] {
            if let Some(e) = f.get(key) {
                d.err(
                    e.key,
                    format!(
                        "{key:?} applies to containers only: {what} has no \"image\" or \"build\""
                    ),
                );
            }
        }
        return None;
    }
    Some(ContainerDef {
        image: if build.is_some() { None } else { image },
        build,
        cpus,
        memory_bytes,
        network,
    })
}

/// `resources`: the CPUs and the memory (in bytes) a container may use.
fn build_resources(d: &mut Diags<'_>, f: &Fields<'_>) -> (Option<f64>, Option<u64>) {
    let mut cpus = None;
    let mut memory_bytes = None;
    if let Some(r) = f.get("resources")
        && let Some(rf) = d.fields(r.key.file, r.value, "\"resources\"", RESOURCES_KEYS)
    {
        if let Some(c) = rf.get("cpus") {
            let n = match &c.value.value {
                Value::Int(i) => Some(*i as f64),
                Value::Float(x) => Some(*x),
                Value::Str(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n.is_finite() && n > 0.0 && n <= 1024.0 => cpus = Some(n),
                _ => d.err(
                    c.value_loc(),
                    format!(
                        "invalid cpus {}: expected a number of CPUs greater than 0, e.g. 1.5",
                        c.value
                            .scalar_text()
                            .unwrap_or_else(|| c.value.kind().to_owned())
                    ),
                ),
            }
        }
        if let Some(m) = rf.get("memory") {
            match m.value.scalar_text().map(|t| parse_memory(&t)) {
                Some(Ok(bytes)) => memory_bytes = Some(bytes),
                Some(Err(msg)) => d.err(m.value_loc(), msg),
                None => d.type_err(m, "a memory size such as 512m"),
            }
        }
    }
    (cpus, memory_bytes)
}

/// A memory size as Docker reads it: a number with an optional unit `b`, `k`, `m`, `g` or `t`
/// (powers of 1024; `kb`/`kib`, `mb`/`mib`, … mean the same). At least 6 MiB, the engine's
/// minimum.
pub(crate) fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "invalid memory size {text:?}: expected a number with an optional unit b, k, m, g or t, e.g. 512m"
        )
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("memory size {text:?} is too large"));
    }
    let bytes = bytes as u64;
    if bytes < 6 << 20 {
        return Err(format!(
            "memory size {text:?} is below 6m, the smallest limit the engine accepts"
        ));
    }
    Ok(bytes)
}
