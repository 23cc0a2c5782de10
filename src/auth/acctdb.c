/* acctdb.c - the account database (system.db): domains, accounts and aliases in SQLite.
 *
 * Every statement is a constant string prepared once per handle and cached; addresses and domains
 * only ever reach SQLite as bound parameters. Names are validated and lower-cased before they are
 * stored or looked up, so the primary keys compare with plain binary collation.
 * Write paths that check before they change (domain remove, user add, alias add) run inside
 * BEGIN IMMEDIATE so a second process cannot slip in between the check and the change.
 */
#include "acctdb.h"
#include "idn.h"
#include "sqldb.h"
#include "utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ACCTDB_BUSY_TIMEOUT_MS 5000   /* another process holds the write lock: wait this long */
#define ACCTDB_DOMAIN_MAX 253         /* RFC 1035 2.3.4: 255 octets on the wire, 253 as text */
#define ACCTDB_LABEL_MAX 63           /* RFC 1035 2.3.4 */
#define ACCTDB_LOCAL_MAX 64           /* RFC 5321 4.5.3.1.1 */
#define ACCTDB_HASH_MAX 255           /* fits struct acct_user.hash with its NUL */
#define ACCTDB_RESOLVE_DEPTH 10       /* alias nesting levels followed by acctdb_resolve() */
#define ACCTDB_RESOLVE_TARGETS 1000   /* final targets of one resolution; more is a mistake */
#define ACCTDB_RESOLVE_VISITS 1000    /* alias expansions in one resolution (bounds the work) */
#define ACCTDB_ALIAS_TARGETS 1000     /* targets one alias row may list */
#define ACCTDB_INPUT_MAX 1024       /* longest address text looked at (U-labels are longer) */
#define ACCTDB_SHOWN_MAX 80           /* user input quoted in an error message is clipped here */

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_DOMAIN_ADD,
	ST_DOMAIN_EXISTS,
	ST_DOMAIN_REMOVE,
	ST_DOMAIN_LIST,
	ST_DOMAIN_USERS,
	ST_DOMAIN_ALIASES,
	ST_USER_ADD,
	ST_USER_SET_HASH,
	ST_USER_REMOVE,
	ST_USER_GET,
	ST_USER_EXISTS,
	ST_USER_LIST_ALL,
	ST_USER_LIST_DOMAIN,
	ST_ALIAS_GET,
	ST_ALIAS_INSERT,
	ST_ALIAS_UPDATE,
	ST_ALIAS_REMOVE,
	ST_ALIAS_LIST_ALL,
	ST_ALIAS_LIST_DOMAIN,
	ST_ALIAS_BY_TARGET,
	ST_FIRST_USER_DOMAIN,
	ST_FIRST_USER,
	ST_FIRST_DOMAIN,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_DOMAIN_ADD] = "INSERT OR IGNORE INTO domains(name, created) VALUES (?1, ?2)",
	[ST_DOMAIN_EXISTS] = "SELECT 1 FROM domains WHERE name = ?1",
	[ST_DOMAIN_REMOVE] = "DELETE FROM domains WHERE name = ?1",
	[ST_DOMAIN_LIST] = "SELECT name FROM domains ORDER BY name",
	[ST_DOMAIN_USERS] = "SELECT count(*) FROM users WHERE domain = ?1",
	[ST_DOMAIN_ALIASES] = "SELECT count(*) FROM aliases WHERE domain = ?1",
	[ST_USER_ADD] = "INSERT OR IGNORE INTO users(address, domain, hash, suspended, quota_bytes, "
			"created) VALUES (?1, ?2, ?3, 0, 0, ?4)",
	[ST_USER_SET_HASH] = "UPDATE users SET hash = ?2 WHERE address = ?1",
	[ST_USER_REMOVE] = "DELETE FROM users WHERE address = ?1",
	[ST_USER_GET] = "SELECT address, hash, suspended, quota_bytes, created FROM users "
			"WHERE address = ?1",
	[ST_USER_EXISTS] = "SELECT 1 FROM users WHERE address = ?1",
	[ST_USER_LIST_ALL] = "SELECT address, hash, suspended, quota_bytes, created FROM users "
			     "ORDER BY address",
	[ST_USER_LIST_DOMAIN] = "SELECT address, hash, suspended, quota_bytes, created FROM users "
				"WHERE domain = ?1 ORDER BY address",
	[ST_ALIAS_GET] = "SELECT targets FROM aliases WHERE alias = ?1",
	[ST_ALIAS_INSERT] = "INSERT INTO aliases(alias, domain, targets) VALUES (?1, ?2, ?3)",
	[ST_ALIAS_UPDATE] = "UPDATE aliases SET targets = ?2 WHERE alias = ?1",
	[ST_ALIAS_REMOVE] = "DELETE FROM aliases WHERE alias = ?1",
	[ST_ALIAS_LIST_ALL] = "SELECT alias, targets FROM aliases ORDER BY alias",
	[ST_ALIAS_LIST_DOMAIN] = "SELECT alias, targets FROM aliases WHERE domain = ?1 "
				 "ORDER BY alias",
	/* a cheap pre-filter; every row is checked again in C against the parsed target list */
	[ST_ALIAS_BY_TARGET] = "SELECT alias, targets FROM aliases WHERE substr(alias, 1, 1) <> '@' "
			       "AND instr(',' || targets || ',', ',' || ?1 || ',') > 0 "
			       "ORDER BY alias",
	/* the oldest account of a domain, and of the server (rowid grows with each insert) */
	[ST_FIRST_USER_DOMAIN] = "SELECT address FROM users WHERE domain = ?1 ORDER BY rowid LIMIT 1",
	[ST_FIRST_USER] = "SELECT address FROM users ORDER BY rowid LIMIT 1",
	[ST_FIRST_DOMAIN] = "SELECT name FROM domains ORDER BY rowid LIMIT 1",
};

/* system.db's schema by user_version (sqldb.h); never edit a step, append one. Files made
 * before user_version was used are level 0 with a schema_version table (version 1): step 1
 * makes its tables with IF NOT EXISTS, so such a file passes it unchanged, and step 2 the
 * table that was added later on every writable open; step 3 drops the old version table. */
