/* cli-status.c - "postino status": fetch /metrics from the admin listener and summarise it.
 *
 * The counters live in the server's shared memory; the admin listener is their one reader, so
 * status prints exactly what a Prometheus scrape sees.
 */
#include "cli-status.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define STATUS_REPLY_MAX (1024 * 1024)   /* a /metrics page is ~10 KB */
#define STATUS_TIMEOUT_S 5

/* GET /metrics from host:port into a malloc'd NUL-terminated body. NULL on error (printed). */
static char *status_fetch(const char *host, unsigned port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
	struct addrinfo *res;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (strcmp(host, "*") == 0)
		host = "127.0.0.1";
	if (getaddrinfo(host, portstr, &hints, &res) != 0) {
		fprintf(stderr, "postino: admin.listen %s is not an address\n", host);
		return NULL;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = STATUS_TIMEOUT_S };
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		fprintf(stderr, "postino: cannot reach the admin listener %s:%u: is postino serve "
				"running?\n", host, port);
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return NULL;
	}
	freeaddrinfo(res);
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
				  "Connection: close\r\n\r\n";
	char *buf = malloc(STATUS_REPLY_MAX + 1);
	size_t n = 0;
	ssize_t k;
	if (buf == NULL || write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
		free(buf);
		close(fd);
		fprintf(stderr, "postino: cannot ask the admin listener\n");
		return NULL;
	}
	while (n < STATUS_REPLY_MAX && (k = read(fd, buf + n, STATUS_REPLY_MAX - n)) > 0)
		n += (size_t)k;
	close(fd);
	buf[n] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0 || body == NULL) {
		fprintf(stderr, "postino: the admin listener did not answer with metrics\n");
		free(buf);
		return NULL;
	}
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return buf;
}

/* The value of the sample "name{labels}" exactly as written (labels "" for none), or 0. */
static double status_val(const char *text, const char *sample)
{
	size_t n = strlen(sample);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, sample, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return 0;
}

/* Print the summary. */
int cli_status_main(const struct config *cfg)
{
	const struct listener_conf *adm = &cfg->l[LST_ADMIN];
	if (adm->port == 0) {
		fprintf(stderr, "postino: the admin listener is off: set admin_port (e.g. "
				"admin_port = 9187, on 127.0.0.1 unless admin.listen says "
				"otherwise) in %s and reload\n", cfg->path);
		return 1;
	}
	char *t = status_fetch(adm->listen, adm->port);
	if (t == NULL)
		return 1;
	char s[256];
	printf("connections");
	for (int i = 0; i < LST_COUNT; i++) {
		snprintf(s, sizeof(s), "postino_connections_total{listener=\"%s\"}",
			 cfg->l[i].name);
		if (cfg->l[i].port)
			printf(" %s %.0f", cfg->l[i].name, status_val(t, s));
	}
	printf("\nlogins");
	static const char *const protos[] = { "smtp", "imap", "pop3" };
	for (size_t i = 0; i < 3; i++) {
		char ok[128], bad[128];
		snprintf(ok, sizeof(ok), "postino_logins_total{proto=\"%s\",result=\"ok\"}",
			 protos[i]);
		snprintf(bad, sizeof(bad), "postino_logins_total{proto=\"%s\",result=\"failed\"}",
			 protos[i]);
		printf("%s %s %.0f ok %.0f failed", i ? "," : "", protos[i], status_val(t, ok),
		       status_val(t, bad));
	}
	printf("\nmessages received %.0f, delivered %.0f local %.0f remote, bounced %.0f, "
	       "deferred %.0f\n", status_val(t, "postino_messages_received_total"),
	       status_val(t, "postino_messages_delivered_total{where=\"local\"}"),
	       status_val(t, "postino_messages_delivered_total{where=\"remote\"}"),
	       status_val(t, "postino_messages_bounced_total"),
	       status_val(t, "postino_messages_deferred_total"));
	printf("queue %.0f messages, oldest %.0f s\n", status_val(t, "postino_queue_messages"),
	       status_val(t, "postino_queue_oldest_seconds"));
	printf("tls handshake failures %.0f\n",
	       status_val(t, "postino_tls_handshake_failures_total"));
	double dn = status_val(t, "postino_delivery_seconds_count{proto=\"smtp\"}");
	printf("delivery %.0f, mean %.1f ms", dn,
	       dn ? status_val(t, "postino_delivery_seconds_sum{proto=\"smtp\"}") * 1000 / dn : 0);
	for (size_t i = 0; i < 3; i++) {
		char c[128], sum[128];
		snprintf(c, sizeof(c), "postino_command_seconds_count{proto=\"%s\"}", protos[i]);
		snprintf(sum, sizeof(sum), "postino_command_seconds_sum{proto=\"%s\"}", protos[i]);
		double n = status_val(t, c);
		printf("; %s commands %.0f, mean %.1f ms", protos[i], n,
		       n ? status_val(t, sum) * 1000 / n : 0);
	}
	printf("\n");
	for (const char *p = strstr(t, "\npostino_worker_resident_bytes{"); p;
	     p = strstr(p + 1, "\npostino_worker_resident_bytes{")) {
		unsigned w;
		int pid;
		double rss;
		if (sscanf(p, "\npostino_worker_resident_bytes{worker=\"%u\",pid=\"%d\"} %lf", &w,
			   &pid, &rss) == 3)
			printf("worker %u pid %d resident %.1f MB\n", w, pid, rss / 1e6);
	}
	free(t);
	return 0;
}
