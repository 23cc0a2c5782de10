/* imap-search.c - SEARCH and UID SEARCH (RFC 9051 6.4.4) with ESEARCH RETURN options and
 * SEARCHRES. The keys are compiled into a tree once, then evaluated per message; message text is
 * mapped only when a text key needs it. Matching of strings is a case-insensitive substring test
 * (RFC 5051 i;unicode-casemap, casefold.c) over RFC 2047-decoded header values (UTF-8) and the
 * body text, raw and transfer-decoded. */
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

#include "addr.h"
#include "casefold.h"
#include "header.h"
#include "imap-seqset.h"
#include "mime.h"

#define SEARCH_DEPTH_MAX 1000    /* nested NOT/OR/() before we call it too complex */
#define SEARCH_NODES_MAX 20000
/* the answer when they run out: the keys are valid, there are just too many of them */
#define SEARCH_TOO_MANY "Search is too complex (too many keys)"

enum skey {
	K_ALL, K_FLAG, K_NOTFLAG, K_KEYWORD, K_UNKEYWORD, K_HEADER, K_BODY, K_TEXT, K_LARGER,
	K_SMALLER, K_BEFORE, K_ON, K_SINCE, K_SENTBEFORE, K_SENTON, K_SENTSINCE, K_UID, K_SEQ,
	K_NOT, K_OR, K_AND, K_MODSEQ, K_OLDER, K_YOUNGER, K_NONE, K_SAVEDBEFORE, K_SAVEDON,
	K_SAVEDSINCE, K_RECENT, K_NEW, K_OLD
};

struct snode {
	enum skey k;
	unsigned flag;
	int kw;                  /* keyword id, -1 unknown (never matches) */
	char hdr[64];
	const char *str;
	char *fold;              /* str folded (casefold_dup) for HEADER, BODY, TEXT */
	uint64_t num;
	time_t day;
	struct imap_seqset set;
	int has_set;
	int a, b;                /* children (node indexes) */
};

struct search {
	struct imap_session *s;
	struct snode *nodes;
	size_t n;
	int need_text;
	const char *err;
	struct store_header_cursor *hc;   /* cached header sections (opened on first need) */
	int hc_tried;
	size_t cap;             /* nodes allocated */
};

/* "1-Feb-1994" -> start of that day, UTC. */
static int parse_date(const char *v, time_t *out)
{
	static const char *mon[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
				     "oct", "nov", "dec" };
	int d, y;
	char m[4];
	if (sscanf(v, "%2d-%3s-%4d", &d, m, &y) != 3)
		return -1;
	for (int i = 0; i < 12; i++) {
		if (strcasecmp(m, mon[i]) == 0) {
			struct tm tm = { .tm_year = y - 1900, .tm_mon = i, .tm_mday = d };
			*out = timegm(&tm);
			return d >= 1 && d <= 31 ? 0 : -1;
		}
	}
	return -1;
}

/* Fold the strings of the text keys (HEADER, BODY, TEXT) once per SEARCH; 0, or -1 out of
 * memory. */
static int fold_needles(struct search *x)
{
	for (size_t j = 0; j < x->n; j++) {
		struct snode *nd = &x->nodes[j];
		size_t fl;
		if (nd->k != K_HEADER && nd->k != K_BODY && nd->k != K_TEXT)
			continue;
		if (casefold_dup(nd->str ? nd->str : "", nd->str ? strlen(nd->str) : 0, &nd->fold,
				 &fl) < 0) {
			x->err = "Out of memory for the search string";
			return -1;
		}
	}
	return 0;
}

/* Compile keys from args[*i]; returns the node index or -1. */
static int compile(struct search *x, const struct imap_arg *args, size_t n, size_t *i,
		   unsigned depth);

/* Compile a run of keys into an AND chain until the end of args. */
static int compile_all(struct search *x, const struct imap_arg *args, size_t n, size_t *i,
		       unsigned depth)
{
	int acc = -1;
	while (*i < n) {
		int k = compile(x, args, n, i, depth);
		if (k < 0)
			return -1;
		if (acc < 0) {
			acc = k;
			continue;
		}
		if (x->n >= x->cap) {
			x->err = SEARCH_TOO_MANY;
			return -1;
		}
		struct snode *a = &x->nodes[x->n];
		memset(a, 0, sizeof(*a));
		a->k = K_AND;
		a->a = acc;
		a->b = k;
		acc = (int)x->n++;
	}
	return acc;
}

