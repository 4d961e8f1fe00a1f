/* assets: files of web/ compiled into the binary (see assets.c). */
#ifndef SESSIOND_ASSETS_H
#define SESSIOND_ASSETS_H

/* Each runs from NAME to NAME_end (a NUL follows, not counted). */
extern const char asset_dashboard_html[], asset_dashboard_html_end[];
extern const char asset_client_js[], asset_client_js_end[];

#endif
