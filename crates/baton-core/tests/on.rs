//! The `on:` filter: reading it from YAML, matching events with human reasons, and the glob
//! semantics of GitHub Actions (property-tested).

use baton_core::on::{
    EventFact, EventFacts, NoMatch, On, Patterns, PrType, PullRequestFilter, PushFilter,
    PushTarget, matches,
};
use proptest::prelude::*;

fn on(yaml: &str) -> On {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn on_err(yaml: &str) -> String {
    match serde_saphyr::from_str::<On>(yaml) {
        Ok(v) => panic!("{yaml} parsed: {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn push(branch: &str, paths: Option<&[&str]>) -> EventFacts {
    EventFacts {
        repo: Some("app".into()),
        event: EventFact::Push {
            target: PushTarget::Branch(branch.into()),
            deleted: false,
            changed_paths: paths.map(|p| p.iter().map(|s| s.to_string()).collect()),
        },
    }
}

fn tag(name: &str) -> EventFacts {
    EventFacts {
        repo: Some("app".into()),
        event: EventFact::Push {
            target: PushTarget::Tag(name.into()),
            deleted: false,
            changed_paths: None,
        },
    }
}

fn pr(action: &str, target: &str) -> EventFacts {
    EventFacts {
        repo: Some("app".into()),
        event: EventFact::PullRequest {
            action: action.into(),
            target_branch: target.into(),
        },
    }
}

fn reason(r: Result<(), NoMatch>) -> String {
    r.expect_err("expected no match").0
}

#[test]
fn no_on_means_pushes_pull_requests_and_hand_triggers() {
    let d = On::default();
    assert_eq!(matches(&d, &push("feature/x", Some(&["a"]))), Ok(()));
    assert_eq!(
        reason(matches(&d, &tag("v1"))),
        "tag pushes do not start this task: its on.push lists branches but no tags"
    );
    assert_eq!(matches(&on("push"), &tag("v1")), Ok(()));
    assert_eq!(matches(&on("push:"), &tag("v1")), Ok(()));
    for a in ["opened", "synchronize", "reopened"] {
        assert_eq!(matches(&d, &pr(a, "main")), Ok(()), "{a}");
    }
    assert_eq!(
        reason(matches(&d, &pr("closed", "main"))),
        "pull request action closed is not in pull_request.types [opened, synchronize, reopened]"
    );
    let manual = EventFacts {
        repo: None,
        event: EventFact::Manual,
    };
    assert_eq!(matches(&d, &manual), Ok(()));
    let sched = EventFacts {
        repo: None,
        event: EventFact::Schedule {
            cron: "0 3 * * *".into(),
        },
    };
    assert_eq!(
        reason(matches(&d, &sched)),
        "schedules do not start this task (its on: has no schedule)"
    );
}

#[test]
fn push_branches_tags_and_their_sentences() {
    let o = on("push: {branches: [main, 'release/**', '!release/**-alpha']}");
    assert_eq!(matches(&o, &push("main", None)), Ok(()));
    assert_eq!(matches(&o, &push("release/1.2/rc", None)), Ok(()));
    assert_eq!(
        reason(matches(&o, &push("feature/x", None))),
        "branch feature/x does not match push.branches [main, release/**, !release/**-alpha]"
    );
    assert!(matches(&o, &push("release/2-alpha", None)).is_err());
    assert_eq!(
        reason(matches(&o, &tag("v1"))),
        "tag pushes do not start this task: its on.push lists branches but no tags"
    );
    assert_eq!(
        reason(matches(&o, &pr("opened", "main"))),
        "pull requests do not start this task (its on: has no pull_request)"
    );

    let o = on("push: {tags: 'v*'}");
    assert_eq!(matches(&o, &tag("v1.2")), Ok(()));
    assert_eq!(
        reason(matches(&o, &tag("x1"))),
        "tag x1 does not match push.tags [v*]"
    );
    assert_eq!(
        reason(matches(&o, &push("main", None))),
        "branch pushes do not start this task: its on.push lists tags but no branches"
    );

    let deleted = EventFacts {
        repo: None,
        event: EventFact::Push {
            target: PushTarget::Branch("old".into()),
            deleted: true,
            changed_paths: None,
        },
    };
    assert_eq!(
        reason(matches(&On::default(), &deleted)),
        "the push deletes branch old"
    );
}

#[test]
fn paths_and_paths_ignore() {
    let o = on("push: {paths: ['src/**', '!src/vendor/**']}");
    assert_eq!(
        matches(&o, &push("main", Some(&["docs/a.md", "src/lib.rs"]))),
        Ok(())
    );
    assert_eq!(
        reason(matches(
            &o,
            &push("main", Some(&["docs/a.md", "src/vendor/x.c"]))
        )),
        "no changed path matches push.paths [src/**, !src/vendor/**] (changed: docs/a.md, src/vendor/x.c)"
    );
    // Unknown changes (a truncated list, a force-push) let the push through.
    assert_eq!(matches(&o, &push("main", None)), Ok(()));
    assert_eq!(
        reason(matches(&o, &push("main", Some(&[])))),
        "the push changes no file, so none matches push.paths [src/**, !src/vendor/**]"
    );
    // Tags are not filtered by paths.
    assert_eq!(matches(&o, &tag("v1")), Ok(()));

    let o = on("push: {paths_ignore: ['**.md', 'docs/**']}");
    assert_eq!(
        reason(matches(
            &o,
            &push(
                "main",
                Some(&["README.md", "docs/x.png", "a/b/c.md", "d.md"])
            )
        )),
        "every changed path matches push.paths_ignore [**.md, docs/**] (changed: README.md, docs/x.png, a/b/c.md and 1 more)"
    );
    assert_eq!(
        matches(&o, &push("main", Some(&["README.md", "src/x.rs"]))),
        Ok(())
    );

    // Both: a path must survive paths_ignore and match paths.
    let o = on("push: {paths: ['src/**'], paths_ignore: ['**.md']}");
    assert!(matches(&o, &push("main", Some(&["src/notes.md", "docs/x"]))).is_err());
    assert_eq!(
        matches(&o, &push("main", Some(&["src/notes.md", "src/x.rs"]))),
        Ok(())
    );
}

#[test]
fn pull_request_filters() {
    let o = on("pull_request: {branches: [main], types: [opened, closed]}");
    assert_eq!(matches(&o, &pr("closed", "main")), Ok(()));
    assert_eq!(
        reason(matches(&o, &pr("synchronize", "main"))),
        "pull request action synchronize is not in pull_request.types [opened, closed]"
    );
    assert_eq!(
        reason(matches(&o, &pr("opened", "dev"))),
        "target branch dev does not match pull_request.branches [main]"
    );
    assert_eq!(
        reason(matches(&o, &push("main", None))),
        "pushes do not start this task (its on: has no push)"
    );
    // An empty key keeps the defaults.
    let o = on("pull_request:");
    assert_eq!(o.pull_request, Some(PullRequestFilter::default()));
    assert_eq!(
        o.pull_request.unwrap().types,
        [PrType::Opened, PrType::Synchronize, PrType::Reopened]
    );
}

#[test]
fn repo_schedule_and_manual() {
    let o = on("repo: [backend, web]\npush:\nschedule: '0 3 * * *'\nmanual: false");
    assert_eq!(o.push, Some(PushFilter::default()));
    assert_eq!(
        matches(&o, &push("main", None)),
        Err(NoMatch("repo app is not in on.repo [backend, web]".into()))
    );
    let mut facts = push("main", None);
    facts.repo = Some("web".into());
    assert_eq!(matches(&o, &facts), Ok(()));
    facts.repo = None;
    assert_eq!(
        reason(matches(&o, &facts)),
        "the event has no repo and on.repo is [backend, web]"
    );
    let sched = |c: &str| EventFacts {
        repo: Some("web".into()),
        event: EventFact::Schedule { cron: c.into() },
    };
    assert_eq!(matches(&o, &sched("0 3 * * *")), Ok(()));
    assert_eq!(
        reason(matches(&o, &sched("0 4 * * *"))),
        "schedule \"0 4 * * *\" is not in on.schedule [0 3 * * *]"
    );
    let manual = EventFacts {
        repo: Some("web".into()),
        event: EventFact::Manual,
    };
    assert_eq!(
        reason(matches(&o, &manual)),
        "this task cannot be started by hand (on.manual is false)"
    );
}

#[test]
fn short_forms() {
    let o = on("push");
    assert!(o.push.is_some() && o.pull_request.is_none() && o.manual);
    let o = on("[push, pull_request]");
    assert!(o.push.is_some() && o.pull_request.is_some());
    let o = on("[manual]");
    assert!(o.push.is_none() && o.pull_request.is_none() && o.manual);
    assert!(on_err("[push, pullrequest]").contains("unknown event \"pullrequest\""));
}

#[test]
fn bad_filters_are_reported() {
    assert!(on_err("push: {branch: [main]}").contains("unknown field `branch`"));
    assert!(on_err("pull_request: {types: [opend]}").contains("unknown variant `opend`"));
    let e = on_err("push: {branches: ['!main']}");
    assert!(e.contains("only `!` patterns, which match nothing"), "{e}");
    let e = on_err("push: {paths: ['src/[a']}");
    assert!(e.contains("invalid pattern \"src/[a\""), "{e}");
    let e = on_err("push: {tags: ['']}");
    assert!(e.contains("empty pattern"), "{e}");
    let e = on_err("push: {tags: ['a**b**c**d**e**f**g**']}");
    assert!(e.contains("too many `**`"), "{e}");
}

fn pats(p: &[&str]) -> Patterns {
    Patterns::new(p).unwrap()
}

/// The examples of GitHub's "Filter pattern cheat sheet" that do not use `?` or `+`.
#[test]
fn github_cheat_sheet_examples() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "feature/*",
            &["feature/my-branch", "feature/your-branch"],
            &["feature/a/b", "feature"],
        ),
        (
            "feature/**",
            &[
                "feature/beta-a/my-branch",
                "feature/your-branch",
                "feature/mona/the/octocat",
            ],
            &["features/x"],
        ),
        ("*", &["main", "releases"], &["feature/x"]),
        ("**", &["all/the/branches", "every/tag", "main"], &[]),
        (
            "*feature",
            &["mona-feature", "feature", "ver-10-feature"],
            &["feature-x"],
        ),
        ("v2*", &["v2", "v2.0", "v2.9"], &["v1", "x/v2"]),
        ("v[12].[0-9]", &["v1.0", "v2.9"], &["v3.0", "v1.10"]),
        (
            "**.js",
            &["app.js", "index.js", "js/index.js", "src/js/app.js"],
            &["app.jsx"],
        ),
        (
            "docs/**",
            &["docs/README.md", "docs/file.txt", "docs/a/b/c"],
            &["README.md", "x/docs/a"],
        ),
        (
            "docs/**/*.md",
            &["docs/README.md", "docs/mona/octocat.md", "docs/a/b/c.md"],
            &["docs/x.txt"],
        ),
        (
            "**/docs/**",
            &[
                "docs/hello.md",
                "dir/docs/my-file.txt",
                "space/docs/plan/space.doc",
            ],
            &["docsx/a"],
        ),
        (
            "**/README.md",
            &["README.md", "js/README.md"],
            &["README.mdx"],
        ),
        (
            "**/*src/**",
            &["a/src/app.js", "my-src/code/js/app.js"],
            &["src"],
        ),
        (
            "**/*-post.md",
            &["my-post.md", "path/their-post.md"],
            &["post.md/x"],
        ),
        (
            "**/migrate-*.sql",
            &[
                "migrate-10909.sql",
                "db/migrate-v1.0.sql",
                "db/sept/migrate-v1.sql",
            ],
            &["db/migrate.sql"],
        ),
        (
            "release/**-alpha",
            &["release/1-alpha", "release/a/b-alpha"],
            &["release/1-beta"],
        ),
        ("a**b", &["ab", "a/b", "axx/yy/zzb"], &["ba"]),
    ];
    for (pattern, yes, no) in cases {
        let p = pats(&[pattern]);
        for name in *yes {
            assert!(p.is_match(name), "{pattern} should match {name}");
        }
        for name in *no {
            assert!(!p.is_match(name), "{pattern} should not match {name}");
        }
    }
    let p = pats(&["*.md", "!README.md", "README*"]);
    assert!(p.is_match("README.md") && p.is_match("README.doc") && p.is_match("a.md"));
    let p = pats(&["*.md", "!README.md"]);
    assert!(!p.is_match("README.md") && p.is_match("docs.md"));
    assert!(pats(&[r"v\*"]).is_match("v*") && !pats(&[r"v\*"]).is_match("v1"));
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,6}"
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..5).prop_map(|s| s.join("/"))
}

