//! Micro benchmarks of the sans-I/O engine: `cargo bench --bench micro`.
//!
//! Unmasking against the byte-at-a-time definition, frame header parse and
//! encode, UTF-8 validation of large text, permessage-deflate both ways, a
//! whole message round trip through the engine, and the client's masking
//! cost (a key per frame, a masked copy per message).

use std::hint::black_box;

use bytes::{Buf, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_ws::extensions::Extension;
use tower_ws::extensions::deflate::{PerMessageDeflate, negotiate};
use tower_ws::extensions::parse_extensions;
use tower_ws::proto::mask::{apply_mask, apply_mask_reference};
use tower_ws::proto::{Connection, Role, Utf8Validator, WriteBuf};
use tower_ws::{Config, DeflateConfig};

fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

fn unmasking(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [64usize, 1024, 64 << 10, 1 << 20] {
        let mut buf = vec![0xabu8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("word-at-a-time/{size}"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 1))
        });
        g.bench_function(format!("byte-at-a-time/{size}"), |b| {
            b.iter(|| apply_mask_reference(black_box(&mut buf), [1, 2, 3, 4], 1))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let text = "Grüße, 世界! The quick brown fox. ".repeat(32 << 10);
    let mut g = c.benchmark_group("utf8");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("incremental/1MiB", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            for chunk in text.as_bytes().chunks(16 << 10) {
                v.feed(black_box(chunk)).unwrap();
            }
            v.finish().unwrap();
        })
    });
    g.bench_function("std/1MiB", |b| {
        b.iter(|| {
            std::str::from_utf8(black_box(text.as_bytes()))
                .unwrap()
                .len()
        })
    });
    g.finish();
}

/// One echo through the engine: parse a masked frame, encode the reply.
fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_round_trip");
    for size in [20usize, 1024, 16 << 10] {
        let frame = masked_frame(0x2, &vec![7u8; size]);
        let mut conn = Connection::new(Role::Server, &Config::default(), None);
        let mut out = WriteBuf::new();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("binary/{size}"), |b| {
            b.iter(|| {
                let buf = conn.read_buf();
                buf.reserve(frame.len());
                buf.extend_from_slice(&frame);
                let msg = conn.poll_event(&mut out).unwrap().unwrap();
                conn.send(msg, &mut out).unwrap();
                let n = out.remaining();
                out.advance(n);
            })
        });
    }
    // Frame header parse and encode dominate small messages.
    let header_only = masked_frame(0x2, &[]);
    let mut conn = Connection::new(Role::Server, &Config::default(), None);
    let mut out = WriteBuf::new();
    g.throughput(Throughput::Elements(1));
    g.bench_function("empty_frame_parse_and_encode", |b| {
        b.iter(|| {
            conn.receive_data(&header_only);
            let msg = conn.poll_event(&mut out).unwrap().unwrap();
            conn.send(msg, &mut out).unwrap();
            let n = out.remaining();
            out.advance(n);
        })
    });
    g.finish();
}

fn deflate(c: &mut Criterion) {
    let json: String = (0..2000)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"text\":\"hello number {i}\"}},",
                i % 37
            )
        })
        .collect();
    let mut g = c.benchmark_group("deflate");
    g.throughput(Throughput::Bytes(json.len() as u64));
    for (name, config) in [
        ("default", DeflateConfig::default().threshold(0)),
        (
            "context_takeover_15",
            DeflateConfig::default()
                .threshold(0)
                .server_max_window_bits(15)
                .max_memory(1 << 20),
        ),
    ] {
        let offers = parse_extensions(["permessage-deflate; client_max_window_bits"]).unwrap();
        let (params, mem) = negotiate(&offers, &config).unwrap();
        let mut tx = PerMessageDeflate::new(params, mem, &config);
        let mut rx = PerMessageDeflate::new(params, mem, &config);
        g.bench_function(format!("compress/{name}"), |b| {
            b.iter(|| tx.encode(black_box(json.as_bytes())).unwrap())
        });
        let mut stateless = PerMessageDeflate::new(
            params,
            mem,
            &config.clone().server_no_context_takeover(true),
        );
        let wire_fresh = stateless.encode(json.as_bytes()).unwrap().unwrap();
        let mut out = BytesMut::with_capacity(json.len());
        g.bench_function(format!("inflate/{name}"), |b| {
            b.iter(|| {
                out.clear();
                // A fresh-context message inflates the same way every time.
                rx.decode(black_box(&wire_fresh), true, &mut out, usize::MAX)
                    .unwrap();
            })
        });
    }
    g.finish();
}

/// The client's side: a masking key from the thread-local CSPRNG, and one
/// echo through a client engine (parse an unmasked frame, encode the reply
/// masked with a fresh key: the one masked copy).
fn client(c: &mut Criterion) {
    let mut g = c.benchmark_group("client");
    let keys = tower_ws::client::mask_keys();
    g.throughput(Throughput::Elements(1));
    g.bench_function("mask_key", |b| b.iter(|| black_box(keys.next_key())));
    for size in [20usize, 1024, 64 << 10] {
        let mut frame = vec![0x82u8];
        match size {
            n if n < 126 => frame.push(n as u8),
            n if n <= 0xffff => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend(std::iter::repeat_n(7u8, size));
        let mut conn = Connection::new(Role::Client(keys), &Config::default(), None);
        let mut out = WriteBuf::new();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("round_trip/{size}"), |b| {
            b.iter(|| {
                let buf = conn.read_buf();
                buf.reserve(frame.len());
                buf.extend_from_slice(&frame);
                let msg = conn.poll_event(&mut out).unwrap().unwrap();
                conn.send(msg, &mut out).unwrap();
                let n = out.remaining();
                out.advance(n);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, unmasking, utf8, round_trip, deflate, client);
criterion_main!(benches);
