//! Single sign-on end to end: the real `baton` binary against in-process stand-ins for an
//! OpenID Connect provider and GitHub's OAuth App flow (`common/idp.rs`), which check every
//! request against the protocol and record what does not fit.
//!
//! The browser is played by hand: a client that follows no redirects, carries Baton's cookies
//! itself and walks Baton → provider → Baton's callback.

mod common;
#[path = "common/users.rs"]
mod users;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::idp::{
    Github, GithubMode, GithubUser, Oidc, OidcMode, OidcUser, form_pairs, form_urlencode, s256,
};
use common::*;
use serde_json::Value;

const CLIENT_ID: &str = "baton-ci";
/// Characters that HTTP Basic client authentication must form-urlencode (RFC 6749 §2.3.1).
const SECRET: &str = "s3cret+/:%x";
const GH_ID: &str = "gh-client";
const GH_SECRET: &str = "gh-secret";

fn alice() -> OidcUser {
    OidcUser::new("alice-sub-1", "alice@example.com", "alice")
}

fn bob() -> OidcUser {
    OidcUser::new("bob-sub-2", "bob@example.com", "bob")
}

fn octocat() -> GithubUser {
    GithubUser {
        login: "octocat".into(),
        id: 583231,
        name: "The Octocat".into(),
    }
}

fn oidc_provider(name: &str, idp: &Oidc, label: &str) -> String {
    format!(
        "    {name}:
      kind: oidc
      issuer: {}
      client_id: {CLIENT_ID}
      client_secret: \"{SECRET}\"
      label: {label}
      user_claim: email
",
        idp.issuer
    )
}

fn github_provider(gh: &Github) -> String {
    format!(
        "    gh:
      kind: github
      client_id: {GH_ID}
      client_secret: {GH_SECRET}
      label: GitHub
      url: {}
      api_url: {}
",
        gh.url, gh.api_url
    )
}

