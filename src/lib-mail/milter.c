/* milter.c - the Sendmail milter protocol, MTA side (see milter.h).
 *
 * Wire format: every packet is a 32-bit length in network order (counting the command octet),
 * one command octet, then the data. Strings are NUL-terminated. Written from Postfix's
 * MILTER_README and libmilter's documented constants; no code of either is used.
 */
#include "milter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ev.h"
#include "fsutil.h"
#include "log.h"

#define MILTER_VERSION 6             /* protocol version offered (libmilter's SMFI_PROT_VERSION) */
#define MILTER_CHUNK 65535           /* body chunk size (libmilter's MILTER_CHUNK_SIZE) */
/* Largest packet read from a milter: libmilter's MILTER_MAX_DATA_SIZE (64 KB) plus the command
 * octet; we never negotiate the larger SMFIP_MDS_* sizes. */
#define MILTER_PACKET_MAX (65535 + 1)
#define MILTER_EDITS_MAX 256         /* header changes accepted per message */
#define MILTER_EDIT_OCTETS_MAX (256 * 1024) /* their total size */
#define MILTER_HEADER_MAX (1024 * 1024) /* header section read for the milters and for edits */
#define MILTER_HNAME_MAX 998         /* RFC 5322 2.1.1: a line is at most 998 octets */
#define MILTER_COPY_CHUNK 65536      /* body copied per read by milter_apply_edits */

/* The big buffers of milter conversations, one set per thread, allocated at its first use (and
 * then only the pages touched are resident). As __thread arrays they were static TLS, which every
 * thread of every process zeroes, so keeps resident, from its start: 320 KB a thread, with or
 * without milters. */
struct milter_bufs {
	char reply[MILTER_PACKET_MAX + 1];    /* read_reply */
	char optneg[MILTER_PACKET_MAX + 1];   /* negotiate */
	char header[MILTER_PACKET_MAX];       /* send_headers */
	char body[MILTER_CHUNK];              /* send_body */
	char copy[MILTER_COPY_CHUNK];         /* milter_apply_edits */
};
static pthread_key_t mbufs_key;
static pthread_once_t mbufs_once = PTHREAD_ONCE_INIT;
static __thread struct milter_bufs *mbufs;

/* Thread exit: its buffers go. */
static void mbufs_free(void *p)
{
	free(p);
}

/* Create the thread-specific key once per process. */
static void mbufs_key_init(void)
{
	if (pthread_key_create(&mbufs_key, mbufs_free) != 0)
		abort();
}

/* This thread's buffers, or NULL if out of memory. */
static struct milter_bufs *milter_bufs(void)
{
	if (mbufs != NULL)
		return mbufs;
	pthread_once(&mbufs_once, mbufs_key_init);
	struct milter_bufs *b = malloc(sizeof(*b));
	if (b == NULL || pthread_setspecific(mbufs_key, b) != 0) {
		free(b);
		return NULL;
	}
	mbufs = b;
	return b;
}

/* commands (MTA to milter) */
#define SMFIC_ABORT 'A'              /* no reply */
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'
/* replies (milter to MTA) */
#define SMFIR_ACCEPT 'a'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_PROGRESS 'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'
/* actions we offer: only those implemented */
#define SMFIF_ADDHDRS 0x01u
#define SMFIF_CHGHDRS 0x10u
#define SMFIF_QUARANTINE 0x20u
#define MILTER_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE)
/* protocol steps a milter may ask us to leave out (NO*) or not to wait a reply for (NR_*) */
#define SMFIP_NOCONNECT 0x1u
#define SMFIP_NOHELO 0x2u
#define SMFIP_NOMAIL 0x4u
#define SMFIP_NORCPT 0x8u
#define SMFIP_NOBODY 0x10u
#define SMFIP_NOHDRS 0x20u
#define SMFIP_NOEOH 0x40u
#define SMFIP_NR_HDR 0x80u
#define SMFIP_NOUNKNOWN 0x100u
#define SMFIP_NODATA 0x200u
#define SMFIP_SKIP 0x400u
#define SMFIP_NR_CONN 0x1000u
#define SMFIP_NR_HELO 0x2000u
#define SMFIP_NR_MAIL 0x4000u
#define SMFIP_NR_RCPT 0x8000u
#define SMFIP_NR_DATA 0x10000u
#define SMFIP_NR_UNKN 0x20000u            /* we never send SMFIC_UNKNOWN: trivially met */
#define SMFIP_NR_EOH 0x40000u
#define SMFIP_NR_BODY 0x80000u
#define SMFIP_HDR_LEADSPC 0x100000u
#define MILTER_PROTO (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | \
		      SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | \
		      SMFIP_NODATA | SMFIP_SKIP | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | \
		      SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | \
		      SMFIP_HDR_LEADSPC)

/* What a reply means to the conversation. */
enum mreply { MR_CONTINUE, MR_ACCEPT, MR_SKIP, MR_FINAL, MR_ERROR };

/* Where one milter of a session stands. */
enum mstate {
	M_NEW,                         /* not connected yet (before the connect stage) */
	M_OPEN,                        /* connected, takes part */
	M_ACCEPT_CONN,                 /* accepted the connection, or is down with default accept:
					* skipped for the rest of the session */
	M_ACCEPT_TX,                   /* accepted the transaction: skipped until the next MAIL */
	M_REFUSED,                     /* refused the connection (connect, HELO) or is down with
					* default reject/tempfail: `refusal` answers every later
					* MAIL, RCPT and message */
};

struct mconn {
	int fd;
	char spec[MILTER_SPEC_MAX];
	uint32_t version, actions, proto;
	enum mstate state;
	int in_tx;                     /* saw MAIL and not yet the end of that message: an ABORT
					* goes before the next MAIL or HELO */
	enum milter_verdict refusal_verdict;
	char refusal[MILTER_REPLY_MAX];
	struct milter_result *res;     /* of the stage being run */
	char err[200];                 /* what went wrong (MR_ERROR) */
};

struct milter_session {
	struct milter_settings set;
	size_t n;
	struct mconn m[MILTER_LIST_MAX];
};