proptest! {
    #[test]
    fn double_star_matches_everything_and_star_one_segment(n in name()) {
        prop_assert!(pats(&["**"]).is_match(&n));
        prop_assert_eq!(pats(&["*"]).is_match(&n), !n.contains('/'));
    }

    #[test]
    fn a_literal_matches_itself_only(a in name(), b in name()) {
        let p = pats(&[a.as_str()]);
        prop_assert!(p.is_match(&a));
        prop_assert_eq!(p.is_match(&b), a == b);
    }

    #[test]
    fn prefix_globstar_and_suffix_globstar(pre in name(), rest in name(), file in segment()) {
        let under = pats(&[format!("{pre}/**").as_str()]);
        let inside = format!("{pre}/{rest}");
        let outside = format!("x{pre}/{rest}");
        prop_assert!(under.is_match(&inside));
        prop_assert!(!under.is_match(&outside));
        let anywhere = pats(&[format!("**/{file}").as_str()]);
        let deep = format!("{rest}/{file}");
        prop_assert!(anywhere.is_match(&file));
        prop_assert!(anywhere.is_match(&deep));
    }

    /// A `**` inside a segment means "any characters, `/` included", as GitHub reads it.
    #[test]
    fn inner_globstar_spans_slashes(x in "[a-z]{1,3}", y in "[a-z]{1,3}", mid in "[a-z/]{0,8}", other in name()) {
        let p = pats(&[format!("{x}**{y}").as_str()]);
        let candidate = format!("{x}{mid}{y}");
        prop_assert!(p.is_match(&candidate), "{}**{} vs {}", x, y, candidate);
        let expected = other.starts_with(&x) && other.ends_with(&y) && other.len() >= x.len() + y.len();
        prop_assert_eq!(p.is_match(&other), expected, "{}**{} vs {}", x, y, other);
    }

    /// The last matching pattern decides, whatever the order.
    #[test]
    fn last_matching_pattern_wins(
        list in prop::collection::vec((any::<bool>(), prop::sample::select(vec!["**", "*", "a/**", "**/b", "a*", "*b", "a/b"])), 1..6),
        n in prop::sample::select(vec!["a", "b", "a/b", "ab", "x/b", "a/x/b", "c"]),
    ) {
        let texts: Vec<String> = list.iter().map(|(neg, p)| format!("{}{}", if *neg { "!" } else { "" }, p)).collect();
        prop_assume!(list.iter().any(|(neg, _)| !neg));
        let mut want = false;
        for (neg, p) in &list {
            if pats(&[p]).is_match(n) {
                want = !neg;
            }
        }
        prop_assert_eq!(Patterns::new(&texts).unwrap().is_match(n), want);
    }

    /// Matching never panics on any pushed branch and any filter from a small grammar.
    #[test]
    fn matching_is_total(
        b in name(),
        pats_src in prop::collection::vec("[a-z*/!]{1,6}", 0..4),
        paths in prop::option::of(prop::collection::vec(name(), 0..4)),
    ) {
        if let Ok(p) = Patterns::new(&pats_src) {
            let o = On { push: Some(PushFilter { branches: Some(p.clone()), paths: Some(p), ..PushFilter::default() }), ..On::default() };
            let facts = EventFacts { repo: None, event: EventFact::Push { target: PushTarget::Branch(b), deleted: false, changed_paths: paths } };
            if let Err(NoMatch(reason)) = matches(&o, &facts) {
                prop_assert!(!reason.is_empty());
            }
        }
    }
}
