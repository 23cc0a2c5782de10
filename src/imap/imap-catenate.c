/* imap-catenate.c - APPEND's CATENATE (RFC 4469): a message put together from TEXT literals and
 * URL parts, where a URL (RFC 5092) names a message, or a section or byte range of one, in this
 * session's own account: "/INBOX;UIDVALIDITY=5/;UID=20/;SECTION=1.2/;PARTIAL=0.100",
 * "imap://user@host/INBOX/;UID=20" (the user must be the one logged in), or ";UID=20/..."
 * relative to the selected mailbox. URLAUTH URLs are not taken. The result is bounded by
 * message_size_limit ([TOOBIG]); any URL that does not resolve is [BADURL] and, as APPEND
 * checks every message before it stores one, nothing is stored. */
#include "imap-private.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mime.h"

#define CATENATE_PARTS_MAX 100   /* parts of one CATENATE: each URL part opens and parses a
				  * message on the event loop, so a client may not ask for
				  * thousands (RFC 4469 sets no number) */
#define CATENATE_SECTION_MAX 256 /* a section-spec ("1.2.HEADER.FIELDS (From To)") */
#define CATENATE_URL_ECHO_MAX 200 /* octets of a bad URL repeated in [BADURL ...] */

/* A parsed URL part. */
struct cat_url {
	char box[1024];
	int have_uidvalidity;
	uint32_t uidvalidity;
	uint32_t uid;
	char section[CATENATE_SECTION_MAX];
	int have_partial;
	uint64_t poff, plen;         /* plen 0: to the end */
};

/* Decode %XX escapes of in[0..n) into out (NUL-terminated). 0, or -1 (bad escape, NUL, too
 * long). */
static int pct_decode(const char *in, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '%') {
			unsigned v = 0;
			for (int k = 1; k <= 2; k++) {
				char h = i + (size_t)k < n ? in[i + (size_t)k] : '\0';
				v <<= 4;
				if (h >= '0' && h <= '9')
					v |= (unsigned)(h - '0');
				else if (h >= 'a' && h <= 'f')
					v |= (unsigned)(h - 'a' + 10);
				else if (h >= 'A' && h <= 'F')
					v |= (unsigned)(h - 'A' + 10);
				else
					return -1;
			}
			c = (unsigned char)v;
			i += 2;
		}
		if (c == '\0' || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* Parse a decimal number of at most max; *p advanced. 0, or -1. */
static int url_num(const char **p, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;
	const char *q = *p;
	if (*q < '0' || *q > '9')
		return -1;
	for (; *q >= '0' && *q <= '9'; q++) {
		v = v * 10 + (uint64_t)(*q - '0');
		if (v > max)
			return -1;
	}
	*p = q;
	*v_r = v;
	return 0;
}

/* Skip a literal prefix, ASCII case ignored. 1 skipped, 0 not there. */
static int url_skip(const char **p, const char *word)
{
	size_t n = strlen(word);
	if (strncasecmp(*p, word, n) != 0)
		return 0;
	*p += n;
	return 1;
}

/* Parse a CATENATE URL relative to this server. 0, or -1 with *why_r. */
static int url_parse(struct imap_session *s, const char *url, struct cat_url *u, const char **why_r)
{
	const char *p = url;
	uint64_t v;
	memset(u, 0, sizeof(*u));
	*why_r = "not an IMAP URL of a message on this server";
	if (url_skip(&p, "imap://")) {
		const char *slash = strchr(p, '/');
		const char *at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
		if (slash == NULL)
			return -1;
		if (at != NULL) {
			/* iuserinfo: enc-user [iauth]; only this session's own user */
			const char *semi = memchr(p, ';', (size_t)(at - p));
			char user[sizeof(s->user)];
			if (pct_decode(p, (size_t)((semi ? semi : at) - p), user, sizeof(user)) < 0 ||
			    strcasecmp(user, s->user) != 0) {
				*why_r = "the URL names another user's mailbox";
				return -1;
			}
		}
		p = slash;
	}
	if (*p == '/') {
		p++;
		const char *end = strchr(p, ';');
		if (end == NULL)
			return -1;
		size_t n = (size_t)(end - p);
		if (n > 0 && p[n - 1] == '/')
			n--;   /* "/INBOX/;UID=": the slash belongs to "/;UID=" */
		char name[sizeof(u->box)];
		if (n == 0 || pct_decode(p, n, name, sizeof(name)) < 0)
			return -1;
		if (strcasecmp(name, "INBOX") == 0)
			snprintf(u->box, sizeof(u->box), "INBOX");
		else if (strncasecmp(name, "INBOX/", 6) == 0)
			snprintf(u->box, sizeof(u->box), "INBOX/%s", name + 6);
		else
			snprintf(u->box, sizeof(u->box), "%s", name);
		if (strcmp(u->box, "INBOX") != 0 && !store_mailbox_name_valid(u->box)) {
			*why_r = "invalid mailbox name in the URL";
			return -1;
		}
		p += n;
		if (url_skip(&p, ";UIDVALIDITY=")) {
			if (url_num(&p, UINT32_MAX, &v) < 0 || v == 0)
				return -1;
			u->have_uidvalidity = 1;
			u->uidvalidity = (uint32_t)v;
		}
		if (!url_skip(&p, "/;UID="))
			return -1;
	} else if (url_skip(&p, ";UID=")) {
		if (s->st != IMAP_SELECTED) {
			*why_r = "a relative URL needs a selected mailbox";
			return -1;
		}
		snprintf(u->box, sizeof(u->box), "%s", s->box);
	} else {
		return -1;
	}
	if (url_num(&p, UINT32_MAX, &v) < 0 || v == 0)
		return -1;
	u->uid = (uint32_t)v;
	if (url_skip(&p, "/;SECTION=")) {
		const char *end = strstr(p, "/;");
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || pct_decode(p, n, u->section, sizeof(u->section)) < 0)
			return -1;
		p += n;
	}
	if (url_skip(&p, "/;PARTIAL=")) {
		if (url_num(&p, UINT64_MAX / 2, &u->poff) < 0)
			return -1;
		if (*p == '.') {
			p++;
			if (url_num(&p, UINT64_MAX / 2, &u->plen) < 0 || u->plen == 0)
				return -1;
		}
		u->have_partial = 1;
	}
	if (*p != '\0') {
		*why_r = strncasecmp(p, ";URLAUTH=", 9) == 0 ? "URLAUTH is not supported"
							    : "not an IMAP URL of a message on this server";
		return -1;
	}
	return 0;
}

