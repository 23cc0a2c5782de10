/* imap-mailbox.c - mailbox commands: SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE,
 * LIST/LSUB (with SPECIAL-USE, CHILDREN, LIST-EXTENDED selection and RETURN (STATUS)), STATUS,
 * APPEND (MULTIAPPEND, UIDPLUS) and EXPUNGE/CLOSE. */
#include "imap-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap-quote.h"
#include "imap-seqset.h"
#include "imap-utf7.h"
#include "log.h"
#include "pool.h"

struct select_job {
	struct imap_wjob job;
	char box[1024];
	int readonly;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	const char *q_known;   /* QRESYNC's known UIDs, in the parser */
};

static void select_finish(struct imap_session *s, const char *box, int readonly,
			  uint32_t q_uidvalidity, uint64_t q_modseq, const char *q_known);

/* Pool: adopt files a crash left unindexed, drop rows whose file is gone (best effort; it
 * takes the index's write lock, which a write of another session may hold while it syncs). */
static void select_work(struct imap_wjob *w)
{
	struct select_job *j = (struct select_job *)w;
	const char *err;
	store_mailbox_sync(w->acct, j->box, &err);
}

/* Loop: load the table and answer (also when the sync could not run). */
static void select_done(struct imap_wjob *w)
{
	struct select_job *j = (struct select_job *)w;
	select_finish(w->s, j->box, j->readonly, j->q_uidvalidity, j->q_modseq, j->q_known);
}

/* SELECT / EXAMINE: the index is reconciled with the files on the pool, then loaded here. */
void imap_cmd_select(struct imap_session *s, const struct imap_arg *args, size_t n, int readonly)
{
	char box[1024];
	if (n < 1) {
		imap_bad(s, "Use SELECT mailbox");
		return;
	}
	if (imap_mailbox_arg(s, &args[0], box, sizeof(box)) < 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No mailbox by that name (invalid name)");
		return;
	}
	uint32_t q_uidvalidity = 0;
	uint64_t q_modseq = 0;
	const char *q_known = NULL;
	for (size_t i = 1; i < n; i++) {   /* (CONDSTORE) / (QRESYNC (uidvalidity modseq [uids])) */
		if (args[i].type != IMAP_ARG_LIST)
			continue;
		for (size_t k = 0; k < args[i].nlist; k++) {
			const struct imap_arg *p = &args[i].list[k];
			if (p->type == IMAP_ARG_ATOM && strcasecmp(p->str, "CONDSTORE") == 0)
				s->condstore = 1;
			if (p->type == IMAP_ARG_ATOM && strcasecmp(p->str, "QRESYNC") == 0 &&
			    k + 1 < args[i].nlist && args[i].list[k + 1].type == IMAP_ARG_LIST) {
				const struct imap_arg *q = &args[i].list[k + 1];
				if (!s->qresync || q->nlist < 2) {
					imap_bad(s, "QRESYNC needs ENABLE QRESYNC and (uidvalidity modseq)");
					return;
				}
				q_uidvalidity = (uint32_t)strtoul(q->list[0].str, NULL, 10);
				q_modseq = strtoull(q->list[1].str, NULL, 10);
				if (q->nlist >= 3 && q->list[2].type == IMAP_ARG_ATOM)
					q_known = q->list[2].str;
				k++;
			}
		}
	}
	if (s->st == IMAP_SELECTED) {
		imap_unselect(s);
		if (s->rev2 || s->condstore)
			imap_reply(s, "* OK [CLOSED] Previous mailbox closed");
	}
	struct select_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	snprintf(j->box, sizeof(j->box), "%s", box);
	j->readonly = readonly;
	j->q_uidvalidity = q_uidvalidity;
	j->q_modseq = q_modseq;
	j->q_known = q_known;
	imap_write_job(s, &j->job, select_work, select_done);
}

/* The rest of SELECT / EXAMINE, once the index agrees with the files. */
static void select_finish(struct imap_session *s, const char *box, int readonly,
			  uint32_t q_uidvalidity, uint64_t q_modseq, const char *q_known)
{
	const char *err;
	if (imap_load_mailbox(s, box, &err) < 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No mailbox named %.200s", box);
		return;
	}
	s->st = IMAP_SELECTED;
	s->readonly = readonly;
	char fl[4096];
	imap_flags_text(s, 0, ~0ull, fl, sizeof(fl));
	imap_reply(s, "* %zu EXISTS", s->nmsgs);
	size_t recent = imap_recent_sync(s, !readonly);
	if (!s->rev2)
		imap_reply(s, "* %zu RECENT", recent);
	imap_reply(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)", fl[0] ? " " : "",
		   fl);
	imap_reply(s, "* OK [PERMANENTFLAGS (%s\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s \\*)] "
		      "Flags permitted", "", fl[0] ? " " : "", fl);
	size_t unseen = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		if (!(s->msgs[i].flags & STORE_F_SEEN)) {
			unseen = i + 1;
			break;
		}
	if (unseen && !s->rev2)
		imap_reply(s, "* OK [UNSEEN %zu] First unseen", unseen);
	imap_reply(s, "* OK [UIDVALIDITY %u] UIDs valid", s->uidvalidity);
	imap_reply(s, "* OK [UIDNEXT %u] Predicted next UID", s->uidnext);
	imap_reply(s, "* OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)s->highestmodseq);
	if (s->rev2) {   /* RFC 9051 6.3.2: the mailbox name with its attributes */
		struct buf b;
		buf_init(&b, 4096);
		buf_appendstr(&b, "* LIST () \"/\" ");
		imap_append_mailbox(s, &b, box);
		buf_appendstr(&b, "\r\n");
		imap_write(s, b.data, b.len);
		buf_free(&b);
	}
	if (q_uidvalidity && q_uidvalidity == s->uidvalidity)
		imap_qresync_select(s, q_modseq, q_known);
	imap_tagged(s, "OK", "[%s] %s completed", readonly ? "READ-ONLY" : "READ-WRITE",
		    readonly ? "EXAMINE" : "SELECT");
}

