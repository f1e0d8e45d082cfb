//! Bounded capture of a child's output.

use programs_db::Captured;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// Reads `reader` to its end, keeping the first `limit` bytes and noting
/// whether more came. Stops early, keeping what it has, when `give_up`
/// becomes true (a process that escaped its group may hold the pipe open).
pub async fn capture<R: AsyncRead + Unpin>(
    reader: R,
    limit: usize,
    give_up: watch::Receiver<bool>,
) -> Captured {
    capture_with(reader, limit, give_up, |_| {}).await
}

/// [`capture`], handing every chunk read (kept or not) to `tap` as well:
/// how followers of a run see its output live (`crate::events`).
pub async fn capture_with<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: usize,
    mut give_up: watch::Receiver<bool>,
    mut tap: impl FnMut(&[u8]),
) -> Captured {
    let mut out = Captured::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tap(&buf[..n]);
                    let room = limit.saturating_sub(out.bytes.len());
                    out.bytes.extend_from_slice(&buf[..n.min(room)]);
                    if n > room {
                        out.truncated = true;
                    }
                }
            },
            _ = give_up.wait_for(|stop| *stop) => break,
        }
    }
    out
}

/// Tells captures to give up once `grace` has passed: time for the output a
/// process wrote before exiting to be read. Abort the handle when done.
pub fn give_up_after(
    give_up: watch::Sender<bool>,
    grace: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let _ = give_up.send(true);
    })
}

/// Reads and discards until the end: keeps a peer that writes from blocking.
pub async fn drain<R: AsyncRead + Unpin>(mut reader: R) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Lossy UTF-8 of captured bytes, for JSON.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_first_bytes_and_flags_the_rest() {
        let (_tx, rx) = watch::channel(false);
        let data = vec![b'x'; 40_000];
        let got = capture(&data[..], 100, rx.clone()).await;
        assert_eq!(got.bytes.len(), 100);
        assert!(got.truncated);
        let got = capture(&b"short"[..], 100, rx).await;
        assert_eq!(got.bytes, b"short");
        assert!(!got.truncated);
    }

    #[tokio::test]
    async fn gives_up_on_request_while_the_writer_stays_open() {
        use tokio::io::AsyncWriteExt;
        let (tx, rx) = watch::channel(false);
        let (mut writer, reader) = tokio::io::duplex(64);
        writer.write_all(b"partial").await.unwrap();
        let task = tokio::spawn(capture(reader, 100, rx));
        tx.send(true).unwrap();
        // Without giving up this would wait for the writer forever.
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("capture did not stop")
            .unwrap();
        assert!(b"partial".starts_with(&got.bytes), "{:?}", got.bytes);
        drop(writer);
    }
}
