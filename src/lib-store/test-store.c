/* test-store.c - the Maildir store: create, deliver, list, names, sync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "imap-mboxname.h"
#include "store-path.h"
#include "store-private.h"
#include "store.h"

static char top[64], root[256];

/* A fresh account directory per test. */
static int setup(void **state)
{
	(void)state;
	snprintf(top, sizeof(top), "/tmp/postino-test-store-XXXXXX");
	assert_non_null(mkdtemp(top));
	snprintf(root, sizeof(root), "%s/acct", top);
	return 0;
}

/* nftw callback: remove one entry. */
static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* Remove the test's directory tree. */
static int teardown(void **state)
{
	(void)state;
	return nftw(top, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A file holding `text`, opened for reading. */
static int source(const char *text)
{
	char p[] = "/tmp/postino-test-src-XXXXXX";
	int fd = mkstemp(p);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	unlink(p);
	return fd;
}

/* Count regular entries of a directory. */
static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (d == NULL)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Create, then deliver three messages: UIDs 1..3, exact bytes in new/, index rows. */
static void test_deliver(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	assert_int_equal(store_account_open(root, &a, &err), 0);
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_create(root, &err), 0);   /* idempotent */
	assert_int_equal(store_account_open(root, &a, &err), 1);
	const char *msgs[] = { "Subject: a\r\n\r\nbody a\r\n", "Subject: b\r\n\r\nb\r\n", "x\r\n" };
	for (uint32_t i = 0; i < 3; i++) {
		int fd = source(msgs[i]);
		uint32_t uid = 0;
		assert_int_equal(store_deliver(a, NULL, fd, strlen(msgs[i]), i == 1, 1000 + i, 0,
					       &uid, &err), 0);
		assert_int_equal(uid, i + 1);
		close(fd);
	}
	struct store_msg_info *m;
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(m[i].uid, (uint32_t)i + 1);
		assert_int_equal(m[i].size, strlen(msgs[i]));
		assert_int_equal(m[i].internaldate, 1000 + i);
		int fd = store_message_open(a, "INBOX", m[i].uid, &err);
		assert_true(fd >= 0);
		char buf[100] = "";
		assert_int_equal(read(fd, buf, sizeof(buf)), (ssize_t)strlen(msgs[i]));
		assert_string_equal(buf, msgs[i]);
		close(fd);
	}
	free(m);
	char p[400];
	snprintf(p, sizeof(p), "%s/new", root);
	assert_int_equal(count_files(p), 3);
	snprintf(p, sizeof(p), "%s/tmp", root);
	assert_int_equal(count_files(p), 0);
	struct store_mailbox_info info;
	assert_int_equal(store_mailbox_get(a, "INBOX", &info, &err), 1);
	assert_int_equal(info.uidnext, 4);
	assert_int_equal(info.messages, 3);
	assert_int_equal(store_mailbox_get(a, "Sent", &info, &err), 1);
	assert_string_equal(info.special_use, "\\Sent");
	struct store_mailbox_info *boxes;
	assert_int_equal(store_mailbox_list(a, &boxes, &err), 6);
	free(boxes);
	/* a missing mailbox is an error, and nothing appears */
	int fd = source("y\r\n");
	assert_int_equal(store_deliver(a, "Nope", fd, 3, 0, 0, 0, NULL, &err), -1);
	close(fd);
	store_account_close(&a);
	assert_null(a);
}

/* A group delivery: one fsync of new/ and one transaction for all; a message whose source is
 * wrong is refused alone, the others get consecutive UIDs. */
static void test_deliver_batch(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	const char *msgs[] = { "Subject: a\r\n\r\na\r\n", "Subject: b\r\n\r\nb\r\n",
			       "Subject: c\r\n\r\nc\r\n", "Subject: d\r\n\r\nd\r\n" };
	struct store_batch_item it[4];
	memset(it, 0, sizeof(it));
	for (int i = 0; i < 4; i++) {
		it[i].src_fd = source(msgs[i]);
		it[i].size = strlen(msgs[i]) + (i == 2 ? 1 : 0);   /* the third lies about its size */
		it[i].src_already_synced = i & 1;
		it[i].internaldate = 500 + i;
	}
	assert_int_equal(store_deliver_batch(a, NULL, it, 4), 3);
	assert_int_equal(it[0].result, 0);
	assert_int_equal(it[0].uid, 1);
	assert_int_equal(it[1].uid, 2);
	assert_int_equal(it[2].result, -1);
	assert_non_null(strstr(it[2].err, "not a regular file of"));
	assert_int_equal(it[3].result, 0);
	assert_int_equal(it[3].uid, 3);
	for (int i = 0; i < 4; i++)
		close(it[i].src_fd);
	struct store_msg_info *m;
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 3);
	assert_int_equal(m[2].internaldate, 503);
	assert_int_equal(m[2].size, strlen(msgs[3]));
	free(m);
	char p[400];
	snprintf(p, sizeof(p), "%s/new", root);
	assert_int_equal(count_files(p), 3);
	snprintf(p, sizeof(p), "%s/tmp", root);
	assert_int_equal(count_files(p), 0);
	/* a group into a missing mailbox: every message refused, with the reason */
	it[0].src_fd = source(msgs[0]);
	it[0].size = strlen(msgs[0]);
	assert_int_equal(store_deliver_batch(a, "Nope", it, 1), 0);
	assert_int_equal(it[0].result, -1);
	assert_non_null(strstr(it[0].err, "no such mailbox"));
	close(it[0].src_fd);
	store_account_close(&a);
}

/* A failing step leaves nothing visible: new/ replaced by a file makes the rename fail. */
static void test_deliver_failure(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	char p[400];
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	snprintf(p, sizeof(p), "%s/.Junk/new", root);
	assert_int_equal(rmdir(p), 0);
	int f = open(p, O_CREAT | O_WRONLY, 0600);
	close(f);
	int fd = source("z\r\n");
	assert_int_equal(store_deliver(a, "Junk", fd, 3, 0, 0, 0, NULL, &err), -1);
	close(fd);
	snprintf(p, sizeof(p), "%s/.Junk/tmp", root);
	assert_int_equal(count_files(p), 0);
	struct store_mailbox_info info;
	assert_int_equal(store_mailbox_get(a, "Junk", &info, &err), 1);
	assert_int_equal(info.messages, 0);
	assert_int_equal(info.uidnext, 1);
	store_account_close(&a);
}

