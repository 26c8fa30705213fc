//! The `pools` section: autoscaled agent pools and their providers.

use super::diags::{Diags, Entry, Loc};
use crate::config::duration::SECONDS_UP;
use crate::config::model::{DockerPool, PoolDef, PoolProvider, is_secret_name};
use crate::config::node::Value;

const POOL_KEYS: &[&str] = &["queues", "min", "max", "idle_timeout", "slots", "provider"];
const PROVIDERS: &[&str] = &["command", "docker"];
const COMMAND_KEYS: &[&str] = &["up", "down"];
const DOCKER_KEYS: &[&str] = &["image", "host", "network", "env"];

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
            format!("{what} has no \"provider\": expected provider: {{command: {{up: PATH, down: PATH}}}} or {{docker: {{image: IMAGE}}}}"),
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
    if let Some(c) = f.get("docker") {
        return build_docker(d, c, what).map(PoolProvider::Docker);
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

/// `docker: {image, host, network, env}`.
fn build_docker(d: &mut Diags<'_>, c: Entry<'_>, what: &str) -> Option<DockerPool> {
    let inner = format!("the docker provider of {what}");
    let f = d.fields(c.key.file, c.value, &inner, DOCKER_KEYS)?;
    let image = match f.get("image") {
        Some(e) => d.nonempty_string(Some(e)),
        None => {
            d.err(
                c.key,
                format!("{inner} has no \"image\": the image (with `baton` in it) each agent's container is made from"),
            );
            None
        }
    };
    let host = d.nonempty_string(f.get("host"));
    if let (Some(h), Some(e)) = (&host, f.get("host"))
        && let Err(why) = check_engine(h)
    {
        d.err(e.value_loc(), format!("{inner}: {why}"));
    }
    let network = d.nonempty_string(f.get("network"));
    let env = d.string_map(f.get("env"), &inner);
    if let Some(e) = f.get("env")
        && let Value::Map(pairs) = &e.value.value
    {
        for (k, v) in pairs {
            let Value::Str(name) = &k.value else { continue };
            let at = Loc {
                file: e.key.file,
                pos: k.pos,
            };
            let plain = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain {
                d.err(
                    at,
                    format!("invalid variable name {name:?} in the env of {inner}: use letters, digits and '_'"),
                );
            } else if name.starts_with("BATON_") {
                d.err(
                    at,
                    format!("{name:?} in the env of {inner}: BATON_ variables are the agent's own settings, set by the server"),
                );
            } else if is_secret_name(name) && v.scalar_text().is_some_and(|t| !t.is_empty()) {
                d.err(
                    at,
                    format!(
                        "{name:?} in the env of {inner} looks like a secret: a pool's env is plain text that anyone who may inspect its containers reads (hint: give jobs their secrets with `secrets:` on the task)"
                    ),
                );
            }
        }
    }
    Some(DockerPool {
        image: image?,
        host,
        network,
        env,
    })
}

/// An engine address: `unix:///PATH` (or an absolute path), or `tcp://`/`http://` on a loopback
/// address — the join tokens travel in the containers' environment, so never in clear over a
/// network.
fn check_engine(h: &str) -> Result<(), String> {
    if h.starts_with('/') {
        return Ok(());
    }
    if let Some(path) = h.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(())
        } else {
            Err(format!("invalid host {h:?}: expected unix:///PATH"))
        };
    }
    let Some(rest) = h
        .strip_prefix("tcp://")
        .or_else(|| h.strip_prefix("http://"))
    else {
        return Err(format!(
            "invalid host {h:?}: expected unix:///PATH, tcp://HOST:PORT or http://HOST:PORT"
        ));
    };
    if super::server::loopback_authority(rest) {
        Ok(())
    } else {
        Err(format!(
            "host {h:?} would send the agents' join tokens in clear over the network (hint: forward the remote engine's socket over SSH, `ssh -L /run/baton-docker.sock:/var/run/docker.sock HOST`, and use host: unix:///run/baton-docker.sock)"
        ))
    }
}
