/* queue-spool.c - envelope files of the outbound spool, their integrity check, and hold flags. */
/* Error and reply texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "fsutil.h"
#include "queue-spool.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "base64.h"
#include "num.h"

#define ENV_FILE_MAX (QUEUE_MAX_RCPTS * 2048 + 65536)   /* refuse absurd envelope files */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void queue_strlcpy(char *out, size_t outlen, const char *in)
{
	size_t n = strlen(in);
	if (outlen == 0)
		return;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, in, n);
	out[n] = '\0';
}

/* Is id a plausible queue id? Ids become file names, so only [A-Za-z0-9_-]. */
int queue_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_')
			return 0;
	return 1;
}

/* NOTIFY value to bits. */
unsigned queue_notify_parse(const char *v)
{
	unsigned bits = 0;
	if (v[0] == '\0' || strcmp(v, "-") == 0)
		return QN_DEFAULT;
	const char *p = v;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n == 5 && strncasecmp(p, "NEVER", 5) == 0)
			bits |= QN_NEVER;
		else if (n == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
			bits |= QN_SUCCESS;
		else if (n == 7 && strncasecmp(p, "FAILURE", 7) == 0)
			bits |= QN_FAILURE;
		else if (n == 5 && strncasecmp(p, "DELAY", 5) == 0)
			bits |= QN_DELAY;
		p += n;
		if (*p == ',')
			p++;
	}
	return bits ? bits : QN_DEFAULT;
}

/* NOTIFY bits back to text. */
static const char *notify_text(unsigned bits, char *out, size_t outlen)
{
	if (bits == QN_DEFAULT)
		return "-";
	if (bits & QN_NEVER)
		return "NEVER";
	snprintf(out, outlen, "%s%s%s", bits & QN_SUCCESS ? "SUCCESS," : "",
		 bits & QN_FAILURE ? "FAILURE," : "", bits & QN_DELAY ? "DELAY," : "");
	size_t n = strlen(out);
	if (n > 0)
		out[n - 1] = '\0';
	return out;
}

