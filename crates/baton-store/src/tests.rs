//! Store tests, each on a real SQLite file and on a real PostgreSQL database (`on_both!`).

use super::*;
use crate::testdb::{TestDb, on_both};

fn new_run(target: &str, status: Status) -> NewRun {
    NewRun {
        kind: TargetKind::Task,
        target: target.into(),
        trigger: TriggerKind::Api,
        args: BTreeMap::from([("k".to_string(), "v".to_string())]),
        tags: vec!["repo".into()],
        definition: serde_json::json!({"command": "true"}),
        status,
        reason: None,
        priority: 0,
        partition: None,
        enqueued_at: Utc::now(),
        not_before: None,
        jobs: vec![NewJob {
            name: target.into(),
        }],
        ancestors: vec![],
        repo: None,
    }
}

async fn runs_round_trip_and_survive_reopen(db: TestDb) {
    let store = db.open().await;
    let a = store
        .insert_run(&new_run("a", Status::Queued))
        .await
        .unwrap();
    let mut child = new_run("b", Status::Queued);
    child.ancestors = vec![a.id];
    let b = store.insert_run(&child).await.unwrap();
    assert_eq!(a.jobs.len(), 1);
    assert_eq!(b.ancestors, vec![a.id]);
    store
        .apply(&[
            Change::Job {
                id: a.jobs[0].id,
                status: Status::Success,
                reason: None,
                worker: Some("local-1".into()),
                exit_code: Some(0),
                started_at: Some(Utc::now()),
                ended_at: Some(Utc::now()),
                ended_seq: Some(1),
                attempt: None,
            },
            Change::Run {
                id: a.id,
                status: Status::Success,
                reason: None,
                started_at: Some(Utc::now()),
                ended_at: Some(Utc::now()),
                builds_commit: true,
            },
        ])
        .await
        .unwrap();
    drop(store);
    let store = db.open().await;
    let got = store.get_run(a.id).await.unwrap().unwrap();
    assert_eq!(got.status, Status::Success);
    assert_eq!(got.jobs[0].worker.as_deref(), Some("local-1"));
    assert_eq!(got.jobs[0].exit_code, Some(0));
    assert_eq!(got.descendants, vec![b.id]);
    assert_eq!(got.args.get("k").map(String::as_str), Some("v"));
    let open = store.open_runs().await.unwrap();
    assert_eq!(open.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id]);
    assert!(store.last_starts().await.unwrap().contains_key("a"));
}

