/* imap-write.c - IMAP commands that write (APPEND, STORE, COPY/MOVE, EXPUNGE/CLOSE, CREATE,
 * DELETE, RENAME, SUBSCRIBE, FETCH's implicit \Seen) hand their store calls to the worker's
 * thread pool: fsync and SQLite commits never run on the loop thread, so one session's 25 MB
 * APPEND being synced does not hold up the other sessions of its worker.
 *
 * A pool thread uses a handle of the account lent to it for the job (store_account_borrow),
 * never the handle the loop's sessions share: one SQLite connection is used by one thread at a
 * time, and SQLite's locks order the writers as they do between processes.
 */
#include "imap-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Pool side: the thread's handle, then the command's work. */
static void wjob_work(void *arg)
{
	struct imap_wjob *j = arg;
	const char *err;
	if (store_account_borrow(j->root, &j->acct, &err) != 1) {
		j->no_handle = 1;
		imap_wjob_error(j, err);
		return;
	}
	j->work(j);
	store_account_return(&j->acct);   /* lent to this job, not the loop's */
}

/* Loop side: the command's answer, then the session goes on (or is reaped). */
static void wjob_done(void *arg)
{
	struct imap_wjob *j = arg;
	struct imap_session *s = j->s;
	if (j->no_handle)
		log_warn("sess=%016llx proto=imap event=write-failed error=\"%s\"",
			 (unsigned long long)s->base.id, j->err ? j->err : "?");
	struct store_account *acct = s->acct;   /* the answer's reads share a snapshot */
	int began = store_read_begin(acct);
	j->done(j);
	store_read_end(acct, began);
	free(j);
	imap_job_finished(s);
}

/* See imap-private.h. */
void imap_write_job(struct imap_session *s, struct imap_wjob *j, void (*work)(struct imap_wjob *),
		    void (*done)(struct imap_wjob *))
{
	j->s = s;
	j->work = work;
	j->done = done;
	const char *root = s->acct ? store_account_root(s->acct) : NULL;
	if (root == NULL || snprintf(j->root, sizeof(j->root), "%s", root) >= (int)sizeof(j->root) ||
	    imap_job(s, wjob_work, wjob_done, j) < 0) {
		j->no_handle = 1;
		imap_wjob_error(j, "cannot start the write");
		done(j);
		free(j);
	}
}

/* See imap-private.h. */
void imap_wjob_error(struct imap_wjob *j, const char *err)
{
	snprintf(j->errbuf, sizeof(j->errbuf), "%s", err ? err : "unknown error");
	j->err = j->errbuf;
}

/* See imap-private.h. */
int imap_wjob_failed(struct imap_wjob *j, const char *cmd)
{
	if (!j->no_handle)
		return 0;
	imap_tagged(j->s, "NO", "[UNAVAILABLE] %s failed: your mailbox cannot be written now; "
				"nothing was changed. Please try again later", cmd);
	return 1;
}

/* See imap-private.h. */
void imap_keywords_learn(struct imap_session *s, const struct imap_kwnames *kw)
{
	for (int id = 0; id < 64; id++) {
		if (!(kw->mask & (1ull << id)))
			continue;
		imap_keyword_name_set(s, id, kw->name[id]);
	}
}
