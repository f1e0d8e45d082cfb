//! The design's performance targets (`DESIGN.md`), checked against this
//! run's figures: a report, never an assertion.

use std::fmt::Write as _;

use crate::stats::{Figure, Row, Table};

fn find<'a>(table: &'a Table, prefix: &str) -> Option<&'a Row> {
    table.rows.iter().find(|r| r.name.starts_with(prefix))
}

fn median(row: Option<&Row>) -> Option<f64> {
    match row?.figure {
        Figure::Latency(s) => Some(s.median),
        _ => None,
    }
}

/// The targets as a Markdown table: target, this run's figure, met or missed.
pub fn markdown(table: &Table) -> String {
    let mut lines: Vec<(String, Option<(String, bool)>)> = Vec::new();

    let spawn = find(table, "Linux sandbox, all layers");
    let above = spawn.and_then(|r| {
        let base = match r.baseline.as_ref()?.1 {
            Figure::Latency(s) => s.median,
            _ => return None,
        };
        Some(median(Some(r))? - base)
    });
    lines.push((
        "compartment start ≤ 2 ms above a plain fork/exec".into(),
        above.map(|d| (format!("{d:+.3} ms (medians)"), d <= 2.0)),
    ));
    let issue = median(find(table, "certificate issue"));
    lines.push((
        "certificate issue median ≤ 1 ms".into(),
        issue.map(|m| (format!("{m:.3} ms"), m <= 1.0)),
    ));
    let read = median(find(table, "brokered read store"));
    lines.push((
        "brokered read median ≤ 1 ms on loopback".into(),
        read.map(|m| (format!("{m:.3} ms (500 sequential reads)"), m <= 1.0)),
    ));
    let best = table
        .rows
        .iter()
        .filter(|r| r.name.starts_with("brokered reads,") && r.name.ends_with("throughput"))
        .filter_map(|r| match r.figure {
            Figure::Rate { per_s, .. } => Some((per_s, r.name.clone())),
            _ => None,
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    lines.push((
        "≥ 3,000 brokered reads/s over concurrent runs".into(),
        best.map(|(rate, name)| {
            let at = name.split(':').next().unwrap_or_default().to_owned();
            (format!("{rate:.0} /s at best ({at})"), rate >= 3000.0)
        }),
    ));
    let case = median(find(table, "whole case study excluding compilation"));
    lines.push((
        "whole case study excluding compilation ≤ 100 ms".into(),
        case.map(|m| (format!("{m:.1} ms (median of upload + run)"), m <= 100.0)),
    ));
    let rss = find(table, "launcher with 100 concurrent runs").and_then(|r| match r.figure {
        Figure::Bytes(b) => Some(b),
        _ => None,
    });
    lines.push((
        "launcher resident memory ≤ 40 MB with 100 concurrent runs".into(),
        rss.map(|b| {
            (
                format!(
                    "{:.1} MiB = {:.1} MB (peak VmRSS)",
                    b as f64 / (1 << 20) as f64,
                    b as f64 / 1e6
                ),
                b as f64 <= 40e6,
            )
        }),
    ));

    let mut out = String::from(
        "\n**Targets (DESIGN.md), this run**\n\n| target | this run | |\n|---|---|---|\n",
    );
    for (target, outcome) in lines {
        let (figure, verdict) = match outcome {
            Some((figure, true)) => (figure, "met"),
            Some((figure, false)) => (figure, "**missed**"),
            None => ("not measured in this run".into(), "–"),
        };
        let _ = writeln!(out, "| {target} | {figure} | {verdict} |");
    }
    out
}
