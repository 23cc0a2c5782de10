/* test-milter.c - milter replies validated, header changes applied, the milters setting
 * parsed, and a conversation with a fake milter over a socketpair-like loopback listener
 * that answers with hostile packets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "milter.h"

static const struct {
	const char *in;
	int ok, cls;
	const char *want;
} reply_cases[] = {
	{ "554 5.7.1 Gtube pattern", 1, 5, "554 5.7.1 Rejected by the spam filter: Gtube pattern" },
	{ "450 4.2.0 later", 1, 4, "450 4.2.0 Deferred by the spam filter: later" },
	{ "550 spam", 1, 5, "550 5.7.1 Rejected by the spam filter: spam" },
	{ "550", 1, 5, "550 5.7.1 Rejected by the spam filter: no reason given" },
	{ "550 4.7.1 class mismatch", 1, 5,   /* a 4.x.x code on a 5xx reply is text, not code */
	  "550 5.7.1 Rejected by the spam filter: 4.7.1 class mismatch" },
	{ "550-5.7.1 first\r\n550 5.7.1 second", 1, 5,
	  "550 5.7.1 Rejected by the spam filter: first; second" },
	{ "250 ok", 0, 0, NULL },                          /* not a refusal */
	{ "354 go", 0, 0, NULL },
	{ "55", 0, 0, NULL },
	{ "5x0 bad", 0, 0, NULL },
	{ "550x", 0, 0, NULL },
	{ "550 5.7.1 a\x1b[2Jb", 0, 0, NULL },             /* control octets */
	{ "550 5.7.1 ok\r\nRSET", 0, 0, NULL },            /* a line that is not a reply */
	{ "550-5.7.1 a\r\n451 4.7.1 b", 0, 0, NULL },      /* mixed codes */
	{ "550 5.7.1 caf\xc3\xa9", 0, 0, NULL },           /* 8-bit: not in a reply */
};

/* Every reply case gives its verdict and text. */
static void test_reply_check(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		char out[MILTER_REPLY_MAX];
		int cls = 0;
		int rc = milter_reply_check(reply_cases[i].in, strlen(reply_cases[i].in), out,
					    sizeof(out), &cls);
		if (!reply_cases[i].ok) {
			if (rc != -1)
				fail_msg("case %zu accepted: %s", i, out);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(cls, reply_cases[i].cls);
		assert_string_equal(out, reply_cases[i].want);
	}
}

/* A long reply is cut to fit, never overflowing. */
static void test_reply_long(void **state)
{
	(void)state;
	char in[5000], out[MILTER_REPLY_MAX];
	int cls;
	memcpy(in, "550 5.7.1 ", 10);
	memset(in + 10, 'a', sizeof(in) - 11);
	in[sizeof(in) - 1] = '\0';
	assert_int_equal(milter_reply_check(in, strlen(in), out, sizeof(out), &cls), 0);
	assert_true(strlen(out) < MILTER_REPLY_MAX);
}

/* Write s to a temp file; its fd. */
static int tmpfile_with(const char *s)
{
	char path[] = "/tmp/test-milter.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	return fd;
}