/* Escape free text (an error reply) onto one line: no control characters, no newlines. */
static void oneline(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

/* Copy a "<addr>" token (brackets included in p..end) into out. -1 if malformed. */
static int take_path(const char *p, size_t n, char *out, size_t outlen)
{
	if (n < 2 || p[0] != '<' || p[n - 1] != '>' || n - 2 >= outlen)
		return -1;
	memcpy(out, p + 1, n - 2);
	out[n - 2] = '\0';
	if (memchr(out, '\n', n - 2) || memchr(out, '\r', n - 2))
		return -1;
	return 0;
}

/* Parse "rcpt <addr> notify=X orcpt=Y [state=S] [delayed=1] [remote=H] [err=TEXT]". The
 * address may contain spaces (quoted local part), so it runs to the last "> notify=". */
static int parse_rcpt(const char *v, size_t n, struct qrcpt *r)
{
	const char *mark = NULL;
	for (size_t i = 0; i + 9 <= n; i++)
		if (memcmp(v + i, "> notify=", 9) == 0)
			mark = v + i;
	if (mark == NULL || take_path(v, (size_t)(mark - v) + 1, r->addr, sizeof(r->addr)) < 0)
		return -1;
	const char *p = mark + 2, *end = v + n;
	r->notify = QN_DEFAULT;
	while (p < end) {
		const char *sp = p;
		/* err= runs to the end of the line */
		if ((size_t)(end - p) >= 4 && memcmp(p, "err=", 4) == 0) {
			size_t l = (size_t)(end - p - 4);
			if (l >= sizeof(r->err))
				l = sizeof(r->err) - 1;
			memcpy(r->err, p + 4, l);
			r->err[l] = '\0';
			break;
		}
		while (sp < end && *sp != ' ')
			sp++;
		size_t l = (size_t)(sp - p);
		char tok[600];
		if (l >= sizeof(tok))
			return -1;
		memcpy(tok, p, l);
		tok[l] = '\0';
		if (strncmp(tok, "notify=", 7) == 0) {
			r->notify = queue_notify_parse(tok + 7);
		} else if (strncmp(tok, "orcpt=", 6) == 0) {
			if (strcmp(tok + 6, "-") != 0)
				queue_strlcpy(r->orcpt, sizeof(r->orcpt), tok + 6);
		} else if (strncmp(tok, "state=", 6) == 0) {
			r->state = strcmp(tok + 6, "sent") == 0 ? QR_SENT :
				   strcmp(tok + 6, "failed") == 0 ? QR_FAILED : QR_PENDING;
		} else if (strcmp(tok, "delayed=1") == 0) {
			r->delay_notified = 1;
		} else if (strncmp(tok, "remote=", 7) == 0) {
			queue_strlcpy(r->remote, sizeof(r->remote), tok + 7);
		}
		/* unknown tokens are ignored: a later version may add some */
		p = sp;
		while (p < end && *p == ' ')
			p++;
	}
	return 0;
}

/* Parse envelope text. */
int queue_env_parse(const char *text, size_t len, struct qenv *env, char *err, size_t errlen)
{
	memset(env, 0, sizeof(*env));
	int have_version = 0, have_from = 0, have_size = 0, have_id = 0;
	if (len == 0 || text[len - 1] != '\n') {
		seterr(err, errlen, "envelope truncated (no final newline)");
		return -1;
	}
	if (memchr(text, '\0', len) != NULL) {
		seterr(err, errlen, "envelope holds NUL bytes");
		return -1;
	}
	/* count rcpt lines first, to allocate once */
	unsigned nr = 0;
	for (size_t i = 0; i < len; i++)
		if ((i == 0 || text[i - 1] == '\n') && len - i > 5 && memcmp(text + i, "rcpt ", 5) == 0)
			nr++;
	if (nr == 0 || nr > QUEUE_MAX_RCPTS) {
		seterr(err, errlen, "envelope has %u recipients", nr);
		return -1;
	}
	env->rcpts = calloc(nr, sizeof(*env->rcpts));
	if (env->rcpts == NULL) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	size_t pos = 0;
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = (size_t)(nl - line);
		pos += n + 1;
		const char *sp = memchr(line, ' ', n);
		if (sp == NULL)
			continue;
		size_t kl = (size_t)(sp - line);
		const char *v = sp + 1;
		size_t vl = n - kl - 1;
		char val[QUEUE_ADDR_MAX + 16];
		int fits = vl < sizeof(val);
		if (fits) {
			memcpy(val, v, vl);
			val[vl] = '\0';
		}
		uint64_t u;
#define KEY(k) (kl == sizeof(k) - 1 && memcmp(line, k, kl) == 0)
		if (KEY("dkim")) {   /* base64 of the DKIM-Signature fields */
			free(env->dkim);
			env->dkim = NULL;
			if (vl == 0 || vl > BASE64_ENCODED_LEN(QUEUE_DKIM_MAX) ||
			    (env->dkim = malloc(BASE64_DECODED_MAX(vl) + 1)) == NULL) {
				seterr(err, errlen, "bad dkim line");
				goto bad;
			}
			ssize_t dl = base64_decode(v, vl, (unsigned char *)env->dkim,
						   BASE64_DECODED_MAX(vl));
			if (dl <= 0 || memchr(env->dkim, '\0', (size_t)dl) != NULL) {
				seterr(err, errlen, "bad dkim line");
				goto bad;
			}
			env->dkim[dl] = '\0';
			continue;
		}
		if (KEY("rcpt")) {
			if (parse_rcpt(v, vl, &env->rcpts[env->nrcpts]) < 0) {
				seterr(err, errlen, "bad recipient line %u", env->nrcpts + 1);
				goto bad;
			}
			env->nrcpts++;
			continue;
		}
		if (!fits) {
			seterr(err, errlen, "line too long in envelope");
			goto bad;
		}
		if (KEY("version")) {
			if (strcmp(val, "1") != 0) {
				seterr(err, errlen, "unknown envelope version %s", val);
				goto bad;
			}
			have_version = 1;
		} else if (KEY("id")) {
			if (!queue_id_valid(val)) {
				seterr(err, errlen, "bad id");
				goto bad;
			}
			queue_strlcpy(env->id, sizeof(env->id), val);
			have_id = 1;
		} else if (KEY("arrived")) {
			if (num_parse_u64(val, vl, INT64_MAX, &u) < 0)
				goto badnum;
			env->arrived = (time_t)u;
		} else if (KEY("from")) {
			if (take_path(val, vl, env->from, sizeof(env->from)) < 0) {
				seterr(err, errlen, "bad sender");
				goto bad;
			}
			have_from = 1;
		} else if (KEY("body")) {
			env->body_8bit = strcmp(val, "8BITMIME") == 0;
		} else if (KEY("smtputf8")) {
			env->smtputf8 = strcmp(val, "1") == 0;
		} else if (KEY("ret")) {
			if (strcasecmp(val, "FULL") == 0 || strcasecmp(val, "HDRS") == 0)
				queue_strlcpy(env->ret, sizeof(env->ret), val);
		} else if (KEY("envid")) {
			if (strcmp(val, "-") != 0)
				queue_strlcpy(env->envid, sizeof(env->envid), val);
		} else if (KEY("auth")) {
			if (strcmp(val, "-") != 0)
				queue_strlcpy(env->auth, sizeof(env->auth), val);
		} else if (KEY("size")) {
			if (num_parse_u64(val, vl, UINT64_MAX, &env->size) < 0)
				goto badnum;
			have_size = 1;
		} else if (KEY("crc32")) {
			char *e;
			unsigned long c = strtoul(val, &e, 16);
			if (vl != 8 || *e != '\0')
				goto badnum;
			env->crc = (uint32_t)c;
			env->have_crc = 1;
		} else if (KEY("attempts")) {
			if (num_parse_u64(val, vl, 1000000, &u) < 0)
				goto badnum;
			env->attempts = (unsigned)u;
		} else if (KEY("next")) {
			if (num_parse_u64(val, vl, INT64_MAX, &u) < 0)
				goto badnum;
			env->next = (time_t)u;
		}
#undef KEY
	}
	if (!have_version || !have_from || !have_size || !have_id) {
		seterr(err, errlen, "envelope lacks %s", !have_version ? "its version" :
		       !have_from ? "the sender" : !have_size ? "the size" : "the id");
		goto bad;
	}
	return 0;
badnum:
	seterr(err, errlen, "bad number in envelope");
bad:
	queue_env_free(env);
	return -1;
}

