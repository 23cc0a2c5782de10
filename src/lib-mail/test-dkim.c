/* test-dkim.c - unit tests for dkim.c and tls-crypto.c: relaxed canonicalisation (RFC 6376
 * 3.4.5), the body hash and Ed25519 key of RFC 8463 appendix A, a signature input computed
 * like dkimpy (python3-dkim), header selection and oversigning, the From: domain rules, the
 * key store (dkim-keys.c) and the per-thread cache of parsed public keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "dkim-keys.h"
#include "dkim.h"
#include "tls-crypto.h"

/* RFC 8463 A.2: the Ed25519 key "brisbane" (seed nWGxne/9...), as PKCS#8 PEM */
static const char rfc8463_key[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
	"-----END PRIVATE KEY-----\n";
static const char rfc8463_pub[] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/* RFC 8463 A.3 (and RFC 6376 A.1) message */
static const char rfc_msg[] =
	"From: Joe SixPack <joe@football.example.com>\r\n"
	"To: Suzie Q <suzie@shopping.example.net>\r\n"
	"Subject: Is dinner ready?\r\n"
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
	"\r\n"
	"Hi.\r\n"
	"\r\n"
	"We lost the game.  Are you hungry yet?\r\n"
	"\r\n"
	"Joe.\r\n";

/* Collects canonicaliser output. */
static void collect(void *ctx, const char *p, size_t n)
{
	assert_int_equal(buf_append(ctx, p, n), 0);
}

/* Relaxed body of in, fed whole or one octet at a time. */
static void body_canon(const char *in, size_t n, int trickle, struct buf *out)
{
	struct dkim_body_canon c;
	buf_reset(out);
	dkim_body_canon_init(&c, collect, out);
	if (trickle)
		for (size_t i = 0; i < n; i++)
			dkim_body_canon_feed(&c, in + i, 1);
	else
		dkim_body_canon_feed(&c, in, n);
	dkim_body_canon_end(&c);
}

/* RFC 6376 3.4.5 and more body cases. */
static void test_body_relaxed(void **state)
{
	(void)state;
	static const struct { const char *in, *want; } cases[] = {
		{ " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n" },   /* RFC 6376 3.4.5 */
		{ "", "" },
		{ "\r\n\r\n", "" },
		{ "abc", "abc\r\n" },
		{ "a\r\n \t \r\nb  \r\n", "a\r\n\r\nb\r\n" },
		{ "a\nb\rc\r\n", "a\r\nb\r\nc\r\n" },   /* bare LF and CR are line ends, as sent */
		{ "x\t\ty \r\n\t\r\n", "x y\r\n" },
	};
	struct buf out, out2;
	buf_init(&out, 65536);
	buf_init(&out2, 65536);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		body_canon(cases[i].in, strlen(cases[i].in), 0, &out);
		body_canon(cases[i].in, strlen(cases[i].in), 1, &out2);
		assert_int_equal(out.len, strlen(cases[i].want));
		assert_memory_equal(out.data ? out.data : "", cases[i].want, out.len);
		assert_int_equal(out2.len, out.len);
		assert_memory_equal(out2.data ? out2.data : "", cases[i].want, out.len);
	}
	buf_free(&out);
	buf_free(&out2);
}

/* RFC 6376 3.4.5 header example. */
static void test_header_relaxed(void **state)
{
	(void)state;
	struct buf out;
	buf_init(&out, 4096);
	static const char a[] = "A: X\r\n", b[] = "B : Y\t\r\n\tZ  \r\n";
	assert_int_equal(dkim_canon_header(a, strlen(a), &out), 0);
	assert_int_equal(dkim_canon_header(b, strlen(b), &out), 0);
	assert_string_equal(out.data, "a:X\r\nb:Y Z\r\n");
	buf_reset(&out);
	assert_int_equal(dkim_canon_header("SUBJECT:   two  words \t", 23, &out), 0);
	assert_string_equal(out.data, "subject:two words\r\n");
	assert_int_equal(dkim_canon_header("no colon", 8, &out), -1);
	buf_free(&out);
}

