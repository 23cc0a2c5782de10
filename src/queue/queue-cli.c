/* queue-cli.c - "postino queue list|show|flush|hold|release|delete". */
/* Error and reply texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "queue.h"
#include "tlsrpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fsutil.h"
#include "log.h"

static const char usage[] =
	"usage: postino queue COMMAND [--config FILE | --data DIR]\n"
	"  list                     every queued message: id, size, arrival, sender, recipients\n"
	"  show ID                  one message's envelope and the state of each recipient\n"
	"  flush                    retry every message now (held ones stay held)\n"
	"  hold ID                  keep a message from being sent until released\n"
	"  hold --sender ADDRESS    hold everything from ADDRESS, queued now or later\n"
	"  release ID               send a held message again\n"
	"  release --sender ADDRESS undo 'hold --sender'\n"
	"  delete ID                remove a message from the queue without a report\n"
	"  tls-reports              send the SMTP TLS reports (RFC 8460) now, today's included\n"
	"exit codes: 0 ok, 1 error (such as no such message), 2 usage\n";

static int is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0;
}

/* Print a time as local date and time. */
static const char *when(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%d %H:%M:%S", &tm);
	return out;
}

/* Envelope text escaped for the listing (log_escape_text): a remote server's reply or an
 * address from a peer may hold CR/LF or ESC, which must not forge a line of output. Rotates
 * over ESC_SLOTS static buffers, so up to that many may appear in one printf. */
#define ESC_SLOTS 8
#define ESC_LEN (4 * 1024 + 8)
static const char *esc(const char *in)
{
	static char slots[ESC_SLOTS][ESC_LEN];
	static unsigned next;
	char *out = slots[next++ % ESC_SLOTS];
	return log_escape_text(in, out, ESC_LEN);
}

/* Sort helper for queue ids. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* queue list */
static int q_list(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "postino: cannot read the queue %s: %s\n", dir, strerror(errno));
		return 1;
	}
	char **ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l <= 4 || strcmp(e->d_name + l - 4, ".env") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			char **nn = realloc(ids, cap * sizeof(*ids));
			if (nn == NULL)
				break;
			ids = nn;
		}
		ids[n] = strndup(e->d_name, l - 4);
		if (ids[n])
			n++;
	}
	closedir(d);
	qsort(ids, n, sizeof(*ids), cmp_str);
	unsigned shown = 0;
	for (size_t i = 0; i < n; i++) {
		struct qenv env;
		char err[256], t[32];
		if (queue_env_read(dir, ids[i], &env, err, sizeof(err)) != 1) {
			free(ids[i]);
			continue;
		}
		unsigned pending = 0;
		for (unsigned k = 0; k < env.nrcpts; k++)
			pending += env.rcpts[k].state == QR_PENDING;
		int held = queue_msg_held(dir, env.id) ||
			   (env.from[0] && queue_sender_held(dir, env.from));
		printf("%s %8llu %s <%s> %u of %u pending%s\n", esc(env.id),
		       (unsigned long long)env.size, when(env.arrived, t, sizeof(t)), esc(env.from),
		       pending,
		       env.nrcpts, held ? " HELD" : "");
		for (unsigned k = 0; k < env.nrcpts; k++) {
			const struct qrcpt *r = &env.rcpts[k];
			if (r->state != QR_PENDING)
				continue;
			char shown_err[168];   /* the reply, clipped to about 160 characters */
			printf("    <%s>%s%s%s\n", esc(r->addr), r->err[0] ? " (" : "",
			       log_escape_text(r->err, shown_err, sizeof(shown_err)),
			       r->err[0] ? ")" : "");
		}
		shown++;
		queue_env_free(&env);
		free(ids[i]);
	}
	free(ids);
	printf("-- %u message%s in the queue\n", shown, shown == 1 ? "" : "s");
	return 0;
}

/* queue show ID */
static int q_show(const char *dir, const char *id)
{
	struct qenv env;
	char err[256], t[32];
	if (!queue_id_valid(id)) {
		fprintf(stderr, "postino: '%s' is not a queue id (see 'postino queue list')\n", id);
		return 1;
	}
	int r = queue_env_read(dir, id, &env, err, sizeof(err));
	if (r == 0) {
		fprintf(stderr, "postino: no message %s in the queue\n", id);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "postino: message %s is damaged: %s\n", id, err);
		return 1;
	}
	printf("id: %s\narrived: %s\nfrom: <%s>\nsize: %llu\n", esc(env.id),
	       when(env.arrived, t, sizeof(t)), esc(env.from), (unsigned long long)env.size);
	printf("body: %s\nsmtputf8: %s\n", env.body_8bit ? "8BITMIME" : "7BIT",
	       env.smtputf8 ? "yes" : "no");
	if (env.ret[0])
		printf("ret: %s\n", esc(env.ret));
	if (env.envid[0])
		printf("envid: %s\n", esc(env.envid));
	if (env.auth[0])
		printf("submitted by: %s\n", esc(env.auth));
	for (const char *d = env.dkim; d && (d = strstr(d, " d=")) != NULL; d++) {
		const char *sel = strstr(d, "\ts=");   /* ours: "d=DOM;" CRLF TAB "s=SEL;" */
		printf("dkim: d=%.*s s=%.*s\n", (int)strcspn(d + 3, ";"), d + 3,
		       sel ? (int)strcspn(sel + 3, ";") : 0, sel ? sel + 3 : "");
	}
	printf("attempts: %u\n", env.attempts);
	if (env.next)
		printf("next attempt: %s\n", when(env.next, t, sizeof(t)));
	int held = queue_msg_held(dir, id), sheld = env.from[0] && queue_sender_held(dir, env.from);
	printf("held: %s\n", held ? "yes" : sheld ? "yes (the sender is held)" : "no");
	for (unsigned k = 0; k < env.nrcpts; k++) {
		const struct qrcpt *rc = &env.rcpts[k];
		printf("rcpt: <%s> %s", esc(rc->addr), rc->state == QR_SENT ? "sent" :
		       rc->state == QR_FAILED ? "failed" : "pending");
		if (rc->remote[0])
			printf(" remote=%s", esc(rc->remote));
		if (rc->err[0])
			printf(" last=\"%s\"", esc(rc->err));
		putchar('\n');
	}
	queue_env_free(&env);
	return 0;
}

