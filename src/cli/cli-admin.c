/* cli-admin.c - "postino domain|user|alias ...": domains, accounts and aliases from the shell.
 *
 * One table describes every command: its arguments, its options and its help text. The parser
 * answers --help for any command before it looks at anything else, refuses unknown options with
 * exit code 2, and hands the command a checked list of positional arguments.
 * Inputs are validated here as well as in acctdb, so that every refusal can say what to do.
 */
#include "cli-admin.h"

#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "cli-dkim.h"
#include "config.h"
#include "diag.h"
#include "log.h"
#include "num.h"
#include "sendlimit.h"
#include "password.h"
#include "store-path.h"
#include "store.h"
#include "utf8.h"

#define ADMIN_PATH_MAX 4096        /* data dir plus mail/<domain>/<local>, escaped */
#define ADMIN_PASSWORD_MAX 1024    /* longer input is a mistake (a file piped in by accident) */
#define ADMIN_ARGS_MAX 64          /* positional arguments of one command */
#define ADMIN_SHOWN_MAX 80         /* user input quoted in a message is clipped here */

enum admin_opt {
	OPT_HASH = 1 << 0,   /* --hash HASH */
	OPT_PURGE = 1 << 1,  /* --purge */
};

struct admin {
	const char *data_dir;
	struct acctdb *db;
	const struct admin_cmd *cmd;
	const char *hash;            /* --hash value or NULL */
	int purge;                   /* --purge given */
	const char *args[ADMIN_ARGS_MAX];
	int nargs;
};

struct admin_cmd {
	const char *group;     /* "domain", "user", "alias" */
	const char *name;      /* "add", ... */
	const char *synopsis;  /* arguments after "postino GROUP NAME" */
	const char *summary;   /* one line for the group help */
	const char *help;      /* the full description */
	unsigned opts;         /* enum admin_opt */
	int min_args, max_args;
	int writes;            /* 1: may create system.db */
	int (*run)(struct admin *a);
};