/* Names that must never become paths. */
static void test_names(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int ok;
	} cases[] = {
		{ "Sent", 1 }, { "a/b", 1 }, { "Ünïcode", 1 }, { ".hidden", 1 }, { "cur", 1 },
		{ "../x", 0 }, { "a/../b", 0 }, { "..", 0 }, { ".", 0 }, { "/abs", 0 },
		{ "a//b", 0 }, { "a/", 0 }, { "", 0 }, { "x\n", 0 }, { "tab\there", 0 },
		{ "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", 1 }, { "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (imap_mboxname_valid(cases[i].name) != cases[i].ok)
			fail_msg("name \"%s\": want %d", cases[i].name, cases[i].ok);
	char p[600];
	assert_int_equal(store_account_path("/d", "john.doe@example.test", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/mail/example.test/john.doe");
	assert_int_equal(store_account_path("/d", "../x@example.test", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/mail/example.test/%2E.%2Fx");
	assert_int_equal(store_account_path("/d", "a/b@ex", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/mail/ex/a%2Fb");
	assert_int_equal(store_account_path("/d", "noat", p, sizeof(p)), -1);
}

/* A file left in new/ without a row (crash between rename and commit) is adopted by sync. */
static void test_sync(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	char p[400];
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	snprintf(p, sizeof(p), "%s/new/123.orphan,S=5", root);
	int f = open(p, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(f, "hi\r\n\n", 5), 5);
	close(f);
	snprintf(p, sizeof(p), "%s/cur/124.seen:2,FS", root);
	f = open(p, O_CREAT | O_WRONLY, 0600);
	close(f);
	assert_int_equal(store_mailbox_sync(a, "INBOX", &err), 0);
	struct store_msg_info *m;
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 2);
	assert_int_equal(m[0].uid, 1);
	assert_int_equal(m[0].size, 5);
	assert_int_equal(m[1].flags, STORE_F_SEEN | STORE_F_FLAGGED);
	free(m);
	unlink(p);
	assert_int_equal(store_mailbox_sync(a, "INBOX", &err), 0);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 1);
	free(m);
	store_account_close(&a);
}

/* Flags rename the file with a Maildir suffix; copy links; expunge removes for good (a later
 * sync does not bring an expunged file back); append stores bytes with flags. */
static void test_imap_ops(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	const char *text = "Subject: x\r\n\r\nhello\r\n";
	int fd = source(text);
	uint32_t uid, uv;
	assert_int_equal(store_deliver(a, NULL, fd, strlen(text), 0, 5, 0, &uid, &err), 0);
	close(fd);
	int kw = store_keyword_id(a, "$Important", 1, &err);
	assert_true(kw >= 0);
	struct store_flag_change ch = { .uid = uid, .flags = STORE_F_SEEN | STORE_F_FLAGGED,
					.keywords = 1ull << kw };
	uint64_t modseq;
	assert_int_equal(store_set_flags(a, "INBOX", &ch, 1, &modseq, &err), 0);
	struct store_msg_info *m;
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 1);
	assert_int_equal(m[0].flags, STORE_F_SEEN | STORE_F_FLAGGED);
	assert_int_equal(m[0].keywords, 1ull << kw);
	assert_int_equal(m[0].modseq, modseq);
	assert_int_equal(m[0].in_new, 0);
	char p[600];
	snprintf(p, sizeof(p), "%s/cur/%s:2,FS", root, m[0].filename);
	assert_int_equal(access(p, F_OK), 0);
	fd = store_message_fd(a, "INBOX", &m[0], &err);
	assert_true(fd >= 0);
	close(fd);
	free(m);
	/* +FLAGS and -FLAGS apply to what the index holds, not to the caller's older copy */
	uint64_t m2, m3, m4;
	struct store_flag_change add = { .uid = uid, .flags = STORE_F_ANSWERED, .mode = STORE_FLAGS_ADD };
	assert_int_equal(store_set_flags(a, "INBOX", &add, 1, &m2, &err), 0);
	assert_int_equal(add.result, 1);
	assert_int_equal(add.flags, STORE_F_SEEN | STORE_F_FLAGGED | STORE_F_ANSWERED);
	assert_int_equal(add.keywords, 1ull << kw);
	assert_true(m2 > modseq);
	assert_int_equal(add.modseq, m2);
	struct store_flag_change del = { .uid = uid, .flags = STORE_F_FLAGGED,
					 .mode = STORE_FLAGS_REMOVE };
	assert_int_equal(store_set_flags(a, "INBOX", &del, 1, &m3, &err), 0);
	assert_int_equal(del.flags, STORE_F_SEEN | STORE_F_ANSWERED);
	assert_true(m3 > m2);
	/* UNCHANGEDSINCE below the message's MODSEQ leaves it alone and says so */
	struct store_flag_change cond = { .uid = uid, .flags = 0, .unchangedsince = m2 };
	assert_int_equal(store_set_flags(a, "INBOX", &cond, 1, &m4, &err), 0);
	assert_int_equal(cond.result, -2);
	assert_int_equal(cond.flags, STORE_F_SEEN | STORE_F_ANSWERED);
	assert_int_equal(cond.modseq, m3);
	assert_int_equal(m4, m3);
	uint32_t nu[1];
	assert_int_equal(store_copy(a, "INBOX", &uid, 1, "Archive", nu, &uv, &err), 1);
	assert_int_equal(nu[0], 1);
	assert_int_equal(store_expunge(a, "INBOX", &uid, 1, &err), 1);
	assert_int_equal(store_mailbox_sync(a, "INBOX", &err), 0);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 0);
	free(m);
	assert_int_equal(store_message_list(a, "Archive", &m, &err), 1);
	assert_int_equal(m[0].flags, STORE_F_SEEN | STORE_F_ANSWERED);
	free(m);
	assert_int_equal(store_append(a, "Drafts", "a\r\n", 3, STORE_F_DRAFT, 0, 7, &uid, &uv,
				      &err), 0);
	assert_int_equal(store_mailbox_create(a, "Projects/2026", NULL, &err), 1);
	assert_int_equal(store_mailbox_create(a, "Projects/2026", NULL, &err), 0);
	assert_int_equal(store_mailbox_create(a, "../evil", NULL, &err), -1);
	assert_int_equal(store_mailbox_rename(a, "Projects/2026", "Old/2026", &err), 1);
	struct store_mailbox_info info;
	assert_int_equal(store_mailbox_get(a, "Old/2026", &info, &err), 1);
	assert_int_equal(store_mailbox_delete(a, "Old/2026", &err), 1);
	assert_int_equal(store_mailbox_delete(a, "INBOX", &err), -1);
	store_account_close(&a);
}

/* MULTIAPPEND: consecutive UIDs; a failure half-way leaves no file, no row and UIDNEXT as it
 * was (RFC 3502: all or nothing). */
static void test_append_multi(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	struct store_mailbox_info info;
	struct store_msg_info *m;
	char p[600], q[600];
	uint32_t uids[3], uv;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	struct store_append_msg msgs[3] = {
		{ "Subject: 1\r\n\r\none\r\n", 19, 0, 0, 100 },
		{ "Subject: 2\r\n\r\ntwo\r\n", 19, STORE_F_SEEN, 0, 200 },
		{ "Subject: 3\r\n\r\nthree\r\n", 21, 0, 0, 300 },
	};
	assert_int_equal(store_append_multi(a, "INBOX", msgs, 3, uids, &uv, &err), 0);
	assert_int_equal(uids[0], 1);
	assert_int_equal(uids[1], 2);
	assert_int_equal(uids[2], 3);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 3);
	assert_int_equal(m[1].flags, STORE_F_SEEN);
	assert_int_equal(m[2].internaldate, 300);
	assert_int_equal(m[2].size, 21);
	free(m);
	/* the second message cannot be moved into cur/: the first, already in new/, goes again */
	snprintf(p, sizeof(p), "%s/cur", root);
	snprintf(q, sizeof(q), "%s/cur.away", root);
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(store_append_multi(a, "INBOX", msgs, 3, uids, &uv, &err), -1);
	assert_non_null(err);
	assert_int_equal(rename(q, p), 0);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 3);
	free(m);
	assert_int_equal(store_mailbox_get(a, "INBOX", &info, &err), 1);
	assert_int_equal(info.uidnext, 4);
	snprintf(p, sizeof(p), "%s/new", root);
	assert_int_equal(count_files(p), 2);
	snprintf(p, sizeof(p), "%s/cur", root);
	assert_int_equal(count_files(p), 1);
	snprintf(p, sizeof(p), "%s/tmp", root);
	assert_int_equal(count_files(p), 0);
	assert_int_equal(store_mailbox_sync(a, "INBOX", &err), 0);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 3);
	free(m);
	/* and afterwards it works */
	assert_int_equal(store_append_multi(a, "INBOX", msgs, 3, uids, &uv, &err), 0);
	assert_int_equal(uids[0], 4);
	assert_int_equal(uids[2], 6);
	store_account_close(&a);
}

