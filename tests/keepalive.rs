//! Keepalive pings and the idle timeout of the plain `Stream`/`Sink`
//! WebSocket (and of both halves after a split), over real TCP.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{RawClient, serve};
use tokio::sync::mpsc;
use tower_ws::{Config, Message, RequestHead, UpgradedWebSocket, WebSocketService};

const INTERVAL: Duration = Duration::from_millis(200);
const PONG_TIMEOUT: Duration = Duration::from_millis(200);
/// The server's timers start before the client has read the 101, so a
/// client's clock may start this much late.
const CLOCK_SLACK: Duration = Duration::from_millis(50);

fn keepalive() -> Config {
    Config::default()
        .deflate(None)
        .ping_interval(Some(INTERVAL))
        .pong_timeout(PONG_TIMEOUT)
}

/// What a handler saw, sent to the test.
#[derive(Debug)]
enum Seen {
    KeepaliveTimeout,
    IdleTimeout,
    Close,
    End,
    Other(String),
}

fn report(result: Option<Result<Message, tower_ws::Error>>) -> Seen {
    match result {
        None => Seen::End,
        Some(Ok(Message::Close(_))) => Seen::Close,
        Some(Ok(m)) => Seen::Other(format!("{m:?}")),
        Some(Err(e)) if e.is_keepalive_timeout() => Seen::KeepaliveTimeout,
        Some(Err(e)) if e.is_idle_timeout() => Seen::IdleTimeout,
        Some(Err(e)) => Seen::Other(e.to_string()),
    }
}

/// A handler that reads until the stream ends, reporting every item that
/// is not a ping or pong.
fn reading_service(
    config: Config,
) -> (
    WebSocketService<impl tower_ws::UpgradeHandler>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            loop {
                let item = ws.next().await;
                if matches!(item, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
                    continue;
                }
                let end = item.is_none();
                let _ = tx.send(report(item));
                if end {
                    return;
                }
            }
        }
    };
    (WebSocketService::new(handler).config(config), rx)
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the handler reports in time")
        .expect("the handler is alive")
}

#[tokio::test]
async fn a_silent_peer_is_pinged_then_failed_with_1011() {
    let (service, mut rx) = reading_service(keepalive());
    let probe = service.clone();
    let addr = serve(service).await;
    let (mut silent, _) = RawClient::connect(addr, "").await;
    let started = Instant::now();
    let ping = silent.recv().await.expect("a keepalive ping");
    assert_eq!(ping.opcode, 0x9);
    assert_eq!(ping.payload, b"tower-ws keepalive");
    let close = silent.recv().await.expect("then a close frame");
    assert_eq!(close.close_code(), Some(1011));
    assert_eq!(&close.payload[2..], b"keepalive ping timeout");
    let took = started.elapsed();
    assert!(took >= INTERVAL + PONG_TIMEOUT - CLOCK_SLACK, "{took:?}");
    assert!(silent.expect_eof().await, "and the connection is dropped");
    assert!(matches!(seen(&mut rx).await, Seen::KeepaliveTimeout));
    assert!(matches!(seen(&mut rx).await, Seen::End));
    let stats = probe.stats();
    assert_eq!(stats.keepalive_timeouts, 1);
    assert_eq!(stats.close_codes_sent.get(1011), 1);
}

#[tokio::test]
async fn an_answering_peer_stays_connected() {
    // Room for a stall of a loaded machine (client and server share this
    // thread). A ping goes out every 500 ms: the next one follows the pong
    // timeout of the last.
    let config = keepalive().pong_timeout(Duration::from_millis(500));
    let (service, mut rx) = reading_service(config);
    let addr = serve(service).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    let until = Instant::now() + Duration::from_secs(2);
    let mut pings = 0;
    while Instant::now() < until {
        let frame = peer.recv().await.expect("pings keep coming");
        assert_eq!(frame.opcode, 0x9, "only pings: {frame:?}");
        pings += 1;
        peer.send(true, 0, 0xA, &frame.payload).await;
    }
    assert!(pings >= 3, "{pings} pings");
    assert!(rx.try_recv().is_err(), "the handler saw nothing but pongs");
}

