/* smtp-authin.c - SPF, DKIM and DMARC for mail arriving on port 25, the Authentication-Results
 * field (RFC 8601), and the policy: DMARC reject -> 550, quarantine -> Junk, a hosted domain
 * claimed without SPF or aligned DKIM -> 550 (our users send on the submission ports).
 *
 * Runs on the delivery pool thread (smtp-data.c deliver_work), never on the loop thread: the
 * DNS lookups block that thread only, each for at most inbound_auth_dns_timeout and all of a
 * message's lookups together for at most AUTHIN_BUDGET_MS. Each pool thread keeps its own
 * libunbound context (and cache) and its own account database handle.
 */
#include "smtp-authin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>
#include <zlib.h>

#include "acctdb.h"
#include "addr.h"
#include "config.h"
#include "dkim-verify.h"
#include "dmarc.h"
#include "dns.h"
#include "fsutil.h"
#include "header.h"
#include "idn.h"
#include "log.h"
#include "smtp-private.h"
#include "spf.h"

#define AUTHIN_READ_CHUNK 65536            /* the message is read back in pieces of this size */
#define AUTHIN_BUDGET_MS 30000             /* all DNS lookups of one message together */
#define AUTHIN_LOOKUPS_MAX 150             /* SPF's worst case (10 mx x 11) plus DKIM, DMARC */
#define AUTHIN_AR_MAX 8192                 /* our Authentication-Results field */
#define AUTHIN_FROM_DOMAINS 4              /* From: domains checked (hosted-domain claim) */

#define RR_A 1
#define RR_MX 15
#define RR_TXT 16
#define RR_AAAA 28

/* ---- DNS through libunbound, with a time limit ---- */

static __thread struct ub_ctx *tl_ub;
static __thread char tl_servers[512];
static __thread struct acctdb *tl_db;

struct dnsctx {
	struct ub_ctx *ub;
	unsigned timeout_ms;
	struct timespec start;
	unsigned lookups;
};

struct pending {
	int done, err;
	struct ub_result *res;
};

/* libunbound callback: keep the answer. */
static void ub_done(void *arg, int err, struct ub_result *res)
{
	struct pending *p = arg;
	p->done = 1;
	p->err = err;
	p->res = res;
}

/* Milliseconds since the message's first lookup. */
static long elapsed_ms(const struct dnsctx *d)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - d->start.tv_sec) * 1000 + (now.tv_nsec - d->start.tv_nsec) / 1000000;
}

/* See smtp-authin.h. */
void smtp_authin_thread_release(int all)
{
	acctdb_close(&tl_db);
	if (all && tl_ub != NULL) {
		ub_ctx_delete(tl_ub);   /* joins its resolver thread */
		tl_ub = NULL;
		tl_servers[0] = '\0';
	}
}

/* The thread's resolver for servers (made on first use). NULL on error. */
static struct ub_ctx *thread_ub(const char *servers)
{
	if (tl_ub != NULL && strcmp(tl_servers, servers) == 0)
		return tl_ub;
	if (tl_ub != NULL)
		ub_ctx_delete(tl_ub);
	char err[256];
	tl_ub = dns_ctx_new(servers, "", err, sizeof(err));
	if (tl_ub == NULL) {
		log_warn("proto=smtp event=authin-dns-failed error=\"%s\"", err);
		return NULL;
	}
	/* dns_ctx_new made it threaded: a resolver thread, not a forked process */
	snprintf(tl_servers, sizeof(tl_servers), "%s", servers);
	return tl_ub;
}

