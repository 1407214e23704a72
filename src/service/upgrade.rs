//! The end of an accepted handshake, shared by every way of mounting
//! tower-ws ([`WebSocketService`](super::WebSocketService), the axum
//! extractor): take hyper's upgrade handle from the request, build the
//! negotiated extension, and once hyper hands the connection over, wrap it
//! in a [`WebSocket`].

use http::StatusCode;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::UpgradedWebSocket;
use crate::config::Config;
use crate::extensions::Extension;
use crate::handshake::{Accept, Reject};
use crate::stream::WebSocket;

/// Takes hyper's upgrade handle out of the request extensions. It is missing
/// when the connection is not served with upgrades enabled (or was already
/// taken), which is a server setup error: `500` with what to do.
pub(crate) fn take_on_upgrade(extensions: &mut http::Extensions) -> Result<OnUpgrade, Reject> {
    extensions.remove::<OnUpgrade>().ok_or(Reject::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "this connection cannot be upgraded: serve it with hyper's serve_connection_with_upgrades",
    ))
}

/// An accepted handshake whose `101` response is on its way: the connection
/// is not ours until hyper has written that response.
pub(crate) struct PendingUpgrade {
    on_upgrade: OnUpgrade,
    extension: Option<Box<dyn Extension>>,
}

impl PendingUpgrade {
    /// Prepares the extension agreed in `accept`, configured by `config`
    /// (the same config the handshake negotiated with).
    pub(crate) fn new(on_upgrade: OnUpgrade, accept: &Accept, config: &Config) -> Self {
        #[cfg(feature = "deflate")]
        let extension = accept.deflate.map(|(params, mem_level)| {
            let deflate = config.deflate.as_ref().expect("negotiated with a config");
            Box::new(crate::extensions::deflate::PerMessageDeflate::new(
                params, mem_level, deflate,
            )) as Box<dyn Extension>
        });
        #[cfg(not(feature = "deflate"))]
        let extension = {
            let _ = (accept, config);
            None
        };
        PendingUpgrade {
            on_upgrade,
            extension,
        }
    }

    /// Waits for hyper to hand the connection over. Fails only if the client
    /// went away before the upgrade finished.
    pub(crate) async fn websocket(
        self,
        config: &Config,
    ) -> Result<UpgradedWebSocket, hyper::Error> {
        let upgraded = self.on_upgrade.await?;
        Ok(WebSocket::from_raw(
            TokioIo::new(upgraded),
            config,
            self.extension,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_upgrade_handle_is_a_server_setup_error() {
        let reject = take_on_upgrade(&mut http::Extensions::new()).unwrap_err();
        assert_eq!(reject.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reject.reason.contains("serve_connection_with_upgrades"));
    }
}
