//! The `command` provider: `up` and `down` programs the operator writes (for a cloud API). `up`
//! gets the agents' names and one-time join tokens in its environment (never argv, never a
//! log); `down NAME` removes the machine of an agent that left.

use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;

use super::{Launch, Provider};

/// How long `up` and `down` may run.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) struct CommandProvider {
    pub(super) up: String,
    pub(super) down: Option<String>,
}

impl Provider for CommandProvider {
    fn up<'a>(&'a self, l: &'a Launch) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let names: Vec<&str> = l.agents.iter().map(|(n, _)| n.as_str()).collect();
            let tokens: Vec<&str> = l.agents.iter().map(|(_, t)| t.as_str()).collect();
            let mut env = vec![
                ("BATON_POOL".to_string(), l.pool.clone()),
                ("BATON_COUNT".to_string(), l.agents.len().to_string()),
                ("BATON_SERVER".to_string(), l.server.clone()),
                ("BATON_AGENT_NAMES".to_string(), names.join(" ")),
                ("BATON_JOIN_TOKENS".to_string(), tokens.join(" ")),
                ("BATON_QUEUES".to_string(), l.queues.join(",")),
                ("BATON_SLOTS".to_string(), l.slots.to_string()),
                ("BATON_IDLE_TIMEOUT".to_string(), l.idle_timeout_arg()),
            ];
            if let [(name, token)] = l.agents.as_slice() {
                env.push(("BATON_AGENT_NAME".into(), name.clone()));
                env.push(("BATON_JOIN_TOKEN".into(), token.clone()));
            }
            run_program(&self.up, &[], &env).await
        })
    }

    fn down<'a>(&'a self, pool: &'a str, agent: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(down) = &self.down else {
                return Ok(());
            };
            let env = [
                ("BATON_POOL".to_string(), pool.to_string()),
                ("BATON_AGENT_NAME".to_string(), agent.to_string()),
            ];
            run_program(down, &[agent], &env).await
        })
    }
}

/// Runs a provider's program with `args` and `env` (added to a cleared environment with only
/// `PATH` and `HOME`), its output drained; the error says how it ended and its last output
/// (which never holds a token unless the program prints one).
async fn run_program(program: &str, args: &[&str], env: &[(String, String)]) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_string(), p)))
        .envs(std::env::var("HOME").map(|p| ("HOME".to_string(), p)))
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stderr = child.stderr.take();
    // The output is read beside the wait; agents the program starts in the background may keep
    // the pipe open, so after the program ends only what is there within a second is kept.
    let mut reader = tokio::spawn(async move {
        let mut err = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || err.len() > 64 * 1024 {
                    break;
                }
                err.extend_from_slice(&buf[..n]);
            }
        }
        err
    });
    let status = tokio::time::timeout(PROVIDER_TIMEOUT, child.wait())
        .await
        .map_err(|_| {
            format!(
                "{program} did not finish within {}s",
                PROVIDER_TIMEOUT.as_secs()
            )
        })?;
    let err = match tokio::time::timeout(Duration::from_secs(1), &mut reader).await {
        Ok(Ok(e)) => e,
        _ => {
            reader.abort();
            Vec::new()
        }
    };
    let status = status.map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let tail = super::tail(&String::from_utf8_lossy(&err), 400);
    Err(format!("{program} exited with {status}: {tail}"))
}