/* The argument after the key at args[*i], or NULL at the end. */
static const char *key_arg(const struct imap_arg *args, size_t n, size_t i)
{
	return i < n ? args[i].str : NULL;
}

/* A parenthesized list of keys into nd: an AND of them. me, or -1. */
static int compile_list(struct search *x, const struct imap_arg *list, int me, unsigned depth)
{
	size_t j = 0;
	int c = compile_all(x, list->list, list->nlist, &j, depth + 1);
	if (c < 0)
		return -1;
	struct snode *nd = &x->nodes[me];
	nd->k = K_AND;
	nd->a = c;
	nd->b = -1;
	return me;
}

/* NOT key, OR key1 key2 (k says which) into node me. me, or -1. */
static int compile_not_or(struct search *x, const char *k, const struct imap_arg *args, size_t n,
			  size_t *i, int me, unsigned depth)
{
	int or = k[0] == 'O' || k[0] == 'o';
	int c1 = compile(x, args, n, i, depth + 1);
	int c2 = c1 >= 0 && or ? compile(x, args, n, i, depth + 1) : -1;
	if (c1 < 0 || (or && c2 < 0))
		return -1;
	struct snode *nd = &x->nodes[me];
	nd->k = or ? K_OR : K_NOT;
	nd->a = c1;
	nd->b = c2;
	return me;
}

/* The keys without an argument: flags (SEEN, UNSEEN, ...), OLD, NEW, RECENT, ALL, and
 * SAVEDATESUPPORTED (RFC 8514: true of every message here). 1 if k is one, else 0. */
static int compile_flag(struct snode *nd, const char *k)
{
	static const struct { const char *n; enum skey k; unsigned f; } flagkeys[] = {
		{ "ANSWERED", K_FLAG, STORE_F_ANSWERED }, { "DELETED", K_FLAG, STORE_F_DELETED },
		{ "DRAFT", K_FLAG, STORE_F_DRAFT }, { "FLAGGED", K_FLAG, STORE_F_FLAGGED },
		{ "SEEN", K_FLAG, STORE_F_SEEN }, { "OLD", K_OLD, 0 }, { "RECENT", K_RECENT, 0 },
		{ "NEW", K_NEW, 0 },
		{ "UNANSWERED", K_NOTFLAG, STORE_F_ANSWERED }, { "UNDELETED", K_NOTFLAG, STORE_F_DELETED },
		{ "UNDRAFT", K_NOTFLAG, STORE_F_DRAFT }, { "UNFLAGGED", K_NOTFLAG, STORE_F_FLAGGED },
		{ "UNSEEN", K_NOTFLAG, STORE_F_SEEN }, { "ALL", K_ALL, 0 },
		{ "SAVEDATESUPPORTED", K_ALL, 0 } };
	for (size_t f = 0; f < sizeof(flagkeys) / sizeof(flagkeys[0]); f++) {
		if (strcasecmp(k, flagkeys[f].n) == 0) {
			nd->k = flagkeys[f].k;
			nd->flag = flagkeys[f].f;
			return 1;
		}
	}
	return 0;
}

/* The text keys: FROM/TO/CC/BCC/SUBJECT string, HEADER field-name string, BODY string, TEXT
 * string. 1 compiled (the search needs the message text), 0 not one of them, -1 invalid. */
static int compile_text(struct search *x, struct snode *nd, const char *k,
			const struct imap_arg *args, size_t n, size_t *i)
{
	const char *arg1 = key_arg(args, n, *i);
	static const char *hdrkeys[] = { "FROM", "TO", "CC", "BCC", "SUBJECT" };
	const char *field = NULL;   /* the header field a FROM, TO, CC, BCC or SUBJECT searches */
	for (size_t h = 0; h < 5; h++)
		if (strcasecmp(k, hdrkeys[h]) == 0)
			field = hdrkeys[h];
	if (field || strcasecmp(k, "BODY") == 0 || strcasecmp(k, "TEXT") == 0) {
		if (arg1 == NULL)
			return -1;
		if (field) {
			nd->k = K_HEADER;
			snprintf(nd->hdr, sizeof(nd->hdr), "%s", field);
		} else {
			nd->k = k[0] == 'B' || k[0] == 'b' ? K_BODY : K_TEXT;
		}
		nd->str = arg1;
		(*i)++;
	} else if (strcasecmp(k, "HEADER") == 0) {
		if (*i + 1 >= n || args[*i].len >= sizeof(nd->hdr))
			return -1;
		nd->k = K_HEADER;
		snprintf(nd->hdr, sizeof(nd->hdr), "%s", args[*i].str);
		nd->str = args[*i + 1].str;
		*i += 2;
	} else {
		return 0;
	}
	x->need_text = 1;
	return 1;
}