/* Split the setting into specs. */
int milter_parse_list(const char *list, char specs[][MILTER_SPEC_MAX], size_t max,
		      const char **err_r)
{
	size_t n = 0;
	const char *p = list;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		size_t len = strcspn(p, " \t,");
		if (n >= max || n >= MILTER_LIST_MAX) {
			*err_r = "at most 8 milters";
			return -1;
		}
		if (len >= MILTER_SPEC_MAX) {
			*err_r = "a shorter milter address";
			return -1;
		}
		memcpy(specs[n], p, len);
		specs[n][len] = '\0';
		const char *s = specs[n];
		if (strncmp(s, "unix:", 5) == 0) {
			if (s[5] != '/' || len - 5 >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
				*err_r = "unix:/absolute/path or inet:host:port";
				return -1;
			}
		} else if (strncmp(s, "inet:", 5) == 0) {
			const char *colon = strrchr(s + 5, ':');
			char *end;
			long port = colon ? strtol(colon + 1, &end, 10) : 0;
			if (colon == NULL || colon == s + 5 || colon[1] == '\0' || *end != '\0' ||
			    port < 1 || port > 65535) {
				*err_r = "inet:host:port (port 1-65535) or unix:/path";
				return -1;
			}
		} else {
			*err_r = "inet:host:port or unix:/path (Postfix's notation)";
			return -1;
		}
		n++;
		p += len;
	}
	return (int)n;
}

