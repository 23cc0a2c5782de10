/* imap-notify.c - NOTIFY (RFC 5465): a client names mailboxes (SELECTED, SELECTED-DELAYED,
 * INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES) and the events it wants to hear about
 * (MessageNew, MessageExpunge, FlagChange, MailboxName, SubscriptionChange), and is then told of
 * them at any time between commands, not only during IDLE: the session stays on its account's
 * inotify watch (imap-idle.c), and each wake compares the account's mailbox list (messages,
 * UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ, subscription) with the one it last reported. Changes of
 * other mailboxes go out as untagged STATUS, new, deleted and renamed mailboxes and
 * subscription changes as untagged LIST, and the selected mailbox (with a SELECTED filter) is
 * synchronised as by NOOP (SELECTED-DELAYED: expunges wait for a command that allows them). */
#include "imap-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NOTIFY_GROUPS_MAX 16      /* event groups of one NOTIFY SET */
#define NOTIFY_NAMES_MAX 100      /* mailboxes named by one SUBTREE or MAILBOXES filter */
#define NOTIFY_BOXES_MAX 10000    /* mailboxes of an account whose state is remembered */
#define NOTIFY_FETCH_MAX 5        /* fetch attributes of SELECTED MessageNew: those the message
				   * table answers without reading the message */

enum {
	EV_NEW = 1 << 0, EV_EXPUNGE = 1 << 1, EV_FLAGS = 1 << 2, EV_NAME = 1 << 3, EV_SUBS = 1 << 4
};

enum notify_fetch { NFA_UID, NFA_FLAGS, NFA_INTERNALDATE, NFA_SIZE, NFA_MODSEQ };

enum notify_filter { NF_INBOXES, NF_PERSONAL, NF_SUBSCRIBED, NF_SUBTREE, NF_MAILBOXES };

struct notify_group {
	enum notify_filter kind;
	char (*names)[256];
	size_t nnames;
	unsigned events;
};

/* What the client was last told of one mailbox. */
struct notify_box {
	char name[256];
	uint32_t messages, uidnext, uidvalidity;
	uint64_t highestmodseq;
	int subscribed;
};

struct imap_notify {
	int has_selected, selected_delayed;
	unsigned selected_events;
	enum notify_fetch fetch[NOTIFY_FETCH_MAX];   /* SELECTED (MessageNew (...)) */
	size_t nfetch;
	struct notify_group groups[NOTIFY_GROUPS_MAX];
	size_t ngroups;
	struct notify_box *boxes;
	size_t nboxes;
};

/* Free a NOTIFY state. */
static void notify_free(struct imap_notify *n)
{
	if (n == NULL)
		return;
	for (size_t g = 0; g < n->ngroups; g++)
		free(n->groups[g].names);
	free(n->boxes);
	free(n);
}

/* The events a mailbox (with its subscription) gets from the non-selected filters. */
static unsigned box_events(const struct imap_notify *n, const char *name, int subscribed)
{
	unsigned ev = 0;
	for (size_t g = 0; g < n->ngroups; g++) {
		const struct notify_group *gr = &n->groups[g];
		int hit = 0;
		switch (gr->kind) {
		case NF_PERSONAL:
			hit = 1;
			break;
		case NF_INBOXES:   /* where deliveries go: the INBOX (no Sieve filing here) */
			hit = strcmp(name, "INBOX") == 0;
			break;
		case NF_SUBSCRIBED:
			hit = subscribed;
			break;
		case NF_SUBTREE:
		case NF_MAILBOXES:
			for (size_t k = 0; k < gr->nnames && !hit; k++) {
				size_t l = strlen(gr->names[k]);
				hit = strcmp(name, gr->names[k]) == 0 ||
				      (gr->kind == NF_SUBTREE && strncmp(name, gr->names[k], l) == 0 &&
				       name[l] == '/');
			}
			break;
		}
		if (hit)
			ev |= gr->events;
	}
	return ev;
}

