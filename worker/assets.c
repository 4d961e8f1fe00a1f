/* assets: the files of web/ (the dashboard page, the client library), linked into the
 * binary so that sessiond serves them with nothing to install beside it and no build
 * step of their own. The assembler's .incbin copies each file's bytes into .rodata at
 * build time; the Makefile makes this object depend on web/. */
#include "assets.h"

#define ASSET(sym, path)                                                                   \
    ".section .rodata\n"                                                                   \
    ".global " #sym "\n"                                                                   \
    ".global " #sym "_end\n" #sym ":\n"                                                    \
    ".incbin \"" path "\"\n" #sym "_end:\n"                                                \
    ".byte 0\n"

__asm__(ASSET(asset_dashboard_html, "web/dashboard.html")
        ASSET(asset_client_js, "web/client.js")
        ".previous\n");
