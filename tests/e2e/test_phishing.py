"""Issue 12, phishing defences: mail arriving on port 25 for our users that imitates the
provider or a hosted domain gets an X-Postino-Phishing field, a subject tag and a warning line
(as configured); clean mail, the provider's own mail, a genuine IDN in one script and a second
message from a known sender do not. Sent with smtplib to port 25, read back with imaplib.
"""
import base64
import email
import email.policy
import imaplib
import os

import pytest

from conftest import USERS, finish_server, knows_setting, start_server
from smtphelp import SMTP

CAROL = "carol@example.test"
BOB = "bob@example.test"
ALICE = "alice@example.test"
TAG = "[Suspicious]"
WARNING = "WARNING from your mail provider: this message shows signs of phishing."


def conf(server, **extra):
    """Phishing settings for a test server, only those the binary knows (the old main must
    still start, and then fail on what it does not do)."""
    # SPF/DKIM/DMARC (test_inbound_auth.py) stay off here: no DNS for the made-up sender
    # domains, and the phishing marks are looked at alone
    want = {"phishing_brand_names": "Example Provider, TIM", "inbound_auth": "no"}
    want.update(extra)
    return "".join("%s = %s\n" % (k, v) for k, v in want.items()
                   if knows_setting(server.data, k))


@pytest.fixture(scope="module")
def srv(workdir, pki, server):
    s = start_server(os.path.join(workdir, "phish"), pki,
                     extra_conf=conf(server, smtp_greet_pause="0"))
    yield s
    finish_server(s)


@pytest.fixture(scope="module")
def srv_subject(workdir, pki, server):
    s = start_server(os.path.join(workdir, "phish-subject"), pki,
                     extra_conf=conf(server, smtp_greet_pause="0", phishing_mark="subject",
                                     phishing_subject_tag="[Forse phishing]"))
    yield s
    finish_server(s)


@pytest.fixture(scope="module")
def srv_header(workdir, pki, server):
    s = start_server(os.path.join(workdir, "phish-header"), pki,
                     extra_conf=conf(server, smtp_greet_pause="0", phishing_mark="header"))
    yield s
    finish_server(s)


def message(token, from_, extra=(), subject=None, body=None, ctype=None):
    """A message as bytes: From, To, Subject (with the token), Message-ID, extra lines."""
    lines = ["From: " + from_, "To: " + CAROL,
             "Subject: " + (subject if subject is not None else "Your account " + token),
             "Message-ID: <%s@sender.test>" % token, "Date: Sun, 06 Dec 2026 04:00:00 +0000"]
    lines += list(extra)
    if ctype:
        lines += ["MIME-Version: 1.0"] + list(ctype)
    if body is None:
        body = "Hello,\r\nplease check your account " + token + ".\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def send25(s, msg, rcpts=(CAROL,), mail_from="bounce@sender.test"):
    with SMTP(s.smtp_port) as c:
        c.sendmail(mail_from, list(rcpts), msg)


def fetch(s, token, user=CAROL):
    """The delivered message with this token in user's INBOX (raw bytes), via IMAP."""
    m = imaplib.IMAP4("127.0.0.1", s.ports["imap"], timeout=10)
    try:
        m.starttls(ssl_context=s.ssl_context())
        m.login(user, USERS[user])
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, "HEADER", "Message-ID", token)
        nums = data[0].split()
        assert len(nums) == 1, "one message with %s in %s's INBOX, found %r" % (token, user, nums)
        typ, data = m.fetch(nums[0], "(BODY.PEEK[])")
        return data[0][1]
    finally:
        m.logout()


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def verdict(raw):
    """All X-Postino-Phishing values of the message, unfolded."""
    return [" ".join(v.split()) for v in parse(raw).get_all("X-Postino-Phishing") or []]


def first_text(raw):
    msg = parse(raw)
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode("utf-8", "replace")
    return None


def assert_marked(raw, reason, body=True):
    v = verdict(raw)
    assert len(v) == 1 and reason in v[0], "want one X-Postino-Phishing naming %s: %r" % (reason, v)
    assert parse(raw)["Subject"].startswith(TAG + " "), parse(raw)["Subject"]
    if body:
        assert first_text(raw).startswith(WARNING), first_text(raw)[:200]


def assert_clean(raw, sent):
    assert verdict(raw) == [], "must not be marked: %r" % verdict(raw)
    assert TAG not in parse(raw)["Subject"]
    # the message arrives exactly as sent, below our trace fields
    assert raw.endswith(sent), raw[-400:]


# ---- 1. display names