/* Append what URL u names to out. 0, -1 it does not resolve (*why_r), -2 out is full. */
static int url_fetch(struct imap_session *s, const struct cat_url *u, struct buf *out,
		     const char **why_r)
{
	struct store_mailbox_info mb;
	const char *err;
	if (store_mailbox_get(s->acct, u->box, &mb, &err) != 1) {
		*why_r = "no such mailbox";
		return -1;
	}
	if (u->have_uidvalidity && mb.uidvalidity != u->uidvalidity) {
		*why_r = "the mailbox's UIDVALIDITY differs";
		return -1;
	}
	int fd = -1;
	if (s->st == IMAP_SELECTED && strcmp(s->box, u->box) == 0) {
		/* the selected mailbox: its table finds the file without listing the mailbox */
		size_t lo = 0, hi = s->nmsgs;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (s->msgs[mid].uid < u->uid)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < s->nmsgs && s->msgs[lo].uid == u->uid) {
			struct store_msg_info mi;
			memset(&mi, 0, sizeof(mi));
			mi.uid = u->uid;
			mi.in_new = s->msgs[lo].in_new;
			mi.flags = s->msgs[lo].flags;
			snprintf(mi.filename, sizeof(mi.filename), "%s", s->msgs[lo].fname);
			fd = store_message_fd(s->acct, u->box, &mi, &err);
		}
	}
	if (fd < 0)
		fd = store_message_open(s->acct, u->box, u->uid, &err);
	if (fd < 0) {
		*why_r = "no message with that UID";
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		*why_r = "the message cannot be read";
		return -1;
	}
	size_t len = (size_t)st.st_size;
	char *msg = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (msg == MAP_FAILED) {
		*why_r = "the message cannot be read";
		return -1;
	}
	const char *data = msg ? msg : "";
	size_t dlen = len;
	struct buf tmp;
	struct mime_part *root = NULL;
	int r = 0;
	buf_init(&tmp, 1u << 20);
	if (u->section[0] != '\0') {
		root = mime_parse(data, len);
		r = root ? mime_section(root, data, len, u->section, &tmp, &data, &dlen) : 1;
		if (r == 1)
			*why_r = "the message has no such section";
		else if (r < 0)
			*why_r = "invalid section in the URL";
	}
	if (r == 0 && u->have_partial) {
		uint64_t off = u->poff > dlen ? dlen : u->poff;
		uint64_t n = dlen - off;
		if (u->plen && u->plen < n)
			n = u->plen;
		data += off;
		dlen = (size_t)n;
	}
	if (r == 0 && dlen > 0 && buf_append(out, data, dlen) < 0)
		r = -2;
	else if (r != 0 && r != -2)
		r = -1;
	if (root)
		mime_free(&root);
	buf_free(&tmp);
	if (msg)
		munmap(msg, len);
	return r;
}

