//! Retrying with exponential backoff: a pure schedule, and a loop that follows it.

use std::future::Future;
use std::time::Duration;

/// When to retry: `first` after the first failure, multiplied by `factor` after each further one,
/// never more than `max`, for at most `attempts` tries in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub factor: u32,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    /// 5 tries, waiting 1 s, 2 s, 4 s and 8 s between them.
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            factor: 2,
            max: Duration::from_secs(60),
            attempts: 5,
        }
    }
}

impl Backoff {
    /// The wait before try number `attempt` (1-based; the first try does not wait), or `None`
    /// when there is no such try.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || attempt > self.attempts {
            return None;
        }
        if attempt == 1 {
            return Some(Duration::ZERO);
        }
        let mut d = self.first;
        for _ in 2..attempt {
            d = d.saturating_mul(self.factor).min(self.max);
        }
        Some(d.min(self.max))
    }

    /// Every wait, in order: one per try, the first being zero.
    pub fn schedule(&self) -> Vec<Duration> {
        (1..=self.attempts).filter_map(|a| self.delay(a)).collect()
    }
}

/// Runs `op(attempt)` until it succeeds or the tries run out, waiting as `backoff` says between
/// tries; returns the last error. `op` learns the attempt number (1-based) to report it.
pub async fn retry<T, E, F, Fut>(backoff: &Backoff, mut op: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => match backoff.delay(attempt + 1) {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn schedule_doubles_up_to_the_cap() {
        let b = Backoff {
            first: S(1),
            factor: 2,
            max: S(5),
            attempts: 6,
        };
        assert_eq!(b.schedule(), vec![S(0), S(1), S(2), S(4), S(5), S(5)]);
        assert_eq!(b.delay(0), None);
        assert_eq!(b.delay(7), None);
        assert_eq!(
            Backoff::default().schedule(),
            vec![S(0), S(1), S(2), S(4), S(8)]
        );
    }

    #[test]
    fn huge_factors_saturate_instead_of_overflowing() {
        let b = Backoff {
            first: S(u64::MAX / 2),
            factor: u32::MAX,
            max: S(u64::MAX),
            attempts: 40,
        };
        assert_eq!(b.delay(40), Some(S(u64::MAX)));
        let one = Backoff {
            attempts: 1,
            ..Backoff::default()
        };
        assert_eq!(one.schedule(), vec![S(0)]);
    }

    #[tokio::test]
    async fn retry_stops_at_success_or_after_the_last_try() {
        let b = Backoff {
            first: Duration::from_millis(1),
            factor: 2,
            max: Duration::from_millis(2),
            attempts: 4,
        };
        let mut seen = Vec::new();
        let got: Result<u32, String> = retry(&b, |a| {
            seen.push(a);
            async move {
                if a < 3 {
                    Err(format!("try {a}"))
                } else {
                    Ok(a)
                }
            }
        })
        .await;
        assert_eq!(got, Ok(3));
        assert_eq!(seen, vec![1, 2, 3]);

        let mut n = 0;
        let got: Result<(), String> = retry(&b, |a| {
            n += 1;
            async move { Err(format!("try {a}")) }
        })
        .await;
        assert_eq!(got, Err("try 4".to_owned()));
        assert_eq!(n, 4);
    }
}