/* One lookup within the time limits. AUTHDNS_OK (*res_r set), _NONE or _TEMP. */
static int resolve(struct dnsctx *d, const char *name, int type, struct ub_result **res_r)
{
	*res_r = NULL;
	if (d->ub == NULL || ++d->lookups > AUTHIN_LOOKUPS_MAX)
		return AUTHDNS_TEMP;
	long left = AUTHIN_BUDGET_MS - elapsed_ms(d);
	if (left <= 0)
		return AUTHDNS_TEMP;
	if (left > (long)d->timeout_ms)
		left = (long)d->timeout_ms;
	struct pending p = { 0, 0, NULL };
	int id;
	if (ub_resolve_async(d->ub, name, type, 1, &p, ub_done, &id) != 0)
		return AUTHDNS_TEMP;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!p.done) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= left) {
			ub_cancel(d->ub, id);
			return AUTHDNS_TEMP;
		}
		struct pollfd pfd = { .fd = ub_fd(d->ub), .events = POLLIN };
		int r = poll(&pfd, 1, (int)(left - spent));
		if (r < 0 && errno != EINTR) {
			ub_cancel(d->ub, id);
			return AUTHDNS_TEMP;
		}
		if (r > 0 && ub_process(d->ub) != 0) {
			ub_cancel(d->ub, id);
			return AUTHDNS_TEMP;
		}
	}
	if (p.err != 0 || p.res == NULL) {
		ub_resolve_free(p.res);
		return AUTHDNS_TEMP;
	}
	if (p.res->rcode != 0 && !p.res->nxdomain) {   /* SERVFAIL, REFUSED */
		ub_resolve_free(p.res);
		return AUTHDNS_TEMP;
	}
	if (!p.res->havedata) {
		ub_resolve_free(p.res);
		return AUTHDNS_NONE;
	}
	*res_r = p.res;
	return AUTHDNS_OK;
}

/* authdns TXT: each record's strings joined. */
static int dns_txt(void *ctx, const char *name, struct authdns_txt *out)
{
	struct ub_result *res;
	out->n = 0;
	int r = resolve(ctx, name, RR_TXT, &res);
	if (r != AUTHDNS_OK)
		return r;
	for (int i = 0; res->data[i] && out->n < AUTHDNS_TXT_MAX; i++) {
		const unsigned char *p = (const unsigned char *)res->data[i];
		size_t n = (size_t)res->len[i], o = 0, k = 0;
		int bad = 0;
		while (k < n) {
			size_t l = p[k++];
			if (l > n - k || o + l > AUTHDNS_TXT_LEN) {
				bad = 1;
				break;
			}
			memcpy(out->rec[out->n] + o, p + k, l);
			o += l;
			k += l;
		}
		if (bad)
			continue;   /* a record over AUTHDNS_TXT_LEN is not one we use */
		out->rec[out->n][o] = '\0';
		out->len[out->n++] = o;
	}
	ub_resolve_free(res);
	return out->n > 0 ? AUTHDNS_OK : AUTHDNS_NONE;
}

/* authdns A/AAAA. */
static int dns_addrs(void *ctx, const char *name, int family, struct authdns_addrs *out)
{
	struct ub_result *res;
	out->n = 0;
	int r = resolve(ctx, name, family == 4 ? RR_A : RR_AAAA, &res);
	if (r != AUTHDNS_OK)
		return r;
	size_t want = family == 4 ? 4 : 16;
	for (int i = 0; res->data[i] && out->n < AUTHDNS_ADDR_MAX; i++) {
		if ((size_t)res->len[i] != want)
			continue;
		out->family[out->n] = family;
		memcpy(out->addr[out->n++], res->data[i], want);
	}
	ub_resolve_free(res);
	return out->n > 0 ? AUTHDNS_OK : AUTHDNS_NONE;
}

/* authdns MX: the exchange names (n is AUTHDNS_MX_MAX + 1 when there are more). */
static int dns_mx(void *ctx, const char *name, struct authdns_mx *out)
{
	struct ub_result *res;
	out->n = 0;
	int r = resolve(ctx, name, RR_MX, &res);
	if (r != AUTHDNS_OK)
		return r;
	for (int i = 0; res->data[i] && out->n <= AUTHDNS_MX_MAX; i++) {
		if (res->len[i] < 3 || dns_wire_name((const unsigned char *)res->data[i] + 2,
						  (size_t)res->len[i] - 2, out->name[out->n],
						  sizeof(out->name[0])) < 0 ||
		    out->name[out->n][0] == '\0')   /* a null MX (RFC 7505) names no host */
			continue;
		out->n++;
	}
	ub_resolve_free(res);
	return out->n > 0 ? AUTHDNS_OK : AUTHDNS_NONE;
}

