/* fuzz_api_json: the input is a JSON body, sent through a real worker to the handlers
 * that read one: POST /api/sessions (create), PATCH /api/sessions/{id} (a merge patch on
 * a session made for the occasion) and POST /api/channels/{c}/publish, pipelined on one
 * keep-alive connection.
 *
 * Besides the sanitizers, it checks what a client would: every request gets exactly one
 * answer, none of them a 500 (memory does not run out here, so a 500 is a bug), and the
 * connection stays usable after a bad body. Sessions it creates are deleted again. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TARGET "{\"a\":1,\"b\":{\"c\":[1,2.5,\"x\"],\"d\":19.99},\"n\":null,\"s\":\"\\u00e9\"}"

static void
request(struct buf *b, const char *line, const uint8_t *body, size_t size, bool last)
{
    buf_printf(b,
               "%s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\n%s\r\n",
               line, size, last ? "Connection: close\r\n" : "");
    buf_append(b, body, size);
}

/* Walk the answers: each a status line, a head with Content-Length, and that many bytes
 * of body. Returns how many there were, their statuses in status[], or -1 if the bytes
 * are not a sequence of whole answers. */
static int
answers(const char *o, size_t n, int status[], int max)
{
    int k = 0;
    size_t at = 0;
    while (at < n) {
        const char *p = o + at, *end = memmem(p, n - at, "\r\n\r\n", 4);
        const char *cl;
        if (k == max || end == NULL || n - at < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0 ||
            (cl = memmem(p, (size_t)(end - p), "\r\nContent-Length: ", 18)) == NULL)
            return -1;
        status[k++] = atoi(p + 9);
        at = (size_t)(end + 4 - o) + strtoul(cl + 18, NULL, 10);
    }
    return at == n ? k : -1;
}

/* Delete what the create request made (its answer comes first, a 201), so that the store
 * does not fill up. */
static void
delete_created(const char *out, size_t len)
{
    static const char mark[] = "{\"id\":\"";
    const char *p = memmem(out, len, mark, sizeof mark - 1);
    if (p == NULL || (size_t)(out + len - p) < sizeof mark - 1 + SESSION_ID_LEN)
        abort(); /* a 201 must carry the new session */
    char id[SESSION_ID_LEN + 1];
    memcpy(id, p + sizeof mark - 1, SESSION_ID_LEN);
    id[SESSION_ID_LEN] = '\0';
    fuzz_worker_delete(id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[SESSION_ID_LEN + 1], line[64];
    fuzz_worker_session(TARGET, id, NULL);

    struct buf req = {0}, out = {0};
    size_t cuts[3];
    request(&req, "POST /api/sessions", data, size, false);
    cuts[0] = buf_used(&req);
    snprintf(line, sizeof line, "PATCH /api/sessions/%s", id);
    request(&req, line, data, size, false);
    cuts[1] = buf_used(&req);
    request(&req, "POST /api/channels/fuzz/publish", data, size, true);
    cuts[2] = buf_used(&req);
    /* Odd sizes arrive a request per read, even ones all at once (pipelined). */
    fuzz_worker_serve(buf_data(&req), buf_used(&req), cuts, size % 2 ? 3 : 0, &out, 1 << 20);

    const char *o = buf_data(&out);
    if (getenv("FUZZ_SHOW") != NULL) /* to see what an input does */
        fwrite(buf_data(&out), 1, buf_used(&out), stderr);
    size_t n = buf_used(&out);
    int status[4], k = answers(o, n, status, 4);
    bool ok = k == 3;
    for (int i = 0; ok && i < k; i++)
        ok = status[i] != 500;
    if (!ok) {
        fprintf(stderr, "fuzz_api_json: unexpected answers:\n%.*s\n", (int)(n > 4096 ? 4096 : n),
                o ? o : "");
        abort();
    }
    if (status[0] == 201)
        delete_created(o, n);
    fuzz_worker_delete(id);
    buf_free(&req);
    buf_free(&out);
    return 0;
}
