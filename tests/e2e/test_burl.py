"""BURL (RFC 4468) on the submission ports with Python's smtplib and imaplib: a draft saved over
IMAP is sent by reference (a URLAUTH URL with access submit+USER, made by GENURLAUTH), alone or
after a BDAT chunk, and arrives with the right body; a bad, expired or wrong-access URL is
refused with 554 5.7.0, one that does not resolve with 554 5.6.6; BURL is not offered on port 25
or before AUTH.
"""
import re
import time

import pytest

from smtphelp import SMTP, SMTP_SSL
from test_imap_helpers import _no_crash, imaplib_login, new_user, srv  # noqa: F401

HOST = "mail.example.test"


def draft(sender, to, body):
    return ("From: %s\r\nTo: %s\r\nSubject: burl test\r\nMessage-ID: <%s@client.test>\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n%s"
            % (sender, to, time.time_ns(), body)).encode()


def save_draft(srv, user, msg, box="Drafts"):  # noqa: F811
    m = imaplib_login(srv, user, "imaps")
    typ, dat = m.append(box, "(\\Draft)", None, msg)
    assert typ == "OK", dat
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", dat[0]).group(1))
    return m, uid


def genurlauth(m, user, uid, access, box="Drafts", extra=""):
    local, domain = user.split("@")
    rump = "imap://%s@%s/%s/;UID=%d%s;URLAUTH=%s" % (local, domain, box, uid, extra, access)
    m.untagged_responses.pop("GENURLAUTH", None)
    typ, dat = m.xatom("GENURLAUTH", '"%s"' % rump, "INTERNAL")
    assert typ == "OK", dat
    url = m.untagged_responses.pop("GENURLAUTH")[0]
    return (url.decode() if isinstance(url, bytes) else url).strip('"')


def submit(srv, user, implicit=False):  # noqa: F811
    if implicit:
        c = SMTP_SSL(srv.port("submissions"), srv.ctx())
    else:
        c = SMTP(srv.port("submission"))
        c.starttls(context=srv.ctx())
    c.ehlo()
    assert not c.has_extn("burl"), "BURL offered before AUTH"
    c.login(user, srv.password)
    c.ehlo()
    return c


def inbox_bodies(srv, user):  # noqa: F811
    m = imaplib_login(srv, user, "imaps")
    m.select("INBOX")
    typ, dat = m.fetch("1:*", "(BODY.PEEK[])")
    m.logout()
    return [d[1] for d in dat if isinstance(d, tuple)]


def wait_bodies(srv, user, n, timeout=10):  # noqa: F811
    end = time.time() + timeout
    while True:
        got = inbox_bodies(srv, user)
        if len(got) >= n or time.time() > end:
            return got
        time.sleep(0.2)


@pytest.fixture
def pair(srv):  # noqa: F811
    return new_user(srv, "sender"), new_user(srv, "rcpt")


def test_burl_submit_arrives(srv, pair):  # noqa: F811
    sender, rcpt = pair
    body = "the draft's body\r\n.a dotted line\r\nend\r\n"
    msg = draft(sender, rcpt, body)
    m, uid = save_draft(srv, sender, msg)
    url = genurlauth(m, sender, uid, "submit+" + sender)
    c = submit(srv, sender)
    assert c.has_extn("burl")
    assert c.esmtp_features["burl"].split() == ["imap", "imap://" + HOST]
    c.mail(sender)
    assert c.rcpt(rcpt)[0] == 250
    code, text = c.docmd("BURL", url + " LAST")
    assert code == 250, text
    # BDAT and BURL mixed (RFC 4468 4): a header chunk, then the draft's body by reference
    part = genurlauth(m, sender, uid, "submit+" + sender, extra="/;SECTION=TEXT")
    head = ("From: %s\r\nTo: %s\r\nSubject: mixed\r\n\r\n" % (sender, rcpt)).encode()
    c.mail(sender)
    c.rcpt(rcpt)
    c.send(b"BDAT %d\r\n" % len(head) + head)
    code, text = c.getreply()
    assert code == 250, text
    code, text = c.docmd("BURL", part + " LAST")
    assert code == 250, text
    c.quit()
    m.logout()
    got = wait_bodies(srv, rcpt, 2)
    assert len(got) == 2
    assert got[0].endswith(msg), got[0][-300:]
    assert re.search(rb"^Received: .*\r\n\tby %s .* with ESMTPSA" % HOST.encode(), got[0], re.M)
    assert got[1].endswith(head + body.encode())


def test_burl_over_465_and_own_mailbox_without_urlauth(srv, pair):  # noqa: F811
    sender, rcpt = pair
    msg = draft(sender, rcpt, "by reference over 465\r\n")
    m, uid = save_draft(srv, sender, msg)
    m.logout()
    local, domain = sender.split("@")
    c = submit(srv, sender, implicit=True)
    c.mail(sender)
    c.rcpt(rcpt)
    # the submission server trusts this IMAP server: the user's own draft needs no URLAUTH
    code, text = c.docmd("BURL", "imap://%s@%s/Drafts/;UID=%d LAST" % (local, domain, uid))
    assert code == 250, text
    c.quit()
    assert wait_bodies(srv, rcpt, 1)[0].endswith(msg)


