/* dns.h - libunbound contexts for the dns_servers setting, and wire-format names. */
#ifndef POSTINO_DNS_H
#define POSTINO_DNS_H

#include <stddef.h>

struct ub_ctx;

/* A libunbound context asking the resolvers of the dns_servers setting ("IP[:PORT] ...", ""
 * for /etc/resolv.conf), special-use names (test., invalid.) passed on to them. NULL on error
 * (err set). ta_file: DNSSEC trust anchors ("" for none). Used by the queue (queue-dns.c) and the
 * inbound checks (smtp-authin.c). */
struct ub_ctx *dns_ctx_new(const char *servers, const char *ta_file, char *err, size_t errlen);
/* A domain name in uncompressed wire format (as libunbound returns rdata) to text, no trailing
 * dot, "" for the root; only LDH and '_' octets. 0 ok, -1 malformed or too long for out. */
int dns_wire_name(const unsigned char *p, size_t n, char *out, size_t outlen);

#endif