fn config(providers: &[String]) -> String {
    format!(
        "server:
  auth:
{}administrators: [root]
tasks:
  visible: {{command: \"true\", authorized_users: [alice@example.com, bob@example.com, octocat]}}
  hidden: {{command: \"true\"}}
",
        providers.concat()
    )
}

/// The redirect URI Baton must register for `provider` (no `public_url`: its listen address).
fn callback(s: &Server, provider: &str) -> String {
    format!("{}/auth/{provider}/callback", s.base)
}

/// One HTTP answer, read whole.
struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    /// `(value, whole header)` of the Set-Cookie for `name`.
    fn set_cookie(&self, name: &str) -> Option<(String, String)> {
        self.set_cookies
            .iter()
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| {
                let value = v[name.len() + 1..].split(';').next().unwrap().to_owned();
                (value, v.clone())
            })
    }

    /// A session cookie that was actually handed out (not one being cleared).
    fn session(&self) -> Option<String> {
        self.set_cookie("baton_session")
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty())
    }

    /// The text of `<p class="error" role="alert">…</p>`.
    fn error_text(&self) -> Option<String> {
        let open = "<p class=\"error\" role=\"alert\">";
        let i = self.body.find(open)? + open.len();
        let end = self.body[i..].find("</p>")?;
        Some(html_unescape(&self.body[i..i + end]))
    }
}

fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Has the attribute (`HttpOnly`, `SameSite=Lax`, `Path=/`) in a Set-Cookie header.
fn cookie_has(header: &str, attr: &str) -> bool {
    header
        .split(';')
        .skip(1)
        .any(|a| a.trim().eq_ignore_ascii_case(attr))
}

/// A browser: Baton's cookies in a jar, redirects followed by the test.
struct Browser<'a> {
    s: &'a Server,
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(s: &'a Server) -> Browser<'a> {
        Browser {
            s,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// GET `url` (a path means Baton); Baton's cookies go along and come back into the jar.
    async fn get(&mut self, url: &str) -> Page {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.s.base)
        } else {
            url.to_owned()
        };
        let ours = url.starts_with(&format!("{}/", self.s.base));
        let mut r = self.http.get(&url);
        if ours && !self.jar.is_empty() {
            r = r.header("cookie", self.cookie_header());
        }
        let resp = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.s.stderr()));
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body = resp.text().await.unwrap_or_default();
        if ours {
            for c in &set_cookies {
                let (pair, _) = c.split_once(';').unwrap_or((c, ""));
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let gone = v.is_empty() || cookie_has(c, "Max-Age=0");
                if gone {
                    self.jar.remove(k.trim());
                } else {
                    self.jar.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        Page {
            status,
            location,
            set_cookies,
            body,
        }
    }

    /// GET `path` on Baton (e.g. `/auth/corp?next=…`): a 303 to `authorize_endpoint` with the
    /// `baton_sso` cookie. Returns the full authorization URL.
    async fn begin_at(&mut self, path: &str, authorize_endpoint: &str) -> String {
        let p = self.get(path).await;
        assert_eq!(
            p.status,
            303,
            "GET {path} must redirect to the provider; body: {}\n{}",
            p.body,
            self.s.stderr()
        );
        let loc = p.location.clone().expect("a Location");
        assert!(
            loc.starts_with(&format!("{authorize_endpoint}?")),
            "GET {path} redirected to {loc:?}, not to {authorize_endpoint}"
        );
        let (value, header) = p
            .set_cookie("baton_sso")
            .unwrap_or_else(|| panic!("GET {path} set no baton_sso cookie: {:?}", p.set_cookies));
        assert!(!value.is_empty(), "{header}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(
                cookie_has(&header, attr),
                "baton_sso lacks {attr}: {header}"
            );
        }
        loc
    }

    async fn begin(&mut self, provider: &str, next: Option<&str>, authorize: &str) -> String {
        let path = match next {
            Some(n) => format!("/auth/{provider}?next={}", form_urlencode(n)),
            None => format!("/auth/{provider}"),
        };
        self.begin_at(&path, authorize).await
    }

    /// Follows the authorization URL at the stand-in, which must send the browser back to
    /// `callback` (302); returns that URL.
    async fn at_provider(&mut self, url: &str, callback: &str, report: &str) -> String {
        let p = self.get(url).await;
        assert_eq!(
            p.status, 302,
            "the provider refused {url}: {}\n{report}",
            p.body
        );
        let loc = p.location.expect("a Location");
        assert!(
            loc.starts_with(&format!("{callback}?")),
            "the provider sent the browser to {loc:?}, not to {callback}"
        );
        loc
    }

    /// begin → provider → callback; returns the callback URL and Baton's answer to it.
    async fn oidc_login(
        &mut self,
        idp: &Oidc,
        provider: &str,
        next: Option<&str>,
    ) -> (String, Page) {
        let authorize = self
            .begin(provider, next, &format!("{}/authorize", idp.issuer))
            .await;
        let cb = self
            .at_provider(&authorize, &callback(self.s, provider), &idp.report())
            .await;
        let page = self.get(&cb).await;
        (cb, page)
    }

    async fn github_login(&mut self, gh: &Github, next: Option<&str>) -> (String, Page) {
        let authorize = self
            .begin("gh", next, &format!("{}/login/oauth/authorize", gh.url))
            .await;
        let cb = self
            .at_provider(&authorize, &callback(self.s, "gh"), &gh.report())
            .await;
        let page = self.get(&cb).await;
        (cb, page)
    }
}

/// A successful callback: 303 to `next` with a session cookie; returns the session.
fn signed_in(s: &Server, page: &Page, next: &str, report: &str) -> String {
    assert_eq!(
        page.status,
        303,
        "the callback must sign in; error: {:?}\nbody: {}\n{report}\n{}",
        page.error_text(),
        page.body,
        s.stderr()
    );
    let loc = page.location.clone().expect("a Location");
    assert_eq!(
        loc.strip_prefix(&s.base).unwrap_or(&loc),
        next,
        "the callback must return to next"
    );
    let (session, header) = page
        .set_cookie("baton_session")
        .expect("a baton_session cookie");
    assert!(!session.is_empty(), "{header}");
    for attr in ["HttpOnly", "SameSite=Lax"] {
        assert!(
            cookie_has(&header, attr),
            "session cookie lacks {attr}: {header}"
        );
    }
    session
}

/// A refused callback: `status`, the login page with an error, no session.
fn refused(s: &Server, page: &Page, status: u16, what: &str, report: &str) -> String {
    assert_eq!(
        page.status,
        status,
        "{what}: expected {status}; Location {:?}, body: {}\n{report}\n{}",
        page.location,
        page.body,
        s.stderr()
    );
    assert!(
        page.session().is_none(),
        "{what}: a session cookie was set: {:?}",
        page.set_cookies
    );
    page.error_text().unwrap_or_else(|| {
        panic!(
            "{what}: no <p class=\"error\" role=\"alert\"> in:\n{}",
            page.body
        )
    })
}

/// The `<a class="sso" id="sso-NAME">` link of the login page: (href, label), unescaped.
fn sso_link(html: &str, name: &str) -> (String, String) {
    let id = format!("id=\"sso-{name}\"");
    let i = html
        .find(&id)
        .unwrap_or_else(|| panic!("no {id} on the login page:\n{html}"));
    let start = html[..i].rfind("<a ").expect("the id is on an <a> tag");
    let end = i + html[i..].find('>').unwrap();
    let tag = &html[start..end];
    assert!(tag.contains("class=\"sso"), "not class sso: {tag}");
    let h = tag.find("href=\"").expect("an href") + 6;
    let href = &tag[h..h + tag[h..].find('"').unwrap()];
    let close = end + 1 + html[end + 1..].find("</a>").unwrap();
    (
        html_unescape(href),
        html_unescape(html[end + 1..close].trim()),
    )
}

/// A link's path and its decoded `next` parameter.
fn path_and_next(href: &str) -> (String, Option<String>) {
    match href.split_once('?') {
        None => (href.to_owned(), None),
        Some((path, q)) => {
            let next = form_pairs(q)
                .into_iter()
                .find(|(k, _)| k == "next")
                .map(|(_, v)| v);
            (path.to_owned(), next)
        }
    }
}

fn cookie(session: &str) -> String {
    format!("baton_session={session}")
}

/// Task names the session's user sees through the API.
async fn tasks_as(s: &Server, session: &str) -> Vec<String> {
    let r = s
        .http
        .get(s.url("/tasks"))
        .header("cookie", cookie(session))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "GET /api/v1/tasks with the session"
    );
    let v: Value = r.json().await.unwrap();
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The dashboard with the session: (the user named in the navigation, the CSRF secret).
async fn dashboard(s: &Server, session: &str) -> (String, String) {
    let r = s
        .http
        .get(format!("{}/", s.base))
        .header("cookie", cookie(session))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the dashboard with the session");
    let html = r.text().await.unwrap();
    let i = html
        .find("<a href=\"/me\">")
        .unwrap_or_else(|| panic!("no user in the navigation:\n{html}"))
        + "<a href=\"/me\">".len();
    let user = html[i..i + html[i..].find('<').unwrap()]
        .trim_end_matches(" (admin)")
        .to_owned();
    (html_unescape(&user), users::csrf_in(&html))
}

async fn trigger_as(s: &Server, session: &str, csrf: &str, task: &str) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(&format!("/tasks/{task}/trigger")))
        .header("cookie", cookie(session))
        .header("x-csrf-token", csrf)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Whether Baton has a user named `name` (`baton token create --user` refuses unknown users).
