//! Where ended jobs' artifacts are kept, behind one interface ([`Shelf`]): the data directory
//! (each job attempt's `out/`, the default), or an S3-compatible bucket
//! (`server.artifacts.s3`, through `object_store`) that several servers can share.
//!
//! With a bucket, the collector uploads a job's `out/` once the job has ended (its reports
//! parsed first): every file under `jobs/JOB/ATTEMPT/files/`, streamed in parts, then the
//! manifest `jobs/JOB/ATTEMPT/manifest.json` (paths and sizes) last. Only a manifest lists a
//! job's stored artifacts, so an upload cut short lists nothing; its objects are deleted, the
//! files stay in the data directory (listed and served from there) and the job's results get a
//! warning saying the upload failed (until a retry uploads them: then the warning goes, from
//! the stored tree, its counts and the run's `report.html`). Once the manifest is written the
//! local `out/` is removed.
//! Every upload is recorded as pending first (`<data>/uploads/JOB-ATTEMPT`, fsynced; see
//! [`crate::pending`], which also keeps retention out of the way) and forgotten once its
//! manifest is written; the collector (`results::start_retries`) retries the pending ones in
//! the background with backoff, and at start (a failure, or a crash in the middle of an upload).
//! Retention deletes a job's objects with its rows ([`ArtifactStore::delete_job`]).
//! The bucket's keys never reach a log line, an API answer or a page.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::AppState;

/// Files up to this size go up in one request; bigger ones in parts of this size.
const PART: usize = 8 * 1024 * 1024;
/// The most files of one job uploaded.
const MAX_FILES: usize = 100_000;
/// How the message of a failed upload starts (the job's results carry it until a retry
/// uploads them).
pub(crate) const NOT_UPLOADED: &str = "artifacts not uploaded to ";

/// An S3-compatible bucket holding artifacts.
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// `s3://BUCKET` (with the endpoint), for messages; never a key.
    label: String,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArtifactStore({})", self.label)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    files: Vec<(String, u64)>,
}

fn job_prefix(job: i64) -> Key {
    Key::from_iter(["jobs".to_owned(), job.to_string()])
}

fn attempt_prefix(job: i64, attempt: u32) -> Key {
    Key::from_iter(["jobs".to_owned(), job.to_string(), attempt.to_string()])
}

fn manifest_key(job: i64, attempt: u32) -> Key {
    attempt_prefix(job, attempt).join("manifest.json")
}

fn file_key(job: i64, attempt: u32, rel: &str) -> Key {
    let mut k = attempt_prefix(job, attempt).join("files");
    for part in rel.split('/') {
        k = k.join(part);
    }
    k
}

