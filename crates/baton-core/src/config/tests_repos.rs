//! Loader tests for `repos:`, `on:`/`checkout:` and a repository's `.baton/`.

use std::path::PathBuf;

use super::*;
use crate::on::{EventFact, EventFacts, PushTarget, matches};

fn resolve(source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::Env(v) if v == "UNSET" => {
            Err(format!("environment variable {v:?} is not set"))
        }
        SecretSource::Env(v) => Ok(format!("value-of-{v}")),
        SecretSource::File(p) => Err(format!("cannot read file {}: gone", p.display())),
    }
}

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    load_sources_with(&[(PathBuf::from("t.yaml"), yaml.to_owned())], &resolve)
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn push(branch: &str) -> EventFacts {
    EventFacts {
        repo: Some("app".into()),
        event: EventFact::Push {
            target: PushTarget::Branch(branch.into()),
            deleted: false,
            changed_paths: None,
        },
    }
}

#[test]
fn repos_load_with_secrets_held_and_never_serialized() {
    let c = load(
        "repos:\n  app:\n    url: git@github.com:acme/app.git\n    forge: github\n    secret: env:APP_HOOK\n    token: env:APP_TOKEN\n    branches: [main]\n    poll: 5m\n",
    )
    .unwrap();
    let r = &c.repos["app"];
    assert_eq!(r.forge, Forge::Github);
    assert_eq!(r.url, "git@github.com:acme/app.git");
    assert_eq!(
        r.secret.as_ref().unwrap().value.expose(),
        "value-of-APP_HOOK"
    );
    assert_eq!(
        r.token.as_ref().unwrap().value.expose(),
        "value-of-APP_TOKEN"
    );
    assert_eq!(r.branches, ["main"]);
    assert_eq!(r.poll, Some(std::time::Duration::from_secs(300)));
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("value-of"), "{json}");
    assert!(!json.contains("APP_HOOK"), "{json}");
}

#[test]
fn repo_errors_have_places_and_never_echo_inline_secrets() {
    let e = errors(
        "repos:\n  app:\n    url: /srv/app\n    forge: gitea\n    secret: hunter2-inline\n  .bad:\n    url: x\n  other:\n    forge: bitbucket\n    secret: env:UNSET\n",
    );
    assert_eq!(
        e,
        [
            "t.yaml:5:13: \"secret\" of repository \"app\" must be a reference, env:VARIABLE or file:PATH, never the value itself (hint: move the value into an environment variable or a file readable only by the server)",
            "t.yaml:6:3: invalid repository name \".bad\": repository names are letters, digits, `-`, `_` and `.`, not starting with `.` or `-`",
            "t.yaml:8:3: repository \"other\" has no \"url\"",
            "t.yaml:9:12: unknown forge \"bitbucket\" in repository \"other\"; expected one of: github, gitea, forgejo, gitlab, git",
            "t.yaml:10:13: \"secret\" of repository \"other\": environment variable \"UNSET\" is not set",
        ]
    );
    assert!(!e.join("\n").contains("hunter2"));
}

#[test]
fn a_forge_repo_without_secret_is_an_error() {
    let e = errors("repos:\n  app:\n    url: /srv/app\n    forge: github\n");
    assert_eq!(
        e,
        [
            "t.yaml:2:3: repository \"app\" has no \"secret\", so its webhooks cannot be verified (hint: secret: env:VAR, the secret set on the forge's webhook; or forge: git for a repository without webhooks)"
        ]
    );
    assert!(load("repos:\n  app:\n    url: /srv/app\n").is_ok());
}

#[test]
fn a_repos_users_are_authorized_users_or_users_but_not_both() {
    let c = load(
        "repos:\n  a:\n    url: /srv/a\n    authorized_users: [alice]\n  b:\n    url: /srv/b\n    users: ['*']\n  c:\n    url: /srv/c\n",
    )
    .unwrap();
    assert_eq!(c.repos["a"].authorized_users, ["alice"]);
    assert_eq!(c.repos["b"].authorized_users, ["*"]);
    assert!(c.repos["c"].authorized_users.is_empty());
    let e = errors("repos:\n  a:\n    url: /srv/a\n    authorized_users: [x]\n    users: [y]\n");
    assert_eq!(
        e,
        [
            "t.yaml:5:5: repository \"a\" has both \"authorized_users\" and \"users\" (they are the same list: keep one)"
        ]
    );
}

