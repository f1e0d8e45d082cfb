//! Live events of runs: status changes and output, for anyone following a
//! run (`GET /v1/runs/{id}/events`, see `api/events.rs`).
//!
//! Each live run has a channel: the supervisor opens it when it takes the
//! run, reports status changes, the output capture taps every chunk it
//! reads, and the supervisor closes it once the run's end is recorded.
//!
//! Memory stays bounded whatever followers do: a run keeps the first
//! [`REPLAY_BYTES`] of each stream for followers who arrive late (the rest is
//! counted, not kept), and live events go through a broadcast ring of
//! [`RING_EVENTS`] events, so a slow follower never slows the run or the
//! other followers: it misses events and is told how many.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use programs_db::RunStatus;
use tokio::sync::broadcast;

/// Output kept per stream for followers who join a live run late.
pub const REPLAY_BYTES: usize = 64 * 1024;

/// Live events buffered for the slowest follower of a run.
pub const RING_EVENTS: usize = 64;

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// What a follower receives while the run is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Status(RunStatus),
    /// Text as the program wrote it (UTF-8 sequences are never split
    /// between events; invalid bytes become U+FFFD).
    Output {
        stream: Stream,
        data: Arc<str>,
    },
    /// Bytes of a stream that this follower will not see (it joined after
    /// the replay buffer was full).
    Skipped {
        stream: Stream,
        bytes: u64,
    },
}

/// The state of one stream of one run.
#[derive(Debug, Default)]
struct Replay {
    /// The first bytes of the stream, at most the replay limit.
    kept: Vec<u8>,
    /// Every byte read so far.
    total: u64,
    /// The end of an incomplete UTF-8 sequence, not yet sent.
    pending: Vec<u8>,
}

#[derive(Debug)]
struct RunState {
    status: RunStatus,
    replay: [Replay; 2],
    sender: Option<broadcast::Sender<Event>>,
}

/// What a new follower starts from, and its feed of what comes next.
#[derive(Debug)]
pub struct Subscription {
    /// The status, then what the run printed so far (with a gap marker if
    /// some of it is no longer kept): exactly what precedes `live`.
    pub snapshot: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
}

/// The event channels of every live run.
#[derive(Debug)]
pub struct RunEvents {
    runs: Mutex<HashMap<i64, Arc<Mutex<RunState>>>>,
    replay_limit: usize,
}

impl RunEvents {
    /// `replay_limit`: bytes kept per stream for late followers.
    pub fn new(replay_limit: usize) -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            replay_limit,
        }
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<i64, Arc<Mutex<RunState>>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self, id: i64) -> Option<Arc<Mutex<RunState>>> {
        self.runs().get(&id).cloned()
    }

    /// A run was taken in charge (it is queued).
    pub fn open(&self, id: i64) {
        let (sender, _) = broadcast::channel(RING_EVENTS);
        let state = RunState {
            status: RunStatus::Queued,
            replay: Default::default(),
            sender: Some(sender),
        };
        self.runs().insert(id, Arc::new(Mutex::new(state)));
    }

    /// The run's end is recorded: followers get what is left, then the end.
    pub fn close(&self, id: i64) {
        if let Some(run) = self.runs().remove(&id) {
            lock(&run).sender = None;
        }
    }

    /// A status change of a live run.
    pub fn status(&self, id: i64, status: RunStatus) {
        if let Some(run) = self.run(id) {
            let mut state = lock(&run);
            state.status = status;
            if let Some(sender) = &state.sender {
                let _ = sender.send(Event::Status(status));
            }
        }
    }

    /// Bytes the program wrote on `stream`.
    pub fn output(&self, id: i64, stream: Stream, bytes: &[u8]) {
        if let Some(run) = self.run(id) {
            self.record(&run, stream, bytes);
        }
    }

    /// A function for the output capture of run `id`: hands it each chunk.
    pub fn tap(self: &Arc<Self>, id: i64, stream: Stream) -> impl FnMut(&[u8]) + Send + 'static {
        let events = self.clone();
        let run = self.run(id);
        move |bytes| {
            if let Some(run) = &run {
                events.record(run, stream, bytes);
            }
        }
    }

    fn record(&self, run: &Mutex<RunState>, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut state = lock(run);
        let replay = &mut state.replay[stream.index()];
        replay.total += bytes.len() as u64;
        let room = self.replay_limit.saturating_sub(replay.kept.len());
        replay
            .kept
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        let text = decode(&mut replay.pending, bytes);
        if text.is_empty() {
            return;
        }
        if let Some(sender) = &state.sender {
            // No follower: nothing is kept beyond the replay.
            let _ = sender.send(Event::Output {
                stream,
                data: text.into(),
            });
        }
    }

    /// Follows run `id`, if it is live here.
    pub fn subscribe(&self, id: i64) -> Option<Subscription> {
        let run = self.run(id)?;
        let state = lock(&run);
        let live = state.sender.as_ref()?.subscribe();
        let mut snapshot = vec![Event::Status(state.status)];
        for stream in [Stream::Stdout, Stream::Stderr] {
            let replay = &state.replay[stream.index()];
            // Everything sent so far: all bytes but the pending tail.
            let sent = replay.total - replay.pending.len() as u64;
            let kept = (replay.kept.len() as u64).min(sent) as usize;
            if kept > 0 {
                snapshot.push(Event::Output {
                    stream,
                    data: String::from_utf8_lossy(&replay.kept[..kept]).into(),
                });
            }
            if sent > kept as u64 {
                snapshot.push(Event::Skipped {
                    stream,
                    bytes: sent - kept as u64,
                });
            }
        }
        Some(Subscription { snapshot, live })
    }

    /// Runs with an open channel.
    pub fn live_count(&self) -> usize {
        self.runs().len()
    }
}

