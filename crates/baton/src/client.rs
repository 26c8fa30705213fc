//! The CLI's side of the HTTP API.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::ServerArgs;

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Exit codes of `trigger --wait` and `logs -f`: 0 success, then one per way a run can end.
fn exit_for(status: &str) -> ExitCode {
    ExitCode::from(match status {
        "success" => 0,
        "failed" => 1,
        "broken" => 3,
        "jammed" => 4,
        "canceled" => 5,
        "skipped" => 6,
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
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = body["error"]["message"].as_str().unwrap_or("no message");
        let code = body["error"]["code"].as_str().unwrap_or("");
        Err(ApiFailure {
            status: status.as_u16(),
            code: code.to_string(),
            message: msg.to_string(),
        }
        .into())
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .send(self.http.get(self.url(path)))
            .await?
            .json()
            .await?)
    }

    async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self
            .send(self.http.post(self.url(path)).json(&body))
            .await?
            .json()
            .await?)
    }

    pub async fn trigger(
        &self,
        name: &str,
        args: BTreeMap<String, String>,
        wait: bool,
        follow: bool,
    ) -> anyhow::Result<ExitCode> {
        let body = json!({ "args": args });
        let answer = match self
            .post_json(&format!("/tasks/{name}/trigger"), body.clone())
            .await
        {
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.code == "unknown_target") =>
            {
                self.post_json(&format!("/pipelines/{name}/trigger"), body)
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
                    return Ok(exit_for("skipped"));
                }
                _ => return Err(e),
            },
            Ok(run) => run,
        };
        let id = run["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("the server returned no run id"))?;
        let status = run["status"].as_str().unwrap_or("");
        if status == "skipped" {
            eprintln!("run {id}: {}", run["reason"].as_str().unwrap_or("skipped"));
            return Ok(if wait {
                exit_for("skipped")
            } else {
                ExitCode::SUCCESS
            });
        }
        if !wait {
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("run {id} of {name}: {status}");
        if follow {
            let jobs = run["jobs"].as_array().cloned().unwrap_or_default();
            if jobs.len() == 1 {
                self.follow_log(id, None).await?;
            }
        }
        let end = self.wait(id).await?;
        let status = end["status"].as_str().unwrap_or("unknown").to_string();
        let reason = end["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        eprintln!("run {id}: {status}{reason}");
        Ok(exit_for(&status))
    }

    async fn wait(&self, id: i64) -> anyhow::Result<Value> {
        let tty = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        loop {
            let run = self.get_json(&format!("/runs/{id}/wait?timeout=1")).await?;
            let status = run["status"].as_str().unwrap_or("");
            if matches!(status, "queued" | "started" | "running") {
                if tty {
                    let why = run["reason"].as_str().unwrap_or("");
                    eprint!(
                        "\r\x1b[2Krun {id}: {status} {:.0}s {why}",
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
    async fn follow_log(&self, id: i64, job: Option<&str>) -> anyhow::Result<String> {
        let mut offset = 0u64;
        let mut out = std::io::stdout();
        loop {
            let mut url = format!("/runs/{id}/log?offset={offset}");
            if let Some(j) = job {
                url.push_str(&format!("&job={j}"));
            }
            let resp = self.send(self.http.get(self.url(&url))).await?;
            let status = resp
                .headers()
                .get("x-job-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = resp.bytes().await?;
            offset += bytes.len() as u64;
            out.write_all(&bytes)?;
            out.flush()?;
            let terminal = !matches!(status.as_str(), "queued" | "started" | "running");
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
        let body: Value = resp.json().await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&body)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:>6}  {:<24} {:<9} {:<9} {:<20} REASON",
            "ID", "TARGET", "STATUS", "TRIGGER", "ENQUEUED"
        );
        for r in body["runs"].as_array().into_iter().flatten() {
            println!(
                "{:>6}  {:<24} {:<9} {:<9} {:<20} {}",
                r["id"],
                r["target"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                r["trigger"].as_str().unwrap_or(""),
                r["enqueued_at"]
                    .as_str()
                    .unwrap_or("")
                    .get(..19)
                    .unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
            );
        }
        if let Some(next) = body["next_cursor"].as_i64() {
            println!("(more: --cursor {next})");
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn show(&self, id: i64, json: bool) -> anyhow::Result<ExitCode> {
        let run = self.get_json(&format!("/runs/{id}")).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&run)?);
            return Ok(ExitCode::SUCCESS);
        }
        let s = |k: &str| run[k].as_str().unwrap_or("-").to_string();
        println!("run {id}: {} {} — {}", s("kind"), s("target"), s("status"));
        if let Some(r) = run["reason"].as_str() {
            println!("  reason:   {r}");
        }
        println!("  trigger:  {}", s("trigger"));
        println!(
            "  enqueued: {}\n  started:  {}\n  ended:    {}",
            s("enqueued_at"),
            s("started_at"),
            s("ended_at")
        );
        if let Some(args) = run["args"].as_object().filter(|a| !a.is_empty()) {
            println!("  args:     {}", serde_json::to_string(args)?);
        }
        for (k, label) in [("ancestors", "after"), ("descendants", "led to")] {
            if let Some(v) = run[k].as_array().filter(|a| !a.is_empty()) {
                let ids: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                println!("  {label:<9} {}", ids.join(", "));
            }
        }
        for j in run["jobs"].as_array().into_iter().flatten() {
            println!(
                "  job {:<20} {:<9} worker={} exit={} {}",
                j["name"].as_str().unwrap_or(""),
                j["status"].as_str().unwrap_or(""),
                j["worker"].as_str().unwrap_or("-"),
                j["exit_code"],
                j["reason"].as_str().unwrap_or(""),
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn logs(&self, id: i64, job: Option<&str>, follow: bool) -> anyhow::Result<ExitCode> {
        if follow {
            let status = self.follow_log(id, job).await?;
            return Ok(exit_for(&status));
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
        let run = self
            .post_json(&format!("/runs/{id}/cancel"), json!({}))
            .await?;
        println!("run {id}: {}", run["status"].as_str().unwrap_or(""));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn rerun(&self, id: i64) -> anyhow::Result<ExitCode> {
        let run = self
            .post_json(&format!("/runs/{id}/rerun"), json!({}))
            .await?;
        println!("{}", run["id"]);
        Ok(ExitCode::SUCCESS)
    }

    pub async fn reload(&self) -> anyhow::Result<ExitCode> {
        match self.post_json("/config/reload", json!({})).await {
            Ok(v) => {
                println!(
                    "reloaded: {} tasks, {} pipelines",
                    v["tasks"], v["pipelines"]
                );
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