static const struct sqldb_step acct_steps[] = {
	{ "tables",
	  "CREATE TABLE IF NOT EXISTS domains ("
	  " name TEXT PRIMARY KEY NOT NULL,"
	  " created INTEGER NOT NULL);"
	  "CREATE TABLE IF NOT EXISTS users ("
	  " address TEXT PRIMARY KEY NOT NULL,"
	  " domain TEXT NOT NULL REFERENCES domains(name),"
	  " hash TEXT NOT NULL,"
	  " suspended INTEGER NOT NULL DEFAULT 0,"
	  " quota_bytes INTEGER NOT NULL DEFAULT 0,"
	  " created INTEGER NOT NULL);"
	  "CREATE INDEX IF NOT EXISTS users_domain ON users(domain);"
	  "CREATE TABLE IF NOT EXISTS aliases ("
	  " alias TEXT PRIMARY KEY NOT NULL,"
	  " domain TEXT NOT NULL REFERENCES domains(name),"
	  " targets TEXT NOT NULL);"
	  "CREATE INDEX IF NOT EXISTS aliases_domain ON aliases(domain);", NULL },
	/* per-account sending limits (issue 5): NULL = the server-wide setting, 0 = no limit */
	{ "send_limits",
	  "CREATE TABLE IF NOT EXISTS send_limits ("
	  " address TEXT PRIMARY KEY NOT NULL,"
	  " messages_per_hour INTEGER, messages_per_day INTEGER,"
	  " recipients_per_day INTEGER, new_recipients_per_day INTEGER,"
	  " suspend_threshold INTEGER);", NULL },
	{ "drop schema_version", "DROP TABLE IF EXISTS schema_version;", NULL },
};
#define ACCTDB_LEVEL (sizeof(acct_steps) / sizeof(acct_steps[0]))

struct acctdb {
	sqlite3 *db;
	struct sqldb_cache stc;   /* stmt_sql[] and the other constant statements */
	char err[512];
	int ctr_fd;               /* the file, for acctdb_change_counter (-1 not open yet) */
	unsigned read_depth;      /* acctdb_read_begin nesting; the transaction is the outermost's */
	int read_open;            /* the outermost begin opened a transaction */
};

/* acctdb_open() has no handle to keep its message in when it fails. */
static _Thread_local char open_err[512];

/* Set *err_r to a formatted message kept in the handle; returns -1. */
__attribute__((format(printf, 3, 4)))
static int fail(struct acctdb *db, const char **err_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
	if (err_r != NULL)
		*err_r = db->err;
	return -1;
}

/* Report the last SQLite error of the handle, saying what we were doing; returns -1. */
static int fail_sql(struct acctdb *db, const char **err_r, const char *doing)
{
	int rc = sqlite3_extended_errcode(db->db) & 0xff;
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return fail(db, err_r, "account database is locked by another process while %s "
				       "(waited %d ms)", doing, ACCTDB_BUSY_TIMEOUT_MS);
	return fail(db, err_r, "account database error while %s: %s", doing,
		    sqlite3_errmsg(db->db));
}

/* Copy user input into out for an error message: printable ASCII only, clipped. */
static const char *shown(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; in[i] != '\0' && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		if (i >= ACCTDB_SHOWN_MAX && in[i + 1] != '\0') {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
	}
	out[o] = '\0';
	return out;
}

/* Refuse a malformed name, quoting it and saying what a good one looks like; returns -1. */
static int fail_invalid(struct acctdb *db, const char **err_r, const char *kind, const char *input,
			const char *rule)
{
	char buf[ACCTDB_SHOWN_MAX + 8];
	return fail(db, err_r, "'%s' is not a valid %s (%s)", shown(input, buf, sizeof(buf)), kind,
		    rule);
}

#define DOMAIN_RULE "letters (any script), digits and hyphens in dot-separated labels, at most " \
		    "253 characters in ASCII (xn--) form"
#define ADDRESS_RULE "use local@domain with a local part of 1 to 64 octets: letters (any " \
		     "script), digits, dots or !#$%&'*+-/=?^_`{|}~"
#define ALIAS_RULE "use local@domain, or @domain for the domain's catch-all"

/* Lower-case an ASCII letter. */
static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Check in[0..len), already in ASCII form, as an LDH domain and write it lower-cased to out.
 * 0 ok, -1 invalid. */
static int norm_ldh_n(const char *in, size_t len, char *out, size_t outlen)
{
	size_t label = 0;
	int numeric = 1;   /* the last label so far is all digits */
	if (len == 0 || len > ACCTDB_DOMAIN_MAX || len >= outlen)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = lower(in[i]);
		if (c == '.') {
			if (label == 0 || out[i - 1] == '-')
				return -1;
			label = 0;
			numeric = 1;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			if (c == '-' && label == 0)
				return -1;
			if (++label > ACCTDB_LABEL_MAX)
				return -1;
			if (c < '0' || c > '9')
				numeric = 0;
		} else {
			return -1;
		}
		out[i] = c;
	}
	/* no empty last label (trailing dot), no trailing hyphen, no all-numeric top label
	 * (RFC 3696 2: it would read as an IP address) */
	if (label == 0 || out[len - 1] == '-' || numeric)
		return -1;
	out[len] = '\0';
	return 0;
}

/* Check in[0..len) as a domain and write its canonical form to out: U-labels become A-labels
 * (idn.h), so "bücher.example" and "xn--bcher-kva.example" are one domain. 0 ok, -1 invalid. */
static int norm_domain_n(const char *in, size_t len, char *out, size_t outlen)
{
	char ace[ACCTDB_DOMAIN_MAX + 2];
	if (len > IDN_INPUT_MAX || idn_to_ascii(in, len, ace, sizeof(ace)) < 0)
		return -1;
	return norm_ldh_n(ace, strlen(ace), out, outlen);
}

/* Is c an RFC 5322 atext character? */
static int is_atext(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Check in[0..len) as local@domain (dot-atom local part; RFC 6531 UTF-8 allowed, ASCII letters
 * lower-cased) and write it to out with the domain in its canonical form. */
static int norm_address_n(const char *in, size_t len, char *out, size_t outlen)
{
	const char *at = memchr(in, '@', len);
	if (at == NULL || len > ACCTDB_INPUT_MAX)
		return -1;
	size_t ll = (size_t)(at - in);
	if (ll == 0 || ll > ACCTDB_LOCAL_MAX || ll + 1 >= outlen)
		return -1;
	if (in[0] == '.' || in[ll - 1] == '.')
		return -1;
	for (size_t i = 0; i < ll;) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 0x80) {
			size_t n = utf8_decode((const unsigned char *)in + i, ll - i, 0, NULL);
			if (n == 0)
				return -1;
			memcpy(out + i, in + i, n);
			i += n;
			continue;
		}
		if (in[i] == '.') {
			if (in[i + 1] == '.')
				return -1;
		} else if (!is_atext(in[i])) {
			return -1;
		}
		out[i] = lower(in[i]);
		i++;
	}
	out[ll] = '@';
	if (norm_domain_n(at + 1, len - ll - 1, out + ll + 1, outlen - ll - 1) < 0)
		return -1;
	return strlen(out) > ACCTDB_ADDRESS_MAX ? -1 : 0;
}

/* Check and lower-case a domain name. */
int acctdb_normalize_domain(const char *in, char *out, size_t outlen)
{
	return norm_domain_n(in, strlen(in), out, outlen);
}

/* Check and lower-case an address local@domain. */
int acctdb_normalize_address(const char *in, char *out, size_t outlen)
{
	return norm_address_n(in, strlen(in), out, outlen);
}