/* Untagged STATUS of a mailbox with the items its events call for (RFC 5465 5.1, 5.2). */
static void send_status(struct imap_session *s, const struct store_mailbox_info *mb, unsigned ev)
{
	struct buf out;
	buf_init(&out, 4096);
	buf_appendstr(&out, "* STATUS ");
	imap_append_mailbox(s, &out, mb->name);
	const char *sep = "";
	buf_appendstr(&out, " (");
	if (ev & (EV_NEW | EV_EXPUNGE)) {
		buf_appendf(&out, "MESSAGES %u", mb->messages);
		sep = " ";
	}
	if (ev & EV_NEW) {
		buf_appendf(&out, " UIDNEXT %u", mb->uidnext);
	}
	if (ev & (EV_NEW | EV_FLAGS)) {
		buf_appendf(&out, "%sUIDVALIDITY %u", sep, mb->uidvalidity);
		sep = " ";
	}
	if (ev & EV_FLAGS)
		buf_appendf(&out, " HIGHESTMODSEQ %llu", (unsigned long long)mb->highestmodseq);
	buf_appendstr(&out, ")\r\n");
	if (out.data)
		imap_write(s, out.data, out.len);
	buf_free(&out);
}

/* Untagged LIST of a mailbox name (RFC 5465 5.4, 5.5). */
static void send_list(struct imap_session *s, const char *name, const char *attrs)
{
	struct buf out;
	buf_init(&out, 4096);
	buf_appendf(&out, "* LIST (%s) \"/\" ", attrs);
	imap_append_mailbox(s, &out, name);
	buf_appendstr(&out, "\r\n");
	if (out.data)
		imap_write(s, out.data, out.len);
	buf_free(&out);
}

/* Remember the account's mailboxes as the client now knows them. */
static void remember(struct imap_notify *n, const struct store_mailbox_info *v, size_t nv)
{
	size_t k = nv < NOTIFY_BOXES_MAX ? nv : NOTIFY_BOXES_MAX;
	struct notify_box *b = calloc(k + 1, sizeof(*b));
	if (b == NULL)
		return;   /* keep the old picture; the next look reports against it */
	for (size_t i = 0; i < k; i++) {
		snprintf(b[i].name, sizeof(b[i].name), "%s", v[i].name);
		b[i].messages = v[i].messages;
		b[i].uidnext = v[i].uidnext;
		b[i].uidvalidity = v[i].uidvalidity;
		b[i].highestmodseq = v[i].highestmodseq;
		b[i].subscribed = v[i].subscribed;
	}
	free(n->boxes);
	n->boxes = b;
	n->nboxes = k;
}

/* The remembered state of a mailbox, or NULL. */
static const struct notify_box *known(const struct imap_notify *n, const char *name)
{
	for (size_t i = 0; i < n->nboxes; i++)
		if (strcmp(n->boxes[i].name, name) == 0)
			return &n->boxes[i];
	return NULL;
}

enum report_mode { REPORT_CHANGES, REPORT_INITIAL_STATUS, REPORT_SILENT };

/* Compare the account's mailboxes with what the client was told; report the differences its
 * filters ask for (REPORT_INITIAL_STATUS: the STATUS of every watched mailbox, for NOTIFY SET
 * STATUS; REPORT_SILENT: nothing), then remember the new picture. */
