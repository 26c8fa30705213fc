//! `baton agent`: a pull-mode worker for machines the server cannot reach. It connects out,
//! long-polls for work, runs each job under the same supervisor as the server's local jobs
//! (so a job survives the agent's own restart), streams the log back by byte offset, uploads
//! the job's artifacts, and reports the exit record; it retries through dropped connections and
//! resumes reporting the jobs it still runs after a restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use baton_exec::agent::{AgentInfo, JobRef, PollBody, PollResponse};
use baton_exec::{DockerExecutor, Executor, ExitRecord, LocalExecutor, Reattached, read_exit};

#[derive(Args)]
pub(crate) struct AgentArgs {
    /// The server's URL (the agent connects out to it), or the URLs of several servers of one
    /// cluster, comma-separated: when one cannot be reached the agent goes on with the next.
    #[arg(long, env = "BATON_SERVER", value_delimiter = ',', required = true)]
    server: Vec<String>,
    /// A join token (`baton token create --name agent-join`), used when the agent has no
    /// credential of its own yet.
    #[arg(long, env = "BATON_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// Queues this agent serves, comma-separated (a pool's agent gets its pool's).
    #[arg(
        long,
        env = "BATON_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    queues: Vec<String>,
    /// How many jobs it runs at once.
    #[arg(long, env = "BATON_SLOTS", default_value_t = 1)]
    slots: u32,
    /// Its name on the server (default: the host name; a pool's agent must use the name its
    /// join token was made for, `$BATON_AGENT_NAME`).
    #[arg(long, env = "BATON_AGENT_NAME")]
    name: Option<String>,
    /// Leave after this long with no job (`30s`, `5m`): the agent tells the server, which
    /// revokes its credential, and exits. For autoscaled pools (`$BATON_IDLE_TIMEOUT`).
    #[arg(long, env = "BATON_IDLE_TIMEOUT", value_parser = parse_idle)]
    idle_timeout: Option<Duration>,
    /// Where jobs run and the credential is kept.
    #[arg(long, default_value = "baton-agent")]
    work_dir: PathBuf,
    /// How jobs' process trees are kept: `auto`, `cgroup` or `process-group` (as for `serve`).
    #[arg(long, env = "BATON_JOB_CONTAINMENT", default_value = "auto")]
    job_containment: baton_exec::ContainmentMode,
}

fn parse_idle(s: &str) -> Result<Duration, String> {
    let d = baton_core::config::parse_duration_in(s, &["ms", "s", "m", "h", "d"])?;
    if d.is_zero() {
        return Err("the idle timeout must be longer than 0s".into());
    }
    Ok(d)
}

/// The agent's own variables, which its jobs never inherit.
const AGENT_ONLY_ENV: [&str; 1] = ["BATON_AGENT_TOKEN"];

