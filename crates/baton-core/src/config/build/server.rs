//! The `server` section, with its single sign-on providers (`server.auth`).

use std::collections::BTreeMap;

use super::diags::{Diags, Entry, Fields};
use crate::config::duration::{MILLIS_UP, SECONDS_UP};
use crate::config::model::{ServerConfig, SsoKind, SsoProvider, UserClaim};

const SERVER_KEYS: &[&str] = &[
    "listen",
    "jwt_secret",
    "local_workers",
    "kill_grace",
    "agent_queues",
    "docker_host",
    "ssh_key",
    "known_hosts",
    "callback_url",
    "heartbeat_timeout",
    "public_url",
    "auth",
    "webhook_secret",
    "retention",
    "artifacts",
    "database",
];
const SSO_KEYS: &[&str] = &[
    "kind",
    "label",
    "client_id",
    "client_secret",
    "scopes",
    "issuer",
    "user_claim",
    "url",
    "api_url",
    "allowed_users",
    "allowed_domains",
];

pub(super) fn build_server(
    d: &mut Diags<'_>,
    entries: Vec<Entry<'_>>,
    resolve: &crate::config::model::Resolver,
) -> ServerConfig {
    let mut fields = Fields::default();
    for e in entries {
        if !SERVER_KEYS.contains(&e.name) {
            d.err(
                e.key,
                format!(
                    "unknown key {:?} in \"server\"; expected one of: {}",
                    e.name,
                    SERVER_KEYS.join(", ")
                ),
            );
        } else if let Some(first) = fields.entries.iter().find(|f| f.name == e.name) {
            let msg = format!(
                "server key {:?} is already defined at {}",
                e.name,
                d.place(first.key)
            );
            d.err(e.key, msg);
        } else {
            fields.entries.push(e);
        }
    }
    ServerConfig {
        listen: d.string(fields.get("listen")),
        database: {
            let db = d.nonempty_string(fields.get("database"));
            if let (Some(u), Some(entry)) = (&db, fields.get("database"))
                && (u.starts_with("postgres://") || u.starts_with("postgresql://"))
                && has_password(u)
            {
                d.err(
                    entry.value_loc(),
                    "server.database holds a password: keep it out of the config (give the URL with its password in BATON_DB, or the password in PGPASSWORD or ~/.pgpass)".to_string(),
                );
            }
            db
        },
        jwt_secret: d.string(fields.get("jwt_secret")),
        local_workers: d.uint(fields.get("local_workers"), 1),
        kill_grace: d.duration(fields.get("kill_grace"), MILLIS_UP),
        agent_queues: d
            .string_list(fields.get("agent_queues"))
            .map(|l| l.into_iter().map(|(q, _)| q).collect())
            .unwrap_or_default(),
        docker_host: d.string(fields.get("docker_host")),
        ssh_key: d.nonempty_string(fields.get("ssh_key")),
        known_hosts: d.nonempty_string(fields.get("known_hosts")),
        callback_url: {
            let url = d.string(fields.get("callback_url"));
            if let (Some(u), Some(entry)) = (&url, fields.get("callback_url"))
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                d.err(
                    entry.value_loc(),
                    format!("invalid callback_url {u:?}: expected http://host:port or https://host:port (the address SSH workers reach this server at)"),
                );
            }
            url
        },
        public_url: {
            let url = d.string(fields.get("public_url"));
            if let (Some(u), Some(entry)) = (&url, fields.get("public_url"))
                && let Err(msg) = check_base_url(u, false)
            {
                d.err(
                    entry.value_loc(),
                    format!("invalid public_url {u:?}: {msg} (the address browsers reach this server at)"),
                );
            }
            url.map(|u| u.trim_end_matches('/').to_owned())
        },
        auth: build_auth(d, fields.get("auth")),
        webhook_secret: d.repo_secret(fields.get("webhook_secret"), "\"server\"", resolve),
        retention: super::cache::build_retention(d, &fields, "\"server\""),
        artifacts: super::storage::build_storage(d, fields.get("artifacts"), resolve),
        heartbeat_timeout: {
            let t = d.duration(fields.get("heartbeat_timeout"), SECONDS_UP);
            if let (Some(t), Some(entry)) = (t, fields.get("heartbeat_timeout"))
                && t.is_zero()
            {
                d.err(
                    entry.value_loc(),
                    "heartbeat_timeout must be longer than 0s".to_string(),
                );
            }
            t
        },
    }
}

/// `server.auth`: single sign-on providers by name.
fn build_auth(d: &mut Diags<'_>, e: Option<Entry<'_>>) -> BTreeMap<String, SsoProvider> {
    let Some(e) = e else {
        return BTreeMap::new();
    };
    let entries = d.entries(e.key.file, e.value, "\"server.auth\"");
    let entries = d.unique(entries, |name, first| {
        format!("auth provider {name:?} was already declared at {first}")
    });
    let mut out = BTreeMap::new();
    for (name, e) in entries {
        if let Some(p) = build_sso_provider(d, e) {
            out.insert(name.to_owned(), p);
        }
    }
    out
}

