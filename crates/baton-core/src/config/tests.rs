//! Loader tests: the shared fixtures, exact error positions, and merge properties.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/configs");

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_str(Path::new("t.yaml"), yaml)
}

/// The errors of `yaml` as `line:col: message` strings.
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

fn ok(yaml: &str) -> Config {
    match load(yaml) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

// ---------------------------------------------------------------- fixtures

#[test]
fn py4ci_directory_loads() {
    let config = match load_path(&fixture("py4ci")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.tasks.len(), 3);
    assert_eq!(config.administrators, vec!["me".to_owned()]);
    // A secret-looking variable is kept as a reference; its value is memory only.
    assert_eq!(
        config.variables.get("some_secret"),
        Some(&EnvValue::Secret {
            secret: "variables.some_secret".into()
        })
    );
    assert_eq!(
        config
            .hidden("variables.some_secret")
            .map(SecretValue::expose),
        Some("abracadabra")
    );
    let w = &config.workers["worker01"];
    assert_eq!(w.host.as_deref(), Some("mdipierro@127.0.0.1"));
    assert_eq!(w.queues, vec!["default".to_owned()]);

    let hb = &config.tasks["my-heartbeat"];
    assert!(hb.enabled);
    assert_eq!(hb.period, Some(Duration::from_secs(3600)));
    assert_eq!(hb.debounce, Some(Duration::from_secs(60)));
    assert_eq!(hb.timeout, Some(Duration::from_secs(180)));
    assert_eq!(hb.command, "date\n");
    assert_eq!(hb.tags, vec!["heartbeat".to_owned()]);
    assert!(hb.after_tasks.is_empty() && hb.repo_triggers.is_empty());
    assert_eq!(hb.concurrency, 1);
    assert_eq!(hb.retries, 0);

    let repo = &config.tasks["my-repo-change"];
    assert_eq!(
        repo.repo_triggers,
        vec![RepoTrigger {
            ssh_url: "git@github.com:web2py/py4web.git".into(),
            branches: vec!["master".into()],
        }]
    );
    let followup = &config.tasks["my-repo-change-followup"];
    assert_eq!(followup.after_tasks, vec!["my-repo-change".to_owned()]);
    assert_eq!(followup.authorized_users, vec!["me".to_owned()]);
}

#[test]
fn prunner_pipelines_load() {
    let config = match load_path(&fixture("prunner/fixtures__pipelines.yml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.pipelines.len(), 2);
    let release = &config.pipelines["create_release"];
    assert_eq!(release.concurrency, 1);
    assert_eq!(release.queue_strategy, QueueStrategy::Append);
    assert_eq!(release.queue_limit, None);
    assert_eq!(release.queues, vec!["default".to_owned()]);
    let build = &release.tasks["build"];
    assert_eq!(build.depends_on, vec!["lint".to_owned(), "test".to_owned()]);
    assert_eq!(build.script, "go build -o bin/prunner .");
    assert_eq!(
        release.tasks["lint"].script,
        "golint $(go list ./... | grep -v /vendor/)\ngo vet $(go list ./... | grep -v /vendor/)"
    );
}

#[test]
fn prunner_partitioned_waitlist_loads() {
    let config = match load_path(&fixture("prunner/fixtures__partitioned_waitlist.yml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        config.pipelines["test_it"].queue_strategy,
        QueueStrategy::PartitionedReplace { partition_limit: 2 }
    );
}

fn fixture_error(files: &[&str]) -> String {
    let paths: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    match load_files(&paths) {
        Ok(_) => panic!("{files:?} should not load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn prunner_duplicate_pipeline() {
    let err = fixture_error(&[
        "prunner/fixtures__pipelines.yml",
        "prunner/fixtures__dup.yml",
    ]);
    assert!(
        err.contains("fixtures__dup.yml:2:3: pipeline \"test_it\" was already declared at "),
        "{err}"
    );
    assert!(err.contains("fixtures__pipelines.yml:16:3"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn prunner_missing_dependency() {
    let err = fixture_error(&["prunner/fixtures__missingDep.yml"]);
    assert!(
        err.ends_with(
            "fixtures__missingDep.yml:5:22: missing task \"not_existing\" referenced in depends_on of task \"test\""
        ),
        "{err}"
    );
}

#[test]
fn prunner_partition_limit_errors() {
    let err = fixture_error(&["prunner/fixtures__partitioned_waitlist_err_0_partition_limit.yml"]);
    assert!(
        err.ends_with(":4:28: queue_partition_limit must be defined and >=1 if queue_strategy=partitioned_replace"),
        "{err}"
    );
    let err = fixture_error(&["prunner/fixtures__partitioned_waitlist_err_queue_limit.yml"]);
    assert!(
        err.ends_with(":4:5: queue_limit is not allowed if queue_strategy=partitioned_replace, use queue_partition_limit instead"),
        "{err}"
    );
}

// ---------------------------------------------------------------- positions

#[test]
fn bad_duration_position() {
    let errs = errors("tasks:\n  a:\n    command: x\n    period: 5x\n");
    assert_eq!(
        errs,
        vec![
            "4:13: period: invalid duration \"5x\": expected a positive number followed by s, m, h, d or w"
        ]
    );
}

/// A bad duration names its key and lists the units that key takes (`start_delay` takes `ms`
/// too; py4CI's keys take s, m, h, d or w).
#[test]
fn bad_duration_names_its_key_and_units() {
    let yaml = "pipelines:\n  p:\n    start_delay: -1s\n    queue_limit: 1\n    tasks:\n      t:\n        script: [\"true\"]\n";
    let err = load_str(Path::new("pipelines.yml"), yaml)
        .expect_err("a negative start_delay is an error")
        .to_string();
    assert!(
        err.contains("pipelines.yml:3:18: start_delay: invalid duration \"-1s\": expected a positive number followed by ms, s, m, h, d or w"),
        "{err}"
    );
    let cfg = ok(
        "pipelines:\n  p:\n    start_delay: 250ms\n    queue_limit: 1\n    tasks:\n      t:\n        script: [\"true\"]\n",
    );
    assert_eq!(
        cfg.pipelines["p"].start_delay,
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        errors("tasks:\n  a:\n    command: x\n    debounce: 500ms\n    timeout: -3\n"),
        vec![
            "4:15: debounce: invalid duration \"500ms\": expected a positive number followed by s, m, h, d or w",
            "5:14: timeout: invalid duration \"-3\": expected a positive number followed by s, m, h, d or w",
        ]
    );
}

#[test]
fn unknown_keys_positions() {
    let errs = errors(
        "foo: 1\ntasks:\n  a:\n    command: x\n    comand: y\n    wait_list: {size: 1, sise: 2}\nworkers:\n  w:\n    hots: x\n",
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with("1:1: unknown key \"foo\" in the top level; expected one of: server, workers, administrators, variables, secrets, tasks, pipelines"), "{errs:#?}");
    assert!(
        errs[1].starts_with("5:5: unknown key \"comand\" in task \"a\""),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("6:26: unknown key \"sise\" in \"wait_list\""),
        "{errs:#?}"
    );
    assert!(
        errs[3].starts_with("9:5: unknown key \"hots\" in worker \"w\""),
        "{errs:#?}"
    );
}

#[test]
fn bad_cron_and_timezone_positions() {
    let errs = errors(
        "tasks:\n  a:\n    command: x\n    schedule: \"61 * * * *\"\n  b:\n    command: x\n    schedule:\n      cron: \"* * *\"\n      timezone: Mars/Base\n",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("4:15: invalid cron expression \"61 * * * *\""),
        "{errs:#?}"
    );
    assert_eq!(
        errs[1],
        "8:13: invalid cron expression \"* * *\": expected 5 fields (or 6 with seconds), found 3"
    );
    assert_eq!(errs[2], "9:17: unknown time zone \"Mars/Base\"");
}

#[test]
fn every_error_is_reported() {
    let yaml = "\
tasks:
  one:
    command: echo ${:nope}
    priority: high
  two:
    description: no command
    timeout: 3 days
  three:
    command: x
    queues: [gpu]
    concurrency: 0
    triggered_by:
      - task: ghost
      - branch: main
pipelines:
  p:
    queue_strategy: sideways
    tasks:
      t:
        script: [\"echo {{ .a | upper }}\"]
        allow_failure: maybe
";
    let errs = errors(yaml);
    let expected = [
        "3:14: unknown variable \"nope\" in command",
        "4:15: expected an integer for \"priority\", found a string",
        "5:3: task \"two\" has no \"command\"",
        "7:14: timeout: invalid duration \"3 days\": expected a positive number followed by s, m, h, d or w",
        "10:14: no worker serves queue \"gpu\"",
        "11:18: \"concurrency\" must be >= 1, found 0",
        "13:15: unknown task \"ghost\" in triggered_by",
        "14:9: a \"triggered_by\" item must be {task: NAME} or {ssh_url: URL, branches: [BRANCH, ...]}",
        "17:21: unknown queue strategy \"sideways\"",
        "20:18: unsupported template \"{{ .a | upper }}\": only {{ .name }} references are supported",
        "21:24: expected a boolean for \"allow_failure\", found a string",
    ];
    assert_eq!(errs, expected, "{errs:#?}");
}

#[test]
fn syntax_error_is_one_diagnostic() {
    let errs = errors("tasks:\n  a: [1, 2\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("2:6: YAML syntax error: "), "{errs:#?}");
}

#[test]
fn display_format() {
    let err = match load_str(Path::new("dir/x.yaml"), "bogus: 1\nother: 2\n") {
        Ok(_) => panic!("should fail"),
        Err(e) => e,
    };
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("dir/x.yaml:1:1: unknown key \"bogus\""),
        "{text}"
    );
    assert!(
        lines[1].starts_with("dir/x.yaml:2:1: unknown key \"other\""),
        "{text}"
    );
}

// ---------------------------------------------------------------- semantics

#[test]
fn empty_inputs_are_fine() {
    assert_eq!(ok(""), Config::default());
    assert_eq!(ok("# nothing\n"), Config::default());
    assert_eq!(
        ok("tasks:\npipelines:\nworkers:\nvariables:\nadministrators:\nserver:\n"),
        Config::default()
    );
}

#[test]
fn task_defaults_and_extensions() {
    let c = ok("
variables: {token: s3cr3t, n: 5}
workers:
  gpu1: {queues: [gpu, default]}
tasks:
  a:
    command: \"curl -H ${:token} -n ${:n} ${HOME}\"
    queues: [gpu]
    schedule: {cron: \"0 */5 * * * *\", timezone: Europe/Berlin}
    env: {A: 1, B: true, C: x, D: ~}
    concurrency: 2
    wait_list: {size: 3, strategy: replace}
    retries: 4
    priority: -7
    enabled: no
    period: 90
  b:
    command: y
    schedule: \"*/5 * * * *\"
    triggered_by:
      - task: a
");
    let a = &c.tasks["a"];
    // The command stays as written; the job fills it in (see `render_command`).
    assert_eq!(a.command, "curl -H ${:token} -n ${:n} ${HOME}");
    assert_eq!(
        render_command(&a.command, &a.variables),
        (
            "curl -H \"${BATON_SECRET_VARIABLE_1}\" -n 5 ${HOME}".to_owned(),
            vec![(
                "BATON_SECRET_VARIABLE_1".to_owned(),
                "variables.token".to_owned()
            )]
        )
    );
    assert_eq!(
        c.hidden("variables.token").map(SecretValue::expose),
        Some("s3cr3t")
    );
    assert_eq!(
        a.schedule,
        Some(CronSchedule {
            cron: "0 */5 * * * *".into(),
            timezone: Some("Europe/Berlin".into())
        })
    );
    assert_eq!(a.env["A"].plain(), Some("1"));
    assert_eq!(a.env["B"].plain(), Some("true"));
    assert_eq!(a.env["D"].plain(), Some(""));
    assert_eq!(a.concurrency, 2);
    assert_eq!(
        a.wait_list,
        Some(WaitList {
            size: 3,
            strategy: WaitStrategy::Replace
        })
    );
    assert_eq!(a.retries, 4);
    assert_eq!(a.priority, -7);
    assert!(!a.enabled);
    assert_eq!(a.period, Some(Duration::from_secs(90)));
    let b = &c.tasks["b"];
    assert_eq!(b.queues, vec!["default".to_owned()]);
    assert_eq!(b.schedule.as_ref().map(|s| s.timezone.clone()), Some(None));
    assert_eq!(b.after_tasks, vec!["a".to_owned()]);
    assert_eq!(c.workers["gpu1"].host, None);
}

#[test]
fn server_section() {
    let c = ok(
        "server:\n  listen: 0.0.0.0:8700\n  jwt_secret: s\n  local_workers: 3\n  kill_grace: 10s\n",
    );
    assert_eq!(c.server.listen.as_deref(), Some("0.0.0.0:8700"));
    assert_eq!(c.server.jwt_secret.as_deref(), Some("s"));
    assert_eq!(c.server.local_workers, Some(3));
    assert_eq!(c.server.kill_grace, Some(Duration::from_secs(10)));
    let errs = errors("server:\n  local_workers: 0\n  port: 1\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0], "2:18: \"local_workers\" must be >= 1, found 0");
    assert!(errs[1].starts_with("3:3: unknown key \"port\" in \"server\""));
}

#[test]
fn server_database_names_the_store_but_never_holds_a_password() {
    let c = ok("server:\n  database: postgres://baton@db.example/baton\n");
    assert_eq!(
        c.server.database.as_deref(),
        Some("postgres://baton@db.example/baton")
    );
    assert_eq!(ok("server:\n  listen: 127.0.0.1:1\n").server.database, None);
    for url in [
        "postgres://baton:hunter2@db.example/baton",
        "postgresql://baton@db.example/baton?password=hunter2",
    ] {
        let errs = errors(&format!("server:\n  database: {url}\n"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("holds a password"), "{errs:#?}");
        assert!(!errs[0].contains("hunter2"), "{errs:#?}");
    }
}

#[test]
fn pipeline_fields_and_templates() {
    let c = ok("
pipelines:
  deploy:
    concurrency: 2
    queue_limit: 3
    queue_strategy: replace
    start_delay: 1m30s
    continue_running_tasks_after_failure: true
    retention_period: 2d
    retention_count: 10
    env: {STAGE: prod}
    on_error:
      script:
        - echo {{ .failedTaskName }} failed
    tasks:
      a:
        script: echo {{.who}}
        env: {X: y}
        allow_failure: true
      b:
        script:
          - true
          - echo {{ .who }}
        depends_on: [a]
");
    let p = &c.pipelines["deploy"];
    assert_eq!(p.concurrency, 2);
    assert_eq!(p.queue_limit, Some(3));
    assert_eq!(p.queue_strategy, QueueStrategy::Replace);
    assert_eq!(p.start_delay, Some(Duration::from_secs(90)));
    assert!(p.continue_running_tasks_after_failure);
    assert_eq!(p.retention_period, Some(Duration::from_secs(2 * 86_400)));
    assert_eq!(p.retention_count, Some(10));
    assert_eq!(p.env["STAGE"].plain(), Some("prod"));
    assert_eq!(
        p.on_error.as_ref().map(|o| o.script.as_str()),
        Some("echo \"${failedTaskName?not passed as an argument to this run}\" failed")
    );
    assert_eq!(
        p.tasks["a"].script,
        "echo \"${who?not passed as an argument to this run}\""
    );
    assert!(p.tasks["a"].allow_failure);
    assert_eq!(
        p.tasks["b"].script,
        "true\necho \"${who?not passed as an argument to this run}\""
    );
}

#[test]
fn pipeline_queue_rules() {
    let errs = errors(
        "pipelines:\n  p:\n    queue_partition_limit: 2\n    concurrency: 0\n    queue_limit: 0\n    start_delay: 5s\n",
    );
    assert_eq!(
        errs,
        vec![
            "3:5: queue_partition_limit is not allowed if queue_strategy=append|replace, use queue_limit instead",
            "4:18: concurrency must be greater than 0",
            "6:5: start_delay requires queue_limit > 0",
        ]
    );
    let errs = errors("pipelines:\n  p:\n    queue_strategy: partitioned_replace\n");
    assert_eq!(
        errs,
        vec![
            "3:21: queue_partition_limit must be defined and >=1 if queue_strategy=partitioned_replace"
        ]
    );
    let errs = errors("pipelines:\n  p:\n    queue_limit: -1\n");
    assert_eq!(errs, vec!["3:18: queue_limit must not be negative"]);
}

#[test]
fn dependency_and_chaining_cycles() {
    let errs = errors(
        "pipelines:\n  p:\n    tasks:\n      a: {depends_on: [b]}\n      b: {depends_on: [a]}\n      c: {depends_on: [c]}\n",
    );
    assert_eq!(
        errs,
        vec![
            "4:7: dependency cycle: a -> b -> a",
            "6:7: dependency cycle: c -> c"
        ]
    );
    let errs = errors(
        "tasks:\n  a:\n    command: x\n    triggered_by: [{task: b}]\n  b:\n    command: y\n    triggered_by: [{task: a}]\n",
    );
    assert_eq!(errs, vec!["2:3: chaining cycle: a -> b -> a"]);
}

#[test]
fn duplicates_name_both_places() {
    let sources = vec![
        (
            PathBuf::from("a.yaml"),
            "tasks:\n  x:\n    command: a\n".to_owned(),
        ),
        (
            PathBuf::from("b.yaml"),
            "variables: {v: 1}\ntasks:\n  x:\n    command: b\n".to_owned(),
        ),
        (PathBuf::from("c.yaml"), "variables:\n  v: 2\n".to_owned()),
    ];
    let err = match load_sources(&sources) {
        Ok(_) => panic!("duplicates should fail"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        "b.yaml:3:3: task \"x\" is already defined at a.yaml:2:3\n\
         c.yaml:2:3: variable \"v\" is already defined at b.yaml:1:13"
    );
    let errs = errors("tasks:\n  x:\n    command: a\n    command: b\n");
    assert_eq!(
        errs,
        vec!["4:5: duplicate key \"command\" in task \"x\", first defined at t.yaml:3:5"]
    );
}

#[test]
fn triggered_by_shapes() {
    let errs = errors(
        "tasks:\n  a:\n    command: x\n    triggered_by:\n      - ssh_url: u\n      - task: a\n        ssh_url: u\n      - 5\n",
    );
    assert_eq!(
        errs,
        vec![
            "2:3: chaining cycle: a -> a",
            "5:9: \"triggered_by\" item has no \"branches\"",
            "7:9: unknown key \"ssh_url\" in \"triggered_by\" item; expected one of: task",
            "8:9: a \"triggered_by\" item must be {task: NAME} or {ssh_url: URL, branches: [BRANCH, ...]}, found an integer",
        ]
    );
}

#[test]
fn queues_need_workers() {
    // No workers: only `default` is served.
    let errs = errors("pipelines:\n  p:\n    queues: [default, gpu]\n");
    assert_eq!(errs, vec!["3:23: no worker serves queue \"gpu\""]);
    // Workers defined: `default` must be served by one of them too.
    let errs = errors("workers:\n  w: {queues: [gpu]}\ntasks:\n  a:\n    command: x\n");
    assert_eq!(errs, vec!["4:3: no worker serves queue \"default\""]);
    let errs = errors("workers:\n  w: {host: \"@h:99999\"}\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("2:13: invalid host \"@h:99999\": empty user"),
        "{errs:#?}"
    );
}

#[test]
fn load_path_errors() {
    let missing = fixture("does-not-exist.yaml");
    let err = match load_path(&missing) {
        Ok(_) => panic!("should fail"),
        Err(e) => e,
    };
    assert_eq!(err.diagnostics.len(), 1);
    assert_eq!((err.diagnostics[0].line, err.diagnostics[0].col), (1, 1));
    assert!(err.diagnostics[0].message.starts_with("cannot read file: "));
}

// ---------------------------------------------------------------- properties

/// One file's text with the given variables and tasks.
fn render(admins: bool, vars: &[(&String, &String)], tasks: &[(&String, &u32)]) -> String {
    let mut out = String::new();
    if admins {
        out.push_str("administrators: [root]\n");
    }
    if !vars.is_empty() {
        out.push_str("variables:\n");
        for (k, v) in vars {
            out.push_str(&format!("  {k}: \"{v}\"\n"));
        }
    }
    if !tasks.is_empty() {
        out.push_str("tasks:\n");
        for (name, n) in tasks {
            out.push_str(&format!(
                "  {name}:\n    command: echo {n}\n    priority: {n}\n    period: {n}m\n    tags: [t{n}]\n"
            ));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Splitting a configuration's tasks and variables over several files (in any grouping)
    /// loads the same configuration as one file.
    #[test]
    fn split_files_merge_to_single_file(
        tasks in prop::collection::btree_map("[a-z][a-z0-9_-]{0,8}", 0u32..1000, 0..8),
        vars in prop::collection::btree_map("[a-z][a-z0-9_]{0,8}", "[a-z0-9]{0,8}", 0..5),
        split in 1usize..4,
    ) {
        let all_vars: Vec<_> = vars.iter().collect();
        let all_tasks: Vec<_> = tasks.iter().collect();
        let whole = load(&render(true, &all_vars, &all_tasks));
        prop_assert!(whole.is_ok(), "{:?}", whole);

        let sources: Vec<(PathBuf, String)> = (0..split)
            .map(|part| {
                let vars: Vec<_> = all_vars.iter().enumerate()
                    .filter(|(i, _)| i % split == part).map(|(_, v)| *v).collect();
                let tasks: Vec<_> = all_tasks.iter().enumerate()
                    .filter(|(i, _)| (i + 1) % split == part).map(|(_, t)| *t).collect();
                (PathBuf::from(format!("part{part}.yaml")), render(part == 0, &vars, &tasks))
            })
            .collect();
        // The same definitions, each written as it was (only the file it was written in differs).
        let (whole, parts) = (whole.ok().unwrap(), load_sources(&sources).ok());
        prop_assert!(parts.is_some());
        let mut parts = parts.unwrap();
        let text = |w: &Written| w.tasks.iter().map(|(n, d)| (n.clone(), d.text.clone())).collect::<Vec<_>>();
        prop_assert_eq!(text(&whole.written), text(&parts.written));
        parts.written = whole.written.clone();
        prop_assert_eq!(whole, parts);
    }

    /// Every unknown task key is reported, at its line, however many tasks there are.
    #[test]
    fn all_unknown_keys_reported(n in 1usize..12) {
        let mut yaml = String::from("tasks:\n");
        for i in 0..n {
            yaml.push_str(&format!("  t{i}:\n    command: x\n    bogus{i}: 1\n"));
        }
        let errs = errors(&yaml);
        prop_assert_eq!(errs.len(), n);
        for (i, e) in errs.iter().enumerate() {
            let expected = format!("{}:5: unknown key \"bogus{i}\"", 4 + 3 * i);
            prop_assert!(e.starts_with(&expected), "{} vs {}", e, expected);
        }
    }
}

// ---------------------------------------------------------------- containers

#[test]
fn container_keys_load() {
    let c = load_str(
        Path::new("/etc/baton/ci.yaml"),
        "
server: {docker_host: \"unix:///run/podman/podman.sock\"}
tasks:
  a:
    command: make
    image: debian:12
    resources: {cpus: 1.5, memory: 512m}
    network: none
  b:
    command: make
    build: docker/Dockerfile
  c:
    command: make
pipelines:
  p:
    tasks:
      t:
        script: [make]
        image: busybox
        resources: {memory: 1g, cpus: 2}
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.server.docker_host.as_deref(),
        Some("unix:///run/podman/podman.sock")
    );
    assert_eq!(
        c.tasks["a"].container.as_deref(),
        Some(&ContainerDef {
            image: Some("debian:12".into()),
            build: None,
            cpus: Some(1.5),
            memory_bytes: Some(512 << 20),
            network: NetworkMode::None,
        })
    );
    let b = c.tasks["b"].container.as_ref().expect("container");
    assert_eq!(b.build, Some(PathBuf::from("/etc/baton/docker/Dockerfile")));
    assert_eq!(b.image, None);
    assert_eq!(b.network, NetworkMode::Bridge);
    assert_eq!(c.tasks["c"].container, None);
    let t = c.pipelines["p"].tasks["t"]
        .container
        .as_ref()
        .expect("container");
    assert_eq!(t.memory_bytes, Some(1 << 30));
    assert_eq!(t.cpus, Some(2.0));
}

#[test]
fn container_errors_have_positions() {
    let errs = errors(
        "tasks:
  a:
    command: x
    image: busybox
    resources: {cpus: 0, memory: 12q}
    network: host
  b:
    command: x
    network: none
  c:
    command: x
    image: busybox
    build: Dockerfile
  d:
    command: x
    image: busybox
    resources: {memory: 1m, disk: 1g}
",
    );
    assert_eq!(
        errs,
        vec![
            "5:23: invalid cpus 0: expected a number of CPUs greater than 0, e.g. 1.5",
            "5:34: invalid memory size \"12q\": expected a number with an optional unit b, k, m, g or t, e.g. 512m",
            "6:14: unknown network \"host\"; expected none or bridge",
            "9:5: \"network\" applies to containers only: task \"b\" has no \"image\" or \"build\"",
            "13:5: task \"c\" has both \"image\" and \"build\"; use one: \"build\" makes the image",
            "17:25: memory size \"1m\" is below 6m, the smallest limit the engine accepts",
            "17:29: unknown key \"disk\" in \"resources\"; expected one of: cpus, memory",
        ]
    );
}

#[test]
fn memory_sizes() {
    use super::build::parse_memory;
    assert_eq!(parse_memory("512m"), Ok(512 << 20));
    assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
    assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
    assert_eq!(parse_memory("10485760"), Ok(10 << 20));
    assert!(parse_memory("m").is_err());
    assert!(parse_memory("-5m").is_err());
    assert!(parse_memory("99999999999t").is_err());
}
#[test]
fn ssh_worker_settings_load_and_are_checked() {
    let c = ok(
        "server:\n  ssh_key: /k\n  known_hosts: /kh\n  callback_url: http://10.0.0.1:8700\n  heartbeat_timeout: 5s\nworkers:\n  w: {host: u@h:2222, work_dir: /srv/baton-w, queues: [default]}\n",
    );
    assert_eq!(c.server.ssh_key.as_deref(), Some("/k"));
    assert_eq!(c.server.known_hosts.as_deref(), Some("/kh"));
    assert_eq!(
        c.server.callback_url.as_deref(),
        Some("http://10.0.0.1:8700")
    );
    assert_eq!(c.server.heartbeat_timeout, Some(Duration::from_secs(5)));
    assert_eq!(c.workers["w"].work_dir.as_deref(), Some("/srv/baton-w"));

    let errs = errors(
        "server:\n  callback_url: ftp://x\n  heartbeat_timeout: 0s\n  ssh_key: \"\"\nworkers:\n  w: {host: u@h, work_dir: \"a b\", queues: [default]}\n  l: {work_dir: x, queues: [default]}\n",
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs[0].starts_with("2:17: invalid callback_url"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("3:22: heartbeat_timeout must be longer than 0s"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("4:12: \"ssh_key\" must not be empty"),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("6:28: invalid work_dir \"a b\"")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("7:7: ") && e.contains("work_dir but no host")),
        "{errs:#?}"
    );
}

// ---------------------------------------------------------------- single sign-on

#[test]
fn sso_providers_load_with_defaults() {
    let c = ok("server:
  public_url: https://ci.example.com/
  auth:
    google:
      issuer: https://accounts.google.com
      client_id: id1
      client_secret: s1
    gh:
      kind: github
      url: https://github.example.com/
      allowed_users: [octocat]
      allowed_domains: ['@Example.COM']
      client_id: id2
      client_secret: s2
      label: GitHub
    gitea:
      issuer: http://127.0.0.1:3000/
      client_id: id3
      client_secret: s3
      user_claim: preferred_username
      scopes: [profile]
");
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("https://ci.example.com")
    );
    let g = &c.server.auth["google"];
    assert_eq!(
        g.kind,
        SsoKind::Oidc {
            issuer: "https://accounts.google.com".into(),
            user_claim: UserClaim::Email
        }
    );
    assert_eq!(g.label, "Sign in with google");
    assert_eq!(g.scopes, vec!["email", "profile"]);
    assert_eq!(g.client_secret, "s1");
    let gh = &c.server.auth["gh"];
    assert_eq!(
        gh.kind,
        SsoKind::Github {
            url: "https://github.example.com".into(),
            api_url: "https://api.github.com".into()
        }
    );
    assert_eq!(gh.label, "GitHub");
    assert!(
        gh.scopes.is_empty(),
        "GitHub's public profile needs no scope"
    );
    assert_eq!(gh.allowed_domains, vec!["example.com"]);
    assert_eq!(gh.allowed_users, vec!["octocat"]);
    let gitea = &c.server.auth["gitea"];
    assert_eq!(
        gitea.kind,
        SsoKind::Oidc {
            // As written: it must equal the provider's own issuer, trailing slash included.
            issuer: "http://127.0.0.1:3000/".into(),
            user_claim: UserClaim::PreferredUsername
        }
    );
    assert_eq!(gitea.scopes, vec!["profile"]);
    // The client secret never leaves through serialization (the API shows the config).
    let json = serde_json::to_string(&c.server).unwrap();
    assert!(!json.contains("s1") && !json.contains("s2"), "{json}");
}

#[test]
fn sso_provider_errors_have_positions() {
    let e = errors(
        "server:
  public_url: ftp://x
  auth:
    Bad Name:
      issuer: https://idp.example.com
      client_id: a
      client_secret: b
    plain:
      issuer: http://idp.example.com
      client_id: a
      client_secret: b
      user_claim: nickname
    gh:
      kind: github
      client_secret: b
      issuer: https://x.example
    other:
      kind: saml
      client_id: a
      client_secret: b
    noissuer:
      client_id: a
      client_secret: ''
",
    );
    let expected = [
        "2:15: invalid public_url \"ftp://x\": expected http://host[:port] or https://host[:port] (the address browsers reach this server at)",
        "4:5: invalid auth provider \"Bad Name\": a provider name is 1-32 of a-z, 0-9, `-`, `_` (it appears in the callback URL)",
        "9:15: invalid issuer \"http://idp.example.com\" in auth provider \"plain\": use https:// (plain http is allowed only for localhost)",
        "12:19: unknown user_claim \"nickname\" in auth provider \"plain\"; expected one of: email, preferred_username, sub",
        "13:5: auth provider \"gh\" has no \"client_id\"",
        "16:7: \"issuer\" is for providers of kind oidc",
        "18:13: unknown kind \"saml\" in auth provider \"other\"; expected oidc (any OpenID Connect issuer: Google, Gitea, GitLab, …) or github",
        "21:5: auth provider \"noissuer\" of kind oidc has no \"issuer\"",
        "23:22: \"client_secret\" must not be empty",
    ];
    for want in expected {
        assert!(e.iter().any(|g| g == want), "missing {want:?} in {e:#?}");
    }
    assert_eq!(e.len(), expected.len(), "{e:#?}");
}

#[test]
fn base_urls() {
    use super::build::check_base_url;
    assert!(check_base_url("https://idp.example.com", true).is_ok());
    assert!(check_base_url("http://localhost:8080/realms/x", true).is_ok());
    assert!(check_base_url("http://127.0.0.2:9", true).is_ok());
    assert!(check_base_url("http://[::1]:9", true).is_ok());
    assert!(check_base_url("http://10.0.0.1", true).is_err());
    assert!(check_base_url("http://127.0.0.1.evil.example", true).is_err());
    assert!(check_base_url("http://10.0.0.1", false).is_ok());
    assert!(check_base_url("https://", true).is_err());
    assert!(check_base_url("https:///x", true).is_err());
    assert!(check_base_url("idp.example.com", true).is_err());
}

#[test]
fn container_tasks_need_a_worker_that_runs_containers() {
    let e = errors(
        "workers:
  remote1: {host: ci@build.example, queues: [remote]}
  local1: {queues: [default, mixed]}
  remote2: {host: ci@build2.example, queues: [mixed]}
tasks:
  boxed: {command: make, image: debian:12, queues: [remote]}
  fine: {command: make, image: debian:12, queues: [mixed]}
  plain: {command: make, queues: [remote]}
pipelines:
  p:
    queues: [remote]
    tasks:
      a: {script: [make], image: busybox}
      b: {script: [make]}
",
    );
    assert_eq!(
        e,
        vec![
            "6:3: task \"boxed\" runs in a container (image:/build:), but only SSH workers serve its queue \"remote\", and they run plain scripts (hint: serve the queue with a local worker, i.e. one without host:, or list it in server.agent_queues)".to_string(),
            "10:3: task \"a\" of pipeline \"p\" runs in a container (image:/build:), but only SSH workers serve its queue \"remote\", and they run plain scripts (hint: serve the queue with a local worker, i.e. one without host:, or list it in server.agent_queues)".to_string(),
        ]
    );
    // Agents run containers on their own engine.
    ok("server: {agent_queues: [remote]}
workers:
  remote1: {host: ci@build.example, queues: [remote]}
tasks:
  boxed: {command: make, image: debian:12, queues: [remote]}
");
}
