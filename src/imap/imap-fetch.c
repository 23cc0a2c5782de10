/* imap-fetch.c - FETCH (streamed: one message at a time while the socket takes it), STORE
 * (one index transaction and one MODSEQ per command), COPY and MOVE (UIDPLUS COPYUID). */
#include "imap-private.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap-quote.h"
#include "imap-seqset.h"
#include "log.h"
#include "mime.h"

/* See imap-private.h. */
void imap_condstore_enable(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = 1;
	if (s->st == IMAP_SELECTED)
		imap_reply(s, "* OK [HIGHESTMODSEQ %llu] Highest",
			   (unsigned long long)s->highestmodseq);
}

/* Messages selected by a set: indexes into s->msgs, in order. */
int imap_select_msgs(struct imap_session *s, const char *setstr, int uid, size_t **idx_r,
		     size_t *n_r)
{
	struct imap_seqset set;
	*idx_r = NULL;
	*n_r = 0;
	if (strcmp(setstr, "$") == 0) {
		size_t *v = calloc(s->nsearchres + 1, sizeof(*v));
		if (v == NULL)
			return -1;
		size_t k = 0;
		for (size_t j = 0; j < s->nsearchres; j++)
			for (size_t i = 0; i < s->nmsgs; i++)
				if (s->msgs[i].uid == s->searchres[j])
					v[k++] = i;
		*idx_r = v;
		*n_r = k;
		return 0;
	}
	uint32_t star = uid ? (s->nmsgs ? s->msgs[s->nmsgs - 1].uid : 0) : (uint32_t)s->nmsgs;
	if (imap_seqset_parse(setstr, star, &set) < 0)
		return -1;
	if (!uid && s->nmsgs == 0 && strcmp(setstr, "*") != 0) {
		/* sequence numbers into an empty mailbox are invalid */
	}
	size_t *v = calloc(s->nmsgs + 1, sizeof(*v));
	if (v == NULL) {
		imap_seqset_free(&set);
		return -1;
	}
	size_t k = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		if (imap_seqset_contains(&set, uid ? s->msgs[i].uid : (uint32_t)(i + 1)))
			v[k++] = i;
	imap_seqset_free(&set);
	*idx_r = v;
	*n_r = k;
	return 0;
}

enum fetch_kind {
	F_UID, F_FLAGS, F_INTERNALDATE, F_SIZE, F_ENVELOPE, F_BODYSTRUCTURE, F_BODY, F_SECTION,
	F_BINARY, F_BINARYSIZE, F_MODSEQ, F_SAVEDATE, F_RFC822, F_RFC822_HEADER, F_RFC822_TEXT
};

struct fetch_item {
	enum fetch_kind kind;
	int peek;
	char section[512];     /* inside [...] */
	int partial;
	uint64_t p_off, p_len;
	char label[600];       /* how the response names it */
};

struct fetch_ctx {
	size_t *idx;
	size_t n, pos;
	struct fetch_item *items;        /* FETCH_ITEMS_MAX of them, allocated as needed */
	size_t capitems;
	size_t nitems;
	int uid;
	int need_body;          /* some item needs the message (or its structure) */
	int need_file;          /* some item needs the message text itself */
	int need_full;          /* ... more of it than the top-level header section */
	int need_struct;        /* BODY or BODYSTRUCTURE: the cached structure serves them */
	struct store_header_cursor *hc;   /* cached header sections (opened on first need) */
	int hc_tried;
	uint64_t changedsince;
	struct buf out;
	/* the current message's response as segments: text in `out`, or views into `map` (large
	 * literals are sent straight from the mapped file, a slice at a time) */
	struct fetch_seg {
		const char *view;      /* NULL: text out.data[off .. off+len) */
		size_t off, len;
	} segs[160];
	size_t nsegs, seg, seg_done, text_mark;
	void *map;
	size_t maplen;
};

#define FETCH_ITEMS_MAX 64       /* data items in one FETCH */
#define FETCH_VIEW_MIN 65536     /* literals at least this big are not copied */
#define FETCH_SLICE 262144       /* written per turn from a view */
#define NUL_REPLACEMENT 0x80     /* stands for NUL in a plain literal (Dovecot does the same) */

/* Close the text segment that ends at the current end of f->out. */
static void seg_text(struct fetch_ctx *f)
{
	if (f->out.len > f->text_mark && f->nsegs < 160) {
		f->segs[f->nsegs].view = NULL;
		f->segs[f->nsegs].off = f->text_mark;
		f->segs[f->nsegs].len = f->out.len - f->text_mark;
		f->nsegs++;
	}
	f->text_mark = f->out.len;
}

/* A literal's data: big ones as a view into the mapped message, small ones copied. A plain
 * (non-literal8) literal never carries NUL (RFC 3501 4.3, RFC 3516 4.2): each NUL octet goes
 * out as 0x80, as Dovecot sends it; only BINARY[] answers use ~{n} with the octets as stored. */
static void put_literal(struct fetch_ctx *f, const char *p, size_t n, int binary, int mapped)
{
	buf_appendf(&f->out, "%s{%zu}\r\n", binary ? "~" : "", n);
	if (!binary && memchr(p, '\0', n) != NULL) {
		size_t start = f->out.len;
		buf_append(&f->out, p, n);
		for (size_t i = start; i < f->out.len; i++)
			if (f->out.data[i] == '\0')
				f->out.data[i] = (char)NUL_REPLACEMENT;
		return;
	}
	if (mapped && n >= FETCH_VIEW_MIN && f->nsegs + 2 < 160) {
		seg_text(f);
		f->segs[f->nsegs].view = p;
		f->segs[f->nsegs].off = 0;
		f->segs[f->nsegs].len = n;
		f->nsegs++;
		return;
	}
	buf_append(&f->out, p, n);
}

static void fetch_free(void *p)
{
	struct fetch_ctx *f = p;
	if (f->map)
		munmap(f->map, f->maplen);
	store_header_close(&f->hc);
	free(f->items);
	free(f->idx);
	buf_free(&f->out);
	free(f);
}

