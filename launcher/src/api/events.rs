//! `GET /v1/runs/{id}/events`: a run's status and output as they happen,
//! as newline-delimited JSON (`application/x-ndjson`), one event a line:
//! the run as it is, its status, what it printed so far, then live status
//! changes and output, and last the ended run. An ended run gives the same
//! lines from its record at once.
//!
//! Each follower has its own task and a small queue of lines: a follower
//! that reads slowly falls behind the run's event ring (see
//! `crate::events`), is told how many events it missed, and never slows the
//! run.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use programs_db::Run;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Id;
use super::views::RunSummary;
use crate::compartment::capture::text;
use crate::events::{Event, Stream, Subscription};

/// A line is sent at least this often, so followers can tell a quiet run
/// from a dead connection.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Lines queued for one follower's connection.
const QUEUE_LINES: usize = 16;
/// Recorded output is sent in pieces of at most this many bytes.
const PIECE_BYTES: usize = 64 * 1024;
/// How long a run that exists but is not yet supervised is waited for.
const SUPERVISION_WAIT: Duration = Duration::from_secs(2);

/// One line of `GET /v1/runs/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// First line: the run when following began.
    Run { run: RunSummary },
    /// The run's status: once after `run`, then at each change while live.
    Status {
        /// `queued`, `starting`, `running`, or how it ended.
        status: String,
    },
    /// Output, in the order it was read from each stream. UTF-8 sequences
    /// are never split between lines; invalid bytes become U+FFFD.
    Output {
        /// `stdout` or `stderr`.
        stream: String,
        data: String,
    },
    /// Bytes of a stream that are not sent: the follower joined after the
    /// launcher stopped keeping the start of a long output for late followers.
    Skipped { stream: String, bytes: u64 },
    /// This follower read too slowly and missed this many events.
    Lagged { missed: u64 },
    /// Nothing happened for a while.
    Heartbeat,
    /// Last line: the ended run (its full output is in `GET /v1/runs/{id}`).
    End { run: RunEnd },
}

/// An ended run, without its output.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunEnd {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub has_certificate: bool,
}

impl From<&Run> for RunEnd {
    fn from(r: &Run) -> Self {
        Self {
            summary: r.into(),
            stdout_truncated: r.stdout.truncated,
            stderr_truncated: r.stderr.truncated,
            has_certificate: r.certificate_pem.is_some(),
        }
    }
}

fn line(event: &RunEvent) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn from_event(event: Event) -> RunEvent {
    match event {
        Event::Status(status) => RunEvent::Status {
            status: status.to_string(),
        },
        Event::Output { stream, data } => RunEvent::Output {
            stream: stream.as_str().into(),
            data: data.to_string(),
        },
        Event::Skipped { stream, bytes } => RunEvent::Skipped {
            stream: stream.as_str().into(),
            bytes,
        },
    }
}

/// Follow a run: its status and output as they happen (NDJSON).
#[utoipa::path(
    operation_id = "follow_run",
    get, path = "/v1/runs/{id}/events", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "Newline-delimited JSON, one `RunEvent` a line: `run`, `status`, \
            the output so far, then live `status` and `output` (and `skipped`, `lagged`, `heartbeat` \
            at least every 15 s), ending with `end` when the run has ended",
            content_type = "application/x-ndjson", body = RunEvent),
        (status = 400, description = "Bad request: the message names the failed check", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "The run is live but not under supervision here; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn follow(State(app): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    let (lines, body) = mpsc::channel::<Bytes>(QUEUE_LINES);
    let mut run = app.records.call(move |db| db.run(id)).await?;
    let waited = tokio::time::Instant::now();
    loop {
        if let Some(subscription) = app.supervisor.events().subscribe(id) {
            tokio::spawn(send_live(app.clone(), run, subscription, lines));
            break;
        }
        if run.status.is_terminal() {
            tokio::spawn(send_recorded(run, lines));
            break;
        }
        // Created, not yet handed to the supervisor (or its end is being recorded).
        if waited.elapsed() > SUPERVISION_WAIT {
            return Err(ApiError::conflict(format!(
                "run {id} is {} but not under supervision; retry",
                run.status
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        run = app.records.call(move |db| db.run(id)).await?;
    }
    let stream = futures::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), body))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A live run: its snapshot, then events until it ends, then the ended run.
async fn send_live(
    app: AppState,
    run: Run,
    subscription: Subscription,
    lines: mpsc::Sender<Bytes>,
) {
    let id = run.id;
    let Subscription { snapshot, mut live } = subscription;
    let first = std::iter::once(RunEvent::Run { run: (&run).into() })
        .chain(snapshot.into_iter().map(from_event));
    for event in first {
        if lines.send(line(&event)).await.is_err() {
            return;
        }
    }
    loop {
        let event = match tokio::time::timeout(HEARTBEAT, live.recv()).await {
            Err(_) => RunEvent::Heartbeat,
            Ok(Ok(event)) => from_event(event),
            Ok(Err(broadcast::error::RecvError::Lagged(missed))) => RunEvent::Lagged { missed },
            Ok(Err(broadcast::error::RecvError::Closed)) => break,
        };
        if lines.send(line(&event)).await.is_err() {
            return;
        }
    }
    match app.records.call(move |db| db.run(id)).await {
        Ok(ended) => {
            let _ = lines.send(line(&end_status(&ended))).await;
            let _ = lines
                .send(line(&RunEvent::End {
                    run: (&ended).into(),
                }))
                .await;
        }
        Err(err) => {
            tracing::warn!(run = id, error = %err, "reading an ended run for its followers")
        }
    }
}

fn end_status(run: &Run) -> RunEvent {
    RunEvent::Status {
        status: run.status.to_string(),
    }
}

/// An ended run: the same lines, from its record.
async fn send_recorded(run: Run, lines: mpsc::Sender<Bytes>) {
    let mut events = vec![RunEvent::Run { run: (&run).into() }, end_status(&run)];
    for (stream, captured) in [(Stream::Stdout, &run.stdout), (Stream::Stderr, &run.stderr)] {
        for piece in pieces(&text(&captured.bytes), PIECE_BYTES) {
            events.push(RunEvent::Output {
                stream: stream.as_str().into(),
                data: piece.to_owned(),
            });
        }
    }
    events.push(RunEvent::End { run: (&run).into() });
    for event in &events {
        if lines.send(line(event)).await.is_err() {
            return;
        }
    }
}

/// `text` in pieces of at most `max` bytes, cut at character boundaries.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // A character longer than `max`: send it whole.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_json_object_each() {
        let bytes = line(&RunEvent::Output {
            stream: "stdout".into(),
            data: "two\nlines".into(),
        });
        assert_eq!(
            &bytes[..],
            b"{\"type\":\"output\",\"stream\":\"stdout\",\"data\":\"two\\nlines\"}\n"
        );
        assert_eq!(
            &line(&RunEvent::Heartbeat)[..],
            b"{\"type\":\"heartbeat\"}\n"
        );
        assert_eq!(
            &line(&RunEvent::Lagged { missed: 3 })[..],
            b"{\"type\":\"lagged\",\"missed\":3}\n"
        );
    }

    #[test]
    fn recorded_output_is_cut_at_character_boundaries() {
        assert_eq!(pieces("", 4), Vec::<&str>::new());
        assert_eq!(pieces("abcdef", 4), ["abcd", "ef"]);
        assert_eq!(pieces("a€b", 2), ["a", "€", "b"]);
        assert_eq!(pieces("€€", 4), ["€", "€"]);
    }
}
