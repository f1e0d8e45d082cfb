//! Summaries of samples and the results table.

use std::fmt::Write as _;
use std::time::Duration;

/// Median, p90 and p99 of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Summary {
    /// Summarises samples given in milliseconds (nearest-rank percentiles).
    pub fn of_ms(mut samples: Vec<f64>) -> Self {
        assert!(!samples.is_empty(), "no samples to summarise");
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Self {
            n: samples.len(),
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        }
    }

    pub fn of(samples: &[Duration]) -> Self {
        Self::of_ms(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub fn of_us(samples: &[f64]) -> Self {
        Self::of_ms(samples.iter().map(|us| us / 1e3).collect())
    }
}

/// One measured figure.
#[derive(Debug, Clone, Copy)]
pub enum Figure {
    /// A latency distribution.
    Latency(Summary),
    /// Operations per second over a window.
    Rate { per_s: f64, ops: usize },
    /// A size in bytes.
    Bytes(u64),
    /// CPU time per operation, in milliseconds.
    Cpu(f64),
}

impl Figure {
    /// A latency's median (ms), or the value of any other figure.
    pub fn median(&self) -> f64 {
        self.headline()
    }

    /// The figure compared with a baseline: its median, rate or size.
    fn headline(&self) -> f64 {
        match self {
            Figure::Latency(s) => s.median,
            Figure::Rate { per_s, .. } => *per_s,
            Figure::Bytes(b) => *b as f64,
            Figure::Cpu(ms) => *ms,
        }
    }

    fn cells(&self) -> [String; 4] {
        match self {
            Figure::Latency(s) => [s.n.to_string(), ms(s.median), ms(s.p90), ms(s.p99)],
            Figure::Rate { per_s, ops } => [
                ops.to_string(),
                format!("{per_s:.0} /s"),
                String::new(),
                String::new(),
            ],
            Figure::Bytes(b) => ["1".into(), mib(*b), String::new(), String::new()],
            Figure::Cpu(v) => [
                "".into(),
                format!("{} CPU", ms(*v)),
                String::new(),
                String::new(),
            ],
        }
    }

    fn short(&self) -> String {
        match self {
            Figure::Latency(s) => ms(s.median),
            Figure::Rate { per_s, .. } => format!("{per_s:.0} /s"),
            Figure::Bytes(b) => mib(*b),
            Figure::Cpu(v) => format!("{} CPU", ms(*v)),
        }
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.3} ms")
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// A row of the table: a figure, and its baseline from the same run.
#[derive(Debug, Clone)]
pub struct Row {
    pub section: &'static str,
    pub name: String,
    pub figure: Figure,
    pub baseline: Option<(String, Figure)>,
}

/// Every row measured, in order.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn add(&mut self, section: &'static str, name: impl Into<String>, figure: Figure) {
        self.push(section, name, figure, None);
    }

    pub fn against(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        figure: Figure,
        baseline_name: impl Into<String>,
        baseline: Figure,
    ) {
        self.push(
            section,
            name,
            figure,
            Some((baseline_name.into(), baseline)),
        );
    }

    fn push(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        figure: Figure,
        baseline: Option<(String, Figure)>,
    ) {
        let row = Row {
            section,
            name: name.into(),
            figure,
            baseline,
        };
        println!("  {}", one_line(&row));
        self.rows.push(row);
    }

    /// The table as Markdown, one sub-table per section, sections in the
    /// order of their numbers.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| r.section);
        for row in rows {
            if row.section != section {
                section = row.section;
                let _ = write!(
                    out,
                    "\n**{section}**\n\n| measurement | n | median | p90 | p99 | baseline (same run) | baseline | ratio | difference |\n|---|--:|--:|--:|--:|---|--:|--:|--:|\n"
                );
            }
            let [n, median, p90, p99] = row.figure.cells();
            let (bname, bvalue, ratio, diff) = match &row.baseline {
                Some((name, base)) => {
                    let (a, b) = (row.figure.headline(), base.headline());
                    let diff = match row.figure {
                        Figure::Latency(_) | Figure::Cpu(_) => format!("{:+.3} ms", a - b),
                        Figure::Rate { .. } => format!("{:+.0} /s", a - b),
                        Figure::Bytes(_) => format!("{:+.1} MiB", (a - b) / (1 << 20) as f64),
                    };
                    (name.clone(), base.short(), format!("{:.2}×", a / b), diff)
                }
                None => Default::default(),
            };
            let _ = writeln!(
                out,
                "| {} | {n} | {median} | {p90} | {p99} | {bname} | {bvalue} | {ratio} | {diff} |",
                row.name
            );
        }
        out
    }
}

fn one_line(row: &Row) -> String {
    let [n, median, p90, p99] = row.figure.cells();
    let mut line = format!("{:<52} n={n:<5} {median:>11}", row.name);
    if !p90.is_empty() {
        let _ = write!(line, "  p90 {p90:>10}  p99 {p99:>10}");
    }
    if let Some((name, base)) = &row.baseline {
        let _ = write!(
            line,
            "   vs {name}: {} ({:.2}×)",
            base.short(),
            row.figure.headline() / base.headline()
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = Summary::of_ms((1..=100).map(f64::from).collect());
        assert_eq!((s.n, s.median, s.p90, s.p99), (100, 50.0, 90.0, 99.0));
        let one = Summary::of_ms(vec![7.0]);
        assert_eq!((one.median, one.p99), (7.0, 7.0));
    }
}
