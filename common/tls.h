/* tls: the server's TLS context, built by the master before it forks so that a key only
 * root may read still works, and inherited by every worker.
 *
 * Session resumption works across workers without any coordination between them: ticket
 * keys are derived from a random secret the master makes once (before the first fork) and
 * from the current hour, HMAC(secret, label || hour). Every worker derives the same keys,
 * issues tickets under the current hour's key and accepts the previous hour's too, so
 * keys rotate every hour and no worker ever needs to tell another. The secret lives as
 * long as the master: tickets survive a reload, not a restart. */
#ifndef SESSIOND_TLS_H
#define SESSIOND_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "conf.h"

/* How long a ticket key is used for new tickets; it is accepted for one period more. */
#define TLS_TICKET_PERIOD 3600

/* Build the context for c's TLS listeners: certificate chain and key (checked to match),
 * protocols, TLS 1.2 ciphers, ALPN http/1.1, tickets, no renegotiation. *out is NULL when
 * no listener has the tls flag. Returns 0, or -1 with "tls_key \"PATH\": reason" in err. */
int tls_ctx_build(const struct conf *c, SSL_CTX **out, char *err, size_t errlen);

#endif
