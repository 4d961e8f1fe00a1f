/* Unit tests for worker/ws_proto: handshake keys, permessage-deflate negotiation and
 * per-message compression, UTF-8 validation, close codes and frames, and the parsing of
 * the client's JSON messages. Header values and text are
 * copied into heap buffers of their exact length, so that AddressSanitizer catches any
 * read past the bytes a function was given. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "suites.h"
#include "ws_proto.h"

/* ---- Handshake ----------------------------------------------------------------------- */

static bool
key_ok(const char *key)
{
    char *copy = exact_copy(key, strlen(key));
    bool ok = ws_proto_key_ok(copy, strlen(key));
    free(copy);
    return ok;
}

START_TEST(accept_rfc_example)
{
    /* RFC 6455 section 1.3. */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char out[WS_PROTO_ACCEPT_CHARS + 1];
    ws_proto_accept(key, strlen(key), out);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* Another key gives another answer, and a bad key none at all. */
    ws_proto_accept("AAAAAAAAAAAAAAAAAAAAAA==", 24, out);
    ck_assert_uint_eq(strlen(out), WS_PROTO_ACCEPT_CHARS);
    ck_assert_str_ne(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    memset(out, 'x', sizeof out);
    ws_proto_accept("dGhlIHNhbXBsZSBub25jZQ", 22, out);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(key_validation)
{
    ck_assert(key_ok("dGhlIHNhbXBsZSBub25jZQ=="));
    ck_assert(key_ok("+/+/+/+/+/+/+/+/+/+/+w=="));
    ck_assert(key_ok("AAAAAAAAAAAAAAAAAAAAAA=="));
    /* 16 bytes without their padding, and padding that does not belong to 16 bytes. */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ"));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ==="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQA="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQAA")); /* 18 bytes, 24 chars, no padding */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25j===="));
    ck_assert(!key_ok(""));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="));
    /* The URL alphabet, spaces, padding inside, a NUL and a high byte are all refused. */
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZ-=="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZ_=="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25jZ ==")); /* 24 chars: a space before "==" */
    ck_assert(!key_ok(" dGhlIHNhbXBsZSBub25jZ=="));
    ck_assert(!key_ok("dGhlIHNhbX=sZSBub25jZQ=="));
    ck_assert(!key_ok("dGhlIHNhbXBsZSBub25j\xc3\xa9=="));
    ck_assert(!ws_proto_key_ok("dGhlIHNhbXBs\0SBub25jZQ==", 24));
}
END_TEST

/* ---- permessage-deflate negotiation ------------------------------------------------ */

static struct ws_proto_deflate
offer(const char *value)
{
    struct ws_proto_deflate d = {0};
    char *copy = exact_copy(value, strlen(value));
    ws_proto_deflate_offer(copy, strlen(value), &d);
    free(copy);
    return d;
}

#define ASSERT_DEFLATE(d, want_on, want_server, want_client)                                  \
    do {                                                                                      \
        ck_assert_int_eq((d).on, (want_on));                                                  \
        ck_assert_int_eq((d).server_window_bits, (want_server));                              \
        ck_assert_int_eq((d).client_window_bits, (want_client));                              \
    } while (0)

START_TEST(offer_plain)
{
    ASSERT_DEFLATE(offer("permessage-deflate"), true, 0, 0);
    ASSERT_DEFLATE(offer("  permessage-deflate\t "), true, 0, 0);
    /* What browsers send. */
    ASSERT_DEFLATE(offer("permessage-deflate; client_max_window_bits"), true, 0, 0);
}
END_TEST

START_TEST(offer_params)
{
    ASSERT_DEFLATE(offer("permessage-deflate; server_max_window_bits=10"), true, 10, 0);
    ASSERT_DEFLATE(offer("permessage-deflate;client_max_window_bits=12"), true, 0, 12);
    ASSERT_DEFLATE(offer("permessage-deflate; server_no_context_takeover; "
                         "client_no_context_takeover; server_max_window_bits=8; "
                         "client_max_window_bits=15"),
                   true, 8, 15);
    ASSERT_DEFLATE(offer("permessage-deflate ;\tserver_max_window_bits = 9 ; "
                         "client_max_window_bits "),
                   true, 9, 0);
    ASSERT_DEFLATE(offer("permessage-deflate; client_no_context_takeover"), true, 0, 0);
}
END_TEST

