//! Repository identity from a clone URL, so a repository is matched by any of its URLs.
//!
//! `https://Host/owner/repo.git`, `ssh://git@host:22/owner/repo`, `git@host:owner/repo.git`,
//! `git://host/owner/repo/` all name the same repository: the scheme, user, port, a trailing
//! `.git` and slashes are dropped, and host and path compare case-insensitively (GitHub, Gitea,
//! Forgejo and GitLab all treat `owner/name` so). Local paths (`/srv/git/repo`, `file:///srv/…`)
//! are compared after lexical normalization (`.`, `..`, doubled slashes, a final `/.git`), with
//! their case kept, since file systems are case-sensitive; no file system is consulted.

use std::fmt;

/// A repository's identity, built from any of its clone URLs by [`RepoUrl::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoUrl {
    /// A repository on a server: lowercase host (no user, no port) and path (no `.git`, no
    /// leading or trailing slash).
    Remote { host: String, path: String },
    /// A repository on this machine, lexically normalized.
    Local { path: String },
}

/// Why a string is not a repository URL. Messages never show a password the URL carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("empty repository URL")]
    Empty,
    #[error(
        "unsupported scheme {scheme:?} in repository URL {url} (hint: use https://, ssh://, git://, file:// or a local path)"
    )]
    UnsupportedScheme { scheme: String, url: String },
    #[error("no host in repository URL {0}")]
    NoHost(String),
    #[error("no repository path in URL {0}")]
    NoPath(String),
}

const REMOTE_SCHEMES: &[&str] = &["https", "http", "ssh", "git", "git+ssh", "ssh+git"];

impl RepoUrl {
    /// The identity of the repository `url` names.
    pub fn parse(url: &str) -> Result<RepoUrl, UrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some((scheme, rest)) = split_scheme(url) {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "file" {
                // file:///abs or file://localhost/abs: the host part names this machine.
                let path = rest.find('/').map_or("", |i| &rest[i..]);
                return Ok(local(path));
            }
            if !REMOTE_SCHEMES.contains(&scheme.as_str()) {
                return Err(UrlError::UnsupportedScheme {
                    scheme,
                    url: redact(url),
                });
            }
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            return remote(url, authority, path);
        }
        // scp-like `[user@]host:path`: a colon before any slash (git's own rule).
        if let Some(colon) = url.find(':')
            && colon > 0
            && !url[..colon].contains('/')
        {
            return remote(url, &url[..colon], &url[colon + 1..]);
        }
        Ok(local(url))
    }

    /// Whether this is a repository on this machine.
    pub fn is_local(&self) -> bool {
        matches!(self, RepoUrl::Local { .. })
    }
}

/// The canonical text, which parses back to the same identity.
impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoUrl::Remote { host, path } => write!(f, "https://{host}/{path}"),
            RepoUrl::Local { path } => {
                let first = path.split('/').next().unwrap_or_default();
                if !path.starts_with('/') && first.contains(':') {
                    // Would read as scp-like `host:path` otherwise.
                    write!(f, "./{path}")
                } else {
                    f.write_str(path)
                }
            }
        }
    }
}

/// Whether two URLs name the same repository (false when either is not a repository URL).
pub fn same_repo(a: &str, b: &str) -> bool {
    match (RepoUrl::parse(a), RepoUrl::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `scheme://rest` when the text before `://` is a valid URL scheme.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let i = url.find("://")?;
    let scheme = &url[..i];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme, &url[i + 3..]))
}

fn remote(url: &str, authority: &str, path: &str) -> Result<RepoUrl, UrlError> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        // An IPv6 literal: `[::1]` or `[::1]:22`.
        host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end])
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(redact(url)));
    }
    let lower = path.to_lowercase();
    let mut segments: Vec<&str> = lower
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    // A trailing `.git` (even repeated, or as its own segment) is not part of the identity,
    // nor is trailing white space (the canonical text must survive the trim `parse` does).
    while let Some(last) = segments.last_mut() {
        let trimmed = last.trim_end();
        match trimmed.strip_suffix(".git").unwrap_or(trimmed) {
            "" => {
                segments.pop();
            }
            stem if stem.len() < last.len() => *last = stem,
            _ => break,
        }
    }
    if segments.is_empty() {
        return Err(UrlError::NoPath(redact(url)));
    }
    Ok(RepoUrl::Remote {
        host: host.to_lowercase(),
        path: segments.join("/"),
    })
}

