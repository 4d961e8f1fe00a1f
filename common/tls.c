#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "util.h"

#define SECRET_LEN 32

/* Made once, by the first process that builds a context (the master, before it forks),
 * and inherited by the workers: the one thing they share to agree on ticket keys. */
static unsigned char ticket_secret[SECRET_LEN];
static bool have_secret;

struct ticket_keys {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char mac[32];
};

/* HMAC(secret, label || period) into out (32 bytes). */
static int
derive(const char *label, uint64_t period, unsigned char out[32])
{
    unsigned char msg[32];
    size_t n = strlen(label);
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes, not a C string */
    memcpy(msg, label, n);
    for (int i = 0; i < 8; i++)
        msg[n + (size_t)i] = (unsigned char)(period >> (56 - 8 * i));
    unsigned int len = 32;
    return HMAC(EVP_sha256(), ticket_secret, SECRET_LEN, msg, n + 8, out, &len) != NULL ? 0
                                                                                     : -1;
}

/* The keys of one period, derived once per process and period (an hour): every ticket
 * issued or resumed needs them, and three HMACs per ticket are not free. */
static int
ticket_keys_for(uint64_t period, struct ticket_keys *k)
{
    static struct {
        bool valid;
        uint64_t period;
        struct ticket_keys keys;
    } cache[2];
    unsigned i = (unsigned)(period & 1);
    if (!cache[i].valid || cache[i].period != period) {
        unsigned char name[32];
        struct ticket_keys *c = &cache[i].keys;
        cache[i].valid = false;
        if (derive("sessiond name ", period, name) < 0 ||
            derive("sessiond aes ", period, c->aes) < 0 ||
            derive("sessiond mac ", period, c->mac) < 0)
            return -1;
        memcpy(c->name, name, sizeof c->name);
        cache[i].period = period;
        cache[i].valid = true;
    }
    *k = cache[i].keys;
    return 0;
}

static int
ticket_init_ciphers(const struct ticket_keys *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                    EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, sizeof k->mac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv, enc) != 1 ||
        EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return 0;
}

/* OpenSSL's ticket key callback: encrypt new tickets under this period's key; decrypt
 * those of this period, and of the previous one (asking for a fresh ticket then). */
static int
ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
              EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    uint64_t period = (uint64_t)time(NULL) / TLS_TICKET_PERIOD;
    struct ticket_keys k;
    int rc = -1;
    if (enc) {
        if (ticket_keys_for(period, &k) == 0 && RAND_bytes(iv, 16) == 1 &&
            ticket_init_ciphers(&k, iv, cctx, hctx, 1) == 0) {
            memcpy(key_name, k.name, sizeof k.name);
            rc = 1;
        }
    } else {
        rc = 0; /* an unknown key: a full handshake */
        for (uint64_t age = 0; age < 2 && rc == 0; age++) {
            if (ticket_keys_for(period - age, &k) < 0)
                rc = -1;
            else if (CRYPTO_memcmp(key_name, k.name, sizeof k.name) == 0)
                rc = ticket_init_ciphers(&k, iv, cctx, hctx, 0) < 0 ? -1 : age == 0 ? 1 : 2;
        }
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

/* Offer http/1.1 and nothing else; a client that wants only other protocols (h2 alone)
 * is told so with an alert, as RFC 7301 asks, rather than served something it did not
 * ask for. */
static int
alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
               const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Keys with a passphrase would make OpenSSL prompt on the terminal; refuse them. */
static int
no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* The reason of OpenSSL's latest error, or what fallback says. */
static const char *
ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : fallback;
}

/* Say "No such file" or "Permission denied" plainly, before OpenSSL reads the file. */
static int
check_readable(const char *what, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, errlen, "%s \"%s\": %s", what, path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

static int
set_protocols(SSL_CTX *ctx, int mask)
{
    static const struct {
        int bit, version;
        uint64_t no;
    } v[] = {
        {CONF_TLS_1_0, TLS1_VERSION, SSL_OP_NO_TLSv1},
        {CONF_TLS_1_1, TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
        {CONF_TLS_1_2, TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
        {CONF_TLS_1_3, TLS1_3_VERSION, SSL_OP_NO_TLSv1_3},
    };
    int lo = 0, hi = 0;
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        if (mask & v[i].bit) {
            lo = lo != 0 ? lo : v[i].version;
            hi = v[i].version;
        }
    }
    if (SSL_CTX_set_min_proto_version(ctx, lo) != 1 || SSL_CTX_set_max_proto_version(ctx, hi) != 1)
        return -1;
    /* A hole in the list ("TLSv1.1 TLSv1.3") is a version between the bounds turned off. */
    for (size_t i = 0; i < ARRAY_LEN(v); i++)
        if (v[i].version > lo && v[i].version < hi && !(mask & v[i].bit))
            SSL_CTX_set_options(ctx, v[i].no);
    return 0;
}

static int
load_cert_and_key(SSL_CTX *ctx, const struct conf *c, char *err, size_t errlen)
{
    if (check_readable("tls_cert", c->tls_cert, err, errlen) < 0 ||
        check_readable("tls_key", c->tls_key, err, errlen) < 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
        errf(err, errlen, "tls_cert \"%s\": %s", c->tls_cert, ssl_reason("not a PEM certificate"));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1) {
        errf(err, errlen, "tls_key \"%s\": %s (a PEM key without a passphrase is needed)",
             c->tls_key, ssl_reason("not a PEM private key"));
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        errf(err, errlen, "tls_key \"%s\" does not match the certificate in tls_cert \"%s\"",
             c->tls_key, c->tls_cert);
        return -1;
    }
    return 0;
}

static int
configure(SSL_CTX *ctx, const struct conf *c, char *err, size_t errlen)
{
    if (set_protocols(ctx, c->tls_protocols) < 0) {
        errf(err, errlen, "tls_protocols: %s", ssl_reason("not supported by this OpenSSL"));
        return -1;
    }
    /* Renegotiation is a denial of service lever and HTTP/1.1 never needs it; compression
     * leaks secrets (CRIME). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* A client that closes without close_notify (most do) is an end of input, as on a
     * plain connection; requests carry their own framing, so nothing is truncated. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes and a moving buffer fit the connection's output buffer, which is
     * consumed as the socket takes it and may be reallocated between tries; released
     * buffers keep an idle TLS connection to a few hundred bytes more than a plain one. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, c->tls_ciphers) != 1) {
        errf(err, errlen, "tls_ciphers \"%s\": %s", c->tls_ciphers,
             ssl_reason("no cipher matches"));
        return -1;
    }
    /* Resumption by tickets only: a server-side cache would be per worker. One TLS 1.3
     * ticket is enough for a client that reconnects. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, TLS_TICKET_PERIOD);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase_cb);
    return load_cert_and_key(ctx, c, err, errlen);
}

int
tls_ctx_build(const struct conf *c, SSL_CTX **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!conf_uses_tls(c))
        return 0;
    if (!have_secret) {
        if (RAND_bytes(ticket_secret, sizeof ticket_secret) != 1) {
            errf(err, errlen, "cannot make the session ticket secret: %s",
                 ssl_reason("no randomness"));
            return -1;
        }
        have_secret = true;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        errf(err, errlen, "cannot make a TLS context: %s", ssl_reason("out of memory"));
        return -1;
    }
    if (configure(ctx, c, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return -1;
    }
    *out = ctx;
    return 0;
}