/* Read a whole small file into buf (NUL-terminated). Returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

/* One integer from an SQL query on the account's index.db (-1 if no row). */
static long long sql_int(const char *sql)
{
	char p[400];
	sqlite3 *db;
	sqlite3_stmt *st;
	long long v = -1;
	snprintf(p, sizeof(p), "%s/index.db", root);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* The header section is cached at delivery, APPEND and COPY (exact bytes, empty line included),
 * APPEND records the POP3 size and the structure, and shared handles are counted. */
static void test_header_cache(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a, *b;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open_shared(root, &a, &err), 1);
	assert_int_equal(store_account_open_shared(root, &b, &err), 1);
	assert_ptr_equal(a, b);   /* one handle for the sessions of this thread */
	store_account_close(&b);
	assert_null(b);
	const char *text = "From: =?UTF-8?Q?Ren=C3=A9?= <r@x.test>\r\nSubject: hi\r\n\r\nbody\r\n.dot\n";
	size_t hl = strlen("From: =?UTF-8?Q?Ren=C3=A9?= <r@x.test>\r\nSubject: hi\r\n\r\n");
	int fd = source(text);
	uint32_t uid, uid2, uv;
	assert_int_equal(store_deliver(a, NULL, fd, strlen(text), 0, 5, 0, &uid, &err), 0);
	close(fd);
	assert_int_equal(store_append(a, "Drafts", text, strlen(text), 0, 0, 7, &uid2, &uv, &err),
			 0);
	const char *boxes[] = { "INBOX", "Drafts" };
	uint32_t uids[] = { uid, uid2 };
	for (int k = 0; k < 2; k++) {
		struct store_header_cursor *c;
		const char *h;
		size_t len;
		assert_int_equal(store_header_open(a, boxes[k], &c), 0);
		assert_int_equal(store_header_get(c, uids[k], &h, &len), 1);
		assert_int_equal(len, hl);
		assert_memory_equal(h, text, hl);
		assert_int_equal(store_header_get(c, uids[k] + 100, &h, &len), 0);
		store_header_close(&c);
		struct store_structure sc;
		assert_int_equal(store_structure_get(a, boxes[k], uids[k], &sc), 1);
		store_structure_free(&sc);
	}
	/* two cursors of one handle (two sessions' FETCHes) share its cached statement: each call
	 * binds its own mailbox again, so interleaved calls answer for their own mailbox */
	const char *text2 = "Subject: other\r\n\r\nx\r\n";
	uint32_t uid3;
	assert_int_equal(store_append(a, "Drafts", text2, strlen(text2), 0, 0, 7, &uid3, &uv, &err),
			 0);
	assert_int_equal(uid3, uid2 + 1);
	struct store_header_cursor *ci, *cd;
	const char *h;
	size_t len;
	assert_int_equal(store_header_open(a, "INBOX", &ci), 0);
	assert_int_equal(store_header_open(a, "Drafts", &cd), 0);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_header_get(cd, uid3, &h, &len), 1);
		assert_memory_equal(h, text2, strlen("Subject: other\r\n\r\n"));
		assert_int_equal(store_header_get(ci, uid, &h, &len), 1);
		assert_int_equal(len, hl);
		assert_memory_equal(h, text, hl);
		assert_int_equal(store_header_get(ci, uid3, &h, &len), uid3 == uid ? 1 : 0);
	}
	store_header_close(&cd);
	assert_int_equal(store_header_get(ci, uid, &h, &len), 1);   /* the other's close */
	assert_memory_equal(h, text, hl);
	store_header_close(&ci);
	/* POP3 size of the appended message: the bare LF becomes CRLF, ".dot" is not stuffed */
	assert_int_equal(sql_int("SELECT wire_size FROM messages m JOIN mailboxes b ON "
				 "b.id = m.mailbox_id WHERE b.name = 'Drafts' ORDER BY uid"),
			 (long long)strlen(text) + 1);
	uint32_t nu[1];
	assert_int_equal(store_copy(a, "INBOX", &uid, 1, "Archive", nu, &uv, &err), 1);
	struct store_header_cursor *c;
	assert_int_equal(store_header_open(a, "Archive", &c), 0);
	assert_int_equal(store_header_get(c, nu[0], &h, &len), 1);
	assert_memory_equal(h, text, hl);
	store_header_close(&c);
	store_account_close(&a);
}