/* KEYWORD flag, UNKEYWORD flag (a keyword the account never saw never matches). 1 compiled, 0
 * not one of them, -1 invalid. */
static int compile_keyword(struct search *x, struct snode *nd, const char *k,
			   const struct imap_arg *args, size_t n, size_t *i)
{
	const char *arg1 = key_arg(args, n, *i);
	const char *err;
	if (strcasecmp(k, "KEYWORD") != 0 && strcasecmp(k, "UNKEYWORD") != 0)
		return 0;
	if (arg1 == NULL)
		return -1;
	nd->k = k[0] == 'K' || k[0] == 'k' ? K_KEYWORD : K_UNKEYWORD;
	nd->kw = store_keyword_id(x->s->acct, arg1, 0, &err);
	(*i)++;
	return 1;
}

/* The keys with a number: LARGER, SMALLER, MODSEQ (RFC 7162, turns CONDSTORE on), OLDER and
 * YOUNGER (RFC 5032). 1 compiled, 0 not one of them, -1 invalid. */
static int compile_number(struct search *x, struct snode *nd, const char *k,
			  const struct imap_arg *args, size_t n, size_t *i)
{
	static const struct { const char *n; enum skey k; } numkeys[] = {
		{ "LARGER", K_LARGER }, { "SMALLER", K_SMALLER }, { "MODSEQ", K_MODSEQ },
		{ "OLDER", K_OLDER }, { "YOUNGER", K_YOUNGER } };
	size_t q = 0;
	while (q < 5 && strcasecmp(k, numkeys[q].n) != 0)
		q++;
	if (q == 5)
		return 0;
	const char *arg1 = key_arg(args, n, *i);
	nd->k = numkeys[q].k;
	/* RFC 7162 3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer, entry-name
	 * "/flags/<flag>" quoted, entry-type-req "priv" / "shared" / "all"; every flag change
	 * bumps one modseq, so the entry does not narrow */
	if (nd->k == K_MODSEQ && arg1 != NULL && *i + 2 < n && args[*i].type == IMAP_ARG_QUOTED &&
	    args[*i + 1].type == IMAP_ARG_ATOM &&
	    (strcasecmp(args[*i + 1].str, "priv") == 0 ||
	     strcasecmp(args[*i + 1].str, "shared") == 0 ||
	     strcasecmp(args[*i + 1].str, "all") == 0)) {
		*i += 2;
		arg1 = args[*i].str;
	}
	if (arg1 == NULL || arg1[0] < '0' || arg1[0] > '9')
		return -1;
	nd->num = strtoull(arg1, NULL, 10);
	(*i)++;
	if (nd->k == K_MODSEQ)
		imap_condstore_enable(x->s);
	return 1;
}

/* The keys with a date: BEFORE, ON, SINCE (internal date), SENTBEFORE, SENTON, SENTSINCE (the
 * Date: field), SAVEDBEFORE, SAVEDON, SAVEDSINCE (RFC 8514). 1 compiled, 0 not one of them, -1
 * invalid. */
static int compile_date(struct snode *nd, const char *k, const struct imap_arg *args, size_t n,
			size_t *i)
{
	static const struct { const char *n; enum skey k; } datekeys[] = {
		{ "BEFORE", K_BEFORE }, { "ON", K_ON }, { "SINCE", K_SINCE },
		{ "SENTBEFORE", K_SENTBEFORE }, { "SENTON", K_SENTON }, { "SENTSINCE", K_SENTSINCE },
		{ "SAVEDBEFORE", K_SAVEDBEFORE }, { "SAVEDON", K_SAVEDON },
		{ "SAVEDSINCE", K_SAVEDSINCE } };
	for (size_t q = 0; q < sizeof(datekeys) / sizeof(datekeys[0]); q++) {
		if (strcasecmp(k, datekeys[q].n) == 0) {
			const char *arg1 = key_arg(args, n, *i);
			if (arg1 == NULL || parse_date(arg1, &nd->day) < 0)
				return -1;
			nd->k = datekeys[q].k;
			(*i)++;
			return 1;
		}
	}
	return 0;
}

