/* fuzz_ws_frames: WebSocket frames from a client, through a real worker: the upgrade,
 * then wslay's server context with the callbacks and limits of worker/ws.c (frame
 * accounting and parking between reads, max message length, RSV1 with
 * permessage-deflate, UTF-8, the JSON operations, close codes).
 *
 * The first input byte chooses how the client connects:
 *   bit 0     offer permessage-deflate (client_max_window_bits)
 *   bit 1     with it, ask for server_max_window_bits=9
 *   bit 2     send the first frames in the same write as the upgrade request
 *   bits 3-7  the size of the pieces the rest is written in, 13 to 416 bytes, so that
 *             frames are cut across reads (where ws.c parks and remakes wslay's context)
 * and the rest is what the client sends after its request (masked frames, or not).
 *
 * Besides the sanitizers it checks what the client receives: a 101, then whole frames
 * only, unmasked, of the opcodes a server sends, RSV1 only when compression was agreed and
 * then inflating, text that is UTF-8 and JSON, a close frame last if at all. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_worker.h"
#include "token.h"
#include "utf8.h"
#include "ws_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
bad(const char *why, const struct buf *out)
{
    fprintf(stderr, "fuzz_ws_frames: %s; the server sent %zu bytes:\n%.*s\n", why, buf_used(out),
            (int)(buf_used(out) > 2048 ? 2048 : buf_used(out)), buf_data(out));
    abort();
}

/* One server text message: UTF-8, and a JSON object. */
static void
check_text(const uint8_t *p, size_t len, const struct buf *out)
{
    if (!utf8_valid(p, len))
        bad("a text frame that is not UTF-8", out);
    json_error_t e;
    json_t *j = json_loadb((const char *)p, len, 0, &e);
    if (!json_is_object(j))
        bad("a text frame that is not a JSON object", out);
    json_decref(j);
}

/* Frames as RFC 6455 section 5.2 lays them out, as a server must send them. */
static void
check_frames(const uint8_t *p, size_t len, bool deflate, const struct buf *out)
{
    static z_stream z;
    static bool z_ok;
    struct buf msg = {0};
    if (!z_ok && ws_proto_inflate_init(&z) == 0)
        z_ok = true;
    bool closed = false;
    while (len > 0) {
        if (closed)
            bad("a frame after the close frame", out);
        if (len < 2)
            bad("a cut frame header", out);
        unsigned op = p[0] & 0x0f, rsv = p[0] & 0x70;
        if ((p[0] & 0x80) == 0 || (p[1] & 0x80) != 0)
            bad("a fragmented or masked server frame", out);
        if (op != 1 && op != 8 && op != 9 && op != 10)
            bad("an opcode a server does not send", out);
        if (rsv != 0 && (rsv != 0x40 || !deflate || op != 1))
            bad("RSV bits that were not agreed", out);
        uint64_t n = p[1] & 0x7f;
        size_t h = 2;
        if (n >= 126) {
            h += n == 126 ? 2 : 8;
            if (len < h)
                bad("a cut frame header", out);
            n = 0;
            for (size_t i = 2; i < h; i++)
                n = n << 8 | p[i];
        }
        if (len - h < n)
            bad("a cut frame", out);
        const uint8_t *pl = p + h;
        if (op == 1 && rsv != 0) {
            msg.off = msg.len = 0;
            if (!z_ok || ws_proto_inflate(&z, pl, (size_t)n, 1 << 24, &msg) != 0)
                bad("a compressed frame that does not inflate", out);
            check_text((const uint8_t *)buf_data(&msg), buf_used(&msg), out);
        } else if (op == 1) {
            check_text(pl, (size_t)n, out);
        } else if (op == 8) {
            if (n == 1 || (n >= 2 && !ws_proto_close_code_ok((uint16_t)(pl[0] << 8 | pl[1]))))
                bad("a close frame with a bad code", out);
            closed = true;
        }
        p += h + n;
        len -= h + (size_t)n;
    }
    buf_free(&msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char id[SESSION_ID_LEN + 1], token[TOKEN_CHARS + 1];
    if (token[0] == '\0')
        fuzz_worker_session("{}", id, token);
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    bool deflate = flags & 1;
    struct buf in = {0}, out = {0};
    buf_printf(&in,
               "GET /ws?token=%s HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s%s\r\n",
               token, deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" : "",
               !deflate ? "" : flags & 2 ? "; server_max_window_bits=9\r\n" : "\r\n");
    size_t head = buf_used(&in);
    buf_append(&in, data + 1, size - 1);

    size_t piece = ((flags >> 3) + 1) * 13, cuts[300], ncuts = 0;
    size_t at = flags & 4 ? head + piece : head;
    for (; at < buf_used(&in) && ncuts < sizeof cuts / sizeof *cuts; at += piece)
        cuts[ncuts++] = at;
    fuzz_worker_serve(buf_data(&in), buf_used(&in), cuts, ncuts, &out, 1 << 24);

    const char *o = buf_data(&out);
    if (getenv("FUZZ_SHOW") != NULL) /* to see what an input does */
        fwrite(buf_data(&out), 1, buf_used(&out), stderr);
    size_t n = buf_used(&out);
    static const char ok[] = "HTTP/1.1 101 ";
    const char *end = n ? memmem(o, n, "\r\n\r\n", 4) : NULL;
    if (n < sizeof ok - 1 || memcmp(o, ok, sizeof ok - 1) != 0 || end == NULL)
        bad("no 101 for a good upgrade request", &out);
    bool agreed = memmem(o, (size_t)(end - o), "permessage-deflate", 18) != NULL;
    if (agreed != deflate)
        bad("permessage-deflate offered but not agreed, or the reverse", &out);
    check_frames((const uint8_t *)end + 4, n - (size_t)(end + 4 - o), agreed, &out);
    buf_free(&in);
    buf_free(&out);
    return 0;
}
