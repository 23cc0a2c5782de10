/* fuzz-smtp.c - libFuzzer target for the SMTP session: command dispatch, the state machine,
 * AUTH exchanges, DATA (dot-unstuffing, bare LF/CR, size limit), BDAT chunks, the From: check.
 *
 * Build: see scripts/fuzz.sh (links the whole server except the command-line front end).
 * The real session code runs on a real event loop and thread pool, fed through a socketpair
 * (no network): the input is written to one end and that end is shut for writing, the loop
 * runs until the session has closed, every reply is read back. The first input octet picks
 * the setup: bit 0 the submission listener (else port 25), bit 1 pretend TLS is active, bit 2
 * pretend the session has authenticated as alice@example.test (submission only), so the
 * fuzzer reaches what lies behind STARTTLS and AUTH without a handshake or a password hash;
 * bit 3 turns on port 25's greet pause (the whole input then arrives before the greeting).
 * Besides memory errors it checks that every reply line is "ddd SP|- text" CRLF, at most 1024
 * octets, with a first digit 2-5 (RFC 5321 4.2), and that the session always ends.
 * The data directory (system.db with example.test, alice, an alias; Maildirs; spool) is made
 * once per process under /dev/shm (or $TMPDIR), where fsync costs nothing; directories left
 * by fuzz-smtp processes that are gone are removed at start.
 */
#include <errno.h>
#include <fcntl.h>
#include <crypt.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acctdb.h"
#include "authfail.h"
#include "ev.h"
#include "iptable.h"
#include "log.h"
#include "pool.h"
#include "smtp-private.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_INPUT_MAX 65536        /* fits a socketpair buffer in one write */
#define FUZZ_REPLY_LINE_MAX 1024    /* smtp_reply's line buffer */
#define FUZZ_DEADLINE_MS 20000      /* a session still open after this is a hang */

static struct config cfg;
static struct worker w;

/* Reply checker state: bytes of the current (unfinished) reply line. */
static char reply_line[FUZZ_REPLY_LINE_MAX + 1];
static size_t reply_len;
static int peer_fd = -1;
static struct ev_timer tick;
static uint64_t started_ms;

/* Check one complete reply line (CRLF removed). */
static void check_reply(const char *l, size_t n)
{
	if (n < 4 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
	    l[2] > '9' || (l[3] != ' ' && l[3] != '-'))
		abort();
	if (memchr(l, '\r', n) != NULL || memchr(l, '\0', n) != NULL)
		abort();
}

/* Read what the session wrote and check it line by line. */
static void drain_replies(void)
{
	char b[8192];
	for (;;) {
		ssize_t r = read(peer_fd, b, sizeof(b));
		if (r <= 0)
			return;
		for (ssize_t i = 0; i < r; i++) {
			if (b[i] == '\n') {
				if (reply_len == 0 || reply_line[reply_len - 1] != '\r')
					abort();   /* a bare LF in our output */
				check_reply(reply_line, reply_len - 1);
				reply_len = 0;
				continue;
			}
			if (reply_len >= FUZZ_REPLY_LINE_MAX)
				abort();   /* a reply line longer than smtp_reply can make */
			reply_line[reply_len++] = b[i];
		}
	}
}

/* Every millisecond: read replies; stop the loop once the session is gone. */
static void on_tick(struct ev_timer *t)
{
	drain_replies();
	if (w.nsessions == 0) {
		ev_stop(w.loop);
		return;
	}
	if (ev_now_ms() - started_ms > FUZZ_DEADLINE_MS)
		abort();   /* the session never ended although its input did */
	ev_timer_set(w.loop, t, 1, on_tick, NULL);
}

static char data_dir[CONFIG_PATH_MAX];