/* Write text to a temp file; returns its path (static). */
static const char *temp_file(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/test-dkim-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* The RFC 8463 key: public key and a signature input as dkimpy computes it. */
static void test_ed25519_rfc8463(void **state)
{
	(void)state;
	struct tls_key *key;
	const char *err;
	const char *path = temp_file(rfc8463_key);
	assert_int_equal(tls_key_load(path, &key, &err), 0);
	unlink(path);
	assert_int_equal(tls_key_alg(key), TLS_KEY_ED25519);
	char pub[128];
	assert_int_equal(tls_key_public_b64(key, pub, sizeof(pub)), 0);
	assert_string_equal(pub, rfc8463_pub);
	/* 32 octets are 44 characters and the NUL: one octet less does not fit */
	assert_int_equal(strlen(rfc8463_pub), 44);
	assert_int_equal(tls_key_public_b64(key, pub, 44), -1);
	assert_int_equal(tls_key_public_b64(key, pub, 45), 0);
	assert_string_equal(pub, rfc8463_pub);

	/* dkimpy 1.1.4: dkim.sign(rfc_msg, b"brisbane", b"football.example.com", key,
	 * canonicalize=(relaxed, relaxed), signature_algorithm=ed25519-sha256,
	 * include_headers=[from, to, subject, date, message-id]) gave this field */
	static const char sigfield[] =
		"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
		" d=football.example.com; i=@football.example.com; q=dns/txt;\r\n"
		" s=brisbane; t=1796520558; h=from : to : subject : date : message-id;\r\n"
		" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
		" b=";
	static const char want_b[] = "7NqyFuntB9+USz9UnFufxueJ8v7SgU8yNJuKz6B53cdqkL5FL+tUYJPaHoB4"
				     "XNNae04T3z7UAKzZGbja29jgAA==";
	struct buf h;
	buf_init(&h, 65536);
	const char *p = rfc_msg;
	for (int i = 0; i < 5; i++) {   /* the five fields, in h= order = message order */
		const char *eol = strstr(p, "\r\n") + 2;
		assert_int_equal(dkim_canon_header(p, (size_t)(eol - p), &h), 0);
		p = eol;
	}
	assert_int_equal(dkim_canon_header(sigfield, strlen(sigfield), &h), 0);
	h.len -= 2;   /* no CRLF after the signature field (RFC 6376 3.7) */
	unsigned char digest[TLS_SHA256_LEN], sig[TLS_SIG_MAX];
	struct tls_sha256 *sh = tls_sha256_new();
	tls_sha256_update(sh, h.data, h.len);
	tls_sha256_final(sh, digest);
	tls_sha256_free(&sh);
	size_t siglen;
	assert_int_equal(tls_key_sign_sha256(key, digest, sig, &siglen), 0);
	char b64[200];
	base64_encode(sig, siglen, b64, sizeof(b64));
	assert_string_equal(b64, want_b);
	buf_free(&h);
	tls_key_free(&key);
}

/* Sign msg (fed in pieces of `step` octets) with the RFC key; returns the field. */
static void sign_msg(const char *msg, size_t step, struct buf *out)
{
	struct tls_key *key;
	const char *err;
	const char *path = temp_file(rfc8463_key);
	assert_int_equal(tls_key_load(path, &key, &err), 0);
	unlink(path);
	struct dkim_signer *s = dkim_signer_new();
	size_t n = strlen(msg);
	for (size_t i = 0; i < n; i += step)
		dkim_signer_feed(s, msg + i, n - i < step ? n - i : step);
	char dom[256];
	assert_int_equal(dkim_signer_from_domain(s, dom, sizeof(dom), &err), 1);
	assert_int_equal(dkim_signer_sign(s, dom, "brisbane", key, 1528637909, out, &err), 0);
	dkim_signer_free(&s);
	tls_key_free(&key);
}

/* The signer: body hash of RFC 8463, h= with From oversigned, same result in any pieces. */
static void test_signer(void **state)
{
	(void)state;
	struct buf a, b;
	buf_init(&a, 65536);
	buf_init(&b, 65536);
	sign_msg(rfc_msg, 100000, &a);
	sign_msg(rfc_msg, 1, &b);
	assert_string_equal(a.data, b.data);
	assert_non_null(strstr(a.data, "a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com;"));
	assert_non_null(strstr(a.data, "s=brisbane; t=1528637909;"));
	assert_non_null(strstr(a.data, "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;"));
	assert_non_null(strstr(a.data, "h=from:from:to:subject:date:message-id;"));
	assert_int_equal(strncmp(a.data, "DKIM-Signature: ", 16), 0);
	assert_int_equal(strcmp(a.data + a.len - 2, "\r\n"), 0);
	for (char *l = a.data; (l = strstr(l, "\r\n")) != NULL && l[2]; l += 2)
		assert_true(l[2] == '\t');   /* every continuation line is folded */
	/* bare LF line ends sign like CRLF (the queue sends them as CRLF) */
	buf_reset(&b);
	char lf[sizeof(rfc_msg)];
	size_t o = 0;
	for (const char *p = rfc_msg; *p; p++)
		if (*p != '\r')
			lf[o++] = *p;
	lf[o] = '\0';
	sign_msg(lf, 7, &b);
	assert_string_equal(a.data, b.data);
	/* two To: fields are both signed; a message without body still signs */
	buf_reset(&b);
	sign_msg("From: a@x.example\r\nTo: b@y.example\r\nTo: c@z.example\r\n", 3, &b);
	assert_non_null(strstr(b.data, "h=from:from:to:to;"));
	assert_non_null(strstr(b.data, "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"));
	buf_free(&a);
	buf_free(&b);
}

/* Which From: fields make a message signable. */
static void test_from_domain(void **state)
{
	(void)state;
	static const struct { const char *msg; int ok; const char *domain; } cases[] = {
		{ "From: \"A, B\" <a@Example.COM>\r\n\r\nx\r\n", 1, "example.com" },
		{ "From: a@x.example,\r\n b@x.example\r\n\r\n", 1, "x.example" },
		{ "From: a@x.example, b@y.example\r\n\r\n", 0, NULL },
		{ "From: a@x.example\r\nFrom: a@x.example\r\n\r\n", 0, NULL },
		{ "To: a@x.example\r\n\r\nFrom: a@x.example\r\n", 0, NULL },
		{ "From: not an address\r\n\r\n", 0, NULL },
		/* read like header.c: a folded name is no From field, "fROM\t:" is one */
		{ "From\r\n : a@evil.example\r\nFrom: a@x.example\r\n\r\n", 1, "x.example" },
		{ "fROM\t: a@x.example\r\nFrom: b@x.example\r\n\r\n", 0, NULL },
		{ "From: <a@B\xc3\xbc" "cher.example>\r\n\r\n", 1, "xn--bcher-kva.example" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dkim_signer *s = dkim_signer_new();
		dkim_signer_feed(s, cases[i].msg, strlen(cases[i].msg));
		char dom[256];
		const char *why = NULL;
		int r = dkim_signer_from_domain(s, dom, sizeof(dom), &why);
		assert_int_equal(r, cases[i].ok);
		if (r)
			assert_string_equal(dom, cases[i].domain);
		else
			assert_non_null(why);
		dkim_signer_free(&s);
	}
	/* a header section over the limit is not signed */
	struct dkim_signer *s = dkim_signer_new();
	dkim_signer_feed(s, "From: a@x.example\r\n", 19);
	char line[1024];
	memset(line, 'a', sizeof(line) - 3);
	memcpy(line, "X-A: ", 5);
	memcpy(line + sizeof(line) - 3, "\r\n", 3);
	for (size_t i = 0; i <= DKIM_HEADER_MAX / 1000; i++)
		dkim_signer_feed(s, line, strlen(line));
	char dom[256];
	const char *why;
	assert_int_equal(dkim_signer_from_domain(s, dom, sizeof(dom), &why), 0);
	dkim_signer_free(&s);
}

/* The key store: new pair, signing file, list, remove. */
static void test_keys(void **state)
{
	(void)state;
	char dir[] = "/tmp/test-dkim-keys-XXXXXX";
	assert_non_null(mkdtemp(dir));
	const char *err;
	char sels[2][DKIM_SELECTOR_MAX + 1];
	assert_int_equal(dkim_keys_signing(dir, "example.com", sels, &err), 0);
	assert_int_equal(dkim_keys_init_domain(dir, "example.com", 1796520558, &err), 1);
	assert_int_equal(dkim_keys_init_domain(dir, "example.com", 1796520558, &err), 0);
	assert_int_equal(dkim_keys_signing(dir, "example.com", sels, &err), 2);
	assert_string_equal(sels[0], "202612r");
	assert_string_equal(sels[1], "202612e");
	char rs[DKIM_SELECTOR_MAX + 1], es[DKIM_SELECTOR_MAX + 1];
	assert_int_equal(dkim_keys_new_pair(dir, "example.com", 1796520558, rs, es, &err), 0);
	assert_string_equal(rs, "202612r2");
	assert_string_equal(es, "202612e2");
	struct dkim_keyinfo k[DKIM_KEYS_MAX];
	assert_int_equal(dkim_keys_list(dir, "example.com", k, DKIM_KEYS_MAX, &err), 4);
	int signing = 0;
	for (int i = 0; i < 4; i++) {
		char p[4400];
		struct stat st;
		assert_int_equal(dkim_keys_path(dir, "example.com", k[i].selector, p, sizeof(p)), 0);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_true(k[i].readable);
		signing += k[i].signing;
		if (k[i].alg == TLS_KEY_RSA)
			assert_int_equal(k[i].bits, 2048);
	}
	assert_int_equal(signing, 2);
	assert_int_equal(dkim_keys_remove(dir, "example.com", "202612r2", &err), 1);
	assert_int_equal(dkim_keys_remove(dir, "example.com", "202612r2", &err), 0);
	assert_int_equal(dkim_keys_list(dir, "example.com", k, DKIM_KEYS_MAX, &err), 3);
	assert_int_equal(dkim_keys_domain_ok("../etc"), 0);
	assert_int_equal(dkim_keys_domain_ok("Example.com"), 0);
	assert_int_equal(dkim_keys_selector_ok("a/b"), 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* A new key of alg in a temp file, loaded; its published p= octets in pub[*publen]. */
static struct tls_key *new_key(enum tls_key_alg alg, unsigned char *pub, size_t *publen)
{
	char path[] = "/tmp/test-dkim-pk-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	const char *err;
	struct tls_key *key;
	assert_int_equal(tls_key_generate(alg, path, &err), 0);
	assert_int_equal(tls_key_load(path, &key, &err), 0);
	unlink(path);
	char b64[1024];
	assert_int_equal(tls_key_public_b64(key, b64, sizeof(b64)), 0);
	ssize_t n = base64_decode(b64, strlen(b64), pub, 800);
	assert_true(n > 0);
	*publen = (size_t)n;
	return key;
}

/* Verify sig over digest with the published octets: 1, 0 or -1. */
static int verify(const unsigned char *pub, size_t publen, int ed25519,
		  const unsigned char *digest, const unsigned char *sig, size_t siglen)
{
	unsigned bits;
	const char *err;
	return tls_pubkey_verify_sha256(pub, publen, ed25519, 1024, 4096, digest, sig, siglen,
					&bits, &err);
}

/* Published keys are parsed once per thread while they stay among its last 16, never
 * confused with another key, and a cached key gives the same verdicts. */
static void test_pubkey_cache(void **state)
{
	(void)state;
	unsigned char a_pub[800], b_pub[800], e_pub[17][800];
	size_t a_len, b_len, e_len[17];
	struct tls_key *a = new_key(TLS_KEY_RSA, a_pub, &a_len);
	struct tls_key *b = new_key(TLS_KEY_RSA, b_pub, &b_len);
	assert_int_equal(a_len, b_len);
	unsigned char digest[TLS_SHA256_LEN] = { 1, 2, 3 }, sig[TLS_SIG_MAX];
	size_t siglen;
	assert_int_equal(tls_key_sign_sha256(a, digest, sig, &siglen), 0);
	unsigned long p0 = tls_pubkey_parses();
	for (int i = 0; i < 3; i++)
		assert_int_equal(verify(a_pub, a_len, 0, digest, sig, siglen), 1);
	assert_int_equal(tls_pubkey_parses(), p0 + 1);
	assert_int_equal(verify(b_pub, b_len, 0, digest, sig, siglen), 0);   /* not a's */
	assert_int_equal(tls_pubkey_parses(), p0 + 2);
	sig[7] ^= 1;
	assert_int_equal(verify(a_pub, a_len, 0, digest, sig, siglen), 0);
	sig[7] ^= 1;
	assert_int_equal(verify(a_pub, a_len, 0, digest, sig, siglen), 1);
	assert_int_equal(tls_pubkey_parses(), p0 + 2);
	/* the same octets as an Ed25519 key are another key; bad octets are parsed each time */
	assert_int_equal(verify(a_pub, 32, 1, digest, sig, siglen), 0);
	assert_int_equal(tls_pubkey_parses(), p0 + 3);
	unsigned char junk[40] = { 0x30, 0x82, 0xff };
	assert_int_equal(verify(junk, sizeof(junk), 0, digest, sig, siglen), -1);
	assert_int_equal(verify(junk, sizeof(junk), 0, digest, sig, siglen), -1);
	assert_int_equal(tls_pubkey_parses(), p0 + 5);
	/* 16 more keys push a out: parsed again */
	for (int i = 0; i < 16; i++) {
		struct tls_key *e = new_key(TLS_KEY_ED25519, e_pub[i], &e_len[i]);
		assert_int_equal(verify(e_pub[i], e_len[i], 1, digest, sig, 64), 0);
		tls_key_free(&e);
	}
	assert_int_equal(tls_pubkey_parses(), p0 + 21);
	assert_int_equal(verify(a_pub, a_len, 0, digest, sig, siglen), 1);
	assert_int_equal(tls_pubkey_parses(), p0 + 22);
	tls_key_free(&a);
	tls_key_free(&b);
}

/* Run all DKIM tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_relaxed),
		cmocka_unit_test(test_header_relaxed),
		cmocka_unit_test(test_ed25519_rfc8463),
		cmocka_unit_test(test_signer),
		cmocka_unit_test(test_from_domain),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_pubkey_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
