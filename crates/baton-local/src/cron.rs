//! `baton cron`: the entries of a repository's `.baton/crontab` (or git-jci's `.jci/crontab`)
//! installed into the user's crontab inside a block marked with the repository's path, so that
//! syncing again changes nothing, removing an entry removes its line, and nothing outside the
//! block is touched.
//!
//! An entry is a line `MIN HOUR DOM MON DOW [branch:BRANCH] [name:NAME] [TARGET…]`; blank lines
//! and `#` comments are ignored. A crontab line is shell text, so every value from the
//! repository is checked to be made of plain characters before it is written, and the paths
//! are single-quoted.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::LocalError;

/// One entry of `.baton/crontab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub schedule: String,
    pub branch: Option<String>,
    pub name: Option<String>,
    pub targets: Vec<String>,
}

/// Parses a crontab file of the repository (`file` names it in messages).
pub fn parse(file: &str, text: &str) -> Result<Vec<Entry>, LocalError> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| LocalError::Usage(format!("{file}:{}: {why}: {line:?}", n + 1));
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 {
            return Err(bad("an entry starts with 5 schedule fields"));
        }
        if !words[..5].iter().all(|f| plain(f, "*/,-")) {
            return Err(bad(
                "a schedule field may hold only letters, digits and */,-",
            ));
        }
        let mut e = Entry {
            schedule: words[..5].join(" "),
            branch: None,
            name: None,
            targets: Vec::new(),
        };
        for w in &words[5..] {
            if !plain(w, "._/-:") {
                return Err(bad("names may hold only letters, digits and ._/-"));
            }
            match w.split_once(':') {
                Some(("branch", b)) if plain(b, "._/-") => e.branch = Some(b.to_owned()),
                Some(("name", v)) if plain(v, "._/-") => e.name = Some(v.to_owned()),
                Some(_) => return Err(bad("the only keys are branch: and name:")),
                None => e.targets.push((*w).to_owned()),
            }
        }
        entries.push(e);
    }
    Ok(entries)
}

fn plain(word: &str, extra: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('-')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// `'text'` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn markers(repo: &Path) -> (String, String) {
    let p = repo.display();
    (
        format!("# >>> baton cron {p} >>>"),
        format!("# <<< baton cron {p} <<<"),
    )
}

/// The block of `repo`'s entries, run with `baton` (empty when there are none).
pub fn block(repo: &Path, baton: &Path, entries: &[Entry]) -> Result<String, LocalError> {
    for p in [repo, baton] {
        // cron turns `%` into a newline; a newline would end the line.
        if p.to_string_lossy().contains(['%', '\n']) {
            return Err(LocalError::Usage(format!(
                "{} cannot go into a crontab line (it holds % or a newline)",
                p.display()
            )));
        }
    }
    if entries.is_empty() {
        return Ok(String::new());
    }
    let (start, end) = markers(repo);
    let mut out = format!("{start}\n");
    for e in entries {
        let mut cmd = format!(
            "{} cd {} && {} run",
            e.schedule,
            quote(&repo.to_string_lossy()),
            quote(&baton.to_string_lossy())
        );
        if let Some(b) = &e.branch {
            cmd.push_str(&format!(" --rev {b}"));
        }
        for t in &e.targets {
            cmd.push_str(&format!(" {t}"));
        }
        cmd.push_str(" >/dev/null 2>&1");
        if let Some(n) = &e.name {
            cmd.push_str(&format!(" # {n}"));
        }
        out.push_str(&cmd);
        out.push('\n');
    }
    out.push_str(&end);
    out.push('\n');
    Ok(out)
}

