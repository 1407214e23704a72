//! The upgrade over HTTP/1.1 (RFC 6455 §4.1), with hyper's client
//! connection.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Kind};

/// Sends the upgrade request on `io` and returns the response head, and the
/// upgrade to await once the response is found valid.
pub(super) async fn send<IO>(io: IO, req: Request<()>) -> Result<(Response<()>, OnUpgrade), Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http_error)?;
    // The connection task ends when the upgrade takes over the transport, or
    // when the sender is dropped (a refused handshake).
    tokio::spawn(conn.with_upgrades());
    let res = sender
        .send_request(req.map(|()| Empty::<Bytes>::new()))
        .await
        .map_err(http_error)?;
    Ok(head_and_upgrade(res))
}

/// The response head, and the upgrade it may grant (HTTP/1.1 101 or an
/// HTTP/2 CONNECT's 2xx): the body is not read.
pub(super) fn head_and_upgrade(mut res: Response<Incoming>) -> (Response<()>, OnUpgrade) {
    let on_upgrade = hyper::upgrade::on(&mut res);
    let (parts, _body) = res.into_parts();
    (Response::from_parts(parts, ()), on_upgrade)
}

/// An error of hyper's, for a handshake that broke off at the HTTP level.
pub(super) fn http_error(e: hyper::Error) -> Error {
    Error::with_source(Kind::HandshakeHttp, e)
}