struct qresync_ctx {
	struct imap_session *s;
	struct imap_seqset known;
	int have_known;
	struct buf vanished;
	uint64_t since;
};

/* An expunged UID the client may still know. */
static void qresync_expunged(void *ctx, uint32_t uid)
{
	struct qresync_ctx *q = ctx;
	if (q->have_known && !imap_seqset_contains(&q->known, uid))
		return;
	buf_appendf(&q->vanished, q->vanished.len ? ",%u" : "%u", uid);
}

/* A message changed since the client's MODSEQ (changes_since already updated nothing). */
static void qresync_changed(void *ctx, const struct store_msg_info *m)
{
	(void)ctx;
	(void)m;
}

/* SELECT (QRESYNC ...): VANISHED (EARLIER) and the flags of what changed since modseq. */
void imap_qresync_select(struct imap_session *s, uint64_t modseq, const char *known)
{
	const char *err;
	struct qresync_ctx q;
	memset(&q, 0, sizeof(q));
	q.s = s;
	buf_init(&q.vanished, 4 << 20);
	if (known && imap_seqset_parse(known, UINT32_MAX, &q.known) == 0)
		q.have_known = 1;
	store_changes_since(s->acct, s->box, modseq, qresync_changed, qresync_expunged, &q, &err);
	if (q.vanished.len)
		imap_reply(s, "* VANISHED (EARLIER) %s", q.vanished.data);
	buf_free(&q.vanished);
	if (q.have_known)
		imap_seqset_free(&q.known);
	for (size_t i = 0; i < s->nmsgs; i++) {
		struct imap_msg *m = &s->msgs[i];
		if (m->modseq <= modseq)
			continue;
		char fl[1200];
		imap_reply(s, "* %zu FETCH (UID %u FLAGS (%s) MODSEQ (%llu))", i + 1, m->uid,
			   imap_flags_text(s, m->flags, m->keywords, fl, sizeof(fl)),
			   (unsigned long long)m->modseq);
	}
}

enum mbox_op { MB_CREATE, MB_DELETE, MB_RENAME, MB_SUBSCRIBE, MB_UNSUBSCRIBE };

struct mbox_job {
	struct imap_wjob job;
	enum mbox_op op;
	char name[1024], to[1024];
	const char *special;   /* static */
	int rc;
};

static const char *const mbox_op_names[] = { "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
					     "UNSUBSCRIBE" };

/* Pool: the mailbox change. */
static void mbox_work(struct imap_wjob *w)
{
	struct mbox_job *j = (struct mbox_job *)w;
	const char *err = NULL;
	switch (j->op) {
	case MB_CREATE: {
		size_t l = strlen(j->name);
		for (size_t i = 1; i < l; i++) {   /* parents are created implicitly */
			if (j->name[i] == '/') {
				j->name[i] = '\0';
				store_mailbox_create(w->acct, j->name, NULL, &err);
				j->name[i] = '/';
			}
		}
		j->rc = store_mailbox_create(w->acct, j->name, j->special, &err);
		break;
	}
	case MB_DELETE:
		j->rc = store_mailbox_delete(w->acct, j->name, &err);
		break;
	case MB_RENAME:
		j->rc = store_mailbox_rename(w->acct, j->name, j->to, &err);
		break;
	case MB_SUBSCRIBE:
	case MB_UNSUBSCRIBE:
		j->rc = store_mailbox_subscribe(w->acct, j->name, j->op == MB_SUBSCRIBE, &err);
		break;
	}
	if (j->rc < 0)
		imap_wjob_error(w, err);
}

/* Loop: the answer. */
static void mbox_done(struct imap_wjob *w)
{
	struct mbox_job *j = (struct mbox_job *)w;
	struct imap_session *s = w->s;
	const char *cmd = mbox_op_names[j->op];
	int r = j->rc;
	if (imap_wjob_failed(w, cmd))
		return;
	switch (j->op) {
	case MB_CREATE:
		if (r < 0)
			imap_tagged(s, "NO", "[CANNOT] %s", w->err);
		else if (r == 0)
			imap_tagged(s, "NO", "[ALREADYEXISTS] Mailbox already exists");
		else
			imap_tagged(s, "OK", "CREATE completed");
		break;
	case MB_DELETE:
		if (r < 0)
			imap_tagged(s, "NO", "[CANNOT] %s", w->err);
		else if (r == 0)
			imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		else
			imap_tagged(s, "OK", "DELETE completed");
		break;
	case MB_RENAME:
		if (r == 1)
			imap_tagged(s, "OK", "RENAME completed");
		else if (r == 0)
			imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		else if (r == -2)
			imap_tagged(s, "NO", "[ALREADYEXISTS] Target mailbox exists");
		else
			imap_tagged(s, "NO", "[CANNOT] %s", w->err);
		break;
	case MB_SUBSCRIBE:
	case MB_UNSUBSCRIBE:
		if (r < 0)
			imap_tagged(s, "NO", "[SERVERBUG] %s", w->err);
		else if (r == 0 && j->op == MB_SUBSCRIBE)
			imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		else
			imap_tagged(s, "OK", "%s completed", cmd);
		break;
	}
}

/* Start a mailbox change on the pool. */
static void mbox_submit(struct imap_session *s, enum mbox_op op, const char *name, const char *to,
			const char *special)
{
	struct mbox_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	j->op = op;
	snprintf(j->name, sizeof(j->name), "%s", name);
	snprintf(j->to, sizeof(j->to), "%s", to ? to : "");
	j->special = special;
	imap_write_job(s, &j->job, mbox_work, mbox_done);
}

