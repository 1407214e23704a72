//! The examples as programs: each is started on a free port and spoken to
//! over real TCP. Plain `cargo test` builds the examples next to this test;
//! with a target filter (`cargo test --test examples`) run
//! `cargo build --examples` first.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// A running example; killed when dropped.
struct Example {
    _child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
}

/// `target/<profile>/examples/<name>`: this test runs from
/// `target/<profile>/deps/`, and `cargo test` builds the examples.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Starts an example on 127.0.0.1:0 and reads its URL from the first line.
async fn start(name: &str) -> Example {
    start_with(name, &[]).await
}

/// [`start`] with options after the address.
async fn start_with(name: &str, options: &[&str]) -> Example {
    let path = example_path(name);
    let mut child = Command::new(&path)
        .arg("127.0.0.1:0")
        .args(options)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (cargo build --examples): {e}",
                path.display()
            )
        });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    timeout(WAIT, stdout.read_line(&mut line))
        .await
        .expect("the example prints its URL")
        .unwrap();
    let start = line
        .find("://127.0.0.1:")
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr: String = line[start + "://".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    // Keep draining stdout so the example never blocks on a full pipe.
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink).await;
    });
    Example {
        _child: child,
        addr,
    }
}

/// A plain HTTP/1.1 GET; returns the status line and the body.
async fn get(addr: &str, path: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = msg {
            return text.to_string();
        }
    }
}

#[tokio::test]
async fn axum_example_serves_routes_and_a_websocket_sharing_state() {
    let example = start("axum").await;
    let (status, body) = get(&example.addr, "/").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("WebSockets at /ws"), "{body}");
    assert_eq!(get(&example.addr, "/stats").await.1, "messages: 0\n");

    let (mut ws, _) = connect_async(format!("ws://{}/ws", example.addr))
        .await
        .unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "#1: hello");
    ws.send(Message::text("again")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "#2: again");
    assert_eq!(get(&example.addr, "/stats").await.1, "messages: 2\n");

    // The extractor route: same state, axum's API.
    let (mut echo, _) = connect_async(format!("ws://{}/echo", example.addr))
        .await
        .unwrap();
    echo.send(Message::text("as is")).await.unwrap();
    assert_eq!(next_text(&mut echo).await, "as is");
    assert_eq!(get(&example.addr, "/stats").await.1, "messages: 3\n");
    // A plain GET on the extractor route is refused with axum's text.
    let (status, body) = get(&example.addr, "/echo").await;
    assert!(status.contains("426"), "{status}");
    assert_eq!(body, "`Upgrade` header did not include 'websocket'\n");
}

#[tokio::test]
async fn hyper_example_serves_a_route_and_a_websocket() {
    let example = start("hyper").await;
    let (status, body) = get(&example.addr, "/").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.starts_with("hello from hyper"), "{body}");
    assert!(get(&example.addr, "/nope").await.0.contains("404"));

    let (mut ws, _) = connect_async(format!("ws://{}/ws", example.addr))
        .await
        .unwrap();
    ws.send(Message::text("echo me")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "echo me");
}

