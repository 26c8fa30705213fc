//! A pipeline run's DAG drawn as an SVG.

use std::collections::BTreeMap;

use baton_core::run::Status;
use baton_store::RunRow;

use super::format::job_took;
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

/// The pipeline's DAG as an SVG: columns by depth, nodes coloured by status, linking to logs.
pub(super) fn dag_svg(run: &RunRow, deps: &BTreeMap<String, Vec<String>>) -> String {
    let depth = depths(run, deps);
    let (w, h, gx, gy) = (170, 46, 60, 18);
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for j in &run.jobs {
        let d = depth.get(j.name.as_str()).copied().unwrap_or(0);
        let r = rows.entry(d).or_default();
        pos.insert(&j.name, (d * (w + gx) + 10, *r * (h + gy) + 10));
        *r += 1;
    }
    let width = rows.len() * (w + gx) + 20;
    let height = rows.values().max().copied().unwrap_or(1) * (h + gy) + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"pipeline graph\">"
    );
    for j in &run.jobs {
        let Some(&(x, y)) = pos.get(j.name.as_str()) else {
            continue;
        };
        for d in deps.get(&j.name).into_iter().flatten() {
            if let Some(&(px, py)) = pos.get(d.as_str()) {
                let (x1, y1, x2, y2) = (px + w, py + h / 2, x, y + h / 2);
                let mx = (x1 + x2) / 2;
                svg.push_str(&format!(
                    "<path class=\"edge\" d=\"M{x1},{y1} C{mx},{y1} {mx},{y2} {x2},{y2}\"/>"
                ));
            }
        }
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    for j in &run.jobs {
        let Some(&(x, y)) = pos.get(j.name.as_str()) else {
            continue;
        };
        let colour = match j.status {
            Status::Success => "#1f9d55",
            Status::Failed | Status::Broken | Status::Jammed => "#d63a3a",
            Status::Running | Status::Started => "#2f80ed",
            Status::Queued | Status::Waiting => "#c58a00",
            Status::Skipped | Status::Canceled => "#8a8f98",
        };
        let label: String = j.name.chars().take(22).collect();
        svg.push_str(&format!(
            "<a href=\"/runs/{}?job={}\" class=\"node\" data-job=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"7\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-weight=\"600\">{}</text><text x=\"{}\" y=\"{}\">{} · {}</text></a>",
            run.id,
            urlencode(&j.name),
            esc(&j.name),
            x + 10,
            y + 19,
            esc(&label),
            x + 10,
            y + 36,
            j.status.as_str(),
            esc(&job_took(j)),
        ));
    }
    svg.push_str("</svg>");
    svg
}
