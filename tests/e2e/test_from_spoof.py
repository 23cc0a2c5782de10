"""Issue 11 item 1: the From:/originator check on submission cannot be bypassed.

Alice, authenticated on 587 (STARTTLS), tries every way of writing a header that a mail
program would show as someone else's message: obs-syntax blanks before the colon, repeated
From fields, Sender/Resent-From/Resent-Sender, names split over lines, NUL and bare CR,
comments and quoted local parts, group syntax. Each is refused with a 5xx and delivered
nowhere. For the messages that are accepted, IMAP FETCH ENVELOPE (imaplib) must show the
address the check allowed, and nothing else.
"""
import imaplib
import smtplib

import pytest

from conftest import USERS
from smtphelp import SMTP
from test_imap_helpers import parse

ALICE = "alice@example.test"
ALICE_ALIAS = "alice.alias@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


@pytest.fixture
def ctx(server):
    return server.ssl_context()


def build(token, headers, body=None):
    """A message: the given header lines (bytes or str), our To/Subject/Message-ID, a body."""
    lines = [h.encode() if isinstance(h, str) else h for h in headers]
    lines += [b"To: " + CAROL.encode(), b"Subject: spoof test " + token.encode(),
              b"Message-ID: <" + token.encode() + b"@client.test>"]
    if body is None:
        body = b"hello " + token.encode() + b"\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def submit(server, ctx, msg):
    """Send msg as alice on 587 with DATA; returns (code, text) of the final reply."""
    with SMTP(server.submission_port) as s:
        s.starttls(context=ctx)
        s.login(ALICE, USERS[ALICE])
        try:
            s.sendmail(ALICE, [CAROL], msg)
            code, text = 250, b""
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        assert s.noop()[0] == 250, "the session must stay usable after the reply"
    return code, text


def submit_bdat(server, ctx, msg):
    """Send msg as alice on 587 in one BDAT LAST chunk (no line-end rewriting)."""
    with SMTP(server.submission_port) as s:
        s.starttls(context=ctx)
        s.login(ALICE, USERS[ALICE])
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt(CAROL)[0] == 250
        s.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, text = s.getreply()
        assert s.noop()[0] == 250
    return code, text


def assert_refused(server, token, code, text, mention_alice=True):
    # 553 5.7.1: the mailbox named in the header is not allowed (RFC 5321 4.2.2, RFC 3463)
    assert code == 553 and text.startswith(b"5.7.1"), (code, text)
    if mention_alice:
        assert ALICE.encode() in text.lower(), "reply should say what to use: %r" % text
    found = server.grep_store(token)
    assert not found, "%s must not have been delivered, found in %s" % (token, found)


def envelope_of(server, ctx, token):
    """(from, sender) address lists of the message with this token in carol's INBOX, as
    [(mailbox, host), ...], read with imaplib FETCH ENVELOPE."""
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=ctx, timeout=10)
    try:
        m.login(CAROL, USERS[CAROL])
        m.select("INBOX", readonly=True)
        typ, data = m.search(None, "HEADER", "Message-ID", token)
        assert typ == "OK", data
        nums = data[0].split()
        assert len(nums) == 1, "expected one message %s in carol's INBOX: %r" % (token, data)
        typ, data = m.fetch(nums[0], "(ENVELOPE)")
        assert typ == "OK", data
    finally:
        m.logout()
    raw = b""
    for part in data:   # imaplib splits literals out: (prefix ending in {n}, literal)
        if isinstance(part, tuple):
            raw += part[0] + b"\r\n" + part[1]
        else:
            raw += part
    items = parse(raw)
    fetch = items[1]
    assert fetch[0].upper() == "ENVELOPE", items
    env = fetch[1]

    def addrs(lst):
        return [(a[2].decode().lower(), a[3].decode().lower()) for a in (lst or [])
                if a[3] is not None]
    return addrs(env[2]), addrs(env[3])


# --------------------------------------------------------------- refused (bypass attempts)