/// A task that only sends, on the unsplit WebSocket, never waits in
/// `next()`: the pongs wait unread in the socket. At each pong deadline the
/// connection reads what is there before it judges the peer.
#[tokio::test]
async fn a_task_that_only_sends_keeps_an_answering_peer() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            for i in 0..40 {
                if let Err(e) = ws.send(Message::text(format!("tick {i}"))).await {
                    let _ = tx.send(Some(e));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = tx.send(None);
        }
    };
    // Room for a stall of a loaded machine in answering.
    let config = keepalive().pong_timeout(Duration::from_millis(500));
    let addr = serve(WebSocketService::new(handler).config(config)).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    let (mut ticks, mut pings) = (0, 0);
    while ticks < 40 {
        let frame = peer.recv().await.expect("ticks and pings, no close");
        match frame.opcode {
            0x1 => ticks += 1,
            0x9 => {
                pings += 1;
                peer.send(true, 0, 0xA, &frame.payload).await;
            }
            op => panic!("unexpected opcode {op:#x}: {frame:?}"),
        }
    }
    // 2 s of sending: a ping every 500 ms (the next ping follows the pong
    // timeout of the last).
    assert!(pings >= 2, "{pings} pings");
    let outcome = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_none(), "the sender failed: {outcome:?}");
}

/// A task that only sends, whose peer filled the messages kept for it and
/// then went silent: reading stops there, and the peer is still failed.
#[tokio::test]
async fn a_task_that_only_sends_still_fails_a_peer_that_went_silent() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            for i in 0..200 {
                if let Err(e) = ws.send(Message::text(format!("tick {i}"))).await {
                    let _ = tx.send(Some(e.is_keepalive_timeout()));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = tx.send(None);
        }
    };
    let config = keepalive().max_pending_events(16);
    let addr = serve(WebSocketService::new(handler).config(config)).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    for i in 0..40 {
        peer.send(true, 0, 0x1, format!("unread {i}").as_bytes())
            .await;
    }
    // Reads what comes, answers nothing.
    let reader = tokio::spawn(async move { while peer.recv().await.is_some() {} });
    let outcome = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the sender ends within 5 s")
        .unwrap();
    assert_eq!(outcome, Some(true), "a keepalive timeout");
    reader.abort();
}

/// An application busy elsewhere for longer than the pong timeout, between
/// two reads: the pong that came meanwhile counts.
#[tokio::test]
async fn a_pong_that_came_while_the_application_was_busy_counts() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            // Waits in `next()` until the ping is out (at 200 ms), then is
            // busy for 600 ms without polling the WebSocket: the pong
            // deadline (400 ms) passes meanwhile.
            let waiting = tokio::time::timeout(INTERVAL + INTERVAL / 2, ws.next()).await;
            assert!(waiting.is_err(), "nothing to read yet: {waiting:?}");
            tokio::time::sleep(3 * PONG_TIMEOUT).await;
            loop {
                let item = ws.next().await;
                if !matches!(item, Some(Ok(Message::Pong(_)))) {
                    let _ = tx.send(report(item));
                    return;
                }
            }
        }
    };
    let addr = serve(WebSocketService::new(handler).config(keepalive())).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    let ping = peer.recv().await.expect("a keepalive ping");
    assert_eq!(ping.opcode, 0x9);
    // Answered while the application is busy (it resumes 600 ms after the
    // ping).
    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.send(true, 0, 0xA, &ping.payload).await;
    peer.send(true, 0, 0x1, b"after the pong").await;
    match seen(&mut rx).await {
        Seen::Other(m) => assert!(m.contains("after the pong"), "{m}"),
        other => panic!("the busy application got {other:?}"),
    }
}

/// What an application busy past the idle deadline (300 ms) gets from
/// `next()` when the peer sent a frame in time, while it was busy: it
/// arms the idle timer, is busy for 900 ms, and reads again.
async fn after_a_busy_spell(opcode: u8, payload: &[u8]) -> Seen {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            let waiting = tokio::time::timeout(Duration::from_millis(100), ws.next()).await;
            assert!(waiting.is_err(), "nothing to read yet: {waiting:?}");
            tokio::time::sleep(Duration::from_millis(900)).await;
            let _ = tx.send(report(ws.next().await));
        }
    };
    let config = Config::default()
        .deflate(None)
        .idle_timeout(Some(Duration::from_millis(300)));
    let addr = serve(WebSocketService::new(handler).config(config)).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    peer.send(true, 0, opcode, payload).await;
    seen(&mut rx).await
}

/// The same for the idle timeout: a message that came while the
/// application was busy past the idle deadline is activity.
#[tokio::test]
async fn a_message_that_came_while_the_application_was_busy_counts_as_activity() {
    match after_a_busy_spell(0x1, b"sent in time").await {
        Seen::Other(m) => assert!(m.contains("sent in time"), "{m}"),
        other => panic!("the busy application got {other:?}"),
    }
}