void queue_env_free(struct qenv *env)
{
	free(env->dkim);
	env->dkim = NULL;
	free(env->rcpts);
	env->rcpts = NULL;
	env->nrcpts = 0;
}

/* Read and parse <dir>/<id>.env. */
int queue_env_read(const char *dir, const char *id, struct qenv *env, char *err, size_t errlen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s.env", dir, id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		seterr(err, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > ENV_FILE_MAX) {
		close(fd);
		seterr(err, errlen, "envelope empty or too large");
		return -1;
	}
	size_t n = (size_t)st.st_size, got = 0;
	char *text = malloc(n + 1);
	if (text == NULL) {
		close(fd);
		seterr(err, errlen, "out of memory");
		return -1;
	}
	while (got < n) {
		ssize_t r = read(fd, text + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	int rc = -1;
	if (got != n)
		seterr(err, errlen, "short read of envelope");
	else
		rc = queue_env_parse(text, n, env, err, errlen) == 0 ? 1 : -1;
	free(text);
	if (rc == 1 && strcmp(env->id, id) != 0) {
		seterr(err, errlen, "envelope id %s does not match its file name", env->id);
		queue_env_free(env);
		rc = -1;
	}
	return rc;
}

/* Write the dkim line. */
int queue_env_put_dkim(FILE *f, const char *fields)
{
	size_t n = strlen(fields);
	if (n == 0 || n > QUEUE_DKIM_MAX)
		return -1;
	char *b64 = malloc(BASE64_ENCODED_LEN(n) + 1);
	if (b64 == NULL)
		return -1;
	base64_encode((const unsigned char *)fields, n, b64, BASE64_ENCODED_LEN(n) + 1);
	fprintf(f, "dkim %s\n", b64);
	free(b64);
	return 0;
}

/* Write the envelope atomically. */
int queue_env_write(const char *dir, const struct qenv *env)
{
	char path[4200], tmp[4200], nb[64];
	snprintf(path, sizeof(path), "%s/%s.env", dir, env->id);
	snprintf(tmp, sizeof(tmp), "%s/%s.env.q", dir, env->id);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "version 1\nid %s\narrived %lld\nfrom <%s>\n", env->id, (long long)env->arrived,
		env->from);
	fprintf(f, "body %s\nsmtputf8 %d\nret %s\nenvid %s\nauth %s\nsize %llu\n",
		env->body_8bit ? "8BITMIME" : "7BIT", env->smtputf8, env->ret[0] ? env->ret : "-",
		env->envid[0] ? env->envid : "-", env->auth[0] ? env->auth : "-",
		(unsigned long long)env->size);
	if (env->have_crc)
		fprintf(f, "crc32 %08lx\n", (unsigned long)env->crc);
	fprintf(f, "attempts %u\nnext %lld\n", env->attempts, (long long)env->next);
	if (env->dkim && queue_env_put_dkim(f, env->dkim) < 0) {
		fclose(f);
		unlink(tmp);
		return -1;
	}
	for (unsigned i = 0; i < env->nrcpts; i++) {
		const struct qrcpt *r = &env->rcpts[i];
		char e[QUEUE_ERR_MAX];
		queue_strlcpy(e, sizeof(e), r->err);
		oneline(e);
		fprintf(f, "rcpt <%s> notify=%s orcpt=%s state=%s%s", r->addr,
			notify_text(r->notify, nb, sizeof(nb)), r->orcpt[0] ? r->orcpt : "-",
			r->state == QR_SENT ? "sent" : r->state == QR_FAILED ? "failed" : "pending",
			r->delay_notified ? " delayed=1" : "");
		if (r->remote[0] && strchr(r->remote, ' ') == NULL)
			fprintf(f, " remote=%s", r->remote);
		if (e[0])
			fprintf(f, " err=%s", e);
		fputc('\n', f);
	}
	int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) < 0 || fs_fsync_dir(dir) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* A random 16-hex-digit id. */
