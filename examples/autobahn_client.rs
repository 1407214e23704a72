//! The client against Autobahn|Testsuite's fuzzing server (the client cases
//! 1 to 13, compression included), as other clients' conformance examples
//! do.
//!
//! Run: `cargo run --release --example autobahn_client -- [BASE_URL] [--agent NAME] [--no-deflate]`
//! (BASE_URL defaults to ws://127.0.0.1:9001, the agent to `tower-ws`),
//! against `tests/autobahn/run_client.sh` or wstest's `fuzzingserver`. It
//! reads `/getCaseCount`, runs every case with `/runCase?case=N&agent=A`
//! (echoing every text and binary message until the server closes, offering
//! permessage-deflate), then calls `/updateReports?agent=A`. A case that
//! fails the connection is the server's verdict to report, not an error
//! here: it exits non-zero only when it cannot talk to the server at all.

use futures_util::{SinkExt, StreamExt};
use tower_ws::client::Builder;
use tower_ws::extensions::deflate::DeflateOffer;
use tower_ws::{Error, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut base = "ws://127.0.0.1:9001".to_owned();
    let mut agent = "tower-ws".to_owned();
    let mut deflate = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agent" => agent = args.next().expect("--agent NAME"),
            "--no-deflate" => deflate = false,
            url => base = url.trim_end_matches('/').to_owned(),
        }
    }
    let client = Builder::new().deflate(deflate.then(DeflateOffer::default));

    let (mut ws, _) = client.connect(&format!("{base}/getCaseCount")).await?;
    let count: usize = match ws.next().await {
        Some(Ok(Message::Text(text))) => text.as_str().trim().parse().unwrap_or(0),
        other => panic!("expected the case count, got {other:?}"),
    };
    while ws.next().await.is_some() {}
    eprintln!("{count} cases on {base}");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match client.connect(&url).await {
            Ok((ws, _)) => echo(ws).await,
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }

    let (mut ws, _) = client
        .connect(&format!("{base}/updateReports?agent={agent}"))
        .await?;
    while ws.next().await.is_some() {}
    eprintln!("reports updated for {agent}");
    Ok(())
}

/// Echoes every text and binary message until the server closes (or fails)
/// the connection.
async fn echo(mut ws: tower_ws::UpgradedWebSocket) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}
