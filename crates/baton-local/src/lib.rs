//! Baton with no server: `baton run` in a developer's git repository.
//!
//! It loads the repository's `.baton/` at `HEAD` (or a snapshot of the working tree), picks the
//! tasks and pipelines a push of the current branch would start (`plan`), runs their jobs in
//! clean checkouts under the same supervisor and executors as the server, walking pipelines
//! with the scheduler's own DAG rules from `baton_core::decide` (`engine`), shows them on the
//! terminal (`progress`), and stores each run as a parentless git commit under
//! `refs/baton-runs/<commit>/<run-id>` (`record`), with the jobs' test results (`results`). `history` reads the stored runs back (also
//! git-jci's `refs/jci-runs/`), `sync` moves and prunes their refs.
//!
//! Architecture Invariant: no scheduling rule of its own (every DAG, exit and status decision is
//! a call into `baton_core::decide` / `baton_core::run`); git only through `baton-git`; it never
//! writes to the user's working tree, index or branches: only objects and result refs.

pub mod cache;
pub mod cron;
pub mod engine;
mod error;
pub mod history;
pub mod plan;
pub mod progress;
pub mod record;
pub mod results;
pub mod run;
pub mod sync;

pub use error::LocalError;