/* Alias key: local@domain or @domain (catch-all). Sets *domain_r to the domain inside out. */
static int norm_alias(const char *in, char *out, size_t outlen, const char **domain_r)
{
	if (in[0] == '@') {
		if (outlen < 2 || acctdb_normalize_domain(in + 1, out + 1, outlen - 1) < 0)
			return -1;
		out[0] = '@';
		*domain_r = out + 1;
		return 0;
	}
	if (acctdb_normalize_address(in, out, outlen) < 0)
		return -1;
	*domain_r = strchr(out, '@') + 1;
	return 0;
}

/* A stored hash: 1..255 printable ASCII characters without spaces. */
static int hash_ok(const char *hash)
{
	size_t n = strlen(hash);
	if (n == 0 || n > ACCTDB_HASH_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)hash[i] <= 0x20 || (unsigned char)hash[i] >= 0x7f)
			return 0;
	return 1;
}

/* Hand out the cached statement `id`, preparing it on first use; NULL on error. (A callback
 * that calls back into the listing it is part of gets a statement of its own.) */
static sqlite3_stmt *stmt_get(struct acctdb *db, enum stmt_id id, const char **err_r)
{
	sqlite3_stmt *st;
	if (sqldb_prepare(&db->stc, stmt_sql[id], &st) != SQLITE_OK) {
		fail_sql(db, err_r, "preparing a query");
		return NULL;
	}
	return st;
}

/* Give a statement back, ready for its next use. */
static void stmt_done(struct acctdb *db, sqlite3_stmt *st)
{
	sqldb_release(&db->stc, st);
}

/* Bind a string parameter (the caller keeps it alive until stmt_done). */
static int bind_str(sqlite3_stmt *st, int idx, const char *s)
{
	return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

/* Run a statement that returns no rows, with up to two string parameters. */
static int exec_stmt(struct acctdb *db, enum stmt_id id, const char *a, const char *b,
		     const char *doing, const char **err_r)
{
	sqlite3_stmt *st = stmt_get(db, id, err_r);
	if (st == NULL)
		return -1;
	if ((a != NULL && bind_str(st, 1, a) != SQLITE_OK) ||
	    (b != NULL && bind_str(st, 2, b) != SQLITE_OK)) {
		stmt_done(db, st);
		return fail_sql(db, err_r, doing);
	}
	int rc = sqlite3_step(st);
	stmt_done(db, st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, doing);
	return 0;
}

/* Run a query with one string parameter: 1 a row came back, 0 none, -1 error. */
static int exists_stmt(struct acctdb *db, enum stmt_id id, const char *key, const char *doing,
		       const char **err_r)
{
	sqlite3_stmt *st = stmt_get(db, id, err_r);
	if (st == NULL)
		return -1;
	if (bind_str(st, 1, key) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, doing);
	}
	int rc = sqlite3_step(st);
	stmt_done(db, st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return fail_sql(db, err_r, doing);
}

/* Run a count(*) query with one string parameter into *n. */
static int count_stmt(struct acctdb *db, enum stmt_id id, const char *key, int64_t *n,
		      const char **err_r)
{
	sqlite3_stmt *st = stmt_get(db, id, err_r);
	if (st == NULL)
		return -1;
	if (bind_str(st, 1, key) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, "counting");
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	stmt_done(db, st);
	if (rc != SQLITE_ROW)
		return fail_sql(db, err_r, "counting");
	return 0;
}

/* Start a write transaction (waits up to the busy timeout for the write lock). */
static int tx_begin(struct acctdb *db, const char **err_r)
{
	return exec_stmt(db, ST_BEGIN, NULL, NULL, "starting a transaction", err_r);
}

/* Commit the transaction, rolling back if the commit fails. */
static int tx_commit(struct acctdb *db, const char **err_r)
{
	if (exec_stmt(db, ST_COMMIT, NULL, NULL, "committing", err_r) < 0) {
		if (!sqlite3_get_autocommit(db->db)) {
			char keep[sizeof(db->err)];
			memcpy(keep, db->err, sizeof(keep));
			(void)exec_stmt(db, ST_ROLLBACK, NULL, NULL, "rolling back", NULL);
			memcpy(db->err, keep, sizeof(keep));
		}
		return -1;
	}
	return 0;
}

/* Abandon the transaction; keeps the message already in *err_r. Returns -1. */
static int tx_rollback(struct acctdb *db)
{
	if (!sqlite3_get_autocommit(db->db)) {
		char keep[sizeof(db->err)];
		memcpy(keep, db->err, sizeof(keep));
		(void)exec_stmt(db, ST_ROLLBACK, NULL, NULL, "rolling back", NULL);
		memcpy(db->err, keep, sizeof(keep));
	}
	return -1;
}

/* Run a constant SQL text (schema, pragmas), stepping through any rows it returns. */
static int exec_const(struct acctdb *db, const char *sql, const char *doing, const char **err_r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail_sql(db, err_r, doing);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, doing);
	return 0;
}

/* An existing file opened without migrating: a level 0 file must be one of the first
 * versions (a schema_version table holding 1); see acct_steps. */
static int schema_check(struct acctdb *db, const char *path, const char **err_r)
{
	if (sqldb_version(db->db) > 0)
		return 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
				       "name = 'schema_version'", -1, &st, NULL) != SQLITE_OK)
		return fail_sql(db, err_r, "reading the schema");
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return fail(db, err_r, "%s is not a postino account database (no schema)", path);
	if (rc != SQLITE_ROW)
		return fail_sql(db, err_r, "reading the schema");
	if (sqlite3_prepare_v2(db->db, "SELECT max(version) FROM schema_version", -1, &st, NULL) !=
	    SQLITE_OK)
		return fail_sql(db, err_r, "reading the schema version");
	rc = sqlite3_step(st);
	int64_t v = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL ?
			    sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return fail_sql(db, err_r, "reading the schema version");
	if (v < 1)
		return fail(db, err_r, "%s is not a postino account database (no schema version)",
			    path);
	if (v > 1)
		return fail(db, err_r, "account database %s has schema version %lld, newer than "
				       "this postino understands (1)", path, (long long)v);
	return 0;
}

/* Open system.db; see acctdb.h. A new file is created 0600: it holds password hashes. The
 * workers read it (no journal change: they may not write next to it); a writer switches the
 * file to a rollback journal (an old WAL file is converted) and durable commits, and with
 * ACCTDB_CREATE brings the schema up to date. */