/* The files in new/ are the exact bytes under Maildir names, and the index rows match them. */
static void test_deliver_files(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	static const char *const msgs[] = { "A: 1\r\n\r\none\r\n", "B: 2\r\n\r\ntwo two\r\n",
					    "C: 3\r\n\r\n.\r\nthree\r\n" };
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	for (uint32_t i = 0; i < 3; i++) {
		int fd = source(msgs[i]);
		uint32_t uid = 0;
		assert_int_equal(store_deliver(a, "INBOX", fd, strlen(msgs[i]), 0, 77, 0, &uid, &err),
				 0);
		assert_int_equal(uid, i + 1);
		close(fd);
	}
	char p[600], want[64], buf[256];
	snprintf(p, sizeof(p), "%s/new", root);
	DIR *d = opendir(p);
	assert_non_null(d);
	struct dirent *e;
	int found = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		assert_null(strchr(e->d_name, ':'));     /* no info suffix in new/ */
		assert_non_null(strstr(e->d_name, ".M"));
		assert_non_null(strstr(e->d_name, "Q"));
		snprintf(p, sizeof(p), "%s/new/%s", root, e->d_name);
		ssize_t n = slurp(p, buf, sizeof(buf));
		assert_true(n > 0);
		snprintf(want, sizeof(want), ",S=%zd", n);
		assert_non_null(strstr(e->d_name, want));
		int k = 0;
		while (k < 3 && strcmp(buf, msgs[k]) != 0)
			k++;
		assert_true(k < 3);
		char sql[512];
		snprintf(sql, sizeof(sql), "SELECT uid FROM messages WHERE filename = '%s' AND "
			 "size = %zd AND internaldate = 77 AND mailbox_id = (SELECT id FROM "
			 "mailboxes WHERE name = 'INBOX')", e->d_name, n);
		assert_int_equal(sql_int(sql), k + 1);
		found++;
	}
	closedir(d);
	assert_int_equal(found, 3);
	/* the schema's version is user_version alone (the first versions had a table for it) */
	assert_int_equal(sql_int("PRAGMA user_version"), 9);
	assert_int_equal(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
				 "'schema_version'"), 0);
	assert_int_equal(sql_int("SELECT uidnext FROM mailboxes WHERE name = 'INBOX'"), 4);
	assert_int_equal(sql_int("SELECT highestmodseq FROM mailboxes WHERE name = 'INBOX'"), 4);
	assert_int_equal(sql_int("SELECT count(DISTINCT uidvalidity) FROM mailboxes"), 6);
	assert_int_equal(sql_int("SELECT count(*) FROM mailboxes WHERE special_use IS NOT NULL"), 5);
	assert_int_equal(sql_int("SELECT count(*) FROM mailboxes WHERE name = 'Junk' AND "
				 "special_use = '\\Junk'"), 1);
	/* a size that is not the file's is refused before anything is written */
	int fd = source("abc\r\n");
	assert_int_equal(store_deliver(a, NULL, fd, 4, 0, 0, 0, NULL, &err), -1);
	close(fd);
	snprintf(p, sizeof(p), "%s/new", root);
	assert_int_equal(count_files(p), 3);
	store_account_close(&a);
}

/* An already synced named source on the same filesystem is hard-linked, not copied. */
static void test_deliver_link(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	char src[400];
	struct stat st;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	snprintf(src, sizeof(src), "%s/../spool-XXXXXX", root);
	int fd = mkstemp(src);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "L: 1\r\n\r\nlinked\r\n", 16), 16);
	assert_int_equal(fsync(fd), 0);
	uint32_t uid;
	assert_int_equal(store_deliver(a, "Archive", fd, 16, 1, 0, 0, &uid, &err), 0);
	assert_int_equal(uid, 1);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	close(fd);
	unlink(src);
	char buf[64];
	fd = store_message_open(a, "Archive", 1, &err);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 16);
	assert_memory_equal(buf, "L: 1\r\n\r\nlinked\r\n", 16);
	close(fd);
	/* a source without a name (O_TMPFILE, as SMTP receives): its only name is the one in new/ */
	snprintf(src, sizeof(src), "%s/..", root);
	fd = open(src, O_TMPFILE | O_RDWR, 0600);
	if (fd >= 0) {
		assert_int_equal(write(fd, "L: 2\r\n\r\nlinked\r\n", 16), 16);
		assert_int_equal(fsync(fd), 0);
		assert_int_equal(store_deliver(a, "Archive", fd, 16, 1, 0, 0, &uid, &err), 0);
		assert_int_equal(uid, 2);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_nlink, 1);
		close(fd);
		fd = store_message_open(a, "Archive", 2, &err);
		assert_true(fd >= 0);
		assert_int_equal(read(fd, buf, sizeof(buf)), 16);
		assert_memory_equal(buf, "L: 2\r\n\r\nlinked\r\n", 16);
		close(fd);
	}
	char tmpdir[400];
	snprintf(tmpdir, sizeof(tmpdir), "%s/.Archive/tmp", root);
	assert_int_equal(count_files(tmpdir), 0);   /* linked straight into new/ */
	store_account_close(&a);
}

