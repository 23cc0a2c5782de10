/* test-phish.c - unit tests for the phishing signs and the mark (phish.c).
 *
 * Table-driven: {header section, expected reasons}. Inputs are copied to allocations of exactly
 * their size so ASan catches any overread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"
#include "phish.h"

static const char *const hosted[] = { "tim.it", "example-provider.com", "xn--bcher-kva.example" };

/* A copy of s in an allocation of exactly its length (at least 1). */
static char *exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

/* phish_check on a header given as a string. */
static unsigned check(const struct phish_policy *p, const char *hdr, struct phish_verdict *v)
{
	size_t n = strlen(hdr);
	char *in = exact(hdr, n);
	unsigned r = phish_check(p, in, n, v);
	free(in);
	return r;
}

/* Each row: a header section and the reasons it must give. */
static void test_check_table(void **state)
{
	(void)state;
	static const struct { const char *hdr; unsigned want; int reply_elsewhere; } rows[] = {
		/* clean mail */
		{ "From: Alice <alice@elsewhere.example>\r\nSubject: hi\r\n\r\n", 0, 0 },
		{ "From: alice@elsewhere.example\r\n\r\n", 0, 0 },
		/* the provider's own mail: not flagged */
		{ "From: TIM Assistenza <assistenza@tim.it>\r\n\r\n", 0, 0 },
		{ "From: TIM <news@mail.tim.it>\r\n\r\n", 0, 0 },
		/* display names */
		{ "From: TIM Assistenza <x@elsewhere.example>\r\n\r\n", PHISH_DISPLAY_NAME, 0 },
		{ "From: \"support@tim.it\" <x@evil.example>\r\n\r\n", PHISH_DISPLAY_NAME, 0 },
		{ "From: =?utf-8?b?VElNIEFzc2lzdGVuemE=?= <x@evil.example>\r\n\r\n",
		  PHISH_DISPLAY_NAME, 0 },
		{ "From: \"=?utf-8?q?Servizio_Clienti_TIM?=\" <x@evil.example>\r\n\r\n",
		  PHISH_DISPLAY_NAME, 0 },
		/* a Cyrillic I (U+0406) in the name */
		{ "From: =?utf-8?b?VNCGTQ==?= Assistenza <x@evil.example>\r\n\r\n",
		  PHISH_DISPLAY_NAME, 0 },
		/* folded, obsolete "From :" */
		{ "From :\r\n \"Acme\r\n Bank\" <x@evil.example>\r\n\r\n", PHISH_DISPLAY_NAME, 0 },
		{ "From: Example-Provider Billing <billing@evil.example>\r\n\r\n",
		  PHISH_DISPLAY_NAME, 0 },
		/* "tim" inside another word is no imitation */
		{ "From: Timothy <t@elsewhere.example>\r\n\r\n", 0, 0 },
		{ "From: Optimal Times <t@elsewhere.example>\r\n\r\n", 0, 0 },
		/* lookalike domains */
		{ "From: a@tirn.it\r\n\r\n", PHISH_LOOKALIKE, 0 },
		{ "From: a@tlm.it\r\n\r\n", PHISH_LOOKALIKE, 0 },
		{ "From: a@example-provlder.com\r\n\r\n", PHISH_LOOKALIKE, 0 },
		{ "From: a@exmaple-provider.com\r\n\r\n", PHISH_LOOKALIKE, 0 },
		{ "From: a@tim.it.evil.example\r\n\r\n", PHISH_LOOKALIKE, 0 },
		/* t + Cyrillic i + m: mixed script and a lookalike of tim.it */
		{ "From: a@xn--tm-hoc.it\r\n\r\n", PHISH_LOOKALIKE | PHISH_MIXED_SCRIPT, 0 },
		/* all-Cyrillic "аррӏе" under .com: reads as "apple" */
		{ "From: a@xn--80ak6aa92e.com\r\n\r\n", PHISH_LOOKALIKE, 0 },
		/* genuine IDNs in one script */
		{ "From: a@xn--bcher-kva.de\r\n\r\n", 0, 0 },
		{ "From: a@xn--e1afmkfd.xn--p1ai\r\n\r\n", 0, 0 },
		{ "From: a@xn--r8jz45g.jp\r\n\r\n", 0, 0 },
		/* hosted IDN domain is ours */
		{ "From: a@xn--bcher-kva.example\r\n\r\n", 0, 0 },
		/* Reply-To */
		{ "From: a@shop.example\r\nReply-To: b@collect.example\r\n\r\n", 0, 1 },
		{ "From: a@shop.example\r\nReply-To: b@mail.shop.example\r\n\r\n", 0, 0 },
		{ "From: a@news.shop.co.uk\r\nReply-To: b@help.shop.co.uk\r\n\r\n", 0, 0 },
		{ "From: a@shop.co.uk\r\nReply-To: b@other.co.uk\r\n\r\n", 0, 1 },
		{ "From: a@shop.example\r\nReply-To: b@shop.example, c@else.example\r\n\r\n", 0, 1 },
		/* Reply-To to a lookalike */
		{ "From: a@shop.example\r\nReply-To: b@tirn.it\r\n\r\n", PHISH_LOOKALIKE, 1 },
		/* malformed: nothing to read, no crash */
		{ "From: <<<\r\n\r\n", 0, 0 },
		{ "", 0, 0 },
	};
	const char *brands = "TIM, Acme Bank,Servizio Clienti";
	struct phish_policy *p = phish_policy_new(brands, hosted, 3, 2);
	assert_non_null(p);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct phish_verdict v;
		unsigned got = check(p, rows[i].hdr, &v);
		if (got != rows[i].want || v.reply_to_elsewhere != rows[i].reply_elsewhere)
			fail_msg("row %zu (%s): reasons %#x want %#x, reply-to %d want %d", i,
				 rows[i].hdr, got, rows[i].want, v.reply_to_elsewhere,
				 rows[i].reply_elsewhere);
	}
	phish_policy_free(&p);
	assert_null(p);
}

