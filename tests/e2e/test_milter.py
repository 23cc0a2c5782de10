"""Issue 12: content filtering through milters.

(b) The action matrix against an independent milter: tests/e2e/pymilter_test.py, written with
Debian's python3-milter (pymilter over Sendmail's libmilter). Its Subject says what it does at
the end of the message: reject, tempfail, discard, replycode, header changes, quarantine, hang.
Its verdicts at CONNECT, HELO, MAIL and RCPT apply at that stage, as with Postfix's
smtpd_milters: the greeting, the EHLO, the MAIL or the one RCPT gets the refusal. A milter that
is down or slow gets milter_default_action at the stage where it failed, and the worker's other
sessions are served meanwhile.
(c) A raw-socket fake milter answers badly (oversized packets, unknown commands, early close,
garbage): the message gets the default action and the worker keeps serving.
"""
import imaplib
import json
import os
import socket
import smtplib
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import USERS, start_server, finish_server, let_workers_through, wait_until
from queuehelp import free_port
from smtphelp import SMTP, message

HERE = os.path.dirname(os.path.abspath(__file__))
ALICE = "alice@example.test"
# The milters are under test, not the SPF/DKIM/DMARC checks of port 25 (test_inbound_auth.py):
# without a test DNS zone their lookups would only wait for the machine's resolvers.
BASE = "smtp_greet_pause = 0\ninbound_auth = no\n"
BOB = "bob@example.test"
CONTENT_TIMEOUT = 3
COMMAND_TIMEOUT = 2


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def pymilter(tmp_path_factory):
    """The pymilter test milter on a loopback port; yields (port, logdir)."""
    logdir = str(tmp_path_factory.mktemp("pymilter-log"))
    for attempt in range(3):   # another process may take the free port first
        port = free_port()
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "pymilter_test.py"),
                                 str(port), logdir], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        wait_until(lambda: listening(port) or proc.poll() is not None, 15, 0.05,
                   "pymilter to listen")
        if proc.poll() is None:
            break
        out = proc.stdout.read()
    else:
        raise AssertionError("pymilter_test.py could not start: %s" % out)
    try:
        yield port, logdir
    finally:
        proc.kill()
        proc.wait(10)


