"""SMTP end-to-end tests for postino (issue 2): ports 25, 587 and 465 with real clients."""
import os
import re
import smtplib
import ssl
import subprocess

import pytest

from conftest import HOST, OTHER_HOST, USERS, postino, run, wait_until
from smtphelp import SMTP, SMTP_SSL, Raw, auth_plain_arg, message, split_stored, unfold

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@other.test"
CATCHER = "catcher@example.test"
ALICE_ALIAS = "alice.alias@example.test"
LIMIT = 1024 * 1024  # message_size_limit = 1M in conftest


@pytest.fixture
def ctx(server):
    return server.ssl_context()


def tls_info(smtp):
    return smtp.sock.version(), smtp.sock.cipher()[0]


def check_stored(server, rcpt, token, sent, sender, tls=None, auth=None, proto=None):
    """The message is in rcpt's INBOX new/ exactly once, byte for byte behind the trace
    headers, with an index.db row. Returns the unfolded first Received header."""
    files = server.find_messages(rcpt, token)
    assert len(files) == 1, "expected one message with %s for %s, found %s" % (token, rcpt, files)
    path = files[0]
    assert os.path.basename(os.path.dirname(path)) == "new", path
    with open(path, "rb") as f:
        data = f.read()
    rp, blocks, rest = split_stored(data)
    assert rp == b"Return-Path: <" + sender.encode() + b">", rp
    assert blocks, "no Received header prepended"
    assert rest == sent, "stored body differs from the bytes sent\nsent:   %r\nstored: %r" % (
        sent[:400], rest[:400])
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF in stored file"
    rec = unfold(blocks[0])
    assert ("by %s" % HOST) in rec and "postino" in rec, rec
    if tls:
        version, cipher = tls
        assert "using %s with cipher %s" % (version, cipher) in rec, rec
        assert re.search(r"with ESMTPS", rec), rec
    else:
        assert "using TLS" not in rec, rec
        assert re.search(r"with %s\b" % (proto or "ESMTP"), rec), rec
    if auth:
        assert "authenticated as %s" % auth in rec, rec
        assert "ESMTPSA" in rec, rec
    else:
        assert "authenticated" not in rec, rec
    row = server.index_row_for(rcpt, path)
    assert row is not None, "no index.db row for %s; rows: %s" % (path, server.index_messages(rcpt))
    uid, filename, flags, modseq, internaldate, size = row
    assert uid > 0 and modseq > 0, row
    assert size == len(data), "index size %s != file size %d" % (size, len(data))
    assert internaldate, row
    return rec


def assert_nowhere(server, token):
    found = server.grep_store(token)
    assert not found, "%s must not have been delivered or spooled, found in %s" % (token, found)


# ------------------------------------------------------------------ delivery on each port

def test_port25_plain_delivery(server, token):
    msg = message(token, to=ALICE)
    with SMTP(server.smtp_port) as s:
        code, _ = s.ehlo()
        assert code == 250
        refused = s.sendmail("sender@remote.test", [ALICE], msg, mail_options=["BODY=8BITMIME"])
        assert refused == {}
    check_stored(server, ALICE, token, msg, "sender@remote.test")


def test_port25_helo_delivery(server, token):
    msg = message(token, to=ALICE)
    with SMTP(server.smtp_port) as s:
        code, _ = s.helo()
        assert code == 250
        s.sendmail("old@remote.test", [ALICE], msg)
    check_stored(server, ALICE, token, msg, "old@remote.test", proto="SMTP")


def test_port25_starttls_delivery(server, ctx, token):
    msg = message(token, to=ALICE)
    with SMTP(server.smtp_port) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=ctx)
        assert code == 220
        s.ehlo()
        assert not s.has_extn("starttls")
        tls = tls_info(s)
        assert tls[0] == "TLSv1.3", tls   # both ends offer it
        s.sendmail("sender@remote.test", [ALICE], msg)
    check_stored(server, ALICE, token, msg, "sender@remote.test", tls=tls)


def test_port25_tls12_received_header(server, token):
    ctx = server.ssl_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    msg = message(token, to=ALICE)
    with SMTP(server.smtp_port) as s:
        s.starttls(context=ctx)
        tls = tls_info(s)
        assert tls[0] == "TLSv1.2"
        s.sendmail("sender@remote.test", [ALICE], msg)
    check_stored(server, ALICE, token, msg, "sender@remote.test", tls=tls)


def test_submission_587_starttls_login(server, ctx, token):
    msg = message(token, from_="Alice Example <%s>" % ALICE, to=BOB)
    with SMTP(server.submission_port) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        tls = tls_info(s)
        code, _ = s.login(ALICE, USERS[ALICE])
        assert code == 235
        assert s.sendmail(ALICE, [BOB], msg) == {}
    check_stored(server, BOB, token, msg, ALICE, tls=tls, auth=ALICE)


