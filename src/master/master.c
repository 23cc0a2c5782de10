/* master.c - the master process of "postino serve".
 *
 * SECURITY: the master stays as the invoking user (root in production) so that it can bind the
 * low ports and re-read certificates on SIGHUP. It talks to no peer: it only opens listening
 * sockets, loads the configuration and keys, forks workers and waits for signals. Workers drop
 * to run_user right after fork.
 */
#include "master.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <poll.h>

#include "acctdb.h"
#include "config.h"
#include "auth-verify.h"
#include "authfail.h"
#include "iptable.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "queue.h"
#include "tls.h"
#include "worker.h"

#define MASTER_MAX_WORKERS IPTABLE_WORKERS
#define MASTER_RESTART_BACKOFF_S 1     /* a worker crashing at once is restarted after this */
#define MASTER_STOP_WAIT_S 35          /* then SIGKILL: a little over the workers' grace */
/* Workers or the queue exiting MASTER_EXIT_STARTUP this many times in a row (no child living
 * MASTER_HEALTHY_S in between) cannot start: the master stops instead of looping with its ports
 * open and no greeting. */
#define MASTER_STARTUP_FAILURES_MAX 3
#define MASTER_HEALTHY_S 10
/* Files created by the server are not for other users: 0640 files, 0750 directories. */
#define MASTER_UMASK 027

struct generation {
	struct config *cfg;
	struct tls_ctx *tls;
	int lfd[LST_COUNT];
	int refs;                      /* live workers using it */
};

struct worker_slot {
	pid_t pid;
	struct generation *gen;
	time_t started;
	int retiring;                  /* told to stop (reload or shutdown): do not restart */
	int ready;                     /* said it accepts connections (ready pipe) */
};

static struct worker_slot slots[MASTER_MAX_WORKERS];
static struct iptable *ipt;
static struct authfail *authfail;
static struct generation *current;
/* the queue process (src/queue): one, supervised like the workers */
/* Workers write their slot index here once their loop accepts; the master tells the service
 * manager READY=1 when every worker of the current generation has (notify.h). */
static int ready_pipe[2] = { -1, -1 };
static int notify_due;                 /* READY=1 owed once the current workers are up */
static pid_t queue_pid;
static time_t queue_started;
static struct generation *queue_gen;

/* Fork the queue process for generation g. */
static void master_spawn_queue(struct generation *g)
{
	pid_t pid = fork();
	if (pid < 0) {
		log_error("event=fork-failed what=queue error=\"%s\"", strerror(errno));
		return;
	}
	if (pid == 0)
		queue_main(g->cfg, g->lfd, LST_COUNT);
	queue_pid = pid;
	queue_started = time(NULL);
	queue_gen = g;
	g->refs++;
}

