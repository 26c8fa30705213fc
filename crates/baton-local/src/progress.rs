//! What `baton run` shows while it runs: on a terminal a line per job with a live spinner and
//! its elapsed time (`indicatif`); in a pipe plain lines; with `--follow` every log line as it
//! is written, prefixed by its job. A failing job's log is shown when it fails.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use baton_core::run::Status;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{JobResult, Progress};
use crate::record::RunRecord;

/// How much of a failing job's log is shown (its last lines).
const FAILED_LOG_LINES: usize = 200;

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live lines with spinners (stdout is a terminal).
    Terminal,
    /// One line per start and end (a pipe, a file).
    Plain,
    /// Every log line, prefixed by its job.
    Follow,
}

/// The display of one run.
pub struct Display {
    mode: Mode,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    tails: Mutex<HashMap<String, Tail>>,
}

impl Display {
    pub fn new(mode: Mode) -> Display {
        let target = if mode == Mode::Terminal {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        Display {
            mode,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            tails: Mutex::new(HashMap::new()),
        }
    }

    /// Prints `text` without tearing the live lines.
    fn say(&self, text: &str) {
        if self.mode == Mode::Terminal {
            self.multi.suspend(|| print_out(text));
        } else {
            print_out(text);
        }
    }
}

fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

impl Progress for Display {
    fn started(&self, key: &str, log: &Path) {
        match self.mode {
            Mode::Terminal => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_message(key.to_owned());
                bar.enable_steady_tick(Duration::from_millis(100));
                lock(&self.bars).insert(key.to_owned(), bar);
            }
            Mode::Plain => self.say(&format!("{key}: started")),
            Mode::Follow => {
                self.say(&format!("[{key}] started"));
                let tail = Tail::start(key, log.to_path_buf());
                lock(&self.tails).insert(key.to_owned(), tail);
            }
        }
    }

    fn ended(&self, key: &str, result: &JobResult) {
        if let Some(tail) = lock(&self.tails).remove(key) {
            tail.stop();
        }
        let line = end_line(key, result);
        match lock(&self.bars).remove(key) {
            Some(bar) => {
                bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
                bar.finish_with_message(line);
            }
            None if self.mode == Mode::Follow => self.say(&format!("[{key}] {line}")),
            None if self.mode == Mode::Terminal => {
                let _ = self.multi.println(line);
            }
            None => self.say(&line),
        }
        let failed = result.status.is_failure() && result.status != Status::Canceled;
        if failed
            && self.mode != Mode::Follow
            && let Some(dir) = &result.dir
        {
            let log = std::fs::read(dir.join(baton_exec::layout::LOG_FILE)).unwrap_or_default();
            self.say(&failed_log(key, &log));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `✓ build  success  1.2s` and the reason when there is one.
pub fn end_line(key: &str, r: &JobResult) -> String {
    let mark = match r.status {
        Status::Success => "✓",
        Status::Skipped | Status::Canceled => "-",
        _ => "✗",
    };
    let took = match (r.started_at, r.ended_at) {
        (Some(a), Some(b)) => format!(" in {}", seconds((b - a).num_milliseconds())),
        _ => String::new(),
    };
    let why = match &r.reason {
        Some(why) if r.status != Status::Success => format!(" ({why})"),
        _ => String::new(),
    };
    format!("{mark} {key}: {}{took}{why}", r.status)
}

/// `1.2s`, `2m05s`.
pub fn seconds(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// The end of a failing job's log, framed.
fn failed_log(key: &str, log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(FAILED_LOG_LINES);
    let mut out = format!("--- log of {key}");
    if start > 0 {
        out.push_str(&format!(
            " (last {FAILED_LOG_LINES} of {} lines)",
            lines.len()
        ));
    }
    out.push_str(" ---\n");
    for l in &lines[start..] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("--- end of {key} ---"));
    out
}

/// The run's last lines: its status, its jobs counted by status, where it is stored.
pub fn summary(record: &RunRecord, refname: &str) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for j in &record.jobs {
        match counts.iter_mut().find(|(s, _)| *s == j.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((j.status.clone(), 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let dirty = if record.dirty { " (dirty tree)" } else { "" };
    format!(
        "run {}: {} in {}: {} job(s): {}{dirty}\nstored as {refname}",
        record.id,
        record.status,
        seconds(record.duration_ms as i64),
        record.jobs.len(),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    )
}

/// A thread that prints a job's log lines as they are written, prefixed by the job.
struct Tail {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Tail {
    fn start(key: &str, log: PathBuf) -> Tail {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, prefix) = (stop.clone(), format!("[{key}] "));
        let thread = std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut partial = Vec::new();
            loop {
                // Read after looking at the flag: the last read sees everything.
                let last = flag.load(Ordering::SeqCst);
                offset = read_new(&log, offset, &mut partial, &prefix);
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !partial.is_empty() {
                print_out(&format!("{prefix}{}", String::from_utf8_lossy(&partial)));
            }
        });
        Tail { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Prints the complete lines written to `log` since `offset`; keeps an unfinished line in
/// `partial`; returns the new offset.
fn read_new(log: &Path, offset: u64, partial: &mut Vec<u8>, prefix: &str) -> u64 {
    let Ok(mut f) = std::fs::File::open(log) else {
        return offset;
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut buf = Vec::new();
    let Ok(n) = f.read_to_end(&mut buf) else {
        return offset;
    };
    partial.extend_from_slice(&buf);
    let mut text = String::new();
    while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        text.push_str(prefix);
        text.push_str(&String::from_utf8_lossy(&line));
    }
    if !text.is_empty() {
        print_out(&text);
    }
    offset + n as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(1234), "1.2s");
        assert_eq!(seconds(125_000), "2m05s");
    }

    #[test]
    fn a_failing_log_is_cut_to_its_last_lines() {
        let log: String = (0..300).map(|i| format!("line {i}\n")).collect();
        let shown = failed_log("t", log.as_bytes());
        assert!(shown.contains("last 200 of 300 lines"));
        assert!(shown.contains("line 299\n") && !shown.contains("line 99\n"));
    }
}
