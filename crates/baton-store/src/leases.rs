//! Leases: which server runs the scheduler when several share one database, and the fence that
//! keeps a server whose lease lapsed from recording anything more.
//!
//! A lease is one row. A server takes it when it lapsed (`expires_at` passed, by the taker's
//! clock) or when it is its own (the same server id: a restart takes its lease back at once);
//! the epoch goes up whenever another process (incarnation) takes it. The scheduler's commits
//! carry a [`Fence`]: each checks, in its own transaction, that the lease still has the epoch
//! this process took, and that this process's own view of it has not run out. So a server
//! that lost its lease (paused, cut off, replaced) records nothing after another took over.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Result, Store, StoreError, from_ms, ms};

/// The lease whose holder runs the scheduler.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// A lease as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The server id of its holder.
    pub holder: String,
    /// The holder's process (a new one each start).
    pub incarnation: String,
    /// Where the holder takes requests (other servers forward to it).
    pub url: String,
    pub epoch: i64,
    /// When it lapses unless renewed, by the holder's clock.
    pub expires_at: DateTime<Utc>,
}

/// What a fenced commit must still hold: the lease `name` at `epoch` for this `incarnation`.
/// Each fenced commit renews the lease for `ttl` in its own transaction; `valid_until` is how
/// long this process may act on what it committed (launch the jobs it recorded as started): a
/// quarter of the lease before it lapses, by its own clock.
#[derive(Debug)]
pub struct Fence {
    name: String,
    incarnation: String,
    epoch: i64,
    ttl: std::time::Duration,
    valid_until_ms: AtomicI64,
}

impl Fence {
    pub fn new(lease: &Lease, name: &str, ttl: std::time::Duration, now: DateTime<Utc>) -> Fence {
        let fence = Fence {
            name: name.to_owned(),
            incarnation: lease.incarnation.clone(),
            epoch: lease.epoch,
            ttl,
            valid_until_ms: AtomicI64::new(i64::MIN),
        };
        fence.renewed(now);
        fence
    }

    /// The lease was renewed at `at` (a renewal begun then succeeded).
    pub fn renewed(&self, at: DateTime<Utc>) {
        let hold = chrono::Duration::from_std(self.ttl * 3 / 4).unwrap_or(chrono::Duration::MAX);
        self.valid_until_ms.store(ms(at + hold), Ordering::SeqCst);
    }

    /// This process may no longer act as the holder (the lease is lost or given up).
    pub fn revoke(&self) {
        self.valid_until_ms.store(i64::MIN, Ordering::SeqCst);
    }

    /// Whether this process may still act as the lease's holder at `now`.
    pub fn valid(&self, now: DateTime<Utc>) -> bool {
        ms(now) < self.valid_until_ms.load(Ordering::SeqCst)
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }
}

fn lease_of(r: &sqlx::any::AnyRow) -> Result<Lease> {
    Ok(Lease {
        holder: r.try_get("holder")?,
        incarnation: r.try_get("incarnation")?,
        url: r.try_get("url")?,
        epoch: r.try_get("epoch")?,
        expires_at: from_ms(r.try_get("expires_at")?),
    })
}

