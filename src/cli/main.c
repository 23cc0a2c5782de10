/* main.c - the postino command: one binary, subcommands.
 *
 * SECURITY: administrative subcommands run as the invoking user; when that is root and the
 * configuration names a run_user, they switch to run_user before touching the data directory,
 * so every file in it stays owned by the user the workers run as.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acctdb.h"
#include "cli-admin.h"
#include "cli-dkim.h"
#include "cli-status.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "password.h"
#include "queue.h"
#include "store-path.h"
#include "store.h"
#include "tls.h"
#include "http-dns.h"

#define POSTINO_VERSION "0.1.0"
/* The system user quickstart creates and uses when run as root without --user. */
#define QUICKSTART_SYSTEM_USER "postino"
/* useradd may find /etc/passwd locked by a concurrent useradd: try again this often. */
#define USERADD_TRIES 5
#define CHOWN_TREE_FDS 32   /* directory descriptors nftw may hold open */
/* Files the admin commands create are not for other users: 0640 files, 0750 directories. */
#define CLI_UMASK 027

static const char usage_main[] =
	"usage: postino COMMAND [ARGS] [--config FILE | --data DIR]\n"
	"\n"
	"commands:\n"
	"  quickstart HOSTNAME --data DIR   create a data dir, config, certificate and demo domain\n"
	"  status                           the running server's counters at a glance\n"
	"  serve                            run the mail server in the foreground\n"
	"  domain add|list|remove           hosted domains\n"
	"  user add|passwd|list|show|remove accounts (passwords are read from stdin)\n"
	"  user limits|unsuspend|diag       sending limits, lifting a suspension, login problems\n"
	"  diag ip ADDRESS                  login and TLS problems of a client IP address\n"
	"  alias add|list|remove            aliases and catch-alls\n"
	"  config check|show                validate / print the effective configuration\n"
	"  dkim list|new|rotate|retire      DKIM keys of the hosted domains\n"
	"  dns DOMAIN                       print the DNS records DOMAIN should publish\n"
	"  queue list|show|flush|hold|release|delete   the outbound queue\n"
	"  version                          print the version\n"
	"\n"
	"Every command answers --help. Without --config or --data the configuration is read from\n"
	"$POSTINO_CONFIG or /etc/postino/postino.conf.\n";

static const char usage_status[] =
	"usage: postino status [--config FILE | --data DIR]\n"
	"Prints the running server's counters (connections, logins, messages, queue, latencies,\n"
	"memory of each worker) from the /metrics page of its admin listener (admin_port).\n";

static const char usage_quickstart[] =
	"usage: postino quickstart HOSTNAME --data DIR [--port-offset N] [--listen ADDR]\n"
	"                          [--domain DOMAIN] [--account ADDRESS] [--user SYSUSER]\n"
	"\n"
	"Creates DIR/postino.conf, DIR/system.db, the mail, queue and tmp directories and a\n"
	"self-signed certificate for HOSTNAME in DIR/certs. Hosts DOMAIN (default: HOSTNAME without\n"
	"its first label). With --account, creates that account with a random password and prints\n"
	"it. With --port-offset N every listener sits at its standard port plus N (25 -> N+25,\n"
	"587 -> N+587, ...), so a non-root user can run the whole server on loopback. --listen sets\n"
	"the address (default 127.0.0.1; \"*\" for all). --user makes SYSUSER own the data dir and\n"
	"the workers run as SYSUSER when started as root. As root without --user, the system user\n"
	"\"postino\" is created if missing and used; --user root keeps the workers as root (not\n"
	"advised: serve and config check warn about it).\n";

static const char usage_serve[] =
	"usage: postino serve [--config FILE | --data DIR]\n"
	"\n"
	"Runs the master in the foreground: it opens the listeners, forks the workers and restarts\n"
	"them if they crash. SIGHUP reloads the configuration and certificates; SIGTERM stops\n"
	"gracefully (sessions in the middle of a message finish it). Logs go to stderr.\n";

static const char usage_config[] =
	"usage: postino config check|show [--config FILE | --data DIR]\n"
	"\n"
	"check: validate the configuration, certificates and data directory; exit 0 if usable.\n"
	"show: print every setting with its effective value; defaults are marked.\n";

/* Is this argument a request for help? */
static int is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0;
}

