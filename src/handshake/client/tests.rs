//! The client's handshake: the request it writes and every rule of RFC 6455
//! §4.1 it checks in the response, one case each.

use super::*;

/// The nonce of RFC 6455 §1.3, and its key and accept values.
const NONCE: [u8; 16] = *b"the sample nonce";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn handshake() -> ClientHandshake {
    ClientHandshake::new(NONCE).protocols(["chat", "superchat"])
}

/// The response of RFC 6455 §1.3, as header lines.
fn valid() -> Vec<(&'static str, &'static str)> {
    vec![
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", ACCEPT),
    ]
}

fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(
            http::header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

fn check(lines: &[(&'static str, &'static str)]) -> Result<Agreed, HandshakeError> {
    handshake().validate_http1(StatusCode::SWITCHING_PROTOCOLS, &headers(lines))
}

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = valid();
    v.extend_from_slice(extra);
    v
}

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    valid().into_iter().filter(|(n, _)| *n != name).collect()
}

#[test]
fn rfc_1_3_request_has_every_header_of_section_4_1() {
    let uri: Uri = "ws://server.example.com/chat?room=1".parse().unwrap();
    let req = handshake().http1_request(&uri, HeaderMap::new());
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.uri(), "/chat?room=1");
    let h = req.headers();
    assert_eq!(h["host"], "server.example.com");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "Upgrade");
    assert_eq!(h["sec-websocket-key"], KEY);
    assert_eq!(h["sec-websocket-version"], "13");
    assert_eq!(h["sec-websocket-protocol"], "chat, superchat");
    assert!(!h.contains_key("sec-websocket-extensions"));
}

#[test]
fn host_names_the_port_only_when_not_the_default() {
    for (url, host) in [
        ("ws://a.example/", "a.example"),
        ("ws://a.example:80/", "a.example"),
        ("ws://a.example:8080/", "a.example:8080"),
        ("wss://a.example:443/", "a.example"),
        ("wss://a.example:80/", "a.example:80"),
        ("WSS://a.example:443/", "a.example"),
        ("ws://[::1]:9001/", "[::1]:9001"),
        ("ws://127.0.0.1:9001", "127.0.0.1:9001"),
    ] {
        let req = handshake().http1_request(&url.parse().unwrap(), HeaderMap::new());
        assert_eq!(req.headers()["host"], host, "{url}");
        assert!(req.uri().path().starts_with('/'));
    }
}

#[test]
fn caller_headers_are_added_and_replace_ours() {
    let mut extra = HeaderMap::new();
    extra.insert("authorization", HeaderValue::from_static("Bearer t"));
    extra.append("cookie", HeaderValue::from_static("a=1"));
    extra.append("cookie", HeaderValue::from_static("b=2"));
    extra.insert("host", HeaderValue::from_static("virtual.example"));
    let req = handshake().http1_request(&"ws://127.0.0.1:1/".parse().unwrap(), extra);
    let h = req.headers();
    assert_eq!(h["authorization"], "Bearer t");
    assert_eq!(h.get_all("cookie").iter().count(), 2);
    assert_eq!(
        h.get_all("host").iter().collect::<Vec<_>>(),
        ["virtual.example"]
    );
    assert_eq!(h["sec-websocket-key"], KEY);
}

#[test]
fn rfc_1_3_response_is_accepted() {
    let agreed = check(&valid()).unwrap();
    assert_eq!(agreed.protocol, None);
    let agreed = check(&with(&[("sec-websocket-protocol", "superchat")])).unwrap();
    assert_eq!(agreed.protocol.as_deref(), Some("superchat"));
    // Tokens compare case-insensitively and may sit in lists.
    check(&[
        ("upgrade", "WebSocket"),
        ("connection", "keep-alive, upgrade"),
        ("sec-websocket-accept", ACCEPT),
    ])
    .unwrap();
}

#[test]
fn section_4_1_rule_1_status_must_be_101() {
    for status in [200, 400, 403, 404, 426, 500] {
        let status = StatusCode::from_u16(status).unwrap();
        let err = handshake()
            .validate_http1(status, &headers(&valid()))
            .unwrap_err();
        assert_eq!(err, HandshakeError::Status(status));
        assert!(err.to_string().contains("instead of accepting"), "{err}");
    }
}

#[test]
fn section_4_1_rule_2_upgrade_must_be_websocket() {
    let e = HandshakeError::MissingUpgrade;
    assert_eq!(check(&without("upgrade")).unwrap_err(), e);
    let mut v = without("upgrade");
    v.push(("upgrade", "h2c"));
    assert_eq!(check(&v).unwrap_err(), e);
    v.push(("upgrade", "websocket"));
    assert_eq!(check(&v).unwrap_err(), e, "two protocols");
}

#[test]
fn section_4_1_rule_3_connection_must_list_upgrade() {
    let e = HandshakeError::MissingConnectionUpgrade;
    assert_eq!(check(&without("connection")).unwrap_err(), e);
    let mut v = without("connection");
    v.push(("connection", "notupgrade"));
    assert_eq!(check(&v).unwrap_err(), e, "tokens, not substrings");
}

