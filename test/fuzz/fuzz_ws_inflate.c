/* fuzz_ws_inflate: permessage-deflate's bounded inflate and the compressor it pairs with,
 * and the UTF-8 check that follows them (common/utf8.c).
 *
 * The first input byte chooses the output limit (max_out, from 0 to 64 KiB in uneven
 * steps) and a window for the round trip; the rest is a compressed message as a client
 * would send it. Besides the sanitizers it checks:
 *   - a failure leaves the output buffer's content as it was (it starts non-empty);
 *   - a message that inflates to L bytes inflates the same with max_out = L, and is too
 *     big with max_out = L - 1: the bound is exact, neither early nor late;
 *   - the rest, compressed by ws_proto_deflate with the chosen window and inflated,
 *     comes back as it was;
 *   - utf8_valid agrees with a plain decoder written from RFC 3629. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_proto.h"
#include "fuzz.h"

static z_stream inflater, deflaters[16];
static bool ready;

/* UTF-8 decoded one code point at a time, the slow and obvious way. */
static bool
utf8_reference(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t c = s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                                : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || len - i < n)
            return false;
        if (n > 1)
            c &= 0xffu >> (n + 1);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < least[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

static int
inflate_into(struct buf *out, const uint8_t *p, size_t len, size_t max_out)
{
    static const char prefix[] = "kept";
    out->off = out->len = 0;
    buf_append(out, prefix, sizeof prefix - 1);
    out->off = 2; /* consumed bytes before the message, as in a connection's buffer */
    int rc = ws_proto_inflate(&inflater, p, len, max_out, out);
    check(rc == 0 || rc == -1 || rc == WS_PROTO_TOO_BIG, "an undocumented result");
    /* Growing may drop the consumed "ke"; the unconsumed "pt" must stay. */
    check(buf_used(out) >= 2 && memcmp(buf_data(out), prefix + 2, 2) == 0,
          "what the buffer held before changed");
    if (rc != 0)
        check(buf_used(out) == 2, "output left behind by a failure");
    else
        check(buf_used(out) - 2 <= max_out, "output beyond max_out");
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        check(ws_proto_inflate_init(&inflater) == 0, "inflate init");
        for (int bits = 8; bits <= 15; bits++)
            check(ws_proto_deflate_init(&deflaters[bits], bits) == 0, "deflate init");
        ready = true;
    }
    if (size == 0)
        return 0;
    static const size_t limits[] = {0, 1, 2, 7, 64, 125, 126, 4096, 65535, 65536};
    size_t max_out = limits[data[0] % 10];
    int bits = 8 + (data[0] >> 4) % 8;
    const uint8_t *msg = data + 1;
    size_t len = size - 1;

    struct buf a = {0}, b = {0}, z = {0};
    if (inflate_into(&a, msg, len, max_out) == 0) {
        size_t got = buf_used(&a) - 2;
        check(inflate_into(&b, msg, len, got) == 0 && buf_used(&b) == buf_used(&a) &&
                  memcmp(buf_data(&a), buf_data(&b), buf_used(&a)) == 0,
              "not the same with max_out at its length");
        if (got > 0)
            check(inflate_into(&b, msg, len, got - 1) == WS_PROTO_TOO_BIG,
                  "not too big with max_out one less than its length");
        (void)utf8_valid(buf_data(&a) + 2, got);
    }

    check(ws_proto_deflate(&deflaters[bits], bits, msg, len, &z) == 0, "deflate");
    check(inflate_into(&b, (const uint8_t *)buf_data(&z), buf_used(&z), len) == 0 &&
              buf_used(&b) - 2 == len && memcmp(buf_data(&b) + 2, msg, len) == 0,
          "the round trip changed the message");

    check(utf8_valid(msg, len) == utf8_reference(msg, len),
          "the UTF-8 check disagrees with the reference decoder");
    buf_free(&a);
    buf_free(&b);
    buf_free(&z);
    return 0;
}
