//! The opening handshake's `negotiate` with arbitrary methods, versions and
//! headers, and `parse_extensions` on arbitrary header lines.
//!
//! Invariants: no panic; an accepted request had exactly one valid key and
//! its accept value is `accept_key(key)`; the 101 response builds, and any
//! negotiated `Sec-WebSocket-Extensions` answer parses and is accepted by
//! the same negotiation; a selected subprotocol was offered; parsed offers
//! re-serialise (quoting every value) to the same offers.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version, header};
use libfuzzer_sys::fuzz_target;
use tower_ws::DeflateConfig;
use tower_ws::extensions::deflate::negotiate as negotiate_deflate;
use tower_ws::extensions::{ExtensionOffer, parse_extensions};
use tower_ws::handshake::{Policy, Protocols, accept_key, negotiate};

const NAMES: [&str; 10] = [
    "upgrade",
    "connection",
    "host",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "origin",
    "x-other",
    "content-length",
];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    version: u8,
    policy: u8,
    /// A valid request first, so the fuzzer starts from an accepted one.
    valid_base: bool,
    headers: Vec<(u8, Vec<u8>)>,
    extension_lines: Vec<String>,
}

fn serialise(offers: &[ExtensionOffer]) -> String {
    let mut s = String::new();
    for (i, o) in offers.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&o.name);
        for (k, v) in &o.params {
            s.push_str("; ");
            s.push_str(k);
            if let Some(v) = v {
                s.push_str("=\"");
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s
}

fuzz_target!(|input: Input| {
    // parse_extensions alone, and its round trip.
    let lines: Vec<&str> = input.extension_lines.iter().map(String::as_str).collect();
    if let Ok(offers) = parse_extensions(lines.iter().copied()) {
        for o in &offers {
            assert!(!o.name.is_empty());
            assert_eq!(o.name, o.name.to_ascii_lowercase());
        }
        let again =
            parse_extensions([serialise(&offers).as_str()]).expect("re-serialised offers parse");
        assert_eq!(again, offers, "offers do not round-trip");
        let _ = negotiate_deflate(&offers, &DeflateConfig::default());
    }

    let method = match input.method % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::CONNECT,
        _ => Method::from_bytes(b"BREW").unwrap(),
    };
    let version = [
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
    ][usize::from(input.version % 4)];
    let mut headers = HeaderMap::new();
    if input.valid_base {
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    for (name, value) in input.headers.iter().take(32) {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(*name) % NAMES.len()]);
        if name == header::SEC_WEBSOCKET_EXTENSIONS || input.policy & 0x10 != 0 {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
    let deflate = DeflateConfig::default();
    let policy = Policy {
        protocols: if input.policy & 1 != 0 {
            Protocols::Preferred(vec!["chat".to_string(), "v2.json".to_string()].into())
        } else {
            Protocols::None
        },
        origins: Default::default(),
        deflate: (input.policy & 2 != 0).then(|| deflate.clone()),
    };
    match negotiate(&method, version, &headers, &policy) {
        Ok(accept) => {
            assert_eq!(method, Method::GET);
            assert!(version >= Version::HTTP_11);
            let keys: Vec<_> = headers.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
            assert_eq!(keys.len(), 1);
            assert_eq!(accept.accept, accept_key(keys[0].as_bytes()));
            let res: http::Response<()> = accept.response();
            assert_eq!(res.status(), 101);
            if let Some(p) = &accept.protocol {
                let offered = headers
                    .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .any(|t| t.trim() == p);
                assert!(offered, "selected a subprotocol the client did not offer");
            }
            if let Some((params, _)) = &accept.deflate {
                assert!(policy.deflate.is_some());
                assert!((8..=15).contains(&params.server_max_window_bits));
                assert!((8..=15).contains(&params.client_max_window_bits));
                let answer = res
                    .headers()
                    .get(header::SEC_WEBSOCKET_EXTENSIONS)
                    .expect("the answer is a valid header value");
                let answered = parse_extensions([answer.to_str().unwrap()]).expect("answer parses");
                assert_eq!(answered.len(), 1);
                // What we answer, offered back, is acceptable as it is.
                let (again, _) =
                    negotiate_deflate(&answered, &deflate).expect("answer is acceptable");
                assert_eq!(again.server_max_window_bits, params.server_max_window_bits);
            } else {
                assert!(!res.headers().contains_key(header::SEC_WEBSOCKET_EXTENSIONS));
            }
        }
        Err(reject) => {
            assert!([400, 403, 405, 426, 503].contains(&reject.status.as_u16()));
            let res: http::Response<bytes::Bytes> = reject.response();
            assert_eq!(res.status(), reject.status);
        }
    }
});
