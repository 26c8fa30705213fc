//! Several servers on one database. Each `baton serve` takes the scheduler lease before it
//! schedules anything; while another server holds it, this one is a standby that forwards every
//! request to the active server (`baton_web::standby`) and takes the lease over once it lapses
//! (its holder died or was cut off). The active server renews the lease and fences its own
//! commits with it; the moment it learns another server holds the lease, it exits, so that one
//! server schedules. A single server takes its lease at once, and a restarted server (the same
//! id) takes its own lease back at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use baton_store::{Fence, Lease, SCHEDULER_LEASE, Store};
use chrono::{DateTime, Utc};

/// The exit status of a server that lost its lease to another (EX_TEMPFAIL: a service manager
/// starts it again, as a standby).
const LOST_LEASE_EXIT: i32 = 75;

/// This server among those that share its database.
pub(crate) struct Cluster {
    store: Store,
    /// Signs clients' addresses while this server forwards as a standby.
    key: Arc<baton_web::ClusterKey>,
    /// Its id (`--server-id`): the same across restarts.
    id: String,
    /// This process: a new one each start.
    incarnation: String,
    /// Where other servers forward requests to it.
    url: String,
    ttl: Duration,
}

impl Cluster {
    pub(crate) fn new(
        store: Store,
        key: Arc<baton_web::ClusterKey>,
        id: String,
        url: String,
        ttl: Duration,
    ) -> Cluster {
        let incarnation = format!("{:032x}", rand::random::<u128>());
        Cluster {
            store,
            key,
            id,
            incarnation,
            url,
            ttl,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// How often the lease is renewed (and a standby tries to take it).
    fn every(&self) -> Duration {
        (self.ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    async fn take(&self, now: DateTime<Utc>) -> baton_store::Result<Option<Lease>> {
        self.store
            .take_lease(
                SCHEDULER_LEASE,
                &self.id,
                &self.incarnation,
                &self.url,
                now,
                self.ttl,
            )
            .await
    }

    /// Takes the scheduler lease; while another server holds it, serves as its standby on
    /// `listener`, forwarding every request to it. Returns the fence every commit checks.
    pub(crate) async fn become_active(
        &self,
        listener: &std::net::TcpListener,
    ) -> anyhow::Result<Arc<Fence>> {
        let mut standby: Option<(
            tokio::task::JoinHandle<()>,
            tokio_util::sync::CancellationToken,
        )> = None;
        let mut failing = false;
        loop {
            let now = Utc::now();
            match self.take(now).await {
                Ok(Some(lease)) => {
                    if let Some((task, stop)) = standby.take() {
                        // In-flight forwards end; new connections reach the active stack.
                        stop.cancel();
                        task.abort();
                        println!(
                            "baton: took over the scheduler lease (epoch {}): this server is active now",
                            lease.epoch
                        );
                    }
                    tracing::info!(server = %self.id, epoch = lease.epoch, "holding the scheduler lease");
                    return Ok(Arc::new(Fence::new(&lease, SCHEDULER_LEASE, self.ttl, now)));
                }
                Ok(None) => {
                    failing = false;
                    if standby.is_none() {
                        let holder = self.store.lease(SCHEDULER_LEASE).await.ok().flatten();
                        standby = Some(self.serve_standby(listener)?);
                        let addr = listener.local_addr()?;
                        match holder {
                            Some(l) => println!(
                                "baton standby on http://{addr}: server {} at {} is active; \
                                 requests are forwarded to it, and this server takes over if its \
                                 lease lapses ({}s)",
                                l.holder,
                                l.url,
                                self.ttl.as_secs_f64()
                            ),
                            None => println!("baton standby on http://{addr}"),
                        }
                        use std::io::Write;
                        std::io::stdout().flush().ok();
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("cannot take the scheduler lease (retrying): {e}");
                }
                Err(_) => {}
            }
            tokio::time::sleep(self.every()).await;
        }
    }

    /// Serves the standby's forwarding router on a clone of `listener` until cancelled.
    fn serve_standby(
        &self,
        listener: &std::net::TcpListener,
    ) -> anyhow::Result<(
        tokio::task::JoinHandle<()>,
        tokio_util::sync::CancellationToken,
    )> {
        let clone = listener
            .try_clone()
            .context("cannot share the listening socket with the standby")?;
        let listener = tokio::net::TcpListener::from_std(clone)?;
        let standby = Arc::new(baton_web::standby::Standby::new(
            self.store.clone(),
            self.id.clone(),
            self.key.clone(),
        ));
        let app = baton_web::standby::standby_router(standby)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!("the standby stopped serving: {e}");
            }
        });
        Ok((task, stop))
    }

    /// Renews the lease every few seconds for as long as the server runs. A renewal that finds
    /// another holder ends the process at once (running jobs keep going under their
    /// supervisors; the active server re-attaches them); one that cannot reach the database is
    /// retried, and this server's commits stop being taken once its hold runs out.
    pub(crate) fn keep(self: Arc<Self>, fence: Arc<Fence>) {
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(self.every()).await;
                let now = Utc::now();
                match self.take(now).await {
                    Ok(Some(l)) if l.epoch == fence.epoch() => {
                        fence.renewed(now);
                        if failing {
                            tracing::info!("renewed the scheduler lease again");
                        }
                        failing = false;
                    }
                    Ok(_) => {
                        fence.revoke();
                        let holder = match self.store.lease(SCHEDULER_LEASE).await {
                            Ok(Some(l)) => format!("server {} (epoch {})", l.holder, l.epoch),
                            _ => "another server".to_owned(),
                        };
                        eprintln!(
                            "baton: {holder} holds the scheduler lease now: this server stops at \
                             once so that one server schedules; its running jobs keep going and \
                             the active server re-attaches them"
                        );
                        std::process::exit(LOST_LEASE_EXIT);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                "cannot renew the scheduler lease (retrying; nothing is recorded \
                                 once the hold runs out): {e}"
                            );
                        }
                        failing = true;
                    }
                }
            }
        });
    }

    /// A clean stop: the lease is given up, so a standby takes over at once.
    pub(crate) async fn release(&self) {
        if let Err(e) = self
            .store
            .release_lease(SCHEDULER_LEASE, &self.incarnation)
            .await
        {
            tracing::warn!("cannot give the scheduler lease up (it lapses by itself): {e}");
        }
    }
}

/// The default server id: the host and the data directory, so a restart is the same server
/// and servers on one host with their own data directories are not.
pub(crate) fn default_id(data: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", data.display())
}
