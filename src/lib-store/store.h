/* store.h - the mailbox store behind a narrow interface.
 *
 * One account = one directory <root> holding a Maildir++ tree and index.db:
 *   <root>/cur new tmp            INBOX
 *   <root>/.Sent/cur new tmp      other mailboxes ("Sent" -> ".Sent", "a/b" -> ".a.b"?? see below)
 *   <root>/index.db               SQLite: mailboxes and messages (UIDs, flags, MODSEQ, sizes)
 *
 * Mailbox names are data, never paths: store_mailbox_dir() maps a name to a directory name with
 * an escaping that cannot produce "..", "/" or collide with cur/new/tmp.
 *
 * Thread-safety: a struct store_account is used by one thread at a time. Delivery runs on a
 * worker thread-pool thread, never on the event-loop thread (it fsyncs).
 * All functions return -1 on error with *err_r set to a static or account-owned string valid
 * until the next call on that account, 0 / 1 as documented.
 */
#ifndef POSTINO_STORE_H
#define POSTINO_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct store_account;

/* Default mailboxes created with each account, with their SPECIAL-USE attribute. */
#define STORE_DEFAULT_MAILBOXES "INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"

/* Flags kept in the index and mirrored as Maildir info suffix letters. */
enum store_flag {
	STORE_F_SEEN = 1 << 0,     /* S */
	STORE_F_ANSWERED = 1 << 1, /* R */
	STORE_F_FLAGGED = 1 << 2,  /* F */
	STORE_F_DELETED = 1 << 3,  /* T */
	STORE_F_DRAFT = 1 << 4,    /* D */
};

struct store_mailbox_info {
	int64_t id;
	char name[256];
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint32_t messages;
	const char *special_use; /* "\\Sent", ... or NULL; static string */
	int subscribed;
	uint64_t size;           /* octets of all messages (STATUS SIZE) */
	uint32_t unseen;
};

/* store_msg_info.wire_size of a message whose POP3 size is not known yet (index level < 5). */
#define STORE_WIRE_UNKNOWN UINT64_MAX

struct store_msg_info {
	uint32_t uid;
	unsigned flags;        /* enum store_flag */
	uint64_t modseq;
	time_t internaldate;
	time_t savedate;       /* when it was put in this mailbox (RFC 8514) */
	uint64_t size;         /* octets of the file (stored with CRLF line ends) */
	uint64_t wire_size;    /* POP3 size (CRLF, no dot-stuffing; see wire.h), or
				* STORE_WIRE_UNKNOWN in an index made before it was counted so */
	uint64_t keywords;     /* bit i = keyword id i of the account (store_keyword_*) */
	char filename[256];    /* base name inside cur/ or new/ */
	int in_new;            /* 1: file is in new/, 0: in cur/ */
};

/* Create the account directory tree (mkdir -p root, Maildir++ dirs for every default mailbox,
 * index.db with those mailboxes). Idempotent. */
int store_account_create(const char *root, const char **err_r);

/* Open an existing account. Returns 1 ok, 0 does not exist, -1 error. */
int store_account_open(const char *root, struct store_account **acct_r, const char **err_r);
void store_account_close(struct store_account **acct);
/* uidvalidity, uidnext and highestmodseq of a mailbox: 1 found, 0 not, -1 error. */
int store_mailbox_state(struct store_account *acct, const char *box, uint32_t *uidvalidity_r,
			uint32_t *uidnext_r, uint64_t *highestmodseq_r, const char **err_r);
/* Sessions of one thread share one handle per account (IMAP's loop): 1 opened, 0 none, -1. */
int store_account_open_shared(const char *root, struct store_account **acct_r,
			      const char **err_r);
/* A handle of root for the calling thread's use until it gives it back with
 * store_account_return (a pool thread delivering, or writing for the IMAP loop). The worker keeps
 * up to STORE_BORROW_MAX of them between uses, each lent to one thread at a time, so the next
 * change of the same mailbox finds the connection, and its page cache, that made the last one;
 * reopened when index.db is another file (the account was removed and made again). Never close
 * it. 1 ok, 0 no index.db (the account has none yet), -1 error. */
int store_account_borrow(const char *root, struct store_account **acct_r, const char **err_r);
/* Give a borrowed handle back (sets *acct to NULL); it must be outside any transaction. */
void store_account_return(struct store_account **acct);
/* Close the kept handles that no thread has borrowed now, e.g. when the pool goes idle: each
 * holds a SQLite connection with its schema, statements and pages. */
