/* tlsrpt.c - SMTP TLS Reporting (RFC 8460) for the domains whose MTA-STS policy we apply.
 *
 * Delivery threads append one line per connection attempt to <queue>/tlsrpt/<YYYY-MM-DD>
 * (O_APPEND, one write per line): the policy, the MX host and address, and the result
 * ("success" or an RFC 8460 result type). Once a day (and on `postino queue tls-reports`, which
 * also sends today's) the scheduler aggregates each finished day per policy domain, looks up
 * `_smtp._tls.DOMAIN TXT "v=TLSRPTv1; rua=mailto:..."` and queues one report per domain to its
 * mailto: addresses: a multipart/report (report-type="tlsrpt") carrying the JSON report
 * gzip-compressed (application/tlsrpt+gzip). Domains without a TLSRPT record get nothing.
 */
/* Texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "queue-private.h"
#include "mta-sts.h"
#include "tlsrpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "base64.h"
#include "buf.h"
#include "log.h"

#define TLSRPT_DAY_MAX (16u << 20)    /* octets of attempts recorded per day; more are dropped */
#define TLSRPT_DOMAINS 512            /* policy domains reported per day */
#define TLSRPT_DETAILS 32             /* failure detail rows per domain */
#define TLSRPT_RUA 2                  /* mailto: addresses a report goes to */
#define TLSRPT_MSG_MAX (4u << 20)     /* one report message */
#define TLSRPT_NOW_FLAG "send-now"

struct detail {
	char result[40], mx[256], ip[64];
	unsigned long count;
};

struct dom {
	char name[256], mode[16], mxs[512];
	long max_age;
	unsigned long ok, failed;
	struct detail d[TLSRPT_DETAILS];
	unsigned nd;
};

/* The directory of the records. */
static void rpt_dir(const struct queue *q, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/tlsrpt", q->dir);
}

void tlsrpt_record(struct queue *q, const char *domain, const struct sts_policy *p,
		   const char *mx, const char *ip, const char *result)
{
	char dir[CONFIG_PATH_MAX + 32], path[CONFIG_PATH_MAX + 64], mxs[512], line[1400];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	rpt_dir(q, dir, sizeof(dir));
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return;
	snprintf(path, sizeof(path), "%s/%04d-%02d-%02d", dir, tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday);
	sts_mx_list(p, mxs, sizeof(mxs));
	int n = snprintf(line, sizeof(line), "%s\t%s\t%ld\t%s\t%s\t%s\t%s\n", domain,
			 p->mode == STS_ENFORCE ? "enforce" : p->mode == STS_TESTING ? "testing" :
			 "none", p->max_age, mxs, mx, ip, result);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	for (const char *c = line; c < line + n - 1; c++)
		if ((unsigned char)*c < 0x20 && *c != '\t')
			return;   /* names come from DNS: never a broken record */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < TLSRPT_DAY_MAX &&
	    write(fd, line, (size_t)n) != n)
		log_warn("event=tlsrpt-record-failed error=\"%s\"", strerror(errno));
	close(fd);
}

/* Add one record line to the day's table. */
static void add_line(struct dom *doms, unsigned *nd, char *line)
{
	char *f[7];
	char *save = NULL, *t = strtok_r(line, "\t\n", &save);
	int n = 0;
	for (; t && n < 7; t = strtok_r(NULL, "\t\n", &save))
		f[n++] = t;
	if (n != 7)
		return;
	struct dom *d = NULL;
	for (unsigned i = 0; i < *nd && d == NULL; i++)
		if (strcmp(doms[i].name, f[0]) == 0)
			d = &doms[i];
	if (d == NULL) {
		if (*nd == TLSRPT_DOMAINS)
			return;
		d = &doms[(*nd)++];
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", f[0]);
	}
	/* the policy as last seen that day */
	snprintf(d->mode, sizeof(d->mode), "%s", f[1]);
	d->max_age = strtol(f[2], NULL, 10);
	snprintf(d->mxs, sizeof(d->mxs), "%s", f[3]);
	if (strcmp(f[6], "success") == 0) {
		d->ok++;
		return;
	}
	d->failed++;
	for (unsigned i = 0; i < d->nd; i++)
		if (strcmp(d->d[i].result, f[6]) == 0 && strcmp(d->d[i].mx, f[4]) == 0 &&
		    strcmp(d->d[i].ip, f[5]) == 0) {
			d->d[i].count++;
			return;
		}
	if (d->nd == TLSRPT_DETAILS)
		return;
	struct detail *x = &d->d[d->nd++];
	snprintf(x->result, sizeof(x->result), "%s", f[6]);
	snprintf(x->mx, sizeof(x->mx), "%s", f[4]);
	snprintf(x->ip, sizeof(x->ip), "%s", f[5]);
	x->count = 1;
}

