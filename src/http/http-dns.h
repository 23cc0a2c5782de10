/* http-dns.h - "postino dns DOMAIN": the DNS records a hosted domain should publish. */
#ifndef POSTINO_HTTP_DNS_H
#define POSTINO_HTTP_DNS_H

#include <stdio.h>

#include "config.h"

/* Run "postino dns" (argv[0] is "dns"). Returns the exit code: 0 ok, 1 error, 2 usage. */
int http_dns_main(const struct config *cfg, int argc, char **argv);
/* Print the records of domain in zone-file syntax. ipv4/ipv6: addresses of the server (NULL:
 * unknown). */
void http_dns_print(FILE *out, const struct config *cfg, const char *domain, const char *ipv4,
		    const char *ipv6);

#endif
