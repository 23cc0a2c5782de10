/* tls.h - the only interface to the TLS library (OpenSSL 3).
 *
 * A tls_ctx holds a default certificate and any number of host certificates chosen by SNI
 * (exact name first, then a "*.parent" wildcard entry). TLS 1.2 and 1.3 only.
 */
#ifndef POSTINO_TLS_H
#define POSTINO_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct tls_ctx;
struct tls_session;

enum { TLS_WANT_READ = -2, TLS_WANT_WRITE = -3 };

/* Load the default certificate chain and key. NULL with *err_r set (static buffer) on failure. */
struct tls_ctx *tls_ctx_new(const char *cert_file, const char *key_file, const char **err_r);
/* Add a certificate for host name `name` (SNI). 0 ok, -1 error. */
int tls_ctx_add_host(struct tls_ctx *ctx, const char *name, const char *cert_file,
		     const char *key_file, const char **err_r);
void tls_ctx_free(struct tls_ctx **ctx);

/* Start a server-side session on a connected socket. NULL on failure. */
struct tls_session *tls_session_new(struct tls_ctx *ctx, int fd);
void tls_session_free(struct tls_session **s);
/* A server session of a mail listener: proto ("smtp", "imap", "pop3", a static string) is the
 * only ALPN protocol accepted; a client offering ALPN without it (e.g. only http/1.1, RFC 9325
 * section 3.7) fails the handshake with no_application_protocol. Without this call the session
 * ignores ALPN (HTTPS). */
void tls_session_set_alpn(struct tls_session *s, const char *proto);
/* 1 done, TLS_WANT_READ / TLS_WANT_WRITE, -1 failed (reason in tls_last_error). */
int tls_handshake(struct tls_session *s);
/* >0 bytes, 0 clean EOF, -1 error, TLS_WANT_*. */
ssize_t tls_read(struct tls_session *s, void *buf, size_t n);
ssize_t tls_write(struct tls_session *s, const void *buf, size_t n);
/* Bytes buffered inside the TLS layer, not yet read: decrypted ones, or 1 when only raw bytes
 * read ahead from the socket wait there (the socket may then be empty: read anyway). */
size_t tls_pending(struct tls_session *s);
/* Send close_notify (best effort, non-blocking). */
void tls_shutdown(struct tls_session *s);
const char *tls_version(struct tls_session *s);
const char *tls_cipher(struct tls_session *s);
/* The SNI name the client sent, or NULL. */
const char *tls_sni(struct tls_session *s);
/* A short description of the last failure on this thread (static buffer). */
const char *tls_last_error(void);

/* Sign `data` as CMS SignedData (content attached, DER; RFC 5652) with the certificate and key
 * that SNI would choose for host `name` (NULL: the default). *der_r is malloc'd. 0 ok, -1 error. */
int tls_cms_sign(struct tls_ctx *ctx, const char *name, const void *data, size_t len,
		 unsigned char **der_r, size_t *der_len_r, const char **err_r);
/* 1 if the certificate SNI would choose for host `name` names it (subject alternative names or
 * common name, wildcards as RFC 6125 allows), else 0. For "config check". */
int tls_ctx_covers(struct tls_ctx *ctx, const char *name);
/* Client side (the outbound queue): a context with the system's trusted CAs, TLS 1.2+, or those
 * of ca_file when it is not empty. NULL with *err_r set on failure. */
struct tls_ctx *tls_client_ctx_new_ca(const char *ca_file, const char **err_r);
struct tls_ctx *tls_client_ctx_new(const char **err_r);
/* How a client session treats the server's certificate. */
enum tls_verify {
	TLS_VERIFY_OFF,     /* opportunistic TLS: anything goes */
	TLS_VERIFY_FAIL,    /* the handshake fails unless it chains to a trusted CA and names host */
	TLS_VERIFY_CHECK,   /* checked as with TLS_VERIFY_FAIL, the result left to
			     * tls_peer_verified (MTA-STS: enforce refuses, testing reports) */
};
/* A client session on fd sending SNI `host`. NULL on failure. */
struct tls_session *tls_client_session_new(struct tls_ctx *ctx, int fd, const char *host,
					   int verify);
/* One TLSA record (RFC 6698): certificate usage, selector, matching type, digest. */
struct tls_tlsa {
	unsigned char usage, selector, mtype;
	unsigned char data[64];
	size_t len;
};
/* DANE (RFC 7672) on a new TLS_VERIFY_CHECK client session, before its handshake: the
 * certificate must match one of the records (DANE-EE: the key itself, no name check; DANE-TA:
 * a chain to that key, naming host). Returns the number of usable records (PKIX-TA/PKIX-EE and
 * unknown ones are not usable for SMTP, RFC 7672 3.1.3), -1 error. */
int tls_session_dane(struct tls_session *s, const char *host, const struct tls_tlsa *r, size_t n);
/* After the handshake of a TLS_VERIFY_CHECK session: 1 the certificate chains to a trusted CA
 * and names the host, else 0 with the reason in why. */
int tls_peer_verified(struct tls_session *s, char *why, size_t whylen);

/* Create a self-signed certificate + key for hostname (quickstart). 0 ok, -1 error. */
int tls_make_selfsigned(const char *hostname, const char *cert_file, const char *key_file,
			const char **err_r);

#endif