/* The whole content of fd. */
static char *slurp(int fd)
{
	static char buf[8192];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

/* Add, insert, change and delete, in the order given; the trace before `off` and the body stay. */
static void test_apply_edits(void **state)
{
	(void)state;
	const char *msg = "Return-Path: <a@b>\r\n"
			  "Subject: one\r\nX-A: 1\r\nX-a: 2\r\n continued\r\nTo: t@x\r\n\r\nbody\r\n";
	size_t off = strlen("Return-Path: <a@b>\r\n");
	struct milter_edit e[] = {
		{ 'h', 0, "X-Added", "yes" },
		{ 'i', 0, "X-Top", "first" },
		{ 'm', 2, "x-A", "changed\r\n\tfolded" },     /* the second X-A, any case */
		{ 'm', 1, "Subject", "" },                   /* deleted */
		{ 'm', 1, "X-Missing", "appended" },         /* absent: added at the end */
		{ 'm', 3, "X-A", "" },                        /* absent and empty: nothing */
		{ 'i', 99, "X-Late", "end" },                 /* past the end: appended */
	};
	int in = tmpfile_with(msg);
	int out = tmpfile_with("");
	uint64_t len = 0;
	unsigned long crc = crc32_z(0, NULL, 0);
	assert_int_equal(milter_apply_edits(in, off, strlen(msg), e, sizeof(e) / sizeof(e[0]), out,
					    &len, &crc), 0);
	const char *want = "X-Top: first\r\nX-A: 1\r\nx-A: changed\r\n\tfolded\r\nTo: t@x\r\n"
			   "X-Added: yes\r\nX-Missing: appended\r\nX-Late: end\r\n\r\nbody\r\n";
	assert_string_equal(slurp(out), want);
	assert_int_equal(len, strlen(want));
	assert_int_equal(crc, crc32_z(crc32_z(0, NULL, 0), (const unsigned char *)want,
				      strlen(want)));
	close(in);
	close(out);
}

/* A message without a body and one without header fields. */
static void test_apply_edits_edges(void **state)
{
	(void)state;
	struct milter_edit e[] = { { 'h', 0, "X-S", "1" } };
	const char *cases[][2] = {
		{ "Subject: only\r\n", "Subject: only\r\nX-S: 1\r\n" },
		{ "\r\nbody only\r\n", "X-S: 1\r\n\r\nbody only\r\n" },
		{ "not a header line\r\nmore\r\n", "X-S: 1\r\nnot a header line\r\nmore\r\n" },
	};
	for (size_t i = 0; i < 3; i++) {
		int in = tmpfile_with(cases[i][0]), out = tmpfile_with("");
		uint64_t len;
		unsigned long crc = 0;
		assert_int_equal(milter_apply_edits(in, 0, strlen(cases[i][0]), e, 1, out, &len,
						    &crc), 0);
		assert_string_equal(slurp(out), cases[i][1]);
		close(in);
		close(out);
	}
}

/* The setting's syntax. */
static void test_parse_list(void **state)
{
	(void)state;
	char specs[MILTER_LIST_MAX][MILTER_SPEC_MAX];
	const char *err;
	assert_int_equal(milter_parse_list("inet:127.0.0.1:11332, unix:/run/m.sock", specs,
					   MILTER_LIST_MAX, &err), 2);
	assert_string_equal(specs[1], "unix:/run/m.sock");
	assert_int_equal(milter_parse_list("inet:[::1]:5", specs, MILTER_LIST_MAX, &err), 1);
	assert_int_equal(milter_parse_list("", specs, MILTER_LIST_MAX, &err), 0);
	const char *bad[] = { "tcp:1.2.3.4:5", "inet:host", "inet:host:0", "inet:host:70000",
			      "inet::25", "unix:relative", "inet:h:25x",
			      "inet:a:1 inet:a:2 inet:a:3 inet:a:4 inet:a:5 inet:a:6 inet:a:7 "
			      "inet:a:8 inet:a:9" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (milter_parse_list(bad[i], specs, MILTER_LIST_MAX, &err) != -1)
			fail_msg("accepted %s", bad[i]);
}

/* ---- a fake milter on a loopback port, one scripted answer per test */

struct fake {
	int lfd;
	unsigned port;
	const unsigned char *answer;   /* sent after the OPTNEG packet is read */
	size_t answer_len;
};

/* Accept one connection, read OPTNEG, send the scripted bytes, then read until EOF. */
static void *fake_run(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	unsigned char buf[4096];
	ssize_t n = read(c, buf, sizeof(buf));
	(void)n;
	if (f->answer_len)
		n = write(c, f->answer, f->answer_len);
	while (read(c, buf, sizeof(buf)) > 0)
		;
	close(c);
	return NULL;
}

/* Run the client against the fake with answer; the result. */
static void run_against(const unsigned char *answer, size_t len, enum milter_default dflt,
			struct milter_result *res)
{
	struct fake f = { .answer = answer, .answer_len = len };
	f.lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f.lfd, 1), 0);
	assert_int_equal(getsockname(f.lfd, (struct sockaddr *)&sa, &sl), 0);
	pthread_t th;
	pthread_create(&th, NULL, fake_run, &f);
	char list[64];
	snprintf(list, sizeof(list), "inet:127.0.0.1:%u", ntohs(sa.sin_port));
	const char *msg = "Subject: s\r\n\r\nbody\r\n";
	int fd = tmpfile_with(msg);
	const char rcpt[] = "r@x";
	struct milter_env env = { .client_ip = "127.0.0.1", .client_port = 1, .helo = "h",
				  .from = "f@x", .rcpts = rcpt, .nrcpts = 1, .rcpt_stride = 4,
				  .auth_user = "", .queue_id = "q", .hostname = "me", .daemon = "smtp",
				  .fd = fd, .off = 0, .total = strlen(msg) };
	struct milter_settings set = { 2, 2, 2, dflt };
	milter_run(list, &set, &env, res);
	close(fd);
	shutdown(f.lfd, SHUT_RDWR);
	pthread_join(th, NULL);
	close(f.lfd);
}

