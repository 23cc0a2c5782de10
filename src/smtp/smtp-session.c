/* smtp-session.c - the SMTP server session: greeting, command dispatch, EHLO, STARTTLS, AUTH,
 * MAIL, RCPT and the small commands. DATA and BDAT bodies are in smtp-data.c.
 *
 * One session serves the MX (port 25) and submission (587 STARTTLS, 465 implicit TLS) listeners;
 * what differs is read from the listener's flags, never from the port number.
 */
#include "smtp-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "addr.h"
#include "auth-verify.h"
#include "sasl.h"
#include "smtp-milter.h"
#include "diag.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "queue-spool.h"
#include "store-path.h"
#include "store.h"
#include "tls.h"

/* One line for a plaintext client on an implicit-TLS port (%u: the STARTTLS port). */
static const char smtp_tls_hint[] =
	"554 5.7.0 This port needs SSL/TLS from the start: "
	"turn on SSL/TLS in your mail program, or use port %u with STARTTLS\r\n";

static void smtp_process(struct smtp_session *s);

static const char *state_names[] = { "greet", "ready", "mail", "rcpt", "data", "bdat", "auth",
				     "busy" };

/* Change state, logging the transition in debug mode. */
void smtp_set_state(struct smtp_session *s, enum smtp_state st)
{
	log_debug("sess=%016llx state %s -> %s", (unsigned long long)s->base.id,
		  state_names[s->st], state_names[st]);
	s->st = st;
}

/* Queue one reply line (CRLF added); the log and the wire say the same. */
void smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	metrics_observe(MH_COMMAND, MP_SMTP, &s->base.cmd_ns);
	if (n < 0)
		return;
	size_t len = (size_t)n > sizeof(line) - 3 ? sizeof(line) - 3 : (size_t)n;
	/* replies echo peer text (parameters, addresses): a CR, LF or other control octet in it
	 * would end the line early for some clients and forge a reply, so it becomes '?' */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];
		if (ch < 32 || ch == 127)
			line[i] = '?';
	}
	if (line[0] >= '4')
		log_info("sess=%016llx proto=smtp event=reply result=\"%.*s\"",
			 (unsigned long long)s->base.id, (int)len, line);
	line[len++] = '\r';
	line[len++] = '\n';
	if (conn_write(&s->conn, line, len) < 0)
		smtp_session_close(s, "output buffer full");
}

/* "25 MB", "1.5 MB", "512 KB": a size as people read it. */
const char *smtp_size_text(uint64_t bytes, char *out, size_t outlen)
{
	if (bytes >= 1048576 && bytes % 1048576 == 0)
		snprintf(out, outlen, "%llu MB", (unsigned long long)(bytes / 1048576));
	else if (bytes >= 1048576)
		snprintf(out, outlen, "%.1f MB", (double)bytes / 1048576.0);
	else
		snprintf(out, outlen, "%llu KB", (unsigned long long)((bytes + 1023) / 1024));
	return out;
}

/* Free a transaction: close and remove its temp file. */
void smtp_tx_free(struct smtp_tx **txp)
{
	struct smtp_tx *tx = *txp;
	if (tx == NULL)
		return;
	if (tx->fd >= 0)
		close(tx->fd);
	if (tx->tmppath[0])
		unlink(tx->tmppath);
	buf_free(&tx->wbuf);
	buf_free(&tx->headers);
	free(tx->ar_value);
	free(tx->rcpts);
	free(tx->targets);
	free(tx);
	*txp = NULL;
}

/* Forget SASL state, wiping secrets. */
static void smtp_auth_clear(struct smtp_session *s)
{
	if (s->auth_secret) {
		explicit_bzero(s->auth_secret, strlen(s->auth_secret));
		free(s->auth_secret);
		s->auth_secret = NULL;
	}
	s->auth_mech = s->auth_step = 0;
	s->auth_login_user[0] = '\0';
}

/* Free the session once nothing points at it any more. */
static void smtp_release(struct session *b)
{
	struct smtp_session *s = (struct smtp_session *)b;
	ev_timer_cancel(s->base.w->loop, &s->timer);
	ev_timer_cancel(s->base.w->loop, &s->pause_timer);
	free(s->delayed_reply);
	smtp_tx_free(&s->tx);
	smtp_auth_clear(s);
	milter_session_free(&s->milter);
}

/* Close the session at the next safe point; see STYLE.md section 7. */
void smtp_session_close(struct smtp_session *s, const char *reason)
{
	session_close(&s->base, reason);
}

/* A protocol error by the peer: count it and hang up after too many. */
void smtp_count_error(struct smtp_session *s)
{
	if (++s->errors >= s->base.lc->max_errors) {
		smtp_reply(s, "421 4.7.0 %s Too many errors in this session; closing the connection",
			   s->base.w->cfg->hostname);
		smtp_session_close(s, "too many errors");
	}
}

/* Idle timeout: say why and hang up. */
static void smtp_on_timeout(struct ev_timer *t)
{
	struct smtp_session *s = t->arg;
	if (s->st == SMTP_ST_BUSY) {   /* our own work is slow; not the peer's fault */
		ev_timer_set(s->base.w->loop, &s->timer, 1000, smtp_on_timeout, s);
		return;
	}
	smtp_reply(s, "421 4.4.2 %s Timeout: no command received in time; closing the connection",
		   s->base.w->cfg->hostname);
	smtp_session_close(s, "timeout");
}

/* (Re)arm the idle timer for the current state. */
static void smtp_arm_timer(struct smtp_session *s)
{
	unsigned secs = (s->st == SMTP_ST_DATA || s->st == SMTP_ST_BDAT) ?
				s->base.lc->data_timeout : s->base.lc->command_timeout;
	ev_timer_set(s->base.w->loop, &s->timer, (uint64_t)secs * 1000, smtp_on_timeout, s);
}

/* Worker shutdown: idle sessions get a 421 now; busy ones finish their message first. */
static void smtp_on_shutdown(struct session *b)
{
	struct smtp_session *s = (struct smtp_session *)b;
	if (s->st == SMTP_ST_DATA || s->st == SMTP_ST_BDAT || s->st == SMTP_ST_BUSY)
		return;
	if (s->greet_pending) {   /* end the multi-line greeting before the 421 */
		ev_timer_cancel(s->base.w->loop, &s->pause_timer);
		s->greet_pending = 0;
		smtp_reply(s, "220 %s ESMTP postino", s->base.w->cfg->hostname);
	}
	smtp_reply(s, "421 4.3.2 %s Service shutting down; please try again in a minute",
		   s->base.w->cfg->hostname);
	smtp_session_close(s, "shutdown");
}

/* Pregreet test on port 25 (like Postfix postscreen): the greeting starts with a "220-" line and
 * ends smtp_greet_pause later. A real mail server waits for the last line (RFC 5321 4.2, 4.3.1);
 * spam software that talks first is refused. A client that passed is remembered by this worker
 * for a day and greeted at once. */
#define SMTP_GREET_PASS_SLOTS 4096           /* remembered client IPs per worker (64 KB) */
#define SMTP_GREET_PASS_TTL (24 * 3600)      /* seconds a passed client skips the pause */

struct greet_pass {
	uint64_t key;      /* hash of the client IP text, 0 = empty */
	time_t until;
};
static struct greet_pass greet_passed[SMTP_GREET_PASS_SLOTS];

/* FNV-1a of the client IP text (never 0). */
static uint64_t greet_key(const char *ip)
{
	uint64_t h = 14695981039346656037ULL;
	for (; *ip; ip++)
		h = (h ^ (unsigned char)*ip) * 1099511628211ULL;
	return h ? h : 1;
}

/* Has this client IP passed the pregreet test lately? */
static int greet_pass_known(const char *ip)
{
	uint64_t k = greet_key(ip);
	const struct greet_pass *g = &greet_passed[k % SMTP_GREET_PASS_SLOTS];
	return g->key == k && g->until > time(NULL);
}

/* Remember a client IP that waited for the whole greeting. */
static void greet_pass_remember(const char *ip)
{
	uint64_t k = greet_key(ip);
	struct greet_pass *g = &greet_passed[k % SMTP_GREET_PASS_SLOTS];
	g->key = k;
	g->until = time(NULL) + SMTP_GREET_PASS_TTL;
}

/* The greet pause is over without a word from the client: finish the greeting. */
static void smtp_greet_done(struct ev_timer *t)
{
	struct smtp_session *s = t->arg;
	if (s->base.closing || !s->greet_pending)
		return;
	s->greet_pending = 0;
	greet_pass_remember(s->base.peer_ip);
	smtp_reply(s, "220 %s ESMTP postino", s->base.w->cfg->hostname);
	smtp_arm_timer(s);   /* the client's time for its first command starts now */
	conn_flush(&s->conn);
}

