//! Accepted deliveries are durable before they are answered: the verified payload is written
//! and fsynced to `<data>/deliveries/` (mode 0600) before the delivery's row says it is pending,
//! and processing runs in a task of its own. A server that dies before the delivery's runs are
//! triggered processes it again on its next start ([`resume`]); runs record their delivery id,
//! so targets that already have a run for it are not started twice.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::http::StatusCode;

use baton_forge::{Event, Forge};

use super::Verdict;
use crate::AppState;

/// Headers never kept with a payload: they authenticate, and processing again does not need them.
const SECRET_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gitlab-token",
];

/// The headers kept with an accepted payload, for parsing it again.
pub(super) fn kept_headers(hdrs: &[(String, String)]) -> Vec<(String, String)> {
    hdrs.iter()
        .filter(|(k, _)| !SECRET_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect()
}

/// Writes `body` to a new 0600 file in `dir` and fsyncs it and the folder; returns its name.
pub(super) async fn keep_payload(dir: PathBuf, body: Bytes) -> std::io::Result<String> {
    let name = format!("{}.body", hex::encode(rand::random::<[u8; 16]>()));
    let file = name.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(&file))?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(name)
}

/// Removes a kept payload (gone already is fine).
pub(super) async fn drop_payload(dir: &Path, name: &str) {
    if let Err(e) = tokio::fs::remove_file(dir.join(name)).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove the delivery payload {name}: {e}");
    }
}

/// Processes accepted delivery `id` for repository `repo` and records its verdict; the payload
/// is removed once the verdict is recorded.
pub(super) async fn process(
    st: AppState,
    id: i64,
    repo: String,
    mut event: Event,
    payload: String,
    since: Option<baton_git::FetchTicket>,
) -> Verdict {
    #[cfg(debug_assertions)]
    test_gate().await;
    // Runs find their delivery by its id: one without a forge id gets ours.
    if event.delivery.is_none() {
        event.delivery = Some(format!("baton-delivery-{id}"));
    }
    let v = match st.sched.config().await {
        Err(e) => Verdict::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Ok(config) => match config.repos.get(&repo) {
            Some(r) => super::handle(&st, &config, r, &event, since).await,
            None => Verdict::new(
                StatusCode::NOT_FOUND,
                format!(
                    "repository {repo} is no longer in repos: (the config changed before this delivery was processed)"
                ),
            ),
        },
    };
    match st
        .store
        .finish_delivery(id, v.status.as_u16(), &v.text, &v.runs)
        .await
    {
        Ok(()) => drop_payload(&st.folders.deliveries(), &payload).await,
        // Still pending: the next start processes it again, without starting its runs twice.
        Err(e) => tracing::warn!(delivery = id, "could not record the verdict: {e}"),
    }
    v
}

/// Tests only (debug builds): processing waits until the file `BATON_TEST_DELIVERY_GATE`
/// names exists, so a test can kill the server between accepting a delivery and its runs.
#[cfg(debug_assertions)]
async fn test_gate() {
    let Some(gate) = std::env::var_os("BATON_TEST_DELIVERY_GATE") else {
        return;
    };
    while !Path::new(&gate).exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// On start: processes again every delivery left pending by the previous server, and removes
/// payload files no delivery refers to (written just before a crash, never answered).
pub async fn resume(st: &AppState) {
    let dir = st.folders.deliveries();
    let pending = match st.store.pending_deliveries().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("could not list the pending webhook deliveries: {e}");
            return;
        }
    };
    if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
        while let Ok(Some(e)) = entries.next_entry().await {
            let name = e.file_name().to_string_lossy().into_owned();
            if !pending.iter().any(|(_, p)| p.payload == name) {
                drop_payload(&dir, &name).await;
            }
        }
    }
    for (row, p) in pending {
        let lost = |why: String| Verdict::new(StatusCode::INTERNAL_SERVER_ERROR, why);
        let event = match tokio::fs::read(dir.join(&p.payload)).await {
            Err(e) => Err(lost(format!(
                "the accepted payload {} was lost before processing: {e}",
                p.payload
            ))),
            Ok(body) => match Forge::from_name(&row.forge) {
                None => Err(lost(format!("unknown forge {:?}", row.forge))),
                Some(forge) => baton_forge::parse(forge, &p.headers, &body)
                    .map_err(|e| lost(format!("the accepted payload no longer parses: {e}"))),
            },
        };
        let v = match (event, row.repo) {
            (Ok(ev), Some(repo)) => {
                tracing::info!(
                    delivery = row.id,
                    "processing a delivery accepted before a restart"
                );
                tokio::spawn(process(st.clone(), row.id, repo, ev, p.payload, None));
                continue;
            }
            (Ok(_), None) => lost("the accepted delivery names no repository".into()),
            (Err(v), _) => v,
        };
        let done = st
            .store
            .finish_delivery(row.id, v.status.as_u16(), &v.text, &[])
            .await;
        if let Err(e) = done {
            tracing::warn!(delivery = row.id, "could not record the verdict: {e}");
        }
    }
}
