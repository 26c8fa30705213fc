//! The password login under attack: a form without a token this server signed is refused before
//! any password hashing; failed logins back off per source address and per user name (clients
//! bind 127.0.0.x, which the server sees as different peers), with `429` and `Retry-After`,
//! and a correct password after the wait signs in and clears the record.

mod common;
#[path = "common/users.rs"]
mod users;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use users::*;

const CONFIG: &str = "tasks:\n  t:\n    command: 'true'\n";

/// A browser at source address `from`: it fetches the login page and posts the form back.
struct Browser<'a> {
    s: &'a Server,
    http: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn at(s: &'a Server, from: &str) -> Browser<'a> {
        let ip: IpAddr = from.parse().unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(ip)
            .build()
            .unwrap();
        Browser { s, http }
    }

    /// A fresh token from the login page (cookie and form field are the same).
    async fn token(&self) -> String {
        let page = self
            .http
            .get(format!("{}/login", self.s.base))
            .send()
            .await
            .unwrap();
        let (cookie, _) = set_cookie(&page, "baton_login_csrf").expect("login csrf cookie");
        assert_eq!(csrf_in(&page.text().await.unwrap()), cookie);
        cookie
    }

    async fn post(&self, cookie: &str, field: &str, user: &str, pw: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/login", self.s.base))
            .header("cookie", format!("baton_login_csrf={cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[
                ("csrf", field),
                ("next", "/"),
                ("user", user),
                ("password", &long(pw)),
            ]))
            .send()
            .await
            .unwrap()
    }

    /// Logs in with a fresh token; returns the status and the `Retry-After` seconds if any.
    async fn login(&self, user: &str, pw: &str) -> (u16, Option<u64>, String) {
        let t = self.token().await;
        let r = self.post(&t, &t, user, pw).await;
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (r.status().as_u16(), retry, r.text().await.unwrap())
    }
}

/// Waits out a `Retry-After` (bounded: the first backoffs are seconds).
async fn wait_out(retry: Option<u64>) {
    let secs = retry.expect("a 429 says when to retry");
    assert!((1..=10).contains(&secs), "Retry-After {secs}");
    tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_login_tokens_are_refused_before_hashing() {
    let s = Server::start(CONFIG);
    add_user(&s, "alice", "pw-alice");
    let b = Browser::at(&s, "127.0.0.1");
    let issued = b.token().await;
    // Cookie and field agree, but this server never issued them: 403, not "wrong password".
    let well_formed = format!(
        "{}.{}.{}",
        issued.split('.').next().unwrap(),
        "ab".repeat(16),
        "cd".repeat(32)
    );
    for forged in ["abc", well_formed.as_str()] {
        let r = b.post(forged, forged, "alice", "pw-alice").await;
        assert_eq!(r.status().as_u16(), 403, "forged token {forged:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains("not sent from this site"), "{page}");
    }
    // An issued token with its MAC altered is forged too; cookie and field must agree.
    let mut tampered = issued.clone();
    tampered.replace_range(0..1, if issued.starts_with('9') { "8" } else { "9" });
    let r = b.post(&tampered, &tampered, "alice", "pw-alice").await;
    assert_eq!(r.status().as_u16(), 403, "tampered expiry");
    let other = b.token().await;
    let r = b.post(&issued, &other, "alice", "pw-alice").await;
    assert_eq!(r.status().as_u16(), 403, "cookie and field differ");
    // None of that counted as a failed login, and the real token works.
    let r = b.post(&issued, &issued, "alice", "pw-alice").await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(set_cookie(&r, "baton_session").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_back_off_per_address_and_reset_on_success() {
    let s = Server::start(CONFIG);
    add_user(&s, "carol", "pw-carol");
    let b = Browser::at(&s, "127.0.0.6");
    // Three wrong passwords (under different names: it is the address that counts here).
    for name in ["x1", "x2", "x3"] {
        let (st, retry, _) = b.login(name, "guess").await;
        assert_eq!((st, retry), (401, None), "failure for {name}");
    }
    // Now even the right password must wait.
    let (st, retry, page) = b.login("carol", "pw-carol").await;
    assert_eq!(st, 429, "{page}");
    assert!(page.contains("Too many failed logins"), "{page}");
    // Another address is not affected.
    let (st, _, _) = Browser::at(&s, "127.0.0.7")
        .login("carol", "pw-carol")
        .await;
    assert_eq!(st, 303, "another address signs in");
    wait_out(retry).await;
    let (st, _, page) = b.login("carol", "pw-carol").await;
    assert_eq!(
        st, 303,
        "after the backoff the right password works: {page}"
    );
    // The success cleared the address's record: a wrong password is a plain 401 again, twice.
    for _ in 0..2 {
        let (st, retry, _) = b.login("x1", "guess").await;
        assert_eq!((st, retry), (401, None));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_back_off_per_user_name_across_addresses() {
    let s = Server::start(CONFIG);
    add_user(&s, "dave", "pw-dave");
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let (st, _, _) = Browser::at(&s, from).login("dave", "guess").await;
        assert_eq!(st, 401, "from {from}");
    }
    // A fresh address: dave must wait, anyone else may try.
    let b = Browser::at(&s, "127.0.0.5");
    let (st, retry, page) = b.login("dave", "pw-dave").await;
    assert_eq!(st, 429, "{page}");
    let (st, _, _) = b.login("erin", "guess").await;
    assert_eq!(st, 401, "another name from the same fresh address");
    wait_out(retry).await;
    let (st, _, _) = b.login("dave", "pw-dave").await;
    assert_eq!(st, 303);
}
