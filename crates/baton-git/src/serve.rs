//! Serving a repository read-only over git's smart HTTP protocol: `git http-backend` run as a
//! CGI program for one request, limited to `upload-pack` (fetches). The web layer decides who
//! may fetch and hands the request here; what git answers is streamed back.
//!
//! Any commit in the repository may be fetched by id (`uploadpack.allowAnySHA1InWant`): a job
//! fetches exactly the commit it builds, which for a pull request is a merge commit no ref
//! names. Pushes, archives and the dumb protocol are refused.

use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdout};

use crate::cmd::{At, Git, GitEnv, GitError};

/// One smart-HTTP request for a repository.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// `GET` for the ref advertisement, `POST` for the fetch itself.
    pub method: String,
    /// What follows the repository's URL: `info/refs` or `git-upload-pack`.
    pub path: String,
    /// The query string (`service=git-upload-pack` for `info/refs`).
    pub query: String,
    pub content_type: Option<String>,
    /// `gzip` when the client compressed its request.
    pub content_encoding: Option<String>,
    /// The `Git-Protocol` header (`version=2`).
    pub git_protocol: Option<String>,
    pub body: Vec<u8>,
}

/// What git answered: its status, headers, and the body to stream.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: HttpBody,
}

/// The rest of `git http-backend`'s output; the process lives as long as this.
pub struct HttpBody {
    head: std::io::Cursor<Vec<u8>>,
    out: ChildStdout,
    _child: Child,
}

impl AsyncRead for HttpBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        let pos = me.head.position() as usize;
        let rest = &me.head.get_ref()[pos..];
        if !rest.is_empty() {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            me.head.set_position((pos + n) as u64);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.out).poll_read(cx, buf)
    }
}

fn refuse(given: &str, reason: &'static str) -> GitError {
    GitError::BadArgument {
        what: "smart HTTP request",
        given: given.to_owned(),
        reason,
    }
}

/// Checks that `req` is a fetch (advertisement or upload-pack) and nothing else.
fn check(req: &HttpRequest) -> Result<(), GitError> {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "info/refs") if req.query == "service=git-upload-pack" => {}
        ("POST", "git-upload-pack") => {}
        _ => {
            return Err(refuse(
                &format!("{} {}?{}", req.method, req.path, req.query),
                "only fetches are served (GET info/refs?service=git-upload-pack, POST git-upload-pack)",
            ));
        }
    }
    let plain = |v: &Option<String>| {
        v.as_deref().is_none_or(|v| {
            v.len() < 200
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=:._-/+ ;".contains(&b))
        })
    };
    if !plain(&req.content_type) || !plain(&req.content_encoding) || !plain(&req.git_protocol) {
        return Err(refuse("a header", "it holds unexpected characters"));
    }
    Ok(())
}

/// Serves `req` for the repository at `repo` (bare) with `git http-backend`.
pub async fn serve_http(repo: &Path, req: HttpRequest) -> Result<HttpResponse, GitError> {
    check(&req)?;
    let repo = std::path::absolute(repo).map_err(|e| GitError::io(repo, e))?;
    let env = GitEnv::default();
    let mut g = Git::new(&env, At::Nowhere)
        .args([
            "-c",
            "uploadpack.allowAnySHA1InWant=true",
            "-c",
            "http.receivepack=false",
            "-c",
            "http.uploadarch=false",
            "-c",
            "http.getanyfile=false",
            "http-backend",
        ])
        .env("GIT_PROJECT_ROOT", repo.to_string_lossy().into_owned())
        .env("GIT_HTTP_EXPORT_ALL", "1".into())
        .env("REQUEST_METHOD", req.method.clone())
        .env("PATH_INFO", format!("/{}", req.path))
        .env("QUERY_STRING", req.query.clone())
        .env("CONTENT_LENGTH", req.body.len().to_string());
    for (key, value) in [
        ("CONTENT_TYPE", &req.content_type),
        ("HTTP_CONTENT_ENCODING", &req.content_encoding),
        ("GIT_PROTOCOL", &req.git_protocol),
    ] {
        if let Some(v) = value {
            g = g.env(key, v.clone());
        }
    }
    let mut cmd = g.command();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| GitError::Spawn {
        source: Arc::new(e),
    })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let body = req.body;
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = child.stdout.take().expect("stdout is piped");
    let (status, headers, head) = read_head(&mut out)
        .await
        .map_err(|detail| GitError::Output {
            args: "http-backend".into(),
            detail,
        })?;
    Ok(HttpResponse {
        status,
        headers,
        body: HttpBody {
            head: std::io::Cursor::new(head),
            out,
            _child: child,
        },
    })
}

/// Reads the CGI header block: the status (200 unless `Status:` says), the other headers, and
/// the body bytes read past it.
async fn read_head(out: &mut ChildStdout) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let (end, sep) = loop {
        if let Some(i) = find(&got, b"\r\n\r\n") {
            break (i, 4);
        }
        if let Some(i) = find(&got, b"\n\n") {
            break (i, 2);
        }
        if got.len() > 64 * 1024 {
            return Err("no end of the CGI headers in 64 KiB".into());
        }
        let n = out.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("git http-backend ended without an answer".into());
        }
        got.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&got[..end]).into_owned();
    let mut status = 200;
    let mut headers = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok((status, headers, got.split_off(end + sep)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fetches_are_served() {
        let req = |m: &str, p: &str, q: &str| HttpRequest {
            method: m.into(),
            path: p.into(),
            query: q.into(),
            ..Default::default()
        };
        assert!(check(&req("GET", "info/refs", "service=git-upload-pack")).is_ok());
        assert!(check(&req("POST", "git-upload-pack", "")).is_ok());
        assert!(check(&req("GET", "info/refs", "service=git-receive-pack")).is_err());
        assert!(check(&req("POST", "git-receive-pack", "")).is_err());
        assert!(check(&req("GET", "HEAD", "")).is_err());
        let mut r = req("POST", "git-upload-pack", "");
        r.git_protocol = Some("version=2\nX".into());
        assert!(check(&r).is_err());
    }
}
