/* token: the random secrets and identifiers of sessions.
 *
 * A session token is 32 bytes from OpenSSL's CSPRNG, written as base64url without padding
 * (43 characters) and shown to the client once; the store keeps only its SHA-256. A
 * session id is 16 random bytes (22 characters): not guessable, not sequential. */
#ifndef SESSIOND_TOKEN_H
#define SESSIOND_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_BYTES 32
#define TOKEN_CHARS 43
#define ID_BYTES 16
#define ID_CHARS 22
#define TOKEN_HASH_BYTES 32

/* Write n bytes as base64url without padding into out (which holds at least
 * 4 * ceil(n / 3) + 1 bytes); returns the length written (NUL not counted). */
size_t token_base64url(const uint8_t *in, size_t n, char *out);

/* A new random id / token, NUL-terminated. Returns 0, or -1 if the CSPRNG failed. */
int token_new_id(char out[ID_CHARS + 1]);
int token_new(char out[TOKEN_CHARS + 1]);

/* SHA-256 of a token's text. */
void token_hash(const char *token, size_t len, uint8_t out[TOKEN_HASH_BYTES]);

/* Whether text has the shape of a token (43 base64url characters) or of an id (22). */
bool token_is_wellformed(const char *s, size_t len);
bool token_id_is_wellformed(const char *s, size_t len);

/* Compare secrets in time that does not depend on where they differ. */
bool token_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Overwrite a secret in memory once it is no longer needed. */
void token_wipe(void *p, size_t len);

#endif
