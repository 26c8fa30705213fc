//! Loader tests for `pools:`.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_str(Path::new("t.yaml"), yaml)
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e
            .diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect(),
    }
}

#[test]
fn a_pool_loads_and_serves_its_queues() {
    let c = load(
        "pools:
  arm:
    queues: [arm]
    max: 3
    idle_timeout: 2s
    provider: {command: {up: /opt/up.sh, down: /opt/down.sh}}
tasks:
  t: {command: make, queues: [arm], image: debian:12}
",
    )
    .unwrap();
    let p = &c.pools["arm"];
    assert_eq!(p.queues, vec!["arm".to_string()]);
    assert_eq!((p.min, p.max, p.slots), (0, 3, 1));
    assert_eq!(p.idle_timeout, Duration::from_secs(2));
    assert_eq!(
        p.provider,
        PoolProvider::Command {
            up: "/opt/up.sh".into(),
            down: Some("/opt/down.sh".into())
        }
    );
    assert_eq!(c.agent_queues(), vec!["arm".to_string()]);
}

#[test]
fn pool_mistakes_have_places() {
    let e = errors(
        "pools:
  bad name:
    max: 1
    provider: {command: {up: x}}
  nomax:
    provider: {command: {up: x}}
  upside:
    min: 4
    max: 2
    idle_timeout: 0s
    provider: {command: {down: y}}
  two:
    max: 1
    provider: {command: {up: x}, docker: {image: i}}
  typo:
    max: 1
    slot: 2
    provider: {command: {up: x}}
",
    );
    assert_eq!(
        e,
        vec![
            "2:3: invalid pool name \"bad name\": use 1-40 letters, digits, '-' or '_'",
            "5:3: pool \"nomax\" has no \"max\": say how many agents it may run at most",
            "8:10: pool \"upside\": min (4) is larger than max (2)",
            "10:19: idle_timeout must be longer than 0s",
            "11:16: the command provider of pool \"upside\" has no \"up\": the program that starts agents",
            "14:34: unknown key \"docker\" in the provider of pool \"two\"; expected one of: command",
            "17:5: unknown key \"slot\" in pool \"typo\"; did you mean \"slots\"?",
        ]
    );
}

#[test]
fn a_queue_only_a_pool_serves_is_served() {
    let e = errors("tasks:\n  t: {command: make, queues: [arm]}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    load("pools:\n  arm: {queues: [arm], max: 1, provider: {command: {up: x}}}\ntasks:\n  t: {command: make, queues: [arm]}\n").unwrap();
}
