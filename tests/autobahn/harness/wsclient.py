"""Minimal asyncio re-implementation of the parts of Autobahn's
``WebSocketClientProtocol`` + ``FuzzingClientProtocol`` that the
autobahntestsuite fuzzingclient cases drive.

Behaviour mirrors autobahn (the version the testsuite was written against)
with the fuzzing client options: failByDrop=False, maskClientFrames=True,
echoCloseCodeReason=False, closeHandshakeTimeout=1s,
serverConnectionDropTimeout=1s, openHandshakeTimeout=5s.

Close bookkeeping (what Case.onConnectionLost inspects):
  closedByMe   -- True iff the last close frame we sent was not a reply
  failedByMe   -- we failed the connection (protocol violation / killAfter)
  droppedByMe  -- we closed the TCP connection (timeouts, failing while closing)
  wasClean     -- a close frame was received from the peer (set back to False
                  by the close-handshake / server-drop timeouts)
  remoteCloseCode / remoteCloseReason, localCloseCode / localCloseReason
"""

import asyncio
import base64
import codecs
import collections
import hashlib
import os
import socket
import struct
import time
import zlib
from urllib.parse import urlparse

from py2load import to_bytes
from stubs import WebSocketProtocol
import pmce

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
USER_AGENT = "AutobahnTestSuite/25.10.1-py3harness"

MAX_WIRELOG = 400


