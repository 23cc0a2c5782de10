/* log.c - one-line key=value logs on stderr. */
#include "log.h"
#include "procid.h"
#include "utf8.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A JSON line is at most this long: every octet of a text line may become a 6-octet \u00XX */
#define LOG_LINE_MAX 2048
#define LOG_JSON_MAX (LOG_LINE_MAX * 6 + 256)
#define LOG_KEY_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

static enum log_level min_level = LOG_INFO;
static const char *ident = "postino";
static int log_json;   /* log_format = json */

/* Write JSON lines instead of key=value text (log_format = json). */
void log_set_json(int on)
{
	log_json = on;
}

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

/* Append a JSON string of the n octets at s (escaped; octets that are not UTF-8 become
 * \u00XX; with unquote, \" and \\ are decoded and \xNN becomes \u00NN). 0, or -1 if it
 * does not fit in out[*o..max). */
static int json_str(char *out, size_t *o, size_t max, const char *s, size_t n, int unquote)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k = *o;
	if (k + 2 > max)
		return -1;
	out[k++] = '"';
	while (i < n) {
		unsigned c = u[i];
		size_t seq = 1;
		if (unquote && c == '\\' && i + 1 < n && (u[i + 1] == '"' || u[i + 1] == '\\')) {
			c = u[++i];
		} else if (unquote && c == '\\' && i + 3 < n && u[i + 1] == 'x' &&
			   isxdigit(u[i + 2]) && isxdigit(u[i + 3])) {
			char h[3] = { (char)u[i + 2], (char)u[i + 3], 0 };
			c = (unsigned)strtoul(h, NULL, 16) | 0x100;   /* forced \u00NN below */
			i += 3;
		} else if (c >= 0x80) {
			seq = utf8_decode(u + i, n - i, UTF8_NO_C1, NULL);
			if (seq == 0) {
				seq = 1;
				c |= 0x100;
			}
		}
		if (k + 8 > max)
			return -1;
		if (c == '"' || c == '\\') {
			out[k++] = '\\';
			out[k++] = (char)c;
		} else if (c < 0x20 || c == 0x7f || c >= 0x100) {
			c &= 0xff;
			memcpy(out + k, "\\u00", 4);
			out[k + 4] = hex[c >> 4];
			out[k + 5] = hex[c & 15];
			k += 6;
		} else if (c >= 0x80) {
			memcpy(out + k, u + i, seq);
			k += seq;
			i += seq - 1;
		} else {
			out[k++] = (char)c;
		}
		i++;
	}
	out[k++] = '"';
	*o = k;
	return 0;
}

/* Append ,"key":value to a JSON object under construction. */
static int json_field(char *out, size_t *o, size_t max, const char *key, size_t klen,
		      const char *val, size_t vlen, int unquote)
{
	size_t k = *o;
	if (k + 2 > max)
		return -1;
	out[k++] = ',';
	if (json_str(out, &k, max, key, klen, 0) < 0 || k + 1 > max)
		return -1;
	out[k++] = ':';
	if (json_str(out, &k, max, val, vlen, unquote) < 0)
		return -1;
	*o = k;
	return 0;
}

/* The caller's key=value text as JSON members: bare values end at a blank, quoted ones at the
 * closing quote (\" \\ \xNN decoded); text that is not key=value goes to "msg". */
static size_t json_fields(char *out, size_t k, size_t max, const char *t)
{
	while (*t) {
		while (*t == ' ')
			t++;
		if (*t == '\0')
			break;
		size_t kl = strspn(t, LOG_KEY_CHARS);
		if (kl == 0 || t[kl] != '=') {
			json_field(out, &k, max, "msg", 3, t, strlen(t), 0);
			break;
		}
		const char *v = t + kl + 1;
		size_t vl;
		int quoted = *v == '"';
		if (quoted) {
			v++;
			for (vl = 0; v[vl] && v[vl] != '"'; vl++)
				if (v[vl] == '\\' && v[vl + 1])
					vl++;
		} else {
			vl = strcspn(v, " ");
		}
		if (json_field(out, &k, max, t, kl, v, vl, quoted) < 0)
			break;
		t = v + vl + (quoted && v[vl] == '"');
	}
	return k;
}