/* How mailbox names become directories: reversible, never a path, never hidden twice. */
static void test_name_escaping(void **state)
{
	(void)state;
	static const struct {
		const char *name, *dir;   /* dir NULL: refused */
	} cases[] = {
		{ "INBOX", "" }, { "inbox", "" }, { NULL, "" }, { "Sent", "/.Sent" },
		{ "a/b", "/.a.b" }, { "a.b", "/.a%2Eb" }, { ".hidden", "/.%2Ehidden" },
		{ "cur", "/.cur" }, { "new", "/.new" }, { "index.db", "/.index%2Edb" },
		{ "x y_z-1", "/.x y_z-1" }, { "50%", "/.50%25" }, { "&AOQ-", "/.%26AOQ-" },
		{ "\xc3\xa9", "/.%C3%A9" }, { "a\\b", "/.a%5Cb" }, { "..x", "/.%2E%2Ex" },
		{ "../x", NULL }, { "a/../b", NULL }, { "..", NULL }, { "x\n", NULL },
		{ "/x", NULL }, { "a//b", NULL }, { "x\x7f", NULL },
	};
	struct store_account fake;
	char dir[STORE_PATH_MAX], want[STORE_PATH_MAX];
	memset(&fake, 0, sizeof(fake));
	snprintf(fake.root, sizeof(fake.root), "/r");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = store_box_dir(&fake, cases[i].name, dir, sizeof(dir));
		if (cases[i].dir == NULL) {
			if (r != -1)
				fail_msg("case %zu: want refusal, got %s", i, dir);
			continue;
		}
		snprintf(want, sizeof(want), "/r%s", cases[i].dir);
		if (r != 0 || strcmp(dir, want) != 0)
			fail_msg("case %zu: want %s, got %d %s", i, want, r, r == 0 ? dir : "");
	}
	/* 255 octets is a valid name, but one whose escaped form overflows NAME_MAX is refused */
	char longname[300];
	memset(longname, 'a', 255);
	longname[255] = '\0';
	assert_int_equal(imap_mboxname_valid(longname), 1);
	assert_int_equal(store_box_dir(&fake, longname, dir, sizeof(dir)), -1);
	longname[254] = '\0';
	assert_int_equal(store_box_dir(&fake, longname, dir, sizeof(dir)), 0);
	longname[254] = 'a';
	longname[255] = 'a';
	longname[256] = '\0';
	assert_int_equal(imap_mboxname_valid(longname), 0);
	/* hostile names through the API leave no directory outside the account */
	const char *err;
	struct store_account *a;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	static const char *const hostile[] = { "../x", "a/../b", "x\n", "..", "/etc" };
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
		assert_int_equal(store_mailbox_create(a, hostile[i], NULL, &err), -1);
	assert_int_equal(store_mailbox_create(a, ".hidden", NULL, &err), 1);
	assert_int_equal(store_mailbox_create(a, "cur", NULL, &err), 1);
	char p[600];
	struct stat st;
	snprintf(p, sizeof(p), "%s/.%%2Ehidden/new", root);
	assert_int_equal(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/.cur/tmp", root);
	assert_int_equal(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/../x", root);
	assert_int_equal(stat(p, &st), -1);
	int fd = source("h\r\n");
	assert_int_equal(store_deliver(a, "cur", fd, 3, 0, 0, 0, NULL, &err), 0);
	assert_int_equal(store_deliver(a, "../x", fd, 3, 0, 0, 0, NULL, &err), -1);
	close(fd);
	snprintf(p, sizeof(p), "%s/.cur/new", root);
	assert_int_equal(count_files(p), 1);
	snprintf(p, sizeof(p), "%s/cur", root);
	assert_int_equal(count_files(p), 0);
	store_account_close(&a);
}

/* A failed delivery leaves new/ and tmp/ empty and the index untouched. */
static void assert_nothing_delivered(const char *boxdir, const char *box)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/new", boxdir);
	int n = count_files(p);
	assert_true(n <= 0);   /* -1: new/ is not a readable directory at all */
	snprintf(p, sizeof(p), "%s/tmp", boxdir);
	n = count_files(p);
	assert_true(n <= 0);
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT uidnext * 1000 + (SELECT count(*) FROM messages WHERE "
		 "mailbox_id = id) FROM mailboxes WHERE name = '%s'", box);
	assert_int_equal(sql_int(sql), 1000);
}

/* new/ that cannot be written (read-only for a normal user; for root, whom modes do not stop,
 * tmp/ as a dangling symlink): -1 with a reason, nothing visible, and a later delivery works. */
static void test_deliver_unwritable(void **state)
{
	(void)state;
	const char *err = NULL;
	struct store_account *a;
	char dir[400], p[600], q[600];
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	snprintf(dir, sizeof(dir), "%s/.Trash", root);
	int fd = source("m\r\n");
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/new", dir);
		assert_int_equal(chmod(p, 0555), 0);
		assert_int_equal(store_deliver(a, "Trash", fd, 3, 0, 0, 0, NULL, &err), -1);
		assert_non_null(strstr(err, "new/"));
		assert_nothing_delivered(dir, "Trash");
		assert_int_equal(chmod(p, 0750), 0);
	}
	snprintf(p, sizeof(p), "%s/tmp", dir);
	snprintf(q, sizeof(q), "%s/tmp.away", dir);
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(symlink("/nonexistent/postino-test", p), 0);
	err = NULL;
	assert_int_equal(store_deliver(a, "Trash", fd, 3, 0, 0, 0, NULL, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "tmp/"));
	assert_nothing_delivered(dir, "Trash");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(rename(q, p), 0);
	uint32_t uid = 0;
	assert_int_equal(store_deliver(a, "Trash", fd, 3, 1, 0, 0, &uid, &err), 0);
	assert_int_equal(uid, 1);
	close(fd);
	store_account_close(&a);
}

/* The index refuses the row (commit-time failure) or stays locked: the file in new/ is removed
 * again and UIDNEXT is unchanged. */
static void test_deliver_index_failure(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	char p[400];
	sqlite3 *db;
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	snprintf(p, sizeof(p), "%s/index.db", root);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TRIGGER nope BEFORE INSERT ON messages BEGIN "
				      "SELECT RAISE(ABORT, 'disk on fire'); END", NULL, NULL, NULL),
			 SQLITE_OK);
	int fd = source("n\r\n");
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, NULL, &err), -1);
	assert_non_null(strstr(err, "disk on fire"));
	assert_nothing_delivered(root, "INBOX");
	assert_int_equal(sqlite3_exec(db, "DROP TRIGGER nope", NULL, NULL, NULL), SQLITE_OK);
	/* another process holds the write lock past our (shortened) busy timeout */
	sqlite3_busy_timeout(a->db, 20);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, NULL, &err), -1);
	assert_non_null(strstr(err, "lock"));
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	assert_nothing_delivered(root, "INBOX");
	uint32_t uid = 0;
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, &uid, &err), 0);
	assert_int_equal(uid, 1);
	close(fd);
	sqlite3_close(db);
	store_account_close(&a);
}

