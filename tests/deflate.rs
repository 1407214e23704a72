//! permessage-deflate over real TCP: what goes on the wire, window bits 8,
//! and a decompression bomb.

mod support;

use std::time::{Duration, Instant};

use support::{RawClient, echo, serve};
use tower_ws::{Config, DeflateConfig, WebSocketService};

fn deflate_raw(data: &[u8], bits: u8) -> Vec<u8> {
    let mut z = zlib_rs::Deflate::new(1, false, bits);
    let mut out = vec![0u8; data.len() / 100 + 1024];
    let mut produced = 0;
    let mut input = data;
    loop {
        let before_in = z.total_in();
        let before_out = z.total_out();
        z.compress(
            input,
            &mut out[produced..],
            zlib_rs::DeflateFlush::SyncFlush,
        )
        .unwrap();
        input = &input[(z.total_in() - before_in) as usize..];
        produced += (z.total_out() - before_out) as usize;
        if input.is_empty() && produced < out.len() {
            break;
        }
        out.resize(out.len() * 2, 0);
    }
    out.truncate(produced);
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(produced - 4);
    out
}

fn inflate_raw(data: &[u8], bits: u8) -> Vec<u8> {
    let mut z = zlib_rs::Inflate::new(false, bits);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = vec![0u8; 1 << 20];
    z.decompress(&input, &mut out, zlib_rs::InflateFlush::SyncFlush)
        .expect("valid deflate data");
    out.truncate(z.total_out() as usize);
    out
}

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

#[tokio::test]
async fn compressed_echo_sets_rsv1_on_the_first_frame_only() {
    let config = Config::default().out_frame_size(1000);
    let addr = serve(WebSocketService::new(echo).config(config)).await;
    let (mut raw, head) =
        RawClient::connect(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    let text: Vec<u8> = (0..20_000)
        .map(|i| b"abcdefghij"[i % 10] ^ ((i / 1000) as u8 & 1))
        .collect();
    raw.send(true, 0b100, 0x1, &deflate_raw(&text, 15)).await;
    let mut compressed = Vec::new();
    let first = raw.recv().await.unwrap();
    assert_eq!(
        (first.opcode, first.rsv),
        (0x1, 0b100),
        "RSV1 on the first frame"
    );
    compressed.extend_from_slice(&first.payload);
    let mut fin = first.fin;
    while !fin {
        let next = raw.recv().await.unwrap();
        assert_eq!(
            (next.opcode, next.rsv),
            (0x0, 0),
            "continuations carry no RSV1"
        );
        compressed.extend_from_slice(&next.payload);
        fin = next.fin;
    }
    assert!(compressed.len() < text.len() / 4);
    assert_eq!(inflate_raw(&compressed, 15), text);
}

#[tokio::test]
async fn server_max_window_bits_8_is_answered_8_and_inflates_with_a_256_byte_window() {
    let config = Config::default().deflate(Some(DeflateConfig::default().threshold(0)));
    let addr = serve(WebSocketService::new(echo).config(config)).await;
    let (mut raw, head) = RawClient::connect(
        addr,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n",
    )
    .await;
    assert!(
        head.contains("permessage-deflate; server_max_window_bits=8\r\n"),
        "{head}"
    );
    let mut seed = 99u32;
    let block: Vec<u8> = (0..240)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 24) as u8
        })
        .collect();
    let data: Vec<u8> = block.iter().cycle().take(50_000).copied().collect();
    raw.send(true, 0b100, 0x2, &deflate_raw(&data, 15)).await;
    let frame = raw.recv().await.unwrap();
    assert_eq!(frame.rsv, 0b100);
    assert!(
        frame.payload.len() < data.len() / 10,
        "{} bytes",
        frame.payload.len()
    );
    assert_eq!(inflate_raw(&frame.payload, 8), data);
}

#[tokio::test]
async fn decompression_bomb_is_closed_with_1009_quickly_and_memory_stays_flat() {
    let config = Config::default().max_message_size(1 << 20);
    let addr = serve(WebSocketService::new(echo).config(config)).await;
    let (mut raw, _) =
        RawClient::connect(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    // 1 GiB of zeros deflates to about 1 MiB; send only its first 64 KiB,
    // which alone inflates to far more than the 1 MiB limit.
    let zeros = vec![0u8; 64 << 20];
    let mut bomb = deflate_raw(&zeros, 15);
    bomb.truncate(64 << 10);
    drop(zeros);
    let before = rss_bytes();
    let start = Instant::now();
    raw.send(true, 0b100, 0x2, &bomb).await;
    let close = raw.recv().await.expect("a close frame");
    assert_eq!(close.close_code(), Some(1009));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 16 << 20, "resident memory grew by {grown} bytes");
}
