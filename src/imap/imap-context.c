/* imap-context.c - the RETURN options shared by SEARCH and SORT and the searches kept up to date:
 * ESEARCH answers (RFC 4731), ESORT (RFC 5267 section 3), PARTIAL ranges (RFC 5267 4.4 and their
 * negative form, RFC 9394) and CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267 section 4): a search
 * made with RETURN (UPDATE) is kept with a copy of its keys and evaluated again whenever the
 * selected mailbox changed; the differences go to the client as untagged ESEARCH ADDTO and
 * REMOVEFROM until CANCELUPDATE or until the mailbox is closed. */
#include "imap-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMAP_CONTEXT_ARGS_MAX 65536   /* octets of search keys a kept search may hold; longer
				       * ones (e.g. a huge BODY literal) get NOUPDATE */
#define IMAP_PARTIAL_MAX 4294967295u  /* RFC 9394: range ends are nz-number (32 bits) */

struct imap_context {
	char tag[128];
	int uid;                       /* UID SEARCH/SORT: the results are UIDs */
	int sort;                      /* a SORT context: positions matter (RFC 5267 4.3) */
	struct imap_sort_prog prog;
	struct imap_arg *args;         /* a private copy of the search keys */
	size_t nargs;
	uint32_t *uids;                /* the result as the client knows it, in result order */
	size_t n;
	uint64_t sig_modseq;           /* the mailbox as last evaluated */
	size_t sig_nmsgs;
	uint32_t sig_uidnext;
};

/* Parse a PARTIAL range "a:b" or "-a:-b" (RFC 9394 partial-range). 0, or -1. */
static int parse_partial(const char *v, int64_t *lo_r, int64_t *hi_r)
{
	uint64_t x[2];
	int neg[2];
	const char *p = v;
	for (int k = 0; k < 2; k++) {
		neg[k] = *p == '-';
		if (neg[k])
			p++;
		if (*p < '1' || *p > '9')
			return -1;
		x[k] = 0;
		for (; *p >= '0' && *p <= '9'; p++) {
			x[k] = x[k] * 10 + (uint64_t)(*p - '0');
			if (x[k] > IMAP_PARTIAL_MAX)
				return -1;
		}
		if (k == 0 && *p++ != ':')
			return -1;
	}
	if (*p != '\0' || neg[0] != neg[1])
		return -1;
	uint64_t lo = x[0] < x[1] ? x[0] : x[1], hi = x[0] < x[1] ? x[1] : x[0];
	*lo_r = neg[0] ? -(int64_t)lo : (int64_t)lo;
	*hi_r = neg[0] ? -(int64_t)hi : (int64_t)hi;
	return 0;
}

/* See imap-private.h. */
int imap_search_ret_parse(const struct imap_arg *list, int sort, struct imap_search_ret *r,
			  const char **why_r)
{
	memset(r, 0, sizeof(*r));
	r->esearch = 1;
	for (size_t k = 0; k < list->nlist; k++) {
		const struct imap_arg *a = &list->list[k];
		const char *o = a->str;
		if (a->type != IMAP_ARG_ATOM) {
			*why_r = "RETURN options are atoms: MIN MAX COUNT ALL SAVE UPDATE PARTIAL";
			return -1;
		}
		if (strcasecmp(o, "MIN") == 0) {
			r->min = 1;
		} else if (strcasecmp(o, "MAX") == 0) {
			r->max = 1;
		} else if (strcasecmp(o, "COUNT") == 0) {
			r->count = 1;
		} else if (strcasecmp(o, "ALL") == 0) {
			r->all = 1;
		} else if (strcasecmp(o, "SAVE") == 0 && !sort) {
			r->save = 1;
		} else if (strcasecmp(o, "UPDATE") == 0) {
			r->update = 1;
		} else if (strcasecmp(o, "PARTIAL") == 0) {
			if (k + 1 >= list->nlist || list->list[k + 1].type != IMAP_ARG_ATOM ||
			    parse_partial(list->list[k + 1].str, &r->plo, &r->phi) < 0) {
				*why_r = "PARTIAL needs a range such as 1:100 or -1:-100 (numbers "
					 "from 1 to 4294967295, no *)";
				return -1;
			}
			r->partial = 1;
			k++;
		} else {
			*why_r = sort ? "Unknown RETURN option (SORT knows MIN MAX COUNT ALL UPDATE "
					"PARTIAL)"
				      : "Unknown RETURN option (SEARCH knows MIN MAX COUNT ALL SAVE "
					"UPDATE PARTIAL)";
			return -1;
		}
	}
	if (r->partial && r->all) {
		*why_r = "RETURN ALL and PARTIAL cannot be combined (RFC 9394)";
		return -1;
	}
	if (r->update && r->save) {
		*why_r = "RETURN UPDATE and SAVE cannot be combined (RFC 5267)";
		return -1;
	}
	if (!r->min && !r->max && !r->count && !r->save && !r->partial)
		r->all = 1;   /* RFC 4731 3.1: RETURN () means ALL; UPDATE alone needs it too */
	return 0;
}