/* What the verdict names, and the header value built from it. */
static void test_describe(void **state)
{
	(void)state;
	struct phish_policy *p = phish_policy_new("TIM", hosted, 3, 2);
	struct phish_verdict v;
	char out[PHISH_REASON_MAX];
	assert_int_equal(check(p, "From: TIM <a@tirn.it>\r\nReply-To: z@else.example\r\n\r\n", &v),
			 PHISH_DISPLAY_NAME | PHISH_LOOKALIKE);
	assert_string_equal(v.from, "a@tirn.it");
	assert_string_equal(v.lookalike, "tirn.it");
	assert_string_equal(v.lookalike_of, "tim.it");
	assert_string_equal(v.display_hit, "TIM");
	assert_string_equal(v.reply_domain, "else.example");
	v.reasons |= PHISH_REPLY_TO;
	phish_describe(&v, out, sizeof(out));
	assert_non_null(strstr(out, "display-name (the sender's name imitates TIM)"));
	assert_non_null(strstr(out, "lookalike-domain (tirn.it looks like tim.it)"));
	assert_non_null(strstr(out, "reply-to-elsewhere (first message from a@tirn.it, replies go "
				    "to else.example)"));
	/* items are folded, every line but the first starts with a tab, all ASCII */
	for (const char *s = out; *s; s++) {
		assert_true((unsigned char)*s < 0x7f);
		if (*s == '\n')
			assert_int_equal(s[1], '\t');
	}
	phish_policy_free(&p);
}

/* Damerau-Levenshtein. */
static void test_distance(void **state)
{
	(void)state;
	assert_int_equal(phish_distance("tim.it", 6, "tim.it", 6, 2), 0);
	assert_int_equal(phish_distance("tim.it", 6, "itm.it", 6, 2), 1);   /* transposition */
	assert_int_equal(phish_distance("tim.it", 6, "tm.it", 5, 2), 1);
	assert_int_equal(phish_distance("tim.it", 6, "tiim.itt", 8, 2), 2);
	assert_int_equal(phish_distance("tim.it", 6, "abc.de", 6, 2), 3);   /* capped */
	assert_int_equal(phish_distance("", 0, "abcd", 4, 1), 2);
}

struct sink {
	struct buf b;
};

/* phish_rewrite's emit into a buffer. */
static int sink_emit(void *ctx, const char *p, size_t n)
{
	struct sink *s = ctx;
	return buf_append(&s->b, p, n);
}

