/* imap-thread.c - THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 sections 3 and 4).
 *
 * The messages a search selects are read once for Message-ID, References, In-Reply-To, Subject
 * and Date; REFERENCES links them into containers by message id, prunes empty containers,
 * gathers roots with the same base subject, sorts siblings by date and prints the forest. */
#include "imap-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mime.h"

#define THREAD_ID_MAX 256
#define THREAD_REFS_MAX 64        /* references followed per message */
#define THREAD_DEPTH_MAX 256      /* reply chains deeper than this are cut: the printer and the
				   * sorter recurse once per level, and senders choose References */

struct tnode {
	char id[THREAD_ID_MAX];
	char subject[256];
	int is_reply;
	int64_t date;
	ssize_t msg;                  /* sequence index, -1 for an empty container */
	struct tnode *parent, *child, *next;
	struct tnode *hnext;          /* hash chain */
};

struct tctx {
	struct tnode **hash;
	size_t nhash;
	struct tnode **all;
	size_t nall, capall;
};

/* FNV-1a. */
static size_t thash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % n;
}

/* The container for a message id, created empty if new. */
static struct tnode *tget(struct tctx *t, const char *id)
{
	size_t h = thash(id, t->nhash);
	for (struct tnode *n = t->hash[h]; n; n = n->hnext)
		if (strcmp(n->id, id) == 0)
			return n;
	struct tnode *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	snprintf(n->id, sizeof(n->id), "%s", id);
	n->msg = -1;
	n->hnext = t->hash[h];
	t->hash[h] = n;
	if (t->nall == t->capall) {
		size_t nc = t->capall ? t->capall * 2 : 256;
		void *v = realloc(t->all, nc * sizeof(*t->all));
		if (v == NULL) {
			free(n);
			return NULL;
		}
		t->all = v;
		t->capall = nc;
	}
	t->all[t->nall++] = n;
	return n;
}

/* Is a an ancestor of b (or b itself)? */
static int tancestor(const struct tnode *a, const struct tnode *b)
{
	for (unsigned depth = 0; b && depth < 100000; b = b->parent, depth++)
		if (a == b)
			return 1;
	return 0;
}

/* Levels above n. */
static unsigned tdepth(const struct tnode *n)
{
	unsigned d = 0;
	for (; n->parent && d <= THREAD_DEPTH_MAX; n = n->parent)
		d++;
	return d;
}

/* Unlink n from its parent's children. */
static void tunlink(struct tnode *n)
{
	if (n->parent == NULL)
		return;
	struct tnode **pp = &n->parent->child;
	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp)
		*pp = n->next;
	n->next = NULL;
	n->parent = NULL;
}

/* Make c a child of p. */
static void tlink(struct tnode *p, struct tnode *c)
{
	tunlink(c);
	c->parent = p;
	c->next = p->child;
	p->child = c;
}