/* A milter's reply that starts with 421 ends the session, as Postfix does. 1: closed. */
static int smtp_milter_421(struct smtp_session *s, const struct milter_result *res)
{
	if (strncmp(res->reply, "421", 3) != 0)
		return 0;
	smtp_reply(s, "%s", res->reply);
	smtp_session_close(s, "milter asked to close");
	return 1;
}

static void smtp_greet_now(struct smtp_session *s);

/* The milters' verdict on the connection (Postfix's smtpd_milters): a reject makes the
 * greeting 554 and refuses every MAIL of the session; a 421 reply is the greeting and the
 * end; a tempfail greets normally and refuses every MAIL with its 4xx (the refusal stands in
 * the milter session: milter_session_refusal). */
static void smtp_greet_milter_done(struct smtp_session *s, const struct milter_result *res)
{
	const char *host = s->base.w->cfg->hostname;
	if (res->verdict == MILTER_REJECT) {
		/* "554 <host> text" (RFC 5321 3.1) with the milter's reason after its codes */
		const char *text = strlen(res->reply) > 4 ? res->reply + 4 : "";
		if (text[0] == '5' && text[1] == '.')
			text = strchr(text, ' ') ? strchr(text, ' ') + 1 : "";
		smtp_reply(s, "554 5.7.1 %s ESMTP not accepting mail from you: %s", host, text);
		return;
	}
	if (res->verdict == MILTER_TEMPFAIL && strncmp(res->reply, "421", 3) == 0) {
		smtp_reply(s, "421 4.7.1 %s Service not available, closing the connection: the "
			      "spam filter asked to try again later", host);
		smtp_session_close(s, "refused by a milter at connect");
		return;
	}
	smtp_greet_now(s);
}

/* Send the 220 greeting, after the milters' CONNECT stage if the listener has milters. */
static void smtp_greet(struct smtp_session *s)
{
	if (s->milter != NULL) {
		smtp_milter_stage(s, MILTER_STAGE_CONNECT, NULL, smtp_greet_milter_done);
		return;
	}
	smtp_greet_now(s);
}

/* Send the 220 greeting (on port 25, its first line now and the last after the greet pause). */
static void smtp_greet_now(struct smtp_session *s)
{
	const struct config *cfg = s->base.w->cfg;
	if (cfg->smtp_greet_pause > 0 && !s->base.lc->submission && !s->base.tls &&
	    !greet_pass_known(s->base.peer_ip)) {
		smtp_reply(s, "220-%s ESMTP postino", cfg->hostname);
		s->greet_pending = 1;
		ev_timer_set(s->base.w->loop, &s->pause_timer, (uint64_t)cfg->smtp_greet_pause * 1000,
			     smtp_greet_done, s);
		return;
	}
	smtp_reply(s, "220 %s ESMTP postino", cfg->hostname);
}

/* The client sent something before the greeting ended: spam software that does not wait for
 * replies. Finish the greeting so the reply stream stays well-formed, refuse, hang up. */
static void smtp_early_talker(struct smtp_session *s)
{
	ev_timer_cancel(s->base.w->loop, &s->pause_timer);
	s->greet_pending = 0;
	log_info("sess=%016llx proto=smtp event=early-talker ip=%s octets=%zu",
		 (unsigned long long)s->base.id, s->base.peer_ip, s->conn.in.len);
	buf_consume(&s->conn.in, s->conn.in.len);
	smtp_reply(s, "220 %s ESMTP postino", s->base.w->cfg->hostname);
	smtp_reply(s, "554 5.5.1 Protocol error: you sent commands before the greeting ended; a mail "
		      "server must wait for the whole 220 greeting (RFC 5321 section 4.3.1). No mail "
		      "is accepted on this connection");
	smtp_session_close(s, "early talker");
}

/* The harvest brake's held-back reply is due: send it and read commands again. */
static void smtp_delayed_reply_done(struct ev_timer *t)
{
	struct smtp_session *s = t->arg;
	char *text = s->delayed_reply;
	s->delayed_reply = NULL;
	if (s->base.closing || text == NULL) {
		free(text);
		return;
	}
	smtp_reply(s, "%s", text);
	free(text);
	conn_pause_read(&s->conn, 0);   /* runs smtp_process over what was pipelined meanwhile */
	conn_flush(&s->conn);
}

/* Directory-harvest brake (like Postfix's smtpd_soft/hard_error_limit): the first
 * smtp_unknown_rcpt_delay_after unknown recipients of an unauthenticated session are answered
 * at once, each further one after smtp_unknown_rcpt_delay (a timer; the session stops reading
 * meanwhile, so pipelined commands wait in order), and at smtp_unknown_rcpt_limit the session
 * ends with 421. */
static void smtp_unknown_rcpt(struct smtp_session *s, const char *addr)
{
	const struct config *cfg = s->base.w->cfg;
	char text[SMTP_ADDR_MAX + 100];
	snprintf(text, sizeof(text), "550 5.1.1 <%s>: no such mailbox here; check the address for "
		 "typos", addr);
	if (s->auth_user[0]) {
		smtp_reply(s, "%s", text);
		return;
	}
	s->unknown_rcpts++;
	if (cfg->smtp_unknown_rcpt_limit > 0 && s->unknown_rcpts >= cfg->smtp_unknown_rcpt_limit) {
		log_info("sess=%016llx proto=smtp event=harvest-limit ip=%s unknown=%u",
			 (unsigned long long)s->base.id, s->base.peer_ip, s->unknown_rcpts);
		smtp_reply(s, "421 4.7.0 %s Too many unknown recipients in this session; closing the "
			      "connection", cfg->hostname);
		smtp_session_close(s, "too many unknown recipients");
		return;
	}
	if (cfg->smtp_unknown_rcpt_delay == 0 ||
	    s->unknown_rcpts <= cfg->smtp_unknown_rcpt_delay_after ||
	    (s->delayed_reply = strdup(text)) == NULL) {
		smtp_reply(s, "%s", text);
		return;
	}
	conn_pause_read(&s->conn, 1);
	ev_timer_set(s->base.w->loop, &s->pause_timer, (uint64_t)cfg->smtp_unknown_rcpt_delay * 1000,
		     smtp_delayed_reply_done, s);
}

/* The session core's view of SMTP (session.h). */
static void smtp_op_greet(struct session *b)
{
	smtp_greet((struct smtp_session *)b);
}

static void smtp_op_process(struct session *b)
{
	smtp_process((struct smtp_session *)b);
}

/* EOF waits for a running delivery, and for replies still owed to pipelined commands */
static int smtp_op_busy(const struct session *b)
{
	const struct smtp_session *s = (const struct smtp_session *)b;
	return s->st == SMTP_ST_BUSY || (s->conn.want_write && s->conn.in.len > 0);
}

static void smtp_op_close_detail(const struct session *b, char *out, size_t outlen)
{
	snprintf(out, outlen, "messages=%u", ((const struct smtp_session *)b)->ntx);
}

static void smtp_op_tls_done(struct session *b)
{
	struct smtp_session *s = (struct smtp_session *)b;
	snprintf(s->tls_info, sizeof(s->tls_info), "using %s with cipher %s",
		 tls_version(s->conn.tls), tls_cipher(s->conn.tls));
}

static const struct session_ops smtp_ops = {
	.proto = "smtp",
	.alpn = "smtp",
	.tls_hint = smtp_tls_hint,
	.hint_listener = LST_SUBMISSION,
	.tls_failure_diag = 1,
	.greet = smtp_op_greet,
	.process = smtp_op_process,
	.busy = smtp_op_busy,
	.close_detail = smtp_op_close_detail,
	.release = smtp_release,
	.shutdown = smtp_on_shutdown,
	.tls_done = smtp_op_tls_done,
};

/* Take over an accepted connection. */
void smtp_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer)
{
	struct smtp_session *s = session_new(w, fd, lst, peer, &smtp_ops, sizeof(*s));
	if (s == NULL)
		return;
	size_t line_max = s->base.lc->line_length_limit;
	linereader_init(&s->lr, line_max);
	if (session_connect(&s->base, &s->conn, fd, SMTP_AUTH_LINE_MAX > line_max ?
			    SMTP_AUTH_LINE_MAX + 2 : line_max + 2, SMTP_OUT_MAX) < 0) {
		free(s);
		return;
	}
	if (s->base.lc->milters[0]) {
		struct milter_settings set;
		smtp_milter_settings(w->cfg, &set);
		s->milter = milter_session_new(s->base.lc->milters, &set);
		if (s->milter == NULL) {
			smtp_session_close(s, "out of memory for the milters");
			return;
		}
	}
	smtp_arm_timer(s);
	session_begin(&s->base);
}