/* ---- the checks ---- */

/* Is domain hosted here? 1 yes, 0 no, -1 the database cannot be read. */
static int hosted(const struct config *cfg, const char *domain)
{
	const char *err;
	if (tl_db == NULL) {
		char path[CONFIG_PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/system.db", cfg->data_dir);
		if (acctdb_open(path, 0, &tl_db, &err) < 0) {
			tl_db = NULL;
			return -1;
		}
	}
	return acctdb_domain_exists(tl_db, domain, &err);
}

struct from_list {
	char domain[AUTHIN_FROM_DOMAINS][AUTHDNS_NAME_MAX + 1];
	unsigned n;
	int bad;
};

/* addr_parse_list callback: collect the distinct From: domains as A-labels. */
static void from_cb(void *ctx, const char *address)
{
	struct from_list *l = ctx;
	const char *at = strrchr(address, '@');
	char ascii[AUTHDNS_NAME_MAX + 1];
	if (at == NULL || idn_to_ascii(at + 1, strlen(at + 1), ascii, sizeof(ascii)) < 0) {
		l->bad = 1;
		return;
	}
	for (unsigned i = 0; i < l->n; i++)
		if (strcasecmp(l->domain[i], ascii) == 0)
			return;
	if (l->n == AUTHIN_FROM_DOMAINS) {
		l->bad = 1;
		return;
	}
	snprintf(l->domain[l->n++], sizeof(l->domain[0]), "%s", ascii);
}

/* Append text to an A-R comment, without parentheses, backslashes or control octets. */
static void ar_comment(struct buf *b, const char *text)
{
	if (text == NULL || !text[0])
		return;
	buf_append(b, " (", 2);
	for (const char *p = text; *p; p++) {
		char c = *p;
		if (c == '(' || c == ')' || c == '\\' || (unsigned char)c < ' ' || c == 0x7f)
			c = ' ';
		buf_append(b, &c, 1);
	}
	buf_append(b, ")", 1);
}

/* Append a property value: as is when it is a token or an address of token characters, else
 * as a quoted-string (RFC 8601 2.2 value). */
static void ar_value(struct buf *b, const char *v)
{
	int plain = v[0] != '\0';
	for (const char *p = v; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || strchr("!#$%&'*+-.^_`{|}~@", *p);
	if (plain) {
		buf_append(b, v, strlen(v));
		return;
	}
	buf_append(b, "\"", 1);
	for (const char *p = v; *p; p++) {
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			continue;
		if (*p == '"' || *p == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, p, 1);
	}
	buf_append(b, "\"", 1);
}

static const char *const dkim_names[] = { "none", "pass", "fail", "policy", "neutral",
					  "temperror", "permerror" };

/* The authserv-id of an Authentication-Results value: the first token after CFWS. */
static int ar_claims(const char *v, size_t n, const char *id)
{
	size_t i = 0;
	for (;;) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
			i++;
		if (i < n && v[i] == '(') {   /* a comment (nesting counted) */
			int depth = 0;
			for (; i < n; i++) {
				if (v[i] == '\\') {
					i++;
					continue;
				}
				depth += v[i] == '(';
				depth -= v[i] == ')';
				if (depth == 0) {
					i++;
					break;
				}
			}
			continue;
		}
		break;
	}
	size_t s = i;
	if (i < n && v[i] == '"') {   /* a quoted-string authserv-id */
		s = ++i;
		while (i < n && v[i] != '"')
			i++;
	} else {
		while (i < n && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '\r' &&
		       v[i] != '\n' && v[i] != '(')
			i++;
	}
	size_t l = i - s;
	if (l > 0 && v[s + l - 1] == '.')   /* "host." is host too */
		l--;
	return l == strlen(id) && strncasecmp(v + s, id, l) == 0;
}

/* Move the n octets at from to to (to != from) within fd, in pieces of chunk[0..
 * AUTHIN_READ_CHUNK), the last piece first when moving towards the end so nothing is
 * overwritten before it is read. 0 ok, -1 error. */
static int move_range(int fd, uint64_t from, uint64_t to, uint64_t n, char *chunk)
{
	uint64_t done = 0;
	while (done < n) {
		size_t k = n - done < AUTHIN_READ_CHUNK ? (size_t)(n - done) : AUTHIN_READ_CHUNK;
		uint64_t at = to > from ? n - done - k : done;   /* offset within the range */
		ssize_t got = pread(fd, chunk, k, (off_t)(from + at));
		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)k || fs_pwrite_all(fd, chunk, k, (off_t)(to + at)) < 0)
			return -1;
		done += k;
	}
	return 0;
}

