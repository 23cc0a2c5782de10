/* log.h - one-line key=value logs on stderr, safe for peer bytes. */
#ifndef POSTINO_LOG_H
#define POSTINO_LOG_H

#include <stddef.h>
#include <stdio.h>
#include <stdnoreturn.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lvl);
/* Non-zero when debug lines are written (to skip building them otherwise). */
int log_debug_enabled(void);
void log_set_ident(const char *ident);
/* log_format = json: each line becomes one JSON object, {"time", "level", "proc", "pid", then
 * a string member per key=value of the text form (quoted values unescaped; octets written as
 * \xNN in text become \u00NN); text that is not key=value goes to "msg". */
void log_set_json(int on);
/* A stream for a library's own log output (libunbound writes to stderr otherwise): each line
 * written to it becomes one event=library-log lib=LIB text="..." warning of ours, so every
 * line stays in log_format. Lives until exit; NULL if out of memory. */
FILE *log_foreign(const char *lib);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
noreturn void log_panic(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Escape peer bytes for a log line: control and non-ASCII octets become \xNN, '"' and '\' are
 * escaped; the result is clipped to about 100 characters. Returns out. */
const char *log_escape(const char *in, size_t len, char *out, size_t outlen);

/* Escape text for a terminal or an admin listing (issue 11): control characters (C0, DEL and
 * the C1 range U+0080-U+009F) and bytes that are not UTF-8 become \xNN, '\' becomes "\\";
 * other UTF-8 passes unchanged, so a stored name can never forge a line or move the cursor.
 * Ends in "..." if out (at least 8 octets) is too small. Returns out. */
const char *log_escape_text(const char *in, char *out, size_t outlen);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define PANIC(...) log_panic(__FILE__, __LINE__, __VA_ARGS__)

#endif
