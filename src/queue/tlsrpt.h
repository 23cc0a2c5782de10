/* tlsrpt.h - SMTP TLS Reporting (RFC 8460) for the domains whose MTA-STS policy we apply: every
 * connection attempt is recorded, and each finished day goes to the domain's `rua=mailto:`
 * addresses as one gzip'd JSON report (see tlsrpt.c). */
#ifndef POSTINO_TLSRPT_H
#define POSTINO_TLSRPT_H

#include <time.h>

struct queue;
struct sts_policy;

/* Delivery thread: one attempt to reach an MX host of domain under policy p; result is "success"
 * or an RFC 8460 result type ("starttls-not-supported", "certificate-host-mismatch", ...). */
void tlsrpt_record(struct queue *q, const char *domain, const struct sts_policy *p,
		   const char *mx, const char *ip, const char *result);
/* Scheduler: send the reports of finished days (and today's when asked), at most once a minute
 * unless asked. */
void tlsrpt_run(struct queue *q, time_t now);
/* CLI: ask the running queue to send every report now, today's included. 0 / -1 (not running). */
int tlsrpt_ask_now(const char *queue_dir);

#endif
