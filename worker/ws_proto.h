/* ws_proto: the pure parts of the WebSocket protocol that wslay leaves to us.
 *
 * wslay frames and unframes messages; it does not answer the opening handshake, negotiate
 * or run permessage-deflate, check that text is UTF-8 or read our JSON messages, and it
 * judges close frames only in part. Those are here, as functions of their arguments only
 * (no I/O, no libev), so that they can be tested alone and fuzzed.
 *
 * Compression is negotiated without context takeover in both directions: every message
 * is compressed and decompressed from a fresh state, so one z_stream per worker serves
 * all its connections and an idle connection holds no zlib memory. Decompression is
 * bounded: a message that would inflate beyond the caller's limit is refused as soon as
 * it gets there, so a small "zip bomb" frame cannot make a worker allocate much more than
 * the limit. */
#ifndef SESSIOND_WS_PROTO_H
#define SESSIOND_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "buf.h"

#define WS_PROTO_KEY_CHARS 24    /* base64 of 16 bytes, with its "==" padding */
#define WS_PROTO_ACCEPT_CHARS 28 /* base64 of a 20-byte SHA-1 */

/* Returns of ws_proto_inflate besides 0 and -1. */
#define WS_PROTO_TOO_BIG (-2)

/* Opening handshake (RFC 6455 section 4.2). */

/* Whether a Sec-WebSocket-Key value is base64 of exactly 16 bytes: 22 characters of the
 * standard alphabet followed by "==". The spare low bits of the last character are not
 * checked, as most servers do not check them either. */
bool ws_proto_key_ok(const char *key, size_t len);

/* The Sec-WebSocket-Accept value for a key: base64(SHA-1(key + the RFC's GUID)),
 * NUL-terminated. out is the empty string if the key fails ws_proto_key_ok (so a caller
 * that forgot to check cannot answer a handshake it should refuse) or if hashing failed. */
void ws_proto_accept(const char *key, size_t len, char out[WS_PROTO_ACCEPT_CHARS + 1]);

/* permessage-deflate negotiation (RFC 7692 section 7). */

struct ws_proto_deflate {
    bool on; /* an offer was accepted */
    /* The window we compress with, 8..15, when the client offered server_max_window_bits
     * (it is then echoed in the response); 0 when it did not, which means 15 and is not
     * echoed. Pass it as is to ws_proto_deflate_init and ws_proto_deflate. */
    int server_window_bits;
    /* The value of the client's client_max_window_bits, 8..15, echoed in the response;
     * 0 when the client sent none or sent the parameter without a value. We always inflate
     * with a 15-bit window, which reads any smaller one, so this only tells the client it
     * may keep the window it proposed. */
    int client_window_bits;
};

/* Read the offers in one Sec-WebSocket-Extensions value: a comma-separated list of
 * extensions, each a token followed by ";"-separated parameters (token or quoted-string
 * values, whitespace allowed around separators). The first permessage-deflate offer
 * whose parameters are all known, not repeated and well-formed is accepted; a declined
 * offer and other extensions are skipped. Extension and parameter names are compared
 * exactly. A value that breaks the list syntax ends the reading of that value (the offers
 * after it are declined). out must start zeroed; for repeated headers call again with the
 * same out, and once an offer has been accepted later calls leave it as it is. */
void ws_proto_deflate_offer(const char *value, size_t len, struct ws_proto_deflate *out);

/* Write the Sec-WebSocket-Extensions response value for an accepted offer into buf,
 * NUL-terminated: always permessage-deflate with server_no_context_takeover and
 * client_no_context_takeover, then the window parameters described above. Returns its
 * length, 0 (and "") if d->on is false, or -1 (and "") if it does not fit in cap bytes;
 * WS_PROTO_DEFLATE_RESPONSE_SIZE bytes always fit. */
int ws_proto_deflate_response(const struct ws_proto_deflate *d, char *buf, size_t cap);

/* The size of the longest response with its NUL: both window parameters, two digits each. */
#define WS_PROTO_DEFLATE_RESPONSE_SIZE 129

