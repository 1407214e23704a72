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

    @classmethod
    def parse(cls, params):
        """A client's offer as the fuzzing *server* sees it ({name: [value or
        True, ...]}); raises ValueError on a malformed offer.  As in Autobahn,
        acceptNoContextTakeover defaults to True: a server may always ask for
        client_no_context_takeover (RFC 7692 sec. 7.1.1.2)."""
        accept_max, accept_nct, request_max, request_nct = False, True, 0, False
        for p, lst in params.items():
            if len(lst) > 1:
                raise ValueError("parameter %r repeated in permessage-deflate offer" % p)
            v = lst[0]
            if p == "client_max_window_bits":
                if v is not True:
                    try:
                        v = int(v)
                    except ValueError:
                        v = None
                    if v not in WINDOW_SIZE_PERMISSIBLE_VALUES:
                        raise ValueError("illegal value %r for client_max_window_bits" % lst[0])
                accept_max = True
            elif p == "client_no_context_takeover":
                if v is not True:
                    raise ValueError("client_no_context_takeover must not have a value")
                accept_nct = True
            elif p == "server_max_window_bits":
                try:
                    v = int(v) if v is not True else None
                except ValueError:
                    v = None
                if v not in WINDOW_SIZE_PERMISSIBLE_VALUES:
                    raise ValueError("illegal value %r for server_max_window_bits" % lst[0])
                request_max = v
            elif p == "server_no_context_takeover":
                if v is not True:
                    raise ValueError("server_no_context_takeover must not have a value")
                request_nct = True
            else:
                raise ValueError("illegal parameter %r in permessage-deflate offer" % p)
        return cls(accept_nct, accept_max, request_nct, request_max)

    def __json__(self):
        return {"extension": EXTENSION_NAME,
                "acceptNoContextTakeover": self.acceptNoContextTakeover,
                "acceptMaxWindowBits": self.acceptMaxWindowBits,
                "requestNoContextTakeover": self.requestNoContextTakeover,
                "requestMaxWindowBits": self.requestMaxWindowBits}

    def __repr__(self):
        return "PerMessageDeflateOffer(%r)" % self.__json__()


class PerMessageDeflateOfferAccept(object):
    """The fuzzing server's acceptance of a client offer (Autobahn's
    semantics): it answers the server parameters the client requested and
    may ask the client for no context takeover / a smaller window."""

    def __init__(self, offer, requestNoContextTakeover=False, requestMaxWindowBits=0,
                 noContextTakeover=None, windowBits=None, memLevel=None):
        if requestNoContextTakeover and not offer.acceptNoContextTakeover:
            raise ValueError("requestNoContextTakeover not supported by the client offer")
        if requestMaxWindowBits and not offer.acceptMaxWindowBits:
            raise ValueError("requestMaxWindowBits not supported by the client offer")
        self.offer = offer
        self.requestNoContextTakeover = requestNoContextTakeover
        self.requestMaxWindowBits = requestMaxWindowBits
        self.noContextTakeover = noContextTakeover
        self.windowBits = windowBits
        self.memLevel = memLevel

    def getExtensionString(self):
        s = EXTENSION_NAME
        if self.offer.requestNoContextTakeover:
            s += "; server_no_context_takeover"
        if self.offer.requestMaxWindowBits != 0:
            s += "; server_max_window_bits=%d" % self.offer.requestMaxWindowBits
        if self.requestNoContextTakeover:
            s += "; client_no_context_takeover"
        if self.requestMaxWindowBits != 0:
            s += "; client_max_window_bits=%d" % self.requestMaxWindowBits
        return s


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
    """The processor of one connection: the client's, created from an
    accepted server response, or the fuzzing server's (``is_server``),
    created from its acceptance of an offer; each compresses with its own
    window/context settings and inflates with the peer's."""

    is_server = False

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

    @classmethod
    def createFromOfferAccept(cls, accept):
        o = accept.offer
        p = cls(accept.noContextTakeover if accept.noContextTakeover is not None else o.requestNoContextTakeover,
                accept.requestNoContextTakeover,
                accept.windowBits if accept.windowBits is not None else o.requestMaxWindowBits,
                accept.requestMaxWindowBits,
                accept.memLevel)
        p.is_server = True
        return p

    def _own(self):
        """(no context takeover, window bits) of our compressor, and the peer's."""
        server = (self.server_no_context_takeover, self.server_max_window_bits)
        client = (self.client_no_context_takeover, self.client_max_window_bits)
        return (server, client) if self.is_server else (client, server)

    # -- compress what we send ---------------------------------------------
    def compress_message(self, data):
        (no_takeover, bits), _ = self._own()
        if self._compressor is None or no_takeover:
            # zlib cannot produce raw deflate with an 8-bit window; 9 is the
            # smallest it emits (a 9-bit window stream decodes with any window
            # >= 9, and servers that granted 8 must accept 9 per zlib practice)
            wbits = max(bits, 9)
            self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                                -wbits, self.mem_level)
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out[-4:] == b"\x00\x00\xff\xff"
        return out[:-4]

    # -- inflate what the peer sends ----------------------------------------
    def start_decompress_message(self):
        _, (no_takeover, bits) = self._own()
        if self._decompressor is None or no_takeover:
            # inflate with the negotiated peer window, so a peer that uses a
            # larger window than it agreed to is caught ("invalid distance too
            # far back"); 9 at least, as zlib deflaters never emit 8-bit windows
            self._decompressor = zlib.decompressobj(-max(bits, 9))

    def decompress_message_data(self, data):
        return self._decompressor.decompress(data)

    def end_decompress_message(self):
        return self._decompressor.decompress(b"\x00\x00\xff\xff")
