/* fuzz_worker: one real worker in the fuzzing process, for the harnesses that go through
 * the server's own code from the socket in (the API handlers, the WebSocket callbacks).
 *
 * It is what worker_run sets up, minus listeners and signals: the default config, an LMDB
 * store in a fresh directory under /tmp (removed at exit), the scoreboard, the realtime
 * side (hub, roster, bus), and a libev loop. A harness opens a connection on one end of a
 * socketpair, writes its bytes into the other end, and the loop serves them exactly as a
 * worker would; every connection is closed and freed before the harness returns, so one
 * input cannot change what the next one meets (beyond the store, which the harnesses
 * clean up after themselves). */
#ifndef SESSIOND_FUZZ_WORKER_H
#define SESSIOND_FUZZ_WORKER_H

#include <stddef.h>

#include "buf.h"
#include "store.h"
#include "worker.h"

/* The worker, set up on first use; aborts if that fails (a harness cannot go on). */
struct worker *fuzz_worker(void);

/* A session of user "fuzz" with data data (a JSON object), created in the store; its
 * token, for a WebSocket, goes to token if not NULL. Aborts on failure. */
void fuzz_worker_session(const char *data, char id[SESSION_ID_LEN + 1], char *token);

/* Delete a session (nothing if it is gone). */
void fuzz_worker_delete(const char *id);

/* Serve one client connection: write the pieces in[0..len) in the order given, cut at
 * the offsets cuts[0..ncuts) (ascending; they decide how reads see the stream), letting
 * the loop run after each, then shut the client's side and let the server finish. What
 * the server sent is appended to out (up to out_max bytes; the rest is read and dropped).
 * The connection is closed and freed before this returns. */
void fuzz_worker_serve(const void *in, size_t len, const size_t *cuts, size_t ncuts,
                       struct buf *out, size_t out_max);

#endif
