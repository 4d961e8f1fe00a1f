/* status: `sessiond -s status`, the running instance as a table (as `pm2 ls` shows one).
 *
 * The scoreboard is an anonymous mapping only the instance's own processes share, so the
 * figures come from the instance's GET /api/health, asked over one of the listeners of the
 * configuration: a Unix socket first, then a TCP address (loopback for a wildcard one),
 * TLS ones last (spoken with OpenSSL, without verifying the certificate: nothing secret
 * is sent, and the name on it is the public one, not the loopback address we dial). */
#ifndef SESSIOND_STATUS_H
#define SESSIOND_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "conf.h"

/* Print the table of the instance whose master (or single process) is pid. Returns the
 * exit status of -s status: 0 when it was read and printed, 1 when the instance could not
 * be asked or its answer not understood, or when the answer came from another server than
 * pid's (with the reason on errout). */
int status_run(const struct conf *c, pid_t pid, FILE *out, FILE *errout);

/* Print the table for a /api/health body. single: the instance runs without a master.
 * Returns 0, or -1 with the reason in err when the body is not a health document. */
int status_render(const char *body, size_t len, pid_t pid, bool single, FILE *out, char *err,
                  size_t errlen);

/* A duration as one rounded-down unit: "59s", "3m", "2h", "4d". */
void status_human_duration(uint64_t seconds, char *buf, size_t len);

#endif
