//! `notify:` — a list of `{webhook, secret, tasks, on}` entries.

use std::str::FromStr;

use super::diags::{Diags, Entry, FileId, Loc};
use crate::config::model::{NotifyDef, SmtpDef};
use crate::config::node::{Node, Value};
use crate::config::secrets::Resolver;
use crate::run::Status;

const NOTIFY_KEYS: &[&str] = &["webhook", "secret", "email", "smtp", "tasks", "on"];
/// `name@host`: one `@`, both sides non-empty, no spaces, quotes, brackets or commas.
fn plain_address(a: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c);
    match a.split_once('@') {
        Some((local, host)) => {
            !local.is_empty() && !host.is_empty() && !host.contains('@') && !a.contains(bad)
        }
        None => false,
    }
}

const SMTP_KEYS: &[&str] = &["host", "port", "from"];

impl Diags<'_> {
    /// The entries of one file's `notify:` list.
    pub(super) fn notify(
        &mut self,
        file: FileId,
        node: &Node,
        resolve: &Resolver,
    ) -> Vec<NotifyDef> {
        let items = match &node.value {
            Value::Null => return Vec::new(),
            Value::Seq(items) => items,
            _ => {
                let loc = Loc {
                    file,
                    pos: node.pos,
                };
                self.err(
                    loc,
                    format!(
                        "expected a list of {{webhook, secret, tasks, on}} entries for \"notify\", found {}",
                        node.kind()
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(n) = self.notify_entry(file, item, i + 1, resolve) {
                out.push(n);
            }
        }
        out
    }

    fn notify_entry(
        &mut self,
        file: FileId,
        node: &Node,
        nth: usize,
        resolve: &Resolver,
    ) -> Option<NotifyDef> {
        let what = format!("notify entry {nth}");
        let f = self.fields(file, node, &what, NOTIFY_KEYS)?;
        let here = Loc {
            file,
            pos: node.pos,
        };
        let tasks = self.string_list(f.get("tasks")).unwrap_or_default();
        let texts: Vec<&str> = tasks.iter().map(|(t, _)| t.as_str()).collect();
        if let (Err(why), Some(entry)) = (crate::on::Patterns::new(&texts), f.get("tasks")) {
            self.err(entry.value_loc(), format!("\"tasks\" of {what}: {why}"));
        }
        let on = self.run_ends(f.get("on"), &what);
        let mut def = NotifyDef {
            webhook: None,
            secret: None,
            email: Vec::new(),
            smtp: None,
            tasks: tasks.into_iter().map(|(t, _)| t).collect(),
            on,
        };
        match (f.get("webhook"), f.get("email")) {
            (Some(_), Some(mail)) => {
                self.err(
                    mail.key,
                    format!(
                        "{what} has both \"webhook\" and \"email\" (hint: one entry per receiver)"
                    ),
                );
                None
            }
            (None, None) => {
                self.err(
                    here,
                    format!("{what} has no \"webhook\" nor \"email\" (hint: webhook: https://chat.example.com/hooks/ci)"),
                );
                None
            }
            (Some(hook), None) => {
                def.webhook = self.notify_webhook(hook, &what);
                def.secret = self.repo_secret(f.get("secret"), &what, resolve);
                if f.get("secret").is_none() {
                    self.err(
                        here,
                        format!("{what} has no \"secret\", so its receiver cannot verify it (hint: secret: env:VAR, a key shared with the receiver)"),
                    );
                }
                (def.webhook.is_some() && def.secret.is_some()).then_some(def)
            }
            (None, Some(mail)) => {
                let email = self.notify_email(mail, &what);
                let Some(smtp) = f.get("smtp") else {
                    self.err(
                        here,
                        format!("{what} has \"email\" but no \"smtp\" (hint: smtp: {{host: localhost, port: 25, from: ci@example.com}})"),
                    );
                    return None;
                };
                def.smtp = Some(self.smtp(file, smtp, &what)?);
                def.email = email?;
                Some(def)
            }
        }
    }

    fn notify_webhook(&mut self, hook: Entry<'_>, what: &str) -> Option<String> {
        let url = self.nonempty_string(Some(hook))?;
        if let Err(msg) = super::server::check_base_url(&url, false) {
            self.err(
                hook.value_loc(),
                format!("invalid \"webhook\" {url:?} of {what}: {msg}"),
            );
            return None;
        }
        Some(url)
    }

    fn notify_email(&mut self, mail: Entry<'_>, what: &str) -> Option<Vec<String>> {
        let list = self.string_list(Some(mail))?;
        if list.is_empty() {
            self.err(mail.value_loc(), format!("\"email\" of {what} is empty"));
            return None;
        }
        let mut ok = true;
        for (addr, loc) in &list {
            if !plain_address(addr) {
                ok = false;
                self.err(
                    *loc,
                    format!("invalid address {addr:?} in \"email\" of {what} (expected name@host)"),
                );
            }
        }
        ok.then(|| list.into_iter().map(|(a, _)| a).collect())
    }

    fn smtp(&mut self, file: FileId, e: Entry<'_>, what: &str) -> Option<SmtpDef> {
        let what = format!("\"smtp\" of {what}");
        let f = self.fields(file, e.value, &what, SMTP_KEYS)?;
        let mut missing = false;
        for key in SMTP_KEYS {
            if f.get(key).is_none() {
                missing = true;
                self.err(e.key, format!("{what} has no {key:?}"));
            }
        }
        let host = self.nonempty_string(f.get("host"));
        let port = self.uint(f.get("port"), 1);
        let port = match (port.map(u16::try_from), f.get("port")) {
            (Some(Ok(p)), _) => Some(p),
            (Some(Err(_)), Some(p)) => {
                self.err(p.value_loc(), format!("\"port\" of {what} is above 65535"));
                None
            }
            _ => None,
        };
        let from = self.nonempty_string(f.get("from"));
        if let (Some(addr), Some(entry)) = (&from, f.get("from"))
            && !plain_address(addr)
        {
            self.err(
                entry.value_loc(),
                format!("invalid address {addr:?} in \"from\" of {what}"),
            );
            return None;
        }
        if missing {
            return None;
        }
        Some(SmtpDef {
            host: host?,
            port: port?,
            from: from?,
        })
    }

    /// `on:` of an entry: run ends.
    fn run_ends(&mut self, e: Option<Entry<'_>>, what: &str) -> Vec<Status> {
        let mut on = Vec::new();
        for (word, loc) in self.string_list(e).unwrap_or_default() {
            match Status::from_str(&word) {
                Ok(s) if s.is_terminal() => on.push(s),
                _ => {
                    let ends: Vec<&str> = Status::ALL
                        .iter()
                        .filter(|s| s.is_terminal())
                        .map(|s| s.as_str())
                        .collect();
                    self.err(
                        loc,
                        format!(
                            "unknown run end {word:?} in \"on\" of {what}; expected one of: {}",
                            ends.join(", ")
                        ),
                    );
                }
            }
        }
        on
    }
}