@pytest.mark.parametrize("from_", [
    "TIM Assistenza <assistenza@elsewhere.example>",
    '"support@example.test" <x@evil.example>',
    "Example Provider Billing <billing@evil.example>",
    # RFC 2047: "TIM Assistenza", and "Servizio Example" in quoted-printable form
    "=?utf-8?b?VElNIEFzc2lzdGVuemE=?= <x@evil.example>",
    '"=?utf-8?q?Servizio_Example?=" <x@evil.example>',
    # "TIM" with a Cyrillic I (U+0406), encoded
    "=?utf-8?b?VNCGTSBBc3Npc3RlbnphIENsaWVudGk=?= <x@evil.example>",
    # obsolete and folded forms of the same field
    "Example\r\n Provider <x@evil.example>",
], ids=["brand", "hosted-domain", "brand-words", "b-encoded", "q-encoded-quoted",
        "cyrillic-i", "folded"])
def test_display_name_imitation(srv, token, from_):
    send25(srv, message(token, from_))
    assert_marked(fetch(srv, token), "display-name")


def test_display_name_not_a_word(srv, token):
    # "tim" inside another word, and a name with no brand
    for i, from_ in enumerate(["Timothy Smith <tim@elsewhere.example>",
                               "Optimal Times <news@elsewhere.example>"]):
        msg = message(token + str(i), from_)
        send25(srv, msg)
        assert_clean(fetch(srv, token + str(i)), msg)


# ---- 2. lookalike domains

@pytest.mark.parametrize("from_,reason", [
    ("Billing <billing@exampel.test>", "lookalike-domain (exampel.test looks like example.test)"),
    ("Billing <billing@examp1e.test>", "lookalike-domain (examp1e.test looks like example.test)"),
    ("Billing <billing@example.test.secure-login.example>", "lookalike-domain"),
    # "ехample.test" with a Cyrillic e and x
    ("Billing <billing@xn--ample-ywe6i.test>", "mixed-script-domain (xn--ample-ywe6i.test)"),
    ("Billing <billing@xn--ample-ywe6i.test>", "lookalike-domain (xn--ample-ywe6i.test looks "
                                               "like example.test)"),
    # all-Cyrillic "аррӏе" under an ASCII TLD
    ("Billing <billing@xn--80ak6aa92e.com>", "lookalike-domain (xn--80ak6aa92e.com"),
], ids=["transposed", "digit-one", "hosted-prefix", "mixed-script", "mixed-skeleton",
        "whole-script"])
def test_lookalike_from(srv, token, from_, reason):
    send25(srv, message(token, from_))
    assert_marked(fetch(srv, token), reason)


def test_lookalike_reply_to(srv, token):
    send25(srv, message(token, "Shop <orders@shop.example>",
                        extra=["Reply-To: orders@exarnple.test"]))
    raw = fetch(srv, token)
    assert_marked(raw, "lookalike-domain (exarnple.test looks like example.test)")


@pytest.mark.parametrize("domain", ["xn--e1afmkfd.xn--p1ai", "xn--bcher-kva.example",
                                    "xn--r8jz45g.jp"], ids=["cyrillic", "latin", "japanese"])
def test_genuine_idn_not_marked(srv, token, domain):
    msg = message(token, "Friend <friend@%s>" % domain)
    send25(srv, msg)
    assert_clean(fetch(srv, token), msg)


def test_genuine_idn_smtputf8_not_marked(srv, token):
    msg = message(token, "Friend <friend@bücher.example>")
    with SMTP(srv.smtp_port) as c:
        c.ehlo()
        assert c.has_extn("smtputf8")
        c.sendmail("bounce@sender.test", [CAROL], msg, mail_options=["SMTPUTF8"])
    assert_clean(fetch(srv, token), msg)


# ---- 3. Reply-To elsewhere from a first-time sender

def test_reply_to_first_time_sender(srv, token):
    sender = "news-%s@shop.example" % token
    first = message(token + "a", "Shop <%s>" % sender, extra=["Reply-To: refunds@collect.example"])
    send25(srv, first)
    raw = fetch(srv, token + "a")
    assert_marked(raw, "reply-to-elsewhere (first message from %s, replies go to collect.example)"
                  % sender)
    # the sender is now known to carol: the same kind of message is not marked again
    second = message(token + "b", "Shop <%s>" % sender, extra=["Reply-To: refunds@collect.example"])
    send25(srv, second)
    assert_clean(fetch(srv, token + "b"), second)
    # ... but bob never had mail from it: his copy is marked, carol's (same message) is not
    third = message(token + "c", "Shop <%s>" % sender, extra=["Reply-To: refunds@collect.example"])
    send25(srv, third, rcpts=(CAROL, BOB))
    assert_clean(fetch(srv, token + "c"), third)
    assert_marked(fetch(srv, token + "c", user=BOB), "reply-to-elsewhere")