/* Connect to the milter of spec within the deadline. fd or -1 (why in err). */
static int milter_connect(const char *spec, uint64_t deadline, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	int family;
	memset(&ss, 0, sizeof(ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s", spec + 5);
		sslen = sizeof(*un);
		family = AF_UNIX;
	} else {
		char host[MILTER_SPEC_MAX];
		const char *colon = strrchr(spec + 5, ':');
		size_t hl = (size_t)(colon - (spec + 5));
		memcpy(host, spec + 5, hl);
		host[hl] = '\0';
		if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {   /* inet:[::1]:port */
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = '\0';
		}
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
		struct addrinfo *ai = NULL;
		int rc = getaddrinfo(host, colon + 1, &hints, &ai);
		if (rc != 0 || ai == NULL) {
			snprintf(err, errlen, "cannot resolve %.100s: %s", host, gai_strerror(rc));
			return -1;
		}
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		sslen = ai->ai_addrlen;
		family = ai->ai_family;
		freeaddrinfo(ai);
	}
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
		if (errno != EINPROGRESS && errno != EAGAIN) {
			snprintf(err, errlen, "connect: %s", strerror(errno));
			close(fd);
			return -1;
		}
		int r = ev_wait_fd(fd, POLLOUT, deadline);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
			snprintf(err, errlen, "connect: %s", r == 0 ? "timed out" :
				 strerror(soerr ? soerr : errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Send one packet: cmd and n octets of data. 0 ok, -1 (m->err set). */
static int send_packet(struct mconn *m, char cmd, const void *data, size_t n, unsigned timeout)
{
	unsigned char hdr[5];
	uint32_t len = htonl((uint32_t)(n + 1));
	memcpy(hdr, &len, 4);
	hdr[4] = (unsigned char)cmd;
	uint64_t deadline = ev_now_ms() + (uint64_t)timeout * 1000;
	const unsigned char *parts[2] = { hdr, data };
	size_t lens[2] = { sizeof(hdr), n };
	for (int i = 0; i < 2; i++) {
		size_t off = 0;
		while (off < lens[i]) {
			ssize_t w = send(m->fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
			if (w > 0) {
				off += (size_t)w;
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				int r = ev_wait_fd(m->fd, POLLOUT, deadline);
				if (r > 0)
					continue;
				snprintf(m->err, sizeof(m->err), "sending '%c': %s", cmd,
					 r == 0 ? "timed out" : strerror(errno));
				return -1;
			}
			snprintf(m->err, sizeof(m->err), "sending '%c': %s", cmd,
				 w < 0 ? strerror(errno) : "connection closed");
			return -1;
		}
	}
	return 0;
}

/* Read exactly n octets before the deadline. 0 ok, -1 (m->err set). */
static int read_full(struct mconn *m, void *p, size_t n, uint64_t deadline)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = recv(m->fd, (char *)p + off, n - off, 0);
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r == 0) {
			snprintf(m->err, sizeof(m->err), "the milter closed the connection");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			snprintf(m->err, sizeof(m->err), "read: %s", strerror(errno));
			return -1;
		}
		int w = ev_wait_fd(m->fd, POLLIN, deadline);
		if (w <= 0) {
			snprintf(m->err, sizeof(m->err), "no answer within the timeout");
			return -1;
		}
	}
	return 0;
}

/* Read one packet (bounded). *cmd_r, data in buf (MILTER_PACKET_MAX octets, NUL added),
 * *n_r its length. 0 ok, -1 (m->err set). */
static int read_packet(struct mconn *m, unsigned timeout, char *cmd_r, char *buf, size_t *n_r)
{
	uint64_t deadline = ev_now_ms() + (uint64_t)timeout * 1000;
	uint32_t len;
	if (read_full(m, &len, 4, deadline) < 0)
		return -1;
	len = ntohl(len);
	if (len < 1 || len > MILTER_PACKET_MAX) {
		snprintf(m->err, sizeof(m->err), "packet of %u octets (at most %u)", len,
			 MILTER_PACKET_MAX);
		return -1;
	}
	unsigned char c;
	if (read_full(m, &c, 1, deadline) < 0 || read_full(m, buf, len - 1, deadline) < 0)
		return -1;
	buf[len - 1] = '\0';
	*cmd_r = (char)c;
	*n_r = len - 1;
	return 0;
}

/* Is s (n octets) a header field name we can write (RFC 5322 2.2: printable, no colon)? */
static int hname_ok(const char *s, size_t n)
{
	if (n == 0 || n > MILTER_HNAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
			return 0;
	return 1;
}

/* A milter's header value as a CRLF-folded value: LF or CRLF become CRLF, a continuation line
 * that does not start with white space gets a tab, other control octets but tab are refused.
 * malloc'd, or NULL. */
static char *fold_value(const char *v, size_t n)
{
	char *out = malloc(n * 3 + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '\r' && i + 1 < n && v[i + 1] == '\n')
			continue;
		if (c == '\n') {
			if (i + 1 == n)
				break;          /* a trailing line break adds nothing */
			out[o++] = '\r';
			out[o++] = '\n';
			if (v[i + 1] != ' ' && v[i + 1] != '\t')
				out[o++] = '\t';
			continue;
		}
		if ((c < 32 && c != '\t') || c == 127) {
			free(out);
			return NULL;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

/* Record a header change from an end-of-message reply. 0 ok, -1 malformed (m->err set). */
static int add_edit(struct mconn *m, char op, const char *d, size_t n, size_t *octets)
{
	struct milter_result *res = m->res;
	uint32_t index = 0;
	if (op != SMFIR_ADDHEADER) {
		if (n < 4)
			goto bad;
		memcpy(&index, d, 4);
		index = ntohl(index);
		d += 4;
		n -= 4;
	}
	const char *name = d;
	size_t nl = strnlen(d, n);
	if (nl == n || !hname_ok(name, nl))
		goto bad;
	const char *val = d + nl + 1;
	size_t vl = strnlen(val, n - nl - 1);
	if (nl + 1 + vl == n)
		goto bad;              /* value not terminated */
	if (res->nedits >= MILTER_EDITS_MAX || *octets + nl + vl > MILTER_EDIT_OCTETS_MAX) {
		snprintf(m->err, sizeof(m->err), "more than %u header changes or %u octets of them",
			 MILTER_EDITS_MAX, MILTER_EDIT_OCTETS_MAX);
		return -1;
	}
	struct milter_edit *e = realloc(res->edits, (res->nedits + 1) * sizeof(*e));
	if (e == NULL)
		goto bad;
	res->edits = e;
	e = &res->edits[res->nedits];
	/* without SMFIP_HDR_LEADSPC the value comes without the space after the colon */
	const char *v = val;
	if ((m->proto & SMFIP_HDR_LEADSPC) == 0)
		while (*v == ' ')
			v++;
	e->op = op;
	e->index = index;
	e->name = strndup(name, nl);
	e->value = fold_value(v, strlen(v));
	if (e->name == NULL || e->value == NULL) {
		free(e->name);
		free(e->value);
		goto bad;
	}
	res->nedits++;
	*octets += nl + vl;
	return 0;
bad:
	snprintf(m->err, sizeof(m->err), "malformed header change '%c'", op);
	return -1;
}

/* The default reply texts: say what happened and what to do. */
static void set_final(struct milter_result *res, enum milter_verdict v, const char *reply,
		      const char *spec, const char *how)
{
	res->verdict = v;
	snprintf(res->reply, sizeof(res->reply), "%s", reply);
	snprintf(res->why, sizeof(res->why), "%.100s: %.180s", spec, how);
}

/* Validate a milter's SMTP reply into ours. */
int milter_reply_check(const char *in, size_t inlen, char *out, size_t outlen, int *class_r)
{
	if (inlen < 3 || (in[0] != '4' && in[0] != '5') || in[1] < '0' || in[1] > '9' ||
	    in[2] < '0' || in[2] > '9' || (inlen > 3 && in[3] != ' ' && in[3] != '-'))
		return -1;
	char code[4] = { in[0], in[1], in[2], '\0' };
	char ecode[32] = "";
	char text[MILTER_REPLY_MAX];
	size_t tl = 0;
	/* each line: "NNN[ -][X.Y.Z ]text"; the texts are joined with "; " */
	size_t i = 0;
	while (i < inlen) {
		size_t e = i;
		while (e < inlen && in[e] != '\r' && in[e] != '\n')
			e++;
		size_t p = i;
		if (e - i >= 3 && memcmp(in + i, code, 3) == 0)
			p = i + 3 < e ? i + 4 : e;
		else if (i > 0)
			return -1;          /* a continuation line with another code */
		/* an enhanced status code: class.subject.detail, class as the reply's */
		size_t q = p;
		if (q < e && in[q] == in[0] && q + 1 < e && in[q + 1] == '.') {
			size_t r = q + 2, dots = 0;
			while (r < e && (in[r] == '.' || (in[r] >= '0' && in[r] <= '9'))) {
				dots += in[r] == '.';
				r++;
			}
			if (dots == 1 && r - q < sizeof(ecode) && (r == e || in[r] == ' ')) {
				if (ecode[0] == '\0')
					snprintf(ecode, sizeof(ecode), "%.*s", (int)(r - q), in + q);
				p = r < e ? r + 1 : e;
			}
		}
		for (size_t k = p; k < e && tl + 3 < sizeof(text) - 1; k++) {
			unsigned char c = (unsigned char)in[k];
			if (c == '\t')
				c = ' ';
			if (c < 32 || c > 126)
				return -1;  /* printable ASCII only: nothing that breaks our reply */
			if (k == p && tl > 0) {
				text[tl++] = ';';
				text[tl++] = ' ';
			}
			text[tl++] = (char)c;
		}
		while (e < inlen && (in[e] == '\r' || in[e] == '\n'))
			e++;
		i = e;
	}
	text[tl] = '\0';
	if (ecode[0] == '\0')
		snprintf(ecode, sizeof(ecode), "%c.7.1", in[0]);
	*class_r = in[0] - '0';
	snprintf(out, outlen, "%s %s %s by the spam filter: %s", code, ecode,
		 in[0] == '5' ? "Rejected" : "Deferred",
		 tl ? text : "no reason given");
	return 0;
}

/* What a refusal at the stage of command `stage` refuses, for the reply text. */
static const char *what_of(char stage)
{
	switch (stage) {
	case SMFIC_CONNECT:
		return "connection";
	case SMFIC_HELO:
		return "greeting (HELO/EHLO)";
	case SMFIC_MAIL:
		return "sender";
	case SMFIC_RCPT:
		return "recipient";
	default:
		return "message";
	}
}

/* Read replies to a command until one decides it. stage: the command sent ('E' accepts the
 * end-of-message actions, 'B' accepts skip). */
static enum mreply read_reply(struct mconn *m, char stage, unsigned timeout, size_t *octets)
{
	struct milter_bufs *mb = milter_bufs();
	if (mb == NULL) {
		snprintf(m->err, sizeof(m->err), "out of memory");
		return MR_ERROR;
	}
	char *buf = mb->reply;
	struct milter_result *res = m->res;
	for (;;) {
		char cmd;
		size_t n;
		if (read_packet(m, timeout, &cmd, buf, &n) < 0)
			return MR_ERROR;
		switch (cmd) {
		case SMFIR_CONTINUE:
			return MR_CONTINUE;
		case SMFIR_ACCEPT:
			return MR_ACCEPT;
		case SMFIR_PROGRESS:
			continue;           /* the milter asks for more time: a new timeout */
		case SMFIR_REJECT: {
			char r[MILTER_REPLY_MAX];
			snprintf(r, sizeof(r), "550 5.7.1 Rejected by the spam filter: the %s was "
				 "refused by a content filter; if this is wrong, tell the "
				 "postmaster of this server", what_of(stage));
			set_final(res, MILTER_REJECT, r, m->spec, "reject");
			return MR_FINAL;
		}
		case SMFIR_TEMPFAIL: {
			char r[MILTER_REPLY_MAX];
			snprintf(r, sizeof(r), "451 4.7.1 Deferred by the spam filter: the content "
				 "filter asked to try the %s again later; please retry",
				 what_of(stage));
			set_final(res, MILTER_TEMPFAIL, r, m->spec, "tempfail");
			return MR_FINAL;
		}
		case SMFIR_DISCARD:
			set_final(res, MILTER_DISCARD, "", m->spec, "discard");
			return MR_FINAL;
		case SMFIR_REPLYCODE: {
			char reply[MILTER_REPLY_MAX];
			int cls;
			if (milter_reply_check(buf, strnlen(buf, n), reply, sizeof(reply), &cls) < 0) {
				snprintf(m->err, sizeof(m->err), "unusable reply code \"%.60s\"", buf);
				return MR_ERROR;
			}
			set_final(res, cls == 5 ? MILTER_REJECT : MILTER_TEMPFAIL, reply, m->spec,
				  "replycode");
			return MR_FINAL;
		}
		case SMFIR_SKIP:
			if (stage == SMFIC_BODY && (m->proto & SMFIP_SKIP))
				return MR_SKIP;
			break;
		case SMFIR_ADDHEADER:
		case SMFIR_INSHEADER:
		case SMFIR_CHGHEADER:
			/* changes only at the end of the message, and only those negotiated */
			if (stage != SMFIC_BODYEOB || !(m->actions & (cmd == SMFIR_CHGHEADER ?
								      SMFIF_CHGHDRS : SMFIF_ADDHDRS)))
				break;
			if (add_edit(m, cmd, buf, n, octets) < 0)
				return MR_ERROR;
			continue;
		case SMFIR_QUARANTINE:
			if (stage != SMFIC_BODYEOB || !(m->actions & SMFIF_QUARANTINE))
				break;
			res->quarantine = 1;
			snprintf(res->quarantine_reason, sizeof(res->quarantine_reason), "%.*s",
				 (int)strnlen(buf, n), buf);
			for (char *c = res->quarantine_reason; *c; c++)
				if ((unsigned char)*c < 32 || (unsigned char)*c > 126)
					*c = '?';
			continue;
		default:
			break;
		}
		if ((unsigned char)cmd >= 32 && (unsigned char)cmd < 127)
			snprintf(m->err, sizeof(m->err), "unexpected reply '%c' to '%c'", cmd, stage);
		else
			snprintf(m->err, sizeof(m->err), "unexpected reply 0x%02x to '%c'",
				 (unsigned char)cmd, stage);
		return MR_ERROR;
	}
}

/* Append a NUL-terminated string to a packet buffer. 0 ok, -1 does not fit. */
static int put_str(char *p, size_t cap, size_t *n, const char *s)
{
	size_t l = strlen(s) + 1;
	if (l > cap - *n)
		return -1;
	memcpy(p + *n, s, l);
	*n += l;
	return 0;
}

/* Send the macros of one stage: pairs of name and value ("" values are left out). */
static int send_macros(struct mconn *m, char stage, const char *const *kv, size_t nkv,
		       unsigned timeout)
{
	char p[2048];
	size_t n = 0;
	p[n++] = stage;
	for (size_t i = 0; i + 1 < nkv; i += 2) {
		if (kv[i + 1] == NULL || kv[i + 1][0] == '\0')
			continue;
		if (put_str(p, sizeof(p), &n, kv[i]) < 0 || put_str(p, sizeof(p), &n, kv[i + 1]) < 0)
			break;           /* overlong values are left out, not cut */
	}
	return send_packet(m, SMFIC_MACRO, p, n, timeout);
}

/* Send one command and, unless the milter said it needs no reply, read its reply. */
static enum mreply step(struct mconn *m, char cmd, const void *data, size_t n, uint32_t nr_flag,
			unsigned send_timeout, unsigned timeout, size_t *octets)
{
	if (send_packet(m, cmd, data, n, send_timeout) < 0)
		return MR_ERROR;
	if (nr_flag && (m->proto & nr_flag))
		return MR_CONTINUE;
	return read_reply(m, cmd, timeout, octets);
}

/* Read the header section of the message: at most MILTER_HEADER_MAX octets. *hlen_r: octets
 * of the section without the empty line; *body_r: offset of the body. malloc'd or NULL. */
static char *read_headers(int fd, uint64_t off, uint64_t total, size_t *hlen_r, uint64_t *body_r)
{
	size_t cap = total - off < MILTER_HEADER_MAX ? (size_t)(total - off) : MILTER_HEADER_MAX;
	char *h = malloc(cap + 1);
	if (h == NULL)
		return NULL;
	size_t got = 0;
	while (got < cap) {
		ssize_t r = pread(fd, h + got, cap - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	h[got] = '\0';
	/* the section ends at an empty line, or at a line that is neither a field nor a
	 * continuation (then everything from it on is body, as a milter would see it) */
	size_t i = 0;
	while (i < got) {
		if (h[i] == '\n' || (h[i] == '\r' && i + 1 < got && h[i + 1] == '\n')) {
			*hlen_r = i;
			*body_r = off + i + (h[i] == '\r' ? 2 : 1);
			return h;
		}
		size_t e = i;
		while (e < got && h[e] != '\n')
			e++;
		if (h[i] != ' ' && h[i] != '\t') {
			const char *colon = memchr(h + i, ':', e - i);
			if (colon == NULL || !hname_ok(h + i, (size_t)(colon - h - i)))
				break;
		}
		if (e == got && got == cap && got < total - off)
			break;           /* cut by MILTER_HEADER_MAX: the rest counts as body */
		i = e + 1;
	}
	if (i > got)
		i = got;
	*hlen_r = i;
	*body_r = off + i;
	return h;
}

/* The end of the header field starting at h[i]: the LF (or hlen) of its last line, the first
 * line end not followed by white space. */
static size_t field_end(const char *h, size_t i, size_t hlen)
{
	size_t e = i;
	for (;;) {
		while (e < hlen && h[e] != '\n')
			e++;
		if (e + 1 < hlen && (h[e + 1] == ' ' || h[e + 1] == '\t')) {
			e++;
			continue;
		}
		return e;
	}
}

/* Send the header fields of h (hlen octets) one by one. */
static enum mreply send_headers(struct mconn *m, const char *h, size_t hlen, unsigned timeout,
				size_t *octets)
{
	struct milter_bufs *mb = milter_bufs();
	if (mb == NULL) {
		snprintf(m->err, sizeof(m->err), "out of memory");
		return MR_ERROR;
	}
	char *p = mb->header;
	size_t i = 0;
	while (i < hlen) {
		size_t e = field_end(h, i, hlen);
		const char *colon = memchr(h + i, ':', e - i);
		if (colon != NULL) {
			size_t n = 0, nl = (size_t)(colon - h - i);
			while (nl > 0 && (h[i + nl - 1] == ' ' || h[i + nl - 1] == '\t'))
				nl--;
			const char *v = colon + 1;
			if (!(m->proto & SMFIP_HDR_LEADSPC) && v < h + e && *v == ' ')
				v++;
			if (nl + 2 < sizeof(mb->header)) {
				memcpy(p, h + i, nl);
				n = nl;
				p[n++] = '\0';
				/* the value with its line ends as LF, as sendmail hands them over */
				for (const char *c = v; c < h + e && n + 2 < sizeof(mb->header); c++)
					if (*c != '\r' && *c != '\0')
						p[n++] = *c;
				while (n > nl + 1 && p[n - 1] == '\n')
					n--;
				p[n++] = '\0';
				enum mreply r = step(m, SMFIC_HEADER, p, n, SMFIP_NR_HDR, timeout,
						     timeout, octets);
				if (r != MR_CONTINUE)
					return r;
			}
		}
		i = e + 1;
	}
	return MR_CONTINUE;
}

/* Send the body in chunks of at most MILTER_CHUNK octets. */
static enum mreply send_body(struct mconn *m, int fd, uint64_t from, uint64_t total,
			     unsigned timeout, size_t *octets)
{
	struct milter_bufs *mb = milter_bufs();
	if (mb == NULL) {
		snprintf(m->err, sizeof(m->err), "out of memory");
		return MR_ERROR;
	}
	char *chunk = mb->body;
	uint64_t pos = from;
	while (pos < total) {
		size_t want = total - pos < MILTER_CHUNK ? (size_t)(total - pos) : MILTER_CHUNK;
		ssize_t r = pread(fd, chunk, want, (off_t)pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(m->err, sizeof(m->err), "cannot read the message: %s",
				 r < 0 ? strerror(errno) : "short file");
			return MR_ERROR;
		}
		pos += (uint64_t)r;
		enum mreply rep = step(m, SMFIC_BODY, chunk, (size_t)r, SMFIP_NR_BODY, timeout,
				       timeout, octets);
		if (rep == MR_SKIP)
			return MR_CONTINUE;
		if (rep != MR_CONTINUE)
			return rep;
	}
	return MR_CONTINUE;
}

/* Negotiate with the milter: what it may do and which steps it wants. */
static enum mreply negotiate(struct mconn *m, unsigned timeout)
{
	uint32_t o[3] = { htonl(MILTER_VERSION), htonl(MILTER_ACTIONS), htonl(MILTER_PROTO) };
	if (send_packet(m, SMFIC_OPTNEG, o, sizeof(o), timeout) < 0)
		return MR_ERROR;
	struct milter_bufs *mb = milter_bufs();
	if (mb == NULL) {
		snprintf(m->err, sizeof(m->err), "out of memory");
		return MR_ERROR;
	}
	char *buf = mb->optneg;
	char cmd;
	size_t n;
	if (read_packet(m, timeout, &cmd, buf, &n) < 0)
		return MR_ERROR;
	if (cmd != SMFIC_OPTNEG || n < 12) {
		snprintf(m->err, sizeof(m->err), "bad option negotiation reply");
		return MR_ERROR;
	}
	memcpy(o, buf, 12);   /* what may follow (SMFIR_SETSYMLIST's macro lists) is ignored */
	m->version = ntohl(o[0]);
	m->actions = ntohl(o[1]) & MILTER_ACTIONS;   /* only what we offered and implement */
	m->proto = ntohl(o[2]);
	if (m->version < 2 || m->version > MILTER_VERSION) {
		snprintf(m->err, sizeof(m->err), "milter protocol version %u (we speak 2 to %u)",
			 m->version, MILTER_VERSION);
		return MR_ERROR;
	}
	if (m->proto & ~MILTER_PROTO) {
		snprintf(m->err, sizeof(m->err), "the milter asks for protocol steps 0x%x we did "
			 "not offer", m->proto & ~MILTER_PROTO);
		return MR_ERROR;
	}
	return MR_CONTINUE;
}

/* CONNECT: connect, negotiate (both within milter_connect_timeout, as Postfix counts it), the
 * connect macros and CONNECT itself. */
static enum mreply stage_connect(struct mconn *m, const struct milter_settings *set,
				 const struct milter_env *env, size_t *octets)
{
	const unsigned ct = set->command_timeout;
	uint64_t deadline = ev_now_ms() + (uint64_t)set->connect_timeout * 1000;
	m->fd = milter_connect(m->spec, deadline, m->err, sizeof(m->err));
	if (m->fd < 0)
		return MR_ERROR;
	m->state = M_OPEN;
	enum mreply r = negotiate(m, set->connect_timeout);
	if (r != MR_CONTINUE || (m->proto & SMFIP_NOCONNECT))
		return r;
	char port[16], p[2048];
	size_t n = 0;
	snprintf(port, sizeof(port), "%u", env->client_port);
	const char *mc[] = { "j", env->hostname, "{daemon_name}", env->daemon, "_",
			     env->client_ip, "{client_addr}", env->client_ip, "{client_port}",
			     port, "{client_name}", "unknown" };
	if (send_macros(m, SMFIC_CONNECT, mc, sizeof(mc) / sizeof(mc[0]), ct) < 0)
		return MR_ERROR;
	/* host name (we do no reverse lookups: "unknown", as Postfix says), family, port,
	 * address */
	unsigned char a6[16];
	put_str(p, sizeof(p), &n, "unknown");
	int fam = inet_pton(AF_INET, env->client_ip, a6) == 1 ? '4' :
		  inet_pton(AF_INET6, env->client_ip, a6) == 1 ? '6' : 'U';
	p[n++] = (char)fam;
	if (fam != 'U') {
		uint16_t pt = htons((uint16_t)env->client_port);
		memcpy(p + n, &pt, 2);
		n += 2;
		put_str(p, sizeof(p), &n, env->client_ip);
	}
	return step(m, SMFIC_CONNECT, p, n, SMFIP_NR_CONN, ct, ct, octets);
}

/* HELO/EHLO with the client's name. */
static enum mreply stage_helo(struct mconn *m, const struct milter_settings *set,
			      const struct milter_env *env, size_t *octets)
{
	if (m->proto & SMFIP_NOHELO)
		return MR_CONTINUE;
	char p[300];
	size_t n = 0;
	if (put_str(p, sizeof(p), &n, env->helo) < 0)
		put_str(p, sizeof(p), &n, "unknown");
	return step(m, SMFIC_HELO, p, n, SMFIP_NR_HELO, set->command_timeout,
		    set->command_timeout, octets);
}

/* MAIL FROM, with the macros of the transaction (queue id, sender, login). */
static enum mreply stage_mail(struct mconn *m, const struct milter_settings *set,
			      const struct milter_env *env, size_t *octets)
{
	const unsigned ct = set->command_timeout;
	m->in_tx = 1;
	if (m->proto & SMFIP_NOMAIL)
		return MR_CONTINUE;
	char angle[400], p[512];
	size_t n = 0;
	snprintf(angle, sizeof(angle), "<%s>", env->from);
	const char *mm[] = { "i", env->queue_id, "{mail_addr}", env->from, "{auth_authen}",
			     env->auth_user, "{auth_type}", env->auth_user[0] ? "PLAIN" : "" };
	if (send_macros(m, SMFIC_MAIL, mm, sizeof(mm) / sizeof(mm[0]), ct) < 0)
		return MR_ERROR;
	put_str(p, sizeof(p), &n, angle);
	return step(m, SMFIC_MAIL, p, n, SMFIP_NR_MAIL, ct, ct, octets);
}

/* RCPT TO of one recipient. */
static enum mreply stage_rcpt(struct mconn *m, const struct milter_settings *set,
			      const char *rcpt, size_t *octets)
{
	const unsigned ct = set->command_timeout;
	if (m->proto & SMFIP_NORCPT)
		return MR_CONTINUE;
	char angle[400], p[512];
	size_t n = 0;
	const char *mr[] = { "{rcpt_addr}", rcpt };
	if (send_macros(m, SMFIC_RCPT, mr, 2, ct) < 0)
		return MR_ERROR;
	snprintf(angle, sizeof(angle), "<%s>", rcpt);
	put_str(p, sizeof(p), &n, angle);
	return step(m, SMFIC_RCPT, p, n, SMFIP_NR_RCPT, ct, ct, octets);
}

/* The message: DATA, the header fields of h (hlen octets), EOH, the body from offset body,
 * EOB. The milter's transaction is over once it answered EOB. */
static enum mreply stage_message(struct mconn *m, const struct milter_settings *set,
				 const struct milter_env *env, const char *h, size_t hlen,
				 uint64_t body, size_t *octets)
{
	const unsigned ct = set->command_timeout, bt = set->content_timeout;
	enum mreply r;
	if (m->version >= 4 && !(m->proto & SMFIP_NODATA)) {
		r = step(m, SMFIC_DATA, NULL, 0, SMFIP_NR_DATA, ct, ct, octets);
		if (r != MR_CONTINUE)
			return r;
	}
	if (!(m->proto & SMFIP_NOHDRS)) {
		r = send_headers(m, h, hlen, ct, octets);
		if (r != MR_CONTINUE)
			return r;
	}
	if (!(m->proto & SMFIP_NOEOH)) {
		r = step(m, SMFIC_EOH, NULL, 0, SMFIP_NR_EOH, ct, ct, octets);
		if (r != MR_CONTINUE)
			return r;
	}
	if (!(m->proto & SMFIP_NOBODY)) {
		r = send_body(m, env->fd, body, env->total, bt, octets);
		if (r != MR_CONTINUE)
			return r;
	}
	const char *me[] = { "i", env->queue_id };
	if (send_macros(m, SMFIC_BODYEOB, me, 2, bt) < 0 ||
	    send_packet(m, SMFIC_BODYEOB, NULL, 0, bt) < 0)
		return MR_ERROR;
	r = read_reply(m, SMFIC_BODYEOB, bt, octets);
	if (r != MR_ERROR)
		m->in_tx = 0;
	return r;
}

static const char *const stage_names[] = { "connect", "helo", "mail", "rcpt", "message" };

/* The milter could not judge (down, slow, broken): it is closed, and milter_default_action
 * answers for it at this stage and, unless that is accept, at every later one. */
static void milter_failed(struct mconn *m, const struct milter_settings *set,
			  enum milter_stage st, struct milter_result *res)
{
	log_warn("proto=smtp event=milter-failed milter=%s stage=%s error=\"%s\" action=%s",
		 m->spec, stage_names[st], m->err,
		 set->default_action == MILTER_DEFAULT_ACCEPT ? "accept" :
		 set->default_action == MILTER_DEFAULT_REJECT ? "reject" : "tempfail");
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->in_tx = 0;
	if (set->default_action == MILTER_DEFAULT_ACCEPT) {
		m->state = M_ACCEPT_CONN;
		return;
	}
	if (set->default_action == MILTER_DEFAULT_REJECT)
		set_final(res, MILTER_REJECT, "550 5.7.1 Rejected: the spam filter could not check "
			  "the message and this server refuses unchecked mail; tell the postmaster",
			  m->spec, m->err);
	else
		set_final(res, MILTER_TEMPFAIL, "451 4.7.1 The spam filter is not available right "
			  "now; the message was not accepted, please try again later", m->spec,
			  m->err);
	m->state = M_REFUSED;
	m->refusal_verdict = res->verdict;
	snprintf(m->refusal, sizeof(m->refusal), "%s", res->reply);
}

/* A session's milters, not connected yet. */
struct milter_session *milter_session_new(const char *list, const struct milter_settings *set)
{
	char specs[MILTER_LIST_MAX][MILTER_SPEC_MAX];
	const char *err = NULL;
	int n = milter_parse_list(list, specs, MILTER_LIST_MAX, &err);
	if (n <= 0)
		return NULL;
	struct milter_session *ms = calloc(1, sizeof(*ms));
	if (ms == NULL)
		return NULL;
	ms->set = *set;
	ms->n = (size_t)n;
	for (size_t i = 0; i < ms->n; i++) {
		ms->m[i].fd = -1;
		ms->m[i].state = M_NEW;
		memcpy(ms->m[i].spec, specs[i], sizeof(specs[i]));
	}
	return ms;
}

/* Say QUIT where the socket takes it at once, and close. */
void milter_session_free(struct milter_session **msp)
{
	struct milter_session *ms = *msp;
	if (ms == NULL)
		return;
	static const unsigned char quit[5] = { 0, 0, 0, 1, SMFIC_QUIT };
	for (size_t i = 0; i < ms->n; i++) {
		if (ms->m[i].fd < 0)
			continue;
		if (send(ms->m[i].fd, quit, sizeof(quit), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("milter %s: QUIT not sent: %s", ms->m[i].spec, strerror(errno));
		close(ms->m[i].fd);
	}
	free(ms);
	*msp = NULL;
}

/* The refusal that stands for the rest of the session, or NULL. */
const char *milter_session_refusal(const struct milter_session *ms,
				   enum milter_verdict *verdict_r)
{
	for (size_t i = 0; ms != NULL && i < ms->n; i++) {
		if (ms->m[i].state == M_REFUSED) {
			if (verdict_r != NULL)
				*verdict_r = ms->m[i].refusal_verdict;
			return ms->m[i].refusal;
		}
	}
	return NULL;
}

/* Run one stage with every milter that still takes part. */
void milter_stage(struct milter_session *ms, enum milter_stage st, const struct milter_env *env,
		  const char *rcpt, struct milter_result *res)
{
	const struct milter_settings *set = &ms->set;
	size_t octets = 0, hlen = 0;
	uint64_t body = 0;
	char *h = NULL;
	memset(res, 0, sizeof(*res));
	res->verdict = MILTER_ACCEPT;
	if (st == MILTER_STAGE_MAIL || st == MILTER_STAGE_HELO) {
		/* a new transaction (HELO resets it too): the milters that saw the last one's MAIL
		 * but not its end of message (RSET, a refusal, a discard) are told it was aborted,
		 * as Sendmail does */
		for (size_t i = 0; i < ms->n; i++) {
			struct mconn *m = &ms->m[i];
			if (m->in_tx && m->fd >= 0 &&
			    send_packet(m, SMFIC_ABORT, NULL, 0, set->command_timeout) < 0) {
				m->res = res;
				milter_failed(m, set, st, res);
			}
			m->in_tx = 0;
			if (m->state == M_ACCEPT_TX)
				m->state = M_OPEN;
		}
		if (res->verdict != MILTER_ACCEPT)
			return;
	}
	if (st == MILTER_STAGE_MESSAGE) {
		h = read_headers(env->fd, env->off, env->total, &hlen, &body);
		if (h == NULL) {
			set_final(res, MILTER_TEMPFAIL, "451 4.3.0 Temporary storage failure; the "
				  "message was not accepted, please try again later", "-",
				  "cannot read the message");
			return;
		}
	}
	for (size_t i = 0; i < ms->n && res->verdict == MILTER_ACCEPT; i++) {
		struct mconn *m = &ms->m[i];
		if (m->state == M_ACCEPT_CONN ||
		    (m->state == M_NEW && st != MILTER_STAGE_CONNECT) ||
		    (m->state == M_ACCEPT_TX && st >= MILTER_STAGE_MAIL))
			continue;
		if (m->state == M_REFUSED) {
			/* like Postfix: HELO is answered, the transaction is refused */
			if (st != MILTER_STAGE_HELO && st != MILTER_STAGE_CONNECT)
				set_final(res, m->refusal_verdict, m->refusal, m->spec,
					  "refused earlier in this session");
			continue;
		}
		m->res = res;
		m->err[0] = '\0';
		size_t edits_before = res->nedits;
		enum mreply r = MR_ERROR;
		switch (st) {
		case MILTER_STAGE_CONNECT:
			r = stage_connect(m, set, env, &octets);
			break;
		case MILTER_STAGE_HELO:
			r = stage_helo(m, set, env, &octets);
			break;
		case MILTER_STAGE_MAIL:
			r = stage_mail(m, set, env, &octets);
			break;
		case MILTER_STAGE_RCPT:
			r = stage_rcpt(m, set, rcpt, &octets);
			break;
		case MILTER_STAGE_MESSAGE:
			r = stage_message(m, set, env, h, hlen, body, &octets);
			break;
		}
		switch (r) {
		case MR_CONTINUE:
		case MR_SKIP:
			break;
		case MR_ACCEPT:
			/* done with this milter: for the connection when said at connect or HELO,
			 * else for the transaction */
			m->state = st <= MILTER_STAGE_HELO ? M_ACCEPT_CONN : M_ACCEPT_TX;
			break;
		case MR_FINAL:
			if (st > MILTER_STAGE_HELO)
				break;
			if (res->verdict == MILTER_DISCARD) {
				/* there is no message to drop yet: ignored, as Postfix does */
				log_warn("proto=smtp event=milter-ignored milter=%s stage=%s "
					 "reply=discard", m->spec, stage_names[st]);
				res->verdict = MILTER_ACCEPT;
				break;
			}
			/* a refusal of the connection stands for the rest of the session */
			m->state = M_REFUSED;
			m->refusal_verdict = res->verdict;
			snprintf(m->refusal, sizeof(m->refusal), "%s", res->reply);
			break;
		case MR_ERROR:
			/* a broken conversation's changes are not applied */
			while (res->nedits > edits_before) {
				res->nedits--;
				free(res->edits[res->nedits].name);
				free(res->edits[res->nedits].value);
			}
			milter_failed(m, set, st, res);
			break;
		}
	}
	free(h);
}

/* The whole conversation in one go, on a session of its own (tests, tools). */
void milter_run(const char *list, const struct milter_settings *set, const struct milter_env *env,
		struct milter_result *res)
{
	struct milter_session *ms = milter_session_new(list, set);
	memset(res, 0, sizeof(*res));
	res->verdict = MILTER_ACCEPT;
	if (ms == NULL)
		return;
	static const enum milter_stage first[] = { MILTER_STAGE_CONNECT, MILTER_STAGE_HELO,
						   MILTER_STAGE_MAIL };
	for (size_t k = 0; k < sizeof(first) / sizeof(first[0]); k++) {
		milter_stage(ms, first[k], env, NULL, res);
		if (res->verdict != MILTER_ACCEPT)
			goto out;
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		milter_stage(ms, MILTER_STAGE_RCPT, env, env->rcpts + i * env->rcpt_stride, res);
		if (res->verdict != MILTER_ACCEPT)
			goto out;
	}
	milter_stage(ms, MILTER_STAGE_MESSAGE, env, NULL, res);
out:
	milter_session_free(&ms);
}

/* Free what milter_run allocated. */
void milter_result_free(struct milter_result *res)
{
	for (size_t i = 0; i < res->nedits; i++) {
		free(res->edits[i].name);
		free(res->edits[i].value);
	}
	free(res->edits);
	res->edits = NULL;
	res->nedits = 0;
}

/* One header field of the rewritten section: a view of the original or an owned string. */
struct hfield {
	const char *p;
	size_t n;
	char *own;
};

/* Does field f carry the name `name`? */
static int field_is(const struct hfield *f, const char *name)
{
	size_t nl = strlen(name);
	if (f->n <= nl || strncasecmp(f->p, name, nl) != 0)
		return 0;
	size_t i = nl;
	while (i < f->n && (f->p[i] == ' ' || f->p[i] == '\t'))
		i++;
	return i < f->n && f->p[i] == ':';
}

/* Write all of p to fd, continuing the CRC. 0 / -1. */
static int write_all(int fd, const char *p, size_t n, unsigned long *crc, uint64_t *len)
{
	*crc = crc32_z(*crc, (const unsigned char *)p, n);
	*len += n;
	return fs_write_all(fd, p, n);
}

/* Copy with the header edits applied. */
int milter_apply_edits(int in_fd, uint64_t off, uint64_t total, const struct milter_edit *edits,
		       size_t nedits, int out_fd, uint64_t *len_r, unsigned long *crc_r)
{
	size_t hlen;
	uint64_t body;
	char *h = read_headers(in_fd, off, total, &hlen, &body);
	if (h == NULL)
		return -1;
	/* the fields of the section, with their line ends */
	size_t cap = 16 + nedits, nf = 0;
	for (size_t i = 0; i < hlen; i++)
		cap += h[i] == '\n';
	struct hfield *f = calloc(cap, sizeof(*f));
	int rc = -1;
	if (f == NULL)
		goto out;
	for (size_t i = 0; i < hlen;) {
		size_t e = field_end(h, i, hlen);
		size_t end = e < hlen ? e + 1 : hlen;
		f[nf].p = h + i;
		f[nf].n = end - i;
		nf++;
		i = end;
	}
	for (size_t k = 0; k < nedits; k++) {
		const struct milter_edit *e = &edits[k];
		size_t at = nf;              /* where the new field goes; nf = append */
		if (e->op == 'i') {
			at = e->index < nf ? e->index : nf;
		} else if (e->op == 'm') {
			uint32_t seen = 0;
			size_t j = 0;
			for (; j < nf; j++)
				if (field_is(&f[j], e->name) && ++seen == e->index)
					break;
			if (j < nf) {
				free(f[j].own);
				if (e->value[0] == '\0') {   /* an empty value deletes the field */
					memmove(&f[j], &f[j + 1], (nf - j - 1) * sizeof(*f));
					nf--;
					continue;
				}
				memmove(&f[j], &f[j + 1], (nf - j - 1) * sizeof(*f));
				nf--;
				at = j;
			} else if (e->value[0] == '\0') {
				continue;
			}
		}
		size_t len = strlen(e->name) + strlen(e->value) + 5;
		char *s = malloc(len);
		if (s == NULL)
			goto out;
		snprintf(s, len, "%s: %s\r\n", e->name, e->value);
		memmove(&f[at + 1], &f[at], (nf - at) * sizeof(*f));
		f[at] = (struct hfield){ .p = s, .n = strlen(s), .own = s };
		nf++;
	}
	*len_r = 0;
	for (size_t j = 0; j < nf; j++)
		if (write_all(out_fd, f[j].p, f[j].n, crc_r, len_r) < 0)
			goto out;
	/* the empty line and the body, as they were */
	struct milter_bufs *mb = milter_bufs();
	if (mb == NULL)
		goto out;
	char *chunk = mb->copy;
	uint64_t pos = off + hlen;
	while (pos < total) {
		size_t want = total - pos < MILTER_COPY_CHUNK ? (size_t)(total - pos) :
								    MILTER_COPY_CHUNK;
		ssize_t r = pread(in_fd, chunk, want, (off_t)pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || write_all(out_fd, chunk, (size_t)r, crc_r, len_r) < 0)
			goto out;
		pos += (uint64_t)r;
	}
	(void)body;
	rc = 0;
out:
	if (f != NULL)
		for (size_t j = 0; j < nf; j++)
			free(f[j].own);
	free(f);
	free(h);
	return rc;
}