def test_submissions_465_implicit_tls(server, ctx, token):
    msg = message(token, from_=ALICE, to=CAROL)
    with SMTP_SSL(server.submissions_port, ctx) as s:
        s.ehlo()
        tls = tls_info(s)
        s.login(ALICE, USERS[ALICE])
        s.sendmail(ALICE, [CAROL], msg)
    check_stored(server, CAROL, token, msg, ALICE, tls=tls, auth=ALICE)


def test_auth_login_mechanism(server, ctx, token):
    msg = message(token, from_=BOB, to=CAROL)
    with SMTP_SSL(server.submissions_port, ctx) as s:
        s.ehlo()
        s.user, s.password = BOB, USERS[BOB]
        code, _ = s.auth("LOGIN", s.auth_login)
        assert code == 235
        s.sendmail(BOB, [CAROL], msg)
        tls = tls_info(s)
    check_stored(server, CAROL, token, msg, BOB, tls=tls, auth=BOB)


def test_sni_selects_certificate(server, ctx):
    # implicit TLS with SNI mx.other.test: the other certificate (check_hostname verifies it)
    with Raw(server.submissions_port, tls_context=ctx, server_name=OTHER_HOST) as c:
        assert c.banner.code == 220
        cn = dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"]
        assert cn == OTHER_HOST
    # STARTTLS on 25 with SNI
    with Raw(server.smtp_port) as c:
        c.ehlo()
        c.starttls(ctx, server_name=OTHER_HOST)
        cn = dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"]
        assert cn == OTHER_HOST
        assert c.ehlo().code == 250
    # no SNI (IP address as server name): the default certificate
    with Raw(server.submissions_port, tls_context=ctx, server_name="127.0.0.1") as c:
        cn = dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"]
        assert cn == HOST
    # unknown name: default certificate, which does not match -> verification error
    with pytest.raises(ssl.SSLCertVerificationError):
        Raw(server.submissions_port, tls_context=ctx, server_name="unknown.invalid")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_versions_below_12_refused(server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(server.ca)
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("client OpenSSL cannot offer TLS < 1.2")
    with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError)):
        with Raw(server.submissions_port, tls_context=ctx, server_name=HOST) as c:
            c.cmd("NOOP")


