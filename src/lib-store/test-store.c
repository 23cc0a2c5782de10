/* test-store.c - the Maildir store: create, deliver, list, names, sync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-path.h"
#include "store.h"

static char root[256];

/* A fresh account directory per test. */
static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/postino-test-store-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	snprintf(root, sizeof(root), "%s/acct", tmpl);
	return 0;
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
		if (store_mailbox_name_valid(cases[i].name) != cases[i].ok)
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
	int fd = source("Subject: x\r\n\r\nhello\r\n");
	uint32_t uid, uv;
	assert_int_equal(store_deliver(a, NULL, fd, 23, 0, 5, 0, &uid, &err), 0);
	close(fd);
	int kw = store_keyword_id(a, "$Important", 1, &err);
	assert_true(kw >= 0);
	struct store_flag_change ch = { uid, STORE_F_SEEN | STORE_F_FLAGGED, 1ull << kw };
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
	uint32_t nu[1];
	assert_int_equal(store_copy(a, "INBOX", &uid, 1, "Archive", nu, &uv, &err), 1);
	assert_int_equal(nu[0], 1);
	assert_int_equal(store_expunge(a, "INBOX", &uid, 1, &err), 1);
	assert_int_equal(store_mailbox_sync(a, "INBOX", &err), 0);
	assert_int_equal(store_message_list(a, "INBOX", &m, &err), 0);
	free(m);
	assert_int_equal(store_message_list(a, "Archive", &m, &err), 1);
	assert_int_equal(m[0].flags, STORE_F_SEEN | STORE_F_FLAGGED);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_deliver, setup),
		cmocka_unit_test_setup(test_deliver_failure, setup),
		cmocka_unit_test_setup(test_names, setup),
		cmocka_unit_test_setup(test_sync, setup),
		cmocka_unit_test_setup(test_imap_ops, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