fn build_sso_provider(d: &mut Diags<'_>, e: Entry<'_>) -> Option<SsoProvider> {
    let what = format!("auth provider {:?}", e.name);
    let mut ok = true;
    if e.name.is_empty()
        || e.name.len() > 32
        || !e
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        d.err(
            e.key,
            format!("invalid {what}: a provider name is 1-32 of a-z, 0-9, `-`, `_` (it appears in the callback URL)"),
        );
        ok = false;
    }
    let f = d.fields(e.key.file, e.value, &what, SSO_KEYS)?;
    let kind = d.string(f.get("kind")).unwrap_or_else(|| "oidc".into());
    let mut required = |d: &mut Diags<'_>, key: &str| {
        let v = d.nonempty_string(f.get(key));
        if v.is_none() && f.get(key).is_none() {
            d.err(e.key, format!("{what} has no {key:?}"));
        }
        if v.is_none() {
            ok = false;
        }
        v.unwrap_or_default()
    };
    let client_id = required(d, "client_id");
    let client_secret = required(d, "client_secret");
    let kind = sso_kind(d, e, &f, &what, &kind);
    let scopes = d
        .string_list(f.get("scopes"))
        .map(|l| l.into_iter().map(|(s, _)| s).collect::<Vec<_>>());
    let label = d
        .string(f.get("label"))
        .unwrap_or_else(|| format!("Sign in with {}", e.name));
    let kind = kind?;
    let scopes = scopes.unwrap_or_else(|| match kind {
        SsoKind::Oidc { .. } => vec!["email".into(), "profile".into()],
        SsoKind::Github { .. } => Vec::new(),
    });
    ok.then(|| SsoProvider {
        name: e.name.to_owned(),
        kind,
        label,
        client_id,
        client_secret,
        scopes,
        allowed_users: d.plain_list(f.get("allowed_users")),
        allowed_domains: d
            .plain_list(f.get("allowed_domains"))
            .into_iter()
            .map(|dom| dom.trim_start_matches('@').to_ascii_lowercase())
            .collect(),
    })
}

/// The kind-specific settings of SSO provider `e` (`kind` as given, `oidc` when absent).
fn sso_kind(
    d: &mut Diags<'_>,
    e: Entry<'_>,
    f: &Fields<'_>,
    what: &str,
    kind: &str,
) -> Option<SsoKind> {
    let url_key = |d: &mut Diags<'_>, key: &str, default: &str| -> Option<String> {
        let v = d.string(f.get(key));
        if let (Some(u), Some(entry)) = (&v, f.get(key))
            && let Err(msg) = check_base_url(u, true)
        {
            d.err(
                entry.value_loc(),
                format!("invalid {key} {u:?} in {what}: {msg}"),
            );
            return None;
        }
        Some(v.unwrap_or_else(|| default.to_owned()))
    };
    let only_for = |d: &mut Diags<'_>, keys: &[&str], kind: &str| {
        for key in keys {
            if let Some(entry) = f.get(key) {
                d.err(
                    entry.key,
                    format!("{key:?} is for providers of kind {kind}"),
                );
            }
        }
    };
    match kind {
        "oidc" => {
            only_for(d, &["url", "api_url"], "github");
            let issuer = match f.get("issuer") {
                None => {
                    d.err(e.key, format!("{what} of kind oidc has no \"issuer\""));
                    None
                }
                Some(_) => url_key(d, "issuer", ""),
            };
            let user_claim = match d.string(f.get("user_claim")).as_deref() {
                None | Some("email") => Some(UserClaim::Email),
                Some("preferred_username") => Some(UserClaim::PreferredUsername),
                Some("sub") => Some(UserClaim::Sub),
                Some(other) => {
                    let entry = f.get("user_claim").expect("string() returned Some");
                    d.err(
                        entry.value_loc(),
                        format!("unknown user_claim {other:?} in {what}; expected one of: email, preferred_username, sub"),
                    );
                    None
                }
            };
            match (issuer, user_claim) {
                (Some(issuer), Some(user_claim)) => Some(SsoKind::Oidc { issuer, user_claim }),
                _ => None,
            }
        }
        "github" => {
            only_for(d, &["issuer", "user_claim"], "oidc");
            // Paths are appended to these: no trailing slash. (An OIDC issuer stays exactly as
            // written: it must equal the issuer its provider names, slash or not.)
            let base = |u: String| u.trim_end_matches('/').to_owned();
            let url = url_key(d, "url", "https://github.com").map(base);
            let api_url = url_key(d, "api_url", "https://api.github.com").map(base);
            match (url, api_url) {
                (Some(url), Some(api_url)) => Some(SsoKind::Github { url, api_url }),
                _ => None,
            }
        }
        other => {
            let entry = f.get("kind").expect("kind was given");
            d.err(
                entry.value_loc(),
                format!("unknown kind {other:?} in {what}; expected oidc (any OpenID Connect issuer: Google, Gitea, GitLab, …) or github"),
            );
            None
        }
    }
}

/// A base URL: `http(s)://host[:port][/path]`. With `tls_unless_loopback`, plain http is
/// refused except on a loopback host (tokens crossing a network must be protected).
pub fn check_base_url(u: &str, tls_unless_loopback: bool) -> Result<(), String> {
    let rest = if let Some(rest) = u.strip_prefix("https://") {
        rest
    } else if let Some(rest) = u.strip_prefix("http://") {
        if tls_unless_loopback && !loopback_authority(rest) {
            return Err("use https:// (plain http is allowed only for localhost)".into());
        }
        rest
    } else {
        return Err("expected http://host[:port] or https://host[:port]".into());
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err("expected http://host[:port] or https://host[:port]".into());
    }
    Ok(())
}

/// Whether a `postgres://user:password@host/db` URL carries a password (in its user part or as
/// a `password=` parameter).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let in_user = rest[..end]
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    let in_query = url.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("password="))
    });
    in_user || in_query
}

/// Whether the host of `rest` (a URL after its `scheme://`) is this machine's loopback:
/// `localhost`, `[::1]` or 127.0.0.0/8, with or without a port.
pub(crate) fn loopback_authority(rest: &str) -> bool {
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}
