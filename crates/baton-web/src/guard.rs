//! Defences of the password login against floods. `POST /login` needs no account, so before any
//! password hashing a login form must carry a CSRF token this server issued (an HMAC, under a key
//! that lives only in the server's memory, over a random nonce and an expiry); argon2 work is
//! bounded to one verification per core at a time (the others wait briefly, then get `429`); and
//! failed logins back off exponentially per source address and per user name (the record resets
//! on success). The table of failures has a fixed size: when full, the oldest record goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a login form's token is good for (the cookie lives as long).
pub(crate) const LOGIN_TOKEN_SECS: u64 = 3600;
/// How long a login waits for a hashing slot before it is told to retry.
const HASH_WAIT: Duration = Duration::from_secs(3);
/// Failed logins allowed before the backoff starts (per address and per user name).
const FREE_FAILURES: u32 = 3;
/// The first backoff; each further failure doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A record with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// At most this many records (addresses and user names together).
const MAX_RECORDS: usize = 10_000;

/// Why a login form's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// No token, cookie and field differ, or the token is not one this server issued.
    Forged,
    Expired,
}

/// How long to wait after `failures` failed logins: nothing for the first few, then doubling.
fn backoff(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// What a failed-login record is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// The source address (IPv6: its /64, which one host usually holds whole).
    Addr(IpAddr),
    User(String),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

struct Inner {
    key: [u8; 32],
    hashing: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    records: Mutex<HashMap<Key, Record>>,
}

/// The login's flood defences, shared by every request.
#[derive(Clone)]
pub struct LoginGuard {
    inner: Arc<Inner>,
}

impl Default for LoginGuard {
    /// A fresh signing key and one hashing slot per core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoginGuard::new(cores)
    }
}

