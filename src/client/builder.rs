//! [`Builder`]: every client option, and the connection logic.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use http::header::{HeaderName, ORIGIN};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::http2::{self, Pool};
use super::target::{self, Target};
use super::transport::{Open, Transport};
use super::{http1, keys};
use crate::config::Config;
use crate::error::{Error, Kind};
use crate::extensions::Extension;
#[cfg(feature = "deflate")]
use crate::extensions::deflate::{DeflateOffer, PerMessageDeflate};
use crate::handshake::client::{Agreed, ClientHandshake, HandshakeError};
use crate::proto::Role;
use crate::service::UpgradedWebSocket;
use crate::stream::WebSocket;

/// A connected client: the WebSocket, and the server's handshake response
/// (status and headers; the selected subprotocol is its
/// `Sec-WebSocket-Protocol`).
pub type Connected = (UpgradedWebSocket, Response<()>);

/// Options for opening client WebSockets; [`connect`](Builder::connect)
/// opens one.
///
/// A builder can be kept and cloned: clones share one pool of HTTP/2
/// connections, so with [`http2`](Builder::http2) every WebSocket to a
/// server runs as a stream of one HTTP/2 connection.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_ws::client::Builder;
/// use tower_ws::extensions::deflate::DeflateOffer;
///
/// # async fn run() -> Result<(), tower_ws::Error> {
/// let (ws, response) = Builder::new()
///     .header("authorization", "Bearer secret")
///     .origin("https://app.example")
///     .protocols(["chat.v2", "chat.v1"])
///     .deflate(Some(DeflateOffer::default().server_max_window_bits(Some(12))))
///     .config(tower_ws::Config::default().max_message_size(1 << 20))
///     .connect_timeout(Duration::from_secs(5))
///     .connect("wss://chat.example/socket")
///     .await?;
/// println!("subprotocol: {:?}", response.headers().get("sec-websocket-protocol"));
/// # drop(ws);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Builder {
    config: Config,
    headers: HeaderMap,
    protocols: Vec<String>,
    #[cfg(feature = "deflate")]
    deflate: Vec<DeflateOffer>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    http2: bool,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pool: Pool,
    invalid: Option<&'static str>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Builder");
        d.field("config", &self.config)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("protocols", &self.protocols);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config::default(),
            headers: HeaderMap::new(),
            protocols: Vec::new(),
            #[cfg(feature = "deflate")]
            deflate: vec![DeflateOffer::default()],
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            http2: false,
            #[cfg(feature = "tls")]
            tls: None,
            pool: Pool::default(),
            invalid: None,
        }
    }
}

