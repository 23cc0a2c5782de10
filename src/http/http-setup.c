/* http-setup.c - the /setup page: the user types an address and reads the exact settings, with
 * step-by-step instructions for the common mail programs (the one the browser runs on first),
 * a link to the Apple profile and its QR code. English or Italian by Accept-Language.
 * Self-contained: inline CSS, no scripts, no external resources.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http-private.h"
#include "qr.h"

/* Italian when it comes before English in Accept-Language (q-values honoured). */
enum http_lang http_pick_lang(const char *al)
{
	double best_q = -1;
	enum http_lang best = LANG_EN;
	for (const char *p = al; p && *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *e = p + strcspn(p, ",");
		char tag[16];
		size_t tl = strcspn(p, ";, ");
		if (tl >= sizeof(tag))
			tl = sizeof(tag) - 1;
		memcpy(tag, p, tl);
		tag[tl] = '\0';
		double q = 1.0;
		const char *qp = strstr(p, ";q=");
		if (qp && qp < e)
			q = strtod(qp + 3, NULL);
		int it = strncasecmp(tag, "it", 2) == 0 && (tag[2] == '\0' || tag[2] == '-');
		int en = strncasecmp(tag, "en", 2) == 0 && (tag[2] == '\0' || tag[2] == '-');
		if ((it || en) && q > 0 && q > best_q) {
			best_q = q;
			best = it ? LANG_IT : LANG_EN;
		}
		p = e;
	}
	return best;
}

enum http_device http_pick_device(const char *ua)
{
	if (strstr(ua, "iPhone") || strstr(ua, "iPad") || strstr(ua, "iPod"))
		return DEV_IPHONE;
	if (strstr(ua, "Android"))
		return DEV_ANDROID;
	if (strstr(ua, "Macintosh") || strstr(ua, "Mac OS X"))
		return DEV_MAC;
	if (strstr(ua, "Windows"))
		return DEV_WINDOWS;
	return DEV_OTHER;
}

/* Text in both languages. */
struct tr {
	const char *en, *it;
};
#define T(lang, tr) ((lang) == LANG_IT ? (tr).it : (tr).en)

static const struct tr t_title = { "Set up your mail", "Configura la posta" };
static const struct tr t_intro = {
	"Type your e-mail address to see the settings for your mail program. Most programs need only "
	"your address and password: they find the rest by themselves.",
	"Scrivi il tuo indirizzo e-mail per vedere le impostazioni del tuo programma di posta. Quasi "
	"tutti i programmi chiedono solo indirizzo e password: il resto lo trovano da soli." };
static const struct tr t_addr = { "E-mail address", "Indirizzo e-mail" };
static const struct tr t_show = { "Show settings", "Mostra impostazioni" };
static const struct tr t_settings = { "Settings for", "Impostazioni per" };
static const struct tr t_server = { "Server", "Server" };
static const struct tr t_port = { "Port", "Porta" };
static const struct tr t_enc = { "Encryption", "Crittografia" };
static const struct tr t_user = { "User name", "Nome utente" };
static const struct tr t_pass = { "Password: the one of your mailbox (it never appears on this page).",
	"Password: quella della tua casella (non compare mai in questa pagina)." };
static const struct tr t_out = { "Outgoing mail (SMTP)", "Posta in uscita (SMTP)" };
static const struct tr t_auth = { "Authentication: normal password, required for outgoing mail too.",
	"Autenticazione: password normale, richiesta anche per la posta in uscita." };
static const struct tr t_apple = { "Apple profile", "Profilo Apple" };
static const struct tr t_apple_txt = {
	"On an iPhone, iPad or Mac, open this link (or scan the code with the camera) and install the "
	"profile: you will be asked only for your password.",
	"Su iPhone, iPad o Mac apri questo link (o inquadra il codice con la fotocamera) e installa il "
	"profilo: ti verrà chiesta solo la password." };
static const struct tr t_apple_link = { "Download the profile", "Scarica il profilo" };
static const struct tr t_guides = { "Step by step", "Passo per passo" };
static const struct tr t_other = { "Other programs", "Altri programmi" };
static const struct tr t_other_txt = {
	"Choose IMAP (keeps mail on the server, for several devices) or POP3 (downloads it), then copy "
	"the settings above.",
	"Scegli IMAP (la posta resta sul server, per più dispositivi) o POP3 (la scarica), poi copia le "
	"impostazioni qui sopra." };

