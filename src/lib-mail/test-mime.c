/* test-mime.c - unit tests for the mime*.c MIME parser (BODYSTRUCTURE, ENVELOPE, sections).
 *
 * Golden files: mime-corpus/NAME.eml is a message, NAME.bodystructure.ref / NAME.body.ref /
 * NAME.envelope.ref hold the expected IMAP output, worked out by hand from RFC 3501 7.4.2
 * (sizes are those of the body as RFC 2046 delimits it). The corpus directory is found through
 * $MIME_CORPUS, else next to this source file, else relative to the current directory.
 * Every input is copied to an allocation of exactly its size so ASan catches any overread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mime.h"

#define OUT_MAX (1u << 26)

static char corpus[512];

/* Does dir hold the corpus? */
static int corpus_try(const char *dir)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/m01-plain-no-ctype.eml", dir);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return 0;
	fclose(f);
	snprintf(corpus, sizeof(corpus), "%s", dir);
	return 1;
}

/* Find the corpus directory once. */
static int corpus_find(void **state)
{
	(void)state;
	const char *env = getenv("MIME_CORPUS");
	char here[512];
	snprintf(here, sizeof(here), "%s", __FILE__);
	char *slash = strrchr(here, '/');
	if (slash != NULL)
		snprintf(slash, sizeof(here) - (size_t)(slash - here), "/mime-corpus");
	else
		snprintf(here, sizeof(here), "mime-corpus");
	if ((env != NULL && corpus_try(env)) || corpus_try(here) ||
	    corpus_try("src/lib-mail/mime-corpus") || corpus_try("../src/lib-mail/mime-corpus") ||
	    corpus_try("mime-corpus"))
		return 0;
	fprintf(stderr, "mime-corpus not found; set MIME_CORPUS\n");
	return -1;
}

/* Read corpus file NAME.EXT into an exact-size allocation; NULL if it does not exist. */
static char *load(const char *name, const char *ext, size_t *len_r)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s.%s", corpus, name, ext);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	assert_true(n >= 0);
	char *p = malloc((size_t)n > 0 ? (size_t)n : 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len_r = (size_t)n;
	return p;
}

/* Copy s[0..n) to an exact-size allocation. */
static char *dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

/* Compare got with the reference bytes, printing both on a mismatch. */
static void expect_ref(const char *what, const char *got, size_t glen, const char *want,
		       size_t wlen)
{
	if (glen != wlen || memcmp(got, want, glen) != 0) {
		size_t i = 0;
		while (i < glen && i < wlen && got[i] == want[i])
			i++;
		fprintf(stderr, "%s mismatch at offset %zu\n got: %.*s\nwant: %.*s\n", what, i,
			(int)glen, got, (int)wlen, want);
		fail();
	}
}

static const char *const corpus_names[] = {
	"m01-plain-no-ctype", "m02-nested-alternative", "m03-rfc2231", "m04-broken-headers",
	"m05-no-blank-line", "m06-8bit", "m07-forwarded", "m08-missing-final-boundary",
	"m09-digest-garbage", "m10-addresses", "m11-bare-lf",
};

/* Every corpus message gives exactly the hand-written BODYSTRUCTURE, BODY and ENVELOPE. */
static void test_corpus(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(corpus_names) / sizeof(corpus_names[0]); i++) {
		const char *name = corpus_names[i];
		size_t len, rlen;
		char *msg = load(name, "eml", &len), *ref;
		assert_non_null(msg);
		struct mime_part *root = mime_parse(msg, len);
		assert_non_null(root);
		struct buf out;
		buf_init(&out, OUT_MAX);

		ref = load(name, "bodystructure.ref", &rlen);
		assert_non_null(ref);
		assert_int_equal(mime_bodystructure(root, msg, 1, &out), 0);
		expect_ref(name, out.data, out.len, ref, rlen);
		free(ref);

		if ((ref = load(name, "body.ref", &rlen)) != NULL) {
			buf_reset(&out);
			assert_int_equal(mime_bodystructure(root, msg, 0, &out), 0);
			expect_ref(name, out.data, out.len, ref, rlen);
			free(ref);
		}
		ref = load(name, "envelope.ref", &rlen);
		assert_non_null(ref);
		buf_reset(&out);
		assert_int_equal(mime_envelope(msg, mime_header_len(msg, len), &out), 0);
		expect_ref(name, out.data, out.len, ref, rlen);
		free(ref);

		/* a buffer that is one octet too small is refused, never overrun */
		size_t full = out.len;
		struct buf small;
		buf_init(&small, full - 1);
		assert_int_equal(mime_envelope(msg, mime_header_len(msg, len), &small), -1);
		buf_free(&small);

		buf_free(&out);
		mime_free(&root);
		assert_null(root);
		free(msg);
	}
}

