//! The `workers` section: SSH workers and the queues they serve.

use super::diags::{Diags, Entry};
use crate::config::model::WorkerDef;

const WORKER_KEYS: &[&str] = &["host", "queues", "work_dir"];

pub(super) fn build_worker(d: &mut Diags<'_>, e: Entry<'_>) -> Option<WorkerDef> {
    let what = format!("worker {:?}", e.name);
    let f = d.fields(e.key.file, e.value, &what, WORKER_KEYS)?;
    let host = d.string(f.get("host"));
    if let (Some(h), Some(entry)) = (&host, f.get("host"))
        && let Err(msg) = check_host(h)
    {
        d.err(entry.value_loc(), msg);
    }
    let queues = d.queues(f.get("queues"), e.key);
    let work_dir = d.string(f.get("work_dir"));
    if let (Some(w), Some(entry)) = (&work_dir, f.get("work_dir")) {
        if let Err(msg) = check_work_dir(w) {
            d.err(entry.value_loc(), msg);
        } else if host.is_none() {
            d.err(
                entry.key,
                format!(
                    "worker {:?} has a work_dir but no host: work_dir is for SSH workers",
                    e.name
                ),
            );
        }
    }
    Some(WorkerDef {
        name: e.name.to_owned(),
        work_dir,
        host,
        queues: queues.into_iter().map(|(q, _)| q).collect(),
    })
}

/// The folder on an SSH worker: plain path characters only, no `..`, so it needs no quoting
/// anywhere (scp paths included).
fn check_work_dir(w: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
    if w.is_empty() || !w.chars().all(plain) {
        return Err(format!(
            "invalid work_dir {w:?}: use letters, digits, '.', '_', '-' and '/' only"
        ));
    }
    if w.split('/').any(|part| part == "..") {
        return Err(format!("invalid work_dir {w:?}: \"..\" is not allowed"));
    }
    Ok(())
}

/// `[user@]host[:port]`.
fn check_host(h: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid host {h:?}: {why}; expected user@host[:port]"
        ))
    };
    let host_port = match h.rsplit_once('@') {
        Some(("", _)) => return bad("empty user"),
        Some((_, rest)) => rest,
        None => h,
    };
    if host_port.is_empty() || host_port.chars().any(char::is_whitespace) {
        return bad("empty host or whitespace");
    }
    // A single colon separates a port (several colons: an IPv6 address, left alone).
    if host_port.matches(':').count() == 1
        && let Some((host, port)) = host_port.split_once(':')
    {
        if host.is_empty() {
            return bad("empty host");
        }
        if port.parse::<u16>().is_err() {
            return bad("the port is not a number");
        }
    }
    Ok(())
}
