//! HTTPS for axum over OpenSSL, shared by the launcher and the services.
//!
//! Every accepted socket gets `TCP_NODELAY`: without it a response written as
//! head and body stalls on Nagle's algorithm and the peer's delayed ACK, which
//! cost the original CAMB launcher about 10 ms a hop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
            let conn =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
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

/// The address to print and write to an `.addr` file for a bound listener.
pub fn local_addr(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

// Keeps the `Infallible` import honest: routers never fail as services.
const _: fn() = || {
    fn assert_infallible<S: tower::Service<hyper::Request<Incoming>, Error = Infallible>>() {}
    assert_infallible::<Router>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertificateAuthority, ServerCertSpec, generate_p256_key};
    use axum::routing::get;
    use openssl::ssl::{SslConnector, SslVerifyMode};
    use std::io::{Read, Write};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_https_with_nodelay_and_shuts_down() {
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
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            acceptor,
            router,
            ServeOptions::default(),
            async {
                let _ = stop_rx.await;
            },
        ));

        let root_cert = root.certificate().clone();
        let body = tokio::task::spawn_blocking(move || {
            let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
            connector.cert_store_mut().add_cert(root_cert).unwrap();
            connector.set_verify(SslVerifyMode::PEER);
            let connector = connector.build();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            let mut tls = connector.connect("localhost", tcp).unwrap();
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

        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
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
