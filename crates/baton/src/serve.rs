//! `baton serve`: load the config, open the store, recover, start the scheduler and the API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use std::collections::BTreeMap;

use baton_exec::background::CancellationToken;
use baton_exec::{Executor, LocalExecutor, SshExecutor, SshSettings};
use baton_sched::SchedulerParts;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// A YAML config file or a directory of them (read recursively).
    #[arg(long, env = "BATON_CONFIG", default_value = "examples")]
    config: PathBuf,
    /// Where the database, logs and artifacts live.
    #[arg(long, env = "BATON_DATA", default_value = "baton-data")]
    data: PathBuf,
    /// The database: a `postgres://USER:PASSWORD@HOST/DB` URL or a SQLite file (default: the
    /// config's server.database, else `<data>/baton.db`). Logs and artifacts stay in --data.
    #[arg(long, env = "BATON_DB", hide_env_values = true)]
    db: Option<String>,
    /// Address to listen on (default: the config's server.listen, else 127.0.0.1:8700).
    #[arg(long, env = "BATON_LISTEN")]
    listen: Option<String>,
    /// A pull-mode agent silent for this long is lost and its jobs end `broken` (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    agent_heartbeat_timeout: std::time::Duration,
    /// How local jobs' process trees are kept: `auto` (a cgroup v2 per job where one is
    /// usable, else the process group), `cgroup` (refuse to start without one) or
    /// `process-group`.
    #[arg(long, env = "BATON_JOB_CONTAINMENT", default_value = "auto")]
    job_containment: baton_exec::ContainmentMode,
    /// On SIGTERM, how long to wait for running jobs to end (dispatch paused) before exiting;
    /// jobs still running then keep going and are re-attached at the next start. SIGINT exits
    /// at once.
    #[arg(long, env = "BATON_DRAIN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    drain_timeout: std::time::Duration,
    /// How the server's own log lines (stderr) are written: `text` for people, `json` (one
    /// object a line, with each event's fields such as run and job ids) for log collectors.
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// This server's id among the servers that share its database (default: the host name and
    /// the data directory). A restarted server with the same id takes its lease back at once.
    #[arg(long, env = "BATON_SERVER_ID")]
    server_id: Option<String>,
    /// The URL other servers forward requests to while this one is active (default: the
    /// address it listens on; set it when the servers are on different hosts).
    #[arg(long, env = "BATON_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// How long the active server's scheduler lease lasts without renewal: when it dies, a
    /// standby takes over after this long (e.g. 10s).
    #[arg(long, env = "BATON_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
    lease_ttl: std::time::Duration,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// The exit status when the scheduler panicked (EX_SOFTWARE: an internal software error).
const ACTOR_PANIC_EXIT: i32 = 70;

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    baton_core::config::parse_duration(s)
}

/// One [`SshExecutor`] per worker with a `host`; the factory also serves reloads.
fn ssh_executors(
    config: &baton_core::config::Config,
    factory: &baton_sched::SshFactory,
) -> anyhow::Result<BTreeMap<String, Arc<dyn Executor>>> {
    let mut out: BTreeMap<String, Arc<dyn Executor>> = BTreeMap::new();
    for w in config.workers.values().filter(|w| w.host.is_some()) {
        let exec = factory(w, &config.server).map_err(anyhow::Error::msg)?;
        out.insert(w.name.clone(), exec);
    }
    Ok(out)
}