struct sec_case {
	const char *section;
	int ret;
	const char *want;	/* NULL: don't compare (ret != 0) */
};

/* Run section rows against one corpus message. */
static void run_sections(const char *name, const struct sec_case *cases, size_t n)
{
	size_t len;
	char *msg = load(name, "eml", &len);
	assert_non_null(msg);
	struct mime_part *root = mime_parse(msg, len);
	assert_non_null(root);
	struct buf tmp;
	buf_init(&tmp, 65536);
	for (size_t i = 0; i < n; i++) {
		const char *d = NULL;
		size_t l = 99;
		char *sec = dup_exact(cases[i].section, strlen(cases[i].section) + 1);
		int r = mime_section(root, msg, len, sec, &tmp, &d, &l);
		if (r != cases[i].ret)
			fprintf(stderr, "%s [%s]: ret %d want %d\n", name, sec, r, cases[i].ret);
		assert_int_equal(r, cases[i].ret);
		if (r == 1)
			assert_int_equal(l, 0);
		if (cases[i].want != NULL)
			expect_ref(sec, d, l, cases[i].want, strlen(cases[i].want));
		free(sec);
	}
	buf_free(&tmp);
	mime_free(&root);
	free(msg);
}

/* BODY[section] on the forwarded message: part numbers into message/rfc822, MIME, fields. */
static void test_section_forwarded(void **state)
{
	(void)state;
	static const struct sec_case cases[] = {
		{ "1", 0, "See the forwarded message below.\r\n" },
		{ "1.MIME", 0, "Content-Type: text/plain; charset=us-ascii\r\n\r\n" },
		{ "2.MIME", 0, "Content-Type: message/rfc822\r\nContent-Description: Forwarded "
			       "message\r\nContent-Disposition: inline\r\n\r\n" },
		{ "2.HEADER", 0,
		  "From: Alice <alice@example.org>\r\nTo: carol@example.net\r\n"
		  "Subject: Meeting notes\r\nDate: Sat, 8 Jun 2024 16:00:00 +0000\r\n"
		  "Message-ID: <orig-1@example.org>\r\nMIME-Version: 1.0\r\n"
		  "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n" },
		{ "2.TEXT", 0, "--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
			       "Notes: ship it.\r\n--inner\r\nContent-Type: text/html; "
			       "charset=us-ascii\r\n\r\n<p>Notes: ship it.</p>\r\n--inner--\r\n" },
		{ "2.1", 0, "Notes: ship it." },
		{ "2.2", 0, "<p>Notes: ship it.</p>" },
		{ "2.2.MIME", 0, "Content-Type: text/html; charset=us-ascii\r\n\r\n" },
		{ "2.HEADER.FIELDS (Subject From)", 0,
		  "From: Alice <alice@example.org>\r\nSubject: Meeting notes\r\n\r\n" },
		{ "2.header.fields.not (to FROM date Message-ID MIME-Version content-type)", 0,
		  "Subject: Meeting notes\r\n\r\n" },
		{ "HEADER.FIELDS (\"Message-ID\" In-Reply-To)", 0,
		  "Message-ID: <fwd-1@example.net>\r\nIn-Reply-To: <orig-1@example.org>\r\n\r\n" },
		{ "HEADER.FIELDS (X-Absent)", 0, "\r\n" },
		{ "header.fields.not (From To Subject Date Message-ID In-Reply-To MIME-Version)", 0,
		  "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" },
		{ "3", 1, NULL },
		{ "2.3", 1, NULL },
		{ "1.1", 1, NULL },
		{ "1.HEADER", 1, NULL },
		{ "1.TEXT", 1, NULL },
		{ "2.1.1", 1, NULL },
		{ "2.1.HEADER", 1, NULL },
		{ "99999999999999999999", 1, NULL },
		/* syntax errors */
		{ "0", -1, NULL }, { "01", -1, NULL }, { "1.", -1, NULL }, { ".1", -1, NULL },
		{ "1..2", -1, NULL }, { "MIME", -1, NULL }, { "1.MIMEX", -1, NULL },
		{ "TEXT.1", -1, NULL }, { "HEADER.FIELDS", -1, NULL },
		{ "HEADER.FIELDS ()", -1, NULL }, { "HEADER.FIELDS (From", -1, NULL },
		{ "HEADER.FIELDS(From)", -1, NULL }, { "HEADER.FIELDS (From) x", -1, NULL },
		{ "HEADER.FIELDS (Fr\"om)", -1, NULL }, { "HEADER ", -1, NULL },
		{ "1.2x", -1, NULL }, { "BODY", -1, NULL }, { "-1", -1, NULL },
	};
	run_sections("m07-forwarded", cases, sizeof(cases) / sizeof(cases[0]));
}