/* A guide: heading and steps; "%A" in a step is replaced by the address. */
struct guide {
	enum http_device dev;
	struct tr name;
	struct tr steps[6];
};

static const struct guide guides[] = {
	{ DEV_WINDOWS, { "Outlook (Windows, Mac, new Outlook)", "Outlook (Windows, Mac, nuovo Outlook)" }, {
		{ "Open Outlook and choose File, Add account (in the new Outlook: Settings, Accounts, Add account).",
		  "Apri Outlook e scegli File, Aggiungi account (nel nuovo Outlook: Impostazioni, Account, Aggiungi account)." },
		{ "Type %A and choose Connect.", "Scrivi %A e scegli Connetti." },
		{ "If asked for the account type, choose IMAP.", "Se chiede il tipo di account, scegli IMAP." },
		{ "Type your password: Outlook finds the servers by itself. If not, use the settings above.",
		  "Scrivi la password: Outlook trova i server da solo. Altrimenti usa le impostazioni qui sopra." } } },
	{ DEV_OTHER, { "Thunderbird (Windows, Mac, Linux)", "Thunderbird (Windows, Mac, Linux)" }, {
		{ "Open Thunderbird and choose Account Settings, Account Actions, Add Mail Account.",
		  "Apri Thunderbird e scegli Impostazioni account, Azioni account, Aggiungi account di posta." },
		{ "Type your name, %A and your password, then Continue.",
		  "Scrivi il tuo nome, %A e la password, poi Continua." },
		{ "Thunderbird finds the settings (IMAP, SSL/TLS): choose Done.",
		  "Thunderbird trova le impostazioni (IMAP, SSL/TLS): scegli Fatto." } } },
	{ DEV_IPHONE, { "Apple Mail on iPhone and iPad", "Mail di Apple su iPhone e iPad" }, {
		{ "Easiest: open the Apple profile link in Safari (on this page), then Settings, Profile Downloaded, Install.",
		  "Il modo più semplice: apri in Safari il link al profilo Apple in questa pagina, poi Impostazioni, Profilo scaricato, Installa." },
		{ "Or by hand: Settings, Apps, Mail, Mail Accounts, Add Account, Other, Add Mail Account.",
		  "Oppure a mano: Impostazioni, App, Mail, Account, Aggiungi account, Altro, Aggiungi account Mail." },
		{ "Type %A and your password, choose IMAP and fill in the servers above, with the full address as user name.",
		  "Scrivi %A e la password, scegli IMAP e inserisci i server qui sopra, con l'indirizzo completo come nome utente." } } },
	{ DEV_MAC, { "Apple Mail on the Mac", "Mail di Apple sul Mac" }, {
		{ "Easiest: open the Apple profile link on this page, then System Settings, Privacy & Security, Profiles, Install.",
		  "Il modo più semplice: apri il link al profilo Apple in questa pagina, poi Impostazioni di Sistema, Privacy e sicurezza, Profili, Installa." },
		{ "Or in Mail: Mail, Add Account, Other Mail Account, then type your name, %A and your password.",
		  "Oppure in Mail: Mail, Aggiungi account, Altro account Mail, poi scrivi nome, %A e password." },
		{ "If Mail cannot find the servers, type the ones above (IMAP).",
		  "Se Mail non trova i server, inserisci quelli qui sopra (IMAP)." } } },
	{ DEV_ANDROID, { "Android (Gmail, Thunderbird for Android, K-9 Mail)", "Android (Gmail, Thunderbird per Android, K-9 Mail)" }, {
		{ "Gmail app: Settings, Add account, Other. Thunderbird for Android: Add account.",
		  "App Gmail: Impostazioni, Aggiungi account, Altro. Thunderbird per Android: Aggiungi account." },
		{ "Type %A, then Next, and your password.", "Scrivi %A, poi Avanti, e la password." },
		{ "Choose Personal (IMAP); if asked, use the servers above with Security SSL/TLS.",
		  "Scegli Personale (IMAP); se richiesto, usa i server qui sopra con Sicurezza SSL/TLS." } } },
};

