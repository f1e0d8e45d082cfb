//! Following a run: its output as it comes, until it ends.
//!
//! `GET /v1/runs/{id}/events` is newline-delimited JSON, one event a line
//! (see `docs/ARCHITECTURE.md`, "Run events"). A launcher without that route
//! is polled instead (`GET /v1/runs/{id}`), and its output printed when the
//! run ends; so is one whose stream breaks off before the run's end.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::client::{Api, Subject};
use crate::error::{CliError, Result};
use crate::views::{Run, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the event stream. Unknown types are skipped, so the launcher
/// may add some.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    Run,
    Status,
    Output { stream: Stream, data: String },
    Skipped { stream: Stream, bytes: u64 },
    Lagged { missed: u64 },
    Heartbeat,
    End,
}

/// Where a followed run's output goes.
pub trait Sink {
    fn output(&mut self, stream: Stream, data: &str);
    /// A remark about the stream itself (gaps), for a person.
    fn notice(&mut self, text: &str);
}

/// The terminal: stdout to stdout, stderr to stderr, flushed as it comes.
#[derive(Debug, Default)]
pub struct Terminal {
    /// The program's stderr stopped mid-line: a notice starts a new one.
    stderr_mid_line: bool,
}

impl Sink for Terminal {
    fn output(&mut self, stream: Stream, data: &str) {
        match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(data.as_bytes());
                let _ = out.flush();
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(data.as_bytes());
                let _ = err.flush();
                if !data.is_empty() {
                    self.stderr_mid_line = !data.ends_with('\n');
                }
            }
        }
    }

    fn notice(&mut self, text: &str) {
        if std::mem::take(&mut self.stderr_mid_line) {
            eprintln!();
        }
        eprintln!("[attestable: {text}]");
    }
}

/// `--json`: the output is in the final run, not printed as it comes.
pub struct Quiet;

impl Sink for Quiet {
    fn output(&mut self, _: Stream, _: &str) {}
    fn notice(&mut self, _: &str) {}
}

/// How much of each stream was shown, so nothing is shown twice.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Shown {
    stdout: usize,
    stderr: usize,
}

