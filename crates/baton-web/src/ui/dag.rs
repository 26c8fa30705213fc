//! A pipeline run's DAG drawn as an SVG: one column per depth, each node a link to its job's
//! log with its status and duration (a running one's ticks on the page). An edge to the next
//! column is a curve through the gap between columns; a longer one runs along the gap between
//! rows, which no box occupies, so no edge crosses a node.

use std::collections::BTreeMap;

use baton_store::{JobRow, RunRow};
use chrono::Utc;

use super::format::{dur_ms, running_since};
use super::page::urlencode;

/// Each job's depth in the pipeline's DAG (0 for jobs without dependencies).
pub(super) fn depths<'a>(
    run: &'a RunRow,
    deps: &'a BTreeMap<String, Vec<String>>,
) -> BTreeMap<&'a str, usize> {
    fn depth_of<'a>(
        n: &'a str,
        deps: &'a BTreeMap<String, Vec<String>>,
        memo: &mut BTreeMap<&'a str, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        let d = if guard > 64 {
            0
        } else {
            deps.get(n)
                .map(|ds| {
                    ds.iter()
                        .map(|p| depth_of(p, deps, memo, guard + 1) + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        };
        memo.insert(n, d);
        d
    }
    let mut depth = BTreeMap::new();
    for j in &run.jobs {
        depth_of(&j.name, deps, &mut depth, 0);
    }
    depth
}

/// Box width and height, and the gaps between columns and rows.
const W: usize = 170;
const H: usize = 46;
const GX: usize = 60;
const GY: usize = 18;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The path of the edge from a box at `(px, py)` to one at `(x, y)`.
fn edge(px: usize, py: usize, x: usize, y: usize) -> String {
    let (x1, y1, x2, y2) = (px + W, py + H / 2, x, y + H / 2);
    if x2 - x1 <= GX {
        let mx = (x1 + x2) / 2;
        return format!("M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}");
    }
    // Along the gap above the target's row, from the gap after the source's column to the gap
    // before the target's.
    let lane = y - GY / 2;
    let (a, b) = (x1 + GX / 2, x2 - GX / 2);
    format!("M{x1},{y1} H{a} V{lane} H{b} V{y2} H{x2}")
}

fn colour(j: &JobView) -> &'static str {
    if j.allowed {
        return "#a86f00";
    }
    match j.status {
        "success" => "#1f9d55",
        "failed" | "broken" | "jammed" => "#d63a3a",
        "running" | "started" => "#2f80ed",
        "queued" | "waiting" => "#c58a00",
        _ => "#8a8f98",
    }
}

/// A node: its box, its name, and its status with its duration once it started.
fn node(run_id: i64, j: &JobView, x: usize, y: usize) -> String {
    let label: String = j.name.chars().take(22).collect();
    let state = if j.dur.is_empty() {
        format!(
            "<text x=\"{}\" y=\"{}\">{}</text>",
            x + 10,
            y + 36,
            esc(&j.status_label())
        )
    } else {
        let tick = if j.since > 0 {
            format!(" class=\"tick\" data-since=\"{}\"", j.since)
        } else {
            String::new()
        };
        format!(
            "<text x=\"{}\" y=\"{}\">{} · <tspan{tick}>{}</tspan></text>",
            x + 10,
            y + 36,
            esc(&j.status_label()),
            esc(&j.dur)
        )
    };
    format!(
        "<a href=\"/runs/{run_id}?job={}\" class=\"node\" data-job=\"{}\" data-status=\"{}\"><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"7\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-weight=\"600\">{}</text>{state}</a>",
        urlencode(&j.name),
        esc(&j.name),
        j.status,
        esc(&j.name),
        colour(j),
        x + 10,
        y + 19,
        esc(&label),
    )
}