def test_store_layout_and_uids(server, token):
    # the account has every standard folder in Maildir++ and in index.db
    names = {r[0] for r in server.index_query(ALICE, "SELECT name FROM mailboxes")}
    for want in ("INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert want in names, names
        d = server.maildir(ALICE, "" if want == "INBOX" else "." + want)
        for sub in ("cur", "new", "tmp"):
            assert os.path.isdir(os.path.join(d, sub)), os.path.join(d, sub)
    # two deliveries get increasing UIDs below UIDNEXT; UIDVALIDITY set
    uids = []
    for i in range(2):
        t = "%s-%d" % (token, i)
        with SMTP(server.smtp_port) as s:
            s.sendmail("x@remote.test", [ALICE], message(t, to=ALICE))
        (path,) = server.find_messages(ALICE, t)
        uids.append(server.index_row_for(ALICE, path)[0])
    assert uids[1] > uids[0]
    ((uidvalidity, uidnext),) = server.index_query(
        ALICE, "SELECT uidvalidity, uidnext FROM mailboxes WHERE name='INBOX'")
    assert uidvalidity > 0 and uidnext > uids[1]
    all_uids = [r[0] for r in server.index_messages(ALICE)]
    assert len(all_uids) == len(set(all_uids)), "duplicate UIDs in INBOX"


# ------------------------------------------------------------------ routing

def test_alias_reaches_all_targets(server, token):
    msg = message(token, to="team@example.test")
    with SMTP(server.smtp_port) as s:
        assert s.sendmail("x@remote.test", ["team@example.test"], msg) == {}
    for rcpt in (ALICE, BOB, DAVE):
        check_stored(server, rcpt, token, msg, "x@remote.test")


def test_alias_and_target_deduplicated_or_delivered(server, token):
    """team@ and alice@ in one transaction: alice gets the message (once or twice, never 0)."""
    msg = message(token, to="team@example.test")
    with SMTP(server.smtp_port) as s:
        s.sendmail("x@remote.test", ["team@example.test", ALICE], msg)
    assert 1 <= len(server.find_messages(ALICE, token)) <= 2
    assert len(server.find_messages(BOB, token)) == 1


def test_catch_all(server, token):
    rcpt = "whoever-%s@catchall.test" % token[-8:]
    msg = message(token, to=rcpt)
    with SMTP(server.smtp_port) as s:
        assert s.sendmail("x@remote.test", [rcpt], msg) == {}
    check_stored(server, CATCHER, token, msg, "x@remote.test")


def test_domain_is_case_insensitive(server, token):
    msg = message(token, to=ALICE)
    with SMTP(server.smtp_port) as s:
        s.sendmail("x@remote.test", ["alice@EXAMPLE.Test"], msg)
    check_stored(server, ALICE, token, msg, "x@remote.test")


def test_recipient_answers_follow_admin_changes(server, token):
    """A worker keeps RCPT's answers from system.db while the file is unchanged: in one session
    (one worker), every admin change shows at the next RCPT: a new account, an alias that goes
    elsewhere, a quota that is full, a removed account, a removed domain. Fails if a kept
    answer outlived its change."""
    addr = "late-%s@example.test" % token[-8:]
    alias = "fwd-%s@example.test" % token[-8:]

    def rcpt(c, to, size=""):
        c.cmd("RSET")
        assert c.cmd("MAIL FROM:<x@remote.test>%s" % size).code == 250
        return c.cmd("RCPT TO:<%s>" % to)

    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert rcpt(c, addr).code == 550
        assert rcpt(c, addr).code == 550              # asked twice: now from the kept answer
        postino("user", "add", addr, "--data", server.data, input="late-user-pw\n")
        assert rcpt(c, addr).code == 250
        assert rcpt(c, addr.upper()).code == 250      # kept lower-cased
        assert rcpt(c, addr, " SIZE=1000").code == 250
        postino("user", "quota", addr, "1", "--data", server.data)
        r = rcpt(c, addr, " SIZE=1000")               # a 1-octet quota: 1000 octets do not fit
        assert r.code == 452 and r.lines[0].startswith("4.2.2"), r
        postino("user", "remove", addr, "--data", server.data)
        assert rcpt(c, addr).code == 550
        assert rcpt(c, alias).code == 550
        postino("alias", "add", alias, ALICE, "--data", server.data)
        assert rcpt(c, alias).code == 250
        postino("alias", "remove", alias, "--data", server.data)
        assert rcpt(c, alias).code == 550
        r = rcpt(c, "someone@late-%s.test" % token[-8:])   # not hosted: no relay
        assert r.code == 554, r
        postino("domain", "add", "late-%s.test" % token[-8:], "--data", server.data)
        assert rcpt(c, "someone@late-%s.test" % token[-8:]).code == 550   # hosted, no such user
        postino("domain", "remove", "late-%s.test" % token[-8:], "--data", server.data)
        assert rcpt(c, "someone@late-%s.test" % token[-8:]).code == 554


@pytest.mark.parametrize("rcpt", ["nobody-%s@example.test", "nobody-%s@other.test"])
def test_unknown_user_550(server, token, rcpt):
    rcpt = rcpt % token[-8:]
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        assert r.code == 550 and r.lines[0].startswith("5.1.1"), r
        r = c.cmd("DATA")
        assert r.code == 554 and r.lines[0].startswith("5.5.1"), r   # no valid recipients
    assert_nowhere(server, token)


RELAY_TRICKS = [
    "u@remote.test",
    "u%remote.test@example.test",
    "alice%remote.test@example.test",
    "@example.test:u@remote.test",
    "@mail.example.test,@example.test:u@remote.test",
    "u@remote.test@example.test",
    '"u@remote.test"@example.test',
    '"alice@remote.test"@example.test',
    "u@[1.2.3.4]",
    "alice@[1.2.3.4]",
    "u@[IPv6:2001:db8::1]",
]


@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "starttls"])
@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_relay_denied(server, ctx, token, rcpt, use_tls):
    before = server.queue_files()
    with Raw(server.smtp_port) as c:
        c.ehlo()
        if use_tls:
            c.starttls(ctx)
            c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        assert r.code == 554 and r.lines[0].startswith("5.7.1"), "RCPT TO:<%s> -> %r" % (rcpt, r)
        r = c.cmd("DATA")
        if r.code == 354:
            r2 = c.data_body(message(token))
            pytest.fail("DATA accepted after refused RCPT (%r), end of data -> %r" % (r, r2))
        assert r.code == 554 and r.lines[0].startswith("5.5.1"), r   # no valid recipients
        assert c.cmd("QUIT").code == 221
    assert_nowhere(server, token)
    assert server.queue_files() == before


def test_relay_bang_path_not_accepted(server, token):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<x@remote.test>")
        r = c.cmd("RCPT TO:<remote.test!u@example.test>")
        assert r.code >= 500, r


def test_port25_remote_rcpt_refused_even_with_local_sender(server, token):
    """MAIL FROM a hosted address does not unlock relaying on port 25."""
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 250
        r = c.cmd("RCPT TO:<u@remote.test>")
        assert r.code == 554 and r.lines[0].startswith("5.7.1"), r


# ------------------------------------------------------------------ submission policy

@pytest.mark.parametrize("port_name", ["submission", "submissions"])
def test_unauthenticated_submission_530(server, ctx, token, port_name):
    before = server.queue_files()
    if port_name == "submission":
        c = Raw(server.submission_port)
        c.ehlo()
        c.starttls(ctx)
    else:
        c = Raw(server.submissions_port, tls_context=ctx)
    with c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530 and r.lines[0].startswith("5.7.0"), r
        # no transaction was started: the sequence is wrong before anything else
        r = c.cmd("RCPT TO:<u@remote.test>")
        assert r.code == 503 and r.lines[0].startswith("5.5.1"), r
        r = c.cmd("DATA")
        assert r.code == 503 and r.lines[0].startswith("5.5.1"), r
    assert_nowhere(server, token)
    assert server.queue_files() == before