impl Builder {
    /// A builder with the defaults of each option.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits and timeouts of the connection (message and frame sizes, the
    /// write buffer, the close timeout). The permessage-deflate settings in
    /// it are the server's; the client's offer is
    /// [`deflate`](Builder::deflate).
    ///
    /// Default is [`Config::default()`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adds a header to the handshake request (`Authorization`, `Cookie`,
    /// ...). It replaces a header of the same name that the client would
    /// send, such as `Host`. An invalid name or value makes `connect` fail.
    ///
    /// Default is no extra header.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        match (
            HeaderName::try_from(name.as_ref()),
            HeaderValue::try_from(value.as_ref()),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                self.invalid = Some("a header added with client::Builder::header is not valid HTTP")
            }
        }
        self
    }

    /// Sends an `Origin` header, as browsers do (servers that check origins
    /// need it).
    ///
    /// Default is none.
    pub fn origin(self, origin: impl AsRef<str>) -> Self {
        self.header(ORIGIN, origin)
    }

    /// Subprotocols to offer, in order of preference; the server selects at
    /// most one (see the response's `Sec-WebSocket-Protocol`).
    ///
    /// Default is none.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The permessage-deflate offer, or `None` to not offer compression.
    ///
    /// Default is `Some(DeflateOffer::default())`, the offer browsers make.
    #[cfg(feature = "deflate")]
    pub fn deflate(self, offer: Option<DeflateOffer>) -> Self {
        self.deflate_offers(offer.into_iter().collect())
    }

    /// Several permessage-deflate offers, in order of preference (RFC 7692
    /// §5): the server accepts the first it supports. Empty: no compression.
    ///
    /// Default is one offer, `DeflateOffer::default()`.
    #[cfg(feature = "deflate")]
    pub fn deflate_offers(mut self, offers: Vec<DeflateOffer>) -> Self {
        self.deflate = offers;
        self
    }

    /// How long resolving the host, connecting TCP and the TLS handshake may
    /// take.
    ///
    /// Default is 10 seconds.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the opening handshake may take once connected: a server that
    /// stalls is given up on after this.
    ///
    /// Default is 10 seconds.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Open WebSockets over HTTP/2 (RFC 8441) where the server supports it:
    /// `wss://` offers `h2` in TLS's ALPN, `ws://` speaks HTTP/2 with prior
    /// knowledge (h2c). If the server does not speak HTTP/2 or did not
    /// enable extended CONNECT, the client falls back to HTTP/1.1 on a new
    /// connection. One HTTP/2 connection per server carries every WebSocket
    /// opened through this builder and its clones.
    ///
    /// Whatever this says, a server to which the pool already holds an
    /// HTTP/2 connection is reached through it.
    ///
    /// Default is `false` (HTTP/1.1).
    pub fn http2(mut self, yes: bool) -> Self {
        self.http2 = yes;
        self
    }

    /// The rustls configuration for `wss://`: private certificate
    /// authorities, client certificates, another crypto provider. Its ALPN
    /// protocols are set by the client.
    ///
    /// Default is Mozilla's root program (webpki-roots) with the `ring`
    /// provider.
    #[cfg(feature = "tls")]
    pub fn tls_config(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trust exactly these roots for `wss://` (a private CA), with the
    /// `ring` provider.
    ///
    /// Default is Mozilla's root program (webpki-roots).
    #[cfg(feature = "tls")]
    pub fn root_certificates(self, roots: tokio_rustls::rustls::RootCertStore) -> Self {
        let config = super::tls::config_with_roots(roots);
        self.tls_config(config)
    }

    /// Connects to a `ws://` or `wss://` URL and runs the opening handshake.
    ///
    /// Fails with [`Error::is_handshake`] when the server refuses or breaks
    /// the handshake ([`Error::handshake_error`] names the rule),
    /// [`Error::is_timeout`] when connecting or the handshake takes too long,
    /// [`Error::is_tls`], [`Error::is_io`], or
    /// [`Error::is_invalid_request`] for a URL the client cannot use.
    pub async fn connect(&self, url: &str) -> Result<Connected, Error> {
        self.check()?;
        let (uri, target) = target::parse(url)?;
        let handshake = self.handshake();
        if let Some(mut sender) = self.pool.get(&target) {
            match self.over_http2(&mut sender, &uri, &handshake).await {
                Err(e) if sender.is_closed() => {
                    // The pooled connection went away: start afresh.
                    self.pool.remove(&target);
                    drop(e);
                }
                done => return done,
            }
        }
        let mut io = self.open(&target, self.http2).await?;
        if self.http2 && (io.is_h2() || !target.tls) {
            match self.with_timeout(http2::open(io)).await? {
                Some(mut sender) => {
                    self.pool.insert(target, sender.clone());
                    return self.over_http2(&mut sender, &uri, &handshake).await;
                }
                // RFC 8441 §3: no extended CONNECT here; HTTP/1.1 instead.
                None => io = self.open(&target, false).await?,
            }
        }
        self.over_http1(io, &uri, &handshake, HeaderMap::new())
            .await
    }

    /// Runs the opening handshake over HTTP/1.1 on a transport the caller
    /// already has: a proxy tunnel, a Unix socket, an in-memory duplex. The
    /// request's URI gives the path (and `Host`, if absolute); its headers
    /// are sent along, with the builder's.
    pub async fn connect_on<IO>(&self, io: IO, request: Request<()>) -> Result<Connected, Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.check()?;
        let (parts, ()) = request.into_parts();
        self.over_http1(io, &parts.uri, &self.handshake(), parts.headers)
            .await
    }

    fn check(&self) -> Result<(), Error> {
        match self.invalid {
            Some(what) => Err(target::invalid(what)),
            None => Ok(()),
        }
    }

    fn handshake(&self) -> ClientHandshake {
        let handshake = ClientHandshake::new(keys::nonce()).protocols(self.protocols.clone());
        #[cfg(feature = "deflate")]
        let handshake = handshake.deflate_offers(self.deflate.clone());
        handshake
    }

    async fn open(&self, target: &Target, offer_h2: bool) -> Result<Transport, Error> {
        Transport::open(
            target,
            Open {
                timeout: self.connect_timeout,
                offer_h2,
                #[cfg(feature = "tls")]
                tls: self.tls.as_ref(),
                #[cfg(not(feature = "tls"))]
                tls: None,
            },
        )
        .await
    }

    async fn over_http1<IO>(
        &self,
        io: IO,
        uri: &Uri,
        handshake: &ClientHandshake,
        mut headers: HeaderMap,
    ) -> Result<Connected, Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        headers.extend(self.headers.clone());
        let req = handshake.http1_request(uri, headers);
        self.with_timeout(async {
            let (res, on_upgrade) = http1::send(io, req).await?;
            let agreed = handshake
                .validate_http1(res.status(), res.headers())
                .map_err(handshake_error)?;
            self.finish(res, on_upgrade, handshake, agreed).await
        })
        .await
    }

    async fn over_http2(
        &self,
        sender: &mut http2::Sender,
        uri: &Uri,
        handshake: &ClientHandshake,
    ) -> Result<Connected, Error> {
        let req = handshake.http2_request(uri, self.headers.clone());
        self.with_timeout(async {
            let (res, on_upgrade) = http2::send(sender, req).await?;
            let agreed = handshake
                .validate_http2(res.status(), res.headers())
                .map_err(handshake_error)?;
            let (ws, res) = self.finish(res, on_upgrade, handshake, agreed).await?;
            Ok((ws.multiplexed(), res))
        })
        .await
    }

    /// Takes over the upgraded stream and wraps it as a client WebSocket.
    async fn finish(
        &self,
        res: Response<()>,
        on_upgrade: OnUpgrade,
        handshake: &ClientHandshake,
        agreed: Agreed,
    ) -> Result<Connected, Error> {
        let upgraded = on_upgrade.await.map_err(http1::http_error)?;
        let extension = extension(handshake, &agreed);
        let ws = WebSocket::from_raw_with_role(
            TokioIo::new(upgraded),
            Role::Client(keys::mask_keys()),
            &self.config,
            extension,
        );
        Ok((ws, res))
    }

    async fn with_timeout<T>(&self, f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        tokio::time::timeout(self.handshake_timeout, f)
            .await
            .map_err(|_| {
                Error::new(Kind::Timeout(
                    "the server did not complete the WebSocket handshake within the handshake timeout (client::Builder::handshake_timeout)",
                ))
            })?
    }
}

fn handshake_error(e: HandshakeError) -> Error {
    Error::new(Kind::Handshake(e))
}

/// The agreed extension's codec.
fn extension(handshake: &ClientHandshake, agreed: &Agreed) -> Option<Box<dyn Extension>> {
    #[cfg(feature = "deflate")]
    if let Some((index, params)) = agreed.deflate {
        let offer = &handshake.get_deflate_offers()[index];
        return Some(Box::new(PerMessageDeflate::client(params, offer)));
    }
    let _ = (handshake, agreed);
    None
}