/* Parse "BODY[...]<a.b>" style atoms. -1 invalid. */
static int fetch_parse_section(const char *a, struct fetch_item *it, const char *prefix)
{
	const char *lb = strchr(a, '[');
	const char *rb = lb ? strchr(lb, ']') : NULL;
	if (lb == NULL || rb == NULL || (size_t)(rb - lb - 1) >= sizeof(it->section))
		return -1;
	memcpy(it->section, lb + 1, (size_t)(rb - lb - 1));
	it->section[rb - lb - 1] = '\0';
	const char *rest = rb + 1;
	if (*rest == '<') {
		unsigned long long o, l;
		char end;
		if (sscanf(rest, "<%llu.%llu%c", &o, &l, &end) != 3 || end != '>' || l == 0)
			return -1;
		it->partial = 1;
		it->p_off = o;
		it->p_len = l;
	} else if (*rest != '\0') {
		return -1;
	}
	snprintf(it->label, sizeof(it->label), "%s[%s]", prefix, it->section);
	if (it->partial)
		snprintf(it->label + strlen(it->label), sizeof(it->label) - strlen(it->label), "<%llu>",
			 (unsigned long long)it->p_off);
	return 0;
}

/* One fetch attribute. -1 invalid. */
static int fetch_parse_item(struct fetch_ctx *f, const char *a)
{
	if (f->nitems >= FETCH_ITEMS_MAX)
		return -1;
	if (f->nitems == f->capitems) {
		size_t nc = f->capitems ? f->capitems * 2 : 4;
		void *v = realloc(f->items, nc * sizeof(*f->items));
		if (v == NULL)
			return -1;
		f->items = v;
		f->capitems = nc;
	}
	struct fetch_item *it = &f->items[f->nitems];
	memset(it, 0, sizeof(*it));
	static const struct { const char *n; enum fetch_kind k; int body; } simple[] = {
		{ "UID", F_UID, 0 }, { "FLAGS", F_FLAGS, 0 }, { "INTERNALDATE", F_INTERNALDATE, 0 },
		{ "RFC822.SIZE", F_SIZE, 0 }, { "ENVELOPE", F_ENVELOPE, 1 },
		{ "BODYSTRUCTURE", F_BODYSTRUCTURE, 1 }, { "BODY", F_BODY, 1 },
		{ "MODSEQ", F_MODSEQ, 0 }, { "SAVEDATE", F_SAVEDATE, 0 },
		{ "RFC822", F_RFC822, 1 }, { "RFC822.HEADER", F_RFC822_HEADER, 1 },
		{ "RFC822.TEXT", F_RFC822_TEXT, 1 } };
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (strcasecmp(a, simple[i].n) == 0) {
			it->kind = simple[i].k;
			snprintf(it->label, sizeof(it->label), "%s", simple[i].n);
			f->need_body |= simple[i].body;
			f->need_file |= simple[i].body && it->kind != F_ENVELOPE &&
					it->kind != F_BODYSTRUCTURE && it->kind != F_BODY;
			f->need_full |= it->kind == F_RFC822 || it->kind == F_RFC822_TEXT;
			f->need_struct |= it->kind == F_BODYSTRUCTURE || it->kind == F_BODY;
			if (it->kind == F_RFC822_HEADER)
				it->peek = 1;
			f->nitems++;
			return 0;
		}
	}
	if (strncasecmp(a, "BODY[", 5) == 0 || strncasecmp(a, "BODY.PEEK[", 10) == 0) {
		it->kind = F_SECTION;
		it->peek = strncasecmp(a, "BODY.PEEK", 9) == 0;
		if (fetch_parse_section(a, it, "BODY") < 0)
			return -1;
	} else if (strncasecmp(a, "BINARY[", 7) == 0 || strncasecmp(a, "BINARY.PEEK[", 12) == 0) {
		it->kind = F_BINARY;
		it->peek = strncasecmp(a, "BINARY.PEEK", 11) == 0;
		if (fetch_parse_section(a, it, "BINARY") < 0)
			return -1;
	} else if (strncasecmp(a, "BINARY.SIZE[", 12) == 0) {
		it->kind = F_BINARYSIZE;
		if (fetch_parse_section(a, it, "BINARY.SIZE") < 0 || it->partial)
			return -1;
	} else {
		return -1;
	}
	f->need_body = 1;
	f->need_file = 1;
	if (it->kind != F_SECTION || strncasecmp(it->section, "HEADER", 6) != 0)
		f->need_full = 1;
	f->nitems++;
	return 0;
}

/* IMAP date-time of a time_t. */
void imap_date(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outlen, "%d-%b-%Y %H:%M:%S +0000", &tm);
}

/* The message one FETCH response is built from: the structure cached in the index, the header
 * section cached there, or the file (read when small, mapped when large). */
struct fetch_src {
	const char *msg;              /* the octets (the cached header section when need_body 3) */
	size_t len;
	void *map;                    /* msg as mapped from the file, or MAP_FAILED */
	char *copy;                   /* msg as read from the file, or NULL */
	int fd;                       /* the file, or -1 */
	struct store_structure sc;    /* ENVELOPE, BODY, BODYSTRUCTURE from the index (or empty) */
	struct mime_part *root;       /* the parsed MIME structure, once an item needs it */
};

/* Read message m's file into src: into memory when small, mapped when large. 0, or -1 if it
 * cannot be read (fetch_src_close releases what was opened either way). */
static int fetch_src_read(struct imap_session *s, const struct imap_msg *m, struct fetch_src *src)
{
	struct store_msg_info mi;
	const char *err;
	memset(&mi, 0, sizeof(mi));
	mi.uid = m->uid;
	mi.in_new = m->in_new;
	mi.flags = m->flags;
	snprintf(mi.filename, sizeof(mi.filename), "%s", m->fname);
	src->fd = store_message_fd(s->acct, s->box, &mi, &err);
	struct stat st;
	if (src->fd < 0 || fstat(src->fd, &st) < 0)
		return -1;
	src->len = (size_t)st.st_size;
	if (src->len > 0 && src->len < FETCH_VIEW_MIN) {
		/* small: read, cheaper than mmap + munmap (never sent as a view) */
		src->copy = malloc(src->len);
		ssize_t r = src->copy ? pread(src->fd, src->copy, src->len, 0) : -1;
		if (r < 0)
			return -1;
		src->len = (size_t)r;
		src->msg = src->copy;
	} else if (src->len > 0) {
		src->map = mmap(NULL, src->len, PROT_READ, MAP_PRIVATE, src->fd, 0);
		if (src->map == MAP_FAILED)
			return -1;
		src->msg = src->map;
	} else {
		src->msg = "";
	}
	return 0;
}

