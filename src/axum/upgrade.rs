//! [`WebSocketUpgrade`]: the extractor, its builder methods and
//! `on_upgrade`.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::Response;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;

use super::rejection::{
    ConnectionNotUpgradable, InvalidConnectionHeader, InvalidHandshake,
    InvalidProtocolPseudoheader, InvalidUpgradeHeader, InvalidWebSocketVersionHeader,
    MethodNotConnect, MethodNotGet, WebSocketKeyHeaderMissing, WebSocketUpgradeRejection,
};
use super::socket::WebSocket;
use crate::config::Config;
use crate::handshake::{self, OriginPolicy, Policy, Protocols, Reject};
use crate::service::upgrade::{Accepted, PendingUpgrade, connect_protocol, take_on_upgrade};

/// Extractor for establishing WebSocket connections, with the methods of
/// axum's `WebSocketUpgrade`; the connection behind it is tower-ws's.
///
/// Put it in a handler's arguments next to other extractors (`State`,
/// `Query`, `TypedHeader`, ...), then answer with
/// [`on_upgrade`](Self::on_upgrade). A request that is not a valid
/// WebSocket handshake is rejected with a
/// [`WebSocketUpgradeRejection`] before the handler runs.
///
/// Mount the handler with `any(...)` (as for axum's) or `get(...)`.
///
/// ```
/// use axum::{Router, extract::State, response::Response, routing::any};
/// use tower_ws::axum::{WebSocket, WebSocketUpgrade};
///
/// #[derive(Clone)]
/// struct AppState {
///     greeting: &'static str,
/// }
///
/// async fn handler(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
///     ws.protocols(["chat.v2", "chat.v1"])
///         .max_message_size(1 << 20)
///         .on_upgrade(move |socket| greet(socket, state))
/// }
///
/// async fn greet(mut socket: WebSocket, state: AppState) {
///     let _ = socket.send(state.greeting.into()).await;
/// }
///
/// let app: Router = Router::new()
///     .route("/ws", any(handler))
///     .with_state(AppState { greeting: "hello" });
/// ```
#[must_use]
pub struct WebSocketUpgrade<F = DefaultOnFailedUpgrade> {
    config: Config,
    origins: OriginPolicy,
    /// The subprotocol the response will name.
    protocol: Option<HeaderValue>,
    /// The client's offers, in its order.
    requested: Vec<HeaderValue>,
    /// What the handshake is agreed from once the handler has configured it.
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    /// The `:protocol` of an HTTP/2 extended CONNECT (RFC 8441 §4).
    connect_protocol: Option<String>,
    on_upgrade: OnUpgrade,
    on_failed_upgrade: F,
}

impl<F> fmt::Debug for WebSocketUpgrade<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("config", &self.config)
            .field("origins", &self.origins)
            .field("protocol", &self.protocol)
            .field("requested", &self.requested)
            .finish_non_exhaustive()
    }
}

impl<F> WebSocketUpgrade<F> {
    fn map_config(mut self, f: impl FnOnce(Config) -> Config) -> Self {
        self.config = f(std::mem::take(&mut self.config));
        self
    }

    /// How many bytes are asked of the transport per read
    /// ([`Config::read_buffer_size`]). The buffer is allocated when the
    /// first bytes arrive, so idle connections do not pay for it.
    ///
    /// Default is 8 KiB (axum's is 128 KiB).
    pub fn read_buffer_size(self, size: usize) -> Self {
        self.map_config(|c| c.read_buffer_size(size))
    }

    /// Accepted for compatibility with axum; has no effect. tower-ws writes
    /// on every `send` and `flush`, and messages queued with `feed` go out
    /// together once there is no more input to read.
    pub fn write_buffer_size(self, _size: usize) -> Self {
        self
    }

    /// When this many bytes wait to be written, sending waits for the peer
    /// to read ([`Config::write_buffer_high_water`]): backpressure, where
    /// axum fails the send instead.
    ///
    /// Default is 128 KiB (axum's is unlimited).
    pub fn max_write_buffer_size(self, max: usize) -> Self {
        self.map_config(|c| c.write_buffer_high_water(max))
    }

