/* ws_proto: handshake keys, permessage-deflate, UTF-8, close frames and the JSON of messages
 * for the WebSocket layer.
 *
 * Everything here is a function of its arguments, so the rules of RFC 6455 and RFC 7692
 * that wslay leaves to its user are checked in one place and under unit tests and fuzzers
 * rather than inside connection callbacks.
 *
 * Compression keeps no context between messages (we always negotiate both
 * *_no_context_takeover parameters): each message starts from a reset stream, which
 * costs a little ratio on small messages and saves a 32 KiB window plus deflate's hash
 * tables per idle connection, and lets one stream per worker serve every connection.
 * Decompression writes straight into the caller's buffer but never past max_out bytes of
 * output; one byte more is asked of zlib into a scratch byte, so a bomb is recognised
 * without holding its output. */
#include "ws_proto.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "json_in.h"
#include "utf8.h"

/* ---- Opening handshake ------------------------------------------------------------- */

/* RFC 6455 section 1.3: the GUID appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool
is_base64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

bool
ws_proto_key_ok(const char *key, size_t len)
{
    if (len != WS_PROTO_KEY_CHARS || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64(key[i]))
            return false;
    return true;
}

void
ws_proto_accept(const char *key, size_t len, char out[WS_PROTO_ACCEPT_CHARS + 1])
{
    out[0] = '\0';
    if (!ws_proto_key_ok(key, len))
        return;
    /* A valid key has a fixed length, so the text to hash fits on the stack and one EVP
     * call does it, with no digest context to allocate. */
    char text[WS_PROTO_KEY_CHARS + sizeof ws_guid - 1];
    memcpy(text, key, WS_PROTO_KEY_CHARS);
    memcpy(text + WS_PROTO_KEY_CHARS, ws_guid, sizeof ws_guid - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(text, sizeof text, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* ---- permessage-deflate negotiation ------------------------------------------------ */

/* A position in the header value being read. */
struct cursor {
    const char *p;
    const char *end;
};

struct span {
    const char *p;
    size_t len;
};

/* Parameter values we understand are at most two characters ("15"); longer ones are read
 * to their end, to find what follows, and then refused by their length. */
#define VALUE_KEEP 2

struct param {
    struct span name;
    bool has_value;
    size_t value_len; /* the whole unescaped length, even beyond VALUE_KEEP */
    char value[VALUE_KEEP];
};

/* Offer outcomes: a broken list stops the reading; a declined offer lets it go on. */
enum { OFFER_SYNTAX = -1, OFFER_DECLINED = 0, OFFER_ACCEPTED = 1 };

/* RFC 9110 tchar: the characters of a token. */
static bool
is_tchar(char c)
{
    unsigned char u = (unsigned char)c;
    unsigned char l = (unsigned char)(u | 0x20);
    if ((u >= '0' && u <= '9') || (l >= 'a' && l <= 'z'))
        return true;
    return u != 0 && strchr("!#$%&'*+-.^_`|~", u) != NULL;
}

/* RFC 9110 qdtext, and the second byte of a quoted-pair: any byte but controls (tab
 * excepted) and DEL; qdtext further excludes the quote and the backslash. */
static bool
is_quotable(char c)
{
    unsigned char u = (unsigned char)c;
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

static bool
at(const struct cursor *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

static void
skip_ows(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Read a token; false if there is none at the cursor. */
static bool
read_token(struct cursor *c, struct span *tok)
{
    tok->p = c->p;
    while (c->p < c->end && is_tchar(*c->p))
        c->p++;
    tok->len = (size_t)(c->p - tok->p);
    return tok->len > 0;
}

static void
keep_value_byte(struct param *prm, char ch)
{
    if (prm->value_len < VALUE_KEEP)
        prm->value[prm->value_len] = ch;
    prm->value_len++;
}

/* Read a quoted-string, the cursor on its opening quote, unescaping quoted-pairs. RFC
 * 7692 section 7 allows it so that the value "10" and 10 mean the same. */
static bool
read_quoted(struct cursor *c, struct param *prm)
{
    c->p++;
    while (c->p < c->end) {
        char ch = *c->p++;
        if (ch == '"')
            return true;
        if (ch == '\\') {
            if (c->p == c->end)
                return false;
            ch = *c->p++;
        }
        if (!is_quotable(ch))
            return false;
        keep_value_byte(prm, ch);
    }
    return false; /* no closing quote */
}

static bool
read_value(struct cursor *c, struct param *prm)
{
    prm->has_value = true;
    prm->value_len = 0;
    if (at(c, '"'))
        return read_quoted(c, prm);
    struct span tok;
    if (!read_token(c, &tok))
        return false;
    for (size_t i = 0; i < tok.len; i++)
        keep_value_byte(prm, tok.p[i]);
    return true;
}

static bool
span_eq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* A window size: "8" to "15" in decimal without leading zeros (RFC 7692 section
 * 7.1.2.1); 0 for anything else. */
static int
window_value(const struct param *prm)
{
    const char *v = prm->value;
    if (prm->value_len == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (prm->value_len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return 0;
}

static const char *const param_names[] = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
};

/* Apply one parameter of a permessage-deflate offer to d; false declines the offer.
 * seen has one bit per parameter name, since each may appear only once (section 7). */
static bool
apply_param(const struct param *prm, unsigned *seen, struct ws_proto_deflate *d)
{
    size_t i = 0;
    while (i < sizeof param_names / sizeof *param_names && !span_eq(prm->name, param_names[i]))
        i++;
    if (i == sizeof param_names / sizeof *param_names || (*seen & (1u << i)) != 0)
        return false;
    *seen |= 1u << i;
    switch (i) {
    case 0:
    case 1:
        /* We answer both no_context_takeover parameters whether offered or not. */
        return !prm->has_value;
    case 2:
        d->server_window_bits = prm->has_value ? window_value(prm) : 0;
        return d->server_window_bits != 0;
    default:
        /* Without a value the client only says it could take a window size from us. */
        d->client_window_bits = prm->has_value ? window_value(prm) : 0;
        return !prm->has_value || d->client_window_bits != 0;
    }
}

/* Read one parameter, the cursor just after its ';'. */
static bool
read_param(struct cursor *c, struct param *prm)
{
    skip_ows(c);
    if (!read_token(c, &prm->name))
        return false;
    skip_ows(c);
    prm->has_value = false;
    prm->value_len = 0;
    if (!at(c, '='))
        return true;
    c->p++;
    skip_ows(c);
    if (!read_value(c, prm))
        return false;
    skip_ows(c);
    return true;
}

/* Read one extension of the list up to the ',' that ends it (or the end), and judge it
 * as a permessage-deflate offer. The cursor is on the extension's first byte. */
static int
read_offer(struct cursor *c, struct ws_proto_deflate *cand)
{
    struct span name;
    if (!read_token(c, &name))
        return OFFER_SYNTAX;
    bool ok = span_eq(name, "permessage-deflate");
    unsigned seen = 0;
    *cand = (struct ws_proto_deflate){.on = true};
    skip_ows(c);
    while (at(c, ';')) {
        c->p++;
        struct param prm;
        if (!read_param(c, &prm))
            return OFFER_SYNTAX;
        if (ok)
            ok = apply_param(&prm, &seen, cand);
    }
    if (c->p < c->end && *c->p != ',')
        return OFFER_SYNTAX;
    return ok ? OFFER_ACCEPTED : OFFER_DECLINED;
}

void
ws_proto_deflate_offer(const char *value, size_t len, struct ws_proto_deflate *out)
{
    if (out->on)
        return;
    struct cursor c = {value, value + len};
    for (;;) {
        skip_ows(&c);
        if (c.p == c.end)
            return;
        /* Empty list elements (", ,") are allowed and skipped, as RFC 9110 section 5.6.1
         * asks of recipients. */
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        struct ws_proto_deflate cand;
        int r = read_offer(&c, &cand);
        if (r == OFFER_SYNTAX)
            return;
        if (r == OFFER_ACCEPTED) {
            *out = cand;
            return;
        }
    }
}

int
ws_proto_deflate_response(const struct ws_proto_deflate *d, char *buf, size_t cap)
{
    if (cap == 0)
        return -1;
    buf[0] = '\0';
    if (!d->on)
        return 0;
    char server[40] = "", client[40] = "";
    if (d->server_window_bits != 0)
        snprintf(server, sizeof server, "; server_max_window_bits=%d", d->server_window_bits);
    if (d->client_window_bits != 0)
        snprintf(client, sizeof client, "; client_max_window_bits=%d", d->client_window_bits);
    int n = snprintf(buf, cap,
                     "permessage-deflate; server_no_context_takeover; "
                     "client_no_context_takeover%s%s",
                     server, client);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

/* ---- Per-message compression ------------------------------------------------------- */

/* What a sync flush ends with, and what section 7.2.1 strips from every message. */
static const unsigned char sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Output is asked of zlib in steps of this much buffer at a time, at most. */
#define STEP ((size_t)64 * 1024)

/* The window zlib is asked for, or 0 for a bad window_bits. zlib refuses an 8-bit window
 * for raw deflate; 9 serves instead, because deflate never reaches back further than
 * 2^bits - 262 bytes (its MAX_DIST, which leaves room for one lookahead), that is 250
 * bytes for 9 bits: within the 256 the peer's 8-bit window holds. */
static int
zlib_window(int window_bits)
{
    if (window_bits == 0)
        return 15;
    if (window_bits < 8 || window_bits > 15)
        return 0;
    return window_bits == 8 ? 9 : window_bits;
}

int
ws_proto_deflate_init(z_stream *z, int window_bits)
{
    int bits = zlib_window(window_bits);
    if (bits == 0)
        return -1;
    /* Negative windowBits: raw deflate, no zlib header or checksum (section 7.2.1). */
    int r = deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY);
    return r == Z_OK ? 0 : -1;
}

int
ws_proto_inflate_init(z_stream *z)
{
    return inflateInit2(z, -15) == Z_OK ? 0 : -1;
}

/* Point z's output at the free space after out->len, reserving want bytes first, and
 * give zlib at most limit bytes of it. Returns the bytes given, or 0 on ENOMEM. */
static size_t
point_output(z_stream *z, struct buf *out, size_t want, size_t limit)
{
    if (buf_reserve(out, want) < 0)
        return 0;
    size_t room = out->cap - out->len;
    if (room > limit)
        room = limit;
    if (room > UINT_MAX)
        room = UINT_MAX;
    z->next_out = (Bytef *)(out->p + out->len);
    z->avail_out = (uInt)room;
    return room;
}

/* Give zlib the next part of the input: at most UINT_MAX bytes, the size of avail_in. */
static void
feed(z_stream *z, const unsigned char **p, size_t *left)
{
    uInt n = *left > UINT_MAX ? UINT_MAX : (uInt)*left;
    z->next_in = (Bytef *)*p; /* zlib only reads through next_in */
    z->avail_in = n;
    if (n > 0) {
        *p += n;
        *left -= n;
    }
}

/* Run deflate until z's input is used up and, on a flush, until all its output is out. */
static int
run_deflate(z_stream *z, int flush, struct buf *out, size_t step)
{
    do {
        size_t room = point_output(z, out, step, SIZE_MAX);
        if (room == 0)
            return -1;
        int r = deflate(z, flush);
        out->len += room - z->avail_out;
        /* Z_BUF_ERROR only says that no progress was possible, which is not an error. */
        if (r != Z_OK && r != Z_BUF_ERROR)
            return -1;
    } while (z->avail_in > 0 || (flush != Z_NO_FLUSH && z->avail_out == 0));
    return 0;
}

int
ws_proto_deflate(z_stream *z, int window_bits, const void *in, size_t len, struct buf *out)
{
    size_t start = buf_used(out);
    if (zlib_window(window_bits) == 0 || deflateReset(z) != Z_OK)
        return -1;
    /* A message whose worst case fits in STEP needs only one reservation. */
    size_t step = deflateBound(z, len) + sizeof sync_tail + 8;
    if (step > STEP)
        step = STEP;
    const unsigned char *p = in;
    size_t left = len;
    int rc;
    do {
        feed(z, &p, &left);
        rc = run_deflate(z, left == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH, out, step);
    } while (rc == 0 && left > 0);
    /* A sync flush always ends in an empty stored block, whose last four bytes go. */
    if (rc == 0 && (buf_used(out) - start < sizeof sync_tail ||
                    memcmp(out->p + out->len - sizeof sync_tail, sync_tail, sizeof sync_tail) != 0))
        rc = -1;
    if (rc < 0) {
        out->len = out->off + start;
        return -1;
    }
    out->len -= sizeof sync_tail;
    return 0;
}

/* Where zlib may write the one byte that proves a message too big. Not on the stack, so
 * that z->next_out never points into a dead frame; per thread, as zlib does write it. */
static _Thread_local unsigned char probe;

/* Run inflate over z's input until it is used up (0), the deflate stream ends (1), the
 * output would pass max_out (WS_PROTO_TOO_BIG), or the data is bad (-1). */
static int
run_inflate(z_stream *z, struct buf *out, size_t start, size_t max_out)
{
    for (;;) {
        size_t produced = buf_used(out) - start;
        size_t room = 0;
        if (produced < max_out) {
            size_t allowed = max_out - produced;
            room = point_output(z, out, allowed < STEP ? allowed : STEP, allowed);
            if (room == 0)
                return -1;
        } else {
            /* At the limit: if zlib has even one more byte to give, the message is too big. */
            z->next_out = &probe;
            z->avail_out = 1;
        }
        /* zlib resumes a stream stopped at a block boundary past the state that reports
         * it, so a call that finds nothing to do (no input, or only the probe above)
         * clears bit 128 of data_type, which ws_proto_inflate reads last. Such a call
         * changed nothing, so the previous call's report still holds: keep it. */
        int data_type = z->data_type;
        uInt in_before = z->avail_in, out_before = z->avail_out;
        int r = inflate(z, Z_SYNC_FLUSH);
        if (z->avail_in == in_before && z->avail_out == out_before)
            z->data_type = data_type;
        if (room > 0)
            out->len += room - z->avail_out;
        else if (z->avail_out == 0)
            return WS_PROTO_TOO_BIG;
        if (r == Z_STREAM_END)
            return 1;
        if (r != Z_OK && r != Z_BUF_ERROR)
            return -1;
        /* Output space left over means zlib stopped for want of input. */
        if (z->avail_out > 0)
            return z->avail_in == 0 ? 0 : -1;
    }
}

static int
inflate_all(z_stream *z, const void *in, size_t len, struct buf *out, size_t start,
            size_t max_out)
{
    const unsigned char *p = in;
    size_t left = len;
    int rc;
    do {
        feed(z, &p, &left);
        rc = run_inflate(z, out, start, max_out);
    } while (rc == 0 && left > 0);
    return rc;
}

int
ws_proto_inflate(z_stream *z, const void *in, size_t len, size_t max_out, struct buf *out)
{
    size_t start = buf_used(out);
    /* No bytes at all is not a deflate stream, but it can only mean an empty message. */
    if (len == 0)
        return 0;
    if (inflateReset(z) != Z_OK)
        return -1;
    int rc = inflate_all(z, in, len, out, start, max_out);
    if (rc == 0)
        rc = inflate_all(z, sync_tail, sizeof sync_tail, out, start, max_out);
    /* After the tail, zlib must be waiting for a block header (bit 128 of data_type): if
     * not, the message stopped inside a block, which is a truncated or corrupt message. */
    if (rc == 0 && (z->data_type & 128) == 0)
        rc = -1;
    if (rc < 0) {
        out->len = out->off + start;
        return rc;
    }
    return 0;
}

/* ---- Close codes ------------------------------------------------------------------- */

bool
ws_proto_close_code_ok(uint16_t code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

int
ws_proto_close_check(const uint8_t *p, size_t len)
{
    if (len == 0) return 0;
    if (len == 1 || !ws_proto_close_code_ok((uint16_t)(p[0] << 8 | p[1])))
        return WS_PROTO_PROTOCOL_ERROR;
    return utf8_valid(p + 2, len - 2) ? 0 : WS_PROTO_INVALID_DATA;
}

/* ---- The client's messages --------------------------------------------------------- */

json_t *
ws_proto_message(const char *p, size_t len, char *msg, size_t cap)
{
    char text[JSON_ERROR_TEXT_LENGTH + 64];
    json_t *j = json_in_object(p, len, "A message", text, sizeof text);
    if (j != NULL) {
        msg[0] = '\0';
        return j;
    }
    /* jansson quotes the message's own bytes ("near '...'"): escaped, they are JSON
     * string content whatever they are. */
    msg[utf8_json_escape(msg, cap - 1, text, strlen(text), NULL)] = '\0';
    return NULL;
}
