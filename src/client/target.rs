//! The server a `ws://` or `wss://` URL names.

use http::Uri;

use crate::error::{Error, Kind};

/// Where to connect, from the URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Target {
    /// `wss://`.
    pub tls: bool,
    /// The host name or address, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
}

/// Parses a `ws://` or `wss://` URL (RFC 6455 §3).
pub(super) fn parse(url: &str) -> Result<(Uri, Target), Error> {
    // `Uri` would drop a fragment silently.
    if url.contains('#') {
        return Err(invalid(
            "a WebSocket URL has no fragment: remove the `#...` (RFC 6455 §3)",
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| invalid("the URL does not parse (expected ws://host[:port]/path?query)"))?;
    let target = target(&uri)?;
    Ok((uri, target))
}

/// The target of a URI with a `ws` or `wss` scheme.
pub(super) fn target(uri: &Uri) -> Result<Target, Error> {
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") => false,
        Some(s) if s.eq_ignore_ascii_case("wss") => true,
        _ => {
            return Err(invalid(
                "the URL scheme must be ws:// or wss:// (RFC 6455 §3)",
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("the URL has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Target {
        tls,
        host: host.to_owned(),
        port,
    })
}

pub(super) fn invalid(what: &'static str) -> Error {
    Error::new(Kind::InvalidRequest(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_and_wss_urls() {
        let cases = [
            ("ws://example.com/chat", false, "example.com", 80),
            ("wss://example.com/", true, "example.com", 443),
            ("WS://127.0.0.1:9001", false, "127.0.0.1", 9001),
            ("wss://[::1]:8443/x?y", true, "::1", 8443),
        ];
        for (url, tls, host, port) in cases {
            let (_, t) = parse(url).unwrap();
            assert_eq!((t.tls, t.host.as_str(), t.port), (tls, host, port), "{url}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_websocket_url() {
        for url in [
            "http://example.com/",
            "example.com",
            "ws:///path",
            "ws://exa mple/",
            "ws://example.com/chat#room",
            "",
        ] {
            let err = parse(url).unwrap_err();
            assert!(err.is_invalid_request(), "{url}: {err}");
        }
    }
}