static void notify_report(struct imap_session *s, enum report_mode mode)
{
	int initial = mode != REPORT_CHANGES;
	struct imap_notify *n = s->notify;
	struct store_mailbox_info *v;
	const char *err;
	int nv = store_mailbox_list(s->acct, &v, &err);
	if (nv < 0)
		return;
	for (int i = 0; i < nv && i < NOTIFY_BOXES_MAX; i++) {
		const struct store_mailbox_info *mb = &v[i];
		unsigned ev = box_events(n, mb->name, mb->subscribed);
		int selected = s->st == IMAP_SELECTED && strcmp(s->box, mb->name) == 0;
		const struct notify_box *old = known(n, mb->name);
		if (ev == 0)
			continue;
		if (!initial && old == NULL && (ev & EV_NAME)) {
			send_list(s, mb->name, mb->subscribed && (ev & EV_SUBS) ? "\\Subscribed" : "");
			continue;
		}
		if (!initial && old != NULL && old->subscribed != mb->subscribed && (ev & EV_SUBS))
			send_list(s, mb->name, mb->subscribed ? "\\Subscribed" : "");
		if (selected || !(ev & (EV_NEW | EV_EXPUNGE | EV_FLAGS)))
			continue;   /* the selected mailbox speaks EXISTS/EXPUNGE/FETCH instead */
		int changed = old == NULL || old->uidvalidity != mb->uidvalidity ||
			      ((ev & EV_NEW) && old->uidnext != mb->uidnext) ||
			      ((ev & (EV_NEW | EV_EXPUNGE)) && old->messages != mb->messages) ||
			      ((ev & EV_FLAGS) && old->highestmodseq != mb->highestmodseq);
		if (mode == REPORT_INITIAL_STATUS || (!initial && changed && old != NULL))
			send_status(s, mb, ev);
	}
	/* mailboxes gone (deleted or renamed away) */
	for (size_t k = 0; !initial && k < n->nboxes; k++) {
		int found = 0;
		for (int i = 0; i < nv && !found; i++)
			found = strcmp(v[i].name, n->boxes[k].name) == 0;
		if (!found && (box_events(n, n->boxes[k].name, n->boxes[k].subscribed) & EV_NAME))
			send_list(s, n->boxes[k].name, "\\NonExistent");
	}
	remember(n, v, (size_t)nv);
	free(v);
}

/* See imap-private.h. */
int imap_notify_ready(const struct imap_session *s)
{
	return s->notify != NULL && s->st != IMAP_NOTAUTH && !s->base.closing && s->resume == NULL &&
	       !s->base.job_running && imap_parser_at_start(s->parser);
}

/* See imap-private.h. */
void imap_notify_check(struct imap_session *s)
{
	if (s->notify == NULL || s->acct == NULL)
		return;
	if (s->st == IMAP_SELECTED && s->notify->has_selected)
		imap_sync_mailbox(s, !s->notify->selected_delayed || s->idling);
	notify_report(s, REPORT_CHANGES);
}

/* See imap-private.h. */
void imap_notify_new(struct imap_session *s, size_t first)
{
	struct imap_notify *n = s->notify;
	if (n == NULL || !n->has_selected || n->nfetch == 0 || !(n->selected_events & EV_NEW))
		return;
	for (size_t i = first; i < s->nmsgs; i++) {
		const struct imap_msg *m = &s->msgs[i];
		struct buf out;
		char tmp[1200];
		buf_init(&out, 8192);
		buf_appendf(&out, "* %zu FETCH (", i + 1);
		for (size_t k = 0; k < n->nfetch; k++) {
			if (k)
				buf_appendstr(&out, " ");
			switch (n->fetch[k]) {
			case NFA_UID:
				buf_appendf(&out, "UID %u", m->uid);
				break;
			case NFA_FLAGS:
				buf_appendf(&out, "FLAGS (%s)",
					    imap_flags_text(s, imap_msg_flags(s, m), m->keywords, tmp,
							    sizeof(tmp)));
				break;
			case NFA_INTERNALDATE:
				imap_date(m->internaldate, tmp, sizeof(tmp));
				buf_appendf(&out, "INTERNALDATE \"%s\"", tmp);
				break;
			case NFA_SIZE:
				buf_appendf(&out, "RFC822.SIZE %llu", (unsigned long long)m->size);
				break;
			case NFA_MODSEQ:
				buf_appendf(&out, "MODSEQ (%llu)", (unsigned long long)m->modseq);
				break;
			}
		}
		buf_appendstr(&out, ")\r\n");
		if (out.data)
			imap_write(s, out.data, out.len);
		buf_free(&out);
	}
}

/* See imap-private.h. */
void imap_notify_free(struct imap_session *s)
{
	notify_free(s->notify);
	s->notify = NULL;
}