void store_account_borrow_release(void);
/* Many lookups in one read transaction (one snapshot, one lock instead of one per lookup).
 * Never across a return to the event loop. Returns what store_read_end wants. */
int store_read_begin(struct store_account *acct);
void store_read_end(struct store_account *acct, int began);
/* A fingerprint of the account's index files that changes with every committed change (the
 * WAL grows, or is checkpointed into index.db): lets a session that closed its handle see
 * cheaply whether it must look. */
void store_account_signature(const char *root, uint64_t sig[4]);
/* Before any other SQLite use in the process: keep per-connection memory small, and make
 * sqlvfs (one write per WAL commit) the default VFS. */
void store_global_init(void);

/* Deliver one message durably into mailbox `box` (NULL = INBOX).
 * `src_fd` is a regular file holding the complete message (trace headers included), read from
 * offset 0 to EOF; `size` its length. The store links or copies it into <box>/tmp, fsyncs the file,
 * renames into new/, fsyncs new/, then commits the index row (UID = UIDNEXT, MODSEQ bumped).
 * If `src_already_synced` is non-zero and the store can hard-link the source (same filesystem),
 * it links instead of copying and skips the file fsync (the caller fsynced it).
 * On any failure nothing is left visible in new/ and -1 is returned (callers answer 4xx).
 * On success *uid_r is the new UID (may be NULL). */
int store_deliver(struct store_account *acct, const char *box, int src_fd, uint64_t size,
		  int src_already_synced, time_t internaldate, unsigned flags, uint32_t *uid_r,
		  const char **err_r);

/* Bytes of a group delivery's per-message error text. */
#define STORE_BATCH_ERR_MAX 256

/* One message of a group delivery: the caller fills the first five fields. */
struct store_batch_item {
	int src_fd;                /* as store_deliver's src_fd */
	uint64_t size;
	int src_already_synced;
	time_t internaldate;
	unsigned flags;
	int result;                /* out: 0 delivered, -1 not (err says why) */
	uint32_t uid;              /* out: the new UID when delivered */
	char err[STORE_BATCH_ERR_MAX];
};

/* Deliver n messages into one mailbox with one fsync of new/ and one index transaction for all
 * (group commit), each as durable as store_deliver makes it. A message that cannot be put into
 * tmp/ or renamed is refused alone; a failed lock, commit, fsync of new/ or sync of the index
 * WAL refuses every message of the group and leaves none (a failed sync after the commit: its
 * rows recorded as expunged). Returns how many were delivered. */
size_t store_deliver_batch(struct store_account *acct, const char *box,
			   struct store_batch_item *items, size_t n);

/* Mailbox listing and status. Returns the count, or -1. *boxes_r is malloc'd (free()). */
int store_mailbox_list(struct store_account *acct, struct store_mailbox_info **boxes_r,
		       const char **err_r);
/* Returns 1 found, 0 not found, -1 error. */
int store_mailbox_get(struct store_account *acct, const char *box, struct store_mailbox_info *info_r,
		      const char **err_r);

/* All messages of a mailbox in UID order. Returns count or -1; *msgs_r malloc'd (free()). */
int store_message_list(struct store_account *acct, const char *box, struct store_msg_info **msgs_r,
		       const char **err_r);

/* Path of a message file (from a store_message_list entry). 0 ok, -1 does not fit. */
int store_message_path(struct store_account *acct, const char *box, const struct store_msg_info *m,
		       char *out, size_t outlen);

/* Expunge messages by UID in one transaction (rows removed, HIGHESTMODSEQ bumped, each recorded
 * in the expunged table so a crash cannot bring its file back), then unlink the files. UIDs not
 * present are ignored. Returns the number expunged, or -1 (nothing changed). */
int store_expunge(struct store_account *acct, const char *box, const uint32_t *uids, size_t n,
		  const char **err_r);
/* store_expunge for the event loop's shared handle, which must not wait: only if the write lock
 * is free at once and the commit does not checkpoint (see store_set_flags_nowait), else
 * STORE_WOULD_WAIT and nothing done. The commit does not wait for the disk either
 * (synchronous=NORMAL, as flag changes): a crash of the process loses nothing, a power cut may
 * bring back the last expunges. Nor does it remove the files (an unlink can wait for the disk:
 * a discard on file systems mounted with it): *files_r gets their paths, a NULL-terminated
 * array (NULL when none) for store_unlink_files. A file a crash leaves behind is removed by the
 * mailbox's next reconciling, which finds its name among the expunged. */
