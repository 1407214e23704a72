//! A socket handler generic over `Sink` and `Stream`, so it can be tested
//! with channels instead of a network (axum's "testing websockets" style):
//! every text comes back upper-cased, every binary message reversed;
//! `count` answers how many messages came before it.

use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};

#[cfg(feature = "upstream")]
use axum::extract::ws::{Message, WebSocketUpgrade};
#[cfg(not(feature = "upstream"))]
use tower_ws::axum::{Message, WebSocketUpgrade};

/// `/upper`
pub async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|socket| {
        let (write, read) = socket.split();
        relay(write, read)
    })
}

/// Serves one socket given as its two halves.
pub async fn relay<W, R>(mut write: W, mut read: R)
where
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let mut count = 0;
    while let Some(Ok(msg)) = read.next().await {
        let reply = match msg {
            Message::Text(text) if text == "count" => Message::text(count.to_string()),
            Message::Text(text) => Message::text(text.to_uppercase()),
            Message::Binary(data) => {
                let mut data = data.to_vec();
                data.reverse();
                Message::binary(data)
            }
            _ => continue,
        };
        count += 1;
        if write.send(reply).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::mpsc;

    #[tokio::test]
    async fn relay_answers_through_channels() {
        let (socket_write, mut test_rx) = mpsc::channel::<Message>(16);
        let (mut test_tx, socket_read) = mpsc::channel::<Result<Message, axum::Error>>(16);
        let server = tokio::spawn(relay(socket_write, socket_read));

        test_tx.send(Ok(Message::text("hello"))).await.unwrap();
        assert_eq!(test_rx.next().await, Some(Message::text("HELLO")));
        test_tx
            .send(Ok(Message::binary(vec![1, 2, 3])))
            .await
            .unwrap();
        assert_eq!(test_rx.next().await, Some(Message::binary(vec![3, 2, 1])));
        test_tx
            .send(Ok(Message::Ping(Default::default())))
            .await
            .unwrap();
        test_tx.send(Ok(Message::text("count"))).await.unwrap();
        assert_eq!(test_rx.next().await, Some(Message::text("2")));

        // The read side ends: the handler returns and drops its sink.
        drop(test_tx);
        server.await.unwrap();
        assert_eq!(test_rx.next().await, None);
    }

    #[tokio::test]
    async fn relay_stops_at_the_first_error() {
        let (socket_write, mut test_rx) = mpsc::channel::<Message>(16);
        let (mut test_tx, socket_read) = mpsc::channel::<Result<Message, axum::Error>>(16);
        let server = tokio::spawn(relay(socket_write, socket_read));
        test_tx
            .send(Err(axum::Error::new("connection reset")))
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(test_rx.next().await, None);
    }
}