START_TEST(offer_bad_values)
{
    static const char *const bad[] = {
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=150",
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=99999999999999999999",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!offer(bad[i]).on, "accepted %s", bad[i]);
}
END_TEST

START_TEST(offer_declined_then_next)
{
    /* A bad value declines the first offer; the second is taken. */
    ASSERT_DEFLATE(offer("permessage-deflate; server_max_window_bits=16, "
                         "permessage-deflate; server_max_window_bits=11"),
                   true, 11, 0);
    /* An unknown parameter declines its offer only. */
    ASSERT_DEFLATE(offer("permessage-deflate; x_unknown, permessage-deflate; "
                         "client_max_window_bits=13"),
                   true, 0, 13);
    ck_assert(!offer("permessage-deflate; x_unknown").on);
    /* The first acceptable offer wins over later ones. */
    ASSERT_DEFLATE(offer("permessage-deflate; server_max_window_bits=12, permessage-deflate"),
                   true, 12, 0);
}
END_TEST

START_TEST(offer_duplicate_param)
{
    ck_assert(!offer("permessage-deflate; server_no_context_takeover; "
                     "server_no_context_takeover")
                   .on);
    ck_assert(!offer("permessage-deflate; client_max_window_bits; client_max_window_bits=10")
                   .on);
    ck_assert(!offer("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10")
                   .on);
    /* The duplicate's values must not leak into the offer that is taken after it. */
    ASSERT_DEFLATE(offer("permessage-deflate; client_max_window_bits=9; "
                         "client_max_window_bits=10, permessage-deflate"),
                   true, 0, 0);
}
END_TEST

START_TEST(offer_quoted)
{
    ASSERT_DEFLATE(offer("permessage-deflate; server_max_window_bits=\"10\""), true, 10, 0);
    ASSERT_DEFLATE(offer("permessage-deflate; client_max_window_bits=\"1\\2\""), true, 0, 12);
    ck_assert(!offer("permessage-deflate; server_max_window_bits=\"16\"").on);
    ck_assert(!offer("permessage-deflate; server_max_window_bits=\" 9\"").on);
    /* A comma or semicolon inside quotes belongs to the value, not to the list. */
    ASSERT_DEFLATE(offer("x-ext; p=\"a, permessage-deflate\", permessage-deflate; "
                         "server_max_window_bits=\"9\""),
                   true, 9, 0);
    /* An unterminated quote breaks the list: nothing after it is read. */
    ck_assert(!offer("x-ext; p=\"abc, permessage-deflate").on);
    ck_assert(!offer("permessage-deflate; server_max_window_bits=\"10").on);
    ck_assert(!offer("permessage-deflate; server_max_window_bits=\"10\\").on);
}
END_TEST

START_TEST(offer_other_extensions)
{
    ASSERT_DEFLATE(offer("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"),
                   true, 0, 0);
    ASSERT_DEFLATE(offer("foo; bar=baz; qux, permessage-deflate; server_max_window_bits=14"),
                   true, 14, 0);
    ck_assert(!offer("x-webkit-deflate-frame").on);
    ck_assert(!offer("permessage-deflate-x").on);
    ck_assert(!offer("Permessage-Deflate").on); /* names are compared exactly */
    /* Empty list elements are skipped. */
    ASSERT_DEFLATE(offer(" , ,permessage-deflate,"), true, 0, 0);
}
END_TEST

START_TEST(offer_none)
{
    ck_assert(!offer("").on);
    ck_assert(!offer("   ").on);
    ck_assert(!offer(",").on);
    /* Broken syntax declines the offer it is in and everything after it. */
    ck_assert(!offer("permessage-deflate;;").on);
    ck_assert(!offer("permessage-deflate; =10").on);
    ck_assert(!offer("permessage-deflate; server_max_window_bits=").on);
    ck_assert(!offer("permessage-deflate x").on);
    ck_assert(!offer("; permessage-deflate").on);
    ck_assert(!offer("x-ext;, permessage-deflate").on);
    ck_assert(!offer("x@y, permessage-deflate").on);
}
END_TEST

START_TEST(offer_repeated_headers)
{
    struct ws_proto_deflate d = {0};
    ws_proto_deflate_offer("x-foo", 5, &d);
    ck_assert(!d.on);
    const char *second = "permessage-deflate; server_max_window_bits=11";
    ws_proto_deflate_offer(second, strlen(second), &d);
    ASSERT_DEFLATE(d, true, 11, 0);
    /* Once an offer is accepted, later headers do not change it. */
    const char *third = "permessage-deflate; client_max_window_bits=9";
    ws_proto_deflate_offer(third, strlen(third), &d);
    ASSERT_DEFLATE(d, true, 11, 0);
}
END_TEST

START_TEST(response_exact)
{
    char buf[256];
    struct ws_proto_deflate d = offer("permessage-deflate; client_max_window_bits");
    int n = ws_proto_deflate_response(&d, buf, sizeof buf);
    ck_assert_str_eq(buf, "permessage-deflate; server_no_context_takeover; "
                          "client_no_context_takeover");
    ck_assert_int_eq(n, (int)strlen(buf));

    d = offer("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12");
    n = ws_proto_deflate_response(&d, buf, sizeof buf);
    const char *want = "permessage-deflate; server_no_context_takeover; "
                       "client_no_context_takeover; server_max_window_bits=10; "
                       "client_max_window_bits=12";
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(n, (int)strlen(want));
    ck_assert_uint_eq(strlen(want) + 1, WS_PROTO_DEFLATE_RESPONSE_SIZE);

    /* Exactly enough room (with the NUL) fits; one byte less does not. */
    ck_assert_int_eq(ws_proto_deflate_response(&d, buf, strlen(want) + 1), (int)strlen(want));
    ck_assert_int_eq(ws_proto_deflate_response(&d, buf, strlen(want)), -1);
    ck_assert_str_eq(buf, "");

    struct ws_proto_deflate off = {0};
    ck_assert_int_eq(ws_proto_deflate_response(&off, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");
}
END_TEST

/* ---- Per-message compression ------------------------------------------------------- */

static z_stream dz, iz;

static void
streams_setup(void)
{
    memset(&dz, 0, sizeof dz);
    memset(&iz, 0, sizeof iz);
    ck_assert_int_eq(ws_proto_deflate_init(&dz, 0), 0);
    ck_assert_int_eq(ws_proto_inflate_init(&iz), 0);
}

static void
streams_teardown(void)
{
    deflateEnd(&dz);
    inflateEnd(&iz);
}

/* Compress in and inflate it back with room for exactly its length; check both ways. */
static void
round_trip(const void *in, size_t len, size_t *compressed)
{
    struct buf c = {0}, d = {0};
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, in, len, &c), 0);
    char *copy = exact_copy(buf_data(&c), buf_used(&c));
    ck_assert_int_eq(ws_proto_inflate(&iz, copy, buf_used(&c), len, &d), 0);
    ck_assert_uint_eq(buf_used(&d), len);
    ck_assert(memcmp(buf_data(&d), in, len) == 0);
    *compressed = buf_used(&c);
    free(copy);
    buf_free(&c);
    buf_free(&d);
}

START_TEST(hello_vector)
{
    /* RFC 7692 section 7.2.3.1: "Hello" without context takeover, tail removed. */
    static const unsigned char want[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    struct buf out = {0};
    buf_puts(&out, "ab");
    buf_consume(&out, 1); /* a consumed prefix, so that growing the buffer moves data */
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, "Hello", 5, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 1 + sizeof want);
    ck_assert_int_eq(buf_data(&out)[0], 'b');
    ck_assert_mem_eq(buf_data(&out) + 1, want, sizeof want);
    /* The same again: nothing is carried over from the first message. */
    buf_consume(&out, buf_used(&out));
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, "Hello", 5, &out), 0);
    ck_assert_mem_eq(buf_data(&out), want, sizeof want);
    buf_free(&out);

    ck_assert_int_eq(ws_proto_inflate(&iz, want, sizeof want, 5, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 5);
    ck_assert_mem_eq(buf_data(&out), "Hello", 5);
    buf_free(&out);

    /* Section 7.2.3.4: the same with BFINAL set, and a byte after the final block. */
    static const unsigned char final[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    ck_assert_int_eq(ws_proto_inflate(&iz, final, sizeof final, 5, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 5);
    ck_assert_mem_eq(buf_data(&out), "Hello", 5);
    buf_free(&out);
}
END_TEST

/* Found by fuzz_ws_inflate (corpus crash-inflate-exact-limit): a message whose output
 * reaches max_out exactly at a block boundary. The probe for one byte more finds nothing,
 * and zlib's answer to that empty call used to hide the boundary, so a good message was
 * refused as corrupt (1007). Here a stored block of 5 bytes whose last four are the
 * 0x00 0x00 0xff 0xff that the sender removed and inflate appends. */
START_TEST(exact_limit_at_block_end)
{
    static const unsigned char in[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 'h'};
    struct buf out = {0};
    for (size_t max_out = 5; max_out <= 6; max_out++) {
        ck_assert_int_eq(ws_proto_inflate(&iz, in, sizeof in, max_out, &out), 0);
        ck_assert_uint_eq(buf_used(&out), 5);
        ck_assert_mem_eq(buf_data(&out), "h\0\0\xff\xff", 5);
        buf_free(&out);
    }
    ck_assert_int_eq(ws_proto_inflate(&iz, in, sizeof in, 4, &out), WS_PROTO_TOO_BIG);
    ck_assert_uint_eq(buf_used(&out), 0);
    buf_free(&out);
}
END_TEST

START_TEST(empty_message)
{
    /* Section 7.2.3.6: an empty message compresses to a single 0x00. */
    struct buf out = {0};
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, NULL, 0, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 1);
    ck_assert_int_eq(buf_data(&out)[0], 0);
    buf_free(&out);
    ck_assert_int_eq(ws_proto_inflate(&iz, "\0", 1, 0, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 0);
    ck_assert_int_eq(ws_proto_inflate(&iz, NULL, 0, 0, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 0);
    buf_free(&out);
}
END_TEST

START_TEST(round_trip_text)
{
    const char *texts[] = {
        "{\"type\":\"publish\",\"channel\":\"room:42\",\"data\":{\"text\":\"hi\"}}",
        "h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x98\x80 \xe2\x82\xac",
        "a",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t clen;
        round_trip(texts[i], strlen(texts[i]), &clen);
    }
}
END_TEST

START_TEST(round_trip_1mib)
{
    size_t len = 1u << 20;
    char *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    for (size_t off = 0, i = 0; off < len; i++) {
        char line[80];
        int n = snprintf(line, sizeof line, "{\"id\":%zu,\"user\":\"u%zu\",\"online\":true}\n", i,
                         i % 97);
        size_t take = (size_t)n < len - off ? (size_t)n : len - off;
        memcpy(data + off, line, take);
        off += take;
    }
    size_t clen;
    round_trip(data, len, &clen);
    ck_assert_uint_lt(clen, len / 8);

    /* One byte under the message's size is too big, and leaves out as it was. */
    struct buf c = {0}, d = {0};
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, data, len, &c), 0);
    buf_puts(&d, "keep");
    ck_assert_int_eq(ws_proto_inflate(&iz, buf_data(&c), buf_used(&c), len - 1, &d),
                     WS_PROTO_TOO_BIG);
    ck_assert_uint_eq(buf_used(&d), 4);
    ck_assert_mem_eq(buf_data(&d), "keep", 4);
    /* And the stream is fine for the next message. */
    ck_assert_int_eq(ws_proto_inflate(&iz, buf_data(&c), buf_used(&c), len, &d), 0);
    ck_assert_uint_eq(buf_used(&d), 4 + len);
    ck_assert(memcmp(buf_data(&d) + 4, data, len) == 0);
    buf_free(&c);
    buf_free(&d);
    free(data);
}
END_TEST

START_TEST(zip_bomb)
{
    size_t len = 10u << 20, max_out = 64u << 10;
    char *zeros = calloc(len, 1);
    ck_assert_ptr_nonnull(zeros);
    struct buf c = {0}, d = {0};
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, zeros, len, &c), 0);
    ck_assert_uint_lt(buf_used(&c), 20u << 10);
    ck_assert_int_eq(ws_proto_inflate(&iz, buf_data(&c), buf_used(&c), max_out, &d),
                     WS_PROTO_TOO_BIG);
    ck_assert_uint_eq(buf_used(&d), 0);
    /* The output buffer grew to the limit at most, never towards the 10 MiB. */
    ck_assert_uint_le(d.cap, max_out);
    buf_free(&c);
    buf_free(&d);
    free(zeros);
}
END_TEST

