/* imap-session.c - the IMAP server session (RFC 3501, RFC 9051): connection, command dispatch,
 * login, STARTTLS, CAPABILITY, ENABLE, ID, NOOP, IDLE, LOGOUT and mailbox change notification.
 *
 * Commands are parsed by lib-imap's incremental parser and executed in order (pipelining). A
 * command that cannot finish at once (a pool job, FETCH output above the high-water mark, IDLE)
 * sets s->resume; the session stops reading until it completes.
 */
#include "imap-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "acctdb.h"
#include "auth-verify.h"
#include "base64.h"
#include "sasl.h"
#include "imap-quote.h"
#include "imap-mboxname.h"
#include "imap-utf7.h"
#include "diag.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "store-path.h"
#include "tls.h"

/* One line for a plaintext client on an implicit-TLS port (%u: the STARTTLS port). */
static const char imap_tls_hint[] =
	"* BYE [PRIVACYREQUIRED] This port needs SSL/TLS from the start: "
	"turn on SSL/TLS in your mail program, or use port %u with STARTTLS\r\n";

static void imap_process(struct imap_session *s);

/* LITERAL+ once logged in; before, LITERAL- (see imap_limits) */
static const char *imap_caps_common =
	"SASL-IR ENABLE ID IDLE NAMESPACE UNSELECT UIDPLUS MOVE "
	"CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE "
	"CONDSTORE ESEARCH ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL SEARCHRES UTF8=ACCEPT "
	"SAVEDATE WITHIN BINARY MULTIAPPEND CATENATE NOTIFY QUOTA "
	"QUOTA=RES-STORAGE QRESYNC SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES "
	"COMPRESS=DEFLATE";

/* Queue raw output. */
void imap_write(struct imap_session *s, const void *p, size_t n)
{
	if (conn_write(&s->conn, p, n) < 0)
		imap_close(s, "output buffer full");
}

/* One untagged or continuation line, CRLF added. */
void imap_reply(struct imap_session *s, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n > sizeof(line) - 3 ? sizeof(line) - 3 : (size_t)n;
	line[len++] = '\r';
	line[len++] = '\n';
	imap_write(s, line, len);
}

/* The tagged completion of the current command. */
void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
	char text[1500];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	metrics_observe(MH_COMMAND, MP_IMAP, &s->base.cmd_ns);
	imap_context_update(s);   /* RFC 5267: ADDTO/REMOVEFROM before the completion */
	if (strcmp(status, "OK") != 0)
		log_info("sess=%016llx proto=imap event=reply result=\"%s %.200s\"",
			 (unsigned long long)s->base.id, status, text);
	imap_reply(s, "%s %s %s", s->tag[0] ? s->tag : "*", status, text);
}

/* Count a protocol error; at the limit (lower before login) say BYE and close. */
static void imap_count_error(struct imap_session *s)
{
	unsigned max = s->base.lc->max_errors;
	if (s->st == IMAP_NOTAUTH && max > IMAP_PREAUTH_MAX_ERRORS)
		max = IMAP_PREAUTH_MAX_ERRORS;
	if (++s->errors >= max && !s->base.closing) {
		imap_reply(s, "* BYE Too many invalid commands; closing the connection");
		imap_close(s, "too many errors");
	}
}

/* BAD for the current command; counts towards the error limit. */
void imap_bad(struct imap_session *s, const char *fmt, ...)
{
	char text[1000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	imap_tagged(s, "BAD", "%s", text);
	imap_count_error(s);
}

/* Longest command line: the listener's line_length_limit, at least IMAP_LINE_MIN. */
static size_t imap_line_max(const struct imap_session *s)
{
	size_t n = s->base.lc->line_length_limit;
	return n < IMAP_LINE_MIN ? IMAP_LINE_MIN : n;
}

/* Parser limits for the session's state. Before login nothing a client sends is held beyond
 * the line limit: all literals of one command together stay within it, LITERAL+ becomes
 * LITERAL- (RFC 7888), and a literal too big to skip, or a line that does not end soon after
 * the limit, closes the connection. Once logged in a command's literals may hold 4 messages
 * (MULTIAPPEND); whatever COMPRESS inflates is parsed under the same limits. */
static void imap_limits(struct imap_session *s, struct imap_parser_limits *lim)
{
	size_t line = imap_line_max(s);
	uint64_t msg = s->base.lc->message_size_limit;
	memset(lim, 0, sizeof(*lim));
	lim->max_line = line;
	lim->max_depth = IMAP_DEPTH_MAX;
	lim->max_args = IMAP_ARGS_MAX;
	lim->max_skip = line;
	if (s->st == IMAP_NOTAUTH) {
		lim->max_literal = lim->max_literal_total = lim->max_discard = line;
		lim->max_literal_nonsync = IMAP_LITERAL_MINUS_MAX;
	} else {
		lim->max_literal = msg;
		lim->max_literal_total = lim->max_discard = IMAP_APPEND_MESSAGES_MAX * msg;
	}
}

char imap_no_box[1];   /* see imap-private.h */

/* Free the selected mailbox's message table. */
static void imap_free_msgs(struct imap_session *s)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].fname);
	free(s->msgs);
	s->msgs = NULL;
	s->nmsgs = s->capmsgs = 0;
}

/* Leave the selected state (no expunge). */
void imap_unselect(struct imap_session *s)
{
	imap_context_free_all(s);
	imap_free_msgs(s);
	if (s->box != imap_no_box)
		free(s->box);
	s->box = imap_no_box;
	free(s->searchres);
	s->searchres = NULL;
	s->nsearchres = 0;
	if (s->st == IMAP_SELECTED)
		s->st = IMAP_AUTH;
}

/* Free the session once nothing points at it. */
static void imap_release(struct session *b)
{
	struct imap_session *s = (struct imap_session *)b;
	ev_timer_cancel(s->base.w->loop, &s->timer);
	ev_timer_cancel(s->base.w->loop, &s->idle_timer);
	ev_timer_cancel(s->base.w->loop, &s->rest_timer);
	imap_idle_unwatch(s);
	imap_notify_free(s);
	free(s->acct_root);
	if (s->cmd_free && s->cmd_ctx)
		s->cmd_free(s->cmd_ctx);
	imap_unselect(s);
	store_account_close(&s->acct);
	imap_parser_free(&s->parser);
	free(s->keyword_names);
}

/* Close at the next safe point. */
void imap_close(struct imap_session *s, const char *reason)
{
	session_close(&s->base, reason);
}

/* Autologout. */
static void imap_on_timeout(struct ev_timer *t)
{
	struct imap_session *s = t->arg;
	if (s->base.job_running) {
		ev_timer_set(s->base.w->loop, &s->timer, 1000, imap_on_timeout, s);
		return;
	}
	imap_reply(s, "* BYE Autologout: idle for too long");
	imap_close(s, "timeout");
}

static void imap_arm_rest(struct imap_session *s);

/* An inactive session lets go of its index handle (the account's other sessions in this
 * worker may still share it): idle clients then cost little more than their socket and TLS.
 * An IDLE session watches the index files' fingerprint instead. */
