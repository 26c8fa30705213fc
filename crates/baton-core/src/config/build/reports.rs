//! `reports: {junit: [GLOB, …]}` on a task or a pipeline task: which files of the job's
//! artifacts are its JUnit XML reports (relative to `$BATON_OUTPUT_DIR`), and `artifacts:`,
//! which files of its working directory become artifacts.

use super::diags::{Diags, Fields};
use crate::config::model::{Artifacts, Reports};
use crate::config::node::Value;

const REPORTS_KEYS: &[&str] = &["junit"];

pub(super) fn build_reports(d: &mut Diags<'_>, f: &Fields<'_>, what: &str) -> Reports {
    let Some(e) = f.get("reports") else {
        return Reports::default();
    };
    let what = format!("\"reports\" of {what}");
    let Some(rf) = d.fields(e.key.file, e.value, &what, REPORTS_KEYS) else {
        return Reports::default();
    };
    let mut junit = Vec::new();
    for (glob, loc) in d.string_list(rf.get("junit")).unwrap_or_default() {
        if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
            d.err(
                loc,
                format!(
                    "reports.junit glob {glob:?} must be relative to the job's output folder \
                     ($BATON_OUTPUT_DIR), without \"..\""
                ),
            );
        } else if let Err(err) = globset::Glob::new(&glob) {
            d.err(loc, format!("invalid reports.junit glob {glob:?}: {err}"));
        } else {
            junit.push(glob);
        }
    }
    Reports { junit }
}

const ARTIFACTS_KEYS: &[&str] = &["paths", "required"];

/// `artifacts: [GLOB, …]` or `artifacts: {paths: [GLOB, …], required: BOOL}`: files of the
/// job's working directory to keep, as globs relative to it.
pub(super) fn build_artifacts(d: &mut Diags<'_>, f: &Fields<'_>, what: &str) -> Artifacts {
    let Some(e) = f.get("artifacts") else {
        return Artifacts::default();
    };
    let (list, required) = if matches!(e.value.value, Value::Map(_)) {
        let what = format!("\"artifacts\" of {what}");
        let Some(af) = d.fields(e.key.file, e.value, &what, ARTIFACTS_KEYS) else {
            return Artifacts::default();
        };
        let required = d.boolean(af.get("required")).unwrap_or(false);
        (d.string_list(af.get("paths")).unwrap_or_default(), required)
    } else {
        (d.string_list(Some(e)).unwrap_or_default(), false)
    };
    let mut paths = Vec::new();
    for (glob, loc) in list {
        match artifact_glob_problem(&glob) {
            Some(why) => d.err(loc, format!("artifacts glob {glob:?} {why}")),
            None => paths.push(glob),
        }
    }
    Artifacts { paths, required }
}

/// Why `glob` cannot name artifacts, if it cannot: it must stay inside the working directory,
/// be one line, and use no `{a,b}` alternatives (every worker matches it the same way, an SSH
/// worker with bash's own globbing).
fn artifact_glob_problem(glob: &str) -> Option<String> {
    if glob.is_empty() {
        return Some("is empty".into());
    }
    if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
        return Some(
            "must be relative to the job's working directory (its checkout), without \"..\"".into(),
        );
    }
    if glob.contains(['\n', '\r', '\0', '\\']) {
        return Some("must be one line without backslashes".into());
    }
    if glob.contains(['{', '}']) {
        return Some("uses {…} alternatives: list each alternative as its own glob".into());
    }
    globset::Glob::new(glob)
        .err()
        .map(|err| format!("is invalid: {err}"))
}

#[cfg(test)]
mod tests {
    use super::artifact_glob_problem;

    #[test]
    fn artifact_globs_stay_inside_the_checkout() {
        for ok in [
            "target/*.tar.gz",
            "reports/**",
            "**/junit.xml",
            ".hidden/[ab]*",
        ] {
            assert_eq!(artifact_glob_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a\nb",
            "{a,b}",
            "a\\b",
            "[z-a]",
        ] {
            assert!(
                artifact_glob_problem(bad).is_some(),
                "{bad:?} must be refused"
            );
        }
    }
}
