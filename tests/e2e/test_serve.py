"""postino serve as a process: reload on SIGHUP, graceful stop on SIGTERM, idle timeouts,
privilege drop to run_user (issue 2)."""
import os
import pwd
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import refuses, wait_until
from postino_server import BIN, Server

USER = "alice@example.test"


def read_reply(f):
    lines = []
    while True:
        l = f.readline()
        lines.append(l)
        if len(l) < 4 or l[3:4] != b"-":
            return b"".join(lines)


def test_sighup_reloads_configuration(tmp_path):
    srv = Server(extra_conf="max_recipients = 2", users=(USER,))
    try:
        old = smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10)
        old.ehlo()
        with open(os.path.join(srv.data, "postino.conf"), "a") as f:
            f.write("max_recipients = 3\n")
        os.kill(srv.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        codes = []
        while time.time() < deadline:
            try:
                s = smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10)
                s.ehlo()
                s.mail("a@remote.test")
                codes = [s.rcpt(USER)[0] for _ in range(4)]
                s.quit()
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                codes = []   # accepted by a retiring worker: it said 421; a client retries
            if codes == [250, 250, 250, 452]:
                break
            time.sleep(0.1)   # polls until a new worker (the new setting) answers
        assert codes == [250, 250, 250, 452]
        # an idle connection of a retiring worker is told to come back (421), never dropped: the
        # master sent the old workers SIGTERM before it started the new ones that answered above
        old.sock.settimeout(10)
        code, text = old.getreply()
        assert code == 421, (code, text)
        assert srv.proc.poll() is None
        # the listening sockets never closed: connections keep working
        for _ in range(5):
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
                assert s.noop()[0] == 250
    finally:
        srv.stop()


def test_sigterm_lets_a_message_in_flight_finish():
    srv = Server(users=(USER,))
    try:
        sock = socket.create_connection(("127.0.0.1", srv.port("smtp")), 10)
        f = sock.makefile("rb")
        read_reply(f)
        for c in (b"EHLO t", b"MAIL FROM:<a@remote.test>", b"RCPT TO:<%s>" % USER.encode(),
                  b"DATA"):
            sock.sendall(c + b"\r\n")
            read_reply(f)
        sock.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
        os.kill(srv.proc.pid, signal.SIGTERM)
        # every worker has begun to stop once the port refuses (each closes its listening
        # socket first): the rest of the message reaches a stopping worker
        wait_until(lambda: refuses(srv.port("smtp")), 10, 0.02, "the workers to stop listening")
        sock.sendall(b"second half\r\n.\r\n")
        assert read_reply(f).startswith(b"250 ")
        rest = read_reply(f)   # then the server says goodbye and closes
        assert rest.startswith(b"421 "), rest
        assert srv.proc.wait(15) == 0
        files = os.listdir(os.path.join(srv.maildir(USER), "new"))
        assert len(files) == 1
        assert b"second half" in open(os.path.join(srv.maildir(USER), "new", files[0]),
                                      "rb").read()
    finally:
        srv.stop()


def test_idle_client_gets_timeout_reply():
    srv = Server(extra_conf="smtp.command_timeout = 2s", users=(USER,))
    try:
        sock = socket.create_connection(("127.0.0.1", srv.port("smtp")), 10)
        f = sock.makefile("rb")
        read_reply(f)
        t0 = time.time()
        reply = read_reply(f)
        assert reply.startswith(b"421 4.4.2"), reply
        assert 1.5 < time.time() - t0 < 10
        assert f.readline() == b""   # closed
    finally:
        srv.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_workers_run_as_run_user(tmp_path):
    srv = Server(users=(USER,), quickstart_args=("--user", "nobody"))
    try:
        # the data dir must belong to the run user, as quickstart --user arranges
        nobody = pwd.getpwnam("nobody")
        master = srv.proc.pid

        def uids():
            kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                                  text=True).stdout.split()
            out = []
            for k in kids:
                try:
                    status = open("/proc/%s/status" % k).read()
                except OSError:
                    continue
                uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0]
                out.append(uid_line.split()[1:])
            return out
        # the listening sockets accept before the children have dropped privileges (and the
        # master's run_user probe is a short-lived root child): wait for 2 workers + the queue
        try:
            wait_until(lambda: len(uids()) >= 3 and
                       all(u == [str(nobody.pw_uid)] * 4 for u in uids()), 10, 0.05,
                       "the children to run as nobody")
        except AssertionError:
            raise AssertionError("children's uids: %r" % uids())
        assert os.stat("/proc/%d" % master).st_uid == 0
    finally:
        srv.stop()


