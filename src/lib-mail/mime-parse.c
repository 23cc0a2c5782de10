/* mime-parse.c - split a message into its MIME tree (RFC 2045, RFC 2046, RFC 5322 header).
 *
 * One pass over the lines of the message. A stack holds the parts that are open, from the
 * root down to the part whose header or body the current line belongs to. A line that starts
 * with "--" followed by the boundary of an open multipart (innermost first; RFC 2046 5.1.1
 * says a prefix match is enough) closes every part below that multipart and either opens its
 * next child or, for "--boundary--", starts its epilogue. The line end before a boundary line
 * belongs to the boundary, not to the part that precedes it. Anything that does not fit
 * (no blank line after a header, a boundary that never comes, a close delimiter that is
 * missing) simply ends at the next boundary of an enclosing multipart or at the end of the
 * message, which is how Dovecot treats it too.
 *
 * Cost: every line is found with memchr; a line starting with "--" is compared with at most
 * MIME_DEPTH_MAX open boundaries of at most MIME_BOUNDARY_MAX octets. Each header is scanned
 * once for its Content-Type. Nothing recurses except mime_free (depth <= MIME_DEPTH_MAX + 1).
 */
#include "mime-private.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

enum parse_state {
	ST_HEADER,	/* reading the part's header */
	ST_BODY,	/* in the body; a multipart's boundary is live */
	ST_EPILOGUE,	/* multipart after its close delimiter: boundary no longer live */
	ST_CLOSED,
};

struct parse_ctx {
	const char *msg;
	size_t len;
	struct mime_part *open[MIME_DEPTH_MAX + 1];
	size_t nopen;
	size_t nparts;
	size_t lineno;	/* LF octets before the current line */
	int oom;
};

/* Length of the empty line at msg[p] ("\n" or "\r\n"), or 0 if the line is not empty. */
static size_t blank_line_len(const char *s, size_t len, size_t p)
{
	if (p < len && s[p] == '\n')
		return 1;
	if (p + 1 < len && s[p] == '\r' && s[p + 1] == '\n')
		return 2;
	return 0;
}

/* Length of the header section of msg[0..len); the shared reader's answer (header.h). */
size_t mime_header_len(const char *msg, size_t len)
{
	return hdr_section_len(msg, len);
}

/* First field called name: its value unfolded and trimmed into out. 1 found, 0 not, -1 full. */
int mime_header_get(const char *hdr, size_t hdrlen, const char *name, struct buf *out)
{
	struct hdr_field f;
	if (!hdr_find(hdr, hdrlen, name, &f))
		return 0;
	return hdr_value_unfold(&f, out) < 0 ? -1 : 1;
}

/* Allocate a part as the last child of parent (NULL for the root), its header at off. */
static struct mime_part *part_new(struct parse_ctx *ctx, struct mime_part *parent, size_t off)
{
	struct mime_part *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		ctx->oom = 1;
		return NULL;
	}
	p->hdr_off = p->body_off = off;
	p->state = ST_HEADER;
	p->parent = parent;
	if (parent != NULL) {
		p->depth = parent->depth + 1;
		if (parent->last_child != NULL)
			parent->last_child->next = p;
		else
			parent->children = p;
		parent->last_child = p;
		parent->nchildren++;
	}
	ctx->nparts++;
	return p;
}

/* Look at the finished header of p and set its flags (and boundary, for a multipart). */
static void part_classify(struct parse_ctx *ctx, struct mime_part *p)
{
	struct hdr_field f;
	struct mime_ctype ct;
	int can_open = p->depth < MIME_DEPTH_MAX;
	const char *hdr = ctx->msg + p->hdr_off;

	if (!hdr_find(hdr, p->hdr_len, "Content-Type", &f)) {
		/* RFC 2046 5.1.5: inside multipart/digest the default is message/rfc822 */
		if (p->parent != NULL && (p->parent->flags & MIME_PART_DIGEST) != 0) {
			if (can_open && ctx->nparts < MIME_PARTS_MAX)
				p->flags |= MIME_PART_RFC822;
			else
				p->flags |= MIME_PART_FORCED_TEXT;
		}
		return;
	}
	if (mime_ctype_parse(f.value, f.value_len, 1, &ct) < 0)
		return;	/* RFC 2045 5.2: an invalid Content-Type means text/plain */
	if (hdr_eq_ci(ct.type, ct.type_len, "multipart")) {
		if (!can_open) {
			p->flags |= MIME_PART_FORCED_TEXT;
			return;
		}
		p->flags |= MIME_PART_MULTIPART;
		if (hdr_eq_ci(ct.subtype, ct.subtype_len, "digest"))
			p->flags |= MIME_PART_DIGEST;
		const struct mime_param *bp = mime_ctype_param(&ct, "boundary");
		if (bp == NULL)
			return;	/* a multipart without children, as Dovecot shows it */
		struct buf b;
		buf_init(&b, MIME_BOUNDARY_MAX);
		/* too long, empty, or no memory for it: a multipart without children */
		if (mime_param_value(bp, &b) == 0 && b.len > 0) {
			p->boundary = b.data;
			p->boundary_len = b.len;
		} else {
			buf_free(&b);
		}
	} else if (hdr_eq_ci(ct.type, ct.type_len, "message") &&
		   hdr_eq_ci(ct.subtype, ct.subtype_len, "rfc822")) {
		if (can_open && ctx->nparts < MIME_PARTS_MAX)
			p->flags |= MIME_PART_RFC822;
		else
			p->flags |= MIME_PART_FORCED_TEXT;
	}
}