static void imap_rest(struct ev_timer *t)
{
	struct imap_session *s = t->arg;
	if (s->acct == NULL || s->acct_root == NULL || s->base.closing)
		return;
	if (s->resume || s->cmd_ctx || s->base.job_running) {
		log_debug("sess=%016llx proto=imap event=rest-later", (unsigned long long)s->base.id);
		imap_arm_rest(s);
		return;
	}
	log_debug("sess=%016llx proto=imap event=rest", (unsigned long long)s->base.id);
	/* the fingerprint before the last look: a change committed after it, even while the look
	 * below reads, differs from it, so the next check (its inotify event) reopens the index.
	 * Taken after the close, it would already include such a change and the check would find
	 * nothing new: the change missed until the next one. Closing the last handle of a process
	 * may checkpoint the WAL, which changes the fingerprint too: that costs at most one look
	 * that finds nothing (at the next change or the safety poll). */
	store_account_signature(s->acct_root, s->acct_sig);
	if (s->idling) {
		imap_sync_mailbox(s, 1);
		conn_flush(&s->conn);
	} else if (imap_notify_ready(s)) {
		imap_notify_check(s);      /* the same for NOTIFY (RFC 5465) */
		conn_flush(&s->conn);
	}
	store_account_close(&s->acct);
	imap_parser_release(s->parser);
	session_trim_soon(s->base.w);
}

/* The index handle of a session at rest, back. 0, or -1 (then NO [UNAVAILABLE] is the answer). */
static int imap_wake(struct imap_session *s)
{
	const char *err;
	if (s->acct || s->acct_root == NULL)
		return 0;
	log_debug("sess=%016llx proto=imap event=wake", (unsigned long long)s->base.id);
	return store_account_open_shared(s->acct_root, &s->acct, &err) == 1 ? 0 : -1;
}

/* (Re)arm the idle timer: command_timeout before login; once logged in the same but at least
 * 30 minutes (RFC 9051 section 5.4). */
static void imap_arm_timer(struct imap_session *s)
{
	uint64_t secs = s->base.lc->command_timeout;
	if (s->st == IMAP_NOTAUTH && secs == 0)
		secs = IMAP_PREAUTH_TIMEOUT_S;
	else if (s->st != IMAP_NOTAUTH && secs < IMAP_AUTOLOGOUT_S)
		secs = IMAP_AUTOLOGOUT_S;
	ev_timer_set(s->base.w->loop, &s->timer, secs * 1000, imap_on_timeout, s);
	imap_arm_rest(s);
}

/* (Re)start the countdown to rest (imap_rest_after). */
static void imap_arm_rest(struct imap_session *s)
{
	unsigned secs = s->base.w->cfg->imap_rest_after;
	if (s->acct_root && secs > 0)
		ev_timer_set(s->base.w->loop, &s->rest_timer, (uint64_t)secs * 1000, imap_rest, s);
}

/* Worker shutdown. */
static void imap_on_shutdown(struct session *b)
{
	struct imap_session *s = (struct imap_session *)b;
	if (s->base.job_running)
		return;
	imap_reply(s, "* BYE Server shutting down; please reconnect in a minute");
	imap_close(s, "shutdown");
}

/* Queue a pool job for the current command. */
int imap_job(struct imap_session *s, void (*work)(void *), void (*done)(void *), void *ctx)
{
	if (pool_submit(s->base.w->pool, work, done, ctx) < 0)
		return -1;
	s->base.job_running = 1;
	conn_pause_read(&s->conn, 1);
	return 0;
}

/* A pool job's completion: resume the session (or let it go). */
void imap_job_finished(struct imap_session *s)
{
	s->base.job_running = 0;
	if (s->base.closing) {
		session_reap_later(&s->base);
		return;
	}
	conn_flush(&s->conn);   /* first: the answer goes out without EV_WRITE coming and going */
	conn_pause_read(&s->conn, 0);
}

/* "\Seen \Flagged kw1" for flags + keywords. */
const char *imap_flags_text(struct imap_session *s, unsigned flags, uint64_t keywords, char *out,
			    size_t outlen)
{
	static const struct { unsigned f; const char *n; } names[] = {
		{ STORE_F_ANSWERED, "\\Answered" }, { STORE_F_FLAGGED, "\\Flagged" },
		{ STORE_F_DELETED, "\\Deleted" }, { STORE_F_SEEN, "\\Seen" },
		{ STORE_F_DRAFT, "\\Draft" }, { IMAP_F_RECENT, "\\Recent" } };
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < 6; i++) {
		if (flags & names[i].f) {
			int n = snprintf(out + o, outlen - o, "%s%s", o ? " " : "", names[i].n);
			if (n > 0 && (size_t)n < outlen - o)
				o += (size_t)n;
		}
	}
	for (int k = 0; k < 64 && keywords; k++) {
		if (!(keywords & (1ull << k)) || k >= s->nkeywords_known ||
		    s->keyword_names[k][0] == '\0')
			continue;
		int n = snprintf(out + o, outlen - o, "%s%s", o ? " " : "", s->keyword_names[k]);
		if (n > 0 && (size_t)n < outlen - o)
			o += (size_t)n;
	}
	return out;
}

/* See imap-private.h. */
unsigned imap_msg_flags(const struct imap_session *s, const struct imap_msg *m)
{
	return m->flags | (m->recent && !s->rev2 ? IMAP_F_RECENT : 0);
}

/* See imap-private.h. */
size_t imap_recent_sync(struct imap_session *s, int claim)
{
	const char *err;
	uint32_t from = UINT32_MAX;
	uint32_t upto = claim && s->nmsgs ? s->msgs[s->nmsgs - 1].uid + 1 : 0;
	size_t n = 0;
	if (store_recent(s->acct, s->box, upto, &from, NULL, &err) < 0)
		from = UINT32_MAX;
	for (size_t i = 0; i < s->nmsgs; i++) {
		uint32_t uid = s->msgs[i].uid;
		if (uid >= from || (uid >= s->recent_mine_from && uid < s->recent_mine_to))
			s->msgs[i].recent = 1;
		n += s->msgs[i].recent != 0;
	}
	return n;
}

/* The keywords whose names this session knows. */
static uint64_t keywords_known_mask(const struct imap_session *s)
{
	uint64_t m = 0;
	for (int k = 0; k < s->nkeywords_known && k < 64; k++)
		if (s->keyword_names[k][0] != '\0')
			m |= 1ull << k;
	return m;
}

/* See imap-private.h. */
void imap_announce_keywords(struct imap_session *s)
{
	uint64_t known = keywords_known_mask(s);
	if (s->st != IMAP_SELECTED || (known & ~s->kw_announced) == 0)
		return;
	char fl[4096];
	imap_flags_text(s, 0, known, fl, sizeof(fl));
	imap_reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)",
		   fl[0] ? " " : "", fl);
	imap_reply(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s \\*)] "
		      "Flags permitted", fl[0] ? " " : "", fl);
	s->kw_announced = known;
}

/* See imap-private.h. */
void imap_keyword_name_set(struct imap_session *s, int id, const char *name)
{
	if (id < 0 || id >= 64)
		return;
	if (s->keyword_names == NULL) {
		s->keyword_names = calloc(64, sizeof(*s->keyword_names));
		if (s->keyword_names == NULL)
			return;
	}
	snprintf(s->keyword_names[id], sizeof(s->keyword_names[id]), "%s", name);
	if (id + 1 > s->nkeywords_known)
		s->nkeywords_known = id + 1;
}

/* Keyword cache callback. */
static void keyword_cb(void *ctx, int id, const char *name)
{
	imap_keyword_name_set(ctx, id, name);
}

