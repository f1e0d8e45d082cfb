//! The run as it happens: its output from the launcher's event stream
//! (`GET /v1/runs/{id}/events`, NDJSON), each line indented under the step.
//! Unlike `attestable run`, the program's `LOG` lines (appended to its
//! stderr record at the end) are not shown again: they repeat its steps.

use std::io::{BufRead, BufReader, Write};

use serde_json::Value;

use crate::client::{Api, Subject};
use crate::error::{CliError, Result};
use crate::follow::{self, Quiet};
use crate::views::{Run, parse};

/// Prints complete lines of each stream with its prefix.
#[derive(Debug, Default)]
pub struct Lines {
    stdout: String,
    stderr: String,
    /// What was shown of each stream, in bytes.
    shown: (usize, usize),
}

const STDOUT_PREFIX: &str = "     | ";
const STDERR_PREFIX: &str = "     ! ";

impl Lines {
    fn output(&mut self, stderr: bool, data: &str, out: &mut dyn Write) {
        let (buffer, prefix) = if stderr {
            self.shown.1 += data.len();
            (&mut self.stderr, STDERR_PREFIX)
        } else {
            self.shown.0 += data.len();
            (&mut self.stdout, STDOUT_PREFIX)
        };
        buffer.push_str(data);
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let _ = writeln!(out, "{prefix}{}", line.trim_end_matches(['\n', '\r']));
        }
        let _ = out.flush();
    }

    /// Lines the program did not end with a newline.
    fn finish(&mut self, out: &mut dyn Write) {
        for (buffer, prefix) in [
            (&mut self.stdout, STDOUT_PREFIX),
            (&mut self.stderr, STDERR_PREFIX),
        ] {
            if !buffer.is_empty() {
                let _ = writeln!(out, "{prefix}{buffer}");
                buffer.clear();
            }
        }
    }

    /// Reads events until the `end` line; false when the stream stopped first.
    fn read(&mut self, reader: impl BufRead, out: &mut dyn Write) -> bool {
        for line in reader.lines() {
            let Ok(line) = line else { return false };
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match event["type"].as_str() {
                Some("output") => {
                    let stderr = event["stream"] == "stderr";
                    self.output(stderr, event["data"].as_str().unwrap_or(""), out);
                }
                Some("skipped" | "lagged") => {
                    let _ = writeln!(
                        out,
                        "     (some output was not shown live; the run's record has it)"
                    );
                }
                Some("end") => return true,
                _ => {}
            }
        }
        false
    }
}

/// Shows run `id` until it ends; returns the ended run. Should the stream
/// be missing or break off, waits for the end and shows what the record
/// holds beyond what was shown.
pub fn show(api: &Api, id: i64, out: &mut dyn Write) -> Result<Value> {
    let mut lines = Lines::default();
    let ended = match api.stream(&format!("/v1/runs/{id}/events"), Subject::Run(id)) {
        Ok(response) => lines.read(BufReader::new(response), out),
        Err(CliError::NoRoute { .. } | CliError::Rejected { status: 409, .. }) => false,
        Err(e) => return Err(e),
    };
    let run = if ended {
        api.get(&format!("/v1/runs/{id}"), Subject::Run(id))?
    } else {
        follow::follow(api, id, &mut Quiet)?
    };
    if !ended {
        let record: Run = parse(&run, "GET run")?;
        let (out_from, err_from) = lines.shown;
        if let Some(rest) = record.stdout.get(out_from..) {
            lines.output(false, rest, out);
        }
        // The stderr record ends with the program's LOG lines: show only
        // what the program wrote itself when nothing was streamed.
        if err_from == 0 {
            let own = record
                .stderr
                .lines()
                .filter(|l| !l.starts_with('['))
                .map(|l| format!("{l}\n"))
                .collect::<String>();
            lines.output(true, &own, out);
        }
    }
    lines.finish(out);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_whole_and_the_stream_ends_at_end() {
        let stream = concat!(
            r#"{"type":"run","run":{"id":1}}"#,
            "\n",
            r#"{"type":"output","stream":"stdout","data":"step 1: ok\nstep "}"#,
            "\n",
            r#"{"type":"output","stream":"stderr","data":"error: no\n"}"#,
            "\n",
            r#"{"type":"output","stream":"stdout","data":"2: ok\npartial"}"#,
            "\n",
            r#"{"type":"heartbeat"}"#,
            "\n",
            r#"{"type":"end","run":{"id":1}}"#,
            "\n",
            r#"{"type":"output","stream":"stdout","data":"after the end\n"}"#,
            "\n",
        );
        let mut lines = Lines::default();
        let mut out = Vec::new();
        assert!(lines.read(stream.as_bytes(), &mut out));
        lines.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "     | step 1: ok\n     ! error: no\n     | step 2: ok\n     | partial\n"
        );
        assert_eq!(lines.shown, ("step 1: ok\nstep 2: ok\npartial".len(), 10));
    }

    #[test]
    fn a_stream_without_end_is_reported_as_cut() {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let cut = r#"{"type":"output","stream":"stdout","data":"x\n"}"#;
        assert!(!lines.read(cut.as_bytes(), &mut out));
    }
}