struct Agent {
    http: reqwest::Client,
    /// The API base of each server it may talk to (`URL/api/v1`), and which it talks to now.
    bases: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    credential: String,
    work: PathBuf,
    exec: LocalExecutor,
    /// Runs steps with `image:` in containers on this machine's engine.
    docker: Arc<DockerExecutor>,
    /// Jobs being started in the background, each with whether a cancel for it came meanwhile
    /// (sent once it has started).
    starting: std::sync::Mutex<std::collections::BTreeMap<JobRef, bool>>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "agent".into())
}

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(hostname);
    // Job folders 0700, job files 0600 (as on the server).
    crate::serve::private_files();
    std::fs::create_dir_all(args.work_dir.join("jobs"))
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    let work = args.work_dir.canonicalize()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let bases: Vec<String> = args
        .server
        .iter()
        .map(|s| format!("{}/api/v1", s.trim().trim_end_matches('/')))
        .collect();
    let credential = credential(&http, &bases, &args, &name, &work.join("credential")).await?;
    let exe = std::env::current_exe().context("cannot find the baton binary")?;
    let agent = Arc::new(Agent {
        http,
        bases,
        current: Default::default(),
        credential,
        work,
        exec: LocalExecutor::with_containment(
            exe,
            vec!["__supervise".into()],
            baton_exec::Containment::detect(args.job_containment)?,
        ),
        docker: Arc::new(DockerExecutor::new(None)),
        starting: Default::default(),
    });
    agent.resume().await;
    eprintln!(
        "baton agent {name} serving {:?} with {} slot(s)",
        args.queues, args.slots
    );
    let info = AgentInfo {
        queues: args.queues.clone(),
        slots: args.slots,
    };
    let mut backoff = Duration::from_millis(200);
    // Since when this agent has held no job (`None`: it holds one).
    let mut idle_since = Some(std::time::Instant::now());
    loop {
        let mut wait = Duration::from_secs(25);
        if let Some(limit) = args.idle_timeout {
            if agent.held().is_empty() {
                let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                let idle = since.elapsed();
                if idle >= limit {
                    if agent.leave().await {
                        eprintln!(
                            "baton agent {name}: no work for {}s; left the server",
                            idle.as_secs()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    // Work was handed to it meanwhile: do it, then try again.
                    idle_since = None;
                } else {
                    wait = wait.min((limit - idle).max(Duration::from_secs(1)));
                }
            } else {
                idle_since = None;
            }
        }
        let work = match agent.poll(&info, wait).await {
            Poll::Work(w) => w,
            Poll::Refused => {
                eprintln!("the server refused this agent's credential: it was disabled; exiting");
                let _ = std::fs::remove_file(agent.work.join("credential"));
                return Ok(ExitCode::from(1));
            }
            Poll::Retry => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Poll::Skip => continue,
        };
        backoff = Duration::from_millis(200);
        for c in work.cancel {
            if agent.defer_cancel(c) {
                continue;
            }
            let dir = agent.job_dir(c.job_id, c.attempt);
            let _ = agent.executor(&dir).cancel(&dir).await;
        }
        for q in work.images {
            // A pull may take a while: the polls go on meanwhile.
            tokio::spawn(agent.clone().answer_image(q));
        }
        for a in work.jobs {
            agent.begin(a)?;
        }
    }
}

/// The agent's own credential: the one kept in `path`, or a new one from joining with the
/// join token (then kept there, 0600).
async fn credential(
    http: &reqwest::Client,
    bases: &[String],
    args: &AgentArgs,
    name: &str,
    path: &Path,
) -> anyhow::Result<String> {
    if let Ok(c) = std::fs::read_to_string(path)
        && !c.trim().is_empty()
    {
        return Ok(c.trim().to_string());
    }
    let mut answer = None;
    for base in bases {
        match http
            .post(format!("{base}/agents/join"))
            .bearer_auth(&args.token)
            .json(&json!({"name": name, "queues": args.queues, "slots": args.slots}))
            .send()
            .await
        {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(e) => eprintln!("joining through {base}: {e}"),
        }
    }
    let resp = answer
        .with_context(|| format!("cannot reach the server at {}", args.server.join(" or ")))?;
    if !resp.status().is_success() {
        bail!(
            "joining failed: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = resp.json().await?;
    let c = body["credential"]
        .as_str()
        .context("no credential in the join answer")?;
    write_private(path, c)?;
    Ok(c.to_string())
}

/// What one long poll gave.
enum Poll {
    Work(PollResponse),
    /// The credential was refused (the agent was disabled).
    Refused,
    /// The server could not be reached or answered an error: back off, then poll again.
    Retry,
    /// An answer that could not be read: poll again at once.
    Skip,
}

/// The exit record of a job that never started, so its report ends it with `why`.
fn write_start_failure(dir: &Path, why: String) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let rec = ExitRecord {
        exit_code: None,
        signal: None,
        timed_out: false,
        canceled: false,
        error: Some(why),
        started_at: now,
        ended_at: now,
        log_bytes: 0,
        max_rss_kb: None,
        missing_artifacts: Vec::new(),
    };
    std::fs::create_dir_all(dir)?;
    write_private(&dir.join("exit.json"), &serde_json::to_string(&rec)?)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

impl Agent {
    /// The API base of the server it talks to now.
    fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    /// A request failed: when it never reached the server, the next server is tried next.
    fn failed(&self, e: &reqwest::Error) {
        if self.bases.len() > 1 && (e.is_connect() || e.is_timeout()) {
            let was = self.base().to_owned();
            self.current
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!("{was} cannot be reached; going on with {}", self.base());
        }
    }

    /// The agent API of one job attempt on the server it talks to now.
    fn job_url(&self, job: i64, attempt: u32) -> String {
        format!("{}/agents/jobs/{job}/{attempt}", self.base())
    }

    /// Tells the server this agent leaves; `true` when it may go (its credential is revoked
    /// and forgotten here), `false` when it has work or the server could not be reached.
    async fn leave(&self) -> bool {
        let resp = self
            .http
            .post(format!("{}/agents/leave", self.base()))
            .bearer_auth(&self.credential)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                let _ = std::fs::remove_file(self.work.join("credential"));
                true
            }
            Ok(r) => {
                eprintln!("leaving: the server answered {}; staying", r.status());
                false
            }
            Err(e) => {
                eprintln!("leaving: {e}; staying");
                self.failed(&e);
                false
            }
        }
    }

    async fn poll(&self, info: &AgentInfo, wait: Duration) -> Poll {
        // Every job folder here: the server learns of assignments that never reached us.
        let body = PollBody {
            info: info.clone(),
            holds: Some(self.held().into_iter().map(|(j, _)| j).collect()),
            image_ids: true,
        };
        let resp = self
            .http
            .post(format!(
                "{}/agents/poll?wait={}",
                self.base(),
                wait.as_secs().max(1)
            ))
            .bearer_auth(&self.credential)
            .timeout(wait + Duration::from_secs(15))
            .json(&body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                eprintln!("poll failed ({e}); retrying");
                self.failed(&e);
                return Poll::Retry;
            }
        };
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Poll::Refused;
        }
        if !resp.status().is_success() {
            eprintln!("poll answered {}; retrying", resp.status());
            return Poll::Retry;
        }
        match resp.json().await {
            Ok(w) => Poll::Work(w),
            Err(e) => {
                eprintln!("bad poll answer: {e}");
                Poll::Skip
            }
        }
    }

    /// Answers the server's question for the id of an image in this agent's engine (pulled
    /// first when the engine lacks it, as the job that follows would): the CI cache counts a
    /// container job's image by the id the engine that runs it gives.
    async fn answer_image(self: Arc<Self>, q: baton_exec::agent::ImageQuery) {
        let answer = match self.docker.image_id(&q.image).await {
            Ok(id) => baton_exec::agent::ImageAnswer { id, error: None },
            Err(e) => baton_exec::agent::ImageAnswer {
                id: None,
                error: Some(e.to_string()),
            },
        };
        let _: Option<serde_json::Value> = self
            .retry("image id", || {
                self.http
                    .post(format!("{}/agents/images/{}", self.base(), q.id))
                    .bearer_auth(&self.credential)
                    .json(&answer)
                    .send()
            })
            .await;
    }

    /// Takes one assignment: its folder at once (the next poll holds it), then its checkout
    /// and start in the background, so that a long fetch or image pull never keeps the agent
    /// from polling (an agent silent for the heartbeat timeout is lost, and its jobs with it).
    fn begin(self: &Arc<Self>, a: baton_exec::agent::Assignment) -> anyhow::Result<()> {
        let dir = self.job_dir(a.job_id, a.attempt);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the job folder {}", dir.display()))?;
        self.lock_starting().insert(a.job_ref(), false);
        let agent = self.clone();
        tokio::spawn(async move {
            let job = a.job_ref();
            if let Err(e) = agent.start(a).await {
                eprintln!("job {} attempt {}: {e:#}", job.job_id, job.attempt);
            }
        });
        Ok(())
    }

    fn lock_starting(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<JobRef, bool>> {
        self.starting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cancel for a job still being started is kept for when it has started: true then.
    fn defer_cancel(&self, job: JobRef) -> bool {
        match self.lock_starting().get_mut(&job) {
            Some(cancelled) => {
                *cancelled = true;
                true
            }
            None => false,
        }
    }

    /// Starts one assignment and the task that reports it; a job that cannot start gets an
    /// exit record saying why, which the reporter sends like any other.
    async fn start(self: &Arc<Self>, mut a: baton_exec::agent::Assignment) -> anyhow::Result<()> {
        // Secrets stay in memory: the supervisor gets them on its stdin pipe, the engine as
        // the container's environment.
        a.spec.secrets = std::mem::take(&mut a.secrets);
        // The agent's own join token (a pool's agent gets it in its environment) is no job's.
        a.spec
            .unset_env
            .extend(AGENT_ONLY_ENV.iter().map(|v| v.to_string()));
        let dir = self.job_dir(a.job_id, a.attempt);
        let ended = Arc::new(tokio::sync::Notify::new());
        let exec: Arc<dyn Executor> = if a.spec.container.is_some() {
            self.docker.clone()
        } else {
            Arc::new(self.exec.clone())
        };
        let started = match self.checkout(&a, &dir).await {
            Ok(()) => exec.start(&dir, &a.spec).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        // A cancel that came while it was starting is sent now.
        let cancelled = self.lock_starting().remove(&a.job_ref()).unwrap_or(false);
        if cancelled && started.is_ok() {
            let _ = exec.cancel(&dir).await;
        }
        match started {
            Ok(handle) => {
                // Reap the job when it ends, and wake the reporter at once.
                let ended = ended.clone();
                tokio::spawn(async move {
                    handle.wait().await;
                    ended.notify_one();
                });
            }
            Err(e) => write_start_failure(&dir, format!("the agent could not start the job: {e}"))?,
        }
        tokio::spawn(self.clone().report(a.job_id, a.attempt, ended));
        Ok(())
    }

    /// A repository job starts in a checkout of its commit, fetched from the server's mirror
    /// over smart HTTP with the agent's credential (as config in git's environment, never in
    /// argv): the agent needs git, but no forge credentials and no route to the forge.
    async fn checkout(&self, a: &baton_exec::agent::Assignment, dir: &Path) -> Result<(), String> {
        let Some(commit) = &a.spec.checkout else {
            return Ok(());
        };
        let commit = baton_git::Oid::parse(commit).map_err(|e| e.to_string())?;
        let url = format!("{}/jobs/{}/{}/repo.git", self.base(), a.job_id, a.attempt);
        let env = baton_git::GitEnv::default()
            .with_http_header(&format!("Authorization: Bearer {}", self.credential));
        baton_git::fetch_checkout(&url, &commit, &dir.join(baton_exec::layout::WORK_DIR), &env)
            .await
            .map(|_| ())
            .map_err(|e| {
                format!("could not check out commit {commit} from the server (hint: the agent needs git): {e}")
            })
    }

    fn job_dir(&self, job: i64, attempt: u32) -> PathBuf {
        self.work
            .join("jobs")
            .join(job.to_string())
            .join(attempt.to_string())
    }

    /// The executor of a job already started here: containers leave `container.json`.
    fn executor(&self, dir: &Path) -> Arc<dyn Executor> {
        if dir.join(baton_exec::docker::CONTAINER_FILE).exists() {
            self.docker.clone()
        } else {
            Arc::new(self.exec.clone())
        }
    }

    /// Every job folder on this agent's disk (`jobs/<job>/<attempt>`): jobs running, or ended
    /// and not yet reported.
    fn held(&self) -> Vec<(JobRef, PathBuf)> {
        let mut out = Vec::new();
        let Ok(jobs) = std::fs::read_dir(self.work.join("jobs")) else {
            return out;
        };
        for j in jobs.flatten() {
            let Ok(attempts) = std::fs::read_dir(j.path()) else {
                continue;
            };
            for a in attempts.flatten() {
                if let (Some(job_id), Some(attempt)) = (
                    j.file_name().to_str().and_then(|s| s.parse::<i64>().ok()),
                    a.file_name().to_str().and_then(|s| s.parse::<u32>().ok()),
                ) {
                    out.push((JobRef { job_id, attempt }, a.path()));
                }
            }
        }
        out
    }

    /// After the agent's own restart: report every job it still has.
    async fn resume(self: &Arc<Self>) {
        for (
            JobRef {
                job_id: job,
                attempt,
            },
            dir,
        ) in self.held()
        {
            let ended = Arc::new(tokio::sync::Notify::new());
            match self
                .executor(&dir)
                .reattach(&dir, &baton_exec::JobSecrets::default())
                .await
            {
                Reattached::Running(h) => {
                    let ended = ended.clone();
                    tokio::spawn(async move {
                        h.wait().await;
                        ended.notify_one();
                    });
                }
                Reattached::Finished(_) => {}
                // Killed while starting it: say so, or the report would wait for an end
                // that never comes.
                Reattached::Vanished(why) | Reattached::NeverStarted(why) => {
                    let why = format!("the agent restarted before the job started: {why}");
                    if let Err(e) = write_start_failure(&dir, why) {
                        eprintln!("job {job} attempt {attempt}: {e:#}");
                    }
                }
            }
            eprintln!("resuming the report of job {job} attempt {attempt}");
            tokio::spawn(self.clone().report(job, attempt, ended));
        }
    }

    /// Retries `f` until it succeeds (a server restart or a dropped link is only a pause).
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
        T: serde::de::DeserializeOwned,
    {
        let mut wait = Duration::from_millis(100);
        loop {
            match f().await {
                Ok(r) if r.status().is_success() => return r.json().await.ok(),
                Ok(r)
                    if r.status().is_client_error()
                        && r.status() != reqwest::StatusCode::CONFLICT =>
                {
                    eprintln!("{what}: the server refused: {}", r.status());
                    return None;
                }
                Ok(r) => eprintln!("{what}: {}; retrying", r.status()),
                Err(e) => {
                    eprintln!("{what}: {e}; retrying");
                    self.failed(&e);
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// Streams one artifact file to the server (no size limit, never read whole into memory).
    /// A dropped connection or a server restart is retried; a refusal, or a file that cannot
    /// be read, is an error that names the cause.
    async fn upload(&self, job: i64, attempt: u32, rel: &str, path: &Path) -> Result<(), String> {
        let mut wait = Duration::from_millis(100);
        let mut server_errors = 0;
        loop {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| format!("cannot read it on the agent: {e}"))?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            match self
                .http
                .put(artifact_url(&self.job_url(job, attempt), rel))
                .bearer_auth(&self.credential)
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(format!("the server refused it ({status}): {text}"));
                }
                Ok(r) => {
                    server_errors += 1;
                    if server_errors >= 5 {
                        return Err(format!(
                            "the server failed {server_errors} times: {}",
                            r.status()
                        ));
                    }
                    eprintln!("artifact: {}; retrying", r.status());
                }
                Err(e) => {
                    eprintln!("artifact: {e}; retrying");
                    self.failed(&e);
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// Streams the job's log to the server, then its artifacts and exit record.
    async fn report(self: Arc<Self>, job: i64, attempt: u32, ended: Arc<tokio::sync::Notify>) {
        let dir = self.job_dir(job, attempt);
        let log = dir.join("log");
        // Where the server's copy ends: resume from there.
        let start: Option<serde_json::Value> = self
            .retry("log", || {
                self.http
                    .post(format!("{}/log?offset=0", self.job_url(job, attempt)))
                    .bearer_auth(&self.credential)
                    .body(Vec::new())
                    .send()
            })
            .await;
        let Some(start) = start else { return };
        let mut offset = start["size"].as_u64().unwrap_or(0);
        loop {
            let done = read_exit(&dir).is_some();
            let mut chunk = baton_exec::read_log_range(&log, offset, 1 << 20).unwrap_or_default();
            if chunk.is_empty() {
                if done {
                    break;
                }
                // New output is looked for every 50 ms; the job's end wakes us at once.
                let _ = tokio::time::timeout(Duration::from_millis(50), ended.notified()).await;
                continue;
            }
            let marks = chunk_marks(&log, offset, &mut chunk);
            let sent: Option<serde_json::Value> = self
                .retry("log", || {
                    self.http
                        .post(format!(
                            "{}/log?offset={offset}",
                            self.job_url(job, attempt)
                        ))
                        .bearer_auth(&self.credential)
                        .header(baton_exec::logidx::MARKS_HEADER, &marks)
                        .body(chunk.clone())
                        .send()
                })
                .await;
            match sent {
                Some(v) => offset = v["size"].as_u64().unwrap_or(offset + chunk.len() as u64),
                None => return,
            }
        }
        let mut lost = Vec::new();
        for (rel, path) in files_under(&dir.join("out")) {
            if let Err(e) = self.upload(job, attempt, &rel, &path).await {
                lost.push(format!("{rel}: {e}"));
            }
        }
        let Some(mut rec) = read_exit(&dir) else {
            return;
        };
        if !lost.is_empty() {
            // A run must not succeed while its artifacts are missing on the server.
            let why = format!("artifacts not stored on the server: {}", lost.join("; "));
            rec.error = Some(match rec.error.take() {
                Some(first) => format!("{first}; {why}"),
                None => why,
            });
        }
        let reported: Option<serde_json::Value> = self
            .retry("exit", || {
                self.http
                    .post(format!("{}/exit", self.job_url(job, attempt)))
                    .bearer_auth(&self.credential)
                    .json(&rec)
                    .send()
            })
            .await;
        if reported.is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(parent) = dir.parent() {
                // Only removes the job's folder once no attempt is left in it.
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// The marks (stream and time) of the log bytes `chunk` read at `offset`, from the job's own
/// index, as [`baton_exec::logidx::MARKS_HEADER`] carries them; a chunk with more marks than a
/// header takes is cut where the first mark that does not fit begins (the rest goes next).
fn chunk_marks(log: &Path, offset: u64, chunk: &mut Vec<u8>) -> String {
    use baton_exec::logidx::{MARKS_PER_CHUNK, encode_marks, read_marks};
    let end = offset + chunk.len() as u64;
    let mut marks = read_marks(log, offset, end, MARKS_PER_CHUNK + 1).unwrap_or_default();
    if marks.len() > MARKS_PER_CHUNK {
        let cut = marks[MARKS_PER_CHUNK].offset;
        marks.truncate(MARKS_PER_CHUNK);
        chunk.truncate(usize::try_from(cut - offset).unwrap_or(chunk.len()));
    }
    encode_marks(&marks)
}

/// The upload URL of the artifact `rel` ('/'-separated): each segment percent-encoded, so a
/// name with `#`, `?`, `%` or spaces arrives as it is.
fn artifact_url(job_url: &str, rel: &str) -> String {
    match reqwest::Url::parse(job_url) {
        Ok(mut u) => {
            if let Ok(mut segs) = u.path_segments_mut() {
                segs.push("artifacts").extend(rel.split('/'));
            }
            u.into()
        }
        Err(_) => format!("{job_url}/artifacts/{rel}"),
    }
}

/// Every regular file under `root`, with its path relative to it ('/'-separated).
fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => {
                    if let Ok(rel) = p.strip_prefix(root) {
                        out.push((rel.to_string_lossy().into_owned(), p.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    out
}
