//! The real browser the browser tests drive: Debian's `chromium`, headless, through
//! `chromedriver` with fantoccini, and the helpers they share (log in, wait for text or a
//! script's answer, click a live page, screenshots at desktop and phone widths under
//! `target/screenshots/`). Included with `#[path]` next to `common`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::{Server, WAIT, processes_under};
use crate::users::long;

/// chromedriver and every Chromium process it starts. Dropping it (also when a test panics)
/// kills them all: chromedriver leads its own process group, and Chromium's helpers are found
/// by the profile folder that only this browser uses.
pub struct Driver {
    child: Child,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: plain signal calls on a process group and pids we started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        for pid in processes_under(self.profile.path()) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

pub fn need(cmd: &str, pkg: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = PathBuf::from(dir).join(cmd);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{cmd}` not found: the browser tests need Debian's {pkg} (hint: apt-get install chromium chromium-driver, or run scripts/test.sh)"
    );
}

pub async fn browser() -> (Driver, Client) {
    browser_with(&[]).await
}

/// A browser whose pages see a dark system colour scheme.
pub async fn dark_browser() -> (Driver, Client) {
    browser_with(&[
        "--force-dark-mode",
        "--blink-settings=preferredColorScheme=0",
    ])
    .await
}

pub async fn browser_with(extra: &[&str]) -> (Driver, Client) {
    let chromium = need("chromium", "chromium");
    let driver = need("chromedriver", "chromium-driver");
    // Port 0: chromedriver binds a free port itself and names it when it is ready.
    let mut child = Command::new(driver)
        .arg("--port=0")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("chromedriver's stdout");
    let d = Driver {
        child,
        profile: tempfile::tempdir().expect("a profile folder for chromium"),
    };
    let port = ready_port(stdout);
    let user_data_dir = format!("--user-data-dir={}", d.profile.path().display());
    let mut args = vec![
        user_data_dir.as_str(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
    ];
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": args }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match c {
            Ok(c) => return (d, c),
            Err(e) if Instant::now() > deadline => panic!("cannot start a chromium session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads chromedriver's output until its ready line ("... started successfully on port N.")
/// and returns N; keeps draining the output afterwards.
pub fn ready_port(stdout: std::process::ChildStdout) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let port = line
                .split_once("started successfully on port ")
                .and_then(|(_, p)| p.trim_end_matches('.').trim().parse::<u16>().ok());
            if let Some(p) = port
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(p);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("chromedriver did not say it was ready (its port) within 30 s")
}

pub fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the current page at desktop and phone widths.
pub async fn shoot(c: &Client, name: &str) {
    for (w, h, tag) in [(1400, 900, "desktop"), (390, 844, "phone")] {
        c.set_window_size(w, h).await.unwrap();
        laid_out_at(c, w).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots_dir().join(format!("{name}-{tag}.png")), png).unwrap();
    }
    c.set_window_size(1280, 900).await.unwrap();
}

/// Waits until the page is laid out at width `w` and a frame at that size has been painted.
pub async fn laid_out_at(c: &Client, w: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        // Resolves after two animation frames: the next frame after any pending layout.
        let width = c
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 requestAnimationFrame(() => requestAnimationFrame(() => done(window.innerWidth)));",
                vec![],
            )
            .await
            .unwrap();
        if width == json!(w) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the window was resized to {w} px but the page is {width} px wide"
        );
    }
}

/// Waits until the page's change feed (`/api/v1/events`) is connected, so that a change made
/// from now on reaches it.
pub async fn wait_change_feed(c: &Client) {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = c
            .execute("return document.body.dataset.changes || ''", vec![])
            .await
            .unwrap();
        if state == json!("open") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page's change feed did not connect within {WAIT:?} (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The network error Chromium shows instead of the page (`ERR_…`, from its error page), if it
/// does.
pub async fn browser_error(c: &Client) -> Option<String> {
    let url = c.current_url().await.ok()?;
    if url.scheme() != "chrome-error" {
        return None;
    }
    let text = c
        .execute(
            "return document.body ? document.body.innerText : ''",
            vec![],
        )
        .await
        .ok()?;
    let text = text.as_str().unwrap_or_default();
    Some(
        text.split_whitespace()
            .find(|w| w.starts_with("ERR_"))
            .unwrap_or("a network error (no ERR_ code on its page)")
            .to_owned(),
    )
}

/// Opens `url`. Chromium fails a navigation in flight with `ERR_NETWORK_CHANGED` whenever the
/// host's network interfaces change (containers, network namespaces and veth pairs of other
/// tests on the machine come and go), and then shows its error page instead: the request never
/// got an answer from the server, so it is made again. Any other error fails the test, naming it.
pub async fn goto(c: &Client, url: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        c.goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        match browser_error(c).await {
            None => return,
            Some(e) if e == "ERR_NETWORK_CHANGED" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(e) => panic!("Chromium could not open {url}: {e}"),
        }
    }
}

/// Fails at once, naming the error, when Chromium shows its network error page (a wait for
/// text or a script's answer would only time out).
async fn no_browser_error(c: &Client, waiting_for: &str) {
    if let Some(e) = browser_error(c).await {
        let url = c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        panic!("Chromium shows its error page ({e}, at {url}) while waiting for {waiting_for}");
    }
}

pub async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the element matching `css` contains `want`.
pub async fn wait_text(c: &Client, css: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = text_of(c, css).await;
        if t.contains(want) {
            return;
        }
        no_browser_error(c, &format!("{css} to show {want:?}")).await;
        if Instant::now() > deadline {
            panic!(
                "{css} never showed {want:?}; it shows {t:?}\npage: {}",
                c.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn login(c: &Client, s: &Server, user: &str) {
    goto(c, &format!("{}/login", s.base)).await;
    c.find(Locator::Css("#user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(&long(&format!("pw-{user}")))
        .await
        .unwrap();
    c.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "header nav", user).await;
}

/// Clicks the element matching `css`. A live page may redraw it between finding and clicking
/// (its summary refreshes as the run changes): then the new one is clicked.
pub async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match e.click().await {
            Ok(_) => return,
            Err(err)
                if Instant::now() < deadline && format!("{err:?}").contains("StaleElement") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("cannot click {css}: {err}"),
        }
    }
}

pub async fn run_id_from_url(c: &Client) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let url = c.current_url().await.unwrap();
        if let Some(id) = url
            .path()
            .strip_prefix("/runs/")
            .and_then(|p| p.parse().ok())
        {
            return id;
        }
        assert!(Instant::now() < deadline, "never reached a run page: {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The elements of the page that reach past the viewport's edges (outside the scroll boxes
/// meant to scroll: the DAG and logs), as "tag#id.class left–right".
pub async fn overflowing(c: &Client) -> Vec<String> {
    let found = c
        .execute(
            "var w = document.documentElement.clientWidth, bad = [];\
             if (document.documentElement.scrollWidth > w) bad.push('page scrolls sideways: ' + document.documentElement.scrollWidth);\
             document.querySelectorAll('body *').forEach(function (e) {\
               if (e.parentElement.closest('.dag, pre') ) return;\
               var r = e.getBoundingClientRect();\
               if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5))\
                 bad.push(e.tagName + '#' + e.id + '.' + e.getAttribute('class') + ' ' + Math.round(r.left) + '-' + Math.round(r.right));\
             });\
             return bad;",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Waits until the script `js` (an expression) is true in the page.
pub async fn wait_js(c: &Client, js: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c
            .execute(&format!("return !!({js})"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        no_browser_error(c, js).await;
        if Instant::now() > deadline {
            panic!(
                "never true: {js}\npage: {}",
                c.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