fn local(path: &str) -> RepoUrl {
    let absolute = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                // `/..` is `/`; a relative path keeps its leading `..`s.
                _ if absolute => {}
                _ => out.push(".."),
            },
            s => out.push(s),
        }
    }
    // A trailing `.git` segment is not part of the identity, nor is white space at either end
    // (the canonical text must survive the trim `parse` does).
    while let Some(last) = out.last_mut() {
        match last.trim_end() {
            "" | ".git" => {
                out.pop();
            }
            t if t.len() < last.len() => *last = t,
            _ => break,
        }
    }
    if !absolute && let Some(first) = out.first_mut() {
        *first = first.trim_start();
        if first.is_empty() {
            out.remove(0);
        }
    }
    let joined = out.join("/");
    let path = match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    };
    RepoUrl::Local { path }
}

/// The URL with any `user:password@` reduced to `user:***@`, for messages.
fn redact(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let auth_end = rest.find('/').unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{prefix}{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(host: &str, path: &str) -> RepoUrl {
        RepoUrl::Remote {
            host: host.into(),
            path: path.into(),
        }
    }

    #[test]
    fn every_clone_url_of_a_repo_is_the_same_repo() {
        let want = remote("github.com", "codertocat/hello-world");
        for url in [
            "https://github.com/Codertocat/Hello-World.git",
            "https://github.com/Codertocat/Hello-World",
            "https://GitHub.com/Codertocat/Hello-World/",
            "http://user:tok@github.com:443/Codertocat/Hello-World.git",
            "git@github.com:Codertocat/Hello-World.git",
            "github.com:Codertocat/Hello-World",
            "ssh://git@github.com/Codertocat/Hello-World.git",
            "ssh://git@github.com:2222/Codertocat/Hello-World",
            "git://github.com/Codertocat/Hello-World.git",
            "git+ssh://git@github.com/Codertocat/Hello-World.git",
            "  https://github.com//Codertocat/./Hello-World.git/  ",
        ] {
            assert_eq!(RepoUrl::parse(url), Ok(want.clone()), "{url}");
        }
        assert!(same_repo(
            "http://localhost:3000/gitea/webhooks.git",
            "git@localhost:gitea/webhooks.git"
        ));
        assert!(!same_repo(
            "https://github.com/a/b",
            "https://github.com/a/c"
        ));
        assert!(!same_repo(
            "https://github.com/a/b",
            "https://gitlab.com/a/b"
        ));
        assert!(!same_repo("https://github.com/a/b", ""));
    }

    #[test]
    fn local_paths() {
        let l = |p: &str| RepoUrl::Local { path: p.into() };
        // White space before a trailing slash is trimmed like white space at the end.
        assert_eq!(RepoUrl::parse("! /"), Ok(l("!")));
        assert_eq!(RepoUrl::parse("/srv/repo/.git /"), Ok(l("/srv/repo")));
        assert!(same_repo(
            "https://h.example/a/b /",
            "https://h.example/a/b"
        ));
        assert_eq!(RepoUrl::parse("/srv/git/repo/"), Ok(l("/srv/git/repo")));
        assert_eq!(RepoUrl::parse("/srv/git/repo/.git"), Ok(l("/srv/git/repo")));
        assert_eq!(
            RepoUrl::parse("file:///srv//git/./x/../repo"),
            Ok(l("/srv/git/repo"))
        );
        assert_eq!(
            RepoUrl::parse("file://localhost/srv/git/repo"),
            Ok(l("/srv/git/repo"))
        );
        assert_eq!(RepoUrl::parse("../up/./r"), Ok(l("../up/r")));
        assert_eq!(RepoUrl::parse("/.."), Ok(l("/")));
        // Local paths keep their case and their `.git` directory name.
        assert!(!same_repo("/srv/Repo", "/srv/repo"));
        assert!(!same_repo("/srv/repo.git", "/srv/repo"));
        assert!(RepoUrl::parse("/srv/repo").unwrap().is_local());
        // A relative path whose first segment has a colon displays unambiguously.
        let odd = RepoUrl::parse("./a:b/c").unwrap();
        assert_eq!(odd.to_string(), "./a:b/c");
        assert_eq!(RepoUrl::parse(&odd.to_string()), Ok(odd));
    }

    #[test]
    fn errors_are_precise_and_hide_passwords() {
        assert_eq!(RepoUrl::parse("  "), Err(UrlError::Empty));
        let e = RepoUrl::parse("ftp://u:secret@h/r").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("\"ftp\""), "{e}");
        let e = RepoUrl::parse("https://u:secret@/r").unwrap_err();
        assert_eq!(e, UrlError::NoHost("https://u:***@/r".into()));
        assert_eq!(
            RepoUrl::parse("https://h/.git/"),
            Err(UrlError::NoPath("https://h/.git/".into()))
        );
        assert_eq!(
            RepoUrl::parse("ssh://git@[::1]:22/o/r"),
            Ok(remote("[::1]", "o/r"))
        );
    }

    #[test]
    fn display_is_canonical() {
        let r = RepoUrl::parse("git@Example.com:Group/Sub/Proj.git").unwrap();
        assert_eq!(r.to_string(), "https://example.com/group/sub/proj");
    }
}
