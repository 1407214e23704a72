//! Servers for the client tests: a test certificate authority made at run
//! time (never committed), TLS, and a small HTTP/2 server with extended
//! CONNECT (RFC 8441) built from hyper's pieces and our server-role engine.
//!
//! Once `tower_ws` serves RFC 8441 itself (the `h2-tls-serve` branch), the
//! `h2_echo` service below gives way to `WebSocketService`, unchanged tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_ws::client::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tower_ws::client::rustls::{RootCertStore, ServerConfig};
use tower_ws::extensions::deflate::{DeflateConfig, PerMessageDeflate, negotiate};
use tower_ws::extensions::{Extension, parse_extensions};
use tower_ws::{Config, WebSocket, WebSocketService};

/// A certificate authority and a server certificate it signed.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    /// A fresh CA, and a certificate for `names` signed by it.
    pub fn new(names: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tower-ws test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        Pki {
            ca: ca.der().clone(),
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        }
    }

    /// A root store trusting only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        roots
    }

    /// A TLS acceptor presenting the certificate, with these ALPN protocols.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config(alpn))
    }

    /// The rustls server configuration presenting the certificate.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// How the test server speaks.
#[derive(Clone, Copy, Debug)]
pub struct Serve {
    /// Serve HTTP/2 (prior knowledge or ALPN) as well as HTTP/1.1.
    pub h2: bool,
    /// Announce SETTINGS_ENABLE_CONNECT_PROTOCOL on HTTP/2.
    pub connect_protocol: bool,
}

/// The TCP connections a server accepted.
pub type Accepted = Arc<AtomicUsize>;

/// An echo server on a loopback port: WebSocketService over HTTP/1.1, the
/// extended CONNECT echo over HTTP/2; over TLS when `tls` is given.
pub async fn echo_server(serve: Serve, tls: Option<TlsAcceptor>) -> (SocketAddr, Accepted) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Accepted::default();
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve_connection(TokioIo::new(stream), serve).await;
                        }
                    }
                    None => serve_connection(TokioIo::new(tcp), serve).await,
                }
            });
        }
    });
    (addr, accepted)
}

async fn serve_connection<IO>(io: IO, serve: Serve)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if !serve.h2 {
        builder = builder.http1_only();
    } else if serve.connect_protocol {
        builder.http2().enable_connect_protocol();
    }
    let service = hyper::service::service_fn(route);
    let _ = builder.serve_connection_with_upgrades(io, service).await;
}

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

async fn route(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(h2_echo(req).map(|b| b.map_err(|e| match e {}).boxed_unsync()));
    }
    let ws = WebSocketService::new(echo)
        .config(Config::default().deflate(Some(DeflateConfig::default().max_memory(1 << 20))));
    let res = ws.oneshot(req).await?;
    Ok(res.map(BodyExt::boxed_unsync))
}

/// The server side of RFC 8441 §5: a CONNECT with `:protocol websocket`
/// and version 13 gets 200 and an echo on the stream.
fn h2_echo(mut req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let protocol = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    if protocol.as_deref() != Some("websocket") || !version_ok {
        let mut res = Response::new(Empty::new());
        *res.status_mut() = StatusCode::BAD_REQUEST;
        return res;
    }
    let lines = req
        .headers()
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let config = DeflateConfig::default().max_memory(1 << 20);
    let deflate = parse_extensions(lines)
        .ok()
        .and_then(|o| negotiate(&o, &config));
    let mut res = Response::new(Empty::new());
    if let Some((params, _)) = &deflate {
        res.headers_mut().insert(
            "sec-websocket-extensions",
            params.response().parse().unwrap(),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ext = deflate.map(|(params, mem)| {
                Box::new(PerMessageDeflate::new(params, mem, &config)) as Box<dyn Extension>
            });
            let ws = WebSocket::from_raw(TokioIo::new(upgraded), &Config::default(), ext);
            echo(ws, Request::new(()).into_parts().0).await;
        }
    });
    res
}

/// Echoes text and binary messages.
pub async fn echo<IO>(mut ws: WebSocket<IO>, _head: http::request::Parts)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}