/* Open what the items of f need of message m, the cheapest way: the cached structure when no
 * item needs the text (f->need_body becomes 2), the cached header section when no item needs
 * more than that (3), else the file. 0, or -1 if the file cannot be read. */
static int fetch_src_open(struct imap_session *s, struct fetch_ctx *f, const struct imap_msg *m,
			  struct fetch_src *src)
{
	memset(src, 0, sizeof(*src));
	src->map = MAP_FAILED;
	src->fd = -1;
	if (f->need_body && !f->need_file &&
	    store_structure_get(s->acct, s->box, m->uid, &src->sc) == 1)
		f->need_body = 2;   /* structure from the cache: the file is not opened */
	if (f->need_body == 1 && !f->need_full &&
	    (!f->need_struct || store_structure_get(s->acct, s->box, m->uid, &src->sc) == 1)) {
		/* only the header section, and BODY/BODYSTRUCTURE from the cached structure: from
		 * the index's caches when they are there (imaptest's FETCH of BODYSTRUCTURE with
		 * HEADER.FIELDS read and parsed every message file for it) */
		if (!f->hc_tried) {
			f->hc_tried = 1;
			store_header_open(s->acct, s->box, &f->hc);
		}
		if (store_header_get(f->hc, m->uid, &src->msg, &src->len) == 1)
			f->need_body = 3;
	}
	if (f->need_body == 1)
		return fetch_src_read(s, m, src);
	return 0;
}

/* Release src once its response is built. A mapping that the response's views point into is
 * handed to f (unmapped once written); f->need_body is back at 1 for the next message. */
static void fetch_src_close(struct fetch_ctx *f, struct fetch_src *src)
{
	store_structure_free(&src->sc);
	free(src->copy);
	if (f->need_body >= 2)
		f->need_body = 1;
	if (src->root)
		mime_free(&src->root);
	int views = 0;
	for (size_t k = 0; k < f->nsegs; k++)
		views |= f->segs[k].view != NULL;
	if (src->map != MAP_FAILED && views) {
		f->map = src->map;
		f->maplen = src->len;
	} else if (src->map != MAP_FAILED) {
		munmap(src->map, src->len);
	}
	if (src->fd >= 0)
		close(src->fd);
}

/* 1 if item it is BODY[], BODY[TEXT] or BODY[HEADER]: cut from the text without parsing the
 * structure. */
static int fetch_item_top(const struct fetch_item *it)
{
	return it->kind == F_SECTION &&
	       (it->section[0] == '\0' || strcasecmp(it->section, "TEXT") == 0 ||
		strcasecmp(it->section, "HEADER") == 0);
}

/* Parse the MIME structure of src once some item needs it: a section or BINARY item that is
 * not top-level, or BODY/BODYSTRUCTURE when the index has no cached one. */
static void fetch_src_parse(struct fetch_src *src, const struct fetch_item *it)
{
	if (src->root != NULL || fetch_item_top(it))
		return;
	int structure = it->kind == F_BODYSTRUCTURE || it->kind == F_BODY;
	int section = it->kind == F_SECTION || it->kind == F_BINARY || it->kind == F_BINARYSIZE;
	if (section || (structure && src->sc.bodystructure == NULL))
		src->root = mime_parse(src->msg, src->len);
}

/* BODY[section]<partial>, BINARY[section]<partial> or BINARY.SIZE[section] of src into f->out
 * (tmp: scratch for a decoded part). 0, or -2 when BINARY meets a content transfer encoding
 * that it does not know. */
static int fetch_section(struct fetch_ctx *f, const struct fetch_item *it,
			 const struct fetch_src *src, struct buf *tmp)
{
	const char *msg = src->msg;
	size_t len = src->len;
	const char *data = "";
	size_t dlen = 0;
	buf_reset(tmp);
	int r;
	if (fetch_item_top(it)) {
		size_t hl = mime_header_len(msg, len);
		r = 0;
		data = strcasecmp(it->section, "TEXT") == 0 ? msg + hl : msg;
		dlen = it->section[0] == '\0' ? len :
		       strcasecmp(it->section, "TEXT") == 0 ? len - hl : hl;
	} else if (it->kind == F_SECTION) {
		r = src->root ? mime_section(src->root, msg, len, it->section, tmp, &data, &dlen)
			      : 1;
	} else {
		r = src->root ? mime_binary(src->root, msg, len, it->section, tmp) : -2;
		data = tmp->data ? tmp->data : "";
		dlen = tmp->len;
	}
	if (r == -1 && it->kind != F_SECTION)
		return -2;   /* unknown CTE */
	if (r != 0) {
		data = "";
		dlen = 0;
	}
	if (it->kind == F_BINARYSIZE) {
		buf_appendf(&f->out, "%s %zu", it->label, dlen);
		return 0;
	}
	if (it->partial) {
		if (it->p_off >= dlen) {
			data = "";
			dlen = 0;
		} else {
			data += it->p_off;
			dlen -= it->p_off;
			if (dlen > it->p_len)
				dlen = (size_t)it->p_len;
		}
	}
	buf_appendf(&f->out, "%s ", it->label);
	put_literal(f, data, dlen, it->kind == F_BINARY && memchr(data, '\0', dlen) != NULL,
		    len > 0 && data >= msg && data + dlen <= msg + len);
	return 0;
}

