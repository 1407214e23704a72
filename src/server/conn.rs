//! One accepted connection: TLS, the version sniff and hyper's HTTP/1.1 or
//! HTTP/2 connection, each under its deadline, and graceful shutdown.

use std::task::{Context, Poll};

use http::Request;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::io::{Http, sniff};
use super::{HttpService, Settings};
use crate::service::PeerAddr;
use crate::shutdown::Shutdown;

/// Puts the server's [`Shutdown`] and the connection's [`PeerAddr`] into
/// every request's extensions, where
/// [`WebSocketService`](crate::WebSocketService) finds them.
#[derive(Clone, Debug)]
pub(super) struct AddExtensions<S> {
    pub(super) inner: S,
    pub(super) shutdown: Shutdown,
    /// The peer of the connection (set per accepted connection).
    pub(super) peer: Option<PeerAddr>,
}

impl<S, B> Service<Request<B>> for AddExtensions<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        req.extensions_mut().insert(self.shutdown.clone());
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        self.inner.call(req)
    }
}

/// What a connection task needs besides its socket.
pub(super) struct Conn<S> {
    pub(super) service: AddExtensions<S>,
    pub(super) settings: std::sync::Arc<Settings>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Cancelled when the server stops: ends handshakes still in progress,
    /// and shuts hyper's connection down gracefully.
    pub(super) stop: CancellationToken,
}

impl<S: HttpService> Conn<S> {
    /// Serves one connection to its end; errors only end the connection.
    pub(super) async fn run(self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(self.settings.tcp_nodelay);
        #[cfg(feature = "tls")]
        if let Some(acceptor) = self.tls.clone() {
            let handshake =
                tokio::time::timeout(self.settings.tls_handshake_timeout, acceptor.accept(tcp));
            let tls = tokio::select! {
                () = self.stop.cancelled() => return,
                tls = handshake => match tls {
                    Ok(Ok(tls)) => tls,
                    // A broken or slow TLS handshake: drop the connection.
                    _ => return,
                },
            };
            let alpn = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Some(Http::H2),
                Some(b"http/1.1") => Some(Http::H1),
                _ => None,
            };
            return self.serve_http(tls, alpn).await;
        }
        self.serve_http(tcp, None).await;
    }

    /// Tells the version from the first bytes (within the header read
    /// timeout), checks it against ALPN, and hands the connection to hyper.
    async fn serve_http<IO>(self, io: IO, alpn: Option<Http>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let first_bytes = tokio::time::timeout(self.settings.header_read_timeout, sniff(io));
        let (http, io) = tokio::select! {
            () = self.stop.cancelled() => return,
            sniffed = first_bytes => match sniffed {
                Ok(Ok(Some(sniffed))) => sniffed,
                // Silent, stalled in the preface, closed or failed.
                _ => return,
            },
        };
        if alpn.is_some_and(|agreed| agreed != http) {
            // RFC 9113 §3.3: over TLS, the version is the one ALPN agreed.
            return;
        }
        let io = TokioIo::new(io);
        let service = TowerToHyperService::new(self.service);
        let s = &self.settings;
        match http {
            Http::H1 => {
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(s.header_read_timeout)
                    .keep_alive(true)
                    .serve_connection(io, service)
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = self.stop.cancelled() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            }
            Http::H2 => {
                let mut builder = http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    // RFC 8441 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
                    .enable_connect_protocol()
                    .keep_alive_interval(s.http2_keep_alive_interval)
                    .keep_alive_timeout(s.http2_keep_alive_timeout)
                    .max_concurrent_streams(s.http2_max_concurrent_streams)
                    .initial_stream_window_size(s.http2_stream_window)
                    .initial_connection_window_size(s.http2_connection_window)
                    .max_pending_accept_reset_streams(s.http2_max_pending_reset_streams);
                let mut conn = std::pin::pin!(builder.serve_connection(io, service));
                tokio::select! {
                    _ = conn.as_mut() => return,
                    // GOAWAY; the streams open (WebSockets closing with
                    // 1001, requests in flight) finish first.
                    () = self.stop.cancelled() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            }
        }
    }
}