/* Add or update a message in the table (kept in UID order). Returns its index or -1. */
static ssize_t imap_msg_upsert(struct imap_session *s, const struct store_msg_info *m, int *added)
{
	size_t lo = 0, hi = s->nmsgs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->msgs[mid].uid < m->uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*added = 0;
	if (lo < s->nmsgs && s->msgs[lo].uid == m->uid) {
		struct imap_msg *x = &s->msgs[lo];
		x->flags = m->flags;
		x->keywords = m->keywords;
		x->modseq = m->modseq;
		x->in_new = m->in_new;
		return (ssize_t)lo;
	}
	if (lo != s->nmsgs)
		return -1;   /* a new UID below the highest: impossible, UIDs only grow */
	if (s->nmsgs == s->capmsgs) {
		size_t ncap = s->capmsgs ? s->capmsgs * 2 : 64;
		void *n = realloc(s->msgs, ncap * sizeof(*s->msgs));
		if (n == NULL)
			return -1;
		s->msgs = n;
		s->capmsgs = ncap;
	}
	struct imap_msg *x = &s->msgs[s->nmsgs];
	x->uid = m->uid;
	x->flags = m->flags;
	x->keywords = m->keywords;
	x->modseq = m->modseq;
	x->size = m->size;
	x->internaldate = m->internaldate;
	x->savedate = m->savedate;
	x->in_new = m->in_new;
	x->recent = 0;
	x->fname = strdup(m->filename);
	if (x->fname == NULL)
		return -1;
	*added = 1;
	return (ssize_t)s->nmsgs++;
}

/* Load the selected mailbox's table. */
int imap_load_mailbox(struct imap_session *s, const char *box, const char **err_r)
{
	struct store_mailbox_info mb;
	/* SELECT has reconciled the index with the files first (store_mailbox_sync, on the pool) */
	int r = store_mailbox_get(s->acct, box, &mb, err_r);
	if (r <= 0) {
		if (r == 0)
			*err_r = "no such mailbox";
		return -1;
	}
	struct store_msg_info *m;
	int n = store_message_list(s->acct, box, &m, err_r);
	if (n < 0)
		return -1;
	imap_free_msgs(s);
	s->msgs = calloc((size_t)n + 1, sizeof(*s->msgs));
	s->capmsgs = (size_t)n + 1;
	if (s->msgs == NULL) {
		free(m);
		*err_r = "out of memory";
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int added;
		imap_msg_upsert(s, &m[i], &added);
	}
	free(m);
	s->uidvalidity = mb.uidvalidity;
	s->uidnext = mb.uidnext;
	s->highestmodseq = mb.highestmodseq;
	s->expmodseq = mb.highestmodseq;
	s->nkeywords_known = 0;
	store_keyword_list(s->acct, keyword_cb, s, err_r);
	s->kw_announced = keywords_known_mask(s);   /* SELECT's FLAGS lists them all */
	if (box != s->box) {
		char *b = strndup(box, IMAP_BOX_MAX - 1);   /* as long as the old 1 KB array took */
		if (b == NULL) {
			*err_r = "out of memory";
			return -1;
		}
		if (s->box != imap_no_box)
			free(s->box);
		s->box = b;
	}
	return 0;
}

struct sync_ctx {
	struct imap_session *s;
	int allow_expunge;
	uint32_t *expunged;
	size_t nexp, capexp;
	int deferred_expunge;
};

/* A changed or new message. */
static void sync_msg(void *ctx, const struct store_msg_info *m)
{
	struct sync_ctx *c = ctx;
	struct imap_session *s = c->s;
	int added;
	size_t before = s->nmsgs;
	ssize_t i = imap_msg_upsert(s, m, &added);
	if (i < 0 || added)
		return;
	if ((size_t)i < before) {
		char fl[1200];
		if (s->condstore)
			imap_reply(s, "* %zd FETCH (UID %u FLAGS (%s) MODSEQ (%llu))", i + 1, m->uid,
				   imap_flags_text(s, imap_msg_flags(s, &s->msgs[i]), m->keywords,
						   fl, sizeof(fl)),
				   (unsigned long long)m->modseq);
		else
			imap_reply(s, "* %zd FETCH (UID %u FLAGS (%s))", i + 1, m->uid,
				   imap_flags_text(s, imap_msg_flags(s, &s->msgs[i]), m->keywords,
						   fl, sizeof(fl)));
	}
}

/* An expunged UID. */
static void sync_expunged(void *ctx, uint32_t uid)
{
	struct sync_ctx *c = ctx;
	if (c->nexp == c->capexp) {
		size_t ncap = c->capexp ? c->capexp * 2 : 16;
		void *n = realloc(c->expunged, ncap * sizeof(uint32_t));
		if (n == NULL)
			return;
		c->expunged = n;
		c->capexp = ncap;
	}
	c->expunged[c->nexp++] = uid;
}

/* Report what others changed; see the header. */
void imap_sync_mailbox(struct imap_session *s, int allow_expunge)
{
	const char *err;
	struct { uint32_t uidvalidity, uidnext; uint64_t highestmodseq; } mb;
	if (s->st != IMAP_SELECTED || s->acct == NULL)
		return;
	if (store_mailbox_state(s->acct, s->box, &mb.uidvalidity, &mb.uidnext, &mb.highestmodseq,
				&err) != 1 || mb.uidvalidity != s->uidvalidity) {
		imap_reply(s, "* BYE The selected mailbox was deleted or renamed by another session");
		imap_close(s, "mailbox gone");
		return;
	}
	if (mb.highestmodseq == s->highestmodseq && mb.uidnext == s->uidnext &&
	    (!allow_expunge || mb.highestmodseq == s->expmodseq))
		return;
	if (!allow_expunge && mb.highestmodseq != s->highestmodseq) {
		/* flags and new messages can be reported now; expunges wait for NOOP/IDLE */
	}
	struct sync_ctx c = { s, allow_expunge, NULL, 0, 0, 0 };
	size_t before = s->nmsgs;
	s->nkeywords_known = 0;
	store_keyword_list(s->acct, keyword_cb, s, &err);
	imap_announce_keywords(s);
	if (store_changes_since(s->acct, s->box, s->highestmodseq, sync_msg, NULL, &c, &err) < 0 ||
	    (allow_expunge && store_changes_since(s->acct, s->box, s->expmodseq, NULL,
						  sync_expunged, &c, &err) < 0)) {
		free(c.expunged);
		return;
	}
	struct buf vanished;
	buf_init(&vanished, 1 << 20);
	if (allow_expunge) {
		for (size_t k = 0; k < c.nexp; k++) {
			for (size_t i = 0; i < s->nmsgs; i++) {
				if (s->msgs[i].uid != c.expunged[k])
					continue;
				/* a message this sync added (read before another session expunged
				 * it, the two queries are not one snapshot) was never announced:
				 * it leaves the table without an EXPUNGE the client could not place */
				int announced = i < before;
				if (announced)
					imap_context_expunge(s, i);   /* while seq i + 1 names it */
				free(s->msgs[i].fname);
				memmove(&s->msgs[i], &s->msgs[i + 1],
					(s->nmsgs - i - 1) * sizeof(*s->msgs));
				s->nmsgs--;
				if (!announced)
					break;
				before--;
				if (s->qresync)   /* RFC 7162 3.2.10: VANISHED replaces EXPUNGE */
					buf_appendf(&vanished, vanished.len ? ",%u" : "%u",
						    c.expunged[k]);
				else
					imap_reply(s, "* %zu EXPUNGE", i + 1);
				break;
			}
		}
	}
	free(c.expunged);
	if (vanished.len)
		imap_reply(s, "* VANISHED %s", vanished.data);
	buf_free(&vanished);
	if (s->nmsgs != before || mb.uidnext != s->uidnext) {
		imap_reply(s, "* %zu EXISTS", s->nmsgs);
		size_t recent = imap_recent_sync(s, !s->readonly);
		if (!s->rev2)
			imap_reply(s, "* %zu RECENT", recent);
		if (s->nmsgs > before)
			imap_notify_new(s, before);   /* NOTIFY MessageNew (fetch-att) */
	}
	s->uidnext = mb.uidnext;
	s->highestmodseq = mb.highestmodseq;
	if (allow_expunge)
		s->expmodseq = mb.highestmodseq;
}