/* See imap-private.h. */
int imap_catenate_build(struct imap_session *s, const struct imap_arg *list, size_t nth,
			uint64_t budget, struct buf *out)
{
	uint64_t limit = s->base.lc->message_size_limit;
	if (list->type != IMAP_ARG_LIST || list->nlist == 0 || list->nlist % 2 != 0 ||
	    list->nlist / 2 > CATENATE_PARTS_MAX) {
		imap_bad(s, "CATENATE (message %zu) takes a list of at most %d parts, each TEXT "
			    "literal or URL \"url\": nothing was stored", nth, CATENATE_PARTS_MAX);
		return -1;
	}
	buf_init(out, budget < limit ? budget : limit);
	for (size_t k = 0; k < list->nlist; k += 2) {
		const struct imap_arg *kind = &list->list[k], *val = &list->list[k + 1];
		if (kind->type == IMAP_ARG_ATOM && strcasecmp(kind->str, "TEXT") == 0 &&
		    val->type == IMAP_ARG_LITERAL) {
			if (!val->literal8 && memchr(val->str, '\0', val->len) != NULL) {
				imap_tagged(s, "NO", "Message %zu: a TEXT part contains NUL; use a "
						     "literal8 (~{n}) for binary. Nothing was stored",
					    nth);
				return -1;
			}
			if (val->len > 0 && buf_append(out, val->str, val->len) < 0)
				goto toobig;
			continue;
		}
		if (kind->type == IMAP_ARG_ATOM && strcasecmp(kind->str, "URL") == 0 &&
		    imap_arg_is_astring(val) && val->type != IMAP_ARG_NIL) {
			struct cat_url u;
			const char *why;
			int r = url_parse(s, val->str, &u, &why) < 0 ? -1 : url_fetch(s, &u, out, &why);
			if (r == -2)
				goto toobig;
			if (r < 0) {
				/* url-resp-text (RFC 4469 6): no "]", CR or LF; no controls here */
				char echo[CATENATE_URL_ECHO_MAX + 1];
				size_t e = 0;
				for (; e < val->len && e < CATENATE_URL_ECHO_MAX; e++) {
					unsigned char c = (unsigned char)val->str[e];
					echo[e] = c < 0x20 || c == ']' || c == 0x7f ? '?' : (char)c;
				}
				echo[e] = '\0';
				imap_tagged(s, "NO", "[BADURL %s] Message %zu: %s; nothing was stored",
					    e ? echo : "?", nth, why);
				return -1;
			}
			continue;
		}
		imap_bad(s, "CATENATE (message %zu): each part is TEXT literal or URL \"url\"; "
			    "nothing was stored", nth);
		return -1;
	}
	if (out->len == 0) {
		imap_tagged(s, "NO", "Message %zu is empty: nothing was stored", nth);
		return -1;
	}
	return 0;
toobig:
	imap_tagged(s, "NO", "[TOOBIG] Message %zu put together by CATENATE is too big: the limit "
			     "is %llu octets a message, %llu for one APPEND; nothing was stored",
		    nth, (unsigned long long)limit,
		    (unsigned long long)limit * IMAP_APPEND_MESSAGES_MAX);
	return -1;
}
