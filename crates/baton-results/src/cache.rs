//! The CI cache's inputs: the facts that make two jobs' inputs the same ([`CacheFacts`]), their
//! digest (a pure function of the facts), what differs between two sets of facts (`baton cache
//! why`), and [`gather_inputs`], which reads the input files of a checkout (the only I/O here,
//! done where the checkout is, never in the scheduler actor).
//!
//! Facts hold hashes only: an environment value (maybe a secret) never leaves this module.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The most input files one job may have (a glob that matches a whole disk is a mistake).
pub const MAX_INPUT_FILES: usize = 200_000;

/// One input file: its path relative to the checkout, its mode as git has it, and its
/// content's SHA-256 (a symbolic link's is its target's path, never followed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    pub mode: u32,
    pub sha256: String,
}

/// Everything a job's cache digest is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFacts {
    /// Sorted by path.
    pub files: Vec<InputFile>,
    /// SHA-256 of the task's definition as written (its JSON).
    pub definition: String,
    /// The container image (by digest when the engine gives one); `None`: on the worker.
    pub image: Option<String>,
    /// SHA-256 of each listed variable's value; `None`: unset.
    pub env: BTreeMap<String, Option<String>>,
    pub key: String,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CacheFacts {
    /// Facts from raw values: the definition's JSON and the environment values are hashed.
    pub fn new(
        mut files: Vec<InputFile>,
        definition_json: &str,
        image: Option<String>,
        env: &[(String, Option<String>)],
        key: &str,
    ) -> CacheFacts {
        files.sort();
        CacheFacts {
            files,
            definition: sha256_hex(definition_json.as_bytes()),
            image,
            env: env
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(|v| sha256_hex(v.as_bytes()))))
                .collect(),
            key: key.to_owned(),
        }
    }

    /// The digest: SHA-256 over every fact, each length-prefixed so no two different sets of
    /// facts can encode the same.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |tag: &str, s: &str| {
            h.update(tag.as_bytes());
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        put("v", "1");
        for f in &self.files {
            put("f", &f.path);
            put("m", &f.mode.to_string());
            put("c", &f.sha256);
        }
        put("d", &self.definition);
        put("i", self.image.as_deref().unwrap_or("-"));
        for (k, v) in &self.env {
            put("e", k);
            put("v", v.as_deref().unwrap_or("-"));
        }
        put("k", &self.key);
        hex::encode(h.finalize())
    }

    /// What differs from `old` to `self`, one line each (empty: the same inputs).
    pub fn differences(&self, old: &CacheFacts) -> Vec<String> {
        let mut out = Vec::new();
        let before: BTreeMap<&str, &InputFile> =
            old.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let now: BTreeMap<&str, &InputFile> =
            self.files.iter().map(|f| (f.path.as_str(), f)).collect();
        for (path, f) in &now {
            match before.get(path) {
                None => out.push(format!("file {path}: added")),
                Some(o) if o.sha256 != f.sha256 => {
                    out.push(format!("file {path}: content changed"))
                }
                Some(o) if o.mode != f.mode => {
                    out.push(format!("file {path}: mode {:o} -> {:o}", o.mode, f.mode))
                }
                Some(_) => {}
            }
        }
        for path in before.keys().filter(|p| !now.contains_key(*p)) {
            out.push(format!("file {path}: removed"));
        }
        if self.definition != old.definition {
            out.push("the task's definition changed".into());
        }
        if self.image != old.image {
            out.push(format!(
                "image: {} -> {}",
                old.image.as_deref().unwrap_or("none"),
                self.image.as_deref().unwrap_or("none")
            ));
        }
        let names: std::collections::BTreeSet<&String> =
            self.env.keys().chain(old.env.keys()).collect();
        for name in names {
            if self.env.get(name) != old.env.get(name) {
                out.push(format!("environment variable {name} changed"));
            }
        }
        if self.key != old.key {
            out.push(format!("key: {:?} -> {:?}", old.key, self.key));
        }
        out
    }
}

/// What went wrong reading a job's inputs.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid cache.inputs glob {glob:?}: {source}")]
    Glob {
        glob: String,
        source: globset::Error,
    },
    #[error("cannot read cache input {path}: {source} (the job runs without the cache)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cache.inputs match more than {MAX_INPUT_FILES} files; narrow the globs (the job runs without the cache)"
    )]
    TooMany,
}

fn glob_set(globs: &[String]) -> Result<GlobSet, CacheError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|source| CacheError::Glob {
                glob: g.clone(),
                source,
            })?;
        b.add(glob);
    }
    b.build().map_err(|source| CacheError::Glob {
        glob: globs.join(", "),
        source,
    })
}

/// The input files of the checkout `root` that `globs` match (relative paths; `.git` is never
/// an input), each hashed. Symbolic links are hashed as links, never followed.
pub fn gather_inputs(root: &Path, globs: &[String]) -> Result<Vec<InputFile>, CacheError> {
    let set = glob_set(globs)?;
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|source| CacheError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if name != ".git" {
                    stack.push(path);
                }
            } else if set.is_match(&path) {
                out.push(hash_entry(root, &path, ft.is_symlink())?);
                if out.len() > MAX_INPUT_FILES {
                    return Err(CacheError::TooMany);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn hash_entry(root: &Path, rel: &str, symlink: bool) -> Result<InputFile, CacheError> {
    let full = root.join(rel);
    let err = |source| CacheError::Read {
        path: rel.to_owned(),
        source,
    };
    let meta = std::fs::symlink_metadata(&full).map_err(err)?;
    let sha256 = if symlink {
        let target = std::fs::read_link(&full).map_err(err)?;
        sha256_hex(target.as_os_str().as_encoded_bytes())
    } else {
        let mut f = crate::collect::open_plain(&full).map_err(err)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        hex::encode(h.finalize())
    };
    Ok(InputFile {
        path: rel.to_owned(),
        mode: git_mode(meta.mode()),
        sha256,
    })
}

/// A file's mode as git records it (`100644`, `100755`, `120000`): what a checkout holds
/// whatever the umask it was written under (a server's 077, a laptop's 022).
fn git_mode(mode: u32) -> u32 {
    match mode & 0o170000 {
        0o120000 => 0o120000,
        _ if mode & 0o100 != 0 => 0o100755,
        _ => 0o100644,
    }
}