/* Print "postino: <message>" on stderr; returns exit code 1. */
__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...)
{
	va_list ap;
	fputs("postino: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Print a usage complaint pointing at the command's help; returns exit code 2. */
__attribute__((format(printf, 2, 3)))
static int usage_error(const struct admin_cmd *c, const char *fmt, ...)
{
	va_list ap;
	fputs("postino: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (c != NULL)
		fprintf(stderr, ": usage: postino %s %s%s%s (see 'postino %s %s --help')\n", c->group,
			c->name, c->synopsis[0] ? " " : "", c->synopsis, c->group, c->name);
	else
		fputc('\n', stderr);
	return 2;
}

/* Stored text escaped for a listing (log_escape_text): a name that came from a peer (a login
 * name, a client name) or a file can hold CR/LF or ESC, which must not forge a line of output.
 * Rotates over ESC_SLOTS static buffers, so up to that many may appear in one printf. */
#define ESC_SLOTS 8
#define ESC_LEN (4 * 1024 + 8)   /* a 1 KiB field, every octet escaped */
static const char *esc(const char *in)
{
	static char slots[ESC_SLOTS][ESC_LEN];
	static unsigned next;
	char *out = slots[next++ % ESC_SLOTS];
	return log_escape_text(in, out, ESC_LEN);
}

/* Copy user input for a message: printable ASCII only, clipped. Returns out. */
static const char *shown(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; in[i] != '\0' && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		if (i >= ADMIN_SHOWN_MAX && in[i + 1] != '\0') {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
	}
	out[o] = '\0';
	return out;
}

#define DOMAIN_HINT "use letters, digits and hyphens in dot-separated labels, such as example.com"
#define ADDRESS_HINT "use local@domain, such as alice@example.com (letters, digits and " \
		     ".!#$%&'*+-/=?^_`{|}~ before the @)"

/* Validate a domain argument into out; prints the refusal. 0 ok, 1 refused. */
static int want_domain(const char *in, char *out, size_t outlen)
{
	char buf[ADMIN_SHOWN_MAX + 8];
	if (acctdb_normalize_domain(in, out, outlen) == 0)
		return 0;
	return fail("'%s' is not a valid domain name: %s", shown(in, buf, sizeof(buf)), DOMAIN_HINT);
}

/* Validate an address argument into out; prints the refusal. 0 ok, 1 refused. */
static int want_address(const char *in, char *out, size_t outlen)
{
	char buf[ADMIN_SHOWN_MAX + 8];
	if (acctdb_normalize_address(in, out, outlen) == 0)
		return 0;
	return fail("'%s' is not a valid address: %s", shown(in, buf, sizeof(buf)), ADDRESS_HINT);
}

/* Open <data_dir>/system.db, creating it for commands that write. 0 ok, 1 refused. */
static int open_db(struct admin *a)
{
	char path[ADMIN_PATH_MAX];
	struct stat stb;
	const char *err;
	if (a->db != NULL)
		return 0;   /* opened already (as root, by a writing command) */
	if (a->data_dir == NULL || a->data_dir[0] == '\0')
		return fail("no data directory is configured: pass --data DIR or --config FILE "
			    "(data_dir = DIR in postino.conf)");
	if (stat(a->data_dir, &stb) < 0 || !S_ISDIR(stb.st_mode))
		return fail("data directory %s does not exist: create it with 'postino quickstart "
			    "HOSTNAME --data %s', or pass the right --data/--config", a->data_dir,
			    a->data_dir);
	if ((size_t)snprintf(path, sizeof(path), "%s/system.db", a->data_dir) >= sizeof(path))
		return fail("data directory path is too long: use a shorter path");
	if (!a->cmd->writes && access(path, F_OK) < 0)
		return fail("there is no account database at %s yet: run 'postino quickstart "
			    "HOSTNAME --data %s' or 'postino domain add DOMAIN' first", path,
			    a->data_dir);
	if (acctdb_open(path, a->cmd->writes ? ACCTDB_CREATE : ACCTDB_RO, &a->db, &err) < 0)
		return fail("cannot open the account database: %s: check that %s is readable and "
			    "writable by this user", err, path);
	return 0;
}

/* Require a hosted domain; prints the refusal. 0 ok, 1 refused. */
static int want_hosted(struct admin *a, const char *domain)
{
	const char *err;
	int r = acctdb_domain_exists(a->db, domain, &err);
	if (r < 0)
		return fail("cannot look up domain %s: %s: try again", domain, err);
	if (r == 0)
		return fail("domain %s is not hosted here: add it first with 'postino domain add %s'",
			    domain, domain);
	return 0;
}

/* Where the mail of a (normalized) address lives; prints the refusal. 0 ok, 1 refused. */
static int mail_dir(const struct admin *a, const char *address, char *out, size_t outlen)
{
	if (store_account_path(a->data_dir, address, out, outlen) < 0)
		return fail("cannot build the mail directory path of %s: use a shorter data "
			    "directory path", address);
	return 0;
}

/* ---- passwords ---------------------------------------------------------------------------- */

static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

/* A signal arrived while echo was off: put the terminal back, then die of that signal. */
static void tty_restore_and_die(int sig)
{
	if (tty_echo_off)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line from fd into buf without stdio (so no copy of a secret stays in a stdio buffer).
 * Returns 1 line read (without its LF), 0 end of input before any byte, -1 read error,
 * -2 too long, -3 NUL byte. Always consumes through the LF. */
static int read_line(int fd, char *buf, size_t buflen, size_t *len_r)
{
	size_t n = 0;
	int got = 0, r = 1;
	for (;;) {
		char c;
		ssize_t k = read(fd, &c, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		got = 1;
		if (c == '\n')
			break;
		if (c == '\0')
			r = -3;
		else if (n + 1 >= buflen)
			r = r == 1 ? -2 : r;
		else
			buf[n++] = c;
	}
	buf[n] = '\0';
	if (!got)
		return 0;
	if (n > 0 && buf[n - 1] == '\r')   /* a line from a Windows editor */
		buf[--n] = '\0';
	*len_r = n;
	return r;
}

/* Prompt on stderr and read a line from the terminal on stdin with echo off. */
static int tty_read(const char *prompt, char *buf, size_t buflen, size_t *len_r)
{
	struct termios quiet;
	struct sigaction sa, old[4];
	static const int sigs[4] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	if (tcgetattr(STDIN_FILENO, &tty_saved) < 0)
		return -1;
	quiet = tty_saved;
	quiet.c_lflag &= (tcflag_t)~ECHO;
	quiet.c_lflag |= ECHONL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tty_restore_and_die;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old[i]);
	fputs(prompt, stderr);
	fflush(stderr);
	int r = -1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0) {
		tty_echo_off = 1;
		r = read_line(STDIN_FILENO, buf, buflen, len_r);
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
		tty_echo_off = 0;
	}
	for (size_t i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
	return r;
}

/* Explain a failed password read; returns exit code 1. */
static int password_read_failed(int r, const char *cmd, const char *address)
{
	if (r == 0)
		return fail("no password on standard input: pipe it in, for example "
			    "printf '%%s\\n' \"$PASSWORD\" | postino user %s %s", cmd, address);
	if (r == -2)
		return fail("the password is longer than %d bytes: use a shorter one",
			    ADMIN_PASSWORD_MAX - 1);
	if (r == -3)
		return fail("the password holds a NUL byte: use printable characters");
	return fail("cannot read the password: %s: pipe it on standard input", strerror(errno));
}

static const struct config *admin_cfg;   /* the loaded configuration (server-wide limits) */

/* The least number of characters of a new password (password_min_length). */
static unsigned password_min(void)
{
	struct config defcfg;
	if (admin_cfg != NULL)
		return admin_cfg->password_min_length;
	config_defaults(&defcfg);
	return defcfg.password_min_length;
}

/* Get the new password hash for `address`: --hash, else a password from stdin, hashed.
 * On a terminal the password is asked twice; on stdin one line, or two equal lines (a second
 * line that differs is refused like a mistyped confirmation). Returns a malloc'd hash, or NULL
 * after printing why. */
static char *new_hash(const struct admin *a, const char *address)
{
	if (a->hash != NULL) {
		if (password_hash_supported(a->hash) < 0) {
			fail("the --hash value is not a password hash postino can verify: use "
			     "{SHA512-CRYPT}$6$..., {BLF-CRYPT}$2y$..., {ARGON2ID}$argon2id$... or a "
			     "crypt(3) hash ($y$, $6$, $2b$...), quoted so the shell keeps the $ signs");
			return NULL;
		}
		char *h = strdup(a->hash);
		if (h == NULL)
			fail("out of memory: try again");
		return h;
	}
	char pw[ADMIN_PASSWORD_MAX], again[ADMIN_PASSWORD_MAX], prompt[ACCTDB_ADDRESS_MAX + 32];
	size_t len = 0, len2 = 0;
	char *hash = NULL;
	int r;
	if (isatty(STDIN_FILENO)) {
		snprintf(prompt, sizeof(prompt), "New password for %s: ", address);
		r = tty_read(prompt, pw, sizeof(pw), &len);
		if (r == 1 && len > 0) {
			r = tty_read("Type it again: ", again, sizeof(again), &len2);
			if (r == 1 && (len != len2 || memcmp(pw, again, len) != 0)) {
				fail("the two passwords differ: run the command again");
				r = -4;
			}
		}
	} else {
		r = read_line(STDIN_FILENO, pw, sizeof(pw), &len);
		int r2 = r == 1 ? read_line(STDIN_FILENO, again, sizeof(again), &len2) : 0;
		if (r2 != 0 && (r2 != 1 || len != len2 || memcmp(pw, again, len) != 0)) {
			fail("the two passwords on standard input differ: give the password on one "
			     "line, or twice on two equal lines");
			r = -4;
		}
	}
	unsigned min = password_min();
	if (r == 1 && len == 0)
		fail("the password is empty: type a password (or import one with --hash)");
	else if (r == 1 && utf8_chars((const unsigned char *)pw, len) < min)
		fail("the password is shorter than %u characters: choose a longer one "
		     "(password_min_length in postino.conf sets the minimum)", min);
	else if (r == 1 && (hash = password_hash(pw)) == NULL)
		fail("cannot hash the password (libxcrypt failed): check the installation");
	else if (r != 1 && r != -4)
		password_read_failed(r, a->cmd->name, address);
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	return hash;
}

/* Name the scheme of a stored hash without showing the hash. */
static const char *hash_scheme(const char *h, char *out, size_t outlen)
{
	static const struct {
		const char *prefix, *name;
	} schemes[] = {
		{ "$y$", "yescrypt" },        { "$gy$", "gost-yescrypt" },
		{ "$7$", "scrypt" },          { "$6$", "SHA512-CRYPT" },
		{ "$5$", "SHA256-CRYPT" },    { "$2a$", "BLF-CRYPT (bcrypt)" },
		{ "$2b$", "BLF-CRYPT (bcrypt)" }, { "$2y$", "BLF-CRYPT (bcrypt)" },
		{ "$1$", "MD5-CRYPT (weak)" }, { "$argon2id$", "ARGON2ID" },
		{ "$argon2i$", "ARGON2I" },
	};
	if (h[0] == '{') {
		const char *end = strchr(h, '}');
		size_t n = end != NULL ? (size_t)(end - h - 1) : 0;
		if (n > 0 && n < outlen && n < 32) {
			memcpy(out, h + 1, n);
			out[n] = '\0';
			for (size_t i = 0; i < n; i++)
				if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f)
					out[i] = '?';
			return out;
		}
		return "unknown";
	}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(h, schemes[i].prefix, strlen(schemes[i].prefix)) == 0)
			return schemes[i].name;
	return "unknown";
}

/* ---- domain ------------------------------------------------------------------------------- */

/* domain add DOMAIN */
static int domain_add(struct admin *a)
{
	char d[ACCTDB_ADDRESS_MAX + 1];
	const char *err;
	if (want_domain(a->args[0], d, sizeof(d)) || open_db(a))
		return 1;
	int r = acctdb_domain_add(a->db, d, &err);
	if (r < 0)
		return fail("cannot add domain %s: %s: try again", d, err);
	if (r == 0) {
		printf("domain %s is already hosted\n", d);
		return 0;
	}
	printf("added domain %s (publish an MX record for it that points at this server)\n", d);
	return cli_dkim_domain_added(a->data_dir, d);   /* its first DKIM keys */
}

/* Print one domain. */
static void print_line(void *ctx, const char *s)
{
	(void)ctx;
	printf("%s\n", esc(s));
}

/* domain list */
static int domain_list(struct admin *a)
{
	const char *err;
	if (open_db(a))
		return 1;
	int n = acctdb_domain_list(a->db, print_line, NULL, &err);
	if (n < 0)
		return fail("cannot list domains: %s: try again", err);
	if (n == 0 && isatty(STDOUT_FILENO))
		fprintf(stderr, "postino: no domains yet: add one with 'postino domain add DOMAIN'\n");
	return 0;
}

/* domain remove DOMAIN */
static int domain_remove(struct admin *a)
{
	char d[ACCTDB_ADDRESS_MAX + 1];
	const char *err;
	if (want_domain(a->args[0], d, sizeof(d)) || open_db(a))
		return 1;
	int r = acctdb_domain_remove(a->db, d, &err);
	if (r < 0)
		return fail("cannot remove domain %s: %s (see 'postino user list %s' and 'postino "
			    "alias list %s')", d, err, d, d);
	if (r == 0)
		return fail("domain %s is not hosted here: see 'postino domain list'", d);
	printf("removed domain %s\n", d);
	return 0;
}

/* ---- user --------------------------------------------------------------------------------- */

/* user add ADDRESS [--hash HASH] */
static int user_add(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1], dir[ADMIN_PATH_MAX];
	struct acct_user u;
	const char *err;
	if (want_address(a->args[0], addr, sizeof(addr)) || open_db(a) ||
	    want_hosted(a, strchr(addr, '@') + 1) || mail_dir(a, addr, dir, sizeof(dir)))
		return 1;
	int r = acctdb_user_get(a->db, addr, &u, &err);
	explicit_bzero(&u, sizeof(u));
	if (r < 0)
		return fail("cannot look up %s: %s: try again", addr, err);
	if (r == 1)
		return fail("account %s already exists: change its password with 'postino user "
			    "passwd %s'", addr, addr);
	char *hash = new_hash(a, addr);
	if (hash == NULL)
		return 1;
	/* the mailbox first: an account row without its store would fail every delivery */
	if (store_account_create(dir, &err) < 0) {
		free(hash);
		return fail("cannot create the mail store %s: %s: check that the data directory is "
			    "writable by this user", dir, err);
	}
	r = acctdb_user_add(a->db, addr, hash, &err);
	explicit_bzero(hash, strlen(hash));
	free(hash);
	if (r < 0)
		return fail("cannot add %s: %s: try again", addr, err);
	if (r == 0)
		return fail("account %s was created by someone else meanwhile: change its password "
			    "with 'postino user passwd %s'", addr, addr);
	printf("added %s (mail in %s)\n", addr, dir);
	return 0;
}

/* user passwd ADDRESS [--hash HASH] */
static const char *human_bytes(uint64_t n, char *out, size_t outlen);

static int user_quota(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1], h[64];
	const char *err;
	uint64_t bytes;
	if (want_address(a->args[0], addr, sizeof(addr)))
		return 1;
	if (strcmp(a->args[1], "none") == 0 || strcmp(a->args[1], "unlimited") == 0)
		bytes = 0;
	else if (num_parse_size(a->args[1], &bytes) < 0)
		return fail("'%s' is not a size: use for example 500M, 2G, or 0 for no limit",
			    a->args[1]);
	if (open_db(a))
		return 1;
	int r = acctdb_user_set_quota(a->db, addr, bytes, &err);
	if (r < 0)
		return fail("cannot set the quota of %s: %s", addr, err);
	if (r == 0)
		return fail("there is no account %s: see 'postino user list'", addr);
	printf("quota of %s: %s\n", addr, bytes ? human_bytes(bytes, h, sizeof(h)) : "unlimited");
	return 0;
}