/// Makes the executor of an SSH worker: the server's settings, `<data>/ssh` for the
/// ControlMaster sockets, and the address workers call back to.
fn ssh_factory(
    data: &std::path::Path,
    addr: std::net::SocketAddr,
    hub: &baton_exec::CallbackHub,
    shutdown: &CancellationToken,
) -> baton_sched::SshFactory {
    let data = data.to_path_buf();
    let hub = hub.clone();
    let shutdown = shutdown.clone();
    Arc::new(move |w, server| {
        let host = w.host.clone().ok_or("not an SSH worker")?;
        let callback_url = match &server.callback_url {
            Some(u) => u.clone(),
            None if addr.ip().is_unspecified() => {
                return Err(format!(
                    "SSH worker {:?} cannot reach this server at {addr} to report job ends \
                     (hint: set server.callback_url to an address the workers can reach, \
                     or listen on one with --listen)",
                    w.name
                ));
            }
            None => format!("http://{addr}"),
        };
        let control_dir = data.join("ssh");
        std::fs::create_dir_all(&control_dir).map_err(|e| {
            format!(
                "cannot create the SSH control directory {}: {e}",
                control_dir.display()
            )
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&control_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", control_dir.display()))?;
        let settings = SshSettings {
            worker: w.name.clone(),
            host,
            // Relative paths are relative to where the server was started.
            key: server.ssh_key.as_ref().map(absolute).transpose()?,
            known_hosts: server.known_hosts.as_ref().map(absolute).transpose()?,
            control_dir,
            work_dir: w.work_dir.clone().unwrap_or_else(|| ".baton".into()),
            callback_url,
            heartbeat_timeout: server
                .heartbeat_timeout
                .unwrap_or(std::time::Duration::from_secs(30)),
        };
        let exec = SshExecutor::with_shutdown(settings, hub.clone(), &shutdown);
        Ok(Arc::new(exec) as Arc<dyn Executor>)
    })
}

/// Sets the process umask to 077: files 0600, folders 0700.
pub(crate) fn private_files() {
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe { libc::umask(0o077) };
}

/// Makes the data directory (and a database left by an older version) private to this user.
fn make_private(data: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (mode 0700)", data.display()))?;
    for f in ["baton.db", "baton.db-wal", "baton.db-shm"] {
        let p = data.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private (mode 0600)", p.display()))?;
        }
    }
    Ok(())
}

fn absolute(p: &String) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("cannot resolve the path {p}: {e}"))
}

fn load(path: &std::path::Path) -> Result<baton_core::config::Config, String> {
    baton_core::config::load_path(path).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The Docker executor for `server.docker_host` (default: the standard socket). Nothing is
/// contacted here: a server without an engine starts, and jobs that need one end `broken` with
/// the engine's error. Baton containers of jobs that are over are removed in the background.
fn docker_executor(
    host: Option<&str>,
    shutdown: &CancellationToken,
) -> Option<Arc<dyn baton_exec::Executor>> {
    let exec = Arc::new(baton_exec::DockerExecutor::with_shutdown(host, shutdown));
    let sweeper = exec.clone();
    tokio::spawn(async move {
        match sweeper.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} containers of jobs that are over"),
            Err(e) => tracing::info!("jobs with image: cannot run yet: {e}"),
        }
    });
    Some(exec)
}