/* The header section without the A-R fields claiming authserv (they pretend to be ours):
 * adds its pieces to *crc, and writes them at off when fd >= 0. Returns the octets kept, or
 * -1 when a write failed. */
static int64_t kept_header(const char *hdr, size_t hdrlen, const char *authserv, uLong *crc,
			   int fd, off_t off)
{
	struct hdr_field f;
	size_t pos = 0, done = 0, kept = 0;
	for (;;) {
		int more = hdr_next(hdr, hdrlen, &pos, &f) == 1;
		if (more && (!hdr_is(&f, "authentication-results") ||
			     !ar_claims(f.value, f.value_len, authserv)))
			continue;
		size_t end = more ? (size_t)(f.raw - hdr) : hdrlen;
		*crc = crc32_z(*crc, (const unsigned char *)hdr + done, end - done);
		if (fd >= 0 && fs_pwrite_all(fd, hdr + done, end - done, off + (off_t)kept) < 0)
			return -1;
		kept += end - done;
		if (!more)
			return (int64_t)kept;
		done = end + f.raw_len;
	}
}

/* Rewrite the message file in place: our trace (Return-Path, Received) stays, our A-R field
 * goes below it (the results of this hop), then the header section without the A-R fields
 * claiming our authserv-id, then the body, moved by the difference. The file is still the
 * unacknowledged temp file, so a failure half-way only costs the 451 that follows. No second
 * file: creating and deleting one per message made ext4 (without a journal) scan every
 * recently deleted inode on each new file, most of the checks' cost under load.
 * The CRC of the file is derived from the old one with crc32_combine: only the header
 * section and the A-R field are hashed. 0 ok, -1 (why set). */
static int rewrite(struct smtp_tx *tx, const char *hdr, size_t hdrlen, const struct buf *ar,
		   const char *authserv, char *why, size_t whylen)
{
	uint64_t trace = tx->header_len, total = tx->size + tx->header_len;
	uint64_t body_at = trace + hdrlen, body_len = total - body_at;
	uLong c_kept = 0;
	uint64_t kept = (uint64_t)kept_header(hdr, hdrlen, authserv, &c_kept, -1, 0);
	uint64_t removed = hdrlen - kept;
	uint64_t new_body_at = trace + ar->len + kept;
	/* the CRC: crc(T H R) is known; crc(R) = combine(crc(T H), crc(T H R), |R|) */
	char *chunk = malloc(AUTHIN_READ_CHUNK);
	char *t = malloc(trace ? trace : 1);
	int bad = chunk == NULL || t == NULL;
	if (!bad && pread(tx->fd, t, trace, 0) != (ssize_t)trace)
		bad = 1;
	uLong crc = 0;
	if (!bad) {
		uLong c_t = crc32_z(0L, (const unsigned char *)t, trace);
		uLong c_th = crc32_combine(c_t, crc32_z(0L, (const unsigned char *)hdr, hdrlen),
					   (z_off_t)hdrlen);
		uLong c_r = crc32_combine(c_th, tx->crc, (z_off_t)body_len);
		crc = crc32_z(c_t, (const unsigned char *)ar->data, ar->len);
		crc = crc32_combine(crc, c_kept, (z_off_t)kept);
		crc = crc32_combine(crc, c_r, (z_off_t)body_len);
	}
	free(t);
	/* the body first (it moves towards the end unless more was removed than added), then
	 * the new header section over the old one, then the shorter end cut off */
	if (!bad && new_body_at != body_at)
		bad = move_range(tx->fd, body_at, new_body_at, body_len, chunk) < 0;
	free(chunk);
	if (!bad)
		bad = fs_pwrite_all(tx->fd, ar->data, ar->len, (off_t)trace) < 0;
	uLong c_unused = 0;
	if (!bad)
		bad = kept_header(hdr, hdrlen, authserv, &c_unused, tx->fd,
				  (off_t)(trace + ar->len)) < 0;
	if (!bad && new_body_at < body_at)
		bad = ftruncate(tx->fd, (off_t)(new_body_at + body_len)) < 0;
	if (!bad)
		bad = lseek(tx->fd, 0, SEEK_END) < 0;
	if (bad) {
		snprintf(why, whylen, "authentication results: rewrite the message: %s",
			 errno ? strerror(errno) : "short read");
		return -1;
	}
	tx->header_len += ar->len;
	tx->size -= removed;
	tx->crc = crc;
	return 0;
}

