//! Secret values and the references that stand for them in definitions.

use super::*;

/// Whether a variable's or `env` entry's name says it holds a secret (py4CI's rule): it
/// contains `secret`, `token`, `password`, `passwd`, `credential` or `key`, in any case.
#[must_use]
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["secret", "token", "password", "passwd", "credential", "key"]
        .iter()
        .any(|w| n.contains(w))
}

/// A secret value held in memory only: redacted in `Debug`, never serialized (a field of this
/// type is always `#[serde(skip)]`), zeroed on drop (`secrecy`).
#[derive(Clone, Default)]
pub struct SecretValue(Option<secrecy::SecretString>);

impl SecretValue {
    #[must_use]
    pub fn new(value: String) -> Self {
        SecretValue(Some(secrecy::SecretString::from(value)))
    }

    /// The value; call only where it is handed to a job or a masker.
    #[must_use]
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.as_ref().map_or("", |s| s.expose_secret())
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

/// Where an explicit secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// `env:VAR` — the server's environment variable `VAR`.
    Env(String),
    /// `file:PATH` — the file's content, less one trailing newline; a relative path is
    /// resolved against the directory of the config file that names it.
    File(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "env:{v}"),
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// `secrets.NAME` — an explicit secret: its source (shown) and its value (memory only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretDef {
    pub name: String,
    pub source: SecretSource,
    #[serde(skip)]
    pub value: SecretValue,
}

/// The value of an `env` entry or variable as a definition keeps it: plain text, or a
/// reference to a secret value that only the loaded config holds ([`Config::hidden`]), so a
/// serialized definition (the API, `runs.definition`) never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    /// `{"secret": "tasks.NAME.env.KEY"}`: resolved from the current config when the job
    /// starts.
    Secret {
        secret: String,
    },
}

impl EnvValue {
    /// The plain value, if it is not a secret.
    #[must_use]
    pub fn plain(&self) -> Option<&str> {
        match self {
            EnvValue::Plain(v) => Some(v),
            EnvValue::Secret { .. } => None,
        }
    }
}
