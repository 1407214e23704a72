//! The drop-in programs as one server.
//!
//! Run: `cargo run -p axum-dropin [--features upstream] -- [ADDR]` (ADDR
//! defaults to 127.0.0.1:3000; 127.0.0.1:0 picks a free port), then open
//! <http://127.0.0.1:3000/> in two tabs to chat. The first line printed is
//! `axum drop-in (IMPLEMENTATION) on http://ADDR/`. HTTP/1.1 and HTTP/2
//! (cleartext, prior knowledge) on the same port.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "axum drop-in ({}) on http://{}/",
        axum_dropin::IMPLEMENTATION,
        listener.local_addr()?
    );
    axum::serve(listener, axum_dropin::app()).await
}