/* Parse MessageNew's fetch attributes into nt (RFC 5465 5.2; SELECTED only). 0, or -1. */
static int parse_fetch(const struct imap_arg *a, struct imap_notify *nt, const char **why_r)
{
	static const struct { const char *name; enum notify_fetch f; } atts[] = {
		{ "UID", NFA_UID }, { "FLAGS", NFA_FLAGS }, { "INTERNALDATE", NFA_INTERNALDATE },
		{ "RFC822.SIZE", NFA_SIZE }, { "MODSEQ", NFA_MODSEQ } };
	*why_r = "NOTIFY MessageNew fetch attributes: UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ, "
		 "for SELECTED only; FETCH anything else";
	if (nt == NULL || a->nlist == 0 || a->nlist > NOTIFY_FETCH_MAX)
		return -1;
	for (size_t k = 0; k < a->nlist; k++) {
		size_t j;
		if (a->list[k].type != IMAP_ARG_ATOM)
			return -1;
		for (j = 0; j < sizeof(atts) / sizeof(atts[0]); j++)
			if (strcasecmp(a->list[k].str, atts[j].name) == 0)
				break;
		if (j == sizeof(atts) / sizeof(atts[0]))
			return -1;
		nt->fetch[k] = atts[j].f;
	}
	nt->nfetch = a->nlist;
	return 0;
}

/* Parse an events list ("(MessageNew FlagChange)" or NONE) into *ev; nt (NULL but for SELECTED)
 * takes MessageNew's fetch attributes. 0, -1 BAD (*why_r), -2 an event this server does not
 * report (NO [BADEVENT]). */
static int parse_events(const struct imap_arg *a, struct imap_notify *nt, unsigned *ev,
			const char **why_r)
{
	static const struct { const char *name; unsigned bit; } known_ev[] = {
		{ "MessageNew", EV_NEW }, { "MessageExpunge", EV_EXPUNGE },
		{ "FlagChange", EV_FLAGS }, { "MailboxName", EV_NAME },
		{ "SubscriptionChange", EV_SUBS } };
	*ev = 0;
	if (a->type == IMAP_ARG_ATOM && strcasecmp(a->str, "NONE") == 0)
		return 0;
	if (a->type != IMAP_ARG_LIST || a->nlist == 0) {
		*why_r = "NOTIFY events are a list such as (MessageNew MessageExpunge) or NONE";
		return -1;
	}
	for (size_t k = 0; k < a->nlist; k++) {
		const struct imap_arg *e = &a->list[k];
		size_t j;
		if (e->type == IMAP_ARG_LIST && k > 0 && a->list[k - 1].type == IMAP_ARG_ATOM &&
		    strcasecmp(a->list[k - 1].str, "MessageNew") == 0) {
			if (parse_fetch(e, nt, why_r) < 0)
				return -1;
			continue;
		}
		if (e->type != IMAP_ARG_ATOM) {
			*why_r = "NOTIFY events are atoms";
			return -1;
		}
		for (j = 0; j < sizeof(known_ev) / sizeof(known_ev[0]); j++)
			if (strcasecmp(e->str, known_ev[j].name) == 0)
				break;
		if (j < sizeof(known_ev) / sizeof(known_ev[0])) {
			*ev |= known_ev[j].bit;
			continue;
		}
		if (strcasecmp(e->str, "AnnotationChange") == 0 ||
		    strcasecmp(e->str, "MailboxMetadataChange") == 0 ||
		    strcasecmp(e->str, "ServerMetadataChange") == 0)
			return -2;
		*why_r = "Unknown NOTIFY event";
		return -1;
	}
	return 0;
}

/* Parse one or more mailbox names into a malloc'd array. 0, or -1 with *why_r. */
static int parse_names(struct imap_session *s, const struct imap_arg *a, struct notify_group *g,
		       const char **why_r)
{
	const struct imap_arg *v = a->type == IMAP_ARG_LIST ? a->list : a;
	size_t nv = a->type == IMAP_ARG_LIST ? a->nlist : 1;
	if (nv == 0 || nv > NOTIFY_NAMES_MAX) {
		*why_r = "NOTIFY SUBTREE and MAILBOXES take 1 to 100 mailbox names";
		return -1;
	}
	g->names = calloc(nv, sizeof(*g->names));
	if (g->names == NULL) {
		*why_r = "Out of memory";
		return -1;
	}
	for (size_t k = 0; k < nv; k++) {
		if (!imap_arg_is_astring(&v[k]) ||
		    imap_mailbox_arg(s, &v[k], g->names[k], sizeof(g->names[k])) < 0) {
			*why_r = "Invalid mailbox name in NOTIFY";
			return -1;
		}
	}
	g->nnames = nv;
	return 0;
}

