//! WebSockets over HTTP/2 (RFC 8441) through `tower_ws::serve` on a real
//! socket, with the `h2` crate as the client: the handshake, echo,
//! multiplexing, closing (§6), resets, flow-control backpressure and
//! graceful shutdown.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{StatusCode, Version};
use support::http2::{self, H2Ws, open, open_ws, start, websocket_request};
use support::{RawClient, echo};
use tokio::sync::mpsc;
use tower_ws::{Message, RequestHead, UpgradedWebSocket, WebSocketService};

/// What a handler saw: the request head and how its stream ended.
#[derive(Debug)]
struct Seen {
    version: Version,
    method: http::Method,
    path: String,
    /// `None`: the stream ended cleanly after a close frame; `Some(e)`: it
    /// ended with an error, described.
    error: Option<String>,
}

/// Echoes, then reports what it saw.
fn reporting_echo() -> (
    WebSocketService<impl tower_ws::UpgradeHandler>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, head: RequestHead| {
        let tx = tx.clone();
        async move {
            let mut error = None;
            while let Some(msg) = ws.next().await {
                match msg {
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                        if let Err(e) = ws.send(msg).await {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let _ = tx.send(Seen {
                version: head.version,
                method: head.method,
                path: head.uri.path().to_owned(),
                error,
            });
        }
    });
    (service, rx)
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the handler ended within 5 s")
        .unwrap()
}

/// Sends a close frame and expects the server's reply, then END_STREAM.
async fn close_cleanly(ws: &mut H2Ws, code: u16) {
    ws.send_frame(true, 0x8, &code.to_be_bytes());
    let reply = ws.recv().await.expect("a close reply");
    assert_eq!(reply.close_code(), Some(code));
    // RFC 8441 §6: after the closing handshake the stream ends (END_STREAM).
    assert!(ws.recv().await.is_none(), "no frame after the close reply");
    assert!(ws.recv.is_end_stream(), "the server ended the stream");
    // The server waits for our END_STREAM instead of resetting the stream
    // under the last frames (an RST_STREAM would reach us meanwhile).
    tokio::time::sleep(Duration::from_millis(100)).await;
    ws.send
        .send_data(bytes::Bytes::new(), true)
        .expect("the stream is still open for our END_STREAM, not reset");
}

#[tokio::test]
async fn an_extended_connect_is_answered_200_and_echoes() {
    let (service, mut seen) = reporting_echo();
    let server = start(service, |s| s).await;
    let mut h2 = http2::connect(server.addr).await;
    assert!(
        h2.is_extended_connect_protocol_enabled(),
        "RFC 8441 §3: the server sends SETTINGS_ENABLE_CONNECT_PROTOCOL = 1"
    );
    let mut req = websocket_request("/chat?room=1");
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let opened = open(&mut h2, req).await;
    assert_eq!(opened.status, StatusCode::OK);
    let h = &opened.headers;
    assert!(
        h["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate"),
        "{h:?}"
    );
    for absent in ["sec-websocket-accept", "upgrade", "connection"] {
        assert!(!h.contains_key(absent), "{absent} in {h:?}");
    }
    let mut ws = opened.ws.unwrap();
    ws.assert_echo("hello over HTTP/2").await;
    let big = vec![7u8; 200_000];
    ws.send_frame(true, 0x2, &big);
    let echo = ws.recv().await.unwrap();
    // permessage-deflate is in effect: 200 kB of one byte come back as a
    // few hundred compressed ones (RSV1 set, RFC 7692 §6).
    assert_eq!((echo.opcode, echo.rsv), (0x2, 0b100));
    assert!(echo.payload.len() < 1000, "{} bytes", echo.payload.len());
    ws.send_frame(true, 0x9, b"ping!");
    let pong = ws.recv().await.unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"ping!"[..]));
    close_cleanly(&mut ws, 1000).await;

    let seen = next_seen(&mut seen).await;
    assert_eq!(
        seen.version,
        Version::HTTP_2,
        "RequestHead tells the version"
    );
    assert_eq!(seen.method, http::Method::CONNECT);
    assert_eq!(seen.path, "/chat");
    assert_eq!(seen.error, None, "a clean close is no error");
}