/* Next "<...>" message id in s; returns a pointer after it or NULL. */
static const char *next_id(const char *s, char *out, size_t outlen)
{
	const char *lt = strchr(s, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (gt == NULL || (size_t)(gt - lt + 1) >= outlen)
		return NULL;
	memcpy(out, lt, (size_t)(gt - lt + 1));
	out[gt - lt + 1] = '\0';
	return gt + 1;
}

/* The message that stands for a container when siblings are sorted: its own, or for an empty
 * container its first (already sorted) child's, RFC 5256 4.5.D / 2.2. */
static const struct tnode *trep(const struct tnode *n)
{
	while (n->msg < 0 && n->child)
		n = n->child;
	return n;
}

/* The date used to sort a container (its representative's sent date). */
static int64_t tdate(const struct tnode *n)
{
	n = trep(n);
	return n->msg >= 0 ? n->date : 0;
}

/* Sort a sibling list by date (then sequence), recursively. */
static struct tnode *tsort(struct tnode *list, unsigned depth)
{
	size_t n = 0;
	for (struct tnode *c = list; c; c = c->next)
		n++;
	if (n == 0)
		return NULL;
	struct tnode **v = calloc(n, sizeof(*v));
	if (v == NULL)
		return list;
	n = 0;
	for (struct tnode *c = list; c; c = c->next)
		v[n++] = c;
	/* children first: an empty container sorts by the date of its first child */
	for (size_t i = 0; i < n && depth < THREAD_DEPTH_MAX; i++)
		v[i]->child = tsort(v[i]->child, depth + 1);
	for (size_t i = 1; i < n; i++) {   /* insertion sort: sibling lists are short */
		struct tnode *x = v[i];
		size_t j = i;
		while (j > 0 && (tdate(v[j - 1]) > tdate(x) ||
				 (tdate(v[j - 1]) == tdate(x) && trep(v[j - 1])->msg > trep(x)->msg))) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
	for (size_t i = 0; i < n; i++)
		v[i]->next = i + 1 < n ? v[i + 1] : NULL;
	struct tnode *head = v[0];
	free(v);
	return head;
}

/* Print one container and its descendants. */
/* Linking stops THREAD_DEPTH_MAX levels down (step 1), so a deeper reply (only hostile or
 * broken References make one) starts a thread of its own and the depth test here never cuts. */
static void tprint(struct imap_session *s, const struct tnode *n, int uid, struct buf *out,
		   unsigned depth)
{
	if (n->msg >= 0) {
		buf_appendf(out, "%u", uid ? s->msgs[n->msg].uid : (uint32_t)(n->msg + 1));
		if (n->child && n->child->next == NULL) {
			if (depth < THREAD_DEPTH_MAX) {
				buf_appendstr(out, " ");
				tprint(s, n->child, uid, out, depth + 1);
			}
			return;
		}
	}
	if (n->child && depth < THREAD_DEPTH_MAX) {
		if (n->msg >= 0)
			buf_appendstr(out, " ");
		for (const struct tnode *c = n->child; c; c = c->next) {
			buf_appendstr(out, "(");
			tprint(s, c, uid, out, depth + 1);
			buf_appendstr(out, ")");
		}
	}
}

/* The thread subject of a root (RFC 5256 4.5.B.i): its own, or its first child's if empty. */
static const char *tsubject(const struct tnode *n)
{
	return n->msg >= 0 ? n->subject : n->child ? n->child->subject : "";
}

/* A root's slot in the subject table (open addressing; the table has room to spare). */
static struct tnode **tslot(struct tnode **tab, size_t ntab, const char *subject)
{
	size_t h = thash(subject, ntab);
	while (tab[h] && strcmp(tsubject(tab[h]), subject) != 0)
		h = (h + 1) % ntab;
	return &tab[h];
}

/* REFERENCES step 5 (RFC 5256 4.5): gather the roots that share a base subject. */
static void tgather(struct tctx *tc, struct tnode *root)
{
	size_t nroots = 0;
	for (struct tnode *c = root->child; c; c = c->next)
		nroots++;
	size_t ntab = nroots * 2 + 1;
	struct tnode **tab = calloc(ntab, sizeof(*tab));
	struct tnode **roots = calloc(nroots + 1, sizeof(*roots));
	if (tab == NULL || roots == NULL) {
		free(tab);
		free(roots);
		return;
	}
	nroots = 0;
	for (struct tnode *c = root->child; c; c = c->next)
		roots[nroots++] = c;
	/* B: one root per subject: a dummy wins over a message, a non-reply over a reply */
	for (size_t i = 0; i < nroots; i++) {
		struct tnode *c = roots[i];
		const char *sub = tsubject(c);
		if (sub[0] == '\0')
			continue;
		struct tnode **e = tslot(tab, ntab, sub);
		if (*e == NULL || ((*e)->msg >= 0 && (c->msg < 0 || ((*e)->is_reply && !c->is_reply))))
			*e = c;
	}
	/* C: merge the others into it */
	for (size_t i = 0; i < nroots; i++) {
		struct tnode *c = roots[i];
		const char *sub = tsubject(c);
		if (sub[0] == '\0')
			continue;
		struct tnode **e = tslot(tab, ntab, sub);
		struct tnode *t = *e;
		if (t == NULL || t == c)
			continue;
		if (t->msg < 0 && c->msg < 0) {
			while (c->child)          /* both dummies: the children become siblings */
				tlink(t, c->child);
			tunlink(c);               /* freed with the others (it is in t.all) */
		} else if (t->msg < 0 || (c->is_reply && !t->is_reply)) {
			tlink(t, c);
		} else {
			/* neither is a reply of the other: a new dummy parents both; it keeps the
			 * subject so later roots find it */
			char id[64];
			snprintf(id, sizeof(id), "<postino-subject-%zu@local>", i);
			struct tnode *d = tget(tc, id);   /* an empty container, freed with the rest */
			if (d == NULL)
				break;
			tlink(root, d);
			tlink(d, t);
			tlink(d, c);
			*e = d;
		}
	}
	free(tab);
	free(roots);
}

/* Read the threading headers of message i into a fresh container description. */
static void tread(struct imap_session *s, size_t i, struct store_header_cursor *hc, char *msgid,
		  size_t idlen, char *refs, size_t refslen, char *subject, int *is_reply,
		  int64_t *date)
{
	struct imap_msg *m = &s->msgs[i];
	msgid[0] = refs[0] = subject[0] = '\0';
	*is_reply = 0;
	*date = m->internaldate;
	char *hdr;
	size_t hl;
	if (imap_msg_header(s, i, hc, &hdr, &hl) < 0)
		return;
	const char *msg = hdr;
	struct buf v;
	buf_init(&v, 65536);
	if (mime_header_get(msg, hl, "Message-ID", &v) == 1 && v.data)
		next_id(v.data, msgid, idlen);
	buf_reset(&v);
	if (mime_header_get(msg, hl, "References", &v) == 1 && v.data)
		snprintf(refs, refslen, "%s", v.data);
	buf_reset(&v);
	if (refs[0] == '\0' && mime_header_get(msg, hl, "In-Reply-To", &v) == 1 && v.data)
		next_id(v.data, refs, refslen);
	buf_reset(&v);
	if (mime_header_get(msg, hl, "Subject", &v) == 1 && v.data) {
		struct buf d;
		buf_init(&d, 65536);
		mime_decode_words(v.data, v.len, &d);
		const char *sub = d.data ? d.data : v.data;
		imap_base_subject_ex(sub, subject, 256, is_reply);
		buf_free(&d);
	}
	buf_free(&v);
	*date = imap_sent_date(msg, hl, m->internaldate);
	free(hdr);
}

/* Step 1 of RFC 5256 REFERENCES (for ORDEREDSUBJECT: one node a message): a node for every
 * message of match and every id its References name, linked parent to child. */
static void thread_link(struct imap_session *s, struct tctx *t, const size_t *match, size_t nm,
			int refs_algo)
{
	struct store_header_cursor *hc = NULL;
	store_header_open(s->acct, s->box, &hc);
	int began = store_read_begin(s->acct);
	for (size_t k = 0; t->hash && k < nm; k++) {
		char msgid[THREAD_ID_MAX], refs[8192], subject[256];
		int is_reply;
		int64_t date;
		tread(s, match[k], hc, msgid, sizeof(msgid), refs, sizeof(refs), subject, &is_reply,
		      &date);
		if (!refs_algo)
			refs[0] = '\0';
		if (msgid[0] == '\0' || !refs_algo)   /* a unique id of our own */
			snprintf(msgid, sizeof(msgid), "<postino-%zu@local>", match[k]);
		struct tnode *c = tget(t, msgid);
		if (c == NULL)
			break;
		if (c->msg >= 0) {   /* duplicate Message-ID: treat as its own message */
			char uniq[THREAD_ID_MAX];
			snprintf(uniq, sizeof(uniq), "<postino-dup-%zu@local>", match[k]);
			c = tget(t, uniq);
			if (c == NULL)
				break;
		}
		c->msg = (ssize_t)match[k];
		c->date = date;
		c->is_reply = is_reply;
		snprintf(c->subject, sizeof(c->subject), "%s", subject);
		/* step 1A: chain the references */
		struct tnode *prev = NULL;
		const char *p = refs;
		char id[THREAD_ID_MAX];
		unsigned nrefs = 0;
		while (p && nrefs++ < THREAD_REFS_MAX && (p = next_id(p, id, sizeof(id))) != NULL) {
			struct tnode *r = tget(t, id);
			if (r == NULL)
				break;
			/* the depth test first: it bounds the ancestor walk after it */
			if (prev && r->parent == NULL && tdepth(prev) < THREAD_DEPTH_MAX &&
			    !tancestor(r, prev))
				tlink(prev, r);
			prev = r;
		}
		/* step 1B: the last reference is the parent; a parent guessed earlier from
		 * another message's References is dropped even when the new link would make a
		 * loop and is not made (as Dovecot does) */
		if (prev && prev != c && tdepth(prev) < THREAD_DEPTH_MAX && !tancestor(c, prev))
			tlink(prev, c);
		else if (c->parent && c->parent != prev)
			tunlink(c);
	}
	store_header_close(&hc);
	store_read_end(s->acct, began);
}

/* Steps 2 to 5: the root set, empty containers pruned, roots gathered by base subject
 * (ORDEREDSUBJECT: every message is a root, the first of a subject the parent of the rest),
 * sorted. */
static void thread_roots(struct tctx *t, struct tnode *root, int refs_algo)
{
	for (size_t k = 0; k < t->nall; k++)
		if (t->all[k]->parent == NULL)
			tlink(root, t->all[k]);
	/* step 3: prune empty containers (repeat until nothing changes) */
	for (int changed = 1; changed;) {
		changed = 0;
		for (size_t k = 0; k < t->nall; k++) {
			struct tnode *c = t->all[k];
			if (c->msg >= 0 || c->parent == NULL)
				continue;
			if (c->child == NULL) {
				tunlink(c);
				changed = 1;
			} else if (c->parent != root || c->child->next == NULL) {
				struct tnode *p = c->parent;
				while (c->child)
					tlink(p, c->child);
				tunlink(c);
				changed = 1;
			}
		}
	}
	/* step 4/5: gather roots by base subject */
	root->child = tsort(root->child, 0);
	if (refs_algo)
		tgather(t, root);
	for (struct tnode *a = refs_algo ? NULL : root->child; a; a = a->next) {
		/* messages without a subject form one thread too, as in Dovecot */
		const char *sa = a->msg >= 0 ? a->subject : a->child ? a->child->subject : "";
		for (struct tnode *b = a->next, *bn; b; b = bn) {
			bn = b->next;
			const char *sb = b->msg >= 0 ? b->subject : b->child ? b->child->subject : "";
			if (strcmp(sa, sb) != 0)
				continue;
			tlink(a, b);
		}
	}
	root->child = tsort(root->child, 0);
}

/* THREAD algorithm charset keys. */
void imap_cmd_thread(struct imap_session *s, const struct imap_arg *args, size_t n, int uid)
{
	if (n < 3 || args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, "Use THREAD algorithm charset search-keys");
		return;
	}
	int refs_algo;
	if (strcasecmp(args[0].str, "REFERENCES") == 0)
		refs_algo = 1;
	else if (strcasecmp(args[0].str, "ORDEREDSUBJECT") == 0)
		refs_algo = 0;
	else {
		imap_bad(s, "Unknown THREAD algorithm; use REFERENCES or ORDEREDSUBJECT");
		return;
	}
	if (strcasecmp(args[1].str, "UTF-8") != 0 && strcasecmp(args[1].str, "US-ASCII") != 0) {
		imap_tagged(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		return;
	}
	imap_sync_mailbox(s, 0);
	size_t *match, nm;
	const char *why;
	if (imap_search_match(s, args + 2, n - 2, &match, &nm, &why) < 0) {
		imap_bad(s, "%s", why);
		return;
	}
	struct tctx t = { calloc(4096, sizeof(struct tnode *)), 4096, NULL, 0, 0 };
	struct tnode root;
	memset(&root, 0, sizeof(root));
	root.msg = -1;
	thread_link(s, &t, match, nm, refs_algo);
	free(match);
	thread_roots(&t, &root, refs_algo);
	struct buf out;
	buf_init(&out, 64u << 20);
	buf_appendstr(&out, "* THREAD ");
	for (struct tnode *c = root.child; c; c = c->next) {
		buf_appendstr(&out, "(");
		tprint(s, c, uid, &out, 0);
		buf_appendstr(&out, ")");
	}
	buf_appendstr(&out, "\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
	for (size_t k = 0; k < t.nall; k++)
		free(t.all[k]);
	free(t.all);
	free(t.hash);
	imap_tagged(s, "OK", "%sTHREAD completed", uid ? "UID " : "");
}
