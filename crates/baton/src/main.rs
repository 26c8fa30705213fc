//! The `baton` binary: the command line, the server's wiring, and the hidden supervisor mode.
//!
//! Architecture Invariant: no business logic here — it parses arguments, wires the crates
//! together, and talks to a running server over its HTTP API.

mod agent;
mod client;
mod cluster;
mod data;
mod local;
mod password;
mod prune;
mod serve;
mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The version and the commit it was built from (`baton --version`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BATON_GIT_COMMIT"),
    ")"
);

/// Baton: a self-hosted CI server. `baton serve` runs the server (scheduler, executors, web UI
/// and HTTP API); the client commands talk to it over its API (`BATON_SERVER`, `BATON_TOKEN`);
/// `user` and `token` work on its data directory (`BATON_DATA`).
#[derive(Parser)]
#[command(
    name = "baton",
    version = VERSION,
    about = "Baton: a self-hosted CI server. `baton serve` runs it (scheduler, executors, web UI, \
             HTTP API); the client commands talk to it (BATON_SERVER, BATON_TOKEN); `user` and \
             `token` work on its data directory (BATON_DATA).",
    long_about = None
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "BATON_SERVER",
        default_value = "http://127.0.0.1:8700",
        global = true
    )]
    server: String,
    /// An API token (make one with `baton token create`).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