/* Remove "--config FILE" / "--data DIR" from argv, returning the config path. */
static int take_config_opt(int *argc, char **argv, char *path, size_t pathlen)
{
	const char *env = getenv("POSTINO_CONFIG");
	snprintf(path, pathlen, "%s", env && *env ? env : "/etc/postino/postino.conf");
	int o = 0;
	for (int i = 0; i < *argc; i++) {
		if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "--data") == 0)) {
			if (i + 1 >= *argc) {
				fprintf(stderr, "postino: %s needs a value\n", argv[i]);
				return -1;
			}
			if (strcmp(argv[i], "--config") == 0)
				snprintf(path, pathlen, "%s", argv[i + 1]);
			else
				snprintf(path, pathlen, "%s/postino.conf", argv[i + 1]);
			i++;
			continue;
		}
		argv[o++] = argv[i];
	}
	*argc = o;
	argv[o] = NULL;
	return 0;
}

/* Load the configuration or explain why not. */
static int load_config(struct config *cfg, const char *path)
{
	char err[1200];
	config_defaults(cfg);
	if (config_load(cfg, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "postino: %s\n", err);
		return -1;
	}
	return 0;
}

/* Become the configured run_user when running as root (admin commands). */
static int become_run_user(const struct config *cfg)
{
	if (geteuid() != 0 || cfg->run_user[0] == '\0')
		return 0;
	struct passwd *pw = getpwnam(cfg->run_user);
	if (pw == NULL) {
		fprintf(stderr, "postino: run_user '%s' does not exist: create it or fix %s\n",
			cfg->run_user, cfg->path);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		fprintf(stderr, "postino: cannot switch to %s: %s\n", cfg->run_user, strerror(errno));
		return -1;
	}
	if (access(cfg->data_dir, X_OK) < 0 && errno == EACCES) {
		fprintf(stderr, "postino: run_user %s cannot enter %s: give it the directory "
				"(chown -R %s %s) and let it through the parent directories "
				"(chmod o+x)\n", cfg->run_user, cfg->data_dir, cfg->run_user,
			cfg->data_dir);
		return -1;
	}
	return 0;
}

/* A random password of 16 characters people can type (uniform over the alphabet). */
static void random_password(char out[17])
{
	static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	if (sodium_init() < 0)
		abort();
	for (int i = 0; i < 16; i++)
		out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
	out[16] = '\0';
}

/* mkdir that accepts an existing directory. */
static int mkdir_ok(const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	fprintf(stderr, "postino: cannot create %s: %s\n", path, strerror(errno));
	return -1;
}

/* Create system user `name` unless it exists. 0 ok, -1 (printed). */
static int ensure_system_user(const char *name)
{
	for (int i = 0; i < USERADD_TRIES && getpwnam(name) == NULL; i++) {
		pid_t pid = fork();
		if (pid < 0)
			break;
		if (pid == 0) {
			execl("/usr/sbin/useradd", "useradd", "--system", "--user-group", "--home-dir",
			      "/nonexistent", "--no-create-home", "--shell", "/usr/sbin/nologin", name,
			      (char *)NULL);
			_exit(127);
		}
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			break;
		sleep(1);   /* locked by another useradd, or created meanwhile: look again */
	}
	if (getpwnam(name) != NULL)
		return 0;
	fprintf(stderr, "postino: cannot create the system user '%s' for the workers: create it "
			"(useradd --system %s) and run quickstart again, or pass --user USER\n",
		name, name);
	return -1;
}

/* The loud warning of a configuration that leaves the workers running as root. */
static void warn_root_workers(const struct config *cfg)
{
	fprintf(stderr, "postino: WARNING: the workers would run as root (run_user is %s): a flaw "
			"in them would give away the whole machine. Set run_user = %s (a system "
			"user owning %s) in %s.\n", cfg->run_user[0] ? "root" : "not set",
		QUICKSTART_SYSTEM_USER, cfg->data_dir, cfg->path);
}

/* The owner chown_tree gives every entry to (nftw passes no context). */
static uid_t tree_uid;
static gid_t tree_gid;

/* nftw callback: one entry, never following a symbolic link. */
static int chown_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return lchown(path, tree_uid, tree_gid) < 0 ? -1 : 0;
}

/* chown -R of the data dir to the run user (links themselves, not what they point to). */
static int chown_tree(const char *path, uid_t uid, gid_t gid)
{
	tree_uid = uid;
	tree_gid = gid;
	return nftw(path, chown_entry, CHOWN_TREE_FDS, FTW_PHYS) == 0 ? 0 : -1;
}

