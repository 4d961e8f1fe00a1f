/* log: one small logging API for master and workers.
 *
 * Lines go to stderr, or to the file named by log_file (reopened on SIGUSR1).
 * Every line names the process that wrote it ("master" or "worker 3") and its pid,
 * so interleaved output from several processes stays readable. */
#ifndef SESSIOND_LOG_H
#define SESSIOND_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Name the calling process in every later line: "master", "worker 2", "sessiond". */
void log_set_role(const char *role);
void log_set_level(enum log_level level);
/* Parse "error", "warn", "info" or "debug"; -1 if the name is none of those. */
int log_level_parse(const char *name);
/* Send lines to path (appending), or to stderr when path is NULL or empty.
 * Returns 0, or -1 with errno set; the previous destination stays on failure. */
int log_open(const char *path);
/* Apply a config's log_file and log_level (at start and on reload). Returns 0, or -1 if
 * the file cannot be opened (the previous destination stays). */
int log_configure(const char *path, int level);
/* Reopen the current log file (after rotation). Returns 0 or -1. */
int log_reopen(void);

void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);  /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2); /* appends strerror(errno) */
void log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Log at error level and exit(status). */
_Noreturn void log_fatal(int status, const char *fmt, ...) LOG_PRINTF(2, 3);

#endif