/* nftw callback: remove one entry. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* At exit: remove the data directory (left behind after a crash, for the reproducer). */
static void remove_data_dir(void)
{
	nftw(data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Remove the data directories of fuzz-smtp processes that are gone: libFuzzer ends some runs
 * (-max_total_time, crashes) without running atexit handlers. */
static void remove_stale_dirs(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *e;
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		long pid;
		char path[CONFIG_PATH_MAX];
		if (sscanf(e->d_name, "postino-fuzz-smtp.%ld.", &pid) != 1 || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
}

/* Make the data directory and the worker once. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
			   getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[CONFIG_PATH_MAX], p[CONFIG_PATH_MAX + 32];
	const char *err;
	remove_stale_dirs(base);
	snprintf(dir, sizeof(dir), "%s/postino-fuzz-smtp.%ld.XXXXXX", base, (long)getpid());
	if (mkdtemp(dir) == NULL)
		abort();
	memcpy(data_dir, dir, sizeof(data_dir));
	atexit(remove_data_dir);
	log_set_level(LOG_ERROR);
	config_defaults(&cfg);
	snprintf(cfg.hostname, sizeof(cfg.hostname), "mail.example.test");
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
	cfg.login_delay_max = 0;
	cfg.smtp_unknown_rcpt_delay = 0;   /* the harvest brake's pauses, without the waiting */
	cfg.inbound_auth = 0;   /* SPF/DKIM/DMARC need DNS; their parsers have fuzz-authrec */
	for (int i = 0; i < LST_COUNT; i++) {
		cfg.l[i].message_size_limit = 32768;   /* reachable by the fuzzer */
		cfg.l[i].max_recipients = 5;
		cfg.l[i].command_timeout = 2;
		cfg.l[i].data_timeout = 2;
	}
	for (const char *sub = "tmp\0queue\0mail\0"; *sub; sub += strlen(sub) + 1) {
		snprintf(p, sizeof(p), "%s/%s", dir, sub);
		if (mkdir(p, 0700) < 0)
			abort();
	}
	snprintf(p, sizeof(p), "%s/system.db", dir);
	/* a cheap SHA-256 crypt hash, so a correct AUTH costs little; unknown users and wrong
	 * passwords still cost a full yescrypt (the equal-time rule of auth-verify) */
	const char *hash = crypt("alice-Secret-1", "$5$rounds=1000$fuzzsalt$");
	if (hash == NULL || hash[0] != '$' || acctdb_open(p, ACCTDB_CREATE, &w.db, &err) < 0 ||
	    acctdb_domain_add(w.db, "example.test", &err) < 0 ||
	    acctdb_user_add(w.db, "alice@example.test", hash, &err) < 0 ||
	    acctdb_user_add(w.db, "bob@example.test", hash, &err) < 0 ||
	    acctdb_alias_add(w.db, "team@example.test", "alice@example.test,bob@example.test",
			     &err) < 0)
		abort();
	store_global_init();
	w.cfg = &cfg;
	w.loop = ev_loop_new();
	w.pool = pool_new(w.loop, 2);
	w.ipt = iptable_new_shared();
	w.af = authfail_new_shared();
	if (w.loop == NULL || w.pool == NULL || w.ipt == NULL || w.af == NULL)
		abort();
	return 0;
}

/* One session fed with one input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned mode = data[0];
	data++;
	size--;
	if (size > FUZZ_INPUT_MAX)
		size = FUZZ_INPUT_MAX;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int sndbuf = 2 * FUZZ_INPUT_MAX;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	peer_fd = sv[1];
	reply_len = 0;

	struct sockaddr_storage peer;
	memset(&peer, 0, sizeof(peer));
	struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0x7f000001);
	enum listener_id lst = (mode & 1) ? LST_SUBMISSION : LST_SMTP;
	cfg.smtp_greet_pause = (mode & 8) ? 1 : 0;   /* the pregreet test: early talkers */
	smtp_session_start(&w, sv[0], lst, &peer);
	if (w.nsessions == 1) {
		struct smtp_session *s = (struct smtp_session *)w.sessions;
		if (mode & 2) {
			s->base.tls = 1;
			snprintf(s->tls_info, sizeof(s->tls_info), "using TLSv1.3 with cipher X");
		}
		if ((mode & 4) && lst == LST_SUBMISSION)
			snprintf(s->auth_user, sizeof(s->auth_user), "alice@example.test");
	}
	started_ms = ev_now_ms();
	ev_timer_set(w.loop, &tick, 1, on_tick, NULL);
	if (w.nsessions > 0)
		ev_run(w.loop);
	ev_timer_cancel(w.loop, &tick);
	drain_replies();
	if (reply_len != 0)
		abort();   /* the last reply line was not finished with CRLF */
	close(sv[1]);
	peer_fd = -1;
	return 0;
}
