//! Verified tokens kept in memory for a short while, so that a hot path (every poll, log chunk
//! and exit report of 1,000 agents) does not look each one up in the database.
//!
//! Entries are keyed by the token's SHA-256 (the plain token is never kept), hold only what
//! the database said (`TokenInfo`), and only positive answers are kept (an unknown token is
//! looked up every time, so guessing fills nothing). Every revocation made through the same
//! [`crate::Store`] forgets the matching entries at once, before it returns; a revocation
//! made by another process on the same database (`baton token revoke`) is seen once the entry
//! lapses: [`TOKEN_CACHE_TTL`] after it was verified. The table holds at most
//! [`TOKEN_CACHE_MAX`] entries; when full, lapsed entries go, and a new one is not kept while
//! it stays full (its token is then verified in the database each time, as without a cache).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::TokenInfo;

/// How long a verified token is believed without asking the database again: the bound on how
/// late a revocation made by another process takes effect.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

/// At most this many verified tokens are kept.
pub const TOKEN_CACHE_MAX: usize = 20_000;

struct Inner {
    entries: HashMap<String, (TokenInfo, Instant)>,
    /// Bumped by every invalidation: an answer read from the database before an invalidation
    /// may be stale and is not kept.
    generation: u64,
}

pub(crate) struct TokenCache {
    inner: Mutex<Inner>,
    ttl: Duration,
    max: usize,
}

impl std::fmt::Debug for TokenCache {
    /// Its size only: entries name tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.lock().entries.len())
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(TOKEN_CACHE_TTL, TOKEN_CACHE_MAX)
    }
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> TokenCache {
        TokenCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                generation: 0,
            }),
            ttl,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token with this hash if it was verified less than the TTL ago; else `Err` with the
    /// generation to hand to [`TokenCache::put`] after asking the database.
    pub(crate) fn get(&self, hash: &str, now: Instant) -> Result<TokenInfo, u64> {
        let mut inner = self.lock();
        match inner.entries.get(hash) {
            Some((info, at)) if now.saturating_duration_since(*at) < self.ttl => Ok(info.clone()),
            Some(_) => {
                inner.entries.remove(hash);
                Err(inner.generation)
            }
            None => Err(inner.generation),
        }
    }

    /// Keeps what the database said about the token with this hash, unless something was
    /// invalidated since `generation` (the answer may predate a revocation) or the table is
    /// full of live entries.
    pub(crate) fn put(&self, hash: String, info: TokenInfo, generation: u64, now: Instant) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= self.max && !inner.entries.contains_key(&hash) {
            let ttl = self.ttl;
            inner
                .entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if inner.entries.len() >= self.max {
                return;
            }
        }
        inner.entries.insert(hash, (info, now));
    }

    /// Forgets every entry `gone` matches (by hash or by what the token is), and every answer
    /// being read from the database right now.
    pub(crate) fn forget(&self, gone: impl Fn(&str, &TokenInfo) -> bool) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|hash, (info, _)| !gone(hash, info));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: i64, name: &str) -> TokenInfo {
        TokenInfo {
            id,
            name: name.to_owned(),
            user: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn an_entry_lives_for_the_ttl_only() {
        let c = TokenCache::new(Duration::from_secs(30), 10);
        let t0 = Instant::now();
        let g = c.get("h1", t0).unwrap_err();
        c.put("h1".into(), info(1, "agent:a"), g, t0);
        assert_eq!(c.get("h1", t0 + Duration::from_secs(29)).unwrap().id, 1);
        assert!(c.get("h1", t0 + Duration::from_secs(30)).is_err());
        assert_eq!(c.len(), 0, "a lapsed entry is dropped when found");
    }

    #[test]
    fn forgetting_drops_matching_entries_and_answers_in_flight() {
        let c = TokenCache::new(Duration::from_secs(30), 10);
        let t0 = Instant::now();
        for (h, id, name) in [("h1", 1, "agent:a"), ("h2", 2, "agent:b")] {
            let g = c.get(h, t0).unwrap_err();
            c.put(h.into(), info(id, name), g, t0);
        }
        // A lookup of h3 starts, then a revocation happens before its answer is kept.
        let g = c.get("h3", t0).unwrap_err();
        c.forget(|_, i| i.name == "agent:a");
        assert!(c.get("h1", t0).is_err(), "revoked by name");
        assert_eq!(c.get("h2", t0).unwrap().id, 2, "others stay");
        c.put("h3".into(), info(3, "agent:c"), g, t0);
        assert!(
            c.get("h3", t0).is_err(),
            "an answer older than a revocation is not kept"
        );
        c.forget(|h, _| h == "h2");
        assert!(c.get("h2", t0).is_err(), "revoked by hash");
    }

    #[test]
    fn the_table_is_bounded() {
        let c = TokenCache::new(Duration::from_secs(30), 3);
        let t0 = Instant::now();
        for i in 0..3 {
            let h = format!("h{i}");
            let g = c.get(&h, t0).unwrap_err();
            c.put(h, info(i, "agent:x"), g, t0);
        }
        let g = c.get("h9", t0).unwrap_err();
        c.put("h9".into(), info(9, "agent:y"), g, t0);
        assert_eq!(c.len(), 3);
        assert!(
            c.get("h9", t0).is_err(),
            "not kept while full of live entries"
        );
        // Once the others lapse, they make room.
        let later = t0 + Duration::from_secs(31);
        let g = c.get("h9", later).unwrap_err();
        c.put("h9".into(), info(9, "agent:y"), g, later);
        assert_eq!(c.get("h9", later).unwrap().id, 9);
        assert_eq!(c.len(), 1);
    }
}
