//! Hostile HTTP/2 input against WebSockets over HTTP/2 (RFC 8441): broken
//! extended CONNECTs (crafted with the `h2` crate, or frame by frame where
//! it refuses to send them), an extended CONNECT the server did not enable,
//! and many streams opened and reset at once (rapid reset). Each gets the
//! status or stream error RFC 8441 / RFC 9113 name, nothing panics, memory
//! stays bounded and other connections keep working.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use support::http2::{self, open, open_ws, start, websocket_request};
use support::{Live, counted_echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The response body, read whole.
async fn body(recv: &mut h2::RecvStream) -> String {
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = recv.data().await {
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `req` on a fresh stream; returns the status and the body.
async fn refused(h2: &h2::client::SendRequest<Bytes>, req: Request<()>) -> (StatusCode, String) {
    let mut ready = h2.clone().ready().await.unwrap();
    let (response, _stream) = ready.send_request(req, false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("a response within 5 s")
        .expect("a response, not a stream error");
    let status = response.status();
    let mut recv = response.into_body();
    (status, body(&mut recv).await)
}

#[tokio::test]
async fn broken_extended_connects_get_their_status_and_the_connection_goes_on() {
    let live = Live::default();
    let server = start(counted_echo(&live), |s| s).await;
    let h2 = http2::connect(server.addr).await;

    // No :authority: h2 sends a relative URI from an HTTP/1.1 request as is.
    let mut no_authority = websocket_request("/");
    *no_authority.uri_mut() = "/ws".parse().unwrap();
    *no_authority.version_mut() = Version::HTTP_11;
    let (status, reason) = refused(&h2, no_authority).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reason.contains(":authority"), "{reason}");

    let mut other = websocket_request("/");
    other
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("webtransport"));
    let (status, reason) = refused(&h2, other).await;
    assert_eq!(
        status,
        StatusCode::NOT_IMPLEMENTED,
        "RFC 8441 §4: unknown :protocol"
    );
    assert!(reason.contains("websocket"), "{reason}");

    let mut no_version = websocket_request("/");
    no_version.headers_mut().remove("sec-websocket-version");
    let (status, _) = refused(&h2, no_version).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);

    // RFC 8441 §5: Sec-WebSocket-Key is not processed; no Accept comes back.
    let mut keyed = websocket_request("/");
    keyed.headers_mut().insert(
        "sec-websocket-key",
        "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
    );
    let opened = open(&mut h2.clone(), keyed).await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(!opened.headers.contains_key("sec-websocket-accept"));
    opened.ws.unwrap().assert_echo("keyed but served").await;

    // A plain CONNECT (no :protocol) is no WebSocket: the inner service
    // answers it (200, which hyper turns into a tunnel without a body).
    let plain = Request::builder()
        .method(Method::CONNECT)
        .uri("localhost:443")
        .body(())
        .unwrap();
    assert_eq!(refused(&h2, plain).await.0, StatusCode::OK);

    open_ws(&mut h2.clone(), "/")
        .await
        .assert_echo("still serving")
        .await;
    live.wait_zero(Duration::from_secs(5)).await;
}

/// A raw HTTP/2 client: the preface, an empty SETTINGS, then one HEADERS
/// frame on stream 1 with `fields` encoded as HPACK literals (RFC 7541
/// §6.2.2, no Huffman), for requests the `h2` crate refuses to build.
async fn raw_request(addr: std::net::SocketAddr, fields: &[(&str, &str)]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let len = block.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[0x1, 0x4, 0, 0, 0, 1]); // HEADERS, END_HEADERS, stream 1
    out.extend_from_slice(&block);
    tcp.write_all(&out).await.unwrap();
    tcp
}

