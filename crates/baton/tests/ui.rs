//! The UI's HTML over HTTP (no browser): big logs show only their tail with absolute line
//! numbers and page backwards by byte offset; user text is escaped; pages, API answers and
//! artifacts carry their security headers.

mod common;
#[path = "common/users.rs"]
mod users;

use common::*;

const CONFIG: &str = r#"
administrators: [root]
tasks:
  big:
    command: |
      awk 'BEGIN { for (i = 1; i <= 40000; i++) printf "line %d: xxxxxxxxxxxxxxxxxxxx\n", i }'
  echo:
    command: echo "got $what"
  html:
    command: |
      echo '<script>fetch("/api/v1/tasks")</script>' > "$BATON_OUTPUT_DIR/page.html"
      printf '\033[38;2;10;200;30mgreen\033[0m\n'
"#;

async fn page(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let r = users::no_redirects()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn big_logs_show_their_tail_and_page_backwards() {
    let s = Server::start(CONFIG);
    users::add_user(&s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let id = id_of(&s.trigger("big", &[]).await);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success");
    let size = s.log(id, None).await.len();
    assert!(size > 1_000_000, "log is {size} bytes");

    let (st, html) = page(&s, &cookie, &format!("/runs/{id}")).await;
    assert_eq!(st, 200);
    // 256 KiB of log, with per-line markup (anchor, number): far below the whole log's HTML.
    assert!(
        html.len() < 1024 * 1024,
        "the page holds only the tail: {} bytes",
        html.len()
    );
    assert!(html.contains("line 40000:"));
    assert!(!html.contains("line 1:"));
    // Line numbers are absolute, so `#L40000` links to the last line.
    assert!(html.contains("id=\"L40000\""), "absolute line anchors");
    let marker = "before=";
    let earlier_link = html.find("id=\"earlier\"").expect("a load-earlier link");
    let i = earlier_link + html[earlier_link..].find(marker).unwrap();
    let before: u64 = html[i + marker.len()..]
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(before > 0 && before < size as u64);
    let (st, earlier) = page(&s, &cookie, &format!("/runs/{id}?before={before}")).await;
    assert_eq!(st, 200);
    assert!(
        !earlier.contains("line 40000:"),
        "the earlier page ends before the tail"
    );
    let first_tail_line = html
        .split("<span class=\"line\" id=\"L")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(
        earlier.contains(&format!("id=\"L{}\"", first_tail_line - 1)),
        "the earlier page ends right before line {first_tail_line}"
    );
    // Pages back to the start, where line 1 shows.
    let (_, start) = page(&s, &cookie, &format!("/runs/{id}?before=1000")).await;
    assert!(start.contains("id=\"L1\"") && start.contains("line 1:"));
    // An earlier window leads back: newer lines, and the end.
    assert!(earlier.contains("id=\"newer\""), "no way to newer lines");
    assert!(earlier.contains("id=\"end\""), "no way to the end");
    assert!(!html.contains("id=\"newer\""), "the tail has nothing newer");
    let newer = earlier
        .split("id=\"newer\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let (st, newer) = page(&s, &cookie, &newer).await;
    assert_eq!(st, 200);
    assert!(
        newer.contains(&format!("id=\"L{first_tail_line}\"")),
        "newer continues"
    );
    // The window around a line far from the tail (what a `#L100` anchor loads).
    let (st, around) = page(&s, &cookie, &format!("/runs/{id}?line=100")).await;
    assert_eq!(st, 200);
    assert!(around.contains("id=\"L100\"") && around.contains("line 100:"));
    assert!(around.contains("id=\"L101\""), "lines after it show too");
    assert!(!around.contains("line 40000:"));
    assert!(around.contains("id=\"newer\""));
}

#[tokio::test]
async fn error_pages_keep_the_header_and_bad_links_are_404_pages() {
    let s = Server::start(CONFIG);
    users::add_user(&s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let html_get = |path: &str| {
        users::no_redirects()
            .get(format!("{}{path}", s.base))
            .header("cookie", &cookie)
            .header("accept", "text/html")
            .send()
    };
    for path in [
        "/no/such/page",
        "/runs/999999",
        "/runs/1/artifacts/colours/x.txt",
    ] {
        let r = html_get(path).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("404"), "{path}: {body}");
        assert!(
            body.contains("Log out") && body.contains(">root"),
            "{path} keeps the user's header: {body}"
        );
        assert!(!body.contains("Cannot parse"), "{path}: {body}");
    }
    // The favicon, also at the path browsers ask for by themselves.
    for path in ["/favicon.ico", "/static/favicon/running.svg"] {
        let r = html_get(path).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml", "{path}");
        assert!(r.text().await.unwrap().starts_with("<svg"));
    }
    assert_eq!(
        html_get("/static/favicon/nope.svg")
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn user_text_is_escaped_everywhere() {
    let s = Server::start(CONFIG);
    users::add_user(&s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let evil = "<script>alert(1)</script>";
    let id = id_of(&s.trigger("echo", &[("what", evil)]).await);
    s.wait_run(id).await;
    let (st, html) = page(&s, &cookie, &format!("/runs/{id}")).await;
    assert_eq!(st, 200);
    assert!(!html.contains(evil), "raw markup from arguments or logs");
    assert!(html.contains("&lt;script&gt;"));
    let (_, list) = page(&s, &cookie, "/runs?tag=%3Cb%3E").await;
    assert!(!list.contains("<b>"));
}

#[tokio::test]
async fn pages_api_answers_and_artifacts_carry_security_headers() {
    let s = Server::start(CONFIG);
    users::add_user(&s, "root", "pw");
    let cookie = format!("baton_session={}", users::login(&s, "root", "pw").await);
    let http = users::no_redirects();
    let get = |path: String| {
        http.get(format!("{}{path}", s.base))
            .header("cookie", &cookie)
            .send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };

    // UI pages (and the login page, before any session): only this site's files, no framing.
    for path in ["/", "/runs", "/login"] {
        let r = get(path.into()).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let csp = header(&r, "content-security-policy");
        for part in [
            "frame-ancestors 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "default-src 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP {csp:?} lacks {part}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
    }

    // An API answer is not sniffed either.
    let r = s
        .http
        .get(s.url("/tasks"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");

    // An HTML artifact is sandboxed: no script of it runs as the user.
    let run = s.trigger("html", &[]).await;
    let id = id_of(&run);
    let run = s.wait_run(id).await;
    assert_eq!(status(&run), "success");
    let job = run["jobs"][0]["id"].as_i64().unwrap();
    let r = get(format!("/runs/{id}/artifacts/{job}/page.html"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = header(&r, "content-security-policy");
    assert!(
        csp.split(';').any(|p| p.trim() == "sandbox"),
        "artifact CSP {csp:?} is no sandbox"
    );
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert!(r.text().await.unwrap().contains("<script>"));

    // The run page shows no inline style, even for true-colour output.
    let page = get(format!("/runs/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("style=\""), "{page}");
}
