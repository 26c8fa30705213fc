//! Who may see what (the py4CI model), as pure functions.
//!
//! Administrators (the config's `administrators:` list) see and manage everything. A task's or
//! pipeline's `authorized_users` may see its runs, trigger, cancel and rerun them; everyone else
//! does not see it at all. An empty `authorized_users` means administrators only. An operator
//! (an API token that belongs to no user, or a prunner JWT) acts as an administrator.
//! `authorized_users: ["*"]` ([`EVERYONE`]) admits every signed-in user, and lets anyone who
//! is not signed in see the task's status badge ([`anonymous_can_see`]).
//!
//! A repository's own tasks and pipelines (runs named `REPO/TASK`, from its `.baton/`) follow
//! the `authorized_users:` (or `users:`) of its `repos:` entry in the server's config, never
//! anything its `.baton/` says: a repository cannot grant itself access. Empty means
//! administrators only, as for tasks.

use crate::config::{Config, PipelineDef, RepoDef, SsoProvider, TaskDef};
use crate::run::TargetKind;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Whoever holds the server's own credentials: an API token made without `--user`, or a
    /// JWT signed with `server.jwt_secret`. Acts as an administrator.
    Operator,
    /// A named user (logged in, or an API token that belongs to the user).
    User(String),
}

impl Principal {
    /// The user's name, or `operator`.
    pub fn name(&self) -> &str {
        match self {
            Principal::Operator => "operator",
            Principal::User(n) => n,
        }
    }
}

/// Whether `who` is an administrator under `admins`.
pub fn is_admin(who: &Principal, admins: &[String]) -> bool {
    match who {
        Principal::Operator => true,
        Principal::User(n) => admins.iter().any(|a| a == n),
    }
}

/// The `authorized_users` entry that admits everyone.
pub const EVERYONE: &str = "*";

fn listed(who: &Principal, admins: &[String], authorized: &[String]) -> bool {
    if is_admin(who, admins) {
        return true;
    }
    match who {
        Principal::Operator => true,
        Principal::User(n) => authorized.iter().any(|a| a == n || a == EVERYONE),
    }
}

/// Whether someone who is not signed in may see the target named `name` of `kind` (its
/// status badge): only when its `authorized_users` lists [`EVERYONE`].
pub fn anonymous_can_see(config: &Config, kind: TargetKind, name: &str) -> bool {
    if let Some(repo) = repo_of_target(config, name) {
        return repo.authorized_users.iter().any(|n| n == EVERYONE);
    }
    let authorized = match kind {
        TargetKind::Task => config.tasks.get(name).map(|t| &t.authorized_users),
        TargetKind::Pipeline => config.pipelines.get(name).map(|p| &p.authorized_users),
    };
    authorized.is_some_and(|a| a.iter().any(|n| n == EVERYONE))
}

/// Whether `who` may see (and so trigger, cancel and rerun) `task`.
pub fn can_see_task(who: &Principal, admins: &[String], task: &TaskDef) -> bool {
    listed(who, admins, &task.authorized_users)
}

/// Whether `who` may see (and so trigger, cancel and rerun) `pipeline`.
pub fn can_see_pipeline(who: &Principal, admins: &[String], pipeline: &PipelineDef) -> bool {
    listed(who, admins, &pipeline.authorized_users)
}

/// The repository whose own target `name` is (`REPO/TASK`, `REPO` in `repos:`), if it is one.
pub fn repo_of_target<'c>(config: &'c Config, name: &str) -> Option<&'c RepoDef> {
    let (repo, task) = name.split_once('/')?;
    if task.is_empty() {
        return None;
    }
    config.repos.get(repo)
}

/// Whether `who` may see (and so trigger, cancel, rerun and approve) the runs of `repo`'s own
/// tasks and pipelines.
pub fn can_see_repo(who: &Principal, admins: &[String], repo: &RepoDef) -> bool {
    listed(who, admins, &repo.authorized_users)
}

/// Whether `who` may see the target named `name` of `kind` in `config`. A target the config no
/// longer defines is visible to administrators only; a repository's own target (`REPO/TASK`)
/// follows its repository's `authorized_users`.
pub fn can_see(who: &Principal, config: &Config, kind: TargetKind, name: &str) -> bool {
    let admins = &config.administrators;
    if let Some(repo) = repo_of_target(config, name) {
        return can_see_repo(who, admins, repo);
    }
    match kind {
        TargetKind::Task => config
            .tasks
            .get(name)
            .map_or(is_admin(who, admins), |t| can_see_task(who, admins, t)),
        TargetKind::Pipeline => config
            .pipelines
            .get(name)
            .map_or(is_admin(who, admins), |p| can_see_pipeline(who, admins, p)),
    }
}

