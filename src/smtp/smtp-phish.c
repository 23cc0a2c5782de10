/* smtp-phish.c - the phishing mark on the delivery path (see smtp-phish.h). */
#include "smtp-phish.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "buf.h"
#include "config.h"
#include "fsutil.h"
#include "log.h"
#include "sqldb.h"

#define PHISH_WBUF 65536             /* write the marked copy in chunks of this size */
#define PHISH_DOMAINS_TEXT_MAX (PHISH_DOMAINS_MAX * 64)   /* the hosted list, for the cache */

/* Per pool thread: system.db for the hosted domains, the policy built from them (rebuilt when
 * the list or the brand names change), and senders.db. */
static __thread struct acctdb *ph_acct;
static __thread struct phish_policy *ph_policy;
static __thread struct buf ph_key;          /* brands + '\n' + hosted domains: the cache key */
static __thread struct sqldb_handle ph_seen;   /* senders.db */
static __thread uint64_t ph_checked_ms;     /* when the list was last read (monotonic) */
static __thread const struct config *ph_cfg;   /* the configuration it was built for */

/* The hosted domains are read again at most this often per thread: reading the list cost each
 * message a lock cycle on system.db (and, for a provider with thousands of domains, all their
 * rows); a domain added is protected against look-alikes within this time. */
#define PH_POLICY_RECHECK_MS 2000

struct domlist {
	struct buf text;              /* the domains, NUL separated */
	size_t n;
};

/* acctdb_domain_list callback. */
static void dom_add(void *ctx, const char *domain)
{
	struct domlist *l = ctx;
	if (l->n < PHISH_DOMAINS_MAX && buf_append(&l->text, domain, strlen(domain) + 1) == 0)
		l->n++;
}

/* See smtp-phish.h. */
void smtp_phish_thread_release(int all)
{
	acctdb_close(&ph_acct);
	sqldb_handle_close(&ph_seen);
	if (all) {
		phish_policy_free(&ph_policy);
		buf_free(&ph_key);
		ph_cfg = NULL;
		ph_checked_ms = 0;
	}
}

