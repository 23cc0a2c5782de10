/* cli-dkim.c - "postino dkim list|new|rotate|retire": DKIM keys of the hosted domains.
 *
 * Key life: `new` makes a pair (RSA-2048 + Ed25519) that is published ("postino dns") but not
 * used; once DNS has it, `rotate` makes it the signing pair; the old pair stays published until
 * `retire` removes it (after the queue lifetime, so that queued mail signed with it still
 * verifies). `domain add` gives a new domain its first pair, signing at once.
 */
#include "cli-dkim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "dkim-keys.h"

static const char usage_dkim[] =
	"usage: postino dkim list [DOMAIN]\n"
	"       postino dkim new DOMAIN\n"
	"       postino dkim rotate DOMAIN\n"
	"       postino dkim retire DOMAIN SELECTOR\n"
	"                                          [--config FILE | --data DIR]\n"
	"\n"
	"DKIM keys of the hosted domains (RFC 6376, RFC 8463). Mail that users send to other\n"
	"servers is signed twice, with an RSA-2048 and an Ed25519 key of its From: domain.\n"
	"Keys live in DATA/dkim/DOMAIN/SELECTOR.key (mode 0600); 'postino dns DOMAIN' prints the\n"
	"TXT record of every key there. 'postino domain add' creates the first pair.\n"
	"\n"
	"  list [DOMAIN]            keys, their selectors and states (signing, next, old)\n"
	"  new DOMAIN               create a new pair, published but not used yet: publish the\n"
	"                           records 'postino dns DOMAIN' prints, wait for DNS, then rotate\n"
	"  rotate DOMAIN            sign with the newest pair from now on; the old pair stays\n"
	"                           published until retired\n"
	"  retire DOMAIN SELECTOR   delete a key that no longer signs (remove its TXT record too);\n"
	"                           wait until mail signed with it has left the queue (queue_lifetime)\n";

