"""permessage-deflate (RFC 7692) parameter classes with the (old, camelCase)
``autobahn.websocket.compress`` API used by autobahntestsuite case12_x_x.py,
plus the zlib processor used by the client protocol.

Semantics follow Autobahn's compress_deflate.py: the client offers
``client_no_context_takeover`` / ``client_max_window_bits`` hints when it
accepts them, requests ``server_*`` parameters when asked; the negotiated
processor compresses with the client window/context settings from the
server response and decompresses what the server sends.
"""

import zlib

EXTENSION_NAME = "permessage-deflate"
WINDOW_SIZE_PERMISSIBLE_VALUES = [8, 9, 10, 11, 12, 13, 14, 15]
MEM_LEVEL_PERMISSIBLE_VALUES = list(range(1, 10))


class PerMessageCompressOffer(object):
    pass


class PerMessageCompressResponse(object):
    pass


class PerMessageDeflateOffer(PerMessageCompressOffer):
    EXTENSION_NAME = EXTENSION_NAME

    def __init__(self, acceptNoContextTakeover=True, acceptMaxWindowBits=True,
                 requestNoContextTakeover=False, requestMaxWindowBits=0):
        if requestMaxWindowBits != 0 and requestMaxWindowBits not in WINDOW_SIZE_PERMISSIBLE_VALUES:
            raise ValueError("invalid requestMaxWindowBits %r" % requestMaxWindowBits)
        self.acceptNoContextTakeover = bool(acceptNoContextTakeover)
        self.acceptMaxWindowBits = bool(acceptMaxWindowBits)
        self.requestNoContextTakeover = bool(requestNoContextTakeover)
        self.requestMaxWindowBits = requestMaxWindowBits

    def getExtensionString(self):
        s = EXTENSION_NAME
        if self.acceptNoContextTakeover:
            s += "; client_no_context_takeover"
        if self.acceptMaxWindowBits:
            s += "; client_max_window_bits"
        if self.requestNoContextTakeover:
            s += "; server_no_context_takeover"
        if self.requestMaxWindowBits != 0:
            s += "; server_max_window_bits=%d" % self.requestMaxWindowBits
        return s

    def __json__(self):
        return {"extension": EXTENSION_NAME,
                "acceptNoContextTakeover": self.acceptNoContextTakeover,
                "acceptMaxWindowBits": self.acceptMaxWindowBits,
                "requestNoContextTakeover": self.requestNoContextTakeover,
                "requestMaxWindowBits": self.requestMaxWindowBits}

    def __repr__(self):
        return "PerMessageDeflateOffer(%r)" % self.__json__()


class PerMessageDeflateOfferAccept(object):
    """Server side only; never used by the fuzzing *client*, kept for import."""

    def __init__(self, offer, requestNoContextTakeover=False, requestMaxWindowBits=0,
                 noContextTakeover=None, windowBits=None, memLevel=None):
        self.offer = offer
        self.requestNoContextTakeover = requestNoContextTakeover
        self.requestMaxWindowBits = requestMaxWindowBits
        self.noContextTakeover = noContextTakeover
        self.windowBits = windowBits
        self.memLevel = memLevel