START_TEST(corrupt_input)
{
    struct buf out = {0};
    buf_puts(&out, "x");
    /* Block type 3 does not exist. */
    ck_assert_int_eq(ws_proto_inflate(&iz, "\xff\xff\xff\xff", 4, 1024, &out), -1);
    ck_assert_uint_eq(buf_used(&out), 1);
    /* A stored block whose length and its complement disagree. */
    ck_assert_int_eq(ws_proto_inflate(&iz, "\x00\x05\x00\x00\x00", 5, 1024, &out), -1);
    ck_assert_uint_eq(buf_used(&out), 1);

    /* A message cut in the middle is refused, not half delivered. */
    char text[4096];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    struct buf c = {0};
    ck_assert_int_eq(ws_proto_deflate(&dz, 0, text, sizeof text, &c), 0);
    for (size_t cut = 1; cut < buf_used(&c); cut++) {
        /* The limit is generous: the bytes after a cut may decode as more output before
         * they are found to be wrong, and here only "corrupt" is the right answer. */
        char *half = exact_copy(buf_data(&c), cut);
        ck_assert_msg(ws_proto_inflate(&iz, half, cut, 4 * sizeof text, &out) == -1,
                      "cut at %zu of %zu accepted", cut, buf_used(&c));
        ck_assert_uint_eq(buf_used(&out), 1);
        free(half);
    }
    /* The stream recovers for the next, good, message. */
    ck_assert_int_eq(ws_proto_inflate(&iz, buf_data(&c), buf_used(&c), sizeof text, &out), 0);
    ck_assert_uint_eq(buf_used(&out), 1 + sizeof text);
    buf_free(&c);
    buf_free(&out);
}
END_TEST