/* ---- commands ---- */

enum { NEED_TLS_IF_SUBM = 1, NEED_AUTH_IF_SUBM = 2, NEED_NOT_TLS = 4, NEED_SUBMISSION = 8,
       NEED_HELO = 16 };
#define ST_ANY_CMD ((1u << SMTP_ST_GREET) | (1u << SMTP_ST_READY) | (1u << SMTP_ST_MAIL) | \
		    (1u << SMTP_ST_RCPT))
#define ST_NOTX ((1u << SMTP_ST_GREET) | (1u << SMTP_ST_READY))

struct smtp_cmd {
	const char *verb;
	unsigned states;   /* bit per enum smtp_state */
	unsigned needs;
	void (*fn)(struct smtp_session *s, char *args);
};

/* Parse "KEY=VALUE" ESMTP parameters; calls fn for each. Returns 0, or -1 when fn refused. */
static int smtp_each_param(struct smtp_session *s, char *p,
			   int (*fn)(struct smtp_session *s, const char *key, const char *val))
{
	while (*p) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		char *kw = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = '\0';
		char *eq = strchr(kw, '=');
		const char *val = NULL;
		if (eq) {
			*eq = '\0';
			val = eq + 1;
		}
		if (fn(s, kw, val) < 0)
			return -1;
	}
	return 0;
}

/* Fail the command with 501 (syntax) and count the error. */
static void smtp_syntax(struct smtp_session *s, const char *what)
{
	smtp_reply(s, "501 5.5.4 Syntax error: %s", what);
	smtp_count_error(s);
}

/* Does xtext (RFC 3461 section 4) look right? "+" must be followed by two upper-case hex digits. */
static int xtext_valid(const char *v, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(v);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '+') {
			if (i + 2 >= n || memchr(hex, v[i + 1], 16) == NULL ||
			    memchr(hex, v[i + 2], 16) == NULL)
				return 0;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return 0;
		}
	}
	return 1;
}

static void smtp_helo_milter_done(struct smtp_session *s, const struct milter_result *res);
static void smtp_helo_finish(struct smtp_session *s);

/* EHLO / HELO. */
static void smtp_helo_common(struct smtp_session *s, char *args, int esmtp)
{
	while (*args == ' ')
		args++;
	size_t n = strcspn(args, " ");
	if (n == 0) {
		smtp_syntax(s, esmtp ? "EHLO needs your host name, as in EHLO mail.example.com" :
				       "HELO needs your host name, as in HELO mail.example.com");
		return;
	}
	if (n >= sizeof(s->helo))
		n = sizeof(s->helo) - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)args[i];
		if (c < 33 || c > 126) {
			smtp_syntax(s, "the host name has characters that are not allowed");
			return;
		}
	}
	memcpy(s->pending_helo, args, n);
	s->pending_helo[n] = '\0';
	s->pending_esmtp = esmtp;
	/* the milters hear HELO, unless one of them refused the connection: then HELO is answered
	 * and every MAIL refused (as Postfix does) */
	if (s->milter != NULL && milter_session_refusal(s->milter, NULL) == NULL) {
		smtp_milter_stage(s, MILTER_STAGE_HELO, s->pending_helo, smtp_helo_milter_done);
		return;
	}
	smtp_helo_finish(s);
}

/* The milters' verdict on HELO: a refusal is the reply to this HELO/EHLO (and stands for the
 * session's transactions); else the greeting goes on. */
static void smtp_helo_milter_done(struct smtp_session *s, const struct milter_result *res)
{
	if (smtp_milter_421(s, res))
		return;
	if (res->verdict == MILTER_REJECT || res->verdict == MILTER_TEMPFAIL) {
		smtp_reply(s, "%s", res->reply);
		return;
	}
	smtp_helo_finish(s);
}

/* Accept the HELO/EHLO in pending_helo and list the extensions. */
static void smtp_helo_finish(struct smtp_session *s)
{
	int esmtp = s->pending_esmtp;
	snprintf(s->helo, sizeof(s->helo), "%s", s->pending_helo);
	snprintf(s->base.client, sizeof(s->base.client), "EHLO %.100s", s->helo);
	s->esmtp = esmtp;
	smtp_tx_free(&s->tx);   /* EHLO resets any transaction (RFC 5321 4.1.4) */
	smtp_set_state(s, SMTP_ST_READY);
	const struct listener_conf *lc = s->base.lc;
	const char *host = s->base.w->cfg->hostname;
	if (!esmtp) {
		smtp_reply(s, "250 %s", host);
		return;
	}
	smtp_reply(s, "250-%s Hello %s [%s]", host, s->helo, s->base.peer_ip);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %llu", (unsigned long long)lc->message_size_limit);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	if (!s->base.tls && s->base.w->tls)
		smtp_reply(s, "250-STARTTLS");
	if (lc->submission && s->base.tls && s->auth_user[0] == '\0')
		smtp_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_reply(s, "250-SMTPUTF8");
	smtp_reply(s, "250-CHUNKING");
	if (lc->submission && s->auth_user[0] != '\0')   /* RFC 4468: our own IMAP store */
		smtp_reply(s, "250-BURL imap imap://%s", host);
	smtp_reply(s, "250 DSN");
}

static void cmd_ehlo(struct smtp_session *s, char *args)
{
	smtp_helo_common(s, args, 1);
}

static void cmd_helo(struct smtp_session *s, char *args)
{
	smtp_helo_common(s, args, 0);
}

