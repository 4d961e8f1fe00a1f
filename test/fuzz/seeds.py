#!/usr/bin/env python3
"""Write the seed inputs of test/fuzz/corpus/ (seed-*; other files there are findings or
inputs the fuzzer added). Run from the repository root after changing a seed:
    python3 test/fuzz/seeds.py
Frames are built here rather than kept as opaque bytes so that a reader can see what
each seed is: which opcode, mask, fragmentation, compression."""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- HTTP request heads and chunked bodies -------------------------------------------

H = "Host: fuzz\r\n"
put("http_parser", "get", "GET /api/health?x=1 HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "post-json",
    "POST /api/sessions HTTP/1.1\r\n" + H + "Content-Type: application/json\r\n"
    "Content-Length: 16\r\n\r\n{\"user\":\"alice\"}")
put("http_parser", "chunked",
    "POST /api/sessions HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
    "5;name=\"v;1\"\r\nhello\r\nA \t; x\r\n0123456789\r\n0\r\nTrailer-One: a b\r\nT2:\r\n\r\n"
    "GET / HTTP/1.1\r\n")
put("http_parser", "chunked-bad-size",
    "POST /x HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n")
put("http_parser", "upgrade",
    "GET /ws?token=abc HTTP/1.1\r\n" + H + "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
put("http_parser", "absolute-form", "GET http://fuzz:80/p/q?z HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "options-star", "\r\n\r\nOPTIONS * HTTP/1.1\r\n" + H + "Expect: 100-continue\r\n\r\n")
put("http_parser", "http10", "GET / HTTP/1.0\r\nConnection: keep-alive\r\nAccept-Encoding: gzip;q=0, br\r\n\r\n")
put("http_parser", "smuggle-cl-te",
    "POST / HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
put("http_parser", "te-list", "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip, chunked\r\n\r\n")
put("http_parser", "bare-lf", "GET / HTTP/1.1\n" + H + "\n")
put("http_parser", "version-2", "GET / HTTP/2.0\r\n\r\n")
# Paths for the router's percent-decoding: escaped names, a decoded '/', bad escapes, %00.
put("http_parser", "path-escapes", "GET /api/users/al%69ce%40x.org/sessions HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "path-encoded-slash", "POST /api/channels/a%2Fb/publish HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "path-literal-escaped", "GET /%61pi/h%65alth?x=%zz HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "path-two-captures", "PATCH /%2F%2f/%25%41 HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "path-bad-escape", "GET /api/sessions/abc%4 HTTP/1.1\r\n" + H + "\r\n")
put("http_parser", "path-nul", "GET /api/users/a%00b/sessions HTTP/1.1\r\n" + H + "\r\n")

# ---- Sec-WebSocket-Extensions values and keys ----------------------------------------

put("ws_handshake", "plain", "permessage-deflate")
put("ws_handshake", "client-bits", "permessage-deflate; client_max_window_bits")
put("ws_handshake", "windows",
    "permessage-deflate; server_max_window_bits=10; client_max_window_bits=\"12\"")
put("ws_handshake", "list",
    "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, "
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
put("ws_handshake", "repeated", "foo; bar=\"a\\\"b\"\npermessage-deflate;server_max_window_bits=8")
put("ws_handshake", "duplicate", "permessage-deflate; client_max_window_bits; client_max_window_bits")
put("ws_handshake", "key", "dGhlIHNhbXBsZSBub25jZQ==")

# ---- WebSocket client frames, after the flags byte of fuzz_ws_frames.c ----------------

MASK = b"\x37\xfa\x21\x3d"


def frame(op, payload, fin=True, rsv1=False, mask=MASK):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def deflate(text, wbits=15):
    z = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = z.compress(text.encode()) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def close(code, reason=""):
    return frame(8, struct.pack(">H", code) + reason.encode())


SUB = '{"op":"subscribe","channel":"room.1","id":1}'
PUB = '{"op":"publish","channel":"room.1","data":{"text":"hi","n":[1,2.5,null]},"id":"p"}'
put("ws_frames", "ops", b"\x00" + frame(1, SUB) + frame(1, PUB) + frame(1, '{"op":"ping","id":2}')
    + frame(1, '{"op":"presence","channel":"room.1"}')
    + frame(1, '{"op":"unsubscribe","channel":"room.1"}') + close(1000, "bye"))
put("ws_frames", "fragmented", b"\x08" + frame(1, SUB[:10], fin=False) + frame(9, "ping")
    + frame(0, SUB[10:30], fin=False) + frame(10, "") + frame(0, SUB[30:]) + close(1001))
put("ws_frames", "deflate", b"\x01" + frame(1, deflate(SUB), rsv1=True)
    + frame(1, deflate(PUB * 1 + " " * 200), rsv1=True) + frame(1, '{"op":"ping"}'))
put("ws_frames", "deflate-window9", b"\x03" + frame(1, deflate(PUB + " " * 300, 9), rsv1=True)
    + frame(1, SUB))
put("ws_frames", "deflate-fragmented", b"\x05" + frame(1, deflate(SUB)[:5], fin=False, rsv1=True)
    + frame(0, deflate(SUB)[5:]))
put("ws_frames", "with-head", b"\x04" + frame(1, SUB) + frame(1, "x" * 300))
put("ws_frames", "binary", b"\x00" + frame(2, b"\x00\x01\x02"))
put("ws_frames", "bad-utf8", b"\x10" + frame(1, b"{\"op\":\"\xed\xa0\x80\"}"))
put("ws_frames", "bad-json", b"\x00" + frame(1, "[1,2]") + frame(1, '{"op":"nope"}')
    + frame(1, '{"op":"subscribe","channel":"bad channel"}') + frame(1, "{"))
put("ws_frames", "close-bad-code", b"\x00" + close(1005))
put("ws_frames", "unmasked", b"\x00" + b"\x81\x05hello")
put("ws_frames", "too-big", b"\x00" + b"\x81\xff" + struct.pack(">Q", 100000) + MASK)
put("ws_frames", "len16", b"\x18" + frame(1, '{"op":"ping","id":"' + "a" * 180 + '"}'))

# ---- permessage-deflate payloads, after the flags byte of fuzz_ws_inflate.c -----------

put("ws_inflate", "hello", b"\x07" + deflate("hello, world"))
put("ws_inflate", "json-window8", b"\x87" + deflate(PUB * 4, 9))
put("ws_inflate", "empty", b"\x03")
z = zlib.compressobj(6, zlib.DEFLATED, -15)
put("ws_inflate", "final-block", b"\x07" + z.compress(b"done") + z.flush(zlib.Z_FINISH) + b"junk")
put("ws_inflate", "bomb", b"\x07" + deflate("\0" * 100000))
put("ws_inflate", "stored", b"\x08" + b"\x00\x05\x00\xfa\xffhello")
put("ws_inflate", "corrupt", b"\x09" + b"\xff\xff\xff\xff")
put("ws_inflate", "utf8", b"\x01" + "é€😀".encode() + b"\xed\xa0\x80\xf4\x90\x80\x80")

# ---- JSON bodies for the API ----------------------------------------------------------

put("api_json", "create", '{"user":"alice","data":{"cart":[1,2],"price":19.99},"ttl":60}')
put("api_json", "patch", '{"data":{"a":null,"b":{"c":2,"e":[]},"new":"\\u00e9"},"ttl":30}')
put("api_json", "publish", '{"data":{"text":"hello"}}')
put("api_json", "ttl-only", '{"ttl":1}')
put("api_json", "empty", "{}")
put("api_json", "array", "[1,2]")
put("api_json", "duplicate", '{"data":{},"data":{}}')
put("api_json", "bad-user", '{"user":"not ok!","data":{}}')
put("api_json", "unknown", '{"user":"u","what":1}')
put("api_json", "numbers", '{"user":"u","data":{"a":1e400,"b":-0,"c":1.5e-300,"d":9223372036854775808}}')
put("api_json", "surrogate", '{"user":"u","data":{"s":"\\ud800"}}')
put("api_json", "deep", '{"data":' + '{"a":' * 40 + "1" + "}" * 40 + "}")
put("api_json", "broken", '{"user":')
put("api_json", "grants", '{"user":"u","channels":["room:*","lobby","room:*","*"],'
    '"subscribe":["news","user:u","news"],"data":{}}')
put("api_json", "grants-none", '{"user":"u","channels":null,"subscribe":[]}')
put("api_json", "grants-bad", '{"user":"u","channels":["ok","a*b","**","",7,null],'
    '"subscribe":["room:*"]}')
put("api_json", "grants-shapes", '{"user":"u","channels":"room","subscribe":{"a":1}}')
put("api_json", "grants-many", '{"user":"u","channels":['
    + ",".join('"c%d"' % i for i in range(65)) + '],"subscribe":['
    + ",".join('"c%d"' % (i % 3) for i in range(64)) + ']}')
# Without "user", these reach PATCH's parser (a create refuses them first).
put("api_json", "grants-patch", '{"channels":["room:*","a","a"],"subscribe":null,"data":{"x":1}}')
put("api_json", "grants-patch-only", '{"channels":[]}')
put("api_json", "grants-patch-bad", '{"subscribe":["x*"],"ttl":5}')
put("api_json", "grants-long", '{"channels":["' + "p" * 127 + '*","' + "p" * 128 + '*"],'
    '"subscribe":["' + "n" * 128 + '","' + "n" * 129 + '"]}')

# ---- config files (and environment after %%env) ----------------------------------------

put("conf", "listen", "# comment\nlisten 127.0.0.1:8080\nlisten [::1]:8081\nworkers 2\n")
put("conf", "unix", "listen unix:run/s.sock\npidfile sessiond.pid\nstore_path db/sessions.db\n")
put("conf", "redis", "store redis\nredis_url redis://:pw@127.0.0.1:6379/2\nredis_prefix app:\n")
put("conf", "sizes", "\xef\xbb\xbfmax_body_bytes 1m\nheader_timeout 500ms\nsession_ttl 2h\n"
    "ws_max_message_bytes 64k\ngzip off\nlog_level debug\n")
put("conf", "env", "workers auto\n%%env\nPORT=9000\nWORKERS=3\nSESSIOND_GZIP=off\n"
    "REDIS_URL=redis://localhost\nSESSIOND_STORE=redis\nLOG_LEVEL=warn\n")
with open(os.path.join(ROOT, "..", "..", "..", "conf", "sessiond.conf"), "rb") as f:
    put("conf", "shipped", f.read())
put("conf", "errors", "workers 0\nunknown_thing 1\n")
put("conf", "quoted", 'instance "my host"\napi_key \'k e y\'\n')
put("conf", "namespaces",
    "namespace user subscribe=owner publish=none\n"
    "namespace public subscribe=any publish=subscribers presence=off join_events=off\n"
    "namespace \"room subscribe=grant\" publish=grant presence=subscribers history=100 "
    "history_ttl=30m\n"
    "namespace public subscribe=none\n"
    "namespace default subscribe=any history_ttl=720h # a comment\n")
put("conf", "namespace-env",
    "namespace user subscribe=owner\n%%env\n"
    "SESSIOND_NAMESPACE=user publish=none; public subscribe=any;; default history=5;\n")
put("conf", "namespace-bad-value", "namespace user subscribe=owner\nnamespace room subscribe=all\n")
put("conf", "namespace-bad-key", "namespace room frob=1 subscribe=any\n")
put("conf", "namespace-twice", "namespace room history=1 history=2\n")
put("conf", "namespace-bad-name", "namespace user:x subscribe=any\n")
put("conf", "namespace-bad-env", "%%env\nSESSIOND_NAMESPACE=a history_ttl=0; b; c:d\n")
put("conf", "namespace-many", "".join("namespace n%d history=%d\n" % (i, i) for i in range(70)))

# ---- Redis URLs ------------------------------------------------------------------------

put("redis_url", "plain", "redis://127.0.0.1:6379/0")
put("redis_url", "password", "redis://:s3cr3t-password@cache.internal")
put("redis_url", "user", "redis://user:p%40ss%3Aword@[::1]:6380/2")
put("redis_url", "unix", "unix:/tmp/redis.sock?db=3")
put("redis_url", "unix-triple", "unix:///var/run/redis/redis.sock")
put("redis_url", "tls", "rediss://host:6380")
put("redis_url", "bad-port", "redis://host:99999/x")
put("redis_url", "password-only", "redis://averylongpassword@")