#[tokio::test]
async fn the_same_port_serves_http1_upgrades_and_plain_requests() {
    let (service, mut seen) = reporting_echo();
    let server = start(service, |s| s).await;
    let (mut raw, head) = RawClient::connect(server.addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send(true, 0, 0x1, b"over HTTP/1.1").await;
    assert_eq!(raw.recv().await.unwrap().payload, b"over HTTP/1.1");
    raw.send(true, 0, 0x8, &1000u16.to_be_bytes()).await;
    assert_eq!(raw.recv().await.unwrap().close_code(), Some(1000));
    assert_eq!(next_seen(&mut seen).await.version, Version::HTTP_11);

    // An ordinary HTTP/2 request goes to the inner service.
    let h2 = http2::connect(server.addr).await;
    let mut ready = h2.ready().await.unwrap();
    let req = http::Request::get("http://localhost/").body(()).unwrap();
    let (response, _) = ready.send_request(req, true).unwrap();
    let mut response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.body_mut().data().await.unwrap().unwrap();
    assert_eq!(&body[..], b"hello from the inner service");
}

#[tokio::test]
async fn a_hundred_websockets_on_one_connection_echo_concurrently() {
    let server = start(WebSocketService::new(echo), |s| s).await;
    let h2 = http2::connect(server.addr).await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(open_ws(&mut h2.clone(), "/").await);
    }
    // Every stream sends before any reads: the echoes interleave.
    for round in 0..5 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            ws.send_text(&format!("stream {i} round {round}"));
        }
        let echoes = futures_util::future::join_all(sockets.iter_mut().map(|ws| ws.recv())).await;
        for (i, echo) in echoes.into_iter().enumerate() {
            assert_eq!(
                echo.unwrap().payload,
                format!("stream {i} round {round}").as_bytes()
            );
        }
    }
    // Reset one, close another: the rest go on.
    let mut reset = sockets.remove(10);
    reset.send.send_reset(h2::Reason::CANCEL);
    let mut closed = sockets.remove(20);
    close_cleanly(&mut closed, 1000).await;
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.assert_echo(&format!("after the reset, {i}")).await;
    }
}

#[tokio::test]
async fn a_reset_stream_ends_the_handler_with_an_error_and_spares_the_connection() {
    let (service, mut seen) = reporting_echo();
    let server = start(service, |s| s).await;
    let h2 = http2::connect(server.addr).await;
    let mut doomed = open_ws(&mut h2.clone(), "/").await;
    let mut other = open_ws(&mut h2.clone(), "/").await;
    doomed.assert_echo("before").await;
    // Mid-message: a fragment, then RST_STREAM, like a TCP reset mid-frame.
    doomed.send_frame(false, 0x1, b"half of a mess");
    doomed.send.send_reset(h2::Reason::CANCEL);
    let seen = next_seen(&mut seen).await;
    assert!(
        seen.error.is_some(),
        "an aborted stream is an error for the application, not a clean close"
    );
    other.assert_echo("the connection is fine").await;
    let mut third = open_ws(&mut h2.clone(), "/").await;
    third.assert_echo("and takes new streams").await;
}

/// A handler that sends 64 KiB messages until its `send` blocks, reporting
/// how many bytes it got into the WebSocket.
/// Sends messages of `size` bytes until one takes longer than 500 ms;
/// the bytes of those sent.
async fn send_until_blocked(ws: &mut UpgradedWebSocket, size: usize) -> usize {
    let chunk = bytes::Bytes::from(vec![b'x'; size]);
    let mut sent = 0;
    loop {
        let send = ws.send(Message::binary(chunk.clone()));
        match tokio::time::timeout(Duration::from_millis(500), send).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => return sent,
        }
    }
}

fn flooding_service() -> (
    WebSocketService<impl tower_ws::UpgradeHandler>,
    mpsc::UnboundedReceiver<usize>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, head: RequestHead| {
        let tx = tx.clone();
        async move {
            if head.uri.path() != "/flood" {
                return echo(ws, head).await;
            }
            let sent = send_until_blocked(&mut ws, 64 << 10).await;
            let _ = tx.send(sent);
            // Keep the stream open, unread, while the test checks the others.
            let _ = ws.next().await;
        }
    });
    (service, rx)
}

#[tokio::test]
async fn a_stream_whose_reader_stalls_blocks_only_its_own_sender() {
    let (service, mut flooded) = flooding_service();
    let server = start(service, |s| s).await;
    let h2 = http2::connect(server.addr).await;
    // The client never reads this stream: its window (64 KiB, h2's default)
    // fills, and the server's send must wait, with bounded buffers.
    let _stalled = open_ws(&mut h2.clone(), "/flood").await;
    let sent = tokio::time::timeout(Duration::from_secs(10), flooded.recv())
        .await
        .expect("the flooding handler blocks")
        .unwrap();
    assert!(
        sent < 2 << 20,
        "{sent} bytes went into a stream whose reader stalled"
    );
    // The other streams of the connection are unaffected.
    let mut others = Vec::new();
    for i in 0..5 {
        let mut ws = open_ws(&mut h2.clone(), "/").await;
        ws.assert_echo(&format!("not stalled {i}")).await;
        others.push(ws);
    }
    let big = vec![1u8; 300_000];
    others[0].send_frame(true, 0x2, &big);
    assert_eq!(others[0].recv().await.unwrap().payload.len(), big.len());
}

/// Large messages to a stream whose reader stalled stay in the WebSocket's
/// own queue (bounded, counted in `buffered_bytes` and the memory budget),
/// not in hyper's HTTP/2 send buffers, which take any write whole.
#[tokio::test]
async fn large_messages_to_a_stalled_stream_stay_in_the_websockets_queue() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            let sent = send_until_blocked(&mut ws, 4 << 20).await;
            let _ = tx.send((sent, ws.buffered_amount()));
            let _ = ws.next().await;
        }
    });
    let stats = service.clone();
    let server = start(service, |s| s).await;
    let h2 = http2::connect(server.addr).await;
    let _stalled = open_ws(&mut h2.clone(), "/").await;
    let (sent, queued) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the sender blocks")
        .unwrap();
    // The first 4 MiB message is taken (the write high-water mark is
    // below it) and waits, all but the stream's 64 KiB window and what
    // hyper holds, in the WebSocket.
    assert!(sent <= 4 << 20, "{sent} bytes went into a stalled stream");
    assert!(queued >= (4 << 20) - (256 << 10), "only {queued} B queued");
    let buffered = stats.stats().buffered_bytes;
    assert!(
        buffered >= (4 << 20) - (256 << 10),
        "the service counts {buffered} B buffered"
    );
}