def test_plaintext_client_on_implicit_tls_port_is_told_what_to_change():
    srv = Server(users=(USER,), wait_for=("smtp", "pop3", "imap"))
    try:
        for name, want in (("submissions", b"554 5.7.0"), ("imaps", b"* BYE [PRIVACYREQUIRED]"),
                           ("pop3s", b"-ERR [SYS/PERM]")):
            # a client that waits for a greeting
            s = socket.create_connection(("127.0.0.1", srv.port(name)), 10)
            line = s.makefile("rb").readline()
            assert line.startswith(want) and b"SSL/TLS" in line, (name, line)
            s.close()
            # a client that talks first
            s = socket.create_connection(("127.0.0.1", srv.port(name)), 10)
            s.sendall(b"EHLO x\r\n" if name == "submissions" else b"a CAPABILITY\r\n")
            line = s.makefile("rb").readline()
            assert line.startswith(want), (name, line)
            s.close()
        # real TLS clients are unaffected
        with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=srv.ctx()) as s:
            assert s.noop()[0] == 250
    finally:
        srv.stop()


def test_tls_client_on_starttls_port_is_served_as_implicit_tls():
    """A client set to "SSL/TLS" on 587, 143 or 110 gets TLS at once (forgiving ports); a
    plaintext client there still gets its greeting and STARTTLS. The margin is raised to the old
    fixed 250 ms so a client slowed down by a loaded test machine cannot miss the wait (the
    default's trade-off is test_late_clienthello_on_starttls_port's)."""
    import imaplib
    import poplib
    srv = Server(users=(USER,), wait_for=("smtp", "pop3", "imap"),
                 extra_conf="tls_hello_margin_ms = 250")
    try:
        with smtplib.SMTP_SSL("127.0.0.1", srv.port("submission"), context=srv.ctx(),
                              timeout=10) as s:
            s.login(USER, srv.password)
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imap"), ssl_context=srv.ctx(), timeout=10)
        m.login(USER, srv.password)
        m.logout()
        p = poplib.POP3_SSL("127.0.0.1", srv.port("pop3"), context=srv.ctx(), timeout=10)
        p.user(USER)
        p.pass_(srv.password)
        p.quit()
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
            s.starttls(context=srv.ctx())
            s.login(USER, srv.password)
        m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
        assert "LOGINDISABLED" in m.capabilities
        m.starttls(srv.ctx())
        m.login(USER, srv.password)
        m.logout()
    finally:
        srv.stop()


GREETING = {"submission": b"220 ", "imap": b"* OK", "pop3": b"+OK"}


def _greeting_delay(port):
    """Seconds from connect until a silent (plaintext) client has its greeting line."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    try:
        t0 = time.monotonic()
        line = s.makefile("rb").readline()
        return time.monotonic() - t0, line
    finally:
        s.close()


def test_plaintext_client_on_starttls_port_greeted_without_fixed_wait():
    """On 587, 143 and 110 the wait for a possible ClientHello is sized from the connection's
    round-trip time (a few ms on loopback), not a fixed 250 ms: a plaintext client that waits
    for the greeting gets it at once. Behavioural check only: the best of five connections is
    well under the old fixed wait."""
    srv = Server(users=(USER,), wait_for=("smtp", "pop3", "imap"))
    try:
        for name, want in GREETING.items():
            best = None
            for _ in range(5):
                took, line = _greeting_delay(srv.port(name))
                assert line.startswith(want), (name, line)
                best = took if best is None else min(best, took)
            assert best < 0.150, (name, best)
    finally:
        srv.stop()


def test_late_clienthello_on_starttls_port():
    """The trade-off of the short wait: a TLS client whose ClientHello comes later than a few
    round trips + tls_hello_margin_ms (default 3 ms) has already been greeted in plaintext; it
    reads "220 ..." as a bad TLS record and fails, which cannot be rescued (here 300 ms late).
    The server is not harmed and keeps serving. Raising tls_hello_margin_ms serves such slow
    clients: with 1000 ms, a ClientHello sent 20 ms after connecting gets TLS."""
    import imaplib
    srv = Server(users=(USER,), wait_for=("smtp", "pop3", "imap"))
    try:
        for name in GREETING:
            raw = socket.create_connection(("127.0.0.1", srv.port(name)), 10)
            time.sleep(0.3)   # the subject: a ClientHello later than the server waits
            with pytest.raises((ssl.SSLError, ConnectionError)):
                srv.ctx().wrap_socket(raw, server_hostname="mail.example.test")
            raw.close()
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10) as s:
            s.starttls(context=srv.ctx())
            s.login(USER, srv.password)
        assert srv.proc.poll() is None
    finally:
        srv.stop()
    srv = Server(users=(USER,), wait_for=("smtp", "pop3", "imap"),
                 extra_conf="tls_hello_margin_ms = 1000")
    try:
        for name, want in GREETING.items():
            raw = socket.create_connection(("127.0.0.1", srv.port(name)), 10)
            time.sleep(0.02)   # the subject: a ClientHello 20 ms late, within the margin
            with srv.ctx().wrap_socket(raw, server_hostname="mail.example.test") as t:
                line = t.makefile("rb").readline()
                assert line.startswith(want), (name, line)
        m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)   # plaintext: 1 s wait
        m.starttls(srv.ctx())
        m.login(USER, srv.password)
        m.logout()
    finally:
        srv.stop()
