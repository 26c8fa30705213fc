//! Every real payload in `tests/fixtures/webhooks/` replayed with the right signature (and its
//! parsed fields checked against the payload), a wrong one, a missing one, and one made with
//! another secret.

use std::path::PathBuf;

use baton_forge::{
    Event, EventKind, Forge, HookError, ParseError, PrAction, RefTarget, VerifyError, receive,
    same_repo, sign, signature_header,
};
use serde_json::Value;

const SECRET: &str = "It's a Secret to Everybody";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/webhooks")
}

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"))
}

/// The HMAC recorded for `name` in `signatures.computed.txt`.
fn recorded_signature(name: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join("signatures.computed.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("{name} not in signatures.computed.txt"));
    let field = line
        .split('\t')
        .find_map(|f| f.strip_prefix("sha256-hmac="))
        .unwrap();
    field.to_owned()
}

/// Headers a forge sends for `event`, with the signature header set to `sig` (or absent).
fn headers(forge: Forge, event: &str, sig: Option<String>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = match forge {
        Forge::GitHub => vec![
            ("X-GitHub-Event".into(), event.into()),
            ("X-GitHub-Delivery".into(), "d-123".into()),
        ],
        Forge::Gitea => vec![
            ("X-Gitea-Event".into(), event.into()),
            ("X-Gitea-Delivery".into(), "d-123".into()),
        ],
        Forge::Forgejo => vec![
            ("X-Forgejo-Event".into(), event.into()),
            ("X-Forgejo-Delivery".into(), "d-123".into()),
        ],
        Forge::GitLab => vec![
            ("X-Gitlab-Event".into(), event.into()),
            ("X-Gitlab-Event-UUID".into(), "d-123".into()),
        ],
    };
    h.push(("Content-Type".into(), "application/json".into()));
    if let Some(sig) = sig {
        let value = match forge {
            Forge::GitHub => format!("sha256={sig}"),
            _ => sig,
        };
        h.push((signature_header(forge).into(), value));
    }
    h
}

/// Replays `name` as `forge` with right, wrong, missing and other-secret signatures; returns
/// the event the right one parsed to.
fn replay(forge: Forge, name: &str, event: &str) -> Event {
    let body = payload(name);
    let right = match forge {
        Forge::GitLab => SECRET.to_owned(),
        _ => {
            let sig = sign(SECRET.as_bytes(), &body);
            assert_eq!(sig, recorded_signature(name), "{name}: signature drifted");
            sig
        }
    };
    let header = signature_header(forge);

    let ev = receive(
        forge,
        &headers(forge, event, Some(right.clone())),
        &body,
        SECRET.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{forge} {name}: {e}"));
    assert_eq!(ev.forge, forge);
    assert_eq!(ev.delivery.as_deref(), Some("d-123"));

    let wrong = match forge {
        Forge::GitLab => "badsampleToken!!".to_owned(),
        _ => sign(SECRET.as_bytes(), b"another body"),
    };
    let got = receive(
        forge,
        &headers(forge, event, Some(wrong)),
        &body,
        SECRET.as_bytes(),
    );
    assert_eq!(
        got,
        Err(HookError::Verify(VerifyError::Mismatch(header))),
        "{name}"
    );

    let got = receive(
        forge,
        &headers(forge, event, None),
        &body,
        SECRET.as_bytes(),
    );
    assert_eq!(
        got,
        Err(HookError::Verify(VerifyError::MissingHeader(header))),
        "{name}"
    );

    // Signed by a forge that was given another secret.
    let other = match forge {
        Forge::GitLab => "another secret".to_owned(),
        _ => sign(b"another secret", &body),
    };
    let got = receive(
        forge,
        &headers(forge, event, Some(other)),
        &body,
        SECRET.as_bytes(),
    );
    assert_eq!(
        got,
        Err(HookError::Verify(VerifyError::Mismatch(header))),
        "{name}"
    );

    // The right signature does not cover a changed body.
    let mut tampered = body.clone();
    tampered.push(b' ');
    let got = receive(
        forge,
        &headers(forge, event, Some(right)),
        &tampered,
        SECRET.as_bytes(),
    );
    if forge != Forge::GitLab {
        assert_eq!(
            got,
            Err(HookError::Verify(VerifyError::Mismatch(header))),
            "{name}"
        );
    }
    ev
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&payload(name)).unwrap()
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer}"))
}

