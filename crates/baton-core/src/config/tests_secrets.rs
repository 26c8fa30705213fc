//! Loader tests for `secrets:`, secret-looking variables and env entries, and commands kept as
//! written.

use std::path::PathBuf;

use super::*;

// ---------------------------------------------------------------- secrets

/// A resolver without I/O: `env:X` is `value-of-X` unless X is `UNSET`, `file:` fails.
fn fake_resolve(source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::Env(v) if v == "UNSET" => {
            Err(format!("environment variable {v:?} is not set"))
        }
        SecretSource::Env(v) if v == "SHORT" => Ok("abc".into()),
        SecretSource::Env(v) => Ok(format!("value-of-{v}")),
        SecretSource::File(p) => Err(format!("cannot read file {}: gone", p.display())),
    }
}

fn load_fake(yaml: &str) -> Result<Config, ConfigErrors> {
    load_sources_with(
        &[(PathBuf::from("/etc/baton/t.yaml"), yaml.to_owned())],
        &fake_resolve,
    )
}

fn fake_errors(yaml: &str) -> Vec<String> {
    match load_fake(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e
            .diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect(),
    }
}

#[test]
fn secrets_load_and_are_never_serialized() {
    let c = match load_fake(
        "
secrets:
  TOKEN: env:CI_TOKEN
tasks:
  a:
    command: echo $TOKEN
    secrets: [TOKEN]
    env: {API_KEY: k3y-value, PLAIN: p}
pipelines:
  p:
    env: {DB_PASSWORD: pw-value}
    tasks:
      t: {script: [echo], secrets: [TOKEN], env: {X_SECRET: xs-value}}
    on_error: {script: [echo], env: {MY_TOKEN: tk-value}}
",
    ) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let s = &c.secrets["TOKEN"];
    assert_eq!(s.source, SecretSource::Env("CI_TOKEN".into()));
    assert_eq!(s.value.expose(), "value-of-CI_TOKEN");
    assert_eq!(
        c.secret("TOKEN").map(SecretValue::expose),
        Some("value-of-CI_TOKEN")
    );
    assert_eq!(format!("{:?}", s.value), "SecretValue([REDACTED])");
    let a = &c.tasks["a"];
    assert_eq!(a.secrets, vec!["TOKEN".to_owned()]);
    assert_eq!(
        a.env["API_KEY"],
        EnvValue::Secret {
            secret: "tasks.a.env.API_KEY".into()
        }
    );
    assert_eq!(a.env["PLAIN"].plain(), Some("p"));
    assert_eq!(
        c.hidden("tasks.a.env.API_KEY").map(SecretValue::expose),
        Some("k3y-value")
    );
    let p = &c.pipelines["p"];
    assert_eq!(p.tasks["t"].secrets, vec!["TOKEN".to_owned()]);
    for (r, v) in [
        ("pipelines.p.env.DB_PASSWORD", "pw-value"),
        ("pipelines.p.tasks.t.env.X_SECRET", "xs-value"),
        ("pipelines.p.on_error.env.MY_TOKEN", "tk-value"),
    ] {
        assert_eq!(c.hidden(r).map(SecretValue::expose), Some(v), "{r}");
    }
    // No value reaches any serialized form of the config or its definitions.
    let json = serde_json::to_string(&c).unwrap();
    let debug = format!("{c:?}");
    for v in [
        "value-of-CI_TOKEN",
        "k3y-value",
        "pw-value",
        "xs-value",
        "tk-value",
    ] {
        assert!(!json.contains(v), "{v} in {json}");
        assert!(!debug.contains(v), "{v} in {debug}");
    }
    // A definition round-trips without its values (they come from the config at job start).
    let back: TaskDef = serde_json::from_str(&serde_json::to_string(a).unwrap()).unwrap();
    assert_eq!(&back, a);
}

#[test]
fn secret_errors_say_what_where_and_what_to_do() {
    let errs = fake_errors(
        "
secrets:
  GONE: env:UNSET
  FILE: file:keys/deploy
  bad: env:X
  SYNTAX: vault:x
  SHORT: env:SHORT
  NUM: 5
tasks:
  a:
    command: x
    secrets: [NOPE, env:Y, GONE]
",
    );
    assert_eq!(
        errs,
        vec![
            "3:9: secret \"GONE\": environment variable \"UNSET\" is not set",
            "4:9: secret \"FILE\": cannot read file /etc/baton/keys/deploy: gone",
            "5:3: invalid secret name \"bad\": secret names become environment variables: letters, digits and _, starting with an upper-case letter or _ (so no trigger argument can have the same name)",
            "6:11: secret \"SYNTAX\": invalid secret source \"vault:x\": expected env:VARIABLE or file:PATH",
            "7:10: secret \"SHORT\": the value from env:SHORT has 3 characters; at least 4 are needed so that it can be masked in logs",
            "8:8: expected env:VARIABLE or file:PATH for secret \"NUM\", found an integer",
            "12:15: unknown secret \"NOPE\" in \"secrets\" of task \"a\" (defined secrets: FILE, GONE, NUM, SHORT, SYNTAX, bad; or define it under the top-level \"secrets:\")",
            "12:21: invalid secret reference \"env:Y\" in \"secrets\" of task \"a\": list the names of secrets defined under the top-level \"secrets:\" (define it there as NAME: env:Y)",
        ]
    );
    let errs = fake_errors(
        "secrets: {A_KEY: env:K}\ntasks:\n  a:\n    command: x\n    env: {A_KEY: v}\n    secrets: [A_KEY, A_KEY]\npipelines:\n  p:\n    tasks:\n      t: {script: [x], secrets: [Z]}\n",
    );
    assert_eq!(
        errs,
        vec![
            "6:15: \"A_KEY\" is both in \"env\" and in \"secrets\" of task \"a\": remove one of them",
            "6:22: secret \"A_KEY\" is listed twice in \"secrets\" of task \"a\"",
            "10:34: unknown secret \"Z\" in \"secrets\" of task \"t\" of pipeline \"p\" (defined secrets: A_KEY; or define it under the top-level \"secrets:\")",
        ]
    );
}