#define M01_BODY "Hi Bob,\r\n\r\nare you free for lunch on Friday?\r\n\r\n-- \r\nAlice\r\n"

/* A message that is not multipart has only part 1, its body; "" is the whole message. */
static void test_section_single(void **state)
{
	(void)state;
	static const struct sec_case cases[] = {
		{ "1", 0, M01_BODY },
		{ "TEXT", 0, M01_BODY },
		{ "HEADER.FIELDS (CC Subject)", 0,
		  "Cc: Dave <dave@example.com>\r\nSubject: Lunch on Friday?\r\n\r\n" },
		{ "HEADER.FIELDS (Received)", 0,
		  "Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n"
		  "\tby mx.example.net with ESMTPS id 4Xy2; Tue, 4 Jun 2024 09:12:01 +0000"
		  "\r\n\r\n" },
		{ "2", 1, NULL },
		{ "1.1", 1, NULL },
	};
	run_sections("m01-plain-no-ctype", cases, sizeof(cases) / sizeof(cases[0]));

	static const struct sec_case nohdr[] = {
		{ "TEXT", 0, "" },
		{ "1", 0, "" },
		{ "HEADER", 0, "From: nobody@example.com\r\nSubject: headers only\r\n"
			       "Date: Fri, 7 Jun 2024 00:00:00 +0000\r\n" },
		{ "HEADER.FIELDS (subject)", 0, "Subject: headers only\r\n\r\n" },
	};
	run_sections("m05-no-blank-line", nohdr, sizeof(nohdr) / sizeof(nohdr[0]));

	static const struct sec_case digest[] = {
		{ "1.MIME", 0, "\r\n" },
		{ "1", 0, "From: a@example.com\r\nSubject: one\r\n\r\nfirst" },
		{ "1.HEADER", 0, "From: a@example.com\r\nSubject: one\r\n\r\n" },
		{ "1.TEXT", 0, "first" },
		{ "1.1", 0, "first" },
		{ "2", 0, "second" },
		{ "3", 0, "no boundary here" },
		{ "3.1", 1, NULL },
	};
	run_sections("m09-digest-garbage", digest, sizeof(digest) / sizeof(digest[0]));

	/* whole message, and HEADER/TEXT split exactly at the blank line */
	size_t len;
	char *msg = load("m07-forwarded", "eml", &len);
	struct mime_part *root = mime_parse(msg, len);
	struct buf tmp;
	buf_init(&tmp, 16);
	const char *d, *h, *t;
	size_t l, hl, tl;
	assert_int_equal(mime_section(root, msg, len, "", &tmp, &d, &l), 0);
	assert_ptr_equal(d, msg);
	assert_int_equal(l, len);
	assert_int_equal(mime_section(root, msg, len, "HEADER", &tmp, &h, &hl), 0);
	assert_int_equal(mime_section(root, msg, len, "text", &tmp, &t, &tl), 0);
	assert_ptr_equal(h, msg);
	assert_int_equal(hl, mime_header_len(msg, len));
	assert_ptr_equal(t, msg + hl);
	assert_int_equal(hl + tl, len);
	/* tmp too small for the built header fields */
	assert_int_equal(mime_section(root, msg, len, "HEADER.FIELDS (Content-Type)", &tmp, &d, &l),
			 -2);
	buf_free(&tmp);
	mime_free(&root);
	free(msg);
}

/* HEADER.FIELDS of a header whose last line has no line end still ends in CRLF CRLF. */
static void test_section_fields_noeol(void **state)
{
	(void)state;
	static const char src[] = "Subject: x\r\nFrom: a@b";
	char *msg = dup_exact(src, sizeof(src) - 1);
	struct mime_part *root = mime_parse(msg, sizeof(src) - 1);
	struct buf tmp;
	buf_init(&tmp, 1024);
	const char *d;
	size_t l;
	assert_int_equal(mime_section(root, msg, sizeof(src) - 1, "HEADER.FIELDS (From)", &tmp,
				      &d, &l), 0);
	expect_ref("noeol", d, l, "From: a@b\r\n\r\n", 13);
	assert_int_equal(mime_section(root, msg, sizeof(src) - 1, "HEADER.FIELDS.NOT (From)",
				      &tmp, &d, &l), 0);
	expect_ref("noeol-not", d, l, "Subject: x\r\n\r\n", 14);
	buf_free(&tmp);
	mime_free(&root);
	free(msg);
}