void queue_new_id(char out[17])
{
	unsigned char r[8];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(r, &ts.tv_nsec, 4);
		memcpy(r + 4, &ts.tv_sec, 4);
	}
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

int queue_spool_temp(const char *tmpdir, const char *what, const void *p, size_t n, char *path_r,
		     size_t pathlen)
{
	if ((size_t)snprintf(path_r, pathlen, "%s/%s.%d.XXXXXX", tmpdir, what, (int)getpid()) >=
	    pathlen) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = mkostemp(path_r, O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fs_write_all(fd, p, n) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(path_r);
		errno = e;
		return -1;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

int queue_spool_null(const char *dir, const char *tmp, const void *p, size_t n, const char *rcpt,
		     int body_8bit, int smtputf8)
{
	struct qenv e;
	struct qrcpt r;
	memset(&e, 0, sizeof(e));
	memset(&r, 0, sizeof(r));
	queue_new_id(e.id);
	e.arrived = time(NULL);
	e.body_8bit = body_8bit;
	e.smtputf8 = smtputf8;
	e.size = n;
	e.have_crc = 1;
	e.crc = (uint32_t)crc32_z(0, (const unsigned char *)p, n);
	queue_strlcpy(r.addr, sizeof(r.addr), rcpt);
	r.notify = QN_NEVER;
	e.rcpts = &r;
	e.nrcpts = 1;
	char msg[4200];
	snprintf(msg, sizeof(msg), "%s/%s.msg", dir, e.id);
	/* the body first: the envelope is the commit point, its rename and fsync of dir make both
	 * entries durable */
	if (link(tmp, msg) < 0 || queue_env_write(dir, &e) < 0) {
		int err = errno;
		unlink(msg);
		errno = err;
		return -1;
	}
	return 0;
}

/* Check the body file against size and CRC. */
int queue_body_check(int fd, const struct qenv *env, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		seterr(err, errlen, "stat: %s", strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size != env->size) {
		seterr(err, errlen, "message file is %llu octets, the envelope says %llu",
		       (unsigned long long)st.st_size, (unsigned long long)env->size);
		return 0;
	}
	if (!env->have_crc)
		return 1;
	unsigned char b[65536];
	unsigned long crc = crc32(0, NULL, 0);
	off_t off = 0;
	for (;;) {
		ssize_t r = pread(fd, b, sizeof(b), off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			seterr(err, errlen, "read: %s", strerror(errno));
			return -1;
		}
		if (r == 0)
			break;
		crc = crc32_z(crc, b, (size_t)r);
		off += r;
	}
	if ((uint32_t)crc != env->crc) {
		seterr(err, errlen, "message file CRC-32 %08lx does not match the envelope's %08lx",
		       crc & 0xffffffffUL, (unsigned long)env->crc);
		return 0;
	}
	return 1;
}

/* Move a damaged entry aside. */
int queue_quarantine(const char *dir, const char *id)
{
	char q[4200], from[4200], to[4300];
	snprintf(q, sizeof(q), "%s/quarantine", dir);
	if (mkdir(q, 0750) < 0 && errno != EEXIST)
		return -1;
	int rc = 0;
	static const char *const ext[] = { "msg", "env" };
	for (int i = 0; i < 2; i++) {
		snprintf(from, sizeof(from), "%s/%s.%s", dir, id, ext[i]);
		snprintf(to, sizeof(to), "%s/%s.%s", q, id, ext[i]);
		if (rename(from, to) < 0 && errno != ENOENT)
			rc = -1;
	}
	fs_fsync_dir(q);
	fs_fsync_dir(dir);
	return rc;
}

/* File name for a sender's hold flag: lower case, octets outside [a-z0-9._+@-] as %XX. */
static int sender_flag_path(const char *queue_dir, const char *sender, char *out, size_t outlen)
{
	char name[3 * QUEUE_ADDR_MAX + 1];
	size_t o = 0;
	if (sender[0] == '\0')
		return -1;
	for (const char *p = sender; *p; p++) {
		unsigned char c = (unsigned char)tolower((unsigned char)*p);
		if (o + 4 >= sizeof(name))
			return -1;
		if (isalnum(c) || c == '.' || c == '_' || c == '+' || c == '@' || c == '-')
			name[o++] = (char)c;
		else
			o += (size_t)snprintf(name + o, 4, "%%%02X", c);
	}
	name[o] = '\0';
	if (name[0] == '.')
		name[0] = '_';   /* never "." or ".." */
	int n = snprintf(out, outlen, "%s/hold-sender/%s", queue_dir, name);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Create or remove a flag file (and its directory), durably. */
static int set_flag(const char *path, int on)
{
	char dir[4200];
	queue_strlcpy(dir, sizeof(dir), path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	if (on) {
		if (mkdir(dir, 0750) < 0 && errno != EEXIST)
			return -1;
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -1;
		close(fd);
	} else if (unlink(path) < 0 && errno != ENOENT) {
		return -1;
	}
	return fs_fsync_dir(dir) < 0 && errno != ENOENT ? -1 : 0;
}

/* Tell the queue process to look again. */
int queue_poke(const char *queue_dir)
{
	char path[4200], b[32];
	snprintf(path, sizeof(path), "%s/queue.pid", queue_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = '\0';
	long pid = strtol(b, NULL, 10);
	if (pid <= 1)
		return -1;
	return kill((pid_t)pid, SIGUSR1);
}

int queue_hold_sender(const char *queue_dir, const char *sender, int hold)
{
	char path[4200];
	if (sender_flag_path(queue_dir, sender, path, sizeof(path)) < 0) {
		errno = EINVAL;
		return -1;
	}
	if (set_flag(path, hold) < 0)
		return -1;
	queue_poke(queue_dir);
	return 0;
}

int queue_sender_held(const char *queue_dir, const char *sender)
{
	char path[4200];
	if (sender_flag_path(queue_dir, sender, path, sizeof(path)) < 0)
		return 0;
	return access(path, F_OK) == 0;
}

int queue_hold_msg(const char *queue_dir, const char *id, int hold)
{
	char path[4200];
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(path, sizeof(path), "%s/hold/%s", queue_dir, id);
	if (set_flag(path, hold) < 0)
		return -1;
	queue_poke(queue_dir);
	return 0;
}

int queue_msg_held(const char *queue_dir, const char *id)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/hold/%s", queue_dir, id);
	return access(path, F_OK) == 0;
}