/* Run SQL on the account's index.db, made afresh when fresh is set. */
static void index_exec(const char *sql, int fresh)
{
	char p[400];
	sqlite3 *db;
	snprintf(p, sizeof(p), "%s/index.db", root);
	if (fresh) {
		unlink(p);
		char w[420];
		snprintf(w, sizeof(w), "%s-wal", p);
		unlink(w);
		snprintf(w, sizeof(w), "%s-shm", p);
		unlink(w);
	}
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* An index made by the first versions (a schema_version table, no user_version, some of the
 * later columns already there) opens, keeps its rows and is brought to the current level. */
static void test_old_index(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	struct store_mailbox_info info;
	assert_int_equal(store_account_create(root, &err), 0);
	index_exec("CREATE TABLE schema_version(version INTEGER NOT NULL);"
		   "INSERT INTO schema_version VALUES (1);"
		   "CREATE TABLE mailboxes(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
		   " uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
		   " highestmodseq INTEGER NOT NULL DEFAULT 1, special_use TEXT,"
		   " subscribed INTEGER DEFAULT 1);"
		   "CREATE TABLE messages(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
		   " filename TEXT NOT NULL, flags INTEGER NOT NULL DEFAULT 0, modseq INTEGER NOT NULL,"
		   " internaldate INTEGER NOT NULL, size INTEGER NOT NULL, savedate INTEGER,"
		   " in_new INTEGER NOT NULL DEFAULT 1, wire_size INTEGER NOT NULL DEFAULT 0,"
		   " PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
		   "CREATE TABLE expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
		   " modseq INTEGER NOT NULL, filename TEXT NOT NULL, PRIMARY KEY(mailbox_id, uid));"
		   "INSERT INTO mailboxes(id, name, uidvalidity, uidnext, highestmodseq) VALUES"
		   " (1, 'INBOX', 1234, 2, 3);"
		   "INSERT INTO mailboxes(id, name, uidvalidity, subscribed) VALUES"
		   " (2, 'Old', 1235, 0);"
		   "INSERT INTO messages(mailbox_id, uid, filename, modseq, internaldate, size,"
		   " wire_size) VALUES (1, 1, '1700000000.M1P1.test', 2, 77, 10, 12);", 1);
	assert_int_equal(sql_int("PRAGMA user_version"), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	assert_int_equal(store_mailbox_get(a, "INBOX", &info, &err), 1);
	assert_int_equal(info.uidvalidity, 1234);
	assert_int_equal(info.uidnext, 2);
	store_account_close(&a);
	assert_int_equal(sql_int("PRAGMA user_version"), 9);
	assert_int_equal(sql_int("SELECT count(*) FROM sqlite_master WHERE name = "
				 "'schema_version'"), 0);
	/* sizes are counted again (level 5) */
	assert_int_equal(sql_int("SELECT wire_size FROM messages WHERE uid = 1"), -1);
	assert_int_equal(sql_int("SELECT keywords FROM messages WHERE uid = 1"), 0);
	assert_int_equal(sql_int("SELECT recent_from FROM mailboxes WHERE id = 1"), 1);
	assert_int_equal(sql_int("SELECT count(*) FROM subscriptions"), 1);   /* INBOX, not Old */
	assert_int_equal(sql_int("SELECT count(*) FROM sqlite_master WHERE name IN ('structure',"
				 " 'keywords', 'uidvalidity_last', 'urlauth_keys', "
				 "'messages_modseq', 'expunged_modseq', "
				 "'mailboxes_subscribed')"), 7);
	assert_int_equal(sql_int("SELECT count(*) FROM pragma_table_info('structure') WHERE "
				 "name = 'header'"), 1);
	/* a mailbox made now gets a UIDVALIDITY above the old ones */
	assert_int_equal(store_account_open(root, &a, &err), 1);
	assert_int_equal(store_mailbox_create(a, "New", NULL, &err), 1);
	assert_int_equal(store_mailbox_get(a, "New", &info, &err), 1);
	assert_true(info.uidvalidity > 1235);
	store_account_close(&a);
}

/* A migration step that fails stops the open (the old code went on without it), and the
 * index stays at the level before it. */
static void test_index_migration_fails(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a = NULL;
	assert_int_equal(store_account_create(root, &err), 0);
	/* level 8 with something step 9 cannot drop as a table */
	index_exec("PRAGMA user_version = 8; CREATE VIEW schema_version AS SELECT 1 AS version", 0);
	assert_int_equal(store_account_open(root, &a, &err), -1);
	assert_null(a);
	assert_non_null(strstr(err, "index.db"));
	assert_non_null(strstr(err, "step 9"));
	assert_int_equal(sql_int("PRAGMA user_version"), 8);
	index_exec("DROP VIEW schema_version", 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	store_account_close(&a);
	assert_int_equal(sql_int("PRAGMA user_version"), 9);
	/* an index from a newer postino is refused */
	index_exec("PRAGMA user_version = 10", 0);
	assert_int_equal(store_account_open(root, &a, &err), -1);
	assert_non_null(strstr(err, "newer"));
}

/* Sync drops a row whose file is gone as an expunge (MODSEQ bumped, UID recorded), puts a stale
 * cur/ flag suffix right, and leaves an intact mailbox alone. */
static void test_sync_repairs(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	struct store_msg_info *m;
	struct store_mailbox_info before, after;
	char p[600], q[600];
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	int fd = source("s\r\n");
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_deliver(a, "Sent", fd, 3, 0, 0, 0, NULL, &err), 0);
	close(fd);
	assert_int_equal(store_mailbox_get(a, "Sent", &before, &err), 1);
	assert_int_equal(store_mailbox_sync(a, "Sent", &err), 0);
	assert_int_equal(store_mailbox_get(a, "Sent", &after, &err), 1);
	assert_int_equal(after.highestmodseq, before.highestmodseq);
	assert_int_equal(after.messages, 3);
	struct store_flag_change ch = { .uid = 3, .flags = STORE_F_SEEN };
	uint64_t modseq;
	assert_int_equal(store_set_flags(a, "Sent", &ch, 1, &modseq, &err), 0);
	assert_int_equal(store_message_list(a, "Sent", &m, &err), 3);
	assert_int_equal(store_message_path(a, "Sent", &m[1], p, sizeof(p)), 0);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(store_message_path(a, "Sent", &m[2], p, sizeof(p)), 0);
	snprintf(q, sizeof(q), "%s/.Sent/cur/%s:2,", root, m[2].filename);   /* crash mid-STORE */
	assert_int_equal(rename(p, q), 0);
	free(m);
	assert_int_equal(store_mailbox_sync(a, "Sent", &err), 0);
	assert_int_equal(access(p, F_OK), 0);
	assert_int_equal(store_message_list(a, "Sent", &m, &err), 2);
	assert_int_equal(m[0].uid, 1);
	assert_int_equal(m[1].uid, 3);
	assert_int_equal(m[1].flags, STORE_F_SEEN);
	free(m);
	assert_int_equal(store_mailbox_get(a, "Sent", &after, &err), 1);
	assert_int_equal(after.highestmodseq, modseq + 1);
	assert_int_equal(after.uidnext, 4);
	assert_int_equal(sql_int("SELECT uid FROM expunged"), 2);
	/* a missing cur/ is an error, never "all files gone" */
	snprintf(p, sizeof(p), "%s/.Sent/cur", root);
	snprintf(q, sizeof(q), "%s/.Sent/cur.away", root);
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(store_mailbox_sync(a, "Sent", &err), -1);
	assert_int_equal(rename(q, p), 0);
	assert_int_equal(store_mailbox_get(a, "Sent", &after, &err), 1);
	assert_int_equal(after.messages, 2);
	assert_int_equal(store_mailbox_sync(a, "Nope", &err), -1);
	store_account_close(&a);
}

/* A file a crash left in new/ without its row is indexed by the next delivery of a new handle. */
static void test_deliver_adopts_orphan(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	char p[400];
	assert_int_equal(store_account_create(root, &err), 0);
	snprintf(p, sizeof(p), "%s/new/1.M1P1Q1.crashed,S=4", root);
	int f = open(p, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(f, "o\r\n\r", 4), 4);
	close(f);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	int fd = source("d\r\n");
	uint32_t uid = 0;
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, &uid, &err), 0);
	assert_int_equal(uid, 2);
	close(fd);
	struct store_msg_info *m;
	assert_int_equal(store_message_list(a, NULL, &m, &err), 2);
	assert_string_equal(m[0].filename, "1.M1P1Q1.crashed,S=4");
	assert_int_equal(m[0].size, 4);
	free(m);
	store_account_close(&a);
}