/// `crontab` with `repo`'s block replaced by `block` (appended when absent, removed when
/// empty); every other line as it was.
pub fn splice(crontab: &str, repo: &Path, block: &str) -> String {
    let (start, end) = markers(repo);
    let mut out = String::new();
    let mut inside = false;
    let mut placed = false;
    for line in crontab.lines() {
        if line == start {
            inside = true;
            continue;
        }
        if inside {
            if line == end {
                inside = false;
                out.push_str(block);
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !placed {
        out.push_str(block);
    }
    out
}

/// The repository's crontab at `HEAD`: `.baton/crontab`, else `.jci/crontab`; its path and
/// entries (none when there is neither).
pub async fn entries(repo: &baton_git::LocalRepo) -> Result<(String, Vec<Entry>), LocalError> {
    let head = repo.resolve("HEAD").await?;
    let mirror = repo.mirror();
    for path in [".baton/crontab", ".jci/crontab"] {
        if let Some((_, bytes)) = mirror.read_tree(&head, path).await?.into_iter().next() {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            return Ok((path.to_owned(), parse(path, &text)?));
        }
    }
    Ok((".baton/crontab".to_owned(), Vec::new()))
}

/// Installs `repo`'s block into the user's crontab; `true` when that changed it.
pub fn sync(repo: &Path, baton: &Path, entries: &[Entry]) -> Result<bool, LocalError> {
    let now = read_crontab()?;
    let next = splice(&now, repo, &block(repo, baton, entries)?);
    if next == now {
        return Ok(false);
    }
    write_crontab(&next)?;
    Ok(true)
}

/// Whether the user's crontab holds exactly `repo`'s block for `entries`.
pub fn installed(repo: &Path, baton: &Path, entries: &[Entry]) -> Result<bool, LocalError> {
    let now = read_crontab()?;
    Ok(splice(&now, repo, &block(repo, baton, entries)?) == now)
}

/// Where the user's crontab lives: the file `CRONTAB` names (tests, systems without `cron`),
/// else the `crontab` command.
fn crontab_file() -> Option<std::path::PathBuf> {
    std::env::var_os("CRONTAB").map(Into::into)
}

/// The user's crontab now (empty when they have none).
pub fn read_crontab() -> Result<String, LocalError> {
    if let Some(f) = crontab_file() {
        return match std::fs::read_to_string(&f) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(LocalError::io("read", &f, e)),
        };
    }
    let out = Command::new("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalError::io("run", Path::new("crontab"), e))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("no crontab") {
        return Err(LocalError::Usage(format!(
            "`crontab -l` failed: {}",
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs `text` as the user's crontab.
pub fn write_crontab(text: &str) -> Result<(), LocalError> {
    if let Some(f) = crontab_file() {
        return std::fs::write(&f, text).map_err(|e| LocalError::io("write", &f, e));
    }
    use std::io::Write;
    let mut child = Command::new("crontab")
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| LocalError::io("run", Path::new("crontab"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| LocalError::io("write to", Path::new("crontab"), e))?;
    }
    let st = child
        .wait()
        .map_err(|e| LocalError::io("wait for", Path::new("crontab"), e))?;
    if !st.success() {
        return Err(LocalError::Usage(format!("`crontab -` failed ({st})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_refuse_shell_text() {
        let e = parse(
            "c",
            "# nightly\n0 3 * * 1-5 branch:main name:nightly test ci\n",
        )
        .unwrap();
        assert_eq!(e[0].schedule, "0 3 * * 1-5");
        assert_eq!(e[0].branch.as_deref(), Some("main"));
        assert_eq!(e[0].targets, ["test", "ci"]);
        for bad in [
            "0 3 * *",
            "0 3 * * * $(rm -rf ~)",
            "0 3 * * * x;y",
            "0 3 * * * who:me",
            "0 3 * * * --rev",
            "0 3 * * * branch:-x",
        ] {
            assert!(parse("c", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_block_is_spliced_in_place_idempotently_and_removed_when_empty() {
        let repo = Path::new("/src/it's");
        let e = parse("c", "*/5 * * * * name:quick test").unwrap();
        let b = block(repo, Path::new("/usr/bin/baton"), &e).unwrap();
        assert!(block(Path::new("/a%b"), Path::new("/b"), &e).is_err());
        assert!(
            b.contains("cd '/src/it'\\''s' && '/usr/bin/baton' run test >/dev/null 2>&1 # quick"),
            "{b}"
        );
        let mine = "MAILTO=me\n1 1 * * * backup\n";
        let once = splice(mine, repo, &b);
        assert!(once.starts_with(mine) && once.ends_with(&b));
        assert_eq!(splice(&once, repo, &b), once);
        let other = splice(
            &once,
            Path::new("/src/other"),
            "# >>> baton cron /src/other >>>\nx\n# <<< baton cron /src/other <<<\n",
        );
        assert_eq!(
            splice(&other, repo, ""),
            format!("{mine}# >>> baton cron /src/other >>>\nx\n# <<< baton cron /src/other <<<\n")
        );
    }
}