/* UID set, a sequence set, or $ (the saved result, RFC 5182) alone or after UID; a is the key.
 * 1 compiled, 0 not one of them, -1 invalid. */
static int compile_set(struct search *x, struct snode *nd, const struct imap_arg *a,
		       const struct imap_arg *args, size_t n, size_t *i)
{
	const char *k = a->str;
	if (strcasecmp(k, "UID") == 0) {
		const char *arg1 = key_arg(args, n, *i);
		uint32_t maxuid = x->s->nmsgs ? x->s->msgs[x->s->nmsgs - 1].uid : 0;
		if (arg1 == NULL)
			return -1;
		nd->k = K_UID;
		(*i)++;
		if (strcmp(arg1, "$") == 0) {
			nd->has_set = 0;
			nd->str = "$";
			return 1;
		}
		if (imap_seqset_parse(arg1, maxuid, &nd->set) < 0)
			return -1;
		nd->has_set = 1;
		return 1;
	}
	if (a->type != IMAP_ARG_ATOM ||
	    !(strcmp(k, "$") == 0 || (k[0] >= '0' && k[0] <= '9') || k[0] == '*'))
		return 0;
	if (strcmp(k, "$") == 0) {
		nd->k = K_UID;
		nd->str = "$";
		return 1;
	}
	nd->k = K_SEQ;
	if (imap_seqset_parse(k, (uint32_t)x->s->nmsgs, &nd->set) < 0)
		return -1;
	nd->has_set = 1;
	return 1;
}

/* Compile one key from args[*i] (and its arguments, advancing *i) into a new node: a list, NOT
 * or OR recursively (depth: how deep), else the first family of keys that knows it. */
static int compile(struct search *x, const struct imap_arg *args, size_t n, size_t *i,
		   unsigned depth)
{
	if (depth > SEARCH_DEPTH_MAX) {
		x->err = "Search is too complex (nested too deeply)";
		return -1;
	}
	if (x->n >= x->cap)
		x->err = SEARCH_TOO_MANY;
	if (*i >= n || x->n >= x->cap)
		return -1;
	const struct imap_arg *a = &args[(*i)++];
	int me = (int)x->n++;
	struct snode *nd = &x->nodes[me];
	memset(nd, 0, sizeof(*nd));
	if (a->type == IMAP_ARG_LIST)
		return compile_list(x, a, me, depth);
	const char *k = a->str;
	if (strcasecmp(k, "NOT") == 0 || strcasecmp(k, "OR") == 0)
		return compile_not_or(x, k, args, n, i, me, depth);
	int r = compile_flag(nd, k);
	if (r == 0)
		r = compile_text(x, nd, k, args, n, i);
	if (r == 0)
		r = compile_keyword(x, nd, k, args, n, i);
	if (r == 0)
		r = compile_number(x, nd, k, args, n, i);
	if (r == 0)
		r = compile_date(nd, k, args, n, i);
	if (r == 0)
		r = compile_set(x, nd, a, args, n, i);
	return r > 0 ? me : -1;
}

/* Case-insensitive substring test; needle is already folded (snode.fold). */
static int contains_ci(const char *hay, size_t hl, const char *needle)
{
	return casefold_contains(hay, hl, needle, strlen(needle));
}

struct msgtext {
	const char *msg;
	size_t len, hlen;
	void *map;              /* mmap'd (large files) */
	char *copy;             /* read (small files) */
	int tried;
	const char *h;          /* the header section: cached, or in msg */
	size_t hl;
};

#define SEARCH_READ_MAX 65536   /* smaller files are read, larger ones mapped */