class PerMessageDeflateResponse(PerMessageCompressResponse):
    EXTENSION_NAME = EXTENSION_NAME

    def __init__(self, client_max_window_bits, client_no_context_takeover,
                 server_max_window_bits, server_no_context_takeover):
        self.client_max_window_bits = client_max_window_bits
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.server_no_context_takeover = server_no_context_takeover

    @classmethod
    def parse(cls, params):
        """params: {name: [value or True, ...]}; raises ValueError on bad response."""
        vals = {"client_max_window_bits": 0, "client_no_context_takeover": False,
                "server_max_window_bits": 0, "server_no_context_takeover": False}
        for p, lst in params.items():
            if len(lst) > 1:
                raise ValueError("parameter %r repeated in permessage-deflate response" % p)
            v = lst[0]
            if p in ("client_max_window_bits", "server_max_window_bits"):
                try:
                    v = int(v) if v is not True else None
                except (TypeError, ValueError):
                    v = None
                if v not in WINDOW_SIZE_PERMISSIBLE_VALUES:
                    raise ValueError("illegal value %r for %s in permessage-deflate response" % (lst[0], p))
                vals[p] = v
            elif p in ("client_no_context_takeover", "server_no_context_takeover"):
                if v is not True:
                    raise ValueError("parameter %s must not have a value" % p)
                vals[p] = True
            else:
                raise ValueError("illegal parameter %r in permessage-deflate response" % p)
        return cls(vals["client_max_window_bits"], vals["client_no_context_takeover"],
                   vals["server_max_window_bits"], vals["server_no_context_takeover"])

    def __json__(self):
        return {"extension": EXTENSION_NAME,
                "client_max_window_bits": self.client_max_window_bits,
                "client_no_context_takeover": self.client_no_context_takeover,
                "server_max_window_bits": self.server_max_window_bits,
                "server_no_context_takeover": self.server_no_context_takeover}

    def __repr__(self):
        return "PerMessageDeflateResponse(%r)" % self.__json__()


class PerMessageDeflateResponseAccept(object):
    def __init__(self, response, noContextTakeover=None, windowBits=None, memLevel=None):
        if not isinstance(response, PerMessageDeflateResponse):
            raise TypeError("invalid response type %r" % type(response))
        self.response = response
        self.noContextTakeover = noContextTakeover
        self.windowBits = windowBits
        self.memLevel = memLevel


class PerMessageDeflate(object):
    """Client-side processor created from an accepted server response."""

    DEFAULT_WINDOW_BITS = zlib.MAX_WBITS
    DEFAULT_MEM_LEVEL = 8

    def __init__(self, server_no_context_takeover, client_no_context_takeover,
                 server_max_window_bits, client_max_window_bits, mem_level=None):
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits or self.DEFAULT_WINDOW_BITS
        self.client_max_window_bits = client_max_window_bits or self.DEFAULT_WINDOW_BITS
        self.mem_level = mem_level or self.DEFAULT_MEM_LEVEL
        self._compressor = None
        self._decompressor = None

    @classmethod
    def createFromResponseAccept(cls, accept):
        r = accept.response
        return cls(r.server_no_context_takeover,
                   accept.noContextTakeover if accept.noContextTakeover is not None else r.client_no_context_takeover,
                   r.server_max_window_bits,
                   accept.windowBits if accept.windowBits is not None else r.client_max_window_bits,
                   accept.memLevel)

    def __json__(self):
        return {"extension": EXTENSION_NAME,
                "server_no_context_takeover": self.server_no_context_takeover,
                "client_no_context_takeover": self.client_no_context_takeover,
                "server_max_window_bits": self.server_max_window_bits,
                "client_max_window_bits": self.client_max_window_bits,
                "mem_level": self.mem_level}

    # -- client -> server (compress) ---------------------------------------
    def compress_message(self, data):
        if self._compressor is None or self.client_no_context_takeover:
            # zlib cannot produce raw deflate with an 8-bit window; 9 is the
            # smallest it emits (a 9-bit window stream decodes with any window
            # >= 9, and servers that granted 8 must accept 9 per zlib practice)
            wbits = max(self.client_max_window_bits, 9)
            self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                                -wbits, self.mem_level)
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out[-4:] == b"\x00\x00\xff\xff"
        return out[:-4]

    # -- server -> client (decompress) -------------------------------------
    def start_decompress_message(self):
        if self._decompressor is None or self.server_no_context_takeover:
            # inflate with the negotiated server window, so a server that uses a
            # larger window than it agreed to is caught ("invalid distance too
            # far back"); 9 at least, as zlib deflaters never emit 8-bit windows
            self._decompressor = zlib.decompressobj(-max(self.server_max_window_bits, 9))

    def decompress_message_data(self, data):
        return self._decompressor.decompress(data)

    def end_decompress_message(self):
        return self._decompressor.decompress(b"\x00\x00\xff\xff")