static int user_passwd(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1];
	struct acct_user u;
	const char *err;
	if (want_address(a->args[0], addr, sizeof(addr)) || open_db(a))
		return 1;
	int r = acctdb_user_get(a->db, addr, &u, &err);
	explicit_bzero(&u, sizeof(u));
	if (r < 0)
		return fail("cannot look up %s: %s: try again", addr, err);
	if (r == 0)
		return fail("there is no account %s: see 'postino user list', or create it with "
			    "'postino user add %s'", addr, addr);
	char *hash = new_hash(a, addr);
	if (hash == NULL)
		return 1;
	r = acctdb_user_set_hash(a->db, addr, hash, &err);
	explicit_bzero(hash, strlen(hash));
	free(hash);
	if (r < 0)
		return fail("cannot change the password of %s: %s: try again", addr, err);
	if (r == 0)
		return fail("account %s was removed meanwhile: create it with 'postino user add %s'",
			    addr, addr);
	printf("changed the password of %s\n", addr);
	return 0;
}

/* Is sending from the account suspended (limits.db, or system.db by an older postino)? */
static int is_suspended(const struct admin *a, const struct acct_user *u)
{
	const char *err;
	return u->suspended || sendlimit_suspended(a->data_dir, u->address, &err) == 1;
}

/* Print one account of a listing. */
static void print_user(void *ctx, const struct acct_user *u)
{
	const struct admin *a = ctx;
	printf("%s%s\n", esc(u->address), is_suspended(a, u) ? " (suspended)" : "");
}

/* user list [DOMAIN] */
static int user_list(struct admin *a)
{
	char d[ACCTDB_ADDRESS_MAX + 1];
	const char *err;
	if (a->nargs == 1 && want_domain(a->args[0], d, sizeof(d)))
		return 1;
	if (open_db(a) || (a->nargs == 1 && want_hosted(a, d)))
		return 1;
	int n = acctdb_user_list(a->db, a->nargs == 1 ? d : NULL, print_user, a, &err);
	if (n < 0)
		return fail("cannot list accounts: %s: try again", err);
	if (n == 0 && isatty(STDOUT_FILENO))
		fprintf(stderr, "postino: no accounts yet: add one with 'postino user add "
				"ADDRESS'\n");
	return 0;
}

/* Collects "a, b, c" into a fixed buffer, ending in "..." when it fills up. */
struct joined {
	char buf[1024];
	int n;
};

/* Append one address to a joined list. */
static void join_add(void *ctx, const char *s)
{
	struct joined *j = ctx;
	size_t len = strlen(j->buf), sl = strlen(s);
	if (len + sl + 8 >= sizeof(j->buf)) {
		if (len + 4 < sizeof(j->buf) && (len < 3 || strcmp(j->buf + len - 3, "...") != 0))
			memcpy(j->buf + len, "...", 4);
		return;
	}
	snprintf(j->buf + len, sizeof(j->buf) - len, "%s%s", j->n++ ? ", " : "", s);
}

/* Format a byte count for people. */
static const char *human_bytes(uint64_t n, char *out, size_t outlen)
{
	if (n == 0)
		snprintf(out, outlen, "unlimited");
	else if (n >= 1073741824ull)
		snprintf(out, outlen, "%llu bytes (%.1f GiB)", (unsigned long long)n,
			 (double)n / 1073741824.0);
	else if (n >= 1048576ull)
		snprintf(out, outlen, "%llu bytes (%.1f MiB)", (unsigned long long)n,
			 (double)n / 1048576.0);
	else
		snprintf(out, outlen, "%llu bytes", (unsigned long long)n);
	return out;
}

static void print_limits(struct admin *a, const char *addr);

