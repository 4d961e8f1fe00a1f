/* log: one small logging API for master and workers.
 *
 * Lines go to stderr, or to the file named by log_file (reopened on SIGUSR1).
 * Every line names the process that wrote it ("master" or "worker 3") and its pid,
 * so interleaved output from several processes stays readable. log_format json makes
 * each line one JSON object instead, for log collectors:
 *   {"ts":"2024-05-01T12:00:00.123Z","level":"info","process":"worker","worker":3,
 *    "pid":4242,"msg":"..."} */
#ifndef SESSIOND_LOG_H
#define SESSIOND_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Name the calling process in every later line: process is "master", "worker" (with its
 * id, else -1) or "sessiond" (a single process without a master). */
void log_set_process(const char *process, int worker);
void log_set_level(enum log_level level);
/* While on, every error line is also written to stderr, as "sessiond: message", unless
 * stderr already is the log (no log_file, or stderr pointed at that file): so that the
 * errors that make a start fail reach the terminal that started it. On from the moment the
 * log file is opened until the process serves (main, master, worker); a child inherits
 * it. */
void log_set_echo(bool on);
/* Parse "error", "warn", "info" or "debug"; -1 if the name is none of those. */
int log_level_parse(const char *name);
/* Parse "text" or "json"; -1 if the name is neither. */
int log_format_parse(const char *name);
/* Send lines to path (appending), or to stderr when path is NULL or empty.
 * Returns 0, or -1 with errno set; the previous destination stays on failure. */
int log_open(const char *path);
/* Apply a config's log_file, log_level and log_format (at start and on reload). Returns
 * 0, or -1 if the file cannot be opened (the previous destination stays; the level and
 * format apply anyway). */
int log_configure(const char *path, int level, int format);
/* Reopen the current log file (after rotation). Returns 0 or -1. */
int log_reopen(void);

/* One log line as a JSON object, without the newline, into out (len at least 256):
 * msg is escaped so that the line is valid JSON whatever it holds (quotes, backslashes,
 * control characters; each byte that is not part of valid UTF-8 becomes U+FFFD), and cut
 * short, never inside an escape or a character, when it does not fit. worker < 0 leaves
 * the worker field out. Returns the length written. */
size_t log_json_line(char *out, size_t len, const struct timeval *tv, enum log_level level,
                     const char *process, int worker, long pid, const char *msg);

void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);  /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2); /* appends strerror(errno) */
void log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* Log at error level and exit(status). */
_Noreturn void log_fatal(int status, const char *fmt, ...) LOG_PRINTF(2, 3);

#endif