/// What the server answered on stream 1: a RST_STREAM error code, or a
/// response HEADERS frame (`None` for the code).
async fn stream_1_outcome(tcp: &mut TcpStream) -> Option<u32> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, stream) = (buf[3], u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]));
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match (kind, stream) {
                (0x3, 1) => return Some(u32::from_be_bytes(payload[..4].try_into().unwrap())),
                (0x1, 1) => return None,
                (0x7, _) => panic!("GOAWAY instead of a stream error: {payload:?}"),
                _ => {}
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "the connection closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn an_extended_connect_without_path_or_scheme_is_a_malformed_request() {
    let live = Live::default();
    let server = start(counted_echo(&live), |s| s).await;
    const PROTOCOL_ERROR: u32 = 0x1;
    let without_path = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", "localhost"),
        ("sec-websocket-version", "13"),
    ];
    let without_scheme = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":path", "/"),
        (":authority", "localhost"),
        ("sec-websocket-version", "13"),
    ];
    for fields in [&without_path[..], &without_scheme[..]] {
        // RFC 8441 §4 requires both; RFC 9113 §8.1.1: a malformed request
        // is a stream error of type PROTOCOL_ERROR.
        let mut tcp = raw_request(server.addr, fields).await;
        assert_eq!(
            stream_1_outcome(&mut tcp).await,
            Some(PROTOCOL_ERROR),
            "{fields:?}"
        );
    }
    // The same request with both is served: the raw client is sound.
    let mut tcp = raw_request(
        server.addr,
        &[
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "localhost"),
            ("sec-websocket-version", "13"),
        ],
    )
    .await;
    assert_eq!(stream_1_outcome(&mut tcp).await, None, "a response");
    drop(tcp);
    live.wait_zero(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_extended_connect_the_server_did_not_enable_never_reaches_the_service() {
    // A hyper HTTP/2 server that does not send SETTINGS_ENABLE_CONNECT_PROTOCOL.
    let live = Live::default();
    let service = counted_echo(&live).with_inner(support::hello());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    let h2 = http2::connect(addr).await;
    assert!(!h2.is_extended_connect_protocol_enabled());
    let mut ready = h2.clone().ready().await.unwrap();
    let (response, _stream) = ready.send_request(websocket_request("/"), false).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("an answer within 5 s")
        .expect_err("RFC 8441 §3: no extended CONNECT without the setting");
    assert_eq!(err.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{err}");
    assert_eq!(live.get(), 0, "no handler ran");
}

fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_of_thousands_of_websocket_streams_is_bounded_and_spares_others() {
    let live = Live::default();
    let server = start(counted_echo(&live), |s| s).await;
    let bystander = http2::connect(server.addr).await;
    let mut watching = open_ws(&mut bystander.clone(), "/").await;
    watching.assert_echo("before the attack").await;
    let rss_before = rss_kib();

    // CVE-2023-44487: open extended CONNECTs and reset each at once.
    let attacker = http2::connect(server.addr).await;
    let mut sent = 0;
    let mut refused = None;
    for _ in 0..5_000 {
        let mut ready = match attacker.clone().ready().await {
            Ok(ready) => ready,
            Err(e) => {
                refused = Some(e);
                break;
            }
        };
        match ready.send_request(websocket_request("/"), false) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    // Either every stream was reset and cleaned up, or the server cut the
    // connection off (GOAWAY ENHANCE_YOUR_CALM) once too many piled up.
    if let Some(e) = &refused {
        assert!(e.is_go_away() || e.is_io() || e.is_remote(), "{e}");
    }
    // Every attacking stream's handler ended; the bystander's runs on.
    live.wait_for(1, Duration::from_secs(10)).await;
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 64 << 10,
        "{grown} KiB more after {sent} reset streams"
    );

    // The other connection never noticed; new connections are served.
    watching.assert_echo("after the attack").await;
    let fresh = http2::connect(server.addr).await;
    open_ws(&mut fresh.clone(), "/")
        .await
        .assert_echo("a new connection")
        .await;
    eprintln!("rapid reset: {sent} streams sent and reset, then {refused:?}");
}