/* Listen on addr:port (addr "*" for all). Returns the fd or -1 (logged). */
static int master_listen(const char *addr, unsigned port, const char *name)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *res;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%u", port);
	int r = getaddrinfo(strcmp(addr, "*") == 0 ? NULL : addr, portstr, &hints, &res);
	if (r != 0) {
		log_error("event=listen-failed listener=%s address=%s error=\"%s\"", name, addr,
			  gai_strerror(r));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (res->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){ 0 }, sizeof(int));
	}
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 511) < 0) {
		log_error("event=listen-failed listener=%s address=%s port=%u error=\"%s\"", name,
			  addr, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* Protocols this build serves; listeners of the others are not opened. */
static int master_proto_served(enum proto p)
{
	return p == PROTO_SMTP || p == PROTO_POP3 || p == PROTO_IMAP || p == PROTO_HTTP;
}

/* Load config, certificates and listeners into a new generation; reuse the previous generation's
 * sockets where address and port did not change. NULL on error (logged). */
static struct generation *master_load(const char *path, const struct generation *prev)
{
	char err[1024];
	const char *terr;
	struct generation *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->cfg = malloc(sizeof(*g->cfg));
	if (g->cfg == NULL) {
		free(g);
		return NULL;
	}
	config_defaults(g->cfg);
	for (int i = 0; i < LST_COUNT; i++)
		g->lfd[i] = -1;
	if (config_load(g->cfg, path, err, sizeof(err)) < 0) {
		log_error("event=config-error error=\"%s\"", err);
		goto fail;
	}
	log_set_json(strcmp(g->cfg->log_format, "json") == 0);   /* children inherit it */
	if (g->cfg->tls_cert[0]) {
		g->tls = tls_ctx_new(g->cfg->tls_cert, g->cfg->tls_key, &terr);
		if (g->tls == NULL) {
			log_error("event=tls-error error=\"%s\"", terr);
			goto fail;
		}
		for (size_t i = 0; i < g->cfg->ntls_hosts; i++) {
			const struct tls_host_conf *h = &g->cfg->tls_hosts[i];
			if (tls_ctx_add_host(g->tls, h->name, h->cert, h->key, &terr) < 0) {
				log_error("event=tls-error host=%s error=\"%s\"", h->name, terr);
				goto fail;
			}
		}
	}
	for (int i = 0; i < LST_COUNT; i++) {
		const struct listener_conf *l = &g->cfg->l[i];
		if (l->port == 0 || !master_proto_served(l->proto))
			continue;
		if (l->implicit_tls && g->tls == NULL) {
			log_warn("event=listener-skipped listener=%s reason=\"no tls_cert configured\"",
				 l->name);
			continue;
		}
		if (prev && prev->lfd[i] >= 0 && prev->cfg->l[i].port == l->port &&
		    strcmp(prev->cfg->l[i].listen, l->listen) == 0) {
			g->lfd[i] = dup(prev->lfd[i]);
		} else {
			g->lfd[i] = master_listen(l->listen, l->port, l->name);
		}
		if (g->lfd[i] < 0)
			goto fail;
		log_info("event=listening listener=%s address=%s port=%u", l->name, l->listen, l->port);
	}
	return g;
fail:
	for (int i = 0; i < LST_COUNT; i++)
		if (g->lfd[i] >= 0)
			close(g->lfd[i]);
	tls_ctx_free(&g->tls);
	free(g->cfg);
	free(g);
	return NULL;
}

/* Free a generation no worker uses any more (and that is not current). */
static void master_gen_release(struct generation *g)
{
	if (g == NULL || --g->refs > 0 || g == current)
		return;
	for (int i = 0; i < LST_COUNT; i++)
		if (g->lfd[i] >= 0)
			close(g->lfd[i]);
	tls_ctx_free(&g->tls);
	free(g->cfg);
	free(g);
}

/* Fork a worker into slot i. */
static void master_spawn(unsigned i, struct generation *g)
{
	pid_t pid = fork();
	if (pid < 0) {
		log_error("event=fork-failed error=\"%s\"", strerror(errno));
		return;
	}
	if (pid == 0) {
		/* signals stay blocked: the worker reads them from its own signalfd */
		worker_set_ready_fd(ready_pipe[1]);
		worker_main(i, g->cfg, g->tls, g->lfd, ipt, authfail);
	}
	slots[i].pid = pid;
	slots[i].gen = g;
	slots[i].started = time(NULL);
	slots[i].retiring = 0;
	slots[i].ready = 0;
	metrics_slot_pid(i, pid);
	g->refs++;
}

/* Start cfg->workers workers of the current generation in free slots. */
static void master_spawn_all(void)
{
	unsigned want = current->cfg->workers, have = 0;
	if (want > MASTER_MAX_WORKERS / 2)
		want = MASTER_MAX_WORKERS / 2;   /* leave slots for a reload overlapping */
	for (unsigned i = 0; i < MASTER_MAX_WORKERS && have < want; i++) {
		if (slots[i].pid != 0)
			continue;
		master_spawn(i, current);
		have++;
	}
}

/* Remove leftovers of interrupted receptions (of one dead worker, or pid 0 for all): nothing in
 * <data>/tmp was ever acknowledged with a 250. */
static void master_clean_tmp(const struct config *cfg, pid_t pid)
{
	char prefix[32];
	snprintf(prefix, sizeof(prefix), pid ? "in.%d." : "in.", (int)pid);
	char dir[CONFIG_PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s/tmp", cfg->data_dir);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* Send a state to the service manager; a refusal is logged once per state. */
static void master_notify(const char *state)
{
	if (notify_send(state) < 0)
		log_warn("event=notify-failed state=\"%.20s\" error=\"%s\"", state,
			 strerror(errno));
}

/* Mark workers that said they accept; READY=1 once every current worker has. */
static void master_on_ready(void)
{
	unsigned char idx[64];
	ssize_t n;
	while ((n = read(ready_pipe[0], idx, sizeof(idx))) > 0)
		for (ssize_t k = 0; k < n; k++)
			if (idx[k] < MASTER_MAX_WORKERS && slots[idx[k]].pid != 0)
				slots[idx[k]].ready = 1;
	if (!notify_due)
		return;
	for (unsigned i = 0; i < MASTER_MAX_WORKERS; i++)
		if (slots[i].pid != 0 && slots[i].gen == current && !slots[i].ready)
			return;
	notify_due = 0;
	master_notify("READY=1\nSTATUS=accepting connections");
}

/* Would the workers run as root? */
int master_runs_as_root(const struct config *cfg)
{
	return geteuid() == 0 && (cfg->run_user[0] == '\0' || strcmp(cfg->run_user, "root") == 0);
}

/* In the child of master_check_run_user (already run_user): the first path it cannot use. */
static int run_user_probe(const struct config *cfg, char *why, size_t whylen)
{
	static const struct {
		const char *rel;
		int mode;
		int must_exist;
	} paths[] = {
		{ "", X_OK, 1 }, { "system.db", R_OK, 1 }, { "mail", W_OK | X_OK, 1 },
		{ "queue", W_OK | X_OK, 0 }, { "tmp", W_OK | X_OK, 0 }, { "diag.db", R_OK | W_OK, 0 },
		{ "limits.db", R_OK | W_OK, 0 },
	};
	char p[CONFIG_PATH_MAX + 16];
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		snprintf(p, sizeof(p), "%s%s%s", cfg->data_dir, paths[i].rel[0] ? "/" : "",
			 paths[i].rel);
		if (access(p, F_OK) < 0 && errno == ENOENT && !paths[i].must_exist)
			continue;
		if (access(p, paths[i].mode) < 0) {
			snprintf(why, whylen, "run_user %s cannot %s %s: %s", cfg->run_user,
				 paths[i].mode == X_OK ? "enter" : paths[i].mode == R_OK ? "read" : "write",
				 p, strerror(errno));
			return 0;
		}
	}
	return 1;
}

/* Check run_user's access to the data directory from a child that becomes run_user. */
int master_check_run_user(const struct config *cfg, char *why, size_t whylen)
{
	why[0] = '\0';
	if (geteuid() != 0 || master_runs_as_root(cfg))
		return 1;
	struct passwd *pw = getpwnam(cfg->run_user);
	if (pw == NULL) {
		snprintf(why, whylen, "run_user %s does not exist: create it (useradd --system %s) "
			 "or fix run_user in %s", cfg->run_user, cfg->run_user, cfg->path);
		return 0;
	}
	int fds[2];
	if (pipe(fds) < 0) {
		snprintf(why, whylen, "cannot check run_user: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		snprintf(why, whylen, "cannot check run_user: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char msg[CONFIG_PATH_MAX * 2] = "";
		close(fds[0]);
		int ok = 0;
		if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
		    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
			snprintf(msg, sizeof(msg), "cannot become run_user %s: %s", cfg->run_user,
				 strerror(errno));
		else
			ok = run_user_probe(cfg, msg, sizeof(msg));
		if (!ok && write(fds[1], msg, strlen(msg)) < 0)
			_exit(2);
		_exit(ok ? 0 : 1);
	}
	close(fds[1]);
	size_t n = 0;
	ssize_t k;
	while (n + 1 < whylen && (k = read(fds[0], why + n, whylen - 1 - n)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		n += (size_t)k;
	}
	why[n] = '\0';
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 1;
	if (why[0] == '\0')
		snprintf(why, whylen, "cannot check run_user %s", cfg->run_user);
	return 0;
}

/* Count a child's exit: MASTER_STARTUP_FAILURES_MAX startup failures in a row mean stop. */
static int master_startup_failed(int status, time_t started)
{
	static unsigned in_a_row;
	if (time(NULL) - started >= MASTER_HEALTHY_S) {
		in_a_row = 0;
		return 0;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != MASTER_EXIT_STARTUP)
		return 0;
	return ++in_a_row >= MASTER_STARTUP_FAILURES_MAX;
}

/* Begin stopping: tell every child, close the listening sockets. */
static void master_stop(int *stopping_r, time_t *deadline_r)
{
	*stopping_r = 1;
	*deadline_r = time(NULL) + MASTER_STOP_WAIT_S;
	for (unsigned i = 0; i < MASTER_MAX_WORKERS; i++)
		if (slots[i].pid)
			kill(slots[i].pid, SIGTERM);
	if (queue_pid)
		kill(queue_pid, SIGTERM);
	for (int i = 0; i < LST_COUNT; i++)
		if (current->lfd[i] >= 0) {
			close(current->lfd[i]);
			current->lfd[i] = -1;
		}
}

/* As root: system.db belongs to root and run_user's group may only read it (0640), in
 * rollback-journal mode (older versions left it in WAL mode, owned by run_user): the workers open
 * it read-only, so a compromised worker cannot change a password. 0 ok (a database the workers
 * cannot open is left to them to report), -1 logged. */
static int master_secure_accounts(const struct config *cfg)
{
	if (geteuid() != 0 || master_runs_as_root(cfg))
		return 0;
	struct passwd *pw = getpwnam(cfg->run_user);
	char path[CONFIG_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/system.db", cfg->data_dir);
	if (pw == NULL || access(path, F_OK) < 0)
		return 0;   /* master_check_run_user says what is wrong */
	struct acctdb *db;
	const char *err;
	if (acctdb_open(path, ACCTDB_RW, &db, &err) < 0)
		return 0;   /* the workers cannot open it either: they say why and the master stops */
	acctdb_close(&db);
	int r = acctdb_give_to_root(path, (unsigned)pw->pw_gid, &err);
	if (r < 0) {
		log_error("event=startup-failed error=\"%s\" advice=\"the workers must not be able to "
			  "write the accounts: make %s root's with chown root:%s and chmod 0640\"", err,
			  path, cfg->run_user);
		return -1;
	}
	if (r > 0)
		log_info("event=system-db-secured path=%s owner=root group=%s mode=0640", path,
			 cfg->run_user);
	return 0;
}

/* Everything before the first fork: signals, the shared segments, the configuration and
 * certificates, the run_user checks. The signalfd, or -1 (logged). */
static int master_startup(const char *config_path)
{
	log_set_ident("postino/master");
	umask(MASTER_UMASK);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGALRM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	notify_init();
	if (pipe2(ready_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("event=startup-failed error=\"%s\"", strerror(errno));
		return -1;
	}
	if (metrics_init_shared() < 0) {
		log_error("event=startup-failed error=\"metrics segment: %s\"", strerror(errno));
		return -1;
	}
	ipt = iptable_new_shared();
	authfail = authfail_new_shared();
	if (auth_login_cache_share() < 0)
		log_warn("event=login-cache-not-shared error=\"%s\" advice=\"each worker keeps "
			 "its own login cache: a client's logins on other workers run the password "
			 "hash again\"", strerror(errno));
	if (sfd < 0 || ipt == NULL || authfail == NULL) {
		log_error("event=startup-failed error=\"%s\"", strerror(errno));
		return -1;
	}
	current = master_load(config_path, NULL);
	if (current == NULL)
		return -1;
	current->refs = 1;   /* held by the master while current */
	if (current->cfg->log_debug)
		log_set_level(LOG_DEBUG);
	char why[CONFIG_PATH_MAX * 2];
	if (master_runs_as_root(current->cfg))
		log_warn("event=running-as-root reason=\"run_user is %s\" advice=\"WARNING: the "
			 "workers run as root and a flaw in them gives away the machine: set run_user "
			 "= postino (a system user owning %s) in %s\"",
			 current->cfg->run_user[0] ? "root" : "not set", current->cfg->data_dir,
			 config_path);
	else if (master_secure_accounts(current->cfg) < 0)
		return -1;
	else if (master_check_run_user(current->cfg, why, sizeof(why)) == 0) {
		log_error("event=startup-failed error=\"%s\" advice=\"give the data directory to "
			  "run_user (chown -R), or fix run_user in %s\"", why, config_path);
		return -1;
	}
	return sfd;
}

/* "signal 9" / "exit 3": how a child ended, for a log line. */
static const char *master_status_text(int status, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s%d", WIFSIGNALED(status) ? "signal " : "exit ",
		 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	return out;
}

/* The queue process ended: start it again unless stopping (or it cannot start: *fatal). */
static void master_queue_ended(int status, int stopping, int *fatal)
{
	struct generation *g = queue_gen;
	pid_t pid = queue_pid;
	queue_pid = 0;
	queue_gen = NULL;
	if (!stopping && master_startup_failed(status, queue_started)) {
		*fatal = 1;
	} else if (!stopping) {
		/* died, or stopped for a reload: start it again */
		char st[32];
		if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			log_warn("event=queue-died pid=%d status=%s", (int)pid,
				 master_status_text(status, st, sizeof(st)));
		if (time(NULL) - queue_started < MASTER_RESTART_BACKOFF_S)
			sleep(MASTER_RESTART_BACKOFF_S);
		master_spawn_queue(current);
	}
	master_gen_release(g);
}

/* Worker i ended: clear what it held; restart it if it died unexpectedly (or *fatal when it
 * cannot start at all). */
static void master_worker_ended(unsigned i, pid_t pid, int status, int stopping, int *fatal)
{
	struct generation *g = slots[i].gen;
	int expected = slots[i].retiring || stopping;
	time_t started = slots[i].started;
	slots[i].pid = 0;
	slots[i].gen = NULL;
	metrics_slot_pid(i, 0);
	iptable_clear_worker(ipt, i);
	master_clean_tmp(g->cfg, pid);
	if (!expected && master_startup_failed(status, started)) {
		*fatal = 1;
	} else if (!expected) {
		char st[32];
		log_warn("event=worker-died index=%u pid=%d status=%s", i, (int)pid,
			 master_status_text(status, st, sizeof(st)));
		if (time(NULL) - started < MASTER_RESTART_BACKOFF_S)
			sleep(MASTER_RESTART_BACKOFF_S);
		if (g == current)
			master_spawn(i, current);
	}
	master_gen_release(g);
}

/* SIGHUP: load a new generation and let the old workers finish; on a bad configuration keep
 * running the old one. */
static void master_reload(const char *config_path)
{
	log_info("event=reload config=%s", config_path);
	char state[96];
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)now.tv_sec * 1000000ull +
		 (unsigned long long)now.tv_nsec / 1000);
	master_notify(state);
	struct generation *g = master_load(config_path, current);
	if (g == NULL) {
		log_error("event=reload-failed reason=\"keeping the running configuration\"");
		master_notify("READY=1\nSTATUS=reload failed: running the previous "
			      "configuration (see the log)");
		return;
	}
	struct generation *old = current;
	current = g;
	current->refs = 1;
	for (unsigned i = 0; i < MASTER_MAX_WORKERS; i++) {
		if (slots[i].pid && slots[i].gen == old) {
			slots[i].retiring = 1;
			kill(slots[i].pid, SIGTERM);
		}
	}
	notify_due = 1;
	master_spawn_all();
	if (queue_pid)
		kill(queue_pid, SIGTERM);   /* restarted with the new configuration */
	master_gen_release(old);   /* drop the master's reference */
}

/* While stopping: 1 once every child is gone; after the deadline the rest is killed. */
static int master_all_gone(time_t stop_deadline)
{
	int alive = queue_pid != 0;
	for (unsigned i = 0; i < MASTER_MAX_WORKERS; i++)
		alive += slots[i].pid != 0;
	if (alive == 0)
		return 1;
	if (time(NULL) >= stop_deadline) {
		for (unsigned i = 0; i < MASTER_MAX_WORKERS; i++)
			if (slots[i].pid)
				kill(slots[i].pid, SIGKILL);
		if (queue_pid)
			kill(queue_pid, SIGKILL);
	}
	alarm(1);    /* wake up to check the deadline */
	return 0;
}

/* The master's main: start, then children, reloads and the stop, driven by signals. */
int master_main(const char *config_path)
{
	int sfd = master_startup(config_path);
	if (sfd < 0)
		return 1;
	master_clean_tmp(current->cfg, 0);
	notify_due = 1;
	master_spawn_all();
	master_spawn_queue(current);
	log_info("event=started hostname=%s workers=%u config=%s", current->cfg->hostname,
		 current->cfg->workers, config_path);
	int stopping = 0, fatal = 0, rc = 0;
	time_t stop_deadline = 0;
	for (;;) {
		if (stopping && master_all_gone(stop_deadline))
			break;
		struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN },
					 { .fd = ready_pipe[0], .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			log_error("event=poll-failed error=\"%s\"", strerror(errno));
			sleep(1);
		}
		if (pfd[1].revents & POLLIN)
			master_on_ready();
		struct signalfd_siginfo si;
		ssize_t r = read(sfd, &si, sizeof(si));
		if (r != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo == SIGCHLD) {
			int status;
			pid_t pid;
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				if (pid == queue_pid) {
					master_queue_ended(status, stopping, &fatal);
					continue;
				}
				for (unsigned i = 0; i < MASTER_MAX_WORKERS; i++)
					if (slots[i].pid == pid)
						master_worker_ended(i, pid, status, stopping, &fatal);
			}
			if (fatal && !stopping) {
				log_error("event=startup-failed error=\"the workers cannot start (the "
					  "error they logged is above): stopping instead of restarting "
					  "them\" advice=\"fix it, then run postino config check\"");
				master_notify("STOPPING=1\nSTATUS=the workers cannot start");
				rc = 1;
				master_stop(&stopping, &stop_deadline);
			}
		} else if (si.ssi_signo == SIGHUP && !stopping) {
			master_reload(config_path);
		} else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !stopping) {
			log_info("event=stopping");
			master_notify("STOPPING=1");
			master_stop(&stopping, &stop_deadline);
		}
	}
	log_info("event=stopped");
	return rc;
}
