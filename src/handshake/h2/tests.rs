//! The extended CONNECT handshake (RFC 8441) as a table, by section.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, Version, header};

use super::super::{OriginPolicy, Policy, Protocols};
use super::*;
#[cfg(feature = "deflate")]
use crate::extensions::deflate::DeflateConfig;

/// An extended CONNECT under construction.
#[derive(Clone, Debug)]
struct Connect {
    method: Method,
    version: Version,
    scheme: Option<&'static str>,
    authority: Option<&'static str>,
    path: Option<&'static str>,
    protocol: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

impl Connect {
    /// The request of RFC 8441 §5.1, without its optional headers.
    fn valid() -> Self {
        Connect {
            method: Method::CONNECT,
            version: Version::HTTP_2,
            scheme: Some("https"),
            authority: Some("server.example.com"),
            path: Some("/chat"),
            protocol: "websocket",
            headers: vec![("sec-websocket-version", "13")],
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }

    fn set(self, name: &'static str, value: &'static str) -> Self {
        self.without(name).add(name, value)
    }

    fn add(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    /// The URI as h2 builds it from the pseudo-headers. An `http::Uri`
    /// holds a scheme only beside an authority, and an authority without a
    /// scheme only alone (authority-form).
    fn uri(&self) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.authority = self.authority.map(Authority::from_static);
        if self.authority.is_some() {
            parts.scheme = self.scheme.map(|s| s.parse::<Scheme>().unwrap());
        }
        if self.authority.is_none() || parts.scheme.is_some() {
            parts.path_and_query = self.path.map(PathAndQuery::from_static);
        }
        Uri::from_parts(parts).unwrap()
    }

    fn negotiate(&self, policy: &Policy) -> Result<ConnectAccept, Reject> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        negotiate_extended_connect(
            &self.method,
            self.version,
            &self.uri(),
            self.protocol,
            &headers,
            policy,
        )
    }
}

/// Accepts with `200` and these agreement headers, and nothing of HTTP/1.1's.
fn assert_accepted(
    name: &str,
    result: Result<ConnectAccept, Reject>,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    let accept = result.unwrap_or_else(|r| panic!("{name}: rejected {r:?}"));
    let res: Response<()> = accept.response();
    assert_eq!(res.status(), StatusCode::OK, "{name}");
    let h = res.headers();
    let get = |n| h.get(n).map(|v: &HeaderValue| v.to_str().unwrap());
    assert_eq!(get(header::SEC_WEBSOCKET_PROTOCOL), protocol, "{name}");
    assert_eq!(get(header::SEC_WEBSOCKET_EXTENSIONS), extensions, "{name}");
    for absent in [
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_ACCEPT,
    ] {
        assert!(h.get(&absent).is_none(), "{name}: no {absent} over HTTP/2");
    }
}

fn assert_rejected(name: &str, result: Result<ConnectAccept, Reject>, status: u16, reason: &str) {
    let reject = result.map(|_| ()).expect_err(&format!("{name}: accepted"));
    assert_eq!(reject.status.as_u16(), status, "{name}: {reject:?}");
    assert!(
        reject.reason.contains(reason),
        "{name}: reason {:?} lacks {reason:?}",
        reject.reason
    );
    let res: Response<bytes::Bytes> = reject.response();
    assert_eq!(res.status().as_u16(), status, "{name}");
}

#[test]
fn rfc8441_4_only_a_connect_with_protocol_is_extended() {
    assert!(is_extended_connect(&Method::CONNECT, Some("websocket")));
    assert!(is_extended_connect(&Method::CONNECT, Some("webtransport")));
    assert!(
        !is_extended_connect(&Method::CONNECT, None),
        "plain CONNECT"
    );
    assert!(!is_extended_connect(&Method::GET, None));
    assert!(!is_extended_connect(&Method::GET, Some("websocket")));
}

#[test]
fn rfc8441_5_1_the_example_request_is_answered_200() {
    let p = Policy::default();
    assert_accepted("§5.1", Connect::valid().negotiate(&p), None, None);
    let http3 = Connect::valid().with(|c| c.version = Version::HTTP_3);
    assert_accepted("RFC 9220 over HTTP/3", http3.negotiate(&p), None, None);
    let upper = Connect::valid().with(|c| c.protocol = "WebSocket");
    assert_accepted(
        "tokens are case-insensitive",
        upper.negotiate(&p),
        None,
        None,
    );
    let ws_scheme = Connect::valid().with(|c| c.scheme = Some("http"));
    assert_accepted("h2c: :scheme http", ws_scheme.negotiate(&p), None, None);
    let query = Connect::valid().with(|c| c.path = Some("/chat?room=1"));
    assert_accepted("a query in :path", query.negotiate(&p), None, None);
}

#[test]
fn rfc8441_4_another_protocol_gets_501() {
    let other = Connect::valid().with(|c| c.protocol = "webtransport");
    assert_rejected(
        "webtransport",
        other.negotiate(&Policy::default()),
        501,
        "websocket",
    );
    let prefix = Connect::valid().with(|c| c.protocol = "websocket2");
    assert_rejected(
        "websocket2",
        prefix.negotiate(&Policy::default()),
        501,
        "websocket",
    );
}

/// A missing `:path` cannot reach this function through hyper: an
/// `http::Uri` with a scheme always has a path, and h2 resets such a stream
/// with PROTOCOL_ERROR first (`tests/http2_hostile.rs` sends one).
#[test]
fn rfc8441_4_pseudo_headers_are_required() {
    let p = Policy::default();
    let cases = [
        (
            "no :authority",
            Connect::valid().with(|c| c.authority = None),
            ":authority",
        ),
        (
            "no :scheme",
            Connect::valid().with(|c| c.scheme = None),
            ":scheme",
        ),
        (
            "method GET",
            Connect::valid().with(|c| c.method = Method::GET),
            "CONNECT",
        ),
        (
            "over HTTP/1.1",
            Connect::valid().with(|c| c.version = Version::HTTP_11),
            "HTTP/2",
        ),
    ];
    for (name, req, reason) in cases {
        assert_rejected(name, req.negotiate(&p), 400, reason);
    }
}

#[test]
fn rfc8441_5_sec_websocket_version_13_is_required() {
    let p = Policy::default();
    let cases = [
        ("missing", Connect::valid().without("sec-websocket-version")),
        ("8", Connect::valid().set("sec-websocket-version", "8")),
        ("twice", Connect::valid().add("sec-websocket-version", "13")),
    ];
    for (name, req) in cases {
        assert_rejected(name, req.negotiate(&p), 426, "version 13");
        let res: Response<bytes::Bytes> = req.negotiate(&p).unwrap_err().response();
        assert_eq!(res.headers()[header::SEC_WEBSOCKET_VERSION], "13", "{name}");
    }
}

#[test]
fn rfc8441_5_sec_websocket_key_is_not_processed() {
    let p = Policy::default();
    for key in ["dGhlIHNhbXBsZSBub25jZQ==", "not a key at all"] {
        let req = Connect::valid().add("sec-websocket-key", key);
        assert_accepted(key, req.negotiate(&p), None, None);
    }
}

#[test]
fn rfc8441_5_origin_is_checked_as_over_http1() {
    let allow = Policy {
        origins: OriginPolicy::AllowList(["https://example.com".to_string()].into()),
        ..Policy::default()
    };
    let good = Connect::valid().add("origin", "https://EXAMPLE.com");
    assert_accepted("allowed origin", good.negotiate(&allow), None, None);
    let bad = Connect::valid().add("origin", "https://evil.example");
    assert_rejected("refused origin", bad.negotiate(&allow), 403, "Origin");
    let twice = good.add("origin", "https://example.com");
    assert_rejected("two origins", twice.negotiate(&allow), 400, "Origin");
    let none = Connect::valid();
    assert_accepted("no origin", none.negotiate(&allow), None, None);
}

#[test]
fn rfc8441_5_subprotocol_is_selected_as_over_http1() {
    let preferred = Policy {
        protocols: Protocols::Preferred(["superchat".to_string(), "chat".to_string()].into()),
        ..Policy::default()
    };
    let req = Connect::valid().add("sec-websocket-protocol", "chat, superchat");
    assert_accepted(
        "§5.1 offers",
        req.negotiate(&preferred),
        Some("superchat"),
        None,
    );
    let req = Connect::valid().add("sec-websocket-protocol", "mqtt");
    assert_accepted("nothing in common", req.negotiate(&preferred), None, None);
}

#[cfg(feature = "deflate")]
#[test]
fn rfc8441_5_permessage_deflate_is_negotiated_with_every_parameter() {
    let p = Policy {
        deflate: Some(DeflateConfig::default()),
        ..Policy::default()
    };
    let cases = [
        (
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
        ),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits",
        ),
        (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        ),
    ];
    for (offer, _) in cases {
        let req = Connect::valid().add("sec-websocket-extensions", offer);
        let accept = req.negotiate(&p).unwrap();
        // The same agreement as the HTTP/1.1 handshake reaches for the offer.
        let mut h1 = HeaderMap::new();
        h1.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h1.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h1.insert(header::HOST, HeaderValue::from_static("server.example.com"));
        h1.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h1.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h1.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(offer),
        );
        let over_h1 = super::super::negotiate(&Method::GET, Version::HTTP_11, &h1, &p).unwrap();
        let res: Response<()> = accept.response();
        let h1_res: Response<()> = over_h1.response();
        assert_eq!(
            res.headers().get(header::SEC_WEBSOCKET_EXTENSIONS),
            h1_res.headers().get(header::SEC_WEBSOCKET_EXTENSIONS),
            "{offer}"
        );
        assert!(res.headers().contains_key(header::SEC_WEBSOCKET_EXTENSIONS));
        assert_eq!(accept.deflate, over_h1.deflate, "{offer}");
    }
    let declined = Connect::valid().add("sec-websocket-extensions", "x-unknown");
    assert_accepted("unknown extension", declined.negotiate(&p), None, None);
    let no_deflate = Policy::default();
    let req = Connect::valid().add("sec-websocket-extensions", "permessage-deflate");
    assert_accepted("deflate off", req.negotiate(&no_deflate), None, None);
}