/* See imap-private.h. */
void imap_partial_slice(const struct imap_search_ret *r, size_t nh, size_t *first_r, size_t *n_r)
{
	*first_r = *n_r = 0;
	if (r->plo > 0) {
		uint64_t lo = (uint64_t)r->plo, hi = (uint64_t)r->phi;
		if (lo > nh)
			return;
		*first_r = (size_t)lo - 1;
		*n_r = (size_t)(hi < nh ? hi : nh) - *first_r;
	} else {
		uint64_t lo = (uint64_t)-r->plo, hi = (uint64_t)-r->phi;   /* from the end */
		if (lo > nh)
			return;
		*first_r = hi >= nh ? 0 : nh - (size_t)hi;
		*n_r = nh - (size_t)lo - *first_r + 1;
	}
}

/* Append v[0..n) as a sequence set, ascending runs joined ("1:3,7,5:6"). */
static void append_set(struct buf *out, const uint32_t *v, size_t n)
{
	for (size_t k = 0; k < n;) {
		size_t j = k;
		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		buf_appendf(out, k ? ",%u" : "%u", v[k]);
		if (j > k)
			buf_appendf(out, ":%u", v[j]);
		k = j + 1;
	}
}

/* See imap-private.h. */
void imap_esearch_reply(struct imap_session *s, int uid, const struct imap_search_ret *r,
			const uint32_t *hits, size_t nh, uint64_t modseq)
{
	struct buf out;
	buf_init(&out, 64u << 20);
	buf_appendf(&out, "* ESEARCH (TAG \"%s\")%s", s->tag, uid ? " UID" : "");
	if (r->min && nh)
		buf_appendf(&out, " MIN %u", hits[0]);
	if (r->max && nh)
		buf_appendf(&out, " MAX %u", hits[nh - 1]);
	if (r->count)
		buf_appendf(&out, " COUNT %zu", nh);
	if (r->all && nh) {
		buf_appendstr(&out, " ALL ");
		append_set(&out, hits, nh);
	}
	if (r->partial) {
		size_t first, np;
		imap_partial_slice(r, nh, &first, &np);
		buf_appendf(&out, " PARTIAL (%lld:%lld ", (long long)r->plo, (long long)r->phi);
		if (np)
			append_set(&out, hits + first, np);
		else
			buf_appendstr(&out, "NIL");
		buf_appendstr(&out, ")");
	}
	if (s->condstore && nh && modseq)
		buf_appendf(&out, " MODSEQ %llu", (unsigned long long)modseq);
	buf_appendstr(&out, "\r\n");
	if (out.data != NULL)
		imap_write(s, out.data, out.len);
	else
		imap_reply(s, "* ESEARCH (TAG \"%s\")", s->tag);
	buf_free(&out);
}

/* See imap-private.h. */
void imap_search_answer(struct imap_session *s, const char *verb, int uid,
			const struct imap_search_ret *r, const uint32_t *hits, size_t nh,
			uint64_t modseq)
{
	if (r->esearch) {
		imap_esearch_reply(s, uid, r, hits, nh, modseq);
		return;
	}
	struct buf out;
	buf_init(&out, 64u << 20);
	buf_appendf(&out, "* %s", verb);
	for (size_t k = 0; k < nh; k++)
		buf_appendf(&out, " %u", hits[k]);
	if (s->condstore && nh && modseq)
		buf_appendf(&out, " (MODSEQ %llu)", (unsigned long long)modseq);
	buf_appendstr(&out, "\r\n");
	if (out.data)
		imap_write(s, out.data, out.len);
	buf_free(&out);
}

/* See imap-private.h. */
void imap_search_done(struct imap_session *s, const char *verb, int uid, int noupdate)
{
	if (noupdate)
		imap_tagged(s, "OK", "[NOUPDATE \"%s\"] %s%s completed; its result is not kept up "
			    "to date (too many updating searches, or keys too long)", s->tag,
			    uid ? "UID " : "", verb);
	else
		imap_tagged(s, "OK", "%s%s completed", uid ? "UID " : "", verb);
}

/* Free a copied argument tree. */
static void args_free(struct imap_arg *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free((void *)v[i].str);
		args_free(v[i].list, v[i].nlist);
	}
	free(v);
}

/* Copy an argument tree (the parser's is freed after the command); NULL out of memory or when
 * more than *budget octets would be held. */