/// A message larger than one read, or a close frame, that came while the
/// application was busy past the idle deadline: read whole before judging.
#[tokio::test]
async fn a_large_message_or_a_close_that_came_while_busy_is_not_idleness() {
    match after_a_busy_spell(0x2, &[7u8; 100_000]).await {
        Seen::Other(m) => assert!(m.starts_with("Binary"), "{m}"),
        other => panic!("a large message: the busy application got {other:?}"),
    }
    match after_a_busy_spell(0x8, &1000u16.to_be_bytes()).await {
        Seen::Close => {}
        other => panic!("a close: the busy application got {other:?}"),
    }
}

#[tokio::test]
async fn the_idle_timeout_closes_with_1001_and_finishes_the_handshake() {
    let config = Config::default()
        .deflate(None)
        .idle_timeout(Some(Duration::from_millis(300)));
    let (service, mut rx) = reading_service(config);
    let probe = service.clone();
    let addr = serve(service).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    let started = Instant::now();
    // Pings are not activity.
    peer.send(true, 0, 0x9, b"still here").await;
    assert_eq!(peer.recv().await.unwrap().opcode, 0xA);
    let close = peer.recv().await.expect("a close frame");
    assert_eq!(close.close_code(), Some(1001));
    assert_eq!(&close.payload[2..], b"idle timeout");
    assert!(started.elapsed() >= Duration::from_millis(300) - CLOCK_SLACK);
    assert!(matches!(seen(&mut rx).await, Seen::IdleTimeout));
    // The peer answers; the handler sees the rest of the closing handshake.
    peer.send(true, 0, 0x8, &1001u16.to_be_bytes()).await;
    assert!(matches!(seen(&mut rx).await, Seen::Close));
    assert!(matches!(seen(&mut rx).await, Seen::End));
    assert!(peer.expect_eof().await);
    assert_eq!(probe.stats().idle_timeouts, 1);
}

#[tokio::test]
async fn messages_keep_an_idle_timer_from_firing() {
    let config = Config::default()
        .deflate(None)
        .idle_timeout(Some(Duration::from_secs(1)));
    let (service, mut rx) = reading_service(config);
    let addr = serve(service).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    // 2.5 s of messages 100 ms apart: well past the idle timeout, with
    // room for a late send on a loaded machine.
    for _ in 0..25 {
        peer.send(true, 0, 0x1, b"tick").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..25 {
        assert!(matches!(seen(&mut rx).await, Seen::Other(m) if m.contains("tick")));
    }
    assert!(rx.try_recv().is_err(), "not closed while talking");
}

#[tokio::test]
async fn a_split_reader_waiting_for_input_keeps_the_connection_alive() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            let (mut reader, _writer) = ws.split();
            // Only the reader is polled.
            let item = reader.next().await;
            let _ = tx.send(report(item));
        }
    };
    let addr = serve(WebSocketService::new(handler).config(keepalive())).await;
    let (mut silent, _) = RawClient::connect(addr, "").await;
    assert_eq!(silent.recv().await.unwrap().opcode, 0x9);
    assert_eq!(silent.recv().await.unwrap().close_code(), Some(1011));
    assert!(matches!(seen(&mut rx).await, Seen::KeepaliveTimeout));
}

#[tokio::test]
async fn a_split_writer_blocked_on_a_dead_peer_gets_the_keepalive_timeout() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = move |ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            // The reader is kept but never polled: the writer runs keepalive.
            let (_reader, mut writer) = ws.split();
            let chunk = Message::binary(vec![0u8; 64 << 10]);
            let started = Instant::now();
            loop {
                if let Err(e) = writer.send(chunk.clone()).await {
                    let _ = tx.send((e.is_keepalive_timeout(), started.elapsed()));
                    return;
                }
            }
        }
    };
    let addr = serve(WebSocketService::new(handler).config(keepalive())).await;
    // Never reads: the server's sends block once the socket buffers fill.
    let (_dead, _) = RawClient::connect(addr, "").await;
    let (keepalive_timeout, took) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the writer gives up")
        .unwrap();
    assert!(keepalive_timeout, "the error says why");
    assert!(took >= INTERVAL + PONG_TIMEOUT - CLOCK_SLACK, "{took:?}");
}

#[tokio::test]
async fn keepalive_is_off_by_default() {
    let (service, mut rx) = reading_service(Config::default());
    let addr = serve(service).await;
    let (mut peer, _) = RawClient::connect(addr, "").await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), peer.recv()).await;
    assert!(quiet.is_err(), "no ping unasked: {quiet:?}");
    assert!(rx.try_recv().is_err());
}
