//! `serve` over TLS (rustls): WebSockets over HTTP/2 and HTTP/1.1 as ALPN
//! agrees, deadlines for broken handshakes that never hold up the accept
//! loop, plain HTTP sent to the TLS port, and certificate loading errors.
//! The certificate is made by the test (rcgen), never committed.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http2::{self, open_ws, start};
use support::{echo, parse_server_frame, upgrade_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tower_ws::WebSocketService;
use tower_ws::server::TlsConfig;

/// A self-signed certificate for 127.0.0.1 and localhost.
struct Cert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn cert() -> Cert {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    Cert {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        der: certified.cert.der().clone(),
    }
}

/// A TLS client that trusts `cert` and offers `alpn`.
async fn tls_connect(addr: SocketAddr, cert: &Cert, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn tls_config(cert: &Cert) -> TlsConfig {
    TlsConfig::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap()
}

/// Upgrades over HTTP/1.1 on `io` and echoes one message through it.
async fn h1_echo<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: &mut IO) {
    io.write_all(upgrade_request("/", "").as_bytes())
        .await
        .unwrap();
    io.write_all(&support::masked_frame(
        true,
        0,
        0x1,
        b"over wss and HTTP/1.1",
    ))
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                buf.starts_with(b"HTTP/1.1 101"),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            if let Some((frame, _)) = parse_server_frame(&buf[end + 4..]) {
                assert_eq!(frame.payload, b"over wss and HTTP/1.1");
                return;
            }
        }
    }
}

#[tokio::test]
async fn wss_speaks_http2_when_alpn_agrees_h2() {
    let cert = cert();
    let server = start(WebSocketService::new(echo), |s| s.tls(tls_config(&cert))).await;
    let tls = tls_connect(server.addr, &cert, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h2 = http2::handshake(tls, &http2::client()).await;
    assert!(h2.is_extended_connect_protocol_enabled());
    let mut ws = open_ws(&mut h2.clone(), "/secure").await;
    ws.assert_echo("over wss and HTTP/2").await;
    let mut second = open_ws(&mut h2.clone(), "/secure").await;
    second
        .assert_echo("a second WebSocket, same TLS connection")
        .await;
}

#[tokio::test]
async fn wss_upgrades_over_http1_when_alpn_agrees_http1() {
    let cert = cert();
    let server = start(WebSocketService::new(echo), |s| s.tls(tls_config(&cert))).await;
    let mut tls = tls_connect(server.addr, &cert, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    h1_echo(&mut tls).await;

    // A server limited to HTTP/1.1 agrees http/1.1 with a client offering h2 too.
    let http1 = start(WebSocketService::new(echo), |s| {
        s.tls(tls_config(&cert).http1_only())
    })
    .await;
    let mut tls = tls_connect(http1.addr, &cert, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    h1_echo(&mut tls).await;
}

/// Reads until EOF or a reset; how long it took, or `None` past `limit`.
async fn time_to_close(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), tcp.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped_without_holding_up_others() {
    let cert = cert();
    let server = start(WebSocketService::new(echo), |s| {
        s.tls(tls_config(&cert))
            .tls_handshake_timeout(Duration::from_secs(5))
    })
    .await;
    // One client sends nothing, another the first bytes of a ClientHello.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    // Meanwhile a real client is served at once.
    let started = Instant::now();
    let mut tls = tls_connect(server.addr, &cert, &[b"http/1.1"]).await;
    h1_echo(&mut tls).await;
    // Well under the handshake timeout the stalled ones would cost, with
    // room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the accept loop waited for the stalled handshakes"
    );
    for (name, tcp) in [
        ("silent", &mut silent),
        ("partial ClientHello", &mut partial),
    ] {
        let closed = time_to_close(tcp, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "{name}: still open after 10 s");
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_closed_at_once() {
    let cert = cert();
    let server = start(WebSocketService::new(echo), |s| s.tls(tls_config(&cert))).await;
    for request in [
        upgrade_request("/", ""),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let closed = time_to_close(&mut tcp, Duration::from_secs(2)).await;
        assert!(closed.is_some(), "no hang for {request:?}");
    }
}

#[test]
fn certificate_errors_say_what_is_wrong() {
    let cert = cert();
    let other = self::cert();
    let err = |r: std::io::Result<TlsConfig>| r.unwrap_err().to_string();
    assert!(
        err(TlsConfig::from_pem(b"garbage", cert.key_pem.as_bytes())).contains("no certificate")
    );
    assert!(err(TlsConfig::from_pem(cert.cert_pem.as_bytes(), b"garbage")).contains("private key"));
    assert!(
        err(TlsConfig::from_pem(
            cert.cert_pem.as_bytes(),
            other.key_pem.as_bytes()
        ))
        .contains("do not go together")
    );
    let missing = err(TlsConfig::from_pem_files(
        "/nonexistent/cert.pem",
        "/nonexistent/key.pem",
    ));
    assert!(missing.contains("/nonexistent/cert.pem"), "{missing}");
    let dir = std::env::temp_dir().join(format!("tower-ws-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let loaded = TlsConfig::from_pem_files(dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(format!("{:?}", loaded.unwrap()).contains("h2"));
}