/* STARTTLS: reply, then forget everything the plaintext session said (RFC 3207 section 4.2). */
static void cmd_starttls(struct smtp_session *s, char *args)
{
	if (*args) {
		smtp_syntax(s, "STARTTLS takes no arguments");
		return;
	}
	if (s->base.w->tls == NULL) {
		smtp_reply(s, "454 4.7.0 TLS not available: the server has no certificate configured");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_tx_free(&s->tx);
	s->helo[0] = '\0';
	s->esmtp = 0;
	smtp_set_state(s, SMTP_ST_GREET);
	if (conn_start_tls(&s->conn, s->base.w->tls) < 0)
		smtp_session_close(s, "TLS setup failed");
}

/* Handle one MAIL parameter. */
static int mail_param(struct smtp_session *s, const char *k, const char *v)
{
	struct smtp_tx *tx = s->tx;
	char sz[32];
	if (strcasecmp(k, "SIZE") == 0) {
		char *end;
		if (v == NULL || *v < '0' || *v > '9') {
			smtp_syntax(s, "SIZE= needs a number");
			return -1;
		}
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		if (*end != '\0' || errno) {
			smtp_syntax(s, "SIZE= needs a number");
			return -1;
		}
		tx->declared_size = n;
		if (n > s->base.lc->message_size_limit) {
			smtp_reply(s, "552 5.3.4 Message too big: the limit is %s; make it smaller, "
				      "for example by sending large attachments as links",
				   smtp_size_text(s->base.lc->message_size_limit, sz, sizeof(sz)));
			return -1;
		}
		return 0;
	}
	if (strcasecmp(k, "BODY") == 0) {
		if (v && strcasecmp(v, "8BITMIME") == 0)
			tx->body_8bit = 1;
		else if (!(v && strcasecmp(v, "7BIT") == 0)) {
			smtp_reply(s, "555 5.5.4 BODY= must be 7BIT or 8BITMIME");
			return -1;
		}
		return 0;
	}
	if (strcasecmp(k, "SMTPUTF8") == 0 && v == NULL) {
		tx->smtputf8 = 1;
		return 0;
	}
	if (strcasecmp(k, "RET") == 0) {
		if (v && (strcasecmp(v, "FULL") == 0 || strcasecmp(v, "HDRS") == 0)) {
			snprintf(tx->ret, sizeof(tx->ret), "%s", v);
			return 0;
		}
		smtp_reply(s, "501 5.5.4 RET= must be FULL or HDRS");
		return -1;
	}
	if (strcasecmp(k, "ENVID") == 0) {
		if (v && xtext_valid(v, 100)) {
			snprintf(tx->envid, sizeof(tx->envid), "%s", v);
			return 0;
		}
		smtp_reply(s, "501 5.5.4 ENVID= must be xtext of at most 100 characters");
		return -1;
	}
	if (strcasecmp(k, "AUTH") == 0 && v != NULL)
		return 0;   /* RFC 4954 section 5: accepted, not trusted */
	smtp_reply(s, "555 5.5.4 Unsupported MAIL parameter %.40s", k);
	return -1;
}

/* Collects the addresses a user may send as, for the 553 message. */
struct sendable_ctx {
	char list[600];
	unsigned n;
};

static void collect_sendable(void *ctx, const char *address)
{
	struct sendable_ctx *c = ctx;
	size_t len = strlen(c->list);
	if (c->n++ > 0 && len + 2 < sizeof(c->list)) {
		memcpy(c->list + len, ", ", 3);
		len += 2;
	}
	if (len + strlen(address) + 4 < sizeof(c->list))
		memcpy(c->list + len, address, strlen(address) + 1);
	else if (len + 4 < sizeof(c->list))
		memcpy(c->list + len, "...", 4);
}

/* Refuse a sender the authenticated user may not use, naming the ones allowed. */
void smtp_reply_not_yours(struct smtp_session *s, const char *what, const char *addr)
{
	struct sendable_ctx c = { "", 0 };
	const char *err;
	acctdb_sendable_addresses(s->base.w->db, s->auth_user, collect_sendable, &c, &err);
	smtp_reply(s, "553 5.7.1 You may not send as %.100s in the %s; as %s you may send from: %s",
		   addr[0] ? addr : "<>", what, s->auth_user, c.list[0] ? c.list : s->auth_user);
}

static void smtp_mail_milter_done(struct smtp_session *s, const struct milter_result *res);

/* MAIL FROM:<path> [params]. */
static void cmd_mail(struct smtp_session *s, char *args)
{
	if (strncasecmp(args, "FROM:", 5) != 0) {
		smtp_syntax(s, "use MAIL FROM:<address>");
		return;
	}
	char *p = args + 5;
	while (*p == ' ')
		p++;
	struct addr a;
	const char *end;
	if (*p != '<' || addr_parse_path(p, strlen(p), 1, &a, &end) < 0) {
		smtp_reply(s, "501 5.1.7 Bad sender address syntax: use MAIL FROM:<you@example.com>");
		smtp_count_error(s);
		return;
	}
	if (*end != '\0' && *end != ' ') {
		smtp_syntax(s, "unexpected text after the address");
		return;
	}
	s->tx = calloc(1, sizeof(*s->tx));
	if (s->tx == NULL) {
		smtp_reply(s, "451 4.3.0 Out of memory; please try again later");
		return;
	}
	s->tx->fd = -1;
	if (smtp_each_param(s, (char *)end, mail_param) < 0) {
		smtp_tx_free(&s->tx);
		return;
	}
	if ((a.flags & ADDR_F_UTF8) && !s->tx->smtputf8) {
		smtp_reply(s, "553 5.6.7 This address has non-ASCII characters: it needs the SMTPUTF8 "
			      "parameter");
		smtp_tx_free(&s->tx);
		return;
	}
	s->tx->null_sender = (a.flags & ADDR_F_NULL) != 0;
	if (!s->tx->null_sender && addr_format(&a, s->tx->from, sizeof(s->tx->from)) < 0) {
		smtp_reply(s, "501 5.1.7 Sender address too long");
		smtp_tx_free(&s->tx);
		return;
	}
	if (s->auth_user[0]) {
		const char *err;
		int ok = s->tx->null_sender ? 0 :
			 acctdb_may_send_as(s->base.w->db, s->auth_user, s->tx->from, &err);
		if (ok < 0) {
			smtp_reply(s, "451 4.3.0 Temporary lookup failure; please try again later");
			smtp_tx_free(&s->tx);
			return;
		}
		if (ok == 0) {
			smtp_reply_not_yours(s, "envelope sender (MAIL FROM)", s->tx->from);
			smtp_tx_free(&s->tx);
			return;
		}
		char msg[512];
		int lr = sendlimit_mail(s->base.w, s->auth_user, &s->tx->lim, msg, sizeof(msg));
		if (lr != 0) {
			smtp_reply(s, "%s", msg);
			if (lr == 1)
				sendlimit_refused(s->base.w, s->auth_user, &s->tx->lim, msg);
			if (lr == 2)
				session_diag(&s->base, DIAG_SUSPENDED, s->auth_user, s->base.tls,
					    "sending suspended: MAIL FROM refused");
			smtp_tx_free(&s->tx);
			return;
		}
	}
	if (s->milter != NULL) {
		/* a refusal of the connection (or a milter down) refuses every transaction */
		const char *refusal = milter_session_refusal(s->milter, NULL);
		if (refusal != NULL) {
			smtp_reply(s, "%s", refusal);
			smtp_tx_free(&s->tx);
			return;
		}
		queue_new_id(s->tx->id);   /* the milters' macro i, from MAIL on */
		smtp_milter_stage(s, MILTER_STAGE_MAIL, NULL, smtp_mail_milter_done);
		return;
	}
	smtp_set_state(s, SMTP_ST_MAIL);
	smtp_reply(s, "250 2.1.0 Sender OK");
}

/* The milters' verdict on MAIL: a refusal is the reply to MAIL and ends the transaction; a
 * discard accepts it and drops the message at its end. */
static void smtp_mail_milter_done(struct smtp_session *s, const struct milter_result *res)
{
	if (smtp_milter_421(s, res))
		return;
	if (res->verdict == MILTER_REJECT || res->verdict == MILTER_TEMPFAIL) {
		smtp_reply(s, "%s", res->reply);
		smtp_tx_free(&s->tx);
		return;
	}
	if (res->verdict == MILTER_DISCARD)
		s->tx->milter_discard = 1;
	smtp_set_state(s, SMTP_ST_MAIL);
	smtp_reply(s, "250 2.1.0 Sender OK");
}

/* Handle one RCPT parameter. */
static int rcpt_param(struct smtp_session *s, const char *k, const char *v)
{
	struct smtp_rcpt *r = &s->tx->rcpts[s->tx->nrcpts];
	if (strcasecmp(k, "NOTIFY") == 0) {
		if (v == NULL || strlen(v) >= sizeof(r->notify)) {
			smtp_reply(s, "501 5.5.4 NOTIFY= must be NEVER or a list of SUCCESS, FAILURE, DELAY");
			return -1;
		}
		char tmp[40], *save, *tok;
		snprintf(tmp, sizeof(tmp), "%s", v);
		int never = 0, other = 0;
		for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (strcasecmp(tok, "NEVER") == 0)
				never = 1;
			else if (strcasecmp(tok, "SUCCESS") == 0 || strcasecmp(tok, "FAILURE") == 0 ||
				 strcasecmp(tok, "DELAY") == 0)
				other = 1;
			else
				other = 2;
		}
		if ((never && other) || other == 2 || (!never && !other)) {
			smtp_reply(s, "501 5.5.4 NOTIFY= must be NEVER or a list of SUCCESS, FAILURE, DELAY");
			return -1;
		}
		snprintf(r->notify, sizeof(r->notify), "%s", v);
		return 0;
	}
	if (strcasecmp(k, "ORCPT") == 0) {
		const char *semi = v ? strchr(v, ';') : NULL;
		if (semi == NULL || semi == v || strlen(v) >= sizeof(r->orcpt) ||
		    !xtext_valid(semi + 1, 500)) {
			smtp_reply(s, "501 5.5.4 ORCPT= must be addr-type;xtext");
			return -1;
		}
		snprintf(r->orcpt, sizeof(r->orcpt), "%s", v);
		return 0;
	}
	smtp_reply(s, "555 5.5.4 Unsupported RCPT parameter %.40s", k);
	return -1;
}

/* Collects alias expansion results into the transaction's target list. */
/* RCPT's answers from system.db, kept per worker process while the file is unchanged (its
 * change counter, acctdb_change_counter: one pread instead of a read transaction of five or
 * six queries per recipient): whether the domain is hosted, the final targets (at most
 * RCPT_MEMO_TARGETS: larger aliases are looked up every time), which of them are local and
 * their quotas. Filled only from a lookup that met no error; what a hit decides (relay,
 * unknown user, quota against the mailbox's current size) is decided anew each time. */
#define RCPT_MEMO_SLOTS 64
#define RCPT_MEMO_TARGETS 2
struct rcpt_memo {
	uint32_t counter;
	int used;
	int hosted;
	unsigned n;                   /* targets; 0: unknown recipient */
	char addr[SMTP_ADDR_MAX];     /* the recipient, lower-cased */
	struct {
		char addr[SMTP_ADDR_MAX];
		int local;
		uint64_t quota;       /* bytes, 0 none */
	} t[RCPT_MEMO_TARGETS];
};
static struct rcpt_memo *rcpt_memo;   /* RCPT_MEMO_SLOTS, allocated at first use */