impl Shown {
    fn add(&mut self, stream: Stream, n: usize) {
        match stream {
            Stream::Stdout => self.stdout += n,
            Stream::Stderr => self.stderr += n,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// The launcher said the run ended.
    Ended,
    /// The stream stopped first.
    Cut(String),
}

/// Follows run `id` until it ends; returns the ended run (`GET /v1/runs/{id}`).
pub fn follow(api: &Api, id: i64, sink: &mut dyn Sink) -> Result<Value> {
    let path = format!("/v1/runs/{id}/events");
    let mut shown = Shown::default();
    let end = match api.stream(&path, Subject::Run(id)) {
        Ok(response) => read_events(BufReader::new(response), id, sink, &mut shown),
        Err(CliError::NoRoute { .. }) => StreamEnd::Cut("the launcher has no event stream".into()),
        // Live but not (yet) supervised: the record will say how it goes.
        Err(CliError::Rejected { status: 409, .. }) => {
            StreamEnd::Cut("the launcher cannot stream this run".into())
        }
        Err(e) => return Err(e),
    };
    let run = match end {
        StreamEnd::Ended => api.get(&format!("/v1/runs/{id}"), Subject::Run(id))?,
        StreamEnd::Cut(_) => poll(api, id)?,
    };
    let r: Run = parse(&run, "GET run")?;
    if r.summary.is_live() {
        return Err(CliError::BadAnswer {
            request: format!("GET /v1/runs/{id}"),
            detail: format!("the event stream ended but the run is {}", r.summary.status),
        });
    }
    // What the stream did not deliver (all of it when polling).
    for (stream, text, from) in [
        (Stream::Stdout, &r.stdout, shown.stdout),
        (Stream::Stderr, &r.stderr, shown.stderr),
    ] {
        if from < text.len() && text.is_char_boundary(from) {
            sink.output(stream, &text[from..]);
        }
    }
    Ok(run)
}

fn read_events(reader: impl BufRead, id: i64, sink: &mut dyn Sink, shown: &mut Shown) -> StreamEnd {
    for line in reader.lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return StreamEnd::Cut(e.to_string()),
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        match event {
            Event::Output { stream, data } => {
                sink.output(stream, &data);
                shown.add(stream, data.len());
            }
            Event::Skipped { stream, bytes } => {
                sink.notice(&format!(
                    "{bytes} bytes of {} are not shown here; `attestable runs show {id}` has what the launcher recorded",
                    match stream {
                        Stream::Stdout => "stdout",
                        Stream::Stderr => "stderr",
                    }
                ));
                // The rest of the stream no longer lines up with the record.
                shown.add(stream, usize::MAX / 2);
            }
            Event::Lagged { missed } => {
                sink.notice(&format!(
                    "output came faster than it could be shown: {missed} pieces were dropped; \
                     `attestable runs show {id}` has what the launcher recorded"
                ));
                shown.stdout = usize::MAX / 2;
                shown.stderr = usize::MAX / 2;
            }
            Event::End => return StreamEnd::Ended,
            Event::Run | Event::Status | Event::Heartbeat => {}
        }
    }
    StreamEnd::Cut("the event stream ended before the run".into())
}

/// Asks for the run until it has ended.
fn poll(api: &Api, id: i64) -> Result<Value> {
    let mut pause = Duration::from_millis(100);
    loop {
        let run = api.get(&format!("/v1/runs/{id}"), Subject::Run(id))?;
        let r: Run = parse(&run, "GET run")?;
        if !r.summary.is_live() {
            return Ok(run);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record {
        out: String,
        err: String,
        notices: Vec<String>,
    }

    impl Sink for Record {
        fn output(&mut self, stream: Stream, data: &str) {
            match stream {
                Stream::Stdout => self.out.push_str(data),
                Stream::Stderr => self.err.push_str(data),
            }
        }
        fn notice(&mut self, text: &str) {
            self.notices.push(text.to_owned());
        }
    }

    #[test]
    fn output_is_written_as_it_comes_until_the_end() {
        let stream = concat!(
            r#"{"type":"run","run":{"id":1,"status":"queued"}}"#,
            "\n",
            r#"{"type":"status","status":"running"}"#,
            "\n",
            r#"{"type":"output","stream":"stdout","data":"héllo\n"}"#,
            "\n\n",
            r#"{"type":"heartbeat"}"#,
            "\n",
            r#"{"type":"something_new","x":1}"#,
            "\n",
            r#"{"type":"output","stream":"stderr","data":"oops\n"}"#,
            "\n",
            r#"{"type":"end","run":{"id":1,"status":"exited"}}"#,
            "\n",
            r#"{"type":"output","stream":"stdout","data":"never"}"#,
            "\n",
        );
        let mut sink = Record::default();
        let mut shown = Shown::default();
        let end = read_events(stream.as_bytes(), 1, &mut sink, &mut shown);
        assert_eq!(end, StreamEnd::Ended);
        assert_eq!(sink.out, "héllo\n");
        assert_eq!(sink.err, "oops\n");
        assert_eq!(
            shown,
            Shown {
                stdout: 7,
                stderr: 5
            }
        );
    }

    #[test]
    fn gaps_are_marked_and_a_cut_stream_is_noticed() {
        let stream = concat!(
            r#"{"type":"skipped","stream":"stdout","bytes":10}"#,
            "\n",
            r#"{"type":"lagged","missed":3}"#,
            "\n",
        );
        let mut sink = Record::default();
        let mut shown = Shown::default();
        let end = read_events(stream.as_bytes(), 1, &mut sink, &mut shown);
        assert!(matches!(end, StreamEnd::Cut(_)));
        assert_eq!(sink.notices.len(), 2);
        assert!(sink.notices[0].contains("10 bytes of stdout"));
        assert!(sink.notices[1].contains("3 pieces were dropped"));
        assert!(sink.notices[1].contains("`attestable runs show 1`"));
        assert!(shown.stdout > 1 << 40, "nothing is replayed after a gap");
    }
}
