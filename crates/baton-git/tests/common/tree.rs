//! Trees compared by content: a directory's files, modes and links, and `git archive` of a
//! commit unpacked for comparison.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use baton_git::Oid;

use super::Upstream;

/// What a directory holds: path → (kind and mode, contents or link target), `.git` left out.
pub fn snapshot(root: &Path) -> BTreeMap<String, (String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(
                    rel,
                    ("link".into(), target.to_str().unwrap().as_bytes().to_vec()),
                );
            } else if meta.is_dir() {
                out.insert(rel.clone(), ("dir".into(), Vec::new()));
                walk(root, &path, out);
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                let kind = if exec { "exec" } else { "file" };
                out.insert(rel, (kind.into(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `git archive` of `commit` unpacked into `dest`.
pub fn archive(repo: &Path, commit: &Oid, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let file = dest.with_extension("tar");
    super::git_in(
        repo,
        &[
            "archive",
            "--format=tar",
            "-o",
            file.to_str().unwrap(),
            commit.as_str(),
        ],
        0,
    );
    let st = Command::new("tar")
        .args(["-xf", file.to_str().unwrap(), "-C", dest.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn sample_repo() -> (Upstream, Oid, Oid) {
    let up = Upstream::new();
    up.write("README.md", b"# hello\n");
    up.write("src/main.rs", b"fn main() {}\n");
    up.write("dir with spaces/été.txt", b"unicode name\n");
    up.write("bin/run", b"#!/bin/sh\necho run\n");
    let run = up.path().join("bin/run");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../README.md", up.path().join("src/readme-link")).unwrap();
    up.write("data.bin", &(0..=255u8).collect::<Vec<_>>());
    up.write("crlf.txt", b"a\r\nb\r\n");
    let first = up.commit("first");
    up.write("README.md", b"# hello again\n");
    std::fs::remove_file(up.path().join("data.bin")).unwrap();
    let second = up.commit("second");
    (up, first, second)
}
