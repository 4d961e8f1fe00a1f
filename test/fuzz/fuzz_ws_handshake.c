/* fuzz_ws_handshake: the opening handshake's pure parts (worker/ws_proto.c): the
 * Sec-WebSocket-Key check and accept value, and permessage-deflate offers.
 *
 * The input is one header value; a line feed in it splits it into repeated headers, as
 * ws.c calls ws_proto_deflate_offer once per Sec-WebSocket-Extensions header. Besides the
 * sanitizers it checks:
 *   - the accept value exists exactly for a well-formed key, and is 28 characters;
 *   - an accepted offer has windows in 8..15 (or 0), and its response fits the documented
 *     size and, read back as an offer, is accepted with the same windows (the response
 *     uses only what we accept, so a client echoing it cannot be refused). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_proto.h"
#include "fuzz.h"

static bool
window_ok(int bits)
{
    return bits == 0 || (bits >= 8 && bits <= 15);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char accept[WS_PROTO_ACCEPT_CHARS + 1];
    ws_proto_accept(s, size, accept);
    check(ws_proto_key_ok(s, size) == (accept[0] != '\0'), "accept without a good key");
    check(accept[0] == '\0' || strlen(accept) == WS_PROTO_ACCEPT_CHARS, "accept length");

    struct ws_proto_deflate d = {0};
    const char *p = s, *end = s + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        ws_proto_deflate_offer(p, (size_t)(stop - p), &d);
        p = stop + 1;
    }
    char resp[WS_PROTO_DEFLATE_RESPONSE_SIZE];
    int n = ws_proto_deflate_response(&d, resp, sizeof resp);
    if (!d.on) {
        check(n == 0 && resp[0] == '\0', "a response without an accepted offer");
        return 0;
    }
    check(window_ok(d.server_window_bits) && window_ok(d.client_window_bits), "window bits");
    check(n > 0 && (size_t)n == strlen(resp), "the response does not fit");
    struct ws_proto_deflate back = {0};
    ws_proto_deflate_offer(resp, (size_t)n, &back);
    check(back.on && back.server_window_bits == d.server_window_bits &&
              back.client_window_bits == d.client_window_bits,
          "the response, as an offer, is not the same");
    return 0;
}