int acctdb_open(const char *path, enum acctdb_mode mode, struct acctdb **db_r,
		const char **err_r)
{
	int create = mode == ACCTDB_CREATE;
	struct acctdb *db = calloc(1, sizeof(*db));
	*db_r = NULL;
	if (db == NULL) {
		snprintf(open_err, sizeof(open_err), "out of memory opening %s", path);
		*err_r = open_err;
		return -1;
	}
	db->ctr_fd = -1;
	int r = 0;
	if (create) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			r = fail(db, err_r, "cannot create account database %s: %s", path,
				 strerror(errno));
		else
			close(fd);
	} else if (access(path, F_OK) < 0) {
		r = fail(db, err_r, "account database %s does not exist", path);
	}
	if (r == 0) {
		const struct sqldb_opts o = {
			.flags = mode == ACCTDB_RO ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE,
			.journal_mode = mode == ACCTDB_RO ? NULL : "delete",
			.synchronous = mode == ACCTDB_RO ? NULL : "full",
			.busy_timeout_ms = ACCTDB_BUSY_TIMEOUT_MS,
			.steps = acct_steps,
			.nsteps = ACCTDB_LEVEL,
			.migrate = create,
		};
		char err[sizeof(db->err)];
		if (sqldb_open(path, &o, &db->db, err, sizeof(err)) < 0)
			r = fail(db, err_r, "account database: %s", err);
	}
	if (r == 0) {
		sqldb_cache_init(&db->stc, db->db);
		r = exec_const(db, "PRAGMA foreign_keys=ON", "enabling foreign keys", err_r);
	}
	if (r == 0 && !create)
		r = schema_check(db, path, err_r);
	if (r < 0) {
		memcpy(open_err, db->err, sizeof(open_err));
		*err_r = open_err;
		acctdb_close(&db);
		return -1;
	}
	*db_r = db;
	return 0;
}

/* See acctdb.h. */
int acctdb_give_to_root(const char *path, unsigned gid, const char **err_r)
{
	struct stat stb;
	if (geteuid() != 0)
		return 0;
	if (stat(path, &stb) < 0) {
		snprintf(open_err, sizeof(open_err), "cannot read %s: %s", path, strerror(errno));
		*err_r = open_err;
		return -1;
	}
	if (stb.st_uid == 0 && stb.st_gid == (gid_t)gid && (stb.st_mode & 07777) == 0640)
		return 0;
	if (chown(path, 0, (gid_t)gid) < 0 || chmod(path, 0640) < 0) {
		snprintf(open_err, sizeof(open_err), "cannot give %s to root (group %u, mode 0640): "
			 "%s", path, gid, strerror(errno));
		*err_r = open_err;
		return -1;
	}
	return 1;
}

/* Finalize the cached statements and close the handle. */
void acctdb_close(struct acctdb **dbp)
{
	struct acctdb *db = *dbp;
	if (db == NULL)
		return;
	sqldb_cache_clear(&db->stc);
	sqlite3_close(db->db);
	if (db->ctr_fd >= 0)
		close(db->ctr_fd);
	free(db);
	*dbp = NULL;
}

/* See acctdb.h. */
int acctdb_change_counter(struct acctdb *db, uint32_t *out)
{
	if (db->ctr_fd < 0) {
		const char *path = db->db ? sqlite3_db_filename(db->db, "main") : NULL;
		if (path == NULL || path[0] == '\0' ||
		    (db->ctr_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return -1;
	}
	unsigned char h[28];
	if (pread(db->ctr_fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h, "SQLite format 3", 16) != 0)
		return -1;
	if (h[18] != 1 || h[19] != 1)
		return -1;   /* WAL: commits leave the counter alone */
	*out = (uint32_t)h[24] << 24 | (uint32_t)h[25] << 16 | (uint32_t)h[26] << 8 | h[27];
	return 0;
}

/* See acctdb.h. */
void acctdb_read_begin(struct acctdb *db)
{
	if (db->read_depth++ > 0)
		return;
	db->read_open = sqlite3_get_autocommit(db->db) &&
			sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

/* See acctdb.h. */
void acctdb_read_end(struct acctdb *db)
{
	if (db->read_depth == 0 || --db->read_depth > 0)
		return;
	if (db->read_open && !sqlite3_get_autocommit(db->db) &&
	    sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
	db->read_open = 0;
}

/* Run a one-row, one-column query (key bound as ?1 unless NULL) and copy the value into out.
 * 1 found, 0 no row, -1 error. */
static int first_text(struct acctdb *db, enum stmt_id id, const char *key, char *out,
		      size_t outlen, const char **err_r)
{
	sqlite3_stmt *st = stmt_get(db, id, err_r);
	if (st == NULL)
		return -1;
	if (key != NULL && bind_str(st, 1, key) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, "looking up the postmaster");
	}
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		snprintf(out, outlen, "%s", t != NULL ? t : "");
		r = out[0] != '\0';
	}
	stmt_done(db, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail_sql(db, err_r, "looking up the postmaster");
	return r;
}

/* Is the (normalized) domain hosted? */
static int domain_known(struct acctdb *db, const char *domain, const char **err_r)
{
	return exists_stmt(db, ST_DOMAIN_EXISTS, domain, "looking up a domain", err_r);
}

/* Add a hosted domain. */
int acctdb_domain_add(struct acctdb *db, const char *domain, const char **err_r)
{
	char d[ACCTDB_DOMAIN_MAX + 1];
	if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0)
		return fail_invalid(db, err_r, "domain name", domain, DOMAIN_RULE);
	sqlite3_stmt *st = stmt_get(db, ST_DOMAIN_ADD, err_r);
	if (st == NULL)
		return -1;
	if (bind_str(st, 1, d) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL)) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, "adding a domain");
	}
	int rc = sqlite3_step(st);
	stmt_done(db, st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, "adding a domain");
	return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

/* Remove a hosted domain that no longer has accounts or aliases. */
int acctdb_domain_remove(struct acctdb *db, const char *domain, const char **err_r)
{
	char d[ACCTDB_DOMAIN_MAX + 1];
	int64_t nu = 0, na = 0;
	if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0)
		return fail_invalid(db, err_r, "domain name", domain, DOMAIN_RULE);
	if (tx_begin(db, err_r) < 0)
		return -1;
	if (count_stmt(db, ST_DOMAIN_USERS, d, &nu, err_r) < 0 ||
	    count_stmt(db, ST_DOMAIN_ALIASES, d, &na, err_r) < 0)
		return tx_rollback(db);
	if (nu > 0 || na > 0) {
		fail(db, err_r, "domain %s still has %lld account%s and %lld alias%s; remove them "
				"first", d, (long long)nu, nu == 1 ? "" : "s", (long long)na,
		     na == 1 ? "" : "es");
		return tx_rollback(db);
	}
	if (exec_stmt(db, ST_DOMAIN_REMOVE, d, NULL, "removing a domain", err_r) < 0)
		return tx_rollback(db);
	int changed = sqlite3_changes(db->db);
	if (tx_commit(db, err_r) < 0)
		return -1;
	return changed > 0 ? 1 : 0;
}

