//! `tower_ws::axum`, the drop-in for axum's `extract::ws`, in an axum 0.8
//! Router served by `axum::serve` over real TCP: extractors composed in one
//! handler, rejections (texts and statuses), subprotocols, permessage-deflate,
//! origins, closing, and split halves driven from two tasks.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use support::{RawClient, upgrade_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as TCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCode;
use tokio_tungstenite::tungstenite::{self, Message as TMessage};
use tower::ServiceExt;
use tower_ws::axum::rejection::WebSocketUpgradeRejection;
use tower_ws::axum::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};

const WAIT: Duration = Duration::from_secs(10);

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if let Message::Text(_) | Message::Binary(_) = msg {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    }
}

async fn echo_handler(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(echo)
}

#[derive(Clone, Default)]
struct Visitors(Arc<AtomicUsize>);

/// `State`, `Query` and the extractor in one signature; a subprotocol chosen
/// from the client's offers, and the handler's data carried into the socket.
async fn greeter(
    ws: WebSocketUpgrade,
    State(visitors): State<Visitors>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let n = visitors.0.fetch_add(1, Ordering::Relaxed) + 1;
    let name = query.get("name").cloned().unwrap_or_default();
    let offered: Vec<String> = ws
        .requested_protocols()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    let ws = ws.protocols(["chat.v2", "chat.v1"]);
    let selected = ws.selected_protocol().cloned();
    ws.on_upgrade(move |mut socket| async move {
        assert_eq!(socket.protocol(), selected.as_ref());
        let protocol = socket.protocol().map(|p| p.to_str().unwrap().to_owned());
        let greeting =
            format!("hello {name}, visitor #{n}, offered {offered:?}, speaking {protocol:?}");
        if socket.send(Message::text(greeting)).await.is_ok() {
            echo(socket).await;
        }
    })
}

fn app() -> Router {
    Router::new()
        .route("/echo", any(echo_handler))
        .route("/greet", get(greeter))
        .with_state(Visitors::default())
}

