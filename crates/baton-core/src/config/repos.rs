//! Repositories: the top-level `repos:` map, the `on:` filter of tasks and pipelines, and
//! loading a repository's own `.baton/` configuration.
//!
//! ```yaml
//! repos:
//!   backend:
//!     url: git@github.com:acme/backend.git   # https, ssh, scp-like or a local path
//!     forge: github                          # github | gitea | forgejo | gitlab | git
//!     secret: env:BACKEND_HOOK_SECRET        # the webhook's secret: env:VAR or file:PATH only
//!     token: file:/etc/baton/backend.token   # API/clone token: env:VAR or file:PATH only
//!     branches: [main, "release/**"]         # branches whose pushes are built (default: all)
//!     poll: 5m                               # fetch interval for repos without webhooks
//!     api: https://ghe.acme.com/api/v3       # forge API for commit statuses (default: from url)
//! ```
//!
//! With a `token`, every run of the repository reports commit statuses (`baton/TARGET`) to the
//! forge; `server.public_url` gives them a link to the run.
//!
//! `secret` and `token` are read like `secrets:` and held in [`SecretValue`]s: never serialized,
//! never shown. A repository's `.baton/` holds `tasks:`, `pipelines:` and `variables:` in the
//! server config's format ([`load_repo_sources`]); it cannot define workers, secrets or server
//! settings, and its secret-looking values are plain text of the repository (they are not the
//! server's secrets and can never resolve to one).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, Deserializer, IntoDeserializer, Visitor};

use super::build::RepoMode;
use super::model::Resolver;
use super::model::{Config, EnvValue};
use super::node::{Node, Value};
use super::{ConfigErrors, Diagnostic};

/// Loads a repository's `.baton/` files (`(path shown in messages, text)`), checked against
/// the server's `server` config for queues. Secret-looking values become plain values of the
/// repository: a repository can never reference the server's secrets.
///
/// # Errors
/// Every problem found, as `file:line:col: message`.
pub fn load_repo_sources(
    sources: &[(PathBuf, String)],
    server: &Config,
) -> Result<Config, ConfigErrors> {
    let mut loader = super::build::Loader::default();
    loader.repo = Some(RepoMode {
        workers: server.workers.clone(),
        agent_queues: server.agent_queues(),
    });
    for (path, text) in sources {
        loader.add_source(path, text);
    }
    if sources.is_empty() {
        return Err(ConfigErrors {
            diagnostics: vec![Diagnostic {
                file: PathBuf::from(".baton"),
                line: 1,
                col: 1,
                message: "no *.yaml or *.yml files in .baton/".into(),
            }],
        });
    }
    let refuse: &Resolver = &|_| Err("a repository cannot read the server's secrets".into());
    let mut config = loader.finish(refuse)?;
    plain_hidden(&mut config);
    Ok(config)
}

/// Turns every secret reference of a repository's config into the plain value it wrote.
fn plain_hidden(config: &mut Config) {
    let hidden = std::mem::take(&mut config.hidden);
    let fix = |m: &mut BTreeMap<String, EnvValue>| {
        for v in m.values_mut() {
            if let EnvValue::Secret { secret } = v {
                let value = hidden.get(secret).map(|s| s.expose().to_owned());
                *v = EnvValue::Plain(value.unwrap_or_default());
            }
        }
    };
    fix(&mut config.variables);
    for t in config.tasks.values_mut() {
        fix(&mut t.env);
        fix(&mut t.variables);
    }
    for p in config.pipelines.values_mut() {
        fix(&mut p.env);
        if let Some(o) = &mut p.on_error {
            fix(&mut o.env);
        }
        for t in p.tasks.values_mut() {
            fix(&mut t.env);
        }
    }
}

/// A serde deserializer over a [`Node`], for typed sub-trees such as `on:`.
pub(crate) struct NodeDe<'n>(pub(crate) &'n Node);

impl<'de, 'n> IntoDeserializer<'de, de::value::Error> for NodeDe<'n> {
    type Deserializer = NodeDe<'n>;
    fn into_deserializer(self) -> NodeDe<'n> {
        self
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match &self.0.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(i) => v.visit_i64(i),
                Err(_) => v.visit_i128(*i),
            },
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_str(s),
            Value::Seq(items) => {
                v.visit_seq(de::value::SeqDeserializer::new(items.iter().map(NodeDe)))
            }
            Value::Map(pairs) => v.visit_map(de::value::MapDeserializer::new(
                pairs.iter().map(|(k, val)| (NodeDe(k), NodeDe(val))),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.0.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