/* The client address as SPF wants it (an IPv4-mapped IPv6 address is IPv4). */
static int client_ip(const char *text, struct spf_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, text, ip->a) == 1) {
		ip->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, text, ip->a) != 1)
		return -1;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (memcmp(ip->a, mapped, 12) == 0) {
		memmove(ip->a, ip->a + 12, 4);
		memset(ip->a + 4, 0, 12);
		ip->family = 4;
		return 0;
	}
	ip->family = 6;
	return 0;
}

/* Does some DKIM pass align (relaxed) with domain? */
static int dkim_aligned_pass(const struct dkim_sig_result *r, size_t n, const char *domain)
{
	for (size_t i = 0; i < n; i++)
		if (r[i].result == DKIM_R_PASS && dmarc_aligned(r[i].d, domain, 0))
			return 1;
	return 0;
}

/* What the checks of one message found, for the Authentication-Results field and the verdict. */
struct authin_findings {
	struct dkim_sig_result dk[DKIM_VERIFY_SIGS_MAX + 1];
	size_t ndk;
	int dk_temp;                       /* some signature's key lookup failed temporarily */
	enum spf_result spf;
	const char *spf_why;
	char spf_domain[AUTHDNS_NAME_MAX + 1];   /* MAIL FROM's domain (A-labels), or HELO's */
	struct from_list from;
	struct dmarc_verdict dm;
	enum arc_result arc;
	unsigned arc_n;
	const char *arc_why;
};

/* Feed the received message (its file, from the header on) to the DKIM verifier. 0, or -1 with
 * why set. */
static int authin_feed(const struct smtp_tx *tx, struct dkim_verifier *v, char *chunk,
		       char *why, size_t whylen)
{
	uint64_t total = tx->size + tx->header_len;
	for (uint64_t pos = tx->header_len; pos < total;) {
		size_t want = total - pos < AUTHIN_READ_CHUNK ? (size_t)(total - pos) :
			      AUTHIN_READ_CHUNK;
		ssize_t got = pread(tx->fd, chunk, want, (off_t)pos);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(why, whylen, "authentication checks: read back the message: %s",
				 got < 0 ? strerror(errno) : "file shorter than written");
			return -1;
		}
		dkim_verifier_feed(v, chunk, (size_t)got);
		pos += (uint64_t)got;
	}
	return 0;
}

/* SPF once for the transaction (MAIL FROM, or the HELO name for <>), then DMARC for the first
 * From: domain with the DKIM results already in f. */