def test_587_mail_before_starttls_530(server, ctx):
    with Raw(server.submission_port) as c:
        kw = c.keywords(c.ehlo())
        assert "STARTTLS" in kw
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530 and r.lines[0].startswith("5.7.0"), r


def test_587_auth_before_tls_refused(server, ctx):
    with Raw(server.submission_port) as c:
        kw = c.keywords(c.ehlo())
        assert "AUTH" not in kw, kw
        # RFC 3207 section 4: 530 "Must issue a STARTTLS command first"
        r = c.cmd("AUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE]))
        assert r.code == 530 and r.lines[0].startswith("5.7.0"), r
        r = c.cmd("AUTH LOGIN")
        assert r.code == 530 and r.lines[0].startswith("5.7.0"), r
        # the refused AUTH did not authenticate the session
        c.starttls(ctx)
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530, r


def test_port25_no_auth(server, ctx):
    with Raw(server.smtp_port) as c:
        assert "AUTH" not in c.keywords(c.ehlo())
        c.starttls(ctx)
        assert "AUTH" not in c.keywords(c.ehlo())
        r = c.cmd("AUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE]))
        assert r.code >= 500, r


def expect_keywords(kw, auth, starttls):
    assert "PIPELINING" in kw
    assert "SIZE" in kw and kw["SIZE"].strip() == str(LIMIT), kw.get("SIZE")
    for k in ("8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"):
        assert k in kw, (k, kw)
    assert ("STARTTLS" in kw) == starttls, kw
    if auth:
        assert "AUTH" in kw, kw
        mechs = kw["AUTH"].upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, mechs
    else:
        assert "AUTH" not in kw, kw


def test_ehlo_keywords(server, ctx):
    with Raw(server.smtp_port) as c:
        expect_keywords(c.keywords(c.ehlo()), auth=False, starttls=True)
        c.starttls(ctx)
        expect_keywords(c.keywords(c.ehlo()), auth=False, starttls=False)
    with Raw(server.submission_port) as c:
        expect_keywords(c.keywords(c.ehlo()), auth=False, starttls=True)
        c.starttls(ctx)
        expect_keywords(c.keywords(c.ehlo()), auth=True, starttls=False)
    with Raw(server.submissions_port, tls_context=ctx) as c:
        expect_keywords(c.keywords(c.ehlo()), auth=True, starttls=False)


def test_starttls_twice_refused(server, ctx):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        c.starttls(ctx)
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert r.code == 503, r
        assert c.cmd("NOOP").code == 250


@pytest.mark.parametrize("how", ["plain", "login", "unknown-user"])
def test_wrong_password_535(server, ctx, how):
    with SMTP(server.submission_port) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as ei:
            if how == "plain":
                s.user, s.password = ALICE, "wrong-password"
                s.auth("PLAIN", s.auth_plain)
            elif how == "login":
                s.user, s.password = ALICE, "wrong-password"
                s.auth("LOGIN", s.auth_login)
            else:
                s.user, s.password = "nobody@example.test", "whatever"
                s.auth("PLAIN", s.auth_plain)
        assert ei.value.smtp_code == 535
        assert ei.value.smtp_error.startswith(b"5.7.8"), ei.value.smtp_error
        code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
        assert code == 530, (code, resp)
        # the session still allows a correct login afterwards
        code, _ = s.login(ALICE, USERS[ALICE])
        assert code == 235


def test_imported_sha512_crypt_hash(server, ctx, token):
    addr = "imported-%s@example.test" % token[-8:]
    h = run(["openssl", "passwd", "-6", "imported-pw"]).stdout.strip()
    postino("user", "add", addr, "--hash", "{SHA512-CRYPT}" + h, "--data", server.data)
    with SMTP_SSL(server.submissions_port, ctx) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(addr, "not-the-pw")
    with SMTP_SSL(server.submissions_port, ctx) as s:
        assert s.login(addr, "imported-pw")[0] == 235
        msg = message(token, from_=addr, to=ALICE)
        s.sendmail(addr, [ALICE], msg)
    assert len(server.find_messages(ALICE, token)) == 1


def test_send_as_other_envelope_553(server, ctx, token):
    with SMTP_SSL(server.submissions_port, ctx) as s:
        s.login(ALICE, USERS[ALICE])
        code, resp = s.docmd("MAIL", "FROM:<%s>" % BOB)
        assert code == 553 and resp.startswith(b"5.7.1"), (code, resp)
        text = resp.decode().lower()
        assert ALICE in text, "reply should name the allowed addresses: %r" % resp
        code, resp = s.docmd("RCPT", "TO:<%s>" % CAROL)
        assert code == 503, (code, resp)
        s.rset()
        # the null sender is no way around it either... but own address works
        code, resp = s.docmd("MAIL", "FROM:<%s>" % ALICE)
        assert code == 250, (code, resp)
    assert_nowhere(server, token)


@pytest.mark.parametrize("from_hdr", [
    BOB,
    "Alice <%s>" % BOB,
    '"%s" <%s>' % (ALICE, BOB),
    "%s, %s" % (ALICE, BOB),
])
def test_send_as_other_from_header_553(server, ctx, token, from_hdr):
    msg = message(token, from_=from_hdr, to=CAROL)
    with SMTP_SSL(server.submissions_port, ctx) as s:
        s.login(ALICE, USERS[ALICE])
        with pytest.raises(smtplib.SMTPDataError) as ei:
            s.sendmail(ALICE, [CAROL], msg)
        assert ei.value.smtp_code == 553, ei.value
        assert ei.value.smtp_error.startswith(b"5.7.1"), ei.value
        assert ALICE.encode() in ei.value.smtp_error.lower(), ei.value
        assert s.noop()[0] == 250
    assert_nowhere(server, token)


def test_send_as_own_alias(server, ctx, token):
    msg = message(token, from_="Alice <%s>" % ALICE_ALIAS, to=BOB)
    with SMTP_SSL(server.submissions_port, ctx) as s:
        tls = tls_info(s)
        s.login(ALICE, USERS[ALICE])
        assert s.sendmail(ALICE_ALIAS, [BOB], msg) == {}
    check_stored(server, BOB, token, msg, ALICE_ALIAS, tls=tls, auth=ALICE)


def test_remote_recipient_spooled(server, ctx, token):
    remote = "friend-%s@remote.test" % token[-8:]
    msg = message(token, from_=ALICE, to=remote)
    before = set(server.queue_files())
    with SMTP(server.submission_port) as s:
        s.starttls(context=ctx)
        s.login(ALICE, USERS[ALICE])
        assert s.sendmail(ALICE, [remote, CAROL], msg) == {}
    # the local recipient gets it now, the remote one is spooled
    assert len(server.find_messages(CAROL, token)) == 1
    new = sorted(set(server.queue_files()) - before)
    msgs = [p for p in new if p.endswith(".msg")]
    envs = [p for p in new if p.endswith(".env")]
    assert len(msgs) == 1 and len(envs) == 1, new
    with open(msgs[0], "rb") as f:
        body = f.read()
    assert msg in body, "spooled body does not contain the message sent"
    with open(envs[0], "rb") as f:
        env = f.read().decode("utf-8", "replace")
    assert remote in env and ALICE in env, env
    assert CAROL not in env, "local recipient must not be spooled: %s" % env
    # no leftovers of a half-written spool file
    assert all(not os.path.basename(p).startswith(".") for p in new), new


# ------------------------------------------------------------------ limits

def test_oversize_size_param_552(server):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<x@remote.test> SIZE=%d" % (2 * LIMIT))
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
        assert "MB" in r.text, r
        assert c.cmd("MAIL FROM:<x@remote.test> SIZE=%d" % 1000).code == 250


def _big_body(token, size):
    line = ("x" * 998 + "\r\n").encode()
    head = message(token, to=ALICE, body="start\r\n")
    return head + line * (size // len(line) + 1)


def test_oversize_data_552(server, token):
    body = _big_body(token, LIMIT + 100 * 1024)
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(body)
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
        assert "MB" in r.text, r
        assert c.cmd("NOOP").code == 250
    assert_nowhere(server, token)


def test_oversize_submission_smtplib(server, ctx, token):
    body = _big_body(token, LIMIT + 1000)
    with SMTP_SSL(server.submissions_port, ctx) as s:
        s.login(ALICE, USERS[ALICE])
        # smtplib adds SIZE= itself: refused at MAIL
        with pytest.raises(smtplib.SMTPSenderRefused) as ei:
            s.sendmail(ALICE, [BOB], body.replace(b"From: sender@remote.test", b"From: " + ALICE.encode()))
        assert ei.value.smtp_code == 552 and ei.value.smtp_error.startswith(b"5.3.4"), ei.value
    assert_nowhere(server, token)


def test_oversize_bdat_552(server, token):
    body = _big_body(token, LIMIT + 10 * 1024)
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        r = c.reply()
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
        assert c.cmd("NOOP").code == 250
    assert_nowhere(server, token)


def test_exactly_at_size_limit_accepted(server, token):
    """A message just under the limit (counting the bytes sent) is accepted."""
    head = message(token, to=ALICE, body="start\r\n")
    pad = LIMIT - len(head) - 2000
    line = b"y" * 998 + b"\r\n"
    msg = head + line * (pad // 1000)
    with SMTP(server.smtp_port) as s:
        s.sendmail("x@remote.test", [ALICE], msg)
    check_stored(server, ALICE, token, msg, "x@remote.test")


def test_too_many_recipients_452(server, token):
    rcpts = ["r%d@example.test" % i for i in range(1, 7)]
    msg = message(token, to="r1@example.test")
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        for r_ in rcpts[:5]:
            r = c.cmd("RCPT TO:<%s>" % r_)
            assert r.code == 250, (r_, r)
        r = c.cmd("RCPT TO:<%s>" % rcpts[5])
        assert r.code == 452 and r.lines[0].startswith("4.5.3"), r
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r
    for r_ in rcpts[:5]:
        assert len(server.find_messages(r_, token)) == 1, r_
    assert server.find_messages(rcpts[5], token) == []


def test_overlong_command_line_500(server, token):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd("NOOP " + "x" * 5000)
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        assert c.cmd("NOOP").code == 250
        # a huge line together with the next command in one write: still in sync
        c.send(b"MAIL FROM:<" + b"a" * 70000 + b"@remote.test>\r\nNOOP\r\n")
        r = c.reply()
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        assert c.reply().code == 250
        # and a whole transaction still works
        msg = message(token, to=ALICE)
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r
    check_stored(server, ALICE, token, msg, "x@remote.test")


def test_too_many_errors_421(server):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        codes = []
        for i in range(12):
            try:
                r = c.cmd("BOGUS%d" % i)
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            codes.append(r.code)
            if r.code == 421:
                break
        # max_errors = 5: five 500s, then the sixth error is answered 421
        assert codes == [500] * 5 + [421], codes
        assert c.wait_closed(10), "server did not close after 421"


def test_per_ip_connection_limit(server):
    conns = []
    try:
        for i in range(10):
            conns.append(Raw(server.smtp_port))
            assert conns[-1].banner.code == 220
        with Raw(server.smtp_port, banner=False) as extra:
            r = extra.reply()
            assert r.code == 421 and r.lines[0].startswith("4.7.0"), r
            assert extra.wait_closed(10)
    finally:
        for c in conns:
            c.close()
    # once the connections are gone, new ones are welcome again
    def ok():
        try:
            with Raw(server.smtp_port, banner=False) as c:
                return c.reply().code == 220
        except (OSError, EOFError):
            return False
    wait_until(ok, 10, 0.1, "a new connection to be accepted after closing")


# ------------------------------------------------------------------ STARTTLS injection

def test_starttls_pipelined_command_discarded_25(server, ctx):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<x@remote.test>\r\n")
        r = c.reply()
        assert r.code == 220, r
        assert c.pending(0.3) == b"", "server answered the injected command in plaintext"
        c.sock = ctx.wrap_socket(c.sock, server_hostname=HOST)
        # the first thing we get over TLS must be the reply to what we send over TLS
        r = c.cmd("RCPT TO:<%s>" % ALICE)
        assert r.code == 503, "injected MAIL FROM was executed: RCPT -> %r" % r
        r = c.cmd("EHLO client.test")
        assert r.code == 250 and len(r.lines) > 1, "out of sync: EHLO -> %r" % r
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 503
        assert c.cmd("NOOP").code == 250


def test_starttls_pipelined_auth_discarded_587(server, ctx):
    with Raw(server.submission_port) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nAUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE]).encode() +
               b"\r\n")
        r = c.reply()
        assert r.code == 220, r
        assert c.pending(0.3) == b""
        c.sock = ctx.wrap_socket(c.sock, server_hostname=HOST)
        r = c.cmd("EHLO client.test")
        assert r.code == 250 and len(r.lines) > 1, "out of sync: EHLO -> %r" % r
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530, "injected AUTH was executed: MAIL -> %r" % r


# ------------------------------------------------------------------ SMTP smuggling

ENDINGS = {"lf-dot-lf": b"\n.\n", "cr-dot-cr": b"\r.\r", "lf-dot-crlf": b"\n.\r\n",
           "crlf-dot-lf": b"\r\n.\n"}


@pytest.mark.parametrize("port_name", ["smtp", "submissions"])
@pytest.mark.parametrize("ending", list(ENDINGS), ids=list(ENDINGS))
def test_smuggling(server, ctx, token, ending, port_name):
    tok2 = token + "-smuggled"
    if port_name == "smtp":
        c = Raw(server.smtp_port)
        sender = "x@remote.test"
    else:
        c = Raw(server.submissions_port, tls_context=ctx)
        sender = ALICE
    with c:
        c.ehlo()
        if port_name == "submissions":
            assert c.cmd("AUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE])).code == 235
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        first = (("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n"
                  "first message\r\n") % (sender, ALICE, token, token)).encode()
        smuggled = (("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                     "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nsmuggled\r\n") %
                    (sender, BOB, sender, BOB, tok2)).encode()
        c.send(first + ENDINGS[ending] + smuggled + b".\r\nQUIT\r\n")
        replies = []
        while True:
            try:
                replies.append(c.reply())
            except (EOFError, ConnectionResetError, ssl.SSLError):
                break
            if replies[-1].code == 221:
                break
    codes = [r.code for r in replies]
    assert len(replies) == 2 and codes[1] == 221, \
        "expected one reply to the data and one to QUIT, got %r" % replies
    # port 25 takes the message with its bare line ends as one message (smtp.bare_lf =
    # normalize); submission refuses it (bare_lf = reject there by default)
    want = 250 if port_name == "smtp" else 550
    assert codes[0] == want, replies
    # nothing smuggled to bob
    assert server.find_messages(BOB, tok2) == [], "smuggled message delivered to bob"
    holders = server.grep_store(tok2)
    mine = server.find_messages(ALICE, token)
    assert set(holders) <= set(mine), "smuggled text stored outside the one message: %s" % holders
    if codes[0] == 250:
        assert len(mine) == 1, mine
        with open(mine[0], "rb") as f:
            data = f.read()
        assert b"smuggled" in data and tok2.encode() in data
        # the stored file has only CRLF line ends and ends like the message
        assert data.endswith(b"\r\nsmuggled\r\n"), data[-80:]
        assert b"\n" not in data.replace(b"\r\n", b""), "bare LF stored: %r" % data
    else:
        assert mine == [], mine


# ------------------------------------------------------------------ extensions

def test_bdat_chunking(server, token):
    msg = message(token, to=ALICE, body="chunk one\r\n.not stuffed\r\n\r\n.\r\nstill body\r\n")
    a, b = msg[:100], msg[100:]
    with Raw(server.smtp_port) as c:
        c.ehlo()
        # pipelined MAIL, RCPT and the first BDAT in one write
        c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<%s>\r\nBDAT %d\r\n" % (ALICE.encode(), len(a)) + a)
        assert [c.reply().code for _ in range(3)] == [250, 250, 250]
        c.send(b"BDAT %d LAST\r\n" % len(b) + b)
        r = c.reply()
        assert r.code == 250, r
        assert c.cmd("NOOP").code == 250
    check_stored(server, ALICE, token, msg, "x@remote.test")


def test_bdat_zero_last_and_binarymime_free(server, ctx, token):
    msg = message(token, from_=ALICE, to=BOB)
    with Raw(server.submissions_port, tls_context=ctx) as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE])).code == 235
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 250
        assert c.cmd("RCPT TO:<%s>" % BOB).code == 250
        pieces = [msg[i:i + 37] for i in range(0, len(msg), 37)]
        for p in pieces:
            c.send(b"BDAT %d\r\n" % len(p) + p)
            assert c.reply().code == 250
        assert c.cmd("BDAT 0 LAST").code == 250
        tls = (c.sock.version(), c.sock.cipher()[0])
    check_stored(server, BOB, token, msg, ALICE, tls=tls, auth=ALICE)