#[test]
fn secrets_from_real_env_and_file() {
    let dir = tempfile_dir();
    std::fs::write(dir.join("deploy.key"), "from-the-file\n").unwrap();
    let yaml = "secrets:\n  F: file:deploy.key\n  E: env:BATON_TEST_SURELY_UNSET_VAR\n";
    let path = dir.join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let errs = load_path(&path).unwrap_err();
    assert_eq!(errs.diagnostics.len(), 1, "{errs}");
    assert_eq!(
        errs.diagnostics[0].message,
        "secret \"E\": environment variable \"BATON_TEST_SURELY_UNSET_VAR\" is not set (hint: set it in the environment of the baton server, or use file:PATH)"
    );
    std::fs::write(&path, "secrets:\n  F: file:deploy.key\n").unwrap();
    let c = load_path(&path).unwrap();
    // Relative to the config file; one trailing newline dropped.
    assert_eq!(
        c.secrets["F"].source,
        SecretSource::File(dir.join("deploy.key"))
    );
    assert_eq!(
        c.secret("F").map(SecretValue::expose),
        Some("from-the-file")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-core-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn commands_are_kept_as_written_and_rendered_at_job_start() {
    let c = load_fake(
        "variables: {host: h.example, db_password: pw-1234}\ntasks:\n  a:\n    command: \"psql -h ${:host} 'pw=${:db_password}' \\\"${:db_password}\\\" ${:host}\"\n",
    )
    .unwrap();
    let a = &c.tasks["a"];
    assert_eq!(
        a.command,
        "psql -h ${:host} 'pw=${:db_password}' \"${:db_password}\" ${:host}"
    );
    let json = serde_json::to_string(a).unwrap();
    assert!(!json.contains("pw-1234"), "{json}");
    let (script, env) = render_command(&a.command, &a.variables);
    assert_eq!(
        script,
        "psql -h h.example 'pw='\"${BATON_SECRET_VARIABLE_1}\"'' \"${BATON_SECRET_VARIABLE_1}\" h.example"
    );
    assert_eq!(
        env,
        vec![(
            "BATON_SECRET_VARIABLE_1".to_owned(),
            "variables.db_password".to_owned()
        )]
    );
}

#[test]
fn definitions_are_kept_as_written_without_secret_values() {
    let yaml = "# the server's tasks
secrets:
  TOKEN: env:CI_TOKEN
tasks:
  a:
    # builds it
    command: echo $TOKEN value-of-CI_TOKEN
    secrets: [TOKEN]
    env:
      API_KEY: k3y   # short, hidden by its place
      PLAIN: p
      DEPLOY_PASSWORD: |
        line-one
        line-two

  b: {command: echo b}
pipelines:
  p:
    env: {DB_PASSWORD: pw-value}
    tasks:
      t: {script: [echo], env: {X_SECRET: \"xs-value\"}}
    on_error: {script: [echo], env: {MY_TOKEN: 'tk-value'}}
";
    let c = match load_fake(yaml) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let a = c.written_source(false, "a").unwrap();
    assert_eq!(a.file, PathBuf::from("/etc/baton/t.yaml"));
    assert_eq!(a.line, 5);
    assert_eq!(
        a.text,
        "  a:
    # builds it
    command: echo $TOKEN ***
    secrets: [TOKEN]
    env:
      API_KEY: ***   # short, hidden by its place
      PLAIN: p
      DEPLOY_PASSWORD: |
        ***
        ***"
    );
    let b = c.written_source(false, "b").unwrap();
    assert_eq!((b.line, b.text.as_str()), (16, "  b: {command: echo b}"));
    let p = c.written_source(true, "p").unwrap();
    assert_eq!(p.line, 18);
    for secret in ["pw-value", "xs-value", "tk-value", "k3y", "line-one"] {
        assert!(
            !p.text.contains(secret) && !a.text.contains(secret),
            "{p:?}"
        );
    }
    assert_eq!(
        p.text,
        "  p:
    env: {DB_PASSWORD: ***}
    tasks:
      t: {script: [echo], env: {X_SECRET: ***}}
    on_error: {script: [echo], env: {MY_TOKEN: ***}}"
    );
    assert_eq!(c.written_source(true, "a"), None);
}
