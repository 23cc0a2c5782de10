/* imap-catenate.c - APPEND's CATENATE (RFC 4469): a message put together from TEXT literals and
 * URL parts, where a URL (RFC 5092) names a message, or a section or byte range of one, in this
 * session's own account: "/INBOX;UIDVALIDITY=5/;UID=20/;SECTION=1.2/;PARTIAL=0.100",
 * "imap://user@host/INBOX/;UID=20" (the user must be the one logged in), or ";UID=20/..."
 * relative to the selected mailbox; a URLAUTH URL (RFC 4467) is taken when URLFETCH would
 * give this user what it names (imap-urlauth.c). The result is bounded by
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

#include "urlauth.h"

#define CATENATE_PARTS_MAX 100   /* parts of one CATENATE: each URL part opens and parses a
				  * message on the event loop, so a client may not ask for
				  * thousands (RFC 4469 sets no number) */
#define CATENATE_URL_ECHO_MAX 200 /* octets of a bad URL repeated in [BADURL ...] */

/* Parse a CATENATE URL (imap-url.c) relative to this session: an absolute one must name the
 * logged-in user (or carry a URLAUTH that lets this user fetch it), a relative one needs the
 * selected mailbox. 0, 1 a URLAUTH URL (imap_urlauth_fetch resolves it), or -1 with *why_r. */
static int url_parse(struct imap_session *s, const char *url, struct imap_url *u,
		     const char **why_r)
{
	if (imap_url_parse(url, u, why_r) < 0)
		return -1;
	if (u->have_urlauth)
		return 1;
	if (u->form == IMAP_URL_ABSOLUTE && u->user[0] != '\0') {
		/* iuserinfo: only this session's own user ("name" at a domain, or the address) */
		char owner[321];
		if (!imap_urlauth_owner(s->base.w->cfg, s->base.w->db, u, owner, sizeof(owner),
					why_r) ||
		    strcasecmp(owner, s->user) != 0) {
			*why_r = "the URL names another user's mailbox";
			return -1;
		}
	}
	if (u->form == IMAP_URL_RELATIVE) {
		if (s->st != IMAP_SELECTED) {
			*why_r = "a relative URL needs a selected mailbox";
			return -1;
		}
		snprintf(u->box, sizeof(u->box), "%s", s->box);
	}
	return 0;
}

/* Append what URL u names to out. 0, -1 it does not resolve (*why_r), -2 out is full. */
static int url_fetch(struct imap_session *s, const struct imap_url *u, struct buf *out,
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
	int r = imap_url_part(fd, u, 0, out, NULL, why_r);
	close(fd);
	return r == -2 ? -2 : r < 0 ? -1 : 0;
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
			struct imap_url u;
			const char *why;
			int r = url_parse(s, val->str, &u, &why);
			if (r == 1) {
				/* RFC 4469 5: a URLAUTH URL is checked as URLFETCH would */
				r = imap_urlauth_fetch(s->base.w->cfg, s->base.w->db, val->str,
						       s->user, 0, s->acct, 0, out, NULL, NULL,
						       &why);
				r = r == IMAP_URLAUTH_TOOBIG ? -2 : r < 0 ? -1 : 0;
			} else if (r == 0) {
				r = url_fetch(s, &u, out, &why);
			}
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
