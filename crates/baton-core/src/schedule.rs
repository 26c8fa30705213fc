//! When periodic (`period`) and cron (`schedule`) tasks fire, and a repository's tasks with
//! `on: schedule: [CRON, ...]` (any of several expressions). After downtime a missed slot fires
//! once, not once per missed slot.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::CronSchedule;

/// A task's timing rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Every(Duration),
    Cron(CronSchedule),
    /// Every slot of any of these (`on: schedule:` lists one or more, in UTC).
    AnyCron(Vec<CronSchedule>),
}

impl Rule {
    /// The rule of `on: schedule:` expressions (UTC); `None` for an empty list.
    pub fn of_crons(crons: &[String]) -> Option<Rule> {
        let mut all: Vec<CronSchedule> = crons
            .iter()
            .map(|c| CronSchedule {
                cron: c.clone(),
                timezone: None,
            })
            .collect();
        match all.len() {
            0 => None,
            1 => all.pop().map(Rule::Cron),
            _ => Some(Rule::AnyCron(all)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {message}")]
pub struct CronError {
    pub expr: String,
    pub message: String,
}

fn next_cron(c: &CronSchedule, after: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
    let err = |message: String| CronError {
        expr: c.cron.clone(),
        message,
    };
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(&c.cron)
        .map_err(|e| err(e.to_string()))?;
    match &c.timezone {
        None => cron
            .find_next_occurrence(&after, false)
            .map_err(|e| err(e.to_string())),
        Some(tz) => {
            let tz = chrono_tz::Tz::from_str(tz).map_err(|e| err(e.to_string()))?;
            cron.find_next_occurrence(&after.with_timezone(&tz), false)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| err(e.to_string()))
        }
    }
}

/// The first slot strictly after `mark`.
pub fn next_slot(rule: &Rule, mark: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
    match rule {
        Rule::Every(d) => {
            Ok(mark + chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::MAX))
        }
        Rule::Cron(c) => next_cron(c, mark),
        Rule::AnyCron(all) => {
            let mut next: Option<DateTime<Utc>> = None;
            for c in all {
                let t = next_cron(c, mark)?;
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            next.ok_or_else(|| CronError {
                expr: String::new(),
                message: "no cron expression".into(),
            })
        }
    }
}

/// What the scheduler does with a timed task at `now`, given the last slot it fired for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Fire one run now (however many slots were missed).
    pub fire: bool,
    /// The new mark to store.
    pub mark: DateTime<Utc>,
    /// When to look again.
    pub next: DateTime<Utc>,
}

/// A task with no mark yet starts counting from `now` (it does not fire on first sight).
pub fn due(rule: &Rule, mark: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<Due, CronError> {
    let Some(mark) = mark else {
        return Ok(Due {
            fire: false,
            mark: now,
            next: next_slot(rule, now)?,
        });
    };
    let slot = next_slot(rule, mark)?;
    if slot > now {
        return Ok(Due {
            fire: false,
            mark,
            next: slot,
        });
    }
    // Fire once; the new mark is the latest slot not after now, so missed slots collapse.
    let mut latest = slot;
    let mut guard = 0;
    loop {
        let n = next_slot(rule, latest)?;
        if n > now || guard > 100_000 {
            break;
        }
        latest = n;
        guard += 1;
    }
    if let Rule::Every(_) = rule {
        latest = now;
    }
    Ok(Due {
        fire: true,
        mark: latest,
        next: next_slot(rule, latest)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, s).unwrap()
    }

    #[test]
    fn period_fires_once_after_downtime() {
        let rule = Rule::Every(Duration::from_secs(3600));
        let d = due(&rule, Some(t(1, 0, 0)), t(5, 30, 0)).unwrap();
        assert!(d.fire);
        assert_eq!(d.mark, t(5, 30, 0));
        assert_eq!(d.next, t(6, 30, 0));
        let again = due(&rule, Some(d.mark), t(5, 30, 1)).unwrap();
        assert!(!again.fire);
    }

    #[test]
    fn new_task_waits_a_full_period() {
        let rule = Rule::Every(Duration::from_secs(60));
        let d = due(&rule, None, t(1, 0, 0)).unwrap();
        assert!(!d.fire);
        assert_eq!(d.next, t(1, 1, 0));
    }

    #[test]
    fn cron_missed_slots_collapse_to_one() {
        let rule = Rule::Cron(CronSchedule {
            cron: "*/15 * * * *".into(),
            timezone: None,
        });
        let d = due(&rule, Some(t(1, 0, 0)), t(2, 7, 0)).unwrap();
        assert!(d.fire);
        assert_eq!(d.mark, t(2, 0, 0));
        assert_eq!(d.next, t(2, 15, 0));
    }

    #[test]
    fn any_of_several_crons_fires_at_the_earliest_and_collapses_missed_slots() {
        let rule = Rule::of_crons(&["0 3 * * *".into(), "30 * * * *".into()]).unwrap();
        assert!(matches!(rule, Rule::AnyCron(_)));
        assert_eq!(next_slot(&rule, t(1, 0, 0)).unwrap(), t(1, 30, 0));
        assert_eq!(next_slot(&rule, t(2, 30, 0)).unwrap(), t(3, 0, 0));
        let d = due(&rule, Some(t(1, 0, 0)), t(3, 10, 0)).unwrap();
        assert!(d.fire);
        assert_eq!(d.mark, t(3, 0, 0));
        assert_eq!(d.next, t(3, 30, 0));
        assert!(!due(&rule, Some(d.mark), t(3, 29, 59)).unwrap().fire);
    }

    #[test]
    fn one_cron_is_a_plain_cron_rule_and_none_is_no_rule() {
        assert_eq!(
            Rule::of_crons(&["* * * * *".into()]),
            Some(Rule::Cron(CronSchedule {
                cron: "* * * * *".into(),
                timezone: None
            }))
        );
        assert_eq!(Rule::of_crons(&[]), None);
    }

    #[test]
    fn cron_respects_time_zone() {
        let rule = Rule::Cron(CronSchedule {
            cron: "0 9 * * *".into(),
            timezone: Some("Europe/Berlin".into()),
        });
        // 09:00 in Berlin in January is 08:00 UTC.
        assert_eq!(next_slot(&rule, t(0, 0, 0)).unwrap(), t(8, 0, 0));
    }
}
