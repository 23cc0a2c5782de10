/* test-acctdb.c - unit tests for the account database (cmocka). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acctdb.h"

#define HASH "$y$j9T$abcdefghijklmnop$0123456789ABCDEFabcdef0123456789ABCDEFabcdef"

struct fixture {
	char dir[64];
	char path[96];
	struct acctdb *db;
};

/* A collected list of strings from a callback, joined with spaces. */
struct collect {
	char buf[4096];
	int n;
};

/* Append s to the collection. */
static void collect_add(struct collect *c, const char *s)
{
	size_t len = strlen(c->buf);
	snprintf(c->buf + len, sizeof(c->buf) - len, "%s%s", c->n++ ? " " : "", s);
}

/* Callback for plain string lists. */
static void collect_str(void *ctx, const char *s)
{
	collect_add(ctx, s);
}

/* Callback for account lists. */
static void collect_user(void *ctx, const struct acct_user *u)
{
	collect_add(ctx, u->address);
}

/* Callback for alias lists: "alias=targets". */
static void collect_alias(void *ctx, const char *alias, const char *targets)
{
	char line[1024];
	snprintf(line, sizeof(line), "%s=%s", alias, targets);
	collect_add(ctx, line);
}

/* Fresh database in a fresh directory, with domains example.com and example.org. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *err = NULL;
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-acctdb.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/system.db", f->dir);
	assert_int_equal(acctdb_open(f->path, ACCTDB_CREATE, &f->db, &err), 0);
	assert_int_equal(acctdb_domain_add(f->db, "example.com", &err), 1);
	assert_int_equal(acctdb_domain_add(f->db, "example.org", &err), 1);
	*state = f;
	return 0;
}

/* Close the database and remove its files. */
static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[128];
	acctdb_close(&f->db);
	assert_null(f->db);
	const char *sfx[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Resolve into a collection; returns the count. */
static int resolve(struct fixture *f, const char *addr, struct collect *c)
{
	const char *err = NULL;
	memset(c, 0, sizeof(*c));
	int n = acctdb_resolve(f->db, addr, collect_str, c, &err);
	if (n < 0)
		print_message("resolve %s: %s\n", addr, err);
	return n;
}

/* Domains: add, duplicate, case, exists, list, remove, refusal while in use. */
static void test_domains(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c = { "", 0 };
	assert_int_equal(acctdb_domain_add(f->db, "Example.COM", &err), 0);
	assert_int_equal(acctdb_domain_add(f->db, "a-b.example.net", &err), 1);
	assert_int_equal(acctdb_domain_exists(f->db, "EXAMPLE.com", &err), 1);
	assert_int_equal(acctdb_domain_exists(f->db, "example.net", &err), 0);
	assert_int_equal(acctdb_domain_exists(f->db, "not a domain", &err), 0);
	assert_int_equal(acctdb_domain_list(f->db, collect_str, &c, &err), 3);
	assert_string_equal(c.buf, "a-b.example.net example.com example.org");

	assert_int_equal(acctdb_user_add(f->db, "u@example.org", HASH, &err), 1);
	assert_int_equal(acctdb_domain_remove(f->db, "example.org", &err), -1);
	assert_non_null(strstr(err, "1 account"));
	assert_int_equal(acctdb_domain_exists(f->db, "example.org", &err), 1);
	assert_int_equal(acctdb_user_remove(f->db, "u@example.org", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "@example.org", "x@example.com", &err), 1);
	assert_int_equal(acctdb_domain_remove(f->db, "example.org", &err), -1);
	assert_non_null(strstr(err, "1 alias"));
	assert_int_equal(acctdb_alias_remove(f->db, "@EXAMPLE.org", &err), 1);
	assert_int_equal(acctdb_domain_remove(f->db, "Example.Org", &err), 1);
	assert_int_equal(acctdb_domain_remove(f->db, "example.org", &err), 0);
	assert_int_equal(acctdb_domain_exists(f->db, "example.org", &err), 0);
}

/* Invalid domain names are refused with a message. */
static void test_domain_invalid(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	static const char *bad[] = {
		"", ".", "example.com.", ".example.com", "ex..ample.com", "-ex.com", "ex-.com",
		"ex_ample.com", "exa mple.com", "ex@mple.com", "1.2.3.4", "example.123",
		"ex\xff" "mple.com", "ex\xc3" "mple.com", "a/b.com", "x'; DROP TABLE domains; --",
		"xn--zz.example", "-b\xc3\xbc" "cher.example",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_int_equal(acctdb_domain_add(f->db, bad[i], &err), -1);
		assert_non_null(err);
		assert_non_null(strstr(err, "not a valid domain"));
	}
	/* 63-octet label fine; 253 characters fine, 254 not */
	assert_int_equal(acctdb_domain_add(f->db, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
					   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", &err), 1);
	char longd[300];
	memset(longd, 0, sizeof(longd));
	for (size_t i = 0; i < 253; i += 2)
		memcpy(longd + i, "a.", 2);
	longd[252] = 'b';
	longd[253] = '\0';
	assert_int_equal(strlen(longd), 253);
	assert_int_equal(acctdb_domain_add(f->db, longd, &err), 1);
	longd[253] = 'c';
	longd[254] = '\0';
	assert_int_equal(acctdb_domain_add(f->db, longd, &err), -1);
	assert_int_equal(acctdb_domain_add(f->db, "localhost", &err), 1);
	assert_int_equal(acctdb_domain_add(f->db, "xn--bcher-kva.example", &err), 1);
}

/* Accounts: add, case-insensitive lookup, duplicates, passwords, list, remove. */
static void test_users(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acct_user u;
	struct collect c = { "", 0 };
	assert_int_equal(acctdb_user_add(f->db, "Alice@Example.COM", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", "$6$x$y", &err), 0);
	assert_int_equal(acctdb_user_get(f->db, "ALICE@EXAMPLE.COM", &u, &err), 1);
	assert_string_equal(u.address, "alice@example.com");
	assert_string_equal(u.hash, HASH);
	assert_int_equal(u.suspended, 0);
	assert_int_equal(u.quota_bytes, 0);
	assert_true(u.created > 1600000000);
	assert_int_equal(acctdb_user_get(f->db, "bob@example.com", &u, &err), 0);
	assert_int_equal(acctdb_user_get(f->db, "garbage", &u, &err), 0);

	assert_int_equal(acctdb_user_set_hash(f->db, "aLiCe@example.com", "{SHA512-CRYPT}$6$s$h",
					      &err), 1);
	assert_int_equal(acctdb_user_get(f->db, "alice@example.com", &u, &err), 1);
	assert_string_equal(u.hash, "{SHA512-CRYPT}$6$s$h");
	assert_int_equal(acctdb_user_set_hash(f->db, "nobody@example.com", HASH, &err), 0);
	assert_int_equal(acctdb_user_set_hash(f->db, "alice@example.com", "", &err), -1);
	assert_int_equal(acctdb_user_set_hash(f->db, "alice@example.com", "a b", &err), -1);

	/* the domain must be hosted */
	err = NULL;
	assert_int_equal(acctdb_user_add(f->db, "carol@example.net", HASH, &err), -1);
	assert_non_null(strstr(err, "not hosted"));

	assert_int_equal(acctdb_user_add(f->db, "bob@example.org", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "zed@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_list(f->db, NULL, collect_user, &c, &err), 3);
	assert_string_equal(c.buf, "alice@example.com bob@example.org zed@example.com");
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_user_list(f->db, "EXAMPLE.com", collect_user, &c, &err), 2);
	assert_string_equal(c.buf, "alice@example.com zed@example.com");
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_user_list(f->db, "example.net", collect_user, &c, &err), 0);
	assert_int_equal(acctdb_user_list(f->db, "bad..domain", collect_user, &c, &err), -1);

	assert_int_equal(acctdb_user_remove(f->db, "ZED@example.com", &err), 1);
	assert_int_equal(acctdb_user_remove(f->db, "zed@example.com", &err), 0);
	assert_int_equal(acctdb_user_get(f->db, "zed@example.com", &u, &err), 0);
}

/* Malformed addresses are refused, valid unusual ones accepted. */
static void test_address_invalid(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	static const char *bad[] = {
		"", "@example.com", "alice", "alice@", ".alice@example.com", "alice.@example.com",
		"al..ice@example.com", "al ice@example.com", "\"al\"@example.com", "a@b@example.com",
		"al(ice)@example.com", "al,ice@example.com", "al\\ice@example.com",
		"al\xc3" "@example.com", "al\xed\xa0\x80" "@example.com", "alice@example..com",
		"alice@[1.2.3.4]",
		"al\nice@example.com", "alice@example.com\r",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_int_equal(acctdb_user_add(f->db, bad[i], HASH, &err), -1);
		assert_non_null(err);
		assert_non_null(strstr(err, "not a valid address"));
	}
	static const char *good[] = {
		"a@example.com", "first.last@example.com", "x+tag@example.com",
		"o'brien@example.com", "!#$%&'*+-/=?^_`{|}~@example.com",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(acctdb_user_add(f->db, good[i], HASH, &err), 1);
	char out[ACCTDB_ADDRESS_MAX + 1];
	assert_int_equal(acctdb_normalize_address("X.Y@Sub.Example.COM", out, sizeof(out)), 0);
	assert_string_equal(out, "x.y@sub.example.com");
	assert_int_equal(acctdb_normalize_address("x@example.com", out, 5), -1);
	assert_int_equal(acctdb_normalize_domain("Sub.Example.COM", out, sizeof(out)), 0);
	assert_string_equal(out, "sub.example.com");
}

/* Internationalised names: U-labels are stored as A-labels, UTF-8 local parts are kept, only
 * ASCII letters are lower-cased. */
static void test_idn(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c;
	char out[ACCTDB_ADDRESS_MAX + 1];
	assert_int_equal(acctdb_normalize_domain("B\xc3\x9c" "cher.Example", out, sizeof(out)), 0);
	assert_string_equal(out, "xn--bcher-kva.example");
	assert_int_equal(acctdb_normalize_domain("XN--BCHER-KVA.example", out, sizeof(out)), 0);
	assert_string_equal(out, "xn--bcher-kva.example");
	assert_int_equal(acctdb_normalize_address("J\xc3\xb6s\xc3\xa9@b\xc3\xbc" "cher.example",
						  out, sizeof(out)), 0);
	assert_string_equal(out, "j\xc3\xb6s\xc3\xa9@xn--bcher-kva.example");
	/* the A-label is longer than the U-label: a buffer that holds only the input is too small */
	assert_int_equal(acctdb_normalize_domain("\xc3\xbc.de", out, 8), -1);
	assert_int_equal(acctdb_normalize_domain("\xc3\xbc.de", out, sizeof(out)), 0);
	assert_string_equal(out, "xn--tda.de");

	assert_int_equal(acctdb_domain_add(f->db, "b\xc3\xbc" "cher.example", &err), 1);
	assert_int_equal(acctdb_domain_add(f->db, "xn--bcher-kva.example", &err), 0);
	assert_int_equal(acctdb_domain_exists(f->db, "B\xc3\x9c" "CHER.example", &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "x@b\xc3\xbc" "cher.example", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "\xc3\xb6@xn--bcher-kva.example", HASH, &err), 1);
	struct acct_user u;
	assert_int_equal(acctdb_user_get(f->db, "X@xn--bcher-kva.example", &u, &err), 1);
	assert_string_equal(u.address, "x@xn--bcher-kva.example");
	/* an alias with U-label targets: the stored list grows with the A-labels */
	assert_int_equal(acctdb_alias_add(f->db, "all@b\xc3\xbc" "cher.example",
					  "x@b\xc3\xbc" "cher.example,\xc3\xb6@b\xc3\xbc" "cher.example",
					  &err), 1);
	assert_int_equal(resolve(f, "all@xn--bcher-kva.example", &c), 2);
	assert_string_equal(c.buf, "x@xn--bcher-kva.example \xc3\xb6@xn--bcher-kva.example");
	assert_int_equal(resolve(f, "\xc3\xb6@b\xc3\xbc" "cher.example", &c), 1);
	assert_string_equal(c.buf, "\xc3\xb6@xn--bcher-kva.example");
	assert_int_equal(acctdb_may_send_as(f->db, "x@b\xc3\xbc" "cher.example",
					    "all@xn--bcher-kva.example", &err), 1);
}

/* postmaster@ every hosted domain reaches a person; the server's own domain for <Postmaster>. */
static void test_postmaster(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c;
	char d[256];
	/* no account anywhere yet: nobody to give it to */
	assert_int_equal(resolve(f, "postmaster@example.com", &c), 0);
	assert_int_equal(acctdb_user_add(f->db, "zed@example.org", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "bob@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	/* the domain's oldest account, not the first by name */
	assert_int_equal(resolve(f, "PostMaster@example.com", &c), 1);
	assert_string_equal(c.buf, "bob@example.com");
	/* a domain without accounts: the server's oldest */
	assert_int_equal(acctdb_domain_add(f->db, "empty.example", &err), 1);
	assert_int_equal(resolve(f, "postmaster@empty.example", &c), 1);
	assert_string_equal(c.buf, "zed@example.org");
	assert_int_equal(resolve(f, "abuse@empty.example", &c), 0);
	/* an explicit alias, a catch-all and an account each win */
	assert_int_equal(acctdb_alias_add(f->db, "postmaster@example.com", "alice@example.com",
					  &err), 1);
	assert_int_equal(resolve(f, "postmaster@example.com", &c), 1);
	assert_string_equal(c.buf, "alice@example.com");
	assert_int_equal(acctdb_alias_add(f->db, "@empty.example", "alice@example.com", &err), 1);
	assert_int_equal(resolve(f, "postmaster@empty.example", &c), 1);
	assert_string_equal(c.buf, "alice@example.com");
	assert_int_equal(acctdb_user_add(f->db, "postmaster@example.org", HASH, &err), 1);
	assert_int_equal(resolve(f, "postmaster@example.org", &c), 1);
	assert_string_equal(c.buf, "postmaster@example.org");
	/* primary domain: the host name's parent, the host name, else the oldest domain */
	assert_int_equal(acctdb_primary_domain(f->db, "mail.example.org", d, sizeof(d), &err), 1);
	assert_string_equal(d, "example.org");
	assert_int_equal(acctdb_primary_domain(f->db, "Empty.Example", d, sizeof(d), &err), 1);
	assert_string_equal(d, "empty.example");
	assert_int_equal(acctdb_primary_domain(f->db, "localhost", d, sizeof(d), &err), 1);
	assert_string_equal(d, "example.com");
}

/* Addresses that look like SQL are plain data. */
static void test_sql_injection(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acct_user u;
	struct collect c;
	const char *evil = "x'or'1'='1@example.com";
	const char *evil2 = "robert'--{drop}table|users@example.com";
	assert_int_equal(acctdb_user_add(f->db, evil, HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, evil2, HASH, &err), 1);
	assert_int_equal(acctdb_user_get(f->db, evil, &u, &err), 1);
	assert_string_equal(u.address, evil);
	assert_int_equal(acctdb_user_get(f->db, "x'or'1'='2@example.com", &u, &err), 0);
	assert_int_equal(acctdb_user_get(f->db, evil2, &u, &err), 1);
	assert_string_equal(u.address, evil2);
	/* the percent and underscore of LIKE patterns mean nothing either */
	assert_int_equal(acctdb_user_add(f->db, "a%b@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_get(f->db, "a_b@example.com", &u, &err), 0);
	assert_int_equal(acctdb_user_get(f->db, "axb@example.com", &u, &err), 0);
	assert_int_equal(acctdb_alias_add(f->db, "a_b@example.com", "a%b@example.com", &err), 1);
	assert_int_equal(resolve(f, "a_b@example.com", &c), 1);
	assert_string_equal(c.buf, "a%b@example.com");
	assert_int_equal(acctdb_may_send_as(f->db, "a%b@example.com", "a_b@example.com", &err), 1);
	assert_int_equal(acctdb_may_send_as(f->db, "axb@example.com", "a_b@example.com", &err), 0);
	/* a statement separator is not address text at all */
	assert_int_equal(acctdb_user_add(f->db, "x';DROP TABLE users;--@example.com", HASH, &err),
			 -1);
	/* the tables are intact */
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_user_list(f->db, NULL, collect_user, &c, &err), 3);
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_domain_list(f->db, collect_str, &c, &err), 2);
}

/* Aliases: single, multi-target, replace, list, remove, hosted domain required. */
static void test_aliases(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c;
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "bob@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "Postmaster@Example.com", "ALICE@example.com",
					  &err), 1);
	assert_int_equal(resolve(f, "postmaster@example.com", &c), 1);
	assert_string_equal(c.buf, "alice@example.com");

	/* several targets, commas and spaces, duplicates dropped, remote kept */
	assert_int_equal(acctdb_alias_add(f->db, "team@example.com",
					  "alice@example.com, bob@example.com  Alice@Example.com,"
					  "friend@remote.test", &err), 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_alias_list(f->db, "example.com", collect_alias, &c, &err), 2);
	assert_string_equal(c.buf, "postmaster@example.com=alice@example.com "
				   "team@example.com=alice@example.com,bob@example.com,"
				   "friend@remote.test");
	assert_int_equal(resolve(f, "TEAM@example.com", &c), 3);
	assert_string_equal(c.buf, "alice@example.com bob@example.com friend@remote.test");

	/* replace */
	assert_int_equal(acctdb_alias_add(f->db, "team@example.com", "bob@example.com", &err), 0);
	assert_int_equal(resolve(f, "team@example.com", &c), 1);
	assert_string_equal(c.buf, "bob@example.com");

	/* alias domain must be hosted; targets must be addresses */
	err = NULL;
	assert_int_equal(acctdb_alias_add(f->db, "x@example.net", "bob@example.com", &err), -1);
	assert_non_null(strstr(err, "not hosted"));
	assert_int_equal(acctdb_alias_add(f->db, "x@example.com", "", &err), -1);
	assert_int_equal(acctdb_alias_add(f->db, "x@example.com", " , ", &err), -1);
	assert_int_equal(acctdb_alias_add(f->db, "x@example.com", "bob@example.com,bad..x@y.z",
					  &err), -1);
	assert_non_null(strstr(err, "bad..x@y.z"));
	assert_int_equal(acctdb_alias_add(f->db, "x@example.com", "@example.com", &err), -1);
	assert_int_equal(acctdb_alias_add(f->db, "bad..x@example.com", "bob@example.com", &err), -1);
	assert_int_equal(acctdb_alias_add(f->db, "@bad..domain", "bob@example.com", &err), -1);

	/* unknown recipients and foreign domains resolve to nothing */
	assert_int_equal(resolve(f, "nobody@example.com", &c), 0);
	assert_int_equal(resolve(f, "bob@remote.test", &c), 0);
	assert_int_equal(resolve(f, "not an address", &c), 0);
	assert_int_equal(resolve(f, "@example.com", &c), 0);

	assert_int_equal(acctdb_alias_remove(f->db, "TEAM@example.com", &err), 1);
	assert_int_equal(acctdb_alias_remove(f->db, "team@example.com", &err), 0);
	assert_int_equal(resolve(f, "team@example.com", &c), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_alias_list(f->db, NULL, collect_alias, &c, &err), 1);
}

/* Recursive aliases expand; loops terminate; depth is limited. */
static void test_alias_recursion(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c;
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "bob@example.org", HASH, &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "all@example.com", "sales@example.com,"
					  "support@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "sales@example.com", "alice@example.com,"
					  "boss@example.org", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "support@example.com", "bob@example.org,"
					  "sales@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "boss@example.org", "bob@example.org,"
					  "ceo@remote.test", &err), 1);
	assert_int_equal(resolve(f, "all@example.com", &c), 3);
	assert_string_equal(c.buf, "alice@example.com bob@example.org ceo@remote.test");

	/* a -> b -> a: terminates, nothing deliverable */
	assert_int_equal(acctdb_alias_add(f->db, "a@example.com", "b@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "b@example.com", "a@example.com", &err), 1);
	assert_int_equal(resolve(f, "a@example.com", &c), 0);
	/* ... and with an account in the loop, that account gets the mail once */
	assert_int_equal(acctdb_alias_add(f->db, "b@example.com", "a@example.com,alice@example.com",
					  &err), 0);
	assert_int_equal(resolve(f, "a@example.com", &c), 1);
	assert_string_equal(c.buf, "alice@example.com");
	/* an alias that includes its own name, also an account: keeps a copy */
	assert_int_equal(acctdb_alias_add(f->db, "alice@example.com",
					  "alice@example.com,bob@example.org", &err), 1);
	assert_int_equal(resolve(f, "alice@example.com", &c), 2);
	assert_string_equal(c.buf, "alice@example.com bob@example.org");
	/* self-loop without account */
	assert_int_equal(acctdb_alias_add(f->db, "self@example.com", "self@example.com", &err), 1);
	assert_int_equal(resolve(f, "self@example.com", &c), 0);

	/* a chain of 10 aliases resolves, 11 fails */
	char name[64], next[64];
	for (int i = 0; i < 11; i++) {
		snprintf(name, sizeof(name), "c%d@example.com", i);
		snprintf(next, sizeof(next), "c%d@example.com", i + 1);
		assert_int_equal(acctdb_alias_add(f->db, name, next, &err), 1);
	}
	assert_int_equal(acctdb_alias_add(f->db, "c10@example.com", "alice@example.org", &err), 0);
	assert_int_equal(acctdb_user_add(f->db, "alice@example.org", HASH, &err), 1);
	assert_int_equal(resolve(f, "c1@example.com", &c), 1);
	assert_string_equal(c.buf, "alice@example.org");
	err = NULL;
	assert_int_equal(acctdb_resolve(f->db, "c0@example.com", collect_str, &c, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "deeper"));
}

/* The catch-all applies only when neither an account nor an exact alias matches. */
static void test_catch_all(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c;
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "bob@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "carol@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "@Example.com", "carol@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "info@example.com", "alice@example.com", &err), 1);

	assert_int_equal(resolve(f, "bob@example.com", &c), 1);       /* account */
	assert_string_equal(c.buf, "bob@example.com");
	assert_int_equal(resolve(f, "info@example.com", &c), 1);      /* exact alias */
	assert_string_equal(c.buf, "alice@example.com");
	assert_int_equal(resolve(f, "random@example.com", &c), 1);    /* catch-all */
	assert_string_equal(c.buf, "carol@example.com");
	assert_int_equal(resolve(f, "random@example.org", &c), 0);    /* other domain */

	/* an exact alias wins over an account of the same name */
	assert_int_equal(acctdb_alias_add(f->db, "bob@example.com", "alice@example.com", &err), 1);
	assert_int_equal(resolve(f, "bob@example.com", &c), 1);
	assert_string_equal(c.buf, "alice@example.com");

	/* an alias target that is neither account nor alias falls to its domain's catch-all */
	assert_int_equal(acctdb_alias_add(f->db, "old@example.com", "gone@example.com", &err), 1);
	assert_int_equal(resolve(f, "old@example.com", &c), 1);       /* gone -> catch-all */
	assert_string_equal(c.buf, "carol@example.com");

	/* a catch-all pointing into its own domain at an unknown name terminates */
	assert_int_equal(acctdb_alias_add(f->db, "@example.org", "ghost@example.org", &err), 1);
	assert_int_equal(resolve(f, "x@example.org", &c), 0);
	assert_int_equal(acctdb_alias_add(f->db, "@example.org", "ghost@example.org,"
					  "bob@example.com", &err), 0);
	assert_int_equal(resolve(f, "x@example.org", &c), 1);
	assert_string_equal(c.buf, "alice@example.com");   /* bob is an alias for alice */

	/* the catch-all does not let anyone send as arbitrary names */
	assert_int_equal(acctdb_may_send_as(f->db, "carol@example.com", "random@example.com", &err),
			 0);
}

/* Sending identities: own address and exact aliases listing the user. */
static void test_may_send_as(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct collect c = { "", 0 };
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "bob@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "sales@example.com", "alice@example.com,"
					  "bob@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "ceo@example.org", "alice@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "fwd@example.org", "alice@remote.test", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "@example.org", "alice@example.com", &err), 1);
	assert_int_equal(acctdb_alias_add(f->db, "xalice@example.com", "xalice@example.com.evil",
					  &err), 1);

	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "alice@example.com", &err),
			 1);
	assert_int_equal(acctdb_may_send_as(f->db, "Alice@Example.com", "ALICE@example.COM", &err),
			 1);
	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "sales@example.com", &err),
			 1);
	assert_int_equal(acctdb_may_send_as(f->db, "bob@example.com", "Sales@example.com", &err), 1);
	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "ceo@example.org", &err), 1);
	assert_int_equal(acctdb_may_send_as(f->db, "bob@example.com", "ceo@example.org", &err), 0);
	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "bob@example.com", &err), 0);
	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "fwd@example.org", &err), 0);
	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "any@example.org", &err), 0);
	assert_int_equal(acctdb_may_send_as(f->db, "alice@example.com", "", &err), 0);
	assert_int_equal(acctdb_may_send_as(f->db, "ghost@example.com", "ghost@example.com", &err),
			 0);

	assert_int_equal(acctdb_sendable_addresses(f->db, "ALICE@example.com", collect_str, &c,
						   &err), 3);
	assert_string_equal(c.buf, "alice@example.com ceo@example.org sales@example.com");
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_sendable_addresses(f->db, "bob@example.com", collect_str, &c, &err),
			 2);
	assert_string_equal(c.buf, "bob@example.com sales@example.com");
	memset(&c, 0, sizeof(c));
	assert_int_equal(acctdb_sendable_addresses(f->db, "ghost@example.com", collect_str, &c,
						   &err), 0);
}