#[test]
fn on_and_checkout_on_tasks_and_pipelines() {
    let c = load(
        "tasks:\n  t:\n    command: make\n    checkout: false\n    on:\n      repo: app\n      push: {branches: [main]}\npipelines:\n  p:\n    on: push\n    tasks:\n      a: {script: [make]}\n",
    )
    .unwrap();
    let t = &c.tasks["t"];
    assert!(!t.checkout);
    let on = t.on.as_ref().unwrap();
    assert!(matches(on, &push("main")).is_ok());
    assert!(matches(on, &push("dev")).is_err());
    assert!(c.pipelines["p"].checkout);
    assert!(matches(c.pipelines["p"].on.as_ref().unwrap(), &push("dev")).is_ok());
}

#[test]
fn bad_on_is_reported_at_its_value() {
    let e = errors(
        "tasks:\n  t:\n    command: make\n    on:\n      push: {branchez: [main]}\n  u:\n    command: make\n    on: [push, release]\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:5:7: invalid \"on\": unknown field `branchez`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.yaml:8:9: invalid \"on\": unknown event \"release\""),
        "{e:?}"
    );
}

#[test]
fn repo_config_is_only_tasks_pipelines_variables_and_never_reads_server_secrets() {
    let server = load("workers:\n  w: {queues: [big]}\n").unwrap();
    let sources = |t: &str| vec![(PathBuf::from(".baton/ci.yml"), t.to_owned())];
    let c = load_repo_sources(
        &sources("tasks:\n  test:\n    command: make\n    queues: [big]\n    env:\n      API_TOKEN: plain-in-repo\n"),
        &server,
    )
    .unwrap();
    assert_eq!(
        c.tasks["test"].env["API_TOKEN"],
        EnvValue::Plain("plain-in-repo".into())
    );
    assert!(c.workers.is_empty());
    let e = load_repo_sources(
        &sources("server: {}\nsecrets:\n  X: env:HOME\ntasks:\n  t:\n    command: x\n    queues: [nope]\n"),
        &server,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(".baton/ci.yml:1:1: unknown key \"server\" in the top level"),
        "{e}"
    );
    assert!(
        e.contains(".baton/ci.yml:2:1: unknown key \"secrets\""),
        "{e}"
    );
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn ssh_keys_are_file_references_only() {
    let c =
        load("repos:\n  app:\n    url: git@h:a/b.git\n    ssh_key: file:keys/deploy\n").unwrap();
    assert_eq!(c.repos["app"].ssh_key, Some(PathBuf::from("keys/deploy")));
    let e = errors("repos:\n  app:\n    url: git@h:a/b.git\n    ssh_key: env:KEY\n");
    assert!(e[0].contains("must be file:PATH"), "{e:?}");
}

#[test]
fn pull_request_keys() {
    let c = load(
        "repos:\n  app:\n    url: /srv/app\n    trusted_users: [ada, bob]\ntasks:\n  t:\n    command: make\n    pr_head: true\n    cancel_superseded: false\n  u:\n    command: make\npipelines:\n  p:\n    cancel_superseded: true\n    tasks:\n      a: {script: [make]}\n",
    )
    .unwrap();
    assert_eq!(c.repos["app"].trusted_users, ["ada", "bob"]);
    assert!(c.tasks["t"].pr_head);
    assert_eq!(c.tasks["t"].cancel_superseded, Some(false));
    assert!(!c.tasks["u"].pr_head);
    assert_eq!(c.tasks["u"].cancel_superseded, None);
    assert_eq!(c.pipelines["p"].cancel_superseded, Some(true));
    assert!(!c.pipelines["p"].pr_head);
    let e = errors("tasks:\n  t:\n    command: make\n    pr_head: yes please\n");
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn a_repositorys_api_must_be_https_unless_loopback() {
    let repo = |api: &str| {
        format!(
            "repos:\n  app:\n    url: git@ghe.example.com:acme/app.git\n    forge: github\n    secret: env:APP_HOOK\n    token: env:APP_TOKEN\n    api: {api}\n"
        )
    };
    let c = load(&repo("https://ghe.example.com/api/v3/")).unwrap();
    assert_eq!(
        c.repos["app"].api.as_deref(),
        Some("https://ghe.example.com/api/v3")
    );
    assert!(load(&repo("http://127.0.0.1:9000")).is_ok());
    let errs = errors(&repo("http://ghe.example.com"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "t.yaml:7:10: invalid \"api\" \"http://ghe.example.com\" of repository \"app\": use https://"
        ),
        "{errs:?}"
    );
}

fn resolve_pem(source: &SecretSource) -> Result<String, String> {
    match source {
        SecretSource::File(p) if p.ends_with("app.pem") => {
            Ok("-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----".into())
        }
        other => resolve(other),
    }
}

#[test]
fn github_app_and_job_tokens_take_their_keys_by_reference() {
    let yaml = "repos:\n  gh:\n    url: https://github.com/acme/app\n    forge: github\n    secret: env:S\n    github_app:\n      app_id: 12\n      installation_id: 34\n      private_key: file:app.pem\n  tea:\n    url: https://git.example/acme/app\n    forge: gitea\n    secret: env:S\n    job_tokens:\n      user: ci-bot\n      password: env:BOT_PW\n";
    let c = load_sources_with(&[(PathBuf::from("t.yaml"), yaml.to_owned())], &resolve_pem)
        .unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
    let app = c.repos["gh"].github_app.as_ref().unwrap();
    assert_eq!((app.app_id, app.installation_id), (12, 34));
    assert_eq!(app.permissions["contents"], "read");
    assert_eq!(app.permissions.len(), 1);
    assert!(
        app.private_key
            .as_ref()
            .unwrap()
            .value
            .expose()
            .contains("PRIVATE KEY")
    );
    let tokens = c.repos["tea"].job_tokens.as_ref().unwrap();
    assert_eq!(tokens.user, "ci-bot");
    assert_eq!(tokens.scopes, ["read:repository"]);
    assert_eq!(
        tokens.password.as_ref().unwrap().value.expose(),
        "value-of-BOT_PW"
    );
    // A job never inherits the variables that hold them.
    assert!(c.secret_env_vars().contains(&"BOT_PW".to_owned()));
    // Nothing of them is serialized.
    let json = serde_json::to_string(&c.repos["tea"]).unwrap();
    assert!(
        !json.contains("BOT_PW") && !json.contains("value-of"),
        "{json}"
    );
}

#[test]
fn bad_github_app_and_job_tokens_are_errors_at_their_place() {
    let text = errors(
        "repos:\n  gh:\n    url: https://github.com/acme/app\n    forge: gitea\n    secret: env:S\n    github_app:\n      app_id: -1\n      private_key: \"-----BEGIN RSA PRIVATE KEY-----\"\n      permissions: {contents: all}\n    job_tokens:\n      user: bot\n      scopes: [repository, \"read:repository\"]\n",
    )
    .join("\n");
    for want in [
        "t.yaml:6:5: \"github_app\" of repository \"gh\" needs forge: github",
        "t.yaml:7:15: \"app_id\" of \"github_app\" of repository \"gh\" must be a positive integer, found -1",
        "has no \"installation_id\"",
        "\"private_key\" of \"github_app\" of repository \"gh\" must be a reference",
        "invalid permission contents: \"all\"",
        "t.yaml:10:5: \"job_tokens\" of repository \"gh\" has no \"password\"",
        "t.yaml:12:16: invalid scope \"repository\"",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("needs forge: gitea"), "{text}");
    let text = errors(
        "repos:\n  gh:\n    url: https://github.com/acme/app\n    forge: github\n    secret: env:S\n    github_app:\n      app_id: 1\n      installation_id: 2\n      private_key: env:NOT_PEM\n",
    )
    .join("\n");
    assert!(
        text.contains("env:NOT_PEM is not a PEM private key") && !text.contains("value-of"),
        "{text}"
    );
}

#[test]
fn local_runs_are_trusted_only_when_a_repository_says_so() {
    let c = load(
        "repos:\n  app:\n    url: /srv/app\n    trust_local_runs: true\n  other:\n    url: /srv/other\n",
    )
    .unwrap();
    assert!(c.repos["app"].trust_local_runs);
    assert!(!c.repos["other"].trust_local_runs);
    let e = errors("repos:\n  app:\n    url: /srv/app\n    trust_local_runs: sometimes\n");
    assert_eq!(e.len(), 1, "{e:?}");
}
