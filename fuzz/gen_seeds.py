#!/usr/bin/env python3
"""Writes the hand-made seed corpus of the `frames` target (RFC 6455 §5.7
examples, fragments, control frames, a compressed message, violations).
Byte 0 selects the extension offer (low 3 bits: 0-5 deflate, 6-7 none)
and the limits (bits 3-4); byte 1 how the input is cut (see frames.rs)."""
import os, zlib

KEY = bytes([0x37, 0xfa, 0x21, 0x3d])

def frame(b0, payload, key=KEY):
    n = len(payload)
    if n < 126:
        h = bytes([b0, 0x80 | n])
    elif n <= 0xffff:
        h = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    return h + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    z = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return z[:-4]

NONE, DEFLATE = 6 | (3 << 3), 0 | (3 << 3)
TINY = 6 | (0 << 3)
seeds = {
    "rfc_hello": (NONE, 7, frame(0x81, b"Hello")),
    "rfc_hello_bytewise": (NONE, 0, frame(0x81, b"Hello")),
    "rfc_fragmented": (NONE, 2, frame(0x01, b"Hel") + frame(0x80, b"lo")),
    "rfc_ping_pong": (NONE, 7, frame(0x89, b"Hello") + frame(0x8a, b"Hello")),
    "binary_256": (NONE, 5, frame(0x82, bytes(range(256)))),
    "binary_64k": (NONE, 6, frame(0x82, bytes(65536))),
    "ping_between_fragments": (NONE, 3, frame(0x01, b"a") + frame(0x89, b"p") + frame(0x80, b"b")),
    "close_1000": (NONE, 7, frame(0x88, (1000).to_bytes(2, "big") + b"bye")),
    "close_empty": (NONE, 7, frame(0x88, b"")),
    "close_one_byte": (NONE, 7, frame(0x88, b"\x03")),
    "utf8_split": (NONE, 1, frame(0x01, "é€".encode()[:3]) + frame(0x80, "é€".encode()[3:])),
    "utf8_invalid": (NONE, 7, frame(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")),
    "huge_length": (NONE, 7, bytes([0x82, 0xff]) + (2**63 - 1).to_bytes(8, "big") + KEY),
    "tiny_limits_fragments": (TINY, 7, b"".join(frame(0x00 if i else 0x02, b"x") for i in range(6))),
    "deflate_hello": (DEFLATE, 7, frame(0xc1, bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]))),
    "deflate_fragmented": (DEFLATE, 4, (lambda z: frame(0x41, z[:5]) + frame(0x80, z[5:]))(deflate(b"Hello Hello Hello Hello " * 20))),
    "deflate_rsv1_continuation": (DEFLATE, 7, frame(0x41, deflate(b"ab")[:1]) + frame(0xc0, deflate(b"ab")[1:])),
    "deflate_garbage": (DEFLATE, 7, frame(0xc2, b"\xff\xff\xff\xff\xff")),
    "deflate_bomb": (0 | (1 << 3), 7, frame(0xc2, deflate(bytes(1 << 20)))),
    "unmasked": (NONE, 7, bytes([0x81, 0x05]) + b"Hello"),
    "reserved_opcode": (NONE, 7, frame(0x83, b"")),
}
os.makedirs("corpus/frames", exist_ok=True)
for name, (sel, mode, data) in seeds.items():
    with open(f"corpus/frames/{name}", "wb") as f:
        f.write(bytes([sel, mode]) + data)
