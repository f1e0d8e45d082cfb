//! HTTPS for axum over OpenSSL, shared by the launcher and the services.
//!
//! Every accepted socket gets `TCP_NODELAY`: without it a response written as
//! head and body stalls on Nagle's algorithm and the peer's delayed ACK, which
//! cost the original CAMB launcher about 10 ms a hop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use openssl::pkey::{PKeyRef, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_openssl::SslStream;
use tower::ServiceExt;

use crate::pki::{CryptoContext, PkiError};

/// Limits of the server loop.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections served at once; further clients wait in the listen queue.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a request head to arrive on an open connection.
    pub header_read_timeout: Duration,
    /// Time live connections get to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A TLS acceptor (TLS 1.2 and later, Mozilla's intermediate profile) for the
/// certificate chain `chain` (leaf first) and the leaf's key.
pub fn tls_acceptor(chain: &[X509], key: &PKeyRef<Private>) -> Result<SslAcceptor, PkiError> {
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| PkiError::Invalid("a TLS server needs a certificate".into()))?;
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).context("TLS acceptor")?;
    builder.set_private_key(key).context("TLS private key")?;
    builder.set_certificate(leaf).context("TLS certificate")?;
    for cert in rest {
        builder
            .add_extra_chain_cert(cert.clone())
            .context("TLS chain certificate")?;
    }
    builder
        .check_private_key()
        .context("the TLS key does not match its certificate")?;
    Ok(builder.build())
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then
/// lets live connections finish for [`ServeOptions::shutdown_grace`].
///
/// Handlers can read the peer's address with `ConnectInfo<SocketAddr>`.
pub async fn serve<F>(
    listener: TcpListener,
    acceptor: SslAcceptor,
    router: Router,
    options: ServeOptions,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let acceptor = Arc::new(acceptor);
    let router = router.layer(axum::middleware::from_fn(close_unless_body_read));
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_transient_accept_error(&err) => {
                    tracing::warn!(error = %err, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(err) => return Err(err),
            },
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "TCP_NODELAY not set");
        }
        let ssl = match Ssl::new(acceptor.context()) {
            Ok(ssl) => ssl,
            Err(err) => {
                tracing::error!(error = %err, "cannot create a TLS session");
                continue;
            }
        };
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let options = options.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = match SslStream::new(ssl, tcp) {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "TLS stream setup failed");
                    return;
                }
            };
            match tokio::time::timeout(options.handshake_timeout, Pin::new(&mut stream).accept())
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout)
                .keep_alive(true);
            let conn = http.serve_connection(
                TokioIo::new(Lingering::new(stream)),
                TowerToHyperService::new(service),
            );
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    Ok(())
}

