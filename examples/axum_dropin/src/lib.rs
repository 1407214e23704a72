//! axum WebSocket programs in the styles axum users write, compiled twice by
//! `examples/axum_dropin/test.sh` from this one source: against
//! `axum::extract::ws` (feature `upstream`) and against `tower_ws::axum`.
//! Each module's `use` lines are the only difference.
//!
//! | route | module | style |
//! | --- | --- | --- |
//! | `/` and `/chat` | [`chat`] | a chat room over `tokio::sync::broadcast`, `split()` into two tasks |
//! | `/echo` | [`echo`] | `recv()`/`send()` loop, closes with a code on request; mounted with `any` so HTTP/2 extended CONNECT reaches it too |
//! | `/greet` | [`greet`] | `State` + `Query` + the extractor; selects a subprotocol |
//! | `/upper` | [`relay`] | a socket handler generic over `Sink`/`Stream`, unit-tested with channels |

pub mod chat;
pub mod echo;
pub mod greet;
pub mod relay;

use axum::Router;
use axum::routing::{any, get};

/// Which WebSocket module this build uses.
pub const IMPLEMENTATION: &str = if cfg!(feature = "upstream") {
    "axum::extract::ws"
} else {
    "tower_ws::axum"
};

/// Every route, with its state.
pub fn app() -> Router {
    Router::new()
        .route("/", get(chat::page))
        .route("/chat", any(chat::upgrade))
        .with_state(chat::Room::default())
        .route("/echo", any(echo::upgrade))
        .route("/greet", any(greet::upgrade))
        .with_state(greet::Visitors::default())
        .route("/upper", any(relay::upgrade))
}
