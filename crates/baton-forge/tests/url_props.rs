//! Property tests of repository URL identity: normalization is idempotent, every spelling of
//! one repository's URL is the same repository, and different repositories stay different.

use baton_forge::{RepoUrl, same_repo};
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}".prop_filter("not a dot segment or .git name", |s| {
        s != "." && s != ".." && !s.to_ascii_lowercase().ends_with(".git")
    })
}

fn host() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,8}(\\.[A-Za-z]{2,4}){0,2}"
}

/// One spelling of `host`/`path`: scheme, user, port, case, `.git`, slashes.
fn spelling(host: String, path: String) -> impl Strategy<Value = String> {
    (
        0..6usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(form, git, slash, upper, port)| {
            let host = if upper {
                host.to_uppercase()
            } else {
                host.clone()
            };
            let path = if upper {
                path.to_uppercase()
            } else {
                path.clone()
            };
            let suffix = format!(
                "{}{}",
                if git { ".git" } else { "" },
                if slash { "/" } else { "" }
            );
            let port = if port { ":2222" } else { "" };
            match form {
                0 => format!("https://{host}{port}/{path}{suffix}"),
                1 => format!("http://user:pw@{host}{port}/{path}{suffix}"),
                2 => format!("ssh://git@{host}{port}/{path}{suffix}"),
                3 => format!("git@{host}:{path}{suffix}"),
                4 => format!("git://{host}/{path}{suffix}"),
                _ => format!("{host}:/{path}{suffix}"),
            }
        })
}

fn repo() -> impl Strategy<Value = (String, String)> {
    (host(), prop::collection::vec(segment(), 1..4)).prop_map(|(h, p)| (h, p.join("/")))
}

proptest! {
    #[test]
    fn normalization_is_idempotent(url in "\\PC{0,40}") {
        if let Ok(once) = RepoUrl::parse(&url) {
            let twice = RepoUrl::parse(&once.to_string());
            prop_assert_eq!(twice, Ok(once));
        }
    }

    #[test]
    fn normalization_is_idempotent_on_url_like_text(
        url in "(https?://|ssh://|git://|file://|[a-z@]{0,5}:|/|\\./)?[A-Za-z0-9:@./_-]{0,30}"
    ) {
        if let Ok(once) = RepoUrl::parse(&url) {
            let twice = RepoUrl::parse(&once.to_string());
            prop_assert_eq!(twice, Ok(once));
        }
    }

    #[test]
    fn all_spellings_are_the_same_repo(
        (a, b) in repo().prop_flat_map(|(h, p)| (spelling(h.clone(), p.clone()), spelling(h, p)))
    ) {
        prop_assert!(same_repo(&a, &b), "{} vs {}", a, b);
    }

    #[test]
    fn different_paths_are_different_repos((h, p) in repo(), other in segment()) {
        let a = format!("https://{h}/{p}");
        let b = format!("https://{h}/{p}/{other}");
        prop_assert!(!same_repo(&a, &b));
    }
}
