//! The CI cache's decisions: which earlier job a new job's digest hits, and how a hit is
//! recorded as the job's reason (so the DAG treats it like a success and the UI links to it).

use std::time::Duration;

/// The start of a cache hit's reason.
pub const CACHE_HIT: &str = "cache hit: same inputs as job ";

/// An earlier job with a digest: a hit candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCandidate {
    pub job_id: i64,
    pub run_id: i64,
    /// Whether it succeeded.
    pub success: bool,
    /// When it ended, in ms since the epoch.
    pub ended_ms: i64,
    /// It was itself a hit (its results are another job's): never a source.
    pub was_hit: bool,
}

/// The newest successful candidate with the same digest (the caller passes only those) that
/// ended within `max_age` before `now_ms` and really ran; `None`: a miss.
pub fn cache_hit(
    candidates: &[CacheCandidate],
    now_ms: i64,
    max_age: Duration,
) -> Option<CacheCandidate> {
    let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let oldest = now_ms.saturating_sub(age);
    candidates
        .iter()
        .filter(|c| c.success && !c.was_hit && c.ended_ms >= oldest)
        .max_by_key(|c| (c.ended_ms, c.job_id))
        .copied()
}

/// The reason of a job skipped by a hit on `job_id` of `run_id`.
pub fn hit_reason(job_id: i64, run_id: i64) -> String {
    format!("{CACHE_HIT}{job_id} (run {run_id})")
}

/// The job and run a skipped job's reason says it hit.
pub fn hit_of(reason: Option<&str>) -> Option<(i64, i64)> {
    let rest = reason?.strip_prefix(CACHE_HIT)?;
    let (job, run) = rest.split_once(" (run ")?;
    Some((job.parse().ok()?, run.strip_suffix(')')?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(job_id: i64, ended_ms: i64, success: bool) -> CacheCandidate {
        CacheCandidate {
            job_id,
            run_id: job_id * 10,
            success,
            ended_ms,
            was_hit: false,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_newest_success_within_max_age_is_hit() {
        let now = 40 * 86_400_000;
        let list = [
            c(1, now - 1000, false),
            c(2, now - 5000, true),
            c(3, 1, true),
        ];
        assert_eq!(cache_hit(&list, now, 30 * DAY).map(|h| h.job_id), Some(2));
        // Too old, failed, or itself a hit: a miss.
        assert_eq!(cache_hit(&[c(3, 1, true)], now, 30 * DAY), None);
        assert_eq!(cache_hit(&[c(1, now, false)], now, DAY), None);
        let mut hit = c(4, now, true);
        hit.was_hit = true;
        assert_eq!(cache_hit(&[hit], now, DAY), None);
        assert_eq!(cache_hit(&[], now, DAY), None);
    }

    proptest! {
        #[test]
        fn a_hit_reason_names_its_job_and_run(job in 1i64..i64::MAX, run in 1i64..i64::MAX) {
            prop_assert_eq!(hit_of(Some(&hit_reason(job, run))), Some((job, run)));
        }

        #[test]
        fn a_hit_is_always_a_recent_success(list in prop::collection::vec(
            (1i64..100, 0i64..1000, any::<bool>(), any::<bool>()), 0..10),
            now in 0i64..2000, age in 0u64..2) {
            let list: Vec<CacheCandidate> = list.into_iter().map(|(j, e, s, h)| CacheCandidate {
                job_id: j, run_id: j, success: s, ended_ms: e, was_hit: h }).collect();
            let max_age = Duration::from_millis(age * 500);
            match cache_hit(&list, now, max_age) {
                Some(h) => prop_assert!(h.success && !h.was_hit && h.ended_ms >= now - (age as i64) * 500),
                None => prop_assert!(!list.iter().any(|c| c.success && !c.was_hit
                    && c.ended_ms >= now - (age as i64) * 500)),
            }
        }
    }

    #[test]
    fn other_reasons_are_no_hit() {
        assert_eq!(
            hit_of(Some("skipped: dependency `a` did not succeed")),
            None
        );
        assert_eq!(hit_of(None), None);
    }
}
