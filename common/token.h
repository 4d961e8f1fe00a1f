/* token: the random secrets and identifiers of sessions.
 *
 * A session token is 32 bytes from OpenSSL's CSPRNG, written as base64url without padding
 * (43 characters) and shown to the client once; the store keeps only its SHA-256. A
 * session's id is the first 16 bytes of that hash (22 characters): as random as the
 * token, so neither guessable nor sequential, and a one-way function of it, so knowing
 * an id (presence lists show them) tells nothing of the token. Because the id follows
 * from the token, a store finds a session by its token with no index of tokens: hash,
 * take the id, read the record, compare the whole hash. */
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

/* A new random token, NUL-terminated. Returns 0, or -1 if the CSPRNG failed. */
int token_new(char out[TOKEN_CHARS + 1]);

/* SHA-256 of a token's text. */
void token_hash(const char *token, size_t len, uint8_t out[TOKEN_HASH_BYTES]);

/* The session id that belongs to a token's hash, NUL-terminated. */
void token_id_of_hash(const uint8_t hash[TOKEN_HASH_BYTES], char out[ID_CHARS + 1]);

/* Whether text has the shape of a token (43 base64url characters) or of an id (22). */
bool token_is_wellformed(const char *s, size_t len);
bool token_id_is_wellformed(const char *s, size_t len);

/* Compare secrets in time that does not depend on where they differ. */
bool token_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Overwrite a secret in memory once it is no longer needed. */
void token_wipe(void *p, size_t len);

#endif
