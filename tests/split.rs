//! The split halves under cancellation: an application may drop a pending
//! send or receive (in `select!`, under `timeout`) at any point, and the
//! other half must carry on, on the same task or on another.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio::time::timeout;
use tower_ws::proto::{MaskKeys, Role};
use tower_ws::{Config, Message, WebSocket};

/// A server and a client WebSocket joined by an in-memory pipe holding at
/// most `capacity` bytes in each direction.
fn pair(capacity: usize) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(capacity);
    let config = Config::default();
    let server = WebSocket::from_raw(a, &config, None);
    let keys = MaskKeys::new(|| [1, 2, 3, 4]);
    let client = WebSocket::from_raw_with_role(b, Role::Client(keys), &config, None);
    (server, client)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A send cancelled while the transport is full leaves its message queued;
/// the reading half, alone from then on, must still deliver what arrives and
/// write the queue out once the peer reads, not wait for a writer that will
/// never be polled again.
#[tokio::test]
async fn reader_carries_on_after_a_cancelled_send() {
    let (server, mut client) = pair(16 << 10);
    let (mut reader, mut writer) = server.split();
    let big = payload(4 << 20);

    // The client does not read yet: the 4 MiB send cannot complete.
    let send = timeout(
        Duration::from_millis(100),
        writer.send(Message::binary(big.clone())),
    )
    .await;
    assert!(send.is_err(), "the send should still be pending");

    // Now the client reads everything and says something back.
    let peer = tokio::spawn(async move {
        client.send(Message::text("hello")).await.unwrap();
        let mut got = Vec::new();
        while let Some(Ok(msg)) = client.next().await {
            if let Message::Binary(data) = &msg {
                got.push(data.to_vec());
                break;
            }
        }
        got
    });

    // The reader alone: the client's text arrives, and reading on writes out
    // the big message the cancelled send left queued.
    let msg = timeout(Duration::from_secs(5), reader.next())
        .await
        .expect("the reader hung: it waited for a writer that was cancelled")
        .unwrap()
        .unwrap();
    assert_eq!(msg, Message::text("hello"));
    let drive = tokio::spawn(async move { while let Some(Ok(_)) = reader.next().await {} });
    let got = timeout(Duration::from_secs(5), peer)
        .await
        .expect("the queued message never left: nobody wrote it out")
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0] == big, "the queued message arrived corrupted");
    drive.abort();
    drop(writer);
}

/// The same with the halves on two tasks: every other send cancelled by a
/// 1 ms timeout, the peer pinging and reading slowly. Every ping is
/// answered, nothing hangs, and what arrives arrives whole and in order.
#[tokio::test]
async fn halves_on_two_tasks_survive_cancelled_sends() {
    let (server, mut client) = pair(8 << 10);
    let (mut reader, mut writer) = server.split();
    let sender = tokio::spawn(async move {
        for i in 0..32u8 {
            let mut data = payload(64 << 10);
            data[0] = i;
            let send = writer.send(Message::binary(data));
            if i % 2 == 0 {
                // Cancelled before or after the message was queued: it is
                // then either never sent or sent whole.
                let _ = timeout(Duration::from_millis(1), send).await;
            } else {
                send.await.unwrap();
            }
        }
        writer.send(Message::text("last")).await.unwrap();
        writer
    });
    let receiver = tokio::spawn(async move {
        while let Some(Ok(msg)) = reader.next().await {
            if msg == Message::text("done") {
                break;
            }
        }
        reader
    });

    let mut binaries = Vec::new();
    let mut pongs = 0u8;
    'outer: loop {
        client
            .send(Message::Ping(vec![pongs].into()))
            .await
            .unwrap();
        loop {
            let msg = timeout(Duration::from_secs(5), client.next())
                .await
                .expect("the server stopped answering and sending")
                .expect("the server closed")
                .unwrap();
            match msg {
                Message::Pong(p) => {
                    assert_eq!(&p[..], &[pongs], "pongs out of order");
                    pongs += 1;
                    break;
                }
                Message::Binary(data) => {
                    let mut expected = payload(64 << 10);
                    expected[0] = data[0];
                    assert!(data[..] == expected[..], "message {} corrupted", data[0]);
                    binaries.push(data[0]);
                }
                Message::Text(t) if t.as_str() == "last" => break 'outer,
                other => panic!("unexpected {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(pongs > 0, "no ping was answered");
    assert!(binaries.windows(2).all(|w| w[0] < w[1]), "{binaries:?}");
    for odd in (1..32u8).step_by(2) {
        assert!(
            binaries.contains(&odd),
            "message {odd} (never cancelled) lost"
        );
    }
    let writer = timeout(Duration::from_secs(5), sender)
        .await
        .expect("the sender hung")
        .unwrap();
    client.send(Message::text("done")).await.unwrap();
    let reader = timeout(Duration::from_secs(5), receiver)
        .await
        .expect("the reader hung")
        .unwrap();
    drop((reader, writer));
}
