/* acctdb.h - the account database (<data>/system.db, SQLite): domains, accounts, aliases.
 *
 * Addresses are stored lower-cased ("Local@Dom" and "local@dom" are one account): the login name is
 * matched without regard to case. Domains are stored in ASCII form (A-labels), whatever form the
 * caller gives. Every function returns -1 on error with *err_r set (a string
 * valid until the next call on this db), otherwise as documented.
 * A struct acctdb is used by one thread at a time; each worker thread opens its own.
 */
#ifndef POSTINO_ACCTDB_H
#define POSTINO_ACCTDB_H

#include <stddef.h>
#include <stdint.h>

struct acctdb;

#define ACCTDB_ADDRESS_MAX 254   /* RFC 5321 4.5.3.1.3: a path is 256 octets with its brackets */

struct acct_user {
	char address[321];   /* local@domain, lower-case */
	char hash[256];      /* password hash, crypt(3) form or Dovecot {SCHEME} form */
	int suspended;       /* non-zero: sending suspended (issue 5) */
	uint64_t quota_bytes;/* 0 = unlimited */
	int64_t created;     /* unix time */
};

/* How acctdb_open opens system.db. The workers only read it (ACCTDB_RO): the file belongs to
 * root and the workers' group may read it, so a compromised worker cannot change a password.
 * Rollback journal (not WAL): a WAL reader needs write access to the -shm file. */
enum acctdb_mode {
	ACCTDB_RO,       /* an existing database, read only */
	ACCTDB_RW,       /* an existing database, read and write */
	ACCTDB_CREATE,   /* read and write, created (0600) and its schema made or migrated */
};
/* Open system.db; busy timeout 5 s. */
int acctdb_open(const char *path, enum acctdb_mode mode, struct acctdb **db_r,
		const char **err_r);
/* As root: give system.db to root with read access for group gid only (0640). 1 changed
 * something, 0 already so (or not root), -1 error. */
int acctdb_give_to_root(const char *path, unsigned gid, const char **err_r);
void acctdb_close(struct acctdb **db);

/* Domains. add: 1 added, 0 already there. remove: 1 removed, 0 not found (refuses with -1 while
 * accounts or aliases of the domain exist). exists: 1/0. */
int acctdb_domain_add(struct acctdb *db, const char *domain, const char **err_r);
int acctdb_domain_remove(struct acctdb *db, const char *domain, const char **err_r);
int acctdb_domain_exists(struct acctdb *db, const char *domain, const char **err_r);
/* Calls cb for each domain in name order; returns count or -1. */
int acctdb_domain_list(struct acctdb *db, void (*cb)(void *ctx, const char *domain), void *ctx,
		       const char **err_r);

/* Accounts. The domain must exist (else -1 with a clear message). add: 1 added, 0 exists. */
int acctdb_user_add(struct acctdb *db, const char *address, const char *hash, const char **err_r);
/* 1 changed, 0 no such user. */
int acctdb_user_set_hash(struct acctdb *db, const char *address, const char *hash,
			 const char **err_r);
/* Storage quota in octets, 0 = unlimited. 1 changed, 0 no such user. */
int acctdb_user_set_quota(struct acctdb *db, const char *address, uint64_t bytes,
			  const char **err_r);
/* Suspend (1) or allow (0) sending from an account (issue 5). 1 changed, 0 no such user. */
int acctdb_user_set_suspended(struct acctdb *db, const char *address, int suspended,
			      const char **err_r);

/* An account's own sending limits (table send_limits); -1 means "the server-wide setting",
 * 0 means "no limit". The names are the `postino user limits` keys. */
enum { ACCT_LIM_MSG_HOUR, ACCT_LIM_MSG_DAY, ACCT_LIM_RCPT_DAY, ACCT_LIM_NEW_RCPT_DAY,
       ACCT_LIM_SUSPEND, ACCT_LIM_COUNT };
struct acct_limits {
	int64_t v[ACCT_LIM_COUNT];
};
extern const char *const acctdb_limit_names[ACCT_LIM_COUNT];
/* 1 the account has a row (l filled), 0 none (all -1; also when the table does not exist). The
 * address must be normalized (lower-case). */
int acctdb_limits_get(struct acctdb *db, const char *address, struct acct_limits *l,
		      const char **err_r);
