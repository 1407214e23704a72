//! The opening handshake as a table: request → `negotiate(...)` → response.

use super::*;

#[cfg(feature = "deflate")]
use crate::extensions::deflate::DeflateConfig;

/// The key and accept value of RFC 6455 §1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A request head under construction. Header lines keep their order and
/// duplicates, as they arrived on the wire.
#[derive(Clone, Debug)]
struct Req {
    method: Method,
    version: Version,
    headers: Vec<(&'static str, &'static str)>,
}

impl Req {
    /// The valid handshake of RFC 6455 §1.3.
    fn valid() -> Self {
        Req {
            method: Method::GET,
            version: Version::HTTP_11,
            headers: vec![
                ("host", "server.example.com"),
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-key", KEY),
                ("sec-websocket-version", "13"),
            ],
        }
    }

    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }

    fn version(mut self, v: Version) -> Self {
        self.version = v;
        self
    }

    /// Replaces every line of `name` with one line.
    fn set(self, name: &'static str, value: &'static str) -> Self {
        self.without(name).add(name, value)
    }

    /// Adds one more line.
    fn add(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(
                http::header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn negotiate(&self, policy: &Policy) -> Result<Accept, Reject> {
        negotiate(&self.method, self.version, &self.header_map(), policy)
    }
}

/// What a case expects.
#[derive(Debug)]
enum Expect {
    /// A 101 with this subprotocol and this `Sec-WebSocket-Extensions`.
    Accept {
        protocol: Option<&'static str>,
        extensions: Option<&'static str>,
    },
    /// An error response with this status and a reason containing `reason`.
    Reject { status: u16, reason: &'static str },
}

const ACCEPTED: Expect = Expect::Accept {
    protocol: None,
    extensions: None,
};

fn accepted_with_protocol(p: &'static str) -> Expect {
    Expect::Accept {
        protocol: Some(p),
        extensions: None,
    }
}

fn rejected(status: u16, reason: &'static str) -> Expect {
    Expect::Reject { status, reason }
}

fn allow_list(origins: &[&str]) -> Policy {
    Policy {
        origins: OriginPolicy::AllowList(origins.iter().map(|s| s.to_string()).collect()),
        ..Policy::default()
    }
}

fn preferred(protocols: &[&str]) -> Policy {
    Policy {
        protocols: Protocols::Preferred(protocols.iter().map(|s| s.to_string()).collect()),
        ..Policy::default()
    }
}

fn selector(f: impl Fn(&[&str]) -> Option<String> + Send + Sync + 'static) -> Policy {
    Policy {
        protocols: Protocols::Select(Arc::new(f)),
        ..Policy::default()
    }
}

fn origin_check(f: impl Fn(Option<&HeaderValue>) -> bool + Send + Sync + 'static) -> Policy {
    Policy {
        origins: OriginPolicy::Check(Arc::new(f)),
        ..Policy::default()
    }
}

#[cfg(feature = "deflate")]
fn with_deflate() -> Policy {
    Policy {
        deflate: Some(DeflateConfig::default()),
        ..Policy::default()
    }
}

/// Checks the full response of one case.
fn check(name: &str, req: &Req, policy: &Policy, expect: &Expect) {
    let result = req.negotiate(policy);
    match (expect, result) {
        (
            Expect::Accept {
                protocol,
                extensions,
            },
            Ok(accept),
        ) => {
            assert_eq!(accept.accept, ACCEPT, "{name}: accept key");
            assert_eq!(
                accept.protocol.as_ref().map(|p| p.to_str().unwrap()),
                *protocol,
                "{name}: selected protocol"
            );
            let res: Response<()> = accept.response();
            assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS, "{name}");
            let h = res.headers();
            assert_eq!(h[header::UPGRADE], "websocket", "{name}");
            assert_eq!(h[header::CONNECTION], "upgrade", "{name}");
            assert_eq!(h[header::SEC_WEBSOCKET_ACCEPT], ACCEPT, "{name}");
            assert_eq!(
                h.get(header::SEC_WEBSOCKET_PROTOCOL)
                    .map(|v| v.to_str().unwrap()),
                *protocol,
                "{name}: Sec-WebSocket-Protocol"
            );
            assert_eq!(
                h.get(header::SEC_WEBSOCKET_EXTENSIONS)
                    .map(|v| v.to_str().unwrap()),
                *extensions,
                "{name}: Sec-WebSocket-Extensions"
            );
            #[cfg(feature = "deflate")]
            assert_eq!(accept.deflate.is_some(), extensions.is_some(), "{name}");
            for single in [
                header::UPGRADE,
                header::CONNECTION,
                header::SEC_WEBSOCKET_ACCEPT,
                header::SEC_WEBSOCKET_PROTOCOL,
                header::SEC_WEBSOCKET_EXTENSIONS,
            ] {
                assert!(
                    h.get_all(&single).iter().count() <= 1,
                    "{name}: one {single}"
                );
            }
        }
        (Expect::Reject { status, reason }, Err(reject)) => {
            assert_eq!(reject.status.as_u16(), *status, "{name}: status");
            assert!(
                reject.reason.contains(reason),
                "{name}: reason {:?} lacks {reason:?}",
                reject.reason
            );
            check_reject_response(name, &reject);
        }
        (expect, got) => panic!("{name}: expected {expect:?}, got {got:?}"),
    }
}

/// The error response: status, plain-text reason, and the headers RFC 6455
/// and RFC 9110 ask for per status.
fn check_reject_response(name: &str, reject: &Reject) {
    let res: Response<Bytes> = reject.response();
    assert_eq!(res.status(), reject.status, "{name}");
    let h = res.headers();
    assert_eq!(
        h[header::CONTENT_TYPE],
        "text/plain; charset=utf-8",
        "{name}"
    );
    assert_eq!(res.body(), &format!("{}\n", reject.reason), "{name}: body");
    match reject.status {
        StatusCode::METHOD_NOT_ALLOWED => {
            assert_eq!(h[header::ALLOW], "GET", "{name}: 405 has Allow: GET");
        }
        StatusCode::UPGRADE_REQUIRED => {
            assert_eq!(
                h[header::SEC_WEBSOCKET_VERSION],
                "13",
                "{name}: 426 has Sec-WebSocket-Version: 13"
            );
            assert_eq!(h[header::UPGRADE], "websocket", "{name}: 426 has Upgrade");
        }
        _ => {
            assert!(h.get(header::ALLOW).is_none(), "{name}");
            assert!(h.get(header::SEC_WEBSOCKET_VERSION).is_none(), "{name}");
        }
    }
    assert!(h.get(header::SEC_WEBSOCKET_ACCEPT).is_none(), "{name}");
}

fn run(cases: &[(&str, Req, Policy, Expect)]) {
    for (name, req, policy, expect) in cases {
        check(name, req, policy, expect);
    }
}

#[test]
fn rfc6455_4_2_1_request_requirements() {
    run(&[
        (
            "valid RFC 6455 §1.3 request",
            Req::valid(),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "Upgrade: WebSocket (case-insensitive)",
            Req::valid().set("upgrade", "WebSocket"),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "Connection: keep-alive, Upgrade",
            Req::valid().set("connection", "keep-alive, Upgrade"),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "Connection: UPGRADE",
            Req::valid().set("connection", "UPGRADE"),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "Connection split over two lines",
            Req::valid()
                .set("connection", "keep-alive")
                .add("connection", "upgrade"),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "Connection: notupgrade",
            Req::valid().set("connection", "notupgrade"),
            Policy::default(),
            rejected(400, "Connection"),
        ),
        (
            "Connection: keep-alive only",
            Req::valid().set("connection", "keep-alive"),
            Policy::default(),
            rejected(400, "Connection"),
        ),
        (
            "Connection missing",
            Req::valid().without("connection"),
            Policy::default(),
            rejected(400, "Connection"),
        ),
        (
            "Host missing",
            Req::valid().without("host"),
            Policy::default(),
            rejected(400, "Host"),
        ),
        (
            "Host duplicated",
            Req::valid().add("host", "other.example.com"),
            Policy::default(),
            rejected(400, "Host"),
        ),
        (
            "POST",
            Req::valid().method(Method::POST),
            Policy::default(),
            rejected(405, "GET"),
        ),
        (
            "CONNECT",
            Req::valid().method(Method::CONNECT),
            Policy::default(),
            rejected(405, "GET"),
        ),
        (
            "HTTP/1.0",
            Req::valid().version(Version::HTTP_10),
            Policy::default(),
            rejected(400, "HTTP/1.1"),
        ),
        (
            "HTTP/0.9",
            Req::valid().version(Version::HTTP_09),
            Policy::default(),
            rejected(400, "HTTP/1.1"),
        ),
    ]);
}

#[test]
fn rfc6455_4_4_version_negotiation() {
    run(&[
        (
            "version 8",
            Req::valid().set("sec-websocket-version", "8"),
            Policy::default(),
            rejected(426, "Sec-WebSocket-Version"),
        ),
        (
            "version missing",
            Req::valid().without("sec-websocket-version"),
            Policy::default(),
            rejected(426, "Sec-WebSocket-Version"),
        ),
        (
            "version duplicated",
            Req::valid().add("sec-websocket-version", "13"),
            Policy::default(),
            rejected(426, "Sec-WebSocket-Version"),
        ),
        (
            "version list in one line",
            Req::valid().set("sec-websocket-version", "13, 8"),
            Policy::default(),
            rejected(426, "Sec-WebSocket-Version"),
        ),
        (
            "version 14",
            Req::valid().set("sec-websocket-version", "14"),
            Policy::default(),
            rejected(426, "13"),
        ),
    ]);
}

#[test]
fn rfc6455_4_2_1_sec_websocket_key() {
    run(&[
        (
            "key missing",
            Req::valid().without("sec-websocket-key"),
            Policy::default(),
            rejected(400, "Sec-WebSocket-Key"),
        ),
        (
            // base64 of 15 bytes: 20 characters, no padding.
            "key of 15 bytes",
            Req::valid().set("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA"),
            Policy::default(),
            rejected(400, "16 bytes"),
        ),
        (
            // base64 of 17 bytes: 24 characters like a valid key, one '='.
            "key of 17 bytes",
            Req::valid().set("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAAA="),
            Policy::default(),
            rejected(400, "16 bytes"),
        ),
        (
            "key not base64",
            Req::valid().set("sec-websocket-key", "!!!!!!!!!!!!!!!!!!!!!!=="),
            Policy::default(),
            rejected(400, "16 bytes"),
        ),
        (
            "key unpadded",
            Req::valid().set("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ"),
            Policy::default(),
            rejected(400, "16 bytes"),
        ),
        (
            "key empty",
            Req::valid().set("sec-websocket-key", ""),
            Policy::default(),
            rejected(400, "16 bytes"),
        ),
        (
            "key duplicated",
            Req::valid().add("sec-websocket-key", KEY),
            Policy::default(),
            rejected(400, "more than one Sec-WebSocket-Key"),
        ),
    ]);
}

#[test]
fn origin_policy() {
    let list = || allow_list(&["https://example.com", "https://app.example.com"]);
    let only_ok = || origin_check(|o| o.is_some_and(|v| v == "https://ok.example"));
    run(&[
        (
            "Any: any origin",
            Req::valid().set("origin", "https://anything.example"),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "allow-list: allowed",
            Req::valid().set("origin", "https://app.example.com"),
            list(),
            ACCEPTED,
        ),
        (
            "allow-list: case-insensitive",
            Req::valid().set("origin", "HTTPS://Example.COM"),
            list(),
            ACCEPTED,
        ),
        (
            "allow-list: refused",
            Req::valid().set("origin", "https://evil.example"),
            list(),
            rejected(403, "Origin"),
        ),
        (
            "allow-list: a prefix is not a match",
            Req::valid().set("origin", "https://example.com.evil.example"),
            list(),
            rejected(403, "Origin"),
        ),
        (
            "allow-list: null origin refused",
            Req::valid().set("origin", "null"),
            list(),
            rejected(403, "Origin"),
        ),
        (
            "allow-list: absent origin allowed",
            Req::valid(),
            list(),
            ACCEPTED,
        ),
        (
            "Origin duplicated",
            Req::valid()
                .set("origin", "https://example.com")
                .add("origin", "https://evil.example"),
            list(),
            rejected(400, "Origin"),
        ),
        (
            "closure: allowed",
            Req::valid().set("origin", "https://ok.example"),
            only_ok(),
            ACCEPTED,
        ),
        (
            "closure: refused",
            Req::valid().set("origin", "https://nope.example"),
            only_ok(),
            rejected(403, "Origin"),
        ),
        (
            "closure: sees the absence of Origin",
            Req::valid(),
            only_ok(),
            rejected(403, "Origin"),
        ),
    ]);
}

#[test]
fn origin_allow_list_refuses_non_ascii_origin() {
    let mut headers = Req::valid().header_map();
    headers.insert(
        header::ORIGIN,
        HeaderValue::from_bytes(b"https://ex\xe4mple.com").unwrap(),
    );
    let err = negotiate(
        &Method::GET,
        Version::HTTP_11,
        &headers,
        &allow_list(&["https://example.com"]),
    )
    .unwrap_err();
    assert_eq!(err.status, StatusCode::FORBIDDEN);
}

#[test]
fn rfc6455_4_2_2_subprotocols() {
    run(&[
        (
            "no server protocols: none selected",
            Req::valid().set("sec-websocket-protocol", "chat"),
            Policy::default(),
            ACCEPTED,
        ),
        (
            "server preference order wins",
            Req::valid().set("sec-websocket-protocol", "superchat, chat"),
            preferred(&["chat", "superchat"]),
            accepted_with_protocol("chat"),
        ),
        (
            "only one in common",
            Req::valid().set("sec-websocket-protocol", "v1.proto, v2.proto"),
            preferred(&["v3.proto", "v2.proto"]),
            accepted_with_protocol("v2.proto"),
        ),
        (
            "none matching: no header",
            Req::valid().set("sec-websocket-protocol", "mqtt, stomp"),
            preferred(&["chat"]),
            ACCEPTED,
        ),
        (
            "client offers none: no header",
            Req::valid(),
            preferred(&["chat"]),
            ACCEPTED,
        ),
        (
            "protocols across several header lines",
            Req::valid()
                .set("sec-websocket-protocol", "a")
                .add("sec-websocket-protocol", "b,  c"),
            preferred(&["c", "b"]),
            accepted_with_protocol("c"),
        ),
        (
            "selector closure gets the client's order",
            Req::valid().set("sec-websocket-protocol", "first, second, third"),
            selector(|offers: &[&str]| {
                assert_eq!(offers, ["first", "second", "third"]);
                offers.last().map(|s| s.to_string())
            }),
            accepted_with_protocol("third"),
        ),
        (
            "selector closure declining",
            Req::valid().set("sec-websocket-protocol", "chat"),
            selector(|_: &[&str]| None),
            ACCEPTED,
        ),
        (
            "selector returning an unoffered protocol is ignored",
            Req::valid().set("sec-websocket-protocol", "chat"),
            selector(|_: &[&str]| Some("admin".to_string())),
            ACCEPTED,
        ),
        (
            "selector is not called without offers",
            Req::valid(),
            selector(|_: &[&str]| panic!("called without offers")),
            ACCEPTED,
        ),
    ]);
}

#[cfg(feature = "deflate")]
#[test]
fn rfc7692_extension_negotiation() {
    const PMD: &str = "permessage-deflate; server_max_window_bits=12";
    run(&[
        (
            "permessage-deflate offered",
            Req::valid().set("sec-websocket-extensions", "permessage-deflate"),
            with_deflate(),
            Expect::Accept {
                protocol: None,
                extensions: Some(PMD),
            },
        ),
        (
            "client_max_window_bits offered",
            Req::valid().set(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
            with_deflate(),
            Expect::Accept {
                protocol: None,
                extensions: Some(
                    "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
                ),
            },
        ),
        (
            "offer on a second header line",
            Req::valid()
                .set("sec-websocket-extensions", "x-unknown")
                .add("sec-websocket-extensions", "permessage-deflate"),
            with_deflate(),
            Expect::Accept {
                protocol: None,
                extensions: Some(PMD),
            },
        ),
        (
            "first acceptable offer wins",
            Req::valid().set(
                "sec-websocket-extensions",
                "permessage-deflate; server_max_window_bits=16, permessage-deflate",
            ),
            with_deflate(),
            Expect::Accept {
                protocol: None,
                extensions: Some(PMD),
            },
        ),
        (
            "malformed header: no extension, still 101",
            Req::valid().set("sec-websocket-extensions", "permessage-deflate; =1"),
            with_deflate(),
            ACCEPTED,
        ),
        (
            "malformed second line voids the offer",
            Req::valid()
                .set("sec-websocket-extensions", "permessage-deflate")
                .add("sec-websocket-extensions", "x; \"unterminated"),
            with_deflate(),
            ACCEPTED,
        ),
        (
            "unknown extension only",
            Req::valid().set("sec-websocket-extensions", "x-webkit-deflate-frame"),
            with_deflate(),
            ACCEPTED,
        ),
        (
            "compression disabled by policy",
            Req::valid().set("sec-websocket-extensions", "permessage-deflate"),
            Policy::default(),
            ACCEPTED,
        ),
        ("no offer", Req::valid(), with_deflate(), ACCEPTED),
    ]);
}

#[cfg(feature = "deflate")]
#[test]
fn protocol_and_extension_together() {
    let policy = Policy {
        protocols: Protocols::Preferred(vec!["chat".to_string()].into()),
        deflate: Some(DeflateConfig::default()),
        ..Policy::default()
    };
    check(
        "protocol and extension",
        &Req::valid()
            .set("sec-websocket-protocol", "chat")
            .set("sec-websocket-extensions", "permessage-deflate"),
        &policy,
        &Expect::Accept {
            protocol: Some("chat"),
            extensions: Some("permessage-deflate; server_max_window_bits=12"),
        },
    );
}

#[test]
fn checks_run_in_a_fixed_order() {
    // A request wrong in several ways gets the first applicable status:
    // method, then HTTP version, then headers.
    let bad = Req::valid()
        .method(Method::POST)
        .version(Version::HTTP_10)
        .without("host")
        .set("sec-websocket-version", "8");
    assert_eq!(bad.negotiate(&Policy::default()).unwrap_err().status, 405);
    let bad = bad.method(Method::GET);
    assert_eq!(bad.negotiate(&Policy::default()).unwrap_err().status, 400);
}

#[test]
fn is_upgrade_attempt_needs_websocket_in_upgrade() {
    let plain = Req::valid()
        .without("upgrade")
        .without("connection")
        .without("sec-websocket-key")
        .without("sec-websocket-version");
    assert!(!is_upgrade_attempt(&plain.header_map()), "plain GET");
    for (value, expected) in [
        ("websocket", true),
        ("WebSocket", true),
        ("h2c, websocket", true),
        ("h2c", false),
        ("notwebsocket", false),
        ("websocket2", false),
    ] {
        let req = Req::valid().set("upgrade", value);
        assert_eq!(
            is_upgrade_attempt(&req.header_map()),
            expected,
            "Upgrade: {value}"
        );
    }
}

#[test]
fn service_unavailable_response_has_retry_after() {
    let reject = Reject {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "too many connections",
    };
    let res: Response<Bytes> = reject.response();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert_eq!(res.body(), "too many connections\n");
}

#[test]
fn accept_value_is_computed_from_the_key() {
    let req = Req::valid().set("sec-websocket-key", "AQIDBAUGBwgJCgsMDQ4PEA==");
    let accept = req.negotiate(&Policy::default()).unwrap();
    assert_eq!(accept.accept, accept_key(b"AQIDBAUGBwgJCgsMDQ4PEA=="));
    assert_ne!(accept.accept, ACCEPT);
}