/* Decode BINARY[section] of rel and compare with want[0..wlen). */
static void expect_binary(const char *name, const char *sec, int ret, const char *want,
			  size_t wlen)
{
	size_t len;
	char *msg = load(name, "eml", &len);
	assert_non_null(msg);
	struct mime_part *root = mime_parse(msg, len);
	struct buf out;
	buf_init(&out, OUT_MAX);
	int r = mime_binary(root, msg, len, sec, &out);
	if (r != ret)
		fprintf(stderr, "%s BINARY[%s]: %d want %d\n", name, sec, r, ret);
	assert_int_equal(r, ret);
	if (want != NULL)
		expect_ref(sec, out.data, out.len, want, wlen);
	buf_free(&out);
	mime_free(&root);
	free(msg);
}

/* BINARY[]: quoted-printable, base64, identity, unknown encodings, bad sections. */
static void test_binary(void **state)
{
	(void)state;
	static const char plain[] = "Hallo zusammen,\r\n\r\n"
				    "anbei der Bericht f\xc3\xbcr Q2.\r\n\r\n"
				    "Gr\xc3\xbc\xc3\x9f" "e\r\nJ\xc3\xb6rg";
	static const char html[] = "<html><body><p>Hallo zusammen,</p><p>anbei der Bericht "
				   "f\xc3\xbcr Q2.</p></body></html>";
	expect_binary("m02-nested-alternative", "1.1", 0, plain, sizeof(plain) - 1);
	expect_binary("m02-nested-alternative", "1.2", 0, html, sizeof(html) - 1);
	size_t pl;
	char *pdf = load("m02-nested-alternative", "part2.bin", &pl);
	assert_non_null(pdf);
	expect_binary("m02-nested-alternative", "2", 0, pdf, pl);
	free(pdf);
	expect_binary("m03-rfc2231", "2", 0, "Hello, world!", 13);
	static const char latin[] = "Liebe Ana,\r\nviele Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln "
				    "\xe2\x80\x93 bis bald!\r\nZo\xc3\xab\r\n";
	expect_binary("m06-8bit", "1", 0, latin, sizeof(latin) - 1);
	expect_binary("m07-forwarded", "2.1", 0, "Notes: ship it.", 15);
	expect_binary("m04-broken-headers", "1", 0, "Body after broken headers.\r\n", 28);
	expect_binary("m07-forwarded", "3", 1, NULL, 0);
	expect_binary("m07-forwarded", "1.MIME", -2, NULL, 0);
	expect_binary("m07-forwarded", "HEADER", -2, NULL, 0);
	expect_binary("m07-forwarded", "0", -2, NULL, 0);

	static const char uu[] = "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode"
				 "\r\n\r\nbegin 644 x\r\n`\r\nend\r\n";
	char *msg = dup_exact(uu, sizeof(uu) - 1);
	struct mime_part *root = mime_parse(msg, sizeof(uu) - 1);
	struct buf out;
	buf_init(&out, 1024);
	assert_int_equal(mime_binary(root, msg, sizeof(uu) - 1, "1", &out), -1);
	assert_int_equal(mime_binary(root, msg, sizeof(uu) - 1, "", &out), 0);
	assert_int_equal(out.len, sizeof(uu) - 1);
	buf_free(&out);
	buf_init(&out, 4);
	assert_int_equal(mime_binary(root, msg, sizeof(uu) - 1, "", &out), -3);
	buf_free(&out);
	mime_free(&root);
	free(msg);

	/* quoted-printable details: soft breaks, trailing blanks, lower-case hex, bad '=' */
	static const char qp[] = "Content-Transfer-Encoding: Quoted-Printable\r\n\r\n"
				 "a=3db=3D \t\r\nsoft=\r\nbreak= \r\n=ZZ=4=\r\nend";
	msg = dup_exact(qp, sizeof(qp) - 1);
	root = mime_parse(msg, sizeof(qp) - 1);
	buf_init(&out, 1024);
	assert_int_equal(mime_binary(root, msg, sizeof(qp) - 1, "1", &out), 0);
	expect_ref("qp", out.data, out.len, "a=b=\r\nsoftbreak=ZZ=4end", 23);
	buf_free(&out);
	mime_free(&root);
	free(msg);
}

/* mime_text_utf8 of msg[0..len) section sec: return value and the octets appended. */
static void expect_text_utf8(const char *raw, const char *sec, int ret, const char *want)
{
	size_t len = strlen(raw);
	char *msg = dup_exact(raw, len);
	struct mime_part *root = mime_parse(msg, len);
	struct buf out;
	buf_init(&out, 1024);
	assert_int_equal(mime_text_utf8(root, msg, len, sec, &out), ret);
	if (want != NULL)
		expect_ref(sec, out.data ? out.data : "", out.len, want, strlen(want));
	buf_free(&out);
	mime_free(&root);
	free(msg);
}

/* mime_text_utf8: text parts in other charsets become UTF-8; UTF-8, US-ASCII, unknown
 * charsets and non-text parts are left as mime_binary gives them. */