/// The pipeline's DAG as an SVG: columns by depth, nodes coloured by status, linking to logs.
pub(super) fn dag_svg(
    run: &RunRow,
    deps: &BTreeMap<String, Vec<String>>,
    allowed: &[String],
) -> String {
    let depth = depths(run, deps);
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for j in &run.jobs {
        let d = depth.get(j.name.as_str()).copied().unwrap_or(0);
        let r = rows.entry(d).or_default();
        pos.insert(&j.name, (d * (W + GX) + 10, *r * (H + GY) + 10));
        *r += 1;
    }
    let width = rows.len() * (W + GX) + 20;
    let height = rows.values().max().copied().unwrap_or(1) * (H + GY) + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"pipeline graph\">"
    );
    for j in &run.jobs {
        let Some(&(x, y)) = pos.get(j.name.as_str()) else {
            continue;
        };
        for d in deps.get(&j.name).into_iter().flatten() {
            if let Some(&(px, py)) = pos.get(d.as_str()) {
                svg.push_str(&format!(
                    "<path class=\"edge\" d=\"{}\"/>",
                    edge(px, py, x, y)
                ));
            }
        }
    }
    for j in &run.jobs {
        if let Some(&(x, y)) = pos.get(j.name.as_str()) {
            let view = JobView::of(j, allowed.contains(&j.name));
            svg.push_str(&node(run.id, &view, x, y));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A job as the run page and its DAG show it.
pub(super) struct JobView {
    pub name: String,
    pub status: &'static str,
    /// Failed, but `allow_failure`: drawn apart from failures that fail the run.
    pub allowed: bool,
    /// How long it ran (empty: it never started).
    pub dur: String,
    /// When it started, in ms since the epoch, while it runs (0 otherwise): the page ticks it.
    pub since: i64,
    /// Why a skipped job counts as a success: `cache hit` or `carried over` (else empty).
    pub note: &'static str,
    /// A job carried over by a rerun of failed jobs: the job that ran and its run.
    pub carried_from: Option<(i64, i64)>,
}

impl JobView {
    pub(super) fn of(j: &JobRow, allowed: bool) -> JobView {
        JobView {
            name: j.name.clone(),
            status: j.status.as_str(),
            allowed: allowed && j.status.is_failure(),
            dur: match (j.started_at, j.ended_at) {
                (Some(s), Some(e)) => dur_ms((e - s).num_milliseconds()),
                (Some(s), None) => dur_ms((Utc::now() - s).num_milliseconds()),
                _ => String::new(),
            },
            since: running_since(j.started_at, j.ended_at),
            note: if baton_core::decide::hit_of(j.reason.as_deref()).is_some() {
                "cache hit"
            } else if baton_core::decide::carried_of(j.reason.as_deref()).is_some() {
                "carried over"
            } else {
                ""
            },
            carried_from: baton_core::decide::carried_of(j.reason.as_deref()),
        }
    }

    /// The status as shown: `failed (allowed)` for an allowed failure, `skipped (carried
    /// over)` for a job whose success is another's.
    pub(super) fn status_label(&self) -> String {
        if self.allowed {
            format!("{} (allowed)", self.status)
        } else if !self.note.is_empty() {
            format!("{} ({})", self.status, self.note)
        } else {
            self.status.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the segment from `a` to `b` (horizontal or vertical) enters the box at `(x, y)`.
    fn crosses(a: (usize, usize), b: (usize, usize), x: usize, y: usize) -> bool {
        let (lx, hx) = (a.0.min(b.0), a.0.max(b.0));
        let (ly, hy) = (a.1.min(b.1), a.1.max(b.1));
        lx < x + W && hx > x && ly < y + H && hy > y
    }

    #[test]
    fn a_long_edge_runs_between_rows_and_crosses_no_box() {
        // fetch (col 0) -> package (col 2), past compile and test in col 1 (rows 0 and 1).
        let (px, py) = (10, 10);
        let (x, y) = (10 + 2 * (W + GX), 10 + (H + GY));
        let d = edge(px, py, x, y);
        assert!(d.contains(" H") && !d.contains('C'), "{d}");
        let mut at = (0, 0);
        let mut points = Vec::new();
        for part in d.split(' ') {
            let (cmd, v) = part.split_at(1);
            at = match cmd {
                "M" => {
                    let (a, b) = v.split_once(',').unwrap();
                    (a.parse().unwrap(), b.parse().unwrap())
                }
                "H" => (v.parse().unwrap(), at.1),
                "V" => (at.0, v.parse().unwrap()),
                _ => panic!("unexpected {part} in {d}"),
            };
            points.push(at);
        }
        let middle = 10 + (W + GX);
        for row in 0..3 {
            let by = 10 + row * (H + GY);
            for w in points.windows(2) {
                assert!(!crosses(w[0], w[1], middle, by), "{d} crosses row {row}");
            }
        }
        assert_eq!(*points.last().unwrap(), (x, y + H / 2));
    }
}