impl LoginGuard {
    /// A guard with `slots` concurrent password verifications.
    pub fn new(slots: usize) -> LoginGuard {
        let slots = slots.max(1);
        LoginGuard {
            inner: Arc::new(Inner {
                key: rand::random(),
                hashing: Arc::new(Semaphore::new(slots)),
                waiting: AtomicUsize::new(0),
                max_waiting: slots * 8,
                records: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.inner.key)
            .expect("HMAC takes a key of any length");
        m.update(b"baton-login-csrf\0");
        m.update(payload.as_bytes());
        m
    }

    /// A new login form token: `<expiry>.<nonce>.<mac>`, all cookie-safe characters.
    pub(crate) fn issue_token(&self, now_unix: u64) -> String {
        let nonce: [u8; 16] = rand::random();
        let payload = format!("{}.{}", now_unix + LOGIN_TOKEN_SECS, hex::encode(nonce));
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex::encode(tag))
    }

    /// Checks the login form's token: the cookie and the form field must be the same token,
    /// issued by this server and not expired.
    pub(crate) fn check_token(
        &self,
        cookie: &str,
        field: &str,
        now_unix: u64,
    ) -> Result<(), TokenError> {
        if cookie.is_empty() || !crate::auth::same_secret(cookie, field) {
            return Err(TokenError::Forged);
        }
        let (payload, tag) = cookie.rsplit_once('.').ok_or(TokenError::Forged)?;
        let tag = hex::decode(tag).map_err(|_| TokenError::Forged)?;
        self.mac(payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Forged)?;
        let expiry: u64 = payload
            .split_once('.')
            .and_then(|(e, _)| e.parse().ok())
            .ok_or(TokenError::Forged)?;
        if expiry < now_unix {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// A slot for one password verification: waits up to a few seconds, or fails at once when
    /// many already wait. `Err` carries the seconds to tell the client to wait.
    pub(crate) async fn hashing_slot(&self) -> Result<OwnedSemaphorePermit, u64> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if let Ok(p) = self.inner.hashing.clone().try_acquire_owned() {
            return Ok(p);
        }
        let before = self.inner.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.inner.waiting);
        if before >= self.inner.max_waiting {
            return Err(1);
        }
        match tokio::time::timeout(HASH_WAIT, self.inner.hashing.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(1),
        }
    }

    fn keys(addr: IpAddr, user: &str) -> [Key; 2] {
        let addr = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    IpAddr::from(o)
                }
            },
            v4 => v4,
        };
        // Real names have at most 64 characters; a longer one is kept by its start.
        let user: String = user.chars().take(64).collect();
        [Key::Addr(addr), Key::User(user)]
    }

    /// How long logins from `addr` or for `user` must still wait; `None` when they may try now.
    pub(crate) fn blocked(&self, addr: IpAddr, user: &str, now: Instant) -> Option<Duration> {
        let records = self.inner.records.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(addr, user)
            .iter()
            .filter_map(|k| records.get(k))
            .filter(|r| now.duration_since(r.last) < FORGET_AFTER)
            .filter_map(|r| r.blocked_until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max()
    }

    /// Starts a login attempt: refused (with the time left) while `addr` or `user` is backing
    /// off; else counted as a failure until [`LoginGuard::succeeded`] says otherwise, so that
    /// parallel attempts cannot all slip in before the first one fails.
    pub(crate) fn begin(&self, addr: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.blocked(addr, user, now) {
            return Err(wait);
        }
        let mut records = self.inner.records.lock().unwrap_or_else(|e| e.into_inner());
        for k in Self::keys(addr, user) {
            if !records.contains_key(&k) && records.len() >= MAX_RECORDS {
                let oldest = records
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    records.remove(&oldest);
                }
            }
            let r = records.entry(k).or_insert(Record {
                failures: 0,
                blocked_until: now,
                last: now,
            });
            if now.duration_since(r.last) >= FORGET_AFTER {
                r.failures = 0;
            }
            r.failures += 1;
            r.last = now;
            r.blocked_until = r.blocked_until.max(now + backoff(r.failures));
        }
        Ok(())
    }

    /// The password was wrong: the backoff counts from now, when the answer goes out (the
    /// hashing may have taken longer than the backoff itself).
    pub(crate) fn failed(&self, addr: IpAddr, user: &str, now: Instant) {
        let mut records = self.inner.records.lock().unwrap_or_else(|e| e.into_inner());
        for k in Self::keys(addr, user) {
            if let Some(r) = records.get_mut(&k) {
                r.last = r.last.max(now);
                r.blocked_until = r.blocked_until.max(now + backoff(r.failures));
            }
        }
    }

    /// A correct password: the address and the user name start afresh.
    pub(crate) fn succeeded(&self, addr: IpAddr, user: &str) {
        let mut records = self.inner.records.lock().unwrap_or_else(|e| e.into_inner());
        for k in Self::keys(addr, user) {
            records.remove(&k);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.records.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_issued_here_and_fresh() {
        let g = LoginGuard::new(1);
        let t = g.issue_token(1000);
        assert_eq!(g.check_token(&t, &t, 1000), Ok(()));
        assert_eq!(g.check_token(&t, "", 1000), Err(TokenError::Forged));
        assert_eq!(g.check_token("", "", 1000), Err(TokenError::Forged));
        assert_eq!(g.check_token("abc", "abc", 1000), Err(TokenError::Forged));
        let forged = format!("9999999999.{}.{}", "00".repeat(16), "11".repeat(32));
        assert_eq!(
            g.check_token(&forged, &forged, 1000),
            Err(TokenError::Forged)
        );
        // Another server's key (or this one's before a restart) does not verify.
        let other = LoginGuard::new(1).issue_token(1000);
        assert_eq!(g.check_token(&other, &other, 1000), Err(TokenError::Forged));
        assert_eq!(
            g.check_token(&t, &t, 1000 + LOGIN_TOKEN_SECS + 1),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn failures_back_off_and_success_resets() {
        let g = LoginGuard::new(1);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(g.begin(a, "alice", t0).is_ok());
        }
        assert_eq!(
            g.begin(a, "bob", t0),
            Err(FIRST_BACKOFF),
            "the address backs off"
        );
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(
            g.begin(b, "alice", t0),
            Err(FIRST_BACKOFF),
            "so does the name"
        );
        let t1 = t0 + FIRST_BACKOFF;
        assert!(g.begin(a, "alice", t1).is_ok());
        assert_eq!(g.blocked(a, "x", t1), Some(FIRST_BACKOFF * 2), "doubled");
        // The backoff counts from the answer, not from the start of a slow check.
        let t2 = t1 + Duration::from_secs(5);
        g.failed(a, "alice", t2);
        assert_eq!(g.blocked(a, "x", t2), Some(FIRST_BACKOFF * 2));
        g.succeeded(a, "alice");
        assert_eq!(g.blocked(a, "alice", t2), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let g = LoginGuard::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_RECORDS as u32) {
            let a = IpAddr::from(i.to_be_bytes());
            g.begin(a, &format!("u{i}"), t0 + Duration::from_millis(i.into()))
                .unwrap();
        }
        assert_eq!(g.len(), MAX_RECORDS);
        // IPv6 addresses of one /64 share a record.
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::2".parse().unwrap();
        let t = t0 + Duration::from_secs(100);
        for _ in 0..FREE_FAILURES {
            g.begin(x, "someone", t).unwrap();
        }
        assert!(g.blocked(y, "other", t).is_some());
        assert_eq!(g.len(), MAX_RECORDS);
    }
}