/* Map the message text on first need. */
static int text_load(struct search *x, size_t i, struct msgtext *t)
{
	if (t->tried)
		return t->msg != NULL;
	t->tried = 1;
	struct imap_msg *m = &x->s->msgs[i];
	struct store_msg_info mi;
	const char *err;
	memset(&mi, 0, sizeof(mi));
	mi.uid = m->uid;
	mi.in_new = m->in_new;
	mi.flags = m->flags;
	snprintf(mi.filename, sizeof(mi.filename), "%s", m->fname);
	int fd = store_message_fd(x->s->acct, x->s->box, &mi, &err);
	struct stat st;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size == 0) {
		close(fd);
		t->msg = "";
		if (t->h == NULL)
			t->h = "";
		return 1;
	}
	if (st.st_size <= SEARCH_READ_MAX) {
		/* cheaper than mmap + munmap (no page-table work shared with the other threads) */
		t->copy = malloc((size_t)st.st_size);
		ssize_t r = t->copy ? pread(fd, t->copy, (size_t)st.st_size, 0) : -1;
		close(fd);
		if (r < 0) {
			free(t->copy);
			t->copy = NULL;
			return 0;
		}
		t->msg = t->copy;
		t->len = (size_t)r;
	} else {
		t->map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		close(fd);
		if (t->map == MAP_FAILED) {
			t->map = NULL;
			return 0;
		}
		t->msg = t->map;
		t->len = (size_t)st.st_size;
	}
	t->hlen = mime_header_len(t->msg, t->len);
	if (t->h == NULL) {
		t->h = t->msg;
		t->hl = t->hlen;
	}
	return 1;
}

/* The header section only: from the index's cache, else from the file. */
static int hdr_load(struct search *x, size_t i, struct msgtext *t)
{
	if (t->h)
		return 1;
	if (!x->hc_tried) {
		x->hc_tried = 1;
		store_header_open(x->s->acct, x->s->box, &x->hc);
	}
	if (store_header_get(x->hc, x->s->msgs[i].uid, &t->h, &t->hl) == 1)
		return 1;
	t->h = NULL;
	return text_load(x, i, t);
}

struct addr_match {
	const char *needle;
	int found;
};

/* addr_parse_list callback: does this addr-spec contain the needle? */
static void addr_match_cb(void *ctx, const char *address)
{
	struct addr_match *am = ctx;
	if (!am->found && contains_ci(address, strlen(address), am->needle))
		am->found = 1;
}

/* Whether name is an address header, whose addr-specs are matched as well as its text. */
static int is_address_header(const char *name)
{
	static const char *const names[] = { "From", "To", "Cc", "Bcc", "Sender", "Reply-To" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0)
			return 1;
	return 0;
}

/* Does any field called `name` (RFC 3501 6.4.4 HEADER: every instance of a repeated field)
 * contain s, RFC 2047 words decoded? An address field also matches by its addr-specs with
 * comments and blanks removed ("<a (c)@ (c) b.org>" is a@b.org). For an empty s: does a field
 * called `name` exist? */
static int header_match(struct msgtext *t, const char *name, const char *s)
{
	struct buf raw, dec;
	struct hdr_field f;
	size_t pos = 0;
	int r = 0;
	buf_init(&raw, 1 << 20);
	buf_init(&dec, 4 << 20);
	while (r == 0 && hdr_next(t->h, t->hl, &pos, &f) == 1) {
		if (!hdr_is(&f, name))
			continue;
		if (s[0] == '\0') {
			r = 1;
			break;
		}
		buf_reset(&raw);
		buf_reset(&dec);
		if (hdr_value_unfold(&f, &raw) < 0)
			continue;
		if (mime_decode_words(raw.data ? raw.data : "", raw.len, &dec) == 0 && dec.data)
			r = contains_ci(dec.data, dec.len, s);
		else
			r = contains_ci(raw.data ? raw.data : "", raw.len, s);
		if (r == 0 && is_address_header(name)) {
			struct addr_match am = { s, 0 };
			addr_parse_list(raw.data ? raw.data : "", raw.len, addr_match_cb, &am);
			r = am.found;
		}
	}
	buf_free(&raw);
	buf_free(&dec);
	return r;
}

/* Sent date of the Date: header, day resolution; -1 unknown. */
static time_t sent_day(struct msgtext *t)
{
	struct buf raw;
	buf_init(&raw, 4096);
	time_t r = -1;
	if (mime_header_get(t->h, t->hl, "Date", &raw) == 1 && raw.data) {
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		const char *p = raw.data;
		const char *comma = strchr(p, ',');
		if (comma)
			p = comma + 1;
		if (strptime(p, " %d %b %Y", &tm) != NULL) {
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
			r = timegm(&tm);
		}
	}
	buf_free(&raw);
	return r;
}

/* Search the transfer-decoded bodies of the message's parts (base64, quoted-printable), text
 * parts in other charsets converted to UTF-8:
 * sections 1, 1.1, 1.2, ... 2, ... walked depth first, at most SEARCH_PARTS_MAX of them. */