/* See imap-private.h. */
void imap_cmd_notify(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	const char *why = "Use NOTIFY SET [STATUS] (filter (events)) ... or NOTIFY NONE";
	if (n == 1 && imap_arg_atom_equals(&args[0], "NONE")) {
		imap_notify_free(s);
		if (!s->idling)
			imap_idle_unwatch(s);
		imap_tagged(s, "OK", "NOTIFY completed");
		return;
	}
	if (n < 2 || !imap_arg_atom_equals(&args[0], "SET")) {
		imap_bad(s, "%s", why);
		return;
	}
	size_t i = 1;
	int status = 0;
	if (imap_arg_atom_equals(&args[i], "STATUS")) {
		status = 1;
		i++;
	}
	struct imap_notify *nt = calloc(1, sizeof(*nt));
	if (nt == NULL || i >= n || n - i > NOTIFY_GROUPS_MAX + 2) {
		free(nt);
		imap_bad(s, "%s", i >= n ? why : "Too many NOTIFY event groups");
		return;
	}
	for (; i < n; i++) {
		const struct imap_arg *g = &args[i];
		if (g->type != IMAP_ARG_LIST || g->nlist < 2 || g->list[0].type != IMAP_ARG_ATOM)
			goto bad;
		const char *f = g->list[0].str;
		unsigned ev;
		int sel = strcasecmp(f, "SELECTED") == 0 || strcasecmp(f, "SELECTED-DELAYED") == 0;
		int r = parse_events(&g->list[g->nlist - 1], sel ? nt : NULL, &ev, &why);
		if (r == -2) {
			notify_free(nt);
			imap_tagged(s, "NO", "[BADEVENT (MessageNew MessageExpunge FlagChange "
					     "MailboxName SubscriptionChange)] Event not supported");
			return;
		}
		if (r < 0)
			goto bad;
		if (sel) {
			if (g->nlist != 2)
				goto bad;
			if (ev & (EV_NAME | EV_SUBS)) {
				why = "MailboxName and SubscriptionChange do not apply to SELECTED";
				goto bad;
			}
			nt->has_selected = 1;
			nt->selected_delayed = strcasecmp(f, "SELECTED-DELAYED") == 0;
			nt->selected_events = ev;
			continue;
		}
		if (nt->ngroups >= NOTIFY_GROUPS_MAX) {
			why = "Too many NOTIFY event groups";
			goto bad;
		}
		struct notify_group *gr = &nt->groups[nt->ngroups];
		gr->events = ev;
		if (strcasecmp(f, "INBOXES") == 0 || strcasecmp(f, "PERSONAL") == 0 ||
		    strcasecmp(f, "SUBSCRIBED") == 0) {
			if (g->nlist != 2)
				goto bad;
			gr->kind = f[0] == 'I' || f[0] == 'i' ? NF_INBOXES :
				   f[0] == 'P' || f[0] == 'p' ? NF_PERSONAL : NF_SUBSCRIBED;
		} else if (strcasecmp(f, "SUBTREE") == 0 || strcasecmp(f, "MAILBOXES") == 0) {
			if (g->nlist != 3)
				goto bad;
			gr->kind = f[1] == 'U' || f[1] == 'u' ? NF_SUBTREE : NF_MAILBOXES;
			nt->ngroups++;   /* so that notify_free frees the names */
			if (parse_names(s, &g->list[1], gr, &why) < 0)
				goto bad;
			continue;
		} else {
			why = "Unknown NOTIFY filter (SELECTED SELECTED-DELAYED INBOXES PERSONAL "
			      "SUBSCRIBED SUBTREE MAILBOXES)";
			goto bad;
		}
		nt->ngroups++;
	}
	imap_notify_free(s);
	s->notify = nt;
	notify_report(s, status ? REPORT_INITIAL_STATUS : REPORT_SILENT);
	imap_idle_watch(s);   /* -1: no watch; the session then hears at NOOP and IDLE */
	imap_tagged(s, "OK", "NOTIFY completed");
	return;
bad:
	notify_free(nt);
	imap_bad(s, "%s", why);
}