/* One data item of message m's response into f->out. 0, or -2 (unknown CTE). */
static int fetch_item(struct imap_session *s, struct fetch_ctx *f, const struct imap_msg *m,
		      const struct fetch_item *it, struct fetch_src *src, struct buf *tmp)
{
	struct buf *o = &f->out;
	const char *msg = src->msg;
	size_t len = src->len;
	char fl[1200], date[64];
	fetch_src_parse(src, it);
	switch (it->kind) {
	case F_UID:
		buf_appendf(o, "UID %u", m->uid);
		break;
	case F_FLAGS:
		buf_appendf(o, "FLAGS (%s)", imap_flags_text(s, imap_msg_flags(s, m), m->keywords,
							      fl, sizeof(fl)));
		break;
	case F_INTERNALDATE:
		imap_date(m->internaldate, date, sizeof(date));
		buf_appendf(o, "INTERNALDATE \"%s\"", date);
		break;
	case F_SAVEDATE:
		imap_date(m->savedate ? m->savedate : m->internaldate, date, sizeof(date));
		buf_appendf(o, "SAVEDATE \"%s\"", date);
		break;
	case F_SIZE:
		buf_appendf(o, "RFC822.SIZE %llu", (unsigned long long)m->size);
		break;
	case F_MODSEQ:
		buf_appendf(o, "MODSEQ (%llu)", (unsigned long long)m->modseq);
		break;
	case F_ENVELOPE:
		buf_appendstr(o, "ENVELOPE ");
		if (src->sc.envelope)
			buf_appendstr(o, src->sc.envelope);
		else
			mime_envelope(msg, mime_header_len(msg, len), o);
		break;
	case F_BODYSTRUCTURE:
	case F_BODY:
		buf_appendstr(o, it->kind == F_BODY ? "BODY " : "BODYSTRUCTURE ");
		if (src->sc.bodystructure)
			buf_appendstr(o, it->kind == F_BODY ? src->sc.body : src->sc.bodystructure);
		else if (src->root)
			mime_bodystructure(src->root, msg, it->kind == F_BODYSTRUCTURE, o);
		break;
	case F_RFC822:
	case F_RFC822_HEADER:
	case F_RFC822_TEXT: {
		size_t hl = mime_header_len(msg, len);
		buf_appendf(o, "%s ", it->label);
		if (it->kind == F_RFC822)
			put_literal(f, msg, len, 0, 1);
		else if (it->kind == F_RFC822_HEADER)
			put_literal(f, msg, hl, 0, 1);
		else
			put_literal(f, msg + hl, len - hl, 0, 1);
		break;
	}
	case F_SECTION:
	case F_BINARY:
	case F_BINARYSIZE:
		return fetch_section(f, it, src, tmp);
	}
	return 0;
}

/* The items of the response of message i into f->out, from src: "* i FETCH (...)", with the
 * UID that a UID FETCH adds. 0, or -2 (unknown CTE). */
static int fetch_items(struct imap_session *s, struct fetch_ctx *f, size_t i,
		       struct fetch_src *src)
{
	const struct imap_msg *m = &s->msgs[i];
	struct buf *o = &f->out;
	buf_appendf(o, "* %zu FETCH (", i + 1);
	int have_uid = 0, r = 0;
	struct buf tmp;
	buf_init(&tmp, 64u << 20);
	for (size_t k = 0; k < f->nitems && r == 0; k++) {
		if (k > 0)
			buf_appendstr(o, " ");
		have_uid |= f->items[k].kind == F_UID;
		r = fetch_item(s, f, m, &f->items[k], src, &tmp);
	}
	buf_free(&tmp);
	if (r < 0)
		return r;
	if (f->uid && !have_uid)
		buf_appendf(o, " UID %u", m->uid);
	buf_appendstr(o, ")\r\n");
	seg_text(f);
	return 0;
}

/* Build the FETCH response of one message into f->out. -1 when the message cannot be read, -2
 * for an unknown content transfer encoding. */
static int fetch_one(struct imap_session *s, struct fetch_ctx *f, size_t i)
{
	struct fetch_src src;
	int r = fetch_src_open(s, f, &s->msgs[i], &src);
	if (r == 0)
		r = fetch_items(s, f, i, &src);
	fetch_src_close(f, &src);
	return r;
}

static int fetch_resume_txn(struct imap_session *s);

/* Produce FETCH responses until the socket is full; 1 when all are out. The index lookups of
 * one turn share a read transaction. */
static int fetch_resume(struct imap_session *s)
{
	int began = store_read_begin(s->acct);
	int r = fetch_resume_txn(s);
	store_read_end(s->acct, began);
	return r;
}

static int fetch_resume_txn(struct imap_session *s)
{
	struct fetch_ctx *f = s->cmd_ctx;
	for (;;) {
		/* first finish the message in progress */
		while (f->seg < f->nsegs) {
			if (conn_out_pending(&s->conn) > IMAP_OUT_HIWAT)
				return 0;
			struct fetch_seg *g = &f->segs[f->seg];
			size_t left = g->len - f->seg_done;
			size_t take = g->view && left > FETCH_SLICE ? FETCH_SLICE : left;
			imap_write(s, (g->view ? g->view : f->out.data + g->off) + f->seg_done, take);
			f->seg_done += take;
			if (f->seg_done == g->len) {
				f->seg++;
				f->seg_done = 0;
			}
		}
		if (f->map) {
			munmap(f->map, f->maplen);
			f->map = NULL;
		}
		if (f->pos >= f->n || s->base.closing)
			break;
		if (conn_out_pending(&s->conn) > IMAP_OUT_HIWAT)
			return 0;
		f->nsegs = f->seg = f->seg_done = f->text_mark = 0;
		size_t i = f->idx[f->pos++];
		if (i >= s->nmsgs)
			continue;
		if (f->changedsince && s->msgs[i].modseq <= f->changedsince)
			continue;
		buf_reset(&f->out);
		int r = fetch_one(s, f, i);
		if (r == -2) {
			imap_tagged(s, "NO", "[UNKNOWN-CTE] Unknown content transfer encoding");
			return 1;
		}
		if (r < 0) {
			f->nsegs = 0;
			continue;   /* expunged underneath us: skip, as Dovecot does */
		}
	}
	imap_tagged(s, "OK", "%sFETCH completed", f->uid ? "UID " : "");
	return 1;
}

struct vanished_ctx {
	struct imap_seqset set;
	struct buf out;
};

static void vanished_cb(void *ctx, uint32_t uid)
{
	struct vanished_ctx *v = ctx;
	if (imap_seqset_contains(&v->set, uid))
		buf_appendf(&v->out, v->out.len ? ",%u" : "%u", uid);
}

static void ignore_msg(void *ctx, const struct store_msg_info *m)
{
	(void)ctx;
	(void)m;
}

/* UID FETCH ... (CHANGEDSINCE n VANISHED): the UIDs of the set expunged since n. */
static void imap_fetch_vanished(struct imap_session *s, const char *set, uint64_t since)
{
	struct vanished_ctx v;
	const char *err;
	if (imap_seqset_parse(set, UINT32_MAX, &v.set) != 0)
		return;
	buf_init(&v.out, 4 << 20);
	store_changes_since(s->acct, s->box, since, ignore_msg, vanished_cb, &v, &err);
	if (v.out.len)
		imap_reply(s, "* VANISHED (EARLIER) %s", v.out.data);
	buf_free(&v.out);
	imap_seqset_free(&v.set);
}