/* Write a small message file at root/<rel>. */
static void put_file(const char *rel)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	int f = open(p, O_CREAT | O_WRONLY | O_EXCL, 0600);
	assert_true(f >= 0);
	assert_int_equal(write(f, "x\r\n", 3), 3);
	close(f);
}

/* APPEND and delivery commit their rows without a sync of the WAL; each file's name carries
 * its UID, so when a power cut takes the rows back, the mailbox's reconciling gives each file
 * the UID its client was told, and the flags and internal date it was stored with. A name's
 * UID below UIDNEXT, or far above it, is not believed: that file gets a fresh UID. */
static void test_sync_uid_in_name(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	uint32_t uid[6], uv;
	const time_t t0 = 1577836800;   /* 2020-01-01 */
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_open(root, &a, &err), 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_append(a, "INBOX", "a\r\n", 3,
					      i == 2 ? STORE_F_SEEN | STORE_F_FLAGGED : 0, 0,
					      t0 + i * 86400, &uid[i], &uv, &err), 0);
	int fd = source("d\r\n");
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, &uid[4], &err), 0);
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, &uid[5], &err), 0);
	close(fd);
	for (int i = 0; i < 6; i++)
		assert_int_equal(uid[i], i + 1);
	struct store_msg_info *was, *m;
	assert_int_equal(store_message_list(a, "INBOX", &was, &err), 6);
	for (int i = 0; i < 6; i++) {
		char want[40];
		snprintf(want, sizeof(want), ",U=%d", i + 1);
		assert_non_null(strstr(was[i].filename, want));
		assert_int_equal(store_uid_from_name(was[i].filename), i + 1);
	}
	store_account_close(&a);
	/* the power cut: every commit after the first APPEND's is gone from the index, among them
	 * that of an expunge of UID 4 whose file had been removed */
	index_exec("DELETE FROM messages WHERE uid > 1; DELETE FROM structure WHERE uid > 1; "
		   "UPDATE mailboxes SET uidnext = 2 WHERE name = 'INBOX'", 0);
	char p4[700];
	assert_int_equal(store_msg_path(root, was[3].filename, was[3].in_new, was[3].flags, p4,
					sizeof(p4)), 0);
	assert_int_equal(unlink(p4), 0);
	/* and files put there by hand: a UID below UIDNEXT, one too far above it, none */
	put_file("new/900.low,U=1,S=3");
	put_file("new/901.far,U=3000000000,S=3");
	put_file("cur/902.none,S=3:2,S");
	assert_int_equal(store_account_open(root, &a, &err), 1);
	assert_int_equal(store_mailbox_sync(a, "INBOX", &err), 0);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 8);
	for (int j = 0; j < 5; j++) {
		int i = j < 3 ? j : j + 1;   /* UID 4 is gone */
		assert_int_equal(m[j].uid, i + 1);
		assert_string_equal(m[j].filename, was[i].filename);
		assert_int_equal(m[j].flags, was[i].flags);
		assert_int_equal(m[j].in_new, was[i].in_new);
		if (i < 4)
			assert_int_equal(m[j].internaldate, t0 + i * 86400);
	}
	assert_int_equal(m[2].flags, STORE_F_SEEN | STORE_F_FLAGGED);
	assert_int_equal(m[5].uid, 7);
	assert_string_equal(m[5].filename, "900.low,U=1,S=3");
	assert_int_equal(m[6].uid, 8);
	assert_string_equal(m[6].filename, "901.far,U=3000000000,S=3");
	assert_int_equal(m[7].uid, 9);
	assert_int_equal(m[7].flags, STORE_F_SEEN);
	assert_int_equal(sql_int("SELECT uidnext FROM mailboxes WHERE name = 'INBOX'"), 10);
	free(was);
	free(m);
	/* the next message comes after all of them */
	fd = source("e\r\n");
	assert_int_equal(store_deliver(a, NULL, fd, 3, 0, 0, 0, &uid[0], &err), 0);
	close(fd);
	assert_int_equal(uid[0], 10);
	store_account_close(&a);
}