def test_reply_to_same_organisation_not_marked(srv, token):
    msg = message(token, "Shop <news-%s@shop.example>" % token,
                  extra=["Reply-To: help@support.shop.example"])
    send25(srv, msg)
    assert_clean(fetch(srv, token), msg)


# ---- what is never marked

def test_clean_message_not_marked(srv, token):
    msg = message(token, "Friend <friend@elsewhere.example>", extra=["Reply-To: friend@elsewhere.example"])
    send25(srv, msg)
    assert_clean(fetch(srv, token), msg)


def test_provider_own_mail_not_marked(srv, token):
    # port 25, from a host of a hosted domain, with the provider's name
    msg = message(token, "Example Provider <news@mail.example.test>")
    send25(srv, msg)
    assert_clean(fetch(srv, token), msg)


def test_submission_not_marked(srv, token):
    # an authenticated user may call herself anything and reply elsewhere: not marked
    msg = message(token, "TIM Assistenza <%s>" % ALICE, extra=["Reply-To: a@collect.example"])
    with SMTP(srv.submission_port) as c:
        c.starttls(context=srv.ssl_context())
        c.login(ALICE, USERS[ALICE])
        c.sendmail(ALICE, [CAROL], msg)
    assert_clean(fetch(srv, token), msg)


# ---- the header field cannot be forged or suppressed

def test_forged_field_removed(srv, token):
    # a clean message's forged verdict is removed ...
    msg = message(token + "a", "Friend <friend@elsewhere.example>",
                  extra=["X-Postino-Phishing: none", "x-postino-phishing :\r\n folded"])
    send25(srv, msg)
    raw = fetch(srv, token + "a")
    assert verdict(raw) == [] and b"postino-phishing" not in raw.lower()
    # ... and a phishing message cannot bring its own "all clear"
    msg = message(token + "b", "TIM <x@evil.example>", extra=["X-Postino-Phishing: none"])
    send25(srv, msg)
    raw = fetch(srv, token + "b")
    assert_marked(raw, "display-name")


# ---- the mark: body encodings and the configured modes

def test_warning_in_quoted_printable_part(srv, token):
    body = "Gentile cliente, il suo conto =C3=A8 bloccato " + token + ".\r\n"
    msg = message(token, "TIM <x@evil.example>", body=body,
                  ctype=["Content-Type: text/plain; charset=utf-8",
                         "Content-Transfer-Encoding: quoted-printable"])
    send25(srv, msg)
    raw = fetch(srv, token)
    assert_marked(raw, "display-name")
    text = first_text(raw)
    assert text.startswith(WARNING) and "conto è bloccato" in text, text


def test_warning_in_multipart_first_text_part(srv, token):
    body = ("--BB\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nText " + token +
            "\r\n--BB\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--BB--\r\n")
    msg = message(token, "TIM <x@evil.example>", body=body,
                  ctype=['Content-Type: multipart/mixed; boundary="BB"'])
    send25(srv, msg)
    raw = fetch(srv, token)
    assert_marked(raw, "display-name")
    parts = [p for p in parse(raw).walk() if not p.is_multipart()]
    assert parts[1].get_payload(decode=True) == b"\x00\x01\x02"


def test_base64_text_falls_back_to_subject(srv, token):
    text = ("Il suo conto è bloccato " + token + "\r\n").encode()
    body = base64.b64encode(text).decode() + "\r\n"
    msg = message(token, "TIM <x@evil.example>", body=body,
                  ctype=["Content-Type: text/plain; charset=utf-8",
                         "Content-Transfer-Encoding: base64"])
    send25(srv, msg)
    raw = fetch(srv, token)
    assert_marked(raw, "display-name", body=False)
    assert parse(raw).get_payload(decode=True) == text, "a base64 part is never touched"


def test_mark_subject_only(srv_subject, token):
    msg = message(token, "TIM <x@evil.example>")
    send25(srv_subject, msg)
    raw = fetch(srv_subject, token)
    assert any("display-name" in v for v in verdict(raw))
    assert parse(raw)["Subject"] == "[Forse phishing] Your account " + token
    assert first_text(raw).startswith("Hello,"), "subject mode leaves the body alone"


def test_mark_header_only(srv_header, token):
    msg = message(token, "TIM <x@evil.example>")
    send25(srv_header, msg)
    raw = fetch(srv_header, token)
    assert any("display-name" in v for v in verdict(raw))
    assert parse(raw)["Subject"] == "Your account " + token
    assert first_text(raw).startswith("Hello,")
