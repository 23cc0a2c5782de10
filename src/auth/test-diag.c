/* test-diag.c - login diagnostics storage: write, list, and the per-account / per-IP bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "diag.h"

struct seen {
	unsigned n;
	struct diag_event last;
};

static void count_cb(void *ctx, const struct diag_event *e)
{
	struct seen *s = ctx;
	if (s->n++ == 0)
		s->last = *e;
}

static void ev(struct diag_event *e, int kind, const char *user, const char *ip)
{
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	snprintf(e->user, sizeof(e->user), "%s", user);
	snprintf(e->ip, sizeof(e->ip), "%s", ip);
	snprintf(e->proto, sizeof(e->proto), "imap");
	e->port = 143;
	snprintf(e->client, sizeof(e->client), "Thunderbird 115");
}

static void test_write_list_bound(void **state)
{
	(void)state;
	char dir[] = "/tmp/test-diag.XXXXXX";
	assert_non_null(mkdtemp(dir));
	const char *err = NULL;
	struct diag_event e;
	/* 30 failures of one account from many IPs, keep = 10 */
	for (int i = 0; i < 30; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "192.0.2.%d", i);
		ev(&e, DIAG_WRONG_PASSWORD, "ann@example.com", ip);
		e.delay_ms = (unsigned)i;
		assert_int_equal(diag_write(dir, 10, &e), 0);
	}
	struct seen s = { 0 };
	assert_int_equal(diag_list(dir, "user", "ann@example.com", 100, count_cb, &s, &err), 10);
	assert_int_equal(s.last.kind, DIAG_WRONG_PASSWORD);          /* newest first */
	assert_string_equal(s.last.ip, "192.0.2.29");
	assert_int_equal(s.last.delay_ms, 29);
	assert_string_equal(s.last.client, "Thunderbird 115");
	/* 30 TLS failures of one IP, no user */
	for (int i = 0; i < 30; i++) {
		ev(&e, DIAG_TLS_FAILED, "", "198.51.100.1");
		snprintf(e.detail, sizeof(e.detail), "SNI mail.example.com");
		assert_int_equal(diag_write(dir, 10, &e), 0);
	}
	memset(&s, 0, sizeof(s));
	assert_int_equal(diag_list(dir, "ip", "198.51.100.1", 100, count_cb, &s, &err), 10);
	assert_int_equal(s.last.kind, DIAG_TLS_FAILED);
	assert_string_equal(s.last.detail, "SNI mail.example.com");
	/* successes go to last_ok, one row per protocol */
	ev(&e, DIAG_OK, "ann@example.com", "192.0.2.1");
	assert_int_equal(diag_write(dir, 10, &e), 0);
	assert_int_equal(diag_write(dir, 10, &e), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(diag_list(dir, "ok", "ann@example.com", 100, count_cb, &s, &err), 1);
	assert_int_equal(diag_list(dir, "user", "ann@example.com", 100, count_cb, &s, &err), 10);
	char p[128];
	const char *sfx[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/diag.db%s", dir, sfx[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* A diag.db made before user_version was used keeps its rows and is marked level 1. */
static void test_old_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/test-diag.XXXXXX", p[128];
	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/diag.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL;"
		"CREATE TABLE auth_events (id INTEGER PRIMARY KEY, t INTEGER NOT NULL,"
		" user TEXT NOT NULL, ip TEXT NOT NULL, proto TEXT NOT NULL, port INTEGER NOT NULL,"
		" client TEXT NOT NULL, tls INTEGER NOT NULL, kind TEXT NOT NULL,"
		" delay_ms INTEGER NOT NULL, detail TEXT NOT NULL);"
		"CREATE INDEX auth_events_user ON auth_events(user, id);"
		"CREATE INDEX auth_events_ip ON auth_events(ip, id);"
		"CREATE TABLE last_ok (user TEXT NOT NULL, proto TEXT NOT NULL,"
		" t INTEGER NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL, client TEXT NOT NULL,"
		" PRIMARY KEY (user, proto)) WITHOUT ROWID;"
		"INSERT INTO auth_events VALUES (1, 1700000000, 'old@example.com', '192.0.2.9',"
		" 'pop3', 110, 'x', 0, 'wrong-password', 5, '')", NULL, NULL, NULL), SQLITE_OK);
	const char *err = NULL;
	struct seen s = { 0 };
	assert_int_equal(diag_list(dir, "user", "old@example.com", 100, count_cb, &s, &err), 1);
	assert_int_equal(s.last.kind, DIAG_WRONG_PASSWORD);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	const char *sfx[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/diag.db%s", dir, sfx[i]);
		unlink(p);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_list_bound),
		cmocka_unit_test(test_old_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
