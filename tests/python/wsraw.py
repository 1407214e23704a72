"""A minimal raw-socket WebSocket client, for what high-level clients won't do:
hand-made frames (unmasked, reserved opcodes, RSV bits, invalid UTF-8,
interleaved control frames) and reading the server's frame bits on the wire."""
import base64
import hashlib
import os
import socket
import struct
import zlib
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass
class Frame:
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload: bytes

    def close_code(self):
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def close_reason(self):
        return self.payload[2:].decode("utf-8")

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return (f"Frame(fin={self.fin}, rsv1={self.rsv1}, opcode={self.opcode:#x}, "
                f"masked={self.masked}, len={len(self.payload)}, payload={p!r})")


def encode_frame(opcode, payload=b"", *, fin=True, rsv1=False, rsv2=False,
                 rsv3=False, mask=True, length=None):
    """Build a frame. `length` overrides the announced payload length."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) \
        | (0x10 if rsv3 else 0) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        key = os.urandom(4)
        return head + key + apply_mask(payload, key)
    return head + payload


def apply_mask(data, key):
    if not data:
        return b""
    k = int.from_bytes((key * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(len(data), "big")


def deflate_message(data, wbits=15, strategy=zlib.Z_DEFAULT_STRATEGY, compressor=None):
    """RFC 7692 compression: raw deflate, sync flush, strip 00 00 ff ff."""
    c = compressor or zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                       -wbits, 8, strategy)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_message(data, decompressor=None, wbits=15):
    d = decompressor or zlib.decompressobj(-wbits)
    return d.decompress(data + b"\x00\x00\xff\xff")


class ConnectionClosedByPeer(Exception):
    pass


class RawWS:
    def __init__(self, host, port, *, path="/", extensions=None, timeout=10.0,
                 handshake=True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.host, self.port = host, port
        self.buf = b""
        self.status = None
        self.headers = {}
        if handshake:
            self.handshake(path, extensions)

    # -- HTTP -----------------------------------------------------------------
    def handshake(self, path="/", extensions=None):
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.read_http_head()
        assert self.status == 101, f"expected 101, got {self.status} {self.headers}"
        expect = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        assert self.headers.get("sec-websocket-accept") == expect, self.headers
        assert self.headers.get("upgrade", "").lower() == "websocket", self.headers
        return self

    def read_http_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            self.headers[k] = (self.headers[k] + ", " + v.strip()) if k in self.headers else v.strip()
        return self.status, self.headers

    @property
    def extensions(self):
        return self.headers.get("sec-websocket-extensions")

    # -- frames -----------------------------------------------------------------
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send_close(self, code=None, reason=b"", **kw):
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send_frame(CLOSE, payload, **kw)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionClosedByPeer("connection closed by the server")
        self.buf += chunk

    def _need(self, n):
        while len(self.buf) < n:
            self._fill()

    def recv_frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self._need(pos + 4)
            key = self.buf[pos:pos + 4]
            pos += 4
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if masked:
            payload = apply_mask(payload, key)
        return Frame(bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10),
                     b0 & 0x0F, masked, payload)

    def recv_data_frame(self):
        """Next non-control frame; pings are answered, pongs are skipped."""
        while True:
            f = self.recv_frame()
            if f.opcode == PING:
                self.send_frame(PONG, f.payload)
            elif f.opcode == PONG:
                continue
            else:
                return f

    def recv_message(self, decompressor=None, wbits=15):
        """Reassemble one message. Returns (opcode, payload, first_frame_rsv1, frames)."""
        first = self.recv_data_frame()
        assert first.opcode in (TEXT, BINARY), f"expected a data frame, got {first}"
        frames = [first]
        while not frames[-1].fin:
            f = self.recv_data_frame()
            assert f.opcode == CONT, f"expected continuation, got {f}"
            frames.append(f)
        data = b"".join(f.payload for f in frames)
        if first.rsv1:
            data = inflate_message(data, decompressor, wbits)
        return first.opcode, data, first.rsv1, frames

    def expect_close(self):
        """Read until the server's close frame; skip data frames. Returns the frame."""
        while True:
            f = self.recv_frame()
            if f.opcode == CLOSE:
                return f

    def expect_eof(self, timeout=5.0):
        """The server must close the TCP connection (after its close frame)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except ConnectionResetError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