/* user show ADDRESS */
static int user_show(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1], dir[ADMIN_PATH_MAX], when[64], quota[64], scheme[40];
	struct acct_user u;
	struct joined sendas = { "", 0 };
	struct stat stb;
	const char *err;
	if (want_address(a->args[0], addr, sizeof(addr)) || open_db(a) ||
	    mail_dir(a, addr, dir, sizeof(dir)))
		return 1;
	int r = acctdb_user_get(a->db, addr, &u, &err);
	if (r < 0)
		return fail("cannot look up %s: %s: try again", addr, err);
	if (r == 0)
		return fail("there is no account %s: see 'postino user list'", addr);
	time_t t = (time_t)u.created;
	struct tm tm;
	if (u.created <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(when, sizeof(when), "unknown");
	if (acctdb_sendable_addresses(a->db, addr, join_add, &sendas, &err) < 0)
		snprintf(sendas.buf, sizeof(sendas.buf), "(cannot list: %s)", err);
	printf("address:     %s\n", esc(u.address));
	printf("created:     %s\n", when);
	if (is_suspended(a, &u))
		printf("suspended:   yes (may not send; lift with 'postino user unsuspend %s')\n",
		       esc(u.address));
	else
		printf("suspended:   no\n");
	printf("quota:       %s\n", human_bytes(u.quota_bytes, quota, sizeof(quota)));
	printf("mail dir:    %s%s\n", esc(dir), stat(dir, &stb) == 0 ? "" : " (missing)");
	printf("password:    %s hash\n", hash_scheme(u.hash, scheme, sizeof(scheme)));
	printf("may send as: %s\n", esc(sendas.buf));
	explicit_bzero(&u, sizeof(u));
	print_limits(a, addr);
	return 0;
}

/* ---- sending limits and login diagnostics (issues 5 and 6) --------------------------------- */

void cli_admin_set_config(const struct config *cfg)
{
	admin_cfg = cfg;
}

static int (*admin_privdrop)(const struct config *cfg);

void cli_admin_set_privdrop(int (*drop)(const struct config *cfg))
{
	admin_privdrop = drop;
}

/* As root, before dropping to run_user: a writing command opens system.db now and keeps it
 * root's, readable by the workers' group only. 0 ok, 1 refused (printed). */
static int open_db_as_root(struct admin *a)
{
	if (geteuid() != 0 || !a->cmd->writes || admin_cfg == NULL || admin_cfg->run_user[0] == '\0')
		return 0;
	if (open_db(a))
		return 1;
	struct passwd *pw = getpwnam(admin_cfg->run_user);
	char path[ADMIN_PATH_MAX];
	const char *err;
	snprintf(path, sizeof(path), "%s/system.db", a->data_dir);
	if (pw != NULL && acctdb_give_to_root(path, (unsigned)pw->pw_gid, &err) < 0)
		return fail("%s: check the file system of %s", err, a->data_dir);
	return 0;
}

/* Print the limits in force for addr and what was sent in the windows. */
static void print_limits(struct admin *a, const char *addr)
{
	struct config defcfg;
	const struct config *cfg = admin_cfg;
	if (cfg == NULL) {
		config_defaults(&defcfg);
		cfg = &defcfg;
	}
	struct acct_limits own;
	uint64_t lim[ACCT_LIM_COUNT];
	struct sendlimit_counts c;
	const char *err;
	if (acctdb_limits_get(a->db, addr, &own, &err) < 0 ||
	    sendlimit_effective(cfg, a->db, addr, lim, &err) < 0) {
		printf("limits:      (cannot read: %s)\n", err);
		return;
	}
	int have = sendlimit_counts(a->data_dir, addr, &c, &err) == 0;
	const uint64_t used[ACCT_LIM_COUNT] = { c.msgs_hour, c.msgs_day, c.rcpts_day, c.new_day,
						 c.refusals_day };
	static const char *const label[ACCT_LIM_COUNT] = {
		"messages per hour", "messages per day", "recipients per day",
		"new recipients per day", "refusals that suspend",
	};
	printf("sending limits (used in the window / limit):\n");
	for (int i = 0; i < ACCT_LIM_COUNT; i++) {
		char l[32];
		if (lim[i] == 0)
			snprintf(l, sizeof(l), "no limit");
		else
			snprintf(l, sizeof(l), "%llu", (unsigned long long)lim[i]);
		char src[80];
		snprintf(src, sizeof(src), own.v[i] >= 0 ? "own setting" : "server's send_%s",
			 acctdb_limit_names[i]);
		if (have)
			printf("  %-24s %6llu / %-9s (%s)\n", label[i], (unsigned long long)used[i], l,
			       src);
		else
			printf("  %-24s %-9s (%s)\n", label[i], l, src);
	}
	if (have)
		printf("  known recipients         %6llu\n", (unsigned long long)c.known);
}

/* user limits ADDRESS [KEY=VALUE ...] */
static int user_limits(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1];
	const char *err;
	if (want_address(a->args[0], addr, sizeof(addr)) || open_db(a))
		return 1;
	struct acct_limits l;
	int r = acctdb_limits_get(a->db, addr, &l, &err);
	if (r < 0)
		return fail("cannot read the limits of %s: %s", addr, err);
	struct acct_user u;
	r = acctdb_user_get(a->db, addr, &u, &err);
	explicit_bzero(&u, sizeof(u));
	if (r < 0)
		return fail("cannot look up %s: %s: try again", addr, err);
	if (r == 0)
		return fail("there is no account %s: see 'postino user list'", addr);
	for (int i = 1; i < a->nargs; i++) {
		char buf[ADMIN_SHOWN_MAX + 8];
		const char *eq = strchr(a->args[i], '=');
		int k = -1;
		for (int j = 0; eq && j < ACCT_LIM_COUNT; j++)
			if (strlen(acctdb_limit_names[j]) == (size_t)(eq - a->args[i]) &&
			    strncmp(acctdb_limit_names[j], a->args[i], (size_t)(eq - a->args[i])) == 0)
				k = j;
		if (k < 0)
			return usage_error(a->cmd, "'%s' is not KEY=VALUE with KEY one of "
					   "messages_per_hour, messages_per_day, recipients_per_day, "
					   "new_recipients_per_day, suspend_threshold",
					   shown(a->args[i], buf, sizeof(buf)));
		const char *v = eq + 1;
		char *end;
		if (strcmp(v, "default") == 0) {
			l.v[k] = -1;
			continue;
		}
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		if (*v < '0' || *v > '9' || *end != '\0' || errno || n > 1000000000ull)
			return usage_error(a->cmd, "%s needs a number (0 for no limit) or 'default', "
					   "got '%s'", acctdb_limit_names[k], shown(v, buf, sizeof(buf)));
		l.v[k] = (int64_t)n;
	}
	if (a->nargs > 1) {
		r = acctdb_limits_set(a->db, addr, &l, &err);
		if (r < 0)
			return fail("cannot store the limits of %s: %s: try again", addr, err);
		if (r == 0)
			return fail("there is no account %s: see 'postino user list'", addr);
		printf("limits of %s changed (running servers apply them to the next message)\n",
		       addr);
	}
	print_limits(a, addr);
	return 0;
}

/* user unsuspend ADDRESS */
static int user_unsuspend(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1];
	const char *err;
	if (want_address(a->args[0], addr, sizeof(addr)) || open_db(a))
		return 1;
	int r = sendlimit_unsuspend(a->data_dir, a->db, addr, &err);
	if (r < 0)
		return fail("cannot lift the suspension of %s: %s: try again", addr, err);
	if (r == 0)
		return fail("there is no account %s: see 'postino user list'", addr);
	printf(r == 1 ? "%s may send mail again; its held mail is released\n" :
		     "%s was not suspended; its count of refused attempts was cleared\n", addr);
	return 0;
}

/* ---- diag ---- */

/* "IMAP port 143 without TLS" style names. */
static const char *proto_text(const char *proto)
{
	static const char *const names[][2] = {
		{ "smtp", "SMTP" }, { "submission", "SMTP submission" },
		{ "submissions", "SMTP submission (SSL)" }, { "imap", "IMAP" },
		{ "imaps", "IMAP (SSL)" }, { "pop3", "POP3" }, { "pop3s", "POP3 (SSL)" },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i][0], proto) == 0)
			return names[i][1];
	return proto;
}