def test_bdat_then_data_is_refused(server, token):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<x@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        c.send(b"BDAT 5\r\nabcde")
        assert c.reply().code == 250
        r = c.cmd("DATA")
        assert r.code == 503, r


def test_dsn_parameters_accepted_and_kept(server, ctx, token):
    remote = "dsn-%s@remote.test" % token[-8:]
    envid = "env-" + token
    orcpt = "orig-%s@remote.test" % token[-8:]
    msg = message(token, from_=ALICE, to=remote)
    before = set(server.queue_files())
    # held, so that the queue (whose DNS answers at once) keeps the envelope for us to read
    postino("queue", "hold", "--sender", ALICE, "--data", server.data)
    try:
        _send_dsn_message(server, ctx, remote, envid, orcpt, msg)
        assert len(server.find_messages(BOB, token)) == 1
        new = sorted(set(server.queue_files()) - before)
        envs = [p for p in new if p.endswith(".env")]
        assert len(envs) == 1, new
        with open(envs[0], "rb") as f:
            env = f.read().decode("utf-8", "replace")
    finally:
        postino("queue", "release", "--sender", ALICE, "--data", server.data)
    assert envid in env, "ENVID not kept with the spooled message: %s" % env
    assert orcpt in env, "ORCPT not kept: %s" % env
    assert "HDRS" in env.upper(), "RET not kept: %s" % env
    assert "SUCCESS" in env.upper() and "FAILURE" in env.upper(), "NOTIFY not kept: %s" % env