    /// The largest message accepted, counted after reassembly and
    /// decompression; a larger one fails the connection with close code
    /// 1009 ([`Config::max_message_size`]).
    ///
    /// Default is 64 MiB.
    pub fn max_message_size(self, max: usize) -> Self {
        self.map_config(|c| c.max_message_size(max))
    }

    /// The largest frame accepted ([`Config::max_frame_size`]).
    ///
    /// Default is 16 MiB.
    pub fn max_frame_size(self, max: usize) -> Self {
        self.map_config(|c| c.max_frame_size(max))
    }

    /// Accepted for compatibility with axum; has no effect: a client frame
    /// without a mask fails the connection with close code 1002, as RFC 6455
    /// §5.1 requires.
    pub fn accept_unmasked_frames(self, _accept: bool) -> Self {
        self
    }

    /// Every connection setting at once (limits, timeouts,
    /// permessage-deflate), replacing what earlier calls set.
    ///
    /// Default is [`Config::default()`]: permessage-deflate is offered to
    /// clients that ask for it.
    pub fn config(self, config: Config) -> Self {
        self.map_config(|_| config)
    }

    /// permessage-deflate settings (RFC 7692), or `None` to never compress
    /// ([`Config::deflate`]).
    ///
    /// Default is `Some(DeflateConfig::default())`.
    #[cfg(feature = "deflate")]
    pub fn deflate(self, deflate: Option<crate::DeflateConfig>) -> Self {
        self.map_config(|c| c.deflate(deflate))
    }

