/* smtp-dkim.c - DKIM signatures for mail that authenticated users send to other servers.
 *
 * Called by the delivery pool job (never on the loop thread) after the message file is complete
 * and before its queue entry is written. The file is read back once (it is in the page cache):
 * the header section is kept, the body hashed as it streams. The signatures go into the queue
 * envelope (queue-spool.c "dkim" line) and the queue's DATA writer sends them before the message,
 * so a retry sends the same signatures and the spooled body stays the file local recipients got.
 */
#include "smtp-dkim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "dkim-keys.h"
#include "dkim.h"
#include "log.h"
#include "tls-crypto.h"

#define DKIM_READ_CHUNK 65536         /* the message is read back in pieces of this size */
#define DKIM_FIELDS_MAX (4 * DKIM_FIELD_MAX)   /* all signature fields of one message */

/* Sign the message for its From: domain. */
int smtp_dkim_sign(const char *data_dir, const char *id, int fd, uint64_t skip, uint64_t total,
		   char **fields_r, char *why, size_t whylen)
{
	*fields_r = NULL;
	struct dkim_signer *s = dkim_signer_new();
	char *chunk = malloc(DKIM_READ_CHUNK);
	if (s == NULL || chunk == NULL) {
		dkim_signer_free(&s);
		free(chunk);
		snprintf(why, whylen, "DKIM: out of memory");
		return -1;
	}
	int rc = -1;
	struct buf out;
	buf_init(&out, DKIM_FIELDS_MAX);
	for (uint64_t pos = skip; pos < total;) {
		size_t want = total - pos < DKIM_READ_CHUNK ? (size_t)(total - pos) : DKIM_READ_CHUNK;
		ssize_t got = pread(fd, chunk, want, (off_t)pos);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(why, whylen, "DKIM: read back the message: %s",
				 got < 0 ? strerror(errno) : "file shorter than written");
			goto out;
		}
		dkim_signer_feed(s, chunk, (size_t)got);
		pos += (uint64_t)got;
	}
	char domain[DKIM_DOMAIN_MAX + 1], sels[2][DKIM_SELECTOR_MAX + 1];
	const char *err;
	if (dkim_signer_from_domain(s, domain, sizeof(domain), &err) != 1) {
		log_info("proto=smtp event=dkim-unsigned id=%s reason=\"%s\"", id, err);
		rc = 0;
		goto out;
	}
	int n = dkim_keys_domain_ok(domain) ? dkim_keys_signing(data_dir, domain, sels, &err) : 0;
	if (n < 0) {
		snprintf(why, whylen, "DKIM keys of %s: %s", domain, err);
		goto out;
	}
	if (n == 0) {   /* not a domain of ours, or one without keys: nothing to sign with */
		log_info("proto=smtp event=dkim-unsigned id=%s domain=%s reason=\"no signing key "
			 "(postino dkim list %s)\"", id, domain, domain);
		rc = 0;
		goto out;
	}
	time_t now = time(NULL);
	for (int i = 0; i < n; i++) {
		char path[4400];
		struct tls_key *key;
		if (dkim_keys_path(data_dir, domain, sels[i], path, sizeof(path)) < 0 ||
		    tls_key_load(path, &key, &err) < 0) {
			snprintf(why, whylen, "DKIM key %s of %s: %s (see 'postino dkim list %s')",
				 sels[i], domain, err, domain);
			goto out;
		}
		int r = dkim_signer_sign(s, domain, sels[i], key, now, &out, &err);
		tls_key_free(&key);
		if (r < 0) {
			snprintf(why, whylen, "DKIM signing with %s of %s: %s", sels[i], domain, err);
			goto out;
		}
	}
	*fields_r = strdup(out.data);
	if (*fields_r == NULL) {
		snprintf(why, whylen, "DKIM: out of memory");
		goto out;
	}
	log_info("proto=smtp event=dkim-signed id=%s domain=%s selectors=%s%s%s", id, domain,
		 sels[0], n > 1 ? "," : "", n > 1 ? sels[1] : "");
	rc = 0;
out:
	buf_free(&out);
	free(chunk);
	dkim_signer_free(&s);
	return rc;
}

/* Seal a forwarded port 25 message with an ARC set of domain. */
int smtp_arc_seal(const char *data_dir, const char *id, int fd, uint64_t skip, uint64_t total,
		  const char *domain, unsigned prior, int prior_pass, const char *results,
		  char **fields_r)
{
	*fields_r = NULL;
	char low[DKIM_DOMAIN_MAX + 1];
	size_t dl = strlen(domain);
	if (dl >= sizeof(low))
		return 0;
	for (size_t i = 0; i <= dl; i++)   /* key directories are named in lower case */
		low[i] = domain[i] >= 'A' && domain[i] <= 'Z' ? (char)(domain[i] + 32) : domain[i];
	domain = low;
	if (prior >= DKIM_ARC_INSTANCES_MAX || !dkim_keys_domain_ok(domain))
		return 0;
	char sels[2][DKIM_SELECTOR_MAX + 1];
	const char *err = "";
	int n = dkim_keys_signing(data_dir, domain, sels, &err);
	struct tls_key *key = NULL;
	int k;
	for (k = 0; k < n; k++) {   /* the RSA key: what every ARC verifier understands */
		char path[4400];
		if (dkim_keys_path(data_dir, domain, sels[k], path, sizeof(path)) < 0 ||
		    tls_key_load(path, &key, &err) < 0) {
			key = NULL;
			continue;
		}
		if (tls_key_alg(key) == TLS_KEY_RSA)
			break;
		tls_key_free(&key);
	}
	if (key == NULL) {
		log_info("proto=smtp event=arc-unsealed id=%s domain=%s reason=\"no RSA signing key "
			 "(postino dkim list %s)\"", id, domain, domain);
		return 0;
	}
	struct dkim_signer *s = dkim_signer_new();
	char *chunk = malloc(DKIM_READ_CHUNK);
	struct buf out;
	buf_init(&out, DKIM_FIELDS_MAX);
	int rc = -1;
	if (s == NULL || chunk == NULL)
		goto out;
	for (uint64_t pos = skip; pos < total;) {
		size_t want = total - pos < DKIM_READ_CHUNK ? (size_t)(total - pos) : DKIM_READ_CHUNK;
		ssize_t got = pread(fd, chunk, want, (off_t)pos);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			goto out;
		dkim_signer_feed(s, chunk, (size_t)got);
		pos += (uint64_t)got;
	}
	const char *cv = prior == 0 ? "none" : prior_pass ? "pass" : "fail";
	if (dkim_signer_arc_seal(s, prior + 1, cv, domain, sels[k], key, time(NULL), results, &out,
				 &err) < 0) {
		log_info("proto=smtp event=arc-unsealed id=%s domain=%s reason=\"%s\"", id, domain,
			 err);
		goto out;
	}
	*fields_r = strdup(out.data);
	if (*fields_r != NULL) {
		log_info("proto=smtp event=arc-sealed id=%s domain=%s selector=%s i=%u cv=%s", id,
			 domain, sels[k], prior + 1, cv);
		rc = 0;
	}
out:
	buf_free(&out);
	free(chunk);
	dkim_signer_free(&s);
	tls_key_free(&key);
	return rc;
}