/// A peer that stops reading its HTTP/2 stream cannot hold a closing
/// WebSocket open past the close timeout: hyper's stream ends only once
/// it has sent what it took, which needs the peer's flow-control credit.
#[tokio::test]
async fn a_stream_that_stops_reading_cannot_hold_a_close_past_the_close_timeout() {
    for server_closes in [false, true] {
        let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
        let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
            let tx = tx.clone();
            async move {
                // More than the client's 64 KiB stream window.
                let big = Message::binary(vec![0u8; 70 << 10]);
                let _ = tokio::time::timeout(Duration::from_millis(300), ws.send(big)).await;
                let _ = tx.send("sent");
                if server_closes {
                    let _ = ws.close(tower_ws::CloseCode::NORMAL, "bye").await;
                } else {
                    while ws.next().await.is_some() {}
                }
                let _ = tx.send("ended");
            }
        })
        .config(tower_ws::Config::default().close_timeout(Duration::from_millis(500)));
        let server = start(service, |s| s).await;
        let h2 = http2::connect(server.addr).await;
        let mut ws = open_ws(&mut h2.clone(), "/").await;
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(first.unwrap(), Some("sent"));
        if !server_closes {
            // The client reads nothing, and starts the closing handshake.
            ws.send_frame(true, 0x8, &1000u16.to_be_bytes());
        }
        let ended = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(
            ended.ok().flatten(),
            Some("ended"),
            "server closes: {server_closes}; still closing 5 s later, with a 500 ms close timeout"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_closes_http1_and_http2_websockets_with_1001() {
    let (service, mut seen) = reporting_echo();
    let mut server = start(service, |s| s.shutdown_deadline(Duration::from_secs(5))).await;
    let h2 = http2::connect(server.addr).await;
    let mut over_h2 = open_ws(&mut h2.clone(), "/").await;
    over_h2.assert_echo("before the shutdown").await;
    let (mut over_h1, _) = RawClient::connect(server.addr, "").await;

    let stopping = tokio::spawn(async move { server.stop().await });
    let close = over_h2.recv().await.expect("a close frame over HTTP/2");
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(&close.payload[2..], b"server shutting down");
    over_h2.send_frame(true, 0x8, &1001u16.to_be_bytes());
    assert!(over_h2.recv().await.is_none(), "END_STREAM after the reply");

    let close = over_h1.recv().await.expect("a close frame over HTTP/1.1");
    assert_eq!(close.close_code(), Some(1001));
    over_h1.send(true, 0, 0x8, &1001u16.to_be_bytes()).await;
    assert!(over_h1.expect_eof().await);

    let took = stopping.await.unwrap();
    assert!(
        took < Duration::from_secs(4),
        "serve returned once both WebSockets closed, not at the deadline ({took:?})"
    );
    for _ in 0..2 {
        let seen = next_seen(&mut seen).await;
        assert_eq!(seen.error, None, "{seen:?}: a 1001 close is a clean close");
    }
}

#[tokio::test]
async fn graceful_shutdown_gives_up_on_a_peer_that_never_answers() {
    let mut server = start(WebSocketService::new(echo), |s| {
        s.shutdown_deadline(Duration::from_millis(1500))
    })
    .await;
    let h2 = http2::connect(server.addr).await;
    let _silent_h2 = open_ws(&mut h2.clone(), "/").await;
    let (_silent_h1, _) = RawClient::connect(server.addr, "").await;
    let took = server.stop().await;
    assert!(
        took < Duration::from_secs(3),
        "serve returns by its deadline ({took:?})"
    );
}

#[tokio::test]
async fn a_sink_only_websocket_gets_its_1001_too() {
    // The handler only writes: the shutdown reaches it through `send`.
    let (tx, mut errors) = mpsc::unbounded_channel();
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Err(e) = ws.send(Message::text("tick")).await {
                    let _ = tx.send(e.is_closed());
                    return;
                }
            }
        }
    });
    let mut server = start(service, |s| s.shutdown_deadline(Duration::from_secs(3))).await;
    let h2 = http2::connect(server.addr).await;
    let mut ws = open_ws(&mut h2.clone(), "/").await;
    assert_eq!(ws.recv().await.unwrap().payload, b"tick");
    let stopping = tokio::spawn(async move { server.stop().await });
    let close = loop {
        let frame = ws.recv().await.expect("a close frame");
        if frame.opcode == 0x8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(
        errors.recv().await,
        Some(true),
        "send reports a closed WebSocket"
    );
    stopping.await.unwrap();
}
