//! `bench/run.py` (m): collects the reports of one folder the way the server collects a job's
//! (`collect_job`, streaming) and prints `SECONDS PEAK_RSS_KIB CASES WARNINGS`.

use std::path::Path;
use std::time::Instant;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: bench_junit DIR (a folder holding JUnit XML reports)");
    let t = Instant::now();
    let nodes = baton_results::collect_job(Path::new(&dir), &[]);
    let node = baton_results::job_node("bench", 1, "success", nodes);
    let secs = t.elapsed().as_secs_f64();
    let s = node.summary;
    let cases = s.passed + s.failed + s.errors + s.skipped + s.flaky;
    println!("{secs:.6} {} {cases} {}", peak_rss_kib(), s.warnings);
}