static struct imap_arg *args_dup(const struct imap_arg *a, size_t n, size_t *budget)
{
	struct imap_arg *v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t cost = a[i].len + 1 + sizeof(*v);
		char *str = cost <= *budget ? malloc(a[i].len + 1) : NULL;
		if (str == NULL) {
			args_free(v, i);
			return NULL;
		}
		*budget -= cost;
		memcpy(str, a[i].str, a[i].len);
		str[a[i].len] = '\0';
		v[i] = a[i];
		v[i].str = str;
		v[i].list = NULL;
		if (a[i].type == IMAP_ARG_LIST && a[i].nlist > 0 &&
		    (v[i].list = args_dup(a[i].list, a[i].nlist, budget)) == NULL) {
			args_free(v, i + 1);
			return NULL;
		}
	}
	return v;
}

/* Free one kept search. */
static void context_free(struct imap_context *c)
{
	if (c == NULL)
		return;
	args_free(c->args, c->nargs);
	free(c->uids);
	free(c);
}

/* Remember the mailbox state a context was evaluated against. */
static void context_mark(struct imap_session *s, struct imap_context *c)
{
	c->sig_modseq = s->highestmodseq;
	c->sig_nmsgs = s->nmsgs;
	c->sig_uidnext = s->uidnext;
}

/* Drop the context with this tag (a new search with the same tag replaces it). 1 if found. */
static int context_remove(struct imap_session *s, const char *tag)
{
	for (size_t k = 0; k < s->ncontexts; k++) {
		if (strcmp(s->contexts[k]->tag, tag) != 0)
			continue;
		context_free(s->contexts[k]);
		s->contexts[k] = s->contexts[--s->ncontexts];
		s->contexts[s->ncontexts] = NULL;
		return 1;
	}
	return 0;
}

/* See imap-private.h. */
int imap_context_add(struct imap_session *s, int uid, const struct imap_sort_prog *sort,
		     const struct imap_arg *args, size_t n, const size_t *idx, size_t nidx)
{
	context_remove(s, s->tag);
	if (s->ncontexts >= IMAP_CONTEXTS_MAX)
		return -1;
	struct imap_context *c = calloc(1, sizeof(*c));
	size_t budget = IMAP_CONTEXT_ARGS_MAX;
	if (c == NULL)
		return -1;
	snprintf(c->tag, sizeof(c->tag), "%s", s->tag);
	c->uid = uid;
	if (sort != NULL) {
		c->sort = 1;
		c->prog = *sort;
	}
	c->args = args_dup(args, n, &budget);
	c->nargs = n;
	c->uids = calloc(nidx + 1, sizeof(*c->uids));
	if (c->args == NULL || c->uids == NULL) {
		context_free(c);
		return -1;
	}
	for (size_t k = 0; k < nidx; k++)
		c->uids[k] = s->msgs[idx[k]].uid;
	c->n = nidx;
	context_mark(s, c);
	s->contexts[s->ncontexts++] = c;
	return 0;
}

/* Index of uid in the selected mailbox (UID order), or -1. */
static ssize_t msg_index(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->nmsgs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nmsgs && s->msgs[lo].uid == uid ? (ssize_t)lo : -1;
}

/* See imap-private.h. */
void imap_context_expunge(struct imap_session *s, size_t i)
{
	uint32_t uid = s->msgs[i].uid;
	for (size_t k = 0; k < s->ncontexts; k++) {
		struct imap_context *c = s->contexts[k];
		for (size_t j = 0; j < c->n; j++) {
			if (c->uids[j] != uid)
				continue;
			/* a position only orders a SORT result; SEARCH results use 0 */
			imap_reply(s, "* ESEARCH (TAG \"%s\")%s REMOVEFROM (%zu %u)", c->tag,
				   c->uid ? " UID" : "", c->sort ? j + 1 : 0,
				   c->uid ? uid : (uint32_t)(i + 1));
			memmove(&c->uids[j], &c->uids[j + 1], (c->n - j - 1) * sizeof(*c->uids));
			c->n--;
			break;
		}
	}
}

/* The number a context's client knows message index i by. */
static uint32_t ctx_num(const struct imap_session *s, const struct imap_context *c, size_t i)
{
	return c->uid ? s->msgs[i].uid : (uint32_t)(i + 1);
}