/* What quickstart works with: its options, then what it finds and makes on the way. */
struct quickstart {
	const char *host, *data, *listen, *domain, *account, *sysuser;
	unsigned long offset;                  /* added to every standard port */
	struct passwd *pw;                     /* the workers' system user, or NULL */
	int as_root;            /* explicit --user root (or --user ''): workers stay root */
	int sysuser_default;    /* sysuser is QUICKSTART_SYSTEM_USER, not asked for */
	char abs[CONFIG_PATH_MAX];             /* the data directory, absolute */
	char conf[CONFIG_PATH_MAX + 300];      /* postino.conf */
	char db[CONFIG_PATH_MAX + 300];        /* system.db */
	char cert[CONFIG_PATH_MAX + 300], key[CONFIG_PATH_MAX + 300];
	int wrote_conf;                        /* 0: an existing postino.conf was kept */
	char dnorm[ACCTDB_ADDRESS_MAX + 1];    /* the stored form: lower case, A-labels */
	char password[17];                     /* the new account's, or "" */
};

/* Read quickstart's arguments into qs (the domain defaults to the host's parent when the host
 * has two dots or more, else to the host). -1 to go on, else the exit code (0 after --help). */
static int qs_args(struct quickstart *qs, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (is_help(a)) {
			fputs(usage_quickstart, stdout);
			return 0;
		}
		int more = i + 1 < argc;
		if (strcmp(a, "--data") == 0 && more)
			qs->data = argv[++i];
		else if (strcmp(a, "--port-offset") == 0 && more) {
			char *end;
			qs->offset = strtoul(argv[++i], &end, 10);
			if (*end || qs->offset > 65000) {
				fprintf(stderr, "postino: --port-offset needs a number up to 65000\n");
				return 2;
			}
		} else if (strcmp(a, "--listen") == 0 && more)
			qs->listen = argv[++i];
		else if (strcmp(a, "--domain") == 0 && more)
			qs->domain = argv[++i];
		else if (strcmp(a, "--account") == 0 && more)
			qs->account = argv[++i];
		else if (strcmp(a, "--user") == 0 && more)
			qs->sysuser = argv[++i];
		else if (a[0] != '-' && qs->host == NULL)
			qs->host = a;
		else {
			fprintf(stderr, "postino: unexpected argument '%s'\n%s", a, usage_quickstart);
			return 2;
		}
	}
	const char *host = qs->host;
	if (host == NULL || qs->data == NULL) {
		fputs(usage_quickstart, stderr);
		return 2;
	}
	if (strlen(host) > 200 || strchr(host, '/') || strchr(host, '\'') || host[0] == '.') {
		fprintf(stderr, "postino: '%s' is not a host name\n", host);
		return 2;
	}
	if (qs->domain == NULL) {
		const char *dot = strchr(host, '.');
		qs->domain = dot && strchr(dot + 1, '.') ? dot + 1 : host;
	}
	return -1;
}

/* The system user the workers run as: --user, else (as root) QUICKSTART_SYSTEM_USER, made if
 * missing; root or '' keeps them root. 0, or -1 after saying why. */
static int qs_system_user(struct quickstart *qs)
{
	if (geteuid() == 0 && qs->sysuser == NULL) {
		if (ensure_system_user(QUICKSTART_SYSTEM_USER) < 0)
			return -1;
		qs->sysuser = QUICKSTART_SYSTEM_USER;
		qs->sysuser_default = 1;
	}
	if (qs->sysuser && (qs->sysuser[0] == '\0' || strcmp(qs->sysuser, "root") == 0)) {
		qs->as_root = geteuid() == 0;
		qs->sysuser = NULL;
	}
	if (qs->sysuser && (qs->pw = getpwnam(qs->sysuser)) == NULL) {
		fprintf(stderr, "postino: system user '%s' does not exist: create it first (useradd "
				"--system %s)\n", qs->sysuser, qs->sysuser);
		return -1;
	}
	return 0;
}

/* The data directory and its subdirectories, and a self-signed certificate for the host unless
 * one is there. 0, or -1 after saying why. */