#define SEARCH_PARTS_MAX 100
static int decoded_walk(struct msgtext *t, struct mime_part *root, char *sec, size_t seclen,
			const char *needle, unsigned *budget, unsigned depth)
{
	size_t l = strlen(sec);
	for (unsigned k = 1; *budget > 0 && depth < 8; k++) {
		snprintf(sec + l, seclen - l, "%s%u", l ? "." : "", k);
		struct buf out;
		buf_init(&out, 32u << 20);
		int r = mime_text_utf8(root, t->msg, t->len, sec, &out);
		int hit = r == 0 && out.data && contains_ci(out.data, out.len, needle);
		buf_free(&out);
		(*budget)--;
		if (r == 1 || r < -1) {
			sec[l] = '\0';
			return 0;   /* no such part: this level is done */
		}
		if (hit || decoded_walk(t, root, sec, seclen, needle, budget, depth + 1)) {
			sec[l] = '\0';
			return 1;
		}
	}
	sec[l] = '\0';
	return 0;
}

/* Does the header section, RFC 2047 words decoded, contain needle? */
static int decoded_header_match(struct msgtext *t, const char *needle)
{
	struct buf dec;
	buf_init(&dec, 4u << 20);
	int r = mime_decode_words(t->msg, t->hlen, &dec) == 0 && dec.data &&
		contains_ci(dec.data, dec.len, needle);
	buf_free(&dec);
	return r;
}

/* Does the decoded text of any part contain needle? */
static int decoded_match(struct msgtext *t, const char *needle)
{
	if (t->len == 0)
		return 0;
	struct mime_part *root = mime_parse(t->msg, t->len);
	if (root == NULL)
		return 0;
	char sec[64] = "";
	unsigned budget = SEARCH_PARTS_MAX;
	int r = decoded_walk(t, root, sec, sizeof(sec), needle, &budget, 0);
	mime_free(&root);
	return r;
}

/* Evaluate node k for message i. */
static int eval(struct search *x, int k, size_t i, struct msgtext *t)
{
	const struct snode *nd = &x->nodes[k];
	const struct imap_msg *m = &x->s->msgs[i];
	time_t day = m->internaldate - m->internaldate % 86400;
	switch (nd->k) {
	case K_ALL:
		return 1;
	case K_NONE:
		return 0;
	case K_RECENT:
		return m->recent;
	case K_NEW:   /* RFC 3501 6.4.4: RECENT UNSEEN */
		return m->recent && !(m->flags & STORE_F_SEEN);
	case K_OLD:
		return !m->recent;
	case K_FLAG:
		return (m->flags & nd->flag) != 0;
	case K_NOTFLAG:
		return (m->flags & nd->flag) == 0;
	case K_KEYWORD:
		return nd->kw >= 0 && (m->keywords & (1ull << nd->kw));
	case K_UNKEYWORD:
		return nd->kw < 0 || !(m->keywords & (1ull << nd->kw));
	case K_LARGER:
		return m->size > nd->num;
	case K_SMALLER:
		return m->size < nd->num;
	case K_MODSEQ:
		return m->modseq >= nd->num;
	case K_OLDER:
		return (uint64_t)(time(NULL) - m->internaldate) >= nd->num;
	case K_YOUNGER:
		return (uint64_t)(time(NULL) - m->internaldate) <= nd->num;
	case K_BEFORE:
		return day < nd->day;
	case K_ON:
		return day == nd->day;
	case K_SINCE:
		return day >= nd->day;
	case K_SAVEDBEFORE:
	case K_SAVEDON:
	case K_SAVEDSINCE: {
		time_t sd = m->savedate - m->savedate % 86400;
		return nd->k == K_SAVEDBEFORE ? sd < nd->day : nd->k == K_SAVEDON ? sd == nd->day :
								      sd >= nd->day;
	}
	case K_SENTBEFORE:
	case K_SENTON:
	case K_SENTSINCE: {
		if (!hdr_load(x, i, t))
			return 0;
		time_t sd = sent_day(t);
		if (sd < 0)
			sd = day;
		return nd->k == K_SENTBEFORE ? sd < nd->day : nd->k == K_SENTON ? sd == nd->day :
								     sd >= nd->day;
	}
	case K_UID:
		if (nd->str && strcmp(nd->str, "$") == 0) {
			for (size_t j = 0; j < x->s->nsearchres; j++)
				if (x->s->searchres[j] == m->uid)
					return 1;
			return 0;
		}
		return imap_seqset_contains(&nd->set, m->uid);
	case K_SEQ:
		return imap_seqset_contains(&nd->set, (uint32_t)(i + 1));
	case K_HEADER:
		return hdr_load(x, i, t) && header_match(t, nd->hdr, nd->fold);
	case K_BODY:
		return text_load(x, i, t) &&
		       (contains_ci(t->msg + t->hlen, t->len - t->hlen, nd->fold) ||
			decoded_match(t, nd->fold));
	case K_TEXT:
		return text_load(x, i, t) && (contains_ci(t->msg, t->len, nd->fold) ||
					      decoded_header_match(t, nd->fold) ||
					      decoded_match(t, nd->fold));
	case K_NOT:
		return !eval(x, nd->a, i, t);
	case K_OR:
		return eval(x, nd->a, i, t) || eval(x, nd->b, i, t);
	case K_AND:
		return eval(x, nd->a, i, t) && (nd->b < 0 || eval(x, nd->b, i, t));
	}
	return 0;
}