def _send_dsn_message(server, ctx, remote, envid, orcpt, msg):
    with Raw(server.submissions_port, tls_context=ctx) as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE])).code == 235
        r = c.cmd("MAIL FROM:<%s> RET=HDRS ENVID=%s" % (ALICE, envid))
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;%s" % (remote, orcpt))
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<%s> NOTIFY=NEVER" % BOB)
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r


def test_dsn_parameters_port25(server, token):
    msg = message(token, to=ALICE)
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@y.test> RET=FULL ENVID=abc").code == 250
        assert c.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r
    check_stored(server, ALICE, token, msg, "x@y.test")


def test_dsn_bad_parameters_refused(server):
    with Raw(server.smtp_port) as c:
        c.ehlo()
        # a known parameter with a bad value: 501; an unknown parameter: 555 (RFC 5321 4.2.2)
        r = c.cmd("MAIL FROM:<x@y.test> RET=BOGUS")
        assert r.code == 501, r
        assert c.cmd("MAIL FROM:<x@y.test>").code == 250
        r = c.cmd("RCPT TO:<%s> NOTIFY=NEVER,SUCCESS" % ALICE)
        assert r.code == 501, r
        r = c.cmd("RCPT TO:<%s> FROBNICATE=1" % ALICE)
        assert r.code == 555, r