/// Every path in the payload's commits' added/modified/removed lists.
fn payload_paths(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in v["commits"].as_array().unwrap() {
        for k in ["added", "modified", "removed"] {
            for p in c[k].as_array().into_iter().flatten() {
                out.push(p.as_str().unwrap().to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn github_tag_deletion() {
    let ev = replay(Forge::GitHub, "github/push_payload.json", "push");
    let EventKind::Push(p) = &ev.kind else {
        panic!("{:?}", ev.kind)
    };
    assert_eq!(p.git_ref, "refs/tags/simple-tag");
    assert_eq!(p.target, RefTarget::Tag("simple-tag".into()));
    assert!(p.deleted && !p.created);
    assert_eq!(p.after, "0".repeat(40));
    assert_eq!(p.before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(p.head_commit, None);
    assert_eq!((p.commit_count, p.commits_listed), (0, 0));
    assert!(p.changed_paths.is_empty());
    assert_eq!(ev.repo.full_name, "Codertocat/Hello-World");
    assert_eq!(ev.sender.as_deref(), Some("Codertocat"));
}

#[test]
fn github_new_branch() {
    let name = "github/push_with-new-branch.json";
    let ev = replay(Forge::GitHub, name, "push");
    let v = json(name);
    let EventKind::Push(p) = &ev.kind else {
        panic!("{:?}", ev.kind)
    };
    assert_eq!(p.target, RefTarget::Branch("master".into()));
    assert!(p.created && !p.deleted);
    assert_eq!(p.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    let head = p.head_commit.as_ref().unwrap();
    assert_eq!(head.id, p.after);
    assert_eq!(head.message, s(&v, "/head_commit/message"));
    assert_eq!(
        head.author,
        "Codertocat <21031067+Codertocat@users.noreply.github.com>"
    );
    assert_eq!(
        p.changed_paths.iter().cloned().collect::<Vec<_>>(),
        payload_paths(&v)
    );
    assert_eq!(p.commit_count, 1);
    assert!(
        ev.repo
            .urls
            .contains(&"https://github.com/Codertocat/Hello-World.git".to_owned())
    );
    assert!(
        ev.repo
            .urls
            .contains(&"git@github.com:Codertocat/Hello-World.git".to_owned())
    );
    assert!(
        ev.repo
            .urls
            .iter()
            .all(|u| same_repo(u, "https://github.com/codertocat/hello-world"))
    );
}

#[test]
fn github_pull_request_opened() {
    let name = "github/pull_request_opened.json";
    let ev = replay(Forge::GitHub, name, "pull_request");
    let v = json(name);
    let EventKind::PullRequest(pr) = &ev.kind else {
        panic!("{:?}", ev.kind)
    };
    assert_eq!(pr.action, PrAction::Opened);
    assert_eq!(pr.number, 2);
    assert_eq!(pr.head_sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(pr.head_ref, "changes");
    assert_eq!(pr.base_ref, "master");
    assert_eq!(
        pr.base_sha.as_deref(),
        Some(s(&v, "/pull_request/base/sha"))
    );
    assert_eq!(pr.title, s(&v, "/pull_request/title"));
    assert!(!pr.from_fork);
    let head_repo = pr.head_repo.as_ref().unwrap();
    assert!(
        head_repo
            .urls
            .contains(&"https://github.com/Codertocat/Hello-World.git".to_owned())
    );
    assert_eq!(ev.sender.as_deref(), Some("Codertocat"));
}

#[test]
fn github_ping() {
    let ev = replay(Forge::GitHub, "github/ping_payload.json", "ping");
    assert_eq!(ev.kind, EventKind::Ping);
    assert_eq!(ev.repo.full_name, "Octocoders/Hello-World");
    assert_eq!(ev.sender.as_deref(), Some("Codertocat"));
}

#[test]
fn gitea_and_forgejo_pushes() {
    for forge in [Forge::Gitea, Forge::Forgejo] {
        let name = "gitea/push-event.json";
        let ev = replay(forge, name, "push");
        let v = json(name);
        let EventKind::Push(p) = &ev.kind else {
            panic!("{:?}", ev.kind)
        };
        assert_eq!(p.target, RefTarget::Branch("master".into()));
        assert!(
            p.created && !p.deleted,
            "created derives from the zero `before`"
        );
        assert_eq!(p.after, "67b56589a45103f891bdee7c0546e5d40bc02001");
        assert_eq!(p.head_commit.as_ref().unwrap().message, "example\n");
        assert_eq!(
            p.changed_paths.iter().cloned().collect::<Vec<_>>(),
            payload_paths(&v)
        );
        assert_eq!(ev.repo.full_name, "example/example");
        assert!(
            ev.repo
                .urls
                .contains(&s(&v, "/repository/ssh_url").to_owned())
        );
        assert_eq!(ev.sender.as_deref(), Some("example"));

        // The docs' example has no head_commit: it is found among the commits.
        let ev = replay(forge, "gitea/push_docs_example.json", "push");
        let EventKind::Push(p) = &ev.kind else {
            panic!("{:?}", ev.kind)
        };
        assert_eq!(p.target, RefTarget::Branch("develop".into()));
        assert!(!p.created && !p.deleted);
        let head = p.head_commit.as_ref().unwrap();
        assert_eq!(head.id, "bffeb74224043ba2feb48d137756c8a9331c449a");
        assert_eq!(head.author, "Gitea <someone@gitea.io>");
        assert!(same_repo(
            &ev.repo.urls[0],
            "ssh://gitea@localhost:2222/gitea/webhooks.git"
        ));
    }
}

#[test]
fn gitlab_push() {
    let name = "gitlab/push-event.json";
    let ev = replay(Forge::GitLab, name, "Push Hook");
    let v = json(name);
    let EventKind::Push(p) = &ev.kind else {
        panic!("{:?}", ev.kind)
    };
    assert_eq!(p.target, RefTarget::Branch("master".into()));
    assert_eq!(p.after, s(&v, "/checkout_sha"));
    assert_eq!(p.before, "95790bf891e76fee5e1747ab589903a6a1f80f22");
    assert_eq!(
        (p.commit_count, p.commits_listed),
        (4, 2),
        "the list is truncated"
    );
    assert_eq!(
        p.changed_paths.iter().cloned().collect::<Vec<_>>(),
        payload_paths(&v)
    );
    let head = p.head_commit.as_ref().unwrap();
    assert_eq!(head.message, s(&v, "/commits/1/message"));
    assert_eq!(ev.repo.full_name, "mike/diaspora");
    assert!(
        ev.repo
            .urls
            .iter()
            .any(|u| same_repo(u, "git@example.com:mike/diaspora.git"))
    );
    assert_eq!(ev.name, "Push Hook");
}

#[test]
fn gitlab_merge_request() {
    let name = "gitlab/merge-request-event.json";
    let ev = replay(Forge::GitLab, name, "Merge Request Hook");
    let EventKind::PullRequest(pr) = &ev.kind else {
        panic!("{:?}", ev.kind)
    };
    assert_eq!(pr.action, PrAction::Opened);
    assert_eq!(pr.raw_action, "open");
    assert_eq!(pr.number, 1);
    assert_eq!(pr.head_sha, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(pr.head_ref, "ms-viewport");
    assert_eq!(pr.base_ref, "master");
    assert_eq!(pr.base_sha, None);
    assert!(!pr.from_fork);
    assert_eq!(pr.title, "MS-Viewport");
    let head_repo = pr.head_repo.as_ref().unwrap();
    assert!(
        head_repo
            .urls
            .iter()
            .any(|u| same_repo(u, "http://example.com/awesome_space/awesome_project"))
    );
    assert_eq!(ev.sender.as_deref(), Some("root"));
}

#[test]
fn gitlab_merge_request_update_with_oldrev_is_synchronize() {
    let mut v = json("gitlab/merge-request-event.json");
    v["object_attributes"]["action"] = "update".into();
    let body = serde_json::to_vec(&v).unwrap();
    let h = headers(Forge::GitLab, "Merge Request Hook", Some(SECRET.into()));
    let ev = receive(Forge::GitLab, &h, &body, SECRET.as_bytes()).unwrap();
    let EventKind::PullRequest(pr) = &ev.kind else {
        panic!()
    };
    assert_eq!(
        pr.action,
        PrAction::Other("update".into()),
        "an edit is not new commits"
    );
    v["object_attributes"]["oldrev"] = "95790bf891e76fee5e1747ab589903a6a1f80f22".into();
    v["object_attributes"]["target_project_id"] = 99.into();
    let body = serde_json::to_vec(&v).unwrap();
    let ev = receive(Forge::GitLab, &h, &body, SECRET.as_bytes()).unwrap();
    let EventKind::PullRequest(pr) = &ev.kind else {
        panic!()
    };
    assert_eq!(pr.action, PrAction::Synchronize);
    assert!(pr.from_fork);
}

#[test]
fn gitlab_idempotency_key_is_preferred_and_system_hooks_are_unsupported() {
    let body = payload("gitlab/push-event.json");
    let mut h = headers(Forge::GitLab, "Push Hook", Some(SECRET.into()));
    h.push(("Idempotency-Key".into(), "idem-1".into()));
    let ev = receive(Forge::GitLab, &h, &body, SECRET.as_bytes()).unwrap();
    assert_eq!(ev.delivery.as_deref(), Some("idem-1"));

    let h = headers(Forge::GitLab, "System Hook", Some(SECRET.into()));
    let err = receive(Forge::GitLab, &h, &body, SECRET.as_bytes()).unwrap_err();
    assert!(
        matches!(err, HookError::Parse(ParseError::Unsupported { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("unsupported event System Hook: "),
        "{err}"
    );

    // A header that disagrees with the body's object_kind.
    let h = headers(Forge::GitLab, "Merge Request Hook", Some(SECRET.into()));
    let err = receive(Forge::GitLab, &h, &body, SECRET.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `object_kind` is \"push\" but header X-Gitlab-Event says \"Merge Request Hook\""
    );
}

#[test]
fn other_events_and_bad_bodies() {
    let body = payload("github/push_payload.json");
    let sig = sign(SECRET.as_bytes(), &body);
    let h = headers(Forge::GitHub, "watch", Some(sig));
    let ev = receive(Forge::GitHub, &h, &body, SECRET.as_bytes()).unwrap();
    assert_eq!(ev.kind, EventKind::Other("watch".into()));

    let body = b"payload=%7B%7D".to_vec();
    let h = headers(Forge::Gitea, "push", Some(sign(SECRET.as_bytes(), &body)));
    let err = receive(Forge::Gitea, &h, &body, SECRET.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("body is not JSON at line 1 column 1: "),
        "{err}"
    );

    let body = br#"{"ref": "refs/heads/x", "before": "a", "after": 7}"#.to_vec();
    let h = headers(Forge::GitHub, "push", Some(sign(SECRET.as_bytes(), &body)));
    let err = receive(Forge::GitHub, &h, &body, SECRET.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `after` is a number, expected a string"
    );

    let mut h = headers(Forge::GitHub, "push", Some(sign(SECRET.as_bytes(), &body)));
    h.retain(|(k, _)| k != "X-GitHub-Event");
    let err = receive(Forge::GitHub, &h, &body, SECRET.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        HookError::Parse(ParseError::MissingHeader("X-GitHub-Event"))
    );
}

/// A Gitea pull request payload, written after Gitea's `PullRequestPayload` (modules/structs):
/// the shared fixtures have none. Both actions Gitea sends for new commits are covered.
#[test]
fn gitea_pull_request_sync_from_a_fork() {
    let body = br#"{
      "action": "synchronized", "number": 7,
      "pull_request": {"number": 7, "title": "Fix it",
        "head": {"ref": "fix", "sha": "48e773f892a831faa47c0a160d1b7f0cd369ae2a", "repo_id": 2,
                 "repo": {"id": 2, "full_name": "example2/example",
                          "clone_url": "http://localhost:3000/example2/example.git"}},
        "base": {"ref": "master", "sha": "67b56589a45103f891bdee7c0546e5d40bc02001", "repo_id": 1,
                 "repo": {"id": 1, "full_name": "example/example",
                          "clone_url": "http://localhost:3000/example/example.git"}}},
      "repository": {"id": 1, "full_name": "example/example",
                     "clone_url": "http://localhost:3000/example/example.git"},
      "sender": {"login": "example2"}
    }"#;
    for forge in [Forge::Gitea, Forge::Forgejo] {
        let mut h = headers(forge, "pull_request", Some(sign(SECRET.as_bytes(), body)));
        let type_header = format!(
            "X-{}-Event-Type",
            if forge == Forge::Gitea {
                "Gitea"
            } else {
                "Forgejo"
            }
        );
        h.push((type_header, "pull_request_sync".into()));
        let ev = receive(forge, &h, body, SECRET.as_bytes()).unwrap();
        assert_eq!(ev.name, "pull_request_sync");
        let EventKind::PullRequest(pr) = &ev.kind else {
            panic!("{:?}", ev.kind)
        };
        assert_eq!(pr.action, PrAction::Synchronize);
        assert_eq!(pr.raw_action, "synchronized");
        assert!(pr.from_fork);
        assert_eq!(pr.number, 7);
        assert_eq!(
            pr.base_sha.as_deref(),
            Some("67b56589a45103f891bdee7c0546e5d40bc02001")
        );
        assert_eq!(ev.sender.as_deref(), Some("example2"));
        assert!(same_repo(
            &pr.head_repo.as_ref().unwrap().urls[0],
            "git@localhost:example2/example"
        ));
    }
}

/// The opened fixture with its action and head changed as GitHub sends them for new commits,
/// a close, a label, and pull requests from a fork (alive or deleted).
#[test]
fn github_pull_request_actions_and_forks() {
    let base = json("github/pull_request_opened.json");
    let send = |v: &Value| {
        let body = serde_json::to_vec(v).unwrap();
        let h = headers(
            Forge::GitHub,
            "pull_request",
            Some(sign(SECRET.as_bytes(), &body)),
        );
        let ev = receive(Forge::GitHub, &h, &body, SECRET.as_bytes()).unwrap();
        match ev.kind {
            EventKind::PullRequest(pr) => pr,
            other => panic!("{other:?}"),
        }
    };
    for (raw, want) in [
        ("synchronize", PrAction::Synchronize),
        ("reopened", PrAction::Reopened),
        ("closed", PrAction::Closed),
        ("labeled", PrAction::Other("labeled".into())),
    ] {
        let mut v = base.clone();
        v["action"] = raw.into();
        let pr = send(&v);
        assert_eq!(pr.action, want);
        assert_eq!(pr.raw_action, raw);
    }

    let mut fork = base.clone();
    fork["pull_request"]["head"]["repo"]["id"] = 1.into();
    fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World".into();
    fork["pull_request"]["head"]["repo"]["clone_url"] =
        "https://github.com/mallory/Hello-World.git".into();
    let pr = send(&fork);
    assert!(pr.from_fork);
    let head_repo = pr.head_repo.unwrap();
    assert_eq!(head_repo.full_name, "mallory/Hello-World");
    assert!(
        head_repo
            .urls
            .contains(&"https://github.com/mallory/Hello-World.git".to_owned())
    );

    let mut gone = base.clone();
    gone["pull_request"]["head"]["repo"] = Value::Null;
    let pr = send(&gone);
    assert!(pr.from_fork && pr.head_repo.is_none());

    let mut broken = base;
    broken["pull_request"]["head"]
        .as_object_mut()
        .unwrap()
        .remove("sha");
    let body = serde_json::to_vec(&broken).unwrap();
    let h = headers(
        Forge::GitHub,
        "pull_request",
        Some(sign(SECRET.as_bytes(), &body)),
    );
    let err = receive(Forge::GitHub, &h, &body, SECRET.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `pull_request.head.sha` is missing or null, expected a string"
    );
}