impl ArtifactStore {
    /// The bucket `def` names, with its keys; nothing is contacted yet.
    pub fn s3(def: &baton_core::config::S3Def) -> Result<ArtifactStore, String> {
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&def.bucket)
            .with_region(&def.region)
            .with_access_key_id(def.access_key.value.expose())
            .with_secret_access_key(def.secret_key.value.expose())
            // A bucket that is down fails an upload within seconds, not minutes.
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: std::time::Duration::from_secs(10),
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(std::time::Duration::from_secs(5)),
            );
        let label = match &def.endpoint {
            Some(e) => {
                b = b
                    .with_endpoint(e)
                    .with_allow_http(e.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
                format!("s3://{} at {e}", def.bucket)
            }
            None => format!("s3://{}", def.bucket),
        };
        let store = b.build().map_err(|e| {
            format!("server.artifacts.s3: cannot set up {label}: {e} (hint: check bucket, endpoint and region)")
        })?;
        Ok(ArtifactStore {
            store: Arc::new(store),
            label,
        })
    }

    /// Where the artifacts go, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Uploads every regular file of `out` (never through a symlink), then the manifest.
    /// On failure the objects already written are deleted and nothing is listed.
    pub async fn upload(&self, job: i64, attempt: u32, out: PathBuf) -> Result<usize, String> {
        let dir = out.clone();
        let files =
            tokio::task::spawn_blocking(move || crate::artifacts::list_all(&dir, MAX_FILES))
                .await
                .map_err(|e| e.to_string())?;
        let mut done: Vec<Key> = Vec::new();
        let result = self.put_all(job, attempt, &out, &files, &mut done).await;
        if let Err(e) = result {
            for k in &done {
                let _ = self.store.delete(k).await;
            }
            return Err(format!("{NOT_UPLOADED}{}: {e}", self.label));
        }
        Ok(files.len())
    }

    async fn put_all(
        &self,
        job: i64,
        attempt: u32,
        out: &std::path::Path,
        files: &[(String, u64)],
        done: &mut Vec<Key>,
    ) -> Result<(), String> {
        let mut listed = Vec::with_capacity(files.len());
        for (rel, _) in files {
            let key = file_key(job, attempt, rel);
            let (o, r) = (out.to_path_buf(), rel.clone());
            let Some(a) = tokio::task::spawn_blocking(move || crate::artifacts::open(&o, &r))
                .await
                .map_err(|e| e.to_string())?
            else {
                // The job has ended: nothing may change its files now.
                return Err(format!("{rel} changed or vanished while it was uploaded"));
            };
            let size = a.size;
            done.push(key.clone());
            self.put_file(&key, a.file, size)
                .await
                .map_err(|e| format!("{rel}: {e}"))?;
            listed.push((rel.clone(), size));
        }
        let manifest =
            serde_json::to_vec(&Manifest { files: listed }).map_err(|e| e.to_string())?;
        let key = manifest_key(job, attempt);
        done.push(key.clone());
        self.store
            .put(&key, PutPayload::from(manifest))
            .await
            .map_err(|e| format!("the manifest: {e}"))?;
        Ok(())
    }

    /// One file, read on the blocking pool a part at a time (memory stays at a few parts).
    async fn put_file(&self, key: &Key, file: std::fs::File, size: u64) -> Result<(), String> {
        let file = Arc::new(std::sync::Mutex::new(file));
        let read_part = |want: usize| {
            let file = file.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut buf = Vec::with_capacity(want);
                    let mut f = file.lock().map_err(|e| e.to_string())?;
                    (&mut *f)
                        .take(want as u64)
                        .read_to_end(&mut buf)
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(buf)
                })
                .await
                .map_err(|e| e.to_string())?
            }
        };
        if size <= PART as u64 {
            let bytes = read_part(PART).await?;
            return self
                .store
                .put(key, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| e.to_string())?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        loop {
            let part = match read_part(PART).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            };
            if part.is_empty() {
                break;
            }
            if let Err(e) = w.wait_for_capacity(2).await {
                return Err(e.to_string());
            }
            w.write(&part);
        }
        w.finish().await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// The job attempt's stored artifacts (paths and sizes); `None` when it has no manifest.
    pub async fn listing(
        &self,
        job: i64,
        attempt: u32,
    ) -> Result<Option<Vec<(String, u64)>>, String> {
        match self.store.get(&manifest_key(job, attempt)).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| e.to_string())?;
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("manifest of job {job} unreadable: {e}"))?;
                Ok(Some(m.files))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!(
                "cannot read the artifacts of job {job} from {}: {e}",
                self.label
            )),
        }
    }

    /// `len` bytes from `start` of one stored file, streamed.
    pub async fn read(
        &self,
        job: i64,
        attempt: u32,
        rel: &str,
        start: u64,
        len: u64,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, String> {
        if len == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(start..start + len)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&file_key(job, attempt, rel), opts)
            .await
            .map_err(|e| e.to_string())?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }

    /// Every stored object of `job` (all its attempts), with its size.
    async fn objects_of(&self, job: i64) -> Result<Vec<(Key, u64)>, String> {
        self.store
            .list(Some(&job_prefix(job)))
            .map_ok(|m| (m.location, m.size))
            .try_collect()
            .await
            .map_err(|e| format!("cannot list job {job}'s artifacts in {}: {e}", self.label))
    }

    /// The bytes `job`'s stored objects take in the bucket (all its attempts, manifests too).
    pub async fn job_bytes(&self, job: i64) -> Result<u64, String> {
        Ok(self.objects_of(job).await?.iter().map(|(_, n)| n).sum())
    }

    /// Deletes every stored object of `job` (all its attempts); the bytes that went.
    pub async fn delete_job(&self, job: i64) -> Result<u64, String> {
        let objects = self.objects_of(job).await?;
        for (k, _) in &objects {
            self.store
                .delete(k)
                .await
                .map_err(|e| format!("cannot delete {k} from {}: {e}", self.label))?;
        }
        Ok(objects.iter().map(|(_, n)| n).sum())
    }
}

/// Where one job attempt's artifacts are: its `out/` folder, or the bucket (its manifest read).
pub(crate) enum Shelf {
    Local(PathBuf),
    Stored {
        store: Arc<ArtifactStore>,
        job: i64,
        attempt: u32,
        files: Vec<(String, u64)>,
    },
}

/// An artifact opened for reading.
pub(crate) enum Opened {
    Local(crate::artifacts::Artifact),
    Stored {
        store: Arc<ArtifactStore>,
        job: i64,
        attempt: u32,
        rel: String,
        size: u64,
    },
}

impl Opened {
    pub(crate) fn size(&self) -> u64 {
        match self {
            Opened::Local(a) => a.size,
            Opened::Stored { size, .. } => *size,
        }
    }

    /// `len` bytes from `start`.
    pub(crate) async fn stream(
        self,
        start: u64,
        len: u64,
    ) -> futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> {
        match self {
            Opened::Local(a) => crate::artifacts::stream(a.file, start, len)
                .map_ok(Bytes::from)
                .boxed(),
            Opened::Stored {
                store,
                job,
                attempt,
                rel,
                ..
            } => match store.read(job, attempt, &rel, start, len).await {
                Ok(s) => s,
                Err(e) => {
                    futures::stream::once(async move { Err::<Bytes, _>(std::io::Error::other(e)) })
                        .boxed()
                }
            },
        }
    }
}