/* This thread's policy for cfg, up to date with the hosted domains. NULL on error. */
static const struct phish_policy *ph_policy_get(const struct config *cfg)
{
	const char *err = NULL;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	if (ph_policy != NULL && ph_cfg == cfg && now_ms - ph_checked_ms < PH_POLICY_RECHECK_MS)
		return ph_policy;
	if (ph_acct == NULL) {
		char path[CONFIG_PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/system.db", cfg->data_dir);
		if (acctdb_open(path, 0, &ph_acct, &err) < 0) {
			ph_acct = NULL;
			log_warn("event=phish-policy error=\"%s\"", err ? err : "open system.db");
			return NULL;
		}
	}
	struct domlist l;
	buf_init(&l.text, PHISH_DOMAINS_TEXT_MAX);
	l.n = 0;
	buf_appendstr(&l.text, cfg->phishing_brand_names);
	buf_append(&l.text, "\n", 2);
	size_t head = l.text.len;
	if (acctdb_domain_list(ph_acct, dom_add, &l, &err) < 0) {
		log_warn("event=phish-policy error=\"%s\"", err ? err : "domain list");
		buf_free(&l.text);
		return NULL;
	}
	ph_checked_ms = now_ms;
	ph_cfg = cfg;
	if (ph_policy != NULL && ph_key.len == l.text.len &&
	    memcmp(ph_key.data, l.text.data, l.text.len) == 0) {
		buf_free(&l.text);
		return ph_policy;
	}
	const char **hosted = calloc(l.n ? l.n : 1, sizeof(*hosted));
	if (hosted == NULL) {
		buf_free(&l.text);
		return NULL;
	}
	const char *d = l.text.data + head;
	for (size_t i = 0; i < l.n; i++, d += strlen(d) + 1)
		hosted[i] = d;
	phish_policy_free(&ph_policy);
	ph_policy = phish_policy_new(cfg->phishing_brand_names, hosted, l.n,
				     cfg->phishing_lookalike_distance);
	free(hosted);
	buf_free(&ph_key);
	ph_key = l.text;   /* the key keeps the list text */
	return ph_policy;
}

/* senders.db's schema by user_version (sqldb.h); step 1 is the schema the file had before
 * user_version was used, made with IF NOT EXISTS, so such a file passes it unchanged. */
static const struct sqldb_step seen_steps[] = { { "tables",
	"CREATE TABLE IF NOT EXISTS seen (account TEXT NOT NULL, sender TEXT NOT NULL,"
	" t INTEGER NOT NULL, PRIMARY KEY (account, sender)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS seen_account_t ON seen(account, t);", NULL } };

/* This thread's handle on <data>/senders.db. NULL on error (logged). */
static sqlite3 *seen_db(const char *dir)
{
	char path[CONFIG_PATH_MAX + 16], err[CONFIG_PATH_MAX + 200];
	snprintf(path, sizeof(path), "%s/senders.db", dir);
	/* a lost row costs one warning too many, not mail: no fsync per delivery */
	const struct sqldb_opts o = {
		.flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
		.journal_mode = "wal",
		.synchronous = "normal",
		.busy_timeout_ms = 5000,
		.steps = seen_steps,
		.nsteps = sizeof(seen_steps) / sizeof(seen_steps[0]),
		.migrate = 1,
	};
	sqlite3 *db = sqldb_handle_get(&ph_seen, path, &o, err, sizeof(err));
	if (db == NULL)
		log_warn("event=phish-senders-db error=\"%s\"", err);
	return db;
}

/* Has account had mail from sender before? 1 yes, 0 no or unknown. */
static int seen_before(const char *dir, const char *account, const char *sender)
{
	sqlite3 *db = seen_db(dir);
	sqlite3_stmt *st;
	int r = 0;
	if (db == NULL || sqldb_prepare(&ph_seen.stc, "SELECT 1 FROM seen WHERE account = ?1 AND "
					"sender = ?2", &st) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sender, -1, SQLITE_STATIC);
	r = sqlite3_step(st) == SQLITE_ROW;
	sqldb_release(&ph_seen.stc, st);
	return r;
}

/* Remember that account had mail from sender; keep the account's rows bounded. A row touched
 * within SEEN_REFRESH is left alone: its time only orders the rows for the bound, and a write
 * transaction per message (for a busy sender, every message) made the deliveries of both
 * workers queue for senders.db's write lock. */
#define SEEN_REFRESH 3600

/* Per thread, the (account, sender) pairs this thread found or made fresh lately, by a hash of
 * the pair, with when: a repeat within SEEN_REFRESH / 2 of that skips even the read (a lock
 * cycle on senders.db, half a dozen system calls per message). A collision costs a read. */
#define SEEN_MEMO_SLOTS 64
static __thread struct { uint64_t h; int64_t t; } seen_memo[SEEN_MEMO_SLOTS];

/* FNV-1a of account, NUL, sender (0 is kept for "empty slot"). */
static uint64_t seen_hash(const char *account, const char *sender)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (const char *p = account;; p++) {
		h = (h ^ (unsigned char)*p) * 0x100000001b3u;
		if (*p == '\0')
			break;
	}
	for (const char *p = sender; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3u;
	return h ? h : 1;
}

static void seen_record(const char *dir, const char *account, const char *sender)
{
	sqlite3_stmt *st;
	int64_t now = (int64_t)time(NULL);
	uint64_t h = seen_hash(account, sender);
	unsigned slot = (unsigned)(h % SEEN_MEMO_SLOTS);
	if (seen_memo[slot].h == h && now - seen_memo[slot].t < SEEN_REFRESH / 2)
		return;
	sqlite3 *db = seen_db(dir);
	if (db == NULL)
		return;
	if (sqldb_prepare(&ph_seen.stc, "SELECT 1 FROM seen WHERE account = ?1 AND sender = ?2 "
			  "AND t >= ?3", &st) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, sender, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now - SEEN_REFRESH / 2);
		int fresh = sqlite3_step(st) == SQLITE_ROW;
		sqldb_release(&ph_seen.stc, st);
		if (fresh) {
			seen_memo[slot].h = h;
			seen_memo[slot].t = now;
			return;
		}
	}
	int ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	int added = 0;
	if (ok && sqldb_prepare(&ph_seen.stc, "UPDATE seen SET t = ?3 WHERE account = ?1 AND "
				"sender = ?2", &st) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, sender, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now);
		ok = sqlite3_step(st) == SQLITE_DONE;
		added = ok && sqlite3_changes(db) == 0;
		sqldb_release(&ph_seen.stc, st);
	}
	if (ok && added && sqldb_prepare(&ph_seen.stc, "INSERT INTO seen(account, sender, t) VALUES "
					 "(?1, ?2, ?3)", &st) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, sender, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqldb_release(&ph_seen.stc, st);
	}
	/* a new row may take the account over its bound: forget the oldest */
	if (ok && added && sqldb_prepare(&ph_seen.stc, "DELETE FROM seen WHERE account = ?1 AND sender "
					 "IN (SELECT sender FROM seen WHERE account = ?1 ORDER BY "
					 "t DESC, sender LIMIT -1 OFFSET ?2)", &st) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, SMTP_PHISH_SEEN_MAX);
		ok = sqlite3_step(st) == SQLITE_DONE;
		sqldb_release(&ph_seen.stc, st);
	}
	if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
		seen_memo[slot].h = h;
		seen_memo[slot].t = now;
		return;
	}
	log_warn("event=phish-senders-record account=%s error=\"%s\"", account, sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* Read the received file and look at its header; see smtp-phish.h. */
int smtp_phish_begin(struct smtp_phish *ph, const struct config *cfg, int fd, uint64_t size,
		     uint64_t prefix_len, char *why, size_t whylen)
{
	memset(ph, 0, sizeof(*ph));
	ph->cfg = cfg;
	for (unsigned i = 0; i < SMTP_PHISH_VARIANTS; i++)
		ph->var[i].fd = -1;
	if (!cfg->phishing_checks || size == 0 || prefix_len >= size || size > SIZE_MAX)
		return 0;
	if (fs_view_open(&ph->view, fd, (size_t)size) < 0) {
		snprintf(why, whylen, "read message: %s", strerror(errno));
		return -1;
	}
	ph->msg = ph->view.data;
	ph->len = (size_t)size;
	ph->prefix_len = (size_t)prefix_len;
	const char *hdr = ph->msg + ph->prefix_len;
	size_t hlen = ph->len - ph->prefix_len;
	if (hlen > SMTP_PHISH_HEADER_MAX)
		hlen = SMTP_PHISH_HEADER_MAX;
	ph->forged = phish_has_field(hdr, hlen);
	const struct phish_policy *pol = ph_policy_get(cfg);
	if (pol != NULL)
		phish_check(pol, hdr, hlen, &ph->v);
	ph->active = 1;
	return 0;
}

struct wctx {
	int fd;
	struct buf b;
	int failed;
	uint64_t written;
};

/* Write the pending bytes of w to its file. */
static int w_flush(struct wctx *w)
{
	if (fs_write_all(w->fd, w->b.data, w->b.len) < 0)
		return -1;
	w->written += w->b.len;
	buf_reset(&w->b);
	return 0;
}

/* phish_rewrite's emit: buffered writes to the copy. */
static int w_emit(void *ctx, const char *p, size_t n)
{
	struct wctx *w = ctx;
	if (w->b.len + n > PHISH_WBUF && w_flush(w) < 0)
		return -1;
	if (n >= PHISH_WBUF) {
		if (fs_write_all(w->fd, p, n) < 0)
			return -1;
		w->written += n;
		return 0;
	}
	return buf_append(&w->b, p, n);
}

/* Write the copy with the given signs into a new variant. 0 ok, -1 error (why set). */
static int make_variant(struct smtp_phish *ph, unsigned reasons, char *why, size_t whylen)
{
	const struct config *cfg = ph->cfg;
	struct smtp_phish_variant *var = &ph->var[ph->nvar];
	char reason[PHISH_REASON_MAX];
	struct phish_verdict v = ph->v;
	v.reasons = reasons;
	phish_describe(&v, reason, sizeof(reason));
	struct phish_mark m = {
		cfg->phishing_mark == CONFIG_PHISH_MARK_SUBJECT ? PHISH_MARK_SUBJECT :
		cfg->phishing_mark == CONFIG_PHISH_MARK_BODY ? PHISH_MARK_BODY :
		cfg->phishing_mark == CONFIG_PHISH_MARK_BOTH ? PHISH_MARK_BOTH : PHISH_MARK_HEADER,
		cfg->phishing_subject_tag, cfg->phishing_warning, reasons ? reason : NULL,
	};
	/* the name the master's cleanup of a dead worker's temp files knows */
	snprintf(var->path, sizeof(var->path), "%s/tmp/in.%d.XXXXXX", cfg->data_dir, (int)getpid());
	var->fd = mkostemp(var->path, O_CLOEXEC);
	if (var->fd < 0) {
		snprintf(why, whylen, "create marked copy: %s", strerror(errno));
		var->path[0] = '\0';
		return -1;
	}
	ph->nvar++;
	struct wctx w = { var->fd, { 0 }, 0, 0 };
	unsigned applied;
	buf_init(&w.b, PHISH_WBUF);
	int r = phish_rewrite(ph->msg, ph->len, ph->prefix_len, &m, w_emit, &w, &applied);
	if (r == 0)
		r = w_flush(&w);
	buf_free(&w.b);
	if (r < 0 || fsync(var->fd) != 0) {
		snprintf(why, whylen, "write marked copy: %s", errno ? strerror(errno) : "failed");
		return -1;
	}
	var->reasons = reasons;
	var->size = w.written;
	return 0;
}

/* The file for account; see smtp-phish.h. */
int smtp_phish_file(struct smtp_phish *ph, const char *account, int fd, uint64_t size,
		    int *fd_r, uint64_t *size_r, char *why, size_t whylen)
{
	*fd_r = fd;
	*size_r = size;
	if (!ph->active)
		return 0;
	unsigned reasons = ph->v.reasons;
	if (ph->v.from[0] != '\0') {
		if (ph->v.reply_to_elsewhere && !seen_before(ph->cfg->data_dir, account, ph->v.from))
			reasons |= PHISH_REPLY_TO;
		if (ph->naccounts == ph->cap && ph->cap < SMTP_PHISH_ACCOUNTS_MAX) {
			unsigned ncap = ph->cap ? ph->cap * 2 : 4;
			void *a = realloc(ph->accounts, ncap * sizeof(*ph->accounts));
			if (a == NULL) {
				snprintf(why, whylen, "out of memory");
				return -1;
			}
			ph->accounts = a;
			ph->cap = ncap;
		}
		if (ph->naccounts < ph->cap)
			snprintf(ph->accounts[ph->naccounts++], sizeof(ph->accounts[0]), "%s",
				 account);
	}
	if (reasons == 0 && !ph->forged)
		return 0;
	for (unsigned i = 0; i < ph->nvar; i++) {
		if (ph->var[i].reasons == reasons && ph->var[i].fd >= 0) {
			*fd_r = ph->var[i].fd;
			*size_r = ph->var[i].size;
			return 0;
		}
	}
	if (ph->nvar == SMTP_PHISH_VARIANTS) {
		snprintf(why, whylen, "too many marked copies");   /* a bug: two kinds at most */
		return -1;
	}
	if (make_variant(ph, reasons, why, whylen) < 0)
		return -1;
	if (reasons != 0)
		log_info("event=phishing-marked account=%s from=<%s> reasons=%#x", account,
			 ph->v.from, reasons);
	*fd_r = ph->var[ph->nvar - 1].fd;
	*size_r = ph->var[ph->nvar - 1].size;
	return 0;
}

/* Record the sender for the accounts when delivered; release everything. */
void smtp_phish_end(struct smtp_phish *ph, int delivered)
{
	if (delivered && ph->active && ph->v.from[0] != '\0') {
		for (unsigned i = 0; i < ph->naccounts; i++)
			seen_record(ph->cfg->data_dir, ph->accounts[i], ph->v.from);
	}
	for (unsigned i = 0; i < ph->nvar; i++) {
		if (ph->var[i].fd >= 0)
			close(ph->var[i].fd);
		if (ph->var[i].path[0])
			unlink(ph->var[i].path);
		ph->var[i].fd = -1;
		ph->var[i].path[0] = '\0';
	}
	ph->nvar = 0;
	free(ph->accounts);
	ph->accounts = NULL;
	fs_view_close(&ph->view);
	ph->msg = NULL;
	ph->active = 0;
}