/* Is this domain hosted? Malformed names are simply not hosted. */
int acctdb_domain_exists(struct acctdb *db, const char *domain, const char **err_r)
{
	char d[ACCTDB_DOMAIN_MAX + 1];
	if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0)
		return 0;
	return domain_known(db, d, err_r);
}

/* Call cb for every hosted domain in name order. */
int acctdb_domain_list(struct acctdb *db, void (*cb)(void *ctx, const char *domain), void *ctx,
		       const char **err_r)
{
	sqlite3_stmt *st = stmt_get(db, ST_DOMAIN_LIST, err_r);
	int n = 0, rc;
	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cb(ctx, (const char *)sqlite3_column_text(st, 0));
		n++;
	}
	stmt_done(db, st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, "listing domains");
	return n;
}

/* Add an account in a hosted domain. */
int acctdb_user_add(struct acctdb *db, const char *address, const char *hash, const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return fail_invalid(db, err_r, "address", address, ADDRESS_RULE);
	if (!hash_ok(hash))
		return fail(db, err_r, "the password hash for %s is empty, longer than %d "
				       "characters or holds spaces or control characters", a,
			    ACCTDB_HASH_MAX);
	const char *domain = strchr(a, '@') + 1;
	if (tx_begin(db, err_r) < 0)
		return -1;
	int known = domain_known(db, domain, err_r);
	if (known < 0)
		return tx_rollback(db);
	if (known == 0) {
		fail(db, err_r, "domain %s is not hosted here", domain);
		return tx_rollback(db);
	}
	sqlite3_stmt *st = stmt_get(db, ST_USER_ADD, err_r);
	if (st == NULL)
		return tx_rollback(db);
	if (bind_str(st, 1, a) != SQLITE_OK || bind_str(st, 2, domain) != SQLITE_OK ||
	    bind_str(st, 3, hash) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL)) != SQLITE_OK) {
		stmt_done(db, st);
		fail_sql(db, err_r, "adding an account");
		return tx_rollback(db);
	}
	int rc = sqlite3_step(st);
	stmt_done(db, st);
	if (rc != SQLITE_DONE) {
		fail_sql(db, err_r, "adding an account");
		return tx_rollback(db);
	}
	int changed = sqlite3_changes(db->db);
	if (tx_commit(db, err_r) < 0)
		return -1;
	return changed > 0 ? 1 : 0;
}