/* 1 stored, 0 no such user. */
int acctdb_limits_set(struct acctdb *db, const char *address, const struct acct_limits *l,
		      const char **err_r);
int acctdb_user_remove(struct acctdb *db, const char *address, const char **err_r);
/* 1 found (*u filled), 0 not found. Address matched case-insensitively. */
int acctdb_user_get(struct acctdb *db, const char *address, struct acct_user *u,
		    const char **err_r);
/* domain NULL = all. Returns count or -1. */
int acctdb_user_list(struct acctdb *db, const char *domain,
		     void (*cb)(void *ctx, const struct acct_user *u), void *ctx, const char **err_r);

/* Aliases: `alias` is local@domain, or "@domain" for the domain's catch-all. `targets` is a
 * comma- or space-separated list of addresses (local or remote). add: 1 added, 0 replaced. */
int acctdb_alias_add(struct acctdb *db, const char *alias, const char *targets, const char **err_r);
int acctdb_alias_remove(struct acctdb *db, const char *alias, const char **err_r);
int acctdb_alias_list(struct acctdb *db, const char *domain,
		      void (*cb)(void *ctx, const char *alias, const char *targets), void *ctx,
		      const char **err_r);

/* Resolve a recipient address: calls cb once per final target address (lower-case), expanding
 * aliases recursively (depth limit 10, duplicates removed). An existing account is itself; an
 * exact alias wins over an account of the same name; the catch-all "@domain" applies only when
 * neither an account nor an exact alias matches. postmaster@ a hosted domain with none of these
 * goes to the domain's oldest account, else to the server's oldest (RFC 5321 4.5.1). Returns
 * the number of targets (0: unknown recipient), or -1. */
int acctdb_resolve(struct acctdb *db, const char *address,
		   void (*cb)(void *ctx, const char *target), void *ctx, const char **err_r);

/* The file's change counter (SQLite's header, offset 24), read without a lock: every commit
 * to a rollback-journal database moves it, so an answer kept from a lookup made after the
 * counter was read is still good while it reads the same (a lookup racing a commit sees the
 * commit, which can only make the kept answer newer than its counter says). 0 ok, -1 unknown
 * (unreadable, or WAL mode, where commits leave it alone): then keep nothing. */
int acctdb_change_counter(struct acctdb *db, uint32_t *out);

/* Run the lookups between acctdb_read_begin and acctdb_read_end in one read transaction: one
 * lock and one look at the file's change counter for all of them instead of one per query (an
 * RCPT makes five or six). Keep the span short: a writer (the admin) waits for it. Pairs may
 * nest; a failed begin leaves each query its own transaction. */
void acctdb_read_begin(struct acctdb *db);
void acctdb_read_end(struct acctdb *db);

/* The server's own domain for "<Postmaster>" (RFC 5321 4.1.1.3): the parent of hostname or
 * hostname itself when hosted, else the oldest hosted domain. 1 found (out set), 0 none. */
int acctdb_primary_domain(struct acctdb *db, const char *hostname, char *out, size_t outlen,
			  const char **err_r);

/* May account `user` send as `address`? 1 yes (own address, or an exact alias whose targets
 * include the user), 0 no. */
int acctdb_may_send_as(struct acctdb *db, const char *user, const char *address,
		       const char **err_r);
/* Calls cb with every address `user` may send as (its own first). Returns count or -1. */
int acctdb_sendable_addresses(struct acctdb *db, const char *user,
			      void (*cb)(void *ctx, const char *address), void *ctx,
			      const char **err_r);

/* Check a domain name and write its canonical form into out: U-labels as A-labels ("bücher" ->
 * "xn--bcher-kva", UTS 46), ASCII lower-cased; LDH labels of 1..63, at most 253 characters, no
 * trailing dot, top label not all digits. 0 ok, -1 invalid or does not fit. Thread-safe. */
int acctdb_normalize_domain(const char *in, char *out, size_t outlen);
/* Check an address local@domain (local part: 1..64 octets of atext, dots and well-formed UTF-8,
 * no leading, trailing or double dot; ASCII letters lower-cased) and write it into out with the
 * domain as above. 0 ok, -1 invalid. Thread-safe. */
int acctdb_normalize_address(const char *in, char *out, size_t outlen);

#endif
