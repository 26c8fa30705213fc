//! The CLI's side of the HTTP API.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use baton_web::api_types::{
    ErrorBody, PipelineList, Reloaded, Run, RunList, Status, TaskList, TriggerBody,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ServerArgs;

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Exit codes of `trigger --wait` and `logs -f`: 0 success, then one per way a run can end.
pub(crate) fn exit_for(status: Option<Status>) -> ExitCode {
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
        if follow && run.kind == baton_web::api_types::TargetKind::Pipeline {
            let end = self.follow_pipeline(id).await?;
            print!("{}", summary(&end));
        } else if follow {
            self.follow_log(id, None, None).await?;
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

    /// Prints the log's raw bytes from offset 0 until the job ends; with a `prefix`, each line
    /// is printed whole after it (a pipeline's jobs share the terminal, as `docker compose`).
    async fn follow_log(
        &self,
        id: i64,
        job: Option<&str>,
        prefix: Option<&str>,
    ) -> anyhow::Result<Option<Status>> {
        let mut offset = 0u64;
        let mut pending: Vec<u8> = Vec::new();
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
            let terminal = status.is_none_or(Status::is_terminal);
            match prefix {
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)?;
                    out.flush()?;
                }
                Some(p) => {
                    pending.extend_from_slice(&bytes);
                    print_lines(p, &mut pending, terminal && bytes.is_empty())?;
                }
            }
            if bytes.is_empty() {
                if terminal {
                    return Ok(status);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Follows every job of pipeline run `id` as it starts, each line prefixed with its job.
    async fn follow_pipeline(&self, id: i64) -> anyhow::Result<Run> {
        let mut followed: Vec<String> = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let run: Run = self.get_json(&format!("/runs/{id}")).await?;
            let width = run.jobs.iter().map(|j| j.name.len()).max().unwrap_or(0);
            for j in &run.jobs {
                if j.started_at.is_some() && !followed.contains(&j.name) {
                    followed.push(j.name.clone());
                    let me = self.clone_client();
                    let (name, prefix) = (j.name.clone(), format!("{:<width$} | ", j.name));
                    tasks.spawn(async move { me.follow_log(id, Some(&name), Some(&prefix)).await });
                }
            }
            if run.status.is_terminal() {
                while let Some(done) = tasks.join_next().await {
                    done??;
                }
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn clone_client(&self) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
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
        let mut rows = vec![
            [
                "ID", "TARGET", "STATUS", "TRIGGER", "QUEUED", "DURATION", "REASON",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for r in &body.runs {
            rows.push(vec![
                r.id.to_string(),
                r.target.clone(),
                r.status.as_str().to_owned(),
                r.trigger.as_str().to_owned(),
                crate::text::local_time(r.enqueued_at),
                duration(r.started_at, r.ended_at),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        print!("{}", crate::text::table(&rows));
        if let Some(next) = body.next_cursor {
            println!("(more: --cursor {next})");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `baton tasks`: the tasks and pipelines the caller may see.
    pub async fn tasks(&self, json: bool) -> anyhow::Result<ExitCode> {
        let tasks: TaskList = self.get_json("/tasks").await?;
        let pipelines: PipelineList = self.get_json("/pipelines").await?;
        if json {
            let all = serde_json::json!({"tasks": tasks.tasks, "pipelines": pipelines.pipelines});
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(ExitCode::SUCCESS);
        }
        let mut rows = vec![
            ["NAME", "KIND", "WHEN", "DESCRIPTION"]
                .map(String::from)
                .to_vec(),
        ];
        for t in &tasks.tasks {
            let mut when = Vec::new();
            if let Some(p) = &t.period {
                let ms = (p.secs * 1000 + u64::from(p.nanos / 1_000_000)) as i64;
                when.push(format!("every {}", baton_core::run::format_duration_ms(ms)));
            }
            if let Some(c) = &t.schedule {
                when.push(format!("cron {}", c.cron));
            }
            if !t.enabled {
                when.push("disabled".into());
            }
            rows.push(vec![
                t.name.clone(),
                "task".into(),
                when.join(", "),
                t.description.clone(),
            ]);
        }
        for p in &pipelines.pipelines {
            let desc = format!("{} ({} tasks)", p.description, p.tasks.len());
            rows.push(vec![
                p.name.clone(),
                "pipeline".into(),
                String::new(),
                desc.trim().into(),
            ]);
        }
        print!("{}", crate::text::table(&rows));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn show(&self, id: i64, json: bool) -> anyhow::Result<ExitCode> {
        let mut run: Run = self.get_json(&format!("/runs/{id}")).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&run)?);
            return Ok(ExitCode::SUCCESS);
        }
        let at = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or("-".to_owned(), crate::text::local_time)
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
            "  queued:   {}\n  started:  {}\n  ended:    {}\n  duration: {}",
            at(Some(run.enqueued_at)),
            at(run.started_at),
            at(run.ended_at),
            duration(run.started_at, run.ended_at)
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
        // In the order they ran (a DAG's dependencies first); jobs that never started last.
        run.jobs
            .sort_by_key(|j| (j.started_at.is_none(), j.started_at, j.id));
        print!("{}", indent(&summary(&run)));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn logs(&self, id: i64, job: Option<&str>, follow: bool) -> anyhow::Result<ExitCode> {
        if job.is_none() {
            let run: Run = self.get_json(&format!("/runs/{id}")).await?;
            if run.jobs.len() > 1 {
                let names: Vec<&str> = run.jobs.iter().map(|j| j.name.as_str()).collect();
                bail!(
                    "run {id} is a pipeline with {} jobs; pick one with --job NAME (one of: {})",
                    names.len(),
                    names.join(", ")
                );
            }
        }
        if follow {
            let status = self.follow_log(id, job, None).await?;
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

    pub async fn cancel(&self, id: i64, wait: bool) -> anyhow::Result<ExitCode> {
        let run: Run = self
            .post_json(&format!("/runs/{id}/cancel"), &serde_json::json!({}))
            .await?;
        if run.status.is_terminal() {
            println!("run {id} has ended: {}", run.status.as_str());
            return Ok(ExitCode::SUCCESS);
        }
        if !wait {
            println!(
                "run {id} is being canceled (it was {}); `baton cancel {id} --wait` waits for its end",
                run.status.as_str()
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "run {id} is being canceled (it was {})",
            run.status.as_str()
        );
        let end = self.wait(id).await?;
        println!("run {id}: {}", end.status.as_str());
        Ok(ExitCode::SUCCESS)
    }

    pub async fn approve(&self, id: i64) -> anyhow::Result<ExitCode> {
        let run: Run = self
            .post_json(&format!("/runs/{id}/approve"), &serde_json::json!({}))
            .await?;
        println!("run {id}: {}", run.status.as_str());
        Ok(ExitCode::SUCCESS)
    }

    pub async fn rerun(
        &self,
        id: i64,
        failed: bool,
        body: baton_web::api_types::RerunBody,
    ) -> anyhow::Result<ExitCode> {
        let path = if failed {
            format!("/runs/{id}/rerun?failed=true")
        } else {
            format!("/runs/{id}/rerun")
        };
        let run: Run = self.post_json(&path, &body).await?;
        println!("{}", run.id);
        Ok(ExitCode::SUCCESS)
    }

    /// Pauses (`paused`) or resumes `queue` (every queue when `None`) and prints what is
    /// paused then.
    pub async fn pause(&self, queue: Option<String>, paused: bool) -> anyhow::Result<ExitCode> {
        let path = if paused { "/pause" } else { "/resume" };
        let v: serde_json::Value = self
            .post_json(path, &serde_json::json!({ "queue": queue }))
            .await?;
        let p = &v["paused"];
        let names: Vec<&str> = p["queues"]
            .as_array()
            .map(|a| a.iter().filter_map(|q| q.as_str()).collect())
            .unwrap_or_default();
        if p["all"] == true {
            println!("paused: every queue (baton resume)");
        } else if names.is_empty() {
            println!("no queue is paused");
        } else {
            println!("paused: {}", names.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Asks the server to drain: it stops once its running jobs have ended.
    pub async fn drain(&self) -> anyhow::Result<ExitCode> {
        let v: serde_json::Value = self.post_json("/drain", &serde_json::json!({})).await?;
        println!(
            "draining: every queue is paused; the server stops when its {} running job(s) end",
            v["running"]
        );
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

/// How long something ran, in the format every Baton surface uses; `-` if it never started,
/// `… so far` while it runs.
fn duration(
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let fmt = baton_core::run::format_duration_ms;
    match (start, end) {
        (Some(s), Some(e)) => fmt((e - s).num_milliseconds()),
        (Some(s), None) => format!(
            "{} so far",
            fmt((chrono::Utc::now() - s).num_milliseconds())
        ),
        _ => "-".into(),
    }
}

/// A run's jobs as a table: status, duration, worker, exit code and reason.
fn summary(run: &Run) -> String {
    let mut rows = vec![
        ["JOB", "STATUS", "DURATION", "WORKER", "EXIT", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for j in &run.jobs {
        rows.push(vec![
            j.name.clone(),
            j.status.as_str().to_owned(),
            duration(j.started_at, j.ended_at),
            j.worker.clone().unwrap_or_else(|| "-".into()),
            j.exit_code.map_or("-".into(), |c| c.to_string()),
            j.reason.clone().unwrap_or_default(),
        ]);
    }
    crate::text::table(&rows)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Prints the whole lines of `pending` after `prefix` (and, at the end, a last unfinished one).
fn print_lines(prefix: &str, pending: &mut Vec<u8>, end: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    while let Some(i) = pending.iter().position(|&b| b == b'\n') {
        out.write_all(prefix.as_bytes())?;
        out.write_all(&pending[..=i])?;
        pending.drain(..=i);
    }
    if end && !pending.is_empty() {
        out.write_all(prefix.as_bytes())?;
        out.write_all(pending)?;
        out.write_all(b"\n")?;
        pending.clear();
    }
    out.flush()
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