/* Per-message compression (RFC 7692 section 7.2).
 *
 * The caller owns the z_streams, typically one for compression per negotiated window
 * (in practice one, for 0 = 15, since browsers do not ask for a smaller server window)
 * and one for decompression per worker. They are reset at the start of every message,
 * so they carry nothing from one message or connection to the next. */

/* Initialise z (zeroed by the caller, or left by deflateEnd) for raw deflate with a
 * window of window_bits (8..15, or 0 for 15). Free it with deflateEnd. Returns 0, or -1
 * for a bad window_bits or if zlib could not allocate. */
int ws_proto_deflate_init(z_stream *z, int window_bits);

/* Compress the whole message in[0..len) and append it to out, without the final
 * 0x00 0x00 0xff 0xff that RFC 7692 section 7.2.1 removes. window_bits must be the value
 * z was initialised with: zlib cannot change the window of a stream on reset. Returns 0;
 * or -1 on a zlib error or ENOMEM, with out's content as it was (its capacity may have
 * grown). */
int ws_proto_deflate(z_stream *z, int window_bits, const void *in, size_t len, struct buf *out);

/* Initialise z (zeroed by the caller) for raw inflate with a 15-bit window, which reads
 * data compressed with any window. Free it with inflateEnd. Returns 0 or -1. */
int ws_proto_inflate_init(z_stream *z);

/* Decompress the whole message in[0..len) (its 0x00 0x00 0xff 0xff tail removed by the
 * sender, as sent) and append it to out. Returns 0; WS_PROTO_TOO_BIG as soon as the
 * output would exceed max_out bytes (close with 1009), so out never holds more than
 * max_out bytes of this message and grows no larger than buf_reserve makes it for them;
 * or -1 for corrupt or truncated data (close with 1007) or ENOMEM. On failure out's
 * content is as it was. An empty payload is an empty message. Data after a final block
 * (BFINAL), which RFC 7692 section 7.2.3.4 allows a sender to use, is ignored. */
int ws_proto_inflate(z_stream *z, const void *in, size_t len, size_t max_out, struct buf *out);

/* Text and close frames. */

/* Whether a peer may send code in a Close frame: 1000-1003, 1007-1014 (1012-1014 are
 * registered with IANA) and 3000-4999. 1004-1006 and 1015 are reserved and must never be
 * sent; other codes below 3000 are unassigned, and codes from 5000 up do not exist. */
bool ws_proto_close_code_ok(uint16_t code);

/* Close codes a failed connection is closed with (RFC 6455 section 7.4.1). */
#define WS_PROTO_PROTOCOL_ERROR 1002
#define WS_PROTO_INVALID_DATA 1007

/* Judge the payload of a client's Close frame (RFC 6455 section 5.5.1): 0 when it is
 * empty, or a code that ws_proto_close_code_ok accepts followed by a UTF-8 reason;
 * WS_PROTO_PROTOCOL_ERROR for a payload of one byte or a code that may not be sent;
 * WS_PROTO_INVALID_DATA for a reason that is not UTF-8. That a control frame holds at
 * most 125 bytes is the frame parser's to check, before this. */
int ws_proto_close_check(const uint8_t *p, size_t len);

/* The client's messages. */

struct json_t;

/* The room to give ws_proto_message for its sentence: jansson's longest, escaped. */
#define WS_PROTO_MESSAGE_ERROR_SIZE 384

/* Parse a client's text message, which must be a JSON object with no key twice (which
 * "op" or "channel" a message with two of them means would be a guess). Returns the
 * object, or NULL with msg holding one sentence that says what is wrong, JSON-escaped
 * and NUL-terminated: where the JSON breaks and why, in jansson's words and as the
 * API's 400s say it ("Invalid JSON at byte 20: duplicate object key near '"op"'."), or
 * what the message is instead of an object ("A message must be a JSON object, not an
 * array."). A sentence longer than cap - 1 bytes is cut after a whole character or
 * escape; cap must be at least 1. */
struct json_t *ws_proto_message(const char *p, size_t len, char *msg, size_t cap);

#endif
