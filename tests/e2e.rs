//! End to end over real TCP: the echo service against tokio-tungstenite (a
//! client we do not write) and against a raw client sending what real
//! clients won't.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::{RawClient, echo, masked_frame, serve, upgrade_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCode;
use tokio_tungstenite::tungstenite::{Message as TMessage, protocol::CloseFrame as TCloseFrame};
use tower_ws::{CloseCode, Config, Message, RequestHead, UpgradedWebSocket, WebSocketService};

async fn tungstenite(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, response) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/echo"),
        Some(config),
        false,
    )
    .await
    .expect("handshake with tower-ws");
    assert_eq!(response.status(), 101);
    ws
}

#[tokio::test]
async fn echoes_text_binary_and_boundary_sizes_to_tungstenite() {
    let addr = serve(WebSocketService::new(echo)).await;
    let mut ws = tungstenite(addr).await;
    for size in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        ws.send(TMessage::binary(data.clone())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::binary(data),
            "size {size}"
        );
        let text = "é".repeat(size / 2);
        ws.send(TMessage::text(text.clone())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::text(text),
            "text size {size}"
        );
    }
}

#[tokio::test]
async fn echoes_a_16_mib_message() {
    let addr = serve(WebSocketService::new(echo)).await;
    let mut ws = tungstenite(addr).await;
    let data: Vec<u8> = (0..16 << 20).map(|i: usize| (i % 253) as u8).collect();
    ws.send(TMessage::binary(data.clone())).await.unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got.into_data().len(), data.len());
}

#[tokio::test]
async fn answers_ping_with_same_payload() {
    let addr = serve(WebSocketService::new(echo)).await;
    let mut ws = tungstenite(addr).await;
    ws.send(TMessage::Ping(bytes::Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        TMessage::Pong(bytes::Bytes::from_static(b"are you there"))
    );
}

#[tokio::test]
async fn client_close_gets_its_code_echoed_and_tcp_closed() {
    let addr = serve(WebSocketService::new(echo)).await;
    let mut ws = tungstenite(addr).await;
    ws.close(Some(TCloseFrame {
        code: TCode::from(4000),
        reason: "done".into(),
    }))
    .await
    .unwrap();
    match ws.next().await {
        Some(Ok(TMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4000),
        other => panic!("expected the close reply, got {other:?}"),
    }
    assert!(
        ws.next().await.is_none(),
        "server closes TCP after the handshake"
    );
}

#[tokio::test]
async fn server_close_sends_code_and_reason() {
    let service = WebSocketService::new(|mut ws: UpgradedWebSocket, _: RequestHead| async move {
        let _ = ws.next().await;
        ws.close(CloseCode::from(4001), "bye now").await.unwrap();
    });
    let addr = serve(service).await;
    let mut ws = tungstenite(addr).await;
    ws.send(TMessage::text("close me")).await.unwrap();
    match ws.next().await {
        Some(Ok(TMessage::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye now");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn close_times_out_when_the_peer_never_answers() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            let start = std::time::Instant::now();
            let result = ws.close(CloseCode::NORMAL, "").await;
            let _ = tx
                .lock()
                .unwrap()
                .take()
                .unwrap()
                .send((result, start.elapsed()));
        }
    })
    .config(Config::default().close_timeout(Duration::from_millis(300)));
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let close = raw.recv().await.expect("close frame");
    assert_eq!(close.close_code(), Some(1000));
    let (result, elapsed) = rx.await.unwrap();
    assert!(result.unwrap_err().is_timeout());
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(raw.expect_eof().await, "TCP is dropped after the timeout");
}

#[tokio::test]
async fn reassembles_fragments_with_pings_in_between() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, head) = RawClient::connect(addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send(false, 0, 0x1, b"Hel").await;
    raw.send(true, 0, 0x9, b"p1").await;
    raw.send(false, 0, 0x0, b"lo, ").await;
    raw.send(true, 0, 0x9, b"p2").await;
    raw.send(true, 0, 0x0, b"world").await;
    let pong1 = raw.recv().await.unwrap();
    assert_eq!((pong1.opcode, pong1.payload.as_slice()), (0xA, &b"p1"[..]));
    let pong2 = raw.recv().await.unwrap();
    assert_eq!((pong2.opcode, pong2.payload.as_slice()), (0xA, &b"p2"[..]));
    let text = raw.recv().await.unwrap();
    assert_eq!(
        (text.opcode, text.fin, text.payload.as_slice()),
        (0x1, true, &b"Hello, world"[..])
    );
}

#[tokio::test]
async fn protocol_violation_gets_1002_and_others_keep_being_served() {
    let addr = serve(WebSocketService::new(echo)).await;
    let mut healthy = tungstenite(addr).await;

    let (mut raw, _) = RawClient::connect(addr, "").await;
    // An unmasked frame from a client (RFC 6455 §5.1).
    raw.send_raw(&[0x81, 0x02, b'h', b'i']).await;
    let close = raw.recv().await.expect("a close frame");
    assert_eq!(close.close_code(), Some(1002));
    assert!(raw.expect_eof().await);

    let (mut raw, _) = RawClient::connect(addr, "").await;
    raw.send(
        true,
        0,
        0x1,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
    )
    .await;
    assert_eq!(raw.recv().await.unwrap().close_code(), Some(1007));

    healthy.send(TMessage::text("still here")).await.unwrap();
    assert_eq!(
        healthy.next().await.unwrap().unwrap(),
        TMessage::text("still here")
    );
}

#[tokio::test]
async fn message_then_violation_in_one_segment_echoes_before_closing() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let mut segment = masked_frame(true, 0, 0x1, b"first");
    segment.extend_from_slice(&masked_frame(true, 0, 0x3, b"")); // reserved opcode
    raw.send_raw(&segment).await;
    let echo = raw.recv().await.unwrap();
    assert_eq!(echo.payload, b"first");
    assert_eq!(raw.recv().await.unwrap().close_code(), Some(1002));
}

