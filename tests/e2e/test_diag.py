"""Login diagnostics (issue 6): each kind of failed login, provoked over real sockets, is
recorded with protocol, port, client name and address (`postino user diag ADDRESS`, and
`postino diag ip ADDRESS` for TLS handshake failures), and the client sees one sentence that
names the fix -- the same for an unknown user as for a wrong password.

Run: POSTINO_BIN=$PWD/build/postino /usr/bin/python3 -m pytest -q -p no:cacheprovider \
     tests/e2e/test_diag.py
"""
import base64
import imaplib
import os
import poplib
import re
import smtplib
import socket
import ssl

import pytest

from conftest import USERS, HOST, postino, start_server, finish_server, wait_until
from smtphelp import SMTP

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


@pytest.fixture(scope="module")
def srv(workdir, pki):
    s = start_server(os.path.join(workdir, "diag"), pki, extra_conf="workers = 2\n")
    yield s
    finish_server(s)


def diag(srv, *args):
    return postino(*args, "--data", srv.data).stdout


def wait_diag(srv, args, pattern, what):
    """Events are written on the worker's pool: wait for the line to show up."""
    out = {}

    def seen():
        out["text"] = diag(srv, *args)
        return re.search(pattern, out["text"])
    try:
        wait_until(seen, 10, 0.1, what)
    except AssertionError:
        raise AssertionError("%s not in:\n%s" % (pattern, out.get("text")))
    return out["text"]


def imap_id(conn, name, version):
    had = "ID" in imaplib.Commands
    conn.xatom("ID", '("name" "%s" "version" "%s")' % (name, version))
    if not had:   # xatom registers the command for the current state only: undo that
        del imaplib.Commands["ID"]


def test_imap_plaintext_login_refused(srv):
    port = srv.ports["imap"]
    conn = imaplib.IMAP4("127.0.0.1", port)
    imap_id(conn, "Thunderbird", "115.3")
    with pytest.raises(imaplib.IMAP4.error) as e:
        conn.login(ALICE, USERS[ALICE])
    assert "[PRIVACYREQUIRED]" in str(e.value) and "encryption" in str(e.value)
    conn.logout()
    out = wait_diag(srv, ("user", "diag", ALICE),
                    r"login without TLS refused\s+IMAP port %d without TLS from 127\.0\.0\.1 "
                    r"\(Thunderbird 115\.3\)" % port, "the plaintext IMAP event")
    assert ("1 failed login from 127.0.0.1 with Thunderbird 115.3 over IMAP port %d without "
            "TLS: turn on SSL/TLS, port %d" % (port, srv.ports["imaps"])) in out, out


def test_plaintext_client_on_ssl_port(srv):
    port = srv.ports["pop3s"]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"USER carol@example.test\r\n")
        s.settimeout(10)
        line = s.recv(500)
    assert line.startswith(b"-ERR") and b"SSL/TLS" in line, line
    out = wait_diag(srv, ("diag", "ip", "127.0.0.1"),
                    r"login without TLS refused\s+POP3 \(SSL\) port %d without TLS" % port,
                    "the plaintext-on-SSL-port event")
    assert ("on a port that needs SSL/TLS from the start: turn on SSL/TLS in the mail program "
            "(or use port %d with STARTTLS)" % srv.ports["pop3"]) in out, out


def test_wrong_password_and_unknown_user_look_the_same(srv):
    port = srv.ports["imaps"]
    errors = []
    for user, pw in ((BOB, "wrong-1"), (BOB, "wrong-2"), (BOB, "wrong-3"),
                     ("nosuchuser@example.test", "whatever")):
        conn = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=_ctx_ip(srv))
        imap_id(conn, "K-9 Mail", "6.7")
        with pytest.raises(imaplib.IMAP4.error) as e:
            conn.login(user, pw)
        errors.append(str(e.value))
        conn.logout()
    assert all("[AUTHENTICATIONFAILED]" in m for m in errors), errors
    assert len(set(errors)) == 1, "unknown user and wrong password must look the same: %s" % errors
    out = wait_diag(srv, ("user", "diag", BOB), r"(?s)wrong password.*wrong password.*wrong password",
                    "three wrong-password events")
    assert re.search(r"wrong password\s+IMAP \(SSL\) port %d with TLS from 127\.0\.0\.1 "
                     r"\(K-9 Mail 6\.7\)" % port, out), out
    assert "reset it with `postino user passwd %s`" % BOB in out, out
    assert re.search(r"wrong password 3 times from 127\.0\.0\.1 with K-9 Mail 6\.7 over IMAP "
                     r"\(SSL\) port %d" % port, out), out
    # the brute-force brake answered the later ones slowly: shown as rate-limited
    assert "rate-limited" in out, out
    out = wait_diag(srv, ("user", "diag", "nosuchuser@example.test"), r"unknown user",
                    "the unknown-user event")
    assert "not an account" in out and "full email address" in out, out