#[test]
fn section_4_1_rule_4_accept_must_match_the_key() {
    let e = HandshakeError::WrongAccept;
    assert_eq!(check(&without("sec-websocket-accept")).unwrap_err(), e);
    let mut v = without("sec-websocket-accept");
    v.push(("sec-websocket-accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    assert_eq!(check(&v).unwrap_err(), e);
    // The accept of another key (RFC 6455 §1.3's key itself, not derived).
    let mut v = without("sec-websocket-accept");
    v.push(("sec-websocket-accept", KEY));
    assert_eq!(check(&v).unwrap_err(), e);
    assert_eq!(
        check(&with(&[("sec-websocket-accept", ACCEPT)])).unwrap_err(),
        e,
        "two accept headers"
    );
}

#[test]
fn section_4_1_rule_5_extensions_must_have_been_offered() {
    let e = HandshakeError::UnofferedExtension;
    assert_eq!(
        check(&with(&[("sec-websocket-extensions", "x-foo")])).unwrap_err(),
        e
    );
    // Not offered: permessage-deflate is refused too.
    assert_eq!(
        check(&with(&[("sec-websocket-extensions", "permessage-deflate")])).unwrap_err(),
        e
    );
    assert_eq!(
        check(&with(&[("sec-websocket-extensions", "a b")])).unwrap_err(),
        e,
        "malformed"
    );
}

#[test]
fn section_4_1_rule_6_subprotocol_must_have_been_offered() {
    let e = HandshakeError::UnofferedProtocol;
    assert_eq!(
        check(&with(&[("sec-websocket-protocol", "other")])).unwrap_err(),
        e
    );
    assert_eq!(
        check(&with(&[("sec-websocket-protocol", "chat, superchat")])).unwrap_err(),
        e,
        "one value, not a list"
    );
    assert_eq!(
        check(&with(&[
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-protocol", "chat")
        ]))
        .unwrap_err(),
        e
    );
    let none = ClientHandshake::new(NONCE);
    assert_eq!(
        none.validate_http1(
            StatusCode::SWITCHING_PROTOCOLS,
            &headers(&with(&[("sec-websocket-protocol", "chat")]))
        )
        .unwrap_err(),
        e
    );
}

#[cfg(feature = "deflate")]
mod deflate {
    use super::*;

    fn deflating() -> ClientHandshake {
        ClientHandshake::new(NONCE).deflate_offers(vec![
            DeflateOffer::default().server_max_window_bits(Some(10)),
            DeflateOffer::default(),
        ])
    }

    fn check(ext: &'static str) -> Result<Agreed, HandshakeError> {
        deflating().validate_http1(
            StatusCode::SWITCHING_PROTOCOLS,
            &headers(&with(&[("sec-websocket-extensions", ext)])),
        )
    }

    #[test]
    fn offers_go_out_in_order_of_preference() {
        let req = deflating().http1_request(&"ws://h/".parse().unwrap(), HeaderMap::new());
        assert_eq!(
            req.headers()["sec-websocket-extensions"],
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits, \
             permessage-deflate; client_max_window_bits"
        );
    }

    #[test]
    fn an_accepted_offer_gives_its_parameters() {
        let agreed = check("permessage-deflate; server_max_window_bits=9").unwrap();
        let (index, params) = agreed.deflate.unwrap();
        assert_eq!((index, params.server_max_window_bits), (0, 9));
        let (index, _) = check("permessage-deflate").unwrap().deflate.unwrap();
        assert_eq!(index, 1);
        assert_eq!(
            deflating()
                .validate_http1(StatusCode::SWITCHING_PROTOCOLS, &headers(&valid()))
                .unwrap()
                .deflate,
            None,
            "the server may decline"
        );
    }

    #[test]
    fn a_broken_deflate_response_names_the_rfc_7692_rule() {
        let err = check("permessage-deflate; client_max_window_bits=7").unwrap_err();
        assert!(matches!(err, HandshakeError::InvalidDeflateResponse(_)));
        assert!(err.to_string().contains("RFC 7692"), "{err}");
        assert!(matches!(
            check("permessage-deflate; mystery=1").unwrap_err(),
            HandshakeError::InvalidDeflateResponse(_)
        ));
        assert_eq!(
            check("permessage-deflate, permessage-deflate").unwrap_err(),
            HandshakeError::UnofferedExtension,
            "accepted twice"
        );
        assert_eq!(
            check("permessage-deflate, x-foo").unwrap_err(),
            HandshakeError::UnofferedExtension
        );
    }
}

#[cfg(feature = "client")]
mod http2 {
    use super::*;

    #[test]
    fn rfc_8441_extended_connect_request() {
        for (url, scheme) in [
            ("ws://h.example:8080/chat?x=1", "http"),
            ("wss://h.example/", "https"),
            ("WSS://h.example/", "https"),
        ] {
            let req = handshake().http2_request(&url.parse().unwrap(), HeaderMap::new());
            assert_eq!(req.method(), Method::CONNECT);
            assert_eq!(req.version(), Version::HTTP_2);
            assert_eq!(req.uri().scheme_str(), Some(scheme));
            assert_eq!(
                req.extensions()
                    .get::<hyper::ext::Protocol>()
                    .map(|p| p.as_str()),
                Some("websocket")
            );
            let h = req.headers();
            assert_eq!(h["sec-websocket-version"], "13");
            assert_eq!(h["sec-websocket-protocol"], "chat, superchat");
            // RFC 8441 §5: no key, no Upgrade / Connection (forbidden in HTTP/2).
            for name in ["sec-websocket-key", "upgrade", "connection", "host"] {
                assert!(!h.contains_key(name), "{name}");
            }
        }
        let req = handshake().http2_request(
            &"ws://h.example:8080/chat?x=1".parse().unwrap(),
            HeaderMap::new(),
        );
        assert_eq!(req.uri(), "http://h.example:8080/chat?x=1");
    }

    #[test]
    fn any_2xx_status_accepts_without_a_key() {
        let agreed = handshake()
            .validate_http2(
                StatusCode::OK,
                &headers(&[("sec-websocket-protocol", "chat")]),
            )
            .unwrap();
        assert_eq!(agreed.protocol.as_deref(), Some("chat"));
        for status in [101, 400, 404, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                handshake()
                    .validate_http2(status, &HeaderMap::new())
                    .unwrap_err(),
                HandshakeError::Status(status)
            );
        }
    }
}
