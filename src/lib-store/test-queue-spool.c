/* test-queue-spool.c - queue envelopes: parsing, round trip, damage detection, hold flags, the
 * null-sender spool entries of DSNs and TLS reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "queue-spool.h"

static const char good[] =
	"version 1\nid 00aa11bb22cc33dd\narrived 1700000000\nfrom <a@ours.test>\n"
	"body 8BITMIME\nsmtputf8 0\nret HDRS\nenvid ab+2Bc\nauth a@ours.test\nsize 11\n"
	"crc32 %08lx\n"
	"rcpt <x@remote.test> notify=SUCCESS,DELAY orcpt=rfc822;x@remote.test\n"
	"rcpt <\"sp ace\"@remote.test> notify=- orcpt=-\n";

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/postino-test-qenv-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_parse(void **state)
{
	(void)state;
	char text[1024], err[256];
	snprintf(text, sizeof(text), good, 0x1234abcdUL);
	struct qenv e;
	assert_int_equal(queue_env_parse(text, strlen(text), &e, err, sizeof(err)), 0);
	assert_string_equal(e.id, "00aa11bb22cc33dd");
	assert_string_equal(e.from, "a@ours.test");
	assert_int_equal(e.size, 11);
	assert_true(e.have_crc);
	assert_int_equal(e.crc, 0x1234abcd);
	assert_true(e.body_8bit);
	assert_string_equal(e.ret, "HDRS");
	assert_string_equal(e.envid, "ab+2Bc");
	assert_int_equal(e.nrcpts, 2);
	assert_string_equal(e.rcpts[0].addr, "x@remote.test");
	assert_int_equal(e.rcpts[0].notify, QN_SUCCESS | QN_DELAY);
	assert_string_equal(e.rcpts[0].orcpt, "rfc822;x@remote.test");
	assert_string_equal(e.rcpts[1].addr, "\"sp ace\"@remote.test");
	assert_int_equal(e.rcpts[1].notify, QN_DEFAULT);
	assert_int_equal(e.rcpts[1].state, QR_PENDING);
	queue_env_free(&e);
}

/* Truncated or mangled envelopes are refused, never half-read. */
static void test_damaged(void **state)
{
	(void)state;
	char text[1024], err[256];
	struct qenv e;
	snprintf(text, sizeof(text), good, 0UL);
	size_t n = strlen(text);
	for (size_t cut = 1; cut < n; cut++) {
		if (text[cut - 1] == '\n')
			continue;   /* whole lines: may still be complete enough */
		assert_int_equal(queue_env_parse(text, cut, &e, err, sizeof(err)), -1);
	}
	const char *bad[] = {
		"version 1\nid x\nfrom <a@b>\nsize 1\n",                      /* no recipient */
		"version 2\nid x\nfrom <a@b>\nsize 1\nrcpt <c@d> notify=- orcpt=-\n",
		"version 1\nid x\nfrom a@b\nsize 1\nrcpt <c@d> notify=- orcpt=-\n",
		"version 1\nid x\nfrom <a@b>\nsize 1x\nrcpt <c@d> notify=- orcpt=-\n",
		"version 1\nid x\nfrom <a@b>\nrcpt <c@d> notify=- orcpt=-\n",  /* no size */
		"version 1\nid ../x\nfrom <a@b>\nsize 1\nrcpt <c@d> notify=- orcpt=-\n",
		"version 1\nid x\nfrom <a@b>\nsize 1\ncrc32 12\nrcpt <c@d> notify=- orcpt=-\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (queue_env_parse(bad[i], strlen(bad[i]), &e, err, sizeof(err)) != -1)
			fail_msg("bad envelope %zu accepted", i);
}

/* Write, read back, and the body check catches a changed or truncated body. */
static void test_roundtrip_and_body(void **state)
{
	(void)state;
	char text[1024], err[256], path[256];
	const char *body = "hello world";
	unsigned long crc = crc32(0, (const unsigned char *)body, 11);
	snprintf(text, sizeof(text), good, crc);
	struct qenv e, back;
	assert_int_equal(queue_env_parse(text, strlen(text), &e, err, sizeof(err)), 0);
	e.rcpts[0].state = QR_SENT;
	snprintf(e.rcpts[1].err, sizeof(e.rcpts[1].err), "451 4.3.0 try\nlater");
	e.rcpts[1].delay_notified = 1;
	e.attempts = 3;
	e.next = 1700000100;
	assert_int_equal(queue_env_write(tmpdir, &e), 0);
	assert_int_equal(queue_env_read(tmpdir, e.id, &back, err, sizeof(err)), 1);
	assert_int_equal(back.attempts, 3);
	assert_int_equal(back.next, 1700000100);
	assert_int_equal(back.rcpts[0].state, QR_SENT);
	assert_int_equal(back.rcpts[1].state, QR_PENDING);
	assert_true(back.rcpts[1].delay_notified);
	assert_string_equal(back.rcpts[1].err, "451 4.3.0 try later");
	assert_int_equal(back.crc, (uint32_t)crc);
	queue_env_free(&back);

	snprintf(path, sizeof(path), "%s/%s.msg", tmpdir, e.id);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, body, 11), 11);
	assert_int_equal(queue_body_check(fd, &e, err, sizeof(err)), 1);
	assert_int_equal(pwrite(fd, "J", 1, 0), 1);             /* a flipped octet */
	assert_int_equal(queue_body_check(fd, &e, err, sizeof(err)), 0);
	assert_int_equal(ftruncate(fd, 5), 0);                  /* a truncated body */
	assert_int_equal(queue_body_check(fd, &e, err, sizeof(err)), 0);
	close(fd);
	assert_int_equal(queue_quarantine(tmpdir, e.id), 0);
	snprintf(path, sizeof(path), "%s/quarantine/%s.msg", tmpdir, e.id);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/%s.env", tmpdir, e.id);
	assert_int_equal(access(path, F_OK), -1);
	queue_env_free(&e);
}

