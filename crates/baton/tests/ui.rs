//! The UI's HTML over HTTP (no browser): big logs show only their tail with absolute line
//! numbers and page backwards by byte offset; user text is escaped.

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
    let marker = "&before=";
    let i = html.find(marker).expect("a load-earlier link");
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