    /// Only these origins (e.g. `https://example.com`) may connect; a
    /// browser page from elsewhere gets `403 Forbidden` from
    /// [`on_upgrade`](Self::on_upgrade). Requests without `Origin`
    /// (non-browser clients) are allowed. This defends against cross-site
    /// WebSocket hijacking.
    ///
    /// Default is any origin.
    pub fn allowed_origins<I, O>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.origins = OriginPolicy::AllowList(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Decides with a closure whether an `Origin` (or its absence) may
    /// connect; `false` makes [`on_upgrade`](Self::on_upgrade) answer
    /// `403 Forbidden`.
    pub fn check_origin<C>(mut self, check: C) -> Self
    where
        C: Fn(Option<&HeaderValue>) -> bool + Send + Sync + 'static,
    {
        self.origins = OriginPolicy::Check(Arc::new(check));
        self
    }

    /// The subprotocols the server speaks, in decreasing order of
    /// preference: the first one the client also offered is selected and
    /// named in the response (RFC 6455 §4.2.2). None in common selects none.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Cow<'static, str>>,
    {
        self.protocol = protocols.into_iter().find_map(|wanted| {
            let wanted = wanted.into();
            self.requested
                .iter()
                .find(|offered| offered.as_bytes() == wanted.as_bytes())
                .cloned()
        });
        self
    }

    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in
    /// the client's order (axum's are sorted and deduplicated).
    pub fn requested_protocols(&self) -> impl Iterator<Item = &HeaderValue> {
        self.requested.iter()
    }

    /// Sets the selected subprotocol, replacing what
    /// [`protocols`](Self::protocols) chose. Browsers fail the connection if
    /// it is not one they offered.
    pub fn set_selected_protocol(&mut self, protocol: HeaderValue) {
        self.protocol = Some(protocol);
    }

    /// The selected subprotocol, if one has been chosen.
    pub fn selected_protocol(&self) -> Option<&HeaderValue> {
        self.protocol.as_ref()
    }

    /// A callback for when the upgrade fails after the response was sent
    /// (the client went away before it completed).
    ///
    /// Default is to ignore the error.
    pub fn on_failed_upgrade<C>(self, callback: C) -> WebSocketUpgrade<C>
    where
        C: OnFailedUpgrade,
    {
        WebSocketUpgrade {
            config: self.config,
            origins: self.origins,
            protocol: self.protocol,
            requested: self.requested,
            method: self.method,
            version: self.version,
            uri: self.uri,
            headers: self.headers,
            connect_protocol: self.connect_protocol,
            on_upgrade: self.on_upgrade,
            on_failed_upgrade: callback,
        }
    }

    /// Answers the handshake and, once hyper has handed the connection over,
    /// calls `callback` with the socket on a task of its own.
    ///
    /// The response is `101 Switching Protocols` (`200` to an HTTP/2
    /// extended CONNECT, RFC 8441 §5) with the selected
    /// subprotocol and the agreed permessage-deflate parameters, or `403
    /// Forbidden` if the `Origin` is refused (then `callback` never runs).
    #[must_use = "to set up the WebSocket connection, this response must be returned"]
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        F: OnFailedUpgrade,
    {
        let policy = Policy {
            protocols: Protocols::None,
            origins: self.origins,
            #[cfg(feature = "deflate")]
            deflate: self.config.deflate.clone(),
        };
        let accepted = match &self.connect_protocol {
            Some(protocol) => handshake::negotiate_extended_connect(
                &self.method,
                self.version,
                &self.uri,
                protocol,
                &self.headers,
                &policy,
            )
            .map(Accepted::from),
            None => handshake::negotiate(&self.method, self.version, &self.headers, &policy)
                .map(Accepted::from),
        };
        let Accepted { response, agreed } = match accepted {
            Ok(accepted) => accepted,
            Err(reject) => return reject.response(),
        };
        let mut response: Response = response.map(Body::new);
        if let Some(protocol) = &self.protocol {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
        }
        let pending = PendingUpgrade::new(self.on_upgrade, agreed, &self.config, self.version);
        let (config, protocol, on_failed_upgrade) =
            (self.config, self.protocol, self.on_failed_upgrade);
        tokio::spawn(UpgradeTask {
            state: State::Upgrading {
                pending,
                start: Some(Start {
                    config,
                    protocol,
                    callback,
                    on_failed_upgrade,
                }),
            },
        });
        response
    }
}

pin_project! {
    /// The task of one upgraded connection: waits for hyper to hand it
    /// over, then runs the callback's future. A future of its own rather
    /// than an `async` block, so that it holds the larger of its two states,
    /// not both (an `async` block kept the WebSocket on its way to the
    /// callback in a slot of its own, about 1 KiB, for the connection's
    /// life).
    struct UpgradeTask<C, Fut, F> {
        #[pin]
        state: State<C, Fut, F>,
    }
}

/// What the callback, or the failure callback, needs once hyper is done.
struct Start<C, F> {
    config: Config,
    protocol: Option<HeaderValue>,
    callback: C,
    on_failed_upgrade: F,
}

pin_project! {
    #[project = StateProj]
    enum State<C, Fut, F> {
        Upgrading {
            pending: PendingUpgrade,
            start: Option<Start<C, F>>,
        },
        Running {
            #[pin]
            handling: Fut,
        },
        Done,
    }
}

impl<C, Fut, F> Future for UpgradeTask<C, Fut, F>
where
    C: FnOnce(WebSocket) -> Fut,
    Fut: Future<Output = ()>,
    F: OnFailedUpgrade,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Upgrading { pending, start } => {
                    let config = &start.as_ref().expect("polled after the upgrade").config;
                    let upgraded = ready!(pending.poll_upgraded(cx, config));
                    let start = start.take().expect("polled after the upgrade");
                    match upgraded {
                        Ok(ws) => {
                            let handling = (start.callback)(WebSocket::new(ws, start.protocol));
                            state.set(State::Running { handling });
                        }
                        Err(e) => {
                            start.on_failed_upgrade.call(axum_core::Error::new(e));
                            state.set(State::Done);
                            return Poll::Ready(());
                        }
                    }
                }
                StateProj::Running { handling } => {
                    ready!(handling.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(());
                }
                StateProj::Done => return Poll::Ready(()),
            }
        }
    }
}

/// What to do when an upgrade fails after its response was sent; see
/// [`WebSocketUpgrade::on_failed_upgrade`]. Implemented for every
/// `FnOnce(axum::Error) + Send + 'static`.
pub trait OnFailedUpgrade: Send + 'static {
    /// Calls the callback.
    fn call(self, error: axum_core::Error);
}

impl<F> OnFailedUpgrade for F
where
    F: FnOnce(axum_core::Error) + Send + 'static,
{
    fn call(self, error: axum_core::Error) {
        self(error)
    }
}

