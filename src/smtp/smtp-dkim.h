/* smtp-dkim.h - DKIM-signing an accepted message before it is queued (see smtp-dkim.c). */
#ifndef POSTINO_SMTP_DKIM_H
#define POSTINO_SMTP_DKIM_H

#include <stddef.h>
#include <stdint.h>

/* Pool thread, before the message is queued: sign the message in fd (octets [skip, total):
 * the message after our Return-Path/Received trace) for the domain of its From: address, with
 * every signing key that domain has (<data>/dkim/<domain>/signing). *fields_r gets the
 * DKIM-Signature fields (malloc'd, CRLF-terminated, to be sent before the message) or NULL when
 * the domain has no signing key or the message cannot be signed (logged). 0 ok, -1 a key that
 * should sign cannot be used or the file cannot be read (why set): a temporary failure. */
int smtp_dkim_sign(const char *data_dir, const char *id, int fd, uint64_t skip, uint64_t total,
		   char **fields_r, char *why, size_t whylen);

/* Pool thread: seal a port 25 message that is forwarded to other servers with an ARC set
 * (RFC 8617) of domain (a hosted domain the recipient belonged to), signed with its RSA
 * signing key. prior: ARC sets already on the message, prior_pass whether they verified,
 * results our Authentication-Results value. *fields_r: the fields to send before the message
 * (malloc'd) or NULL when not sealed (no key, too many sets; logged). Sealing is best effort:
 * 0 sealed or skipped, -1 failed (logged); the message goes out either way. */
int smtp_arc_seal(const char *data_dir, const char *id, int fd, uint64_t skip, uint64_t total,
		  const char *domain, unsigned prior, int prior_pass, const char *results,
		  char **fields_r);

#endif
