//! A user's own account on /me: changing the password (the current one required, at least 12
//! characters, every other session ended, this one kept) and listing and ending their own
//! sessions (never another user's).

mod common;
#[path = "common/users.rs"]
mod users;

use common::*;
use users::*;

const CONFIG: &str = "administrators: [root]\ntasks:\n  t:\n    command: 'true'\n";

async fn get(s: &Server, cookie: &str, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(format!("{}{path}", s.base))
        .header("cookie", format!("baton_session={cookie}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(s: &Server, cookie: &str, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let (_, me) = get(s, cookie, "/me").await;
    let csrf = csrf_in(&me);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let r = no_redirects()
        .post(format!("{}{path}", s.base))
        .header("cookie", format!("baton_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&all))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The handles of the sessions /me lists, and the one marked as this browser's.
fn sessions(html: &str) -> (Vec<String>, Option<String>) {
    let mut all = Vec::new();
    let mut this = None;
    for part in html.split("<tr class=\"session\" data-handle=\"").skip(1) {
        let handle = part[..part.find('"').unwrap()].to_owned();
        let row = &part[..part.find("</tr>").unwrap()];
        if row.contains("id=\"this-session\"") {
            this = Some(handle.clone());
        }
        all.push(handle);
    }
    (all, this)
}

#[tokio::test]
async fn a_user_changes_their_password_and_ends_their_sessions() {
    let s = Server::start(CONFIG);
    add_user(&s, "alice", "pw-alice");
    add_user(&s, "bob", "pw-bob");
    let laptop = login(&s, "alice", "pw-alice").await;
    let phone = login(&s, "alice", "pw-alice").await;
    let bob = login(&s, "bob", "pw-bob").await;

    // Both of alice's sessions are listed, this one marked; bob's is not among them.
    let (st, me) = get(&s, &laptop, "/me").await;
    assert_eq!(st, 200);
    let (list, this) = sessions(&me);
    assert_eq!(list.len(), 2, "{me}");
    let (bob_list, _) = sessions(&get(&s, &bob, "/me").await.1);
    assert_eq!(bob_list.len(), 1);
    assert!(!list.contains(&bob_list[0]));
    let this = this.expect("this browser's session is marked");
    let other = list.iter().find(|h| **h != this).unwrap().clone();

    // Ending another user's session is a 404; ending one's own other session signs it out.
    let (st, _) = post(
        &s,
        &laptop,
        &format!("/me/sessions/{}/end", bob_list[0]),
        &[],
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(get(&s, &bob, "/me").await.0, 200, "bob is still signed in");
    let (st, _) = post(&s, &laptop, &format!("/me/sessions/{other}/end"), &[]).await;
    assert_eq!(st, 303);
    assert_eq!(
        get(&s, &phone, "/me").await.0,
        303,
        "the phone is signed out"
    );
    assert_eq!(get(&s, &laptop, "/me").await.0, 200);

    // A wrong current password, a short one and a mistyped confirmation change nothing.
    // `login` types `long(short)`, so the new password is one of that shape.
    let new_long = long("new-pw-alice");
    let new = new_long.as_str();
    let phone = login(&s, "alice", "pw-alice").await;
    for (current, pw, confirm, want) in [
        (
            "wrong-password-here",
            new,
            new,
            "The current password is wrong.",
        ),
        (&long("pw-alice")[..], "short", "short", "at least 12"),
        (
            &long("pw-alice")[..],
            new,
            "something-else-entirely",
            "differ",
        ),
    ] {
        let (st, page) = post(
            &s,
            &laptop,
            "/me/password",
            &[("current", current), ("new", pw), ("confirm", confirm)],
        )
        .await;
        assert_eq!(st, 400, "{want}");
        assert!(page.contains(want), "{want}: {page}");
    }
    assert_eq!(get(&s, &phone, "/me").await.0, 200);

    // The right current password: changed, the phone signed out, this browser kept.
    let current = long("pw-alice");
    let (st, page) = post(
        &s,
        &laptop,
        "/me/password",
        &[("current", &current), ("new", new), ("confirm", new)],
    )
    .await;
    assert_eq!(st, 200, "{page}");
    assert!(page.contains("id=\"password-changed\""), "{page}");
    assert_eq!(get(&s, &phone, "/me").await.0, 303, "other sessions end");
    assert_eq!(get(&s, &laptop, "/me").await.0, 200, "this one stays");
    assert_eq!(get(&s, &bob, "/me").await.0, 200, "nobody else's ends");
    // The new password works at the login form.
    let fresh = login(&s, "alice", "new-pw-alice").await;
    assert_eq!(get(&s, &fresh, "/me").await.0, 200);
}
