//! A job's environment from its run's definition: plain entries, and secrets resolved from the
//! current config when the job starts (or is re-attached), so a stored definition never holds a
//! secret value.

use std::collections::BTreeMap;

use baton_core::config::{Config, EnvValue};
use baton_exec::JobSecrets;

/// A job's environment as its definition names it, before resolution.
#[derive(Default)]
pub(crate) struct JobEnv {
    /// Plain entries, in order (later ones win).
    pub(crate) plain: Vec<(String, String)>,
    /// `(variable, reference)` of secret-looking `env` entries and variables.
    pub(crate) hidden: Vec<(String, String)>,
    /// Explicit secrets by name.
    pub(crate) secrets: Vec<String>,
}

impl JobEnv {
    pub(crate) fn add(&mut self, env: &BTreeMap<String, EnvValue>) {
        for (k, v) in env {
            self.plain.retain(|(p, _)| p != k);
            self.hidden.retain(|(h, _)| h != k);
            match v {
                EnvValue::Plain(v) => self.plain.push((k.clone(), v.clone())),
                EnvValue::Secret { secret } => self.hidden.push((k.clone(), secret.clone())),
            }
        }
    }

    /// The plain environment (with the run's arguments), the secrets (environment and the
    /// values to mask: these and the config's secret-looking variables), and what the config
    /// no longer holds.
    pub(crate) fn resolve(
        self,
        config: &Config,
        args: &BTreeMap<String, String>,
    ) -> (Vec<(String, String)>, JobSecrets, Vec<String>) {
        let mut plain = self.plain;
        // Arguments cannot replace a secret: their names start with a lower-case letter,
        // secret names do not, and secret-looking entries are set after them.
        plain.extend(args.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut secrets = JobSecrets::default();
        let mut missing = Vec::new();
        for (k, reference) in self.hidden {
            plain.retain(|(p, _)| *p != k);
            match config.hidden(&reference) {
                Some(v) => secrets.env.push((k, v.expose().to_owned())),
                None => missing.push(format!("the secret value {reference}")),
            }
        }
        for name in self.secrets {
            plain.retain(|(p, _)| *p != name);
            match config.secret(&name) {
                Some(v) => secrets.env.push((name, v.expose().to_owned())),
                None => missing.push(format!("secret {name:?}")),
            }
        }
        secrets.mask = baton_core::decide::mask_values(
            secrets
                .env
                .iter()
                .map(|(_, v)| v.clone())
                .chain(config.hidden.values().map(|v| v.expose().to_owned()))
                .chain(config.secrets.values().map(|s| s.value.expose().to_owned())),
        );
        (plain, secrets, missing)
    }
}