static void test_text_utf8(void **state)
{
	(void)state;
	expect_text_utf8("Content-Type: text/plain; charset=iso-8859-1\r\n\r\nPerch\xe9", "1", 0,
			 "Perch\xc3\xa9");
	expect_text_utf8("Content-Type: text/plain; charset=\"Windows-1252\"\r\n"
			 "Content-Transfer-Encoding: quoted-printable\r\n\r\n=80 5", "1", 0,
			 "\xe2\x82\xac 5");
	expect_text_utf8("Content-Type: text/plain; charset=utf-8\r\n\r\nPerch\xe9", "1", 0,
			 "Perch\xe9");
	expect_text_utf8("Content-Type: text/plain; charset=x-unknown-cs\r\n\r\nPerch\xe9", "1", 0,
			 "Perch\xe9");
	expect_text_utf8("Content-Type: application/octet-stream; charset=iso-8859-1\r\n\r\n\xe9",
			 "1", 0, "\xe9");
	expect_text_utf8("Content-Type: text/plain; charset=iso-8859-1\r\n\r\n", "1", 0, "");
	expect_text_utf8("Content-Type: text/plain; charset=iso-8859-1\r\n\r\nx", "2", 1, "");
}

/* mime_header_get, mime_header_len and mime_decode_words. */
static void test_header_helpers(void **state)
{
	(void)state;
	size_t len;
	char *msg = load("m10-addresses", "eml", &len);
	struct buf out;
	buf_init(&out, 4096);
	size_t hl = mime_header_len(msg, len);
	assert_int_equal(hl, len - 6);
	assert_int_equal(mime_header_get(msg, hl, "cc", &out), 1);
	assert_string_equal(out.data, "Friends: \"Ann A.\" <ann@example.org>, bob@example.org;, "
				      "<@relay.example,@gw.example:carl@example.net>");
	buf_reset(&out);
	assert_int_equal(mime_header_get(msg, hl, "Subject", &out), 1);
	assert_int_equal(out.len, 0);
	assert_int_equal(mime_header_get(msg, hl, "Sender", &out), 0);
	assert_int_equal(mime_header_get(msg, hl, "body", &out), 0);
	free(msg);
	assert_int_equal(mime_header_len("\r\nbody", 6), 2);
	assert_int_equal(mime_header_len("A: b\nC: d\n\nx", 12), 11);
	assert_int_equal(mime_header_len("A: b", 4), 4);
	assert_int_equal(mime_header_len("", 0), 0);

	static const struct {
		const char *in, *want;
	} words[] = {
		{ "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <j@x>", "J\xc3\xb6rg M\xc3\xbcller <j@x>" },
		{ "=?UTF-8?B?UXVhcnRhbHNiZXJpY2h0IMOcYmVyc2ljaHQ=?=",
		  "Quartalsbericht \xc3\x9c" "bersicht" },
		{ "=?iso-8859-1?q?caf=E9?= ok", "caf\xc3\xa9 ok" },
		{ "=?utf-8?b?w6k=?=  \r\n =?utf-8?b?w6k=?=", "\xc3\xa9\xc3\xa9" },
		/* one character split over two words */
		{ "=?utf-8?b?4oI=?= =?UTF-8?b?rA==?=", "\xe2\x82\xac" },
		{ "=?windows-1252?q?=80=96=93?=", "\xe2\x82\xac\xe2\x80\x93\xe2\x80\x9c" },
		{ "=?iso-8859-15?Q?=A4?= =?us-ascii?q?x?=", "\xe2\x82\xac" "x" },
		{ "=?utf-8*en?q?hi?=", "hi" },
		{ "=?koi8-r?b?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
		{ "a =?x-bogus-charset?q?abc?= b", "a =?x-bogus-charset?q?abc?= b" },
		{ "=?utf-8?x?abc?= =?utf-8?q?a b?=", "=?utf-8?x?abc?= =?utf-8?q?a b?=" },
		{ "=?", "=?" }, { "=?utf-8?q?", "=?utf-8?q?" },
		{ "raw \xff\xc3\xa9", "raw \xef\xbf\xbd\xc3\xa9" },
		{ "fold\r\n ed", "fold ed" },
		{ "x=?utf-8?q?y?=z", "xyz" },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = strlen(words[i].in);
		char *in = dup_exact(words[i].in, n);
		buf_reset(&out);
		assert_int_equal(mime_decode_words(in, n, &out), 0);
		expect_ref(words[i].in, out.data != NULL ? out.data : "", out.len, words[i].want,
			   strlen(words[i].want));
		free(in);
	}
	buf_free(&out);
}

/* The shared IMAP string writer. */
static void test_imap_string(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} rows[] = {
		{ "abc", 3, "\"abc\"" },
		{ "", 0, "\"\"" },
		{ "a\"b\\c", 5, "\"a\\\"b\\\\c\"" },
		{ "a\r\nb", 4, "{4}\r\na\r\nb" },
		{ "\xc3\xa9", 2, "{2}\r\n\xc3\xa9" },
		{ "a\0b", 3, "\"ab\"" },
		{ "a\0\xff", 3, "{2}\r\na\xff" },
	};
	struct buf out;
	buf_init(&out, 64);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		buf_reset(&out);
		assert_int_equal(mime_imap_string(&out, rows[i].in, rows[i].n), 0);
		expect_ref(rows[i].want, out.data, out.len, rows[i].want, strlen(rows[i].want));
	}
	buf_reset(&out);
	assert_int_equal(mime_imap_nstring(&out, NULL, 0), 0);
	assert_string_equal(out.data, "NIL");
	buf_free(&out);
	buf_init(&out, 4);
	assert_int_equal(mime_imap_string(&out, "abcd", 4), -1);
	buf_free(&out);
}

