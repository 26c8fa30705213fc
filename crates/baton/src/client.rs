//! The CLI's side of the HTTP API.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use baton_web::api_types::{ErrorBody, Reloaded, Run, RunList, Status, TriggerBody};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ServerArgs;

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Exit codes of `trigger --wait` and `logs -f`: 0 success, then one per way a run can end.
fn exit_for(status: Option<Status>) -> ExitCode {
    ExitCode::from(match status {
        Some(Status::Success) => 0,
        Some(Status::Failed) => 1,
        Some(Status::Broken) => 3,
        Some(Status::Jammed) => 4,
        Some(Status::Canceled) => 5,
        Some(Status::Skipped) => 6,
        _ => 7,
    })
}

impl Client {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        let token = args.token.clone().ok_or_else(|| {
            anyhow!("no API token (hint: `export BATON_TOKEN=$(baton token create)` on the server's machine, or pass --token)")
        })?;
        Ok(Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            base: args.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .header("x-baton-client", "cli")
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the server at {} (is `baton serve` running?)",
                    self.base
                )
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (String::new(), "no message".to_string()),
        };
        Err(ApiFailure {
            status: status.as_u16(),
            code,
            message,
        }
        .into())
    }

    /// Reads a successful answer as the API type `T`.
    async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        resp: reqwest::Response,
    ) -> anyhow::Result<T> {
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the server's answer to {path} is not what this client expects (is the server a different version?)"
            )
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.http.get(self.url(path))).await?;
        self.read(path, resp).await
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let resp = self.send(self.http.post(self.url(path)).json(body)).await?;
        self.read(path, resp).await
    }

    pub async fn trigger(
        &self,
        name: &str,
        body: TriggerBody,
        wait: bool,
        follow: bool,
    ) -> anyhow::Result<ExitCode> {
        // A repository's task is `REPO/TASK`: one path segment, with its `/` escaped.
        let segment = name.replace('%', "%25").replace('/', "%2F");
        let answer: anyhow::Result<Run> = match self
            .post_json(&format!("/tasks/{segment}/trigger"), &body)
            .await
        {
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.code == "unknown_target") =>
            {
                self.post_json(&format!("/pipelines/{segment}/trigger"), &body)
                    .await
            }
            other => other,
        };
        let run = match answer {
            Err(e) => match e.downcast_ref::<ApiFailure>() {
                // Refused: the wait list is full. Nothing will run; say so and exit as for a
                // skipped run.
                Some(f) if f.code == "wait_list_full" => {
                    eprintln!("{name}: {}", f.message);
                    return Ok(exit_for(Some(Status::Skipped)));
                }
                _ => return Err(e),
            },
            Ok(run) => run,
        };
        let id = run.id;
        let status = run.status;
        if status == Status::Skipped {
            eprintln!("run {id}: {}", run.reason.as_deref().unwrap_or("skipped"));
            return Ok(if wait {
                exit_for(Some(Status::Skipped))
            } else {
                ExitCode::SUCCESS
            });
        }
        if !wait {
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("run {id} of {name}: {}", status.as_str());
        if follow && run.jobs.len() == 1 {
            self.follow_log(id, None).await?;
        }
        let end = self.wait(id).await?;
        let reason = end
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        eprintln!("run {id}: {}{reason}", end.status.as_str());
        Ok(exit_for(Some(end.status)))
    }

    async fn wait(&self, id: i64) -> anyhow::Result<Run> {
        let tty = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        loop {
            let run: Run = self.get_json(&format!("/runs/{id}/wait?timeout=1")).await?;
            if !run.status.is_terminal() {
                if tty {
                    let why = run.reason.as_deref().unwrap_or("");
                    eprint!(
                        "\r\x1b[2Krun {id}: {} {:.0}s {why}",
                        run.status.as_str(),
                        started.elapsed().as_secs_f64()
                    );
                }
                continue;
            }
            if tty {
                eprint!("\r\x1b[2K");
            }
            return Ok(run);
        }
    }

    /// Prints the log's raw bytes from offset 0 until the job ends.
    async fn follow_log(&self, id: i64, job: Option<&str>) -> anyhow::Result<Option<Status>> {
        let mut offset = 0u64;
        let mut out = std::io::stdout();
        loop {
            let mut url = format!("/runs/{id}/log?offset={offset}");
            if let Some(j) = job {
                url.push_str(&format!("&job={j}"));
            }
            let resp = self.send(self.http.get(self.url(&url))).await?;
            // The job's status, as JSON spells it; a missing or unknown one is not an end.
            let status: Option<Status> = resp
                .headers()
                .get("x-job-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| serde_json::from_value(serde_json::Value::from(v)).ok());
            let bytes = resp.bytes().await?;
            offset += bytes.len() as u64;
            out.write_all(&bytes)?;
            out.flush()?;
            let terminal = status.is_none_or(Status::is_terminal);
            if bytes.is_empty() {
                if terminal {
                    return Ok(status);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub async fn runs(&self, query: &[(&str, String)], json: bool) -> anyhow::Result<ExitCode> {
        let resp = self
            .send(self.http.get(self.url("/runs")).query(query))
            .await?;
        let body: RunList = self.read("/runs", resp).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&body)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:>6}  {:<24} {:<9} {:<9} {:<20} REASON",
            "ID", "TARGET", "STATUS", "TRIGGER", "ENQUEUED"
        );
        for r in &body.runs {
            println!(
                "{:>6}  {:<24} {:<9} {:<9} {:<20} {}",
                r.id,
                r.target,
                r.status.as_str(),
                r.trigger.as_str(),
                r.enqueued_at.format("%Y-%m-%dT%H:%M:%S"),
                r.reason.as_deref().unwrap_or(""),
            );
        }
        if let Some(next) = body.next_cursor {
            println!("(more: --cursor {next})");
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn show(&self, id: i64, json: bool) -> anyhow::Result<ExitCode> {
        let run: Run = self.get_json(&format!("/runs/{id}")).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&run)?);
            return Ok(ExitCode::SUCCESS);
        }
        // Times as JSON writes them (RFC 3339 with `Z`), `-` when not yet.
        let at = |t: Option<chrono::DateTime<chrono::Utc>>| match t {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            None => "-".to_string(),
        };
        let kind = match run.kind {
            baton_web::api_types::TargetKind::Task => "task",
            baton_web::api_types::TargetKind::Pipeline => "pipeline",
        };
        println!("run {id}: {kind} {} — {}", run.target, run.status.as_str());
        if let Some(r) = &run.reason {
            println!("  reason:   {r}");
        }
        println!("  trigger:  {}", run.trigger.as_str());
        println!(
            "  enqueued: {}\n  started:  {}\n  ended:    {}",
            at(Some(run.enqueued_at)),
            at(run.started_at),
            at(run.ended_at)
        );
        if !run.args.is_empty() {
            println!("  args:     {}", serde_json::to_string(&run.args)?);
        }
        for (v, label) in [(&run.ancestors, "after"), (&run.descendants, "led to")] {
            if !v.is_empty() {
                let ids: Vec<String> = v.iter().map(i64::to_string).collect();
                println!("  {label:<9} {}", ids.join(", "));
            }
        }
        for j in &run.jobs {
            println!(
                "  job {:<20} {:<9} worker={} exit={} {}",
                j.name,
                j.status.as_str(),
                j.worker.as_deref().unwrap_or("-"),
                j.exit_code.map_or("null".to_string(), |c| c.to_string()),
                j.reason.as_deref().unwrap_or(""),
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn logs(&self, id: i64, job: Option<&str>, follow: bool) -> anyhow::Result<ExitCode> {
        if follow {
            let status = self.follow_log(id, job).await?;
            return Ok(exit_for(status));
        }
        let mut url = format!("/runs/{id}/log");
        if let Some(j) = job {
            url.push_str(&format!("?job={j}"));
        }
        let mut resp = self.send(self.http.get(self.url(&url))).await?;
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = resp.chunk().await? {
            out.write_all(&chunk)?;
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn cancel(&self, id: i64) -> anyhow::Result<ExitCode> {
        let run: Run = self
            .post_json(&format!("/runs/{id}/cancel"), &serde_json::json!({}))
            .await?;
        println!("run {id}: {}", run.status.as_str());
        Ok(ExitCode::SUCCESS)
    }

    pub async fn approve(&self, id: i64) -> anyhow::Result<ExitCode> {
        let run: Run = self
            .post_json(&format!("/runs/{id}/approve"), &serde_json::json!({}))
            .await?;
        println!("run {id}: {}", run.status.as_str());
        Ok(ExitCode::SUCCESS)
    }

    pub async fn rerun(&self, id: i64) -> anyhow::Result<ExitCode> {
        let run: Run = self
            .post_json(&format!("/runs/{id}/rerun"), &serde_json::json!({}))
            .await?;
        println!("{}", run.id);
        Ok(ExitCode::SUCCESS)
    }

    /// `baton cache why JOB`: the job's digest and what made it differ from the last
    /// successful job of its task, or the job it hit.
    pub async fn cache_why(&self, job: i64) -> anyhow::Result<ExitCode> {
        let c: baton_web::api_types::JobCacheInfo =
            self.get_json(&format!("/jobs/{job}/cache")).await?;
        println!("job {} (run {}): digest {}", c.job_id, c.run_id, c.digest);
        if let Some(hit) = &c.hit {
            println!(
                "cache hit: same inputs as job {} (run {})",
                hit.job_id, hit.run_id
            );
            return Ok(ExitCode::SUCCESS);
        }
        match &c.compared_with {
            None => println!("no earlier successful job of {} to compare with", c.task),
            Some(o) if c.differences.is_empty() => println!(
                "same inputs as job {} (run {}), which had not ended when this one started",
                o.job_id, o.run_id
            ),
            Some(o) => {
                println!("differs from job {} (run {}):", o.job_id, o.run_id);
                for d in &c.differences {
                    println!("  {d}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn reload(&self) -> anyhow::Result<ExitCode> {
        match self
            .post_json::<Reloaded>("/config/reload", &serde_json::json!({}))
            .await
        {
            Ok(v) => {
                println!("reloaded: {} tasks, {} pipelines", v.tasks, v.pipelines);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => bail!("{e}"),
        }
    }
}

/// An error answer from the API.
#[derive(Debug)]
struct ApiFailure {
    status: u16,
    code: String,
    message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server answered {} ({}): {}",
            self.status, self.code, self.message
        )
    }
}

impl std::error::Error for ApiFailure {}