/* CREATE name [(USE (\Special))]. */
void imap_cmd_create(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	char box[1024];
	const char *special = NULL;
	struct imap_arg name;
	char stripped[1024];
	if (n >= 1) {   /* a trailing separator only declares intent (RFC 3501 6.3.3) */
		name = args[0];
		if (name.len > 1 && name.len < sizeof(stripped) && name.str[name.len - 1] == '/') {
			memcpy(stripped, name.str, name.len - 1);
			stripped[name.len - 1] = '\0';
			name.str = stripped;
			name.len--;
		}
	}
	if (n < 1 || imap_mailbox_arg(s, &name, box, sizeof(box)) < 0) {
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name: no empty parts, \".\", \"..\" or "
				     "control characters");
		return;
	}
	if (n == 2 && args[1].type == IMAP_ARG_LIST && args[1].nlist == 2 &&
	    strcasecmp(args[1].list[0].str, "USE") == 0 && args[1].list[1].type == IMAP_ARG_LIST &&
	    args[1].list[1].nlist == 1) {
		static const char *ok[] = { "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive",
					    "\\All", "\\Flagged" };
		for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			if (strcasecmp(args[1].list[1].list[0].str, ok[i]) == 0)
				special = ok[i];
		if (special == NULL) {
			imap_tagged(s, "NO", "[USEATTR] Unsupported special-use attribute");
			return;
		}
	}
	mbox_submit(s, MB_CREATE, box, NULL, special);
}

/* DELETE. */
void imap_cmd_delete(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	char box[1024];
	if (n != 1 || imap_mailbox_arg(s, &args[0], box, sizeof(box)) < 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		return;
	}
	if (s->st == IMAP_SELECTED && strcmp(s->box, box) == 0)
		imap_unselect(s);
	mbox_submit(s, MB_DELETE, box, NULL, NULL);
}

/* RENAME. */
void imap_cmd_rename(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	char from[1024], to[1024];
	if (n != 2 || imap_mailbox_arg(s, &args[0], from, sizeof(from)) < 0 ||
	    imap_mailbox_arg(s, &args[1], to, sizeof(to)) < 0) {
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
		return;
	}
	mbox_submit(s, MB_RENAME, from, to, NULL);
}

/* SUBSCRIBE / UNSUBSCRIBE. */
void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *args, size_t n, int on)
{
	char box[1024];
	if (n != 1) {
		imap_bad(s, "Use %s mailbox", on ? "SUBSCRIBE" : "UNSUBSCRIBE");
		return;
	}
	if (imap_mailbox_arg(s, &args[0], box, sizeof(box)) < 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] Invalid mailbox name");
		return;
	}
	mbox_submit(s, on ? MB_SUBSCRIBE : MB_UNSUBSCRIBE, box, NULL, NULL);
}

/* IMAP LIST pattern match: '*' any, '%' any but '/'. */
static int list_match(const char *pat, const char *name)
{
	for (; *pat; pat++, name++) {
		if (*pat == '*' || *pat == '%') {
			for (const char *p = name;; p++) {
				if (list_match(pat + 1, p))
					return 1;
				if (*p == '\0' || (*pat == '%' && *p == '/'))
					return 0;
			}
		}
		if (*name == '\0')
			return 0;
		if (*pat != *name)
			return 0;
	}
	return *name == '\0';
}

/* STATUS items into out ("MESSAGES 3 UIDNEXT 4 ..."). -1 on an unknown item. */
static int status_items(struct imap_session *s, const struct store_mailbox_info *mb,
			const struct imap_arg *items, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		const char *it = items[i].str;
		if (items[i].type != IMAP_ARG_ATOM)
			return -1;
		if (i)
			buf_appendstr(out, " ");
		if (strcasecmp(it, "MESSAGES") == 0)
			buf_appendf(out, "MESSAGES %u", mb->messages);
		else if (strcasecmp(it, "UIDNEXT") == 0)
			buf_appendf(out, "UIDNEXT %u", mb->uidnext);
		else if (strcasecmp(it, "UIDVALIDITY") == 0)
			buf_appendf(out, "UIDVALIDITY %u", mb->uidvalidity);
		else if (strcasecmp(it, "UNSEEN") == 0)
			buf_appendf(out, "UNSEEN %u", mb->unseen);
		else if (strcasecmp(it, "RECENT") == 0) {
			uint32_t from, count = 0;
			const char *err;
			if (store_recent(s->acct, mb->name, 0, &from, &count, &err) < 0)
				count = 0;
			buf_appendf(out, "RECENT %u", count);
		}
		else if (strcasecmp(it, "SIZE") == 0)
			buf_appendf(out, "SIZE %llu", (unsigned long long)mb->size);
		else if (strcasecmp(it, "HIGHESTMODSEQ") == 0)
			buf_appendf(out, "HIGHESTMODSEQ %llu", (unsigned long long)mb->highestmodseq);
		else if (strcasecmp(it, "DELETED") == 0)
			buf_appendf(out, "DELETED 0");
		else
			return -1;
	}
	(void)s;
	return 0;
}

/* What one LIST or LSUB asks for. */
struct list_req {
	int lsub;
	int sel_subscribed, sel_special, sel_recursive;   /* LIST-EXTENDED selection options */
	int ret_special;
	const struct imap_arg *status_list;   /* RETURN (STATUS (items)), or NULL */
	char refname[1024];                   /* the reference, decoded */
	const struct imap_arg *patv;          /* the patterns */
	size_t npat;
};

/* The selection options, the reference, the patterns and the RETURN options of LIST / LSUB
 * into q. 0, or -1 (answered BAD). */
