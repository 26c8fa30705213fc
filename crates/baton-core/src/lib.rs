//! Baton's domain: the configuration model, run and job states, and every scheduling decision,
//! as plain functions of their inputs.
//!
//! Architecture Invariant: this crate does no I/O, spawns nothing, and never reads a clock; time
//! is always a parameter. That keeps every rule here testable with unit and property tests.

pub mod access;
pub mod args;
pub mod config;
pub mod decide;
pub mod on;
pub mod report;
pub mod run;
pub mod schedule;