/* Inflate like a peer whose window is 2^bits bytes, taking output 64 bytes at a time so
 * that a back-reference beyond that window cannot be served from zlib's output buffer. */
static bool
peer_inflate(int bits, const void *in, size_t len, const void *want, size_t want_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(inflateInit2(&z, -bits), Z_OK);
    unsigned char *all = malloc(len + 4);
    ck_assert_ptr_nonnull(all);
    memcpy(all, in, len);
    memcpy(all + len, "\x00\x00\xff\xff", 4);
    unsigned char *got = malloc(want_len + 64);
    ck_assert_ptr_nonnull(got);
    z.next_in = all;
    z.avail_in = (uInt)(len + 4);
    size_t n = 0;
    int r = Z_OK;
    do {
        z.next_out = got + n;
        z.avail_out = 64;
        r = inflate(&z, Z_SYNC_FLUSH);
        n += 64 - z.avail_out;
    } while ((r == Z_OK || r == Z_BUF_ERROR) && z.avail_out == 0 && n <= want_len);
    bool ok = (r == Z_OK || r == Z_BUF_ERROR) && z.avail_in == 0 && n == want_len &&
              memcmp(got, want, n) == 0;
    inflateEnd(&z);
    free(all);
    free(got);
    return ok;
}

START_TEST(small_windows)
{
    /* Random letters, each run of 40 followed by a copy of the 40 found 1000 bytes back. */
    char data[16384] = {0};
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof data; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = i >= 1000 && (i / 40) % 2 ? data[i - 1000] : (char)('a' + (seed >> 16) % 26);
    }
    for (int bits = 8; bits <= 15; bits++) {
        z_stream z;
        memset(&z, 0, sizeof z);
        ck_assert_int_eq(ws_proto_deflate_init(&z, bits), 0);
        struct buf c = {0};
        ck_assert_int_eq(ws_proto_deflate(&z, bits, data, sizeof data, &c), 0);
        ck_assert_msg(peer_inflate(bits, buf_data(&c), buf_used(&c), data, sizeof data),
                      "a %d-bit peer cannot read our %d-bit output", bits, bits);
        /* The control: with the full window the distance-1000 copies are found, and a
         * peer with an 8-bit window cannot read the result. */
        if (bits == 15)
            ck_assert(!peer_inflate(8, buf_data(&c), buf_used(&c), data, sizeof data));
        buf_free(&c);
        deflateEnd(&z);
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(ws_proto_deflate_init(&z, 7), -1);
    ck_assert_int_eq(ws_proto_deflate_init(&z, 16), -1);
}
END_TEST