fn user_exists(s: &Server, name: &str) -> bool {
    Command::new(BIN)
        .args(["token", "create", "--name", "probe", "--user", name])
        .args(s.data_args())
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn oidc_login_creates_the_user_and_its_session_works() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let gh = Github::start(GH_ID, GH_SECRET, octocat());
    let s = Server::start(&config(&[
        oidc_provider("corp", &idp, "Corp SSO"),
        github_provider(&gh),
    ]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    gh.expect_redirect_uri(&callback(&s, "gh"));
    let mut b = Browser::new(&s);

    // The login page offers both providers, passing `next` on (and no `next` for `/`).
    let page = b.get("/login?next=%2Fruns").await;
    assert_eq!(page.status, 200);
    let (href, label) = sso_link(&page.body, "corp");
    assert_eq!(label, "Corp SSO");
    assert_eq!(
        path_and_next(&href),
        ("/auth/corp".into(), Some("/runs".into())),
        "{href}"
    );
    let (gh_href, gh_label) = sso_link(&page.body, "gh");
    assert_eq!(gh_label, "GitHub");
    assert_eq!(
        path_and_next(&gh_href),
        ("/auth/gh".into(), Some("/runs".into())),
        "{gh_href}"
    );
    let plain = b.get("/login").await;
    assert_eq!(sso_link(&plain.body, "corp").0, "/auth/corp");
    assert_eq!(sso_link(&plain.body, "gh").0, "/auth/gh");
    assert_eq!(b.get("/auth/nosuch").await.status, 404);
    assert!(!user_exists(&s, "alice@example.com"));

    // The whole flow, from the login page's link.
    let authorize = b
        .begin_at(&href, &format!("{}/authorize", idp.issuer))
        .await;
    let cb = b
        .at_provider(&authorize, &callback(&s, "corp"), &idp.report())
        .await;
    let page = b.get(&cb).await;
    let session = signed_in(&s, &page, "/runs", &idp.report());
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
    assert_eq!(idp.count("authorize"), 1);
    assert_eq!(idp.count("token"), 1);
    assert!(idp.count("discovery") >= 1 && idp.count("jwks") >= 1);

    // The session works like a password login, as the user the provider named.
    let runs = b.get("/runs").await;
    assert_eq!(
        runs.status, 200,
        "/runs with the session: {:?}",
        runs.location
    );
    let (user, csrf) = dashboard(&s, &session).await;
    assert_eq!(user, "alice@example.com");
    assert_eq!(tasks_as(&s, &session).await, ["visible"]);
    let (st, v) = trigger_as(&s, &session, &csrf, "hidden").await;
    assert_eq!(st, 404, "{v}");
    let (st, run) = trigger_as(&s, &session, &csrf, "visible").await;
    assert_eq!(st, 201, "{run}");
    s.wait_run(id_of(&run)).await;
    assert!(user_exists(&s, "alice@example.com"));
    let token = users::user_token(&s, "alice@example.com");
    let r = s
        .http
        .get(s.url("/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1, "{v}");

    // A second sign-in by the same identity is the same user (no conflict with itself).
    let mut b2 = Browser::new(&s);
    let (_, page) = b2.oidc_login(&idp, "corp", None).await;
    let session2 = signed_in(&s, &page, "/", &idp.report());
    assert_ne!(session, session2);
    assert_eq!(dashboard(&s, &session2).await.0, "alice@example.com");
    assert_eq!(
        tasks_as(&s, &session).await,
        ["visible"],
        "the first session lives on"
    );
    assert_eq!(idp.count("token"), 2);
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
    assert_eq!(gh.count("authorize") + gh.count("access_token"), 0);
}

#[tokio::test]
async fn id_tokens_that_fail_verification_are_refused() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let s = Server::start(&config(&[oidc_provider("corp", &idp, "Corp SSO")]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    for mode in [
        OidcMode::BadSignature,
        OidcMode::WrongNonce,
        OidcMode::WrongAudience,
        OidcMode::Expired,
        OidcMode::EmailUnverified,
    ] {
        idp.set_mode(mode);
        let before = idp.count("token");
        let mut b = Browser::new(&s);
        let (_, page) = b.oidc_login(&idp, "corp", Some("/runs")).await;
        refused(&s, &page, 401, &format!("{mode:?}"), &idp.report());
        assert_eq!(
            idp.count("token"),
            before + 1,
            "{mode:?}: the code was redeemed"
        );
        assert!(
            !user_exists(&s, "alice@example.com"),
            "{mode:?}: no user may be made from a refused token"
        );
    }
    // The same flow with a good token signs in: the refusals were the tokens' doing.
    idp.set_mode(OidcMode::Normal);
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", Some("/runs")).await;
    signed_in(&s, &page, "/runs", &idp.report());
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
}

#[tokio::test]
async fn state_is_checked_before_the_code_is_redeemed() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let s = Server::start(&config(&[oidc_provider("corp", &idp, "Corp SSO")]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    let authorize_endpoint = format!("{}/authorize", idp.issuer);

    let mut b = Browser::new(&s);
    let authorize = b.begin("corp", Some("/runs"), &authorize_endpoint).await;
    let cb = b
        .at_provider(&authorize, &callback(&s, "corp"), &idp.report())
        .await;
    let pairs = form_pairs(cb.split_once('?').unwrap().1);
    let code = &pairs.iter().find(|(k, _)| k == "code").unwrap().1;
    let state = &pairs.iter().find(|(k, _)| k == "state").unwrap().1;
    let base = callback(&s, "corp");
    let with = |code: &str, state: Option<&str>| match state {
        Some(st) => format!(
            "{base}?code={}&state={}",
            form_urlencode(code),
            form_urlencode(st)
        ),
        None => format!("{base}?code={}", form_urlencode(code)),
    };

    // The cookie, with another state.
    let saved = b.jar.clone();
    let page = b.get(&with(code, Some(&format!("{state}x")))).await;
    refused(
        &s,
        &page,
        400,
        "a state other than the cookie's",
        &idp.report(),
    );
    b.jar = saved.clone();
    let page = b.get(&with(code, Some("forged"))).await;
    refused(&s, &page, 400, "a forged state", &idp.report());
    b.jar = saved.clone();
    let page = b.get(&with(code, None)).await;
    refused(&s, &page, 400, "no state", &idp.report());
    // The right state without the cookie (another browser, e.g. a victim of login CSRF).
    let mut other = Browser::new(&s);
    let page = other.get(&cb).await;
    refused(&s, &page, 400, "no baton_sso cookie", &idp.report());
    // The right state with the cookie of another sign-in.
    let mut third = Browser::new(&s);
    third.begin("corp", None, &authorize_endpoint).await;
    let page = third.get(&cb).await;
    refused(&s, &page, 400, "another sign-in's cookie", &idp.report());
    assert_eq!(
        idp.count("token"),
        0,
        "a refused state must never reach the token endpoint\n{}",
        idp.report()
    );

    // A good sign-in, then its callback URL replayed (with the cookie it had): refused, and
    // the code is not redeemed again.
    let mut c = Browser::new(&s);
    let authorize = c.begin("corp", Some("/runs"), &authorize_endpoint).await;
    let cb = c
        .at_provider(&authorize, &callback(&s, "corp"), &idp.report())
        .await;
    let before_callback = c.jar.clone();
    let page = c.get(&cb).await;
    signed_in(&s, &page, "/runs", &idp.report());
    assert_eq!(idp.count("token"), 1);
    let page = c.get(&cb).await;
    refused(&s, &page, 400, "a replayed callback", &idp.report());
    c.jar = before_callback;
    let page = c.get(&cb).await;
    refused(
        &s,
        &page,
        400,
        "a replayed callback with the original cookie",
        &idp.report(),
    );
    assert_eq!(idp.count("token"), 1, "{}", idp.report());
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
}

#[tokio::test]
async fn provider_errors_are_shown_on_the_login_page() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let gh = Github::start(GH_ID, GH_SECRET, octocat());
    let s = Server::start(&config(&[
        oidc_provider("corp", &idp, "Corp SSO"),
        github_provider(&gh),
    ]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    gh.expect_redirect_uri(&callback(&s, "gh"));

    idp.set_mode(OidcMode::Deny);
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", Some("/runs")).await;
    let msg = refused(&s, &page, 401, "error=access_denied", &idp.report());
    assert!(
        msg.contains("Corp SSO") || msg.contains("corp"),
        "the message must name the provider: {msg:?}"
    );
    assert!(
        msg.contains("access_denied"),
        "the message must name the error: {msg:?}"
    );
    assert_eq!(idp.count("token"), 0);
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());

    gh.set_mode(GithubMode::Deny);
    let mut b = Browser::new(&s);
    let (_, page) = b.github_login(&gh, None).await;
    let msg = refused(&s, &page, 401, "GitHub error=access_denied", &gh.report());
    assert!(
        msg.contains("GitHub") || msg.contains("gh"),
        "the message must name the provider: {msg:?}"
    );
    assert!(msg.contains("access_denied"), "{msg:?}");
    assert_eq!(gh.count("access_token"), 0);

    // GitHub refuses an expired code with HTTP 200 and an OAuth error body: a refusal (401)
    // that names the error, not a broken answer.
    gh.set_mode(GithubMode::ExpiredCode);
    let mut b = Browser::new(&s);
    let (_, page) = b.github_login(&gh, None).await;
    let msg = refused(&s, &page, 401, "GitHub bad_verification_code", &gh.report());
    assert!(
        msg.contains("GitHub did not accept the sign-in code: bad_verification_code (The code passed is incorrect or expired.)"),
        "{msg:?}"
    );
    assert_eq!(gh.count("access_token"), 1);
    assert_eq!(gh.count("user"), 0);
    assert_eq!(gh.violations(), Vec::<String>::new(), "{}", gh.report());
}

#[tokio::test]
async fn sso_names_that_belong_to_someone_else_are_refused() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let idp2 = Oidc::start(CLIENT_ID, SECRET, bob());
    let s = Server::start(&config(&[
        oidc_provider("corp", &idp, "Corp SSO"),
        oidc_provider("corp2", &idp2, "Partner SSO"),
    ]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    idp2.expect_redirect_uri(&callback(&s, "corp2"));

    // A password user already has the name.
    users::add_user(&s, "alice@example.com", "pw-alice");
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    refused(&s, &page, 409, "name of a password user", &idp.report());
    // That user is untouched: the password still signs in, as before.
    let session = users::login(&s, "alice@example.com", "pw-alice").await;
    assert_eq!(dashboard(&s, &session).await.0, "alice@example.com");

    // A user of another provider has the name.
    idp.set_user(bob());
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    let bob_session = signed_in(&s, &page, "/", &idp.report());
    assert_eq!(dashboard(&s, &bob_session).await.0, "bob@example.com");
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp2, "corp2", None).await;
    refused(
        &s,
        &page,
        409,
        "name of another provider's user",
        &idp2.report(),
    );
    // Its own provider still signs bob in.
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    signed_in(&s, &page, "/", &idp.report());

    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
    assert_eq!(idp2.violations(), Vec::<String>::new(), "{}", idp2.report());
}

#[tokio::test]
async fn github_login_names_the_user_by_login() {
    let gh = Github::start(GH_ID, GH_SECRET, octocat());
    let s = Server::start(&config(&[github_provider(&gh)]));
    gh.expect_redirect_uri(&callback(&s, "gh"));

    let mut b = Browser::new(&s);
    let (_, page) = b.github_login(&gh, Some("/runs")).await;
    let session = signed_in(&s, &page, "/runs", &gh.report());
    assert_eq!(gh.violations(), Vec::<String>::new(), "{}", gh.report());
    assert_eq!(gh.count("access_token"), 1);
    assert!(gh.count("user") >= 1);

    let (user, csrf) = dashboard(&s, &session).await;
    assert_eq!(user, "octocat");
    assert!(user_exists(&s, "octocat"));
    assert_eq!(tasks_as(&s, &session).await, ["visible"]);
    assert_eq!(trigger_as(&s, &session, &csrf, "hidden").await.0, 404);

    // Again: the same user.
    let mut b = Browser::new(&s);
    let (_, page) = b.github_login(&gh, None).await;
    let session2 = signed_in(&s, &page, "/", &gh.report());
    assert_eq!(dashboard(&s, &session2).await.0, "octocat");
    assert_eq!(gh.count("access_token"), 2);
    assert_eq!(gh.violations(), Vec::<String>::new(), "{}", gh.report());
}

#[tokio::test]
async fn unreachable_providers_are_a_502() {
    let mut idp = Oidc::start(CLIENT_ID, SECRET, alice());
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Server::start(&config(&[
        oidc_provider("corp", &idp, "Corp SSO"),
        format!(
            "    down:
      issuer: http://127.0.0.1:{dead}
      client_id: {CLIENT_ID}
      client_secret: x
"
        ),
    ]));
    idp.expect_redirect_uri(&callback(&s, "corp"));

    // Discovery fails.
    let mut b = Browser::new(&s);
    let page = b.get("/auth/down?next=%2Fruns").await;
    refused(&s, &page, 502, "an issuer that does not answer", "");

    // The provider goes away between the authorization and the callback.
    let mut b = Browser::new(&s);
    let authorize = b
        .begin("corp", Some("/runs"), &format!("{}/authorize", idp.issuer))
        .await;
    let cb = b
        .at_provider(&authorize, &callback(&s, "corp"), &idp.report())
        .await;
    idp.stop();
    let page = b.get(&cb).await;
    refused(
        &s,
        &page,
        502,
        "a token endpoint that does not answer",
        &idp.report(),
    );
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
}

/// (line, column) of the only occurrence of `needle` in `text`, both from 1.
fn place(text: &str, needle: &str) -> (usize, usize) {
    assert_eq!(text.matches(needle).count(), 1, "{needle:?} must be unique");
    let i = text.find(needle).unwrap();
    let line = text[..i].matches('\n').count() + 1;
    let col = text[..i].rsplit('\n').next().unwrap().chars().count() + 1;
    (line, col)
}

#[test]
fn validate_reports_bad_auth_settings_at_their_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = "\
server:
  auth:
    saml-corp:
      kind: saml
      client_id: x
      client_secret: y
    noid:
      issuer: https://idp.example.com
      client_secret: y
    plain:
      issuer: http://idp.example.com
      client_id: x
      client_secret: y
    badclaim:
      issuer: https://idp2.example.com
      client_id: x
      client_secret: y
      user_claim: phone
    Bad_Name:
      issuer: https://idp3.example.com
      client_id: x
      client_secret: y
tasks:
  t:
    command: \"true\"
";
    std::fs::write(dir.join("baton.yaml"), yaml).unwrap();
    // (where, a piece of the message)
    let expect = [
        (place(yaml, "saml\n"), "saml"),
        // A missing key is reported at the provider's name.
        (place(yaml, "noid:"), "client_id"),
        (
            place(yaml, "http://idp.example.com"),
            "http://idp.example.com",
        ),
        (place(yaml, "phone"), "phone"),
        (place(yaml, "Bad_Name:"), "Bad_Name"),
    ];
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "validate must exit 1:\n{stderr}"
    );
    let file = dir.join("baton.yaml").display().to_string();
    let diags: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    for ((line, col), piece) in expect {
        let prefix = format!("{file}:{line}:{col}: ");
        assert!(
            diags
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(piece)),
            "expected `{prefix}…{piece}…`; got:\n{stderr}"
        );
    }
    assert_eq!(
        diags.len(),
        expect.len(),
        "one diagnostic per error:\n{stderr}"
    );

    // The documented example validates.
    let good = "\
server:
  auth:
    corp:
      kind: oidc
      issuer: http://127.0.0.1:9
      client_id: baton-ci
      client_secret: s3cret
      label: Corp SSO
      user_claim: email
    gh:
      kind: github
      client_id: gh-client
      client_secret: gh-secret
      url: http://127.0.0.1:9
      api_url: http://127.0.0.1:9/api
administrators: [root]
tasks:
  visible: {command: \"true\", authorized_users: [alice@example.com]}
  hidden: {command: \"true\"}
";
    std::fs::write(dir.join("baton.yaml"), good).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the example must validate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stand-ins are strict, so their empty `violations` above mean something: requests the
/// protocols forbid are refused and recorded, and their ID tokens verify against their JWKS.
#[tokio::test]
async fn stand_ins_refuse_what_the_protocols_forbid() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let cb = "http://127.0.0.1:1/auth/corp/callback";
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    idp.expect_redirect_uri(cb);
    let verifier = "v".repeat(43);
    let challenge = s256(&verifier);
    let good = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", cb),
        ("scope", "openid email"),
        ("state", "st"),
        ("nonce", "n0"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let authorize = |pairs: Vec<(&str, &str)>| {
        http.get(format!(
            "{}/authorize?{}",
            idp.issuer,
            users::form_encode(&pairs)
        ))
        .send()
    };
    // Every parameter is required; PKCE is S256 only; the redirect URI is exact.
    for skip in 0..good.len() {
        let mut pairs = good.to_vec();
        let (name, _) = pairs.remove(skip);
        let r = authorize(pairs).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "without {name}");
    }
    for (name, bad) in [
        ("code_challenge_method", "plain"),
        ("redirect_uri", "http://127.0.0.1:1/auth/corp/callback/"),
        ("scope", "email profile"),
        ("client_id", "someone"),
    ] {
        let pairs: Vec<(&str, &str)> = good
            .iter()
            .map(|&(k, v)| (k, if k == name { bad } else { v }))
            .collect();
        let r = authorize(pairs).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{name}={bad}");
    }
    assert!(idp.violations().len() >= good.len() + 4);
    assert_eq!(idp.count("authorize"), good.len() + 4);

    let code = || async {
        let r = authorize(good.to_vec()).await.unwrap();
        assert_eq!(r.status().as_u16(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let q = form_pairs(loc.split_once('?').unwrap().1);
        assert_eq!(q[1], ("state".into(), "st".into()), "{loc}");
        q[0].1.clone()
    };
    let basic =
        |id: &str, secret: &str| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let good_basic = basic(&form_urlencode(CLIENT_ID), &form_urlencode(SECRET));
    let token = |auth: String, code: String, verifier: String| {
        http.post(format!("{}/token", idp.issuer))
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(users::form_encode(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", cb),
                ("code_verifier", &verifier),
            ]))
            .send()
    };
    let before = idp.violations().len();
    // A verifier that does not match the challenge (the code is spent all the same).
    let c = code().await;
    let r = token(good_basic.clone(), c.clone(), "w".repeat(43))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = token(good_basic.clone(), c, verifier.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "a spent code");
    // HTTP Basic without form-urlencoding the secret.
    let r = token(basic(CLIENT_ID, SECRET), code().await, verifier.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(idp.violations().len(), before + 3, "{}", idp.report());

    // The right request; the ID token verifies against the published JWKS.
    let r = token(good_basic, code().await, verifier).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", idp.report());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let jwks: Value = http
        .get(format!("{}/jwks", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k = &jwks["keys"][0];
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        k["n"].as_str().unwrap(),
        k["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[CLIENT_ID]);
    v.set_issuer(&[idp.issuer.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(body["id_token"].as_str().unwrap(), &key, &v)
        .expect("the stand-in's ID token verifies")
        .claims;
    assert_eq!(claims["nonce"], "n0");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(idp.violations().len(), before + 3);

    // GitHub: JSON must be asked for; the API needs a User-Agent and a known token.
    let gh = Github::start(GH_ID, GH_SECRET, octocat());
    let gcb = "http://127.0.0.1:1/auth/gh/callback";
    gh.expect_redirect_uri(gcb);
    let gh_code = || async {
        let r = http
            .get(format!(
                "{}/login/oauth/authorize?{}",
                gh.url,
                users::form_encode(&[("client_id", GH_ID), ("redirect_uri", gcb), ("state", "s")])
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        form_pairs(loc.split_once('?').unwrap().1)[0].1.clone()
    };
    let exchange = |c: String, accept: Option<&'static str>| {
        let mut r = http
            .post(format!("{}/login/oauth/access_token", gh.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(users::form_encode(&[
                ("client_id", GH_ID),
                ("client_secret", GH_SECRET),
                ("code", &c),
                ("redirect_uri", gcb),
            ]));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    let r = exchange(gh_code().await, None).await.unwrap();
    assert!(r.text().await.unwrap().starts_with("error="));
    assert_eq!(gh.violations().len(), 1, "{}", gh.report());
    let r = exchange(gh_code().await, Some("application/json"))
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    let access = t["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    let user = |token: String, ua: bool| {
        let mut r = http
            .get(format!("{}/user", gh.api_url))
            .header("authorization", format!("Bearer {token}"));
        if ua {
            r = r.header("user-agent", "sso-test");
        }
        r.send()
    };
    assert_eq!(
        user(access.clone(), false).await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(
        user("gho_nope".into(), true)
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let me: Value = user(access, true).await.unwrap().json().await.unwrap();
    assert_eq!(
        (me["login"].as_str(), me["id"].as_u64()),
        (Some("octocat"), Some(583231))
    );
    assert_eq!(gh.violations().len(), 3, "{}", gh.report());
}

#[tokio::test]
async fn a_renamed_account_cannot_inherit_a_name() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let s = Server::start(&config(&[oidc_provider("corp", &idp, "Corp SSO")]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    signed_in(&s, &page, "/", &idp.report());
    // Another account at the same provider now carries alice's address (she changed hers and
    // someone took it): the name stays bound to her account's `sub`.
    idp.set_user(OidcUser::new("mallory-sub-9", "alice@example.com", "alice"));
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    let body = refused(
        &s,
        &page,
        409,
        "another account with the same name",
        &idp.report(),
    );
    assert!(body.contains("another account of corp"), "{body}");
    // Alice's own account still signs in.
    idp.set_user(alice());
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    signed_in(&s, &page, "/", &idp.report());
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
}

#[tokio::test]
async fn strangers_are_refused_unless_allowed() {
    let carol = || OidcUser::new("carol-sub-3", "Carol@Example.com", "carol");
    let dave = || OidcUser::new("dave-sub-4", "dave@elsewhere.org", "dave");
    let idp = Oidc::start(CLIENT_ID, SECRET, carol());
    // carol and dave appear nowhere in the config.
    let s = Server::start(&config(&[oidc_provider("corp", &idp, "Corp SSO")]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    let body = refused(&s, &page, 403, "a stranger", &idp.report());
    assert!(
        body.contains("carol@example.com may not sign in here"),
        "{body}"
    );
    assert!(!user_exists(&s, "carol@example.com"));

    // The provider admits carol's domain (the address is matched without case) and dave by name.
    let admitted = oidc_provider("corp", &idp, "Corp SSO")
        + "      allowed_domains: [example.com]\n      allowed_users: [dave@elsewhere.org]\n";
    s.write_config("baton.yaml", &config(&[admitted]));
    let (st, v) = s.post("/config/reload", serde_json::json!({})).await;
    assert_eq!(st, 200, "{v}");
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    let session = signed_in(&s, &page, "/", &idp.report());
    assert_eq!(dashboard(&s, &session).await.0, "carol@example.com");
    // Admitted, but authorized for nothing: she sees no task.
    assert_eq!(tasks_as(&s, &session).await, Vec::<String>::new());
    idp.set_user(dave());
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    signed_in(&s, &page, "/", &idp.report());
    idp.set_user(OidcUser::new("erin-5", "erin@elsewhere.org", "erin"));
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    refused(&s, &page, 403, "erin, not admitted", &idp.report());
    assert_eq!(idp.violations(), Vec::<String>::new(), "{}", idp.report());
}

#[tokio::test]
async fn discovered_endpoints_must_be_safe() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let s = Server::start(&config(&[oidc_provider("corp", &idp, "Corp SSO")]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    idp.set_mode(OidcMode::InsecureTokenEndpoint);
    let mut b = Browser::new(&s);
    let page = b.get("/auth/corp").await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(
        html_unescape(&page.body)
            .contains("token_endpoint \"http://idp.example.com/token\": use https://"),
        "{}",
        page.body
    );
    assert_eq!(
        idp.count("authorize") + idp.count("token") + idp.count("jwks"),
        0
    );
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_public_url() {
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    let yaml = config(&[oidc_provider("corp", &idp, "Corp SSO")]).replace(
        "server:\n",
        "server:\n  public_url: https://ci.example.com\n",
    );
    let s = Server::start(&yaml);
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/auth/corp", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains(&format!(
            "redirect_uri={}",
            form_urlencode("https://ci.example.com/auth/corp/callback")
        )),
        "{location}"
    );
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("baton_sso="), "{cookie}");
    assert!(cookie_has(&cookie, "Secure"), "{cookie}");
}

#[tokio::test]
async fn hs256_id_tokens_are_refused_even_when_advertised() {
    // From the first discovery on, the provider lists HS256 and signs with the client secret:
    // the secret would be the key, so only asymmetric signatures are accepted.
    let idp = Oidc::start(CLIENT_ID, SECRET, alice());
    idp.set_mode(OidcMode::Hs256);
    let s = Server::start(&config(&[oidc_provider("corp", &idp, "Corp SSO")]));
    idp.expect_redirect_uri(&callback(&s, "corp"));
    let mut b = Browser::new(&s);
    let (_, page) = b.oidc_login(&idp, "corp", None).await;
    let body = refused(&s, &page, 401, "an HS256 ID token", &idp.report());
    assert!(body.contains("could not be verified"), "{body}");
    assert_eq!(idp.count("token"), 1);
    assert!(!user_exists(&s, "alice@example.com"));
}