def mask_bytes(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def _hex(data, maxlen=64):
    data = bytes(data)
    s = data[:maxlen].hex()
    return s + (" ..." if len(data) > maxlen else "")


def parse_extensions(header):
    """'a; x=1; y, b' -> [('a', {'x': ['1'], 'y': [True]}), ('b', {})]"""
    res = []
    for ext in header.split(","):
        ext = ext.strip()
        if not ext:
            continue
        parts = [p.strip() for p in ext.split(";")]
        params = {}
        for p in parts[1:]:
            if not p:
                continue
            if "=" in p:
                k, v = p.split("=", 1)
                v = v.strip()
                if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                    v = v[1:-1]
                params.setdefault(k.strip(), []).append(v)
            else:
                params.setdefault(p, []).append(True)
        res.append((parts[0].lower(), params))
    return res


def parse_headers(lines):
    """HTTP header lines -> {lower-case name: value}; repeated names are
    joined with ", " (RFC 9110 sec. 5.3)."""
    headers = {}
    for ln in lines:
        if ":" not in ln:
            continue
        k, v = ln.split(":", 1)
        k = k.strip().lower()
        v = v.strip()
        headers[k] = headers[k] + ", " + v if k in headers else v
    return headers


class TrafficStats(object):
    def __init__(self):
        self.outgoingOctetsWireLevel = 0
        self.outgoingOctetsWebSocketLevel = 0
        self.outgoingOctetsAppLevel = 0
        self.outgoingWebSocketFrames = 0
        self.outgoingWebSocketMessages = 0
        self.incomingOctetsWireLevel = 0
        self.incomingOctetsWebSocketLevel = 0
        self.incomingOctetsAppLevel = 0
        self.incomingWebSocketFrames = 0
        self.incomingWebSocketMessages = 0

    def __json__(self):
        d = dict(self.__dict__)
        d["outgoingCompressionRatio"] = (float(self.outgoingOctetsWebSocketLevel) / self.outgoingOctetsAppLevel
                                         if self.outgoingOctetsAppLevel else None)
        d["incomingCompressionRatio"] = (float(self.incomingOctetsWebSocketLevel) / self.incomingOctetsAppLevel
                                         if self.incomingOctetsAppLevel else None)
        return d


class _Factory(object):
    isServer = False


class ProtocolFailure(Exception):
    pass


class FuzzingClientProtocol(asyncio.Protocol, WebSocketProtocol):
    # wsserver.FuzzingServerProtocol plays the other end with the same code:
    # frames unmasked out and required masked in, and the server drops TCP
    # once the closing handshake is done (RFC 6455 §5.1, §7.1.1).
    IS_SERVER = False
    openHandshakeTimeout = 5.0
    closeHandshakeTimeout = 1.0
    serverConnectionDropTimeout = 1.0

    SEND_GROUND, SEND_MESSAGE_BEGIN, SEND_INSIDE_MESSAGE, SEND_INSIDE_MESSAGE_FRAME = range(4)

    def __init__(self, loop, url, log=None):
        self.loop = loop
        self.url = url
        self.log = log or (lambda *a: None)
        u = urlparse(url)
        if u.scheme != "ws":
            raise ValueError("only ws:// URLs are supported: %r" % url)
        self.host = u.hostname
        self.port = u.port or 80
        self.resource = (u.path or "/") + ("?" + u.query if u.query else "")

        self.factory = _Factory()
        self.state = self.STATE_CONNECTING
        self.transport = None
        self.done = loop.create_future()

        # case hooks
        self.runCase = None
        self.perMessageCompressionOffers = []
        self.perMessageCompressionAccept = lambda response: None
        self._perMessageCompress = None
        self.autoFragmentSize = 0

        # close bookkeeping
        self.connectionWasOpen = False
        self.closedByMe = False
        self.failedByMe = False
        self.droppedByMe = False
        self.wasClean = False
        self.wasNotCleanReason = None
        self.wasServerConnectionDropTimeout = False
        self.wasOpenHandshakeTimeout = False
        self.wasCloseHandshakeTimeout = False
        self.localCloseCode = None
        self.localCloseReason = None
        self.remoteCloseCode = None
        self.remoteCloseReason = None
        self.handshakeError = None
        self.violations = []
        self.http_response_data = None
        self.agent = None

        # logging / stats
        self.createWirelog = True
        self.createStats = True
        self.wirelog = collections.deque(maxlen=MAX_WIRELOG)
        self.rxOctetStats = {}
        self.rxFrameStats = {}
        self.txOctetStats = {}
        self.txFrameStats = {}
        self.trafficStats = TrafficStats()

        # sending
        self._send_queue = collections.deque()
        self._triggered = False
        self.send_state = self.SEND_GROUND
        self._timers = []
        self._close_timer = None
        self._drop_timer = None

        # receiving
        self._hsbuf = bytearray()
        self._rbuf = bytearray()
        self._rpos = 0
        self._rx_dead = False
        self._msg_opcode = None
        self._msg_parts = []
        self._msg_compressed = False
        self._msg_len = 0
        self._utf8 = None
        self.caseStart = None
        self.caseEnd = None

    # ------------------------------------------------------------------ misc
    def _wl(self, *entry):
        if self.createWirelog:
            self.wirelog.append(entry)

    def enableWirelog(self, enable):
        if enable != self.createWirelog:
            self.createWirelog = enable
            self.wirelog.append(("WLM", enable))

    def _call_later(self, delay, fn, *args):
        h = self.loop.call_later(delay, self._guard, fn, *args)
        self._timers.append(h)
        return h

    def _guard(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # a bug in a case or in the harness
            self.runner_error(e)

    def runner_error(self, e):
        import traceback
        tb = traceback.format_exc()
        self.log("harness/case exception: %s\n%s" % (e, tb))
        if not hasattr(self, "harness_errors"):
            self.harness_errors = []
        self.harness_errors.append("%s: %s" % (type(e).__name__, e))
        self.dropConnection(abort=True)

    # --------------------------------------------------------- timers (API)
    def continueLater(self, delay, fun, tag=None):
        self.wirelog.append(("CT", delay, tag))

        def run():
            if self.state != self.STATE_CLOSED:
                self.wirelog.append(("CTE", tag))
                fun()
        self._call_later(delay, run)

    def killAfter(self, delay):
        self.wirelog.append(("KL", delay))

        def run():
            if self.state != self.STATE_CLOSED:
                self.wirelog.append(("KLE",))
                self.failConnection()
        self._call_later(delay, run)

    def closeAfter(self, delay):
        self.wirelog.append(("TI", delay))

        def run():
            if self.state != self.STATE_CLOSED:
                self.wirelog.append(("TIE",))
                self.sendClose()
        self._call_later(delay, run)

    # ------------------------------------------------------------ transport
    def connection_made(self, transport):
        self._set_transport(transport)
        self._key = base64.b64encode(os.urandom(16))
        hostport = self.host if self.port == 80 else "%s:%d" % (self.host, self.port)
        lines = ["GET %s HTTP/1.1" % self.resource,
                 "User-Agent: %s" % USER_AGENT,
                 "Host: %s" % hostport,
                 "Upgrade: WebSocket",
                 "Connection: Upgrade",
                 "Pragma: no-cache",
                 "Cache-Control: no-cache",
                 "Sec-WebSocket-Key: %s" % self._key.decode("ascii")]
        if self.perMessageCompressionOffers:
            lines.append("Sec-WebSocket-Extensions: %s" % ", ".join(
                o.getExtensionString() for o in self.perMessageCompressionOffers))
        lines.append("Sec-WebSocket-Version: 13")
        req = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        self.http_request_data = req.decode("ascii")
        self._write(req)
        self._open_timer = self._call_later(self.openHandshakeTimeout, self._on_open_timeout)

    def _set_transport(self, transport):
        """Keeps the transport and turns Nagle off (Autobahn's tcpNoDelay):
        a frame is often two writes, header and payload."""
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def _on_open_timeout(self):
        if self.state == self.STATE_CONNECTING:
            self.wasOpenHandshakeTimeout = True
            self.wasNotCleanReason = "opening handshake timeout"
            self.dropConnection(abort=True)

    def _write(self, data):
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        n = len(data)
        self.trafficStats.outgoingOctetsWireLevel += n
        if self.createStats:
            self.txOctetStats[n] = self.txOctetStats.get(n, 0) + 1
        self._wl("TO", (n, _hex(data)))

    def data_received(self, data):
        n = len(data)
        self.trafficStats.incomingOctetsWireLevel += n
        if self.createStats:
            self.rxOctetStats[n] = self.rxOctetStats.get(n, 0) + 1
        self._wl("RO", (n, _hex(data)))
        try:
            if self.state == self.STATE_CONNECTING:
                self._hsbuf += data
                end = self._hsbuf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._hsbuf) > 65536:
                        self._handshake_failed("oversized HTTP response")
                    return
                head = bytes(self._hsbuf[:end])
                rest = bytes(self._hsbuf[end + 4:])
                self._hsbuf = bytearray()
                if not self._process_handshake(head):
                    return
                if rest:
                    self._rbuf += rest
                    self._process_frames()
            elif self.state != self.STATE_CLOSED and not self._rx_dead:
                self._rbuf += data
                self._process_frames()
        except Exception as e:
            self.runner_error(e)

    def eof_received(self):
        return False  # close our side too -> connection_lost

    def connection_lost(self, exc):
        self.state = self.STATE_CLOSED
        for t in self._timers:
            t.cancel()
        self._send_queue.clear()
        if not self.wasClean and not self.droppedByMe and self.wasNotCleanReason is None:
            self.wasNotCleanReason = "peer dropped the TCP connection without previous WebSocket closing handshake"
        try:
            if self.runCase is not None and self.connectionWasOpen:
                if self.wasClean:
                    self.runCase.onClose(self.wasClean, self.remoteCloseCode, self.remoteCloseReason)
                else:
                    self.runCase.onClose(self.wasClean, self.CLOSE_STATUS_CODE_ABNORMAL_CLOSE,
                                         "connection was closed uncleanly (%s)" % self.wasNotCleanReason)
        except Exception as e:
            self.log("case onClose exception: %r" % e)
        self.caseEnd = time.time()
        if not self.done.done():
            self.done.set_result(True)

    # ------------------------------------------------------------ handshake
    def _handshake_failed(self, reason):
        self.handshakeError = reason
        self.log("opening handshake failed: %s" % reason)
        self.wasNotCleanReason = "opening handshake failed: %s" % reason
        self.dropConnection(abort=True)

    def _process_handshake(self, head):
        text = head.decode("iso-8859-1")
        self.http_response_data = text
        lines = text.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1.1"):
            self._handshake_failed("bad HTTP status line %r" % lines[0])
            return False
        if status[1] != "101":
            self._handshake_failed("HTTP status %s (expected 101)" % " ".join(status[1:]))
            return False
        headers = parse_headers(lines[1:])
        self.agent = headers.get("server")
        if headers.get("upgrade", "").lower() != "websocket":
            self._handshake_failed("missing/invalid Upgrade header: %r" % headers.get("upgrade"))
            return False
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            self._handshake_failed("missing/invalid Connection header: %r" % headers.get("connection"))
            return False
        expect = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode("ascii")
        if headers.get("sec-websocket-accept") != expect:
            self._handshake_failed("Sec-WebSocket-Accept mismatch (%r, expected %r)"
                                   % (headers.get("sec-websocket-accept"), expect))
            return False
        if "sec-websocket-protocol" in headers:
            self._handshake_failed("server selected a subprotocol we did not offer")
            return False
        ext = headers.get("sec-websocket-extensions")
        if ext:
            for name, params in parse_extensions(ext):
                if name != "permessage-deflate" or not self.perMessageCompressionOffers:
                    self._handshake_failed("server accepted extension %r that was not offered" % name)
                    return False
                if self._perMessageCompress is not None:
                    self._handshake_failed("multiple permessage-deflate extensions in response")
                    return False
                try:
                    response = pmce.PerMessageDeflateResponse.parse(params)
                except ValueError as e:
                    self._handshake_failed(str(e))
                    return False
                err = self._check_response_vs_offers(response)
                if err:
                    self._handshake_failed("RFC 7692: " + err)
                    return False
                accept = self.perMessageCompressionAccept(response)
                if accept is None:
                    self._handshake_failed("permessage-deflate response not accepted by case")
                    return False
                self._perMessageCompress = pmce.PerMessageDeflate.createFromResponseAccept(accept)
        # open
        self._open_timer.cancel()
        self.state = self.STATE_OPEN
        self.connectionWasOpen = True
        self.caseStart = time.time()
        if self.runCase is not None:
            self.runCase.onOpen()
        return self.state != self.STATE_CLOSED

    def _check_response_vs_offers(self, r):
        """The response must be acceptable for at least one of the offers (RFC 7692 sec. 7)."""
        errs = []
        for o in self.perMessageCompressionOffers:
            if r.client_max_window_bits and not o.acceptMaxWindowBits:
                errs.append("client_max_window_bits in response but not offered")
            elif o.requestNoContextTakeover and not r.server_no_context_takeover:
                errs.append("server_no_context_takeover requested but missing in response")
            elif o.requestMaxWindowBits and not r.server_max_window_bits:
                errs.append("server_max_window_bits=%d requested but missing in response" % o.requestMaxWindowBits)
            elif o.requestMaxWindowBits and r.server_max_window_bits > o.requestMaxWindowBits:
                errs.append("server_max_window_bits=%d > requested %d" % (r.server_max_window_bits, o.requestMaxWindowBits))
            else:
                return None
        return "; ".join(sorted(set(errs)))

    # --------------------------------------------------------------- sending
    def sendData(self, data, sync=False, chopsize=None):
        if chopsize and chopsize > 0:
            n = len(data)
            i = 0
            while True:
                j = i + chopsize
                self._send_queue.append((data[i:min(j, n)], True))
                if j >= n:
                    break
                i = j
            self._trigger()
        elif sync or self._send_queue:
            self._send_queue.append((data, sync))
            self._trigger()
        else:
            self._write(data)

    def _trigger(self):
        if not self._triggered:
            self._triggered = True
            self._send()

    def _send(self):
        if self._send_queue:
            data, _sync = self._send_queue.popleft()
            if self.state != self.STATE_CLOSED:
                self._write(data)
            # re-enter the event loop so each queued chunk hits the wire separately
            self.loop.call_later(0.00001, self._send)
        else:
            self._triggered = False

    def sendFrame(self, opcode, payload=b"", fin=True, rsv=0, mask=None, payload_len=None,
                  chopsize=None, sync=False):
        payload = to_bytes(payload)
        if payload_len is not None:
            if len(payload) < 1:
                raise Exception("cannot construct repeated payload with length %d from payload of length %d"
                                % (payload_len, len(payload)))
            pl = payload * (payload_len // len(payload)) + payload[:payload_len % len(payload)]
        else:
            pl = payload
        n = len(pl)
        b0 = (0x80 if fin else 0) | ((rsv % 8) << 4) | (opcode % 128)
        if self.IS_SERVER and not mask:
            b1, key = 0, b""
        else:
            b1, key = 0x80, to_bytes(mask) if mask else os.urandom(4)
        if n <= 125:
            hdr = struct.pack("!BB", b0, b1 | n)
        elif n <= 0xFFFF:
            hdr = struct.pack("!BBH", b0, b1 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, b1 | 127, n)
        raw = hdr + key + (mask_bytes(pl, key) if key else pl)
        if opcode in (0, 1, 2):
            self.trafficStats.outgoingWebSocketFrames += 1
        if self.createStats:
            self.txFrameStats[opcode] = self.txFrameStats.get(opcode, 0) + 1
        self._wl("TF", (len(payload), _hex(payload)), opcode, fin, rsv, key.hex(), payload_len, chopsize, sync)
        self.sendData(raw, sync, chopsize)

    def sendPing(self, payload=None):
        if self.state != self.STATE_OPEN:
            return
        self.sendFrame(opcode=9, payload=payload or b"")

    def sendPong(self, payload=None):
        if self.state != self.STATE_OPEN:
            return
        self.sendFrame(opcode=10, payload=payload or b"")

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
        if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return
        if self.state == self.STATE_CONNECTING:
            raise Exception("cannot close a connection not yet connected")
        payload = b""
        if code is not None:
            payload += struct.pack("!H", code)
        if reasonUtf8 is not None:
            payload += to_bytes(reasonUtf8)
        self.sendFrame(opcode=8, payload=payload)
        self.state = self.STATE_CLOSING
        self.closedByMe = not isReply
        self.localCloseCode = code
        self.localCloseReason = to_bytes(reasonUtf8) if reasonUtf8 is not None else None
        if self.closedByMe and self.closeHandshakeTimeout > 0:
            self._close_timer = self._call_later(self.closeHandshakeTimeout, self._on_close_timeout)
        elif not self.closedByMe and not self.IS_SERVER and self.serverConnectionDropTimeout > 0:
            # we replied to the server's close: it should now drop the TCP
            self._drop_timer = self._call_later(self.serverConnectionDropTimeout, self._on_drop_timeout)

    def sendClose(self, code=None, reason=None):
        if code is not None:
            if not isinstance(code, int):
                raise Exception("invalid type %s for close code" % type(code))
            if code != 1000 and not (3000 <= code <= 4999):
                raise Exception("invalid close code %d" % code)
        if reason is not None:
            if code is None:
                raise Exception("close reason without close code")
            reasonUtf8 = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
            if len(reasonUtf8) + 2 > 125:
                raise Exception("close reason too long (%d)" % len(reasonUtf8))
        else:
            reasonUtf8 = None
        self.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=False)

    def _on_close_timeout(self):
        if self.state != self.STATE_CLOSED:
            self.wasClean = False
            self.wasNotCleanReason = "peer did not respond (in time) in closing handshake"
            self.wasCloseHandshakeTimeout = True
            self.dropConnection(abort=True)

    def _on_drop_timeout(self):
        if self.state != self.STATE_CLOSED:
            self.wasClean = False
            self.wasNotCleanReason = "server did not drop TCP connection (in time)"
            self.wasServerConnectionDropTimeout = True
            self.dropConnection(abort=True)

    def dropConnection(self, abort=False):
        if self.state != self.STATE_CLOSED:
            self.droppedByMe = True
            self.state = self.STATE_CLOSED
            self._send_queue.clear()
            if self.transport is not None:
                if abort:
                    self.transport.abort()
                else:
                    self.transport.close()

    def failConnection(self, code=WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY, reason="Going Away"):
        if self.state != self.STATE_CLOSED:
            self.failedByMe = True
            if self.state != self.STATE_CLOSING:
                self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123], isReply=False)
            else:
                self.dropConnection(abort=False)

    def _protocol_violation(self, reason, code=WebSocketProtocol.CLOSE_STATUS_CODE_PROTOCOL_ERROR):
        self.log("peer protocol violation: %s" % reason)
        self.violations.append(reason)
        self.wasNotCleanReason = "peer violated protocol: %s" % reason
        self._rx_dead = True  # cannot trust the stream any more
        self.failConnection(code, reason)
        raise ProtocolFailure(reason)

    # ---- message API -------------------------------------------------------
    def sendMessage(self, payload, isBinary=False, fragmentSize=None, sync=False, doNotCompress=False):
        if self.state != self.STATE_OPEN:
            return
        payload = to_bytes(payload)
        opcode = 2 if isBinary else 1
        self.trafficStats.outgoingWebSocketMessages += 1
        self.trafficStats.outgoingOctetsAppLevel += len(payload)
        compressed = self._perMessageCompress is not None and not doNotCompress
        if compressed:
            payload = self._perMessageCompress.compress_message(payload)
        self.trafficStats.outgoingOctetsWebSocketLevel += len(payload)
        if fragmentSize is not None:
            pfs = fragmentSize
        else:
            pfs = self.autoFragmentSize if self.autoFragmentSize > 0 else None
        rsv = 4 if compressed else 0
        if pfs is None or len(payload) <= pfs:
            self.sendFrame(opcode=opcode, payload=payload, sync=sync, rsv=rsv)
        else:
            if pfs < 1:
                raise Exception("payload fragment size must be at least 1 (was %d)" % pfs)
            n = len(payload)
            i = 0
            first = True
            done = False
            while not done:
                j = i + pfs
                if j > n:
                    done = True
                    j = n
                if first:
                    self.sendFrame(opcode=opcode, payload=payload[i:j], fin=done, sync=sync, rsv=rsv)
                    first = False
                else:
                    self.sendFrame(opcode=0, payload=payload[i:j], fin=done, sync=sync)
                i += pfs

    def beginMessage(self, isBinary=False, doNotCompress=False, opcode=None):
        if self.state != self.STATE_OPEN:
            return
        if self.send_state != self.SEND_GROUND:
            raise Exception("beginMessage invalid in current sending state")
        if opcode is None:
            opcode = 2 if isBinary else 1
        self._send_opcode = opcode
        self.send_state = self.SEND_MESSAGE_BEGIN

    def beginMessageFrame(self, length):
        if self.state != self.STATE_OPEN:
            return
        if self.send_state not in (self.SEND_MESSAGE_BEGIN, self.SEND_INSIDE_MESSAGE):
            raise Exception("beginMessageFrame invalid in current sending state")
        if length <= 0 or length > 0x7FFFFFFFFFFFFFFF:
            raise Exception("invalid frame length %r" % length)
        self._frame_len = length
        self._frame_ptr = 0
        self._frame_key = b"" if self.IS_SERVER else os.urandom(4)
        self.trafficStats.outgoingWebSocketFrames += 1
        b0 = 0
        if self.send_state == self.SEND_MESSAGE_BEGIN:
            b0 |= self._send_opcode % 128
            op = self._send_opcode
        else:
            op = 0
        if self.createStats:
            self.txFrameStats[op] = self.txFrameStats.get(op, 0) + 1
        b1 = 0 if self.IS_SERVER else 0x80
        if length <= 125:
            hdr = struct.pack("!BB", b0, b1 | length)
        elif length <= 0xFFFF:
            hdr = struct.pack("!BBH", b0, b1 | 126, length)
        else:
            hdr = struct.pack("!BBQ", b0, b1 | 127, length)
        self._wl("TF", (length, "<streamed>"), op, False, 0, self._frame_key.hex(), None, None, False)
        self.sendData(hdr + self._frame_key)
        self.send_state = self.SEND_INSIDE_MESSAGE_FRAME

    def sendMessageFrameData(self, payload, sync=False):
        if self.state != self.STATE_OPEN:
            return
        if self.send_state != self.SEND_INSIDE_MESSAGE_FRAME:
            raise Exception("sendMessageFrameData invalid in current sending state")
        payload = to_bytes(payload)
        rl = self._frame_len - self._frame_ptr
        l = min(len(payload), rl)
        # mask continuing at the current key offset
        off = self._frame_ptr % 4
        key = self._frame_key[off:] + self._frame_key[:off]
        plm = mask_bytes(payload[:l], key) if key else payload[:l]
        self._frame_ptr += l
        self.sendData(plm, sync=sync)
        if self._frame_ptr >= self._frame_len:
            self.send_state = self.SEND_INSIDE_MESSAGE
        return rl - l

    def endMessage(self):
        if self.state != self.STATE_OPEN:
            return
        self.sendFrame(opcode=0, fin=True)
        self.send_state = self.SEND_GROUND

    # -------------------------------------------------------------- receiving
    def _process_frames(self):
        try:
            while self.state != self.STATE_CLOSED and not self._rx_dead:
                if not self._process_one():
                    break
        except ProtocolFailure:
            self._rbuf = bytearray()
            self._rpos = 0
            return
        if self._rpos > 65536 or self._rpos == len(self._rbuf):
            del self._rbuf[:self._rpos]
            self._rpos = 0

    def _process_one(self):
        buf = self._rbuf
        pos = self._rpos
        avail = len(buf) - pos
        if avail < 2:
            return False
        b0 = buf[pos]
        b1 = buf[pos + 1]
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 7
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        plen = b1 & 0x7F
        hlen = 2
        if plen == 126:
            if avail < 4:
                return False
            plen = struct.unpack_from("!H", buf, pos + 2)[0]
            hlen = 4
            if plen < 126:
                self._protocol_violation("invalid data frame length (not using minimal length encoding)")
        elif plen == 127:
            if avail < 10:
                return False
            plen = struct.unpack_from("!Q", buf, pos + 2)[0]
            hlen = 10
            if plen >> 63:
                self._protocol_violation("invalid data frame length (>2^63)")
            if plen < 65536:
                self._protocol_violation("invalid data frame length (not using minimal length encoding)")
        if masked and not self.IS_SERVER:
            self._protocol_violation("received masked frame from server")
        if not masked and self.IS_SERVER:
            self._protocol_violation("received unmasked frame from client")
        if masked:
            if avail < hlen + 4:
                return False
            key = bytes(buf[pos + hlen:pos + hlen + 4])
            hlen += 4

        # header checks
        if opcode > 7:
            if rsv != 0:
                self._protocol_violation("RSV = %d and no extension negotiated" % rsv)
            if not fin:
                self._protocol_violation("fragmented control frame")
            if opcode not in (8, 9, 10):
                self._protocol_violation("control frame using reserved opcode %d" % opcode)
            if plen > 125:
                self._protocol_violation("control frame with payload length > 125 octets")
        else:
            if opcode not in (0, 1, 2):
                self._protocol_violation("data frame using reserved opcode %d" % opcode)
            if opcode == 0 and self._msg_opcode is None:
                self._protocol_violation("received continuation data frame outside fragmented message")
            if opcode != 0 and self._msg_opcode is not None:
                self._protocol_violation("received non-continuation data frame while inside fragmented message")
            if rsv != 0:
                if not (rsv == 4 and opcode != 0 and self._perMessageCompress is not None):
                    self._protocol_violation("RSV = %d and no extension negotiated for this frame" % rsv)

        if avail < hlen + plen:
            return False
        start = pos + hlen
        payload = bytes(buf[start:start + plen])
        if masked:
            payload = mask_bytes(payload, key)
        self._rpos = start + plen

        if self.createStats:
            self.rxFrameStats[opcode] = self.rxFrameStats.get(opcode, 0) + 1
        self._wl("RF", (plen, _hex(payload)), opcode, fin, rsv, masked, key.hex() if masked else None)

        if opcode > 7:
            self._on_control(opcode, payload)
        else:
            self._on_data_frame(opcode, fin, rsv, payload)
        return True

    def _on_control(self, opcode, payload):
        if opcode == 8:
            code = None
            reason = None
            if len(payload) == 1:
                self._protocol_violation("received close frame with payload length 1")
            if len(payload) >= 2:
                code = struct.unpack("!H", payload[:2])[0]
                reason = payload[2:]
            self._on_close_frame(code, reason)
        elif opcode == 9:
            # default autobahn onPing: answer with pong (FuzzingProtocol does not forward pings)
            if self.state == self.STATE_OPEN:
                self.sendPong(payload)
        elif opcode == 10:
            if self.runCase is not None:
                self.runCase.onPong(payload)

    def _on_close_frame(self, code, reasonRaw):
        self.remoteCloseCode = None
        self.remoteCloseReason = None
        if code is not None and (code < 1000 or (1000 <= code <= 2999 and code not in self.CLOSE_STATUS_CODES_ALLOWED)
                                 or code >= 5000):
            self._protocol_violation("invalid close code %d" % code)
        self.remoteCloseCode = code
        if reasonRaw is not None and len(reasonRaw) > 0:
            try:
                self.remoteCloseReason = reasonRaw.decode("utf-8")
            except UnicodeDecodeError:
                self._protocol_violation("invalid close reason (non-UTF8 payload)",
                                         self.CLOSE_STATUS_CODE_INVALID_PAYLOAD)
        if self.state == self.STATE_CLOSING:
            # reply to our close
            if self._close_timer is not None:
                self._close_timer.cancel()
            self.wasClean = True
            if self.IS_SERVER:
                # the server closes TCP first (RFC 6455 §7.1.1)
                self.dropConnection(abort=False)
            elif self.serverConnectionDropTimeout > 0:
                self._drop_timer = self._call_later(self.serverConnectionDropTimeout, self._on_drop_timeout)
        elif self.state == self.STATE_OPEN:
            self.wasClean = True
            self.sendCloseFrame(code=self.CLOSE_STATUS_CODE_NORMAL, isReply=True)
            if self.IS_SERVER:
                self.dropConnection(abort=False)

    def _on_data_frame(self, opcode, fin, rsv, payload):
        if opcode != 0:
            self._msg_opcode = opcode
            self._msg_parts = []
            self._msg_len = 0
            self._msg_compressed = bool(rsv & 4)
            self.trafficStats.incomingWebSocketMessages += 1
            if self._msg_compressed:
                self._perMessageCompress.start_decompress_message()
            self._utf8 = codecs.getincrementaldecoder("utf-8")("strict") if opcode == 1 else None
        self.trafficStats.incomingWebSocketFrames += 1
        self.trafficStats.incomingOctetsWebSocketLevel += len(payload)
        if self._msg_compressed:
            try:
                data = self._perMessageCompress.decompress_message_data(payload)
                if fin:
                    data += self._perMessageCompress.end_decompress_message()
            except zlib.error as e:
                self._protocol_violation("permessage-deflate: cannot inflate message (window %d bits): %s"
                                         % (self._perMessageCompress._own()[1][1], e),
                                         self.CLOSE_STATUS_CODE_INVALID_PAYLOAD)
        else:
            data = payload
        self.trafficStats.incomingOctetsAppLevel += len(data)
        if self._utf8 is not None:
            try:
                self._utf8.decode(data, fin)
            except UnicodeDecodeError:
                self._protocol_violation("encountered invalid UTF-8 while processing text message",
                                         self.CLOSE_STATUS_CODE_INVALID_PAYLOAD)
        self._msg_parts.append(data)
        self._msg_len += len(data)
        if fin:
            msg = b"".join(self._msg_parts)
            binary = self._msg_opcode == 2
            self._msg_opcode = None
            self._msg_parts = []
            self._utf8 = None
            if not self.failedByMe and self.runCase is not None:
                self.runCase.onMessage(msg, binary)
