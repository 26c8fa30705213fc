//! The commands that need no server: `baton run`, `log`, `push`, `pull`, `prune`, and `show` /
//! `logs` of a stored local run. They wire `baton_local` to the terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use baton_core::run::Status;
use baton_git::LocalRepo;
use baton_local::progress::{Display, Mode};
use baton_local::run::{RunOptions, run};
use baton_local::sync::{self, PruneOptions};
use baton_local::{LocalError, history};
use clap::Args;

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Tasks or pipelines of .baton/ (default: what a push of the current branch starts).
    targets: Vec<String>,
    /// At most this many jobs at once (default: the number of CPUs).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Run the working tree as it is, uncommitted changes included (stored against its tree id,
    /// marked dirty).
    #[arg(long)]
    dirty: bool,
    /// Run this commit or branch instead of HEAD.
    #[arg(long)]
    rev: Option<String>,
    /// Print every log line as it is written, prefixed by its job.
    #[arg(long, short)]
    follow: bool,
    /// Run jobs with `cache:` even when an earlier stored run had the same inputs.
    #[arg(long)]
    no_cache: bool,
    /// The Docker engine for jobs with `image:` (default: DOCKER_HOST or the standard socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Run in this repository instead of the current directory's.
    #[arg(short = 'C', value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    /// Runs older than this go (30d, 12h, 2w; default 30d unless --keep-last is given).
    #[arg(long)]
    older_than: Option<String>,
    /// Keep the newest N runs whatever their age.
    #[arg(long)]
    keep_last: Option<usize>,
    /// Prune the runs stored on this remote instead of the local ones.
    #[arg(long)]
    remote: Option<String>,
    /// Delete them (without it, only list what would go).
    #[arg(long)]
    yes: bool,
    /// Let git delete the unreachable objects at once (`git gc --prune=now`), not after its
    /// own grace period.
    #[arg(long)]
    now: bool,
}

/// `trigger --wait`'s exit code for a run that ended with `status`.
fn exit_code(status: &str) -> ExitCode {
    crate::client::exit_for(status.parse::<Status>().ok().map(Into::into))
}

pub(crate) async fn run_command(
    args: RunArgs,
    launcher: Option<baton_exec::launcher::Launcher>,
) -> anyhow::Result<ExitCode> {
    let parallel = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let opts = RunOptions {
        targets: args.targets,
        dirty: args.dirty,
        rev: args.rev,
        parallel,
        supervisor: std::env::current_exe()?,
        supervisor_args: vec!["__supervise".into()],
        docker_host: args.docker_host,
        no_cache: args.no_cache,
        launcher: launcher.map(std::sync::Arc::new),
    };
    let mode = if args.follow {
        Mode::Follow
    } else if std::io::stdout().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let display = Display::new(mode);
    let done = run(&args.dir, &opts, &display, &baton_web::local_page::run_page).await?;
    println!(
        "{}",
        baton_local::progress::summary(&done.record, &done.refname)
    );
    Ok(exit_code(&done.record.status))
}

async fn repo() -> Result<LocalRepo, LocalError> {
    Ok(LocalRepo::discover(Path::new(".")).await?)
}

pub(crate) async fn log(n: usize, rev: Option<String>) -> anyhow::Result<ExitCode> {
    let repo = repo().await?;
    let text = history::log_text(&repo, rev.as_deref().unwrap_or("HEAD"), n).await?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn show(run: &str, json: bool) -> anyhow::Result<ExitCode> {
    let repo = repo().await?;
    let found = history::find(&repo, run).await?;
    let record = history::read(&repo, &found).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print!("{}", history::show_text(&record, &found.refname));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn logs(run: &str, job: Option<&str>) -> anyhow::Result<ExitCode> {
    let repo = repo().await?;
    let found = history::find(&repo, run).await?;
    let record = history::read(&repo, &found).await?;
    let bytes = history::job_log(&repo, &found, &record, job).await?;
    std::io::stdout().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn push(remote: &str) -> anyhow::Result<ExitCode> {
    let moved = sync::push(&repo().await?, remote).await?;
    for r in &moved {
        println!("{r}");
    }
    eprintln!("pushed {} run(s) to {remote}", moved.len());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn pull(remote: &str) -> anyhow::Result<ExitCode> {
    let moved = sync::pull(&repo().await?, remote).await?;
    for r in &moved {
        println!("{r}");
    }
    eprintln!("fetched {} run(s) from {remote}", moved.len());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn web(listen: &str) -> anyhow::Result<ExitCode> {
    let repo = repo().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    println!(
        "serving the runs of {} on http://{addr}/",
        repo.git_dir().display()
    );
    axum::serve(listener, baton_web::local_site::router(repo)).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cron(sync: bool) -> anyhow::Result<ExitCode> {
    let repo = repo().await?;
    let top = repo
        .top()
        .ok_or_else(|| anyhow::anyhow!("baton cron needs a repository with a working tree"))?
        .to_path_buf();
    let baton = std::env::current_exe()?;
    let (file, entries) = baton_local::cron::entries(&repo).await?;
    if sync {
        let changed = baton_local::cron::sync(&top, &baton, &entries)?;
        let what = if changed {
            "installed"
        } else {
            "already installed"
        };
        eprintln!(
            "{} entr(ies) of {file} {what} in the crontab",
            entries.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        let mut line = e.schedule.clone();
        if let Some(b) = &e.branch {
            line.push_str(&format!("  branch:{b}"));
        }
        if let Some(n) = &e.name {
            line.push_str(&format!("  name:{n}"));
        }
        if !e.targets.is_empty() {
            line.push_str(&format!("  {}", e.targets.join(" ")));
        }
        println!("{line}");
    }
    let state = if baton_local::cron::installed(&top, &baton, &entries)? {
        "in sync with the crontab"
    } else {
        "not in sync with the crontab (run `baton cron sync`)"
    };
    eprintln!("{} entr(ies) in {file}, {state}", entries.len());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let opts = PruneOptions {
        older_than: args
            .older_than
            .as_deref()
            .map(sync::parse_age)
            .transpose()?,
        keep_last: args.keep_last,
        remote: args.remote,
        yes: args.yes,
        gc_now: args.now,
    };
    let pruned = sync::prune_refs(&repo().await?, &opts, chrono::Utc::now()).await?;
    for r in &pruned.doomed {
        println!("{}", r.refname);
    }
    for r in &pruned.undated {
        eprintln!("kept {} (its age cannot be told from its id)", r.refname);
    }
    let where_ = opts.remote.as_deref().unwrap_or("this repository");
    if pruned.deleted {
        eprintln!("deleted {} run(s) from {where_}", pruned.doomed.len());
    } else if !pruned.doomed.is_empty() {
        eprintln!(
            "{} run(s) of {where_} would go (nothing deleted: add --yes)",
            pruned.doomed.len()
        );
    } else {
        eprintln!("no run of {where_} to prune");
    }
    Ok(ExitCode::SUCCESS)
}