static void esc(struct buf *b, const char *s)
{
	http_esc_xml(b, s);
}

/* One service: server, port, encryption and user name, with the STARTTLS alternative. */
static void service(struct buf *b, enum http_lang lang, const char *key, const char *title,
		    const char *host, unsigned tls_port, unsigned starttls_port, const char *user)
{
	unsigned port = tls_port ? tls_port : starttls_port;
	if (port == 0)
		return;
	buf_appendf(b, "<div class=\"svc\" id=\"%s\"><h3>%s</h3><dl><dt>%s</dt><dd class=\"v\" "
		       "data-k=\"%s-server\">", key, title, T(lang, t_server), key);
	esc(b, host);
	buf_appendf(b, "</dd><dt>%s</dt><dd class=\"v\" data-k=\"%s-port\">%u</dd><dt>%s</dt>"
		       "<dd data-k=\"%s-encryption\">%s</dd><dt>%s</dt><dd class=\"v\" "
		       "data-k=\"%s-username\">", T(lang, t_port), key, port, T(lang, t_enc), key,
		    tls_port ? "SSL/TLS" : "STARTTLS", T(lang, t_user), key);
	esc(b, user);
	buf_appendstr(b, "</dd></dl>");
	if (tls_port && starttls_port)
		buf_appendf(b, "<p class=\"alt\">%s <span data-k=\"%s-starttls-port\">%u</span> "
			       "%s STARTTLS.</p>", lang == LANG_IT ? "Oppure: porta" : "Or: port", key,
			    starttls_port, lang == LANG_IT ? "con" : "with");
	buf_appendstr(b, "</div>\n");
}

static void guide(struct buf *b, enum http_lang lang, const struct guide *g, const char *addr)
{
	buf_appendstr(b, "<section class=\"guide\"><h3>");
	esc(b, T(lang, g->name));
	buf_appendstr(b, "</h3><ol>");
	for (size_t i = 0; i < sizeof(g->steps) / sizeof(g->steps[0]) && g->steps[i].en; i++) {
		const char *s = T(lang, g->steps[i]);
		const char *a = strstr(s, "%A");
		buf_appendstr(b, "<li>");
		if (a) {
			buf_append(b, s, (size_t)(a - s));
			buf_appendstr(b, "<b>");
			esc(b, addr);
			buf_appendstr(b, "</b>");
			buf_appendstr(b, a + 2);
		} else {
			buf_appendstr(b, s);
		}
		buf_appendstr(b, "</li>");
	}
	buf_appendstr(b, "</ol></section>\n");
}

/* The Apple profile: link and QR code. */
static int apple_section(struct buf *b, enum http_lang lang, const char *profile_url)
{
	int rc = buf_appendf(b, "<section class=\"card\" id=\"apple\"><h2>%s</h2><p>%s</p>"
			     "<p><a id=\"profile\" href=\"", T(lang, t_apple), T(lang, t_apple_txt));
	esc(b, profile_url);
	rc |= buf_appendf(b, "\">%s</a></p>\n", T(lang, t_apple_link));
	struct qr *q = malloc(sizeof(*q));
	if (q != NULL && qr_encode(profile_url, strlen(profile_url), q) == 0) {
		rc |= buf_appendstr(b, "<div class=\"qr\" id=\"qr\">");
		rc |= qr_svg(q, b, 280);
		rc |= buf_appendstr(b, "</div>\n");
	}
	free(q);
	rc |= buf_appendstr(b, "</section>\n");
	return rc;
}