/* The FETCH output starts (resumed while the socket takes it). */
static void fetch_start(struct imap_session *s, struct fetch_ctx *f)
{
	s->cmd_ctx = f;
	s->cmd_free = fetch_free;
	s->resume = fetch_resume;
}

/* The session's copy of a message takes what a flag transaction left in the index; the answer
 * is whether the flags the session knew changed. */
static int msg_take_flags(struct imap_msg *m, const struct store_flag_change *c)
{
	int changed = m->flags != c->flags || m->keywords != c->keywords;
	m->flags = c->flags;
	m->keywords = c->keywords;
	if (c->modseq > m->modseq)
		m->modseq = c->modseq;
	if (c->result == 1)
		m->in_new = 0;
	return changed;
}

/* What a flag transaction committed at `modseq` does to the session's HIGHESTMODSEQ: it moves
 * only when no other session's change lies between (those are reported by the next sync). */
static void session_saw_modseq(struct imap_session *s, uint64_t modseq)
{
	if (modseq == s->highestmodseq + 1)
		s->highestmodseq = modseq;
}

struct seen_job {
	struct imap_wjob job;
	char box[1024];
	struct fetch_ctx *f;
	struct store_flag_change *ch;
	size_t nch;
	uint64_t modseq;
	int rc;
};

/* Pool: \Seen on the fetched messages that lacked it. */
static void seen_work(struct imap_wjob *w)
{
	struct seen_job *j = (struct seen_job *)w;
	const char *err;
	j->rc = store_set_flags(w->acct, j->box, j->ch, j->nch, &j->modseq, &err);
	if (j->rc < 0)
		imap_wjob_error(w, err);
}

/* Loop: the flags into the table (FETCH then shows them), and the output starts. A failure
 * leaves the flags as they were; the bodies are still sent. */
static void seen_done(struct imap_wjob *w)
{
	struct seen_job *j = (struct seen_job *)w;
	struct imap_session *s = w->s;
	struct fetch_ctx *f = j->f;
	if (!j->job.no_handle && j->rc == 0) {
		session_saw_modseq(s, j->modseq);
		for (size_t k = 0, c = 0; k < f->n && c < j->nch; k++) {
			struct imap_msg *m = &s->msgs[f->idx[k]];
			if (m->uid != j->ch[c].uid)
				continue;
			if (j->ch[c].result >= 0)
				msg_take_flags(m, &j->ch[c]);
			c++;
		}
		int have = 0;
		for (size_t k = 0; k < f->nitems; k++)
			have |= f->items[k].kind == F_FLAGS;
		if (!have)
			fetch_parse_item(f, "FLAGS");
	} else {
		log_warn("sess=%016llx proto=imap event=seen-failed error=\"%s\"",
			 (unsigned long long)s->base.id, w->err ? w->err : "?");
	}
	free(j->ch);
	fetch_start(s, f);
}

/* The data items of FETCH (an atom, a list of atoms, or the macros ALL, FAST, FULL) into f.
 * 1 if valid, else 0. */
static int fetch_parse_items(struct fetch_ctx *f, const struct imap_arg *items)
{
	if (items->type == IMAP_ARG_LIST) {
		for (size_t i = 0; i < items->nlist; i++)
			if (items->list[i].type != IMAP_ARG_ATOM ||
			    fetch_parse_item(f, items->list[i].str) != 0)
				return 0;
		return 1;
	}
	if (items->type != IMAP_ARG_ATOM)
		return 0;
	const char *a = items->str;
	if (strcasecmp(a, "ALL") == 0)
		return !fetch_parse_item(f, "FLAGS") && !fetch_parse_item(f, "INTERNALDATE") &&
		       !fetch_parse_item(f, "RFC822.SIZE") && !fetch_parse_item(f, "ENVELOPE");
	if (strcasecmp(a, "FAST") == 0)
		return !fetch_parse_item(f, "FLAGS") && !fetch_parse_item(f, "INTERNALDATE") &&
		       !fetch_parse_item(f, "RFC822.SIZE");
	if (strcasecmp(a, "FULL") == 0)
		return !fetch_parse_item(f, "FLAGS") && !fetch_parse_item(f, "INTERNALDATE") &&
		       !fetch_parse_item(f, "RFC822.SIZE") && !fetch_parse_item(f, "ENVELOPE") &&
		       !fetch_parse_item(f, "BODY");
	return fetch_parse_item(f, a) == 0;
}

/* The modifier list of FETCH (mods): CHANGEDSINCE n [VANISHED] (RFC 7162; CHANGEDSINCE turns
 * CONDSTORE on and adds MODSEQ), PARTIAL range (RFC 9394 3.3). *vanished_r and *partial are
 * set as found. 1 if valid, else 0. */
static int fetch_parse_modifiers(struct imap_session *s, struct fetch_ctx *f,
				 const struct imap_arg *mods, int uid, int *vanished_r,
				 struct imap_search_ret *partial)
{
	const struct imap_arg *md = mods->list;
	int changedsince = 0;
	for (size_t k = 0; k < mods->nlist; k++) {
		if (md[k].type != IMAP_ARG_ATOM) {
			return 0;
		} else if (strcasecmp(md[k].str, "CHANGEDSINCE") == 0 && k + 1 < mods->nlist &&
			   md[k + 1].type == IMAP_ARG_ATOM && md[k + 1].str[0] >= '0' &&
			   md[k + 1].str[0] <= '9') {
			f->changedsince = strtoull(md[++k].str, NULL, 10);
			changedsince = 1;
			imap_condstore_enable(s);
			fetch_parse_item(f, "MODSEQ");
		} else if (strcasecmp(md[k].str, "VANISHED") == 0) {
			*vanished_r = 1;
		} else if (strcasecmp(md[k].str, "PARTIAL") == 0 && k + 1 < mods->nlist &&
			   !partial->partial) {
			struct imap_arg one[2] = { md[k], md[k + 1] };
			struct imap_arg lst = { .type = IMAP_ARG_LIST, .str = "", .list = one,
						.nlist = 2 };
			const char *why;
			if (imap_search_ret_parse(&lst, 1, partial, &why) != 0)
				return 0;
			k++;
		} else {
			return 0;
		}
	}
	/* RFC 7162 3.2.6: VANISHED needs CHANGEDSINCE, UID FETCH and QRESYNC enabled */
	return !(*vanished_r && (!uid || !s->qresync || !changedsince));
}

