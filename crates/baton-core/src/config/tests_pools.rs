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
            "14:15: the provider of pool \"two\" must name exactly one of: command, docker",
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

#[test]
fn a_docker_pool_loads() {
    let c = load(
        "pools:
  box:
    queues: [box]
    max: 2
    provider:
      docker:
        image: registry.example/baton-agent:1
        host: unix:///run/other.sock
        network: host
        env: {HTTP_PROXY: \"http://proxy:3128\", LEVEL: 3}
  plain:
    max: 1
    provider: {docker: {image: baton}}
",
    )
    .unwrap();
    assert_eq!(
        c.pools["box"].provider,
        PoolProvider::Docker(DockerPool {
            image: "registry.example/baton-agent:1".into(),
            host: Some("unix:///run/other.sock".into()),
            network: Some("host".into()),
            env: [
                ("HTTP_PROXY".to_string(), "http://proxy:3128".to_string()),
                ("LEVEL".to_string(), "3".to_string()),
            ]
            .into(),
        })
    );
    assert_eq!(
        c.pools["plain"].provider,
        PoolProvider::Docker(DockerPool {
            image: "baton".into(),
            host: None,
            network: None,
            env: Default::default(),
        })
    );
    // Loopback engines and bare socket paths are fine too.
    for host in [
        "tcp://127.0.0.1:2375",
        "http://localhost:2375",
        "/var/run/docker.sock",
    ] {
        load(&format!(
            "pools:\n  p: {{max: 1, provider: {{docker: {{image: i, host: \"{host}\"}}}}}}\n"
        ))
        .unwrap();
    }
}

#[test]
fn docker_pool_mistakes_have_places() {
    let e = errors(
        "pools:
  noimage:
    max: 1
    provider: {docker: {network: host}}
  remote:
    max: 1
    provider: {docker: {image: i, host: \"tcp://10.0.0.5:2375\"}}
  odd:
    max: 1
    provider: {docker: {image: i, host: \"ssh://box\", imgae: j}}
  envs:
    max: 1
    provider:
      docker:
        image: i
        env:
          API_TOKEN: abc
          BATON_SERVER: x
          \"1BAD\": y
          EMPTY_SECRET:
          OK: fine
",
    );
    assert_eq!(
        e,
        vec![
            "4:16: the docker provider of pool \"noimage\" has no \"image\": the image (with `baton` in it) each agent's container is made from",
            "7:41: the docker provider of pool \"remote\": host \"tcp://10.0.0.5:2375\" would send the agents' join tokens in clear over the network (hint: forward the remote engine's socket over SSH, `ssh -L /run/baton-docker.sock:/var/run/docker.sock HOST`, and use host: unix:///run/baton-docker.sock)",
            "10:41: the docker provider of pool \"odd\": invalid host \"ssh://box\": expected unix:///PATH, tcp://HOST:PORT or http://HOST:PORT",
            "10:54: unknown key \"imgae\" in the docker provider of pool \"odd\"; expected one of: image, host, network, env",
            "17:11: \"API_TOKEN\" in the env of the docker provider of pool \"envs\" looks like a secret: a pool's env is plain text that anyone who may inspect its containers reads (hint: give jobs their secrets with `secrets:` on the task)",
            "18:11: \"BATON_SERVER\" in the env of the docker provider of pool \"envs\": BATON_ variables are the agent's own settings, set by the server",
            "19:11: invalid variable name \"1BAD\" in the env of the docker provider of pool \"envs\": use letters, digits and '_'",
        ]
    );
}
