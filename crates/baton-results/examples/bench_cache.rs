//! `bench/run.py` (n): the work of a cache-hit decision over a checkout (read and hash every
//! input file the globs match, then the digest), printing `SECONDS FILES DIGEST`.

use std::path::Path;
use std::time::Instant;

use baton_results::cache::{CacheFacts, gather_inputs};

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: bench_cache ROOT [GLOB…]");
    let mut globs: Vec<String> = args.collect();
    if globs.is_empty() {
        globs.push("**".into());
    }
    let t = Instant::now();
    let files = gather_inputs(Path::new(&root), &globs).expect("inputs");
    let n = files.len();
    let facts = CacheFacts::new(files, "{}", None, &[], "");
    let digest = facts.digest();
    println!("{:.6} {n} {digest}", t.elapsed().as_secs_f64());
}