/* The slot for a lower-cased address. */
static struct rcpt_memo *rcpt_memo_slot(const char *lc)
{
	if (rcpt_memo == NULL && (rcpt_memo = calloc(RCPT_MEMO_SLOTS, sizeof(*rcpt_memo))) == NULL)
		return NULL;
	uint32_t h = 2166136261u;
	for (const char *p = lc; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &rcpt_memo[h % RCPT_MEMO_SLOTS];
}

struct target_ctx {
	struct smtp_session *s;
	int overflow;
	unsigned added;
	int failed;                   /* a lookup failed: the answer is not memorised */
	struct rcpt_memo m;           /* what the lookups said, for the memo */
};

/* Add one final target to the transaction (once per message), local or not. */
static void add_target_as(struct target_ctx *c, const char *target, int local)
{
	struct smtp_tx *tx = c->s->tx;
	for (unsigned i = 0; i < tx->ntargets; i++)
		if (strcmp(tx->targets[i].addr, target) == 0)
			return;   /* a message reaches each mailbox once */
	if (tx->ntargets >= SMTP_TARGETS_MAX) {
		c->overflow = 1;
		return;
	}
	if (tx->targets == NULL || tx->ntargets % 16 == 0) {
		void *n = realloc(tx->targets, (tx->ntargets + 16) * sizeof(*tx->targets));
		if (n == NULL) {
			c->overflow = 1;
			return;
		}
		tx->targets = n;
	}
	struct smtp_target *t = &tx->targets[tx->ntargets];
	snprintf(t->addr, sizeof(t->addr), "%s", target);
	t->local = local;
	t->rcpt = tx->nrcpts;
	tx->ntargets++;
	c->added++;
}

/* acctdb_resolve's callback: a target is local when its domain is hosted. */
static void add_target(void *ctx, const char *target)
{
	struct target_ctx *c = ctx;
	const char *at = strrchr(target, '@');
	const char *err;
	int r = at ? acctdb_domain_exists(c->s->base.w->db, at + 1, &err) : 0;
	c->failed |= r < 0;
	if (c->m.n < RCPT_MEMO_TARGETS) {
		snprintf(c->m.t[c->m.n].addr, sizeof(c->m.t[0].addr), "%s", target);
		c->m.t[c->m.n].local = r == 1;
	}
	c->m.n++;
	add_target_as(c, target, r == 1);
}

/* The storage quota of a local account (0: none, or no such account); -1 lookup failed. */
static int64_t rcpt_quota(struct smtp_session *s, const char *addr)
{
	struct acct_user u;
	const char *err;
	int r = acctdb_user_get(s->base.w->db, addr, &u, &err);
	int64_t q = r == 1 ? (int64_t)u.quota_bytes : r < 0 ? -1 : 0;
	explicit_bzero(&u, sizeof(u));
	return q;
}

/* Is a local account with a quota at or over it? (Read on the loop: only accounts with a
 * quota pay for the index lookup.) */
static int smtp_over_quota(struct smtp_session *s, const char *addr, uint64_t quota)
{
	if (quota == 0)
		return 0;
	char root[CONFIG_PATH_MAX + 700];
	struct store_account *a = NULL;
	const char *err;
	int over = 0;
	if (store_account_path(s->base.w->cfg->data_dir, addr, root, sizeof(root)) == 0 &&
	    store_account_open(root, &a, &err) == 1) {
		int64_t used = store_account_usage(a, &err);
		over = used >= 0 && (uint64_t)used + (s->tx ? s->tx->declared_size : 0) >= quota;
	}
	store_account_close(&a);
	return over;
}

/* Relay denied, in words that tell the user what to do. */
static void smtp_relay_denied(struct smtp_session *s)
{
	if (s->base.lc->submission)
		smtp_reply(s, "554 5.7.1 Relay access denied: this address form is not accepted "
			      "(no source routes, %% or ! hops, quoted @ or IP-literal domains)");
	else
		smtp_reply(s, "554 5.7.1 Relay access denied: this server accepts mail only for the "
			      "domains it hosts; to send to other domains, log in to your provider's "
			      "submission server on port 587 or 465");
}

static void cmd_rcpt(struct smtp_session *s, char *args);

/* RCPT TO:<Postmaster> without a domain (RFC 5321 4.1.1.3, which every server must accept):
 * the postmaster of the server's own domain (acctdb_primary_domain); rest holds the parameters. */
static void smtp_rcpt_postmaster(struct smtp_session *s, const char *rest)
{
	char dom[ADDR_DOMAIN_MAX + 1], cmd[ADDR_PATH_MAX + 32];
	const char *err;
	if (*rest != '\0' && *rest != ' ') {
		smtp_syntax(s, "unexpected text after the address");
		return;
	}
	int r = acctdb_primary_domain(s->base.w->db, s->base.w->cfg->hostname, dom, sizeof(dom),
				      &err);
	if (r < 0) {
		smtp_reply(s, "451 4.3.0 Temporary lookup failure; please try again later");
		return;
	}
	if (r == 0) {
		smtp_reply(s, "550 5.1.1 <Postmaster>: this server hosts no domain yet");
		return;
	}
	size_t rl = strlen(rest);
	char *line = malloc(sizeof(cmd) + rl);
	if (line == NULL) {
		smtp_reply(s, "452 4.3.0 Out of memory; please try again later");
		return;
	}
	snprintf(line, sizeof(cmd) + rl, "TO:<postmaster@%s>%s", dom, rest);
	cmd_rcpt(s, line);
	free(line);
}

static void smtp_rcpt_milter_done(struct smtp_session *s, const struct milter_result *res);

/* The path of RCPT TO: into a, end after it. 0, or -1 refused (replied). */
static int rcpt_path(struct smtp_session *s, const char *p, struct addr *a, const char **end)
{
	if (*p != '<' || addr_parse_path(p, strlen(p), 1, a, end) < 0) {
		/* "u@remote@ours" and similar tricks fail the syntax; call them what they are */
		const char *at = strchr(p, '@');
		if (at && (strchr(at + 1, '@') || strpbrk(p, "%!:")))
			smtp_relay_denied(s);
		else
			smtp_reply(s, "501 5.1.3 Bad recipient address syntax: use "
				      "RCPT TO:<someone@example.com>");
		smtp_count_error(s);
		return -1;
	}
	if (a->flags & ADDR_F_NULL) {
		smtp_reply(s, "501 5.1.3 The null address <> cannot be a recipient");
		smtp_count_error(s);
		return -1;
	}
	if (**end != '\0' && **end != ' ') {
		smtp_syntax(s, "unexpected text after the address");
		return -1;
	}
	if ((a->flags & ADDR_F_UTF8) && !s->tx->smtputf8) {
		smtp_reply(s, "553 5.6.7 This address has non-ASCII characters: it needs the SMTPUTF8 "
			      "parameter on MAIL FROM");
		return -1;
	}
	if (a->flags & (ADDR_F_ROUTE | ADDR_F_IPLITERAL | ADDR_F_RELAYCHARS)) {
		smtp_relay_denied(s);
		return -1;
	}
	return 0;
}

/* Where mail for r goes: a hosted address through its aliases to local mailboxes (each under
 * its quota), anything else only for an authenticated sender (never an open relay). The targets
 * are added to the transaction (c->added of them). 0, or -1 refused (replied). */
static int rcpt_targets(struct smtp_session *s, const struct smtp_rcpt *r, const char *domain,
			struct target_ctx *c)
{
	struct smtp_tx *tx = s->tx;
	struct acctdb *db = s->base.w->db;
	const char *err;
	/* lookups are case-insensitive; the stored address is lower-case */
	char lc[SMTP_ADDR_MAX];
	snprintf(lc, sizeof(lc), "%s", r->addr);
	for (char *q = lc; *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	uint32_t counter = 0;   /* read before any lookup: see acctdb_change_counter */
	struct rcpt_memo *slot = acctdb_change_counter(db, &counter) == 0 ? rcpt_memo_slot(lc) : NULL;
	const struct rcpt_memo *hit = slot && slot->used && slot->counter == counter &&
				      strcmp(slot->addr, lc) == 0 ? slot : NULL;
	int n = 0, rc = -1;
	if (!hit)
		acctdb_read_begin(db);   /* the recipient's five or six lookups: one lock */
	int hosted = hit ? hit->hosted : acctdb_domain_exists(db, domain, &err);
	if (hosted < 0) {
		smtp_reply(s, "451 4.3.0 Temporary lookup failure; please try again later");
		c->failed = 1;
		goto out;
	}
	c->m.hosted = hosted;
	if (!hosted && !s->auth_user[0]) {
		smtp_relay_denied(s);
		goto out;
	}
	if (!hosted) {
		add_target_as(c, r->addr, 0);
		if (c->overflow) {
			smtp_reply(s, "452 4.5.3 Too many recipients; send the rest in another message");
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (hit) {
		n = (int)hit->n;
		for (unsigned i = 0; i < hit->n; i++)
			add_target_as(c, hit->t[i].addr, hit->t[i].local);
	} else if ((n = acctdb_resolve(db, lc, add_target, c, &err)) < 0) {
		smtp_reply(s, "451 4.3.0 Temporary lookup failure; please try again later");
		c->failed = 1;
		goto out;
	}
	if (n == 0) {
		smtp_unknown_rcpt(s, r->addr);
		goto out;
	}
	if (!hit)   /* the quotas of the local targets the memo keeps */
		for (unsigned i = 0; i < c->m.n && i < RCPT_MEMO_TARGETS; i++) {
			int64_t q = c->m.t[i].local ? rcpt_quota(s, c->m.t[i].addr) : 0;
			c->failed |= q < 0;
			c->m.t[i].quota = q > 0 ? (uint64_t)q : 0;
		}
	if (c->overflow) {
		smtp_reply(s, "452 4.5.3 Too many recipients after alias expansion; please try "
			      "again later");
		goto out;
	}
	const struct rcpt_memo *m = hit ? hit : &c->m;
	for (unsigned t = tx->ntargets - c->added; t < tx->ntargets; t++) {
		if (!tx->targets[t].local)
			continue;
		int64_t q = -1;
		for (unsigned i = 0; i < m->n && i < RCPT_MEMO_TARGETS && q < 0; i++)
			if (strcmp(m->t[i].addr, tx->targets[t].addr) == 0)
				q = (int64_t)m->t[i].quota;
		if (q < 0 && (q = rcpt_quota(s, tx->targets[t].addr)) < 0)
			q = 0;   /* as before: an unreadable quota does not refuse mail */
		if (smtp_over_quota(s, tx->targets[t].addr, (uint64_t)q)) {
			tx->ntargets -= c->added;
			smtp_reply(s, "452 4.2.2 <%s>: mailbox full; the recipient has to delete some "
				      "mail before more can arrive", r->addr);
			goto out;
		}
	}
	rc = 0;
out:
	if (!hit)
		acctdb_read_end(db);
	/* keep what a complete, error-free lookup said */
	if (!hit && slot && !c->failed && c->m.n <= RCPT_MEMO_TARGETS) {
		c->m.used = 1;
		c->m.counter = counter;
		snprintf(c->m.addr, sizeof(c->m.addr), "%s", lc);
		*slot = c->m;   /* not hosted: no targets were looked up, n stays 0 */
	}
	return rc;
}

/* The sender's limits on one more recipient (sendlimit.c). 0, or -1 refused (replied, the
 * recipient's targets dropped). */
static int rcpt_limits(struct smtp_session *s, struct smtp_rcpt *r, unsigned added)
{
	struct smtp_tx *tx = s->tx;
	s->pending_is_new = -1;
	if (!tx->lim.active)
		return 0;
	int dup = 0, is_new = 0;
	for (unsigned i = 0; i < tx->nrcpts && !dup; i++)
		dup = strcasecmp(tx->rcpts[i].addr, r->addr) == 0;
	char msg[512];
	int lr = sendlimit_rcpt(s->base.w, s->auth_user, &tx->lim, r->addr, dup, &is_new, msg,
				sizeof(msg));
	if (lr != 0) {
		tx->ntargets -= added;
		smtp_reply(s, "%s", msg);
		if (lr == 1)
			sendlimit_refused(s->base.w, s->auth_user, &tx->lim, msg);
		return -1;
	}
	r->is_new = is_new;
	if (!dup)
		s->pending_is_new = is_new;   /* counted by sendlimit_rcpt */
	return 0;
}

/* RCPT TO:<path> [params]. */
static void cmd_rcpt(struct smtp_session *s, char *args)
{
	struct smtp_tx *tx = s->tx;
	if (strncasecmp(args, "TO:", 3) != 0) {
		smtp_syntax(s, "use RCPT TO:<address>");
		return;
	}
	char *p = args + 3;
	while (*p == ' ')
		p++;
	if (tx->nrcpts >= s->base.lc->max_recipients) {
		smtp_reply(s, "452 4.5.3 Too many recipients: the limit is %u per message; send the "
			      "rest in another message", s->base.lc->max_recipients);
		return;
	}
	if (strncasecmp(p, "<postmaster>", 12) == 0) {
		smtp_rcpt_postmaster(s, p + 12);
		return;
	}
	struct addr a;
	const char *end;
	if (rcpt_path(s, p, &a, &end) < 0)
		return;
	if (tx->rcpts == NULL || tx->nrcpts % 8 == 0) {
		void *n = realloc(tx->rcpts, (tx->nrcpts + 8) * sizeof(*tx->rcpts));
		if (n == NULL) {
			smtp_reply(s, "452 4.3.0 Out of memory; please try again later");
			return;
		}
		tx->rcpts = n;
	}
	struct smtp_rcpt *r = &tx->rcpts[tx->nrcpts];
	memset(r, 0, sizeof(*r));
	if (addr_format(&a, r->addr, sizeof(r->addr)) < 0) {
		smtp_reply(s, "501 5.1.3 Recipient address too long");
		return;
	}
	if (smtp_each_param(s, (char *)end, rcpt_param) < 0)
		return;
	struct target_ctx c = { .s = s };
	if (rcpt_targets(s, r, a.domain, &c) < 0 || rcpt_limits(s, r, c.added) < 0)
		return;
	if (s->milter != NULL && !tx->milter_discard) {
		s->pending_targets = c.added;
		smtp_milter_stage(s, MILTER_STAGE_RCPT, r->addr, smtp_rcpt_milter_done);
		return;
	}
	tx->nrcpts++;
	smtp_set_state(s, SMTP_ST_RCPT);
	smtp_reply(s, "250 2.1.5 Recipient OK");
}

/* The milters' verdict on one RCPT: a refusal refuses this recipient only (its delivery
 * targets and its count towards the sending limits are taken back); a discard accepts it and
 * drops the message at its end. */
static void smtp_rcpt_milter_done(struct smtp_session *s, const struct milter_result *res)
{
	struct smtp_tx *tx = s->tx;
	if (smtp_milter_421(s, res))
		return;
	if (res->verdict == MILTER_REJECT || res->verdict == MILTER_TEMPFAIL) {
		tx->ntargets -= s->pending_targets;
		if (s->pending_is_new >= 0) {
			tx->lim.tx_rcpts--;
			tx->lim.tx_new -= (unsigned)s->pending_is_new;
		}
		smtp_reply(s, "%s", res->reply);
		return;
	}
	if (res->verdict == MILTER_DISCARD)
		tx->milter_discard = 1;
	tx->nrcpts++;
	smtp_set_state(s, SMTP_ST_RCPT);
	smtp_reply(s, "250 2.1.5 Recipient OK");
}

/* DATA. */
static void cmd_data(struct smtp_session *s, char *args)
{
	if (*args) {
		smtp_syntax(s, "DATA takes no arguments");
		return;
	}
	if (s->tx->chunking) {
		smtp_reply(s, "503 5.5.1 DATA cannot follow BDAT in one transaction");
		return;
	}
	if (smtp_data_begin(s) < 0)
		return;
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	smtp_set_state(s, SMTP_ST_DATA);
}

/* BDAT size [LAST]. */
static void cmd_bdat(struct smtp_session *s, char *args)
{
	char *end;
	if (*args < '0' || *args > '9') {
		smtp_syntax(s, "use BDAT <size> [LAST]");
		return;
	}
	errno = 0;
	unsigned long long n = strtoull(args, &end, 10);
	int last = 0;
	if (errno) {
		smtp_syntax(s, "chunk size out of range");
		smtp_session_close(s, "bad BDAT size");   /* cannot know where the chunk ends */
		return;
	}
	while (*end == ' ')
		end++;
	if (strcasecmp(end, "LAST") == 0)
		last = 1;
	else if (*end != '\0') {
		smtp_syntax(s, "use BDAT <size> [LAST]");
		smtp_session_close(s, "bad BDAT arguments");
		return;
	}
	if (s->st != SMTP_ST_RCPT) {
		/* the chunk is on its way anyway: read and drop it, then refuse */
		if (s->tx == NULL) {
			s->tx = calloc(1, sizeof(*s->tx));
			if (s->tx == NULL) {
				smtp_session_close(s, "out of memory");
				return;
			}
			s->tx->fd = -1;
		}
		s->tx->bdat_failed = 1;
	}
	if (!s->tx->chunking && !s->tx->bdat_failed) {
		if (smtp_data_begin(s) < 0)
			s->tx->bdat_failed = 1;
		s->tx->chunking = 1;
	}
	s->tx->chunking = 1;
	s->bdat_remaining = n;
	s->bdat_last = last;
	smtp_set_state(s, SMTP_ST_BDAT);
}

static void smtp_bad_sequence(struct smtp_session *s, const char *verb);

/* BURL imap-url [LAST] (RFC 4468): a chunk of the message taken from the IMAP store. */
static void cmd_burl(struct smtp_session *s, char *args)
{
	char *url = args, *end = args;
	while (*end && *end != ' ')
		end++;
	int last = 0;
	if (*end) {
		*end++ = '\0';
		while (*end == ' ')
			end++;
		if (strcasecmp(end, "LAST") == 0)
			last = 1;
		else if (*end != '\0')
			url = "";
	}
	if (*url == '\0') {
		smtp_syntax(s, "use BURL <imap URL> [LAST]");
		return;
	}
	if (s->st != SMTP_ST_RCPT) {
		smtp_bad_sequence(s, "BURL");
		return;
	}
	if (s->tx->bdat_failed) {
		smtp_reply(s, "503 5.5.1 An earlier part of this message was refused: send RSET "
			      "and the message again");
		smtp_count_error(s);
		if (last) {
			smtp_tx_free(&s->tx);
			smtp_set_state(s, SMTP_ST_READY);
		}
		return;
	}
	if (!s->tx->chunking) {
		if (smtp_data_begin(s) < 0) {   /* replied 451 */
			s->tx->bdat_failed = 1;
			if (last) {
				smtp_tx_free(&s->tx);
				smtp_set_state(s, SMTP_ST_READY);
			}
			return;
		}
		s->tx->chunking = 1;
	}
	smtp_burl(s, url, last);
}

/* RSET. */
static void cmd_rset(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_tx_free(&s->tx);
	if (s->st != SMTP_ST_GREET)
		smtp_set_state(s, SMTP_ST_READY);
	smtp_reply(s, "250 2.0.0 OK");
}

static void cmd_noop(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_reply(s, "250 2.0.0 OK");
}

static void cmd_quit(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_reply(s, "221 2.0.0 %s closing connection", s->base.w->cfg->hostname);
	smtp_session_close(s, "quit");
}

static void cmd_vrfy(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_reply(s, "252 2.5.2 Cannot verify the user, but will accept the message and attempt "
		      "delivery");
}

static void cmd_expn(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_reply(s, "502 5.5.1 EXPN is not available");
}

static void cmd_help(struct smtp_session *s, char *args)
{
	(void)args;
	smtp_reply(s, "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP "
		      "QUIT STARTTLS AUTH BURL");
}

/* ---- AUTH ---- */

/* Loop thread: the outcome of a login check. */
static void auth_done(void *ctx, const struct auth_result *r)
{
	struct smtp_session *s = ctx;
	s->base.job_running = 0;
	if (s->base.closing) {
		session_reap_later(&s->base);
		return;
	}
	smtp_set_state(s, SMTP_ST_READY);
	if (r->result == 1) {
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", r->user);
		metrics_login(MP_SMTP, 1);
		log_info("sess=%016llx proto=smtp event=login result=ok user=%s ip=%s",
			 (unsigned long long)s->base.id, s->auth_user, s->base.peer_ip);
		smtp_reply(s, "235 2.7.0 Authentication successful");
	} else if (r->result == 0) {
		char esc[128];
		metrics_login(MP_SMTP, 0);
		log_info("sess=%016llx proto=smtp event=login result=failed reason=\"%s\" user=\"%s\" "
			 "ip=%s", (unsigned long long)s->base.id, r->reason,
			 log_escape(r->user, strlen(r->user), esc, sizeof(esc)), s->base.peer_ip);
		smtp_reply(s, "535 5.7.8 Authentication failed: the user name or password is wrong "
			      "(the user name is your full email address)");
		s->auth_failures++;
		if (session_login_failed(&s->base)) {
			smtp_reply(s, "421 4.7.0 %s Too many failed logins; closing the connection",
				   s->base.w->cfg->hostname);
			smtp_session_close(s, "too many failed logins");
		} else {
			smtp_count_error(s);
		}
	} else {
		log_warn("sess=%016llx proto=smtp event=login result=tempfail reason=\"%s\"",
			 (unsigned long long)s->base.id, r->reason);
		smtp_reply(s, "454 4.7.0 Temporary authentication failure; please try again later");
	}
	if (!s->base.closing)
		conn_pause_read(&s->conn, 0);
	conn_flush(&s->conn);
}

/* Hand the credentials to the pool; the session waits. */
static void auth_submit(struct smtp_session *s, const char *user, const char *password)
{
	struct auth_env env;
	session_auth_env(&s->base, &env);
	if (auth_verify_submit(&env, user, password, auth_done, s) < 0) {
		smtp_reply(s, "454 4.7.0 Temporary authentication failure; please try again later");
		return;
	}
	s->base.job_running = 1;
	smtp_set_state(s, SMTP_ST_BUSY);
	conn_pause_read(&s->conn, 1);
}

/* A complete PLAIN response: authzid NUL authcid NUL passwd. */
static void auth_plain(struct smtp_session *s, const char *b64)
{
	char user[SMTP_ADDR_MAX], pw[1024];
	int r = sasl_plain_decode(b64, user, sizeof(user), pw, sizeof(pw));
	smtp_set_state(s, SMTP_ST_READY);
	if (r == -2) {
		smtp_reply(s, "535 5.7.8 Authentication failed: logging in on behalf of another user "
			      "is not allowed");
		smtp_count_error(s);
	} else if (r < 0) {
		smtp_reply(s, "501 5.5.2 Cannot decode the AUTH PLAIN response");
		smtp_count_error(s);
	} else {
		auth_submit(s, user, pw);
	}
	explicit_bzero(pw, sizeof(pw));
}

/* A SASL continuation line. */
static void auth_continue(struct smtp_session *s, const char *line)
{
	if (strcmp(line, "*") == 0) {
		smtp_auth_clear(s);
		smtp_set_state(s, SMTP_ST_READY);
		smtp_reply(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	if (s->auth_mech == 1) {
		s->auth_mech = 0;
		smtp_set_state(s, SMTP_ST_READY);
		auth_plain(s, line);
		return;
	}
	/* LOGIN */
	char buf[SMTP_AUTH_LINE_MAX];
	if (sasl_login_decode(line, buf, sizeof(buf)) < 0 || strlen(buf) >= SMTP_ADDR_MAX) {
		smtp_auth_clear(s);
		smtp_set_state(s, SMTP_ST_READY);
		smtp_reply(s, "501 5.5.2 Cannot decode the AUTH LOGIN response (invalid base64)");
		smtp_count_error(s);
		return;
	}
	if (s->auth_step == 0) {
		memcpy(s->auth_login_user, buf, strlen(buf) + 1);   /* length checked above */
		s->auth_step = 1;
		smtp_reply(s, "334 UGFzc3dvcmQ6");
		return;
	}
	char user[SMTP_ADDR_MAX];
	snprintf(user, sizeof(user), "%s", s->auth_login_user);
	smtp_auth_clear(s);
	smtp_set_state(s, SMTP_ST_READY);
	auth_submit(s, user, buf);
	explicit_bzero(buf, sizeof(buf));
}

/* AUTH mechanism [initial-response]. */
static void cmd_auth(struct smtp_session *s, char *args)
{
	if (s->auth_user[0]) {
		smtp_reply(s, "503 5.5.1 Already authenticated");
		return;
	}
	char *ir = strchr(args, ' ');
	if (ir)
		*ir++ = '\0';
	if (strcasecmp(args, "PLAIN") == 0) {
		if (ir && *ir) {
			auth_plain(s, ir);
			return;
		}
		s->auth_mech = 1;
		smtp_set_state(s, SMTP_ST_AUTH);
		smtp_reply(s, "334 ");
		return;
	}
	if (strcasecmp(args, "LOGIN") == 0) {
		s->auth_mech = 2;
		s->auth_step = 0;
		smtp_set_state(s, SMTP_ST_AUTH);
		if (ir && *ir) {
			auth_continue(s, ir);
			return;
		}
		smtp_reply(s, "334 VXNlcm5hbWU6");
		return;
	}
	char mech[64];
	snprintf(mech, sizeof(mech), "mechanism %.30s", args);
	session_diag(&s->base, DIAG_BAD_MECH, NULL, s->base.tls, mech);
	smtp_reply(s, "504 5.5.4 Unsupported authentication mechanism; use PLAIN or LOGIN");
	smtp_count_error(s);
}

/* AUTH refused before any check (before TLS, on port 25): record it for the login diagnostics,
 * with the user name when an AUTH PLAIN initial response carries one. */
static void smtp_login_refused(struct smtp_session *s, const char *args, int kind,
			       const char *detail)
{
	char user[SMTP_ADDR_MAX] = "", pw[1024];
	const char *ir = strchr(args, ' ');
	if (ir && strncasecmp(args, "PLAIN ", 6) == 0 &&
	    sasl_plain_decode(ir + 1, user, sizeof(user), pw, sizeof(pw)) < 0)
		user[0] = '\0';
	explicit_bzero(pw, sizeof(pw));
	session_diag(&s->base, kind, user, s->base.tls, detail);
}

/* ---- dispatch ---- */

static const struct smtp_cmd smtp_cmds[] = {
	/* verb        allowed states                            needs              handler */
	{ "EHLO",     ST_ANY_CMD,                                0,                 cmd_ehlo },
	{ "HELO",     ST_ANY_CMD,                                0,                 cmd_helo },
	{ "STARTTLS", ST_NOTX,                                   NEED_NOT_TLS,      cmd_starttls },
	{ "AUTH",     1u << SMTP_ST_READY,                       NEED_SUBMISSION | NEED_TLS_IF_SUBM,
								  cmd_auth },
	{ "MAIL",     1u << SMTP_ST_READY,                       NEED_TLS_IF_SUBM | NEED_AUTH_IF_SUBM,
								  cmd_mail },
	{ "RCPT",     (1u << SMTP_ST_MAIL) | (1u << SMTP_ST_RCPT), 0,               cmd_rcpt },
	{ "DATA",     1u << SMTP_ST_RCPT,                        0,                 cmd_data },
	{ "BDAT",     ST_ANY_CMD,                                0,                 cmd_bdat },
	{ "BURL",     ST_ANY_CMD,                                NEED_SUBMISSION | NEED_TLS_IF_SUBM |
								 NEED_AUTH_IF_SUBM,  cmd_burl },
	{ "RSET",     ST_ANY_CMD,                                0,                 cmd_rset },
	{ "NOOP",     ST_ANY_CMD,                                0,                 cmd_noop },
	{ "QUIT",     ST_ANY_CMD,                                0,                 cmd_quit },
	{ "VRFY",     ST_ANY_CMD,                                0,                 cmd_vrfy },
	{ "EXPN",     ST_ANY_CMD,                                0,                 cmd_expn },
	{ "HELP",     ST_ANY_CMD,                                0,                 cmd_help },
};

/* Refuse a command given in the wrong state, saying what comes first. */
static void smtp_bad_sequence(struct smtp_session *s, const char *verb)
{
	if (s->st == SMTP_ST_GREET)
		smtp_reply(s, "503 5.5.1 Send EHLO (or HELO) first");
	else if (strcmp(verb, "MAIL") == 0)
		smtp_reply(s, "503 5.5.1 Nested MAIL command: finish or RSET the current message");
	else if (strcmp(verb, "RCPT") == 0)
		smtp_reply(s, "503 5.5.1 Send MAIL FROM before RCPT TO");
	else if (strcmp(verb, "DATA") == 0 && s->st == SMTP_ST_MAIL)
		smtp_reply(s, "554 5.5.1 No valid recipients");
	else if (strcmp(verb, "DATA") == 0)
		smtp_reply(s, "503 5.5.1 Send MAIL FROM and RCPT TO before DATA");
	else if (strcmp(verb, "STARTTLS") == 0 || strcmp(verb, "AUTH") == 0)
		smtp_reply(s, "503 5.5.1 %s is not allowed during a mail transaction", verb);
	else
		smtp_reply(s, "503 5.5.1 Bad sequence of commands");
	smtp_count_error(s);
}

/* Run one command line. */
static void smtp_dispatch(struct smtp_session *s, char *line)
{
	char *args = line;
	while (*args && *args != ' ')
		args++;
	size_t vlen = (size_t)(args - line);
	if (*args)
		*args++ = '\0';
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		const struct smtp_cmd *c = &smtp_cmds[i];
		if (strlen(c->verb) != vlen || strcasecmp(c->verb, line) != 0)
			continue;
		const struct listener_conf *lc = s->base.lc;
		s->base.cmd_ns = metrics_now_ns();
		if (log_debug_enabled())
			log_debug("sess=%016llx proto=smtp cmd=%s", (unsigned long long)s->base.id,
				  c->verb);
		if (!(c->states & (1u << s->st))) {
			smtp_bad_sequence(s, c->verb);
			return;
		}
		if ((c->needs & NEED_NOT_TLS) && s->base.tls) {
			smtp_reply(s, "503 5.5.1 TLS is already active");
			smtp_count_error(s);
			return;
		}
		if ((c->needs & NEED_SUBMISSION) && !lc->submission) {
			if (c->fn == cmd_auth)
				smtp_login_refused(s, args, DIAG_WRONG_PORT, "AUTH on the MX port");
			smtp_reply(s, "%s 5.5.1 %s is not offered on this port; log in on the "
				      "submission port %u (STARTTLS) or %u (SSL/TLS)",
				   c->fn == cmd_auth ? "503" : "502", c->verb,
				   s->base.w->cfg->l[LST_SUBMISSION].port,
				   s->base.w->cfg->l[LST_SUBMISSIONS].port);
			smtp_count_error(s);
			return;
		}
		if ((c->needs & NEED_TLS_IF_SUBM) && lc->submission && !s->base.tls) {
			if (c->fn == cmd_auth)
				smtp_login_refused(s, args, DIAG_PLAINTEXT, "AUTH before STARTTLS");
			smtp_reply(s, "530 5.7.0 Must issue a STARTTLS command first: turn on "
				      "encryption (STARTTLS) in your mail program");
			smtp_count_error(s);
			return;
		}
		if ((c->needs & NEED_AUTH_IF_SUBM) && lc->submission && !s->auth_user[0]) {
			smtp_reply(s, "530 5.7.0 Authentication required: log in with your full email "
				      "address and password");
			smtp_count_error(s);
			return;
		}
		c->fn(s, args);
		return;
	}
	char esc[128];
	log_info("sess=%016llx proto=smtp event=unknown-command cmd=\"%s\"",
		 (unsigned long long)s->base.id, log_escape(line, strlen(line), esc, sizeof(esc)));
	smtp_reply(s, "500 5.5.2 Command not recognized");
	smtp_count_error(s);
}

/* Work through buffered input: command lines, SASL lines, message data. */
static void smtp_process(struct smtp_session *s)
{
	struct conn *c = &s->conn;
	static char line[SMTP_AUTH_LINE_MAX + 1];
	while (!s->base.closing && c->fd >= 0) {
		if (s->greet_pending) {
			if (c->in.len > 0)
				smtp_early_talker(s);
			break;
		}
		if (s->st == SMTP_ST_BUSY || c->tls_state == CONN_TLS_HANDSHAKE ||
		    c->want_tls_after_flush || s->delayed_reply != NULL)
			break;
		if (conn_out_pending(c) >= SMTP_OUT_HIWAT) {
			/* a client pipelining commands without reading the replies: take no more
			 * input until the output drains (the input buffer then fills and reading
			 * stops), so what it makes us hold stays bounded */
			c->want_write = 1;
			break;
		}
		if (s->st == SMTP_ST_DATA || s->st == SMTP_ST_BDAT) {
			size_t n = s->st == SMTP_ST_DATA ? smtp_data_feed(s, c->in.data, c->in.len) :
							  smtp_bdat_feed(s, c->in.data, c->in.len);
			buf_consume(&c->in, n);
			if (n > 0)
				smtp_arm_timer(s);
			if (n == 0 && s->st != SMTP_ST_BUSY && s->st != SMTP_ST_READY &&
			    s->st != SMTP_ST_RCPT)
				break;
			continue;
		}
		const char *l;
		size_t len, consumed;
		s->lr.max = s->st == SMTP_ST_AUTH ? SMTP_AUTH_LINE_MAX : s->base.lc->line_length_limit;
		enum rl r = linereader_next(&s->lr, c->in.data, c->in.len, &l, &len, &consumed);
		if (r == RL_MORE) {
			buf_consume(&c->in, consumed);
			if (consumed == 0)
				break;
			continue;
		}
		if (r == RL_TOOLONG) {
			buf_consume(&c->in, consumed);
			smtp_reply(s, "500 5.5.2 Line too long: the limit is %zu octets",
				   s->lr.max);
			if (s->st == SMTP_ST_AUTH) {
				smtp_auth_clear(s);
				smtp_set_state(s, SMTP_ST_READY);
			}
			smtp_count_error(s);
			continue;
		}
		int has_nul = memchr(l, '\0', len) != NULL;
		memcpy(line, l, len);
		line[len] = '\0';
		buf_consume(&c->in, consumed);
		smtp_arm_timer(s);
		if (has_nul) {
			smtp_reply(s, "500 5.5.2 NUL characters are not allowed in commands");
			smtp_count_error(s);
			continue;
		}
		if (s->st == SMTP_ST_AUTH)
			auth_continue(s, line);
		else if (session_http_line(&s->base, c, line, len))
			smtp_session_close(s, "HTTP request on a mail port");
		else
			smtp_dispatch(s, line);
		explicit_bzero(line, len);
	}
}