static int list_parse(struct imap_session *s, const struct imap_arg *args, size_t n,
		      struct list_req *q)
{
	size_t a = 0;
	if (!q->lsub && n > 0 && args[0].type == IMAP_ARG_LIST) {
		/* RFC 5258 3.1: unknown selection options and RECURSIVEMATCH alone are errors */
		for (size_t i = 0; i < args[0].nlist; i++) {
			const char *o = args[0].list[i].type == IMAP_ARG_ATOM ? args[0].list[i].str : "";
			if (strcasecmp(o, "SUBSCRIBED") == 0) {
				q->sel_subscribed = 1;
			} else if (strcasecmp(o, "SPECIAL-USE") == 0) {
				q->sel_special = 1;
			} else if (strcasecmp(o, "RECURSIVEMATCH") == 0) {
				q->sel_recursive = 1;
			} else if (strcasecmp(o, "REMOTE") != 0) {
				imap_bad(s, "Unknown LIST selection option (known: SUBSCRIBED, REMOTE, "
					    "RECURSIVEMATCH, SPECIAL-USE)");
				return -1;
			}
		}
		if (q->sel_recursive && !q->sel_subscribed && !q->sel_special) {
			imap_bad(s, "RECURSIVEMATCH needs another selection option");
			return -1;
		}
		a = 1;
	}
	if (n < a + 2) {
		imap_bad(s, "Use LIST reference pattern");
		return -1;
	}
	const struct imap_arg *ref = &args[a], *pats = &args[a + 1];
	for (size_t i = a + 2; i + 1 < n; i++) {
		if (args[i].type != IMAP_ARG_ATOM || strcasecmp(args[i].str, "RETURN") != 0 ||
		    args[i + 1].type != IMAP_ARG_LIST)
			continue;
		const struct imap_arg *r = &args[i + 1];
		for (size_t k = 0; k < r->nlist; k++) {
			const char *o = r->list[k].type == IMAP_ARG_ATOM ? r->list[k].str : "";
			if (strcasecmp(o, "STATUS") == 0 && k + 1 < r->nlist &&
			    r->list[k + 1].type == IMAP_ARG_LIST) {
				q->status_list = &r->list[k + 1];
				k++;
			} else if (strcasecmp(o, "SUBSCRIBED") != 0 &&
				   strcasecmp(o, "CHILDREN") != 0 &&
				   strcasecmp(o, "SPECIAL-USE") != 0) {
				imap_bad(s, "Unknown LIST return option (known: SUBSCRIBED, "
					    "CHILDREN, SPECIAL-USE, STATUS (items))");
				return -1;
			}
		}
	}
	/* the reference is a name prefix, not a mailbox: decode it but do not validate it */
	if (ref->type != IMAP_ARG_NIL && ref->type != IMAP_ARG_LIST && ref->len > 0 &&
	    ref->len < sizeof(q->refname)) {
		struct buf rb;
		buf_init(&rb, sizeof(q->refname) - 1);
		if (!s->utf8 && imap_mutf7_to_utf8(ref->str, &rb) == 0 && rb.data)
			snprintf(q->refname, sizeof(q->refname), "%s", rb.data);
		else
			snprintf(q->refname, sizeof(q->refname), "%s", ref->str);
		buf_free(&rb);
	}
	q->npat = pats->type == IMAP_ARG_LIST ? pats->nlist : 1;
	q->patv = pats->type == IMAP_ARG_LIST ? pats->list : pats;
	return 0;
}

/* The account's mailboxes, and for a SUBSCRIBED selection the subscribed names without a
 * mailbox as rows with id 0 (RFC 5258 3.1: LIST (SUBSCRIBED) shows them \NonExistent; LSUB
 * shows them too). How many, or -1 (*err_r). */
static int list_boxes(struct imap_session *s, const struct list_req *q,
		      struct store_mailbox_info **boxes_r, const char **err_r)
{
	struct store_mailbox_info *boxes;
	int nb = store_mailbox_list(s->acct, &boxes, err_r);
	if (nb < 0)
		return -1;
	char **orphans = NULL;
	int no = q->sel_subscribed ? store_subscriptions_orphaned(s->acct, &orphans, err_r) : 0;
	if (no > 0) {
		struct store_mailbox_info *nbx = realloc(boxes, (size_t)(nb + no) * sizeof(*boxes));
		if (nbx != NULL) {
			boxes = nbx;
			for (int k = 0; k < no; k++) {
				memset(&boxes[nb], 0, sizeof(boxes[nb]));
				snprintf(boxes[nb].name, sizeof(boxes[nb].name), "%s", orphans[k]);
				boxes[nb++].subscribed = 1;
			}
		}
	}
	for (int k = 0; orphans && orphans[k]; k++)
		free(orphans[k]);
	free(orphans);
	*boxes_r = boxes;
	return nb;
}

/* Does a pattern of q (after the reference; INBOX in any case) match name? */
static int list_matches(const struct imap_session *s, const struct list_req *q,
			const char *name)
{
	int match = 0;
	for (size_t p = 0; p < q->npat && !match; p++) {
		char pat[2048];
		struct buf pb;
		buf_init(&pb, 1024);
		const char *praw = q->patv[p].str;
		if (!s->utf8 && imap_mutf7_to_utf8(praw, &pb) == 0 && pb.data)
			praw = pb.data;
		snprintf(pat, sizeof(pat), "%s%s", q->refname, praw);
		if (strncasecmp(pat, "INBOX", 5) == 0 && (pat[5] == '\0' || pat[5] == '/'))
			memcpy(pat, "INBOX", 5);
		match = list_match(pat, name);
		buf_free(&pb);
	}
	return match;
}