int store_expunge_nowait(struct store_account *acct, const char *box, const uint32_t *uids,
			 size_t n, char ***files_r, const char **err_r);
/* Remove the files store_expunge_nowait handed over (any thread), then free the array. */
void store_unlink_files(char **files);

/* ---- mailboxes, flags, copy, append, changes (store-mailbox.c) ---- */

/* How a store_flag_change applies its flags and keywords to what the index holds. */
enum store_flag_mode {
	STORE_FLAGS_SET = 0,     /* they are the new complete sets */
	STORE_FLAGS_ADD = 1,     /* they are added */
	STORE_FLAGS_REMOVE = -1  /* they are removed */
};

/* One message of store_set_flags(). The mode applies to the flags the index holds inside the
 * write transaction, so two sessions adding different flags at once both keep theirs. */
struct store_flag_change {
	uint32_t uid;
	unsigned flags;            /* in: per mode; out: the message's flag set after the call */
	uint64_t keywords;         /* in: per mode; out: the keyword set after the call */
	int mode;                  /* enum store_flag_mode */
	uint64_t unchangedsince;   /* in: 0, or leave the message alone if its MODSEQ is above */
	uint64_t modseq;           /* out: the message's MODSEQ after the call */
	int result;                /* out: 1 changed, 0 unchanged, -1 no such UID,
				    * -2 left alone (MODSEQ above unchangedsince) */
};

/* Record POP3 sizes (wire.h) of n messages of box, found by uid, in one transaction: those
 * listed as STORE_WIRE_UNKNOWN once counted. 0 ok, -1 error. */
int store_set_wire_sizes(struct store_account *acct, const char *box, const uint32_t *uids,
			 const uint64_t *sizes, size_t n, const char **err_r);
/* Open a listed message, wherever its flags put the file. fd or -1. */
int store_message_fd(struct store_account *acct, const char *box, const struct store_msg_info *m,
		     const char **err_r);
int store_keyword_id(struct store_account *acct, const char *name, int create, const char **err_r);
int store_keyword_list(struct store_account *acct, void (*cb)(void *ctx, int id, const char *name),
		       void *ctx, const char **err_r);
int store_set_flags(struct store_account *acct, const char *box, struct store_flag_change *ch,
		    size_t n, uint64_t *modseq_r, const char **err_r);
/* store_set_flags, but only if the index's write lock is free at once and the WAL is small
 * enough that this commit does not checkpoint (which syncs): for the event loop's shared handle,
 * which must not wait. A read transaction of the caller's (store_read_begin) is ended first.
 * STORE_WOULD_WAIT when it did nothing for that reason (do it with store_set_flags elsewhere). */
#define STORE_WOULD_WAIT (-2)
int store_set_flags_nowait(struct store_account *acct, const char *box,
			   struct store_flag_change *ch, size_t n, uint64_t *modseq_r,
			   const char **err_r);
int store_append(struct store_account *acct, const char *box, const char *data, size_t len,
		 unsigned flags, uint64_t keywords, time_t date, uint32_t *uid_r,
		 uint32_t *uidvalidity_r, const char **err_r);
/* One message of store_append_multi(). */
struct store_append_msg {
	const char *data;
	size_t len;
	unsigned flags;
	uint64_t keywords;
	time_t date;
};
/* MULTIAPPEND (RFC 3502): all n messages or none. Each is written and fsynced in tmp/ first; then,
 * under the index lock, all are moved into new/ (or cur/ with flags), the directories fsynced,
 * and the rows inserted in one transaction, so their UIDs are consecutive and other sessions see
 * all of them or none. On any failure every file is removed and nothing (no row, no UID) stays
 * visible; -1 with *err_r set. uids_r[0..n) get the new UIDs. XXX: a crash between the moves and
 * the commit leaves files that store_mailbox_sync later adopts one by one. */
int store_append_multi(struct store_account *acct, const char *box,
		       const struct store_append_msg *msgs, size_t n, uint32_t *uids_r,
		       uint32_t *uidvalidity_r, const char **err_r);
/* store_append_multi that also claims \Recent (store_recent) of every message up to the last one
 * stored, in the same transaction, for a caller that has the mailbox selected: the messages
 * from *recent_from_r on are recent to it. Saves the commit of a separate claim. */