/* MODSEQ in the items turns CONDSTORE on (RFC 7162 3.1); once it is on, every FETCH response
 * carries MODSEQ. */
static void fetch_condstore(struct imap_session *s, struct fetch_ctx *f)
{
	int have = 0;
	for (size_t k = 0; k < f->nitems; k++)
		have |= f->items[k].kind == F_MODSEQ;
	if (have)
		imap_condstore_enable(s);
	else if (s->condstore)
		fetch_parse_item(f, "MODSEQ");
}

/* PARTIAL range (RFC 9394 3.3): keep the slice of the selected messages (those CHANGEDSINCE
 * passes) that the range counts. */
static void fetch_partial(struct imap_session *s, struct fetch_ctx *f,
			  const struct imap_search_ret *partial)
{
	size_t kept = 0, first, np;
	for (size_t j = 0; j < f->n; j++)
		if (!f->changedsince || s->msgs[f->idx[j]].modseq > f->changedsince)
			f->idx[kept++] = f->idx[j];
	imap_partial_slice(partial, kept, &first, &np);
	memmove(f->idx, f->idx + first, np * sizeof(*f->idx));
	f->n = np;
}

/* The \Seen that non-PEEK body fetches set, as one job for the pool: the selected messages
 * that lack it. NULL when there are none (or the mailbox is read-only, or memory ran out). */
static struct seen_job *fetch_seen_job(struct imap_session *s, const struct fetch_ctx *f)
{
	int sets_seen = 0;
	for (size_t k = 0; k < f->nitems; k++)
		if ((f->items[k].kind == F_SECTION || f->items[k].kind == F_BINARY ||
		     f->items[k].kind == F_RFC822 || f->items[k].kind == F_RFC822_TEXT) &&
		    !f->items[k].peek)
			sets_seen = 1;
	if (!sets_seen || s->readonly)
		return NULL;
	struct seen_job *j = calloc(1, sizeof(*j));
	if (j != NULL)
		j->ch = calloc(f->n + 1, sizeof(*j->ch));
	if (j == NULL || j->ch == NULL) {
		free(j);
		return NULL;
	}
	for (size_t k = 0; k < f->n; k++) {
		struct imap_msg *m = &s->msgs[f->idx[k]];
		if (m->flags & STORE_F_SEEN)
			continue;
		j->ch[j->nch].uid = m->uid;
		j->ch[j->nch].flags = STORE_F_SEEN;
		j->ch[j->nch].mode = STORE_FLAGS_ADD;
		j->nch++;
	}
	if (j->nch == 0) {
		free(j->ch);
		free(j);
		return NULL;
	}
	return j;
}

/* FETCH sequence-set items [(modifiers)]: parse, select the messages, set \Seen on the pool
 * when needed, then produce the responses (fetch_resume). */
void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args, size_t n, int uid)
{
	if (n < 2 || args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, "Use FETCH sequence-set items");
		return;
	}
	struct fetch_ctx *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	buf_init(&f->out, 128u << 20);
	f->uid = uid;
	int ok = fetch_parse_items(f, &args[1]);
	int vanished = 0;
	struct imap_search_ret partial = { 0 };
	if (ok && n == 3 && args[2].type == IMAP_ARG_LIST && args[2].nlist >= 1)
		ok = fetch_parse_modifiers(s, f, &args[2], uid, &vanished, &partial);
	else if (n != 2)
		ok = 0;
	if (!ok) {
		fetch_free(f);
		imap_bad(s, "Invalid FETCH item");
		return;
	}
	fetch_condstore(s, f);
	imap_sync_mailbox(s, 0);
	if (vanished)
		imap_fetch_vanished(s, args[0].str, f->changedsince);
	if (imap_select_msgs(s, args[0].str, uid, &f->idx, &f->n) < 0) {
		fetch_free(f);
		imap_bad(s, "Invalid sequence set");
		return;
	}
	if (partial.partial)
		fetch_partial(s, f, &partial);
	struct seen_job *j = fetch_seen_job(s, f);
	if (j != NULL) {
		j->f = f;
		snprintf(j->box, sizeof(j->box), "%s", s->box);
		imap_write_job(s, &j->job, seen_work, seen_done);
		return;
	}
	fetch_start(s, f);
}

struct store_job {
	struct imap_wjob job;
	char box[1024];
	const struct imap_arg *fl;     /* the flag list (or one flag), in the parser */
	int uid, silent, mode;
	uint64_t unchangedsince;       /* 0: none */
	size_t *idx, ni;               /* the selected messages (indexes into s->msgs) */
	struct store_flag_change *ch;  /* the changes; uid 0: left out (UNCHANGEDSINCE) */
	uint64_t modseq;
	int rc;
	char modified[2048];
	struct imap_kwnames kw;
};

/* Pool: the keywords (created), then one transaction that applies the change to the flags the
 * index holds (not to the session's copy, which another session may have changed since). */
static void store_work(struct imap_wjob *w)
{
	struct store_job *j = (struct store_job *)w;
	const char *err;
	unsigned flags;
	uint64_t kw;
	const struct imap_arg *fl = j->fl;
	int bad = fl->type == IMAP_ARG_LIST ?
			  imap_flags_resolve(w->acct, fl->list, fl->nlist, &flags, &kw, &j->kw) :
			  imap_flags_resolve(w->acct, fl, 1, &flags, &kw, &j->kw);
	if (bad < 0) {
		imap_wjob_error(w, "invalid flag");   /* checked before: cannot happen */
		j->rc = -1;
		return;
	}
	for (size_t k = 0; k < j->ni; k++) {
		j->ch[k].flags = flags;
		j->ch[k].keywords = kw;
		j->ch[k].mode = j->mode;
		j->ch[k].unchangedsince = j->unchangedsince;
	}
	j->rc = store_set_flags(w->acct, j->box, j->ch, j->ni, &j->modseq, &err);
	if (j->rc < 0)
		imap_wjob_error(w, err);
}

