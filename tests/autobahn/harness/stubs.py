"""Stub modules that the (py2) autobahntestsuite case modules import.

They are only visible to case modules (through the loader's __import__), not
installed into sys.modules.
"""

import codecs
import os
import types

import pmce


class WebSocketProtocol(object):
    """Constants of autobahn.websocket.protocol.WebSocketProtocol."""

    STATE_CLOSED = 0
    STATE_CONNECTING = 1
    STATE_CLOSING = 2
    STATE_OPEN = 3

    MESSAGE_TYPE_TEXT = 1
    MESSAGE_TYPE_BINARY = 2

    CLOSE_STATUS_CODE_NORMAL = 1000
    CLOSE_STATUS_CODE_GOING_AWAY = 1001
    CLOSE_STATUS_CODE_PROTOCOL_ERROR = 1002
    CLOSE_STATUS_CODE_UNSUPPORTED_DATA = 1003
    CLOSE_STATUS_CODE_RESERVED1 = 1004
    CLOSE_STATUS_CODE_NULL = 1005
    CLOSE_STATUS_CODE_ABNORMAL_CLOSE = 1006
    CLOSE_STATUS_CODE_INVALID_PAYLOAD = 1007
    CLOSE_STATUS_CODE_POLICY_VIOLATION = 1008
    CLOSE_STATUS_CODE_MESSAGE_TOO_BIG = 1009
    CLOSE_STATUS_CODE_MANDATORY_EXTENSION = 1010
    CLOSE_STATUS_CODE_INTERNAL_ERROR = 1011
    CLOSE_STATUS_CODE_SERVICE_RESTART = 1012
    CLOSE_STATUS_CODE_TRY_AGAIN_LATER = 1013
    CLOSE_STATUS_CODE_UNASSIGNED1 = 1014
    CLOSE_STATUS_CODE_TLS_HANDSHAKE_FAILED = 1015

    # codes a peer may send in the range 1000-2999 (Autobahn's list)
    CLOSE_STATUS_CODES_ALLOWED = [1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 1012, 1013, 1014]


class Utf8Validator(object):
    """autobahn.websocket.utf8validator.Utf8Validator (incremental, strict).

    validate(data) -> (valid, endsOnCodePoint, currentIndex, totalIndex).
    Accepts bytes or py2 byte strings (latin-1 str).
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self._dec = codecs.getincrementaldecoder("utf-8")("strict")
        self._total = 0

    def validate(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        try:
            self._dec.decode(data, False)
        except UnicodeDecodeError as e:
            start = e.start
            self._total += start
            return False, False, start, self._total
        self._total += len(data)
        pending = self._dec.getstate()[0]
        return True, len(pending) == 0, len(data), self._total


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def make_shims(pkgdir):
    compress = _module("autobahn.websocket.compress",
                       **{k: getattr(pmce, k) for k in dir(pmce) if k.startswith("PerMessage")})
    compress.__all__ = [k for k in dir(pmce) if k.startswith("PerMessage")]
    protocol = _module("autobahn.websocket.protocol", WebSocketProtocol=WebSocketProtocol)
    utf8v = _module("autobahn.websocket.utf8validator", Utf8Validator=Utf8Validator)
    websocket = _module("autobahn.websocket", protocol=protocol, compress=compress,
                        utf8validator=utf8v)
    autobahn = _module("autobahn", websocket=websocket, version="harness")

    def resource_filename(package, resource):
        if package != "autobahntestsuite":
            raise ValueError("unexpected package %r" % package)
        return os.path.join(pkgdir, resource)

    pkg_resources = _module("pkg_resources", resource_filename=resource_filename)

    # only case9_9_1 (not in the Cases list) needs these at import time
    interface = _module("zope.interface", implements=lambda *a, **kw: None)
    zope = _module("zope", interface=interface)
    interfaces = _module("twisted.internet.interfaces", IPushProducer=object)
    internet = _module("twisted.internet", reactor=None, interfaces=interfaces)
    twisted = _module("twisted", internet=internet)

    return {
        "autobahn": autobahn,
        "autobahn.websocket": websocket,
        "autobahn.websocket.protocol": protocol,
        "autobahn.websocket.compress": compress,
        "autobahn.websocket.utf8validator": utf8v,
        "pkg_resources": pkg_resources,
        "zope": zope,
        "zope.interface": interface,
        "twisted": twisted,
        "twisted.internet": internet,
        "twisted.internet.interfaces": interfaces,
    }