/* Mailbox name from the client; see the header. */
int imap_mailbox_arg(struct imap_session *s, const struct imap_arg *a, char *out, size_t outlen)
{
	if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_QUOTED && a->type != IMAP_ARG_LITERAL)
		return -1;
	if (memchr(a->str, '\0', a->len) != NULL)
		return -1;
	struct buf b;
	buf_init(&b, outlen - 1);
	const char *name = a->str;
	if (!s->utf8) {
		if (imap_mutf7_to_utf8(a->str, &b) < 0) {
			buf_free(&b);
			return -1;
		}
		name = b.data ? b.data : "";
	}
	int rc = 0;
	if (strcasecmp(name, "INBOX") == 0)
		snprintf(out, outlen, "INBOX");
	else if (strncasecmp(name, "INBOX/", 6) == 0)
		snprintf(out, outlen, "INBOX/%s", name + 6);
	else if (strlen(name) < outlen)
		snprintf(out, outlen, "%s", name);
	else
		rc = -1;
	buf_free(&b);
	if (rc == 0 && strcmp(out, "INBOX") != 0 && !imap_mboxname_valid(out))
		rc = -1;
	return rc;
}

/* Mailbox name to the client. */
void imap_append_mailbox(struct imap_session *s, struct buf *out, const char *name)
{
	if (s->utf8) {
		imap_append_astring(out, name, strlen(name));
		return;
	}
	struct buf b;
	buf_init(&b, 4096);
	if (imap_utf8_to_mutf7(name, &b) == 0 && b.data)
		imap_append_astring(out, b.data, b.len);
	else
		imap_append_astring(out, name, strlen(name));
	buf_free(&b);
}

/* ---- commands of any state ---- */

/* The capability list for the current state. */
static void imap_caps(struct imap_session *s, char *out, size_t outlen)
{
	int can_login = s->base.tls || s->base.lc->implicit_tls;
	snprintf(out, outlen, "IMAP4rev1 IMAP4rev2 %s %s%s%s%s%s APPENDLIMIT=%llu",
		 s->st == IMAP_NOTAUTH ? "LITERAL-" : "LITERAL+", imap_caps_common,
		 !s->base.tls && s->base.w->tls ? " STARTTLS" : "",
		 s->st == IMAP_NOTAUTH && can_login ? " AUTH=PLAIN AUTH=LOGIN" : "",
		 s->st == IMAP_NOTAUTH && !can_login ? " LOGINDISABLED" : "",
		 s->st != IMAP_NOTAUTH ? " URLAUTH URLAUTH=BINARY" : "",
		 (unsigned long long)s->base.lc->message_size_limit);
}

static void cmd_capability(struct imap_session *s)
{
	char caps[1024];
	imap_caps(s, caps, sizeof(caps));
	imap_reply(s, "* CAPABILITY %s", caps);
	imap_tagged(s, "OK", "CAPABILITY completed");
}

/* Keep the client's "name version" from its ID list for the login diagnostics. */
static void imap_id_client(struct imap_session *s, const struct imap_arg *list)
{
	const char *name = NULL, *version = NULL;
	for (size_t i = 0; i + 1 < list->nlist && i < 60; i += 2) {
		const struct imap_arg *k = &list->list[i], *v = &list->list[i + 1];
		if (v->type == IMAP_ARG_NIL || v->type == IMAP_ARG_LIST || k->type == IMAP_ARG_LIST)
			continue;
		if (strcasecmp(k->str, "name") == 0)
			name = v->str;
		else if (strcasecmp(k->str, "version") == 0)
			version = v->str;
	}
	if (name == NULL)
		return;
	snprintf(s->base.client, sizeof(s->base.client), "%.60s%s%.30s", name, version ? " " : "",
		 version ? version : "");
	for (char *p = s->base.client; *p; p++)
		if ((unsigned char)*p < 32 || *p == 127)
			*p = '?';
}

/* ID (RFC 2971): log what the client says, answer with ours. */
static void cmd_id(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n == 1 && args[0].type == IMAP_ARG_LIST) {
		char desc[300] = "";
		size_t o = 0;
		for (size_t i = 0; i + 1 < args[0].nlist && i < 20; i += 2) {
			const struct imap_arg *k = &args[0].list[i], *v = &args[0].list[i + 1];
			if (v->type == IMAP_ARG_NIL || k->len > 30 || v->len > 60)
				continue;
			int m = snprintf(desc + o, sizeof(desc) - o, "%s%s=%s", o ? "," : "", k->str,
					 v->str);
			if (m > 0 && (size_t)m < sizeof(desc) - o)
				o += (size_t)m;
		}
		imap_id_client(s, &args[0]);
		char esc[200];
		log_info("sess=%016llx proto=imap event=id client=\"%s\"",
			 (unsigned long long)s->base.id, log_escape(desc, o, esc, sizeof(esc)));
	} else if (!(n == 1 && args[0].type == IMAP_ARG_NIL)) {
		imap_bad(s, "ID takes a parenthesized list or NIL");
		return;
	}
	imap_reply(s, "* ID (\"name\" \"postino\" \"version\" \"0.1.0\")");
	imap_tagged(s, "OK", "ID completed");
}

/* ENABLE (RFC 5161). */
static void cmd_enable(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	char enabled[200] = "";
	for (size_t i = 0; i < n; i++) {
		if (args[i].type != IMAP_ARG_ATOM)
			continue;
		const char *c = args[i].str;
		int *flag = NULL;
		if (strcasecmp(c, "IMAP4rev2") == 0)
			flag = &s->rev2;
		else if (strcasecmp(c, "UTF8=ACCEPT") == 0)
			flag = &s->utf8;
		else if (strcasecmp(c, "CONDSTORE") == 0)
			flag = &s->condstore;
		else if (strcasecmp(c, "QRESYNC") == 0) {
			flag = &s->qresync;
			s->condstore = 1;   /* RFC 7162 3.2.3: QRESYNC implies CONDSTORE */
		}
		if (flag && !*flag) {
			*flag = 1;
			size_t l = strlen(enabled);
			snprintf(enabled + l, sizeof(enabled) - l, " %s", c);
		}
	}
	imap_reply(s, "* ENABLED%s", enabled);
	imap_tagged(s, "OK", "ENABLE completed");
}

/* Login outcome. */
static void imap_auth_done(void *ctx, const struct auth_result *r)
{
	struct imap_session *s = ctx;
	if (s->base.closing) {
		imap_job_finished(s);
		return;
	}
	if (r->result == 1) {
		char root[4096];
		const char *err;
		int ok = store_account_path(s->base.w->cfg->data_dir, r->user, root, sizeof(root)) == 0;
		int o = ok ? store_account_open_shared(root, &s->acct, &err) : -1;
		if (o == 0 && store_account_create(root, &err) == 0)
			o = store_account_open_shared(root, &s->acct, &err);
		if (o <= 0) {
			imap_tagged(s, "NO", "[UNAVAILABLE] Your mailbox cannot be opened now; please "
					     "try again later");
		} else {
			s->acct_root = strdup(root);   /* NULL: the session never rests */
			snprintf(s->user, sizeof(s->user), "%s", r->user);
			struct acct_user u;
			if (acctdb_user_get(s->base.w->db, s->user, &u, &err) == 1)
				s->quota = u.quota_bytes;
			explicit_bzero(&u, sizeof(u));
			s->st = IMAP_AUTH;
			struct imap_parser_limits lim;
			imap_limits(s, &lim);
			imap_parser_set_limits(s->parser, &lim);
			metrics_login(MP_IMAP, 1);
			log_info("sess=%016llx proto=imap event=login result=ok user=%s ip=%s",
				 (unsigned long long)s->base.id, s->user, s->base.peer_ip);
			char caps[1024];
			imap_caps(s, caps, sizeof(caps));
			imap_tagged(s, "OK", "[CAPABILITY %s] Logged in", caps);
		}
	} else if (r->result == 0) {
		char esc[128];
		metrics_login(MP_IMAP, 0);
		log_info("sess=%016llx proto=imap event=login result=failed reason=\"%s\" user=\"%s\" "
			 "ip=%s", (unsigned long long)s->base.id, r->reason,
			 log_escape(r->user, strlen(r->user), esc, sizeof(esc)), s->base.peer_ip);
		imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Wrong address or password (the user name "
				     "is your full email address)");
		s->errors++;
		if (session_login_failed(&s->base)) {
			imap_reply(s, "* BYE Too many failed logins; closing the connection");
			s->base.job_running = 0;
			imap_close(s, "too many failed logins");   /* reaps once, now the job is over */
			return;
		}
	} else {
		imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure; please try again "
				     "later");
	}
	imap_arm_timer(s);
	imap_job_finished(s);
}