async fn list_filters_and_paginates(db: TestDb) {
    let store = db.open().await;
    for i in 0..7 {
        let st = if i % 2 == 0 {
            Status::Queued
        } else {
            Status::Skipped
        };
        store
            .insert_run(&new_run(if i < 5 { "a" } else { "b" }, st))
            .await
            .unwrap();
    }
    let page1 = store.list_runs(&RunFilter::default(), 3).await.unwrap();
    assert_eq!(
        page1.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![7, 6, 5]
    );
    let page2 = store
        .list_runs(
            &RunFilter {
                before: Some(5),
                ..Default::default()
            },
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![4, 3, 2]
    );
    let a_skipped = store
        .list_runs(
            &RunFilter {
                target: Some("a".into()),
                status: Some(Status::Skipped),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        a_skipped.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![4, 2]
    );
    let tagged = store
        .list_runs(
            &RunFilter {
                tag: Some("repo".into()),
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(tagged.len(), 7);
    let untagged = store
        .list_runs(
            &RunFilter {
                tag: Some("rep".into()),
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    assert!(untagged.is_empty());
    // Access filtering happens in SQL: a page is full even when invisible runs sit between.
    let only_a = RunFilter {
        visible: Some(crate::Visible {
            tasks: vec!["a".into()],
            pipelines: vec![],
            repos: vec![],
        }),
        ..Default::default()
    };
    let page = store.list_runs(&only_a, 3).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![5, 4, 3]);
    let none = RunFilter {
        visible: Some(crate::Visible::default()),
        ..Default::default()
    };
    assert!(store.list_runs(&none, 3).await.unwrap().is_empty());
}

async fn a_repositorys_own_runs_are_visible_through_its_name_only(db: TestDb) {
    let store = db.open().await;
    let code = |repo: &str| RunRepo {
        repo: repo.into(),
        url: format!("/srv/{repo}"),
        commit: "a".repeat(40),
        event: "push".into(),
        ..RunRepo::default()
    };
    let mut ids = Vec::new();
    for (target, repo) in [
        ("app/test", Some("app")),
        ("app_x/test", Some("app_x")),
        ("server-task", Some("app")),
        ("app/test", None),
        ("web/test", Some("web")),
    ] {
        let mut run = new_run(target, Status::Queued);
        run.repo = repo.map(code);
        ids.push(store.insert_run(&run).await.unwrap().id);
    }
    let filter = RunFilter {
        visible: Some(crate::Visible {
            repos: vec!["app".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let seen: Vec<i64> = store
        .list_runs(&filter, 50)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    // Only app's own run: not a server task building app, not a like-named run of no
    // repository, not another repository whose name `app` could match as a pattern.
    assert_eq!(seen, vec![ids[0]]);
}

async fn tokens_are_stored_hashed_and_revocable(db: TestDb) {
    let store = db.open().await;
    let token = store.create_token("ci").await.unwrap();
    let info = store.verify_token(&token).await.unwrap().unwrap();
    assert_eq!(info.name, "ci");
    assert!(store.verify_token("baton_nope").await.unwrap().is_none());
    // The secret itself is nowhere in the database, while its hash is (the search works).
    drop(store);
    assert!(!db.holds(&token).await);
    assert!(db.holds(&tokens::hash(&token)).await);
    let store = db.open().await;
    assert!(store.revoke_token(info.id).await.unwrap());
    assert!(store.verify_token(&token).await.unwrap().is_none());
}

/// The cache of verified tokens: a revocation through the same store takes effect at once
/// (by id, by name, a used pool join token, a removed user's tokens); one made through another
/// store on the same database (another process: `baton token revoke`) is not seen until the
/// entry lapses, which the cache's own tests cover with a clock of their own.
async fn cached_tokens_are_forgotten_by_this_stores_revocations(db: TestDb) {
    let store = db.open().await;
    let other = db.open().await;
    let a = store.create_token("agent:a").await.unwrap();
    let info = store.verify_token_cached(&a).await.unwrap().unwrap();
    assert_eq!(info.name, "agent:a");
    // Revoked by another process: this store still believes its recent verification...
    assert!(other.revoke_token(info.id).await.unwrap());
    assert!(store.verify_token(&a).await.unwrap().is_none());
    assert_eq!(
        store.verify_token_cached(&a).await.unwrap().map(|i| i.id),
        Some(info.id),
        "within the cache's lifetime"
    );
    // ...and a revocation through this store forgets it at once (here: already revoked).
    assert!(!store.revoke_token(info.id).await.unwrap());
    assert!(store.verify_token_cached(&a).await.unwrap().is_none());

    let b = store.create_token("agent:b").await.unwrap();
    assert!(store.verify_token_cached(&b).await.unwrap().is_some());
    assert_eq!(store.revoke_tokens_named("agent:b").await.unwrap(), 1);
    assert!(store.verify_token_cached(&b).await.unwrap().is_none());

    let (_, join) = store.create_pool_token("arm", "arm-1").await.unwrap();
    assert!(store.verify_token_cached(&join).await.unwrap().is_some());
    assert!(store.consume_pool_token(&join).await.unwrap().is_some());
    assert!(store.verify_token_cached(&join).await.unwrap().is_none());

    store
        .upsert_user("zed", "pw-zed-long-enough")
        .await
        .unwrap();
    let z = store.create_user_token("cli", Some("zed")).await.unwrap();
    assert!(store.verify_token_cached(&z).await.unwrap().is_some());
    assert!(store.remove_user("zed").await.unwrap());
    assert!(store.verify_token_cached(&z).await.unwrap().is_none());
    // Unknown tokens are never kept (each is looked up again), nor made valid.
    assert!(
        store
            .verify_token_cached("baton_nope")
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_pool_join_token_is_good_once(db: TestDb) {
    let store = db.open().await;
    let (id, token) = store.create_pool_token("arm", "arm-1").await.unwrap();
    assert!(id > 0);
    // An ordinary token is not a pool's join token.
    let plain = store.create_token("ci").await.unwrap();
    assert_eq!(store.consume_pool_token(&plain).await.unwrap(), None);
    assert_eq!(
        store.consume_pool_token(&token).await.unwrap(),
        Some(("arm".to_string(), "arm-1".to_string()))
    );
    assert_eq!(store.consume_pool_token(&token).await.unwrap(), None);
    assert!(store.verify_token(&token).await.unwrap().is_none());
    // One revoked before use (its agent never joined) cannot be used either.
    let (id, token) = store.create_pool_token("arm", "arm-2").await.unwrap();
    assert!(store.revoke_token(id).await.unwrap());
    assert_eq!(store.consume_pool_token(&token).await.unwrap(), None);
}

async fn schedule_marks_upsert(db: TestDb) {
    let store = db.open().await;
    let t1 = from_ms(1_000_000);
    let t2 = from_ms(2_000_000);
    store
        .apply(&[Change::Mark {
            target: "hb".into(),
            slot: t1,
        }])
        .await
        .unwrap();
    store
        .apply(&[Change::Mark {
            target: "hb".into(),
            slot: t2,
        }])
        .await
        .unwrap();
    assert_eq!(store.schedule_marks().await.unwrap().get("hb"), Some(&t2));
}

async fn sso_users_never_take_over_other_accounts(db: TestDb) {
    let store = db.open().await;
    store.upsert_user("alice", "pw").await.unwrap();
    // First sign-in makes the user; the second finds it.
    store
        .sso_user("bob@example.com", "corp", "iss|b1")
        .await
        .unwrap();
    store
        .sso_user("bob@example.com", "corp", "iss|b1")
        .await
        .unwrap();
    assert!(store.find_user("bob@example.com").await.unwrap().is_some());
    let s = store
        .create_session("bob@example.com", chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        store.session(&s.id).await.unwrap().unwrap().user,
        "bob@example.com"
    );
    // An SSO user has no password: none matches, and none can be set.
    assert!(!store.check_password("bob@example.com", "").await.unwrap());
    assert!(!store.check_password("bob@example.com", "x").await.unwrap());
    let e = store
        .upsert_user("bob@example.com", "pw")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("signs in through corp"), "{e}");
    // A password user's name, or another provider's user, is refused.
    match store.sso_user("alice", "corp", "iss|a1").await {
        Err(crate::StoreError::IdentityConflict {
            user,
            provider,
            owner,
        }) => {
            assert_eq!((user.as_str(), provider.as_str()), ("alice", "corp"));
            assert_eq!(owner, "a password user");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let e = store
        .sso_user("bob@example.com", "gh", "iss|b1")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the name `bob@example.com` belongs to a user of corp here, not to this account of gh (hint: an administrator can rename one of them)"
    );
    // Another account of the same provider (a renamed and re-registered name) is refused too.
    let e = store
        .sso_user("bob@example.com", "corp", "iss|b2")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("belongs to another account of corp here"),
        "{e}"
    );
    assert!(store.sso_user("bad name", "corp", "iss|x").await.is_err());
    assert!(store.find_user("bad name").await.unwrap().is_none());
}

async fn users_sessions_and_owned_tokens(db: TestDb) {
    let store = db.open().await;
    assert!(store.upsert_user("alice", "pw1").await.unwrap());
    assert!(store.check_password("alice", "pw1").await.unwrap());
    assert!(!store.check_password("alice", "pw2").await.unwrap());
    assert!(!store.check_password("nobody", "pw1").await.unwrap());
    assert!(store.upsert_user("bad name", "x").await.is_err());

    let s = store
        .create_session("alice", chrono::Duration::hours(1))
        .await
        .unwrap();
    let info = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(info.user, "alice");
    assert_eq!(info.csrf, s.csrf);
    assert!(store.session("nope").await.unwrap().is_none());
    // A new password ends old sessions.
    assert!(!store.upsert_user("alice", "pw2").await.unwrap());
    assert!(store.session(&s.id).await.unwrap().is_none());
    let s = store
        .create_session("alice", chrono::Duration::hours(1))
        .await
        .unwrap();
    store.delete_session(&s.id).await.unwrap();
    assert!(store.session(&s.id).await.unwrap().is_none());
    let expired = store
        .create_session("alice", chrono::Duration::seconds(-1))
        .await
        .unwrap();
    assert!(store.session(&expired.id).await.unwrap().is_none());

    let t = store
        .create_user_token("laptop", Some("alice"))
        .await
        .unwrap();
    let info = store.verify_token(&t).await.unwrap().unwrap();
    assert_eq!(info.user.as_deref(), Some("alice"));
    assert!(matches!(
        store.create_user_token("x", Some("bob")).await,
        Err(crate::StoreError::NoSuchUser(_))
    ));
    store.upsert_user("bob", "pw").await.unwrap();
    assert!(!store.revoke_user_token("bob", info.id).await.unwrap());
    assert_eq!(store.user_tokens("alice").await.unwrap().len(), 1);
    assert!(store.revoke_user_token("alice", info.id).await.unwrap());
    assert!(store.verify_token(&t).await.unwrap().is_none());
    assert!(store.user_tokens("alice").await.unwrap().is_empty());
    let op = store.create_token("ops").await.unwrap();
    assert_eq!(store.verify_token(&op).await.unwrap().unwrap().user, None);
}

async fn task_overrides_set_and_clear(db: TestDb) {
    let store = db.open().await;
    store.set_task_override("a", Some(false)).await.unwrap();
    store.set_task_override("b", Some(true)).await.unwrap();
    store.set_task_override("a", Some(true)).await.unwrap();
    let o = store.task_overrides().await.unwrap();
    assert_eq!(o.get("a"), Some(&true));
    assert_eq!(o.get("b"), Some(&true));
    store.set_task_override("a", None).await.unwrap();
    assert!(!store.task_overrides().await.unwrap().contains_key("a"));
}

async fn search_finds_text_in_targets_reasons_and_args(db: TestDb) {
    let store = db.open().await;
    let mut a = new_run("deploy-web", Status::Queued);
    a.args = BTreeMap::from([("version".to_string(), "1.2_rc%".to_string())]);
    let a = store.insert_run(&a).await.unwrap();
    let mut b = new_run("lint", Status::Skipped);
    b.reason = Some("skipped: a run of `lint` is already running (run 1)".into());
    let b = store.insert_run(&b).await.unwrap();
    let find = |text: &str| {
        let store = store.clone();
        let text = text.to_string();
        async move {
            store
                .list_runs(
                    &RunFilter {
                        search: Some(text),
                        ..Default::default()
                    },
                    10,
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find("DEPLOY").await, vec![a.id]);
    assert_eq!(find("already running").await, vec![b.id]);
    assert_eq!(find("2_rc%").await, vec![a.id]);
    // Wildcards in the text are literal.
    assert!(find("1_2").await.is_empty());
    assert_eq!(find("%").await, vec![a.id]);
}

/// A run that ends (with `started`) at `at` milliseconds.
fn end_run(id: i64, status: Status, at: i64) -> Change {
    Change::Run {
        id,
        status,
        reason: None,
        started_at: (status != Status::Skipped).then(|| from_ms(at - 1)),
        ended_at: Some(from_ms(at)),
        builds_commit: true,
    }
}

async fn latest_task_ends_is_the_run_that_ended_last(db: TestDb) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for target in ["a", "a", "a", "b", "b"] {
        ids.push(
            store
                .insert_run(&new_run(target, Status::Queued))
                .await
                .unwrap()
                .id,
        );
    }
    let mut pipeline = new_run("p", Status::Queued);
    pipeline.kind = TargetKind::Pipeline;
    let p = store.insert_run(&pipeline).await.unwrap().id;
    store
        .apply(&[
            // a: the older run ends after the newer one; a later run that never started is
            // not a result.
            end_run(ids[1], Status::Success, 1_000),
            end_run(ids[0], Status::Failed, 2_000),
            end_run(ids[2], Status::Skipped, 3_000),
            end_run(ids[3], Status::Success, 1_000),
            end_run(p, Status::Success, 1_000),
        ])
        .await
        .unwrap();
    drop(store);
    let store = db.open().await;
    let latest = store.latest_task_ends().await.unwrap();
    assert_eq!(
        latest,
        BTreeMap::from([
            ("a".to_string(), (ids[0], Status::Failed)),
            ("b".to_string(), (ids[3], Status::Success)),
        ])
    );
}

fn job_state(id: i64, status: Status, worker: Option<&str>, attempt: u32) -> Change {
    Change::Job {
        id,
        status,
        reason: None,
        worker: worker.map(str::to_string),
        exit_code: None,
        started_at: worker.map(|_| Utc::now()),
        ended_at: None,
        ended_seq: None,
        attempt: Some(attempt),
    }
}

async fn a_job_queued_again_has_no_worker_or_start_on_disk(db: TestDb) {
    let store = db.open().await;
    let run = store
        .insert_run(&new_run("a", Status::Queued))
        .await
        .unwrap();
    let job = run.jobs[0].id;
    store
        .apply(&[job_state(job, Status::Running, Some("local-1"), 1)])
        .await
        .unwrap();
    let got = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(got.jobs[0].worker.as_deref(), Some("local-1"));
    assert!(got.jobs[0].started_at.is_some());
    // A retry: queued again for attempt 2, on no worker yet.
    store
        .apply(&[job_state(job, Status::Queued, None, 2)])
        .await
        .unwrap();
    let got = store.get_run(run.id).await.unwrap().unwrap();
    let j = &got.jobs[0];
    assert_eq!((j.status, j.attempt), (Status::Queued, 2));
    assert_eq!(j.worker, None, "a queued job keeps no worker: {j:?}");
    assert_eq!(j.started_at, None, "a queued job has not started: {j:?}");
    assert_eq!(store.job_worker(job, 2).await.unwrap(), None);
}

async fn a_jobs_own_arguments_survive_reopen(db: TestDb) {
    let store = db.open().await;
    let mut p = new_run("p", Status::Queued);
    p.kind = TargetKind::Pipeline;
    let run = store.insert_run(&p).await.unwrap();
    let args = BTreeMap::from([("failedTaskName".to_string(), "build".to_string())]);
    let added = store
        .add_job(run.id, "on_error", Utc::now(), &args)
        .await
        .unwrap();
    assert_eq!(added.args, args);
    let plain = store
        .add_job(run.id, "other", Utc::now(), &BTreeMap::new())
        .await
        .unwrap();
    assert!(plain.args.is_empty());
    drop(store);
    let store = db.open().await;
    let open = store.open_runs().await.unwrap();
    let jobs = &open.iter().find(|r| r.id == run.id).unwrap().jobs;
    let on_error = jobs.iter().find(|j| j.name == "on_error").unwrap();
    assert_eq!(on_error.args, args);
    assert!(
        jobs.iter()
            .filter(|j| j.name != "on_error")
            .all(|j| j.args.is_empty())
    );
    assert!(run.jobs.iter().all(|j| j.args.is_empty()));
}

async fn job_results_are_recorded_once_counted_per_run_and_pruned_with_it(db: TestDb) {
    let store = db.open().await;
    let mut pipeline = new_run("p", Status::Success);
    pipeline.kind = TargetKind::Pipeline;
    pipeline.jobs.push(NewJob { name: "b".into() });
    let run = store.insert_run(&pipeline).await.unwrap();
    let results = |job: i64, failed: i64, status: &str| NewJobResults {
        job_id: job,
        run_id: run.id,
        attempt: 1,
        task: "p/unit".into(),
        code: Some("commit:abc".into()),
        counts: ResultCounts {
            passed: 2,
            failed,
            duration_ms: 1500,
            ..ResultCounts::default()
        },
        tree: "{}".into(),
        tests: vec![TestResult {
            test_id: "suite > t".into(),
            status: status.into(),
            duration_ms: Some(3),
        }],
    };
    assert!(
        store
            .save_job_results(&results(run.jobs[0].id, 1, "failed"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .save_job_results(&results(run.jobs[0].id, 9, "passed"))
            .await
            .unwrap()
    );
    assert!(
        store
            .save_job_results(&results(run.jobs[1].id, 0, "passed"))
            .await
            .unwrap()
    );
    let counts = store
        .run_result_counts(&[run.id, run.id + 100])
        .await
        .unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (
            counts[&run.id].passed,
            counts[&run.id].failed,
            counts[&run.id].duration_ms
        ),
        (4, 1, 3000)
    );
    assert_eq!(store.run_results(run.id).await.unwrap().len(), 2);
    let history = store.test_history("p/unit", "suite > t", 30).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].code.as_deref(), Some("commit:abc"));

    store.prune("p", Some(0), None).await.unwrap();
    assert!(store.run_results(run.id).await.unwrap().is_empty());
    assert!(
        store
            .test_history("p/unit", "suite > t", 30)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn job_tokens_are_leftovers_once_their_attempt_no_longer_runs(db: TestDb) {
    let store = db.open().await;
    let run = store
        .insert_run(&new_run("t", Status::Queued))
        .await
        .unwrap();
    let job = run.jobs[0].id;
    store
        .apply(&[job_state(job, Status::Running, Some("local-1"), 1)])
        .await
        .unwrap();
    let row = store
        .add_job_cred(job, 1, "app", "baton-job-1-1", Utc::now())
        .await
        .unwrap();
    assert!(store.leftover_job_creds().await.unwrap().is_empty());
    store.set_job_cred_token_id(row, 42).await.unwrap();
    // The job is retried: attempt 1's token is a leftover, by id.
    store
        .apply(&[job_state(job, Status::Running, Some("local-1"), 2)])
        .await
        .unwrap();
    let left = store.leftover_job_creds().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (
            left[0].token_id,
            left[0].name.as_str(),
            left[0].repo.as_str()
        ),
        (Some(42), "baton-job-1-1", "app")
    );
    store.remove_job_cred(row).await.unwrap();
    assert!(store.leftover_job_creds().await.unwrap().is_empty());
    // A check run is recorded once per run and context: intended before it is created, then
    // with its id; a later intent keeps the id.
    use crate::CheckRunRecord::{Created, Intended};
    assert_eq!(store.check_run(run.id, "baton/t").await.unwrap(), None);
    store.intend_check_run(run.id, "baton/t").await.unwrap();
    assert_eq!(
        store.check_run(run.id, "baton/t").await.unwrap(),
        Some(Intended)
    );
    store.set_check_run(run.id, "baton/t", 7).await.unwrap();
    store.intend_check_run(run.id, "baton/t").await.unwrap();
    assert_eq!(
        store.check_run(run.id, "baton/t").await.unwrap(),
        Some(Created(7))
    );
    assert_eq!(store.check_run(run.id, "baton/u").await.unwrap(), None);
}

async fn migrations_are_listed_then_applied_once(db: TestDb) {
    let store = Store::connect_unmigrated(&db.db).await.unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert_eq!(pending.first().map(|m| m.version), Some(1), "{pending:?}");
    assert!(pending.len() >= 16, "{pending:?}");
    // Listing changes nothing.
    assert_eq!(store.pending_migrations().await.unwrap(), pending);
    store.migrate().await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    // Opening again (as every server start does) finds nothing to do and works.
    let again = db.open().await;
    assert!(again.pending_migrations().await.unwrap().is_empty());
    assert_eq!(again.backend(), db.db.backend());
}

#[test]
fn database_urls_are_read_and_shown_without_passwords() {
    assert_eq!(
        Database::parse("postgres://u:secret@db.example/baton").backend(),
        Backend::Postgres
    );
    assert_eq!(
        Database::parse("postgresql://u@h/b"),
        Database::Postgres("postgresql://u@h/b".into())
    );
    assert_eq!(
        Database::parse("/var/lib/baton/baton.db"),
        Database::Sqlite("/var/lib/baton/baton.db".into())
    );
    assert_eq!(
        Database::parse("sqlite:///var/lib/baton/baton.db"),
        Database::Sqlite("/var/lib/baton/baton.db".into())
    );
    let shown =
        Database::parse("postgres://u:s3cret@h:5432/b?password=other&sslmode=require").to_string();
    assert_eq!(
        shown,
        "postgres://u:***@h:5432/b?password=***&sslmode=require"
    );
    assert!(!format!("{:?}", Database::parse("postgres://u:s3cret@h/b")).contains("s3cret"));
    assert_eq!(
        split_password("postgres://u:p%40ss@h/b?host=/run"),
        (
            "postgres://u@h/b?host=/run".to_string(),
            Some("p@ss".to_string())
        )
    );
    assert_eq!(
        split_password("postgres://u@h/b"),
        ("postgres://u@h/b".to_string(), None)
    );
    assert_eq!(
        testing::with_database("postgres://baton@localhost/postgres?host=/tmp/x", "t1"),
        "postgres://baton@localhost/t1?host=/tmp/x"
    );
}

#[tokio::test]
async fn a_sqlite_store_is_copied_whole_while_open() {
    let db = TestDb::sqlite().await;
    let store = db.open().await;
    let run = store
        .insert_run(&new_run("a", Status::Queued))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    store.backup_sqlite(&copy).await.unwrap();
    let other = Store::open(&copy).await.unwrap();
    assert_eq!(other.get_run(run.id).await.unwrap().unwrap().target, "a");
}

async fn existence_checks_follow_inserts_and_deletes(db: TestDb) {
    let store = db.open().await;
    let a = store
        .insert_run(&new_run("a", Status::Success))
        .await
        .unwrap();
    let b = store
        .insert_run(&new_run("b", Status::Success))
        .await
        .unwrap();
    let (job_a, job_b) = (a.jobs[0].id, b.jobs[0].id);
    assert!(store.run_exists(a.id).await.unwrap());
    assert!(store.job_exists(a.id, job_a).await.unwrap());
    // A job is looked for in its own run only.
    assert!(!store.job_exists(a.id, job_b).await.unwrap());
    assert!(!store.run_exists(b.id + 100).await.unwrap());
    store.delete_runs(&[a.id]).await.unwrap();
    assert!(!store.run_exists(a.id).await.unwrap());
    assert!(!store.job_exists(a.id, job_a).await.unwrap());
    assert!(store.job_exists(b.id, job_b).await.unwrap());
}

on_both!(
    existence_checks_follow_inserts_and_deletes,
    migrations_are_listed_then_applied_once,
    runs_round_trip_and_survive_reopen,
    list_filters_and_paginates,
    a_repositorys_own_runs_are_visible_through_its_name_only,
    tokens_are_stored_hashed_and_revocable,
    a_pool_join_token_is_good_once,
    cached_tokens_are_forgotten_by_this_stores_revocations,
    schedule_marks_upsert,
    sso_users_never_take_over_other_accounts,
    users_sessions_and_owned_tokens,
    task_overrides_set_and_clear,
    search_finds_text_in_targets_reasons_and_args,
    latest_task_ends_is_the_run_that_ended_last,
    a_job_queued_again_has_no_worker_or_start_on_disk,
    a_jobs_own_arguments_survive_reopen,
    job_results_are_recorded_once_counted_per_run_and_pruned_with_it,
    job_tokens_are_leftovers_once_their_attempt_no_longer_runs,
);
