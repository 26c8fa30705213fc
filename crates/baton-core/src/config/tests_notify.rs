//! Loader tests for `notify:`.

use std::path::PathBuf;

use super::*;
use crate::run::Status;

fn resolve(source: &SecretSource) -> Result<String, String> {
    match source {
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

#[test]
fn notify_entries_load_match_and_never_serialize_the_secret() {
    let c = load(
        "notify:\n  - webhook: http://127.0.0.1:9/hook\n    secret: env:HOOK_KEY\n    tasks: ['app/*', '!app/lint']\n    on: [failed, broken]\n  - webhook: https://chat.example.com/x\n    secret: env:OTHER\n",
    )
    .unwrap();
    assert_eq!(c.notify.len(), 2);
    let n = &c.notify[0];
    assert_eq!(
        n.secret.as_ref().unwrap().value.expose(),
        "value-of-HOOK_KEY"
    );
    assert!(n.matches("app/test", Status::Failed));
    assert!(!n.matches("app/test", Status::Success));
    assert!(!n.matches("app/lint", Status::Failed));
    assert!(!n.matches("other", Status::Failed));
    assert!(c.notify[1].matches("anything", Status::Canceled));
    assert!(!c.notify[1].matches("anything", Status::Running));
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("value-of"), "{json}");
}

#[test]
fn notify_mistakes_are_reported_at_their_place() {
    let errs = errors(
        "notify:\n  - webhook: ftp://x\n    secret: hunter2\n    on: [success, exploded]\n    color: red\n  - secret: env:K\n",
    );
    let all = errs.join("\n");
    assert!(
        all.contains("t.yaml:5:5: unknown key \"color\" in notify entry 1"),
        "{all}"
    );
    assert!(
        all.contains("t.yaml:2:14: invalid \"webhook\" \"ftp://x\""),
        "{all}"
    );
    assert!(
        all.contains("t.yaml:3:13: \"secret\" of notify entry 1 must be a reference"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
    assert!(
        all.contains("t.yaml:4:19: unknown run end \"exploded\""),
        "{all}"
    );
    assert!(
        all.contains("t.yaml:6:5: notify entry 2 has no \"webhook\" nor \"email\""),
        "{all}"
    );
    let errs = errors("notify:\n  - webhook: http://localhost:1/\n");
    assert!(
        errs[0].contains("t.yaml:2:5: notify entry 1 has no \"secret\""),
        "{errs:?}"
    );
}

#[test]
fn mail_entries_need_addresses_and_an_smtp_relay() {
    let c = load(
        "notify:\n  - email: [dev@example.com, ops@example.com]\n    smtp: {host: 127.0.0.1, port: 2525, from: ci@example.com}\n    on: [broken]\n",
    )
    .unwrap();
    let n = &c.notify[0];
    assert_eq!(n.receiver(), "mailto:dev@example.com,ops@example.com");
    assert_eq!(n.smtp.as_ref().unwrap().port, 2525);
    assert!(n.matches("x", Status::Broken) && !n.matches("x", Status::Failed));
    let all = errors(
        "notify:\n  - email: [not an address]\n    smtp: {host: h, port: 70000}\n  - email: [a@b]\n  - email: [a@b]\n    webhook: http://localhost/\n",
    )
    .join("\n");
    assert!(
        all.contains("t.yaml:2:13: invalid address \"not an address\""),
        "{all}"
    );
    assert!(
        all.contains("\"smtp\" of notify entry 1 has no \"from\""),
        "{all}"
    );
    assert!(
        all.contains("t.yaml:3:27: \"port\" of \"smtp\" of notify entry 1 is above 65535"),
        "{all}"
    );
    assert!(
        all.contains("t.yaml:4:5: notify entry 2 has \"email\" but no \"smtp\""),
        "{all}"
    );
    assert!(all.contains("t.yaml:5:5: notify entry 3 has both"), "{all}");
}
