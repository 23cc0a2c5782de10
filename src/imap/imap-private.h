/* imap-private.h - the IMAP server's session, shared by its files. */
#ifndef POSTINO_IMAP_PRIVATE_H
#define POSTINO_IMAP_PRIVATE_H

#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "conn.h"
#include "ev.h"
#include "imap-parser.h"
#include "store.h"
#include "imap.h"

#define IMAP_LINE_MIN 8192             /* RFC 7162 section 4: clients may send lines this long;
					* a smaller line_length_limit is raised to it */
#define IMAP_LITERAL_MINUS_MAX 4096    /* RFC 7888 section 4: LITERAL- non-synchronizing literal */
#define IMAP_PREAUTH_MAX_ERRORS 5      /* BAD commands before login that close the connection
					* (a lower max_errors wins) */
#define IMAP_LITERAL_MAX (64u << 20)   /* APPEND literal; APPENDLIMIT advertises the real one */
#define IMAP_DEPTH_MAX 100             /* parenthesis nesting */
#define IMAP_ARGS_MAX 100000           /* arguments in one command */
#define IMAP_OUT_HIWAT 262144          /* stop producing FETCH output above this */
#define IMAP_OUT_MAX (16u << 20)       /* queued output cap */
#define IMAP_IDLE_POLL_MS 500          /* how often an IDLE session without an inotify watch
					* looks for changes (imap-idle.c) */
#define IMAP_IDLE_SAFETY_MS 300000     /* a watched IDLE session looks anyway (writes inotify
					* cannot see, e.g. by another host on a network file
					* system) */
#define IMAP_AUTOLOGOUT_S 1800         /* RFC 9051: at least 30 minutes once logged in; a
					* longer command_timeout raises it */
#define IMAP_PREAUTH_TIMEOUT_S 60      /* before login when command_timeout is 0 */
#define IMAP_BOX_MAX 1024              /* a selected mailbox's name, with its NUL (longer is cut) */
#define IMAP_CONTEXTS_MAX 10           /* RFC 5267 UPDATE searches kept per session; more get
					* OK [NOUPDATE] (each is evaluated again after changes) */
#define IMAP_SORT_KEYS_MAX 8           /* criteria in one SORT program */
#define IMAP_APPEND_MESSAGES_MAX 4     /* one APPEND holds at most this many messages' worth of
					* octets (literals, or CATENATE results) */

enum imap_state { IMAP_NOTAUTH, IMAP_AUTH, IMAP_SELECTED, IMAP_LOGOUT };

struct imap_msg {
	uint32_t uid;
	unsigned flags;
	uint64_t keywords;
	uint64_t modseq;
	uint64_t size;
	time_t internaldate;
	time_t savedate;
	int in_new;
	char *fname;
	int recent;             /* \Recent in this session (RFC 3501 2.3.2; not in IMAP4rev2) */
};

#define IMAP_F_RECENT (1u << 16)   /* session-only flag bit for imap_flags_text */

/* A parsed SORT program (RFC 5256): criteria (enum in imap-sort.c) and their REVERSE. */
struct imap_sort_prog {
	int crit[IMAP_SORT_KEYS_MAX];
	int reverse[IMAP_SORT_KEYS_MAX];
	size_t n;
};

/* The RETURN options of SEARCH and SORT (RFC 4731 ESEARCH, RFC 5267 ESORT and CONTEXT, RFC 9394
 * PARTIAL). */
struct imap_search_ret {
	int esearch;                   /* answer with ESEARCH */
	int min, max, count, all, save, update, partial;
	int64_t plo, phi;              /* PARTIAL range, plo <= phi in magnitude; negative: from the
					* end (-1 is the last result) */
};

struct imap_context;
struct imap_notify;

struct imap_session;
/* A command that continues (FETCH output, IDLE, a pool job) keeps its state here. */
typedef int imap_resume_fn(struct imap_session *s);   /* 1 done, 0 call again later */

