//! `notify:` — a list of `{webhook, secret, tasks, on}` entries.

use std::str::FromStr;

use super::diags::{Diags, FileId, Loc};
use crate::config::model::NotifyDef;
use crate::config::node::{Node, Value};
use crate::config::secrets::Resolver;
use crate::run::Status;

const NOTIFY_KEYS: &[&str] = &["webhook", "secret", "tasks", "on"];

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
        let webhook = match f.get("webhook") {
            None => {
                self.err(
                    here,
                    format!("{what} has no \"webhook\" (hint: webhook: https://chat.example.com/hooks/ci)"),
                );
                None
            }
            Some(entry) => {
                let url = self.nonempty_string(Some(entry));
                if let Some(u) = &url
                    && let Err(msg) = super::server::check_base_url(u, false)
                {
                    self.err(
                        entry.value_loc(),
                        format!("invalid \"webhook\" {u:?} of {what}: {msg}"),
                    );
                    None
                } else {
                    url
                }
            }
        };
        let secret = self.repo_secret(f.get("secret"), &what, resolve);
        if f.get("secret").is_none() {
            self.err(
                here,
                format!("{what} has no \"secret\", so its receiver cannot verify it (hint: secret: env:VAR, a key shared with the receiver)"),
            );
        }
        let tasks = self.string_list(f.get("tasks")).unwrap_or_default();
        let texts: Vec<&str> = tasks.iter().map(|(t, _)| t.as_str()).collect();
        if let (Err(why), Some(entry)) = (crate::on::Patterns::new(&texts), f.get("tasks")) {
            self.err(entry.value_loc(), format!("\"tasks\" of {what}: {why}"));
        }
        let mut on = Vec::new();
        for (word, loc) in self.string_list(f.get("on")).unwrap_or_default() {
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
        Some(NotifyDef {
            webhook: webhook?,
            secret: Some(secret?),
            tasks: tasks.into_iter().map(|(t, _)| t).collect(),
            on,
        })
    }
}