/* A JSON string (the names are DNS names and result types: no escaping beyond the basics). */
static void json_str(struct buf *b, const char *s)
{
	buf_appendstr(b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_appendf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			buf_appendf(b, "\\u%04x", (unsigned char)*s);
		else
			buf_append(b, s, 1);
	}
	buf_appendstr(b, "\"");
}

/* The RFC 8460 4.3 JSON report of one domain for the day starting at t0. */
static void report_json(struct buf *b, const struct dom *d, const char *org, time_t t0,
			const char *id)
{
	char start[32], end[32];
	time_t t1 = t0 + 86399;
	struct tm tm;
	gmtime_r(&t0, &tm);
	strftime(start, sizeof(start), "%Y-%m-%dT%H:%M:%SZ", &tm);
	gmtime_r(&t1, &tm);
	strftime(end, sizeof(end), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_appendstr(b, "{\"organization-name\":");
	json_str(b, org);
	buf_appendf(b, ",\"date-range\":{\"start-datetime\":\"%s\",\"end-datetime\":\"%s\"},",
		    start, end);
	buf_appendstr(b, "\"contact-info\":");
	char contact[300];
	snprintf(contact, sizeof(contact), "postmaster@%s", org);
	json_str(b, contact);
	buf_appendstr(b, ",\"report-id\":");
	json_str(b, id);
	buf_appendstr(b, ",\"policies\":[{\"policy\":{\"policy-type\":\"sts\",\"policy-string\":[");
	buf_appendf(b, "\"version: STSv1\",\"mode: %s\"", d->mode);
	char mxs[512], *save = NULL;
	snprintf(mxs, sizeof(mxs), "%s", d->mxs);
	for (char *m = strtok_r(mxs, ", ", &save); m; m = strtok_r(NULL, ", ", &save)) {
		char line[300];
		snprintf(line, sizeof(line), "mx: %s", m);
		buf_appendstr(b, ",");
		json_str(b, line);
	}
	buf_appendf(b, ",\"max_age: %ld\"],\"policy-domain\":", d->max_age);
	json_str(b, d->name);
	buf_appendstr(b, ",\"mx-host\":[");
	snprintf(mxs, sizeof(mxs), "%s", d->mxs);
	save = NULL;
	int first = 1;
	for (char *m = strtok_r(mxs, ", ", &save); m; m = strtok_r(NULL, ", ", &save)) {
		if (!first)
			buf_appendstr(b, ",");
		json_str(b, m);
		first = 0;
	}
	buf_appendf(b, "]},\"summary\":{\"total-successful-session-count\":%lu,"
		    "\"total-failure-session-count\":%lu}", d->ok, d->failed);
	if (d->nd > 0) {
		buf_appendstr(b, ",\"failure-details\":[");
		for (unsigned i = 0; i < d->nd; i++) {
			buf_appendstr(b, i ? ",{\"result-type\":" : "{\"result-type\":");
			json_str(b, d->d[i].result);
			buf_appendstr(b, ",\"receiving-mx-hostname\":");
			json_str(b, d->d[i].mx);
			buf_appendstr(b, ",\"receiving-ip\":");
			json_str(b, d->d[i].ip);
			buf_appendf(b, ",\"failed-session-count\":%lu}", d->d[i].count);
		}
		buf_appendstr(b, "]");
	}
	buf_appendstr(b, "}]}");
}

/* gzip (RFC 1952) of in into out. 0 / -1. */
static int gzip_buf(const struct buf *in, struct buf *out)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	uLong cap = deflateBound(&z, (uLong)in->len);
	unsigned char *o = malloc(cap);
	if (o == NULL) {
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (unsigned char *)in->data;
	z.avail_in = (uInt)in->len;
	z.next_out = o;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	if (r != Z_STREAM_END || buf_append(out, o, n) < 0) {
		free(o);
		return -1;
	}
	free(o);
	return 0;
}

/* The mailto: addresses of a TLSRPT record ("v=TLSRPTv1; rua=mailto:a@b,https://..."). */
static unsigned rua_parse(const char *txt, char out[TLSRPT_RUA][321])
{
	const char *r = strstr(txt, "rua=");
	unsigned n = 0;
	if (r == NULL)
		return 0;
	r += 4;
	while (*r && *r != ';' && n < TLSRPT_RUA) {
		while (*r == ' ' || *r == ',')
			r++;
		size_t l = strcspn(r, ",; ");
		if (l > 7 && strncmp(r, "mailto:", 7) == 0 && l - 7 < 321) {
			memcpy(out[n], r + 7, l - 7);
			out[n][l - 7] = '\0';
			/* an address, not a header: no control characters, one @, no brackets */
			const char *at = strchr(out[n], '@');
			int ok = at != NULL && at != out[n] && strchr(at + 1, '@') == NULL;
			for (const char *c = out[n]; ok && *c; c++)
				if ((unsigned char)*c <= 0x20 || *c == '<' || *c == '>' || *c == '"')
					ok = 0;
			if (ok)
				n++;
		}
		r += l;
	}
	return n;
}

/* Queue one message (from the null sender) to rcpt. 0 / -1. */
static int spool(struct queue *q, const struct buf *msg, const char *rcpt)
{
	char tmpdir[CONFIG_PATH_MAX + 8], tmp[CONFIG_PATH_MAX + 64];
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", q->cfg->data_dir);
	int fd = queue_spool_temp(tmpdir, "tlsrpt", msg->data, msg->len, tmp, sizeof(tmp));
	if (fd < 0)
		return -1;
	close(fd);
	int r = queue_spool_null(q->dir, tmp, msg->data, msg->len, rcpt, 0, 0);
	unlink(tmp);
	return r;
}

/* Build and queue the report of one domain. */
static void send_one(struct queue *q, const struct dom *d, time_t t0, const char *day)
{
	char txtname[300], txt[512], rua[TLSRPT_RUA][321];
	snprintf(txtname, sizeof(txtname), "_smtp._tls.%s", d->name);
	if (qdns_txt(txtname, "v=TLSRPTv1", txt, sizeof(txt)) != 1)
		return;   /* the domain asks for no reports */
	unsigned nrua = rua_parse(txt, rua);
	if (nrua == 0)
		return;
	const char *org = q->cfg->hostname;
	char id[17], boundary[64], fname[600], date[64];
	queue_new_id(id);
	snprintf(boundary, sizeof(boundary), "tlsrpt-%s", id);
	struct buf json, gz, msg;
	buf_init(&json, TLSRPT_MSG_MAX);
	buf_init(&gz, TLSRPT_MSG_MAX);
	buf_init(&msg, TLSRPT_MSG_MAX);
	report_json(&json, d, org, t0, id);
	if (gzip_buf(&json, &gz) < 0)
		goto out;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	/* RFC 8460 5.3: submitter!policy-domain!begin!end!id.json.gz */
	snprintf(fname, sizeof(fname), "%s!%s!%lld!%lld!%s.json.gz", org, d->name, (long long)t0,
		 (long long)(t0 + 86399), id);
	buf_appendf(&msg, "From: TLS reports <noreply-tlsrpt@%s>\r\nDate: %s\r\n"
		    "Subject: Report Domain: %s Submitter: %s Report-ID: <%s@%s>\r\n"
		    "Message-ID: <%s@%s>\r\nTLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n"
		    "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\"; "
		    "boundary=\"%s\"\r\n\r\n", org, date, d->name, org, id, org, id, org, d->name,
		    org, boundary);
	buf_appendf(&msg, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
		    "This is the SMTP TLS report (RFC 8460) of %s for %s on %s:\r\n"
		    "%lu sessions with a valid TLS connection, %lu failures.\r\n\r\n--%s\r\n"
		    "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n"
		    "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", boundary, org,
		    d->name, day, d->ok, d->failed, boundary, fname);
	size_t b64len = (gz.len + 2) / 3 * 4 + 1;
	char *b64 = malloc(b64len);
	if (b64 == NULL)
		goto out;
	base64_encode((const unsigned char *)gz.data, gz.len, b64, b64len);
	for (size_t i = 0, n = strlen(b64); i < n; i += 76) {
		buf_append(&msg, b64 + i, n - i < 76 ? n - i : 76);
		buf_appendstr(&msg, "\r\n");
	}
	free(b64);
	buf_appendf(&msg, "\r\n--%s--\r\n", boundary);
	for (unsigned i = 0; i < nrua; i++) {
		if (spool(q, &msg, rua[i]) < 0)
			log_warn("event=tlsrpt-failed domain=%s to=<%s> error=\"cannot queue the "
				 "report\"", d->name, rua[i]);
		else
			log_info("event=tlsrpt-sent domain=%s day=%s to=<%s> successful=%lu "
				 "failed=%lu report_id=%s", d->name, day, rua[i], d->ok, d->failed,
				 id);
	}
out:
	buf_free(&json);
	buf_free(&gz);
	buf_free(&msg);
}

/* Report one day's file, then remove it. */
static void send_day(struct queue *q, const char *dir, const char *day)
{
	char path[CONFIG_PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, day);
	FILE *f = fopen(path, "re");
	struct dom *doms = calloc(TLSRPT_DOMAINS, sizeof(*doms));
	if (f == NULL || doms == NULL) {
		if (f)
			fclose(f);
		free(doms);
		return;
	}
	unsigned nd = 0;
	char line[1500];
	while (fgets(line, sizeof(line), f))
		add_line(doms, &nd, line);
	fclose(f);
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(day, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) == 3) {
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		time_t t0 = timegm(&tm);
		for (unsigned i = 0; i < nd; i++)
			send_one(q, &doms[i], t0, day);
	}
	free(doms);
	unlink(path);
}