async fn tungstenite_connect(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tungstenite::handshake::client::Response,
) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<TMessage, tungstenite::Error>> + Unpin,
{
    loop {
        match timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(TMessage::Text(text))) => return text.to_string(),
            Some(Ok(TMessage::Binary(_))) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn extractor_composes_with_state_and_query_and_selects_a_subprotocol() {
    let addr = serve(app()).await;
    let (mut ws, response) =
        tungstenite_connect(addr, "/greet?name=ann", Some("chat.v1, chat.v2")).await;
    assert_eq!(response.status(), 101);
    // The server's preference wins among the client's offers (RFC 6455 §4.2.2).
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(
        next_text(&mut ws).await,
        r#"hello ann, visitor #1, offered ["chat.v1", "chat.v2"], speaking Some("chat.v2")"#
    );
    ws.send(TMessage::text("ping?")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "ping?");

    // No protocol in common: none is named (tungstenite would refuse that,
    // so a raw client).
    let (mut other, head) = RawClient::connect_with(
        addr,
        &upgrade_request("/greet?name=bo", "Sec-WebSocket-Protocol: other\r\n"),
        &[],
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"));
    let greeting = other.recv().await.expect("the greeting");
    assert_eq!(
        String::from_utf8(greeting.payload).unwrap(),
        r#"hello bo, visitor #2, offered ["other"], speaking None"#
    );
}

#[tokio::test]
async fn echoes_text_binary_and_answers_pings() {
    let addr = serve(app()).await;
    let (mut ws, _) = tungstenite_connect(addr, "/echo", None).await;
    for size in [0usize, 125, 126, 65536, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        ws.send(TMessage::binary(data.clone())).await.unwrap();
        let back = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(back, TMessage::binary(data), "size {size}");
    }
    ws.send(TMessage::Ping("are you there".into()))
        .await
        .unwrap();
    let pong = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, TMessage::Pong("are you there".into()));
}

/// Sends `request` over a fresh TCP connection; returns the status code,
/// the head and the body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // Error responses end with the connection closed (`Connection: close`
    // in the requests below).
    timeout(WAIT, tcp.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn rejections_carry_axum_texts_and_the_rfc_statuses_over_tcp() {
    let addr = serve(app()).await;
    let upgrade = |extra: &str| upgrade_request("/echo", &format!("Connection: close\r\n{extra}"));
    let cases = [
        (
            "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
            426,
            "`Upgrade` header did not include 'websocket'",
            "upgrade: websocket",
        ),
        (
            upgrade("").replacen("GET", "POST", 1),
            405,
            "Request method must be `GET`",
            "allow: get",
        ),
        (
            upgrade("").replace("Connection: Upgrade\r\n", "Connection: notupgrade\r\n"),
            400,
            "Connection header did not include 'upgrade'",
            "content-type: text/plain",
        ),
        (
            upgrade("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
            "`Sec-WebSocket-Version` header did not include '13'",
            "sec-websocket-version: 13",
        ),
        (
            upgrade("").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            "`Sec-WebSocket-Key` header missing",
            "content-type: text/plain",
        ),
        (
            upgrade("").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
            "content-type: text/plain",
        ),
    ];
    for (request, status, text, header) in cases {
        let (got_status, head, body) = http(addr, &request).await;
        assert_eq!((got_status, body.trim_end()), (status, text), "{request}");
        assert!(head.contains(header), "{header} missing in {head}");
    }
}

/// Runs `request` through the router in process (no hyper, so no upgrade
/// handle) and reports which rejection the handler saw.
async fn rejection_for(request: http::Request<Body>) -> String {
    async fn which(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
        // In a header: axum drops the body of a 2xx answer to CONNECT.
        let which = match ws {
            Ok(_) => "accepted".to_owned(),
            Err(rejection) => {
                let name = format!("{rejection:?}");
                let name = name.split('(').next().unwrap().to_owned();
                let (status, text) = (rejection.status(), rejection.body_text());
                let response = rejection.into_response();
                assert_eq!(response.status(), status);
                let body = axum::body::to_bytes(response.into_body(), 1024)
                    .await
                    .unwrap();
                assert_eq!(std::str::from_utf8(&body).unwrap().trim_end(), text);
                format!("{name} {}", status.as_u16())
            }
        };
        ([("x-which", which)], ()).into_response()
    }
    let app: Router = Router::new().route("/", any(which));
    let response = app.oneshot(request).await.unwrap();
    response.headers()["x-which"].to_str().unwrap().to_owned()
}

fn handshake() -> http::request::Builder {
    http::Request::get("/")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", support::KEY)
        .header("sec-websocket-version", "13")
}

#[tokio::test]
async fn each_defect_is_named_with_axums_rejection_type() {
    let body = Body::empty;
    let cases = [
        (
            http::Request::get("/").body(body()).unwrap(),
            "InvalidUpgradeHeader 426",
        ),
        (
            handshake().method("PUT").body(body()).unwrap(),
            "MethodNotGet 405",
        ),
        (
            http::Request::get("/")
                .header("host", "x")
                .header("upgrade", "websocket")
                .header("connection", "keep-alive")
                .header("sec-websocket-key", support::KEY)
                .header("sec-websocket-version", "13")
                .body(body())
                .unwrap(),
            "InvalidConnectionHeader 400",
        ),
        (
            http::Request::get("/")
                .header("host", "x")
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-version", "13")
                .body(body())
                .unwrap(),
            "WebSocketKeyHeaderMissing 400",
        ),
        (
            http::Request::get("/")
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-version", "13")
                .body(body())
                .unwrap(),
            // No Host and no key: the Host is checked first, as RFC 6455
            // §4.2.1 lists it first.
            "InvalidHandshake 400",
        ),
        (
            handshake()
                .header("sec-websocket-version", "14")
                .body(body())
                .unwrap(),
            "InvalidWebSocketVersionHeader 426",
        ),
        (
            handshake()
                .version(http::Version::HTTP_10)
                .body(body())
                .unwrap(),
            "InvalidHandshake 400",
        ),
        (
            handshake()
                .version(http::Version::HTTP_2)
                .body(body())
                .unwrap(),
            "MethodNotConnect 405",
        ),
        // A plain CONNECT (no `:protocol`) and one for another protocol.
        (
            handshake()
                .method("CONNECT")
                .version(http::Version::HTTP_2)
                .body(body())
                .unwrap(),
            "InvalidProtocolPseudoheader 501",
        ),
        (
            handshake()
                .method("CONNECT")
                .version(http::Version::HTTP_2)
                .extension(hyper::ext::Protocol::from_static("webtransport"))
                .body(body())
                .unwrap(),
            "InvalidProtocolPseudoheader 501",
        ),
        // RFC 8441 §4: an extended CONNECT without `:authority`.
        (
            http::Request::builder()
                .method("CONNECT")
                .uri("/")
                .version(http::Version::HTTP_2)
                .extension(hyper::ext::Protocol::from_static("websocket"))
                .header("sec-websocket-version", "13")
                .body(body())
                .unwrap(),
            "InvalidHandshake 400",
        ),
        (
            http::Request::builder()
                .method("CONNECT")
                .uri("http://example.com/")
                .version(http::Version::HTTP_2)
                .extension(hyper::ext::Protocol::from_static("websocket"))
                .header("sec-websocket-version", "12")
                .body(body())
                .unwrap(),
            "InvalidWebSocketVersionHeader 426",
        ),
        // A valid handshake that did not come through hyper.
        (
            handshake().body(body()).unwrap(),
            "ConnectionNotUpgradable 500",
        ),
    ];
    for (request, expected) in cases {
        let shown = format!("{request:?}");
        assert_eq!(rejection_for(request).await, expected, "{shown}");
    }
}

#[tokio::test]
async fn method_not_connect_lists_connect_as_allowed() {
    let response = tower_ws::axum::rejection::MethodNotConnect::default().into_response();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "CONNECT");
}

#[tokio::test]
async fn permessage_deflate_is_agreed_by_default_and_can_be_turned_off() {
    let app = Router::new().route("/echo", any(echo_handler)).route(
        "/plain",
        any(|ws: WebSocketUpgrade| async { ws.deflate(None).on_upgrade(echo) }),
    );
    let addr = serve(app).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

    let (mut client, head) =
        RawClient::connect_with(addr, &upgrade_request("/echo", offer), &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    // "Hello" compressed, RFC 7692 §7.2.3.1: the server inflates it.
    client
        .send(true, 0b100, 1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .await;
    let reply = client.recv().await.expect("the echo");
    assert_eq!(reply.opcode, 1);
    let expected: &[u8] = if reply.rsv == 0b100 {
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    } else {
        b"Hello"
    };
    assert_eq!(reply.payload, expected);

    let (_, head) = RawClient::connect_with(addr, &upgrade_request("/plain", offer), &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
}

#[tokio::test]
async fn a_refused_origin_gets_403_from_on_upgrade() {
    let app = Router::new().route(
        "/ws",
        any(|ws: WebSocketUpgrade| async {
            ws.allowed_origins(["https://good.example"])
                .on_upgrade(echo)
        }),
    );
    let addr = serve(app).await;
    let (status, _, body) = http(
        addr,
        &upgrade_request(
            "/ws",
            "Origin: https://evil.example\r\nConnection: close\r\n",
        ),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("Origin"), "{body}");
    let (_, head) = RawClient::connect_with(
        addr,
        &upgrade_request("/ws", "Origin: https://good.example\r\n"),
        &[],
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[tokio::test]
async fn close_frames_carry_code_and_reason_both_ways() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/ws",
        any(move |ws: WebSocketUpgrade| {
            let seen_tx = seen_tx.clone();
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    while let Some(msg) = socket.recv().await {
                        match msg.unwrap() {
                            Message::Text(t) if t == "close please" => {
                                let frame = CloseFrame {
                                    code: 4001,
                                    reason: "as you wish".into(),
                                };
                                socket.send(Message::Close(Some(frame))).await.unwrap();
                            }
                            other => seen_tx.send(other).unwrap(),
                        }
                    }
                    assert!(futures_util::stream::FusedStream::is_terminated(&socket));
                    assert!(socket.recv().await.is_none());
                    seen_tx.send(Message::text("ended")).unwrap();
                })
            }
        }),
    );
    let addr = serve(app).await;

    // The client closes: the server sees the code and reason, then the end.
    let (mut ws, _) = tungstenite_connect(addr, "/ws", None).await;
    ws.close(Some(TCloseFrame {
        code: TCode::Away,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let seen = timeout(WAIT, seen_rx.recv()).await.unwrap().unwrap();
    assert_eq!(
        seen,
        Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: "bye".into()
        }))
    );
    assert_eq!(
        timeout(WAIT, seen_rx.recv()).await.unwrap().unwrap(),
        Message::text("ended")
    );

    // The server closes: the client sees the code and reason.
    let (mut ws, _) = tungstenite_connect(addr, "/ws", None).await;
    ws.send(TMessage::text("close please")).await.unwrap();
    match timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(TMessage::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "as you wish");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn on_failed_upgrade_runs_when_the_upgrade_never_completes() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let app: Router = Router::new().route(
        "/",
        any(move |ws: WebSocketUpgrade| async move {
            ws.on_failed_upgrade(move |error: axum::Error| {
                let _ = tx.lock().unwrap().take().unwrap().send(error.to_string());
            })
            .on_upgrade(|_| async { panic!("never upgraded") })
        }),
    );
    // An upgrade handle that hyper will never fulfil: the request does not
    // come from a connection.
    let mut request = handshake().body(Body::empty()).unwrap();
    let on_upgrade = hyper::upgrade::on(&mut request);
    request.extensions_mut().insert(on_upgrade);
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let error = timeout(WAIT, rx).await.unwrap().unwrap();
    assert!(error.contains("upgrade"), "{error}");
}

/// The server writes a burst the client does not read yet (so the writer
/// waits on the transport) while the other task reads; every message must
/// arrive once the client reads, for halves from `split()` and for a socket
/// split through the `StreamExt` trait.
async fn two_tasks_with_a_blocked_writer(path: &str) {
    const BURST: usize = 64;
    const SIZE: usize = 64 << 10;
    async fn serve_halves<W, R>(mut write: W, mut read: R)
    where
        W: futures_util::Sink<Message> + Unpin + Send + 'static,
        R: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
    {
        let writer = tokio::spawn(async move {
            for i in 0..BURST {
                let chunk = vec![i as u8; SIZE];
                if write.send(Message::binary(chunk)).await.is_err() {
                    return;
                }
            }
            let _ = write.send(Message::text("burst done")).await;
        });
        let mut seen = 0;
        while let Some(Ok(msg)) = read.next().await {
            if let Message::Text(_) = msg {
                seen += 1;
            }
        }
        assert_eq!(seen, 3);
        writer.await.unwrap();
    }
    let app = Router::new()
        .route(
            "/inherent",
            any(|ws: WebSocketUpgrade| async {
                ws.on_upgrade(|socket| async move {
                    let (write, read) = socket.split();
                    serve_halves(write, read).await
                })
            }),
        )
        .route(
            "/trait",
            any(|ws: WebSocketUpgrade| async {
                ws.on_upgrade(|socket| async move {
                    let (write, read) = StreamExt::split(socket);
                    serve_halves(write, read).await
                })
            }),
        );
    let addr = serve(app).await;
    let (mut ws, _) = tungstenite_connect(addr, path, None).await;
    // Let the writer fill the socket buffers, then make the reader task
    // poll while the writer is stuck.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for text in ["one", "two", "three"] {
        ws.send(TMessage::text(text)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut bytes = 0;
    loop {
        match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(TMessage::Binary(chunk)))) => bytes += chunk.len(),
            Ok(Some(Ok(TMessage::Text(text)))) => {
                assert_eq!(text.as_str(), "burst done");
                break;
            }
            other => panic!("{path}: after {bytes} bytes: {other:?}"),
        }
    }
    assert_eq!(bytes, BURST * SIZE);
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn split_halves_work_from_two_tasks_while_the_writer_is_blocked() {
    two_tasks_with_a_blocked_writer("/inherent").await;
}

#[tokio::test]
async fn a_socket_split_through_the_trait_switches_to_coordinated_halves() {
    two_tasks_with_a_blocked_writer("/trait").await;
}

#[test]
fn sockets_and_their_halves_can_move_to_other_tasks() {
    fn send<T: Send + 'static>() {}
    send::<WebSocketUpgrade>();
    send::<WebSocket>();
    send::<futures_util::stream::SplitSink<WebSocket, Message>>();
    send::<futures_util::stream::SplitStream<WebSocket>>();
    send::<WebSocketUpgradeRejection>();
}