/* Start a login check. */
static void imap_login(struct imap_session *s, const char *user, const char *pass)
{
	struct auth_env env;
	session_auth_env(&s->base, &env);
	if (auth_verify_submit(&env, user, pass, imap_auth_done, s) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Temporary authentication failure");
		return;
	}
	s->base.job_running = 1;
	conn_pause_read(&s->conn, 1);
}

/* Refuse logins before TLS (user: the login name when known). 1 refused. */
static int imap_need_tls(struct imap_session *s, const char *user)
{
	if (s->base.tls)
		return 0;
	session_diag(&s->base, DIAG_PLAINTEXT, user, 0, "login before STARTTLS");
	imap_tagged(s, "NO", "[PRIVACYREQUIRED] Plaintext login is not allowed: turn on encryption "
			     "(SSL/TLS or STARTTLS) in your mail program");
	s->errors++;
	return 1;
}

static void cmd_login(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n != 2 || args[0].type == IMAP_ARG_LIST || args[1].type == IMAP_ARG_LIST ||
	    args[0].type == IMAP_ARG_NIL || args[1].type == IMAP_ARG_NIL) {
		imap_bad(s, "Use LOGIN user password");
		return;
	}
	if (imap_need_tls(s, args[0].str))
		return;
	imap_login(s, args[0].str, args[1].str);
}

/* SASL continuation state for AUTHENTICATE without an initial response. */
struct sasl_ctx {
	int mech;        /* 1 PLAIN, 2 LOGIN */
	int step;
	char user[321];
};

/* Is a client's SASL response base64 at all ("=" is the empty one)? Not base64 is a broken client
 * and gets BAD (RFC 9051 6.2.2), a NO would make it ask its user for the password again. */