static const char *const kind_text[DIAG_KIND_COUNT] = {
	"logged in", "unknown user", "wrong password", "login without TLS refused",
	"sending suspended", "TLS handshake failed", "unsupported login method",
	"temporary server failure", "login on the MX port refused",
};

struct diag_group {
	struct diag_event e;   /* the newest of the group */
	unsigned n;
	unsigned max_delay;
};

struct diag_ctx {
	struct diag_group g[32];
	unsigned ng, total;
	int by_ip;
};

static const char *time_text(int64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(out, outlen, "?");
	return out;
}

/* Print one event line and fold it into its group. */
static void diag_event_cb(void *ctx, const struct diag_event *e)
{
	struct diag_ctx *c = ctx;
	char when[32];
	/* the text fields of e come escaped from diag_list */
	printf("  %s  %-26s %s port %u%s from %s%s%s%s%s%s%s%s\n", time_text(e->t, when, sizeof(when)),
	       kind_text[e->kind], proto_text(e->proto), e->port, e->tls ? " with TLS" : " without TLS",
	       e->ip, e->client[0] ? " (" : "", e->client, e->client[0] ? ")" : "",
	       c->by_ip && e->user[0] ? " as " : "", c->by_ip ? e->user : "",
	       e->detail[0] ? ": " : "", e->detail);
	if (e->delay_ms)
		printf("  %19s  (rate-limited: the brute-force brake held the answer %u ms)\n", "",
		       e->delay_ms);
	c->total++;
	for (unsigned i = 0; i < c->ng; i++) {
		struct diag_group *g = &c->g[i];
		if (g->e.kind == e->kind && strcmp(g->e.ip, e->ip) == 0 &&
		    strcmp(g->e.proto, e->proto) == 0 && g->e.port == e->port &&
		    strcmp(g->e.client, e->client) == 0 && strcmp(g->e.user, e->user) == 0) {
			g->n++;
			if (e->delay_ms > g->max_delay)
				g->max_delay = e->delay_ms;
			return;
		}
	}
	if (c->ng < sizeof(c->g) / sizeof(c->g[0])) {
		c->g[c->ng].e = *e;
		c->g[c->ng].n = 1;
		c->g[c->ng].max_delay = e->delay_ms;
		c->ng++;
	}
}

/* The port of a protocol's implicit-TLS (tls=1) or STARTTLS (tls=0) listener, as configured
 * (defaults without a configuration). */
static unsigned proto_port(const char *proto, int tls)
{
	struct config defcfg;
	const struct config *cfg = admin_cfg;
	if (cfg == NULL) {
		config_defaults(&defcfg);
		cfg = &defcfg;
	}
	if (strncmp(proto, "imap", 4) == 0)
		return cfg->l[tls ? LST_IMAPS : LST_IMAP].port;
	if (strncmp(proto, "pop3", 4) == 0)
		return cfg->l[tls ? LST_POP3S : LST_POP3].port;
	return cfg->l[tls ? LST_SUBMISSIONS : LST_SUBMISSION].port;
}

/* One piece of advice per group. */
static void diag_advice(const struct diag_group *g, const char *addr)
{
	const struct diag_event *e = &g->e;
	char who[400];
	snprintf(who, sizeof(who), "from %s%s%s over %s port %u", e->ip,
		 e->client[0] ? " with " : "", e->client, proto_text(e->proto), e->port);
	const char *times = g->n == 1 ? "once" : "times";
	char nt[16];
	snprintf(nt, sizeof(nt), "%u", g->n);
	switch (e->kind) {
	case DIAG_UNKNOWN_USER:
		printf("- %u failed login%s as \"%s\", which is not an account, %s: the user name is "
		       "the full email address; check it for typos.\n", g->n, g->n == 1 ? "" : "s",
		       e->user, who);
		break;
	case DIAG_WRONG_PASSWORD:
		printf("- wrong password %s%s%s %s: enter the current password in the mail program, "
		       "or reset it with `postino user passwd %s`.\n", g->n == 1 ? "" : nt,
		       g->n == 1 ? "" : " ", times, who, addr[0] ? addr : e->user);
		break;
	case DIAG_PLAINTEXT:
		if (e->port == proto_port(e->proto, 1)) {
			printf("- %u connection%s %s without TLS, on a port that needs SSL/TLS from "
			       "the start: turn on SSL/TLS in the mail program (or use port %u with "
			       "STARTTLS).\n", g->n, g->n == 1 ? "" : "s", who,
			       proto_port(e->proto, 0));
			break;
		}
		printf("- %u failed login%s %s without TLS: turn on SSL/TLS, port %u (or STARTTLS on "
		       "port %u) in the mail program.\n", g->n, g->n == 1 ? "" : "s", who,
		       proto_port(e->proto, 1), e->port);
		break;
	case DIAG_SUSPENDED:
		printf("- sending is suspended (%u refused attempt%s %s): the account sent more than "
		       "its limits allow; check it was not hijacked (change the password), then "
		       "`postino user unsuspend %s`.\n", g->n, g->n == 1 ? "" : "s", who,
		       addr[0] ? addr : e->user);
		break;
	case DIAG_TLS_FAILED:
		printf("- %u TLS handshake%s failed %s (%s): the mail program may be too old for TLS "
		       "1.2, or does not accept the certificate; update it, and check the server "
		       "name it uses matches the certificate.\n", g->n, g->n == 1 ? "" : "s", who,
		       e->detail);
		break;
	case DIAG_BAD_MECH:
		printf("- %u login%s with an unsupported method (%s) %s: set the authentication "
		       "method to \"normal password\" (PLAIN or LOGIN).\n", g->n,
		       g->n == 1 ? "" : "s", e->detail, who);
		break;
	case DIAG_WRONG_PORT:
		printf("- %u login attempt%s %s: that port is for mail between servers; set the "
		       "outgoing server to port %u with STARTTLS or %u with SSL/TLS.\n", g->n,
		       g->n == 1 ? "" : "s", who, proto_port("submission", 0), proto_port("submission", 1));
		break;
	case DIAG_TEMPFAIL:
		printf("- %u login%s failed because of a server problem (%s) %s: see the server "
		       "log.\n", g->n, g->n == 1 ? "" : "s", e->detail, who);
		break;
	default:
		break;
	}
	if (g->max_delay)
		printf("  rate-limited: the brute-force brake slowed these answers (up to %u ms); if "
		       "%s is not the user's address, someone is guessing passwords.\n",
		       g->max_delay, e->ip);
}

static void diag_ok_cb(void *ctx, const struct diag_event *e)
{
	(void)ctx;
	char when[32];
	printf("  %-22s %s from %s%s%s%s\n", proto_text(e->proto),
	       time_text(e->t, when, sizeof(when)), e->ip, e->client[0] ? " (" : "", e->client,
	       e->client[0] ? ")" : "");
}