/* Deepest parenthesis nesting in s. */
static size_t paren_depth(const char *s, size_t n)
{
	size_t d = 0, max = 0;
	int quoted = 0;
	for (size_t i = 0; i < n; i++) {
		if (quoted) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				quoted = 0;
		} else if (s[i] == '"') {
			quoted = 1;
		} else if (s[i] == '(') {
			if (++d > max)
				max = d;
		} else if (s[i] == ')') {
			d--;
		}
	}
	return max;
}

/* 10,000 nested multiparts: parsed without crashing, opened to MIME_DEPTH_MAX only. The
 * boundaries end in '_' so that none is a prefix of another (RFC 2046 5.1.1 matches prefixes). */
static void test_deep_multipart(void **state)
{
	(void)state;
	const size_t depth = 10000;
	struct buf m;
	buf_init(&m, OUT_MAX);
	for (size_t i = 0; i < depth; i++)
		assert_int_equal(buf_appendf(&m, "Content-Type: multipart/mixed; boundary=b%zu_\r\n"
						 "\r\n--b%zu_\r\n", i, i), 0);
	assert_int_equal(buf_appendstr(&m, "Content-Type: text/plain\r\n\r\ninnermost\r\n"), 0);
	for (size_t i = depth; i-- > 0;)
		assert_int_equal(buf_appendf(&m, "--b%zu_--\r\n", i), 0);
	char *msg = dup_exact(m.data, m.len);
	size_t len = m.len;
	buf_free(&m);

	struct mime_part *root = mime_parse(msg, len);
	assert_non_null(root);
	struct buf out;
	buf_init(&out, OUT_MAX);
	assert_int_equal(mime_bodystructure(root, msg, 1, &out), 0);
	assert_int_equal(paren_depth(out.data, out.len), MIME_DEPTH_MAX + 2);

	/* "1.1. ... .1" reaches the part at MIME_DEPTH_MAX, one more does not exist */
	struct buf sec, tmp;
	buf_init(&sec, 4096);
	buf_init(&tmp, 64);
	for (size_t i = 0; i < MIME_DEPTH_MAX; i++)
		assert_int_equal(buf_appendstr(&sec, i == 0 ? "1" : ".1"), 0);
	const char *d;
	size_t l;
	assert_int_equal(mime_section(root, msg, len, sec.data, &tmp, &d, &l), 0);
	assert_true(l > 0 && memcmp(d, "--b100_\r\n", 9) == 0);
	assert_int_equal(buf_appendstr(&sec, ".1"), 0);
	assert_int_equal(mime_section(root, msg, len, sec.data, &tmp, &d, &l), 1);
	buf_free(&sec);
	buf_free(&tmp);
	buf_free(&out);
	mime_free(&root);
	free(msg);
}

/* 10,000 nested message/rfc822 parts, and a 10,000-deep chain of unclosed parts. */
static void test_deep_rfc822(void **state)
{
	(void)state;
	struct buf m;
	buf_init(&m, OUT_MAX);
	for (size_t i = 0; i < 10000; i++)
		assert_int_equal(buf_appendstr(&m, "Subject: s\r\nContent-Type: message/rfc822\r\n"
						   "\r\n"), 0);
	assert_int_equal(buf_appendstr(&m, "\r\nend\r\n"), 0);
	char *msg = dup_exact(m.data, m.len);
	size_t len = m.len;
	buf_free(&m);
	struct mime_part *root = mime_parse(msg, len);
	assert_non_null(root);
	struct buf out;
	buf_init(&out, OUT_MAX);
	assert_int_equal(mime_bodystructure(root, msg, 0, &out), 0);
	assert_true(paren_depth(out.data, out.len) <= 2 * (MIME_DEPTH_MAX + 2));
	buf_reset(&out);
	assert_int_equal(mime_binary(root, msg, len, "1.1.1.1", &out), 0);
	buf_free(&out);
	mime_free(&root);
	free(msg);
}