static int imap_sasl_is_base64(const char *r)
{
	size_t n = strlen(r), pad = 0;
	if (strcmp(r, "=") == 0)
		return 1;
	if (n % 4 != 0)
		return 0;
	while (pad < 2 && pad < n && r[n - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < n - pad; i++)
		if (base64_value((unsigned char)r[i], BASE64_STD) < 0)
			return 0;
	return 1;
}

static void cmd_authenticate(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n < 1 || n > 2 || args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, "Use AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (imap_need_tls(s, NULL))
		return;
	const char *mech = args[0].str;
	if (n == 2 && !imap_sasl_is_base64(args[1].str)) {
		imap_bad(s, "The initial response is not base64");
		return;
	}
	if (strcasecmp(mech, "PLAIN") == 0 && n == 2) {
		char user[321], pw[1024];
		int r = strcmp(args[1].str, "=") == 0 ? -1 :
			sasl_plain_decode(args[1].str, user, sizeof(user), pw, sizeof(pw));
		if (r < 0) {
			imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Malformed PLAIN response");
			s->errors++;
		} else {
			imap_login(s, user, pw);
		}
		explicit_bzero(pw, sizeof(pw));
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0 && strcasecmp(mech, "LOGIN") != 0) {
		char m[64];
		snprintf(m, sizeof(m), "mechanism %.30s", mech);
		session_diag(&s->base, DIAG_BAD_MECH, NULL, s->base.tls, m);
		imap_tagged(s, "NO", "[CANNOT] Unsupported mechanism; use PLAIN or LOGIN");
		return;
	}
	struct sasl_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	c->mech = strcasecmp(mech, "PLAIN") == 0 ? 1 : 2;
	if (c->mech == 2 && n == 2) {
		if (sasl_login_decode(args[1].str, c->user, sizeof(c->user)) < 0) {
			free(c);
			imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Malformed LOGIN response");
			return;
		}
		c->step = 1;
	}
	s->cmd_ctx = c;
	s->cmd_free = free;
	imap_reply(s, "+ %s", c->mech == 1 ? "" : c->step == 0 ? "VXNlcm5hbWU6" : "UGFzc3dvcmQ6");
}

/* A line answering an AUTHENTICATE continuation. 1 consumed. */
static void imap_sasl_line(struct imap_session *s, const char *line)
{
	struct sasl_ctx *c = s->cmd_ctx;
	char pw[1024];
	if (strcmp(line, "*") == 0) {
		free(c);
		s->cmd_ctx = NULL;
		imap_tagged(s, "BAD", "Authentication cancelled");
		return;
	}
	if (!imap_sasl_is_base64(line)) {
		free(c);
		s->cmd_ctx = NULL;
		imap_bad(s, "The response is not base64");
		return;
	}
	if (c->mech == 1) {
		char user[321];
		int r = sasl_plain_decode(line, user, sizeof(user), pw, sizeof(pw));
		free(c);
		s->cmd_ctx = NULL;
		if (r < 0) {
			imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Malformed PLAIN response");
			s->errors++;
		} else {
			imap_login(s, user, pw);
		}
		explicit_bzero(pw, sizeof(pw));
		return;
	}
	char *target = c->step == 0 ? c->user : pw;
	size_t cap = c->step == 0 ? sizeof(c->user) : sizeof(pw);
	if (sasl_login_decode(line, target, cap) < 0) {
		free(c);
		s->cmd_ctx = NULL;
		imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Malformed LOGIN response");
		return;
	}
	if (c->step == 0) {
		c->step = 1;
		imap_reply(s, "+ UGFzc3dvcmQ6");
		return;
	}
	char user[321];
	snprintf(user, sizeof(user), "%s", c->user);
	free(c);
	s->cmd_ctx = NULL;
	imap_login(s, user, pw);
	explicit_bzero(pw, sizeof(pw));
}

static void cmd_starttls(struct imap_session *s, size_t n)
{
	if (n != 0) {
		imap_bad(s, "STARTTLS takes no arguments");
		return;
	}
	if (s->base.tls || s->base.w->tls == NULL) {
		imap_bad(s, "%s", s->base.tls ? "TLS is already active" : "TLS is not available");
		return;
	}
	imap_tagged(s, "OK", "Begin TLS negotiation now");
	imap_parser_reset(s->parser);   /* commands pipelined behind STARTTLS are discarded */
	if (conn_start_tls(&s->conn, s->base.w->tls) < 0)
		imap_close(s, "TLS setup failed");
}

/* See imap-private.h. At rest the index is reopened only when its fingerprint changed. */
void imap_idle_check(struct imap_session *s)
{
	if (s->base.closing || (!s->idling && !imap_notify_ready(s)))
		return;   /* NOTIFY (RFC 5465) hears between commands, IDLE while idling */
	if (s->acct == NULL) {
		uint64_t sig[4];
		store_account_signature(s->acct_root, sig);
		if (memcmp(sig, s->acct_sig, sizeof(sig)) == 0 || imap_wake(s) < 0)
			return;
		imap_arm_rest(s);
	}
	if (s->idling)
		imap_sync_mailbox(s, 1);
	imap_notify_check(s);
	imap_context_update(s);
	conn_flush(&s->conn);
}

/* The IDLE timer: the slow safety poll of a watched session, the old poll of one without. */
static void imap_idle_timer(struct ev_timer *t)
{
	struct imap_session *s = t->arg;
	if (!s->idling || s->base.closing)
		return;
	imap_idle_check(s);
	ev_timer_set(s->base.w->loop, &s->idle_timer,
		     s->idle_watch ? IMAP_IDLE_SAFETY_MS : IMAP_IDLE_POLL_MS, imap_idle_timer, s);
}

static void cmd_idle(struct imap_session *s, size_t n)
{
	if (n != 0) {
		imap_bad(s, "IDLE takes no arguments");
		return;
	}
	imap_sync_mailbox(s, 1);
	imap_reply(s, "+ idling");
	s->idling = 1;
	imap_idle_watch(s);   /* -1: this session polls */
	ev_timer_set(s->base.w->loop, &s->idle_timer,
		     s->idle_watch ? IMAP_IDLE_SAFETY_MS : IMAP_IDLE_POLL_MS, imap_idle_timer, s);
}

/* A line during IDLE: only DONE ends it. */
static void imap_idle_line(struct imap_session *s, const char *line)
{
	s->idling = 0;
	if (s->notify == NULL)   /* NOTIFY keeps listening between commands */
		imap_idle_unwatch(s);
	ev_timer_cancel(s->base.w->loop, &s->idle_timer);
	if (strcasecmp(line, "DONE") == 0) {
		imap_wake(s);
		imap_sync_mailbox(s, 1);
		imap_tagged(s, "OK", "IDLE terminated");
	} else {
		imap_bad(s, "Expected DONE to end IDLE");
	}
}

/* Quota check for APPEND and COPY. */
int imap_over_quota(struct imap_session *s, uint64_t more)
{
	const char *err;
	if (s->quota == 0)
		return 0;
	int64_t used = store_account_usage(s->acct, &err);
	if (used < 0 || (uint64_t)used + more <= s->quota)
		return 0;
	imap_tagged(s, "NO", "[OVERQUOTA] Your mailbox is full (limit %llu KB): delete some mail, "
			     "and empty the Trash", (unsigned long long)(s->quota / 1024));
	return 1;
}

/* GETQUOTAROOT mailbox / GETQUOTA root / SETQUOTA (RFC 9208): one root "" per account. */
static void cmd_quota(struct imap_session *s, const char *name, const struct imap_arg *args,
		      size_t n)
{
	const char *err;
	if (strcasecmp(name, "SETQUOTA") == 0) {
		imap_tagged(s, "NO", "[NOPERM] Quotas are set by the administrator");
		return;
	}
	if (n != 1) {
		imap_bad(s, "Use %s %s", name, strcasecmp(name, "GETQUOTA") == 0 ? "root" : "mailbox");
		return;
	}
	if (strcasecmp(name, "GETQUOTAROOT") == 0) {
		char box[1024];
		struct store_mailbox_info mb;
		if (imap_mailbox_arg(s, &args[0], box, sizeof(box)) < 0 ||
		    store_mailbox_get(s->acct, box, &mb, &err) != 1) {
			imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
			return;
		}
		struct buf b;
		buf_init(&b, 4096);
		buf_appendstr(&b, "* QUOTAROOT ");
		imap_append_mailbox(s, &b, box);
		buf_appendstr(&b, s->quota ? " \"\"\r\n" : "\r\n");
		imap_write(s, b.data, b.len);
		buf_free(&b);
	} else if (args[0].len != 0 || s->quota == 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No such quota root");
		return;
	}
	if (s->quota) {
		int64_t used = store_account_usage(s->acct, &err);
		imap_reply(s, "* QUOTA \"\" (STORAGE %lld %llu)", (long long)(used < 0 ? 0 : used / 1024),
			   (unsigned long long)(s->quota / 1024));
	}
	imap_tagged(s, "OK", "%s completed", name);
}

static void cmd_namespace(struct imap_session *s)
{
	imap_reply(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_tagged(s, "OK", "NAMESPACE completed");
}

/* ---- dispatch ---- */

/* One parsed command as the dispatcher hands it to its handler. */
struct imap_call {
	const char *name;              /* as the table spells it: "FETCH" for UID FETCH too */
	const struct imap_arg *args;   /* the arguments after the name (after UID's command) */
	size_t n;
	int uid;                       /* 1: it came as UID <name> (numbers are UIDs) */
};

/* A command's handler: it checks its own arguments and sends the tagged reply. The table has
 * already checked the session's state. */
typedef void imap_handler(struct imap_session *s, const struct imap_call *c);

/* The states a command is allowed in, as bits of enum imap_state. */
#define IN_NOTAUTH (1u << IMAP_NOTAUTH)
#define IN_AUTH (1u << IMAP_AUTH)
#define IN_SELECTED (1u << IMAP_SELECTED)
#define IN_LOGGED_IN (IN_AUTH | IN_SELECTED)
#define IN_ANY (IN_NOTAUTH | IN_LOGGED_IN)

/* Flags of a command. */
enum {
	CMD_UID = 1,   /* also allowed as UID <name> (RFC 9051 6.4.9; EXPUNGE: RFC 4315) */
};

struct imap_cmd {
	const char *name;
	unsigned states;   /* IN_* */
	unsigned flags;    /* CMD_* */
	imap_handler *run;
};

static const struct imap_cmd *imap_cmd_find(const char *name);

/* CAPABILITY. */
static void do_capability(struct imap_session *s, const struct imap_call *c)
{
	(void)c;
	cmd_capability(s);
}

/* NOOP, and CHECK (which RFC 9051 folds into NOOP): report changes, notify news. */
static void do_noop(struct imap_session *s, const struct imap_call *c)
{
	imap_sync_mailbox(s, 1);
	imap_notify_check(s);
	imap_tagged(s, "OK", "%s completed", c->name);
}

/* LOGOUT. */
static void do_logout(struct imap_session *s, const struct imap_call *c)
{
	(void)c;
	imap_reply(s, "* BYE Logging out");
	imap_tagged(s, "OK", "LOGOUT completed");
	imap_close(s, "logout");
}

/* ID (RFC 2971). */
static void do_id(struct imap_session *s, const struct imap_call *c)
{
	cmd_id(s, c->args, c->n);
}

/* STARTTLS. */
static void do_starttls(struct imap_session *s, const struct imap_call *c)
{
	cmd_starttls(s, c->n);
}

/* LOGIN user password. */
static void do_login(struct imap_session *s, const struct imap_call *c)
{
	cmd_login(s, c->args, c->n);
}

/* AUTHENTICATE mechanism [initial-response]. */
static void do_authenticate(struct imap_session *s, const struct imap_call *c)
{
	cmd_authenticate(s, c->args, c->n);
}

/* ENABLE (RFC 5161). */
static void do_enable(struct imap_session *s, const struct imap_call *c)
{
	cmd_enable(s, c->args, c->n);
}

/* SELECT and EXAMINE (read-only). */
static void do_select(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_select(s, c->args, c->n, strcmp(c->name, "EXAMINE") == 0);
}

/* CREATE. */
static void do_create(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_create(s, c->args, c->n);
}

/* DELETE. */
static void do_delete(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_delete(s, c->args, c->n);
}

/* RENAME. */
static void do_rename(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_rename(s, c->args, c->n);
}

/* SUBSCRIBE and UNSUBSCRIBE. */
static void do_subscribe(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_subscribe(s, c->args, c->n, strcmp(c->name, "SUBSCRIBE") == 0);
}

/* LIST and LSUB. */
static void do_list(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_list(s, c->args, c->n, strcmp(c->name, "LSUB") == 0);
}

/* NAMESPACE (RFC 2342). */
static void do_namespace(struct imap_session *s, const struct imap_call *c)
{
	(void)c;
	cmd_namespace(s);
}

/* STATUS. */
static void do_status(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_status(s, c->args, c->n);
}

/* APPEND. */
static void do_append(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_append(s, c->args, c->n);
}

/* IDLE (RFC 2177). */
static void do_idle(struct imap_session *s, const struct imap_call *c)
{
	cmd_idle(s, c->n);
}

/* GETQUOTAROOT, GETQUOTA and SETQUOTA (RFC 9208). */
static void do_quota(struct imap_session *s, const struct imap_call *c)
{
	cmd_quota(s, c->name, c->args, c->n);
}

/* COMPRESS DEFLATE (RFC 4978): the tagged OK is the last line sent uncompressed. */
static void do_compress(struct imap_session *s, const struct imap_call *c)
{
	if (c->n != 1 || strcasecmp(c->args[0].str, "DEFLATE") != 0) {
		imap_bad(s, "Use COMPRESS DEFLATE");
	} else if (s->conn.z) {
		imap_tagged(s, "NO", "[COMPRESSIONACTIVE] Compression is already active");
	} else {
		imap_tagged(s, "OK", "DEFLATE active");
		if (conn_start_deflate(&s->conn) < 0)
			imap_close(s, "out of memory");
	}
}

/* NOTIFY (RFC 5465). */
static void do_notify(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_notify(s, c->args, c->n);
}

/* GENURLAUTH (RFC 4467). */
static void do_genurlauth(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_genurlauth(s, c->args, c->n);
}

/* RESETKEY (RFC 4467). */
static void do_resetkey(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_resetkey(s, c->args, c->n);
}

/* URLFETCH (RFC 4467). */
static void do_urlfetch(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_urlfetch(s, c->args, c->n);
}

/* CLOSE: expunge silently, then leave the mailbox. */
static void do_close(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_expunge(s, c->args, c->n, 0, 1, 1);
}

/* UNSELECT (RFC 3691): leave the mailbox without expunging. */
static void do_unselect(struct imap_session *s, const struct imap_call *c)
{
	(void)c;
	imap_unselect(s);
	imap_tagged(s, "OK", "UNSELECT completed");
}

/* EXPUNGE, and UID EXPUNGE set (RFC 4315). */
static void do_expunge(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_expunge(s, c->args, c->n, c->uid, 0, 0);
}

/* SEARCH. */
static void do_search(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_search(s, c->args, c->n, c->uid);
}

/* FETCH. */
static void do_fetch(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_fetch(s, c->args, c->n, c->uid);
}

/* STORE. */
static void do_store(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_store(s, c->args, c->n, c->uid);
}

/* COPY and MOVE (RFC 6851). */
static void do_copy(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_copy(s, c->args, c->n, c->uid, strcmp(c->name, "MOVE") == 0);
}

/* SORT (RFC 5256). */
static void do_sort(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_sort(s, c->args, c->n, c->uid);
}

/* THREAD (RFC 5256). */
static void do_thread(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_thread(s, c->args, c->n, c->uid);
}

/* CANCELUPDATE (RFC 5267). */
static void do_cancelupdate(struct imap_session *s, const struct imap_call *c)
{
	imap_cmd_cancelupdate(s, c->args, c->n);
}

/* UID command ...: a command of the table marked CMD_UID, with uid set. Each of them is allowed
 * in the selected state only, as UID itself, so the state is already checked. */
static void do_uid(struct imap_session *s, const struct imap_call *c)
{
	if (c->n < 1 || c->args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, "UID needs a command");
		return;
	}
	const struct imap_cmd *sub = imap_cmd_find(c->args[0].str);
	if (sub == NULL || !(sub->flags & CMD_UID)) {
		imap_bad(s, "Unknown UID command %.30s", c->args[0].str);
		return;
	}
	struct imap_call call = { .name = sub->name, .args = c->args + 1, .n = c->n - 1, .uid = 1 };
	sub->run(s, &call);
}

/* Every command: where it is allowed, whether UID may precede it, who runs it. */
static const struct imap_cmd imap_cmds[] = {
	/* name          allowed in     flags    handler */
	{ "CAPABILITY",   IN_ANY,        0,       do_capability },
	{ "NOOP",         IN_ANY,        0,       do_noop },
	{ "LOGOUT",       IN_ANY,        0,       do_logout },
	{ "ID",           IN_ANY,        0,       do_id },

	{ "STARTTLS",     IN_NOTAUTH,    0,       do_starttls },
	{ "LOGIN",        IN_NOTAUTH,    0,       do_login },
	{ "AUTHENTICATE", IN_NOTAUTH,    0,       do_authenticate },

	{ "ENABLE",       IN_LOGGED_IN,  0,       do_enable },
	{ "SELECT",       IN_LOGGED_IN,  0,       do_select },
	{ "EXAMINE",      IN_LOGGED_IN,  0,       do_select },
	{ "CREATE",       IN_LOGGED_IN,  0,       do_create },
	{ "DELETE",       IN_LOGGED_IN,  0,       do_delete },
	{ "RENAME",       IN_LOGGED_IN,  0,       do_rename },
	{ "SUBSCRIBE",    IN_LOGGED_IN,  0,       do_subscribe },
	{ "UNSUBSCRIBE",  IN_LOGGED_IN,  0,       do_subscribe },
	{ "LIST",         IN_LOGGED_IN,  0,       do_list },
	{ "LSUB",         IN_LOGGED_IN,  0,       do_list },
	{ "NAMESPACE",    IN_LOGGED_IN,  0,       do_namespace },
	{ "STATUS",       IN_LOGGED_IN,  0,       do_status },
	{ "APPEND",       IN_LOGGED_IN,  0,       do_append },
	{ "IDLE",         IN_LOGGED_IN,  0,       do_idle },
	{ "GETQUOTAROOT", IN_LOGGED_IN,  0,       do_quota },
	{ "GETQUOTA",     IN_LOGGED_IN,  0,       do_quota },
	{ "SETQUOTA",     IN_LOGGED_IN,  0,       do_quota },
	{ "COMPRESS",     IN_LOGGED_IN,  0,       do_compress },
	{ "NOTIFY",       IN_LOGGED_IN,  0,       do_notify },
	{ "GENURLAUTH",   IN_LOGGED_IN,  0,       do_genurlauth },
	{ "RESETKEY",     IN_LOGGED_IN,  0,       do_resetkey },
	{ "URLFETCH",     IN_LOGGED_IN,  0,       do_urlfetch },

	{ "CHECK",        IN_SELECTED,   0,       do_noop },
	{ "CLOSE",        IN_SELECTED,   0,       do_close },
	{ "UNSELECT",     IN_SELECTED,   0,       do_unselect },
	{ "EXPUNGE",      IN_SELECTED,   CMD_UID, do_expunge },
	{ "SEARCH",       IN_SELECTED,   CMD_UID, do_search },
	{ "FETCH",        IN_SELECTED,   CMD_UID, do_fetch },
	{ "STORE",        IN_SELECTED,   CMD_UID, do_store },
	{ "COPY",         IN_SELECTED,   CMD_UID, do_copy },
	{ "MOVE",         IN_SELECTED,   CMD_UID, do_copy },
	{ "SORT",         IN_SELECTED,   CMD_UID, do_sort },
	{ "THREAD",       IN_SELECTED,   CMD_UID, do_thread },
	{ "CANCELUPDATE", IN_SELECTED,   0,       do_cancelupdate },
	{ "UID",          IN_SELECTED,   0,       do_uid },
};

/* The table's entry for a command name (any case), or NULL. */
static const struct imap_cmd *imap_cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof(imap_cmds) / sizeof(imap_cmds[0]); i++)
		if (strcasecmp(imap_cmds[i].name, name) == 0)
			return &imap_cmds[i];
	return NULL;
}