/* Hostile answers to the negotiation end in the default action, never in a crash. */
static void test_hostile_negotiation(void **state)
{
	(void)state;
	static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xf0, 'O' };
	static const unsigned char zero[] = { 0, 0, 0, 0 };
	static const unsigned char shortopt[] = { 0, 0, 0, 5, 'O', 0, 0, 0, 6 };
	static const unsigned char unknown[] = { 0, 0, 0, 1, 'Z' };
	static const unsigned char badver[] = { 0, 0, 0, 13, 'O', 0, 0, 0, 99, 0, 0, 0, 0, 0, 0,
						0, 0 };
	static const unsigned char trunc[] = { 0, 0, 0, 13, 'O', 0, 0 };   /* then EOF */
	const struct { const unsigned char *p; size_t n; } cases[] = {
		{ huge, sizeof(huge) }, { zero, sizeof(zero) }, { shortopt, sizeof(shortopt) },
		{ unknown, sizeof(unknown) }, { badver, sizeof(badver) }, { trunc, sizeof(trunc) },
		{ NULL, 0 },   /* silence: the command timeout */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct milter_result res;
		run_against(cases[i].p, cases[i].n, MILTER_DEFAULT_TEMPFAIL, &res);
		assert_int_equal(res.verdict, MILTER_TEMPFAIL);
		assert_memory_equal(res.reply, "451 4.7.1", 9);
		milter_result_free(&res);
		run_against(cases[i].p, cases[i].n, MILTER_DEFAULT_ACCEPT, &res);
		assert_int_equal(res.verdict, MILTER_ACCEPT);
		assert_int_equal(res.nedits, 0);
		milter_result_free(&res);
		run_against(cases[i].p, cases[i].n, MILTER_DEFAULT_REJECT, &res);
		assert_int_equal(res.verdict, MILTER_REJECT);
		milter_result_free(&res);
	}
}

/* A milter that rejects at CONNECT: its reply, and nothing more is sent. */
static void test_reject_at_connect(void **state)
{
	(void)state;
	static const unsigned char opt[] = { 0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0, 0x21, 0, 0, 0,
					     0 };
	const char *text = "554 5.7.1 go away now!";
	unsigned char a[64];
	size_t n = sizeof(opt), tl = strlen(text) + 1;
	memcpy(a, opt, n);
	uint32_t len = htonl((uint32_t)(tl + 1));
	memcpy(a + n, &len, 4);
	a[n + 4] = 'y';
	memcpy(a + n + 5, text, tl);
	n += 5 + tl;
	struct milter_result res;
	run_against(a, n, MILTER_DEFAULT_ACCEPT, &res);
	assert_int_equal(res.verdict, MILTER_REJECT);
	assert_string_equal(res.reply, "554 5.7.1 Rejected by the spam filter: go away now!");
	milter_result_free(&res);
}

/* ---- a scripted fake milter for the stages of one session */

struct fake2 {
	int lfd;
	const char *replies;           /* one reply letter per command that wants one */
	char log[128];                 /* the commands received, macros left out */
};