/// The targets a non-administrator may see: server tasks and pipelines by name, and the
/// repositories whose own targets (`REPO/...`) they may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisibleTargets {
    pub tasks: Vec<String>,
    pub pipelines: Vec<String>,
    pub repos: Vec<String>,
}

/// The targets `who` may see; `None` means everything (administrators), so callers can skip
/// filtering.
pub fn visible_targets(who: &Principal, config: &Config) -> Option<VisibleTargets> {
    if is_admin(who, &config.administrators) {
        return None;
    }
    let admins = &config.administrators;
    let tasks = config
        .tasks
        .values()
        .filter(|t| can_see_task(who, admins, t))
        .map(|t| t.name.clone())
        .collect();
    let pipelines = config
        .pipelines
        .values()
        .filter(|p| can_see_pipeline(who, admins, p))
        .map(|p| p.name.clone())
        .collect();
    let repos = config
        .repos
        .values()
        .filter(|r| can_see_repo(who, admins, r))
        .map(|r| r.name.clone())
        .collect();
    Some(VisibleTargets {
        tasks,
        pipelines,
        repos,
    })
}

/// Whether `name`, as a single sign-on provider names them, may sign in for the first time:
/// the provider's `allowed_users` or `allowed_domains` admit them, or the config already names
/// them (an administrator, or in some `authorized_users`). Everyone else is refused, so an open
/// provider (any Google or GitHub account) does not make accounts for strangers.
pub fn may_sign_in(config: &Config, provider: &SsoProvider, name: &str) -> bool {
    let listed = |l: &[String]| l.iter().any(|n| n == name);
    let domain_ok = name.matches('@').count() == 1
        && name.rsplit_once('@').is_some_and(|(local, dom)| {
            !local.is_empty()
                && provider
                    .allowed_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(dom))
        });
    listed(&provider.allowed_users)
        || domain_ok
        || listed(&config.administrators)
        || config.tasks.values().any(|t| listed(&t.authorized_users))
        || config
            .pipelines
            .values()
            .any(|p| listed(&p.authorized_users))
        || config.repos.values().any(|r| listed(&r.authorized_users))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::load_sources(&[(
            "t.yaml".into(),
            "administrators: [root]\n\
             tasks:\n\
             \x20 open: {command: 'true', authorized_users: [alice, bob]}\n\
             \x20 secret: {command: 'true'}\n\
             pipelines:\n\
             \x20 p: {authorized_users: [alice], tasks: {a: {script: ['true']}}}\n\
             \x20 q: {tasks: {a: {script: ['true']}}}\n"
                .into(),
        )])
        .expect("valid config")
    }

    fn user(n: &str) -> Principal {
        Principal::User(n.into())
    }

    #[test]
    fn only_named_or_allowed_people_sign_in_first() {
        let c = config();
        let p = SsoProvider {
            allowed_users: vec!["carol".into()],
            allowed_domains: vec!["example.com".into()],
            ..sso()
        };
        for ok in [
            "root",
            "alice",
            "bob",
            "carol",
            "dave@example.com",
            "Eve@EXAMPLE.com",
        ] {
            assert!(may_sign_in(&c, &p, ok), "{ok} should be admitted");
        }
        for no in [
            "mallory",
            "dave@example.org",
            "@example.com",
            "x@evil.org@example.com",
            "example.com",
        ] {
            assert!(!may_sign_in(&c, &p, no), "{no} must be refused");
        }
    }

    #[test]
    fn everyone_admits_every_user_and_shows_the_badge_to_anyone() {
        let c = crate::config::load_sources(&[(
            "t.yaml".into(),
            "tasks:\n\
             \x20 public: {command: 'true', authorized_users: ['*']}\n\
             \x20 named: {command: 'true', authorized_users: [alice]}\n"
                .into(),
        )])
        .expect("valid config");
        assert!(can_see(&user("zoe"), &c, TargetKind::Task, "public"));
        assert!(!can_see(&user("zoe"), &c, TargetKind::Task, "named"));
        assert!(anonymous_can_see(&c, TargetKind::Task, "public"));
        assert!(!anonymous_can_see(&c, TargetKind::Task, "named"));
        assert!(!anonymous_can_see(&c, TargetKind::Task, "gone"));
        assert!(!anonymous_can_see(&c, TargetKind::Pipeline, "public"));
    }

    #[test]
    fn administrators_and_operators_see_everything() {
        let c = config();
        for who in [user("root"), Principal::Operator] {
            assert!(is_admin(&who, &c.administrators));
            for (k, n) in [
                (TargetKind::Task, "open"),
                (TargetKind::Task, "secret"),
                (TargetKind::Pipeline, "p"),
                (TargetKind::Pipeline, "q"),
                (TargetKind::Task, "gone"),
            ] {
                assert!(can_see(&who, &c, k, n), "{who:?} {n}");
            }
            assert_eq!(visible_targets(&who, &c), None);
        }
    }

    #[test]
    fn authorized_users_see_only_their_targets() {
        let c = config();
        let alice = user("alice");
        assert!(!is_admin(&alice, &c.administrators));
        assert!(can_see(&alice, &c, TargetKind::Task, "open"));
        assert!(!can_see(&alice, &c, TargetKind::Task, "secret"));
        assert!(can_see(&alice, &c, TargetKind::Pipeline, "p"));
        assert!(!can_see(&alice, &c, TargetKind::Pipeline, "q"));
        assert!(!can_see(&alice, &c, TargetKind::Task, "gone"));
        assert!(!can_see(&alice, &c, TargetKind::Pipeline, "open"));
        assert_eq!(
            visible_targets(&alice, &c),
            Some(VisibleTargets {
                tasks: vec!["open".into()],
                pipelines: vec!["p".into()],
                repos: vec![],
            })
        );
        let bob = user("bob");
        assert!(can_see(&bob, &c, TargetKind::Task, "open"));
        assert!(!can_see(&bob, &c, TargetKind::Pipeline, "p"));
    }

    #[test]
    fn strangers_see_nothing() {
        let c = config();
        let eve = user("eve");
        assert_eq!(visible_targets(&eve, &c), Some(VisibleTargets::default()));
        // Names are compared exactly: no case folding, no prefixes.
        assert!(!can_see(&user("Alice"), &c, TargetKind::Task, "open"));
        assert!(!can_see(&user("alic"), &c, TargetKind::Task, "open"));
    }

    fn repo_config() -> Config {
        crate::config::load_sources(&[(
            "t.yaml".into(),
            "administrators: [root]\n\
             repos:\n\
             \x20 app: {url: /srv/app, authorized_users: [alice]}\n\
             \x20 web: {url: /srv/web, users: ['*']}\n\
             \x20 closed: {url: /srv/closed}\n\
             tasks:\n\
             \x20 plain: {command: 'true', authorized_users: [bob]}\n"
                .into(),
        )])
        .expect("valid config")
    }

    #[test]
    fn a_repositorys_targets_follow_its_repos_entry() {
        let c = repo_config();
        let (alice, bob) = (user("alice"), user("bob"));
        for kind in [TargetKind::Task, TargetKind::Pipeline] {
            assert!(can_see(&alice, &c, kind, "app/test"));
            assert!(can_see(&alice, &c, kind, "app/.baton"));
            assert!(!can_see(&bob, &c, kind, "app/test"));
            assert!(can_see(&bob, &c, kind, "web/test"));
            assert!(!can_see(&alice, &c, kind, "closed/test"));
            assert!(can_see(&user("root"), &c, kind, "closed/test"));
        }
        // Not a repository's target: an unknown repository, or no task after the slash.
        assert!(!can_see(&alice, &c, TargetKind::Task, "nope/test"));
        assert!(!can_see(&alice, &c, TargetKind::Task, "app/"));
        assert!(anonymous_can_see(&c, TargetKind::Task, "web/test"));
        assert!(!anonymous_can_see(&c, TargetKind::Task, "app/test"));
        assert_eq!(
            visible_targets(&alice, &c),
            Some(VisibleTargets {
                tasks: vec![],
                pipelines: vec![],
                repos: vec!["app".into(), "web".into()],
            })
        );
        assert!(may_sign_in(&c, &sso(), "alice"));
    }

    #[test]
    fn a_repositorys_own_config_cannot_grant_access() {
        // `.baton/` may carry `authorized_users`, but access reads only the server's config:
        // the repository's task stays invisible to bob and has no public badge.
        let c = repo_config();
        let own = crate::config::load_repo_sources(
            &[(
                ".baton/ci.yml".into(),
                "tasks:\n  test: {command: 'true', authorized_users: [bob, '*']}\n".into(),
            )],
            &c,
        )
        .expect("valid .baton/");
        assert_eq!(own.tasks["test"].authorized_users, vec!["bob", "*"]);
        assert!(!can_see(&user("bob"), &c, TargetKind::Task, "app/test"));
        assert!(!anonymous_can_see(&c, TargetKind::Task, "app/test"));
    }

    fn sso() -> SsoProvider {
        SsoProvider {
            name: "corp".into(),
            kind: crate::config::SsoKind::Github {
                url: "https://github.com".into(),
                api_url: "https://api.github.com".into(),
            },
            label: "Corp".into(),
            client_id: "id".into(),
            client_secret: "s".into(),
            scopes: vec![],
            allowed_users: vec![],
            allowed_domains: vec![],
        }
    }
}