/* Replace an account's password hash. */
int acctdb_user_set_hash(struct acctdb *db, const char *address, const char *hash,
			 const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return fail_invalid(db, err_r, "address", address, ADDRESS_RULE);
	if (!hash_ok(hash))
		return fail(db, err_r, "the password hash for %s is empty, longer than %d "
				       "characters or holds spaces or control characters", a,
			    ACCTDB_HASH_MAX);
	if (exec_stmt(db, ST_USER_SET_HASH, a, hash, "changing a password", err_r) < 0)
		return -1;
	return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

/* Set an account's storage quota in octets (0 = unlimited). 1 changed, 0 no such user. */
int acctdb_user_set_quota(struct acctdb *db, const char *address, uint64_t bytes,
			  const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return fail_invalid(db, err_r, "address", address, ADDRESS_RULE);
	if (bytes > INT64_MAX)
		return fail(db, err_r, "quota too large");
	if (sqldb_prepare(&db->stc, "UPDATE users SET quota_bytes = ? WHERE address = ?", &st) !=
	    SQLITE_OK)
		return fail(db, err_r, "account database error while setting a quota: %s",
			    sqlite3_errmsg(db->db));
	sqlite3_bind_int64(st, 1, (int64_t)bytes);
	sqlite3_bind_text(st, 2, a, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	stmt_done(db, st);
	if (r != SQLITE_DONE)
		return fail(db, err_r, "account database error while setting a quota: %s",
			    sqlite3_errmsg(db->db));
	return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

/* Suspend or allow sending. 1 changed, 0 no such user. */
int acctdb_user_set_suspended(struct acctdb *db, const char *address, int suspended,
			      const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return fail_invalid(db, err_r, "address", address, ADDRESS_RULE);
	if (sqldb_prepare(&db->stc, "UPDATE users SET suspended = ? WHERE address = ?", &st) !=
	    SQLITE_OK)
		return fail_sql(db, err_r, "suspending an account");
	sqlite3_bind_int(st, 1, suspended ? 1 : 0);
	sqlite3_bind_text(st, 2, a, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	stmt_done(db, st);
	if (r != SQLITE_DONE)
		return fail_sql(db, err_r, "suspending an account");
	return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

const char *const acctdb_limit_names[ACCT_LIM_COUNT] = {
	"messages_per_hour", "messages_per_day", "recipients_per_day", "new_recipients_per_day",
	"suspend_threshold",
};

/* An account's own sending limits (-1 = server default). 1 row found, 0 none (all -1). */
int acctdb_limits_get(struct acctdb *db, const char *address, struct acct_limits *l,
		      const char **err_r)
{
	sqlite3_stmt *st;
	for (int i = 0; i < ACCT_LIM_COUNT; i++)
		l->v[i] = -1;
	int rc = sqldb_prepare(&db->stc, "SELECT messages_per_hour, messages_per_day, "
			       "recipients_per_day, new_recipients_per_day, suspend_threshold "
			       "FROM send_limits WHERE address = ?", &st);
	if (rc != SQLITE_OK) {
		/* a database made before the table existed: nobody has limits of their own */
		if (strstr(sqlite3_errmsg(db->db), "no such table"))
			return 0;
		return fail_sql(db, err_r, "reading sending limits");
	}
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	int found = 0;
	if (rc == SQLITE_ROW) {
		found = 1;
		for (int i = 0; i < ACCT_LIM_COUNT; i++)
			if (sqlite3_column_type(st, i) != SQLITE_NULL)
				l->v[i] = sqlite3_column_int64(st, i);
	}
	stmt_done(db, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail_sql(db, err_r, "reading sending limits");
	return found;
}

/* Store an account's own sending limits (-1 = server default). 1 stored, 0 no such user. */
int acctdb_limits_set(struct acctdb *db, const char *address, const struct acct_limits *l,
		      const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	struct acct_user u;
	sqlite3_stmt *st;
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return fail_invalid(db, err_r, "address", address, ADDRESS_RULE);
	int r = acctdb_user_get(db, a, &u, err_r);
	explicit_bzero(&u, sizeof(u));
	if (r <= 0)
		return r;
	if (sqldb_prepare(&db->stc, "INSERT OR REPLACE INTO send_limits(address, "
			  "messages_per_hour, messages_per_day, recipients_per_day, "
			  "new_recipients_per_day, suspend_threshold) VALUES (?,?,?,?,?,?)",
			  &st) != SQLITE_OK)
		return fail_sql(db, err_r, "storing sending limits");
	sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
	for (int i = 0; i < ACCT_LIM_COUNT; i++) {
		if (l->v[i] < 0)
			sqlite3_bind_null(st, i + 2);
		else
			sqlite3_bind_int64(st, i + 2, l->v[i]);
	}
	r = sqlite3_step(st);
	stmt_done(db, st);
	if (r != SQLITE_DONE)
		return fail_sql(db, err_r, "storing sending limits");
	return 1;
}

/* Remove an account row (the mail files are the caller's business). */
int acctdb_user_remove(struct acctdb *db, const char *address, const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return fail_invalid(db, err_r, "address", address, ADDRESS_RULE);
	if (exec_stmt(db, ST_USER_REMOVE, a, NULL, "removing an account", err_r) < 0)
		return -1;
	int removed = sqlite3_changes(db->db) > 0;
	/* its own sending limits go with it (the table may not exist in an old database) */
	sqlite3_stmt *st;
	if (sqldb_prepare(&db->stc, "DELETE FROM send_limits WHERE address = ?", &st) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
		sqlite3_step(st);
		stmt_done(db, st);
	}
	return removed ? 1 : 0;
}

/* Fill *u from the current row of a users query (columns as in ST_USER_GET). */
static int user_from_row(struct acctdb *db, sqlite3_stmt *st, struct acct_user *u,
			 const char **err_r)
{
	const char *addr = (const char *)sqlite3_column_text(st, 0);
	const char *hash = (const char *)sqlite3_column_text(st, 1);
	if (addr == NULL || hash == NULL || strlen(addr) >= sizeof(u->address) ||
	    strlen(hash) >= sizeof(u->hash))
		return fail(db, err_r, "account database holds a malformed account row");
	memset(u, 0, sizeof(*u));
	memcpy(u->address, addr, strlen(addr) + 1);
	memcpy(u->hash, hash, strlen(hash) + 1);
	u->suspended = sqlite3_column_int64(st, 2) != 0;
	int64_t q = sqlite3_column_int64(st, 3);
	u->quota_bytes = q > 0 ? (uint64_t)q : 0;
	u->created = sqlite3_column_int64(st, 4);
	return 0;
}

/* Look an account up by address, ignoring case. */
int acctdb_user_get(struct acctdb *db, const char *address, struct acct_user *u,
		    const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return 0;
	sqlite3_stmt *st = stmt_get(db, ST_USER_GET, err_r);
	if (st == NULL)
		return -1;
	if (bind_str(st, 1, a) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, "looking up an account");
	}
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW)
		r = user_from_row(db, st, u, err_r) < 0 ? -1 : 1;
	stmt_done(db, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail_sql(db, err_r, "looking up an account");
	return r;
}

/* Call cb for every account (of one domain, or all) in address order. */
int acctdb_user_list(struct acctdb *db, const char *domain,
		     void (*cb)(void *ctx, const struct acct_user *u), void *ctx, const char **err_r)
{
	char d[ACCTDB_DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	if (domain != NULL) {
		if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0)
			return fail_invalid(db, err_r, "domain name", domain, DOMAIN_RULE);
		st = stmt_get(db, ST_USER_LIST_DOMAIN, err_r);
		if (st != NULL && bind_str(st, 1, d) != SQLITE_OK) {
			stmt_done(db, st);
			return fail_sql(db, err_r, "listing accounts");
		}
	} else {
		st = stmt_get(db, ST_USER_LIST_ALL, err_r);
	}
	if (st == NULL)
		return -1;
	struct acct_user u;
	int n = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (user_from_row(db, st, &u, err_r) < 0) {
			stmt_done(db, st);
			return -1;
		}
		cb(ctx, &u);
		n++;
	}
	memset(u.hash, 0, sizeof(u.hash));
	stmt_done(db, st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, "listing accounts");
	return n;
}

/* Parse a target list (commas and/or spaces) into a normalized, de-duplicated "a,b,c" string.
 * Returns a malloc'd string, or NULL with *err_r set. */
static char *targets_parse(struct acctdb *db, const char *targets, const char **err_r)
{
	size_t inlen = strlen(targets), o = 0, count = 0, cap = inlen + 2;
	char *out = malloc(cap);
	if (out == NULL) {
		fail(db, err_r, "out of memory");
		return NULL;
	}
	out[0] = '\0';
	for (size_t i = 0; i < inlen;) {
		while (i < inlen && strchr(", \t", targets[i]) != NULL)
			i++;
		size_t start = i;
		while (i < inlen && strchr(", \t", targets[i]) == NULL)
			i++;
		if (i == start)
			continue;
		char t[ACCTDB_ADDRESS_MAX + 1];
		if (norm_address_n(targets + start, i - start, t, sizeof(t)) < 0) {
			char bad[ACCTDB_SHOWN_MAX + 8];
			size_t bl = i - start < sizeof(bad) - 1 ? i - start : sizeof(bad) - 1;
			memcpy(bad, targets + start, bl);
			bad[bl] = '\0';
			fail_invalid(db, err_r, "alias target", bad, ADDRESS_RULE);
			free(out);
			return NULL;
		}
		/* drop duplicates: look for ",t," in ",out," */
		size_t tl = strlen(t);
		int dup = 0;
		for (const char *p = out; *p != '\0';) {
			const char *e = strchr(p, ',');
			size_t pl = e != NULL ? (size_t)(e - p) : strlen(p);
			if (pl == tl && memcmp(p, t, tl) == 0) {
				dup = 1;
				break;
			}
			p += pl + (e != NULL);
		}
		if (dup)
			continue;
		if (++count > ACCTDB_ALIAS_TARGETS) {
			fail(db, err_r, "an alias may list at most %d targets", ACCTDB_ALIAS_TARGETS);
			free(out);
			return NULL;
		}
		/* an A-label is longer than the U-label it comes from: make room */
		if (o + tl + 2 > cap) {
			char *n = realloc(out, o + tl + 2 + inlen);
			if (n == NULL) {
				fail(db, err_r, "out of memory");
				free(out);
				return NULL;
			}
			out = n;
			cap = o + tl + 2 + inlen;
		}
		if (o > 0)
			out[o++] = ',';
		memcpy(out + o, t, tl + 1);
		o += tl;
	}
	if (count == 0) {
		fail(db, err_r, "an alias needs at least one target address");
		free(out);
		return NULL;
	}
	return out;
}

/* Does the stored comma-separated list contain exactly `addr`? */
static int targets_contain(const char *list, const char *addr)
{
	size_t al = strlen(addr);
	for (const char *p = list; *p != '\0';) {
		const char *e = strchr(p, ',');
		size_t pl = e != NULL ? (size_t)(e - p) : strlen(p);
		while (pl > 0 && *p == ' ') {
			p++;
			pl--;
		}
		while (pl > 0 && p[pl - 1] == ' ')
			pl--;
		if (pl == al) {
			size_t k = 0;
			while (k < al && lower(p[k]) == addr[k])
				k++;
			if (k == al)
				return 1;
		}
		if (e == NULL)
			break;
		p = e + 1;
	}
	return 0;
}

/* Add or replace an alias in a hosted domain. */
int acctdb_alias_add(struct acctdb *db, const char *alias, const char *targets, const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	const char *domain;
	if (norm_alias(alias, a, sizeof(a), &domain) < 0)
		return fail_invalid(db, err_r, "alias", alias, ALIAS_RULE);
	char *t = targets_parse(db, targets, err_r);
	if (t == NULL)
		return -1;
	int r = -1, existed = 0;
	if (tx_begin(db, err_r) < 0) {
		free(t);
		return -1;
	}
	int known = domain_known(db, domain, err_r);
	if (known == 0)
		fail(db, err_r, "domain %s is not hosted here", domain);
	if (known == 1)
		existed = exists_stmt(db, ST_ALIAS_GET, a, "looking up an alias", err_r);
	if (known == 1 && existed == 1)
		r = exec_stmt(db, ST_ALIAS_UPDATE, a, t, "replacing an alias", err_r);
	else if (known == 1 && existed == 0) {
		sqlite3_stmt *st = stmt_get(db, ST_ALIAS_INSERT, err_r);
		if (st != NULL) {
			if (bind_str(st, 1, a) != SQLITE_OK || bind_str(st, 2, domain) != SQLITE_OK ||
			    bind_str(st, 3, t) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
				fail_sql(db, err_r, "adding an alias");
			else
				r = 0;
			stmt_done(db, st);
		}
	}
	free(t);
	if (r < 0)
		return tx_rollback(db);
	if (tx_commit(db, err_r) < 0)
		return -1;
	return existed ? 0 : 1;
}

/* Remove an alias (or a catch-all "@domain"). */
int acctdb_alias_remove(struct acctdb *db, const char *alias, const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	const char *domain;
	if (norm_alias(alias, a, sizeof(a), &domain) < 0)
		return fail_invalid(db, err_r, "alias", alias, ALIAS_RULE);
	if (exec_stmt(db, ST_ALIAS_REMOVE, a, NULL, "removing an alias", err_r) < 0)
		return -1;
	return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

/* Call cb for every alias (of one domain, or all when domain is NULL) in name order. */
int acctdb_alias_list(struct acctdb *db, const char *domain,
		      void (*cb)(void *ctx, const char *alias, const char *targets), void *ctx,
		      const char **err_r)
{
	char d[ACCTDB_DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	if (domain != NULL) {
		if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0)
			return fail_invalid(db, err_r, "domain name", domain, DOMAIN_RULE);
		st = stmt_get(db, ST_ALIAS_LIST_DOMAIN, err_r);
		if (st != NULL && bind_str(st, 1, d) != SQLITE_OK) {
			stmt_done(db, st);
			return fail_sql(db, err_r, "listing aliases");
		}
	} else {
		st = stmt_get(db, ST_ALIAS_LIST_ALL, err_r);
	}
	if (st == NULL)
		return -1;
	int n = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *al = (const char *)sqlite3_column_text(st, 0);
		const char *tg = (const char *)sqlite3_column_text(st, 1);
		cb(ctx, al != NULL ? al : "", tg != NULL ? tg : "");
		n++;
	}
	stmt_done(db, st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, "listing aliases");
	return n;
}

/* Fetch an alias's stored targets: 1 found (*targets_r malloc'd), 0 none, -1 error. */
static int alias_get(struct acctdb *db, const char *key, char **targets_r, const char **err_r)
{
	sqlite3_stmt *st = stmt_get(db, ST_ALIAS_GET, err_r);
	*targets_r = NULL;
	if (st == NULL)
		return -1;
	if (bind_str(st, 1, key) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, "looking up an alias");
	}
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		*targets_r = strdup(t != NULL ? t : "");
		r = *targets_r != NULL ? 1 : fail(db, err_r, "out of memory");
	}
	stmt_done(db, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail_sql(db, err_r, "looking up an alias");
	return r;
}

/* One resolution in progress: the final targets so far and the aliases already expanded. */
struct resolve {
	struct acctdb *db;
	const char **err_r;
	char **out;          /* final targets, unique, in discovery order */
	size_t nout, capout;
	char **seen;         /* alias keys expanded or being expanded */
	unsigned char *done; /* seen[i] finished (1) or still on the expansion path (0) */
	size_t nseen, capseen;
};

/* Grow an array of pointers (and an optional byte array alongside) to hold one more. */
static int grow(void *arrp, unsigned char **side, size_t n, size_t *cap)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap == 0 ? 8 : *cap * 2;
	char **a = realloc(*(char ***)arrp, ncap * sizeof(*a));
	if (a == NULL)
		return -1;
	*(char ***)arrp = a;
	if (side != NULL) {
		unsigned char *s = realloc(*side, ncap);
		if (s == NULL)
			return -1;
		*side = s;
	}
	*cap = ncap;
	return 0;
}

/* Record a final target once. */
static int resolve_emit(struct resolve *r, const char *addr)
{
	for (size_t i = 0; i < r->nout; i++)
		if (strcmp(r->out[i], addr) == 0)
			return 0;
	if (r->nout >= ACCTDB_RESOLVE_TARGETS)
		return fail(r->db, r->err_r, "aliases expand to more than %d targets",
			    ACCTDB_RESOLVE_TARGETS);
	if (grow(&r->out, NULL, r->nout, &r->capout) < 0 ||
	    (r->out[r->nout] = strdup(addr)) == NULL)
		return fail(r->db, r->err_r, "out of memory");
	r->nout++;
	return 0;
}

/* Where is key in the expansion bookkeeping? -1 not seen, else its index. */
static long resolve_seen(const struct resolve *r, const char *key)
{
	for (size_t i = 0; i < r->nseen; i++)
		if (strcmp(r->seen[i], key) == 0)
			return (long)i;
	return -1;
}

static int resolve_addr(struct resolve *r, const char *addr, unsigned depth);

/* RFC 5321 4.5.1: postmaster@ every hosted domain reaches a person. Without an account, alias or
 * catch-all of that name it goes to the domain's oldest account, else the server's oldest. */
static int resolve_postmaster(struct resolve *r, const char *domain)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	int found = first_text(r->db, ST_FIRST_USER_DOMAIN, domain, a, sizeof(a), r->err_r);
	if (found == 0)
		found = first_text(r->db, ST_FIRST_USER, NULL, a, sizeof(a), r->err_r);
	if (found <= 0)
		return found;
	return resolve_emit(r, a);
}

/* Expand one alias row: mark it on the path, resolve each target, mark it finished. */
static int resolve_expand(struct resolve *r, const char *key, char *targets, unsigned depth)
{
	char shown_key[ACCTDB_SHOWN_MAX + 8];
	if (depth >= ACCTDB_RESOLVE_DEPTH)
		return fail(r->db, r->err_r, "aliases nest deeper than %d levels at %s",
			    ACCTDB_RESOLVE_DEPTH, shown(key, shown_key, sizeof(shown_key)));
	if (r->nseen >= ACCTDB_RESOLVE_VISITS)
		return fail(r->db, r->err_r, "alias expansion visits more than %d aliases",
			    ACCTDB_RESOLVE_VISITS);
	if (grow(&r->seen, &r->done, r->nseen, &r->capseen) < 0 ||
	    (r->seen[r->nseen] = strdup(key)) == NULL)
		return fail(r->db, r->err_r, "out of memory");
	size_t me = r->nseen++;
	r->done[me] = 0;
	for (char *p = targets; *p != '\0';) {
		char *e = strchr(p, ',');
		if (e != NULL)
			*e = '\0';
		char t[ACCTDB_ADDRESS_MAX + 1];
		/* a row edited by hand may hold junk: skip what is not an address */
		if (acctdb_normalize_address(p, t, sizeof(t)) == 0 &&
		    resolve_addr(r, t, depth + 1) < 0)
			return -1;
		if (e == NULL)
			break;
		p = e + 1;
	}
	r->done[me] = 1;
	return 0;
}

/* Resolve one normalized address at the given alias depth. */
static int resolve_addr(struct resolve *r, const char *addr, unsigned depth)
{
	const char *domain = strchr(addr, '@') + 1;
	int hosted = domain_known(r->db, domain, r->err_r);
	if (hosted < 0)
		return -1;
	if (hosted == 0)
		return resolve_emit(r, addr);   /* remote target: delivered elsewhere */
	long s = resolve_seen(r, addr);
	if (s >= 0 && r->done[s])
		return 0;                       /* already expanded: its targets are in */
	char *targets = NULL;
	int found = 0;
	if (s < 0) {
		found = alias_get(r->db, addr, &targets, r->err_r);
		if (found < 0)
			return -1;
	}
	if (found) {
		int rc = resolve_expand(r, addr, targets, depth);
		free(targets);
		return rc;
	}
	int user = exists_stmt(r->db, ST_USER_EXISTS, addr, "looking up an account", r->err_r);
	if (user < 0)
		return -1;
	if (user)
		return resolve_emit(r, addr);
	if (s >= 0)
		return 0;   /* an alias that loops back to itself and is no account: nothing */
	/* neither account nor exact alias: the domain's catch-all, once per resolution */
	char key[ACCTDB_DOMAIN_MAX + 2];
	snprintf(key, sizeof(key), "@%s", domain);
	if (resolve_seen(r, key) >= 0)
		return 0;
	found = alias_get(r->db, key, &targets, r->err_r);
	if (found < 0)
		return found;
	if (found == 0)
		return strncmp(addr, "postmaster@", 11) == 0 ? resolve_postmaster(r, domain) : 0;
	int rc = resolve_expand(r, key, targets, depth);
	free(targets);
	return rc;
}

/* Resolve a recipient to its final targets; see acctdb.h. A malformed address or one in a
 * domain not hosted here resolves to nothing (0). */
int acctdb_resolve(struct acctdb *db, const char *address,
		   void (*cb)(void *ctx, const char *target), void *ctx, const char **err_r)
{
	char a[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return 0;
	int hosted = domain_known(db, strchr(a, '@') + 1, err_r);
	if (hosted <= 0)
		return hosted;
	struct resolve r = { .db = db, .err_r = err_r };
	int rc = resolve_addr(&r, a, 0);
	/* callbacks only after every statement is reset, so cb may use the db */
	if (rc == 0)
		for (size_t i = 0; i < r.nout; i++)
			cb(ctx, r.out[i]);
	for (size_t i = 0; i < r.nout; i++)
		free(r.out[i]);
	for (size_t i = 0; i < r.nseen; i++)
		free(r.seen[i]);
	free(r.out);
	free(r.seen);
	free(r.done);
	return rc < 0 ? -1 : (int)r.nout;
}

/* May `user` send as `address`: its own address or an exact alias that lists it. */
int acctdb_may_send_as(struct acctdb *db, const char *user, const char *address,
		       const char **err_r)
{
	char u[ACCTDB_ADDRESS_MAX + 1], a[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(user, u, sizeof(u)) < 0 ||
	    acctdb_normalize_address(address, a, sizeof(a)) < 0)
		return 0;
	int r = exists_stmt(db, ST_USER_EXISTS, u, "looking up an account", err_r);
	if (r <= 0)
		return r;
	if (strcmp(u, a) == 0)
		return 1;
	char *targets;
	r = alias_get(db, a, &targets, err_r);
	if (r <= 0)
		return r;
	r = targets_contain(targets, u);
	free(targets);
	return r;
}

/* Every address `user` may send as: its own, then the aliases listing it, in name order. */
int acctdb_sendable_addresses(struct acctdb *db, const char *user,
			      void (*cb)(void *ctx, const char *address), void *ctx,
			      const char **err_r)
{
	char u[ACCTDB_ADDRESS_MAX + 1];
	if (acctdb_normalize_address(user, u, sizeof(u)) < 0)
		return 0;
	int r = exists_stmt(db, ST_USER_EXISTS, u, "looking up an account", err_r);
	if (r <= 0)
		return r;
	sqlite3_stmt *st = stmt_get(db, ST_ALIAS_BY_TARGET, err_r);
	if (st == NULL)
		return -1;
	if (bind_str(st, 1, u) != SQLITE_OK) {
		stmt_done(db, st);
		return fail_sql(db, err_r, "listing aliases");
	}
	cb(ctx, u);
	int n = 1, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *al = (const char *)sqlite3_column_text(st, 0);
		const char *tg = (const char *)sqlite3_column_text(st, 1);
		if (al != NULL && tg != NULL && targets_contain(tg, u)) {
			cb(ctx, al);
			n++;
		}
	}
	stmt_done(db, st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, err_r, "listing aliases");
	return n;
}

/* The server's own domain: the host name's parent or the host name itself when hosted, else the
 * oldest hosted domain. */
int acctdb_primary_domain(struct acctdb *db, const char *hostname, char *out, size_t outlen,
			  const char **err_r)
{
	const char *dot = strchr(hostname, '.');
	const char *cand[2] = { dot != NULL ? dot + 1 : NULL, hostname };
	for (int i = 0; i < 2; i++) {
		char d[ACCTDB_DOMAIN_MAX + 1];
		if (cand[i] == NULL || acctdb_normalize_domain(cand[i], d, sizeof(d)) < 0)
			continue;
		int r = domain_known(db, d, err_r);
		if (r < 0)
			return -1;
		if (r == 1) {
			if (strlen(d) >= outlen)
				return 0;
			memcpy(out, d, strlen(d) + 1);
			return 1;
		}
	}
	return first_text(db, ST_FIRST_DOMAIN, NULL, out, outlen, err_r);
}
