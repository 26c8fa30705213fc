//! The webhook verifiers and parsers: any delivery is refused or parsed, never a panic; a
//! body signed with the secret always passes verification.
#![no_main]

use arbitrary::Arbitrary;
use baton_forge::{Forge, parse, receive, sign, verify};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Delivery<'a> {
    forge: u8,
    event: &'a str,
    signature: &'a str,
    sign_it: bool,
    body: &'a [u8],
}

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|d: Delivery| {
    let forge = match d.forge % 4 {
        0 => Forge::GitHub,
        1 => Forge::Gitea,
        2 => Forge::Forgejo,
        _ => Forge::GitLab,
    };
    let good = sign(SECRET, d.body);
    let signature = if d.sign_it { good.as_str() } else { d.signature };
    let mut headers: Vec<(&str, String)> = vec![
        ("X-GitHub-Event", d.event.to_string()),
        ("X-Gitea-Event", d.event.to_string()),
        ("X-Forgejo-Event", d.event.to_string()),
        ("X-Gitlab-Event", d.event.to_string()),
        ("X-GitHub-Delivery", "1".into()),
        ("X-Gitea-Delivery", "1".into()),
        ("X-Forgejo-Delivery", "1".into()),
        ("X-Gitlab-Event-UUID", "1".into()),
        ("X-Gitea-Signature", signature.to_string()),
        ("X-Forgejo-Signature", signature.to_string()),
    ];
    headers.push(("X-Hub-Signature-256", format!("sha256={signature}")));
    let gitlab_token = if d.sign_it {
        String::from_utf8_lossy(SECRET).into_owned()
    } else {
        d.signature.to_string()
    };
    headers.push(("X-Gitlab-Token", gitlab_token));
    let verified = verify(forge, &headers, d.body, SECRET);
    if d.sign_it {
        assert!(verified.is_ok(), "a correctly signed body was refused: {verified:?}");
    }
    let _ = parse(forge, &headers, d.body);
    let _ = receive(forge, &headers, d.body, SECRET);
});