static void authin_spf_dmarc(const struct smtp_session *s, const struct smtp_tx *tx,
			     struct authdns *dns, time_t now, struct authin_findings *f)
{
	struct spf_ip ip;
	f->spf_why = "";
	f->spf = SPF_NONE;
	if (client_ip(s->base.peer_ip, &ip) == 0)
		f->spf = spf_check(dns, &ip, tx->null_sender ? NULL : tx->from, s->helo, &f->spf_why);
	else
		f->spf_why = "the client address is not an IP address";
	const char *at = tx->null_sender ? NULL : strrchr(tx->from, '@');
	const char *dom = at ? at + 1 : s->helo;
	if (idn_to_ascii(dom, strlen(dom), f->spf_domain, sizeof(f->spf_domain)) < 0)
		f->spf_domain[0] = '\0';
	struct dmarc_ident spf_id = { f->spf_domain, f->spf == SPF_PASS };
	struct dmarc_ident dk_id[DKIM_VERIFY_SIGS_MAX + 1];
	for (size_t i = 0; i < f->ndk; i++) {
		dk_id[i].domain = f->dk[i].d;
		dk_id[i].pass = f->dk[i].result == DKIM_R_PASS;
		f->dk_temp |= f->dk[i].result == DKIM_R_TEMPERROR;
	}
	f->dm = (struct dmarc_verdict){ .result = DMARC_R_NONE, .why = "no usable From: address" };
	unsigned sample = 0;
	if (getrandom(&sample, sizeof(sample), 0) != sizeof(sample))
		sample = (unsigned)now;
	if (f->from.n > 0)
		dmarc_check(dns, f->from.domain[0], &spf_id, dk_id, f->ndk, sample % 100, &f->dm);
}

/* The Authentication-Results field (RFC 8601) of what f found, CRLF-terminated, into ar. 0, or
 * -1 when it does not fit. */
static int authin_ar(const struct smtp_session *s, const struct smtp_tx *tx,
		     const struct config *cfg, const struct authin_findings *f, struct buf *ar)
{
	buf_appendf(ar, "Authentication-Results: %s", cfg->hostname);
	if (f->ndk == 0)
		buf_appendf(ar, ";\r\n\tdkim=none");
	for (size_t i = 0; i < f->ndk; i++) {
		const struct dkim_sig_result *r = &f->dk[i];
		buf_appendf(ar, ";\r\n\tdkim=%s", dkim_names[r->result]);
		ar_comment(ar, r->why);
		if (r->d[0]) {
			buf_appendf(ar, " header.d=");
			ar_value(ar, r->d);
		}
		if (r->s[0]) {
			buf_appendf(ar, " header.s=");
			ar_value(ar, r->s);
		}
		if (r->d[0])
			buf_appendf(ar, " header.a=%s", r->ed25519 ? "ed25519-sha256" : "rsa-sha256");
		if (r->b_prefix[0]) {
			buf_appendf(ar, " header.b=");
			ar_value(ar, r->b_prefix);
		}
	}
	buf_appendf(ar, ";\r\n\tspf=%s", spf_result_name(f->spf));
	ar_comment(ar, f->spf == SPF_PASS ? "" : f->spf_why);
	if (tx->null_sender) {
		buf_appendf(ar, " smtp.helo=");
		ar_value(ar, s->helo[0] ? s->helo : "unknown");
	} else {
		buf_appendf(ar, " smtp.mailfrom=");
		ar_value(ar, tx->from);
	}
	/* ARC (RFC 8617): reported, not used to override a policy */
	buf_appendf(ar, ";\r\n\tarc=%s", f->arc == ARC_R_PASS ? "pass" :
		    f->arc == ARC_R_FAIL ? "fail" : "none");
	ar_comment(ar, f->arc_why);
	if (f->arc != ARC_R_NONE)
		buf_appendf(ar, " smtp.remote-ip=%s", s->base.peer_ip);
	buf_appendf(ar, ";\r\n\tdmarc=%s", dmarc_result_name(f->dm.result));
	if (f->dm.result == DMARC_R_PASS || f->dm.result == DMARC_R_FAIL) {
		char c[64];
		snprintf(c, sizeof(c), "p=%s dis=%s", dmarc_policy_name(f->dm.policy),
			 f->dm.result == DMARC_R_FAIL ? dmarc_policy_name(f->dm.apply) : "none");
		ar_comment(ar, c);
	} else {
		ar_comment(ar, f->dm.why);
	}
	if (f->from.n > 0) {
		buf_appendf(ar, " header.from=");
		ar_value(ar, f->from.domain[0]);
	}
	return buf_append(ar, "\r\n", 2);
}