/* Read exactly n octets. 0 ok, -1 EOF or error. */
static int read_n(int fd, void *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)p + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* Serve one connection: OPTNEG with no protocol flags, then the scripted replies. */
static void *fake2_run(void *arg)
{
	struct fake2 *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	size_t nlog = 0;
	for (;;) {
		uint32_t len;
		unsigned char buf[4096];
		if (read_n(c, &len, 4) < 0)
			break;
		len = ntohl(len);
		if (len < 1 || len > sizeof(buf) || read_n(c, buf, len) < 0)
			break;
		char cmd = (char)buf[0];
		if (cmd != 'D' && nlog + 1 < sizeof(f->log))
			f->log[nlog++] = cmd;
		if (cmd == 'O') {
			static const unsigned char opt[] = { 0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0,
							     0x21, 0, 0, 0, 0 };
			if (write(c, opt, sizeof(opt)) != (ssize_t)sizeof(opt))
				break;
			continue;
		}
		if (cmd == 'Q')
			break;
		if (cmd == 'D' || cmd == 'A')
			continue;    /* macros and ABORT get no reply */
		unsigned char rep[5] = { 0, 0, 0, 1, 'c' };
		if (*f->replies)
			rep[4] = (unsigned char)*f->replies++;
		if (write(c, rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			break;
	}
	f->log[nlog] = '\0';
	close(c);
	return NULL;
}

/* A session against the fake: its listening socket and thread, and the milter list. */
static struct milter_session *fake2_session(struct fake2 *f, pthread_t *th)
{
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 1), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
	pthread_create(th, NULL, fake2_run, f);
	char list[64];
	snprintf(list, sizeof(list), "inet:127.0.0.1:%u", ntohs(sa.sin_port));
	struct milter_settings set = { 2, 2, 2, MILTER_DEFAULT_TEMPFAIL };
	struct milter_session *ms = milter_session_new(list, &set);
	assert_non_null(ms);
	return ms;
}

static const struct milter_env stage_env = {
	.client_ip = "127.0.0.1", .client_port = 1, .helo = "h", .from = "f@x", .rcpts = "",
	.auth_user = "", .queue_id = "q", .hostname = "me", .daemon = "smtp", .fd = -1,
};

/* One stage; its verdict. */
static enum milter_verdict stage(struct milter_session *ms, enum milter_stage st,
				 const char *rcpt, char *reply, size_t replylen)
{
	struct milter_result res;
	milter_stage(ms, st, &stage_env, rcpt, &res);
	snprintf(reply, replylen, "%s", res.reply);
	milter_result_free(&res);
	return res.verdict;
}

/* Verdicts apply at their stage: a refused RCPT refuses only itself; accept at MAIL leaves
 * the milter out of that transaction; an unfinished transaction is aborted before the next
 * MAIL; one connection serves the session. */
static void test_stages(void **state)
{
	(void)state;
	struct fake2 f = { .replies = "cccrcac" };
	pthread_t th;
	struct milter_session *ms = fake2_session(&f, &th);
	char reply[MILTER_REPLY_MAX];
	assert_int_equal(stage(ms, MILTER_STAGE_CONNECT, NULL, reply, sizeof(reply)),
			 MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_HELO, NULL, reply, sizeof(reply)), MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_MAIL, NULL, reply, sizeof(reply)), MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_RCPT, "a@x", reply, sizeof(reply)), MILTER_REJECT);
	assert_memory_equal(reply, "550 5.7.1 ", 10);
	assert_non_null(strstr(reply, "recipient"));
	assert_int_equal(stage(ms, MILTER_STAGE_RCPT, "b@x", reply, sizeof(reply)), MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_MAIL, NULL, reply, sizeof(reply)), MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_RCPT, "c@x", reply, sizeof(reply)), MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_MAIL, NULL, reply, sizeof(reply)), MILTER_ACCEPT);
	assert_null(milter_session_refusal(ms, NULL));
	milter_session_free(&ms);
	pthread_join(th, NULL);
	close(f.lfd);
	/* RCPT c@x was not sent: the milter had accepted that transaction at MAIL */
	assert_string_equal(f.log, "OCHMRRAMAMQ");
}

/* A refusal at HELO is the reply to HELO and refuses every later transaction, without asking
 * the milter again. */
static void test_helo_refusal_stands(void **state)
{
	(void)state;
	struct fake2 f = { .replies = "cr" };
	pthread_t th;
	struct milter_session *ms = fake2_session(&f, &th);
	char reply[MILTER_REPLY_MAX];
	enum milter_verdict v;
	assert_int_equal(stage(ms, MILTER_STAGE_CONNECT, NULL, reply, sizeof(reply)),
			 MILTER_ACCEPT);
	assert_int_equal(stage(ms, MILTER_STAGE_HELO, NULL, reply, sizeof(reply)), MILTER_REJECT);
	assert_non_null(milter_session_refusal(ms, &v));
	assert_int_equal(v, MILTER_REJECT);
	assert_string_equal(milter_session_refusal(ms, NULL), reply);
	assert_int_equal(stage(ms, MILTER_STAGE_MAIL, NULL, reply, sizeof(reply)), MILTER_REJECT);
	assert_memory_equal(reply, "550 5.7.1 ", 10);
	milter_session_free(&ms);
	pthread_join(th, NULL);
	close(f.lfd);
	assert_string_equal(f.log, "OCHQ");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_check),
		cmocka_unit_test(test_reply_long),
		cmocka_unit_test(test_apply_edits),
		cmocka_unit_test(test_apply_edits_edges),
		cmocka_unit_test(test_parse_list),
		cmocka_unit_test(test_hostile_negotiation),
		cmocka_unit_test(test_reject_at_connect),
		cmocka_unit_test(test_stages),
		cmocka_unit_test(test_helo_refusal_stands),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