/* ---- Close codes and frames -------------------------------------------------------- */

START_TEST(close_codes)
{
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015, 1016,
                                   1100, 2000, 2999, 5000, 5001, 65535};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        ck_assert_msg(ws_proto_close_code_ok(ok[i]), "refused %u", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!ws_proto_close_code_ok(bad[i]), "accepted %u", bad[i]);
}
END_TEST

/* The close check of a payload on an exact heap copy of it, so that ASan sees any read
 * past it (one byte of payload must not be read as a two-byte code). */
static int
close_check(const char *p, size_t len)
{
    char *copy = exact_copy(p, len);
    int rc = ws_proto_close_check((const uint8_t *)copy, len);
    free(copy);
    return rc;
}

/* The close check of code and reason, as a client sends them. */
static int
close_of(uint16_t code, const char *reason)
{
    char p[125];
    size_t n = strlen(reason);
    ck_assert_uint_le(n, sizeof p - 2);
    p[0] = (char)(code >> 8);
    p[1] = (char)code;
    memcpy(p + 2, reason, n);
    return close_check(p, 2 + n);
}

START_TEST(close_payloads)
{
    /* Empty, or a code a peer may send and a UTF-8 reason of up to 123 bytes. */
    ck_assert_int_eq(close_check("", 0), 0);
    ck_assert_int_eq(close_of(1000, ""), 0);
    ck_assert_int_eq(close_of(3000, "bye"), 0);
    ck_assert_int_eq(close_of(4000, "\xc3\xa9t\xc3\xa9"), 0);
    ck_assert_int_eq(close_of(1012, "\xf0\x9f\x98\x80"), 0); /* U+1F600 */
    char reason[124];
    memset(reason, 'x', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    ck_assert_int_eq(close_of(1001, reason), 0);
    /* One byte is half a code; then the codes nobody may send. */
    ck_assert_int_eq(close_check("\x03", 1), WS_PROTO_PROTOCOL_ERROR);
    static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(close_of(bad[i], ""), WS_PROTO_PROTOCOL_ERROR);
        ck_assert_int_eq(close_of(bad[i], "why"), WS_PROTO_PROTOCOL_ERROR);
    }
    /* A bad code is a protocol error even when the reason is bad UTF-8 too. */
    ck_assert_int_eq(close_of(1005, "\xc0\xaf"), WS_PROTO_PROTOCOL_ERROR);
    /* A reason that is not UTF-8: overlong, cut short, a surrogate, a lone continuation. */
    ck_assert_int_eq(close_of(1000, "\xc0\xaf"), WS_PROTO_INVALID_DATA);
    ck_assert_int_eq(close_of(1000, "ok\xc3"), WS_PROTO_INVALID_DATA);
    ck_assert_int_eq(close_of(1000, "\xed\xa0\x80"), WS_PROTO_INVALID_DATA);
    ck_assert_int_eq(close_of(1000, "\xa9ok"), WS_PROTO_INVALID_DATA);
}
END_TEST