static int qs_data_dir(struct quickstart *qs)
{
	char p[CONFIG_PATH_MAX + 300];
	if (mkdir_ok(qs->data, 0750) < 0 || realpath(qs->data, qs->abs) == NULL) {
		fprintf(stderr, "postino: cannot use data directory %s\n", qs->data);
		return -1;
	}
	static const char *subdirs[] = { "mail", "queue", "tmp", "certs" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s/%s", qs->abs, subdirs[i]);
		if (mkdir_ok(p, 0750) < 0)
			return -1;
	}
	snprintf(qs->cert, sizeof(qs->cert), "%s/certs/%s.pem", qs->abs, qs->host);
	snprintf(qs->key, sizeof(qs->key), "%s/certs/%s.key", qs->abs, qs->host);
	if (access(qs->cert, F_OK) != 0) {
		const char *err;
		mode_t old = umask(077);
		int r = tls_make_selfsigned(qs->host, qs->cert, qs->key, &err);
		umask(old);
		if (r < 0) {
			fprintf(stderr, "postino: cannot create the certificate: %s\n", err);
			return -1;
		}
	}
	return 0;
}

/* Write a new postino.conf: host, data dir, run_user, listeners (standard ports + offset),
 * certificate, a few limits. 0, or -1 after saying why. */
static int qs_write_config(struct quickstart *qs)
{
	FILE *f = fopen(qs->conf, "w");
	if (f == NULL) {
		fprintf(stderr, "postino: cannot write %s: %s\n", qs->conf, strerror(errno));
		return -1;
	}
	fprintf(f, "# postino configuration, written by 'postino quickstart %s'.\n"
		   "# 'postino config show' lists every setting and its default.\n\n"
		   "hostname = %s\ndata_dir = %s\nrun_user = %s\nworkers = 2\n"
		   "listen = %s\n\n"
		   "# self-signed; replace with a real certificate (and add tls_host lines for\n"
		   "# other names served by SNI: tls_host = NAME CERTFILE KEYFILE)\n"
		   "tls_cert = %s\ntls_key = %s\n\n",
		qs->host, qs->host, qs->abs, qs->sysuser ? qs->sysuser : "", qs->listen, qs->cert,
		qs->key);
	static const struct { const char *name; unsigned port; } ports[] = {
		{ "smtp", 25 }, { "submission", 587 }, { "submissions", 465 }, { "imap", 143 },
		{ "imaps", 993 }, { "pop3", 110 }, { "pop3s", 995 }, { "http", 80 },
		{ "https", 443 } };
	fprintf(f, "# listeners (0 disables one)\n");
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		fprintf(f, "%s_port = %lu\n", ports[i].name, ports[i].port + qs->offset);
	fprintf(f, "\n# limits\nmessage_size_limit = 25M\nmax_recipients = 100\n"
		   "max_conn_per_ip = 20\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "postino: cannot write %s\n", qs->conf);
		return -1;
	}
	qs->wrote_conf = 1;
	return 0;
}

/* postino.conf: written when missing. An existing one keeps its run_user: when it names
 * another user than the default one, the data is not handed to the default (qs->pw and
 * qs->sysuser are cleared) and the user is told how to change it. 0, or -1 after saying why. */
static int qs_config(struct quickstart *qs)
{
	snprintf(qs->conf, sizeof(qs->conf), "%s/postino.conf", qs->abs);
	if (access(qs->conf, F_OK) != 0)
		return qs_write_config(qs);
	if (!qs->sysuser_default)
		return 0;
	struct config *old = malloc(sizeof(*old));
	char cerr[1200];
	if (old == NULL)
		return 0;
	config_defaults(old);
	if (config_load(old, qs->conf, cerr, sizeof(cerr)) == 0 &&
	    strcmp(old->run_user, qs->sysuser) != 0) {
		fprintf(stderr, "postino: kept %s, whose run_user is %s: set run_user = "
				"%s there (and chown -R %s %s) to run the workers as %s\n",
			qs->conf, old->run_user[0] ? old->run_user : "not set", qs->sysuser,
			qs->sysuser, qs->abs, qs->sysuser);
		qs->pw = NULL;
		qs->sysuser = NULL;
	}
	free(old);
	return 0;
}

/* Add the account (--account) with a random password to db, and create its mailbox. An
 * account that exists keeps its password (qs->password stays ""). 0, or -1 after saying why. */