/* Rewrite msg with mode and return the result (caller frees). */
static char *rewrite(const char *msg, size_t prefix, enum phish_mark_mode mode, const char *reason,
		     unsigned *applied)
{
	struct phish_mark m = { mode, "[Suspicious]", "WARNING: this may be phishing.", reason };
	struct sink s;
	size_t n = strlen(msg);
	char *in = exact(msg, n);
	buf_init(&s.b, 1 << 20);
	assert_int_equal(phish_rewrite(in, n, prefix, &m, sink_emit, &s, applied), 0);
	free(in);
	char *out = strndup(s.b.data ? s.b.data : "", s.b.len);
	buf_free(&s.b);
	return out;
}

/* The mark in each mode and each kind of body. */
static void test_rewrite(void **state)
{
	(void)state;
	unsigned ap;
	const char *trace = "Received: by us\r\n";
	char msg[4096];
	/* a forged X-Postino-Phishing is removed even with no finding */
	snprintf(msg, sizeof(msg), "%sX-Postino-Phishing: none\r\nFrom: a@b.example\r\n"
		 "x-postino-phishing : none\r\n\r\nHello\r\n", trace);
	char *out = rewrite(msg, strlen(trace), PHISH_MARK_BOTH, NULL, &ap);
	assert_string_equal(out, "Received: by us\r\nFrom: a@b.example\r\n\r\nHello\r\n");
	assert_int_equal(ap, 0);
	free(out);
	/* both: header field first, subject tagged, warning atop the plain body */
	snprintf(msg, sizeof(msg), "%sFrom: a@b.example\r\nSubject: Pay now\r\n\r\nHello\r\n", trace);
	out = rewrite(msg, strlen(trace), PHISH_MARK_BOTH, "lookalike-domain (x)", &ap);
	assert_string_equal(out, "Received: by us\r\nX-Postino-Phishing: lookalike-domain (x)\r\n"
			    "From: a@b.example\r\nSubject: [Suspicious] Pay now\r\n\r\n"
			    "WARNING: this may be phishing.\r\n\r\nHello\r\n");
	assert_int_equal(ap, PHISH_APPLIED_SUBJECT | PHISH_APPLIED_BODY);
	free(out);
	/* header only */
	out = rewrite(msg, strlen(trace), PHISH_MARK_HEADER, "r", &ap);
	assert_non_null(strstr(out, "\r\nSubject: Pay now\r\n\r\nHello\r\n"));
	assert_non_null(strstr(out, "X-Postino-Phishing: r\r\n"));
	assert_int_equal(ap, 0);
	free(out);
	/* subject only, no Subject field: one is added */
	snprintf(msg, sizeof(msg), "From: a@b.example\r\n\r\nHello\r\n");
	out = rewrite(msg, 0, PHISH_MARK_SUBJECT, "r", &ap);
	assert_string_equal(out, "X-Postino-Phishing: r\r\nFrom: a@b.example\r\n"
			    "Subject: [Suspicious]\r\n\r\nHello\r\n");
	free(out);
	/* quoted-printable: the warning is encoded */
	snprintf(msg, sizeof(msg), "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: text/plain; charset=utf-8\r\n"
		 "Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9\r\n");
	struct phish_mark m = { PHISH_MARK_BODY, "[S]", "Attenzione: \xc3\xa8 phishing = truffa",
				"r" };
	struct sink s;
	buf_init(&s.b, 1 << 20);
	assert_int_equal(phish_rewrite(msg, strlen(msg), 0, &m, sink_emit, &s, &ap), 0);
	assert_int_equal(ap, PHISH_APPLIED_BODY);
	assert_non_null(strstr(s.b.data, "\r\n\r\nAttenzione: =C3=A8 phishing =3D truffa\r\n\r\n"
				       "Caf=C3=A9\r\n"));
	assert_non_null(strstr(s.b.data, "Subject: x\r\n"));
	buf_free(&s.b);
	/* base64 text: falls back to the subject tag */
	snprintf(msg, sizeof(msg), "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n");
	out = rewrite(msg, 0, PHISH_MARK_BODY, "r", &ap);
	assert_int_equal(ap, PHISH_APPLIED_SUBJECT);
	assert_non_null(strstr(out, "Subject: [Suspicious] x\r\n"));
	assert_non_null(strstr(out, "\r\n\r\nSGVsbG8=\r\n"));
	free(out);
	/* multipart/mixed: the first text/plain part gets it */
	snprintf(msg, sizeof(msg), "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\npreamble\r\n--BB\r\n"
		 "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nBody text\r\n--BB\r\n"
		 "Content-Type: application/pdf\r\n\r\nxx\r\n--BB--\r\n");
	out = rewrite(msg, 0, PHISH_MARK_BODY, "r", &ap);
	assert_int_equal(ap, PHISH_APPLIED_BODY);
	assert_non_null(strstr(out, "charset=iso-8859-1\r\n\r\nWARNING: this may be phishing.\r\n"
				    "\r\nBody text\r\n--BB\r\n"));
	free(out);
	/* multipart/alternative: body and subject */
	snprintf(msg, sizeof(msg), "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: multipart/alternative; boundary=BB\r\n\r\n--BB\r\n"
		 "Content-Type: text/plain\r\n\r\nplain\r\n--BB\r\n"
		 "Content-Type: text/html\r\n\r\n<p>html</p>\r\n--BB--\r\n");
	out = rewrite(msg, 0, PHISH_MARK_BODY, "r", &ap);
	assert_int_equal(ap, PHISH_APPLIED_BODY | PHISH_APPLIED_SUBJECT);
	free(out);
	/* multipart/signed: never touched inside, subject instead */
	snprintf(msg, sizeof(msg), "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
		 "Content-Type: multipart/signed; boundary=BB; protocol=\"application/pgp-"
		 "signature\"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nsigned\r\n--BB\r\n"
		 "Content-Type: application/pgp-signature\r\n\r\nsig\r\n--BB--\r\n");
	out = rewrite(msg, 0, PHISH_MARK_BODY, "r", &ap);
	assert_int_equal(ap, PHISH_APPLIED_SUBJECT);
	assert_non_null(strstr(out, "\r\n\r\nsigned\r\n"));
	free(out);
	/* a message without a body: no warning can go in, subject instead */
	out = rewrite("From: a@b.example\r\nSubject: x\r\n", 0, PHISH_MARK_BODY, "r", &ap);
	assert_int_equal(ap, PHISH_APPLIED_SUBJECT);
	assert_string_equal(out, "X-Postino-Phishing: r\r\nFrom: a@b.example\r\n"
			    "Subject: [Suspicious] x\r\n");
	free(out);
	/* tagged once only */
	out = rewrite("Subject: [Suspicious] x\r\n\r\nb\r\n", 0, PHISH_MARK_SUBJECT, "r", &ap);
	assert_non_null(strstr(out, "Subject: [Suspicious] x\r\n"));
	assert_null(strstr(out, "[Suspicious] [Suspicious]"));
	free(out);
	/* a non-ASCII tag is an encoded-word; a non-ASCII warning stays out of a 7bit part */
	struct phish_mark m2 = { PHISH_MARK_BOTH, "[Sospett\xc3\xb2]", "\xc3\xa8 phishing", "r" };
	buf_init(&s.b, 1 << 20);
	const char *m7 = "Subject: x\r\n\r\nbody\r\n";
	assert_int_equal(phish_rewrite(m7, strlen(m7), 0, &m2, sink_emit, &s, &ap), 0);
	assert_int_equal(ap, PHISH_APPLIED_SUBJECT);
	assert_non_null(strstr(s.b.data, "Subject: =?utf-8?b?W1Nvc3BldHTDsl0=?= x\r\n"));
	buf_free(&s.b);
}

/* Display names come out of addr_parse_list_named raw. */
static void display_cb(void *ctx, const char *display, size_t n, const char *address)
{
	struct buf *b = ctx;
	buf_appendf(b, "[%.*s|%s]", (int)n, display, address);
}

/* addr_parse_list_named. */
static void test_named(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 4096);
	const char *l = "\"A, B\" <a@x.example>, c@y.example, G: Dee Ee <d@z.example>;, "
			"=?utf-8?q?x?= <e@w.example>";
	assert_int_equal(addr_parse_list_named(l, strlen(l), display_cb, &b), 4);
	assert_string_equal(b.data, "[\"A, B\"|a@x.example][|c@y.example][Dee Ee|d@z.example]"
				    "[=?utf-8?q?x?=|e@w.example]");
	buf_free(&b);
}

/* Test runner. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_table),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_distance),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