impl Store {
    /// Takes or renews lease `name` for `holder`'s process `incarnation` until `now + ttl`: it
    /// is taken when it lapsed, is held by this process, or is held by an earlier process of
    /// the same server. Returns the lease when this process holds it now, `None` when another
    /// server does (read it with [`Store::lease`]).
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        incarnation: &str,
        url: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<Option<Lease>> {
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, incarnation, url, epoch, expires_at)
             VALUES ($1, $2, $3, $4, 1, $5)
             ON CONFLICT (name) DO UPDATE SET
                epoch = CASE WHEN leases.incarnation = excluded.incarnation
                             THEN leases.epoch ELSE leases.epoch + 1 END,
                holder = excluded.holder, incarnation = excluded.incarnation,
                url = excluded.url, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $6 OR leases.holder = excluded.holder
             RETURNING holder, incarnation, url, epoch, expires_at",
        )
        .bind(name)
        .bind(holder)
        .bind(incarnation)
        .bind(url)
        .bind(ms(until))
        .bind(ms(now))
        .fetch_optional(&self.lease_pool)
        .await?;
        row.as_ref().map(lease_of).transpose()
    }

    /// Lease `name` as recorded, whoever holds it (lapsed or not).
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query(
            "SELECT holder, incarnation, url, epoch, expires_at FROM leases WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.lease_pool)
        .await?;
        row.as_ref().map(lease_of).transpose()
    }

    /// Gives lease `name` up (a clean stop), so another server takes it at once; a lease this
    /// process no longer holds is left alone.
    pub async fn release_lease(&self, name: &str, incarnation: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND incarnation = $2")
            .bind(name)
            .bind(incarnation)
            .execute(&self.lease_pool)
            .await?;
        Ok(())
    }

    /// From now on every commit of scheduling state ([`Store::apply`]) checks `fence` first.
    pub fn set_fence(&self, fence: Arc<Fence>) {
        let _ = self.fence.set(fence);
    }

    /// The fence commits check, if one is set.
    pub fn fence(&self) -> Option<&Arc<Fence>> {
        self.fence.get()
    }

    /// Inside a commit's transaction, last: renews this process's lease for the fence's `ttl`
    /// (so a busy server's commits keep it) and refuses the commit unless the lease still has
    /// the epoch this process took — whether or not it lapsed meanwhile, nobody else took it.
    /// The update holds the lease row (PostgreSQL) or the database (SQLite) until the commit,
    /// so a taker waits for it and then finds the lease renewed. Returns when it renewed.
    pub(crate) async fn check_fence(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(fence) = self.fence.get() else {
            return Ok(None);
        };
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(fence.ttl).unwrap_or(chrono::Duration::MAX);
        let kept: Option<i64> = sqlx::query_scalar(
            "UPDATE leases SET expires_at = $1
             WHERE name = $2 AND incarnation = $3 AND epoch = $4 RETURNING epoch",
        )
        .bind(ms(until))
        .bind(&fence.name)
        .bind(&fence.incarnation)
        .bind(fence.epoch)
        .fetch_optional(&mut **tx)
        .await?;
        if kept.is_some() {
            return Ok(Some(now));
        }
        fence.revoke();
        let holder = sqlx::query(
            "SELECT holder, incarnation, url, epoch, expires_at FROM leases WHERE name = $1",
        )
        .bind(&fence.name)
        .fetch_optional(&mut **tx)
        .await?;
        Err(StoreError::Fenced(
            match holder.as_ref().map(lease_of).transpose()? {
                Some(l) => format!(
                    "the {} lease is now held by server {} (epoch {}, this server had epoch {})",
                    fence.name, l.holder, l.epoch, fence.epoch
                ),
                None => format!("the {} lease is gone from the database", fence.name),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Change;
    use crate::testdb::{TestDb, on_both};
    use std::time::Duration;

    const TTL: Duration = Duration::from_secs(10);

    fn mark(n: i64) -> Change {
        Change::Mark {
            target: "hb".into(),
            slot: from_ms(n),
        }
    }

    async fn a_lease_has_one_holder_until_it_lapses_and_fences_the_one_that_lost_it(db: TestDb) {
        let a = db.open().await;
        let b = db.open().await;
        let t0 = from_ms(1_000_000);
        let got = a
            .take_lease(SCHEDULER_LEASE, "a", "a-1", "http://a", t0, TTL)
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert_eq!((got.holder.as_str(), got.epoch), ("a", 1));
        a.set_fence(Arc::new(Fence::new(&got, SCHEDULER_LEASE, TTL, Utc::now())));
        a.apply(&[mark(1)]).await.expect("the holder commits");

        // Another server cannot take it while it holds; renewing keeps the epoch.
        let t1 = t0 + chrono::Duration::seconds(5);
        assert_eq!(
            b.take_lease(SCHEDULER_LEASE, "b", "b-1", "http://b", t1, TTL)
                .await
                .unwrap(),
            None
        );
        let renewed = a
            .take_lease(SCHEDULER_LEASE, "a", "a-1", "http://a", t1, TTL)
            .await
            .unwrap()
            .expect("the holder renews");
        assert_eq!(renewed.epoch, 1);
        assert_eq!(
            b.lease(SCHEDULER_LEASE).await.unwrap(),
            Some(renewed.clone())
        );

        // Lapsed: b takes it with a new epoch, and a's commits are refused from then on.
        let t2 = renewed.expires_at + chrono::Duration::milliseconds(1);
        let took = b
            .take_lease(SCHEDULER_LEASE, "b", "b-1", "http://b", t2, TTL)
            .await
            .unwrap()
            .expect("a lapsed lease is taken");
        assert_eq!((took.holder.as_str(), took.epoch), ("b", 2));
        let err = a.apply(&[mark(2)]).await.expect_err("a was fenced");
        assert!(
            matches!(&err, StoreError::Fenced(m) if m.contains("held by server b")),
            "{err}"
        );
        assert_eq!(
            b.schedule_marks().await.unwrap().get("hb"),
            Some(&from_ms(1)),
            "nothing of the fenced commit was recorded"
        );
        // a's renewal finds it lost.
        assert_eq!(
            a.take_lease(SCHEDULER_LEASE, "a", "a-1", "http://a", t2, TTL)
                .await
                .unwrap(),
            None
        );

        // A restart of server b (a new process) takes its own lease at once, with a new epoch;
        // b's release lets anyone take it.
        let again = b
            .take_lease(SCHEDULER_LEASE, "b", "b-2", "http://b", t2, TTL)
            .await
            .unwrap()
            .expect("a server's restart takes its own lease back");
        assert_eq!(again.epoch, 3);
        b.release_lease(SCHEDULER_LEASE, "b-1").await.unwrap();
        assert_eq!(b.lease(SCHEDULER_LEASE).await.unwrap(), Some(again.clone()));
        b.release_lease(SCHEDULER_LEASE, "b-2").await.unwrap();
        let c = a
            .take_lease(SCHEDULER_LEASE, "a", "a-2", "http://a", t2, TTL)
            .await
            .unwrap()
            .expect("a released lease is free");
        assert_eq!(c.epoch, 4);
    }

    async fn a_fenced_commit_renews_a_lapsed_lease_nobody_took(db: TestDb) {
        let a = db.open().await;
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        let got = a
            .take_lease(SCHEDULER_LEASE, "a", "a-1", "http://a", long_ago, TTL)
            .await
            .unwrap()
            .unwrap();
        let fence = Arc::new(Fence::new(&got, SCHEDULER_LEASE, TTL, long_ago));
        assert!(!fence.valid(Utc::now()), "its hold ran out an hour ago");
        a.set_fence(fence.clone());
        a.apply(&[mark(1)])
            .await
            .expect("nobody took it: the commit renews it");
        assert!(fence.valid(Utc::now()), "the commit renewed the hold");
        let lease = a.lease(SCHEDULER_LEASE).await.unwrap().unwrap();
        assert!(
            lease.expires_at > Utc::now(),
            "renewed in the database: {lease:?}"
        );
        assert_eq!(lease.epoch, got.epoch);
    }

    /// A SQLite backup holds no lease, so a server restored from it takes the lease at once
    /// rather than waiting for the backed-up server's to lapse.
    #[tokio::test]
    async fn a_sqlite_backup_holds_no_lease() {
        let db = TestDb::sqlite().await;
        let a = db.open().await;
        a.take_lease(SCHEDULER_LEASE, "a", "a-1", "http://a", Utc::now(), TTL)
            .await
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("baton.db");
        a.backup_sqlite(&copy).await.unwrap();
        let restored = Store::connect(&crate::Database::Sqlite(copy))
            .await
            .unwrap();
        assert_eq!(restored.lease(SCHEDULER_LEASE).await.unwrap(), None);
        assert!(
            a.lease(SCHEDULER_LEASE).await.unwrap().is_some(),
            "the original keeps its own"
        );
    }

    on_both!(
        a_lease_has_one_holder_until_it_lapses_and_fences_the_one_that_lost_it,
        a_fenced_commit_renews_a_lapsed_lease_nobody_took,
    );
}