int store_append_multi_claim(struct store_account *acct, const char *box,
			     const struct store_append_msg *msgs, size_t n, uint32_t *uids_r,
			     uint32_t *uidvalidity_r, uint32_t *recent_from_r, const char **err_r);
int store_copy(struct store_account *acct, const char *src, const uint32_t *uids, size_t n,
	       const char *dst, uint32_t *new_uids, uint32_t *dst_uidvalidity_r, const char **err_r);
int store_mailbox_create(struct store_account *acct, const char *name, const char *special_use,
			 const char **err_r);
int store_mailbox_delete(struct store_account *acct, const char *name, const char **err_r);
int store_mailbox_rename(struct store_account *acct, const char *from, const char *to,
			 const char **err_r);
/* \Recent (RFC 3501 2.3.2): messages with a UID >= the mailbox's recent_from are recent to the
 * next session that claims them. *from_r gets recent_from, *count_r (may be NULL) how many
 * messages are recent; a claim_upto above recent_from moves it there (SELECT claims the
 * mailbox's uidnext). 0 or -1. */
int store_recent(struct store_account *acct, const char *box, uint32_t claim_upto,
		 uint32_t *from_r, uint32_t *count_r, const char **err_r);
/* Subscribed names that have no mailbox (any more): a malloc'd array of malloc'd names, NULL
 * terminated (NULL when there are none). Returns how many, or -1. */
int store_subscriptions_orphaned(struct store_account *acct, char ***names_r, const char **err_r);
int store_mailbox_subscribe(struct store_account *acct, const char *name, int on,
			    const char **err_r);
int store_changes_since(struct store_account *acct, const char *box, uint64_t modseq,
			void (*cb_msg)(void *ctx, const struct store_msg_info *m),
			void (*cb_expunged)(void *ctx, uint32_t uid), void *ctx, const char **err_r);

/* Octets of all messages of the account (QUOTA usage). -1 on error. */
int64_t store_account_usage(struct store_account *acct, const char **err_r);

/* IMAP's ENVELOPE, BODY and BODYSTRUCTURE of a message, cached at delivery (store-structure.c). */
struct store_structure {
	char *bodystructure, *body, *envelope;   /* malloc'd, or NULL */
	char *header;                            /* the header section, when small; or NULL */
	size_t header_len;
};
/* The cached header section (with its empty line) of the messages of one mailbox, for SEARCH
 * and FETCH of headers without opening the files. */
struct store_header_cursor;
int store_header_open(struct store_account *acct, const char *box,
		      struct store_header_cursor **c_r);
/* 1 found (*hdr_r valid until the next call or close), 0 not cached. */
int store_header_get(struct store_header_cursor *c, uint32_t uid, const char **hdr_r,
		     size_t *len_r);
void store_header_close(struct store_header_cursor **c);
void store_structure_compute(int fd, uint64_t size, struct store_structure *sc);
void store_structure_compute_mem(const char *msg, size_t size, struct store_structure *sc);
void store_structure_free(struct store_structure *sc);
/* 1 found (free sc with store_structure_free), 0 not cached. */
int store_structure_get(struct store_account *acct, const char *box, uint32_t uid,
			struct store_structure *sc);

/* URLAUTH (RFC 4467): the mailbox access key of box, a random key per mailbox kept in index.db
 * and valid only for the mailbox's current UIDVALIDITY. create: make one when there is none
 * (a write: on a pool thread). 1 key filled, 0 no such mailbox (or no key and !create), -1. */
#define STORE_URLAUTH_KEY_LEN 32
int store_urlauth_key(struct store_account *acct, const char *box, int create,
		      unsigned char key[STORE_URLAUTH_KEY_LEN], const char **err_r);
/* RESETKEY: forget the key of box (every key of the account when box is NULL), so every URL
 * made with it stops working; the next GENURLAUTH makes a new one. 1 ok, 0 no such mailbox,
 * -1 error. */
int store_urlauth_reset(struct store_account *acct, const char *box, const char **err_r);

/* Directory of the account (for per-account lock files). */
const char *store_account_root(const struct store_account *acct);

/* Open a message file read-only; returns an fd or -1. */
int store_message_open(struct store_account *acct, const char *box, uint32_t uid, const char **err_r);

/* Reconcile a mailbox's index with its files: adopt files the index does not know (a crash
 * between rename and commit), drop rows whose file is gone. 0 ok, -1 error. */
int store_mailbox_sync(struct store_account *acct, const char *box, const char **err_r);

#endif