/* Print the events of an account or an IP, then the advice. */
static int diag_show(struct admin *a, const char *by, const char *key, const char *addr)
{
	const char *err;
	struct diag_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return fail("out of memory");
	c->by_ip = strcmp(by, "ip") == 0;
	if (!c->by_ip) {
		printf("Last successful login per protocol (UTC):\n");
		int n = diag_list(a->data_dir, "ok", key, 20, diag_ok_cb, NULL, &err);
		if (n == 0)
			printf("  none recorded\n");
		if (n < 0) {
			free(c);
			return fail("cannot read %s/diag.db: %s", a->data_dir, err);
		}
	}
	printf("Recent login problems, newest first (UTC):\n");
	int n = diag_list(a->data_dir, by, key, 100, diag_event_cb, c, &err);
	if (n < 0) {
		free(c);
		return fail("cannot read %s/diag.db: %s", a->data_dir, err);
	}
	if (n == 0)
		printf("  none recorded\n");
	else
		printf("What to change:\n");
	for (unsigned i = 0; i < c->ng; i++)
		diag_advice(&c->g[i], addr);
	free(c);
	return 0;
}

/* user diag ADDRESS */
static int user_diag(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1], key[400];
	const char *err;
	/* a mistyped login name is worth looking up too: take anything, lower-cased */
	snprintf(key, sizeof(key), "%s", a->args[0]);
	for (char *p = key; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	addr[0] = '\0';
	if (acctdb_normalize_address(a->args[0], addr, sizeof(addr)) == 0) {
		if (open_db(a))
			return 1;
		struct acct_user u;
		int r = acctdb_user_get(a->db, addr, &u, &err);
		int susp = r == 1 && is_suspended(a, &u);
		explicit_bzero(&u, sizeof(u));
		if (r == 0)
			printf("%s is not an account here: the events below are logins that tried "
			       "this name.\n", addr);
		else if (susp)
			printf("%s: sending is SUSPENDED (postino user show %s; lift with postino "
			       "user unsuspend %s)\n", addr, addr, addr);
		else
			printf("%s\n", addr);
	} else {
		printf("%s is not a valid address: the events below are logins that tried this "
		       "name.\n", esc(key));
		if (a->data_dir == NULL)
			return fail("no data directory is configured: pass --data DIR");
	}
	char shown_key[ESC_LEN];
	return diag_show(a, "user", key, addr[0] ? addr : log_escape_text(key, shown_key,
									 sizeof(shown_key)));
}

/* diag ip ADDRESS */
static int diag_ip(struct admin *a)
{
	if (a->data_dir == NULL)
		return fail("no data directory is configured: pass --data DIR or --config FILE");
	printf("Client %s\n", esc(a->args[0]));
	return diag_show(a, "ip", a->args[0], "");
}

/* nftw callback: delete one entry, children before their directory. */
static int purge_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP || type == FTW_D)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

