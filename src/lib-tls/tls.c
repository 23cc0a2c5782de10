/* tls.c - OpenSSL 3 server contexts with SNI, non-blocking sessions, self-signed certificates. */
#include "tls.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct tls_host {
	char *name;
	SSL_CTX *ctx;
};

struct tls_ctx {
	SSL_CTX *def;
	struct tls_host *hosts;
	size_t nhosts;
};

struct tls_session {
	SSL *ssl;
};

static __thread char tls_errbuf[256];

/* Remember the first queued OpenSSL error (or a fallback text) for tls_last_error. */
static const char *tls_set_error(const char *what)
{
	unsigned long e = ERR_get_error();
	char detail[200] = "";
	if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	snprintf(tls_errbuf, sizeof(tls_errbuf), "%s%s%s", what, e ? ": " : "", detail);
	return tls_errbuf;
}

/* The last failure on this thread. */
const char *tls_last_error(void)
{
	return tls_errbuf;
}

/* Choose the host context matching the SNI name, if any. */
static int tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_ctx *c = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < c->nhosts; i++) {
		if (strcasecmp(c->hosts[i].name, name) == 0) {
			SSL_set_SSL_CTX(ssl, c->hosts[i].ctx);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	const char *dot = strchr(name, '.');
	if (dot != NULL) {
		for (size_t i = 0; i < c->nhosts; i++) {
			const char *h = c->hosts[i].name;
			if (h[0] == '*' && h[1] == '.' && strcasecmp(h + 1, dot) == 0) {
				SSL_set_SSL_CTX(ssl, c->hosts[i].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_OK;   /* unknown names get the default certificate */
}

/* ALPN (RFC 7301): on a mail listener, take the listener's protocol when the client offers it
 * and fail the handshake with no_application_protocol when it offers only others, such as
 * http/1.1 (RFC 9325 section 3.7, the ALPACA attack). No ALPN from the client is fine. */
static int tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	const char *proto = SSL_get_app_data(ssl);
	(void)arg;
	if (proto == NULL)
		return SSL_TLSEXT_ERR_NOACK;   /* not a mail listener: no protocol chosen */
	size_t plen = strlen(proto);
	for (unsigned int i = 0; i < inlen && in[i] <= inlen - i - 1; i += 1u + in[i]) {
		if (in[i] == plen && memcmp(in + i + 1, proto, plen) == 0) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* One server SSL_CTX with our protocol policy and the given certificate. */
static SSL_CTX *tls_make_ctx(const char *cert, const char *key, const char **err_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*err_r = tls_set_error("SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* one read() takes what the socket has, not a record header and then its body */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!RC4");
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"postino", 7);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);   /* every host context: SNI may switch */
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		static char msg[512];
		snprintf(msg, sizeof(msg), "cannot load certificate %s (%s)", cert,
			 tls_set_error("PEM"));
		*err_r = msg;
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		static char msg[512];
		snprintf(msg, sizeof(msg), "cannot load key %s or it does not match %s (%s)", key,
			 cert, tls_set_error("PEM"));
		*err_r = msg;
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Load the default certificate. */
struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, const char **err_r)
{
	struct tls_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*err_r = "out of memory";
		return NULL;
	}
	c->def = tls_make_ctx(cert_file, key_file, err_r);
	if (c->def == NULL) {
		free(c);
		return NULL;
	}
	SSL_CTX_set_tlsext_servername_callback(c->def, tls_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(c->def, c);
	return c;
}

/* Add an SNI host certificate. */
int tls_ctx_add_host(struct tls_ctx *c, const char *name, const char *cert_file,
		     const char *key_file, const char **err_r)
{
	SSL_CTX *ctx = tls_make_ctx(cert_file, key_file, err_r);
	if (ctx == NULL)
		return -1;
	struct tls_host *h = realloc(c->hosts, (c->nhosts + 1) * sizeof(*h));
	if (h == NULL) {
		SSL_CTX_free(ctx);
		*err_r = "out of memory";
		return -1;
	}
	c->hosts = h;
	h[c->nhosts].name = strdup(name);
	h[c->nhosts].ctx = ctx;
	c->nhosts++;
	return 0;
}

/* Free a context and its host certificates. */
void tls_ctx_free(struct tls_ctx **cp)
{
	struct tls_ctx *c = *cp;
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nhosts; i++) {
		free(c->hosts[i].name);
		SSL_CTX_free(c->hosts[i].ctx);
	}
	free(c->hosts);
	SSL_CTX_free(c->def);
	free(c);
	*cp = NULL;
}

/* A session of c's default context on fd (no side chosen yet). */
static struct tls_session *session_on_fd(struct tls_ctx *c, int fd)
{
	struct tls_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->ssl = SSL_new(c->def);
	if (s->ssl == NULL || SSL_set_fd(s->ssl, fd) != 1) {
		tls_set_error("SSL_new");
		SSL_free(s->ssl);
		free(s);
		return NULL;
	}
	return s;
}

/* New server session on fd. */
struct tls_session *tls_session_new(struct tls_ctx *c, int fd)
{
	struct tls_session *s = session_on_fd(c, fd);
	if (s)
		SSL_set_accept_state(s->ssl);
	return s;
}

/* The one ALPN protocol this server session accepts. */
void tls_session_set_alpn(struct tls_session *s, const char *proto)
{
	SSL_set_app_data(s->ssl, (void *)(uintptr_t)proto);   /* static string, never written */
}

/* Client context for outbound SMTP and HTTPS. */
struct tls_ctx *tls_client_ctx_new(const char **err_r)
{
	return tls_client_ctx_new_ca("", err_r);
}

struct tls_ctx *tls_client_ctx_new_ca(const char *ca_file, const char **err_r)
{
	struct tls_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*err_r = "out of memory";
		return NULL;
	}
	c->def = SSL_CTX_new(TLS_client_method());
	if (c->def == NULL) {
		*err_r = tls_set_error("SSL_CTX_new");
		free(c);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(c->def, TLS1_2_VERSION);
	/* a peer closing without close_notify ends the stream: the protocols on top (SMTP replies,
	 * HTTP Content-Length) say whether all arrived */
	SSL_CTX_set_options(c->def, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (SSL_CTX_dane_enable(c->def) <= 0) {
		*err_r = tls_set_error("DANE");
		SSL_CTX_free(c->def);
		free(c);
		return NULL;
	}
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(c->def, ca_file, NULL) != 1) {
			*err_r = tls_set_error(ca_file);
			SSL_CTX_free(c->def);
			free(c);
			return NULL;
		}
	} else {
		SSL_CTX_set_default_verify_paths(c->def);
	}
	return c;
}

/* New client session on fd. */
struct tls_session *tls_client_session_new(struct tls_ctx *c, int fd, const char *host,
					   int verify)
{
	struct tls_session *s = session_on_fd(c, fd);
	if (s == NULL)
		return NULL;
	if (host && host[0] && strchr(host, ':') == NULL)
		SSL_set_tlsext_host_name(s->ssl, host);
	if (verify == TLS_VERIFY_FAIL || verify == TLS_VERIFY_CHECK) {
		SSL_set_verify(s->ssl, verify == TLS_VERIFY_FAIL ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
			       NULL);
		SSL_set1_host(s->ssl, host);
	} else {
		SSL_set_verify(s->ssl, SSL_VERIFY_NONE, NULL);
	}
	SSL_set_connect_state(s->ssl);
	return s;
}

int tls_session_dane(struct tls_session *s, const char *host, const struct tls_tlsa *r, size_t n)
{
	if (SSL_dane_enable(s->ssl, host) <= 0)
		return -1;
	int usable = 0;
	for (size_t i = 0; i < n; i++) {
		if (r[i].usage != 2 && r[i].usage != 3)
			continue;   /* DANE-TA(2) and DANE-EE(3) only */
		int a = SSL_dane_tlsa_add(s->ssl, r[i].usage, r[i].selector, r[i].mtype,
					  r[i].data, r[i].len);
		if (a > 0)
			usable++;
	}
	return usable;
}

int tls_peer_verified(struct tls_session *s, char *why, size_t whylen)
{
	X509 *peer = SSL_get1_peer_certificate(s->ssl);
	if (peer == NULL) {
		snprintf(why, whylen, "the server sent no certificate");
		return 0;
	}
	X509_free(peer);
	long v = SSL_get_verify_result(s->ssl);
	if (v == X509_V_OK)
		return 1;
	snprintf(why, whylen, "%s", X509_verify_cert_error_string(v));
	return 0;
}

/* Free a session without sending anything. */
void tls_session_free(struct tls_session **sp)
{
	if (*sp == NULL)
		return;
	SSL_free((*sp)->ssl);
	free(*sp);
	*sp = NULL;
}

/* Map an SSL_* result to our return convention. */
static int tls_result(struct tls_session *s, int r, const char *what)
{
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			snprintf(tls_errbuf, sizeof(tls_errbuf), "%s: connection closed", what);
			return -1;
		}
		/* fall through */
	default:
		tls_set_error(what);
		return -1;
	}
}