/* More parts than MIME_PARTS_MAX: the extra ones get no node. */
static void test_many_parts(void **state)
{
	(void)state;
	struct buf m;
	buf_init(&m, OUT_MAX);
	assert_int_equal(buf_appendstr(&m, "Content-Type: multipart/mixed; boundary=x\r\n\r\n"), 0);
	for (size_t i = 0; i < MIME_PARTS_MAX + 500; i++)
		assert_int_equal(buf_appendstr(&m, "--x\r\n\r\np\r\n"), 0);
	assert_int_equal(buf_appendstr(&m, "--x--\r\n"), 0);
	char *msg = dup_exact(m.data, m.len);
	size_t len = m.len;
	buf_free(&m);
	struct mime_part *root = mime_parse(msg, len);
	assert_non_null(root);
	struct buf tmp, out;
	buf_init(&tmp, 64);
	const char *d;
	size_t l;
	char sec[16];
	snprintf(sec, sizeof(sec), "%d", MIME_PARTS_MAX - 1);
	assert_int_equal(mime_section(root, msg, len, sec, &tmp, &d, &l), 0);
	expect_ref(sec, d, l, "p", 1);
	snprintf(sec, sizeof(sec), "%d", MIME_PARTS_MAX);
	assert_int_equal(mime_section(root, msg, len, sec, &tmp, &d, &l), 1);
	buf_init(&out, OUT_MAX);
	assert_int_equal(mime_bodystructure(root, msg, 1, &out), 0);
	buf_free(&out);
	buf_free(&tmp);
	mime_free(&root);
	free(msg);
}

/* 1 MB single-line headers: a Subject, a Content-Type full of parameters, no line end at all. */
static void test_huge_header(void **state)
{
	(void)state;
	const size_t mb = 1u << 20;
	for (int variant = 0; variant < 3; variant++) {
		struct buf m;
		buf_init(&m, OUT_MAX);
		if (variant == 0) {
			assert_int_equal(buf_appendstr(&m, "Subject: "), 0);
			for (size_t i = 0; i < mb; i++)
				assert_int_equal(buf_append(&m, "a", 1), 0);
			assert_int_equal(buf_appendstr(&m, "\r\n\r\nbody\r\n"), 0);
		} else if (variant == 1) {
			assert_int_equal(buf_appendstr(&m, "Content-Type: text/plain"), 0);
			while (m.len < mb)
				assert_int_equal(buf_appendstr(&m, "; a*0*=utf-8''%41%42; "
								   "b=\"c\\\"d\""), 0);
			assert_int_equal(buf_appendstr(&m, "\r\n\r\nbody"), 0);
		} else {
			assert_int_equal(buf_appendstr(&m, "From: "), 0);
			while (m.len < mb)
				assert_int_equal(buf_appendstr(&m, "a@b, \"q\" <c@d>, (x) g:;, "),
						 0);
		}
		char *msg = dup_exact(m.data, m.len);
		size_t len = m.len;
		buf_free(&m);
		struct mime_part *root = mime_parse(msg, len);
		assert_non_null(root);
		struct buf out;
		buf_init(&out, OUT_MAX);
		assert_int_equal(mime_bodystructure(root, msg, 1, &out), 0);
		buf_reset(&out);
		assert_int_equal(mime_envelope(msg, mime_header_len(msg, len), &out), 0);
		if (variant == 0)
			assert_true(out.len > mb);
		buf_free(&out);
		mime_free(&root);
		free(msg);
	}
}

/* Output limits: every prefix-sized buffer is refused cleanly, never overrun. */
static void test_out_limits(void **state)
{
	(void)state;
	size_t len;
	char *msg = load("m03-rfc2231", "eml", &len);
	struct mime_part *root = mime_parse(msg, len);
	struct buf out;
	buf_init(&out, OUT_MAX);
	assert_int_equal(mime_bodystructure(root, msg, 1, &out), 0);
	size_t full = out.len;
	buf_free(&out);
	for (size_t max = 0; max < full; max += 7) {
		buf_init(&out, max);
		assert_int_equal(mime_bodystructure(root, msg, 1, &out), -1);
		assert_true(out.len <= max);
		buf_free(&out);
	}
	buf_init(&out, full);
	assert_int_equal(mime_bodystructure(root, msg, 1, &out), 0);
	buf_free(&out);
	mime_free(&root);
	free(msg);
	mime_free(&root);	/* NULL-safe */
	mime_free(NULL);
}

#define EMPTY_TEXT "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)"