/* queue delete ID */
static int q_delete(const char *dir, const char *id)
{
	char p[CONFIG_PATH_MAX + 100];
	if (!queue_id_valid(id)) {
		fprintf(stderr, "postino: '%s' is not a queue id (see 'postino queue list')\n", id);
		return 1;
	}
	snprintf(p, sizeof(p), "%s/%s.env", dir, id);
	if (unlink(p) < 0) {
		fprintf(stderr, errno == ENOENT ? "postino: no message %s in the queue\n" :
			"postino: cannot delete %s\n", id);
		return 1;
	}
	fs_fsync_dir(dir);
	snprintf(p, sizeof(p), "%s/%s.msg", dir, id);
	unlink(p);
	queue_hold_msg(dir, id, 0);
	printf("%s: deleted\n", id);
	return 0;
}

int queue_cli_main(const struct config *cfg, int argc, char **argv)
{
	/* argv[0] is "queue" */
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage, stdout);
			return 0;
		}
	}
	if (argc < 2 || cfg == NULL) {
		fputs(usage, stderr);
		return 2;
	}
	char dir[CONFIG_PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/queue", cfg->data_dir);
	const char *cmd = argv[1];
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "flush") == 0) {
		if (argc != 2) {
			fprintf(stderr, "postino: unexpected argument '%s'\n%s", argv[2], usage);
			return 2;
		}
		if (cmd[0] == 'l')
			return q_list(dir);
		if (queue_poke(dir) < 0) {
			fprintf(stderr, "postino: the queue process is not running (start 'postino "
				"serve'); nothing was flushed\n");
			return 1;
		}
		printf("queue flushed: every message will be tried now\n");
		return 0;
	}
	int hold = strcmp(cmd, "hold") == 0, release = strcmp(cmd, "release") == 0;
	if (hold || release) {
		if (argc == 4 && strcmp(argv[2], "--sender") == 0) {
			if (strchr(argv[3], '@') == NULL) {
				fprintf(stderr, "postino: '%s' is not an address (user@domain)\n",
					argv[3]);
				return 2;
			}
			if (queue_hold_sender(dir, argv[3], hold) < 0) {
				fprintf(stderr, "postino: cannot %s %s: %s\n", cmd, argv[3],
					strerror(errno));
				return 1;
			}
			printf("%s: %s\n", argv[3], hold ? "held (nothing from it is sent until "
			       "'postino queue release --sender')" : "released");
			return 0;
		}
		if (argc != 3 || argv[2][0] == '-') {
			fputs(usage, stderr);
			return 2;
		}
		char p[CONFIG_PATH_MAX + 100];
		snprintf(p, sizeof(p), "%s/%s.env", dir, argv[2]);
		if (!queue_id_valid(argv[2]) || access(p, F_OK) < 0) {
			fprintf(stderr, "postino: no message %s in the queue (see 'postino queue "
				"list')\n", argv[2]);
			return 1;
		}
		if (queue_hold_msg(dir, argv[2], hold) < 0) {
			fprintf(stderr, "postino: cannot %s %s: %s\n", cmd, argv[2], strerror(errno));
			return 1;
		}
		printf("%s: %s\n", argv[2], hold ? "held" : "released");
		return 0;
	}
	if (strcmp(cmd, "tls-reports") == 0) {
		if (argc != 2) {
			fputs(usage, stderr);
			return 2;
		}
		if (tlsrpt_ask_now(dir) < 0) {
			fprintf(stderr, "postino: the queue process is not running (start 'postino "
				"serve'); no report was sent\n");
			return 1;
		}
		printf("the queue sends the TLS reports now (see event=tlsrpt-sent in the log)\n");
		return 0;
	}
	if (strcmp(cmd, "show") == 0 || strcmp(cmd, "delete") == 0) {
		if (argc != 3) {
			fputs(usage, stderr);
			return 2;
		}
		return cmd[0] == 's' ? q_show(dir, argv[2]) : q_delete(dir, argv[2]);
	}
	fprintf(stderr, "postino: unknown queue command '%s'\n%s", cmd, usage);
	return 2;
}
