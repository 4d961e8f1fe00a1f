/* api_static: GET /dashboard and GET /client.js, the two files sessiond serves from its
 * own binary (worker/assets.c). They change only with the binary, so each carries an
 * ETag taken from its bytes, and a browser that holds the current one gets 304. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "assets.h"
#include "http.h"
#include "worker.h"

struct asset {
    const char *begin, *end;
    const char *type;
    const char *headers; /* besides the ETag: caching and what the browser may do */
    char etag[20];       /* "0123456789abcdef" with its quotes, made on first use */
};

/* FNV-1a over the bytes: a tag only needs to change when the file does. */
static void
asset_tag(struct asset *a)
{
    unsigned long long h = 14695981039346656037ULL;
    for (const char *p = a->begin; p < a->end; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    snprintf(a->etag, sizeof a->etag, "\"%016llx\"", h);
}

static void
serve(struct request *r, struct asset *a)
{
    if (a->etag[0] == '\0')
        asset_tag(a);
    char headers[512];
    snprintf(headers, sizeof headers, "ETag: %s\r\nCache-Control: no-cache\r\n%s", a->etag,
             a->headers);
    if (http_not_modified(r, a->etag)) {
        http_respond(r, 304, NULL, headers, NULL, 0);
        return;
    }
    http_respond(r, 200, a->type, headers, a->begin, (size_t)(a->end - a->begin));
}

void
api_dashboard(struct request *r)
{
    /* The page's own script and style are inline; it talks to this origin only. */
    static struct asset page = {
        asset_dashboard_html, asset_dashboard_html_end, "text/html; charset=utf-8",
        "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n"
        "X-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\n",
        ""};
    if (!r->conn->w->conf->dashboard) {
        http_error(r, 404, NULL, "The dashboard is off (directive dashboard).");
        return;
    }
    serve(r, &page);
}

void
api_client_js(struct request *r)
{
    /* Pages of another origin import the module too: that needs CORS. */
    static struct asset lib = {
        asset_client_js, asset_client_js_end, "text/javascript; charset=utf-8",
        "Access-Control-Allow-Origin: *\r\nX-Content-Type-Options: nosniff\r\n", ""};
    serve(r, &lib);
}
