"""The fuzzing *server* protocol: the server role of Autobahn's
``FuzzingServerProtocol``, that the same case classes drive to test a client.

Everything about frames, messages, timers and close bookkeeping is shared
with ``wsclient.FuzzingClientProtocol`` (``IS_SERVER`` flips masking and the
TCP close); this file adds the server's opening handshake and wstest's
fuzzingserver URL API:

  /getCaseCount                 a text message with the number of cases, then close
  /runCase?case=N&agent=A       run case N (1-based) against agent A
  /updateReports?agent=A        write the reports, then close

Autobahn's server options for the fuzzing server: failByDrop=False,
closeHandshakeTimeout=1s, openHandshakeTimeout=5s, unmasked client frames
are a protocol violation; its Server header names the testsuite.
"""

import base64
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pmce
from wsclient import USER_AGENT, WS_GUID, FuzzingClientProtocol, parse_extensions, parse_headers


class _ServerFactory(object):
    isServer = True


class FuzzingServerProtocol(FuzzingClientProtocol):
    IS_SERVER = True

    def __init__(self, loop, server, log=None):
        FuzzingClientProtocol.__init__(self, loop, "ws://fuzzingserver/", log)
        self.factory = _ServerFactory()
        self.server = server
        self.path = None
        self.Case = None
        self.caseAgent = None
        self.caseId = None

    def connection_made(self, transport):
        self._set_transport(transport)
        self._open_timer = self._call_later(self.openHandshakeTimeout, self._on_open_timeout)

    def _refuse(self, status, reason):
        self.handshakeError = reason
        self.log("refusing handshake: %s" % reason)
        body = (reason + "\n").encode("utf-8")
        self._write(("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n" % (status, len(body))).encode("ascii") + body)
        self.wasNotCleanReason = "opening handshake refused: %s" % reason
        self.dropConnection(abort=False)
        return False

    def _process_handshake(self, head):
        """The client's request (RFC 6455 sec. 4.2.1) instead of a response."""
        text = head.decode("iso-8859-1")
        self.http_request_data = text
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
            return self._refuse("400 Bad Request", "bad request line %r" % lines[0])
        headers = parse_headers(lines[1:])
        self.agent = headers.get("user-agent")
        if "websocket" not in [t.strip().lower() for t in headers.get("upgrade", "").split(",")]:
            return self._refuse("400 Bad Request", "missing/invalid Upgrade header")
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            return self._refuse("400 Bad Request", "missing/invalid Connection header")
        if headers.get("sec-websocket-version") != "13":
            return self._refuse("426 Upgrade Required", "Sec-WebSocket-Version must be 13")
        key = headers.get("sec-websocket-key", "")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            return self._refuse("400 Bad Request", "invalid Sec-WebSocket-Key %r" % key)
        if "host" not in headers:
            return self._refuse("400 Bad Request", "missing Host header")

        url = urlsplit(parts[1])
        self.path = url.path
        params = parse_qs(url.query)
        self.caseAgent = (params.get("agent") or [None])[0]
        err = self.server.route(self, self.path, params)
        if err:
            return self._refuse("400 Bad Request", err)

        accept = None
        ext = headers.get("sec-websocket-extensions")
        if ext:
            offers = []
            for name, p in parse_extensions(ext):
                if name == pmce.EXTENSION_NAME:
                    try:
                        offers.append(pmce.PerMessageDeflateOffer.parse(p))
                    except ValueError as e:
                        self.log("ignoring invalid permessage-deflate offer: %s" % e)
            if offers:
                accept = self.perMessageCompressionAccept(offers)

        accept_key = base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")
        response = ["HTTP/1.1 101 Switching Protocols",
                    "Server: %s" % USER_AGENT,
                    "Upgrade: WebSocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Accept: %s" % accept_key]
        if accept is not None:
            response.append("Sec-WebSocket-Extensions: %s" % accept.getExtensionString())
            self._perMessageCompress = pmce.PerMessageDeflate.createFromOfferAccept(accept)
        res = "\r\n".join(response) + "\r\n\r\n"
        self.http_response_data = res
        self._write(res.encode("ascii"))

        self._open_timer.cancel()
        self.state = self.STATE_OPEN
        self.connectionWasOpen = True
        self.caseStart = time.time()
        if self.runCase is not None:
            self.runCase.onOpen()
        else:
            self.server.on_command(self)
        return self.state != self.STATE_CLOSED

    def connection_lost(self, exc):
        FuzzingClientProtocol.connection_lost(self, exc)
        self.server.on_connection_lost(self)