/* The LIST / LSUB row of boxes[i] (and its STATUS), if it is to be listed. */
static void list_row(struct imap_session *s, const struct list_req *q,
		     const struct store_mailbox_info *boxes, int nb, int i, struct buf *line)
{
	const char *name = boxes[i].name;
	int match = list_matches(s, q, name);
	int children = 0, child_selected = 0, child_matches = 0, child_other = 0;
	int exists = boxes[i].id != 0;
	size_t nl = strlen(name);
	for (int k = 0; k < nb; k++) {
		if (strncmp(boxes[k].name, name, nl) != 0 || boxes[k].name[nl] != '/')
			continue;
		children |= boxes[k].id != 0;
		if ((q->sel_subscribed && !boxes[k].subscribed) ||
		    (q->sel_special && !boxes[k].special_use))
			continue;
		child_selected = 1;
		for (size_t p = 0; p < q->npat && (q->lsub || q->sel_recursive); p++) {
			char cp[2048];
			snprintf(cp, sizeof(cp), "%s%s", q->refname, q->patv[p].str);
			if (!list_match(cp, boxes[k].name))
				continue;
			child_matches = 1;
			if (!list_match(cp, name))
				child_other = 1;
		}
	}
	int selected = (!q->sel_subscribed || boxes[i].subscribed) &&
		       (!q->sel_special || boxes[i].special_use != NULL);
	/* RFC 5258 3.5: with RECURSIVEMATCH a parent that is not selected itself is listed when a
	 * descendant is, with CHILDINFO saying why (not when another pattern, one that does not
	 * match the parent, lists that descendant itself; as Dovecot) */
	int childinfo = q->sel_recursive && !selected && child_selected && !child_other;
	/* RFC 3501 6.3.9: LSUB "%" lists an unsubscribed parent of a subscribed name (that the
	 * pattern does not reach itself) as \Noselect */
	int lsub_parent = q->lsub && !selected && child_selected && !child_matches;
	if (!match || (!selected && !childinfo && !lsub_parent))
		return;
	buf_reset(line);
	buf_appendf(line, "* %s (%s", q->lsub ? "LSUB" : "LIST",
		    lsub_parent ? "\\Noselect" : !exists ? (q->lsub ? "" : "\\NonExistent") :
		    children ? "\\HasChildren" : "\\HasNoChildren");
	if (boxes[i].subscribed && !q->lsub)
		buf_appendstr(line, " \\Subscribed");
	if (q->ret_special && boxes[i].special_use)
		buf_appendf(line, " %s", boxes[i].special_use);
	buf_appendstr(line, ") \"/\" ");
	imap_append_mailbox(s, line, name);
	if (childinfo)
		buf_appendf(line, " (\"CHILDINFO\" (%s%s%s))",
			    q->sel_subscribed ? "\"SUBSCRIBED\"" : "",
			    q->sel_subscribed && q->sel_special ? " " : "",
			    q->sel_special ? "\"SPECIAL-USE\"" : "");
	buf_appendstr(line, "\r\n");
	imap_write(s, line->data, line->len);
	if (q->status_list && exists) {
		buf_reset(line);
		buf_appendstr(line, "* STATUS ");
		imap_append_mailbox(s, line, name);
		buf_appendstr(line, " (");
		if (status_items(s, &boxes[i], q->status_list->list, q->status_list->nlist,
				 line) == 0) {
			buf_appendstr(line, ")\r\n");
			imap_write(s, line->data, line->len);
		}
	}
}

/* LIST / LSUB, with LIST-EXTENDED selection options and RETURN (SUBSCRIBED CHILDREN STATUS). */
void imap_cmd_list(struct imap_session *s, const struct imap_arg *args, size_t n, int lsub)
{
	struct list_req q = { .lsub = lsub, .sel_subscribed = lsub, .ret_special = 1 };
	if (list_parse(s, args, n, &q) < 0)
		return;
	if (q.npat == 1 && q.patv[0].len == 0) {
		imap_reply(s, "* %s (\\Noselect) \"/\" \"\"", lsub ? "LSUB" : "LIST");
		imap_tagged(s, "OK", "%s completed", lsub ? "LSUB" : "LIST");
		return;
	}
	const char *err;
	struct store_mailbox_info *boxes;
	int nb = list_boxes(s, &q, &boxes, &err);
	if (nb < 0) {
		imap_tagged(s, "NO", "[SERVERBUG] %s", err);
		return;
	}
	struct buf line;
	buf_init(&line, 65536);
	for (int i = 0; i < nb; i++)
		list_row(s, &q, boxes, nb, i, &line);
	buf_free(&line);
	free(boxes);
	imap_tagged(s, "OK", "%s completed", lsub ? "LSUB" : "LIST");
}

/* STATUS mailbox (items). */
void imap_cmd_status(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	char box[1024];
	const char *err;
	struct store_mailbox_info mb;
	if (n != 2 || args[1].type != IMAP_ARG_LIST) {
		imap_bad(s, "Use STATUS mailbox (items)");
		return;
	}
	if (imap_mailbox_arg(s, &args[0], box, sizeof(box)) < 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No mailbox by that name (invalid name)");
		return;
	}
	if (store_mailbox_get(s->acct, box, &mb, &err) != 1) {
		imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		return;
	}
	struct buf out;
	buf_init(&out, 4096);
	buf_appendstr(&out, "* STATUS ");
	imap_append_mailbox(s, &out, box);
	buf_appendstr(&out, " (");
	if (status_items(s, &mb, args[1].list, args[1].nlist, &out) < 0) {
		buf_free(&out);
		imap_bad(s, "Unknown STATUS item");
		return;
	}
	buf_appendstr(&out, ")\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
	imap_tagged(s, "OK", "STATUS completed");
}

/* Check one flag of a flag list: -1 invalid, 0 \Recent (ignored), 1 keyword, or 2 + the
 * index of a system flag in imap_sys_flags. */
static const struct { const char *n; unsigned f; } imap_sys_flags[] = {
	{ "\\Seen", STORE_F_SEEN }, { "\\Answered", STORE_F_ANSWERED },
	{ "\\Flagged", STORE_F_FLAGGED }, { "\\Deleted", STORE_F_DELETED },
	{ "\\Draft", STORE_F_DRAFT } };
static int imap_flag_check(const struct imap_arg *a)
{
	const char *f = a->str;
	if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NIL)   /* NIL is an atom too */
		return -1;
	if (f[0] == '\\') {
		for (int k = 0; k < 5; k++)
			if (strcasecmp(f, imap_sys_flags[k].n) == 0)
				return 2 + k;
		return strcasecmp(f, "\\Recent") == 0 ? 0 : -1;
	}
	if (strlen(f) >= 64 || strpbrk(f, "(){%*\"\\]") != NULL)
		return -1;
	return 1;
}