/* ---- The client's messages --------------------------------------------------------- */

/* The sentence for a message that is refused, checked to be JSON string content: it goes
 * into a reply as it is. */
static const char *
refusal(const char *text, size_t len)
{
    static char msg[WS_PROTO_MESSAGE_ERROR_SIZE];
    char *copy = exact_copy(text, len);
    json_t *j = ws_proto_message(copy, len, msg, sizeof msg);
    free(copy);
    ck_assert_msg(j == NULL, "accepted %.*s", (int)len, text);
    char quoted[sizeof msg + 2];
    snprintf(quoted, sizeof quoted, "\"%s\"", msg);
    json_t *s = json_loads(quoted, JSON_DECODE_ANY, NULL);
    ck_assert_msg(json_is_string(s), "not JSON string content: %s", msg);
    json_decref(s);
    return msg;
}

#define ck_refused(text, want) ck_assert_str_eq(refusal(text, strlen(text)), want)

START_TEST(message_objects)
{
    char msg[WS_PROTO_MESSAGE_ERROR_SIZE] = "x";
    const char *text = "{\"op\":\"publish\",\"channel\":\"c\",\"data\":{\"a\":[1,{\"b\":2}]}}";
    char *copy = exact_copy(text, strlen(text));
    json_t *j = ws_proto_message(copy, strlen(text), msg, sizeof msg);
    free(copy);
    ck_assert(json_is_object(j));
    ck_assert_str_eq(json_string_value(json_object_get(j, "op")), "publish");
    ck_assert_str_eq(msg, "");
    json_decref(j);
    /* The same key in two different objects is no duplicate. */
    copy = exact_copy("{\"a\":{\"a\":1}}", 13);
    j = ws_proto_message(copy, 13, msg, sizeof msg);
    free(copy);
    ck_assert(json_is_object(j));
    json_decref(j);
}
END_TEST

