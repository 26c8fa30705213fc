//! The CI cache's digest over real files: two checkouts with the same inputs have the same
//! digest (a hit); changing any one input file's content or mode, an environment value, the
//! definition, the image or the key changes it (a miss), and `differences` names what changed.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use baton_results::cache::{CacheFacts, gather_inputs};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Inputs {
    files: BTreeMap<String, (Vec<u8>, bool)>,
    env: BTreeMap<String, String>,
    definition: String,
    image: Option<String>,
    key: String,
}

fn write_tree(root: &Path, files: &BTreeMap<String, (Vec<u8>, bool)>) {
    for (path, (content, exec)) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        let mode = if *exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Never an input: not matched by the globs, or under .git.
    std::fs::write(root.join("notes.txt"), b"ignored").unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/HEAD"), b"ref: x").unwrap();
}

fn facts(i: &Inputs) -> CacheFacts {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &i.files);
    let globs = vec![
        "src/**".to_owned(),
        "*.lock".to_owned(),
        ".git/**".to_owned(),
    ];
    let files = gather_inputs(dir.path(), &globs).unwrap();
    let env: Vec<(String, Option<String>)> = i
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    CacheFacts::new(files, &i.definition, i.image.clone(), &env, &i.key)
}

fn inputs() -> impl Strategy<Value = Inputs> {
    let path = prop_oneof![
        "src/[a-c]{1,3}\\.rs",
        "src/[a-b]/[a-c]{1,2}\\.rs",
        "[a-b]\\.lock"
    ];
    (
        prop::collection::btree_map(
            path,
            (prop::collection::vec(any::<u8>(), 0..64), any::<bool>()),
            1..6,
        ),
        prop::collection::btree_map("[A-Z]{1,4}", "[a-z0-9]{0,8}", 0..3),
        "[a-z ]{0,20}",
        prop::option::of("[a-z]{1,8}:[0-9]{1,2}"),
        "[a-z0-9]{0,6}",
    )
        .prop_map(|(files, env, definition, image, key)| Inputs {
            files,
            env,
            definition,
            image,
            key,
        })
}

/// One change of one input, chosen by `which` and `n`.
fn change(i: &Inputs, which: u8, n: usize) -> (Inputs, &'static str) {
    let mut c = i.clone();
    let file = c.files.keys().nth(n % c.files.len()).unwrap().clone();
    let what = match which % 6 {
        0 => {
            c.files.get_mut(&file).unwrap().0.push(b'!');
            "content changed"
        }
        1 => {
            let e = &mut c.files.get_mut(&file).unwrap().1;
            *e = !*e;
            "mode"
        }
        2 => {
            c.env.entry("CHANGED".into()).or_default().push('x');
            "environment variable CHANGED"
        }
        3 => {
            c.definition.push('.');
            "definition"
        }
        4 => {
            c.image = Some(format!("{}-new", c.image.unwrap_or_default()));
            "image"
        }
        _ => {
            c.key.push('k');
            "key"
        }
    };
    (c, what)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn same_inputs_hit_and_any_one_change_misses(i in inputs(), which in 0u8..6, n in 0usize..8) {
        let a = facts(&i);
        let b = facts(&i);
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert!(b.differences(&a).is_empty());
        let (changed, what) = change(&i, which, n);
        let c = facts(&changed);
        prop_assert_ne!(a.digest(), c.digest());
        let diff = c.differences(&a);
        prop_assert!(diff.iter().any(|d| d.contains(what)), "{:?} should name {}", diff, what);
    }
}

#[test]
fn files_outside_the_globs_and_git_are_not_inputs_and_links_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert("src/a.rs".to_owned(), (b"fn a() {}".to_vec(), false));
    write_tree(dir.path(), &files);
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/link.rs")).unwrap();
    let found = gather_inputs(dir.path(), &["src/**".into(), "**/HEAD".into()]).unwrap();
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["src/a.rs", "src/link.rs"]);
    assert_eq!(
        found[1].sha256,
        baton_results::cache::sha256_hex(b"/etc/passwd"),
        "a link is hashed as its target's path"
    );
    let err = gather_inputs(dir.path(), &["a[".into()]).unwrap_err();
    assert!(
        err.to_string().contains("invalid cache.inputs glob"),
        "{err}"
    );
}

#[test]
fn a_checkout_made_under_another_umask_has_the_same_digest() {
    let digest_with = |mode: u32| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("src/a.rs");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"fn main() {}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        let files = gather_inputs(dir.path(), &["src/**".to_owned()]).unwrap();
        (
            files[0].mode,
            CacheFacts::new(files, "d", None, &[], "").digest(),
        )
    };
    // A server's 077 umask and a laptop's 022 write the same blob: git's mode counts.
    assert_eq!(digest_with(0o600), digest_with(0o644));
    assert_eq!(digest_with(0o644).0, 0o100644);
    assert_eq!(digest_with(0o700), digest_with(0o755));
    assert_eq!(digest_with(0o755).0, 0o100755);
    assert_ne!(digest_with(0o644).1, digest_with(0o755).1);
}
