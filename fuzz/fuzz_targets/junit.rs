//! The JUnit parser: any bytes parse or fail cleanly, and never keep more than the budget.
#![no_main]

use baton_results::junit::{Budget, parse_reader};
use libfuzzer_sys::fuzz_target;

fn count(nodes: &[baton_results::Node]) -> usize {
    nodes.iter().map(|n| 1 + count(&n.children)).sum()
}

fuzz_target!(|data: &[u8]| {
    let mut budget = Budget {
        nodes: 64,
        text: 4096,
        quiet_text: 1024,
        exhausted: false,
    };
    if let Ok(Some(nodes)) = parse_reader(data, &mut budget) {
        assert!(count(&nodes) <= 64 + 1, "kept more nodes than the budget");
    }
});