/* Arguments in a tree (lists counted with their contents), at most `cap`. */
static size_t count_args(const struct imap_arg *args, size_t n, size_t cap, unsigned depth)
{
	size_t c = 0;
	for (size_t i = 0; i < n && c < cap; i++) {
		c++;
		if (args[i].type == IMAP_ARG_LIST && depth < SEARCH_DEPTH_MAX + 2)
			c += count_args(args[i].list, args[i].nlist, cap - c, depth + 1);
	}
	return c;
}

/* The messages (indexes into s->msgs, in order) matching search keys. 0, or -1 with *why_r. */
int imap_search_match(struct imap_session *s, const struct imap_arg *args, size_t n,
		      size_t **idx_r, size_t *n_r, const char **why_r)
{
	size_t i = 0;
	/* every key makes one node, and one more joins it to the keys before it */
	size_t nodes = 2 * count_args(args, n, SEARCH_NODES_MAX, 0) + 2;
	if (nodes > SEARCH_NODES_MAX)
		nodes = SEARCH_NODES_MAX;
	struct search x = { s, calloc(nodes, sizeof(struct snode)), 0, 0, NULL, NULL, 0, 0 };
	x.cap = nodes;
	*why_r = "Out of memory";
	if (x.nodes == NULL)
		return -1;
	int root = n > 0 ? compile_all(&x, args, n, &i, 0) : -1;
	if (root >= 0 && fold_needles(&x) < 0)
		root = -1;
	size_t *v = root >= 0 ? calloc(s->nmsgs + 1, sizeof(*v)) : NULL;
	size_t k = 0;
	int began = store_read_begin(s->acct);
	for (size_t m = 0; v && m < s->nmsgs; m++) {
		struct msgtext t = { 0 };
		if (eval(&x, root, m, &t))
			v[k++] = m;
		if (t.map)
			munmap(t.map, t.len);
		free(t.copy);
	}
	store_header_close(&x.hc);
	store_read_end(s->acct, began);
	for (size_t j = 0; j < x.n; j++) {
		if (x.nodes[j].has_set)
			imap_seqset_free(&x.nodes[j].set);
		free(x.nodes[j].fold);
	}
	free(x.nodes);
	if (root < 0 || v == NULL) {
		free(v);
		*why_r = x.err ? x.err : "Invalid SEARCH key or argument";
		return -1;
	}
	*idx_r = v;
	*n_r = k;
	return 0;
}

