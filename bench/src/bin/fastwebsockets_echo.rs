//! fastwebsockets echo peer, shaped like its examples/echo_server.rs: hyper 1
//! upgrade, `FragmentCollector`, auto close/pong, `unconstrained` task.

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tower_ws_bench::{MAX_MESSAGE, serve_each};

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let _ = echo(fut).await;
    }));
    Ok(response)
}

fn main() {
    serve_each(|tcp| async move {
        let conn = http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service_fn(upgrade))
            .with_upgrades();
        let _ = conn.await;
    });
}