/* Empty and tiny inputs. */
static void test_tiny(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *want;
	} rows[] = {
		{ "", EMPTY_TEXT },
		{ "\n", EMPTY_TEXT },
		{ "\r\nx", "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0)" },
		{ "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a--",
		  "(" EMPTY_TEXT " \"MIXED\")" },
		{ "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a",
		  "(" EMPTY_TEXT EMPTY_TEXT EMPTY_TEXT " \"MIXED\")" },
		{ "Content-Type: message/rfc822\r\n",
		  "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 0 (NIL NIL NIL NIL NIL NIL NIL NIL "
		  "NIL NIL) " EMPTY_TEXT " 0)" },
		{ "Content-Type: multipart/x; boundary=\"\"\r\n\r\n--\r\n",
		  "(" EMPTY_TEXT " \"X\")" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t n = strlen(rows[i].in);
		char *msg = dup_exact(rows[i].in, n);
		struct mime_part *root = mime_parse(msg, n);
		assert_non_null(root);
		struct buf out;
		buf_init(&out, 4096);
		assert_int_equal(mime_bodystructure(root, msg, 0, &out), 0);
		expect_ref(rows[i].in, out.data, out.len, rows[i].want, strlen(rows[i].want));
		buf_free(&out);
		mime_free(&root);
		free(msg);
	}
}

/* BINARY of a message/rfc822 part decodes the parts inside it (their headers then say
 * "binary"), and BODYPARTSTRUCTURE with binary sizes gives that form's sizes and line counts
 * (RFC 5524; imaptest's urlauth-binary group expects exactly these numbers). */
static void test_binary_nested(void **state)
{
	(void)state;
	static const char src[] =
		"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n"
		"Content-Type: message/rfc822\r\n\r\n"
		"Subject: in\r\nContent-Type: multipart/alternative; boundary=\"s\"\r\n\r\n"
		"--s\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"aGVs\r\nbG8=\r\n--s\r\nContent-Type: text/plain\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n--s--\r\n"
		"\r\n--x--\r\n";
	static const char want[] =
		"Subject: in\r\nContent-Type: multipart/alternative; boundary=\"s\"\r\n\r\n"
		"--s\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n"
		"hello\r\n--s\r\nContent-Type: text/plain\r\n"
		"Content-Transfer-Encoding: binary\r\n\r\na=b\r\n--s--\r\n";
	char *msg = dup_exact(src, sizeof(src) - 1);
	struct mime_part *root = mime_parse(msg, sizeof(src) - 1);
	struct buf out, bps, plain;
	buf_init(&out, 4096);
	buf_init(&bps, 4096);
	buf_init(&plain, 4096);
	assert_int_equal(mime_binary(root, msg, sizeof(src) - 1, "1", &out), 0);
	expect_ref("binary 1", out.data, out.len, want, sizeof(want) - 1);
	assert_int_equal(mime_bodypartstructure(root, msg, sizeof(src) - 1, "1", 1, &bps), 0);
	char sizes[64];
	snprintf(sizes, sizeof(sizes), "\"7BIT\" %zu (", out.len);
	assert_non_null(strstr(bps.data, sizes));
	assert_non_null(strstr(bps.data, "\"BASE64\" 5 0 NIL"));
	assert_non_null(strstr(bps.data, "\"QUOTED-PRINTABLE\" 3 0 NIL"));
	/* without binary: the part exactly as in the message's BODYSTRUCTURE */
	assert_int_equal(mime_bodypartstructure(root, msg, sizeof(src) - 1, "1.1", 0, &plain), 0);
	assert_non_null(strstr(plain.data, "\"BASE64\" 10 1 NIL NIL NIL NIL)"));
	assert_int_equal(mime_bodypartstructure(root, msg, sizeof(src) - 1, "1.TEXT", 0, &plain),
			 -2);
	assert_int_equal(mime_bodypartstructure(root, msg, sizeof(src) - 1, "3", 0, &plain), 1);
	buf_free(&out);
	buf_free(&bps);
	buf_free(&plain);
	mime_free(&root);
	free(msg);
}

/* Test runner. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_section_forwarded),
		cmocka_unit_test(test_section_single),
		cmocka_unit_test(test_section_fields_noeol),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_binary_nested),
		cmocka_unit_test(test_text_utf8),
		cmocka_unit_test(test_header_helpers),
		cmocka_unit_test(test_imap_string),
		cmocka_unit_test(test_deep_multipart),
		cmocka_unit_test(test_deep_rfc822),
		cmocka_unit_test(test_many_parts),
		cmocka_unit_test(test_huge_header),
		cmocka_unit_test(test_out_limits),
		cmocka_unit_test(test_tiny),
	};
	return cmocka_run_group_tests(tests, corpus_find, NULL);
}