static void test_holds(void **state)
{
	(void)state;
	assert_int_equal(queue_sender_held(tmpdir, "Bob@Ours.test"), 0);
	assert_int_equal(queue_hold_sender(tmpdir, "Bob@Ours.test", 1), 0);
	assert_int_equal(queue_sender_held(tmpdir, "bob@ours.test"), 1);
	assert_int_equal(queue_sender_held(tmpdir, "bobby@ours.test"), 0);
	assert_int_equal(queue_hold_sender(tmpdir, "../../etc/x@y", 1), 0);   /* escaped, inside */
	assert_int_equal(queue_sender_held(tmpdir, "../../etc/x@y"), 1);
	assert_int_equal(queue_hold_sender(tmpdir, "bob@ours.test", 0), 0);
	assert_int_equal(queue_sender_held(tmpdir, "bob@ours.test"), 0);
	assert_int_equal(queue_hold_msg(tmpdir, "abc", 1), 0);
	assert_int_equal(queue_msg_held(tmpdir, "abc"), 1);
	assert_int_equal(queue_hold_msg(tmpdir, "abc", 0), 0);
	assert_int_equal(queue_msg_held(tmpdir, "abc"), 0);
	assert_int_equal(queue_hold_msg(tmpdir, "../x", 1), -1);
	assert_int_equal(queue_notify_parse("NEVER"), QN_NEVER);
	assert_int_equal(queue_notify_parse("failure,delay"), QN_FAILURE | QN_DELAY);
}

/* The one .env file in dir (its id into id), or fail. */
static void only_env(const char *dir, char *id, size_t idlen)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".env") == 0) {
			snprintf(id, idlen, "%.*s", (int)(l - 4), de->d_name);
			n++;
		}
	}
	closedir(d);
	assert_int_equal(n, 1);
}

/* What DSNs and TLS reports share: temp file, then a null-sender entry in the spool. */
static void test_spool_null(void **state)
{
	(void)state;
	char qdir[128], path[256], tmp[256], err[256], id[64];
	const char *msg = "Subject: report\r\n\r\nbody\r\n";
	size_t n = strlen(msg);
	snprintf(qdir, sizeof(qdir), "%s/spool", tmpdir);
	assert_int_equal(mkdir(qdir, 0700), 0);
	int fd = queue_spool_temp(tmpdir, "dsn", msg, n, tmp, sizeof(tmp));
	assert_true(fd >= 0);
	snprintf(path, sizeof(path), "%s/dsn.%d.", tmpdir, (int)getpid());
	assert_memory_equal(tmp, path, strlen(path));
	char back[64];
	assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)n);   /* at offset 0 */
	assert_memory_equal(back, msg, n);
	close(fd);

	assert_int_equal(queue_spool_null(qdir, tmp, msg, n, "Bob@remote.test", 1, 0), 0);
	unlink(tmp);
	only_env(qdir, id, sizeof(id));
	struct qenv e;
	assert_int_equal(queue_env_read(qdir, id, &e, err, sizeof(err)), 1);
	assert_string_equal(e.from, "");
	assert_true(e.body_8bit);
	assert_false(e.smtputf8);
	assert_int_equal(e.nrcpts, 1);
	assert_string_equal(e.rcpts[0].addr, "Bob@remote.test");
	assert_int_equal(e.rcpts[0].notify, QN_NEVER);
	assert_int_equal(e.rcpts[0].state, QR_PENDING);
	snprintf(path, sizeof(path), "%s/%s.msg", qdir, id);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(queue_body_check(fd, &e, err, sizeof(err)), 1);   /* size and CRC */
	close(fd);
	queue_env_free(&e);

	/* a missing file: nothing is queued, errno says why */
	assert_int_equal(queue_spool_null(qdir, tmp, msg, n, "bob@remote.test", 0, 0), -1);
	assert_int_equal(errno, ENOENT);
	only_env(qdir, id, sizeof(id));
	/* a temp dir that does not exist: no fd, no file */
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(queue_spool_temp(path, "dsn", msg, n, tmp, sizeof(tmp)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_roundtrip_and_body),
		cmocka_unit_test(test_holds),
		cmocka_unit_test(test_spool_null),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