def test_smtputf8(server, token):
    sender = "\u7528\u6237-%s@b\u00fccher.test" % token[-6:]
    msg = ("From: %s\r\nTo: %s\r\nSubject: \u00fcnic\u00f6de %s\r\nMessage-ID: <%s@client.test>\r\n"
           "\r\nh\u00e9llo\r\n" % (sender, ALICE, token, token)).encode("utf-8")
    with Raw(server.smtp_port) as c:
        c.ehlo()
        r = c.cmd(("MAIL FROM:<%s> SMTPUTF8 BODY=8BITMIME" % sender).encode("utf-8"))
        assert r.code == 250, r
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r
    check_stored(server, ALICE, token, msg, sender, proto="UTF8SMTP")


def test_rset_clears_transaction(server, token):
    msg = message(token, to=CAROL)
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % BOB).code == 250
        assert c.cmd("RSET").code == 250
        r = c.cmd("DATA")
        assert r.code == 503, r
        r = c.cmd("RCPT TO:<%s>" % CAROL)
        assert r.code == 503, r
        assert c.cmd("MAIL FROM:<y@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % CAROL).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r
    check_stored(server, CAROL, token, msg, "y@remote.test")
    assert server.find_messages(BOB, token) == []


def test_bad_sequence_and_syntax(server):
    with Raw(server.smtp_port) as c:
        r = c.cmd("MAIL FROM:<x@remote.test>")
        assert r.code == 503, "MAIL before EHLO: %r" % r
        c.ehlo()
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 503
        assert c.cmd("DATA").code == 503
        assert c.cmd("QUIT").code == 221
    # (max_errors = 5: a fresh session for the rest)
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:x@remote.test x").code == 501
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 503
        assert c.cmd("RCPT TO:<>").code == 501
        assert c.cmd("VRFY alice").code == 252
        assert c.cmd("NOOP").code == 250
        assert c.cmd("QUIT").code == 221
        assert c.wait_closed(5)


def test_null_sender_accepted_on_25(server, token):
    msg = message(token, from_="MAILER-DAEMON@remote.test", to=ALICE)
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(msg)
        assert r.code == 250, r
    check_stored(server, ALICE, token, msg, "")


# ------------------------------------------------------------------ swaks

@pytest.mark.parametrize("mode", ["587-starttls-plain", "587-starttls-login", "465-tlsc"])
def test_swaks(server, token, mode):
    port = server.submissions_port if mode.startswith("465") else server.submission_port
    args = ["swaks", "--server", "127.0.0.1", "--port", str(port),
            "--tls-verify", "--tls-ca-path", server.ca, "--tls-sni", HOST,
            "--auth", "LOGIN" if mode.endswith("login") else "PLAIN",
            "--auth-user", ALICE, "--auth-password", USERS[ALICE],
            "--from", ALICE, "--to", BOB, "--h-From", "<%s>" % ALICE,
            "--header", "Subject: swaks %s" % token, "--body", "body %s" % token,
            "--timeout", "20"]
    args.append("--tlsc" if mode.startswith("465") else "--tls")
    cp = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    files = server.find_messages(BOB, token)
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        _, blocks, _ = split_stored(f.read())
    assert "authenticated as %s" % ALICE in unfold(blocks[0])


# ------------------------------------------------------------------ bare LF policy

def test_bare_lf_normalized_on_25(server, token):
    sent = ("From: x@remote.test\nTo: %s\r\nSubject: %s\n\nline one\nline two\r\n"
            % (ALICE, token)).encode()
    with Raw(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(sent)
        assert r.code == 250, r
    check_stored(server, ALICE, token, sent.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
                 "x@remote.test")


def test_bare_lf_rejected_on_submission(server, ctx, token):
    sent = ("From: %s\nTo: %s\r\nSubject: %s\n\nline one\nline two\r\n"
            % (ALICE, BOB, token)).encode()
    with Raw(server.submissions_port, tls_context=ctx) as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + auth_plain_arg(ALICE, USERS[ALICE])).code == 235
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 250
        assert c.cmd("RCPT TO:<%s>" % BOB).code == 250
        assert c.cmd("DATA").code == 354
        r = c.data_body(sent)
        assert 500 <= r.code < 600, r
        assert c.cmd("NOOP").code == 250
    assert_nowhere(server, token)
