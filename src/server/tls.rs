//! [`TlsConfig`]: the certificate and key `serve` speaks TLS with.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// TLS settings for [`Serve::tls`](super::Serve::tls) (feature `tls`):
/// rustls with the `ring` crypto provider, TLS 1.2 and 1.3, and ALPN
/// offering `h2` then `http/1.1`, so browsers get HTTP/2 and open their
/// WebSockets on it (RFC 8441).
///
/// ```no_run
/// # async fn run(app: tower_ws::WebSocketService<fn(tower_ws::UpgradedWebSocket, tower_ws::RequestHead) -> std::future::Ready<()>>) -> std::io::Result<()> {
/// use tower_ws::server::TlsConfig;
///
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
/// tower_ws::serve(listener, app).tls(tls).await
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(super) config: Arc<ServerConfig>,
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1) from files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot read the TLS {what} {}: {e}", path.display()),
                )
            })
        };
        Self::from_pem(&read(cert, "certificate")?, &read(key, "private key")?)
    }

    /// A certificate chain (leaf first) and a private key, both in PEM.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> io::Result<Self> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("the TLS certificate chain is not valid PEM: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(
                "no certificate in the TLS certificate file: expected a PEM \"BEGIN CERTIFICATE\" block"
                    .into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
            invalid(format!(
                "no usable private key in the TLS key file (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
            ))
        })?;
        // The provider is named, not taken from the process default: another
        // crate enabling a second rustls backend cannot make it ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                invalid(format!(
                    "the TLS certificate and private key do not go together: {e}"
                ))
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }

    /// A rustls configuration of your own (client authentication, several
    /// certificates, another crypto provider...). Set its `alpn_protocols`
    /// to `h2` and `http/1.1` for HTTP/2; without ALPN, `serve` tells the
    /// version from the first bytes, as on a clear-text port.
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        TlsConfig { config }
    }

    /// Offers only `http/1.1` in ALPN: browsers then use HTTP/1.1 and open
    /// WebSockets with the `101` upgrade.
    pub fn http1_only(mut self) -> Self {
        Arc::make_mut(&mut self.config).alpn_protocols = vec![b"http/1.1".to_vec()];
        self
    }

    /// The rustls configuration.
    pub fn rustls_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alpn: Vec<_> = self
            .config
            .alpn_protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect();
        f.debug_struct("TlsConfig")
            .field("alpn", &alpn)
            .finish_non_exhaustive()
    }
}