struct imap_session {
	struct session base;
	struct conn conn;
	struct imap_parser *parser;
	struct ev_timer timer;
	enum imap_state st;
	unsigned errors;
	char user[321];
	uint64_t quota;                /* storage limit in octets, 0 = none */
	/* ENABLEd */
	int rev2, utf8, condstore, qresync;
	/* the account and the selected mailbox */
	struct store_account *acct;
	char *box;                     /* the selected mailbox, "" when none (imap_no_box; the
					* others are allocated: an idle session keeps no 1 KB) */
	int readonly;
	uint32_t recent_mine_from;     /* [from, to): UIDs whose \Recent this session's APPEND */
	uint32_t recent_mine_to;       /* claimed (store_append_multi_claim), for its next look */
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;        /* flag changes and new messages reported up to here */
	uint64_t expmodseq;            /* expunges reported up to here (they may lag, RFC 9051
					* 7.5.1: not during FETCH, STORE or SEARCH) */
	struct imap_msg *msgs;
	size_t nmsgs, capmsgs;
	/* a command in progress */
	char tag[128];
	imap_resume_fn *resume;
	void *cmd_ctx;
	void (*cmd_free)(void *ctx);
	int idling;
	struct ev_timer idle_timer;
	struct idle_watch *idle_watch;         /* the account directory's inotify watch (IDLE) */
	struct imap_session *idle_next, *idle_prev;   /* the watch's sessions */
	/* at rest (inactive): acct is closed; acct_root reopens it, acct_sig tells an IDLE poll
	 * whether anything changed since */
	char *acct_root;
	struct ev_timer rest_timer;
	uint64_t acct_sig[4];
	uint32_t *searchres;           /* SEARCHRES "$" */
	size_t nsearchres;
	char (*keyword_names)[64];    /* keyword id -> name cache (64 rows, allocated at the first
				       * name: most mailboxes have none), or NULL */
	int nkeywords_known;          /* > 0 only with keyword_names allocated */
	uint64_t kw_announced;        /* keywords the last untagged FLAGS listed */
	struct imap_context *contexts[IMAP_CONTEXTS_MAX];   /* RFC 5267 UPDATE searches */
	size_t ncontexts;
	int in_context_update;
	struct imap_notify *notify;    /* RFC 5465 NOTIFY SET, or NULL */
};

/* A write the current command hands to the pool (imap-write.c): docs/architecture.md, "no disk
 * write on the loop thread". The command's own context begins with this struct. work() runs on
 * a pool thread with that thread's own index handle; it never touches the session, and reads
 * only the context and the command's arguments (the parser is left alone while the session
 * waits). done() runs on the loop: it answers and frees the context's own fields (not the
 * context). The session reads no further command until then; if it lost its client
 * meanwhile it is reaped after done(). */
struct imap_wjob {
	struct imap_session *s;        /* done() only */
	struct store_account *acct;    /* work() only: the pool thread's handle */
	const char *err;               /* NULL, or errbuf: what failed (for logs) */
	int no_handle;                 /* the index could not be opened: work() did not run */
	char errbuf[256];
	char root[4096];
	void (*work)(struct imap_wjob *j);
	void (*done)(struct imap_wjob *j);
};
/* Run j (malloc'd by the caller, freed after done()) for the current command. */
void imap_write_job(struct imap_session *s, struct imap_wjob *j, void (*work)(struct imap_wjob *),
		    void (*done)(struct imap_wjob *));
/* work(): keep a store error message in the job (the handle's own buffer is the thread's). */
void imap_wjob_error(struct imap_wjob *j, const char *err);
/* done(): answer NO [UNAVAILABLE] if work() could not run at all. 1 if it did so. */
int imap_wjob_failed(struct imap_wjob *j, const char *cmd);

/* Keyword names a write learnt (ids < 64), for the session's cache. */
struct imap_kwnames {
	uint64_t mask;
	char name[64][64];
};
/* A flag list to store flags and keyword bits, creating keywords: a write, so on the pool
 * (acct: the job's handle). Names go to kw. -1 invalid (nothing created). */
int imap_flags_resolve(struct store_account *acct, const struct imap_arg *list, size_t n,
		       unsigned *flags_r, uint64_t *kw_r, struct imap_kwnames *kw);
/* The same without creating keywords (a read, for the loop's handle): 1 if one does not exist
 * yet (then the pool must resolve them), 0 ok, -1 invalid. */
int imap_flags_lookup(struct store_account *acct, const struct imap_arg *list, size_t n,
		      unsigned *flags_r, uint64_t *kw_r, struct imap_kwnames *kw);
/* 0 if every flag of the list is valid (no side effect), else -1. */
int imap_flags_valid(const struct imap_arg *list, size_t n);
/* The "no mailbox selected" value of imap_session.box (never freed). */
extern char imap_no_box[1];
/* Remember keyword id's name (0 <= id < 64); a name that finds no memory stays unknown. */
void imap_keyword_name_set(struct imap_session *s, int id, const char *name);
/* done(): take the keyword names a write learnt into the session's cache. */
void imap_keywords_learn(struct imap_session *s, const struct imap_kwnames *kw);