/* The verdict on what f found: a hosted domain claimed in MAIL FROM or From: must be
 * authenticated for, then the From: domain's DMARC policy. AUTHIN_DELIVER or AUTHIN_JUNK with
 * reply untouched, or AUTHIN_REFUSE / AUTHIN_TEMP with reply set (AUTHIN_TEMP with why set and
 * reply "" when the account database cannot be read). */
static enum authin_action authin_verdict(const struct smtp_tx *tx, const struct config *cfg,
					 const struct authin_findings *f, char *reply,
					 size_t replylen, char *why, size_t whylen)
{
	const char *claims[AUTHIN_FROM_DOMAINS + 1];
	unsigned nclaims = 0;
	if (!tx->null_sender && strrchr(tx->from, '@') != NULL)
		claims[nclaims++] = f->spf_domain;
	for (unsigned i = 0; i < f->from.n; i++)
		claims[nclaims++] = f->from.domain[i];
	for (unsigned i = 0; i < nclaims; i++) {
		int h = claims[i][0] ? hosted(cfg, claims[i]) : 0;
		if (h < 0) {
			snprintf(why, whylen, "authentication checks: the account database cannot be "
				 "read");
			return AUTHIN_TEMP;
		}
		if (h == 0)
			continue;
		int spf_ok = f->spf == SPF_PASS && dmarc_aligned(f->spf_domain, claims[i], 0);
		if (spf_ok || dkim_aligned_pass(f->dk, f->ndk, claims[i]))
			continue;
		if (f->spf == SPF_TEMPERROR || f->dk_temp) {
			snprintf(reply, replylen, "451 4.4.3 The sender domain %s is hosted here, and "
				 "a DNS lookup needed to authenticate this message failed; please try "
				 "again later", claims[i]);
			return AUTHIN_TEMP;
		}
		snprintf(reply, replylen, "550 5.7.1 Message refused: it claims to come from %s, a "
			 "domain hosted here, but neither SPF nor a DKIM signature of %s "
			 "authenticates it; users of %s send through the submission port (587 or "
			 "465) with authentication", claims[i], claims[i], claims[i]);
		return AUTHIN_REFUSE;
	}
	const struct dmarc_verdict *dm = &f->dm;
	if (dm->result == DMARC_R_TEMPERROR) {
		snprintf(reply, replylen, "451 4.4.3 The DMARC policy of %s could not be looked up "
			 "(DNS failure); please try again later", f->from.domain[0]);
		return AUTHIN_TEMP;
	}
	if (dm->result == DMARC_R_FAIL && dm->apply != DMARC_P_NONE &&
	    (f->spf == SPF_TEMPERROR || f->dk_temp)) {
		snprintf(reply, replylen, "451 4.4.3 A DNS lookup needed to check the message against "
			 "the DMARC policy of %s failed; please try again later", dm->policy_domain);
		return AUTHIN_TEMP;
	}
	if (dm->result == DMARC_R_FAIL && dm->apply == DMARC_P_REJECT) {
		snprintf(reply, replylen, "550 5.7.1 Message refused: the DMARC policy of %s "
			 "(p=reject) asks receivers to refuse mail from %s that neither SPF nor DKIM "
			 "authenticates, and this message is such mail; the sender should fix its SPF "
			 "record or DKIM signing", dm->policy_domain, f->from.domain[0]);
		return AUTHIN_REFUSE;
	}
	return dm->result == DMARC_R_FAIL && dm->apply == DMARC_P_QUARANTINE ? AUTHIN_JUNK :
	       AUTHIN_DELIVER;
}

/* Check and annotate a port 25 message: DKIM over the stored file, SPF, DMARC, ARC; the
 * Authentication-Results field replaces any of ours the message brought; the verdict. */