/* Close p so that it ends at end (lf_end LF octets before end). */
static void part_close(struct parse_ctx *ctx, struct mime_part *p, size_t end, size_t lf_end)
{
	if (p->state == ST_HEADER) {
		/* the header never ended: it runs up to end and the body is empty */
		p->hdr_len = end > p->hdr_off ? end - p->hdr_off : 0;
		p->body_off = p->hdr_off + p->hdr_len;
		p->body_len = 0;
		p->lines = 0;
		part_classify(ctx, p);
		if ((p->flags & MIME_PART_RFC822) != 0) {
			/* keep the invariant: an rfc822 part has its (here empty) message */
			struct mime_part *m = part_new(ctx, p, p->body_off);
			if (m != NULL)
				m->state = ST_CLOSED;
		}
	} else if (end > p->body_off) {
		p->body_len = end - p->body_off;
		p->lines = lf_end - p->lf_start;
	} else {
		p->body_len = 0;
		p->lines = 0;
	}
	free(p->boundary);
	p->boundary = NULL;
	p->boundary_len = 0;
	p->state = ST_CLOSED;
}

/* The header of the innermost open part ended with the blank line [ls, le). */
static void header_end(struct parse_ctx *ctx, size_t le)
{
	struct mime_part *p = ctx->open[ctx->nopen - 1];
	p->hdr_len = le - p->hdr_off;
	p->body_off = le;
	p->lf_start = ctx->lineno + 1;	/* a blank line always ends in LF */
	p->state = ST_BODY;
	part_classify(ctx, p);
	if ((p->flags & MIME_PART_RFC822) != 0) {
		struct mime_part *m = part_new(ctx, p, le);
		if (m != NULL)
			ctx->open[ctx->nopen++] = m;	/* depth < MIME_DEPTH_MAX checked */
	}
}

/* Does the line [ls, le) start with "--" and a live boundary? Sets *k (index in the open
 * stack) and *close ("--boundary--"). Innermost boundary first, as RFC 2046 nesting needs. */
static int boundary_match(const struct parse_ctx *ctx, size_t ls, size_t le, size_t *k,
			  int *close)
{
	const char *s = ctx->msg + ls + 2;
	size_t n = le - ls - 2;
	for (size_t i = ctx->nopen; i-- > 0;) {
		const struct mime_part *p = ctx->open[i];
		if (p->state != ST_BODY || p->boundary == NULL || n < p->boundary_len)
			continue;
		if (memcmp(s, p->boundary, p->boundary_len) != 0)
			continue;
		*k = i;
		*close = n >= p->boundary_len + 2 && s[p->boundary_len] == '-' &&
			 s[p->boundary_len + 1] == '-';
		return 1;
	}
	return 0;
}

/* A boundary line [ls, le) of the multipart open[k]: close what is below it, go on. */
static void boundary_line(struct parse_ctx *ctx, size_t k, int close, size_t ls, size_t le)
{
	size_t end = ls, lf_end = ctx->lineno;
	/* RFC 2046 5.1.1: the CRLF before "--boundary" is part of the delimiter */
	if (end > 0 && ctx->msg[end - 1] == '\n') {
		end--;
		lf_end--;
		if (end > 0 && ctx->msg[end - 1] == '\r')
			end--;
	}
	while (ctx->nopen > k + 1) {
		ctx->nopen--;
		part_close(ctx, ctx->open[ctx->nopen], end, lf_end);
	}
	struct mime_part *m = ctx->open[k];
	if (close) {
		m->state = ST_EPILOGUE;
		return;
	}
	if (ctx->nparts >= MIME_PARTS_MAX)
		return;	/* XXX: the rest stays in the multipart's body without a node */
	struct mime_part *c = part_new(ctx, m, le);
	if (c != NULL)
		ctx->open[ctx->nopen++] = c;
}

/* Free one part and everything below it. */
static void part_free(struct mime_part *p)
{
	while (p != NULL) {
		struct mime_part *next = p->next;
		part_free(p->children);
		free(p->boundary);
		free(p);
		p = next;
	}
}

/* Free the tree. */
void mime_free(struct mime_part **root)
{
	if (root == NULL || *root == NULL)
		return;
	part_free(*root);
	*root = NULL;
}

/* Parse msg[0..len) into a tree of offsets; NULL only when out of memory. */
struct mime_part *mime_parse(const char *msg, size_t len)
{
	struct parse_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.msg = msg;
	ctx.len = len;
	struct mime_part *root = part_new(&ctx, NULL, 0);
	if (root == NULL)
		return NULL;
	ctx.open[ctx.nopen++] = root;

	size_t pos = 0;
	while (pos < len && !ctx.oom) {
		size_t ls = pos, k;
		const char *nl = memchr(msg + ls, '\n', len - ls);
		size_t le = nl != NULL ? (size_t)(nl - msg) + 1 : len;
		int close;
		if (le - ls >= 2 && msg[ls] == '-' && msg[ls + 1] == '-' &&
		    boundary_match(&ctx, ls, le, &k, &close))
			boundary_line(&ctx, k, close, ls, le);
		else if (ctx.open[ctx.nopen - 1]->state == ST_HEADER &&
			 blank_line_len(msg, len, ls) == le - ls)
			header_end(&ctx, le);
		if (nl != NULL)
			ctx.lineno++;
		pos = le;
	}
	while (ctx.nopen > 0 && !ctx.oom) {
		ctx.nopen--;
		part_close(&ctx, ctx.open[ctx.nopen], len, ctx.lineno);
	}
	if (ctx.oom) {
		part_free(root);
		return NULL;
	}
	return root;
}