#[tokio::test]
async fn pipelined_first_frame_is_not_lost() {
    let addr = serve(WebSocketService::new(echo)).await;
    let frame = masked_frame(true, 0, 0x1, b"right behind the handshake");
    let (mut raw, head) = RawClient::connect_with(addr, &upgrade_request("/", ""), &frame).await;
    assert!(head.starts_with("HTTP/1.1 101"));
    assert_eq!(
        raw.recv().await.unwrap().payload,
        b"right behind the handshake"
    );
}

#[tokio::test]
async fn same_port_serves_plain_http_and_websocket() {
    let addr = serve(WebSocketService::new(echo)).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello from the inner service"));

    let mut ws = tungstenite(addr).await;
    ws.send(TMessage::text("ws too")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("ws too"));
}

#[tokio::test]
async fn broken_upgrade_gets_an_http_error_over_tcp() {
    let addr = serve(WebSocketService::new(echo)).await;
    let request = upgrade_request("/", "").replace("GET", "POST");
    let (_raw, head) = RawClient::connect_with(addr, &request, &[]).await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(head.to_ascii_lowercase().contains("allow: get"));
    let request = upgrade_request("/", "").replace("Version: 13", "Version: 8");
    let (_raw, head) = RawClient::connect_with(addr, &request, &[]).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
}

#[tokio::test]
async fn write_half_alone_answers_pings() {
    let service = WebSocketService::new(|ws: UpgradedWebSocket, _: RequestHead| async move {
        let (_reader, mut writer) = ws.split();
        // Only ever write: the writer reads ahead to answer pings.
        for i in 0..100 {
            if writer
                .send(Message::text(format!("tick {i}")))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    raw.send(true, 0, 0x9, b"ping!").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pong while the app only writes"
        );
        let frame = raw.recv().await.unwrap();
        if frame.opcode == 0xA {
            assert_eq!(frame.payload, b"ping!");
            break;
        }
    }
}

#[tokio::test]
async fn read_half_alone_sends_pongs_and_close_reply() {
    let service = WebSocketService::new(|ws: UpgradedWebSocket, _: RequestHead| async move {
        let (mut reader, _writer) = ws.split();
        while let Some(Ok(_)) = reader.next().await {}
    });
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    raw.send(true, 0, 0x9, b"x").await;
    assert_eq!(raw.recv().await.unwrap().opcode, 0xA);
    raw.send(true, 0, 0x8, &[0x0f, 0xa0]).await; // 4000
    assert_eq!(raw.recv().await.unwrap().close_code(), Some(4000));
    assert!(raw.expect_eof().await);
}

#[tokio::test]
async fn reads_are_cancel_safe_in_select() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            loop {
                tokio::select! {
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Binary(data))) => { let _ = tx.send(data); }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = ticks.tick() => {}
                }
            }
        }
    });
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
    let frame = masked_frame(true, 0, 0x2, &data);
    // Trickle the frame in pieces so reads are interrupted by the ticker.
    for piece in frame.chunks(7_000) {
        raw.send_raw(piece).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], &data[..]);
}
