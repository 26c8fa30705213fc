//! The cross-checks that need the whole configuration: unknown tasks in `triggered_by`,
//! chaining cycles, and queues that no worker serves (or that cannot run containers).

use std::collections::{BTreeMap, BTreeSet};

use super::diags::{Diags, Loc};
use super::{DEFAULT_QUEUE, Refs};
use crate::config::model::{Config, WorkerDef};

/// The queues that the workers `pick` accepts serve, and those of `server.agent_queues` and of
/// `pools:` (served by pull-mode agents that join later). With no `workers:`, the server adds local
/// workers that serve `default` only.
fn served_queues(config: &Config, pick: impl Fn(&WorkerDef) -> bool) -> BTreeSet<&str> {
    let mut served: BTreeSet<&str> = if config.workers.is_empty() {
        BTreeSet::from([DEFAULT_QUEUE])
    } else {
        config
            .workers
            .values()
            .filter(|w| pick(w))
            .flat_map(|w| w.queues.iter().map(String::as_str))
            .collect()
    };
    served.extend(config.server.agent_queues.iter().map(String::as_str));
    served.extend(
        config
            .pools
            .values()
            .flat_map(|p| p.queues.iter().map(String::as_str)),
    );
    served
}

/// The cycles of a directed graph, each as a path that starts and ends at the same node
/// (`[a, b, a]`). Edges to unknown nodes are ignored. Deterministic: nodes and edges are visited
/// in order.
pub(super) fn find_cycles(graph: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<&'g str, Mark>,
        stack: &mut Vec<&'g str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(node, Mark::Active);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied() {
                Some(Mark::New) => visit(next, graph, marks, stack, cycles),
                Some(Mark::Active) => {
                    if let Some(start) = stack.iter().position(|n| *n == next.as_str()) {
                        let mut cycle: Vec<String> =
                            stack[start..].iter().map(|s| (*s).to_owned()).collect();
                        cycle.push(next.clone());
                        cycles.push(cycle);
                    }
                }
                Some(Mark::Done) | None => {}
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (k.as_str(), Mark::New)).collect();
    let mut cycles = Vec::new();
    for node in graph.keys() {
        if marks.get(node.as_str()) == Some(&Mark::New) {
            visit(node, graph, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

pub(super) fn cross_check(d: &mut Diags<'_>, config: &Config, refs: &Refs) {
    for (_, trigger, loc) in &refs.after {
        if !refs.task_keys.contains_key(trigger) {
            let hint = super::diags::did_you_mean(trigger, refs.task_keys.keys().map(|k| &**k));
            d.err(
                *loc,
                format!("unknown task {trigger:?} in triggered_by{hint}"),
            );
        }
    }
    let mut chain: BTreeMap<String, Vec<String>> = refs
        .task_keys
        .keys()
        .map(|k| (k.clone(), Vec::new()))
        .collect();
    for (task, trigger, _) in &refs.after {
        if let Some(list) = chain.get_mut(task) {
            list.push(trigger.clone());
        }
    }
    for cycle in find_cycles(&chain) {
        if let Some(loc) = cycle.first().and_then(|t| refs.task_keys.get(t)) {
            d.err(*loc, format!("chaining cycle: {}", cycle.join(" -> ")));
        }
    }

    let served = served_queues(config, |_| true);
    for (queue, loc) in &refs.queues {
        if !served.contains(queue.as_str()) {
            d.err(*loc, format!("no worker serves queue {queue:?}"));
        }
    }

    // Container jobs run on the server's engine (local workers) or on an agent's: a container
    // task whose queues only SSH workers serve would never run.
    let containers = served_queues(config, |w| w.host.is_none());
    let mut check = |what: String, queues: &[String], loc: Option<&Loc>| {
        let queues: Vec<&String> = queues
            .iter()
            .filter(|q| served.contains(q.as_str()))
            .collect();
        if let Some(loc) = loc
            && !queues.is_empty()
            && !queues.iter().any(|q| containers.contains(q.as_str()))
        {
            let names: Vec<String> = queues.iter().map(|q| format!("{q:?}")).collect();
            d.err(
                *loc,
                format!(
                    "{what} runs in a container (image:/build:), but only SSH workers serve its queue{} {}, and they run plain scripts (hint: serve the queue with a local worker, i.e. one without host:, or list it in server.agent_queues)",
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                ),
            );
        }
    };
    for t in config.tasks.values().filter(|t| t.container.is_some()) {
        check(
            format!("task {:?}", t.name),
            &t.queues,
            refs.task_keys.get(&t.name),
        );
    }
    for p in config.pipelines.values() {
        for t in p.tasks.values().filter(|t| t.container.is_some()) {
            check(
                format!("task {:?} of pipeline {:?}", t.name, p.name),
                &p.queues,
                refs.pipeline_keys.get(&p.name),
            );
        }
    }
}