/* Only a well-formed ",U=<n>" before the info part is a UID. */
static void test_uid_from_name(void **state)
{
	(void)state;
	assert_int_equal(store_uid_from_name("1.M1P1Q1.h,S=3,U=42"), 42);
	assert_int_equal(store_uid_from_name("1.M1P1Q1.h,S=3,U=42:2,S"), 42);
	assert_int_equal(store_uid_from_name("1.h,U=7,S=3"), 7);
	assert_int_equal(store_uid_from_name("1.h,U=x,U=8"), 8);
	assert_int_equal(store_uid_from_name("1.M1P1Q1.h,S=3"), 0);
	assert_int_equal(store_uid_from_name("1.h,S=3:2,U=5"), 0);
	assert_int_equal(store_uid_from_name("1.h,U=0"), 0);
	assert_int_equal(store_uid_from_name("1.h,U=007"), 0);
	assert_int_equal(store_uid_from_name("1.h,U=12a"), 0);
	assert_int_equal(store_uid_from_name("1.h,U="), 0);
	assert_int_equal(store_uid_from_name("1.h,U=4294967294"), 4294967294u);
	assert_int_equal(store_uid_from_name("1.h,U=4294967295"), 0);
	assert_int_equal(store_uid_from_name("1.h,U=99999999999"), 0);
	char n[32];
	assert_int_equal(store_name_with_uid(n, sizeof(n), "1.h,S=3", 9), 0);
	assert_string_equal(n, "1.h,S=3,U=9");
	assert_int_equal(store_name_with_uid(n, 8, "1.h,S=3", 9), -1);
}

#define CONC_PROCS 4     /* delivering processes */
#define CONC_EACH 25     /* messages each */

/* Child: open the account itself and deliver CONC_EACH messages (or sync repeatedly). */
static void conc_child(int syncer)
{
	const char *err;
	struct store_account *a;
	if (store_account_open(root, &a, &err) != 1)
		_exit(2);
	int fd = source("Subject: race\r\n\r\nbody\r\n");
	for (int i = 0; i < CONC_EACH; i++) {
		if (syncer ? store_mailbox_sync(a, NULL, &err) < 0
			   : store_deliver(a, NULL, fd, 23, i & 1, 0, 0, NULL, &err) < 0) {
			fprintf(stderr, "child: %s\n", err);
			_exit(1);
		}
	}
	close(fd);
	store_account_close(&a);
	_exit(0);
}

/* Several processes deliver into one account while another syncs it: every message gets its
 * own UID, one row and one file. */
static void test_concurrent(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a;
	pid_t pids[CONC_PROCS + 1];
	assert_int_equal(store_account_create(root, &err), 0);
	for (int i = 0; i <= CONC_PROCS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0)
			conc_child(i == CONC_PROCS);
	}
	for (int i = 0; i <= CONC_PROCS; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(store_account_open(root, &a, &err), 1);
	assert_int_equal(store_mailbox_sync(a, NULL, &err), 0);
	struct store_msg_info *m;
	assert_int_equal(store_message_list(a, NULL, &m, &err), CONC_PROCS * CONC_EACH);
	for (int i = 0; i < CONC_PROCS * CONC_EACH; i++)
		assert_int_equal(m[i].uid, (uint32_t)i + 1);
	free(m);
	char p[400];
	snprintf(p, sizeof(p), "%s/new", root);
	assert_int_equal(count_files(p), CONC_PROCS * CONC_EACH);
	assert_int_equal(sql_int("SELECT count(DISTINCT filename) FROM messages"),
			 CONC_PROCS * CONC_EACH);
	store_account_close(&a);
}

/* Kept handles: one lent per borrower at a time, the same one back after its return, none for
 * an account without an index, a new one when index.db is another file. */
static void test_borrow(void **state)
{
	(void)state;
	const char *err;
	struct store_account *a, *b, *c;
	assert_int_equal(store_account_borrow(root, &a, &err), 0);   /* no index yet */
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_borrow(root, &a, &err), 1);
	assert_int_equal(store_account_borrow(root, &b, &err), 1);
	assert_ptr_not_equal(a, b);                  /* a is out: the second borrower gets its own */
	struct store_account *first = a;
	store_account_return(&a);
	assert_null(a);
	assert_int_equal(store_account_borrow(root, &c, &err), 1);
	assert_ptr_equal(c, first);                  /* kept, with its connection and pages */
	store_account_return(&c);
	store_account_return(&b);
	/* the account removed and made again: the kept handles point to the old file */
	char p[400];
	snprintf(p, sizeof(p), "%s/index.db", root);
	assert_int_equal(unlink(p), 0);
	snprintf(p, sizeof(p), "%s/index.db-wal", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/index.db-shm", root);
	unlink(p);
	assert_int_equal(store_account_create(root, &err), 0);
	assert_int_equal(store_account_borrow(root, &a, &err), 1);
	const char *msg = "Subject: x\r\n\r\nbody\r\n";
	int fd = source(msg);
	uint32_t uid = 0;
	assert_int_equal(store_deliver(a, NULL, fd, strlen(msg), 0, time(NULL), 0, &uid, &err), 0);
	assert_int_equal(uid, 1);                    /* the new index, not the removed one */
	close(fd);
	store_account_return(&a);
	store_account_borrow_release();              /* closes what is not lent */
	assert_int_equal(store_account_borrow(root, &a, &err), 1);
	store_account_return(&a);
	store_account_borrow_release();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_imap_ops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_multi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_escaping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_unwritable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_index_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_repairs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_adopts_orphan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_uid_in_name, setup, teardown),
		cmocka_unit_test(test_uid_from_name),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_borrow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_migration_fails, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