static int qs_account(struct quickstart *qs, struct acctdb *db)
{
	const char *err;
	char root[CONFIG_PATH_MAX + 700];
	random_password(qs->password);
	char *hash = password_hash(qs->password);
	if (hash == NULL) {
		fprintf(stderr, "postino: cannot hash a password\n");
		return -1;
	}
	int r = acctdb_user_add(db, qs->account, hash, &err);
	free(hash);
	if (r < 0) {
		fprintf(stderr, "postino: cannot add %s: %s\n", qs->account, err);
		return -1;
	}
	if (r == 0)
		qs->password[0] = '\0';   /* existed: its password is unchanged */
	char norm[ACCTDB_ADDRESS_MAX + 1];   /* the stored form: lower case, A-labels */
	if (acctdb_normalize_address(qs->account, norm, sizeof(norm)) < 0 ||
	    store_account_path(qs->abs, norm, root, sizeof(root)) < 0 ||
	    store_account_create(root, &err) < 0) {
		fprintf(stderr, "postino: cannot create the mailbox of %s\n", qs->account);
		return -1;
	}
	return 0;
}

/* system.db with the hosted domain (and its DKIM key) and the account, if asked for. 0, or -1
 * after saying why. */
static int qs_accounts(struct quickstart *qs)
{
	const char *err;
	struct acctdb *db;
	snprintf(qs->db, sizeof(qs->db), "%s/system.db", qs->abs);
	if (acctdb_open(qs->db, ACCTDB_CREATE, &db, &err) < 0) {
		fprintf(stderr, "postino: cannot create %s: %s\n", qs->db, err);
		return -1;
	}
	if (acctdb_normalize_domain(qs->domain, qs->dnorm, sizeof(qs->dnorm)) == 0)
		qs->domain = qs->dnorm;
	int r = 0;
	if (acctdb_domain_add(db, qs->domain, &err) < 0) {
		fprintf(stderr, "postino: cannot add domain %s: %s\n", qs->domain, err);
		r = -1;
	} else if (cli_dkim_domain_added(qs->abs, qs->domain) != 0) {
		r = -1;
	} else if (qs->account) {
		r = qs_account(qs, db);
	}
	acctdb_close(&db);
	return r;
}

/* Hand the data directory to the workers' user: theirs, but the accounts database and the TLS
 * key stay root's; then check that the user can reach the directory. 0, or -1 after saying
 * why. */
static int qs_ownership(struct quickstart *qs)
{
	struct passwd *pw = qs->pw;
	const char *err;
	if (pw == NULL)
		return 0;
	if (chown_tree(qs->abs, pw->pw_uid, pw->pw_gid) < 0) {
		fprintf(stderr, "postino: cannot give %s to %s\n", qs->abs, qs->sysuser);
		return -1;
	}
	/* the accounts stay root's: the workers' group reads them, only the admin writes them */
	if (acctdb_give_to_root(qs->db, (unsigned)pw->pw_gid, &err) < 0) {
		fprintf(stderr, "postino: %s\n", err);
		return -1;
	}
	if (geteuid() != 0)
		return 0;
	/* the master (root) loads the key and the workers never read it: it stays root's alone */
	if (chown(qs->key, 0, 0) < 0 || chmod(qs->key, 0600) < 0 ||
	    chown(qs->cert, 0, pw->pw_gid) < 0 || chmod(qs->cert, 0644) < 0) {
		fprintf(stderr, "postino: cannot give %s to root: %s\n", qs->key, strerror(errno));
		return -1;
	}
	struct config *qcfg = calloc(1, sizeof(*qcfg));
	char why[CONFIG_PATH_MAX * 2];
	if (qcfg != NULL) {
		snprintf(qcfg->run_user, sizeof(qcfg->run_user), "%s", qs->sysuser);
		snprintf(qcfg->data_dir, sizeof(qcfg->data_dir), "%s", qs->abs);
	}
	int ok = qcfg == NULL || master_check_run_user(qcfg, why, sizeof(why)) == 1;
	free(qcfg);
	if (!ok) {
		fprintf(stderr, "postino: %s: the workers could not start; let %s through the "
				"parent directories of %s (chmod o+x), or put the data directory "
				"elsewhere\n", why, qs->sysuser, qs->abs);
		return -1;
	}
	return 0;
}