/// Marks an answer `Connection: close` when its request's body was not read
/// to its end (an early refusal: a 401, a 413, a bad upload name). hyper
/// then closes the connection; without the header a client that keeps it
/// for its next request (reqwest, Python's `requests`) meets a closed
/// connection there instead of an answer.
async fn close_unless_body_read(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use hyper::body::Body as _;
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let request = request.map(|body| {
        if body.is_end_stream() {
            read.store(true, std::sync::atomic::Ordering::Release);
        }
        axum::body::Body::new(TrackedBody {
            inner: body,
            read: read.clone(),
        })
    });
    let mut response = next.run(request).await;
    if !read.load(std::sync::atomic::Ordering::Acquire) {
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A request body that notes when it has been read to its end.
struct TrackedBody {
    inner: axum::body::Body,
    read: Arc<std::sync::atomic::AtomicBool>,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            self.read.store(true, std::sync::atomic::Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long a closing connection reads and drops what the client still
/// sends, at most; and how long it waits for the next bytes.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_IDLE: Duration = Duration::from_millis(200);
/// Bytes a closing connection reads and drops, at most.
const LINGER_BYTES: u64 = 64 << 20;

/// An accepted connection that closes the way Apache and nginx do
/// ("lingering close"). When hyper closes a connection after answering a
/// request whose body it did not read (a 413 for a body over its limit),
/// the client may still be sending; closing the socket then with unread data
/// makes the kernel reset the connection, and the reset destroys the answer
/// before the client reads it. So on shutdown this sends close_notify and
/// FIN, then reads and drops what arrives until the client closes, for at
/// most [`LINGER`] (and [`LINGER_IDLE`] without a byte) and [`LINGER_BYTES`].
struct Lingering<T> {
    inner: T,
    closing: Option<Closing>,
}

struct Closing {
    wrote_shutdown: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
    idle: Pin<Box<tokio::time::Sleep>>,
    drained: u64,
    done: bool,
}

impl<T> Lingering<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            closing: None,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let closing = this.closing.get_or_insert_with(|| Closing {
            wrote_shutdown: false,
            deadline: Box::pin(tokio::time::sleep(LINGER)),
            idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
            drained: 0,
            done: false,
        });
        // Errors end the lingering, never the close: the answer is sent.
        while !closing.done {
            if closing.deadline.as_mut().poll(cx).is_ready() {
                closing.done = true;
                break;
            }
            if !closing.wrote_shutdown {
                match Pin::new(&mut this.inner).poll_shutdown(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => closing.wrote_shutdown = true,
                    Poll::Ready(Err(_)) => closing.done = true,
                }
                continue;
            }
            let mut scratch = [0u8; 16 * 1024];
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    closing.drained += buf.filled().len() as u64;
                    closing.done = closing.drained > LINGER_BYTES;
                    let next = tokio::time::Instant::now() + LINGER_IDLE;
                    closing.idle.as_mut().reset(next);
                }
                // End of file (the client closed) or an error.
                Poll::Ready(_) => closing.done = true,
                Poll::Pending => {
                    if closing.idle.as_mut().poll(cx).is_ready() {
                        closing.done = true;
                    } else {
                        return Poll::Pending;
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn is_transient_accept_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertificateAuthority, ServerCertSpec, generate_p256_key};
    use axum::routing::get;
    use openssl::ssl::{SslConnector, SslStream as BlockingTls, SslVerifyMode};
    use std::io::{Read, Write};
    use std::net::SocketAddr;

    /// A server on 127.0.0.1:0 with a certificate for `localhost` from a
    /// fresh root; stopped (and checked to stop cleanly) by [`TestServer::stop`].
    struct TestServer {
        addr: SocketAddr,
        root: X509,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl TestServer {
        async fn start(router: Router) -> Self {
            let root = CertificateAuthority::create_root("test root", None, 1).unwrap();
            let key = generate_p256_key().unwrap();
            let cert = root
                .issue_server_cert(
                    &key,
                    &ServerCertSpec {
                        common_name: "localhost".into(),
                        organization: None,
                        dns_names: vec!["localhost".into()],
                        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                        days: 1,
                    },
                )
                .unwrap();
            let acceptor = tls_acceptor(&[cert], &key).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(
                listener,
                acceptor,
                router,
                ServeOptions::default(),
                async {
                    let _ = stop_rx.await;
                },
            ));
            Self {
                addr,
                root: root.certificate().clone(),
                stop,
                task,
            }
        }

        /// A blocking TLS connector trusting only the server's root, and
        /// the address to connect to (for `spawn_blocking` clients).
        fn client(&self) -> impl Fn() -> BlockingTls<std::net::TcpStream> + Send + 'static {
            let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
            connector
                .cert_store_mut()
                .add_cert(self.root.clone())
                .unwrap();
            connector.set_verify(SslVerifyMode::PEER);
            let connector = connector.build();
            let addr = self.addr;
            move || {
                let tcp = std::net::TcpStream::connect(addr).unwrap();
                connector.connect("localhost", tcp).unwrap()
            }
        }

        async fn stop(self) {
            self.stop.send(()).unwrap();
            self.task.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_https_with_nodelay_and_shuts_down() {
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let server = TestServer::start(router).await;
        let connect = server.client();
        let body = tokio::task::spawn_blocking(move || {
            let mut tls = connect();
            tls.write_all(b"GET /peer HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            tls.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.ends_with("127.0.0.1"), "{body}");
        server.stop().await;
    }

    /// A client that sends all of a body the server refuses before reading
    /// it (many do: Python's `requests`, schemathesis) must still receive the
    /// answer, not a reset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_body_sent_to_its_end_still_gets_the_answer() {
        let router = Router::new().route(
            "/small",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() })
                .layer(axum::extract::DefaultBodyLimit::max(1024)),
        );
        let server = TestServer::start(router).await;
        let connect = server.client();
        let answer = tokio::task::spawn_blocking(move || {
            let mut tls = connect();
            let size = 8 << 20;
            tls.write_all(
                format!(
                    "POST /small HTTP/1.1\r\nhost: localhost\r\ncontent-length: {size}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..size / chunk.len() {
                tls.write_all(&chunk)
                    .map_err(|e| format!("writing the body: {e}"))?;
            }
            let mut out = Vec::new();
            tls.read_to_end(&mut out)
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
        })
        .await
        .unwrap();
        let answer = answer.unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        server.stop().await;
    }

    /// An answer given before the request's body was read says the
    /// connection closes, so that no client sends its next request there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_before_the_body_is_read_says_connection_close() {
        let router = Router::new()
            .route(
                "/refuse",
                axum::routing::post(|| async { (axum::http::StatusCode::BAD_REQUEST, "no") }),
            )
            .route(
                "/read",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            );
        let server = TestServer::start(router).await;
        let connect = server.client();
        let heads = tokio::task::spawn_blocking(move || {
            let mut heads = Vec::new();
            for path in ["/read", "/refuse"] {
                let mut tls = connect();
                let body = "x".repeat(100_000);
                tls.write_all(
                    format!(
                        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
                let mut buf = vec![0u8; 4096];
                let n = tls.read(&mut buf).unwrap();
                heads.push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
            }
            heads
        })
        .await
        .unwrap();
        assert!(heads[0].starts_with("http/1.1 200"), "{}", heads[0]);
        assert!(!heads[0].contains("connection: close"), "{}", heads[0]);
        assert!(heads[1].starts_with("http/1.1 400"), "{}", heads[1]);
        assert!(heads[1].contains("connection: close"), "{}", heads[1]);
        server.stop().await;
    }

    #[test]
    fn acceptor_rejects_mismatched_key() {
        let root = CertificateAuthority::create_root("r", None, 1).unwrap();
        let Err(err) = tls_acceptor(&[root.certificate().clone()], &generate_p256_key().unwrap())
        else {
            panic!("a key of another certificate was accepted");
        };
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