/* Evaluate one context again; send what changed. 0, or -1 (it cannot be evaluated: dropped). */
static int context_refresh(struct imap_session *s, struct imap_context *c)
{
	size_t *idx = NULL, ni = 0;
	const char *why;
	int r = c->sort ? imap_sort_match(s, &c->prog, c->args, c->nargs, &idx, &ni, &why)
			: imap_search_match(s, c->args, c->nargs, &idx, &ni, &why);
	if (r < 0)
		return -1;
	unsigned char *in_new = calloc(s->nmsgs + 1, 1), *in_old = calloc(s->nmsgs + 1, 1);
	uint32_t *nu = calloc(ni + 1, sizeof(*nu));
	struct buf out;
	buf_init(&out, 64u << 20);
	if (in_new == NULL || in_old == NULL || nu == NULL) {
		free(in_new);
		free(in_old);
		free(nu);
		free(idx);
		return -1;
	}
	for (size_t k = 0; k < ni; k++) {
		in_new[idx[k]] = 1;
		nu[k] = s->msgs[idx[k]].uid;
	}
	/* removals, last position first so that each position holds when it is applied */
	size_t nrem = 0;
	for (size_t j = c->n; j-- > 0;) {
		ssize_t i = msg_index(s, c->uids[j]);
		if (i >= 0 && in_new[i]) {
			in_old[i] = 1;
			continue;
		}
		if (i < 0)
			continue;   /* gone without an EXPUNGE the client saw: nothing to say */
		if (c->sort)
			buf_appendf(&out, "%s%zu %u", nrem ? " " : "", j + 1, ctx_num(s, c, (size_t)i));
		nrem++;
	}
	if (nrem > 0 && !c->sort) {
		/* SEARCH: one ascending set at position 0 */
		uint32_t *v = calloc(nrem, sizeof(*v));
		size_t nv = 0;
		for (size_t j = 0; v && j < c->n; j++) {
			ssize_t i = msg_index(s, c->uids[j]);
			if (i >= 0 && !in_new[i])
				v[nv++] = ctx_num(s, c, (size_t)i);
		}
		buf_appendstr(&out, "0 ");
		append_set(&out, v, nv);
		free(v);
	}
	if (nrem > 0 && out.data)
		imap_reply(s, "* ESEARCH (TAG \"%s\")%s REMOVEFROM (%s)", c->tag,
			   c->uid ? " UID" : "", out.data);
	buf_reset(&out);
	size_t nadd = 0;
	uint32_t *v = calloc(ni + 1, sizeof(*v));
	for (size_t k = 0; v && k < ni; k++) {
		if (in_old[idx[k]])
			continue;
		if (c->sort)
			buf_appendf(&out, "%s%zu %u", nadd ? " " : "", k + 1,
				    ctx_num(s, c, idx[k]));
		v[nadd++] = ctx_num(s, c, idx[k]);
	}
	if (nadd > 0 && !c->sort) {
		buf_appendstr(&out, "0 ");
		append_set(&out, v, nadd);
	}
	if (nadd > 0 && out.data)
		imap_reply(s, "* ESEARCH (TAG \"%s\")%s ADDTO (%s)", c->tag, c->uid ? " UID" : "",
			   out.data);
	free(v);
	buf_free(&out);
	free(c->uids);
	c->uids = nu;
	c->n = ni;
	free(in_new);
	free(in_old);
	free(idx);
	return 0;
}

/* See imap-private.h. */
void imap_context_update(struct imap_session *s)
{
	if (s->ncontexts == 0 || s->in_context_update || s->st != IMAP_SELECTED ||
	    s->acct == NULL)
		return;
	s->in_context_update = 1;
	for (size_t k = 0; k < s->ncontexts;) {
		struct imap_context *c = s->contexts[k];
		if (c->sig_modseq == s->highestmodseq && c->sig_nmsgs == s->nmsgs &&
		    c->sig_uidnext == s->uidnext) {
			k++;
			continue;
		}
		if (context_refresh(s, c) < 0) {
			/* RFC 5267 4.2: the server may stop updating; tell the client */
			imap_reply(s, "* OK [NOUPDATE \"%s\"] This search is no longer kept up to "
				      "date", c->tag);
			context_remove(s, c->tag);
			continue;
		}
		context_mark(s, c);
		k++;
	}
	s->in_context_update = 0;
}

/* See imap-private.h. */
void imap_context_free_all(struct imap_session *s)
{
	for (size_t k = 0; k < s->ncontexts; k++) {
		context_free(s->contexts[k]);
		s->contexts[k] = NULL;
	}
	s->ncontexts = 0;
}

/* See imap-private.h. */
void imap_cmd_cancelupdate(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n == 0) {
		imap_bad(s, "Use CANCELUPDATE \"tag\" ...");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (args[i].type != IMAP_ARG_QUOTED && args[i].type != IMAP_ARG_LITERAL &&
		    args[i].type != IMAP_ARG_ATOM) {
			imap_bad(s, "CANCELUPDATE takes the tags of searches as strings");
			return;
		}
	}
	unsigned unknown = 0;
	for (size_t i = 0; i < n; i++)
		unknown += context_remove(s, args[i].str) == 0;
	if (unknown)
		imap_tagged(s, "OK", "CANCELUPDATE completed (%u tag%s had no updating search)",
			    unknown, unknown > 1 ? "s" : "");
	else
		imap_tagged(s, "OK", "CANCELUPDATE completed");
}