/* Write one line: time, level, process, pid, then the caller's key=value text (as text, or as
 * one JSON object with log_format = json). */
static void log_vwrite(const char *lvl, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX], msg[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		return;
	char stamp[96];   /* wide enough for any int the compiler can imagine */
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 ts.tv_nsec / 1000000);
	if (log_json) {
		static _Thread_local char js[LOG_JSON_MAX];   /* pool threads log too */
		int n = snprintf(js, sizeof(js), "{\"time\":\"%s\",\"level\":\"%s\","
				 "\"proc\":\"%s\",\"pid\":%d", stamp, lvl, ident, (int)proc_pid());
		if (n < 0)
			return;
		size_t k = json_fields(js, (size_t)n, sizeof(js) - 2, msg);
		js[k++] = '}';
		js[k++] = '\n';
		ssize_t w = write(STDERR_FILENO, js, k);
		(void)w;
		return;
	}
	int n = snprintf(line, sizeof(line), "%s %s %s[%d] %s", stamp, lvl, ident, (int)proc_pid(),
			 msg);
	if (n < 0)
		return;
	size_t len = (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* one write() per line keeps lines from several processes whole */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

/* What a library writes to its log stream, gathered into lines (log_foreign). */
struct foreign_log {
	const char *lib;
	char line[512];
	size_t len;
};

/* Log one gathered library line as an event of ours (its own time stamp dropped). */
static void foreign_flush(struct foreign_log *fl)
{
	char esc[128];
	const char *t = fl->line;
	size_t n = fl->len;
	if (n > 0 && t[0] == '[' && memchr(t, ']', n) != NULL) {   /* "[1796532730] " */
		size_t skip = (size_t)((const char *)memchr(t, ']', n) - t) + 1;
		t += skip;
		n -= skip;
	}
	while (n > 0 && *t == ' ') {
		t++;
		n--;
	}
	if (n > 0)
		log_msg(LOG_WARN, "event=library-log lib=%s text=\"%s\"", fl->lib,
			log_escape(t, n, esc, sizeof(esc)));
	fl->len = 0;
}

/* fopencookie write: split into lines; an overlong line is logged in pieces. */
static ssize_t foreign_write(void *cookie, const char *buf, size_t size)
{
	struct foreign_log *fl = cookie;
	for (size_t i = 0; i < size; i++) {
		if (buf[i] == '\n' || fl->len == sizeof(fl->line)) {
			foreign_flush(fl);
			if (buf[i] == '\n')
				continue;
		}
		fl->line[fl->len++] = buf[i];
	}
	return (ssize_t)size;
}

/* See log.h. */
FILE *log_foreign(const char *lib)
{
	static FILE *made[4];   /* one stream per library and process, whoever asks again */
	static const char *made_lib[4];
	size_t i;
	for (i = 0; i < 4 && made[i] != NULL; i++)
		if (strcmp(made_lib[i], lib) == 0)
			return made[i];
	if (i == 4)
		return NULL;
	struct foreign_log *fl = calloc(1, sizeof(*fl));
	if (fl == NULL)
		return NULL;
	fl->lib = lib;
	FILE *f = fopencookie(fl, "w", (cookie_io_functions_t){ .write = foreign_write });
	if (f == NULL) {
		free(fl);
		return NULL;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	made[i] = f;
	made_lib[i] = lib;
	return f;
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

/* Escape text for display: controls and non-UTF-8 as \xNN. */
const char *log_escape_text(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)in, *end = s + strlen(in);
	size_t o = 0;
	while (*s) {
		size_t n = *s >= 0x80 ? utf8_decode(s, (size_t)(end - s), UTF8_NO_C1, NULL) : 1;
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