/* Drive the handshake. */
int tls_handshake(struct tls_session *s)
{
	ERR_clear_error();
	int r = SSL_do_handshake(s->ssl);
	if (r == 1)
		return 1;
	r = tls_result(s, r, "handshake");
	return r == 0 ? -1 : r;
}

/* Read decrypted bytes. */
ssize_t tls_read(struct tls_session *s, void *buf, size_t n)
{
	size_t got = 0;
	ERR_clear_error();
	int r = SSL_read_ex(s->ssl, buf, n, &got);
	if (r == 1)
		return (ssize_t)got;
	return tls_result(s, 0, "read");
}

/* Write bytes (partial writes allowed). */
ssize_t tls_write(struct tls_session *s, const void *buf, size_t n)
{
	size_t done = 0;
	ERR_clear_error();
	int r = SSL_write_ex(s->ssl, buf, n, &done);
	if (r == 1)
		return (ssize_t)done;
	r = tls_result(s, 0, "write");
	return r == 0 ? -1 : r;
}

/* Bytes waiting inside OpenSSL: decrypted, or read ahead from the socket and not yet
 * decrypted (then 1 stands for an unknown amount). */
size_t tls_pending(struct tls_session *s)
{
	size_t n = (size_t)SSL_pending(s->ssl);
	return n > 0 ? n : SSL_has_pending(s->ssl) ? 1 : 0;
}