int http_setup_page(struct buf *b, const struct mail_settings *ms, const char *typed,
		    const char *err, enum http_lang lang, enum http_device dev,
		    const char *profile_url)
{
	int rc = 0;
	rc |= buf_appendf(b, "<!DOCTYPE html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		"<title>%s</title><style>"
		"body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;"
		"padding:1rem;background:#f4f5f7;color:#1d1f23;line-height:1.45}"
		"main{max-width:46rem;margin:auto}h1{font-size:1.5rem}"
		"form{display:flex;flex-wrap:wrap;gap:.5rem;margin:1rem 0}"
		"input{flex:1 1 14rem;font-size:1.1rem;padding:.6rem;border:1px solid #999;border-radius:.4rem}"
		"button{font-size:1.1rem;padding:.6rem 1rem;border:0;border-radius:.4rem;background:#1a5fb4;color:#fff}"
		".card{background:#fff;border-radius:.6rem;padding:1rem;margin:1rem 0;box-shadow:0 1px 3px #0002}"
		"dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem .8rem;margin:.4rem 0}"
		"dt{color:#555}dd{margin:0}.svc{border-top:1px solid #ddd;padding-top:.4rem}"
		".svc h3{font-size:1.05rem;margin:.4rem 0}.alt{color:#555;margin:.2rem 0 .6rem}"
		".v{font-family:ui-monospace,monospace;word-break:break-all}"
		".err{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:.4rem}"
		".qr{display:block;margin:1rem auto;max-width:100%%;height:auto}"
		".guide h3{margin-bottom:.2rem}a{color:#1a5fb4}"
		"</style></head><body><main>\n",
		lang == LANG_IT ? "it" : "en", T(lang, t_title));
	rc |= buf_appendf(b, "<h1>%s</h1><p>%s</p>\n", T(lang, t_title), T(lang, t_intro));
	rc |= buf_appendf(b, "<form method=\"get\" action=\"/setup\"><label for=\"email\" hidden>%s</label>"
			     "<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" "
			     "placeholder=\"%s\" value=\"", T(lang, t_addr), T(lang, t_addr));
	esc(b, typed);
	rc |= buf_appendf(b, "\"><button type=\"submit\">%s</button></form>\n", T(lang, t_show));
	if (err) {
		rc |= buf_appendstr(b, "<p class=\"err\" id=\"error\">");
		esc(b, err);
		rc |= buf_appendstr(b, "</p>\n");
	}
	if (ms != NULL) {
		const char *a = ms->address;
		rc |= buf_appendf(b, "<section class=\"card\" id=\"settings\"><h2>%s <span class=\"v\">",
				  T(lang, t_settings));
		esc(b, a);
		rc |= buf_appendstr(b, "</span></h2>\n");
		service(b, lang, "imap", lang == LANG_IT ? "IMAP &mdash; posta in arrivo (consigliato)" :
			"IMAP &mdash; incoming mail (recommended)", ms->imap_host, ms->imaps, ms->imap, a);
		service(b, lang, "pop3", lang == LANG_IT ? "POP3 &mdash; posta in arrivo (scaricata)" :
			"POP3 &mdash; incoming mail (downloaded)", ms->pop3_host, ms->pop3s, ms->pop3, a);
		service(b, lang, "smtp", T(lang, t_out), ms->smtp_host, ms->submissions,
			ms->submission, a);
		rc |= buf_appendf(b, "<p>%s</p>", T(lang, t_auth));
		rc |= buf_appendf(b, "<p>%s</p></section>\n", T(lang, t_pass));
		/* on Apple devices the profile is the quickest way: show it before the guides */
		if (dev == DEV_IPHONE || dev == DEV_MAC)
			rc |= apple_section(b, lang, profile_url);
		/* the guides, the one for this device first */
		rc |= buf_appendf(b, "<section class=\"card\" id=\"guides\"><h2>%s</h2>\n", T(lang, t_guides));
		size_t ng = sizeof(guides) / sizeof(guides[0]);
		for (size_t i = 0; i < ng; i++)
			if (guides[i].dev == dev)
				guide(b, lang, &guides[i], a);
		for (size_t i = 0; i < ng; i++)
			if (guides[i].dev != dev)
				guide(b, lang, &guides[i], a);
		rc |= buf_appendf(b, "<section class=\"guide\"><h3>%s</h3><p>%s</p></section></section>\n",
				  T(lang, t_other), T(lang, t_other_txt));
		if (dev != DEV_IPHONE && dev != DEV_MAC)
			rc |= apple_section(b, lang, profile_url);
	}
	rc |= buf_appendstr(b, "</main></body></html>\n");
	return rc ? -1 : 0;
}