/* imap-session.c */
void imap_reply(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_write(struct imap_session *s, const void *p, size_t n);
void imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void imap_close(struct imap_session *s, const char *reason);
void imap_bad(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report changes other sessions made to the selected mailbox (EXISTS, EXPUNGE, FETCH FLAGS);
 * expunges only when allow_expunge (not during FETCH/STORE/SEARCH, RFC 3501 7.4.1). */
void imap_sync_mailbox(struct imap_session *s, int allow_expunge);
/* Run work on the pool; done on the loop; the session stops reading meanwhile. */
int imap_job(struct imap_session *s, void (*work)(void *), void (*done)(void *), void *ctx);
void imap_job_finished(struct imap_session *s);
/* A CONDSTORE-enabling command (RFC 7162 3.1): turn CONDSTORE on; the first time, in the
 * selected state, report the mailbox's HIGHESTMODSEQ in an untagged OK. */
void imap_condstore_enable(struct imap_session *s);
/* Mark the recent messages of the selected mailbox; a read-write session first claims the
 * ones it has loaded (they are recent to no other session). Returns how many are recent. */
size_t imap_recent_sync(struct imap_session *s, int claim);
/* A message's flags for a response: with IMAP_F_RECENT for IMAP4rev1 sessions. */
unsigned imap_msg_flags(const struct imap_session *s, const struct imap_msg *m);
/* Before a response uses a keyword the client has not been told of: untagged FLAGS and
 * PERMANENTFLAGS listing every keyword (RFC 3501 7.2.6, RFC 9051 7.3.5). */
void imap_announce_keywords(struct imap_session *s);
const char *imap_flags_text(struct imap_session *s, unsigned flags, uint64_t keywords, char *out,
			    size_t outlen);
/* Mailbox name from the client (mUTF-7 unless UTF8=ACCEPT) to UTF-8 storage form; INBOX
 * case-folded. 0 ok, -1 invalid (replied nothing). */
int imap_mailbox_arg(struct imap_session *s, const struct imap_arg *a, char *out, size_t outlen);
/* Mailbox name to the client's form, as an astring appended to out. */
void imap_append_mailbox(struct imap_session *s, struct buf *out, const char *name);

/* 1 if adding `more` octets would exceed the account's quota (replied NO [OVERQUOTA]). */
int imap_over_quota(struct imap_session *s, uint64_t more);

/* IDLE: report what changed (the watch's or the poll's call). */
void imap_idle_check(struct imap_session *s);

/* imap-idle.c */
/* Wake this IDLE session when the account's index is written. 0, or -1 (then poll). */
int imap_idle_watch(struct imap_session *s);
/* Leave the account's watch (the last session removes it). */
void imap_idle_unwatch(struct imap_session *s);

/* imap-mailbox.c */
void imap_cmd_select(struct imap_session *s, const struct imap_arg *args, size_t n, int readonly);
void imap_cmd_create(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_delete(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_rename(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_subscribe(struct imap_session *s, const struct imap_arg *args, size_t n, int on);
void imap_cmd_list(struct imap_session *s, const struct imap_arg *args, size_t n, int lsub);
void imap_cmd_status(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_append(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_expunge(struct imap_session *s, const struct imap_arg *args, size_t n, int uid,
		      int close_after, int silent_close);
void imap_unselect(struct imap_session *s);
void imap_qresync_select(struct imap_session *s, uint64_t modseq, const char *known);
int imap_load_mailbox(struct imap_session *s, const char *box, const char **err_r);

/* imap-fetch.c */
/* An INTERNALDATE as IMAP writes it ("07-Jul-2025 10:00:00 +0000"). */
void imap_date(time_t t, char *out, size_t outlen);
void imap_cmd_fetch(struct imap_session *s, const struct imap_arg *args, size_t n, int uid);
void imap_cmd_store(struct imap_session *s, const struct imap_arg *args, size_t n, int uid);
void imap_cmd_copy(struct imap_session *s, const struct imap_arg *args, size_t n, int uid,
		   int move);
/* Messages selected by a sequence set (uid: UIDs) as indexes into s->msgs; malloc'd. */
int imap_select_msgs(struct imap_session *s, const char *set, int uid, size_t **idx_r,
		     size_t *n_r);

/* imap-search.c */
/* The header section of message i (malloc'd, NUL-terminated): from the index's cache through
 * hc (may be NULL), else from the file. 0, or -1 if it cannot be read. */
struct store_header_cursor;
int imap_msg_header(struct imap_session *s, size_t i, struct store_header_cursor *hc,
		    char **hdr_r, size_t *len_r);
int imap_search_match(struct imap_session *s, const struct imap_arg *args, size_t n,
		      size_t **idx_r, size_t *n_r, const char **why_r);
void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args, size_t n, int uid);
/* RFC 5256 base subject (simplified), lower-cased. */
void imap_base_subject(const char *in, char *out, size_t outlen);
void imap_base_subject_ex(const char *in, char *out, size_t outlen, int *is_reply_r);
int64_t imap_sent_date(const char *hdr, size_t hl, int64_t fallback);
void imap_cmd_thread(struct imap_session *s, const struct imap_arg *args, size_t n, int uid);
void imap_cmd_search(struct imap_session *s, const struct imap_arg *args, size_t n, int uid);

/* imap-sort.c */
/* Parse a sort criteria list into p. 0, or -1 with *why_r. */
int imap_sort_parse(const struct imap_arg *list, struct imap_sort_prog *p, const char **why_r);
/* The messages matching the search keys, as indexes into s->msgs in sort order (malloc'd).
 * 0, or -1 with *why_r (the keys are invalid or memory ran out). */
int imap_sort_match(struct imap_session *s, const struct imap_sort_prog *p,
		    const struct imap_arg *args, size_t n, size_t **idx_r, size_t *n_r,
		    const char **why_r);

/* imap-catenate.c */
/* Put together message nth of an APPEND from a CATENATE part list (RFC 4469) into out (at most
 * message_size_limit and budget octets). 0, or -1 after replying (BAD, NO [BADURL], NO
 * [TOOBIG]); out is buf_free()d by the caller either way. */
int imap_catenate_build(struct imap_session *s, const struct imap_arg *list, size_t nth,
			uint64_t budget, struct buf *out);

/* imap-urlauth.c (RFC 4467, RFC 5524) */
void imap_cmd_genurlauth(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_resetkey(struct imap_session *s, const struct imap_arg *args, size_t n);
void imap_cmd_urlfetch(struct imap_session *s, const struct imap_arg *args, size_t n);

/* imap-notify.c */
/* NOTIFY SET ... / NOTIFY NONE (RFC 5465). */
void imap_cmd_notify(struct imap_session *s, const struct imap_arg *args, size_t n);
/* 1 if the session has NOTIFY set and no command in progress: unsolicited news may go out. */
int imap_notify_ready(const struct imap_session *s);
/* Report what changed in the mailboxes NOTIFY watches (STATUS, LIST; the selected mailbox as by
 * NOOP when a SELECTED filter asks for it). */
void imap_notify_check(struct imap_session *s);
/* New messages s->msgs[first..] were just announced (EXISTS): the FETCH of the attributes
 * NOTIFY SET (SELECTED (MessageNew (...))) asked for. */
void imap_notify_new(struct imap_session *s, size_t first);
/* Drop the NOTIFY state (NOTIFY NONE, logout). */
void imap_notify_free(struct imap_session *s);

/* imap-context.c */
/* Parse "RETURN (options)" of SEARCH or SORT (list is the parenthesized list). 0, or -1 with
 * *why_r for a BAD reply. */
int imap_search_ret_parse(const struct imap_arg *list, int sort, struct imap_search_ret *r,
			  const char **why_r);
/* The ESEARCH answer for results hits[0..nh) in result order (sequence numbers or UIDs). */
void imap_esearch_reply(struct imap_session *s, int uid, const struct imap_search_ret *r,
			const uint32_t *hits, size_t nh, uint64_t modseq);
/* The answer of SEARCH or SORT (verb): ESEARCH when r->esearch, else "* verb n n ..." (with
 * MODSEQ when CONDSTORE is on and modseq is not 0). */
void imap_search_answer(struct imap_session *s, const char *verb, int uid,
			const struct imap_search_ret *r, const uint32_t *hits, size_t nh,
			uint64_t modseq);
/* The tagged OK of SEARCH or SORT; noupdate: an UPDATE that is not kept ([NOUPDATE]). */
void imap_search_done(struct imap_session *s, const char *verb, int uid, int noupdate);
/* The slice of hits that a PARTIAL range selects: *first_r and *n_r (0 when none). */
void imap_partial_slice(const struct imap_search_ret *r, size_t nh, size_t *first_r, size_t *n_r);
/* Keep a SEARCH/SORT RETURN (UPDATE) result (idx: indexes into s->msgs, result order) to be
 * kept up to date with ADDTO/REMOVEFROM. 0 kept, -1 refused (the caller adds NOUPDATE). */
int imap_context_add(struct imap_session *s, int uid, const struct imap_sort_prog *sort,
		     const struct imap_arg *args, size_t n, const size_t *idx, size_t nidx);
/* Message i of the selected mailbox is about to be reported expunged: REMOVEFROM first. */
void imap_context_expunge(struct imap_session *s, size_t i);
/* Evaluate the kept searches again if the mailbox changed; send ADDTO/REMOVEFROM. */
void imap_context_update(struct imap_session *s);
/* Forget all kept searches (the mailbox is closed). */
void imap_context_free_all(struct imap_session *s);
/* CANCELUPDATE "tag" ... (RFC 5267 4.2). */
void imap_cmd_cancelupdate(struct imap_session *s, const struct imap_arg *args, size_t n);

#endif