/* Best-effort close_notify. */
void tls_shutdown(struct tls_session *s)
{
	ERR_clear_error();
	SSL_shutdown(s->ssl);
	ERR_clear_error();
}

/* Negotiated protocol name, e.g. "TLSv1.3". */
const char *tls_version(struct tls_session *s)
{
	return SSL_get_version(s->ssl);
}

/* Negotiated cipher name. */
const char *tls_cipher(struct tls_session *s)
{
	const char *c = SSL_get_cipher_name(s->ssl);
	return c ? c : "unknown";
}

/* SNI name sent by the client. */
const char *tls_sni(struct tls_session *s)
{
	return SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
}

/* Write a self-signed P-256 certificate valid 10 years for hostname. */
int tls_make_selfsigned(const char *hostname, const char *cert_file, const char *key_file,
			const char **err_r)
{
	int ok = -1;
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f = NULL;
	if (pkey == NULL || x == NULL) {
		*err_r = tls_set_error("key generation");
		goto out;
	}
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
	X509_set_pubkey(x, pkey);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
	X509_set_issuer_name(x, n);
	char san[300];
	snprintf(san, sizeof(san), "DNS:%s", hostname);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext == NULL) {
		*err_r = tls_set_error("subjectAltName");
		goto out;
	}
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (X509_sign(x, pkey, EVP_sha256()) == 0) {
		*err_r = tls_set_error("sign");
		goto out;
	}
	f = fopen(key_file, "wx");
	if (f == NULL || PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		*err_r = "cannot write the key file (does it exist already?)";
		goto out;
	}
	fclose(f);
	f = fopen(cert_file, "w");
	if (f == NULL || PEM_write_X509(f, x) != 1) {
		*err_r = "cannot write the certificate file";
		goto out;
	}
	ok = 0;
out:
	if (f)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return ok;
}

/* The context whose certificate serves `name` (as the SNI callback chooses), else the default. */
static SSL_CTX *tls_ctx_for_name(struct tls_ctx *c, const char *name)
{
	if (name != NULL) {
		for (size_t i = 0; i < c->nhosts; i++)
			if (strcasecmp(c->hosts[i].name, name) == 0)
				return c->hosts[i].ctx;
		const char *dot = strchr(name, '.');
		for (size_t i = 0; dot != NULL && i < c->nhosts; i++) {
			const char *h = c->hosts[i].name;
			if (h[0] == '*' && h[1] == '.' && strcasecmp(h + 1, dot) == 0)
				return c->hosts[i].ctx;
		}
	}
	return c->def;
}

/* Does the certificate chosen for name cover name? */
int tls_ctx_covers(struct tls_ctx *c, const char *name)
{
	X509 *cert = SSL_CTX_get0_certificate(tls_ctx_for_name(c, name));
	return cert != NULL && X509_check_host(cert, name, strlen(name), 0, NULL) == 1;
}

/* Sign data as CMS SignedData (content attached, DER) with the certificate of host `name`. */
int tls_cms_sign(struct tls_ctx *c, const char *name, const void *data, size_t len,
		 unsigned char **der_r, size_t *der_len_r, const char **err_r)
{
	SSL_CTX *ctx = tls_ctx_for_name(c, name);
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	EVP_PKEY *key = SSL_CTX_get0_privatekey(ctx);
	STACK_OF(X509) *chain = NULL;
	*der_r = NULL;
	if (cert == NULL || key == NULL || len > INT32_MAX) {
		*err_r = "no certificate to sign with";
		return -1;
	}
	SSL_CTX_get0_chain_certs(ctx, &chain);
	BIO *in = BIO_new_mem_buf(data, (int)len);
	CMS_ContentInfo *cms = in ? CMS_sign(cert, key, chain, in, CMS_BINARY) : NULL;
	unsigned char *der = NULL;
	int n = cms ? i2d_CMS_ContentInfo(cms, &der) : -1;
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	if (n <= 0) {
		*err_r = tls_set_error("CMS_sign");
		return -1;
	}
	/* hand back malloc'd memory so callers need no OpenSSL free function */
	*der_r = malloc((size_t)n);
	if (*der_r != NULL)
		memcpy(*der_r, der, (size_t)n);
	OPENSSL_free(der);
	if (*der_r == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	*der_len_r = (size_t)n;
	return 0;
}