def test_burl_bad_urls_refused(srv, pair):  # noqa: F811
    sender, rcpt = pair
    other = new_user(srv, "other")
    msg = draft(sender, rcpt, "never sent\r\n")
    m, uid = save_draft(srv, sender, msg)
    good = genurlauth(m, sender, uid, "submit+" + sender)
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    expired = genurlauth(m, sender, uid, "submit+" + sender, extra=";EXPIRE=" + past)
    user_only = genurlauth(m, sender, uid, "user+" + sender)
    for_other = genurlauth(m, sender, uid, "submit+" + other)
    gone = genurlauth(m, sender, uid + 50, "submit+" + sender)
    tampered = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    c = submit(srv, sender)
    for url, want in ((tampered, "5.7.0"), (expired, "5.7.0"), (user_only, "5.7.0"),
                      (for_other, "5.7.0"), (gone, "5.6.6")):
        c.mail(sender)
        c.rcpt(rcpt)
        code, text = c.docmd("BURL", url + " LAST")
        assert code == 554 and text.decode().startswith(want), (url, code, text)
        assert c.rset()[0] == 250
    # the other user cannot use a submit+sender URL, and RESETKEY ends a good one
    o = submit(srv, other)
    o.mail(other)
    o.rcpt(rcpt)
    code, text = o.docmd("BURL", good + " LAST")
    assert code == 554 and text.startswith(b"5.7.0"), text
    o.quit()
    typ, dat = m.xatom("RESETKEY")
    assert typ == "OK", dat
    c.mail(sender)
    c.rcpt(rcpt)
    code, text = c.docmd("BURL", good + " LAST")
    assert code == 554 and text.startswith(b"5.7.0"), text
    c.rset()
    # the same checks as DATA: a From: that is not the user's is refused at the end
    forged = draft("boss@example.test", rcpt, "spoofed\r\n")
    m2, uid2 = save_draft(srv, sender, forged)
    url2 = genurlauth(m2, sender, uid2, "submit+" + sender)
    c.mail(sender)
    c.rcpt(rcpt)
    code, text = c.docmd("BURL", url2 + " LAST")
    assert code == 553 and text.startswith(b"5.7.1"), text
    c.quit()
    m.logout()
    m2.logout()
    assert inbox_bodies(srv, rcpt) == []


def test_burl_not_offered_on_port_25_or_before_auth(srv, pair):  # noqa: F811
    sender, rcpt = pair
    c = SMTP(srv.port("smtp"))
    c.ehlo()
    assert not c.has_extn("burl")
    c.mail("someone@remote.test")
    c.rcpt(rcpt)
    code, text = c.docmd("BURL", "imap://x@example.test/INBOX/;UID=1 LAST")
    assert code == 502, text
    c.quit()
    c = SMTP(srv.port("submission"))
    c.starttls(context=srv.ctx())
    c.ehlo()
    assert not c.has_extn("burl")
    code, text = c.docmd("BURL", "imap://x@example.test/INBOX/;UID=1 LAST")
    assert code == 530 and text.startswith(b"5.7.0"), text
    c.quit()


def test_burl_size_limit_and_keys_survive_a_restart():
    """message_size_limit bounds what BURL adds (552 5.3.4, nothing delivered); a URL made
    before a restart still works after it (the key is on disk, not in a worker's memory)."""
    import os
    import signal
    import subprocess

    import postino_server
    from test_imap_helpers import make_server
    s = make_server(extra_conf="message_size_limit = 1M\n")
    try:
        sender, rcpt = new_user(s, "sender"), new_user(s, "rcpt")
        big = draft(sender, rcpt, "y" * 600000 + "\r\n")
        m, uid = save_draft(s, sender, big)
        url = genurlauth(m, sender, uid, "submit+" + sender)
        m.logout()
        head = ("X-Filler: %s\r\n" % ("z" * 990)) * 500     # ~500 KB before the draft
        c = submit(s, sender)
        c.mail(sender)
        c.rcpt(rcpt)
        c.send(b"BDAT %d\r\n" % len(head) + head.encode())
        assert c.getreply()[0] == 250
        code, text = c.docmd("BURL", url + " LAST")
        assert code == 552 and text.startswith(b"5.3.4"), text
        c.quit()
        # restart: same data directory, new processes (stop() would remove the directory)
        os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(10)
        s.proc = subprocess.Popen([postino_server.BIN, "serve", "--data", s.data],
                                  stdout=s.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        s.wait_ready()
        c = submit(s, sender)
        c.mail(sender)
        c.rcpt(rcpt)
        code, text = c.docmd("BURL", url + " LAST")
        assert code == 250, text
        c.quit()
        got = wait_bodies(s, rcpt, 1)
        assert len(got) == 1 and got[0].endswith(big)
    finally:
        s.stop()
