//! Moving stored runs between repositories (only the run refs, only the missing ones) and
//! pruning old ones.

use std::collections::BTreeSet;

use baton_git::{LocalRepo, RUN_REF_PREFIXES};
use chrono::{DateTime, Duration, Utc};

use crate::LocalError;
use crate::history::{self, RunRef};
use crate::record::run_id_time;

/// How old a run must be to go when neither `--older-than` nor `--keep-last` is given.
pub const DEFAULT_MAX_AGE_DAYS: i64 = 30;

/// Pushes the runs `remote` lacks; returns their refs.
pub async fn push(repo: &LocalRepo, remote: &str) -> Result<Vec<String>, LocalError> {
    let there = remote_names(repo, remote).await?;
    let missing: Vec<String> = history::list(repo)
        .await?
        .into_iter()
        .map(|r| r.refname)
        .filter(|r| !there.contains(r))
        .collect();
    repo.push_refs(remote, &missing, false).await?;
    Ok(missing)
}

/// Fetches the runs this repository lacks from `remote`; returns their refs.
pub async fn pull(repo: &LocalRepo, remote: &str) -> Result<Vec<String>, LocalError> {
    let here: BTreeSet<String> = history::list(repo)
        .await?
        .into_iter()
        .map(|r| r.refname)
        .collect();
    let missing: Vec<String> = remote_names(repo, remote)
        .await?
        .into_iter()
        .filter(|r| !here.contains(r))
        .collect();
    repo.fetch_refs(remote, &missing).await?;
    Ok(missing)
}

async fn remote_names(repo: &LocalRepo, remote: &str) -> Result<BTreeSet<String>, LocalError> {
    Ok(repo
        .remote_refs(remote, RUN_REF_PREFIXES)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// What `baton prune` removes.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Runs older than this go (default [`DEFAULT_MAX_AGE_DAYS`] when `keep_last` is unset).
    pub older_than: Option<Duration>,
    /// The newest this many runs stay, whatever their age.
    pub keep_last: Option<usize>,
    /// Prune the runs on this remote instead of the local ones.
    pub remote: Option<String>,
    /// Delete; without it only list.
    pub yes: bool,
    /// After deleting local refs, let `git gc` delete unreachable objects at once.
    pub gc_now: bool,
}

/// What prune found, and whether it deleted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The runs that go (or would go), oldest first.
    pub doomed: Vec<RunRef>,
    /// Runs whose age cannot be told from their id (kept).
    pub undated: Vec<RunRef>,
    pub deleted: bool,
}

/// Lists the runs `opts` selects and, with `opts.yes`, deletes them (locally then `git gc`, or
/// on the remote). The one entry point of `baton prune` for stored runs.
pub async fn prune_refs(
    repo: &LocalRepo,
    opts: &PruneOptions,
    now: DateTime<Utc>,
) -> Result<Pruned, LocalError> {
    let runs = match &opts.remote {
        None => history::list(repo).await?,
        Some(remote) => {
            let mut runs: Vec<RunRef> = repo
                .remote_refs(remote, RUN_REF_PREFIXES)
                .await?
                .into_iter()
                .filter_map(|(name, oid)| RunRef::parse(&name, oid))
                .collect();
            runs.sort_by(|a, b| a.id.cmp(&b.id));
            runs
        }
    };
    let (doomed, undated) = select(runs, opts, now);
    let names: Vec<String> = doomed.iter().map(|r| r.refname.clone()).collect();
    let deleted = opts.yes && !names.is_empty();
    if deleted {
        match &opts.remote {
            Some(remote) => repo.push_refs(remote, &names, true).await?,
            None => {
                repo.delete_refs(&names).await?;
                repo.gc(opts.gc_now).await?;
            }
        }
    }
    Ok(Pruned {
        doomed,
        undated,
        deleted,
    })
}

/// The runs (sorted oldest first) that go: not among the newest `keep_last`, and older than
/// `older_than`; and those whose age is unknown.
fn select(
    runs: Vec<RunRef>,
    opts: &PruneOptions,
    now: DateTime<Utc>,
) -> (Vec<RunRef>, Vec<RunRef>) {
    let max_age = match (opts.older_than, opts.keep_last) {
        (Some(age), _) => Some(age),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::days(DEFAULT_MAX_AGE_DAYS)),
    };
    let keep_from = opts
        .keep_last
        .map_or(runs.len(), |n| runs.len().saturating_sub(n));
    let (mut doomed, mut undated) = (Vec::new(), Vec::new());
    for (i, run) in runs.into_iter().enumerate() {
        if i >= keep_from {
            continue;
        }
        match (max_age, run_id_time(&run.id)) {
            (None, _) => doomed.push(run),
            (Some(age), Some(t)) if now - t > age => doomed.push(run),
            (Some(_), Some(_)) => {}
            (Some(_), None) => undated.push(run),
        }
    }
    (doomed, undated)
}

/// `30d`, `12h`, `90m`, `2w` as a duration.
pub fn parse_age(text: &str) -> Result<Duration, LocalError> {
    let bad = || {
        LocalError::Usage(format!(
            "--older-than {text:?}: give a number and a unit, like 30d, 12h, 90m or 2w"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = text[..split].parse().map_err(|_| bad())?;
    match &text[split..] {
        "m" => Ok(Duration::minutes(n)),
        "h" => Ok(Duration::hours(n)),
        "d" => Ok(Duration::days(n)),
        "w" => Ok(Duration::weeks(n)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_git::Oid;

    fn run(id: &str) -> RunRef {
        RunRef {
            refname: format!("refs/baton-runs/c/{id}"),
            key: "c".into(),
            id: id.into(),
            jci: false,
            oid: Oid::parse(&"a".repeat(40)).unwrap(),
        }
    }

    fn ids(v: &[RunRef]) -> Vec<&str> {
        v.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn age_and_keep_last_choose_together() {
        let now = DateTime::parse_from_rfc3339("2026-12-31T00:00:00Z")
            .unwrap()
            .to_utc();
        let runs = vec![
            run("20261101T000000000Z-000001"),
            run("20261205T000000000Z-000002"),
            run("20261230T000000000Z-000003"),
            run("jci-style-id"),
        ];
        let default = PruneOptions::default();
        let (doomed, undated) = select(runs.clone(), &default, now);
        assert_eq!(ids(&doomed), ["20261101T000000000Z-000001"]);
        assert_eq!(ids(&undated), ["jci-style-id"]);
        let keep = PruneOptions {
            keep_last: Some(2),
            ..PruneOptions::default()
        };
        let (doomed, _) = select(runs.clone(), &keep, now);
        assert_eq!(
            ids(&doomed),
            ["20261101T000000000Z-000001", "20261205T000000000Z-000002"]
        );
        let both = PruneOptions {
            older_than: Some(Duration::days(60)),
            keep_last: Some(1),
            ..PruneOptions::default()
        };
        assert!(select(runs, &both, now).0.is_empty());
    }

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_age("2w").unwrap(), Duration::weeks(2));
        assert!(parse_age("30").is_err() && parse_age("d").is_err() && parse_age("3y").is_err());
    }
}