/* Why command c is refused in the session's state (the text of the BAD), or NULL if it is
 * allowed there. */
static const char *imap_cmd_refusal(const struct imap_session *s, const struct imap_cmd *c)
{
	if (c->states & (1u << s->st))
		return NULL;
	if (s->st == IMAP_NOTAUTH)
		return "Log in first";
	if (c->states == IN_NOTAUTH)
		return "Already logged in";
	return "Select a mailbox first";
}

/* Run one parsed command: find it, check the state, open the account's index, call it. */
static void imap_dispatch(struct imap_session *s, const char *name, const struct imap_arg *args,
			  size_t n)
{
	const struct imap_cmd *c = imap_cmd_find(name);
	if (c == NULL) {
		imap_bad(s, "Unknown command %.30s", name);
		return;
	}
	const char *refusal = imap_cmd_refusal(s, c);
	if (refusal) {
		imap_bad(s, "%s", refusal);
		return;
	}
	if (s->st != IMAP_NOTAUTH && imap_wake(s) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Your mailbox cannot be opened now; please try "
				     "again later");
		return;
	}
	s->base.cmd_ns = metrics_now_ns();
	if (log_debug_enabled())
		log_debug("sess=%016llx proto=imap cmd=%s", (unsigned long long)s->base.id, c->name);
	struct imap_call call = { .name = c->name, .args = args, .n = n, .uid = 0 };
	c->run(s, &call);
}