void tlsrpt_run(struct queue *q, time_t now)
{
	static time_t last;
	char dir[CONFIG_PATH_MAX + 32], flag[CONFIG_PATH_MAX + 64], today[16];
	rpt_dir(q, dir, sizeof(dir));
	snprintf(flag, sizeof(flag), "%s/%s", dir, TLSRPT_NOW_FLAG);
	int asked = access(flag, F_OK) == 0;
	if (!asked && now - last < 60)
		return;
	last = now;
	if (asked)
		unlink(flag);
	struct tm tm;
	gmtime_r(&now, &tm);
	snprintf(today, sizeof(today), "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	char days[64][16];
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL && n < 64;) {
		int y, m, dd;
		char extra;
		if (strlen(e->d_name) != 10 ||
		    sscanf(e->d_name, "%4d-%2d-%2d%c", &y, &m, &dd, &extra) != 3)
			continue;
		if (strcmp(e->d_name, today) < 0 || (asked && strcmp(e->d_name, today) == 0))
			snprintf(days[n++], sizeof(days[0]), "%s", e->d_name);
	}
	closedir(d);
	for (unsigned i = 0; i < n; i++)
		send_day(q, dir, days[i]);
}

int tlsrpt_ask_now(const char *queue_dir)
{
	char dir[CONFIG_PATH_MAX + 32], flag[CONFIG_PATH_MAX + 64];
	snprintf(dir, sizeof(dir), "%s/tlsrpt", queue_dir);
	snprintf(flag, sizeof(flag), "%s/%s", dir, TLSRPT_NOW_FLAG);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return -1;
	int fd = open(flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	close(fd);
	return queue_poke(queue_dir);
}