START_TEST(message_duplicate_keys)
{
    ck_refused("{\"op\":\"publish\",\"op\":\"ping\"}",
               "Invalid JSON at byte 20: duplicate object key near '\\\"op\\\"'.");
    ck_refused("{\"op\":\"publish\",\"data\":{\"a\":1,\"a\":2}}",
               "Invalid JSON at byte 33: duplicate object key near '\\\"a\\\"'.");
    /* The key as the client wrote it, escapes and all, and the byte count in bytes. */
    ck_refused("{\"o\\\"p\":1,\"o\\\"p\":2}",
               "Invalid JSON at byte 16: duplicate object key near '\\\"o\\\\\\\"p\\\"'.");
    ck_refused("{\"\xc3\xa9\":1,\"\xc3\xa9\":2}",
               "Invalid JSON at byte 12: duplicate object key near '\\\"\xc3\xa9\\\"'.");
}
END_TEST

START_TEST(message_not_objects)
{
    ck_refused("[1, 2]", "A message must be a JSON object, not an array.");
    ck_refused("\"ping\"", "A message must be a JSON object, not a string.");
    ck_refused("42", "A message must be a JSON object, not a number.");
    ck_refused(" -4.5e1 ", "A message must be a JSON object, not a number.");
    ck_refused("true", "A message must be a JSON object, not true.");
    ck_refused("false", "A message must be a JSON object, not false.");
    ck_refused("null", "A message must be a JSON object, not null.");
    ck_assert_str_eq(refusal("", 0), "A message must be a JSON object, not empty.");
}
END_TEST

START_TEST(message_invalid_json)
{
    ck_refused("{nope", "Invalid JSON at byte 5: string or '}' expected near 'nope'.");
    ck_refused("{\"op\":\"ping\"", "Invalid JSON at byte 12: '}' expected near end of file.");
    ck_refused("{\"op\":\"ping\"} x", "Invalid JSON at byte 15: end of file expected near 'x'.");
    ck_refused("  ", "Invalid JSON at byte 2: unexpected token near end of file.");
    ck_refused("{\"a\":01}", "Invalid JSON at byte 6: invalid token near '0'.");
    ck_refused("{\"a\":\"\\u0000\"}",
               "Invalid JSON at byte 13: \\\\u0000 is not allowed in a string.");
    /* jansson names a control character rather than quoting it. */
    ck_refused("{\"a\x01\":1}", "Invalid JSON at byte 3: control character 0x1 near '\\\"a'.");
    /* A NUL is not the end of the message, and not to be skipped either. */
    ck_assert_str_eq(refusal("{\"a\":1}\0{", 9), "Invalid JSON at byte 7: a NUL byte.");
    ck_assert_str_eq(refusal("{\"a\":1\0}", 8), "Invalid JSON at byte 6: a NUL byte.");
    ck_assert_str_eq(refusal("{\"a\":\"x\0\"}", 10), "Invalid JSON at byte 7: a NUL byte.");
    ck_assert_str_eq(refusal("\0", 1), "Invalid JSON at byte 0: a NUL byte.");
}
END_TEST