/* What quickstart made, and the next steps. */
static void qs_summary(const struct quickstart *qs)
{
	unsigned long offset = qs->offset;
	const char *abs = qs->abs, *domain = qs->domain;
	printf("postino data directory: %s\n", abs);
	if (qs->pw)
		printf("workers run as:         %s (owns the data directory)\n", qs->sysuser);
	else if (qs->as_root)
		fprintf(stderr, "postino: WARNING: --user %s: the workers will run as root, so a flaw "
				"in them gives away the whole machine; prefer the default system user "
				"'%s'\n", "root", QUICKSTART_SYSTEM_USER);
	printf("configuration:          %s%s\n", qs->conf,
	       qs->wrote_conf ? "" : " (kept the existing one)");
	printf("certificate:            %s (self-signed for %s)\n", qs->cert, qs->host);
	printf("hosted domain:          %s\n", domain);
	if (qs->account && qs->password[0])
		printf("account:                %s\npassword: %s\n", qs->account, qs->password);
	else if (qs->account)
		printf("account:                %s (already existed; password unchanged)\n",
		       qs->account);
	printf("\nNext steps:\n"
	       "  postino serve --data %s                  # start the server\n"
	       "  postino user add you@%s --data %s        # add an account (password on stdin)\n"
	       "  postino config show --data %s            # every setting\n"
	       "SMTP listens on port %lu (MX), %lu (submission, STARTTLS) and %lu (implicit TLS).\n",
	       abs, domain, abs, abs, 25 + offset, 587 + offset, 465 + offset);
}

/* postino quickstart: a data directory with a configuration, a certificate, the hosted domain
 * and optionally an account, owned by the workers' system user. */
static int cmd_quickstart(int argc, char **argv)
{
	struct quickstart qs = { .listen = "127.0.0.1" };
	int rc = qs_args(&qs, argc, argv);
	if (rc >= 0)
		return rc;
	if (qs_system_user(&qs) < 0)
		return 1;
	umask(027);
	if (qs_data_dir(&qs) < 0 || qs_config(&qs) < 0 || qs_accounts(&qs) < 0 ||
	    qs_ownership(&qs) < 0)
		return 1;
	qs_summary(&qs);
	return 0;
}

/* The host names clients are told to use, collected for check_cert_names. */
struct names {
	char (*v)[256];
	size_t n, cap;
};

/* Add a name once (case-insensitively). */
static void names_add(struct names *ns, const char *prefix, const char *name)
{
	char full[256];
	if (snprintf(full, sizeof(full), "%s%s", prefix, name) >= (int)sizeof(full))
		return;
	for (size_t i = 0; i < ns->n; i++)
		if (strcasecmp(ns->v[i], full) == 0)
			return;
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		void *v = realloc(ns->v, cap * sizeof(*ns->v));
		if (v == NULL)
			return;
		ns->v = v;
		ns->cap = cap;
	}
	memcpy(ns->v[ns->n++], full, strlen(full) + 1);
}

/* acctdb_domain_list callback: the names of a hosted domain's client setup. */
static void names_of_domain(void *ctx, const char *domain)
{
	struct names *ns = ctx;
	names_add(ns, "autoconfig.", domain);
	names_add(ns, "autodiscover.", domain);
	names_add(ns, "mta-sts.", domain);
}

/* Does a certificate cover the names clients are told to use (hostname, domain_host servers,
 * autoconfig., autodiscover., mta-sts. of each hosted domain)? Covering none is an error (every
 * client would see a certificate warning); the names left out get a warning. 0 / -1. */