class FakeMilter:
    """A raw-socket milter whose answers are scripted per connection (hostile cases)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.mode = "ok"
        self.seen = []
        self.stop = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c, self.mode), daemon=True).start()

    @staticmethod
    def pkt(cmd, data=b""):
        return struct.pack("!I", len(data) + 1) + cmd + data

    @staticmethod
    def until_closed(c, timeout=10):
        """Hold the connection until postino, having read what was sent, drops it."""
        c.settimeout(timeout)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass

    @staticmethod
    def read(c):
        hdr = b""
        while len(hdr) < 4:
            d = c.recv(4 - len(hdr))
            if not d:
                return None, None
            hdr += d
        n = struct.unpack("!I", hdr)[0]
        data = b""
        while len(data) < n:
            d = c.recv(n - len(data))
            if not d:
                return None, None
            data += d
        return data[:1], data[1:]

    def serve(self, c, mode):
        c.settimeout(20)
        try:
            cmd, data = self.read(c)
            self.seen.append(cmd)
            if mode == "close-at-optneg":
                return
            if mode == "huge-optneg":
                c.sendall(struct.pack("!I", 0xFFFFFFF0) + b"O")
                c.sendall(b"x" * 65536)
                return
            if mode == "zero-length":
                c.sendall(struct.pack("!I", 0))
                self.until_closed(c)
                return
            if mode == "short-optneg":
                c.sendall(self.pkt(b"O", b"\0\0\0\6"))
                self.until_closed(c)
                return
            if mode == "bad-flags":
                c.sendall(self.pkt(b"O", struct.pack("!III", 6, 0x3f, 0x7fffffff)))
                self.until_closed(c)
                return
            c.sendall(self.pkt(b"O", struct.pack("!III", 6, 0x31, 0)))
            while True:
                cmd, data = self.read(c)
                if cmd is None:
                    return
                self.seen.append(cmd)
                if cmd in (b"D", b"A"):   # macros and ABORT get no reply
                    continue
                if cmd == b"Q":
                    return
                if cmd == b"C" and mode == "unknown-reply":
                    c.sendall(self.pkt(b"Z", b"what"))
                    continue
                if cmd == b"H" and mode == "close-at-helo":
                    return
                if cmd == b"L" and mode == "addheader-early":
                    c.sendall(self.pkt(b"h", b"X-Early\0value\0"))
                    continue
                if cmd == b"B" and mode == "oversized-reply":
                    c.sendall(struct.pack("!I", 70000) + b"c" + b"y" * 69999)
                    continue
                if cmd == b"E":
                    if mode == "many-headers":
                        for i in range(300):
                            c.sendall(self.pkt(b"h", b"X-Flood\0%d\0" % i))
                    elif mode == "bad-header-name":
                        c.sendall(self.pkt(b"h", b"Bad Name:\0v\0"))
                    elif mode == "unterminated-header":
                        c.sendall(self.pkt(b"h", b"X-A\0no-nul"))
                    elif mode == "reply-injection":
                        c.sendall(self.pkt(b"y", b"250 2.0.0 ok\r\nRSET\0"))
                    elif mode == "reply-control":
                        c.sendall(self.pkt(b"y", b"554 5.7.1 bad\x1b[2Jtext\0"))
                    elif mode == "reply-not-4-5":
                        c.sendall(self.pkt(b"y", b"250 all fine\0"))
                    elif mode == "eom-then-close":
                        return
                    elif mode == "ok-header":
                        c.sendall(self.pkt(b"h", b"X-Fake\0checked\0"))
                    c.sendall(self.pkt(b"a"))
                    continue
                c.sendall(self.pkt(b"c"))
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture(scope="module")
def fake():
    f = FakeMilter()
    yield f
    f.close()


@pytest.fixture(scope="module")
def msrv(tmp_path_factory, pki, pymilter, fake):
    """port 25 through pymilter; submission through the fake milter; default tempfail."""
    root = str(tmp_path_factory.mktemp("milter-srv"))
    let_workers_through(root)
    port, _ = pymilter
    # one worker: the test of a slow milter shows that the same event loop serves others
    conf = (BASE + "workers = 1\n"
            "smtpd_milters = inet:127.0.0.1:%d\n"
            "submission_milters = inet:127.0.0.1:%d\n"
            "milter_content_timeout = %ds\n"
            "milter_command_timeout = %ds\n"
            "milter_default_action = tempfail\n" % (port, fake.port, CONTENT_TIMEOUT,
                                                    COMMAND_TIMEOUT))
    srv = start_server(root, pki, extra_conf=conf)
    yield srv
    finish_server(srv)


def sendmail(s, sender, rcpts, msg):
    """smtplib's sendmail; returns (stage, code, text, refused recipients): stage is where
    the transaction was refused ("mail", "rcpt" when every recipient was, "data") or "" for
    250 at the end of the message."""
    try:
        refused = s.sendmail(sender, list(rcpts), msg)
        return "", 250, "", refused
    except smtplib.SMTPSenderRefused as e:
        return "mail", e.smtp_code, e.smtp_error.decode("utf-8", "replace"), {}
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        return "rcpt", code, text.decode("utf-8", "replace"), e.recipients
    except smtplib.SMTPDataError as e:
        return "data", e.smtp_code, e.smtp_error.decode("utf-8", "replace"), {}


def send25(srv, token, subject_action=None, sender="sender@remote.test", rcpts=(ALICE,),
           body=None, extra_headers=(), want_stage=None):
    """Send over port 25; returns (code, text, elapsed). want_stage: the stage that must give
    the final answer ("" = the end of the message, the default for 250)."""
    subject = "test %s" % token + (" action=%s" % subject_action if subject_action else "")
    msg = message(token, subject=subject, body=body, extra_headers=extra_headers)
    t0 = time.monotonic()
    with SMTP(srv.smtp_port) as s:
        stage, code, text, _ = sendmail(s, sender, rcpts, msg)
        elapsed = time.monotonic() - t0
        assert s.noop()[0] == 250, "the session must stay usable after the milter's verdict"
    if want_stage is None:
        want_stage = "" if code == 250 else "data"
    assert stage == want_stage, (stage, code, text)
    return code, text, elapsed


def milter_log(pymilter, token):
    path = os.path.join(pymilter[1], token + ".json")
    wait_until(lambda: os.path.exists(path), 10, 0.05, "the milter's record of " + token)
    with open(path) as f:
        return json.load(f)


def test_every_stage_reaches_the_milter(msrv, pymilter, token):
    body = "".join("line %05d of a long body %s\r\n" % (i, "x" * 40) for i in range(4000))
    with SMTP(msrv.smtp_port) as s:
        myport = s.sock.getsockname()[1]
        s.sendmail("sender@remote.test", [ALICE, BOB],
                   message(token, subject="stages " + token, body=body))
    info = milter_log(pymilter, token)
    assert info["connect"]["family"] == socket.AF_INET
    assert info["connect"]["addr"] == ["127.0.0.1", myport]
    assert info["daemon_name"] == "smtp"
    assert info["helo"] == "client.test"
    assert info["from"] == "<sender@remote.test>"
    assert info["rcpts"] == ["<%s>" % ALICE, "<%s>" % BOB]
    assert info["queue_id"]
    names = [h[0] for h in info["headers"]]
    assert names[:3] == ["From", "To", "Subject"], names
    assert ["Subject", "stages " + token] in info["headers"]
    assert info["eoh"]
    # the body in bounded chunks, all of it
    assert info["body"] == len(body.encode())
    assert info["max_chunk"] <= 65535 and info["chunks"] >= 3
    assert msrv.find_messages(ALICE, token) and msrv.find_messages(BOB, token)


@pytest.mark.parametrize("action,code,words", [
    ("reject", 550, "5.7.1 Rejected by the spam filter"),
    ("tempfail", 451, "4.7.1 Deferred by the spam filter"),
    ("replycode", 554, "5.7.0 Rejected by the spam filter: Custom refusal from the test milter"),
    ("replycode4", 452, "4.3.1 Deferred by the spam filter: Milter busy, come back later"),
])
def test_refusals(msrv, token, action, code, words):
    got, text, _ = send25(msrv, token, action)
    assert got == code, text
    assert words in text
    assert not msrv.grep_store(token), "a refused message must be stored nowhere"


def test_discard(msrv, token):
    code, text, _ = send25(msrv, token, "discard")
    assert code == 250
    assert not msrv.grep_store(token)
    wait_until(lambda: b"event=discarded" in msrv.log_bytes(), 5, 0.05, "the discard log line")


def test_header_changes(msrv, token):
    code, text, _ = send25(msrv, token, "headers", extra_headers=("X-Remove-Me: please",))
    assert code == 250, text
    m = imaplib.IMAP4("127.0.0.1", msrv.ports["imap"], timeout=10)
    try:
        m.starttls(ssl_context=msrv.ssl_context())
        m.login(ALICE, USERS[ALICE])
        m.select("INBOX")
        typ, data = m.search(None, "HEADER", "X-Test-Milter", "\"added by pymilter\"")
        assert typ == "OK" and data[0], "the added header must be searchable"
        uid = data[0].split()[-1]
        typ, data = m.fetch(uid, "(BODY.PEEK[HEADER])")
        hdr = data[0][1].decode()
    finally:
        m.logout()
    assert "X-Test-Milter: added by pymilter\r\n" in hdr
    assert "Subject: changed by the milter\r\n" in hdr
    assert "X-Remove-Me" not in hdr
    assert ("test %s" % token) not in hdr
    lines = hdr.split("\r\n")
    # our trace (and our Authentication-Results) stays on top; the inserted field is the
    # first of the message's own
    assert lines[0].startswith("Return-Path:")
    i = 1
    while lines[i].startswith(("Received:", "Authentication-Results:", "\t", " ")):
        i += 1
    assert lines[i] == "X-Test-First: inserted on top", lines[:i + 2]
    # the body is untouched
    f = msrv.find_messages(ALICE, token)
    assert f and open(f[0], "rb").read().endswith(message(token).split(b"\r\n\r\n", 1)[1])


def test_quarantine_goes_to_junk(msrv, token):
    code, text, _ = send25(msrv, token, "quarantine")
    assert code == 250, text
    assert not msrv.find_messages(ALICE, token), "not in the INBOX"
    junk = [p for p in msrv.maildir_files(ALICE, "new", ".Junk") if token.encode() in
            open(p, "rb").read()]
    assert junk, "the quarantined message is in Junk"


class SMTPFrom(SMTP):
    """smtplib from another loopback address (the test milter judges 127.0.0.2 and .3)."""

    def __init__(self, src, port, **kw):
        self.src = src
        super().__init__(port, **kw)

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout, source_address=(self.src, 0))

    def connect(self, *args, **kw):
        self.greeting = super().connect(*args, **kw)
        return self.greeting


def test_connect_stage_reject_is_the_greeting(msrv):
    # smtplib refuses a session whose greeting is not 220
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", msrv.smtp_port, timeout=20, source_address=("127.0.0.2", 0))
    assert e.value.smtp_code == 554, e.value
    assert b"5.7.1" in e.value.smtp_error and b"spam filter" in e.value.smtp_error
    # as with Postfix, the refusal stands: EHLO is answered, every MAIL refused
    with SMTPFrom("127.0.0.2", msrv.smtp_port) as s:
        assert s.greeting[0] == 554 and s.greeting[1].startswith(b"5.7.1 "), s.greeting
        assert s.ehlo()[0] == 250
        code, text = s.mail("sender@remote.test")
        assert code == 550 and text.startswith(b"5.7.1 Rejected by the spam filter"), text
        assert s.rset()[0] == 250


def test_connect_stage_tempfail_refuses_mail(msrv, token):
    with SMTPFrom("127.0.0.3", msrv.smtp_port) as s:
        assert s.ehlo()[0] == 250
        stage, code, text, _ = sendmail(s, "sender@remote.test", [ALICE], message(token))
        assert (stage, code) == ("mail", 451) and "4.7.1 Deferred by the spam filter" in text, \
            (stage, code, text)
        assert s.noop()[0] == 250
    assert not msrv.grep_store(token)


def test_helo_stage_reject(msrv, token):
    with SMTP(msrv.smtp_port, local_hostname="reject-helo.test") as s:
        code, text = s.ehlo()
        assert code == 550 and b"5.7.1" in text and b"HELO refused by the test milter" in text
        # the refusal stands for the session: a later EHLO is answered, MAIL is refused
        assert s.ehlo("other.test")[0] == 250
        stage, code, text, _ = sendmail(s, "sender@remote.test", [ALICE], message(token))
        assert (stage, code) == ("mail", 550) and "HELO refused" in text, (stage, code, text)
    assert not msrv.grep_store(token)


def test_mail_stage_reject(msrv, token):
    code, text, _ = send25(msrv, token, sender="reject-mail@remote.test", want_stage="mail")
    assert code == 550 and "sender refused by the test milter" in text, text
    assert not msrv.grep_store(token)


def test_mail_stage_accept_skips_the_milter_for_that_message(msrv, token):
    with SMTP(msrv.smtp_port) as s:
        # accepted at MAIL: the milter's end-of-message verdict is never asked for
        stage, code, text, _ = sendmail(s, "accept-mail@remote.test", [ALICE], message(
            token, subject="test %s action=reject" % token))
        assert (stage, code) == ("", 250), (stage, code, text)
        # the next transaction of the session is judged again
        stage, code, text, _ = sendmail(s, "sender@remote.test", [ALICE], message(
            token + "b", subject="test %sb action=reject" % token))
        assert (stage, code) == ("data", 550), (stage, code, text)
    assert msrv.find_messages(ALICE, token) and not msrv.grep_store(token + "b")


@pytest.mark.parametrize("rcpt,code,words", [
    ("reject-rcpt@catchall.test", 550,
     b"5.7.1 Rejected by the spam filter: recipient refused by the test milter"),
    ("tempfail-rcpt@catchall.test", 451, b"4.7.1 Deferred by the spam filter"),
])
def test_rcpt_stage_refuses_only_that_recipient(msrv, token, rcpt, code, words):
    with SMTP(msrv.smtp_port) as s:
        stage, got, text, refused = sendmail(s, "sender@remote.test", [ALICE, rcpt],
                                             message(token))
    assert (stage, got) == ("", 250), (stage, got, text)
    assert list(refused) == [rcpt], refused
    assert refused[rcpt][0] == code and words in refused[rcpt][1], refused
    assert msrv.find_messages(ALICE, token), "the other recipient gets the message"
    assert not msrv.find_messages("catcher@example.test", token)


def test_rcpt_stage_discard(msrv, token):
    with SMTP(msrv.smtp_port) as s:
        stage, code, text, refused = sendmail(s, "sender@remote.test",
                                              [ALICE, "discard-rcpt@catchall.test"],
                                              message(token))
        assert (stage, code, refused) == ("", 250, {}), (stage, code, text)
        assert s.noop()[0] == 250
    assert not msrv.grep_store(token), "a discarded message is stored nowhere"
    wait_until(lambda: b"event=discarded" in msrv.log_bytes(), 5, 0.05, "the discard log line")


def test_slow_milter_times_out_at_rcpt_and_the_loop_serves_others(msrv, pymilter, token):
    got = {}
    marks = os.path.join(pymilter[1], "slow-rcpt.log")
    seen = os.path.getsize(marks) if os.path.exists(marks) else 0

    def slow():
        with SMTP(msrv.smtp_port) as s:
            assert s.ehlo()[0] == 250
            assert s.mail("sender@remote.test")[0] == 250
            t0 = time.monotonic()
            got["rcpt"] = s.rcpt("slow-rcpt@catchall.test")
            got["elapsed"] = time.monotonic() - t0
            # milter_default_action (tempfail) stands for the rest of the session
            got["rcpt2"] = s.rcpt(ALICE)
            s.rset()
            got["mail"] = s.mail("sender@remote.test")

    th = threading.Thread(target=slow)
    th.start()
    # the milter notes the slow RCPT when it has it: postino is waiting for its answer now
    wait_until(lambda: os.path.exists(marks) and os.path.getsize(marks) > seen, 10, 0.02,
               "the slow RCPT to reach the milter")
    t0 = time.monotonic()
    code, text, _ = send25(msrv, token)   # another session on the same worker (workers = 1)
    other = time.monotonic() - t0
    th.join(30)
    assert code == 250, text
    assert other < COMMAND_TIMEOUT - 0.5, "another session waited %.2fs for the slow milter" % other
    assert got["elapsed"] >= COMMAND_TIMEOUT - 0.2, got
    assert got["elapsed"] < COMMAND_TIMEOUT + 3, got
    code, text = got["rcpt"]
    assert code == 451 and b"4.7.1 The spam filter is not available" in text, got
    assert got["rcpt2"][0] == 451 and got["mail"][0] == 451, got
    assert msrv.find_messages(ALICE, token)
    assert b"stage=rcpt" in msrv.log_bytes()


def test_hanging_milter_times_out(msrv, token):
    code, text, elapsed = send25(msrv, token, "hang")
    assert code == 451 and "spam filter is not available" in text, text
    assert elapsed >= CONTENT_TIMEOUT - 0.2
    assert not msrv.grep_store(token)
    # the next message of another session is served normally
    code, text, _ = send25(msrv, token + "b")
    assert code == 250, text


def test_milter_down_default_tempfail(tmp_path, pki, token):
    dead = free_port()
    srv = start_server(str(tmp_path / "down"), pki, extra_conf=(
        BASE + "smtpd_milters = inet:127.0.0.1:%d\n" % dead))
    try:
        # Postfix's behaviour: the greeting is 220, every MAIL gets the default action
        code, text, _ = send25(srv, token, want_stage="mail")
        assert code == 451 and "4.7.1 The spam filter is not available" in text, text
        assert not srv.grep_store(token)
        assert b"event=milter-failed" in srv.log_bytes()
        assert b"stage=connect" in srv.log_bytes()
    finally:
        finish_server(srv)


def test_milter_down_default_accept_and_reject(tmp_path, pki, token):
    dead = free_port()
    srv = start_server(str(tmp_path / "acc"), pki, extra_conf=(
        BASE + "smtpd_milters = inet:127.0.0.1:%d\n"
        "milter_default_action = accept\n"
        "submission.milters = inet:127.0.0.1:%d\n" % (dead, dead)))
    try:
        code, text, _ = send25(srv, token)
        assert code == 250, text
        assert srv.find_messages(ALICE, token)
    finally:
        finish_server(srv)
    srv = start_server(str(tmp_path / "rej"), pki, extra_conf=(
        BASE + "smtp.milters = inet:127.0.0.1:%d\n"
        "milter_default_action = reject\n" % dead))
    try:
        with pytest.raises(smtplib.SMTPConnectError) as e:
            smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=20)
        assert e.value.smtp_code == 554, e.value
        assert b"5.7.1" in e.value.smtp_error and b"spam filter" in e.value.smtp_error
    finally:
        finish_server(srv)


def test_config_refuses_bad_milters(tmp_path, pki):
    from conftest import postino
    with pytest.raises(AssertionError) as e:
        start_server(str(tmp_path / "bad"), pki, extra_conf="smtpd_milters = tcp:1.2.3.4\n")
    assert "inet:host:port" in str(e.value)
    data = str(tmp_path / "bad" / "data")
    conf = os.path.join(data, "postino.conf")
    text = open(conf).read().replace("smtpd_milters = tcp:1.2.3.4\n", "smtpd_milters = "
                                     "inet:127.0.0.1:11332\nmilter_default_action = maybe\n")
    with open(conf, "w") as f:
        f.write(text)
    cp = postino("config", "check", "--data", data, check=False)
    assert cp.returncode == 1 and "expects tempfail, accept or reject, got 'maybe'" in cp.stderr, \
        cp.stderr


# ------------------------------------------------------------------ (c) hostile milters

def submit587(srv, token):
    msg = message(token, from_=ALICE, to=BOB)
    with SMTP(srv.submission_port) as s:
        code, text = s.ehlo()
        if code != 250:   # a milter that failed at HELO: the EHLO gets the default action
            return code, text.decode("utf-8", "replace")
        s.starttls(context=srv.ssl_context())
        s.login(ALICE, USERS[ALICE])
        _, code, text, _ = sendmail(s, ALICE, [BOB], msg)
        assert s.noop()[0] == 250
    return code, text


@pytest.mark.parametrize("mode", [
    "close-at-optneg", "huge-optneg", "zero-length", "short-optneg", "bad-flags",
    "unknown-reply", "close-at-helo", "addheader-early", "oversized-reply", "many-headers",
    "bad-header-name", "unterminated-header", "reply-injection", "reply-control",
    "reply-not-4-5", "eom-then-close",
])
def test_hostile_milter_gets_default_action(msrv, fake, token, mode):
    fake.mode = mode
    code, text = submit587(msrv, token)
    assert code == 451 and "4.7.1 The spam filter is not available" in text, (mode, text)
    assert not msrv.grep_store(token)
    assert "RSET" not in text and "\x1b" not in text
    # the same worker still serves, and a sane answer from the same fake is honoured
    fake.mode = "ok-header"
    code, text = submit587(msrv, token + "ok")
    assert code == 250, text
    f = msrv.find_messages(BOB, token + "ok")
    assert f and b"X-Fake: checked\r\n" in open(f[0], "rb").read()
    assert not msrv.sanitizer_reports()
    assert b"worker-died" not in msrv.log_bytes() and b"signal" not in msrv.log_bytes()
