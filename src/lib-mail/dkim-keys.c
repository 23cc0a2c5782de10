/* dkim-keys.c - DKIM key files of the hosted domains (layout in dkim-keys.h). */
/* Paths are built into fixed buffers and checked for truncation. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "fsutil.h"
#include "dkim-keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS_PATH_MAX 4400           /* data dir (CONFIG_PATH_MAX 4096) + dkim/<domain>/<sel>.key */
#define SIGNING_FILE_MAX 1024        /* the signing file: two selectors */

/* Is domain a plain lower-case DNS name? */
int dkim_keys_domain_ok(const char *domain)
{
	size_t n = strlen(domain);
	if (n == 0 || n > DKIM_DOMAIN_MAX || domain[0] == '.' || domain[0] == '-' ||
	    domain[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = domain[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return 0;
		if (c == '.' && domain[i + 1] == '.')
			return 0;
	}
	return 1;
}

/* Is selector one DNS label? */
int dkim_keys_selector_ok(const char *selector)
{
	size_t n = strlen(selector);
	if (n == 0 || n > DKIM_SELECTOR_MAX || selector[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = selector[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return 0;
	}
	return 1;
}

/* <data>/dkim/<domain>. */
static int domain_dir(const char *data_dir, const char *domain, char *out, size_t outlen)
{
	if (!dkim_keys_domain_ok(domain))
		return -1;
	int n = snprintf(out, outlen, "%s/dkim/%s", data_dir, domain);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Path of a selector's key file. */
int dkim_keys_path(const char *data_dir, const char *domain, const char *selector, char *out,
		   size_t outlen)
{
	if (!dkim_keys_domain_ok(domain) || !dkim_keys_selector_ok(selector))
		return -1;
	int n = snprintf(out, outlen, "%s/dkim/%s/%s.key", data_dir, domain, selector);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Create <data>/dkim and <data>/dkim/<domain> (0700). */
static int make_dirs(const char *data_dir, const char *domain, const char **err_r)
{
	char p[KEYS_PATH_MAX];
	snprintf(p, sizeof(p), "%s/dkim", data_dir);
	if (mkdir(p, 0700) < 0 && errno != EEXIST) {
		*err_r = "cannot create <data>/dkim";
		return -1;
	}
	if (domain_dir(data_dir, domain, p, sizeof(p)) < 0) {
		*err_r = "not a plain domain name";
		return -1;
	}
	if (mkdir(p, 0700) < 0) {
		if (errno == EEXIST)
			return 0;
		*err_r = "cannot create the domain's key directory";
		return -1;
	}
	snprintf(p, sizeof(p), "%s/dkim", data_dir);
	fs_fsync_dir(p);
	return 0;
}

/* Order of creation. */
int dkim_keyinfo_cmp_time(const struct dkim_keyinfo *a, const struct dkim_keyinfo *b)
{
	if (a->created != b->created)
		return a->created < b->created ? -1 : 1;
	if (a->created_ns != b->created_ns)
		return a->created_ns < b->created_ns ? -1 : 1;
	return 0;
}

/* Order keys oldest first. */
static int keyinfo_cmp(const void *a, const void *b)
{
	int r = dkim_keyinfo_cmp_time(a, b);
	return r ? r : strcmp(((const struct dkim_keyinfo *)a)->selector,
			      ((const struct dkim_keyinfo *)b)->selector);
}

/* Every key of domain. */
int dkim_keys_list(const char *data_dir, const char *domain, struct dkim_keyinfo *out, size_t max,
		   const char **err_r)
{
	char dir[KEYS_PATH_MAX], p[KEYS_PATH_MAX];
	if (domain_dir(data_dir, domain, dir, sizeof(dir)) < 0) {
		*err_r = "not a plain domain name";
		return -1;
	}
	char sig[2][DKIM_SELECTOR_MAX + 1];
	int nsig = dkim_keys_signing(data_dir, domain, sig, err_r);
	if (nsig < 0)
		return -1;
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		*err_r = "cannot read the domain's key directory";
		return -1;
	}
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max) {
		size_t l = strlen(e->d_name);
		if (l <= 4 || strcmp(e->d_name + l - 4, ".key") != 0 || l - 4 > DKIM_SELECTOR_MAX)
			continue;
		struct dkim_keyinfo *k = &out[n];
		memset(k, 0, sizeof(*k));
		memcpy(k->selector, e->d_name, l - 4);
		k->selector[l - 4] = '\0';
		if (!dkim_keys_selector_ok(k->selector))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(p, &st) < 0)
			continue;
		k->created = st.st_mtim.tv_sec;
		k->created_ns = st.st_mtim.tv_nsec;
		for (int i = 0; i < nsig; i++)
			k->signing |= strcmp(sig[i], k->selector) == 0;
		struct tls_key *key;
		if (tls_key_load(p, &key, &k->err) == 0) {
			k->readable = 1;
			k->alg = tls_key_alg(key);
			k->bits = tls_key_bits(key);
			if (tls_key_public_b64(key, k->pub, sizeof(k->pub)) < 0) {
				k->readable = 0;
				k->err = "cannot encode the public key";
			}
			tls_key_free(&key);
		} else {   /* the name says which algorithm it was made for */
			k->alg = strchr(k->selector, 'e') ? TLS_KEY_ED25519 : TLS_KEY_RSA;
		}
		n++;
	}
	closedir(d);
	qsort(out, n, sizeof(*out), keyinfo_cmp);
	return (int)n;
}

/* Create a new pair with fresh selectors. */
int dkim_keys_new_pair(const char *data_dir, const char *domain, time_t now,
		       char rsa_sel_r[DKIM_SELECTOR_MAX + 1], char ed_sel_r[DKIM_SELECTOR_MAX + 1],
		       const char **err_r)
{
	if (make_dirs(data_dir, domain, err_r) < 0)
		return -1;
	struct tm tm;
	gmtime_r(&now, &tm);
	char ym[16], rp[KEYS_PATH_MAX], ep[KEYS_PATH_MAX];
	strftime(ym, sizeof(ym), "%Y%m", &tm);
	for (unsigned i = 1; i < 1000; i++) {
		char num[8] = "";
		if (i > 1)
			snprintf(num, sizeof(num), "%u", i);
		snprintf(rsa_sel_r, DKIM_SELECTOR_MAX + 1, "%sr%s", ym, num);
		snprintf(ed_sel_r, DKIM_SELECTOR_MAX + 1, "%se%s", ym, num);
		if (dkim_keys_path(data_dir, domain, rsa_sel_r, rp, sizeof(rp)) < 0 ||
		    dkim_keys_path(data_dir, domain, ed_sel_r, ep, sizeof(ep)) < 0) {
			*err_r = "key path too long";
			return -1;
		}
		if (access(rp, F_OK) == 0 || access(ep, F_OK) == 0)
			continue;
		if (tls_key_generate(TLS_KEY_RSA, rp, err_r) < 0)
			return -1;
		if (tls_key_generate(TLS_KEY_ED25519, ep, err_r) < 0) {
			unlink(rp);
			return -1;
		}
		return 0;
	}
	*err_r = "no free selector name this month";
	return -1;
}

/* Write the signing file. */
int dkim_keys_set_signing(const char *data_dir, const char *domain,
			  char sels[][DKIM_SELECTOR_MAX + 1], size_t n, const char **err_r)
{
	char dir[KEYS_PATH_MAX], p[KEYS_PATH_MAX + 16], tmp[KEYS_PATH_MAX + 16];
	if (make_dirs(data_dir, domain, err_r) < 0 || domain_dir(data_dir, domain, dir,
								  sizeof(dir)) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/signing", dir);
	snprintf(tmp, sizeof(tmp), "%s/signing.tmp", dir);
	FILE *f = fopen(tmp, "we");
	if (f == NULL) {
		*err_r = "cannot write the signing file";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\n", sels[i]);
	int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, p) < 0 || fs_fsync_dir(dir) < 0) {
		unlink(tmp);
		*err_r = "cannot write the signing file";
		return -1;
	}
	return 0;
}

/* Read the signing selectors. */
int dkim_keys_signing(const char *data_dir, const char *domain,
		      char sels[2][DKIM_SELECTOR_MAX + 1], const char **err_r)
{
	char p[KEYS_PATH_MAX + 16], text[SIGNING_FILE_MAX + 1];
	if (domain_dir(data_dir, domain, p, sizeof(p) - 16) < 0) {
		*err_r = "not a plain domain name";
		return -1;
	}
	strcat(p, "/signing");
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*err_r = "cannot read the signing file";
		return -1;
	}
	ssize_t got = read(fd, text, SIGNING_FILE_MAX);
	close(fd);
	if (got < 0) {
		*err_r = "cannot read the signing file";
		return -1;
	}
	text[got] = '\0';
	int n = 0;
	for (char *save = NULL, *t = strtok_r(text, "\n", &save); t && n < 2;
	     t = strtok_r(NULL, "\n", &save)) {
		if (!dkim_keys_selector_ok(t)) {
			*err_r = "the signing file holds something that is not a selector";
			return -1;
		}
		snprintf(sels[n++], DKIM_SELECTOR_MAX + 1, "%s", t);
	}
	return n;
}

/* Remove a key file. */
int dkim_keys_remove(const char *data_dir, const char *domain, const char *selector,
		     const char **err_r)
{
	char p[KEYS_PATH_MAX], dir[KEYS_PATH_MAX];
	if (dkim_keys_path(data_dir, domain, selector, p, sizeof(p)) < 0 ||
	    domain_dir(data_dir, domain, dir, sizeof(dir)) < 0) {
		*err_r = "not a valid domain or selector";
		return -1;
	}
	if (unlink(p) < 0) {
		if (errno == ENOENT)
			return 0;
		*err_r = "cannot remove the key file";
		return -1;
	}
	if (fs_fsync_dir(dir) < 0) {
		*err_r = "cannot sync the key directory";
		return -1;
	}
	return 1;
}

/* First keys of a domain. */
int dkim_keys_init_domain(const char *data_dir, const char *domain, time_t now,
			  const char **err_r)
{
	char sels[2][DKIM_SELECTOR_MAX + 1];
	int n = dkim_keys_signing(data_dir, domain, sels, err_r);
	if (n != 0)
		return n < 0 ? -1 : 0;
	if (dkim_keys_new_pair(data_dir, domain, now, sels[0], sels[1], err_r) < 0)
		return -1;
	if (dkim_keys_set_signing(data_dir, domain, sels, 2, err_r) < 0)
		return -1;
	return 1;
}