static int check_cert_names(const struct config *cfg, struct acctdb *db)
{
	const char *err;
	if (cfg->tls_cert[0] == '\0')
		return 0;
	struct tls_ctx *t = tls_ctx_new(cfg->tls_cert, cfg->tls_key, &err);
	for (size_t i = 0; t && i < cfg->ntls_hosts; i++)
		if (tls_ctx_add_host(t, cfg->tls_hosts[i].name, cfg->tls_hosts[i].cert,
				     cfg->tls_hosts[i].key, &err) < 0)
			tls_ctx_free(&t);
	if (t == NULL)
		return 0;   /* already reported */
	struct names ns = { NULL, 0, 0 };
	names_add(&ns, "", cfg->hostname);
	for (size_t i = 0; i < cfg->ndomain_hosts; i++) {
		const struct domain_host_conf *h = &cfg->domain_hosts[i];
		const char *hs[3] = { h->imap, h->pop3, h->smtp };
		for (size_t k = 0; k < 3; k++)
			if (hs[k][0])
				names_add(&ns, "", hs[k]);
	}
	if (db != NULL)
		acctdb_domain_list(db, names_of_domain, &ns, &err);
	size_t covered = 0, shown = 0;
	char missing[600] = "";
	for (size_t i = 0; i < ns.n; i++) {
		if (tls_ctx_covers(t, ns.v[i])) {
			covered++;
			continue;
		}
		size_t l = strlen(missing);
		if (shown < 8 && l + strlen(ns.v[i]) + 3 < sizeof(missing)) {
			snprintf(missing + l, sizeof(missing) - l, "%s%s", l ? ", " : "", ns.v[i]);
			shown++;
		}
	}
	const char *more = ns.n - covered > shown ? ", ..." : "";
	int rc = 0;
	if (covered == 0) {
		fprintf(stderr, "postino: %s: the certificate %s covers none of the names clients are "
				"told to use (%s%s): every client would refuse it; get a certificate "
				"for %s (or set hostname to the name it covers)\n", cfg->path,
			cfg->tls_cert, missing, more, cfg->hostname);
		rc = -1;
	} else if (covered < ns.n) {
		fprintf(stderr, "postino: warning: no certificate covers %s%s: clients using these "
				"names get a certificate warning (add them to the certificate, or a "
				"tls_host line each)\n", missing, more);
	}
	free(ns.v);
	tls_ctx_free(&t);
	return rc;
}

/* Warn about a private key every user of the machine can read. */
static void warn_key_mode(const char *key)
{
	struct stat st;
	if (key[0] && stat(key, &st) == 0 && (st.st_mode & S_IROTH))
		fprintf(stderr, "postino: warning: the private key %s is readable by every user: "
				"chmod 600 it (the master reads it before the workers drop privileges)\n",
			key);
}

/* postino config check|show. */
static int cmd_config(int argc, char **argv, const char *path)
{
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			fputs(usage_config, stdout);
			return 0;
		}
	}
	if (argc < 2) {
		fputs(usage_config, stderr);
		return 2;
	}
	struct config *cfg = malloc(sizeof(*cfg));
	if (cfg == NULL)
		return 1;
	int rc = 0;
	if (load_config(cfg, path) < 0) {
		free(cfg);
		return 1;
	}
	if (strcmp(argv[1], "show") == 0) {
		config_show(cfg, stdout);
	} else if (strcmp(argv[1], "check") == 0) {
		const char *err;
		char p[CONFIG_PATH_MAX + 16];
		if (cfg->tls_cert[0]) {
			struct tls_ctx *t = tls_ctx_new(cfg->tls_cert, cfg->tls_key, &err);
			if (t == NULL) {
				fprintf(stderr, "postino: %s: %s\n", path, err);
				rc = 1;
			}
			for (size_t i = 0; t && i < cfg->ntls_hosts; i++) {
				if (tls_ctx_add_host(t, cfg->tls_hosts[i].name, cfg->tls_hosts[i].cert,
						     cfg->tls_hosts[i].key, &err) < 0) {
					fprintf(stderr, "postino: %s: tls_host %s: %s\n", path,
						cfg->tls_hosts[i].name, err);
					rc = 1;
				}
			}
			tls_ctx_free(&t);
		} else {
			fprintf(stderr, "postino: warning: no tls_cert: ports 465, 993, 995 and 443 "
					"stay closed and STARTTLS is not offered\n");
		}
		snprintf(p, sizeof(p), "%s/system.db", cfg->data_dir);
		struct acctdb *db;
		if (acctdb_open(p, ACCTDB_RO, &db, &err) < 0) {
			fprintf(stderr, "postino: cannot open %s: %s (run 'postino quickstart')\n", p,
				err);
			rc = 1;
			db = NULL;
		}
		if (check_cert_names(cfg, db) < 0)
			rc = 1;
		warn_key_mode(cfg->tls_key);
		for (size_t i = 0; i < cfg->ntls_hosts; i++)
			warn_key_mode(cfg->tls_hosts[i].key);
		acctdb_close(&db);
		char why[CONFIG_PATH_MAX * 2];
		if (master_runs_as_root(cfg)) {
			warn_root_workers(cfg);
		} else if (master_check_run_user(cfg, why, sizeof(why)) != 1) {
			fprintf(stderr, "postino: %s: %s: the workers could not start (give the data "
					"directory to run_user: chown -R %s %s, and let it through the "
					"parent directories: chmod o+x)\n", path, why, cfg->run_user,
				cfg->data_dir);
			rc = 1;
		}
		if (rc == 0)
			printf("%s: configuration OK\n", path);
	} else {
		fputs(usage_config, stderr);
		rc = 2;
	}
	free(cfg);
	return rc;
}