START_TEST(message_too_deep)
{
    /* jansson's limit is 2048 levels. */
    static char deep[12001];
    memset(deep, '[', 3000);
    memset(deep + 3000, ']', 3000);
    deep[6000] = '\0';
    ck_refused(deep, "Invalid JSON at byte 2049: maximum parsing depth reached near '['.");
    for (size_t i = 0; i < 12000; i++)
        deep[i] = "{\"a\":"[i % 5];
    ck_assert_str_eq(refusal(deep, 12000),
                     "Invalid JSON at byte 10241: maximum parsing depth reached near '{'.");
}
END_TEST

START_TEST(message_cut_to_fit)
{
    /* jansson quotes a token of up to 20 bytes only; a long duplicate key goes unquoted. */
    char text[640] = "{\"";
    size_t n = 2;
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 150; i++, n += 2)
            memcpy(text + n, "\xc3\xa9", 2);
        memcpy(text + n, k == 0 ? "\":1,\"" : "\":2}", k == 0 ? 5 : 4);
        n += k == 0 ? 5 : 4;
    }
    ck_assert_str_eq(refusal(text, n), "Invalid JSON at byte 608: duplicate object key.");
    ck_assert_str_eq(refusal("{\"a\":\xe2\x82\xac}", 9),
                     "Invalid JSON at byte 8: invalid token near '\xe2\x82\xac'.");
    /* The caller's cap cuts the sentence after a whole character or escape. */
    char small[16];
    char *copy = exact_copy("{\"\"\"\"\"\"\"", 9);
    ck_assert_ptr_null(ws_proto_message(copy, 9, small, sizeof small));
    free(copy);
    ck_assert_str_eq(small, "Invalid JSON at");
    char cut[54]; /* room for all but the second byte of the escaped quote */
    copy = exact_copy("{\"op\":1,\"op\":2}", 15);
    ck_assert_ptr_null(ws_proto_message(copy, 15, cut, sizeof cut));
    free(copy);
    ck_assert_str_eq(cut, "Invalid JSON at byte 12: duplicate object key near '");
    char one[1];
    copy = exact_copy("[]", 2);
    ck_assert_ptr_null(ws_proto_message(copy, 2, one, sizeof one));
    free(copy);
    ck_assert_str_eq(one, "");
}
END_TEST

Suite *
ws_proto_suite(void)
{
    Suite *s = suite_create("ws_proto");
    TCase *handshake = tcase_create("handshake");
    tcase_add_test(handshake, accept_rfc_example);
    tcase_add_test(handshake, key_validation);
    suite_add_tcase(s, handshake);

    TCase *negotiate = tcase_create("negotiate");
    tcase_add_test(negotiate, offer_plain);
    tcase_add_test(negotiate, offer_params);
    tcase_add_test(negotiate, offer_bad_values);
    tcase_add_test(negotiate, offer_declined_then_next);
    tcase_add_test(negotiate, offer_duplicate_param);
    tcase_add_test(negotiate, offer_quoted);
    tcase_add_test(negotiate, offer_other_extensions);
    tcase_add_test(negotiate, offer_none);
    tcase_add_test(negotiate, offer_repeated_headers);
    tcase_add_test(negotiate, response_exact);
    suite_add_tcase(s, negotiate);

    TCase *compress = tcase_create("compress");
    tcase_add_checked_fixture(compress, streams_setup, streams_teardown);
    tcase_add_test(compress, hello_vector);
    tcase_add_test(compress, empty_message);
    tcase_add_test(compress, exact_limit_at_block_end);
    tcase_add_test(compress, round_trip_text);
    tcase_add_test(compress, round_trip_1mib);
    tcase_add_test(compress, zip_bomb);
    tcase_add_test(compress, corrupt_input);
    tcase_add_test(compress, small_windows);
    suite_add_tcase(s, compress);

    TCase *text = tcase_create("text");
    tcase_add_test(text, close_codes);
    tcase_add_test(text, close_payloads);
    suite_add_tcase(s, text);

    TCase *messages = tcase_create("messages");
    tcase_add_test(messages, message_objects);
    tcase_add_test(messages, message_duplicate_keys);
    tcase_add_test(messages, message_not_objects);
    tcase_add_test(messages, message_invalid_json);
    tcase_add_test(messages, message_too_deep);
    tcase_add_test(messages, message_cut_to_fit);
    suite_add_tcase(s, messages);
    return s;
}