/// The data directory (and database) of the commands that work on it directly.
#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// The server's data directory (the one `baton serve --data` uses); it must exist.
    #[arg(long, env = "BATON_DATA", default_value = "baton-data")]
    data: PathBuf,
    /// The server's database when it is not the data directory's SQLite file: a
    /// `postgres://USER:PASSWORD@HOST/DB` URL or a SQLite file (the one `baton serve --db` uses).
    #[arg(long, env = "BATON_DB", hide_env_values = true)]
    db: Option<String>,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Which inputs made a job's digest differ from the last successful job of its task (or
    /// which job it hit).
    Why {
        /// The job's id (as `baton show` and the run page list it).
        job: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: scheduler, executors, web UI and HTTP API.
    Serve(serve::ServeArgs),
    /// Run a pull-mode agent: connect out to a server and run the jobs it hands over.
    Agent(agent::AgentArgs),
    /// Check a config file or directory; print every error at its place.
    Validate {
        /// A YAML file or a directory of them.
        path: PathBuf,
    },
    /// Manage API tokens (works on the data directory directly).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage users of the web UI and API (works on the data directory directly).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Bring the database's schema up to date (`baton serve` does too when it starts).
    Migrate {
        /// Only list the migrations that would be applied.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Copy the database (SQLite: a consistent online copy; PostgreSQL: `pg_dump`) and the
    /// data directory's logs, artifacts and other files into a new directory.
    Backup {
        /// The directory to write (must not exist yet).
        dest: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List the tasks and pipelines you may see and trigger.
    #[command(alias = "pipelines")]
    Tasks {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Trigger a task or pipeline.
    Trigger {
        /// The task's or pipeline's name.
        name: String,
        /// An argument, passed to the scripts as an environment variable.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// For a repository's task (REPO/TASK): the branch, tag or commit to build.
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
        /// Wait for the run to end; exit with its result.
        #[arg(long)]
        wait: bool,
        /// Print the log as it grows (every job's, each line prefixed with its job, for a
        /// pipeline), then a summary; implies --wait.
        #[arg(long, short)]
        follow: bool,
        /// Run jobs with `cache:` even when a successful job had the same inputs.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete old runs: the server's (with --data) or this repository's stored local ones.
    ///
    /// With --data (or BATON_DATA): delete the server's ended runs that retention
    /// (`retention:` on tasks, `server.retention`) no longer keeps, with their logs, artifacts
    /// and results (counts and bytes). Without: list this repository's old stored local runs
    /// and delete them with --yes (then git collects their objects).
    Prune {
        /// The server's data directory: prune the server, not this repository's runs.
        #[arg(long, env = "BATON_DATA")]
        data: Option<PathBuf>,
        /// The server's config (a YAML file or a directory of them), for its retention rules.
        #[arg(long, env = "BATON_CONFIG", default_value = "examples")]
        config: PathBuf,
        /// With --data: the server's database when it is not the data directory's SQLite file.
        #[arg(long, env = "BATON_DB", hide_env_values = true)]
        db: Option<String>,
        /// With --data: only say what would go.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        local: local::PruneArgs,
    },
    /// The CI cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// List runs, newest first.
    Runs {
        /// Only runs of this task or pipeline.
        #[arg(long)]
        task: Option<String>,
        /// Only runs with this status (queued, running, success, failed, canceled, ...).
        #[arg(long)]
        status: Option<String>,
        /// Only runs with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only runs started this way (cli, api, schedule, chained, webhook, rerun, poll).
        #[arg(long)]
        trigger: Option<String>,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Show runs older than this id (the previous page's last id).
        #[arg(long)]
        cursor: Option<i64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one run with its jobs (a server's run by number, or a stored local run by id).
    Show {
        /// The run: a server run's number, or a stored local run's id.
        run: String,
        /// Print JSON (times in RFC 3339) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a run's log (raw bytes): a server's run by number, or a stored local run by id.
    Logs {
        /// The run: a server run's number, or a stored local run's id.
        run: String,
        /// The job whose log to print (a pipeline's run has one per task).
        #[arg(long)]
        job: Option<String>,
        /// Keep printing as the log grows until the job ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a queued or running run (its whole process tree).
    Cancel {
        /// The run's id.
        run: i64,
        /// Wait until the run has ended.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve a run waiting for approval (a pull request from a fork): it is queued.
    Approve {
        /// The run's id.
        run: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a new run of the same task or pipeline: with the same arguments, other ones, or
    /// only the failed jobs.
    Rerun {
        /// The run's id.
        run: i64,
        /// Rerun only the jobs that did not succeed (and the jobs that depend on them); the
        /// others are carried over with their results and artifacts.
        #[arg(long)]
        failed: bool,
        /// Rerun with these arguments instead of the run's (repeat for each; all are given
        /// anew).
        #[arg(long = "arg", value_name = "KEY=VALUE", conflicts_with = "failed")]
        args: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask the server to reload its config (a bad config keeps the old one).
    Reload {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop starting new jobs on QUEUE (every queue without one); running jobs go on and
    /// queued ones wait with the reason "queue paused". Administrators.
    Pause {
        /// A queue's name; without it, every queue.
        queue: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start dispatching to QUEUE again (every queue, and every paused one, without one).
    Resume {
        /// A queue's name; without it, every queue.
        queue: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pause every queue and stop the server once its running jobs have ended (for upgrades).
    Drain {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a shell completion script (e.g. `baton completions bash > /etc/bash_completion.d/baton`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; e.g. `baton man > baton.1`).
    Man,
    /// Run the repository's .baton/ here, with no server; store the result in git.
    Run(local::RunArgs),
    /// The current branch's commits (like `git log --oneline`) with their stored runs.
    Log {
        /// At most this many commits.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        /// Where to start (default HEAD).
        rev: Option<String>,
    },
    /// Push the stored runs the remote lacks (only run refs).
    Push {
        /// The git remote to push the run refs to.
        #[arg(default_value = "origin")]
        remote: String,
    },
    /// Fetch the stored runs this repository lacks (only run refs).
    Pull {
        /// The git remote to fetch the run refs from.
        #[arg(default_value = "origin")]
        remote: String,
    },
    /// Serve a read-only site of this repository's stored runs, read from its refs.
    Web {
        /// The address (host:port) the site listens on.
        #[arg(long, default_value = "127.0.0.1:8701")]
        listen: String,
    },
    /// The repository's .baton/crontab (or .jci/crontab) and the user's crontab.
    Cron {
        #[command(subcommand)]
        command: CronCommand,
    },
    #[command(name = "__supervise", hide = true)]
    Supervise { dir: PathBuf },
}

#[derive(Subcommand)]
enum CronCommand {
    /// List the entries and whether the crontab holds them.
    Ls,
    /// Install them into the user's crontab in a block of their own (idempotent; entries
    /// removed from the file are removed; nothing outside the block changes).
    Sync,
}

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user, or set an existing user's password (which ends their sessions).
    /// Administrators are the config's `administrators:` list, not a property of the user.
    Add {
        /// The user's name (letters, digits, `.`, `_`, `-`, `@`).
        name: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List the users.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Remove a user with their sessions and tokens.
    Remove {
        /// The user's name.
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it (shown once; stored hashed). With `--user` the token acts as
    /// that user; without, it is an operator token that acts as an administrator.
    Create {
        /// A name to tell the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// The user the token belongs to (see `baton user add`).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List the live tokens (never their secrets).
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Revoke a token by its id (from `baton token list`).
    Revoke {
        /// The token's id.
        id: i64,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// `baton rerun RUN [--failed] [--arg K=V…]`: new arguments only when some are given.
async fn rerun(
    run: i64,
    failed: bool,
    args: &[String],
    server: &ServerArgs,
) -> anyhow::Result<ExitCode> {
    let body = baton_web::api_types::RerunBody {
        args: (!args.is_empty()).then(|| parse_args(args)).transpose()?,
    };
    client::Client::new(server)?.rerun(run, failed, body).await
}

fn parse_args(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--arg {a:?} must look like KEY=VALUE"))
        })
        .collect()
}

/// The line a diagnostic points at with a caret under its column, as rustc shows it (empty
/// when the file cannot be read again).
fn source_excerpt(d: &baton_core::config::Diagnostic) -> String {
    let Some(line) = std::fs::read_to_string(&d.file)
        .ok()
        .and_then(|t| t.lines().nth(d.line.saturating_sub(1)).map(str::to_owned))
    else {
        return String::new();
    };
    let n = d.line.to_string();
    let pad = " ".repeat(n.len());
    let lead: String = line
        .chars()
        .take(d.col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("\n{pad} |\n{n} | {line}\n{pad} | {lead}^")
}

/// Big allocations (each password check's 19 MiB argon2 buffer) get their own mappings, which go
/// back to the system when freed. glibc's default raises this threshold after the first such
/// free, after which the buffers come from per-thread heaps that keep their memory: a flood of
/// logins then left the server hundreds of MiB larger for good.
fn return_big_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn main() -> ExitCode {
    return_big_allocations();
    let cli = Cli::parse();
    if let Command::Supervise { dir } = &cli.command {
        return ExitCode::from(baton_exec::supervisor::main(dir).clamp(0, 255) as u8);
    }
    if let Command::Validate { path } = &cli.command {
        return match baton_core::config::load_path(path) {
            Ok(c) => {
                println!(
                    "{}: ok ({} tasks, {} pipelines, {} workers)",
                    path.display(),
                    c.tasks.len(),
                    c.pipelines.len(),
                    c.workers.len()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for d in &errs.diagnostics {
                    eprintln!("{d}{}", source_excerpt(d));
                }
                eprintln!("{} error(s) in {}", errs.diagnostics.len(), path.display());
                ExitCode::from(1)
            }
        };
    }
    // The supervisor launcher is forked now, while this process has one thread and nothing
    // open: a small clean process that forks each job's supervisor without an exec.
    // It keeps the umask it is forked with: the server's private one (files 0600).
    let launcher = match &cli.command {
        Command::Serve(_) => {
            serve::private_files();
            baton_exec::launcher::start()
        }
        // `baton run` starts a supervisor per job too: forked, not the binary re-executed.
        Command::Run(_) => baton_exec::launcher::start(),
        _ => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli.command, launcher)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    command: Command,
    launcher: Option<baton_exec::launcher::Launcher>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::serve(args, launcher).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Token { command } => data::token(command).await,
        Command::User { command } => data::user(command).await,
        Command::Migrate { dry_run, data } => data::migrate(&data, dry_run).await,
        Command::Backup { dest, data } => data::backup(&data, &dest).await,
        Command::Tasks { json, server } => client::Client::new(&server)?.tasks(json).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "baton", &mut script);
            text::write_stdout(&script)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            text::write_stdout(&page)
        }
        Command::Trigger {
            name,
            args,
            git_ref,
            wait,
            follow,
            no_cache,
            server,
        } => {
            let body = baton_web::api_types::TriggerBody {
                args: parse_args(&args)?,
                git_ref,
                no_cache,
            };
            client::Client::new(&server)?
                .trigger(&name, body, wait || follow, follow)
                .await
        }
        Command::Prune {
            data: Some(data),
            db,
            config,
            dry_run,
            ..
        } => prune::prune_command(&config, &data, db.as_deref(), dry_run).await,
        Command::Prune {
            data: None, local, ..
        } => local::prune(local).await,
        Command::Cache {
            command: CacheCommand::Why { job, server },
        } => client::Client::new(&server)?.cache_why(job).await,
        Command::Runs {
            task,
            status,
            tag,
            trigger,
            limit,
            cursor,
            json,
            server,
        } => {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("task", task),
                ("status", status),
                ("tag", tag),
                ("trigger", trigger),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            if let Some(c) = cursor {
                q.push(("cursor", c.to_string()));
            }
            client::Client::new(&server)?.runs(&q, json).await
        }
        Command::Show { run, json, server } => match run.parse::<i64>() {
            Ok(id) => client::Client::new(&server)?.show(id, json).await,
            Err(_) => local::show(&run, json).await,
        },
        Command::Logs {
            run,
            job,
            follow,
            server,
        } => match run.parse::<i64>() {
            Ok(id) => {
                client::Client::new(&server)?
                    .logs(id, job.as_deref(), follow)
                    .await
            }
            Err(_) => local::logs(&run, job.as_deref()).await,
        },
        Command::Run(args) => local::run_command(args, launcher).await,
        Command::Log { n, rev } => local::log(n, rev).await,
        Command::Push { remote } => local::push(&remote).await,
        Command::Pull { remote } => local::pull(&remote).await,
        Command::Web { listen } => local::web(&listen).await,
        Command::Cron { command } => local::cron(matches!(command, CronCommand::Sync)).await,
        Command::Cancel { run, wait, server } => {
            client::Client::new(&server)?.cancel(run, wait).await
        }
        Command::Approve { run, server } => client::Client::new(&server)?.approve(run).await,
        Command::Rerun {
            run,
            failed,
            args,
            server,
        } => rerun(run, failed, &args, &server).await,
        Command::Reload { server } => client::Client::new(&server)?.reload().await,
        Command::Pause { queue, server } => client::Client::new(&server)?.pause(queue, true).await,
        Command::Resume { queue, server } => {
            client::Client::new(&server)?.pause(queue, false).await
        }
        Command::Drain { server } => client::Client::new(&server)?.drain().await,
        Command::Validate { .. } | Command::Supervise { .. } => unreachable!("handled before"),
    }
}
