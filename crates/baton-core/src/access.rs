//! Who may see what (the py4CI model), as pure functions.
//!
//! Administrators (the config's `administrators:` list) see and manage everything. A task's or
//! pipeline's `authorized_users` may see its runs, trigger, cancel and rerun them; everyone else
//! does not see it at all. An empty `authorized_users` means administrators only. An operator
//! (an API token that belongs to no user, or a prunner JWT) acts as an administrator.

use crate::config::{Config, PipelineDef, TaskDef};
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

fn listed(who: &Principal, admins: &[String], authorized: &[String]) -> bool {
    if is_admin(who, admins) {
        return true;
    }
    match who {
        Principal::Operator => true,
        Principal::User(n) => authorized.iter().any(|a| a == n),
    }
}

/// Whether `who` may see (and so trigger, cancel and rerun) `task`.
pub fn can_see_task(who: &Principal, admins: &[String], task: &TaskDef) -> bool {
    listed(who, admins, &task.authorized_users)
}

/// Whether `who` may see (and so trigger, cancel and rerun) `pipeline`.
pub fn can_see_pipeline(who: &Principal, admins: &[String], pipeline: &PipelineDef) -> bool {
    listed(who, admins, &pipeline.authorized_users)
}

/// Whether `who` may see the target named `name` of `kind` in `config`. A target the config no
/// longer defines is visible to administrators only.
pub fn can_see(who: &Principal, config: &Config, kind: TargetKind, name: &str) -> bool {
    let admins = &config.administrators;
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

/// The targets `who` may see, as `(tasks, pipelines)` name lists; `None` means everything
/// (administrators), so callers can skip filtering.
pub fn visible_targets(who: &Principal, config: &Config) -> Option<(Vec<String>, Vec<String>)> {
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
    Some((tasks, pipelines))
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
            Some((vec!["open".into()], vec!["p".into()]))
        );
        let bob = user("bob");
        assert!(can_see(&bob, &c, TargetKind::Task, "open"));
        assert!(!can_see(&bob, &c, TargetKind::Pipeline, "p"));
    }

    #[test]
    fn strangers_see_nothing() {
        let c = config();
        let eve = user("eve");
        assert_eq!(visible_targets(&eve, &c), Some((vec![], vec![])));
        // Names are compared exactly: no case folding, no prefixes.
        assert!(!can_see(&user("Alice"), &c, TargetKind::Task, "open"));
        assert!(!can_see(&user("alic"), &c, TargetKind::Task, "open"));
    }
}