/* Loop: the new flags into the table, FETCH responses, the tagged answer. */
static void store_done(struct imap_wjob *w)
{
	struct store_job *j = (struct store_job *)w;
	struct imap_session *s = w->s;
	imap_keywords_learn(s, &j->kw);
	if (imap_wjob_failed(w, "STORE"))
		goto out;
	if (j->rc < 0) {
		log_warn("sess=%016llx proto=imap event=store-failed error=\"%s\"",
			 (unsigned long long)s->base.id, w->err ? w->err : "?");
		imap_tagged(s, "NO", "[UNAVAILABLE] Could not store the flags; please try again");
		goto out;
	}
	imap_announce_keywords(s);   /* a keyword used for the first time */
	for (size_t k = 0; k < j->ni; k++) {
		const struct store_flag_change *c = &j->ch[k];
		struct imap_msg *m = &s->msgs[j->idx[k]];
		if (c->uid != m->uid || c->result == -1)   /* uid 0: left out (UNCHANGEDSINCE) */
			continue;
		if (c->result == -2) {   /* RFC 7162 3.1.3: changed meanwhile, by another session */
			size_t l = strlen(j->modified);
			snprintf(j->modified + l, sizeof(j->modified) - l, "%s%u", l ? "," : "",
				 j->uid ? m->uid : (uint32_t)(j->idx[k] + 1));
		}
		int changed = msg_take_flags(m, c) || c->result == 1;
		if (j->silent && !(s->condstore && changed))
			continue;
		char ft[1200];
		char extra[64] = "";
		if (s->condstore)
			snprintf(extra, sizeof(extra), " MODSEQ (%llu)", (unsigned long long)m->modseq);
		if (j->uid || s->qresync)   /* RFC 7162 3.2.4: with QRESYNC, FETCH carries UID */
			imap_reply(s, "* %zu FETCH (UID %u FLAGS (%s)%s)", j->idx[k] + 1, m->uid,
				   imap_flags_text(s, imap_msg_flags(s, m), m->keywords, ft,
						   sizeof(ft)), extra);
		else
			imap_reply(s, "* %zu FETCH (FLAGS (%s)%s)", j->idx[k] + 1,
				   imap_flags_text(s, imap_msg_flags(s, m), m->keywords, ft,
						   sizeof(ft)), extra);
	}
	session_saw_modseq(s, j->modseq);
	if (j->modified[0])
		imap_tagged(s, "OK", "[MODIFIED %s] Conditional STORE failed for some", j->modified);
	else
		imap_tagged(s, "OK", "%sSTORE completed", j->uid ? "UID " : "");
out:
	free(j->idx);
	free(j->ch);
}

/* A flag change waits for no disk (store_set_flags: synchronous=NORMAL), so it is made here,
 * on the loop's handle, when the index's write lock is free at once and every keyword exists:
 * the hand-off to a pool thread and back cost more than the change. 1 if done (answered). */
static int store_inline(struct imap_session *s, struct store_job *j)
{
	unsigned flags;
	uint64_t kw;
	const struct imap_arg *fl = j->fl;
	int r = fl->type == IMAP_ARG_LIST ?
			imap_flags_lookup(s->acct, fl->list, fl->nlist, &flags, &kw, &j->kw) :
			imap_flags_lookup(s->acct, fl, 1, &flags, &kw, &j->kw);
	if (r != 0)
		return 0;   /* a keyword to create (or the pool's answer to a bad flag) */
	for (size_t k = 0; k < j->ni; k++) {
		j->ch[k].flags = flags;
		j->ch[k].keywords = kw;
		j->ch[k].mode = j->mode;
		j->ch[k].unchangedsince = j->unchangedsince;
	}
	const char *err;
	j->rc = store_set_flags_nowait(s->acct, j->box, j->ch, j->ni, &j->modseq, &err);
	if (j->rc == STORE_WOULD_WAIT) {
		memset(&j->kw, 0, sizeof(j->kw));
		return 0;
	}
	j->job.s = s;
	if (j->rc < 0)
		imap_wjob_error(&j->job, err);
	store_done(&j->job);
	free(j);
	return 1;
}

/* STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] (flags): checked here, written here when
 * that cannot wait (store_inline), else on the pool (the table of the selected mailbox does not
 * change while the session waits). */