/* Print "postino: <message>" on stderr; returns exit code 1. */
__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...)
{
	va_list ap;
	fputs("postino: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Open system.db read-only. NULL after printing why. */
static struct acctdb *open_db(const char *data_dir)
{
	char path[4200];
	struct acctdb *db;
	const char *err;
	snprintf(path, sizeof(path), "%s/system.db", data_dir);
	if (access(path, F_OK) < 0) {
		fail("there is no account database at %s: run 'postino quickstart HOSTNAME --data "
		     "%s' or 'postino domain add DOMAIN' first", path, data_dir);
		return NULL;
	}
	if (acctdb_open(path, ACCTDB_RO, &db, &err) < 0) {
		fail("cannot open %s: %s: check that it is readable by this user", path, err);
		return NULL;
	}
	return db;
}

/* Normalise a domain argument and check that it is hosted. 0 ok (d filled), 1 refused. */
static int want_hosted(const char *data_dir, const char *in, char *d, size_t dlen)
{
	const char *err;
	if (acctdb_normalize_domain(in, d, dlen) < 0 || !dkim_keys_domain_ok(d))
		return fail("'%.100s' is not a valid domain name: use letters, digits and hyphens in "
			    "dot-separated labels, such as example.com", in);
	struct acctdb *db = open_db(data_dir);
	if (db == NULL)
		return 1;
	int r = acctdb_domain_exists(db, d, &err);
	acctdb_close(&db);
	if (r < 0)
		return fail("cannot look up domain %s: %s: try again", d, err);
	if (r == 0)
		return fail("domain %s is not hosted here: add it first with 'postino domain add %s'",
			    d, d);
	return 0;
}

/* "2026-12-06 14:03 UTC" */
static const char *when(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%d %H:%M UTC", &tm);
	return out;
}

/* The newest signing key (NULL: none). */
static const struct dkim_keyinfo *newest_signing(const struct dkim_keyinfo *k, int n)
{
	const struct dkim_keyinfo *t = NULL;
	for (int i = 0; i < n; i++)
		if (k[i].signing && (t == NULL || dkim_keyinfo_cmp_time(&k[i], t) > 0))
			t = &k[i];
	return t;
}

/* Was key made after the signing keys (or are there none)? */
static int is_next(const struct dkim_keyinfo *key, const struct dkim_keyinfo *sig)
{
	return !key->signing && (sig == NULL || dkim_keyinfo_cmp_time(key, sig) > 0);
}

/* Print the keys of one domain. 0 ok, 1 error. */
static int list_domain(const char *data_dir, const char *d)
{
	struct dkim_keyinfo *k = calloc(DKIM_KEYS_MAX, sizeof(*k));
	const char *err;
	if (k == NULL)
		return fail("out of memory");
	int n = dkim_keys_list(data_dir, d, k, DKIM_KEYS_MAX, &err);
	if (n < 0) {
		free(k);
		return fail("cannot read the DKIM keys of %s: %s", d, err);
	}
	printf("%s\n", d);
	if (n == 0)
		printf("  no DKIM keys: mail from %s goes out unsigned; create a pair with 'postino "
		       "dkim new %s', publish it, then 'postino dkim rotate %s'\n", d, d, d);
	const struct dkim_keyinfo *sig = newest_signing(k, n);
	int signing = 0;
	for (int i = 0; i < n; i++) {
		char t[32], alg[32];
		if (k[i].alg == TLS_KEY_RSA)
			snprintf(alg, sizeof(alg), "rsa-%u", k[i].readable ? k[i].bits : 0);
		else
			snprintf(alg, sizeof(alg), "ed25519");
		signing += k[i].signing;
		const char *state = k[i].signing ? "signing" : is_next(&k[i], sig) ? "next" : "old";
		printf("  %-12s %-9s %-8s created %s", k[i].selector, alg, state,
		       when(k[i].created, t, sizeof(t)));
		if (!k[i].readable)
			printf("  UNUSABLE: %s", k[i].err);
		else if (strcmp(state, "next") == 0)
			printf("  (publish it, then 'postino dkim rotate %s')", d);
		else if (strcmp(state, "old") == 0)
			printf("  (retire it once queued mail has left: 'postino dkim retire %s %s')",
			       d, k[i].selector);
		putchar('\n');
	}
	if (n > 0 && signing == 0)
		printf("  no signing key: mail from %s goes out unsigned; run 'postino dkim rotate "
		       "%s' once the records are published\n", d, d);
	free(k);
	return 0;
}

struct list_ctx {
	const char *data_dir;
	int rc;
};

/* acctdb_domain_list callback. */
static void list_cb(void *ctx, const char *domain)
{
	struct list_ctx *c = ctx;
	c->rc |= list_domain(c->data_dir, domain);
}

/* dkim list [DOMAIN] */
static int dkim_list(const char *data_dir, int argc, char **argv)
{
	char d[256];
	if (argc > 3)
		return fail("too many arguments: usage: postino dkim list [DOMAIN]") + 1;
	if (argc == 3)
		return want_hosted(data_dir, argv[2], d, sizeof(d)) ? 1 : list_domain(data_dir, d);
	struct acctdb *db = open_db(data_dir);
	if (db == NULL)
		return 1;
	struct list_ctx c = { data_dir, 0 };
	const char *err;
	int n = acctdb_domain_list(db, list_cb, &c, &err);
	acctdb_close(&db);
	if (n < 0)
		return fail("cannot list domains: %s: try again", err);
	if (n == 0)
		fprintf(stderr, "postino: no domains yet: add one with 'postino domain add DOMAIN'\n");
	return c.rc;
}

/* dkim new DOMAIN */
static int dkim_new(const char *data_dir, const char *domain)
{
	char d[256], rs[DKIM_SELECTOR_MAX + 1], es[DKIM_SELECTOR_MAX + 1];
	const char *err;
	if (want_hosted(data_dir, domain, d, sizeof(d)))
		return 1;
	if (dkim_keys_new_pair(data_dir, d, time(NULL), rs, es, &err) < 0)
		return fail("cannot create DKIM keys for %s: %s: check that %s/dkim is writable by "
			    "this user", d, err, data_dir);
	printf("created DKIM keys %s (rsa-2048) and %s (ed25519) for %s; they do not sign yet.\n"
	       "Publish the records 'postino dns %s' prints (%s._domainkey.%s and "
	       "%s._domainkey.%s),\nwait until DNS serves them, then run 'postino dkim rotate %s'.\n",
	       rs, es, d, d, rs, d, es, d, d);
	return 0;
}

/* dkim rotate DOMAIN */
static int dkim_rotate(const char *data_dir, const char *domain)
{
	char d[256];
	const char *err;
	if (want_hosted(data_dir, domain, d, sizeof(d)))
		return 1;
	struct dkim_keyinfo *k = calloc(DKIM_KEYS_MAX, sizeof(*k));
	if (k == NULL)
		return fail("out of memory");
	int n = dkim_keys_list(data_dir, d, k, DKIM_KEYS_MAX, &err);
	if (n < 0) {
		free(k);
		return fail("cannot read the DKIM keys of %s: %s", d, err);
	}
	const struct dkim_keyinfo *sig = newest_signing(k, n);
	/* per algorithm: the current signing key, and the newest usable key made after it */
	int cur[2] = { -1, -1 }, next[2] = { -1, -1 };
	for (int i = 0; i < n; i++) {
		int a = k[i].alg == TLS_KEY_ED25519;
		if (k[i].signing)
			cur[a] = i;
		else if (k[i].readable && is_next(&k[i], sig))
			next[a] = i;   /* oldest first: the last one wins */
	}
	if (next[0] < 0 && next[1] < 0) {
		free(k);
		return fail("%s has no new DKIM keys to rotate to: run 'postino dkim new %s', publish "
			    "the records 'postino dns %s' prints, then run rotate again", d, d, d);
	}
	char sels[2][DKIM_SELECTOR_MAX + 1];
	size_t ns = 0;
	for (int a = 0; a < 2; a++) {
		int i = next[a] >= 0 ? next[a] : cur[a];
		if (i >= 0)
			snprintf(sels[ns++], sizeof(sels[0]), "%s", k[i].selector);
	}
	if (dkim_keys_set_signing(data_dir, d, sels, ns, &err) < 0) {
		free(k);
		return fail("cannot switch the DKIM keys of %s: %s", d, err);
	}
	printf("%s: mail is now signed with %s%s%s.\n", d, sels[0], ns > 1 ? " and " : "",
	       ns > 1 ? sels[1] : "");
	for (int a = 0; a < 2; a++)
		if (cur[a] >= 0 && next[a] >= 0)
			printf("The old key %s stays published; retire it once mail signed with it has "
			       "left the queue (queue_lifetime): 'postino dkim retire %s %s'.\n",
			       k[cur[a]].selector, d, k[cur[a]].selector);
	free(k);
	return 0;
}

/* dkim retire DOMAIN SELECTOR */
static int dkim_retire(const char *data_dir, const char *domain, const char *selector)
{
	char d[256], sels[2][DKIM_SELECTOR_MAX + 1];
	const char *err;
	if (want_hosted(data_dir, domain, d, sizeof(d)))
		return 1;
	if (!dkim_keys_selector_ok(selector))
		return fail("'%.80s' is not a selector: see 'postino dkim list %s'", selector, d);
	int n = dkim_keys_signing(data_dir, d, sels, &err);
	if (n < 0)
		return fail("cannot read the DKIM keys of %s: %s", d, err);
	for (int i = 0; i < n; i++)
		if (strcmp(sels[i], selector) == 0)
			return fail("%s still signs the mail of %s: run 'postino dkim new %s' and "
				    "'postino dkim rotate %s' first", selector, d, d, d);
	int r = dkim_keys_remove(data_dir, d, selector, &err);
	if (r < 0)
		return fail("cannot retire %s of %s: %s", selector, d, err);
	if (r == 0)
		return fail("%s has no DKIM key %s: see 'postino dkim list %s'", d, selector, d);
	printf("retired DKIM key %s of %s: remove the TXT record %s._domainkey.%s from DNS\n",
	       selector, d, selector, d);
	return 0;
}

/* Give a new domain its first pair. */
int cli_dkim_domain_added(const char *data_dir, const char *domain)
{
	const char *err;
	int r = dkim_keys_init_domain(data_dir, domain, time(NULL), &err);
	if (r < 0)
		return fail("cannot create the DKIM keys of %s: %s: run 'postino dkim new %s' and "
			    "'postino dkim rotate %s' once fixed", domain, err, domain, domain);
	if (r > 0)
		printf("created DKIM keys for %s: publish the records 'postino dns %s' prints\n",
		       domain, domain);
	else   /* hosted before and removed: its keys stayed in DATA/dkim */
		printf("kept the DKIM keys %s had ('postino dkim list %s')\n", domain, domain);
	return 0;
}

/* Entry point. */
int cli_dkim_main(const char *data_dir, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage_dkim, stdout);
			return 0;
		}
		if (argv[i][0] == '-') {
			fprintf(stderr, "postino: unknown option '%.80s'\n%s", argv[i], usage_dkim);
			return 2;
		}
	}
	if (argc < 2 || data_dir == NULL) {
		fputs(usage_dkim, stderr);
		return 2;
	}
	const char *sub = argv[1];
	struct stat st;
	if (stat(data_dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return fail("data directory %s does not exist: pass the right --data/--config",
			    data_dir);
	if (strcmp(sub, "list") == 0)
		return dkim_list(data_dir, argc, argv);
	if (strcmp(sub, "new") == 0 && argc == 3)
		return dkim_new(data_dir, argv[2]);
	if (strcmp(sub, "rotate") == 0 && argc == 3)
		return dkim_rotate(data_dir, argv[2]);
	if (strcmp(sub, "retire") == 0 && argc == 4)
		return dkim_retire(data_dir, argv[2], argv[3]);
	fprintf(stderr, "postino: wrong arguments for 'dkim %.40s'\n%s", sub, usage_dkim);
	return 2;
}
