//! The `pools` section: autoscaled agent pools and their providers.

use super::diags::{Diags, Entry};
use crate::config::duration::SECONDS_UP;
use crate::config::model::{PoolDef, PoolProvider};

const POOL_KEYS: &[&str] = &["queues", "min", "max", "idle_timeout", "slots", "provider"];
const PROVIDERS: &[&str] = &["command"];
const COMMAND_KEYS: &[&str] = &["up", "down"];

/// Pool names become part of agent names and token names: plain characters only.
fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

pub(super) fn build_pool(d: &mut Diags<'_>, e: Entry<'_>) -> Option<PoolDef> {
    let what = format!("pool {:?}", e.name);
    if !valid_pool_name(e.name) {
        d.err(
            e.key,
            format!(
                "invalid pool name {:?}: use 1-40 letters, digits, '-' or '_'",
                e.name
            ),
        );
    }
    let f = d.fields(e.key.file, e.value, &what, POOL_KEYS)?;
    let queues = d.queues(f.get("queues"), e.key);
    let min = d.uint(f.get("min"), 0).unwrap_or(0);
    let max = match f.get("max") {
        Some(entry) => d.uint(Some(entry), 1)?,
        None => {
            d.err(
                e.key,
                format!("{what} has no \"max\": say how many agents it may run at most"),
            );
            return None;
        }
    };
    if min > max
        && let Some(entry) = f.get("min")
    {
        d.err(
            entry.value_loc(),
            format!("{what}: min ({min}) is larger than max ({max})"),
        );
    }
    let idle_timeout = d
        .duration(f.get("idle_timeout"), SECONDS_UP)
        .unwrap_or(std::time::Duration::from_secs(300));
    if idle_timeout.is_zero()
        && let Some(entry) = f.get("idle_timeout")
    {
        d.err(
            entry.value_loc(),
            "idle_timeout must be longer than 0s".to_string(),
        );
    }
    let slots = d.uint(f.get("slots"), 1).unwrap_or(1);
    if slots > 256
        && let Some(entry) = f.get("slots")
    {
        d.err(entry.value_loc(), format!("{what}: slots must be 1-256"));
    }
    let provider = build_provider(d, e, f.get("provider"), &what)?;
    Some(PoolDef {
        name: e.name.to_owned(),
        queues: queues.into_iter().map(|(q, _)| q).collect(),
        min,
        max,
        idle_timeout,
        slots,
        provider,
    })
}

fn build_provider(
    d: &mut Diags<'_>,
    pool: Entry<'_>,
    e: Option<Entry<'_>>,
    what: &str,
) -> Option<PoolProvider> {
    let Some(e) = e else {
        d.err(
            pool.key,
            format!("{what} has no \"provider\": expected provider: {{command: {{up: PATH, down: PATH}}}}"),
        );
        return None;
    };
    let f = d.fields(
        e.key.file,
        e.value,
        &format!("the provider of {what}"),
        PROVIDERS,
    )?;
    if f.entries.len() != 1 {
        d.err(
            e.value_loc(),
            format!(
                "the provider of {what} must name exactly one of: {}",
                PROVIDERS.join(", ")
            ),
        );
        return None;
    }
    let c = f.get("command")?;
    let cf = d.fields(
        c.key.file,
        c.value,
        &format!("the command provider of {what}"),
        COMMAND_KEYS,
    )?;
    let Some(up) = d.nonempty_string(cf.get("up")) else {
        if cf.get("up").is_none() {
            d.err(
                c.key,
                format!(
                    "the command provider of {what} has no \"up\": the program that starts agents"
                ),
            );
        }
        return None;
    };
    let down = d.nonempty_string(cf.get("down"));
    Some(PoolProvider::Command { up, down })
}
