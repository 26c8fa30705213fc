//! `reports: {junit: [GLOB, …]}` on a task or a pipeline task: which files of the job's
//! artifacts are its JUnit XML reports (relative to `$BATON_OUTPUT_DIR`).

use super::diags::{Diags, Fields};
use crate::config::model::Reports;

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