/* See imap-private.h. */
int imap_flags_valid(const struct imap_arg *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (imap_flag_check(&list[i]) < 0)
			return -1;
	return 0;
}

/* See imap-private.h. */
static int flags_resolve(struct store_account *acct, const struct imap_arg *list, size_t n,
			 int create, unsigned *flags_r, uint64_t *kw_r, struct imap_kwnames *kw)
{
	const char *err;
	*flags_r = 0;
	*kw_r = 0;
	if (imap_flags_valid(list, n) < 0)
		return -1;   /* before any keyword is created */
	for (size_t i = 0; i < n; i++) {
		const char *f = list[i].str;
		int c = imap_flag_check(&list[i]);
		if (c == 0)
			continue;
		if (c >= 2) {
			*flags_r |= imap_sys_flags[c - 2].f;
			continue;
		}
		int id = store_keyword_id(acct, f, create, &err);
		if (id < 0 && !create)
			return 1;
		if (id < 0 || id >= 64)
			continue;   /* all 64 keyword slots in use: ignored, like a full PERMANENTFLAGS */
		*kw_r |= 1ull << id;
		kw->mask |= 1ull << id;
		snprintf(kw->name[id], sizeof(kw->name[id]), "%s", f);
	}
	return 0;
}

/* See imap-private.h. */
int imap_flags_resolve(struct store_account *acct, const struct imap_arg *list, size_t n,
		       unsigned *flags_r, uint64_t *kw_r, struct imap_kwnames *kw)
{
	return flags_resolve(acct, list, n, 1, flags_r, kw_r, kw);
}

/* See imap-private.h. */
int imap_flags_lookup(struct store_account *acct, const struct imap_arg *list, size_t n,
		      unsigned *flags_r, uint64_t *kw_r, struct imap_kwnames *kw)
{
	return flags_resolve(acct, list, n, 0, flags_r, kw_r, kw);
}

/* Parse an IMAP date-time "dd-Mon-yyyy hh:mm:ss +zzzz". -1 invalid. */
static int parse_datetime(const char *v, time_t *out)
{
	static const char *mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
				     "Oct", "Nov", "Dec" };
	int d, y, h, mi, sec, zone;
	char m[4], sign;
	if (sscanf(v, "%2d-%3s-%4d %2d:%2d:%2d %c%4d", &d, m, &y, &h, &mi, &sec, &sign, &zone) != 8)
		return -1;
	int mo = -1;
	for (int i = 0; i < 12; i++)
		if (strcasecmp(m, mon[i]) == 0)
			mo = i;
	if (mo < 0 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1900 ||
	    (sign != '+' && sign != '-'))
		return -1;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo, .tm_mday = d, .tm_hour = h,
			 .tm_min = mi, .tm_sec = sec };
	time_t t = timegm(&tm);
	int off = (zone / 100) * 3600 + (zone % 100) * 60;
	*out = sign == '+' ? t - off : t + off;
	return 0;
}

/* "a:b,c" for sorted UIDs into out; -1 if it does not fit. */
static int uid_set_text(const uint32_t *uids, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		int r = j == i ? buf_appendf(out, "%s%u", i ? "," : "", uids[i]) :
				 buf_appendf(out, "%s%u:%u", i ? "," : "", uids[i], uids[j]);
		if (r < 0)
			return -1;
		i = j + 1;
	}
	return 0;
}

struct append_job {
	struct imap_wjob job;
	char box[1024];
	size_t nm;
	struct store_append_msg *msgs;    /* data: the literals, in the parser */
	const struct imap_arg **flist;    /* each message's flag list, or NULL */
	struct buf *built;                /* [nbuilt]: CATENATE results (RFC 4469) */
	size_t nbuilt;
	uint32_t *uids;
	uint32_t uidvalidity;
	int claim;              /* the session has the mailbox selected read-write */
	uint32_t recent_from;   /* with claim: \Recent from here to the last UID is the session's */
	int rc;
	struct imap_kwnames kw;
};

/* Free an APPEND job's own fields. */
static void append_job_free(struct append_job *j)
{
	for (size_t k = 0; j->built && k < j->nbuilt; k++)
		buf_free(&j->built[k]);
	free(j->built);
	free(j->msgs);
	free(j->flist);
	free(j->uids);
}

/* Pool: the keywords (created now that the command is known to be good), then the messages. */
static void append_work(struct imap_wjob *w)
{
	struct append_job *j = (struct append_job *)w;
	const char *err;
	for (size_t k = 0; k < j->nm; k++) {
		if (j->flist[k] != NULL &&
		    imap_flags_resolve(w->acct, j->flist[k]->list, j->flist[k]->nlist,
				       &j->msgs[k].flags, &j->msgs[k].keywords, &j->kw) < 0) {
			imap_wjob_error(w, "invalid flag");   /* checked before: cannot happen */
			j->rc = -1;
			return;
		}
	}
	/* a session with the mailbox selected claims \Recent of what it stored in the same
	 * commit: otherwise its look right after (append_done) claims it in a commit of its
	 * own on the loop */
	j->rc = store_append_multi_claim(w->acct, j->box, j->msgs, j->nm, j->uids, &j->uidvalidity,
					 j->claim ? &j->recent_from : NULL, &err);
	if (j->rc < 0)
		imap_wjob_error(w, err);
}

