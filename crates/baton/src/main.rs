//! The `baton` binary: the command line, the server's wiring, and the hidden supervisor mode.
//!
//! Architecture Invariant: no business logic here — it parses arguments, wires the crates
//! together, and talks to a running server over its HTTP API.

mod agent;
mod client;
mod password;
mod prune;
mod serve;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Baton: a self-hosted CI server and pipeline runner.
#[derive(Parser)]
#[command(name = "baton", version, about)]
struct Cli {
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

#[derive(Subcommand)]
enum CacheCommand {
    /// Which inputs made a job's digest differ from the last successful job of its task (or
    /// which job it hit).
    Why {
        job: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: scheduler, executors and HTTP API.
    Serve(serve::ServeArgs),
    /// Run a pull-mode agent: connect out to a server and run the jobs it hands over.
    Agent(agent::AgentArgs),
    /// Check a config file or directory; print every error as file:line:col: message.
    Validate {
        /// A YAML file or a directory of them.
        path: PathBuf,
    },
    /// Manage API tokens (talks to the data directory directly).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage users of the web UI and API (talks to the data directory directly).
    User {
        #[command(subcommand)]
        command: UserCommand,
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
        /// Print the log as it grows; implies --wait.
        #[arg(long, short)]
        follow: bool,
        /// Run jobs with `cache:` even when a successful job had the same inputs.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete the ended runs that retention (`retention:` on tasks, `server.retention`) no
    /// longer keeps, with their logs, artifacts and results; counts and bytes.
    Prune {
        /// A YAML config file or a directory of them (the server's).
        #[arg(long, env = "BATON_CONFIG", default_value = "examples")]
        config: PathBuf,
        #[arg(long, env = "BATON_DATA", default_value = "baton-data")]
        data: PathBuf,
        /// Only say what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// The CI cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// List runs, newest first.
    Runs {
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        trigger: Option<String>,
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
    /// Show one run with its jobs.
    Show {
        run: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a run's log (raw bytes).
    Logs {
        run: i64,
        /// The job (pipelines).
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
        run: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve a run waiting for approval (a pull request from a fork): it is queued.
    Approve {
        run: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a new run of the same task with the same arguments.
    Rerun {
        run: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask the server to reload its config (a bad config keeps the old one).
    Reload {
        #[command(flatten)]
        server: ServerArgs,
    },
    #[command(name = "__supervise", hide = true)]
    Supervise { dir: PathBuf },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or set an existing user's password (which ends their sessions).
    /// Administrators are the config's `administrators:` list, not a property of the user.
    Add {
        name: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, env = "BATON_DATA", default_value = "baton-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (shown once; stored hashed). With `--user` the token acts as
    /// that user; without, it is an operator token that acts as an administrator.
    Create {
        #[arg(long, default_value = "cli")]
        name: String,
        /// The user the token belongs to (see `baton user add`).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, env = "BATON_DATA", default_value = "baton-data")]
        data: PathBuf,
    },
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
                    eprintln!("{d}");
                }
                eprintln!("{} error(s) in {}", errs.diagnostics.len(), path.display());
                ExitCode::from(1)
            }
        };
    }
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
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Token {
            command: TokenCommand::Create { name, user, data },
        } => {
            std::fs::create_dir_all(&data)?;
            let store = baton_store::Store::open(&data.join("baton.db")).await?;
            let token = store.create_user_token(&name, user.as_deref()).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    password_stdin,
                    data,
                },
        } => {
            let password = password::read(password_stdin)?;
            std::fs::create_dir_all(&data)?;
            let store = baton_store::Store::open(&data.join("baton.db")).await?;
            if store.upsert_user(&name, &password).await? {
                eprintln!("user {name} added");
            } else {
                eprintln!("password of {name} changed; their sessions ended");
            }
            Ok(ExitCode::SUCCESS)
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
            config,
            data,
            dry_run,
        } => prune::prune_command(&config, &data, dry_run).await,
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
        Command::Show { run, json, server } => client::Client::new(&server)?.show(run, json).await,
        Command::Logs {
            run,
            job,
            follow,
            server,
        } => {
            client::Client::new(&server)?
                .logs(run, job.as_deref(), follow)
                .await
        }
        Command::Cancel { run, server } => client::Client::new(&server)?.cancel(run).await,
        Command::Approve { run, server } => client::Client::new(&server)?.approve(run).await,
        Command::Rerun { run, server } => client::Client::new(&server)?.rerun(run).await,
        Command::Reload { server } => client::Client::new(&server)?.reload().await,
        Command::Validate { .. } | Command::Supervise { .. } => unreachable!("handled before"),
    }
}