def _ctx_ip(srv):
    ctx = srv.ssl_context()
    ctx.check_hostname = False
    return ctx


def test_successful_login_is_shown(srv):
    conn = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=_ctx_ip(srv))
    imap_id(conn, "Thunderbird", "128.0")
    conn.login(CAROL, USERS[CAROL])
    conn.logout()
    wait_diag(srv, ("user", "diag", CAROL),
              r"IMAP \(SSL\)\s+\d{4}-\d\d-\d\d [\d:]+ from 127\.0\.0\.1 \(Thunderbird 128\.0\)",
              "the last successful login")


def test_pop3_plaintext_and_wrong_password(srv):
    p = poplib.POP3("127.0.0.1", srv.ports["pop3"])
    with pytest.raises(poplib.error_proto) as e:
        p.user(CAROL)
    assert b"[AUTH]" in e.value.args[0] and b"encryption" in e.value.args[0]
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", srv.ports["pop3s"], context=_ctx_ip(srv))
    p.user(CAROL)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("not-the-password")
    assert e.value.args[0].startswith(b"-ERR [AUTH]"), e.value.args
    p.quit()
    out = wait_diag(srv, ("user", "diag", CAROL),
                    r"wrong password\s+POP3 \(SSL\) port %d with TLS" % srv.ports["pop3s"],
                    "the POP3 wrong-password event")
    assert re.search(r"login without TLS refused\s+POP3 port %d without TLS from 127\.0\.0\.1"
                     % srv.ports["pop3"], out), out
    assert "turn on SSL/TLS, port %d" % srv.ports["pop3s"] in out, out


def test_smtp_failures(srv):
    port = srv.submission_port
    # AUTH before STARTTLS
    c = SMTP(port, local_hostname="laptop.client.test")
    c.ehlo()
    ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + USERS[ALICE].encode()).decode()
    code, msg = c.docmd("AUTH", "PLAIN " + ir)
    assert code == 530 and b"STARTTLS" in msg, (code, msg)
    c.quit()
    # unsupported mechanism, then a wrong password, over TLS
    c = SMTP(port, local_hostname="laptop.client.test")
    c.starttls(context=srv.ssl_context())
    c.ehlo()
    code, msg = c.docmd("AUTH", "CRAM-MD5")
    assert code == 504 and msg.startswith(b"5.5.4") and b"PLAIN or LOGIN" in msg, (code, msg)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c.login(ALICE, "bad-password")
    assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8")
    c.close()
    out = wait_diag(srv, ("user", "diag", ALICE),
                    r"wrong password\s+SMTP submission port %d with TLS from 127\.0\.0\.1 "
                    r"\(EHLO laptop\.client\.test\)" % port, "the SMTP wrong-password event")
    assert re.search(r"login without TLS refused\s+SMTP submission port %d without TLS" % port,
                     out), out
    # a mail program set up with the MX port 25 as its outgoing server
    c = SMTP(srv.smtp_port, local_hostname="laptop.client.test")
    c.ehlo()
    code, msg = c.docmd("AUTH", "PLAIN " + ir)
    assert code == 503 and (b"submission port %d" % srv.submission_port) in msg, (code, msg)
    c.quit()
    out = wait_diag(srv, ("user", "diag", ALICE), r"login on the MX port refused\s+SMTP port %d"
                    % srv.smtp_port, "the port-25 AUTH event")
    assert "set the outgoing server to port %d with STARTTLS or %d with SSL/TLS" % (
        srv.submission_port, srv.submissions_port) in out, out
    ip = wait_diag(srv, ("diag", "ip", "127.0.0.1"), r"unsupported login method",
                   "the unsupported-mechanism event")
    assert "mechanism CRAM-MD5" in ip and '"normal password"' in ip, ip


def test_tls_handshake_failure_recorded_by_ip(srv):
    port = srv.ports["imaps"]
    # the usual case: the client does not trust the certificate and aborts the handshake
    ctx = ssl.create_default_context()   # system CAs only: our test CA is unknown to it
    with socket.create_connection(("127.0.0.1", port)) as s:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(s, server_hostname=HOST)
    # and a broken handshake record
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x16\x03\x01\x00\x08garbage!")
        s.settimeout(5)
        try:
            s.recv(100)
        except OSError:
            pass
    out = wait_diag(srv, ("diag", "ip", "127.0.0.1"),
                    r"(?s)TLS handshake failed\s+IMAP \(SSL\) port %d without TLS from "
                    r"127\.0\.0\.1: .*TLS handshake failed\s+IMAP \(SSL\) port %d without TLS "
                    r"from 127\.0\.0\.1: .*SNI %s" % (port, port, re.escape(HOST)),
                    "both TLS failure events")
    assert "unknown ca" in out, out
    assert "2 TLS handshakes failed from 127.0.0.1 over IMAP (SSL) port %d" % port in out, out
    assert "does not accept the certificate" in out, out
