#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
token_base64url(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

int
token_new(char out[TOKEN_CHARS + 1])
{
    uint8_t raw[TOKEN_BYTES];
    if (RAND_bytes(raw, (int)sizeof raw) != 1)
        return -1;
    token_base64url(raw, sizeof raw, out);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

void
token_id_of_hash(const uint8_t hash[TOKEN_HASH_BYTES], char out[ID_CHARS + 1])
{
    token_base64url(hash, ID_BYTES, out);
}

void
token_hash(const char *token, size_t len, uint8_t out[TOKEN_HASH_BYTES])
{
    unsigned int n = TOKEN_HASH_BYTES;
    EVP_Digest(token, len, out, &n, EVP_sha256(), NULL);
}

static bool
all_base64url(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

bool
token_is_wellformed(const char *s, size_t len)
{
    return len == TOKEN_CHARS && all_base64url(s, len);
}

bool
token_id_is_wellformed(const char *s, size_t len)
{
    return len == ID_CHARS && all_base64url(s, len);
}

bool
token_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

void
token_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}