SPOOFS = {
    "space-before-colon": ["From : " + BOB],
    "tab-before-colon": ["From\t: " + BOB],
    "blanks-before-colon-upper": ["FROM \t : " + BOB],
    "obs-from-then-real-from": ["From : " + BOB, "From: " + ALICE],
    "real-from-then-obs-from": ["From: " + ALICE, "from\t: " + BOB],
    "two-froms-second-other": ["From: " + ALICE, "fRoM: " + BOB],
    "two-froms-both-own": ["From: " + ALICE, "From: " + ALICE_ALIAS],
    "sender": ["From: " + ALICE, "Sender: " + BOB],
    "sender-obs": ["From: " + ALICE, "SENDER : Bob <%s>" % BOB],
    "resent-from": ["From: " + ALICE, "Resent-From: " + BOB],
    "resent-sender-obs": ["From: " + ALICE, "Resent-Sender\t: " + BOB],
    "resent-from-second-address": ["From: " + ALICE, "Resent-From: %s, %s" % (ALICE, BOB)],
    "name-split-over-lines": [b"From\r\n : " + BOB.encode(), "From: " + ALICE],
    "nul-in-name": [b"From: " + ALICE.encode(), b"Fr\x00om: " + BOB.encode()],
    "nul-in-other-field": [b"From: " + ALICE.encode(), b"X-Note: a\x00b"],
    "line-without-colon": ["From: " + ALICE, "From " + BOB],
    "comment-in-address": ["From: <bob (x)@ (y) example.test>"],
    "quoted-local-part": ['From: "bob"@example.test'],
    "encoded-word-name": ["From: =?utf-8?q?Alice?= <%s>" % BOB],
    "alice-as-name": ['From: "%s" <%s>' % (ALICE, BOB)],
    "group-with-other": ["From: friends: %s;" % BOB],
    "group-empty": ["From: undisclosed-recipients:;"],
    "empty-from": ["From: "],
    "folded-second-address": ["From: " + ALICE + ",\r\n\t" + BOB],
}


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_spoofed_originator_refused(server, ctx, token, name):
    msg = build(token, SPOOFS[name])
    code, text = submit(server, ctx, msg)
    assert_refused(server, token, code, text, mention_alice=name not in (
        "name-split-over-lines", "nul-in-name", "nul-in-other-field", "line-without-colon"))


def test_leading_continuation_line_refused(server, ctx, token):
    # stored behind our Received: this line would fold into it; a reader that drops the
    # leading blank would see a From: refuse it rather than guess
    msg = b" From: " + BOB.encode() + b"\r\n" + build(token, ["From: " + ALICE])
    code, text = submit(server, ctx, msg)
    assert_refused(server, token, code, text, mention_alice=False)


def test_spoof_after_long_header_refused(server, ctx, token):
    filler = ["X-Filler-%d: %s" % (i, "x" * 900) for i in range(150)]   # ~135 KB of header
    msg = build(token, ["From: " + ALICE] + filler + ["From : " + BOB])
    code, text = submit(server, ctx, msg)
    assert_refused(server, token, code, text)


def test_bare_cr_in_header_refused_with_bdat(server, ctx, token):
    # BDAT keeps bytes as sent; some readers end a line at a bare CR and would see From: bob
    msg = build(token, [b"From: " + ALICE.encode(), b"X-Note: a\rFrom: " + BOB.encode()])
    code, text = submit_bdat(server, ctx, msg)
    assert_refused(server, token, code, text, mention_alice=False)


def test_obs_spoof_refused_with_bdat(server, ctx, token):
    msg = build(token, ["From : " + BOB, "From: " + ALICE])
    code, text = submit_bdat(server, ctx, msg)
    assert_refused(server, token, code, text)


# ------------------------------------------- accepted: ENVELOPE shows what the check allowed

ACCEPTED = {
    "alias-with-name": (["From: Alice <%s>" % ALICE_ALIAS], [("alice.alias", "example.test")],
                        [("alice.alias", "example.test")]),
    "obs-blank-own": (["From : " + ALICE], [("alice", "example.test")],
                      [("alice", "example.test")]),
    "sender-and-alias": (["From: " + ALICE_ALIAS, "Sender : " + ALICE],
                         [("alice.alias", "example.test")], [("alice", "example.test")]),
    "folded-name-and-comment": (["From: =?utf-8?q?Al=C3=AFce?=\r\n <alice (home)@example.test>",
                                 "Resent-From: " + ALICE_ALIAS],
                                [("alice", "example.test")], [("alice", "example.test")]),
    "quoted-own-local": (['From: "alice"@Example.Test'], [("alice", "example.test")],
                         [("alice", "example.test")]),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_envelope_shows_allowed_from(server, ctx, token, name):
    headers, want_from, want_sender = ACCEPTED[name]
    # a From: line in the body (after the empty line) is body, not header
    msg = build(token, headers, body=b"From: " + BOB.encode() + b"\r\nhello\r\n")
    code, text = submit(server, ctx, msg)
    assert code == 250, (code, text)
    frm, sender = envelope_of(server, ctx, token)
    assert frm == want_from, "ENVELOPE from %r, the check allowed %r" % (frm, want_from)
    assert sender == want_sender, "ENVELOPE sender %r, want %r" % (sender, want_sender)
