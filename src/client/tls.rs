//! `wss://`: rustls with the `ring` provider, webpki roots by default.

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Kind};

/// A client configuration trusting `roots`, with the `ring` provider.
pub(super) fn config_with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The default: Mozilla's root program (webpki-roots), built once.
pub(super) fn default_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            config_with_roots(roots)
        })
        .clone()
}

/// The TLS handshake; the certificate must be valid for `host`. ALPN offers
/// `h2` and `http/1.1`, or `http/1.1` alone.
pub(super) async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
    offer_h2: bool,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| super::target::invalid("the host is not a valid TLS server name"))?;
    let mut config = ClientConfig::clone(config);
    config.alpn_protocols = if offer_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| Error::with_source(Kind::Tls, e))
}
