//! Users, tokens and browser-style sessions for the access and browser tests. Included with
//! `#[path]` next to `common`, so the shared harness stays untouched.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::{BIN, Server};

/// The password the tests really use for `short`: `baton user add` refuses passwords under 12
/// characters, so every helper that sets or types a password lengthens it the same way.
pub fn long(short: &str) -> String {
    format!("{short}-long-enough")
}

/// Adds a user through the CLI (`baton user add NAME --password-stdin`), with password
/// [`long`]`(password)`.
pub fn add_user(s: &Server, name: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--password-stdin"])
        .args(s.data_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run baton user add");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", long(password)).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "baton user add {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token that belongs to `user` (`baton token create --user`).
pub fn user_token(s: &Server, user: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--name", "test", "--user", user])
        .args(s.data_args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token create --user {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The first `name="csrf" value="…"` in a page.
pub fn csrf_in(html: &str) -> String {
    let i = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in page:\n{html}"));
    let rest = &html[i + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The value of cookie `name` among the response's Set-Cookie headers, with the whole header.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, v.to_owned())
        })
}

/// A client that does not follow redirects (to see them).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in through the login form like a browser; returns the session cookie value.
pub async fn login(s: &Server, user: &str, password: &str) -> String {
    let http = no_redirects();
    let page = http.get(format!("{}/login", s.base)).send().await.unwrap();
    let (login_csrf, _) = set_cookie(&page, "baton_login_csrf").expect("login csrf cookie");
    let html = page.text().await.unwrap();
    let csrf = csrf_in(&html);
    assert_eq!(csrf, login_csrf);
    let resp = http
        .post(format!("{}/login", s.base))
        .header("cookie", format!("baton_login_csrf={login_csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&[
            ("csrf", &csrf),
            ("next", "/"),
            ("user", user),
            ("password", &long(password)),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "login as {user}");
    set_cookie(&resp, "baton_session")
        .expect("session cookie")
        .0
}

/// Requests to the API as the holder of `token`.
pub struct As<'a> {
    pub s: &'a Server,
    pub token: String,
}

impl As<'_> {
    /// Requests as user `name`, with a token made for them.
    pub fn user<'s>(s: &'s Server, name: &str) -> As<'s> {
        As {
            s,
            token: user_token(s, name),
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .s
            .http
            .request(method.parse().unwrap(), self.s.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let st = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req("GET", path, None).await
    }
    pub async fn post(&self, path: &str) -> (u16, Value) {
        self.req("POST", path, Some(json!({}))).await
    }
}

/// A page's HTML as the holder of session `cookie` sees it (redirects not followed).
pub async fn page(s: &Server, cookie: &str, path: &str) -> String {
    no_redirects()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