/* Reopening without create keeps the data; a missing or foreign file is refused. */
static void test_open(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acctdb *db2 = NULL;
	struct acct_user u;
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_open(f->path, ACCTDB_RW, &db2, &err), 0);
	assert_int_equal(acctdb_user_get(db2, "alice@example.com", &u, &err), 1);
	/* a write on one handle is seen on the other */
	assert_int_equal(acctdb_user_add(db2, "bob@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_get(f->db, "bob@example.com", &u, &err), 1);
	acctdb_close(&db2);
	acctdb_close(&db2);   /* NULL is fine */

	char p[128];
	snprintf(p, sizeof(p), "%s/missing.db", f->dir);
	err = NULL;
	assert_int_equal(acctdb_open(p, ACCTDB_RO, &db2, &err), -1);
	assert_null(db2);
	assert_non_null(strstr(err, "does not exist"));

	snprintf(p, sizeof(p), "%s/empty.db", f->dir);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fclose(fp);
	err = NULL;
	assert_int_equal(acctdb_open(p, ACCTDB_RO, &db2, &err), -1);
	assert_non_null(strstr(err, "not a postino account database"));
	/* create on an existing schema is idempotent */
	assert_int_equal(acctdb_open(f->path, ACCTDB_CREATE, &db2, &err), 0);
	assert_int_equal(acctdb_user_get(db2, "alice@example.com", &u, &err), 1);
	acctdb_close(&db2);
	/* a read-only handle (the workers') sees later writes and cannot write */
	assert_int_equal(acctdb_open(f->path, ACCTDB_RO, &db2, &err), 0);
	assert_int_equal(acctdb_user_get(db2, "carol@example.com", &u, &err), 0);
	assert_int_equal(acctdb_user_add(f->db, "carol@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_user_get(db2, "carol@example.com", &u, &err), 1);
	assert_int_equal(acctdb_user_add(db2, "dave@example.com", HASH, &err), -1);
	assert_int_equal(acctdb_user_set_hash(db2, "alice@example.com", HASH, &err), -1);
	acctdb_close(&db2);
	unlink(p);
	char q[160];
	snprintf(q, sizeof(q), "%s-wal", p);
	unlink(q);
	snprintf(q, sizeof(q), "%s-shm", p);
	unlink(q);
}

/* A write through a third connection that does not wait: 0 committed, -1 busy. */
static int raw_write(const char *path)
{
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	int rc = sqlite3_exec(raw, "BEGIN IMMEDIATE; UPDATE domains SET name = name; COMMIT;", NULL,
			      NULL, NULL);
	if (rc != SQLITE_OK)
		sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(raw);
	return rc == SQLITE_OK ? 0 : -1;
}

/* The change counter moves with every commit, and only then; a WAL file has none to offer. */
static void test_change_counter(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acctdb *ro = NULL;
	struct acct_user u;
	uint32_t c1 = 0, c2 = 0, c3 = 0;
	assert_int_equal(acctdb_open(f->path, ACCTDB_RO, &ro, &err), 0);
	assert_int_equal(acctdb_change_counter(ro, &c1), 0);
	assert_int_equal(acctdb_user_get(ro, "alice@example.com", &u, &err), 0);
	assert_int_equal(acctdb_change_counter(ro, &c2), 0);
	assert_int_equal(c1, c2);                       /* reads move nothing */
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_change_counter(ro, &c3), 0);
	assert_int_not_equal(c2, c3);                   /* a commit elsewhere does */
	assert_int_equal(acctdb_alias_add(f->db, "team@example.com", "alice@example.com", &err), 1);
	assert_int_equal(acctdb_change_counter(ro, &c1), 0);
	assert_int_not_equal(c1, c3);
	acctdb_close(&ro);
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(acctdb_open(f->path, ACCTDB_RO, &ro, &err), 0);
	assert_int_equal(acctdb_change_counter(ro, &c1), -1);
	acctdb_close(&ro);
	sqlite3_exec(raw, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
	sqlite3_close(raw);
}

/* acctdb_read_begin/end hold one read transaction across lookups (nested pairs: the outermost)
 * and let it go at the end, so the admin's writes go through again. */
static void test_read_span(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acctdb *ro = NULL;
	struct acct_user u;
	assert_int_equal(acctdb_user_add(f->db, "alice@example.com", HASH, &err), 1);
	assert_int_equal(acctdb_open(f->path, ACCTDB_RO, &ro, &err), 0);
	assert_int_equal(raw_write(f->path), 0);
	acctdb_read_begin(ro);
	assert_int_equal(acctdb_user_get(ro, "alice@example.com", &u, &err), 1);
	assert_int_equal(raw_write(f->path), -1);   /* the span holds the read lock */
	acctdb_read_begin(ro);
	assert_int_equal(acctdb_domain_exists(ro, "example.org", &err), 1);
	acctdb_read_end(ro);
	assert_int_equal(raw_write(f->path), -1);   /* still the outer span's */
	assert_int_equal(acctdb_user_get(ro, "bob@example.com", &u, &err), 0);
	acctdb_read_end(ro);
	assert_int_equal(raw_write(f->path), 0);
	acctdb_read_end(ro);                         /* an unpaired end does nothing */
	assert_int_equal(acctdb_user_add(f->db, "bob@example.com", HASH, &err), 1);
	acctdb_read_begin(ro);
	assert_int_equal(acctdb_user_get(ro, "bob@example.com", &u, &err), 1);
	acctdb_read_end(ro);
	assert_int_equal(raw_write(f->path), 0);
	acctdb_close(&ro);
}

/* Run every test on a fresh database. */
/* Per-account sending limits and the suspension flag (issue 5). */
static void test_limits_and_suspend(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acct_limits l;
	struct acct_user u;
	assert_int_equal(acctdb_user_add(f->db, "ann@example.com", "$y$x", &err), 1);
	assert_int_equal(acctdb_limits_get(f->db, "ann@example.com", &l, &err), 0);
	for (int i = 0; i < ACCT_LIM_COUNT; i++)
		assert_int_equal(l.v[i], -1);
	l.v[ACCT_LIM_MSG_HOUR] = 5;
	l.v[ACCT_LIM_NEW_RCPT_DAY] = 0;
	assert_int_equal(acctdb_limits_set(f->db, "Ann@Example.com", &l, &err), 1);
	assert_int_equal(acctdb_limits_set(f->db, "nobody@example.com", &l, &err), 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(acctdb_limits_get(f->db, "ann@example.com", &l, &err), 1);
	assert_int_equal(l.v[ACCT_LIM_MSG_HOUR], 5);
	assert_int_equal(l.v[ACCT_LIM_NEW_RCPT_DAY], 0);
	assert_int_equal(l.v[ACCT_LIM_MSG_DAY], -1);
	assert_int_equal(acctdb_user_set_suspended(f->db, "ann@example.com", 1, &err), 1);
	assert_int_equal(acctdb_user_get(f->db, "ann@example.com", &u, &err), 1);
	assert_true(u.suspended);
	assert_int_equal(acctdb_user_set_suspended(f->db, "ann@example.com", 0, &err), 1);
	assert_int_equal(acctdb_user_get(f->db, "ann@example.com", &u, &err), 1);
	assert_false(u.suspended);
	assert_int_equal(acctdb_user_set_suspended(f->db, "nobody@example.com", 1, &err), 0);
	/* a removed account's limits go with it */
	assert_int_equal(acctdb_user_remove(f->db, "ann@example.com", &err), 1);
	assert_int_equal(acctdb_user_add(f->db, "ann@example.com", "$y$x", &err), 1);
	assert_int_equal(acctdb_limits_get(f->db, "ann@example.com", &l, &err), 0);
	assert_int_equal(l.v[ACCT_LIM_MSG_HOUR], -1);
}

/* Run SQL on a database file with plain SQLite. */
static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* One integer from a query on a database file (-1 if no row). */
static long long raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long long v = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* A system.db made by the first versions (schema_version table, no user_version, no
 * send_limits, WAL) is read as it is, and brought up to date by a writer's open. */
static void test_old_file(void **state)
{
	struct fixture *f = *state;
	const char *err = NULL;
	struct acctdb *db = NULL;
	struct acct_user u;
	struct acct_limits l;
	char p[128], sql[2048];
	snprintf(p, sizeof(p), "%s/old.db", f->dir);
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=WAL;"
		 "CREATE TABLE schema_version (version INTEGER NOT NULL);"
		 "CREATE TABLE domains (name TEXT PRIMARY KEY NOT NULL, created INTEGER NOT NULL);"
		 "CREATE TABLE users (address TEXT PRIMARY KEY NOT NULL,"
		 " domain TEXT NOT NULL REFERENCES domains(name), hash TEXT NOT NULL,"
		 " suspended INTEGER NOT NULL DEFAULT 0, quota_bytes INTEGER NOT NULL DEFAULT 0,"
		 " created INTEGER NOT NULL);"
		 "CREATE INDEX users_domain ON users(domain);"
		 "CREATE TABLE aliases (alias TEXT PRIMARY KEY NOT NULL,"
		 " domain TEXT NOT NULL REFERENCES domains(name), targets TEXT NOT NULL);"
		 "CREATE INDEX aliases_domain ON aliases(domain);"
		 "INSERT INTO schema_version(version) VALUES (1);"
		 "INSERT INTO domains VALUES ('old.example', 1);"
		 "INSERT INTO users VALUES ('ann@old.example', 'old.example', '%s', 0, 5, 1);", HASH);
	raw_exec(p, sql);
	/* the workers' read-only open and the master's read-write one take it as it is */
	assert_int_equal(acctdb_open(p, ACCTDB_RO, &db, &err), 0);
	assert_int_equal(acctdb_user_get(db, "ann@old.example", &u, &err), 1);
	assert_int_equal(u.quota_bytes, 5);
	assert_int_equal(acctdb_limits_get(db, "ann@old.example", &l, &err), 0);
	acctdb_close(&db);
	assert_int_equal(acctdb_open(p, ACCTDB_RW, &db, &err), 0);
	acctdb_close(&db);
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 0);
	/* a writer migrates it: rows kept, send_limits made, the version table gone */
	assert_int_equal(acctdb_open(p, ACCTDB_CREATE, &db, &err), 0);
	assert_int_equal(acctdb_user_get(db, "ann@old.example", &u, &err), 1);
	l.v[0] = 7;
	for (int i = 1; i < ACCT_LIM_COUNT; i++)
		l.v[i] = -1;
	assert_int_equal(acctdb_limits_set(db, "ann@old.example", &l, &err), 1);
	acctdb_close(&db);
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 3);
	assert_int_equal(raw_int(p, "SELECT count(*) FROM sqlite_master WHERE name = "
				    "'schema_version'"), 0);
	assert_int_equal(raw_int(p, "SELECT messages_per_hour FROM send_limits"), 7);
	assert_int_equal(acctdb_open(p, ACCTDB_RO, &db, &err), 0);
	assert_int_equal(acctdb_limits_get(db, "ann@old.example", &l, &err), 1);
	assert_int_equal(l.v[0], 7);
	acctdb_close(&db);
	/* a file from a newer postino is refused, in either form */
	raw_exec(p, "PRAGMA user_version = 4");
	assert_int_equal(acctdb_open(p, ACCTDB_RO, &db, &err), -1);
	assert_non_null(strstr(err, "newer"));
	assert_int_equal(acctdb_open(p, ACCTDB_CREATE, &db, &err), -1);
	raw_exec(p, "PRAGMA user_version = 0; CREATE TABLE schema_version (version INTEGER);"
		    "INSERT INTO schema_version VALUES (2)");
	assert_int_equal(acctdb_open(p, ACCTDB_RO, &db, &err), -1);
	assert_non_null(strstr(err, "newer"));
	const char *sfx[] = { "", "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(sql, sizeof(sql), "%s%s", p, sfx[i]);
		unlink(sql);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_span, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_domain_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sql_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_postmaster, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alias_recursion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catch_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_may_send_as, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_and_suspend, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
