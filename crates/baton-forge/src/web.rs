//! Links to a repository's pages on its forge (a commit, a pull or merge request), made from its
//! clone URL: `https://host/owner/repo.git`, `ssh://git@host:22/owner/repo`,
//! `git@host:owner/repo.git` and `git://host/owner/repo` all give the web base
//! `https://host/owner/repo`. Credentials a URL carries are dropped, and so are an SSH or git
//! port (the web server is not there); a local path gives no links.

use crate::Forge;

/// The web pages of one repository on its forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLinks {
    forge: Forge,
    base: String,
}

impl WebLinks {
    /// Links for the repository cloned from `url` on `forge`, when the URL names a server.
    pub fn new(forge: Forge, url: &str) -> Option<WebLinks> {
        web_base(url).map(|base| WebLinks { forge, base })
    }

    /// The repository's home page (`https://host/owner/repo`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The page of commit `sha` (only hex digits are linked).
    pub fn commit(&self, sha: &str) -> Option<String> {
        if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(match self.forge {
            Forge::GitLab => format!("{}/-/commit/{sha}", self.base),
            Forge::GitHub | Forge::Gitea | Forge::Forgejo => format!("{}/commit/{sha}", self.base),
        })
    }

    /// The page of pull request (GitLab: merge request) number `n`.
    pub fn pull(&self, n: i64) -> String {
        match self.forge {
            Forge::GitLab => format!("{}/-/merge_requests/{n}", self.base),
            Forge::GitHub | Forge::Gitea | Forge::Forgejo => format!("{}/pull/{n}", self.base),
        }
    }
}

/// The `https://` (or, for an `http://` clone URL, `http://`) web address of the repository
/// `url` names; `None` for local paths and anything that does not read as `host/owner/repo`.
pub fn web_base(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, authority, path) = if let Some(i) = url.find("://") {
        let scheme = url[..i].to_ascii_lowercase();
        let rest = &url[i + 3..];
        let (authority, path) = rest.split_at(rest.find('/')?);
        (scheme, authority, path)
    } else {
        // scp-like `[user@]host:owner/repo`: a colon before any slash.
        let colon = url.find(':')?;
        if colon == 0 || url[..colon].contains('/') {
            return None;
        }
        ("ssh".to_owned(), &url[..colon], &url[colon + 1..])
    };
    let web_scheme = match scheme.as_str() {
        "https" => "https",
        "http" => "http",
        "ssh" | "git" | "git+ssh" | "ssh+git" => "https",
        _ => return None,
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.to_ascii_lowercase();
    let (host, port) = split_port(&host_port)?;
    let port = match (web_scheme, scheme.as_str()) {
        ("https" | "http", "https" | "http") => port,
        _ => None,
    };
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').collect();
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if segments.len() < 2 || !segments.iter().all(|s| plain(s)) {
        return None;
    }
    let port = port.map_or(String::new(), |p| format!(":{p}"));
    Some(format!("{web_scheme}://{host}{port}/{path}"))
}

/// `url` fit to show: an `http(s)://` URL loses its user part (often a token), any other URL
/// its password; the rest is kept as written.
pub fn public_url(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_owned();
    };
    let (prefix, rest) = url.split_at(i + 3);
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..auth_end].rfind('@') else {
        return url.to_owned();
    };
    let scheme = prefix[..i].to_ascii_lowercase();
    if scheme == "https" || scheme == "http" {
        return format!("{prefix}{}", &rest[at + 1..]);
    }
    let user = rest[..at].split(':').next().unwrap_or_default();
    format!("{prefix}{user}@{}", &rest[at + 1..])
}

/// `host` and its port, checked: a DNS name, IPv4 or a bracketed IPv6 literal.
fn split_port(host_port: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        let rest = &host_port[end + 1..];
        (&host_port[..=end], rest.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let host_ok = if host.starts_with('[') {
        host[1..host.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_urls_give_the_web_base_without_credentials_or_ssh_ports() {
        for (url, base) in [
            (
                "https://github.com/Owner/Repo.git",
                "https://github.com/Owner/Repo",
            ),
            (
                "https://github.com/Owner/Repo/",
                "https://github.com/Owner/Repo",
            ),
            (
                "https://ada:s3cret@Git.Example.com/o/r.git",
                "https://git.example.com/o/r",
            ),
            (
                "https://x-access-token:ghs_abc@github.com/o/r",
                "https://github.com/o/r",
            ),
            (
                "http://gitea.local:3000/o/r.git",
                "http://gitea.local:3000/o/r",
            ),
            (
                "git@github.com:Codertocat/Hello-World.git",
                "https://github.com/Codertocat/Hello-World",
            ),
            (
                "ssh://git@gitlab.com:2222/group/sub/proj.git",
                "https://gitlab.com/group/sub/proj",
            ),
            ("git://host.example/o/r", "https://host.example/o/r"),
            ("https://[::1]:8443/o/r", "https://[::1]:8443/o/r"),
        ] {
            assert_eq!(web_base(url).as_deref(), Some(base), "{url}");
        }
        for url in [
            "/srv/git/app",
            "./app",
            "file:///srv/git/app",
            "https://github.com/just-one",
            "https://github.com/o/r\"><script>",
            "https://host/o/../r",
            "ftp://host/o/r",
            "git@:o/r",
            "",
        ] {
            assert_eq!(web_base(url), None, "{url}");
        }
    }

    #[test]
    fn shown_urls_carry_no_credentials() {
        for (url, shown) in [
            (
                "https://x-access-token:ghs_abc@github.com/o/r",
                "https://github.com/o/r",
            ),
            (
                "https://ghp_token@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            ("ssh://git:pw@host/o/r", "ssh://git@host/o/r"),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            ("https://github.com/o/r", "https://github.com/o/r"),
            ("/srv/git/app", "/srv/git/app"),
        ] {
            assert_eq!(public_url(url), shown, "{url}");
        }
    }

    #[test]
    fn commit_and_pull_pages_follow_each_forge() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for (forge, commit, pull) in [
            (
                Forge::GitHub,
                "https://h/o/r/commit/",
                "https://h/o/r/pull/7",
            ),
            (
                Forge::Gitea,
                "https://h/o/r/commit/",
                "https://h/o/r/pull/7",
            ),
            (
                Forge::Forgejo,
                "https://h/o/r/commit/",
                "https://h/o/r/pull/7",
            ),
            (
                Forge::GitLab,
                "https://h/o/r/-/commit/",
                "https://h/o/r/-/merge_requests/7",
            ),
        ] {
            let links = WebLinks::new(forge, "git@h:o/r.git").unwrap();
            assert_eq!(links.base(), "https://h/o/r");
            assert_eq!(links.commit(sha), Some(format!("{commit}{sha}")));
            assert_eq!(links.pull(7), pull);
            assert_eq!(links.commit("not-a-sha"), None);
        }
        assert_eq!(WebLinks::new(Forge::GitHub, "/srv/app"), None);
    }
}