#[tokio::test]
async fn demo_serves_the_page_and_the_chat() {
    let example = start("demo").await;
    let (status, body) = get(&example.addr, "/").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("<title>tower-ws chat</title>"));
    // Upgrades elsewhere than /ws go to the static files.
    assert!(get(&example.addr, "/missing.txt").await.0.contains("404"));
    // The page's icon is served (no 404 in the browser console).
    let (status, icon) = get(&example.addr, "/favicon.svg").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(icon.starts_with("<svg"), "{icon}");
    // The WebSocket URL opened as a page: 426 with a hint, not a 404.
    let (status, hint) = get(&example.addr, "/ws").await;
    assert_eq!(status, "HTTP/1.1 426 Upgrade Required");
    assert!(hint.contains("WebSocket endpoint"), "{hint}");

    let url = format!("ws://{}/ws", example.addr);
    let (mut alice, _) = connect_async(&url).await.unwrap();
    let welcome = next_text(&mut alice).await;
    assert!(welcome.starts_with(r#"{"type":"welcome""#), "{welcome}");
    // The welcome event tells the page which HTTP version carries it.
    assert!(welcome.contains(r#""http":"HTTP/1.1""#), "{welcome}");
    let (mut bob, _) = connect_async(&url).await.unwrap();
    assert!(
        next_text(&mut bob)
            .await
            .starts_with(r#"{"type":"welcome""#)
    );
    assert!(next_text(&mut alice).await.starts_with(r#"{"type":"join""#));

    alice.send(Message::text("hi \"bob\"")).await.unwrap();
    for ws in [&mut alice, &mut bob] {
        let event = next_text(ws).await;
        assert!(event.starts_with(r#"{"type":"message""#), "{event}");
        assert!(event.ends_with(r#""text":"hi \"bob\""}"#), "{event}");
    }
}

#[tokio::test]
async fn demo_serves_metrics_and_health_on_the_same_port() {
    let example = start("demo").await;
    assert_eq!(
        get(&example.addr, "/healthz").await,
        ("HTTP/1.1 200 OK".to_owned(), "ok\n".to_owned())
    );
    let url = format!("ws://{}/ws", example.addr);
    let (mut alice, _) = connect_async(&url).await.unwrap();
    next_text(&mut alice).await;
    alice.send(Message::text("counted")).await.unwrap();
    next_text(&mut alice).await;
    // The broadcast may reach alice before the connection that read her
    // message folds it into the counters: those are read as they stand.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (status, metrics) = loop {
        let (status, metrics) = get(&example.addr, "/metrics").await;
        if metrics.contains("tower_ws_messages_total{direction=\"in\"} 1")
            || tokio::time::Instant::now() > deadline
        {
            break (status, metrics);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, "HTTP/1.1 200 OK");
    for line in [
        "tower_ws_connections_open{http=\"1.1\"} 1",
        "tower_ws_handshakes_accepted_total 1",
        "tower_ws_memory_budget_bytes 268435456",
        "tower_ws_hub_clients 1",
        "# TYPE tower_ws_messages_total counter",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // The welcome and the broadcast went out; the message came in.
    assert!(
        metrics.contains("tower_ws_messages_total{direction=\"in\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ops_example_serves_the_feed_and_metrics() {
    let example = start("ops").await;
    assert_eq!(get(&example.addr, "/healthz").await.1, "ok\n");
    let (mut ws, _) = connect_async(format!("ws://{}/upload", example.addr))
        .await
        .unwrap();
    ws.send(Message::binary(vec![1u8; 8])).await.unwrap();
    // One word of 0x0101..01.
    assert_eq!(next_text(&mut ws).await, "ack 8 0101010101010101");
    let (_, metrics) = get(&example.addr, "/metrics").await;
    assert!(
        metrics.contains("tower_ws_memory_budget_bytes 268435456"),
        "{metrics}"
    );
}

#[tokio::test]
async fn callbacks_example_broadcasts_every_message() {
    let example = start("callbacks").await;
    let url = format!("ws://{}/", example.addr);
    let (mut a, _) = connect_async(&url).await.unwrap();
    let (mut b, _) = connect_async(&url).await.unwrap();
    both_registered(&mut a, &mut b).await;
    a.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    for ws in [&mut a, &mut b] {
        loop {
            match timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap() {
                Message::Binary(data) => {
                    assert_eq!(&data[..], [1, 2, 3]);
                    break;
                }
                Message::Text(t) => assert!(t.as_str().starts_with("ready? "), "{t}"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn client_example_talks_to_a_server_example() {
    let example = start("callbacks").await;
    let path = example_path("client");
    let mut client = Command::new(&path)
        .arg(format!("ws://{}/", example.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (cargo build --examples): {e}",
                path.display()
            )
        });
    let mut stdin = client.stdin.take().unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next = async || timeout(WAIT, lines.next_line()).await.unwrap().unwrap();
    let connected = next().await.unwrap();
    assert!(
        connected.starts_with("connected 101 permessage-deflate"),
        "{connected}"
    );
    // The callbacks example broadcasts to every client, the sender included.
    stdin.write_all(b"text hello\n").await.unwrap();
    assert_eq!(next().await.unwrap(), "text 5 a430d84680aabd0b");
    drop(stdin);
    assert_eq!(next().await.unwrap(), "close 1000 ");
    assert_eq!(next().await.unwrap(), "end");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Waits until a broadcast from `b` reaches `a`: both are registered.
/// Probes are numbered, and `a` reads up to the last one sent, so a probe
/// that arrived late is not left queued for the test to read.
async fn both_registered(a: &mut Ws, b: &mut Ws) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for n in 0.. {
        let probe = format!("ready? {n}");
        b.send(Message::text(probe.as_str())).await.unwrap();
        assert_eq!(next_text(b).await, probe);
        while let Ok(Some(Ok(Message::Text(t)))) =
            timeout(Duration::from_millis(100), a.next()).await
        {
            if t.as_str() == probe {
                return;
            }
            assert!(t.as_str().starts_with("ready? "), "{t}");
        }
        assert!(tokio::time::Instant::now() < deadline, "a never joined");
    }
}

#[tokio::test]
async fn demo_max_connections_refuses_websockets_beyond_it() {
    let example = start_with("demo", &["--max-connections", "1"]).await;
    let url = format!("ws://{}/ws", example.addr);
    let (mut alice, _) = connect_async(&url).await.unwrap();
    assert!(
        next_text(&mut alice)
            .await
            .starts_with(r#"{"type":"welcome""#)
    );
    match connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("a second WebSocket with --max-connections 1: {other:?}"),
    }
}

#[tokio::test]
async fn broadcast_example_room_reaches_every_client() {
    let example = start_with("broadcast", &["--room"]).await;
    let url = format!("ws://{}/", example.addr);
    let (mut a, _) = connect_async(&url).await.unwrap();
    let (mut b, _) = connect_async(&url).await.unwrap();
    both_registered(&mut a, &mut b).await;
    a.send(Message::text("to the room")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "to the room");
    assert_eq!(next_text(&mut b).await, "to the room");
}

/// The `Sec-WebSocket-Extensions` answer to an offer of permessage-deflate.
async fn deflate_answer(addr: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = BufReader::new(tcp);
    let mut answer = None;
    loop {
        let mut line = String::new();
        timeout(WAIT, head.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        if line.trim().is_empty() {
            return answer;
        }
        if let Some(v) = line
            .to_ascii_lowercase()
            .strip_prefix("sec-websocket-extensions:")
        {
            answer = Some(v.trim().to_owned());
        }
    }
}

#[tokio::test]
async fn broadcast_example_compresses_only_with_deflate_flag() {
    let plain = start("broadcast").await;
    assert_eq!(deflate_answer(&plain.addr).await, None);
    let deflate = start_with("broadcast", &["--deflate"]).await;
    let answer = deflate_answer(&deflate.addr)
        .await
        .expect("an extension answer");
    assert!(answer.starts_with("permessage-deflate"), "{answer}");
}