void imap_cmd_store(struct imap_session *s, const struct imap_arg *args, size_t n, int uid)
{
	size_t a = 1;
	uint64_t unchangedsince = UINT64_MAX;
	if (n >= 4 && args[1].type == IMAP_ARG_LIST && args[1].nlist == 2 &&
	    strcasecmp(args[1].list[0].str, "UNCHANGEDSINCE") == 0) {
		unchangedsince = strtoull(args[1].list[1].str, NULL, 10);
		imap_condstore_enable(s);
		a = 2;
	}
	if (n != a + 2 || args[0].type != IMAP_ARG_ATOM || args[a].type != IMAP_ARG_ATOM) {
		imap_bad(s, "Use STORE sequence-set [+|-]FLAGS[.SILENT] (flags)");
		return;
	}
	if (s->readonly) {
		imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	const char *op = args[a].str;
	int mode = op[0] == '+' ? 1 : op[0] == '-' ? -1 : 0;
	const char *what = mode ? op + 1 : op;
	int silent = 0;
	if (strcasecmp(what, "FLAGS.SILENT") == 0)
		silent = 1;
	else if (strcasecmp(what, "FLAGS") != 0) {
		imap_bad(s, "Use FLAGS, +FLAGS or -FLAGS");
		return;
	}
	const struct imap_arg *fl = &args[a + 1];
	if (fl->type == IMAP_ARG_LIST ? imap_flags_valid(fl->list, fl->nlist) < 0
				      : imap_flags_valid(fl, 1) < 0) {
		imap_bad(s, "Invalid flag");
		return;
	}
	imap_sync_mailbox(s, 0);
	size_t *idx, ni;
	if (imap_select_msgs(s, args[0].str, uid, &idx, &ni) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	struct store_job *j = calloc(1, sizeof(*j));
	struct store_flag_change *ch = calloc(ni + 1, sizeof(*ch));
	if (j == NULL || ch == NULL) {
		free(j);
		free(ch);
		free(idx);
		imap_tagged(s, "NO", "[UNAVAILABLE] Could not store the flags; please try again");
		return;
	}
	for (size_t k = 0; k < ni; k++) {
		struct imap_msg *m = &s->msgs[idx[k]];
		if (m->modseq > unchangedsince) {
			size_t l = strlen(j->modified);
			snprintf(j->modified + l, sizeof(j->modified) - l, "%s%u", l ? "," : "",
				 uid ? m->uid : (uint32_t)(idx[k] + 1));
			continue;
		}
		ch[k].uid = m->uid;
	}
	snprintf(j->box, sizeof(j->box), "%s", s->box);
	j->fl = fl;
	j->uid = uid;
	j->silent = silent;
	j->mode = mode > 0 ? STORE_FLAGS_ADD : mode < 0 ? STORE_FLAGS_REMOVE : STORE_FLAGS_SET;
	j->unchangedsince = unchangedsince == UINT64_MAX ? 0 : unchangedsince;
	j->idx = idx;
	j->ni = ni;
	j->ch = ch;
	if (store_inline(s, j))
		return;
	imap_write_job(s, &j->job, store_work, store_done);
}

/* Append "a:b,c" for a sorted array. */
static void uidset_text(const uint32_t *v, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (i)
			buf_appendstr(out, ",");
		if (j > i)
			buf_appendf(out, "%u:%u", v[i], v[j]);
		else
			buf_appendf(out, "%u", v[i]);
		i = j + 1;
	}
}

struct copy_job {
	struct imap_wjob job;
	char src[1024], dst[1024];
	int uid, move;
	uint32_t *uids, *new_uids;     /* [n] */
	size_t n;
	uint32_t *sa, *da;             /* [n]: the copied ones (COPYUID) */
	size_t k;
	uint32_t uidvalidity;
	int rc;                        /* 0, -1 copy failed, -2 MOVE's expunge failed */
};

/* Pool: copy, and for MOVE remove the originals that were copied. */
static void copy_work(struct imap_wjob *w)
{
	struct copy_job *j = (struct copy_job *)w;
	const char *err;
	if (store_copy(w->acct, j->src, j->uids, j->n, j->dst, j->new_uids, &j->uidvalidity,
		       &err) < 0) {
		imap_wjob_error(w, err);
		j->rc = -1;
		return;
	}
	for (size_t i = 0; i < j->n; i++)
		if (j->new_uids[i]) {
			j->sa[j->k] = j->uids[i];
			j->da[j->k] = j->new_uids[i];
			j->k++;
		}
	if (j->move && j->k > 0 && store_expunge(w->acct, j->src, j->sa, j->k, &err) < 0) {
		imap_wjob_error(w, err);
		j->rc = -2;
	}
}

/* Loop: COPYUID and the answer. */
static void copy_done(struct imap_wjob *w)
{
	struct copy_job *j = (struct copy_job *)w;
	struct imap_session *s = w->s;
	const char *cmd = j->move ? "MOVE" : "COPY";
	struct buf a, b;
	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	if (imap_wjob_failed(w, cmd))
		goto out;
	if (j->rc < 0)
		log_warn("sess=%016llx proto=imap event=copy-failed error=\"%s\"",
			 (unsigned long long)s->base.id, w->err ? w->err : "?");
	if (j->rc == -1) {
		imap_tagged(s, "NO", "[UNAVAILABLE] %s failed; nothing was changed", cmd);
		goto out;
	}
	if (j->rc == -2) {
		imap_tagged(s, "NO", "[UNAVAILABLE] MOVE could not remove the originals");
		goto out;
	}
	if (j->k > 0) {
		uidset_text(j->sa, j->k, &a);
		uidset_text(j->da, j->k, &b);
	}
	if (j->move && j->k > 0) {
		imap_reply(s, "* OK [COPYUID %u %s %s] Moved", j->uidvalidity, a.data, b.data);
		imap_sync_mailbox(s, 1);
		imap_tagged(s, "OK", "%sMOVE completed", j->uid ? "UID " : "");
	} else if (j->k > 0) {
		imap_tagged(s, "OK", "[COPYUID %u %s %s] %sCOPY completed", j->uidvalidity, a.data,
			    b.data, j->uid ? "UID " : "");
	} else {
		imap_tagged(s, "OK", "%s%s completed (nothing matched)", j->uid ? "UID " : "", cmd);
	}
out:
	buf_free(&a);
	buf_free(&b);
	free(j->uids);
	free(j->new_uids);
	free(j->sa);
	free(j->da);
}

/* COPY / MOVE set mailbox: checked here, done on the pool. */
void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args, size_t n, int uid,
		   int move)
{
	char box[1024];
	const char *err;
	if (n != 2 || args[0].type != IMAP_ARG_ATOM ||
	    imap_mailbox_arg(s, &args[1], box, sizeof(box)) < 0) {
		imap_bad(s, "Use %s sequence-set mailbox", move ? "MOVE" : "COPY");
		return;
	}
	if (move && s->readonly) {
		imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	struct store_mailbox_info mb;
	if (store_mailbox_get(s->acct, box, &mb, &err) != 1) {
		imap_tagged(s, "NO", "[TRYCREATE] No mailbox named %.200s", box);
		return;
	}
	size_t *idx, ni;
	if (imap_select_msgs(s, args[0].str, uid, &idx, &ni) < 0) {
		imap_bad(s, "Invalid sequence set");
		return;
	}
	uint64_t more = 0;
	for (size_t j = 0; j < ni; j++)
		more += s->msgs[idx[j]].size;
	if (!move && imap_over_quota(s, more)) {
		free(idx);
		return;
	}
	struct copy_job *j = calloc(1, sizeof(*j));
	if (j != NULL) {
		j->uids = calloc(ni + 1, sizeof(*j->uids));
		j->new_uids = calloc(ni + 1, sizeof(*j->new_uids));
		j->sa = calloc(ni + 1, sizeof(*j->sa));
		j->da = calloc(ni + 1, sizeof(*j->da));
	}
	if (j == NULL || !j->uids || !j->new_uids || !j->sa || !j->da) {
		if (j) {
			free(j->uids);
			free(j->new_uids);
			free(j->sa);
			free(j->da);
		}
		free(j);
		free(idx);
		imap_tagged(s, "NO", "[UNAVAILABLE] %s failed; nothing was changed",
			    move ? "MOVE" : "COPY");
		return;
	}
	for (size_t k = 0; k < ni; k++)
		j->uids[k] = s->msgs[idx[k]].uid;
	free(idx);
	j->n = ni;
	j->uid = uid;
	j->move = move;
	snprintf(j->src, sizeof(j->src), "%s", s->box);
	snprintf(j->dst, sizeof(j->dst), "%s", box);
	imap_write_job(s, &j->job, copy_work, copy_done);
}