pub(crate) async fn serve(
    args: ServeArgs,
    launcher: Option<baton_exec::launcher::Launcher>,
) -> anyhow::Result<ExitCode> {
    init_tracing(args.log_format);
    let Some(config) = load_or_explain(&args.config) else {
        return Ok(ExitCode::from(1));
    };
    let data = data_dir(&args.data)?;
    let db = match args.db.as_deref().or(config.server.database.as_deref()) {
        Some(db) => baton_store::Database::parse(db),
        None => baton_store::Database::in_data_dir(&data),
    };
    let store = baton_store::Store::connect(&db)
        .await
        .with_context(|| format!("cannot open the database {db}"))?;
    tracing::info!("database: {db}");
    let exe = std::env::current_exe().context("cannot find the baton binary for the supervisor")?;
    let listen = args
        .listen
        .clone()
        .or_else(|| config.server.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8700".into());
    let jwt_secret = config.server.jwt_secret.clone();
    let artifact_store = match &config.server.artifacts {
        Some(def) => {
            let bucket = baton_web::ArtifactStore::s3(def).map_err(anyhow::Error::msg)?;
            tracing::info!("artifacts go to {}", bucket.label());
            Some(Arc::new(bucket))
        }
        None => None,
    };
    // Listen first: a standby forwards on this socket, and SSH workers call back to the
    // address we actually got.
    let listener = std::net::TcpListener::bind(&listen)
        .with_context(|| format!("cannot listen on {listen} (hint: pick another with --listen)"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    // The key standbys sign clients' addresses with: made by the first server of the data
    // directory, read by the others.
    let cluster_key = Arc::new(
        baton_web::ClusterKey::load_or_create(&data).context("cannot set up the cluster key")?,
    );
    // One server schedules: the one that holds the lease. Until this one does, it forwards.
    let cluster = Arc::new(crate::cluster::Cluster::new(
        store.clone(),
        cluster_key.clone(),
        args.server_id
            .clone()
            .unwrap_or_else(|| crate::cluster::default_id(&data)),
        args.advertise_url
            .clone()
            .unwrap_or_else(|| public_url(addr)),
        args.lease_ttl,
    ));
    let fence = cluster.become_active(&listener).await?;
    store.set_fence(fence.clone());
    cluster.clone().keep(fence);
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let agents = baton_exec::agent::AgentHub::new(args.agent_heartbeat_timeout);
    // Cancelled when the server stops: the executors' background loops (health checks,
    // reapers) end with it.
    let stop_loops = CancellationToken::new();
    let docker = docker_executor(config.server.docker_host.as_deref(), &stop_loops);
    let callbacks = baton_exec::CallbackHub::default();
    let ssh = ssh_factory(&data, addr, &callbacks, &stop_loops);
    let remote = ssh_executors(&config, &ssh)?;
    let sched = baton_sched::start(SchedulerParts {
        config,
        store: store.clone(),
        data_dir: data.clone(),
        executors: baton_sched::Executors {
            local: Arc::new(
                LocalExecutor::with_containment(
                    exe,
                    vec!["__supervise".into()],
                    baton_exec::Containment::detect(args.job_containment)?,
                )
                .with_launcher(launcher),
            ),
            agents: Some(agents.clone()),
            docker,
            remote,
            ssh: Some(ssh),
        },
        creds: Some(Arc::new(baton_web::ForgeTokens::new(store.clone()))),
        on_actor_panic: Arc::new(|_cause| {
            // Logged with its cause already. Without its scheduler the server would answer 503
            // for ever: end it, so that a service manager restarts it and recovery takes over.
            std::process::exit(ACTOR_PANIC_EXIT);
        }),
    })
    .await?;
    let config_path = args.config.clone();
    let statuses = baton_web::Statuses::new(store.clone());
    let state = baton_web::AppState {
        sched: sched.clone(),
        store,
        folders: baton_store::RunFolders::new(&data),
        jwt_secret,
        load_config: Arc::new(move || load(&config_path)),
        agents: Some(agents),
        callbacks,
        sso: baton_web::Sso::default(),
        public_url: public_url(addr),
        login: baton_web::LoginGuard::default(),
        statuses,
        metrics: Arc::default(),
        stop: CancellationToken::new(),
        artifact_store,
        pools: Arc::default(),
        server_id: cluster.id().into(),
        cluster_key,
    };
    start_side_tasks(&state, &stop_loops).await;
    // Signal handlers before the ready line: a SIGHUP right after it must reload, not kill.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    // The hint names the data directory absolutely, so it works from any directory.
    let data = std::path::absolute(&args.data).unwrap_or_else(|_| args.data.clone());
    println!(
        "baton ready on http://{addr} (API under /api/v1; get a token: baton token create --data {})",
        data.display()
    );
    std::io::stdout().flush().ok();

    tokio::spawn(reload_on_hangup(hup, sched.clone(), args.config.clone()));

    let stop = state.stop.clone();
    let (drainer, drain_timeout) = (sched.clone(), args.drain_timeout);
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!(
                "SIGINT: stopping the server; running jobs keep running under their supervisors \
                 and are re-attached at the next start"
            ),
            _ = term.recv() => drain_on_term(&drainer, drain_timeout).await,
            _ = stop.cancelled() => {}
        }
    };
    // The peer's address (or the client's, vouched for by a standby) feeds the login's
    // per-address backoff.
    let app =
        baton_web::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    stop_loops.cancel();
    sched.shutdown().await;
    // Given up, so that a standby takes over at once.
    cluster.release().await;
    served?;
    // Running jobs keep going under their supervisors; the next start re-attaches to them.
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM: no new jobs start; waits (up to `limit`) for the running ones to end.
async fn drain_on_term(sched: &baton_sched::SchedHandle, limit: std::time::Duration) {
    eprintln!(
        "baton: SIGTERM: draining (no new jobs start; waiting up to {}s for running ones; \
         SIGINT stops now)",
        limit.as_secs()
    );
    let left = tokio::select! {
        left = sched.drain(Some(limit)) => left.unwrap_or(0),
        _ = tokio::signal::ctrl_c() => usize::MAX,
    };
    match left {
        0 => eprintln!("baton: drained: every job has ended"),
        usize::MAX => eprintln!("baton: SIGINT: stopping now"),
        n => eprintln!(
            "baton: {n} jobs still running after {}s; they keep running and are re-attached at \
             the next start",
            limit.as_secs()
        ),
    }
}

/// The server's tasks beside the scheduler: each resumes what a restart left undone.
async fn start_side_tasks(state: &baton_web::AppState, stop_loops: &CancellationToken) {
    // Sends the commit statuses recorded with run changes (and those pending before a restart).
    baton_web::spawn_sender(
        state.statuses.clone(),
        state.sched.clone(),
        stop_loops.clone(),
    );
    // Revokes job tokens of forges whose tokens never expire, left over by a restart.
    baton_web::spawn_sweeper(
        baton_web::ForgeTokens::new(state.store.clone()),
        state.sched.clone(),
        stop_loops.clone(),
    );
    // Tells `notify:` receivers about run ends (and those not told before a restart).
    baton_web::spawn_notifier(state.store.clone(), state.sched.clone(), stop_loops.clone());
    // Collects each ended job's test reports into its run's result tree.
    baton_web::start_results(state);
    // Counts ended runs into the /metrics histograms.
    baton_web::metrics::watch(state.clone());
    // Deliveries accepted before a crash whose runs may not have started.
    baton_web::resume_deliveries(state).await;
    // Imports of pushed result refs a crash left unfinished: undone and imported again.
    baton_web::resume_imports(state).await;
    // Repositories' tasks with `on: schedule:`, from the mirrors as they are.
    baton_web::load_repo_schedules(state).await;
    // Repositories with `poll:` are fetched every interval; new commits trigger as pushes.
    baton_web::start_polling(state, stop_loops.child_token());
    // Autoscaled agent pools: agents started for waiting jobs (`pools:`).
    baton_web::start_pool_scaler(state, stop_loops.child_token());
    start_pruning(state, stop_loops);
}

/// How often the server applies retention, and the most runs one round deletes (a round's
/// rows go in one transaction; the scheduler never waits for it).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
const PRUNE_BATCH: usize = 200;

/// The hourly prune: runs that retention no longer keeps go, in small batches.
fn start_pruning(state: &baton_web::AppState, stop_loops: &CancellationToken) {
    let s = state.clone();
    baton_exec::background::every("prune", PRUNE_EVERY, stop_loops.child_token(), move || {
        let s = s.clone();
        async move {
            if let Ok(config) = s.sched.config().await {
                match crate::prune::prune_server(&s.store, &s.folders, &config, false, PRUNE_BATCH)
                    .await
                {
                    Ok(r) if r.runs > 0 => tracing::info!(
                        runs = r.runs,
                        jobs = r.jobs,
                        bytes = r.bytes,
                        bucket_bytes = r.bucket_bytes,
                        "retention: pruned"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("retention: prune failed: {e:#}"),
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    });
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings, and the scheduler's and the
/// server's own info lines: each run's start and end, jobs re-attached after a restart), as
/// text or JSON lines.
fn init_tracing(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,baton=info,baton_sched=info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The config at `path`, or `None` after printing why it is invalid.
fn load_or_explain(path: &Path) -> Option<baton_core::config::Config> {
    match load(path) {
        Ok(c) => Some(c),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!(
                "error: refusing to start: the config at {} is invalid (hint: `baton validate {}`)",
                path.display(),
                path.display()
            );
            None
        }
    }
}

/// The data directory, made if needed, private, and absolute. Nothing the server (and the
/// supervisors it starts) creates is for other users: job folders 0700, job files and the
/// database 0600.
fn data_dir(path: &Path) -> anyhow::Result<PathBuf> {
    private_files();
    std::fs::create_dir_all(path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))?;
    let data = path.canonicalize()?;
    make_private(&data)?;
    Ok(data)
}

/// The server's own URL as links and callbacks name it (`localhost` for a wildcard address).
fn public_url(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// SIGHUP reloads the config; a bad one keeps the old one running.
async fn reload_on_hangup(
    mut hup: tokio::signal::unix::Signal,
    sched: baton_sched::SchedHandle,
    path: PathBuf,
) {
    while hup.recv().await.is_some() {
        match load(&path) {
            Ok(c) => {
                if sched.reload(c).await.is_ok() {
                    eprintln!("config reloaded from {}", path.display());
                }
            }
            Err(d) => eprintln!("{d}\nerror: config reload failed; the old config stays in force"),
        }
    }
}