/// The default [`OnFailedUpgrade`]: ignores the error.
#[non_exhaustive]
#[derive(Debug)]
pub struct DefaultOnFailedUpgrade;

impl OnFailedUpgrade for DefaultOnFailedUpgrade {
    #[inline]
    fn call(self, _error: axum_core::Error) {}
}

impl<S> FromRequestParts<S> for WebSocketUpgrade<DefaultOnFailedUpgrade>
where
    S: Send + Sync,
{
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        check(parts)?;
        let on_upgrade =
            take_on_upgrade(&mut parts.extensions).map_err(|_| ConnectionNotUpgradable)?;
        let requested = handshake::header_tokens(&parts.headers, header::SEC_WEBSOCKET_PROTOCOL)
            .filter_map(|offer| HeaderValue::from_str(offer).ok())
            .collect();
        Ok(WebSocketUpgrade {
            config: Config::default(),
            origins: OriginPolicy::Any,
            protocol: None,
            requested,
            method: parts.method.clone(),
            version: parts.version,
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            connect_protocol: connect_protocol(&parts.extensions).map(str::to_owned),
            on_upgrade,
            on_failed_upgrade: DefaultOnFailedUpgrade,
        })
    }
}

/// Validates the handshake with tower-ws's rules (the same
/// `handshake::negotiate` as `WebSocketService`; the settings the handler
/// chooses are applied by `on_upgrade`), naming the failure as axum does.
fn check(parts: &Parts) -> Result<(), WebSocketUpgradeRejection> {
    if parts.version >= Version::HTTP_2 {
        // RFC 8441 §4: over HTTP/2 a WebSocket is an extended CONNECT with
        // `:protocol = websocket`, under the same rules as WebSocketService.
        if parts.method != Method::CONNECT {
            return Err(MethodNotConnect.into());
        }
        let protocol = connect_protocol(&parts.extensions)
            .filter(|p| p.eq_ignore_ascii_case("websocket"))
            .ok_or(InvalidProtocolPseudoheader)?;
        return match handshake::negotiate_extended_connect(
            &parts.method,
            parts.version,
            &parts.uri,
            protocol,
            &parts.headers,
            &Policy::default(),
        ) {
            Ok(_) => Ok(()),
            Err(reject) if reject.status == StatusCode::UPGRADE_REQUIRED => {
                Err(InvalidWebSocketVersionHeader.into())
            }
            Err(reject) => Err(InvalidHandshake::from(reject).into()),
        };
    }
    if !handshake::is_upgrade_attempt(&parts.headers) {
        return Err(InvalidUpgradeHeader.into());
    }
    match handshake::negotiate(
        &parts.method,
        parts.version,
        &parts.headers,
        &Policy::default(),
    ) {
        Ok(_) => Ok(()),
        Err(reject) => Err(name_as_axum(parts, reject)),
    }
}

/// The axum rejection for what `negotiate` refused, where axum has one.
/// `negotiate` checks, in order: Upgrade, method, HTTP version, Connection,
/// Host, Sec-WebSocket-Version, Sec-WebSocket-Key, Origin; so a 400 is
/// about Connection when the version passed, and about a missing key when
/// everything before it passed.
fn name_as_axum(parts: &Parts, reject: Reject) -> WebSocketUpgradeRejection {
    let h = &parts.headers;
    let version_ok = parts.version >= Version::HTTP_11;
    let connection_ok = handshake::header_has_token(h, header::CONNECTION, "upgrade");
    let host_ok = h.get_all(header::HOST).iter().count() == 1;
    match reject.status {
        StatusCode::METHOD_NOT_ALLOWED => MethodNotGet.into(),
        StatusCode::UPGRADE_REQUIRED => InvalidWebSocketVersionHeader.into(),
        StatusCode::BAD_REQUEST if version_ok && !connection_ok => InvalidConnectionHeader.into(),
        StatusCode::BAD_REQUEST
            if version_ok && host_ok && !h.contains_key(header::SEC_WEBSOCKET_KEY) =>
        {
            WebSocketKeyHeaderMissing.into()
        }
        _ => InvalidHandshake::from(reject).into(),
    }
}