fn lock(run: &Mutex<RunState>) -> MutexGuard<'_, RunState> {
    run.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `pending` followed by `bytes` as text, keeping back (in `pending`) an
/// incomplete UTF-8 sequence at the end for the next chunk.
fn decode(pending: &mut Vec<u8>, bytes: &[u8]) -> String {
    let mut all = std::mem::take(pending);
    all.extend_from_slice(bytes);
    let keep = incomplete_tail(&all);
    *pending = all.split_off(all.len() - keep);
    String::from_utf8_lossy(&all).into_owned()
}

/// Length of a valid but unfinished multi-byte sequence ending `bytes`.
fn incomplete_tail(bytes: &[u8]) -> usize {
    let start = bytes.len().saturating_sub(3);
    for i in (start..bytes.len()).rev() {
        let need = match bytes[i] {
            0x80..=0xBF => continue,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        let tail = &bytes[i..];
        let unfinished = tail.len() < need
            && matches!(std::str::from_utf8(tail), Err(e) if e.valid_up_to() == 0 && e.error_len().is_none());
        return if unfinished { tail.len() } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(event: &Event) -> &str {
        match event {
            Event::Output { data, .. } => data,
            other => panic!("not output: {other:?}"),
        }
    }

    #[test]
    fn utf8_sequences_are_never_split() {
        let mut pending = Vec::new();
        let euro = "€".as_bytes();
        assert_eq!(decode(&mut pending, &[b'a', euro[0]]), "a");
        assert_eq!(pending, [euro[0]]);
        assert_eq!(decode(&mut pending, &euro[1..2]), "");
        assert_eq!(decode(&mut pending, &[euro[2], b'b']), "€b");
        assert!(pending.is_empty());
        // Invalid bytes are replaced, not held back.
        assert_eq!(decode(&mut pending, &[0xFF, b'c']), "\u{FFFD}c");
        assert_eq!(decode(&mut pending, &[0xE2, 0x28]), "\u{FFFD}(");
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn late_followers_get_the_start_then_live_events() {
        let events = Arc::new(RunEvents::new(8));
        events.open(1);
        let mut early = events.subscribe(1).unwrap();
        assert_eq!(early.snapshot, [Event::Status(RunStatus::Queued)]);
        events.status(1, RunStatus::Running);
        let mut tap = events.tap(1, Stream::Stdout);
        tap(b"hello ");
        tap(b"world, and more");
        events.output(1, Stream::Stderr, b"oops\n");

        let late = events.subscribe(1).unwrap();
        assert_eq!(late.snapshot[0], Event::Status(RunStatus::Running));
        assert_eq!(text(&late.snapshot[1]), "hello wo");
        assert_eq!(
            late.snapshot[2],
            Event::Skipped {
                stream: Stream::Stdout,
                bytes: 13
            }
        );
        assert_eq!(text(&late.snapshot[3]), "oops\n");

        assert_eq!(
            early.live.recv().await.unwrap(),
            Event::Status(RunStatus::Running)
        );
        assert_eq!(text(&early.live.recv().await.unwrap()), "hello ");
        assert_eq!(text(&early.live.recv().await.unwrap()), "world, and more");
        assert_eq!(text(&early.live.recv().await.unwrap()), "oops\n");

        events.close(1);
        assert!(matches!(
            early.live.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        assert!(events.subscribe(1).is_none());
        assert_eq!(events.live_count(), 0);
        // A tap outliving its run is harmless.
        tap(b"late");
    }

    #[tokio::test]
    async fn a_slow_follower_misses_events_and_is_told() {
        let events = Arc::new(RunEvents::new(1024));
        events.open(7);
        let mut slow = events.subscribe(7).unwrap();
        for i in 0..(RING_EVENTS + 10) {
            events.output(7, Stream::Stdout, format!("{i}\n").as_bytes());
        }
        assert!(matches!(
            slow.live.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        assert_eq!(text(&slow.live.recv().await.unwrap()), "10\n");
    }

    #[test]
    fn a_pending_tail_is_not_replayed_twice() {
        let events = Arc::new(RunEvents::new(1024));
        events.open(2);
        events.output(2, Stream::Stdout, &"x€".as_bytes()[..2]);
        let sub = events.subscribe(2).unwrap();
        // "x" was sent; the first byte of € waits for the rest.
        assert_eq!(text(&sub.snapshot[1]), "x");
        assert_eq!(sub.snapshot.len(), 2);
    }
}