/* SEARCH [RETURN (...)] [CHARSET x] keys. */
void imap_cmd_search(struct imap_session *s, const struct imap_arg *args, size_t n, int uid)
{
	size_t i = 0;
	struct imap_search_ret r;
	const char *why;
	memset(&r, 0, sizeof(r));
	if (n > 1 && args[0].type == IMAP_ARG_ATOM && strcasecmp(args[0].str, "RETURN") == 0 &&
	    args[1].type == IMAP_ARG_LIST) {
		if (imap_search_ret_parse(&args[1], 0, &r, &why) < 0) {
			imap_bad(s, "%s", why);
			return;
		}
		i = 2;
	}
	if (!r.esearch && s->rev2) {   /* RFC 9051 6.4.4: IMAP4rev2 answers SEARCH with ESEARCH */
		r.esearch = 1;
		r.all = 1;
	}
	if (i + 1 < n && args[i].type == IMAP_ARG_ATOM && strcasecmp(args[i].str, "CHARSET") == 0) {
		const char *cs = args[i + 1].str;
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			imap_tagged(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		i += 2;
	}
	if (i >= n) {
		imap_bad(s, "SEARCH needs at least one key");
		return;
	}
	imap_sync_mailbox(s, 0);
	size_t *match, nh;
	if (imap_search_match(s, args + i, n - i, &match, &nh, &why) < 0) {
		imap_bad(s, "%s", why);
		return;
	}
	int noupdate = r.update && imap_context_add(s, uid, NULL, args + i, n - i, match, nh) < 0;
	uint32_t *hits = calloc(nh + 1, sizeof(*hits));
	uint64_t maxmodseq = 0;
	for (size_t k = 0; hits && k < nh; k++) {
		size_t m = match[k];
		hits[k] = uid || r.save ? s->msgs[m].uid : (uint32_t)(m + 1);
		if (s->msgs[m].modseq > maxmodseq)
			maxmodseq = s->msgs[m].modseq;
	}
	if (hits == NULL) {
		free(match);
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	if (r.esearch && (r.min || r.max) && !r.all && !r.count && !r.partial && nh > 0) {
		/* RFC 7162 3.1.10: with only MIN and/or MAX the MODSEQ is that of those */
		uint64_t lo = s->msgs[match[0]].modseq, hi = s->msgs[match[nh - 1]].modseq;
		maxmodseq = r.min && r.max ? (lo > hi ? lo : hi) : r.min ? lo : hi;
	}
	free(match);
	if (r.save) {
		/* RFC 5182 2.4: with only MIN and/or MAX, SAVE keeps just those; with PARTIAL
		 * (RFC 9394 3.2) the returned slice */
		size_t first = 0, ns = nh;
		uint32_t pick[2];
		const uint32_t *from = hits;
		if (r.partial) {
			imap_partial_slice(&r, nh, &first, &ns);
			from = hits + first;
		} else if ((r.min || r.max) && !r.all && !r.count && nh > 0) {
			ns = 0;
			if (r.min)
				pick[ns++] = hits[0];
			if (r.max && (!r.min || hits[nh - 1] != hits[0]))
				pick[ns++] = hits[nh - 1];
			from = pick;
		}
		free(s->searchres);
		s->searchres = calloc(ns + 1, sizeof(*s->searchres));
		s->nsearchres = 0;
		for (size_t k = 0; s->searchres && k < ns; k++)
			s->searchres[s->nsearchres++] = from[k];
		if (!uid)   /* the reply speaks sequence numbers */
			for (size_t k = 0, m = 0; k < nh && m < s->nmsgs; m++)
				if (s->msgs[m].uid == hits[k])
					hits[k++] = (uint32_t)(m + 1);
	}
	if (!(r.esearch && r.save && !r.min && !r.max && !r.count && !r.all && !r.partial))
		imap_search_answer(s, "SEARCH", uid, &r, hits, nh, maxmodseq);
	free(hits);
	imap_search_done(s, "SEARCH", uid, noupdate);
}

/* See imap-private.h. */
int imap_msg_header(struct imap_session *s, size_t i, struct store_header_cursor *hc,
		    char **hdr_r, size_t *len_r)
{
	const char *h;
	size_t hl;
	*hdr_r = NULL;
	*len_r = 0;
	if (store_header_get(hc, s->msgs[i].uid, &h, &hl) == 1) {
		if ((*hdr_r = malloc(hl + 1)) == NULL)
			return -1;
		memcpy(*hdr_r, h, hl);
		(*hdr_r)[hl] = '\0';
		*len_r = hl;
		return 0;
	}
	struct search x;
	memset(&x, 0, sizeof(x));
	x.s = s;
	struct msgtext t;
	memset(&t, 0, sizeof(t));
	int r = -1;
	if (text_load(&x, i, &t) && (*hdr_r = malloc(t.hlen + 1)) != NULL) {
		memcpy(*hdr_r, t.msg, t.hlen);
		(*hdr_r)[t.hlen] = '\0';
		*len_r = t.hlen;
		r = 0;
	}
	if (t.map)
		munmap(t.map, t.len);
	free(t.copy);
	return r;
}