/* Lines that are not commands: SASL responses and IDLE's DONE. 1 if one was handled. */
static int imap_special_line(struct imap_session *s)
{
	struct conn *c = &s->conn;
	const char *lf = memchr(c->in.data, '\n', c->in.len);
	if (lf == NULL) {
		if (c->in.len > imap_line_max(s) || c->in.len >= c->in.max) {
			buf_reset(&c->in);
			imap_reply(s, "* BYE Line too long; closing the connection");
			imap_close(s, "overlong line");
		}
		return 0;
	}
	size_t len = (size_t)(lf - c->in.data);
	char line[8192];
	size_t l = len > 0 && c->in.data[len - 1] == '\r' ? len - 1 : len;
	if (l >= sizeof(line))
		l = sizeof(line) - 1;
	memcpy(line, c->in.data, l);
	line[l] = '\0';
	buf_consume(&c->in, len + 1);
	if (s->idling)
		imap_idle_line(s, line);
	else
		imap_sasl_line(s, line);
	explicit_bzero(line, sizeof(line));
	return 1;
}

/* Work through buffered input and any command in progress (imap_process). */
static void imap_process_cmds(struct imap_session *s)
{
	struct conn *c = &s->conn;
	while (!s->base.closing && c->fd >= 0) {
		if (s->resume) {
			if (!s->resume(s)) {
				c->want_write = 1;   /* resume when the socket drains */
				break;
			}
			s->resume = NULL;
			if (s->cmd_free && s->cmd_ctx)
				s->cmd_free(s->cmd_ctx);
			s->cmd_ctx = NULL;
			s->cmd_free = NULL;
			continue;
		}
		if (s->base.job_running || c->tls_state == CONN_TLS_HANDSHAKE || c->want_tls_after_flush)
			break;
		if (conn_out_pending(c) > IMAP_OUT_HIWAT) {
			c->want_write = 1;   /* let a pipelining client read first */
			break;
		}
		if (c->in.len == 0)
			break;
		if (s->idling || s->cmd_ctx) {
			if (!imap_special_line(s))
				break;
			continue;
		}
		const char *lf = imap_parser_at_start(s->parser) ?
					 memchr(c->in.data, '\n', c->in.len) : NULL;
		if (lf && session_http_line(&s->base, c, c->in.data, (size_t)(lf - c->in.data))) {
			imap_close(s, "HTTP request on a mail port");
			break;
		}
		size_t consumed = 0;
		enum imap_parse_result r = imap_parser_feed(s->parser, c->in.data, c->in.len,
							    &consumed);
		buf_consume(&c->in, consumed);
		if (r == IMAP_PARSE_MORE) {
			if (consumed == 0)
				break;
			continue;
		}
		imap_arm_timer(s);
		if (r == IMAP_PARSE_CONTINUE) {
			imap_reply(s, "+ OK");
			continue;
		}
		const char *tag = imap_parser_tag(s->parser);
		snprintf(s->tag, sizeof(s->tag), "%s", tag ? tag : "*");
		if (r == IMAP_PARSE_ERROR) {
			if (tag)
				imap_bad(s, "%s", imap_parser_error(s->parser));
			else {
				imap_reply(s, "* BAD %s", imap_parser_error(s->parser));
				imap_count_error(s);
			}
			if (imap_parser_fatal(s->parser) && !s->base.closing) {
				/* the rest of the input cannot be told apart from commands */
				imap_reply(s, "* BYE %s; closing the connection",
					   imap_parser_error(s->parser));
				imap_close(s, "input out of step");
			}
			continue;
		}
		size_t n;
		const struct imap_arg *args = imap_parser_args(s->parser, &n);
		imap_dispatch(s, imap_parser_name(s->parser), args, n);
	}
}

/* Work through buffered input and any command in progress. The index reads of one turn share
 * one read transaction (a snapshot lock instead of one per lookup): it ends before the loop
 * gets control back, and the commands of a turn stop at the first pool job. */
static void imap_process(struct imap_session *s)
{
	struct store_account *acct = s->acct;
	int began = store_read_begin(acct);
	imap_process_cmds(s);
	store_read_end(acct, began);
}

/* The greeting, with the capabilities of the current state. */
static void imap_greet(struct imap_session *s)
{
	char caps[1024];
	imap_caps(s, caps, sizeof(caps));
	imap_reply(s, "* OK [CAPABILITY %s] postino IMAP ready", caps);
}

/* The session core's view of IMAP (session.h). */
static void imap_op_greet(struct session *b)
{
	imap_greet((struct imap_session *)b);
}

static void imap_op_process(struct session *b)
{
	imap_process((struct imap_session *)b);
}

static int imap_op_busy(const struct session *b)
{
	return b->job_running;
}

static void imap_op_close_detail(const struct session *b, char *out, size_t outlen)
{
	const struct imap_session *s = (const struct imap_session *)b;
	snprintf(out, outlen, "user=%s", s->user[0] ? s->user : "-");
}

static const struct session_ops imap_ops = {
	.proto = "imap",
	.alpn = "imap",
	.tls_hint = imap_tls_hint,
	.hint_listener = LST_IMAP,
	.tls_failure_diag = 1,
	.greet = imap_op_greet,
	.process = imap_op_process,
	.busy = imap_op_busy,
	.close_detail = imap_op_close_detail,
	.release = imap_release,
	.shutdown = imap_on_shutdown,
};

/* Take over an accepted connection. */
void imap_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer)
{
	struct imap_session *s = session_new(w, fd, lst, peer, &imap_ops, sizeof(*s));
	if (s == NULL)
		return;
	s->box = imap_no_box;
	struct imap_parser_limits lim;
	imap_limits(s, &lim);
	s->parser = imap_parser_new(&lim);
	if (s->parser == NULL) {
		close(fd);
		free(s);
		return;
	}
	if (session_connect(&s->base, &s->conn, fd, 262144, IMAP_OUT_MAX) < 0) {
		imap_parser_free(&s->parser);
		free(s);
		return;
	}
	imap_arm_timer(s);
	session_begin(&s->base);
}
