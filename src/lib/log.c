/* log.c - one-line key=value logs on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static const char *ident = "postino";

/* Set the lowest level written. */
void log_set_level(enum log_level lvl)
{
	min_level = lvl;
}

/* Are debug lines written? */
int log_debug_enabled(void)
{
	return min_level <= LOG_DEBUG;
}

/* Set the process name written on each line (static string). */
void log_set_ident(const char *id)
{
	ident = id;
}

/* Write one line: time, level, process, pid, then the caller's key=value text. */
static void log_vwrite(const char *lvl, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d] ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, lvl, ident, (int)getpid());
	if (n < 0)
		return;
	size_t len = (size_t)n;
	int m = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
	if (m < 0)
		return;
	len += (size_t)m;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* one write() per line keeps lines from several processes whole */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

/* Log at the given level. */
void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	if (lvl < min_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(names[lvl], fmt, ap);
	va_end(ap);
}

/* Log a violated invariant with its place and abort. */
void log_panic(const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(LOG_ERROR, "event=panic at=%s:%d msg=\"%s\"", file, line, msg);
	abort();
}

/* Escape and clip peer bytes for logging. */
const char *log_escape(const char *in, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, clip = outlen > 104 ? 100 : outlen - 4;
	for (size_t i = 0; i < len && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];
		if (o >= clip) {
			out[o++] = '.';
			out[o++] = '.';
			out[o++] = '.';
			break;
		}
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			if (c == '"' || c == '\\') {
				out[o++] = '\\';
				out[o++] = (char)c;
			} else {
				out[o++] = '\\';
				out[o++] = 'x';
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 15];
			}
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return out;
}

/* Length of the valid, non-C1 UTF-8 sequence at s (1-4), or 0. */
static size_t utf8_seq_ok(const unsigned char *s)
{
	size_t n;
	uint32_t cp;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1fu;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return n;
}

/* Escape text for display: controls and non-UTF-8 as \xNN. */
const char *log_escape_text(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	while (*s) {
		size_t n = *s >= 0x80 ? utf8_seq_ok(s) : 1;
		int esc = n == 0 || *s < 0x20 || *s == 0x7f || *s == '\\';
		size_t need = esc ? (*s == '\\' ? 2 : 4) : n;
		if (o + need + 4 > outlen) {   /* room for "...\0" */
			memcpy(out + o, "...", 4);
			return out;
		}
		if (*s == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (esc) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[*s >> 4];
			out[o++] = hex[*s & 15];
		} else {
			memcpy(out + o, s, n);
			o += n;
		}
		s += n ? n : 1;
	}
	out[o] = '\0';
	return out;
}