/* Loop: APPEND's answer. */
static void append_done(struct imap_wjob *w)
{
	struct append_job *j = (struct append_job *)w;
	struct imap_session *s = w->s;
	imap_keywords_learn(s, &j->kw);
	if (imap_wjob_failed(w, "APPEND")) {
		append_job_free(j);
		return;
	}
	if (j->rc < 0) {
		log_warn("sess=%016llx proto=imap event=append-failed messages=%zu error=\"%s\"",
			 (unsigned long long)s->base.id, j->nm, w->err ? w->err : "?");
		imap_tagged(s, "NO", "[UNAVAILABLE] The message%s could not be stored (none was): "
				     "please try again later", j->nm > 1 ? "s" : "");
		append_job_free(j);
		return;
	}
	if (s->st == IMAP_SELECTED && strcmp(s->box, j->box) == 0) {
		if (j->claim) {
			s->recent_mine_from = j->recent_from;
			s->recent_mine_to = j->uids[j->nm - 1] + 1;
		}
		imap_sync_mailbox(s, 0);
		s->recent_mine_from = s->recent_mine_to = 0;
	}
	struct buf set;
	buf_init(&set, 1024);
	if (uid_set_text(j->uids, j->nm, &set) == 0)
		imap_tagged(s, "OK", "[APPENDUID %u %s] APPEND completed", j->uidvalidity, set.data);
	else
		imap_tagged(s, "OK", "APPEND completed");   /* RFC 4315: APPENDUID is optional */
	buf_free(&set);
	append_job_free(j);
}

/* APPEND mailbox [(flags)] [date] literal [ [(flags)] [date] literal ...] (MULTIAPPEND, RFC
 * 3502): every message is checked before any is stored, and then all are stored or none, on
 * the pool. */
void imap_cmd_append(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	char box[1024];
	const char *err;
	if (n < 2) {
		imap_bad(s, "Use APPEND mailbox [(flags)] [date-time] literal");
		return;
	}
	if (imap_mailbox_arg(s, &args[0], box, sizeof(box)) < 0) {
		imap_tagged(s, "NO", "[CANNOT] Invalid mailbox name");
		return;
	}
	struct store_mailbox_info mb;
	if (store_mailbox_get(s->acct, box, &mb, &err) != 1) {
		imap_tagged(s, "NO", "[TRYCREATE] No mailbox named %.200s", box);
		return;
	}
	/* at most one message per argument left */
	struct append_job *j = calloc(1, sizeof(*j));
	struct store_append_msg *msgs = calloc(n, sizeof(*msgs));
	const struct imap_arg **flist = calloc(n, sizeof(*flist));
	uint32_t *uids = calloc(n, sizeof(*uids));
	struct buf *built = calloc(n, sizeof(*built));   /* CATENATE results (RFC 4469) */
	size_t nm = 0;
	uint64_t total = 0;
	uint64_t budget = IMAP_APPEND_MESSAGES_MAX * s->base.lc->message_size_limit;
	if (j == NULL || msgs == NULL || flist == NULL || uids == NULL || built == NULL) {
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		goto out;
	}
	/* check everything, without side effects */
	for (size_t i = 1; i < n;) {
		struct store_append_msg *m = &msgs[nm];
		m->date = time(NULL);
		if (args[i].type == IMAP_ARG_LIST) {
			if (imap_flags_valid(args[i].list, args[i].nlist) < 0) {
				imap_bad(s, "Invalid flag in APPEND (message %zu): nothing was stored",
					 nm + 1);
				goto out;
			}
			flist[nm] = &args[i];
			i++;
		}
		if (i < n && args[i].type == IMAP_ARG_QUOTED) {
			if (parse_datetime(args[i].str, &m->date) < 0) {
				imap_bad(s, "Invalid date-time in APPEND (message %zu): nothing was "
					    "stored", nm + 1);
				goto out;
			}
			i++;
		}
		if (i + 1 < n && args[i].type == IMAP_ARG_ATOM &&
		    strcasecmp(args[i].str, "CATENATE") == 0) {
			if (imap_catenate_build(s, &args[i + 1], nm + 1, budget - total,
						&built[nm]) < 0)
				goto out;
			m->data = built[nm].data;
			m->len = built[nm].len;
			total += built[nm].len;
			nm++;
			i += 2;
			continue;
		}
		if (i >= n || args[i].type != IMAP_ARG_LITERAL) {
			imap_bad(s, "APPEND needs each message as a literal or CATENATE (parts): "
				    "nothing was stored");
			goto out;
		}
		if (args[i].len > s->base.lc->message_size_limit) {
			imap_tagged(s, "NO", "[TOOBIG] Message %zu is too big: the limit is %llu "
					     "octets; nothing was stored", nm + 1,
				    (unsigned long long)s->base.lc->message_size_limit);
			goto out;
		}
		if (args[i].len == 0) {
			imap_tagged(s, "NO", "Empty messages cannot be appended (message %zu); "
					     "nothing was stored", nm + 1);
			goto out;
		}
		if (!args[i].literal8 && memchr(args[i].str, '\0', args[i].len) != NULL) {
			imap_tagged(s, "NO", "Message %zu contains NUL; use a literal8 (~{n}) for "
					     "binary. Nothing was stored", nm + 1);
			goto out;
		}
		m->data = args[i].str;
		m->len = args[i].len;
		total += args[i].len;
		nm++;
		i++;
	}
	if (imap_over_quota(s, total))
		goto out;
	snprintf(j->box, sizeof(j->box), "%s", box);
	j->nm = nm;
	j->msgs = msgs;
	j->flist = flist;
	j->uids = uids;
	j->built = built;
	j->nbuilt = n;
	j->claim = s->st == IMAP_SELECTED && !s->readonly && strcmp(s->box, j->box) == 0;
	imap_write_job(s, &j->job, append_work, append_done);
	return;
out:
	for (size_t k = 0; built && k < n; k++)
		buf_free(&built[k]);
	free(built);
	free(j);
	free(msgs);
	free(flist);
	free(uids);
}

