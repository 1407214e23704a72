//! Memory held per connection by permessage-deflate (RFC 7692), measured as
//! resident memory of many codecs after each inflated and deflated a message.
//!
//! `cargo test --release --test deflate_memory -- --nocapture` prints the
//! figures; the test fails if the defaults hold more than 64 KiB.

use bytes::BytesMut;
use tower_ws::DeflateConfig;
use tower_ws::extensions::Extension;
use tower_ws::extensions::deflate::{PerMessageDeflate, negotiate};
use tower_ws::extensions::parse_extensions;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 1024
}

/// Resident bytes per codec after each inflated and deflated 48 KiB of JSON-like
/// text (enough to touch every page of a 15-bit window). The codecs stay
/// alive in `keep`, so freed memory of one measurement cannot hide another's.
fn bytes_per_connection(
    offer: &str,
    config: &DeflateConfig,
    keep: &mut Vec<PerMessageDeflate>,
) -> usize {
    const N: usize = 400;
    let offers = parse_extensions([offer]).unwrap();
    let text: String = (0..1200)
        .map(|i| {
            format!(
                "{{\"user\":\"u{i}\",\"text\":\"message {}\"}}",
                i * 7919 % 10007
            )
        })
        .collect();
    let (params, mem) = negotiate(&offers, config).unwrap();
    let wire = PerMessageDeflate::new(params, mem, config)
        .encode(text.as_bytes())
        .unwrap()
        .unwrap();
    let mut out = BytesMut::with_capacity(text.len());
    let before = rss_bytes();
    for _ in 0..N {
        let (params, mem) = negotiate(&offers, config).unwrap();
        let mut codec = PerMessageDeflate::new(params, mem, config);
        out.clear();
        codec.decode(&wire, true, &mut out, 1 << 20).unwrap();
        assert_eq!(out.len(), text.len());
        codec.encode(text.as_bytes()).unwrap();
        keep.push(codec);
    }
    rss_bytes().saturating_sub(before) / N
}

#[test]
fn defaults_hold_at_most_64_kib_per_connection() {
    let mut keep = Vec::new();
    // Warm up the allocator and the per-thread compressor pool.
    bytes_per_connection("permessage-deflate", &DeflateConfig::default(), &mut keep);
    let cases = [
        (
            "defaults, client offers client_max_window_bits (browsers, websockets)",
            "permessage-deflate; client_max_window_bits",
            DeflateConfig::default(),
        ),
        (
            "defaults, plain offer (client window 15)",
            "permessage-deflate",
            DeflateConfig::default(),
        ),
        (
            "no context takeover either way",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            DeflateConfig::default(),
        ),
        (
            "window bits 15 both ways, memLevel 8, context takeover (max_memory 512 KiB)",
            "permessage-deflate; client_max_window_bits",
            DeflateConfig::default()
                .server_max_window_bits(15)
                .client_max_window_bits(15)
                .mem_level(8)
                .max_memory(512 << 10),
        ),
    ];
    let mut figures = Vec::new();
    for (name, offer, config) in &cases {
        let per = bytes_per_connection(offer, config, &mut keep);
        println!("{:>7.1} KiB  {name}", per as f64 / 1024.0);
        figures.push(per);
    }
    assert!(figures[0] <= 64 << 10, "defaults hold {} bytes", figures[0]);
    assert!(figures[1] <= 64 << 10, "defaults hold {} bytes", figures[1]);
    assert!(
        figures[2] <= 4 << 10,
        "no context takeover holds {} bytes",
        figures[2]
    );
    assert!(
        figures[3] > figures[0],
        "a held compressor must show: {figures:?}"
    );
}