/* Entry point. */
int main(int argc, char **argv)
{
	char path[CONFIG_PATH_MAX];
	umask(CLI_UMASK);
	store_global_init();
	if (argc < 2 || is_help(argv[1])) {
		fputs(usage_main, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("postino %s\n", POSTINO_VERSION);
		return 0;
	}
	if (strcmp(cmd, "quickstart") == 0)
		return cmd_quickstart(argc - 1, argv + 1);
	argc--;
	argv++;
	if (take_config_opt(&argc, argv, path, sizeof(path)) < 0)
		return 2;
	if (strcmp(cmd, "serve") == 0) {
		for (int i = 1; i < argc; i++) {
			if (is_help(argv[i])) {
				fputs(usage_serve, stdout);
				return 0;
			}
			fprintf(stderr, "postino: unexpected argument '%s'\n%s", argv[i], usage_serve);
			return 2;
		}
		return master_main(path);
	}
	if (strcmp(cmd, "config") == 0)
		return cmd_config(argc, argv, path);
	if (strcmp(cmd, "status") == 0) {
		if (argc > 1) {
			fputs(usage_status, is_help(argv[1]) ? stdout : stderr);
			return is_help(argv[1]) ? 0 : 2;
		}
		struct config *cfg = malloc(sizeof(*cfg));
		if (cfg == NULL || load_config(cfg, path) < 0) {
			free(cfg);
			return 1;
		}
		int rc = cli_status_main(cfg);
		free(cfg);
		return rc;
	}
	if (strcmp(cmd, "dns") == 0) {
		int help = 0;
		for (int i = 1; i < argc; i++)
			help |= is_help(argv[i]);
		struct config *cfg = help ? NULL : malloc(sizeof(*cfg));
		if (!help && (cfg == NULL || load_config(cfg, path) < 0)) {
			free(cfg);
			return 1;
		}
		int rc = http_dns_main(cfg, argc, argv);
		free(cfg);
		return rc;
	}
	if (strcmp(cmd, "domain") == 0 || strcmp(cmd, "user") == 0 || strcmp(cmd, "alias") == 0 ||
	    strcmp(cmd, "diag") == 0) {
		int help = 0;
		for (int i = 1; i < argc; i++)
			help |= is_help(argv[i]);
		if (help)   /* help needs no configuration */
			return cli_admin_main(NULL, argc, argv);
		struct config *cfg = malloc(sizeof(*cfg));
		if (cfg == NULL || load_config(cfg, path) < 0) {
			free(cfg);
			return 1;
		}
		cli_admin_set_config(cfg);
		cli_admin_set_privdrop(become_run_user);   /* after opening system.db as root */
		int rc = cli_admin_main(cfg->data_dir, argc, argv);
		cli_admin_set_config(NULL);
		free(cfg);
		return rc;
	}
	if (strcmp(cmd, "dkim") == 0) {
		int help = argc < 2;
		for (int i = 1; i < argc; i++)
			help |= is_help(argv[i]);
		if (help)   /* help needs no configuration */
			return cli_dkim_main(NULL, argc, argv);
		struct config *cfg = malloc(sizeof(*cfg));
		if (cfg == NULL || load_config(cfg, path) < 0 || become_run_user(cfg) < 0) {
			free(cfg);
			return 1;
		}
		int rc = cli_dkim_main(cfg->data_dir, argc, argv);
		free(cfg);
		return rc;
	}
	if (strcmp(cmd, "queue") == 0) {
		int help = argc < 2;
		for (int i = 1; i < argc; i++)
			help |= is_help(argv[i]);
		if (help)   /* help needs no configuration */
			return queue_cli_main(NULL, argc, argv);
		struct config *cfg = malloc(sizeof(*cfg));
		if (cfg == NULL || load_config(cfg, path) < 0 || become_run_user(cfg) < 0) {
			free(cfg);
			return 1;
		}
		int rc = queue_cli_main(cfg, argc, argv);
		free(cfg);
		return rc;
	}
	fprintf(stderr, "postino: unknown command '%s'\n%s", cmd, usage_main);
	return 2;
}