enum authin_action smtp_authin_check(struct smtp_session *s, struct smtp_tx *tx,
				     const struct config *cfg, char *reply, size_t replylen,
				     char *why, size_t whylen)
{
	reply[0] = '\0';
	struct dnsctx d = { thread_ub(cfg->dns_servers), cfg->inbound_auth_dns_timeout * 1000,
			    { 0, 0 }, 0 };
	clock_gettime(CLOCK_MONOTONIC, &d.start);
	struct authdns dns = { &d, dns_txt, dns_addrs, dns_mx };
	struct dkim_verifier *v = dkim_verifier_new();
	char *chunk = malloc(AUTHIN_READ_CHUNK);
	struct authin_findings *f = calloc(1, sizeof(*f));
	struct buf ar;
	buf_init(&ar, AUTHIN_AR_MAX);
	enum authin_action act = AUTHIN_TEMP;
	if (v == NULL || chunk == NULL || f == NULL) {
		snprintf(why, whylen, "authentication checks: out of memory");
		goto out;
	}
	if (authin_feed(tx, v, chunk, why, whylen) < 0)
		goto out;
	time_t now = time(NULL);
	f->ndk = dkim_verifier_finish(v, &dns, now, f->dk, DKIM_VERIFY_SIGS_MAX + 1);
	size_t hdrlen;
	const char *hdr = dkim_verifier_header(v, &hdrlen);
	if (hdr == NULL) {
		snprintf(reply, replylen, "552 5.3.4 Message header section too large (limit %u KB)",
			 DKIM_HEADER_MAX / 1024);
		act = AUTHIN_REFUSE;
		goto out;
	}
	/* the From: field: exactly one (RFC 5322 3.6), its domains */
	struct hdr_field hf;
	unsigned nfrom = 0;
	for (size_t pos = 0; hdr_next(hdr, hdrlen, &pos, &hf) == 1;) {
		if (!hdr_is(&hf, "from") || nfrom++ > 0)
			continue;
		if (addr_parse_list(hf.value, hf.value_len, from_cb, &f->from) <= 0)
			f->from.bad = 1;
	}
	if (nfrom > 1) {
		snprintf(reply, replylen, "550 5.7.1 Message refused: it has %u From: fields; a "
			 "message has exactly one (RFC 5322 3.6), so its sender cannot be checked", nfrom);
		act = AUTHIN_REFUSE;
		goto out;
	}
	authin_spf_dmarc(s, tx, &dns, now, f);
	f->arc = dkim_verifier_arc(v, &f->arc_n, &f->arc_why);
	if (authin_ar(s, tx, cfg, f, &ar) < 0) {
		snprintf(why, whylen, "authentication results: field too long");
		goto out;
	}
	log_info("sess=%016llx proto=smtp event=authin id=%s spf=%s dkim=%s dmarc=%s arc=%s "
		 "from_domain=%s", (unsigned long long)s->base.id, tx->id, spf_result_name(f->spf),
		 f->ndk ? dkim_names[f->dk[0].result] : "none", dmarc_result_name(f->dm.result),
		 f->arc == ARC_R_PASS ? "pass" : f->arc == ARC_R_FAIL ? "fail" : "none",
		 f->from.n ? f->from.domain[0] : "-");
	enum authin_action verdict = authin_verdict(tx, cfg, f, reply, replylen, why, whylen);
	if (verdict != AUTHIN_DELIVER && verdict != AUTHIN_JUNK) {
		act = verdict;
		goto out;
	}
	if (rewrite(tx, hdr, hdrlen, &ar, cfg->hostname, why, whylen) < 0)
		goto out;
	/* for an ARC seal if the message is forwarded: the value, without name and CRLF */
	static const char ar_name[] = "Authentication-Results: ";
	free(tx->ar_value);
	tx->ar_value = strndup(ar.data + sizeof(ar_name) - 1, ar.len - (sizeof(ar_name) - 1) - 2);
	tx->arc_prior = f->arc_n;
	tx->arc_prior_pass = f->arc == ARC_R_PASS;
	act = verdict;
out:
	buf_free(&ar);
	free(f);
	free(chunk);
	dkim_verifier_free(&v);
	return act;
}