#define IMAP_EXPUNGE_INLINE_MAX 64   /* messages an EXPUNGE removes on the loop at most */

struct expunge_job {
	struct imap_wjob job;
	char box[1024];
	uint32_t *uids;
	size_t n;
	int uid, close_after, rc;
};

/* EXPUNGE's or CLOSE's answer once the messages are gone. */
static void expunge_answer(struct imap_session *s, int uid, int close_after)
{
	if (close_after) {
		imap_unselect(s);
		imap_tagged(s, "OK", "CLOSE completed");
		return;
	}
	imap_sync_mailbox(s, 1);
	imap_tagged(s, "OK", "%sEXPUNGE completed", uid ? "UID " : "");
}

/* Pool: remove the messages. */
static void expunge_work(struct imap_wjob *w)
{
	struct expunge_job *j = (struct expunge_job *)w;
	const char *err;
	j->rc = store_expunge(w->acct, j->box, j->uids, j->n, &err);
	if (j->rc < 0)
		imap_wjob_error(w, err);
}

/* Loop: the answer. */
static void expunge_done(struct imap_wjob *w)
{
	struct expunge_job *j = (struct expunge_job *)w;
	const char *cmd = j->close_after ? "CLOSE" : j->uid ? "UID EXPUNGE" : "EXPUNGE";
	if (!imap_wjob_failed(w, cmd)) {
		if (j->rc < 0)
			imap_tagged(w->s, "NO", "[UNAVAILABLE] Expunge failed: %s", w->err);
		else
			expunge_answer(w->s, j->uid, j->close_after);
	}
	free(j->uids);
}

/* Pool: remove the files of an expunge made on the loop; nobody waits for it. */
static void expunge_unlink_work(void *files)
{
	store_unlink_files(files);
}

static void expunge_unlink_done(void *files)
{
	(void)files;
}

/* Loop: the expunge made here with the session's shared handle when that cannot wait (the
 * write lock free at once, no checkpoint due) and the messages are few: no pool job to wait
 * for, no sync (like a flag change, see store_expunge_nowait), and the shared handle keeps its
 * page cache, which a pool handle's commit would make it read again. The files are removed by
 * the pool after the answer: an unlink can wait for the disk (a discard), and the loop must
 * not. 1 done (answered), 0 the pool does it. */
static int expunge_inline(struct imap_session *s, struct expunge_job *j)
{
	if (s->acct == NULL || j->n > IMAP_EXPUNGE_INLINE_MAX)
		return 0;
	const char *err;
	char **files;
	j->rc = store_expunge_nowait(s->acct, j->box, j->uids, j->n, &files, &err);
	if (j->rc == STORE_WOULD_WAIT)
		return 0;
	if (files != NULL &&
	    pool_submit(s->base.w->pool, expunge_unlink_work, expunge_unlink_done, files) < 0)
		store_unlink_files(files);   /* no thread to take it: here, then */
	j->job.s = s;
	if (j->rc < 0)
		imap_wjob_error(&j->job, err);
	expunge_done(&j->job);
	free(j);
	return 1;
}

/* EXPUNGE, UID EXPUNGE set, CLOSE. */
void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args, size_t n, int uid,
		      int close_after, int silent)
{
	(void)silent;
	struct imap_seqset set;
	int have_set = 0;
	if (uid) {
		if (n != 1 || args[0].type != IMAP_ARG_ATOM ||
		    imap_seqset_parse(args[0].str, s->uidnext ? s->uidnext - 1 : 0, &set) < 0) {
			imap_bad(s, "Use UID EXPUNGE uid-set");
			return;
		}
		have_set = 1;
	} else if (n != 0) {
		imap_bad(s, "%s takes no arguments", close_after ? "CLOSE" : "EXPUNGE");
		return;
	}
	if (s->readonly) {
		if (have_set)
			imap_seqset_free(&set);
		if (close_after) {
			imap_unselect(s);
			imap_tagged(s, "OK", "CLOSE completed");
		} else {
			imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		}
		return;
	}
	uint32_t *uids = calloc(s->nmsgs + 1, sizeof(*uids));
	size_t nu = 0;
	for (size_t i = 0; uids && i < s->nmsgs; i++)
		if ((s->msgs[i].flags & STORE_F_DELETED) &&
		    (!have_set || imap_seqset_contains(&set, s->msgs[i].uid)))
			uids[nu++] = s->msgs[i].uid;
	if (have_set)
		imap_seqset_free(&set);
	struct expunge_job *j = nu > 0 ? calloc(1, sizeof(*j)) : NULL;
	if (uids == NULL || (nu > 0 && j == NULL)) {
		free(uids);
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	if (nu == 0) {   /* nothing to write */
		free(uids);
		expunge_answer(s, uid, close_after);
		return;
	}
	snprintf(j->box, sizeof(j->box), "%s", s->box);
	j->uids = uids;
	j->n = nu;
	j->uid = uid;
	j->close_after = close_after;
	if (expunge_inline(s, j))
		return;
	imap_write_job(s, &j->job, expunge_work, expunge_done);
}