impl Shelf {
    /// The artifacts, sorted, as (path, size).
    pub(crate) async fn list(&self) -> Vec<(String, u64)> {
        match self {
            Shelf::Local(out) => {
                let out = out.clone();
                tokio::task::spawn_blocking(move || crate::artifacts::list(&out))
                    .await
                    .unwrap_or_default()
            }
            Shelf::Stored { files, .. } => files.clone(),
        }
    }

    /// One artifact, if it is one (a regular file under `out/`, or in the manifest).
    pub(crate) async fn open(&self, rel: &str) -> Option<Opened> {
        match self {
            Shelf::Local(out) => {
                let (out, rel) = (out.clone(), rel.to_owned());
                tokio::task::spawn_blocking(move || crate::artifacts::open(&out, &rel))
                    .await
                    .ok()
                    .flatten()
                    .map(Opened::Local)
            }
            Shelf::Stored {
                store,
                job,
                attempt,
                files,
            } => files
                .iter()
                .find(|(p, _)| p == rel)
                .map(|(p, size)| Opened::Stored {
                    store: store.clone(),
                    job: *job,
                    attempt: *attempt,
                    rel: p.clone(),
                    size: *size,
                }),
        }
    }

    /// The first `max` bytes of a text artifact (invalid UTF-8 replaced).
    pub(crate) async fn head(&self, rel: &str, max: u64) -> Option<String> {
        let a = self.open(rel).await?;
        let len = a.size().min(max);
        let bytes: Vec<Bytes> = a.stream(0, len).await.try_collect().await.ok()?;
        Some(String::from_utf8_lossy(&bytes.concat()).into_owned())
    }
}

/// The job attempt whose artifacts a job shows: its own, or for a job skipped by a cache hit,
/// that of the job it hit (stored once, never copied).
pub(crate) async fn owner(s: &AppState, job: &baton_store::JobRow) -> (i64, u32) {
    if let Some((hit, _)) = baton_core::decide::hit_of(job.reason.as_deref())
        && let Ok(Some(rec)) = s.store.job_cache(hit).await
    {
        return (rec.job_id, rec.attempt);
    }
    if let Some((src, run)) = baton_core::decide::carried_of(job.reason.as_deref())
        && let Ok(Some(old)) = s.store.get_run(run).await
        && let Some(j) = old.jobs.iter().find(|j| j.id == src)
    {
        return (j.id, j.attempt);
    }
    (job.id, job.attempt)
}

/// Where a job's artifacts are: the bucket when it holds the attempt's manifest, else `out/`.
pub(crate) async fn shelf_of(s: &AppState, job: &baton_store::JobRow) -> Shelf {
    let (id, attempt) = owner(s, job).await;
    if let Some(store) = &s.artifact_store {
        match store.listing(id, attempt).await {
            Ok(Some(files)) => {
                return Shelf::Stored {
                    store: store.clone(),
                    job: id,
                    attempt,
                    files,
                };
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(job = id, "{e}"),
        }
    }
    Shelf::Local(s.folders.job_dir(id, attempt).join("out"))
}

/// A blocking reader of a stored file (for the `.tar.gz` written on a blocking thread), one
/// ranged request per part.
pub(crate) struct BlockingReader {
    handle: tokio::runtime::Handle,
    opened: Opened,
    pos: u64,
    buf: Bytes,
}

impl BlockingReader {
    pub(crate) fn new(handle: tokio::runtime::Handle, opened: Opened) -> BlockingReader {
        BlockingReader {
            handle,
            opened,
            pos: 0,
            buf: Bytes::new(),
        }
    }
}

impl Read for BlockingReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let size = self.opened.size();
            if self.pos >= size {
                return Ok(0);
            }
            let len = (size - self.pos).min(PART as u64);
            let part = match &self.opened {
                Opened::Local(a) => {
                    let mut buf = vec![0; len as usize];
                    let n = std::os::unix::fs::FileExt::read_at(&a.file, &mut buf, self.pos)?;
                    buf.truncate(n);
                    Bytes::from(buf)
                }
                Opened::Stored {
                    store,
                    job,
                    attempt,
                    rel,
                    ..
                } => {
                    let (store, rel, pos) = (store.clone(), rel.clone(), self.pos);
                    let (job, attempt) = (*job, *attempt);
                    self.handle.block_on(async move {
                        let s = store
                            .read(job, attempt, &rel, pos, len)
                            .await
                            .map_err(std::io::Error::other)?;
                        let parts: Vec<Bytes> = s.try_collect().await?;
                        Ok::<_, std::io::Error>(Bytes::from(parts.concat()))
                    })?
                }
            };
            if part.is_empty() {
                return Ok(0);
            }
            self.pos += part.len() as u64;
            self.buf = part;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}
