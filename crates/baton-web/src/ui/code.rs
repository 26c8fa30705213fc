//! A run's code as pages show it: repository, branch, tag or pull request, commit, with links
//! to the forge's pages when the repository's URL names a server (never its credentials).

use baton_core::config::{Config, Forge as ConfigForge};
use baton_forge::{Forge, WebLinks};
use baton_store::RunRepo;

/// A run's code in one line of the runs list: repository, branch, tag or PR, short commit.
pub(super) struct CodeView {
    pub repo: String,
    /// `main`, `tag v1.2`, `PR #7`.
    pub at: String,
    /// The sha's first 10 digits; `full` has all of them.
    pub short: String,
    pub full: String,
    /// The machine an imported local run ran on (empty: the server ran it).
    pub ran_on: String,
}

impl CodeView {
    pub(super) fn of(r: &RunRepo) -> CodeView {
        let at = match (&r.pr, &r.tag, &r.branch) {
            (Some(n), _, _) => format!("PR #{n}"),
            (None, Some(t), _) => format!("tag {t}"),
            (None, None, Some(b)) => b.clone(),
            (None, None, None) => String::new(),
        };
        CodeView {
            repo: r.repo.clone(),
            at,
            short: short(&r.commit),
            full: r.commit.clone(),
            ran_on: r.ran_on.clone().unwrap_or_default(),
        }
    }
}

/// A run's code on its page, with the forge's links (empty when there is none).
pub(super) struct CodeFacts {
    pub repo: String,
    pub repo_link: String,
    pub commit: String,
    pub commit_short: String,
    pub commit_link: String,
    pub branch: String,
    pub tag: String,
    pub pr: String,
    pub pr_link: String,
    pub event: String,
    pub author: String,
    pub subject: String,
    /// The machine an imported local run ran on (empty: the server ran it).
    pub ran_on: String,
}

impl CodeFacts {
    /// The facts of `r`; links only for a repository `config` still names on a forge.
    pub(super) fn of(r: &RunRepo, config: &Config) -> CodeFacts {
        let links = config.repos.get(&r.repo).and_then(|def| {
            let forge = match def.forge {
                ConfigForge::Github => Forge::GitHub,
                ConfigForge::Gitea => Forge::Gitea,
                ConfigForge::Forgejo => Forge::Forgejo,
                ConfigForge::Gitlab => Forge::GitLab,
                ConfigForge::Git => return None,
            };
            WebLinks::new(forge, &def.url)
        });
        CodeFacts {
            repo: r.repo.clone(),
            repo_link: links
                .as_ref()
                .map(|l| l.base().to_owned())
                .unwrap_or_default(),
            commit: r.commit.clone(),
            commit_short: short(&r.commit),
            commit_link: links
                .as_ref()
                .and_then(|l| l.commit(&r.commit))
                .unwrap_or_default(),
            branch: r.branch.clone().unwrap_or_default(),
            tag: r.tag.clone().unwrap_or_default(),
            pr: r.pr.map(|n| n.to_string()).unwrap_or_default(),
            pr_link: match (&links, r.pr) {
                (Some(l), Some(n)) => l.pull(n),
                _ => String::new(),
            },
            event: r.event.clone(),
            author: r.author.clone().unwrap_or_default(),
            subject: r.subject.clone().unwrap_or_default(),
            ran_on: r.ran_on.clone().unwrap_or_default(),
        }
    }
}

fn short(sha: &str) -> String {
    sha.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_request_links_to_gitlab_and_a_plain_git_repo_links_nothing() {
        let config = baton_core::config::load_sources_with(
            &[(
                "t.yaml".into(),
                "repos:\n\
             \x20 lab: {url: 'https://bot:glpat-x@gitlab.example.com/g/sub/app.git', forge: gitlab, \
                 secret: 'env:S'}\n\
             \x20 plain: {url: 'git@git.example.com:o/r.git', forge: git}\n"
                    .into(),
            )],
            &|_| Ok("s3cret".into()),
        )
        .expect("valid config");
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let run = RunRepo {
            repo: "lab".into(),
            commit: sha.into(),
            pr: Some(12),
            branch: Some("feature".into()),
            event: "pull_request".into(),
            ..RunRepo::default()
        };
        let c = CodeFacts::of(&run, &config);
        let web = "https://gitlab.example.com/g/sub/app";
        assert_eq!(c.repo_link, web);
        assert_eq!(c.commit_link, format!("{web}/-/commit/{sha}"));
        assert_eq!(c.pr_link, format!("{web}/-/merge_requests/12"));
        assert_eq!(
            (c.commit_short.as_str(), c.pr.as_str()),
            ("0123456789", "12")
        );
        assert_eq!(CodeView::of(&run).at, "PR #12");
        let plain = CodeFacts::of(
            &RunRepo {
                repo: "plain".into(),
                ..run.clone()
            },
            &config,
        );
        assert_eq!(
            (plain.repo_link, plain.commit_link, plain.pr_link),
            (String::new(), String::new(), String::new())
        );
        let gone = CodeFacts::of(
            &RunRepo {
                repo: "gone".into(),
                ..run
            },
            &config,
        );
        assert!(gone.commit_link.is_empty());
    }
}