/* Delete a mail directory tree; a tree that is already gone is fine. 0 ok, -1 errno set. */
static int purge_tree(const char *dir)
{
	struct stat stb;
	if (lstat(dir, &stb) < 0)
		return errno == ENOENT ? 0 : -1;
	return nftw(dir, purge_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* user remove ADDRESS [--purge] */
static int user_remove(struct admin *a)
{
	char addr[ACCTDB_ADDRESS_MAX + 1], dir[ADMIN_PATH_MAX];
	struct joined sendas = { "", 0 };
	const char *err;
	if (want_address(a->args[0], addr, sizeof(addr)) || open_db(a) ||
	    mail_dir(a, addr, dir, sizeof(dir)))
		return 1;
	/* aliases that list the account keep listing it: say which, before the row goes */
	if (acctdb_sendable_addresses(a->db, addr, join_add, &sendas, &err) < 0)
		return fail("cannot look up %s: %s: try again", addr, err);
	int r = acctdb_user_remove(a->db, addr, &err);
	if (r < 0)
		return fail("cannot remove %s: %s: try again", addr, err);
	if (r == 0)
		return fail("there is no account %s: see 'postino user list'", addr);
	if (a->purge) {
		if (purge_tree(dir) < 0)
			return fail("removed the account %s but could not delete %s: %s: delete that "
				    "directory by hand", addr, dir, strerror(errno));
		printf("removed %s and deleted its mail in %s\n", addr, dir);
	} else {
		printf("removed %s; its mail is kept in %s (delete that directory by hand when it "
		       "is no longer needed)\n", addr, dir);
	}
	/* sendas lists the account itself first; anything after it is an alias */
	const char *aliases = strchr(sendas.buf, ',');
	if (aliases != NULL)
		printf("note: these aliases still list %s: %s (change them with 'postino alias "
		       "add' or remove them)\n", addr, aliases + 2);
	return 0;
}

/* ---- alias -------------------------------------------------------------------------------- */

/* Validate an alias argument (local@domain or @domain) into out; prints the refusal. */
static int want_alias(const char *in, char *out, size_t outlen, const char **domain_r)
{
	char buf[ADMIN_SHOWN_MAX + 8];
	if (in[0] == '@' && outlen > 1 && acctdb_normalize_domain(in + 1, out + 1, outlen - 1) == 0) {
		out[0] = '@';
		*domain_r = out + 1;
		return 0;
	}
	if (in[0] != '@' && acctdb_normalize_address(in, out, outlen) == 0) {
		*domain_r = strchr(out, '@') + 1;
		return 0;
	}
	return fail("'%s' is not a valid alias: use local@domain, or @domain for a catch-all that "
		    "takes mail for every unknown name in the domain", shown(in, buf, sizeof(buf)));
}

/* Is addr already in the comma-separated list out[0..o)? */
static int list_has(const char *out, size_t o, const char *addr)
{
	size_t al = strlen(addr);
	for (size_t i = 0; i < o;) {
		size_t n = 0;
		while (i + n < o && out[i + n] != ',')
			n++;
		if (n == al && memcmp(out + i, addr, al) == 0)
			return 1;
		i += n + 1;
	}
	return 0;
}

/* Check every target of the argument list and join them, lower-cased and without duplicates,
 * with commas into *out_r (malloc'd). 0 ok, else the exit code after printing why. */
static int want_targets(const struct admin *a, char **out_r)
{
	size_t total = 1;
	for (int i = 1; i < a->nargs; i++)
		total += strlen(a->args[i]) + 1;
	char *out = malloc(total);
	if (out == NULL)
		return fail("out of memory: try again");
	size_t o = 0;
	for (int i = 1; i < a->nargs; i++) {
		const char *s = a->args[i];
		while (*s != '\0') {
			size_t n = strcspn(s, ", \t");
			if (n > 0) {
				char tok[ACCTDB_ADDRESS_MAX + 2], t[ACCTDB_ADDRESS_MAX + 1];
				size_t k = n < sizeof(tok) - 1 ? n : sizeof(tok) - 1;
				memcpy(tok, s, k);
				tok[k] = '\0';
				if (n > ACCTDB_ADDRESS_MAX ||
				    acctdb_normalize_address(tok, t, sizeof(t)) < 0) {
					char buf[ADMIN_SHOWN_MAX + 8];
					free(out);
					return fail("'%s' is not a valid target address: %s",
						    shown(tok, buf, sizeof(buf)), ADDRESS_HINT);
				}
				/* an A-label is longer than the U-label it comes from: make room */
				if (o + strlen(t) + 2 > total) {
					char *grown = realloc(out, o + strlen(t) + 2 + total);
					if (grown == NULL) {
						free(out);
						return fail("out of memory: try again");
					}
					out = grown;
					total = o + strlen(t) + 2 + total;
				}
				if (!list_has(out, o, t)) {
					if (o > 0)
						out[o++] = ',';
					memcpy(out + o, t, strlen(t));
					o += strlen(t);
				}
			}
			s += n;
			if (*s != '\0')
				s++;
		}
	}
	out[o] = '\0';
	if (o == 0) {
		free(out);
		return usage_error(a->cmd, "alias add needs at least one target address");
	}
	*out_r = out;
	return 0;
}

/* Print a stored target list with ", " between the addresses (escaped for display). */
static void print_targets(const char *targets)
{
	for (const char *p = esc(targets); *p != '\0'; p++) {
		if (*p == ',')
			fputs(", ", stdout);
		else
			putchar(*p);
	}
}

/* Sink for acctdb_resolve() when only the number of targets matters. */
static void ignore_target(void *ctx, const char *target)
{
	(void)ctx;
	(void)target;
}

/* alias add ALIAS TARGET[,TARGET...] */
static int alias_add(struct admin *a)
{
	char alias[ACCTDB_ADDRESS_MAX + 2];
	const char *domain, *err;
	char *targets = NULL;
	if (want_alias(a->args[0], alias, sizeof(alias), &domain))
		return 1;
	int rc = want_targets(a, &targets);
	if (rc != 0)
		return rc;
	if (open_db(a) || want_hosted(a, domain)) {
		free(targets);
		return 1;
	}
	int r = acctdb_alias_add(a->db, alias, targets, &err);
	if (r < 0) {
		free(targets);
		return fail("cannot add alias %s: %s: fix the targets and try again", alias, err);
	}
	printf("%s alias %s -> ", r == 1 ? "added" : "replaced", alias);
	print_targets(targets);
	printf("%s\n", alias[0] == '@' ? " (catch-all)" : "");
	fflush(stdout);
	/* a local target that is neither account nor alias would bounce: say so now */
	for (char *p = targets; *p != '\0';) {
		char *e = strchr(p, ',');
		if (e != NULL)
			*e = '\0';
		if (strcmp(p, alias) != 0 &&
		    acctdb_domain_exists(a->db, strchr(p, '@') + 1, &err) == 1 &&
		    acctdb_resolve(a->db, p, ignore_target, NULL, &err) == 0)
			fprintf(stderr, "postino: warning: %s is neither an account nor an alias: "
					"mail for it bounces until you add it\n", p);
		if (e == NULL)
			break;
		p = e + 1;
	}
	free(targets);
	return 0;
}

/* Print one alias of a listing. */
static void print_alias(void *ctx, const char *alias, const char *targets)
{
	(void)ctx;
	printf("%s -> ", esc(alias));
	print_targets(targets);
	printf("%s\n", alias[0] == '@' ? " (catch-all)" : "");
}

/* alias list [DOMAIN] */
static int alias_list(struct admin *a)
{
	char d[ACCTDB_ADDRESS_MAX + 1];
	const char *err;
	if (a->nargs == 1 && want_domain(a->args[0], d, sizeof(d)))
		return 1;
	if (open_db(a) || (a->nargs == 1 && want_hosted(a, d)))
		return 1;
	int n = acctdb_alias_list(a->db, a->nargs == 1 ? d : NULL, print_alias, NULL, &err);
	if (n < 0)
		return fail("cannot list aliases: %s: try again", err);
	if (n == 0 && isatty(STDOUT_FILENO))
		fprintf(stderr, "postino: no aliases yet: add one with 'postino alias add ALIAS "
				"TARGET'\n");
	return 0;
}

/* alias remove ALIAS */
static int alias_remove(struct admin *a)
{
	char alias[ACCTDB_ADDRESS_MAX + 2];
	const char *domain, *err;
	if (want_alias(a->args[0], alias, sizeof(alias), &domain) || open_db(a))
		return 1;
	int r = acctdb_alias_remove(a->db, alias, &err);
	if (r < 0)
		return fail("cannot remove alias %s: %s: try again", alias, err);
	if (r == 0)
		return fail("there is no alias %s: see 'postino alias list %s'", alias, domain);
	printf("removed alias %s\n", alias);
	return 0;
}

/* ---- command table and parsing ------------------------------------------------------------ */

static const struct admin_cmd admin_cmds[] = {
	{ "domain", "add", "DOMAIN", "host mail for DOMAIN",
	  "Hosts mail for DOMAIN: the server accepts mail for it, and accounts and aliases can be\n"
	  "added in it. Also creates its DKIM keys (RSA-2048 and Ed25519, see 'postino dkim').\n"
	  "Publish the records 'postino dns DOMAIN' prints (MX, SPF, DKIM, DMARC, ...).\n",
	  0, 1, 1, 1, domain_add },
	{ "domain", "list", "", "print the hosted domains",
	  "Prints the hosted domains, one per line, in name order.\n",
	  0, 0, 0, 0, domain_list },
	{ "domain", "remove", "DOMAIN", "stop hosting DOMAIN",
	  "Stops hosting DOMAIN. Refused while the domain still has accounts or aliases: remove\n"
	  "them first (postino user list DOMAIN, postino alias list DOMAIN).\n",
	  0, 1, 1, 1, domain_remove },
	{ "user", "add", "ADDRESS [--hash HASH]", "create an account and its mailbox",
	  "Creates the account ADDRESS (its domain must be hosted) and its mailbox in\n"
	  "DATA/mail/DOMAIN/LOCAL. The password is read from standard input: typed twice at a\n"
	  "terminal, or one line from a pipe (or two equal lines), for example\n"
	  "  printf '%s\\n' \"$PASSWORD\" | postino user add alice@example.com\n"
	  "It is never taken from the command line, where other users could see it. It needs\n"
	  "password_min_length characters (8 unless postino.conf says otherwise).\n"
	  "\n"
	  "  --hash HASH   import an existing password hash instead of reading a password:\n"
	  "                {SHA512-CRYPT}$6$..., {BLF-CRYPT}$2y$..., {ARGON2ID}$argon2id$...,\n"
	  "                or a crypt(3) hash ($y$, $6$, $2b$...). Quote it for the shell.\n",
	  OPT_HASH, 1, 1, 1, user_add },
	{ "user", "passwd", "ADDRESS [--hash HASH]", "change an account's password",
	  "Sets a new password for ADDRESS, read from standard input as for 'user add' (typed\n"
	  "twice at a terminal, or one line or two equal lines from a pipe; at least\n"
	  "password_min_length characters), or imports a hash with --hash HASH.\n",
	  OPT_HASH, 1, 1, 1, user_passwd },
	{ "user", "quota", "ADDRESS SIZE", "set an account's storage limit",
	  "Limits the mail ADDRESS may keep to SIZE (for example 500M or 2G; 0 for no limit).\n"
	  "Mail that would go over it is refused: SMTP answers 452 4.2.2 (the sender retries),\n"
	  "IMAP APPEND and COPY answer NO [OVERQUOTA]; IMAP clients see it with GETQUOTAROOT.\n",
	  0, 2, 2, 1, user_quota },
	{ "user", "list", "[DOMAIN]", "print the accounts",
	  "Prints every account, or those of DOMAIN, one per line; suspended accounts are marked.\n",
	  0, 0, 1, 0, user_list },
	{ "user", "show", "ADDRESS", "print one account's details",
	  "Prints the address, creation date, suspension, quota, mail directory, password hash\n"
	  "scheme (never the hash itself) and the addresses the account may send as.\n",
	  0, 1, 1, 0, user_show },
	{ "user", "limits", "ADDRESS [KEY=VALUE...]", "show or set an account's sending limits",
	  "Without KEY=VALUE, prints the sending limits of ADDRESS and what it sent in the\n"
	  "windows. KEY is one of messages_per_hour, messages_per_day, recipients_per_day,\n"
	  "new_recipients_per_day (recipients never written to before) and suspend_threshold\n"
	  "(refused attempts in 24 hours that suspend sending); VALUE is a number, 0 for no\n"
	  "limit, or 'default' for the server-wide send_* setting. For example\n"
	  "  postino user limits alice@example.com messages_per_hour=500 recipients_per_day=5000\n",
	  0, 1, ADMIN_ARGS_MAX, 1, user_limits },
	{ "user", "unsuspend", "ADDRESS", "let a suspended account send again",
	  "Lifts the automatic suspension of ADDRESS (set after too many attempts over its\n"
	  "sending limits), clears its count of refused attempts and releases its held mail.\n"
	  "Change the password first if the account may have been hijacked.\n",
	  0, 1, 1, 1, user_unsuspend },
	{ "user", "diag", "ADDRESS", "explain recent failed logins of an account",
	  "Prints the last successful login per protocol and the recent failed logins of\n"
	  "ADDRESS (kept in DATA/diag.db: unknown user, wrong password, login without TLS,\n"
	  "unsupported method, suspended sending...), with protocol, port, client program and\n"
	  "address, then what to change in plain words.\n",
	  0, 1, 1, 0, user_diag },
	{ "diag", "ip", "ADDRESS", "explain recent login problems of a client IP address",
	  "Prints the recent failed logins and TLS handshake failures (with the SNI name the\n"
	  "client asked for) from the client IP ADDRESS, then what to change.\n",
	  0, 1, 1, 0, diag_ip },
	{ "user", "remove", "ADDRESS [--purge]", "delete an account",
	  "Deletes the account ADDRESS. Its mail stays on disk (the command says where) unless\n"
	  "--purge is given.\n"
	  "\n"
	  "  --purge       also delete the mail directory DATA/mail/DOMAIN/LOCAL\n",
	  OPT_PURGE, 1, 1, 1, user_remove },
	{ "alias", "add", "ALIAS TARGET[,TARGET...]", "forward ALIAS to one or more addresses",
	  "Makes ALIAS deliver to the TARGET addresses (accounts, other aliases or addresses\n"
	  "elsewhere), replacing any previous targets. ALIAS must be in a hosted domain; \"@DOMAIN\"\n"
	  "is the catch-all, used for names that are neither an account nor an alias. Targets may\n"
	  "be separated by commas or given as separate arguments. The accounts an alias lists may\n"
	  "also send mail as the alias.\n",
	  0, 2, ADMIN_ARGS_MAX, 1, alias_add },
	{ "alias", "list", "[DOMAIN]", "print the aliases",
	  "Prints every alias, or those of DOMAIN, as \"ALIAS -> TARGET, TARGET\".\n",
	  0, 0, 1, 0, alias_list },
	{ "alias", "remove", "ALIAS", "delete an alias",
	  "Deletes ALIAS (or the catch-all \"@DOMAIN\").\n",
	  0, 1, 1, 1, alias_remove },
};

#define ADMIN_NCMDS (sizeof(admin_cmds) / sizeof(admin_cmds[0]))

/* Is this argument a request for help? ("help" too, as the main command accepts it.) */
static int is_help(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0;
}

/* Print the help of a group (all its commands). */
static void group_help(FILE *f, const char *group)
{
	fprintf(f, "usage: postino %s COMMAND [ARGS] [--config FILE | --data DIR]\n\ncommands:\n",
		group);
	for (size_t i = 0; i < ADMIN_NCMDS; i++) {
		const struct admin_cmd *c = &admin_cmds[i];
		if (strcmp(c->group, group) != 0)
			continue;
		char head[80];
		snprintf(head, sizeof(head), "%s %s", c->name, c->synopsis);
		fprintf(f, "  %-38s %s\n", head, c->summary);
	}
	fprintf(f, "\n'postino %s COMMAND --help' describes one command.\n", group);
}

/* Print the help of one command. */
static void cmd_help(const struct admin_cmd *c)
{
	printf("usage: postino %s %s%s%s [--config FILE | --data DIR]\n\n%s", c->group, c->name,
	       c->synopsis[0] ? " " : "", c->synopsis, c->help);
}

/* Split the command's arguments into options and positionals. 0 ok, 2 usage error. */
static int parse_args(struct admin *a, int argc, char **argv)
{
	const struct admin_cmd *c = a->cmd;
	int only_pos = 0;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (!only_pos && strcmp(s, "--") == 0) {
			only_pos = 1;
		} else if (!only_pos && (c->opts & OPT_HASH) && strcmp(s, "--hash") == 0) {
			if (i + 1 >= argc)
				return usage_error(c, "--hash needs a value");
			a->hash = argv[++i];
		} else if (!only_pos && (c->opts & OPT_HASH) && strncmp(s, "--hash=", 7) == 0) {
			a->hash = s + 7;
		} else if (!only_pos && (c->opts & OPT_PURGE) && strcmp(s, "--purge") == 0) {
			a->purge = 1;
		} else if (!only_pos && (strcmp(s, "--password") == 0 ||
					 strncmp(s, "--password=", 11) == 0)) {
			return usage_error(c, "passwords are never taken on the command line, where "
					      "other users can see them; pipe the password on "
					      "standard input");
		} else if (!only_pos && s[0] == '-' && s[1] != '\0') {
			char buf[ADMIN_SHOWN_MAX + 8];
			return usage_error(c, "unknown option '%s'", shown(s, buf, sizeof(buf)));
		} else {
			if (a->nargs >= c->max_args)
				return usage_error(c, "too many arguments");
			a->args[a->nargs++] = s;
		}
	}
	if (a->nargs < c->min_args)
		return usage_error(c, "missing argument");
	if (a->hash != NULL && a->hash[0] == '\0')
		return usage_error(c, "--hash needs a non-empty value");
	return 0;
}

/* Entry point: find the command, answer --help, parse, run. */
int cli_admin_main(const char *data_dir, int argc, char **argv)
{
	if (argc < 1 || (strcmp(argv[0], "domain") != 0 && strcmp(argv[0], "user") != 0 &&
			 strcmp(argv[0], "alias") != 0 && strcmp(argv[0], "diag") != 0))
		return usage_error(NULL, "expected domain, user, alias or diag: see 'postino --help'");
	const char *group = argv[0];
	if (argc < 2) {
		group_help(stderr, group);
		return 2;
	}
	if (is_help(argv[1])) {
		group_help(stdout, group);
		return 0;
	}
	const struct admin_cmd *c = NULL;
	for (size_t i = 0; i < ADMIN_NCMDS && c == NULL; i++)
		if (strcmp(admin_cmds[i].group, group) == 0 &&
		    strcmp(admin_cmds[i].name, argv[1]) == 0)
			c = &admin_cmds[i];
	if (c == NULL) {
		char buf[ADMIN_SHOWN_MAX + 8];
		return usage_error(NULL, "unknown command '%s %s': see 'postino %s --help'", group,
				   shown(argv[1], buf, sizeof(buf)), group);
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (is_help(argv[i])) {
			cmd_help(c);
			return 0;
		}
	}
	struct admin a;
	memset(&a, 0, sizeof(a));
	a.data_dir = data_dir;
	a.cmd = c;
	int rc = parse_args(&a, argc - 2, argv + 2);
	if (rc == 0)
		rc = open_db_as_root(&a);
	if (rc == 0 && admin_privdrop != NULL && admin_cfg != NULL && admin_privdrop(admin_cfg) < 0)
		rc = 1;
	if (rc == 0)
		rc = c->run(&a);
	acctdb_close(&a.db);
	if (fflush(stdout) != 0 && rc == 0)
		rc = fail("cannot write the output: %s: check where stdout goes", strerror(errno));
	return rc;
}
